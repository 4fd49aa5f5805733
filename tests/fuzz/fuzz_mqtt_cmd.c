/* Fuzz target: MQTT command payloads (<prefix>/cmd/alerts/ack, cmd/alerts/clear,
 * cmd/charge_cap), what anyone allowed to publish on the broker can send. Each input is one
 * message handed to the gateway's command handler (mqtt_gateway__command, what the client's
 * message callback calls) of a real gateway wired as in the daemon: commands on, the charge cap
 * to a real battery service (battery_service_request_cap), alert commands over a real event bus
 * to a real alert manager. Its replies go to the gateway's test sink, where each must be the one
 * JSON result document on <prefix>/cmd/result. The parsers are also called directly and their
 * results checked against the documented ranges.
 * Input: byte 0 picks the topic (ack, clear, charge_cap, or a topic read from the input up to a
 * '\n'), byte 1 bit 0 sets retain; the rest is the payload.
 * Corpus: tests/fuzz/corpus/mqtt_cmd (the payloads of docs/mqtt.md and of the unit tests). */
#include "alert_manager.h"
#include "battery_service.h"
#include "event_bus.h"
#include "fuzz_support.h"
#include "gw_config.h"
#include "gw_error.h"
#include "gw_log.h"
#include "mqtt_client.h"
#include "mqtt_gateway.h"
#include "mqtt_gateway_internal.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <string.h>

#define PREFIX "tinybms"

static struct gw_config_mqtt mqtt_cfg;
static struct event_bus *bus;
static struct mqtt_client *client;
static struct mqtt_gateway *gw;
static struct battery_service *battery;
static struct alert_manager *alerts;
static unsigned replies;

static bool get_cfg(struct gw_config_mqtt *out, void *ctx)
{
    (void)ctx;
    *out = mqtt_cfg;
    return true;
}

static int charge_cap(void *ctx, const struct app_charge_cap *cap, char *answer, size_t len)
{
    /* What the daemon's callback does (src/app/app.c mqtt_charge_cap). */
    return battery_service_request_cap(ctx, cap, answer, len);
}

static void sink(void *ctx, const char *topic, const void *payload, size_t len, int qos, bool retain)
{
    (void)ctx;
    if (strcmp(topic, PREFIX "/cmd/result") != 0)
        return; /* availability, discovery at start */
    FUZZ_ASSERT(qos == 1 && !retain);
    cJSON *doc = cJSON_ParseWithLength(payload, len);
    FUZZ_ASSERT(cJSON_IsObject(doc));
    FUZZ_ASSERT(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(doc, "ok")));
    FUZZ_ASSERT(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "command")));
    cJSON_Delete(doc);
    replies++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    mqtt_cfg = cfg.mqtt;
    snprintf(mqtt_cfg.topic_prefix, sizeof mqtt_cfg.topic_prefix, PREFIX);
    snprintf(mqtt_cfg.username, sizeof mqtt_cfg.username, "tinybms");
    mqtt_cfg.commands_enabled = true;
    mqtt_cfg.ha_discovery = false;
    FUZZ_ASSERT(event_bus_create(NULL, &bus) == GW_OK);
    FUZZ_ASSERT(mqtt_client_create(&mqtt_cfg, NULL, &client) == GW_OK);

    struct battery_service_options bo = { .bus = bus };
    battery_engine_default_config(&bo.engine);
    FUZZ_ASSERT(battery_service_create(&bo, &battery) == GW_OK);
    battery_service_set_limit_outputs(battery, BATTERY_OUTPUT_CAN);

    struct alert_manager_options ao = { .bus = bus, .config = cfg.alerts };
    FUZZ_ASSERT(alert_manager_create(&ao, &alerts) == GW_OK);

    struct mqtt_gateway_options go = { .bus = bus, .get_config = get_cfg, .client = client,
                                       .charge_cap = charge_cap, .charge_cap_ctx = battery };
    FUZZ_ASSERT(mqtt_gateway_create(&go, &gw) == GW_OK);
    mqtt_gateway__set_sink(gw, sink, NULL);
    FUZZ_ASSERT(mqtt_gateway_start(gw) == GW_OK);
    return 0;
}

