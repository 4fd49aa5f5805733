/* The battery engine: plausibility gate, pack states, one charge control per pack and the
 * aggregation of the packs into the bank (shared/spec/several-packs.md R1-R13). */
#include "battery_engine.h"

#include "gw_error.h"
#include "gw_text.h"
#include "plausibility.h"
#include "tinybms.h"

#include <float.h>
#include <stddef.h>
#include <string.h>

/* Without new input the engine still steps this often: staleness is found by time passing. */
#define HEARTBEAT_MS 1000u
/* 0x378 carries 100 Wh steps in 32 bits: a restored counter above that is corrupt. */
#define ENERGY_MAX_WH 429496729600.0
/* R4: within this of empty or full, the bank reports the extreme pack's SOC, so the inverter
 * sees "empty" or "full" as soon as the first pack is. */
#define SOC_EDGE_PCT 2.0f
/* The bank's increases are rate limited over at most this much time: no jump after a pause. */
#define MAX_RAMP_DT_MS 2000u
/* A pack is "rejoining" while its own limits still ramp towards their targets. */
#define RAMP_DONE_TOL_A 0.05f

static bool finite_f(float x) { return x == x && x <= FLT_MAX && x >= -FLT_MAX; }
static float min_f(float a, float b) { return a < b ? a : b; }
static float max_f(float a, float b) { return a > b ? a : b; }
static float abs_f(float a) { return a < 0.0f ? -a : a; }

/* dst = prefix + src, bounded. */
static void join_text(char *dst, size_t cap, const char *prefix, const char *src)
{
    struct gw_text t;
    gw_text_init(&t, dst, cap);
    gw_text_put_str(&t, prefix);
    gw_text_put_str(&t, src);
}

/* "pack N: " for the pack at position pos (1-based N). */
static void pack_prefix(char *buf, size_t cap, unsigned pos)
{
    struct gw_text t;
    gw_text_init(&t, buf, cap);
    gw_text_put_str(&t, "pack ");
    gw_text_put_uint(&t, pos + 1u);
    gw_text_put_str(&t, ": ");
}

/* Short names of 0x374..0x377: one pack keeps "C7" / "T1"; several packs "P2C7" / "P2T1". */
static void ref_name(char *dst, size_t cap, bool several, unsigned pos, char kind, unsigned index)
{
    struct gw_text t;
    gw_text_init(&t, dst, cap);
    if (several) {
        gw_text_put_char(&t, 'P');
        gw_text_put_uint(&t, pos + 1u);
    }
    gw_text_put_char(&t, kind);
    gw_text_put_uint(&t, index);
}

/* ---- configuration ------------------------------------------------------------------------ */

void battery_engine_default_config(struct battery_engine_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->pack_count = 1;
    cfg->packs[0].id = 0;
    gw_config_charge_defaults(&cfg->charge, GW_CHEM_LFP);
    cfg->stale_after_ms = 5000;
    cfg->offline_after_ms = 30000;
    cfg->frozen_after_ms = 10000;
    cfg->implausible_in_row = 3;
    cfg->min_online = 1;
    cfg->rejoin_max_dv = 0.5f;
    cfg->soc_spread_pct = 15.0f;
    cfg->soc_full_pct = 100.0f;
    cfg->soc_empty_pct = 0.0f;
}

/* The SOC people and chargers see: the BMS's SOC with [empty, full] stretched to [0, 100]. */
static float soc_shown(const struct battery_engine_config *c, float bms_soc)
{
    if (bms_soc >= c->soc_full_pct)
        return 100.0f;
    if (bms_soc <= c->soc_empty_pct)
        return 0.0f;
    return (bms_soc - c->soc_empty_pct) * 100.0f / (c->soc_full_pct - c->soc_empty_pct);
}

