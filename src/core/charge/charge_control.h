/* Charge control: the CVL / CCL / DCL limits that make Victron chargers and inverters obey the
 * battery (docs/charge-control.md explains the algorithm and every parameter).
 *
 * Portable core: no OS calls, no allocation, no clock reads (the caller passes now_ms), no
 * globals. One struct charge_control per battery, owned by the caller; not thread-safe (one
 * thread steps it, typically the CAN publisher once per second).
 *
 * Safety rules implemented here (see the doc for the why):
 *  - CVL is never 0, never NaN, never "measured voltage minus a constant"; charging is stopped
 *    with CVL too: when the charge target is 0 (cold, BMS protection or fault, over-voltage
 *    latch, no cell temperature sensor...) CVL is held at the pack voltage (floor: cells x
 *    discharge_cell_v), because Victron chargers push ~0.5 A at CCL 0 and MPPTs with feed-in
 *    ignore CCL; cell excess over cell_limit_v lowers it too.
 *  - CCL / DCL = the smallest of every source, each with its reason; 0 in the direction the
 *    BMS has switched off (a fault blocks by its cause; an unexplained one blocks charging).
 *  - Only the external sensors are cell temperatures; without one, charging is capped at
 *    no_cell_temp_charge_a.
 *  - Decreases apply at once; increases wait, then ramp (at most 2 s counted per step); leaving
 *    0 A needs hysteresis; increases below 2 % of the maximum are not started, table values are
 *    rounded down to that step and a table decrease is reversed only after 10 min clean; CVL
 *    rises at 0.2 mV/cell/s at most, always.
 *  - Phases: a rebulk needs voltage evidence near rest for 10 min (never the SOC alone); the
 *    time at the top is capped (max_top_time_s); BMS status 0x92 means float. */
#ifndef CHARGE_CONTROL_H
#define CHARGE_CONTROL_H

#include "app_events.h"
#include "bms_data.h"
#include "gw_config.h"

#include <stdbool.h>
#include <stdint.h>

#define CHARGE_REASON_LEN 48 /* same size as app_charge_limits.*_reason */

enum charge_phase {
    CHARGE_PHASE_BULK = 0,       /* CVL = cells x target_cell_v, waiting for balance */
    CHARGE_PHASE_ABSORPTION = 1, /* at target with a small spread, timer running */
    CHARGE_PHASE_FLOAT = 2,      /* CVL ramped down to cells x float_cell_v */
};

/* Protections the BMS reports as active (bit mask), from its status register and its event log.
 * Used by charge control (limits to 0) and by the Victron 0x35A alarm flags. */
enum charge_protection {
    CHARGE_PROT_FAULT = 1u << 0,            /* online status 0x9B */
    CHARGE_PROT_OVER_VOLTAGE = 1u << 1,     /* event 0x03 (until 0x79) */
    CHARGE_PROT_UNDER_VOLTAGE = 1u << 2,    /* event 0x02 (until 0x7B) */
    CHARGE_PROT_OVER_TEMP = 1u << 3,        /* event 0x04 (until 0x73) */
    CHARGE_PROT_LOW_TEMP = 1u << 4,         /* event 0x0A (until 0x75) */
    CHARGE_PROT_LOW_TEMP_CHARGE = 1u << 5,  /* event 0x37 (until 0x74) */
    CHARGE_PROT_DISCHARGE_OC = 1u << 6,     /* event 0x05 (until 0x77) */
    CHARGE_PROT_CHARGE_OC = 1u << 7,        /* events 0x06 / 0x07 (until 0x76 / 0x78) */
    CHARGE_PROT_SWITCH_ERROR = 1u << 8,     /* events 0x0B / 0x0C / 0x0D (no recovery event) */
    CHARGE_PROT_SENSOR_ERROR = 1u << 9,     /* event 0x0E (until 0x0F / 0x7C) */
    CHARGE_PROT_FULLY_DISCHARGED = 1u << 10,/* event 0x31 (until 0x7A) */
    /* Set by charge_control_step only (struct charge_limits.protections): status 0x9B and no
     * cause in the event log nor in the measurements (cells / temperatures against the BMS's
     * own cutoffs). Blocks charging only: see CHARGE_PROT_BLOCKS_*. */
    CHARGE_PROT_FAULT_UNEXPLAINED = 1u << 11,
};

