/* Unit tests of the simulator's register image and protocol responder, in process: the spec's
 * own example frames byte for byte, NACKs, multi-packet 0x07, 0x1D tables, write-to-set
 * registers, the 14-cell layout, old firmware, and parser robustness. The fault modes and the
 * BMS reset are checked through the gateway's own codec (src/core/tinybms: the CRC must be
 * valid) and, for the impossible values, its plausibility gate (they must be refused). */
#include "test.h"

#include <stdlib.h>

#include "gw_config.h"
#include "gw_error.h"
#include "plausibility.h"
#include "sim_protocol.h"
#include "sim_registers.h"
#include "tinybms.h"

static struct sim_bms bms;
static uint8_t reply[SIM_REPLY_MAX];

static void setup(enum battery_chemistry chem, unsigned cells, bool old_fw)
{
    struct battery_model_config cfg;
    battery_model_default_config(&cfg, chem);
    cfg.cells = (uint8_t)cells;
    CHECK_EQ_INT(sim_bms_init(&bms, &cfg, old_fw), 0);
}

/* Appends the CRC to req (len bytes, room for 2 more) and answers it. */
static size_t ask(uint8_t *req, size_t len)
{
    uint16_t crc = sim_crc16(req, len);
    req[len] = (uint8_t)(crc & 0xFF);
    req[len + 1] = (uint8_t)(crc >> 8);
    return sim_protocol_handle(&bms, req, len + 2, reply, sizeof reply);
}

static bool is_nack(size_t n, uint8_t cmd, uint8_t err)
{
    if (n != 6 || reply[0] != 0xAA || reply[1] != 0x00 || reply[2] != cmd || reply[3] != err)
        return false;
    uint16_t crc = sim_crc16(reply, 4);
    return reply[4] == (crc & 0xFF) && reply[5] == (crc >> 8);
}

static bool is_ack(size_t n, uint8_t cmd)
{
    uint16_t crc = sim_crc16(reply, 3);
    return n == 5 && reply[0] == 0xAA && reply[1] == 0x01 && reply[2] == cmd &&
           reply[3] == (crc & 0xFF) && reply[4] == (crc >> 8);
}

static uint16_t reg(uint16_t addr)
{
    uint16_t v = 0;
    CHECK_EQ_INT(sim_registers_read(&bms, addr, &v), 0);
    return v;
}

static void test_crc_vectors(void)
{
    static const uint8_t read_req[] = { 0xAA, 0x03, 0x00, 0x05, 0x00, 0x05 };
    CHECK_EQ_INT(sim_crc16(read_req, sizeof read_req), 0x138C);
    static const uint8_t temp_req[] = { 0xAA, 0x1B };
    CHECK_EQ_INT(sim_crc16(temp_req, sizeof temp_req), 0x1B3F);
}

static void test_spec_modbus_read_vector(void)
{
    setup(BATTERY_NMC, 16, false);
    static const float volts[5] = { 3.8720f, 3.8720f, 3.8700f, 3.8700f, 3.8700f };
    for (unsigned i = 0; i < 5; i++)
        battery_model_set_cell_ocv(&bms.model, 5 + i, volts[i]);
    uint8_t req[] = { 0xAA, 0x03, 0x00, 0x05, 0x00, 0x05, 0x8C, 0x13 };
    size_t n = sim_protocol_handle(&bms, req, sizeof req, reply, sizeof reply);
    static const uint8_t expect[] = { 0xAA, 0x03, 0x0A, 0x97, 0x40, 0x97, 0x40, 0x97, 0x2C,
                                      0x97, 0x2C, 0x97, 0x2C, 0x3E, 0xC7 };
    CHECK_EQ_INT(n, sizeof expect);
    CHECK_MEM(reply, expect, sizeof expect);
}

static void test_spec_temperature_vector(void)
{
    setup(BATTERY_LFP, 16, false);
    bms.model.temp_internal_c = 27.8f;
    bms.model.temp_ext_c[0] = 27.6f;
    bms.model.temp_ext_c[1] = 27.8f;
    bms.model.ext_sensor_connected[1] = true;
    uint8_t req[] = { 0xAA, 0x1B, 0x3F, 0x1B };
    size_t n = sim_protocol_handle(&bms, req, sizeof req, reply, sizeof reply);
    static const uint8_t expect[] = { 0xAA, 0x1B, 0x06, 0x16, 0x01, 0x14, 0x01, 0x16, 0x01, 0x0E, 0x4E };
    CHECK_EQ_INT(n, sizeof expect);
    CHECK_MEM(reply, expect, sizeof expect);
    /* Ext2 absent: -32768. */
    bms.model.ext_sensor_connected[1] = false;
    n = sim_protocol_handle(&bms, req, sizeof req, reply, sizeof reply);
    CHECK_EQ_INT(n, 11);
    CHECK_EQ_INT(reply[7], 0x00);
    CHECK_EQ_INT(reply[8], 0x80);
    CHECK_EQ_INT(reg(43), 0x8000);
}

static void test_spec_modbus_write_vector(void)
{
    setup(BATTERY_LFP, 16, false);
    uint8_t req[] = { 0xAA, 0x10, 0x01, 0x3B, 0x00, 0x02, 0x04, 0x10, 0x68, 0x09, 0xC4, 0x19, 0x61 };
    size_t n = sim_protocol_handle(&bms, req, sizeof req, reply, sizeof reply);
    static const uint8_t expect[] = { 0xAA, 0x10, 0x01, 0x3B, 0x00, 0x02, 0x28, 0x22 };
    CHECK_EQ_INT(n, sizeof expect);
    CHECK_MEM(reply, expect, sizeof expect);
    CHECK_EQ_INT(reg(315), 4200);
    CHECK_EQ_INT(reg(316), 2500);
    CHECK_EQ_INT(bms.model.cfg.over_voltage_cutoff_mv, 4200);
    CHECK_EQ_INT(bms.model.cfg.under_voltage_cutoff_mv, 2500);
}

