/* Unit tests of mqtt_gateway: status JSON golden output, number formatting, NaN handling,
 * alert / discovery documents, command payload validation, rate limiting in-process (with a
 * client that is never connected). */
#define _POSIX_C_SOURCE 200809L
#include "mqtt_gateway.h"
#include "mqtt_gateway_internal.h"

#include "app_events.h"
#include "event_bus.h"
#include "gw_config.h"
#include "gw_error.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>

/* Golden status document of golden_sample() (checked by hand against the module reference:
 * same keys and nesting, our extra fields after them). */
static const char golden_status[] =
    "{\"timestamp\":1234567890,"
    "\"battery\":{\"voltage\":13.29,\"current\":-12.5,\"power\":-166.2,\"soc\":85.2,\"soh\":98.5,"
    "\"status\":\"discharging\"},"
    "\"cells\":{\"count\":4,\"voltage_max\":3.33,\"voltage_min\":3.318,\"voltage_delta\":0.012,"
    "\"max_index\":4,\"min_index\":3,\"voltages\":[3.321,3.325,3.318,3.33],\"balancing\":[4]},"
    "\"temperature\":{\"sensor_count\":2,\"max\":28.3,\"min\":25.1,\"avg\":26.7,\"internal\":25.1,"
    "\"external1\":28.3,\"external2\":null},"
    "\"battery_id\":0}";

static struct bms_live_data golden_sample(void)
{
    struct bms_live_data d;
    memset(&d, 0, sizeof d);
    d.valid = true;
    d.wall_time_ms = 1234567890123LL;
    d.cell_count = 4;
    d.cell_mv_x10[0] = 33210;
    d.cell_mv_x10[1] = 33250;
    d.cell_mv_x10[2] = 33180;
    d.cell_mv_x10[3] = 33300;
    d.min_cell_mv = 3318;
    d.max_cell_mv = 3330;
    d.min_cell_index = 3;
    d.max_cell_index = 4;
    d.cell_spread_mv_x10 = 120;
    d.pack_voltage_v = 13.294f;
    d.pack_current_a = -12.5f;
    d.temp_dc[BMS_TEMP_INTERNAL] = 251;
    d.temp_present[BMS_TEMP_INTERNAL] = true;
    d.temp_dc[BMS_TEMP_EXT1] = 283;
    d.temp_present[BMS_TEMP_EXT1] = true;
    d.temp_dc[BMS_TEMP_EXT2] = BMS_TEMP_ABSENT_RAW;
    d.soc_ppm = 85200000;
    d.soh_raw = 49250;
    d.soh_valid = true;
    d.online_status = BMS_STATUS_DISCHARGING;
    d.balancing_active = 1u << 3;
    d.balancing_decision = 1u << 3;
    return d;
}

static char *status_text(const struct bms_live_data *d)
{
    cJSON *doc = mqtt_gateway__status_json(d);
    if (!doc)
        return NULL;
    char *s = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return s;
}

static void test_status_golden(void)
{
    struct bms_live_data d = golden_sample();
    char *s = status_text(&d);
    CHECK_STR(s, golden_status);
    cJSON_free(s);
}

static void test_status_nan_and_absent(void)
{
    struct bms_live_data d = golden_sample();
    d.pack_voltage_v = NAN;
    d.pack_current_a = INFINITY;
    d.soh_valid = false;
    memset(d.temp_present, 0, sizeof d.temp_present);
    char *s = status_text(&d);
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK(strstr(s, "nan") == NULL && strstr(s, "NaN") == NULL && strstr(s, "inf") == NULL);
    cJSON *doc = cJSON_Parse(s);
    CHECK(doc != NULL);
    cJSON *bat = cJSON_GetObjectItem(doc, "battery");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(bat, "voltage")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(bat, "current")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(bat, "power")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(bat, "soh")));
    cJSON *t = cJSON_GetObjectItem(doc, "temperature");
    CHECK_EQ_INT(cJSON_GetObjectItem(t, "sensor_count")->valueint, 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(t, "max")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(t, "avg")));
    cJSON_Delete(doc);
    cJSON_free(s);

    /* No cells: count 0 and nulls, no garbage; a bogus cell count is clamped. */
    d = golden_sample();
    d.cell_count = 0;
    s = status_text(&d);
    CHECK(s && strstr(s, "\"voltage_max\":null") != NULL);
    cJSON_free(s);
    d.cell_count = 200;
    s = status_text(&d);
    CHECK(s && strstr(s, "\"count\":16") != NULL);
    cJSON_free(s);
}

