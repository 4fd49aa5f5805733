/* Battery model of the TinyBMS simulator: see battery_model.h.
 * Portable C11: no OS calls, no allocation, no globals. Time only advances through
 * battery_model_step(); every internal step is at most 1 s of model time. */
#include "battery_model.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define MAX_STEP_S 1.0f
#define MAX_DT_S 60.0f
/* Cells may be pushed a little beyond empty/full; the OCV curve extrapolates steeply there. */
#define SOC_FLOOR (-0.05f)
#define SOC_CEIL 1.05f
/* Hysteresis of the recoveries (the condition must be gone by this margin). */
#define OV_RECOVERY_MARGIN_MV 10.0f
#define UV_RECOVERY_MARGIN_MV 50.0f
#define CHARGE_RESTART_MARGIN_MV 150.0f
#define HEAT_RECOVERY_MARGIN_C 5.0f
#define LOW_TEMP_RECOVERY_MARGIN_C 2.0f
/* Current thresholds: a charge session starts above 1 A and ends at or below 0.1 A. */
#define FLOW_THRESHOLD_A 0.1f
#define SESSION_START_A 1.0f
/* Thermal model: the cell block (about 20 J/K per Ah of cells, cooling time constant 30 min)
 * and the BMS board (FETs and shunt 0.5 mOhm, 300 J/K, 5 min time constant). */
#define PACK_J_PER_K_PER_AH 20.0f
#define PACK_TAU_S 1800.0f
#define BMS_PATH_OHM 0.0005f
#define BMS_HEAT_J_PER_K 300.0f
#define BMS_TAU_S 300.0f
#define EXT2_OFFSET_C 0.3f

struct ocv_point {
    float soc;
    float v;
};

/* LiFePO4: steep knee below 10 %, long flat plateau, sharp rise above 97 %. */
static const struct ocv_point lfp_curve[] = {
    { 0.000f, 2.500f }, { 0.010f, 2.800f }, { 0.030f, 3.000f }, { 0.060f, 3.150f },
    { 0.100f, 3.210f }, { 0.150f, 3.250f }, { 0.200f, 3.270f }, { 0.300f, 3.285f },
    { 0.400f, 3.295f }, { 0.500f, 3.300f }, { 0.600f, 3.310f }, { 0.700f, 3.320f },
    { 0.800f, 3.330f }, { 0.900f, 3.340f }, { 0.950f, 3.350f }, { 0.970f, 3.380f },
    { 0.985f, 3.450f }, { 0.995f, 3.550f }, { 1.000f, 3.650f },
};

/* NMC: sloped curve 3.0..4.2 V. */
static const struct ocv_point nmc_curve[] = {
    { 0.00f, 3.000f }, { 0.05f, 3.300f }, { 0.10f, 3.450f }, { 0.20f, 3.550f },
    { 0.30f, 3.610f }, { 0.40f, 3.660f }, { 0.50f, 3.730f }, { 0.60f, 3.820f },
    { 0.70f, 3.900f }, { 0.80f, 3.980f }, { 0.90f, 4.080f }, { 1.00f, 4.200f },
};

/* Slopes (V per unit SOC) used beyond the ends of a curve. */
#define OCV_SLOPE_ABOVE_FULL 5.0f
#define OCV_SLOPE_BELOW_EMPTY 10.0f

float battery_model_ocv(enum battery_chemistry chem, float soc)
{
    const struct ocv_point *c = chem == BATTERY_NMC ? nmc_curve : lfp_curve;
    size_t n = chem == BATTERY_NMC ? sizeof nmc_curve / sizeof nmc_curve[0]
                                   : sizeof lfp_curve / sizeof lfp_curve[0];
    if (!(soc == soc))
        soc = 0.0f;
    if (soc <= c[0].soc)
        return c[0].v + (soc - c[0].soc) * OCV_SLOPE_BELOW_EMPTY;
    if (soc >= c[n - 1].soc)
        return c[n - 1].v + (soc - c[n - 1].soc) * OCV_SLOPE_ABOVE_FULL;
    for (size_t i = 1; i < n; i++) {
        if (soc <= c[i].soc) {
            float t = (soc - c[i - 1].soc) / (c[i].soc - c[i - 1].soc);
            return c[i - 1].v + t * (c[i].v - c[i - 1].v);
        }
    }
    return c[n - 1].v;
}

