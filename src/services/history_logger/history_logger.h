/* History logger service: battery samples in SQLite for plots, CSV export and the web's history.
 *
 * <data_dir>/history.db, WAL journal, synchronous=NORMAL: a kill -9 at any instant loses at most
 * the samples not committed yet (commits happen at least every HISTORY_COMMIT_INTERVAL_MS) and
 * never corrupts the database. Every period_s, from the latest EVENT_BATTERY_UPDATE (the battery
 * view), one row is taken per pack that is online (state ONLINE or REJOINING: fresh data) with
 * battery_id = the pack's id, and one for the aggregate with battery_id = HISTORY_AGGREGATE
 * (BATTERY_BANK_ID, 255) while a pack is online. A pack's sample is stored at most once: a stale,
 * offline or never-seen pack gives no row, and a view that repeats a sample already stored adds
 * nothing. Rows are queued; the store engine's writer thread (src/port/store) writes the queue in
 * batched transactions. Retention (days) runs at start and hourly.
 *
 * Schema (version 3, PRAGMA user_version): table samples with a battery_id column and the
 * indexes samples_ts(ts_ms) and samples_battery_ts(battery_id, ts_ms); the downsampled tables
 * history_1m, history_10m and history_1h (per battery and minute / ten minutes / hour: sample
 * count, and per plotted field its count, min, sum and max), written in the same transaction as the samples; history_meta
 * (the time from which on they are complete). An older database is migrated when it is opened,
 * in one transaction (a kill during it leaves the old schema): a missing column is added
 * (battery_id with 0: rows written before several packs are pack 0's), the indexes and the
 * downsampled tables are created; the downsampled rows of the samples already there are built in
 * the background on the writer thread (6 h of samples per transaction, newest first, between
 * sample batches), and until that is done a query reaching back there reads the samples. A
 * samples table without ts_ms is incompatible (a storage error).
 *
 * Write failures (disk full, read-only, I/O error, cannot open, incompatible table, database
 * locked by another process) publish EVENT_STORAGE_ERROR
 * {module "history"} once; samples stay in a bounded memory queue (oldest dropped when full, and
 * counted) and are retried with back-off; EVENT_STORAGE_OK is published when a write succeeds
 * again. Queries use their own read connection. Every public function is thread-safe.
 * Days are UTC days. */
#ifndef HISTORY_LOGGER_H
#define HISTORY_LOGGER_H

#include "battery_view.h"
#include "bms_data.h"
#include "gw_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HISTORY_COMMIT_INTERVAL_MS 1000   /* a queued sample is committed within about this */
#define HISTORY_DEFAULT_QUEUE 8192        /* rows buffered in memory at most (about 100 bytes each) */
#define HISTORY_MAX_BUCKETS 10000
#define HISTORY_SCHEMA_VERSION 3          /* PRAGMA user_version of history.db */
/* battery_id of the aggregate rows: what queries should ask for when no pack is given. */
#define HISTORY_AGGREGATE BATTERY_BANK_ID
/* history_logger_count: every battery id. */
#define HISTORY_ALL_IDS (-1)

struct event_bus;
struct history_logger;

/* Fills *out with the current history configuration; GW_OK or an error (previous kept). */
typedef int (*history_logger_config_getter)(void *ctx, struct gw_config_history *out);

struct history_logger_options {
    struct event_bus *bus;                    /* may be NULL (no subscription, no storage events) */
    const char *data_dir;                     /* required; created (one level) when missing */
    struct gw_config_history config;          /* period_s 1..3600, retention_days 1..3650 */
    history_logger_config_getter get_config;  /* may be NULL */
    void *get_config_ctx;
    uint32_t queue_capacity;                  /* samples, 0 = HISTORY_DEFAULT_QUEUE */
    uint32_t retry_max_ms;                    /* longest back-off between retries, 0 = 30000 */
};

/* One stored sample (what a row holds). temp_* are NAN when no sensor is connected, soh NAN
 * when unknown. An aggregate row (battery_id HISTORY_AGGREGATE) holds the bank's values: mean
 * voltage, summed current, weighted SOC/SOH, the global cell extremes and spread, the extremes of
 * the cell (external) sensors, the bank status; it has no per-cell voltages (cell_count 0). */
struct history_sample {
    int64_t ts_ms;              /* Unix ms */
    uint8_t battery_id;         /* pack id, or HISTORY_AGGREGATE */
    float voltage_v;
    float current_a;
    float soc_percent;
    float soh_percent;
    float temp_min_c;
    float temp_max_c;
    uint16_t cell_min_mv;
    uint16_t cell_max_mv;
    float cell_spread_mv;
    uint16_t status;
    uint8_t cell_count;
    uint16_t cell_mv[BMS_MAX_CELLS]; /* stored as a little-endian u16 blob of cell_count entries */
};

