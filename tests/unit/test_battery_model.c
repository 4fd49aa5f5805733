/* Unit tests of the simulator's battery model (tools/tinybms-sim/battery_model.h). */
#include "test.h"

#include "battery_model.h"

static void init_default(struct battery_model *m, enum battery_chemistry chem, float soc)
{
    struct battery_model_config cfg;
    battery_model_default_config(&cfg, chem);
    cfg.initial_soc = soc;
    CHECK_EQ_INT(battery_model_init(m, &cfg), 0);
}

/* Runs the model for seconds of model time at current_a in 1 s steps, stopping early when an
 * event with id `until` appears (0 = never). Returns true if it appeared. */
static bool run_until_event(struct battery_model *m, float current_a, float seconds, uint8_t until)
{
    uint32_t start_total = m->event_total;
    for (float t = 0.0f; t < seconds; t += 1.0f) {
        battery_model_step(m, current_a, 1.0f);
        if (!until)
            continue;
        uint32_t fresh = m->event_total - start_total;
        for (uint32_t k = 0; k < fresh && k < m->event_count; k++)
            if (m->events[m->event_count - 1 - k].id == until)
                return true;
    }
    return false;
}

static bool has_event(const struct battery_model *m, uint8_t id)
{
    for (unsigned k = 0; k < m->event_count; k++)
        if (m->events[k].id == id)
            return true;
    return false;
}

static void test_defaults_and_bad_config(void)
{
    struct battery_model_config cfg;
    battery_model_default_config(&cfg, BATTERY_LFP);
    CHECK_EQ_INT(cfg.cells, 16);
    CHECK_NEAR(cfg.capacity_ah, 280.0, 1e-6);
    CHECK_EQ_INT(cfg.over_voltage_cutoff_mv, 3650);
    CHECK_EQ_INT(cfg.under_voltage_cutoff_mv, 2800);
    CHECK_EQ_INT(cfg.early_balancing_mv, 3400);
    CHECK_EQ_INT(cfg.allowed_disbalance_mv, 15);
    battery_model_default_config(&cfg, BATTERY_NMC);
    CHECK_EQ_INT(cfg.over_voltage_cutoff_mv, 4200);
    CHECK_EQ_INT(cfg.under_voltage_cutoff_mv, 3000);

    struct battery_model m;
    battery_model_default_config(&cfg, BATTERY_LFP);
    cfg.cells = 3;
    CHECK_EQ_INT(battery_model_init(&m, &cfg), -1);
    cfg.cells = 17;
    CHECK_EQ_INT(battery_model_init(&m, &cfg), -1);
    cfg.cells = 16;
    cfg.initial_soc = 1.5f;
    CHECK_EQ_INT(battery_model_init(&m, &cfg), -1);
    CHECK_EQ_INT(battery_model_init(NULL, &cfg), -1);

    init_default(&m, BATTERY_LFP, 0.5f);
    CHECK_EQ_INT(m.event_count, 1);
    CHECK_EQ_INT(m.events[0].id, 0x61); /* system started */
    CHECK(m.charge_enabled && m.discharge_enabled && !m.fault);
    CHECK_EQ_INT(battery_model_status(&m), 0x97);
    CHECK(m.ext_sensor_connected[0]);
    CHECK(!m.ext_sensor_connected[1]);
    CHECK_NEAR(battery_model_pack_voltage(&m), 16 * 3.300, 0.01);
}

static void test_ocv_monotonic_and_ranges(void)
{
    for (int chem = BATTERY_LFP; chem <= BATTERY_NMC; chem++) {
        float prev = battery_model_ocv((enum battery_chemistry)chem, -0.05f);
        int violations = 0;
        for (int i = -49; i <= 1050; i++) {
            float v = battery_model_ocv((enum battery_chemistry)chem, (float)i / 1000.0f);
            if (!(v > prev))
                violations++;
            prev = v;
        }
        CHECK_EQ_INT(violations, 0);
    }
    CHECK_NEAR(battery_model_ocv(BATTERY_LFP, 0.0f), 2.50, 1e-6);
    CHECK_NEAR(battery_model_ocv(BATTERY_LFP, 1.0f), 3.65, 1e-6);
    CHECK_NEAR(battery_model_ocv(BATTERY_NMC, 0.0f), 3.00, 1e-6);
    CHECK_NEAR(battery_model_ocv(BATTERY_NMC, 1.0f), 4.20, 1e-6);
    /* LFP is flat in the middle: 20 % .. 90 % spans less than 80 mV. */
    CHECK(battery_model_ocv(BATTERY_LFP, 0.9f) - battery_model_ocv(BATTERY_LFP, 0.2f) < 0.08f);
}

