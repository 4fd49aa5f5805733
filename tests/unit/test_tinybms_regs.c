/* TinyBMS codec: register images → data model, events/settings metadata, frame descriptions.
 * Real-hardware facts from shared/spec/tinybms-uart.md ("Seen on real hardware"). */
#include "test.h"
#include "tinybms.h"

/* A 14-cell register image as in the public dump: regs 0,1 = 0, cells in 2..15, reg 53 = 14. */
static void make_14s_image(uint16_t regs[TINYBMS_REG_LIVE_COUNT])
{
    memset(regs, 0, TINYBMS_REG_LIVE_COUNT * sizeof regs[0]);
    for (int r = 2; r <= 15; r++)
        regs[r] = (uint16_t)(33000 + r * 10); /* 3.3020 .. 3.3150 V */
    regs[9] = 32500;                          /* lowest cell */
    regs[4] = 33900;                          /* highest cell */
    regs[32] = 0x5180; /* lifetime 0x00015180 = 86400 s */
    regs[33] = 0x0001;
    regs[34] = 3600;
    regs[35] = 0;
    regs[36] = 0x23D7; /* 55.79 V, low word first */
    regs[37] = 0x425F;
    regs[38] = 0x0000; /* -12.5 A */
    regs[39] = 0xC148;
    regs[40] = 3250;
    regs[41] = 3390;
    regs[42] = 215;
    regs[43] = (uint16_t)BMS_TEMP_ABSENT_RAW;
    regs[44] = 42;
    regs[45] = 48000;  /* 96 % */
    regs[46] = 0x24E0; /* 87.5 % = 87500000 ppm = 0x053724E0 */
    regs[47] = 0x0537;
    regs[48] = 278;
    regs[50] = 0x93;
    regs[51] = 0x0010;
    regs[52] = 0x0020;
    regs[53] = 14;
    regs[54] = 0x0000; /* 10 km/h */
    regs[55] = 0x4120;
}

static void test_live_real_hardware_14s_documented_order(void)
{
    uint16_t regs[TINYBMS_REG_LIVE_COUNT];
    make_14s_image(regs);
    struct tinybms_decode_opts opts = { 2, BMS_CELL_ORDER_DOCUMENTED };
    struct bms_live_data d;
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_OK);
    CHECK(d.valid);
    CHECK_EQ_INT(d.battery_id, 2);
    CHECK_EQ_INT(d.cell_count, 14);
    /* Documented order: register 16-n (= 2) is cell 1. */
    CHECK_EQ_INT(d.cell_mv_x10[0], regs[2]);
    CHECK_EQ_INT(d.cell_mv_x10[13], regs[15]);
    for (int i = 0; i < 14; i++)
        CHECK(d.cell_mv_x10[i] != 0);
    CHECK_EQ_INT(d.min_cell_index, 9 - 2 + 1);
    CHECK_EQ_INT(d.max_cell_index, 4 - 2 + 1);
    CHECK_EQ_INT(d.cell_spread_mv_x10, 33900 - 32500);
    CHECK_EQ_INT(d.min_cell_mv, 3250);
    CHECK_EQ_INT(d.max_cell_mv, 3390);
    CHECK_NEAR(d.pack_voltage_v, 55.79, 0.006);
    CHECK_NEAR(d.pack_current_a, -12.5, 1e-6);
    CHECK_EQ_INT(d.lifetime_s, 86400);
    CHECK_EQ_INT(d.time_left_s, 3600);
    CHECK_EQ_INT(d.distance_left_km, 42);
    CHECK_EQ_INT(d.soc_ppm, 87500000);
    CHECK_NEAR(bms_soc_percent(&d), 87.5, 1e-4);
    CHECK(d.soh_valid);
    CHECK_NEAR(bms_soh_percent(&d), 96.0, 1e-3);
    CHECK(d.temp_present[BMS_TEMP_INTERNAL]);
    CHECK_EQ_INT(d.temp_dc[BMS_TEMP_INTERNAL], 278);
    CHECK(d.temp_present[BMS_TEMP_EXT1]);
    CHECK_EQ_INT(d.temp_dc[BMS_TEMP_EXT1], 215);
    CHECK(!d.temp_present[BMS_TEMP_EXT2]); /* -32768 = not connected */
    CHECK_EQ_INT(d.online_status, BMS_STATUS_DISCHARGING);
    CHECK_EQ_INT(d.balancing_decision, 0x10);
    CHECK_EQ_INT(d.balancing_active, 0x20);
    CHECK_NEAR(d.speed_kmh, 10.0, 1e-6);
    CHECK_EQ_INT(d.timestamp_ms, 0); /* the caller's job */
}

