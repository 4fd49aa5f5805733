/* One-line, human-readable descriptions of TinyBMS frames for the UI's frame tap. Portable: the
 * bounded text builder instead of snprintf. */
#include <string.h>

#include "gw_text.h"
#include "tinybms.h"
#include "tinybms_internal.h"

static void put_hex8(struct gw_text *s, uint8_t v)
{
    gw_text_put_str(s, "0x");
    gw_text_put_hex(s, v, 2);
}

static void put_range(struct gw_text *s, unsigned first, unsigned count)
{
    gw_text_put_uint(s, first);
    if (count > 1) {
        gw_text_put_str(s, "..");
        gw_text_put_uint(s, first + count - 1);
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

static void put_reg_list(struct gw_text *s, const uint16_t *addrs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (i)
            gw_text_put_str(s, ",");
        gw_text_put_uint(s, addrs[i]);
    }
}

static void describe_request(struct gw_text *s, const struct tinybms_request *r)
{
    switch (r->cmd) {
    case TINYBMS_CMD_RESET:
        gw_text_put_str(s, reset_option_name(r->option));
        break;
    case TINYBMS_CMD_READ_MODBUS:
        gw_text_put_str(s, "read regs ");
        put_range(s, r->addr, r->count);
        gw_text_put_str(s, " (MODBUS)");
        break;
    case TINYBMS_CMD_READ_BLOCK:
        gw_text_put_str(s, "read regs ");
        put_range(s, r->addr, r->count);
        break;
    case TINYBMS_CMD_READ_INDIVIDUAL:
        gw_text_put_str(s, "read regs ");
        put_reg_list(s, r->addrs, r->count);
        break;
    case TINYBMS_CMD_WRITE_BLOCK:
    case TINYBMS_CMD_WRITE_MODBUS:
        gw_text_put_str(s, "write regs ");
        put_range(s, r->addr, r->count);
        gw_text_put_str(s, " =");
        for (unsigned i = 0; i < r->count; i++) {
            gw_text_put_str(s, " ");
            gw_text_put_uint(s, r->values[i]);
        }
        if (r->cmd == TINYBMS_CMD_WRITE_MODBUS)
            gw_text_put_str(s, " (MODBUS)");
        break;
    case TINYBMS_CMD_WRITE_INDIVIDUAL:
        gw_text_put_str(s, "write");
        for (unsigned i = 0; i < r->count; i++) {
            gw_text_put_str(s, i ? ", " : " ");
            gw_text_put_uint(s, r->addrs[i]);
            gw_text_put_str(s, "=");
            gw_text_put_uint(s, r->values[i]);
        }
        break;
    case TINYBMS_CMD_SETTINGS:
        gw_text_put_str(s, "read settings ");
        gw_text_put_str(s, settings_option_name(r->option));
        gw_text_put_str(s, " ");
        put_range(s, r->addr, r->count);
        break;
    default:
        gw_text_put_str(s, "get ");
        gw_text_put_str(s, tinybms_command_name(r->cmd));
        break;
    }
}

static void describe_reply(struct gw_text *s, const struct tinybms_reply *r)
{
    if (r->kind == TINYBMS_REPLY_ACK) {
        gw_text_put_str(s, "ACK ");
        put_hex8(s, r->cmd);
        return;
    }
    if (r->kind == TINYBMS_REPLY_NACK) {
        gw_text_put_str(s, "NACK ");
        put_hex8(s, r->cmd);
        gw_text_put_str(s, ": ");
        if (r->nack_error == TINYBMS_NACK_COMMAND_ERROR)
            gw_text_put_str(s, "command error");
        else if (r->nack_error == TINYBMS_NACK_CRC_ERROR)
            gw_text_put_str(s, "CRC error");
        else {
            gw_text_put_str(s, "error ");
            put_hex8(s, r->nack_error);
        }
        return;
    }
    gw_text_put_str(s, "reply ");
    put_hex8(s, r->cmd);
    gw_text_put_str(s, ": ");
    switch (r->cmd) {
    case TINYBMS_CMD_READ_MODBUS:
    case TINYBMS_CMD_READ_BLOCK:
    case TINYBMS_CMD_SETTINGS:
        gw_text_put_uint(s, r->payload_len / 2u);
        gw_text_put_str(s, " registers");
        if (!r->last_packet) {
            gw_text_put_str(s, " (packet ");
            gw_text_put_uint(s, r->packet_id);
            gw_text_put_str(s, ", more follow)");
        }
        break;
    case TINYBMS_CMD_READ_INDIVIDUAL:
        gw_text_put_uint(s, r->payload_len / 4u);
        gw_text_put_str(s, " registers");
        if (!r->last_packet)
            gw_text_put_str(s, " (more follow)");
        break;
    case TINYBMS_CMD_CELLS:
        gw_text_put_uint(s, r->payload_len / 2u);
        gw_text_put_str(s, " cells");
        break;
    case TINYBMS_CMD_EVENTS_NEWEST:
    case TINYBMS_CMD_EVENTS_ALL:
        gw_text_put_uint(s, (r->payload_len - 4u) / 4u);
        gw_text_put_str(s, " events");
        break;
    case TINYBMS_CMD_WRITE_MODBUS: {
        uint16_t addr = 0;
        uint8_t count = 0;
        (void)tinybms_reply_write_echo(r, &addr, &count);
        gw_text_put_str(s, "wrote regs ");
        put_range(s, addr, count);
        break;
    }
    default:
        gw_text_put_str(s, tinybms_command_name(r->cmd));
        break;
    }
}

int tinybms_describe_frame(const uint8_t *buf, size_t len, bool is_request, char *out,
                           size_t cap)
{
    if (!out || cap == 0)
        return GW_ERR_INVAL;
    struct gw_text s;
    gw_text_init(&s, out, cap);
    if (!buf || len == 0) {
        gw_text_put_str(&s, "empty frame");
        return (int)gw_text_len(&s);
    }
    int rc;
    if (is_request) {
        struct tinybms_request req;
        rc = tinybms_decode_request(buf, len, &req);
        if (rc > 0) {
            describe_request(&s, &req);
            return (int)gw_text_len(&s);
        }
    } else {
        struct tinybms_reply rep;
        rc = tinybms_decode(buf, len, &rep);
        if (rc > 0) {
            describe_reply(&s, &rep);
            return (int)gw_text_len(&s);
        }
    }
    if (rc == 0) {
        gw_text_put_str(&s, "truncated frame (");
        gw_text_put_uint(&s, len);
        gw_text_put_str(&s, " bytes)");
    } else if (rc == GW_ERR_CRC) {
        gw_text_put_str(&s, "bad CRC (");
        gw_text_put_uint(&s, len);
        gw_text_put_str(&s, " bytes)");
    } else {
        gw_text_put_str(&s, "invalid frame (");
        gw_text_put_uint(&s, len);
        gw_text_put_str(&s, " bytes");
        if (buf[0] == TINYBMS_SYNC && len > 1) {
            gw_text_put_str(&s, ", cmd ");
            put_hex8(&s, buf[1]);
        }
        gw_text_put_str(&s, ")");
    }
    return (int)gw_text_len(&s);
}
