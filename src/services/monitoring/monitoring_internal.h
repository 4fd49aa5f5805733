/* monitoring internals: the snapshot and its pure renderers and parsers (unit-tested without a
 * thread or a /proc). Nothing outside src/services/monitoring and its tests includes this. */
#ifndef MONITORING_INTERNAL_H
#define MONITORING_INTERNAL_H

#include "monitoring.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MONITORING_LABEL_VALUE_MAX 32
#define MONITORING_MODULE_MAX 24
#define MONITORING_MAX_SOURCES 32
#define MONITORING_MAX_THREADS 64   /* distinct thread names kept */
#define MONITORING_THREAD_NAME_MAX 16

struct monitoring_sample {
    const struct monitoring_family *family;
    uint8_t module;                 /* index into the snapshot's module names */
    uint8_t nlabels;
    const char *label_names[MONITORING_MAX_LABELS];
    char label_values[MONITORING_MAX_LABELS][MONITORING_LABEL_VALUE_MAX];
    double value;
};

/* CPU of the threads that carry one name (the exited ones included: the counter never goes
 * back when a thread ends). */
struct monitoring_thread {
    char name[MONITORING_THREAD_NAME_MAX];
    uint32_t count;                 /* threads alive with this name */
    double cpu_seconds;             /* since start, alive and exited */
    double cpu_ratio;               /* of one core over the last interval */
};

/* What the module reads itself. */
struct monitoring_system {
    int64_t wall_ms;                /* when collected */
    uint64_t mono_ms;
    double interval_s;              /* since the previous collection (0 on the first) */
    double uptime_s;                /* gateway (monitoring_create) */
    double start_time_s;            /* process start, unix seconds */
    double cpu_seconds;             /* process user + system */
    double cpu_ratio;               /* of one core over the last interval */
    uint64_t rss_bytes, rss_peak_bytes, vm_bytes;
    uint32_t open_fds;
    uint64_t max_fds;
    uint32_t thread_total;
    double load[3];
    double system_uptime_s;
    uint64_t mem_total_bytes, mem_free_bytes;
    bool disk_known;
    uint64_t disk_free_bytes, disk_total_bytes;
    size_t thread_count;
    struct monitoring_thread threads[MONITORING_MAX_THREADS];
    /* the module's own cost */
    uint64_t collections;
    double collect_last_s, collect_total_s;
    uint64_t samples_dropped;       /* snapshot full */
    uint64_t rejected;              /* families left out of the text (bad name) */
};

#define MONITORING_MAX_TEXTS 64
#define MONITORING_TEXT_KEY 32
#define MONITORING_TEXT_MAX 64

struct monitoring_text_value {
    uint8_t module;
    char key[MONITORING_TEXT_KEY];
    char value[MONITORING_TEXT_MAX];
};

struct monitoring_snapshot {
    struct monitoring_system sys;
    double source_s[MONITORING_MAX_SOURCES];   /* time each source took (wall, this collection) */
    double system_s;                           /* time of the process/system readings */
    size_t text_count;
    struct monitoring_text_value texts[MONITORING_MAX_TEXTS];
    uint32_t period_ms;
    size_t module_count;
    char modules[MONITORING_MAX_SOURCES][MONITORING_MODULE_MAX];
    size_t count, cap;
    struct monitoring_sample *samples;
};

/* The sink a source writes into: the snapshot being built and the source's module index. */
struct monitoring_sink {
    struct monitoring_snapshot *snap;
    uint8_t module;
    uint64_t dropped;
};

/* A bounded text builder: writes at most cap - 1 characters plus a NUL, counts what did not
 * fit (len keeps growing past cap, so a second pass can allocate len + 1). */
struct monitoring_text {
    char *buf;
    size_t cap;
    size_t len;
    bool truncated;
};
void monitoring__text_init(struct monitoring_text *t, char *buf, size_t cap);
void monitoring__text_add(struct monitoring_text *t, const char *s, size_t n);
void monitoring__text_printf(struct monitoring_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Name rules of the exposition format (and ours: counters end in _total, gauges do not, no
 * milli/micro/kilo units or percents). Returns NULL when fine, else the broken rule. */
const char *monitoring__family_problem(const struct monitoring_family *f);
bool monitoring__valid_metric_name(const char *name);
bool monitoring__valid_label_name(const char *name);

/* Prometheus text of snap into t. Returns how many families were left out (bad names). */
size_t monitoring__render_prometheus(const struct monitoring_snapshot *snap, struct monitoring_text *t);

/* JSON of snap (cJSON). Returns a malloc'd string or NULL (no memory). */
char *monitoring__render_json(const struct monitoring_snapshot *snap);

/* The JSON key of a family within its module. */
void monitoring__json_key(const struct monitoring_family *f, const char *module, char *out, size_t cap);

/* One collection on the calling thread (full: the thread list, descriptors, limits and free
 * space re-read too), as the sampler makes them. For the benchmark. */
struct monitoring;
void monitoring__collect(struct monitoring *m, bool full);

/* Parsers of /proc text (pure). */
/* "/proc/self/statm": size and resident pages. @retval GW_OK, GW_ERR_PROTO */
int monitoring__parse_statm(const char *text, uint64_t *size_pages, uint64_t *resident_pages);
/* "/proc/self/stat": field 22, starttime in clock ticks since boot. @retval GW_OK, GW_ERR_PROTO */
int monitoring__parse_stat_starttime(const char *text, uint64_t *ticks);

/* Folds one reading of the threads into the per-name table (pure): alive[i] = (name, cpu
 * seconds now) of every thread, prev = the last reading per tid. Kept in monitoring.c's state;
 * exposed for tests as a table step. */
struct monitoring_tid {
    int tid;
    char name[MONITORING_THREAD_NAME_MAX];
    double cpu_s;                   /* last reading */
    bool seen;                      /* in the current reading */
    uint32_t name_reads;            /* times its name was read (collector's cache) */
};
struct monitoring_thread_table {
    size_t tid_count;
    struct monitoring_tid tids[MONITORING_MAX_THREADS * 2];
    size_t name_count;
    struct monitoring_thread names[MONITORING_MAX_THREADS];
    double exited_s[MONITORING_MAX_THREADS];   /* per name: CPU of threads gone */
    double prev_total_s[MONITORING_MAX_THREADS];
};
/* Starts a reading (marks every tid unseen). */
void monitoring__threads_begin(struct monitoring_thread_table *tt);
/* One thread of the reading. */
void monitoring__threads_add(struct monitoring_thread_table *tt, int tid, const char *name, double cpu_s);
/* Ends a reading: tids not seen are folded into their name's exited CPU, counts and ratios
 * computed over interval_s (0: ratios 0). */
void monitoring__threads_end(struct monitoring_thread_table *tt, double interval_s);

#endif
