/* slcan (LAWICEL ASCII protocol) over a serial device: USB CAN adapters such as CANable,
 * CANtact, USBtin, or a pseudo-terminal in tests.
 * Host → adapter: "C\r" close, "Sn\r" bitrate, "O\r" open, "tIIIL<data>\r" / "TIIIIIIIIL<data>\r"
 * transmit. Adapter → host: the same frame lines for received frames, "\r" OK, "\a" error,
 * "z\r"/"Z\r" transmit acknowledgement. */
#define _POSIX_C_SOURCE 200809L /* cfmakeraw and B230400.. come from _DEFAULT_SOURCE (set by the build) */
#include "can_transport.h"
#include "can_transport_internal.h"

#include "gw_error.h"
#include "gw_log.h"
#include "serial.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPEN_CMD_TIMEOUT_MS 500u

/* ---- codec (pure) ---------------------------------------------------------------------- */

static const char hex_digits[] = "0123456789ABCDEF";

int can_slcan_bitrate_code(uint32_t bitrate, char *code)
{
    static const uint32_t rates[] = { 10000, 20000, 50000, 100000, 125000, 250000, 500000, 800000, 1000000 };
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        if (rates[i] == bitrate) {
            if (code)
                *code = (char)('0' + i);
            return GW_OK;
        }
    }
    return GW_ERR_INVAL;
}

