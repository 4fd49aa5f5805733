/* Alert rules engine (see alert_rules.h). Portable: string.h only, no stdio (messages are built
 * with the small formatter below). */
#include "alert_rules.h"

#include "gw_error.h"

#include <string.h>

/* ---- names ---------------------------------------------------------------------------------- */

static const char *const code_names[ALERT_CODE_COUNT] = {
    [ALERT_CODE_OVER_VOLTAGE] = "OVER_VOLTAGE",
    [ALERT_CODE_UNDER_VOLTAGE] = "UNDER_VOLTAGE",
    [ALERT_CODE_PACK_OVER_VOLTAGE] = "PACK_OVER_VOLTAGE",
    [ALERT_CODE_PACK_UNDER_VOLTAGE] = "PACK_UNDER_VOLTAGE",
    [ALERT_CODE_OVER_TEMP] = "OVER_TEMP",
    [ALERT_CODE_UNDER_TEMP] = "UNDER_TEMP",
    [ALERT_CODE_OVER_CURRENT] = "OVER_CURRENT",
    [ALERT_CODE_CHARGE_OVER_CURRENT] = "CHARGE_OVER_CURRENT",
    [ALERT_CODE_SOC_LOW] = "SOC_LOW",
    [ALERT_CODE_SOC_HIGH] = "SOC_HIGH",
    [ALERT_CODE_CELL_IMBALANCE] = "CELL_IMBALANCE",
    [ALERT_CODE_BMS_FAULT] = "BMS_FAULT",
    [ALERT_CODE_BMS_STATUS] = "BMS_STATUS",
    [ALERT_CODE_BMS_COMM_LOST] = "BMS_COMM_LOST",
    [ALERT_CODE_MQTT_DISCONNECTED] = "MQTT_DISCONNECTED",
    [ALERT_CODE_WIFI_DISCONNECTED] = "WIFI_DISCONNECTED",
    [ALERT_CODE_CAN_INVERTER_LINK_LOST] = "CAN_INVERTER_LINK_LOST",
    [ALERT_CODE_STORAGE_ERROR] = "STORAGE_ERROR",
    [ALERT_CODE_CONFIG_RECOVERED] = "CONFIG_RECOVERED",
    [ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF] = "BMS_UNDER_VOLTAGE_CUTOFF",
    [ALERT_CODE_BMS_OVER_VOLTAGE_CUTOFF] = "BMS_OVER_VOLTAGE_CUTOFF",
    [ALERT_CODE_BMS_OVER_TEMP_CUTOFF] = "BMS_OVER_TEMP_CUTOFF",
    [ALERT_CODE_BMS_DISCHARGE_OVER_CURRENT] = "BMS_DISCHARGE_OVER_CURRENT",
    [ALERT_CODE_BMS_CHARGE_OVER_CURRENT] = "BMS_CHARGE_OVER_CURRENT",
    [ALERT_CODE_BMS_REGEN_OVER_CURRENT] = "BMS_REGEN_OVER_CURRENT",
    [ALERT_CODE_BMS_LOW_TEMP_CUTOFF] = "BMS_LOW_TEMP_CUTOFF",
    [ALERT_CODE_BMS_CHARGER_SWITCH_ERROR] = "BMS_CHARGER_SWITCH_ERROR",
    [ALERT_CODE_BMS_LOAD_SWITCH_ERROR] = "BMS_LOAD_SWITCH_ERROR",
    [ALERT_CODE_BMS_SINGLE_PORT_SWITCH_ERROR] = "BMS_SINGLE_PORT_SWITCH_ERROR",
    [ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED] = "BMS_CURRENT_SENSOR_DISCONNECTED",
    [ALERT_CODE_BMS_FULLY_DISCHARGED] = "BMS_FULLY_DISCHARGED",
    [ALERT_CODE_BMS_LOW_TEMP_CHARGE_CUTOFF] = "BMS_LOW_TEMP_CHARGE_CUTOFF",
    [ALERT_CODE_BMS_CHARGER_VOLTAGE_HIGH] = "BMS_CHARGER_VOLTAGE_HIGH",
    [ALERT_CODE_BMS_CHARGER_VOLTAGE_LOW] = "BMS_CHARGER_VOLTAGE_LOW",
    [ALERT_CODE_PACK_OFFLINE] = "PACK_OFFLINE",
    [ALERT_CODE_PACKS_BELOW_MIN_ONLINE] = "PACKS_BELOW_MIN_ONLINE",
    [ALERT_CODE_BATTERY_NO_DATA] = "BATTERY_NO_DATA",
    [ALERT_CODE_PACK_IMPLAUSIBLE] = "PACK_IMPLAUSIBLE",
    [ALERT_CODE_PACK_FROZEN] = "PACK_FROZEN",
    [ALERT_CODE_PACK_NO_CELL_TEMP] = "PACK_NO_CELL_TEMP",
    [ALERT_CODE_PACK_REJOIN_BLOCKED] = "PACK_REJOIN_BLOCKED",
    [ALERT_CODE_PACK_VOLTAGE_SPREAD] = "PACK_VOLTAGE_SPREAD",
    [ALERT_CODE_PACK_SOC_SPREAD] = "PACK_SOC_SPREAD",
    [ALERT_CODE_ENERGY_STATE_REFUSED] = "ENERGY_STATE_REFUSED",
    [ALERT_CODE_CUSTOM] = "CUSTOM",
};

