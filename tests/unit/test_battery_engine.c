/* The battery engine: pack states, the plausibility gate, aggregation of several packs (R1-R12
 * of shared/spec/several-packs.md), dropout and rejoin, energy counters and their restore. */
#include "battery_engine.h"

#include "gw_error.h"
#include "support/sample.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct battery_view view; /* 7 KiB: not on the stack */

static struct bms_live_data sample(uint8_t id, float cell_v, float current_a, float soc_pct, uint32_t lifetime_s)
{
    struct bms_live_data s = test_sample(id, cell_v, current_a);
    s.soc_ppm = (uint32_t)(soc_pct * 1e6f);
    s.lifetime_s = lifetime_s;
    return s;
}

static struct battery_engine *make_engine(unsigned packs, const float *capacity_ah, uint8_t min_online)
{
    struct battery_engine_config cfg;
    battery_engine_default_config(&cfg);
    cfg.pack_count = (uint8_t)packs;
    for (unsigned i = 0; i < packs; i++) {
        cfg.packs[i].id = (uint8_t)i;
        cfg.packs[i].capacity_ah = capacity_ah ? capacity_ah[i] : 100.0f;
    }
    cfg.min_online = min_online;
    struct battery_engine *e = calloc(1, sizeof *e);
    CHECK(e != NULL);
    if (e)
        CHECK_EQ_INT(battery_engine_init(e, &cfg), GW_OK);
    return e;
}

/* Feeds every listed pack a sample each second for `seconds`, stepping after each round. */
static void run(struct battery_engine *e, uint64_t *now, unsigned seconds, unsigned packs, const float *cell_v,
                const float *current_a, const float *soc, uint32_t *lifetime)
{
    for (unsigned t = 0; t < seconds; t++) {
        *now += 1000;
        for (unsigned i = 0; i < packs; i++) {
            if (cell_v[i] <= 0.0f)
                continue; /* this pack is silent */
            lifetime[i]++;
            struct bms_live_data s = sample((uint8_t)i, cell_v[i], current_a[i], soc[i], lifetime[i]);
            battery_engine_feed_sample(e, &s, *now);
        }
        battery_engine_step(e, *now, &view);
    }
}

static void test_one_pack_online_then_stale(void)
{
    struct battery_engine *e = make_engine(1, NULL, 1);
    uint64_t now = 1000;
    uint32_t life[1] = {100};
    float v[1] = {3.30f}, i[1] = {-10.0f}, soc[1] = {60.0f};
    run(e, &now, 5, 1, v, i, soc, life);
    CHECK_EQ_INT(view.packs[0].state, BATTERY_PACK_ONLINE);
    CHECK_EQ_INT(view.online_count, 1);
    CHECK(view.limits.valid);
    CHECK_NEAR(view.voltage_v, 52.8f, 0.01f);
    CHECK_NEAR(view.current_a, -10.0f, 0.01f);
    CHECK_NEAR(view.soc_pct, 60.0f, 0.01f);
    CHECK(view.limits.cvl_v > 50.0f && view.limits.cvl_v < 58.0f);
    CHECK(view.limits.dcl_a > 0.0f);
    CHECK_STR(view.packs[0].name, "pack 1");
    CHECK_STR(view.max_cell.name, "C1"); /* one pack: no pack prefix */
    CHECK(view.have_temp);
    CHECK_NEAR(view.temp_max_c, 20.0f, 0.01f); /* the external sensor, not the 30 degC board */
    CHECK_EQ_INT(view.modules.ok, 1);
    CHECK_EQ_INT(view.modules.offline, 0);
    /* Silence: stale after 5 s (limits not sent), offline after 30 s. */
    now += 6000;
    battery_engine_step(e, now, &view);
    CHECK_EQ_INT(view.packs[0].state, BATTERY_PACK_STALE);
    CHECK(!view.limits.valid);
    CHECK(view.conditions & BATTERY_COND_NO_DATA);
    CHECK_EQ_INT(view.alarms.online, false);
    now += 30000;
    battery_engine_step(e, now, &view);
    CHECK_EQ_INT(view.packs[0].state, BATTERY_PACK_OFFLINE);
    CHECK_EQ_INT(view.modules.offline, 1);
    /* Fresh data again: online, limits sent again. */
    run(e, &now, 2, 1, v, i, soc, life);
    CHECK_EQ_INT(view.packs[0].state, BATTERY_PACK_ONLINE);
    CHECK(view.limits.valid);
    free(e);
}

