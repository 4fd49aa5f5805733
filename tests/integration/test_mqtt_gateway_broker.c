/* mqtt_gateway against a real mosquitto: topics and values from battery views (bank, charge,
 * per pack), retain flags and QoS, status JSON, alerts, Home Assistant discovery (bank device,
 * one device per pack, charge sensors only while limits are sent), availability and last will,
 * command topics (off by default, refused without user name, on with one), cmd/charge_cap
 * answered by the real battery service (no effect, then applied), views of the real battery
 * service per pack, broker restart with alerts raised while it was down.
 * argv[1] = mosquitto path. */
#define _GNU_SOURCE
#include "battery_service.h"
#include "mqtt_broker.h"
#include "mqtt_client.h"
#include "mqtt_gateway.h"
#include "mqtt_gateway_internal.h"

#include "app_events.h"
#include "battery_view.h"
#include "charge_control.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_config.h"
#include "gw_error.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *mosquitto_exe = "/usr/sbin/mosquitto";

/* Settings handed to the gateway through its getter; changed by the tests between events. */
static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gw_config_mqtt test_cfg;

static bool get_cfg(struct gw_config_mqtt *out, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&cfg_lock);
    *out = test_cfg;
    pthread_mutex_unlock(&cfg_lock);
    return true;
}

static void set_cfg(const struct gw_config_mqtt *c)
{
    pthread_mutex_lock(&cfg_lock);
    test_cfg = *c;
    pthread_mutex_unlock(&cfg_lock);
}

static void config_changed(struct event_bus *bus)
{
    struct app_config_change ch = { .sections = CONFIG_SECTION_MQTT };
    snprintf(ch.changed, sizeof ch.changed, "mqtt");
    CHECK(event_bus_publish(bus, EVENT_CONFIG_UPDATED, &ch, sizeof ch, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 10000) == GW_OK);
}

static struct gw_config_mqtt base_cfg(uint16_t port, const char *id, const char *prefix)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct gw_config_mqtt m = cfg.mqtt;
    m.enabled = true;
    snprintf(m.broker_uri, sizeof m.broker_uri, "mqtt://127.0.0.1:%u", (unsigned)port);
    snprintf(m.client_id, sizeof m.client_id, "%s", id);
    snprintf(m.topic_prefix, sizeof m.topic_prefix, "%s", prefix);
    m.keepalive_s = 30;
    return m;
}

static struct bms_live_data sample(void)
{
    struct bms_live_data d;
    memset(&d, 0, sizeof d);
    d.valid = true;
    d.wall_time_ms = 1700000000000LL;
    d.cell_count = 4;
    static const uint16_t cells[4] = { 33210, 33250, 33180, 33300 };
    memcpy(d.cell_mv_x10, cells, sizeof cells);
    d.min_cell_mv = 3318;
    d.max_cell_mv = 3330;
    d.min_cell_index = 3;
    d.max_cell_index = 4;
    d.cell_spread_mv_x10 = 120;
    d.pack_voltage_v = 13.294f;
    d.pack_current_a = -12.5f;
    d.temp_dc[0] = 251;           /* board */
    d.temp_present[0] = true;
    d.temp_dc[1] = 283;           /* cell sensor */
    d.temp_present[1] = true;
    d.soc_ppm = 85200000;
    d.soh_raw = 49250;
    d.soh_valid = true;
    d.online_status = BMS_STATUS_DISCHARGING;
    d.balancing_active = 0x8;
    return d;
}

static struct battery_view *one_pack_view(void)
{
    struct battery_view *v = calloc(1, sizeof *v);
    if (!v)
        abort();
    struct bms_live_data d = sample();
    mqtt_gateway__view_from_sample(&d, v);
    return v;
}

static void set_limits(struct battery_view *v)
{
    v->limits.valid = true;
    v->limits.cvl_v = 54.4f;
    v->limits.ccl_a = 80.0f;
    v->limits.dcl_a = 150.0f;
    v->limits.phase = CHARGE_PHASE_BULK;
    snprintf(v->limits.cvl_reason, sizeof v->limits.cvl_reason, "absorption");
    snprintf(v->limits.ccl_reason, sizeof v->limits.ccl_reason, "cell voltage curve");
    snprintf(v->limits.dcl_reason, sizeof v->limits.dcl_reason, "max");
}

/* Three packs: "north" online, "south" offline (old sample), "spare" never seen. */
static struct battery_view *three_pack_view(void)
{
    struct battery_view *v = one_pack_view();
    v->pack_count = 3;
    v->conditions |= BATTERY_COND_PACK_OFFLINE;
    snprintf(v->packs[0].name, sizeof v->packs[0].name, "north");
    struct battery_pack *p = &v->packs[1];
    p->id = 1;
    snprintf(p->name, sizeof p->name, "south");
    p->state = BATTERY_PACK_OFFLINE;
    p->conditions = BATTERY_COND_COMM_LOST;
    p->live = sample();
    p->live.battery_id = 1;
    p->live.pack_voltage_v = 13.1f;
    p = &v->packs[2];
    p->id = 2;
    snprintf(p->name, sizeof p->name, "spare");
    p->state = BATTERY_PACK_NEVER_SEEN;
    return v;
}

static void send_view(struct event_bus *bus, const struct battery_view *v)
{
    CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
}

/* One data round at publish_interval_ms = 1: a view the gateway publishes whatever the timing.
 * Its rate limit lets one view a millisecond through (the next round is due from the
 * millisecond after the last one), and a subscriber on loopback can get a round's message in
 * less than that: the next view, sent at once, fell in the same millisecond and was skipped,
 * so the value it carried never came. *last_ms: gw_now_ms() after the previous round (0 at
 * first); the view goes once the clock has passed it. */