const char *alert_code_name(int code)
{
    if (code < 0 || code >= ALERT_CODE_COUNT)
        return "";
    return code_names[code];
}

int alert_code_from_name(const char *name)
{
    if (name)
        for (int c = 0; c < ALERT_CODE_CUSTOM; c++)
            if (strcmp(code_names[c], name) == 0)
                return c;
    return ALERT_CODE_CUSTOM;
}

enum app_alert_level alert_code_default_level(int code)
{
    switch (code) {
    case ALERT_CODE_OVER_VOLTAGE:
    case ALERT_CODE_UNDER_VOLTAGE:
    case ALERT_CODE_PACK_OVER_VOLTAGE:
    case ALERT_CODE_PACK_UNDER_VOLTAGE:
    case ALERT_CODE_OVER_TEMP:
    case ALERT_CODE_BMS_FAULT:
    case ALERT_CODE_BMS_COMM_LOST:
    case ALERT_CODE_STORAGE_ERROR:
    case ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF:
    case ALERT_CODE_BMS_OVER_VOLTAGE_CUTOFF:
    case ALERT_CODE_BMS_OVER_TEMP_CUTOFF:
    case ALERT_CODE_BMS_DISCHARGE_OVER_CURRENT:
    case ALERT_CODE_BMS_CHARGE_OVER_CURRENT:
    case ALERT_CODE_BMS_REGEN_OVER_CURRENT:
    case ALERT_CODE_BMS_LOW_TEMP_CUTOFF:
    case ALERT_CODE_BMS_CHARGER_SWITCH_ERROR:
    case ALERT_CODE_BMS_LOAD_SWITCH_ERROR:
    case ALERT_CODE_BMS_SINGLE_PORT_SWITCH_ERROR:
    case ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED:
    case ALERT_CODE_PACKS_BELOW_MIN_ONLINE:
    case ALERT_CODE_BATTERY_NO_DATA:
        return ALERT_LEVEL_ERROR;
    case ALERT_CODE_SOC_HIGH:
    case ALERT_CODE_BMS_STATUS:
        return ALERT_LEVEL_INFO;
    default:
        return ALERT_LEVEL_WARNING;
    }
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
    switch (event_id) {
    case 0x02: return ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF;
    case 0x03: return ALERT_CODE_BMS_OVER_VOLTAGE_CUTOFF;
    case 0x04: return ALERT_CODE_BMS_OVER_TEMP_CUTOFF;
    case 0x05: return ALERT_CODE_BMS_DISCHARGE_OVER_CURRENT;
    case 0x06: return ALERT_CODE_BMS_CHARGE_OVER_CURRENT;
    case 0x07: return ALERT_CODE_BMS_REGEN_OVER_CURRENT;
    case 0x0A: return ALERT_CODE_BMS_LOW_TEMP_CUTOFF;
    case 0x0B: return ALERT_CODE_BMS_CHARGER_SWITCH_ERROR;
    case 0x0C: return ALERT_CODE_BMS_LOAD_SWITCH_ERROR;
    case 0x0D: return ALERT_CODE_BMS_SINGLE_PORT_SWITCH_ERROR;
    case 0x0E: return ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED;
    case 0x31: return ALERT_CODE_BMS_FULLY_DISCHARGED;
    case 0x37: return ALERT_CODE_BMS_LOW_TEMP_CHARGE_CUTOFF;
    case 0x38: return ALERT_CODE_BMS_CHARGER_VOLTAGE_HIGH;
    case 0x39: return ALERT_CODE_BMS_CHARGER_VOLTAGE_LOW;
    default: return -1;
    }
}

