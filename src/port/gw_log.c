#define _POSIX_C_SOURCE 200809L
#include "gw_log.h"

#include "gw_clock.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static atomic_int current_level = GW_LOG_INFO;
static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER; /* every struct gw_log_limit */

void gw_log_set_level(enum gw_log_level level) { atomic_store(&current_level, (int)level); }
enum gw_log_level gw_log_get_level(void) { return (enum gw_log_level)atomic_load(&current_level); }

static const char *level_name(enum gw_log_level level)
{
    switch (level) {
    case GW_LOG_ERROR: return "ERROR";
    case GW_LOG_WARN: return "WARN ";
    case GW_LOG_INFO: return "INFO ";
    default: return "DEBUG";
    }
}

static void vlog(enum gw_log_level level, const char *module, const char *suffix, const char *fmt,
                 va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    int64_t wall = gw_wall_ms();
    time_t secs = (time_t)(wall / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line: stdio locks the stream, so lines from threads never interleave. */
    fprintf(stderr, "%s.%03dZ %s %s: %s%s\n", stamp, (int)(wall % 1000), level_name(level), module,
            msg, suffix ? suffix : "");
}

void gw_log(enum gw_log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level > atomic_load(&current_level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, module, NULL, fmt, ap);
    va_end(ap);
}

void gw_log_ratelimited(struct gw_log_limit *limit, uint32_t interval_ms, enum gw_log_level level,
                        const char *module, const char *fmt, ...)
{
    if ((int)level > atomic_load(&current_level))
        return;
    uint64_t now = gw_now_ms();
    /* One lock for every site: a site shared by threads (a static limit in a function that
     * several threads call) must neither lose counts nor log twice in a window. */
    pthread_mutex_lock(&limit_lock);
    if (limit->window_start_ms != 0 && now - limit->window_start_ms < interval_ms) {
        limit->suppressed++;
        pthread_mutex_unlock(&limit_lock);
        return;
    }
    uint32_t suppressed = limit->suppressed;
    limit->window_start_ms = now ? now : 1;
    limit->suppressed = 0;
    pthread_mutex_unlock(&limit_lock);
    char suffix[64] = "";
    if (suppressed)
        snprintf(suffix, sizeof suffix, " (%u similar suppressed)", suppressed);
    va_list ap;
    va_start(ap, fmt);
    vlog(level, module, suffix, fmt, ap);
    va_end(ap);
}