/* xorshift32: deterministic, portable spread from the seed. */
static uint32_t rng_next(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

/* Roughly normal (sum of four uniforms), mean 0, sd 1, clamped to +-3. */
static float rng_gauss(uint32_t *state)
{
    float sum = 0.0f;
    for (int i = 0; i < 4; i++)
        sum += (float)(rng_next(state) >> 8) / 16777216.0f - 0.5f;
    float g = sum * 1.7320508f; /* sd of a sum of 4 U(-0.5,0.5) is 1/sqrt(3) */
    if (g > 3.0f)
        g = 3.0f;
    if (g < -3.0f)
        g = -3.0f;
    return g;
}

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void battery_model_default_config(struct battery_model_config *cfg, enum battery_chemistry chem)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->cells = 16;
    cfg->chemistry = (uint8_t)chem;
    cfg->capacity_ah = 280.0f;
    cfg->capacity_spread = 0.02f;
    cfg->resistance_mohm = 0.25f;
    cfg->resistance_spread = 0.10f;
    cfg->initial_soc = 0.5f;
    cfg->initial_soc_spread = 0.0f;
    cfg->ambient_c = 25.0f;
    cfg->seed = 1;
    if (chem == BATTERY_NMC) {
        cfg->over_voltage_cutoff_mv = 4200;
        cfg->under_voltage_cutoff_mv = 3000;
        cfg->fully_charged_mv = 4150;
        cfg->early_balancing_mv = 4000;
    } else {
        cfg->over_voltage_cutoff_mv = 3650;
        cfg->under_voltage_cutoff_mv = 2800;
        cfg->fully_charged_mv = 3650;
        cfg->early_balancing_mv = 3400;
    }
    cfg->allowed_disbalance_mv = 15;
    cfg->discharge_overcurrent_a = 200;
    cfg->charge_overcurrent_a = 150;
    cfg->over_heat_cutoff_c = 60;
    cfg->low_temp_charge_cutoff_c = 0;
    cfg->balance_current_a = 0.06f;
}

static bool config_valid(const struct battery_model_config *cfg)
{
    return cfg->cells >= 4 && cfg->cells <= BATTERY_MODEL_MAX_CELLS &&
           cfg->chemistry <= BATTERY_NMC && cfg->capacity_ah >= 0.1f &&
           cfg->capacity_ah <= 655.0f && cfg->capacity_spread >= 0.0f &&
           cfg->capacity_spread <= 0.3f && cfg->resistance_mohm > 0.0f &&
           cfg->resistance_mohm <= 100.0f && cfg->resistance_spread >= 0.0f &&
           cfg->resistance_spread <= 0.5f && cfg->initial_soc >= 0.0f &&
           cfg->initial_soc <= 1.0f && cfg->initial_soc_spread >= 0.0f &&
           cfg->initial_soc_spread <= 0.5f && cfg->ambient_c >= -40.0f &&
           cfg->ambient_c <= 80.0f && cfg->balance_current_a >= 0.0f &&
           cfg->balance_current_a <= 5.0f && cfg->over_voltage_cutoff_mv > 0 &&
           cfg->under_voltage_cutoff_mv < cfg->over_voltage_cutoff_mv;
}

