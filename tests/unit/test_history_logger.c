/* History logger: round trip, retention on a generated week, downsampling vs brute force, day
 * JSON and CSV, period sampling of battery views from the bus (a row per online pack and one of
 * the aggregate, never a stale sample twice, rows on a fixed grid of the period), migration of older databases, unwritable directory
 * and full disk. */
#define _GNU_SOURCE
#include "history_logger.h"
#include "app_events.h"
#include "event_bus.h"
#include "fake_clock.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "support/wait.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define DAY_MS 86400000LL
#define T_2025_01_17 1737072000000LL /* 2025-01-17T00:00:00Z */


static void make_dir(char *tmpl)
{
    CHECK(mkdtemp(tmpl) != NULL);
}

static void remove_dir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

static struct gw_config_history hist_cfg(uint32_t period_s, uint16_t days)
{
    struct gw_config_history c = { .enabled = true, .period_s = period_s, .retention_days = days };
    return c;
}

/* A deterministic sample: values derived from i so a brute force can recompute them. */
static struct bms_live_data make_sample(int64_t wall_ms, uint32_t i)
{
    struct bms_live_data d;
    memset(&d, 0, sizeof d);
    d.valid = true;
    d.wall_time_ms = wall_ms;
    d.cell_count = 4;
    for (int c = 0; c < 4; c++)
        d.cell_mv_x10[c] = (uint16_t)(32000 + ((i * 37u + (uint32_t)c * 101u) % 4000u));
    d.pack_voltage_v = 48.0f + (float)(i % 97) * 0.05f;
    d.pack_current_a = -50.0f + (float)(i % 211) * 0.5f;
    d.soc_ppm = (i * 7919u) % 100000000u;
    d.temp_dc[0] = (int16_t)(150 + (i % 50));
    d.temp_present[0] = (i % 13) != 0; /* some samples without any sensor: NULL temps */
    d.temp_dc[1] = (int16_t)(100 + (i % 70));
    d.temp_present[1] = (i % 13) != 0;
    d.soh_raw = 48000;
    d.soh_valid = true;
    d.online_status = BMS_STATUS_DISCHARGING;
    return d;
}

static struct history_logger *open_logger(const char *dir, struct event_bus *bus, struct gw_config_history cfg)
{
    struct history_logger_options opt = { .bus = bus, .data_dir = dir, .config = cfg, .retry_max_ms = 200 };
    struct history_logger *hl = NULL;
    CHECK_EQ_INT(history_logger_create(&opt, &hl), GW_OK);
    return hl;
}

static void test_round_trip(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    struct history_logger *hl = open_logger(dir, NULL, hist_cfg(5, 3650)); /* 2025 data must stay */
    if (!hl)
        return;
    struct bms_live_data d = make_sample(T_2025_01_17 + 1000, 1);
    d.cell_mv_x10[2] = 0; /* empty register: not a 0 V cell */
    d.temp_present[0] = true;
    d.temp_present[1] = false;
    CHECK_EQ_INT(history_logger_record(hl, &d), GW_OK);
    struct bms_live_data bad = d;
    bad.valid = false;
    CHECK_EQ_INT(history_logger_record(hl, &bad), GW_ERR_INVAL);
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);
    struct history_sample s[4];
    size_t n = 0;
    CHECK_EQ_INT(history_logger_query_samples(hl, 0, T_2025_01_17, T_2025_01_17 + DAY_MS, s, 4, &n), GW_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_EQ_INT(s[0].ts_ms, T_2025_01_17 + 1000);
        CHECK_NEAR(s[0].voltage_v, d.pack_voltage_v, 1e-4);
        CHECK_NEAR(s[0].current_a, d.pack_current_a, 1e-4);
        CHECK_NEAR(s[0].soh_percent, 96.0, 1e-3);
        CHECK_NEAR(s[0].temp_min_c, 15.1, 1e-4);
        CHECK_NEAR(s[0].temp_max_c, 15.1, 1e-4);
        CHECK_EQ_INT(s[0].cell_count, 4);
        CHECK_EQ_INT(s[0].cell_mv[0], (d.cell_mv_x10[0] + 5) / 10);
        CHECK_EQ_INT(s[0].cell_mv[2], 0);
        uint16_t lo = 65535, hi = 0;
        for (int c = 0; c < 4; c++) {
            if (c == 2)
                continue;
            uint16_t mv = (uint16_t)((d.cell_mv_x10[c] + 5) / 10);
            lo = mv < lo ? mv : lo;
            hi = mv > hi ? mv : hi;
        }
        CHECK_EQ_INT(s[0].cell_min_mv, lo);
        CHECK_EQ_INT(s[0].cell_max_mv, hi);
        CHECK_EQ_INT(s[0].status, BMS_STATUS_DISCHARGING);
    }
    struct history_logger_stats st;
    history_logger_get_stats(hl, &st);
    CHECK_EQ_INT(st.samples_written, 1);
    CHECK(st.storage_ok);
    /* bad arguments */
    struct history_bucket b[2];
    CHECK_EQ_INT(history_logger_query_buckets(hl, 0, 10, 10, 2, b), GW_ERR_INVAL);
    CHECK_EQ_INT(history_logger_query_buckets(hl, 0, 0, 10, 0, b), GW_ERR_INVAL);
    CHECK_EQ_INT(history_logger_query_buckets(hl, 0, 0, 10, HISTORY_MAX_BUCKETS + 1, b), GW_ERR_INVAL);
    history_logger_destroy(hl);
    struct history_logger_options opt = { .data_dir = dir, .config = hist_cfg(0, 7) };
    CHECK_EQ_INT(history_logger_create(&opt, &hl), GW_ERR_INVAL);
    opt.config = hist_cfg(5, 0);
    CHECK_EQ_INT(history_logger_create(&opt, &hl), GW_ERR_INVAL);
    opt.config = hist_cfg(5, 7);
    opt.data_dir = "";
    CHECK_EQ_INT(history_logger_create(&opt, &hl), GW_ERR_INVAL);
    remove_dir(dir);
}

static void test_destroy_writes_pending_samples(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    struct history_logger *hl = open_logger(dir, NULL, hist_cfg(5, 3650));
    if (!hl)
        return;
    for (uint32_t i = 0; i < 300; i++) {
        struct bms_live_data d = make_sample(T_2025_01_17 + i * 1000, i);
        CHECK_EQ_INT(history_logger_record(hl, &d), GW_OK);
    }
    history_logger_destroy(hl); /* no flush: destroy must write them */
    hl = open_logger(dir, NULL, hist_cfg(5, 3650));
    uint64_t n = 0;
    CHECK_EQ_INT(history_logger_count(hl, 0, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 300);
    history_logger_destroy(hl);
    remove_dir(dir);
}

static struct gw_config_history getter_value;
static int getter(void *ctx, struct gw_config_history *out)
{
    (void)ctx;
    *out = getter_value;
    return GW_OK;
}

static bool count_is(struct history_logger *hl, int64_t from, int64_t to, uint64_t want)
{
    uint64_t n = 0;
    return history_logger_count(hl, HISTORY_ALL_IDS, from, to, &n) == GW_OK && n == want;
}

static bool wait_count(struct history_logger *hl, int64_t from, int64_t to, uint64_t want)
{
    bool ok;
    WAIT_FOR(ok, count_is(hl, from, to, want), 10000);
    return ok;
}

static void test_retention_week(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    const int64_t now = T_2025_01_17 + 12 * 3600 * 1000LL;
    fake_clock_set_wall_ms(now);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    getter_value = hist_cfg(5, 7);
    struct history_logger_options opt = { .bus = bus, .data_dir = dir, .config = hist_cfg(5, 7),
                                          .get_config = getter, .queue_capacity = 20000 };
    struct history_logger *hl = NULL;
    CHECK_EQ_INT(history_logger_create(&opt, &hl), GW_OK);
    if (!hl)
        return;
    /* the start-up retention run is over before the old samples arrive */
    CHECK_EQ_INT(history_logger_run_retention(hl, 10000), GW_OK);
    /* ten days back to now, one sample every 10 minutes: 1440 samples */
    const int64_t step = 600000;
    uint32_t i = 0;
    for (int64_t t = now - 10 * DAY_MS; t < now; t += step, i++) {
        struct bms_live_data d = { .valid = true, .wall_time_ms = t, .pack_voltage_v = 50.0f };
        CHECK_EQ_INT(history_logger_record(hl, &d), GW_OK);
    }
    CHECK_EQ_INT(i, 1440);
    CHECK_EQ_INT(history_logger_flush(hl, 20000), GW_OK);
    uint64_t total = 0;
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_ALL_IDS, INT64_MIN, INT64_MAX, &total), GW_OK);
    CHECK_EQ_INT(total, 1440);
    CHECK_EQ_INT(history_logger_run_retention(hl, 20000), GW_OK);
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_ALL_IDS, INT64_MIN, now - 7 * DAY_MS, &total), GW_OK);
    CHECK_EQ_INT(total, 0);
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_ALL_IDS, now - 7 * DAY_MS, INT64_MAX, &total), GW_OK);
    CHECK_EQ_INT(total, 7 * 144);
    struct history_logger_stats st;
    history_logger_get_stats(hl, &st);
    CHECK_EQ_INT(st.rows_deleted, 3 * 144);

    /* live change to 3 days through the getter + EVENT_CONFIG_UPDATED: applied by itself */
    getter_value = hist_cfg(5, 3);
    struct app_config_change change = { .sections = CONFIG_SECTION_HISTORY, .changed = "history.retention_days" };
    CHECK(event_bus_publish(bus, EVENT_CONFIG_UPDATED, &change, sizeof change, 1000) == GW_OK);
    CHECK(wait_count(hl, INT64_MIN, INT64_MAX, 3 * 144));
    /* a day later (wall clock moves), a restart with 1 day: retention runs at start */
    history_logger_destroy(hl);
    fake_clock_set_wall_ms(now + DAY_MS);
    opt.config = hist_cfg(5, 1);
    CHECK_EQ_INT(history_logger_create(&opt, &hl), GW_OK);
    CHECK(wait_count(hl, INT64_MIN, INT64_MAX, 0));
    history_logger_destroy(hl);
    event_bus_destroy(bus);
    fake_clock_use_real();
    remove_dir(dir);
}

