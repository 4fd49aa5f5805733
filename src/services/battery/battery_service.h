/* battery_service: the one battery between the BMS pollers and every output.
 *
 * - Subscribes to EVENT_BMS_DATA_UPDATE, _COMM_LOST/_RESTORED, _SETTINGS_UPDATE, _EVENTS_UPDATE
 *   of every pack; feeds the portable battery engine
 *   (src/core/battery: plausibility gate, pack states, charge control per pack, aggregation).
 * - Its thread steps the engine when input arrived, or at the engine's next deadline (a pack
 *   turning stale), at least every second, and publishes EVENT_BATTERY_UPDATE with the whole
 *   battery view (struct battery_view, copied into the bus entry).
 * - Energy counters and each pack's charge-control state are saved atomically to
 *   <data_dir>/energy.json every save_period_s and at stop, and restored at create (an
 *   out-of-range file is refused with an alert, never silently kept).
 * Every function is thread-safe. */
#ifndef BATTERY_SERVICE_H
#define BATTERY_SERVICE_H

#include "battery_engine.h"
#include "app_events.h"
#include "battery_view.h"

#include <stddef.h>

#include <stdbool.h>
#include <stdint.h>

struct event_bus;
struct battery_service;

#define BATTERY_STATE_FILE "energy.json"

struct battery_service_options {
    struct event_bus *bus;                /* required, borrowed: must outlive the service */
    struct battery_engine_config engine;  /* packs, charge parameters, timings (copied) */
    const char *data_dir;                 /* energy.json lives here (copied); NULL: not saved */
    uint32_t save_period_s;               /* 0: 600 */
};

struct battery_service_stats {
    uint64_t steps;
    uint64_t samples_taken;
    uint64_t samples_implausible;
    uint64_t samples_frozen;
    uint64_t samples_unknown_pack;
    uint64_t views_dropped;               /* the bus had no room */
    uint64_t saves, save_errors;
    uint64_t caps_applied, caps_without_effect;
    double step_us_avg;                   /* engine step, microseconds */
    uint64_t step_us_max;
};

/* Creates the service, restores energy.json, subscribes to the bus. On failure *out = NULL.
 * @retval GW_OK, GW_ERR_INVAL (NULL bus/out, bad pack list), GW_ERR_NOMEM, GW_ERR_FULL (bus) */
int battery_service_create(const struct battery_service_options *opts, struct battery_service **out);

/* Starts the stepping thread. @retval GW_OK, GW_ERR_STATE (running), GW_ERR_IO */
int battery_service_start(struct battery_service *bs);

/* Stops and joins the thread, saves the state. Idempotent. Not from a bus handler. */
void battery_service_stop(struct battery_service *bs);

/* Stops, unsubscribes, frees. NULL accepted. Not from a bus handler. */
void battery_service_destroy(struct battery_service *bs);

/* Charge parameters and timings live (the pack list needs a restart). @retval GW_OK, GW_ERR_INVAL */
int battery_service_apply_config(struct battery_service *bs, const struct battery_engine_config *cfg);

/* How often energy.json is saved (the configuration's can.energy_save_period_s), live: a
 * shorter period applies at once, a longer one counts from the last save.
 * @retval GW_OK, GW_ERR_INVAL (NULL, 0) */
int battery_service_set_save_period_s(struct battery_service *bs, uint32_t save_period_s);

/* An external cap (MQTT cmd/charge_cap, the web): lowers the bank's CCL/DCL until it expires.
 * answer (may be NULL) receives the text for the requester: "applied", or "no effect: no output
 * sends limits" when no output sends limits to a charger (the cap is still stored and applies as
 * soon as one does).
 * @retval GW_OK applied
 * @retval GW_ERR_UNSUPPORTED stored, but no output sends limits
 * @retval GW_ERR_INVAL NULL service/request or a NaN cap */
int battery_service_request_cap(struct battery_service *bs, const struct app_charge_cap *request, char *answer,
                                size_t answer_len);

/* Which outputs send the limits to a charger (BATTERY_OUTPUT_* bits): an external cap is
 * "applied" only when this is not 0. Set by the daemon as it starts/stops outputs. */
void battery_service_set_limit_outputs(struct battery_service *bs, uint32_t outputs);

/* Copies the newest view (seq 0 before the first step). @retval GW_OK, GW_ERR_INVAL */
int battery_service_get_view(struct battery_service *bs, struct battery_view *out);

void battery_service_get_stats(struct battery_service *bs, struct battery_service_stats *out);

/* energy.json <-> saved state (exposed for tests). to_json returns the length written or a
 * negative gw_err (GW_ERR_OVERFLOW); from_json: GW_OK, GW_ERR_PROTO (not our document). A
 * version 1 file (energy only, written before charge state was saved) is read too. */
int battery_state__to_json(const struct battery_engine_saved *s, int64_t wall_ms, char *buf, size_t cap);
int battery_state__from_json(const char *json, struct battery_engine_saved *out);

#endif
