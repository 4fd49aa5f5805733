/* TinyBMS framing: CRC, request encoders, request/reply frame decoders, streaming decoder. */
#include <string.h>

#include "tinybms.h"
#include "tinybms_internal.h"

/* ---------------------------------------------------------------- CRC */

/* Byte-wise table for the reflected polynomial 0xA001 (the standard MODBUS table): the CRC is on
 * the decoder's hot path, and C11 cannot build the table at compile time. */
static const uint16_t crc_table[256] = {
    0x0000, 0xC0C1, 0xC181, 0x0140, 0xC301, 0x03C0, 0x0280, 0xC241, 0xC601, 0x06C0, 0x0780,
    0xC741, 0x0500, 0xC5C1, 0xC481, 0x0440, 0xCC01, 0x0CC0, 0x0D80, 0xCD41, 0x0F00, 0xCFC1,
    0xCE81, 0x0E40, 0x0A00, 0xCAC1, 0xCB81, 0x0B40, 0xC901, 0x09C0, 0x0880, 0xC841, 0xD801,
    0x18C0, 0x1980, 0xD941, 0x1B00, 0xDBC1, 0xDA81, 0x1A40, 0x1E00, 0xDEC1, 0xDF81, 0x1F40,
    0xDD01, 0x1DC0, 0x1C80, 0xDC41, 0x1400, 0xD4C1, 0xD581, 0x1540, 0xD701, 0x17C0, 0x1680,
    0xD641, 0xD201, 0x12C0, 0x1380, 0xD341, 0x1100, 0xD1C1, 0xD081, 0x1040, 0xF001, 0x30C0,
    0x3180, 0xF141, 0x3300, 0xF3C1, 0xF281, 0x3240, 0x3600, 0xF6C1, 0xF781, 0x3740, 0xF501,
    0x35C0, 0x3480, 0xF441, 0x3C00, 0xFCC1, 0xFD81, 0x3D40, 0xFF01, 0x3FC0, 0x3E80, 0xFE41,
    0xFA01, 0x3AC0, 0x3B80, 0xFB41, 0x3900, 0xF9C1, 0xF881, 0x3840, 0x2800, 0xE8C1, 0xE981,
    0x2940, 0xEB01, 0x2BC0, 0x2A80, 0xEA41, 0xEE01, 0x2EC0, 0x2F80, 0xEF41, 0x2D00, 0xEDC1,
    0xEC81, 0x2C40, 0xE401, 0x24C0, 0x2580, 0xE541, 0x2700, 0xE7C1, 0xE681, 0x2640, 0x2200,
    0xE2C1, 0xE381, 0x2340, 0xE101, 0x21C0, 0x2080, 0xE041, 0xA001, 0x60C0, 0x6180, 0xA141,
    0x6300, 0xA3C1, 0xA281, 0x6240, 0x6600, 0xA6C1, 0xA781, 0x6740, 0xA501, 0x65C0, 0x6480,
    0xA441, 0x6C00, 0xACC1, 0xAD81, 0x6D40, 0xAF01, 0x6FC0, 0x6E80, 0xAE41, 0xAA01, 0x6AC0,
    0x6B80, 0xAB41, 0x6900, 0xA9C1, 0xA881, 0x6840, 0x7800, 0xB8C1, 0xB981, 0x7940, 0xBB01,
    0x7BC0, 0x7A80, 0xBA41, 0xBE01, 0x7EC0, 0x7F80, 0xBF41, 0x7D00, 0xBDC1, 0xBC81, 0x7C40,
    0xB401, 0x74C0, 0x7580, 0xB541, 0x7700, 0xB7C1, 0xB681, 0x7640, 0x7200, 0xB2C1, 0xB381,
    0x7340, 0xB101, 0x71C0, 0x7080, 0xB041, 0x5000, 0x90C1, 0x9181, 0x5140, 0x9301, 0x53C0,
    0x5280, 0x9241, 0x9601, 0x56C0, 0x5780, 0x9741, 0x5500, 0x95C1, 0x9481, 0x5440, 0x9C01,
    0x5CC0, 0x5D80, 0x9D41, 0x5F00, 0x9FC1, 0x9E81, 0x5E40, 0x5A00, 0x9AC1, 0x9B81, 0x5B40,
    0x9901, 0x59C0, 0x5880, 0x9841, 0x8801, 0x48C0, 0x4980, 0x8941, 0x4B00, 0x8BC1, 0x8A81,
    0x4A40, 0x4E00, 0x8EC1, 0x8F81, 0x4F40, 0x8D01, 0x4DC0, 0x4C80, 0x8C41, 0x4400, 0x84C1,
    0x8581, 0x4540, 0x8701, 0x47C0, 0x4680, 0x8641, 0x8201, 0x42C0, 0x4380, 0x8341, 0x4100,
    0x81C1, 0x8081, 0x4040,
};

