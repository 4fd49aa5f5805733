/* MQTT gateway: bus events -> topics, Home Assistant discovery, command topics (mqtt_gateway.h).
 *
 * Threads: bus handlers run on the dispatcher, the connect and command callbacks on the MQTT
 * network thread. `lock` guards the settings copy, schedules and statistics; it is never held
 * while calling into mqtt_client (publish/subscribe) or the bus, so no lock order can form with
 * the client's own locks. */
#define _POSIX_C_SOURCE 200809L
#include "mqtt_gateway.h"
#include "mqtt_gateway_internal.h"

#include "app_events.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "mqtt_gateway"
#define MAX_BATTERIES 8
#define TOPIC_MAX MQTT_CLIENT_MAX_TOPIC

static const struct mqtt_gateway__sensor base_sensors[] = {
    { "voltage", "Pack voltage", "voltage", "voltage", "V", 2, NULL },
    { "current", "Current", "current", "current", "A", 2, NULL },
    { "power", "Power", "power", "power", "W", 1, NULL },
    { "soc", "State of charge", "soc", "battery", "%", 1, NULL },
    { "soh", "State of health", "soh", NULL, "%", 1, "mdi:battery-heart-variant" },
    { "temperature_max", "Temperature max", "temperature/max", "temperature", "°C", 1, NULL },
    { "temperature_min", "Temperature min", "temperature/min", "temperature", "°C", 1, NULL },
    { "cell_voltage_max", "Cell voltage max", "cells/voltage/max", "voltage", "V", 3, NULL },
    { "cell_voltage_min", "Cell voltage min", "cells/voltage/min", "voltage", "V", 3, NULL },
    { "charge_cvl", "Charge voltage limit", "charge/cvl", "voltage", "V", 2, NULL },
    { "charge_ccl", "Charge current limit", "charge/ccl", "current", "A", 1, NULL },
    { "charge_dcl", "Discharge current limit", "charge/dcl", "current", "A", 1, NULL },
    { "online_status", "Status", "online_status", NULL, NULL, -1, "mdi:battery-sync" },
};
#define BASE_SENSOR_COUNT (sizeof base_sensors / sizeof base_sensors[0])

static const int handled_events[] = {
    EVENT_BMS_DATA_UPDATE, EVENT_ALERT_RAISED,        EVENT_ALERT_CLEARED,
    EVENT_CHARGE_LIMITS,   EVENT_BMS_VERSION_UPDATE,  EVENT_CONFIG_UPDATED,
};

struct mqtt_gateway {
    pthread_mutex_t lock;
    pthread_mutex_t ctl_lock;      /* serialises apply_commands (start vs config handler) */
    struct event_bus *bus;
    struct mqtt_client *client;
    bool own_client;
    mqtt_gateway_config_fn get_config;
    void *config_ctx;

    /* --- guarded by lock --- */
    struct gw_config_mqtt cfg;
    bool started;
    bool enabled;
    uint64_t next_numeric_ms[MAX_BATTERIES];
    uint64_t next_status_ms[MAX_BATTERIES];
    uint64_t next_limits_ms[MAX_BATTERIES];
    struct bms_version version;
    uint8_t cells_announced;       /* per-cell discovery configs published (battery 0) */
    char cmd_prefix[64];           /* prefix of the subscribed command topics, "" = none */
    bool warned_other_battery;
    struct mqtt_gateway_stats stats;
    uint64_t us_total;

    struct gw_log_limit cmd_log;   /* network thread only */
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int mqtt_gateway_availability_topic(const char *prefix, char *out, size_t cap)
{
    if (!prefix || !out || cap == 0)
        return GW_ERR_INVAL;
    int n = snprintf(out, cap, "%s/availability", prefix);
    return (n < 0 || (size_t)n >= cap) ? GW_ERR_OVERFLOW : GW_OK;
}

/* ------------------------------------------------------------------ publishing helpers */

/* "<base>/<sub>"; false (and logged at debug) when it does not fit. */
static bool make_topic(char *buf, const char *base, const char *sub)
{
    int n = snprintf(buf, TOPIC_MAX, "%s/%s", base, sub);
    return n > 0 && n < TOPIC_MAX;
}

static void battery_base(char *buf, size_t cap, const char *prefix, uint8_t battery_id)
{
    if (battery_id == 0)
        snprintf(buf, cap, "%s", prefix);
    else
        snprintf(buf, cap, "%s/battery%u", prefix, (unsigned)battery_id);
}

static int publish_raw(struct mqtt_gateway *gw, const char *topic, const char *payload, size_t len,
                       int qos, bool retain)
{
    int rc = mqtt_client_publish(gw->client, topic, payload, len, qos, retain);
    /* Disconnected drops are counted by the client; only real failures count here. */
    return (rc == GW_OK || rc == GW_ERR_CLOSED) ? 0 : 1;
}

static int pub_text(struct mqtt_gateway *gw, const char *base, const char *sub, const char *text,
                    int qos, bool retain)
{
    char topic[TOPIC_MAX];
    if (!make_topic(topic, base, sub))
        return 1;
    return publish_raw(gw, topic, text, strlen(text), qos, retain);
}

/* A NaN or infinite value is simply not published (the retained last good value stays). */
static int pub_num(struct mqtt_gateway *gw, const char *base, const char *sub, double v, int decimals)
{
    char text[48];
    if (mqtt_gateway__format_number(text, sizeof text, v, decimals) != GW_OK)
        return 0;
    return pub_text(gw, base, sub, text, 0, true);
}

static int pub_json(struct mqtt_gateway *gw, const char *topic, cJSON *doc, int qos, bool retain)
{
    if (!doc)
        return 1;
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!text)
        return 1;
    int e = publish_raw(gw, topic, text, strlen(text), qos, retain);
    cJSON_free(text);
    return e;
}

