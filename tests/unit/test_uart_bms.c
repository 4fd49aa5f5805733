/* uart_bms against a scripted fake serial port: the protocol rules (wake-up resend, timeouts,
 * NACK fallbacks), device loss and reopen, commands, listeners and the frame tap. */
#define _POSIX_C_SOURCE 200809L
#include "app_events.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "support/wait.h"
#include "test.h"
#include "tinybms.h"
#include "uart_bms.h"
#include "uart_bms_internal.h"
#include "watchdog.h"
#include "fake_clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---------------------------------------------------------------- fake TinyBMS behind serial_ops */

struct fake {
    pthread_mutex_t lock;
    uint16_t regs[600];
    uint8_t out[1024];
    size_t out_len;
    bool absent;            /* open fails */
    bool silent;            /* never answers */
    bool sleeping;          /* ignores the next request (wake-up) */
    bool vanish;            /* next read reports the device gone */
    bool vanish_always;     /* opens, then every read reports the device gone */
    bool nack_live_block;   /* old firmware: NACK a block containing register 45 */
    bool corrupt_next;      /* flip a byte of the next answer */
    bool false_start_next;  /* noise announcing a 255-byte frame before the next answer */
    bool nack_crc_next;     /* the next request arrives corrupted: NACK "CRC error" (0x01) */
    bool junk;              /* answers every request with bytes that never make a frame */
    bool split_next;        /* the next answer's second half comes after the line went idle */
    bool nack_all;          /* a BMS refusing everything: every request answered NACK 0x00 */
    uint8_t tail[512];
    size_t tail_len;
    int tail_idle_reads;    /* empty reads since the head went out */
    int opens;
    int requests;
};

static struct fake F = { .lock = PTHREAD_MUTEX_INITIALIZER };
struct serial_port {
    int dummy;
};
static struct serial_port the_port;

static void put_frame(const uint8_t *frame, size_t len)
{
    if (F.split_next && len >= 2 && len - len / 2 <= sizeof F.tail) {
        /* The head now, the tail held back until the gateway has seen the line idle (an empty
         * read with a partial frame buffered is its idle gap) and read it idle once more. */
        F.split_next = false;
        memcpy(F.tail, frame + len / 2, len - len / 2);
        F.tail_len = len - len / 2;
        F.tail_idle_reads = 0;
        len /= 2;
    }
    if (F.out_len + len <= sizeof F.out) {
        memcpy(F.out + F.out_len, frame, len);
        F.out_len += len;
    }
}

static void answer_crc(uint8_t *frame, size_t len_without_crc)
{
    uint16_t crc = tinybms_crc16(frame, len_without_crc);
    frame[len_without_crc] = (uint8_t)(crc & 0xFF);
    frame[len_without_crc + 1] = (uint8_t)(crc >> 8);
    put_frame(frame, len_without_crc + 2);
}

static void answer_nack(uint8_t cmd)
{
    uint8_t f[8] = { 0xAA, 0x00, cmd, 0x00 };
    answer_crc(f, 4);
}

static int fake_open(const char *path, uint32_t baud, struct serial_port **out)
{
    (void)path;
    (void)baud;
    pthread_mutex_lock(&F.lock);
    bool absent = F.absent;
    if (!absent)
        F.opens++;
    pthread_mutex_unlock(&F.lock);
    if (absent)
        return GW_ERR_NOT_FOUND;
    *out = &the_port;
    return GW_OK;
}

static int fake_write(struct serial_port *p, const uint8_t *buf, size_t len, uint32_t timeout_ms)
{
    (void)p;
    (void)timeout_ms;
    struct tinybms_request req;
    if (tinybms_decode_request(buf, len, &req) <= 0)
        return GW_OK;
    pthread_mutex_lock(&F.lock);
    F.requests++;
    if (F.silent || F.sleeping) {
        F.sleeping = false;
        pthread_mutex_unlock(&F.lock);
        return GW_OK;
    }
    if (F.junk) { /* a wrong baud rate or a broadcasting BMS: bytes, never a frame */
        static const uint8_t junk[] = { 0x55, 0x12, 0x34, 0xF0, 0x0D };
        put_frame(junk, sizeof junk);
        pthread_mutex_unlock(&F.lock);
        return GW_OK;
    }
    uint8_t f[300];
    if (F.nack_crc_next) {
        uint8_t n[8] = { 0xAA, 0x00, req.cmd, 0x01 };
        answer_crc(n, 4);
        F.nack_crc_next = false;
        pthread_mutex_unlock(&F.lock);
        return GW_OK;
    }
    if (F.nack_all) {
        answer_nack(req.cmd);
        pthread_mutex_unlock(&F.lock);
        return GW_OK;
    }
    if (F.false_start_next) {
        static const uint8_t noise[] = { 0xAA, 0x03, 0xFA };
        put_frame(noise, sizeof noise);
        F.false_start_next = false;
    }
    if (req.cmd == TINYBMS_CMD_READ_MODBUS) {
        if (F.nack_live_block && req.addr <= 45 && req.addr + req.count > 45) {
            answer_nack(req.cmd);
        } else {
            f[0] = 0xAA;
            f[1] = 0x03;
            f[2] = (uint8_t)(req.count * 2);
            for (unsigned i = 0; i < req.count; i++) {
                f[3 + 2 * i] = (uint8_t)(F.regs[req.addr + i] >> 8);
                f[4 + 2 * i] = (uint8_t)F.regs[req.addr + i];
            }
            answer_crc(f, 3 + 2u * req.count);
        }
    } else if (req.cmd == TINYBMS_CMD_WRITE_MODBUS) {
        for (unsigned i = 0; i < req.count; i++)
            F.regs[req.addr + i] = req.values[i];
        uint8_t a[8] = { 0xAA, 0x10, (uint8_t)(req.addr >> 8), (uint8_t)req.addr, 0, req.count };
        answer_crc(a, 6);
    } else if (req.cmd == TINYBMS_CMD_RESET) {
        uint8_t a[8] = { 0xAA, 0x01, 0x02 };
        answer_crc(a, 3);
    } else {
        answer_nack(req.cmd); /* 0x1D and the rest: like a firmware without them */
    }
    if (F.corrupt_next && F.out_len > 4) {
        F.out[F.out_len - 3] ^= 0x55;
        F.corrupt_next = false;
    }
    pthread_mutex_unlock(&F.lock);
    return GW_OK;
}

static int fake_read(struct serial_port *p, uint8_t *buf, size_t cap, uint32_t timeout_ms, size_t *got)
{
    (void)p;
    *got = 0;
    pthread_mutex_lock(&F.lock);
    if (F.vanish || F.vanish_always) {
        F.vanish = false;
        pthread_mutex_unlock(&F.lock);
        return GW_ERR_CLOSED;
    }
    if (F.out_len == 0 && F.tail_len && ++F.tail_idle_reads >= 3) {
        memcpy(F.out, F.tail, F.tail_len);
        F.out_len = F.tail_len;
        F.tail_len = 0;
    }
    size_t n = F.out_len < cap ? F.out_len : cap;
    memcpy(buf, F.out, n);
    memmove(F.out, F.out + n, F.out_len - n);
    F.out_len -= n;
    pthread_mutex_unlock(&F.lock);
    *got = n;
    if (n == 0)
        gw_sleep_ms(timeout_ms < 5 ? timeout_ms : 5);
    return GW_OK;
}