uint16_t tinybms_crc16(const uint8_t *buf, size_t len)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc >> 8) ^ crc_table[(crc ^ buf[i]) & 0xFF]);
    return crc;
}

/* Appends the CRC of buf[0..len) LSB first; returns the new length. Caller checked room. */
static size_t put_crc(uint8_t *buf, size_t len)
{
    uint16_t crc = tinybms_crc16(buf, len);
    buf[len] = (uint8_t)(crc & 0xFF);
    buf[len + 1] = (uint8_t)(crc >> 8);
    return len + 2;
}

static bool crc_ok(const uint8_t *buf, size_t frame_len)
{
    uint16_t crc = tinybms_crc16(buf, frame_len - 2);
    return buf[frame_len - 2] == (crc & 0xFF) && buf[frame_len - 1] == (crc >> 8);
}

/* The shared gate of both decoders: flen (from the frame-length function) is an error or 0
 * ("need more") as is; a frame longer than what arrived needs more; then the CRC must match.
 * Returns flen when the whole frame is there and intact. */
static int whole_frame(const uint8_t *buf, size_t len, int flen)
{
    if (flen <= 0)
        return flen;
    if ((size_t)flen > len)
        return 0;
    if (!crc_ok(buf, (size_t)flen))
        return GW_ERR_CRC;
    return flen;
}

static bool is_simple_cmd(uint8_t cmd)
{
    const struct tinybms_command_info *c = tinybms__command(cmd);
    return c && c->request == TINYBMS_REQ_SIMPLE;
}

static bool writable(uint16_t reg)
{
    return reg >= BMS_WRITABLE_FIRST && reg <= BMS_WRITABLE_LAST;
}

/* First..first+n-1 all writable (no wrap-around). */
static bool writable_range(uint16_t first, size_t n)
{
    return writable(first) && (size_t)first + n - 1 <= BMS_WRITABLE_LAST;
}

/* ---------------------------------------------------------------- request encoders */

int tinybms_encode_read_modbus(uint8_t *buf, size_t cap, uint16_t addr, uint8_t count)
{
    if (!buf || count == 0 || count > TINYBMS_MODBUS_READ_MAX)
        return GW_ERR_INVAL;
    if (cap < 8)
        return GW_ERR_OVERFLOW;
    buf[0] = TINYBMS_SYNC;
    buf[1] = TINYBMS_CMD_READ_MODBUS;
    buf[2] = (uint8_t)(addr >> 8);
    buf[3] = (uint8_t)(addr & 0xFF);
    buf[4] = 0;
    buf[5] = count;
    return (int)put_crc(buf, 6);
}

int tinybms_encode_read_block(uint8_t *buf, size_t cap, uint16_t addr, uint8_t count)
{
    if (!buf || count == 0 || count > TINYBMS_BLOCK_READ_MAX)
        return GW_ERR_INVAL;
    if (cap < 7)
        return GW_ERR_OVERFLOW;
    buf[0] = TINYBMS_SYNC;
    buf[1] = TINYBMS_CMD_READ_BLOCK;
    buf[2] = count;
    buf[3] = (uint8_t)(addr & 0xFF);
    buf[4] = (uint8_t)(addr >> 8);
    return (int)put_crc(buf, 5);
}

int tinybms_encode_read_individual(uint8_t *buf, size_t cap, const uint16_t *addrs, size_t n)
{
    if (!buf || !addrs || n == 0 || n > TINYBMS_INDIVIDUAL_READ_MAX)
        return GW_ERR_INVAL;
    size_t total = 3 + 2 * n + 2;
    if (cap < total)
        return GW_ERR_OVERFLOW;
    buf[0] = TINYBMS_SYNC;
    buf[1] = TINYBMS_CMD_READ_INDIVIDUAL;
    buf[2] = (uint8_t)(2 * n);
    for (size_t i = 0; i < n; i++) {
        buf[3 + 2 * i] = (uint8_t)(addrs[i] & 0xFF);
        buf[4 + 2 * i] = (uint8_t)(addrs[i] >> 8);
    }
    return (int)put_crc(buf, total - 2);
}

