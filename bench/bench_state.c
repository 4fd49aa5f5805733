/* Benchmarks of the state services: history insert cost (and the share of the per-minute and
 * per-hour tables in it), a 7-day database at 1 s (size; a day, a week and a 30-day month in 1000
 * buckets from the downsampled tables and, for comparison, from the samples; CSV export of a
 * day; the background build of the downsampled tables of a database from before them), alert
 * evaluation per sample. Prints figures (bench_median of several runs); never fails on speed. */
#define _GNU_SOURCE
#include "alert_rules.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "history_logger.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "bench_util.h"

#define DAY_MS 86400000LL

/* CPU time of the calling thread (the queries run on it): a figure the other loads of a shared
 * machine do not inflate. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench_sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}
#define WEEK_SAMPLES 604800u

static struct bms_live_data make_sample(int64_t wall_ms, uint32_t i)
{
    struct bms_live_data d;
    memset(&d, 0, sizeof d);
    d.valid = true;
    d.wall_time_ms = wall_ms;
    d.cell_count = 16;
    for (int c = 0; c < 16; c++)
        d.cell_mv_x10[c] = (uint16_t)(32500 + (i * 7u + (uint32_t)c * 13u) % 1500u);
    d.pack_voltage_v = 52.0f + (float)(i % 400) * 0.01f;
    d.pack_current_a = -40.0f + (float)(i % 800) * 0.1f;
    d.soc_ppm = (i * 1237u) % 100000000u;
    d.temp_dc[0] = (int16_t)(200 + i % 80);
    d.temp_present[0] = true;
    d.temp_dc[1] = (int16_t)(190 + i % 60);
    d.temp_present[1] = true;
    d.soh_raw = 49000;
    d.soh_valid = true;
    d.online_status = BMS_STATUS_DISCHARGING;
    return d;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

static struct history_logger *open_logger(const char *dir)
{
    struct history_logger_options opt = {
        .data_dir = dir, .config = { .enabled = true, .period_s = 1, .retention_days = 3650 }, .queue_capacity = 40000,
    };
    struct history_logger *hl = NULL;
    if (history_logger_create(&opt, &hl) != GW_OK) {
        fprintf(stderr, "bench_state: cannot create the history logger in %s\n", dir);
        exit(1);
    }
    return hl;
}

/* Records n samples through the logger (flushing every 16384) and returns seconds. */
static double insert_run(struct history_logger *hl, int64_t t0, uint32_t n)
{
    double start = bench_now_s();
    for (uint32_t i = 0; i < n; i++) {
        struct bms_live_data d = make_sample(t0 + (int64_t)i * 1000, i);
        history_logger_record(hl, &d);
        if (i % 16384 == 16383 && history_logger_flush(hl, 600000) != GW_OK)
            fprintf(stderr, "bench_state: flush failed\n");
    }
    if (history_logger_flush(hl, 600000) != GW_OK)
        fprintf(stderr, "bench_state: flush failed\n");
    return bench_now_s() - start;
}

/* Baseline: one transaction per sample (what an unbatched logger would pay). */
static double unbatched_run(const char *dir, uint32_t n)
{
    char path[700];
    snprintf(path, sizeof path, "%s/unbatched.db", dir);
    sqlite3 *db = NULL;
    sqlite3_open(path, &db);
    sqlite3_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                 "CREATE TABLE IF NOT EXISTS samples(ts_ms INTEGER, battery_id INTEGER, voltage REAL, current REAL,"
                 " soc REAL, soh REAL, temp_min REAL, temp_max REAL, cell_min_mv INTEGER, cell_max_mv INTEGER,"
                 " cell_spread_mv REAL, status INTEGER, cells BLOB);"
                 "CREATE INDEX IF NOT EXISTS samples_ts ON samples(ts_ms);",
                 NULL, NULL, NULL);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "INSERT INTO samples VALUES(?,0,?,?,?,99,20,25,3250,3300,50,147,?)", -1, &st, NULL);
    uint8_t blob[32] = { 0 };
    double start = bench_now_s();
    for (uint32_t i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, (int64_t)i * 1000);
        sqlite3_bind_double(st, 2, 52.0 + i % 10);
        sqlite3_bind_double(st, 3, -5.0);
        sqlite3_bind_double(st, 4, 50.0);
        sqlite3_bind_blob(st, 5, blob, sizeof blob, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    double s = bench_now_s() - start;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return s;
}