static void sanitize(struct battery_engine_config *c)
{
    struct battery_engine_config d;
    battery_engine_default_config(&d);
    if (c->stale_after_ms < 500 || c->stale_after_ms > 60000)
        c->stale_after_ms = d.stale_after_ms;
    if (c->offline_after_ms < c->stale_after_ms)
        c->offline_after_ms = c->stale_after_ms;
    if (c->frozen_after_ms < 2000 || c->frozen_after_ms > 600000)
        c->frozen_after_ms = d.frozen_after_ms;
    if (c->implausible_in_row == 0 || c->implausible_in_row > 1000)
        c->implausible_in_row = d.implausible_in_row;
    if (c->min_online == 0 || c->min_online > c->pack_count)
        c->min_online = c->min_online == 0 ? 1 : c->pack_count;
    if (!finite_f(c->rejoin_max_dv) || c->rejoin_max_dv <= 0.0f || c->rejoin_max_dv > 10.0f)
        c->rejoin_max_dv = d.rejoin_max_dv;
    if (!finite_f(c->soc_spread_pct) || c->soc_spread_pct <= 0.0f || c->soc_spread_pct > 100.0f)
        c->soc_spread_pct = d.soc_spread_pct;
    if (!finite_f(c->soc_full_pct) || !finite_f(c->soc_empty_pct) || c->soc_full_pct > 100.0f ||
        c->soc_full_pct < 50.0f || c->soc_empty_pct < 0.0f || c->soc_empty_pct > 50.0f ||
        c->soc_empty_pct >= c->soc_full_pct) {
        c->soc_full_pct = d.soc_full_pct;
        c->soc_empty_pct = d.soc_empty_pct;
    }
    for (unsigned i = 0; i < c->pack_count; i++) {
        struct battery_pack_config *p = &c->packs[i];
        p->name[sizeof p->name - 1] = '\0';
        if (!p->name[0]) {
            struct gw_text t; /* "pack N" */
            gw_text_init(&t, p->name, sizeof p->name);
            gw_text_put_str(&t, "pack ");
            gw_text_put_uint(&t, i + 1u);
        }
        if (!finite_f(p->capacity_ah) || p->capacity_ah < 0.0f || p->capacity_ah > 100000.0f)
            p->capacity_ah = 0.0f;
    }
}

static struct battery_engine_pack *find_pack(struct battery_engine *e, uint8_t id, unsigned *pos)
{
    for (unsigned i = 0; i < e->cfg.pack_count; i++) {
        if (e->packs[i].cfg.id == id) {
            if (pos)
                *pos = i;
            return &e->packs[i];
        }
    }
    return NULL;
}

int battery_engine_init(struct battery_engine *e, const struct battery_engine_config *cfg)
{
    if (!e || !cfg || cfg->pack_count == 0 || cfg->pack_count > BATTERY_MAX_PACKS)
        return GW_ERR_INVAL;
    for (unsigned i = 0; i < cfg->pack_count; i++)
        for (unsigned j = i + 1; j < cfg->pack_count; j++)
            if (cfg->packs[i].id == cfg->packs[j].id)
                return GW_ERR_INVAL;
    memset(e, 0, sizeof *e);
    e->cfg = *cfg;
    sanitize(&e->cfg);
    for (unsigned i = 0; i < e->cfg.pack_count; i++) {
        struct battery_engine_pack *p = &e->packs[i];
        p->cfg = e->cfg.packs[i];
        p->state = BATTERY_PACK_NEVER_SEEN;
        int rc = charge_control_init(&p->cc, &e->cfg.charge);
        if (rc)
            return rc;
        victron_alarm_thresholds_defaults(&p->thresholds, e->cfg.charge.chemistry);
    }
    return GW_OK;
}

int battery_engine_set_config(struct battery_engine *e, const struct battery_engine_config *cfg)
{
    if (!e || !cfg)
        return GW_ERR_INVAL;
    struct battery_engine_config next = *cfg;
    /* The pack list is fixed for the engine's life (poller threads exist per pack). */
    next.pack_count = e->cfg.pack_count;
    memcpy(next.packs, e->cfg.packs, sizeof next.packs);
    sanitize(&next);
    e->cfg = next;
    for (unsigned i = 0; i < e->cfg.pack_count; i++) {
        struct battery_engine_pack *p = &e->packs[i];
        int rc = charge_control_set_config(&p->cc, &e->cfg.charge);
        if (rc)
            return rc;
        victron_alarm_thresholds_defaults(&p->thresholds, e->cfg.charge.chemistry);
        if (p->have_limits)
            victron_alarm_thresholds_apply_limits(&p->thresholds, &p->limits);
    }
    return GW_OK;
}

/* ---- inputs -------------------------------------------------------------------------------- */

static const struct bms_pack_limits *limits_of(const struct battery_engine_pack *p)
{
    return p->have_limits ? &p->limits : NULL;
}

/* Integrates one step of V x I into the bank counters when the pack's limits allow it. */
static void integrate_energy(struct battery_engine *e, struct battery_engine_pack *p,
                             const struct bms_live_data *s, uint64_t now_ms)
{
    if (p->energy_ms && now_ms > p->energy_ms) {
        uint64_t dt = now_ms - p->energy_ms;
        if (dt <= e->cfg.stale_after_ms &&
            plausibility_energy_step_ok(s->pack_voltage_v, s->pack_current_a, (uint32_t)dt, s->cell_count,
                                        limits_of(p), e->cfg.charge.chemistry)) {
            double wh = (double)s->pack_voltage_v * (double)s->pack_current_a * (double)dt / 3600000.0;
            if (wh > 0.0)
                e->energy_in_wh += wh;
            else
                e->energy_out_wh -= wh;
        } else if (dt <= e->cfg.stale_after_ms) {
            e->energy_steps_refused++;
        }
    }
    p->energy_ms = now_ms;
}

