/* TinyBMS metadata: event names, command names, settings table and validation. */
#include <stddef.h>
#include <string.h>

#include "tinybms.h"
#include "tinybms_internal.h"

/* ---------------------------------------------------------------- events */

const char *tinybms_event_name(uint8_t id)
{
    switch (id) {
    /* faults */
    case 0x02: return "under-voltage cutoff";
    case 0x03: return "over-voltage cutoff";
    case 0x04: return "over-temperature cutoff";
    case 0x05: return "discharging over-current cutoff";
    case 0x06: return "charging over-current cutoff";
    case 0x07: return "regeneration over-current cutoff";
    case 0x0A: return "low temperature cutoff";
    case 0x0B: return "charger switch error";
    case 0x0C: return "load switch error";
    case 0x0D: return "single port switch error";
    case 0x0E: return "external current sensor disconnected";
    case 0x0F: return "external current sensor connected";
    /* warnings */
    case 0x31: return "fully discharged cutoff";
    case 0x37: return "low temperature charging cutoff";
    case 0x38: return "charging done (charger voltage too high)";
    case 0x39: return "charging done (charger voltage too low)";
    /* information */
    case 0x61: return "system started";
    case 0x62: return "charging started";
    case 0x63: return "charging done";
    case 0x64: return "charger connected";
    case 0x65: return "charger disconnected";
    case 0x66: return "dual port mode";
    case 0x67: return "single port mode";
    case 0x73: return "recovered from over-temperature fault";
    case 0x74: return "recovered from low temperature warning";
    case 0x75: return "recovered from low temperature fault";
    case 0x76: return "recovered from charging over-current";
    case 0x77: return "recovered from discharging over-current";
    case 0x78: return "recovered from regeneration over-current";
    case 0x79: return "recovered from over-voltage";
    case 0x7A: return "recovered from fully discharged warning";
    case 0x7B: return "recovered from under-voltage";
    case 0x7C: return "external current sensor connected";
    case 0x7D: return "external current sensor disconnected";
    default: return "unknown event";
    }
}

enum tinybms_event_category tinybms_event_category(uint8_t id)
{
    if (id >= 0x01 && id <= 0x30)
        return TINYBMS_EVENT_FAULT;
    if (id >= 0x31 && id <= 0x60)
        return TINYBMS_EVENT_WARNING;
    if (id >= 0x61 && id <= 0x90)
        return TINYBMS_EVENT_INFO;
    return TINYBMS_EVENT_UNKNOWN;
}

const char *tinybms_event_category_name(enum tinybms_event_category c)
{
    switch (c) {
    case TINYBMS_EVENT_FAULT: return "fault";
    case TINYBMS_EVENT_WARNING: return "warning";
    case TINYBMS_EVENT_INFO: return "info";
    default: return "unknown";
    }
}

/* ---------------------------------------------------------------- commands */

/* Row shapes. Request: SIMPLE (AA CMD crc), FIXED_REQ(len), PL_REQ(min, max, step), MODBUS_WRITE_REQ. Answer: ACK only,
 * FIXED_ANS(frame len), PL_ANS(min, max, step), PACKETS(min, max, step, non-last payload). */
#define SIMPLE TINYBMS_REQ_SIMPLE, 4, { 0, 0, 0 }
#define FIXED_REQ(len) TINYBMS_REQ_FIXED, (len), { 0, 0, 0 }
#define PL_REQ(lo, hi, st) TINYBMS_REQ_PL, 0, { (lo), (hi), (st) }
#define MODBUS_WRITE_REQ TINYBMS_REQ_MODBUS_WRITE, 0, { 0, 0, 0 }
#define ACK_ONLY TINYBMS_ANSWER_ACK_ONLY, 0, { 0, 0, 0 }, 0
#define FIXED_ANS(len) TINYBMS_ANSWER_FIXED, (len), { 0, 0, 0 }, 0
#define PL_ANS(lo, hi, st) TINYBMS_ANSWER_PL, 0, { (lo), (hi), (st) }, 0
#define PACKETS(lo, hi, st, multi) TINYBMS_ANSWER_PL_PACKETS, 0, { (lo), (hi), (st) }, (multi)

/* shared/spec/tinybms-uart.md, "Commands". Indexed by command byte (lookup in O(1) on the
 * decoder's path); slots without a row have name NULL. Frame lengths count AA, CMD, the PL byte
 * when there is one, the payload and the two CRC bytes. */
