/* web_server's check of a TinyBMS setting before it is written: documented range and structure,
 * the BMS's own min/max (both must accept), signed registers, enums, bit fields, the byte pair,
 * the u32 pair 312/313 and the order of its two writes; the reasons name the range. */
#include "bms_data.h"
#include "gw_error.h"
#include "test.h"
#include "tinybms.h"
#include "web_internal.h"

static void set_word(struct bms_settings *s, uint16_t reg, uint16_t v)
{
    s->valid = true;
    s->raw[reg - BMS_SETTINGS_FIRST] = v;
    s->present_mask |= 1ull << (reg - BMS_SETTINGS_FIRST);
}

static void test_documented_range(void)
{
    uint16_t raw = 0;
    char why[WEB_SETTING_REASON_MAX];
    CHECK_EQ_INT(web_setting_check(315, 3650, NULL, NULL, NULL, &raw, why, sizeof why), GW_OK);
    CHECK_EQ_INT(raw, 3650);
    CHECK_STR(why, "");
    CHECK_EQ_INT(web_setting_check(315, 4501, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_STR(why, "must be an integer in 1200..4500 mV (got 4501)");
    CHECK_EQ_INT(web_setting_check(315, -1, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_EQ_INT(web_setting_check(315, 70000, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_EQ_INT(web_setting_check(302, 1, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(web_setting_check(399, 1, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(web_setting_check(100, 1, NULL, NULL, NULL, &raw, NULL, 0), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(web_setting_check(315, 1, NULL, NULL, NULL, NULL, why, sizeof why), GW_ERR_NOT_FOUND);
}

static void test_bms_limits_narrow(void)
{
    struct bms_settings mn = { 0 }, mx = { 0 };
    set_word(&mn, 315, 2000);
    set_word(&mx, 315, 4200);
    uint16_t raw;
    char why[WEB_SETTING_REASON_MAX];
    CHECK_EQ_INT(web_setting_check(315, 3650, NULL, &mn, &mx, &raw, why, sizeof why), GW_OK);
    CHECK_EQ_INT(web_setting_check(315, 1500, NULL, &mn, &mx, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_STR(why, "must be an integer in 1200..4500 mV (this BMS: 2000..4200) (got 1500)");
    CHECK_EQ_INT(web_setting_check(315, 4300, NULL, &mn, &mx, &raw, why, sizeof why), GW_ERR_RANGE);
    /* A BMS that reports a wider range than documented does not open the documented one. */
    set_word(&mx, 315, 6000);
    CHECK_EQ_INT(web_setting_check(315, 5000, NULL, &mn, &mx, &raw, why, sizeof why), GW_ERR_RANGE);
    /* Registers the BMS gave no min/max for: the documented range alone. */
    CHECK_EQ_INT(web_setting_check(316, 2800, NULL, &mn, &mx, &raw, why, sizeof why), GW_OK);
    int32_t lo, hi;
    CHECK(web_setting_bms_range(tinybms_setting_info(315), &mn, &mx, &lo, &hi));
    CHECK_EQ_INT(lo, 2000);
    CHECK_EQ_INT(hi, 6000);
    CHECK(!web_setting_bms_range(tinybms_setting_info(316), &mn, &mx, &lo, &hi));
}

static void test_signed_register(void)
{
    uint16_t raw;
    char why[WEB_SETTING_REASON_MAX];
    CHECK_EQ_INT(web_setting_check(320, -10, NULL, NULL, NULL, &raw, why, sizeof why), GW_OK);
    CHECK_EQ_INT(raw, 0xFFF6);
    CHECK_EQ_INT(web_setting_value(tinybms_setting_info(320), raw), -10);
    CHECK_EQ_INT(web_setting_check(320, -41, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_STR(why, "must be an integer in -40..10 degC (got -41)");
    CHECK_EQ_INT(web_setting_check(320, 65526, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    struct bms_settings mn = { 0 }, mx = { 0 };
    set_word(&mn, 320, (uint16_t)(int16_t)-20);
    set_word(&mx, 320, 5);
    CHECK_EQ_INT(web_setting_check(320, -30, NULL, &mn, &mx, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_STR(why, "must be an integer in -40..10 degC (this BMS: -20..5) (got -30)");
    CHECK_EQ_INT(web_setting_check(320, 0, NULL, &mn, &mx, &raw, why, sizeof why), GW_OK);
}

static void test_enum_flags_bytes(void)
{
    uint16_t raw;
    char why[WEB_SETTING_REASON_MAX];
    CHECK_EQ_INT(web_setting_check(337, 1, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_STR(why, "must be one of 0, 2..10 (got 1)");
    CHECK_EQ_INT(web_setting_check(337, 2, NULL, NULL, NULL, &raw, why, sizeof why), GW_OK);
    CHECK_EQ_INT(web_setting_check(337, 0x0102, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_EQ_INT(web_setting_check(339, 1, NULL, NULL, NULL, &raw, why, sizeof why), GW_OK);
    CHECK_EQ_INT(web_setting_check(339, 2, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_STR(why, "must be one of 0, 1 (got 2)");
    CHECK_EQ_INT(web_setting_check(329, 5, NULL, NULL, NULL, &raw, why, sizeof why), GW_OK);
    CHECK_EQ_INT(web_setting_check(329, 8, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_STR(why, "must be a bit field: only bits 0x7 may be set (got 8)");
    CHECK_EQ_INT(web_setting_check(330, 0x0A01, NULL, NULL, NULL, &raw, why, sizeof why), GW_OK);
    CHECK_EQ_INT(web_setting_check(330, 0x1F01, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_EQ_INT(web_setting_check(330, 0x0002, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_EQ_INT(web_setting_check(332, 31, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_EQ_INT(web_setting_check(332, 30, NULL, NULL, NULL, &raw, why, sizeof why), GW_OK);
}

static void test_u32_pair(void)
{
    struct bms_settings cur = { 0 };
    set_word(&cur, 312, 1000);
    set_word(&cur, 313, 0);
    uint16_t raw;
    char why[WEB_SETTING_REASON_MAX];
    CHECK_EQ_INT(web_setting_check(312, 5000, &cur, NULL, NULL, &raw, why, sizeof why), GW_OK);
    CHECK_EQ_INT(web_setting_check(312, 0, &cur, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE); /* pair = 0 */
    CHECK_EQ_INT(web_setting_check(313, 1, &cur, NULL, NULL, &raw, why, sizeof why), GW_OK);         /* 66536 */
    set_word(&cur, 312, 0xFFFF);
    CHECK_EQ_INT(web_setting_check(313, 1, &cur, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE); /* 131071 */
    CHECK(strstr(why, "1..100000") != NULL);
    CHECK_EQ_INT(web_setting_check(313, 2, &cur, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE);
    CHECK_EQ_INT(web_setting_check(312, 1, NULL, NULL, NULL, &raw, why, sizeof why), GW_ERR_RANGE); /* no pair */
    /* The BMS's own min/max of the pair. */
    struct bms_settings mn = { 0 }, mx = { 0 };
    set_word(&mn, 312, 10);
    set_word(&mn, 313, 0);
    set_word(&mx, 312, 2000);
    set_word(&mx, 313, 0);
    set_word(&cur, 312, 1000);
    set_word(&cur, 313, 0);
    CHECK_EQ_INT(web_setting_check(312, 1500, &cur, &mn, &mx, &raw, why, sizeof why), GW_OK);
    CHECK_EQ_INT(web_setting_check(312, 2500, &cur, &mn, &mx, &raw, why, sizeof why), GW_ERR_RANGE);
    /* Order of the two writes: every intermediate value must be valid. */
    CHECK_EQ_INT(web_setting_pair_order(1000, 0, 0x1170, 1, NULL, NULL), 0);      /* 1000 -> 70000 */
    CHECK_EQ_INT(web_setting_pair_order(0x1170, 1, 1000, 0, NULL, NULL), 0);      /* 70000 -> 1000 */
    CHECK_EQ_INT(web_setting_pair_order(0x0000, 1, 0xFFFF, 0, NULL, NULL), -1);   /* 65536 -> 65535 */
    CHECK_EQ_INT(web_setting_pair_order(0x86A0, 1, 0x0010, 0, NULL, NULL), 0);    /* 100000 -> 16 */
    CHECK_EQ_INT(web_setting_pair_order(0x0010, 0, 0x86A0, 1, NULL, NULL), 0);
    CHECK_EQ_INT(web_setting_pair_order(0x0010, 1, 0xFFFF, 0, NULL, NULL), 1);    /* 65552 -> 65535 */
    CHECK_EQ_INT(web_setting_pair_order(5, 0, 6, 0, NULL, NULL), 0);              /* one word only */
}

static void test_describe(void)
{
    char out[WEB_SETTING_REASON_MAX];
    web_setting_describe_range(tinybms_setting_info(338), NULL, NULL, out, sizeof out);
    CHECK_STR(out, "one of 0..7");
    web_setting_describe_range(tinybms_setting_info(314), NULL, NULL, out, sizeof out);
    CHECK_STR(out, "one of 1..5");
    web_setting_describe_range(tinybms_setting_info(330), NULL, NULL, out, sizeof out);
    CHECK_STR(out, "low byte + 256 x high byte, low byte one of 1, high byte 0..30");
    web_setting_describe_range(tinybms_setting_info(307), NULL, NULL, out, sizeof out);
    CHECK_STR(out, "an integer in 4..16");
    web_setting_describe_range(NULL, NULL, NULL, out, sizeof out);
    CHECK_STR(out, "");
    char small[12];
    web_setting_describe_range(tinybms_setting_info(315), NULL, NULL, small, sizeof small);
    CHECK(strlen(small) < sizeof small);
}

TEST_MAIN(TEST_CASE(test_documented_range), TEST_CASE(test_bms_limits_narrow), TEST_CASE(test_signed_register),
          TEST_CASE(test_enum_flags_bytes), TEST_CASE(test_u32_pair), TEST_CASE(test_describe))
