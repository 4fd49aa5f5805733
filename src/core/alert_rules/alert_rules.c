/* Alert rules engine (see alert_rules.h). Portable: string.h only, no stdio (messages are built
 * with the bounded text builder). What each code, BMS event and threshold rule means is in the
 * tables below, one row each; the code around them only walks the tables. */
#include "alert_rules.h"

#include "gw_error.h"
#include "gw_text.h"

#include <string.h>

/* ---- codes: one row each ---------------------------------------------------------------- */

struct code_row {
    const char *name;
    uint8_t level;          /* enum app_alert_level raised with when no configuration decides it */
    uint8_t bms_event;      /* TinyBMS event id that raises it (0 = none: no event has id 0) */
    const char *bms_text;   /* message of that event */
};

static const struct code_row codes[ALERT_CODE_COUNT] = {
    [ALERT_CODE_OVER_VOLTAGE] = { "OVER_VOLTAGE", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_UNDER_VOLTAGE] = { "UNDER_VOLTAGE", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_PACK_OVER_VOLTAGE] = { "PACK_OVER_VOLTAGE", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_PACK_UNDER_VOLTAGE] = { "PACK_UNDER_VOLTAGE", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_OVER_TEMP] = { "OVER_TEMP", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_UNDER_TEMP] = { "UNDER_TEMP", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_OVER_CURRENT] = { "OVER_CURRENT", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_CHARGE_OVER_CURRENT] = { "CHARGE_OVER_CURRENT", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_SOC_LOW] = { "SOC_LOW", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_SOC_HIGH] = { "SOC_HIGH", ALERT_LEVEL_INFO, 0, NULL },
    [ALERT_CODE_CELL_IMBALANCE] = { "CELL_IMBALANCE", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_BMS_FAULT] = { "BMS_FAULT", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_BMS_STATUS] = { "BMS_STATUS", ALERT_LEVEL_INFO, 0, NULL },
    [ALERT_CODE_BMS_COMM_LOST] = { "BMS_COMM_LOST", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_MQTT_DISCONNECTED] = { "MQTT_DISCONNECTED", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_WIFI_DISCONNECTED] = { "WIFI_DISCONNECTED", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_CAN_INVERTER_LINK_LOST] = { "CAN_INVERTER_LINK_LOST", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_STORAGE_ERROR] = { "STORAGE_ERROR", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_CONFIG_RECOVERED] = { "CONFIG_RECOVERED", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF] = { "BMS_UNDER_VOLTAGE_CUTOFF", ALERT_LEVEL_ERROR, 0x02, "BMS under-voltage cutoff" },
    [ALERT_CODE_BMS_OVER_VOLTAGE_CUTOFF] = { "BMS_OVER_VOLTAGE_CUTOFF", ALERT_LEVEL_ERROR, 0x03, "BMS over-voltage cutoff" },
    [ALERT_CODE_BMS_OVER_TEMP_CUTOFF] = { "BMS_OVER_TEMP_CUTOFF", ALERT_LEVEL_ERROR, 0x04, "BMS over-temperature cutoff" },
    [ALERT_CODE_BMS_DISCHARGE_OVER_CURRENT] = { "BMS_DISCHARGE_OVER_CURRENT", ALERT_LEVEL_ERROR, 0x05, "BMS discharging over-current cutoff" },
    [ALERT_CODE_BMS_CHARGE_OVER_CURRENT] = { "BMS_CHARGE_OVER_CURRENT", ALERT_LEVEL_ERROR, 0x06, "BMS charging over-current cutoff" },
    [ALERT_CODE_BMS_REGEN_OVER_CURRENT] = { "BMS_REGEN_OVER_CURRENT", ALERT_LEVEL_ERROR, 0x07, "BMS regeneration over-current cutoff" },
    [ALERT_CODE_BMS_LOW_TEMP_CUTOFF] = { "BMS_LOW_TEMP_CUTOFF", ALERT_LEVEL_ERROR, 0x0A, "BMS low temperature cutoff" },
    [ALERT_CODE_BMS_CHARGER_SWITCH_ERROR] = { "BMS_CHARGER_SWITCH_ERROR", ALERT_LEVEL_ERROR, 0x0B, "BMS charger switch error" },
    [ALERT_CODE_BMS_LOAD_SWITCH_ERROR] = { "BMS_LOAD_SWITCH_ERROR", ALERT_LEVEL_ERROR, 0x0C, "BMS load switch error" },
    [ALERT_CODE_BMS_SINGLE_PORT_SWITCH_ERROR] = { "BMS_SINGLE_PORT_SWITCH_ERROR", ALERT_LEVEL_ERROR, 0x0D, "BMS single port switch error" },
    [ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED] = { "BMS_CURRENT_SENSOR_DISCONNECTED", ALERT_LEVEL_ERROR, 0x0E, "BMS external current sensor disconnected" },
    [ALERT_CODE_BMS_FULLY_DISCHARGED] = { "BMS_FULLY_DISCHARGED", ALERT_LEVEL_WARNING, 0x31, "BMS fully discharged cutoff" },
    [ALERT_CODE_BMS_LOW_TEMP_CHARGE_CUTOFF] = { "BMS_LOW_TEMP_CHARGE_CUTOFF", ALERT_LEVEL_WARNING, 0x37, "BMS low temperature charging cutoff" },
    [ALERT_CODE_BMS_CHARGER_VOLTAGE_HIGH] = { "BMS_CHARGER_VOLTAGE_HIGH", ALERT_LEVEL_WARNING, 0x38, "BMS charging done (charger voltage too high)" },
    [ALERT_CODE_BMS_CHARGER_VOLTAGE_LOW] = { "BMS_CHARGER_VOLTAGE_LOW", ALERT_LEVEL_WARNING, 0x39, "BMS charging done (charger voltage too low)" },
    [ALERT_CODE_PACK_OFFLINE] = { "PACK_OFFLINE", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_PACKS_BELOW_MIN_ONLINE] = { "PACKS_BELOW_MIN_ONLINE", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_BATTERY_NO_DATA] = { "BATTERY_NO_DATA", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_PACK_IMPLAUSIBLE] = { "PACK_IMPLAUSIBLE", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_PACK_FROZEN] = { "PACK_FROZEN", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_PACK_NO_CELL_TEMP] = { "PACK_NO_CELL_TEMP", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_PACK_REJOIN_BLOCKED] = { "PACK_REJOIN_BLOCKED", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_PACK_VOLTAGE_SPREAD] = { "PACK_VOLTAGE_SPREAD", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_PACK_SOC_SPREAD] = { "PACK_SOC_SPREAD", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_ENERGY_STATE_REFUSED] = { "ENERGY_STATE_REFUSED", ALERT_LEVEL_WARNING, 0, NULL },
    [ALERT_CODE_WEB_UNAVAILABLE] = { "WEB_UNAVAILABLE", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_UPDATE_ROLLED_BACK] = { "UPDATE_ROLLED_BACK", ALERT_LEVEL_ERROR, 0, NULL },
    [ALERT_CODE_CUSTOM] = { "CUSTOM", ALERT_LEVEL_WARNING, 0, NULL },
};

