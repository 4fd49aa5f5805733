/* TinyBMS request parser and responder (BMS side): see sim_protocol.h. */
#include "sim_protocol.h"

#include <string.h>

#include "gw_error.h"

#define CMD_NACK 0x00
#define CMD_ACK 0x01
#define PL_MULTI 0x80
#define PL_SIZE_MASK 0x3F

uint16_t sim_crc16(const uint8_t *data, size_t len)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 1u) ? (uint16_t)((crc >> 1) ^ 0xA001u) : (uint16_t)(crc >> 1);
    }
    return crc;
}

size_t sim_request_length(const uint8_t *buf, size_t have)
{
    if (have < 2)
        return 0;
    switch (buf[1]) {
    case 0x02: return 5;
    case 0x03: return 8;
    case 0x07: return 7;
    case 0x1D: return 7;
    case 0x09:
    case 0x0B:
    case 0x0D:
        if (have < 3)
            return 0;
        return 3u + (buf[2] & PL_SIZE_MASK) + 2u;
    case 0x10:
        if (have < 7)
            return 0;
        return 7u + buf[6] + 2u;
    default:
        return 4; /* AA CMD crc: the simple reads, and unknown commands */
    }
}

void sim_parser_reset(struct sim_parser *p)
{
    if (p)
        p->len = 0;
}

size_t sim_parser_push(struct sim_parser *p, uint8_t byte)
{
    if (!p)
        return 0;
    if (p->len == 0 && byte != SIM_SYNC) {
        p->dropped_bytes++;
        return 0;
    }
    if (p->len >= sizeof p->buf) { /* cannot happen (lengths are bounded); stay safe anyway */
        p->len = 0;
        return 0;
    }
    p->buf[p->len++] = byte;
    size_t need = sim_request_length(p->buf, p->len);
    if (need > sizeof p->buf) { /* not reachable with the table above */
        p->len = 0;
        return 0;
    }
    return (need != 0 && p->len >= need) ? need : 0;
}

/* ---- reply builders ---- */

struct out {
    uint8_t *buf;
    size_t cap, len;
    size_t frame_start;
    bool overflow;
};

static void out_byte(struct out *o, uint8_t b)
{
    if (o->len < o->cap)
        o->buf[o->len++] = b;
    else
        o->overflow = true;
}

static void out_begin(struct out *o, uint8_t cmd)
{
    o->frame_start = o->len;
    out_byte(o, SIM_SYNC);
    out_byte(o, cmd);
}

static void out_end(struct out *o)
{
    if (o->overflow)
        return;
    uint16_t crc = sim_crc16(o->buf + o->frame_start, o->len - o->frame_start);
    out_byte(o, (uint8_t)(crc & 0xFF));
    out_byte(o, (uint8_t)(crc >> 8));
}

static void out_le16(struct out *o, uint16_t v)
{
    out_byte(o, (uint8_t)(v & 0xFF));
    out_byte(o, (uint8_t)(v >> 8));
}

static void out_be16(struct out *o, uint16_t v)
{
    out_byte(o, (uint8_t)(v >> 8));
    out_byte(o, (uint8_t)(v & 0xFF));
}

static void out_le32(struct out *o, uint32_t v)
{
    out_le16(o, (uint16_t)(v & 0xFFFF));
    out_le16(o, (uint16_t)(v >> 16));
}

static size_t finish(struct out *o)
{
    return o->overflow ? 0 : o->len;
}

static size_t reply_nack(struct out *o, uint8_t cmd, uint8_t err)
{
    o->len = 0;
    o->overflow = false;
    out_begin(o, CMD_NACK);
    out_byte(o, cmd);
    out_byte(o, err);
    out_end(o);
    return finish(o);
}

static size_t reply_ack(struct out *o, uint8_t cmd)
{
    out_begin(o, CMD_ACK);
    out_byte(o, cmd);
    out_end(o);
    return finish(o);
}

/* Emits `count` items of `item_bytes` each (written by emit_item) as one or more packets of
 * command cmd, using the PL bitfield (see header). */
