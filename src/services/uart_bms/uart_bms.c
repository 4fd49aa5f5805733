#define _GNU_SOURCE /* pthread_setname_np */
#include "uart_bms.h"
#include "uart_bms_internal.h"

#include "app_events.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"
#include "plausibility.h"
#include "tinybms.h"
#include "watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RESTART_GUARD_MS 60000u
#define WRITE_TIMEOUT_MS 200u
#define LINE_IDLE_GAP_MS 15u  /* silence inside a frame: at 115200 baud bytes come every 87 us */
#define GARBAGE_KEPT 3        /* garbage answers shown with the wiring hint */
#define HINT_LOG_INTERVAL_MS 600000u /* the wiring hint at most every 10 minutes in the log */
#define GARBAGE_BYTES 24      /* bytes shown of each */
#define SETTINGS_REGS BMS_SETTINGS_COUNT

enum command_kind { CMD_NONE = 0, CMD_WRITE_SETTING, CMD_RESET, CMD_CLEAR_EVENTS, CMD_CLEAR_STATS };

/* Slow items (uart_bms_internal.h), read at start and then every slow_poll_interval_s. */
enum slow_item { SLOW_VERSION = UART_BMS__SLOW_VERSION, SLOW_SETTINGS = UART_BMS__SLOW_SETTINGS,
                 SLOW_SETTINGS_MIN = UART_BMS__SLOW_SETTINGS_MIN, SLOW_SETTINGS_MAX = UART_BMS__SLOW_SETTINGS_MAX,
                 SLOW_STATS = UART_BMS__SLOW_STATS, SLOW_EVENTS = UART_BMS__SLOW_EVENTS,
                 SLOW_DONE = UART_BMS__SLOW_DONE };

struct command {
    enum command_kind kind;
    uint16_t reg;
    uint16_t value;
    bool pending;      /* waiting for the poller */
    bool done;
    bool abandoned;    /* the caller stopped waiting */
    int result;
};

struct uart_bms {
    struct uart_bms_options opts;
    const struct serial_ops *serial;

    pthread_t thread;
    bool running;
    pthread_mutex_t lock;          /* everything below */
    pthread_cond_t wake;           /* stop, command, poll interval or comm timeout changed */
    pthread_cond_t command_done;
    bool stop_requested;

    /* Published state (copies handed out under lock). */
    struct bms_live_data latest;
    bool have_latest;
    struct bms_settings settings, settings_min, settings_max;
    struct bms_statistics statistics;
    struct bms_event_log events;
    struct bms_version version;
    struct uart_bms_stats stats;
    struct {
        uart_bms_listener_fn fn;
        void *ctx;
    } listeners[UART_BMS_MAX_LISTENERS];

    struct command command;
    uint64_t last_restart_ms;

    /* Frame tap ring. */
    struct uart_bms_tap_entry tap[UART_BMS_TAP_FRAMES];
    uint64_t tap_seq;              /* sequence number of the newest entry */

    /* Poller-thread-only state. */
    struct serial_port *port;
    struct tinybms_decoder decoder;
    struct uart_bms__sched sched;  /* the step's state (decided under lock, by the poller only) */
    bool live_split;               /* firmware NACKed the 0..55 block: read around register 45 */
    bool settings_individual;      /* firmware NACKed the settings block: one register at a time */
    struct app_bms_comm comm_event;/* payload of the announcement of sched.comm_lost */
    bool xfer_frame_seen;          /* this transaction received a valid frame (any command) */
    size_t xfer_bytes;             /* bytes it received */
    uint8_t garbage[GARBAGE_KEPT][GARBAGE_BYTES]; /* first answers of the failure run without a frame */
    uint16_t garbage_len[GARBAGE_KEPT];           /* bytes received (may exceed GARBAGE_BYTES) */
    unsigned garbage_count;
    struct gw_log_limit announce_limit;
    struct gw_log_limit open_limit, xfer_limit, nack_limit, proving_limit;
    uint64_t hint_logged_ms;       /* when the wiring hint was last logged, 0 = never */
    char last_hint[200];           /* its text (the stats keep it for each later run) */
};

void uart_bms_default_options(struct uart_bms_options *o)
{
    memset(o, 0, sizeof *o);
    o->poll_interval_ms = 1000;
    o->comm_timeout_ms = 30000;
    o->slow_poll_interval_s = 60;
    o->reply_timeout_ms = 250;
    o->cell_order = BMS_CELL_ORDER_DOCUMENTED;
}

static uint32_t clamp_interval(uint32_t ms)
{
    return ms < 100 ? 100 : ms > 10000 ? 10000 : ms;
}

int uart_bms_create(const struct uart_bms_options *opts, struct uart_bms **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!opts || !opts->device[0])
        return GW_ERR_INVAL;
    struct uart_bms *ub = calloc(1, sizeof *ub);
    if (!ub)
        return GW_ERR_NOMEM;
    ub->opts = *opts;
    ub->opts.device[sizeof ub->opts.device - 1] = '\0';
    ub->opts.poll_interval_ms = clamp_interval(opts->poll_interval_ms ? opts->poll_interval_ms : 1000);
    if (!ub->opts.comm_timeout_ms)
        ub->opts.comm_timeout_ms = 30000;
    if (!ub->opts.slow_poll_interval_s)
        ub->opts.slow_poll_interval_s = 60;
    if (!ub->opts.reply_timeout_ms)
        ub->opts.reply_timeout_ms = 250;
    ub->serial = opts->serial ? opts->serial : &serial_termios_ops;
    pthread_mutex_init(&ub->lock, NULL);
    if (gw_clock_cond_init(&ub->wake) != GW_OK || gw_clock_cond_init(&ub->command_done) != GW_OK) {
        pthread_mutex_destroy(&ub->lock);
        free(ub);
        return GW_ERR_NOMEM;
    }
    tinybms_decoder_init(&ub->decoder);
    *out = ub;
    return GW_OK;
}

/* ------------------------------------------------------------------ tap and counters */

/* data[0..len) as "AA 03 00 ..." into out (cut with "..." when it does not fit). */
static void hex_bytes(const uint8_t *data, size_t len, char *out, size_t cap)
{
    struct gw_text t;
    gw_text_init(&t, out, cap);
    for (size_t i = 0; i < len; i++) {
        if (i)
            gw_text_put_char(&t, ' ');
        gw_text_put_hex(&t, data[i], 2);
    }
    if (gw_text_status(&t) != GW_OK && cap > 4)
        memcpy(out + cap - 4, "...", 4);
}