static void test_number_format(void)
{
    char buf[32];
    CHECK_EQ_INT(mqtt_gateway__format_number(buf, sizeof buf, 52.4, 2), GW_OK);
    CHECK_STR(buf, "52.40");
    CHECK_EQ_INT(mqtt_gateway__format_number(buf, sizeof buf, 3.3216, 3), GW_OK);
    CHECK_STR(buf, "3.322");
    CHECK_EQ_INT(mqtt_gateway__format_number(buf, sizeof buf, -12.345, 1), GW_OK);
    CHECK_STR(buf, "-12.3");
    CHECK_EQ_INT(mqtt_gateway__format_number(buf, sizeof buf, -0.004, 2), GW_OK);
    CHECK_STR(buf, "0.00");
    CHECK_EQ_INT(mqtt_gateway__format_number(buf, sizeof buf, 85.2f, 1), GW_OK);
    CHECK_STR(buf, "85.2");
    CHECK_EQ_INT(mqtt_gateway__format_number(buf, sizeof buf, 7, 0), GW_OK);
    CHECK_STR(buf, "7");
    CHECK_EQ_INT(mqtt_gateway__format_number(buf, sizeof buf, NAN, 2), GW_ERR_RANGE);
    CHECK_STR(buf, "");
    CHECK_EQ_INT(mqtt_gateway__format_number(buf, sizeof buf, -INFINITY, 2), GW_ERR_RANGE);
    CHECK_EQ_INT(mqtt_gateway__format_number(buf, 4, 123.456, 2), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(mqtt_gateway__format_number(buf, sizeof buf, 1.0, 7), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_gateway__format_number(NULL, 4, 1.0, 1), GW_ERR_INVAL);
    CHECK_NEAR(mqtt_gateway__round(52.400001525878906, 2), 52.4, 1e-12);
    CHECK(isnan(mqtt_gateway__round(NAN, 2)));
    CHECK(!signbit(mqtt_gateway__round(-0.0001, 2)));
}

static void test_alert_json(void)
{
    struct app_alert a;
    memset(&a, 0, sizeof a);
    memset(a.code, 'X', sizeof a.code); /* no NUL: must be bounded */
    snprintf(a.message, sizeof a.message, "Cell 3 \"high\" 3.651 V");
    a.level = ALERT_LEVEL_WARNING;
    a.value = 3.651f;
    a.threshold = NAN;
    a.first_seen_ms = 1700000000000LL;
    a.last_seen_ms = 1700000005000LL;
    a.count = 2;
    cJSON *doc = mqtt_gateway__alert_json(&a, true);
    char *s = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    CHECK(s != NULL);
    if (!s)
        return;
    cJSON *p = cJSON_Parse(s); /* quotes in the message are escaped: parses back */
    CHECK(p != NULL);
    CHECK_STR(cJSON_GetObjectItem(p, "event")->valuestring, "raised");
    CHECK_EQ_INT(strlen(cJSON_GetObjectItem(p, "code")->valuestring), 32);
    CHECK_STR(cJSON_GetObjectItem(p, "level")->valuestring, "warning");
    CHECK_STR(cJSON_GetObjectItem(p, "message")->valuestring, "Cell 3 \"high\" 3.651 V");
    CHECK_NEAR(cJSON_GetObjectItem(p, "value")->valuedouble, 3.651, 1e-9);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(p, "threshold")));
    CHECK_NEAR(cJSON_GetObjectItem(p, "first_seen_ms")->valuedouble, 1700000000000.0, 0.5);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(p, "acknowledged")));
    cJSON_Delete(p);
    cJSON_free(s);
    doc = mqtt_gateway__alert_json(&a, false);
    CHECK_STR(cJSON_GetObjectItem(doc, "event")->valuestring, "cleared");
    cJSON_Delete(doc);
}