static void send_round(struct event_bus *bus, const struct battery_view *v, uint64_t *last_ms)
{
    while (gw_now_ms() <= *last_ms)
        gw_sleep_ms(1);
    send_view(bus, v);
    *last_ms = gw_now_ms(); /* the view was handled before the flush returned */
}

static struct app_alert alert(const char *code, float value)
{
    struct app_alert a;
    memset(&a, 0, sizeof a);
    snprintf(a.code, sizeof a.code, "%s", code);
    snprintf(a.message, sizeof a.message, "%s at %.3f", code, (double)value);
    a.level = ALERT_LEVEL_WARNING;
    a.value = value;
    a.threshold = 3.65f;
    a.count = 1;
    return a;
}

/* Waits until the newest message on topic carries payload (10 s). */
static void expect(struct test_sub *s, const char *topic, const char *payload)
{
    struct test_msg m;
    uint64_t deadline = test_now_ms() + 10000;
    int n = 0;
    do {
        n = test_sub_wait(s, topic, n + 1, 200, &m);
        if (n >= 1 && strcmp(m.payload, payload) == 0)
            break;
    } while (test_now_ms() < deadline);
    if (n < 1)
        fprintf(stderr, "no message on %s\n", topic);
    else if (strcmp(m.payload, payload) != 0)
        fprintf(stderr, "%s: got \"%s\" want \"%s\"\n", topic, m.payload, payload);
    CHECK(n >= 1);
    CHECK_STR(n >= 1 ? m.payload : "(none)", payload);
}

static cJSON *wait_json(struct test_sub *s, const char *topic, int count, struct test_msg *m)
{
    /* The count-th message on topic (1-based), not merely the newest. */
    if (test_sub_wait(s, topic, count, 10000, NULL) < count || test_sub_get(s, topic, count - 1, m)) {
        fprintf(stderr, "no JSON on %s\n", topic);
        return NULL;
    }
    return cJSON_Parse(m->payload);
}

static double num(const cJSON *obj, const char *a, const char *b)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, a);
    if (b)
        o = cJSON_GetObjectItemCaseSensitive(o, b);
    return cJSON_IsNumber(o) ? o->valuedouble : NAN;
}

static const char *str(const cJSON *obj, const char *a)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, a);
    return cJSON_IsString(o) ? o->valuestring : "";
}

/* ------------------------------------------------------------------ case A: own client */

