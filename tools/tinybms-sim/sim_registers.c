/* Register image of the simulated TinyBMS: see sim_registers.h. */
#include "sim_registers.h"

#include <math.h>
#include <string.h>

#include "gw_error.h"

/* Firmware identity served in registers 500..503 and by commands 0x1E/0x1F. */
#define HW_VERSION 0x02
#define HW_CHANGES 0x01
#define FW_PUBLIC_NEW 0x5A
#define FW_PUBLIC_OLD 0x46
#define FW_INTERNAL_NEW 0x0244
#define FW_INTERNAL_OLD 0x0190
#define BOOTLOADER_VERSION 0x03
#define PROFILE_VERSION 0x01

struct setting_def {
    uint16_t reg;
    int32_t min, max;      /* signed for 319/320 */
    int32_t def;           /* default unless overridden from the model config */
    bool newer_fw;         /* only revision-D firmware has it */
    bool is_signed;
};

/* Documented settings (spec: "Settings (read/write, 300..343)"). Registers 312/313 are the low
 * and high word of the u32 pulses-per-unit; 330 is validated per byte. */
static const struct setting_def settings_table[] = {
    { 300, 1200, 4500, 3650, false, false },  /* fully charged voltage, mV */
    { 301, 1000, 3500, 3000, false, false },  /* fully discharged voltage, mV */
    { 303, 1000, 4500, 3400, false, false },  /* early balancing threshold, mV */
    { 304, 100, 5000, 1000, false, false },   /* charge finished current, mA */
    { 305, 1, 750, 300, true, false },        /* peak discharge current cutoff, A */
    { 306, 10, 65500, 28000, false, false },  /* capacity, 0.01 Ah */
    { 307, 4, 16, 16, false, false },         /* series cells */
    { 308, 15, 100, 15, false, false },       /* allowed disbalance, mV */
    { 310, 5, 60, 20, true, false },          /* charger startup delay, s */
    { 311, 0, 60, 5, true, false },           /* charger disable delay, s */
    { 312, 0, 0xFFFF, 1000, false, false },   /* pulses per unit, low word */
    { 313, 0, 1, 0, false, false },           /* pulses per unit, high word */
    { 314, 1, 5, 2, false, false },           /* distance unit */
    { 315, 1200, 4500, 3650, false, false },  /* over-voltage cutoff, mV */
    { 316, 800, 3500, 2800, false, false },   /* under-voltage cutoff, mV */
    { 317, 1, 750, 200, false, false },       /* discharge over-current cutoff, A */
    { 318, 1, 750, 150, false, false },       /* charge over-current cutoff, A */
    { 319, 20, 90, 60, false, true },         /* over-heat cutoff, degC */
    { 320, -40, 10, 0, false, true },         /* low temperature charger cutoff, degC */
    { 321, 60, 95, 90, true, false },         /* charge restart level, % */
    { 322, 10, 65000, 5000, true, false },    /* battery maximum cycles */
    { 323, 0, 50000, 50000, true, false },    /* SOH, write to set, 0.002 % */
    { 328, 0, 50000, 25000, false, false },   /* SOC, write to set, 0.002 % */
    { 329, 0, 7, 0, true, false },            /* flags */
    { 330, 0x0000, 0x1E01, 0x0001, false, false }, /* charger type | OC timeout << 8 */
    { 331, 0, 8, 0, false, false },           /* load switch type */
    { 332, 1, 30, 5, false, false },          /* automatic recovery, s */
    { 333, 1, 9, 1, false, false },           /* charger switch type */
    { 334, 0, 6, 0, false, false },           /* ignition */
    { 335, 1, 7, 1, false, false },           /* charger detection */
    { 336, 0, 2, 0, false, false },           /* speed sensor input */
    { 337, 0, 10, 0, false, false },          /* precharge pin (1 invalid) */
    { 338, 0, 7, 3, false, false },           /* precharge duration */
    { 339, 0, 1, 0, false, false },           /* temperature sensor type */
    { 340, 0, 1, 0, false, false },           /* BMS operation mode */
    { 341, 0, 8, 0, false, false },           /* single port switch type */
    { 342, 0, 7, 0, false, false },           /* broadcast time */
    { 343, 0, 2, 0, false, false },           /* protocol */
};

