/* Unit tests of mqtt_gateway: status JSON golden output from a battery view, number
 * formatting, NaN handling, alert / discovery documents, command payload validation, and the
 * gateway in process on a real event bus with synthetic battery views: bank, charge and
 * per-pack topics, "None" for what is not available, rate limiting, Home Assistant discovery per
 * pack and with / without limit outputs, cmd/charge_cap answers through the callback. Publishes
 * are seen through the gateway's test sink (the real client never connects). */
#define _POSIX_C_SOURCE 200809L
#include "mqtt_gateway.h"
#include "mqtt_gateway_internal.h"

#include "app_events.h"
#include "battery_view.h"
#include "charge_control.h"
#include "event_bus.h"
#include "gw_config.h"
#include "gw_error.h"
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- synthetic data */

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

static struct battery_view *new_view(void)
{
    struct battery_view *v = calloc(1, sizeof *v);
    if (!v)
        abort();
    return v;
}

/* One pack: the golden sample as the battery service would show it. */
static struct battery_view *one_pack_view(void)
{
    struct battery_view *v = new_view();
    struct bms_live_data d = golden_sample();
    mqtt_gateway__view_from_sample(&d, v);
    return v;
}

/* Two packs: pack 1 "north" online (the golden sample), pack 2 "south" offline with an old
 * sample (8 cells, 3.2 V). The bank is pack 1 (the only online one). */
static struct battery_view *two_pack_view(void)
{
    struct battery_view *v = one_pack_view();
    v->pack_count = 2;
    v->conditions |= BATTERY_COND_PACK_OFFLINE;
    snprintf(v->packs[0].name, sizeof v->packs[0].name, "north");
    snprintf(v->min_cell.name, sizeof v->min_cell.name, "P1C3");
    snprintf(v->max_cell.name, sizeof v->max_cell.name, "P1C4");
    struct battery_pack *p = &v->packs[1];
    p->id = 1;
    snprintf(p->name, sizeof p->name, "south");
    p->state = BATTERY_PACK_OFFLINE;
    p->conditions = BATTERY_COND_COMM_LOST;
    p->live = golden_sample();
    p->live.battery_id = 1;
    p->live.cell_count = 8;
    for (int c = 0; c < 8; c++)
        p->live.cell_mv_x10[c] = 32000;
    p->live.pack_voltage_v = 25.6f;
    p->sample_age_ms = 40000;
    return v;
}

static void set_limits(struct battery_view *v)
{
    v->limits.valid = true;
    v->limits.cvl_v = 54.4f;
    v->limits.ccl_a = 80.0f;
    v->limits.dcl_a = 150.0f;
    v->limits.phase = CHARGE_PHASE_ABSORPTION;
    snprintf(v->limits.cvl_reason, sizeof v->limits.cvl_reason, "absorption");
    snprintf(v->limits.ccl_reason, sizeof v->limits.ccl_reason, "pack 2: cell voltage curve");
    snprintf(v->limits.dcl_reason, sizeof v->limits.dcl_reason, "max");
}

/* ---- status document */

/* Golden status document of one_pack_view() (module reference keys and nesting first, our
 * fields after them). The board sensor (internal 25.1) is not a cell temperature: max / min /
 * avg are the one external sensor. */
static const char golden_status[] =
    "{\"timestamp\":1234567890,"
    "\"battery\":{\"voltage\":13.29,\"current\":-12.5,\"power\":-166.2,\"soc\":85.2,\"soh\":98.5,"
    "\"status\":\"discharging\"},"
    "\"cells\":{\"count\":4,\"voltage_max\":3.33,\"voltage_min\":3.318,\"voltage_delta\":0.012,"
    "\"max_cell\":\"C4\",\"min_cell\":\"C3\",\"max_index\":4,\"min_index\":3,"
    "\"voltages\":[3.321,3.325,3.318,3.33],\"balancing\":[4]},"
    "\"temperature\":{\"sensor_count\":1,\"max\":28.3,\"min\":28.3,\"avg\":28.3,\"max_sensor\":\"T1\","
    "\"min_sensor\":\"T1\",\"internal\":25.1,\"external1\":28.3,\"external2\":null},"
    "\"charge\":{\"valid\":false,\"cvl\":null,\"ccl\":null,\"dcl\":null,\"phase\":null,\"cvl_reason\":null,"
    "\"ccl_reason\":null,\"dcl_reason\":null,\"sent\":false},"
    "\"pack_count\":1,\"online_count\":1,\"conditions\":[],"
    "\"packs\":[{\"n\":1,\"id\":0,\"name\":\"pack 1\",\"state\":\"online\",\"online\":true,\"conditions\":[],"
    "\"voltage\":13.29,\"current\":-12.5,\"soc\":85.2,\"temperature_max\":28.3,\"temperature_min\":28.3,"
    "\"sample_age_ms\":0}]}";

static char *status_text(const struct battery_view *v)
{
    cJSON *doc = mqtt_gateway__status_json(v);
    if (!doc)
        return NULL;
    char *s = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return s;
}

static void test_status_golden(void)
{
    struct battery_view *v = one_pack_view();
    char *s = status_text(v);
    CHECK_STR(s, golden_status);
    cJSON_free(s);
    free(v);
}

static void test_status_several_and_absent(void)
{
    struct battery_view *v = two_pack_view();
    set_limits(v);
    v->limit_outputs = BATTERY_OUTPUT_CAN;
    char *s = status_text(v);
    CHECK(s != NULL);
    cJSON *doc = s ? cJSON_Parse(s) : NULL;
    CHECK(doc != NULL);
    if (doc) {
        CHECK_EQ_INT(cJSON_GetObjectItem(doc, "pack_count")->valueint, 2);
        cJSON *cells = cJSON_GetObjectItem(doc, "cells");
        CHECK_STR(cJSON_GetObjectItem(cells, "max_cell")->valuestring, "P1C4");
        CHECK(cJSON_GetObjectItem(cells, "voltages") == NULL); /* one pack only */
        cJSON *t = cJSON_GetObjectItem(doc, "temperature");
        CHECK(cJSON_GetObjectItem(t, "internal") == NULL);
        cJSON *ch = cJSON_GetObjectItem(doc, "charge");
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(ch, "valid")));
        CHECK_NEAR(cJSON_GetObjectItem(ch, "cvl")->valuedouble, 54.4, 1e-9);
        CHECK_STR(cJSON_GetObjectItem(ch, "phase")->valuestring, "absorption");
        CHECK_STR(cJSON_GetObjectItem(ch, "ccl_reason")->valuestring, "pack 2: cell voltage curve");
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(ch, "sent")));
        CHECK_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "conditions"), 0)->valuestring, "pack offline");
        cJSON *p2 = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "packs"), 1);
        CHECK_STR(cJSON_GetObjectItem(p2, "name")->valuestring, "south");
        CHECK_STR(cJSON_GetObjectItem(p2, "state")->valuestring, "offline");
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(p2, "online")));
        /* Not online: its old values are not shown as if fresh. */
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(p2, "voltage")));
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(p2, "soc")));
        CHECK_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(p2, "conditions"), 0)->valuestring, "communication lost");
        cJSON_Delete(doc);
    }
    cJSON_free(s);

    /* No pack online: every value null, never NaN or the last value; no cell sensor: null. */
    v->online_count = 0;
    v->packs[0].state = BATTERY_PACK_STALE;
    v->voltage_v = NAN;
    s = status_text(v);
    CHECK(s != NULL);
    if (s) {
        CHECK(strstr(s, "nan") == NULL && strstr(s, "NaN") == NULL && strstr(s, "inf") == NULL);
        doc = cJSON_Parse(s);
        cJSON *bat = cJSON_GetObjectItem(doc, "battery");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(bat, "voltage")));
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(bat, "soc")));
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(bat, "status")));
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "temperature"), "max")));
        CHECK_EQ_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "temperature"), "sensor_count")->valueint, 0);
        cJSON_Delete(doc);
        cJSON_free(s);
    }
    free(v);

    /* One pack with only the board sensor: no cell temperature at all. */
    struct bms_live_data d = golden_sample();
    d.temp_present[BMS_TEMP_EXT1] = false;
    v = new_view();
    mqtt_gateway__view_from_sample(&d, v);
    CHECK(!v->have_temp);
    CHECK(v->packs[0].conditions & BATTERY_COND_NO_CELL_TEMP);
    s = status_text(v);
    CHECK(s && strstr(s, "\"max\":null") != NULL && strstr(s, "\"internal\":25.1") != NULL);
    cJSON_free(s);
    /* A bogus cell count is clamped. */
    v->cell_count = 200;
    v->packs[0].live.cell_count = 200;
    s = status_text(v);
    CHECK(s && strstr(s, "\"count\":16") != NULL);
    cJSON_free(s);
    free(v);
}

