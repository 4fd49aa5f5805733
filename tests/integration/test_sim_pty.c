/* Integration test of the real tinybms-sim binary on a pseudo-terminal: the slave path line,
 * the wake-up behaviour (first request ignored after idle, resend answered), a 0x03 read of
 * registers 0..55 compared with the `state` JSON, silence, unplug/replug with the --link symlink,
 * quit and SIGTERM, the fault modes (--fault, `fault ...`) and the BMS `reset` as a client on the
 * wire sees them. Binary: argv[1], else $GW_BUILD_DIR/tools/tinybms-sim/tinybms-sim.
 * Synchronisation is by condition with generous deadlines (the `state` counters), never by sleep. */
#define _GNU_SOURCE
#include "test.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 10000

struct child {
    pid_t pid;
    int to_fd, from_fd;         /* its stdin / stdout */
    char buf[65536];
    size_t len;
};

static char sim_path[1024];
static char tmp_dir[256];
static char link_path[512];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint16_t crc16(const uint8_t *d, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= d[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    return crc;
}

static bool child_start(struct child *c, const char *const *extra)
{
    int in[2], out[2];
    if (pipe(in) || pipe(out))
        return false;
    const char *argv[32];
    int n = 0;
    argv[n++] = sim_path;
    for (int i = 0; extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    c->pid = fork();
    if (c->pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execv(sim_path, (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c->to_fd = in[1];
    c->from_fd = out[0];
    c->len = 0;
    return c->pid > 0;
}

/* Reads one line from the child's stdout into line (NUL-terminated), with a deadline. */
static bool child_line(struct child *c, char *line, size_t cap)
{
    uint64_t end = now_ms() + DEADLINE_MS;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            if (n >= cap)
                n = cap - 1;
            memcpy(line, c->buf, n);
            line[n] = '\0';
            size_t used = (size_t)(nl - c->buf) + 1;
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
            return true;
        }
        uint64_t t = now_ms();
        if (t >= end || c->len >= sizeof c->buf)
            return false;
        struct pollfd p = { .fd = c->from_fd, .events = POLLIN };
        if (poll(&p, 1, (int)(end - t)) <= 0)
            continue;
        ssize_t r = read(c->from_fd, c->buf + c->len, sizeof c->buf - c->len);
        if (r <= 0)
            return false;
        c->len += (size_t)r;
    }
}

static cJSON *child_cmd(struct child *c, const char *cmd)
{
    static char line[65536];
    char msg[256];
    int n = snprintf(msg, sizeof msg, "%s\n", cmd);
    if (write(c->to_fd, msg, (size_t)n) != n)
        return NULL;
    if (!child_line(c, line, sizeof line))
        return NULL;
    return cJSON_Parse(line);
}

static double jnum(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1e300;
}

static bool jtrue(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* Waits until the state's counter `key` reaches at least want. */
static cJSON *wait_counter(struct child *c, const char *key, double want)
{
    uint64_t end = now_ms() + DEADLINE_MS;
    while (now_ms() < end) {
        cJSON *s = child_cmd(c, "state");
        if (!s)
            return NULL;
        if (jnum(s, key) >= want)
            return s;
        cJSON_Delete(s);
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL); /* polling interval, not synchronisation */
    }
    return NULL;
}

static void child_stop(struct child *c)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    c->pid = -1;
    close(c->to_fd);
    close(c->from_fd);
}

/* Waits for the child to exit by itself; returns its exit status or -1. */
static int child_wait_exit(struct child *c)
{
    uint64_t end = now_ms() + DEADLINE_MS;
    int status = 0;
    while (now_ms() < end) {
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid) {
            c->pid = -1;
            close(c->to_fd);
            close(c->from_fd);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    child_stop(c);
    return -1;
}

static int open_port(const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(fd, TCSANOW, &t);
    }
    tcflush(fd, TCIOFLUSH);
    return fd;
}

static bool send_frame(int fd, const uint8_t *body, size_t n)
{
    uint8_t f[64];
    memcpy(f, body, n);
    uint16_t crc = crc16(f, n);
    f[n] = (uint8_t)(crc & 0xFF);
    f[n + 1] = (uint8_t)(crc >> 8);
    return write(fd, f, n + 2) == (ssize_t)(n + 2);
}

/* Reads exactly want bytes before deadline_ms; returns bytes read. */
static size_t read_bytes(int fd, uint8_t *buf, size_t want, uint32_t deadline_ms)
{
    size_t got = 0;
    uint64_t end = now_ms() + deadline_ms;
    while (got < want) {
        uint64_t t = now_ms();
        if (t >= end)
            break;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, (int)(end - t)) <= 0)
            continue;
        ssize_t r = read(fd, buf + got, want - got);
        if (r > 0)
            got += (size_t)r;
        else if (r < 0 && errno != EAGAIN && errno != EINTR)
            break;
    }
    return got;
}

