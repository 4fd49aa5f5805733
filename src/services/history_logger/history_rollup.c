/* The downsampled tables of the history (schema version 3) and the bucket queries.
 *
 * history_1m, history_10m and history_1h hold, per (battery_id, bucket start), the number of samples and, per
 * plotted field, the count of its non-NULL values, their minimum, sum and maximum: buckets merge
 * exactly (min of mins, sum of sums, ...), so a chart's min/avg/max per bucket is the same
 * whichever table answers when its bucket edges fall on its steps. Three steps, so that the usual
 * charts read about a thousand rows at most: a day in 1000 points from the minutes (1440 rows), a
 * week or a month from the ten minutes (1008 / 4320), a year from the hours.
 *
 * They are written with the samples: the store calls history__rollup_after_batch inside each
 * batch's transaction, which aggregates the batch in memory (a batch of 512 samples at 1 s spans
 * about 9 minutes: 9 + 1 + 1 upserts instead of 1536). A database that had samples before the tables
 * existed gets them by backfill: hour-aligned chunks rebuilt from the samples, newest first, one
 * transaction each on the writer thread between sample batches; the watermark (history_meta)
 * says from when on the tables are complete, and a query reaching below it reads the samples. */
#define _GNU_SOURCE
#include "history_internal.h"

#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_FIELDS 7
#define AGG_SLOTS 64             /* buckets aggregated in memory before an upsert round */
#define SQL_MAX 4096

/* The plotted fields: the samples column, the prefix of its rollup columns. Order = the order of
 * struct history_bucket's stats. */
static const struct {
    const char *col;
    const char *p;
} fields[N_FIELDS] = {
    { "voltage", "v" },      { "current", "i" },       { "soc", "soc" },        { "temp_min", "tlo" },
    { "temp_max", "thi" },   { "cell_min_mv", "clo" }, { "cell_max_mv", "chi" },
};

#define N_TABLES 3
static const struct {
    const char *name;
    int64_t res_ms;
    enum history_source source;
} tables[N_TABLES] = {
    { "history_1m", HISTORY__MINUTE_MS, HISTORY_SOURCE_MINUTES },
    { "history_10m", 10 * HISTORY__MINUTE_MS, HISTORY_SOURCE_TEN_MINUTES },
    { "history_1h", HISTORY__HOUR_MS, HISTORY_SOURCE_HOURS },
};

int64_t history__source_resolution(enum history_source s)
{
    for (int t = 0; t < N_TABLES; t++)
        if (tables[t].source == s)
            return tables[t].res_ms;
    return 0;
}

enum history_source history__pick_source(int64_t bucket_ms)
{
    for (int t = N_TABLES - 1; t >= 0; t--)
        if (bucket_ms >= tables[t].res_ms)
            return tables[t].source;
    return HISTORY_SOURCE_SAMPLES;
}

static const char *source_table(enum history_source s)
{
    for (int t = 0; t < N_TABLES; t++)
        if (tables[t].source == s)
            return tables[t].name;
    return "samples";
}

static struct history_stat *bucket_stat(struct history_bucket *b, int f)
{
    struct history_stat *s[N_FIELDS] = { &b->voltage_v, &b->current_a, &b->soc_percent, &b->temp_min_c,
                                         &b->temp_max_c, &b->cell_min_mv, &b->cell_max_mv };
    return s[f];
}

/* The values of a sample as its row stores them (bind_sample: non-finite floats are NULL). */
static void sample_values(const struct history_sample *s, double v[N_FIELDS], bool have[N_FIELDS])
{
    float f[5] = { s->voltage_v, s->current_a, s->soc_percent, s->temp_min_c, s->temp_max_c };
    for (int i = 0; i < 5; i++) {
        have[i] = isfinite(f[i]);
        v[i] = f[i];
    }
    v[5] = s->cell_min_mv;
    v[6] = s->cell_max_mv;
    have[5] = have[6] = true;
}

/* ---- schema ------------------------------------------------------------------------------- */

static int exec_text(sqlite3 *db, struct gw_text *t)
{
    if (gw_text_status(t) != GW_OK)
        return SQLITE_TOOBIG;
    return sqlite3_exec(db, gw_text_str(t), NULL, NULL, NULL);
}