static void test_two_packs_aggregate(void)
{
    float caps[2] = {100.0f, 200.0f};
    struct battery_engine *e = make_engine(2, caps, 1);
    uint64_t now = 1000;
    uint32_t life[2] = {10, 20};
    float v[2] = {3.30f, 3.31f}, i[2] = {-10.0f, -20.0f}, soc[2] = {40.0f, 70.0f};
    run(e, &now, 60, 2, v, i, soc, life);
    CHECK_EQ_INT(view.online_count, 2);
    CHECK_NEAR(view.current_a, -30.0f, 0.01f);                  /* R3: sum */
    CHECK_NEAR(view.soc_pct, (40.0f * 100 + 70.0f * 200) / 300, 0.05f); /* R4: capacity-weighted */
    CHECK_NEAR(view.voltage_v, (52.8f + 52.96f) / 2, 0.02f);     /* R2: mean */
    CHECK_NEAR(view.capacity_ah, 300.0f, 0.01f);
    CHECK_EQ_INT(view.modules.ok, 2);
    CHECK_STR(view.max_cell.name, "P2C1");                       /* R5: pack-qualified */
    CHECK_EQ_INT(view.max_cell.pack, 1);
    CHECK_EQ_INT(view.min_cell.pack, 0);
    CHECK(view.limits.valid);
    /* R7: CCL/DCL = min over packs of limit x capacity ratio, never above the sum. */
    float d0 = view.packs[0].limits.dcl_a, d1 = view.packs[1].limits.dcl_a;
    float expect = fminf(fminf(d0 * 3.0f, d1 * 1.5f), d0 + d1);
    CHECK_NEAR(view.limits.dcl_a, expect, 0.05f);
    CHECK(view.limits.dcl_a <= d0 + d1 + 0.01f);
    /* R6: CVL = min over the packs. */
    CHECK(view.limits.cvl_v <= view.packs[0].limits.cvl_v + 1e-4f);
    CHECK(view.limits.cvl_v <= view.packs[1].limits.cvl_v + 1e-4f);
    CHECK(view.conditions & BATTERY_COND_SOC_SPREAD);            /* 30 % apart */
    free(e);
}

static void test_dropout_keeps_the_bank_and_rejoin_ramps(void)
{
    struct battery_engine *e = make_engine(2, NULL, 1);
    uint64_t now = 1000;
    uint32_t life[2] = {10, 20};
    float v[2] = {3.30f, 3.30f}, i[2] = {-10.0f, -10.0f}, soc[2] = {50.0f, 50.0f};
    run(e, &now, 120, 2, v, i, soc, life);
    float dcl_two = view.limits.dcl_a;
    CHECK(dcl_two > 0.0f);
    /* Pack 2 unplugged: the BMS poller reports the link lost. */
    battery_engine_feed_comm(e, 1, true);
    float silent[2] = {3.30f, 0.0f};
    run(e, &now, 1, 2, silent, i, soc, life);
    CHECK_EQ_INT(view.online_count, 1);
    CHECK(view.limits.valid);                                    /* the bank stays on the bus */
    CHECK_EQ_INT(view.modules.ok, 1);
    CHECK_EQ_INT(view.modules.offline, 1);
    CHECK(view.conditions & BATTERY_COND_PACK_OFFLINE);
    CHECK(view.packs[1].conditions & BATTERY_COND_COMM_LOST);
    CHECK(view.limits.dcl_a <= view.packs[0].limits.dcl_a + 0.01f); /* at once, for one pack */
    CHECK(view.limits.dcl_a < dcl_two);
    /* It comes back 1.6 V away from the bank: not taken in (R10). */
    float far[2] = {3.30f, 3.40f};
    run(e, &now, 3, 2, far, i, soc, life);
    CHECK_EQ_INT(view.online_count, 1);
    CHECK(view.packs[1].conditions & BATTERY_COND_REJOIN_BLOCKED);
    /* Within the window: it rejoins and the bank limit ramps back up, no jump. */
    run(e, &now, 1, 2, v, i, soc, life);
    CHECK_EQ_INT(view.online_count, 2);
    CHECK(view.limits.dcl_a < dcl_two);
    run(e, &now, 300, 2, v, i, soc, life);
    CHECK_NEAR(view.limits.dcl_a, dcl_two, 0.05f);
    CHECK_EQ_INT(view.packs[1].state, BATTERY_PACK_ONLINE);
    free(e);
}