static void test_conditions_text(void)
{
    char buf[64];
    mqtt_gateway__conditions_text(0, buf, sizeof buf);
    CHECK_STR(buf, "ok");
    mqtt_gateway__conditions_text(BATTERY_COND_FROZEN | BATTERY_COND_NO_CELL_TEMP, buf, sizeof buf);
    CHECK_STR(buf, "frozen, no cell temperature");
    mqtt_gateway__conditions_text(1u << 31, buf, sizeof buf); /* unknown bit skipped */
    CHECK_STR(buf, "ok");
    mqtt_gateway__conditions_text(0x7ff, buf, 12); /* truncated, still terminated */
    CHECK(strlen(buf) < 12);
    int16_t t = 0;
    struct bms_live_data d = golden_sample();
    CHECK(mqtt_gateway__cell_temp_max_dc(&d, &t) && t == 283);
    d.temp_present[BMS_TEMP_EXT1] = false;
    CHECK(!mqtt_gateway__cell_temp_max_dc(&d, &t)); /* the board sensor alone is no cell */
    CHECK(!mqtt_gateway__cell_temp_min_dc(&d, &t));
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
    mqtt_gateway__device_info("tinybms-gw-my host.local", &v, 1, &dev);
    CHECK_STR(dev.node_id, "tinybms-gw-my_host_local");
    CHECK_STR(dev.identifier, "tinybms-gw-my_host_local");
    CHECK_STR(dev.name, "TinyBMS");
    v.valid = true;
    snprintf(v.serial, sizeof v.serial, "0123456789ABCDEF01234567");
    v.fw_public = 86;
    v.fw_internal = 1234;
    v.hw_version = 2;
    v.hw_changes = 1;
    mqtt_gateway__device_info("gw", &v, 1, &dev);
    CHECK_STR(dev.identifier, "tinybms_0123456789ABCDEF01234567");
    CHECK_STR(dev.sw_version, "86 (internal 1234)");

    struct mqtt_gateway__sensor s = { "voltage", "Pack voltage", "voltage", "voltage", "V", 2, NULL, false, NULL };
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
    CHECK(cJSON_GetObjectItem(device, "via_device") == NULL);
    cJSON_Delete(doc);

    /* Text sensor: no unit, no state_class (Home Assistant rejects measurement without unit). */
    struct mqtt_gateway__sensor t = { "online_status", "Status", "online_status", NULL, NULL, -1, "mdi:x", false, NULL };
    doc = mqtt_gateway__discovery_json("p", &dev, &t);
    CHECK(cJSON_GetObjectItem(doc, "state_class") == NULL);
    CHECK(cJSON_GetObjectItem(doc, "device_class") == NULL);
    CHECK(cJSON_GetObjectItem(doc, "unit_of_measurement") == NULL);
    cJSON_Delete(doc);

    /* Several packs: the bank is the gateway, each pack a device under it. */
    struct mqtt_gateway__device bank, pack;
    mqtt_gateway__device_info("gw", &v, 3, &bank);
    CHECK_STR(bank.identifier, "gw");
    CHECK_STR(bank.name, "TinyBMS bank");
    CHECK_STR(bank.model, "TinyBMS bank of 3 packs");
    mqtt_gateway__pack_device_info(&bank, 2, "south", &v, &pack);
    CHECK_STR(pack.identifier, "gw_pack2");
    CHECK_STR(pack.name, "south");
    CHECK_STR(pack.via_device, "gw");
    CHECK_STR(pack.model, "TinyBMS (hw 2.1)");
    mqtt_gateway__pack_device_info(&bank, 3, "", NULL, &pack);
    CHECK_STR(pack.name, "pack 3");
    struct mqtt_gateway__sensor ps = { "pack2_soc", "State of charge", "pack/2/soc", "battery", "%", 1, NULL, false,
                                       "pack/2/online" };
    mqtt_gateway__pack_device_info(&bank, 2, "south", &v, &pack);
    doc = mqtt_gateway__discovery_json("tb", &pack, &ps);
    CHECK_STR(cJSON_GetObjectItem(doc, "unique_id")->valuestring, "gw_pack2_soc");
    CHECK_STR(cJSON_GetObjectItem(doc, "state_topic")->valuestring, "tb/pack/2/soc");
    CHECK(cJSON_GetObjectItem(doc, "availability_topic") == NULL);
    CHECK_STR(cJSON_GetObjectItem(doc, "availability_mode")->valuestring, "all");
    cJSON *av = cJSON_GetObjectItem(doc, "availability");
    CHECK_EQ_INT(cJSON_GetArraySize(av), 2);
    CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(av, 0), "topic")->valuestring, "tb/availability");
    CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(av, 1), "topic")->valuestring, "tb/pack/2/online");
    CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(av, 1), "payload_available")->valuestring, "true");
    device = cJSON_GetObjectItem(doc, "device");
    CHECK_STR(cJSON_GetObjectItem(device, "name")->valuestring, "south");
    CHECK_STR(cJSON_GetObjectItem(device, "via_device")->valuestring, "gw");
    cJSON_Delete(doc);
    struct mqtt_gateway__sensor bs = { "pack2_online", "Online", "pack/2/online", "connectivity", NULL, -1, NULL, true,
                                       NULL };
    doc = mqtt_gateway__discovery_json("tb", &pack, &bs);
    CHECK_STR(cJSON_GetObjectItem(doc, "payload_on")->valuestring, "true");
    CHECK_STR(cJSON_GetObjectItem(doc, "payload_off")->valuestring, "false");
    CHECK_STR(cJSON_GetObjectItem(doc, "device_class")->valuestring, "connectivity");
    CHECK(cJSON_GetObjectItem(doc, "state_class") == NULL);
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

/* ---- in-process gateway: a real bus, a real client that never connects, the test sink */

struct rec_msg {
    char *topic;
    char *payload;
    size_t len;
    int qos;
    bool retain;
};

static struct {
    pthread_mutex_t lock;
    struct rec_msg *m;
    size_t n, cap;
} rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void sink(void *ctx, const char *topic, const void *payload, size_t len, int qos, bool retain)
{
    (void)ctx;
    pthread_mutex_lock(&rec.lock);
    if (rec.n == rec.cap) {
        size_t cap = rec.cap ? rec.cap * 2 : 256;
        struct rec_msg *m = realloc(rec.m, cap * sizeof *m);
        if (!m)
            abort();
        rec.m = m;
        rec.cap = cap;
    }
    struct rec_msg *m = &rec.m[rec.n++];
    m->topic = strdup(topic);
    m->payload = malloc(len + 1);
    if (!m->topic || !m->payload)
        abort();
    memcpy(m->payload, payload, len);
    m->payload[len] = '\0';
    m->len = len;
    m->qos = qos;
    m->retain = retain;
    pthread_mutex_unlock(&rec.lock);
}

static void rec_clear(void)
{
    pthread_mutex_lock(&rec.lock);
    for (size_t i = 0; i < rec.n; i++) {
        free(rec.m[i].topic);
        free(rec.m[i].payload);
    }
    free(rec.m);
    rec.m = NULL;
    rec.n = rec.cap = 0;
    pthread_mutex_unlock(&rec.lock);
}

