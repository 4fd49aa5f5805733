/* The CAN transport contract, run over every implementation of struct can_transport_ops (as
 * Zephyr runs one CAN API suite against every driver): slcan on a pty, the candump log on a
 * regular file and on a FIFO (a reader that can stall or go away), the in-memory fake of
 * tests/contract/fake_can.c, and SocketCAN on vcan0 when the machine has one. A case an
 * implementation cannot be put through (no far end, a queue that never fills) is skipped with
 * the reason printed.
 *
 * The contract (can_transport.h):
 *  - a bad frame (dlc > 8, id beyond 11/29 bits, error flag) is refused with GW_ERR_INVAL before
 *    anything reaches the wire, and counted in tx_failed;
 *  - recv with nothing on the bus returns GW_ERR_TIMEOUT (GW_ERR_UNSUPPORTED at once for a
 *    write-only transport); a frame put on the bus is returned as sent;
 *  - send into a TX queue nobody drains returns GW_ERR_TIMEOUT within its timeout (never
 *    blocks), counting tx_queue_full and tx_failed;
 *  - after the far end hangs up, send (and recv) return GW_ERR_CLOSED, again and again;
 *  - counters start at 0 and count every frame sent, failed, received;
 *  - ops->close twice is harmless (impl NULL after the first).
 * Usage: test_contract_can [implementation name] (default: all). */
#define _GNU_SOURCE /* openpty, mkdtemp */
#include "can_transport.h"
#include "fake_can.h"
#include "gw_error.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/can.h>
#include <net/if.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PEER_WAIT_MS 10000 /* generous: the frame is on its way, this only bounds a broken run */

struct can_env {
    struct can_transport *t;
    int master, slave;           /* slcan: the pty (master = the adapter's side) */
    int peer_fd;                 /* log: file or FIFO reader; socketcan: the peer socket */
    char dir[64], path[128];
    struct can_slcan_parser parser;
    char line[256];              /* log: partial line read so far */
    size_t line_len;
};

struct can_impl {
    const char *name;
    bool receives;               /* false: write-only, recv is GW_ERR_UNSUPPORTED */
    /* Opens a fresh transport in e->t. Returns NULL, or why the implementation is not here. */
    const char *(*setup)(struct can_env *e);
    void (*teardown)(struct can_env *e);
    /* The next frame the transport put on the wire; false when none came. */
    bool (*peer_take)(struct can_env *e, struct can_frame_gw *f);
    /* Puts a frame on the bus (receiving kinds only). */
    bool (*peer_put)(struct can_env *e, const struct can_frame_gw *f);
    /* The far end goes away; returns NULL, or why this implementation has none. */
    const char *(*hang_up)(struct can_env *e);
    /* Stops draining the TX path so it fills; returns NULL, or why it never fills. */
    const char *(*stall)(struct can_env *e);
};

static bool frames_equal(const struct can_frame_gw *a, const struct can_frame_gw *b)
{
    return a->id == b->id && a->dlc == b->dlc && a->ext == b->ext && a->rtr == b->rtr &&
           a->err == b->err && (a->rtr || memcmp(a->data, b->data, a->dlc) == 0);
}

static struct can_frame_gw frame(uint32_t id, uint8_t dlc, bool ext, bool rtr)
{
    struct can_frame_gw f = { .id = id, .dlc = dlc, .ext = ext, .rtr = rtr };
    for (uint8_t i = 0; i < dlc && !rtr; i++)
        f.data[i] = (uint8_t)(0xA0 + i * 7 + id);
    return f;
}

/* Waits up to PEER_WAIT_MS for fd to be readable. */
static bool wait_readable(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int rc;
    do {
        rc = poll(&pfd, 1, PEER_WAIT_MS);
    } while (rc < 0 && errno == EINTR);
    return rc > 0;
}

/* ---- slcan on a pty ---------------------------------------------------------------------- */