static void snapshot_cfg(struct mqtt_gateway *gw, struct gw_config_mqtt *out)
{
    pthread_mutex_lock(&gw->lock);
    *out = gw->cfg;
    pthread_mutex_unlock(&gw->lock);
}

/* ------------------------------------------------------------------ data topics */

int mqtt_gateway__publish_sample(struct mqtt_gateway *gw, const struct bms_live_data *d)
{
    uint64_t t0 = now_us();
    char prefix[sizeof gw->cfg.topic_prefix];
    pthread_mutex_lock(&gw->lock);
    snprintf(prefix, sizeof prefix, "%s", gw->cfg.topic_prefix);
    pthread_mutex_unlock(&gw->lock);
    char base[TOPIC_MAX / 2];
    battery_base(base, sizeof base, prefix, d->battery_id);

    int errors = 0;
    double v = d->pack_voltage_v, i = d->pack_current_a;
    errors += pub_num(gw, base, "voltage", v, 2);
    errors += pub_num(gw, base, "current", i, 2);
    errors += pub_num(gw, base, "power", v * i, 1);
    errors += pub_num(gw, base, "soc", bms_soc_percent(d), 1);
    if (d->soh_valid)
        errors += pub_num(gw, base, "soh", bms_soh_percent(d), 1);
    int16_t t;
    if (bms_temp_max_dc(d, &t))
        errors += pub_num(gw, base, "temperature/max", t / 10.0, 1);
    if (bms_temp_min_dc(d, &t))
        errors += pub_num(gw, base, "temperature/min", t / 10.0, 1);

    unsigned cells = d->cell_count <= BMS_MAX_CELLS ? d->cell_count : BMS_MAX_CELLS;
    unsigned hi = 0, lo = UINT32_MAX;
    char sub[32];
    for (unsigned c = 0; c < cells; c++) {
        unsigned mv10 = d->cell_mv_x10[c];
        hi = mv10 > hi ? mv10 : hi;
        lo = mv10 < lo ? mv10 : lo;
        snprintf(sub, sizeof sub, "cells/%u/voltage", c + 1);
        errors += pub_num(gw, base, sub, mv10 / 10000.0, 3);
    }
    if (cells) {
        errors += pub_num(gw, base, "cells/voltage/max", d->max_cell_mv ? d->max_cell_mv / 1000.0 : hi / 10000.0, 3);
        errors += pub_num(gw, base, "cells/voltage/min", d->min_cell_mv ? d->min_cell_mv / 1000.0 : lo / 10000.0, 3);
    }
    char topic[TOPIC_MAX];
    if (make_topic(topic, base, "balancing"))
        errors += pub_json(gw, topic, mqtt_gateway__balancing_json(d), 0, true);
    errors += pub_text(gw, base, "online_status", bms_online_status_name(d->online_status), 0, true);

    uint64_t us = now_us() - t0;
    pthread_mutex_lock(&gw->lock);
    gw->stats.samples_published++;
    gw->stats.publish_errors += (uint64_t)errors;
    gw->us_total += us;
    if (us > gw->stats.us_per_sample_max)
        gw->stats.us_per_sample_max = us;
    pthread_mutex_unlock(&gw->lock);
    return errors;
}

int mqtt_gateway__publish_status(struct mqtt_gateway *gw, const struct bms_live_data *d)
{
    char prefix[sizeof gw->cfg.topic_prefix];
    pthread_mutex_lock(&gw->lock);
    snprintf(prefix, sizeof prefix, "%s", gw->cfg.topic_prefix);
    pthread_mutex_unlock(&gw->lock);
    char base[TOPIC_MAX / 2], topic[TOPIC_MAX];
    battery_base(base, sizeof base, prefix, d->battery_id);
    if (!make_topic(topic, base, "status"))
        return 1;
    int errors = pub_json(gw, topic, mqtt_gateway__status_json(d), 0, true);
    pthread_mutex_lock(&gw->lock);
    gw->stats.status_published++;
    gw->stats.publish_errors += (uint64_t)errors;
    pthread_mutex_unlock(&gw->lock);
    return errors;
}