#define ROW(cmd, ...) [cmd] = { (cmd), __VA_ARGS__ }
const struct tinybms_command_info tinybms__commands[TINYBMS__COMMAND_SLOTS] = {
    /* AA 02 OPT crc -> ACK */
    ROW(TINYBMS_CMD_RESET, "reset / clear", FIXED_REQ(5), ACK_ONLY),
    /* AA 03 ADDR_H ADDR_L 00 RL crc -> AA 03 PL words(BE) crc; PL up to 0xFA (125 registers) in
     * one frame on real hardware, so a plain byte count */
    ROW(TINYBMS_CMD_READ_MODBUS, "read registers (MODBUS)", FIXED_REQ(8), PL_ANS(2, 255, 2)),
    /* AA 07 RL ADDR_L ADDR_H crc -> AA 07 PL words(LE) crc, PL bitfield: 1..31 registers per
     * packet; a non-last packet is assumed full */
    ROW(TINYBMS_CMD_READ_BLOCK, "read registers block", FIXED_REQ(7),
        PACKETS(2, 62, 2, TINYBMS_MULTI_PACKET_PAYLOAD_07)),
    /* AA 09 PL addrs crc -> AA 09 PL {addr, value}... crc; request PL = 2n, answer PL = 4n */
    ROW(TINYBMS_CMD_READ_INDIVIDUAL, "read individual registers",
        PL_REQ(2, 2 * TINYBMS_INDIVIDUAL_READ_MAX, 2),
        PACKETS(4, 60, 4, TINYBMS_MULTI_PACKET_PAYLOAD_09)),
    /* AA 0B PL ADDR_L ADDR_H words crc -> ACK; PL = 2 + 2n in 6 bits */
    ROW(TINYBMS_CMD_WRITE_BLOCK, "write registers block", PL_REQ(4, 62, 2), ACK_ONLY),
    /* AA 0D PL {addr, value}... crc -> ACK; PL = 4n in 6 bits */
    ROW(TINYBMS_CMD_WRITE_INDIVIDUAL, "write individual registers", PL_REQ(4, 60, 4), ACK_ONLY),
    /* AA 10 ADDR_H ADDR_L 00 RL PL words(BE) crc -> AA 10 ADDR_H ADDR_L 00 RL crc */
    ROW(TINYBMS_CMD_WRITE_MODBUS, "write registers (MODBUS)", MODBUS_WRITE_REQ, FIXED_ANS(8)),
    /* AA 11 crc -> AA 11 PL BTSP(u32) {TSP(u24) ID(u8)}... crc */
    ROW(TINYBMS_CMD_EVENTS_NEWEST, "newest events", SIMPLE, PL_ANS(4, 255, 4)),
    ROW(TINYBMS_CMD_EVENTS_ALL, "all events", SIMPLE, PL_ANS(4, 255, 4)),
    /* AA 14 crc -> AA 14 float32 crc, and the other single values */
    ROW(TINYBMS_CMD_PACK_VOLTAGE, "pack voltage", SIMPLE, FIXED_ANS(2 + 4 + 2)),
    ROW(TINYBMS_CMD_PACK_CURRENT, "pack current", SIMPLE, FIXED_ANS(2 + 4 + 2)),
    ROW(TINYBMS_CMD_MAX_CELL, "max cell voltage", SIMPLE, FIXED_ANS(2 + 2 + 2)),
    ROW(TINYBMS_CMD_MIN_CELL, "min cell voltage", SIMPLE, FIXED_ANS(2 + 2 + 2)),
    ROW(TINYBMS_CMD_STATUS, "online status", SIMPLE, FIXED_ANS(2 + 2 + 2)),
    ROW(TINYBMS_CMD_LIFETIME, "lifetime counter", SIMPLE, FIXED_ANS(2 + 4 + 2)),
    ROW(TINYBMS_CMD_SOC, "state of charge", SIMPLE, FIXED_ANS(2 + 4 + 2)),
    /* AA 1B PL int16 x 3 crc */
    ROW(TINYBMS_CMD_TEMPERATURES, "temperatures", SIMPLE,
        PL_ANS(2 * BMS_TEMP_SENSORS, 2 * BMS_TEMP_SENSORS, 1)),
    /* AA 1C PL u16 per detected cell crc */
    ROW(TINYBMS_CMD_CELLS, "cell voltages", SIMPLE, PL_ANS(0, 2 * BMS_MAX_CELLS, 2)),
    /* AA 1D OPT 00 RL crc -> AA 1D PL words(LE) crc */
    ROW(TINYBMS_CMD_SETTINGS, "settings values", FIXED_REQ(7), PL_ANS(2, 255, 2)),
    /* AA 1E crc -> AA 1E PL hw hwchg fw_public fw_internal(u16) crc; 0x1F adds two bytes */
    ROW(TINYBMS_CMD_VERSION, "version", SIMPLE, PL_ANS(5, 255, 1)),
    ROW(TINYBMS_CMD_VERSION_EXT, "extended version", SIMPLE, PL_ANS(7, 255, 1)),
    /* AA 20 crc -> AA 20 float u32 u32 crc */
    ROW(TINYBMS_CMD_SPEED_DISTANCE, "speed / distance / time left", SIMPLE,
        FIXED_ANS(2 + 4 + 4 + 4 + 2)),
};

