/* The plausibility gate: every impossible value the probe found is refused, a real sample passes. */
#include "plausibility.h"

#include "gw_config.h"
#include "test.h"

#include <math.h>
#include <string.h>

static struct bms_live_data good_sample(void)
{
    struct bms_live_data s;
    memset(&s, 0, sizeof s);
    s.valid = true;
    s.cell_count = 16;
    for (unsigned i = 0; i < 16; i++)
        s.cell_mv_x10[i] = 33000; /* 3.300 V */
    s.pack_voltage_v = 52.8f;
    s.pack_current_a = -20.0f;
    s.soc_ppm = 65000000;
    s.temp_dc[0] = 250;
    s.temp_present[0] = true;
    s.temp_dc[1] = 180;
    s.temp_present[1] = true;
    return s;
}

static struct bms_pack_limits limits_150a(void)
{
    struct bms_pack_limits l;
    memset(&l, 0, sizeof l);
    l.has_discharge_overcurrent = true;
    l.discharge_overcurrent_a = 150.0f;
    l.has_charge_overcurrent = true;
    l.charge_overcurrent_a = 100.0f;
    return l;
}

static uint8_t rule_of(const struct bms_live_data *s, const struct bms_pack_limits *l)
{
    struct plausibility_result r;
    bool ok = plausibility_check_sample(s, l, GW_CHEM_LFP, &r);
    CHECK(ok == (r.rule == PLAUSIBILITY_OK));
    CHECK(ok || r.reason[0] != 0);
    return r.rule;
}

static void test_real_samples_pass(void)
{
    struct bms_live_data s = good_sample();
    struct bms_pack_limits l = limits_150a();
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_OK);
    CHECK_EQ_INT(rule_of(&s, NULL), PLAUSIBILITY_OK);
    /* An alarming but possible sample: a cell at 3.75 V, pack empty SOC 0, -20 degC, 140 A. */
    s.cell_mv_x10[3] = 37500;
    s.pack_voltage_v = 53.25f;
    s.soc_ppm = 0;
    s.temp_dc[1] = -200;
    s.pack_current_a = 140.0f;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_OK);
    /* An absent sensor's raw value is not judged. */
    s.temp_present[2] = false;
    s.temp_dc[2] = -32768;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_OK);
    /* 4 cells, 100 % */
    struct bms_live_data f = good_sample();
    f.cell_count = 4;
    f.pack_voltage_v = 13.2f;
    f.soc_ppm = 100000000;
    CHECK_EQ_INT(rule_of(&f, &l), PLAUSIBILITY_OK);
}

static void test_probe_values_refused(void)
{
    struct bms_pack_limits l = limits_150a();
    struct bms_live_data s;
    s = good_sample(); s.pack_voltage_v = 0.0f;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_PACK_RANGE);
    s = good_sample(); s.pack_voltage_v = -53.0f;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_PACK_RANGE);
    s = good_sample(); s.pack_voltage_v = 1e30f;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_PACK_RANGE);
    s = good_sample(); s.pack_voltage_v = NAN;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_NOT_FINITE);
    s = good_sample(); s.pack_current_a = INFINITY;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_NOT_FINITE);
    s = good_sample(); s.pack_current_a = 1e30f;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_CURRENT_RANGE);
    s = good_sample(); s.pack_current_a = -451.0f; /* 3 x 150 A */
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_CURRENT_RANGE);
    s = good_sample(); s.pack_current_a = -2500.0f; /* without settings: absolute bound */
    CHECK_EQ_INT(rule_of(&s, NULL), PLAUSIBILITY_CURRENT_RANGE);
    s = good_sample(); s.cell_mv_x10[5] = 65535; /* 6.5535 V */
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_CELL_RANGE);
    s = good_sample(); s.cell_mv_x10[0] = 0;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_CELL_RANGE);
    s = good_sample(); s.soc_ppm = 4294967295u; /* 4295 % */
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_SOC_RANGE);
    s = good_sample(); s.temp_dc[1] = 32767;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_TEMP_RANGE);
    s = good_sample(); s.temp_dc[0] = -32767;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_TEMP_RANGE);
    s = good_sample(); s.cell_count = 0;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_CELL_COUNT);
    s = good_sample(); s.cell_count = 3;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_CELL_COUNT);
    /* A pack voltage that is possible for 16 cells but not for these cells. */
    s = good_sample(); s.pack_voltage_v = 60.0f;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_PACK_VS_CELLS);
    s = good_sample(); s.pack_voltage_v = 50.0f;
    CHECK_EQ_INT(rule_of(&s, &l), PLAUSIBILITY_PACK_VS_CELLS);
    CHECK(plausibility_check_sample(NULL, &l, GW_CHEM_LFP, NULL) == false);
}

static void test_reason_names_the_value(void)
{
    struct bms_live_data s = good_sample();
    s.cell_mv_x10[2] = 65535;
    struct plausibility_result r;
    CHECK(!plausibility_check_sample(&s, NULL, GW_CHEM_LFP, &r));
    CHECK(strstr(r.reason, "cell 3") != NULL);
    CHECK(strstr(r.reason, "6.55") != NULL);
    CHECK_STR(plausibility_rule_name(r.rule), "cell range");
    CHECK_STR(plausibility_rule_name(PLAUSIBILITY_OK), "ok");
}

static void test_chemistry_ranges_and_energy_steps(void)
{
    float lo, hi;
    plausibility_cell_range(GW_CHEM_NMC, &lo, &hi);
    CHECK(hi > 4.2f && lo > 1.0f);
    struct bms_live_data s = good_sample();
    for (unsigned i = 0; i < 16; i++)
        s.cell_mv_x10[i] = 44000; /* 4.40 V: possible NMC, impossible LFP */
    s.pack_voltage_v = 70.4f;
    CHECK(plausibility_check_sample(&s, NULL, GW_CHEM_NMC, NULL));
    CHECK(!plausibility_check_sample(&s, NULL, GW_CHEM_LFP, NULL));
    struct bms_pack_limits l = limits_150a();
    CHECK(plausibility_energy_step_ok(52.8f, -100.0f, 1000, 16, &l, GW_CHEM_LFP));
    CHECK(!plausibility_energy_step_ok(52.8f, 1e30f, 1000, 16, &l, GW_CHEM_LFP));
    CHECK(!plausibility_energy_step_ok(0.0f, 10.0f, 1000, 16, &l, GW_CHEM_LFP));
    CHECK(!plausibility_energy_step_ok(NAN, 10.0f, 1000, 16, &l, GW_CHEM_LFP));
    CHECK(!plausibility_energy_step_ok(52.8f, 10.0f, 1000, 0, &l, GW_CHEM_LFP));
}

TEST_MAIN(TEST_CASE(test_real_samples_pass), TEST_CASE(test_probe_values_refused),
          TEST_CASE(test_reason_names_the_value), TEST_CASE(test_chemistry_ranges_and_energy_steps))
