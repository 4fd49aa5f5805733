/* Victron "CAN-bus BMS" frame encoder (spec: shared/spec/victron-can-bms.md; the frames are
 * listed in docs/can-frames.md).
 *
 * Portable core: pure functions over caller-owned buffers; no OS calls, no allocation, no
 * globals except the constant conversion table. Thread-safe (no shared mutable state).
 *
 * Numbers: little-endian; raw = value x factor + offset, rounded to nearest (half away from
 * zero, with a tolerance of 1/200 step so 58.05 V stored as 58.0499992f still gives 581),
 * except the charge limits CVL/CCL/DCL, rounded DOWN to their step (55.249 V -> 55.2 V, never
 * 55.3 V: a limit never goes out higher than asked); out-of-range values saturate to the field's min/max; NaN/inf never reach the bus: each field
 * has a documented policy (withhold the frame, substitute a value, or shorten the DLC). */
#ifndef VICTRON_H
#define VICTRON_H

#include "bms_data.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Frames ------------------------------------------------------------------------------ */

struct victron_frame {
    uint16_t id;      /* 11-bit CAN id */
    uint8_t dlc;      /* 0..8 */
    uint8_t data[8];  /* bytes past dlc are 0 */
};

/* Ids we send. */
enum victron_can_id {
    VICTRON_ID_LIMITS = 0x351,
    VICTRON_ID_SOC = 0x355,
    VICTRON_ID_MEASURE = 0x356,
    VICTRON_ID_ALARMS = 0x35A,
    VICTRON_ID_MANUFACTURER = 0x35E,
    VICTRON_ID_INFO = 0x35F,
    VICTRON_ID_NAME1 = 0x370,
    VICTRON_ID_NAME2 = 0x371,
    VICTRON_ID_MODULES = 0x372,
    VICTRON_ID_CELL_EXTREMES = 0x373,
    VICTRON_ID_MIN_CELL_ID = 0x374,
    VICTRON_ID_MAX_CELL_ID = 0x375,
    VICTRON_ID_MIN_TEMP_ID = 0x376,
    VICTRON_ID_MAX_TEMP_ID = 0x377,
    VICTRON_ID_ENERGY = 0x378,
    VICTRON_ID_INSTALLED_CAPACITY = 0x379,
    VICTRON_ID_SERIAL1 = 0x380,
    VICTRON_ID_SERIAL2 = 0x381,
    VICTRON_ID_FAMILY = 0x382,
};

/* Frame sets (bit mask), the one definition of what goes out how often.
 * LIVE: 0x351 0x355 0x356 0x35A 0x372 0x373 0x374..0x377 0x378 0x379 (every ~1 s; the energy
 * counters move with every sample); IDENTITY: 0x35E 0x35F 0x370 0x371 0x380 0x381 0x382
 * (every ~10 s). */
enum victron_frame_set { VICTRON_SET_LIVE = 1u, VICTRON_SET_IDENTITY = 2u, VICTRON_SET_ALL = 3u };
#define VICTRON_LIVE_FRAMES 12
#define VICTRON_IDENTITY_FRAMES 7
#define VICTRON_MAX_FRAMES (VICTRON_LIVE_FRAMES + VICTRON_IDENTITY_FRAMES)

/* ---- 0x35A alarm / warning flags --------------------------------------------------------- */

enum victron_flag {
    VICTRON_FLAG_GENERAL = 0,        /* byte 0/4 bits 0-1 */
    VICTRON_FLAG_HIGH_VOLTAGE,       /* 0/4 bits 2-3 */
    VICTRON_FLAG_LOW_VOLTAGE,        /* 0/4 bits 4-5 */
    VICTRON_FLAG_HIGH_TEMP,          /* 0/4 bits 6-7 */
    VICTRON_FLAG_LOW_TEMP,           /* 1/5 bits 0-1 */
    VICTRON_FLAG_HIGH_TEMP_CHARGE,   /* 1/5 bits 2-3 */
    VICTRON_FLAG_LOW_TEMP_CHARGE,    /* 1/5 bits 4-5 */
    VICTRON_FLAG_HIGH_DISCHARGE_CURRENT, /* 1/5 bits 6-7 */
    VICTRON_FLAG_HIGH_CHARGE_CURRENT,/* 2/6 bits 0-1 */
    VICTRON_FLAG_CONTACTOR,          /* 2/6 bits 2-3 */
    VICTRON_FLAG_SHORT_CIRCUIT,      /* 2/6 bits 4-5 */
    VICTRON_FLAG_BMS_INTERNAL,       /* 2/6 bits 6-7 */
    VICTRON_FLAG_CELL_IMBALANCE,     /* 3/7 bits 0-1 */
    VICTRON_FLAG_COUNT
};

