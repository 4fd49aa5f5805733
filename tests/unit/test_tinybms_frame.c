/* TinyBMS codec: CRC, request encoders/decoder, reply decoder, streaming decoder, payload helpers.
 * Vendor example frames from shared/spec/tinybms-uart.md are checked byte for byte. */
#include <stdlib.h>

#include "test.h"
#include "tinybms.h"

/* ---------------------------------------------------------------- helpers */

/* Builds a reply frame: AA cmd [pl] payload crc. Returns its length. */
static size_t make_frame(uint8_t *buf, uint8_t cmd, int pl, const uint8_t *payload, size_t n)
{
    size_t len = 0;
    buf[len++] = 0xAA;
    buf[len++] = cmd;
    if (pl >= 0)
        buf[len++] = (uint8_t)pl;
    if (n)
        memcpy(buf + len, payload, n);
    len += n;
    uint16_t crc = tinybms_crc16(buf, len);
    buf[len++] = (uint8_t)(crc & 0xFF);
    buf[len++] = (uint8_t)(crc >> 8);
    return len;
}

static size_t make_ack(uint8_t *buf, uint8_t cmd)
{
    return make_frame(buf, 0x01, cmd, NULL, 0);
}

static size_t make_nack(uint8_t *buf, uint8_t cmd, uint8_t err)
{
    return make_frame(buf, 0x00, cmd, &err, 1);
}

/* ---------------------------------------------------------------- CRC and vendor examples */

static void test_crc_modbus_check_value(void)
{
    const uint8_t check[] = "123456789";
    CHECK_EQ_INT(tinybms_crc16(check, 9), 0x4B37); /* CRC-16/MODBUS catalogue check value */
    CHECK_EQ_INT(tinybms_crc16(NULL, 0), 0xFFFF);
    const uint8_t temps_req[] = { 0xAA, 0x1B };
    CHECK_EQ_INT(tinybms_crc16(temps_req, 2), 0x1B3F); /* sent LSB first: 3F 1B */
}

static const uint8_t spec_write_req[] = { 0xAA, 0x10, 0x01, 0x3B, 0x00, 0x02, 0x04,
                                          0x10, 0x68, 0x09, 0xC4, 0x19, 0x61 };
static const uint8_t spec_write_ans[] = { 0xAA, 0x10, 0x01, 0x3B, 0x00, 0x02, 0x28, 0x22 };
static const uint8_t spec_read_req[] = { 0xAA, 0x03, 0x00, 0x05, 0x00, 0x05, 0x8C, 0x13 };
static const uint8_t spec_read_ans[] = { 0xAA, 0x03, 0x0A, 0x97, 0x40, 0x97, 0x40, 0x97,
                                         0x2C, 0x97, 0x2C, 0x97, 0x2C, 0x3E, 0xC7 };
static const uint8_t spec_temp_req[] = { 0xAA, 0x1B, 0x3F, 0x1B };
static const uint8_t spec_temp_ans[] = { 0xAA, 0x1B, 0x06, 0x16, 0x01, 0x14,
                                         0x01, 0x16, 0x01, 0x0E, 0x4E };

static void test_spec_modbus_write_example(void)
{
    uint8_t buf[TINYBMS_MAX_REQUEST];
    const uint16_t values[] = { 4200, 2500 };
    int n = tinybms_encode_write_modbus(buf, sizeof buf, 315, values, 2);
    CHECK_EQ_INT(n, sizeof spec_write_req);
    CHECK_MEM(buf, spec_write_req, sizeof spec_write_req);

    struct tinybms_reply r;
    CHECK_EQ_INT(tinybms_decode(spec_write_ans, sizeof spec_write_ans, &r), 8);
    CHECK_EQ_INT(r.kind, TINYBMS_REPLY_DATA);
    CHECK_EQ_INT(r.cmd, 0x10);
    uint16_t addr = 0;
    uint8_t count = 0;
    CHECK_EQ_INT(tinybms_reply_write_echo(&r, &addr, &count), GW_OK);
    CHECK_EQ_INT(addr, 315);
    CHECK_EQ_INT(count, 2);
}

static void test_spec_modbus_read_example(void)
{
    uint8_t buf[16];
    CHECK_EQ_INT(tinybms_encode_read_modbus(buf, sizeof buf, 5, 5), sizeof spec_read_req);
    CHECK_MEM(buf, spec_read_req, sizeof spec_read_req);

    struct tinybms_reply r;
    CHECK_EQ_INT(tinybms_decode(spec_read_ans, sizeof spec_read_ans, &r), sizeof spec_read_ans);
    CHECK_EQ_INT(r.cmd, 0x03);
    CHECK_EQ_INT(r.payload_len, 10);
    uint16_t regs[8];
    size_t count = 0;
    CHECK_EQ_INT(tinybms_reply_registers(&r, regs, 8, &count), GW_OK);
    CHECK_EQ_INT(count, 5);
    const double volts[] = { 3.8720, 3.8720, 3.8700, 3.8700, 3.8700 };
    for (size_t i = 0; i < 5; i++)
        CHECK_NEAR(regs[i] / 10000.0, volts[i], 1e-9);
}

static void test_spec_temperature_example(void)
{
    uint8_t buf[8];
    CHECK_EQ_INT(tinybms_encode_simple(buf, sizeof buf, 0x1B), 4);
    CHECK_MEM(buf, spec_temp_req, 4);

    struct tinybms_reply r;
    CHECK_EQ_INT(tinybms_decode(spec_temp_ans, sizeof spec_temp_ans, &r), sizeof spec_temp_ans);
    int16_t dc[3];
    bool present[3];
    CHECK_EQ_INT(tinybms_reply_temperatures(&r, dc, present), GW_OK);
    CHECK_EQ_INT(dc[0], 278);
    CHECK_EQ_INT(dc[1], 276);
    CHECK_EQ_INT(dc[2], 278);
    CHECK(present[0] && present[1] && present[2]);
}

static void test_temperature_sensor_absent(void)
{
    const uint8_t payload[] = { 0x16, 0x01, 0x00, 0x80, 0x00, 0x80 };
    uint8_t buf[16];
    size_t n = make_frame(buf, 0x1B, 6, payload, 6);
    struct tinybms_reply r;
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    int16_t dc[3];
    bool present[3];
    CHECK_EQ_INT(tinybms_reply_temperatures(&r, dc, present), GW_OK);
    CHECK(present[0]);
    CHECK(!present[1]);
    CHECK(!present[2]);
    CHECK_EQ_INT(dc[1], 0);
}

/* ---------------------------------------------------------------- encoders */