/* ------------------------------------------------------------------ discovery */

static void device_of(struct mqtt_gateway *gw, struct mqtt_gateway__device *dev)
{
    char id[128];
    mqtt_client_get_client_id(gw->client, id, sizeof id);
    pthread_mutex_lock(&gw->lock);
    struct bms_version v = gw->version;
    pthread_mutex_unlock(&gw->lock);
    mqtt_gateway__device_info(id, &v, dev);
}

static void publish_sensor_config(struct mqtt_gateway *gw, const struct gw_config_mqtt *cfg,
                                  const struct mqtt_gateway__device *dev,
                                  const struct mqtt_gateway__sensor *s, bool remove, int *errors)
{
    char topic[TOPIC_MAX];
    int n = snprintf(topic, sizeof topic, "%s/sensor/%s/%s/config", cfg->ha_discovery_prefix,
                     dev->node_id, s->object);
    if (n < 0 || n >= (int)sizeof topic) {
        (*errors)++;
        return;
    }
    if (remove)
        *errors += publish_raw(gw, topic, "", 0, 1, true);
    else
        *errors += pub_json(gw, topic, mqtt_gateway__discovery_json(cfg->topic_prefix, dev, s), 1, true);
}

/* Publishes (or removes) per-cell sensor configs for cells [from, to], 1-based. */
static int publish_cell_discovery(struct mqtt_gateway *gw, const struct gw_config_mqtt *cfg,
                                  const struct mqtt_gateway__device *dev, unsigned from, unsigned to,
                                  bool remove)
{
    int errors = 0;
    char object[32], name[32], state[32];
    for (unsigned c = from; c <= to && c <= BMS_MAX_CELLS; c++) {
        snprintf(object, sizeof object, "cell_%u_voltage", c);
        snprintf(name, sizeof name, "Cell %u voltage", c);
        snprintf(state, sizeof state, "cells/%u/voltage", c);
        struct mqtt_gateway__sensor s = { object, name, state, "voltage", "V", 3, NULL };
        publish_sensor_config(gw, cfg, dev, &s, remove, &errors);
    }
    return errors;
}

/* Whole discovery round for cfg: configs when cfg->ha_discovery and !remove, empty retained
 * configs otherwise (which makes Home Assistant forget the entities). */
static void publish_discovery(struct mqtt_gateway *gw, const struct gw_config_mqtt *cfg, bool remove)
{
    if (!mqtt_client_is_connected(gw->client))
        return;
    remove = remove || !cfg->ha_discovery;
    struct mqtt_gateway__device dev;
    device_of(gw, &dev);
    int errors = 0;
    for (size_t i = 0; i < BASE_SENSOR_COUNT; i++)
        publish_sensor_config(gw, cfg, &dev, &base_sensors[i], remove, &errors);
    pthread_mutex_lock(&gw->lock);
    unsigned cells = gw->cells_announced;
    pthread_mutex_unlock(&gw->lock);
    if (remove)
        errors += publish_cell_discovery(gw, cfg, &dev, 1, BMS_MAX_CELLS, true);
    else if (cells)
        errors += publish_cell_discovery(gw, cfg, &dev, 1, cells, false);
    pthread_mutex_lock(&gw->lock);
    if (!remove)
        gw->stats.discovery_published++;
    gw->stats.publish_errors += (uint64_t)errors;
    pthread_mutex_unlock(&gw->lock);
    GW_LOGI(MOD, "Home Assistant discovery %s under %s/sensor/%s", remove ? "removed" : "published",
            cfg->ha_discovery_prefix, dev.node_id);
}

/* ------------------------------------------------------------------ commands */

static void reply(struct mqtt_gateway *gw, const char *prefix, const char *command, const char *error)
{
    char topic[TOPIC_MAX];
    if (!make_topic(topic, prefix, "cmd/result"))
        return;
    cJSON *doc = cJSON_CreateObject();
    if (!doc)
        return;
    cJSON_AddBoolToObject(doc, "ok", error == NULL);
    cJSON_AddStringToObject(doc, "command", command);
    if (error)
        cJSON_AddStringToObject(doc, "error", error);
    pub_json(gw, topic, doc, 1, false);
}