static void tap_add(struct uart_bms *ub, bool tx, const uint8_t *data, size_t len)
{
    char meaning[96];
    if (len == 0)
        snprintf(meaning, sizeof meaning, "%s", tx ? "empty request" : "no answer");
    else
        tinybms_describe_frame(data, len, tx, meaning, sizeof meaning);
    if (ub->opts.log_frames) { /* -vv: the wire as the BMS sees it, each frame with its meaning */
        char hex[3 * UART_BMS_TAP_BYTES + 4];
        hex_bytes(data, len < UART_BMS_TAP_BYTES ? len : UART_BMS_TAP_BYTES, hex, sizeof hex);
        GW_LOGD(MOD, "battery %u: %s %zu byte%s%s%s: %s", ub->opts.battery_id, tx ? "TX" : "RX", len,
                len == 1 ? "" : "s", len ? " " : "", hex, meaning);
    }
    pthread_mutex_lock(&ub->lock);
    ub->tap_seq++;
    struct uart_bms_tap_entry *e = &ub->tap[ub->tap_seq % UART_BMS_TAP_FRAMES];
    e->wall_ms = gw_wall_ms();
    e->tx = tx;
    e->len = (uint16_t)(len > 65535 ? 65535 : len);
    size_t copy = len < UART_BMS_TAP_BYTES ? len : UART_BMS_TAP_BYTES;
    if (copy)
        memcpy(e->data, data, copy);
    memcpy(e->meaning, meaning, sizeof e->meaning);
    pthread_mutex_unlock(&ub->lock);
}

size_t uart_bms_tap_read(struct uart_bms *ub, uint64_t after_seq, struct uart_bms_tap_entry *out, size_t max,
                         uint64_t *last_seq)
{
    size_t n = 0;
    pthread_mutex_lock(&ub->lock);
    uint64_t newest = ub->tap_seq;
    uint64_t oldest = newest >= UART_BMS_TAP_FRAMES ? newest - UART_BMS_TAP_FRAMES + 1 : 1;
    uint64_t from = after_seq + 1 > oldest ? after_seq + 1 : oldest;
    if (newest >= from && newest - from + 1 > max)
        from = newest - max + 1;
    for (uint64_t s = from; s <= newest && n < max; s++)
        out[n++] = ub->tap[s % UART_BMS_TAP_FRAMES];
    if (last_seq)
        *last_seq = newest;
    pthread_mutex_unlock(&ub->lock);
    return n;
}

static void note_error(struct uart_bms *ub, int err, const char *what)
{
    pthread_mutex_lock(&ub->lock);
    ub->stats.last_error = err;
    snprintf(ub->stats.last_error_text, sizeof ub->stats.last_error_text, "%s: %s", what, gw_strerror(err));
    pthread_mutex_unlock(&ub->lock);
}

/* ------------------------------------------------------------------ device */

/* why: the reason to log before reopening, or NULL when stopping. */
static void close_port(struct uart_bms *ub, const char *why)
{
    if (!ub->port)
        return;
    ub->serial->close(ub->port);
    ub->port = NULL;
    pthread_mutex_lock(&ub->lock);
    ub->stats.device_open = false;
    pthread_mutex_unlock(&ub->lock);
    if (!why) { /* stopping */
        GW_LOGI(MOD, "battery %u: closed %s", ub->opts.battery_id, ub->opts.device);
        return;
    }
    uart_bms__port_lost(&ub->sched, gw_now_ms());
    GW_LOGW(MOD, "battery %u: serial device %s closed (%s); reopening in %u ms", ub->opts.battery_id,
            ub->opts.device, why, ub->sched.reopen_backoff_ms);
}

static void open_port(struct uart_bms *ub, uint64_t now)
{
    int rc = ub->serial->open(ub->opts.device, 115200, &ub->port);
    if (rc) {
        ub->port = NULL;
        uart_bms__open_failed(&ub->sched, now);
        note_error(ub, rc, "open");
        gw_log_ratelimited(&ub->open_limit, 30000, GW_LOG_WARN, MOD,
                           "battery %u: cannot open %s: %s (retry in %u ms)", ub->opts.battery_id,
                           ub->opts.device, gw_strerror(rc), ub->sched.reopen_backoff_ms);
        return;
    }
    bool reopened = ub->stats.polls > 0 || ub->stats.reopens > 0;
    pthread_mutex_lock(&ub->lock);
    ub->stats.device_open = true;
    if (reopened)
        ub->stats.reopens++;
    pthread_mutex_unlock(&ub->lock);
    tinybms_decoder_reset(&ub->decoder);
    /* Not rate-limited: the growing backoff bounds how often a failing port is reopened. */
    GW_LOGI(MOD, "battery %u: opened %s at 115200 8N1", ub->opts.battery_id, ub->opts.device);
}

/* ------------------------------------------------------------------ transactions */

static void count(struct uart_bms *ub, uint64_t *counter)
{
    pthread_mutex_lock(&ub->lock);
    (*counter)++;
    pthread_mutex_unlock(&ub->lock);
}

/* Decodes every byte received in an attempt from the start with a scratch decoder: true with
 * *reply when they hold the answer to expect_cmd. Counters of the scratch decoder are dropped
 * (the attempt's own decoder counted those bytes already). */
static bool rescan_attempt(const uint8_t *rx, size_t rx_len, uint8_t expect_cmd, struct tinybms_reply *reply)
{
    struct tinybms_decoder scratch;
    tinybms_decoder_init(&scratch);
    size_t off = 0;
    while (off < rx_len) {
        size_t used = 0;
        int fr = tinybms_decoder_feed(&scratch, rx + off, rx_len - off, &used, reply);
        off += used;
        if (fr == 1 && reply->cmd == expect_cmd)
            return true;
        if (fr == 0 && used == 0)
            break;
    }
    int fr;
    size_t used;
    while ((fr = tinybms_decoder_feed(&scratch, NULL, 0, &used, reply)) != 0)
        if (fr == 1 && reply->cmd == expect_cmd)
            return true;
    return false;
}

/* One attempt: send req, wait for the answer to expect_cmd. Every byte received during the
 * attempt goes to the frame tap as one entry, so a user debugging wiring sees the raw line. */