int can_slcan_encode(const struct can_frame_gw *frame, char *buf, size_t cap)
{
    if (!buf || can_frame_validate(frame) != GW_OK)
        return GW_ERR_INVAL;
    size_t id_digits = frame->ext ? 8 : 3;
    size_t need = 1 + id_digits + 1 + (frame->rtr ? 0 : 2u * frame->dlc) + 1; /* + '\r' */
    if (cap < need + 1)
        return GW_ERR_OVERFLOW;
    size_t n = 0;
    if (frame->rtr)
        buf[n++] = frame->ext ? 'R' : 'r';
    else
        buf[n++] = frame->ext ? 'T' : 't';
    for (size_t i = 0; i < id_digits; i++)
        buf[n++] = hex_digits[(frame->id >> (4 * (id_digits - 1 - i))) & 0xF];
    buf[n++] = (char)('0' + frame->dlc);
    if (!frame->rtr) {
        for (uint8_t i = 0; i < frame->dlc; i++) {
            buf[n++] = hex_digits[frame->data[i] >> 4];
            buf[n++] = hex_digits[frame->data[i] & 0xF];
        }
    }
    buf[n++] = '\r';
    buf[n] = '\0';
    return (int)n;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parses `digits` hex characters; false on a non-hex character. */
static bool parse_hex(const char *s, size_t digits, uint32_t *out)
{
    uint32_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        int h = hex_value(s[i]);
        if (h < 0)
            return false;
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return true;
}

int can_slcan_parse_frame(const char *line, size_t len, struct can_frame_gw *frame)
{
    if (!line || !frame || len < 1)
        return GW_ERR_PROTO;
    struct can_frame_gw f = { 0 };
    switch (line[0]) {
    case 't': break;
    case 'T': f.ext = true; break;
    case 'r': f.rtr = true; break;
    case 'R': f.ext = true; f.rtr = true; break;
    default: return GW_ERR_PROTO;
    }
    size_t id_digits = f.ext ? 8 : 3;
    if (len < 1 + id_digits + 1)
        return GW_ERR_PROTO;
    uint32_t id, dlc;
    if (!parse_hex(line + 1, id_digits, &id) || id > (f.ext ? CAN_EXT_ID_MAX : CAN_STD_ID_MAX))
        return GW_ERR_PROTO;
    char dlc_char = line[1 + id_digits];
    if (dlc_char < '0' || dlc_char > '8')
        return GW_ERR_PROTO;
    dlc = (uint32_t)(dlc_char - '0');
    size_t pos = 1 + id_digits + 1;
    size_t data_digits = f.rtr ? 0 : 2u * dlc;
    /* Exactly the data, optionally followed by a 4-digit timestamp (Z1 mode). */
    if (len != pos + data_digits && len != pos + data_digits + 4)
        return GW_ERR_PROTO;
    for (uint32_t i = 0; i < data_digits / 2; i++) {
        uint32_t byte;
        if (!parse_hex(line + pos + 2 * i, 2, &byte))
            return GW_ERR_PROTO;
        f.data[i] = (uint8_t)byte;
    }
    uint32_t ts;
    if (len == pos + data_digits + 4 && !parse_hex(line + pos + data_digits, 4, &ts))
        return GW_ERR_PROTO;
    f.id = id;
    f.dlc = (uint8_t)dlc;
    *frame = f;
    return GW_OK;
}

int can_slcan_parser_feed(struct can_slcan_parser *p, uint8_t byte, struct can_frame_gw *frame)
{
    if (byte == '\a') {
        /* An error reply is a whole message on its own; a partial line before it is junk. */
        p->len = 0;
        p->overlong = false;
        return CAN_SLCAN_ERROR;
    }
    if (byte == '\n')
        return CAN_SLCAN_NONE;
    if (byte != '\r') {
        if (p->overlong)
            return CAN_SLCAN_NONE;
        if (p->len >= CAN_SLCAN_LINE_MAX) {
            p->overlong = true;
            return CAN_SLCAN_NONE;
        }
        p->line[p->len++] = (char)byte;
        return CAN_SLCAN_NONE;
    }
    /* End of line. */
    size_t len = p->len;
    bool overlong = p->overlong;
    p->len = 0;
    p->overlong = false;
    if (overlong)
        return CAN_SLCAN_OVERLONG;
    if (len == 0)
        return CAN_SLCAN_OK;
    if (len == 1 && (p->line[0] == 'z' || p->line[0] == 'Z'))
        return CAN_SLCAN_TX_ACK;
    struct can_frame_gw f;
    if (can_slcan_parse_frame(p->line, len, &f) == GW_OK) {
        if (frame)
            *frame = f;
        return CAN_SLCAN_FRAME;
    }
    return CAN_SLCAN_IGNORED;
}

int can_slcan__parse_arg(const char *arg, char *path, size_t cap, uint32_t *baud)
{
    if (!arg || !path || !baud || cap == 0)
        return GW_ERR_INVAL;
    const char *at = strrchr(arg, '@');
    size_t path_len = at ? (size_t)(at - arg) : strlen(arg);
    if (path_len == 0 || path_len >= cap)
        return GW_ERR_INVAL;
    uint32_t b = CAN_SLCAN_DEFAULT_BAUD;
    if (at) {
        const char *s = at + 1;
        if (!*s)
            return GW_ERR_INVAL;
        uint64_t v = 0;
        for (; *s; s++) {
            if (*s < '0' || *s > '9')
                return GW_ERR_INVAL;
            v = v * 10 + (uint64_t)(*s - '0');
            if (v > 100000000u)
                return GW_ERR_INVAL;
        }
        if (v == 0)
            return GW_ERR_INVAL;
        b = (uint32_t)v;
    }
    memcpy(path, arg, path_len);
    path[path_len] = '\0';
    *baud = b;
    return GW_OK;
}

/* ---- transport ------------------------------------------------------------------------- */

struct slcan {
    struct serial_port *port;         /* the adapter's serial line (src/port/serial) */
    char path[CAN_SPEC_MAX];
    pthread_mutex_t write_lock;       /* one line at a time on the wire */
    pthread_mutex_t read_lock;        /* parser and rx buffer */
    pthread_mutex_t stats_lock;
    bool resync_needed;               /* a line may have been cut short: start the next with '\r' */
    struct can_slcan_parser parser;
    uint8_t rx_buf[256];
    size_t rx_pos, rx_len;
    struct can_transport_stats stats;
};

static void stat_add(struct slcan *s, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&s->stats_lock);
    *field += n;
    pthread_mutex_unlock(&s->stats_lock);
}

