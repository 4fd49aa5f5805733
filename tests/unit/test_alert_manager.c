/* Alert manager service on a real event bus: battery views in (one pack, several packs),
 * EVENT_ALERT_* out, JSON, commands, config reload, SQLite history across a restart. */
#define _POSIX_C_SOURCE 200809L
#include "alert_manager.h"
#include "battery_view.h"
#include "event_bus.h"
#include "fake_clock.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "support/wait.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

struct seen_alerts {
    pthread_mutex_t lock;
    struct app_alert raised[256];
    int n_raised;
    struct app_alert cleared[256];
    int n_cleared;
};

static void on_alert(const struct gw_event *ev, void *ctx)
{
    struct seen_alerts *s = ctx;
    struct app_alert a;
    memcpy(&a, ev->payload, sizeof a);
    pthread_mutex_lock(&s->lock);
    if (ev->id == EVENT_ALERT_RAISED && s->n_raised < 256)
        s->raised[s->n_raised++] = a;
    if (ev->id == EVENT_ALERT_CLEARED && s->n_cleared < 256)
        s->cleared[s->n_cleared++] = a;
    pthread_mutex_unlock(&s->lock);
}

static int count_code(struct seen_alerts *s, bool raised, const char *code)
{
    int n = 0;
    pthread_mutex_lock(&s->lock);
    int total = raised ? s->n_raised : s->n_cleared;
    for (int i = 0; i < total; i++)
        if (strcmp((raised ? s->raised : s->cleared)[i].code, code) == 0)
            n++;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Polls until count_code reaches want or 10 s pass (generous: loaded CI machine). */
static bool wait_code(struct seen_alerts *s, bool raised, const char *code, int want)
{
    bool ok;
    WAIT_FOR(ok, count_code(s, raised, code) >= want, 10000);
    return ok;
}

static struct gw_config_alerts test_cfg(void)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    cfg.alerts.raise_delay_ms = 0;
    cfg.alerts.clear_delay_ms = 0;
    cfg.alerts.status_alerts = false;
    cfg.alerts.pack_v_low.enabled = false;     /* a 4-cell test pack */
    cfg.alerts.cell_imbalance.enabled = false;
    return cfg.alerts;
}

static struct gw_config_alerts getter_cfg;
static int get_cfg(void *ctx, struct gw_config_alerts *out)
{
    (void)ctx;
    *out = getter_cfg;
    return GW_OK;
}

static struct bms_live_data sample(uint16_t cell3_mv_x10)
{
    struct bms_live_data d;
    memset(&d, 0, sizeof d);
    d.valid = true;
    d.cell_count = 4;
    for (int i = 0; i < 4; i++)
        d.cell_mv_x10[i] = 33000;
    d.cell_mv_x10[2] = cell3_mv_x10;
    d.pack_voltage_v = 13.2f;
    d.soc_ppm = 50000000;
    d.online_status = BMS_STATUS_IDLE;
    d.temp_dc[0] = 200;
    d.temp_present[0] = true;
    return d;
}

/* A bank of n packs (ids 0..n-1, "pack 1".."pack n") each carrying sample(33000), all online.
 * Caller frees. */
static struct battery_view *make_view(unsigned n)
{
    struct battery_view *v = calloc(1, sizeof *v);
    v->pack_count = (uint8_t)n;
    v->online_count = (uint8_t)n;
    v->soc_pct = 50.0f;
    v->voltage_v = 13.2f;
    v->online_status = BMS_STATUS_IDLE;
    for (unsigned i = 0; i < n; i++) {
        struct battery_pack *p = &v->packs[i];
        p->id = (uint8_t)i;
        snprintf(p->name, sizeof p->name, "pack %u", i + 1);
        p->state = BATTERY_PACK_ONLINE;
        p->live = sample(33000);
        p->live.battery_id = (uint8_t)i;
    }
    return v;
}

static void publish_view(struct event_bus *bus, struct battery_view *v)
{
    v->seq++;
    CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
}