static void fake_discard(struct serial_port *p)
{
    (void)p;
    pthread_mutex_lock(&F.lock);
    F.out_len = 0;
    pthread_mutex_unlock(&F.lock);
}

static void fake_close(struct serial_port *p) { (void)p; }

static const struct serial_ops fake_ops = { fake_open, fake_write, fake_read, fake_discard, fake_close };

static void set_f32(uint16_t reg, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    F.regs[reg] = (uint16_t)u;
    F.regs[reg + 1] = (uint16_t)(u >> 16);
}

/* The fake BMS stops answering (true) or answers again (false). */
static void fake_set_silent(bool silent)
{
    pthread_mutex_lock(&F.lock);
    F.silent = silent;
    pthread_mutex_unlock(&F.lock);
}

static void fake_reset(void)
{
    pthread_mutex_lock(&F.lock);
    memset(F.regs, 0, sizeof F.regs);
    F.out_len = 0;
    F.absent = F.silent = F.sleeping = F.vanish = F.vanish_always = F.nack_live_block = F.corrupt_next = F.false_start_next = F.nack_crc_next = F.junk = false;
    F.split_next = F.nack_all = false;
    F.tail_len = 0;
    F.opens = F.requests = 0;
    /* A 14-cell pack like the public dump: registers 2..15 hold cells. */
    for (int i = 2; i < 16; i++)
        F.regs[i] = (uint16_t)(33000 + i * 10);
    F.regs[53] = 14;
    set_f32(36, 46.4f);
    set_f32(38, -12.5f);
    F.regs[40] = 3302;
    F.regs[41] = 3315;
    F.regs[42] = 215;
    F.regs[43] = (uint16_t)(int16_t)-32768;
    F.regs[45] = 49000;
    uint32_t soc = 85500000;
    F.regs[46] = (uint16_t)soc;
    F.regs[47] = (uint16_t)(soc >> 16);
    F.regs[48] = 262;
    F.regs[50] = 0x93;
    F.regs[300] = 3650;
    F.regs[315] = 3650;
    F.regs[316] = 2800;
    F.regs[500] = 0x0102;
    F.regs[501] = 0x0086;
    pthread_mutex_unlock(&F.lock);
}

/* ---------------------------------------------------------------- event capture */

struct capture {
    pthread_mutex_t lock;
    int samples, lost, restored;
    struct bms_live_data last;
};

static void on_event(const struct gw_event *ev, void *ctx)
{
    struct capture *c = ctx;
    pthread_mutex_lock(&c->lock);
    if (ev->id == EVENT_BMS_DATA_UPDATE) {
        c->samples++;
        memcpy(&c->last, ev->payload, sizeof c->last);
    } else if (ev->id == EVENT_BMS_COMM_LOST) {
        c->lost++;
    } else if (ev->id == EVENT_BMS_COMM_RESTORED) {
        c->restored++;
    }
    pthread_mutex_unlock(&c->lock);
}

static int read_count(struct capture *c, int *field)
{
    pthread_mutex_lock(&c->lock);
    int v = *field;
    pthread_mutex_unlock(&c->lock);
    return v;
}

/* Waits up to 10 s (generous: loaded machines) for *field to reach at least target. */
static bool wait_count(struct capture *c, int *field, int target)
{
    bool ok;
    WAIT_FOR(ok, read_count(c, field) >= target, 10000);
    return ok;
}

struct fixture {
    struct event_bus *bus;
    struct uart_bms *ub;
    struct capture cap;
};

static bool log_frames_option; /* uart_bms_options.log_frames of the next start */
static struct watchdog_client *watchdog_option; /* uart_bms_options.watchdog of the next start */

/* bus_cfg: NULL for the bus defaults. */
static void start_on_bus(struct fixture *fx, uint32_t poll_ms, uint32_t comm_timeout_ms,
                         const struct event_bus_config *bus_cfg)
{
    memset(fx, 0, sizeof *fx);
    pthread_mutex_init(&fx->cap.lock, NULL);
    CHECK_EQ_INT(event_bus_create(bus_cfg, &fx->bus), GW_OK);
    for (int id = EVENT_BMS_DATA_UPDATE; id <= EVENT_BMS_COMM_RESTORED; id++)
        event_bus_subscribe(fx->bus, id, on_event, &fx->cap, "test");
    struct uart_bms_options o;
    uart_bms_default_options(&o);
    snprintf(o.device, sizeof o.device, "/dev/fake");
    o.poll_interval_ms = poll_ms;
    o.comm_timeout_ms = comm_timeout_ms;
    o.reply_timeout_ms = 60;
    o.bus = fx->bus;
    o.serial = &fake_ops;
    o.log_frames = log_frames_option;
    o.watchdog = watchdog_option;
    CHECK_EQ_INT(uart_bms_create(&o, &fx->ub), GW_OK);
    CHECK_EQ_INT(uart_bms_start(fx->ub), GW_OK);
}

static void start(struct fixture *fx, uint32_t poll_ms, uint32_t comm_timeout_ms)
{
    start_on_bus(fx, poll_ms, comm_timeout_ms, NULL);
}

static void finish(struct fixture *fx)
{
    uart_bms_destroy(fx->ub);
    event_bus_destroy(fx->bus);
    pthread_mutex_destroy(&fx->cap.lock);
}

/* ---------------------------------------------------------------- tests */

static void test_sample_decoded_and_published(void)
{
    fake_reset();
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 2));
    struct bms_live_data d;
    CHECK_EQ_INT(uart_bms_get_latest(fx.ub, &d), GW_OK);
    CHECK_EQ_INT(d.cell_count, 14);
    CHECK_NEAR(d.pack_voltage_v, 46.4, 1e-4);
    CHECK_NEAR(d.pack_current_a, -12.5, 1e-4);
    CHECK_NEAR(bms_soc_percent(&d), 85.5, 1e-3);
    CHECK(d.soh_valid);
    CHECK(d.temp_present[BMS_TEMP_EXT1]);
    CHECK(!d.temp_present[BMS_TEMP_EXT2]);
    CHECK_EQ_INT(d.min_cell_index, 1);
    CHECK_EQ_INT(d.max_cell_index, 14);
    CHECK(d.timestamp_ms > 0 && d.wall_time_ms > 0);
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK(st.device_open);
    CHECK(st.comm_ok);
    CHECK_EQ_INT(st.timeouts, 0);
    finish(&fx);
}