float battery_model_cell_ocv(const struct battery_model *m, unsigned cell)
{
    if (!m || cell >= m->cfg.cells || cell >= BATTERY_MODEL_MAX_CELLS)
        return 0.0f;
    double q = m->cell_charge_precise_ah[cell];
    if ((float)q != m->cell_charge_ah[cell])
        q = m->cell_charge_ah[cell];
    float soc = (float)(q / m->cell_capacity_ah[cell]);
    return battery_model_ocv((enum battery_chemistry)m->cfg.chemistry, soc);
}

/* Current that actually flows given what the source/load asks and the switch states. */
static float flowing_current(const struct battery_model *m, float requested_a)
{
    if (requested_a > 0.0f && !m->charge_enabled)
        return 0.0f;
    if (requested_a < 0.0f && !m->discharge_enabled)
        return 0.0f;
    return requested_a;
}

static void update_terminal_voltages(struct battery_model *m)
{
    for (unsigned i = 0; i < m->cfg.cells; i++)
        m->cell_voltage_v[i] = battery_model_cell_ocv(m, i) + m->current_a * m->cell_resistance_ohm[i] +
                               m->cell_polar_v[i];
}

/* The RC branch follows current x polarisation_ohm with its time constant (first order). */
static void update_polarisation(struct battery_model *m, float dt_s)
{
    if (!(m->polarisation_tau_s > 0.0f) || !(m->polarisation_ohm > 0.0f))
        return;
    float a = dt_s / m->polarisation_tau_s;
    if (a > 1.0f)
        a = 1.0f;
    for (unsigned i = 0; i < m->cfg.cells; i++)
        m->cell_polar_v[i] += (m->current_a * m->polarisation_ohm - m->cell_polar_v[i]) * a;
}

static void update_switches(struct battery_model *m)
{
    m->charge_enabled = !(m->over_voltage_active || m->charge_oc_active || m->over_heat_active ||
                          m->low_temp_charge_active || m->charge_done);
    m->discharge_enabled = !(m->under_voltage_active || m->discharge_oc_active || m->over_heat_active);
    m->fault = m->over_voltage_active || m->under_voltage_active || m->discharge_oc_active ||
               m->charge_oc_active || m->over_heat_active;
}

int battery_model_init(struct battery_model *m, const struct battery_model_config *cfg)
{
    if (!m || !cfg || !config_valid(cfg))
        return -1;
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->rng_state = cfg->seed ? cfg->seed * 2654435761u : 0x9E3779B9u;
    if (!m->rng_state)
        m->rng_state = 0x9E3779B9u;
    for (unsigned i = 0; i < cfg->cells; i++) {
        float cap = cfg->capacity_ah * (1.0f + cfg->capacity_spread * rng_gauss(&m->rng_state));
        float r = cfg->resistance_mohm * 0.001f *
                  (1.0f + cfg->resistance_spread * rng_gauss(&m->rng_state));
        /* The relative spread shrinks towards empty and full so that no cell starts pinned
         * at 0 or 100 % (at 50 % SOC a spread of 0.02 gives a 1 % sd between cells). */
        float soc0 = cfg->initial_soc;
        float soc = soc0 + cfg->initial_soc_spread * rng_gauss(&m->rng_state) * 2.0f * soc0 * (1.0f - soc0);
        m->cell_capacity_ah[i] = cap > 0.01f ? cap : 0.01f;
        m->cell_resistance_ohm[i] = r > 1e-6f ? r : 1e-6f;
        m->cell_charge_ah[i] = clampf(soc, 0.0f, 1.0f) * m->cell_capacity_ah[i];
        m->cell_charge_precise_ah[i] = m->cell_charge_ah[i];
    }
    m->soc_ah = (double)cfg->initial_soc * cfg->capacity_ah;
    m->temp_pack_c = cfg->ambient_c;
    m->temp_internal_c = cfg->ambient_c;
    m->temp_ext_c[0] = cfg->ambient_c;
    m->temp_ext_c[1] = cfg->ambient_c + EXT2_OFFSET_C;
    m->ext_sensor_connected[0] = true;
    m->ext_sensor_connected[1] = false; /* the simulator's default: ext2 absent */
    m->soh = 1.0f;
    m->recovery_s = 5;
    m->min_temp_c = cfg->ambient_c;
    m->max_temp_c = cfg->ambient_c;
    update_switches(m);
    update_terminal_voltages(m);
    battery_model_log_event(m, 0x61); /* system started */
    return 0;
}