int alert_code_cleared_by_bms_event(uint8_t event_id)
{
    switch (event_id) {
    case 0x0F: /* external current sensor connected */
    case 0x7C: return ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED;
    case 0x73: return ALERT_CODE_BMS_OVER_TEMP_CUTOFF;
    case 0x74: return ALERT_CODE_BMS_LOW_TEMP_CHARGE_CUTOFF;
    case 0x75: return ALERT_CODE_BMS_LOW_TEMP_CUTOFF;
    case 0x76: return ALERT_CODE_BMS_CHARGE_OVER_CURRENT;
    case 0x77: return ALERT_CODE_BMS_DISCHARGE_OVER_CURRENT;
    case 0x78: return ALERT_CODE_BMS_REGEN_OVER_CURRENT;
    case 0x79: return ALERT_CODE_BMS_OVER_VOLTAGE_CUTOFF;
    case 0x7A: return ALERT_CODE_BMS_FULLY_DISCHARGED;
    case 0x7B: return ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF;
    default: return -1;
    }
}

static const char *bms_event_text(int code)
{
    switch (code) {
    case ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF: return "BMS under-voltage cutoff";
    case ALERT_CODE_BMS_OVER_VOLTAGE_CUTOFF: return "BMS over-voltage cutoff";
    case ALERT_CODE_BMS_OVER_TEMP_CUTOFF: return "BMS over-temperature cutoff";
    case ALERT_CODE_BMS_DISCHARGE_OVER_CURRENT: return "BMS discharging over-current cutoff";
    case ALERT_CODE_BMS_CHARGE_OVER_CURRENT: return "BMS charging over-current cutoff";
    case ALERT_CODE_BMS_REGEN_OVER_CURRENT: return "BMS regeneration over-current cutoff";
    case ALERT_CODE_BMS_LOW_TEMP_CUTOFF: return "BMS low temperature cutoff";
    case ALERT_CODE_BMS_CHARGER_SWITCH_ERROR: return "BMS charger switch error";
    case ALERT_CODE_BMS_LOAD_SWITCH_ERROR: return "BMS load switch error";
    case ALERT_CODE_BMS_SINGLE_PORT_SWITCH_ERROR: return "BMS single port switch error";
    case ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED: return "BMS external current sensor disconnected";
    case ALERT_CODE_BMS_FULLY_DISCHARGED: return "BMS fully discharged cutoff";
    case ALERT_CODE_BMS_LOW_TEMP_CHARGE_CUTOFF: return "BMS low temperature charging cutoff";
    case ALERT_CODE_BMS_CHARGER_VOLTAGE_HIGH: return "BMS charging done (charger voltage too high)";
    case ALERT_CODE_BMS_CHARGER_VOLTAGE_LOW: return "BMS charging done (charger voltage too low)";
    default: return "BMS event";
    }
}

/* ---- tiny message builder (no stdio in core) ------------------------------------------------ */

struct msg {
    char *buf;
    size_t size;
    size_t len;
};

static void msg_init(struct msg *m, char *buf, size_t size)
{
    m->buf = buf;
    m->size = size;
    m->len = 0;
    buf[0] = '\0';
}

static void msg_str(struct msg *m, const char *s)
{
    while (*s && m->len + 1 < m->size)
        m->buf[m->len++] = *s++;
    m->buf[m->len] = '\0';
}

static void msg_uint(struct msg *m, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v && n < sizeof tmp);
    char out[24];
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    msg_str(m, out);
}