static void test_hourly_retention(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    const int64_t now = T_2025_01_17;
    fake_clock_set_wall_ms(now);
    fake_clock_set_ms(5000000);
    struct history_logger *hl = open_logger(dir, NULL, hist_cfg(5, 1));
    if (!hl)
        return;
    CHECK_EQ_INT(history_logger_run_retention(hl, 10000), GW_OK); /* the start-up run is done */
    for (int k = 1; k <= 48; k++) {
        struct bms_live_data d = { .valid = true, .wall_time_ms = now - k * 3600 * 1000LL };
        CHECK_EQ_INT(history_logger_record(hl, &d), GW_OK);
    }
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);
    uint64_t n = 0;
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_ALL_IDS, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 48);
    /* one hour later on the monotonic clock: the writer enforces retention by itself */
    fake_clock_advance_ms(3600 * 1000 + 1);
    CHECK(wait_count(hl, INT64_MIN, INT64_MAX, 24));
    history_logger_destroy(hl);
    fake_clock_use_real();
    remove_dir(dir);
}

struct brute {
    uint32_t count;
    double min[7], max[7], sum[7];
    uint32_t n[7];
};

/* The buckets by hand: sample i (time ts[i], values of make_sample) counts at time ts, or at the
 * start of its minute / hour (res_ms) as the downsampled tables count it. */
static void brute_buckets(const int64_t *ts, uint32_t n_samples, int64_t from, int64_t to, uint32_t nb,
                          int64_t res_ms, struct brute *bf)
{
    memset(bf, 0, nb * sizeof *bf);
    for (uint32_t i = 0; i < n_samples; i++) {
        int64_t at = res_ms ? ts[i] / res_ms * res_ms : ts[i];
        if (at < from || at >= to)
            continue;
        int64_t k = (at - from) * nb / (to - from);
        struct brute *x = &bf[k];
        struct bms_live_data d = make_sample(ts[i], i);
        /* the values the logger stores, through the same float conversions */
        int16_t tmin = 0, tmax = 0;
        bool has_t = bms_temp_min_dc(&d, &tmin) && bms_temp_max_dc(&d, &tmax);
        uint16_t lo = 65535, hi = 0;
        for (int c = 0; c < 4; c++) {
            uint16_t mv = (uint16_t)((d.cell_mv_x10[c] + 5) / 10);
            lo = mv < lo ? mv : lo;
            hi = mv > hi ? mv : hi;
        }
        double v[7] = { d.pack_voltage_v, d.pack_current_a, bms_soc_percent(&d), (float)tmin / 10.0f,
                        (float)tmax / 10.0f, lo, hi };
        x->count++;
        for (int f = 0; f < 7; f++) {
            if ((f == 3 || f == 4) && !has_t)
                continue;
            if (x->n[f] == 0 || v[f] < x->min[f])
                x->min[f] = v[f];
            if (x->n[f] == 0 || v[f] > x->max[f])
                x->max[f] = v[f];
            x->sum[f] += v[f];
            x->n[f]++;
        }
    }
}

/* Every bucket as the brute force says; returns the number of empty buckets. */
static int check_buckets(const struct history_bucket *b, const struct brute *bf, uint32_t nb, int64_t from,
                         int64_t to)
{
    int empty = 0, bad = 0;
    for (uint32_t k = 0; k < nb; k++) {
        bad += b[k].count != bf[k].count;
        CHECK(b[k].start_ms <= b[k].end_ms);
        if (k)
            CHECK_EQ_INT(b[k].start_ms, b[k - 1].end_ms);
        if (bf[k].count == 0) {
            empty++;
            CHECK(isnan(b[k].voltage_v.avg));
            continue;
        }
        const struct history_stat *got[7] = { &b[k].voltage_v, &b[k].current_a, &b[k].soc_percent,
                                              &b[k].temp_min_c, &b[k].temp_max_c, &b[k].cell_min_mv,
                                              &b[k].cell_max_mv };
        for (int f = 0; f < 7; f++) {
            bad += !(fabs(got[f]->min - bf[k].min[f]) <= 1e-4);
            bad += !(fabs(got[f]->max - bf[k].max[f]) <= 1e-4);
            bad += !(fabs(got[f]->avg - bf[k].sum[f] / bf[k].n[f]) <= 1e-4);
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(b[0].start_ms, from);
    CHECK_EQ_INT(b[nb - 1].end_ms, to);
    return empty;
}

/* Irregular samples with gaps, two batteries: the samples answer exactly as a brute force; the
 * per-minute and per-hour tables answer exactly as a brute force that counts each sample at the
 * start of its minute (hour), on unaligned ranges too; on aligned ranges all three agree; AUTO
 * picks the coarsest table a bucket is wide enough for. */
static void test_downsampling_vs_brute_force(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    struct history_logger_options opt = { .data_dir = dir, .config = hist_cfg(5, 3650), .queue_capacity = 20000 };
    struct history_logger *hl = NULL;
    CHECK_EQ_INT(history_logger_create(&opt, &hl), GW_OK);
    if (!hl)
        return;
    const int64_t base = T_2025_01_17;
    const uint32_t n_samples = 12000;
    uint32_t lcg = 99;
    int64_t *ts = malloc(sizeof *ts * n_samples);
    int64_t t = base;
    for (uint32_t i = 0; i < n_samples; i++) {
        lcg = lcg * 1664525u + 1013904223u;
        t += 1000 + (lcg >> 20) % 9000; /* irregular spacing, some gaps */
        if (i == 6000)
            t += 3 * 3600 * 1000LL; /* a long gap: empty buckets */
        ts[i] = t;
        struct bms_live_data d = make_sample(t, i);
        CHECK_EQ_INT(history_logger_record(hl, &d), GW_OK);
        d.battery_id = 1; /* another battery: must not leak into battery 0's buckets */
        d.pack_voltage_v = 1000.0f;
        if (i % 10 == 0)
            history_logger_record(hl, &d);
    }
    CHECK_EQ_INT(history_logger_flush(hl, 30000), GW_OK);
    struct history_logger_stats st;
    history_logger_get_stats(hl, &st);
    CHECK(st.rollups_complete);
    const int64_t from = base + 3600 * 1000LL + 17, to = t - 3600 * 1000LL; /* unaligned */
    const uint32_t nb = 37;
    struct history_bucket *b = calloc(100, sizeof *b);
    struct brute *bf = calloc(nb, sizeof *bf);
    struct history_query_info info;

    CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, from, to, nb, HISTORY_SOURCE_SAMPLES, b, &info), GW_OK);
    CHECK_EQ_INT(info.source, HISTORY_SOURCE_SAMPLES);
    brute_buckets(ts, n_samples, from, to, nb, 0, bf);
    CHECK(check_buckets(b, bf, nb, from, to) > 0); /* the long gap is visible */

    CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, from, to, nb, HISTORY_SOURCE_AUTO, b, &info), GW_OK);
    CHECK_EQ_INT(info.source, HISTORY_SOURCE_TEN_MINUTES); /* buckets of about 22 minutes */
    CHECK_EQ_INT(info.resolution_ms, 600000);
    brute_buckets(ts, n_samples, from, to, nb, 600000, bf);
    CHECK(check_buckets(b, bf, nb, from, to) > 0);
    CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, from, to, nb, HISTORY_SOURCE_MINUTES, b, &info), GW_OK);
    brute_buckets(ts, n_samples, from, to, nb, 60000, bf);
    CHECK(check_buckets(b, bf, nb, from, to) > 0);
    CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, from, to, 100, HISTORY_SOURCE_AUTO, b, &info), GW_OK);
    CHECK_EQ_INT(info.source, HISTORY_SOURCE_MINUTES); /* about 8 minutes */
    struct brute *bf100 = calloc(100, sizeof *bf100);
    brute_buckets(ts, n_samples, from, to, 100, 60000, bf100);
    check_buckets(b, bf100, 100, from, to);
    free(bf100);

    CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, from, to, 5, HISTORY_SOURCE_AUTO, b, &info), GW_OK);
    CHECK_EQ_INT(info.source, HISTORY_SOURCE_HOURS);
    brute_buckets(ts, n_samples, from, to, 5, 3600000, bf);
    check_buckets(b, bf, 5, from, to);
    CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, from, to, 5, HISTORY_SOURCE_MINUTES, b, &info), GW_OK);
    brute_buckets(ts, n_samples, from, to, 5, 60000, bf);
    check_buckets(b, bf, 5, from, to);

    /* Aligned on hours: samples, minutes and hours give the same buckets. */
    const int64_t afrom = base + 2 * 3600000LL, ato = afrom + 12 * 3600000LL;
    brute_buckets(ts, n_samples, afrom, ato, 6, 0, bf);
    enum history_source srcs[4] = { HISTORY_SOURCE_SAMPLES, HISTORY_SOURCE_MINUTES, HISTORY_SOURCE_TEN_MINUTES,
                                    HISTORY_SOURCE_HOURS };
    for (int k = 0; k < 4; k++) {
        CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, afrom, ato, 6, srcs[k], b, &info), GW_OK);
        check_buckets(b, bf, 6, afrom, ato);
    }
    /* Narrow buckets come from the samples. */
    CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, afrom, afrom + 3600000, 100, HISTORY_SOURCE_AUTO, b, &info),
                 GW_OK);
    CHECK_EQ_INT(info.source, HISTORY_SOURCE_SAMPLES);
    CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, afrom, ato, 6, (enum history_source)9, b, &info),
                 GW_ERR_INVAL);
    CHECK_STR(history_source_name(HISTORY_SOURCE_MINUTES), "minutes");
    free(bf);
    free(b);
    free(ts);
    history_logger_destroy(hl);
    remove_dir(dir);
}