/* Writes all of buf before timeout_ms; a full TX queue until then counts as tx_queue_full. */
static int write_line(struct slcan *s, const char *buf, size_t len, uint32_t timeout_ms)
{
    int rc = serial_termios_ops.write(s->port, (const uint8_t *)buf, len, timeout_ms);
    if (rc == GW_ERR_TIMEOUT)
        stat_add(s, &s->stats.tx_queue_full, 1);
    return rc;
}

static int slcan_open(struct can_transport *t, const char *arg, uint32_t bitrate)
{
    char code;
    if (can_slcan_bitrate_code(bitrate, &code) != GW_OK) {
        GW_LOGE(MOD, "unsupported CAN bitrate %u for slcan (10k, 20k, 50k, 100k, 125k, "
                "250k, 500k, 800k or 1M)", (unsigned)bitrate);
        return GW_ERR_INVAL;
    }
    struct slcan *s = calloc(1, sizeof *s);
    if (!s)
        return GW_ERR_NOMEM;
    pthread_mutex_init(&s->write_lock, NULL);
    pthread_mutex_init(&s->read_lock, NULL);
    pthread_mutex_init(&s->stats_lock, NULL);
    uint32_t baud;
    int rc = can_slcan__parse_arg(arg, s->path, sizeof s->path, &baud);
    if (rc != GW_OK) {
        GW_LOGE(MOD, "invalid slcan device '%s' (expected /dev/ttyX or /dev/ttyX@baud)", arg);
        goto err;
    }
    rc = serial_termios_ops.open(s->path, baud, &s->port);
    if (rc != GW_OK) {
        s->port = NULL;
        GW_LOGE(MOD, "cannot open %s at %u baud: %s", s->path, (unsigned)baud,
                rc == GW_ERR_INVAL ? "unsupported baud rate" : gw_strerror(rc));
        goto err;
    }
    /* Close first (an adapter left open from a previous run refuses S; its error reply is
     * counted by recv like any other), then bitrate, then open. */
    char cmd_s[4] = { 'S', code, '\r', '\0' };
    const char *cmds[] = { "C\r", cmd_s, "O\r" };
    for (size_t i = 0; i < 3; i++) {
        rc = write_line(s, cmds[i], strlen(cmds[i]), OPEN_CMD_TIMEOUT_MS);
        if (rc != GW_OK) {
            GW_LOGE(MOD, "cannot send the open sequence to %s: %s", s->path, gw_strerror(rc));
            goto err;
        }
    }
    t->impl = s;
    GW_LOGI(MOD, "opened %s (serial %u baud, CAN %u bit/s, S%c)", s->path, (unsigned)baud,
            (unsigned)bitrate, code);
    return GW_OK;
err:
    serial_termios_ops.close(s->port);
    pthread_mutex_destroy(&s->write_lock);
    pthread_mutex_destroy(&s->read_lock);
    pthread_mutex_destroy(&s->stats_lock);
    free(s);
    return rc;
}

static int slcan_send(struct can_transport *t, const struct can_frame_gw *frame, uint32_t timeout_ms)
{
    struct slcan *s = t->impl;
    char line[CAN_SLCAN_LINE_MAX + 2];
    line[0] = '\r';
    int n = can_slcan_encode(frame, line + 1, sizeof line - 1);
    if (n < 0) {
        stat_add(s, &s->stats.tx_failed, 1);
        return GW_ERR_INVAL;
    }
    pthread_mutex_lock(&s->write_lock);
    /* After a line that may have been cut short, a lone '\r' ends it so the adapter rejects
     * only that one (an extra empty command is harmless). */
    const char *start = s->resync_needed ? line : line + 1;
    size_t len = (size_t)n + (s->resync_needed ? 1u : 0u);
    int rc = write_line(s, start, len, timeout_ms);
    s->resync_needed = rc != GW_OK;
    pthread_mutex_unlock(&s->write_lock);
    stat_add(s, rc == GW_OK ? &s->stats.tx_ok : &s->stats.tx_failed, 1);
    return rc;
}

