/* The persistence engine: ring, batch writer, back-off, storage reports, flush, retention, and
 * the SQLite connections (see store.h). */
#define _GNU_SOURCE /* pthread_setname_np */
#include "store.h"

#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "store_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define PATH_CAP 320
#define WHY_CAP 256                  /* = sizeof store_stats.last_message */
#define DEFAULT_BATCH 256
#define DEFAULT_RETRY_FIRST_MS 500
#define DEFAULT_RETRY_MAX_MS 30000
#define DEFAULT_BUSY_MS 5000
#define MAX_RECORD 65536
#define MAX_CAPACITY (1u << 24)

struct store {
    char name[24];
    char noun[32];
    char path[PATH_CAP];
    char dir[PATH_CAP];              /* "" unless create_dir */
    const struct store_ops *ops;
    void *ctx;
    size_t record_size;
    size_t capacity;
    size_t batch_max;
    uint32_t commit_interval_ms;
    uint32_t retry_first_ms, retry_max_ms, busy_ms;
    uint32_t prune_period_ms, prune_every_rows;

    pthread_mutex_t lock;
    pthread_cond_t work;             /* writer: something changed */
    pthread_cond_t done;             /* waiters: a write attempt or a prune finished */
    uint8_t *ring;                   /* capacity * record_size */
    size_t head, len;
    uint64_t head_seq;               /* seq of the record at head; every seq below is settled */
    uint64_t first_pending_ms;
    uint64_t flush_upto;             /* records below this seq are written without waiting */
    uint64_t inflight_seq, inflight_n; /* the batch being written */
    uint64_t inflight_dropped;       /* of which the ring dropped meanwhile */
    bool retry_now, stopping, failing;
    uint32_t backoff_ms;
    uint64_t retry_at_ms;
    uint64_t prune_requested, prune_done;
    int prune_rc;
    bool prune_rows_due;
    uint64_t rows_since_prune;
    uint64_t next_prune_ms;
    struct store_stats stats;
    bool writer_started;
    pthread_t writer;
    struct gw_log_limit drop_limit;

    /* writer thread only (and store_create before the thread starts) */
    sqlite3 *wdb;
    sqlite3_stmt *insert;
    uint8_t *batch;                  /* batch_max * record_size */
    struct gw_log_limit fail_limit, prune_limit;

    pthread_mutex_t read_lock;
    sqlite3 *rdb;
};

/* ---- errors --------------------------------------------------------------------------------- */

int store_error_from_sqlite(int sqlite_rc)
{
    switch (sqlite_rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return GW_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return GW_ERR_BUSY;
    case SQLITE_NOMEM:
        return GW_ERR_NOMEM;
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
        return GW_ERR_INVAL;
    default:
        return GW_ERR_STORAGE;
    }
}

static bool is_failure(int rc)
{
    return (rc & 0xff) != SQLITE_OK && (rc & 0xff) != SQLITE_ROW && (rc & 0xff) != SQLITE_DONE;
}

/* The code of a failure on db: its extended code when it has one, else rc, else SQLITE_ERROR
 * (a callback that failed without SQLite knowing). */
static int failure_code(sqlite3 *db, int rc)
{
    int ext = db ? sqlite3_extended_errcode(db) : SQLITE_OK;
    if (!is_failure(ext))
        ext = rc;
    return is_failure(ext) ? ext : SQLITE_ERROR;
}

static const char *sqlite_reason(sqlite3 *db, int rc)
{
    return db && sqlite3_errcode(db) != SQLITE_OK ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
}

/* ---- the pure decision ---------------------------------------------------------------------- */

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }
static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

enum store__action store__plan(const struct store__plan_in *in, uint64_t *deadline_ms)
{
    uint64_t write_at = GW_CLOCK_NEVER;
    if (in->len) {
        bool at_once = in->stopping || in->flushing || in->len >= in->batch_threshold || in->commit_interval_ms == 0;
        uint64_t commit_at = at_once ? 0 : in->first_pending_ms + in->commit_interval_ms;
        uint64_t retry_at = !in->failing || in->retry_now || in->stopping ? 0 : in->retry_at_ms;
        write_at = max_u64(commit_at, retry_at);
        if (in->now_ms >= write_at)
            return STORE__WRITE;
    }
    uint64_t prune_at = in->prune_wanted ? 0 : in->stopping ? GW_CLOCK_NEVER : in->next_prune_ms;
    if (prune_at != GW_CLOCK_NEVER && in->now_ms >= prune_at)
        return STORE__PRUNE;
    if (in->stopping && in->len == 0)
        return STORE__EXIT;
    *deadline_ms = min_u64(write_at, prune_at);
    return STORE__WAIT;
}