/* Newest message on topic (valid until rec_clear), NULL when none. */
static const struct rec_msg *rec_last(const char *topic)
{
    const struct rec_msg *found = NULL;
    pthread_mutex_lock(&rec.lock);
    for (size_t i = rec.n; i-- > 0 && !found;)
        if (strcmp(rec.m[i].topic, topic) == 0)
            found = &rec.m[i];
    pthread_mutex_unlock(&rec.lock);
    return found;
}

static const char *last(const char *topic)
{
    const struct rec_msg *m = rec_last(topic);
    return m ? m->payload : "(none)";
}

static int count(const char *topic)
{
    int n = 0;
    pthread_mutex_lock(&rec.lock);
    for (size_t i = 0; i < rec.n; i++)
        n += strcmp(rec.m[i].topic, topic) == 0;
    pthread_mutex_unlock(&rec.lock);
    return n;
}

/* The newest discovery config on topic, parsed (caller deletes); NULL when none or empty. */
static cJSON *config_of(const char *topic)
{
    const struct rec_msg *m = rec_last(topic);
    return m && m->len ? cJSON_Parse(m->payload) : NULL;
}

static const char *device_name(const cJSON *cfg)
{
    const cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "device"), "name");
    return cJSON_IsString(n) ? n->valuestring : "";
}

static struct gw_config_mqtt unit_cfg;

static bool get_cfg(struct gw_config_mqtt *out, void *ctx)
{
    (void)ctx;
    *out = unit_cfg;
    return true;
}

static void base_unit_cfg(void)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    unit_cfg = cfg.mqtt;
    snprintf(unit_cfg.topic_prefix, sizeof unit_cfg.topic_prefix, "tb");
    snprintf(unit_cfg.client_id, sizeof unit_cfg.client_id, "gwU");
    unit_cfg.publish_interval_ms = 60000; /* only the first view is due */
    unit_cfg.status_interval_ms = 60000;
    unit_cfg.ha_discovery = true;
}

struct fixture {
    struct event_bus *bus;
    struct mqtt_client *client;
    struct mqtt_gateway *gw;
};

static bool fx_start(struct fixture *f, mqtt_gateway_charge_cap_fn cb, void *ctx)
{
    memset(f, 0, sizeof *f);
    rec_clear();
    CHECK_EQ_INT(event_bus_create(NULL, &f->bus), GW_OK);
    CHECK_EQ_INT(mqtt_client_create(&unit_cfg, NULL, &f->client), GW_OK);
    struct mqtt_gateway_options opt = { .bus = f->bus, .get_config = get_cfg, .client = f->client,
                                        .charge_cap = cb, .charge_cap_ctx = ctx };
    CHECK_EQ_INT(mqtt_gateway_create(&opt, &f->gw), GW_OK);
    if (!f->gw)
        return false;
    mqtt_gateway__set_sink(f->gw, sink, NULL);
    CHECK_EQ_INT(mqtt_gateway_start(f->gw), GW_OK); /* the sink counts as connected */
    return true;
}

static void fx_stop(struct fixture *f)
{
    mqtt_gateway_destroy(f->gw);
    mqtt_client_destroy(f->client);
    event_bus_destroy(f->bus);
    rec_clear();
}