#undef ROW
#undef SIMPLE
#undef FIXED_REQ
#undef PL_REQ
#undef MODBUS_WRITE_REQ
#undef ACK_ONLY
#undef FIXED_ANS
#undef PL_ANS
#undef PACKETS

size_t tinybms_command_count(void)
{
    size_t n = 0;
    for (size_t i = 0; i < TINYBMS__COMMAND_SLOTS; i++)
        n += tinybms__commands[i].name != NULL;
    return n;
}

const struct tinybms_command_info *tinybms_command_at(size_t index)
{
    for (size_t i = 0; i < TINYBMS__COMMAND_SLOTS; i++)
        if (tinybms__commands[i].name && index-- == 0)
            return &tinybms__commands[i];
    return NULL;
}

const struct tinybms_command_info *tinybms_command_info(uint8_t cmd)
{
    return tinybms__command(cmd);
}

bool tinybms_pl_allowed(const struct tinybms_pl_rule *rule, uint8_t pl)
{
    return rule && tinybms__pl_allowed(rule, pl);
}

const char *tinybms_command_name(uint8_t cmd)
{
    const struct tinybms_command_info *c = tinybms_command_info(cmd);
    return c ? c->name : "unknown command";
}

/* ---------------------------------------------------------------- settings */

#define NEWER TINYBMS_SETTING_NEWER_FW
#define FFFF TINYBMS_SETTING_FFFF_ACCEPTED
/* Bit mask of the allowed values lo..hi (both <= 31). */
#define VALS(lo, hi) ((uint32_t)((((uint64_t)1 << ((hi) + 1)) - 1) & ~(((uint64_t)1 << (lo)) - 1)))