static void test_sleeping_bms_gets_one_resend(void)
{
    fake_reset();
    F.sleeping = true;
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK_EQ_INT(st.resends, 1);
    CHECK_EQ_INT(st.timeouts, 0);
    finish(&fx);
}

static void test_silence_raises_comm_lost_then_restored(void)
{
    fake_reset();
    struct fixture fx;
    start(&fx, 100, 400);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    fake_set_silent(true);
    CHECK(wait_count(&fx.cap, &fx.cap.lost, 1));
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK(st.timeouts >= 1);
    CHECK(!st.comm_ok);
    int before = read_count(&fx.cap, &fx.cap.samples);
    fake_set_silent(false);
    CHECK(wait_count(&fx.cap, &fx.cap.restored, 1));
    CHECK(wait_count(&fx.cap, &fx.cap.samples, before + 1));
    CHECK_EQ_INT(read_count(&fx.cap, &fx.cap.lost), 1); /* reported once, not per poll */
    finish(&fx);
}

/* After a loss, a BMS answering with an impossible value (cell at 6.5535 V, valid CRC) has not
 * recovered: its samples are published (the battery service refuses them), the loss goes on;
 * the first plausible sample ends it. */
static void test_restored_only_by_a_proving_sample(void)
{
    fake_reset();
    struct fixture fx;
    start(&fx, 100, 400);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    fake_set_silent(true);
    CHECK(wait_count(&fx.cap, &fx.cap.lost, 1));
    int before = read_count(&fx.cap, &fx.cap.samples);
    pthread_mutex_lock(&F.lock);
    F.regs[2] = 0xFFFF;
    F.silent = false;
    pthread_mutex_unlock(&F.lock);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, before + 3));
    CHECK_EQ_INT(read_count(&fx.cap, &fx.cap.restored), 0);
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK(!st.comm_ok);
    pthread_mutex_lock(&F.lock);
    F.regs[2] = 33020;
    pthread_mutex_unlock(&F.lock);
    CHECK(wait_count(&fx.cap, &fx.cap.restored, 1));
    uart_bms_get_stats(fx.ub, &st);
    CHECK(st.comm_ok);
    finish(&fx);
}

static void test_device_vanishes_and_is_reopened(void)
{
    fake_reset();
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    pthread_mutex_lock(&F.lock);
    F.vanish = true;
    pthread_mutex_unlock(&F.lock);
    int before = read_count(&fx.cap, &fx.cap.samples);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, before + 2));
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK_EQ_INT(st.reopens, 1);
    pthread_mutex_lock(&F.lock);
    CHECK_EQ_INT(F.opens, 2);
    pthread_mutex_unlock(&F.lock);
    finish(&fx);
}

static void test_absent_device_retries_without_crashing(void)
{
    fake_reset();
    F.absent = true;
    struct fixture fx;
    start(&fx, 100, 300);
    CHECK(wait_count(&fx.cap, &fx.cap.lost, 1));
    CHECK_EQ_INT(uart_bms_write_setting(fx.ub, 300, 3600, 2000), GW_ERR_CLOSED);
    pthread_mutex_lock(&F.lock);
    F.absent = false;
    pthread_mutex_unlock(&F.lock);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1)); /* within the 0.5..1 s backoff */
    finish(&fx);
}

static void test_crc_error_counted_and_retried(void)
{
    fake_reset();
    F.corrupt_next = true;
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK_EQ_INT(st.crc_errors, 1);
    CHECK_EQ_INT(st.timeouts, 0);
    finish(&fx);
}

/* Noise that looks like the start of a long frame ("AA 03 FA": 255 bytes announced) must not
 * swallow the real answer right behind it: no resend, no timeout. */
static void test_false_frame_start_does_not_hide_the_answer(void)
{
    fake_reset();
    F.false_start_next = true;
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK_EQ_INT(st.resends, 0);
    CHECK_EQ_INT(st.timeouts, 0);
    CHECK(st.garbage_bytes >= 3);
    finish(&fx);
}

/* An answer whose tail comes after the idle gap (a USB adapter's latency timer): the head the
 * gap dropped as a false start is found again with the tail, no resend, no timeout. */
static void test_late_tail_after_the_idle_gap(void)
{
    fake_reset();
    F.split_next = true;
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK_EQ_INT(st.resends, 0);
    CHECK_EQ_INT(st.timeouts, 0);
    CHECK_EQ_INT(st.garbage_bytes, 0);
    pthread_mutex_lock(&F.lock);
    CHECK_EQ_INT(F.tail_len, 0); /* the tail went out: the sample came with it */
    pthread_mutex_unlock(&F.lock);
    finish(&fx);
}

static void test_old_firmware_block_nack_falls_back(void)
{
    fake_reset();
    F.nack_live_block = true;
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 2));
    struct bms_live_data d;
    CHECK_EQ_INT(uart_bms_get_latest(fx.ub, &d), GW_OK);
    CHECK(!d.soh_valid);
    CHECK_NEAR(d.pack_voltage_v, 46.4, 1e-4);
    CHECK_EQ_INT(d.cell_count, 14);
    finish(&fx);
}

static void test_write_setting_validates_and_reads_back(void)
{
    fake_reset();
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    CHECK_EQ_INT(uart_bms_write_setting(fx.ub, 315, 3600, 3000), GW_OK);
    pthread_mutex_lock(&F.lock);
    CHECK_EQ_INT(F.regs[315], 3600);
    int requests = F.requests;
    pthread_mutex_unlock(&F.lock);
    struct bms_settings cur;
    uart_bms_get_settings(fx.ub, &cur, NULL, NULL);
    CHECK_EQ_INT(cur.raw[315 - 300], 3600);
    /* Out of the documented range (1200..4500 mV), outside 300..399, undocumented: refused
     * before anything is sent. */
    CHECK_EQ_INT(uart_bms_write_setting(fx.ub, 315, 5000, 3000), GW_ERR_RANGE);
    CHECK_EQ_INT(uart_bms_write_setting(fx.ub, 200, 1, 3000), GW_ERR_RANGE);
    CHECK_EQ_INT(uart_bms_write_setting(fx.ub, 400, 1, 3000), GW_ERR_RANGE);
    pthread_mutex_lock(&F.lock);
    F.regs[0] = 0;
    CHECK(F.requests - requests < 20); /* only the live polls of that second */
    pthread_mutex_unlock(&F.lock);
    finish(&fx);
}

static void test_restart_guard(void)
{
    fake_reset();
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    CHECK_EQ_INT(uart_bms_restart_bms(fx.ub, 3000), GW_OK);
    CHECK_EQ_INT(uart_bms_restart_bms(fx.ub, 3000), GW_ERR_BUSY);
    CHECK_EQ_INT(uart_bms_clear_events(fx.ub, 3000), GW_OK);
    CHECK_EQ_INT(uart_bms_clear_statistics(fx.ub, 3000), GW_OK);
    finish(&fx);
}