/* TinyBMS "recovered from ..." event ids and the code each one clears. */
static const struct {
    uint8_t bms_event;
    uint8_t code;
} recovered_events[] = {
    { 0x0F, ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED }, /* external current sensor connected */
    { 0x7C, ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED },
    { 0x73, ALERT_CODE_BMS_OVER_TEMP_CUTOFF },
    { 0x74, ALERT_CODE_BMS_LOW_TEMP_CHARGE_CUTOFF },
    { 0x75, ALERT_CODE_BMS_LOW_TEMP_CUTOFF },
    { 0x76, ALERT_CODE_BMS_CHARGE_OVER_CURRENT },
    { 0x77, ALERT_CODE_BMS_DISCHARGE_OVER_CURRENT },
    { 0x78, ALERT_CODE_BMS_REGEN_OVER_CURRENT },
    { 0x79, ALERT_CODE_BMS_OVER_VOLTAGE_CUTOFF },
    { 0x7A, ALERT_CODE_BMS_FULLY_DISCHARGED },
    { 0x7B, ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF },
};

const char *alert_code_name(int code)
{
    if (code < 0 || code >= ALERT_CODE_COUNT)
        return "";
    return codes[code].name;
}

int alert_code_from_name(const char *name)
{
    if (name)
        for (int c = 0; c < ALERT_CODE_CUSTOM; c++)
            if (strcmp(codes[c].name, name) == 0)
                return c;
    return ALERT_CODE_CUSTOM;
}

enum app_alert_level alert_code_default_level(int code)
{
    if (code < 0 || code >= ALERT_CODE_COUNT)
        return ALERT_LEVEL_WARNING;
    return (enum app_alert_level)codes[code].level;
}

const char *alert_level_name(int level)
{
    switch (level) {
    case ALERT_LEVEL_INFO: return "info";
    case ALERT_LEVEL_ERROR: return "error";
    default: return "warning";
    }
}

const char *alert_transition_name(int kind)
{
    switch (kind) {
    case ALERT_TRANSITION_RAISED: return "raised";
    case ALERT_TRANSITION_CLEARED: return "cleared";
    default: return "acked";
    }
}

int alert_code_for_bms_event(uint8_t event_id)
{
    for (int c = 0; event_id != 0 && c < ALERT_CODE_COUNT; c++)
        if (codes[c].bms_event == event_id)
            return c;
    return -1;
}

int alert_code_cleared_by_bms_event(uint8_t event_id)
{
    for (size_t i = 0; i < sizeof recovered_events / sizeof recovered_events[0]; i++)
        if (recovered_events[i].bms_event == event_id)
            return recovered_events[i].code;
    return -1;
}

static const char *bms_event_text(int code)
{
    return code >= 0 && code < ALERT_CODE_COUNT && codes[code].bms_text ? codes[code].bms_text : "BMS event";
}

/* ---- slots ---------------------------------------------------------------------------------- */

static uint8_t clamp_level(uint8_t level)
{
    return level > ALERT_LEVEL_ERROR ? ALERT_LEVEL_ERROR : level;
}

static bool slot_matches(const struct alert_slot *s, int code, const char *code_name, uint8_t battery_id,
                         const char *subject)
{
    if (!s->used || s->code != code || s->rec.alert.battery_id != battery_id)
        return false;
    if (code == ALERT_CODE_CUSTOM && (!code_name || strcmp(s->rec.alert.code, code_name) != 0))
        return false;
    return strcmp(s->rec.subject, subject ? subject : "") == 0;
}

static struct alert_slot *slot_find(struct alert_engine *e, int code, const char *code_name, uint8_t battery_id,
                                    const char *subject)
{
    for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS; i++)
        if (slot_matches(&e->slots[i], code, code_name, battery_id, subject))
            return &e->slots[i];
    return NULL;
}

/* Finds or creates the slot of a key. A full table reuses an idle non-latched slot (its state is
 * only a counter); NULL when every slot is in use. */
static struct alert_slot *slot_get(struct alert_engine *e, int code, const char *code_name, uint8_t battery_id,
                                   const char *subject)
{
    struct alert_slot *s = slot_find(e, code, code_name, battery_id, subject);
    if (s)
        return s;
    struct alert_slot *victim = NULL;
    for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS && !victim; i++)
        if (!e->slots[i].used)
            victim = &e->slots[i];
    for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS && !victim; i++)
        if (e->slots[i].phase == ALERT_PHASE_IDLE && !e->slots[i].condition)
            victim = &e->slots[i];
    if (!victim) {
        e->dropped++;
        return NULL;
    }
    memset(victim, 0, sizeof *victim);
    victim->used = true;
    victim->code = (uint8_t)code;
    gw_text_copy(victim->rec.alert.code, sizeof victim->rec.alert.code,
             code == ALERT_CODE_CUSTOM ? code_name : codes[code].name);
    victim->rec.alert.battery_id = battery_id;
    gw_text_copy(victim->rec.subject, sizeof victim->rec.subject, subject);
    return victim;
}

static void emit(struct alert_engine *e, enum alert_transition kind, const struct alert_slot *s)
{
    if (e->emit)
        e->emit(e->emit_ctx, kind, &s->rec);
}

static void slot_raise(struct alert_engine *e, struct alert_slot *s, int64_t wall_ms)
{
    s->phase = ALERT_PHASE_ACTIVE;
    s->raised_count++;
    e->raised_total[s->code]++;
    s->rec.alert.count = s->raised_count;
    s->rec.alert.first_seen_ms = s->pending_wall_ms ? s->pending_wall_ms : wall_ms;
    s->rec.alert.last_seen_ms = wall_ms;
    s->rec.alert.acknowledged = false;
    emit(e, ALERT_TRANSITION_RAISED, s);
}

static void slot_clear(struct alert_engine *e, struct alert_slot *s, int64_t wall_ms)
{
    s->phase = ALERT_PHASE_IDLE;
    s->pending_wall_ms = 0;
    s->rec.alert.last_seen_ms = wall_ms > s->rec.alert.last_seen_ms ? wall_ms : s->rec.alert.last_seen_ms;
    emit(e, ALERT_TRANSITION_CLEARED, s);
}

static bool elapsed(uint64_t now_ms, uint64_t since_ms, uint32_t delay_ms)
{
    return now_ms >= since_ms && now_ms - since_ms >= delay_ms;
}

