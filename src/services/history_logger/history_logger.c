#define _GNU_SOURCE
#include "history_logger.h"
#include "history_internal.h"

#include "app_events.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "store.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WRITE_BATCH_MAX 512           /* samples per transaction */
#define RETENTION_PERIOD_MS (3600u * 1000u)
#define RETENTION_CHUNK 20000         /* rows per DELETE transaction: short write locks */
#define MAX_BATTERIES (BATTERY_MAX_PACKS + 1) /* packs + the aggregate */
#define DAY_MS 86400000LL

/* Per battery id (pack or aggregate): the sample of the last row taken, whose time also says
 * which slot of the period's grid already has its row. */
struct battery_clock {
    bool used;
    uint8_t battery_id;
    bool stored;                      /* a row was taken */
    uint64_t sample_ms;               /* its sample's timestamp_ms (aggregate: newest pack's) */
};

struct history_logger {
    struct event_bus *bus;
    history_logger_config_getter get_config;
    void *get_config_ctx;
    char db_path[GW_PATH_MAX + 16];
    struct store *store;              /* the queue, the writer, the connections (src/port/store) */

    pthread_mutex_t lock;             /* cfg, clocks, view, rows_deleted; taken before the store's */
    struct gw_config_history cfg;
    struct battery_clock clocks[MAX_BATTERIES];
    struct battery_view *view;        /* copy of the EVENT_BATTERY_UPDATE payload (under lock) */
    uint64_t rows_deleted;
    struct store *self;               /* hl->store for the writer's own requests (under lock) */
    bool retention_ran;               /* retention: when it last ran, and whether it is asked for */
    uint64_t retention_ms;            /* (under lock) */
    bool retention_wanted;

    /* The downsampled tables are complete for samples with ts_ms >= this (HISTORY__ROLLUP_COMPLETE:
     * all); written by the writer (migrate, backfill), read by queries. */
    _Atomic int64_t rollup_from;
    atomic_uint_fast64_t rollup_ns;   /* time spent in after_batch */
};

/* ---- helpers -------------------------------------------------------------------------------- */

static bool config_valid(const struct gw_config_history *c)
{
    return c->period_s >= 1 && c->period_s <= 3600 && c->retention_days >= 1 && c->retention_days <= 3650;
}

static void sample_from_live(const struct bms_live_data *d, struct history_sample *s)
{
    memset(s, 0, sizeof *s);
    s->ts_ms = d->wall_time_ms ? d->wall_time_ms : gw_wall_ms();
    s->battery_id = d->battery_id;
    s->voltage_v = d->pack_voltage_v;
    s->current_a = d->pack_current_a;
    s->soc_percent = bms_soc_percent(d);
    s->soh_percent = d->soh_valid ? bms_soh_percent(d) : NAN;
    int16_t t;
    s->temp_min_c = bms_temp_min_dc(d, &t) ? (float)t / 10.0f : NAN;
    s->temp_max_c = bms_temp_max_dc(d, &t) ? (float)t / 10.0f : NAN;
    s->status = d->online_status;
    s->cell_count = d->cell_count > BMS_MAX_CELLS ? BMS_MAX_CELLS : d->cell_count;
    uint16_t lo = 0, hi = 0;
    for (unsigned i = 0; i < s->cell_count; i++) {
        uint16_t mv = (uint16_t)((d->cell_mv_x10[i] + 5u) / 10u);
        s->cell_mv[i] = mv;
        if (mv == 0)
            continue; /* empty register, not a 0 V cell */
        if (lo == 0 || mv < lo)
            lo = mv;
        if (mv > hi)
            hi = mv;
    }
    s->cell_min_mv = lo ? lo : d->min_cell_mv;
    s->cell_max_mv = hi ? hi : d->max_cell_mv;
    s->cell_spread_mv = d->cell_spread_mv_x10 ? (float)d->cell_spread_mv_x10 / 10.0f
                                              : (float)(s->cell_max_mv - s->cell_min_mv);
}

static uint16_t mv_of(float v)
{
    if (!(v > 0.0f))
        return 0;
    float mv = v * 1000.0f + 0.5f;
    return mv >= 65535.0f ? 65535 : (uint16_t)mv;
}

/* The aggregate row of a view (battery_id HISTORY_AGGREGATE, no per-cell voltages). */
static void sample_from_view(const struct battery_view *v, struct history_sample *s)
{
    memset(s, 0, sizeof *s);
    s->ts_ms = v->wall_time_ms ? v->wall_time_ms : gw_wall_ms();
    s->battery_id = HISTORY_AGGREGATE;
    s->voltage_v = v->voltage_v;
    s->current_a = v->current_a;
    s->soc_percent = v->soc_pct;
    s->soh_percent = v->soh_valid ? v->soh_pct : NAN;
    s->temp_min_c = v->have_temp ? v->temp_min_c : NAN;
    s->temp_max_c = v->have_temp ? v->temp_max_c : NAN;
    s->cell_min_mv = mv_of(v->min_cell_v);
    s->cell_max_mv = mv_of(v->max_cell_v);
    s->cell_spread_mv = v->cell_spread_mv;
    s->status = v->online_status;
    s->cell_count = 0;
}


static void publish_storage(struct history_logger *hl, bool ok, int gw_rc, const char *message)
{
    if (!hl->bus)
        return;
    struct app_storage_error e;
    memset(&e, 0, sizeof e);
    snprintf(e.module, sizeof e.module, "history");
    e.error = gw_rc;
    size_t n = message ? strnlen(message, sizeof e.message - 1) : 0; /* truncated to fit */
    if (n)
        memcpy(e.message, message, n);
    if (event_bus_publish(hl->bus, ok ? EVENT_STORAGE_OK : EVENT_STORAGE_ERROR, &e, sizeof e, 1000) != GW_OK)
        GW_LOGW(MOD, "event bus full: %s not published", ok ? "storage_ok" : "storage_error");
}