static int create_table(sqlite3 *db, const char *name)
{
    char buf[SQL_MAX];
    struct gw_text t;
    gw_text_init(&t, buf, sizeof buf);
    gw_text_put_str(&t, "CREATE TABLE IF NOT EXISTS ");
    gw_text_put_str(&t, name);
    gw_text_put_str(&t, "(battery_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, n INTEGER NOT NULL");
    for (int f = 0; f < N_FIELDS; f++) {
        const char *p = fields[f].p;
        gw_text_put_str(&t, ", ");
        gw_text_put_str(&t, p);
        gw_text_put_str(&t, "_n INTEGER NOT NULL, ");
        gw_text_put_str(&t, p);
        gw_text_put_str(&t, "_min REAL, ");
        gw_text_put_str(&t, p);
        gw_text_put_str(&t, "_sum REAL NOT NULL, ");
        gw_text_put_str(&t, p);
        gw_text_put_str(&t, "_max REAL");
    }
    gw_text_put_str(&t, ", PRIMARY KEY(battery_id, ts_ms)) WITHOUT ROWID");
    return exec_text(db, &t);
}

static int meta_get(sqlite3 *db, const char *key, int64_t *out, bool *found)
{
    sqlite3_stmt *st = NULL;
    *found = false;
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM history_meta WHERE key = ?", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            *found = true;
        }
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

static int meta_set(sqlite3 *db, const char *key, int64_t value)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT INTO history_meta(key, value) VALUES(?, ?)"
                                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, value);
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

/* The newest (max) or oldest (min) sample time; *found false for an empty table. */
static int sample_bound(sqlite3 *db, bool newest, int64_t *out, bool *found)
{
    sqlite3_stmt *st = NULL;
    *found = false;
    int rc = sqlite3_prepare_v2(db, newest ? "SELECT max(ts_ms) FROM samples" : "SELECT min(ts_ms) FROM samples", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
            *out = sqlite3_column_int64(st, 0);
            *found = true;
        }
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

static int64_t floor_to(int64_t t, int64_t res)
{
    int64_t q = t / res;
    if (t % res < 0)
        q--;
    return q * res;
}

int history__rollup_migrate(sqlite3 *db, bool had_samples, int64_t *watermark, char *why, size_t why_size)
{
    int rc = sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS history_meta(key TEXT PRIMARY KEY, value INTEGER)", NULL,
                          NULL, NULL);
    for (int i = 0; rc == SQLITE_OK && i < N_TABLES; i++)
        rc = create_table(db, tables[i].name);
    bool found = false;
    if (rc == SQLITE_OK)
        rc = meta_get(db, "rollup_from_ms", watermark, &found);
    if (rc == SQLITE_OK && !found) {
        int64_t newest = 0;
        bool any = false;
        if (had_samples)
            rc = sample_bound(db, true, &newest, &any);
        /* Complete from the hour after the newest sample: new samples go into the tables as they
         * are written; everything before is rebuilt in the background. */
        *watermark = any ? floor_to(newest, HISTORY__HOUR_MS) + HISTORY__HOUR_MS : HISTORY__ROLLUP_COMPLETE;
        if (rc == SQLITE_OK)
            rc = meta_set(db, "rollup_from_ms", *watermark);
    }
    if (rc != SQLITE_OK && why && why_size && !why[0]) {
        struct gw_text t;
        gw_text_init(&t, why, why_size);
        gw_text_put_str(&t, "cannot create the per-minute and per-hour tables: ");
        gw_text_put_str(&t, sqlite3_errmsg(db));
    }
    return rc;
}

/* ---- writing ------------------------------------------------------------------------------ */

struct agg {
    uint8_t id;
    int64_t ts;
    uint32_t n;
    uint32_t fn[N_FIELDS];
    double min[N_FIELDS], sum[N_FIELDS], max[N_FIELDS];
};

