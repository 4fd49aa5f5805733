/* One-line logs: "<local time+offset> <LEVEL> <module>: message" on stderr; under systemd
 * (stderr is the journal) "<priority>LEVEL module: message", the journal stamping it. Thread-safe.
 * Repeated errors in loops go through gw_log_ratelimited() so a dead device cannot spam. */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdint.h>

enum gw_log_level { GW_LOG_NONE = -1, GW_LOG_ERROR = 0, GW_LOG_WARN = 1, GW_LOG_INFO = 2, GW_LOG_DEBUG = 3 };

/* Messages above this level are dropped (default GW_LOG_INFO; GW_LOG_NONE drops every message:
 * the fuzz targets, which run millions of inputs that each would log a refusal). */
void gw_log_set_level(enum gw_log_level level);
enum gw_log_level gw_log_get_level(void);

void gw_log(enum gw_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* State for a rate-limited log site; zero-initialise (static storage is fine). */
struct gw_log_limit {
    uint64_t window_start_ms;
    uint32_t suppressed;
};

/* Logs at most once per interval_ms per site; the next logged line says how many were
 * suppressed. Thread-safe, also for one site shared by several threads. */
void gw_log_ratelimited(struct gw_log_limit *limit, uint32_t interval_ms, enum gw_log_level level,
                        const char *module, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* MOD: the module of the file being compiled, its folder name ("uart_bms", "can"), defined
 * for every module's sources by the top-level CMakeLists.txt (GW_LOG_MODULE): log with
 * GW_LOGx(MOD, ...), never a name of one's own, so a line's module is where its code lives. */
#ifdef GW_LOG_MODULE
#define MOD GW_LOG_MODULE
#endif

#define GW_LOGE(mod, ...) gw_log(GW_LOG_ERROR, mod, __VA_ARGS__)
#define GW_LOGW(mod, ...) gw_log(GW_LOG_WARN, mod, __VA_ARGS__)
#define GW_LOGI(mod, ...) gw_log(GW_LOG_INFO, mod, __VA_ARGS__)
#define GW_LOGD(mod, ...) gw_log(GW_LOG_DEBUG, mod, __VA_ARGS__)

#endif