static void test_live_reversed_order(void)
{
    uint16_t regs[TINYBMS_REG_LIVE_COUNT];
    make_14s_image(regs);
    struct tinybms_decode_opts opts = { 0, BMS_CELL_ORDER_REVERSED };
    struct bms_live_data d;
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_OK);
    CHECK_EQ_INT(d.cell_count, 14);
    /* Register 15 = cell 1 (as the public Sunny Island bridge numbers them). */
    CHECK_EQ_INT(d.cell_mv_x10[0], regs[15]);
    CHECK_EQ_INT(d.cell_mv_x10[13], regs[2]);
    CHECK_EQ_INT(d.min_cell_index, 15 - 9 + 1);
    CHECK_EQ_INT(d.max_cell_index, 15 - 4 + 1);
    CHECK_EQ_INT(d.cell_spread_mv_x10, 33900 - 32500);
}

static void test_live_unknown_cell_count_uses_populated_registers(void)
{
    uint16_t regs[TINYBMS_REG_LIVE_COUNT];
    make_14s_image(regs);
    struct tinybms_decode_opts opts = { 0, BMS_CELL_ORDER_DOCUMENTED };
    struct bms_live_data d;
    const uint16_t unknown_counts[] = { 0, 17, 0xFFFF };
    for (size_t i = 0; i < 3; i++) {
        regs[53] = unknown_counts[i];
        CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_OK);
        CHECK_EQ_INT(d.cell_count, 14);
        CHECK_EQ_INT(d.cell_mv_x10[0], regs[2]);
        CHECK_EQ_INT(d.min_cell_index, 8);
    }
    /* Documented layout (cells in 0..7) with an unknown count. */
    memset(regs, 0, 16 * sizeof regs[0]);
    for (int r = 0; r < 8; r++)
        regs[r] = (uint16_t)(32000 + r);
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_OK);
    CHECK_EQ_INT(d.cell_count, 8);
    CHECK_EQ_INT(d.cell_mv_x10[7], 32007);
    CHECK_EQ_INT(d.min_cell_index, 1);
    CHECK_EQ_INT(d.max_cell_index, 8);
    /* Nothing populated. */
    memset(regs, 0, 16 * sizeof regs[0]);
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_OK);
    CHECK_EQ_INT(d.cell_count, 0);
    CHECK_EQ_INT(d.min_cell_index, 0);
    CHECK_EQ_INT(d.max_cell_index, 0);
    CHECK_EQ_INT(d.cell_spread_mv_x10, 0);
}

static void test_live_empty_register_is_not_a_0v_cell(void)
{
    uint16_t regs[TINYBMS_REG_LIVE_COUNT];
    make_14s_image(regs);
    regs[53] = 16; /* claims 16 cells: registers 0 and 1 are empty */
    struct tinybms_decode_opts opts = { 0, BMS_CELL_ORDER_DOCUMENTED };
    struct bms_live_data d;
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_OK);
    CHECK_EQ_INT(d.cell_count, 16);
    CHECK_EQ_INT(d.cell_mv_x10[0], 0);
    CHECK_EQ_INT(d.min_cell_index, 9 + 1); /* register 9, not the empty register 0 */
    CHECK_EQ_INT(d.cell_spread_mv_x10, 33900 - 32500);
}