void battery_model_log_event(struct battery_model *m, uint8_t id)
{
    if (!m)
        return;
    if (m->event_count >= BATTERY_MODEL_EVENT_RING) {
        memmove(&m->events[0], &m->events[1], sizeof m->events[0] * (BATTERY_MODEL_EVENT_RING - 1));
        m->event_count = BATTERY_MODEL_EVENT_RING - 1;
    }
    m->events[m->event_count].timestamp_s = (uint32_t)m->lifetime_s;
    m->events[m->event_count].id = id;
    m->event_count++;
    m->event_total++;
}

static void temperature_extremes(const struct battery_model *m, float *tmin, float *tmax)
{
    float lo = m->temp_internal_c, hi = m->temp_internal_c;
    for (int s = 0; s < 2; s++) {
        if (!m->ext_sensor_connected[s])
            continue;
        if (m->temp_ext_c[s] < lo)
            lo = m->temp_ext_c[s];
        if (m->temp_ext_c[s] > hi)
            hi = m->temp_ext_c[s];
    }
    *tmin = lo;
    *tmax = hi;
}

/* One protection: trips when `tripped`, recovers after recovery_s of `gone`. */
static void protection(struct battery_model *m, bool *active, float *clear_s, bool tripped,
                       bool gone, float dt_s, uint8_t trip_event, uint8_t recover_event,
                       uint16_t *counter)
{
    if (!*active) {
        if (tripped) {
            *active = true;
            *clear_s = 0.0f;
            if (counter && *counter < UINT16_MAX)
                (*counter)++;
            battery_model_log_event(m, trip_event);
        }
        return;
    }
    if (!gone) {
        *clear_s = 0.0f;
        return;
    }
    *clear_s += dt_s;
    if (*clear_s >= (float)m->recovery_s) {
        *active = false;
        *clear_s = 0.0f;
        battery_model_log_event(m, recover_event);
    }
}