#define SETTINGS_COUNT (sizeof settings_table / sizeof settings_table[0])

static const struct setting_def *find_setting(uint16_t reg)
{
    for (size_t i = 0; i < SETTINGS_COUNT; i++)
        if (settings_table[i].reg == reg)
            return &settings_table[i];
    return NULL;
}

/* Registers only revision-D firmware has (live 45 plus the newer settings). */
static bool newer_only(uint16_t reg)
{
    if (reg == 45)
        return true;
    const struct setting_def *d = find_setting(reg);
    return d && d->newer_fw;
}

unsigned sim_registers_cell_register(unsigned cells, unsigned cell)
{
    if (cells > BATTERY_MODEL_MAX_CELLS)
        cells = BATTERY_MODEL_MAX_CELLS;
    return BATTERY_MODEL_MAX_CELLS - cells + cell;
}

static uint16_t round_u16(double v)
{
    if (!(v > 0.0))
        return 0;
    if (v >= 65535.0)
        return 65535;
    return (uint16_t)lround(v);
}

static uint16_t temp_raw(float c)
{
    double v = floor((double)c * 10.0 + 0.5);
    if (v < -32767.0)
        v = -32767.0;
    if (v > 32767.0)
        v = 32767.0;
    return (uint16_t)(int16_t)v;
}

static void put_u32(uint16_t *regs, uint32_t v)
{
    regs[0] = (uint16_t)(v & 0xFFFF);
    regs[1] = (uint16_t)(v >> 16);
}

static void put_float(uint16_t *regs, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put_u32(regs, u);
}

/* The live registers as the model gives them (no fault). */
static void live_from_model(const struct sim_bms *b, uint16_t out[SIM_LIVE_COUNT])
{
    const struct battery_model *m = &b->model;
    unsigned n = m->cfg.cells;
    memset(out, 0, sizeof(uint16_t) * SIM_LIVE_COUNT);
    uint16_t min_raw = 0xFFFF, max_raw = 0;
    for (unsigned i = 0; i < n && i < BATTERY_MODEL_MAX_CELLS; i++) {
        uint16_t raw = round_u16((double)m->cell_voltage_v[i] * 10000.0);
        out[sim_registers_cell_register(n, i)] = raw;
        if (raw < min_raw)
            min_raw = raw;
        if (raw > max_raw)
            max_raw = raw;
    }
    if (n == 0)
        min_raw = 0;
    put_u32(&out[32], (uint32_t)m->lifetime_s);
    uint32_t time_left = 0;
    if (m->current_a < -0.1f) {
        double s = m->soc_ah / (double)(-m->current_a) * 3600.0;
        time_left = s > 4.0e9 ? 4000000000u : (uint32_t)s;
    }
    put_u32(&out[34], time_left);
    put_float(&out[36], battery_model_pack_voltage(m));
    put_float(&out[38], m->current_a);
    /* Min/max in mV from the very cell values served, so both views agree. */
    out[40] = (uint16_t)((min_raw + 5u) / 10u);
    out[41] = (uint16_t)((max_raw + 5u) / 10u);
    out[42] = m->ext_sensor_connected[0] ? temp_raw(m->temp_ext_c[0]) : (uint16_t)0x8000;
    out[43] = m->ext_sensor_connected[1] ? temp_raw(m->temp_ext_c[1]) : (uint16_t)0x8000;
    out[44] = 0; /* no speed sensor: distance left unknown */
    out[45] = round_u16((double)m->soh * 50000.0);
    double soc = (double)battery_model_soc(m) * 1.0e8;
    put_u32(&out[46], soc <= 0.0 ? 0u : soc >= 1.0e8 ? 100000000u : (uint32_t)llround(soc));
    out[48] = temp_raw(m->temp_internal_c);
    out[50] = battery_model_status(m);
    out[51] = m->balancing_decision_bits;
    out[52] = m->balancing_bits;
    out[53] = (uint16_t)n;
    put_float(&out[54], 0.0f);
}

/* ---- fault modes: one row per fault, the register words it overwrites ---- */

#define FAULT_REG_CELL1 0xFFFFu  /* the register of user cell 1 (16 - n) */