int tinybms_encode_write_block(uint8_t *buf, size_t cap, uint16_t addr, const uint16_t *values,
                               size_t n)
{
    if (!buf || !values || n == 0 || n > TINYBMS_BLOCK_WRITE_MAX)
        return GW_ERR_INVAL;
    if (!writable_range(addr, n))
        return GW_ERR_RANGE;
    size_t total = 5 + 2 * n + 2;
    if (cap < total)
        return GW_ERR_OVERFLOW;
    buf[0] = TINYBMS_SYNC;
    buf[1] = TINYBMS_CMD_WRITE_BLOCK;
    buf[2] = (uint8_t)(2 + 2 * n);
    buf[3] = (uint8_t)(addr & 0xFF);
    buf[4] = (uint8_t)(addr >> 8);
    for (size_t i = 0; i < n; i++) {
        buf[5 + 2 * i] = (uint8_t)(values[i] & 0xFF);
        buf[6 + 2 * i] = (uint8_t)(values[i] >> 8);
    }
    return (int)put_crc(buf, total - 2);
}

int tinybms_encode_write_individual(uint8_t *buf, size_t cap, const uint16_t *addrs,
                                    const uint16_t *values, size_t n)
{
    if (!buf || !addrs || !values || n == 0 || n > TINYBMS_INDIVIDUAL_WRITE_MAX)
        return GW_ERR_INVAL;
    for (size_t i = 0; i < n; i++)
        if (!writable(addrs[i]))
            return GW_ERR_RANGE;
    size_t total = 3 + 4 * n + 2;
    if (cap < total)
        return GW_ERR_OVERFLOW;
    buf[0] = TINYBMS_SYNC;
    buf[1] = TINYBMS_CMD_WRITE_INDIVIDUAL;
    buf[2] = (uint8_t)(4 * n);
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = buf + 3 + 4 * i;
        p[0] = (uint8_t)(addrs[i] & 0xFF);
        p[1] = (uint8_t)(addrs[i] >> 8);
        p[2] = (uint8_t)(values[i] & 0xFF);
        p[3] = (uint8_t)(values[i] >> 8);
    }
    return (int)put_crc(buf, total - 2);
}

int tinybms_encode_write_modbus(uint8_t *buf, size_t cap, uint16_t addr, const uint16_t *values,
                                size_t n)
{
    if (!buf || !values || n == 0 || n > TINYBMS_MODBUS_WRITE_MAX)
        return GW_ERR_INVAL;
    if (!writable_range(addr, n))
        return GW_ERR_RANGE;
    size_t total = 7 + 2 * n + 2;
    if (cap < total)
        return GW_ERR_OVERFLOW;
    buf[0] = TINYBMS_SYNC;
    buf[1] = TINYBMS_CMD_WRITE_MODBUS;
    buf[2] = (uint8_t)(addr >> 8);
    buf[3] = (uint8_t)(addr & 0xFF);
    buf[4] = 0;
    buf[5] = (uint8_t)n;
    buf[6] = (uint8_t)(2 * n);
    for (size_t i = 0; i < n; i++) {
        buf[7 + 2 * i] = (uint8_t)(values[i] >> 8);
        buf[8 + 2 * i] = (uint8_t)(values[i] & 0xFF);
    }
    return (int)put_crc(buf, total - 2);
}

static bool reset_option_ok(uint8_t opt)
{
    return opt == TINYBMS_RESET_CLEAR_EVENTS || opt == TINYBMS_RESET_CLEAR_STATISTICS ||
           opt == TINYBMS_RESET_BMS;
}

int tinybms_encode_reset(uint8_t *buf, size_t cap, uint8_t opt)
{
    if (!buf || !reset_option_ok(opt))
        return GW_ERR_INVAL;
    if (cap < 5)
        return GW_ERR_OVERFLOW;
    buf[0] = TINYBMS_SYNC;
    buf[1] = TINYBMS_CMD_RESET;
    buf[2] = opt;
    return (int)put_crc(buf, 3);
}

