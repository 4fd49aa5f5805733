/* Private to mqtt_gateway, its unit tests and its benchmark: pure formatting / parsing helpers.
 * JSON is built with cJSON only. */
#ifndef MQTT_GATEWAY_INTERNAL_H
#define MQTT_GATEWAY_INTERNAL_H

#include "app_events.h"
#include "bms_data.h"
#include "gw_config.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mqtt_gateway;

#define MQTT_GATEWAY__CMD_MAX_PAYLOAD 512  /* bytes accepted on a command topic */
#define MQTT_GATEWAY__CAP_MAX_A 10000.0    /* sanity bound of ccl_a / dcl_a */
#define MQTT_GATEWAY__CAP_MAX_S 604800u    /* 7 days */

/* Writes value with `decimals` (0..6) fixed decimals ("52.40"); "-0.00" is written "0.00".
 * @retval GW_OK
 * @retval GW_ERR_RANGE NaN or infinite (nothing written but an empty string)
 * @retval GW_ERR_INVAL bad decimals / NULL
 * @retval GW_ERR_OVERFLOW cap too small */
int mqtt_gateway__format_number(char *buf, size_t cap, double value, int decimals);

/* value rounded to `decimals` places (so cJSON prints it short); NaN stays NaN. */
double mqtt_gateway__round(double value, int decimals);

/* The status document (module reference JSON + our extra fields) of one sample. Caller owns
 * the result (cJSON_Delete); NULL on allocation failure. */
cJSON *mqtt_gateway__status_json(const struct bms_live_data *d);

/* The alert document with "event": "raised" | "cleared". Caller owns the result. */
cJSON *mqtt_gateway__alert_json(const struct app_alert *a, bool raised);

/* {"active_mask":..,"decision_mask":..,"active_cells":[1-based cell numbers]}. Caller owns it. */
cJSON *mqtt_gateway__balancing_json(const struct bms_live_data *d);

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
    char identifier[64];       /* "tinybms_<serial>" or the node id */
    char model[48];
    char sw_version[48];
};

/* One discovery sensor. */
struct mqtt_gateway__sensor {
    const char *object;        /* object id: "voltage", "cell_3_voltage" */
    const char *name;
    const char *state_subtopic;/* under the prefix */
    const char *device_class;  /* NULL = none */
    const char *unit;          /* NULL = none (text sensor) */
    int precision;             /* suggested_display_precision, -1 = none */
    const char *icon;          /* NULL = none */
};

/* The discovery config document of sensor s. Caller owns it. */
cJSON *mqtt_gateway__discovery_json(const char *prefix, const struct mqtt_gateway__device *dev,
                                    const struct mqtt_gateway__sensor *s);

/* Fills dev from the client id and (when known) the BMS version. */
void mqtt_gateway__device_info(const char *client_id, const struct bms_version *version,
                               struct mqtt_gateway__device *dev);

/* Publishes every numeric topic of one sample now (ignores the rate limit). Used by the event
 * handler and the benchmark. Returns the number of publish errors. */
int mqtt_gateway__publish_sample(struct mqtt_gateway *gw, const struct bms_live_data *d);

/* Publishes the status document of one sample now. */
int mqtt_gateway__publish_status(struct mqtt_gateway *gw, const struct bms_live_data *d);

#endif