static void on_command(const struct mqtt_client_message *msg, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    pthread_mutex_lock(&gw->lock);
    char prefix[sizeof gw->cmd_prefix];
    snprintf(prefix, sizeof prefix, "%s", gw->cmd_prefix);
    bool allowed = gw->started && gw->cfg.commands_enabled && gw->cfg.username[0] != '\0';
    pthread_mutex_unlock(&gw->lock);
    size_t plen = strlen(prefix);
    if (!allowed || plen == 0 || strncmp(msg->topic, prefix, plen) != 0 ||
        strncmp(msg->topic + plen, "/cmd/", 5) != 0)
        return;
    const char *command = msg->topic + plen + 5;

    char err[160] = "";
    int rc = GW_ERR_INVAL;
    bool queued = false;
    if (msg->retain) {
        /* A retained command would be re-applied at every reconnection. */
        snprintf(err, sizeof err, "retained command ignored: publish commands without retain");
    } else if (strcmp(command, "alerts/ack") == 0 || strcmp(command, "alerts/clear") == 0) {
        struct app_alert_command cmd;
        rc = command[7] == 'a' ? mqtt_gateway__parse_alert_ack(msg->payload, msg->len, &cmd, err, sizeof err)
                               : mqtt_gateway__parse_alert_clear(msg->payload, msg->len, &cmd, err, sizeof err);
        if (rc == GW_OK)
            queued = event_bus_publish(gw->bus, EVENT_ALERT_COMMAND, &cmd, sizeof cmd, 200);
    } else if (strcmp(command, "charge_cap") == 0) {
        struct app_charge_cap cap;
        rc = mqtt_gateway__parse_charge_cap(msg->payload, msg->len, &cap, err, sizeof err);
        if (rc == GW_OK)
            queued = event_bus_publish(gw->bus, EVENT_CHARGE_CAP_REQUEST, &cap, sizeof cap, 200);
    } else {
        snprintf(err, sizeof err, "unknown command");
    }
    if (rc == GW_OK && !queued) {
        rc = GW_ERR_BUSY;
        snprintf(err, sizeof err, "gateway busy (event queue full), try again");
    }
    pthread_mutex_lock(&gw->lock);
    if (rc == GW_OK)
        gw->stats.commands_accepted++;
    else
        gw->stats.commands_rejected++;
    pthread_mutex_unlock(&gw->lock);
    if (rc == GW_OK) {
        GW_LOGI(MOD, "command %s accepted", command);
    } else {
        gw_log_ratelimited(&gw->cmd_log, 10000, GW_LOG_WARN, MOD, "command %.60s rejected: %s",
                           command, err);
    }
    reply(gw, prefix, command, rc == GW_OK ? NULL : err);
}

static const char *const command_topics[] = { "cmd/alerts/ack", "cmd/alerts/clear", "cmd/charge_cap" };

/* Subscribes / unsubscribes the command topics to match the settings. Never under lock. */
static void apply_commands_locked(struct mqtt_gateway *gw, bool stopping);

static void apply_commands(struct mqtt_gateway *gw, bool stopping)
{
    pthread_mutex_lock(&gw->ctl_lock);
    apply_commands_locked(gw, stopping);
    pthread_mutex_unlock(&gw->ctl_lock);
}

static void apply_commands_locked(struct mqtt_gateway *gw, bool stopping)
{
    struct gw_config_mqtt cfg;
    snapshot_cfg(gw, &cfg);
    bool want = !stopping && cfg.commands_enabled && cfg.username[0] != '\0';
    if (!stopping && cfg.commands_enabled && cfg.username[0] == '\0')
        GW_LOGW(MOD, "command topics refused: the broker connection has no user name, so anyone "
                     "on the network could command the battery; set mqtt.username (and an ACL)");
    pthread_mutex_lock(&gw->lock);
    char old[sizeof gw->cmd_prefix];
    snprintf(old, sizeof old, "%s", gw->cmd_prefix);
    pthread_mutex_unlock(&gw->lock);
    bool same = want && strcmp(old, cfg.topic_prefix) == 0;
    if (same)
        return;
    char topic[TOPIC_MAX];
    if (old[0]) {
        for (size_t i = 0; i < 3; i++)
            if (make_topic(topic, old, command_topics[i]))
                mqtt_client_unsubscribe(gw->client, topic);
        pthread_mutex_lock(&gw->lock);
        gw->cmd_prefix[0] = '\0';
        pthread_mutex_unlock(&gw->lock);
    }
    if (!want)
        return;
    pthread_mutex_lock(&gw->lock);
    snprintf(gw->cmd_prefix, sizeof gw->cmd_prefix, "%s", cfg.topic_prefix);
    pthread_mutex_unlock(&gw->lock);
    int rc = GW_OK;
    for (size_t i = 0; i < 3 && rc == GW_OK; i++) {
        rc = make_topic(topic, cfg.topic_prefix, command_topics[i]) ? GW_OK : GW_ERR_OVERFLOW;
        if (rc == GW_OK)
            rc = mqtt_client_subscribe(gw->client, topic, 1, on_command, gw);
    }
    if (rc != GW_OK)
        GW_LOGE(MOD, "cannot subscribe the command topics: %s", gw_strerror(rc));
    else
        GW_LOGI(MOD, "command topics enabled under %s/cmd/ (user %s)", cfg.topic_prefix, cfg.username);
}