static void test_nacks(void)
{
    setup(BATTERY_LFP, 16, false);
    /* Bad CRC. */
    uint8_t bad[] = { 0xAA, 0x03, 0x00, 0x05, 0x00, 0x05, 0x8C, 0x14 };
    CHECK(is_nack(sim_protocol_handle(&bms, bad, sizeof bad, reply, sizeof reply), 0x03, 0x01));
    /* Unknown command. */
    uint8_t unk[6] = { 0xAA, 0x42 };
    CHECK(is_nack(ask(unk, 2), 0x42, 0x00));
    /* Out-of-range write (315 = 5000 mV) via 0x10: nothing changes. */
    uint8_t w1[16] = { 0xAA, 0x10, 0x01, 0x3B, 0x00, 0x01, 0x02, 0x13, 0x88 };
    CHECK(is_nack(ask(w1, 9), 0x10, 0x00));
    CHECK_EQ_INT(reg(315), 3650);
    /* Write outside 300..399: live register 0 and 400. */
    uint8_t w2[16] = { 0xAA, 0x10, 0x00, 0x00, 0x00, 0x01, 0x02, 0x0C, 0xE4 };
    CHECK(is_nack(ask(w2, 9), 0x10, 0x00));
    uint8_t w3[16] = { 0xAA, 0x10, 0x01, 0x90, 0x00, 0x01, 0x02, 0x00, 0x01 };
    CHECK(is_nack(ask(w3, 9), 0x10, 0x00));
    /* A reserved register inside the window (302). */
    uint8_t w4[16] = { 0xAA, 0x10, 0x01, 0x2E, 0x00, 0x01, 0x02, 0x00, 0x01 };
    CHECK(is_nack(ask(w4, 9), 0x10, 0x00));
    /* A block where the second value is bad leaves the first unchanged (transaction). */
    uint8_t w5[16] = { 0xAA, 0x10, 0x01, 0x3B, 0x00, 0x02, 0x04, 0x0E, 0x10, 0x00, 0x01 };
    CHECK(is_nack(ask(w5, 11), 0x10, 0x00));
    CHECK_EQ_INT(reg(315), 3650);
    /* PL inconsistent with RL. */
    uint8_t w6[16] = { 0xAA, 0x10, 0x01, 0x3B, 0x00, 0x02, 0x02, 0x0E, 0x10 };
    CHECK(is_nack(ask(w6, 9), 0x10, 0x00));
    /* 0x03: RL 0, RL 128, non-zero high byte, unreadable address. */
    uint8_t r1[10] = { 0xAA, 0x03, 0x00, 0x00, 0x00, 0x00 };
    CHECK(is_nack(ask(r1, 6), 0x03, 0x00));
    r1[5] = 128;
    CHECK(is_nack(ask(r1, 6), 0x03, 0x00));
    r1[4] = 1;
    r1[5] = 1;
    CHECK(is_nack(ask(r1, 6), 0x03, 0x00));
    uint8_t r2[10] = { 0xAA, 0x03, 0x01, 0x90, 0x00, 0x01 }; /* 400 */
    CHECK(is_nack(ask(r2, 6), 0x03, 0x00));
    /* Signed setting: 320 = -45 degC is out of -40..10, -20 is fine (0x0D individual write). */
    uint8_t w7[16] = { 0xAA, 0x0D, 0x04, 0x40, 0x01, 0xD3, 0xFF };
    CHECK(is_nack(ask(w7, 7), 0x0D, 0x00));
    w7[5] = 0xEC;
    CHECK(is_ack(ask(w7, 7), 0x0D));
    CHECK_EQ_INT((int16_t)reg(320), -20);
    CHECK_EQ_INT(bms.model.cfg.low_temp_charge_cutoff_c, -20);
    /* 0x02 with an unknown option. */
    uint8_t c1[8] = { 0xAA, 0x02, 0x07 };
    CHECK(is_nack(ask(c1, 3), 0x02, 0x00));
    /* Wrong length given to the handler. */
    uint8_t shortf[] = { 0xAA, 0x03, 0x00, 0x00, 0x3C };
    CHECK(is_nack(sim_protocol_handle(&bms, shortf, sizeof shortf, reply, sizeof reply), 0x03, 0x00));
    CHECK_EQ_INT(sim_protocol_handle(&bms, shortf, 3, reply, sizeof reply), 0);
}

/* nack_only: a BMS refusing everything answers every good request NACK 0x00, changes nothing,
 * and still reports a corrupted request as a CRC error. */
static void test_nack_only(void)
{
    setup(BATTERY_LFP, 16, false);
    bms.nack_only = true;
    uint8_t live[8] = { 0xAA, 0x03, 0x00, 0x00, 0x00, 0x38 };
    CHECK(is_nack(ask(live, 6), 0x03, 0x00));
    uint8_t version[4] = { 0xAA, 0x1E };
    CHECK(is_nack(ask(version, 2), 0x1E, 0x00));
    uint8_t w[16] = { 0xAA, 0x10, 0x01, 0x3B, 0x00, 0x01, 0x02, 0x0E, 0x10 }; /* 315 = 3600 mV */
    CHECK(is_nack(ask(w, 9), 0x10, 0x00));
    CHECK_EQ_INT(reg(315), 3650);
    uint8_t bad[] = { 0xAA, 0x03, 0x00, 0x05, 0x00, 0x05, 0x8C, 0x14 };
    CHECK(is_nack(sim_protocol_handle(&bms, bad, sizeof bad, reply, sizeof reply), 0x03, 0x01));
    bms.nack_only = false;
    CHECK(ask(live, 6) == 5 + 2 * 56);
}

static void test_block_read_multi_packet(void)
{
    setup(BATTERY_LFP, 16, false);
    uint16_t regs[40];
    CHECK_EQ_INT(sim_registers_read_block(&bms, 0, 40, regs), 0);
    uint8_t req[8] = { 0xAA, 0x07, 40, 0x00, 0x00 };
    size_t n = ask(req, 5);
    /* Packet 1: PL 0x81, 31 registers; last packet: PL 18, 9 registers. */
    CHECK_EQ_INT(n, (3 + 62 + 2) + (3 + 18 + 2));
    CHECK_EQ_INT(reply[0], 0xAA);
    CHECK_EQ_INT(reply[1], 0x07);
    CHECK_EQ_INT(reply[2], 0x81);
    for (unsigned i = 0; i < 31; i++)
        CHECK_EQ_INT(reply[3 + 2 * i] | (reply[4 + 2 * i] << 8), regs[i]);
    uint16_t crc = sim_crc16(reply, 65);
    CHECK_EQ_INT(reply[65] | (reply[66] << 8), crc);
    const uint8_t *p2 = reply + 67;
    CHECK_EQ_INT(p2[0], 0xAA);
    CHECK_EQ_INT(p2[1], 0x07);
    CHECK_EQ_INT(p2[2], 18);
    for (unsigned i = 0; i < 9; i++)
        CHECK_EQ_INT(p2[3 + 2 * i] | (p2[4 + 2 * i] << 8), regs[31 + i]);
    crc = sim_crc16(p2, 21);
    CHECK_EQ_INT(p2[21] | (p2[22] << 8), crc);
    /* 127 registers: 4 full packets (ids 1..4) + one of 3 registers. */
    req[2] = 127;
    n = ask(req, 5);
    CHECK_EQ_INT(n, 4 * 67 + (3 + 6 + 2));
    CHECK_EQ_INT(reply[67 * 3 + 2], 0x84);
    CHECK_EQ_INT(reply[67 * 4 + 2], 6);
    /* 31 registers fit one packet. */
    req[2] = 31;
    CHECK_EQ_INT(ask(req, 5), 3 + 62 + 2);
    CHECK_EQ_INT(reply[2], 62);
    /* Version block through 0x07 (LE). */
    uint8_t v[8] = { 0xAA, 0x07, 10, 0xF4, 0x01 };
    CHECK_EQ_INT(ask(v, 5), 3 + 20 + 2);
    CHECK_EQ_INT(reply[3] | (reply[4] << 8), bms.version[0]);
}

