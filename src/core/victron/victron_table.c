/* The declarative conversion table: every numeric field of every frame we send. It drives the
 * encoder (victron_encode.c) and is the source of docs/can-frames.md. */
#include "victron.h"

#define U8_MAX_RAW 255.0
#define U16_MAX_RAW 65535.0
#define S16_MIN_RAW -32768.0
#define S16_MAX_RAW 32767.0
#define U32_MAX_RAW 4294967295.0
#define ZERO_C_IN_K 273.15

/* One field, rounded to nearest; LIMIT: a charge limit, rounded down (never above the ask). */
#define ROWR(id, off, size, sgn, wrap, src, nan, rnd, factor, offs, lo, hi, nanraw, name, unit, res) \
    { (id), (off), (size), (sgn), (wrap), (src), (nan), (rnd), (factor), (offs), (lo), (hi),         \
      (nanraw), (name), (unit), (res) }
#define ROW(id, off, size, sgn, wrap, src, nan, factor, offs, lo, hi, nanraw, name, unit, res)      \
    ROWR(id, off, size, sgn, wrap, src, nan, VICTRON_ROUND_NEAREST, factor, offs, lo, hi, nanraw,   \
         name, unit, res)
#define LIMIT(id, off, size, sgn, src, nan, factor, lo, hi, name, unit, res)                        \
    ROWR(id, off, size, sgn, false, src, nan, VICTRON_ROUND_DOWN, factor, 0.0, lo, hi, 0.0, name,   \
         unit, res)