enum victron_flag_state {
    VICTRON_FLAG_NOT_SUPPORTED = 0,  /* both bits clear: the GX hides the flag */
    VICTRON_FLAG_OK = 1,             /* upper bit of the pair (0x02/0x08/0x20/0x80) */
    VICTRON_FLAG_ACTIVE = 2,         /* lower bit of the pair (0x01/0x04/0x10/0x40) */
};

struct victron_alarm_state {
    uint8_t alarm[VICTRON_FLAG_COUNT];   /* enum victron_flag_state, bytes 0..3 */
    uint8_t warning[VICTRON_FLAG_COUNT]; /* enum victron_flag_state, bytes 4..7 */
    bool online;                         /* byte 7 bits 2-3: 0x08 online, 0x04 offline */
};

/* Where flags come from (victron_alarms_from_bms). "At/above" comparisons; a warning is also
 * active whenever the value is past the alarm threshold. Voltages per cell. */
struct victron_alarm_thresholds {
    float cell_high_alarm_v;        /* BMS over-voltage cutoff (reg 315); LFP 3.65, NMC 4.20 */
    float cell_high_warn_v;         /* LFP 3.60, NMC 4.15 */
    float cell_low_alarm_v;         /* BMS under-voltage cutoff (reg 316); LFP 2.80, NMC 3.00 */
    float cell_low_warn_v;          /* LFP 2.90, NMC 3.10 */
    float temp_high_alarm_c;        /* BMS over-heat cutoff (reg 319); 60 */
    float temp_high_warn_c;         /* 55 */
    float temp_low_alarm_c;         /* -20 (discharge stops, charge_by/discharge_by_temp) */
    float temp_low_warn_c;          /* -10 */
    float charge_temp_high_alarm_c; /* while charging: 55 */
    float charge_temp_high_warn_c;  /* 50 */
    float charge_temp_low_alarm_c;  /* while charging: BMS low-temp charge cutoff (reg 320); 0 */
    float charge_temp_low_warn_c;   /* 3 */
    float discharge_current_alarm_a;/* BMS discharge over-current (reg 317); 200 */
    float discharge_current_warn_a; /* 90 % of the alarm */
    float charge_current_alarm_a;   /* BMS charge over-current (reg 318); 150 */
    float charge_current_warn_a;    /* 90 % of the alarm */
    float imbalance_alarm_mv;       /* cell spread; 200 */
    float imbalance_warn_mv;        /* 100 */
    float charging_min_a;           /* current above this counts as "charging", 0.5 */
    uint32_t event_hold_s;          /* protection events without recovery stay active, 120 */
};

/* Fills t with the defaults listed above (chemistry: enum gw_chemistry, 0 LFP, 1 NMC). */
void victron_alarm_thresholds_defaults(struct victron_alarm_thresholds *t, uint8_t chemistry);

/* Moves the alarm thresholds to the BMS's own cutoffs (over/under-voltage, over-currents,
 * over-heat, low-temperature charge: the trusted fields of the decoded pack limits), keeping
 * each warning the same distance before its alarm. limits may be NULL (no change). */
void victron_alarm_thresholds_apply_limits(struct victron_alarm_thresholds *t,
                                           const struct bms_pack_limits *limits);