int battery_engine_feed_sample(struct battery_engine *e, const struct bms_live_data *s, uint64_t now_ms)
{
    if (!e || !s)
        return BATTERY_FEED_INVALID;
    struct battery_engine_pack *p = find_pack(e, s->battery_id, NULL);
    if (!p)
        return BATTERY_FEED_UNKNOWN_PACK;
    if (!s->valid)
        return BATTERY_FEED_INVALID;
    struct plausibility_result r;
    if (!plausibility_check_sample(s, limits_of(p), e->cfg.charge.chemistry, &r)) {
        p->bad_in_row++;
        p->bad_total++;
        gw_text_copy(p->bad_reason, sizeof p->bad_reason, r.reason);
        p->energy_ms = 0; /* never integrate across a refused sample */
        return BATTERY_FEED_IMPLAUSIBLE;
    }
    /* A BMS that answers the same sample again and again: its lifetime counter (1 s
     * resolution) stops. Samples faster than 1 s repeat it legitimately for a while. */
    if (p->have_sample && s->lifetime_s == p->live.lifetime_s) {
        if (now_ms >= p->lifetime_changed_ms + e->cfg.frozen_after_ms) {
            if (!p->frozen)
                p->frozen_total++;
            p->frozen = true;
            p->energy_ms = 0;
            return BATTERY_FEED_FROZEN;
        }
    } else {
        p->lifetime_changed_ms = now_ms;
        p->frozen = false;
    }
    p->bad_in_row = 0;
    integrate_energy(e, p, s, now_ms);
    p->live = *s;
    p->have_sample = true;
    p->fresh_ms = now_ms;
    p->comm_lost = false;
    return BATTERY_FEED_TAKEN;
}

void battery_engine_feed_settings(struct battery_engine *e, uint8_t battery_id, const struct bms_settings *settings)
{
    struct battery_engine_pack *p = e ? find_pack(e, battery_id, NULL) : NULL;
    if (!p || !settings || !settings->valid)
        return;
    tinybms_pack_limits_decode(settings, &p->limits);
    p->have_limits = true;
    victron_alarm_thresholds_defaults(&p->thresholds, e->cfg.charge.chemistry);
    victron_alarm_thresholds_apply_limits(&p->thresholds, &p->limits);
}

void battery_engine_feed_events(struct battery_engine *e, uint8_t battery_id, const struct bms_event_log *log)
{
    struct battery_engine_pack *p = e ? find_pack(e, battery_id, NULL) : NULL;
    if (!p || !log || !log->valid)
        return;
    p->events = *log;
    p->have_events = true;
}

void battery_engine_feed_comm(struct battery_engine *e, uint8_t battery_id, bool lost)
{
    struct battery_engine_pack *p = e ? find_pack(e, battery_id, NULL) : NULL;
    if (!p)
        return;
    p->comm_lost = lost;
    if (lost)
        p->energy_ms = 0;
}

int battery_engine_set_cap(struct battery_engine *e, const struct app_charge_cap *cap, uint64_t now_ms)
{
    if (!e || !cap || !(cap->ccl_cap_a == cap->ccl_cap_a) || !(cap->dcl_cap_a == cap->dcl_cap_a))
        return GW_ERR_INVAL;
    if (cap->duration_s == 0) {
        e->cap_active = false;
        return GW_OK;
    }
    e->cap_active = true;
    e->cap_ccl_a = cap->ccl_cap_a;
    e->cap_dcl_a = cap->dcl_cap_a;
    e->cap_until_ms = now_ms + (uint64_t)cap->duration_s * 1000u;
    gw_text_copy(e->cap_source, sizeof e->cap_source, cap->source);
    return GW_OK;
}

void battery_engine_set_limit_outputs(struct battery_engine *e, uint32_t outputs)
{
    if (e)
        e->limit_outputs = outputs;
}

/* ---- step: packs --------------------------------------------------------------------------- */

static bool has_cell_sensor(const struct bms_live_data *d)
{
    return d->temp_present[BMS_TEMP_EXT1] || d->temp_present[BMS_TEMP_EXT2];
}

static float pack_capacity(const struct battery_engine_pack *p)
{
    if (p->cfg.capacity_ah > 0.0f)
        return p->cfg.capacity_ah;
    if (p->have_limits && p->limits.has_capacity)
        return p->limits.capacity_ah;
    return 0.0f;
}

/* The BMS itself reports it has cut that direction off (its switch is open): the pack takes
 * no current that way and may be left out of the bank's min() (R7/R8, BatteryAggregator). */
static bool bms_cut_charge(const struct battery_engine_pack *p)
{
    return (p->out.protections & CHARGE_PROT_BLOCKS_CHARGE) != 0;
}
static bool bms_cut_discharge(const struct battery_engine_pack *p)
{
    return (p->out.protections & CHARGE_PROT_BLOCKS_DISCHARGE) != 0;
}