static void test_topics_status_alerts_discovery(void)
{
    struct test_broker b;
    if (test_broker_init(&b, mosquitto_exe) || test_broker_start(&b, NULL)) {
        CHECK(!"broker start");
        test_broker_cleanup(&b);
        return;
    }
    struct test_sub *sub = test_sub_create(b.port, "#", NULL, NULL);
    CHECK(sub != NULL);
    if (!sub) {
        test_broker_cleanup(&b);
        return;
    }
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct gw_config_mqtt m = base_cfg(b.port, "gwA", "tbA");
    m.commands_enabled = true; /* but no user name: must stay off */
    set_cfg(&m);
    struct mqtt_gateway_options opt = { .bus = bus, .get_config = get_cfg };
    struct mqtt_gateway *gw = NULL;
    CHECK_EQ_INT(mqtt_gateway_create(&opt, &gw), GW_OK);
    CHECK_EQ_INT(mqtt_gateway_start(gw), GW_OK);
    expect(sub, "tbA/availability", "online");

    /* One pack, CAN sending limits. */
    struct battery_view *v = one_pack_view();
    set_limits(v);
    v->limit_outputs = BATTERY_OUTPUT_CAN;
    send_view(bus, v);

    struct test_msg msg;
    cJSON *disc = wait_json(sub, "homeassistant/sensor/gwA/voltage/config", 1, &msg);
    CHECK(disc != NULL);
    CHECK(msg.qos == 1);
    CHECK_STR(str(disc, "device_class"), "voltage");
    CHECK_STR(str(disc, "unit_of_measurement"), "V");
    CHECK_STR(str(disc, "state_topic"), "tbA/voltage");
    CHECK_STR(str(disc, "state_class"), "measurement");
    CHECK_STR(str(disc, "availability_topic"), "tbA/availability");
    CHECK_STR(str(disc, "unique_id"), "gwA_voltage");
    CHECK_STR(str(cJSON_GetObjectItem(disc, "device"), "name"), "TinyBMS");
    cJSON_Delete(disc);
    static const struct {
        const char *object, *device_class, *unit;
    } expected_sensors[] = {
        { "current", "current", "A" },          { "soc", "battery", "%" },
        { "temperature_max", "temperature", "°C" }, { "power", "power", "W" },
        { "cell_voltage_min", "voltage", "V" },  { "charge_ccl", "current", "A" },
    };
    char topic[256];
    for (size_t i = 0; i < sizeof expected_sensors / sizeof expected_sensors[0]; i++) {
        snprintf(topic, sizeof topic, "homeassistant/sensor/gwA/%s/config", expected_sensors[i].object);
        disc = wait_json(sub, topic, 1, &msg);
        CHECK(disc != NULL);
        CHECK_STR(str(disc, "device_class"), expected_sensors[i].device_class);
        CHECK_STR(str(disc, "unit_of_measurement"), expected_sensors[i].unit);
        cJSON_Delete(disc);
    }

    /* Data topics from the view. */
    expect(sub, "tbA/voltage", "13.29");
    expect(sub, "tbA/current", "-12.50");
    expect(sub, "tbA/power", "-166.2");
    expect(sub, "tbA/soc", "85.2");
    expect(sub, "tbA/soh", "98.5");
    expect(sub, "tbA/temperature/max", "28.3"); /* the cell sensor; the board's 25.1 is no cell */
    expect(sub, "tbA/temperature/min", "28.3");
    expect(sub, "tbA/cells/voltage/max", "3.330");
    expect(sub, "tbA/cells/voltage/min", "3.318");
    expect(sub, "tbA/cells/1/voltage", "3.321");
    expect(sub, "tbA/cells/4/voltage", "3.330");
    expect(sub, "tbA/online_status", "discharging");
    expect(sub, "tbA/pack/1/voltage", "13.29");
    expect(sub, "tbA/pack/1/online", "true");
    cJSON *bal = wait_json(sub, "tbA/balancing", 1, &msg);
    CHECK(bal && cJSON_GetArraySize(cJSON_GetObjectItem(bal, "active_cells")) == 1);
    cJSON_Delete(bal);
    CHECK_EQ_INT(test_sub_wait(sub, "tbA/voltage", 1, 100, &msg), 1);
    CHECK_EQ_INT(msg.qos, 0);
    /* Per-cell discovery follows the cell count. */
    disc = wait_json(sub, "homeassistant/sensor/gwA/cell_4_voltage/config", 1, &msg);
    CHECK(disc != NULL);
    CHECK_STR(str(disc, "state_topic"), "tbA/cells/4/voltage");
    cJSON_Delete(disc);

    /* Charge limits from the view. */
    expect(sub, "tbA/charge/cvl", "54.40");
    expect(sub, "tbA/charge/ccl", "80.0");
    expect(sub, "tbA/charge/dcl", "150.0");
    expect(sub, "tbA/charge/ccl_reason", "cell voltage curve");
    expect(sub, "tbA/charge/phase", "bulk");
    expect(sub, "tbA/charge/valid", "true");

    cJSON *status = wait_json(sub, "tbA/status", 1, &msg);
    CHECK(status != NULL);
    CHECK_NEAR(num(status, "timestamp", NULL), 1700000000.0, 0.5);
    CHECK_NEAR(num(status, "battery", "voltage"), 13.29, 1e-9);
    CHECK_NEAR(num(status, "battery", "current"), -12.5, 1e-9);
    CHECK_NEAR(num(status, "battery", "soc"), 85.2, 1e-9);
    CHECK_NEAR(num(status, "cells", "count"), 4, 0);
    CHECK_NEAR(num(status, "cells", "voltage_delta"), 0.012, 1e-9);
    CHECK_NEAR(num(status, "temperature", "sensor_count"), 1, 0);
    CHECK_NEAR(num(status, "temperature", "avg"), 28.3, 1e-9);
    CHECK_NEAR(num(status, "charge", "ccl"), 80.0, 1e-9);
    cJSON_Delete(status);

    /* Retained topics reach a late subscriber with the retain flag; alerts are not retained. */
    struct test_sub *late = test_sub_create(b.port, "tbA/#", NULL, NULL);
    CHECK(late != NULL);
    if (late) {
        CHECK_EQ_INT(test_sub_wait(late, "tbA/voltage", 1, 10000, &msg), 1);
        CHECK(msg.retain);
        CHECK_STR(msg.payload, "13.29");
        CHECK_EQ_INT(test_sub_wait(late, "tbA/status", 1, 10000, &msg), 1);
        CHECK(msg.retain);
        CHECK_EQ_INT(test_sub_wait(late, "tbA/availability", 1, 10000, &msg), 1);
        CHECK(msg.retain);
        CHECK_EQ_INT(test_sub_wait(late, "tbA/pack/1/soc", 1, 10000, &msg), 1);
        CHECK(msg.retain);
        test_sub_destroy(late);
    }

    /* Alerts: QoS 1, not retained, with the event field. */
    struct app_alert a = alert("CELL_OVER_VOLTAGE", 3.671f);
    CHECK(event_bus_publish(bus, EVENT_ALERT_RAISED, &a, sizeof a, 1000) == GW_OK);
    CHECK(event_bus_publish(bus, EVENT_ALERT_CLEARED, &a, sizeof a, 1000) == GW_OK);
    cJSON *aj = wait_json(sub, "tbA/alerts", 1, &msg);
    CHECK(aj != NULL);
    CHECK_EQ_INT(msg.qos, 1);
    CHECK(!msg.retain);
    CHECK_STR(str(aj, "event"), "raised");
    CHECK_STR(str(aj, "code"), "CELL_OVER_VOLTAGE");
    CHECK_NEAR(num(aj, "value", NULL), 3.671, 1e-9);
    cJSON_Delete(aj);
    aj = wait_json(sub, "tbA/alerts", 2, &msg);
    CHECK_STR(str(aj, "event"), "cleared");
    cJSON_Delete(aj);

    /* BMS serial known: discovery re-published with it as the device identifier. */
    struct app_bms_version ver = { .battery_id = 0 };
    ver.version.valid = true;
    ver.version.fw_public = 86;
    snprintf(ver.version.serial, sizeof ver.version.serial, "00112233445566778899AABB");
    CHECK(event_bus_publish(bus, EVENT_BMS_VERSION_UPDATE, &ver, sizeof ver, 1000) == GW_OK);
    disc = wait_json(sub, "homeassistant/sensor/gwA/voltage/config", 2, &msg);
    CHECK(disc != NULL);
    CHECK(strstr(msg.payload, "tinybms_00112233445566778899AABB") != NULL);
    cJSON_Delete(disc);

    /* Commands were asked for but there is no user name: nothing subscribed. */
    CHECK_EQ_INT(test_sub_publish(sub, "tbA/cmd/alerts/ack", "all", false), 0);
    struct mqtt_gateway_stats gs;
    /* The gateway's reply would come on tbA/cmd/result; the test's own publish is echoed first
     * (same broker, same subscriber), so seeing it proves the broker routed the command. */
    CHECK_EQ_INT(test_sub_wait(sub, "tbA/cmd/alerts/ack", 1, 10000, NULL), 1);
    mqtt_gateway_get_stats(gw, &gs);
    CHECK_EQ_INT(gs.commands_accepted + gs.commands_rejected, 0);

    /* ha_discovery off at run time: empty retained configs remove the entities. */
    m.ha_discovery = false;
    set_cfg(&m);
    config_changed(bus);
    CHECK_EQ_INT(test_sub_wait(sub, "homeassistant/sensor/gwA/voltage/config", 3, 10000, &msg), 3);
    CHECK_EQ_INT(msg.len, 0);
    expect(sub, "homeassistant/sensor/gwA/charge_ccl/config", "");

    /* Disabled: no more data rounds. */
    mqtt_gateway_set_enabled(gw, false);
    mqtt_gateway_get_stats(gw, &gs);
    uint64_t before = gs.samples_published;
    v->voltage_v = 14.0f;
    send_view(bus, v);
    mqtt_gateway_get_stats(gw, &gs);
    CHECK_EQ_INT(gs.samples_published, before);

    /* New prefix at run time: the own client reconnects with the new last will, the old
     * availability topic is deleted (empty retained), the new one says online. */
    snprintf(m.topic_prefix, sizeof m.topic_prefix, "tbA2");
    set_cfg(&m);
    config_changed(bus);
    expect(sub, "tbA2/availability", "online");
    expect(sub, "tbA/availability", "");
    /* The reconnection was clean: the old connection's will did not fire afterwards. */
    CHECK(test_broker_log_contains(&b, "Received DISCONNECT from gwA", 5000));
    mqtt_gateway_set_enabled(gw, true);
    v->voltage_v = 14.5f;
    send_view(bus, v);
    expect(sub, "tbA2/voltage", "14.50");

    /* Stop: availability goes offline (published by us, retained). */
    mqtt_gateway_stop(gw);
    expect(sub, "tbA2/availability", "offline");
    mqtt_gateway_destroy(gw);
    free(v);
    test_sub_destroy(sub);
    event_bus_destroy(bus);
    test_broker_cleanup(&b);
}