/* Derives every flag from a live sample (cell max/min, temperatures, current, spread, status)
 * and, when recent is not NULL, the BMS protection events (see charge_protections_active:
 * over-voltage cutoff 0x03 -> high voltage alarm, 0x02/0x31 low voltage, 0x04 high temp,
 * 0x0A low temp, 0x37 low temp while charging, 0x05 high discharge current + short circuit,
 * 0x06/0x07 high charge current, 0x0B/0x0C/0x0D contactor, 0x0E BMS internal).
 * Every flag is supported: each reports OK or ACTIVE. General alarm = any alarm active or
 * offline; general warning = any warning active. online=false (stale data, or live->valid
 * false) sets the offline code in byte 7 and the general alarm.
 * live, t and out must not be NULL (out is zeroed when they are). Pure, thread-safe.
 * @retval GW_OK
 * @retval GW_ERR_INVAL a required pointer is NULL */
int victron_alarms_from_bms(const struct bms_live_data *live, const struct bms_event_log *recent,
                            const struct victron_alarm_thresholds *t, bool online,
                            struct victron_alarm_state *out);

/* Encodes 0x35A from a flag state (always DLC 8). @retval GW_OK, GW_ERR_INVAL (NULL) */
int victron_encode_alarms(const struct victron_alarm_state *alarms, struct victron_frame *out);

/* ---- Inputs of a frame set --------------------------------------------------------------- */

/* Identity strings (from config and the BMS version registers). 7-bit ASCII; other bytes are
 * sent as '?'; shorter strings are zero-padded. */
struct victron_identity {
    char manufacturer[9];   /* 0x35E, config can.manufacturer */
    char battery_name[17];  /* 0x370 + 0x371, config can.battery_name */
    char family[9];         /* 0x382, config can.family */
    char serial[17];        /* 0x380 + 0x381 (config can.serial or the BMS serial) */
    uint16_t model_id;      /* 0x35F bytes 0-1 */
    uint8_t fw_major;       /* 0x35F byte 2 */
    uint8_t fw_minor;       /* 0x35F byte 3 */
    uint16_t hw_version;    /* 0x35F bytes 6-7 */
};

/* Module counts of 0x372 (several packs: shared/spec/several-packs.md R11). */
struct victron_modules {
    uint16_t ok, blocking_charge, blocking_discharge, offline;
};

#define VICTRON_ID_TEXT 9   /* 8 characters of 0x374..0x377 + NUL */

/* Everything the frames carry, as plain values in SI-ish units: no BMS registers, no pointers.
 * The publisher fills it from the battery view; tests fill it directly. Unknown numbers are
 * NaN (victron_inputs_init), and each field's NaN policy (table below, docs/can-frames.md)
 * decides: withhold the frame, substitute a value, or shorten the DLC. */
struct victron_inputs {
    /* 0x351, rounded DOWN to the 0.1 V / 0.1 A step (never a higher limit than asked) */
    float cvl_v;          /* NaN, inf or < 0.1 V -> 0x351 withheld (never CVL 0) */
    float ccl_a;          /* NaN -> 0, negative -> 0 */
    float dcl_a;          /* NaN -> 0, negative -> 0 */
    float discharge_v;    /* NaN -> 0 */
    /* 0x355 */
    float soc_pct;        /* NaN -> 0x355 withheld */
    float soh_pct;        /* NaN (unknown) -> 100 */
    /* 0x356 */
    float voltage_v;      /* NaN -> 0x356 withheld */
    float current_a;      /* + = charge; NaN -> 0x356 withheld */
    float temp_c;         /* battery temperature; NaN -> DLC 4 */
    /* 0x35A */
    struct victron_alarm_state alarms;
    /* 0x372 */
    struct victron_modules modules;
    /* 0x373 */
    float min_cell_v, max_cell_v;   /* NaN -> raw 0 */
    float min_temp_c, max_temp_c;   /* NaN -> DLC shortened */
    /* 0x374..0x377: which cell / sensor ("C7", "P2C07", "T1"); empty -> all zero */
    char min_cell_id[VICTRON_ID_TEXT];
    char max_cell_id[VICTRON_ID_TEXT];
    char min_temp_id[VICTRON_ID_TEXT];
    char max_temp_id[VICTRON_ID_TEXT];
    /* 0x378, lifetime counters; wrap past 2^32 x 100 Wh; NaN/neg -> 0 */
    double energy_in_wh;
    double energy_out_wh;
    float capacity_ah;    /* 0x35F bytes 4-5: online capacity (what open GX implementations
                             send); NaN -> 0 */
    float installed_capacity_ah; /* 0x379; NaN -> 0 */
    /* 0x35E 0x35F 0x370 0x371 0x380 0x381 0x382 */
    struct victron_identity identity;
};