/* ---- the store's ops (writer thread) ---------------------------------------------------------- */

/* Version 2: battery_id on every row (pack id or HISTORY_AGGREGATE), indexed with the time.
 * Version 3: the downsampled tables (history_rollup.c). */
static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS samples("
    " ts_ms INTEGER NOT NULL, battery_id INTEGER NOT NULL DEFAULT 0, voltage REAL, current REAL, soc REAL,"
    " soh REAL, temp_min REAL, temp_max REAL, cell_min_mv INTEGER, cell_max_mv INTEGER, cell_spread_mv REAL,"
    " status INTEGER, cells BLOB);";

static const char *const index_sql =
    "CREATE INDEX IF NOT EXISTS samples_ts ON samples(ts_ms);"
    "CREATE INDEX IF NOT EXISTS samples_battery_ts ON samples(battery_id, ts_ms);";

/* Columns an older samples table may lack, and how they are added (old rows get the default). */
static const struct {
    const char *name;
    const char *decl;
} schema_columns[] = {
    { "battery_id", "battery_id INTEGER NOT NULL DEFAULT 0" },
    { "voltage", "voltage REAL" },
    { "current", "current REAL" },
    { "soc", "soc REAL" },
    { "soh", "soh REAL" },
    { "temp_min", "temp_min REAL" },
    { "temp_max", "temp_max REAL" },
    { "cell_min_mv", "cell_min_mv INTEGER" },
    { "cell_max_mv", "cell_max_mv INTEGER" },
    { "cell_spread_mv", "cell_spread_mv REAL" },
    { "status", "status INTEGER" },
    { "cells", "cells BLOB" },
};
#define N_SCHEMA_COLUMNS (sizeof schema_columns / sizeof schema_columns[0])

static int pragma_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Which of schema_columns (bit i) and whether ts_ms exist in the samples table. */
static int samples_columns(sqlite3 *db, uint32_t *have, bool *has_ts)
{
    *have = 0;
    *has_ts = false;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA table_info(samples)", -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        rc = SQLITE_OK;
        if (!name)
            continue;
        if (strcmp(name, "ts_ms") == 0)
            *has_ts = true;
        for (size_t i = 0; i < N_SCHEMA_COLUMNS; i++)
            if (strcmp(name, schema_columns[i].name) == 0)
                *have |= 1u << i;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Creates the schema, or brings an older samples table to version 2, in one transaction. */

/* store_ops.migrate: creates the schema, or brings an older samples table to version 3 (in the
 * store's one transaction: a kill during it leaves the old schema). */
static int migrate(void *ctx, sqlite3 *db, int version, char *why, size_t why_size)
{
    struct history_logger *hl = ctx;
    int existed = 0;
    int rc = pragma_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='samples'", &existed);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, schema_sql, NULL, NULL, NULL);
    uint32_t have = 0;
    bool has_ts = false;
    if (rc == SQLITE_OK)
        rc = samples_columns(db, &have, &has_ts);
    if (rc == SQLITE_OK && !has_ts) {
        snprintf(why, why_size, "cannot use %.160s: its samples table has no ts_ms column (not a history database)",
                 hl->db_path);
        return SQLITE_ERROR;
    }
    unsigned added = 0;
    for (size_t i = 0; rc == SQLITE_OK && i < N_SCHEMA_COLUMNS; i++) {
        if (have & (1u << i))
            continue;
        char sql[128];
        snprintf(sql, sizeof sql, "ALTER TABLE samples ADD COLUMN %s", schema_columns[i].decl);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            added++;
            GW_LOGI(MOD, "%s: column %s added%s", hl->db_path, schema_columns[i].name,
                    i == 0 ? " (older rows: pack 0)" : "");
        }
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, index_sql, NULL, NULL, NULL);
    int64_t from = HISTORY__ROLLUP_COMPLETE;
    if (rc == SQLITE_OK)
        rc = history__rollup_migrate(db, existed != 0, &from, why, why_size);
    if (rc == SQLITE_OK) {
        atomic_store(&hl->rollup_from, from);
        if (existed && version < HISTORY_SCHEMA_VERSION)
            GW_LOGI(MOD, "%s: migrating from schema version %d to %d (%u columns added, pack index built, "
                         "downsampled tables %s)",
                    hl->db_path, version, HISTORY_SCHEMA_VERSION, added,
                    from == HISTORY__ROLLUP_COMPLETE ? "created" : "built in the background from the samples");
    }
    return rc;
}

static void bind_real_or_null(sqlite3_stmt *st, int i, float v)
{
    if (isfinite(v))
        sqlite3_bind_double(st, i, v);
    else
        sqlite3_bind_null(st, i);
}


/* store_ops.bind: one struct history_sample. */
static int bind_sample(void *ctx, sqlite3_stmt *st, const void *record)
{
    (void)ctx;
    const struct history_sample *s = record;
    uint8_t blob[BMS_MAX_CELLS * 2];
    for (unsigned c = 0; c < s->cell_count; c++) {
        blob[2 * c] = (uint8_t)(s->cell_mv[c] & 0xff);
        blob[2 * c + 1] = (uint8_t)(s->cell_mv[c] >> 8);
    }
    sqlite3_bind_int64(st, 1, s->ts_ms);
    sqlite3_bind_int(st, 2, s->battery_id);
    bind_real_or_null(st, 3, s->voltage_v);
    bind_real_or_null(st, 4, s->current_a);
    bind_real_or_null(st, 5, s->soc_percent);
    bind_real_or_null(st, 6, s->soh_percent);
    bind_real_or_null(st, 7, s->temp_min_c);
    bind_real_or_null(st, 8, s->temp_max_c);
    sqlite3_bind_int(st, 9, s->cell_min_mv);
    sqlite3_bind_int(st, 10, s->cell_max_mv);
    bind_real_or_null(st, 11, s->cell_spread_mv);
    sqlite3_bind_int(st, 12, s->status);
    return sqlite3_bind_blob(st, 13, blob, (int)s->cell_count * 2, SQLITE_TRANSIENT);
}

/* One step of building the downsampled tables of samples older than them (a migrated
 * database); asks the writer for the next one, which comes after the sample batches due. */
static int backfill(struct history_logger *hl, sqlite3 *db)
{
    int64_t from = atomic_load(&hl->rollup_from);
    if (from == HISTORY__ROLLUP_COMPLETE)
        return SQLITE_OK;
    bool more = false;
    int rc = history__rollup_backfill_step(db, &from, &more);
    if (rc != SQLITE_OK)
        return rc;
    atomic_store(&hl->rollup_from, from);
    if (!more) {
        GW_LOGI(MOD, "%s: downsampled tables (per minute, 10 minutes, hour) complete", hl->db_path);
        return SQLITE_OK;
    }
    pthread_mutex_lock(&hl->lock);
    struct store *self = hl->self;
    pthread_mutex_unlock(&hl->lock);
    store_request_prune(self); /* NULL (still in history_logger_create): it asks once created */
    return SQLITE_OK;
}

/* store_ops.after_batch: the batch into the downsampled tables, in its transaction. */
static int after_batch(void *ctx, sqlite3 *db, const void *records, size_t n)
{
    struct history_logger *hl = ctx;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = history__rollup_after_batch(db, records, n);
    clock_gettime(CLOCK_MONOTONIC, &b);
    atomic_fetch_add(&hl->rollup_ns, (uint64_t)((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec)));
    return rc;
}

/* store_ops.prune: rows older than retention_days before gw_wall_ms(), in short transactions;
 * then the downsampled rows of the same age, and a backfill step when one is pending. */
static int prune(void *ctx, sqlite3 *db)
{
    struct history_logger *hl = ctx;
    pthread_mutex_lock(&hl->lock);
    uint16_t days = hl->cfg.retention_days;
    /* Due at start, hourly, on request; not on the backfill's own steps in between. */
    bool due = !hl->retention_ran || hl->retention_wanted ||
               gw_now_ms() - hl->retention_ms + 1000 >= RETENTION_PERIOD_MS;
    if (due) {
        hl->retention_ran = true;
        hl->retention_wanted = false;
        hl->retention_ms = gw_now_ms();
    }
    pthread_mutex_unlock(&hl->lock);
    if (!due)
        return backfill(hl, db);
    int64_t cutoff = gw_wall_ms() - (int64_t)days * DAY_MS;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "DELETE FROM samples WHERE rowid IN "
                                "(SELECT rowid FROM samples WHERE ts_ms < ? LIMIT ?)",
                                -1, &st, NULL);
    uint64_t deleted = 0;
    while (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, cutoff);
        sqlite3_bind_int(st, 2, RETENTION_CHUNK);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            break;
        int changed = sqlite3_changes(db);
        deleted += (uint64_t)changed;
        rc = changed < RETENTION_CHUNK ? SQLITE_DONE : SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (deleted)
        GW_LOGI(MOD, "retention: %llu samples older than %u days deleted", (unsigned long long)deleted, days);
    pthread_mutex_lock(&hl->lock);
    hl->rows_deleted += deleted;
    pthread_mutex_unlock(&hl->lock);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    if (rc == SQLITE_OK)
        rc = history__rollup_prune(db, cutoff);
    if (rc == SQLITE_OK)
        rc = backfill(hl, db);
    return rc;
}

