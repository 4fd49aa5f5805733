/* Charge control: CVL / CCL / DCL with phases, min() of every limit source, and slow dynamics.
 * docs/charge-control.md is the user-facing description; the constants below are the fixed
 * safety margins it documents. */
#include "charge_control.h"
#include "charge_internal.h"

#include "gw_error.h"
#include "gw_text.h"
#include "tinybms.h"

#include <float.h>
#include <stddef.h>
#include <string.h>

/* Cell-voltage margin kept below the BMS over-voltage cutoff (reg 315) for CVL and CCL, and
 * above the under-voltage cutoff (reg 316) for DCL: the limits act before the BMS trips. */
#define CUTOFF_MARGIN_V 0.05f
/* Target and cell limit stay this far below the BMS's fully-charged voltage (reg 300): a cell
 * reaching it makes the TinyBMS open its charge switch and report "fully charged". */
#define FULL_MARGIN_V 0.03f
/* A limit forced to 0 near a cutoff is released only this far from the cutoff (hysteresis). */
#define CUTOFF_RELEASE_V 0.10f
/* The under-voltage latch (DCL 0) is released only with the lowest cell this far above the
 * cutoff for UV_RELEASE_HOLD_MS without a break, and never before UV_MIN_LATCH_MS: a cell that
 * merely relaxes after the load stopped (polarisation, IR drop) stays below it, so the
 * inverter is not switched back on only to stop again under load minutes later. */
#define UV_RELEASE_V 0.20f
#define UV_RELEASE_HOLD_MS (300u * 1000u)
#define UV_MIN_LATCH_MS (600u * 1000u)
/* The excess hold on CVL is released when the highest cell is this far below cell_limit_v. */
#define EXCESS_RELEASE_V 0.02f
/* An excess-lowered CVL never goes below the present pack voltage minus this per cell: the
 * charger stops, the inverter is not asked to discharge the battery down to CVL. */
#define STOP_MARGIN_V_PER_CELL 0.005f
/* ... and never below cells x (float_cell_v - this): a sane absolute floor. */
#define FLOOR_BELOW_FLOAT_V 0.15f
/* While charging must stop, the held CVL follows the pack voltage down only while the pack is
 * not discharging faster than this fraction of max_discharge_a (at least STOP_FOLLOW_MIN_A):
 * a pack that lost charge to the loads is not recharged when they stop (the voltage is lowest
 * then), and a hard discharge (an inverter with feed-in that discharges the pack towards CVL,
 * as a GX given CVL 0 does) is not chased down. */
#define STOP_FOLLOW_DISCHARGE_FRACTION 0.25f
#define STOP_FOLLOW_MIN_A 2.0f
/* Absorption spread tolerance at least the BMS's allowed disbalance (reg 308) plus this. */
#define DISBALANCE_MARGIN_MV 5.0f
/* The pack "is at target" within this per cell. */
#define AT_TARGET_TOL_V_PER_CELL 0.005f
/* CVL rises (after an excess hold, after a config change) at most this fast. */
#define CVL_RISE_V_PER_CELL_S 0.0002f
/* An increase is only started when the target exceeds the value sent by this fraction of the
 * configured maximum (at least INCREASE_DEADBAND_MIN_A): a target that creeps up with the cell
 * voltages does not make the limit change every few seconds. Decreases have no deadband. */
#define INCREASE_DEADBAND_FRACTION 0.02f
#define INCREASE_DEADBAND_MIN_A 0.2f
/* After a decrease that comes from a table, an increase needs the target above the deadband
 * for this long without a break (no 8 <-> 10 A flapping at a breakpoint). */
#define TABLE_REVERSAL_HOLD_MS (600u * 1000u)
/* A fault with the hottest cell sensor this close to the over-heat cutoff (reg 319) is taken as
 * an over-temperature cutoff (the BMS recovers 5 degC below its cutoff). */
#define OVER_HEAT_NEAR_C 5.0f
/* Comparisons with thresholds accept half the 0.1 mV register resolution (float rounding). */
#define EPS_V 0.00005f
/* The current limits stay below the BMS over-current cutoffs by this fraction. */
#define BMS_OC_FRACTION 0.9f
/* Steps further apart than this (more than the slowest CAN live period, 60 s) mean the
 * controller was not stepped (process paused, clock jump): treated like a data gap. */
#define MAX_STEP_GAP_MS 65000u
/* Increases (CCL/DCL ramps and their delay, the CVL rise) count at most this much time per
 * step: a late step must not ramp across the time nobody watched. Steps are normally 1 s apart;
 * a caller stepping slower gets slower increases (the safe side). */
#define MAX_RAMP_DT_MS 2000u

/* ---- small numeric helpers (no libm: the core is freestanding-friendly) ----------------- */

static bool finite_f(float x) { return x == x && x <= FLT_MAX && x >= -FLT_MAX; }
static float min_f(float a, float b) { return a < b ? a : b; }
static float max_f(float a, float b) { return a > b ? a : b; }

static int32_t round_tenths(float v)
{
    float x = v * 10.0f;
    if (x > 2e9f)
        x = 2e9f;
    if (x < -2e9f)
        x = -2e9f;
    return (int32_t)(x >= 0.0f ? x + 0.5f : x - 0.5f);
}

static uint64_t elapsed_ms(uint64_t now_ms, uint64_t since_ms)
{
    return now_ms > since_ms ? now_ms - since_ms : 0;
}

/* Curve factor clamped to 0..1; a broken curve (NaN) gives 0, the safe answer. */
static float curve_factor(const struct gw_curve *c, float x)
{
    float f = charge_curve_eval(c, x);
    if (!finite_f(f) || f < 0.0f)
        return 0.0f;
    return f > 1.0f ? 1.0f : f;
}

/* ---- reason strings (the bounded text builder, no printf) ---------------------------------- */

static void reason_text(char *dst, const char *text)
{
    gw_text_copy(dst, CHARGE_REASON_LEN, text);
}

static void reason_num(char *dst, const char *prefix, float value, unsigned decimals,
                       const char *suffix)
{
    struct gw_text t;
    gw_text_init(&t, dst, CHARGE_REASON_LEN);
    gw_text_put_str(&t, prefix);
    gw_text_put_fixed(&t, value, decimals);
    gw_text_put_str(&t, suffix);
}