static void test_request_roundtrip_every_command(void)
{
    uint8_t buf[TINYBMS_MAX_REQUEST];
    struct tinybms_request q;
    int n;

    n = tinybms_encode_read_modbus(buf, sizeof buf, 0, 56);
    CHECK_EQ_INT(n, 8);
    CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
    CHECK_EQ_INT(q.cmd, 0x03);
    CHECK_EQ_INT(q.addr, 0);
    CHECK_EQ_INT(q.count, 56);

    n = tinybms_encode_read_block(buf, sizeof buf, 0x1234, 20);
    CHECK_EQ_INT(n, 7);
    CHECK_EQ_INT(buf[2], 20);
    CHECK_EQ_INT(buf[3], 0x34); /* little-endian address */
    CHECK_EQ_INT(buf[4], 0x12);
    CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
    CHECK_EQ_INT(q.cmd, 0x07);
    CHECK_EQ_INT(q.addr, 0x1234);
    CHECK_EQ_INT(q.count, 20);

    const uint16_t addrs[] = { 36, 37, 500, 315 };
    n = tinybms_encode_read_individual(buf, sizeof buf, addrs, 4);
    CHECK_EQ_INT(n, 3 + 8 + 2);
    CHECK_EQ_INT(buf[2], 8);
    CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
    CHECK_EQ_INT(q.cmd, 0x09);
    CHECK_EQ_INT(q.count, 4);
    CHECK_EQ_INT(q.addrs[2], 500);

    const uint16_t vals[] = { 3650, 2800, 3400 };
    n = tinybms_encode_write_block(buf, sizeof buf, 300, vals, 3);
    CHECK_EQ_INT(n, 5 + 6 + 2);
    CHECK_EQ_INT(buf[2], 8);
    CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
    CHECK_EQ_INT(q.cmd, 0x0B);
    CHECK_EQ_INT(q.addr, 300);
    CHECK_EQ_INT(q.count, 3);
    CHECK_EQ_INT(q.values[1], 2800);

    const uint16_t waddrs[] = { 315, 399 };
    const uint16_t wvals[] = { 4200, 0xBEEF };
    n = tinybms_encode_write_individual(buf, sizeof buf, waddrs, wvals, 2);
    CHECK_EQ_INT(n, 3 + 8 + 2);
    CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
    CHECK_EQ_INT(q.cmd, 0x0D);
    CHECK_EQ_INT(q.count, 2);
    CHECK_EQ_INT(q.addrs[1], 399);
    CHECK_EQ_INT(q.values[1], 0xBEEF);

    uint16_t many[100];
    for (int i = 0; i < 100; i++)
        many[i] = (uint16_t)(i * 257);
    n = tinybms_encode_write_modbus(buf, sizeof buf, 300, many, 100);
    CHECK_EQ_INT(n, 7 + 200 + 2);
    CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
    CHECK_EQ_INT(q.cmd, 0x10);
    CHECK_EQ_INT(q.count, 100);
    CHECK_EQ_INT(q.values[99], 99 * 257);

    const uint8_t resets[] = { 0x01, 0x02, 0x05 };
    for (size_t i = 0; i < 3; i++) {
        n = tinybms_encode_reset(buf, sizeof buf, resets[i]);
        CHECK_EQ_INT(n, 5);
        CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
        CHECK_EQ_INT(q.cmd, 0x02);
        CHECK_EQ_INT(q.option, resets[i]);
    }

    for (uint8_t opt = 1; opt <= 4; opt++) {
        n = tinybms_encode_read_settings(buf, sizeof buf, opt, 44);
        CHECK_EQ_INT(n, 7);
        CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
        CHECK_EQ_INT(q.cmd, 0x1D);
        CHECK_EQ_INT(q.option, opt);
        CHECK_EQ_INT(q.addr, 300);
        CHECK_EQ_INT(q.count, 44);
    }

    const uint8_t simple[] = { 0x11, 0x12, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19,
                               0x1A, 0x1B, 0x1C, 0x1E, 0x1F, 0x20 };
    for (size_t i = 0; i < sizeof simple; i++) {
        n = tinybms_encode_simple(buf, sizeof buf, simple[i]);
        CHECK_EQ_INT(n, 4);
        CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
        CHECK_EQ_INT(q.cmd, simple[i]);
    }
}

static void test_encoder_errors(void)
{
    uint8_t buf[TINYBMS_MAX_REQUEST];
    const uint16_t v[101] = { 0 };
    const uint16_t bad_addrs[] = { 315, 400 };
    const uint16_t low_addrs[] = { 299 };

    CHECK_EQ_INT(tinybms_encode_read_modbus(buf, sizeof buf, 0, 0), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_read_modbus(buf, sizeof buf, 0, 128), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_read_modbus(buf, 7, 0, 1), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(tinybms_encode_read_modbus(NULL, 8, 0, 1), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_read_block(buf, sizeof buf, 0, 0), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_read_block(buf, 6, 0, 1), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(tinybms_encode_read_individual(buf, sizeof buf, v, 0), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_read_individual(buf, sizeof buf, v, 16), GW_ERR_INVAL);

    /* Writes only reach 300..399. */
    CHECK_EQ_INT(tinybms_encode_write_modbus(buf, sizeof buf, 299, v, 1), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_encode_write_modbus(buf, sizeof buf, 400, v, 1), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_encode_write_modbus(buf, sizeof buf, 399, v, 2), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_encode_write_modbus(buf, sizeof buf, 0, v, 1), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_encode_write_modbus(buf, sizeof buf, 300, v, 101), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_write_modbus(buf, 10, 300, v, 2), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(tinybms_encode_write_modbus(buf, sizeof buf, 399, v, 1), 11);
    CHECK_EQ_INT(tinybms_encode_write_block(buf, sizeof buf, 299, v, 1), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_encode_write_block(buf, sizeof buf, 390, v, 11), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_encode_write_block(buf, sizeof buf, 300, v, 31), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_write_block(buf, sizeof buf, 0xFFFF, v, 2), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_encode_write_individual(buf, sizeof buf, bad_addrs, v, 2), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_encode_write_individual(buf, sizeof buf, low_addrs, v, 1), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_encode_write_individual(buf, sizeof buf, bad_addrs, v, 16),
                 GW_ERR_INVAL);

    CHECK_EQ_INT(tinybms_encode_reset(buf, sizeof buf, 0x03), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_reset(buf, 4, 0x01), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(tinybms_encode_read_settings(buf, sizeof buf, 0, 10), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_read_settings(buf, sizeof buf, 5, 10), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_read_settings(buf, sizeof buf, 4, 101), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_read_settings(buf, sizeof buf, 4, 0), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_simple(buf, sizeof buf, 0x1D), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_simple(buf, sizeof buf, 0x03), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_simple(buf, sizeof buf, 0x13), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_simple(buf, sizeof buf, 0x21), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_encode_simple(buf, 3, 0x14), GW_ERR_OVERFLOW);
}

static void test_request_decode_errors(void)
{
    uint8_t buf[16];
    struct tinybms_request q;
    int n = tinybms_encode_read_modbus(buf, sizeof buf, 0, 56);
    for (int len = 0; len < n; len++)
        CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)len, &q), 0);
    buf[n - 1] ^= 0x01;
    CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), GW_ERR_CRC);
    const uint8_t junk[] = { 0x55, 0xAA };
    CHECK_EQ_INT(tinybms_decode_request(junk, 2, &q), GW_ERR_PROTO);
    const uint8_t unknown[] = { 0xAA, 0x42, 0, 0 };
    CHECK_EQ_INT(tinybms_decode_request(unknown, 4, &q), GW_ERR_PROTO);
    /* 0x10 whose PL disagrees with RL. */
    uint8_t bad10[] = { 0xAA, 0x10, 0x01, 0x3B, 0x00, 0x02, 0x06, 0, 0, 0, 0, 0, 0, 0, 0 };
    CHECK_EQ_INT(tinybms_decode_request(bad10, sizeof bad10, &q), GW_ERR_PROTO);
    CHECK_EQ_INT(tinybms_decode_request(NULL, 4, &q), GW_ERR_INVAL);
}