static void check_parsers(const char *payload, size_t len)
{
    char err[200];
    struct app_charge_cap cap;
    int rc = mqtt_gateway__parse_charge_cap(payload, len, &cap, err, sizeof err);
    FUZZ_ASSERT(rc == GW_OK || rc == GW_ERR_INVAL || rc == GW_ERR_RANGE);
    if (rc == GW_OK) {
        FUZZ_ASSERT(cap.duration_s <= MQTT_GATEWAY__CAP_MAX_S);
        FUZZ_ASSERT(strcmp(cap.source, "mqtt") == 0);
        if (cap.duration_s == 0)
            FUZZ_ASSERT(cap.ccl_cap_a == -1.0f && cap.dcl_cap_a == -1.0f);
        else
            FUZZ_ASSERT(cap.ccl_cap_a >= 0.0f || cap.dcl_cap_a >= 0.0f);
        FUZZ_ASSERT(cap.ccl_cap_a == -1.0f || (cap.ccl_cap_a >= 0.0f && cap.ccl_cap_a <= MQTT_GATEWAY__CAP_MAX_A));
        FUZZ_ASSERT(cap.dcl_cap_a == -1.0f || (cap.dcl_cap_a >= 0.0f && cap.dcl_cap_a <= MQTT_GATEWAY__CAP_MAX_A));
    } else {
        FUZZ_ASSERT(err[0] != '\0' && strlen(err) < sizeof err);
    }
    /* A short error buffer is cut, never overrun. */
    (void)mqtt_gateway__parse_charge_cap(payload, len, &cap, err, 5);
    FUZZ_ASSERT(strlen(err) < 5);

    struct app_alert_command cmd;
    rc = mqtt_gateway__parse_alert_ack(payload, len, &cmd, err, sizeof err);
    FUZZ_ASSERT(rc == GW_OK || rc == GW_ERR_INVAL);
    if (rc == GW_OK) {
        FUZZ_ASSERT(cmd.op == ALERT_OP_ACK || cmd.op == ALERT_OP_ACK_ALL);
        size_t n = strlen(cmd.code);
        FUZZ_ASSERT(n < sizeof cmd.code);
        FUZZ_ASSERT(cmd.op == ALERT_OP_ACK_ALL || n > 0);
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT(isalnum((unsigned char)cmd.code[i]) || cmd.code[i] == '_');
    }
    rc = mqtt_gateway__parse_alert_clear(payload, len, &cmd, err, sizeof err);
    FUZZ_ASSERT(rc == GW_OK || rc == GW_ERR_INVAL);
    if (rc == GW_OK)
        FUZZ_ASSERT(cmd.op == ALERT_OP_CLEAR_ALL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = { data, size };
    uint8_t which = fuzz_byte(&in);
    bool retain = fuzz_byte(&in) & 1;
    char topic[160];
    switch (which % 4) {
    case 0: snprintf(topic, sizeof topic, PREFIX "/cmd/alerts/ack"); break;
    case 1: snprintf(topic, sizeof topic, PREFIX "/cmd/alerts/clear"); break;
    case 2: snprintf(topic, sizeof topic, PREFIX "/cmd/charge_cap"); break;
    default: {
        /* A topic of the input: what a broker delivers is a NUL-free string. */
        size_t n = 0;
        while (in.size && *in.data != '\n' && n + 1 < sizeof topic) {
            uint8_t c = fuzz_byte(&in);
            topic[n++] = c ? (char)c : '?';
        }
        topic[n] = '\0';
        (void)fuzz_byte(&in); /* the '\n' */
    }
    }
    /* libmosquitto hands the payload over with a NUL after it (not counted in len). */
    char *payload = fuzz_strndup(in.data, in.size);
    check_parsers(payload, in.size);

    unsigned before = replies;
    struct mqtt_client_message msg = { .topic = topic, .payload = payload, .len = in.size, .qos = 1,
                                       .retain = retain };
    mqtt_gateway__command(gw, &msg);
    bool command_topic = strncmp(topic, PREFIX "/cmd/", strlen(PREFIX "/cmd/")) == 0;
    FUZZ_ASSERT(replies == before + (command_topic ? 1u : 0u));
    free(payload);
    return 0;
}
