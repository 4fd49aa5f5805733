/* The battery data model shared by every module (portable: no OS calls).
 * Produced by the TinyBMS codec (src/core/tinybms), carried on the event bus, consumed by CAN,
 * MQTT, alerts, history and the web UI. Plain structs, copied by value; no pointers inside.
 * Several batteries: every sample carries battery_id (0 for the first BMS). */
#ifndef BMS_DATA_H
#define BMS_DATA_H

#include <stdbool.h>
#include <stdint.h>

#define BMS_MAX_CELLS 16
#define BMS_MIN_CELLS 4
#define BMS_TEMP_SENSORS 3          /* internal, external 1, external 2 */
#define BMS_TEMP_ABSENT_RAW (-32768) /* register value of a sensor that is not connected */
#define BMS_EVENT_SLOTS 49           /* registers 200..297 */
#define BMS_SETTINGS_FIRST 300
#define BMS_SETTINGS_LAST 343        /* last documented setting register */
#define BMS_SETTINGS_COUNT (BMS_SETTINGS_LAST - BMS_SETTINGS_FIRST + 1)
#define BMS_WRITABLE_FIRST 300       /* the BMS only accepts writes to 300..399 */
#define BMS_WRITABLE_LAST 399

/* Register 50. */
enum bms_online_status {
    BMS_STATUS_UNKNOWN = 0,
    BMS_STATUS_CHARGING = 0x91,
    BMS_STATUS_FULLY_CHARGED = 0x92,
    BMS_STATUS_DISCHARGING = 0x93,
    BMS_STATUS_REGENERATION = 0x96,
    BMS_STATUS_IDLE = 0x97,
    BMS_STATUS_FAULT = 0x9B,
};

/* How register numbers map to user-visible cell numbers (the spec page says the documented
 * order is not certain on real packs: make it a setting). */
enum bms_cell_order {
    BMS_CELL_ORDER_DOCUMENTED = 0, /* lowest used register = cell 1 */
    BMS_CELL_ORDER_REVERSED = 1,   /* register 15 = cell 1 (as the public Sunny Island bridge) */
};

enum bms_temp_sensor { BMS_TEMP_INTERNAL = 0, BMS_TEMP_EXT1 = 1, BMS_TEMP_EXT2 = 2 };

/* One live sample (registers 0..55). Cell arrays are in user numbering: cell_mv_x10[0] is
 * "cell 1" after the cell-order setting was applied; only the first cell_count entries mean
 * anything. */
struct bms_live_data {
    uint8_t battery_id;
    bool valid;                 /* false: nothing decoded yet / communication lost */
    uint64_t timestamp_ms;      /* gw_now_ms() when decoded (monotonic; staleness checks) */
    int64_t wall_time_ms;       /* Unix ms when decoded (history, display) */

    uint8_t cell_count;         /* register 53, clamped to 0..16 */
    uint16_t cell_mv_x10[BMS_MAX_CELLS]; /* 0.1 mV */
    uint16_t min_cell_mv;       /* register 40 */
    uint16_t max_cell_mv;       /* register 41 */
    uint8_t min_cell_index;     /* 1-based user cell number of the lowest cell, 0 = unknown */
    uint8_t max_cell_index;     /* 1-based user cell number of the highest cell, 0 = unknown */
    uint16_t cell_spread_mv_x10;/* max - min over the detected cells, 0.1 mV */

    float pack_voltage_v;       /* registers 36-37 */
    float pack_current_a;       /* registers 38-39, positive = charge, negative = discharge */

    int16_t temp_dc[BMS_TEMP_SENSORS]; /* 0.1 degC: internal (48), ext1 (42), ext2 (43) */
    bool temp_present[BMS_TEMP_SENSORS];

    uint32_t soc_ppm;           /* registers 46-47: 0.000001 % (100 % = 100000000) */
    uint16_t soh_raw;           /* register 45: 0.002 % (100 % = 50000) */
    bool soh_valid;             /* false on firmware without register 45 or out of range */

    uint16_t online_status;     /* register 50, enum bms_online_status */
    uint16_t balancing_decision;/* register 51, bit 0 = cell 1 (document's numbering) */
    uint16_t balancing_active;  /* register 52 */

    uint32_t lifetime_s;        /* registers 32-33 */
    uint32_t time_left_s;       /* registers 34-35 */
    uint16_t distance_left_km;  /* register 44 */
    float speed_kmh;            /* registers 54-55 */
};