static void fill_pack_limits(struct battery_limits *l, const struct charge_limits *c, bool valid)
{
    l->valid = valid;
    l->cvl_v = c->cvl_v;
    l->ccl_a = c->ccl_a;
    l->dcl_a = c->dcl_a;
    l->discharge_v = c->discharge_v;
    l->phase = c->phase;
    gw_text_copy(l->cvl_reason, sizeof l->cvl_reason, c->cvl_reason);
    gw_text_copy(l->ccl_reason, sizeof l->ccl_reason, c->ccl_reason);
    gw_text_copy(l->dcl_reason, sizeof l->dcl_reason, c->dcl_reason);
}

/* R1: the state from ages, flags and the charge-control verdict; R10: who is in the bank. */
static void step_packs(struct battery_engine *e, uint64_t now_ms, struct battery_view *v)
{
    const struct battery_engine_config *c = &e->cfg;
    bool fresh[BATTERY_MAX_PACKS] = { false };

    for (unsigned i = 0; i < c->pack_count; i++) {
        struct battery_engine_pack *p = &e->packs[i];
        uint64_t age = p->have_sample && now_ms > p->fresh_ms ? now_ms - p->fresh_ms : 0;
        bool usable = false;
        if (!p->have_sample)
            p->state = BATTERY_PACK_NEVER_SEEN;
        else if (p->comm_lost || age > c->offline_after_ms)
            p->state = BATTERY_PACK_OFFLINE;
        else if (age > c->stale_after_ms || p->frozen || p->bad_in_row >= c->implausible_in_row)
            p->state = BATTERY_PACK_STALE;
        else
            usable = true;
        struct charge_inputs in = { .live = usable ? &p->live : NULL, .limits = limits_of(p),
                                    .events = p->have_events ? &p->events : NULL };
        p->charge_step_ok = charge_control_step(&p->cc, &in, now_ms, &p->out) == GW_OK;
        if (usable && !p->charge_step_ok) {
            usable = false; /* charge control refuses the data: as good as none */
            p->state = BATTERY_PACK_STALE;
        }
        fresh[i] = usable;
        if (!usable)
            p->in_bank = false;
    }

    /* The bank voltage of the packs already in it; a returning pack must be close to it. */
    float sum_v = 0.0f;
    unsigned n_in = 0;
    for (unsigned i = 0; i < c->pack_count; i++) {
        if (e->packs[i].in_bank) {
            sum_v += e->packs[i].live.pack_voltage_v;
            n_in++;
        }
    }
    float bank_v = n_in ? sum_v / (float)n_in : 0.0f;
    for (unsigned i = 0; i < c->pack_count; i++) {
        struct battery_engine_pack *p = &e->packs[i];
        v->packs[i].conditions = 0;
        if (!fresh[i])
            continue;
        if (!p->in_bank) {
            if (n_in && abs_f(p->live.pack_voltage_v - bank_v) > c->rejoin_max_dv) {
                p->state = BATTERY_PACK_REJOINING;
                v->packs[i].conditions |= BATTERY_COND_REJOIN_BLOCKED;
                continue;
            }
            p->in_bank = true;
            p->rejoining = n_in > 0; /* joins a running bank: shown until its limits ramped */
        }
        bool ramping = p->out.ccl_a + RAMP_DONE_TOL_A < p->out.ccl_target_a ||
                       p->out.dcl_a + RAMP_DONE_TOL_A < p->out.dcl_target_a;
        if (p->rejoining && !ramping)
            p->rejoining = false;
        p->state = p->rejoining ? BATTERY_PACK_REJOINING : BATTERY_PACK_ONLINE;
    }
}

/* ---- step: the bank ------------------------------------------------------------------------ */

static uint8_t worse_flag(uint8_t a, uint8_t b)
{
    /* ACTIVE > OK > NOT_SUPPORTED */
    if (a == VICTRON_FLAG_ACTIVE || b == VICTRON_FLAG_ACTIVE)
        return VICTRON_FLAG_ACTIVE;
    if (a == VICTRON_FLAG_OK || b == VICTRON_FLAG_OK)
        return VICTRON_FLAG_OK;
    return VICTRON_FLAG_NOT_SUPPORTED;
}

struct side_pick {
    float value;
    uint8_t pack;
    char reason[BATTERY_REASON_LEN];
};

