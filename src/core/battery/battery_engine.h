/* The battery engine: N TinyBMS packs -> one battery view (rules R1-R13 of
 * shared/spec/several-packs.md), with a plausibility gate in front of every sample, one charge
 * control per pack, the bank limits with the reason (rule + pack) of each, and the energy
 * counters.
 *
 * Portable core: no OS calls, no allocation, no clock reads (the caller passes now_ms), no
 * globals. Not thread-safe: one owner feeds it and steps it (the battery service, under its
 * lock). The struct is large (one charge control per pack): allocate it, do not put it on a
 * small stack. */
#ifndef BATTERY_ENGINE_H
#define BATTERY_ENGINE_H

#include "app_events.h"
#include "battery_view.h"
#include "bms_data.h"
#include "charge_control.h"
#include "gw_config.h"
#include "victron.h"

#include <stdbool.h>
#include <stdint.h>

struct battery_pack_config {
    uint8_t id;                          /* battery_id of the pack's samples */
    char name[BATTERY_NAME_LEN];         /* empty: "pack N" (N = position + 1) */
    float capacity_ah;                   /* 0: register 306 of the BMS */
};

struct battery_engine_config {
    uint8_t pack_count;                  /* 1..BATTERY_MAX_PACKS */
    struct battery_pack_config packs[BATTERY_MAX_PACKS];
    struct gw_config_charge charge;      /* per-pack charge control parameters */
    uint32_t stale_after_ms;             /* R1: no fresh sample for this -> STALE (limits 0) */
    uint32_t offline_after_ms;           /* R1: -> OFFLINE (the BMS communication timeout) */
    uint32_t frozen_after_ms;            /* lifetime counter (reg 32) still for this -> stale */
    uint32_t implausible_in_row;         /* this many bad samples in a row -> condition */
    uint8_t min_online;                  /* R9: fewer online packs -> CCL = DCL = 0 */
    float rejoin_max_dv;                 /* R2/R10: pack vs bank voltage window, V */
    float soc_spread_pct;                /* bank condition above this SOC difference */
    float soc_full_pct;                  /* BMS SOC at/above this is shown and sent as 100 % */
    float soc_empty_pct;                 /* BMS SOC at/below this is shown and sent as 0 % */
};

/* Defaults: 1 pack (id 0), LFP charge defaults, stale 5 s, offline 30 s, frozen 10 s, 3 bad
 * samples in a row, min_online 1, rejoin window 0.5 V, SOC spread 15 %, SOC shown as the BMS
 * says (full 100 %, empty 0 %). */
void battery_engine_default_config(struct battery_engine_config *cfg);

/* Why a sample was not taken (battery_engine_feed_sample). */
enum battery_feed_result {
    BATTERY_FEED_TAKEN = 0,
    BATTERY_FEED_UNKNOWN_PACK,           /* battery_id not configured */
    BATTERY_FEED_INVALID,                /* valid flag false: ignored */
    BATTERY_FEED_IMPLAUSIBLE,            /* refused by the plausibility gate (reason in view) */
    BATTERY_FEED_FROZEN,                 /* same lifetime counter for frozen_after_ms */
};

struct battery_engine_pack {
    struct battery_pack_config cfg;
    bool have_sample;
    struct bms_live_data live;           /* last plausible sample */
    uint64_t fresh_ms;                   /* when live was taken (0: never) */
    uint64_t lifetime_changed_ms;        /* when live.lifetime_s last advanced */
    bool frozen;
    bool comm_lost;
    uint32_t bad_in_row, bad_total, frozen_total;
    char bad_reason[BATTERY_REASON_LEN];
    bool have_limits;
    struct bms_pack_limits limits;       /* decoded BMS settings */
    bool have_events;
    struct bms_event_log events;
    struct victron_alarm_thresholds thresholds;
    struct charge_control cc;
    struct charge_limits out;            /* last step's result */
    bool charge_step_ok;
    uint8_t state;                       /* enum battery_pack_state */
    bool in_bank;                        /* counted by the aggregation (R1, R10) */
    bool rejoining;                      /* joined a running bank, limits still ramping */
    uint64_t energy_ms;                  /* time of the last integrated sample, 0 = none */
};