typedef void (*emit_item_fn)(struct out *o, const void *ctx, unsigned index);

static void out_packets(struct out *o, uint8_t cmd, unsigned count, unsigned item_bytes,
                        emit_item_fn emit, const void *ctx)
{
    unsigned per_packet = PL_SIZE_MASK / item_bytes;
    unsigned index = 0, packet_id = 1;
    while (count - index > per_packet) {
        out_begin(o, cmd);
        out_byte(o, (uint8_t)(PL_MULTI | (packet_id & PL_SIZE_MASK)));
        for (unsigned k = 0; k < per_packet; k++)
            emit(o, ctx, index++);
        out_end(o);
        packet_id++;
    }
    out_begin(o, cmd);
    out_byte(o, (uint8_t)((count - index) * item_bytes));
    while (index < count)
        emit(o, ctx, index++);
    out_end(o);
}

static void emit_reg_le(struct out *o, const void *ctx, unsigned index)
{
    out_le16(o, ((const uint16_t *)ctx)[index]);
}

struct addr_values {
    const uint16_t *addrs, *values;
};

static void emit_addr_value(struct out *o, const void *ctx, unsigned index)
{
    const struct addr_values *av = ctx;
    out_le16(o, av->addrs[index]);
    out_le16(o, av->values[index]);
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* ---- commands ---- */

static size_t cmd_reset_clear(struct sim_bms *b, const uint8_t *f, struct out *o)
{
    switch (f[2]) {
    case 0x01:
        battery_model_clear_events(&b->model);
        b->events_reported_total = b->model.event_total;
        break;
    case 0x02:
        battery_model_clear_statistics(&b->model);
        break;
    case 0x05:
        (void)sim_bms_restart(b, -1.0f, SIM_RESET_CAUSE_COMMAND); /* keeps the SOC */
        break;
    default:
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    }
    return reply_ack(o, f[1]);
}

static size_t cmd_modbus_read(struct sim_bms *b, const uint8_t *f, struct out *o)
{
    uint16_t addr = be16(&f[2]);
    unsigned count = f[5];
    uint16_t regs[127];
    if (f[4] != 0 || count == 0 || count > 127 || sim_registers_read_block(b, addr, count, regs))
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    out_begin(o, 0x03);
    out_byte(o, (uint8_t)(count * 2));
    for (unsigned i = 0; i < count; i++)
        out_be16(o, regs[i]);
    out_end(o);
    return finish(o);
}

static size_t cmd_block_read(struct sim_bms *b, const uint8_t *f, struct out *o)
{
    unsigned count = f[2];
    uint16_t addr = le16(&f[3]);
    uint16_t regs[127];
    if (count == 0 || count > 127 || sim_registers_read_block(b, addr, count, regs))
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    out_packets(o, 0x07, count, 2, emit_reg_le, regs);
    return finish(o);
}

static size_t cmd_individual_read(struct sim_bms *b, const uint8_t *f, struct out *o)
{
    unsigned size = f[2] & PL_SIZE_MASK;
    if ((f[2] & PL_MULTI) || size < 2 || size % 2)
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    unsigned n = size / 2;
    uint16_t addrs[PL_SIZE_MASK / 2], values[PL_SIZE_MASK / 2];
    for (unsigned i = 0; i < n; i++) {
        addrs[i] = le16(&f[3 + 2 * i]);
        if (sim_registers_read(b, addrs[i], &values[i]))
            return reply_nack(o, f[1], SIM_ERR_COMMAND);
    }
    struct addr_values av = { addrs, values };
    out_packets(o, 0x09, n, 4, emit_addr_value, &av);
    return finish(o);
}

static size_t cmd_block_write(struct sim_bms *b, const uint8_t *f, struct out *o)
{
    unsigned size = f[2] & PL_SIZE_MASK;
    if ((f[2] & PL_MULTI) || size < 4 || size % 2)
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    uint16_t first = le16(&f[3]);
    unsigned n = (size - 2) / 2;
    uint16_t addrs[PL_SIZE_MASK / 2], values[PL_SIZE_MASK / 2];
    for (unsigned i = 0; i < n; i++) {
        addrs[i] = (uint16_t)(first + i);
        values[i] = le16(&f[5 + 2 * i]);
    }
    if ((uint32_t)first + n > 0x10000u || sim_registers_write(b, addrs, values, n))
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    return reply_ack(o, f[1]);
}

static size_t cmd_individual_write(struct sim_bms *b, const uint8_t *f, struct out *o)
{
    unsigned size = f[2] & PL_SIZE_MASK;
    if ((f[2] & PL_MULTI) || size < 4 || size % 4)
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    unsigned n = size / 4;
    uint16_t addrs[PL_SIZE_MASK / 4], values[PL_SIZE_MASK / 4];
    for (unsigned i = 0; i < n; i++) {
        addrs[i] = le16(&f[3 + 4 * i]);
        values[i] = le16(&f[5 + 4 * i]);
    }
    if (sim_registers_write(b, addrs, values, n))
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    return reply_ack(o, f[1]);
}

static size_t cmd_modbus_write(struct sim_bms *b, const uint8_t *f, struct out *o)
{
    uint16_t first = be16(&f[2]);
    unsigned count = f[5];
    if (f[4] != 0 || count == 0 || count > 100 || f[6] != count * 2 ||
        (uint32_t)first + count > 0x10000u)
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    uint16_t addrs[100], values[100];
    for (unsigned i = 0; i < count; i++) {
        addrs[i] = (uint16_t)(first + i);
        values[i] = be16(&f[7 + 2 * i]);
    }
    if (sim_registers_write(b, addrs, values, count))
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    out_begin(o, 0x10);
    for (int i = 2; i <= 5; i++)
        out_byte(o, f[i]);
    out_end(o);
    return finish(o);
}

static size_t cmd_events(struct sim_bms *b, const uint8_t *f, struct out *o)
{
    const struct battery_model *m = &b->model;
    unsigned n = m->event_count;
    if (f[1] == 0x11) {
        uint32_t fresh = m->event_total - b->events_reported_total;
        if (fresh < n)
            n = fresh;
        b->events_reported_total = m->event_total;
    }
    uint16_t live[SIM_LIVE_COUNT];
    sim_registers_live(b, live); /* BTSP as registers 32-33 serve it (a frozen BMS too) */
    out_begin(o, f[1]);
    out_byte(o, (uint8_t)(4 + 4 * n));
    out_le16(o, live[32]);
    out_le16(o, live[33]);
    for (unsigned k = 0; k < n; k++) {
        const struct battery_event *e = &m->events[m->event_count - 1 - k]; /* newest first */
        out_byte(o, (uint8_t)(e->timestamp_s & 0xFF));
        out_byte(o, (uint8_t)((e->timestamp_s >> 8) & 0xFF));
        out_byte(o, (uint8_t)((e->timestamp_s >> 16) & 0xFF));
        out_byte(o, e->id);
    }
    out_end(o);
    return finish(o);
}

static size_t cmd_live_value(const struct sim_bms *b, uint8_t cmd, struct out *o)
{
    uint16_t live[SIM_LIVE_COUNT];
    sim_registers_live(b, live);
    out_begin(o, cmd);
    switch (cmd) {
    case 0x14: out_le16(o, live[36]); out_le16(o, live[37]); break;
    case 0x15: out_le16(o, live[38]); out_le16(o, live[39]); break;
    case 0x16: out_le16(o, live[41]); break;
    case 0x17: out_le16(o, live[40]); break;
    case 0x18: out_le16(o, live[50]); break;
    case 0x19: out_le16(o, live[32]); out_le16(o, live[33]); break;
    case 0x1A: out_le16(o, live[46]); out_le16(o, live[47]); break;
    case 0x1B:
        out_byte(o, 6);
        out_le16(o, live[48]);
        out_le16(o, live[42]);
        out_le16(o, live[43]);
        break;
    case 0x1C: {
        unsigned n = live[53];
        out_byte(o, (uint8_t)(2 * n));
        for (unsigned r = BATTERY_MODEL_MAX_CELLS - n; r < BATTERY_MODEL_MAX_CELLS; r++)
            out_le16(o, live[r]);
        break;
    }
    case 0x20: /* speed (float km/h), distance left (u32 km), time left (u32 s) */
        out_le16(o, live[54]);
        out_le16(o, live[55]);
        out_le32(o, live[44]);
        out_le16(o, live[34]);
        out_le16(o, live[35]);
        break;
    default:
        break;
    }
    out_end(o);
    return finish(o);
}

static size_t cmd_settings_table(struct sim_bms *b, const uint8_t *f, struct out *o)
{
    unsigned table = f[2], count = f[4];
    if (table < SIM_TABLE_MIN || table > SIM_TABLE_CURRENT || f[3] != 0 || count == 0 || count > 100)
        return reply_nack(o, f[1], SIM_ERR_COMMAND);
    out_begin(o, 0x1D);
    out_byte(o, (uint8_t)(2 * count));
    for (unsigned i = 0; i < count; i++) {
        uint16_t v = 0;
        (void)sim_registers_settings_table(b, (enum sim_settings_table)table, i, &v);
        out_le16(o, v);
    }
    out_end(o);
    return finish(o);
}

static size_t cmd_version(const struct sim_bms *b, uint8_t cmd, struct out *o)
{
    out_begin(o, cmd);
    out_byte(o, cmd == 0x1F ? 7 : 5);
    out_byte(o, (uint8_t)(b->version[0] & 0xFF));  /* hardware */
    out_byte(o, (uint8_t)(b->version[0] >> 8));    /* hardware changes */
    out_byte(o, (uint8_t)(b->version[1] & 0xFF));  /* public firmware */
    out_le16(o, b->version[2]);                    /* internal firmware */
    if (cmd == 0x1F) {
        out_byte(o, (uint8_t)(b->version[3] & 0xFF)); /* bootloader */
        out_byte(o, (uint8_t)(b->version[3] >> 8));   /* register map / profile version */
    }
    out_end(o);
    return finish(o);
}

size_t sim_protocol_handle(struct sim_bms *b, const uint8_t *frame, size_t len, uint8_t *reply,
                           size_t cap)
{
    if (!b || !frame || !reply || cap < 16 || len < 4 || frame[0] != SIM_SYNC)
        return 0;
    struct out o = { reply, cap, 0, 0, false };
    uint8_t cmd = frame[1];
    size_t need = sim_request_length(frame, len);
    if (need != len)
        return reply_nack(&o, cmd, SIM_ERR_COMMAND);
    uint16_t crc = sim_crc16(frame, len - 2);
    if (frame[len - 2] != (uint8_t)(crc & 0xFF) || frame[len - 1] != (uint8_t)(crc >> 8))
        return reply_nack(&o, cmd, SIM_ERR_CRC);
    if (b->nack_only)
        return reply_nack(&o, cmd, SIM_ERR_COMMAND);
    switch (cmd) {
    case 0x02: return cmd_reset_clear(b, frame, &o);
    case 0x03: return cmd_modbus_read(b, frame, &o);
    case 0x07: return cmd_block_read(b, frame, &o);
    case 0x09: return cmd_individual_read(b, frame, &o);
    case 0x0B: return cmd_block_write(b, frame, &o);
    case 0x0D: return cmd_individual_write(b, frame, &o);
    case 0x10: return cmd_modbus_write(b, frame, &o);
    case 0x11:
    case 0x12: return cmd_events(b, frame, &o);
    case 0x14: case 0x15: case 0x16: case 0x17: case 0x18: case 0x19: case 0x1A:
    case 0x1B: case 0x1C: case 0x20:
        return cmd_live_value(b, cmd, &o);
    case 0x1D: return cmd_settings_table(b, frame, &o);
    case 0x1E:
    case 0x1F: return cmd_version(b, cmd, &o);
    default: return reply_nack(&o, cmd, SIM_ERR_COMMAND);
    }
}
