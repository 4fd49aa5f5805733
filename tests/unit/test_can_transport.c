/* CAN transports: slcan codec (every malformed line), slcan over a pty, candump log format and
 * file, SocketCAN frame conversion and its open failure on this kernel, the spec factory. What
 * every transport must do alike (bad frames, timeouts, a full queue, hang-up, counters, close)
 * is the contract suite tests/contract/test_contract_can.c, run over each of them. */
#define _GNU_SOURCE /* openpty, mkdtemp */
#include "can_transport.h"
#include "can_transport_internal.h"
#include "fake_clock.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "support/wait.h"
#include "test.h"

#include <fcntl.h>
#include <linux/can/error.h>
#include <poll.h>
#include <pty.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static struct can_frame_gw std_frame(uint32_t id, uint8_t dlc, const uint8_t *data)
{
    struct can_frame_gw f = { .id = id, .dlc = dlc };
    if (data)
        memcpy(f.data, data, dlc);
    return f;
}

static void test_slcan_encode(void)
{
    char buf[CAN_SLCAN_LINE_MAX];
    const uint8_t d351[8] = { 0x45, 0x02, 0x4c, 0x04, 0x4c, 0x04, 0x00, 0x00 };
    struct can_frame_gw f = std_frame(0x351, 8, d351);
    CHECK_EQ_INT(can_slcan_encode(&f, buf, sizeof buf), 22);
    CHECK_STR(buf, "t351845024C044C040000\r");

    f = std_frame(0x305, 0, NULL);
    CHECK_EQ_INT(can_slcan_encode(&f, buf, sizeof buf), 6);
    CHECK_STR(buf, "t3050\r");

    const uint8_t d2[2] = { 0xAB, 0x01 };
    f = std_frame(0x1ABCDEF0, 2, d2);
    f.ext = true;
    CHECK(can_slcan_encode(&f, buf, sizeof buf) > 0);
    CHECK_STR(buf, "T1ABCDEF02AB01\r");

    f = std_frame(0x7FF, 3, NULL);
    f.rtr = true;
    CHECK(can_slcan_encode(&f, buf, sizeof buf) > 0);
    CHECK_STR(buf, "r7FF3\r");
    f.ext = true;
    CHECK(can_slcan_encode(&f, buf, sizeof buf) > 0);
    CHECK_STR(buf, "R000007FF3\r");

    /* Bad frames and small buffers. */
    f = std_frame(0x800, 0, NULL); /* 12 bits without ext */
    CHECK_EQ_INT(can_slcan_encode(&f, buf, sizeof buf), GW_ERR_INVAL);
    f = std_frame(0x100, 9, NULL);
    CHECK_EQ_INT(can_slcan_encode(&f, buf, sizeof buf), GW_ERR_INVAL);
    f = std_frame(0x20000000, 0, NULL);
    f.ext = true;
    CHECK_EQ_INT(can_slcan_encode(&f, buf, sizeof buf), GW_ERR_INVAL);
    f = std_frame(0x100, 0, NULL);
    f.err = true;
    CHECK_EQ_INT(can_slcan_encode(&f, buf, sizeof buf), GW_ERR_INVAL);
    f = std_frame(0x351, 8, d351);
    CHECK_EQ_INT(can_slcan_encode(&f, buf, 22), GW_ERR_OVERFLOW); /* needs 23 with the NUL */
    CHECK_EQ_INT(can_slcan_encode(&f, buf, 23), 22);
    CHECK_EQ_INT(can_slcan_encode(NULL, buf, sizeof buf), GW_ERR_INVAL);
}

static void test_slcan_bitrate_codes(void)
{
    static const struct { uint32_t rate; char code; } ok[] = {
        { 10000, '0' }, { 20000, '1' }, { 50000, '2' }, { 100000, '3' }, { 125000, '4' },
        { 250000, '5' }, { 500000, '6' }, { 800000, '7' }, { 1000000, '8' },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char c = 0;
        CHECK_EQ_INT(can_slcan_bitrate_code(ok[i].rate, &c), GW_OK);
        CHECK_EQ_INT(c, ok[i].code);
    }
    char c;
    CHECK_EQ_INT(can_slcan_bitrate_code(0, &c), GW_ERR_INVAL);
    CHECK_EQ_INT(can_slcan_bitrate_code(400000, &c), GW_ERR_INVAL);
    CHECK_EQ_INT(can_slcan_bitrate_code(2000000, &c), GW_ERR_INVAL);
}

