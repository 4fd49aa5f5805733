#define _GNU_SOURCE
#include "app.h"

#include "alert_manager.h"
#include "app_metrics.h"
#include "app_events.h"
#include "battery_service.h"
#include "bms_data.h"
#include "can_publisher.h"
#include "config_manager.h"
#include "dbus_battery.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_config.h"
#include "gw_error.h"
#include "gw_log.h"
#include "history_logger.h"
#include "monitoring.h"
#include "mqtt_gateway.h"
#include "ota_update.h"
#include "net_link.h"
#include "sim_process.h"
#include "uart_bms.h"
#include "web_server.h"
#include "watchdog.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>


_Static_assert(APP_EXIT_RESTART == OTA_EXIT_RESTART, "one restart code for the web API and the update launcher");

/* One pack of the bank: its serial port and how people call it. */
struct app_pack {
    char device[GW_PATH_MAX];
    char name[16];
    float capacity_ah;
};

/* What the live summary printed last (dispatcher thread only). */
struct app_summary {
    uint64_t printed_ms[APP_MAX_PACKS];
    uint8_t state[APP_MAX_PACKS];
    bool limits_known, limits_valid;
    float cvl_v, ccl_a, dcl_a;
    uint64_t limits_logged_ms;
};

/* A ramp moves CCL/DCL (and CVL follows the cells) on every view: between the changes that
 * matter at once, the limits are logged at most this often, with their newest values. */
#define LIMITS_LOG_MIN_INTERVAL_MS 30000u

struct app {
    const struct app_options *opts;
    struct event_bus *bus;
    struct config_manager *config;
    struct sim_process sim[APP_MAX_PACKS];
    unsigned sim_count;
    unsigned pack_count;
    struct app_pack packs[APP_MAX_PACKS];
    struct battery_service *battery;
    /* The battery service as MQTT's charge cap command sees it: set once it runs (the MQTT
     * gateway starts first, so that every start-up alert reaches the broker). */
    _Atomic(struct battery_service *) cap_battery;
    struct alert_manager *alerts;
    struct history_logger *history;
    struct mqtt_gateway *mqtt;
    struct can_publisher *can;
    struct dbus_battery *dbus;
    struct uart_bms *bms[APP_MAX_PACKS];
    struct web_server *web;
    struct ota_update *ota;
    struct net_link *net;
    struct monitoring *monitoring;
    struct app_metrics *metrics;
    struct app_summary summary;
    struct watchdog_client *wd_bms[APP_MAX_PACKS], *wd_can;
    atomic_bool switch_paused;   /* the update switch's CCL 0 cap is ours to lift */
};

void app_default_options(struct app_options *o)
{
    memset(o, 0, sizeof *o);
    o->data_dir = "/var/lib/tinybms-gw";
    o->summary = true;
    o->http_port = -1;
}

/* ------------------------------------------------------------------ live summary on stdout */

/* One line per accepted sample of each pack until the web UI exists, from the battery view (so
 * a refused, implausible sample is never shown as a reading), plus the pack state changes. */