static int attempt(struct uart_bms *ub, const uint8_t *req, size_t req_len, uint8_t expect_cmd,
                   struct tinybms_reply *reply)
{
    ub->serial->discard_input(ub->port);
    tinybms_decoder_reset(&ub->decoder);
    tap_add(ub, true, req, req_len);
    int rc = ub->serial->write(ub->port, req, req_len, WRITE_TIMEOUT_MS);
    if (rc)
        return rc;
    /* The reply's wire time is at most ~23 ms (260 bytes at 11,520 B/s) on top of the BMS
     * latency; reply_timeout_ms covers both with room for a loaded host. */
    uint64_t deadline = gw_real_ms() + ub->opts.reply_timeout_ms; /* bounds a serial wait: real time */
    uint8_t rx[UART_BMS_TAP_BYTES];
    size_t rx_len = 0;
    uint32_t garbage_before = ub->decoder.garbage_bytes;
    bool resynced = false, rx_whole = true;
    rc = GW_ERR_TIMEOUT;
    for (;;) {
        uint64_t now = gw_real_ms();
        if (now >= deadline)
            break;
        uint8_t chunk[256];
        size_t got = 0;
        /* With a partial frame buffered, wait only for a short idle gap: noise such as
         * "AA 03 FA" announces a long frame that would otherwise swallow the real answer. */
        uint32_t wait_ms = (uint32_t)(deadline - now);
        bool partial = ub->decoder.len > 0;
        if (partial && wait_ms > LINE_IDLE_GAP_MS)
            wait_ms = LINE_IDLE_GAP_MS;
        int rr = ub->serial->read(ub->port, chunk, sizeof chunk, wait_ms, &got);
        if (rr) {
            rc = rr;
            break;
        }
        if (got == 0 && partial && tinybms_decoder_resync(&ub->decoder)) {
            /* The line went idle inside a "frame": drop its false start and rescan what is
             * buffered for the real answer. */
            resynced = true;
            int fr;
            size_t used;
            while ((fr = tinybms_decoder_feed(&ub->decoder, NULL, 0, &used, reply)) != 0) {
                if (fr == 1)
                    ub->xfer_frame_seen = true;
                if (fr == 1 && reply->cmd == expect_cmd) {
                    rc = GW_OK;
                    break;
                }
            }
            if (rc == GW_OK)
                break;
            continue;
        }
        size_t keep = got < sizeof rx - rx_len ? got : sizeof rx - rx_len;
        memcpy(rx + rx_len, chunk, keep);
        rx_len += keep;
        rx_whole = rx_whole && keep == got;
        size_t off = 0;
        bool finished = false;
        while (off < got && !finished) {
            size_t used = 0;
            int fr = tinybms_decoder_feed(&ub->decoder, chunk + off, got - off, &used, reply);
            off += used;
            if (fr == 1)
                ub->xfer_frame_seen = true;
            if (fr == GW_ERR_CRC) {
                count(ub, &ub->stats.crc_errors);
                rc = GW_ERR_CRC;
                finished = true;
            } else if (fr == 1 && reply->cmd == expect_cmd) {
                rc = GW_OK;
                finished = true;
            } else if (fr == 0 && used == 0) {
                break;
            }
            /* fr == 1 for another command: a late answer to an earlier request, skipped;
             * GW_ERR_PROTO: the decoder dropped a byte and rescans. */
        }
        if (!finished && resynced && rx_whole && rescan_attempt(rx, rx_len, expect_cmd, reply)) {
            /* The "false start" dropped at the idle gap was the answer's head: its tail came
             * later than the gap (a USB adapter's 16 ms latency timer on a loaded host). */
            garbage_before = ub->decoder.garbage_bytes; /* the dropped "garbage" was the answer */
            tinybms_decoder_reset(&ub->decoder);
            ub->xfer_frame_seen = true;
            rc = GW_OK;
            break;
        }
        if (finished)
            break;
    }
    if (ub->decoder.garbage_bytes != garbage_before) {
        pthread_mutex_lock(&ub->lock);
        ub->stats.garbage_bytes += ub->decoder.garbage_bytes - garbage_before;
        pthread_mutex_unlock(&ub->lock);
    }
    if (rx_len)
        tap_add(ub, false, rx, rx_len);
    ub->xfer_bytes += rx_len;
    if (rx_len && rc != GW_OK && ub->garbage_count < GARBAGE_KEPT) {
        /* An answer that never made a valid frame: kept for the wiring hint. */
        unsigned k = ub->garbage_count++;
        ub->garbage_len[k] = (uint16_t)rx_len;
        memcpy(ub->garbage[k], rx, rx_len < GARBAGE_BYTES ? rx_len : GARBAGE_BYTES);
    }
    return rc;
}

/* The wiring hint of a run of failed transactions, logged once (the poller's decision:
 * uart_bms__transaction_done) and kept in the stats. */
static void line_hint(struct uart_bms *ub, enum uart_bms__hint hint)
{
    uint8_t id = ub->opts.battery_id;
    uint32_t n = ub->sched.failed_in_row;
    char text[sizeof ub->stats.line_hint];
    if (hint == UART_BMS__HINT_SILENT) {
        snprintf(text, sizeof text, "no byte back from the TinyBMS in %u transactions: check that TX and RX are "
                 "crossed, the common ground, 115200 baud, the BMS's UART mode", (unsigned)n);
        GW_LOGW(MOD, "battery %u: %u requests to %s and not one byte came back. Check: the adapter's TX goes to "
                "the BMS's RX and RX to TX (crossed, not TX to TX), a common ground (GND) between adapter and "
                "BMS, 115200 baud 8N1 (the TinyBMS's fixed rate) on any converter in the line, that %s is the "
                "adapter wired to the BMS, and that the BMS's UART is in its command mode (registers 342/343: "
                "broadcast off)", id, (unsigned)(2 * n), ub->opts.device, ub->opts.device);
    } else {
        uint64_t garbage, crc;
        pthread_mutex_lock(&ub->lock);
        garbage = ub->stats.garbage_bytes;
        crc = ub->stats.crc_errors;
        pthread_mutex_unlock(&ub->lock);
        snprintf(text, sizeof text, "only garbage from the TinyBMS in %u transactions: check 115200 baud, the "
                 "BMS's UART mode (broadcast off), the ground, noise", (unsigned)n);
        GW_LOGW(MOD, "battery %u: %u requests to %s got bytes back but never a valid TinyBMS frame (%llu garbage "
                "bytes, %llu CRC errors since start). Check: 115200 baud 8N1 on the adapter and any converter, the "
                "BMS's UART in its command mode (registers 342/343: broadcast off: a broadcasting BMS talks over "
                "the answers), a common ground and short or shielded wires (noise), no other device on this "
                "port. First answers received:", id, (unsigned)(2 * n), ub->opts.device,
                (unsigned long long)garbage, (unsigned long long)crc);
        for (unsigned k = 0; k < ub->garbage_count; k++) {
            char hex[3 * GARBAGE_BYTES + 4];
            size_t shown = ub->garbage_len[k] < GARBAGE_BYTES ? ub->garbage_len[k] : GARBAGE_BYTES;
            hex_bytes(ub->garbage[k], shown, hex, sizeof hex);
            GW_LOGW(MOD, "battery %u:   answer %u: %u byte%s: %s%s", id, k + 1, (unsigned)ub->garbage_len[k],
                    ub->garbage_len[k] == 1 ? "" : "s", hex, shown < ub->garbage_len[k] ? " ..." : "");
        }
    }
    pthread_mutex_lock(&ub->lock);
    snprintf(ub->stats.line_hint, sizeof ub->stats.line_hint, "%s", text);
    pthread_mutex_unlock(&ub->lock);
    snprintf(ub->last_hint, sizeof ub->last_hint, "%s", text);
}

static int transact_attempts(struct uart_bms *ub, const uint8_t *req, size_t req_len, uint8_t expect_cmd,
                             struct tinybms_reply *reply);

/* One transaction (transact_attempts), then what it says about the line: a valid frame ends a
 * run of failures; a run reaching UART_BMS__HINT_AFTER gets its wiring hint. */