/* store_ops.on_storage: EVENT_STORAGE_ERROR / EVENT_STORAGE_OK {module "history"}. */
static void on_storage(void *ctx, bool ok, int err, const char *message)
{
    publish_storage(ctx, ok, err, message);
}

static const struct store_ops history_ops = {
    .schema_version = HISTORY_SCHEMA_VERSION,
    .migrate = migrate,
    .insert_sql = "INSERT INTO samples(ts_ms,battery_id,voltage,current,soc,soh,temp_min,temp_max,"
                  "cell_min_mv,cell_max_mv,cell_spread_mv,status,cells) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
    .bind = bind_sample,
    .after_batch = after_batch,
    .prune = prune,
    .read_probe_sql = "SELECT 1 FROM samples LIMIT 0",
    .on_storage = on_storage,
};

/* Queues one row (under hl->lock: the order of rows is the order of views). */
static int enqueue_locked(struct history_logger *hl, const struct history_sample *s)
{
    return store_push(hl->store, s);
}

/* ---- bus ------------------------------------------------------------------------------------ */

static struct battery_clock *clock_get_locked(struct history_logger *hl, uint8_t battery_id)
{
    struct battery_clock *free_clk = NULL;
    for (size_t i = 0; i < MAX_BATTERIES; i++) {
        if (hl->clocks[i].used && hl->clocks[i].battery_id == battery_id)
            return &hl->clocks[i];
        if (!hl->clocks[i].used && !free_clk)
            free_clk = &hl->clocks[i];
    }
    if (free_clk) {
        memset(free_clk, 0, sizeof *free_clk);
        free_clk->used = true;
        free_clk->battery_id = battery_id;
    }
    return free_clk; /* NULL: more ids than a bank has (ignored) */
}