/* ------------------------------------------------------------------ several packs */

/* Retained state of one topic as a late subscriber sees it. */
static void expect_retained(struct test_sub *late, const char *topic, const char *payload)
{
    struct test_msg msg;
    int n = test_sub_wait(late, topic, 1, 10000, &msg);
    if (n < 1)
        fprintf(stderr, "no retained message on %s\n", topic);
    CHECK(n >= 1);
    CHECK(n < 1 || msg.retain);
    CHECK_STR(n >= 1 ? msg.payload : "(none)", payload);
}

static void test_packs_topics_and_discovery(void)
{
    struct test_broker b;
    if (test_broker_init(&b, mosquitto_exe) || test_broker_start(&b, NULL)) {
        CHECK(!"broker start");
        test_broker_cleanup(&b);
        return;
    }
    struct test_sub *sub = test_sub_create(b.port, "#", NULL, NULL);
    CHECK(sub != NULL);
    if (!sub) {
        test_broker_cleanup(&b);
        return;
    }
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct gw_config_mqtt m = base_cfg(b.port, "gwP", "tbP");
    m.publish_interval_ms = 1; /* every view is a round */
    set_cfg(&m);
    struct mqtt_gateway_options opt = { .bus = bus, .get_config = get_cfg };
    struct mqtt_gateway *gw = NULL;
    CHECK_EQ_INT(mqtt_gateway_create(&opt, &gw), GW_OK);
    CHECK_EQ_INT(mqtt_gateway_start(gw), GW_OK);
    expect(sub, "tbP/availability", "online");

    struct battery_view *v = three_pack_view(); /* no output sends limits */
    uint64_t round_ms = 0;
    send_round(bus, v, &round_ms);
    expect(sub, "tbP/pack/3/status", "never seen");

    struct test_sub *late = test_sub_create(b.port, "tbP/#", NULL, NULL);
    CHECK(late != NULL);
    if (late) {
        expect_retained(late, "tbP/pack_count", "3");
        expect_retained(late, "tbP/online_count", "1");
        expect_retained(late, "tbP/conditions", "pack offline");
        expect_retained(late, "tbP/voltage", "13.29");
        expect_retained(late, "tbP/pack/1/name", "north");
        expect_retained(late, "tbP/pack/1/online", "true");
        expect_retained(late, "tbP/pack/1/voltage", "13.29");
        expect_retained(late, "tbP/pack/1/cells/2/voltage", "3.325");
        expect_retained(late, "tbP/pack/1/temperature/min", "28.3");
        expect_retained(late, "tbP/pack/2/name", "south");
        expect_retained(late, "tbP/pack/2/status", "offline");
        expect_retained(late, "tbP/pack/2/online", "false");
        expect_retained(late, "tbP/pack/2/conditions", "communication lost");
        expect_retained(late, "tbP/pack/2/voltage", "None"); /* its 13.10 is not fresh */
        expect_retained(late, "tbP/pack/2/cells/1/voltage", "None");
        expect_retained(late, "tbP/pack/3/online", "false");
        expect_retained(late, "tbP/pack/3/soc", "None");
        expect_retained(late, "tbP/charge/valid", "false");
        expect_retained(late, "tbP/charge/ccl", "None");
        /* With several packs the bank has no per-cell topics; pack 3 no cells at all. */
        CHECK_EQ_INT(test_sub_count(late, "tbP/cells/1/voltage"), 0);
        CHECK_EQ_INT(test_sub_count(late, "tbP/pack/3/cells/1/voltage"), 0);
        test_sub_destroy(late);
    }

    /* Discovery: the bank and one device per pack named after it. */
    struct test_msg msg;
    cJSON *disc = wait_json(sub, "homeassistant/sensor/gwP/voltage/config", 1, &msg);
    CHECK_STR(str(cJSON_GetObjectItem(disc, "device"), "name"), "TinyBMS bank");
    cJSON_Delete(disc);
    disc = wait_json(sub, "homeassistant/sensor/gwP/pack2_soc/config", 1, &msg);
    CHECK(disc != NULL);
    CHECK_STR(str(disc, "state_topic"), "tbP/pack/2/soc");
    CHECK_STR(str(disc, "availability_mode"), "all");
    CHECK_STR(str(cJSON_GetObjectItem(disc, "device"), "name"), "south");
    CHECK_STR(str(cJSON_GetObjectItem(disc, "device"), "via_device"), "gwP");
    cJSON_Delete(disc);
    disc = wait_json(sub, "homeassistant/binary_sensor/gwP/pack3_online/config", 1, &msg);
    CHECK(disc != NULL);
    CHECK_STR(str(cJSON_GetObjectItem(disc, "device"), "name"), "spare");
    CHECK_STR(str(disc, "payload_on"), "true");
    cJSON_Delete(disc);
    disc = wait_json(sub, "homeassistant/sensor/gwP/pack1_cell_4_voltage/config", 1, &msg);
    CHECK(disc != NULL);
    cJSON_Delete(disc);
    /* Discovery is published before the data of the same view: the pack 3 state arrived after
     * every config of that round, so absent configs are really absent. */
    CHECK_EQ_INT(test_sub_count(sub, "homeassistant/sensor/gwP/charge_ccl/config"), 0);
    CHECK_EQ_INT(test_sub_count(sub, "homeassistant/sensor/gwP/cell_1_voltage/config"), 0);
    CHECK_EQ_INT(test_sub_count(sub, "homeassistant/sensor/gwP/pack3_cell_1_voltage/config"), 0);

    /* CAN starts sending limits: the charge sensors appear, with values. */
    set_limits(v);
    v->limit_outputs = BATTERY_OUTPUT_CAN;
    send_round(bus, v, &round_ms);
    disc = wait_json(sub, "homeassistant/sensor/gwP/charge_ccl/config", 1, &msg);
    CHECK(disc != NULL);
    CHECK_STR(str(disc, "state_topic"), "tbP/charge/ccl");
    cJSON_Delete(disc);
    expect(sub, "tbP/charge/ccl", "80.0");

    /* South comes back: fresh values, then drops again: "None". */
    v->packs[1].state = BATTERY_PACK_ONLINE;
    v->online_count = 2;
    send_round(bus, v, &round_ms);
    expect(sub, "tbP/pack/2/voltage", "13.10");
    expect(sub, "tbP/pack/2/online", "true");
    v->packs[1].state = BATTERY_PACK_OFFLINE;
    v->online_count = 1;
    send_round(bus, v, &round_ms);
    expect(sub, "tbP/pack/2/voltage", "None");

    /* CAN stops: the charge sensors are removed (empty retained config). */
    v->limit_outputs = 0;
    v->limits.valid = false;
    send_round(bus, v, &round_ms);
    expect(sub, "homeassistant/sensor/gwP/charge_ccl/config", "");
    expect(sub, "tbP/charge/ccl", "None");

    mqtt_gateway_destroy(gw);
    free(v);
    test_sub_destroy(sub);
    event_bus_destroy(bus);
    test_broker_cleanup(&b);
}