static void test_below_min_online_stops_both_directions(void)
{
    struct battery_engine *e = make_engine(2, NULL, 2);
    uint64_t now = 1000;
    uint32_t life[2] = {10, 20};
    float v[2] = {3.30f, 3.30f}, i[2] = {-10.0f, -10.0f}, soc[2] = {50.0f, 50.0f};
    run(e, &now, 60, 2, v, i, soc, life);
    CHECK(view.limits.dcl_a > 0.0f);
    float one[2] = {3.30f, 0.0f};
    run(e, &now, 7, 2, one, i, soc, life); /* pack 2 silent: stale after 5 s */
    CHECK_EQ_INT(view.online_count, 1);
    CHECK(view.limits.valid);
    CHECK_NEAR(view.limits.ccl_a, 0.0f, 1e-6f);
    CHECK_NEAR(view.limits.dcl_a, 0.0f, 1e-6f);
    CHECK(view.limits.cvl_v > 0.0f);
    CHECK(view.conditions & BATTERY_COND_BELOW_MIN_ONLINE);
    CHECK(strstr(view.limits.dcl_reason, "too few packs") != NULL);
    free(e);
}

static void test_implausible_samples_never_reach_outputs(void)
{
    struct battery_engine *e = make_engine(1, NULL, 1);
    uint64_t now = 1000;
    uint32_t life[1] = {100};
    float v[1] = {3.30f}, i[1] = {10.0f}, soc[1] = {60.0f};
    run(e, &now, 10, 1, v, i, soc, life);
    double in_wh = view.energy_in_wh;
    CHECK(in_wh > 0.0);
    /* A stand-in answering valid CRCs with impossible values. */
    for (unsigned k = 0; k < 4; k++) {
        now += 1000;
        struct bms_live_data s = sample(0, 3.30f, 1e30f, 60.0f, ++life[0]);
        CHECK_EQ_INT(battery_engine_feed_sample(e, &s, now), BATTERY_FEED_IMPLAUSIBLE);
        s = sample(0, 3.30f, 10.0f, 60.0f, ++life[0]);
        s.pack_voltage_v = -53.0f;
        CHECK_EQ_INT(battery_engine_feed_sample(e, &s, now), BATTERY_FEED_IMPLAUSIBLE);
        battery_engine_step(e, now, &view);
    }
    CHECK_EQ_INT(view.packs[0].state, BATTERY_PACK_STALE);       /* a run of them = stale */
    CHECK(!view.limits.valid);
    CHECK(view.packs[0].conditions & BATTERY_COND_IMPLAUSIBLE);
    CHECK(view.packs[0].bad_samples >= 8);
    CHECK(strstr(view.packs[0].bad_reason, "pack") != NULL);
    CHECK_NEAR(view.packs[0].live.pack_voltage_v, 52.8f, 0.01f); /* the last good sample kept */
    CHECK(view.energy_in_wh - in_wh < 1.0);                      /* no 1e28 Wh */
    /* Good samples again: back online. */
    run(e, &now, 2, 1, v, i, soc, life);
    CHECK_EQ_INT(view.packs[0].state, BATTERY_PACK_ONLINE);
    CHECK(!(view.packs[0].conditions & BATTERY_COND_IMPLAUSIBLE));
    free(e);
}

static void test_frozen_bms_is_stale(void)
{
    struct battery_engine *e = make_engine(1, NULL, 1);
    uint64_t now = 1000;
    uint32_t life[1] = {100};
    float v[1] = {3.30f}, i[1] = {10.0f}, soc[1] = {60.0f};
    run(e, &now, 5, 1, v, i, soc, life);
    int last = BATTERY_FEED_TAKEN;
    for (unsigned k = 0; k < 12; k++) { /* polls succeed, lifetime counter stuck */
        now += 1000;
        struct bms_live_data s = sample(0, 3.30f, 10.0f, 60.0f, life[0]);
        last = battery_engine_feed_sample(e, &s, now);
        battery_engine_step(e, now, &view);
    }
    CHECK_EQ_INT(last, BATTERY_FEED_FROZEN);
    CHECK_EQ_INT(view.packs[0].state, BATTERY_PACK_STALE);
    CHECK(view.packs[0].conditions & BATTERY_COND_FROZEN);
    CHECK(!view.limits.valid);
    run(e, &now, 2, 1, v, i, soc, life);
    CHECK_EQ_INT(view.packs[0].state, BATTERY_PACK_ONLINE);
    free(e);
}

