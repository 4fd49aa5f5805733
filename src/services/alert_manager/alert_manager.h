/* Alert manager service: evaluates the alert rules (src/core/alert_rules) on the events of the
 * bus, publishes EVENT_ALERT_RAISED / EVENT_ALERT_CLEARED (struct app_alert), keeps the active
 * list (JSON for the web and MQTT), and records every transition (raised / cleared / acked) in
 * SQLite: table alert_history of <data_dir>/alerts.db (WAL), written through the store engine
 * (src/port/store: ring, batch writer thread, back-off) so the bus dispatcher never waits for the
 * disk.
 *
 * Subscribes: EVENT_BATTERY_UPDATE (the battery view: rules on the bank and on each online pack,
 * alerts from the view's conditions, keyed and named by pack), EVENT_BMS_COMM_LOST/RESTORED (the
 * reason shown in a pack's BMS_COMM_LOST), EVENT_BMS_EVENTS_UPDATE (each pack's event log),
 * EVENT_MQTT_CONNECTED/DISCONNECTED, EVENT_NET_CONNECTED/DISCONNECTED, EVENT_CAN_INVERTER_LINK,
 * EVENT_STORAGE_ERROR/OK, EVENT_CONFIG_UPDATED (alerts section: thresholds re-read through the
 * getter), EVENT_ALERT_COMMAND (ack / ack all / clear all).
 * Every public function is thread-safe. */
#ifndef ALERT_MANAGER_H
#define ALERT_MANAGER_H

#include "app_events.h"
#include "gw_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_bus;
struct alert_manager;

/* Fills *out with the current alert configuration; returns GW_OK or an error (then the manager
 * keeps its previous thresholds). Called from the bus dispatcher thread. */
typedef int (*alert_manager_config_getter)(void *ctx, struct gw_config_alerts *out);

struct alert_manager_options {
    struct event_bus *bus;                  /* required; must outlive the manager */
    const char *data_dir;                   /* alerts.db lives here; NULL = no persistence */
    struct gw_config_alerts config;         /* initial thresholds */
    alert_manager_config_getter get_config; /* may be NULL (EVENT_CONFIG_UPDATED then ignored) */
    void *get_config_ctx;
    uint32_t tick_ms;                       /* delayed raise/clear resolution, 0 = 250 */
    uint32_t history_max_rows;              /* alert_history rows kept, 0 = 10000 */
};

/* Creates the manager, opens (creates) <data_dir>/alerts.db, restores the per-code counts from
 * it, subscribes to the bus and starts the tick and writer threads. A database that cannot be
 * opened is logged and the manager runs without persistence (never fails for it).
 * @retval GW_OK, GW_ERR_INVAL (NULL bus/out, data_dir too long), GW_ERR_NOMEM, GW_ERR_IO (thread),
 *         or the bus's subscribe error */
int alert_manager_create(const struct alert_manager_options *opt, struct alert_manager **out);

/* Unsubscribes, stops the threads, writes the transitions still queued and frees. NULL accepted. */
void alert_manager_destroy(struct alert_manager *am);

/* Raises a latched alert for another module (e.g. "CONFIG_RECOVERED"): active until
 * alert_manager_clear or a clear-all. code: 1..31 characters. level: enum app_alert_level.
 * message: may be NULL (the code is used), truncated to 159 characters.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_FULL (alert table full) */
int alert_manager_raise(struct alert_manager *am, const char *code, uint8_t level, const char *message);

/* Clears every active alert with this code (any battery, any subject).
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOT_FOUND (none active) */
int alert_manager_clear(struct alert_manager *am, const char *code);

/* Acknowledges the active alerts with this code (NULL = all). Returns how many changed. */
size_t alert_manager_ack(struct alert_manager *am, const char *code);

/* Clears every active alert (the web's /api/alerts/clear). Conditions still present raise again
 * after the raise delay. Returns how many were cleared. */
size_t alert_manager_clear_all(struct alert_manager *am);

/* Number of active alerts. */
size_t alert_manager_active_count(struct alert_manager *am);

/* Times each code was raised (restored from alerts.db at start + since). Returns 0 for unknown
 * codes. */
uint32_t alert_manager_count(struct alert_manager *am, const char *code);

/* Active alerts as a JSON array, oldest first:
 *   [{"timestamp":<unix s>,"level":"warning","code":"OVER_VOLTAGE","message":"...",
 *     "value":3.652,"threshold":3.6,"first_seen":<unix ms>,"last_seen":<unix ms>,"count":1,
 *     "acknowledged":false,"battery_id":0,"subject":""}]
 * written NUL-terminated into buf; *len (may be NULL) gets the length without the NUL.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_OVERFLOW (buf too small; buf holds "" then) */
int alert_manager_get_active_json(struct alert_manager *am, char *buf, size_t size, size_t *len);

/* Same as a malloc'd string the caller frees with free(). @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM */
int alert_manager_get_active_json_alloc(struct alert_manager *am, char **out);

/* Per-code counts as a JSON object {"OVER_VOLTAGE":2,...} (codes raised at least once), malloc'd.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM */
int alert_manager_get_counts_json_alloc(struct alert_manager *am, char **out);

/* Alert history (persisted transitions), newest first, as a malloc'd JSON array:
 *   [{"id":12,"timestamp_ms":..,"event":"raised","code":"..","level":"error","battery_id":0,
 *     "subject":"","message":"..","value":..,"threshold":..,"count":1}]
 * Rows with from_ms <= timestamp_ms < to_ms (to_ms 0 = no upper bound), at most limit rows
 * (1..10000; 0 = 100). Transitions still queued for the writer are written first.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM, GW_ERR_STORAGE (no database / SQLite error),
 *         GW_ERR_TIMEOUT (the writer did not catch up within 5 s) */
int alert_manager_get_history_json(struct alert_manager *am, int64_t from_ms, int64_t to_ms, uint32_t limit,
                                   char **out);

/* Waits until every transition queued so far is in the database. While writes fail, the
 * transitions stay queued (retried with a back-off of 0.5 s doubling to 30 s; the oldest are
 * dropped only when 1024 wait) and EVENT_STORAGE_ERROR {module "alerts"} is published once;
 * a flush asks for an immediate retry.
 * @retval GW_OK, GW_ERR_TIMEOUT, GW_ERR_STORAGE (no database, or the retry it asked for failed) */
int alert_manager_flush(struct alert_manager *am, uint32_t timeout_ms);

#endif