/* ---------------------------------------------------------------- reply decoding */

static void test_ack_and_nack(void)
{
    uint8_t buf[8];
    struct tinybms_reply r;
    size_t n = make_ack(buf, 0x0B);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), 5);
    CHECK_EQ_INT(r.kind, TINYBMS_REPLY_ACK);
    CHECK_EQ_INT(r.cmd, 0x0B);
    CHECK_EQ_INT(r.payload_len, 0);

    n = make_nack(buf, 0x03, TINYBMS_NACK_COMMAND_ERROR);
    CHECK_EQ_INT(n, 6);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), 6);
    CHECK_EQ_INT(r.kind, TINYBMS_REPLY_NACK);
    CHECK_EQ_INT(r.cmd, 0x03);
    CHECK_EQ_INT(r.nack_error, TINYBMS_NACK_COMMAND_ERROR);

    n = make_nack(buf, 0x10, TINYBMS_NACK_CRC_ERROR);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), 6);
    CHECK_EQ_INT(r.kind, TINYBMS_REPLY_NACK);
    CHECK_EQ_INT(r.nack_error, TINYBMS_NACK_CRC_ERROR);

    /* A NACK is not data: helpers refuse it. */
    uint16_t regs[4];
    size_t count;
    struct tinybms_reply nack03 = r;
    nack03.cmd = 0x03;
    CHECK_EQ_INT(tinybms_reply_registers(&nack03, regs, 4, &count), GW_ERR_PROTO);

    /* ACK naming a command we never send is garbage. */
    n = make_ack(buf, 0x42);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), GW_ERR_PROTO);
}