/* ------------------------------------------------------------------ connection */

static void publish_availability(struct mqtt_gateway *gw, const char *prefix, const char *state)
{
    char topic[TOPIC_MAX];
    if (mqtt_gateway_availability_topic(prefix, topic, sizeof topic) == GW_OK)
        publish_raw(gw, topic, state, strlen(state), 1, true);
}

static void on_connected(void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    struct gw_config_mqtt cfg;
    pthread_mutex_lock(&gw->lock);
    cfg = gw->cfg;
    /* Retained values were dropped while offline: publish the next sample at once. */
    memset(gw->next_numeric_ms, 0, sizeof gw->next_numeric_ms);
    memset(gw->next_status_ms, 0, sizeof gw->next_status_ms);
    memset(gw->next_limits_ms, 0, sizeof gw->next_limits_ms);
    pthread_mutex_unlock(&gw->lock);
    publish_availability(gw, cfg.topic_prefix, "online");
    publish_discovery(gw, &cfg, false);
}

/* ------------------------------------------------------------------ event handlers */

/* True when `next` is due at `now`; then schedules the next one. A tenth of the period of slack
 * keeps a sample stream with the same period from skipping every other sample on jitter. */
static bool due(uint64_t *next, uint64_t now, uint32_t period_ms)
{
    if (now < *next)
        return false;
    *next = now + period_ms - period_ms / 10;
    return true;
}

static void on_bms_data(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    if (ev->size != sizeof(struct bms_live_data))
        return;
    struct bms_live_data d;
    memcpy(&d, ev->payload, sizeof d);
    if (!d.valid)
        return;
    uint64_t now = gw_now_ms();
    pthread_mutex_lock(&gw->lock);
    if (!gw->enabled) {
        pthread_mutex_unlock(&gw->lock);
        return;
    }
    if (d.battery_id >= MAX_BATTERIES) {
        bool warn = !gw->warned_other_battery;
        gw->warned_other_battery = true;
        pthread_mutex_unlock(&gw->lock);
        if (warn)
            GW_LOGW(MOD, "battery id %u not published (max %d batteries)", d.battery_id, MAX_BATTERIES);
        return;
    }
    bool numeric = due(&gw->next_numeric_ms[d.battery_id], now, gw->cfg.publish_interval_ms);
    bool status = due(&gw->next_status_ms[d.battery_id], now, gw->cfg.status_interval_ms);
    struct gw_config_mqtt cfg = gw->cfg;
    unsigned cells = d.cell_count <= BMS_MAX_CELLS ? d.cell_count : BMS_MAX_CELLS;
    unsigned announced = gw->cells_announced;
    bool cells_changed = d.battery_id == 0 && cfg.ha_discovery && cells != announced &&
                         mqtt_client_is_connected(gw->client);
    if (cells_changed)
        gw->cells_announced = (uint8_t)cells;
    pthread_mutex_unlock(&gw->lock);

    if (cells_changed) {
        struct mqtt_gateway__device dev;
        device_of(gw, &dev);
        int errors = 0;
        if (cells > announced)
            errors += publish_cell_discovery(gw, &cfg, &dev, announced + 1, cells, false);
        else
            errors += publish_cell_discovery(gw, &cfg, &dev, cells + 1, announced, true);
        (void)errors;
    }
    if (numeric)
        mqtt_gateway__publish_sample(gw, &d);
    if (status)
        mqtt_gateway__publish_status(gw, &d);
}

static void on_alert(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    if (ev->size != sizeof(struct app_alert))
        return;
    struct app_alert a;
    memcpy(&a, ev->payload, sizeof a);
    struct gw_config_mqtt cfg;
    pthread_mutex_lock(&gw->lock);
    bool enabled = gw->enabled;
    cfg = gw->cfg;
    pthread_mutex_unlock(&gw->lock);
    if (!enabled)
        return;
    char topic[TOPIC_MAX];
    if (!make_topic(topic, cfg.topic_prefix, "alerts"))
        return;
    int e = pub_json(gw, topic, mqtt_gateway__alert_json(&a, ev->id == EVENT_ALERT_RAISED), 1, false);
    pthread_mutex_lock(&gw->lock);
    gw->stats.alerts_published++;
    gw->stats.publish_errors += (uint64_t)e;
    pthread_mutex_unlock(&gw->lock);
}

