/* watchdog: the sd_notify protocol against a datagram socket of the test (as systemd listens on
 * $NOTIFY_SOCKET), on the test clock: the environment read and removed, READY=1 once every unit
 * is ready, WATCHDOG=1 every third of WATCHDOG_USEC while every client checks in, none while one
 * is overdue, again when it is back, STOPPING=1, and a disabled watchdog that does nothing. */
#define _GNU_SOURCE
#include "fake_clock.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "test.h"
#include "watchdog.h"
#include "watchdog_internal.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The test's end of $NOTIFY_SOCKET. */
static int listen_on(const char *name, bool abstract)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    size_t n = strlen(name);
    memcpy(a.sun_path + (abstract ? 1 : 0), name, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    if (!abstract)
        unlink(name);
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&a, len), 0);
    return fd;
}

/* Every datagram waiting, joined with '|' ("" when none). */
static void drain(int fd, char *out, size_t cap)
{
    out[0] = '\0';
    char msg[512];
    ssize_t n;
    while ((n = recv(fd, msg, sizeof msg - 1, MSG_DONTWAIT)) >= 0) {
        msg[n] = '\0';
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%s", used ? "|" : "", msg);
    }
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void test_decide_table(void)
{
    const uint64_t idle = WATCHDOG_IDLE;
    uint64_t next[3] = { 1000, idle, 5000 };
    struct watchdog__decision d = watchdog__decide(1500, next, 3, 1000);
    CHECK(d.ping);
    CHECK_EQ_INT(d.overdue, -1);
    d = watchdog__decide(2000, next, 3, 1000); /* exactly the grace: still on time */
    CHECK(d.ping);
    d = watchdog__decide(2001, next, 3, 1000);
    CHECK(!d.ping);
    CHECK_EQ_INT(d.overdue, 0);
    CHECK_EQ_INT(d.overdue_ms, 1001);
    next[0] = 9000; /* checked in again */
    d = watchdog__decide(6500, next, 3, 1000);
    CHECK_EQ_INT(d.overdue, 2);
    next[2] = idle;
    CHECK(watchdog__decide(UINT64_MAX - 1, next + 1, 2, 1000).ping); /* idle ones never */
    uint64_t late[1] = { UINT64_MAX - 10 };
    CHECK(watchdog__decide(UINT64_MAX - 1, late, 1, 1000).ping); /* no overflow */
    CHECK(watchdog__decide(0, NULL, 0, 1000).ping);
    CHECK_EQ_INT(watchdog__period_ms(30000000), 10000);
    CHECK_EQ_INT(watchdog__period_ms(6000000), 2000);
    CHECK_EQ_INT(watchdog__period_ms(1), 1);
}

static void test_parse_socket(void)
{
    struct sockaddr_un a;
    socklen_t len;
    CHECK_EQ_INT(watchdog__parse_socket("/run/systemd/notify", &a, &len), GW_OK);
    CHECK_STR(a.sun_path, "/run/systemd/notify");
    CHECK_EQ_INT(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);
    CHECK_EQ_INT(watchdog__parse_socket("@sd-notify", &a, &len), GW_OK);
    CHECK_EQ_INT(a.sun_path[0], 0);
    CHECK_MEM(a.sun_path + 1, "sd-notify", 9);
    CHECK_EQ_INT(len, offsetof(struct sockaddr_un, sun_path) + 10);
    CHECK_EQ_INT(watchdog__parse_socket("relative/path", &a, &len), GW_ERR_INVAL);
    CHECK_EQ_INT(watchdog__parse_socket("vsock:2:1234", &a, &len), GW_ERR_INVAL);
    CHECK_EQ_INT(watchdog__parse_socket("", &a, &len), GW_ERR_INVAL);
    char longpath[200];
    memset(longpath, 'a', sizeof longpath);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    CHECK_EQ_INT(watchdog__parse_socket(longpath, &a, &len), GW_ERR_INVAL);
    CHECK_EQ_INT(watchdog__parse_socket(NULL, &a, &len), GW_ERR_INVAL);
}

/* No $NOTIFY_SOCKET (a run from a shell, Venus OS): nothing is sent, nothing starts. */
static void test_disabled_without_notify_socket(void)
{
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "3000000", 1);
    struct watchdog *wd = NULL;
    CHECK_EQ_INT(watchdog_create(&wd), GW_OK);
    CHECK(wd != NULL);
    CHECK(!watchdog_enabled(wd));
    CHECK_EQ_INT(watchdog_interval_ms(wd), 0);
    CHECK(watchdog_client_add(wd, "x") == NULL);
    CHECK_EQ_INT(watchdog_start(wd), GW_OK);
    watchdog_checkin(NULL, 5);
    watchdog_expect_ready(wd, 1, 0);
    watchdog_unit_ready(wd, 0, "x");
    watchdog_stopping(wd);
    watchdog_destroy(wd);
    CHECK(getenv("WATCHDOG_USEC") == NULL);
    watchdog_destroy(NULL);
    CHECK_EQ_INT(watchdog_create(NULL), GW_ERR_INVAL);
}

/* Readiness only (Type=notify without WatchdogSec), on the abstract namespace, and a watchdog
 * meant for another process (WATCHDOG_PID) is not ours. */
