/* The plausibility rules: one table, checked in order. */
#include "plausibility.h"

#include "gw_config.h"
#include "gw_text.h"

#include <math.h>

void plausibility_cell_range(uint8_t chemistry, float *min_v, float *max_v)
{
    /* Beyond these a cell is destroyed or the reading is not a cell: LFP rests at 2.5..3.65 V
     * and reads 2.0..3.9 V under load; NMC 2.7..4.25 V. The margins keep a deep discharge or a
     * failing charger visible as an alarm rather than hiding it as a bad sample. */
    float lo = 0.5f, hi = 4.6f;
    if (chemistry == GW_CHEM_LFP) {
        lo = 1.0f;
        hi = 4.3f;
    } else if (chemistry == GW_CHEM_NMC) {
        lo = 1.5f;
        hi = 4.6f;
    }
    if (min_v)
        *min_v = lo;
    if (max_v)
        *max_v = hi;
}

float plausibility_current_bound_a(const struct bms_pack_limits *limits)
{
    float oc = 0.0f;
    if (limits && limits->has_discharge_overcurrent && isfinite(limits->discharge_overcurrent_a))
        oc = limits->discharge_overcurrent_a;
    if (limits && limits->has_charge_overcurrent && isfinite(limits->charge_overcurrent_a) &&
        limits->charge_overcurrent_a > oc)
        oc = limits->charge_overcurrent_a;
    if (oc <= 0.0f)
        return PLAUSIBILITY_CURRENT_MAX_A;
    float bound = oc * PLAUSIBILITY_CURRENT_FACTOR;
    return bound < PLAUSIBILITY_CURRENT_MAX_A ? bound : PLAUSIBILITY_CURRENT_MAX_A;
}

struct check_ctx {
    const struct bms_live_data *s;
    const struct bms_pack_limits *limits;
    uint8_t chemistry;
    float cell_min_v, cell_max_v;
};

typedef bool (*rule_fn)(const struct check_ctx *c, char *reason, size_t cap);

/* "<head><lo>..<hi><tail>" of a reason: the possible range. */
static void put_possible(struct gw_text *t, const char *head, float lo, float hi, unsigned decimals,
                         const char *tail)
{
    gw_text_put_str(t, head);
    gw_text_put_fixed(t, lo, decimals);
    gw_text_put_str(t, "..");
    gw_text_put_fixed(t, hi, decimals);
    gw_text_put_str(t, tail);
}

static bool rule_finite(const struct check_ctx *c, char *reason, size_t cap)
{
    if (isfinite(c->s->pack_voltage_v) && isfinite(c->s->pack_current_a))
        return true;
    gw_text_copy(reason, cap, "voltage or current not a number");
    return false;
}

static bool rule_cell_count(const struct check_ctx *c, char *reason, size_t cap)
{
    if (c->s->cell_count >= 4 && c->s->cell_count <= BMS_MAX_CELLS)
        return true;
    struct gw_text t;
    gw_text_init(&t, reason, cap);
    gw_text_put_uint(&t, c->s->cell_count);
    gw_text_put_str(&t, " cells (possible: 4..16)");
    return false;
}

static bool rule_cell_range(const struct check_ctx *c, char *reason, size_t cap)
{
    for (unsigned i = 0; i < c->s->cell_count; i++) {
        float v = bms_cell_v(c->s, i);
        if (v < c->cell_min_v || v > c->cell_max_v) {
            struct gw_text t;
            gw_text_init(&t, reason, cap);
            gw_text_put_str(&t, "cell ");
            gw_text_put_uint(&t, i + 1);
            gw_text_put_str(&t, " at ");
            gw_text_put_fixed(&t, v, 3);
            put_possible(&t, " V (possible ", c->cell_min_v, c->cell_max_v, 2, " V)");
            return false;
        }
    }
    return true;
}

static bool rule_pack_range(const struct check_ctx *c, char *reason, size_t cap)
{
    float lo = c->cell_min_v * (float)c->s->cell_count, hi = c->cell_max_v * (float)c->s->cell_count;
    if (c->s->pack_voltage_v >= lo && c->s->pack_voltage_v <= hi)
        return true;
    struct gw_text t;
    gw_text_init(&t, reason, cap);
    gw_text_put_str(&t, "pack at ");
    gw_text_put_fixed(&t, c->s->pack_voltage_v, 2);
    put_possible(&t, " V (possible ", lo, hi, 1, " V)");
    return false;
}

static bool rule_pack_vs_cells(const struct check_ctx *c, char *reason, size_t cap)
{
    float sum = 0.0f;
    for (unsigned i = 0; i < c->s->cell_count; i++)
        sum += bms_cell_v(c->s, i);
    float tol = PLAUSIBILITY_PACK_TOLERANCE_V + PLAUSIBILITY_PACK_TOLERANCE_REL * sum;
    if (fabsf(c->s->pack_voltage_v - sum) <= tol)
        return true;
    struct gw_text t;
    gw_text_init(&t, reason, cap);
    gw_text_put_str(&t, "pack ");
    gw_text_put_fixed(&t, c->s->pack_voltage_v, 2);
    gw_text_put_str(&t, " V but cells sum to ");
    gw_text_put_fixed(&t, sum, 2);
    gw_text_put_str(&t, " V");
    return false;
}