static const uint8_t read_live[] = { 0xAA, 0x03, 0x00, 0x00, 0x00, 56 };
#define LIVE_REPLY_LEN (3 + 112 + 2)

/* A client's transaction: send, wait, resend once if the BMS was asleep. */
static bool transact_live(int fd, uint8_t *reply)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        tcflush(fd, TCIFLUSH);
        if (!send_frame(fd, read_live, sizeof read_live))
            return false;
        if (read_bytes(fd, reply, LIVE_REPLY_LEN, attempt ? DEADLINE_MS : 1500) == LIVE_REPLY_LEN)
            return true;
    }
    return false;
}

static bool reply_valid(const uint8_t *r, size_t n)
{
    uint16_t crc = crc16(r, n - 2);
    return r[0] == 0xAA && r[n - 2] == (crc & 0xFF) && r[n - 1] == (crc >> 8);
}

static void test_sim_on_pty(void)
{
    snprintf(link_path, sizeof link_path, "%s/ttyBMS", tmp_dir);
    const char *args[] = { "--speed", "0", "--cells", "14", "--soc", "62.5", "--sleep-after-ms",
                           "1000", "--latency-ms", "1", "--link", link_path, NULL };
    struct child c;
    CHECK(child_start(&c, args));
    char path[256] = "";
    CHECK(child_line(&c, path, sizeof path));
    CHECK(strncmp(path, "/dev/", 5) == 0);
    char target[256] = "";
    ssize_t tl = readlink(link_path, target, sizeof target - 1);
    CHECK(tl > 0);
    if (tl > 0)
        target[tl] = '\0';
    CHECK_STR(target, path);

    int fd = open_port(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        child_stop(&c);
        return;
    }

    /* Wake-up: after more than --sleep-after-ms without traffic the first request is ignored. */
    struct timespec idle = { 1, 300 * 1000000L };
    nanosleep(&idle, NULL); /* establishes the idle precondition; a slow machine only adds idle */
    CHECK(send_frame(fd, read_live, sizeof read_live));
    cJSON *s = wait_counter(&c, "requests", 1);
    CHECK(s != NULL);
    CHECK_EQ_INT(jnum(s, "wake_ignored"), 1);
    CHECK_EQ_INT(jnum(s, "replies"), 0);
    cJSON_Delete(s);
    CHECK(send_frame(fd, read_live, sizeof read_live));
    uint8_t reply[LIVE_REPLY_LEN];
    CHECK_EQ_INT(read_bytes(fd, reply, sizeof reply, DEADLINE_MS), LIVE_REPLY_LEN);
    CHECK(reply_valid(reply, sizeof reply));
    CHECK_EQ_INT(reply[1], 0x03);
    CHECK_EQ_INT(reply[2], 112);

    /* The registers served equal the state JSON (model frozen by --speed 0). */
    s = child_cmd(&c, "state");
    CHECK(s != NULL);
    const cJSON *regs = cJSON_GetObjectItemCaseSensitive(s, "registers");
    CHECK_EQ_INT(cJSON_GetArraySize(regs), 56);
    int mismatches = 0;
    uint16_t served[56];
    for (int i = 0; i < 56; i++) {
        served[i] = (uint16_t)((reply[3 + 2 * i] << 8) | reply[4 + 2 * i]);
        const cJSON *v = cJSON_GetArrayItem(regs, i);
        if (!cJSON_IsNumber(v) || (int)v->valuedouble != served[i])
            mismatches++;
    }
    CHECK_EQ_INT(mismatches, 0);
    CHECK_EQ_INT(served[53], 14);
    CHECK_EQ_INT(served[0], 0);
    CHECK_EQ_INT(served[1], 0);
    CHECK_EQ_INT(jnum(s, "cell_count"), 14);
    CHECK_EQ_INT(served[43], 0x8000); /* ext2 absent by default */
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s, "temp_ext2_c")));
    uint32_t u = (uint32_t)served[36] | ((uint32_t)served[37] << 16);
    float pack_v;
    memcpy(&pack_v, &u, sizeof pack_v);
    CHECK_NEAR(pack_v, jnum(s, "pack_v"), 1e-6);
    uint32_t soc = (uint32_t)served[46] | ((uint32_t)served[47] << 16);
    CHECK_NEAR(soc / 1.0e6, jnum(s, "soc_pct"), 1e-9);
    CHECK_NEAR(jnum(s, "soc_pct"), 62.5, 1e-6);
    CHECK_EQ_INT(jnum(s, "min_cell_mv"), served[40]);
    CHECK_EQ_INT(jnum(s, "status"), served[50]);
    const cJSON *cells = cJSON_GetObjectItemCaseSensitive(s, "cells_mv");
    CHECK_EQ_INT(cJSON_GetArraySize(cells), 14);
    CHECK_NEAR(cJSON_GetArrayItem(cells, 0)->valuedouble, served[2] / 10.0, 1e-9);
    cJSON_Delete(s);

    /* Silence: requests are received but not answered. */
    s = child_cmd(&c, "silence on");
    CHECK(s && jtrue(s, "ok"));
    cJSON_Delete(s);
    s = child_cmd(&c, "state");
    double req_before = s ? jnum(s, "requests") : 0, rep_before = s ? jnum(s, "replies") : 0;
    cJSON_Delete(s);
    CHECK(send_frame(fd, read_live, sizeof read_live));
    s = wait_counter(&c, "requests", req_before + 1);
    CHECK(s != NULL);
    CHECK_EQ_INT(jnum(s, "replies"), rep_before);
    cJSON_Delete(s);
    CHECK_EQ_INT(read_bytes(fd, reply, 1, 200), 0);
    s = child_cmd(&c, "silence off");
    CHECK(s && jtrue(s, "ok"));
    cJSON_Delete(s);
    CHECK(transact_live(fd, reply));
    CHECK(reply_valid(reply, sizeof reply));

    /* Unplug: the device vanishes (hang-up on our side, symlink gone). */
    s = child_cmd(&c, "unplug");
    CHECK(s && jtrue(s, "ok"));
    cJSON_Delete(s);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    CHECK(poll(&p, 1, DEADLINE_MS) == 1 && (p.revents & (POLLHUP | POLLERR)));
    struct stat st;
    CHECK(lstat(link_path, &st) != 0);
    close(fd);

    /* Replug: a new pty, the link follows, and it answers. */
    s = child_cmd(&c, "replug");
    CHECK(s && jtrue(s, "ok"));
    const cJSON *dev = s ? cJSON_GetObjectItemCaseSensitive(s, "device") : NULL;
    CHECK(cJSON_IsString(dev));
    char new_path[256] = "";
    if (cJSON_IsString(dev))
        snprintf(new_path, sizeof new_path, "%s", dev->valuestring);
    cJSON_Delete(s);
    tl = readlink(link_path, target, sizeof target - 1);
    CHECK(tl > 0);
    if (tl > 0)
        target[tl] = '\0';
    CHECK_STR(target, new_path);
    fd = open_port(link_path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(transact_live(fd, reply));
        CHECK(reply_valid(reply, sizeof reply));
        CHECK_EQ_INT(((reply[3 + 2 * 53] << 8) | reply[4 + 2 * 53]), 14);
        /* Bad CRC on the wire: NACK 0x01. */
        uint8_t bad[] = { 0xAA, 0x18, 0x00, 0x00 };
        tcflush(fd, TCIFLUSH);
        CHECK(write(fd, bad, sizeof bad) == (ssize_t)sizeof bad);
        uint8_t nack[6];
        CHECK_EQ_INT(read_bytes(fd, nack, sizeof nack, DEADLINE_MS), 6);
        CHECK_EQ_INT(nack[1], 0x00);
        CHECK_EQ_INT(nack[2], 0x18);
        CHECK_EQ_INT(nack[3], 0x01);
        close(fd);
    }

    /* Control errors are answered, not fatal. */
    s = child_cmd(&c, "frobnicate");
    CHECK(s && !jtrue(s, "ok"));
    cJSON_Delete(s);
    s = child_cmd(&c, "current abc");
    CHECK(s && !jtrue(s, "ok"));
    cJSON_Delete(s);
    s = child_cmd(&c, "current -30");
    CHECK(s && jtrue(s, "ok"));
    cJSON_Delete(s);
    s = child_cmd(&c, "state");
    CHECK(s && jnum(s, "current_a") == -30.0);
    CHECK(s && jnum(s, "status") == 0x93);
    cJSON_Delete(s);

    s = child_cmd(&c, "quit");
    CHECK(s && jtrue(s, "ok"));
    cJSON_Delete(s);
    CHECK_EQ_INT(child_wait_exit(&c), 0);
    CHECK(lstat(link_path, &st) != 0);
}

