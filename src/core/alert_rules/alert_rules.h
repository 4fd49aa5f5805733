/* Alert rules: the pure, deterministic core of the alert manager (design.md "core").
 *
 * Turns battery views (struct battery_view: the bank and its packs, with the conditions the
 * battery service found), BMS event logs and link/storage edges into alert transitions (raised /
 * cleared / acknowledged) with thresholds, hysteresis and raise/clear delays, and keeps the
 * table of active alerts. An alert is keyed by (code, battery_id, subject): battery_id is the
 * pack's id (0..15) or BATTERY_BANK_ID (255) for the bank, so one rule on two packs gives two
 * alerts, and every message names its pack ("pack 2: cell 7 high 3.620 V (limit 3.600 V)").
 * No OS calls, no allocation, no I/O: the caller owns the engine struct, passes the time in (monotonic now_ms for delays, wall_ms for the timestamps shown to
 * people) and receives transitions through a callback, synchronously, from inside the call
 * that caused them. Not thread-safe: the caller serialises every call on one engine.
 *
 * State machine of one alert slot (threshold rules and link conditions):
 *   IDLE --condition--> PENDING_RAISE --held raise_delay_ms--> ACTIVE (emits RAISED)
 *   ACTIVE --back past threshold -/+ hysteresis--> PENDING_CLEAR --held clear_delay_ms--> IDLE
 *   (emits CLEARED). PENDING_RAISE falls back to IDLE as soon as the condition drops, and
 *   PENDING_CLEAR back to ACTIVE as soon as the value leaves the clear band again, so a value
 *   hovering at a threshold raises at most once and never flaps.
 * Latched alerts (BMS event-log entries, BMS status changes, manual raises) stay active until
 * cleared explicitly (alert_engine_clear, a BMS "recovered" event, alert_engine_clear_all). */
#ifndef ALERT_RULES_H
#define ALERT_RULES_H

#include "app_events.h"
#include "battery_view.h"
#include "bms_data.h"
#include "gw_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum alert_code {
    ALERT_CODE_OVER_VOLTAGE = 0,        /* highest cell above cell_v_high */
    ALERT_CODE_UNDER_VOLTAGE,           /* lowest cell below cell_v_low */
    ALERT_CODE_PACK_OVER_VOLTAGE,
    ALERT_CODE_PACK_UNDER_VOLTAGE,
    ALERT_CODE_OVER_TEMP,               /* hottest connected sensor */
    ALERT_CODE_UNDER_TEMP,              /* coldest connected sensor */
    ALERT_CODE_OVER_CURRENT,            /* discharge: current < -threshold */
    ALERT_CODE_CHARGE_OVER_CURRENT,     /* charge: current > threshold */
    ALERT_CODE_SOC_LOW,
    ALERT_CODE_SOC_HIGH,
    ALERT_CODE_CELL_IMBALANCE,          /* spread (max - min cell) in mV */
    ALERT_CODE_BMS_FAULT,               /* online status 0x9B */
    ALERT_CODE_BMS_STATUS,              /* info: status changed (charging, idle, ...) */
    ALERT_CODE_BMS_COMM_LOST,
    ALERT_CODE_MQTT_DISCONNECTED,
    ALERT_CODE_WIFI_DISCONNECTED,
    ALERT_CODE_CAN_INVERTER_LINK_LOST,
    ALERT_CODE_STORAGE_ERROR,           /* subject = module ("history", "config", ...) */
    ALERT_CODE_CONFIG_RECOVERED,
    /* BMS event log (new entries only). */
    ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF,      /* 0x02 */
    ALERT_CODE_BMS_OVER_VOLTAGE_CUTOFF,       /* 0x03 */
    ALERT_CODE_BMS_OVER_TEMP_CUTOFF,          /* 0x04 */
    ALERT_CODE_BMS_DISCHARGE_OVER_CURRENT,    /* 0x05 */
    ALERT_CODE_BMS_CHARGE_OVER_CURRENT,       /* 0x06 */
    ALERT_CODE_BMS_REGEN_OVER_CURRENT,        /* 0x07 */
    ALERT_CODE_BMS_LOW_TEMP_CUTOFF,           /* 0x0A */
    ALERT_CODE_BMS_CHARGER_SWITCH_ERROR,      /* 0x0B */
    ALERT_CODE_BMS_LOAD_SWITCH_ERROR,         /* 0x0C */
    ALERT_CODE_BMS_SINGLE_PORT_SWITCH_ERROR,  /* 0x0D */
    ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED, /* 0x0E */
    ALERT_CODE_BMS_FULLY_DISCHARGED,          /* 0x31 */
    ALERT_CODE_BMS_LOW_TEMP_CHARGE_CUTOFF,    /* 0x37 */
    ALERT_CODE_BMS_CHARGER_VOLTAGE_HIGH,      /* 0x38 */
    ALERT_CODE_BMS_CHARGER_VOLTAGE_LOW,       /* 0x39 */
    /* Conditions of the battery view (enum battery_condition). */
    ALERT_CODE_PACK_OFFLINE,            /* pack: not online (stale, offline, never seen) */
    ALERT_CODE_PACKS_BELOW_MIN_ONLINE,  /* bank: fewer than min online packs: CCL = DCL = 0 */
    ALERT_CODE_BATTERY_NO_DATA,         /* bank: no usable pack: limits not sent */
    ALERT_CODE_PACK_IMPLAUSIBLE,        /* pack: implausible samples in a row */
    ALERT_CODE_PACK_FROZEN,             /* pack: the same sample over and over */
    ALERT_CODE_PACK_NO_CELL_TEMP,       /* pack: no external (cell) temperature sensor */
    ALERT_CODE_PACK_REJOIN_BLOCKED,     /* pack: voltage outside the rejoin window */
    ALERT_CODE_PACK_VOLTAGE_SPREAD,     /* bank: online pack voltages differ */
    ALERT_CODE_PACK_SOC_SPREAD,         /* bank: online pack SOCs differ */
    ALERT_CODE_ENERGY_STATE_REFUSED,    /* bank: saved energy counters refused at start */
    ALERT_CODE_WEB_UNAVAILABLE,         /* the web server could not start (raised by the app) */
    ALERT_CODE_UPDATE_ROLLED_BACK,      /* an update did not become healthy: the previous release runs */
    ALERT_CODE_CUSTOM,                  /* any other code string given to alert_engine_raise */
    ALERT_CODE_COUNT
};

