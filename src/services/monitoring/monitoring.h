/* monitoring: what the gateway is doing, as JSON (the web's /api/metrics), as the Prometheus
 * text exposition format (/metrics) and as a task-stats dump in the log (SIGUSR2).
 *
 * - Process and system figures are read by the module itself: CPU time of the process and of
 *   every thread (grouped by thread name, so set one with pthread_setname_np), RSS and its peak,
 *   open file descriptors, uptime, load, memory, the data directory's free space.
 * - Every other figure comes from a source: a small callback registered by the daemon
 *   (monitoring_add_source) that copies a service's public stats into the sink it is handed.
 *   The module includes no service header; the daemon wires them.
 * - One sampler thread collects everything every period_ms into a snapshot (waiting with
 *   gw_clock_wait until its next deadline, never polling); the renderers read the newest
 *   snapshot, so a scrape or a page costs no collection.
 *
 * Prometheus names follow its conventions: base units (seconds, bytes, ratios 0..1), counters
 * end in _total, "# HELP" and "# TYPE" once per family, label values bounded (pack numbers,
 * thread and module names fixed by the code, never addresses or free text).
 * Every function is thread-safe unless said otherwise. */
#ifndef MONITORING_H
#define MONITORING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct monitoring;
struct monitoring_sink;

enum monitoring_kind { MONITORING_GAUGE = 0, MONITORING_COUNTER = 1 };

/* One metric family, in static storage owned by the source (its address identifies it).
 * name: the full Prometheus name, [a-zA-Z_:][a-zA-Z0-9_:]*, "tinybms_gw_<module>_<what>" with
 * the base unit and, for counters, "_total" last. A family that breaks these rules is left out
 * of the text (counted in tinybms_gw_monitoring_rejected_total, logged once). */
struct monitoring_family {
    const char *name;
    const char *help;           /* one line, what it counts and when it moves */
    enum monitoring_kind kind;
    const char *json_key;       /* key in the JSON document; NULL: the name without
                                   "tinybms_gw_", the module prefix and "_total" */
};

struct monitoring_label {
    const char *name;           /* static string: "pack", "thread", "subscriber", ... */
    const char *value;          /* copied (truncated to 31 characters) */
};

#define MONITORING_MAX_LABELS 3

/* A source copies its figures into sink with the monitoring_put* calls below. Runs on the
 * sampler thread (and must return quickly: take a stats copy, put, return). */
typedef void (*monitoring_source_fn)(struct monitoring_sink *sink, void *ctx);

/* Puts one value (no labels). A full snapshot drops the value (counted).
 * @retval GW_OK, GW_ERR_INVAL (NULL sink/family), GW_ERR_FULL */
int monitoring_put(struct monitoring_sink *sink, const struct monitoring_family *family, double value);

/* Puts one value with labels[0..n) (n <= MONITORING_MAX_LABELS).
 * @retval GW_OK, GW_ERR_INVAL (NULL, n too large, a label without name or value), GW_ERR_FULL */
int monitoring_put_labels(struct monitoring_sink *sink, const struct monitoring_family *family,
                          const struct monitoring_label *labels, size_t n, double value);

/* Shorthand for one label {"pack", "<pack>"} (the pack's battery id, 0..15).
 * @retval as monitoring_put_labels */
int monitoring_put_pack(struct monitoring_sink *sink, const struct monitoring_family *family, unsigned pack,
                        double value);

/* Puts a text for the JSON document and the log dump only (never in the Prometheus text, where
 * free text would be an unbounded label): an address, an SSID, a device name. key: [a-z0-9_],
 * at most 31 characters; text copied, truncated to 63 characters.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_FULL */
int monitoring_put_text(struct monitoring_sink *sink, const char *key, const char *text);

struct monitoring_options {
    const char *data_dir;       /* its file system's free space is reported; NULL: not reported */
    uint32_t period_ms;         /* sampling period, 1000..3600000; 0 = 5000 */
    size_t max_samples;         /* source values kept per snapshot; 0 = 2048 */
};

