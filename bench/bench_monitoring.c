/* bench_monitoring: what the monitoring costs the gateway. One collection with the daemon's
 * shape (12 named threads, ~260 values from 9 sources: the counts app_metrics.c puts for one
 * pack), turned into CPU per second of gateway time at the default 5 s period (target <= 50 us)
 * and at 1 s; the same collection without sources; a naive baseline reading /proc/self/task/N/stat
 * per thread; and the cost of one scrape (Prometheus text, JSON). Prints figures, never fails. */
#define _GNU_SOURCE
#include "bench_util.h"
#include "monitoring.h"
#include "monitoring_internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS 12
#define RUNS 7
#define ITER 200

static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;
static bool idle_stop;

static void *idle_thread(void *arg)
{
    char name[16];
    snprintf(name, sizeof name, "bench-%d", (int)(intptr_t)arg);
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&idle_lock);
    while (!idle_stop)
        pthread_cond_wait(&idle_cond, &idle_lock);
    pthread_mutex_unlock(&idle_lock);
    return NULL;
}

static const struct monitoring_family FAM_C = { "tinybms_gw_bench_things_total", "Things.", MONITORING_COUNTER, NULL };
static const struct monitoring_family FAM_G[40] = {
#define G(n) { "tinybms_gw_bench_gauge_" #n, "A gauge.", MONITORING_GAUGE, NULL }
    G(0),  G(1),  G(2),  G(3),  G(4),  G(5),  G(6),  G(7),  G(8),  G(9),  G(10), G(11), G(12), G(13),
    G(14), G(15), G(16), G(17), G(18), G(19), G(20), G(21), G(22), G(23), G(24), G(25), G(26), G(27),
    G(28), G(29), G(30), G(31), G(32), G(33), G(34), G(35), G(36), G(37), G(38), G(39),
#undef G
};

struct shape {
    int plain;      /* unlabeled values */
    int labeled;    /* values with one label */
};

/* A stand-in for a service getter: copies a stats struct under its lock, then puts. */
static pthread_mutex_t svc_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t svc_stats[64];

static void source(struct monitoring_sink *sink, void *ctx)
{
    const struct shape *s = ctx;
    uint64_t copy[64];
    pthread_mutex_lock(&svc_lock);
    memcpy(copy, svc_stats, sizeof copy);
    pthread_mutex_unlock(&svc_lock);
    for (int i = 0; i < s->plain; i++)
        monitoring_put(sink, &FAM_G[i % 40], (double)copy[i % 64]);
    for (int i = 0; i < s->labeled; i++) {
        char v[12];
        snprintf(v, sizeof v, "%d", i);
        struct monitoring_label l = { "id", v };
        monitoring_put_labels(sink, &FAM_C, &l, 1, (double)copy[i % 64]);
    }
}

/* event_bus 5 + 20 subscribers x 3, uart 13, battery 17 + 2 + 3 + 4, can 15 + 19 x 2, mqtt 13,
 * history 8, alerts 1 + 46, network 12 */
static struct shape shapes[] = { { 5, 60 }, { 13, 0 }, { 17, 9 }, { 15, 38 }, { 13, 0 },
                                 { 8, 0 },  { 1, 46 }, { 12, 0 } };

/* Median microseconds of one collection (wall), ITER per run. */
static double time_collections(struct monitoring *m, bool full)
{
    double runs[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now_us();
        for (int i = 0; i < ITER; i++)
            monitoring__collect(m, full);
        runs[r] = (bench_now_us() - t0) / ITER;
    }
    return bench_median(runs, RUNS);
}

/* What a naive collector would do: open, read, close /proc/self/task/<tid>/stat per thread. */
static double time_naive(void)
{
    double runs[RUNS];
    char buf[1024];
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now_us();
        for (int i = 0; i < ITER; i++) {
            DIR *d = opendir("/proc/self/task");
            struct dirent *de;
            while (d && (de = readdir(d)) != NULL) {
                if (de->d_name[0] == '.')
                    continue;
                char path[300];
                snprintf(path, sizeof path, "/proc/self/task/%.255s/stat", de->d_name);
                int fd = open(path, O_RDONLY);
                if (fd >= 0) {
                    if (read(fd, buf, sizeof buf) < 0)
                        buf[0] = 0;
                    close(fd);
                }
            }
            if (d)
                closedir(d);
            int fd = open("/proc/self/status", O_RDONLY);
            if (fd >= 0) {
                if (read(fd, buf, sizeof buf) < 0)
                    buf[0] = 0;
                close(fd);
            }
        }
        runs[r] = (bench_now_us() - t0) / ITER;
    }
    return bench_median(runs, RUNS);
}

int main(void)
{
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, idle_thread, (void *)(intptr_t)i);

    struct monitoring_options o = { .data_dir = "/tmp" };
    struct monitoring *bare = NULL, *full = NULL;
    monitoring_create(&o, &bare);
    monitoring_create(&o, &full);
    int values = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        monitoring_add_source(full, "bench", source, &shapes[i]);
        values += shapes[i].plain + shapes[i].labeled;
    }
    monitoring_refresh(full, 1000); /* first reading: thread names */
    monitoring_refresh(bare, 1000);

    double t_bare = time_collections(bare, false);
    double t_part = time_collections(full, false);
    double t_full = time_collections(full, true);
    double t_naive = time_naive();
    /* the sampler's mix: one full collection in FULL_EVERY (6), one collection per 5 s */
    double t_mix = (5 * t_part + t_full) / 6;

    double rp[RUNS], rj[RUNS];
    size_t text_len = 0, json_len = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now_us();
        for (int i = 0; i < ITER; i++) {
            char *t;
            monitoring_render_prometheus_alloc(full, &t, &text_len);
            free(t);
        }
        rp[r] = (bench_now_us() - t0) / ITER;
        t0 = bench_now_us();
        for (int i = 0; i < ITER; i++) {
            char *j;
            monitoring_get_system_metrics_json_alloc(full, &j);
            json_len = strlen(j);
            free(j);
        }
        rj[r] = (bench_now_us() - t0) / ITER;
    }

    printf("monitoring collection, %d threads, %d source values (the daemon with one pack), hot caches:\n",
           THREADS + 1, values);
    printf("  one collection: %.1f us (full, every 6th: thread list, fds, limits, free space re-read: %.1f us)\n",
           t_part, t_full);
    printf("  without sources (process and system figures only): %.1f us\n", t_bare);
    printf("  baseline, naive /proc reads (open+read+close per thread stat and status): %.1f us (ratio %.2f)\n",
           t_naive, t_naive > 0 ? t_part / t_naive : 0);
    printf("  ** cost per second of gateway time: %.1f us at the default 5 s period (target <= 50), %.1f us at "
           "1 s **\n",
           t_mix / 5.0, t_mix);
    printf("  (cold caches in the daemon cost more: tinybms_gw_monitoring_collect_seconds_total / "
           "tinybms_gw_uptime_seconds tells the real figure)\n");
    printf("one scrape: Prometheus text %.1f us (%zu bytes), JSON %.1f us (%zu bytes)\n", bench_median(rp, RUNS),
           text_len, bench_median(rj, RUNS), json_len);

    monitoring_destroy(bare);
    monitoring_destroy(full);
    pthread_mutex_lock(&idle_lock);
    idle_stop = true;
    pthread_cond_broadcast(&idle_cond);
    pthread_mutex_unlock(&idle_lock);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    return 0;
}
