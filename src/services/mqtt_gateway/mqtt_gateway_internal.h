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

/* ---- the topic table: one row per data topic, driving the publisher and the discovery */

enum mqtt_gateway__scope {
    MQTT_GATEWAY__SCOPE_BANK = 0,   /* <prefix>/<sub>: the bank (the battery) */
    MQTT_GATEWAY__SCOPE_CHARGE,     /* <prefix>/<sub>: the limits ("charge/cvl") */
    MQTT_GATEWAY__SCOPE_PACK,       /* <prefix>/pack/<n>/<sub> */
};

enum mqtt_gateway__kind {
    MQTT_GATEWAY__NUMBER = 0,       /* fixed decimals, "None" when not available or not finite */
    MQTT_GATEWAY__TEXT,
    MQTT_GATEWAY__JSON,
    MQTT_GATEWAY__CELLS,            /* one topic per cell: sub, object and name hold "{k}" */
};

/* When a discovery entity of the bank device is announced. */
enum mqtt_gateway__when {
    MQTT_GATEWAY__WHEN_ALWAYS = 0,
    MQTT_GATEWAY__WHEN_LIMITS,      /* while an output sends the limits */
    MQTT_GATEWAY__WHEN_SEVERAL,     /* with more than one pack */
};

/* The value of one topic now. */
struct mqtt_gateway__value {
    double num;                     /* NUMBER */
    const char *text;               /* TEXT: static, or points into buf */
    char buf[160];
    cJSON *json;                    /* JSON: the caller deletes it */
};

/* Fills out from view v (pack: 0-based position, for pack rows); false = not available now
 * (published as "None"). */
typedef bool (*mqtt_gateway__value_fn)(const struct battery_view *v, unsigned pack, struct mqtt_gateway__value *out);

struct mqtt_gateway__topic {
    uint8_t scope;                  /* enum mqtt_gateway__scope */
    bool every_round;               /* published every round; else only while the scope's values
                                       are fresh (bank: a pack online; charge: limits valid; pack:
                                       online with a sample) and "None" once when they are not */
    uint8_t kind;                   /* enum mqtt_gateway__kind */
    const char *sub;                /* under the scope's base: "voltage", "charge/cvl" */
    int8_t decimals;                /* numbers: payload decimals = suggested_display_precision */
    mqtt_gateway__value_fn value;   /* NULL for CELLS (the cell voltages of the sample) */
    /* Home Assistant discovery; object NULL = not announced. A pack row's object and state
     * topic get "pack<n>_" and "pack/<n>/" in front. */
    const char *object;
    const char *name;
    const char *device_class;       /* NULL = none */
    const char *unit;               /* NULL = text sensor */
    const char *icon;               /* NULL = none */
    bool binary;                    /* binary_sensor "true" / "false" */
    uint8_t when;                   /* enum mqtt_gateway__when (bank and charge rows) */
    bool pack_availability;         /* pack rows: unavailable while the pack is not online */
};

/* The table (static), in publishing order: bank rows, charge rows, pack rows. */
const struct mqtt_gateway__topic *mqtt_gateway__topics(size_t *count);

/* The CELLS row of a scope (bank or pack); NULL for another scope. */
const struct mqtt_gateway__topic *mqtt_gateway__cells_topic(uint8_t scope);

/* Writes template (a row's sub, object or name) with "{k}" replaced by cell number k.
 * @retval GW_OK, GW_ERR_OVERFLOW (truncated) */
int mqtt_gateway__expand(const char *template_text, unsigned k, char *buf, size_t cap);

/* Storage of the texts of one discovery sensor. */
struct mqtt_gateway__sensor_text {
    char object[64];
    char name[48];
    char state[64];
    char avail[32];
};

/* The discovery sensor of row t for pack n (1-based; 0 = the bank device) and cell k (CELLS
 * rows, 1-based): s points into text, which must outlive it. */
void mqtt_gateway__topic_sensor(const struct mqtt_gateway__topic *t, unsigned pack, unsigned cell,
                                struct mqtt_gateway__sensor_text *text, struct mqtt_gateway__sensor *s);

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

/* The network link as the MQTT connection sees it: the usable address last reported, and whether
 * the link went down since. */
struct mqtt_gateway__net {
    char address[64];
    bool down;
};

/* A network event (up with its address, or down): whether the broker connection must start over
 * now, and why (into why). A new address leaves the old socket dead until the keepalive notices
 * (up to 1.5 keepalives); a link back while the broker is unreachable skips the back-off. */
bool mqtt_gateway__net_event(struct mqtt_gateway__net *st, bool up, const char *address, bool mqtt_connected,
                             char *why, size_t cap);

/* The "event" of <p>/update for an update event id ("started", "completed", "failed",
 * "rolled_back"); NULL for any other id. */
const char *mqtt_gateway__update_event_name(int event_id);

#endif