/* Advances the state machine of a non-latched slot with its current condition flags. */
static void slot_step(struct alert_engine *e, struct alert_slot *s, uint64_t now_ms, int64_t wall_ms)
{
    switch (s->phase) {
    case ALERT_PHASE_IDLE:
        if (!s->condition)
            break;
        s->phase = ALERT_PHASE_PENDING_RAISE;
        s->since_ms = now_ms;
        s->pending_wall_ms = wall_ms;
        /* fall through */
    case ALERT_PHASE_PENDING_RAISE:
        if (!s->condition) {
            s->phase = ALERT_PHASE_IDLE;
            s->pending_wall_ms = 0;
        } else if (elapsed(now_ms, s->since_ms, s->raise_delay_ms)) {
            slot_raise(e, s, wall_ms);
        }
        break;
    case ALERT_PHASE_ACTIVE:
        if (!s->clear_condition)
            break;
        s->phase = ALERT_PHASE_PENDING_CLEAR;
        s->since_ms = now_ms;
        /* fall through */
    case ALERT_PHASE_PENDING_CLEAR:
        if (!s->clear_condition)
            s->phase = ALERT_PHASE_ACTIVE;
        else if (elapsed(now_ms, s->since_ms, s->clear_delay_ms))
            slot_clear(e, s, wall_ms);
        break;
    default:
        s->phase = ALERT_PHASE_IDLE;
        break;
    }
}

static bool slot_is_active(const struct alert_slot *s)
{
    return s->used && (s->phase == ALERT_PHASE_ACTIVE || s->phase == ALERT_PHASE_PENDING_CLEAR);
}

/* ---- battery state -------------------------------------------------------------------------- */

static struct alert_battery_state *battery_get(struct alert_engine *e, uint8_t battery_id)
{
    struct alert_battery_state *free_slot = NULL;
    for (size_t i = 0; i < ALERT_ENGINE_MAX_BATTERIES; i++) {
        struct alert_battery_state *b = &e->batteries[i];
        if (b->used && b->battery_id == battery_id)
            return b;
        if (!b->used && !free_slot)
            free_slot = b;
    }
    if (free_slot) {
        memset(free_slot, 0, sizeof *free_slot);
        free_slot->used = true;
        free_slot->battery_id = battery_id;
    }
    return free_slot;
}

/* ---- public --------------------------------------------------------------------------------- */

void alert_engine_init(struct alert_engine *e, const struct gw_config_alerts *cfg, alert_emit_fn emit_fn,
                       void *emit_ctx)
{
    memset(e, 0, sizeof *e);
    if (cfg)
        e->cfg = *cfg;
    e->emit = emit_fn;
    e->emit_ctx = emit_ctx;
}

/* ---- threshold rules ------------------------------------------------------------------------ */

/* What one threshold rule sees. */
struct rule_input {
    bool has_value;
    float value;       /* in the rule's unit */
    unsigned cell;     /* 1-based cell number for cell rules, 0 otherwise */
};

static void cell_extremes(const struct bms_live_data *d, unsigned *max_i, uint16_t *max_mv_x10, unsigned *min_i,
                          uint16_t *min_mv_x10)
{
    *max_i = *min_i = 0;
    *max_mv_x10 = 0;
    *min_mv_x10 = 0;
    unsigned n = d->cell_count > BMS_MAX_CELLS ? BMS_MAX_CELLS : d->cell_count;
    for (unsigned i = 0; i < n; i++) {
        uint16_t v = d->cell_mv_x10[i];
        if (v == 0) /* empty register: not a 0 V cell */
            continue;
        if (*max_i == 0 || v > *max_mv_x10) {
            *max_mv_x10 = v;
            *max_i = i + 1;
        }
        if (*min_i == 0 || v < *min_mv_x10) {
            *min_mv_x10 = v;
            *min_i = i + 1;
        }
    }
    if (*max_i == 0 && d->max_cell_mv) { /* no per-cell data: registers 40/41 */
        *max_mv_x10 = (uint16_t)(d->max_cell_mv > 6553 ? 65535 : d->max_cell_mv * 10);
        *max_i = d->max_cell_index;
    }
    if (*min_i == 0 && d->min_cell_mv) {
        *min_mv_x10 = (uint16_t)(d->min_cell_mv > 6553 ? 65535 : d->min_cell_mv * 10);
        *min_i = d->min_cell_index;
    }
}

/* What the rules of one evaluation read: a pack's fresh sample (pack rules) or the bank view
 * (bank rules), with the extremes worked out once. */
struct rule_facts {
    const struct bms_live_data *d;     /* pack rules; NULL for the bank */
    const struct battery_view *v;      /* bank rules; NULL for a pack */
    unsigned max_i, min_i;             /* 1-based cells of the extremes, 0 = none */
    uint16_t max_x10, min_x10;         /* 0.1 mV */
    bool has_tmax, has_tmin;
    int16_t tmax_dc, tmin_dc;
};

typedef struct rule_input (*rule_input_fn)(const struct rule_facts *f);

static struct rule_input in_cell_max(const struct rule_facts *f)
{
    return (struct rule_input){ f->max_x10 != 0, (float)f->max_x10 / 10000.0f, f->max_i };
}

static struct rule_input in_cell_min(const struct rule_facts *f)
{
    return (struct rule_input){ f->min_x10 != 0, (float)f->min_x10 / 10000.0f, f->min_i };
}

static struct rule_input in_pack_voltage(const struct rule_facts *f)
{
    return (struct rule_input){ f->d->pack_voltage_v > 0.0f, f->d->pack_voltage_v, 0 };
}

static struct rule_input in_temp_max(const struct rule_facts *f)
{
    return (struct rule_input){ f->has_tmax, (float)f->tmax_dc / 10.0f, 0 };
}

static struct rule_input in_temp_min(const struct rule_facts *f)
{
    return (struct rule_input){ f->has_tmin, (float)f->tmin_dc / 10.0f, 0 };
}

static struct rule_input in_discharge_current(const struct rule_facts *f)
{
    return (struct rule_input){ true, -f->d->pack_current_a, 0 };
}

static struct rule_input in_charge_current(const struct rule_facts *f)
{
    return (struct rule_input){ true, f->d->pack_current_a, 0 };
}

static struct rule_input in_cell_spread(const struct rule_facts *f)
{
    bool has_cells = f->max_x10 != 0 && f->min_x10 != 0;
    return (struct rule_input){ has_cells, (float)(f->max_x10 - f->min_x10) / 10.0f, 0 };
}

static struct rule_input in_bank_soc(const struct rule_facts *f)
{
    return (struct rule_input){ f->v->soc_pct >= 0.0f && f->v->soc_pct <= 100.5f, f->v->soc_pct, 0 };
}

/* One row per threshold rule: what it reads, which way it raises, and the words, unit and
 * decimals of its message "<who>: <label>[ <cell>][ <word>] <value> <unit> (limit <threshold>
 * <unit>)". Where a rule runs: cells, temperatures, currents and the pack voltage belong to a
 * pack (the bank's extremes are just the worst pack's, and a current threshold is a pack's);
 * the state of charge is the battery's (per-pack differences have PACK_SOC_SPREAD). */