/* Every reply type: built, decoded, helper checked. Returns frames via a table for reuse. */
static void test_reply_roundtrip_every_command(void)
{
    uint8_t buf[TINYBMS_MAX_FRAME];
    struct tinybms_reply r;
    size_t n;

    /* 0x07 little-endian words, last packet. */
    const uint8_t p07[] = { 0x34, 0x12, 0x78, 0x56 };
    n = make_frame(buf, 0x07, 4, p07, 4);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    CHECK(r.last_packet);
    uint16_t regs[64];
    size_t count;
    CHECK_EQ_INT(tinybms_reply_registers(&r, regs, 64, &count), GW_OK);
    CHECK_EQ_INT(count, 2);
    CHECK_EQ_INT(regs[0], 0x1234);
    CHECK_EQ_INT(regs[1], 0x5678);
    CHECK_EQ_INT(tinybms_reply_registers(&r, regs, 1, &count), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(count, 1);

    /* 0x07 multi-packet: packet 1 (assumed full: 31 registers), then the last one. */
    uint8_t p62[62];
    for (int i = 0; i < 62; i++)
        p62[i] = (uint8_t)i;
    n = make_frame(buf, 0x07, 0x81, p62, 62);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    CHECK(!r.last_packet);
    CHECK_EQ_INT(r.packet_id, 1);
    CHECK_EQ_INT(tinybms_reply_registers(&r, regs, 64, &count), GW_OK);
    CHECK_EQ_INT(count, 31);
    CHECK_EQ_INT(regs[1], 0x0302);

    /* 0x09 address/value pairs. */
    const uint8_t p09[] = { 36, 0, 0xD7, 0x23, 37, 0, 0x5F, 0x42 };
    n = make_frame(buf, 0x09, 8, p09, 8);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    uint16_t a[4], v[4];
    CHECK_EQ_INT(tinybms_reply_individual(&r, a, v, 4, &count), GW_OK);
    CHECK_EQ_INT(count, 2);
    CHECK_EQ_INT(a[1], 37);
    CHECK_EQ_INT(v[1], 0x425F);

    /* 0x11 events: BTSP then {u24 ts, id}. */
    const uint8_t p11[] = { 0x10, 0x20, 0x00, 0x00, 0x26, 0x12, 0x00, 0x65, 0x01, 0x02, 0x03, 0x02 };
    n = make_frame(buf, 0x11, sizeof p11, p11, sizeof p11);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    uint32_t bts = 0;
    struct bms_event ev[4];
    CHECK_EQ_INT(tinybms_reply_events(&r, &bts, ev, 4, &count), GW_OK);
    CHECK_EQ_INT(bts, 0x2010);
    CHECK_EQ_INT(count, 2);
    CHECK_EQ_INT(ev[0].timestamp_s, 0x1226);
    CHECK_EQ_INT(ev[0].id, 0x65);
    CHECK_EQ_INT(ev[1].timestamp_s, 0x030201);
    CHECK_EQ_INT(ev[1].id, 0x02);
    CHECK_EQ_INT(tinybms_reply_events(&r, &bts, ev, 1, &count), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(count, 1);
    n = make_frame(buf, 0x12, 4, p11, 4); /* no events */
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    CHECK_EQ_INT(tinybms_reply_events(&r, &bts, ev, 4, &count), GW_OK);
    CHECK_EQ_INT(count, 0);

    /* 0x14 / 0x15 floats: 55.79 V and -12.5 A. */
    const uint8_t p14[] = { 0xD7, 0x23, 0x5F, 0x42 };
    n = make_frame(buf, 0x14, -1, p14, 4);
    CHECK_EQ_INT(n, 8);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), 8);
    float f = 0;
    CHECK_EQ_INT(tinybms_reply_float(&r, &f), GW_OK);
    CHECK_NEAR(f, 55.79, 0.006); /* 0x425F23D7 = 55.785 */
    const uint8_t p15[] = { 0x00, 0x00, 0x48, 0xC1 };
    n = make_frame(buf, 0x15, -1, p15, 4);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), 8);
    CHECK_EQ_INT(tinybms_reply_float(&r, &f), GW_OK);
    CHECK_NEAR(f, -12.5, 1e-6);

    /* 0x16..0x18 u16. */
    const uint8_t p16[] = { 0x2A, 0x0E };
    for (uint8_t cmd = 0x16; cmd <= 0x18; cmd++) {
        n = make_frame(buf, cmd, -1, p16, 2);
        CHECK_EQ_INT(n, 6);
        CHECK_EQ_INT(tinybms_decode(buf, n, &r), 6);
        uint16_t u = 0;
        CHECK_EQ_INT(tinybms_reply_u16(&r, &u), GW_OK);
        CHECK_EQ_INT(u, 3626);
    }

    /* 0x19 / 0x1A u32. */
    const uint8_t p19[] = { 0xE0, 0x24, 0x37, 0x05 };
    for (uint8_t cmd = 0x19; cmd <= 0x1A; cmd++) {
        n = make_frame(buf, cmd, -1, p19, 4);
        CHECK_EQ_INT(tinybms_decode(buf, n, &r), 8);
        uint32_t u = 0;
        CHECK_EQ_INT(tinybms_reply_u32(&r, &u), GW_OK);
        CHECK_EQ_INT(u, 87500000);
    }

    /* 0x1C cells (little-endian) and 0x1D settings. */
    const uint8_t p1c[] = { 0x40, 0x97, 0x2C, 0x97 };
    n = make_frame(buf, 0x1C, 4, p1c, 4);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    CHECK_EQ_INT(tinybms_reply_registers(&r, regs, 64, &count), GW_OK);
    CHECK_EQ_INT(count, 2);
    CHECK_EQ_INT(regs[0], 38720);
    const uint8_t p1d[] = { 0x42, 0x0E, 0xF0, 0x0A };
    n = make_frame(buf, 0x1D, 4, p1d, 4);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    CHECK_EQ_INT(tinybms_reply_registers(&r, regs, 64, &count), GW_OK);
    CHECK_EQ_INT(regs[0], 3650);
    CHECK_EQ_INT(regs[1], 2800);

    /* 0x1E / 0x1F version. */
    const uint8_t p1f[] = { 3, 1, 2, 0x34, 0x12, 7, 9 };
    struct tinybms_fw_version ver;
    n = make_frame(buf, 0x1E, 5, p1f, 5);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    CHECK_EQ_INT(tinybms_reply_version(&r, &ver), GW_OK);
    CHECK_EQ_INT(ver.hw_version, 3);
    CHECK_EQ_INT(ver.fw_internal, 0x1234);
    CHECK(!ver.extended);
    n = make_frame(buf, 0x1F, 7, p1f, 7);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    CHECK_EQ_INT(tinybms_reply_version(&r, &ver), GW_OK);
    CHECK(ver.extended);
    CHECK_EQ_INT(ver.bootloader_version, 7);
    CHECK_EQ_INT(ver.register_map_version, 9);

    /* 0x20 speed / distance / time. */
    const uint8_t p20[] = { 0x00, 0x00, 0x20, 0x41, 100, 0, 0, 0, 0x10, 0x0E, 0, 0 };
    n = make_frame(buf, 0x20, -1, p20, 12);
    CHECK_EQ_INT(n, 16);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), 16);
    struct tinybms_motion m;
    CHECK_EQ_INT(tinybms_reply_motion(&r, &m), GW_OK);
    CHECK_NEAR(m.speed_kmh, 10.0, 1e-6);
    CHECK_EQ_INT(m.distance_left_km, 100);
    CHECK_EQ_INT(m.time_left_s, 3600);

    /* Helpers refuse the wrong command. */
    CHECK_EQ_INT(tinybms_reply_float(&r, &f), GW_ERR_PROTO);
    CHECK_EQ_INT(tinybms_reply_registers(&r, regs, 64, &count), GW_ERR_PROTO);
}

static void test_real_hardware_125_register_read(void)
{
    /* A 125-register 0x03 read answers PL = 0xFA in one frame. */
    uint8_t payload[250];
    for (int i = 0; i < 250; i++)
        payload[i] = (uint8_t)(i * 7);
    uint8_t buf[TINYBMS_MAX_FRAME];
    size_t n = make_frame(buf, 0x03, 0xFA, payload, 250);
    struct tinybms_reply r;
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), (int)n);
    uint16_t regs[125];
    size_t count;
    CHECK_EQ_INT(tinybms_reply_registers(&r, regs, 125, &count), GW_OK);
    CHECK_EQ_INT(count, 125);
    CHECK_EQ_INT(regs[124], (uint16_t)(((248 * 7) & 0xFF) << 8 | ((249 * 7) & 0xFF)));
}

static void test_truncated_at_every_length(void)
{
    const uint8_t *frames[] = { spec_write_ans, spec_read_ans, spec_temp_ans };
    const size_t lens[] = { sizeof spec_write_ans, sizeof spec_read_ans, sizeof spec_temp_ans };
    struct tinybms_reply r;
    for (size_t f = 0; f < 3; f++)
        for (size_t len = 0; len < lens[f]; len++)
            CHECK_EQ_INT(tinybms_decode(frames[f], len, &r), 0);
    uint8_t buf[8];
    size_t n = make_ack(buf, 0x0D);
    for (size_t len = 0; len < n; len++)
        CHECK_EQ_INT(tinybms_decode(buf, len, &r), 0);
    n = make_nack(buf, 0x0D, 1);
    for (size_t len = 0; len < n; len++)
        CHECK_EQ_INT(tinybms_decode(buf, len, &r), 0);
}