/* Fixed-point decimal with rounding half away from zero; decimals 0..4. */
static void msg_fixed(struct msg *m, float value, unsigned decimals)
{
    static const uint32_t scale[] = { 1, 10, 100, 1000, 10000 };
    if (decimals > 4)
        decimals = 4;
    double v = (double)value;
    if (v != v) { /* NaN */
        msg_str(m, "nan");
        return;
    }
    bool negative = v < 0;
    if (negative)
        v = -v;
    if (v > 1e12)
        v = 1e12;
    uint64_t scaled = (uint64_t)(v * scale[decimals] + 0.5);
    if (negative && scaled != 0)
        msg_str(m, "-");
    msg_uint(m, scaled / scale[decimals]);
    if (decimals) {
        char frac[8];
        uint64_t f = scaled % scale[decimals];
        for (unsigned i = decimals; i > 0; i--) {
            frac[i - 1] = (char)('0' + f % 10u);
            f /= 10u;
        }
        frac[decimals] = '\0';
        msg_str(m, ".");
        msg_str(m, frac);
    }
}

static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= size)
        n = size - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
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
    copy_str(victim->rec.alert.code, sizeof victim->rec.alert.code,
             code == ALERT_CODE_CUSTOM ? code_name : code_names[code]);
    victim->rec.alert.battery_id = battery_id;
    copy_str(victim->rec.subject, sizeof victim->rec.subject, subject);
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

/* Where a rule runs: on each pack with fresh data, or on the bank aggregate. Cells,
 * temperatures, currents and the pack voltage belong to a pack (the bank's extremes are just
 * the worst pack's, and a current threshold is a pack's); the state of charge is the battery's
 * (per-pack differences have PACK_SOC_SPREAD). */
enum rule_scope { SCOPE_PACK = 0, SCOPE_BANK = 1 };

struct threshold_rule {
    int code;
    size_t offset;      /* of the struct gw_alert_threshold in gw_config_alerts */
    uint8_t scope;      /* enum rule_scope */
    bool high;          /* raised above the threshold (else below) */
    const char *what;   /* message: "<who>: <what>[ <cell>] <word> <value> <unit> (limit ...)" */
    const char *word;   /* "high" / "low", NULL for none */
    const char *unit;
    uint8_t decimals;
};

static const struct threshold_rule threshold_rules[] = {
    { ALERT_CODE_OVER_VOLTAGE, offsetof(struct gw_config_alerts, cell_v_high), SCOPE_PACK, true, "cell", "high",
      "V", 3 },
    { ALERT_CODE_UNDER_VOLTAGE, offsetof(struct gw_config_alerts, cell_v_low), SCOPE_PACK, false, "cell", "low",
      "V", 3 },
    { ALERT_CODE_PACK_OVER_VOLTAGE, offsetof(struct gw_config_alerts, pack_v_high), SCOPE_PACK, true, "voltage",
      "high", "V", 2 },
    { ALERT_CODE_PACK_UNDER_VOLTAGE, offsetof(struct gw_config_alerts, pack_v_low), SCOPE_PACK, false, "voltage",
      "low", "V", 2 },
    { ALERT_CODE_OVER_TEMP, offsetof(struct gw_config_alerts, temp_high), SCOPE_PACK, true, "temperature", "high",
      "°C", 1 },
    { ALERT_CODE_UNDER_TEMP, offsetof(struct gw_config_alerts, temp_low), SCOPE_PACK, false, "temperature", "low",
      "°C", 1 },
    { ALERT_CODE_OVER_CURRENT, offsetof(struct gw_config_alerts, discharge_current), SCOPE_PACK, true,
      "discharge current", "high", "A", 1 },
    { ALERT_CODE_CHARGE_OVER_CURRENT, offsetof(struct gw_config_alerts, charge_current), SCOPE_PACK, true,
      "charge current", "high", "A", 1 },
    { ALERT_CODE_SOC_LOW, offsetof(struct gw_config_alerts, soc_low), SCOPE_BANK, false, "state of charge", "low",
      "%", 1 },
    { ALERT_CODE_SOC_HIGH, offsetof(struct gw_config_alerts, soc_high), SCOPE_BANK, true, "state of charge", "high",
      "%", 1 },
    { ALERT_CODE_CELL_IMBALANCE, offsetof(struct gw_config_alerts, cell_imbalance), SCOPE_PACK, true,
      "cell imbalance", NULL, "mV", 1 },
};
#define N_THRESHOLD_RULES (sizeof threshold_rules / sizeof threshold_rules[0])