enum fault_word { FW_U16, FW_U32, FW_FLOAT };

struct fault_write {
    uint16_t reg;          /* first register, or FAULT_REG_CELL1 */
    uint8_t type;          /* enum fault_word: one register, or two (low word first) */
    double value;
};

struct fault_def {
    const char *name;
    const char *description;
    bool frozen;
    unsigned n;
    struct fault_write w[3];
};

static const struct fault_def fault_table[SIM_FAULT_COUNT] = {
    [SIM_FAULT_NONE] = { "none", "no fault: the model's values", false, 0, { { 0, 0, 0 } } },
    [SIM_FAULT_PACK_ZERO] = { "impossible-pack-zero", "pack voltage 0 V (regs 36-37)", false, 1,
                              { { 36, FW_FLOAT, 0.0 } } },
    [SIM_FAULT_PACK_NEGATIVE] = { "impossible-pack-negative", "pack voltage -53 V (regs 36-37)",
                                  false, 1, { { 36, FW_FLOAT, -53.0 } } },
    [SIM_FAULT_PACK_HUGE] = { "impossible-pack-huge", "pack voltage 1e30 V (regs 36-37)", false, 1,
                              { { 36, FW_FLOAT, 1e30 } } },
    [SIM_FAULT_CURRENT_HUGE] = { "impossible-current-huge", "pack current 1e30 A (regs 38-39)",
                                 false, 1, { { 38, FW_FLOAT, 1e30 } } },
    [SIM_FAULT_CELL_MAX] = { "impossible-cell-max",
                             "cell 1 register 0xFFFF = 6.5535 V, max cell (reg 41) 6554 mV", false, 2,
                             { { FAULT_REG_CELL1, FW_U16, 0xFFFF }, { 41, FW_U16, 6554 } } },
    [SIM_FAULT_SOC_HUGE] = { "impossible-soc-huge", "SOC 0xFFFFFFFF = 4294.967295 % (regs 46-47)",
                             false, 1, { { 46, FW_U32, 4294967295.0 } } },
    [SIM_FAULT_TEMP_HUGE] = { "impossible-temp-huge",
                              "external sensor 1 32767 = 3276.7 degC (reg 42)", false, 1,
                              { { 42, FW_U16, 32767 } } },
    [SIM_FAULT_FROZEN] = { "frozen", "registers 0..55 (lifetime counter included) stop changing",
                           true, 0, { { 0, 0, 0 } } },
    [SIM_FAULT_NO_EXT_TEMP] = { "no-ext-temp", "external sensors absent: regs 42, 43 = -32768",
                                false, 2, { { 42, FW_U16, 0x8000 }, { 43, FW_U16, 0x8000 } } },
    [SIM_FAULT_NO_TEMP] = { "no-temp", "all sensors absent: regs 42, 43, 48 = -32768", false, 3,
                            { { 42, FW_U16, 0x8000 }, { 43, FW_U16, 0x8000 }, { 48, FW_U16, 0x8000 } } },
};

const char *sim_fault_name(enum sim_fault f)
{
    return (unsigned)f < SIM_FAULT_COUNT ? fault_table[f].name : "?";
}

const char *sim_fault_description(enum sim_fault f)
{
    return (unsigned)f < SIM_FAULT_COUNT ? fault_table[f].description : "?";
}

int sim_fault_from_name(const char *name, enum sim_fault *out)
{
    if (!name || !out)
        return GW_ERR_INVAL;
    for (unsigned i = 0; i < SIM_FAULT_COUNT; i++) {
        if (strcmp(name, fault_table[i].name) == 0) {
            *out = (enum sim_fault)i;
            return GW_OK;
        }
    }
    return GW_ERR_NOT_FOUND;
}

int sim_bms_set_fault(struct sim_bms *b, enum sim_fault f)
{
    if (!b || (unsigned)f >= SIM_FAULT_COUNT)
        return GW_ERR_INVAL;
    if (fault_table[f].frozen)
        live_from_model(b, b->frozen_live);
    b->fault = f;
    return GW_OK;
}

