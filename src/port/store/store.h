/* The one persistence engine of the gateway: an SQLite database (WAL journal, synchronous=NORMAL)
 * fed by a bounded in-memory ring of fixed-size records, which a writer thread drains in batches
 * (one transaction per batch). Each user (history samples, alert transitions; next the energy
 * counters and the update state) configures it with a struct store_config and a struct store_ops,
 * as libmodbus's backends configure one engine: the schema and its migrations, the INSERT of one
 * record, how a record binds to it, and an optional retention (prune).
 *
 * What the engine does for every user:
 *  - store_push copies a record into the ring (never blocks on the disk); when the ring is full
 *    the oldest record is dropped, counted and reported (GW_ERR_FULL).
 *  - The writer wakes only for a record, a flush, a retry deadline or a prune deadline (on the
 *    gateway clock, gw_clock_wait): it never polls.
 *  - A failed write (disk full, read-only, I/O error, cannot open, incompatible table, database
 *    locked by another process: every failure alike) is rolled back, the connection is closed
 *    (reopened, and the schema checked again, on the next try), the records stay queued and are
 *    retried after a back-off (retry_first_ms doubling to retry_max_ms). The first failure calls
 *    ops->on_storage(ok=false) with the reason; the first success after it calls it with ok=true.
 *    On stop, every queued record gets one last try; what still fails is counted and logged.
 *  - store_flush waits, with a real-time timeout, until what was queued before the call is
 *    committed (and asks for an immediate retry while storage fails).
 *  - SQLite result codes stay inside: every function here returns GW_OK or a GW_ERR_* code, and
 *    the reason (path, SQLite's message) is logged once under cfg->name.
 *
 * Threads: the ops callbacks except on_storage run on the writer thread (migrate also once on
 * the creating thread, inside store_create), never with an engine lock held, so they may take
 * their user's own locks. on_storage runs on the writer thread, or on the creating thread when
 * the first open fails. Every public function is thread-safe. */
#ifndef STORE_H
#define STORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* What a user of the engine supplies. Callbacks that touch the database speak SQLite: they return
 * an SQLite result code (SQLITE_OK on success, or what the failing sqlite3_* call returned) and the
 * engine translates it. ctx is store_config.ctx. */
struct store_ops {
    /* The schema version this program writes (PRAGMA user_version), >= 1. */
    int schema_version;

    /* Required. Creates the schema or brings an older one to schema_version. Called on every
     * open, inside one BEGIN IMMEDIATE transaction the engine commits (and then sets
     * user_version to schema_version when it was lower) or rolls back: a kill during a migration
     * leaves the old schema. It must be idempotent (CREATE ... IF NOT EXISTS) and must not
     * BEGIN/COMMIT itself. from_version is the file's user_version (0 for a new or pre-versioned
     * file). On failure it may write a reason into why (why_size bytes, NUL-terminated); when it
     * leaves why empty the engine uses SQLite's message. */
    int (*migrate)(void *ctx, sqlite3 *db, int from_version, char *why, size_t why_size);

    /* Required. The INSERT of one record (prepared once per connection, e.g.
     * "INSERT INTO t(a,b) VALUES(?,?)"). */
    const char *insert_sql;

    /* Required. Binds one record (cfg.record_size bytes, as given to store_push) to st, which is
     * insert_sql, reset and with its bindings cleared. */
    int (*bind)(void *ctx, sqlite3_stmt *st, const void *record);

    /* Optional. Called once per batch after its records were inserted, inside the same
     * transaction: rows derived from them (e.g. the history's per-minute and per-hour tables) are
     * committed with them or not at all (a failure rolls the whole batch back, and it is retried
     * like any failed write). records: the batch, n records of cfg.record_size bytes in push
     * order; valid during the call only. */
    int (*after_batch)(void *ctx, sqlite3 *db, const void *records, size_t n);

    /* Optional (NULL: no retention). Deletes what the user no longer keeps; called outside any
     * batch transaction (short transactions of its own are welcome), at start and every
     * cfg.prune_period_ms, after every cfg.prune_every_rows records written, and on request
     * (store_prune, store_request_prune). A failure is logged, not a storage error. */
    int (*prune)(void *ctx, sqlite3 *db);

    /* Optional. A statement the read connection runs when it opens, to refuse a file that is not
     * this user's database (e.g. "SELECT 1 FROM samples LIMIT 0"). */
    const char *read_probe_sql;

    /* Optional. Storage failed (ok false: err is the GW_ERR_* code, message the reason: path
     * and SQLite's message, at most 255 characters) or works again after a failure (ok true,
     * err GW_OK). Called once per transition, not per retry. The user turns it into its event or
     * alert. */
    void (*on_storage)(void *ctx, bool ok, int err, const char *message);
};