/* The broker publishes the last will when the gateway process dies. */
static void test_last_will_on_crash(void)
{
    struct test_broker b;
    if (test_broker_init(&b, mosquitto_exe) || test_broker_start(&b, NULL)) {
        CHECK(!"broker start");
        test_broker_cleanup(&b);
        return;
    }
    struct test_sub *sub = test_sub_create(b.port, "tbW/availability", NULL, NULL);
    CHECK(sub != NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: a gateway that gets SIGKILLed once connected. */
        struct event_bus *bus = NULL;
        if (event_bus_create(NULL, &bus) != GW_OK)
            _exit(2);
        struct gw_config_mqtt m = base_cfg(b.port, "gwW", "tbW");
        m.ha_discovery = false;
        set_cfg(&m);
        struct mqtt_gateway_options opt = { .bus = bus, .get_config = get_cfg };
        struct mqtt_gateway *gw = NULL;
        if (mqtt_gateway_create(&opt, &gw) != GW_OK || mqtt_gateway_start(gw) != GW_OK)
            _exit(3);
        for (;;)
            pause();
    }
    CHECK(pid > 0);
    if (sub && pid > 0) {
        expect(sub, "tbW/availability", "online");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        struct test_msg msg;
        CHECK_EQ_INT(test_sub_wait(sub, "tbW/availability", 2, 15000, &msg), 2);
        CHECK_STR(msg.payload, "offline");
    } else if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    test_sub_destroy(sub);
    test_broker_cleanup(&b);
}

/* ------------------------------------------------------------------ case B: external client */

struct recorder {
    pthread_mutex_t lock;
    int alert_cmds;
    struct app_alert_command last_alert_cmd;
    int caps;
};

static void on_cmd_event(const struct gw_event *ev, void *ctx)
{
    struct recorder *r = ctx;
    pthread_mutex_lock(&r->lock);
    if (ev->id == EVENT_ALERT_COMMAND && ev->size == sizeof r->last_alert_cmd) {
        r->alert_cmds++;
        memcpy(&r->last_alert_cmd, ev->payload, ev->size);
    } else if (ev->id == EVENT_CHARGE_CAP_REQUEST) {
        r->caps++;
    }
    pthread_mutex_unlock(&r->lock);
}

/* Sends a command until the gateway answers on <prefix>/cmd/result (its subscription is
 * asynchronous); returns the parsed result or NULL. */