struct sink {
    char *buf;
    size_t len, cap;
    int calls;
};

static int sink_write(void *ctx, const char *data, size_t len)
{
    struct sink *s = ctx;
    if (s->len + len + 1 > s->cap) {
        s->cap = (s->len + len + 1) * 2;
        s->buf = realloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->buf[s->len] = '\0';
    s->calls++;
    return 0;
}

static int stop_write(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return 1;
}

static void test_day_json_and_csv(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    struct history_logger *hl = open_logger(dir, NULL, hist_cfg(5, 3650));
    if (!hl)
        return;
    struct bms_live_data d;
    memset(&d, 0, sizeof d);
    d.valid = true;
    d.cell_count = 2;
    d.cell_mv_x10[0] = 32700;
    d.cell_mv_x10[1] = 32810;
    d.pack_voltage_v = 52.4f;
    d.pack_current_a = -12.5f;
    d.soc_ppm = 85200000;
    d.temp_dc[0] = 285;
    d.temp_present[0] = true;
    d.temp_dc[1] = 262;
    d.temp_present[1] = true;
    d.wall_time_ms = T_2025_01_17 - 1000; /* the day before: excluded */
    history_logger_record(hl, &d);
    d.wall_time_ms = T_2025_01_17 + 5000;
    history_logger_record(hl, &d);
    d.wall_time_ms = T_2025_01_17 + 10000;
    d.pack_voltage_v = 52.3f;
    d.pack_current_a = -12.4f;
    d.soc_ppm = 85100000;
    d.temp_present[0] = d.temp_present[1] = false;
    history_logger_record(hl, &d);
    d.wall_time_ms = T_2025_01_17 + DAY_MS; /* the next day: excluded */
    history_logger_record(hl, &d);
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);

    static const char expected[] =
        "timestamp,voltage,current,soc,temp_max,temp_min,cell_min_mv,cell_max_mv\n"
        "1737072005,52.400,-12.500,85.20,28.5,26.2,3270,3281\n"
        "1737072010,52.300,-12.400,85.10,,,3270,3281\n";
    struct sink s = { 0 };
    CHECK_EQ_INT(history_logger_export_csv_day(hl, "2025-01-17", 0, sink_write, &s), GW_OK);
    CHECK_STR(s.buf, expected);
    free(s.buf);
    CHECK_EQ_INT(history_logger_export_csv_day(hl, "2025-01-17", 0, stop_write, NULL), GW_ERR_IO);
    CHECK_EQ_INT(history_logger_export_csv_day(hl, "2025-13-01", 0, sink_write, &s), GW_ERR_INVAL);

    /* a FILE* gets the same bytes */
    char path[300];
    snprintf(path, sizeof path, "%s/day.csv", dir);
    FILE *fp = fopen(path, "w+");
    CHECK(fp != NULL);
    if (fp) {
        CHECK_EQ_INT(history_logger_export_csv_day_file(hl, "2025-01-17", 0, fp), GW_OK);
        CHECK_EQ_INT(ftell(fp), (long)strlen(expected));
        fclose(fp);
    }

    char buf[2048];
    size_t len = 0;
    CHECK_EQ_INT(history_logger_get_day_json(hl, "2025-01-17", 0, buf, sizeof buf, &len), GW_OK);
    CHECK_EQ_INT(len, strlen(buf));
    cJSON *j = cJSON_Parse(buf);
    CHECK(cJSON_IsObject(j));
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "date")), "2025-01-17");
    cJSON *samples = cJSON_GetObjectItem(j, "samples");
    CHECK_EQ_INT(cJSON_GetArraySize(samples), 2);
    cJSON *first = cJSON_GetArrayItem(samples, 0);
    if (first) {
        CHECK_EQ_INT(cJSON_GetObjectItem(first, "timestamp")->valuedouble, 1737072005);
        CHECK_NEAR(cJSON_GetObjectItem(first, "voltage")->valuedouble, 52.4, 1e-6);
        CHECK_NEAR(cJSON_GetObjectItem(first, "current")->valuedouble, -12.5, 1e-6);
        CHECK_NEAR(cJSON_GetObjectItem(first, "soc")->valuedouble, 85.2, 1e-6);
        CHECK_NEAR(cJSON_GetObjectItem(first, "temp_max")->valuedouble, 28.5, 1e-6);
        CHECK_NEAR(cJSON_GetObjectItem(first, "temp_min")->valuedouble, 26.2, 1e-6);
        CHECK_EQ_INT(cJSON_GetObjectItem(first, "cell_min_mv")->valueint, 3270);
        CHECK_EQ_INT(cJSON_GetObjectItem(first, "cell_max_mv")->valueint, 3281);
    }
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(samples, 1), "temp_max")));
    cJSON_Delete(j);
    CHECK_EQ_INT(history_logger_get_day_json(hl, "2025-01-17", 0, buf, 100, &len), GW_ERR_OVERFLOW);
    CHECK_STR(buf, "");
    CHECK_EQ_INT(history_logger_get_day_json(hl, "2025-1-17", 0, buf, sizeof buf, &len), GW_ERR_INVAL);
    CHECK_EQ_INT(history_logger_get_day_json(hl, "2023-02-29", 0, buf, sizeof buf, &len), GW_ERR_INVAL);
    CHECK_EQ_INT(history_logger_get_day_json(hl, "2025-01-18", 0, buf, sizeof buf, &len), GW_OK);
    CHECK(strstr(buf, "\"samples\":[{") != NULL);
    /* NULL = today (wall clock) */
    fake_clock_set_wall_ms(T_2025_01_17 + 3600 * 1000LL);
    CHECK_EQ_INT(history_logger_get_day_json(hl, NULL, 0, buf, sizeof buf, &len), GW_OK);
    CHECK(strncmp(buf, "{\"date\":\"2025-01-17\"", 20) == 0);
    fake_clock_use_real();
    int64_t a, z;
    CHECK_EQ_INT(history_day_range("2024-02-29", 0, &a, &z), GW_OK);
    CHECK_EQ_INT(z - a, DAY_MS);
    CHECK_EQ_INT(history_day_range("2024-02-30", 0, &a, &z), GW_ERR_INVAL);
    CHECK_EQ_INT(history_day_range("abcd-ef-gh", 0, &a, &z), GW_ERR_INVAL);
    history_logger_destroy(hl);
    remove_dir(dir);
}