/* R7 / R8 for one direction. */
static void aggregate_current(const struct battery_engine *e, bool charge, bool several, struct side_pick *out)
{
    const struct battery_engine_config *c = &e->cfg;
    unsigned in_bank = 0, allowed = 0;
    float cap_sum = 0.0f, limit_sum = 0.0f;
    bool caps_known = true;
    for (unsigned i = 0; i < c->pack_count; i++) {
        const struct battery_engine_pack *p = &e->packs[i];
        if (!p->in_bank)
            continue;
        in_bank++;
        if (charge ? bms_cut_charge(p) : bms_cut_discharge(p))
            continue; /* the BMS has opened that switch: the pack takes no current that way */
        allowed++;
        float cap = pack_capacity(p);
        if (cap <= 0.0f)
            caps_known = false;
        cap_sum += cap;
        limit_sum += charge ? p->out.ccl_a : p->out.dcl_a;
    }
    out->value = 0.0f;
    out->pack = BATTERY_BANK_ID;
    if (!in_bank) {
        gw_text_copy(out->reason, sizeof out->reason, "no data");
        return;
    }
    if (!allowed) {
        gw_text_copy(out->reason, sizeof out->reason,
                  charge ? "every pack's BMS blocks charge" : "every pack's BMS blocks discharge");
        return;
    }
    float best = FLT_MAX;
    for (unsigned i = 0; i < c->pack_count; i++) {
        const struct battery_engine_pack *p = &e->packs[i];
        if (!p->in_bank || (charge ? bms_cut_charge(p) : bms_cut_discharge(p)))
            continue;
        float limit = charge ? p->out.ccl_a : p->out.dcl_a;
        /* A pack that must not take current that way but whose switch is closed: the bank
         * cannot steer current around it (DAB rule): the bank limit is 0. */
        float ratio = (caps_known && cap_sum > 0.0f) ? cap_sum / pack_capacity(p) : (float)allowed;
        float scaled = limit <= 0.0f ? 0.0f : limit * ratio;
        if (scaled < best) {
            best = scaled;
            out->pack = p->cfg.id;
            char pre[16] = "";
            if (several)
                pack_prefix(pre, sizeof pre, i);
            join_text(out->reason, sizeof out->reason, pre, charge ? p->out.ccl_reason : p->out.dcl_reason);
        }
    }
    if (best > limit_sum) {
        best = limit_sum;
        out->pack = BATTERY_BANK_ID;
        gw_text_copy(out->reason, sizeof out->reason, "sum of the packs' limits");
    }
    out->value = best;
}

/* Increases at most at the ramp rate (dt bounded), decreases at once. */
static float bank_ramp(float prev, float target, bool first, float ramp_a_per_s, uint64_t dt_ms, char *reason)
{
    if (first || target <= prev)
        return target;
    if (dt_ms > MAX_RAMP_DT_MS)
        dt_ms = MAX_RAMP_DT_MS;
    float next = prev + ramp_a_per_s * (float)dt_ms / 1000.0f;
    if (next >= target)
        return target;
    gw_text_copy(reason, BATTERY_REASON_LEN, "bank ramp up");
    return next;
}

