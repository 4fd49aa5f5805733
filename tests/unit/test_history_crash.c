/* kill -9 at any instant never corrupts history.db and never loses a committed sample.
 * A child process records samples as fast as it can and reports, through a pipe, how many are
 * committed (after each flush); the parent SIGKILLs it at a pseudo-random instant, then checks
 * PRAGMA integrity_check and that every reported sample is in the database. Repeated, each child
 * reopening (and recovering) the database the previous one was killed on. The same for a kill
 * while an old database is being migrated to the current schema. */
#define _GNU_SOURCE
#include "history_logger.h"
#include "gw_error.h"
#include "test.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 12

static void child_main(const char *dir, int round, int fd)
{
    struct history_logger_options opt = {
        .data_dir = dir, .config = { .enabled = true, .period_s = 1, .retention_days = 3650 },
    };
    struct history_logger *hl = NULL;
    if (history_logger_create(&opt, &hl) != GW_OK)
        _exit(3);
    uint64_t committed = 0;
    for (uint32_t i = 0;; i++) {
        struct bms_live_data d;
        memset(&d, 0, sizeof d);
        d.valid = true;
        d.battery_id = (uint8_t)round;
        d.wall_time_ms = 1737072000000LL + (int64_t)i * 1000;
        d.pack_voltage_v = 50.0f + (float)(i % 100) * 0.01f;
        d.cell_count = 16;
        for (int c = 0; c < 16; c++)
            d.cell_mv_x10[c] = (uint16_t)(33000 + c);
        history_logger_record(hl, &d);
        if (i % 40 == 39) {
            if (history_logger_flush(hl, 60000) != GW_OK)
                _exit(4);
            committed = i + 1;
            if (write(fd, &committed, sizeof committed) != sizeof committed)
                _exit(5);
        }
    }
}

static int64_t count_rows(sqlite3 *db, int round)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM samples WHERE battery_id = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, round);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return n;
}