struct history_stat {
    double min, avg, max;       /* NAN when no value in the bucket */
};

struct history_bucket {
    int64_t start_ms;           /* [start_ms, end_ms) */
    int64_t end_ms;
    uint32_t count;             /* samples in the bucket; 0 = gap (stats NAN) */
    struct history_stat voltage_v, current_a, soc_percent, temp_min_c, temp_max_c, cell_min_mv,
        cell_max_mv;
};

/* Which table answers a bucket query. */
enum history_source {
    HISTORY_SOURCE_AUTO = 0,     /* the coarsest that gives the buckets asked for (see below) */
    HISTORY_SOURCE_SAMPLES = 1,  /* every sample: exact bucket edges */
    HISTORY_SOURCE_MINUTES = 2,  /* history_1m */
    HISTORY_SOURCE_TEN_MINUTES = 3, /* history_10m */
    HISTORY_SOURCE_HOURS = 4,    /* history_1h */
};

/* "samples", "minutes", "ten_minutes", "hours" ("auto" for AUTO). Static string. */
const char *history_source_name(enum history_source s);

struct history_query_info {
    enum history_source source;  /* the table that answered */
    int64_t resolution_ms;       /* its step: 0 (every sample), 60000, 600000, 3600000 */
};

struct history_logger_stats {
    uint64_t samples_queued;
    uint64_t samples_written;
    uint64_t samples_dropped;   /* queue overflow while storage was failing */
    uint64_t write_errors;
    uint64_t rows_deleted;      /* by retention */
    uint32_t queue_depth;
    bool storage_ok;
    bool rollups_complete;      /* the per-minute/per-hour tables cover every sample */
    int64_t rollups_from_ms;    /* else: from when on they do (Unix ms; older: being built) */
    uint64_t rollup_us;         /* writer time spent on them (inside the sample transactions) */
};

/* Creates the logger: opens/creates <data_dir>/history.db (migrating an older schema),
 * subscribes to EVENT_BATTERY_UPDATE and EVENT_CONFIG_UPDATED, starts the writer thread. A
 * database that cannot be opened (or migrated) does not fail creation: it is a storage error
 * (event published, samples buffered, retried).
 * @retval GW_OK, GW_ERR_INVAL (NULL/empty data_dir, path too long, config out of range),
 *         GW_ERR_NOMEM, GW_ERR_IO (thread creation), or the bus's subscribe error */
int history_logger_create(const struct history_logger_options *opt, struct history_logger **out);

/* Unsubscribes, writes every pending sample (one last try when storage fails), stops the writer
 * and frees. NULL accepted. */
void history_logger_destroy(struct history_logger *hl);

/* Queues one row of pack sample d now, with battery_id = d->battery_id (ignores the period and
 * the view's rules: tools and tests). Samples with valid == false are refused. The row's time is
 * d->wall_time_ms, or gw_wall_ms() when 0.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_STATE (history disabled), GW_ERR_FULL (queue was full: the
 *         oldest sample was dropped to make room) */
int history_logger_record(struct history_logger *hl, const struct bms_live_data *d);

/* Queues the rows of view v now, as the bus path does but without waiting for the period: one
 * per online pack whose sample was not stored yet, and the aggregate's when a pack is online
 * and one of the online packs has a sample newer than the last aggregate row. *rows (may be NULL)
 * gets how many were queued (0 is not an error).
 * @retval GW_OK, GW_ERR_INVAL (NULL), GW_ERR_STATE (history disabled), GW_ERR_FULL (the queue
 *         was full: oldest rows dropped) */
int history_logger_record_view(struct history_logger *hl, const struct battery_view *v, size_t *rows);

/* Waits until every sample queued before the call is committed.
 * @retval GW_OK, GW_ERR_TIMEOUT, GW_ERR_STORAGE (storage failing: samples still buffered) */
int history_logger_flush(struct history_logger *hl, uint32_t timeout_ms);

/* Runs retention now on the writer thread (rows older than retention_days before gw_wall_ms())
 * and waits for it. @retval GW_OK, GW_ERR_TIMEOUT, GW_ERR_STORAGE */
int history_logger_run_retention(struct history_logger *hl, uint32_t timeout_ms);

void history_logger_get_stats(struct history_logger *hl, struct history_logger_stats *out);

/* In the queries and exports below, battery_id is a pack id or HISTORY_AGGREGATE (the whole
 * battery: what a caller passes when no pack was asked for). */