static void test_individual_read_and_writes(void)
{
    setup(BATTERY_LFP, 16, false);
    uint8_t req[16] = { 0xAA, 0x09, 0x06, 53, 0, 50, 0, 0x3B, 0x01 };
    size_t n = ask(req, 9);
    CHECK_EQ_INT(n, 3 + 12 + 2);
    CHECK_EQ_INT(reply[2], 12);
    CHECK_EQ_INT(reply[3] | (reply[4] << 8), 53);
    CHECK_EQ_INT(reply[5] | (reply[6] << 8), 16);
    CHECK_EQ_INT(reply[9] | (reply[10] << 8), 0x97);
    CHECK_EQ_INT(reply[11] | (reply[12] << 8), 315);
    CHECK_EQ_INT(reply[13] | (reply[14] << 8), 3650);
    /* 0x0B block write LE: 300..301 = 3600, 2900. */
    uint8_t w[16] = { 0xAA, 0x0B, 0x06, 0x2C, 0x01, 0x10, 0x0E, 0x54, 0x0B };
    CHECK(is_ack(ask(w, 9), 0x0B));
    CHECK_EQ_INT(reg(300), 3600);
    CHECK_EQ_INT(reg(301), 2900);
    CHECK_EQ_INT(bms.model.cfg.fully_charged_mv, 3600);
    /* Multi-packet request PL is refused. */
    uint8_t m[16] = { 0xAA, 0x09, 0x82, 53, 0 };
    CHECK(is_nack(ask(m, 5), 0x09, 0x00));
    /* 20 individual reads answer in two packets (15 + 5 pairs). */
    uint8_t big[64] = { 0xAA, 0x09, 40 };
    for (int i = 0; i < 20; i++) {
        big[3 + 2 * i] = (uint8_t)i;
        big[4 + 2 * i] = 0;
    }
    n = ask(big, 43);
    CHECK_EQ_INT(n, (3 + 60 + 2) + (3 + 20 + 2));
    CHECK_EQ_INT(reply[2], 0x81);
    CHECK_EQ_INT(reply[65 + 2], 20);
}

static void test_settings_tables(void)
{
    setup(BATTERY_LFP, 16, false);
    uint8_t req[8] = { 0xAA, 0x1D, SIM_TABLE_MIN, 0x00, 44 };
    size_t n = ask(req, 5);
    CHECK_EQ_INT(n, 3 + 88 + 2);
    CHECK_EQ_INT(reply[2], 88);
#define ENTRY(r) (reply[3 + 2 * ((r) - 300)] | (reply[4 + 2 * ((r) - 300)] << 8))
    CHECK_EQ_INT(ENTRY(315), 1200);
    CHECK_EQ_INT(ENTRY(307), 4);
    CHECK_EQ_INT((int16_t)ENTRY(320), -40);
    CHECK_EQ_INT(ENTRY(302), 0);
    req[2] = SIM_TABLE_MAX;
    ask(req, 5);
    CHECK_EQ_INT(ENTRY(315), 4500);
    CHECK_EQ_INT(ENTRY(317), 750);
    CHECK_EQ_INT(ENTRY(319), 90);
    req[2] = SIM_TABLE_DEFAULT;
    ask(req, 5);
    CHECK_EQ_INT(ENTRY(315), 3650);
    CHECK_EQ_INT(ENTRY(306), 28000);
    CHECK_EQ_INT(ENTRY(307), 16);
    req[2] = SIM_TABLE_CURRENT;
    ask(req, 5);
    for (uint16_t r = 300; r < 344; r++)
        CHECK_EQ_INT(ENTRY(r), reg(r));
#undef ENTRY
    /* Bad option, RL 0 and RL > 100. */
    req[2] = 5;
    CHECK(is_nack(ask(req, 5), 0x1D, 0x00));
    req[2] = 1;
    req[4] = 0;
    CHECK(is_nack(ask(req, 5), 0x1D, 0x00));
    req[4] = 101;
    CHECK(is_nack(ask(req, 5), 0x1D, 0x00));
    req[4] = 100;
    CHECK_EQ_INT(ask(req, 5), 3 + 200 + 2);
}

static void test_write_to_set_soh_soc(void)
{
    setup(BATTERY_LFP, 16, false);
    CHECK_EQ_INT(reg(323), 50000);
    CHECK_EQ_INT(reg(45), 50000);
    uint8_t w[16] = { 0xAA, 0x10, 0x01, 0x43, 0x00, 0x01, 0x02, 0xAF, 0xC8 }; /* 45000 = 90 % */
    CHECK_EQ_INT(ask(w, 9), 8);
    CHECK_EQ_INT(reg(323), 0xFFFF);
    CHECK_EQ_INT(reg(45), 45000);
    uint8_t s[16] = { 0xAA, 0x10, 0x01, 0x48, 0x00, 0x01, 0x02, 0x30, 0xD4 }; /* 12500 = 25 % */
    CHECK_EQ_INT(ask(s, 9), 8);
    CHECK_EQ_INT(reg(328), 0xFFFF);
    CHECK_EQ_INT((uint32_t)reg(46) | ((uint32_t)reg(47) << 16), 25000000u);
    uint8_t bad[16] = { 0xAA, 0x10, 0x01, 0x43, 0x00, 0x01, 0x02, 0xC3, 0x51 }; /* 50001 */
    CHECK(is_nack(ask(bad, 9), 0x10, 0x00));
}