static const struct gw_alert_threshold *rule_threshold(const struct gw_config_alerts *cfg, size_t i)
{
    return (const struct gw_alert_threshold *)((const char *)cfg + threshold_rules[i].offset);
}

void alert_engine_set_config(struct alert_engine *e, const struct gw_config_alerts *cfg, uint64_t now_ms,
                             int64_t wall_ms)
{
    (void)now_ms;
    e->cfg = *cfg;
    for (size_t r = 0; r < N_THRESHOLD_RULES; r++) {
        const struct gw_alert_threshold *t = rule_threshold(cfg, r);
        for (size_t i = 0; i < ALERT_ENGINE_MAX_SLOTS; i++) {
            struct alert_slot *s = &e->slots[i];
            if (!s->used || s->code != threshold_rules[r].code)
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

/* "<who>: " in front of every message of a pack or of the bank. */
static void msg_who(struct msg *m, const char *who)
{
    msg_str(m, who && *who ? who : "battery");
    msg_str(m, ": ");
}

/* The same for a battery id whose name may not be known yet (no view seen): "pack id <id>". */
static void msg_who_battery(struct msg *m, const struct alert_battery_state *b)
{
    if (b->name[0]) {
        msg_who(m, b->name);
    } else if (b->battery_id == BATTERY_BANK_ID) {
        msg_who(m, "battery");
    } else {
        msg_str(m, "pack id ");
        msg_uint(m, b->battery_id);
        msg_str(m, ": ");
    }
}

static void rule_message(struct alert_slot *s, const struct threshold_rule *rule, const struct gw_alert_threshold *t,
                         const struct rule_input *in, const char *who)
{
    struct msg m;
    msg_init(&m, s->rec.alert.message, sizeof s->rec.alert.message);
    msg_who(&m, who);
    msg_str(&m, rule->what);
    if (in->cell) {
        msg_str(&m, " ");
        msg_uint(&m, in->cell);
    }
    if (rule->word) {
        msg_str(&m, " ");
        msg_str(&m, rule->word);
    }
    msg_str(&m, " ");
    msg_fixed(&m, in->value, rule->decimals);
    msg_str(&m, " ");
    msg_str(&m, rule->unit);
    msg_str(&m, " (limit ");
    msg_fixed(&m, t->value, rule->decimals);
    msg_str(&m, " ");
    msg_str(&m, rule->unit);
    msg_str(&m, ")");
}

static void eval_threshold(struct alert_engine *e, size_t r, uint8_t battery_id, const char *who,
                           const struct rule_input *in, uint64_t now_ms, int64_t wall_ms)
{
    const struct threshold_rule *rule = &threshold_rules[r];
    const struct gw_alert_threshold *t = rule_threshold(&e->cfg, r);
    int code = rule->code;
    if (!t->enabled || !in->has_value)
        return; /* no evaluation: the state is kept as it is */
    float hyst = t->hysteresis > 0 ? t->hysteresis : 0;
    bool cond = rule->high ? in->value > t->value : in->value < t->value;
    bool clear = rule->high ? in->value < t->value - hyst : in->value > t->value + hyst;
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
    struct msg m;
    msg_init(&m, s->rec.alert.message, sizeof s->rec.alert.message);
    msg_who(&m, b->name);
    msg_str(&m, "status ");
    msg_str(&m, bms_online_status_name(st));
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
    unsigned max_i, min_i;
    uint16_t max_x10, min_x10;
    cell_extremes(d, &max_i, &max_x10, &min_i, &min_x10);
    int16_t tmax = 0, tmin = 0;
    bool has_tmax = bms_temp_max_dc(d, &tmax);
    bool has_tmin = bms_temp_min_dc(d, &tmin);
    bool has_cells = max_x10 != 0 && min_x10 != 0;

    struct rule_input in[N_THRESHOLD_RULES];
    memset(in, 0, sizeof in);
    for (size_t r = 0; r < N_THRESHOLD_RULES; r++) {
        switch (threshold_rules[r].code) {
        case ALERT_CODE_OVER_VOLTAGE:
            in[r] = (struct rule_input){ max_x10 != 0, (float)max_x10 / 10000.0f, max_i };
            break;
        case ALERT_CODE_UNDER_VOLTAGE:
            in[r] = (struct rule_input){ min_x10 != 0, (float)min_x10 / 10000.0f, min_i };
            break;
        case ALERT_CODE_PACK_OVER_VOLTAGE:
        case ALERT_CODE_PACK_UNDER_VOLTAGE:
            in[r] = (struct rule_input){ d->pack_voltage_v > 0.0f, d->pack_voltage_v, 0 };
            break;
        case ALERT_CODE_OVER_TEMP:
            in[r] = (struct rule_input){ has_tmax, (float)tmax / 10.0f, 0 };
            break;
        case ALERT_CODE_UNDER_TEMP:
            in[r] = (struct rule_input){ has_tmin, (float)tmin / 10.0f, 0 };
            break;
        case ALERT_CODE_OVER_CURRENT:
            in[r] = (struct rule_input){ true, -d->pack_current_a, 0 };
            break;
        case ALERT_CODE_CHARGE_OVER_CURRENT:
            in[r] = (struct rule_input){ true, d->pack_current_a, 0 };
            break;
        case ALERT_CODE_CELL_IMBALANCE:
            in[r] = (struct rule_input){ has_cells, (float)(max_x10 - min_x10) / 10.0f, 0 };
            break;
        default:
            break; /* a bank rule */
        }
    }
    for (size_t r = 0; r < N_THRESHOLD_RULES; r++)
        if (threshold_rules[r].scope == SCOPE_PACK)
            eval_threshold(e, r, b->battery_id, b->name, &in[r], now_ms, wall_ms);

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
            struct msg m;
            msg_init(&m, s->rec.alert.message, sizeof s->rec.alert.message);
            msg_who(&m, b->name);
            msg_str(&m, "BMS reports a fault (status 0x9B)");
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
    for (size_t r = 0; r < N_THRESHOLD_RULES; r++) {
        if (threshold_rules[r].scope != SCOPE_BANK)
            continue;
        struct rule_input in = { 0 };
        if (threshold_rules[r].code == ALERT_CODE_SOC_LOW || threshold_rules[r].code == ALERT_CODE_SOC_HIGH)
            in = (struct rule_input){ v->soc_pct >= 0.0f && v->soc_pct <= 100.5f, v->soc_pct, 0 };
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
typedef void (*cond_describe_fn)(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                                 const struct alert_battery_state *b, float *value);

struct condition_rule {
    uint32_t bit;            /* enum battery_condition */
    int code;
    uint8_t scope;           /* enum cond_scope */
    uint32_t unless;         /* pack bits with an alert of their own that says it better */
    bool immediate;          /* no raise/clear delay (already timed by its source) */
    cond_describe_fn describe;
};

static void d_offline(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                      const struct alert_battery_state *b, float *value)
{
    (void)b;
    msg_str(m, battery_pack_state_name(p->state));
    if (p->state == BATTERY_PACK_NEVER_SEEN) {
        msg_str(m, " (no data since start)");
    } else {
        msg_str(m, " (last data ");
        msg_uint(m, p->sample_age_ms / 1000u);
        msg_str(m, " s ago)");
    }
    msg_str(m, ": the battery runs on ");
    msg_uint(m, v->online_count);
    msg_str(m, " of ");
    msg_uint(m, v->pack_count);
    msg_str(m, " packs");
    *value = (float)(p->sample_age_ms / 1000u);
}

static void d_comm_lost(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                        const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)p;
    msg_str(m, "BMS communication lost");
    if (b->comm_reason[0]) {
        msg_str(m, " (");
        msg_str(m, b->comm_reason);
        msg_str(m, ")");
    }
    *value = 0;
}

static void d_implausible(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                          const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)b;
    msg_str(m, "implausible samples refused");
    if (p->bad_reason[0]) {
        msg_str(m, " (");
        msg_str(m, p->bad_reason);
        msg_str(m, ")");
    }
    msg_str(m, ": pack left out");
    *value = (float)p->bad_samples;
}

static void d_frozen(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                     const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)b;
    msg_str(m, "BMS data frozen (the same sample again and again): pack left out");
    *value = (float)p->frozen_samples;
}

static void d_no_cell_temp(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                           const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)p;
    (void)b;
    msg_str(m, "no cell temperature sensor: cell heat and cold are not watched");
    *value = 0;
}

static void d_rejoin(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                     const struct alert_battery_state *b, float *value)
{
    (void)b;
    float dv = p->live.pack_voltage_v - v->voltage_v;
    msg_str(m, "kept out of the bank: ");
    msg_fixed(m, p->live.pack_voltage_v, 2);
    msg_str(m, " V vs bank ");
    msg_fixed(m, v->voltage_v, 2);
    msg_str(m, " V");
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

static void describe_spread(struct msg *m, const struct battery_view *v, bool soc, float *value)
{
    const struct battery_pack *lo, *hi;
    spread_of(v, soc, &lo, &hi);
    msg_str(m, soc ? "pack states of charge differ" : "pack voltages differ");
    if (!lo || !hi) {
        *value = 0;
        return;
    }
    float a = soc ? bms_soc_percent(&lo->live) : lo->live.pack_voltage_v;
    float z = soc ? bms_soc_percent(&hi->live) : hi->live.pack_voltage_v;
    const char *unit = soc ? " %" : " V";
    unsigned dec = soc ? 1 : 2;
    msg_str(m, " by ");
    msg_fixed(m, z - a, dec);
    msg_str(m, unit);
    msg_str(m, " (");
    msg_str(m, lo->name);
    msg_str(m, " ");
    msg_fixed(m, a, dec);
    msg_str(m, unit);
    msg_str(m, ", ");
    msg_str(m, hi->name);
    msg_str(m, " ");
    msg_fixed(m, z, dec);
    msg_str(m, unit);
    msg_str(m, ")");
    *value = z - a;
}

static void d_voltage_spread(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                             const struct alert_battery_state *b, float *value)
{
    (void)p;
    (void)b;
    describe_spread(m, v, false, value);
}

static void d_soc_spread(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                         const struct alert_battery_state *b, float *value)
{
    (void)p;
    (void)b;
    describe_spread(m, v, true, value);
}

static void d_below_min(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                        const struct alert_battery_state *b, float *value)
{
    (void)p;
    (void)b;
    msg_str(m, "only ");
    msg_uint(m, v->online_count);
    msg_str(m, " of ");
    msg_uint(m, v->pack_count);
    msg_str(m, " packs online, fewer than the minimum: charging and discharging stopped");
    *value = v->online_count;
}

static void d_no_data(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                      const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)p;
    (void)b;
    msg_str(m, "no pack has usable data: charge limits are not sent");
    *value = 0;
}

static void d_energy(struct msg *m, const struct battery_view *v, const struct battery_pack *p,
                     const struct alert_battery_state *b, float *value)
{
    (void)v;
    (void)p;
    (void)b;
    msg_str(m, "saved energy counters or charge state refused at start (out of range): counting from 0");
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
            copy_str(s->rec.alert.message, sizeof s->rec.alert.message,
                     message && *message ? message : code_names[code]);
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
        struct msg m;
        msg_init(&m, text, sizeof text);
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
    copy_str(b->name, sizeof b->name, name && *name ? name : "battery");
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
    copy_str(b->comm_reason, sizeof b->comm_reason, reason);
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
            struct msg m;
            msg_init(&m, s->rec.alert.message, sizeof s->rec.alert.message);
            msg_who_battery(&m, b);
            msg_str(&m, bms_event_text(code));
            msg_str(&m, " (event 0x");
            static const char hex[] = "0123456789ABCDEF";
            char h[3] = { hex[ev->id >> 4], hex[ev->id & 15], '\0' };
            msg_str(&m, h);
            msg_str(&m, " at BMS time ");
            msg_uint(&m, ev->timestamp_s);
            msg_str(&m, " s)");
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
    copy_str(s->rec.alert.message, sizeof s->rec.alert.message, message && *message ? message : code_name);
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

void alert_engine_add_count(struct alert_engine *e, int code, uint32_t count)
{
    if (code >= 0 && code < ALERT_CODE_COUNT)
        e->raised_total[code] += count;
}