static const struct tinybms_setting_info settings[] = {
    { 300, "fully_charged_mv", "Fully charged voltage", "mV", 1200, 4500, TINYBMS_SETTING_U16, 0, 0 },
    { 301, "fully_discharged_mv", "Fully discharged voltage", "mV", 1000, 3500, TINYBMS_SETTING_U16, 0, 0 },
    { 303, "early_balancing_mv", "Early balancing threshold", "mV", 1000, 4500, TINYBMS_SETTING_U16, 0, 0 },
    { 304, "charge_finished_ma", "Charge finished current", "mA", 100, 5000, TINYBMS_SETTING_U16, 0, 0 },
    /* 305: no documented range; only the BMS's own min/max (0x1D) can narrow it. */
    { 305, "peak_discharge_cutoff_a", "Peak discharge current cutoff", "A", 0, 65535, TINYBMS_SETTING_U16, 0, NEWER },
    { 306, "capacity_x10mah", "Battery capacity", "0.01 Ah", 10, 65500, TINYBMS_SETTING_U16, 0, 0 },
    { 307, "series_cells", "Number of series cells", "", 4, 16, TINYBMS_SETTING_U16, 0, 0 },
    { 308, "allowed_disbalance_mv", "Allowed disbalance", "mV", 15, 100, TINYBMS_SETTING_U16, 0, 0 },
    { 310, "charger_startup_delay_s", "Charger startup delay", "s", 5, 60, TINYBMS_SETTING_U16, 0, NEWER },
    { 311, "charger_disable_delay_s", "Charger disable delay", "s", 0, 60, TINYBMS_SETTING_U16, 0, NEWER },
    { 312, "pulses_per_unit", "Pulses per unit (low word)", "", 1, 100000, TINYBMS_SETTING_U32_LOW, 0, 0 },
    { 313, "pulses_per_unit_hi", "Pulses per unit (high word)", "", 1, 100000, TINYBMS_SETTING_U32_HIGH, 0, 0 },
    { 314, "distance_unit", "Distance unit (1 m, 2 km, 3 ft, 4 mi, 5 yd)", "", 1, 5, TINYBMS_SETTING_ENUM, VALS(1, 5), 0 },
    { 315, "over_voltage_cutoff_mv", "Over-voltage cutoff", "mV", 1200, 4500, TINYBMS_SETTING_U16, 0, 0 },
    { 316, "under_voltage_cutoff_mv", "Under-voltage cutoff", "mV", 800, 3500, TINYBMS_SETTING_U16, 0, 0 },
    { 317, "discharge_overcurrent_a", "Discharge over-current cutoff", "A", 1, 750, TINYBMS_SETTING_U16, 0, 0 },
    { 318, "charge_overcurrent_a", "Charge over-current cutoff", "A", 1, 750, TINYBMS_SETTING_U16, 0, 0 },
    { 319, "over_heat_cutoff_c", "Over-heat cutoff", "degC", 20, 90, TINYBMS_SETTING_INT16, 0, 0 },
    { 320, "low_temp_charge_cutoff_c", "Low temperature charger cutoff", "degC", -40, 10, TINYBMS_SETTING_INT16, 0, 0 },
    { 321, "charge_restart_pct", "Charge restart level", "%", 60, 95, TINYBMS_SETTING_U16, 0, NEWER },
    { 322, "max_cycles", "Battery maximum cycles count", "", 10, 65000, TINYBMS_SETTING_U16, 0, NEWER },
    { 323, "set_soh_x002pct", "State of health (write to set)", "0.002 %", 0, 50000, TINYBMS_SETTING_U16, 0, NEWER | FFFF },
    { 328, "set_soc_x002pct", "State of charge (write to set)", "0.002 %", 0, 50000, TINYBMS_SETTING_U16, 0, FFFF },
    { 329, "options_flags", "Options (bit 0 invert ext. current sensor, bit 1 no switch diagnostics, bit 2 charger restart level)", "", 0, 7, TINYBMS_SETTING_FLAGS, 0x7, NEWER },
    /* 330: low byte charger type (only 0x01 CC/CV is documented), high byte discharge
     * over-current timeout 0..30 s (newer firmware). */
    { 330, "charger_type_oc_timeout", "Charger type (low) / discharge over-current timeout s (high)", "", 0, 30, TINYBMS_SETTING_BYTE_PAIR, VALS(1, 1), 0 },
    { 331, "load_switch_type", "Load switch type", "", 0, 8, TINYBMS_SETTING_ENUM, VALS(0, 8), 0 },
    { 332, "automatic_recovery_s", "Automatic recovery", "s", 1, 30, TINYBMS_SETTING_LOW_BYTE, 0, 0 },
    { 333, "charger_switch_type", "Charger switch type", "", 1, 9, TINYBMS_SETTING_ENUM, VALS(1, 9), 0 },
    { 334, "ignition", "Ignition", "", 0, 6, TINYBMS_SETTING_ENUM, VALS(0, 6), 0 },
    { 335, "charger_detection", "Charger detection", "", 1, 7, TINYBMS_SETTING_ENUM, VALS(1, 7), 0 },
    { 336, "speed_sensor_input", "Speed sensor input", "", 0, 2, TINYBMS_SETTING_ENUM, VALS(0, 2), 0 },
    /* 337: 0 disabled, 2 discharge FET, 3..10 pins; 1 is not a documented value. */
    { 337, "precharge_pin", "Precharge pin", "", 0, 10, TINYBMS_SETTING_ENUM, VALS(0, 0) | VALS(2, 10), 0 },
    { 338, "precharge_duration", "Precharge duration (0 = 0.1 s ... 7 = 5 s)", "", 0, 7, TINYBMS_SETTING_ENUM, VALS(0, 7), 0 },
    { 339, "temp_sensor_type", "Temperature sensor type", "", 0, 1, TINYBMS_SETTING_ENUM, VALS(0, 1), 0 },
    { 340, "operation_mode", "BMS operation mode (0 dual port, 1 single port)", "", 0, 1, TINYBMS_SETTING_ENUM, VALS(0, 1), 0 },
    { 341, "single_port_switch_type", "Single port switch type", "", 0, 8, TINYBMS_SETTING_ENUM, VALS(0, 8), 0 },
    { 342, "broadcast_time", "Broadcast time (0 off, 1 = 0.1 s ... 7 = 10 s)", "", 0, 7, TINYBMS_SETTING_ENUM, VALS(0, 7), 0 },
    { 343, "protocol", "Protocol (0 CA V3, 1 ASCII, 2 SOC BAR)", "", 0, 2, TINYBMS_SETTING_ENUM, VALS(0, 2), 0 },
};