static void apply_fault(const struct sim_bms *b, uint16_t out[SIM_LIVE_COUNT])
{
    if ((unsigned)b->fault >= SIM_FAULT_COUNT)
        return;
    const struct fault_def *d = &fault_table[b->fault];
    if (d->frozen)
        memcpy(out, b->frozen_live, sizeof(uint16_t) * SIM_LIVE_COUNT);
    for (unsigned i = 0; i < d->n; i++) {
        const struct fault_write *w = &d->w[i];
        unsigned reg = w->reg;
        if (reg == FAULT_REG_CELL1)
            reg = sim_registers_cell_register(b->model.cfg.cells, 0);
        if (reg + (w->type == FW_U16 ? 1u : 2u) > SIM_LIVE_COUNT)
            continue;
        switch (w->type) {
        case FW_U16: out[reg] = (uint16_t)w->value; break;
        case FW_U32: put_u32(&out[reg], (uint32_t)w->value); break;
        case FW_FLOAT: put_float(&out[reg], (float)w->value); break;
        default: break;
        }
    }
}

void sim_registers_live(const struct sim_bms *b, uint16_t out[SIM_LIVE_COUNT])
{
    live_from_model(b, out);
    apply_fault(b, out);
}

int sim_bms_restart(struct sim_bms *b, float soc_pct, uint8_t cause)
{
    if (!b || soc_pct > 100.0f || isnan(soc_pct))
        return GW_ERR_INVAL;
    battery_model_reset_bms(&b->model);
    if (soc_pct >= 0.0f)
        battery_model_set_soc(&b->model, soc_pct / 100.0f);
    b->last_reset_cause = cause;
    return GW_OK;
}

static uint16_t stat_temp_byte(float c)
{
    long v = lroundf(c);
    if (v < -128)
        v = -128;
    if (v > 127)
        v = 127;
    return (uint16_t)(uint8_t)(int8_t)v;
}

static uint16_t read_statistic(const struct sim_bms *b, unsigned off)
{
    const struct battery_model *m = &b->model;
    switch (off) {
    case 2: return round_u16((double)m->max_discharge_a * 10.0);
    case 3: return round_u16((double)m->max_charge_a * 10.0);
    case 4: return round_u16((double)m->max_cell_diff_mv * 10.0);
    case 5: return m->under_voltage_count;
    case 6: return m->over_voltage_count;
    case 7: return m->discharge_oc_count;
    case 8: return m->charge_oc_count;
    case 9: return m->over_heat_count;
    case 11: return m->charging_count;
    case 12: return m->full_charge_count;
    case 13: return (uint16_t)(stat_temp_byte(m->min_temp_c) | (stat_temp_byte(m->max_temp_c) << 8));
    case 14: return (uint16_t)(b->last_reset_cause | (b->last_wake_cause << 8));
    case 16: return (uint16_t)(m->stats_cleared_s & 0xFFFF);
    case 17: return (uint16_t)(m->stats_cleared_s >> 16);
    default: return 0; /* 100-101 total distance (no speed sensor), reserved registers */
    }
}

static uint16_t read_event(const struct sim_bms *b, unsigned off)
{
    const struct battery_model *m = &b->model;
    unsigned slot = off / 2;
    if (slot >= m->event_count)
        return 0;
    const struct battery_event *e = &m->events[m->event_count - 1 - slot]; /* slot 0 = newest */
    if (off % 2 == 0)
        return (uint16_t)(e->timestamp_s & 0xFFFF);
    return (uint16_t)(((e->timestamp_s >> 16) & 0xFF) | ((unsigned)e->id << 8));
}

static uint16_t read_setting(const struct sim_bms *b, unsigned off)
{
    uint16_t reg = (uint16_t)(SIM_SETTINGS_FIRST + off);
    if (reg == 323)
        return b->soh_written ? 0xFFFF : round_u16((double)b->model.soh * 50000.0);
    if (reg == 328)
        return b->soc_written ? 0xFFFF : round_u16((double)battery_model_soc(&b->model) * 50000.0);
    return b->settings[off];
}