static void test_discovery_json(void)
{
    struct bms_version v;
    memset(&v, 0, sizeof v);
    struct mqtt_gateway__device dev;
    mqtt_gateway__device_info("tinybms-gw-my host.local", &v, &dev);
    CHECK_STR(dev.node_id, "tinybms-gw-my_host_local");
    CHECK_STR(dev.identifier, "tinybms-gw-my_host_local");
    v.valid = true;
    snprintf(v.serial, sizeof v.serial, "0123456789ABCDEF01234567");
    v.fw_public = 86;
    v.fw_internal = 1234;
    v.hw_version = 2;
    v.hw_changes = 1;
    mqtt_gateway__device_info("gw", &v, &dev);
    CHECK_STR(dev.identifier, "tinybms_0123456789ABCDEF01234567");
    CHECK_STR(dev.sw_version, "86 (internal 1234)");

    struct mqtt_gateway__sensor s = { "voltage", "Pack voltage", "voltage", "voltage", "V", 2, NULL };
    cJSON *doc = mqtt_gateway__discovery_json("tinybms", &dev, &s);
    CHECK_STR(cJSON_GetObjectItem(doc, "state_topic")->valuestring, "tinybms/voltage");
    CHECK_STR(cJSON_GetObjectItem(doc, "availability_topic")->valuestring, "tinybms/availability");
    CHECK_STR(cJSON_GetObjectItem(doc, "device_class")->valuestring, "voltage");
    CHECK_STR(cJSON_GetObjectItem(doc, "unit_of_measurement")->valuestring, "V");
    CHECK_STR(cJSON_GetObjectItem(doc, "state_class")->valuestring, "measurement");
    CHECK_STR(cJSON_GetObjectItem(doc, "unique_id")->valuestring, "gw_voltage");
    cJSON *device = cJSON_GetObjectItem(doc, "device");
    CHECK_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(device, "identifiers"), 0)->valuestring,
              "tinybms_0123456789ABCDEF01234567");
    CHECK_STR(cJSON_GetObjectItem(device, "name")->valuestring, "TinyBMS");
    CHECK(cJSON_GetObjectItem(device, "manufacturer") != NULL);
    CHECK(cJSON_GetObjectItem(device, "model") != NULL);
    cJSON_Delete(doc);

    /* Text sensor: no unit, no state_class (Home Assistant rejects measurement without unit). */
    struct mqtt_gateway__sensor t = { "online_status", "Status", "online_status", NULL, NULL, -1, "mdi:x" };
    doc = mqtt_gateway__discovery_json("p", &dev, &t);
    CHECK(cJSON_GetObjectItem(doc, "state_class") == NULL);
    CHECK(cJSON_GetObjectItem(doc, "device_class") == NULL);
    CHECK(cJSON_GetObjectItem(doc, "unit_of_measurement") == NULL);
    cJSON_Delete(doc);
}

static int cap_parse(const char *payload, struct app_charge_cap *cap, char *err, size_t errcap)
{
    return mqtt_gateway__parse_charge_cap(payload, strlen(payload), cap, err, errcap);
}