static void test_live_soh_and_bad_floats(void)
{
    uint16_t regs[TINYBMS_REG_LIVE_COUNT];
    make_14s_image(regs);
    struct tinybms_decode_opts opts = { 0, BMS_CELL_ORDER_DOCUMENTED };
    struct bms_live_data d;
    regs[45] = 50000;
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_OK);
    CHECK(d.soh_valid);
    regs[45] = 50001;
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_OK);
    CHECK(!d.soh_valid);
    regs[45] = 0xFFFF; /* older firmware */
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_OK);
    CHECK(!d.soh_valid);

    regs[36] = 0x0000; /* NaN pack voltage */
    regs[37] = 0x7FC0;
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_ERR_RANGE);
    CHECK(!d.valid);
    make_14s_image(regs);
    regs[54] = 0x0000; /* +inf speed reads as 0 */
    regs[55] = 0x7F80;
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_OK);
    CHECK_EQ_INT(d.speed_kmh, 0);

    opts.cell_order = (enum bms_cell_order)7;
    CHECK_EQ_INT(tinybms_decode_live(regs, &opts, &d), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_decode_live(NULL, &opts, &d), GW_ERR_INVAL);
}

static void test_live_from_modbus_frame(void)
{
    /* The whole path the poller uses: 0x03 frame of registers 0..55 → words → live data. */
    uint16_t regs[TINYBMS_REG_LIVE_COUNT];
    make_14s_image(regs);
    uint8_t frame[TINYBMS_MAX_FRAME];
    size_t len = 0;
    frame[len++] = 0xAA;
    frame[len++] = 0x03;
    frame[len++] = 112;
    for (int i = 0; i < 56; i++) {
        frame[len++] = (uint8_t)(regs[i] >> 8);
        frame[len++] = (uint8_t)(regs[i] & 0xFF);
    }
    uint16_t crc = tinybms_crc16(frame, len);
    frame[len++] = (uint8_t)crc;
    frame[len++] = (uint8_t)(crc >> 8);
    CHECK_EQ_INT(len, 117);

    struct tinybms_reply r;
    CHECK_EQ_INT(tinybms_decode(frame, len, &r), 117);
    uint16_t words[TINYBMS_REG_LIVE_COUNT];
    size_t count = 0;
    CHECK_EQ_INT(tinybms_reply_registers(&r, words, TINYBMS_REG_LIVE_COUNT, &count), GW_OK);
    CHECK_EQ_INT(count, 56);
    CHECK_MEM(words, regs, sizeof regs);
    struct tinybms_decode_opts opts = { 0, BMS_CELL_ORDER_DOCUMENTED };
    struct bms_live_data d;
    CHECK_EQ_INT(tinybms_decode_live(words, &opts, &d), GW_OK);
    CHECK_NEAR(d.pack_voltage_v, 55.79, 0.006);

    char line[80];
    CHECK(tinybms_describe_frame(frame, len, false, line, sizeof line) > 0);
    CHECK_STR(line, "reply 0x03: 56 registers");
}

static void test_statistics(void)
{
    uint16_t regs[TINYBMS_REG_STATS_COUNT] = { 0 };
    regs[0] = 0x86A0; /* 100000 x 0.01 km */
    regs[1] = 0x0001;
    regs[2] = 1500;
    regs[3] = 800;
    regs[4] = 123;
    regs[5] = 1;
    regs[6] = 2;
    regs[7] = 3;
    regs[8] = 4;
    regs[9] = 5;
    regs[11] = 250;
    regs[12] = 40;
    regs[13] = (uint16_t)(0x2D << 8 | 0xF6); /* max 45 degC, min -10 degC */
    regs[14] = 0x0302;
    regs[16] = 0x1234;
    regs[17] = 0x0001;
    struct bms_statistics s;
    CHECK_EQ_INT(tinybms_decode_statistics(regs, &s), GW_OK);
    CHECK(s.valid);
    CHECK_EQ_INT(s.total_distance_x10m, 100000);
    CHECK_EQ_INT(s.max_discharge_current_x100ma, 1500);
    CHECK_EQ_INT(s.max_charge_current_x100ma, 800);
    CHECK_EQ_INT(s.max_cell_diff_mv_x10, 123);
    CHECK_EQ_INT(s.under_voltage_count, 1);
    CHECK_EQ_INT(s.over_heat_count, 5);
    CHECK_EQ_INT(s.charging_count, 250);
    CHECK_EQ_INT(s.full_charge_count, 40);
    CHECK_EQ_INT(s.min_pack_temp_c, -10);
    CHECK_EQ_INT(s.max_pack_temp_c, 45);
    CHECK_EQ_INT(s.last_reset_cause, 2);
    CHECK_EQ_INT(s.last_wakeup_cause, 3);
    CHECK_EQ_INT(s.stats_cleared_at_s, 0x11234);
}