/* ---- configuration ------------------------------------------------------------------------- */

static bool in_range(float v, float lo, float hi) { return finite_f(v) && v >= lo && v <= hi; }

/* Replaces every out-of-range parameter by the chemistry default, so no config can make an
 * unsafe limit (a NaN target would otherwise give a NaN CVL). */
static void sanitize_config(struct gw_config_charge *c)
{
    if (c->chemistry != GW_CHEM_LFP && c->chemistry != GW_CHEM_NMC)
        c->chemistry = GW_CHEM_LFP;
    struct gw_config_charge def;
    gw_config_charge_defaults(&def, (enum gw_chemistry)c->chemistry);

    if (!in_range(c->target_cell_v, 2.0f, 4.5f))
        c->target_cell_v = def.target_cell_v;
    if (!in_range(c->float_cell_v, 2.0f, c->target_cell_v))
        c->float_cell_v = min_f(def.float_cell_v, c->target_cell_v);
    if (!in_range(c->cell_limit_v, c->target_cell_v, 4.5f))
        c->cell_limit_v = max_f(def.cell_limit_v, c->target_cell_v);
    if (!in_range(c->discharge_cell_v, 1.5f, 4.5f))
        c->discharge_cell_v = def.discharge_cell_v;
    if (!in_range(c->absorb_spread_mv, 0.0f, 1000.0f))
        c->absorb_spread_mv = def.absorb_spread_mv;
    if (!in_range(c->rebulk_spread_mv, c->absorb_spread_mv, 5000.0f))
        c->rebulk_spread_mv = max_f(def.rebulk_spread_mv, c->absorb_spread_mv);
    if (!in_range(c->float_ramp_mv_per_cell_s, 0.001f, 1000.0f))
        c->float_ramp_mv_per_cell_s = def.float_ramp_mv_per_cell_s;
    if (!in_range(c->rebulk_soc_percent, 0.0f, 100.0f))
        c->rebulk_soc_percent = def.rebulk_soc_percent;
    if (!in_range(c->max_charge_a, 0.0f, 3000.0f))
        c->max_charge_a = def.max_charge_a;
    if (!in_range(c->max_discharge_a, 0.0f, 3000.0f))
        c->max_discharge_a = def.max_discharge_a;
    if (!in_range(c->increase_ramp_a_per_s, 0.001f, 100000.0f))
        c->increase_ramp_a_per_s = def.increase_ramp_a_per_s;
    if (!in_range(c->zero_exit_a, 0.0f, 1000.0f))
        c->zero_exit_a = def.zero_exit_a;
    if (!in_range(c->no_cell_temp_charge_a, 0.0f, 3000.0f))
        c->no_cell_temp_charge_a = def.no_cell_temp_charge_a;
    if (c->increase_delay_s > 86400u)
        c->increase_delay_s = def.increase_delay_s;
    if (c->absorb_time_s > 7u * 86400u)
        c->absorb_time_s = def.absorb_time_s;
    if (c->max_top_time_s < 60u || c->max_top_time_s > 7u * 86400u)
        c->max_top_time_s = def.max_top_time_s;
}

int charge_control_init(struct charge_control *cc, const struct gw_config_charge *cfg)
{
    if (!cc || !cfg)
        return GW_ERR_INVAL;
    memset(cc, 0, sizeof *cc);
    cc->cfg = *cfg;
    sanitize_config(&cc->cfg);
    cc->phase = CHARGE_PHASE_BULK;
    cc->ccl.at_zero = true;
    cc->dcl.at_zero = true;
    return GW_OK;
}

int charge_control_set_config(struct charge_control *cc, const struct gw_config_charge *cfg)
{
    if (!cc || !cfg)
        return GW_ERR_INVAL;
    cc->cfg = *cfg;
    sanitize_config(&cc->cfg);
    return GW_OK;
}

int charge_control_set_cap(struct charge_control *cc, const struct app_charge_cap *cap,
                           uint64_t now_ms)
{
    if (!cc || !cap)
        return GW_ERR_INVAL;
    if (cap->ccl_cap_a != cap->ccl_cap_a || cap->dcl_cap_a != cap->dcl_cap_a)
        return GW_ERR_INVAL;
    if (cap->duration_s == 0 || (cap->ccl_cap_a < 0.0f && cap->dcl_cap_a < 0.0f)) {
        cc->cap_active = false;
        return GW_OK;
    }
    cc->cap_active = true;
    cc->cap_ccl_a = cap->ccl_cap_a;
    cc->cap_dcl_a = cap->dcl_cap_a;
    cc->cap_until_ms = now_ms + (uint64_t)cap->duration_s * 1000u;
    memset(cc->cap_source, 0, sizeof cc->cap_source);
    gw_text_copyn(cc->cap_source, sizeof cc->cap_source, cap->source, sizeof cap->source);
    return GW_OK;
}