static void test_charge_cap_validation(void)
{
    struct app_charge_cap cap;
    char err[160];
    CHECK_EQ_INT(cap_parse("{\"ccl_a\":20,\"dcl_a\":null,\"duration_s\":7200}", &cap, err, sizeof err), GW_OK);
    CHECK_NEAR(cap.ccl_cap_a, 20.0, 1e-6);
    CHECK(cap.dcl_cap_a < 0);
    CHECK_EQ_INT(cap.duration_s, 7200);
    CHECK_STR(cap.source, "mqtt");
    CHECK_EQ_INT(cap_parse("{\"dcl_a\":12.5,\"duration_s\":60}", &cap, err, sizeof err), GW_OK);
    CHECK(cap.ccl_cap_a < 0);
    CHECK_NEAR(cap.dcl_cap_a, 12.5, 1e-6);
    CHECK_EQ_INT(cap_parse("{\"ccl_a\":0,\"duration_s\":1}", &cap, err, sizeof err), GW_OK);
    CHECK_NEAR(cap.ccl_cap_a, 0.0, 1e-9);
    /* Cancel: duration 0, the amperes do not matter. */
    CHECK_EQ_INT(cap_parse("{\"duration_s\":0}", &cap, err, sizeof err), GW_OK);
    CHECK_EQ_INT(cap.duration_s, 0);
    CHECK(cap.ccl_cap_a < 0 && cap.dcl_cap_a < 0);

    static const struct {
        const char *payload;
        int rc;
        const char *err_part;
    } bad[] = {
        { "", GW_ERR_INVAL, "empty" },
        { "not json", GW_ERR_INVAL, "JSON" },
        { "[1,2]", GW_ERR_INVAL, "object" },
        { "{\"ccl_a\":20}", GW_ERR_INVAL, "duration_s" },
        { "{\"ccl_a\":20,\"duration_s\":-1}", GW_ERR_RANGE, "duration_s" },
        { "{\"ccl_a\":20,\"duration_s\":1.5}", GW_ERR_INVAL, "whole" },
        { "{\"ccl_a\":20,\"duration_s\":999999999}", GW_ERR_RANGE, "7 days" },
        { "{\"ccl_a\":20,\"duration_s\":\"60\"}", GW_ERR_INVAL, "duration_s" },
        { "{\"ccl_a\":-5,\"duration_s\":60}", GW_ERR_RANGE, "ccl_a" },
        { "{\"ccl_a\":\"20\",\"duration_s\":60}", GW_ERR_INVAL, "ccl_a" },
        { "{\"dcl_a\":1e9,\"duration_s\":60}", GW_ERR_RANGE, "dcl_a" },
        { "{\"ccl_a\":null,\"dcl_a\":null,\"duration_s\":60}", GW_ERR_INVAL, "nothing to cap" },
        { "{\"ccl\":20,\"duration_s\":60}", GW_ERR_INVAL, "unknown field" },
        { "{\"ccl_a\":20,\"duration_s\":60", GW_ERR_INVAL, "JSON" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int rc = cap_parse(bad[i].payload, &cap, err, sizeof err);
        if (rc != bad[i].rc || !strstr(err, bad[i].err_part))
            fprintf(stderr, "payload %s -> %d \"%s\"\n", bad[i].payload, rc, err);
        CHECK_EQ_INT(rc, bad[i].rc);
        CHECK(strstr(err, bad[i].err_part) != NULL);
        CHECK_EQ_INT(cap.duration_s, 0); /* out reset on error */
    }
    char big[700];
    memset(big, ' ', sizeof big);
    memcpy(big, "{\"duration_s\":0}", 16);
    CHECK_EQ_INT(mqtt_gateway__parse_charge_cap(big, sizeof big, &cap, err, sizeof err), GW_ERR_INVAL);
    CHECK(strstr(err, "512") != NULL);
    /* Not NUL-terminated input is read only up to len. */
    const char raw[] = "{\"duration_s\":0}GARBAGE";
    CHECK_EQ_INT(mqtt_gateway__parse_charge_cap(raw, 16, &cap, err, sizeof err), GW_OK);
}

static void test_alert_command_validation(void)
{
    struct app_alert_command cmd;
    char err[160];
    CHECK_EQ_INT(mqtt_gateway__parse_alert_ack("all", 3, &cmd, err, sizeof err), GW_OK);
    CHECK_EQ_INT(cmd.op, ALERT_OP_ACK_ALL);
    CHECK_STR(cmd.source, "mqtt");
    CHECK_EQ_INT(mqtt_gateway__parse_alert_ack(" OVER_VOLTAGE\n", 14, &cmd, err, sizeof err), GW_OK);
    CHECK_EQ_INT(cmd.op, ALERT_OP_ACK);
    CHECK_STR(cmd.code, "OVER_VOLTAGE");
    CHECK_EQ_INT(mqtt_gateway__parse_alert_ack("", 0, &cmd, err, sizeof err), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_gateway__parse_alert_ack("BAD CODE", 8, &cmd, err, sizeof err), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_gateway__parse_alert_ack("A\0B", 3, &cmd, err, sizeof err), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_gateway__parse_alert_ack("{\"x\":1}", 7, &cmd, err, sizeof err), GW_ERR_INVAL);
    char longcode[40];
    memset(longcode, 'A', sizeof longcode);
    CHECK_EQ_INT(mqtt_gateway__parse_alert_ack(longcode, 32, &cmd, err, sizeof err), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_gateway__parse_alert_ack(longcode, 31, &cmd, err, sizeof err), GW_OK);

    CHECK_EQ_INT(mqtt_gateway__parse_alert_clear("", 0, &cmd, err, sizeof err), GW_OK);
    CHECK_EQ_INT(cmd.op, ALERT_OP_CLEAR_ALL);
    CHECK_EQ_INT(mqtt_gateway__parse_alert_clear("all", 3, &cmd, err, sizeof err), GW_OK);
    CHECK_EQ_INT(mqtt_gateway__parse_alert_clear("OVER_VOLTAGE", 12, &cmd, err, sizeof err), GW_ERR_INVAL);
}

/* ---- in-process gateway with a client that never connects */

static struct gw_config_mqtt unit_cfg;

static bool get_cfg(struct gw_config_mqtt *out, void *ctx)
{
    (void)ctx;
    *out = unit_cfg;
    return true;
}

static void test_gateway_in_process(void)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    unit_cfg = cfg.mqtt;
    unit_cfg.publish_interval_ms = 60000; /* only the first sample is due */
    unit_cfg.status_interval_ms = 60000;

    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct mqtt_client *client = NULL;
    CHECK_EQ_INT(mqtt_client_create(&unit_cfg, bus, NULL, &client), GW_OK);
    struct mqtt_gateway_options opt = { .bus = bus, .get_config = get_cfg, .client = client };
    struct mqtt_gateway *gw = NULL;
    CHECK_EQ_INT(mqtt_gateway_create(&opt, &gw), GW_OK);
    CHECK_EQ_INT(mqtt_gateway_start(gw), GW_OK);
    CHECK_EQ_INT(mqtt_gateway_start(gw), GW_ERR_STATE);

    struct bms_live_data d = golden_sample();
    CHECK(event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &d, sizeof d, 1000));
    CHECK(event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &d, sizeof d, 1000)); /* not due */
    /* Wrong payload size: ignored, no crash. */
    CHECK(event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &d, 10, 1000));
    CHECK(event_bus_flush(bus, 5000));
    struct mqtt_gateway_stats st;
    mqtt_gateway_get_stats(gw, &st);
    CHECK_EQ_INT(st.samples_published, 1);
    CHECK_EQ_INT(st.status_published, 1);
    CHECK_EQ_INT(st.publish_errors, 0);
    CHECK(st.enabled);

    /* 15 numeric topics + status, all QoS 0 while disconnected: dropped and counted. */
    struct mqtt_client_stats cs;
    mqtt_client_get_stats(client, &cs);
    CHECK_EQ_INT(cs.dropped, 16);

    /* A NaN voltage is not published (voltage and power skipped). */
    d.pack_voltage_v = NAN;
    CHECK_EQ_INT(mqtt_gateway__publish_sample(gw, &d), 0);
    mqtt_client_get_stats(client, &cs);
    CHECK_EQ_INT(cs.dropped, 16 + 13);

    /* Alerts are QoS 1: queued for the next connection. */
    struct app_alert a;
    memset(&a, 0, sizeof a);
    snprintf(a.code, sizeof a.code, "OVER_VOLTAGE");
    CHECK(event_bus_publish(bus, EVENT_ALERT_RAISED, &a, sizeof a, 1000));
    CHECK(event_bus_flush(bus, 5000));
    mqtt_client_get_stats(client, &cs);
    CHECK_EQ_INT(cs.queue_depth, 1);

    /* Disabled: nothing more. */
    mqtt_gateway_set_enabled(gw, false);
    CHECK(event_bus_publish(bus, EVENT_ALERT_RAISED, &a, sizeof a, 1000));
    CHECK(event_bus_flush(bus, 5000));
    mqtt_client_get_stats(client, &cs);
    CHECK_EQ_INT(cs.queue_depth, 1);
    mqtt_gateway_get_stats(gw, &st);
    CHECK(!st.enabled);
    CHECK_EQ_INT(st.alerts_published, 1);

    mqtt_gateway_destroy(gw);
    mqtt_client_destroy(client);

    /* Bad options / settings. */
    CHECK_EQ_INT(mqtt_gateway_create(NULL, &gw), GW_ERR_INVAL);
    struct mqtt_gateway_options nobus = { .get_config = get_cfg };
    CHECK_EQ_INT(mqtt_gateway_create(&nobus, &gw), GW_ERR_INVAL);
    snprintf(unit_cfg.topic_prefix, sizeof unit_cfg.topic_prefix, "bad/#");
    struct mqtt_gateway_options own = { .bus = bus, .get_config = get_cfg };
    CHECK_EQ_INT(mqtt_gateway_create(&own, &gw), GW_ERR_INVAL);
    CHECK(gw == NULL);
    event_bus_destroy(bus);

    char topic[32];
    CHECK_EQ_INT(mqtt_gateway_availability_topic("tinybms", topic, sizeof topic), GW_OK);
    CHECK_STR(topic, "tinybms/availability");
    CHECK_EQ_INT(mqtt_gateway_availability_topic("tinybms", topic, 8), GW_ERR_OVERFLOW);
}

TEST_MAIN(TEST_CASE(test_status_golden), TEST_CASE(test_status_nan_and_absent),
          TEST_CASE(test_number_format), TEST_CASE(test_alert_json), TEST_CASE(test_discovery_json),
          TEST_CASE(test_charge_cap_validation), TEST_CASE(test_alert_command_validation),
          TEST_CASE(test_gateway_in_process))