struct store_config {
    const char *name;            /* log module and subject, e.g. "history"; 1..23 characters */
    const char *noun;            /* what a record is, in messages ("samples"); NULL = "records" */
    const char *path;            /* the database file; copied */
    bool create_dir;             /* create path's directory (one level) before each open */
    bool open_required;          /* the first open must succeed: else store_create fails (and
                                  * on_storage is not called); otherwise a failed first open is a
                                  * storage error like any other, retried */
    const struct store_ops *ops; /* required; must outlive the store */
    void *ctx;                   /* passed to every callback */
    size_t record_size;          /* bytes per record, 1..65536 */
    uint32_t capacity;           /* records the ring holds, 1..(1 << 24) */
    uint32_t batch_max;          /* records per transaction at most, 0 = 256 */
    uint32_t commit_interval_ms; /* a record waits at most this long for a batch to fill (a batch
                                  * of batch_max / 2 goes at once); 0 = write at once */
    uint32_t retry_first_ms;     /* first back-off after a failure, 0 = 500 */
    uint32_t retry_max_ms;       /* longest back-off, 0 = 30000 */
    uint32_t busy_timeout_ms;    /* SQLite waits this long for another connection's lock, 0 = 5000 */
    uint32_t prune_period_ms;    /* ops->prune at start and then this often; 0 = not by time */
    uint32_t prune_every_rows;   /* ops->prune after this many records written; 0 = not by rows */
};

struct store_stats {
    uint64_t queued;             /* records pushed */
    uint64_t written;            /* records committed */
    uint64_t dropped;            /* lost: ring overflow, or still failing at stop */
    uint64_t write_errors;       /* failed write attempts */
    uint64_t attempts;           /* write attempts, failed or not */
    uint64_t prunes;             /* prune runs finished */
    uint64_t wakeups;            /* times the writer woke from its wait (signal or deadline) */
    uint32_t depth;              /* records queued now */
    bool storage_ok;             /* the last write (or the first open) succeeded */
    int last_error;              /* GW_ERR_* of the last failure, GW_OK if none */
    char last_message[256];      /* its reason, "" if none */
};

/* Validates cfg, opens (creates) the database on the calling thread (WAL, schema through
 * ops->migrate, the insert prepared) and starts the writer thread.
 * @retval GW_OK (also when the first open failed and !open_required: reported through
 *         on_storage, retried), GW_ERR_INVAL (bad cfg, path too long), GW_ERR_NOMEM,
 *         GW_ERR_IO (thread), or with open_required the open's error (GW_ERR_STORAGE,
 *         GW_ERR_BUSY). On failure *out is NULL. */
int store_create(const struct store_config *cfg, struct store **out);

/* Stops the writer after one last try of every queued record (what fails is logged and counted
 * as dropped), checkpoints, closes both connections and frees. NULL accepted. */
void store_destroy(struct store *st);

/* Copies one record (cfg.record_size bytes) into the ring. Never waits for the disk.
 * @retval GW_OK, GW_ERR_INVAL (NULL), GW_ERR_FULL (the ring was full: the oldest record was
 *         dropped to make room; this one is queued) */
int store_push(struct store *st, const void *record);

/* Waits until every record pushed before the call is committed (or dropped), at most timeout_ms
 * of real time. While storage fails, asks for one immediate retry. Always wakes the writer,
 * which re-reads the gateway clock and runs what is due (e.g. a periodic prune).
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_TIMEOUT, GW_ERR_STORAGE (the write it asked for failed:
 *         the records stay queued and retried; stats say why) */
int store_flush(struct store *st, uint32_t timeout_ms);

/* Runs ops->prune on the writer thread now (after the write under way) and waits for it, at
 * most timeout_ms of real time.
 * @retval GW_OK, GW_ERR_INVAL (NULL, or no ops->prune), GW_ERR_TIMEOUT, GW_ERR_STORAGE /
 *         GW_ERR_BUSY (the database could not be opened or the prune failed) */
int store_prune(struct store *st, uint32_t timeout_ms);

/* Same without waiting (e.g. the retention changed). No-op without ops->prune. */
void store_request_prune(struct store *st);

/* A copy of the counters. out must not be NULL. */
void store_get_stats(struct store *st, struct store_stats *out);

/* The read connection (for queries), opened on first use (no create; ops->read_probe_sql run)
 * and kept. On GW_OK *db is usable until store_read_end, which the caller must call; the
 * connection is the caller's alone meanwhile (a mutex). A failed open is logged and retried at
 * the next call. @retval GW_OK, GW_ERR_INVAL, GW_ERR_STORAGE (*db NULL, nothing to end) */
int store_read_begin(struct store *st, sqlite3 **db);
void store_read_end(struct store *st);

/* The database file's path (owned by the store). */
const char *store_path(const struct store *st);

/* SQLite result code (primary or extended) -> GW_ERR_*: OK/ROW/DONE -> GW_OK; BUSY, LOCKED ->
 * GW_ERR_BUSY; NOMEM -> GW_ERR_NOMEM; MISUSE, RANGE -> GW_ERR_INVAL; everything else (FULL,
 * IOERR, READONLY, CANTOPEN, CORRUPT, NOTADB, ERROR, ...) -> GW_ERR_STORAGE. For the users' own
 * read queries. */
int store_error_from_sqlite(int sqlite_rc);

#endif
