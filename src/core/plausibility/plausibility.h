/* The plausibility gate: is a decoded BMS sample physically possible? A sample that is not never
 * reaches an output or an energy counter (the battery engine counts it as a bad sample).
 *
 * Portable core: pure functions, no allocation, no clock, no globals; thread-safe.
 *
 * The rules are a table (plausibility.c), checked in order; the first that fails names the
 * sample's defect. The bounds are physical, not operational: a cell at 3.70 V on an LFP pack is
 * alarming but possible (charge control and the alarms deal with it); a cell at 6.55 V, a pack at
 * -53 V, a SOC of 4295 % or 3276.7 degC are readings of a broken link or a broken BMS. */
#ifndef PLAUSIBILITY_H
#define PLAUSIBILITY_H

#include "bms_data.h"

#include <stdbool.h>
#include <stdint.h>

enum plausibility_rule {
    PLAUSIBILITY_OK = 0,
    PLAUSIBILITY_NOT_FINITE,      /* NaN or infinite voltage/current */
    PLAUSIBILITY_CELL_COUNT,      /* register 53 outside 4..16 */
    PLAUSIBILITY_CELL_RANGE,      /* a cell outside the chemistry's physical range */
    PLAUSIBILITY_PACK_RANGE,      /* pack voltage outside cells x physical range */
    PLAUSIBILITY_PACK_VS_CELLS,   /* pack voltage far from the sum of the cells */
    PLAUSIBILITY_SOC_RANGE,       /* SOC above 100 % */
    PLAUSIBILITY_CURRENT_RANGE,   /* current beyond a multiple of the BMS's over-current cutoffs */
    PLAUSIBILITY_TEMP_RANGE,      /* a present sensor outside the sensor's range */
};

#define PLAUSIBILITY_REASON_LEN 48

struct plausibility_result {
    uint8_t rule;                          /* enum plausibility_rule */
    char reason[PLAUSIBILITY_REASON_LEN];  /* "cell 3 at 6.554 V (LFP range 1.00..4.30 V)" */
};

/* Bounds used by the rules (exposed so tests and docs can state them). */
#define PLAUSIBILITY_TEMP_MIN_C (-40.0f)   /* NTC sensors of the TinyBMS: -40..+125 degC */
#define PLAUSIBILITY_TEMP_MAX_C 125.0f
#define PLAUSIBILITY_PACK_TOLERANCE_V 1.0f /* |pack - sum(cells)| <= 1 V + 2 % */
#define PLAUSIBILITY_PACK_TOLERANCE_REL 0.02f
#define PLAUSIBILITY_CURRENT_FACTOR 3.0f   /* |I| <= 3 x the BMS's own over-current cutoff */
#define PLAUSIBILITY_CURRENT_MAX_A 2000.0f /* when the BMS's cutoffs are not known (yet) */

/* Physical cell range of a chemistry (enum gw_chemistry); unknown chemistries get the widest. */
void plausibility_cell_range(uint8_t chemistry, float *min_v, float *max_v);

/* Largest current magnitude accepted, from the BMS's over-current cutoffs (limits may be NULL). */
float plausibility_current_bound_a(const struct bms_pack_limits *limits);

/* Checks one sample. limits may be NULL (settings not read yet: wider current bound).
 * Returns true when every rule holds; false with out->rule / out->reason naming the first that
 * fails. out may be NULL. s may not be NULL (false, NOT_FINITE). */
bool plausibility_check_sample(const struct bms_live_data *s, const struct bms_pack_limits *limits,
                               uint8_t chemistry, struct plausibility_result *out);

/* Whether integrating voltage_v x current_a over dt_ms is possible for a pack of cell_count
 * cells with these limits: finite, voltage within the cells' physical range, current within the
 * bound above. An energy counter refuses any step for which this is false. */
bool plausibility_energy_step_ok(float voltage_v, float current_a, uint32_t dt_ms, uint8_t cell_count,
                                 const struct bms_pack_limits *limits, uint8_t chemistry);

/* Name of a rule ("ok", "cell range", ...). Static string. */
const char *plausibility_rule_name(uint8_t rule);

#endif