static int transact(struct uart_bms *ub, const uint8_t *req, size_t req_len, uint8_t expect_cmd,
                    struct tinybms_reply *reply)
{
    ub->xfer_frame_seen = false;
    ub->xfer_bytes = 0;
    int rc = transact_attempts(ub, req, req_len, expect_cmd, reply);
    if (rc == GW_ERR_CLOSED && !ub->xfer_frame_seen)
        return rc; /* no line to judge: the device went away */
    uint32_t failed_before = ub->sched.failed_in_row;
    bool hinted_before = ub->sched.hinted;
    enum uart_bms__hint hint = uart_bms__transaction_done(&ub->sched, ub->xfer_frame_seen, ub->xfer_bytes > 0);
    if (hint != UART_BMS__HINT_NONE) {
        /* On a noisy line runs of failures come every few seconds: the advice is logged once
         * per HINT_LOG_INTERVAL_MS, and stays in the stats for each run. */
        uint64_t now = gw_now_ms();
        if (!ub->hint_logged_ms || now - ub->hint_logged_ms >= HINT_LOG_INTERVAL_MS) {
            ub->hint_logged_ms = now;
            line_hint(ub, hint);
        } else {
            pthread_mutex_lock(&ub->lock);
            snprintf(ub->stats.line_hint, sizeof ub->stats.line_hint, "%s", ub->last_hint);
            pthread_mutex_unlock(&ub->lock);
        }
    }
    if (ub->xfer_frame_seen) {
        ub->garbage_count = 0;
        if (failed_before) {
            if (hinted_before)
                GW_LOGI(MOD, "battery %u: the TinyBMS answers again after %u failed transactions", ub->opts.battery_id,
                        (unsigned)failed_before);
            else
                GW_LOGD(MOD, "battery %u: the TinyBMS answers again after %u failed transaction%s",
                        ub->opts.battery_id, (unsigned)failed_before, failed_before == 1 ? "" : "s");
        }
    }
    pthread_mutex_lock(&ub->lock);
    ub->stats.failed_in_row = ub->sched.failed_in_row;
    if (ub->xfer_frame_seen)
        ub->stats.line_hint[0] = '\0';
    pthread_mutex_unlock(&ub->lock);
    return rc;
}

/* Request/answer with the TinyBMS rules: a sleeping BMS ignores the first command, so an
 * unanswered (or corrupted) attempt is sent once more before it counts. */
static int transact_attempts(struct uart_bms *ub, const uint8_t *req, size_t req_len, uint8_t expect_cmd,
                             struct tinybms_reply *reply)
{
    if (!ub->port)
        return GW_ERR_CLOSED;
    count(ub, &ub->stats.transactions);
    int rc = GW_ERR_TIMEOUT;
    for (int i = 0; i < 2; i++) {
        rc = attempt(ub, req, req_len, expect_cmd, reply);
        if (rc == GW_OK && reply->kind == TINYBMS_REPLY_NACK && reply->nack_error == TINYBMS_NACK_CRC_ERROR) {
            /* The BMS received our request corrupted (line noise): a transient fault, resent
             * like a corrupted answer. Reported as GW_ERR_NACK it would be taken for a
             * firmware refusal and switch reading modes for good. */
            count(ub, &ub->stats.crc_errors);
            rc = GW_ERR_CRC;
        } else if (rc == GW_OK) {
            uart_bms__port_works(&ub->sched); /* a later loss retries quickly again */
            if (reply->kind == TINYBMS_REPLY_NACK) {
                count(ub, &ub->stats.nacks);
                note_error(ub, GW_ERR_NACK, tinybms_command_name(req[1])); /* the reason of a loss */
                return GW_ERR_NACK;
            }
            return GW_OK;
        }
        if (rc == GW_ERR_CLOSED || rc == GW_ERR_IO) {
            close_port(ub, gw_strerror(rc));
            return GW_ERR_CLOSED;
        }
        if (i == 0)
            count(ub, &ub->stats.resends);
    }
    if (rc == GW_ERR_TIMEOUT) {
        count(ub, &ub->stats.timeouts);
        tap_add(ub, false, NULL, 0);
    }
    note_error(ub, rc, tinybms_command_name(req[1]));
    return rc;
}

/* Reads count registers from addr with one MODBUS 0x03 transaction. */
static int read_registers(struct uart_bms *ub, uint16_t addr, uint8_t n, uint16_t *regs)
{
    uint8_t req[16];
    int len = tinybms_encode_read_modbus(req, sizeof req, addr, n);
    if (len < 0)
        return len;
    struct tinybms_reply reply;
    int rc = transact(ub, req, (size_t)len, TINYBMS_CMD_READ_MODBUS, &reply);
    if (rc)
        return rc;
    size_t got = 0;
    rc = tinybms_reply_registers(&reply, regs, n, &got);
    if (rc)
        return rc;
    if (got != n) {
        note_error(ub, GW_ERR_PROTO, "short register answer");
        return GW_ERR_PROTO;
    }
    return GW_OK;
}

static void publish(struct uart_bms *ub, int id, const void *payload, size_t size)
{
    if (ub->opts.bus && event_bus_publish(ub->opts.bus, id, payload, size, 50) != GW_OK)
        GW_LOGD(MOD, "event %s dropped (bus full)", app_event_name(id));
}

/* Tells subscribers a change of comm_lost with EVENT_BMS_COMM_LOST / _RESTORED, once per
 * transition. A transition event is state, not a sample: when the bus is full it is retried
 * on the next cycle rather than dropped, or an alert would be raised (or cleared) never. */
static void announce_comm(struct uart_bms *ub)
{
    if (ub->sched.comm_lost == ub->sched.comm_announced)
        return;
    int id = ub->sched.comm_lost ? EVENT_BMS_COMM_LOST : EVENT_BMS_COMM_RESTORED;
    if (ub->opts.bus && event_bus_publish(ub->opts.bus, id, &ub->comm_event, sizeof ub->comm_event, 50) != GW_OK) {
        gw_log_ratelimited(&ub->announce_limit, 30000, GW_LOG_WARN, MOD,
                           "battery %u: event bus full: %s delayed to the next cycle", ub->opts.battery_id,
                           app_event_name(id));
        uart_bms__announced(&ub->sched, gw_now_ms(), false);
        return;
    }
    uart_bms__announced(&ub->sched, gw_now_ms(), true);
}