static void test_slcan_parse_valid(void)
{
    struct can_frame_gw f;
    const char *l = "t351845024C044C040000";
    CHECK_EQ_INT(can_slcan_parse_frame(l, strlen(l), &f), GW_OK);
    CHECK_EQ_INT(f.id, 0x351);
    CHECK_EQ_INT(f.dlc, 8);
    CHECK(!f.ext && !f.rtr && !f.err);
    CHECK_EQ_INT(f.data[0], 0x45);
    CHECK_EQ_INT(f.data[3], 0x04);

    l = "t30580000000000000000";
    CHECK_EQ_INT(can_slcan_parse_frame(l, strlen(l), &f), GW_OK);
    CHECK_EQ_INT(f.id, 0x305);

    l = "t3070";
    CHECK_EQ_INT(can_slcan_parse_frame(l, strlen(l), &f), GW_OK);
    CHECK_EQ_INT(f.dlc, 0);

    l = "t1232abcd"; /* lower-case hex accepted */
    CHECK_EQ_INT(can_slcan_parse_frame(l, strlen(l), &f), GW_OK);
    CHECK_EQ_INT(f.data[0], 0xAB);
    CHECK_EQ_INT(f.data[1], 0xCD);
    CHECK_EQ_INT(f.data[2], 0);

    l = "t1232ABCD1F2E"; /* with a Z1 timestamp */
    CHECK_EQ_INT(can_slcan_parse_frame(l, strlen(l), &f), GW_OK);
    CHECK_EQ_INT(f.dlc, 2);

    l = "T1FFFFFFF1AA";
    CHECK_EQ_INT(can_slcan_parse_frame(l, strlen(l), &f), GW_OK);
    CHECK(f.ext);
    CHECK_EQ_INT(f.id, 0x1FFFFFFF);

    l = "r1234";
    CHECK_EQ_INT(can_slcan_parse_frame(l, strlen(l), &f), GW_OK);
    CHECK(f.rtr && !f.ext);
    CHECK_EQ_INT(f.dlc, 4);

    l = "R000001238";
    CHECK_EQ_INT(can_slcan_parse_frame(l, strlen(l), &f), GW_OK);
    CHECK(f.rtr && f.ext);
    CHECK_EQ_INT(f.id, 0x123);

    /* Round trip of every dlc. */
    for (uint8_t dlc = 0; dlc <= 8; dlc++) {
        const uint8_t d[8] = { 1, 2, 3, 4, 5, 6, 7, 0xFF };
        struct can_frame_gw in = std_frame(0x3A5, dlc, d), back;
        char buf[CAN_SLCAN_LINE_MAX];
        int n = can_slcan_encode(&in, buf, sizeof buf);
        CHECK(n > 0);
        CHECK_EQ_INT(can_slcan_parse_frame(buf, (size_t)n - 1, &back), GW_OK);
        CHECK_EQ_INT(back.dlc, dlc);
        CHECK_MEM(back.data, in.data, 8);
    }
}

static void test_slcan_parse_malformed(void)
{
    static const char *const bad[] = {
        "",                       /* empty */
        "x1230",                  /* unknown command */
        "t",                      /* truncated id */
        "t12",                    /* truncated id */
        "t123",                   /* missing dlc */
        "t1239",                  /* dlc 9 */
        "t123A",                  /* dlc not a digit */
        "t12G0",                  /* non-hex id */
        "t8000",                  /* standard id above 0x7FF */
        "t1231",                  /* dlc 1 without data */
        "t1231A",                 /* half a byte */
        "t1231ABC",               /* one nibble too many */
        "t1231AB12",              /* 2 extra digits: neither data nor timestamp */
        "t1231AB1234567",         /* too long for a timestamp */
        "t1231ZZ",                /* non-hex data */
        "t1231AB12G4",            /* non-hex timestamp */
        "T1234567",               /* truncated extended id */
        "T200000000",             /* extended id above 29 bits */
        "T1234567X0",             /* non-hex extended id */
        "r123",                   /* remote without dlc */
        "r1232AB",                /* remote with data */
        "R123456789",             /* remote dlc 9 */
        " t1230",                 /* leading junk */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct can_frame_gw f = { .id = 0xAAA };
        int rc = can_slcan_parse_frame(bad[i], strlen(bad[i]), &f);
        if (rc != GW_ERR_PROTO)
            fprintf(stderr, "accepted malformed line \"%s\"\n", bad[i]);
        CHECK_EQ_INT(rc, GW_ERR_PROTO);
        CHECK_EQ_INT(f.id, 0xAAA); /* untouched */
    }
}