static void test_coulomb_counting(void)
{
    struct battery_model m;
    init_default(&m, BATTERY_LFP, 0.5f);
    for (int s = 0; s < 3600; s++)
        battery_model_step(&m, 28.0f, 1.0f); /* 28 Ah into 280 Ah: +10 % */
    CHECK_NEAR(battery_model_soc(&m), 0.60, 1e-3);
    CHECK_NEAR(m.soc_ah, 168.0, 0.05);
    CHECK_NEAR(m.current_a, 28.0, 1e-6);
    CHECK_EQ_INT(battery_model_status(&m), 0x91);
    CHECK(m.energy_in_wh > 28.0 * 50.0 && m.energy_in_wh < 28.0 * 56.0);
    CHECK_NEAR(m.lifetime_s, 3600.0, 1e-3);
    CHECK_EQ_INT(m.charging_count, 1);
    CHECK(has_event(&m, 0x62));
    /* A 60 s step is split into 1 s steps: same result as 60 single steps. */
    battery_model_step(&m, -56.0f, 60.0f);
    CHECK_NEAR(battery_model_soc(&m), 0.60 - 56.0 / 60.0 / 280.0, 1e-4);
    CHECK_EQ_INT(battery_model_status(&m), 0x93);
    battery_model_step(&m, 0.0f, 1.0f);
    CHECK_EQ_INT(battery_model_status(&m), 0x97);
    CHECK(m.energy_out_wh > 0.0);
    CHECK_NEAR(m.max_charge_a, 28.0, 1e-4);
    CHECK_NEAR(m.max_discharge_a, 56.0, 1e-4);
    /* Terminal voltage = OCV + I R. */
    battery_model_step(&m, 100.0f, 0.0f);
    CHECK_NEAR(m.cell_voltage_v[0], battery_model_cell_ocv(&m, 0) + 100.0f * m.cell_resistance_ohm[0], 1e-5);
}

static void test_over_voltage_cutoff_and_recovery(void)
{
    struct battery_model m;
    init_default(&m, BATTERY_LFP, 0.97f);
    CHECK(run_until_event(&m, 56.0f, 4 * 3600.0f, 0x03));
    CHECK_EQ_INT(m.over_voltage_count, 1);
    CHECK(!m.charge_enabled);
    CHECK(m.discharge_enabled);
    CHECK(m.fault);
    CHECK_EQ_INT(battery_model_status(&m), 0x9B);
    CHECK_NEAR(m.current_a, 0.0, 1e-6);
    CHECK_NEAR(battery_model_soc(&m), 1.0, 1e-6);
    /* Asking for more charge does not flow while the switch is open. */
    battery_model_step(&m, 56.0f, 1.0f);
    CHECK_NEAR(m.current_a, 0.0, 1e-6);
    /* A discharge lowers the cells below the cutoff minus hysteresis: recovery 0x79. */
    CHECK(run_until_event(&m, -56.0f, 3600.0f, 0x79));
    CHECK(m.charge_enabled);
    CHECK(!m.fault);
}

static void test_under_voltage_cutoff_and_recovery(void)
{
    struct battery_model m;
    init_default(&m, BATTERY_LFP, 0.05f);
    CHECK(run_until_event(&m, -140.0f, 3600.0f, 0x02));
    CHECK_EQ_INT(m.under_voltage_count, 1);
    CHECK(!m.discharge_enabled);
    CHECK(m.charge_enabled);
    CHECK_EQ_INT(battery_model_status(&m), 0x9B);
    CHECK_NEAR(battery_model_soc(&m), 0.0, 1e-6);
    battery_model_step(&m, -140.0f, 1.0f);
    CHECK_NEAR(m.current_a, 0.0, 1e-6);
    CHECK(run_until_event(&m, 28.0f, 3600.0f, 0x7B));
    CHECK(m.discharge_enabled);
    CHECK(!m.fault);
}