static int read_live(struct uart_bms *ub)
{
    uint16_t regs[TINYBMS_REG_LIVE_COUNT];
    int rc;
    bool probing_split = false;
    if (!ub->live_split) {
        rc = read_registers(ub, 0, TINYBMS_REG_LIVE_COUNT, regs);
        /* Older firmware may refuse a block that includes register 45 (SOH): try around it.
         * Only a split read that then works proves that firmware; a BMS refusing everything
         * (a broken or busy BMS) is a bad link, not a protocol variant to switch to for good. */
        probing_split = rc == GW_ERR_NACK;
    }
    if (ub->live_split || probing_split) {
        rc = read_registers(ub, 0, 45, regs);
        if (!rc)
            rc = read_registers(ub, 46, TINYBMS_REG_LIVE_COUNT - 46, regs + 46);
        regs[45] = 0xFFFF; /* no SOH on this firmware: decoded as not valid */
        if (probing_split && rc == GW_OK) {
            GW_LOGW(MOD, "battery %u: BMS refused the 0..55 block but answers around register 45 (older "
                    "firmware): reading it that way from now on", ub->opts.battery_id);
            ub->live_split = true;
        } else if (probing_split && rc == GW_ERR_NACK) {
            gw_log_ratelimited(&ub->nack_limit, 30000, GW_LOG_WARN, MOD,
                               "battery %u: the BMS refuses every live read (negative acknowledge): link "
                               "bad, no data", ub->opts.battery_id);
        }
    }
    if (rc)
        return rc;

    pthread_mutex_lock(&ub->lock); /* uart_bms_set_cell_order() changes it from other threads */
    uint8_t cell_order = ub->opts.cell_order;
    pthread_mutex_unlock(&ub->lock);
    struct tinybms_decode_opts dopts = { .battery_id = ub->opts.battery_id,
                                         .cell_order = (enum bms_cell_order)cell_order };
    struct bms_live_data sample;
    rc = tinybms_decode_live(regs, &dopts, &sample);
    if (rc)
        return rc;
    sample.timestamp_ms = gw_now_ms();
    sample.wall_time_ms = gw_wall_ms();
    /* After a loss, only a proving sample (complete and physically possible) ends it: a BMS
     * coming back with impossible values has not recovered. The sample is still published (the
     * battery service refuses it and counts it). The chemistry is not known here: the widest
     * physical ranges apply. */
    struct plausibility_result why;
    bool proving = !ub->sched.comm_lost || plausibility_check_sample(&sample, NULL, UINT8_MAX, &why);
    if (!proving)
        gw_log_ratelimited(&ub->proving_limit, 30000, GW_LOG_WARN, MOD,
                           "battery %u: the BMS answers again but its sample is impossible (%s): "
                           "communication not restored yet", ub->opts.battery_id, why.reason);

    pthread_mutex_lock(&ub->lock);
    ub->latest = sample;
    ub->have_latest = true;
    ub->stats.samples++;
    if (proving) {
        ub->stats.last_valid_ms = sample.timestamp_ms;
        ub->stats.comm_ok = true;
    }
    struct {
        uart_bms_listener_fn fn;
        void *ctx;
    } listeners[UART_BMS_MAX_LISTENERS];
    memcpy(listeners, ub->listeners, sizeof listeners);
    pthread_mutex_unlock(&ub->lock);

    if (proving && uart_bms__sample_ok(&ub->sched)) {
        ub->comm_event = (struct app_bms_comm){ .battery_id = ub->opts.battery_id,
                                                .last_valid_ms = sample.timestamp_ms };
        snprintf(ub->comm_event.reason, sizeof ub->comm_event.reason, "valid data again");
        GW_LOGI(MOD, "battery %u: communication restored", ub->opts.battery_id);
    }
    announce_comm(ub); /* before the sample: subscribers see RESTORED, then data */
    publish(ub, EVENT_BMS_DATA_UPDATE, &sample, sizeof sample);
    for (size_t i = 0; i < UART_BMS_MAX_LISTENERS; i++)
        if (listeners[i].fn)
            listeners[i].fn(&sample, listeners[i].ctx);
    return GW_OK;
}

/* Settings registers readable on this firmware, one at a time (fallback for old firmware). */
static int read_settings_individually(struct uart_bms *ub, struct bms_settings *out)
{
    memset(out, 0, sizeof *out);
    unsigned answered = 0;
    for (uint16_t reg = BMS_SETTINGS_FIRST; reg <= BMS_SETTINGS_LAST; reg++) {
        if (!tinybms_setting_info(reg))
            continue;
        uint16_t v;
        int rc = read_registers(ub, reg, 1, &v);
        if (rc == GW_ERR_NACK)
            continue; /* not on this firmware */
        if (rc)
            return rc;
        tinybms_decode_settings(&v, reg, 1, out);
        answered++;
    }
    return answered ? GW_OK : GW_ERR_NACK; /* refusing every register is no firmware at all */
}

static int read_settings_table(struct uart_bms *ub, uint8_t option, struct bms_settings *out)
{
    uint8_t req[16];
    int len = tinybms_encode_read_settings(req, sizeof req, option, SETTINGS_REGS);
    if (len < 0)
        return len;
    struct tinybms_reply reply;
    int rc = transact(ub, req, (size_t)len, TINYBMS_CMD_SETTINGS, &reply);
    if (rc)
        return rc;
    uint16_t regs[SETTINGS_REGS];
    size_t got = 0;
    rc = tinybms_reply_registers(&reply, regs, SETTINGS_REGS, &got);
    if (rc && rc != GW_ERR_OVERFLOW)
        return rc;
    memset(out, 0, sizeof *out);
    return tinybms_decode_settings(regs, BMS_SETTINGS_FIRST, got, out);
}

static int read_slow_item(struct uart_bms *ub, enum slow_item item)
{
    int rc = GW_OK;
    uint8_t id = ub->opts.battery_id;
    switch (item) {
    case SLOW_VERSION: {
        uint16_t regs[TINYBMS_REG_VERSION_COUNT];
        struct app_bms_version ev = { .battery_id = id };
        rc = read_registers(ub, TINYBMS_REG_VERSION_FIRST, TINYBMS_REG_VERSION_COUNT, regs);
        if (!rc)
            rc = tinybms_decode_version(regs, &ev.version);
        if (rc)
            break;
        pthread_mutex_lock(&ub->lock);
        bool first = !ub->version.valid;
        ub->version = ev.version;
        pthread_mutex_unlock(&ub->lock);
        if (first)
            GW_LOGI(MOD, "battery %u: TinyBMS hw %u.%u fw %u (internal %u) serial %s", id, ev.version.hw_version,
                    ev.version.hw_changes, ev.version.fw_public, ev.version.fw_internal, ev.version.serial);
        publish(ub, EVENT_BMS_VERSION_UPDATE, &ev, sizeof ev);
        break;
    }
    case SLOW_SETTINGS: {
        struct app_bms_settings ev = { .battery_id = id };
        uint16_t regs[SETTINGS_REGS];
        if (!ub->settings_individual) {
            rc = read_registers(ub, BMS_SETTINGS_FIRST, SETTINGS_REGS, regs);
            if (!rc)
                tinybms_decode_settings(regs, BMS_SETTINGS_FIRST, SETTINGS_REGS, &ev.settings);
        }
        if (ub->settings_individual || rc == GW_ERR_NACK) {
            bool probing = !ub->settings_individual;
            rc = read_settings_individually(ub, &ev.settings);
            if (probing && rc == GW_OK) { /* as for live reads: only a fallback that works switches */
                GW_LOGW(MOD, "battery %u: BMS refused the settings block; reading register by register",
                        id);
                ub->settings_individual = true;
            }
        }
        if (rc)
            break;
        pthread_mutex_lock(&ub->lock);
        ub->settings = ev.settings;
        pthread_mutex_unlock(&ub->lock);
        publish(ub, EVENT_BMS_SETTINGS_UPDATE, &ev, sizeof ev);
        break;
    }
    case SLOW_SETTINGS_MIN:
    case SLOW_SETTINGS_MAX: {
        struct bms_settings table;
        uint8_t option = item == SLOW_SETTINGS_MIN ? TINYBMS_SETTINGS_MIN : TINYBMS_SETTINGS_MAX;
        rc = read_settings_table(ub, option, &table);
        if (rc == GW_ERR_NACK) {
            rc = GW_OK; /* firmware without 0x1D: the documented ranges stay the reference */
            pthread_mutex_lock(&ub->lock);
            ub->stats.settings_limits_unsupported = true;
            pthread_mutex_unlock(&ub->lock);
            break;
        }
        if (rc)
            break;
        pthread_mutex_lock(&ub->lock);
        if (item == SLOW_SETTINGS_MIN)
            ub->settings_min = table;
        else
            ub->settings_max = table;
        pthread_mutex_unlock(&ub->lock);
        break;
    }
    case SLOW_STATS: {
        uint16_t regs[TINYBMS_REG_STATS_COUNT];
        struct app_bms_stats ev = { .battery_id = id };
        rc = read_registers(ub, TINYBMS_REG_STATS_FIRST, TINYBMS_REG_STATS_COUNT, regs);
        if (!rc)
            rc = tinybms_decode_statistics(regs, &ev.stats);
        if (rc)
            break;
        pthread_mutex_lock(&ub->lock);
        ub->statistics = ev.stats;
        pthread_mutex_unlock(&ub->lock);
        publish(ub, EVENT_BMS_STATS_UPDATE, &ev, sizeof ev);
        break;
    }
    case SLOW_EVENTS: {
        uint16_t regs[TINYBMS_REG_EVENTS_COUNT];
        struct app_bms_events ev = { .battery_id = id };
        rc = read_registers(ub, TINYBMS_REG_EVENTS_FIRST, TINYBMS_REG_EVENTS_COUNT, regs);
        if (!rc)
            rc = tinybms_decode_events(regs, &ev.log);
        if (rc)
            break;
        pthread_mutex_lock(&ub->lock);
        ub->events = ev.log;
        pthread_mutex_unlock(&ub->lock);
        publish(ub, EVENT_BMS_EVENTS_UPDATE, &ev, sizeof ev);
        break;
    }
    case SLOW_DONE:
        break;
    }
    return rc;
}