int charge_control_get_state(const struct charge_control *cc, struct charge_control_state *out)
{
    if (!cc || !out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    out->phase = cc->phase;
    out->absorb_elapsed_ms = cc->absorb_elapsed_ms;
    out->top_elapsed_ms = cc->top_elapsed_ms;
    out->float_cvl_v = cc->float_cvl_v;
    out->cvl_v = cc->started ? cc->cvl_v : 0.0f;
    return GW_OK;
}

#define STATE_MAX_TIMER_MS (30ull * 24 * 3600 * 1000)
#define STATE_MAX_PACK_V 80.0f /* 16 cells x 5 V: above any chemistry we drive */

static bool state_voltage_ok(float v) { return finite_f(v) && v >= 0.0f && v <= STATE_MAX_PACK_V; }

int charge_control_set_state(struct charge_control *cc, const struct charge_control_state *st)
{
    if (!cc || !st)
        return GW_ERR_INVAL;
    if (st->phase > CHARGE_PHASE_FLOAT || st->absorb_elapsed_ms > STATE_MAX_TIMER_MS ||
        st->top_elapsed_ms > STATE_MAX_TIMER_MS || !state_voltage_ok(st->float_cvl_v) ||
        !state_voltage_ok(st->cvl_v))
        return GW_ERR_RANGE;
    cc->phase = st->phase;
    cc->absorb_elapsed_ms = st->absorb_elapsed_ms;
    cc->top_elapsed_ms = st->top_elapsed_ms;
    cc->float_cvl_v = st->float_cvl_v;
    if (st->cvl_v > 0.0f) {
        /* Resume as after a gap: CVL continues from where it was, currents ramp from 0. */
        cc->cvl_v = st->cvl_v;
        cc->started = true;
        cc->data_gap = true;
        cc->ccl = (struct charge_ramp){.at_zero = true};
        cc->dcl = (struct charge_ramp){.at_zero = true};
    }
    return GW_OK;
}

const char *charge_phase_name(uint8_t phase)
{
    switch (phase) {
    case CHARGE_PHASE_BULK: return "bulk";
    case CHARGE_PHASE_ABSORPTION: return "absorption";
    case CHARGE_PHASE_FLOAT: return "float";
    default: return "unknown";
    }
}

/* ---- inputs -------------------------------------------------------------------------------- */

/* What one step knows about the pack, derived once. */
struct pack_view {
    const struct bms_live_data *live;
    unsigned cells;
    float sum_v, max_cell_v, min_cell_v, spread_mv;
    float pack_v, soc_pct;
    bool have_temp;
    float temp_min_c, temp_max_c;
    /* BMS settings (has_* false = absent, ignored). */
    bool has_full, has_ov, has_uv, has_dis_oc, has_chg_oc, has_low_temp, has_restart,
        has_disbalance, has_over_heat;
    float full_cell_v, ov_cell_v, uv_cell_v, dis_oc_a, chg_oc_a, low_temp_c, restart_pct,
        disbalance_mv, over_heat_c;
};

static bool live_usable(const struct bms_live_data *live)
{
    if (!live || !live->valid || live->cell_count < BMS_MIN_CELLS || live->cell_count > BMS_MAX_CELLS)
        return false;
    for (unsigned i = 0; i < live->cell_count; i++)
        if (live->cell_mv_x10[i] == 0) /* an empty register is no 0 V cell */
            return false;
    return true;
}

static void build_view(const struct charge_inputs *in, struct pack_view *v)
{
    const struct bms_live_data *live = in->live;
    memset(v, 0, sizeof *v);
    v->live = live;
    v->cells = live->cell_count;
    v->min_cell_v = 1e9f;
    for (unsigned i = 0; i < v->cells; i++) {
        float c = bms_cell_v(live, i);
        v->sum_v += c;
        v->max_cell_v = max_f(v->max_cell_v, c);
        v->min_cell_v = min_f(v->min_cell_v, c);
    }
    v->spread_mv = (v->max_cell_v - v->min_cell_v) * 1000.0f;
    v->pack_v = (finite_f(live->pack_voltage_v) && live->pack_voltage_v > 0.0f)
                    ? live->pack_voltage_v : v->sum_v;
    v->soc_pct = bms_soc_percent(live);
    /* Cell temperatures: the external sensors only. The internal one measures the BMS board
     * (its FETs and shunt), not the cells: it never stands in for a cell temperature. */
    static const unsigned cell_sensors[] = { BMS_TEMP_EXT1, BMS_TEMP_EXT2 };
    for (size_t k = 0; k < sizeof cell_sensors / sizeof cell_sensors[0]; k++) {
        unsigned s = cell_sensors[k];
        if (!live->temp_present[s] || live->temp_dc[s] == BMS_TEMP_ABSENT_RAW)
            continue;
        float t = (float)live->temp_dc[s] / 10.0f;
        if (!v->have_temp || t < v->temp_min_c)
            v->temp_min_c = t;
        if (!v->have_temp || t > v->temp_max_c)
            v->temp_max_c = t;
        v->have_temp = true;
    }
    struct bms_pack_limits decoded;
    const struct bms_pack_limits *l = in->limits;
    if (!l && in->settings) {
        tinybms_pack_limits_decode(in->settings, &decoded);
        l = &decoded;
    }
    if (!l)
        return;
    if ((v->has_full = l->has_fully_charged))
        v->full_cell_v = l->fully_charged_cell_v;
    if ((v->has_ov = l->has_over_voltage))
        v->ov_cell_v = l->over_voltage_cell_v;
    if ((v->has_uv = l->has_under_voltage))
        v->uv_cell_v = l->under_voltage_cell_v;
    if ((v->has_dis_oc = l->has_discharge_overcurrent))
        v->dis_oc_a = l->discharge_overcurrent_a;
    if ((v->has_chg_oc = l->has_charge_overcurrent))
        v->chg_oc_a = l->charge_overcurrent_a;
    if ((v->has_low_temp = l->has_low_temp_charge))
        v->low_temp_c = l->low_temp_charge_c;
    if ((v->has_restart = l->has_charge_restart))
        v->restart_pct = l->charge_restart_pct;
    if ((v->has_disbalance = l->has_allowed_disbalance))
        v->disbalance_mv = l->allowed_disbalance_mv;
    if ((v->has_over_heat = l->has_over_heat))
        v->over_heat_c = l->over_heat_c;
}

/* Protections that name a cause (everything but the fault status and the sensor notice). */
#define PROT_CAUSES ((CHARGE_PROT_BLOCKS_CHARGE | CHARGE_PROT_BLOCKS_DISCHARGE) & \
                     ~(uint32_t)CHARGE_PROT_FAULT_UNEXPLAINED)

/* Status 0x9B says "fault", not which one, and the event log that names it is read about once a
 * minute. Without a cause in the log, the measurements against the BMS's own cutoffs give it
 * (the BMS trips at its cutoff and recovers with a margin, so "near" is the release band); with
 * none either the fault is unexplained, which blocks charging only (docs/charge-control.md). */
static uint32_t resolve_fault(uint32_t prot, const struct pack_view *v)
{
    if (!(prot & CHARGE_PROT_FAULT) || (prot & PROT_CAUSES))
        return prot;
    if (v->has_ov && v->max_cell_v + EPS_V >= v->ov_cell_v - CUTOFF_RELEASE_V)
        prot |= CHARGE_PROT_OVER_VOLTAGE;
    if (v->has_uv && v->min_cell_v - EPS_V <= v->uv_cell_v + CUTOFF_RELEASE_V)
        prot |= CHARGE_PROT_UNDER_VOLTAGE;
    if (v->has_over_heat && v->have_temp && v->temp_max_c >= v->over_heat_c - OVER_HEAT_NEAR_C)
        prot |= CHARGE_PROT_OVER_TEMP;
    if (v->has_low_temp && v->have_temp && v->temp_min_c <= v->low_temp_c)
        prot |= CHARGE_PROT_LOW_TEMP_CHARGE;
    if (!(prot & PROT_CAUSES))
        prot |= CHARGE_PROT_FAULT_UNEXPLAINED;
    return prot;
}