static const char *slcan_setup(struct can_env *e)
{
    char name[64];
    if (openpty(&e->master, &e->slave, name, NULL, NULL) != 0)
        return "openpty failed (no /dev/ptmx)";
    struct termios tio;
    tcgetattr(e->master, &tio);
    cfmakeraw(&tio);
    tcsetattr(e->master, TCSANOW, &tio);
    char spec[96];
    snprintf(spec, sizeof spec, "slcan:%s", name);
    CHECK_EQ_INT(can_transport_open(spec, 500000, &e->t), GW_OK);
    return NULL;
}

static void slcan_teardown(struct can_env *e)
{
    can_transport_close(e->t);
    if (e->master >= 0)
        close(e->master);
    close(e->slave);
}

static bool slcan_take(struct can_env *e, struct can_frame_gw *f)
{
    for (;;) {
        if (!wait_readable(e->master))
            return false;
        uint8_t b;
        if (read(e->master, &b, 1) != 1)
            return false;
        /* The open sequence (C, S6, O) parses as ignored lines. */
        if (can_slcan_parser_feed(&e->parser, b, f) == CAN_SLCAN_FRAME)
            return true;
    }
}

static bool slcan_put(struct can_env *e, const struct can_frame_gw *f)
{
    char line[CAN_SLCAN_LINE_MAX + 1];
    int n = can_slcan_encode(f, line, sizeof line);
    return n > 0 && write(e->master, line, (size_t)n) == n;
}

static const char *slcan_hang_up(struct can_env *e)
{
    close(e->master); /* the USB adapter is unplugged */
    e->master = -1;
    return NULL;
}

static const char *slcan_stall(struct can_env *e)
{
    (void)e; /* nobody reads the pty: its buffer fills */
    return NULL;
}

/* ---- candump log: regular file and FIFO ------------------------------------------------ */

/* Parses "(1700000000.123456) can0 351#45024C04\n" (without the newline). */
static bool parse_candump(const char *line, struct can_frame_gw *f)
{
    const char *p = strchr(line, ')');
    if (!p || p[1] != ' ')
        return false;
    p = strchr(p + 2, ' '); /* after the interface name */
    if (!p)
        return false;
    p++;
    const char *hash = strchr(p, '#');
    if (!hash || (hash - p != 3 && hash - p != 8))
        return false;
    memset(f, 0, sizeof *f);
    f->ext = hash - p == 8;
    f->id = (uint32_t)strtoul(p, NULL, 16);
    p = hash + 1;
    if (*p == 'R') {
        f->rtr = true;
        f->dlc = p[1] ? (uint8_t)(p[1] - '0') : 0;
        return true;
    }
    size_t digits = strlen(p);
    if (digits % 2 || digits > 16)
        return false;
    f->dlc = (uint8_t)(digits / 2);
    for (uint8_t i = 0; i < f->dlc; i++) {
        char byte[3] = { p[2 * i], p[2 * i + 1], 0 };
        f->data[i] = (uint8_t)strtoul(byte, NULL, 16);
    }
    return true;
}

static const char *log_open_spec(struct can_env *e)
{
    char spec[200];
    snprintf(spec, sizeof spec, "log:%s@vcan3", e->path);
    CHECK_EQ_INT(can_transport_open(spec, 500000, &e->t), GW_OK);
    return NULL;
}

static const char *log_file_setup(struct can_env *e)
{
    snprintf(e->dir, sizeof e->dir, "/tmp/test_contract_can_XXXXXX");
    if (!mkdtemp(e->dir))
        return "mkdtemp failed";
    snprintf(e->path, sizeof e->path, "%s/frames.log", e->dir);
    log_open_spec(e);
    e->peer_fd = open(e->path, O_RDONLY | O_CLOEXEC);
    CHECK(e->peer_fd >= 0);
    return NULL;
}