#define ALERT_ENGINE_MAX_SLOTS 256      /* (code, battery, subject) combinations tracked */
#define ALERT_ENGINE_MAX_BATTERIES (BATTERY_MAX_PACKS + 1) /* pack ids + the bank */
#define ALERT_SUBJECT_LEN 24            /* same size as app_storage_error.module */
#define ALERT_BATTERY_ANY 0xFFu         /* for alert_engine_clear: every battery */

/* Static name of a code ("OVER_VOLTAGE"); "CUSTOM" for ALERT_CODE_CUSTOM, "" when out of range. */
const char *alert_code_name(int code);

/* Code of a name (exact, case-sensitive); ALERT_CODE_CUSTOM when the name is not a known code. */
int alert_code_from_name(const char *name);

/* Level a code is raised with when no configuration decides it (documented in docs/alerts.md). */
enum app_alert_level alert_code_default_level(int code);

/* Static name of a level: "info", "warning", "error". */
const char *alert_level_name(int level);

/* One threshold rule (a row of the engine's table; docs/alerts.md describes them for users).
 * Its message is "<who>: <label>[ <cell>][ <word>] <value> <unit> (limit <threshold> <unit>)"
 * with `decimals` decimals, e.g. "pack 2: cell 7 high 3.620 V (limit 3.600 V)". */
struct alert_threshold_rule_info {
    int code;              /* enum alert_code */
    bool above;            /* raised above the threshold (else below); equal never raises */
    bool bank;             /* evaluated on the bank aggregate (else on each pack with fresh data) */
    const char *label;     /* "cell", "voltage", "state of charge" */
    const char *word;      /* "high" / "low", NULL for none */
    const char *unit;      /* "V", "°C", "A", "%", "mV" */
    uint8_t decimals;
};

/* Number of threshold rules, and rule i (static; NULL for i >= count). */
size_t alert_threshold_rule_count(void);
const struct alert_threshold_rule_info *alert_threshold_rule(size_t i);