static void test_live_layout_14_cells(void)
{
    setup(BATTERY_LFP, 14, false);
    battery_model_step(&bms.model, -20.0f, 1.0f);
    uint16_t live[SIM_LIVE_COUNT];
    sim_registers_live(&bms, live);
    CHECK_EQ_INT(live[0], 0);
    CHECK_EQ_INT(live[1], 0);
    CHECK_EQ_INT(live[53], 14);
    uint16_t lo = 0xFFFF, hi = 0;
    for (unsigned r = 2; r < 16; r++) {
        CHECK(live[r] > 30000 && live[r] < 34000);
        lo = live[r] < lo ? live[r] : lo;
        hi = live[r] > hi ? live[r] : hi;
    }
    CHECK_EQ_INT(live[2], (uint16_t)lround(bms.model.cell_voltage_v[0] * 10000.0));
    CHECK_EQ_INT(live[40], (lo + 5) / 10);
    CHECK_EQ_INT(live[41], (hi + 5) / 10);
    CHECK_EQ_INT(live[50], 0x93);
    CHECK_EQ_INT(sim_registers_cell_register(14, 0), 2);
    /* Floats: low word in the lower register. */
    uint32_t u = (uint32_t)live[36] | ((uint32_t)live[37] << 16);
    float v;
    memcpy(&v, &u, sizeof v);
    CHECK_NEAR(v, battery_model_pack_voltage(&bms.model), 0.0);
    u = (uint32_t)live[38] | ((uint32_t)live[39] << 16);
    memcpy(&v, &u, sizeof v);
    CHECK_NEAR(v, -20.0, 0.0);
    CHECK((live[34] | (live[35] << 16)) > 0); /* time left while discharging */
    /* 0x1C answers 14 cells in register order. */
    uint8_t req[6] = { 0xAA, 0x1C };
    CHECK_EQ_INT(ask(req, 2), 3 + 28 + 2);
    CHECK_EQ_INT(reply[2], 28);
    CHECK_EQ_INT(reply[3] | (reply[4] << 8), live[2]);
    /* Simple reads match the registers. */
    uint8_t q[6] = { 0xAA, 0x14 };
    CHECK_EQ_INT(ask(q, 2), 8);
    CHECK_EQ_INT(reply[2] | (reply[3] << 8), live[36]);
    CHECK_EQ_INT(reply[4] | (reply[5] << 8), live[37]);
    q[1] = 0x17;
    CHECK_EQ_INT(ask(q, 2), 6);
    CHECK_EQ_INT(reply[2] | (reply[3] << 8), live[40]);
    q[1] = 0x1A;
    CHECK_EQ_INT(ask(q, 2), 8);
    CHECK_EQ_INT(reply[2] | (reply[3] << 8), live[46]);
    q[1] = 0x20;
    CHECK_EQ_INT(ask(q, 2), 16);
    q[1] = 0x1E;
    CHECK_EQ_INT(ask(q, 2), 3 + 5 + 2);
    CHECK_EQ_INT(reply[5], bms.version[1] & 0xFF);
    q[1] = 0x1F;
    CHECK_EQ_INT(ask(q, 2), 3 + 7 + 2);
}

static void test_events_and_clear(void)
{
    setup(BATTERY_LFP, 16, false);
    battery_model_step(&bms.model, 10.0f, 1.0f); /* 0x62 charging started */
    battery_model_step(&bms.model, -300.0f, 1.0f); /* 0x05 over-current */
    CHECK_EQ_INT(reg(201) >> 8, 0x05); /* newest first */
    CHECK_EQ_INT(reg(200), 2);
    CHECK_EQ_INT(reg(203) >> 8, 0x62);
    CHECK_EQ_INT(reg(205) >> 8, 0x61);
    CHECK_EQ_INT(reg(107), 1);
    uint8_t req[6] = { 0xAA, 0x11 };
    CHECK_EQ_INT(ask(req, 2), 3 + 4 + 12 + 2);
    CHECK_EQ_INT(reply[3], 2); /* BMS time */
    CHECK_EQ_INT(reply[10], 0x05);
    CHECK_EQ_INT(ask(req, 2), 3 + 4 + 2); /* nothing new */
    req[1] = 0x12;
    CHECK_EQ_INT(ask(req, 2), 3 + 4 + 12 + 2);
    uint8_t clr[8] = { 0xAA, 0x02, 0x01 };
    CHECK(is_ack(ask(clr, 3), 0x02));
    CHECK_EQ_INT(reg(200), 0);
    CHECK_EQ_INT(reg(201), 0);
    clr[2] = 0x02;
    CHECK(is_ack(ask(clr, 3), 0x02));
    CHECK_EQ_INT(reg(107), 0);
    CHECK_EQ_INT(reg(116), 2);
    clr[2] = 0x05;
    CHECK(is_ack(ask(clr, 3), 0x02));
    CHECK_EQ_INT(reg(201) >> 8, 0x61);
}

static void test_old_firmware(void)
{
    setup(BATTERY_LFP, 16, true);
    uint8_t live[10] = { 0xAA, 0x03, 0x00, 0x00, 0x00, 56 };
    CHECK(is_nack(ask(live, 6), 0x03, 0x00));
    uint8_t part[10] = { 0xAA, 0x03, 0x00, 0x00, 0x00, 45 };
    CHECK_EQ_INT(ask(part, 6), 3 + 90 + 2);
    uint8_t w[16] = { 0xAA, 0x10, 0x01, 0x31, 0x00, 0x01, 0x02, 0x00, 0x64 }; /* 305 */
    CHECK(is_nack(ask(w, 9), 0x10, 0x00));
    uint16_t v;
    CHECK_EQ_INT(sim_registers_read(&bms, 329, &v), GW_ERR_NOT_FOUND);
    bms.old_firmware_junk = true;
    CHECK_EQ_INT(ask(live, 6), 3 + 112 + 2);
    CHECK_EQ_INT(reply[3 + 90], 0xFF);
    CHECK_EQ_INT(reply[3 + 91], 0xFF);
    CHECK(is_nack(ask(w, 9), 0x10, 0x00)); /* writes still refused */
}