static void test_kill_9_never_corrupts(void)
{
    char dir[] = "/tmp/gw_hist_crash_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char db_path[300];
    snprintf(db_path, sizeof db_path, "%s/history.db", dir);
    uint32_t lcg = (uint32_t)time(NULL);
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        CHECK_EQ_INT(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_main(dir, round, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        /* wait until the child reported a first commit (generous deadline), then let it run a
         * pseudo-random 0..400 ms more so the kill lands anywhere in a transaction */
        uint64_t reported = 0, value;
        struct pollfd p = { .fd = fds[0], .events = POLLIN };
        CHECK(poll(&p, 1, 60000) == 1);
        if (read(fds[0], &value, sizeof value) == sizeof value)
            reported = value;
        lcg = lcg * 1664525u + 1013904223u;
        struct timespec pause = { 0, (long)((lcg >> 8) % 400) * 1000000L };
        nanosleep(&pause, NULL);
        CHECK_EQ_INT(kill(pid, SIGKILL), 0);
        int status = 0;
        CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        while (read(fds[0], &value, sizeof value) == sizeof value)
            reported = value; /* everything the child said was committed before it died */
        close(fds[0]);

        sqlite3 *db = NULL;
        CHECK_EQ_INT(sqlite3_open(db_path, &db), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        CHECK_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
        CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
        CHECK_STR((const char *)sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
        int64_t rows = count_rows(db, round);
        CHECK(rows >= (int64_t)reported);
        if (rows < (int64_t)reported)
            fprintf(stderr, "round %d: %lld rows < %llu reported committed\n", round, (long long)rows,
                    (unsigned long long)reported);
        printf("round %d: killed after %ld ms, %llu reported committed, %lld rows stored\n", round,
               pause.tv_nsec / 1000000L, (unsigned long long)reported, (long long)rows);
        sqlite3_close(db);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

#define OLD_ROWS 200000 /* enough for the migration (index build) to take a while */

static int64_t scalar(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* kill -9 while an old database (no battery_id, 200000 rows) is being migrated: the database is
 * sound and either still the old schema or entirely the new one, never a mix, and no row is lost. */
static void test_kill_9_during_migration(void)
{
    char dir[] = "/tmp/gw_hist_mig_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char db_path[64], cmd[400];
    snprintf(db_path, sizeof db_path, "%s/history.db", dir);
    uint32_t lcg = (uint32_t)time(NULL) ^ 0x5a5a5a5au;
    int old_seen = 0, new_seen = 0;
    long migrate_ms = 300; /* measured in round 0: the kill then lands anywhere in 0..1.5x that */
    for (int round = 0; round < 9; round++) {
        snprintf(cmd, sizeof cmd, "rm -f '%s' '%s-wal' '%s-shm'", db_path, db_path, db_path);
        CHECK_EQ_INT(system(cmd), 0);
        sqlite3 *db = NULL;
        CHECK_EQ_INT(sqlite3_open(db_path, &db), SQLITE_OK);
        CHECK_EQ_INT(sqlite3_exec(db,
                                  "CREATE TABLE samples(ts_ms INTEGER NOT NULL, voltage REAL, current REAL, soc REAL,"
                                  " temp_min REAL, temp_max REAL, cell_min_mv INTEGER, cell_max_mv INTEGER);"
                                  "CREATE INDEX samples_ts ON samples(ts_ms);"
                                  "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 199999)"
                                  " INSERT INTO samples SELECT 1737072000000 + i * 1000, 52.0, -1.0, 50.0, 20.0, 21.0,"
                                  " 3300, 3310 FROM n;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
        sqlite3_close(db);
        int fds[2];
        CHECK_EQ_INT(pipe(fds), 0);
        fflush(NULL);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            struct history_logger_options opt = {
                .data_dir = dir, .config = { .enabled = true, .period_s = 1, .retention_days = 3650 },
            };
            struct history_logger *hl = NULL;
            if (history_logger_create(&opt, &hl) != GW_OK)
                _exit(3);
            char done = 1;
            if (write(fds[1], &done, 1) != 1)
                _exit(4);
            for (;;)
                pause();
        }
        close(fds[1]);
        struct timespec pause_ts = { 0, 0 };
        if (round == 0) { /* let it finish: how long does the migration take here? */
            struct pollfd p = { .fd = fds[0], .events = POLLIN };
            CHECK(poll(&p, 1, 60000) == 1);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            migrate_ms = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L + 1;
        } else {
            lcg = lcg * 1664525u + 1013904223u;
            long ms = (long)((lcg >> 8) % (uint32_t)(migrate_ms * 3 / 2 + 1));
            pause_ts.tv_sec = ms / 1000;
            pause_ts.tv_nsec = (ms % 1000) * 1000000L;
            nanosleep(&pause_ts, NULL);
        }
        close(fds[0]);
        CHECK_EQ_INT(kill(pid, SIGKILL), 0);
        int status = 0;
        CHECK_EQ_INT(waitpid(pid, &status, 0), pid);

        CHECK_EQ_INT(sqlite3_open(db_path, &db), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        CHECK_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
        CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
        CHECK_STR((const char *)sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
        CHECK_EQ_INT(scalar(db, "SELECT COUNT(*) FROM samples"), OLD_ROWS);
        int64_t version = scalar(db, "PRAGMA user_version");
        int64_t has_id = scalar(db, "SELECT COUNT(*) FROM pragma_table_info('samples') WHERE name='battery_id'");
        int64_t has_index = scalar(db, "SELECT COUNT(*) FROM sqlite_master WHERE name='samples_battery_ts'");
        bool old_schema = version == 0 && has_id == 0 && has_index == 0;
        bool new_schema = version == HISTORY_SCHEMA_VERSION && has_id == 1 && has_index == 1;
        CHECK(old_schema || new_schema);
        if (new_schema)
            CHECK_EQ_INT(scalar(db, "SELECT COUNT(*) FROM samples WHERE battery_id = 0"), OLD_ROWS);
        old_seen += old_schema;
        new_seen += new_schema;
        printf("migration round %d: killed after %ld ms (migration takes about %ld ms), %s schema\n", round,
               round ? (long)pause_ts.tv_sec * 1000 + pause_ts.tv_nsec / 1000000L : migrate_ms, migrate_ms,
               new_schema ? "new" : old_schema ? "old" : "MIXED");
        sqlite3_close(db);
    }
    printf("migration: %d rounds killed before the commit, %d after\n", old_seen, new_seen);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

TEST_MAIN(TEST_CASE(test_kill_9_never_corrupts), TEST_CASE(test_kill_9_during_migration))