static void print_pack_line(const struct battery_pack *p)
{
    const struct bms_live_data *d = &p->live;
    time_t t = (time_t)(d->wall_time_ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    char temps[48] = "n/a";
    int16_t tmin, tmax;
    if (bms_temp_min_dc(d, &tmin) && bms_temp_max_dc(d, &tmax))
        snprintf(temps, sizeof temps, "%.1f..%.1f C", tmin / 10.0, tmax / 10.0);
    char soh[16] = "n/a";
    if (d->soh_valid)
        snprintf(soh, sizeof soh, "%.0f%%", bms_soh_percent(d));
    printf("%02d:%02d:%02d bat%u %6.2f V %7.2f A %8.1f W  SOC %5.1f%% SOH %s  cells %u: %.3f (#%u)..%.3f (#%u) V "
           "spread %.1f mV  T %s  %s\n",
           tm.tm_hour, tm.tm_min, tm.tm_sec, d->battery_id, d->pack_voltage_v, d->pack_current_a,
           d->pack_voltage_v * d->pack_current_a, bms_soc_percent(d), soh, d->cell_count, d->min_cell_mv / 1000.0,
           d->min_cell_index, d->max_cell_mv / 1000.0, d->max_cell_index, d->cell_spread_mv_x10 / 10.0, temps,
           bms_online_status_name(d->online_status));
}

static void print_view(const struct gw_event *ev, void *ctx)
{
    struct app *app = ctx;
    struct app_summary *sm = &app->summary;
    const struct battery_view *v = EVENT_PAYLOAD(ev, struct battery_view);
    if (!v)
        return;
    for (unsigned i = 0; i < v->pack_count && i < APP_MAX_PACKS; i++) {
        const struct battery_pack *p = &v->packs[i];
        bool fresh = p->state == BATTERY_PACK_ONLINE || p->state == BATTERY_PACK_REJOINING;
        if (fresh && p->live.valid && p->live.timestamp_ms != sm->printed_ms[i]) {
            sm->printed_ms[i] = p->live.timestamp_ms;
            print_pack_line(p);
        }
        if (p->state != sm->state[i] && (v->pack_count > 1 || p->state != BATTERY_PACK_ONLINE)) {
            if (p->state == BATTERY_PACK_STALE && p->bad_reason[0])
                printf("%s: %s (last refused sample: %s)\n", p->name, battery_pack_state_name(p->state),
                       p->bad_reason);
            else
                printf("%s: %s\n", p->name, battery_pack_state_name(p->state));
        }
        sm->state[i] = p->state;
    }
    fflush(stdout); /* whole lines for whoever reads the pipe */
}

/* The limits the chargers are sent, with the rule behind each, go to the log (info): the first
 * thing to read when a charger does something unexpected. At once when they start, stop, or a
 * current limit reaches or leaves 0 A; other changes (a ramp, CVL following the cells) at most
 * every LIMITS_LOG_MIN_INTERVAL_MS, not on every poll. */
static void log_limits(const struct gw_event *ev, void *ctx)
{
    struct app *app = ctx;
    struct app_summary *sm = &app->summary;
    const struct battery_view *v = EVENT_PAYLOAD(ev, struct battery_view);
    if (!v)
        return;
    const struct battery_limits *l = &v->limits;
    const char *who = (v->limit_outputs & BATTERY_OUTPUT_CAN)    ? "CAN limits"
                      : (v->limit_outputs & BATTERY_OUTPUT_DBUS) ? "D-Bus limits"
                                                                 : "limits (no output sends them)";
    uint64_t now = gw_now_ms();
    if (l->valid) {
        if (sm->limits_known && sm->limits_valid && l->cvl_v == sm->cvl_v && l->ccl_a == sm->ccl_a &&
            l->dcl_a == sm->dcl_a)
            return;
        bool at_once = !sm->limits_known || !sm->limits_valid || (l->ccl_a == 0.0f) != (sm->ccl_a == 0.0f) ||
                       (l->dcl_a == 0.0f) != (sm->dcl_a == 0.0f);
        if (!at_once && now - sm->limits_logged_ms < LIMITS_LOG_MIN_INTERVAL_MS)
            return; /* compared with what was logged last: the next line shows the newest values */
        GW_LOGI(MOD, "%s: CVL %.2f V (%s), CCL %.1f A (%s), DCL %.1f A (%s)", who, l->cvl_v, l->cvl_reason,
                l->ccl_a, l->ccl_reason, l->dcl_a, l->dcl_reason);
    } else {
        if (!sm->limits_known || !sm->limits_valid)
            return; /* said once when they stop; nothing before the first */
        if (v->limit_outputs & BATTERY_OUTPUT_CAN)
            GW_LOGW(MOD, "CAN limits: 0x351 withheld (no fresh BMS data): chargers stop within 3 s");
        else
            GW_LOGW(MOD, "limits: none (no fresh BMS data)");
    }
    sm->limits_logged_ms = now;
    sm->limits_known = true;
    sm->limits_valid = l->valid;
    sm->cvl_v = l->cvl_v;
    sm->ccl_a = l->ccl_a;
    sm->dcl_a = l->dcl_a;
}

static void print_notice(const struct gw_event *ev, void *ctx)
{
    (void)ctx;
    if (ev->id == EVENT_BMS_COMM_LOST || ev->id == EVENT_BMS_COMM_RESTORED) {
        const struct app_bms_comm *in = EVENT_PAYLOAD(ev, struct app_bms_comm);
        if (!in)
            return;
        struct app_bms_comm c = *in;
        printf("battery %u: communication %s (%s)\n", c.battery_id,
               ev->id == EVENT_BMS_COMM_LOST ? "LOST" : "restored", c.reason);
    } else {
        return;
    }
    fflush(stdout);
}

/* systemd readiness: a pack is ready with its first sample, or once its BMS is declared absent
 * (communication lost); READY=1 goes when every pack is (watchdog_expect_ready). */
static void on_pack_ready(const struct gw_event *ev, void *ctx)
{
    struct app *app = ctx;
    if (ev->id == EVENT_BMS_DATA_UPDATE) {
        const struct bms_live_data *d = EVENT_PAYLOAD(ev, struct bms_live_data);
        if (d)
            watchdog_unit_ready(app->opts->watchdog, d->battery_id, "first sample of every pack");
    } else if (ev->id == EVENT_BMS_COMM_LOST) {
        const struct app_bms_comm *c = EVENT_PAYLOAD(ev, struct app_bms_comm);
        if (c)
            watchdog_unit_ready(app->opts->watchdog, c->battery_id, "BMS absent or silent");
    }
}

/* ------------------------------------------------------------------ configuration */

static int alerts_config(void *ctx, struct gw_config_alerts *out)
{
    struct gw_config cfg;
    config_manager_get(ctx, &cfg);
    *out = cfg.alerts;
    return GW_OK;
}

static int history_config(void *ctx, struct gw_config_history *out)
{
    struct gw_config cfg;
    config_manager_get(ctx, &cfg);
    *out = cfg.history;
    return GW_OK;
}

/* MQTT cmd/charge_cap -> the battery service (which answers applied / no effect). */
static int mqtt_charge_cap(void *ctx, const struct app_charge_cap *cap, char *answer, size_t len)
{
    struct app *app = ctx;
    struct battery_service *bs = atomic_load(&app->cap_battery);
    if (!bs) {
        snprintf(answer, len, "no effect: the battery service is not running yet");
        return GW_ERR_STATE;
    }
    return battery_service_request_cap(bs, cap, answer, len);
}

static bool mqtt_config(struct gw_config_mqtt *out, void *ctx)
{
    struct gw_config cfg;
    config_manager_get(ctx, &cfg);
    *out = cfg.mqtt;
    return true;
}

/* The battery engine's settings from the configuration and the resolved pack list. */
static void engine_config(const struct app *app, const struct gw_config *cfg, struct battery_engine_config *out)
{
    battery_engine_default_config(out);
    out->pack_count = (uint8_t)app->pack_count;
    for (unsigned i = 0; i < app->pack_count; i++) {
        out->packs[i].id = (uint8_t)i;
        snprintf(out->packs[i].name, sizeof out->packs[i].name, "%s", app->packs[i].name);
        out->packs[i].capacity_ah = app->packs[i].capacity_ah;
    }
    out->charge = cfg->charge;
    out->stale_after_ms = cfg->battery.stale_after_ms;
    out->offline_after_ms = cfg->bms.comm_timeout_ms;
    out->frozen_after_ms = cfg->battery.frozen_after_ms;
    out->implausible_in_row = cfg->battery.implausible_in_row;
    out->min_online = cfg->battery.min_online_packs;
    out->rejoin_max_dv = cfg->battery.rejoin_max_dv;
    out->soc_spread_pct = cfg->battery.soc_spread_percent;
    out->soc_full_pct = cfg->bms.soc_full_percent;
    out->soc_empty_pct = cfg->bms.soc_empty_percent;
}

/* Applies what the running services can take live; the rest is logged by config_manager as
 * "restart required". */
static void on_config_updated(const struct gw_event *ev, void *ctx)
{
    (void)ev;
    struct app *app = ctx;
    struct gw_config cfg;
    config_manager_get(app->config, &cfg);
    for (unsigned i = 0; i < app->pack_count; i++) {
        if (!app->bms[i])
            continue;
        uart_bms_set_poll_interval_ms(app->bms[i], cfg.bms.poll_interval_ms);
        uart_bms_set_cell_order(app->bms[i], cfg.bms.cell_order);
        uart_bms_set_comm_timeout_ms(app->bms[i], cfg.bms.comm_timeout_ms);
    }
    if (app->battery) {
        struct battery_engine_config ec;
        engine_config(app, &cfg, &ec);
        int rc = battery_service_apply_config(app->battery, &ec);
        if (!rc)
            rc = battery_service_set_save_period_s(app->battery, cfg.can.energy_save_period_s);
        if (rc)
            GW_LOGW(MOD, "battery settings not applied: %s", gw_strerror(rc));
    }
    if (app->can) {
        int rc = can_publisher_apply_config(app->can, &cfg);
        if (rc)
            GW_LOGW(MOD, "CAN settings not applied: %s", gw_strerror(rc));
    }
}

/* The command line overrides the stored configuration for this run only (never saved). */
static int apply_cli_overrides(struct app *app, const char *uart_device)
{
    const struct app_options *o = app->opts;
    cJSON *root = cJSON_CreateObject();
    cJSON *bms = cJSON_AddObjectToObject(root, "bms");
    if (uart_device)
        cJSON_AddStringToObject(bms, "uart_device", uart_device);
    if (o->poll_ms)
        cJSON_AddNumberToObject(bms, "poll_interval_ms", o->poll_ms);
    if (o->can_spec) {
        cJSON *can = cJSON_AddObjectToObject(root, "can");
        cJSON_AddBoolToObject(can, "enabled", true);
        cJSON_AddStringToObject(can, "interface", o->can_spec);
    }
    if (o->dbus) {
        cJSON *dbus = cJSON_AddObjectToObject(root, "dbus");
        cJSON_AddBoolToObject(dbus, "enabled", true);
    }
    if (o->mqtt_uri) {
        if (strchr(o->mqtt_uri, '@')) {
            GW_LOGE(MOD, "--mqtt: put the user name and password in the configuration (mqtt.username, "
                         "mqtt.password), not in the URI, where every user of this machine could read them");
            cJSON_Delete(root);
            return GW_ERR_INVAL;
        }
        cJSON *mqtt = cJSON_AddObjectToObject(root, "mqtt");
        cJSON_AddBoolToObject(mqtt, "enabled", true);
        cJSON_AddStringToObject(mqtt, "broker_uri", o->mqtt_uri);
    }
    if (o->http_port >= 0) {
        cJSON *web = cJSON_AddObjectToObject(root, "web");
        cJSON_AddBoolToObject(web, "enabled", o->http_port > 0);
        if (o->http_port > 0)
            cJSON_AddNumberToObject(web, "http_port", o->http_port);
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json)
        return GW_ERR_NOMEM;
    int rc = config_manager_set_override_json(app->config, json);
    free(json);
    if (rc)
        GW_LOGE(MOD, "command-line values rejected (see the lines above): %s", gw_strerror(rc));
    return rc;
}

/* What would make the start fail, checked before anything is created or generated: a bare
 * start with no BMS anywhere, a serial device this user may not open. */
static int preflight(const struct app_options *o)
{
    if (!o->simulate && o->uart_count == 0) {
        char path[GW_PATH_MAX + 16];
        const char *file = o->config_file;
        if (!file) {
            snprintf(path, sizeof path, "%s/config.json", o->data_dir);
            file = path;
        }
        if (access(file, F_OK) != 0) {
            GW_LOGE(MOD, "no BMS serial device: use --uart DEV, --simulate, or a configuration naming "
                         "one (%s does not exist)", file);
            return GW_ERR_INVAL;
        }
    }
    for (int i = 0; !o->simulate && i < o->uart_count; i++) {
        const char *dev = o->uart_devices[i];
        if (access(dev, F_OK) != 0)
            GW_LOGW(MOD, "%s does not exist (yet): waiting for it (adapter unplugged?)", dev);
        else if (access(dev, R_OK | W_OK) != 0) {
            GW_LOGE(MOD, "no permission to open %s: %s (add this user to the group owning it, "
                         "usually dialout)", dev, strerror(errno));
            return GW_ERR_INVAL;
        }
    }
    return GW_OK;
}

/* A data directory that cannot be created is treated like an existing one that cannot be
 * written (read-only or full disk): the battery stays managed, nothing is kept, the services
 * raise their storage alerts. */
static void ensure_dir(const char *path)
{
    if (mkdir(path, 0750) == 0 || errno == EEXIST)
        return;
    GW_LOGE(MOD, "cannot create data directory %s: %s: running unsaved (configuration, history, "
                 "alerts and energy counters are not kept)", path, strerror(errno));
}

/* One gateway per data directory: an exclusive lock held for the life of the process (the
 * kernel drops it when the process dies, even by SIGKILL). Returns the descriptor, -1 when the
 * directory cannot hold a lock file (unsaved run), or -2 when another gateway holds it. */
static int lock_data_dir(const char *dir)
{
    char path[GW_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/tinybms-gw.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        GW_LOGW(MOD, "cannot create %s: %s: not protected against a second gateway on this "
                     "directory", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[24] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        GW_LOGE(MOD, "another tinybms-gw (PID %s) is running on data directory %s: stop it, or give "
                     "this one its own --data-dir", pid[0] ? pid : "unknown", dir);
        close(fd);
        return -2;
    }
    char pid[24];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        GW_LOGW(MOD, "cannot write the PID into %s: %s", path, strerror(errno));
    return fd;
}

/* ------------------------------------------------------------------ services */

/* POST /api/system/restart (a web server thread): the main thread's sigwait takes it. */
static void request_restart(void *ctx)
{
    (void)ctx;
    kill(getpid(), SIGUSR1);
}

/* ------------------------------------------------------------------ charging paused during a switch */

/* update.pause_charge_on_switch: CCL 0 (an external cap of the battery service, so CAN and
 * D-Bus both send it) from the moment this process stops for a new release until the new one
 * is healthy; a release found unhealthy is stopped and the previous one starts without the cap. */
#define SWITCH_CAP_SOURCE "update switch" /* the CCL reason reads "external cap update switch" */
#define SWITCH_CAP_MARGIN_S 60u /* beyond the trial timeout: the launcher decides before */

static void switch_pause(struct app *app, uint32_t duration_s, const char *why)
{
    struct app_charge_cap cap = { .ccl_cap_a = 0.0f, .dcl_cap_a = -1.0f, .duration_s = duration_s };
    snprintf(cap.source, sizeof cap.source, "%s", SWITCH_CAP_SOURCE);
    char answer[64];
    battery_service_request_cap(app->battery, &cap, answer, sizeof answer);
    atomic_store(&app->switch_paused, true);
    GW_LOGI(MOD, "charging paused (charge current limit 0 A) %s: %s", why, answer);
}

/* The health watch's callback: this release on trial is healthy, charging resumes. */
static void switch_resume(void *ctx)
{
    struct app *app = ctx;
    /* Lifted even when the option was turned off meanwhile: the cap was set at this start. */
    if (!app->battery || !atomic_exchange(&app->switch_paused, false))
        return;
    struct app_charge_cap cap = { .ccl_cap_a = -1.0f, .dcl_cap_a = -1.0f, .duration_s = 0 };
    snprintf(cap.source, sizeof cap.source, "%s", SWITCH_CAP_SOURCE);
    battery_service_request_cap(app->battery, &cap, NULL, 0);
    /* (not app->ota: the health thread may call this before ota_update_create has returned) */
    GW_LOGI(MOD, "charging resumed: this new release is healthy");
}

/* Before stopping for a new release: the cap, then (bounded) until a 0x351 with CCL 0 went out,
 * so that the last limit the inverter holds through the restart is 0 A. */
static void pause_before_switch(struct app *app)
{
    struct gw_config cfg;
    config_manager_get(app->config, &cfg);
    if (!app->battery || !cfg.update.pause_charge_on_switch || !ota_update_switch_pending(app->ota))
        return;
    uint64_t after = 0;
    struct can_tap_entry e[32];
    size_t n;
    if (app->can) /* what went out before the cap does not count */
        while ((n = can_publisher_tap_read(app->can, after, e, 32)) > 0)
            after = e[n - 1].seq;
    switch_pause(app, SWITCH_CAP_MARGIN_S, "for the switch to a new release");
    if (!app->can)
        return;
    uint64_t deadline = gw_now_ms() + 2u * cfg.can.live_period_ms + 1000u;
    while (gw_now_ms() < deadline) {
        n = can_publisher_tap_read(app->can, after, e, 32);
        for (size_t i = 0; i < n; i++) {
            after = e[i].seq;
            const struct can_frame_gw *f = &e[i].frame;
            if (e[i].dir == CAN_TAP_TX && e[i].result == GW_OK && f->id == 0x351 && f->dlc >= 4 &&
                f->data[2] == 0 && f->data[3] == 0)
                return;
        }
        struct timespec ts = { 0, 20 * 1000 * 1000 }; /* a bounded wait on the CAN scheduler's next cycle */
        nanosleep(&ts, NULL);
    }
    GW_LOGW(MOD, "no 0x351 with CCL 0 went out before the switch (CAN offline?): the inverter keeps the last "
                 "limit until the new release sends 0 A");
}

static int start_services(struct app *app)
{
    const struct app_options *o = app->opts;
    struct gw_config cfg;
    config_manager_get(app->config, &cfg);
    int rc;
    /* The threads systemd's watchdog follows: every BMS poller, then the CAN scheduler. */
    for (unsigned i = 0; i < app->pack_count; i++) {
        char name[24];
        snprintf(name, sizeof name, "bms-poll%u", i);
        app->wd_bms[i] = watchdog_client_add(o->watchdog, name);
    }
    /* Ready with every pack's first sample, or its BMS declared absent: within the BMS
     * communication timeout (plus the time to open, wake and read it). */
    watchdog_expect_ready(o->watchdog, app->pack_count, cfg.bms.comm_timeout_ms + 30000u);

    /* MQTT first: an alert raised while the stores open (a read-only or full disk) is not
     * retained, so the gateway must already listen to carry it (queued until the broker answers). */
    if (cfg.mqtt.enabled) {
        struct mqtt_gateway_options mo = { .bus = app->bus, .get_config = mqtt_config, .config_ctx = app->config,
                                           .charge_cap = mqtt_charge_cap, .charge_cap_ctx = app };
        rc = mqtt_gateway_create(&mo, &app->mqtt);
        if (!rc)
            rc = mqtt_gateway_start(app->mqtt);
        if (rc) {
            GW_LOGE(MOD, "cannot start MQTT (%s): %s", cfg.mqtt.broker_uri, gw_strerror(rc));
            return rc;
        }
    }

    struct alert_manager_options ao = { .bus = app->bus, .data_dir = o->data_dir, .config = cfg.alerts,
                                        .get_config = alerts_config, .get_config_ctx = app->config };
    rc = alert_manager_create(&ao, &app->alerts);
    if (rc) {
        GW_LOGE(MOD, "cannot start the alert manager: %s", gw_strerror(rc));
        return rc;
    }

    if (cfg.history.enabled) {
        struct history_logger_options ho = { .bus = app->bus, .data_dir = o->data_dir, .config = cfg.history,
                                             .get_config = history_config, .get_config_ctx = app->config };
        rc = history_logger_create(&ho, &app->history);
        if (rc) {
            GW_LOGE(MOD, "cannot start the history logger: %s", gw_strerror(rc));
            return rc;
        }
    }

    /* After the alert manager and history: a refused energy.json raises its alert at once. */
    struct battery_service_options bso = { .bus = app->bus, .data_dir = o->data_dir,
                                           .save_period_s = cfg.can.energy_save_period_s };
    engine_config(app, &cfg, &bso.engine);
    rc = battery_service_create(&bso, &app->battery);
    if (!rc)
        rc = battery_service_start(app->battery);
    if (rc) {
        GW_LOGE(MOD, "cannot start the battery service: %s", gw_strerror(rc));
        return rc;
    }
    atomic_store(&app->cap_battery, app->battery);
    /* Before any output starts: a release on trial never sends a charge limit above 0 A
     * until it is healthy (switch_resume). */
    if (cfg.update.pause_charge_on_switch && ota_update_launched_on_trial())
        switch_pause(app, (cfg.update.trial_timeout_s ? cfg.update.trial_timeout_s : 120u) + SWITCH_CAP_MARGIN_S,
                     "until this new release is healthy");

    if (cfg.can.enabled) {
        app->wd_can = watchdog_client_add(o->watchdog, "can-tx");
        struct can_publisher_options co = { .config = &cfg, .bus = app->bus, .watchdog = app->wd_can };
        rc = can_publisher_create(&co, &app->can);
        if (!rc)
            rc = can_publisher_start(app->can);
        if (rc) {
            GW_LOGE(MOD, "cannot start CAN on '%s': %s", cfg.can.interface, gw_strerror(rc));
            return rc;
        }
    }

    if (cfg.dbus.enabled) {
        struct dbus_battery_options dbo = { .bus = app->bus, .stale_timeout_ms = cfg.can.stale_timeout_ms,
                                            .device_instance = cfg.dbus.device_instance,
                                            .per_pack = cfg.dbus.per_pack, .capacity = cfg.dbus.capacity,
                                            .pack_count = (uint8_t)app->pack_count };
        for (unsigned i = 0; i < app->pack_count; i++) {
            dbo.pack_devices[i] = app->packs[i].device;
            dbo.pack_names[i] = app->packs[i].name;
        }
        rc = dbus_battery_create(&dbo, &app->dbus);
        if (!rc)
            rc = dbus_battery_start(app->dbus);
        if (rc) {
            GW_LOGE(MOD, "cannot start the D-Bus battery service: %s", gw_strerror(rc));
            return rc;
        }
    }

    battery_service_set_limit_outputs(app->battery, (app->can ? BATTERY_OUTPUT_CAN : 0) |
                                                        (app->dbus ? BATTERY_OUTPUT_DBUS : 0));

    for (unsigned i = 0; i < app->pack_count; i++) {
        struct uart_bms_options bo;
        uart_bms_default_options(&bo);
        bo.battery_id = (uint8_t)i;
        snprintf(bo.device, sizeof bo.device, "%s", app->packs[i].device);
        bo.poll_interval_ms = cfg.bms.poll_interval_ms;
        bo.comm_timeout_ms = cfg.bms.comm_timeout_ms;
        bo.slow_poll_interval_s = cfg.bms.slow_poll_interval_s;
        bo.cell_order = cfg.bms.cell_order;
        bo.log_frames = o->verbose >= 2; /* -vv */
        bo.watchdog = app->wd_bms[i];
        bo.bus = app->bus;
        rc = uart_bms_create(&bo, &app->bms[i]);
        if (!rc)
            rc = uart_bms_start(app->bms[i]);
        if (rc) {
            GW_LOGE(MOD, "cannot start the BMS poller of %s on '%s': %s", app->packs[i].name, bo.device,
                    gw_strerror(rc));
            return rc;
        }
        if (app->pack_count > 1)
            GW_LOGI(MOD, "%s: TinyBMS on %s (battery id %u)", app->packs[i].name, bo.device, i);
    }
    return GW_OK;
}

/* Last: the web server reads every service (the pollers' settings and frame taps, the update
 * service, the monitoring, the network link). A server that cannot start is an alert, not a
 * stop. Once it serves plain HTTP on an address the loopback reaches, answering there is part of
 * an update's health on trial. */
static void start_web(struct app *app)
{
    struct gw_config cfg;
    config_manager_get(app->config, &cfg);
    int rc;
    if (cfg.web.enabled) {
        struct web_server_options wo = { .bus = app->bus, .config = app->config, .battery = app->battery,
                                         .alerts = app->alerts, .history = app->history,
                                         .bms = app->bms, .bms_count = app->pack_count, .can = app->can,
                                         .ota = app->ota, .monitoring = app->monitoring, .net = app->net,
                                         .restart = request_restart, .restart_ctx = app };
        rc = web_server_create(&wo, &app->web);
        if (rc) {
            /* The battery must keep being managed (CAN, MQTT) without its web page: say it loudly
             * and raise an alert instead of stopping. */
            char msg[160];
            snprintf(msg, sizeof msg, "web server not started on %s:%u: %s (see the log)", cfg.web.bind_address,
                     cfg.web.http_port, gw_strerror(rc));
            GW_LOGE(MOD, "%s; the gateway runs without it (--http PORT for another port, --http 0 for none)", msg);
            alert_manager_raise(app->alerts, "WEB_UNAVAILABLE", ALERT_LEVEL_ERROR, msg);
            app->web = NULL;
        }
    }

    if (app->web && !cfg.web.https_enabled &&
        (strcmp(cfg.web.bind_address, "0.0.0.0") == 0 || strcmp(cfg.web.bind_address, "127.0.0.1") == 0))
        ota_update_set_http_port(app->ota, (uint16_t)web_server_port(app->web));
    char web[32] = "off";
    if (app->web)
        snprintf(web, sizeof web, "port %d", web_server_port(app->web));
    GW_LOGI(MOD, "services: %u pack%s (%s%s) every %u ms, CAN %s, D-Bus %s, MQTT %s, history %s, web %s",
            app->pack_count, app->pack_count == 1 ? "" : "s in parallel", app->packs[0].device,
            app->pack_count > 1 ? ", ..." : "", cfg.bms.poll_interval_ms, app->can ? cfg.can.interface : "off",
            app->dbus ? "on" : "off", app->mqtt ? cfg.mqtt.broker_uri : "off", app->history ? "on" : "off", web);
}

/* The network link watcher and the monitoring (with a source per service). Neither can stop the
 * gateway: a failure is logged and the gateway runs without them. */
static void start_observers(struct app *app, const struct gw_config *cfg)
{
    struct net_link_options no = { .bus = app->bus,
                                   .interface = cfg->network.interface,
                                   .wpa_reconnect = cfg->network.reconnect == GW_NET_RECONNECT_WPA,
                                   .wpa_ctrl_dir = cfg->network.wpa_ctrl_dir,
                                   .wifi_ssid = cfg->network.wifi_ssid,
                                   .wifi_password = cfg->network.wifi_password };
    if (net_link_create(&no, &app->net) == GW_OK && net_link_start(app->net) != GW_OK) {
        net_link_destroy(app->net); /* the reason was logged */
        app->net = NULL;
    }
    struct monitoring_options mo = { .data_dir = app->opts->data_dir };
    int rc = monitoring_create(&mo, &app->monitoring);
    struct app_metrics_services ms = { .data_dir = app->opts->data_dir, .bms = app->bms,
                                       .pack_count = app->pack_count, .battery = app->battery, .can = app->can,
                                       .mqtt = app->mqtt, .history = app->history, .alerts = app->alerts,
                                       .net = app->net };
    if (!rc)
        rc = app->metrics ? app_metrics_add_sources(app->metrics, &ms, app->monitoring) : GW_ERR_STATE;
    if (!rc)
        rc = monitoring_start(app->monitoring);
    if (rc) {
        GW_LOGW(MOD, "monitoring not available: %s", gw_strerror(rc));
        monitoring_destroy(app->monitoring);
        app->monitoring = NULL;
        app_metrics_destroy(app->metrics);
        app->metrics = NULL;
    }
}

/* First at stop: no source may run once the services it reads are gone. */
static void stop_observers(struct app *app)
{
    monitoring_stop(app->monitoring);
    app_metrics_destroy(app->metrics);
    app->metrics = NULL;
    monitoring_destroy(app->monitoring);
    app->monitoring = NULL;
    net_link_destroy(app->net);
    app->net = NULL;
}

/* SIGUSR1: the task stats to the log, and with --metrics-dump the Prometheus text to its file. */
static void dump_metrics(struct app *app)
{
    if (!app->monitoring) {
        GW_LOGW(MOD, "SIGUSR1: monitoring is not running");
        return;
    }
    monitoring_log_task_stats(app->monitoring);
    if (app->opts->metrics_dump && monitoring_write_prometheus_file(app->monitoring, app->opts->metrics_dump) == GW_OK)
        GW_LOGI(MOD, "metrics written to %s", app->opts->metrics_dump);
}

/* Reverse order of start: the source of samples first, the bus (which delivers what is still
 * queued) after every subscriber is gone. */
static void stop_all(struct app *app)
{
    /* Our own handlers first: on_config_updated touches the services destroyed below. */
    if (app->bus) {
        event_bus_unsubscribe(app->bus, EVENT_CONFIG_UPDATED, on_config_updated, app);
        event_bus_unsubscribe(app->bus, EVENT_BATTERY_UPDATE, print_view, app);
        event_bus_unsubscribe(app->bus, EVENT_BMS_COMM_LOST, print_notice, NULL);
        event_bus_unsubscribe(app->bus, EVENT_BMS_COMM_RESTORED, print_notice, NULL);
        event_bus_unsubscribe(app->bus, EVENT_BMS_DATA_UPDATE, on_pack_ready, app);
        event_bus_unsubscribe(app->bus, EVENT_BMS_COMM_LOST, on_pack_ready, app);
    }
    /* The web server first: its handlers read every service below. */
    web_server_destroy(app->web);
    app->web = NULL;
    ota_update_destroy(app->ota);
    app->ota = NULL;
    stop_observers(app);
    for (unsigned i = 0; i < APP_MAX_PACKS; i++) {
        uart_bms_destroy(app->bms[i]);
        app->bms[i] = NULL;
    }
    dbus_battery_destroy(app->dbus); /* values invalidated, then the name released */
    app->dbus = NULL;
    can_publisher_destroy(app->can);
    app->can = NULL;
    mqtt_gateway_destroy(app->mqtt);
    app->mqtt = NULL;
    atomic_store(&app->cap_battery, NULL);
    battery_service_destroy(app->battery); /* saves the energy counters and charge states */
    app->battery = NULL;
    int flushed = app->bus ? event_bus_flush(app->bus, 2000) : GW_OK;
    if (flushed != GW_OK) /* shutting down anyway: the history may miss the last few seconds */
        GW_LOGW(MOD, "events still queued at shutdown: %s", gw_strerror(flushed));
    history_logger_destroy(app->history); /* writes pending samples */
    app->history = NULL;
    alert_manager_destroy(app->alerts);
    app->alerts = NULL;
    event_bus_destroy(app->bus);
    app->bus = NULL;
    config_manager_destroy(app->config);
    app->config = NULL;
    for (unsigned i = 0; i < app->sim_count; i++)
        sim_process_stop(&app->sim[i]);
    app->sim_count = 0;
}

/* Simulated packs in parallel differ like real ones do: another cell spread, another state of
 * charge, and from the third on another capacity. The user's --sim-arg come after, so they win. */
static int start_simulators(struct app *app)
{
    const struct app_options *o = app->opts;
    unsigned n = o->simulate_packs > 0 ? (unsigned)o->simulate_packs : 1;
    for (unsigned i = 0; i < n; i++) {
        char seed[24], soc[24];
        const char *args[APP_MAX_SIM_ARGS + 8];
        unsigned k = 0;
        if (n > 1) {
            snprintf(seed, sizeof seed, "--seed=%u", i + 1);
            snprintf(soc, sizeof soc, "--soc=%u", 55 + (i * 7) % 30);
            args[k++] = seed;
            args[k++] = soc;
            args[k++] = i < 2 ? "--capacity=280" : (i == 2 ? "--capacity=200" : "--capacity=100");
        }
        for (int a = 0; a < o->sim_argc; a++)
            args[k++] = o->sim_args[a];
        args[k] = NULL;
        int rc = sim_process_start(&app->sim[i], args, 10000);
        if (rc)
            return rc;
        app->sim_count = i + 1;
        snprintf(app->packs[i].device, sizeof app->packs[i].device, "%s", app->sim[i].pty_path);
    }
    app->pack_count = n;
    return GW_OK;
}

/* The packs of this run: the simulators, the --uart list (names and capacities from the
 * configured pack with the same port), the configured pack list, or the single bms.uart_device. */
static int resolve_packs(struct app *app, const struct gw_config *cfg)
{
    const struct app_options *o = app->opts;
    const struct gw_config_pack_list *cp = &cfg->battery.packs;
    if (o->simulate) {
        /* already filled by start_simulators */
    } else if (o->uart_count > 0) {
        app->pack_count = (unsigned)o->uart_count;
        for (int i = 0; i < o->uart_count; i++)
            snprintf(app->packs[i].device, sizeof app->packs[i].device, "%s", o->uart_devices[i]);
    } else if (cp->count > 0) {
        app->pack_count = cp->count;
        for (unsigned i = 0; i < cp->count; i++)
            snprintf(app->packs[i].device, sizeof app->packs[i].device, "%s", cp->packs[i].uart_device);
    } else if (cfg->bms.uart_device[0]) {
        app->pack_count = 1;
        snprintf(app->packs[0].device, sizeof app->packs[0].device, "%s", cfg->bms.uart_device);
    } else {
        GW_LOGE(MOD, "no BMS serial device: use --uart DEV, set bms.uart_device (or battery.packs) in the "
                     "configuration, or --simulate");
        return GW_ERR_INVAL;
    }
    for (unsigned i = 0; i < app->pack_count; i++) {
        struct app_pack *p = &app->packs[i];
        for (unsigned k = 0; k < cp->count; k++) {
            if (strcmp(cp->packs[k].uart_device, p->device) == 0) {
                snprintf(p->name, sizeof p->name, "%s", cp->packs[k].name);
                p->capacity_ah = cp->packs[k].capacity_ah;
            }
        }
        if (!p->name[0])
            snprintf(p->name, sizeof p->name, "pack %u", i + 1);
        for (unsigned k = 0; k < i; k++) {
            if (strcmp(app->packs[k].device, p->device) == 0) {
                GW_LOGE(MOD, "%s is given twice: one TinyBMS per serial port", p->device);
                return GW_ERR_INVAL;
            }
        }
    }
    return GW_OK;
}

/* ------------------------------------------------------------------ updates */

/* An installed update (web upload, --install-update, rollback) restarts the daemon into it
 * through request_restart, as the web API's restart does. */

static void update_options(const struct gw_config *cfg, struct ota_update_options *o)
{
    o->keyring_dir = cfg->update.keyring_dir;
    o->trial_timeout_s = cfg->update.trial_timeout_s;
    o->trial_max_starts = cfg->update.trial_max_starts;
    o->health_can_s = cfg->update.health_can_s;
}

/* The update service; on trial it watches this start's health for the launcher. */
static void start_updates(struct app *app)
{
    struct gw_config cfg;
    config_manager_get(app->config, &cfg);
    struct ota_update_options o = { .data_dir = app->opts->data_dir, .bus = app->bus, .config_loaded = true,
                                    .pack_count = app->pack_count, .can_enabled = app->can != NULL,
                                    /* set once the web server serves (start_web) */
                                    .http_port = 0, .restart = request_restart, .restart_ctx = app,
                                    .healthy = switch_resume };
    update_options(&cfg, &o);
    int rc = ota_update_create(&o, &app->ota);
    if (rc) {
        GW_LOGE(MOD, "updates unavailable: %s", gw_strerror(rc));
        return;
    }
    const char *notice = ota_update_rollback_notice(app->ota);
    if (notice[0] && app->alerts)
        alert_manager_raise(app->alerts, "UPDATE_ROLLED_BACK", ALERT_LEVEL_ERROR, notice);
}

int app_update_cli(const struct app_options *opts, struct ota_cli_options *cli)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    char path[GW_PATH_MAX + 16];
    const char *file = opts->config_file;
    if (!file) {
        snprintf(path, sizeof path, "%s/config.json", opts->data_dir);
        file = path;
    }
    if (access(file, F_OK) == 0) {
        struct config_manager *cm = NULL;
        struct config_manager_options cmo = { .data_dir = opts->data_dir, .config_file = opts->config_file };
        if (config_manager_create(&cmo, &cm) == GW_OK) {
            config_manager_get(cm, &cfg);
            config_manager_destroy(cm);
        }
    }
    struct ota_update_options o = { 0 };
    update_options(&cfg, &o);
    cli->data_dir = opts->data_dir;
    if (!cli->keyring_dir && cfg.update.keyring_dir[0])
        cli->keyring_dir = cfg.update.keyring_dir; /* lives until ota_update_cli returns */
    cli->trial_timeout_s = o.trial_timeout_s;
    cli->trial_max_starts = o.trial_max_starts;
    cli->health_can_s = o.health_can_s;
    return ota_update_cli(cli);
}

struct probe_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool found;
    struct bms_live_data sample;
};