int tinybms_encode_read_settings(uint8_t *buf, size_t cap, uint8_t opt, uint8_t count)
{
    if (!buf || opt < TINYBMS_SETTINGS_MIN || opt > TINYBMS_SETTINGS_CURRENT || count == 0 ||
        count > TINYBMS_SETTINGS_READ_MAX)
        return GW_ERR_INVAL;
    if (cap < 7)
        return GW_ERR_OVERFLOW;
    buf[0] = TINYBMS_SYNC;
    buf[1] = TINYBMS_CMD_SETTINGS;
    buf[2] = opt;
    buf[3] = 0;
    buf[4] = count;
    return (int)put_crc(buf, 5);
}

int tinybms_encode_simple(uint8_t *buf, size_t cap, uint8_t cmd)
{
    if (!buf || !is_simple_cmd(cmd))
        return GW_ERR_INVAL;
    if (cap < 4)
        return GW_ERR_OVERFLOW;
    buf[0] = TINYBMS_SYNC;
    buf[1] = cmd;
    return (int)put_crc(buf, 2);
}

/* ---------------------------------------------------------------- request decoding */

/* Length of the request frame at b[0] by its command's row: >0, 0 need more, GW_ERR_PROTO. */
static int request_frame_len(const uint8_t *b, size_t len)
{
    if (len < 1)
        return 0;
    if (b[0] != TINYBMS_SYNC)
        return GW_ERR_PROTO;
    if (len < 2)
        return 0;
    const struct tinybms_command_info *c = tinybms__command(b[1]);
    if (!c)
        return GW_ERR_PROTO;
    switch (c->request) {
    case TINYBMS_REQ_SIMPLE:
    case TINYBMS_REQ_FIXED:
        return c->request_len;
    case TINYBMS_REQ_PL:
        if (len < 3)
            return 0;
        /* Requests are always a single, last packet: the rules stay below 0x40. */
        if (!tinybms__pl_allowed(&c->request_pl, b[2]))
            return GW_ERR_PROTO;
        return 3 + b[2] + 2;
    case TINYBMS_REQ_MODBUS_WRITE: {
        if (len < 7)
            return 0;
        uint8_t rl = b[5], pl = b[6];
        if (b[4] != 0 || rl == 0 || rl > TINYBMS_MODBUS_WRITE_MAX || pl != 2 * rl)
            return GW_ERR_PROTO;
        return 7 + pl + 2;
    }
    default:
        return GW_ERR_PROTO;
    }
}

int tinybms_decode_request(const uint8_t *buf, size_t len, struct tinybms_request *out)
{
    if (!buf || !out)
        return GW_ERR_INVAL;
    int flen = whole_frame(buf, len, request_frame_len(buf, len));
    if (flen <= 0)
        return flen;

    struct tinybms_request r;
    memset(&r, 0, sizeof r);
    r.cmd = buf[1];
    r.frame_len = (size_t)flen;
    switch (r.cmd) {
    case TINYBMS_CMD_RESET:
        if (!reset_option_ok(buf[2]))
            return GW_ERR_PROTO;
        r.option = buf[2];
        break;
    case TINYBMS_CMD_READ_MODBUS:
        if (buf[4] != 0 || buf[5] == 0 || buf[5] > TINYBMS_MODBUS_READ_MAX)
            return GW_ERR_PROTO;
        r.addr = tinybms__be16(buf + 2);
        r.count = buf[5];
        break;
    case TINYBMS_CMD_READ_BLOCK:
        if (buf[2] == 0 || buf[2] > TINYBMS_BLOCK_READ_MAX)
            return GW_ERR_PROTO;
        r.count = buf[2];
        r.addr = tinybms__le16(buf + 3);
        break;
    case TINYBMS_CMD_SETTINGS:
        if (buf[2] < TINYBMS_SETTINGS_MIN || buf[2] > TINYBMS_SETTINGS_CURRENT || buf[3] != 0 ||
            buf[4] == 0 || buf[4] > TINYBMS_SETTINGS_READ_MAX)
            return GW_ERR_PROTO;
        r.option = buf[2];
        r.addr = BMS_SETTINGS_FIRST;
        r.count = buf[4];
        break;
    case TINYBMS_CMD_READ_INDIVIDUAL:
        r.count = (uint8_t)(buf[2] / 2);
        for (size_t i = 0; i < r.count; i++)
            r.addrs[i] = tinybms__le16(buf + 3 + 2 * i);
        break;
    case TINYBMS_CMD_WRITE_BLOCK:
        r.addr = tinybms__le16(buf + 3);
        r.count = (uint8_t)((buf[2] - 2) / 2);
        for (size_t i = 0; i < r.count; i++)
            r.values[i] = tinybms__le16(buf + 5 + 2 * i);
        break;
    case TINYBMS_CMD_WRITE_INDIVIDUAL:
        r.count = (uint8_t)(buf[2] / 4);
        for (size_t i = 0; i < r.count; i++) {
            r.addrs[i] = tinybms__le16(buf + 3 + 4 * i);
            r.values[i] = tinybms__le16(buf + 5 + 4 * i);
        }
        break;
    case TINYBMS_CMD_WRITE_MODBUS:
        r.addr = tinybms__be16(buf + 2);
        r.count = buf[5];
        for (size_t i = 0; i < r.count; i++)
            r.values[i] = tinybms__be16(buf + 7 + 2 * i);
        break;
    default: /* simple commands carry nothing */
        break;
    }
    *out = r;
    return flen;
}

