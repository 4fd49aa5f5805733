/* One-line, human-readable descriptions of TinyBMS frames for the UI's frame tap. Portable: a
 * tiny bounded string builder instead of snprintf. */
#include <string.h>

#include "tinybms.h"
#include "tinybms_internal.h"

struct sbuf {
    char *out;
    size_t cap; /* > 0 */
    size_t len; /* characters stored, always < cap */
};

static void put_str(struct sbuf *s, const char *str)
{
    while (*str && s->len + 1 < s->cap)
        s->out[s->len++] = *str++;
    s->out[s->len] = '\0';
}

static void put_uint(struct sbuf *s, unsigned long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char rev[24];
    for (size_t i = 0; i < n; i++)
        rev[i] = tmp[n - 1 - i];
    rev[n] = '\0';
    put_str(s, rev);
}

static void put_hex8(struct sbuf *s, uint8_t v)
{
    static const char hex[] = "0123456789ABCDEF";
    char tmp[5] = { '0', 'x', hex[v >> 4], hex[v & 0xF], '\0' };
    put_str(s, tmp);
}

static void put_range(struct sbuf *s, unsigned first, unsigned count)
{
    put_uint(s, first);
    if (count > 1) {
        put_str(s, "..");
        put_uint(s, first + count - 1);
    }
}

static const char *reset_option_name(uint8_t opt)
{
    switch (opt) {
    case TINYBMS_RESET_CLEAR_EVENTS: return "clear events";
    case TINYBMS_RESET_CLEAR_STATISTICS: return "clear statistics";
    case TINYBMS_RESET_BMS: return "reset BMS";
    default: return "unknown option";
    }
}

static const char *settings_option_name(uint8_t opt)
{
    switch (opt) {
    case TINYBMS_SETTINGS_MIN: return "min";
    case TINYBMS_SETTINGS_MAX: return "max";
    case TINYBMS_SETTINGS_DEFAULT: return "default";
    case TINYBMS_SETTINGS_CURRENT: return "current";
    default: return "?";
    }
}

static void put_reg_list(struct sbuf *s, const uint16_t *addrs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (i)
            put_str(s, ",");
        put_uint(s, addrs[i]);
    }
}

static void describe_request(struct sbuf *s, const struct tinybms_request *r)
{
    switch (r->cmd) {
    case TINYBMS_CMD_RESET:
        put_str(s, reset_option_name(r->option));
        break;
    case TINYBMS_CMD_READ_MODBUS:
        put_str(s, "read regs ");
        put_range(s, r->addr, r->count);
        put_str(s, " (MODBUS)");
        break;
    case TINYBMS_CMD_READ_BLOCK:
        put_str(s, "read regs ");
        put_range(s, r->addr, r->count);
        break;
    case TINYBMS_CMD_READ_INDIVIDUAL:
        put_str(s, "read regs ");
        put_reg_list(s, r->addrs, r->count);
        break;
    case TINYBMS_CMD_WRITE_BLOCK:
    case TINYBMS_CMD_WRITE_MODBUS:
        put_str(s, "write regs ");
        put_range(s, r->addr, r->count);
        put_str(s, " =");
        for (unsigned i = 0; i < r->count; i++) {
            put_str(s, " ");
            put_uint(s, r->values[i]);
        }
        if (r->cmd == TINYBMS_CMD_WRITE_MODBUS)
            put_str(s, " (MODBUS)");
        break;
    case TINYBMS_CMD_WRITE_INDIVIDUAL:
        put_str(s, "write");
        for (unsigned i = 0; i < r->count; i++) {
            put_str(s, i ? ", " : " ");
            put_uint(s, r->addrs[i]);
            put_str(s, "=");
            put_uint(s, r->values[i]);
        }
        break;
    case TINYBMS_CMD_SETTINGS:
        put_str(s, "read settings ");
        put_str(s, settings_option_name(r->option));
        put_str(s, " ");
        put_range(s, r->addr, r->count);
        break;
    default:
        put_str(s, "get ");
        put_str(s, tinybms_command_name(r->cmd));
        break;
    }
}