static void test_impossible_lengths_and_bad_crc(void)
{
    struct tinybms_reply r;
    uint8_t buf[TINYBMS_MAX_FRAME];
    uint8_t zeros[255] = { 0 };
    /* Odd / zero PL for register words. */
    size_t n = make_frame(buf, 0x03, 0xFF, zeros, 255);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), GW_ERR_PROTO);
    CHECK_EQ_INT(tinybms_decode(buf, 3, &r), GW_ERR_PROTO); /* known from the header alone */
    n = make_frame(buf, 0x03, 0, NULL, 0);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), GW_ERR_PROTO);
    n = make_frame(buf, 0x1B, 5, zeros, 5);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), GW_ERR_PROTO);
    n = make_frame(buf, 0x1C, 34, zeros, 34); /* 17 cells */
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), GW_ERR_PROTO);
    n = make_frame(buf, 0x07, 0x03, zeros, 3);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), GW_ERR_PROTO);
    n = make_frame(buf, 0x09, 0x06, zeros, 6);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), GW_ERR_PROTO);
    n = make_frame(buf, 0x11, 6, zeros, 6);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), GW_ERR_PROTO);
    n = make_frame(buf, 0x1E, 4, zeros, 4);
    CHECK_EQ_INT(tinybms_decode(buf, n, &r), GW_ERR_PROTO);
    /* Unknown command, no sync, commands that never answer with data. */
    const uint8_t unknown[] = { 0xAA, 0x42, 0x00 };
    CHECK_EQ_INT(tinybms_decode(unknown, 3, &r), GW_ERR_PROTO);
    const uint8_t nosync[] = { 0x55, 0x03 };
    CHECK_EQ_INT(tinybms_decode(nosync, 2, &r), GW_ERR_PROTO);
    const uint8_t data02[] = { 0xAA, 0x02, 0x01 };
    CHECK_EQ_INT(tinybms_decode(data02, 3, &r), GW_ERR_PROTO);
    CHECK_EQ_INT(tinybms_decode(NULL, 3, &r), GW_ERR_INVAL);

    /* Bad CRC: any flipped byte after the length-defining header. */
    memcpy(buf, spec_read_ans, sizeof spec_read_ans);
    for (size_t i = 3; i < sizeof spec_read_ans; i++) {
        buf[i] ^= 0x20;
        r.cmd = 0x77;
        CHECK_EQ_INT(tinybms_decode(buf, sizeof spec_read_ans, &r), GW_ERR_CRC);
        CHECK_EQ_INT(r.cmd, 0x77); /* out untouched on error */
        buf[i] ^= 0x20;
    }
    CHECK_EQ_INT(tinybms_decode(buf, sizeof spec_read_ans, &r), (int)sizeof spec_read_ans);
}

/* ---------------------------------------------------------------- streaming decoder */

struct seen {
    uint8_t cmd;
    uint8_t kind;
    uint16_t payload_len;
};

/* Feeds chunks delimited by cuts[] and collects decoded frames. */
static size_t feed_all(struct tinybms_decoder *dec, const uint8_t *data, size_t len,
                       const size_t *cuts, size_t ncuts, struct seen *out, size_t max,
                       int *errors)
{
    size_t found = 0, pos = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        const uint8_t *p = data + pos;
        size_t n = end - pos;
        for (int guard = 0; guard < 100000; guard++) {
            size_t used = 0;
            struct tinybms_reply r;
            int rc = tinybms_decoder_feed(dec, p, n, &used, &r);
            CHECK(used <= n);
            p += used;
            n -= used;
            if (rc == 1 && found < max) {
                out[found].cmd = r.cmd;
                out[found].kind = (uint8_t)r.kind;
                out[found].payload_len = r.payload_len;
                found++;
            } else if (rc < 0) {
                (*errors)++;
            } else if (rc == 0) {
                CHECK_EQ_INT(n, 0);
                break;
            }
            CHECK(dec->len <= TINYBMS_MAX_FRAME);
        }
        pos = end;
    }
    return found;
}

/* The stream used by the split tests: ACK + data back to back, garbage, a bad-CRC frame followed
 * right away by a good one, NACKs, a long read. */
static size_t build_stream(uint8_t *s, struct seen *expect, size_t *nexpect)
{
    size_t len = 0, e = 0;
    len += make_ack(s + len, 0x10);
    expect[e++] = (struct seen){ 0x10, TINYBMS_REPLY_ACK, 0 };
    memcpy(s + len, spec_read_ans, sizeof spec_read_ans); /* immediately after the ACK */
    len += sizeof spec_read_ans;
    expect[e++] = (struct seen){ 0x03, TINYBMS_REPLY_DATA, 10 };
    const uint8_t garbage[] = { 0x00, 0xFF, 0x13, 0xAA, 0x42, 0x55, 0xAA, 0xAA };
    memcpy(s + len, garbage, sizeof garbage);
    len += sizeof garbage;
    memcpy(s + len, spec_temp_ans, sizeof spec_temp_ans);
    s[len + 4] ^= 0x01; /* bad CRC */
    len += sizeof spec_temp_ans;
    memcpy(s + len, spec_temp_ans, sizeof spec_temp_ans); /* recovery right after it */
    len += sizeof spec_temp_ans;
    expect[e++] = (struct seen){ 0x1B, TINYBMS_REPLY_DATA, 6 };
    len += make_nack(s + len, 0x03, 0);
    expect[e++] = (struct seen){ 0x03, TINYBMS_REPLY_NACK, 0 };
    len += make_nack(s + len, 0x1D, 1);
    expect[e++] = (struct seen){ 0x1D, TINYBMS_REPLY_NACK, 0 };
    uint8_t regs[112];
    for (int i = 0; i < 112; i++)
        regs[i] = (uint8_t)(i == 50 ? 0xAA : i); /* a sync byte inside the payload */
    len += make_frame(s + len, 0x03, 112, regs, 112);
    expect[e++] = (struct seen){ 0x03, TINYBMS_REPLY_DATA, 112 };
    memcpy(s + len, spec_write_ans, sizeof spec_write_ans);
    len += sizeof spec_write_ans;
    expect[e++] = (struct seen){ 0x10, TINYBMS_REPLY_DATA, 4 };
    *nexpect = e;
    return len;
}

static void check_seen(const struct seen *got, size_t ngot, const struct seen *want, size_t nwant)
{
    CHECK_EQ_INT(ngot, nwant);
    for (size_t i = 0; i < ngot && i < nwant; i++) {
        CHECK_EQ_INT(got[i].cmd, want[i].cmd);
        CHECK_EQ_INT(got[i].kind, want[i].kind);
        CHECK_EQ_INT(got[i].payload_len, want[i].payload_len);
    }
}

static void test_stream_split_at_every_boundary(void)
{
    uint8_t stream[512];
    struct seen want[16], got[16];
    size_t nwant;
    size_t len = build_stream(stream, want, &nwant);

    for (size_t cut = 0; cut <= len; cut++) {
        struct tinybms_decoder dec;
        tinybms_decoder_init(&dec);
        int errors = 0;
        size_t ngot = feed_all(&dec, stream, len, &cut, 1, got, 16, &errors);
        check_seen(got, ngot, want, nwant);
        CHECK_EQ_INT(dec.frames, nwant);
        CHECK_EQ_INT(dec.crc_errors, 1);
        CHECK_EQ_INT(dec.len, 0);
        CHECK(errors >= 1);
    }
}