static void listener(const struct bms_live_data *s, void *ctx)
{
    (void)s;
    (*(int *)ctx)++;
}

static void test_listener_slots_bounded(void)
{
    fake_reset();
    struct fixture fx;
    start(&fx, 100, 30000);
    static int counters[UART_BMS_MAX_LISTENERS + 1];
    for (int i = 0; i < UART_BMS_MAX_LISTENERS; i++)
        CHECK_EQ_INT(uart_bms_add_listener(fx.ub, listener, &counters[i]), GW_OK);
    CHECK_EQ_INT(uart_bms_add_listener(fx.ub, listener, &counters[UART_BMS_MAX_LISTENERS]), GW_ERR_FULL);
    int before = read_count(&fx.cap, &fx.cap.samples);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, before + 2));
    uart_bms_stop(fx.ub);
    CHECK(counters[0] >= 1);
    CHECK_EQ_INT(counters[UART_BMS_MAX_LISTENERS], 0);
    finish(&fx);
}

static void test_tap_records_both_directions(void)
{
    fake_reset();
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    uart_bms_stop(fx.ub);
    static struct uart_bms_tap_entry entries[UART_BMS_TAP_FRAMES];
    uint64_t last = 0;
    size_t n = uart_bms_tap_read(fx.ub, 0, entries, UART_BMS_TAP_FRAMES, &last);
    CHECK(n >= 2);
    bool saw_tx = false, saw_rx = false;
    for (size_t i = 0; i < n; i++) {
        if (entries[i].tx && entries[i].data[1] == 0x03 && entries[i].len == 8)
            saw_tx = true;
        if (!entries[i].tx && entries[i].data[1] == 0x03 && entries[i].len == 5 + 112)
            saw_rx = true;
        CHECK(entries[i].meaning[0] != '\0');
    }
    CHECK(saw_tx);
    CHECK(saw_rx);
    CHECK_EQ_INT(uart_bms_tap_read(fx.ub, last, entries, UART_BMS_TAP_FRAMES, &last), 0);
    finish(&fx);
}

/* A NACK "CRC error" means our request was corrupted on the wire: resent like a corrupted
 * answer, never taken for old firmware refusing the 0..55 block (which would drop SOH for good). */
static void test_nack_crc_error_is_resent_not_a_firmware_refusal(void)
{
    fake_reset();
    F.nack_crc_next = true;
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 2));
    struct bms_live_data d;
    CHECK_EQ_INT(uart_bms_get_latest(fx.ub, &d), GW_OK);
    CHECK(d.soh_valid);
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK_EQ_INT(st.crc_errors, 1);
    CHECK_EQ_INT(st.nacks, 0);
    CHECK_EQ_INT(st.timeouts, 0);
    finish(&fx);
}

/* A restart that never reached the BMS (no device) must not block the retry for 60 s. */
static void test_restart_guard_not_taken_by_an_unsent_restart(void)
{
    fake_reset();
    F.absent = true;
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK_EQ_INT(uart_bms_restart_bms(fx.ub, 3000), GW_ERR_CLOSED);
    pthread_mutex_lock(&F.lock);
    F.absent = false;
    pthread_mutex_unlock(&F.lock);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    CHECK_EQ_INT(uart_bms_restart_bms(fx.ub, 3000), GW_OK);
    CHECK_EQ_INT(uart_bms_restart_bms(fx.ub, 3000), GW_ERR_BUSY); /* this one did restart it */
    finish(&fx);
}

/* A shorter poll interval applies from the last read, not after the old interval: from 10 s to
 * 100 ms, three more samples come long before the 10 s the old schedule would wait. */
static void test_shorter_poll_interval_applies_at_once(void)
{
    fake_reset();
    struct fixture fx;
    start(&fx, 10000, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    int before = read_count(&fx.cap, &fx.cap.samples);
    CHECK_EQ_INT(uart_bms_set_poll_interval_ms(fx.ub, 100), GW_OK);
    uint64_t deadline = gw_real_ms() + 5000; /* half the old interval; the new one needs 0.3 s */
    while (read_count(&fx.cap, &fx.cap.samples) < before + 3 && gw_real_ms() < deadline)
        gw_sleep_ms(5);
    CHECK(read_count(&fx.cap, &fx.cap.samples) >= before + 3);
    finish(&fx);
}

struct toggler {
    struct uart_bms *ub;
    atomic_bool stop;
};

static void *toggle_settings(void *arg)
{
    struct toggler *t = arg;
    for (unsigned i = 0; !atomic_load(&t->stop); i++) {
        uart_bms_set_cell_order(t->ub, (uint8_t)(i % 2 ? BMS_CELL_ORDER_REVERSED : BMS_CELL_ORDER_DOCUMENTED));
        uart_bms_set_comm_timeout_ms(t->ub, 30000 + i % 2);
    }
    return NULL;
}

/* Settings changed from another thread while the poller decodes (a data race before: the cell
 * order was read without the lock; ThreadSanitizer reports it). */
static void test_settings_change_while_polling(void)
{
    fake_reset();
    struct fixture fx;
    start(&fx, 100, 30000);
    struct toggler t = { .ub = fx.ub };
    atomic_init(&t.stop, false);
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, toggle_settings, &t), 0);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 5));
    atomic_store(&t.stop, true);
    pthread_join(th, NULL);
    struct bms_live_data d;
    CHECK_EQ_INT(uart_bms_get_latest(fx.ub, &d), GW_OK);
    CHECK_EQ_INT(d.cell_count, 14);
    finish(&fx);
}

struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool closed;
};