static int prepare_upsert(sqlite3 *db, const char *table, sqlite3_stmt **st)
{
    char buf[SQL_MAX];
    struct gw_text t;
    gw_text_init(&t, buf, sizeof buf);
    gw_text_put_str(&t, "INSERT INTO ");
    gw_text_put_str(&t, table);
    gw_text_put_str(&t, "(battery_id, ts_ms, n");
    for (int f = 0; f < N_FIELDS; f++) {
        const char *suffix[4] = { "_n", "_min", "_sum", "_max" };
        for (int k = 0; k < 4; k++) {
            gw_text_put_str(&t, ", ");
            gw_text_put_str(&t, fields[f].p);
            gw_text_put_str(&t, suffix[k]);
        }
    }
    gw_text_put_str(&t, ") VALUES(?, ?, ?");
    for (int i = 0; i < 4 * N_FIELDS; i++)
        gw_text_put_str(&t, ", ?");
    gw_text_put_str(&t, ") ON CONFLICT(battery_id, ts_ms) DO UPDATE SET n = n + excluded.n");
    for (int f = 0; f < N_FIELDS; f++) {
        const char *p = fields[f].p;
        /* count and sum add up; min/max ignore a side without values (NULL) */
        const char *parts[] = { ", ", p, "_n = ", p, "_n + excluded.", p, "_n",
                                ", ", p, "_sum = ", p, "_sum + excluded.", p, "_sum",
                                ", ", p, "_min = coalesce(min(", p, "_min, excluded.", p, "_min), ", p, "_min, excluded.", p, "_min)",
                                ", ", p, "_max = coalesce(max(", p, "_max, excluded.", p, "_max), ", p, "_max, excluded.", p, "_max)" };
        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
            gw_text_put_str(&t, parts[k]);
    }
    if (gw_text_status(&t) != GW_OK)
        return SQLITE_TOOBIG;
    return sqlite3_prepare_v2(db, gw_text_str(&t), -1, st, NULL);
}

static int upsert(sqlite3_stmt *st, const struct agg *a)
{
    sqlite3_reset(st);
    sqlite3_bind_int(st, 1, a->id);
    sqlite3_bind_int64(st, 2, a->ts);
    sqlite3_bind_int64(st, 3, a->n);
    for (int f = 0; f < N_FIELDS; f++) {
        int c = 4 + 4 * f;
        sqlite3_bind_int64(st, c, a->fn[f]);
        if (a->fn[f]) {
            sqlite3_bind_double(st, c + 1, a->min[f]);
            sqlite3_bind_double(st, c + 3, a->max[f]);
        } else {
            sqlite3_bind_null(st, c + 1);
            sqlite3_bind_null(st, c + 3);
        }
        sqlite3_bind_double(st, c + 2, a->sum[f]);
    }
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int flush_aggs(sqlite3_stmt *st, const struct agg *aggs, size_t n)
{
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++)
        rc = upsert(st, &aggs[i]);
    return rc;
}

int history__rollup_after_batch(sqlite3 *db, const struct history_sample *s, size_t n)
{
    struct agg *aggs = malloc(AGG_SLOTS * sizeof *aggs);
    if (!aggs)
        return SQLITE_NOMEM;
    int rc = SQLITE_OK;
    for (int t = 0; rc == SQLITE_OK && t < N_TABLES; t++) {
        sqlite3_stmt *st = NULL;
        rc = prepare_upsert(db, tables[t].name, &st);
        size_t used = 0, last = 0;
        for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
            int64_t ts = floor_to(s[i].ts_ms, tables[t].res_ms);
            /* Samples come in time order per battery: the bucket of the previous sample first. */
            size_t k = used;
            if (used && aggs[last].ts == ts && aggs[last].id == s[i].battery_id)
                k = last;
            else
                for (size_t j = 0; j < used; j++)
                    if (aggs[j].ts == ts && aggs[j].id == s[i].battery_id) {
                        k = j;
                        break;
                    }
            if (k == used) {
                if (used == AGG_SLOTS) {
                    rc = flush_aggs(st, aggs, used);
                    used = k = 0;
                    if (rc != SQLITE_OK)
                        break;
                }
                memset(&aggs[k], 0, sizeof aggs[k]);
                aggs[k].id = s[i].battery_id;
                aggs[k].ts = ts;
                used++;
            }
            last = k;
            struct agg *a = &aggs[k];
            double v[N_FIELDS];
            bool have[N_FIELDS];
            sample_values(&s[i], v, have);
            a->n++;
            for (int f = 0; f < N_FIELDS; f++) {
                if (!have[f])
                    continue;
                if (a->fn[f] == 0 || v[f] < a->min[f])
                    a->min[f] = v[f];
                if (a->fn[f] == 0 || v[f] > a->max[f])
                    a->max[f] = v[f];
                a->sum[f] += v[f];
                a->fn[f]++;
            }
        }
        if (rc == SQLITE_OK)
            rc = flush_aggs(st, aggs, used);
        sqlite3_finalize(st);
    }
    free(aggs);
    return rc;
}