/* ---- CVL ----------------------------------------------------------------------------------- */

/* Target cell voltage after the BMS's bounds, with the reason when a bound won. */
static float bounded_target_cell_v(const struct charge_control *cc, const struct pack_view *v,
                                   char *reason)
{
    float target = cc->cfg.target_cell_v;
    reason_num(reason, "target ", target, 3, " V/cell");
    if (v->has_full && v->full_cell_v - FULL_MARGIN_V < target) {
        target = v->full_cell_v - FULL_MARGIN_V;
        reason_num(reason, "bms fully charged ", v->full_cell_v, 3, " V/cell - margin");
    }
    if (v->has_ov && v->ov_cell_v - CUTOFF_MARGIN_V < target) {
        target = v->ov_cell_v - CUTOFF_MARGIN_V;
        reason_num(reason, "bms over-voltage cutoff ", v->ov_cell_v, 3, " V - margin");
    }
    return target;
}

/* Rebulk evidence, per cell: the pack average below float_cell_v by this with the SOC under the
 * rebulk level, or by the deep value whatever the SOC says (a SOC stuck high). SOC alone is no
 * evidence: a BMS reset reads 0 % on a full pack. */
#define REBULK_BELOW_FLOAT_V 0.03f
#define REBULK_DEEP_BELOW_FLOAT_V 0.075f
/* ... and the evidence (or a spread above rebulk_spread_mv) must hold this long without a
 * break: a load peak, a cloud or a wrong reading does not restart a charge. */
#define REBULK_CONFIRM_MS (600u * 1000u)
/* Voltages say little under a large current (IR drop, polarisation): the evidence only counts
 * (and only breaks) while the pack current is within this fraction of the larger configured
 * maximum; in between the timer waits. */
#define REBULK_REST_FRACTION 0.1f

/* Cell voltage above which a cell's excess lowers CVL: cell_limit_v, bounded by the BMS cutoff
 * (reg 315) and fully-charged voltage (reg 300), never below the target. */
static float cell_limit(const struct charge_control *cc, const struct pack_view *v, float target_cell)
{
    float limit = cc->cfg.cell_limit_v;
    if (v->has_ov)
        limit = min_f(limit, v->ov_cell_v - CUTOFF_MARGIN_V);
    if (v->has_full)
        limit = min_f(limit, v->full_cell_v - FULL_MARGIN_V);
    return max_f(limit, target_cell);
}

/* Advances the phase machine. stop: charging must stop this step (no time at the top then);
 * limit: the cell limit (V). */
static void update_phase(struct charge_control *cc, const struct pack_view *v, float target_pack_v,
                         float float_pack_v, float limit, bool stop, uint64_t dt_ms)
{
    const struct gw_config_charge *c = &cc->cfg;
    float n = (float)v->cells;
    bool at_target = v->pack_v >= target_pack_v - AT_TARGET_TOL_V_PER_CELL * n;
    /* At the top: charging as high as allowed, at the target or with the highest cell held at
     * the limit by the excess rule (the pack cannot reach the target then). */
    bool at_top = !stop && (at_target || (cc->excess_hold && v->max_cell_v >= limit - EXCESS_RELEASE_V));
    uint64_t max_top_ms = (uint64_t)c->max_top_time_s * 1000u;
    /* The BMS does not balance below its allowed disbalance (register 308, 15 mV at least):
     * asking for a smaller spread would keep the pack in bulk for ever. */
    float spread_tol = c->absorb_spread_mv;
    if (v->has_disbalance && v->disbalance_mv + DISBALANCE_MARGIN_MV > spread_tol)
        spread_tol = v->disbalance_mv + DISBALANCE_MARGIN_MV;
    bool spread_ok = v->spread_mv <= spread_tol;

    float rebulk_soc = c->rebulk_soc_percent;
    if (v->has_restart && v->restart_pct > rebulk_soc)
        rebulk_soc = v->restart_pct; /* the BMS restarts charging there: follow it */
    float float_cell = float_pack_v / n, avg_cell = v->pack_v / n;
    bool discharged = (v->soc_pct < rebulk_soc && avg_cell < float_cell - REBULK_BELOW_FLOAT_V) ||
                      avg_cell < float_cell - REBULK_DEEP_BELOW_FLOAT_V;
    /* A spread rebulk once the top time is used up would only loop (bulk, cap, float...). */
    bool spread_wide = v->spread_mv > c->rebulk_spread_mv && cc->top_elapsed_ms < max_top_ms;
    /* The BMS says the pack is full (status 0x92): the charge is over, whatever the phase. */
    bool bms_full = v->live->online_status == BMS_STATUS_FULLY_CHARGED;
    bool evidence = !bms_full && cc->phase != CHARGE_PHASE_BULK && (discharged || spread_wide);
    float current = v->live->pack_current_a;
    float rest_a = REBULK_REST_FRACTION * max_f(c->max_charge_a, c->max_discharge_a);
    bool resting = !finite_f(current) || (current <= rest_a && current >= -rest_a);
    if (!evidence)
        cc->rebulk_evidence_ms = 0;
    else if (resting)
        cc->rebulk_evidence_ms += dt_ms;
    bool rebulk = cc->rebulk_evidence_ms >= REBULK_CONFIRM_MS;
    if (rebulk) {
        cc->rebulk_evidence_ms = 0;
        if (discharged)
            cc->top_elapsed_ms = 0; /* a new charge: a new top time */
    }
    if (bms_full && cc->phase != CHARGE_PHASE_FLOAT) {
        cc->phase = CHARGE_PHASE_FLOAT;
        /* The float ramp starts no higher than the pack: the chargers stop now. */
        float at_pack = v->pack_v - STOP_MARGIN_V_PER_CELL * n;
        float prev = cc->started ? cc->cvl_v : target_pack_v;
        cc->float_cvl_v = max_f(float_pack_v, min_f(min_f(prev, target_pack_v), at_pack));
    }

    if (at_top && cc->phase != CHARGE_PHASE_FLOAT)
        cc->top_elapsed_ms += dt_ms;
    if (cc->phase != CHARGE_PHASE_FLOAT && cc->top_elapsed_ms >= max_top_ms) {
        /* Balancing has had its time today: float (dbus-serialbattery's max voltage time). */
        cc->phase = CHARGE_PHASE_FLOAT;
        cc->float_cvl_v = min_f(cc->started ? cc->cvl_v : target_pack_v, target_pack_v);
    }

    switch (cc->phase) {
    case CHARGE_PHASE_BULK:
        if (at_target && spread_ok) {
            cc->phase = CHARGE_PHASE_ABSORPTION;
            cc->absorb_elapsed_ms = 0;
        }
        break;
    case CHARGE_PHASE_ABSORPTION:
        if (rebulk) {
            cc->phase = CHARGE_PHASE_BULK;
            break;
        }
        if (!spread_ok)
            cc->absorb_elapsed_ms = 0;  /* the timer restarts when the spread grows */
        else if (at_target)
            cc->absorb_elapsed_ms += dt_ms; /* paused (not reset) while below target */
        if (cc->absorb_elapsed_ms >= (uint64_t)c->absorb_time_s * 1000u) {
            cc->phase = CHARGE_PHASE_FLOAT;
            cc->float_cvl_v = min_f(cc->cvl_v, target_pack_v);
        }
        break;
    case CHARGE_PHASE_FLOAT:
        /* Back to bulk; CVL rises from the float value at the rise limit. */
        if (rebulk)
            cc->phase = CHARGE_PHASE_BULK;
        break;
    default:
        cc->phase = CHARGE_PHASE_BULK;
        break;
    }
    if (cc->phase == CHARGE_PHASE_FLOAT) {
        float step = c->float_ramp_mv_per_cell_s / 1000.0f * n * (float)dt_ms / 1000.0f;
        cc->float_cvl_v = max_f(float_pack_v, min_f(cc->float_cvl_v, target_pack_v) - step);
    }
}