static void send_view(struct fixture *f, const struct battery_view *v)
{
    CHECK(event_bus_publish(f->bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
    CHECK(event_bus_flush(f->bus, 5000) == GW_OK);
}

static void config_changed(struct fixture *f)
{
    struct app_config_change ch = { .sections = CONFIG_SECTION_MQTT };
    CHECK(event_bus_publish(f->bus, EVENT_CONFIG_UPDATED, &ch, sizeof ch, 1000) == GW_OK);
    CHECK(event_bus_flush(f->bus, 5000) == GW_OK);
}

static void test_gateway_one_pack(void)
{
    base_unit_cfg();
    struct fixture f;
    if (!fx_start(&f, NULL, NULL))
        return;
    CHECK_STR(last("tb/availability"), "online");
    /* No view yet: nothing announced (the pack count decides the devices). */
    CHECK_EQ_INT(count("homeassistant/sensor/gwU/voltage/config"), 0);

    struct battery_view *v = one_pack_view();
    send_view(&f, v);
    send_view(&f, v); /* not due */
    CHECK(event_bus_publish(f.bus, EVENT_BATTERY_UPDATE, v, 100, 1000) == GW_OK); /* wrong size */
    CHECK(event_bus_flush(f.bus, 5000) == GW_OK);
    struct mqtt_gateway_stats st;
    mqtt_gateway_get_stats(f.gw, &st);
    CHECK_EQ_INT(st.views_received, 2);
    CHECK_EQ_INT(st.views_ignored, 1);
    CHECK_EQ_INT(st.samples_published, 1);
    CHECK_EQ_INT(st.status_published, 1);
    CHECK_EQ_INT(st.publish_errors, 0);
    CHECK_EQ_INT(count("tb/voltage"), 1);

    /* Bank (module reference topics). */
    CHECK_STR(last("tb/voltage"), "13.29");
    CHECK_STR(last("tb/current"), "-12.50");
    CHECK_STR(last("tb/power"), "-166.2");
    CHECK_STR(last("tb/soc"), "85.2");
    CHECK_STR(last("tb/soh"), "98.5");
    CHECK_STR(last("tb/temperature/max"), "28.3"); /* the cell sensor, not the board's 25.1 */
    CHECK_STR(last("tb/temperature/min"), "28.3");
    CHECK_STR(last("tb/cells/voltage/max"), "3.330");
    CHECK_STR(last("tb/cells/voltage/min"), "3.318");
    CHECK_STR(last("tb/cells/1/voltage"), "3.321");
    CHECK_STR(last("tb/cells/4/voltage"), "3.330");
    CHECK_STR(last("tb/cells/5/voltage"), ""); /* a previous run's extra cells are deleted */
    CHECK_STR(last("tb/cells/16/voltage"), "");
    CHECK_STR(last("tb/balancing"), "{\"active_mask\":8,\"decision_mask\":8,\"active_cells\":[4]}");
    CHECK_STR(last("tb/online_status"), "discharging");
    CHECK_STR(last("tb/conditions"), "ok");
    CHECK_STR(last("tb/pack_count"), "1");
    CHECK_STR(last("tb/online_count"), "1");
    const struct rec_msg *m = rec_last("tb/voltage");
    CHECK(m && m->retain && m->qos == 0);
    CHECK(strstr(last("tb/status"), "\"pack_count\":1") != NULL);
    /* Limits not valid: the charge topics say so, never a number. */
    CHECK_STR(last("tb/charge/valid"), "false");
    CHECK_STR(last("tb/charge/cvl"), "None");
    CHECK_STR(last("tb/charge/ccl"), "None");
    CHECK_STR(last("tb/charge/ccl_reason"), "None");
    CHECK_STR(last("tb/charge/phase"), "None");
    CHECK_STR(last("tb/charge/outputs"), "none");
    /* The one pack. */
    CHECK_STR(last("tb/pack/1/name"), "pack 1");
    CHECK_STR(last("tb/pack/1/status"), "online");
    CHECK_STR(last("tb/pack/1/online"), "true");
    CHECK_STR(last("tb/pack/1/voltage"), "13.29");
    CHECK_STR(last("tb/pack/1/current"), "-12.50");
    CHECK_STR(last("tb/pack/1/soc"), "85.2");
    CHECK_STR(last("tb/pack/1/temperature/max"), "28.3");
    CHECK_STR(last("tb/pack/1/cells/3/voltage"), "3.318");
    CHECK_STR(last("tb/pack/1/conditions"), "ok");
    CHECK_EQ_INT(count("tb/pack/2/voltage"), 0);

    /* Discovery: the bank device with its cells; no charge sensors (no output sends limits),
     * no pack devices (one pack). */
    cJSON *cfg = config_of("homeassistant/sensor/gwU/voltage/config");
    CHECK(cfg != NULL);
    CHECK_STR(device_name(cfg), "TinyBMS");
    cJSON_Delete(cfg);
    m = rec_last("homeassistant/sensor/gwU/voltage/config");
    CHECK(m && m->retain && m->qos == 1);
    CHECK(rec_last("homeassistant/sensor/gwU/cell_4_voltage/config") != NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/cell_5_voltage/config") == NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/charge_ccl/config") == NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/online_count/config") == NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/pack1_voltage/config") == NULL);
    int voltage_configs = count("homeassistant/sensor/gwU/voltage/config");

    /* Limits sent: the charge topics carry the view limits. */
    set_limits(v);
    CHECK_EQ_INT(mqtt_gateway__publish_view(f.gw, v), 0);
    CHECK_STR(last("tb/charge/valid"), "true");
    CHECK_STR(last("tb/charge/cvl"), "54.40");
    CHECK_STR(last("tb/charge/ccl"), "80.0");
    CHECK_STR(last("tb/charge/dcl"), "150.0");
    CHECK_STR(last("tb/charge/cvl_reason"), "absorption");
    CHECK_STR(last("tb/charge/ccl_reason"), "pack 2: cell voltage curve");
    CHECK_STR(last("tb/charge/phase"), "absorption");
    /* Not valid again: "None" once, not on every round. */
    v->limits.valid = false;
    mqtt_gateway__publish_view(f.gw, v);
    CHECK_STR(last("tb/charge/cvl"), "None");
    int nones = count("tb/charge/cvl");
    mqtt_gateway__publish_view(f.gw, v);
    CHECK_EQ_INT(count("tb/charge/cvl"), nones);
    CHECK_STR(last("tb/charge/valid"), "false");

    /* The cell sensor unplugged: explicit unavailability, not the last good value. */
    struct bms_live_data d = golden_sample();
    d.temp_present[BMS_TEMP_EXT1] = false;
    struct battery_view *nt = new_view();
    mqtt_gateway__view_from_sample(&d, nt);
    mqtt_gateway__publish_view(f.gw, nt);
    CHECK_STR(last("tb/temperature/max"), "None");
    CHECK_STR(last("tb/temperature/min"), "None");
    CHECK_STR(last("tb/pack/1/temperature/max"), "None");
    CHECK_STR(last("tb/pack/1/conditions"), "no cell temperature");
    CHECK_STR(last("tb/voltage"), "13.29");
    free(nt);

    /* An output starts sending limits: the charge sensors are announced; it stops: removed. */
    v->limit_outputs = BATTERY_OUTPUT_CAN;
    send_view(&f, v);
    cfg = config_of("homeassistant/sensor/gwU/charge_ccl/config");
    CHECK(cfg != NULL);
    CHECK_STR(cJSON_GetObjectItem(cfg, "state_topic")->valuestring, "tb/charge/ccl");
    cJSON_Delete(cfg);
    CHECK(rec_last("homeassistant/sensor/gwU/charge_cvl/config") != NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/charge_dcl/config") != NULL);
    CHECK_EQ_INT(count("homeassistant/sensor/gwU/voltage/config"), voltage_configs); /* not re-sent */
    v->limit_outputs = 0;
    send_view(&f, v);
    m = rec_last("homeassistant/sensor/gwU/charge_ccl/config");
    CHECK(m && m->len == 0 && m->retain);
    CHECK_EQ_INT(count("homeassistant/sensor/gwU/charge_ccl/config"), 2);
    send_view(&f, v); /* unchanged: nothing re-announced */
    CHECK_EQ_INT(count("homeassistant/sensor/gwU/charge_ccl/config"), 2);

    /* A new BMS version: the bank device is re-announced with the serial. */
    struct app_bms_version ver = { .battery_id = 0 };
    ver.version.valid = true;
    snprintf(ver.version.serial, sizeof ver.version.serial, "00112233445566778899AABB");
    CHECK(event_bus_publish(f.bus, EVENT_BMS_VERSION_UPDATE, &ver, sizeof ver, 1000) == GW_OK);
    CHECK(event_bus_flush(f.bus, 5000) == GW_OK);
    CHECK(strstr(last("homeassistant/sensor/gwU/voltage/config"), "tinybms_00112233445566778899AABB") != NULL);

    /* Disabled: views no longer published. */
    mqtt_gateway_set_enabled(f.gw, false);
    mqtt_gateway_get_stats(f.gw, &st);
    uint64_t before = st.samples_published;
    send_view(&f, v);
    mqtt_gateway_get_stats(f.gw, &st);
    CHECK_EQ_INT(st.samples_published, before);
    CHECK(!st.enabled);
    free(v);
    fx_stop(&f);
}

static void test_gateway_several_packs(void)
{
    base_unit_cfg();
    struct fixture f;
    if (!fx_start(&f, NULL, NULL))
        return;
    struct battery_view *v = two_pack_view();
    v->limit_outputs = BATTERY_OUTPUT_CAN | BATTERY_OUTPUT_DBUS;
    set_limits(v);
    send_view(&f, v);

    /* Bank: the aggregate; per-cell topics do not exist with several packs. */
    CHECK_STR(last("tb/voltage"), "13.29");
    CHECK_STR(last("tb/pack_count"), "2");
    CHECK_STR(last("tb/online_count"), "1");
    CHECK_STR(last("tb/conditions"), "pack offline");
    CHECK_STR(last("tb/cells/1/voltage"), "");
    CHECK_STR(last("tb/cells/voltage/max"), "3.330");
    CHECK_STR(last("tb/balancing"), "{\"active_cells\":[\"P1C4\"]}");
    CHECK_STR(last("tb/charge/outputs"), "can,dbus");
    /* Pack 1 online, named. */
    CHECK_STR(last("tb/pack/1/name"), "north");
    CHECK_STR(last("tb/pack/1/voltage"), "13.29");
    CHECK_STR(last("tb/pack/1/cells/4/voltage"), "3.330");
    CHECK_STR(last("tb/pack/1/cells/5/voltage"), "");
    /* Pack 2 offline: never its old values as if fresh. */
    CHECK_STR(last("tb/pack/2/name"), "south");
    CHECK_STR(last("tb/pack/2/status"), "offline");
    CHECK_STR(last("tb/pack/2/online"), "false");
    CHECK_STR(last("tb/pack/2/conditions"), "communication lost");
    CHECK_STR(last("tb/pack/2/voltage"), "None");
    CHECK_STR(last("tb/pack/2/soc"), "None");
    CHECK_STR(last("tb/pack/2/temperature/max"), "None");
    CHECK_STR(last("tb/pack/2/cells/8/voltage"), "None");
    CHECK_STR(last("tb/pack/2/cells/9/voltage"), "");
    CHECK_STR(last("tb/pack/2/balancing"), "None");
    mqtt_gateway__publish_view(f.gw, v);
    CHECK_EQ_INT(count("tb/pack/2/voltage"), 1); /* "None" once */
    CHECK_EQ_INT(count("tb/pack/2/online"), 2);  /* state every round */

    /* Back online: fresh values; offline again: "None" again. */
    v->packs[1].state = BATTERY_PACK_ONLINE;
    mqtt_gateway__publish_view(f.gw, v);
    CHECK_STR(last("tb/pack/2/voltage"), "25.60");
    CHECK_STR(last("tb/pack/2/online"), "true");
    CHECK_STR(last("tb/pack/2/cells/8/voltage"), "3.200");
    v->packs[1].state = BATTERY_PACK_STALE;
    mqtt_gateway__publish_view(f.gw, v);
    CHECK_STR(last("tb/pack/2/voltage"), "None");
    CHECK_STR(last("tb/pack/2/status"), "stale");

    /* Discovery: a bank device and a device per pack, named after the packs. */
    cJSON *cfg = config_of("homeassistant/sensor/gwU/voltage/config");
    CHECK(cfg != NULL);
    CHECK_STR(device_name(cfg), "TinyBMS bank");
    cJSON_Delete(cfg);
    CHECK(rec_last("homeassistant/sensor/gwU/cell_1_voltage/config") == NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/online_count/config") != NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/charge_cvl/config") != NULL);
    cfg = config_of("homeassistant/sensor/gwU/pack1_voltage/config");
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_STR(device_name(cfg), "north");
        CHECK_STR(cJSON_GetObjectItem(cfg, "state_topic")->valuestring, "tb/pack/1/voltage");
        CHECK_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "device"), "via_device")->valuestring, "gwU");
        cJSON_Delete(cfg);
    }
    cfg = config_of("homeassistant/binary_sensor/gwU/pack2_online/config");
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_STR(device_name(cfg), "south");
        CHECK_STR(cJSON_GetObjectItem(cfg, "state_topic")->valuestring, "tb/pack/2/online");
        cJSON_Delete(cfg);
    }
    CHECK(rec_last("homeassistant/sensor/gwU/pack2_status/config") != NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/pack2_conditions/config") != NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/pack2_temperature_max/config") != NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/pack1_cell_4_voltage/config") != NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/pack1_cell_5_voltage/config") == NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/pack2_cell_8_voltage/config") != NULL);
    CHECK(rec_last("homeassistant/sensor/gwU/pack2_cell_9_voltage/config") == NULL);

    /* A renamed pack: its device is announced again under the new name, the other is not. */
    int p1 = count("homeassistant/sensor/gwU/pack1_voltage/config");
    snprintf(v->packs[1].name, sizeof v->packs[1].name, "aft");
    send_view(&f, v);
    cfg = config_of("homeassistant/sensor/gwU/pack2_voltage/config");
    CHECK(cfg && strcmp(device_name(cfg), "aft") == 0);
    cJSON_Delete(cfg);
    CHECK_EQ_INT(count("homeassistant/sensor/gwU/pack1_voltage/config"), p1);

    /* A reconnection republishes every config and the "None" set. */
    int nones = count("tb/pack/2/voltage");
    mqtt_gateway__connected(f.gw);
    CHECK_EQ_INT(count("homeassistant/sensor/gwU/pack1_voltage/config"), p1 + 1);
    mqtt_gateway__publish_view(f.gw, v);
    CHECK_EQ_INT(count("tb/pack/2/voltage"), nones + 1);

    /* Discovery off at run time: every config emptied, the packs' too. */
    unit_cfg.ha_discovery = false;
    config_changed(&f);
    const struct rec_msg *m = rec_last("homeassistant/sensor/gwU/pack2_voltage/config");
    CHECK(m && m->len == 0);
    m = rec_last("homeassistant/binary_sensor/gwU/pack1_online/config");
    CHECK(m && m->len == 0);
    m = rec_last("homeassistant/sensor/gwU/pack2_cell_8_voltage/config");
    CHECK(m && m->len == 0);
    m = rec_last("homeassistant/sensor/gwU/voltage/config");
    CHECK(m && m->len == 0);
    send_view(&f, v); /* and not announced again */
    m = rec_last("homeassistant/sensor/gwU/voltage/config");
    CHECK(m && m->len == 0);

    /* No pack online at all: the bank values are "None" (once). */
    v->online_count = 0;
    v->packs[0].state = BATTERY_PACK_OFFLINE;
    mqtt_gateway__publish_view(f.gw, v);
    CHECK_STR(last("tb/voltage"), "None");
    CHECK_STR(last("tb/soc"), "None");
    CHECK_STR(last("tb/online_status"), "None");
    CHECK_STR(last("tb/pack/1/voltage"), "None");
    CHECK_STR(last("tb/online_count"), "0");
    free(v);
    fx_stop(&f);
}