/* Whether clk may take a row of the sample decoded at sample_ms: it is newer than the last row's,
 * and (by_period) in a later slot of the grid of the period (slot = sample_ms / period_ms). The
 * grid, not "a period after the last row", because samples arrive at poll times: a row due at
 * +5 s is taken at the first poll after it, and measuring from there drifts by a poll each row
 * (or early by a tolerance). On the grid every slot gets the first sample decoded in it, never a
 * second, and none only when no new sample was decoded in it. */
static bool clock_due(const struct battery_clock *clk, uint64_t sample_ms, bool by_period, uint64_t period_ms)
{
    if (!clk->stored)
        return true;
    if (sample_ms <= clk->sample_ms)
        return false; /* the same sample again (a stale pack): never stored as new */
    if (!by_period)
        return true;
    return sample_ms / period_ms > clk->sample_ms / period_ms;
}

static void clock_take(struct battery_clock *clk, uint64_t sample_ms)
{
    clk->stored = true;
    clk->sample_ms = sample_ms;
}

static bool pack_online(const struct battery_pack *p)
{
    return (p->state == BATTERY_PACK_ONLINE || p->state == BATTERY_PACK_REJOINING) && p->live.valid;
}

/* Queues the rows view v gives (see history_logger_record_view). Under hl->lock. */
static int take_view_locked(struct history_logger *hl, const struct battery_view *v, bool by_period, size_t *rows)
{
    uint64_t period = (uint64_t)hl->cfg.period_s * 1000u;
    unsigned n = v->pack_count > BATTERY_MAX_PACKS ? BATTERY_MAX_PACKS : v->pack_count;
    uint64_t newest = 0;
    size_t queued = 0;
    int rc = GW_OK;
    for (unsigned i = 0; i < n; i++) {
        const struct battery_pack *p = &v->packs[i];
        if (!pack_online(p) || p->id == HISTORY_AGGREGATE)
            continue;
        uint64_t t = p->live.timestamp_ms;
        newest = t > newest ? t : newest;
        struct battery_clock *clk = clock_get_locked(hl, p->id);
        if (!clk || !clock_due(clk, t, by_period, period))
            continue;
        clock_take(clk, t);
        struct history_sample s;
        sample_from_live(&p->live, &s);
        s.battery_id = p->id;
        if (enqueue_locked(hl, &s) != GW_OK)
            rc = GW_ERR_FULL;
        queued++;
    }
    if (v->online_count > 0 && !(v->conditions & BATTERY_COND_NO_DATA) && newest > 0) {
        struct battery_clock *clk = clock_get_locked(hl, HISTORY_AGGREGATE);
        if (clk && clock_due(clk, newest, by_period, period)) {
            clock_take(clk, newest);
            struct history_sample s;
            sample_from_view(v, &s);
            if (enqueue_locked(hl, &s) != GW_OK)
                rc = GW_ERR_FULL;
            queued++;
        }
    }
    if (rows)
        *rows = queued;
    return rc;
}

static void on_view(const struct gw_event *ev, void *ctx)
{
    struct history_logger *hl = ctx;
    const struct battery_view *in = EVENT_PAYLOAD(ev, struct battery_view);
    if (!in)
        return;
    pthread_mutex_lock(&hl->lock);
    if (hl->cfg.enabled) {
        memcpy(hl->view, in, sizeof *hl->view);
        take_view_locked(hl, hl->view, true, NULL);
    }
    pthread_mutex_unlock(&hl->lock);
}

int history_logger_record_view(struct history_logger *hl, const struct battery_view *v, size_t *rows)
{
    if (rows)
        *rows = 0;
    if (!hl || !v)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&hl->lock);
    int rc = hl->cfg.enabled ? take_view_locked(hl, v, false, rows) : GW_ERR_STATE;
    pthread_mutex_unlock(&hl->lock);
    return rc;
}

static void on_config(const struct gw_event *ev, void *ctx)
{
    struct history_logger *hl = ctx;
    const struct app_config_change *in = EVENT_PAYLOAD(ev, struct app_config_change);
    if (!in)
        return;
    struct app_config_change c = *in;
    if (!(c.sections & CONFIG_SECTION_HISTORY) || !hl->get_config)
        return;
    struct gw_config_history cfg;
    int rc = hl->get_config(hl->get_config_ctx, &cfg);
    if (rc != GW_OK || !config_valid(&cfg)) {
        GW_LOGW(MOD, "history configuration not applied: %s",
                rc != GW_OK ? gw_strerror(rc) : "period_s or retention_days out of range");
        return;
    }
    pthread_mutex_lock(&hl->lock);
    bool retention_changed = cfg.retention_days != hl->cfg.retention_days;
    hl->cfg = cfg;
    hl->retention_wanted |= retention_changed;
    pthread_mutex_unlock(&hl->lock);
    if (retention_changed)
        store_request_prune(hl->store);
    GW_LOGI(MOD, "configuration: %s, period %u s, retention %u days", cfg.enabled ? "enabled" : "disabled",
            cfg.period_s, cfg.retention_days);
}


/* ---- lifecycle ------------------------------------------------------------------------------ */

static void free_logger(struct history_logger *hl)
{
    store_destroy(hl->store);
    pthread_mutex_destroy(&hl->lock);
    free(hl->view);
    free(hl);
}