/* Holds the dispatcher while the gate is closed: the bus fills up behind it. */
static void gate_handler(const struct gw_event *ev, void *ctx)
{
    (void)ev;
    struct gate *g = ctx;
    pthread_mutex_lock(&g->lock);
    while (g->closed)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static bool stats_hold(struct uart_bms *ub, bool (*cond)(const struct uart_bms_stats *))
{
    struct uart_bms_stats st;
    uart_bms_get_stats(ub, &st);
    return cond(&st);
}

static bool wait_stats(struct uart_bms *ub, bool (*cond)(const struct uart_bms_stats *))
{
    bool ok;
    WAIT_FOR(ok, stats_hold(ub, cond), 10000);
    return ok;
}

static bool timed_out(const struct uart_bms_stats *st) { return st->timeouts >= 1; }
static bool comm_down(const struct uart_bms_stats *st) { return !st->comm_ok; }

/* COMM_LOST published while the bus is full (a slow subscriber) is delivered once the bus has
 * room again, exactly once: before, it was dropped and the loss was never announced. */
static void test_comm_lost_survives_a_full_bus(void)
{
    fake_reset();
    struct fixture fx;
    struct event_bus_config bc = { .queue_size = 2 };
    start_on_bus(&fx, 100, 1500, &bc);
    struct gate g = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .closed = true };
    CHECK_EQ_INT(event_bus_subscribe(fx.bus, EVENT_CONFIG_UPDATED, gate_handler, &g, "gate"), GW_OK);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));

    fake_set_silent(true);
    CHECK(wait_stats(fx.ub, timed_out)); /* no sample is on its way any more */
    CHECK(event_bus_flush(fx.bus, 5000) == GW_OK);
    /* Block the dispatcher, then fill the queue behind it. */
    CHECK(event_bus_publish(fx.bus, EVENT_CONFIG_UPDATED, NULL, 0, 1000) == GW_OK);
    CHECK(event_bus_publish(fx.bus, EVENT_CONFIG_UPDATED, NULL, 0, 5000) == GW_OK);
    CHECK(event_bus_publish(fx.bus, EVENT_CONFIG_UPDATED, NULL, 0, 5000) == GW_OK);
    struct event_bus_stats bs;
    event_bus_get_stats(fx.bus, &bs);
    uint64_t dropped_before = bs.dropped;
    CHECK(wait_stats(fx.ub, comm_down));
    uint64_t deadline = gw_real_ms() + 10000; /* the LOST publish times out on the full bus */
    do {
        event_bus_get_stats(fx.bus, &bs);
        if (bs.dropped > dropped_before)
            break;
        gw_sleep_ms(5);
    } while (gw_real_ms() < deadline);
    CHECK(bs.dropped > dropped_before);
    CHECK_EQ_INT(read_count(&fx.cap, &fx.cap.lost), 0);

    pthread_mutex_lock(&g.lock);
    g.closed = false;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    CHECK(wait_count(&fx.cap, &fx.cap.lost, 1));
    fake_set_silent(false);
    CHECK(wait_count(&fx.cap, &fx.cap.restored, 1));
    CHECK_EQ_INT(read_count(&fx.cap, &fx.cap.lost), 1);
    finish(&fx);
}

/* ---------------------------------------------------------------- the step, without threads */

#define NEVER_MS UINT64_MAX

/* One decision: checks the action (and the deadline of a WAIT). */
static struct uart_bms__decision expect(struct uart_bms__sched *s, const struct uart_bms__inputs *in,
                                        enum uart_bms__action action, uint64_t deadline, int line)
{
    struct uart_bms__decision d = uart_bms__decide(s, in);
    if (d.action != action || (action == UART_BMS__WAIT && d.deadline_ms != deadline))
        fprintf(stderr, "line %d: action %d deadline %llu\n", line, (int)d.action, (unsigned long long)d.deadline_ms);
    CHECK_EQ_INT(d.action, action);
    if (action == UART_BMS__WAIT)
        CHECK_EQ_INT(d.deadline_ms, deadline);
    return d;
}
#define EXPECT(action, deadline) expect(&s, &in, (action), (deadline), __LINE__)

/* Open with backoff 0.5, 1, 2, 4 ... 30 s while the device is absent; the first live read at
 * once when it opens; one slow item after each good read while the budget allows; the slow
 * round again after slow_poll_interval_s. */
static void test_step_open_poll_slow(void)
{
    struct uart_bms__sched s;
    uart_bms__sched_init(&s, 1000, 1000);
    struct uart_bms__inputs in = { .now_ms = 1000, .poll_interval_ms = 1000, .comm_timeout_ms = 600000,
                                   .last_cycle_ms = 40 };
    EXPECT(UART_BMS__OPEN, 0);
    uart_bms__open_failed(&s, in.now_ms);
    EXPECT(UART_BMS__WAIT, 1500);
    static const uint64_t backoff[] = { 1000, 2000, 4000, 8000, 16000, 30000, 30000 };
    uint64_t t = 1500;
    for (size_t i = 0; i < sizeof backoff / sizeof backoff[0]; i++) {
        in.now_ms = t;
        EXPECT(UART_BMS__OPEN, 0);
        uart_bms__open_failed(&s, t);
        EXPECT(UART_BMS__WAIT, t + backoff[i]);
        t += backoff[i];
    }
    in.now_ms = t;
    EXPECT(UART_BMS__OPEN, 0); /* it opens */
    in.port_open = true;
    EXPECT(UART_BMS__POLL, 0); /* overdue: at once */
    uart_bms__port_works(&s);
    uart_bms__polled(&s, t, t + 40, true);
    uint64_t cur = t + 40, next = t + 1040;
    for (int item = UART_BMS__SLOW_VERSION; item < UART_BMS__SLOW_DONE; item++) {
        in.now_ms = cur;
        in.last_valid_ms = cur;
        struct uart_bms__decision d = EXPECT(UART_BMS__SLOW, 0);
        CHECK_EQ_INT(d.slow, item);
        uart_bms__slow_done(&s, cur, false, 60);
        EXPECT(UART_BMS__WAIT, next); /* one item per live read */
        in.now_ms = next;
        EXPECT(UART_BMS__POLL, 0);
        uart_bms__polled(&s, next, next + 40, true);
        cur = next + 40;
        next += 1000;
    }
    /* the round is done: nothing slow until 60 s after its last item */
    in.now_ms = cur;
    EXPECT(UART_BMS__WAIT, next);
    CHECK_EQ_INT(s.slow_next, UART_BMS__SLOW_VERSION);
    CHECK_EQ_INT(s.slow_due_ms, cur - 1000 + 60000);
    /* a slow read stopped by a lost device keeps its item */
    uart_bms__slow_restart(&s, UART_BMS__SLOW_STATS);
    uart_bms__slow_done(&s, in.now_ms, true, 60);
    CHECK_EQ_INT(s.slow_next, UART_BMS__SLOW_STATS);
    CHECK_EQ_INT(s.slow_due_ms, 0);
}

/* The slow item only when three live cycles plus 10 ms fit before the next read; a failed read
 * gives no slow chance; the chance is taken or lost at the first decision after the read. */
static void test_step_slow_budget(void)
{
    struct uart_bms__sched s;
    uart_bms__sched_init(&s, 0, 1000);
    struct uart_bms__inputs in = { .now_ms = 0, .poll_interval_ms = 1000, .comm_timeout_ms = 600000,
                                   .port_open = true, .last_cycle_ms = 300, .last_valid_ms = 1 };
    EXPECT(UART_BMS__POLL, 0);
    uart_bms__polled(&s, 0, 90, true); /* next read at 1000: 910 ms left, budget 910: no */
    in.now_ms = 90;
    EXPECT(UART_BMS__WAIT, 1000);
    in.now_ms = 1000;
    EXPECT(UART_BMS__POLL, 0);
    uart_bms__polled(&s, 1000, 1089, true); /* 911 ms left: yes */
    in.now_ms = 1089;
    EXPECT(UART_BMS__SLOW, 0);
    uart_bms__slow_done(&s, 1100, false, 60);
    in.now_ms = 2000;
    EXPECT(UART_BMS__POLL, 0);
    uart_bms__polled(&s, 2000, 2010, false); /* failed read: no slow item */
    in.now_ms = 2010;
    EXPECT(UART_BMS__WAIT, 3000);
    /* a command comes before the live read, with or without a device */
    in.now_ms = 3000;
    in.command_pending = true;
    EXPECT(UART_BMS__COMMAND, 0);
    in.port_open = false;
    uart_bms__port_lost(&s, 3000);
    EXPECT(UART_BMS__COMMAND, 0); /* fails at once (no device), not after the reopen */
    in.command_pending = false;
    EXPECT(UART_BMS__WAIT, 3500);
}