static void test_stream_byte_by_byte_and_random_chunks(void)
{
    uint8_t stream[512];
    struct seen want[16], got[16];
    size_t nwant;
    size_t len = build_stream(stream, want, &nwant);

    size_t cuts[512];
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    struct tinybms_decoder dec;
    tinybms_decoder_init(&dec);
    int errors = 0;
    size_t ngot = feed_all(&dec, stream, len, cuts, len - 1, got, 16, &errors);
    check_seen(got, ngot, want, nwant);
    uint32_t garbage_byte_by_byte = dec.garbage_bytes;

    uint32_t seed = 12345;
    for (int round = 0; round < 200; round++) {
        size_t ncuts = 0, pos = 0;
        while (ncuts < 64) {
            seed = seed * 1103515245u + 12345u;
            pos += 1 + (seed >> 16) % 40;
            if (pos >= len)
                break;
            cuts[ncuts++] = pos;
        }
        tinybms_decoder_init(&dec);
        errors = 0;
        ngot = feed_all(&dec, stream, len, cuts, ncuts, got, 16, &errors);
        check_seen(got, ngot, want, nwant);
        /* The same bytes are discarded whatever the chunking. */
        CHECK_EQ_INT(dec.garbage_bytes, garbage_byte_by_byte);
    }
}

static void test_stream_counts_garbage(void)
{
    struct tinybms_decoder dec;
    tinybms_decoder_init(&dec);
    const uint8_t garbage[] = { 0x01, 0x02, 0x03, 0x04 };
    size_t used;
    struct tinybms_reply r;
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, garbage, 4, &used, &r), 0);
    CHECK_EQ_INT(used, 4);
    CHECK_EQ_INT(dec.garbage_bytes, 4);
    CHECK_EQ_INT(dec.len, 0);

    /* An impossible header is dropped one byte at a time. */
    const uint8_t bad[] = { 0xAA, 0x42 };
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, bad, 2, &used, &r), GW_ERR_PROTO);
    CHECK_EQ_INT(dec.proto_errors, 1);
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, bad + used, 2 - used, &used, &r), 0);
    CHECK_EQ_INT(dec.garbage_bytes, 6);

    CHECK_EQ_INT(tinybms_decoder_feed(NULL, bad, 2, &used, &r), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, NULL, 2, &used, &r), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, NULL, 0, &used, &r), 0);
}

static void test_stream_resync_after_stall(void)
{
    /* Garbage that looks like the header of a 255-byte frame swallows a real ACK; once the line
     * goes idle the caller resyncs and gets the ACK out of the buffer. */
    uint8_t s[16] = { 0xAA, 0x03, 0xFA };
    size_t n = 3 + make_ack(s + 3, 0x0D);
    struct tinybms_decoder dec;
    tinybms_decoder_init(&dec);
    size_t used;
    struct tinybms_reply r;
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, s, n, &used, &r), 0);
    CHECK_EQ_INT(used, n);
    CHECK_EQ_INT(dec.len, n);
    CHECK(tinybms_decoder_resync(&dec));
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, NULL, 0, &used, &r), 1);
    CHECK_EQ_INT(r.kind, TINYBMS_REPLY_ACK);
    CHECK_EQ_INT(r.cmd, 0x0D);
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, NULL, 0, &used, &r), 0);
    CHECK_EQ_INT(dec.garbage_bytes, 3);
    CHECK(!tinybms_decoder_resync(&dec));

    /* Draining with no input while only part of a frame is buffered waits for more. */
    uint8_t partial[8] = { 0xAA, 0x03, 0xFA };
    size_t plen = make_ack(partial + 3, 0x0D); /* feed AA 03 FA AA 01 first */
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, partial, plen, &used, &r), 0);
    CHECK(tinybms_decoder_resync(&dec));
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, NULL, 0, &used, &r), 0);
    CHECK_EQ_INT(dec.len, 2);
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, partial + plen, 3, &used, &r), 1);
    CHECK_EQ_INT(r.kind, TINYBMS_REPLY_ACK);
    CHECK_EQ_INT(dec.garbage_bytes, 6);

    /* reset drops the buffer, keeps counters. */
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, s, 3, &used, &r), 0);
    tinybms_decoder_reset(&dec);
    CHECK_EQ_INT(dec.len, 0);
    CHECK_EQ_INT(dec.frames, 2);
    CHECK_EQ_INT(dec.garbage_bytes, 9);
}

static void test_stream_bad_crc_hides_real_frame(void)
{
    /* A corrupted long frame whose bytes contain a complete valid frame: after the CRC error the
     * rescan finds it without new input. */
    uint8_t payload[20] = { 0 };
    uint8_t ack[8];
    size_t ack_len = make_ack(ack, 0x0B);
    memcpy(payload + 4, ack, ack_len);
    uint8_t buf[64];
    size_t n = make_frame(buf, 0x03, 20, payload, 20);
    buf[n - 1] ^= 0xFF;
    struct tinybms_decoder dec;
    tinybms_decoder_init(&dec);
    size_t used;
    struct tinybms_reply r;
    CHECK_EQ_INT(tinybms_decoder_feed(&dec, buf, n, &used, &r), GW_ERR_CRC);
    CHECK_EQ_INT(dec.crc_errors, 1);
    size_t off = used;
    int rc;
    int frames = 0;
    do {
        rc = tinybms_decoder_feed(&dec, buf + off, n - off, &used, &r);
        off += used;
        if (rc == 1) {
            frames++;
            CHECK_EQ_INT(r.kind, TINYBMS_REPLY_ACK);
            CHECK_EQ_INT(r.cmd, 0x0B);
        }
    } while (rc != 0);
    CHECK_EQ_INT(frames, 1);
    CHECK_EQ_INT(off, n);
}

/* ---------------------------------------------------------------- the command table */

/* The command bytes of the protocol document (shared/spec/tinybms-uart.md, "Commands"), written
 * down here independently of the table. */
static const uint8_t spec_commands[] = { 0x02, 0x03, 0x07, 0x09, 0x0B, 0x0D, 0x10, 0x11,
                                         0x12, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A,
                                         0x1B, 0x1C, 0x1D, 0x1E, 0x1F, 0x20 };

static bool is_spec_command(unsigned cmd)
{
    for (size_t i = 0; i < sizeof spec_commands; i++)
        if (spec_commands[i] == cmd)
            return true;
    return false;
}

/* What the payload helpers (tinybms_payload.c, which do not read the table) say of a decoded
 * data reply: GW_OK when the helper of its command accepts it. -1 for commands without one. */