static void on_limits(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    if (ev->size != sizeof(struct app_charge_limits))
        return;
    struct app_charge_limits l;
    memcpy(&l, ev->payload, sizeof l);
    if (l.battery_id >= MAX_BATTERIES)
        return;
    pthread_mutex_lock(&gw->lock);
    bool go = gw->enabled && due(&gw->next_limits_ms[l.battery_id], gw_now_ms(), gw->cfg.publish_interval_ms);
    char prefix[sizeof gw->cfg.topic_prefix];
    snprintf(prefix, sizeof prefix, "%s", gw->cfg.topic_prefix);
    pthread_mutex_unlock(&gw->lock);
    if (!go)
        return;
    char base[TOPIC_MAX / 2];
    battery_base(base, sizeof base, prefix, l.battery_id);
    int e = 0;
    e += pub_num(gw, base, "charge/cvl", l.cvl_v, 2);
    e += pub_num(gw, base, "charge/ccl", l.ccl_a, 1);
    e += pub_num(gw, base, "charge/dcl", l.dcl_a, 1);
    char reason[sizeof l.cvl_reason + 1];
    snprintf(reason, sizeof reason, "%.*s", (int)sizeof l.cvl_reason, l.cvl_reason);
    e += pub_text(gw, base, "charge/cvl_reason", reason, 0, true);
    snprintf(reason, sizeof reason, "%.*s", (int)sizeof l.ccl_reason, l.ccl_reason);
    e += pub_text(gw, base, "charge/ccl_reason", reason, 0, true);
    snprintf(reason, sizeof reason, "%.*s", (int)sizeof l.dcl_reason, l.dcl_reason);
    e += pub_text(gw, base, "charge/dcl_reason", reason, 0, true);
    pthread_mutex_lock(&gw->lock);
    gw->stats.limits_published++;
    gw->stats.publish_errors += (uint64_t)e;
    pthread_mutex_unlock(&gw->lock);
}

static void on_version(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    if (ev->size != sizeof(struct app_bms_version))
        return;
    struct app_bms_version v;
    memcpy(&v, ev->payload, sizeof v);
    if (v.battery_id != 0 || !v.version.valid)
        return;
    pthread_mutex_lock(&gw->lock);
    bool changed = memcmp(gw->version.serial, v.version.serial, sizeof v.version.serial) != 0 ||
                   gw->version.fw_public != v.version.fw_public ||
                   gw->version.fw_internal != v.version.fw_internal ||
                   gw->version.hw_version != v.version.hw_version || !gw->version.valid;
    gw->version = v.version;
    struct gw_config_mqtt cfg = gw->cfg;
    pthread_mutex_unlock(&gw->lock);
    if (changed && cfg.ha_discovery)
        publish_discovery(gw, &cfg, false);
}

static bool broker_settings_differ(const struct gw_config_mqtt *a, const struct gw_config_mqtt *b)
{
    return strcmp(a->broker_uri, b->broker_uri) || strcmp(a->username, b->username) ||
           strcmp(a->password, b->password) || strcmp(a->client_id, b->client_id) ||
           a->keepalive_s != b->keepalive_s || strcmp(a->ca_file, b->ca_file) ||
           strcmp(a->cert_file, b->cert_file) || strcmp(a->key_file, b->key_file) ||
           a->tls_insecure != b->tls_insecure || a->offline_queue_size != b->offline_queue_size;
}

static void set_own_will(struct mqtt_gateway *gw, const char *prefix)
{
    char topic[TOPIC_MAX];
    if (mqtt_gateway_availability_topic(prefix, topic, sizeof topic) != GW_OK)
        return;
    struct mqtt_client_will will = { .topic = topic, .payload = "offline", .qos = 1, .retain = true };
    mqtt_client_set_will(gw->client, &will);
}