/* A bank of n online packs (ids 0..n-1) carrying make_sample(wall_ms, i) decoded at now_ms, with
 * the aggregate fields the logger stores. */
static void make_view(struct battery_view *v, unsigned n, int64_t wall_ms, uint64_t now_ms, uint32_t i)
{
    memset(v, 0, sizeof *v);
    v->pack_count = (uint8_t)n;
    v->online_count = (uint8_t)n;
    v->timestamp_ms = now_ms;
    v->wall_time_ms = wall_ms;
    for (unsigned k = 0; k < n; k++) {
        struct battery_pack *p = &v->packs[k];
        p->id = (uint8_t)k;
        snprintf(p->name, sizeof p->name, "pack %u", k + 1);
        p->state = BATTERY_PACK_ONLINE;
        p->live = make_sample(wall_ms, i + k);
        p->live.battery_id = (uint8_t)k;
        p->live.timestamp_ms = now_ms;
    }
    v->voltage_v = 51.25f;
    v->current_a = -20.5f * (float)n;
    v->soc_pct = 64.5f;
    v->soh_pct = 97.0f;
    v->soh_valid = true;
    v->min_cell_v = 3.201f;
    v->max_cell_v = 3.312f;
    v->cell_spread_mv = 111.0f;
    v->have_temp = true;
    v->temp_min_c = 18.5f;
    v->temp_max_c = 24.0f;
    v->online_status = BMS_STATUS_DISCHARGING;
}

static void test_period_sampling_from_bus(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    fake_clock_set_ms(1000000);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    getter_value = hist_cfg(1, 3650);
    struct history_logger_options opt = { .bus = bus, .data_dir = dir, .config = hist_cfg(1, 3650),
                                          .get_config = getter };
    struct history_logger *hl = NULL;
    CHECK_EQ_INT(history_logger_create(&opt, &hl), GW_OK);
    if (!hl)
        return;
    struct battery_view *v = malloc(sizeof *v);
    /* a view every 200 ms for 10 s at period 1 s: 10 rows per pack and 10 of the aggregate */
    for (int i = 0; i < 50; i++) {
        make_view(v, 2, T_2025_01_17 + i * 200, gw_now_ms(), (uint32_t)i);
        CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
        CHECK(event_bus_flush(bus, 5000) == GW_OK); /* the handler reads the clock we set */
        fake_clock_advance_ms(200);
    }
    /* pack 2 gives one more sample, turns stale (that sample held), then shows online again
     * with the same sample: it is stored once, never again as new; pack 1 and the aggregate go on */
    int64_t wall = T_2025_01_17 + 50 * 200;
    make_view(v, 2, wall, gw_now_ms(), 50);
    struct bms_live_data held = v->packs[1].live;
    for (int i = 0; i < 10; i++) {
        make_view(v, 2, wall + i * 200, gw_now_ms(), 50 + (uint32_t)i);
        v->packs[1].live = held;
        bool stale = i >= 1 && i < 5;
        v->packs[1].state = stale ? BATTERY_PACK_STALE : BATTERY_PACK_ONLINE;
        v->online_count = stale ? 1 : 2;
        CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
        CHECK(event_bus_flush(bus, 5000) == GW_OK);
        fake_clock_advance_ms(200);
    }
    /* a short payload is ignored */
    char junk[8] = { 0 };
    CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, junk, sizeof junk, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);
    uint64_t n = 0;
    CHECK_EQ_INT(history_logger_count(hl, 0, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 12);
    CHECK_EQ_INT(history_logger_count(hl, 1, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 10 + 1); /* + the held sample, once */
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_AGGREGATE, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 12);
    /* period 5 s by configuration: 2 rows of each in the next 10 s */
    getter_value = hist_cfg(5, 3650);
    struct app_config_change change = { .sections = CONFIG_SECTION_HISTORY };
    CHECK(event_bus_publish(bus, EVENT_CONFIG_UPDATED, &change, sizeof change, 1000) == GW_OK);
    for (int i = 0; i < 50; i++) {
        make_view(v, 2, T_2025_01_17 + 100000 + i * 200, gw_now_ms(), (uint32_t)i);
        CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
        CHECK(event_bus_flush(bus, 5000) == GW_OK);
        fake_clock_advance_ms(200);
    }
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);
    CHECK_EQ_INT(history_logger_count(hl, 0, T_2025_01_17 + 100000, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_AGGREGATE, T_2025_01_17 + 100000, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_ALL_IDS, T_2025_01_17 + 100000, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 6);
    /* no pack online (no data): no row at all */
    make_view(v, 2, T_2025_01_17 + 200000, gw_now_ms() + 60000, 1);
    for (int k = 0; k < 2; k++)
        v->packs[k].state = BATTERY_PACK_OFFLINE;
    v->online_count = 0;
    v->conditions = BATTERY_COND_PACK_OFFLINE | BATTERY_COND_NO_DATA;
    fake_clock_advance_ms(60000);
    CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_ALL_IDS, T_2025_01_17 + 200000, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 0);
    /* disabled: nothing recorded, record() refuses */
    getter_value.enabled = false;
    CHECK(event_bus_publish(bus, EVENT_CONFIG_UPDATED, &change, sizeof change, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    struct bms_live_data d = make_sample(T_2025_01_17 + 500000, 1);
    CHECK_EQ_INT(history_logger_record(hl, &d), GW_ERR_STATE);
    CHECK_EQ_INT(history_logger_record_view(hl, v, NULL), GW_ERR_STATE);
    free(v);
    history_logger_destroy(hl);
    event_bus_destroy(bus);
    fake_clock_use_real();
    remove_dir(dir);
}

/* Drives the bus path: views of 2 packs at now_ms = start + t for each t in polls[0..n) (ms from
 * the start, increasing), each pack's sample decoded at that time (wall = T_2025_01_17 + t), the
 * pack samples held (not fresh) while t is in [hold_from, hold_to). */
static void feed_views(struct event_bus *bus, struct battery_view *v, uint64_t start, const uint64_t *polls, size_t n,
                       uint64_t hold_from, uint64_t hold_to)
{
    struct bms_live_data held[2];
    for (size_t i = 0; i < n; i++) {
        uint64_t t = polls[i];
        fake_clock_set_ms(start + t);
        make_view(v, 2, T_2025_01_17 + (int64_t)t, start + t, (uint32_t)i);
        bool hold = t >= hold_from && t < hold_to;
        for (int k = 0; k < 2; k++) {
            if (hold)
                v->packs[k].live = held[k];
            else
                held[k] = v->packs[k].live;
        }
        CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
        CHECK(event_bus_flush(bus, 5000) == GW_OK); /* the handler reads the clock we set */
    }
}

/* Every stored row of id after T_2025_01_17 + from (ms): one per slot of the grid of period_ms
 * (row times are the poll times, the clock started on the grid), never two in a slot, and per
 * whole minute [from, to) exactly want rows. Returns the rows seen. */
static size_t check_grid(struct history_logger *hl, uint8_t id, int64_t from, int64_t to, int64_t period_ms,
                         size_t want_per_minute)
{
    enum { MAX_ROWS = 200 };
    struct history_sample *s = calloc(MAX_ROWS, sizeof *s);
    size_t n = 0;
    CHECK_EQ_INT(history_logger_query_samples(hl, id, T_2025_01_17 + from, T_2025_01_17 + to, s, MAX_ROWS, &n), GW_OK);
    for (size_t i = 1; i < n; i++) {
        int64_t a = (s[i - 1].ts_ms - T_2025_01_17) / period_ms, b = (s[i].ts_ms - T_2025_01_17) / period_ms;
        if (a == b)
            fprintf(stderr, "  battery %u: two rows in slot %lld (at %lld and %lld ms)\n", id, (long long)a,
                    (long long)(s[i - 1].ts_ms - T_2025_01_17), (long long)(s[i].ts_ms - T_2025_01_17));
        CHECK(b > a);
    }
    for (int64_t m = from; m + 60000 <= to; m += 60000) {
        uint64_t c = 0;
        CHECK_EQ_INT(history_logger_count(hl, id, T_2025_01_17 + m, T_2025_01_17 + m + 60000, &c), GW_OK);
        if (c != want_per_minute)
            fprintf(stderr, "  battery %u: %llu rows in minute %lld, want %zu\n", id, (unsigned long long)c,
                    (long long)(m / 60000), want_per_minute);
        CHECK_EQ_INT(c, want_per_minute);
    }
    free(s);
    return n;
}

/* Rows sit on a fixed grid of the period (issue 11): at 100 ms polls and a 5 s period exactly 12
 * rows per minute per battery (the old "period minus a tolerance since the last row" gave one
 * every 4.5 s: 13.3), with jittered polls too; a slot is missing only when no fresh sample
 * arrived in it. */
static void test_rows_on_a_grid_of_the_period(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    const uint64_t start = 1000000; /* on the 5 s grid: the minutes below hold whole slots */
    fake_clock_set_ms(start);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct history_logger *hl = open_logger(dir, bus, hist_cfg(5, 3650));
    struct battery_view *v = malloc(sizeof *v);
    enum { POLLS = 6000 };
    uint64_t *polls = malloc(POLLS * sizeof *polls);
    if (!hl || !v || !polls)
        return;
    const uint8_t ids[] = { 0, 1, HISTORY_AGGREGATE };

    /* 10 minutes of polls every 100 ms */
    for (size_t i = 0; i < POLLS; i++)
        polls[i] = i * 100;
    feed_views(bus, v, start, polls, POLLS, UINT64_MAX, UINT64_MAX);
    /* 10 minutes of polls 100 ms +- 45 ms apart (a fixed pseudo-random sequence) */
    uint32_t seed = 12345;
    uint64_t t = 600000;
    size_t n = 0;
    while (t < 1200000 && n < POLLS) {
        polls[n++] = t;
        seed = seed * 1103515245u + 12345u;
        t += 55 + (seed >> 16) % 91;
    }
    feed_views(bus, v, start, polls, n, UINT64_MAX, UINT64_MAX);
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);
    for (size_t k = 0; k < 3; k++) {
        CHECK_EQ_INT(check_grid(hl, ids[k], 0, 600000, 5000, 12), 120);
        CHECK_EQ_INT(check_grid(hl, ids[k], 600000, 1200000, 5000, 12), 120);
    }

    /* A minute of 100 ms polls where the packs' samples stop being fresh from 1 234 400 to
     * 1 241 700 (slot 247, [1 235 000, 1 240 000), sees only the sample of slot 246 again: no row;
     * slot 248 takes the first fresh one, at 1 241 700), then a 6 s gap without any view (slot 250
     * missed): 10 rows in that minute, one per slot that saw a fresh sample. */
    n = 0;
    for (t = 1200000; t < 1260000; t += 100)
        if (t < 1249900 || t >= 1255900)
            polls[n++] = t;
    feed_views(bus, v, start, polls, n, 1234400, 1241700);
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);
    for (size_t k = 0; k < 3; k++) {
        CHECK_EQ_INT(check_grid(hl, ids[k], 1200000, 1260000, 5000, 10), 10);
        struct history_sample s[12];
        size_t got = 0;
        CHECK_EQ_INT(history_logger_query_samples(hl, ids[k], T_2025_01_17 + 1240000, T_2025_01_17 + 1260000, s, 12,
                                                  &got), GW_OK);
        CHECK_EQ_INT(got, 3); /* slots 248, 249 and 251 */
        if (got == 3) {
            CHECK_EQ_INT(s[0].ts_ms - T_2025_01_17, 1241700);
            CHECK_EQ_INT(s[1].ts_ms - T_2025_01_17, 1245000);
            CHECK_EQ_INT(s[2].ts_ms - T_2025_01_17, 1255900);
        }
    }
    free(polls);
    free(v);
    history_logger_destroy(hl);
    event_bus_destroy(bus);
    fake_clock_use_real();
    remove_dir(dir);
}