static bool rule_soc(const struct check_ctx *c, char *reason, size_t cap)
{
    if (c->s->soc_ppm <= 100000000u)
        return true;
    struct gw_text t;
    gw_text_init(&t, reason, cap);
    gw_text_put_str(&t, "SOC ");
    gw_text_put_fixed(&t, bms_soc_percent(c->s), 1);
    gw_text_put_str(&t, " % (possible 0..100 %)");
    return false;
}

static bool rule_current(const struct check_ctx *c, char *reason, size_t cap)
{
    float bound = plausibility_current_bound_a(c->limits);
    if (fabsf(c->s->pack_current_a) <= bound)
        return true;
    struct gw_text t;
    gw_text_init(&t, reason, cap);
    gw_text_put_str(&t, "current ");
    gw_text_put_fixed(&t, c->s->pack_current_a, 0);
    gw_text_put_str(&t, " A (possible +-");
    gw_text_put_fixed(&t, bound, 0);
    gw_text_put_str(&t, " A)");
    return false;
}

static bool rule_temperature(const struct check_ctx *c, char *reason, size_t cap)
{
    for (unsigned i = 0; i < BMS_TEMP_SENSORS; i++) {
        if (!c->s->temp_present[i])
            continue;
        float t = bms_temp_c(c->s, i);
        if (t < PLAUSIBILITY_TEMP_MIN_C || t > PLAUSIBILITY_TEMP_MAX_C) {
            struct gw_text txt;
            gw_text_init(&txt, reason, cap);
            gw_text_put_str(&txt, "sensor ");
            gw_text_put_uint(&txt, i);
            gw_text_put_str(&txt, " at ");
            gw_text_put_fixed(&txt, t, 1);
            put_possible(&txt, " degC (possible ", PLAUSIBILITY_TEMP_MIN_C, PLAUSIBILITY_TEMP_MAX_C, 0, ")");
            return false;
        }
    }
    return true;
}

static const struct {
    uint8_t rule;
    const char *name;
    rule_fn check;
} rules[] = {
    {PLAUSIBILITY_NOT_FINITE, "not finite", rule_finite},
    {PLAUSIBILITY_CELL_COUNT, "cell count", rule_cell_count},
    {PLAUSIBILITY_CELL_RANGE, "cell range", rule_cell_range},
    {PLAUSIBILITY_PACK_RANGE, "pack range", rule_pack_range},
    {PLAUSIBILITY_PACK_VS_CELLS, "pack vs cells", rule_pack_vs_cells},
    {PLAUSIBILITY_SOC_RANGE, "soc range", rule_soc},
    {PLAUSIBILITY_CURRENT_RANGE, "current range", rule_current},
    {PLAUSIBILITY_TEMP_RANGE, "temperature range", rule_temperature},
};

bool plausibility_check_sample(const struct bms_live_data *s, const struct bms_pack_limits *limits,
                               uint8_t chemistry, struct plausibility_result *out)
{
    struct plausibility_result scratch;
    struct plausibility_result *r = out ? out : &scratch;
    r->rule = PLAUSIBILITY_OK;
    r->reason[0] = 0;
    if (!s) {
        r->rule = PLAUSIBILITY_NOT_FINITE;
        gw_text_copy(r->reason, sizeof r->reason, "no sample");
        return false;
    }
    struct check_ctx c = {.s = s, .limits = limits, .chemistry = chemistry};
    plausibility_cell_range(chemistry, &c.cell_min_v, &c.cell_max_v);
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        if (!rules[i].check(&c, r->reason, sizeof r->reason)) {
            r->rule = rules[i].rule;
            return false;
        }
    }
    return true;
}

bool plausibility_energy_step_ok(float voltage_v, float current_a, uint32_t dt_ms, uint8_t cell_count,
                                 const struct bms_pack_limits *limits, uint8_t chemistry)
{
    (void)dt_ms; /* the caller bounds the step length (no integration across a gap) */
    if (!isfinite(voltage_v) || !isfinite(current_a) || cell_count < 4 || cell_count > BMS_MAX_CELLS)
        return false;
    float lo, hi;
    plausibility_cell_range(chemistry, &lo, &hi);
    if (voltage_v < lo * (float)cell_count || voltage_v > hi * (float)cell_count)
        return false;
    return fabsf(current_a) <= plausibility_current_bound_a(limits);
}

const char *plausibility_rule_name(uint8_t rule)
{
    if (rule == PLAUSIBILITY_OK)
        return "ok";
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (rules[i].rule == rule)
            return rules[i].name;
    return "unknown";
}