static void apply_config(struct mqtt_gateway *gw)
{
    struct gw_config_mqtt nc;
    if (!gw->get_config(&nc, gw->config_ctx)) {
        GW_LOGW(MOD, "config getter failed: keeping the previous MQTT settings");
        return;
    }
    if (nc.topic_prefix[0] == '\0' || strpbrk(nc.topic_prefix, "+#") ||
        nc.ha_discovery_prefix[0] == '\0' || strpbrk(nc.ha_discovery_prefix, "+#")) {
        GW_LOGE(MOD, "new topic prefix \"%s\" / discovery prefix \"%s\" refused (empty or "
                     "wildcard): keeping the previous MQTT settings",
                nc.topic_prefix, nc.ha_discovery_prefix);
        return;
    }
    if (nc.publish_interval_ms == 0)
        nc.publish_interval_ms = 1000;
    if (nc.status_interval_ms == 0)
        nc.status_interval_ms = 5000;
    pthread_mutex_lock(&gw->lock);
    struct gw_config_mqtt old = gw->cfg;
    gw->cfg = nc;
    memset(gw->next_numeric_ms, 0, sizeof gw->next_numeric_ms);
    memset(gw->next_status_ms, 0, sizeof gw->next_status_ms);
    memset(gw->next_limits_ms, 0, sizeof gw->next_limits_ms);
    pthread_mutex_unlock(&gw->lock);

    bool prefix_changed = strcmp(old.topic_prefix, nc.topic_prefix) != 0;
    bool reconnecting = false;
    bool connected = mqtt_client_is_connected(gw->client);
    bool discovery_changed = prefix_changed || old.ha_discovery != nc.ha_discovery ||
                             strcmp(old.ha_discovery_prefix, nc.ha_discovery_prefix) != 0;
    /* Remove what the old settings announced before moving. */
    if (connected && old.ha_discovery && discovery_changed)
        publish_discovery(gw, &old, true);
    if (connected && prefix_changed) {
        /* Empty retained = delete the old availability topic rather than leave it "online". */
        char topic[TOPIC_MAX];
        if (mqtt_gateway_availability_topic(old.topic_prefix, topic, sizeof topic) == GW_OK)
            publish_raw(gw, topic, "", 0, 1, true);
    }

    if (gw->own_client) {
        if (prefix_changed)
            set_own_will(gw, nc.topic_prefix);
        if (!nc.enabled && old.enabled) {
            GW_LOGI(MOD, "MQTT disabled by configuration: disconnecting");
            publish_availability(gw, nc.topic_prefix, "offline");
            mqtt_client_stop(gw->client);
        } else if (nc.enabled && (!old.enabled || broker_settings_differ(&old, &nc) || prefix_changed)) {
            if (mqtt_client_reconfigure(gw->client, &nc) == GW_OK) {
                reconnecting = true;
                int rc = mqtt_client_start(gw->client);
                if (rc != GW_OK && rc != GW_ERR_STATE)
                    GW_LOGE(MOD, "cannot start the MQTT client: %s", gw_strerror(rc));
            }
        }
    } else if (prefix_changed) {
        GW_LOGW(MOD, "topic prefix changed to %s: the owner of the MQTT client must update its last "
                     "will topic", nc.topic_prefix);
    }
    /* A reconnection re-announces everything from the connect callback. */
    if (!reconnecting && mqtt_client_is_connected(gw->client)) {
        if (prefix_changed)
            publish_availability(gw, nc.topic_prefix, "online");
        /* Removal of the old announcement was done above. */
        if (discovery_changed && (nc.ha_discovery || !old.ha_discovery))
            publish_discovery(gw, &nc, false);
    }
    apply_commands(gw, false);
}

static void on_config(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    if (ev->size != sizeof(struct app_config_change))
        return;
    const struct app_config_change *ch = ev->payload;
    if (ch->sections & CONFIG_SECTION_MQTT)
        apply_config(gw);
}

static event_bus_handler_fn handler_of(int id)
{
    switch (id) {
    case EVENT_BMS_DATA_UPDATE: return on_bms_data;
    case EVENT_ALERT_RAISED:
    case EVENT_ALERT_CLEARED: return on_alert;
    case EVENT_CHARGE_LIMITS: return on_limits;
    case EVENT_BMS_VERSION_UPDATE: return on_version;
    default: return on_config;
    }
}

/* ------------------------------------------------------------------ API */

int mqtt_gateway_create(const struct mqtt_gateway_options *opt, struct mqtt_gateway **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!opt || !opt->bus || !opt->get_config)
        return GW_ERR_INVAL;
    struct mqtt_gateway *gw = calloc(1, sizeof *gw);
    if (!gw)
        return GW_ERR_NOMEM;
    pthread_mutex_init(&gw->lock, NULL);
    pthread_mutex_init(&gw->ctl_lock, NULL);
    gw->bus = opt->bus;
    gw->get_config = opt->get_config;
    gw->config_ctx = opt->config_ctx;
    gw->enabled = true;
    int rc;
    if (!gw->get_config(&gw->cfg, gw->config_ctx)) {
        GW_LOGE(MOD, "config getter failed at creation");
        rc = GW_ERR_INVAL;
        goto err;
    }
    if (gw->cfg.topic_prefix[0] == '\0' || strpbrk(gw->cfg.topic_prefix, "+#") ||
        gw->cfg.ha_discovery_prefix[0] == '\0' || strpbrk(gw->cfg.ha_discovery_prefix, "+#")) {
        GW_LOGE(MOD, "bad topic prefix \"%s\" or discovery prefix \"%s\" (empty or wildcard)",
                gw->cfg.topic_prefix, gw->cfg.ha_discovery_prefix);
        rc = GW_ERR_INVAL;
        goto err;
    }
    if (gw->cfg.publish_interval_ms == 0)
        gw->cfg.publish_interval_ms = 1000;
    if (gw->cfg.status_interval_ms == 0)
        gw->cfg.status_interval_ms = 5000;
    if (opt->client) {
        gw->client = opt->client;
    } else {
        char topic[TOPIC_MAX];
        rc = mqtt_gateway_availability_topic(gw->cfg.topic_prefix, topic, sizeof topic);
        if (rc != GW_OK)
            goto err;
        struct mqtt_client_will will = { .topic = topic, .payload = "offline", .qos = 1, .retain = true };
        rc = mqtt_client_create(&gw->cfg, gw->bus, &will, &gw->client);
        if (rc != GW_OK)
            goto err;
        gw->own_client = true;
    }
    *out = gw;
    return GW_OK;
