/* Private to history_logger: the per-minute and per-hour tables (history_rollup.c) and the bucket
 * queries over any of the three tables. Nothing outside the module includes this. */
#ifndef HISTORY_INTERNAL_H
#define HISTORY_INTERNAL_H

#include "history_logger.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HISTORY__MINUTE_MS 60000LL
#define HISTORY__HOUR_MS 3600000LL
/* The rollups are complete for every sample with ts_ms >= the watermark; this value: all. */
#define HISTORY__ROLLUP_COMPLETE INT64_MIN
/* One backfill transaction rebuilds this much time (hour-aligned), newest first. */
#define HISTORY__BACKFILL_CHUNK_MS (6 * HISTORY__HOUR_MS)

/* In the migration transaction: creates history_1m, history_10m, history_1h and history_meta; reads the
 * watermark, or sets it when the rollups are new: complete for a database without samples, else
 * the hour after the newest sample (everything older is rebuilt by backfill steps).
 * had_samples: the samples table existed before this open. Returns an SQLite code. */
int history__rollup_migrate(sqlite3 *db, bool had_samples, int64_t *watermark, char *why, size_t why_size);

/* store_ops.after_batch: the batch's samples aggregated per battery and minute, ten minutes and
 * hour in memory, then merged into the tables (one upsert per bucket). Returns an SQLite code. */
int history__rollup_after_batch(sqlite3 *db, const struct history_sample *s, size_t n);

/* Retention of the rollups: rows whose whole minute (hour) is before cutoff_ms. */
int history__rollup_prune(sqlite3 *db, int64_t cutoff_ms);

/* One backfill step (its own transaction): rebuilds [watermark - chunk, watermark) of the tables
 * from the samples and moves the watermark down (to COMPLETE once below the oldest sample).
 * *more: another step is needed. Returns an SQLite code. */
int history__rollup_backfill_step(sqlite3 *db, int64_t *watermark, bool *more);

/* Rebuilds the downsampled tables for [from_ms, to_ms) (hour-aligned) from the samples; in the caller's
 * transaction. Returns an SQLite code. */
int history__rollup_rebuild(sqlite3 *db, int64_t from_ms, int64_t to_ms);

/* The step of a downsampled source (0 for the samples), and the coarsest source whose step fits
 * in a bucket of bucket_ms (SAMPLES when none). */
int64_t history__source_resolution(enum history_source s);
enum history_source history__pick_source(int64_t bucket_ms);

/* The buckets of battery_id over [from_ms, to_ms) from one source (SAMPLES or a downsampled table),
 * out[n] prepared by the caller (start/end set, count 0, stats NAN). Returns GW_OK or
 * GW_ERR_STORAGE (logged). */
int history__query_source(sqlite3 *db, enum history_source source, uint8_t battery_id, int64_t from_ms,
                          int64_t to_ms, uint32_t n, struct history_bucket *out);

#endif
