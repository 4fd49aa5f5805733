/* The serial port contract (serial.h), run over every backend of struct serial_ops: termios on
 * a pty and the in-memory fake of tests/contract/fake_serial.c. The BMS poller and the slcan
 * CAN transport rely on exactly this:
 *  - open: a missing device is GW_ERR_NOT_FOUND, something that is no serial device GW_ERR_IO,
 *    an unsupported baud rate or an empty path GW_ERR_INVAL, and *out is NULL on failure;
 *  - bytes written reach the device as they are, bytes the device sends are read as they are;
 *  - read with nothing there waits at most its timeout and returns GW_OK with 0 bytes;
 *  - bad arguments (NULL port or buffer, a zero-sized buffer) are GW_ERR_INVAL, never a lost
 *    byte or a false "device gone";
 *  - write into a line nobody drains returns GW_ERR_TIMEOUT at its timeout (never blocks);
 *  - discard_input drops what arrived and nothing that comes after;
 *  - after the device goes away, read and write return GW_ERR_CLOSED;
 *  - close frees the port (close(NULL) is accepted; a closed port is never used again, so
 *    "close twice" is close(NULL)).
 * Usage: test_contract_serial [backend name] (default: all). */
#define _GNU_SOURCE /* openpty */
#include "fake_serial.h"
#include "gw_error.h"
#include "serial.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#define PEER_WAIT_MS 10000 /* generous bound for bytes already on their way */

struct serial_env {
    const struct serial_ops *ops;
    struct serial_port *port;
    int master, slave;           /* termios: the pty (master = the device's side) */
    char path[64];
};

struct serial_backend {
    const char *name;
    const struct serial_ops *ops;
    const char *missing_path, *not_a_device_path;
    const char *(*setup)(struct serial_env *e);     /* opens e->port at 115200; NULL or a skip reason */
    void (*teardown)(struct serial_env *e);
    /* Up to want bytes the port wrote, waiting for them; returns how many came. */
    size_t (*peer_read)(struct serial_env *e, uint8_t *buf, size_t want);
    bool (*peer_write)(struct serial_env *e, const uint8_t *buf, size_t n);
    /* True once bytes the peer wrote are there for the port to read (without reading them). */
    bool (*wait_input)(struct serial_env *e);
    void (*stall)(struct serial_env *e);            /* the device stops reading */
    void (*hang_up)(struct serial_env *e);          /* the device goes away */
};

/* ---- termios on a pty -------------------------------------------------------------------- */

static const char *termios_setup(struct serial_env *e)
{
    if (openpty(&e->master, &e->slave, e->path, NULL, NULL) != 0)
        return "openpty failed (no /dev/ptmx)";
    struct termios tio;
    tcgetattr(e->master, &tio);
    cfmakeraw(&tio);
    tcsetattr(e->master, TCSANOW, &tio);
    CHECK_EQ_INT(e->ops->open(e->path, 115200, &e->port), GW_OK);
    return NULL;
}

static void termios_teardown(struct serial_env *e)
{
    e->ops->close(e->port);
    if (e->master >= 0)
        close(e->master);
    if (e->slave >= 0)
        close(e->slave);
}

static bool poll_in(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int rc;
    do {
        rc = poll(&pfd, 1, PEER_WAIT_MS);
    } while (rc < 0 && errno == EINTR);
    return rc > 0 && (pfd.revents & POLLIN);
}