struct threshold_rule {
    struct alert_threshold_rule_info info;
    size_t offset;        /* of the struct gw_alert_threshold in gw_config_alerts */
    rule_input_fn input;
};

#define RULE(code, field, bank, above, label, word, unit, decimals, input)                                  \
    { { code, above, bank, label, word, unit, decimals }, offsetof(struct gw_config_alerts, field), input }

static const struct threshold_rule threshold_rules[] = {
    RULE(ALERT_CODE_OVER_VOLTAGE, cell_v_high, false, true, "cell", "high", "V", 3, in_cell_max),
    RULE(ALERT_CODE_UNDER_VOLTAGE, cell_v_low, false, false, "cell", "low", "V", 3, in_cell_min),
    RULE(ALERT_CODE_PACK_OVER_VOLTAGE, pack_v_high, false, true, "voltage", "high", "V", 2, in_pack_voltage),
    RULE(ALERT_CODE_PACK_UNDER_VOLTAGE, pack_v_low, false, false, "voltage", "low", "V", 2, in_pack_voltage),
    RULE(ALERT_CODE_OVER_TEMP, temp_high, false, true, "temperature", "high", "°C", 1, in_temp_max),
    RULE(ALERT_CODE_UNDER_TEMP, temp_low, false, false, "temperature", "low", "°C", 1, in_temp_min),
    RULE(ALERT_CODE_OVER_CURRENT, discharge_current, false, true, "discharge current", "high", "A", 1,
         in_discharge_current),
    RULE(ALERT_CODE_CHARGE_OVER_CURRENT, charge_current, false, true, "charge current", "high", "A", 1,
         in_charge_current),
    RULE(ALERT_CODE_SOC_LOW, soc_low, true, false, "state of charge", "low", "%", 1, in_bank_soc),
    RULE(ALERT_CODE_SOC_HIGH, soc_high, true, true, "state of charge", "high", "%", 1, in_bank_soc),
    RULE(ALERT_CODE_CELL_IMBALANCE, cell_imbalance, false, true, "cell imbalance", NULL, "mV", 1, in_cell_spread),
};
#define N_THRESHOLD_RULES (sizeof threshold_rules / sizeof threshold_rules[0])

size_t alert_threshold_rule_count(void)
{
    return N_THRESHOLD_RULES;
}

const struct alert_threshold_rule_info *alert_threshold_rule(size_t i)
{
    return i < N_THRESHOLD_RULES ? &threshold_rules[i].info : NULL;
}

const struct gw_alert_threshold *alert_threshold_rule_config(const struct gw_config_alerts *cfg, size_t i)
{
    if (!cfg || i >= N_THRESHOLD_RULES)
        return NULL;
    return (const struct gw_alert_threshold *)((const char *)cfg + threshold_rules[i].offset);
}


void alert_engine_set_config(struct alert_engine *e, const struct gw_config_alerts *cfg, uint64_t now_ms,
                             int64_t wall_ms)
{
    (void)now_ms;
    e->cfg = *cfg;
    for (size_t r = 0; r < N_THRESHOLD_RULES; r++) {
        const struct gw_alert_threshold *t = alert_threshold_rule_config(cfg, r);
        for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS; i++) {
            struct alert_slot *s = &e->slots[i];
            if (!s->used || s->code != threshold_rules[r].info.code)
                continue;
            s->raise_delay_ms = cfg->raise_delay_ms;
            s->clear_delay_ms = cfg->clear_delay_ms;
            if (!t->enabled) {
                s->condition = false;
                s->clear_condition = true;
                if (slot_is_active(s))
                    slot_clear(e, s, wall_ms);
                s->phase = ALERT_PHASE_IDLE;
            } else {
                s->rec.alert.level = clamp_level(t->level);
            }
        }
    }
    if (!cfg->status_alerts)
        for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS; i++)
            if (slot_is_active(&e->slots[i]) && e->slots[i].code == ALERT_CODE_BMS_STATUS)
                slot_clear(e, &e->slots[i], wall_ms);
}

/* "<who>: " in front of every message of a pack or of the bank. */
static void msg_who(struct gw_text *m, const char *who)
{
    gw_text_put_str(m, who && *who ? who : "battery");
    gw_text_put_str(m, ": ");
}

/* The same for a battery id whose name may not be known yet (no view seen): "pack id <id>". */
static void msg_who_battery(struct gw_text *m, const struct alert_battery_state *b)
{
    if (b->name[0]) {
        msg_who(m, b->name);
    } else if (b->battery_id == BATTERY_BANK_ID) {
        msg_who(m, "battery");
    } else {
        gw_text_put_str(m, "pack id ");
        gw_text_put_uint(m, b->battery_id);
        gw_text_put_str(m, ": ");
    }
}

static void rule_message(struct alert_slot *s, const struct alert_threshold_rule_info *rule,
                         const struct gw_alert_threshold *t, const struct rule_input *in, const char *who)
{
    struct gw_text m;
    gw_text_init(&m, s->rec.alert.message, sizeof s->rec.alert.message);
    msg_who(&m, who);
    gw_text_put_str(&m, rule->label);
    if (in->cell) {
        gw_text_put_char(&m, ' ');
        gw_text_put_uint(&m, in->cell);
    }
    if (rule->word) {
        gw_text_put_char(&m, ' ');
        gw_text_put_str(&m, rule->word);
    }
    gw_text_put_char(&m, ' ');
    gw_text_put_fixed(&m, in->value, rule->decimals);
    gw_text_put_char(&m, ' ');
    gw_text_put_str(&m, rule->unit);
    gw_text_put_str(&m, " (limit ");
    gw_text_put_fixed(&m, t->value, rule->decimals);
    gw_text_put_char(&m, ' ');
    gw_text_put_str(&m, rule->unit);
    gw_text_put_char(&m, ')');
}

static void eval_threshold(struct alert_engine *e, size_t r, uint8_t battery_id, const char *who,
                           const struct rule_input *in, uint64_t now_ms, int64_t wall_ms)
{
    const struct alert_threshold_rule_info *rule = &threshold_rules[r].info;
    const struct gw_alert_threshold *t = alert_threshold_rule_config(&e->cfg, r);
    int code = rule->code;
    if (!t->enabled || !in->has_value)
        return; /* no evaluation: the state is kept as it is */
    float hyst = t->hysteresis > 0 ? t->hysteresis : 0;
    bool cond = rule->above ? in->value > t->value : in->value < t->value;
    bool clear = rule->above ? in->value < t->value - hyst : in->value > t->value + hyst;
    if (hyst == 0)
        clear = !cond;
    struct alert_slot *s = slot_find(e, code, NULL, battery_id, NULL);
    if (!s) {
        if (!cond)
            return; /* nothing to track until the condition first appears */
        s = slot_get(e, code, NULL, battery_id, NULL);
        if (!s)
            return;
    }
    s->latched = false;
    s->condition = cond;
    s->clear_condition = clear;
    s->raise_delay_ms = e->cfg.raise_delay_ms;
    s->clear_delay_ms = e->cfg.clear_delay_ms;
    s->rec.alert.level = clamp_level(t->level);
    s->rec.alert.threshold = t->value;
    uint8_t before = s->phase;
    if (before == ALERT_PHASE_IDLE || before == ALERT_PHASE_PENDING_RAISE) {
        if (cond) {
            s->rec.alert.value = in->value;
            rule_message(s, rule, t, in, who); /* the raise's message describes the value that raised it */
        }
    } else {
        s->rec.alert.value = in->value; /* latest value while active / waiting to clear */
        if (cond)
            s->rec.alert.last_seen_ms = wall_ms;
    }
    slot_step(e, s, now_ms, wall_ms);
}

