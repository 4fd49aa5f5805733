/* TinyBMS register images → shared data model (bms_data.h). */
#include <math.h>
#include <string.h>

#include "tinybms.h"
#include "tinybms_internal.h"

/* Register numbers of the live block. */
enum {
    REG_CELL_LAST = 15,
    REG_LIFETIME = 32,
    REG_TIME_LEFT = 34,
    REG_PACK_VOLTAGE = 36,
    REG_PACK_CURRENT = 38,
    REG_MIN_CELL = 40,
    REG_MAX_CELL = 41,
    REG_TEMP_EXT1 = 42,
    REG_TEMP_EXT2 = 43,
    REG_DISTANCE_LEFT = 44,
    REG_SOH = 45,
    REG_SOC = 46,
    REG_TEMP_INTERNAL = 48,
    REG_STATUS = 50,
    REG_BALANCING_DECISION = 51,
    REG_BALANCING_ACTIVE = 52,
    REG_CELL_COUNT = 53,
    REG_SPEED = 54,
};

#define SOH_RAW_MAX 50000u

/* 32-bit values span two registers; the lower-numbered one holds the low 16 bits (confirmed on
 * hardware: 36/37 = 0x23D7/0x425F -> 55.79 V). */
static uint32_t reg_u32(const uint16_t *regs, unsigned first)
{
    return (uint32_t)regs[first] | ((uint32_t)regs[first + 1] << 16);
}

static float reg_f32(const uint16_t *regs, unsigned first)
{
    return tinybms__f32_from_bits(reg_u32(regs, first));
}

static void decode_temp(int16_t raw, int16_t *dc, bool *present)
{
    *present = raw != BMS_TEMP_ABSENT_RAW;
    *dc = *present ? raw : 0;
}

/* Register range [*first, 15] holding the cells. n from register 53 when 1..16; otherwise the
 * span between the lowest and highest non-zero cell register (covers both the documented layout
 * and the one seen on hardware). Returns the cell count (0 when no register is populated). */
static unsigned cell_span(const uint16_t *regs, unsigned *first, unsigned *last)
{
    unsigned n = regs[REG_CELL_COUNT];
    if (n >= 1 && n <= BMS_MAX_CELLS) {
        *first = BMS_MAX_CELLS - n;
        *last = REG_CELL_LAST;
        return n;
    }
    int lo = -1, hi = -1;
    for (int r = 0; r <= REG_CELL_LAST; r++) {
        if (regs[r]) {
            if (lo < 0)
                lo = r;
            hi = r;
        }
    }
    if (lo < 0) {
        *first = *last = 0;
        return 0;
    }
    *first = (unsigned)lo;
    *last = (unsigned)hi;
    return (unsigned)(hi - lo + 1);
}

int tinybms_decode_live(const uint16_t regs[TINYBMS_REG_LIVE_COUNT],
                        const struct tinybms_decode_opts *opts, struct bms_live_data *out)
{
    if (!regs || !opts || !out)
        return GW_ERR_INVAL;
    if (opts->cell_order != BMS_CELL_ORDER_DOCUMENTED &&
        opts->cell_order != BMS_CELL_ORDER_REVERSED)
        return GW_ERR_INVAL;

    struct bms_live_data d;
    memset(&d, 0, sizeof d);
    d.battery_id = opts->battery_id;

    unsigned first, last;
    unsigned n = cell_span(regs, &first, &last);
    d.cell_count = (uint8_t)n;
    uint16_t lo_v = 0, hi_v = 0;
    for (unsigned k = 0; k < n; k++) {
        /* k is the 0-based user cell number. */
        unsigned reg = opts->cell_order == BMS_CELL_ORDER_DOCUMENTED ? first + k : last - k;
        uint16_t v = regs[reg];
        d.cell_mv_x10[k] = v;
        if (v == 0)
            continue; /* empty register: never a 0 V cell */
        if (d.min_cell_index == 0 || v < lo_v) {
            lo_v = v;
            d.min_cell_index = (uint8_t)(k + 1);
        }
        if (d.max_cell_index == 0 || v > hi_v) {
            hi_v = v;
            d.max_cell_index = (uint8_t)(k + 1);
        }
    }
    d.cell_spread_mv_x10 = (uint16_t)(hi_v - lo_v);
    d.min_cell_mv = regs[REG_MIN_CELL];
    d.max_cell_mv = regs[REG_MAX_CELL];

    d.pack_voltage_v = reg_f32(regs, REG_PACK_VOLTAGE);
    d.pack_current_a = reg_f32(regs, REG_PACK_CURRENT);
    float speed = reg_f32(regs, REG_SPEED);
    d.speed_kmh = isfinite(speed) ? speed : 0.0f;

    decode_temp((int16_t)regs[REG_TEMP_INTERNAL], &d.temp_dc[BMS_TEMP_INTERNAL],
                &d.temp_present[BMS_TEMP_INTERNAL]);
    decode_temp((int16_t)regs[REG_TEMP_EXT1], &d.temp_dc[BMS_TEMP_EXT1],
                &d.temp_present[BMS_TEMP_EXT1]);
    decode_temp((int16_t)regs[REG_TEMP_EXT2], &d.temp_dc[BMS_TEMP_EXT2],
                &d.temp_present[BMS_TEMP_EXT2]);

    d.soc_ppm = reg_u32(regs, REG_SOC);
    d.soh_raw = regs[REG_SOH];
    d.soh_valid = d.soh_raw <= SOH_RAW_MAX; /* older firmware: junk or 0xFFFF */

    d.online_status = regs[REG_STATUS];
    d.balancing_decision = regs[REG_BALANCING_DECISION];
    d.balancing_active = regs[REG_BALANCING_ACTIVE];
    d.lifetime_s = reg_u32(regs, REG_LIFETIME);
    d.time_left_s = reg_u32(regs, REG_TIME_LEFT);
    d.distance_left_km = regs[REG_DISTANCE_LEFT];

    /* A NaN/inf pack voltage or current would poison charge control and CAN: refuse the sample
     * but hand back everything else for diagnosis. */
    if (!isfinite(d.pack_voltage_v) || !isfinite(d.pack_current_a)) {
        d.valid = false;
        *out = d;
        return GW_ERR_RANGE;
    }
    d.valid = true;
    *out = d;
    return GW_OK;
}