/* A shorter interval counts from the last read; a late read schedules from now, no burst. */
static void test_step_interval_change(void)
{
    struct uart_bms__sched s;
    uart_bms__sched_init(&s, 0, 10000);
    struct uart_bms__inputs in = { .now_ms = 0, .poll_interval_ms = 10000, .comm_timeout_ms = 600000,
                                   .port_open = true, .last_valid_ms = 1 };
    EXPECT(UART_BMS__POLL, 0);
    uart_bms__polled(&s, 0, 20, false);
    in.now_ms = 20;
    EXPECT(UART_BMS__WAIT, 10000);
    in.now_ms = 50;
    in.poll_interval_ms = 100;
    EXPECT(UART_BMS__WAIT, 100);
    in.now_ms = 100;
    EXPECT(UART_BMS__POLL, 0);
    uart_bms__polled(&s, 100, 450, false); /* took 350 ms: the 200 ms slot is gone */
    in.now_ms = 450;
    EXPECT(UART_BMS__WAIT, 550);
}

/* COMM_LOST exactly comm_timeout_ms after the last valid sample (or the start), announced once;
 * an announcement the bus refused is retried one interval later; RESTORED with the next sample. */
static void test_step_comm_lost_and_announce(void)
{
    struct uart_bms__sched s;
    uart_bms__sched_init(&s, 1000, 1000);
    struct uart_bms__inputs in = { .now_ms = 1000, .poll_interval_ms = 1000, .comm_timeout_ms = 30000 };
    EXPECT(UART_BMS__OPEN, 0);
    uart_bms__open_failed(&s, 1000);
    in.now_ms = 1400;
    EXPECT(UART_BMS__WAIT, 1500);
    uart_bms__sched_init(&s, 1000, 1000);
    in.port_open = true;
    in.now_ms = 1000;
    EXPECT(UART_BMS__POLL, 0);
    uart_bms__polled(&s, 1000, 1060, false);
    in.now_ms = 1060;
    EXPECT(UART_BMS__WAIT, 2000);
    in.poll_interval_ms = 10000; /* a long interval: the comm timer is nearer than the poll */
    in.comm_timeout_ms = 5000;
    EXPECT(UART_BMS__WAIT, 6000); /* never a valid sample: counted from the start */
    in.now_ms = 5999;
    EXPECT(UART_BMS__WAIT, 6000);
    in.now_ms = 6000;
    EXPECT(UART_BMS__COMM_LOST, 0);
    CHECK(s.comm_lost);
    EXPECT(UART_BMS__ANNOUNCE, 0);
    uart_bms__announced(&s, 6000, false); /* bus full */
    EXPECT(UART_BMS__WAIT, 11000);        /* min(next poll 11000, retry 16000)... */
    CHECK_EQ_INT(s.announce_retry_ms, 16000);
    in.now_ms = 11000;
    EXPECT(UART_BMS__POLL, 0);
    uart_bms__polled(&s, 11000, 11050, false);
    in.now_ms = 11050;
    EXPECT(UART_BMS__WAIT, 16000);
    in.now_ms = 16000;
    EXPECT(UART_BMS__ANNOUNCE, 0);
    uart_bms__announced(&s, 16000, true);
    EXPECT(UART_BMS__WAIT, 21000); /* lost and told: no comm timer any more */
    CHECK(uart_bms__sample_ok(&s)); /* a sample ends the loss */
    in.last_valid_ms = 16000;
    EXPECT(UART_BMS__ANNOUNCE, 0);  /* RESTORED */
    uart_bms__announced(&s, 16000, true);
    EXPECT(UART_BMS__WAIT, 21000);
    CHECK(!uart_bms__sample_ok(&s)); /* not lost: nothing to restore */
    in.now_ms = 20999;
    in.poll_interval_ms = 100000;
    EXPECT(UART_BMS__WAIT, 21000);  /* 16000 + 5000 */
}

/* Until the earliest deadline of the sleepers is `want` (after a signal, which is no move of
 * the clock, fake_clock_settle cannot tell the old wait from the new one). */
static bool wait_deadline(uint64_t want)
{
    bool ok;
    WAIT_FOR(ok, fake_clock_next_deadline() == want, 10000);
    if (!ok)
        fprintf(stderr, "next deadline %llu, want %llu\n", (unsigned long long)fake_clock_next_deadline(),
                (unsigned long long)want);
    return ok;
}

/* The poller on the test clock: it sleeps until exactly the next poll, a move short of it reads
 * nothing, and the poll interval and comm timeout it waits for are the configured ones. */