static void eval_status(struct alert_engine *e, struct alert_battery_state *b, uint16_t status, uint64_t now_ms,
                        int64_t wall_ms)
{
    if (!b->status_known) {
        b->status_known = true;
        b->announced_status = status; /* the first status is the baseline, not a change */
        b->pending_status = status;
        b->pending_since_ms = now_ms;
        return;
    }
    if (status != b->pending_status) {
        b->pending_status = status;
        b->pending_since_ms = now_ms;
    }
    if (b->pending_status == b->announced_status || !elapsed(now_ms, b->pending_since_ms, e->cfg.raise_delay_ms))
        return;
    b->announced_status = b->pending_status;
    uint16_t st = b->pending_status;
    bool announce = st == BMS_STATUS_CHARGING || st == BMS_STATUS_FULLY_CHARGED || st == BMS_STATUS_DISCHARGING ||
                    st == BMS_STATUS_IDLE || st == BMS_STATUS_REGENERATION;
    if (!announce || !e->cfg.status_alerts)
        return;
    struct alert_slot *s = slot_get(e, ALERT_CODE_BMS_STATUS, NULL, b->battery_id, NULL);
    if (!s)
        return;
    struct gw_text m;
    gw_text_init(&m, s->rec.alert.message, sizeof s->rec.alert.message);
    msg_who(&m, b->name);
    gw_text_put_str(&m, "status ");
    gw_text_put_str(&m, bms_online_status_name(st));
    s->latched = true;
    s->rec.alert.level = ALERT_LEVEL_INFO;
    s->rec.alert.value = st;
    s->rec.alert.threshold = 0;
    s->pending_wall_ms = wall_ms;
    slot_raise(e, s, wall_ms);
}

static void tick_status(struct alert_engine *e, uint64_t now_ms, int64_t wall_ms)
{
    for (size_t i = 0; i < ALERT_ENGINE_MAX_BATTERIES; i++)
        if (e->batteries[i].used && e->batteries[i].status_known)
            eval_status(e, &e->batteries[i], e->batteries[i].pending_status, now_ms, wall_ms);
}

/* The pack rules and BMS_FAULT on one pack's fresh sample. */
static void eval_pack(struct alert_engine *e, const struct alert_battery_state *b, const struct bms_live_data *d,
                      uint64_t now_ms, int64_t wall_ms)
{
    struct rule_facts f = { .d = d };
    cell_extremes(d, &f.max_i, &f.max_x10, &f.min_i, &f.min_x10);
    f.has_tmax = bms_temp_max_dc(d, &f.tmax_dc);
    f.has_tmin = bms_temp_min_dc(d, &f.tmin_dc);
    for (size_t r = 0; r < N_THRESHOLD_RULES; r++) {
        if (threshold_rules[r].info.bank)
            continue;
        struct rule_input in = threshold_rules[r].input(&f);
        eval_threshold(e, r, b->battery_id, b->name, &in, now_ms, wall_ms);
    }

    /* BMS_FAULT: immediate raise, clear after the clear delay. */
    bool fault = d->online_status == BMS_STATUS_FAULT;
    struct alert_slot *s = slot_find(e, ALERT_CODE_BMS_FAULT, NULL, b->battery_id, NULL);
    if (fault && !s)
        s = slot_get(e, ALERT_CODE_BMS_FAULT, NULL, b->battery_id, NULL);
    if (s) {
        s->condition = fault;
        s->clear_condition = !fault;
        s->raise_delay_ms = 0;
        s->clear_delay_ms = e->cfg.clear_delay_ms;
        s->rec.alert.level = ALERT_LEVEL_ERROR;
        s->rec.alert.value = d->online_status;
        s->rec.alert.threshold = BMS_STATUS_FAULT;
        if (fault && s->phase == ALERT_PHASE_IDLE) {
            struct gw_text m;
            gw_text_init(&m, s->rec.alert.message, sizeof s->rec.alert.message);
            msg_who(&m, b->name);
            gw_text_put_str(&m, "BMS reports a fault (status 0x9B)");
        }
        if (fault)
            s->rec.alert.last_seen_ms = wall_ms;
        slot_step(e, s, now_ms, wall_ms);
    }
}

/* The bank rules on the aggregate (a pack is online). */
static void eval_bank(struct alert_engine *e, struct alert_battery_state *b, const struct battery_view *v,
                      uint64_t now_ms, int64_t wall_ms)
{
    struct rule_facts f = { .v = v };
    for (size_t r = 0; r < N_THRESHOLD_RULES; r++) {
        if (!threshold_rules[r].info.bank)
            continue;
        struct rule_input in = threshold_rules[r].input(&f);
        eval_threshold(e, r, b->battery_id, b->name, &in, now_ms, wall_ms);
    }
    eval_status(e, b, v->online_status, now_ms, wall_ms);
}

/* ---- conditions of the view ----------------------------------------------------------------- */

static bool pack_has_data(const struct battery_pack *p)
{
    return p->state == BATTERY_PACK_ONLINE || p->state == BATTERY_PACK_REJOINING;
}

/* In the bank's aggregation: fresh and not held out by the rejoin window. */
static bool pack_in_bank(const struct battery_pack *p)
{
    return pack_has_data(p) && !(p->conditions & BATTERY_COND_REJOIN_BLOCKED);
}

enum cond_scope {
    COND_PACK = 0,       /* bit of battery_pack.conditions, one alert per pack */
    COND_BANK,           /* bit of battery_view.conditions, one alert for the bank */
    COND_BANK_PER_PACK,  /* bit of battery_view.conditions, one alert per pack that is not online */
};

/* Writes the message of a raise and the alert's value. p is NULL for the bank. */
typedef void (*cond_describe_fn)(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                                 const struct alert_battery_state *b, float *value);

struct condition_rule {
    uint32_t bit;            /* enum battery_condition */
    int code;
    uint8_t scope;           /* enum cond_scope */
    uint32_t unless;         /* pack bits with an alert of their own that says it better */
    bool immediate;          /* no raise/clear delay (already timed by its source) */
    cond_describe_fn describe;
};