static void test_ready_once_every_unit_is_ready(void)
{
    char name[64];
    snprintf(name, sizeof name, "gw-test-notify-%d", (int)getpid());
    int fd = listen_on(name, true);
    char env[80];
    snprintf(env, sizeof env, "@%s", name);
    setenv("NOTIFY_SOCKET", env, 1);
    setenv("WATCHDOG_USEC", "3000000", 1);
    setenv("WATCHDOG_PID", "1", 1);
    struct watchdog *wd = NULL;
    CHECK_EQ_INT(watchdog_create(&wd), GW_OK);
    CHECK(watchdog_enabled(wd));
    CHECK_EQ_INT(watchdog_interval_ms(wd), 0);                 /* pid 1's watchdog, not ours */
    CHECK(getenv("NOTIFY_SOCKET") == NULL && getenv("WATCHDOG_PID") == NULL); /* not inherited */
    char got[1024];
    watchdog_unit_ready(wd, 1, "pack 2 sampled"); /* before the count is known */
    watchdog_expect_ready(wd, 2, 45000);
    drain(fd, got, sizeof got);
    CHECK_STR(got, "EXTEND_TIMEOUT_USEC=45000000");
    watchdog_unit_ready(wd, 1, "pack 2 again");
    drain(fd, got, sizeof got);
    CHECK_STR(got, "");
    watchdog_unit_ready(wd, 0, "first sample of every pack");
    drain(fd, got, sizeof got);
    CHECK_STR(got, "READY=1\nSTATUS=running: first sample of every pack");
    watchdog_unit_ready(wd, 0, "again");
    watchdog_destroy(wd);
    drain(fd, got, sizeof got);
    CHECK_STR(got, "STOPPING=1\nSTATUS=stopping");
    close(fd);

    /* Malformed values: said, and treated as absent. */
    setenv("NOTIFY_SOCKET", "not-a-path", 1);
    CHECK_EQ_INT(watchdog_create(&wd), GW_ERR_INVAL);
    CHECK(wd && !watchdog_enabled(wd));
    watchdog_destroy(wd);
}

/* WATCHDOG=1 every third of the interval while every client checks in on time; a client past
 * its declared time plus a third stops them (a hung poller); its next check-in resumes them. */
static void test_pings_follow_the_clients(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_watchdog_%d.sock", (int)getpid());
    int fd = listen_on(path, false);
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "3000000", 1); /* 3 s: pings every 1 s, grace 1 s */
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    uint64_t t0 = 5000000;
    fake_clock_set_ms(t0);
    struct watchdog *wd = NULL;
    CHECK_EQ_INT(watchdog_create(&wd), GW_OK);
    CHECK_EQ_INT(watchdog_interval_ms(wd), 3000);
    struct watchdog_client *poller = watchdog_client_add(wd, "bms-poll0");
    struct watchdog_client *can = watchdog_client_add(wd, "can-tx");
    CHECK(poller && can);
    watchdog_checkin(poller, t0 + 200);
    watchdog_checkin(can, t0 + 1000);
    CHECK_EQ_INT(watchdog_start(wd), GW_OK);
    CHECK(fake_clock_settle(1, 10000));
    char got[1024];
    drain(fd, got, sizeof got);
    CHECK_STR(got, "WATCHDOG=1"); /* one at start */
    CHECK_EQ_INT(fake_clock_next_deadline(), t0 + 1000);

    /* Both keep checking in: one ping per period, exactly. */
    for (uint64_t k = 1; k <= 5; k++) {
        uint64_t t = t0 + k * 1000;
        watchdog_checkin(poller, t + 200);
        watchdog_checkin(can, t + 1000);
        fake_clock_set_ms(t - 1);
        CHECK(fake_clock_settle(1, 10000));
        drain(fd, got, sizeof got);
        CHECK_STR(got, "");
        fake_clock_set_ms(t);
        CHECK(fake_clock_settle(1, 10000));
        drain(fd, got, sizeof got);
        CHECK_STR(got, "WATCHDOG=1");
    }
    /* The poller hangs after its check-in at t0+5000 (next run due t0+5200): on time until
     * t0+6200 (due + a third), so the ping at t0+6000 goes, the one at t0+7000 does not. */
    uint64_t t = t0 + 6000;
    watchdog_checkin(can, t + 1000);
    fake_clock_set_ms(t);
    CHECK(fake_clock_settle(1, 10000));
    drain(fd, got, sizeof got);
    CHECK_STR(got, "WATCHDOG=1");
    for (t = t0 + 7000; t <= t0 + 10000; t += 1000) {
        watchdog_checkin(can, t + 1000);
        fake_clock_set_ms(t);
        CHECK(fake_clock_settle(1, 10000));
        drain(fd, got, sizeof got);
        CHECK_STR(got, "");
    }
    /* It runs again: the next ping goes. */
    watchdog_checkin(poller, t0 + 10200);
    watchdog_checkin(can, t0 + 11000);
    fake_clock_set_ms(t0 + 11000);
    CHECK(fake_clock_settle(1, 10000));
    drain(fd, got, sizeof got);
    CHECK_STR(got, "WATCHDOG=1");
    /* Stopped services say so: never overdue. */
    watchdog_checkin(poller, WATCHDOG_IDLE);
    watchdog_checkin(can, WATCHDOG_IDLE);
    fake_clock_set_ms(t0 + 100000);
    CHECK(fake_clock_settle(1, 10000));
    drain(fd, got, sizeof got);
    CHECK_STR(got, "WATCHDOG=1");
    /* STOPPING=1 ends the pings. */
    watchdog_stopping(wd);
    fake_clock_set_ms(t0 + 101000);
    watchdog_destroy(wd);
    drain(fd, got, sizeof got);
    CHECK_STR(got, "STOPPING=1\nSTATUS=stopping");
    CHECK_EQ_INT(count_of(got, "WATCHDOG=1"), 0);
    close(fd);
    unlink(path);
    unsetenv("NOTIFY_SOCKET");
}

TEST_MAIN(TEST_CASE(test_decide_table), TEST_CASE(test_parse_socket), TEST_CASE(test_disabled_without_notify_socket),
          TEST_CASE(test_ready_once_every_unit_is_ready), TEST_CASE(test_pings_follow_the_clients))