/* Creates the module (not sampling yet). On failure *out = NULL.
 * @retval GW_OK, GW_ERR_INVAL (NULL out), GW_ERR_RANGE (period_ms), GW_ERR_NOMEM */
int monitoring_create(const struct monitoring_options *opts, struct monitoring **out);

/* Registers a source under a module name ("uart", "can", "mqtt", ...: [a-z0-9_], at most 23
 * characters; it groups the values in the JSON document). fn(ctx) runs on the sampler thread
 * from the next collection on; ctx is borrowed and must stay valid until monitoring_stop or
 * monitoring_destroy returns. At most 32 sources.
 * @retval GW_OK, GW_ERR_INVAL (NULL fn, bad module name), GW_ERR_FULL */
int monitoring_add_source(struct monitoring *m, const char *module, monitoring_source_fn fn, void *ctx);

/* Starts the sampler thread (named "monitoring"); it collects once at once, then every period.
 * @retval GW_OK, GW_ERR_STATE (running), GW_ERR_IO (thread creation) */
int monitoring_start(struct monitoring *m);

/* Stops and joins the sampler: on return no source runs any more. Idempotent. */
void monitoring_stop(struct monitoring *m);

/* Stops and frees. NULL accepted. */
void monitoring_destroy(struct monitoring *m);

/* Asks the sampler for a collection now and waits for it, at most timeout_ms of real time.
 * Without a running sampler, collects on the calling thread.
 * @retval GW_OK, GW_ERR_TIMEOUT */
int monitoring_refresh(struct monitoring *m, uint32_t timeout_ms);

/* The newest snapshot as one JSON object (the shape is in docs/monitoring.md):
 *   {"version":..,"timestamp_ms":..,"sample_period_ms":..,"process":{..},"system":{..},
 *    "threads":[{"name":..,"count":..,"cpu_percent":..,"cpu_seconds":..}],
 *    "monitoring":{..},"modules":{"uart":{"crc_errors":[{"pack":"0","value":0}],..},..}}
 * written NUL-terminated into buf; *len (may be NULL) gets the length without the NUL.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM, GW_ERR_OVERFLOW (buf too small; buf holds "") */
int monitoring_get_system_metrics_json(struct monitoring *m, char *buf, size_t size, size_t *len);

/* Same as a malloc'd string the caller frees with free(). @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM */
int monitoring_get_system_metrics_json_alloc(struct monitoring *m, char **out);

/* The newest snapshot in the Prometheus text exposition format 0.0.4 (Content-Type
 * "text/plain; version=0.0.4; charset=utf-8"), NUL-terminated into buf.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_OVERFLOW (buf too small; buf holds "") */
int monitoring_render_prometheus(struct monitoring *m, char *buf, size_t size, size_t *len);

/* Same as a malloc'd string the caller frees with free(). @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM */
int monitoring_render_prometheus_alloc(struct monitoring *m, char **out, size_t *len);

/* The task-stats dump (SIGUSR2): refreshes (at most 2 s), then logs at info one line for the
 * process, one per thread name and one per module with its values. */
void monitoring_log_task_stats(struct monitoring *m);

/* Writes the newest snapshot's Prometheus text to path atomically (temp file, fsync, rename),
 * mode 0644. @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM, GW_ERR_IO / GW_ERR_STORAGE (see the log) */
int monitoring_write_prometheus_file(struct monitoring *m, const char *path);

/* Collection cost: collections so far, the last one's duration and the mean CPU cost of
 * collecting per second of gateway time (microseconds; the target is <= 50). */
struct monitoring_cost {
    uint64_t collections;
    double last_us;
    double total_us;
    double us_per_second;
};
void monitoring_get_cost(struct monitoring *m, struct monitoring_cost *out);

#endif