static void evaluate_protections(struct battery_model *m, float dt_s)
{
    const struct battery_model_config *c = &m->cfg;
    unsigned idx;
    float max_mv = battery_model_max_cell_v(m, &idx) * 1000.0f;
    float min_mv = battery_model_min_cell_v(m, &idx) * 1000.0f;
    float tmin, tmax;
    temperature_extremes(m, &tmin, &tmax);
    float i = m->current_a;

    bool was_ov = m->over_voltage_active;
    protection(m, &m->over_voltage_active, &m->ov_clear_s, max_mv > c->over_voltage_cutoff_mv,
               max_mv < c->over_voltage_cutoff_mv - OV_RECOVERY_MARGIN_MV, dt_s, 0x03, 0x79,
               &m->over_voltage_count);
    if (!was_ov && m->over_voltage_active) {
        /* A cell over the cutoff means the pack is full: the BMS re-bases its counter. */
        m->fully_charged = true;
        m->soc_ah = c->capacity_ah;
    }
    bool was_uv = m->under_voltage_active;
    protection(m, &m->under_voltage_active, &m->uv_clear_s, min_mv < c->under_voltage_cutoff_mv,
               min_mv > c->under_voltage_cutoff_mv + UV_RECOVERY_MARGIN_MV, dt_s, 0x02, 0x7B,
               &m->under_voltage_count);
    if (!was_uv && m->under_voltage_active)
        m->soc_ah = 0.0;
    protection(m, &m->discharge_oc_active, &m->dis_oc_clear_s,
               -i > (float)c->discharge_overcurrent_a, true, dt_s, 0x05, 0x77, &m->discharge_oc_count);
    protection(m, &m->charge_oc_active, &m->chg_oc_clear_s, i > (float)c->charge_overcurrent_a,
               true, dt_s, 0x06, 0x76, &m->charge_oc_count);
    protection(m, &m->over_heat_active, &m->heat_clear_s, tmax > (float)c->over_heat_cutoff_c,
               tmax < (float)c->over_heat_cutoff_c - HEAT_RECOVERY_MARGIN_C, dt_s, 0x04, 0x73,
               &m->over_heat_count);
    protection(m, &m->low_temp_charge_active, &m->low_temp_clear_s,
               m->requested_current_a > FLOW_THRESHOLD_A && tmin < (float)c->low_temp_charge_cutoff_c,
               tmin > (float)c->low_temp_charge_cutoff_c + LOW_TEMP_RECOVERY_MARGIN_C, dt_s, 0x37,
               0x74, NULL);

    /* End of charge: the first cell at the fully-charged voltage stops the charger. */
    if (!m->charge_done && !m->over_voltage_active && i > FLOW_THRESHOLD_A &&
        max_mv >= c->fully_charged_mv) {
        m->charge_done = true;
        m->fully_charged = true;
        m->soc_ah = c->capacity_ah;
        if (m->full_charge_count < UINT16_MAX)
            m->full_charge_count++;
        battery_model_log_event(m, 0x63);
    } else if (m->charge_done && max_mv < c->fully_charged_mv - CHARGE_RESTART_MARGIN_MV) {
        m->charge_done = false;
    }
    if (m->fully_charged && m->soc_ah < 0.98 * c->capacity_ah)
        m->fully_charged = false;
}

static void update_balancing(struct battery_model *m)
{
    unsigned idx;
    float min_mv = battery_model_min_cell_v(m, &idx) * 1000.0f;
    uint16_t bits = 0;
    for (unsigned i = 0; i < m->cfg.cells; i++) {
        float mv = m->cell_voltage_v[i] * 1000.0f;
        if (mv > m->cfg.early_balancing_mv && mv - min_mv > m->cfg.allowed_disbalance_mv)
            bits |= (uint16_t)(1u << i);
    }
    m->balancing_decision_bits = bits;
    /* Bleeding pauses during a discharge (the TinyBMS balances while charging or idle). */
    m->balancing_bits = m->current_a < -FLOW_THRESHOLD_A ? 0 : bits;
}

static void update_statistics(struct battery_model *m)
{
    unsigned idx;
    float diff = (battery_model_max_cell_v(m, &idx) - battery_model_min_cell_v(m, &idx)) * 1000.0f;
    if (diff > m->max_cell_diff_mv)
        m->max_cell_diff_mv = diff;
    if (m->current_a > m->max_charge_a)
        m->max_charge_a = m->current_a;
    if (-m->current_a > m->max_discharge_a)
        m->max_discharge_a = -m->current_a;
    float tmin, tmax;
    temperature_extremes(m, &tmin, &tmax);
    if (tmin < m->min_temp_c)
        m->min_temp_c = tmin;
    if (tmax > m->max_temp_c)
        m->max_temp_c = tmax;
    if (!m->charging_session && m->current_a > SESSION_START_A) {
        m->charging_session = true;
        if (m->charging_count < UINT16_MAX)
            m->charging_count++;
        battery_model_log_event(m, 0x62);
    } else if (m->charging_session && m->current_a <= FLOW_THRESHOLD_A) {
        m->charging_session = false;
    }
}