/* The threshold settings of rule i inside cfg (a pointer into cfg); NULL for a bad i or cfg. */
const struct gw_alert_threshold *alert_threshold_rule_config(const struct gw_config_alerts *cfg, size_t i);

/* Code raised for a TinyBMS event id; -1 when the id raises nothing (information events). */
int alert_code_for_bms_event(uint8_t event_id);

/* Code a TinyBMS "recovered from ..." event id clears; -1 when none. */
int alert_code_cleared_by_bms_event(uint8_t event_id);

enum alert_transition {
    ALERT_TRANSITION_RAISED = 0,
    ALERT_TRANSITION_CLEARED = 1,
    ALERT_TRANSITION_ACKED = 2,
};

/* Static "raised" / "cleared" / "acked". */
const char *alert_transition_name(int kind);

/* An alert with the key that makes it unique: (code, battery_id, subject). */
struct alert_record {
    struct app_alert alert;
    char subject[ALERT_SUBJECT_LEN];    /* "" except STORAGE_ERROR (module) */
};

/* Called synchronously for every transition; rec is valid only during the call. */
typedef void (*alert_emit_fn)(void *ctx, enum alert_transition kind, const struct alert_record *rec);

enum alert_slot_phase {
    ALERT_PHASE_IDLE = 0,
    ALERT_PHASE_PENDING_RAISE,
    ALERT_PHASE_ACTIVE,
    ALERT_PHASE_PENDING_CLEAR,
};

/* Internal state; exposed only so that callers can allocate the engine without malloc. */
struct alert_slot {
    bool used;
    bool latched;              /* cleared only explicitly */
    bool condition;            /* raise condition, as last evaluated */
    bool clear_condition;      /* back past threshold -/+ hysteresis, as last evaluated */
    uint8_t code;              /* enum alert_code */
    uint8_t phase;             /* enum alert_slot_phase */
    uint32_t raise_delay_ms;
    uint32_t clear_delay_ms;
    uint64_t since_ms;         /* start of the pending phase */
    int64_t pending_wall_ms;   /* wall time the condition was first seen */
    uint32_t raised_count;     /* times raised since init (survives clears) */
    struct alert_record rec;
};

/* What the engine remembers per battery id (a pack, or the bank). */
struct alert_battery_state {
    bool used;
    uint8_t battery_id;
    char name[BATTERY_NAME_LEN];   /* from the views ("pack 2"); "battery" for the bank */
    char comm_reason[48];          /* why its communication was lost (alert_engine_set_comm_reason) */
    bool status_known;         /* a status has been seen (the first one is the baseline) */
    uint16_t announced_status; /* last status raised as BMS_STATUS (or the baseline) */
    uint16_t pending_status;
    uint64_t pending_since_ms;
    bool log_known;            /* a valid event log has been seen (the first one is the baseline) */
    uint8_t log_count;
    struct bms_event log[BMS_EVENT_SLOTS]; /* previous log: entries not in it are new */
};

struct alert_engine {
    struct gw_config_alerts cfg;
    alert_emit_fn emit;
    void *emit_ctx;
    struct alert_slot slots[ALERT_ENGINE_MAX_SLOTS];
    struct alert_battery_state batteries[ALERT_ENGINE_MAX_BATTERIES];
    uint32_t raised_total[ALERT_CODE_COUNT]; /* raises per code since init (not restored: alert_manager counts history) */
    uint32_t dropped;          /* raises lost because every slot was taken */
};

/* Resets the engine with a configuration (copied) and a transition callback (may be NULL). */
void alert_engine_init(struct alert_engine *e, const struct gw_config_alerts *cfg, alert_emit_fn emit,
                       void *emit_ctx);

/* Replaces the thresholds. Rules that became disabled clear their active alerts now; the others
 * are re-evaluated with the new values at the next sample. */
void alert_engine_set_config(struct alert_engine *e, const struct gw_config_alerts *cfg, uint64_t now_ms,
                             int64_t wall_ms);