static void test_poller_sleeps_until_its_deadline(void)
{
    fake_reset();
    fake_clock_set_ms(1000000);
    struct fixture fx;
    start(&fx, 1000, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(fake_clock_next_deadline(), 1001000);
    for (int k = 1; k <= 3; k++) {
        uint64_t due = 1000000 + (uint64_t)k * 1000;
        pthread_mutex_lock(&F.lock);
        int requests = F.requests;
        pthread_mutex_unlock(&F.lock);
        fake_clock_set_ms(due - 1);
        CHECK(fake_clock_settle(1, 10000));
        pthread_mutex_lock(&F.lock);
        CHECK_EQ_INT(F.requests, requests);
        pthread_mutex_unlock(&F.lock);
        fake_clock_set_ms(due);
        CHECK(wait_count(&fx.cap, &fx.cap.samples, 1 + k));
        CHECK(fake_clock_settle(1, 10000));
        CHECK_EQ_INT(fake_clock_next_deadline(), due + 1000);
    }
    /* Silent BMS: after the reads time out (real time), the thread waits for the next read;
     * with a 10 s interval the comm-lost timer (30 s after the last sample) is not nearer. */
    fake_set_silent(true);
    uart_bms_set_poll_interval_ms(fx.ub, 10000);
    uart_bms_set_comm_timeout_ms(fx.ub, 15000);
    CHECK(wait_deadline(1003000 + 10000));
    fake_clock_set_ms(1003000 + 10000);
    CHECK(wait_stats(fx.ub, timed_out));
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(fake_clock_next_deadline(), 1003000 + 15000); /* comm lost: 15 s after 1003000 */
    fake_clock_set_ms(1003000 + 15000);
    CHECK(wait_count(&fx.cap, &fx.cap.lost, 1));
    finish(&fx);
    fake_clock_use_real();
}

/* A device that opens and then fails at once, on the test clock: reopened after exactly 0.5, 1,
 * 2, 4 s... (not every 0.5 s for ever with a closed/opened log pair each time). */
static void test_flapping_device_backoff_exact(void)
{
    fake_reset();
    F.vanish_always = true;
    fake_clock_set_ms(2000000);
    struct fixture fx;
    start(&fx, 100, 600000);
    uint64_t t = 2000000;
    static const uint64_t backoff[] = { 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000 };
    for (size_t i = 0; i < sizeof backoff / sizeof backoff[0]; i++) {
        CHECK(fake_clock_settle(1, 10000));
        pthread_mutex_lock(&F.lock);
        CHECK_EQ_INT(F.opens, (int)i + 1);
        pthread_mutex_unlock(&F.lock);
        CHECK_EQ_INT(fake_clock_next_deadline(), t + backoff[i]);
        t += backoff[i];
        fake_clock_set_ms(t);
    }
    finish(&fx);
    fake_clock_use_real();
}

/* ---------------------------------------------------------------- logs a person can debug wiring with */

/* stderr (the log) into a temporary file while a test runs. */
struct log_capture {
    char path[64];
    int saved;
};

static void log_capture_begin(struct log_capture *c)
{
    snprintf(c->path, sizeof c->path, "/tmp/test_uart_bms_log_XXXXXX");
    fflush(stderr);
    c->saved = dup(2);
    int fd = mkstemp(c->path);
    CHECK(fd >= 0);
    dup2(fd, 2);
    close(fd);
}

/* Restores stderr; returns what was logged (caller frees). */
static char *log_capture_end(struct log_capture *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    char *text = calloc(1, 1 << 20);
    if (f && text)
        text[fread(text, 1, (1 << 20) - 1, f)] = '\0';
    if (f)
        fclose(f);
    unlink(c->path);
    fputs(text ? text : "", stderr); /* still shown with the test's output */
    return text;
}

static size_t count_substr(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static bool many_failures(const struct uart_bms_stats *st) { return st->failed_in_row >= 3 * UART_BMS__HINT_AFTER; }
static bool many_nacks(const struct uart_bms_stats *st) { return st->nacks >= 6; }
static bool answering(const struct uart_bms_stats *st) { return st->failed_in_row == 0 && !st->line_hint[0]; }

/* A BMS refusing everything: NACKs counted, no switch to the split reading of old firmware (the
 * split reads are refused too), no sample; data again once it answers. */
static void test_nack_only_bms_is_not_old_firmware(void)
{
    fake_reset();
    F.nack_all = true;
    struct log_capture lc;
    log_capture_begin(&lc);
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_stats(fx.ub, many_nacks));
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK_EQ_INT(st.samples, 0);
    pthread_mutex_lock(&F.lock);
    F.nack_all = false;
    pthread_mutex_unlock(&F.lock);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 2));
    struct bms_live_data d;
    CHECK_EQ_INT(uart_bms_get_latest(fx.ub, &d), GW_OK);
    CHECK(d.soh_valid); /* read in one block again: register 45 (SOH) with it */
    finish(&fx);
    char *log = log_capture_end(&lc);
    CHECK(strstr(log, "refuses every live read") != NULL);
    CHECK(strstr(log, "older firmware") == NULL);
    free(log);
}


/* The wiring hint as a decision: once per run of failed transactions, after HINT_AFTER of them;
 * "silent" when not one byte came back, "garbage" as soon as any did; a valid frame ends the run. */
static void test_step_wiring_hint(void)
{
    struct uart_bms__sched s;
    uart_bms__sched_init(&s, 0, 1000);
    enum { N = UART_BMS__HINT_NONE, SIL = UART_BMS__HINT_SILENT, GAR = UART_BMS__HINT_GARBAGE };
    static const struct {
        bool frame, bytes;
        int want;
    } rows[] = {
        { false, false, N }, { false, false, N }, { false, false, SIL }, /* the third failure */
        { false, false, N }, { false, true, N }, { false, false, N },    /* once per run */
        { true, true, N },                                               /* answers: re-armed */
        { false, false, N }, { false, true, N }, { false, false, GAR },  /* bytes, no frame */
        { true, true, N }, { false, false, N }, { true, true, N },       /* one miss: no hint */
        { false, false, N }, { false, false, N }, { false, false, SIL },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int got = (int)uart_bms__transaction_done(&s, rows[i].frame, rows[i].bytes);
        if (got != rows[i].want)
            fprintf(stderr, "hint row %zu: %d\n", i, got);
        CHECK_EQ_INT(got, rows[i].want);
    }
    CHECK_EQ_INT(s.failed_in_row, 3);
}

/* A BMS that never answers: one hint naming what to check (crossed TX/RX, ground, baud, the
 * BMS's UART mode), however long the silence; it goes when the BMS answers. */
static void test_silent_line_gets_one_wiring_hint(void)
{
    fake_reset();
    fake_set_silent(true);
    struct log_capture lc;
    log_capture_begin(&lc);
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_stats(fx.ub, many_failures));
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK(strstr(st.line_hint, "no byte back") != NULL);
    CHECK(strstr(st.line_hint, "TX and RX are crossed") != NULL);
    fake_set_silent(false);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    CHECK(wait_stats(fx.ub, answering));
    /* A second run of failures soon after (a noisy line): the stats give the hint again, the
     * log does not repeat it within 10 minutes. */
    fake_set_silent(true);
    CHECK(wait_stats(fx.ub, many_failures));
    uart_bms_get_stats(fx.ub, &st);
    CHECK(strstr(st.line_hint, "no byte back") != NULL);
    fake_set_silent(false);
    CHECK(wait_stats(fx.ub, answering));
    finish(&fx);
    char *log = log_capture_end(&lc);
    CHECK_EQ_INT(count_substr(log, "not one byte came back"), 1);
    CHECK(strstr(log, "crossed, not TX to TX") != NULL);
    CHECK(strstr(log, "common ground") != NULL);
    CHECK(strstr(log, "115200 baud") != NULL);
    CHECK(strstr(log, "registers 342/343") != NULL);
    CHECK(strstr(log, "the TinyBMS answers again after") != NULL);
    CHECK_EQ_INT(count_substr(log, "First answers received"), 0);
    free(log);
}

/* Bytes that never make a frame (wrong baud rate, a broadcasting BMS, noise): the other hint,
 * with the first answers received in hex. */
static void test_garbage_line_hint_shows_the_first_answers(void)
{
    fake_reset();
    pthread_mutex_lock(&F.lock);
    F.junk = true;
    pthread_mutex_unlock(&F.lock);
    struct log_capture lc;
    log_capture_begin(&lc);
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_stats(fx.ub, many_failures));
    struct uart_bms_stats st;
    uart_bms_get_stats(fx.ub, &st);
    CHECK(strstr(st.line_hint, "only garbage") != NULL);
    CHECK(st.garbage_bytes > 0);
    finish(&fx);
    char *log = log_capture_end(&lc);
    CHECK_EQ_INT(count_substr(log, "never a valid TinyBMS frame"), 1);
    CHECK(strstr(log, "broadcast off") != NULL);
    CHECK(strstr(log, "answer 1: 5 bytes: 55 12 34 F0 0D") != NULL);
    CHECK(strstr(log, "answer 3: 5 bytes: 55 12 34 F0 0D") != NULL);
    CHECK_EQ_INT(count_substr(log, "answer 4:"), 0);
    CHECK_EQ_INT(count_substr(log, "not one byte came back"), 0);
    free(log);
}