static void aggregate(struct battery_engine *e, uint64_t now_ms, uint64_t dt_ms, struct battery_view *v)
{
    const struct battery_engine_config *c = &e->cfg;
    bool several = c->pack_count > 1;
    float w_sum = 0.0f, soc_w = 0.0f, soh_w = 0.0f, soh_wsum = 0.0f, v_sum = 0.0f;
    float v_min = FLT_MAX, v_max = -FLT_MAX, soc_min = FLT_MAX, soc_max = -FLT_MAX;
    bool caps_known = true;
    unsigned n_on = 0;
    float min_cell = FLT_MAX, max_cell = -FLT_MAX;
    bool status_set = false;

    for (unsigned i = 0; i < c->pack_count; i++) {
        const struct battery_engine_pack *p = &e->packs[i];
        float cap = pack_capacity(p);
        v->installed_capacity_ah += cap;
        if (!p->in_bank)
            continue;
        if (cap <= 0.0f)
            caps_known = false;
    }
    for (unsigned i = 0; i < c->pack_count; i++) {
        const struct battery_engine_pack *p = &e->packs[i];
        if (!p->in_bank)
            continue;
        const struct bms_live_data *d = &p->live;
        n_on++;
        float w = caps_known ? pack_capacity(p) : 1.0f;
        float soc = bms_soc_percent(d);
        v_sum += d->pack_voltage_v;
        v_min = min_f(v_min, d->pack_voltage_v);
        v_max = max_f(v_max, d->pack_voltage_v);
        v->current_a += d->pack_current_a;
        v->power_w += d->pack_voltage_v * d->pack_current_a;
        w_sum += w;
        soc_w += w * soc;
        soc_min = min_f(soc_min, soc);
        soc_max = max_f(soc_max, soc);
        if (d->soh_valid) {
            soh_w += w * bms_soh_percent(d);
            soh_wsum += w;
        }
        v->capacity_ah += pack_capacity(p);
        if (!v->cell_count || d->cell_count < v->cell_count)
            v->cell_count = d->cell_count;
        for (unsigned k = 0; k < d->cell_count && k < BMS_MAX_CELLS; k++) {
            float cell = bms_cell_v(d, k);
            if (cell < min_cell) {
                min_cell = cell;
                v->min_cell.pack = p->cfg.id;
                v->min_cell.index = (uint8_t)(k + 1);
                ref_name(v->min_cell.name, sizeof v->min_cell.name, several, i, 'C', k + 1);
            }
            if (cell > max_cell) {
                max_cell = cell;
                v->max_cell.pack = p->cfg.id;
                v->max_cell.index = (uint8_t)(k + 1);
                ref_name(v->max_cell.name, sizeof v->max_cell.name, several, i, 'C', k + 1);
            }
        }
        /* Cell temperatures: the external sensors only; the board sensor is no cell. */
        for (int s = BMS_TEMP_EXT1; s <= BMS_TEMP_EXT2; s++) {
            if (!d->temp_present[s])
                continue;
            float t = bms_temp_c(d, (unsigned)s);
            if (!v->have_temp || t < v->temp_min_c) {
                v->temp_min_c = t;
                v->min_temp.pack = p->cfg.id;
                v->min_temp.index = (uint8_t)s;
                ref_name(v->min_temp.name, sizeof v->min_temp.name, several, i, 'T', (unsigned)s);
            }
            if (!v->have_temp || t > v->temp_max_c) {
                v->temp_max_c = t;
                v->max_temp.pack = p->cfg.id;
                v->max_temp.index = (uint8_t)s;
                ref_name(v->max_temp.name, sizeof v->max_temp.name, several, i, 'T', (unsigned)s);
            }
            v->have_temp = true;
        }
        if (!status_set || d->online_status == BMS_STATUS_FAULT) {
            v->online_status = d->online_status; /* the first pack's, a fault wins */
            status_set = true;
        }
        v->protections |= p->out.protections;
        if (n_on == 1 && !several)
            v->time_left_s = d->time_left_s;
    }
    v->online_count = (uint8_t)n_on;
    if (n_on) {
        v->voltage_v = v_sum / (float)n_on;
        v->soc_pct = w_sum > 0.0f ? soc_w / w_sum : 0.0f;
        if (several && soc_min < SOC_EDGE_PCT)
            v->soc_pct = soc_min;
        else if (several && soc_max > 100.0f - SOC_EDGE_PCT)
            v->soc_pct = soc_max;
        v->soc_bms_pct = v->soc_pct;
        v->soc_pct = soc_shown(c, v->soc_bms_pct);
        v->soh_valid = soh_wsum > 0.0f;
        v->soh_pct = v->soh_valid ? soh_w / soh_wsum : 0.0f;
        v->min_cell_v = min_cell;
        v->max_cell_v = max_cell;
        v->cell_spread_mv = (max_cell - min_cell) * 1000.0f;
        if (several && v->current_a < -0.5f && v->capacity_ah > 0.0f) {
            float hours = v->capacity_ah * v->soc_bms_pct / 100.0f / -v->current_a;
            v->time_left_s = hours > 0.0f && hours < 100000.0f ? (uint32_t)(hours * 3600.0f) : 0;
        }
        if (v_max - v_min > c->rejoin_max_dv)
            v->conditions |= BATTERY_COND_VOLTAGE_SPREAD;
        if (soc_max - soc_min > c->soc_spread_pct)
            v->conditions |= BATTERY_COND_SOC_SPREAD;
    }

    /* 0x35A: the worst of the packs per flag (R12); 0x372 (R11). */
    for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++) {
        v->alarms.alarm[f] = VICTRON_FLAG_OK;
        v->alarms.warning[f] = VICTRON_FLAG_OK;
    }
    for (unsigned i = 0; i < c->pack_count; i++) {
        const struct battery_engine_pack *p = &e->packs[i];
        if (!p->in_bank)
            continue;
        for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++) {
            v->alarms.alarm[f] = worse_flag(v->alarms.alarm[f], v->packs[i].alarms.alarm[f]);
            v->alarms.warning[f] = worse_flag(v->alarms.warning[f], v->packs[i].alarms.warning[f]);
        }
        if (!v->packs[i].charge_allowed)
            v->modules.blocking_charge++;
        if (!v->packs[i].discharge_allowed)
            v->modules.blocking_discharge++;
    }
    v->modules.ok = (uint16_t)n_on;
    v->modules.offline = (uint16_t)(c->pack_count - n_on);

    /* Limits (R6-R9). */
    struct battery_limits *l = &v->limits;
    l->valid = n_on > 0;
    l->cvl_pack = l->ccl_pack = l->dcl_pack = BATTERY_BANK_ID;
    if (!n_on) {
        /* Nothing is sent; the values stay safe for anyone who looks anyway. */
        l->cvl_v = e->packs[0].out.cvl_v;
        l->discharge_v = e->packs[0].out.discharge_v;
        gw_text_copy(l->cvl_reason, sizeof l->cvl_reason, "no data");
        gw_text_copy(l->ccl_reason, sizeof l->ccl_reason, "no data");
        gw_text_copy(l->dcl_reason, sizeof l->dcl_reason, "no data");
        v->conditions |= BATTERY_COND_NO_DATA;
        e->bank_ccl_a = e->bank_dcl_a = 0.0f;
        return;
    }
    float cvl = FLT_MAX;
    for (unsigned i = 0; i < c->pack_count; i++) {
        const struct battery_engine_pack *p = &e->packs[i];
        if (!p->in_bank || !finite_f(p->out.cvl_v) || p->out.cvl_v <= 0.0f)
            continue;
        if (p->out.cvl_v < cvl) {
            cvl = p->out.cvl_v;
            l->cvl_pack = p->cfg.id;
            l->phase = p->out.phase;
            l->discharge_v = p->out.discharge_v;
            char pre[16] = "";
            if (several)
                pack_prefix(pre, sizeof pre, i);
            join_text(l->cvl_reason, sizeof l->cvl_reason, pre, p->out.cvl_reason);
        }
    }
    if (cvl == FLT_MAX) { /* unreachable: charge control never gives CVL 0; never send 0 */
        l->valid = false;
        gw_text_copy(l->cvl_reason, sizeof l->cvl_reason, "no usable CVL");
        return;
    }
    l->cvl_v = cvl;

    struct side_pick ccl, dcl;
    aggregate_current(e, true, several, &ccl);
    aggregate_current(e, false, several, &dcl);
    if (n_on < c->min_online) {
        char why[BATTERY_REASON_LEN] = "too few packs online";
        ccl.value = dcl.value = 0.0f;
        ccl.pack = dcl.pack = BATTERY_BANK_ID;
        gw_text_copy(ccl.reason, sizeof ccl.reason, why);
        gw_text_copy(dcl.reason, sizeof dcl.reason, why);
        v->conditions |= BATTERY_COND_BELOW_MIN_ONLINE;
    }
    if (e->cap_active && now_ms >= e->cap_until_ms)
        e->cap_active = false;
    if (e->cap_active) {
        char why[BATTERY_REASON_LEN];
        join_text(why, sizeof why, "external cap ", e->cap_source[0] ? e->cap_source : "");
        if (e->cap_ccl_a >= 0.0f && e->cap_ccl_a < ccl.value) {
            ccl.value = e->cap_ccl_a;
            ccl.pack = BATTERY_BANK_ID;
            gw_text_copy(ccl.reason, sizeof ccl.reason, why);
        }
        if (e->cap_dcl_a >= 0.0f && e->cap_dcl_a < dcl.value) {
            dcl.value = e->cap_dcl_a;
            dcl.pack = BATTERY_BANK_ID;
            gw_text_copy(dcl.reason, sizeof dcl.reason, why);
        }
    }
    bool first = !e->bank_started;
    e->bank_ccl_a = bank_ramp(e->bank_ccl_a, ccl.value, first, c->charge.increase_ramp_a_per_s, dt_ms, ccl.reason);
    e->bank_dcl_a = bank_ramp(e->bank_dcl_a, dcl.value, first, c->charge.increase_ramp_a_per_s, dt_ms, dcl.reason);
    e->bank_started = true;
    l->ccl_a = e->bank_ccl_a;
    l->dcl_a = e->bank_dcl_a;
    l->ccl_pack = ccl.pack;
    l->dcl_pack = dcl.pack;
    gw_text_copy(l->ccl_reason, sizeof l->ccl_reason, ccl.reason);
    gw_text_copy(l->dcl_reason, sizeof l->dcl_reason, dcl.reason);
}