/* Charging must stop: CVL at the pack voltage (minus STOP_MARGIN_V_PER_CELL), so no charger
 * pushes current whatever it does with CCL (a MultiPlus keeps ~0.5 A at CCL 0, an MPPT with
 * feed-in ignores CCL). Held until charging may resume: it follows the pack down while the pack
 * rests (a pack that discharged is not recharged while, say, still frozen), never up, and never
 * below cells x discharge_cell_v (never 0, never a CVL that would ask an inverter to empty the
 * battery). Returns the held value; clears the hold when stop is false. */
static float stop_cvl(struct charge_control *cc, const struct pack_view *v, bool stop, float cvl)
{
    float n = (float)v->cells;
    if (!stop) {
        cc->stop_hold = false;
        return cvl;
    }
    float floor_v = n * cc->cfg.discharge_cell_v;
    float at_pack = max_f(floor_v, v->pack_v - STOP_MARGIN_V_PER_CELL * n);
    float current = v->live->pack_current_a;
    float follow_a = max_f(STOP_FOLLOW_MIN_A, STOP_FOLLOW_DISCHARGE_FRACTION * cc->cfg.max_discharge_a);
    bool resting = !finite_f(current) || current >= -follow_a;
    if (!cc->stop_hold) {
        float prev = cc->started ? cc->cvl_v : cvl;
        cc->stop_cvl_v = max_f(floor_v, min_f(prev, at_pack));
        cc->stop_hold = true;
    } else if (resting && at_pack < cc->stop_cvl_v) {
        cc->stop_cvl_v = at_pack;
    }
    return cc->stop_cvl_v;
}

/* CVL of this step before the upward rate limit; advances the phase machine. stop: charging
 * must stop (see stop_cvl). */
static float compute_cvl(struct charge_control *cc, const struct pack_view *v, uint64_t dt_ms,
                         bool stop, char *reason)
{
    const struct gw_config_charge *c = &cc->cfg;
    float n = (float)v->cells;
    float target_cell = bounded_target_cell_v(cc, v, reason);
    float float_cell = min_f(c->float_cell_v, target_cell);
    float target_pack = n * target_cell;
    float float_pack = n * float_cell;
    float limit = cell_limit(cc, v, target_cell);
    update_phase(cc, v, target_pack, float_pack, limit, stop, dt_ms);

    float cvl = target_pack;
    if (cc->phase == CHARGE_PHASE_FLOAT) {
        cvl = cc->float_cvl_v;
        if (cvl > float_pack + 0.001f)
            reason_num(reason, "float ramp to ", float_cell, 3, " V/cell");
        else
            reason_num(reason, "float ", float_cell, 3, " V/cell");
    }

    /* Cell excess: CVL = sum of cells - every cell's excess over the limit. Held (it only goes
     * down) until the highest cell is back under limit - EXCESS_RELEASE_V, so the loop does not
     * chatter around the limit; then the rise limit brings CVL back slowly. */
    float excess = 0.0f;
    for (unsigned i = 0; i < v->cells; i++) {
        float cell = bms_cell_v(v->live, i);
        if (cell > limit)
            excess += cell - limit;
    }
    if (excess > 0.0f) {
        float candidate = v->sum_v - excess;
        /* Floors: stop the charger, never ask the system to discharge the pack down to CVL;
         * and never below a sane absolute value. */
        float floor_v = max_f(v->pack_v - STOP_MARGIN_V_PER_CELL * n,
                              n * (float_cell - FLOOR_BELOW_FLOAT_V));
        candidate = max_f(candidate, floor_v);
        cc->excess_cvl_v = cc->excess_hold ? min_f(cc->excess_cvl_v, candidate) : candidate;
        cc->excess_hold = true;
    } else if (cc->excess_hold && v->max_cell_v < limit - EXCESS_RELEASE_V) {
        cc->excess_hold = false;
    }
    if (cc->excess_hold && cc->excess_cvl_v < cvl) {
        cvl = cc->excess_cvl_v;
        reason_num(reason, "cell excess, max ", v->max_cell_v, 3, " V");
    }

    float held = stop_cvl(cc, v, stop, cvl);
    if (stop && held <= cvl) {
        cvl = held;
        reason_num(reason, "charge stopped, hold ", held, 2, " V");
    }

    /* Hard upper bound last: whatever happened above, never charge past the BMS cutoff. */
    if (v->has_ov && cvl > n * (v->ov_cell_v - CUTOFF_MARGIN_V)) {
        cvl = n * (v->ov_cell_v - CUTOFF_MARGIN_V);
        reason_num(reason, "bms over-voltage cutoff ", v->ov_cell_v, 3, " V - margin");
    }
    if (!finite_f(cvl) || cvl <= 0.0f) { /* unreachable with a sanitised config; never 0 */
        cvl = n * float_cell;
        reason_text(reason, "fallback float");
    }
    return cvl;
}