static void test_parser_resync_and_fuzz(void)
{
    setup(BATTERY_LFP, 16, false);
    struct sim_parser p;
    memset(&p, 0, sizeof p);
    static const uint8_t stream[] = { 0x00, 0x13, 0xFF, 0xAA, 0x03, 0x00, 0x05, 0x00, 0x05, 0x8C, 0x13,
                                      0x55, 0xAA, 0x1B, 0x3F, 0x1B };
    size_t frames = 0, lens[4] = { 0 };
    for (size_t i = 0; i < sizeof stream; i++) {
        size_t len = sim_parser_push(&p, stream[i]);
        if (len) {
            lens[frames++ < 4 ? frames - 1 : 3] = len;
            CHECK(sim_protocol_handle(&bms, p.buf, len, reply, sizeof reply) > 6);
            sim_parser_reset(&p);
        }
    }
    CHECK_EQ_INT(frames, 2);
    CHECK_EQ_INT(lens[0], 8);
    CHECK_EQ_INT(lens[1], 4);
    CHECK_EQ_INT(p.dropped_bytes, 4);
    /* Random bytes, with a bias to 0xAA and valid commands: never crashes, every reply valid. */
    uint32_t x = 12345;
    size_t replies = 0;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        uint8_t b = (x & 7) == 0 ? 0xAA : (x & 7) == 1 ? (uint8_t)(x >> 8 & 0x1F) : (uint8_t)(x >> 16);
        size_t len = sim_parser_push(&p, b);
        CHECK(p.len <= sizeof p.buf);
        if (len) {
            size_t n = sim_protocol_handle(&bms, p.buf, len, reply, sizeof reply);
            if (n) {
                replies++;
                CHECK(n >= 5 && n <= SIM_REPLY_MAX && reply[0] == 0xAA);
            }
            sim_parser_reset(&p);
        }
    }
    CHECK(replies > 1000);
}


/* ---- fault modes and BMS reset, decoded by the gateway's codec ---- */

/* Sends a 4-byte simple command and decodes the answer with the gateway's codec (CRC checked). */
static bool ask_decoded(uint8_t cmd, struct tinybms_reply *r)
{
    uint8_t req[6] = { 0xAA, cmd };
    size_t n = ask(req, 2);
    int rc = tinybms_decode(reply, n, r);
    CHECK_EQ_INT(rc, (int)n);
    return rc > 0 && (size_t)rc == n && r->kind == TINYBMS_REPLY_DATA && r->cmd == cmd;
}

/* 0x03 read of count registers from addr, decoded by the codec into regs. */
static bool read_modbus_decoded(uint16_t addr, uint8_t count, uint16_t *regs)
{
    uint8_t req[10];
    int len = tinybms_encode_read_modbus(req, sizeof req, addr, count);
    CHECK(len > 0);
    if (len <= 0)
        return false;
    size_t n = sim_protocol_handle(&bms, req, (size_t)len, reply, sizeof reply);
    struct tinybms_reply r;
    size_t got = 0;
    int rc = tinybms_decode(reply, n, &r);
    CHECK_EQ_INT(rc, (int)n);
    if (rc <= 0 || (size_t)rc != n || r.kind != TINYBMS_REPLY_DATA)
        return false;
    CHECK_EQ_INT(tinybms_reply_registers(&r, regs, count, &got), GW_OK);
    CHECK_EQ_INT(got, count);
    return got == count;
}

/* Registers 0..55 by 0x03, decoded into a live sample; also checks that a 0x07 read (two
 * packets) and 0x09 reads serve the very same words. */
static bool read_live_decoded(struct bms_live_data *live, uint16_t regs[TINYBMS_REG_LIVE_COUNT])
{
    if (!read_modbus_decoded(0, TINYBMS_REG_LIVE_COUNT, regs))
        return false;
    uint8_t req[10];
    int len = tinybms_encode_read_block(req, sizeof req, 0, TINYBMS_REG_LIVE_COUNT);
    size_t n = sim_protocol_handle(&bms, req, (size_t)len, reply, sizeof reply);
    uint16_t words[TINYBMS_REG_LIVE_COUNT];
    size_t have = 0, off = 0;
    while (off < n) {
        struct tinybms_reply r;
        size_t got = 0;
        int rc = tinybms_decode(reply + off, n - off, &r);
        CHECK(rc > 0);
        if (rc <= 0)
            return false;
        CHECK_EQ_INT(tinybms_reply_registers(&r, words + have, TINYBMS_REG_LIVE_COUNT - have, &got), GW_OK);
        have += got;
        off += (size_t)rc;
    }
    CHECK_EQ_INT(have, TINYBMS_REG_LIVE_COUNT);
    CHECK_MEM(words, regs, sizeof words);
    static const uint16_t probe[] = { 0, 2, 3, 15, 32, 33, 36, 37, 38, 39, 41, 42, 43, 46, 47, 48 };
    for (size_t k = 0; k + 1 < sizeof probe / sizeof probe[0]; k += 2) { /* 0x09, two at a time */
        uint8_t ind[16];
        len = tinybms_encode_read_individual(ind, sizeof ind, probe + k, 2);
        CHECK(len > 0);
        n = sim_protocol_handle(&bms, ind, (size_t)len, reply, sizeof reply);
        struct tinybms_reply r;
        uint16_t a[2], v[2];
        size_t got = 0;
        CHECK_EQ_INT(tinybms_decode(reply, n, &r), (int)n);
        CHECK_EQ_INT(tinybms_reply_individual(&r, a, v, 2, &got), GW_OK);
        CHECK_EQ_INT(got, 2);
        CHECK_EQ_INT(v[0], regs[probe[k]]);
        CHECK_EQ_INT(v[1], regs[probe[k + 1]]);
    }
    struct tinybms_decode_opts opts = { 0, BMS_CELL_ORDER_DOCUMENTED };
    memset(live, 0, sizeof *live);
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, live), GW_OK);
    return true;
}

static float reply_float(uint8_t cmd)
{
    struct tinybms_reply r;
    float f = -1.0f;
    if (ask_decoded(cmd, &r))
        CHECK_EQ_INT(tinybms_reply_float(&r, &f), GW_OK);
    return f;
}

static uint32_t reply_u32(uint8_t cmd)
{
    struct tinybms_reply r;
    uint32_t v = 0;
    if (ask_decoded(cmd, &r))
        CHECK_EQ_INT(tinybms_reply_u32(&r, &v), GW_OK);
    return v;
}

static uint16_t reply_u16(uint8_t cmd)
{
    struct tinybms_reply r;
    uint16_t v = 0;
    if (ask_decoded(cmd, &r))
        CHECK_EQ_INT(tinybms_reply_u16(&r, &v), GW_OK);
    return v;
}