int sim_registers_read(const struct sim_bms *b, uint16_t addr, uint16_t *value)
{
    if (!b || !value)
        return GW_ERR_INVAL;
    if (b->old_firmware && newer_only(addr)) {
        if (!b->old_firmware_junk)
            return GW_ERR_NOT_FOUND;
        *value = 0xFFFF;
        return GW_OK;
    }
    if (addr < 100) {
        if (addr < SIM_LIVE_COUNT) {
            uint16_t live[SIM_LIVE_COUNT];
            sim_registers_live(b, live);
            *value = live[addr];
        } else {
            *value = 0;
        }
        return GW_OK;
    }
    if (addr < 200) {
        *value = read_statistic(b, addr - 100u);
        return GW_OK;
    }
    if (addr < 300) {
        *value = addr < 298 ? read_event(b, addr - 200u) : 0;
        return GW_OK;
    }
    if (addr < 400) {
        *value = read_setting(b, addr - 300u);
        return GW_OK;
    }
    if (addr >= SIM_VERSION_FIRST && addr < 600) {
        *value = addr < SIM_VERSION_FIRST + SIM_VERSION_COUNT ? b->version[addr - SIM_VERSION_FIRST] : 0;
        return GW_OK;
    }
    return GW_ERR_NOT_FOUND;
}

int sim_registers_read_block(const struct sim_bms *b, uint16_t addr, unsigned count, uint16_t *out)
{
    if (!b || !out || count == 0)
        return GW_ERR_INVAL;
    if ((uint32_t)addr + count > 0x10000u)
        return GW_ERR_NOT_FOUND;
    uint16_t live[SIM_LIVE_COUNT];
    sim_registers_live(b, live); /* one snapshot for the whole block */
    for (unsigned i = 0; i < count; i++) {
        uint16_t a = (uint16_t)(addr + i);
        if (a < SIM_LIVE_COUNT && !(b->old_firmware && newer_only(a))) {
            out[i] = live[a];
            continue;
        }
        int rc = sim_registers_read(b, a, &out[i]);
        if (rc)
            return rc;
    }
    return GW_OK;
}

static bool value_in_range(const struct setting_def *d, uint16_t v, bool old_firmware)
{
    if (d->reg == 330) {
        unsigned type = v & 0xFF, timeout = v >> 8;
        if (old_firmware && timeout != 0)
            return false; /* the high byte only exists on newer firmware */
        return type <= 1 && timeout <= 30;
    }
    if (d->reg == 337 && v == 1)
        return false;
    int32_t x = d->is_signed ? (int32_t)(int16_t)v : (int32_t)v;
    return x >= d->min && x <= d->max;
}

static void apply_to_model(struct sim_bms *b)
{
    struct battery_model *m = &b->model;
    struct battery_model_config *c = &m->cfg;
    const uint16_t *s = b->settings;
    c->fully_charged_mv = s[0];
    c->early_balancing_mv = s[3];
    c->allowed_disbalance_mv = s[8];
    c->over_voltage_cutoff_mv = s[15];
    c->under_voltage_cutoff_mv = s[16];
    c->discharge_overcurrent_a = s[17];
    c->charge_overcurrent_a = s[18];
    c->over_heat_cutoff_c = (int16_t)s[19];
    c->low_temp_charge_cutoff_c = (int16_t)s[20];
    m->recovery_s = s[32];
    float cap = (float)s[6] / 100.0f;
    if (cap != c->capacity_ah && c->capacity_ah > 0.0f) {
        /* Keep the reported SOC when the capacity setting changes. */
        float soc = battery_model_soc(m);
        c->capacity_ah = cap;
        battery_model_set_soc(m, soc);
    }
}

int sim_registers_write(struct sim_bms *b, const uint16_t *addrs, const uint16_t *values, unsigned n)
{
    if (!b || !addrs || !values || n == 0)
        return GW_ERR_INVAL;
    uint16_t next[SIM_SETTINGS_SPAN];
    memcpy(next, b->settings, sizeof next);
    bool set_soh = false, set_soc = false;
    uint16_t soh = 0, soc = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct setting_def *d = find_setting(addrs[i]);
        if (!d || (b->old_firmware && d->newer_fw))
            return GW_ERR_NOT_FOUND;
        if (!value_in_range(d, values[i], b->old_firmware))
            return GW_ERR_RANGE;
        if (d->reg == 323) {
            set_soh = true;
            soh = values[i];
        } else if (d->reg == 328) {
            set_soc = true;
            soc = values[i];
        } else {
            next[d->reg - SIM_SETTINGS_FIRST] = values[i];
        }
    }
    uint32_t pulses = (uint32_t)next[12] | ((uint32_t)next[13] << 16);
    if (pulses < 1 || pulses > 100000)
        return GW_ERR_RANGE;
    memcpy(b->settings, next, sizeof next);
    apply_to_model(b);
    if (set_soh) {
        b->model.soh = (float)soh / 50000.0f;
        b->soh_written = true;
    }
    if (set_soc) {
        battery_model_set_soc(&b->model, (float)soc / 50000.0f);
        b->soc_written = true;
    }
    return GW_OK;
}