/* Feeds a whole string and collects the events. */
static int feed(struct can_slcan_parser *p, const char *s, size_t n, int *events, size_t max_events,
                struct can_frame_gw *frames)
{
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        struct can_frame_gw f;
        int ev = can_slcan_parser_feed(p, (uint8_t)s[i], &f);
        if (ev != CAN_SLCAN_NONE && (size_t)count < max_events) {
            if (ev == CAN_SLCAN_FRAME && frames)
                frames[count] = f;
            events[count++] = ev;
        }
    }
    return count;
}

static void test_slcan_stream_parser(void)
{
    struct can_slcan_parser p = { 0 };
    int ev[16];
    struct can_frame_gw frames[16];
    const char stream[] = "\r\az\rZ\rt30580000000000000000\r\nV1013\rt1231\rF00\rt3070\r";
    int n = feed(&p, stream, sizeof stream - 1, ev, 16, frames);
    CHECK_EQ_INT(n, 9);
    CHECK_EQ_INT(ev[0], CAN_SLCAN_OK);
    CHECK_EQ_INT(ev[1], CAN_SLCAN_ERROR);
    CHECK_EQ_INT(ev[2], CAN_SLCAN_TX_ACK);
    CHECK_EQ_INT(ev[3], CAN_SLCAN_TX_ACK);
    CHECK_EQ_INT(ev[4], CAN_SLCAN_FRAME);
    CHECK_EQ_INT(frames[4].id, 0x305);
    CHECK_EQ_INT(frames[4].dlc, 8);
    CHECK_EQ_INT(ev[5], CAN_SLCAN_IGNORED); /* version reply: not a frame */
    CHECK_EQ_INT(ev[6], CAN_SLCAN_IGNORED); /* truncated frame */
    CHECK_EQ_INT(ev[7], CAN_SLCAN_IGNORED); /* status flags reply */
    CHECK_EQ_INT(ev[8], CAN_SLCAN_FRAME);
    CHECK_EQ_INT(frames[8].id, 0x307);

    /* An overlong line is dropped as a whole and the next line parses. */
    char longline[200];
    memset(longline, '7', sizeof longline);
    longline[0] = 't';
    n = feed(&p, longline, sizeof longline, ev, 16, frames);
    CHECK_EQ_INT(n, 0);
    n = feed(&p, "\rt3050\r", 7, ev, 16, frames);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ev[0], CAN_SLCAN_OVERLONG);
    CHECK_EQ_INT(ev[1], CAN_SLCAN_FRAME);
    CHECK_EQ_INT(frames[1].id, 0x305);

    /* A line of exactly CAN_SLCAN_LINE_MAX characters is kept (parsed, here ignored), one more
     * is overlong. */
    char edge[CAN_SLCAN_LINE_MAX + 2];
    memset(edge, 'q', sizeof edge);
    edge[CAN_SLCAN_LINE_MAX] = '\r';
    n = feed(&p, edge, CAN_SLCAN_LINE_MAX + 1, ev, 16, NULL);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ev[0], CAN_SLCAN_IGNORED);
    memset(edge, 'q', sizeof edge);
    edge[CAN_SLCAN_LINE_MAX + 1] = '\r';
    n = feed(&p, edge, CAN_SLCAN_LINE_MAX + 2, ev, 16, NULL);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ev[0], CAN_SLCAN_OVERLONG);

    /* A '\a' in the middle of a line ends it: the partial line is dropped. */
    n = feed(&p, "t30\at3050\r", 10, ev, 16, frames);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ev[0], CAN_SLCAN_ERROR);
    CHECK_EQ_INT(ev[1], CAN_SLCAN_FRAME);

    /* Binary junk never crashes and resyncs at the next \r. */
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    for (size_t i = 0; i < sizeof junk; i++) {
        struct can_frame_gw f;
        (void)can_slcan_parser_feed(&p, junk[i], &f);
    }
    n = feed(&p, "\rt3050\r", 7, ev, 16, frames);
    CHECK(n >= 1);
    CHECK_EQ_INT(ev[n - 1], CAN_SLCAN_FRAME);
}