static cJSON *command_on(struct test_sub *sub, const char *prefix, const char *topic, const char *payload)
{
    char result[128];
    snprintf(result, sizeof result, "%s/cmd/result", prefix);
    uint64_t deadline = test_now_ms() + 15000;
    int before = test_sub_count(sub, result);
    while (test_now_ms() < deadline) {
        if (test_sub_publish(sub, topic, payload, false) != 0)
            return NULL;
        struct test_msg m;
        if (test_sub_wait(sub, result, before + 1, 1000, &m) > before)
            return cJSON_Parse(m.payload);
    }
    return NULL;
}

static cJSON *command(struct test_sub *sub, const char *topic, const char *payload)
{
    return command_on(sub, "tbB", topic, payload);
}

/* A broker that knows gwuser/pw1 (the gateway) and tester/pw2 (the test). */
static int start_auth_broker(struct test_broker *b)
{
    if (test_broker_init(b, mosquitto_exe))
        return -1;
    if (test_sh("mosquitto_passwd -c -b '%s/passwd' gwuser pw1 >/dev/null 2>&1 && "
                "mosquitto_passwd -b '%s/passwd' tester pw2 >/dev/null 2>&1",
                b->dir, b->dir) != 0)
        return -1;
    char extra[256];
    snprintf(extra, sizeof extra, "allow_anonymous false\npassword_file %s/passwd", b->dir);
    return test_broker_start(b, extra);
}