/* Resets in to "nothing known": every number NaN, ids and identity empty, every 0x35A flag
 * not supported and offline, module counts 0. in may be NULL (no-op). */
void victron_inputs_init(struct victron_inputs *in);

/* What a frame tells the GX, which decides when a publisher may send it. */
enum victron_frame_role {
    VICTRON_ROLE_LIMITS = 0,       /* 0x351: controls charging; only from fresh, valid limits */
    VICTRON_ROLE_MEASUREMENT,      /* 0x355 0x356 0x373..0x377: live values, never stale ones */
    VICTRON_ROLE_STATUS,           /* 0x35A 0x372: always (they say "offline" when stale) */
    VICTRON_ROLE_TOTALS,           /* 0x378 0x379: lifetime counters, installed capacity */
    VICTRON_ROLE_IDENTITY,         /* 0x35E 0x370 0x371 0x382: names from the configuration */
    VICTRON_ROLE_BMS_IDENTITY,     /* 0x35F (firmware), 0x380 0x381 (serial): read from the BMS,
                                      so only sent once known, never as zeros */
};

/* enum victron_frame_role of a frame we send, or GW_ERR_NOT_FOUND. Pure. */
int victron_frame_role(uint16_t id);

/* ---- Encoding ---------------------------------------------------------------------------- */

/* Encodes one frame by id (any id of enum victron_can_id) from in.
 * @retval GW_OK
 * @retval GW_ERR_INVAL out/in NULL
 * @retval GW_ERR_RANGE the frame must not be sent (CVL NaN/<0.1 V, SOC NaN, voltage or current NaN):
 *         *out is zeroed, the caller withholds it
 * @retval GW_ERR_NOT_FOUND id is not a frame we send */
int victron_encode_frame(uint16_t id, const struct victron_inputs *in, struct victron_frame *out);

/* Encodes every frame of the sets (enum victron_frame_set bits) into frames[0..*count), in id
 * order. A frame that must be withheld (see victron_encode_frame) is left out and the others
 * are still encoded. Capacity VICTRON_MAX_FRAMES always suffices.
 * @retval GW_OK every frame of the sets was encoded
 * @retval GW_ERR_RANGE at least one frame was withheld (e.g. 0x351 with a NaN CVL); frames and
 *         *count hold the rest — look for 0x351 with victron_find_frame before sending
 * @retval GW_ERR_OVERFLOW capacity too small (*count = frames written)
 * @retval GW_ERR_INVAL a pointer is NULL */
int victron_encode_set(unsigned sets, const struct victron_inputs *in, struct victron_frame *frames,
                       size_t capacity, size_t *count);

/* victron_encode_set(VICTRON_SET_ALL, ...): the live set then the identity set. */
int victron_encode_all(const struct victron_inputs *in, struct victron_frame *frames,
                       size_t capacity, size_t *count);

/* The CAN ids of the sets (enum victron_frame_set bits), in send order, into ids[0..cap)
 * (ids may be NULL); returns how many the sets hold, even when more than cap. */
size_t victron_set_ids(unsigned sets, uint16_t *ids, size_t cap);

/* The frame with this id in frames[0..count), or NULL. */
const struct victron_frame *victron_find_frame(const struct victron_frame *frames, size_t count,
                                               uint16_t id);

/* ---- Declarative conversion table (drives the numeric frames and docs/can-frames.md) ----- */

