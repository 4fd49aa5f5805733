/* Private to mqtt_gateway, its unit tests and its benchmark: pure formatting / parsing helpers
 * and the test seams. JSON is built with cJSON only. */
#ifndef MQTT_GATEWAY_INTERNAL_H
#define MQTT_GATEWAY_INTERNAL_H

#include "app_events.h"
#include "battery_view.h"
#include "bms_data.h"
#include "gw_config.h"
#include "mqtt_client.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mqtt_gateway;

#define MQTT_GATEWAY__CMD_MAX_PAYLOAD 512  /* bytes accepted on a command topic */
#define MQTT_GATEWAY__CAP_MAX_A 10000.0    /* sanity bound of ccl_a / dcl_a */
#define MQTT_GATEWAY__CAP_MAX_S 604800u    /* 7 days */
/* Payload of a retained value that is not available now (pack not online, no cell temperature
 * sensor, limits not sent). Home Assistant's MQTT sensors turn exactly this text into the
 * state "unknown" (an empty payload would be ignored and the last value kept). */
#define MQTT_GATEWAY__UNAVAILABLE "None"

/* Writes value with `decimals` (0..6) fixed decimals ("52.40"); "-0.00" is written "0.00".
 * @retval GW_OK
 * @retval GW_ERR_RANGE NaN or infinite (nothing written but an empty string)
 * @retval GW_ERR_INVAL bad decimals / NULL
 * @retval GW_ERR_OVERFLOW cap too small */
int mqtt_gateway__format_number(char *buf, size_t cap, double value, int decimals);

/* value rounded to `decimals` places (so cJSON prints it short); NaN stays NaN. */
double mqtt_gateway__round(double value, int decimals);

/* True for a pack whose values are fresh: ONLINE or REJOINING (what online_count counts). */
bool mqtt_gateway__pack_online(const struct battery_pack *p);

/* Highest / lowest cell (external sensor) temperature of one sample in 0.1 degC; the board
 * (internal) sensor is never a cell temperature. false when the pack has no cell sensor. */
bool mqtt_gateway__cell_temp_max_dc(const struct bms_live_data *d, int16_t *out);
bool mqtt_gateway__cell_temp_min_dc(const struct bms_live_data *d, int16_t *out);

/* Condition bits as text: names joined with ", " in bit order ("frozen, no cell temperature"),
 * "ok" when no bit is set; unknown bits are skipped. Always NUL-terminated (truncated to cap). */
void mqtt_gateway__conditions_text(uint32_t bits, char *buf, size_t cap);

/* The status document of one battery view (module reference keys first, then ours). Caller
 * owns the result (cJSON_Delete); NULL on allocation failure. */
cJSON *mqtt_gateway__status_json(const struct battery_view *v);

/* The alert document with "event": "raised" | "cleared". Caller owns the result. */
cJSON *mqtt_gateway__alert_json(const struct app_alert *a, bool raised);

/* {"active_mask":..,"decision_mask":..,"active_cells":[1-based cell numbers]} of one pack.
 * Caller owns it. */
cJSON *mqtt_gateway__balancing_json(const struct bms_live_data *d);

/* {"active_cells":["P1C4","P2C12"]}: balancing cells of the online packs of a bank, named as in
 * the view's cell refs (P<position>C<cell>). Caller owns it. */
cJSON *mqtt_gateway__bank_balancing_json(const struct battery_view *v);

/* Parses a <prefix>/cmd/charge_cap payload: {"ccl_a":20,"dcl_a":null,"duration_s":7200}.
 * ccl_a / dcl_a: amperes >= 0, or null/absent = no cap on that side; duration_s: 0 cancels every
 * cap, else 1..MQTT_GATEWAY__CAP_MAX_S. Unknown fields are refused (typos must not pass).
 * On error writes a one-line reason into err.
 * @retval GW_OK, GW_ERR_INVAL (malformed), GW_ERR_RANGE (value out of range) */
int mqtt_gateway__parse_charge_cap(const char *payload, size_t len, struct app_charge_cap *out,
                                   char *err, size_t err_cap);

/* Parses <prefix>/cmd/alerts/ack ("all" or an alert code of 1..31 [A-Za-z0-9_]) and
 * <prefix>/cmd/alerts/clear ("all" or empty) payloads; surrounding white space ignored.
 * @retval GW_OK, GW_ERR_INVAL */