/* ---------------------------------------------------------------- reply decoding */

int tinybms_reply_frame_len(const uint8_t *b, size_t len)
{
    if (!b || len < 1)
        return 0;
    if (b[0] != TINYBMS_SYNC)
        return GW_ERR_PROTO;
    if (len < 2)
        return 0;
    uint8_t cmd = b[1];
    if (cmd == 0x00 || cmd == 0x01) {
        /* NACK / ACK: no length byte; the named command must be one we could have sent. */
        if (len < 3)
            return 0;
        if (!tinybms__command(b[2]))
            return GW_ERR_PROTO;
        return cmd == 0x01 ? TINYBMS_ACK_LEN : TINYBMS_NACK_LEN;
    }
    const struct tinybms_command_info *c = tinybms__command(cmd);
    if (!c || c->answer == TINYBMS_ANSWER_ACK_ONLY)
        return GW_ERR_PROTO; /* no such answer: reject before waiting for more bytes */
    if (c->answer == TINYBMS_ANSWER_FIXED)
        return c->reply_len;
    if (len < 3)
        return 0;
    uint8_t pl = b[2];
    if (c->answer == TINYBMS_ANSWER_PL_PACKETS) {
        if (pl & 0x80)
            return 3 + c->multi_packet_payload + 2; /* bits 0..5: packet id, not a size */
        pl &= 0x3F;
    }
    if (!tinybms__pl_allowed(&c->reply_pl, pl))
        return GW_ERR_PROTO;
    return 3 + pl + 2;
}

int tinybms_decode(const uint8_t *buf, size_t len, struct tinybms_reply *out)
{
    if (!buf || !out)
        return GW_ERR_INVAL;
    int flen = whole_frame(buf, len, tinybms_reply_frame_len(buf, len));
    if (flen <= 0)
        return flen;

    /* Length and CRC are good: now fields can be trusted. */
    out->frame_len = (size_t)flen;
    out->nack_error = 0;
    out->has_pl = false;
    out->pl_raw = 0;
    out->last_packet = true;
    out->packet_id = 0;
    if (buf[1] == 0x01 || buf[1] == 0x00) {
        out->kind = buf[1] == 0x01 ? TINYBMS_REPLY_ACK : TINYBMS_REPLY_NACK;
        out->cmd = buf[2];
        if (out->kind == TINYBMS_REPLY_NACK)
            out->nack_error = buf[3];
        out->payload_len = 0;
        return flen;
    }
    out->kind = TINYBMS_REPLY_DATA;
    out->cmd = buf[1];
    size_t start = 2;
    const struct tinybms_command_info *c = tinybms__command(out->cmd); /* never NULL here */
    if (c && (c->answer == TINYBMS_ANSWER_PL || c->answer == TINYBMS_ANSWER_PL_PACKETS)) {
        out->has_pl = true;
        out->pl_raw = buf[2];
        start = 3;
        if (c->answer == TINYBMS_ANSWER_PL_PACKETS && (buf[2] & 0x80)) {
            out->last_packet = false;
            out->packet_id = buf[2] & 0x3F;
        }
    }
    out->payload_len = (uint16_t)((size_t)flen - start - 2);
    memcpy(out->payload, buf + start, out->payload_len);
    return flen;
}

/* ---------------------------------------------------------------- streaming decoder */

