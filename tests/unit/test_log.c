/* Under systemd (stderr is the journal's stream, JOURNAL_STREAM naming its device:inode) every
 * line carries its syslog priority so `journalctl -p warning` filters, and no time stamp of its
 * own; elsewhere a local time with its offset. */
#define _POSIX_C_SOURCE 200809L
#include "gw_log.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[] = "/tmp/test_log.XXXXXX";

static void read_back(char *buf, size_t cap)
{
    fflush(stderr);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

static void test_journal_lines_carry_their_priority(void)
{
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    int saved = dup(2);
    dup2(fd, 2);
    struct stat st;
    fstat(2, &st);
    char env[64];
    snprintf(env, sizeof env, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", env, 1);
    gw_log_set_level(GW_LOG_DEBUG);
    GW_LOGE("test", "e %d", 1);
    GW_LOGW("test", "w");
    GW_LOGI("test", "i");
    GW_LOGD("test", "d");
    char buf[512];
    read_back(buf, sizeof buf);
    dup2(saved, 2);
    close(saved);
    close(fd);
    unlink(path);
    CHECK_STR(buf, "<3>ERROR test: e 1\n<4>WARN  test: w\n<6>INFO  test: i\n<7>DEBUG test: d\n");
}

TEST_MAIN(TEST_CASE(test_journal_lines_carry_their_priority))
