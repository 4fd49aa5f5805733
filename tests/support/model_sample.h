/* What uart_bms would decode from the simulator's battery model: the one translation of a
 * battery_model into a live sample for the closed-loop and week tests. Fills the cells (with
 * the lowest and highest), pack voltage and current, temperatures, SOC, SOH, status and
 * lifetime; the caller sets the battery id and the time stamps. Header-only, like sample.h. */
#ifndef GW_TEST_MODEL_SAMPLE_H
#define GW_TEST_MODEL_SAMPLE_H

#include "battery_model.h"
#include "bms_data.h"

#include <stdint.h>
#include <string.h>

static inline void test_sample_from_model(const struct battery_model *m, struct bms_live_data *d)
{
    memset(d, 0, sizeof *d);
    d->valid = true;
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
        d->temp_dc[BMS_TEMP_EXT1 + s] =
            m->ext_sensor_connected[s] ? (int16_t)(m->temp_ext_c[s] * 10.0f) : BMS_TEMP_ABSENT_RAW;
    }
    d->soc_ppm = (uint32_t)(battery_model_soc(m) * 1e8f);
    d->soh_raw = 50000;
    d->soh_valid = true;
    d->online_status = battery_model_status(m);
    d->lifetime_s = (uint32_t)m->lifetime_s;
}

#endif