static int helper_verdict(const struct tinybms_reply *r)
{
    uint16_t regs[128], addrs[16], values[16], u16;
    size_t count;
    uint32_t u32;
    float f;
    uint8_t n8;
    int16_t dc[BMS_TEMP_SENSORS];
    bool present[BMS_TEMP_SENSORS];
    struct tinybms_motion m;
    struct tinybms_fw_version v;
    struct bms_event ev[64];
    switch (r->cmd) {
    case 0x03: case 0x07: case 0x1C: case 0x1D: {
        int rc = tinybms_reply_registers(r, regs, 128, &count);
        if (r->cmd == 0x1C && count > BMS_MAX_CELLS) /* one word per detected cell */
            return GW_ERR_PROTO;
        return rc == GW_OK && count * 2 == r->payload_len ? GW_OK : GW_ERR_PROTO;
    }
    case 0x09: return tinybms_reply_individual(r, addrs, values, 16, &count);
    case 0x10: return tinybms_reply_write_echo(r, &u16, &n8);
    case 0x11: case 0x12: return tinybms_reply_events(r, &u32, ev, 64, &count);
    case 0x14: case 0x15: return r->payload_len == 4 ? tinybms_reply_float(r, &f) : GW_ERR_PROTO;
    case 0x16: case 0x17: case 0x18:
        return r->payload_len == 2 ? tinybms_reply_u16(r, &u16) : GW_ERR_PROTO;
    case 0x19: case 0x1A: return r->payload_len == 4 ? tinybms_reply_u32(r, &u32) : GW_ERR_PROTO;
    case 0x1B: /* exactly internal, ext1, ext2 */
        return r->payload_len == 2 * BMS_TEMP_SENSORS ? tinybms_reply_temperatures(r, dc, present)
                                                      : GW_ERR_PROTO;
    case 0x1E: case 0x1F: return tinybms_reply_version(r, &v);
    case 0x20: return r->payload_len == 12 ? tinybms_reply_motion(r, &m) : GW_ERR_PROTO;
    default: return -1;
    }
}

static bool is_power_of_two(unsigned v)
{
    return v && (v & (v - 1)) == 0;
}

/* The shape of the table itself: every spec command has exactly one row, in order; nothing else
 * is a command; rules are well-formed. */
static void test_command_table_rows(void)
{
    size_t n = tinybms_command_count();
    CHECK_EQ_INT(n, sizeof spec_commands);
    CHECK(tinybms_command_at(n) == NULL);
    for (size_t i = 0; i < n; i++) {
        const struct tinybms_command_info *c = tinybms_command_at(i);
        CHECK(c != NULL);
        if (!c)
            return;
        CHECK_EQ_INT(c->cmd, spec_commands[i]);
        CHECK(tinybms_command_info(c->cmd) == c);
        CHECK(c->name != NULL && c->name[0] != '\0');
        CHECK_STR(tinybms_command_name(c->cmd), c->name);
        switch (c->request) {
        case TINYBMS_REQ_SIMPLE: CHECK_EQ_INT(c->request_len, 4); break;
        case TINYBMS_REQ_FIXED: CHECK(c->request_len > 4); break;
        case TINYBMS_REQ_PL:
            /* Requests are one last packet: the PL never reaches bit 6 or 7. */
            CHECK(is_power_of_two(c->request_pl.step));
            CHECK(c->request_pl.min <= c->request_pl.max && c->request_pl.max < 0x40);
            CHECK_EQ_INT(c->request_len, 0);
            break;
        case TINYBMS_REQ_MODBUS_WRITE: CHECK_EQ_INT(c->request_len, 0); break;
        default: CHECK(!"unknown request kind");
        }
        switch (c->answer) {
        case TINYBMS_ANSWER_ACK_ONLY: CHECK_EQ_INT(c->reply_len, 0); break;
        case TINYBMS_ANSWER_FIXED: CHECK(c->reply_len > 4); break;
        case TINYBMS_ANSWER_PL_PACKETS:
            CHECK(c->reply_pl.max < 0x40); /* bits 0..5 */
            CHECK(c->multi_packet_payload > 0 && c->multi_packet_payload < 0x40);
            /* fall through */
        case TINYBMS_ANSWER_PL:
            CHECK(is_power_of_two(c->reply_pl.step));
            CHECK(c->reply_pl.min <= c->reply_pl.max);
            CHECK_EQ_INT(c->reply_len, 0);
            break;
        default: CHECK(!"unknown answer rule");
        }
    }
    for (unsigned b = 0; b < 256; b++) {
        if (is_spec_command(b))
            continue;
        CHECK(tinybms_command_info((uint8_t)b) == NULL);
        CHECK_STR(tinybms_command_name((uint8_t)b), "unknown command");
    }
    CHECK(!tinybms_pl_allowed(NULL, 2));
}

/* Every row's answer rule against frames built for every PL value (or its fixed length): the
 * decoder takes exactly the frames the row allows, at the length it gives, and the payload
 * helpers accept what it takes. ACK and NACK name every command and nothing else. */