/* Protections that stop charging / discharging. The fault status itself (CHARGE_PROT_FAULT) is
 * in neither: its cause decides the direction (an over-voltage cutoff must not switch an
 * island inverter off). charge_control_step adds the cause it reads from the measurements when
 * the log has none, or CHARGE_PROT_FAULT_UNEXPLAINED, which blocks charging only. */
#define CHARGE_PROT_BLOCKS_CHARGE                                                              \
    (CHARGE_PROT_FAULT_UNEXPLAINED | CHARGE_PROT_OVER_VOLTAGE | CHARGE_PROT_OVER_TEMP |          \
     CHARGE_PROT_LOW_TEMP | CHARGE_PROT_LOW_TEMP_CHARGE | CHARGE_PROT_CHARGE_OC |                \
     CHARGE_PROT_SWITCH_ERROR)
#define CHARGE_PROT_BLOCKS_DISCHARGE                                                           \
    (CHARGE_PROT_UNDER_VOLTAGE | CHARGE_PROT_OVER_TEMP | CHARGE_PROT_LOW_TEMP |                  \
     CHARGE_PROT_DISCHARGE_OC | CHARGE_PROT_SWITCH_ERROR | CHARGE_PROT_FULLY_DISCHARGED)

/* Default time a protection event without a matching recovery event counts as active. */
#define CHARGE_PROT_HOLD_S_DEFAULT 120u

/* Active protections (enum charge_protection bits) from the live status and, when log is not
 * NULL, the BMS event log: an event is active when it is younger than hold_s and no later
 * recovery event cleared it. Ages are measured on the BMS lifetime counter live->lifetime_s
 * (32-bit) against the events' 24-bit timestamps, which repeat every 2^24 s (194 days): an
 * event counts as logged at the latest lifetime not after the sample that matches its
 * timestamp, so an old event never looks new; only when no such lifetime exists (the counter
 * is younger than the timestamp) does it count as logged up to 3600 s after the sample (a log
 * read after the sample). The one case this cannot tell (an event logged a few seconds after
 * the sample once the counter is past 2^24) is caught one sample later; charge_control_step,
 * which sees the log from step to step, tells them apart at once. live may not be NULL. Pure
 * function, thread-safe. */
uint32_t charge_protections_active(const struct bms_live_data *live,
                                   const struct bms_event_log *log, uint32_t hold_s);

/* Everything one step looks at. Pointers are borrowed for the duration of the call only. */
struct charge_inputs {
    const struct bms_live_data *live;    /* required; must be valid with 4..16 cells */
    const struct bms_settings *settings; /* transitional: decoded when limits is NULL */
    const struct bms_event_log *events;  /* may be NULL; protection events (see above) */
    const struct bms_pack_limits *limits; /* may be NULL: the BMS's own settings, decoded
                                            (tinybms_pack_limits_decode) */
};

