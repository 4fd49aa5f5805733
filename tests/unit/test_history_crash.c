/* kill -9 at any instant never corrupts history.db and never loses a committed sample.
 * A child process records samples as fast as it can and reports, through a pipe, how many are
 * committed (after each flush); the parent SIGKILLs it at a pseudo-random instant, then checks
 * PRAGMA integrity_check and that every reported sample is in the database. Repeated, each child
 * reopening (and recovering) the database the previous one was killed on. */
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

TEST_MAIN(TEST_CASE(test_kill_9_never_corrupts))