/* Downsamples battery_id's samples with from_ms <= ts < to_ms into n_buckets equal buckets
 * (1..HISTORY_MAX_BUCKETS); out must hold n_buckets entries, every one is written (count 0 for
 * gaps). A sample of time ts counts in bucket (ts - from_ms) * n_buckets / (to_ms - from_ms).
 * Answered from the coarsest table that gives the buckets asked for: history_1h when a bucket
 * is at least an hour wide, history_10m when at least ten minutes, history_1m when at least a
 * minute, else the samples; the downsampled tables only where they are complete (see
 * history_logger_stats), else the samples. From a downsampled table each whole step counts in
 * the bucket where it starts: the same answer as the samples' when the bucket edges fall on its
 * steps, otherwise edges off by less than one step, and never an empty bucket that has samples
 * (a bucket is at least as wide as the table's step). @retval GW_OK, GW_ERR_INVAL (range empty, bad n), GW_ERR_STORAGE */
int history_logger_query_buckets(struct history_logger *hl, uint8_t battery_id, int64_t from_ms, int64_t to_ms,
                                 uint32_t n_buckets, struct history_bucket *out);

/* The same from a chosen source (HISTORY_SOURCE_AUTO: as above); info (may be NULL) says which
 * answered. @retval as above, and GW_ERR_STATE when a downsampled table was asked for a range it
 * does not cover yet */
int history_logger_query_buckets_from(struct history_logger *hl, uint8_t battery_id, int64_t from_ms,
                                      int64_t to_ms, uint32_t n_buckets, enum history_source source,
                                      struct history_bucket *out, struct history_query_info *info);

/* Raw samples with from_ms <= ts < to_ms, oldest first, at most max; *count gets how many.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_STORAGE */
int history_logger_query_samples(struct history_logger *hl, uint8_t battery_id, int64_t from_ms, int64_t to_ms,
                                 struct history_sample *out, size_t max, size_t *count);

/* Number of stored samples of battery_id (0..255, or HISTORY_ALL_IDS for every id) with
 * from_ms <= ts < to_ms. @retval GW_OK, GW_ERR_INVAL (bad id or range), GW_ERR_STORAGE */
int history_logger_count(struct history_logger *hl, int battery_id, int64_t from_ms, int64_t to_ms,
                         uint64_t *count);

/* The battery ids (packs and HISTORY_AGGREGATE) with at least one sample in from_ms <= ts <
 * to_ms, ascending, at most max into ids; *n gets how many (the web's pack selector).
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_STORAGE */
int history_logger_list_ids(struct history_logger *hl, int64_t from_ms, int64_t to_ms, uint8_t *ids, size_t max,
                            size_t *n);

/* One UTC day of samples as JSON (the module reference's day view):
 *   {"date":"2025-01-17","battery_id":0,"samples":[{"timestamp":1705500000,"voltage":52.40,
 *    "current":-12.50,"soc":85.2,"temp_max":28.5,"temp_min":26.2,"cell_min_mv":3270,
 *    "cell_max_mv":3281}, ...]}
 * date "YYYY-MM-DD" or NULL for today (gw_wall_ms()). temp_* are null without sensors.
 * @retval GW_OK, GW_ERR_INVAL (bad date), GW_ERR_OVERFLOW (buf too small; buf holds ""),
 *         GW_ERR_STORAGE */
int history_logger_get_day_json(struct history_logger *hl, const char *date, uint8_t battery_id, char *buf,
                                size_t size, size_t *len);

/* Receives CSV text in chunks (not NUL-terminated); returns 0 to go on, non-zero to stop. */
typedef int (*history_csv_writer)(void *ctx, const char *data, size_t len);

/* Streams one UTC day as CSV, header
 *   timestamp,voltage,current,soc,temp_max,temp_min,cell_min_mv,cell_max_mv
 * (timestamp in Unix seconds), row by row through write (never the whole day in memory).
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_IO (the writer asked to stop), GW_ERR_STORAGE */
int history_logger_export_csv_day(struct history_logger *hl, const char *date, uint8_t battery_id,
                                  history_csv_writer write, void *ctx);

/* Same into a FILE*. @retval as history_logger_export_csv_day (GW_ERR_IO on fwrite failure) */
int history_logger_export_csv_day_file(struct history_logger *hl, const char *date, uint8_t battery_id, FILE *fp);

/* Parses "YYYY-MM-DD" (or NULL = the UTC day of now_wall_ms) into the day's [start, end) Unix ms.
 * @retval GW_OK, GW_ERR_INVAL */
int history_day_range(const char *date, int64_t now_wall_ms, int64_t *start_ms, int64_t *end_ms);

#endif