static const struct victron_field field_table[] = {
    /* 0x351: the limits, rounded down. CVL NaN or below one step withholds the frame (never
     * CVL 0); CCL/DCL are sent as positive numbers, NaN -> 0 (no current is the safe answer). */
    LIMIT(0x351, 0, 2, false, VICTRON_SRC_CVL_V, VICTRON_NAN_WITHHOLD, 10.0, 0.0, U16_MAX_RAW,
          "charge voltage limit (CVL)", "V", "0.1 V"),
    LIMIT(0x351, 2, 2, true, VICTRON_SRC_CCL_A, VICTRON_NAN_SUBSTITUTE, 10.0, 0.0, S16_MAX_RAW,
          "charge current limit (CCL)", "A", "0.1 A"),
    LIMIT(0x351, 4, 2, true, VICTRON_SRC_DCL_A, VICTRON_NAN_SUBSTITUTE, 10.0, 0.0, S16_MAX_RAW,
          "discharge current limit (DCL)", "A", "0.1 A"),
    ROW(0x351, 6, 2, false, false, VICTRON_SRC_DISCHARGE_V, VICTRON_NAN_SUBSTITUTE, 10.0, 0.0,
        0.0, U16_MAX_RAW, 0.0, "discharge voltage (unused by Victron)", "V", "0.1 V"),
    /* 0x355: state of charge / health. */
    ROW(0x355, 0, 2, false, false, VICTRON_SRC_SOC_PCT, VICTRON_NAN_WITHHOLD, 1.0, 0.0, 0.0,
        100.0, 0.0, "state of charge", "%", "1 %"),
    ROW(0x355, 2, 2, false, false, VICTRON_SRC_SOH_PCT, VICTRON_NAN_SUBSTITUTE, 1.0, 0.0, 0.0,
        100.0, 100.0, "state of health (unknown -> 100)", "%", "1 %"),
    ROW(0x355, 4, 2, false, false, VICTRON_SRC_SOC_HIRES_PCT, VICTRON_NAN_WITHHOLD, 100.0, 0.0,
        0.0, 10000.0, 0.0, "state of charge, high resolution", "%", "0.01 %"),
    /* 0x356: measurements. Voltage and current NaN withhold the frame (a GX with shared
     * voltage sense would forward a substitute to the chargers); no temperature shortens the
     * DLC to 4. */
    ROW(0x356, 0, 2, true, false, VICTRON_SRC_PACK_V, VICTRON_NAN_WITHHOLD, 100.0, 0.0, 0.0,
        S16_MAX_RAW, 0.0, "battery voltage", "V", "0.01 V"),
    ROW(0x356, 2, 2, true, false, VICTRON_SRC_PACK_A, VICTRON_NAN_WITHHOLD, 10.0, 0.0, S16_MIN_RAW,
        S16_MAX_RAW, 0.0, "battery current (+ = charge)", "A", "0.1 A"),
    ROW(0x356, 4, 2, true, false, VICTRON_SRC_TEMP_C, VICTRON_NAN_TRUNCATE, 10.0, 0.0, S16_MIN_RAW,
        S16_MAX_RAW, 0.0, "battery temperature (hottest cell sensor)", "degC", "0.1 degC"),
    /* 0x35F: model, firmware, capacity, hardware. */
    ROW(0x35F, 0, 2, false, false, VICTRON_SRC_MODEL_ID, VICTRON_NAN_SUBSTITUTE, 1.0, 0.0, 0.0,
        U16_MAX_RAW, 0.0, "battery model id", "", "1"),
    ROW(0x35F, 2, 1, false, false, VICTRON_SRC_FW_MAJOR, VICTRON_NAN_SUBSTITUTE, 1.0, 0.0, 0.0,
        U8_MAX_RAW, 0.0, "firmware version major", "", "1"),
    ROW(0x35F, 3, 1, false, false, VICTRON_SRC_FW_MINOR, VICTRON_NAN_SUBSTITUTE, 1.0, 0.0, 0.0,
        U8_MAX_RAW, 0.0, "firmware version minor", "", "1"),
    ROW(0x35F, 4, 2, false, false, VICTRON_SRC_CAPACITY_AH, VICTRON_NAN_SUBSTITUTE, 1.0, 0.0, 0.0,
        U16_MAX_RAW, 0.0, "online capacity", "Ah", "1 Ah"),
    ROW(0x35F, 6, 2, false, false, VICTRON_SRC_HW_VERSION, VICTRON_NAN_SUBSTITUTE, 1.0, 0.0, 0.0,
        U16_MAX_RAW, 0.0, "hardware version", "", "1"),
    /* 0x372: module counts. */
    ROW(0x372, 0, 2, false, false, VICTRON_SRC_MODULES_OK, VICTRON_NAN_SUBSTITUTE, 1.0, 0.0, 0.0,
        U16_MAX_RAW, 0.0, "modules OK", "", "1"),
    ROW(0x372, 2, 2, false, false, VICTRON_SRC_MODULES_BLOCK_CHARGE, VICTRON_NAN_SUBSTITUTE, 1.0,
        0.0, 0.0, U16_MAX_RAW, 0.0, "modules blocking charge", "", "1"),
    ROW(0x372, 4, 2, false, false, VICTRON_SRC_MODULES_BLOCK_DISCHARGE, VICTRON_NAN_SUBSTITUTE, 1.0,
        0.0, 0.0, U16_MAX_RAW, 0.0, "modules blocking discharge", "", "1"),
    ROW(0x372, 6, 2, false, false, VICTRON_SRC_MODULES_OFFLINE, VICTRON_NAN_SUBSTITUTE, 1.0, 0.0,
        0.0, U16_MAX_RAW, 0.0, "modules offline", "", "1"),
    /* 0x373: cell extremes; no temperature sensor shortens the DLC to 4. */
    ROW(0x373, 0, 2, false, false, VICTRON_SRC_MIN_CELL_V, VICTRON_NAN_SUBSTITUTE, 1000.0, 0.0, 0.0,
        U16_MAX_RAW, 0.0, "lowest cell voltage", "V", "1 mV"),
    ROW(0x373, 2, 2, false, false, VICTRON_SRC_MAX_CELL_V, VICTRON_NAN_SUBSTITUTE, 1000.0, 0.0, 0.0,
        U16_MAX_RAW, 0.0, "highest cell voltage", "V", "1 mV"),
    ROW(0x373, 4, 2, false, false, VICTRON_SRC_MIN_TEMP_C, VICTRON_NAN_TRUNCATE, 1.0, ZERO_C_IN_K,
        0.0, U16_MAX_RAW, 0.0, "lowest cell temperature", "degC", "1 K"),
    ROW(0x373, 6, 2, false, false, VICTRON_SRC_MAX_TEMP_C, VICTRON_NAN_TRUNCATE, 1.0, ZERO_C_IN_K,
        0.0, U16_MAX_RAW, 0.0, "highest cell temperature", "degC", "1 K"),
    /* 0x378: lifetime energy counters, roll over to 0 past the maximum. */
    ROW(0x378, 0, 4, false, true, VICTRON_SRC_ENERGY_IN_WH, VICTRON_NAN_SUBSTITUTE, 0.01, 0.0, 0.0,
        U32_MAX_RAW, 0.0, "energy charged", "Wh", "100 Wh"),
    ROW(0x378, 4, 4, false, true, VICTRON_SRC_ENERGY_OUT_WH, VICTRON_NAN_SUBSTITUTE, 0.01, 0.0, 0.0,
        U32_MAX_RAW, 0.0, "energy discharged", "Wh", "100 Wh"),
    /* 0x379: installed capacity. */
    ROW(0x379, 0, 2, false, false, VICTRON_SRC_INSTALLED_AH, VICTRON_NAN_SUBSTITUTE, 1.0, 0.0, 0.0,
        U16_MAX_RAW, 0.0, "installed capacity", "Ah", "1 Ah"),
};