int history_logger_create(const struct history_logger_options *opt, struct history_logger **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!opt || !opt->data_dir || !*opt->data_dir) {
        GW_LOGE(MOD, "no data directory given");
        return GW_ERR_INVAL;
    }
    if (!config_valid(&opt->config)) {
        GW_LOGE(MOD, "period_s %u (1..3600) or retention_days %u (1..3650) out of range", opt->config.period_s,
                opt->config.retention_days);
        return GW_ERR_INVAL;
    }
    if (strlen(opt->data_dir) >= GW_PATH_MAX) {
        GW_LOGE(MOD, "data directory path too long (%zu characters)", strlen(opt->data_dir));
        return GW_ERR_INVAL;
    }
    struct history_logger *hl = calloc(1, sizeof *hl);
    if (!hl)
        return GW_ERR_NOMEM;
    hl->bus = opt->bus;
    hl->get_config = opt->get_config;
    hl->get_config_ctx = opt->get_config_ctx;
    hl->cfg = opt->config;
    snprintf(hl->db_path, sizeof hl->db_path, "%s/history.db", opt->data_dir);
    pthread_mutex_init(&hl->lock, NULL);
    int rc = GW_OK;
    hl->view = malloc(sizeof *hl->view);
    if (!hl->view) {
        rc = GW_ERR_NOMEM;
        goto err;
    }

    /* Opens here, so the schema exists when create returns (queries work at once); a database
     * that cannot be opened is a storage error (reported, samples buffered, retried). */
    struct store_config sc = {
        .name = MOD, .noun = "samples", .path = hl->db_path, .create_dir = true, .ops = &history_ops, .ctx = hl,
        .record_size = sizeof(struct history_sample),
        .capacity = opt->queue_capacity ? opt->queue_capacity : HISTORY_DEFAULT_QUEUE,
        .batch_max = WRITE_BATCH_MAX, .commit_interval_ms = HISTORY_COMMIT_INTERVAL_MS,
        .retry_max_ms = opt->retry_max_ms, .prune_period_ms = RETENTION_PERIOD_MS,
    };
    atomic_init(&hl->rollup_from, HISTORY__ROLLUP_COMPLETE);
    struct store *store = NULL;
    rc = store_create(&sc, &store);
    if (rc != GW_OK)
        goto err;
    pthread_mutex_lock(&hl->lock);
    hl->store = hl->self = store;
    pthread_mutex_unlock(&hl->lock);
    if (atomic_load(&hl->rollup_from) != HISTORY__ROLLUP_COMPLETE)
        store_request_prune(store); /* the backfill's first steps may have run before hl->self was set */
    if (hl->bus) {
        rc = event_bus_subscribe(hl->bus, EVENT_BATTERY_UPDATE, on_view, hl, "history_logger");
        if (rc == GW_OK) {
            rc = event_bus_subscribe(hl->bus, EVENT_CONFIG_UPDATED, on_config, hl, "history_logger");
            if (rc != GW_OK)
                event_bus_unsubscribe(hl->bus, EVENT_BATTERY_UPDATE, on_view, hl);
        }
        if (rc != GW_OK) {
            GW_LOGE(MOD, "cannot subscribe to the event bus: %s", gw_strerror(rc));
            goto err;
        }
    }
    GW_LOGI(MOD, "recording to %s every %u s, keeping %u days", hl->db_path, hl->cfg.period_s,
            hl->cfg.retention_days);
    *out = hl;
    return GW_OK;
err:
    free_logger(hl);
    return rc;
}

void history_logger_destroy(struct history_logger *hl)
{
    if (!hl)
        return;
    if (hl->bus) {
        event_bus_unsubscribe(hl->bus, EVENT_BATTERY_UPDATE, on_view, hl);
        event_bus_unsubscribe(hl->bus, EVENT_CONFIG_UPDATED, on_config, hl);
    }
    free_logger(hl); /* the store writes every pending sample first */
}

int history_logger_record(struct history_logger *hl, const struct bms_live_data *d)
{
    if (!hl || !d || !d->valid)
        return GW_ERR_INVAL;
    struct history_sample s;
    sample_from_live(d, &s);
    pthread_mutex_lock(&hl->lock);
    int rc = hl->cfg.enabled ? enqueue_locked(hl, &s) : GW_ERR_STATE;
    pthread_mutex_unlock(&hl->lock);
    return rc;
}

int history_logger_flush(struct history_logger *hl, uint32_t timeout_ms)
{
    if (!hl)
        return GW_ERR_INVAL;
    return store_flush(hl->store, timeout_ms);
}

int history_logger_run_retention(struct history_logger *hl, uint32_t timeout_ms)
{
    if (!hl)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&hl->lock);
    hl->retention_wanted = true;
    pthread_mutex_unlock(&hl->lock);
    int rc = store_prune(hl->store, timeout_ms);
    return rc == GW_OK || rc == GW_ERR_TIMEOUT ? rc : GW_ERR_STORAGE;
}

void history_logger_get_stats(struct history_logger *hl, struct history_logger_stats *out)
{
    if (!hl || !out)
        return;
    struct store_stats s;
    store_get_stats(hl->store, &s);
    memset(out, 0, sizeof *out);
    out->samples_queued = s.queued;
    out->samples_written = s.written;
    out->samples_dropped = s.dropped;
    out->write_errors = s.write_errors;
    out->queue_depth = s.depth;
    out->storage_ok = s.storage_ok;
    int64_t from = atomic_load(&hl->rollup_from);
    out->rollups_complete = from == HISTORY__ROLLUP_COMPLETE;
    out->rollups_from_ms = out->rollups_complete ? 0 : from;
    out->rollup_us = atomic_load(&hl->rollup_ns) / 1000u;
    pthread_mutex_lock(&hl->lock);
    out->rows_deleted = hl->rows_deleted;
    pthread_mutex_unlock(&hl->lock);
}