int history__rollup_rebuild(sqlite3 *db, int64_t from_ms, int64_t to_ms)
{
    int rc = SQLITE_OK;
    for (int t = 0; rc == SQLITE_OK && t < N_TABLES; t++) {
        char buf[SQL_MAX];
        struct gw_text q;
        gw_text_init(&q, buf, sizeof buf);
        gw_text_put_str(&q, "DELETE FROM ");
        gw_text_put_str(&q, tables[t].name);
        gw_text_put_str(&q, " WHERE ts_ms >= ?1 AND ts_ms < ?2; INSERT INTO ");
        gw_text_put_str(&q, tables[t].name);
        gw_text_put_str(&q, " SELECT battery_id, (ts_ms / ");
        gw_text_put_int(&q, tables[t].res_ms);
        gw_text_put_str(&q, ") * ");
        gw_text_put_int(&q, tables[t].res_ms);
        gw_text_put_str(&q, ", count(*)");
        for (int f = 0; f < N_FIELDS; f++) {
            const char *c = fields[f].col;
            const char *parts[] = { ", count(", c, "), min(", c, "), total(", c, "), max(", c, ")" };
            for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
                gw_text_put_str(&q, parts[k]);
        }
        gw_text_put_str(&q, " FROM samples WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY battery_id, ts_ms / ");
        gw_text_put_int(&q, tables[t].res_ms);
        if (gw_text_status(&q) != GW_OK)
            return SQLITE_TOOBIG;
        /* two statements: prepare and run each with the same two bounds */
        const char *sql = gw_text_str(&q);
        while (rc == SQLITE_OK && sql && *sql) {
            sqlite3_stmt *st = NULL;
            const char *tail = NULL;
            rc = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
            if (rc == SQLITE_OK && st) {
                sqlite3_bind_int64(st, 1, from_ms);
                sqlite3_bind_int64(st, 2, to_ms);
                rc = sqlite3_step(st);
                rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
            }
            sqlite3_finalize(st);
            sql = tail;
            while (sql && (*sql == ' ' || *sql == ';'))
                sql++;
        }
    }
    return rc;
}