/* One step's result. Voltages in V, currents in A (both limits positive numbers). */
struct charge_limits {
    float cvl_v;                         /* charge voltage limit: never 0, never NaN */
    float ccl_a;                         /* charge current limit after dynamics, >= 0 */
    float dcl_a;                         /* discharge current limit after dynamics, >= 0 */
    float discharge_v;                   /* 0x351 byte 6: cells x discharge_cell_v */
    uint8_t phase;                       /* enum charge_phase */
    char cvl_reason[CHARGE_REASON_LEN];  /* "target 3.450 V/cell", "cell excess 3.580 V", ... */
    char ccl_reason[CHARGE_REASON_LEN];  /* the source that won the min(): "config max",
                                            "bms charge over-current", "cell voltage 3.52 V",
                                            "temperature 2.0 °C", "soc", "bms fault",
                                            "external cap", "ramp", "delay", ... */
    char dcl_reason[CHARGE_REASON_LEN];
    float cvl_target_v;                  /* CVL before the upward rate limit */
    float ccl_target_a;                  /* CCL before delay/ramp/hysteresis */
    float dcl_target_a;
    uint32_t protections;                /* enum charge_protection bits seen this step */
    uint32_t cvl_changes;                /* changes of the value sent on the bus (0.1 V / 0.1 A */
    uint32_t ccl_changes;                /*  resolution) since charge_control_init */
    uint32_t dcl_changes;
};

/* Rate limiter of one current limit (private to the implementation; in the header only so the
 * caller can own the storage). */
struct charge_ramp {
    float value_a;                       /* what is being sent */
    bool at_zero;                        /* latched at 0 until the target exceeds zero_exit_a */
    bool waiting;                        /* an increase is pending */
    uint64_t waited_ms;                  /* time the increase has waited (at most 2 s per step) */
    bool ramping;                        /* the delay is over: ramping to the target */
    bool table_hold;                     /* a table decreased the value: no increase yet */
    uint64_t table_hold_ms;              /* time since that decrease */
};

/* The BMS event log as charge control last saw it, each event with its timestamp unwrapped to
 * the 32-bit lifetime (private: see charge_protection.c). */
struct charge_event_seen {
    uint32_t ts24;                       /* as logged */
    uint8_t id;
    bool known;                          /* false: ignored (a timestamp that cannot be right) */
    int64_t lifetime_s;                  /* when it was logged, BMS lifetime seconds */
};
struct charge_event_track {
    bool primed;                         /* a first log has been seen */
    uint8_t count;
    struct charge_event_seen ev[BMS_EVENT_SLOTS];
};

/* Caller-owned state; initialise with charge_control_init. Fields are private. */
struct charge_control {
    struct gw_config_charge cfg;
    bool started;                        /* first step done */
    uint8_t phase;                       /* enum charge_phase */
    uint64_t last_ms;                    /* now_ms of the previous step */
    bool data_gap;                       /* a step without usable data happened since */
    uint64_t absorb_elapsed_ms;          /* time at target with spread within tolerance */
    uint64_t top_elapsed_ms;             /* time at the target voltage, whatever the spread */
    uint64_t rebulk_evidence_ms;         /* how long the evidence for a rebulk has held */
    bool ov_block;                       /* charge latched off near the over-voltage cutoff */
    bool uv_block;                       /* discharge latched off near the under-voltage cutoff */
    uint64_t uv_latched_ms;              /* time since the latch engaged */
    uint64_t uv_release_ms;              /* time the release condition has held */
    float cvl_v;                         /* last CVL sent */
    float float_cvl_v;                   /* float-phase ramp position (V) */
    bool excess_hold;                    /* CVL held down by cell excess */
    float excess_cvl_v;                  /* the held-down CVL */
    bool stop_hold;                      /* charging must stop: CVL held at the pack voltage */
    float stop_cvl_v;                    /* the held CVL (only goes down while held) */
    struct charge_ramp ccl, dcl;
    struct charge_event_track events;    /* event timestamps unwrapped from step to step */
    /* External cap (app_charge_cap): can only lower the limits; expires. */
    bool cap_active;
    float cap_ccl_a, cap_dcl_a;          /* < 0: no cap on that side */
    uint64_t cap_until_ms;
    char cap_source[16];
    /* Change counters of the bus values (rounded to 0.1). */
    int32_t sent_cvl_dv, sent_ccl_da, sent_dcl_da;
    uint32_t cvl_changes, ccl_changes, dcl_changes;
};

