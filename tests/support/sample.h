/* The one builder of a plausible TinyBMS live sample for unit tests, fuzz targets and
 * benchmarks: valid, 16 cells at cell_v, the pack at 16 x cell_v, current_a (A, + = charge),
 * SOC 80 %, SOH 100 %, 30.0 °C inside and 20.0 °C on the first external sensor, status idle,
 * lifetime 1000 s. Callers change the fields their case is about (SOC, status, a cell, ...).
 * Header-only: the fuzz targets build without the test libraries. */
#ifndef GW_TEST_SAMPLE_H
#define GW_TEST_SAMPLE_H

#include "bms_data.h"

#include <stdint.h>
#include <string.h>

static inline struct bms_live_data test_sample(uint8_t battery_id, float cell_v, float current_a)
{
    struct bms_live_data s;
    memset(&s, 0, sizeof s);
    s.battery_id = battery_id;
    s.valid = true;
    s.cell_count = 16;
    for (unsigned i = 0; i < 16; i++)
        s.cell_mv_x10[i] = (uint16_t)(cell_v * 10000.0f + 0.5f);
    s.pack_voltage_v = cell_v * 16.0f;
    s.pack_current_a = current_a;
    s.soc_ppm = 80u * 1000000u;
    s.soh_raw = 50000;
    s.soh_valid = true;
    s.temp_dc[BMS_TEMP_INTERNAL] = 300;
    s.temp_present[BMS_TEMP_INTERNAL] = true;
    s.temp_dc[BMS_TEMP_EXT1] = 200;
    s.temp_present[BMS_TEMP_EXT1] = true;
    s.online_status = BMS_STATUS_IDLE;
    s.lifetime_s = 1000;
    return s;
}

#endif