static int count_sink(void *ctx, const char *data, size_t len)
{
    (void)data;
    *(size_t *)ctx += len;
    return 0;
}

static void bench_history(void)
{
    char dir[] = "/tmp/gw_bench_state_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    const int64_t t0 = 1737072000000LL; /* 2025-01-17T00:00:00Z */

    /* insert cost: 3 runs of 20000 samples into fresh databases; the writer's time in the
     * downsampled tables is measured inside the same runs (history_logger_stats.rollup_us) */
    double per_sample[3], baseline[3], rollup_share[3];
    for (int r = 0; r < 3; r++) {
        char sub[600];
        snprintf(sub, sizeof sub, "%s/ins%d", dir, r);
        struct history_logger *hl = open_logger(sub);
        double secs = insert_run(hl, t0, 20000);
        struct history_logger_stats st;
        history_logger_get_stats(hl, &st);
        per_sample[r] = secs / 20000 * 1e6;
        rollup_share[r] = (double)st.rollup_us / 20000;
        history_logger_destroy(hl);
        baseline[r] = unbatched_run(sub, 2000) / 2000 * 1e6;
    }
    double ins = bench_median(per_sample, 3), base = bench_median(baseline, 3), roll = bench_median(rollup_share, 3);
    printf("history insert (batched, via writer thread): %.2f us/sample (bench_median of 3 x 20000)\n", ins);
    printf("  of which the downsampled tables:             %.2f us/sample: %.2fx the samples alone (%.2f us)\n", roll,
           ins / (ins - roll), ins - roll);
    printf("  baseline one transaction per sample:        %.2f us/sample (ratio %.1fx)\n", base, base / ins);

    /* the 7-day database at 1 s */
    char week[600];
    snprintf(week, sizeof week, "%s/week", dir);
    struct history_logger *hl = open_logger(week);
    double gen = insert_run(hl, t0, WEEK_SAMPLES);
    history_logger_destroy(hl); /* checkpoint */
    char db[700], wal[710];
    snprintf(db, sizeof db, "%s/history.db", week);
    snprintf(wal, sizeof wal, "%s/history.db-wal", week);
    long long bytes = file_size(db) + file_size(wal);
    printf("7-day database at 1 s: %u samples generated in %.1f s, size %.1f MB (%.0f bytes/sample)\n",
           WEEK_SAMPLES, gen, (double)bytes / 1e6, (double)bytes / WEEK_SAMPLES);

    hl = open_logger(week);
    struct history_bucket *b = calloc(1000, sizeof *b);
    const int64_t week_end = t0 + 7 * DAY_MS;
    struct {
        const char *what;
        int64_t from, to;
        int runs;
    } q[] = {
        { "a day    ", t0 + 2 * DAY_MS, t0 + 3 * DAY_MS, 7 },
        { "a week   ", t0, week_end, 5 },
        { "30 days  ", week_end - 30 * DAY_MS, week_end, 5 },
    };
    for (size_t k = 0; k < sizeof q / sizeof q[0]; k++) {
        double fast[7], slow[7], cpu[7];
        struct history_query_info info = { 0 };
        for (int r = 0; r < q[k].runs; r++) {
            double s0 = bench_now_s(), c0 = thread_cpu_s();
            if (history_logger_query_buckets_from(hl, 0, q[k].from, q[k].to, 1000, HISTORY_SOURCE_AUTO, b, &info) != GW_OK)
                fprintf(stderr, "bench_state: bucket query failed\n");
            fast[r] = (bench_now_s() - s0) * 1e3;
            cpu[r] = (thread_cpu_s() - c0) * 1e3;
        }
        for (int r = 0; r < 3; r++) {
            double s0 = bench_now_s();
            history_logger_query_buckets_from(hl, 0, q[k].from, q[k].to, 1000, HISTORY_SOURCE_SAMPLES, b, NULL);
            slow[r] = (bench_now_s() - s0) * 1e3;
        }
        double f = bench_median(fast, q[k].runs), sl = bench_median(slow, 3), c = bench_median(cpu, q[k].runs);
        printf("%s in 1000 buckets: %.1f ms (CPU %.1f ms) from the %s (bench_median of %d); from the samples "
               "%.1f ms (%.0fx)\n",
               q[k].what, f, c, history_source_name(info.source), q[k].runs, sl, sl / f);
    }
    free(b);
    double csv[5];
    size_t csv_bytes = 0;
    for (int r = 0; r < 5; r++) {
        csv_bytes = 0;
        double s = bench_now_s();
        if (history_logger_export_csv_day(hl, "2025-01-19", 0, count_sink, &csv_bytes) != GW_OK)
            fprintf(stderr, "bench_state: CSV export failed\n");
        csv[r] = (bench_now_s() - s) * 1e3;
    }
    printf("CSV export of a day (86400 rows, %.1f MB): %.1f ms (bench_median of 5)\n", (double)csv_bytes / 1e6,
           bench_median(csv, 5));
    history_logger_destroy(hl);

    /* A database from before the downsampled tables: the open, then their build in the background. */
    sqlite3 *raw = NULL;
    if (sqlite3_open(db, &raw) == SQLITE_OK &&
        sqlite3_exec(raw, "DROP TABLE history_1m; DROP TABLE history_10m; DROP TABLE history_1h; DROP TABLE history_meta;"
                          "PRAGMA user_version = 2; PRAGMA wal_checkpoint(TRUNCATE);",
                     NULL, NULL, NULL) == SQLITE_OK) {
        sqlite3_close(raw);
        double s0 = bench_now_s();
        hl = open_logger(week);
        double opened = bench_now_s() - s0;
        struct history_logger_stats st;
        do {
            bench_sleep_ms(20);
            history_logger_get_stats(hl, &st);
        } while (!st.rollups_complete && bench_now_s() - s0 < 600);
        printf("migration of the 7-day database: opened in %.0f ms, downsampled tables built in the background "
               "in %.1f s%s\n",
               opened * 1e3, bench_now_s() - s0, st.rollups_complete ? "" : " (NOT finished after 600 s)");
        history_logger_destroy(hl);
    } else {
        fprintf(stderr, "bench_state: cannot turn the database back to version 2: %s\n", raw ? sqlite3_errmsg(raw) : "");
        sqlite3_close(raw);
    }

    if (getenv("BENCH_STATE_KEEP")) {
        printf("(kept %s)\n", dir);
        return;
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_state: cannot remove %s\n", dir);
}

static uint64_t emitted;
static void count_emit(void *ctx, enum alert_transition kind, const struct alert_record *rec)
{
    (void)ctx;
    (void)kind;
    (void)rec;
    emitted++;
}

static void bench_alerts(void)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct alert_engine *e = malloc(sizeof *e);
    struct battery_view *v = calloc(1, sizeof *v); /* one pack, as one TinyBMS gives */
    v->pack_count = v->online_count = 1;
    v->packs[0].state = BATTERY_PACK_ONLINE;
    snprintf(v->packs[0].name, sizeof v->packs[0].name, "pack 1");
    const uint32_t n = 200000;
    double runs[5];
    for (int r = 0; r < 5; r++) {
        alert_engine_init(e, &cfg.alerts, count_emit, NULL);
        double s = bench_now_s();
        for (uint32_t i = 0; i < n; i++) {
            struct bms_live_data *d = &v->packs[0].live;
            *d = make_sample(0, i);
            d->cell_mv_x10[3] = (uint16_t)(35800 + (i % 400)); /* hovering at 3.6 V */
            v->soc_pct = bms_soc_percent(d);
            v->online_status = d->online_status;
            alert_engine_process_view(e, v, (uint64_t)i * 1000, (int64_t)i * 1000);
        }
        runs[r] = (bench_now_s() - s) / n * 1e6;
    }
    printf("alert evaluation: %.3f us/sample (bench_median of 5 x %u, %llu transitions)\n", bench_median(runs, 5), n,
           (unsigned long long)emitted);
    free(v);
    free(e);
}

int main(void)
{
    bench_alerts();
    bench_history();
    return 0;
}