#define SETTINGS_N (sizeof settings / sizeof settings[0])

const struct tinybms_setting_info *tinybms_setting_info(uint16_t reg)
{
    for (size_t i = 0; i < SETTINGS_N; i++)
        if (settings[i].reg == reg)
            return &settings[i];
    return NULL;
}

size_t tinybms_setting_count(void)
{
    return SETTINGS_N;
}

const struct tinybms_setting_info *tinybms_setting_at(size_t index)
{
    return index < SETTINGS_N ? &settings[index] : NULL;
}

bool tinybms_setting_reads_accepted(uint16_t reg, uint16_t value)
{
    const struct tinybms_setting_info *info = tinybms_setting_info(reg);
    return info && (info->flags & TINYBMS_SETTING_FFFF_ACCEPTED) && value == 0xFFFF;
}

/* The BMS's own raw min/max word for reg when both were read (0x1D). */
static bool bms_limits(uint16_t reg, const struct bms_settings *bms_min,
                       const struct bms_settings *bms_max, uint16_t *lo, uint16_t *hi)
{
    if (!bms_min || !bms_max || !bms_min->valid || !bms_max->valid)
        return false;
    if (reg < BMS_SETTINGS_FIRST || reg > BMS_SETTINGS_LAST)
        return false;
    unsigned i = reg - BMS_SETTINGS_FIRST;
    uint64_t bit = (uint64_t)1 << i;
    if (!(bms_min->present_mask & bit) || !(bms_max->present_mask & bit))
        return false;
    *lo = bms_min->raw[i];
    *hi = bms_max->raw[i];
    return true;
}

static bool in_signed(int32_t v, int32_t lo, int32_t hi)
{
    return v >= lo && v <= hi;
}

int tinybms_setting_validate(uint16_t reg, uint16_t value, const struct bms_settings *bms_min,
                             const struct bms_settings *bms_max)
{
    if (reg < BMS_WRITABLE_FIRST || reg > BMS_WRITABLE_LAST)
        return GW_ERR_RANGE;
    const struct tinybms_setting_info *info = tinybms_setting_info(reg);
    if (!info)
        return GW_ERR_NOT_FOUND;

    uint8_t low = (uint8_t)(value & 0xFF), high = (uint8_t)(value >> 8);
    uint16_t bms_lo, bms_hi;
    bool have_bms = bms_limits(reg, bms_min, bms_max, &bms_lo, &bms_hi);

    switch (info->kind) {
    case TINYBMS_SETTING_U16:
        if (have_bms)
            return value >= bms_lo && value <= bms_hi ? GW_OK : GW_ERR_RANGE;
        return in_signed(value, info->min, info->max) ? GW_OK : GW_ERR_RANGE;
    case TINYBMS_SETTING_INT16:
        if (have_bms)
            return in_signed((int16_t)value, (int16_t)bms_lo, (int16_t)bms_hi) ? GW_OK
                                                                                : GW_ERR_RANGE;
        return in_signed((int16_t)value, info->min, info->max) ? GW_OK : GW_ERR_RANGE;
    case TINYBMS_SETTING_U32_LOW:
        return GW_OK; /* any low word; the pair is checked by tinybms_setting_validate_u32 */
    case TINYBMS_SETTING_U32_HIGH:
        return (uint32_t)value <= ((uint32_t)info->max >> 16) ? GW_OK : GW_ERR_RANGE;
    case TINYBMS_SETTING_FLAGS:
        return (value & ~info->allowed_mask) == 0 ? GW_OK : GW_ERR_RANGE;
    case TINYBMS_SETTING_LOW_BYTE:
    case TINYBMS_SETTING_ENUM:
        /* The high byte is not documented for these registers: never write junk into it. */
        if (high != 0)
            return GW_ERR_RANGE;
        if (info->kind == TINYBMS_SETTING_ENUM &&
            (low > 31 || !(info->allowed_mask & ((uint32_t)1 << low))))
            return GW_ERR_RANGE;
        if (have_bms)
            return value >= bms_lo && value <= bms_hi ? GW_OK : GW_ERR_RANGE;
        return in_signed(low, info->min, info->max) ? GW_OK : GW_ERR_RANGE;
    case TINYBMS_SETTING_BYTE_PAIR:
        if (low > 31 || !(info->allowed_mask & ((uint32_t)1 << low)))
            return GW_ERR_RANGE;
        return in_signed(high, info->min, info->max) ? GW_OK : GW_ERR_RANGE;
    }
    return GW_ERR_RANGE;
}