/* ---- CCL / DCL ----------------------------------------------------------------------------- */

struct pick {
    float value;
    char *reason;
    bool table;                          /* the value comes from a table (curve) */
};

static void pick_min(struct pick *p, float value, const char *prefix, float num, unsigned decimals,
                     const char *suffix)
{
    if (!finite_f(value))
        value = 0.0f;
    if (value < 0.0f)
        value = 0.0f;
    if (value < p->value) {
        p->value = value;
        p->table = false;
        if (decimals == 0 && suffix == NULL)
            reason_text(p->reason, prefix);
        else
            reason_num(p->reason, prefix, num, decimals, suffix);
    }
}

/* pick_min for a table value: a decrease it causes is not reversed for a while (dynamics). */
static void pick_curve(struct pick *p, float value, const char *prefix, float num, unsigned decimals,
                       const char *suffix)
{
    float before = p->value;
    pick_min(p, value, prefix, num, decimals, suffix);
    if (p->value < before)
        p->table = true;
}

static void force_zero(struct pick *p, const char *text)
{
    p->table = false;
    p->value = 0.0f;
    reason_text(p->reason, text);
}

static void force_zero_num(struct pick *p, const char *prefix, float num, unsigned decimals,
                           const char *suffix)
{
    p->table = false;
    p->value = 0.0f;
    reason_num(p->reason, prefix, num, decimals, suffix);
}

static const char *protection_text(uint32_t bits)
{
    if (bits & CHARGE_PROT_FAULT_UNEXPLAINED) return "bms fault";
    if (bits & CHARGE_PROT_OVER_VOLTAGE) return "bms over-voltage cutoff";
    if (bits & CHARGE_PROT_UNDER_VOLTAGE) return "bms under-voltage cutoff";
    if (bits & CHARGE_PROT_OVER_TEMP) return "bms over-temperature cutoff";
    if (bits & CHARGE_PROT_LOW_TEMP) return "bms low temperature cutoff";
    if (bits & CHARGE_PROT_LOW_TEMP_CHARGE) return "bms low temp charge cutoff";
    if (bits & CHARGE_PROT_DISCHARGE_OC) return "bms discharge over-current";
    if (bits & CHARGE_PROT_CHARGE_OC) return "bms charge over-current";
    if (bits & CHARGE_PROT_SWITCH_ERROR) return "bms switch error";
    if (bits & CHARGE_PROT_FULLY_DISCHARGED) return "bms fully discharged";
    return "bms protection";
}

static void cap_text(const struct charge_control *cc, char *buf)
{
    struct gw_text t;
    gw_text_init(&t, buf, CHARGE_REASON_LEN);
    gw_text_put_str(&t, "external cap");
    if (cc->cap_source[0]) {
        gw_text_put_str(&t, " (");
        gw_text_put_strn(&t, cc->cap_source, sizeof cc->cap_source);
        gw_text_put_char(&t, ')');
    }
}

/* max x curve factor, rounded DOWN to steps of the increase deadband: a table value follows a
 * slowly moving cell voltage or temperature in a few steps instead of a new value every second
 * (rounding down keeps it on the safe side). */
static float curve_amps(float max_a, const struct gw_curve *curve, float x)
{
    float amps = max_a * curve_factor(curve, x);
    float step = max_f(INCREASE_DEADBAND_MIN_A, INCREASE_DEADBAND_FRACTION * max_a);
    float steps = amps / step + 1e-4f; /* 100 x 0.28 may come out as 27.99999 */
    if (steps < 0.0f || !finite_f(steps))
        return 0.0f;
    if (steps > 1e6f)
        return amps;
    return (float)(uint32_t)steps * step;
}

static float charge_target(struct charge_control *cc, const struct pack_view *v, uint32_t prot,
                           bool cap_on, char *reason, bool *from_table)
{
    const struct gw_config_charge *c = &cc->cfg;
    float max = c->max_charge_a;
    struct pick p = { max, reason, false };
    reason_text(reason, "config max");
    if (v->has_chg_oc)
        pick_min(&p, BMS_OC_FRACTION * v->chg_oc_a, "bms charge over-current", 0, 0, NULL);
    pick_curve(&p, curve_amps(max, &c->charge_by_cell_v, v->max_cell_v), "cell voltage ",
             v->max_cell_v, 2, " V");
    if (v->have_temp) {
        pick_curve(&p, curve_amps(max, &c->charge_by_temp, v->temp_min_c), "temperature ",
                 v->temp_min_c, 1, " °C");
        pick_curve(&p, curve_amps(max, &c->charge_by_temp, v->temp_max_c), "temperature ",
                 v->temp_max_c, 1, " °C");
    } else {
        /* Charging a cell of unknown temperature may plate lithium (below 0 degC): only the
         * configured safe current (the engine raises the alert). */
        pick_min(&p, c->no_cell_temp_charge_a, "no cell temperature sensor", 0, 0, NULL);
    }
    if (c->charge_by_soc.count)
        pick_curve(&p, curve_amps(max, &c->charge_by_soc, v->soc_pct), "soc ", v->soc_pct, 1, " %");
    if (cap_on && cc->cap_ccl_a >= 0.0f && cc->cap_ccl_a < p.value) {
        p.value = cc->cap_ccl_a;
        p.table = false;
        cap_text(cc, reason);
    }

    /* The BMS has switched charging off, or is about to: 0 with the reason. */
    if (v->has_ov) {
        if (v->max_cell_v + EPS_V >= v->ov_cell_v - CUTOFF_MARGIN_V)
            cc->ov_block = true;
        else if (v->max_cell_v < v->ov_cell_v - CUTOFF_RELEASE_V)
            cc->ov_block = false;
    } else {
        cc->ov_block = false;
    }
    if (cc->ov_block)
        force_zero_num(&p, "cell ", v->max_cell_v, 3, " V near cutoff");
    if (v->has_low_temp && v->have_temp && v->temp_min_c <= v->low_temp_c)
        force_zero_num(&p, "temperature ", v->temp_min_c, 1, " °C < charge cutoff");
    if (prot & CHARGE_PROT_BLOCKS_CHARGE)
        force_zero(&p, protection_text(prot & CHARGE_PROT_BLOCKS_CHARGE));
    *from_table = p.table;
    return p.value;
}