static void test_no_cell_sensor_is_flagged_and_board_is_no_cell(void)
{
    struct battery_engine *e = make_engine(1, NULL, 1);
    uint64_t now = 1000;
    for (unsigned k = 0; k < 3; k++) {
        now += 1000;
        struct bms_live_data s = sample(0, 3.30f, 10.0f, 60.0f, 100 + k);
        s.temp_present[BMS_TEMP_EXT1] = false;
        battery_engine_feed_sample(e, &s, now);
        battery_engine_step(e, now, &view);
    }
    CHECK(view.packs[0].conditions & BATTERY_COND_NO_CELL_TEMP);
    CHECK(!view.have_temp);
    free(e);
}

static void test_energy_counters_and_restore(void)
{
    struct battery_engine *e = make_engine(1, NULL, 1);
    uint64_t now = 1000;
    uint32_t life[1] = {100};
    float v[1] = {3.30f}, i[1] = {10.0f}, soc[1] = {60.0f};
    run(e, &now, 3601, 1, v, i, soc, life);
    CHECK_NEAR(view.energy_in_wh, 528.0, 0.5);                   /* 52.8 V x 10 A x 1 h */
    CHECK_NEAR(view.energy_out_wh, 0.0, 1e-9);
    struct battery_engine_saved saved;
    battery_engine_save(e, &saved);
    CHECK_EQ_INT(saved.pack_count, 1);
    CHECK(saved.packs[0].valid);

    /* A good state restores; an impossible one is refused with a condition. */
    struct battery_engine *f = make_engine(1, NULL, 1);
    CHECK_EQ_INT(battery_engine_restore(f, &saved), GW_OK);
    now = 5000;
    battery_engine_step(f, now, &view);
    CHECK_NEAR(view.energy_in_wh, 528.0, 0.5);
    CHECK(!(view.conditions & BATTERY_COND_ENERGY_REFUSED));
    free(f);
    struct battery_engine_saved bad = saved;
    bad.energy_in_wh = 1.47e28;
    f = make_engine(1, NULL, 1);
    CHECK_EQ_INT(battery_engine_restore(f, &bad), GW_ERR_RANGE);
    battery_engine_step(f, now, &view);
    CHECK_NEAR(view.energy_in_wh, 0.0, 1e-9);
    CHECK(view.conditions & BATTERY_COND_ENERGY_REFUSED);
    free(f);
    bad = saved;
    bad.energy_out_wh = NAN;
    f = make_engine(1, NULL, 1);
    CHECK_EQ_INT(battery_engine_restore(f, &bad), GW_ERR_RANGE);
    free(f);
    free(e);
}

static void test_float_survives_a_restart(void)
{
    struct battery_engine *e = make_engine(1, NULL, 1);
    struct battery_engine_saved saved;
    battery_engine_save(e, &saved);
    saved.packs[0].valid = true;
    saved.packs[0].charge.phase = CHARGE_PHASE_FLOAT;
    saved.packs[0].charge.float_cvl_v = 54.0f;
    saved.packs[0].charge.cvl_v = 54.0f;
    CHECK_EQ_INT(battery_engine_restore(e, &saved), GW_OK);
    uint64_t now = 1000;
    uint32_t life[1] = {100};
    float v[1] = {3.38f}, i[1] = {1.0f}, soc[1] = {99.0f};
    run(e, &now, 3, 1, v, i, soc, life);
    CHECK_EQ_INT(view.limits.phase, CHARGE_PHASE_FLOAT);         /* not back to bulk */
    CHECK(view.limits.cvl_v <= 54.0f + 1e-3f);
    CHECK(view.limits.ccl_a < 10.0f);                            /* currents ramp from 0 */
    /* A phase that cannot be is refused, the pack starts fresh. */
    struct battery_engine *f = make_engine(1, NULL, 1);
    saved.packs[0].charge.phase = 7;
    battery_engine_restore(f, &saved);
    now = 1000;
    run(f, &now, 2, 1, v, i, soc, life);
    CHECK_EQ_INT(view.limits.phase, CHARGE_PHASE_BULK);
    free(f);
    free(e);
}