/* -v: the poll cycle at debug level; -vv (log_frames): every request and answer in hex with
 * its meaning. Neither without the debug level. */
static void test_poll_cycle_and_frames_logged(void)
{
    enum gw_log_level level = gw_log_get_level();
    for (int frames = 0; frames <= 1; frames++) {
        fake_reset();
        gw_log_set_level(GW_LOG_DEBUG);
        log_frames_option = frames;
        struct log_capture lc;
        log_capture_begin(&lc);
        struct fixture fx;
        start(&fx, 100, 30000);
        CHECK(wait_count(&fx.cap, &fx.cap.samples, 2));
        finish(&fx);
        char *log = log_capture_end(&lc);
        CHECK(strstr(log, "DEBUG uart_bms: battery 0: poll 1: live registers read in ") != NULL);
        CHECK(strstr(log, "battery 0: slow read of the version: ok") != NULL);
        const char *tx = "battery 0: TX 8 bytes AA 03 00 00 00 38 ";
        const char *rx = "battery 0: RX 117 bytes AA 03 70 ";
        CHECK_EQ_INT(strstr(log, tx) != NULL, frames);
        CHECK_EQ_INT(strstr(log, rx) != NULL, frames);
        if (frames) {
            const char *line = strstr(log, rx);
            const char *eol = line ? strchr(line, '\n') : NULL;
            CHECK(line && eol && eol - line > 3 * 117); /* every byte, then the meaning */
        }
        free(log);
    }
    log_frames_option = false;
    gw_log_set_level(GW_LOG_INFO);
    fake_reset();
    struct log_capture lc;
    log_capture_begin(&lc);
    struct fixture fx;
    start(&fx, 100, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 2));
    finish(&fx);
    char *log = log_capture_end(&lc);
    CHECK_EQ_INT(count_substr(log, "poll 1:"), 0);
    free(log);
    gw_log_set_level(level);
}

/* systemd's watchdog follows the poller: it checks in with the deadline it sleeps until (so a
 * poller that does not wake by then plus the grace is hung), and says idle once stopped. */
static void test_poller_checks_in_with_its_deadline(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_uart_bms_notify_%d", (int)getpid());
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    unlink(path);
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "30000000", 1);
    struct watchdog *wd = NULL;
    CHECK_EQ_INT(watchdog_create(&wd), GW_OK);
    struct watchdog_client *c = watchdog_client_add(wd, "bms-poll0");
    CHECK(c != NULL);
    CHECK_EQ_INT(watchdog_client_next_ms(c), WATCHDOG_IDLE);
    fake_reset();
    fake_clock_set_ms(2000000);
    watchdog_option = c;
    struct fixture fx;
    start(&fx, 1000, 30000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 1));
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(fake_clock_next_deadline(), 2001000);
    CHECK_EQ_INT(watchdog_client_next_ms(c), 2001000);
    fake_clock_set_ms(2001000);
    CHECK(wait_count(&fx.cap, &fx.cap.samples, 2));
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(watchdog_client_next_ms(c), 2002000);
    uart_bms_stop(fx.ub);
    CHECK_EQ_INT(watchdog_client_next_ms(c), WATCHDOG_IDLE);
    finish(&fx);
    watchdog_option = NULL;
    watchdog_destroy(wd);
    close(fd);
    unlink(path);
    fake_clock_use_real();
}

static void test_bad_options(void)
{
    struct uart_bms *ub = NULL;
    struct uart_bms_options o;
    uart_bms_default_options(&o);
    CHECK_EQ_INT(uart_bms_create(&o, &ub), GW_ERR_INVAL); /* no device */
    CHECK(ub == NULL);
    snprintf(o.device, sizeof o.device, "/dev/fake");
    o.serial = &fake_ops;
    CHECK_EQ_INT(uart_bms_create(&o, &ub), GW_OK);
    CHECK_EQ_INT(uart_bms_set_poll_interval_ms(ub, 50), GW_ERR_RANGE);
    CHECK_EQ_INT(uart_bms_set_poll_interval_ms(ub, 20000), GW_ERR_RANGE);
    CHECK_EQ_INT(uart_bms_write_setting(ub, 300, 3600, 100), GW_ERR_STATE); /* not started */
    struct bms_live_data d;
    CHECK_EQ_INT(uart_bms_get_latest(ub, &d), GW_ERR_NOT_FOUND);
    uart_bms_destroy(ub);
}

TEST_MAIN(TEST_CASE(test_sample_decoded_and_published), TEST_CASE(test_late_tail_after_the_idle_gap),
          TEST_CASE(test_nack_only_bms_is_not_old_firmware),
          TEST_CASE(test_restored_only_by_a_proving_sample), TEST_CASE(test_sleeping_bms_gets_one_resend),
          TEST_CASE(test_silence_raises_comm_lost_then_restored), TEST_CASE(test_device_vanishes_and_is_reopened),
          TEST_CASE(test_absent_device_retries_without_crashing), TEST_CASE(test_crc_error_counted_and_retried), TEST_CASE(test_false_frame_start_does_not_hide_the_answer),
          TEST_CASE(test_old_firmware_block_nack_falls_back), TEST_CASE(test_write_setting_validates_and_reads_back),
          TEST_CASE(test_restart_guard), TEST_CASE(test_listener_slots_bounded), TEST_CASE(test_tap_records_both_directions),
          TEST_CASE(test_nack_crc_error_is_resent_not_a_firmware_refusal),
          TEST_CASE(test_restart_guard_not_taken_by_an_unsent_restart),
          TEST_CASE(test_shorter_poll_interval_applies_at_once), TEST_CASE(test_settings_change_while_polling),
          TEST_CASE(test_comm_lost_survives_a_full_bus),
          TEST_CASE(test_bad_options), TEST_CASE(test_step_open_poll_slow), TEST_CASE(test_step_slow_budget),
          TEST_CASE(test_step_interval_change), TEST_CASE(test_step_comm_lost_and_announce),
          TEST_CASE(test_poller_sleeps_until_its_deadline), TEST_CASE(test_flapping_device_backoff_exact),
          TEST_CASE(test_step_wiring_hint), TEST_CASE(test_silent_line_gets_one_wiring_hint),
          TEST_CASE(test_garbage_line_hint_shows_the_first_answers), TEST_CASE(test_poll_cycle_and_frames_logged),
          TEST_CASE(test_poller_checks_in_with_its_deadline))