static size_t termios_peer_read(struct serial_env *e, uint8_t *buf, size_t want)
{
    size_t got = 0;
    while (got < want && poll_in(e->master)) {
        ssize_t n = read(e->master, buf + got, want - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

static bool termios_peer_write(struct serial_env *e, const uint8_t *buf, size_t n)
{
    return write(e->master, buf, n) == (ssize_t)n;
}

static bool termios_wait_input(struct serial_env *e)
{
    return poll_in(e->slave); /* the same tty the port reads from */
}

static void termios_stall(struct serial_env *e)
{
    (void)e; /* nobody reads the master: the pty buffer fills */
}

static void termios_hang_up(struct serial_env *e)
{
    close(e->master);
    e->master = -1;
    close(e->slave); /* the test's own handle on the tty goes too, as when a USB port vanishes */
    e->slave = -1;
}

/* ---- the in-memory fake ---------------------------------------------------------------- */

static const char *fake_setup(struct serial_env *e)
{
    CHECK_EQ_INT(e->ops->open("fake:bms", 115200, &e->port), GW_OK);
    return NULL;
}

static void fake_teardown(struct serial_env *e)
{
    e->ops->close(e->port);
}

static size_t fake_peer_read(struct serial_env *e, uint8_t *buf, size_t want)
{
    return fake_serial_peer_read(e->port, buf, want); /* writes are synchronous */
}

static bool fake_peer_write(struct serial_env *e, const uint8_t *buf, size_t n)
{
    return fake_serial_peer_write(e->port, buf, n);
}

static bool fake_wait_input(struct serial_env *e)
{
    (void)e;
    return true; /* peer writes are there at once */
}

static void fake_stall(struct serial_env *e)
{
    CHECK(fake_serial_peer_set_capacity(e->port, 64));
}

static void fake_hang_up(struct serial_env *e)
{
    CHECK(fake_serial_peer_hang_up(e->port));
}

static const struct serial_backend backends[] = {
    { "termios", &serial_termios_ops, "/dev/does-not-exist-tty", "/dev/null", termios_setup,
      termios_teardown, termios_peer_read, termios_peer_write, termios_wait_input, termios_stall,
      termios_hang_up },
    { "fake", &fake_serial_ops, FAKE_SERIAL_MISSING, FAKE_SERIAL_NOT_A_TTY, fake_setup,
      fake_teardown, fake_peer_read, fake_peer_write, fake_wait_input, fake_stall, fake_hang_up },
};

/* ---- the cases --------------------------------------------------------------------------- */

/* Reads until want bytes came or a read returned nothing within its (generous) timeout. */
static size_t read_all(struct serial_env *e, uint8_t *buf, size_t want)
{
    size_t total = 0;
    while (total < want) {
        size_t got = 0;
        int rc = e->ops->read(e->port, buf + total, want - total, PEER_WAIT_MS, &got);
        if (rc != GW_OK || got == 0)
            break;
        total += got;
    }
    return total;
}

static void case_open_errors(const struct serial_backend *b, struct serial_env *e)
{
    struct serial_port *p = (struct serial_port *)&p; /* must come back NULL */
    CHECK_EQ_INT(b->ops->open(b->missing_path, 115200, &p), GW_ERR_NOT_FOUND);
    CHECK(p == NULL);
    p = (struct serial_port *)&p;
    CHECK_EQ_INT(b->ops->open(b->not_a_device_path, 115200, &p), GW_ERR_IO);
    CHECK(p == NULL);
    p = (struct serial_port *)&p;
    CHECK_EQ_INT(b->ops->open(e->path[0] ? e->path : "fake:bms", 1234, &p), GW_ERR_INVAL);
    CHECK(p == NULL);
    CHECK_EQ_INT(b->ops->open("", 115200, &p), GW_ERR_INVAL);
    CHECK(p == NULL);
    CHECK_EQ_INT(b->ops->open(NULL, 115200, &p), GW_ERR_INVAL);
    CHECK_EQ_INT(b->ops->open(b->missing_path, 115200, NULL), GW_ERR_INVAL);
}

static void case_bytes_both_ways(const struct serial_backend *b, struct serial_env *e)
{
    uint8_t out[300], back[300];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (uint8_t)(i * 31 + 7); /* every byte value class: 0x00, 0x0D, 0x11, 0xAA, ... */
    out[0] = 0x00;
    out[1] = 0x11; /* XON: no flow control may eat it */
    out[2] = 0x13; /* XOFF */
    out[3] = '\r';
    CHECK_EQ_INT(e->ops->write(e->port, out, sizeof out, 1000), GW_OK);
    CHECK_EQ_INT(b->peer_read(e, back, sizeof back), sizeof back);
    CHECK_MEM(back, out, sizeof out);
    CHECK(b->peer_write(e, out, sizeof out));
    memset(back, 0, sizeof back);
    CHECK_EQ_INT(read_all(e, back, sizeof back), sizeof back);
    CHECK_MEM(back, out, sizeof out);
    CHECK_EQ_INT(e->ops->write(e->port, out, 0, 1000), GW_OK); /* nothing to write: done */
}

static void case_read_timeout(const struct serial_backend *b, struct serial_env *e)
{
    (void)b;
    uint8_t buf[16];
    size_t got = 99;
    /* The peer never sends: these can only time out. */
    CHECK_EQ_INT(e->ops->read(e->port, buf, sizeof buf, 0, &got), GW_OK);
    CHECK_EQ_INT(got, 0);
    got = 99;
    CHECK_EQ_INT(e->ops->read(e->port, buf, sizeof buf, 20, &got), GW_OK);
    CHECK_EQ_INT(got, 0);
}

static void case_bad_arguments(const struct serial_backend *b, struct serial_env *e)
{
    const uint8_t x[] = { 0xAA, 0x55 };
    CHECK(b->peer_write(e, x, sizeof x));
    CHECK(b->wait_input(e));
    uint8_t buf[8];
    size_t got = 99;
    /* Input is waiting: a zero-sized buffer must not read as "device gone". */
    CHECK_EQ_INT(e->ops->read(e->port, buf, 0, 100, &got), GW_ERR_INVAL);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(e->ops->read(e->port, NULL, sizeof buf, 100, &got), GW_ERR_INVAL);
    CHECK_EQ_INT(e->ops->read(e->port, buf, sizeof buf, 100, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(e->ops->read(NULL, buf, sizeof buf, 100, &got), GW_ERR_INVAL);
    CHECK_EQ_INT(e->ops->write(e->port, NULL, 3, 100), GW_ERR_INVAL);
    CHECK_EQ_INT(e->ops->write(NULL, x, sizeof x, 100), GW_ERR_INVAL);
    e->ops->discard_input(NULL);
    /* Nothing was lost on the way. */
    CHECK_EQ_INT(read_all(e, buf, sizeof x), sizeof x);
    CHECK_MEM(buf, x, sizeof x);
}

static void case_write_timeout_when_full(const struct serial_backend *b, struct serial_env *e)
{
    b->stall(e);
    uint8_t block[1024];
    memset(block, 0x5A, sizeof block);
    int rc = GW_OK;
    for (int i = 0; i < 10000 && rc == GW_OK; i++)
        rc = e->ops->write(e->port, block, sizeof block, 5);
    CHECK_EQ_INT(rc, GW_ERR_TIMEOUT);
}

static void case_discard_input(const struct serial_backend *b, struct serial_env *e)
{
    const uint8_t old[] = "stale answer", fresh[] = "new";
    CHECK(b->peer_write(e, old, sizeof old - 1));
    CHECK(b->wait_input(e));
    e->ops->discard_input(e->port);
    uint8_t buf[32];
    size_t got = 99;
    CHECK_EQ_INT(e->ops->read(e->port, buf, sizeof buf, 0, &got), GW_OK);
    CHECK_EQ_INT(got, 0);
    CHECK(b->peer_write(e, fresh, sizeof fresh - 1));
    CHECK_EQ_INT(read_all(e, buf, sizeof fresh - 1), sizeof fresh - 1);
    CHECK_MEM(buf, fresh, sizeof fresh - 1);
    CHECK_EQ_INT(e->ops->read(e->port, buf, sizeof buf, 0, &got), GW_OK);
    CHECK_EQ_INT(got, 0);
}

static void case_hang_up(const struct serial_backend *b, struct serial_env *e)
{
    b->hang_up(e);
    uint8_t buf[8];
    size_t got = 99;
    CHECK_EQ_INT(e->ops->read(e->port, buf, sizeof buf, 1000, &got), GW_ERR_CLOSED);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(e->ops->read(e->port, buf, sizeof buf, 1000, &got), GW_ERR_CLOSED); /* stays */
    const uint8_t x[] = { 0xAA, 0x03 };
    CHECK_EQ_INT(e->ops->write(e->port, x, sizeof x, 1000), GW_ERR_CLOSED);
}

static void case_close(const struct serial_backend *b, struct serial_env *e)
{
    (void)b;
    e->ops->close(e->port); /* freed (ASan watches the teardown not to touch it again) */
    e->port = NULL;
    e->ops->close(NULL);
}

static const struct {
    const char *name;
    void (*run)(const struct serial_backend *b, struct serial_env *e);
} cases[] = {
    { "open_errors", case_open_errors },
    { "bytes_both_ways", case_bytes_both_ways },
    { "read_timeout", case_read_timeout },
    { "bad_arguments", case_bad_arguments },
    { "write_timeout_when_full", case_write_timeout_when_full },
    { "discard_input", case_discard_input },
    { "hang_up", case_hang_up },
    { "close", case_close },
};

int main(int argc, char **argv)
{
    int passed = 0, failed = 0, skipped = 0, ran = 0;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        const struct serial_backend *b = &backends[i];
        if (argc > 1 && strcmp(argv[1], b->name) != 0)
            continue;
        ran++;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            struct serial_env e;
            memset(&e, 0, sizeof e);
            e.ops = b->ops;
            e.master = e.slave = -1;
            int before = test_failures_;
            const char *why = b->setup(&e);
            if (!why && e.port)
                cases[c].run(b, &e);
            else if (!why)
                test_failures_++; /* setup failed (checked above) */
            b->teardown(&e);
            if (test_failures_ != before) {
                failed++;
                printf("FAIL %s/%s\n", b->name, cases[c].name);
            } else if (why) {
                skipped++;
                printf("skip %s/%s: %s\n", b->name, cases[c].name, why);
            } else {
                passed++;
                printf("ok   %s/%s\n", b->name, cases[c].name);
            }
            fflush(stdout);
        }
    }
    if (!ran) {
        fprintf(stderr, "no backend named '%s'\n", argv[1]);
        return 1;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