/* One row per online pack and one of the aggregate; queries and exports by pack id, the
 * aggregate by default; the ids present. */
static void test_view_rows_per_pack_and_aggregate(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    struct history_logger *hl = open_logger(dir, NULL, hist_cfg(5, 3650));
    if (!hl)
        return;
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 3, T_2025_01_17 + 5000, 100000, 7);
    v->packs[2].state = BATTERY_PACK_OFFLINE; /* pack 3 is out: no row of it */
    v->online_count = 2;
    v->conditions = BATTERY_COND_PACK_OFFLINE;
    size_t rows = 0;
    CHECK_EQ_INT(history_logger_record_view(hl, v, &rows), GW_OK);
    CHECK_EQ_INT(rows, 3);
    /* the same view again (no new sample): nothing */
    CHECK_EQ_INT(history_logger_record_view(hl, v, &rows), GW_OK);
    CHECK_EQ_INT(rows, 0);
    /* ten seconds later, new samples; pack 2 rejoining (fresh data) still gives a row */
    make_view(v, 3, T_2025_01_17 + 15000, 110000, 8);
    v->packs[1].state = BATTERY_PACK_REJOINING;
    v->packs[1].conditions = BATTERY_COND_REJOIN_BLOCKED;
    v->packs[2].state = BATTERY_PACK_NEVER_SEEN;
    v->packs[2].live.valid = false;
    v->online_count = 2;
    v->voltage_v = 51.5f;
    CHECK_EQ_INT(history_logger_record_view(hl, v, &rows), GW_OK);
    CHECK_EQ_INT(rows, 3);
    CHECK_EQ_INT(history_logger_record_view(NULL, v, &rows), GW_ERR_INVAL);
    CHECK_EQ_INT(history_logger_record_view(hl, NULL, &rows), GW_ERR_INVAL);
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);

    struct history_sample s[4];
    size_t n = 0;
    CHECK_EQ_INT(history_logger_query_samples(hl, HISTORY_AGGREGATE, T_2025_01_17, T_2025_01_17 + DAY_MS, s, 4, &n),
                 GW_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(s[0].battery_id, HISTORY_AGGREGATE);
        CHECK_EQ_INT(s[0].ts_ms, T_2025_01_17 + 5000);
        CHECK_NEAR(s[0].voltage_v, 51.25, 1e-4);
        CHECK_NEAR(s[0].current_a, -61.5, 1e-4);
        CHECK_NEAR(s[0].soc_percent, 64.5, 1e-4);
        CHECK_NEAR(s[0].soh_percent, 97.0, 1e-4);
        CHECK_NEAR(s[0].temp_min_c, 18.5, 1e-4);
        CHECK_NEAR(s[0].temp_max_c, 24.0, 1e-4);
        CHECK_EQ_INT(s[0].cell_min_mv, 3201);
        CHECK_EQ_INT(s[0].cell_max_mv, 3312);
        CHECK_NEAR(s[0].cell_spread_mv, 111.0, 1e-4);
        CHECK_EQ_INT(s[0].status, BMS_STATUS_DISCHARGING);
        CHECK_EQ_INT(s[0].cell_count, 0);
        CHECK_NEAR(s[1].voltage_v, 51.5, 1e-4);
    }
    CHECK_EQ_INT(history_logger_query_samples(hl, 1, T_2025_01_17, T_2025_01_17 + DAY_MS, s, 4, &n), GW_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        struct bms_live_data d = make_sample(0, 8 + 1);
        CHECK_EQ_INT(s[1].battery_id, 1);
        CHECK_NEAR(s[1].voltage_v, d.pack_voltage_v, 1e-4);
        CHECK_EQ_INT(s[1].cell_count, 4);
    }
    CHECK_EQ_INT(history_logger_query_samples(hl, 2, T_2025_01_17, T_2025_01_17 + DAY_MS, s, 4, &n), GW_OK);
    CHECK_EQ_INT(n, 0);
    uint8_t ids[8];
    CHECK_EQ_INT(history_logger_list_ids(hl, T_2025_01_17, T_2025_01_17 + DAY_MS, ids, 8, &n), GW_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(ids[0], 0);
        CHECK_EQ_INT(ids[1], 1);
        CHECK_EQ_INT(ids[2], HISTORY_AGGREGATE);
    }
    CHECK_EQ_INT(history_logger_list_ids(hl, T_2025_01_17, T_2025_01_17 + DAY_MS, ids, 1, &n), GW_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(history_logger_list_ids(hl, T_2025_01_17 + DAY_MS, T_2025_01_17 + 2 * DAY_MS, ids, 8, &n), GW_OK);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(history_logger_list_ids(hl, 10, 0, ids, 8, &n), GW_ERR_INVAL);
    uint64_t c = 0;
    CHECK_EQ_INT(history_logger_count(hl, 256, INT64_MIN, INT64_MAX, &c), GW_ERR_INVAL);
    CHECK_EQ_INT(history_logger_count(hl, -2, INT64_MIN, INT64_MAX, &c), GW_ERR_INVAL);

    /* the day's CSV of the aggregate and of a pack */
    static const char expected[] =
        "timestamp,voltage,current,soc,temp_max,temp_min,cell_min_mv,cell_max_mv\n"
        "1737072005,51.250,-61.500,64.50,24.0,18.5,3201,3312\n"
        "1737072015,51.500,-61.500,64.50,24.0,18.5,3201,3312\n";
    struct sink out = { 0 };
    CHECK_EQ_INT(history_logger_export_csv_day(hl, "2025-01-17", HISTORY_AGGREGATE, sink_write, &out), GW_OK);
    CHECK_STR(out.buf, expected);
    free(out.buf);
    memset(&out, 0, sizeof out);
    CHECK_EQ_INT(history_logger_export_csv_day(hl, "2025-01-17", 0, sink_write, &out), GW_OK);
    int lines = 0;
    for (const char *p = out.buf; p && *p; p++)
        lines += *p == '\n';
    CHECK_EQ_INT(lines, 3);
    free(out.buf);
    char buf[2048];
    CHECK_EQ_INT(history_logger_get_day_json(hl, "2025-01-17", HISTORY_AGGREGATE, buf, sizeof buf, NULL), GW_OK);
    CHECK(strncmp(buf, "{\"date\":\"2025-01-17\",\"battery_id\":255,\"samples\":[{", 50) == 0);
    struct history_bucket b[1];
    CHECK_EQ_INT(history_logger_query_buckets(hl, HISTORY_AGGREGATE, T_2025_01_17, T_2025_01_17 + DAY_MS, 1, b), GW_OK);
    CHECK_EQ_INT(b[0].count, 2);
    CHECK_NEAR(b[0].voltage_v.avg, (51.25 + 51.5) / 2, 1e-4);
    free(v);
    history_logger_destroy(hl);
    remove_dir(dir);
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "  sql failed: %s\n", err ? err : "?");
    CHECK_EQ_INT(rc, SQLITE_OK);
    sqlite3_free(err);
    sqlite3_close(db);
}