/* ------------------------------------------------------------------ commands */

static int run_write_setting(struct uart_bms *ub, uint16_t reg, uint16_t value)
{
    struct bms_settings mins, maxs;
    pthread_mutex_lock(&ub->lock);
    mins = ub->settings_min;
    maxs = ub->settings_max;
    pthread_mutex_unlock(&ub->lock);
    int rc = tinybms_setting_validate(reg, value, mins.valid ? &mins : NULL, maxs.valid ? &maxs : NULL);
    if (rc) {
        GW_LOGW(MOD, "battery %u: refused write of %u to register %u: %s", ub->opts.battery_id, value, reg,
                gw_strerror(rc));
        return rc;
    }
    uint8_t req[32];
    int len = tinybms_encode_write_modbus(req, sizeof req, reg, &value, 1);
    if (len < 0)
        return len;
    struct tinybms_reply reply;
    rc = transact(ub, req, (size_t)len, TINYBMS_CMD_WRITE_MODBUS, &reply);
    if (rc)
        return rc;
    uint16_t echo_addr = 0;
    uint8_t echo_count = 0;
    if (tinybms_reply_write_echo(&reply, &echo_addr, &echo_count) || echo_addr != reg || echo_count != 1)
        return GW_ERR_PROTO;
    uint16_t readback = 0;
    rc = read_registers(ub, reg, 1, &readback);
    if (rc)
        return rc;
    if (readback != value && !tinybms_setting_reads_accepted(reg, readback)) {
        GW_LOGW(MOD, "battery %u: register %u reads %u after writing %u", ub->opts.battery_id, reg, readback,
                value);
        return GW_ERR_PROTO;
    }
    pthread_mutex_lock(&ub->lock);
    tinybms_decode_settings(&readback, reg, 1, &ub->settings);
    struct app_bms_settings ev = { .battery_id = ub->opts.battery_id, .settings = ub->settings };
    pthread_mutex_unlock(&ub->lock);
    publish(ub, EVENT_BMS_SETTINGS_UPDATE, &ev, sizeof ev);
    GW_LOGI(MOD, "battery %u: register %u set to %u", ub->opts.battery_id, reg, value);
    return GW_OK;
}

static int run_reset(struct uart_bms *ub, uint8_t option)
{
    uint8_t req[8];
    int len = tinybms_encode_reset(req, sizeof req, option);
    if (len < 0)
        return len;
    struct tinybms_reply reply;
    int rc = transact(ub, req, (size_t)len, TINYBMS_CMD_RESET, &reply);
    if (rc)
        return rc;
    if (reply.kind != TINYBMS_REPLY_ACK)
        return GW_ERR_PROTO;
    /* What was cleared or restarted must be read again. */
    uart_bms__slow_restart(&ub->sched, option == TINYBMS_RESET_CLEAR_EVENTS ? SLOW_EVENTS
                                       : option == TINYBMS_RESET_CLEAR_STATISTICS ? SLOW_STATS
                                                                                  : SLOW_VERSION);
    return GW_OK;
}

static void run_pending_command(struct uart_bms *ub)
{
    pthread_mutex_lock(&ub->lock);
    if (!ub->command.pending || ub->command.abandoned) {
        ub->command.pending = false;
        pthread_mutex_unlock(&ub->lock);
        return;
    }
    struct command cmd = ub->command;
    pthread_mutex_unlock(&ub->lock);

    int rc;
    if (!ub->port) {
        rc = GW_ERR_CLOSED;
    } else {
        switch (cmd.kind) {
        case CMD_WRITE_SETTING: rc = run_write_setting(ub, cmd.reg, cmd.value); break;
        case CMD_RESET: rc = run_reset(ub, TINYBMS_RESET_BMS); break;
        case CMD_CLEAR_EVENTS: rc = run_reset(ub, TINYBMS_RESET_CLEAR_EVENTS); break;
        case CMD_CLEAR_STATS: rc = run_reset(ub, TINYBMS_RESET_CLEAR_STATISTICS); break;
        default: rc = GW_ERR_INVAL; break;
        }
    }
    pthread_mutex_lock(&ub->lock);
    ub->command.result = rc;
    ub->command.done = true;
    ub->command.pending = false;
    pthread_cond_broadcast(&ub->command_done);
    pthread_mutex_unlock(&ub->lock);
}

static int submit_command(struct uart_bms *ub, enum command_kind kind, uint16_t reg, uint16_t value,
                          uint32_t timeout_ms)
{
    uint64_t give_up = gw_real_ms() + timeout_ms; /* the caller's bound: real time */
    pthread_mutex_lock(&ub->lock);
    if (!ub->running) {
        pthread_mutex_unlock(&ub->lock);
        return GW_ERR_STATE;
    }
    if (ub->command.pending) {
        pthread_mutex_unlock(&ub->lock);
        return GW_ERR_BUSY;
    }
    ub->command = (struct command){ .kind = kind, .reg = reg, .value = value, .pending = true };
    pthread_cond_broadcast(&ub->wake);
    int rc = GW_OK;
    while (!ub->command.done) {
        uint64_t now = gw_real_ms();
        if (now >= give_up) {
            ub->command.abandoned = true;
            rc = GW_ERR_TIMEOUT;
            break;
        }
        uint64_t left = give_up - now;
        gw_clock_wait_real(&ub->command_done, &ub->lock, left > UINT32_MAX ? UINT32_MAX : (uint32_t)left);
    }
    if (ub->command.done)
        rc = ub->command.result;
    pthread_mutex_unlock(&ub->lock);
    return rc;
}