static cJSON *find_code(cJSON *arr, const char *code)
{
    cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        cJSON *c = cJSON_GetObjectItem(it, "code");
        if (cJSON_IsString(c) && strcmp(c->valuestring, code) == 0)
            return it;
    }
    return NULL;
}

static void test_service_end_to_end(void)
{
    char dir[] = "/tmp/gw_alerts_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    static struct seen_alerts seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
    event_bus_subscribe(bus, EVENT_ALERT_RAISED, on_alert, &seen, "test");
    event_bus_subscribe(bus, EVENT_ALERT_CLEARED, on_alert, &seen, "test");

    getter_cfg = test_cfg();
    struct alert_manager_options opt = { .bus = bus, .data_dir = dir, .config = test_cfg(), .get_config = get_cfg,
                                         .tick_ms = 20 };
    struct alert_manager *am = NULL;
    CHECK_EQ_INT(alert_manager_create(&opt, &am), GW_OK);
    if (!am)
        return;

    /* a view whose first pack has a cell over the threshold: EVENT_ALERT_RAISED on the bus */
    struct battery_view *v = make_view(2);
    v->packs[0].live = sample(36520);
    publish_view(bus, v);
    CHECK(wait_code(&seen, true, "OVER_VOLTAGE", 1));
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    pthread_mutex_lock(&seen.lock);
    for (int i = 0; i < seen.n_raised; i++)
        if (strcmp(seen.raised[i].code, "OVER_VOLTAGE") == 0) {
            CHECK_STR(seen.raised[i].message, "pack 1: cell 3 high 3.652 V (limit 3.600 V)");
            CHECK_EQ_INT(seen.raised[i].level, ALERT_LEVEL_ERROR);
            CHECK_EQ_INT(seen.raised[i].battery_id, 0);
            CHECK_EQ_INT(seen.raised[i].count, 1);
        }
    pthread_mutex_unlock(&seen.lock);
    /* same view again: no second raise */
    publish_view(bus, v);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(count_code(&seen, true, "OVER_VOLTAGE"), 1);

    /* pack 2's BMS is lost: the event says why, the next view says it is lost */
    struct app_bms_comm comm = { .battery_id = 1, .reason = "timeout" };
    CHECK(event_bus_publish(bus, EVENT_BMS_COMM_LOST, &comm, sizeof comm, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(count_code(&seen, true, "BMS_COMM_LOST"), 0); /* the view decides */
    v->packs[1].state = BATTERY_PACK_OFFLINE;
    v->packs[1].conditions = BATTERY_COND_COMM_LOST;
    v->conditions = BATTERY_COND_PACK_OFFLINE;
    v->online_count = 1;
    publish_view(bus, v);
    /* link and storage edges */
    struct app_storage_error se = { .module = "history", .error = GW_ERR_STORAGE, .message = "disk full" };
    CHECK(event_bus_publish(bus, EVENT_STORAGE_ERROR, &se, sizeof se, 1000) == GW_OK);
    struct app_text reason = { .text = "connection refused" };
    CHECK(event_bus_publish(bus, EVENT_MQTT_DISCONNECTED, &reason, sizeof reason, 1000) == GW_OK);
    struct app_inverter_link link = { .present = false };
    CHECK(event_bus_publish(bus, EVENT_CAN_INVERTER_LINK, &link, sizeof link, 1000) == GW_OK);
    CHECK(wait_code(&seen, true, "BMS_COMM_LOST", 1));
    pthread_mutex_lock(&seen.lock);
    for (int i = 0; i < seen.n_raised; i++)
        if (strcmp(seen.raised[i].code, "BMS_COMM_LOST") == 0) {
            CHECK_STR(seen.raised[i].message, "pack 2: BMS communication lost (timeout)");
            CHECK_EQ_INT(seen.raised[i].battery_id, 1);
        }
    pthread_mutex_unlock(&seen.lock);
    CHECK(wait_code(&seen, true, "STORAGE_ERROR", 1));
    CHECK(wait_code(&seen, true, "MQTT_DISCONNECTED", 1));
    CHECK(wait_code(&seen, true, "CAN_INVERTER_LINK_LOST", 1));
    CHECK(event_bus_publish(bus, EVENT_STORAGE_OK, &se, sizeof se, 1000) == GW_OK);
    CHECK(event_bus_publish(bus, EVENT_MQTT_CONNECTED, NULL, 0, 1000) == GW_OK);
    CHECK(wait_code(&seen, false, "STORAGE_ERROR", 1));
    CHECK(wait_code(&seen, false, "MQTT_DISCONNECTED", 1));
    CHECK_EQ_INT(count_code(&seen, true, "PACK_OFFLINE"), 0); /* comm lost says it better */
    CHECK_EQ_INT(alert_manager_active_count(am), 3); /* over-voltage, comm lost, inverter link */

    /* manual raise for another module */
    CHECK_EQ_INT(alert_manager_raise(am, "CONFIG_RECOVERED", ALERT_LEVEL_WARNING,
                                     "config.json was corrupt: \"last good\" copy loaded"), GW_OK);
    CHECK(wait_code(&seen, true, "CONFIG_RECOVERED", 1));
    CHECK_EQ_INT(alert_manager_raise(am, "", ALERT_LEVEL_WARNING, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(alert_manager_raise(am, "X", 9, NULL), GW_ERR_INVAL);

    /* ack over the bus */
    struct app_alert_command cmd = { .op = ALERT_OP_ACK, .code = "OVER_VOLTAGE", .source = "web" };
    CHECK(event_bus_publish(bus, EVENT_ALERT_COMMAND, &cmd, sizeof cmd, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);

    /* active list JSON, parsed back */
    char *json = NULL;
    CHECK_EQ_INT(alert_manager_get_active_json_alloc(am, &json), GW_OK);
    cJSON *arr = json ? cJSON_Parse(json) : NULL;
    CHECK(cJSON_IsArray(arr));
    CHECK_EQ_INT(cJSON_GetArraySize(arr), 4);
    cJSON *ov = find_code(arr, "OVER_VOLTAGE");
    CHECK(ov != NULL);
    if (ov) {
        CHECK_STR(cJSON_GetObjectItem(ov, "level")->valuestring, "error");
        CHECK_STR(cJSON_GetObjectItem(ov, "message")->valuestring, "pack 1: cell 3 high 3.652 V (limit 3.600 V)");
        CHECK_NEAR(cJSON_GetObjectItem(ov, "value")->valuedouble, 3.652, 1e-4);
        CHECK_NEAR(cJSON_GetObjectItem(ov, "threshold")->valuedouble, 3.6, 1e-4);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(ov, "acknowledged")));
        CHECK_EQ_INT(cJSON_GetObjectItem(ov, "count")->valueint, 1);
        CHECK_EQ_INT(cJSON_GetObjectItem(ov, "battery_id")->valueint, 0);
        double ts = cJSON_GetObjectItem(ov, "timestamp")->valuedouble;
        double first = cJSON_GetObjectItem(ov, "first_seen")->valuedouble;
        CHECK_NEAR(ts, floor(first / 1000), 0.5);
        CHECK(cJSON_GetObjectItem(ov, "last_seen")->valuedouble >= first);
    }
    cJSON *cr = find_code(arr, "CONFIG_RECOVERED");
    CHECK(cr != NULL);
    if (cr) {
        CHECK_STR(cJSON_GetObjectItem(cr, "message")->valuestring, "config.json was corrupt: \"last good\" copy loaded");
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(cr, "acknowledged")));
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(cr, "value")));
    }
    cJSON_Delete(arr);
    /* caller buffer: fits / too small */
    char buf[4096];
    size_t len = 0;
    CHECK_EQ_INT(alert_manager_get_active_json(am, buf, sizeof buf, &len), GW_OK);
    CHECK_EQ_INT(len, strlen(json));
    CHECK_STR(buf, json);
    free(json);
    CHECK_EQ_INT(alert_manager_get_active_json(am, buf, 64, &len), GW_ERR_OVERFLOW);
    CHECK_STR(buf, "");

    /* thresholds reloaded through the getter: the rule is disabled, its alert clears */
    getter_cfg.cell_v_high.enabled = false;
    struct app_config_change change = { .sections = CONFIG_SECTION_ALERTS, .changed = "alerts.cell_v_high" };
    CHECK(event_bus_publish(bus, EVENT_CONFIG_UPDATED, &change, sizeof change, 1000) == GW_OK);
    CHECK(wait_code(&seen, false, "OVER_VOLTAGE", 1));
    CHECK_EQ_INT(alert_manager_active_count(am), 3);

    /* clear all: the comm loss (still present) comes back, the rest does not */
    CHECK_EQ_INT(alert_manager_clear_all(am), 3);
    CHECK(wait_code(&seen, true, "BMS_COMM_LOST", 2));
    CHECK(wait_code(&seen, true, "CAN_INVERTER_LINK_LOST", 2));
    CHECK_EQ_INT(count_code(&seen, true, "CONFIG_RECOVERED"), 1);
    CHECK_EQ_INT(alert_manager_clear(am, "CONFIG_RECOVERED"), GW_ERR_NOT_FOUND);
    CHECK(event_bus_publish(bus, EVENT_BMS_COMM_RESTORED, &comm, sizeof comm, 1000) == GW_OK);
    v->packs[1].state = BATTERY_PACK_ONLINE;
    v->packs[1].conditions = 0;
    v->conditions = 0;
    v->online_count = 2;
    publish_view(bus, v);
    CHECK(wait_code(&seen, false, "BMS_COMM_LOST", 2));
    free(v);

    /* counts */
    CHECK_EQ_INT(alert_manager_count(am, "BMS_COMM_LOST"), 2);
    CHECK_EQ_INT(alert_manager_count(am, "OVER_VOLTAGE"), 1);
    CHECK_EQ_INT(alert_manager_count(am, "NOPE"), 0);
    char *counts = NULL;
    CHECK_EQ_INT(alert_manager_get_counts_json_alloc(am, &counts), GW_OK);
    cJSON *cj = counts ? cJSON_Parse(counts) : NULL;
    CHECK(cJSON_IsObject(cj));
    CHECK_EQ_INT(cJSON_GetObjectItem(cj, "BMS_COMM_LOST") ? cJSON_GetObjectItem(cj, "BMS_COMM_LOST")->valueint : -1, 2);
    cJSON_Delete(cj);
    free(counts);

    /* history of transitions */
    char *hist = NULL;
    CHECK_EQ_INT(alert_manager_get_history_json(am, 0, 0, 1000, &hist), GW_OK);
    cJSON *h = hist ? cJSON_Parse(hist) : NULL;
    CHECK(cJSON_IsArray(h));
    int raised = 0, cleared = 0, acked = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, h) {
        const char *ev = cJSON_GetObjectItem(it, "event")->valuestring;
        raised += strcmp(ev, "raised") == 0;
        cleared += strcmp(ev, "cleared") == 0;
        acked += strcmp(ev, "acked") == 0;
    }
    CHECK_EQ_INT(raised, 8);
    CHECK_EQ_INT(acked, 1);
    CHECK(cleared >= 6);
    int history_rows = cJSON_GetArraySize(h);
    cJSON_Delete(h);
    free(hist);
    CHECK_EQ_INT(alert_manager_get_history_json(am, 0, 0, 2, &hist), GW_OK);
    h = hist ? cJSON_Parse(hist) : NULL;
    CHECK_EQ_INT(cJSON_GetArraySize(h), 2);
    cJSON_Delete(h);
    free(hist);
    CHECK_EQ_INT(alert_manager_get_history_json(am, 0, 0, 20000, &hist), GW_ERR_INVAL);

    alert_manager_destroy(am);

    /* restart on the same directory: counts and history are still there */
    CHECK_EQ_INT(alert_manager_create(&opt, &am), GW_OK);
    CHECK_EQ_INT(alert_manager_count(am, "BMS_COMM_LOST"), 2);
    CHECK_EQ_INT(alert_manager_count(am, "OVER_VOLTAGE"), 1);
    CHECK_EQ_INT(alert_manager_active_count(am), 0);
    CHECK_EQ_INT(alert_manager_get_history_json(am, 0, 0, 1000, &hist), GW_OK);
    h = hist ? cJSON_Parse(hist) : NULL;
    CHECK_EQ_INT(cJSON_GetArraySize(h), history_rows);
    cJSON_Delete(h);
    free(hist);
    alert_manager_destroy(am);
    event_bus_destroy(bus);

    char cmdline[128];
    snprintf(cmdline, sizeof cmdline, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmdline), 0);
}