static float discharge_target(struct charge_control *cc, const struct pack_view *v, uint32_t prot,
                              bool cap_on, uint64_t dt_ms, char *reason, bool *from_table)
{
    const struct gw_config_charge *c = &cc->cfg;
    float max = c->max_discharge_a;
    struct pick p = { max, reason, false };
    reason_text(reason, "config max");
    if (v->has_dis_oc)
        pick_min(&p, BMS_OC_FRACTION * v->dis_oc_a, "bms discharge over-current", 0, 0, NULL);
    pick_curve(&p, curve_amps(max, &c->discharge_by_cell_v, v->min_cell_v), "cell voltage ",
             v->min_cell_v, 2, " V");
    if (v->have_temp) {
        pick_curve(&p, curve_amps(max, &c->discharge_by_temp, v->temp_min_c), "temperature ",
                 v->temp_min_c, 1, " °C");
        pick_curve(&p, curve_amps(max, &c->discharge_by_temp, v->temp_max_c), "temperature ",
                 v->temp_max_c, 1, " °C");
    }
    if (c->discharge_by_soc.count)
        pick_curve(&p, curve_amps(max, &c->discharge_by_soc, v->soc_pct), "soc ", v->soc_pct, 1,
                 " %");
    if (cap_on && cc->cap_dcl_a >= 0.0f && cc->cap_dcl_a < p.value) {
        p.value = cc->cap_dcl_a;
        p.table = false;
        cap_text(cc, reason);
    }

    if (v->has_uv) {
        if (v->min_cell_v - EPS_V <= v->uv_cell_v + CUTOFF_MARGIN_V) {
            if (!cc->uv_block)
                cc->uv_latched_ms = 0;
            cc->uv_block = true;
            cc->uv_release_ms = 0;
        } else if (cc->uv_block) {
            cc->uv_latched_ms += dt_ms;
            if (v->min_cell_v + EPS_V >= v->uv_cell_v + UV_RELEASE_V)
                cc->uv_release_ms += dt_ms;
            else
                cc->uv_release_ms = 0;
            if (cc->uv_release_ms >= UV_RELEASE_HOLD_MS && cc->uv_latched_ms >= UV_MIN_LATCH_MS)
                cc->uv_block = false;
        }
    } else {
        cc->uv_block = false;
    }
    if (cc->uv_block)
        force_zero_num(&p, "cell ", v->min_cell_v, 3, " V near cutoff");
    if (prot & CHARGE_PROT_BLOCKS_DISCHARGE)
        force_zero(&p, protection_text(prot & CHARGE_PROT_BLOCKS_DISCHARGE));
    *from_table = p.table;
    return p.value;
}

/* Decreases at once; increases wait increase_delay_s then ramp; 0 is left only when the target
 * exceeds zero_exit_a; an increase within the deadband is not started (nor finished, when the
 * target falls back into it while waiting). After a decrease that comes from a table
 * (from_table), an increase also needs the target above the deadband for
 * TABLE_REVERSAL_HOLD_MS without a break: a table value rounded to steps flips with a 1 mV
 * wiggle of the cell voltage. On the very first step the target is taken as is (no history: a
 * daemon restart must not switch an island inverter off for the delay). */
static float apply_dynamics(struct charge_ramp *r, const struct gw_config_charge *c, float max_a,
                            float target, bool from_table, bool first, uint64_t dt_ms, char *reason)
{
    uint64_t ramp_ms = dt_ms > MAX_RAMP_DT_MS ? MAX_RAMP_DT_MS : dt_ms;
    float dt_s = (float)ramp_ms / 1000.0f;
    float deadband = max_f(INCREASE_DEADBAND_MIN_A, INCREASE_DEADBAND_FRACTION * max_a);
    if (first) {
        r->value_a = target;
        r->at_zero = target <= 0.0f;
        r->waiting = r->ramping = r->table_hold = false;
        return r->value_a;
    }
    if (target < r->value_a || (target <= 0.0f && r->value_a <= 0.0f)) {
        if (from_table && target < r->value_a) {
            r->table_hold = true;
            r->table_hold_ms = 0;
        }
        r->value_a = target > 0.0f ? target : 0.0f;
        r->at_zero = r->value_a <= 0.0f;
        r->waiting = r->ramping = false;
        return r->value_a;
    }
    if (r->at_zero && target <= c->zero_exit_a) {
        r->value_a = 0.0f;
        r->waiting = false;
        reason_num(reason, "zero hysteresis (target ", target, 1, " A)");
        return 0.0f;
    }
    if (target <= r->value_a) {
        r->value_a = target;
        r->waiting = r->ramping = false;
        r->at_zero = false;
        return r->value_a;
    }
    if (!r->ramping) {
        if (!r->at_zero && target <= r->value_a + deadband) {
            /* Slightly higher target: keep the (lower, safe) value. */
            r->waiting = false;
            r->table_hold_ms = 0; /* a reversal must be confirmed by a clean stretch */
            reason_num(reason, "deadband (target ", target, 1, " A)");
            return r->value_a;
        }
        if (!r->waiting) {
            r->waiting = true;
            r->waited_ms = 0;
        } else {
            r->waited_ms += ramp_ms;
        }
        if (r->table_hold) {
            r->table_hold_ms += dt_ms;
            if (r->table_hold_ms < TABLE_REVERSAL_HOLD_MS) {
                reason_num(reason, "reversal hold (target ", target, 1, " A)");
                return r->value_a;
            }
        }
        if (r->waited_ms < (uint64_t)c->increase_delay_s * 1000u) {
            reason_num(reason, "increase delay (target ", target, 1, " A)");
            return r->value_a;
        }
        r->ramping = true;
        r->table_hold = false;
    }
    float next = r->value_a + c->increase_ramp_a_per_s * dt_s;
    if (next >= target) {
        next = target;
        r->waiting = r->ramping = false;
    } else {
        reason_num(reason, "ramp (target ", target, 1, " A)");
    }
    r->value_a = next;
    r->at_zero = next <= 0.0f;
    return next;
}