int uart_bms_write_setting(struct uart_bms *ub, uint16_t reg, uint16_t value, uint32_t timeout_ms)
{
    if (!ub)
        return GW_ERR_INVAL;
    if (reg < BMS_WRITABLE_FIRST || reg > BMS_WRITABLE_LAST)
        return GW_ERR_RANGE;
    return submit_command(ub, CMD_WRITE_SETTING, reg, value, timeout_ms);
}

int uart_bms_restart_bms(struct uart_bms *ub, uint32_t timeout_ms)
{
    if (!ub)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&ub->lock);
    uint64_t now = gw_now_ms();
    if (ub->last_restart_ms && now - ub->last_restart_ms < RESTART_GUARD_MS) {
        pthread_mutex_unlock(&ub->lock);
        GW_LOGW(MOD, "battery %u: restart refused: the previous one was %llu s ago", ub->opts.battery_id,
                (unsigned long long)((now - ub->last_restart_ms) / 1000));
        return GW_ERR_BUSY;
    }
    uint64_t previous = ub->last_restart_ms;
    ub->last_restart_ms = now ? now : 1; /* taken at once: a concurrent second request is refused */
    pthread_mutex_unlock(&ub->lock);
    int rc = submit_command(ub, CMD_RESET, 0, 0, timeout_ms);
    if (rc == GW_ERR_STATE || rc == GW_ERR_BUSY || rc == GW_ERR_CLOSED) {
        /* Never sent (not running, another command in progress, no device): the BMS did not
         * restart, so the guard must not block the retry. A timeout or NACK keeps it: the
         * request may have reached the BMS. */
        pthread_mutex_lock(&ub->lock);
        if (ub->last_restart_ms == (now ? now : 1))
            ub->last_restart_ms = previous;
        pthread_mutex_unlock(&ub->lock);
    }
    GW_LOGI(MOD, "battery %u: BMS restart requested: %s", ub->opts.battery_id, gw_strerror(rc));
    return rc;
}

int uart_bms_clear_events(struct uart_bms *ub, uint32_t timeout_ms)
{
    return ub ? submit_command(ub, CMD_CLEAR_EVENTS, 0, 0, timeout_ms) : GW_ERR_INVAL;
}

int uart_bms_clear_statistics(struct uart_bms *ub, uint32_t timeout_ms)
{
    return ub ? submit_command(ub, CMD_CLEAR_STATS, 0, 0, timeout_ms) : GW_ERR_INVAL;
}

/* ------------------------------------------------------------------ poller */

/* comm_lost was just set by the step: what the announcement says and the one log line. */
static void comm_lost(struct uart_bms *ub)
{
    pthread_mutex_lock(&ub->lock);
    uint64_t last = ub->stats.last_valid_ms;
    uint32_t timeout = ub->opts.comm_timeout_ms;
    struct app_bms_comm *c = &ub->comm_event;
    *c = (struct app_bms_comm){ .battery_id = ub->opts.battery_id, .last_valid_ms = last };
    ub->stats.comm_ok = false;
    snprintf(c->reason, sizeof c->reason, "%s", !ub->port ? "serial device unavailable"
                                              : ub->stats.last_error_text[0] ? ub->stats.last_error_text
                                                                             : "no valid answer");
    pthread_mutex_unlock(&ub->lock);
    GW_LOGE(MOD, "battery %u: no valid data for %u s (%s)", ub->opts.battery_id, timeout / 1000, c->reason);
}

static void poll_live(struct uart_bms *ub, uint64_t now)
{
    count(ub, &ub->stats.polls);
    pthread_mutex_lock(&ub->lock);
    uint64_t resends_before = ub->stats.resends, poll_no = ub->stats.polls;
    pthread_mutex_unlock(&ub->lock);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = read_live(ub);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    uint64_t cycle_us = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000);
    pthread_mutex_lock(&ub->lock);
    ub->stats.last_cycle_us = cycle_us;
    uint64_t resent = ub->stats.resends - resends_before;
    pthread_mutex_unlock(&ub->lock);
    /* -v: one line per poll cycle (debug level). */
    GW_LOGD(MOD, "battery %u: poll %llu: %s in %llu.%llu ms%s", ub->opts.battery_id, (unsigned long long)poll_no,
            rc ? gw_strerror(rc) : "live registers read", (unsigned long long)(cycle_us / 1000),
            (unsigned long long)(cycle_us % 1000 / 100), resent ? " (after a resend)" : "");
    if (rc && rc != GW_ERR_CLOSED)
        gw_log_ratelimited(&ub->xfer_limit, 30000, GW_LOG_WARN, MOD, "battery %u: live read failed: %s",
                           ub->opts.battery_id, gw_strerror(rc));
    uart_bms__polled(&ub->sched, now, gw_now_ms(), rc == GW_OK && ub->port);
}

static const char *slow_item_name(int item)
{
    static const char *const names[] = { "version", "settings", "settings minimums", "settings maximums",
                                         "statistics", "events" };
    return item >= 0 && item < SLOW_DONE ? names[item] : "?";
}

static void poll_slow(struct uart_bms *ub, int item)
{
    int rc = read_slow_item(ub, (enum slow_item)item);
    GW_LOGD(MOD, "battery %u: slow read of the %s: %s", ub->opts.battery_id, slow_item_name(item),
            rc ? gw_strerror(rc) : "ok");
    if (rc && rc != GW_ERR_CLOSED)
        gw_log_ratelimited(&ub->xfer_limit, 30000, GW_LOG_WARN, MOD, "battery %u: slow read of the %s failed: %s",
                           ub->opts.battery_id, slow_item_name(item), gw_strerror(rc));
    uart_bms__slow_done(&ub->sched, gw_now_ms(), rc == GW_ERR_CLOSED, ub->opts.slow_poll_interval_s);
}

/* The poller: a shell around uart_bms__decide. Inputs are read and the step decided under the
 * lock, so a command or a setting change between the decision and the wait cannot be missed;
 * the action runs without the lock; with nothing due the thread sleeps in one gw_clock_wait
 * until the step's deadline or an event (stop, command, interval or timeout change). */