static void test_external_cap(void)
{
    struct battery_engine *e = make_engine(1, NULL, 1);
    uint64_t now = 1000;
    uint32_t life[1] = {100};
    float v[1] = {3.30f}, i[1] = {-10.0f}, soc[1] = {60.0f};
    run(e, &now, 120, 1, v, i, soc, life);
    CHECK(view.limits.dcl_a > 20.0f);
    struct app_charge_cap cap = {.ccl_cap_a = -1.0f, .dcl_cap_a = 20.0f, .duration_s = 60};
    strcpy(cap.source, "mqtt");
    CHECK_EQ_INT(battery_engine_set_cap(e, &cap, now), GW_OK);
    run(e, &now, 1, 1, v, i, soc, life);
    CHECK_NEAR(view.limits.dcl_a, 20.0f, 1e-3f);
    CHECK(strstr(view.limits.dcl_reason, "external cap") != NULL);
    run(e, &now, 200, 1, v, i, soc, life); /* expired: back up, ramped */
    CHECK(view.limits.dcl_a > 20.0f);
    cap.dcl_cap_a = NAN;
    CHECK_EQ_INT(battery_engine_set_cap(e, &cap, now), GW_ERR_INVAL);
    free(e);
}

static void test_config_checks(void)
{
    struct battery_engine_config cfg;
    battery_engine_default_config(&cfg);
    struct battery_engine *e = calloc(1, sizeof *e);
    cfg.pack_count = 2;
    cfg.packs[0].id = 3;
    cfg.packs[1].id = 3;
    CHECK_EQ_INT(battery_engine_init(e, &cfg), GW_ERR_INVAL); /* duplicate ids */
    cfg.pack_count = 0;
    CHECK_EQ_INT(battery_engine_init(e, &cfg), GW_ERR_INVAL);
    cfg.pack_count = 17;
    CHECK_EQ_INT(battery_engine_init(e, &cfg), GW_ERR_INVAL);
    /* An unknown pack's samples are not taken. */
    battery_engine_default_config(&cfg);
    CHECK_EQ_INT(battery_engine_init(e, &cfg), GW_OK);
    struct bms_live_data s = sample(9, 3.3f, 0.0f, 50.0f, 1);
    CHECK_EQ_INT(battery_engine_feed_sample(e, &s, 1000), BATTERY_FEED_UNKNOWN_PACK);
    free(e);
}

/* bms.soc_full_percent / soc_empty_percent: what the inverter and people see is the BMS's SOC
 * with [empty, full] stretched to [0, 100]; the BMS's own figure stays beside it. */
static void test_soc_bounds_rescale_what_is_sent(void)
{
    struct battery_engine_config cfg;
    battery_engine_default_config(&cfg);
    cfg.packs[0].capacity_ah = 100.0f;
    cfg.soc_full_pct = 80.0f;
    cfg.soc_empty_pct = 10.0f;
    struct battery_engine *e = calloc(1, sizeof *e);
    CHECK(e != NULL);
    if (!e)
        return;
    CHECK_EQ_INT(battery_engine_init(e, &cfg), GW_OK);
    uint64_t now = 1000;
    uint32_t life[1] = {100};
    const float bms[] = {85.2f, 80.0f, 45.0f, 10.0f, 5.0f};
    const float shown[] = {100.0f, 100.0f, 50.0f, 0.0f, 0.0f};
    for (unsigned k = 0; k < sizeof bms / sizeof bms[0]; k++) {
        float v[1] = {3.30f}, i[1] = {-10.0f}, soc[1] = {bms[k]};
        run(e, &now, 2, 1, v, i, soc, life);
        CHECK_NEAR(view.soc_pct, shown[k], 0.01f);
        CHECK_NEAR(view.packs[0].soc_pct, shown[k], 0.01f);
        CHECK_NEAR(view.soc_bms_pct, bms[k], 0.01f);
    }
    /* Impossible bounds fall back to the BMS's own scale. */
    cfg.soc_full_pct = 40.0f;
    CHECK_EQ_INT(battery_engine_init(e, &cfg), GW_OK);
    float v[1] = {3.30f}, i[1] = {-10.0f}, soc[1] = {45.0f};
    run(e, &now, 2, 1, v, i, soc, life);
    CHECK_NEAR(view.soc_pct, 45.0f, 0.01f);
    free(e);
}

TEST_MAIN(TEST_CASE(test_one_pack_online_then_stale), TEST_CASE(test_two_packs_aggregate),
          TEST_CASE(test_dropout_keeps_the_bank_and_rejoin_ramps), TEST_CASE(test_below_min_online_stops_both_directions),
          TEST_CASE(test_implausible_samples_never_reach_outputs), TEST_CASE(test_frozen_bms_is_stale),
          TEST_CASE(test_no_cell_sensor_is_flagged_and_board_is_no_cell), TEST_CASE(test_energy_counters_and_restore),
          TEST_CASE(test_float_survives_a_restart), TEST_CASE(test_external_cap), TEST_CASE(test_config_checks),
          TEST_CASE(test_soc_bounds_rescale_what_is_sent))
