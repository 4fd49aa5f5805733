/* Closed loop: the simulator's battery model (16-cell LFP, imbalanced cells) + charge control +
 * a Victron-like charger/inverter that follows CVL/CCL/DCL, over five simulated days at 1 s steps:
 * four sunny days (the last with a heavy evening load), then an overcast day that empties the
 * battery. The cells start with a SOC and capacity spread; the balancer bleeds 0.5 A (an
 * active balancer: the TinyBMS's own 60 mA would need weeks to fix the spread the test seeds).
 *
 * Asserts: no cell reaches the over-voltage cutoff (the BMS never trips), the battery reaches
 * full, absorbs and floats, discharge stops (DCL 0) before the under-voltage cutoff (the BMS
 * never trips there either), and the limits change rarely (printed per hour). */
#include "battery_model.h"
#include "charge_control.h"
#include "gw_config.h"
#include "gw_error.h"
#include "test.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DAYS 5
#define STEP_S 1u
#define SOLAR_PEAK_A 120.0f   /* MPPT output at noon on a clear day, in battery amps */
#define RESIDUAL_A 0.5f       /* a MultiPlus still pushes this at CCL 0 */
#define CHARGER_GAIN_A_PER_V 50.0f /* voltage regulation: current tapers as V approaches CVL */

/* Simulated environment. */
struct world {
    struct battery_model bm;
    struct charge_control cc;
    struct bms_settings settings;
    uint32_t cloud_state;
    float cloud_factor;
};

static float hour_of(uint64_t t_s) { return (float)(t_s % 86400u) / 3600.0f; }
static unsigned day_of(uint64_t t_s) { return (unsigned)(t_s / 86400u); }
static bool overcast_day(unsigned day) { return day >= 4; }
/* From the evening of day 3 on, a heavy evening load. */
static bool heavy_evening(unsigned day) { return day >= 3; }

/* Solar current available (A): half-sine 7:00..19:00, clouds drawn per 10 minutes. */
static float solar_a(struct world *w, uint64_t t_s)
{
    if (t_s % 600u == 0) {
        w->cloud_state = w->cloud_state * 1103515245u + 12345u;
        float r = (float)((w->cloud_state >> 16) & 0x7FFF) / 32768.0f;
        w->cloud_factor = r < 0.2f ? 0.3f + r : 1.0f; /* a passing cloud now and then */
    }
    float h = hour_of(t_s);
    if (h < 7.0f || h > 19.0f)
        return 0.0f;
    float s = SOLAR_PEAK_A * sinf((float)M_PI * (h - 7.0f) / 12.0f) * w->cloud_factor;
    return overcast_day(day_of(t_s)) ? s * 0.05f : s;
}

/* DC load (A): base load, morning and evening peaks, heavier on the overcast days. */
static float load_a(uint64_t t_s)
{
    float h = hour_of(t_s);
    float load = 3.0f;
    if (h >= 6.5f && h < 8.0f)
        load += 20.0f;
    if (h >= 18.0f && h < 22.0f)
        load += heavy_evening(day_of(t_s)) ? 60.0f : 30.0f;
    return load;
}

static void set_setting(struct bms_settings *s, unsigned reg, uint16_t value)
{
    s->valid = true;
    s->raw[reg - BMS_SETTINGS_FIRST] = value;
    s->present_mask |= 1ull << (reg - BMS_SETTINGS_FIRST);
}

/* What the UART side would decode from the BMS. */
static void sample(const struct battery_model *m, struct bms_live_data *d, struct bms_event_log *log,
                   uint64_t now_ms)
{
    memset(d, 0, sizeof *d);
    d->valid = true;
    d->timestamp_ms = now_ms;
    d->cell_count = m->cfg.cells;
    uint16_t lo = 0xFFFF, hi = 0;
    for (unsigned i = 0; i < m->cfg.cells; i++) {
        float mv10 = m->cell_voltage_v[i] * 10000.0f + 0.5f;
        uint16_t v = mv10 < 0.0f ? 0 : mv10 > 65535.0f ? 65535 : (uint16_t)mv10;
        d->cell_mv_x10[i] = v;
        if (v < lo) {
            lo = v;
            d->min_cell_index = (uint8_t)(i + 1);
        }
        if (v > hi) {
            hi = v;
            d->max_cell_index = (uint8_t)(i + 1);
        }
    }
    d->min_cell_mv = (uint16_t)(lo / 10);
    d->max_cell_mv = (uint16_t)(hi / 10);
    d->cell_spread_mv_x10 = (uint16_t)(hi - lo);
    d->pack_voltage_v = battery_model_pack_voltage(m);
    d->pack_current_a = m->current_a;
    d->temp_dc[BMS_TEMP_INTERNAL] = (int16_t)(m->temp_internal_c * 10.0f);
    d->temp_present[BMS_TEMP_INTERNAL] = true;
    for (unsigned s = 0; s < 2; s++) {
        d->temp_present[BMS_TEMP_EXT1 + s] = m->ext_sensor_connected[s];
        d->temp_dc[BMS_TEMP_EXT1 + s] = (int16_t)(m->temp_ext_c[s] * 10.0f);
    }
    d->soc_ppm = (uint32_t)(battery_model_soc(m) * 1e8f);
    d->soh_raw = 50000;
    d->soh_valid = true;
    d->online_status = battery_model_status(m);
    d->lifetime_s = (uint32_t)m->lifetime_s;
    memset(log, 0, sizeof *log);
    log->valid = true;
    log->count = m->event_count > BMS_EVENT_SLOTS ? BMS_EVENT_SLOTS : m->event_count;
    for (unsigned i = 0; i < log->count; i++) {
        log->events[i].timestamp_s = m->events[i].timestamp_s & 0xFFFFFFu;
        log->events[i].id = m->events[i].id;
    }
}