static void reply_temps(int16_t dc[BMS_TEMP_SENSORS], bool present[BMS_TEMP_SENSORS])
{
    struct tinybms_reply r;
    memset(dc, 0, sizeof(int16_t) * BMS_TEMP_SENSORS);
    memset(present, 0, sizeof(bool) * BMS_TEMP_SENSORS);
    if (ask_decoded(0x1B, &r))
        CHECK_EQ_INT(tinybms_reply_temperatures(&r, dc, present), GW_OK);
}

static void test_fault_names(void)
{
    setup(BATTERY_LFP, 16, false);
    for (unsigned i = 0; i < SIM_FAULT_COUNT; i++) {
        enum sim_fault f = SIM_FAULT_COUNT;
        CHECK_EQ_INT(sim_fault_from_name(sim_fault_name((enum sim_fault)i), &f), GW_OK);
        CHECK_EQ_INT(f, i);
        CHECK(strcmp(sim_fault_description((enum sim_fault)i), "?") != 0);
    }
    enum sim_fault f = SIM_FAULT_FROZEN;
    CHECK_EQ_INT(sim_fault_from_name("impossible-pack", &f), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(sim_fault_from_name("pack-zero", &f), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(f, SIM_FAULT_FROZEN);
    CHECK_EQ_INT(sim_fault_from_name(NULL, &f), GW_ERR_INVAL);
    CHECK_STR(sim_fault_name(SIM_FAULT_COUNT), "?");
    CHECK_STR(sim_fault_name(SIM_FAULT_PACK_ZERO), "impossible-pack-zero");
    CHECK_STR(sim_fault_name(SIM_FAULT_NO_EXT_TEMP), "no-ext-temp");
    CHECK_EQ_INT(sim_bms_set_fault(&bms, SIM_FAULT_COUNT), GW_ERR_INVAL);
    CHECK_EQ_INT(sim_bms_set_fault(NULL, SIM_FAULT_NONE), GW_ERR_INVAL);
    CHECK_EQ_INT(bms.fault, SIM_FAULT_NONE);
}

/* Every impossible value is served with a valid CRC by 0x03, 0x07 and 0x09 (same words), and
 * by the dedicated command; the gateway's codec decodes it and its plausibility gate refuses
 * the sample with the expected rule. `fault none` brings the model's values back. */
static void test_fault_impossible_values(void)
{
    static const struct {
        enum sim_fault fault;
        uint8_t rule;
    } cases[] = {
        { SIM_FAULT_PACK_ZERO, PLAUSIBILITY_PACK_RANGE },
        { SIM_FAULT_PACK_NEGATIVE, PLAUSIBILITY_PACK_RANGE },
        { SIM_FAULT_PACK_HUGE, PLAUSIBILITY_PACK_RANGE },
        { SIM_FAULT_CURRENT_HUGE, PLAUSIBILITY_CURRENT_RANGE },
        { SIM_FAULT_CELL_MAX, PLAUSIBILITY_CELL_RANGE },
        { SIM_FAULT_SOC_HUGE, PLAUSIBILITY_SOC_RANGE },
        { SIM_FAULT_TEMP_HUGE, PLAUSIBILITY_TEMP_RANGE },
    };
    for (unsigned cells = 14; cells <= 16; cells += 2) {
        setup(BATTERY_LFP, cells, false);
        battery_model_step(&bms.model, -20.0f, 1.0f);
        struct bms_live_data live;
        uint16_t regs[TINYBMS_REG_LIVE_COUNT], clean[TINYBMS_REG_LIVE_COUNT];
        struct plausibility_result pr;
        CHECK(read_live_decoded(&live, clean));
        CHECK(plausibility_check_sample(&live, NULL, GW_CHEM_LFP, &pr));
        unsigned cell1 = 16 - cells;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            CHECK_EQ_INT(sim_bms_set_fault(&bms, cases[i].fault), GW_OK);
            CHECK(read_live_decoded(&live, regs));
            memset(&pr, 0, sizeof pr);
            CHECK(!plausibility_check_sample(&live, NULL, GW_CHEM_LFP, &pr));
            if (pr.rule != cases[i].rule)
                fprintf(stderr, "fault %s: rule %s (%s)\n", sim_fault_name(cases[i].fault),
                        plausibility_rule_name(pr.rule), pr.reason);
            CHECK_EQ_INT(pr.rule, cases[i].rule);
            /* Only the fault's registers differ from the model's. */
            unsigned changed = 0;
            for (unsigned r = 0; r < TINYBMS_REG_LIVE_COUNT; r++)
                changed += regs[r] != clean[r];
            int16_t dc[BMS_TEMP_SENSORS];
            bool present[BMS_TEMP_SENSORS];
            switch (cases[i].fault) {
            case SIM_FAULT_PACK_ZERO:
                CHECK_EQ_INT(regs[36], 0);
                CHECK_EQ_INT(regs[37], 0);
                CHECK(live.pack_voltage_v == 0.0f);
                CHECK(reply_float(0x14) == 0.0f);
                CHECK(changed <= 2);
                break;
            case SIM_FAULT_PACK_NEGATIVE:
                CHECK(live.pack_voltage_v == -53.0f);
                CHECK(reply_float(0x14) == -53.0f);
                CHECK_EQ_INT(regs[37], 0xC254); /* -53.0f = 0xC2540000, high word in 37 */
                CHECK(changed <= 2);
                break;
            case SIM_FAULT_PACK_HUGE:
                CHECK(live.pack_voltage_v == 1e30f);
                CHECK(reply_float(0x14) == 1e30f);
                CHECK(changed <= 2);
                break;
            case SIM_FAULT_CURRENT_HUGE:
                CHECK(live.pack_current_a == 1e30f);
                CHECK(reply_float(0x15) == 1e30f);
                CHECK(reply_float(0x14) == live.pack_voltage_v); /* the rest unchanged */
                CHECK(changed <= 2);
                break;
            case SIM_FAULT_CELL_MAX: {
                CHECK_EQ_INT(regs[cell1], 0xFFFF);
                CHECK_EQ_INT(live.cell_mv_x10[0], 0xFFFF);
                CHECK_EQ_INT(live.max_cell_mv, 6554);
                CHECK_EQ_INT(reply_u16(0x16), 6554);
                struct tinybms_reply r;
                uint16_t words[16];
                size_t got = 0;
                CHECK(ask_decoded(0x1C, &r));
                CHECK_EQ_INT(tinybms_reply_registers(&r, words, 16, &got), GW_OK);
                CHECK_EQ_INT(got, cells);
                CHECK_EQ_INT(words[0], 0xFFFF);
                CHECK(changed <= 2);
                break;
            }
            case SIM_FAULT_SOC_HUGE:
                CHECK_EQ_INT(live.soc_ppm, 4294967295u);
                CHECK_EQ_INT(reply_u32(0x1A), 4294967295u);
                CHECK(changed <= 2);
                break;
            case SIM_FAULT_TEMP_HUGE:
                CHECK_EQ_INT(regs[42], 32767);
                CHECK(live.temp_present[BMS_TEMP_EXT1]);
                CHECK_EQ_INT(live.temp_dc[BMS_TEMP_EXT1], 32767);
                reply_temps(dc, present);
                CHECK(present[BMS_TEMP_EXT1]);
                CHECK_EQ_INT(dc[BMS_TEMP_EXT1], 32767);
                CHECK_EQ_INT(dc[BMS_TEMP_INTERNAL], live.temp_dc[BMS_TEMP_INTERNAL]);
                CHECK(changed <= 1);
                break;
            default:
                break;
            }
        }
        CHECK_EQ_INT(sim_bms_set_fault(&bms, SIM_FAULT_NONE), GW_OK);
        CHECK(read_live_decoded(&live, regs));
        CHECK_MEM(regs, clean, sizeof regs);
        CHECK(plausibility_check_sample(&live, NULL, GW_CHEM_LFP, &pr));
    }
}

/* Frozen: the lifetime counter and every live value stop while the model runs on; polls still
 * succeed (valid frames, byte for byte the same answer). */
static void test_fault_frozen(void)
{
    setup(BATTERY_LFP, 16, false);
    battery_model_step(&bms.model, -20.0f, 1.0f);
    battery_model_step(&bms.model, -20.0f, 1.0f);
    CHECK_EQ_INT(sim_bms_set_fault(&bms, SIM_FAULT_FROZEN), GW_OK);
    struct bms_live_data before, after;
    uint16_t r1[TINYBMS_REG_LIVE_COUNT], r2[TINYBMS_REG_LIVE_COUNT];
    CHECK(read_live_decoded(&before, r1));
    uint8_t first[3 + 112 + 2];
    uint8_t req[8] = { 0xAA, 0x03, 0x00, 0x00, 0x00, 56 };
    CHECK_EQ_INT(ask(req, 6), sizeof first);
    memcpy(first, reply, sizeof first);
    CHECK_EQ_INT(reply_u32(0x19), 2);
    for (int i = 0; i < 30; i++)
        battery_model_step(&bms.model, -80.0f, 1.0f);
    CHECK_NEAR(bms.model.lifetime_s, 32.0, 1e-6); /* the model went on */
    CHECK_EQ_INT(ask(req, 6), sizeof first);
    CHECK_MEM(reply, first, sizeof first);
    CHECK(read_live_decoded(&after, r2));
    CHECK_MEM(r2, r1, sizeof r1);
    CHECK_EQ_INT(after.lifetime_s, 2);
    CHECK(after.pack_current_a == -20.0f);
    CHECK_EQ_INT(reply_u32(0x19), 2);
    CHECK(reply_float(0x15) == -20.0f);
    CHECK(reply_float(0x14) == before.pack_voltage_v);
    CHECK_EQ_INT(reply_u32(0x1A), before.soc_ppm);
    /* 0x11's BMS time is the frozen counter too. */
    struct tinybms_reply r;
    uint32_t btsp = 0;
    struct bms_event ev[BMS_EVENT_SLOTS];
    size_t nev = 0;
    CHECK(ask_decoded(0x12, &r));
    CHECK_EQ_INT(tinybms_reply_events(&r, &btsp, ev, BMS_EVENT_SLOTS, &nev), GW_OK);
    CHECK_EQ_INT(btsp, 2);
    /* A new `fault frozen` takes a new snapshot; `none` serves the model again. */
    CHECK_EQ_INT(sim_bms_set_fault(&bms, SIM_FAULT_FROZEN), GW_OK);
    CHECK_EQ_INT(reply_u32(0x19), 32);
    battery_model_step(&bms.model, -80.0f, 1.0f);
    CHECK_EQ_INT(reply_u32(0x19), 32);
    CHECK_EQ_INT(sim_bms_set_fault(&bms, SIM_FAULT_NONE), GW_OK);
    CHECK_EQ_INT(reply_u32(0x19), 33);
    CHECK(reply_float(0x15) == -80.0f);
}

/* no-ext-temp: registers 42/43 read -32768 (absent); no-temp: 48 too. */
static void test_fault_sensors_absent(void)
{
    setup(BATTERY_LFP, 16, false);
    bms.model.ext_sensor_connected[1] = true;
    battery_model_step(&bms.model, 0.0f, 1.0f);
    struct bms_live_data live;
    uint16_t regs[TINYBMS_REG_LIVE_COUNT];
    int16_t dc[BMS_TEMP_SENSORS];
    bool present[BMS_TEMP_SENSORS];
    CHECK(read_live_decoded(&live, regs));
    for (unsigned i = 0; i < BMS_TEMP_SENSORS; i++)
        CHECK(live.temp_present[i]);

    CHECK_EQ_INT(sim_bms_set_fault(&bms, SIM_FAULT_NO_EXT_TEMP), GW_OK);
    CHECK(read_live_decoded(&live, regs));
    CHECK_EQ_INT(regs[42], 0x8000);
    CHECK_EQ_INT(regs[43], 0x8000);
    CHECK(regs[48] != 0x8000);
    CHECK(live.temp_present[BMS_TEMP_INTERNAL]);
    CHECK(!live.temp_present[BMS_TEMP_EXT1]);
    CHECK(!live.temp_present[BMS_TEMP_EXT2]);
    reply_temps(dc, present);
    CHECK(present[BMS_TEMP_INTERNAL] && !present[BMS_TEMP_EXT1] && !present[BMS_TEMP_EXT2]);
    CHECK_EQ_INT(dc[BMS_TEMP_INTERNAL], (int16_t)regs[48]);

    CHECK_EQ_INT(sim_bms_set_fault(&bms, SIM_FAULT_NO_TEMP), GW_OK);
    CHECK(read_live_decoded(&live, regs));
    CHECK_EQ_INT(regs[48], 0x8000);
    for (unsigned i = 0; i < BMS_TEMP_SENSORS; i++)
        CHECK(!live.temp_present[i]);
    reply_temps(dc, present);
    CHECK(!present[BMS_TEMP_INTERNAL] && !present[BMS_TEMP_EXT1] && !present[BMS_TEMP_EXT2]);
    /* Raw bytes of the 0x1B answer: three times 00 80. */
    uint8_t req[6] = { 0xAA, 0x1B };
    CHECK_EQ_INT(ask(req, 2), 11);
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ_INT(reply[3 + 2 * i], 0x00);
        CHECK_EQ_INT(reply[4 + 2 * i], 0x80);
    }
    CHECK_EQ_INT(sim_bms_set_fault(&bms, SIM_FAULT_NONE), GW_OK);
    reply_temps(dc, present);
    CHECK(present[BMS_TEMP_INTERNAL] && present[BMS_TEMP_EXT1] && present[BMS_TEMP_EXT2]);
}