static void probe_sample(const struct bms_live_data *sample, void *ctx)
{
    struct probe_wait *w = ctx;
    pthread_mutex_lock(&w->lock);
    if (!w->found)
        w->sample = *sample;
    w->found = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int app_probe(const struct app_options *opts, uint32_t timeout_ms)
{
    if (opts->uart_count != 1 || opts->simulate) {
        GW_LOGE(MOD, "--probe needs exactly one --uart DEV");
        return 2;
    }
    const char *dev = opts->uart_devices[0];
    if (access(dev, F_OK) != 0) {
        GW_LOGE(MOD, "probe: %s does not exist", dev);
        return 1;
    }
    struct probe_wait w = { .found = false };
    pthread_mutex_init(&w.lock, NULL);
    if (gw_clock_cond_init(&w.cond) != GW_OK) {
        pthread_mutex_destroy(&w.lock);
        return 1;
    }
    struct uart_bms_options bo;
    uart_bms_default_options(&bo);
    snprintf(bo.device, sizeof bo.device, "%s", dev);
    bo.poll_interval_ms = 200;
    struct uart_bms *ub = NULL;
    int rc = uart_bms_create(&bo, &ub);
    if (!rc)
        rc = uart_bms_add_listener(ub, probe_sample, &w);
    if (!rc)
        rc = uart_bms_start(ub);
    uint64_t start = gw_now_ms();
    pthread_mutex_lock(&w.lock);
    while (!rc && !w.found) {
        uint64_t spent = gw_now_ms() - start;
        if (spent >= timeout_ms ||
            gw_clock_wait_real(&w.cond, &w.lock, (uint32_t)(timeout_ms - spent)) == GW_ERR_TIMEOUT)
            break;
    }
    bool found = w.found;
    struct bms_live_data d = w.sample;
    pthread_mutex_unlock(&w.lock);
    uart_bms_destroy(ub);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    if (!found) {
        GW_LOGE(MOD, "probe: no TinyBMS answered on %s within %u ms%s%s", dev, (unsigned)timeout_ms,
                rc ? ": " : "", rc ? gw_strerror(rc) : "");
        return 1;
    }
    printf("TinyBMS on %s: %u cells, %.2f V, SOC %.1f %%\n", dev, d.cell_count, d.pack_voltage_v,
           bms_soc_percent(&d));
    fflush(stdout);
    return 0;
}

int app_run(const struct app_options *opts)
{
    struct app app = { .opts = opts };

    /* Signals go to this thread only (sigwait below); every thread inherits the mask.
     * SIGHUP reloads the configuration file (systemd ExecReload, `kill -HUP`). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1); /* restart: asked through the web API, or into a release just installed */
    sigaddset(&sigs, SIGUSR2); /* task-stats dump to the log */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A file size limit (RLIMIT_FSIZE: a quota, a container's ulimit) must fail the write with
     * EFBIG, which becomes a storage error and its alert, not kill the gateway. */
    signal(SIGXFSZ, SIG_IGN);

    if (preflight(opts))
        return APP_EXIT_CONFIG;
    ensure_dir(opts->data_dir);
    int lock_fd = lock_data_dir(opts->data_dir);
    if (lock_fd == -2)
        return 1;
    int exit_code = 1;
    int rc = event_bus_create(NULL, &app.bus);
    if (rc) {
        GW_LOGE(MOD, "cannot create the event bus: %s", gw_strerror(rc));
        return 1;
    }
    struct config_manager_options cmo = { .data_dir = opts->data_dir, .bus = app.bus, .config_file = opts->config_file,
                                         .allow_defaults = opts->allow_defaults };
    rc = config_manager_create(&cmo, &app.config);
    if (rc) {
        GW_LOGE(MOD, "cannot load the configuration: %s", gw_strerror(rc));
        exit_code = rc == GW_ERR_NOMEM ? 1 : APP_EXIT_CONFIG;
        goto fail;
    }
    /* The storage error the load may have published goes to nobody now, not to whichever
     * services subscribed by the time the dispatcher ran: raised by the alert manager before the
     * MQTT gateway listened, it never reached MQTT, and the announcement below (once every
     * service listens) found it already active. That announcement is its first raise. */
    event_bus_flush(app.bus, 2000);

    if (opts->simulate && start_simulators(&app))
        goto fail;
    const char *uart_device = opts->simulate ? app.packs[0].device
                              : opts->uart_count ? opts->uart_devices[0] : NULL;
    exit_code = APP_EXIT_CONFIG;
    if (apply_cli_overrides(&app, uart_device))
        goto fail;
    struct gw_config cfg;
    config_manager_get(app.config, &cfg);
    if (resolve_packs(&app, &cfg))
        goto fail;
    exit_code = 1;

    event_bus_subscribe(app.bus, EVENT_CONFIG_UPDATED, on_config_updated, &app, "app");
    event_bus_subscribe(app.bus, EVENT_BATTERY_UPDATE, log_limits, &app, "limits log");
    event_bus_subscribe(app.bus, EVENT_BMS_DATA_UPDATE, on_pack_ready, &app, "systemd ready");
    event_bus_subscribe(app.bus, EVENT_BMS_COMM_LOST, on_pack_ready, &app, "systemd ready");
    if (opts->summary) {
        event_bus_subscribe(app.bus, EVENT_BATTERY_UPDATE, print_view, &app, "summary");
        event_bus_subscribe(app.bus, EVENT_BMS_COMM_LOST, print_notice, NULL, "summary");
        event_bus_subscribe(app.bus, EVENT_BMS_COMM_RESTORED, print_notice, NULL, "summary");
    }
    if (app_metrics_create(app.bus, &app.metrics) != GW_OK)
        GW_LOGW(MOD, "metrics of the bus not counted (subscriber table full)");
    rc = start_services(&app);
    if (rc) {
        /* A bad CAN or broker spec, a kernel without CAN: the same again in 5 s. */
        if (rc == GW_ERR_INVAL || rc == GW_ERR_UNSUPPORTED || rc == GW_ERR_RANGE)
            exit_code = APP_EXIT_CONFIG;
        goto fail;
    }
    start_updates(&app);
    start_observers(&app, &cfg);
    start_web(&app);
    /* A configuration recovered from a copy, or defaults taken on request, raises its alerts
     * now that the alert manager listens: the storage error and, latched until cleared (an
     * acknowledgement only marks it seen), CONFIG_RECOVERED with what was loaded and why. */
    config_manager_announce_load_status(app.config);
    char load_reason[256];
    enum config_load_status load = config_manager_load_status(app.config, load_reason, sizeof load_reason);
    if ((load == CONFIG_LOAD_FROM_BACKUP || load == CONFIG_LOAD_DEFAULTS) && app.alerts)
        alert_manager_raise(app.alerts, "CONFIG_RECOVERED", ALERT_LEVEL_ERROR, load_reason);

    GW_LOGI(MOD, "tinybms-gw %s running (data in %s); Ctrl-C to stop", ota_update_running_version(app.ota),
            opts->data_dir);
    int sig = 0;
    for (;;) {
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGUSR2) {
            dump_metrics(&app);
            continue;
        }
        if (sig != SIGHUP)
            break;
        GW_LOGI(MOD, "SIGHUP: reloading the configuration");
        config_manager_reload(app.config, NULL, 0); /* logs what changed or why not */
    }
    if (sig == SIGUSR1) {
        GW_LOGI(MOD, "restart requested (web API or a new release): stopping, then starting again");
        pause_before_switch(&app);
    }
    else
        GW_LOGI(MOD, "signal %d: stopping", sig);
    watchdog_stopping(opts->watchdog);
    stop_all(&app);
    GW_LOGI(MOD, sig == SIGUSR1 ? "stopped cleanly (restarting)" : "stopped cleanly");
    if (lock_fd >= 0)
        close(lock_fd);
    return sig == SIGUSR1 ? APP_EXIT_RESTART : 0;

fail:
    stop_all(&app);
    if (lock_fd >= 0)
        close(lock_fd);
    if (exit_code == APP_EXIT_CONFIG)
        GW_LOGE(MOD, "not started: the command line, the configuration or this machine must change "
                     "first (exit status %d: not restarted by systemd)", APP_EXIT_CONFIG);
    return exit_code;
}

/* ------------------------------------------------------------------ --set-password */

/* One line of standard input into buf (without the newline); false at end of input or when too
 * long. No echo on a terminal. */
static bool read_secret_line(const char *prompt, char *buf, size_t cap, bool tty)
{
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        fflush(stderr);
        if (tcgetattr(STDIN_FILENO, &old) == 0) {
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        } else {
            tty = false;
        }
    }
    bool ok = fgets(buf, (int)cap, stdin) != NULL;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!ok)
        return false;
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    else if (!feof(stdin))
        return false; /* longer than the buffer */
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return true;
}