static void test_events_from_registers(void)
{
    uint16_t regs[TINYBMS_REG_EVENTS_COUNT] = { 0 };
    regs[0] = 0x1226; /* hardware example: 200 = 0x1226, 201 = 0x6500 */
    regs[1] = 0x6500;
    /* slot 1 empty, slot 2 populated */
    regs[4] = 0xFFFF;
    regs[5] = 0x02AB;
    regs[96] = 0x0001; /* last slot, 296/297 */
    regs[97] = 0x6100;
    struct bms_event_log log;
    CHECK_EQ_INT(tinybms_decode_events(regs, &log), GW_OK);
    CHECK(log.valid);
    CHECK_EQ_INT(log.count, 3);
    CHECK_EQ_INT(log.events[0].timestamp_s, 0x001226);
    CHECK_EQ_INT(log.events[0].id, 0x65);
    CHECK_STR(tinybms_event_name(log.events[0].id), "charger disconnected");
    CHECK_EQ_INT(log.events[1].timestamp_s, 0xABFFFF);
    CHECK_EQ_INT(log.events[1].id, 0x02);
    CHECK_EQ_INT(log.events[2].id, 0x61);

    uint16_t full[TINYBMS_REG_EVENTS_COUNT];
    for (int i = 0; i < TINYBMS_REG_EVENTS_COUNT; i++)
        full[i] = (uint16_t)(i + 1);
    CHECK_EQ_INT(tinybms_decode_events(full, &log), GW_OK);
    CHECK_EQ_INT(log.count, BMS_EVENT_SLOTS);
}

static void test_version_registers(void)
{
    const uint16_t regs[TINYBMS_REG_VERSION_COUNT] = { 0x0102, 0x0586, 0x0153, 0x0407,
                                                       0xDEAD, 0xBEEF, 0x0123, 0x4567,
                                                       0x89AB, 0xCDEF };
    struct bms_version v;
    CHECK_EQ_INT(tinybms_decode_version(regs, &v), GW_OK);
    CHECK(v.valid);
    CHECK_EQ_INT(v.hw_version, 0x02);
    CHECK_EQ_INT(v.hw_changes, 0x01);
    CHECK_EQ_INT(v.fw_public, 0x86);
    CHECK_EQ_INT(v.power_type, 1);
    CHECK_EQ_INT(v.current_sensor, 2);
    CHECK_EQ_INT(v.fw_internal, 0x0153);
    CHECK_EQ_INT(v.bootloader_version, 7);
    CHECK_EQ_INT(v.profile_version, 4);
    CHECK_STR(v.serial, "DEADBEEF0123456789ABCDEF");
    CHECK_EQ_INT(v.serial_words[5], 0xCDEF);
}

static void test_settings_merge(void)
{
    struct bms_settings s;
    memset(&s, 0, sizeof s);
    const uint16_t words[] = { 3650, 2800, 0xFFFF };
    CHECK_EQ_INT(tinybms_decode_settings(words, 300, 3, &s), GW_OK);
    CHECK(s.valid);
    CHECK_EQ_INT(s.raw[0], 3650);
    CHECK_EQ_INT(s.present_mask, 0x7);
    /* Words outside 300..343 are ignored. */
    CHECK_EQ_INT(tinybms_decode_settings(words, 342, 3, &s), GW_OK);
    CHECK_EQ_INT(s.raw[42], 3650);
    CHECK_EQ_INT(s.raw[43], 2800);
    CHECK_EQ_INT(s.present_mask, 0x7 | (3ull << 42));
    CHECK_EQ_INT(tinybms_decode_settings(NULL, 300, 1, &s), GW_ERR_INVAL);
}