uint64_t battery_engine_step(struct battery_engine *e, uint64_t now_ms, struct battery_view *v)
{
    memset(v, 0, sizeof *v);
    if (!e)
        return now_ms + HEARTBEAT_MS;
    const struct battery_engine_config *c = &e->cfg;
    uint64_t dt_ms = (e->started && now_ms > e->last_step_ms) ? now_ms - e->last_step_ms : 0;
    if (!e->started || now_ms > e->last_step_ms)
        e->last_step_ms = now_ms;
    e->started = true;
    e->seq++;

    v->seq = e->seq;
    v->timestamp_ms = now_ms;
    v->pack_count = c->pack_count;
    v->limit_outputs = e->limit_outputs;
    v->energy_in_wh = e->energy_in_wh;
    v->energy_out_wh = e->energy_out_wh;

    step_packs(e, now_ms, v);
    for (unsigned i = 0; i < c->pack_count; i++) {
        struct battery_engine_pack *p = &e->packs[i];
        struct battery_pack *o = &v->packs[i];
        o->id = p->cfg.id;
        gw_text_copy(o->name, sizeof o->name, p->cfg.name);
        o->state = p->state;
        o->capacity_ah = pack_capacity(p);
        o->soc_pct = p->have_sample ? soc_shown(c, bms_soc_percent(&p->live)) : 0.0f;
        o->protections = p->out.protections;
        o->live = p->live;
        o->live.valid = p->have_sample;
        o->sample_age_ms = p->have_sample && now_ms > p->fresh_ms ? now_ms - p->fresh_ms : 0;
        o->bad_samples = p->bad_total;
        o->frozen_samples = p->frozen_total;
        gw_text_copy(o->bad_reason, sizeof o->bad_reason, p->bad_reason);
        fill_pack_limits(&o->limits, &p->out, p->in_bank);
        o->charge_allowed = p->in_bank && p->out.ccl_a > 0.0f && !bms_cut_charge(p);
        o->discharge_allowed = p->in_bank && p->out.dcl_a > 0.0f && !bms_cut_discharge(p);
        if (p->have_sample)
            victron_alarms_from_bms(&p->live, p->have_events ? &p->events : NULL, &p->thresholds, p->in_bank,
                                    &o->alarms);
        if (p->bad_in_row >= c->implausible_in_row)
            o->conditions |= BATTERY_COND_IMPLAUSIBLE;
        if (p->frozen)
            o->conditions |= BATTERY_COND_FROZEN;
        if (p->comm_lost)
            o->conditions |= BATTERY_COND_COMM_LOST;
        if (p->have_sample && !has_cell_sensor(&p->live))
            o->conditions |= BATTERY_COND_NO_CELL_TEMP;
        if (p->state != BATTERY_PACK_ONLINE && p->state != BATTERY_PACK_REJOINING)
            v->conditions |= BATTERY_COND_PACK_OFFLINE;
    }
    aggregate(e, now_ms, dt_ms, v);
    v->alarms.online = v->limits.valid;
    if (!v->limits.valid)
        v->alarms.alarm[VICTRON_FLAG_GENERAL] = VICTRON_FLAG_ACTIVE;
    if (e->energy_refused)
        v->conditions |= BATTERY_COND_ENERGY_REFUSED;

    /* Next step: the heartbeat, or sooner when a pack is about to turn stale or offline. */
    uint64_t next = now_ms + HEARTBEAT_MS;
    for (unsigned i = 0; i < c->pack_count; i++) {
        const struct battery_engine_pack *p = &e->packs[i];
        if (!p->have_sample)
            continue;
        uint64_t stale_at = p->fresh_ms + c->stale_after_ms + 1;
        uint64_t offline_at = p->fresh_ms + c->offline_after_ms + 1;
        if (stale_at > now_ms && stale_at < next)
            next = stale_at;
        if (offline_at > now_ms && offline_at < next)
            next = offline_at;
    }
    return next;
}