static void d_offline(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                      const struct alert_battery_state *b, float *value)
{
    (void)b;
    gw_text_put_str(m, battery_pack_state_name(p->state));
    if (p->state == BATTERY_PACK_NEVER_SEEN) {
        gw_text_put_str(m, " (no data since start)");
    } else {
        gw_text_put_str(m, " (last data ");
        gw_text_put_uint(m, p->sample_age_ms / 1000u);
        gw_text_put_str(m, " s ago)");
    }
    gw_text_put_str(m, ": the battery runs on ");
    gw_text_put_uint(m, v->online_count);
    gw_text_put_str(m, " of ");
    gw_text_put_uint(m, v->pack_count);
    gw_text_put_str(m, " packs");
    *value = (float)(p->sample_age_ms / 1000u);
}

static void d_comm_lost(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                        const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)p;
    gw_text_put_str(m, "BMS communication lost");
    if (b->comm_reason[0]) {
        gw_text_put_str(m, " (");
        gw_text_put_str(m, b->comm_reason);
        gw_text_put_str(m, ")");
    }
    *value = 0;
}

static void d_implausible(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                          const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)b;
    gw_text_put_str(m, "implausible samples refused");
    if (p->bad_reason[0]) {
        gw_text_put_str(m, " (");
        gw_text_put_str(m, p->bad_reason);
        gw_text_put_str(m, ")");
    }
    gw_text_put_str(m, ": pack left out");
    *value = (float)p->bad_samples;
}

static void d_frozen(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                     const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)b;
    gw_text_put_str(m, "BMS data frozen (the same sample again and again): pack left out");
    *value = (float)p->frozen_samples;
}

static void d_no_cell_temp(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                           const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)p;
    (void)b;
    gw_text_put_str(m, "no cell temperature sensor: cell heat and cold are not watched");
    *value = 0;
}

static void d_rejoin(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                     const struct alert_battery_state *b, float *value)
{
    (void)b;
    float dv = p->live.pack_voltage_v - v->voltage_v;
    gw_text_put_str(m, "kept out of the bank: ");
    gw_text_put_fixed(m, p->live.pack_voltage_v, 2);
    gw_text_put_str(m, " V vs bank ");
    gw_text_put_fixed(m, v->voltage_v, 2);
    gw_text_put_str(m, " V");
    *value = dv < 0 ? -dv : dv;
}

/* The online packs with the lowest and highest value of a quantity. */
static void spread_of(const struct battery_view *v, bool soc, const struct battery_pack **lo,
                      const struct battery_pack **hi)
{
    *lo = *hi = NULL;
    unsigned n = v->pack_count > BATTERY_MAX_PACKS ? BATTERY_MAX_PACKS : v->pack_count;
    for (unsigned i = 0; i < n; i++) {
        const struct battery_pack *p = &v->packs[i];
        if (!pack_in_bank(p))
            continue;
        float x = soc ? bms_soc_percent(&p->live) : p->live.pack_voltage_v;
        if (!*lo || x < (soc ? bms_soc_percent(&(*lo)->live) : (*lo)->live.pack_voltage_v))
            *lo = p;
        if (!*hi || x > (soc ? bms_soc_percent(&(*hi)->live) : (*hi)->live.pack_voltage_v))
            *hi = p;
    }
}

static void describe_spread(struct gw_text *m, const struct battery_view *v, bool soc, float *value)
{
    const struct battery_pack *lo, *hi;
    spread_of(v, soc, &lo, &hi);
    gw_text_put_str(m, soc ? "pack states of charge differ" : "pack voltages differ");
    if (!lo || !hi) {
        *value = 0;
        return;
    }
    float a = soc ? bms_soc_percent(&lo->live) : lo->live.pack_voltage_v;
    float z = soc ? bms_soc_percent(&hi->live) : hi->live.pack_voltage_v;
    const char *unit = soc ? " %" : " V";
    unsigned dec = soc ? 1 : 2;
    gw_text_put_str(m, " by ");
    gw_text_put_fixed(m, z - a, dec);
    gw_text_put_str(m, unit);
    gw_text_put_str(m, " (");
    gw_text_put_str(m, lo->name);
    gw_text_put_str(m, " ");
    gw_text_put_fixed(m, a, dec);
    gw_text_put_str(m, unit);
    gw_text_put_str(m, ", ");
    gw_text_put_str(m, hi->name);
    gw_text_put_str(m, " ");
    gw_text_put_fixed(m, z, dec);
    gw_text_put_str(m, unit);
    gw_text_put_str(m, ")");
    *value = z - a;
}

static void d_voltage_spread(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                             const struct alert_battery_state *b, float *value)
{
    (void)p;
    (void)b;
    describe_spread(m, v, false, value);
}

static void d_soc_spread(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                         const struct alert_battery_state *b, float *value)
{
    (void)p;
    (void)b;
    describe_spread(m, v, true, value);
}

static void d_below_min(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                        const struct alert_battery_state *b, float *value)
{
    (void)p;
    (void)b;
    gw_text_put_str(m, "only ");
    gw_text_put_uint(m, v->online_count);
    gw_text_put_str(m, " of ");
    gw_text_put_uint(m, v->pack_count);
    gw_text_put_str(m, " packs online, fewer than the minimum: charging and discharging stopped");
    *value = v->online_count;
}

static void d_no_data(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                      const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)p;
    (void)b;
    gw_text_put_str(m, "no pack has usable data: charge limits are not sent");
    *value = 0;
}

static void d_energy(struct gw_text *m, const struct battery_view *v, const struct battery_pack *p,
                     const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)p;
    (void)b;
    gw_text_put_str(m, "saved energy counters or charge state refused at start (out of range): counting from 0");
    *value = 0;
}

static const struct condition_rule condition_rules[] = {
    { BATTERY_COND_COMM_LOST, ALERT_CODE_BMS_COMM_LOST, COND_PACK, 0, true, d_comm_lost },
    { BATTERY_COND_IMPLAUSIBLE, ALERT_CODE_PACK_IMPLAUSIBLE, COND_PACK, 0, false, d_implausible },
    { BATTERY_COND_FROZEN, ALERT_CODE_PACK_FROZEN, COND_PACK, 0, false, d_frozen },
    { BATTERY_COND_NO_CELL_TEMP, ALERT_CODE_PACK_NO_CELL_TEMP, COND_PACK, 0, false, d_no_cell_temp },
    { BATTERY_COND_REJOIN_BLOCKED, ALERT_CODE_PACK_REJOIN_BLOCKED, COND_PACK, 0, false, d_rejoin },
    { BATTERY_COND_PACK_OFFLINE, ALERT_CODE_PACK_OFFLINE, COND_BANK_PER_PACK,
      BATTERY_COND_COMM_LOST | BATTERY_COND_IMPLAUSIBLE | BATTERY_COND_FROZEN, false, d_offline },
    { BATTERY_COND_BELOW_MIN_ONLINE, ALERT_CODE_PACKS_BELOW_MIN_ONLINE, COND_BANK, 0, false, d_below_min },
    { BATTERY_COND_NO_DATA, ALERT_CODE_BATTERY_NO_DATA, COND_BANK, 0, false, d_no_data },
    { BATTERY_COND_VOLTAGE_SPREAD, ALERT_CODE_PACK_VOLTAGE_SPREAD, COND_BANK, 0, false, d_voltage_spread },
    { BATTERY_COND_SOC_SPREAD, ALERT_CODE_PACK_SOC_SPREAD, COND_BANK, 0, false, d_soc_spread },
    { BATTERY_COND_ENERGY_REFUSED, ALERT_CODE_ENERGY_STATE_REFUSED, COND_BANK, 0, true, d_energy },
};
#define N_CONDITION_RULES (sizeof condition_rules / sizeof condition_rules[0])