static void test_over_current_cutoffs(void)
{
    struct battery_model m;
    init_default(&m, BATTERY_LFP, 0.5f);
    battery_model_step(&m, -250.0f, 1.0f);
    CHECK(has_event(&m, 0x05));
    CHECK_EQ_INT(m.discharge_oc_count, 1);
    CHECK(!m.discharge_enabled);
    CHECK_NEAR(m.current_a, 0.0, 1e-6);
    CHECK_EQ_INT(battery_model_status(&m), 0x9B);
    CHECK(run_until_event(&m, 0.0f, 30.0f, 0x77));
    CHECK(m.discharge_enabled);

    battery_model_step(&m, 200.0f, 1.0f);
    CHECK(has_event(&m, 0x06));
    CHECK_EQ_INT(m.charge_oc_count, 1);
    CHECK(!m.charge_enabled);
    CHECK(run_until_event(&m, 0.0f, 30.0f, 0x76));
    CHECK(m.charge_enabled);
    CHECK_EQ_INT(battery_model_status(&m), 0x97);
}

static void test_over_heat_and_low_temp(void)
{
    struct battery_model m;
    init_default(&m, BATTERY_LFP, 0.5f);
    m.heater_c_per_s = 0.5f;
    CHECK(run_until_event(&m, 0.0f, 600.0f, 0x04));
    CHECK_EQ_INT(m.over_heat_count, 1);
    CHECK(!m.charge_enabled && !m.discharge_enabled);
    CHECK_EQ_INT(battery_model_status(&m), 0x9B);
    CHECK(m.max_temp_c > 60.0f);
    m.heater_c_per_s = 0.0f;
    CHECK(run_until_event(&m, 0.0f, 6.0f * 3600.0f, 0x73));
    CHECK(m.temp_ext_c[0] < 55.0f);
    CHECK(m.charge_enabled && m.discharge_enabled);

    struct battery_model_config cfg;
    battery_model_default_config(&cfg, BATTERY_LFP);
    cfg.ambient_c = -10.0f;
    CHECK_EQ_INT(battery_model_init(&m, &cfg), 0);
    battery_model_step(&m, 20.0f, 1.0f);
    CHECK(has_event(&m, 0x37));
    CHECK(!m.charge_enabled);
    CHECK(!m.fault); /* a warning, not a fault */
    CHECK_NEAR(m.current_a, 0.0, 1e-6);
    battery_model_step(&m, -20.0f, 1.0f); /* discharge still allowed */
    CHECK_NEAR(m.current_a, -20.0, 1e-6);
}

static void test_temperature_follows_current(void)
{
    struct battery_model m;
    init_default(&m, BATTERY_LFP, 0.5f);
    run_until_event(&m, -150.0f, 1800.0f, 0);
    CHECK(m.temp_internal_c > 30.0f);
    CHECK(m.temp_ext_c[0] > 25.0f);
    float hot = m.temp_internal_c;
    run_until_event(&m, 0.0f, 3600.0f, 0);
    CHECK(m.temp_internal_c < hot);
    CHECK_NEAR(m.temp_internal_c, 25.0, 0.5);
}

static void test_balancing_bits(void)
{
    struct battery_model m;
    init_default(&m, BATTERY_LFP, 0.5f);
    for (unsigned i = 0; i < 16; i++)
        battery_model_set_cell_ocv(&m, i, 3.45f);
    battery_model_set_cell_ocv(&m, 3, 3.50f);
    battery_model_set_cell_ocv(&m, 9, 3.46f);  /* within 15 mV of the lowest: no balancing */
    CHECK_NEAR(battery_model_cell_ocv(&m, 3), 3.50, 1e-4);
    battery_model_step(&m, 0.0f, 1.0f);
    CHECK_EQ_INT(m.balancing_bits, 1u << 3);
    CHECK_EQ_INT(m.balancing_decision_bits, 1u << 3);
    float before = m.cell_charge_ah[3], other = m.cell_charge_ah[4];
    run_until_event(&m, 0.0f, 600.0f, 0);
    CHECK_NEAR(before - m.cell_charge_ah[3], 0.06 * 600.0 / 3600.0, 1e-3);
    CHECK_NEAR(m.cell_charge_ah[4], other, 1e-6);
    /* Below the early-balancing threshold nothing bleeds. */
    init_default(&m, BATTERY_LFP, 0.5f);
    battery_model_set_cell_ocv(&m, 5, 3.35f);
    battery_model_step(&m, 0.0f, 1.0f);
    CHECK_EQ_INT(m.balancing_bits, 0);
}