int app_set_password(const struct app_options *opts)
{
    int lock_fd = -1; /* held while the password is written */
    char pw[CONFIG_WEB_PASSWORD_MAX + 8], again[CONFIG_WEB_PASSWORD_MAX + 8];
    bool tty = isatty(STDIN_FILENO);
    int code = 1;
    if (!read_secret_line("New web password: ", pw, sizeof pw, tty)) {
        fprintf(stderr, "tinybms-gw: no password read from standard input (at most %d characters)\n",
                CONFIG_WEB_PASSWORD_MAX);
        goto out;
    }
    size_t len = strlen(pw);
    if (len < CONFIG_WEB_PASSWORD_MIN || len > CONFIG_WEB_PASSWORD_MAX) {
        fprintf(stderr, "tinybms-gw: the password must be %d..%d characters (got %zu)\n", CONFIG_WEB_PASSWORD_MIN,
                CONFIG_WEB_PASSWORD_MAX, len);
        goto out;
    }
    if (tty) {
        if (!read_secret_line("Again: ", again, sizeof again, tty) || strcmp(pw, again) != 0) {
            fprintf(stderr, "tinybms-gw: the two passwords differ: nothing changed\n");
            goto out;
        }
    }
    ensure_dir(opts->data_dir);
    /* The running gateway owns the configuration: it would write its own copy over this one. */
    lock_fd = lock_data_dir(opts->data_dir);
    if (lock_fd == -2) {
        fprintf(stderr, "tinybms-gw: stop the running gateway first (or set the password on its web page)\n");
        goto out;
    }
    struct config_manager_options cmo = { .data_dir = opts->data_dir, .config_file = opts->config_file };
    struct config_manager *cm = NULL;
    int rc = config_manager_create(&cmo, &cm);
    if (rc) {
        fprintf(stderr, "tinybms-gw: cannot open the configuration in %s: %s\n", opts->data_dir, gw_strerror(rc));
        goto out;
    }
    rc = config_manager_set_web_password(cm, pw);
    struct gw_config cfg;
    config_manager_get(cm, &cfg);
    config_manager_destroy(cm);
    if (rc) {
        fprintf(stderr, "tinybms-gw: the password was not saved: %s\n", gw_strerror(rc));
        goto out;
    }
    printf("web password set for user \"%s\" (only its salted hash is stored); the gateway uses it from its next "
           "start.\n",
           cfg.web.username);
    code = 0;
out:
    if (lock_fd >= 0)
        close(lock_fd);
    OPENSSL_cleanse(pw, sizeof pw);
    OPENSSL_cleanse(again, sizeof again);
    return code;
}