static void test_sigterm_exits_cleanly(void)
{
    const char *args[] = { "--no-sleep", "--scenario", "charge", "--speed", "100", NULL };
    struct child c;
    CHECK(child_start(&c, args));
    char path[256] = "";
    CHECK(child_line(&c, path, sizeof path));
    cJSON *s = wait_counter(&c, "lifetime_s", 1); /* the model runs (100x) */
    CHECK(s != NULL);
    CHECK(s && jnum(s, "status") == 0x91);
    cJSON_Delete(s);
    kill(c.pid, SIGTERM);
    CHECK_EQ_INT(child_wait_exit(&c), 0);
}

/* --device on a serial port that hangs up (a USB adapter pulled; here a pty whose master side
 * is closed): the simulator must close it and report it unplugged, not poll a hung-up port that
 * is readable for ever (it spun at 100 % CPU, still "plugged"). */
static void test_device_hangup_unplugs(void)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    CHECK(master >= 0);
    if (master < 0)
        return;
    fcntl(master, F_SETFD, FD_CLOEXEC); /* the simulator must not hold the master open too */
    char slave[256] = "";
    CHECK(grantpt(master) == 0 && unlockpt(master) == 0 && ptsname_r(master, slave, sizeof slave) == 0);
    const char *args[] = { "--device", slave, "--no-sleep", "--speed", "0", NULL };
    struct child c;
    CHECK(child_start(&c, args));
    char path[256] = "";
    CHECK(child_line(&c, path, sizeof path));
    CHECK_STR(path, slave);
    cJSON *s = child_cmd(&c, "state");
    CHECK(s && jtrue(s, "plugged"));
    cJSON_Delete(s);

    close(master); /* the line hangs up */
    bool unplugged = false;
    uint64_t end = now_ms() + DEADLINE_MS;
    while (!unplugged && now_ms() < end) {
        s = child_cmd(&c, "state");
        CHECK(s != NULL);
        if (!s)
            break;
        unplugged = !jtrue(s, "plugged");
        cJSON_Delete(s);
        if (!unplugged) {
            struct timespec ts = { 0, 10 * 1000000L };
            nanosleep(&ts, NULL); /* polling interval, not synchronisation */
        }
    }
    CHECK(unplugged);
    s = child_cmd(&c, "quit");
    CHECK(s && jtrue(s, "ok"));
    cJSON_Delete(s);
    CHECK_EQ_INT(child_wait_exit(&c), 0);
}