void tinybms_decoder_init(struct tinybms_decoder *dec)
{
    if (dec)
        memset(dec, 0, sizeof *dec);
}

void tinybms_decoder_reset(struct tinybms_decoder *dec)
{
    if (dec) {
        dec->garbage_bytes += (uint32_t)dec->len;
        dec->len = 0;
    }
}

/* Drops the candidate frame's first byte and everything up to the next 0xAA in the buffer. */
static void drop_and_rescan(struct tinybms_decoder *dec)
{
    size_t skip = 1;
    while (skip < dec->len && dec->buf[skip] != TINYBMS_SYNC)
        skip++;
    dec->garbage_bytes += (uint32_t)skip;
    memmove(dec->buf, dec->buf + skip, dec->len - skip);
    dec->len -= skip;
}

bool tinybms_decoder_resync(struct tinybms_decoder *dec)
{
    if (!dec || dec->len == 0)
        return false;
    drop_and_rescan(dec);
    return true;
}

static int frame_error(struct tinybms_decoder *dec, int rc)
{
    if (rc == GW_ERR_CRC)
        dec->crc_errors++;
    else
        dec->proto_errors++;
    return rc;
}

int tinybms_decoder_feed(struct tinybms_decoder *dec, const uint8_t *data, size_t n,
                         size_t *consumed, struct tinybms_reply *out)
{
    if (!dec || !consumed || !out || (!data && n))
        return GW_ERR_INVAL;
    size_t used = 0;
    *consumed = 0;

    if (dec->len == 0) {
        /* Fast path: nothing buffered, decode straight from the input. */
        size_t start = used;
        if (used < n && data[used] != TINYBMS_SYNC) {
            const void *sync = memchr(data + used, TINYBMS_SYNC, n - used);
            used = sync ? (size_t)((const uint8_t *)sync - data) : n;
        }
        dec->garbage_bytes += (uint32_t)(used - start);
        if (used == n) {
            *consumed = used;
            return 0;
        }
        int rc = tinybms_decode(data + used, n - used, out);
        if (rc > 0) {
            dec->frames++;
            *consumed = used + (size_t)rc;
            return 1;
        }
        if (rc < 0) {
            dec->garbage_bytes++; /* skip this 0xAA, rescan from the next byte */
            *consumed = used + 1;
            return frame_error(dec, rc);
        }
        /* Incomplete: the rest is shorter than one frame, so it fits the buffer. */
        size_t rest = n - used;
        memcpy(dec->buf, data + used, rest);
        dec->len = rest;
        *consumed = n;
        return 0;
    }

    /* Buffered candidate starting with 0xAA: grow it only up to what its length needs. After a
     * rescan the buffer may already hold more than this frame. */
    int flen = tinybms_reply_frame_len(dec->buf, dec->len);
    while (flen == 0 && used < n) {
        dec->buf[dec->len++] = data[used++];
        flen = tinybms_reply_frame_len(dec->buf, dec->len);
    }
    *consumed = used;
    if (flen < 0) {
        drop_and_rescan(dec);
        return frame_error(dec, flen);
    }
    if (flen == 0)
        return 0;
    if (dec->len < (size_t)flen) {
        size_t want = (size_t)flen - dec->len; /* flen <= TINYBMS_MAX_FRAME by construction */
        size_t take = want < n - used ? want : n - used;
        if (take) /* data may be NULL when draining the buffer */
            memcpy(dec->buf + dec->len, data + used, take);
        dec->len += take;
        used += take;
        *consumed = used;
        if (dec->len < (size_t)flen)
            return 0;
    }
    int rc = tinybms_decode(dec->buf, dec->len, out);
    if (rc > 0) {
        dec->len -= (size_t)rc;
        memmove(dec->buf, dec->buf + rc, dec->len);
        if (dec->len && dec->buf[0] != TINYBMS_SYNC) {
            /* Leftover of an earlier rescan: drop up to the next sync byte. */
            size_t skip = 0;
            while (skip < dec->len && dec->buf[skip] != TINYBMS_SYNC)
                skip++;
            dec->garbage_bytes += (uint32_t)skip;
            memmove(dec->buf, dec->buf + skip, dec->len - skip);
            dec->len -= skip;
        }
        dec->frames++;
        return 1;
    }
    drop_and_rescan(dec);
    return frame_error(dec, rc < 0 ? rc : GW_ERR_PROTO);
}