static int64_t query_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_open(path, &db) == SQLITE_OK && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void check_schema_v2(const char *path)
{
    CHECK_EQ_INT(query_int(path, "PRAGMA user_version"), HISTORY_SCHEMA_VERSION);
    CHECK_EQ_INT(query_int(path, "SELECT COUNT(*) FROM pragma_table_info('samples') WHERE name IN "
                                 "('battery_id','soh','cell_spread_mv','status','cells')"), 5);
    CHECK_EQ_INT(query_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE type='index' AND name IN "
                                 "('samples_ts','samples_battery_ts')"), 2);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Databases written by older versions, created here: the first single-BMS layout (no battery_id,
 * no soh/spread/status/cells) and the one before several packs (battery_id, no pack index, no
 * schema version). Both are migrated in place when opened, keep every row, and take new rows. */
static void test_migration_from_old_schema(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    char path[300];
    snprintf(path, sizeof path, "%s/history.db", dir);
    exec_sql(path, "CREATE TABLE samples(ts_ms INTEGER NOT NULL, voltage REAL, current REAL, soc REAL,"
                   " temp_min REAL, temp_max REAL, cell_min_mv INTEGER, cell_max_mv INTEGER);"
                   "CREATE INDEX samples_ts ON samples(ts_ms);"
                   "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99)"
                   " INSERT INTO samples SELECT 1737072000000 + i * 5000, 52.0 + i * 0.01, -10.0, 80.0, 20.0, 25.0,"
                   " 3290, 3310 FROM n;");
    CHECK_EQ_INT(query_int(path, "PRAGMA user_version"), 0);

    struct history_logger *hl = open_logger(dir, NULL, hist_cfg(5, 3650));
    if (!hl)
        return;
    struct history_logger_stats st;
    history_logger_get_stats(hl, &st);
    CHECK(st.storage_ok);
    check_schema_v2(path);
    uint64_t n = 0;
    CHECK_EQ_INT(history_logger_count(hl, 0, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 100); /* the old rows are pack 0's */
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_AGGREGATE, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 0);
    struct history_sample s[2];
    size_t got = 0;
    CHECK_EQ_INT(history_logger_query_samples(hl, 0, T_2025_01_17 + 5000, T_2025_01_17 + 10000, s, 2, &got), GW_OK);
    CHECK_EQ_INT(got, 1);
    if (got == 1) {
        CHECK_NEAR(s[0].voltage_v, 52.01, 1e-4);
        CHECK(isnan(s[0].soh_percent));
        CHECK_EQ_INT(s[0].cell_min_mv, 3290);
        CHECK_EQ_INT(s[0].cell_count, 0);
    }
    /* new rows next to the old ones */
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 2, T_2025_01_17 + 600000, 5000, 1);
    size_t rows = 0;
    CHECK_EQ_INT(history_logger_record_view(hl, v, &rows), GW_OK);
    CHECK_EQ_INT(rows, 3);
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);
    CHECK_EQ_INT(history_logger_count(hl, 0, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 101);
    struct sink out = { 0 };
    CHECK_EQ_INT(history_logger_export_csv_day(hl, "2025-01-17", 0, sink_write, &out), GW_OK);
    CHECK(out.buf && strstr(out.buf, "\n1737072005,52.010,-10.000,80.00,25.0,20.0,3290,3310\n") != NULL);
    free(out.buf);
    history_logger_destroy(hl);
    /* opened again: nothing to migrate, nothing lost */
    hl = open_logger(dir, NULL, hist_cfg(5, 3650));
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_ALL_IDS, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 103);
    history_logger_destroy(hl);
    check_schema_v2(path);

    /* the layout before several packs: battery_id already there (kept), no pack index */
    CHECK_EQ_INT(unlink(path), 0);
    char side[320];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    exec_sql(path, "CREATE TABLE samples(ts_ms INTEGER NOT NULL, battery_id INTEGER NOT NULL, voltage REAL,"
                   " current REAL, soc REAL, soh REAL, temp_min REAL, temp_max REAL, cell_min_mv INTEGER,"
                   " cell_max_mv INTEGER, cell_spread_mv REAL, status INTEGER, cells BLOB);"
                   "CREATE INDEX samples_ts ON samples(ts_ms);"
                   "INSERT INTO samples(ts_ms,battery_id,voltage) VALUES(1737072000000,0,52.0),(1737072001000,1,53.0);");
    hl = open_logger(dir, NULL, hist_cfg(5, 3650));
    check_schema_v2(path);
    CHECK_EQ_INT(history_logger_count(hl, 0, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(history_logger_count(hl, 1, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 1);
    history_logger_destroy(hl);

    /* not a history table at all: a storage error, the file left alone */
    CHECK_EQ_INT(unlink(path), 0);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    exec_sql(path, "CREATE TABLE samples(x INTEGER); INSERT INTO samples VALUES(7);");
    hl = open_logger(dir, NULL, hist_cfg(5, 3650));
    history_logger_get_stats(hl, &st);
    CHECK(!st.storage_ok);
    history_logger_destroy(hl);
    CHECK_EQ_INT(query_int(path, "SELECT x FROM samples"), 7);
    CHECK_EQ_INT(query_int(path, "PRAGMA user_version"), 0);
    free(v);
    remove_dir(dir);
}

/* Buckets of two sources must be the same (count, min, avg, max of every field). */
static void check_same_buckets(struct history_logger *hl, uint8_t id, int64_t from, int64_t to, uint32_t nb,
                               enum history_source a, enum history_source b)
{
    struct history_bucket *x = calloc(nb, sizeof *x), *y = calloc(nb, sizeof *y);
    CHECK_EQ_INT(history_logger_query_buckets_from(hl, id, from, to, nb, a, x, NULL), GW_OK);
    CHECK_EQ_INT(history_logger_query_buckets_from(hl, id, from, to, nb, b, y, NULL), GW_OK);
    int bad = 0, filled = 0;
    for (uint32_t k = 0; k < nb; k++) {
        bad += x[k].count != y[k].count;
        filled += x[k].count > 0;
        const struct history_stat *sx[7] = { &x[k].voltage_v, &x[k].current_a, &x[k].soc_percent, &x[k].temp_min_c,
                                             &x[k].temp_max_c, &x[k].cell_min_mv, &x[k].cell_max_mv };
        const struct history_stat *sy[7] = { &y[k].voltage_v, &y[k].current_a, &y[k].soc_percent, &y[k].temp_min_c,
                                             &y[k].temp_max_c, &y[k].cell_min_mv, &y[k].cell_max_mv };
        for (int f = 0; f < 7; f++) {
            bad += isnan(sx[f]->avg) != isnan(sy[f]->avg);
            if (!isnan(sx[f]->avg))
                bad += !(fabs(sx[f]->min - sy[f]->min) <= 1e-6 && fabs(sx[f]->max - sy[f]->max) <= 1e-6 &&
                         fabs(sx[f]->avg - sy[f]->avg) <= 1e-6);
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(filled > 0);
    free(x);
    free(y);
}

/* A version 2 database with three days of samples gets its per-minute and per-hour tables in the
 * background: meanwhile queries read the samples; samples written during the build count once;
 * once built, every source gives the same buckets and a reopen has nothing left to build. */
static void test_rollups_built_for_an_old_database(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    char path[300];
    snprintf(path, sizeof path, "%s/history.db", dir);
    exec_sql(path, "CREATE TABLE samples(ts_ms INTEGER NOT NULL, battery_id INTEGER NOT NULL DEFAULT 0, voltage REAL,"
                   " current REAL, soc REAL, soh REAL, temp_min REAL, temp_max REAL, cell_min_mv INTEGER,"
                   " cell_max_mv INTEGER, cell_spread_mv REAL, status INTEGER, cells BLOB);"
                   "CREATE INDEX samples_ts ON samples(ts_ms);"
                   "CREATE INDEX samples_battery_ts ON samples(battery_id, ts_ms);"
                   "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 25919)"
                   " INSERT INTO samples(ts_ms,battery_id,voltage,current,soc,temp_min,temp_max,cell_min_mv,cell_max_mv)"
                   " SELECT 1737072000000 + i * 10000, i % 3 = 0, 50.0 + (i % 97) * 0.01, -20.0 + (i % 41),"
                   " (i % 1000) / 10.0, CASE WHEN i % 7 = 0 THEN NULL ELSE 15.0 + i % 9 END,"
                   " CASE WHEN i % 7 = 0 THEN NULL ELSE 20.0 + i % 5 END, 3200 + i % 50, 3300 + i % 60 FROM n;"
                   "PRAGMA user_version = 2;");
    const int64_t start = T_2025_01_17, newest = T_2025_01_17 + 25919 * 10000LL;
    struct history_logger *hl = open_logger(dir, NULL, hist_cfg(5, 3650));
    if (!hl)
        return;
    struct history_logger_stats st;
    history_logger_get_stats(hl, &st);
    struct history_bucket *b = calloc(1000, sizeof *b);
    struct history_query_info info;
    CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, start, start + 3 * DAY_MS, 72, HISTORY_SOURCE_AUTO, b, &info),
                 GW_OK);
    if (!st.rollups_complete) {
        CHECK(info.source == HISTORY_SOURCE_SAMPLES || info.source == HISTORY_SOURCE_HOURS);
        CHECK(st.rollups_from_ms > start);
    }
    /* New samples during the build, in the hour of the newest old one and after it. */
    for (uint32_t i = 0; i < 200; i++) {
        struct bms_live_data d = make_sample(newest + 1000 + i * 5000LL, i);
        CHECK_EQ_INT(history_logger_record(hl, &d), GW_OK);
    }
    CHECK_EQ_INT(history_logger_flush(hl, 30000), GW_OK);
    for (int i = 0; i < 2000; i++) {
        history_logger_get_stats(hl, &st);
        if (st.rollups_complete)
            break;
        gw_sleep_ms(10);
    }
    CHECK(st.rollups_complete);
    CHECK_EQ_INT(query_int(path, "PRAGMA user_version"), HISTORY_SCHEMA_VERSION);
    CHECK_EQ_INT(query_int(path, "SELECT value = -9223372036854775808 FROM history_meta WHERE key = 'rollup_from_ms'"), 1);
    CHECK_EQ_INT(query_int(path, "SELECT sum(n) FROM history_1m"), 25920 + 200);
    CHECK_EQ_INT(query_int(path, "SELECT sum(n) FROM history_10m"), 25920 + 200);
    CHECK_EQ_INT(query_int(path, "SELECT sum(n) FROM history_1h"), 25920 + 200);
    const int64_t end = start + 4 * DAY_MS;
    for (uint8_t id = 0; id <= 1; id++) {
        check_same_buckets(hl, id, start, end, 96, HISTORY_SOURCE_SAMPLES, HISTORY_SOURCE_HOURS);
        check_same_buckets(hl, id, start, end, 96, HISTORY_SOURCE_SAMPLES, HISTORY_SOURCE_MINUTES);
        check_same_buckets(hl, id, start, end, 96, HISTORY_SOURCE_SAMPLES, HISTORY_SOURCE_TEN_MINUTES);
        check_same_buckets(hl, id, start + 7 * 60000, start + 7 * 60000 + 600 * 60000LL, 600, HISTORY_SOURCE_SAMPLES,
                           HISTORY_SOURCE_MINUTES);
    }
    CHECK_EQ_INT(history_logger_query_buckets_from(hl, 0, start, end, 1000, HISTORY_SOURCE_AUTO, b, &info), GW_OK);
    CHECK_EQ_INT(info.source, HISTORY_SOURCE_MINUTES); /* 5.76 min */
    history_logger_destroy(hl);
    hl = open_logger(dir, NULL, hist_cfg(5, 3650));
    history_logger_get_stats(hl, &st);
    CHECK(st.rollups_complete); /* nothing left to build */
    /* Retention removes the downsampled rows with the samples. */
    history_logger_destroy(hl);
    hl = open_logger(dir, NULL, hist_cfg(5, 1));
    CHECK_EQ_INT(history_logger_run_retention(hl, 30000), GW_OK);
    CHECK_EQ_INT(query_int(path, "SELECT count(*) FROM history_1m"), 0);
    CHECK_EQ_INT(query_int(path, "SELECT count(*) FROM history_10m"), 0);
    CHECK_EQ_INT(query_int(path, "SELECT count(*) FROM history_1h"), 0);
    history_logger_destroy(hl);
    free(b);
    remove_dir(dir);
}

struct storage_events {
    atomic_int errors, oks;
};

static void on_storage(const struct gw_event *ev, void *ctx)
{
    struct storage_events *s = ctx;
    const struct app_storage_error *e = ev->payload;
    if (strcmp(e->module, "history") != 0)
        return;
    if (ev->id == EVENT_STORAGE_ERROR)
        atomic_fetch_add(&s->errors, 1);
    else
        atomic_fetch_add(&s->oks, 1);
}

static bool wait_flush_ok(struct history_logger *hl)
{
    bool ok;
    WAIT_FOR(ok, history_logger_flush(hl, 1000) == GW_OK, 60000); /* the writer backs off between retries */
    return ok;
}

static bool wait_atomic(atomic_int *v, int want)
{
    bool ok;
    WAIT_FOR(ok, atomic_load(v) >= want, 10000);
    return ok;
}

static void test_unwritable_directory_then_recovers(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    char blocker[300], data_dir[320];
    snprintf(blocker, sizeof blocker, "%s/blocker", dir);
    snprintf(data_dir, sizeof data_dir, "%s/data", blocker); /* a path under a regular file */
    FILE *fp = fopen(blocker, "w");
    CHECK(fp != NULL);
    if (fp)
        fclose(fp);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    static struct storage_events ev;
    atomic_store(&ev.errors, 0);
    atomic_store(&ev.oks, 0);
    event_bus_subscribe(bus, EVENT_STORAGE_ERROR, on_storage, &ev, "test");
    event_bus_subscribe(bus, EVENT_STORAGE_OK, on_storage, &ev, "test");
    struct history_logger *hl = open_logger(data_dir, bus, hist_cfg(5, 3650));
    if (!hl)
        return;
    CHECK(wait_atomic(&ev.errors, 1));
    for (uint32_t i = 0; i < 20; i++) {
        struct bms_live_data d = make_sample(T_2025_01_17 + i * 1000, i);
        CHECK_EQ_INT(history_logger_record(hl, &d), GW_OK);
    }
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_ERR_STORAGE);
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_ERR_STORAGE);
    struct history_logger_stats st;
    history_logger_get_stats(hl, &st);
    CHECK(!st.storage_ok);
    CHECK_EQ_INT(st.queue_depth, 20);
    uint64_t n = 0;
    CHECK_EQ_INT(history_logger_count(hl, 0, INT64_MIN, INT64_MAX, &n), GW_ERR_STORAGE);
    event_bus_flush(bus, 5000);
    CHECK_EQ_INT(atomic_load(&ev.errors), 1); /* once, not per retry */
    /* the directory becomes possible: everything buffered gets written */
    CHECK_EQ_INT(unlink(blocker), 0);
    CHECK_EQ_INT(mkdir(blocker, 0755), 0);
    CHECK(wait_flush_ok(hl));
    CHECK_EQ_INT(history_logger_count(hl, 0, INT64_MIN, INT64_MAX, &n), GW_OK);
    CHECK_EQ_INT(n, 20);
    CHECK(wait_atomic(&ev.oks, 1));
    CHECK_EQ_INT(atomic_load(&ev.errors), 1);
    history_logger_destroy(hl);
    event_bus_destroy(bus);
    remove_dir(dir);
}