/* One edge-driven slot: present raises after raise_delay_ms, absent clears after clear_delay_ms.
 * message/value describe a raise (ignored while the alert is active). */
static int condition_step(struct alert_engine *e, int code, uint8_t battery_id, const char *subject, bool present,
                          uint8_t level, const char *message, float value, uint32_t raise_delay_ms,
                          uint32_t clear_delay_ms, uint64_t now_ms, int64_t wall_ms)
{
    struct alert_slot *s = slot_find(e, code, NULL, battery_id, subject);
    if (!s) {
        if (!present)
            return GW_OK;
        s = slot_get(e, code, NULL, battery_id, subject);
        if (!s)
            return GW_ERR_FULL;
    }
    s->latched = false;
    s->condition = present;
    s->clear_condition = !present;
    s->raise_delay_ms = raise_delay_ms;
    s->clear_delay_ms = clear_delay_ms;
    if (present) {
        if (s->phase == ALERT_PHASE_IDLE || s->phase == ALERT_PHASE_PENDING_RAISE) {
            s->rec.alert.level = level;
            s->rec.alert.value = value;
            s->rec.alert.threshold = 0;
            gw_text_copy(s->rec.alert.message, sizeof s->rec.alert.message,
                     message && *message ? message : codes[code].name);
        }
        s->rec.alert.last_seen_ms = wall_ms;
    }
    slot_step(e, s, now_ms, wall_ms);
    return GW_OK;
}

static void eval_condition(struct alert_engine *e, const struct condition_rule *c, const struct battery_view *v,
                           const struct battery_pack *p, const struct alert_battery_state *b, bool present,
                           uint64_t now_ms, int64_t wall_ms)
{
    char text[sizeof(((struct app_alert *)0)->message)];
    float value = 0;
    if (present) {
        struct gw_text m;
        gw_text_init(&m, text, sizeof text);
        msg_who(&m, b->name);
        c->describe(&m, v, p, b, &value);
    } else {
        text[0] = '\0';
    }
    uint32_t raise = c->immediate ? 0 : e->cfg.raise_delay_ms;
    uint32_t clear = c->immediate ? 0 : e->cfg.clear_delay_ms;
    condition_step(e, c->code, b->battery_id, NULL, present, (uint8_t)alert_code_default_level(c->code), text, value,
                   raise, clear, now_ms, wall_ms);
}

static void battery_name(struct alert_battery_state *b, const char *name)
{
    gw_text_copy(b->name, sizeof b->name, name && *name ? name : "battery");
}

int alert_engine_process_view(struct alert_engine *e, const struct battery_view *v, uint64_t now_ms,
                              int64_t wall_ms)
{
    if (!e || !v)
        return GW_ERR_INVAL;
    int rc = GW_OK;
    unsigned n = v->pack_count > BATTERY_MAX_PACKS ? BATTERY_MAX_PACKS : v->pack_count;
    for (unsigned i = 0; i < n; i++) {
        const struct battery_pack *p = &v->packs[i];
        struct alert_battery_state *b = p->id == BATTERY_BANK_ID ? NULL : battery_get(e, p->id);
        if (!b) {
            rc = GW_ERR_FULL;
            continue;
        }
        battery_name(b, p->name);
        if (pack_has_data(p) && p->live.valid)
            eval_pack(e, b, &p->live, now_ms, wall_ms);
        for (size_t k = 0; k < N_CONDITION_RULES; k++) {
            const struct condition_rule *c = &condition_rules[k];
            bool present;
            if (c->scope == COND_PACK)
                present = (p->conditions & c->bit) != 0;
            else if (c->scope == COND_BANK_PER_PACK)
                present = (v->conditions & c->bit) != 0 && !pack_has_data(p) && !(p->conditions & c->unless);
            else
                continue;
            eval_condition(e, c, v, p, b, present, now_ms, wall_ms);
        }
    }

    struct alert_battery_state *bank = battery_get(e, BATTERY_BANK_ID);
    if (!bank)
        return GW_ERR_FULL;
    battery_name(bank, "battery");
    if (v->online_count > 0 && !(v->conditions & BATTERY_COND_NO_DATA))
        eval_bank(e, bank, v, now_ms, wall_ms);
    for (size_t k = 0; k < N_CONDITION_RULES; k++) {
        const struct condition_rule *c = &condition_rules[k];
        if (c->scope == COND_BANK)
            eval_condition(e, c, v, NULL, bank, (v->conditions & c->bit) != 0, now_ms, wall_ms);
    }
    return rc;
}

int alert_engine_set_comm_reason(struct alert_engine *e, uint8_t battery_id, const char *reason)
{
    if (!e)
        return GW_ERR_INVAL;
    struct alert_battery_state *b = battery_get(e, battery_id);
    if (!b)
        return GW_ERR_FULL;
    gw_text_copy(b->comm_reason, sizeof b->comm_reason, reason);
    return GW_OK;
}

static bool log_contains(const struct alert_battery_state *b, const struct bms_event *ev)
{
    for (size_t i = 0; i < b->log_count; i++)
        if (b->log[i].timestamp_s == ev->timestamp_s && b->log[i].id == ev->id)
            return true;
    return false;
}