/* Initialises cc with a copy of cfg (phase bulk, limits 0 until the first step).
 * Out-of-range parameters are replaced by the LFP defaults one by one (NaN, <= 0 voltages,
 * float > target, ...), so a broken config cannot produce an unsafe limit.
 * @retval GW_OK
 * @retval GW_ERR_INVAL cc or cfg is NULL */
int charge_control_init(struct charge_control *cc, const struct gw_config_charge *cfg);

/* Replaces the parameters (config change) keeping phase, timers and the limits being sent, so
 * a new config never makes the limits jump upward (they ramp as usual).
 * @retval GW_OK
 * @retval GW_ERR_INVAL cc or cfg is NULL */
int charge_control_set_config(struct charge_control *cc, const struct gw_config_charge *cfg);

/* Applies an external cap request (MQTT/web, struct app_charge_cap semantics): ccl_cap_a /
 * dcl_cap_a >= 0 cap that side (A), < 0 leave it uncapped; the caps can only LOWER the limits
 * and expire duration_s after now_ms; duration_s 0 cancels every cap. A new request replaces
 * the previous one.
 * @retval GW_OK
 * @retval GW_ERR_INVAL cc or cap is NULL, or a cap is NaN */
int charge_control_set_cap(struct charge_control *cc, const struct app_charge_cap *cap,
                           uint64_t now_ms);

/* One control step at monotonic time now_ms (ms; steps normally 1 s apart, any spacing works,
 * a clock going backwards is treated as no time passing). Writes every field of *out.
 * When the live data is unusable (NULL, !valid, cell count outside 4..16) the result is
 * still safe and complete: CCL = DCL = 0 (reasons "no data"), CVL = the last CVL sent, or
 * before any, cells (register 307 when present, else 16) x float_cell_v; the state is not
 * advanced (only the gap is noted) and GW_ERR_STATE is returned: the publisher should withhold
 * 0x351. The first usable step after such a gap, or after more than 65 s without a step,
 * counts no elapsed time and restarts pending increases (delay, then ramp): limits resume
 * where they were and never jump up across the gap.
 * @retval GW_OK
 * @retval GW_ERR_INVAL cc, in or out is NULL
 * @retval GW_ERR_STATE live data unusable (out still filled with safe values) */
int charge_control_step(struct charge_control *cc, const struct charge_inputs *in,
                        uint64_t now_ms, struct charge_limits *out);

/* What must survive a restart of the gateway (saved with the energy counters): without it a
 * restart in float would re-enter bulk and charge a full pack to the target again. */
struct charge_control_state {
    uint8_t phase;                       /* enum charge_phase */
    uint64_t absorb_elapsed_ms;
    uint64_t top_elapsed_ms;
    float float_cvl_v;                   /* float ramp position, 0 = none */
    float cvl_v;                         /* CVL being sent, 0 = none */
};

/* Copies the persistent part of cc into *out.
 * @retval GW_OK
 * @retval GW_ERR_INVAL a pointer is NULL */
int charge_control_get_state(const struct charge_control *cc, struct charge_control_state *out);

/* Restores a saved state before the first step. A state that cannot be right (unknown phase,
 * NaN or negative voltages, timers above 30 days) is refused whole and cc is left as it was.
 * The first step then runs as after a data gap: no jump, limits ramp up from 0.
 * @retval GW_OK
 * @retval GW_ERR_INVAL a pointer is NULL
 * @retval GW_ERR_RANGE the state is out of range */
int charge_control_set_state(struct charge_control *cc, const struct charge_control_state *st);

/* "bulk", "absorption", "float" or "unknown". Static string. */
const char *charge_phase_name(uint8_t phase);

/* y of the curve at x (linear interpolation, clamped); 1.0 when the curve is empty, 0.0 for a NaN
 * x (the safe answer is "no current"). Pure. */
float charge_curve_eval(const struct gw_curve *curve, float x);

#endif