/* Runs buffered bytes through the parser until a frame comes out. Called with read_lock. */
static bool drain_parser(struct slcan *s, struct can_frame_gw *frame)
{
    while (s->rx_pos < s->rx_len) {
        int ev = can_slcan_parser_feed(&s->parser, s->rx_buf[s->rx_pos++], frame);
        switch (ev) {
        case CAN_SLCAN_FRAME: stat_add(s, &s->stats.rx, 1); return true;
        case CAN_SLCAN_ERROR: stat_add(s, &s->stats.bus_errors, 1); break;
        case CAN_SLCAN_TX_ACK: stat_add(s, &s->stats.tx_acks, 1); break;
        case CAN_SLCAN_IGNORED: stat_add(s, &s->stats.rx_ignored, 1); break;
        case CAN_SLCAN_OVERLONG: stat_add(s, &s->stats.rx_overlong, 1); break;
        default: break;
        }
    }
    return false;
}

static int slcan_recv(struct can_transport *t, struct can_frame_gw *frame, uint32_t timeout_ms)
{
    struct slcan *s = t->impl;
    uint64_t deadline = can__deadline(timeout_ms);
    int rc = GW_ERR_TIMEOUT;
    bool have_read = false;
    pthread_mutex_lock(&s->read_lock);
    for (;;) {
        if (drain_parser(s, frame)) {
            rc = GW_OK;
            break;
        }
        /* Bytes that never make a frame (wrong baud rate, noise) may keep coming: the deadline
         * holds while data flows too, not only when the tty is idle. One read is always tried. */
        int left = can__remaining_ms(deadline);
        if (left <= 0) {
            if (have_read) {
                rc = GW_ERR_TIMEOUT;
                break;
            }
            left = 0;
        }
        have_read = true;
        size_t got = 0;
        rc = serial_termios_ops.read(s->port, s->rx_buf, sizeof s->rx_buf, (uint32_t)left, &got);
        if (rc != GW_OK)
            break; /* GW_ERR_CLOSED: the adapter went away; GW_ERR_IO */
        s->rx_pos = 0;
        s->rx_len = got;
        rc = GW_ERR_TIMEOUT;
        if (got == 0 && left == 0)
            break; /* nothing there and no time left */
    }
    pthread_mutex_unlock(&s->read_lock);
    return rc;
}

/* Readable when the adapter sent bytes; a recv with timeout 0 that returned GW_ERR_TIMEOUT has
 * consumed everything read before (the parser keeps no complete line). */
static int slcan_poll_fd(struct can_transport *t)
{
    const struct slcan *s = t->impl;
    return serial_termios_fd(s->port);
}

static void slcan_close(struct can_transport *t)
{
    struct slcan *s = t->impl;
    if (!s)
        return;
    /* Leave the adapter closed (it stops acknowledging frames on the bus). Best effort. */
    (void)write_line(s, "C\r", 2, 100);
    serial_termios_ops.close(s->port);
    pthread_mutex_destroy(&s->write_lock);
    pthread_mutex_destroy(&s->read_lock);
    pthread_mutex_destroy(&s->stats_lock);
    free(s);
    t->impl = NULL;
}

static void slcan_stats(struct can_transport *t, struct can_transport_stats *out)
{
    struct slcan *s = t->impl;
    pthread_mutex_lock(&s->stats_lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->stats_lock);
}

const struct can_transport_ops can_slcan_ops = {
    .name = "slcan",
    .open = slcan_open,
    .send = slcan_send,
    .recv = slcan_recv,
    .close = slcan_close,
    .stats = slcan_stats,
    .poll_fd = slcan_poll_fd,
};