static const char *log_fifo_setup(struct can_env *e)
{
    snprintf(e->dir, sizeof e->dir, "/tmp/test_contract_can_XXXXXX");
    if (!mkdtemp(e->dir))
        return "mkdtemp failed";
    snprintf(e->path, sizeof e->path, "%s/frames.fifo", e->dir);
    if (mkfifo(e->path, 0600) != 0)
        return "mkfifo failed";
    /* The reader first (a candump parser at the other end of the pipe), then the transport. */
    e->peer_fd = open(e->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    CHECK(e->peer_fd >= 0);
    log_open_spec(e);
    return NULL;
}

static void log_teardown(struct can_env *e)
{
    can_transport_close(e->t);
    if (e->peer_fd >= 0)
        close(e->peer_fd);
    unlink(e->path);
    rmdir(e->dir);
}

/* Reads the next complete line. A regular file holds every line once send returned; a FIFO
 * is waited for. */
static bool log_take(struct can_env *e, struct can_frame_gw *f)
{
    if (e->peer_fd < 0)
        return false;
    struct stat st;
    bool fifo = fstat(e->peer_fd, &st) == 0 && S_ISFIFO(st.st_mode);
    for (;;) {
        char *nl = memchr(e->line, '\n', e->line_len);
        if (nl) {
            *nl = '\0';
            bool ok = parse_candump(e->line, f);
            size_t used = (size_t)(nl + 1 - e->line);
            memmove(e->line, nl + 1, e->line_len - used);
            e->line_len -= used;
            return ok;
        }
        if (e->line_len == sizeof e->line)
            return false;
        ssize_t n = read(e->peer_fd, e->line + e->line_len, sizeof e->line - e->line_len);
        if (n > 0) {
            e->line_len += (size_t)n;
            continue;
        }
        if (!fifo || (n < 0 && errno != EAGAIN) || !wait_readable(e->peer_fd))
            return false;
    }
}

static const char *log_file_no_far_end(struct can_env *e)
{
    (void)e;
    return "a regular file has no far end (a full disk is GW_ERR_STORAGE)";
}

static const char *log_file_never_fills(struct can_env *e)
{
    (void)e;
    return "a regular file never fills";
}

static const char *log_fifo_hang_up(struct can_env *e)
{
    close(e->peer_fd); /* the reader of the pipe exits */
    e->peer_fd = -1;
    return NULL;
}

static const char *log_fifo_stall(struct can_env *e)
{
    (void)e; /* the reader stops reading: the pipe buffer fills */
    return NULL;
}

/* ---- the in-memory fake ---------------------------------------------------------------- */

static const char *fake_setup(struct can_env *e)
{
    CHECK_EQ_INT(fake_can_open(&e->t), GW_OK);
    return NULL;
}

static void fake_teardown(struct can_env *e)
{
    can_transport_close(e->t);
}

static bool fake_take(struct can_env *e, struct can_frame_gw *f)
{
    return fake_can_peer_take(e->t, f);
}

static bool fake_put(struct can_env *e, const struct can_frame_gw *f)
{
    return fake_can_peer_put(e->t, f);
}

static const char *fake_hang_up(struct can_env *e)
{
    CHECK(fake_can_peer_hang_up(e->t));
    return NULL;
}

static const char *fake_stall(struct can_env *e)
{
    CHECK(fake_can_peer_set_tx_capacity(e->t, 16));
    return NULL;
}

/* ---- SocketCAN on vcan0 ---------------------------------------------------------------- */

static const char *socketcan_setup(struct can_env *e)
{
    int probe = socket(PF_CAN, SOCK_RAW | SOCK_CLOEXEC, CAN_RAW);
    if (probe < 0)
        return "this kernel has no CAN sockets (modprobe can_raw vcan)";
    close(probe);
    unsigned ifindex = if_nametoindex("vcan0");
    if (ifindex == 0)
        return "no vcan0 interface (ip link add dev vcan0 type vcan && ip link set up vcan0)";
    CHECK_EQ_INT(can_transport_open("socketcan:vcan0", 500000, &e->t), GW_OK);
    e->peer_fd = socket(PF_CAN, SOCK_RAW | SOCK_CLOEXEC, CAN_RAW);
    CHECK(e->peer_fd >= 0);
    struct sockaddr_can addr = { .can_family = AF_CAN, .can_ifindex = (int)ifindex };
    CHECK_EQ_INT(bind(e->peer_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    return NULL;
}

static void socketcan_teardown(struct can_env *e)
{
    can_transport_close(e->t);
    if (e->peer_fd >= 0)
        close(e->peer_fd);
}

static bool socketcan_take(struct can_env *e, struct can_frame_gw *f)
{
    struct can_frame lf;
    if (!wait_readable(e->peer_fd) || read(e->peer_fd, &lf, sizeof lf) != (ssize_t)sizeof lf)
        return false;
    memset(f, 0, sizeof *f);
    f->ext = (lf.can_id & CAN_EFF_FLAG) != 0;
    f->rtr = (lf.can_id & CAN_RTR_FLAG) != 0;
    f->id = lf.can_id & (f->ext ? CAN_EFF_MASK : CAN_SFF_MASK);
    f->dlc = lf.can_dlc;
    if (!f->rtr)
        memcpy(f->data, lf.data, lf.can_dlc);
    return true;
}

static bool socketcan_put(struct can_env *e, const struct can_frame_gw *f)
{
    struct can_frame lf = { 0 };
    lf.can_id = f->ext ? (f->id | CAN_EFF_FLAG) : f->id;
    if (f->rtr)
        lf.can_id |= CAN_RTR_FLAG;
    lf.can_dlc = f->dlc;
    memcpy(lf.data, f->data, sizeof lf.data);
    return write(e->peer_fd, &lf, sizeof lf) == (ssize_t)sizeof lf;
}

static const char *socketcan_no_hang_up(struct can_env *e)
{
    (void)e;
    return "taking vcan0 down needs CAP_NET_ADMIN";
}

static const char *socketcan_never_fills(struct can_env *e)
{
    (void)e;
    return "vcan delivers at once, its queue never fills";
}

static const struct can_impl impls[] = {
    { "slcan", true, slcan_setup, slcan_teardown, slcan_take, slcan_put, slcan_hang_up, slcan_stall },
    { "log-file", false, log_file_setup, log_teardown, log_take, NULL, log_file_no_far_end,
      log_file_never_fills },
    { "log-fifo", false, log_fifo_setup, log_teardown, log_take, NULL, log_fifo_hang_up,
      log_fifo_stall },
    { "fake", true, fake_setup, fake_teardown, fake_take, fake_put, fake_hang_up, fake_stall },
    { "socketcan", true, socketcan_setup, socketcan_teardown, socketcan_take, socketcan_put,
      socketcan_no_hang_up, socketcan_never_fills },
};

/* ---- the cases --------------------------------------------------------------------------- */

static struct can_transport_stats stats_of(struct can_env *e)
{
    struct can_transport_stats st;
    can_transport_get_stats(e->t, &st);
    return st;
}

/* Frames of every shape reach the far end as sent, in order. */
static const char *case_frames_reach_the_wire(const struct can_impl *im, struct can_env *e)
{
    const struct can_frame_gw sent[] = {
        frame(0x351, 8, false, false), frame(0x305, 0, false, false),
        frame(0x1ABCDEF0, 2, true, false), frame(0x7FF, 3, false, true),
        frame(0x1FFFFFFF, 8, true, false),
    };
    for (size_t i = 0; i < sizeof sent / sizeof sent[0]; i++)
        CHECK_EQ_INT(can_transport_send(e->t, &sent[i], 1000), GW_OK);
    for (size_t i = 0; i < sizeof sent / sizeof sent[0]; i++) {
        struct can_frame_gw got;
        CHECK(im->peer_take(e, &got));
        CHECK(frames_equal(&got, &sent[i]));
    }
    return NULL;
}

static const char *case_bad_frame(const struct can_impl *im, struct can_env *e)
{
    struct can_frame_gw bad[4] = {
        frame(0x351, 8, false, false), frame(0x800, 1, false, false),
        frame(0x20000000, 1, true, false), frame(0x100, 0, false, false),
    };
    bad[0].dlc = 9;
    bad[3].err = true;
    for (size_t i = 0; i < 4; i++)
        CHECK_EQ_INT(can_transport_send(e->t, &bad[i], 100), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_send(e->t, NULL, 100), GW_ERR_INVAL);
    /* Nothing of them reached the wire: the next frame there is this one. */
    struct can_frame_gw good = frame(0x356, 4, false, false), got;
    CHECK_EQ_INT(can_transport_send(e->t, &good, 1000), GW_OK);
    CHECK(im->peer_take(e, &got));
    CHECK(frames_equal(&got, &good));
    struct can_transport_stats st = stats_of(e);
    CHECK_EQ_INT(st.tx_failed, 4); /* the NULL frame never reached the implementation */
    CHECK_EQ_INT(st.tx_ok, 1);
    return NULL;
}

static const char *case_recv_timeout(const struct can_impl *im, struct can_env *e)
{
    struct can_frame_gw got;
    if (!im->receives) {
        CHECK_EQ_INT(can_transport_recv(e->t, &got, 0), GW_ERR_UNSUPPORTED);
        CHECK_EQ_INT(can_transport_recv(e->t, &got, 20), GW_ERR_UNSUPPORTED);
        CHECK_EQ_INT(stats_of(e).rx, 0);
        return NULL;
    }
    /* Nothing is ever put on the bus before these: they can only time out. */
    CHECK_EQ_INT(can_transport_recv(e->t, &got, 0), GW_ERR_TIMEOUT);
    CHECK_EQ_INT(can_transport_recv(e->t, &got, 20), GW_ERR_TIMEOUT);
    CHECK_EQ_INT(stats_of(e).rx, 0);
    const struct can_frame_gw on_bus = frame(0x307, 8, false, false);
    CHECK(im->peer_put(e, &on_bus));
    CHECK_EQ_INT(can_transport_recv(e->t, &got, PEER_WAIT_MS), GW_OK);
    CHECK(frames_equal(&got, &on_bus));
    CHECK_EQ_INT(can_transport_recv(e->t, &got, 0), GW_ERR_TIMEOUT);
    CHECK_EQ_INT(can_transport_recv(NULL, &got, 0), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_recv(e->t, NULL, 0), GW_ERR_INVAL);
    return NULL;
}

/* Nobody drains the TX path: send gives up at its timeout instead of blocking. */
static const char *case_send_timeout_when_full(const struct can_impl *im, struct can_env *e)
{
    const char *why = im->stall(e);
    if (why)
        return why;
    const struct can_frame_gw f = frame(0x351, 8, false, false);
    int rc = GW_OK;
    uint64_t sent = 0;
    for (int i = 0; i < 200000 && rc == GW_OK; i++) {
        rc = can_transport_send(e->t, &f, 5);
        sent += rc == GW_OK;
    }
    CHECK_EQ_INT(rc, GW_ERR_TIMEOUT);
    struct can_transport_stats st = stats_of(e);
    CHECK(st.tx_queue_full >= 1);
    CHECK_EQ_INT(st.tx_failed, 1);
    CHECK_EQ_INT(st.tx_ok, sent);
    return NULL;
}

static const char *case_send_after_hang_up(const struct can_impl *im, struct can_env *e)
{
    const struct can_frame_gw f = frame(0x355, 8, false, false);
    CHECK_EQ_INT(can_transport_send(e->t, &f, 1000), GW_OK);
    const char *why = im->hang_up(e);
    if (why)
        return why;
    CHECK_EQ_INT(can_transport_send(e->t, &f, 1000), GW_ERR_CLOSED);
    CHECK_EQ_INT(can_transport_send(e->t, &f, 1000), GW_ERR_CLOSED); /* and stays so */
    struct can_frame_gw got;
    if (im->receives)
        CHECK_EQ_INT(can_transport_recv(e->t, &got, 1000), GW_ERR_CLOSED);
    struct can_transport_stats st = stats_of(e);
    CHECK_EQ_INT(st.tx_ok, 1);
    CHECK_EQ_INT(st.tx_failed, 2);
    return NULL;
}

static const char *case_counters(const struct can_impl *im, struct can_env *e)
{
    struct can_transport_stats st = stats_of(e), zero;
    memset(&zero, 0, sizeof zero);
    CHECK(memcmp(&st, &zero, sizeof st) == 0); /* nothing before the first frame */
    struct can_frame_gw f = frame(0x35A, 8, false, false), got;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(can_transport_send(e->t, &f, 1000), GW_OK);
    f.dlc = 10;
    CHECK_EQ_INT(can_transport_send(e->t, &f, 1000), GW_ERR_INVAL);
    for (int i = 0; i < 3; i++)
        CHECK(im->peer_take(e, &got));
    st = stats_of(e);
    CHECK_EQ_INT(st.tx_ok, 3);
    CHECK_EQ_INT(st.tx_failed, 1);
    if (im->receives) {
        const struct can_frame_gw a = frame(0x305, 8, false, false), b = frame(0x306, 2, false, false);
        CHECK(im->peer_put(e, &a));
        CHECK(im->peer_put(e, &b));
        CHECK_EQ_INT(can_transport_recv(e->t, &got, PEER_WAIT_MS), GW_OK);
        CHECK_EQ_INT(can_transport_recv(e->t, &got, PEER_WAIT_MS), GW_OK);
        CHECK(frames_equal(&got, &b));
    }
    st = stats_of(e);
    CHECK_EQ_INT(st.rx, im->receives ? 2 : 0);
    CHECK_EQ_INT(st.tx_ok, 3);
    can_transport_get_stats(NULL, &st);
    CHECK(memcmp(&st, &zero, sizeof st) == 0);
    return NULL;
}

static const char *case_close_twice(const struct can_impl *im, struct can_env *e)
{
    (void)im;
    e->t->ops->close(e->t);
    CHECK(e->t->impl == NULL);
    e->t->ops->close(e->t); /* harmless */
    can_transport_close(e->t); /* a third time, and the memory freed (ASan watches) */
    e->t = NULL;
    can_transport_close(NULL);
    return NULL;
}

static const struct {
    const char *name;
    const char *(*run)(const struct can_impl *im, struct can_env *e);
} cases[] = {
    { "frames_reach_the_wire", case_frames_reach_the_wire },
    { "bad_frame", case_bad_frame },
    { "recv_timeout", case_recv_timeout },
    { "send_timeout_when_full", case_send_timeout_when_full },
    { "send_after_hang_up", case_send_after_hang_up },
    { "counters", case_counters },
    { "close_twice", case_close_twice },
};

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* as the daemon does: a reader gone is EPIPE, not death */
    int passed = 0, failed = 0, skipped = 0, ran_impls = 0;
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++) {
        const struct can_impl *im = &impls[i];
        if (argc > 1 && strcmp(argv[1], im->name) != 0)
            continue;
        ran_impls++;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            struct can_env e;
            memset(&e, 0, sizeof e);
            e.master = e.slave = e.peer_fd = -1;
            int before = test_failures_;
            const char *why = im->setup(&e);
            if (!why && e.t)
                why = cases[c].run(im, &e);
            else if (!why)
                test_failures_++; /* setup failed (checked above) */
            im->teardown(&e); /* copes with what a skipped or failed setup left */
            if (test_failures_ != before) {
                failed++;
                printf("FAIL %s/%s\n", im->name, cases[c].name);
            } else if (why) {
                skipped++;
                printf("skip %s/%s: %s\n", im->name, cases[c].name, why);
            } else {
                passed++;
                printf("ok   %s/%s\n", im->name, cases[c].name);
            }
            fflush(stdout);
        }
    }
    if (!ran_impls) {
        fprintf(stderr, "no implementation named '%s'\n", argv[1]);
        return 1;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