const struct victron_field *victron_field_table(size_t *count)
{
    if (count)
        *count = sizeof field_table / sizeof field_table[0];
    return field_table;
}

/* Round half away from zero with a tolerance of ROUND_TOL steps, so decimal inputs stored as
 * the float just below (58.05f = 58.0499992) round as written. */
#define ROUND_TOL 0.005
/* Rounding down: a value within this relative distance below a step is that step. Inputs are
 * floats (24-bit mantissa: the float nearest to k/10 is within 2^-24 of it, relatively), so
 * 2^-23 takes "55.3" stored as 55.2999992f as 55.3 and nothing that is really below. */
#define DOWN_REL_TOL 1.1920928955078125e-7
#define SAFE_ABS_MAX 9.0e15 /* below 2^53: exact in a double, fits int64 */

/* Largest integer <= x (|x| <= SAFE_ABS_MAX); no <math.h> in the portable core. */
static int64_t floor_i64(double x)
{
    int64_t t = (int64_t)x; /* truncates toward zero */
    return (double)t > x ? t - 1 : t;
}

int64_t victron_field_raw(const struct victron_field *f, double value)
{
    if (!f || value != value || value > 1e300 || value < -1e300)
        return 0;
    double scaled = value * f->factor + f->offset;
    if (scaled > SAFE_ABS_MAX)
        scaled = SAFE_ABS_MAX;
    if (scaled < -SAFE_ABS_MAX)
        scaled = -SAFE_ABS_MAX;
    int64_t raw;
    if (f->rounding == VICTRON_ROUND_DOWN)
        raw = floor_i64(scaled + (scaled >= 0.0 ? scaled : -scaled) * DOWN_REL_TOL);
    else
        raw = scaled >= 0.0 ? (int64_t)(scaled + 0.5 + ROUND_TOL) : -(int64_t)(-scaled + 0.5 + ROUND_TOL);
    if (f->wraps) {
        if (raw < 0)
            return 0;
        uint64_t modulus = (uint64_t)1 << (8u * f->size);
        return (int64_t)((uint64_t)raw % modulus);
    }
    if ((double)raw < f->raw_min)
        raw = (int64_t)f->raw_min;
    if ((double)raw > f->raw_max)
        raw = (int64_t)f->raw_max;
    return raw;
}