/* ---- connections ---------------------------------------------------------------------------- */

static void close_write_db(struct store *st)
{
    sqlite3_finalize(st->insert);
    st->insert = NULL;
    sqlite3_close(st->wdb);
    st->wdb = NULL;
}

static int exec_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(q, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(q);
    return rc;
}

/* ops->migrate in one BEGIN IMMEDIATE transaction, then user_version. */
static int migrate(struct store *st, char *why, size_t why_size)
{
    sqlite3 *db = st->wdb;
    int version = 0;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = exec_int(db, "PRAGMA user_version", &version);
    if (rc == SQLITE_OK) {
        why[0] = '\0';
        rc = st->ops->migrate(st->ctx, db, version, why, why_size);
    } else {
        why[0] = '\0';
    }
    if (rc == SQLITE_OK && version < st->ops->schema_version) {
        char sql[48];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", st->ops->schema_version);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = failure_code(db, rc);
        if (!why[0])
            snprintf(why, why_size, "cannot prepare %.120s (schema version %d): %.80s", st->path, version,
                     sqlite_reason(db, rc));
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

/* Opens the write connection: directory, file, WAL, schema, insert. Writer thread (or create).
 * Returns an SQLite code; why gets the reason on failure. */
static int open_write_db(struct store *st, char *why, size_t why_size)
{
    if (st->dir[0] && mkdir(st->dir, 0755) != 0 && errno != EEXIST) {
        snprintf(why, why_size, "cannot create %.150s: %.80s", st->dir, strerror(errno));
        return SQLITE_CANTOPEN;
    }
    int rc = sqlite3_open_v2(st->path, &st->wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(st->wdb, (int)st->busy_ms);
        rc = sqlite3_exec(st->wdb, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK) {
        rc = migrate(st, why, why_size);
        if (rc != SQLITE_OK) {
            close_write_db(st);
            return rc;
        }
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(st->wdb, st->ops->insert_sql, -1, &st->insert, NULL);
    if (rc != SQLITE_OK) {
        rc = failure_code(st->wdb, rc);
        snprintf(why, why_size, "cannot open %.160s: %.80s", st->path, sqlite_reason(st->wdb, rc));
        close_write_db(st);
    }
    return rc;
}

/* One transaction of n records from st->batch. Returns an SQLite code; why on failure. */
static int insert_batch(struct store *st, size_t n, char *why, size_t why_size)
{
    int rc = sqlite3_exec(st->wdb, "BEGIN", NULL, NULL, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        sqlite3_reset(st->insert);
        sqlite3_clear_bindings(st->insert);
        rc = st->ops->bind(st->ctx, st->insert, st->batch + i * st->record_size);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st->insert);
            rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        }
    }
    sqlite3_reset(st->insert);
    if (rc == SQLITE_OK && st->ops->after_batch)
        rc = st->ops->after_batch(st->ctx, st->wdb, st->batch, n);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(st->wdb, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = failure_code(st->wdb, rc);
        snprintf(why, why_size, "cannot write %zu %s to %.120s: %.60s", n, st->noun, st->path,
                 sqlite_reason(st->wdb, rc));
        if (!sqlite3_get_autocommit(st->wdb))
            sqlite3_exec(st->wdb, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

/* ---- ring (under st->lock) ------------------------------------------------------------------ */

static uint8_t *slot(struct store *st, size_t i)
{
    return st->ring + ((st->head + i) % st->capacity) * st->record_size;
}

static void ring_pop(struct store *st, size_t k)
{
    st->head = (st->head + k) % st->capacity;
    st->len -= k;
    st->head_seq += k;
}

int store_push(struct store *st, const void *record)
{
    if (!st || !record)
        return GW_ERR_INVAL;
    int rc = GW_OK;
    pthread_mutex_lock(&st->lock);
    if (st->len == st->capacity) { /* storage far behind: lose the oldest, count it */
        if (st->head_seq >= st->inflight_seq && st->head_seq < st->inflight_seq + st->inflight_n)
            st->inflight_dropped++; /* being written: lost only if that write fails */
        else
            st->stats.dropped++;
        ring_pop(st, 1);
        rc = GW_ERR_FULL;
        gw_log_ratelimited(&st->drop_limit, 60000, GW_LOG_WARN, st->name,
                           "memory buffer full (%zu %s): oldest dropped (%llu so far)", st->capacity, st->noun,
                           (unsigned long long)(st->stats.dropped + st->inflight_dropped));
    }
    memcpy(slot(st, st->len), record, st->record_size);
    if (st->len == 0)
        st->first_pending_ms = gw_now_ms();
    st->len++;
    st->stats.queued++;
    /* wake the writer only when this record can change its plan: the first one starts a commit
     * deadline (or a retry one); a half-full batch or "at once" is due now, unless backing off */
    if (st->len == 1 || (!st->failing && (st->len == st->batch_max / 2 || st->commit_interval_ms == 0)))
        pthread_cond_signal(&st->work);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* ---- writer --------------------------------------------------------------------------------- */

static void report(struct store *st, bool ok, int err, const char *message)
{
    if (st->ops->on_storage)
        st->ops->on_storage(st->ctx, ok, err, message);
}

/* One write attempt of the oldest queued records. Called with st->lock held; returns with it
 * held (released while the disk works). Returns whether it failed. */
static bool write_step(struct store *st)
{
    size_t n = st->len < st->batch_max ? st->len : st->batch_max;
    for (size_t i = 0; i < n; i++)
        memcpy(st->batch + i * st->record_size, slot(st, i), st->record_size);
    st->inflight_seq = st->head_seq;
    st->inflight_n = n;
    st->inflight_dropped = 0;
    st->retry_now = false;
    pthread_mutex_unlock(&st->lock);

    char why[WHY_CAP] = "";
    int rc = st->wdb ? SQLITE_OK : open_write_db(st, why, sizeof why);
    if (rc == SQLITE_OK)
        rc = insert_batch(st, n, why, sizeof why);
    if (rc != SQLITE_OK)
        close_write_db(st); /* reopened on the next try: the directory or the table may come back */
    int err = store_error_from_sqlite(rc);

    pthread_mutex_lock(&st->lock);
    st->stats.attempts++;
    bool was_failing = st->failing;
    if (rc == SQLITE_OK) {
        uint64_t end = st->inflight_seq + n; /* the ring may have dropped some of them meanwhile */
        if (end > st->head_seq)
            ring_pop(st, (size_t)min_u64(end - st->head_seq, st->len));
        st->stats.written += n;
        if (st->len)
            st->first_pending_ms = gw_now_ms();
        st->failing = false;
        st->stats.storage_ok = true;
        st->backoff_ms = 0;
        st->rows_since_prune += n;
        if (st->prune_every_rows && st->ops->prune && st->rows_since_prune >= st->prune_every_rows) {
            st->prune_rows_due = true;
            st->rows_since_prune = 0;
        }
    } else {
        st->stats.dropped += st->inflight_dropped;
        st->stats.write_errors++;
        st->failing = true;
        st->stats.storage_ok = false;
        st->stats.last_error = err;
        snprintf(st->stats.last_message, sizeof st->stats.last_message, "%s", why);
        st->backoff_ms = st->backoff_ms ? st->backoff_ms * 2 : st->retry_first_ms;
        if (st->backoff_ms > st->retry_max_ms)
            st->backoff_ms = st->retry_max_ms;
        st->retry_at_ms = gw_now_ms() + st->backoff_ms;
    }
    st->inflight_n = 0;
    st->inflight_dropped = 0;
    pthread_cond_broadcast(&st->done);
    pthread_mutex_unlock(&st->lock);

    if (rc != SQLITE_OK && !was_failing) {
        GW_LOGE(st->name, "%s; %s kept in memory and retried", why, st->noun);
        report(st, false, err, why);
    } else if (rc != SQLITE_OK) {
        gw_log_ratelimited(&st->fail_limit, 60000, GW_LOG_WARN, st->name, "%s (retrying)", why);
    } else if (was_failing) {
        char msg[WHY_CAP];
        snprintf(msg, sizeof msg, "writes to %.200s succeed again", st->path);
        GW_LOGI(st->name, "%s", msg);
        report(st, true, GW_OK, msg);
    }
    pthread_mutex_lock(&st->lock);
    return rc != SQLITE_OK;
}

/* One prune run. Lock held on entry and exit, released meanwhile. */
static void prune_step(struct store *st)
{
    uint64_t request = st->prune_requested;
    st->prune_rows_due = false;
    pthread_mutex_unlock(&st->lock);

    char why[WHY_CAP] = "";
    int rc = st->wdb ? SQLITE_OK : open_write_db(st, why, sizeof why);
    if (rc == SQLITE_OK) {
        rc = st->ops->prune(st->ctx, st->wdb);
        if (rc != SQLITE_OK) {
            rc = failure_code(st->wdb, rc);
            snprintf(why, sizeof why, "retention on %.150s failed: %.80s", st->path, sqlite_reason(st->wdb, rc));
        }
    }
    if (rc != SQLITE_OK)
        gw_log_ratelimited(&st->prune_limit, 60000, GW_LOG_WARN, st->name, "%s", why);

    pthread_mutex_lock(&st->lock);
    st->next_prune_ms = st->prune_period_ms ? gw_now_ms() + st->prune_period_ms : GW_CLOCK_NEVER;
    st->prune_done = request;
    st->prune_rc = store_error_from_sqlite(rc);
    st->stats.prunes++;
    pthread_cond_broadcast(&st->done);
}

static void *writer_main(void *arg)
{
    struct store *st = arg;
    char name[16]; /* the kernel keeps 15: "store-" and the module's first word (history, alert) */
    snprintf(name, sizeof name, "store-%.*s", (int)strcspn(st->name, "_"), st->name);
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&st->lock);
    st->next_prune_ms = st->ops->prune && st->prune_period_ms ? gw_now_ms() : GW_CLOCK_NEVER; /* at start */
    for (;;) {
        struct store__plan_in in = {
            .now_ms = gw_now_ms(),
            .len = st->len,
            .batch_threshold = st->batch_max / 2 ? st->batch_max / 2 : 1,
            .first_pending_ms = st->first_pending_ms,
            .commit_interval_ms = st->commit_interval_ms,
            .flushing = st->len && st->head_seq < st->flush_upto,
            .failing = st->failing,
            .retry_at_ms = st->retry_at_ms,
            .retry_now = st->retry_now,
            .stopping = st->stopping,
            .prune_wanted = st->ops->prune && (st->prune_requested != st->prune_done || st->prune_rows_due),
            .next_prune_ms = st->next_prune_ms,
        };
        uint64_t deadline = GW_CLOCK_NEVER;
        enum store__action act = store__plan(&in, &deadline);
        if (act == STORE__WRITE) {
            bool stopping = st->stopping;
            if (write_step(st) && stopping)
                break; /* the last try on stop failed: what is left is lost */
        } else if (act == STORE__PRUNE) {
            prune_step(st);
        } else if (act == STORE__EXIT) {
            break;
        } else {
            gw_clock_wait(&st->work, &st->lock, deadline);
            st->stats.wakeups++;
        }
    }
    if (st->len)
        GW_LOGE(st->name, "stopping with %zu %s not written (storage failing): %s", st->len, st->noun,
                st->stats.last_message);
    st->stats.dropped += st->len;
    ring_pop(st, st->len);
    st->prune_done = st->prune_requested; /* nobody waits for ever */
    st->prune_rc = GW_ERR_STORAGE;
    pthread_cond_broadcast(&st->done);
    pthread_mutex_unlock(&st->lock);
    if (st->wdb)
        sqlite3_exec(st->wdb, "PRAGMA wal_checkpoint(PASSIVE)", NULL, NULL, NULL);
    close_write_db(st);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static bool config_valid(const struct store_config *c)
{
    const struct store_ops *o = c->ops;
    return c->name && *c->name && strlen(c->name) < 24 && (!c->noun || strlen(c->noun) < 32) && c->path &&
           *c->path && o && o->schema_version >= 1 && o->migrate && o->insert_sql && o->bind &&
           c->record_size >= 1 && c->record_size <= MAX_RECORD && c->capacity >= 1 && c->capacity <= MAX_CAPACITY &&
           c->capacity <= SIZE_MAX / c->record_size;
}

static void free_store(struct store *st)
{
    close_write_db(st);
    sqlite3_close(st->rdb);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->read_lock);
    pthread_cond_destroy(&st->work);
    pthread_cond_destroy(&st->done);
    free(st->ring);
    free(st->batch);
    free(st);
}

int store_create(const struct store_config *cfg, struct store **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!cfg || !config_valid(cfg)) {
        GW_LOGE(cfg && cfg->name ? cfg->name : "store",
                "store configuration refused: name, path, ops (migrate, insert_sql, bind, schema_version >= 1), "
                "record_size 1..%d and capacity 1..%u are required",
                MAX_RECORD, MAX_CAPACITY);
        return GW_ERR_INVAL;
    }
    if (strlen(cfg->path) >= PATH_CAP) {
        GW_LOGE(cfg->name, "database path too long (%zu characters, at most %d)", strlen(cfg->path), PATH_CAP - 1);
        return GW_ERR_INVAL;
    }
    struct store *st = calloc(1, sizeof *st);
    if (!st)
        return GW_ERR_NOMEM;
    snprintf(st->name, sizeof st->name, "%s", cfg->name);
    snprintf(st->noun, sizeof st->noun, "%s", cfg->noun ? cfg->noun : "records");
    snprintf(st->path, sizeof st->path, "%s", cfg->path);
    if (cfg->create_dir) {
        snprintf(st->dir, sizeof st->dir, "%s", cfg->path);
        char *slash = strrchr(st->dir, '/');
        if (slash && slash != st->dir)
            *slash = '\0';
        else
            st->dir[0] = '\0'; /* the current directory or "/": nothing to create */
    }
    st->ops = cfg->ops;
    st->ctx = cfg->ctx;
    st->record_size = cfg->record_size;
    st->capacity = cfg->capacity;
    st->batch_max = cfg->batch_max ? cfg->batch_max : DEFAULT_BATCH;
    if (st->batch_max > st->capacity)
        st->batch_max = st->capacity;
    st->commit_interval_ms = cfg->commit_interval_ms;
    st->retry_first_ms = cfg->retry_first_ms ? cfg->retry_first_ms : DEFAULT_RETRY_FIRST_MS;
    st->retry_max_ms = cfg->retry_max_ms ? cfg->retry_max_ms : DEFAULT_RETRY_MAX_MS;
    if (st->retry_max_ms < st->retry_first_ms)
        st->retry_max_ms = st->retry_first_ms;
    st->busy_ms = cfg->busy_timeout_ms ? cfg->busy_timeout_ms : DEFAULT_BUSY_MS;
    st->prune_period_ms = cfg->prune_period_ms;
    st->prune_every_rows = cfg->prune_every_rows;
    st->stats.storage_ok = true;
    int rc = gw_clock_cond_init(&st->work);
    if (rc != GW_OK) {
        free(st);
        return rc;
    }
    rc = gw_clock_cond_init(&st->done);
    if (rc != GW_OK) {
        pthread_cond_destroy(&st->work);
        free(st);
        return rc;
    }
    pthread_mutex_init(&st->lock, NULL);
    pthread_mutex_init(&st->read_lock, NULL);
    st->ring = malloc(st->capacity * st->record_size);
    st->batch = malloc(st->batch_max * st->record_size);
    if (!st->ring || !st->batch) {
        rc = GW_ERR_NOMEM;
        goto err;
    }

    /* First open here, so the schema exists when create returns (queries work at once). */
    char why[WHY_CAP] = "";
    int orc = open_write_db(st, why, sizeof why);
    if (orc != SQLITE_OK) {
        int err = store_error_from_sqlite(orc);
        if (cfg->open_required) {
            GW_LOGE(st->name, "%s", why);
            rc = err;
            goto err;
        }
        GW_LOGE(st->name, "%s; %s kept in memory and retried", why, st->noun);
        st->failing = true;
        st->stats.storage_ok = false;
        st->stats.last_error = err;
        snprintf(st->stats.last_message, sizeof st->stats.last_message, "%s", why);
        st->backoff_ms = st->retry_first_ms;
        st->retry_at_ms = gw_now_ms() + st->backoff_ms;
        report(st, false, err, why);
    }
    if (pthread_create(&st->writer, NULL, writer_main, st) != 0) {
        GW_LOGE(st->name, "cannot start the writer thread: %s", strerror(errno));
        rc = GW_ERR_IO;
        goto err;
    }
    st->writer_started = true;
    *out = st;
    return GW_OK;
err:
    free_store(st);
    return rc;
}

void store_destroy(struct store *st)
{
    if (!st)
        return;
    if (st->writer_started) {
        pthread_mutex_lock(&st->lock);
        st->stopping = true;
        pthread_cond_signal(&st->work);
        pthread_mutex_unlock(&st->lock);
        pthread_join(st->writer, NULL);
    }
    free_store(st);
}

/* ---- waits ---------------------------------------------------------------------------------- */

static uint64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits on st->done (lock held) until real-time end_ms; false once it has passed. */
static bool wait_done(struct store *st, uint64_t end_ms)
{
    uint64_t now = real_ms();
    if (now >= end_ms)
        return false;
    uint64_t left = end_ms - now;
    gw_clock_wait_real(&st->done, &st->lock, left > UINT32_MAX ? UINT32_MAX : (uint32_t)left);
    return true;
}

int store_flush(struct store *st, uint32_t timeout_ms)
{
    if (!st)
        return GW_ERR_INVAL;
    uint64_t end = real_ms() + timeout_ms;
    int rc = GW_OK;
    pthread_mutex_lock(&st->lock);
    uint64_t target = st->head_seq + st->len;
    uint64_t attempts_before = st->stats.attempts;
    if (target > st->head_seq) {
        if (target > st->flush_upto)
            st->flush_upto = target;
        st->retry_now = true; /* failing: try again now rather than after the back-off */
    }
    pthread_cond_signal(&st->work); /* the writer re-reads the clock: a due prune runs too */
    while (st->head_seq < target) {
        if (st->failing && st->stats.attempts > attempts_before) {
            rc = GW_ERR_STORAGE; /* the write we asked for failed: still queued */
            break;
        }
        if (!wait_done(st, end)) {
            rc = GW_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void store_request_prune(struct store *st)
{
    if (!st || !st->ops->prune)
        return;
    pthread_mutex_lock(&st->lock);
    st->prune_requested++;
    pthread_cond_signal(&st->work);
    pthread_mutex_unlock(&st->lock);
}

int store_prune(struct store *st, uint32_t timeout_ms)
{
    if (!st || !st->ops->prune)
        return GW_ERR_INVAL;
    uint64_t end = real_ms() + timeout_ms;
    pthread_mutex_lock(&st->lock);
    uint64_t request = ++st->prune_requested;
    pthread_cond_signal(&st->work);
    int rc = GW_OK;
    while (st->prune_done < request) {
        if (!wait_done(st, end)) {
            rc = GW_ERR_TIMEOUT;
            break;
        }
    }
    if (rc == GW_OK)
        rc = st->prune_rc;
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void store_get_stats(struct store *st, struct store_stats *out)
{
    if (!out)
        return;
    if (!st) {
        memset(out, 0, sizeof *out);
        return;
    }
    pthread_mutex_lock(&st->lock);
    *out = st->stats;
    out->depth = (uint32_t)st->len;
    pthread_mutex_unlock(&st->lock);
}

const char *store_path(const struct store *st)
{
    return st ? st->path : "";
}

/* ---- reads ---------------------------------------------------------------------------------- */

int store_read_begin(struct store *st, sqlite3 **db)
{
    if (db)
        *db = NULL;
    if (!st || !db)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&st->read_lock);
    if (!st->rdb) {
        int rc = sqlite3_open_v2(st->path, &st->rdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_busy_timeout(st->rdb, (int)st->busy_ms);
            if (st->ops->read_probe_sql)
                rc = sqlite3_exec(st->rdb, st->ops->read_probe_sql, NULL, NULL, NULL);
        }
        if (rc != SQLITE_OK) {
            GW_LOGW(st->name, "cannot open %s for reading: %s", st->path, sqlite_reason(st->rdb, rc));
            sqlite3_close(st->rdb);
            st->rdb = NULL;
            pthread_mutex_unlock(&st->read_lock);
            return GW_ERR_STORAGE;
        }
    }
    *db = st->rdb;
    return GW_OK;
}

void store_read_end(struct store *st)
{
    if (st)
        pthread_mutex_unlock(&st->read_lock);
}