/* ---- persistence --------------------------------------------------------------------------- */

void battery_engine_save(const struct battery_engine *e, struct battery_engine_saved *out)
{
    memset(out, 0, sizeof *out);
    if (!e)
        return;
    out->energy_in_wh = e->energy_in_wh;
    out->energy_out_wh = e->energy_out_wh;
    out->pack_count = e->cfg.pack_count;
    for (unsigned i = 0; i < e->cfg.pack_count; i++) {
        out->packs[i].id = e->packs[i].cfg.id;
        out->packs[i].valid = e->packs[i].cc.started;
        charge_control_get_state(&e->packs[i].cc, &out->packs[i].charge);
    }
}

static bool energy_ok(double wh)
{
    return wh == wh && wh >= 0.0 && wh <= ENERGY_MAX_WH;
}

int battery_engine_restore(struct battery_engine *e, const struct battery_engine_saved *s)
{
    if (!e || !s)
        return GW_ERR_INVAL;
    int rc = GW_OK;
    if (energy_ok(s->energy_in_wh) && energy_ok(s->energy_out_wh)) {
        e->energy_in_wh = s->energy_in_wh;
        e->energy_out_wh = s->energy_out_wh;
    } else {
        e->energy_refused = true;
        rc = GW_ERR_RANGE;
    }
    for (unsigned k = 0; k < s->pack_count && k < BATTERY_MAX_PACKS; k++) {
        if (!s->packs[k].valid)
            continue;
        struct battery_engine_pack *p = find_pack(e, s->packs[k].id, NULL);
        if (p && charge_control_set_state(&p->cc, &s->packs[k].charge) != GW_OK)
            e->energy_refused = true; /* reported with the same condition: a state was refused */
    }
    return rc;
}