/* A battery service stand-in for the charge-cap callback. */
struct fake_bs {
    int calls;
    struct app_charge_cap last;
    int rc;
    const char *answer;
};

static int fake_cap(void *ctx, const struct app_charge_cap *cap, char *answer, size_t len)
{
    struct fake_bs *bs = ctx;
    bs->calls++;
    bs->last = *cap;
    snprintf(answer, len, "%s", bs->answer);
    return bs->rc;
}

static int cap_requests;

static void on_cap_request(const struct gw_event *ev, void *ctx)
{
    (void)ev;
    (void)ctx;
    cap_requests++;
}

/* Sends one command and returns the parsed reply (caller deletes). */
static cJSON *command(struct fixture *f, const char *topic, const char *payload, bool retain)
{
    int before = count("tb/cmd/result");
    struct mqtt_client_message msg = { .topic = topic, .payload = payload, .len = strlen(payload), .qos = 1,
                                       .retain = retain };
    mqtt_gateway__command(f->gw, &msg);
    if (count("tb/cmd/result") != before + 1)
        return NULL;
    const struct rec_msg *m = rec_last("tb/cmd/result");
    CHECK(m && m->qos == 1 && !m->retain);
    return m ? cJSON_Parse(m->payload) : NULL;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(it) ? it->valuestring : "(missing)";
}

static void test_gateway_charge_cap(void)
{
    static const char cap20[] = "{\"ccl_a\":20,\"dcl_a\":null,\"duration_s\":7200}";
    base_unit_cfg();
    unit_cfg.commands_enabled = true;
    snprintf(unit_cfg.username, sizeof unit_cfg.username, "gwuser");

    /* No callback (no battery service): answered, nothing happens. */
    struct fixture f;
    if (!fx_start(&f, NULL, NULL))
        return;
    cap_requests = 0;
    CHECK_EQ_INT(event_bus_subscribe(f.bus, EVENT_CHARGE_CAP_REQUEST, on_cap_request, NULL, "test"), GW_OK);
    cJSON *r = command(&f, "tb/cmd/charge_cap", cap20, false);
    CHECK(r != NULL);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(r, "ok")));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(r, "applied")));
    CHECK_STR(jstr(r, "answer"), "no effect: no battery service");
    CHECK_STR(jstr(r, "error"), "no effect: no battery service");
    CHECK_STR(jstr(r, "command"), "charge_cap");
    cJSON_Delete(r);
    CHECK(event_bus_flush(f.bus, 5000) == GW_OK);
    CHECK_EQ_INT(cap_requests, 0); /* the old bus event is gone */
    fx_stop(&f);

    struct fake_bs bs = { .rc = GW_OK, .answer = "applied" };
    if (!fx_start(&f, fake_cap, &bs))
        return;
    cap_requests = 0;
    CHECK_EQ_INT(event_bus_subscribe(f.bus, EVENT_CHARGE_CAP_REQUEST, on_cap_request, NULL, "test"), GW_OK);
    r = command(&f, "tb/cmd/charge_cap", cap20, false);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")) && cJSON_IsTrue(cJSON_GetObjectItem(r, "applied")));
    CHECK_STR(jstr(r, "answer"), "applied");
    CHECK(cJSON_GetObjectItem(r, "error") == NULL);
    cJSON_Delete(r);
    CHECK_EQ_INT(bs.calls, 1);
    CHECK_NEAR(bs.last.ccl_cap_a, 20.0, 1e-6);
    CHECK(bs.last.dcl_cap_a < 0);
    CHECK_EQ_INT(bs.last.duration_s, 7200);
    CHECK_STR(bs.last.source, "mqtt");

    bs.rc = GW_ERR_UNSUPPORTED;
    bs.answer = "no effect: no output sends limits";
    r = command(&f, "tb/cmd/charge_cap", "{\"dcl_a\":5,\"duration_s\":60}", false);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")) && cJSON_IsFalse(cJSON_GetObjectItem(r, "applied")));
    CHECK_STR(jstr(r, "answer"), "no effect: no output sends limits");
    cJSON_Delete(r);
    CHECK_EQ_INT(bs.calls, 2);

    bs.rc = GW_ERR_INVAL;
    bs.answer = "invalid cap (a value is not a number)";
    r = command(&f, "tb/cmd/charge_cap", cap20, false);
    CHECK(r && cJSON_IsFalse(cJSON_GetObjectItem(r, "ok")));
    CHECK_STR(jstr(r, "answer"), "error: invalid cap (a value is not a number)");
    CHECK_STR(jstr(r, "error"), "invalid cap (a value is not a number)");
    cJSON_Delete(r);

    /* Refused before the callback: bad payload, retained message. */
    r = command(&f, "tb/cmd/charge_cap", "{\"ccl_a\":-3,\"duration_s\":60}", false);
    CHECK(r && cJSON_IsFalse(cJSON_GetObjectItem(r, "ok")));
    CHECK(r && strncmp(jstr(r, "answer"), "error: ", 7) == 0);
    CHECK(r && strstr(jstr(r, "error"), "ccl_a") != NULL);
    cJSON_Delete(r);
    r = command(&f, "tb/cmd/charge_cap", cap20, true);
    CHECK(r && cJSON_IsFalse(cJSON_GetObjectItem(r, "ok")));
    CHECK(r && strstr(jstr(r, "error"), "retained") != NULL);
    cJSON_Delete(r);
    CHECK_EQ_INT(bs.calls, 3);

    /* Alert commands still go on the bus; their reply has no answer field. */
    r = command(&f, "tb/cmd/alerts/ack", "all", false);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
    CHECK(r && cJSON_GetObjectItem(r, "answer") == NULL);
    cJSON_Delete(r);
    r = command(&f, "tb/cmd/unknown", "x", false);
    CHECK(r && cJSON_IsFalse(cJSON_GetObjectItem(r, "ok")));
    CHECK_STR(jstr(r, "error"), "unknown command");
    cJSON_Delete(r);

    struct mqtt_gateway_stats st;
    mqtt_gateway_get_stats(f.gw, &st);
    CHECK_EQ_INT(st.caps_applied, 1);
    CHECK_EQ_INT(st.caps_without_effect, 1);
    CHECK_EQ_INT(st.commands_accepted, 3);
    CHECK_EQ_INT(st.commands_rejected, 4);
    CHECK(event_bus_flush(f.bus, 5000) == GW_OK);
    CHECK_EQ_INT(cap_requests, 0);
    fx_stop(&f);
}