/* Statistics, registers 100..117. */
struct bms_statistics {
    bool valid;
    uint32_t total_distance_x10m;    /* 100-101, 0.01 km */
    uint16_t max_discharge_current_x100ma; /* 102 */
    uint16_t max_charge_current_x100ma;    /* 103 */
    uint16_t max_cell_diff_mv_x10;   /* 104 */
    uint16_t under_voltage_count;    /* 105 */
    uint16_t over_voltage_count;     /* 106 */
    uint16_t discharge_overcurrent_count; /* 107 */
    uint16_t charge_overcurrent_count;    /* 108 */
    uint16_t over_heat_count;        /* 109 */
    uint16_t charging_count;         /* 111 */
    uint16_t full_charge_count;      /* 112 */
    int8_t min_pack_temp_c;          /* 113 low byte */
    int8_t max_pack_temp_c;          /* 113 high byte */
    uint8_t last_reset_cause;        /* 114 low byte */
    uint8_t last_wakeup_cause;       /* 114 high byte */
    uint32_t stats_cleared_at_s;     /* 116-117 */
};

/* One entry of the BMS event log (registers 200..297, or commands 0x11/0x12). */
struct bms_event {
    uint32_t timestamp_s;  /* 24-bit BMS lifetime seconds */
    uint8_t id;            /* see tinybms_event_name() */
};

struct bms_event_log {
    bool valid;
    uint8_t count;                          /* entries used */
    struct bms_event events[BMS_EVENT_SLOTS];
};

/* Settings 300..343 as raw register words, plus which were read successfully (firmware without
 * the newer registers NACKs or returns junk for them). Decoded views come from the codec. */
struct bms_settings {
    bool valid;
    uint16_t raw[BMS_SETTINGS_COUNT];       /* raw[reg - 300] */
    uint64_t present_mask;                  /* bit (reg - 300) set = read and trusted */
};

/* The pack's own protection settings, decoded once from struct bms_settings by the TinyBMS
 * codec (tinybms_pack_limits_decode): the only place that knows their register numbers. A value
 * is trusted (has_* true) only when it was read and lies in the register's documented range. */
struct bms_pack_limits {
    bool has_fully_charged;        float fully_charged_cell_v;     /* 300 */
    bool has_fully_discharged;     float fully_discharged_cell_v;  /* 301 */
    bool has_early_balancing;      float early_balancing_cell_v;   /* 303 */
    bool has_charge_finished;      float charge_finished_a;        /* 304 */
    bool has_capacity;             float capacity_ah;              /* 306 */
    bool has_series_cells;         uint8_t series_cells;           /* 307 */
    bool has_allowed_disbalance;   float allowed_disbalance_mv;    /* 308 */
    bool has_over_voltage;         float over_voltage_cell_v;      /* 315 cutoff */
    bool has_under_voltage;        float under_voltage_cell_v;     /* 316 cutoff */
    bool has_discharge_overcurrent; float discharge_overcurrent_a; /* 317 cutoff */
    bool has_charge_overcurrent;   float charge_overcurrent_a;     /* 318 cutoff */
    bool has_over_heat;            float over_heat_c;              /* 319 cutoff */
    bool has_low_temp_charge;      float low_temp_charge_c;        /* 320 charger cutoff */
    bool has_charge_restart;       float charge_restart_pct;       /* 321 */
};

/* Version registers 500..509. */
struct bms_version {
    bool valid;
    uint8_t hw_version;          /* 500 low */
    uint8_t hw_changes;          /* 500 high */
    uint8_t fw_public;           /* 501 low */
    uint8_t power_type;          /* 501 high bit 0: 0 low, 1 high power */
    uint8_t current_sensor;      /* 501 high bits 1-2: 0 internal resistor, 1 internal hall, 2 external */
    uint16_t fw_internal;        /* 502 */
    uint8_t bootloader_version;  /* 503 low */
    uint8_t profile_version;     /* 503 high */
    uint16_t serial_words[6];    /* 504..509, raw */
    char serial[25];             /* 96 bits as 24 hex digits, NUL-terminated */
};

/* Convenience conversions (header-only, portable). */
static inline float bms_soc_percent(const struct bms_live_data *d) { return (float)d->soc_ppm / 1e6f; }
static inline float bms_soh_percent(const struct bms_live_data *d) { return (float)d->soh_raw * 0.002f; }
static inline float bms_cell_v(const struct bms_live_data *d, unsigned i) { return (float)d->cell_mv_x10[i] / 10000.0f; }
static inline float bms_temp_c(const struct bms_live_data *d, unsigned s) { return (float)d->temp_dc[s] / 10.0f; }

/* Name of an online status ("charging", "fully charged", "discharging", "regeneration",
 * "idle", "fault", or "unknown"). Static string. */
const char *bms_online_status_name(uint16_t status);

/* Highest / lowest temperature over the connected sensors, in 0.1 degC; false when none. */
bool bms_temp_max_dc(const struct bms_live_data *d, int16_t *out);
bool bms_temp_min_dc(const struct bms_live_data *d, int16_t *out);

#endif