static void test_slcan_parse_arg(void)
{
    char path[64];
    uint32_t baud;
    CHECK_EQ_INT(can_slcan__parse_arg("/dev/ttyACM0", path, sizeof path, &baud), GW_OK);
    CHECK_STR(path, "/dev/ttyACM0");
    CHECK_EQ_INT(baud, 115200);
    CHECK_EQ_INT(can_slcan__parse_arg("/dev/ttyUSB1@500000", path, sizeof path, &baud), GW_OK);
    CHECK_STR(path, "/dev/ttyUSB1");
    CHECK_EQ_INT(baud, 500000);
    CHECK_EQ_INT(can_slcan__parse_arg("", path, sizeof path, &baud), GW_ERR_INVAL);
    CHECK_EQ_INT(can_slcan__parse_arg("@115200", path, sizeof path, &baud), GW_ERR_INVAL);
    CHECK_EQ_INT(can_slcan__parse_arg("/dev/x@", path, sizeof path, &baud), GW_ERR_INVAL);
    CHECK_EQ_INT(can_slcan__parse_arg("/dev/x@12a", path, sizeof path, &baud), GW_ERR_INVAL);
    CHECK_EQ_INT(can_slcan__parse_arg("/dev/x@0", path, sizeof path, &baud), GW_ERR_INVAL);
    CHECK_EQ_INT(can_slcan__parse_arg("/dev/x@99999999999", path, sizeof path, &baud), GW_ERR_INVAL);
    CHECK_EQ_INT(can_slcan__parse_arg("/dev/a-much-too-long-path-for-this", path, 8, &baud), GW_ERR_INVAL);
}