static void *poller_main(void *arg)
{
    struct uart_bms *ub = arg;
    pthread_mutex_lock(&ub->lock);
    uart_bms__sched_init(&ub->sched, gw_now_ms(), ub->opts.poll_interval_ms);
    while (!ub->stop_requested) {
        struct uart_bms__inputs in = {
            .now_ms = gw_now_ms(),
            .poll_interval_ms = ub->opts.poll_interval_ms,
            .comm_timeout_ms = ub->opts.comm_timeout_ms,
            .port_open = ub->port != NULL,
            .command_pending = ub->command.pending,
            .last_valid_ms = ub->stats.last_valid_ms,
            .last_cycle_ms = (uint32_t)(ub->stats.last_cycle_us / 1000),
        };
        struct uart_bms__decision d = uart_bms__decide(&ub->sched, &in);
        if (d.action == UART_BMS__WAIT) {
            watchdog_checkin(ub->opts.watchdog, d.deadline_ms); /* back by then, unless stuck */
            gw_clock_wait(&ub->wake, &ub->lock, d.deadline_ms);
            continue;
        }
        watchdog_checkin(ub->opts.watchdog, in.now_ms); /* running now: each action is bounded */
        pthread_mutex_unlock(&ub->lock);
        switch (d.action) {
        case UART_BMS__OPEN: open_port(ub, in.now_ms); break;
        case UART_BMS__COMMAND: run_pending_command(ub); break;
        case UART_BMS__POLL: poll_live(ub, in.now_ms); break;
        case UART_BMS__SLOW: poll_slow(ub, d.slow); break;
        case UART_BMS__COMM_LOST: comm_lost(ub); break;
        case UART_BMS__ANNOUNCE: announce_comm(ub); break;
        case UART_BMS__WAIT: break;
        }
        pthread_mutex_lock(&ub->lock);
    }
    pthread_mutex_unlock(&ub->lock);
    close_port(ub, NULL);
    watchdog_checkin(ub->opts.watchdog, WATCHDOG_IDLE); /* stopped: not expected back */
    return NULL;
}

int uart_bms_start(struct uart_bms *ub)
{
    if (!ub)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&ub->lock);
    if (ub->running) {
        pthread_mutex_unlock(&ub->lock);
        return GW_ERR_STATE;
    }
    ub->stop_requested = false;
    /* Created under the lock: ub->thread is read under it, and pthread_create may store it
     * after the new thread runs. */
    int err = pthread_create(&ub->thread, NULL, poller_main, ub);
    ub->running = err == 0;
    if (!err) {
        char name[16];
        snprintf(name, sizeof name, "bms-poll%u", (unsigned)ub->opts.battery_id);
        pthread_setname_np(ub->thread, name);
    }
    pthread_mutex_unlock(&ub->lock);
    if (err) {
        GW_LOGE(MOD, "battery %u: cannot start the poller thread: %s", ub->opts.battery_id, strerror(err));
        return GW_ERR_IO;
    }
    return GW_OK;
}

void uart_bms_stop(struct uart_bms *ub)
{
    if (!ub)
        return;
    pthread_mutex_lock(&ub->lock);
    if (!ub->running) {
        pthread_mutex_unlock(&ub->lock);
        return;
    }
    ub->stop_requested = true;
    pthread_cond_broadcast(&ub->wake);
    pthread_mutex_unlock(&ub->lock);
    pthread_join(ub->thread, NULL);
    pthread_mutex_lock(&ub->lock);
    ub->running = false;
    if (ub->command.pending) {
        ub->command.pending = false;
        ub->command.done = true;
        ub->command.result = GW_ERR_STATE;
        pthread_cond_broadcast(&ub->command_done);
    }
    pthread_mutex_unlock(&ub->lock);
}

void uart_bms_destroy(struct uart_bms *ub)
{
    if (!ub)
        return;
    uart_bms_stop(ub);
    pthread_mutex_destroy(&ub->lock);
    pthread_cond_destroy(&ub->wake);
    pthread_cond_destroy(&ub->command_done);
    free(ub);
}

/* ------------------------------------------------------------------ getters and settings */

int uart_bms_get_latest(struct uart_bms *ub, struct bms_live_data *out)
{
    if (!ub || !out)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&ub->lock);
    int rc = ub->have_latest ? GW_OK : GW_ERR_NOT_FOUND;
    if (!rc)
        *out = ub->latest;
    pthread_mutex_unlock(&ub->lock);
    return rc;
}

int uart_bms_get_settings(struct uart_bms *ub, struct bms_settings *current, struct bms_settings *min,
                          struct bms_settings *max)
{
    if (!ub)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&ub->lock);
    int rc = ub->settings.valid ? GW_OK : GW_ERR_NOT_FOUND;
    if (current)
        *current = ub->settings;
    if (min)
        *min = ub->settings_min;
    if (max)
        *max = ub->settings_max;
    pthread_mutex_unlock(&ub->lock);
    return rc;
}

/* Copies one snapshot field under the lock; GW_ERR_NOT_FOUND until it has been read once. */
static int copy_snapshot(struct uart_bms *ub, void *out, const void *field, size_t size, const bool *valid)
{
    if (!ub || !out)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&ub->lock);
    memcpy(out, field, size);
    int rc = *valid ? GW_OK : GW_ERR_NOT_FOUND;
    pthread_mutex_unlock(&ub->lock);
    return rc;
}

int uart_bms_get_version(struct uart_bms *ub, struct bms_version *out)
{
    return ub ? copy_snapshot(ub, out, &ub->version, sizeof *out, &ub->version.valid) : GW_ERR_INVAL;
}

int uart_bms_add_listener(struct uart_bms *ub, uart_bms_listener_fn fn, void *ctx)
{
    if (!ub || !fn)
        return GW_ERR_INVAL;
    int rc = GW_ERR_FULL;
    pthread_mutex_lock(&ub->lock);
    for (size_t i = 0; i < UART_BMS_MAX_LISTENERS; i++) {
        if (!ub->listeners[i].fn) {
            ub->listeners[i].fn = fn;
            ub->listeners[i].ctx = ctx;
            rc = GW_OK;
            break;
        }
    }
    pthread_mutex_unlock(&ub->lock);
    if (rc)
        GW_LOGE(MOD, "listener rejected: all %d slots in use", UART_BMS_MAX_LISTENERS);
    return rc;
}

int uart_bms_set_poll_interval_ms(struct uart_bms *ub, uint32_t interval_ms)
{
    if (!ub)
        return GW_ERR_INVAL;
    if (interval_ms < 100 || interval_ms > 10000)
        return GW_ERR_RANGE;
    pthread_mutex_lock(&ub->lock);
    ub->opts.poll_interval_ms = interval_ms;
    pthread_cond_broadcast(&ub->wake);
    pthread_mutex_unlock(&ub->lock);
    return GW_OK;
}

int uart_bms_set_cell_order(struct uart_bms *ub, uint8_t cell_order)
{
    if (!ub || cell_order > BMS_CELL_ORDER_REVERSED)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&ub->lock);
    ub->opts.cell_order = cell_order;
    pthread_mutex_unlock(&ub->lock);
    return GW_OK;
}

void uart_bms_set_comm_timeout_ms(struct uart_bms *ub, uint32_t timeout_ms)
{
    if (!ub || !timeout_ms)
        return;
    pthread_mutex_lock(&ub->lock);
    ub->opts.comm_timeout_ms = timeout_ms;
    pthread_cond_broadcast(&ub->wake); /* the comm-lost deadline moved */
    pthread_mutex_unlock(&ub->lock);
}

void uart_bms_get_stats(struct uart_bms *ub, struct uart_bms_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!ub)
        return;
    pthread_mutex_lock(&ub->lock);
    *out = ub->stats;
    pthread_mutex_unlock(&ub->lock);
}
