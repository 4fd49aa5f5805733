/* The persistence engine on its own: the writer's plan (table), batches in one transaction each
 * and in order, ring overflow counted, a missing directory / full disk / locked database then
 * recovery with one report each way, flush timeout, bad schema and bad configuration messages,
 * retention (by rows, by request, at start), the read connection, SQLite code translation, and a
 * writer that sleeps while idle. */
#define _GNU_SOURCE
#include "store.h"
#include "store_internal.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define NEVER GW_CLOCK_NEVER

/* ---- the plan, table-driven ----------------------------------------------------------------- */

struct plan_case {
    const char *what;
    struct store__plan_in in;
    enum store__action want;
    uint64_t want_deadline; /* WAIT only */
};

static void test_plan_table(void)
{
    const struct plan_case cases[] = {
        { "idle: sleep until signalled", { .now_ms = 1000, .batch_threshold = 128, .commit_interval_ms = 1000,
                                           .next_prune_ms = NEVER },
          STORE__WAIT, NEVER },
        { "one record: wait for the commit interval",
          { .now_ms = 1200, .len = 1, .batch_threshold = 128, .first_pending_ms = 1000, .commit_interval_ms = 1000,
            .next_prune_ms = NEVER },
          STORE__WAIT, 2000 },
        { "commit interval over: write",
          { .now_ms = 2000, .len = 1, .batch_threshold = 128, .first_pending_ms = 1000, .commit_interval_ms = 1000,
            .next_prune_ms = NEVER },
          STORE__WRITE, 0 },
        { "half a batch: write at once",
          { .now_ms = 1001, .len = 128, .batch_threshold = 128, .first_pending_ms = 1000, .commit_interval_ms = 1000,
            .next_prune_ms = NEVER },
          STORE__WRITE, 0 },
        { "interval 0: write at once",
          { .now_ms = 1000, .len = 1, .batch_threshold = 32, .first_pending_ms = 1000, .next_prune_ms = NEVER },
          STORE__WRITE, 0 },
        { "a flush waits: write at once",
          { .now_ms = 1001, .len = 3, .batch_threshold = 128, .first_pending_ms = 1000, .commit_interval_ms = 1000,
            .flushing = true, .next_prune_ms = NEVER },
          STORE__WRITE, 0 },
        { "failing: sleep until the retry deadline, even when flushing",
          { .now_ms = 1001, .len = 300, .batch_threshold = 128, .first_pending_ms = 1000, .commit_interval_ms = 1000,
            .flushing = true, .failing = true, .retry_at_ms = 5000, .next_prune_ms = NEVER },
          STORE__WAIT, 5000 },
        { "failing, retry deadline reached: write",
          { .now_ms = 5000, .len = 3, .batch_threshold = 128, .first_pending_ms = 1000, .commit_interval_ms = 1000,
            .failing = true, .retry_at_ms = 5000, .next_prune_ms = NEVER },
          STORE__WRITE, 0 },
        { "failing, retry passed but the commit interval not: the later of both",
          { .now_ms = 5000, .len = 1, .batch_threshold = 128, .first_pending_ms = 4500, .commit_interval_ms = 1000,
            .failing = true, .retry_at_ms = 4800, .next_prune_ms = NEVER },
          STORE__WAIT, 5500 },
        { "failing, a flush asks for a retry now",
          { .now_ms = 1001, .len = 3, .batch_threshold = 128, .first_pending_ms = 1000, .commit_interval_ms = 1000,
            .flushing = true, .failing = true, .retry_at_ms = 5000, .retry_now = true, .next_prune_ms = NEVER },
          STORE__WRITE, 0 },
        { "failing and stopping: one last try",
          { .now_ms = 1001, .len = 3, .batch_threshold = 128, .first_pending_ms = 1000, .commit_interval_ms = 1000,
            .failing = true, .retry_at_ms = 5000, .stopping = true, .next_prune_ms = NEVER },
          STORE__WRITE, 0 },
        { "failing, nothing queued: sleep until signalled",
          { .now_ms = 1001, .batch_threshold = 128, .commit_interval_ms = 1000, .failing = true, .retry_at_ms = 5000,
            .next_prune_ms = NEVER },
          STORE__WAIT, NEVER },
        { "prune period ahead: its deadline",
          { .now_ms = 1000, .batch_threshold = 128, .commit_interval_ms = 1000, .next_prune_ms = 3601000 },
          STORE__WAIT, 3601000 },
        { "the nearer of the commit and prune deadlines",
          { .now_ms = 1000, .len = 1, .batch_threshold = 128, .first_pending_ms = 1000, .commit_interval_ms = 1000,
            .next_prune_ms = 1500 },
          STORE__WAIT, 1500 },
        { "prune period reached", { .now_ms = 3601000, .batch_threshold = 128, .next_prune_ms = 3601000 },
          STORE__PRUNE, 0 },
        { "prune requested", { .now_ms = 10, .batch_threshold = 128, .prune_wanted = true, .next_prune_ms = NEVER },
          STORE__PRUNE, 0 },
        { "a due write goes before a due prune",
          { .now_ms = 10, .len = 1, .batch_threshold = 128, .prune_wanted = true, .next_prune_ms = 0 },
          STORE__WRITE, 0 },
        { "stopping with nothing queued: exit (a periodic prune is not due)",
          { .now_ms = 5000, .batch_threshold = 128, .stopping = true, .next_prune_ms = 10 }, STORE__EXIT, 0 },
        { "stopping: a requested prune still runs",
          { .now_ms = 5000, .batch_threshold = 128, .stopping = true, .prune_wanted = true, .next_prune_ms = NEVER },
          STORE__PRUNE, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t deadline = 12345;
        enum store__action got = store__plan(&cases[i].in, &deadline);
        if (got != cases[i].want || (got == STORE__WAIT && deadline != cases[i].want_deadline))
            fprintf(stderr, "  plan case \"%s\": action %d deadline %llu\n", cases[i].what, (int)got,
                    (unsigned long long)deadline);
        CHECK_EQ_INT(got, cases[i].want);
        if (got == STORE__WAIT)
            CHECK_EQ_INT(deadline, cases[i].want_deadline);
    }
}

/* ---- a small user of the engine ------------------------------------------------------------- */

struct rec {
    uint32_t id;
    int32_t value;
    char text[48];
};

struct user {
    atomic_int commits;          /* transactions committed on the write connection */
    atomic_int outside_txn;      /* records bound outside a transaction (must stay 0) */
    atomic_int prunes;
    atomic_int prune_fail;       /* the next prunes fail */
    atomic_int errors, oks;
    atomic_int last_err;
    char last_message[256];
    pthread_mutex_t lock;
    const char *migrate_sql;
    const char *why;             /* migrate refuses with this reason when set */
};

static int on_commit(void *arg)
{
    atomic_fetch_add(&((struct user *)arg)->commits, 1);
    return 0;
}

static int user_migrate(void *ctx, sqlite3 *db, int from_version, char *why, size_t why_size)
{
    struct user *u = ctx;
    (void)from_version;
    sqlite3_commit_hook(db, on_commit, u);
    if (u->why) {
        snprintf(why, why_size, "%s", u->why);
        return SQLITE_ERROR;
    }
    return sqlite3_exec(db,
                        u->migrate_sql ? u->migrate_sql
                                       : "CREATE TABLE IF NOT EXISTS r(n INTEGER PRIMARY KEY, id INTEGER NOT NULL,"
                                         " value INTEGER, text TEXT)",
                        NULL, NULL, NULL);
}

static int user_bind(void *ctx, sqlite3_stmt *st, const void *record)
{
    struct user *u = ctx;
    const struct rec *r = record;
    if (sqlite3_get_autocommit(sqlite3_db_handle(st)))
        atomic_fetch_add(&u->outside_txn, 1);
    sqlite3_bind_int64(st, 1, r->id);
    sqlite3_bind_int(st, 2, r->value);
    return sqlite3_bind_text(st, 3, r->text, -1, SQLITE_TRANSIENT);
}

static int user_prune(void *ctx, sqlite3 *db)
{
    struct user *u = ctx;
    atomic_fetch_add(&u->prunes, 1);
    if (atomic_load(&u->prune_fail))
        return sqlite3_exec(db, "DELETE FROM no_such_table", NULL, NULL, NULL);
    return sqlite3_exec(db, "DELETE FROM r WHERE n <= (SELECT MAX(n) FROM r) - 5", NULL, NULL, NULL);
}

static void user_storage(void *ctx, bool ok, int err, const char *message)
{
    struct user *u = ctx;
    atomic_fetch_add(ok ? &u->oks : &u->errors, 1);
    atomic_store(&u->last_err, err);
    pthread_mutex_lock(&u->lock);
    snprintf(u->last_message, sizeof u->last_message, "%s", message);
    pthread_mutex_unlock(&u->lock);
}

static const struct store_ops user_ops = {
    .schema_version = 3,
    .migrate = user_migrate,
    .insert_sql = "INSERT INTO r(id, value, text) VALUES(?,?,?)",
    .bind = user_bind,
    .prune = user_prune,
    .read_probe_sql = "SELECT 1 FROM r LIMIT 0",
    .on_storage = user_storage,
};

static void user_init(struct user *u)
{
    memset(u, 0, sizeof *u);
    pthread_mutex_init(&u->lock, NULL);
}

static struct store_config user_config(struct user *u, const char *path)
{
    struct store_config c = {
        .name = "teststore", .noun = "test records", .path = path, .ops = &user_ops, .ctx = u,
        .record_size = sizeof(struct rec), .capacity = 4096, .batch_max = 100,
        .commit_interval_ms = 3600000, /* nothing written before a flush, a full batch or the stop */
        .retry_first_ms = 20, .retry_max_ms = 100,
    };
    return c;
}

static struct rec make_rec(uint32_t id)
{
    struct rec r = { .id = id, .value = (int32_t)(id * 7) - 1000 };
    snprintf(r.text, sizeof r.text, "record %u", id);
    return r;
}

static void make_dir(char *tmpl) { CHECK(mkdtemp(tmpl) != NULL); }

static void remove_dir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

static int64_t scalar(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* Every row of r, in insertion order, must be records first..first+n-1 with their values. */
static void check_rows(const char *path, uint32_t first, uint32_t n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    CHECK_EQ_INT(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "SELECT id, value, text FROM r ORDER BY n", -1, &q, NULL), SQLITE_OK);
    uint32_t i = 0, bad = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        struct rec want = make_rec(first + i);
        if ((uint32_t)sqlite3_column_int64(q, 0) != want.id || sqlite3_column_int(q, 1) != want.value ||
            strcmp((const char *)sqlite3_column_text(q, 2), want.text) != 0)
            bad++;
        i++;
    }
    CHECK_EQ_INT(i, n);
    CHECK_EQ_INT(bad, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* Waits (bounded) for a condition another thread makes true. */
#define WAIT_FOR(cond)                                                                           \
    do {                                                                                         \
        for (int w_ = 0; w_ < 4000 && !(cond); w_++)                                             \
            gw_sleep_ms(5);                                                                      \
        CHECK(cond);                                                                             \
    } while (0)

static bool flush_until_ok(struct store *st)
{
    for (int i = 0; i < 400; i++) {
        if (store_flush(st, 1000) == GW_OK)
            return true;
        gw_sleep_ms(25);
    }
    return false;
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* Records queued while the directory is missing are written, once it exists, in batches of
 * batch_max, one transaction each, in the order they were pushed. */
static void test_batches_in_order_after_missing_dir(void)
{
    char dir[] = "/tmp/gw_store_XXXXXX";
    make_dir(dir);
    char sub[300], path[330];
    snprintf(sub, sizeof sub, "%s/data", dir);
    snprintf(path, sizeof path, "%s/store.db", sub);
    static struct user u;
    user_init(&u);
    struct store_config cfg = user_config(&u, path);
    struct store *st = NULL;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK); /* not open_required: a storage error, retried */
    if (!st)
        return;
    CHECK_EQ_INT(atomic_load(&u.errors), 1);
    CHECK_EQ_INT(atomic_load(&u.last_err), GW_ERR_STORAGE);
    pthread_mutex_lock(&u.lock);
    CHECK(strstr(u.last_message, path) != NULL);
    pthread_mutex_unlock(&u.lock);
    for (uint32_t i = 0; i < 250; i++) {
        struct rec r = make_rec(i);
        CHECK_EQ_INT(store_push(st, &r), GW_OK);
    }
    CHECK_EQ_INT(store_flush(st, 10000), GW_ERR_STORAGE);
    struct store_stats s;
    store_get_stats(st, &s);
    CHECK(!s.storage_ok);
    CHECK_EQ_INT(s.depth, 250);
    CHECK_EQ_INT(s.last_error, GW_ERR_STORAGE);
    CHECK(strstr(s.last_message, "unable to open database file") != NULL);
    CHECK_EQ_INT(scalar(path, "SELECT COUNT(*) FROM r"), -1);

    CHECK_EQ_INT(mkdir(sub, 0755), 0);
    CHECK(flush_until_ok(st));
    store_get_stats(st, &s);
    CHECK(s.storage_ok);
    CHECK_EQ_INT(s.written, 250);
    CHECK_EQ_INT(s.depth, 0);
    CHECK_EQ_INT(s.dropped, 0);
    CHECK_EQ_INT(atomic_load(&u.commits), 1 + 3); /* the schema, then 100 + 100 + 50 */
    CHECK_EQ_INT(atomic_load(&u.outside_txn), 0);
    WAIT_FOR(atomic_load(&u.oks) == 1); /* reported just after the flush returns */
    CHECK_EQ_INT(atomic_load(&u.errors), 1); /* once, not per retry */
    check_rows(path, 0, 250);
    CHECK_EQ_INT(scalar(path, "PRAGMA user_version"), 3);
    sqlite3 *db = NULL;
    CHECK_EQ_INT(store_read_begin(st, &db), GW_OK);
    if (db) {
        sqlite3_stmt *q = NULL;
        CHECK_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
        CHECK_EQ_INT(sqlite3_step(q), SQLITE_ROW);
        CHECK_STR((const char *)sqlite3_column_text(q, 0), "wal");
        sqlite3_finalize(q);
        store_read_end(st);
    }
    store_destroy(st);
    remove_dir(dir);
}

/* Below half a batch and within the commit interval nothing is written; a flush writes the
 * queue in one transaction; destroy writes what is still queued. */
static void test_flush_and_destroy_write_everything(void)
{
    char dir[] = "/tmp/gw_store_XXXXXX";
    make_dir(dir);
    char path[300];
    snprintf(path, sizeof path, "%s/store.db", dir);
    static struct user u;
    user_init(&u);
    struct store_config cfg = user_config(&u, path);
    cfg.open_required = true;
    struct store *st = NULL;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    if (!st)
        return;
    CHECK_EQ_INT(atomic_load(&u.commits), 1); /* the schema transaction */
    for (uint32_t i = 0; i < 40; i++) {
        struct rec r = make_rec(i);
        CHECK_EQ_INT(store_push(st, &r), GW_OK);
    }
    CHECK_EQ_INT(store_flush(st, 10000), GW_OK);
    CHECK_EQ_INT(atomic_load(&u.commits), 2);
    CHECK_EQ_INT(store_flush(st, 10000), GW_OK); /* nothing queued: at once */
    for (uint32_t i = 40; i < 70; i++) {
        struct rec r = make_rec(i);
        CHECK_EQ_INT(store_push(st, &r), GW_OK);
    }
    store_destroy(st);
    check_rows(path, 0, 70);
    CHECK_EQ_INT(atomic_load(&u.commits), 3);
    CHECK_EQ_INT(atomic_load(&u.errors), 0);
    /* reopened: the schema is not created twice, rows stay */
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    struct rec r = make_rec(70);
    CHECK_EQ_INT(store_push(st, &r), GW_OK);
    CHECK_EQ_INT(store_flush(st, 10000), GW_OK);
    store_destroy(st);
    check_rows(path, 0, 71);
    remove_dir(dir);
}

/* after_batch writes derived rows in the batch's transaction: they are committed with the
 * records; a failing after_batch rolls the batch back (nothing of it is written) and the batch is
 * retried whole once it works. */
static atomic_int after_fail, after_calls;
static int user_after_batch(void *ctx, sqlite3 *db, const void *records, size_t n)
{
    (void)ctx;
    atomic_fetch_add(&after_calls, 1);
    if (sqlite3_get_autocommit(db))
        return SQLITE_MISUSE; /* must run inside the batch's transaction */
    if (atomic_load(&after_fail))
        return SQLITE_FULL;
    const struct rec *r = records;
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += r[i].value;
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO derived(n, total) VALUES(%zu, %lld)", n, (long long)sum);
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static void test_after_batch_in_the_same_transaction(void)
{
    char dir[] = "/tmp/gw_store_XXXXXX";
    make_dir(dir);
    char path[300];
    snprintf(path, sizeof path, "%s/store.db", dir);
    static struct user u;
    user_init(&u);
    u.migrate_sql = "CREATE TABLE IF NOT EXISTS r(n INTEGER PRIMARY KEY, id INTEGER NOT NULL, value INTEGER, text TEXT);"
                    "CREATE TABLE IF NOT EXISTS derived(n INTEGER, total INTEGER);";
    static struct store_ops ops;
    ops = user_ops;
    ops.after_batch = user_after_batch;
    ops.prune = NULL;
    struct store_config cfg = user_config(&u, path);
    cfg.ops = &ops;
    cfg.open_required = true;
    struct store *st = NULL;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    if (!st)
        return;
    int64_t want = 0;
    for (uint32_t i = 0; i < 30; i++) {
        struct rec r = make_rec(i);
        want += r.value;
        CHECK_EQ_INT(store_push(st, &r), GW_OK);
    }
    CHECK_EQ_INT(store_flush(st, 10000), GW_OK);
    CHECK_EQ_INT(scalar(path, "SELECT COUNT(*) FROM r"), 30);
    CHECK_EQ_INT(scalar(path, "SELECT SUM(n) FROM derived"), 30);
    CHECK_EQ_INT(scalar(path, "SELECT SUM(total) FROM derived"), want);
    atomic_store(&after_fail, 1);
    for (uint32_t i = 30; i < 40; i++) {
        struct rec r = make_rec(i);
        want += r.value;
        CHECK_EQ_INT(store_push(st, &r), GW_OK);
    }
    CHECK_EQ_INT(store_flush(st, 2000), GW_ERR_STORAGE);
    CHECK_EQ_INT(scalar(path, "SELECT COUNT(*) FROM r"), 30); /* rolled back with its derived rows */
    CHECK_EQ_INT(scalar(path, "SELECT SUM(n) FROM derived"), 30);
    WAIT_FOR(atomic_load(&u.errors) == 1); /* reported by the writer, maybe after the flush returned */
    atomic_store(&after_fail, 0);
    CHECK(flush_until_ok(st));
    CHECK_EQ_INT(scalar(path, "SELECT COUNT(*) FROM r"), 40);
    CHECK_EQ_INT(scalar(path, "SELECT SUM(n) FROM derived"), 40);
    CHECK_EQ_INT(scalar(path, "SELECT SUM(total) FROM derived"), want);
    WAIT_FOR(atomic_load(&u.oks) == 1);
    CHECK_EQ_INT(atomic_load(&u.outside_txn), 0);
    CHECK(atomic_load(&after_calls) >= 3);
    store_destroy(st);
    check_rows(path, 0, 40);
    remove_dir(dir);
}

/* A full ring drops the oldest, says so (GW_ERR_FULL) and counts it; the rest is written in
 * order once storage works. */
static void test_ring_overflow_counted(void)
{
    char dir[] = "/tmp/gw_store_XXXXXX";
    make_dir(dir);
    char sub[300], path[330];
    snprintf(sub, sizeof sub, "%s/data", dir);
    snprintf(path, sizeof path, "%s/store.db", sub);
    static struct user u;
    user_init(&u);
    struct store_config cfg = user_config(&u, path);
    cfg.capacity = 10;
    struct store *st = NULL;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    if (!st)
        return;
    for (uint32_t i = 0; i < 15; i++) {
        struct rec r = make_rec(i);
        CHECK_EQ_INT(store_push(st, &r), i < 10 ? GW_OK : GW_ERR_FULL);
    }
    struct store_stats s;
    store_get_stats(st, &s);
    CHECK_EQ_INT(s.queued, 15);
    CHECK_EQ_INT(s.depth, 10);
    CHECK_EQ_INT(s.dropped, 5);
    CHECK_EQ_INT(mkdir(sub, 0755), 0);
    CHECK(flush_until_ok(st));
    store_get_stats(st, &s);
    CHECK_EQ_INT(s.written, 10);
    CHECK_EQ_INT(s.dropped, 5);
    check_rows(path, 5, 10);
    store_destroy(st);
    CHECK_EQ_INT(store_push(NULL, &s), GW_ERR_INVAL);
    remove_dir(dir);
}

/* Full disk (RLIMIT_FSIZE pinned at the files' size: writes that grow a file fail as on a full
 * disk): one error report with the reason, records kept and retried with back-off, flush says
 * GW_ERR_STORAGE; room again: everything written, one "ok" report, the database sound. */
static void test_full_disk_then_recovers(void)
{
    char dir[] = "/tmp/gw_store_XXXXXX";
    make_dir(dir);
    char path[300], wal[310];
    snprintf(path, sizeof path, "%s/store.db", dir);
    snprintf(wal, sizeof wal, "%s/store.db-wal", dir);
    static struct user u;
    user_init(&u);
    struct store_config cfg = user_config(&u, path);
    struct store *st = NULL;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    if (!st)
        return;
    uint32_t i = 0;
    for (; i < 10; i++) {
        struct rec r = make_rec(i);
        store_push(st, &r);
    }
    CHECK_EQ_INT(store_flush(st, 10000), GW_OK);
    signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of being killed */
    struct rlimit old_limit;
    getrlimit(RLIMIT_FSIZE, &old_limit);
    struct stat a, b;
    long long biggest = 0;
    if (stat(path, &a) == 0)
        biggest = (long long)a.st_size;
    if (stat(wal, &b) == 0 && (long long)b.st_size > biggest)
        biggest = (long long)b.st_size;
    struct rlimit lim = { .rlim_cur = (rlim_t)biggest, .rlim_max = old_limit.rlim_max };
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
    for (; i < 2010; i++) { /* enough to need new pages */
        struct rec r = make_rec(i);
        store_push(st, &r);
    }
    CHECK_EQ_INT(store_flush(st, 10000), GW_ERR_STORAGE);
    WAIT_FOR(atomic_load(&u.errors) >= 1);
    CHECK_EQ_INT(store_flush(st, 10000), GW_ERR_STORAGE);
    struct store_stats s;
    store_get_stats(st, &s);
    CHECK(!s.storage_ok);
    CHECK(s.write_errors >= 2);
    CHECK(strstr(s.last_message, path) != NULL); /* the retries reopen: "cannot open ..." */
    pthread_mutex_lock(&u.lock);
    CHECK(strstr(u.last_message, "cannot write") != NULL && strstr(u.last_message, path) != NULL);
    pthread_mutex_unlock(&u.lock);
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
    CHECK(flush_until_ok(st));
    store_get_stats(st, &s);
    CHECK(s.storage_ok);
    CHECK_EQ_INT(s.dropped, 0);
    CHECK_EQ_INT(atomic_load(&u.errors), 1);
    WAIT_FOR(atomic_load(&u.oks) == 1); /* reported just after the flush returns */
    store_destroy(st);
    check_rows(path, 0, 2010);
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL);
    CHECK_EQ_INT(sqlite3_step(q), SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_finalize(q);
    sqlite3_close(db);
    remove_dir(dir);
}

/* Another process holds the write lock: the write waits busy_timeout_ms, fails as GW_ERR_BUSY
 * (reported, retried); a flush shorter than the wait times out; released: all written. */
static void test_locked_database_busy_then_flush_timeout(void)
{
    char dir[] = "/tmp/gw_store_XXXXXX";
    make_dir(dir);
    char path[300];
    snprintf(path, sizeof path, "%s/store.db", dir);
    static struct user u;
    user_init(&u);
    struct store_config cfg = user_config(&u, path);
    cfg.busy_timeout_ms = 50;
    struct store *st = NULL;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    if (!st)
        return;
    sqlite3 *other = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &other), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    struct rec r = make_rec(0);
    CHECK_EQ_INT(store_push(st, &r), GW_OK);
    CHECK_EQ_INT(store_flush(st, 10000), GW_ERR_STORAGE);
    WAIT_FOR(atomic_load(&u.errors) >= 1);
    CHECK_EQ_INT(atomic_load(&u.last_err), GW_ERR_BUSY);
    struct store_stats s;
    store_get_stats(st, &s);
    CHECK_EQ_INT(s.last_error, GW_ERR_BUSY);
    CHECK(strstr(s.last_message, "locked") != NULL);
    CHECK_EQ_INT(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    CHECK(flush_until_ok(st));
    WAIT_FOR(atomic_load(&u.oks) == 1); /* reported just after the flush returns */
    store_destroy(st);

    /* a writer that waits long for the lock: the flush gives up at its own timeout */
    cfg.busy_timeout_ms = 600000;
    user_init(&u);
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    if (!st)
        return;
    CHECK_EQ_INT(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    r = make_rec(1);
    CHECK_EQ_INT(store_push(st, &r), GW_OK);
    CHECK_EQ_INT(store_flush(st, 100), GW_ERR_TIMEOUT);
    CHECK_EQ_INT(store_flush(st, 0), GW_ERR_TIMEOUT);
    CHECK_EQ_INT(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK); /* the writer goes on */
    CHECK_EQ_INT(store_flush(st, 60000), GW_OK);
    CHECK_EQ_INT(atomic_load(&u.errors), 0);
    store_destroy(st);
    sqlite3_close(other);
    check_rows(path, 0, 2);
    remove_dir(dir);
}

/* A schema that does not prepare: the store says which file, which version and SQLite's words;
 * open_required turns it into a creation failure; a migration's own reason is kept as is; an
 * insert that does not fit the table is named. */
static void test_bad_schema_error_messages(void)
{
    char dir[] = "/tmp/gw_store_XXXXXX";
    make_dir(dir);
    char path[300];
    snprintf(path, sizeof path, "%s/store.db", dir);
    static struct user u;
    user_init(&u);
    u.migrate_sql = "CREATE TABLE r(n INTEGER PRIMARY KEY,";
    struct store_config cfg = user_config(&u, path);
    cfg.open_required = true;
    struct store *st = (struct store *)&u;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_ERR_STORAGE);
    CHECK(st == NULL);
    CHECK_EQ_INT(atomic_load(&u.errors), 0); /* open_required: the caller decides, no report */

    cfg.open_required = false;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    if (!st)
        return;
    CHECK_EQ_INT(atomic_load(&u.errors), 1);
    char want[400];
    snprintf(want, sizeof want, "cannot prepare %s (schema version 0): incomplete input", path);
    pthread_mutex_lock(&u.lock);
    CHECK_STR(u.last_message, want);
    pthread_mutex_unlock(&u.lock);
    struct rec r = make_rec(0);
    store_push(st, &r);
    CHECK_EQ_INT(store_flush(st, 10000), GW_ERR_STORAGE);
    struct store_stats s;
    store_get_stats(st, &s);
    CHECK_STR(s.last_message, want);
    CHECK_EQ_INT(scalar(path, "PRAGMA user_version"), 0); /* rolled back */
    store_destroy(st);

    user_init(&u);
    u.why = "store.db is not a test database";
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    pthread_mutex_lock(&u.lock);
    CHECK_STR(u.last_message, "store.db is not a test database");
    pthread_mutex_unlock(&u.lock);
    store_destroy(st);

    user_init(&u);
    u.migrate_sql = "CREATE TABLE IF NOT EXISTS r(n INTEGER PRIMARY KEY, id INTEGER)";
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    snprintf(want, sizeof want, "cannot open %s: table r has no column named value", path);
    pthread_mutex_lock(&u.lock);
    CHECK_STR(u.last_message, want);
    pthread_mutex_unlock(&u.lock);
    store_destroy(st);
    remove_dir(dir);
}

static void test_bad_config(void)
{
    static struct user u;
    user_init(&u);
    struct store_config good = user_config(&u, "/tmp/never-created.db");
    struct store *st = (struct store *)&u;
    CHECK_EQ_INT(store_create(NULL, &st), GW_ERR_INVAL);
    CHECK(st == NULL);
    CHECK_EQ_INT(store_create(&good, NULL), GW_ERR_INVAL);
    struct store_config c = good;
    c.record_size = 0;
    CHECK_EQ_INT(store_create(&c, &st), GW_ERR_INVAL);
    c = good;
    c.capacity = 0;
    CHECK_EQ_INT(store_create(&c, &st), GW_ERR_INVAL);
    c = good;
    c.ops = NULL;
    CHECK_EQ_INT(store_create(&c, &st), GW_ERR_INVAL);
    struct store_ops no_bind = user_ops;
    no_bind.bind = NULL;
    c = good;
    c.ops = &no_bind;
    CHECK_EQ_INT(store_create(&c, &st), GW_ERR_INVAL);
    struct store_ops v0 = user_ops;
    v0.schema_version = 0;
    c.ops = &v0;
    CHECK_EQ_INT(store_create(&c, &st), GW_ERR_INVAL);
    c = good;
    c.name = "a-name-far-longer-than-the-limit";
    CHECK_EQ_INT(store_create(&c, &st), GW_ERR_INVAL);
    char long_path[400];
    memset(long_path, 'x', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    c = good;
    c.path = long_path;
    CHECK_EQ_INT(store_create(&c, &st), GW_ERR_INVAL);
    CHECK(st == NULL);
    CHECK_EQ_INT(store_flush(NULL, 10), GW_ERR_INVAL);
    CHECK_EQ_INT(store_prune(NULL, 10), GW_ERR_INVAL);
    sqlite3 *db = (sqlite3 *)&u;
    CHECK_EQ_INT(store_read_begin(NULL, &db), GW_ERR_INVAL);
    CHECK(db == NULL);
    store_destroy(NULL);
    CHECK_EQ_INT(access("/tmp/never-created.db", F_OK), -1);
}

/* Retention: at start (period), after prune_every_rows written, on request (with its result),
 * a failing prune is not a storage error; without ops->prune the request is refused. */
static void test_prune(void)
{
    char dir[] = "/tmp/gw_store_XXXXXX";
    make_dir(dir);
    char path[300];
    snprintf(path, sizeof path, "%s/store.db", dir);
    static struct user u;
    user_init(&u);
    struct store_config cfg = user_config(&u, path);
    cfg.prune_period_ms = 3600000;
    cfg.prune_every_rows = 20;
    cfg.commit_interval_ms = 0;
    struct store *st = NULL;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    if (!st)
        return;
    WAIT_FOR(atomic_load(&u.prunes) >= 1); /* at start */
    CHECK_EQ_INT(store_prune(st, 10000), GW_OK);
    int before = atomic_load(&u.prunes);
    CHECK(before >= 2);
    for (uint32_t i = 0; i < 20; i++) {
        struct rec r = make_rec(i);
        store_push(st, &r);
    }
    CHECK_EQ_INT(store_flush(st, 10000), GW_OK);
    WAIT_FOR(atomic_load(&u.prunes) >= before + 1); /* 20 rows written */
    WAIT_FOR(scalar(path, "SELECT COUNT(*) FROM r") == 5);
    atomic_store(&u.prune_fail, 1);
    CHECK_EQ_INT(store_prune(st, 10000), GW_ERR_STORAGE);
    struct store_stats s;
    store_get_stats(st, &s);
    CHECK(s.storage_ok);
    CHECK_EQ_INT(atomic_load(&u.errors), 0);
    atomic_store(&u.prune_fail, 0);
    store_request_prune(st);
    CHECK_EQ_INT(store_prune(st, 10000), GW_OK);
    store_destroy(st);

    struct store_ops no_prune = user_ops;
    no_prune.prune = NULL;
    cfg.ops = &no_prune;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    CHECK_EQ_INT(store_prune(st, 100), GW_ERR_INVAL);
    store_request_prune(st);
    store_destroy(st);
    remove_dir(dir);
}

/* The read connection: refused while the file is missing or not this user's (probe), then
 * opened and kept. */
static void test_read_connection(void)
{
    char dir[] = "/tmp/gw_store_XXXXXX";
    make_dir(dir);
    char sub[300], path[330];
    snprintf(sub, sizeof sub, "%s/data", dir);
    snprintf(path, sizeof path, "%s/store.db", sub);
    static struct user u;
    user_init(&u);
    struct store_config cfg = user_config(&u, path);
    cfg.create_dir = true;
    struct store *st = NULL;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK); /* create_dir: the directory is made */
    if (!st)
        return;
    CHECK_EQ_INT(atomic_load(&u.errors), 0);
    CHECK_STR(store_path(st), path);
    sqlite3 *db = NULL;
    CHECK_EQ_INT(store_read_begin(st, &db), GW_OK);
    CHECK(db != NULL);
    store_read_end(st);
    store_destroy(st);

    struct store_ops wrong_probe = user_ops;
    wrong_probe.read_probe_sql = "SELECT 1 FROM samples LIMIT 0";
    cfg.ops = &wrong_probe;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    CHECK_EQ_INT(store_read_begin(st, &db), GW_ERR_STORAGE);
    CHECK(db == NULL);
    store_destroy(st);
    remove_dir(dir);
}

/* Idle, the writer sleeps until signalled (no polling); a record wakes it. The window only
 * bounds how many wakes a polling writer would have shown; a slow machine shows fewer. */
static void test_idle_writer_sleeps(void)
{
    char dir[] = "/tmp/gw_store_XXXXXX";
    make_dir(dir);
    char path[300];
    snprintf(path, sizeof path, "%s/store.db", dir);
    static struct user u;
    user_init(&u);
    struct store_config cfg = user_config(&u, path);
    cfg.commit_interval_ms = 0;
    struct store *st = NULL;
    CHECK_EQ_INT(store_create(&cfg, &st), GW_OK);
    if (!st)
        return;
    struct store_stats a, b;
    store_get_stats(st, &a);
    gw_sleep_ms(1000);
    store_get_stats(st, &b);
    CHECK(b.wakeups - a.wakeups <= 1); /* a spurious wake at most; a 200 ms poll would be 5 */
    struct rec r = make_rec(0);
    CHECK_EQ_INT(store_push(st, &r), GW_OK);
    WAIT_FOR(scalar(path, "SELECT COUNT(*) FROM r") == 1);
    store_get_stats(st, &b);
    CHECK(b.wakeups > a.wakeups);
    store_destroy(st);
    remove_dir(dir);
}

static void test_sqlite_codes_translated(void)
{
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_OK), GW_OK);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_DONE), GW_OK);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_ROW), GW_OK);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_BUSY), GW_ERR_BUSY);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_BUSY_SNAPSHOT), GW_ERR_BUSY);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_LOCKED), GW_ERR_BUSY);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_NOMEM), GW_ERR_NOMEM);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_MISUSE), GW_ERR_INVAL);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_FULL), GW_ERR_STORAGE);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_IOERR_WRITE), GW_ERR_STORAGE);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_READONLY), GW_ERR_STORAGE);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_CANTOPEN), GW_ERR_STORAGE);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_CORRUPT), GW_ERR_STORAGE);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_NOTADB), GW_ERR_STORAGE);
    CHECK_EQ_INT(store_error_from_sqlite(SQLITE_ERROR), GW_ERR_STORAGE);
}

TEST_MAIN(TEST_CASE(test_plan_table), TEST_CASE(test_batches_in_order_after_missing_dir),
          TEST_CASE(test_flush_and_destroy_write_everything), TEST_CASE(test_ring_overflow_counted),
          TEST_CASE(test_full_disk_then_recovers), TEST_CASE(test_locked_database_busy_then_flush_timeout),
          TEST_CASE(test_bad_schema_error_messages), TEST_CASE(test_bad_config), TEST_CASE(test_prune),
          TEST_CASE(test_read_connection), TEST_CASE(test_idle_writer_sleeps),
          TEST_CASE(test_sqlite_codes_translated), TEST_CASE(test_after_batch_in_the_same_transaction))