int mqtt_gateway__parse_alert_ack(const char *payload, size_t len, struct app_alert_command *out,
                                  char *err, size_t err_cap);
int mqtt_gateway__parse_alert_clear(const char *payload, size_t len, struct app_alert_command *out,
                                    char *err, size_t err_cap);

/* Device block of the Home Assistant discovery. */
struct mqtt_gateway__device {
    char node_id[64];          /* [A-Za-z0-9_-] only */
    char identifier[80];       /* "tinybms_<serial>", the node id, or "<node id>_pack<n>" */
    char name[48];             /* "TinyBMS", "TinyBMS bank", a pack name */
    char model[48];
    char sw_version[48];
    char via_device[80];       /* identifier of the parent device, "" = none */
};

/* One discovery entity. */
struct mqtt_gateway__sensor {
    const char *object;        /* object id: "voltage", "cell_3_voltage", "pack2_soc" */
    const char *name;
    const char *state_subtopic;/* under the prefix: "voltage", "pack/2/soc" */
    const char *device_class;  /* NULL = none */
    const char *unit;          /* NULL = none (text sensor) */
    int precision;             /* suggested_display_precision, -1 = none */
    const char *icon;          /* NULL = none */
    bool binary;               /* binary_sensor with payloads "true" / "false" */
    const char *avail_subtopic;/* second availability topic ("pack/2/online": "true" = available,
                                  availability_mode all), NULL = the gateway's availability only */
};

/* The discovery config document of sensor s. Caller owns it. */
cJSON *mqtt_gateway__discovery_json(const char *prefix, const struct mqtt_gateway__device *dev,
                                    const struct mqtt_gateway__sensor *s);

/* Fills dev for the bank device from the client id and (when known) the BMS version of its
 * first pack: name "TinyBMS", identifier "tinybms_<serial>" (else the node id). With several
 * packs (pack_count > 1) the bank is "TinyBMS bank" identified by the node id (no pack serial
 * speaks for the bank). */
void mqtt_gateway__device_info(const char *client_id, const struct bms_version *version,
                               uint8_t pack_count, struct mqtt_gateway__device *dev);

/* Fills dev for the device of pack n (1-based position) named `name`, under the bank device
 * `bank`: identifier "<node id>_pack<n>", via_device = the bank's identifier. */
void mqtt_gateway__pack_device_info(const struct mqtt_gateway__device *bank, unsigned n, const char *name,
                                    const struct bms_version *version, struct mqtt_gateway__device *dev);

/* A one-pack battery view of one sample, as the battery service would build it for a single
 * online pack (limits not valid, no output sending limits). For the benchmark and tests. */
void mqtt_gateway__view_from_sample(const struct bms_live_data *d, struct battery_view *out);

/* Publishes every data topic of one view now (ignores the rate limit): bank, charge, packs.
 * Used by the event handler, tests and the benchmark. Returns the number of publish errors. */
int mqtt_gateway__publish_view(struct mqtt_gateway *gw, const struct battery_view *v);

/* Publishes the status document of one view now. */
int mqtt_gateway__publish_status_view(struct mqtt_gateway *gw, const struct battery_view *v);

/* Kept for bench_mqtt: the same for the one-pack view of a sample (view_from_sample). */
int mqtt_gateway__publish_sample(struct mqtt_gateway *gw, const struct bms_live_data *d);
int mqtt_gateway__publish_status(struct mqtt_gateway *gw, const struct bms_live_data *d);

/* ---- test seams (unit tests only) */

/* Receives every message the gateway publishes instead of the client. */
typedef void (*mqtt_gateway__sink_fn)(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                                      bool retain);

/* With a sink set, publishes go to it (not to the client) and the gateway behaves as if the
 * link were up (discovery, "published once" bookkeeping). NULL restores the client. Call
 * before start or while no event flows. */
void mqtt_gateway__set_sink(struct mqtt_gateway *gw, mqtt_gateway__sink_fn sink, void *ctx);

/* Runs what the gateway does on a (re)connection (availability, discovery). */
void mqtt_gateway__connected(struct mqtt_gateway *gw);

/* Handles one message as if it had arrived on a subscribed command topic. */
void mqtt_gateway__command(struct mqtt_gateway *gw, const struct mqtt_client_message *msg);

#endif
