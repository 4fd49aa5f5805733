/* MQTT gateway (module reference section 7): publishes the battery (the battery service's
 * EVENT_BATTERY_UPDATE view: the bank of N packs and each pack), status JSON, alerts, charge
 * limits, availability and Home Assistant discovery through an mqtt_client, and (opt-in)
 * accepts command topics.
 *
 * Topics under <prefix> (config mqtt.topic_prefix, default "tinybms"); see docs/mqtt.md:
 *   bank: voltage current power soc soh temperature/max temperature/min cells/voltage/max
 *       cells/voltage/min cells/<n>/voltage (one pack only) balancing online_status conditions
 *       pack_count online_count
 *   charge/cvl charge/ccl charge/dcl charge/{cvl,ccl,dcl}_reason charge/phase charge/valid
 *       charge/outputs (values only while the view's limits are valid)
 *   pack/<n>/ (n = 1-based position): name status online conditions voltage current soc soh
 *       temperature/max temperature/min cells/voltage/max cells/voltage/min cells/<k>/voltage
 *       balancing
 *       (all QoS 0, retained, every publish_interval_ms from the newest view; a value that is
 *       not available now - pack not online, no cell temperature sensor, limits not sent - is
 *       the text "None", never the last good value)
 *   status (JSON, QoS 0, retained, every status_interval_ms)
 *   alerts (JSON, QoS 1, not retained, on EVENT_ALERT_RAISED / EVENT_ALERT_CLEARED)
 *   availability ("online" retained on connect, "offline" = broker last will)
 *   cmd/alerts/ack cmd/alerts/clear cmd/charge_cap -> replies on cmd/result (opt-in: only with
 *       commands_enabled AND a broker user name; retained commands and payloads > 512 bytes
 *       are refused)
 * Discovery: <ha_discovery_prefix>/{sensor,binary_sensor}/<node_id>/<object>/config, retained:
 * one device for the bank, plus one per pack when there are several; the charge sensors only
 * while an output sends limits. Re-published on every (re)connection and whenever the packs,
 * their names or cell counts or the limit outputs change; emptied when ha_discovery is false.
 *
 * The gateway never includes config_manager or the battery service: it reads its settings
 * through a getter callback (at start and on every EVENT_CONFIG_UPDATED carrying
 * CONFIG_SECTION_MQTT) and hands charge caps to a callback.
 * Thread-safety: every function is thread-safe; event handlers run on the bus dispatcher,
 * command callbacks on the MQTT network thread. */
#ifndef MQTT_GATEWAY_H
#define MQTT_GATEWAY_H

#include "app_events.h"
#include "gw_config.h"
#include "mqtt_client.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_bus;
struct mqtt_gateway;

/* Fills *out with the current MQTT settings; returns false when unavailable (the gateway then
 * keeps its previous copy). Called from the bus dispatcher thread and from create(). */
typedef bool (*mqtt_gateway_config_fn)(struct gw_config_mqtt *out, void *ctx);

/* Applies a charge cap received on <prefix>/cmd/charge_cap (the daemon passes a wrapper of
 * battery_service_request_cap). Writes the requester's answer text into answer[0..len)
 * ("applied", "no effect: ..."). Called on the MQTT network thread; must not block for long.
 * Returns GW_OK (applied), GW_ERR_UNSUPPORTED (accepted, no effect on any charger now) or
 * another gw_err (refused). cap is borrowed for the call. */
typedef int (*mqtt_gateway_charge_cap_fn)(void *ctx, const struct app_charge_cap *cap, char *answer, size_t len);

struct mqtt_gateway_options {
    struct event_bus *bus;            /* required; not owned */
    mqtt_gateway_config_fn get_config;/* required */
    void *config_ctx;
    /* Not owned. NULL: the gateway creates, starts, reconfigures and destroys its own client
     * from the config (with the availability last will). When given, its owner must have set
     * the will (mqtt_gateway_availability_topic) and handles reconfiguration. */
    struct mqtt_client *client;
    /* NULL: cmd/charge_cap answers "no effect: no battery service". ctx is not owned and must
     * outlive the gateway. */
    mqtt_gateway_charge_cap_fn charge_cap;
    void *charge_cap_ctx;
};

struct mqtt_gateway_stats {
    uint64_t views_received;          /* EVENT_BATTERY_UPDATE handled */
    uint64_t views_ignored;           /* wrong payload size */
    uint64_t samples_published;       /* data topic rounds (bank + charge + packs) */
    uint64_t status_published;
    uint64_t alerts_published;
    uint64_t limits_published;        /* rounds with valid limits */
    uint64_t discovery_published;     /* discovery rounds (connections and changes) */
    uint64_t commands_accepted;
    uint64_t commands_rejected;
    uint64_t caps_applied;            /* cmd/charge_cap answered "applied" */
    uint64_t caps_without_effect;     /* accepted, no output sends limits / no battery service */
    uint64_t publish_errors;          /* mqtt_client_publish returned an error other than
                                         GW_ERR_CLOSED (disconnected drops are counted by the
                                         client) */
    double us_per_sample_avg;         /* CPU time of one numeric round (all topics), microseconds */
    uint64_t us_per_sample_max;
    bool enabled;
};

/* Creates a stopped gateway (reads the config once through the getter).
 * @retval GW_OK, GW_ERR_INVAL (NULL bus/getter/out, getter failed), GW_ERR_NOMEM,
 *         GW_ERR_IO (own client creation failed) */
int mqtt_gateway_create(const struct mqtt_gateway_options *opt, struct mqtt_gateway **out);

/* Subscribes to the bus events, registers the connect callback and the command topics, starts
 * the own client if any.
 * @retval GW_OK, GW_ERR_STATE (already started), GW_ERR_FULL (bus subscriber table full),
 *         GW_ERR_IO */
int mqtt_gateway_start(struct mqtt_gateway *gw);

/* Publishes "offline" on availability (when connected), unsubscribes everything and stops the
 * own client. No-op when not started. Must not be called from a bus handler. */
void mqtt_gateway_stop(struct mqtt_gateway *gw);

/* Stops if needed and frees. NULL accepted. */
void mqtt_gateway_destroy(struct mqtt_gateway *gw);

/* Enables/disables data publishing (numeric, status, alerts, limits) at run time. Availability,
 * discovery and commands are unaffected. Enabled after create. */
void mqtt_gateway_set_enabled(struct mqtt_gateway *gw, bool enabled);

void mqtt_gateway_get_stats(struct mqtt_gateway *gw, struct mqtt_gateway_stats *out);

/* Writes "<prefix>/availability" into out (for the owner of an external client's last will).
 * @retval GW_OK, GW_ERR_OVERFLOW */
int mqtt_gateway_availability_topic(const char *prefix, char *out, size_t cap);

#endif