/* ---- step ---------------------------------------------------------------------------------- */

static void count_change(int32_t *sent, uint32_t *changes, float value, bool first)
{
    int32_t q = round_tenths(value);
    if (!first && q != *sent)
        (*changes)++;
    *sent = q;
}

static void fill_counters(const struct charge_control *cc, struct charge_limits *out)
{
    out->cvl_changes = cc->cvl_changes;
    out->ccl_changes = cc->ccl_changes;
    out->dcl_changes = cc->dcl_changes;
    out->phase = cc->phase;
}

/* Safe, complete result without usable live data (the state is not advanced). */
static void fill_no_data(const struct charge_control *cc, const struct charge_inputs *in,
                         struct charge_limits *out)
{
    float cells = 16.0f;
    struct bms_pack_limits decoded;
    const struct bms_pack_limits *l = in->limits;
    if (!l && in->settings) {
        tinybms_pack_limits_decode(in->settings, &decoded);
        l = &decoded;
    }
    if (l && l->has_series_cells)
        cells = (float)l->series_cells;
    else if (in->live && in->live->cell_count >= BMS_MIN_CELLS && in->live->cell_count <= BMS_MAX_CELLS)
        cells = (float)in->live->cell_count;
    if (cc->started && finite_f(cc->cvl_v) && cc->cvl_v > 0.0f) {
        out->cvl_v = cc->cvl_v;
        reason_text(out->cvl_reason, "no data (last value)");
    } else {
        out->cvl_v = cells * cc->cfg.float_cell_v;
        reason_text(out->cvl_reason, "no data (float)");
    }
    out->cvl_target_v = out->cvl_v;
    out->ccl_a = out->dcl_a = 0.0f;
    out->discharge_v = cells * cc->cfg.discharge_cell_v;
    reason_text(out->ccl_reason, "no data");
    reason_text(out->dcl_reason, "no data");
    fill_counters(cc, out);
}

int charge_control_step(struct charge_control *cc, const struct charge_inputs *in,
                        uint64_t now_ms, struct charge_limits *out)
{
    if (!cc || !in || !out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    if (!live_usable(in->live)) {
        fill_no_data(cc, in, out);
        cc->data_gap = true;
        return GW_ERR_STATE;
    }
    bool first = !cc->started;
    uint64_t dt_ms = first ? 0 : elapsed_ms(now_ms, cc->last_ms);
    /* After a gap nothing is known about the time in between: it counts as no time, or the
     * first step would ramp (CCL/DCL, CVL rise) across the whole gap at once; and a pending
     * increase must be confirmed again by a full delay. */
    bool resume = !first && (cc->data_gap || dt_ms > MAX_STEP_GAP_MS);
    if (resume) {
        dt_ms = 0;
        cc->ccl.waiting = cc->ccl.ramping = false;
        cc->dcl.waiting = cc->dcl.ramping = false;
    }
    cc->data_gap = false;
    if (first || resume || now_ms > cc->last_ms)
        cc->last_ms = now_ms;

    struct pack_view v;
    build_view(in, &v);
    uint32_t prot = charge__protections_tracked(&cc->events, in->live, in->events,
                                                CHARGE_PROT_HOLD_S_DEFAULT);
    prot = resolve_fault(prot, &v);
    out->protections = prot;

    if (cc->cap_active && now_ms >= cc->cap_until_ms)
        cc->cap_active = false;

    bool ccl_table = false, dcl_table = false;
    out->ccl_target_a = charge_target(cc, &v, prot, cc->cap_active, out->ccl_reason, &ccl_table);
    out->dcl_target_a = discharge_target(cc, &v, prot, cc->cap_active, dt_ms, out->dcl_reason,
                                         &dcl_table);
    out->ccl_a = apply_dynamics(&cc->ccl, &cc->cfg, cc->cfg.max_charge_a, out->ccl_target_a,
                                ccl_table, first, dt_ms, out->ccl_reason);
    out->dcl_a = apply_dynamics(&cc->dcl, &cc->cfg, cc->cfg.max_discharge_a, out->dcl_target_a,
                                dcl_table, first, dt_ms, out->dcl_reason);
    /* Charging must stop: the charge target is 0, or so small that CCL stays latched at 0. */
    bool stop = out->ccl_target_a <= 0.0f ||
                (cc->ccl.at_zero && out->ccl_target_a <= cc->cfg.zero_exit_a);

    /* CVL: decreases at once; every increase at the rise limit. */
    float cvl = compute_cvl(cc, &v, dt_ms, stop, out->cvl_reason);
    out->cvl_target_v = cvl;
    if (!first && cvl > cc->cvl_v) {
        float rise_s = (float)(dt_ms > MAX_RAMP_DT_MS ? MAX_RAMP_DT_MS : dt_ms) / 1000.0f;
        float ceiling = cc->cvl_v + CVL_RISE_V_PER_CELL_S * (float)v.cells * rise_s;
        if (cvl > ceiling) {
            cvl = ceiling;
            reason_num(out->cvl_reason, "rise limit (target ", out->cvl_target_v, 2, " V)");
        }
    }
    cc->cvl_v = cvl;
    out->cvl_v = cvl;
    out->discharge_v = (float)v.cells * cc->cfg.discharge_cell_v;

    count_change(&cc->sent_cvl_dv, &cc->cvl_changes, out->cvl_v, first);
    count_change(&cc->sent_ccl_da, &cc->ccl_changes, out->ccl_a, first);
    count_change(&cc->sent_dcl_da, &cc->dcl_changes, out->dcl_a, first);
    cc->started = true;
    fill_counters(cc, out);
    return GW_OK;
}