static void test_spread_deterministic_from_seed(void)
{
    struct battery_model_config cfg;
    battery_model_default_config(&cfg, BATTERY_LFP);
    cfg.seed = 42;
    cfg.initial_soc_spread = 0.05f;
    static struct battery_model a, b, c;
    CHECK_EQ_INT(battery_model_init(&a, &cfg), 0);
    CHECK_EQ_INT(battery_model_init(&b, &cfg), 0);
    CHECK_MEM(a.cell_capacity_ah, b.cell_capacity_ah, sizeof a.cell_capacity_ah);
    CHECK_MEM(a.cell_resistance_ohm, b.cell_resistance_ohm, sizeof a.cell_resistance_ohm);
    CHECK_MEM(a.cell_charge_ah, b.cell_charge_ah, sizeof a.cell_charge_ah);
    cfg.seed = 43;
    CHECK_EQ_INT(battery_model_init(&c, &cfg), 0);
    CHECK(memcmp(a.cell_capacity_ah, c.cell_capacity_ah, sizeof a.cell_capacity_ah) != 0);
    /* The spread is real but bounded (3 sigma). */
    float lo = 1e9f, hi = 0.0f;
    for (int i = 0; i < 16; i++) {
        lo = a.cell_capacity_ah[i] < lo ? a.cell_capacity_ah[i] : lo;
        hi = a.cell_capacity_ah[i] > hi ? a.cell_capacity_ah[i] : hi;
        CHECK(a.cell_resistance_ohm[i] > 0.00025f * 0.69f && a.cell_resistance_ohm[i] < 0.00025f * 1.31f);
    }
    CHECK(hi - lo > 0.5f);
    CHECK(lo > 280.0f * 0.93f && hi < 280.0f * 1.07f);
}

static void test_fourteen_cells(void)
{
    struct battery_model_config cfg;
    battery_model_default_config(&cfg, BATTERY_LFP);
    cfg.cells = 14;
    struct battery_model m;
    CHECK_EQ_INT(battery_model_init(&m, &cfg), 0);
    battery_model_step(&m, 10.0f, 1.0f);
    CHECK_NEAR(m.cell_voltage_v[14], 0.0, 0.0);
    CHECK_NEAR(m.cell_voltage_v[15], 0.0, 0.0);
    CHECK(m.cell_voltage_v[13] > 3.0f);
    CHECK_NEAR(battery_model_pack_voltage(&m), 14 * 3.30, 0.05);
    unsigned idx = 99;
    battery_model_min_cell_v(&m, &idx);
    CHECK(idx < 14);
}

static void test_event_ring_and_clears(void)
{
    struct battery_model m;
    init_default(&m, BATTERY_LFP, 0.5f);
    for (int i = 0; i < 60; i++)
        battery_model_log_event(&m, (uint8_t)(0x80 + (i % 10)));
    CHECK_EQ_INT(m.event_count, BATTERY_MODEL_EVENT_RING);
    CHECK_EQ_INT(m.event_total, 61);
    CHECK_EQ_INT(m.events[BATTERY_MODEL_EVENT_RING - 1].id, 0x80 + 9); /* newest last */
    battery_model_clear_events(&m);
    CHECK_EQ_INT(m.event_count, 0);
    battery_model_step(&m, -250.0f, 1.0f);
    CHECK_EQ_INT(m.discharge_oc_count, 1);
    battery_model_clear_statistics(&m);
    CHECK_EQ_INT(m.discharge_oc_count, 0);
    CHECK_EQ_INT(m.stats_cleared_s, 1);
    battery_model_reset_bms(&m);
    CHECK(m.discharge_enabled);
    CHECK_EQ_INT(m.events[m.event_count - 1].id, 0x61);
    battery_model_set_soc(&m, 0.25f);
    CHECK_NEAR(battery_model_soc(&m), 0.25, 1e-6);
    /* Garbage inputs never corrupt the model. */
    battery_model_step(&m, NAN, 1.0f);
    battery_model_step(&m, 0.0f, -5.0f);
    battery_model_set_cell_ocv(&m, 99, 3.3f);
    CHECK(m.cell_voltage_v[0] == m.cell_voltage_v[0]);
}

TEST_MAIN(TEST_CASE(test_defaults_and_bad_config), TEST_CASE(test_ocv_monotonic_and_ranges),
          TEST_CASE(test_coulomb_counting), TEST_CASE(test_over_voltage_cutoff_and_recovery),
          TEST_CASE(test_under_voltage_cutoff_and_recovery), TEST_CASE(test_over_current_cutoffs),
          TEST_CASE(test_over_heat_and_low_temp), TEST_CASE(test_temperature_follows_current),
          TEST_CASE(test_balancing_bits), TEST_CASE(test_spread_deterministic_from_seed),
          TEST_CASE(test_fourteen_cells), TEST_CASE(test_event_ring_and_clears))