static void substep(struct battery_model *m, float dt_s)
{
    const struct battery_model_config *c = &m->cfg;
    m->current_a = flowing_current(m, m->requested_current_a);
    float i = m->current_a;
    float hours = dt_s / 3600.0f;

    /* Coulomb counting, per cell (balancing bleeds the cells marked at the last step). */
    for (unsigned k = 0; k < c->cells; k++) {
        double q = m->cell_charge_precise_ah[k];
        if ((float)q != m->cell_charge_ah[k])
            q = m->cell_charge_ah[k]; /* written from outside (scenario, set_cell_ocv) */
        q += (double)i * hours;
        if (m->balancing_bits & (1u << k))
            q -= (double)c->balance_current_a * hours;
        q -= (double)m->cell_leak_a[k] * hours;
        double lo = (double)SOC_FLOOR * m->cell_capacity_ah[k];
        double hi = (double)SOC_CEIL * m->cell_capacity_ah[k];
        q = q < lo ? lo : q > hi ? hi : q;
        m->cell_charge_precise_ah[k] = q;
        m->cell_charge_ah[k] = (float)q;
    }
    m->soc_ah += (double)i * hours;
    if (m->soc_ah < 0.0)
        m->soc_ah = 0.0;
    if (m->soc_ah > c->capacity_ah)
        m->soc_ah = c->capacity_ah;

    /* Temperatures: I^2 R heating, first-order cooling to ambient. */
    float r_pack = 0.0f;
    for (unsigned k = 0; k < c->cells; k++)
        r_pack += m->cell_resistance_ohm[k];
    float pack_heat = PACK_J_PER_K_PER_AH * c->capacity_ah * c->cells;
    m->temp_pack_c += (i * i * r_pack / pack_heat - (m->temp_pack_c - c->ambient_c) / PACK_TAU_S) * dt_s +
                      m->heater_c_per_s * dt_s;
    m->temp_internal_c += (i * i * BMS_PATH_OHM / BMS_HEAT_J_PER_K -
                           (m->temp_internal_c - c->ambient_c) / BMS_TAU_S) * dt_s;
    m->temp_ext_c[0] = m->temp_pack_c;
    m->temp_ext_c[1] = m->temp_pack_c + EXT2_OFFSET_C;

    update_polarisation(m, dt_s);
    update_terminal_voltages(m);
    float pack_v = battery_model_pack_voltage(m);
    if (i > 0.0f)
        m->energy_in_wh += (double)(pack_v * i * hours);
    else
        m->energy_out_wh += (double)(-pack_v * i * hours);
    m->lifetime_s += dt_s;

    evaluate_protections(m, dt_s);
    update_switches(m);
    /* The switches may just have opened: report what flows now. */
    m->current_a = flowing_current(m, m->requested_current_a);
    update_terminal_voltages(m);
    update_balancing(m);
    update_statistics(m);
}

void battery_model_step(struct battery_model *m, float current_a, float dt_s)
{
    if (!m)
        return;
    if (!(current_a == current_a))
        current_a = 0.0f;
    m->requested_current_a = clampf(current_a, -5000.0f, 5000.0f);
    if (!(dt_s > 0.0f)) {
        substep(m, 0.0f);
        return;
    }
    if (dt_s > MAX_DT_S)
        dt_s = MAX_DT_S;
    while (dt_s > 0.0f) {
        float h = dt_s > MAX_STEP_S ? MAX_STEP_S : dt_s;
        substep(m, h);
        dt_s -= h;
    }
}

float battery_model_pack_voltage(const struct battery_model *m)
{
    float v = 0.0f;
    if (!m)
        return 0.0f;
    for (unsigned i = 0; i < m->cfg.cells; i++)
        v += m->cell_voltage_v[i];
    return v;
}

float battery_model_soc(const struct battery_model *m)
{
    if (!m || m->cfg.capacity_ah <= 0.0f)
        return 0.0f;
    return clampf((float)(m->soc_ah / m->cfg.capacity_ah), 0.0f, 1.0f);
}