static void test_gateway_options(void)
{
    base_unit_cfg();
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct mqtt_gateway *gw = NULL;
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

/* The client path (no sink): QoS 0 values are dropped while disconnected and counted by the
 * client, alerts (QoS 1) wait in its queue. */
static void test_gateway_real_client_offline(void)
{
    base_unit_cfg();
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct mqtt_client *client = NULL;
    CHECK_EQ_INT(mqtt_client_create(&unit_cfg, NULL, &client), GW_OK);
    struct mqtt_gateway_options opt = { .bus = bus, .get_config = get_cfg, .client = client };
    struct mqtt_gateway *gw = NULL;
    CHECK_EQ_INT(mqtt_gateway_create(&opt, &gw), GW_OK);
    CHECK_EQ_INT(mqtt_gateway_start(gw), GW_OK);
    CHECK_EQ_INT(mqtt_gateway_start(gw), GW_ERR_STATE);
    struct battery_view *v = one_pack_view();
    CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    struct mqtt_client_stats cs;
    mqtt_client_get_stats(client, &cs);
    CHECK(cs.dropped > 30);
    CHECK_EQ_INT(cs.queue_depth, 0); /* discovery waits for a connection */
    uint64_t dropped = cs.dropped;
    /* Disconnected: nothing is marked as published, the "None" sets are sent again. */
    v->limits.valid = false;
    mqtt_gateway__publish_view(gw, v);
    mqtt_client_get_stats(client, &cs);
    CHECK(cs.dropped > dropped);

    struct app_alert a;
    memset(&a, 0, sizeof a);
    snprintf(a.code, sizeof a.code, "OVER_VOLTAGE");
    CHECK(event_bus_publish(bus, EVENT_ALERT_RAISED, &a, sizeof a, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    mqtt_client_get_stats(client, &cs);
    CHECK_EQ_INT(cs.queue_depth, 1);
    /* The benchmark's entry points (one-pack view of a sample) still work. */
    struct bms_live_data d = golden_sample();
    CHECK_EQ_INT(mqtt_gateway__publish_sample(gw, &d), 0);
    CHECK_EQ_INT(mqtt_gateway__publish_status(gw, &d), 0);
    free(v);
    mqtt_gateway_destroy(gw);
    mqtt_client_destroy(client);
    event_bus_destroy(bus);
}

/* ---- the topic table */

/* "{k}" of a table text as the docs write it ("<k>"). */
static void doc_form(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = in; *p && n + 4 < cap; p++) {
        if (strncmp(p, "{k}", 3) == 0) {
            memcpy(out + n, "<k>", 3);
            n += 3;
            p += 2;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

/* The rows are coherent (what the publisher and the discovery rely on), every object is unique
 * on its device, and docs/mqtt.md names every topic and every entity of the table. */
static void test_topic_table(void)
{
    size_t n = 0;
    const struct mqtt_gateway__topic *rows = mqtt_gateway__topics(&n);
    CHECK(rows != NULL && n > 30);
    const char *src = getenv("GW_SOURCE_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/docs/mqtt.md", src ? src : ".");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    static char doc[131072];
    size_t len = f ? fread(doc, 1, sizeof doc - 1, f) : 0;
    if (f)
        fclose(f);
    doc[len] = '\0';
    int last_scope = 0;
    for (size_t i = 0; i < n; i++) {
        const struct mqtt_gateway__topic *t = &rows[i];
        CHECK(t->scope <= MQTT_GATEWAY__SCOPE_PACK);
        CHECK(t->scope >= last_scope); /* bank, charge, packs: the publishing order */
        last_scope = t->scope;
        CHECK(t->sub && t->sub[0] && !strpbrk(t->sub, "+# "));
        bool cells = t->kind == MQTT_GATEWAY__CELLS;
        CHECK(cells == (t->value == NULL));
        CHECK(!cells || (strstr(t->sub, "{k}") && strstr(t->object, "{k}") && strstr(t->name, "{k}") && !t->every_round));
        if (t->kind == MQTT_GATEWAY__NUMBER || cells)
            CHECK(t->decimals >= 0 && t->decimals <= 6);
        else
            CHECK(t->decimals == -1);
        CHECK(!t->unit || t->kind == MQTT_GATEWAY__NUMBER || cells); /* a unit is a number's */
        CHECK(!t->binary || t->kind == MQTT_GATEWAY__TEXT);
        CHECK(!t->object || (t->name && t->name[0]));
        CHECK(t->scope != MQTT_GATEWAY__SCOPE_PACK || t->when == MQTT_GATEWAY__WHEN_ALWAYS);
        CHECK(t->scope == MQTT_GATEWAY__SCOPE_PACK || !t->pack_availability);
        for (size_t j = 0; j < i; j++) {
            bool same_base = (rows[j].scope == MQTT_GATEWAY__SCOPE_PACK) == (t->scope == MQTT_GATEWAY__SCOPE_PACK);
            if (same_base) {
                CHECK(strcmp(rows[j].sub, t->sub) != 0);
                CHECK(!t->object || !rows[j].object || strcmp(rows[j].object, t->object) != 0);
            }
        }
        /* In the docs: `<p>/<topic>` (bank, charge) or `<topic>` (packs; charge reasons listed
         * by their last part), and the entity. */
        char form[96], tick[128];
        doc_form(t->sub, form, sizeof form);
        if (t->scope == MQTT_GATEWAY__SCOPE_PACK)
            snprintf(tick, sizeof tick, "`%s`", form);
        else
            snprintf(tick, sizeof tick, "`<p>/%s`", form);
        const char *last = strrchr(form, '/');
        char tail[100];
        snprintf(tail, sizeof tail, "`%s`", last ? last + 1 : form);
        if (!strstr(doc, tick) && !(t->scope == MQTT_GATEWAY__SCOPE_CHARGE && strstr(doc, tail))) {
            fprintf(stderr, "  docs/mqtt.md does not list topic %s\n", tick);
            CHECK(false);
        }
        if (t->object) {
            doc_form(t->object, form, sizeof form);
            snprintf(tick, sizeof tick, t->scope == MQTT_GATEWAY__SCOPE_PACK ? "`pack<n>_%s`" : "`%s`", form);
            if (!strstr(doc, tick)) {
                fprintf(stderr, "  docs/mqtt.md does not list entity %s\n", tick);
                CHECK(false);
            }
        }
    }
    CHECK(mqtt_gateway__cells_topic(MQTT_GATEWAY__SCOPE_BANK) != NULL);
    CHECK(mqtt_gateway__cells_topic(MQTT_GATEWAY__SCOPE_PACK) != NULL);
    CHECK(mqtt_gateway__cells_topic(MQTT_GATEWAY__SCOPE_CHARGE) == NULL);

    /* Templates and the sensor of a row. */
    char buf[32];
    CHECK_EQ_INT(mqtt_gateway__expand("cells/{k}/voltage", 12, buf, sizeof buf), GW_OK);
    CHECK_STR(buf, "cells/12/voltage");
    CHECK_EQ_INT(mqtt_gateway__expand("{k}{k}", 3, buf, sizeof buf), GW_OK);
    CHECK_STR(buf, "33");
    CHECK_EQ_INT(mqtt_gateway__expand("cells/{k}/voltage", 12, buf, 8), GW_ERR_OVERFLOW);
    CHECK_STR(buf, "cells/1");
    struct mqtt_gateway__sensor_text text;
    struct mqtt_gateway__sensor sensor;
    mqtt_gateway__topic_sensor(mqtt_gateway__cells_topic(MQTT_GATEWAY__SCOPE_PACK), 2, 7, &text, &sensor);
    CHECK_STR(sensor.object, "pack2_cell_7_voltage");
    CHECK_STR(sensor.name, "Cell 7 voltage");
    CHECK_STR(sensor.state_subtopic, "pack/2/cells/7/voltage");
    CHECK_STR(sensor.avail_subtopic, "pack/2/online");
    CHECK_EQ_INT(sensor.precision, 3);
    mqtt_gateway__topic_sensor(mqtt_gateway__cells_topic(MQTT_GATEWAY__SCOPE_BANK), 0, 4, &text, &sensor);
    CHECK_STR(sensor.object, "cell_4_voltage");
    CHECK_STR(sensor.state_subtopic, "cells/4/voltage");
    CHECK(sensor.avail_subtopic == NULL);
}

/* ---- golden round: every message of fixed scenarios, checked in beside the test */

/* Appends every recorded message to out ("<topic> q<qos> r<retain> <payload>", one a line, the
 * version of the build replaced by @GW_VERSION@) under a "# <section>" line, then forgets them. */
static void golden_take(FILE *out, const char *section)
{
    static const char version[] = "\"gateway " GW_VERSION "\"";
    fprintf(out, "# %s\n", section);
    pthread_mutex_lock(&rec.lock);
    for (size_t i = 0; i < rec.n; i++) {
        const struct rec_msg *m = &rec.m[i];
        fprintf(out, "%s q%d r%d ", m->topic, m->qos, m->retain ? 1 : 0);
        const char *p = m->payload;
        for (const char *hit; (hit = strstr(p, version)) != NULL; p = hit + sizeof version - 1)
            fprintf(out, "%.*s\"gateway @GW_VERSION@\"", (int)(hit - p), p);
        for (; *p; p++) {
            if (*p == '\n')
                fputs("\\n", out);
            else if (*p == '\\')
                fputs("\\\\", out);
            else
                fputc(*p, out);
        }
        fputc('\n', out);
    }
    pthread_mutex_unlock(&rec.lock);
    rec_clear();
}

/* The golden scenarios: one pack (connect, first view, limits sent), an alert, two packs with
 * limits (pack 2 offline), no pack online, stop. */
static char *golden_rounds(void)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out)
        return NULL;
    struct fixture f;
    base_unit_cfg();
    if (fx_start(&f, NULL, NULL)) {
        golden_take(out, "one pack: connected, no view yet");
        struct battery_view *v = one_pack_view();
        send_view(&f, v);
        golden_take(out, "one pack: first view (discovery, data, status)");
        set_limits(v);
        v->limit_outputs = BATTERY_OUTPUT_CAN;
        send_view(&f, v); /* discovery of the charge sensors only: data not due */
        mqtt_gateway__publish_view(f.gw, v);
        mqtt_gateway__publish_status_view(f.gw, v);
        golden_take(out, "one pack: limits sent over CAN");
        struct app_alert a;
        memset(&a, 0, sizeof a);
        snprintf(a.code, sizeof a.code, "OVER_VOLTAGE");
        snprintf(a.message, sizeof a.message, "pack 1: cell 3 high 3.652 V (limit 3.600 V)");
        a.level = ALERT_LEVEL_ERROR;
        a.value = 3.652f;
        a.threshold = 3.6f;
        a.first_seen_ms = 1700000000000LL;
        a.last_seen_ms = 1700000001000LL;
        a.count = 1;
        CHECK(event_bus_publish(f.bus, EVENT_ALERT_RAISED, &a, sizeof a, 1000) == GW_OK);
        CHECK(event_bus_flush(f.bus, 5000) == GW_OK);
        golden_take(out, "one pack: alert raised");
        mqtt_gateway_stop(f.gw);
        golden_take(out, "one pack: stopped");
        free(v);
        fx_stop(&f);
    }
    base_unit_cfg();
    if (fx_start(&f, NULL, NULL)) {
        struct battery_view *v = two_pack_view();
        v->limit_outputs = BATTERY_OUTPUT_CAN | BATTERY_OUTPUT_DBUS;
        set_limits(v);
        send_view(&f, v);
        golden_take(out, "two packs: connected, first view (pack 2 offline, limits sent)");
        v->online_count = 0;
        v->packs[0].state = BATTERY_PACK_OFFLINE;
        v->limits.valid = false;
        v->limit_outputs = 0;
        send_view(&f, v); /* discovery: the charge sensors removed */
        mqtt_gateway__publish_view(f.gw, v);
        mqtt_gateway__publish_status_view(f.gw, v);
        golden_take(out, "two packs: none online, limits not sent");
        mqtt_gateway_stop(f.gw);
        golden_take(out, "two packs: stopped");
        free(v);
        fx_stop(&f);
    }
    fclose(out);
    return text;
}

static void golden_path(char *path, size_t cap)
{
    const char *src = getenv("GW_SOURCE_DIR");
    if (src) {
        snprintf(path, cap, "%s/tests/unit/test_mqtt_gateway.golden.txt", src);
    } else { /* run by hand: beside this source file */
        snprintf(path, cap, "%s", __FILE__);
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, cap - (size_t)(slash ? slash + 1 - path : 0), "test_mqtt_gateway.golden.txt");
    }
}

/* Every topic, payload, QoS and retain flag, and every discovery config, of the golden scenarios
 * as the sink sees them, against tests/unit/test_mqtt_gateway.golden.txt. A change shows up as a
 * diff to review: GW_REGENERATE_GOLDEN=1 ctest -R test_mqtt_gateway rewrites the file
 * (deliberately, never blindly); on a mismatch the output is written to
 * $GW_BUILD_DIR/test_mqtt_gateway.actual.txt for `diff -u`. */
static void test_gateway_golden_round(void)
{
    char *text = golden_rounds();
    CHECK(text != NULL);
    if (!text)
        return;
    char path[1024];
    golden_path(path, sizeof path);
    if (getenv("GW_REGENERATE_GOLDEN")) {
        FILE *w = fopen(path, "w");
        CHECK(w != NULL);
        if (w) {
            fputs(text, w);
            fclose(w);
        }
        free(text);
        return;
    }
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    static char golden[1 << 20];
    size_t n = f ? fread(golden, 1, sizeof golden - 1, f) : 0;
    if (f)
        fclose(f);
    golden[n] = '\0';
    /* The scenarios are not trivial: a broken sink or fixture must not pass as "equal". */
    CHECK(strlen(text) > 10000);
    CHECK(strstr(text, "homeassistant/sensor/gwU/pack2_cell_8_voltage/config q1 r1 {") != NULL);
    if (strcmp(golden, text) != 0) {
        /* First differing line, with its number, then the whole output for diff -u. */
        const char *g = golden, *t = text;
        unsigned line = 1;
        while (*g && *g == *t) {
            if (*g == '\n')
                line++;
            g++;
            t++;
        }
        while (g > golden && g[-1] != '\n') {
            g--;
            t--;
        }
        fprintf(stderr, "  golden differs at line %u:\n  - %.*s\n  + %.*s\n", line, (int)strcspn(g, "\n"), g,
                (int)strcspn(t, "\n"), t);
        const char *build = getenv("GW_BUILD_DIR");
        char actual[1024];
        snprintf(actual, sizeof actual, "%s/test_mqtt_gateway.actual.txt", build ? build : ".");
        FILE *w = fopen(actual, "w");
        if (w) {
            fputs(text, w);
            fclose(w);
            fprintf(stderr, "  diff -u %s %s\n", path, actual);
        }
        CHECK(false);
    }
    free(text);
}

/* The client reports its link to the gateway, which tells the bus (the alert manager listens):
 * a broker that refuses the connection gives one EVENT_MQTT_DISCONNECTED with the reason. */
static pthread_mutex_t link_lock = PTHREAD_MUTEX_INITIALIZER;
static int link_up_events, link_down_events;
static struct app_text link_reason;

static void on_link_event(const struct gw_event *ev, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&link_lock);
    if (ev->id == EVENT_MQTT_CONNECTED) {
        link_up_events++;
    } else if (ev->size == sizeof(struct app_text)) {
        link_down_events++;
        memcpy(&link_reason, ev->payload, sizeof link_reason);
    }
    pthread_mutex_unlock(&link_lock);
}

static void test_gateway_link_events_on_the_bus(void)
{
    base_unit_cfg();
    /* A loopback port nobody listens on: connections are refused at once. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
          getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    close(fd);
    struct gw_config_mqtt m = unit_cfg;
    snprintf(m.broker_uri, sizeof m.broker_uri, "mqtt://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    event_bus_subscribe(bus, EVENT_MQTT_CONNECTED, on_link_event, NULL, "test");
    event_bus_subscribe(bus, EVENT_MQTT_DISCONNECTED, on_link_event, NULL, "test");
    struct mqtt_client *client = NULL;
    CHECK_EQ_INT(mqtt_client_create(&m, NULL, &client), GW_OK);
    struct mqtt_gateway_options opt = { .bus = bus, .get_config = get_cfg, .client = client };
    struct mqtt_gateway *gw = NULL;
    CHECK_EQ_INT(mqtt_gateway_create(&opt, &gw), GW_OK);
    CHECK_EQ_INT(mqtt_gateway_start(gw), GW_OK);
    CHECK_EQ_INT(mqtt_client_start(client), GW_OK);
    int down = 0;
    for (int i = 0; i < 2000 && down == 0; i++) {
        CHECK(event_bus_flush(bus, 5000) == GW_OK);
        pthread_mutex_lock(&link_lock);
        down = link_down_events;
        pthread_mutex_unlock(&link_lock);
        if (!down)
            usleep(5000);
    }
    CHECK_EQ_INT(down, 1);
    pthread_mutex_lock(&link_lock);
    CHECK(link_reason.text[0] != '\0');
    CHECK_EQ_INT(link_up_events, 0);
    pthread_mutex_unlock(&link_lock);
    mqtt_gateway_destroy(gw);
    mqtt_client_destroy(client);
    event_bus_destroy(bus);
}

/* The update service's events reach <p>/update, retained, as {"event","message","time_ms"}. */
static void test_update_events_on_their_topic(void)
{
    base_unit_cfg();
    struct fixture f;
    if (!fx_start(&f, NULL, NULL))
        return;
    const int ids[] = { EVENT_OTA_UPDATE_STARTED, EVENT_OTA_UPDATE_FAILED, EVENT_OTA_UPDATE_COMPLETED,
                        EVENT_OTA_UPDATE_ROLLED_BACK };
    const char *names[] = { "started", "failed", "completed", "rolled_back" };
    for (size_t i = 0; i < 4; i++) {
        struct app_text t = { .text = "1.4.0 refused: the signature does not verify" };
        CHECK(event_bus_publish(f.bus, ids[i], &t, sizeof t, 1000) == GW_OK);
        CHECK(event_bus_flush(f.bus, 5000) == GW_OK);
        CHECK_EQ_INT(count("tb/update"), (int)i + 1);
        const struct rec_msg *m = rec_last("tb/update");
        CHECK(m && m->retain && m->qos == 1);
        cJSON *doc = m ? cJSON_Parse(m->payload) : NULL;
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "event")), names[i]);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "message")),
                  "1.4.0 refused: the signature does not verify");
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(doc, "time_ms")) > 1.7e12);
        cJSON_Delete(doc);
    }
    struct app_text t = { .text = "x" };
    CHECK(event_bus_publish(f.bus, EVENT_OTA_UPDATE_FAILED, &t, 10, 1000) == GW_OK); /* wrong size: ignored */
    CHECK(event_bus_flush(f.bus, 5000) == GW_OK);
    CHECK_EQ_INT(count("tb/update"), 4);
    CHECK(mqtt_gateway__update_event_name(EVENT_BATTERY_UPDATE) == NULL);
    fx_stop(&f);
}