static void fill_disk(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    char block[4096];
    memset(block, 0xAB, sizeof block);
    while (write(fd, block, sizeof block) > 0) {
    }
    while (write(fd, block, 512) > 0) {
    }
    close(fd);
}

static long long path_size(const char *dir, const char *name)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : 0;
}

/* Full disk, two ways: a real full file system (a 16 MB tmpfs filled with a filler file: needs
 * CAP_SYS_ADMIN) or, anywhere, RLIMIT_FSIZE pinned at the current size of the database files
 * (writes that grow a file fail with EFBIG, as on a full disk). "Freeing" removes the filler /
 * restores the limit; every buffered sample must then be written. */
static void full_disk_scenario(bool use_tmpfs)
{
    char dir[] = "/tmp/gw_hist_full_XXXXXX";
    make_dir(dir);
    if (use_tmpfs && mount("tmpfs", dir, "tmpfs", 0, "size=16m") != 0) {
        printf("SKIP full disk on tmpfs: cannot mount a tmpfs (%s); RLIMIT_FSIZE variant still runs\n",
               strerror(errno));
        rmdir(dir);
        return;
    }
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    static struct storage_events ev;
    atomic_store(&ev.errors, 0);
    atomic_store(&ev.oks, 0);
    event_bus_subscribe(bus, EVENT_STORAGE_ERROR, on_storage, &ev, "test");
    event_bus_subscribe(bus, EVENT_STORAGE_OK, on_storage, &ev, "test");
    struct history_logger *hl = open_logger(dir, bus, hist_cfg(5, 3650));
    if (hl) {
        uint32_t i = 0;
        for (; i < 50; i++)
            history_logger_record(hl, &(struct bms_live_data){ .valid = true, .wall_time_ms = T_2025_01_17 + i });
        CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);
        char filler[300];
        snprintf(filler, sizeof filler, "%s/filler", dir);
        struct rlimit old_limit;
        getrlimit(RLIMIT_FSIZE, &old_limit);
        if (use_tmpfs) {
            fill_disk(filler);
        } else {
            signal(SIGXFSZ, SIG_IGN); /* get EFBIG instead of being killed */
            long long biggest = path_size(dir, "history.db");
            long long wal = path_size(dir, "history.db-wal");
            biggest = wal > biggest ? wal : biggest;
            struct rlimit lim = { .rlim_cur = (rlim_t)biggest, .rlim_max = old_limit.rlim_max };
            CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
        }
        /* enough samples to need new pages */
        for (; i < 3050; i++) {
            struct bms_live_data d = make_sample(T_2025_01_17 + i, i);
            history_logger_record(hl, &d);
        }
        CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_ERR_STORAGE);
        CHECK(wait_atomic(&ev.errors, 1));
        for (; i < 3100; i++) { /* the gateway keeps running and buffering */
            struct bms_live_data d = make_sample(T_2025_01_17 + i, i);
            CHECK_EQ_INT(history_logger_record(hl, &d), GW_OK);
        }
        CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_ERR_STORAGE);
        struct history_logger_stats st;
        history_logger_get_stats(hl, &st);
        CHECK(!st.storage_ok);
        if (use_tmpfs)
            CHECK_EQ_INT(unlink(filler), 0);
        else
            CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
        CHECK(wait_flush_ok(hl));
        uint64_t n = 0;
        CHECK_EQ_INT(history_logger_count(hl, 0, INT64_MIN, INT64_MAX, &n), GW_OK);
        CHECK_EQ_INT(n, 3100); /* nothing lost */
        CHECK(wait_atomic(&ev.oks, 1));
        CHECK_EQ_INT(atomic_load(&ev.errors), 1);
        history_logger_destroy(hl);
        /* and the database is sound */
        char db[300];
        snprintf(db, sizeof db, "%s/history.db", dir);
        sqlite3 *h = NULL;
        CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
        sqlite3_stmt *q = NULL;
        sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &q, NULL);
        CHECK_EQ_INT(sqlite3_step(q), SQLITE_ROW);
        CHECK_STR((const char *)sqlite3_column_text(q, 0), "ok");
        sqlite3_finalize(q);
        sqlite3_close(h);
    }
    event_bus_destroy(bus);
    if (use_tmpfs) {
        CHECK_EQ_INT(umount(dir), 0);
        rmdir(dir);
    } else {
        remove_dir(dir);
    }
}