int sim_registers_settings_table(const struct sim_bms *b, enum sim_settings_table table,
                                 unsigned index, uint16_t *value)
{
    if (!b || !value || index >= SIM_SETTINGS_SPAN || table < SIM_TABLE_MIN || table > SIM_TABLE_CURRENT)
        return GW_ERR_INVAL;
    uint16_t reg = (uint16_t)(SIM_SETTINGS_FIRST + index);
    const struct setting_def *d = find_setting(reg);
    if (!d) {
        *value = 0;
        return GW_OK;
    }
    switch (table) {
    case SIM_TABLE_MIN: *value = (uint16_t)d->min; break;
    case SIM_TABLE_MAX: *value = (uint16_t)d->max; break;
    case SIM_TABLE_DEFAULT: *value = b->setting_default[index]; break;
    case SIM_TABLE_CURRENT: *value = read_setting(b, index); break;
    }
    return GW_OK;
}

int sim_bms_init(struct sim_bms *b, const struct battery_model_config *cfg, bool old_firmware)
{
    if (!b || !cfg)
        return GW_ERR_INVAL;
    memset(b, 0, sizeof *b);
    if (battery_model_init(&b->model, cfg) != 0)
        return GW_ERR_INVAL;
    b->old_firmware = old_firmware;
    for (size_t i = 0; i < SETTINGS_COUNT; i++)
        b->setting_default[settings_table[i].reg - SIM_SETTINGS_FIRST] = (uint16_t)settings_table[i].def;
    uint16_t *d = b->setting_default;
    /* Defaults that follow the simulated pack. */
    d[0] = cfg->fully_charged_mv;
    d[1] = cfg->chemistry == BATTERY_NMC ? 3200 : 3000;
    d[3] = cfg->early_balancing_mv;
    d[6] = (uint16_t)lroundf(cfg->capacity_ah * 100.0f);
    d[7] = cfg->cells;
    d[8] = cfg->allowed_disbalance_mv < 15 ? 15 : cfg->allowed_disbalance_mv;
    d[15] = cfg->over_voltage_cutoff_mv;
    d[16] = cfg->under_voltage_cutoff_mv;
    d[17] = cfg->discharge_overcurrent_a;
    d[18] = cfg->charge_overcurrent_a;
    d[19] = (uint16_t)cfg->over_heat_cutoff_c;
    d[20] = (uint16_t)cfg->low_temp_charge_cutoff_c;
    memcpy(b->settings, b->setting_default, sizeof b->settings);
    b->settings[8] = cfg->allowed_disbalance_mv; /* serve the model's real value */
    b->settings[32] = b->model.recovery_s;
    b->settings[23] = 0; /* 323 and 328 are served computed (read_setting) */
    b->settings[28] = 0;

    b->version[0] = (uint16_t)(HW_VERSION | (HW_CHANGES << 8));
    b->version[1] = old_firmware ? FW_PUBLIC_OLD : FW_PUBLIC_NEW; /* low power, internal shunt */
    b->version[2] = old_firmware ? FW_INTERNAL_OLD : FW_INTERNAL_NEW;
    b->version[3] = (uint16_t)(BOOTLOADER_VERSION | (PROFILE_VERSION << 8));
    uint32_t x = cfg->seed * 2246822519u + 0x5EED5EEDu;
    for (int i = 4; i < SIM_VERSION_COUNT; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b->version[i] = (uint16_t)(x >> 8);
    }
    b->last_reset_cause = SIM_RESET_CAUSE_POWER_ON;
    b->last_wake_cause = 0x01;  /* UART */
    b->events_reported_total = 0;
    return GW_OK;
}