int history__rollup_prune(sqlite3 *db, int64_t cutoff_ms)
{
    int rc = SQLITE_OK;
    for (int t = 0; rc == SQLITE_OK && t < N_TABLES; t++) {
        char del[256], next[256];
        struct gw_text q, n;
        gw_text_init(&q, del, sizeof del);
        gw_text_put_str(&q, "DELETE FROM ");
        gw_text_put_str(&q, tables[t].name);
        gw_text_put_str(&q, " WHERE battery_id = ?1 AND ts_ms < ?2");
        gw_text_init(&n, next, sizeof next);
        gw_text_put_str(&n, "SELECT battery_id FROM ");
        gw_text_put_str(&n, tables[t].name);
        gw_text_put_str(&n, " WHERE battery_id > ?1 ORDER BY battery_id LIMIT 1");
        sqlite3_stmt *d = NULL, *s = NULL;
        if (gw_text_status(&q) != GW_OK || gw_text_status(&n) != GW_OK)
            return SQLITE_TOOBIG;
        rc = sqlite3_prepare_v2(db, del, -1, &d, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_prepare_v2(db, next, -1, &s, NULL);
        /* The key starts with the battery: jump from one id present to the next (one seek each),
         * and delete each one's old range. */
        int id = -1;
        while (rc == SQLITE_OK) {
            sqlite3_bind_int(s, 1, id);
            int step = sqlite3_step(s);
            if (step != SQLITE_ROW) {
                rc = step == SQLITE_DONE ? SQLITE_OK : step;
                break;
            }
            id = sqlite3_column_int(s, 0);
            sqlite3_reset(s);
            sqlite3_bind_int(d, 1, id);
            sqlite3_bind_int64(d, 2, cutoff_ms - tables[t].res_ms + 1); /* whole buckets before cutoff */
            rc = sqlite3_step(d);
            rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
            sqlite3_reset(d);
        }
        sqlite3_finalize(s);
        sqlite3_finalize(d);
    }
    return rc;
}

int history__rollup_backfill_step(sqlite3 *db, int64_t *watermark, bool *more)
{
    *more = false;
    if (*watermark == HISTORY__ROLLUP_COMPLETE)
        return SQLITE_OK;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return rc;
    int64_t oldest = 0;
    bool any = false;
    rc = sample_bound(db, false, &oldest, &any);
    int64_t w = *watermark, next = HISTORY__ROLLUP_COMPLETE;
    if (rc == SQLITE_OK && any && oldest < w) {
        int64_t from = w - HISTORY__BACKFILL_CHUNK_MS;
        int64_t floor_oldest = floor_to(oldest, HISTORY__HOUR_MS);
        if (from <= floor_oldest)
            from = floor_oldest;
        else
            next = from;
        rc = history__rollup_rebuild(db, from, w);
    }
    if (rc == SQLITE_OK)
        rc = meta_set(db, "rollup_from_ms", next);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    *watermark = next;
    *more = next != HISTORY__ROLLUP_COMPLETE;
    return SQLITE_OK;
}

/* ---- queries ------------------------------------------------------------------------------ */

static double col_or_nan(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

int history__query_source(sqlite3 *db, enum history_source source, uint8_t battery_id, int64_t from_ms,
                          int64_t to_ms, uint32_t n, struct history_bucket *out)
{
    char buf[SQL_MAX];
    struct gw_text q;
    gw_text_init(&q, buf, sizeof buf);
    bool raw = source == HISTORY_SOURCE_SAMPLES;
    gw_text_put_str(&q, "SELECT ts_ms");
    if (!raw)
        gw_text_put_str(&q, ", n");
    for (int f = 0; f < N_FIELDS; f++) {
        gw_text_put_str(&q, ", ");
        if (raw) {
            gw_text_put_str(&q, fields[f].col);
            continue;
        }
        const char *p = fields[f].p;
        const char *parts[] = { p, "_n, ", p, "_min, ", p, "_sum, ", p, "_max" };
        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
            gw_text_put_str(&q, parts[k]);
    }
    gw_text_put_str(&q, " FROM ");
    gw_text_put_str(&q, source_table(source));
    gw_text_put_str(&q, " WHERE battery_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3");
    if (gw_text_status(&q) != GW_OK)
        return GW_ERR_STORAGE;
    uint32_t *fn = calloc((size_t)n * N_FIELDS, sizeof *fn); /* values per field per bucket */
    if (!fn)
        return GW_ERR_NOMEM;
    sqlite3_stmt *st = NULL;
    int rc = GW_OK;
    if (sqlite3_prepare_v2(db, gw_text_str(&q), -1, &st, NULL) != SQLITE_OK) {
        GW_LOGE(MOD, "bucket query failed: %s", sqlite3_errmsg(db));
        free(fn);
        return GW_ERR_STORAGE;
    }
    sqlite3_bind_int(st, 1, battery_id);
    sqlite3_bind_int64(st, 2, from_ms);
    sqlite3_bind_int64(st, 3, to_ms);
    int64_t span = to_ms - from_ms;
    int step;
    /* avg holds the sum until the end */
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t ts = sqlite3_column_int64(st, 0);
        int64_t i = (ts - from_ms) * (int64_t)n / span;
        if (i < 0 || i >= n)
            continue;
        struct history_bucket *b = &out[i];
        uint32_t *bn = &fn[(size_t)i * N_FIELDS];
        if (raw) {
            b->count++;
            for (int f = 0; f < N_FIELDS; f++) {
                if (sqlite3_column_type(st, 1 + f) == SQLITE_NULL)
                    continue;
                double v = sqlite3_column_double(st, 1 + f);
                struct history_stat *s = bucket_stat(b, f);
                if (bn[f] == 0) {
                    s->min = s->max = v;
                    s->avg = 0;
                } else {
                    s->min = v < s->min ? v : s->min;
                    s->max = v > s->max ? v : s->max;
                }
                s->avg += v;
                bn[f]++;
            }
            continue;
        }
        b->count += (uint32_t)sqlite3_column_int64(st, 1);
        for (int f = 0; f < N_FIELDS; f++) {
            int c = 2 + 4 * f;
            uint32_t k = (uint32_t)sqlite3_column_int64(st, c);
            if (k == 0)
                continue;
            double mn = col_or_nan(st, c + 1), sum = sqlite3_column_double(st, c + 2), mx = col_or_nan(st, c + 3);
            struct history_stat *s = bucket_stat(b, f);
            if (bn[f] == 0) {
                s->min = mn;
                s->max = mx;
                s->avg = 0;
            } else {
                s->min = mn < s->min ? mn : s->min;
                s->max = mx > s->max ? mx : s->max;
            }
            s->avg += sum;
            bn[f] += k;
        }
    }
    if (step != SQLITE_DONE) {
        GW_LOGE(MOD, "bucket query failed: %s", sqlite3_errmsg(db));
        rc = GW_ERR_STORAGE;
    }
    sqlite3_finalize(st);
    for (uint32_t i = 0; i < n; i++)
        for (int f = 0; f < N_FIELDS; f++) {
            uint32_t k = fn[(size_t)i * N_FIELDS + f];
            if (k)
                bucket_stat(&out[i], f)->avg /= (double)k;
        }
    free(fn);
    return rc;
}