static void test_candump_format(void)
{
    char buf[128];
    const uint8_t d351[8] = { 0x45, 0x02, 0x4c, 0x04, 0x4c, 0x04, 0x00, 0x00 };
    struct can_frame_gw f = std_frame(0x351, 8, d351);
    int n = can_log_format(&f, 1700000000123456LL, "can0", buf, sizeof buf);
    CHECK_STR(buf, "(1700000000.123456) can0 351#45024C044C040000\n");
    CHECK_EQ_INT(n, (int)strlen(buf));

    f = std_frame(0x305, 0, NULL);
    can_log_format(&f, 5000001, "vcan1", buf, sizeof buf);
    CHECK_STR(buf, "(0000000005.000001) vcan1 305#\n");

    f = std_frame(0x1ABCDEF0, 1, (const uint8_t[]){ 0x0F });
    f.ext = true;
    can_log_format(&f, 1700000000000000LL, "can0", buf, sizeof buf);
    CHECK_STR(buf, "(1700000000.000000) can0 1ABCDEF0#0F\n");

    f = std_frame(0x123, 0, NULL);
    f.rtr = true;
    can_log_format(&f, 0, "can0", buf, sizeof buf);
    CHECK_STR(buf, "(0000000000.000000) can0 123#R\n");
    f.dlc = 3;
    can_log_format(&f, 0, "can0", buf, sizeof buf);
    CHECK_STR(buf, "(0000000000.000000) can0 123#R3\n");

    f = std_frame(0x351, 8, d351);
    CHECK_EQ_INT(can_log_format(&f, 0, "can0", buf, 20), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(can_log_format(&f, 0, "can0", buf, 46), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(can_log_format(&f, 0, "can0", buf, 47), 46);
    CHECK_EQ_INT(can_log_format(&f, -1, "can0", buf, sizeof buf), GW_ERR_INVAL);
    CHECK_EQ_INT(can_log_format(&f, 0, "", buf, sizeof buf), GW_ERR_INVAL);
    f.dlc = 9;
    CHECK_EQ_INT(can_log_format(&f, 0, "can0", buf, sizeof buf), GW_ERR_INVAL);
}

static char *read_file(const char *path, char *buf, size_t cap)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    size_t n = fread(buf, 1, cap - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static void test_log_transport(void)
{
    char dir[] = "/tmp/test_can_log_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char spec[200], path[128], buf[1024];
    snprintf(path, sizeof path, "%s/frames.log", dir);
    snprintf(spec, sizeof spec, "log:%s@vcan7", path);
    struct can_transport *t = NULL;
    CHECK_EQ_INT(can_transport_open(spec, 500000, &t), GW_OK);
    if (!t)
        return;
    CHECK_STR(t->ops->name, "log");
    const uint8_t d[2] = { 0x59, 0x00 };
    struct can_frame_gw f = std_frame(0x355, 2, d);
    CHECK_EQ_INT(can_transport_send(t, &f, 0), GW_OK);
    /* Flushed at once: visible before close. */
    CHECK(read_file(path, buf, sizeof buf) != NULL);
    CHECK(strstr(buf, ") vcan7 355#5900\n") != NULL);
    CHECK_EQ_INT(buf[0], '(');
    CHECK_EQ_INT(buf[11], '.');
    CHECK_EQ_INT(buf[18], ')');
    can_transport_close(t); /* bad frames, recv, counters, close: tests/contract */

    /* Default interface name; appends. */
    snprintf(spec, sizeof spec, "log:%s", path);
    CHECK_EQ_INT(can_transport_open(spec, 500000, &t), GW_OK);
    if (t) {
        f.dlc = 1;
        CHECK_EQ_INT(can_transport_send(t, &f, 0), GW_OK);
        can_transport_close(t);
    }
    CHECK(read_file(path, buf, sizeof buf) != NULL);
    CHECK(strstr(buf, ") vcan7 355#5900\n(") != NULL);
    CHECK(strstr(buf, ") can0 355#59\n") != NULL);

    /* A missing directory cannot appear by waiting: refused at once (not "not found", which
     * the publisher retries for ever), and so is a path that is a directory. */
    snprintf(spec, sizeof spec, "log:%s/no/such/dir/x.log", dir);
    CHECK_EQ_INT(can_transport_open(spec, 500000, &t), GW_ERR_INVAL);
    CHECK(t == NULL);
    snprintf(spec, sizeof spec, "log:%s", dir);
    CHECK_EQ_INT(can_transport_open(spec, 500000, &t), GW_ERR_INVAL);
    CHECK(t == NULL);
    /* A regular file in the way of a directory. */
    snprintf(spec, sizeof spec, "log:%s/x.log", path);
    CHECK_EQ_INT(can_transport_open(spec, 500000, &t), GW_ERR_INVAL);
    CHECK(t == NULL);
    /* A FIFO nobody reads yet is worth waiting for (the reader may start later). */
    char fifo[160];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    CHECK_EQ_INT(mkfifo(fifo, 0600), 0);
    snprintf(spec, sizeof spec, "log:%s", fifo);
    CHECK_EQ_INT(can_transport_open(spec, 500000, &t), GW_ERR_NOT_FOUND);
    CHECK(t == NULL);
    unlink(fifo);
    unlink(path);
    rmdir(dir);
}

static void test_factory_specs(void)
{
    struct can_transport *t = (struct can_transport *)1;
    CHECK_EQ_INT(can_transport_open("", 500000, &t), GW_ERR_INVAL);
    CHECK(t == NULL);
    CHECK_EQ_INT(can_transport_open(NULL, 500000, &t), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_open("foo:bar", 500000, &t), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_open("/dev/ttyACM0", 500000, &t), GW_ERR_INVAL); /* needs slcan: */
    CHECK_EQ_INT(can_transport_open("slcan:", 500000, &t), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_open("log:", 500000, &t), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_open("socketcan:", 500000, &t), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_open("slcan:/dev/null", 400000, &t), GW_ERR_INVAL);  /* bitrate */
    CHECK_EQ_INT(can_transport_open("slcan:/dev/null@1234", 500000, &t), GW_ERR_INVAL); /* baud */
    CHECK_EQ_INT(can_transport_open("slcan:/dev/null", 500000, &t), GW_ERR_IO);     /* not a tty */
    CHECK_EQ_INT(can_transport_open("slcan:/dev/does-not-exist", 500000, &t), GW_ERR_NOT_FOUND);
    char longspec[400];
    memset(longspec, 'a', sizeof longspec);
    longspec[sizeof longspec - 1] = '\0';
    CHECK_EQ_INT(can_transport_open(longspec, 500000, &t), GW_ERR_INVAL);
    CHECK(t == NULL);
    can_transport_close(NULL);
}

static void test_socketcan_open_here(void)
{
    /* Without CAN sockets in the kernel (this build machine): a clear UNSUPPORTED; with them,
     * an interface that does not exist is NOT_FOUND. Either way never OK, never a crash. */
    struct can_transport *t = NULL;
    int rc = can_transport_open("can9", 500000, &t);
    CHECK(rc == GW_ERR_UNSUPPORTED || rc == GW_ERR_NOT_FOUND);
    CHECK(t == NULL);
    rc = can_transport_open("vcan9", 500000, &t);
    CHECK(rc == GW_ERR_UNSUPPORTED || rc == GW_ERR_NOT_FOUND);
    rc = can_transport_open("socketcan:gwtestcan9", 500000, &t);
    CHECK(rc == GW_ERR_UNSUPPORTED || rc == GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(can_transport_open("socketcan:bad/name", 500000, &t), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_open("socketcan:waytoolonginterfacename", 500000, &t), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_open("can0", 0, &t), GW_ERR_INVAL);
}

/* "--can nonsense" is a mistake in the spec, whatever the kernel supports: a bare word that is
 * no interface and no CAN interface name is refused as not understood (never retried as an
 * adapter to wait for, never reported as "no CAN sockets"); an interface that exists but is not
 * CAN (lo) is refused too, with the prefix or without. */
static void test_socketcan_spec_not_understood(void)
{
    struct can_transport *t = (struct can_transport *)1;
    CHECK_EQ_INT(can_transport_open("nonsense", 500000, &t), GW_ERR_INVAL);
    CHECK(t == NULL);
    CHECK_EQ_INT(can_transport_open("gwtestcan9", 500000, &t), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_open("lo", 500000, &t), GW_ERR_INVAL);
    CHECK_EQ_INT(can_transport_open("socketcan:lo", 500000, &t), GW_ERR_INVAL);
    CHECK(t == NULL);
    CHECK_EQ_INT(can_socketcan__link_type("lo"), 772);          /* ARPHRD_LOOPBACK */
    CHECK_EQ_INT(can_socketcan__link_type("gwtestcan9"), -1);
    CHECK_EQ_INT(can_socketcan__link_type("../lo"), -1);
}

static void test_socketcan_conversion(void)
{
    const uint8_t d[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    struct can_frame_gw f = std_frame(0x351, 8, d), back;
    struct can_frame lf;
    CHECK_EQ_INT(can_socketcan__to_linux(&f, &lf), GW_OK);
    CHECK_EQ_INT(lf.can_id, 0x351);
    CHECK_EQ_INT(lf.can_dlc, 8);
    CHECK_MEM(lf.data, d, 8);
    CHECK_EQ_INT(can_socketcan__from_linux(&lf, &back), GW_OK);
    CHECK_EQ_INT(back.id, 0x351);
    CHECK(!back.ext && !back.rtr && !back.err);
    CHECK_MEM(back.data, d, 8);

    f = std_frame(0x12345678, 2, d);
    f.ext = true;
    CHECK_EQ_INT(can_socketcan__to_linux(&f, &lf), GW_OK);
    CHECK_EQ_INT(lf.can_id, 0x12345678u | CAN_EFF_FLAG);
    CHECK_EQ_INT(can_socketcan__from_linux(&lf, &back), GW_OK);
    CHECK(back.ext);
    CHECK_EQ_INT(back.id, 0x12345678);
    CHECK_EQ_INT(back.data[2], 0); /* past dlc: zero */

    f = std_frame(0x123, 4, d);
    f.rtr = true;
    CHECK_EQ_INT(can_socketcan__to_linux(&f, &lf), GW_OK);
    CHECK_EQ_INT(lf.can_id, 0x123u | CAN_RTR_FLAG);
    CHECK_EQ_INT(lf.data[0], 0);
    CHECK_EQ_INT(can_socketcan__from_linux(&lf, &back), GW_OK);
    CHECK(back.rtr);
    CHECK_EQ_INT(back.dlc, 4);

    f = std_frame(0x800, 0, NULL);
    CHECK_EQ_INT(can_socketcan__to_linux(&f, &lf), GW_ERR_INVAL);

    /* Error frames: bus-off, restarted. */
    memset(&lf, 0, sizeof lf);
    lf.can_id = CAN_ERR_FLAG | CAN_ERR_BUSOFF;
    lf.can_dlc = CAN_ERR_DLC;
    CHECK_EQ_INT(can_socketcan__from_linux(&lf, &back), GW_OK);
    CHECK(back.err);
    CHECK(can_socketcan__is_bus_off(&back));
    CHECK(!can_socketcan__is_restarted(&back));
    lf.can_id = CAN_ERR_FLAG | CAN_ERR_RESTARTED;
    CHECK_EQ_INT(can_socketcan__from_linux(&lf, &back), GW_OK);
    CHECK(can_socketcan__is_restarted(&back));
    CHECK(!can_socketcan__is_bus_off(&back));
    lf.can_dlc = 9;
    CHECK_EQ_INT(can_socketcan__from_linux(&lf, &back), GW_ERR_INVAL);
    struct can_frame_gw data_frame = std_frame(CAN_ERR_BUSOFF, 0, NULL);
    CHECK(!can_socketcan__is_bus_off(&data_frame)); /* same bits, not an error frame */
}

/* Reads from fd until `want` bytes or 2 s. */
static size_t read_some(int fd, char *buf, size_t want)
{
    size_t got = 0;
    for (int i = 0; i < 200 && got < want; i++) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, 10) <= 0)
            continue;
        ssize_t n = read(fd, buf + got, want - got);
        if (n > 0)
            got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

/* A pty in raw mode with an slcan transport opened on its slave side ("suffix" after the
 * device name, e.g. "@230400"). Returns the transport (NULL on failure, pty closed then). */
static struct can_transport *open_slcan_pty(int *master, int *slave, const char *suffix, uint32_t bitrate)
{
    char name[64];
    CHECK_EQ_INT(openpty(master, slave, name, NULL, NULL), 0);
    struct termios tio;
    tcgetattr(*master, &tio);
    cfmakeraw(&tio);
    tcsetattr(*master, TCSANOW, &tio);
    char spec[96];
    snprintf(spec, sizeof spec, "slcan:%s%s", name, suffix);
    struct can_transport *t = NULL;
    CHECK_EQ_INT(can_transport_open(spec, bitrate, &t), GW_OK);
    if (!t) {
        close(*master);
        close(*slave);
    }
    return t;
}

static void test_slcan_over_pty(void)
{
    int master, slave;
    struct can_transport *t = open_slcan_pty(&master, &slave, "@230400", 250000);
    if (!t)
        return;
    char buf[256];
    size_t want = strlen("C\rS5\rO\r");
    CHECK_EQ_INT(read_some(master, buf, want), want);
    CHECK_STR(buf, "C\rS5\rO\r");

    const uint8_t d[3] = { 0xDE, 0xAD, 0x01 };
    struct can_frame_gw f = std_frame(0x356, 3, d);
    CHECK_EQ_INT(can_transport_send(t, &f, 500), GW_OK);
    CHECK_EQ_INT(read_some(master, buf, 12), 12);
    CHECK_STR(buf, "t3563DEAD01\r");

    /* The adapter side: replies, junk, a frame. */
    const char in[] = "\rz\r\aV1234\rt1231\rxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r"
                      "t30580000000000000000\r";
    CHECK_EQ_INT(write(master, in, sizeof in - 1), (ssize_t)(sizeof in - 1));
    struct can_frame_gw r;
    CHECK_EQ_INT(can_transport_recv(t, &r, 2000), GW_OK);
    CHECK_EQ_INT(r.id, 0x305);
    CHECK_EQ_INT(r.dlc, 8);
    CHECK_EQ_INT(can_transport_recv(t, &r, 20), GW_ERR_TIMEOUT);
    struct can_transport_stats st;
    can_transport_get_stats(t, &st);
    CHECK_EQ_INT(st.tx_ok, 1);
    CHECK_EQ_INT(st.rx, 1);
    CHECK_EQ_INT(st.tx_acks, 1);
    CHECK_EQ_INT(st.bus_errors, 1);
    CHECK_EQ_INT(st.rx_ignored, 2);
    CHECK_EQ_INT(st.rx_overlong, 1);

    /* A frame split over several writes. */
    CHECK_EQ_INT(write(master, "t30", 3), 3);
    CHECK_EQ_INT(can_transport_recv(t, &r, 20), GW_ERR_TIMEOUT);
    CHECK_EQ_INT(write(master, "70\r", 3), 3);
    CHECK_EQ_INT(can_transport_recv(t, &r, 2000), GW_OK);
    CHECK_EQ_INT(r.id, 0x307);
    /* Bad frames, timeouts, a full tty, hang-up, counters and close: tests/contract. */
    can_transport_close(t);
    close(master);
    close(slave);
}

/* Regression: an adapter that keeps sending bytes which never make a frame (wrong serial baud
 * rate, line noise) kept slcan recv reading for ever: it only looked at its deadline when the
 * tty was idle, so the CAN publisher's RX thread could not stop. A clock that jumps 1 s per
 * reading (fake_clock_set_step_ms) stands in for "the junk keeps coming after the deadline": recv must give up after
 * the first chunk instead of draining everything that is there. */
static void test_slcan_recv_times_out_under_junk(void)
{
    int master, slave;
    struct can_transport *t = open_slcan_pty(&master, &slave, "", 500000);
    if (!t)
        return;
    char junk[3000];
    for (size_t i = 0; i < sizeof junk; i += 5)
        memcpy(junk + i, "junk\r", 5); /* 600 lines that are no frame */
    CHECK_EQ_INT(write(master, junk, sizeof junk), (ssize_t)sizeof junk);
    char sink[64];
    read_some(master, sink, 7); /* the open sequence */
    /* All of it on the reader side before the clock starts running: recv must meet it there. */
    int pending = 0;
    WAIT_UNTIL(ioctl(slave, FIONREAD, &pending) == 0 && pending >= (int)sizeof junk, 10000);

    fake_clock_set_step_ms(1000);
    struct can_frame_gw r;
    int rc = can_transport_recv(t, &r, 50);
    fake_clock_use_real();
    CHECK_EQ_INT(rc, GW_ERR_TIMEOUT);
    struct can_transport_stats st;
    can_transport_get_stats(t, &st);
    CHECK(st.rx_ignored > 0);
    CHECK(st.rx_ignored < 600); /* stopped at the deadline, not at the end of the junk */
    can_transport_close(t);
    close(master);
    close(slave);
}

TEST_MAIN(TEST_CASE(test_slcan_encode), TEST_CASE(test_slcan_recv_times_out_under_junk), TEST_CASE(test_slcan_bitrate_codes), TEST_CASE(test_slcan_parse_valid),
          TEST_CASE(test_slcan_parse_malformed), TEST_CASE(test_slcan_stream_parser),
          TEST_CASE(test_slcan_parse_arg), TEST_CASE(test_candump_format), TEST_CASE(test_log_transport),
          TEST_CASE(test_factory_specs), TEST_CASE(test_socketcan_open_here),
          TEST_CASE(test_socketcan_spec_not_understood),
          TEST_CASE(test_socketcan_conversion), TEST_CASE(test_slcan_over_pty))