/* ---------------------------------------------------------------- metadata */

static void test_event_names_and_categories(void)
{
    const uint8_t listed[] = { 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E,
                               0x0F, 0x31, 0x37, 0x38, 0x39, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66,
                               0x67, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x7B, 0x7C,
                               0x7D };
    for (size_t i = 0; i < sizeof listed; i++) {
        CHECK(strcmp(tinybms_event_name(listed[i]), "unknown event") != 0);
        CHECK(tinybms_event_category(listed[i]) != TINYBMS_EVENT_UNKNOWN);
    }
    CHECK_STR(tinybms_event_name(0x02), "under-voltage cutoff");
    CHECK_STR(tinybms_event_name(0x31), "fully discharged cutoff");
    CHECK_STR(tinybms_event_name(0x7D), "external current sensor disconnected");
    CHECK_STR(tinybms_event_name(0x00), "unknown event");
    CHECK_STR(tinybms_event_name(0xFF), "unknown event");
    CHECK_EQ_INT(tinybms_event_category(0x01), TINYBMS_EVENT_FAULT);
    CHECK_EQ_INT(tinybms_event_category(0x30), TINYBMS_EVENT_FAULT);
    CHECK_EQ_INT(tinybms_event_category(0x31), TINYBMS_EVENT_WARNING);
    CHECK_EQ_INT(tinybms_event_category(0x60), TINYBMS_EVENT_WARNING);
    CHECK_EQ_INT(tinybms_event_category(0x61), TINYBMS_EVENT_INFO);
    CHECK_EQ_INT(tinybms_event_category(0x90), TINYBMS_EVENT_INFO);
    CHECK_EQ_INT(tinybms_event_category(0x91), TINYBMS_EVENT_UNKNOWN);
    CHECK_EQ_INT(tinybms_event_category(0x00), TINYBMS_EVENT_UNKNOWN);
    CHECK_STR(tinybms_event_category_name(TINYBMS_EVENT_WARNING), "warning");
    CHECK_STR(tinybms_command_name(0x03), "read registers (MODBUS)");
    CHECK_STR(tinybms_command_name(0x99), "unknown command");
}

static void test_settings_table(void)
{
    size_t n = tinybms_setting_count();
    CHECK(n >= 38);
    uint16_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tinybms_setting_info *s = tinybms_setting_at(i);
        CHECK(s != NULL);
        if (!s)
            continue;
        CHECK(s->reg > prev); /* ascending */
        prev = s->reg;
        CHECK(s->reg >= 300 && s->reg <= 343);
        CHECK(s->key && s->name && s->unit);
        CHECK(s->min <= s->max);
        CHECK(tinybms_setting_info(s->reg) == s);
        bool newer = s->reg == 305 || s->reg == 310 || s->reg == 311 || s->reg == 321 ||
                     s->reg == 322 || s->reg == 323 || s->reg == 329;
        CHECK_EQ_INT(!!(s->flags & TINYBMS_SETTING_NEWER_FW), newer);
        bool ffff = s->reg == 323 || s->reg == 328;
        CHECK_EQ_INT(!!(s->flags & TINYBMS_SETTING_FFFF_ACCEPTED), ffff);
    }
    CHECK(tinybms_setting_at(n) == NULL);
    CHECK(tinybms_setting_info(302) == NULL);
    CHECK(tinybms_setting_info(344) == NULL);
    CHECK_EQ_INT(tinybms_setting_info(312)->kind, TINYBMS_SETTING_U32_LOW);
    CHECK_EQ_INT(tinybms_setting_info(319)->kind, TINYBMS_SETTING_INT16);
    CHECK_EQ_INT(tinybms_setting_info(332)->kind, TINYBMS_SETTING_LOW_BYTE);

    /* 0xFFFF on 323/328 = "accepted", not a number. */
    CHECK(tinybms_setting_reads_accepted(323, 0xFFFF));
    CHECK(tinybms_setting_reads_accepted(328, 0xFFFF));
    CHECK(!tinybms_setting_reads_accepted(328, 25000));
    CHECK(!tinybms_setting_reads_accepted(300, 0xFFFF));
    struct bms_settings s;
    memset(&s, 0, sizeof s);
    const uint16_t read_back[] = { 0xFFFF, 0, 0, 0, 0, 0xFFFF };
    CHECK_EQ_INT(tinybms_decode_settings(read_back, 323, 6, &s), GW_OK);
    CHECK(tinybms_setting_reads_accepted(323, s.raw[323 - 300]));
    CHECK(tinybms_setting_reads_accepted(328, s.raw[328 - 300]));
}