/* When a network event makes the broker connection start over (mqtt_gateway__net_event). */
static void test_network_change_reconnects_only_when_needed(void)
{
    struct mqtt_gateway__net st = { 0 };
    char why[160] = "";
    /* the first address (start-up): the connection being made is fine */
    CHECK(!mqtt_gateway__net_event(&st, true, "192.0.2.7", false, why, sizeof why));
    CHECK(!mqtt_gateway__net_event(&st, true, "192.0.2.7", true, why, sizeof why)); /* the same again */
    /* a new address (DHCP gave another lease, a roam): the old socket is dead, connected or not */
    CHECK(mqtt_gateway__net_event(&st, true, "192.0.2.9", true, why, sizeof why));
    CHECK_STR(why, "the network address changed (192.0.2.7 -> 192.0.2.9)");
    /* down then back with the same address: start over only if the broker was lost meanwhile */
    CHECK(!mqtt_gateway__net_event(&st, false, "", true, why, sizeof why));
    CHECK(!mqtt_gateway__net_event(&st, true, "192.0.2.9", true, why, sizeof why));
    CHECK(!mqtt_gateway__net_event(&st, false, "", false, why, sizeof why));
    CHECK(mqtt_gateway__net_event(&st, true, "192.0.2.9", false, why, sizeof why));
    CHECK_STR(why, "the network is back (192.0.2.9)");
    /* back with another address after a loss: said as the address change */
    CHECK(!mqtt_gateway__net_event(&st, false, "", false, why, sizeof why));
    CHECK(mqtt_gateway__net_event(&st, true, "2001:db8::5", false, why, sizeof why));
    CHECK_STR(why, "the network address changed (192.0.2.9 -> 2001:db8::5)");
    /* an event without an address keeps the one known */
    CHECK(!mqtt_gateway__net_event(&st, true, "", true, why, sizeof why));
    CHECK_STR(st.address, "2001:db8::5");
}

TEST_MAIN(TEST_CASE(test_status_golden), TEST_CASE(test_status_several_and_absent), TEST_CASE(test_conditions_text),
          TEST_CASE(test_number_format), TEST_CASE(test_alert_json), TEST_CASE(test_discovery_json),
          TEST_CASE(test_charge_cap_validation), TEST_CASE(test_alert_command_validation),
          TEST_CASE(test_gateway_one_pack), TEST_CASE(test_gateway_several_packs), TEST_CASE(test_gateway_charge_cap),
          TEST_CASE(test_gateway_options), TEST_CASE(test_gateway_real_client_offline),
          TEST_CASE(test_gateway_golden_round), TEST_CASE(test_topic_table),
          TEST_CASE(test_gateway_link_events_on_the_bus), TEST_CASE(test_network_change_reconnects_only_when_needed),
          TEST_CASE(test_update_events_on_their_topic))