/* Numeric sources (one value each, in the unit of the field's table row). */
enum victron_source {
    VICTRON_SRC_CVL_V = 0, VICTRON_SRC_CCL_A, VICTRON_SRC_DCL_A, VICTRON_SRC_DISCHARGE_V,
    VICTRON_SRC_SOC_PCT, VICTRON_SRC_SOH_PCT, VICTRON_SRC_SOC_HIRES_PCT,
    VICTRON_SRC_PACK_V, VICTRON_SRC_PACK_A, VICTRON_SRC_TEMP_C,
    VICTRON_SRC_MODEL_ID, VICTRON_SRC_FW_MAJOR, VICTRON_SRC_FW_MINOR, VICTRON_SRC_CAPACITY_AH,
    VICTRON_SRC_HW_VERSION,
    VICTRON_SRC_MODULES_OK, VICTRON_SRC_MODULES_BLOCK_CHARGE, VICTRON_SRC_MODULES_BLOCK_DISCHARGE,
    VICTRON_SRC_MODULES_OFFLINE,
    VICTRON_SRC_MIN_CELL_V, VICTRON_SRC_MAX_CELL_V, VICTRON_SRC_MIN_TEMP_C, VICTRON_SRC_MAX_TEMP_C,
    VICTRON_SRC_ENERGY_IN_WH, VICTRON_SRC_ENERGY_OUT_WH, VICTRON_SRC_INSTALLED_AH,
    VICTRON_SRC_COUNT
};

/* What a NaN/inf source value becomes. */
enum victron_nan_policy {
    VICTRON_NAN_WITHHOLD = 0, /* the whole frame is not sent (GW_ERR_RANGE) */
    VICTRON_NAN_SUBSTITUTE,   /* raw value nan_raw is sent */
    VICTRON_NAN_TRUNCATE,     /* DLC shortened to this field's offset (spec: "shorten the DLC") */
};

/* How a scaled value becomes an integer. */
enum victron_rounding {
    VICTRON_ROUND_NEAREST = 0, /* half away from zero, tolerance 1/200 step */
    VICTRON_ROUND_DOWN,        /* floor; a float within its own precision (2^-23 relative) of
                                  a step counts as that step, so 55.3f (55.2999992) gives 553 */
};

struct victron_field {
    uint16_t can_id;
    uint8_t byte_offset;      /* byte offset in the frame */
    uint8_t size;             /* 1, 2 or 4 bytes */
    bool is_signed;
    bool wraps;               /* counters: raw modulo 2^(8 x size) instead of saturating */
    uint8_t source;           /* enum victron_source */
    uint8_t nan_policy;       /* enum victron_nan_policy */
    uint8_t rounding;         /* enum victron_rounding */
    double factor;            /* raw = round(value x factor + offset) */
    double offset;            /* added after the factor (0x373: 273.15 for degC -> K) */
    double raw_min, raw_max;  /* saturation limits (raw units) */
    double nan_raw;           /* VICTRON_NAN_SUBSTITUTE value (raw) */
    const char *name;         /* "charge voltage limit (CVL)" */
    const char *unit;         /* unit of the source value: "V", "A", "%", "degC", ... */
    const char *resolution;   /* on the bus: "0.1 V", "1 K", "100 Wh", ... */
};

/* The table (constant, static storage), every numeric field of every frame, in id order. */
const struct victron_field *victron_field_table(size_t *count);

/* Converts one value to its raw bus representation (the field's rounding, saturation, wrap). NaN/inf
 * must be handled by the caller (the policy); returns 0 for them. Exposed for tests/docs. */
int64_t victron_field_raw(const struct victron_field *f, double value);

struct can_frame_gw;
/* One-line meaning of a frame of the protocol (ours or the GX's), for the tap and tools:
 * "0x351 CVL 55.2 V CCL 100.0 A DCL 150.0 A", "0x305 GX keep-alive", "0x123 [2] 01 02".
 * Always NUL-terminates buf (cap > 0). Returns the length written or GW_ERR_INVAL. Pure. */
int victron_describe_frame(const struct can_frame_gw *frame, char *buf, size_t cap);

#endif