/* ---- queries -------------------------------------------------------------------------------- */

/* The store's read connection: on GW_OK *db is usable and the caller calls store_read_end. */
static int read_begin(struct history_logger *hl, sqlite3 **db)
{
    return store_read_begin(hl->store, db);
}

static int read_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
        GW_LOGE(MOD, "query failed: %s", sqlite3_errmsg(db));
        return GW_ERR_STORAGE;
    }
    return GW_OK;
}

static double col_or_nan(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

const char *history_source_name(enum history_source s)
{
    switch (s) {
    case HISTORY_SOURCE_SAMPLES: return "samples";
    case HISTORY_SOURCE_MINUTES: return "minutes";
    case HISTORY_SOURCE_TEN_MINUTES: return "ten_minutes";
    case HISTORY_SOURCE_HOURS: return "hours";
    default: return "auto";
    }
}

int history_logger_query_buckets_from(struct history_logger *hl, uint8_t battery_id, int64_t from_ms,
                                      int64_t to_ms, uint32_t n_buckets, enum history_source source,
                                      struct history_bucket *out, struct history_query_info *info)
{
    if (!hl || !out || n_buckets == 0 || n_buckets > HISTORY_MAX_BUCKETS || to_ms <= from_ms ||
        (to_ms - from_ms) > INT64_MAX / HISTORY_MAX_BUCKETS || source < HISTORY_SOURCE_AUTO ||
        source > HISTORY_SOURCE_HOURS)
        return GW_ERR_INVAL;
    int64_t span = to_ms - from_ms;
    bool covered = atomic_load(&hl->rollup_from) <= from_ms;
    if (source == HISTORY_SOURCE_AUTO) {
        /* span / n: the narrowest bucket */
        source = covered ? history__pick_source(span / n_buckets) : HISTORY_SOURCE_SAMPLES;
    } else if (source != HISTORY_SOURCE_SAMPLES && !covered) {
        return GW_ERR_STATE;
    }
    if (info) {
        info->source = source;
        info->resolution_ms = history__source_resolution(source);
    }
    for (uint32_t i = 0; i < n_buckets; i++) {
        struct history_bucket *b = &out[i];
        memset(b, 0, sizeof *b);
        /* bucket i holds ts with (ts - from) * n / span == i */
        b->start_ms = from_ms + ((int64_t)i * span + n_buckets - 1) / n_buckets;
        b->end_ms = from_ms + ((int64_t)(i + 1) * span + n_buckets - 1) / n_buckets;
        struct history_stat *stats[] = { &b->voltage_v, &b->current_a, &b->soc_percent, &b->temp_min_c,
                                         &b->temp_max_c, &b->cell_min_mv, &b->cell_max_mv };
        for (size_t k = 0; k < 7; k++)
            stats[k]->min = stats[k]->avg = stats[k]->max = NAN;
    }
    sqlite3 *db = NULL;
    int rc = read_begin(hl, &db);
    if (rc)
        return rc;
    rc = history__query_source(db, source, battery_id, from_ms, to_ms, n_buckets, out);
    store_read_end(hl->store);
    return rc;
}

int history_logger_query_buckets(struct history_logger *hl, uint8_t battery_id, int64_t from_ms, int64_t to_ms,
                                 uint32_t n_buckets, struct history_bucket *out)
{
    return history_logger_query_buckets_from(hl, battery_id, from_ms, to_ms, n_buckets, HISTORY_SOURCE_AUTO, out,
                                             NULL);
}

static const char *const sample_columns =
    "SELECT ts_ms,battery_id,voltage,current,soc,soh,temp_min,temp_max,cell_min_mv,cell_max_mv,"
    "cell_spread_mv,status,cells FROM samples";

static void sample_from_row(sqlite3_stmt *st, struct history_sample *s)
{
    memset(s, 0, sizeof *s);
    s->ts_ms = sqlite3_column_int64(st, 0);
    s->battery_id = (uint8_t)sqlite3_column_int(st, 1);
    s->voltage_v = (float)col_or_nan(st, 2);
    s->current_a = (float)col_or_nan(st, 3);
    s->soc_percent = (float)col_or_nan(st, 4);
    s->soh_percent = (float)col_or_nan(st, 5);
    s->temp_min_c = (float)col_or_nan(st, 6);
    s->temp_max_c = (float)col_or_nan(st, 7);
    s->cell_min_mv = (uint16_t)sqlite3_column_int(st, 8);
    s->cell_max_mv = (uint16_t)sqlite3_column_int(st, 9);
    s->cell_spread_mv = (float)col_or_nan(st, 10);
    s->status = (uint16_t)sqlite3_column_int(st, 11);
    const uint8_t *blob = sqlite3_column_blob(st, 12);
    int bytes = sqlite3_column_bytes(st, 12);
    unsigned n = (unsigned)(bytes > 0 ? bytes / 2 : 0);
    if (n > BMS_MAX_CELLS)
        n = BMS_MAX_CELLS;
    s->cell_count = (uint8_t)n;
    for (unsigned i = 0; i < n && blob; i++)
        s->cell_mv[i] = (uint16_t)(blob[2 * i] | (blob[2 * i + 1] << 8));
}

int history_logger_query_samples(struct history_logger *hl, uint8_t battery_id, int64_t from_ms, int64_t to_ms,
                                 struct history_sample *out, size_t max, size_t *count)
{
    if (count)
        *count = 0;
    if (!hl || (!out && max) || !count || to_ms < from_ms)
        return GW_ERR_INVAL;
    sqlite3 *db = NULL;
    int rc = read_begin(hl, &db);
    if (rc)
        return rc;
    char sql[400];
    snprintf(sql, sizeof sql, "%s WHERE ts_ms >= ? AND ts_ms < ? AND battery_id = ? ORDER BY ts_ms LIMIT ?",
             sample_columns);
    sqlite3_stmt *st = NULL;
    rc = read_prepare(db, sql, &st);
    if (rc == GW_OK) {
        sqlite3_bind_int64(st, 1, from_ms);
        sqlite3_bind_int64(st, 2, to_ms);
        sqlite3_bind_int(st, 3, battery_id);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)max);
        int step;
        size_t n = 0;
        while ((step = sqlite3_step(st)) == SQLITE_ROW && n < max)
            sample_from_row(st, &out[n++]);
        if (step != SQLITE_DONE && step != SQLITE_ROW) {
            GW_LOGE(MOD, "sample query failed: %s", sqlite3_errmsg(db));
            rc = GW_ERR_STORAGE;
        }
        *count = n;
        sqlite3_finalize(st);
    }
    store_read_end(hl->store);
    return rc;
}