/* The charger/inverter: voltage-regulated towards CVL, limited by CCL (with a residual at 0),
 * the inverter sheds load beyond DCL. Returns the battery current it asks for (+ = charge). */
static float inverter_current(const struct charge_limits *lim, float pack_v, float solar, float load)
{
    float net = solar - load;
    float charge_room = CHARGER_GAIN_A_PER_V * (lim->cvl_v - pack_v);
    float ccl = lim->ccl_a > RESIDUAL_A ? lim->ccl_a : RESIDUAL_A;
    float upper = charge_room < ccl ? charge_room : ccl;
    if (upper < 0.0f)
        upper = 0.0f; /* above CVL the chargers stop; they do not discharge */
    float i = net < upper ? net : upper;
    if (i < 0.0f && -i > lim->dcl_a)
        i = -lim->dcl_a; /* DCL 0: inverter off, load unserved */
    return i;
}

static void test_closed_loop(void)
{
    static struct world w;
    memset(&w, 0, sizeof w);
    struct battery_model_config bc;
    battery_model_default_config(&bc, BATTERY_LFP);
    bc.seed = 7;
    bc.capacity_spread = 0.01f;
    bc.initial_soc = 0.45f;
    bc.initial_soc_spread = 0.01f;
    bc.balance_current_a = 0.5f;
    CHECK_EQ_INT(battery_model_init(&w.bm, &bc), 0);
    w.cloud_state = 12345u;
    w.cloud_factor = 1.0f;

    set_setting(&w.settings, 300, bc.fully_charged_mv);
    set_setting(&w.settings, 315, bc.over_voltage_cutoff_mv);
    set_setting(&w.settings, 316, bc.under_voltage_cutoff_mv);
    set_setting(&w.settings, 317, bc.discharge_overcurrent_a);
    set_setting(&w.settings, 318, bc.charge_overcurrent_a);
    set_setting(&w.settings, 320, (uint16_t)bc.low_temp_charge_cutoff_c);
    set_setting(&w.settings, 308, bc.allowed_disbalance_mv);

    struct gw_config_charge cfg;
    gw_config_charge_defaults(&cfg, GW_CHEM_LFP);
    CHECK_EQ_INT(charge_control_init(&w.cc, &cfg), GW_OK);

    static struct bms_live_data live;
    static struct bms_event_log log;
    struct charge_limits lim;
    memset(&lim, 0, sizeof lim);

    float max_cell = 0.0f, min_cell = 10.0f, max_soc = 0.0f, min_cvl = 1e9f;
    bool absorbed = false, floated = false, dcl_zero_by_cell = false;
    unsigned full_days = 0, last_full_day = 99;
    uint64_t float_s = 0, dcl_zero_s = 0;
    int rc_bad = 0;
    uint32_t changes_at_hour_start = 0, busiest_hour = 0;
    const uint64_t total_s = (uint64_t)DAYS * 86400u;
    bool verbose = getenv("GW_SIM_VERBOSE") != NULL;

    for (uint64_t t = 0; t < total_s; t += STEP_S) {
        uint64_t now_ms = t * 1000u;
        sample(&w.bm, &live, &log, now_ms);
        struct charge_inputs in = { &live, &w.settings, &log };
        if (charge_control_step(&w.cc, &in, now_ms, &lim) != GW_OK)
            rc_bad++;
        if (!(lim.cvl_v > 0.0f))
            rc_bad++;

        float i = inverter_current(&lim, live.pack_voltage_v, solar_a(&w, t), load_a(t));
        battery_model_step(&w.bm, i, (float)STEP_S);

        unsigned idx;
        float hi = battery_model_max_cell_v(&w.bm, &idx), lo = battery_model_min_cell_v(&w.bm, &idx);
        max_cell = hi > max_cell ? hi : max_cell;
        min_cell = lo < min_cell ? lo : min_cell;
        float soc = battery_model_soc(&w.bm);
        max_soc = soc > max_soc ? soc : max_soc;
        min_cvl = lim.cvl_v < min_cvl ? lim.cvl_v : min_cvl;
        if (soc >= 0.98f && lim.phase != CHARGE_PHASE_BULK && day_of(t) != last_full_day) {
            last_full_day = day_of(t);
            full_days++;
        }
        absorbed |= lim.phase == CHARGE_PHASE_ABSORPTION;
        if (lim.phase == CHARGE_PHASE_FLOAT) {
            floated = true;
            float_s += STEP_S;
        }
        if (lim.dcl_a == 0.0f) {
            dcl_zero_s += STEP_S;
            if (strncmp(lim.dcl_reason, "cell ", 5) == 0)
                dcl_zero_by_cell = true;
        }
        if (t % 3600u == 3599u) {
            uint32_t total = lim.cvl_changes + lim.ccl_changes + lim.dcl_changes;
            if (total - changes_at_hour_start > busiest_hour)
                busiest_hour = total - changes_at_hour_start;
            if (verbose)
                printf("hour d%u %02u: %u changes\n", day_of(t), (unsigned)hour_of(t),
                       total - changes_at_hour_start);
            changes_at_hour_start = total;
        }
        if (verbose && t % 1800u == 0)
            printf("d%u %05.2fh soc %5.1f%% V %6.2f I %7.1f cells %.3f..%.3f | %-10s CVL %6.2f (%s) "
                   "CCL %5.1f (%s) DCL %5.1f (%s)\n",
                   day_of(t), (double)hour_of(t), (double)(soc * 100.0f),
                   (double)live.pack_voltage_v, (double)w.bm.current_a, (double)lo, (double)hi,
                   charge_phase_name(lim.phase), (double)lim.cvl_v, lim.cvl_reason,
                   (double)lim.ccl_a, lim.ccl_reason, (double)lim.dcl_a, lim.dcl_reason);
    }

    double hours = (double)total_s / 3600.0;
    double per_hour = (double)(lim.cvl_changes + lim.ccl_changes + lim.dcl_changes) / hours;
    printf("closed loop: %u days, max cell %.3f V, min cell %.3f V, max SOC %.1f %%, min CVL %.2f V\n",
           DAYS, (double)max_cell, (double)min_cell, (double)(max_soc * 100.0f), (double)min_cvl);
    printf("closed loop: days reaching full %u, float %.1f h, DCL 0 for %.1f h\n", full_days,
           (double)float_s / 3600.0, (double)dcl_zero_s / 3600.0);
    printf("closed loop: changes CVL %u (%.2f/h), CCL %u (%.2f/h), DCL %u (%.2f/h), total %.2f/h\n",
           lim.cvl_changes, lim.cvl_changes / hours, lim.ccl_changes, lim.ccl_changes / hours,
           lim.dcl_changes, lim.dcl_changes / hours, per_hour);
    printf("closed loop: busiest hour %u changes\n", busiest_hour);
    printf("closed loop: BMS trips: over-voltage %u, under-voltage %u\n",
           (unsigned)w.bm.over_voltage_count, (unsigned)w.bm.under_voltage_count);

    CHECK_EQ_INT(rc_bad, 0);
    CHECK(max_cell < bc.over_voltage_cutoff_mv / 1000.0f);
    CHECK_EQ_INT(w.bm.over_voltage_count, 0);
    CHECK(max_soc >= 0.98f); /* 3.45 V/cell is 98.5 % on the model's OCV curve */
    CHECK(full_days >= 2);
    CHECK(absorbed);
    CHECK(floated);
    CHECK(dcl_zero_by_cell);        /* the overcast days emptied the battery ... */
    CHECK_EQ_INT(w.bm.under_voltage_count, 0); /* ... and DCL 0 came before the BMS cutoff */
    CHECK(min_cell > bc.under_voltage_cutoff_mv / 1000.0f);
    CHECK(per_hour < 60.0);
    CHECK(busiest_hour < 180); /* even while tapering: fewer than one change every 20 s */
}

TEST_MAIN(TEST_CASE(test_closed_loop))