/* 0x03 read of count registers from addr on the wire (resent once, as a client must), decoded
 * big-endian into out after checking the CRC. */
static bool read_regs(int fd, uint16_t addr, uint8_t count, uint16_t *out)
{
    uint8_t req[6] = { 0xAA, 0x03, (uint8_t)(addr >> 8), (uint8_t)(addr & 0xFF), 0x00, count };
    uint8_t rep[3 + 2 * 127 + 2];
    size_t want = 3u + 2u * count + 2u;
    for (int attempt = 0; attempt < 2; attempt++) {
        tcflush(fd, TCIFLUSH);
        if (!send_frame(fd, req, sizeof req))
            return false;
        if (read_bytes(fd, rep, want, attempt ? DEADLINE_MS : 1500) != want)
            continue;
        if (!reply_valid(rep, want) || rep[1] != 0x03 || rep[2] != 2 * count)
            return false;
        for (unsigned i = 0; i < count; i++)
            out[i] = (uint16_t)((rep[3 + 2 * i] << 8) | rep[4 + 2 * i]);
        return true;
    }
    return false;
}

static float regs_float(const uint16_t *r)
{
    uint32_t u = (uint32_t)r[0] | ((uint32_t)r[1] << 16);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t regs_u32(const uint16_t *r)
{
    return (uint32_t)r[0] | ((uint32_t)r[1] << 16);
}

static bool jstr_is(const cJSON *o, const char *key, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

/* Sends a control command and checks its "ok". */
static bool cmd_ok(struct child *c, const char *cmd, bool want_ok)
{
    cJSON *s = child_cmd(c, cmd);
    bool ok = s && jtrue(s, "ok") == want_ok;
    if (!ok)
        fprintf(stderr, "command '%s': expected ok=%d\n", cmd, want_ok);
    cJSON_Delete(s);
    return ok;
}

/* The fault modes through --fault and the control channel, as a client on the wire sees them
 * (valid CRCs), and the BMS `reset`. */
static void test_faults_on_the_wire(void)
{
    const char *args[] = { "--fault", "impossible-pack-negative", "--no-sleep", "--speed", "0",
                           "--latency-ms", "1", "--soc", "70", NULL };
    struct child c;
    CHECK(child_start(&c, args));
    char path[256] = "";
    CHECK(child_line(&c, path, sizeof path));
    int fd = open_port(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        child_stop(&c);
        return;
    }
    uint16_t r[56];
    CHECK(read_regs(fd, 0, 56, r));
    CHECK(regs_float(&r[36]) == -53.0f);
    cJSON *s = child_cmd(&c, "state");
    CHECK(s && jstr_is(s, "fault_mode", "impossible-pack-negative"));
    CHECK(s && jnum(s, "pack_v") == -53.0);
    cJSON_Delete(s);

    /* `fault impossible KIND` replaces it; the pack voltage is the model's again. */
    s = child_cmd(&c, "fault impossible soc-huge");
    CHECK(s && jtrue(s, "ok") && jstr_is(s, "fault", "impossible-soc-huge"));
    cJSON_Delete(s);
    CHECK(read_regs(fd, 0, 56, r));
    CHECK_EQ_INT(regs_u32(&r[46]), 4294967295u);
    CHECK(regs_float(&r[36]) > 40.0f && regs_float(&r[36]) < 60.0f);
    CHECK(cmd_ok(&c, "fault impossible-cell-max", true)); /* the one-word form works too */
    CHECK(read_regs(fd, 0, 56, r));
    CHECK_EQ_INT(r[0], 0xFFFF);
    CHECK_EQ_INT(r[41], 6554);
    CHECK(cmd_ok(&c, "fault impossible current-huge", true));
    CHECK(read_regs(fd, 0, 56, r));
    CHECK(regs_float(&r[38]) == 1e30f);
    CHECK(cmd_ok(&c, "fault impossible temp-huge", true));
    CHECK(read_regs(fd, 0, 56, r));
    CHECK_EQ_INT(r[42], 32767);
    CHECK(cmd_ok(&c, "fault impossible bogus", false));
    CHECK(cmd_ok(&c, "fault", false));
    s = child_cmd(&c, "state");
    CHECK(s && jstr_is(s, "fault_mode", "impossible-temp-huge")); /* a bad command changes nothing */
    cJSON_Delete(s);

    /* Sensors absent. */
    CHECK(cmd_ok(&c, "fault no-ext-temp", true));
    CHECK(read_regs(fd, 0, 56, r));
    CHECK_EQ_INT(r[42], 0x8000);
    CHECK_EQ_INT(r[43], 0x8000);
    CHECK(r[48] != 0x8000);
    CHECK(cmd_ok(&c, "fault no-temp", true));
    CHECK(read_regs(fd, 0, 56, r));
    CHECK_EQ_INT(r[48], 0x8000);
    s = child_cmd(&c, "state");
    CHECK(s && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s, "temp_internal_c")));
    cJSON_Delete(s);

    /* Frozen: the model runs (speed 100) but the lifetime counter served stands still. */
    CHECK(cmd_ok(&c, "fault none", true));
    CHECK(cmd_ok(&c, "speed 100", true));
    s = wait_counter(&c, "lifetime_s", 2);
    CHECK(s != NULL);
    cJSON_Delete(s);
    CHECK(cmd_ok(&c, "fault frozen", true));
    uint16_t f1[56], f2[56];
    CHECK(read_regs(fd, 0, 56, f1));
    s = child_cmd(&c, "state");
    double frozen_at = s ? jnum(s, "model_lifetime_s") : 0;
    cJSON_Delete(s);
    s = wait_counter(&c, "model_lifetime_s", frozen_at + 5);
    CHECK(s != NULL);
    CHECK(s && jnum(s, "lifetime_s") == regs_u32(&f1[32])); /* state shows what is served */
    cJSON_Delete(s);
    CHECK(read_regs(fd, 0, 56, f2));
    CHECK_MEM(f2, f1, sizeof f1);
    CHECK(cmd_ok(&c, "fault none", true));
    CHECK(read_regs(fd, 0, 56, r));
    CHECK(regs_u32(&r[32]) >= regs_u32(&f1[32]) + 5);

    /* BMS reset: SOC re-estimated, lifetime keeps counting, 0x61 logged, reset cause 2. */
    CHECK(cmd_ok(&c, "speed 0", true));
    CHECK(read_regs(fd, 0, 56, r));
    uint32_t life_before = regs_u32(&r[32]);
    CHECK_NEAR(regs_u32(&r[46]) / 1e6, 70.0, 0.01);
    s = child_cmd(&c, "reset");
    CHECK(s && jtrue(s, "ok") && jnum(s, "soc_pct") == 0.0 && jnum(s, "reset_cause") == 2);
    cJSON_Delete(s);
    CHECK(read_regs(fd, 0, 56, r));
    CHECK_EQ_INT(regs_u32(&r[46]), 0);
    CHECK(regs_u32(&r[32]) >= life_before);
    uint16_t st[18];
    CHECK(read_regs(fd, 100, 18, st));
    CHECK_EQ_INT(st[14] & 0xFF, 2);
    uint16_t ev[2];
    CHECK(read_regs(fd, 200, 2, ev));
    CHECK_EQ_INT(ev[1] >> 8, 0x61);
    s = child_cmd(&c, "reset 42.5 9");
    CHECK(s && jtrue(s, "ok") && jnum(s, "reset_cause") == 9);
    cJSON_Delete(s);
    s = child_cmd(&c, "state");
    CHECK(s && jnum(s, "last_reset_cause") == 9);
    CHECK_NEAR(s ? jnum(s, "soc_pct") : 0, 42.5, 1e-6);
    const cJSON *events = s ? cJSON_GetObjectItemCaseSensitive(s, "events") : NULL;
    CHECK(cJSON_GetArraySize(events) >= 2);
    CHECK(cJSON_GetArraySize(events) >= 1 && jnum(cJSON_GetArrayItem(events, 0), "id") == 0x61);
    cJSON_Delete(s);
    CHECK(cmd_ok(&c, "reset 101", false));
    CHECK(cmd_ok(&c, "reset 50 256", false));
    CHECK(cmd_ok(&c, "reset abc", false));
    close(fd);
    CHECK(cmd_ok(&c, "quit", true));
    CHECK_EQ_INT(child_wait_exit(&c), 0);
}