static void test_command_table_answers_decode(void)
{
    uint8_t buf[TINYBMS_MAX_FRAME + 8], payload[TINYBMS_MAX_FRAME];
    struct tinybms_reply r;
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 13 + 1);
    for (unsigned b = 0; b < 256; b++) {
        size_t n = make_ack(buf, (uint8_t)b);
        int want_ack = is_spec_command(b) ? (int)n : GW_ERR_PROTO;
        CHECK_EQ_INT(tinybms_decode(buf, n, &r), want_ack);
        n = make_nack(buf, (uint8_t)b, TINYBMS_NACK_CRC_ERROR);
        CHECK_EQ_INT(tinybms_decode(buf, n, &r), is_spec_command(b) ? (int)n : GW_ERR_PROTO);
        if (!is_spec_command(b)) {
            buf[0] = 0xAA;
            buf[1] = (uint8_t)b;
            if (b > 0x01) /* 0x00 / 0x01 are NACK / ACK */
                CHECK_EQ_INT(tinybms_reply_frame_len(buf, 2), GW_ERR_PROTO);
        }
    }
    for (size_t i = 0; i < tinybms_command_count(); i++) {
        const struct tinybms_command_info *c = tinybms_command_at(i);
        size_t n;
        switch (c->answer) {
        case TINYBMS_ANSWER_ACK_ONLY:
            buf[0] = 0xAA;
            buf[1] = c->cmd;
            CHECK_EQ_INT(tinybms_reply_frame_len(buf, 2), GW_ERR_PROTO);
            n = make_frame(buf, c->cmd, 0, NULL, 0);
            CHECK_EQ_INT(tinybms_decode(buf, n, &r), GW_ERR_PROTO);
            break;
        case TINYBMS_ANSWER_FIXED:
            n = make_frame(buf, c->cmd, -1, payload, (size_t)c->reply_len - 4);
            CHECK_EQ_INT(tinybms_reply_frame_len(buf, 2), c->reply_len);
            CHECK_EQ_INT(tinybms_decode(buf, n - 1, &r), 0);
            CHECK_EQ_INT(tinybms_decode(buf, n + 3, &r), (int)n); /* trailing bytes not taken */
            CHECK_EQ_INT(r.kind, TINYBMS_REPLY_DATA);
            CHECK(!r.has_pl);
            CHECK_EQ_INT(r.payload_len, c->reply_len - 4);
            CHECK_MEM(r.payload, payload, r.payload_len);
            if (helper_verdict(&r) != GW_OK)
                fprintf(stderr, "0x%02X: helper refuses the %u-byte frame of the table\n", c->cmd,
                        c->reply_len);
            CHECK_EQ_INT(helper_verdict(&r), GW_OK);
            break;
        case TINYBMS_ANSWER_PL:
        case TINYBMS_ANSWER_PL_PACKETS: {
            bool packets = c->answer == TINYBMS_ANSWER_PL_PACKETS;
            size_t taken = 0;
            for (unsigned pl = 0; pl < 256; pl++) {
                bool more = packets && (pl & 0x80);
                size_t size = more ? c->multi_packet_payload : packets ? (pl & 0x3F) : pl;
                bool ok = more || tinybms_pl_allowed(&c->reply_pl, (uint8_t)size);
                n = make_frame(buf, c->cmd, (int)pl, payload, size);
                buf[0] = 0xAA;
                CHECK_EQ_INT(tinybms_reply_frame_len(buf, 2), 0);
                CHECK_EQ_INT(tinybms_reply_frame_len(buf, 3), ok ? (int)(3 + size + 2) : GW_ERR_PROTO);
                int rc = tinybms_decode(buf, n, &r);
                CHECK_EQ_INT(rc, ok ? (int)n : GW_ERR_PROTO);
                if (rc <= 0)
                    continue;
                taken++;
                CHECK(r.has_pl);
                CHECK_EQ_INT(r.pl_raw, pl);
                CHECK_EQ_INT(r.payload_len, size);
                CHECK_EQ_INT(r.last_packet, !more);
                CHECK_EQ_INT(r.packet_id, more ? (pl & 0x3F) : 0);
                CHECK_EQ_INT(tinybms_decode(buf, n - 1, &r), 0);
                if (!more && tinybms_decode(buf, n, &r) == (int)n && helper_verdict(&r) != GW_OK) {
                    fprintf(stderr, "0x%02X: helper refuses PL %u that the table allows\n", c->cmd, pl);
                    CHECK(!"table and payload helper disagree");
                }
            }
            CHECK(taken > 0);
            break;
        }
        default:
            CHECK(!"unknown answer rule");
        }
    }
}

/* Every row's request kind against requests built by the encoders (or by hand for every PL). */
static void test_command_table_requests_decode(void)
{
    uint8_t buf[TINYBMS_MAX_REQUEST + 8];
    struct tinybms_request q;
    for (unsigned b = 0; b < 256; b++) {
        const struct tinybms_command_info *c = tinybms_command_info((uint8_t)b);
        int n = tinybms_encode_simple(buf, sizeof buf, (uint8_t)b);
        CHECK_EQ_INT(n, c && c->request == TINYBMS_REQ_SIMPLE ? 4 : GW_ERR_INVAL);
        if (n > 0)
            CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
        if (!c) {
            n = (int)make_frame(buf, (uint8_t)b, -1, NULL, 0);
            CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), GW_ERR_PROTO);
        }
    }
    const uint16_t words[TINYBMS_MODBUS_WRITE_MAX] = { 0 };
    for (size_t i = 0; i < tinybms_command_count(); i++) {
        const struct tinybms_command_info *c = tinybms_command_at(i);
        int n = 0;
        switch (c->request) {
        case TINYBMS_REQ_SIMPLE:
            break; /* above */
        case TINYBMS_REQ_FIXED:
            switch (c->cmd) {
            case 0x02: n = tinybms_encode_reset(buf, sizeof buf, TINYBMS_RESET_BMS); break;
            case 0x03: n = tinybms_encode_read_modbus(buf, sizeof buf, 0, 56); break;
            case 0x07: n = tinybms_encode_read_block(buf, sizeof buf, 0, 20); break;
            case 0x1D: n = tinybms_encode_read_settings(buf, sizeof buf, 4, 44); break;
            default: CHECK(!"fixed request without an encoder");
            }
            CHECK_EQ_INT(n, c->request_len);
            CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
            CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n - 1, &q), 0);
            break;
        case TINYBMS_REQ_PL:
            for (unsigned pl = 0; pl < 256; pl++) {
                uint8_t zeros[255] = { 0 };
                n = (int)make_frame(buf, c->cmd, (int)pl, zeros, pl < 0x40 ? pl : 0);
                bool ok = tinybms_pl_allowed(&c->request_pl, (uint8_t)pl);
                CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), ok ? n : GW_ERR_PROTO);
            }
            break;
        case TINYBMS_REQ_MODBUS_WRITE:
            for (size_t k = 1; k <= TINYBMS_MODBUS_WRITE_MAX; k++) {
                n = tinybms_encode_write_modbus(buf, sizeof buf, 300, words, k);
                CHECK_EQ_INT(n, (int)(7 + 2 * k + 2));
                CHECK_EQ_INT(tinybms_decode_request(buf, (size_t)n, &q), n);
            }
            break;
        default:
            CHECK(!"unknown request kind");
        }
    }
}

TEST_MAIN(TEST_CASE(test_crc_modbus_check_value), TEST_CASE(test_spec_modbus_write_example),
          TEST_CASE(test_spec_modbus_read_example), TEST_CASE(test_spec_temperature_example),
          TEST_CASE(test_temperature_sensor_absent),
          TEST_CASE(test_request_roundtrip_every_command), TEST_CASE(test_encoder_errors),
          TEST_CASE(test_request_decode_errors), TEST_CASE(test_ack_and_nack),
          TEST_CASE(test_reply_roundtrip_every_command),
          TEST_CASE(test_real_hardware_125_register_read),
          TEST_CASE(test_truncated_at_every_length),
          TEST_CASE(test_impossible_lengths_and_bad_crc),
          TEST_CASE(test_stream_split_at_every_boundary),
          TEST_CASE(test_stream_byte_by_byte_and_random_chunks),
          TEST_CASE(test_stream_counts_garbage), TEST_CASE(test_stream_resync_after_stall),
          TEST_CASE(test_stream_bad_crc_hides_real_frame),
          TEST_CASE(test_command_table_rows), TEST_CASE(test_command_table_answers_decode),
          TEST_CASE(test_command_table_requests_decode))