int tinybms_setting_validate_u32(uint16_t reg_low, uint32_t value,
                                 const struct bms_settings *bms_min,
                                 const struct bms_settings *bms_max)
{
    const struct tinybms_setting_info *info = tinybms_setting_info(reg_low);
    if (!info || info->kind != TINYBMS_SETTING_U32_LOW)
        return GW_ERR_RANGE;
    uint16_t lo_l, hi_l, lo_h, hi_h;
    if (bms_limits(reg_low, bms_min, bms_max, &lo_l, &hi_l) &&
        bms_limits((uint16_t)(reg_low + 1), bms_min, bms_max, &lo_h, &hi_h)) {
        uint32_t lo = (uint32_t)lo_l | ((uint32_t)lo_h << 16);
        uint32_t hi = (uint32_t)hi_l | ((uint32_t)hi_h << 16);
        return value >= lo && value <= hi ? GW_OK : GW_ERR_RANGE;
    }
    return value >= (uint32_t)info->min && value <= (uint32_t)info->max ? GW_OK : GW_ERR_RANGE;
}

/* ---- named pack limits ---------------------------------------------------------------------- */

/* Raw value of reg, true when it was read and lies in the documented range. */
static bool trusted_setting(const struct bms_settings *s, uint16_t reg, int32_t *out)
{
    const struct tinybms_setting_info *info = tinybms_setting_info(reg);
    if (!s || !s->valid || !info || reg < BMS_SETTINGS_FIRST || reg > BMS_SETTINGS_LAST)
        return false;
    unsigned idx = (unsigned)(reg - BMS_SETTINGS_FIRST);
    if (!(s->present_mask & (1ull << idx)))
        return false;
    int32_t v = info->kind == TINYBMS_SETTING_INT16 ? (int32_t)(int16_t)s->raw[idx] : (int32_t)s->raw[idx];
    if (v < info->min || v > info->max)
        return false;
    *out = v;
    return true;
}

void tinybms_pack_limits_decode(const struct bms_settings *s, struct bms_pack_limits *out)
{
    memset(out, 0, sizeof *out);
    int32_t v;
    if ((out->has_fully_charged = trusted_setting(s, 300, &v)))
        out->fully_charged_cell_v = (float)v / 1000.0f;
    if ((out->has_fully_discharged = trusted_setting(s, 301, &v)))
        out->fully_discharged_cell_v = (float)v / 1000.0f;
    if ((out->has_early_balancing = trusted_setting(s, 303, &v)))
        out->early_balancing_cell_v = (float)v / 1000.0f;
    if ((out->has_charge_finished = trusted_setting(s, 304, &v)))
        out->charge_finished_a = (float)v / 1000.0f;
    if ((out->has_capacity = trusted_setting(s, 306, &v)))
        out->capacity_ah = (float)v / 100.0f;
    if ((out->has_series_cells = trusted_setting(s, 307, &v)))
        out->series_cells = (uint8_t)v;
    if ((out->has_allowed_disbalance = trusted_setting(s, 308, &v)))
        out->allowed_disbalance_mv = (float)v;
    if ((out->has_over_voltage = trusted_setting(s, 315, &v)))
        out->over_voltage_cell_v = (float)v / 1000.0f;
    if ((out->has_under_voltage = trusted_setting(s, 316, &v)))
        out->under_voltage_cell_v = (float)v / 1000.0f;
    if ((out->has_discharge_overcurrent = trusted_setting(s, 317, &v)))
        out->discharge_overcurrent_a = (float)v;
    if ((out->has_charge_overcurrent = trusted_setting(s, 318, &v)))
        out->charge_overcurrent_a = (float)v;
    if ((out->has_over_heat = trusted_setting(s, 319, &v)))
        out->over_heat_c = (float)v;
    if ((out->has_low_temp_charge = trusted_setting(s, 320, &v)))
        out->low_temp_charge_c = (float)v;
    if ((out->has_charge_restart = trusted_setting(s, 321, &v)))
        out->charge_restart_pct = (float)v;
}