static void test_bad_option_fails(void)
{
    const char *args[] = { "--cells", "3", NULL };
    struct child c;
    CHECK(child_start(&c, args));
    CHECK_EQ_INT(child_wait_exit(&c), 2);
    const char *fault[] = { "--fault", "impossible-nothing", NULL };
    CHECK(child_start(&c, fault));
    CHECK_EQ_INT(child_wait_exit(&c), 2);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        snprintf(sim_path, sizeof sim_path, "%s", argv[1]);
    } else {
        const char *b = getenv("GW_BUILD_DIR");
        snprintf(sim_path, sizeof sim_path, "%s/tools/tinybms-sim/tinybms-sim", b ? b : ".");
    }
    if (access(sim_path, X_OK) != 0) {
        fprintf(stderr, "tinybms-sim not found at %s\n", sim_path);
        return 1;
    }
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_sim_pty.XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    static const struct test_case_ cases[] = { TEST_CASE(test_sim_on_pty),
                                               TEST_CASE(test_sigterm_exits_cleanly),
                                               TEST_CASE(test_device_hangup_unplugs),
                                               TEST_CASE(test_faults_on_the_wire),
                                               TEST_CASE(test_bad_option_fails) };
    int rc = test_run_(cases, sizeof cases / sizeof cases[0]);
    unlink(link_path);
    rmdir(tmp_dir);
    return rc;
}