struct battery_engine {
    struct battery_engine_config cfg;
    struct battery_engine_pack packs[BATTERY_MAX_PACKS];
    uint64_t seq;
    bool started;
    uint64_t last_step_ms;
    /* Bank limits after the upward ramp (decreases at once). */
    bool bank_started;
    float bank_ccl_a, bank_dcl_a;
    /* External cap (MQTT/web): lowers the bank limits until it expires. */
    bool cap_active;
    float cap_ccl_a, cap_dcl_a;          /* < 0: that side uncapped */
    uint64_t cap_until_ms;
    char cap_source[16];
    uint32_t limit_outputs;
    /* Energy counters (0x378), Wh. */
    double energy_in_wh, energy_out_wh;
    bool energy_refused;                 /* a restored state was refused */
    uint32_t energy_steps_refused;
};

/* Initialises e (every pack NEVER_SEEN). Out-of-range config values are replaced by the
 * defaults (a broken config cannot make an unsafe battery).
 * @retval GW_OK
 * @retval GW_ERR_INVAL e or cfg NULL, pack_count 0 or > BATTERY_MAX_PACKS, duplicate pack id */
int battery_engine_init(struct battery_engine *e, const struct battery_engine_config *cfg);

/* Replaces the charge parameters and timings live (charge controls keep their state); the pack
 * list itself needs a restart (ignored here). @retval GW_OK, GW_ERR_INVAL */
int battery_engine_set_config(struct battery_engine *e, const struct battery_engine_config *cfg);

/* Offers one live sample. It is checked (plausibility, frozen lifetime counter) before it can
 * reach anything; a taken sample moves the energy counters (a step the pack's limits make
 * impossible is refused and counted). Returns enum battery_feed_result. */
int battery_engine_feed_sample(struct battery_engine *e, const struct bms_live_data *s,
                               uint64_t now_ms);

/* BMS settings (decoded into named pack limits), event log, communication lost/restored. */
void battery_engine_feed_settings(struct battery_engine *e, uint8_t battery_id,
                                  const struct bms_settings *settings);
void battery_engine_feed_events(struct battery_engine *e, uint8_t battery_id,
                                const struct bms_event_log *log);
void battery_engine_feed_comm(struct battery_engine *e, uint8_t battery_id, bool lost);

/* An external cap (struct app_charge_cap semantics: < 0 uncapped, duration 0 cancels; only
 * lowers, expires). @retval GW_OK, GW_ERR_INVAL (NULL or NaN) */
int battery_engine_set_cap(struct battery_engine *e, const struct app_charge_cap *cap, uint64_t now_ms);

/* Which outputs send the limits (BATTERY_OUTPUT_* bits), copied into every view. */
void battery_engine_set_limit_outputs(struct battery_engine *e, uint32_t outputs);

/* One step at now_ms: pack states, one charge-control step per pack, aggregation, bank limits.
 * Writes the whole view (out must not be NULL). Returns the time (ms) of the next step needed
 * without new input (a pack going stale/offline, the heartbeat). */
uint64_t battery_engine_step(struct battery_engine *e, uint64_t now_ms, struct battery_view *out);

/* What survives a restart: the energy counters and each pack's charge-control state. */
struct battery_engine_saved {
    double energy_in_wh, energy_out_wh;
    uint8_t pack_count;
    struct {
        uint8_t id;
        bool valid;
        struct charge_control_state charge;
    } packs[BATTERY_MAX_PACKS];
};

void battery_engine_save(const struct battery_engine *e, struct battery_engine_saved *out);

/* Restores a saved state. Counters out of range (NaN, negative, above the 0x378 range) are
 * refused as a whole (BATTERY_COND_ENERGY_REFUSED in the views, counting from 0); a pack's
 * charge state that charge control refuses is skipped. Packs are matched by id.
 * @retval GW_OK
 * @retval GW_ERR_RANGE the counters were refused (the charge states may still be applied) */
int battery_engine_restore(struct battery_engine *e, const struct battery_engine_saved *saved);

#endif