static void test_bad_input_and_no_persistence(void)
{
    struct alert_manager *am = (struct alert_manager *)1;
    struct alert_manager_options opt = { 0 };
    CHECK_EQ_INT(alert_manager_create(&opt, &am), GW_ERR_INVAL);
    CHECK(am == NULL);
    CHECK_EQ_INT(alert_manager_create(NULL, NULL), GW_ERR_INVAL);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    opt.bus = bus;
    opt.config = test_cfg();
    /* a data directory that cannot hold a database: runs without history */
    opt.data_dir = "/proc/self/nonexistent-dir";
    CHECK_EQ_INT(alert_manager_create(&opt, &am), GW_OK);
    char *hist = NULL;
    CHECK_EQ_INT(alert_manager_get_history_json(am, 0, 0, 10, &hist), GW_ERR_STORAGE);
    CHECK(hist == NULL);
    /* ... and says so as an alert (its store's report went out before it listened) */
    CHECK_EQ_INT(alert_manager_active_count(am), 1);
    char active[2048];
    size_t len = 0;
    CHECK_EQ_INT(alert_manager_get_active_json(am, active, sizeof active, &len), GW_OK);
    CHECK(strstr(active, "STORAGE_ERROR") && strstr(active, "Storage error (alerts): cannot open"));
    CHECK_EQ_INT(alert_manager_raise(am, "CONFIG_RECOVERED", ALERT_LEVEL_WARNING, NULL), GW_OK);
    CHECK_EQ_INT(alert_manager_active_count(am), 2);
    CHECK_EQ_INT(alert_manager_ack(am, NULL), 2);
    CHECK_EQ_INT(alert_manager_clear(am, "CONFIG_RECOVERED"), GW_OK);
    CHECK_EQ_INT(alert_manager_clear(am, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(alert_manager_get_active_json(am, NULL, 0, NULL), GW_ERR_INVAL);
    /* a short payload is ignored, not read past its end */
    char junk[4] = { 1, 2, 3, 4 };
    CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, junk, sizeof junk, 1000) == GW_OK);
    CHECK(event_bus_publish(bus, EVENT_BMS_EVENTS_UPDATE, junk, sizeof junk, 1000) == GW_OK);
    CHECK(event_bus_publish(bus, EVENT_ALERT_COMMAND, junk, sizeof junk, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(alert_manager_active_count(am), 1); /* the storage error stays */
    alert_manager_destroy(am);
    alert_manager_destroy(NULL);
    event_bus_destroy(bus);
}

/* Golden output: a fixed clock and a fixed sample give exactly this JSON. */
static void test_active_json_golden(void)
{
    fake_clock_set_ms(777000);
    fake_clock_set_wall_ms(1705500000123LL);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct alert_manager_options opt = { .bus = bus, .config = test_cfg() };
    struct alert_manager *am = NULL;
    CHECK_EQ_INT(alert_manager_create(&opt, &am), GW_OK);
    if (!am)
        return;
    struct battery_view *v = make_view(1);
    v->packs[0].live = sample(36520);
    publish_view(bus, v);
    free(v);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(alert_manager_raise(am, "CONFIG_RECOVERED", ALERT_LEVEL_WARNING, "a \"quoted\"\tmessage"), GW_OK);
    char buf[2048];
    CHECK_EQ_INT(alert_manager_get_active_json(am, buf, sizeof buf, NULL), GW_OK);
    CHECK_STR(buf,
              "[{\"timestamp\":1705500000,\"level\":\"error\",\"code\":\"OVER_VOLTAGE\","
              "\"message\":\"pack 1: cell 3 high 3.652 V (limit 3.600 V)\",\"value\":3.652,\"threshold\":3.6,"
              "\"first_seen\":1705500000123,\"last_seen\":1705500000123,\"count\":1,\"acknowledged\":false,"
              "\"battery_id\":0,\"subject\":\"\"},"
              "{\"timestamp\":1705500000,\"level\":\"warning\",\"code\":\"CONFIG_RECOVERED\","
              "\"message\":\"a \\\"quoted\\\"\\u0009message\",\"value\":null,\"threshold\":null,"
              "\"first_seen\":1705500000123,\"last_seen\":1705500000123,\"count\":1,\"acknowledged\":false,"
              "\"battery_id\":0,\"subject\":\"\"}]");
    alert_manager_destroy(am);
    event_bus_destroy(bus);
    fake_clock_use_real();
}

/* Several packs through the bus: the same rule on two packs gives two alerts keyed and named by
 * pack; a pack dropping out below the minimum gives its PACK_OFFLINE and the bank's error. */
static void test_several_packs_via_bus(void)
{
    char dir[] = "/tmp/gw_alerts_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    static struct seen_alerts seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
    event_bus_subscribe(bus, EVENT_ALERT_RAISED, on_alert, &seen, "test");
    event_bus_subscribe(bus, EVENT_ALERT_CLEARED, on_alert, &seen, "test");
    struct alert_manager_options opt = { .bus = bus, .data_dir = dir, .config = test_cfg(), .tick_ms = 20 };
    struct alert_manager *am = NULL;
    CHECK_EQ_INT(alert_manager_create(&opt, &am), GW_OK);
    if (!am)
        return;
    struct battery_view *v = make_view(3);
    publish_view(bus, v);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(alert_manager_active_count(am), 0);

    v->packs[1].live.cell_mv_x10[1] = 36200;
    v->packs[2].live.cell_mv_x10[1] = 36400;
    publish_view(bus, v);
    CHECK(wait_code(&seen, true, "OVER_VOLTAGE", 2));
    pthread_mutex_lock(&seen.lock);
    int named = 0;
    for (int i = 0; i < seen.n_raised; i++) {
        const struct app_alert *a = &seen.raised[i];
        if (strcmp(a->code, "OVER_VOLTAGE") != 0)
            continue;
        if (a->battery_id == 1 && strcmp(a->message, "pack 2: cell 2 high 3.620 V (limit 3.600 V)") == 0)
            named++;
        if (a->battery_id == 2 && strcmp(a->message, "pack 3: cell 2 high 3.640 V (limit 3.600 V)") == 0)
            named++;
    }
    pthread_mutex_unlock(&seen.lock);
    CHECK_EQ_INT(named, 2);

    /* pack 3 drops out; the bank is below its minimum of online packs */
    v->packs[2].state = BATTERY_PACK_OFFLINE;
    v->packs[2].sample_age_ms = 31000;
    v->online_count = 2;
    v->conditions = BATTERY_COND_PACK_OFFLINE | BATTERY_COND_BELOW_MIN_ONLINE;
    publish_view(bus, v);
    CHECK(wait_code(&seen, true, "PACK_OFFLINE", 1));
    CHECK(wait_code(&seen, true, "PACKS_BELOW_MIN_ONLINE", 1));
    char *json = NULL;
    CHECK_EQ_INT(alert_manager_get_active_json_alloc(am, &json), GW_OK);
    cJSON *arr = json ? cJSON_Parse(json) : NULL;
    CHECK_EQ_INT(cJSON_GetArraySize(arr), 4); /* two over-voltages (pack 3's kept while offline) */
    cJSON *po = find_code(arr, "PACK_OFFLINE");
    if (po) {
        CHECK_EQ_INT(cJSON_GetObjectItem(po, "battery_id")->valueint, 2);
        CHECK_STR(cJSON_GetObjectItem(po, "level")->valuestring, "warning");
        CHECK_STR(cJSON_GetObjectItem(po, "message")->valuestring,
                  "pack 3: offline (last data 31 s ago): the battery runs on 2 of 3 packs");
    }
    cJSON *bm = find_code(arr, "PACKS_BELOW_MIN_ONLINE");
    if (bm) {
        CHECK_EQ_INT(cJSON_GetObjectItem(bm, "battery_id")->valueint, BATTERY_BANK_ID);
        CHECK_STR(cJSON_GetObjectItem(bm, "level")->valuestring, "error");
    }
    cJSON_Delete(arr);
    free(json);

    /* back, healthy: everything clears */
    free(v);
    v = make_view(3);
    publish_view(bus, v);
    CHECK(wait_code(&seen, false, "PACKS_BELOW_MIN_ONLINE", 1));
    CHECK(wait_code(&seen, false, "PACK_OFFLINE", 1));
    CHECK(wait_code(&seen, false, "OVER_VOLTAGE", 2));
    CHECK_EQ_INT(alert_manager_active_count(am), 0);
    /* the history keeps the pack of each transition */
    char *hist = NULL;
    CHECK_EQ_INT(alert_manager_get_history_json(am, 0, 0, 100, &hist), GW_OK);
    cJSON *h = hist ? cJSON_Parse(hist) : NULL;
    int pack3 = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, h) {
        if (cJSON_GetObjectItem(it, "battery_id")->valueint == 2)
            pack3++;
    }
    CHECK_EQ_INT(pack3, 4); /* over-voltage and offline, raised and cleared */
    cJSON_Delete(h);
    free(hist);
    free(v);
    alert_manager_destroy(am);
    event_bus_destroy(bus);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

/* BMS event log and network link through the service. */
static void test_event_log_and_network_via_bus(void)
{
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    static struct seen_alerts seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
    event_bus_subscribe(bus, EVENT_ALERT_RAISED, on_alert, &seen, "test");
    event_bus_subscribe(bus, EVENT_ALERT_CLEARED, on_alert, &seen, "test");
    struct alert_manager_options opt = { .bus = bus, .config = test_cfg(), .tick_ms = 20 };
    struct alert_manager *am = NULL;
    CHECK_EQ_INT(alert_manager_create(&opt, &am), GW_OK);
    if (!am)
        return;
    struct app_bms_events *ev = calloc(1, sizeof *ev);
    ev->log.valid = true;
    ev->log.count = 2;
    ev->log.events[0] = (struct bms_event){ 100, 0x61 };
    ev->log.events[1] = (struct bms_event){ 200, 0x04 };
    CHECK(event_bus_publish(bus, EVENT_BMS_EVENTS_UPDATE, ev, sizeof *ev, 1000) == GW_OK); /* baseline */
    CHECK(event_bus_publish(bus, EVENT_BMS_EVENTS_UPDATE, ev, sizeof *ev, 1000) == GW_OK); /* same again */
    ev->log.count = 3;
    ev->log.events[2] = (struct bms_event){ 300, 0x06 };
    CHECK(event_bus_publish(bus, EVENT_BMS_EVENTS_UPDATE, ev, sizeof *ev, 1000) == GW_OK);
    CHECK(event_bus_publish(bus, EVENT_BMS_EVENTS_UPDATE, ev, sizeof *ev, 1000) == GW_OK);
    CHECK(wait_code(&seen, true, "BMS_CHARGE_OVER_CURRENT", 1));
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(count_code(&seen, true, "BMS_CHARGE_OVER_CURRENT"), 1);
    CHECK_EQ_INT(count_code(&seen, true, "BMS_OVER_TEMP_CUTOFF"), 0);
    free(ev);
    struct app_net_link link = { .interface = "wlan0" };
    CHECK(event_bus_publish(bus, EVENT_NET_DISCONNECTED, &link, sizeof link, 1000) == GW_OK);
    CHECK(wait_code(&seen, true, "WIFI_DISCONNECTED", 1));
    CHECK(event_bus_publish(bus, EVENT_NET_CONNECTED, &link, sizeof link, 1000) == GW_OK);
    CHECK(wait_code(&seen, false, "WIFI_DISCONNECTED", 1));
    struct app_alert_command cmd = { .op = ALERT_OP_CLEAR_ALL, .source = "mqtt" };
    CHECK(event_bus_publish(bus, EVENT_ALERT_COMMAND, &cmd, sizeof cmd, 1000) == GW_OK);
    CHECK(wait_code(&seen, false, "BMS_CHARGE_OVER_CURRENT", 1));
    CHECK_EQ_INT(alert_manager_active_count(am), 0);
    alert_manager_destroy(am);
    event_bus_destroy(bus);
}


/* Regression: a failed write of alert transitions (here the alert_history table replaced by an
 * incompatible one) dropped them for good, logged one error per batch, and flush still said
 * GW_OK. Now they stay queued and are retried with a back-off, flush reports GW_ERR_STORAGE,
 * and once the table is usable again every transition reaches the database. */
static const char alert_schema[] =
    "CREATE TABLE alert_history("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, event TEXT NOT NULL,"
    " code TEXT NOT NULL, level INTEGER NOT NULL, battery_id INTEGER NOT NULL, subject TEXT NOT NULL,"
    " message TEXT NOT NULL, value REAL, threshold REAL, count INTEGER NOT NULL,"
    " acknowledged INTEGER NOT NULL);";

/* In one transaction: between a DROP TABLE and the CREATE after it, the manager's writer may
 * re-create its schema (seen under qemu-user: "table alert_history already exists"). */
static void run_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    CHECK_EQ_INT(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void test_failed_history_write_is_retried(void)
{
    char dir[] = "/tmp/gw_alerts_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct alert_manager_options opt = { .bus = bus, .data_dir = dir, .config = test_cfg() };
    struct alert_manager *am = NULL;
    CHECK_EQ_INT(alert_manager_create(&opt, &am), GW_OK);
    if (!am)
        return;
    CHECK_EQ_INT(alert_manager_raise(am, "FIRST", ALERT_LEVEL_WARNING, NULL), GW_OK);
    CHECK_EQ_INT(alert_manager_flush(am, 10000), GW_OK);

    char path[300];
    snprintf(path, sizeof path, "%s/alerts.db", dir);
    run_sql(path, "DROP TABLE alert_history; CREATE TABLE alert_history(x INTEGER);");
    CHECK_EQ_INT(alert_manager_raise(am, "SECOND", ALERT_LEVEL_WARNING, NULL), GW_OK);
    CHECK_EQ_INT(alert_manager_raise(am, "THIRD", ALERT_LEVEL_ERROR, NULL), GW_OK);
    CHECK_EQ_INT(alert_manager_flush(am, 20000), GW_ERR_STORAGE);

    char sql[1024];
    snprintf(sql, sizeof sql, "DROP TABLE alert_history; %s", alert_schema);
    run_sql(path, sql);
    int rc = GW_ERR_STORAGE;
    for (int i = 0; i < 400 && rc != GW_OK; i++) {
        rc = alert_manager_flush(am, 1000);
        if (rc != GW_OK)
            gw_sleep_ms(25);
    }
    CHECK_EQ_INT(rc, GW_OK);
    char *hist = NULL;
    CHECK_EQ_INT(alert_manager_get_history_json(am, 0, 0, 100, &hist), GW_OK);
    CHECK(hist && strstr(hist, "\"SECOND\"") != NULL);
    CHECK(hist && strstr(hist, "\"THIRD\"") != NULL);
    free(hist);
    alert_manager_destroy(am);
    event_bus_destroy(bus);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

TEST_MAIN(TEST_CASE(test_service_end_to_end), TEST_CASE(test_several_packs_via_bus), TEST_CASE(test_failed_history_write_is_retried), TEST_CASE(test_active_json_golden),
          TEST_CASE(test_event_log_and_network_via_bus), TEST_CASE(test_bad_input_and_no_persistence))