static void test_setting_validation(void)
{
    /* Outside the writable window / undocumented. */
    CHECK_EQ_INT(tinybms_setting_validate(299, 0, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(400, 0, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(36, 0, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(302, 0, NULL, NULL), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(tinybms_setting_validate(350, 0, NULL, NULL), GW_ERR_NOT_FOUND);
    /* Documented ranges. */
    CHECK_EQ_INT(tinybms_setting_validate(315, 4200, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(315, 4500, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(315, 4501, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(315, 1199, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(307, 3, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(307, 16, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(328, 50000, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(328, 50001, NULL, NULL), GW_ERR_RANGE);
    /* Signed temperatures. */
    CHECK_EQ_INT(tinybms_setting_validate(320, (uint16_t)-40, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(320, (uint16_t)-41, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(319, (uint16_t)-5, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(319, 60, NULL, NULL), GW_OK);
    /* Enums, low-byte fields, flags, byte pair. */
    CHECK_EQ_INT(tinybms_setting_validate(337, 1, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(337, 2, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(337, 11, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(331, 0x0100, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(314, 0, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(314, 5, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(332, 30, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(332, 31, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(329, 7, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(329, 8, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(330, 0x1E01, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(330, 0x1F01, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(330, 0x0002, NULL, NULL), GW_ERR_RANGE);
    /* u32 pair 312-313. */
    CHECK_EQ_INT(tinybms_setting_validate_u32(312, 100000, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate_u32(312, 100001, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate_u32(312, 0, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate_u32(313, 10, NULL, NULL), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(313, 1, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(313, 2, NULL, NULL), GW_ERR_RANGE);

    /* The BMS's own min/max (0x1D) are the authority when read. */
    struct bms_settings mn, mx;
    memset(&mn, 0, sizeof mn);
    memset(&mx, 0, sizeof mx);
    uint16_t lo = 1, hi = 100;
    CHECK_EQ_INT(tinybms_decode_settings(&lo, 317, 1, &mn), GW_OK);
    CHECK_EQ_INT(tinybms_decode_settings(&hi, 317, 1, &mx), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(317, 150, NULL, NULL), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(317, 150, &mn, &mx), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(317, 100, &mn, &mx), GW_OK);
    /* Not read from the BMS for this register: documented range. */
    CHECK_EQ_INT(tinybms_setting_validate(318, 700, &mn, &mx), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(318, 751, &mn, &mx), GW_ERR_RANGE);
    uint16_t t_lo = (uint16_t)-20, t_hi = 5;
    CHECK_EQ_INT(tinybms_decode_settings(&t_lo, 320, 1, &mn), GW_OK);
    CHECK_EQ_INT(tinybms_decode_settings(&t_hi, 320, 1, &mx), GW_OK);
    CHECK_EQ_INT(tinybms_setting_validate(320, (uint16_t)-30, &mn, &mx), GW_ERR_RANGE);
    CHECK_EQ_INT(tinybms_setting_validate(320, (uint16_t)-10, &mn, &mx), GW_OK);
}

static void test_describe_frames(void)
{
    uint8_t buf[TINYBMS_MAX_REQUEST];
    char line[96];
    int n = tinybms_encode_read_modbus(buf, sizeof buf, 0, 56);
    CHECK_EQ_INT(tinybms_describe_frame(buf, (size_t)n, true, line, sizeof line),
                 (int)strlen("read regs 0..55 (MODBUS)"));
    CHECK_STR(line, "read regs 0..55 (MODBUS)");

    const uint16_t v[] = { 4200, 2500 };
    n = tinybms_encode_write_modbus(buf, sizeof buf, 315, v, 2);
    tinybms_describe_frame(buf, (size_t)n, true, line, sizeof line);
    CHECK_STR(line, "write regs 315..316 = 4200 2500 (MODBUS)");
    n = tinybms_encode_read_settings(buf, sizeof buf, TINYBMS_SETTINGS_MAX, 44);
    tinybms_describe_frame(buf, (size_t)n, true, line, sizeof line);
    CHECK_STR(line, "read settings max 300..343");
    n = tinybms_encode_reset(buf, sizeof buf, TINYBMS_RESET_CLEAR_EVENTS);
    tinybms_describe_frame(buf, (size_t)n, true, line, sizeof line);
    CHECK_STR(line, "clear events");
    n = tinybms_encode_simple(buf, sizeof buf, 0x1B);
    tinybms_describe_frame(buf, (size_t)n, true, line, sizeof line);
    CHECK_STR(line, "get temperatures");

    const uint8_t ack[] = { 0xAA, 0x01, 0x10, 0, 0 };
    uint8_t frame[8];
    memcpy(frame, ack, 3);
    uint16_t crc = tinybms_crc16(frame, 3);
    frame[3] = (uint8_t)crc;
    frame[4] = (uint8_t)(crc >> 8);
    tinybms_describe_frame(frame, 5, false, line, sizeof line);
    CHECK_STR(line, "ACK 0x10");
    const uint8_t nack[] = { 0xAA, 0x00, 0x03, 0x01 };
    memcpy(frame, nack, 4);
    crc = tinybms_crc16(frame, 4);
    frame[4] = (uint8_t)crc;
    frame[5] = (uint8_t)(crc >> 8);
    tinybms_describe_frame(frame, 6, false, line, sizeof line);
    CHECK_STR(line, "NACK 0x03: CRC error");
    frame[3] = 0x00;
    tinybms_describe_frame(frame, 6, false, line, sizeof line);
    CHECK_STR(line, "bad CRC (6 bytes)");
    tinybms_describe_frame(frame, 3, false, line, sizeof line);
    CHECK_STR(line, "truncated frame (3 bytes)");
    const uint8_t junk[] = { 0xAA, 0x42, 0x00 };
    tinybms_describe_frame(junk, 3, false, line, sizeof line);
    CHECK_STR(line, "invalid frame (3 bytes, cmd 0x42)");

    /* Bounded output. */
    n = tinybms_encode_read_modbus(buf, sizeof buf, 0, 56);
    char tiny[5];
    CHECK_EQ_INT(tinybms_describe_frame(buf, (size_t)n, true, tiny, sizeof tiny), 4);
    CHECK_STR(tiny, "read");
    CHECK_EQ_INT(tinybms_describe_frame(buf, (size_t)n, true, tiny, 0), GW_ERR_INVAL);
    CHECK_EQ_INT(tinybms_describe_frame(NULL, 0, true, line, sizeof line),
                 (int)strlen("empty frame"));
}

TEST_MAIN(TEST_CASE(test_live_real_hardware_14s_documented_order),
          TEST_CASE(test_live_reversed_order),
          TEST_CASE(test_live_unknown_cell_count_uses_populated_registers),
          TEST_CASE(test_live_empty_register_is_not_a_0v_cell),
          TEST_CASE(test_live_soh_and_bad_floats), TEST_CASE(test_live_from_modbus_frame),
          TEST_CASE(test_statistics), TEST_CASE(test_events_from_registers),
          TEST_CASE(test_version_registers), TEST_CASE(test_settings_merge),
          TEST_CASE(test_event_names_and_categories), TEST_CASE(test_settings_table),
          TEST_CASE(test_setting_validation), TEST_CASE(test_describe_frames))