err:
    pthread_mutex_destroy(&gw->lock);
    pthread_mutex_destroy(&gw->ctl_lock);
    free(gw);
    return rc;
}

int mqtt_gateway_start(struct mqtt_gateway *gw)
{
    if (!gw)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&gw->lock);
    if (gw->started) {
        pthread_mutex_unlock(&gw->lock);
        return GW_ERR_STATE;
    }
    gw->started = true;
    bool enabled_cfg = gw->cfg.enabled;
    pthread_mutex_unlock(&gw->lock);

    int rc = GW_OK;
    size_t subscribed = 0;
    for (; subscribed < sizeof handled_events / sizeof handled_events[0]; subscribed++) {
        int id = handled_events[subscribed];
        rc = event_bus_subscribe(gw->bus, id, handler_of(id), gw, MOD);
        if (rc != GW_OK)
            break;
    }
    if (rc != GW_OK) {
        GW_LOGE(MOD, "cannot subscribe to the event bus: %s", gw_strerror(rc));
        for (size_t i = 0; i < subscribed; i++)
            event_bus_unsubscribe(gw->bus, handled_events[i], handler_of(handled_events[i]), gw);
        pthread_mutex_lock(&gw->lock);
        gw->started = false;
        pthread_mutex_unlock(&gw->lock);
        return rc;
    }
    mqtt_client_set_connect_callback(gw->client, on_connected, gw);
    apply_commands(gw, false);
    if (mqtt_client_is_connected(gw->client))
        on_connected(gw); /* external client already up: announce now */
    if (gw->own_client) {
        if (enabled_cfg) {
            rc = mqtt_client_start(gw->client);
            if (rc != GW_OK && rc != GW_ERR_STATE) {
                mqtt_gateway_stop(gw);
                return GW_ERR_IO;
            }
        } else {
            GW_LOGI(MOD, "MQTT disabled in the configuration: not connecting");
        }
    }
    return GW_OK;
}

void mqtt_gateway_stop(struct mqtt_gateway *gw)
{
    if (!gw)
        return;
    pthread_mutex_lock(&gw->lock);
    bool was = gw->started;
    gw->started = false;
    char prefix[sizeof gw->cfg.topic_prefix];
    snprintf(prefix, sizeof prefix, "%s", gw->cfg.topic_prefix);
    pthread_mutex_unlock(&gw->lock);
    if (!was)
        return;
    for (size_t i = 0; i < sizeof handled_events / sizeof handled_events[0]; i++)
        event_bus_unsubscribe(gw->bus, handled_events[i], handler_of(handled_events[i]), gw);
    apply_commands(gw, true);
    mqtt_client_set_connect_callback(gw->client, NULL, NULL);
    if (mqtt_client_is_connected(gw->client))
        publish_availability(gw, prefix, "offline");
    if (gw->own_client)
        mqtt_client_stop(gw->client);
}

void mqtt_gateway_destroy(struct mqtt_gateway *gw)
{
    if (!gw)
        return;
    mqtt_gateway_stop(gw);
    if (gw->own_client)
        mqtt_client_destroy(gw->client);
    pthread_mutex_destroy(&gw->lock);
    pthread_mutex_destroy(&gw->ctl_lock);
    free(gw);
}

void mqtt_gateway_set_enabled(struct mqtt_gateway *gw, bool enabled)
{
    if (!gw)
        return;
    pthread_mutex_lock(&gw->lock);
    bool changed = gw->enabled != enabled;
    gw->enabled = enabled;
    if (enabled) {
        memset(gw->next_numeric_ms, 0, sizeof gw->next_numeric_ms);
        memset(gw->next_status_ms, 0, sizeof gw->next_status_ms);
    }
    pthread_mutex_unlock(&gw->lock);
    if (changed)
        GW_LOGI(MOD, "publishing %s", enabled ? "enabled" : "disabled");
}

void mqtt_gateway_get_stats(struct mqtt_gateway *gw, struct mqtt_gateway_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!gw)
        return;
    pthread_mutex_lock(&gw->lock);
    *out = gw->stats;
    out->enabled = gw->enabled;
    out->us_per_sample_avg = gw->stats.samples_published
                                 ? (double)gw->us_total / (double)gw->stats.samples_published
                                 : 0.0;
    pthread_mutex_unlock(&gw->lock);
}