int alert_engine_process_event_log(struct alert_engine *e, uint8_t battery_id, const struct bms_event_log *log,
                                   uint64_t now_ms, int64_t wall_ms)
{
    if (!e || !log)
        return GW_ERR_INVAL;
    if (!log->valid)
        return GW_OK;
    struct alert_battery_state *b = battery_get(e, battery_id);
    if (!b)
        return GW_ERR_FULL;
    size_t n = log->count > BMS_EVENT_SLOTS ? BMS_EVENT_SLOTS : log->count;

    if (b->log_known) {
        /* New entries, oldest first (insertion sort of indexes by timestamp: n <= 49). */
        size_t order[BMS_EVENT_SLOTS];
        size_t n_new = 0;
        for (size_t i = 0; i < n; i++) {
            if (log_contains(b, &log->events[i]))
                continue;
            size_t j = n_new++;
            while (j > 0 && log->events[order[j - 1]].timestamp_s > log->events[i].timestamp_s) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = i;
        }
        for (size_t k = 0; k < n_new; k++) {
            const struct bms_event *ev = &log->events[order[k]];
            int cleared = alert_code_cleared_by_bms_event(ev->id);
            if (cleared >= 0) {
                struct alert_slot *s = slot_find(e, cleared, NULL, battery_id, NULL);
                if (s && slot_is_active(s))
                    slot_clear(e, s, wall_ms);
                continue;
            }
            int code = alert_code_for_bms_event(ev->id);
            if (code < 0)
                continue;
            struct alert_slot *s = slot_get(e, code, NULL, battery_id, NULL);
            if (!s)
                continue;
            struct gw_text m;
            gw_text_init(&m, s->rec.alert.message, sizeof s->rec.alert.message);
            msg_who_battery(&m, b);
            gw_text_put_str(&m, bms_event_text(code));
            gw_text_put_str(&m, " (event 0x");
            gw_text_put_hex(&m, ev->id, 2);
            gw_text_put_str(&m, " at BMS time ");
            gw_text_put_uint(&m, ev->timestamp_s);
            gw_text_put_str(&m, " s)");
            s->latched = true;
            s->condition = false;
            s->rec.alert.level = alert_code_default_level(code);
            s->rec.alert.value = ev->id;
            s->rec.alert.threshold = 0;
            s->pending_wall_ms = wall_ms;
            slot_raise(e, s, wall_ms);
        }
    }
    b->log_known = true;
    b->log_count = (uint8_t)n;
    memcpy(b->log, log->events, n * sizeof log->events[0]);
    (void)now_ms;
    return GW_OK;
}

int alert_engine_set_condition(struct alert_engine *e, int code, uint8_t battery_id, const char *subject,
                               bool present, uint8_t level, const char *message, uint32_t raise_delay_ms,
                               uint32_t clear_delay_ms, uint64_t now_ms, int64_t wall_ms)
{
    if (!e || code < 0 || code >= ALERT_CODE_CUSTOM || level > ALERT_LEVEL_ERROR)
        return GW_ERR_INVAL;
    return condition_step(e, code, battery_id, subject, present, level, message, 0, raise_delay_ms, clear_delay_ms,
                          now_ms, wall_ms);
}

int alert_engine_raise(struct alert_engine *e, const char *code_name, uint8_t battery_id, const char *subject,
                       uint8_t level, const char *message, float value, float threshold, uint64_t now_ms,
                       int64_t wall_ms)
{
    (void)now_ms;
    if (!e || !code_name || !*code_name || strlen(code_name) >= sizeof(((struct app_alert *)0)->code) ||
        level > ALERT_LEVEL_ERROR)
        return GW_ERR_INVAL;
    int code = alert_code_from_name(code_name);
    struct alert_slot *s = slot_get(e, code, code_name, battery_id, subject);
    if (!s)
        return GW_ERR_FULL;
    s->latched = true;
    s->condition = false;
    s->rec.alert.level = level;
    gw_text_copy(s->rec.alert.message, sizeof s->rec.alert.message, message && *message ? message : code_name);
    s->rec.alert.value = value;
    s->rec.alert.threshold = threshold;
    s->pending_wall_ms = wall_ms;
    slot_raise(e, s, wall_ms);
    return GW_OK;
}

/* Clears an active slot explicitly. A condition that is still present starts over from IDLE
 * (so it raises again after its raise delay); a latched alert is simply gone. */
static void clear_explicit(struct alert_engine *e, struct alert_slot *s, uint64_t now_ms, int64_t wall_ms)
{
    slot_clear(e, s, wall_ms);
    if (!s->latched && s->condition) {
        s->phase = ALERT_PHASE_PENDING_RAISE;
        s->since_ms = now_ms;
        s->pending_wall_ms = wall_ms;
    }
}

int alert_engine_clear(struct alert_engine *e, const char *code_name, uint8_t battery_id, const char *subject,
                       uint64_t now_ms, int64_t wall_ms)
{
    if (!e || !code_name || !*code_name)
        return GW_ERR_INVAL;
    int code = alert_code_from_name(code_name);
    size_t n = 0;
    for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS; i++) {
        struct alert_slot *s = &e->slots[i];
        if (!slot_is_active(s) || s->code != code)
            continue;
        if (code == ALERT_CODE_CUSTOM && strcmp(s->rec.alert.code, code_name) != 0)
            continue;
        if (battery_id != ALERT_BATTERY_ANY && s->rec.alert.battery_id != battery_id)
            continue;
        if (subject && strcmp(s->rec.subject, subject) != 0)
            continue;
        clear_explicit(e, s, now_ms, wall_ms);
        n++;
    }
    return n ? GW_OK : GW_ERR_NOT_FOUND;
}

size_t alert_engine_clear_all(struct alert_engine *e, uint64_t now_ms, int64_t wall_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS; i++) {
        if (slot_is_active(&e->slots[i])) {
            clear_explicit(e, &e->slots[i], now_ms, wall_ms);
            n++;
        }
    }
    return n;
}

size_t alert_engine_ack(struct alert_engine *e, const char *code_name, int64_t wall_ms)
{
    (void)wall_ms;
    size_t n = 0;
    for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS; i++) {
        struct alert_slot *s = &e->slots[i];
        if (!slot_is_active(s) || s->rec.alert.acknowledged)
            continue;
        if (code_name && strcmp(s->rec.alert.code, code_name) != 0)
            continue;
        s->rec.alert.acknowledged = true;
        emit(e, ALERT_TRANSITION_ACKED, s);
        n++;
    }
    return n;
}

void alert_engine_tick(struct alert_engine *e, uint64_t now_ms, int64_t wall_ms)
{
    for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS; i++) {
        struct alert_slot *s = &e->slots[i];
        if (s->used && !s->latched)
            slot_step(e, s, now_ms, wall_ms);
    }
    tick_status(e, now_ms, wall_ms);
}

size_t alert_engine_active(const struct alert_engine *e, struct alert_record *out, size_t max, size_t *total)
{
    const struct alert_slot *act[ALERT_ENGINE_MAX_SLOTS];
    size_t n = 0;
    for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS; i++) {
        const struct alert_slot *s = &e->slots[i];
        if (!slot_is_active(s))
            continue;
        size_t j = n++;
        while (j > 0 && act[j - 1]->rec.alert.first_seen_ms > s->rec.alert.first_seen_ms) {
            act[j] = act[j - 1];
            j--;
        }
        act[j] = s;
    }
    if (total)
        *total = n;
    size_t copied = n < max ? n : max;
    for (size_t i = 0; i < copied; i++)
        out[i] = act[i]->rec;
    return copied;
}

size_t alert_engine_active_count(const struct alert_engine *e)
{
    size_t n = 0;
    for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS; i++)
        if (slot_is_active(&e->slots[i]))
            n++;
    return n;
}