static void test_full_disk_tmpfs_then_recovers(void) { full_disk_scenario(true); }
static void test_full_disk_rlimit_then_recovers(void) { full_disk_scenario(false); }


/* Regression: a write failing with an error SQLite does not class as "storage" (here a
 * history.db whose samples table was replaced by an incompatible one: SQLITE_ERROR) used to
 * bypass the back-off (a busy loop on the writer thread), never raise the storage alert, make
 * flush wait for its whole timeout, and hang destroy for ever (the "last try on stop" only
 * gave up for storage errors). */
struct destroy_job {
    struct history_logger *hl;
    atomic_int done;
};

static void *destroy_thread(void *arg)
{
    struct destroy_job *job = arg;
    history_logger_destroy(job->hl);
    atomic_store(&job->done, 1);
    return NULL;
}

static void test_incompatible_table_fails_cleanly(void)
{
    char dir[] = "/tmp/gw_hist_XXXXXX";
    make_dir(dir);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    static struct storage_events ev;
    atomic_store(&ev.errors, 0);
    atomic_store(&ev.oks, 0);
    event_bus_subscribe(bus, EVENT_STORAGE_ERROR, on_storage, &ev, "test");
    struct history_logger *hl = open_logger(dir, bus, hist_cfg(5, 3650));
    if (!hl)
        return;
    struct bms_live_data d = make_sample(T_2025_01_17, 0);
    CHECK_EQ_INT(history_logger_record(hl, &d), GW_OK);
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_OK);

    char path[300];
    snprintf(path, sizeof path, "%s/history.db", dir);
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    CHECK_EQ_INT(sqlite3_exec(db, "DROP TABLE samples; CREATE TABLE samples(x INTEGER);", NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);

    for (uint32_t i = 1; i < 10; i++) {
        d = make_sample(T_2025_01_17 + i * 1000, i);
        CHECK_EQ_INT(history_logger_record(hl, &d), GW_OK);
    }
    CHECK_EQ_INT(history_logger_flush(hl, 20000), GW_ERR_STORAGE);
    struct history_logger_stats st;
    history_logger_get_stats(hl, &st);
    CHECK(!st.storage_ok);
    CHECK_EQ_INT(st.queue_depth, 9);
    CHECK(wait_atomic(&ev.errors, 1));

    /* The failed writes are spaced by the back-off, not retried in a busy loop: with the clock
     * frozen, the writer (the only thread waiting on the gateway clock) goes to sleep until a
     * retry deadline ahead of now (a busy loop never sleeps: the settle would time out). */
    fake_clock_set_ms(gw_now_ms());
    CHECK(fake_clock_settle(1, 10000));
    CHECK(fake_clock_next_deadline() > gw_now_ms());
    CHECK(fake_clock_next_deadline() != GW_CLOCK_NEVER);
    fake_clock_use_real();

    struct destroy_job job = { .hl = hl };
    atomic_store(&job.done, 0);
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, destroy_thread, &job), 0);
    CHECK(wait_atomic(&job.done, 1) || wait_atomic(&job.done, 1) || wait_atomic(&job.done, 1));
    if (atomic_load(&job.done))
        pthread_join(t, NULL);
    else
        _exit(1); /* destroy hangs: do not wait for it at exit */
    event_bus_destroy(bus);
    remove_dir(dir);
}

TEST_MAIN(TEST_CASE(test_round_trip), TEST_CASE(test_incompatible_table_fails_cleanly), TEST_CASE(test_destroy_writes_pending_samples), TEST_CASE(test_retention_week), TEST_CASE(test_hourly_retention), TEST_CASE(test_downsampling_vs_brute_force),
          TEST_CASE(test_day_json_and_csv), TEST_CASE(test_period_sampling_from_bus), TEST_CASE(test_rows_on_a_grid_of_the_period),
          TEST_CASE(test_view_rows_per_pack_and_aggregate), TEST_CASE(test_migration_from_old_schema),
          TEST_CASE(test_rollups_built_for_an_old_database),
          TEST_CASE(test_unwritable_directory_then_recovers), TEST_CASE(test_full_disk_tmpfs_then_recovers),
          TEST_CASE(test_full_disk_rlimit_then_recovers))