int tinybms_decode_statistics(const uint16_t regs[TINYBMS_REG_STATS_COUNT],
                              struct bms_statistics *out)
{
    if (!regs || !out)
        return GW_ERR_INVAL;
    /* Index = register - 100. */
    memset(out, 0, sizeof *out);
    out->total_distance_x10m = reg_u32(regs, 0);
    out->max_discharge_current_x100ma = regs[2];
    out->max_charge_current_x100ma = regs[3];
    out->max_cell_diff_mv_x10 = regs[4];
    out->under_voltage_count = regs[5];
    out->over_voltage_count = regs[6];
    out->discharge_overcurrent_count = regs[7];
    out->charge_overcurrent_count = regs[8];
    out->over_heat_count = regs[9];
    out->charging_count = regs[11];
    out->full_charge_count = regs[12];
    out->min_pack_temp_c = (int8_t)(regs[13] & 0xFF);
    out->max_pack_temp_c = (int8_t)(regs[13] >> 8);
    out->last_reset_cause = (uint8_t)(regs[14] & 0xFF);
    out->last_wakeup_cause = (uint8_t)(regs[14] >> 8);
    out->stats_cleared_at_s = reg_u32(regs, 16);
    out->valid = true;
    return GW_OK;
}

int tinybms_decode_events(const uint16_t regs[TINYBMS_REG_EVENTS_COUNT],
                          struct bms_event_log *out)
{
    if (!regs || !out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    for (unsigned slot = 0; slot < BMS_EVENT_SLOTS; slot++) {
        uint16_t even = regs[2 * slot], odd = regs[2 * slot + 1];
        if (even == 0 && odd == 0)
            continue; /* empty slot */
        struct bms_event *e = &out->events[out->count++];
        e->timestamp_s = (uint32_t)even | ((uint32_t)(odd & 0xFF) << 16);
        e->id = (uint8_t)(odd >> 8);
    }
    out->valid = true;
    return GW_OK;
}

int tinybms_decode_version(const uint16_t regs[TINYBMS_REG_VERSION_COUNT],
                           struct bms_version *out)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!regs || !out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    out->hw_version = (uint8_t)(regs[0] & 0xFF);
    out->hw_changes = (uint8_t)(regs[0] >> 8);
    out->fw_public = (uint8_t)(regs[1] & 0xFF);
    out->power_type = (uint8_t)((regs[1] >> 8) & 0x01);
    out->current_sensor = (uint8_t)((regs[1] >> 9) & 0x03);
    out->fw_internal = regs[2];
    out->bootloader_version = (uint8_t)(regs[3] & 0xFF);
    out->profile_version = (uint8_t)(regs[3] >> 8);
    for (unsigned i = 0; i < 6; i++) {
        uint16_t w = regs[4 + i];
        out->serial_words[i] = w;
        for (unsigned nib = 0; nib < 4; nib++)
            out->serial[4 * i + nib] = hex[(w >> (12 - 4 * nib)) & 0xF];
    }
    out->serial[24] = '\0';
    out->valid = true;
    return GW_OK;
}

int tinybms_decode_settings(const uint16_t *regs, uint16_t first_reg, size_t n,
                            struct bms_settings *out)
{
    if (!out || (!regs && n))
        return GW_ERR_INVAL;
    for (size_t i = 0; i < n; i++) {
        size_t reg = (size_t)first_reg + i;
        if (reg < BMS_SETTINGS_FIRST || reg > BMS_SETTINGS_LAST)
            continue;
        out->raw[reg - BMS_SETTINGS_FIRST] = regs[i];
        out->present_mask |= (uint64_t)1 << (reg - BMS_SETTINGS_FIRST);
        out->valid = true;
    }
    return GW_OK;
}