int history_logger_count(struct history_logger *hl, int battery_id, int64_t from_ms, int64_t to_ms,
                         uint64_t *count)
{
    if (count)
        *count = 0;
    if (!hl || !count || to_ms < from_ms || battery_id < HISTORY_ALL_IDS || battery_id > 255)
        return GW_ERR_INVAL;
    sqlite3 *db = NULL;
    int rc = read_begin(hl, &db);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    rc = read_prepare(db,
                      "SELECT COUNT(*) FROM samples WHERE ts_ms >= ? AND ts_ms < ? AND (?3 = -1 OR battery_id = ?3)",
                      &st);
    if (rc == GW_OK) {
        sqlite3_bind_int64(st, 1, from_ms);
        sqlite3_bind_int64(st, 2, to_ms);
        sqlite3_bind_int(st, 3, battery_id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *count = (uint64_t)sqlite3_column_int64(st, 0);
        } else {
            GW_LOGE(MOD, "count query failed: %s", sqlite3_errmsg(db));
            rc = GW_ERR_STORAGE;
        }
        sqlite3_finalize(st);
    }
    store_read_end(hl->store);
    return rc;
}

int history_logger_list_ids(struct history_logger *hl, int64_t from_ms, int64_t to_ms, uint8_t *ids, size_t max,
                            size_t *n)
{
    if (n)
        *n = 0;
    if (!hl || !n || (!ids && max) || to_ms < from_ms)
        return GW_ERR_INVAL;
    sqlite3 *db = NULL;
    int rc = read_begin(hl, &db);
    if (rc)
        return rc;
    /* One index seek per possible id (samples_battery_ts): fast on any table size. */
    sqlite3_stmt *st = NULL;
    rc = read_prepare(db, "SELECT EXISTS(SELECT 1 FROM samples WHERE battery_id = ? AND ts_ms >= ? AND ts_ms < ?)",
                      &st);
    for (int id = 0; rc == GW_OK && id <= 255 && *n < max; id++) {
        sqlite3_bind_int(st, 1, id);
        sqlite3_bind_int64(st, 2, from_ms);
        sqlite3_bind_int64(st, 3, to_ms);
        if (sqlite3_step(st) != SQLITE_ROW) {
            GW_LOGE(MOD, "id query failed: %s", sqlite3_errmsg(db));
            rc = GW_ERR_STORAGE;
        } else if (sqlite3_column_int(st, 0)) {
            ids[(*n)++] = (uint8_t)id;
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    store_read_end(hl->store);
    return rc;
}

int history_day_range(const char *date, int64_t now_wall_ms, int64_t *start_ms, int64_t *end_ms)
{
    if (!start_ms || !end_ms)
        return GW_ERR_INVAL;
    int64_t day_start;
    if (!date) {
        int64_t days = now_wall_ms >= 0 ? now_wall_ms / DAY_MS : (now_wall_ms - DAY_MS + 1) / DAY_MS;
        day_start = days * DAY_MS;
    } else {
        if (strlen(date) != 10 || date[4] != '-' || date[7] != '-')
            return GW_ERR_INVAL;
        for (int i = 0; i < 10; i++)
            if (i != 4 && i != 7 && (date[i] < '0' || date[i] > '9'))
                return GW_ERR_INVAL;
        int y = atoi(date), m = atoi(date + 5), d = atoi(date + 8);
        static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
            return GW_ERR_INVAL;
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        if (m == 2 && d == 29 && !leap)
            return GW_ERR_INVAL;
        struct tm tm = { .tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d };
        time_t t = timegm(&tm);
        if (t == (time_t)-1)
            return GW_ERR_INVAL;
        day_start = (int64_t)t * 1000;
    }
    *start_ms = day_start;
    *end_ms = day_start + DAY_MS;
    return GW_OK;
}

/* Output of the day views: a caller buffer (JSON) or chunks streamed to a writer (CSV). */
struct out_buf {
    char *buf;
    size_t size, len;
    bool overflow;
    history_csv_writer write;   /* streaming when set: buf is a chunk, flushed when nearly full */
    void *ctx;
    bool stopped;
};

static void ob_flush(struct out_buf *o)
{
    if (o->write && o->len && !o->stopped) {
        if (o->write(o->ctx, o->buf, o->len) != 0)
            o->stopped = true;
    }
    if (o->write)
        o->len = 0;
}

static void ob_printf(struct out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ob_printf(struct out_buf *o, const char *fmt, ...)
{
    if (o->overflow || o->stopped)
        return;
    for (int pass = 0; pass < 2; pass++) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = o->size - o->len;
        int n = vsnprintf(o->buf + o->len, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->overflow = true;
            return;
        }
        if ((size_t)n < room) {
            o->len += (size_t)n;
            return;
        }
        if (!o->write || pass == 1) {
            o->overflow = true;
            return;
        }
        o->buf[o->len] = '\0';
        ob_flush(o); /* streaming: send the chunk and retry in the empty buffer */
    }
}

static void ob_temp(struct out_buf *o, double v, const char *null_text)
{
    if (isfinite(v))
        ob_printf(o, "%.1f", v);
    else
        ob_printf(o, "%s", null_text);
}

static int day_rows(struct history_logger *hl, const char *date, uint8_t battery_id, struct out_buf *o, bool json)
{
    int64_t start, end;
    if (history_day_range(date, gw_wall_ms(), &start, &end) != GW_OK) {
        GW_LOGW(MOD, "bad date \"%.16s\" (expected YYYY-MM-DD)", date ? date : "");
        return GW_ERR_INVAL;
    }
    sqlite3 *db = NULL;
    int rc = read_begin(hl, &db);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    rc = read_prepare(db,
                      "SELECT ts_ms,voltage,current,soc,temp_max,temp_min,cell_min_mv,cell_max_mv FROM samples"
                      " WHERE ts_ms >= ? AND ts_ms < ? AND battery_id = ? ORDER BY ts_ms",
                      &st);
    if (rc == GW_OK) {
        sqlite3_bind_int64(st, 1, start);
        sqlite3_bind_int64(st, 2, end);
        sqlite3_bind_int(st, 3, battery_id);
        if (json) {
            time_t day = (time_t)(start / 1000);
            struct tm tm;
            gmtime_r(&day, &tm);
            ob_printf(o, "{\"date\":\"%04d-%02d-%02d\",\"battery_id\":%u,\"samples\":[", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, battery_id);
        } else {
            ob_printf(o, "timestamp,voltage,current,soc,temp_max,temp_min,cell_min_mv,cell_max_mv\n");
        }
        int step;
        bool first = true;
        while (!o->overflow && !o->stopped && (step = sqlite3_step(st)) == SQLITE_ROW) {
            long long ts = (long long)(sqlite3_column_int64(st, 0) / 1000);
            double v = col_or_nan(st, 1), i = col_or_nan(st, 2), soc = col_or_nan(st, 3);
            if (json) {
                ob_printf(o, "%s{\"timestamp\":%lld,\"voltage\":%.3f,\"current\":%.3f,\"soc\":%.2f,\"temp_max\":",
                          first ? "" : ",", ts, isfinite(v) ? v : 0.0, isfinite(i) ? i : 0.0,
                          isfinite(soc) ? soc : 0.0);
                ob_temp(o, col_or_nan(st, 4), "null");
                ob_printf(o, ",\"temp_min\":");
                ob_temp(o, col_or_nan(st, 5), "null");
                ob_printf(o, ",\"cell_min_mv\":%d,\"cell_max_mv\":%d}", sqlite3_column_int(st, 6),
                          sqlite3_column_int(st, 7));
            } else {
                ob_printf(o, "%lld,%.3f,%.3f,%.2f,", ts, isfinite(v) ? v : 0.0, isfinite(i) ? i : 0.0,
                          isfinite(soc) ? soc : 0.0);
                ob_temp(o, col_or_nan(st, 4), "");
                ob_printf(o, ",");
                ob_temp(o, col_or_nan(st, 5), "");
                ob_printf(o, ",%d,%d\n", sqlite3_column_int(st, 6), sqlite3_column_int(st, 7));
            }
            first = false;
        }
        if (!o->overflow && !o->stopped && step != SQLITE_DONE) {
            GW_LOGE(MOD, "day query failed: %s", sqlite3_errmsg(db));
            rc = GW_ERR_STORAGE;
        }
        if (json)
            ob_printf(o, "]}");
        sqlite3_finalize(st);
    }
    store_read_end(hl->store);
    return rc;
}

int history_logger_get_day_json(struct history_logger *hl, const char *date, uint8_t battery_id, char *buf,
                                size_t size, size_t *len)
{
    if (len)
        *len = 0;
    if (!hl || !buf || size == 0)
        return GW_ERR_INVAL;
    buf[0] = '\0';
    struct out_buf o = { .buf = buf, .size = size };
    int rc = day_rows(hl, date, battery_id, &o, true);
    if (rc == GW_OK && o.overflow)
        rc = GW_ERR_OVERFLOW;
    if (rc != GW_OK) {
        buf[0] = '\0';
        return rc;
    }
    if (len)
        *len = o.len;
    return GW_OK;
}

int history_logger_export_csv_day(struct history_logger *hl, const char *date, uint8_t battery_id,
                                  history_csv_writer write, void *ctx)
{
    if (!hl || !write)
        return GW_ERR_INVAL;
    char chunk[8192];
    struct out_buf o = { .buf = chunk, .size = sizeof chunk, .write = write, .ctx = ctx };
    int rc = day_rows(hl, date, battery_id, &o, false);
    if (rc == GW_OK)
        ob_flush(&o);
    if (rc == GW_OK && (o.stopped || o.overflow))
        rc = GW_ERR_IO;
    return rc;
}

static int file_writer(void *ctx, const char *data, size_t len)
{
    return fwrite(data, 1, len, (FILE *)ctx) == len ? 0 : -1;
}

int history_logger_export_csv_day_file(struct history_logger *hl, const char *date, uint8_t battery_id, FILE *fp)
{
    if (!fp)
        return GW_ERR_INVAL;
    return history_logger_export_csv_day(hl, date, battery_id, file_writer, fp);
}