/* A BMS restart: SOC re-estimated (0 % or given), lifetime counter keeps counting, event 0x61
 * newest, register 114 low byte = the cause, statistics kept; protections cleared. */
static void test_bms_restart(void)
{
    setup(BATTERY_LFP, 16, false);
    battery_model_set_soc(&bms.model, 0.60f);
    battery_model_step(&bms.model, 10.0f, 1.0f);   /* 0x62 charging started */
    battery_model_step(&bms.model, -300.0f, 1.0f); /* 0x05 discharge over-current, status fault */
    struct bms_live_data live;
    uint16_t regs[TINYBMS_REG_LIVE_COUNT], st[TINYBMS_REG_STATS_COUNT];
    struct bms_statistics stats;
    CHECK(read_live_decoded(&live, regs));
    CHECK_EQ_INT(live.online_status, 0x9B);
    CHECK_EQ_INT(live.lifetime_s, 2);
    CHECK(read_modbus_decoded(TINYBMS_REG_STATS_FIRST, TINYBMS_REG_STATS_COUNT, st));
    CHECK_EQ_INT(tinybms_decode_statistics(st, &stats), GW_OK);
    CHECK_EQ_INT(stats.last_reset_cause, SIM_RESET_CAUSE_POWER_ON);
    CHECK_EQ_INT(stats.discharge_overcurrent_count, 1);
    uint32_t events_before = bms.model.event_total;

    CHECK_EQ_INT(sim_bms_restart(&bms, 0.0f, SIM_RESET_CAUSE_WATCHDOG), GW_OK);
    CHECK(read_live_decoded(&live, regs));
    CHECK_EQ_INT(live.soc_ppm, 0);
    CHECK_EQ_INT(live.lifetime_s, 2); /* a lifetime counter: not restarted */
    CHECK(live.online_status != 0x9B);
    CHECK(read_modbus_decoded(TINYBMS_REG_STATS_FIRST, TINYBMS_REG_STATS_COUNT, st));
    CHECK_EQ_INT(tinybms_decode_statistics(st, &stats), GW_OK);
    CHECK_EQ_INT(stats.last_reset_cause, SIM_RESET_CAUSE_WATCHDOG);
    CHECK_EQ_INT(stats.discharge_overcurrent_count, 1); /* statistics kept */
    CHECK_EQ_INT(bms.model.event_total, events_before + 1);
    struct tinybms_reply r;
    uint32_t btsp = 0;
    struct bms_event ev[BMS_EVENT_SLOTS];
    size_t nev = 0;
    CHECK(ask_decoded(0x11, &r));
    CHECK_EQ_INT(tinybms_reply_events(&r, &btsp, ev, BMS_EVENT_SLOTS, &nev), GW_OK);
    CHECK(nev >= 1);
    CHECK_EQ_INT(ev[0].id, 0x61); /* newest first: system started */
    CHECK_EQ_INT(ev[0].timestamp_s, 2);
    uint16_t evregs[TINYBMS_REG_EVENTS_COUNT];
    struct bms_event_log log;
    CHECK(read_modbus_decoded(TINYBMS_REG_EVENTS_FIRST, TINYBMS_REG_EVENTS_COUNT, evregs));
    CHECK_EQ_INT(tinybms_decode_events(evregs, &log), GW_OK);
    CHECK(log.count >= 1);
    CHECK_EQ_INT(log.events[0].id, 0x61);
    /* The lifetime counter goes on after the restart. */
    battery_model_step(&bms.model, 0.0f, 1.0f);
    CHECK_EQ_INT(reply_u32(0x19), 3);

    /* A given SOC, another cause; a negative SOC keeps the counter; out of range refused. */
    CHECK_EQ_INT(sim_bms_restart(&bms, 37.5f, 0x07), GW_OK);
    CHECK_EQ_INT(reply_u32(0x1A), 37500000u);
    CHECK_EQ_INT(reg(114) & 0xFF, 0x07);
    CHECK_EQ_INT(sim_bms_restart(&bms, -1.0f, 0x02), GW_OK);
    CHECK_EQ_INT(reply_u32(0x1A), 37500000u);
    CHECK_EQ_INT(sim_bms_restart(&bms, 100.5f, 0x02), GW_ERR_INVAL);
    CHECK_EQ_INT(sim_bms_restart(&bms, NAN, 0x02), GW_ERR_INVAL);
    CHECK_EQ_INT(sim_bms_restart(NULL, 0.0f, 0x02), GW_ERR_INVAL);
    /* The protocol's reset (0x02 option 0x05) keeps the SOC, cause 0x05. */
    uint8_t clr[8] = { 0xAA, 0x02, 0x05 };
    CHECK(is_ack(ask(clr, 3), 0x02));
    CHECK_EQ_INT(reg(114) & 0xFF, SIM_RESET_CAUSE_COMMAND);
    CHECK_EQ_INT(reply_u32(0x1A), 37500000u);
}

TEST_MAIN(TEST_CASE(test_crc_vectors), TEST_CASE(test_spec_modbus_read_vector),
          TEST_CASE(test_spec_temperature_vector), TEST_CASE(test_spec_modbus_write_vector),
          TEST_CASE(test_nacks), TEST_CASE(test_nack_only),
          TEST_CASE(test_block_read_multi_packet),
          TEST_CASE(test_individual_read_and_writes), TEST_CASE(test_settings_tables),
          TEST_CASE(test_write_to_set_soh_soc), TEST_CASE(test_live_layout_14_cells),
          TEST_CASE(test_events_and_clear), TEST_CASE(test_old_firmware),
          TEST_CASE(test_parser_resync_and_fuzz), TEST_CASE(test_fault_names),
          TEST_CASE(test_fault_impossible_values), TEST_CASE(test_fault_frozen),
          TEST_CASE(test_fault_sensors_absent), TEST_CASE(test_bms_restart))
