/* atomic_file: round trip, bounds, errors leave the old file intact and no temporary behind. */
#define _POSIX_C_SOURCE 200809L
#include "atomic_file.h"
#include "gw_error.h"
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/gw_atomic_XXXXXX");
    if (!mkdtemp(dir))
        abort();
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0)))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int count_entries(void)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    if (d)
        closedir(d);
    return n;
}

static void test_write_read_round_trip_and_mode(void)
{
    make_dir();
    char path[128], buf[64];
    size_t len = 99;
    snprintf(path, sizeof path, "%s/a.json", dir);
    CHECK_EQ_INT(atomic_file_read(path, buf, sizeof buf, &len), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(atomic_file_write(path, "hello", 5, 0600), GW_OK);
    CHECK_EQ_INT(atomic_file_read(path, buf, sizeof buf, &len), GW_OK);
    CHECK_EQ_INT(len, 5);
    CHECK_STR(buf, "hello");
    struct stat st;
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    /* Replace with shorter content and another mode: no leftover bytes, mode applied. */
    CHECK_EQ_INT(atomic_file_write(path, "hi", 2, 0644), GW_OK);
    CHECK_EQ_INT(atomic_file_read(path, buf, sizeof buf, &len), GW_OK);
    CHECK_STR(buf, "hi");
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0644);
    CHECK_EQ_INT(count_entries(), 1); /* no temporary left */
    /* Empty content is a valid file. */
    CHECK_EQ_INT(atomic_file_write(path, NULL, 0, 0600), GW_OK);
    CHECK_EQ_INT(atomic_file_read(path, buf, sizeof buf, &len), GW_OK);
    CHECK_EQ_INT(len, 0);
    CHECK_STR(buf, "");
    remove_dir();
}

static void test_read_bounds(void)
{
    make_dir();
    char path[128], buf[8];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/b", dir);
    CHECK_EQ_INT(atomic_file_write(path, "1234567", 7, 0600), GW_OK);
    CHECK_EQ_INT(atomic_file_read(path, buf, sizeof buf, &len), GW_OK); /* 7 bytes + NUL fit */
    CHECK_STR(buf, "1234567");
    CHECK_EQ_INT(atomic_file_write(path, "12345678", 8, 0600), GW_OK);
    CHECK_EQ_INT(atomic_file_read(path, buf, sizeof buf, &len), GW_OK); /* exactly cap: no NUL */
    CHECK_EQ_INT(len, 8);
    CHECK_MEM(buf, "12345678", 8);
    CHECK_EQ_INT(atomic_file_write(path, "123456789", 9, 0600), GW_OK);
    CHECK_EQ_INT(atomic_file_read(path, buf, sizeof buf, &len), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(atomic_file_read(dir, buf, sizeof buf, &len), GW_ERR_IO); /* a directory */
    CHECK_EQ_INT(atomic_file_read(NULL, buf, sizeof buf, &len), GW_ERR_INVAL);
    CHECK_EQ_INT(atomic_file_read(path, buf, 0, &len), GW_ERR_INVAL);
    remove_dir();
}

static void test_write_errors_keep_old_file(void)
{
    make_dir();
    char path[128], buf[64], bad[160];
    snprintf(path, sizeof path, "%s/c", dir);
    CHECK_EQ_INT(atomic_file_write(path, "old", 3, 0600), GW_OK);
    /* Missing directory. */
    snprintf(bad, sizeof bad, "%s/nodir/c", dir);
    CHECK_EQ_INT(atomic_file_write(bad, "x", 1, 0600), GW_ERR_IO);
    /* The target is a directory: rename fails after the temporary was written. */
    snprintf(bad, sizeof bad, "%s/sub", dir);
    CHECK_EQ_INT(mkdir(bad, 0700), 0);
    char inner[200];
    snprintf(inner, sizeof inner, "%s/x", bad);
    CHECK_EQ_INT(atomic_file_write(inner, "x", 1, 0600), GW_OK);
    CHECK(atomic_file_write(bad, "new", 3, 0600) < 0);
    CHECK_EQ_INT(count_entries(), 2); /* c and sub: the temporary was removed */
    unlink(inner);
    rmdir(bad);
    /* A path component that is a file. */
    snprintf(bad, sizeof bad, "%s/c/d", dir);
    CHECK_EQ_INT(atomic_file_write(bad, "x", 1, 0600), GW_ERR_IO);
    CHECK_EQ_INT(atomic_file_write(NULL, "x", 1, 0600), GW_ERR_INVAL);
    CHECK_EQ_INT(atomic_file_write(path, NULL, 1, 0600), GW_ERR_INVAL);
    snprintf(bad, sizeof bad, "%s/", dir);
    CHECK_EQ_INT(atomic_file_write(bad, "x", 1, 0600), GW_ERR_INVAL); /* no file name */
    CHECK_EQ_INT(atomic_file_read(path, buf, sizeof buf, NULL), GW_OK);
    CHECK_STR(buf, "old");
    CHECK_EQ_INT(count_entries(), 1);
    remove_dir();
}

static void test_relative_path(void)
{
    make_dir();
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK_EQ_INT(chdir(dir), 0);
    char buf[16];
    CHECK_EQ_INT(atomic_file_write("rel.txt", "abc", 3, 0600), GW_OK);
    CHECK_EQ_INT(atomic_file_read("rel.txt", buf, sizeof buf, NULL), GW_OK);
    CHECK_STR(buf, "abc");
    CHECK_EQ_INT(chdir(cwd), 0);
    remove_dir();
}

static void test_cleanup_removes_only_stale_temporaries(void)
{
    make_dir();
    char path[128], p[192];
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    CHECK_EQ_INT(atomic_file_write(path, "x", 1, 0600), GW_OK);
    const char *names[] = { ".cfg.json.tmp-AbC123", ".cfg.json.tmp-zzzzzz", ".cfg.json.tmp-short",
                            ".other.json.tmp-AbC123", "cfg.json.tmp-AbC123" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        CHECK_EQ_INT(atomic_file_write(p, "t", 1, 0600), GW_OK);
    }
    CHECK_EQ_INT(atomic_file_cleanup(path), 2);
    CHECK_EQ_INT(count_entries(), 4); /* cfg.json and the three that are not ours */
    CHECK_EQ_INT(atomic_file_cleanup(path), 0);
    CHECK_EQ_INT(atomic_file_cleanup(NULL), 0);
    remove_dir();
}


/* Regression: a FIFO (or other special file) where config.json / energy.json should be made
 * open() block for ever, before the "not a regular file" check could refuse it: the daemon hung
 * at start. Run in a child with an alarm so a regression fails instead of hanging the test. */
static void test_read_fifo_refused_without_blocking(void)
{
    make_dir();
    char path[128];
    snprintf(path, sizeof path, "%s/fifo", dir);
    CHECK_EQ_INT(mkfifo(path, 0600), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(10);
        char buf[16];
        size_t len = 0;
        _exit(atomic_file_read(path, buf, sizeof buf, &len) == GW_ERR_IO ? 0 : 1);
    }
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    remove_dir();
}

TEST_MAIN(TEST_CASE(test_cleanup_removes_only_stale_temporaries), TEST_CASE(test_read_fifo_refused_without_blocking), TEST_CASE(test_write_read_round_trip_and_mode), TEST_CASE(test_read_bounds),
          TEST_CASE(test_write_errors_keep_old_file), TEST_CASE(test_relative_path))