static void test_commands_and_restart(void)
{
    struct test_broker b;
    if (start_auth_broker(&b)) {
        CHECK(!"broker start");
        test_broker_cleanup(&b);
        return;
    }
    struct test_sub *sub = test_sub_create(b.port, "tbB/#", "tester", "pw2");
    CHECK(sub != NULL);
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct recorder rec = { .lock = PTHREAD_MUTEX_INITIALIZER };
    event_bus_subscribe(bus, EVENT_ALERT_COMMAND, on_cmd_event, &rec, "test");
    event_bus_subscribe(bus, EVENT_CHARGE_CAP_REQUEST, on_cmd_event, &rec, "test");

    struct gw_config_mqtt m = base_cfg(b.port, "gwB", "tbB");
    snprintf(m.username, sizeof m.username, "gwuser");
    snprintf(m.password, sizeof m.password, "pw1");
    m.ha_discovery = false;
    set_cfg(&m);
    char will_topic[128];
    CHECK_EQ_INT(mqtt_gateway_availability_topic(m.topic_prefix, will_topic, sizeof will_topic), GW_OK);
    struct mqtt_client_will will = { .topic = will_topic, .payload = "offline", .qos = 1, .retain = true };
    struct mqtt_client *client = NULL;
    CHECK_EQ_INT(mqtt_client_create(&m, &will, &client), GW_OK);
    if (!sub || !client) {
        mqtt_client_destroy(client);
        test_sub_destroy(sub);
        event_bus_destroy(bus);
        test_broker_cleanup(&b);
        return;
    }
    /* The test's own subscriptions on the gateway's connection: the command echo is a barrier
     * (subscription callbacks of one message run together), alerts prove the offline queue. */
    struct inbox cmd_seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct inbox alerts = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CHECK_EQ_INT(mqtt_client_subscribe(client, "tbB/cmd/alerts/#", 1, inbox_cb, &cmd_seen), GW_OK);
    CHECK_EQ_INT(mqtt_client_subscribe(client, "tbB/alerts", 1, inbox_cb, &alerts), GW_OK);
    /* No charge-cap callback: a daemon without battery service. */
    struct mqtt_gateway_options opt = { .bus = bus, .get_config = get_cfg, .client = client };
    struct mqtt_gateway *gw = NULL;
    CHECK_EQ_INT(mqtt_gateway_create(&opt, &gw), GW_OK);
    CHECK_EQ_INT(mqtt_gateway_start(gw), GW_OK);
    CHECK_EQ_INT(mqtt_client_start(client), GW_OK);
    expect(sub, "tbB/availability", "online");

    /* Off by default: the command reaches the connection but nothing acts on it. */
    CHECK_EQ_INT(test_sub_publish(sub, "tbB/cmd/alerts/ack", "all", false), 0);
    CHECK_EQ_INT(inbox_wait(&cmd_seen, 1, 10000), 1);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    pthread_mutex_lock(&rec.lock);
    CHECK_EQ_INT(rec.alert_cmds, 0);
    pthread_mutex_unlock(&rec.lock);
    CHECK_EQ_INT(test_sub_count(sub, "tbB/cmd/result"), 0);

    /* On, with a user name. */
    m.commands_enabled = true;
    set_cfg(&m);
    config_changed(bus);
    cJSON *r = command(sub, "tbB/cmd/alerts/ack", "all");
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
    cJSON_Delete(r);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    pthread_mutex_lock(&rec.lock);
    CHECK(rec.alert_cmds >= 1);
    CHECK_EQ_INT(rec.last_alert_cmd.op, ALERT_OP_ACK_ALL);
    CHECK_STR(rec.last_alert_cmd.source, "mqtt");
    pthread_mutex_unlock(&rec.lock);

    r = command(sub, "tbB/cmd/alerts/ack", "CELL_OVER_VOLTAGE");
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
    cJSON_Delete(r);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    pthread_mutex_lock(&rec.lock);
    CHECK_EQ_INT(rec.last_alert_cmd.op, ALERT_OP_ACK);
    CHECK_STR(rec.last_alert_cmd.code, "CELL_OVER_VOLTAGE");
    pthread_mutex_unlock(&rec.lock);

    /* No battery service behind the gateway: the cap is answered, and nothing pretends. */
    r = command(sub, "tbB/cmd/charge_cap", "{\"ccl_a\":20,\"dcl_a\":null,\"duration_s\":7200}");
    CHECK(r && cJSON_IsFalse(cJSON_GetObjectItem(r, "ok")));
    CHECK(r && cJSON_IsFalse(cJSON_GetObjectItem(r, "applied")));
    CHECK_STR(r ? str(r, "answer") : "", "no effect: no battery service");
    cJSON_Delete(r);

    r = command(sub, "tbB/cmd/charge_cap", "{\"ccl_a\":-3,\"duration_s\":60}");
    CHECK(r && cJSON_IsFalse(cJSON_GetObjectItem(r, "ok")));
    CHECK(r && strstr(str(r, "error"), "ccl_a") != NULL);
    cJSON_Delete(r);
    r = command(sub, "tbB/cmd/alerts/clear", "everything");
    CHECK(r && cJSON_IsFalse(cJSON_GetObjectItem(r, "ok")));
    cJSON_Delete(r);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    pthread_mutex_lock(&rec.lock);
    CHECK_EQ_INT(rec.caps, 0); /* caps never go on the bus any more */
    pthread_mutex_unlock(&rec.lock);

    /* Commands on, but the user name removed from the settings: refused again. */
    m.username[0] = '\0';
    set_cfg(&m);
    config_changed(bus);
    struct mqtt_gateway_stats gs;
    mqtt_gateway_get_stats(gw, &gs);
    uint64_t handled = gs.commands_accepted + gs.commands_rejected;
    pthread_mutex_lock(&cmd_seen.lock);
    int seen = cmd_seen.count;
    pthread_mutex_unlock(&cmd_seen.lock);
    CHECK_EQ_INT(test_sub_publish(sub, "tbB/cmd/alerts/ack", "all", false), 0);
    CHECK(inbox_wait(&cmd_seen, seen + 1, 10000) >= seen + 1);
    mqtt_gateway_get_stats(gw, &gs);
    CHECK_EQ_INT(gs.commands_accepted + gs.commands_rejected, handled);

    /* Broker killed: alerts raised meanwhile wait in the offline queue and arrive, in order,
     * once the client reconnected by itself. */
    test_broker_stop(&b, true);
    uint64_t deadline = test_now_ms() + 10000;
    while (mqtt_client_is_connected(client) && test_now_ms() < deadline)
        usleep(10000);
    CHECK(!mqtt_client_is_connected(client));
    struct app_alert a1 = alert("PACK_LOW", 44.0f), a2 = alert("TEMP_HIGH", 51.5f);
    CHECK(event_bus_publish(bus, EVENT_ALERT_RAISED, &a1, sizeof a1, 1000) == GW_OK);
    CHECK(event_bus_publish(bus, EVENT_ALERT_RAISED, &a2, sizeof a2, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    struct mqtt_client_stats cs;
    mqtt_client_get_stats(client, &cs);
    CHECK_EQ_INT(cs.queue_depth, 2);
    CHECK_EQ_INT(test_broker_start(&b, NULL), 0); /* same port, same password file */
    CHECK_EQ_INT(inbox_wait(&alerts, 2, 60000), 2);
    CHECK(strstr(alerts.payloads[0], "PACK_LOW") != NULL);
    CHECK(strstr(alerts.payloads[1], "TEMP_HIGH") != NULL);
    CHECK(strstr(alerts.payloads[0], "\"event\":\"raised\"") != NULL);
    /* The gateway announced itself again (retained: a new subscriber gets it at once). */
    struct test_sub *after = test_sub_create(b.port, "tbB/availability", "tester", "pw2");
    CHECK(after != NULL);
    if (after) {
        struct test_msg msg;
        CHECK_EQ_INT(test_sub_wait(after, "tbB/availability", 1, 10000, &msg), 1);
        CHECK_STR(msg.payload, "online");
        test_sub_destroy(after);
    }

    mqtt_gateway_destroy(gw);
    mqtt_client_destroy(client);
    test_sub_destroy(sub);
    event_bus_destroy(bus);
    test_broker_cleanup(&b);
}

/* ------------------------------------------------------------------ with the battery service */

/* What the daemon passes as the charge-cap callback. */
static int request_cap(void *ctx, const struct app_charge_cap *cap, char *answer, size_t len)
{
    return battery_service_request_cap(ctx, cap, answer, len);
}

/* A plausible sample of pack `id` (4 LFP cells); lifetime advances so it is never frozen. */
static void feed(struct event_bus *bus, uint8_t id, uint32_t lifetime_s, float pack_v)
{
    struct bms_live_data d = sample();
    d.battery_id = id;
    d.timestamp_ms = 0;
    d.lifetime_s = lifetime_s;
    d.pack_voltage_v = pack_v;
    CHECK(event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &d, sizeof d, 1000) == GW_OK);
}

/* Feeds pack 0 (and pack 1 when both) every 200 ms until the newest message on topic carries
 * payload or 20 s passed. */
static bool feed_until(struct event_bus *bus, struct test_sub *sub, bool both, uint32_t *lifetime,
                       const char *topic, const char *payload)
{
    uint64_t deadline = test_now_ms() + 20000;
    struct test_msg m;
    while (test_now_ms() < deadline) {
        feed(bus, 0, ++*lifetime, 13.294f);
        if (both)
            feed(bus, 1, *lifetime, 13.30f);
        /* Paced by the gateway's rounds: wait for the next message on topic (200 ms at most). */
        int n = test_sub_count(sub, topic);
        test_sub_wait(sub, topic, n + 1, 200, NULL);
        if (test_sub_wait(sub, topic, 1, 0, &m) >= 1 && strcmp(m.payload, payload) == 0)
            return true;
    }
    fprintf(stderr, "%s never became \"%s\"\n", topic, payload);
    return false;
}

static void test_battery_service_views_and_cap(void)
{
    struct test_broker b;
    if (start_auth_broker(&b)) {
        CHECK(!"broker start");
        test_broker_cleanup(&b);
        return;
    }
    struct test_sub *sub = test_sub_create(b.port, "#", "tester", "pw2");
    CHECK(sub != NULL);
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);

    /* The real battery service, two packs, quick to call a silent pack stale. */
    struct battery_service_options bo = { .bus = bus };
    battery_engine_default_config(&bo.engine);
    bo.engine.pack_count = 2;
    bo.engine.packs[0].id = 0;
    snprintf(bo.engine.packs[0].name, sizeof bo.engine.packs[0].name, "north");
    bo.engine.packs[1].id = 1;
    snprintf(bo.engine.packs[1].name, sizeof bo.engine.packs[1].name, "south");
    bo.engine.stale_after_ms = 1500;
    bo.engine.offline_after_ms = 60000;
    struct battery_service *bs = NULL;
    CHECK_EQ_INT(battery_service_create(&bo, &bs), GW_OK);
    if (!sub || !bs) {
        battery_service_destroy(bs);
        test_sub_destroy(sub);
        event_bus_destroy(bus);
        test_broker_cleanup(&b);
        return;
    }

    struct gw_config_mqtt m = base_cfg(b.port, "gwS", "tbS");
    snprintf(m.username, sizeof m.username, "gwuser");
    snprintf(m.password, sizeof m.password, "pw1");
    m.commands_enabled = true;
    m.publish_interval_ms = 100;
    set_cfg(&m);
    struct mqtt_gateway_options opt = { .bus = bus, .get_config = get_cfg, .charge_cap = request_cap,
                                        .charge_cap_ctx = bs };
    struct mqtt_gateway *gw = NULL;
    CHECK_EQ_INT(mqtt_gateway_create(&opt, &gw), GW_OK);
    CHECK_EQ_INT(mqtt_gateway_start(gw), GW_OK);
    CHECK_EQ_INT(battery_service_start(bs), GW_OK);
    expect(sub, "tbS/availability", "online");

    /* Both packs report: both online, named, with their own values. */
    uint32_t lifetime = 1000;
    CHECK(feed_until(bus, sub, true, &lifetime, "tbS/online_count", "2"));
    expect(sub, "tbS/pack/1/name", "north");
    expect(sub, "tbS/pack/2/name", "south");
    expect(sub, "tbS/pack/2/online", "true");
    expect(sub, "tbS/pack/2/voltage", "13.30");
    expect(sub, "tbS/pack/1/voltage", "13.29");
    expect(sub, "tbS/pack_count", "2");
    struct test_msg msg;
    cJSON *disc = wait_json(sub, "homeassistant/sensor/gwS/pack2_voltage/config", 1, &msg);
    CHECK(disc != NULL);
    CHECK_STR(str(cJSON_GetObjectItem(disc, "device"), "name"), "south");
    cJSON_Delete(disc);
    /* No output sends limits yet: no charge sensors. */
    CHECK_EQ_INT(test_sub_count(sub, "homeassistant/sensor/gwS/charge_ccl/config"), 0);

    /* The cap with no output sending limits: stored, answered "no effect". */
    static const char cap[] = "{\"ccl_a\":20,\"dcl_a\":null,\"duration_s\":7200}";
    cJSON *r = command_on(sub, "tbS", "tbS/cmd/charge_cap", cap);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
    CHECK(r && cJSON_IsFalse(cJSON_GetObjectItem(r, "applied")));
    CHECK_STR(r ? str(r, "answer") : "", "no effect: no output sends limits");
    cJSON_Delete(r);

    /* CAN starts sending limits: the charge sensors are announced; the cap now applies. */
    battery_service_set_limit_outputs(bs, BATTERY_OUTPUT_CAN);
    disc = wait_json(sub, "homeassistant/sensor/gwS/charge_ccl/config", 1, &msg);
    CHECK(disc != NULL);
    cJSON_Delete(disc);
    expect(sub, "tbS/charge/outputs", "can");
    r = command_on(sub, "tbS", "tbS/cmd/charge_cap", cap);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r, "applied")));
    CHECK_STR(r ? str(r, "answer") : "", "applied");
    cJSON_Delete(r);
    struct battery_service_stats bst;
    battery_service_get_stats(bs, &bst);
    CHECK_EQ_INT(bst.caps_applied, 1);
    CHECK_EQ_INT(bst.caps_without_effect, 1);

    /* South falls silent: stale, its values "None" (never its last sample as if fresh). */
    CHECK(feed_until(bus, sub, false, &lifetime, "tbS/pack/2/online", "false"));
    expect(sub, "tbS/pack/2/status", "stale");
    expect(sub, "tbS/pack/2/voltage", "None");
    expect(sub, "tbS/online_count", "1");
    expect(sub, "tbS/pack/1/online", "true");

    /* CAN stops: the charge sensors go away again. */
    battery_service_set_limit_outputs(bs, 0);
    expect(sub, "homeassistant/sensor/gwS/charge_ccl/config", "");

    battery_service_stop(bs);
    mqtt_gateway_destroy(gw);
    battery_service_destroy(bs);
    test_sub_destroy(sub);
    event_bus_destroy(bus);
    test_broker_cleanup(&b);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        mosquitto_exe = argv[1];
    static const struct test_case_ cases[] = {
        TEST_CASE(test_topics_status_alerts_discovery),
        TEST_CASE(test_packs_topics_and_discovery),
        TEST_CASE(test_last_will_on_crash),
        TEST_CASE(test_commands_and_restart),
        TEST_CASE(test_battery_service_views_and_cap),
    };
    return test_run_(cases, sizeof cases / sizeof cases[0]);
}