uint16_t battery_model_status(const struct battery_model *m)
{
    if (!m)
        return 0x9B;
    if (m->fault)
        return 0x9B;
    if (m->current_a > FLOW_THRESHOLD_A)
        return 0x91;
    if (m->current_a < -FLOW_THRESHOLD_A)
        return 0x93;
    if (m->fully_charged)
        return 0x92;
    return 0x97;
}

float battery_model_min_cell_v(const struct battery_model *m, unsigned *index)
{
    unsigned best = 0;
    if (!m || m->cfg.cells == 0) {
        if (index)
            *index = 0;
        return 0.0f;
    }
    for (unsigned i = 1; i < m->cfg.cells; i++)
        if (m->cell_voltage_v[i] < m->cell_voltage_v[best])
            best = i;
    if (index)
        *index = best;
    return m->cell_voltage_v[best];
}

float battery_model_max_cell_v(const struct battery_model *m, unsigned *index)
{
    unsigned best = 0;
    if (!m || m->cfg.cells == 0) {
        if (index)
            *index = 0;
        return 0.0f;
    }
    for (unsigned i = 1; i < m->cfg.cells; i++)
        if (m->cell_voltage_v[i] > m->cell_voltage_v[best])
            best = i;
    if (index)
        *index = best;
    return m->cell_voltage_v[best];
}

void battery_model_set_cell_ocv(struct battery_model *m, unsigned cell, float ocv_v)
{
    if (!m || cell >= m->cfg.cells || !(ocv_v == ocv_v))
        return;
    enum battery_chemistry chem = (enum battery_chemistry)m->cfg.chemistry;
    /* The curve is monotonic: bisect the SOC that gives ocv_v. */
    float lo = SOC_FLOOR, hi = SOC_CEIL;
    for (int it = 0; it < 60; it++) {
        float mid = 0.5f * (lo + hi);
        if (battery_model_ocv(chem, mid) < ocv_v)
            lo = mid;
        else
            hi = mid;
    }
    m->cell_charge_ah[cell] = 0.5f * (lo + hi) * m->cell_capacity_ah[cell];
    m->cell_charge_precise_ah[cell] = m->cell_charge_ah[cell];
    update_terminal_voltages(m);
}

void battery_model_set_soc(struct battery_model *m, float soc)
{
    if (!m || !(soc == soc))
        return;
    m->soc_ah = (double)clampf(soc, 0.0f, 1.0f) * m->cfg.capacity_ah;
}

void battery_model_clear_events(struct battery_model *m)
{
    if (!m)
        return;
    memset(m->events, 0, sizeof m->events);
    m->event_count = 0;
}

void battery_model_clear_statistics(struct battery_model *m)
{
    if (!m)
        return;
    m->max_discharge_a = 0.0f;
    m->max_charge_a = 0.0f;
    m->under_voltage_count = 0;
    m->over_voltage_count = 0;
    m->discharge_oc_count = 0;
    m->charge_oc_count = 0;
    m->over_heat_count = 0;
    m->charging_count = 0;
    m->full_charge_count = 0;
    m->max_cell_diff_mv = 0.0f;
    float tmin, tmax;
    temperature_extremes(m, &tmin, &tmax);
    m->min_temp_c = tmin;
    m->max_temp_c = tmax;
    m->stats_cleared_s = (uint32_t)m->lifetime_s;
}

void battery_model_reset_bms(struct battery_model *m)
{
    if (!m)
        return;
    m->over_voltage_active = m->under_voltage_active = false;
    m->discharge_oc_active = m->charge_oc_active = false;
    m->over_heat_active = m->low_temp_charge_active = false;
    m->charge_done = false;
    m->ov_clear_s = m->uv_clear_s = m->dis_oc_clear_s = 0.0f;
    m->chg_oc_clear_s = m->heat_clear_s = m->low_temp_clear_s = 0.0f;
    update_switches(m);
    battery_model_log_event(m, 0x61);
    m->requested_current_a = 0.0f; /* the load is re-applied by the next step */
    substep(m, 0.0f);
}