static void describe_reply(struct sbuf *s, const struct tinybms_reply *r)
{
    if (r->kind == TINYBMS_REPLY_ACK) {
        put_str(s, "ACK ");
        put_hex8(s, r->cmd);
        return;
    }
    if (r->kind == TINYBMS_REPLY_NACK) {
        put_str(s, "NACK ");
        put_hex8(s, r->cmd);
        put_str(s, ": ");
        if (r->nack_error == TINYBMS_NACK_COMMAND_ERROR)
            put_str(s, "command error");
        else if (r->nack_error == TINYBMS_NACK_CRC_ERROR)
            put_str(s, "CRC error");
        else {
            put_str(s, "error ");
            put_hex8(s, r->nack_error);
        }
        return;
    }
    put_str(s, "reply ");
    put_hex8(s, r->cmd);
    put_str(s, ": ");
    switch (r->cmd) {
    case TINYBMS_CMD_READ_MODBUS:
    case TINYBMS_CMD_READ_BLOCK:
    case TINYBMS_CMD_SETTINGS:
        put_uint(s, r->payload_len / 2u);
        put_str(s, " registers");
        if (!r->last_packet) {
            put_str(s, " (packet ");
            put_uint(s, r->packet_id);
            put_str(s, ", more follow)");
        }
        break;
    case TINYBMS_CMD_READ_INDIVIDUAL:
        put_uint(s, r->payload_len / 4u);
        put_str(s, " registers");
        if (!r->last_packet)
            put_str(s, " (more follow)");
        break;
    case TINYBMS_CMD_CELLS:
        put_uint(s, r->payload_len / 2u);
        put_str(s, " cells");
        break;
    case TINYBMS_CMD_EVENTS_NEWEST:
    case TINYBMS_CMD_EVENTS_ALL:
        put_uint(s, (r->payload_len - 4u) / 4u);
        put_str(s, " events");
        break;
    case TINYBMS_CMD_WRITE_MODBUS: {
        uint16_t addr = 0;
        uint8_t count = 0;
        (void)tinybms_reply_write_echo(r, &addr, &count);
        put_str(s, "wrote regs ");
        put_range(s, addr, count);
        break;
    }
    default:
        put_str(s, tinybms_command_name(r->cmd));
        break;
    }
}

int tinybms_describe_frame(const uint8_t *buf, size_t len, bool is_request, char *out,
                           size_t cap)
{
    if (!out || cap == 0)
        return GW_ERR_INVAL;
    struct sbuf s = { out, cap, 0 };
    out[0] = '\0';
    if (!buf || len == 0) {
        put_str(&s, "empty frame");
        return (int)s.len;
    }
    int rc;
    if (is_request) {
        struct tinybms_request req;
        rc = tinybms_decode_request(buf, len, &req);
        if (rc > 0) {
            describe_request(&s, &req);
            return (int)s.len;
        }
    } else {
        struct tinybms_reply rep;
        rc = tinybms_decode(buf, len, &rep);
        if (rc > 0) {
            describe_reply(&s, &rep);
            return (int)s.len;
        }
    }
    if (rc == 0) {
        put_str(&s, "truncated frame (");
        put_uint(&s, len);
        put_str(&s, " bytes)");
    } else if (rc == GW_ERR_CRC) {
        put_str(&s, "bad CRC (");
        put_uint(&s, len);
        put_str(&s, " bytes)");
    } else {
        put_str(&s, "invalid frame (");
        put_uint(&s, len);
        put_str(&s, " bytes");
        if (buf[0] == TINYBMS_SYNC && len > 1) {
            put_str(&s, ", cmd ");
            put_hex8(&s, buf[1]);
        }
        put_str(&s, ")");
    }
    return (int)s.len;
}