/* Evaluates one battery view:
 * - per pack with fresh data (state ONLINE or REJOINING): the pack rules (cells, pack voltage,
 *   temperatures, currents, imbalance) and BMS_FAULT on packs[i].live, keyed by the pack id; a
 *   pack without fresh data (stale, offline, never seen) is not evaluated and keeps its state;
 * - the bank (BATTERY_BANK_ID), when a pack is online: the SOC rules on the aggregate SOC and
 *   BMS_STATUS on the bank status;
 * - the conditions (battery_view.conditions, packs[i].conditions): raised on the rising edge
 *   (after the raise delay), cleared when the condition has been gone for the clear delay.
 * Pack names are remembered for the event-log messages.
 * @retval GW_OK, GW_ERR_INVAL (NULL), GW_ERR_FULL (a pack id could not be tracked: that pack's
 *         rules skipped, the others evaluated) */
int alert_engine_process_view(struct alert_engine *e, const struct battery_view *v, uint64_t now_ms,
                              int64_t wall_ms);

/* Remembers why battery_id's communication was lost (EVENT_BMS_COMM_LOST reason, copied,
 * truncated to 47 characters; NULL or "" forgets it), shown in its BMS_COMM_LOST message.
 * @retval GW_OK, GW_ERR_INVAL (NULL engine), GW_ERR_FULL (too many battery ids) */
int alert_engine_set_comm_reason(struct alert_engine *e, uint8_t battery_id, const char *reason);

/* Raises one alert per protection entry of the BMS event log that was not in the previous log
 * of that battery (the first log seen is the baseline: old entries never alert), in time order;
 * "recovered" entries clear the alert they answer. A re-sent identical log raises nothing.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_FULL (too many batteries) */
int alert_engine_process_event_log(struct alert_engine *e, uint8_t battery_id, const struct bms_event_log *log,
                                   uint64_t now_ms, int64_t wall_ms);

/* Sets an edge-driven condition (BMS_COMM_LOST, MQTT_DISCONNECTED, WIFI_DISCONNECTED,
 * CAN_INVERTER_LINK_LOST, STORAGE_ERROR): present raises after raise_delay_ms, absent clears
 * after clear_delay_ms. message (may be NULL) describes the raise. subject may be NULL.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_FULL (no free slot) */
int alert_engine_set_condition(struct alert_engine *e, int code, uint8_t battery_id, const char *subject,
                               bool present, uint8_t level, const char *message, uint32_t raise_delay_ms,
                               uint32_t clear_delay_ms, uint64_t now_ms, int64_t wall_ms);

/* Raises a latched alert now (manual raises, CONFIG_RECOVERED). code_name may be any non-empty
 * string up to 31 characters (unknown names are kept as ALERT_CODE_CUSTOM). Raising an active
 * latched alert again counts it again and clears its acknowledgement.
 * @retval GW_OK, GW_ERR_INVAL (empty/too long name, bad level), GW_ERR_FULL */
int alert_engine_raise(struct alert_engine *e, const char *code_name, uint8_t battery_id, const char *subject,
                       uint8_t level, const char *message, float value, float threshold, uint64_t now_ms,
                       int64_t wall_ms);

/* Clears the active alerts named code_name for battery_id (ALERT_BATTERY_ANY: all) and subject
 * (NULL: any). A condition that is still present raises again after its raise delay.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOT_FOUND (nothing active matched) */
int alert_engine_clear(struct alert_engine *e, const char *code_name, uint8_t battery_id, const char *subject,
                       uint64_t now_ms, int64_t wall_ms);

/* Clears every active alert (the web's "clear"): conditions still present raise again after
 * their raise delay. Returns how many were cleared. */
size_t alert_engine_clear_all(struct alert_engine *e, uint64_t now_ms, int64_t wall_ms);

/* Acknowledges the active alerts named code_name (NULL: all). Emits ACKED for each one that was
 * not acknowledged yet. Returns how many changed. */
size_t alert_engine_ack(struct alert_engine *e, const char *code_name, int64_t wall_ms);

/* Runs pending raises/clears whose delay has passed (call it periodically, e.g. every 250 ms,
 * so an edge condition raises even when no sample arrives). */
void alert_engine_tick(struct alert_engine *e, uint64_t now_ms, int64_t wall_ms);

/* Copies up to max active alerts, oldest first_seen first; returns how many were copied.
 * *total (may be NULL) receives the number of active alerts. */
size_t alert_engine_active(const struct alert_engine *e, struct alert_record *out, size_t max, size_t *total);

/* Number of active alerts. */
size_t alert_engine_active_count(const struct alert_engine *e);

#endif
