#define _GNU_SOURCE
#include "app.h"

#include "alert_manager.h"
#include "app_events.h"
#include "bms_data.h"
#include "can_publisher.h"
#include "config_manager.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_config.h"
#include "gw_error.h"
#include "gw_log.h"
#include "history_logger.h"
#include "mqtt_gateway.h"
#include "sim_process.h"
#include "uart_bms.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MOD "app"

struct app {
    const struct app_options *opts;
    struct event_bus *bus;
    struct config_manager *config;
    struct sim_process sim;
    bool sim_running;
    struct alert_manager *alerts;
    struct history_logger *history;
    struct mqtt_gateway *mqtt;
    struct can_publisher *can;
    struct uart_bms *bms;
};

void app_default_options(struct app_options *o)
{
    memset(o, 0, sizeof *o);
    o->data_dir = "/var/lib/tinybms-gw";
    o->summary = true;
}

/* ------------------------------------------------------------------ live summary on stdout */

/* One line per sample until the web UI exists: what a user wants to see at a glance. */
static void print_summary(const struct gw_event *ev, void *ctx)
{
    (void)ctx;
    if (ev->size != sizeof(struct bms_live_data))
        return;
    struct bms_live_data d;
    memcpy(&d, ev->payload, sizeof d);
    time_t t = (time_t)(d.wall_time_ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    char temps[48] = "n/a";
    int16_t tmin, tmax;
    if (bms_temp_min_dc(&d, &tmin) && bms_temp_max_dc(&d, &tmax))
        snprintf(temps, sizeof temps, "%.1f..%.1f C", tmin / 10.0, tmax / 10.0);
    char soh[16] = "n/a";
    if (d.soh_valid)
        snprintf(soh, sizeof soh, "%.0f%%", bms_soh_percent(&d));
    printf("%02d:%02d:%02d bat%u %6.2f V %7.2f A %8.1f W  SOC %5.1f%% SOH %s  cells %u: %.3f (#%u)..%.3f (#%u) V "
           "spread %.1f mV  T %s  %s\n",
           tm.tm_hour, tm.tm_min, tm.tm_sec, d.battery_id, d.pack_voltage_v, d.pack_current_a,
           d.pack_voltage_v * d.pack_current_a, bms_soc_percent(&d), soh, d.cell_count, d.min_cell_mv / 1000.0,
           d.min_cell_index, d.max_cell_mv / 1000.0, d.max_cell_index, d.cell_spread_mv_x10 / 10.0, temps,
           bms_online_status_name(d.online_status));
    fflush(stdout);
}

static void print_notice(const struct gw_event *ev, void *ctx)
{
    (void)ctx;
    if (ev->id == EVENT_BMS_COMM_LOST || ev->id == EVENT_BMS_COMM_RESTORED) {
        struct app_bms_comm c;
        if (ev->size != sizeof c)
            return;
        memcpy(&c, ev->payload, sizeof c);
        printf("battery %u: communication %s (%s)\n", c.battery_id,
               ev->id == EVENT_BMS_COMM_LOST ? "LOST" : "restored", c.reason);
    } else if (ev->id == EVENT_CHARGE_LIMITS) {
        static struct app_charge_limits last;
        struct app_charge_limits l;
        if (ev->size != sizeof l)
            return;
        memcpy(&l, ev->payload, sizeof l);
        /* Print only changes, not every second. */
        if (l.cvl_v == last.cvl_v && l.ccl_a == last.ccl_a && l.dcl_a == last.dcl_a && l.sending == last.sending)
            return;
        last = l;
        if (l.sending)
            printf("CAN limits: CVL %.2f V (%s), CCL %.1f A (%s), DCL %.1f A (%s)\n", l.cvl_v, l.cvl_reason, l.ccl_a,
                   l.ccl_reason, l.dcl_a, l.dcl_reason);
        else
            printf("CAN limits: 0x351 withheld (no fresh BMS data): chargers stop within 3 s\n");
    } else {
        return;
    }
    fflush(stdout);
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

static bool mqtt_config(struct gw_config_mqtt *out, void *ctx)
{
    struct gw_config cfg;
    config_manager_get(ctx, &cfg);
    *out = cfg.mqtt;
    return true;
}

/* Applies what the running services can take live; the rest is logged by config_manager as
 * "restart required". */
static void on_config_updated(const struct gw_event *ev, void *ctx)
{
    (void)ev;
    struct app *app = ctx;
    struct gw_config cfg;
    config_manager_get(app->config, &cfg);
    if (app->bms) {
        uart_bms_set_poll_interval_ms(app->bms, cfg.bms.poll_interval_ms);
        uart_bms_set_cell_order(app->bms, cfg.bms.cell_order);
        uart_bms_set_comm_timeout_ms(app->bms, cfg.bms.comm_timeout_ms);
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

static int ensure_dir(const char *path)
{
    if (mkdir(path, 0750) == 0 || errno == EEXIST)
        return GW_OK;
    GW_LOGE(MOD, "cannot create data directory %s: %s", path, strerror(errno));
    return GW_ERR_STORAGE;
}

/* ------------------------------------------------------------------ services */

static int start_services(struct app *app)
{
    const struct app_options *o = app->opts;
    struct gw_config cfg;
    config_manager_get(app->config, &cfg);
    int rc;

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

    if (cfg.mqtt.enabled) {
        struct mqtt_gateway_options mo = { .bus = app->bus, .get_config = mqtt_config, .config_ctx = app->config };
        rc = mqtt_gateway_create(&mo, &app->mqtt);
        if (!rc)
            rc = mqtt_gateway_start(app->mqtt);
        if (rc) {
            GW_LOGE(MOD, "cannot start MQTT (%s): %s", cfg.mqtt.broker_uri, gw_strerror(rc));
            return rc;
        }
    }

    if (cfg.can.enabled) {
        struct can_publisher_options co = { .config = &cfg, .bus = app->bus };
        rc = can_publisher_create(&co, &app->can);
        if (!rc)
            rc = can_publisher_start(app->can);
        if (rc) {
            GW_LOGE(MOD, "cannot start CAN on '%s': %s", cfg.can.interface, gw_strerror(rc));
            return rc;
        }
    }

    struct uart_bms_options bo;
    uart_bms_default_options(&bo);
    bo.battery_id = 0;
    snprintf(bo.device, sizeof bo.device, "%s", cfg.bms.uart_device);
    bo.poll_interval_ms = cfg.bms.poll_interval_ms;
    bo.comm_timeout_ms = cfg.bms.comm_timeout_ms;
    bo.slow_poll_interval_s = cfg.bms.slow_poll_interval_s;
    bo.cell_order = cfg.bms.cell_order;
    bo.bus = app->bus;
    rc = uart_bms_create(&bo, &app->bms);
    if (!rc)
        rc = uart_bms_start(app->bms);
    if (rc) {
        GW_LOGE(MOD, "cannot start the BMS poller on '%s': %s", bo.device, gw_strerror(rc));
        return rc;
    }
    GW_LOGI(MOD, "services: BMS on %s every %u ms, CAN %s, MQTT %s, history %s", bo.device, bo.poll_interval_ms,
            app->can ? cfg.can.interface : "off", app->mqtt ? cfg.mqtt.broker_uri : "off",
            app->history ? "on" : "off");
    return GW_OK;
}

/* Reverse order of start: the source of samples first, the bus (which delivers what is still
 * queued) after every subscriber is gone. */
static void stop_all(struct app *app)
{
    /* Our own handlers first: on_config_updated touches the services destroyed below. */
    if (app->bus) {
        event_bus_unsubscribe(app->bus, EVENT_CONFIG_UPDATED, on_config_updated, app);
        event_bus_unsubscribe(app->bus, EVENT_BMS_DATA_UPDATE, print_summary, NULL);
        event_bus_unsubscribe(app->bus, EVENT_BMS_COMM_LOST, print_notice, NULL);
        event_bus_unsubscribe(app->bus, EVENT_BMS_COMM_RESTORED, print_notice, NULL);
        event_bus_unsubscribe(app->bus, EVENT_CHARGE_LIMITS, print_notice, NULL);
    }
    uart_bms_destroy(app->bms);
    app->bms = NULL;
    can_publisher_destroy(app->can); /* saves the energy counters */
    app->can = NULL;
    mqtt_gateway_destroy(app->mqtt);
    app->mqtt = NULL;
    if (app->bus)
        event_bus_flush(app->bus, 2000);
    history_logger_destroy(app->history); /* writes pending samples */
    app->history = NULL;
    alert_manager_destroy(app->alerts);
    app->alerts = NULL;
    event_bus_destroy(app->bus);
    app->bus = NULL;
    config_manager_destroy(app->config);
    app->config = NULL;
    if (app->sim_running)
        sim_process_stop(&app->sim);
    app->sim_running = false;
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
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (ensure_dir(opts->data_dir))
        return 1;
    int rc = event_bus_create(NULL, &app.bus);
    if (rc) {
        GW_LOGE(MOD, "cannot create the event bus: %s", gw_strerror(rc));
        return 1;
    }
    struct config_manager_options cmo = { .data_dir = opts->data_dir, .bus = app.bus, .config_file = opts->config_file };
    rc = config_manager_create(&cmo, &app.config);
    if (rc) {
        GW_LOGE(MOD, "cannot load the configuration: %s", gw_strerror(rc));
        goto fail;
    }

    const char *uart_device = opts->uart_device;
    if (opts->simulate) {
        rc = sim_process_start(&app.sim, opts->sim_args, 10000);
        if (rc)
            goto fail;
        app.sim_running = true;
        uart_device = app.sim.pty_path;
    }
    if (apply_cli_overrides(&app, uart_device))
        goto fail;
    struct gw_config cfg;
    config_manager_get(app.config, &cfg);
    if (!cfg.bms.uart_device[0]) {
        GW_LOGE(MOD, "no BMS serial device: use --uart DEV, set bms.uart_device in the configuration, or --simulate");
        goto fail;
    }

    event_bus_subscribe(app.bus, EVENT_CONFIG_UPDATED, on_config_updated, &app, "app");
    if (opts->summary) {
        event_bus_subscribe(app.bus, EVENT_BMS_DATA_UPDATE, print_summary, NULL, "summary");
        event_bus_subscribe(app.bus, EVENT_BMS_COMM_LOST, print_notice, NULL, "summary");
        event_bus_subscribe(app.bus, EVENT_BMS_COMM_RESTORED, print_notice, NULL, "summary");
        event_bus_subscribe(app.bus, EVENT_CHARGE_LIMITS, print_notice, NULL, "summary");
    }
    if (start_services(&app))
        goto fail;
    /* A configuration recovered from its backup raises its alert now that the alert manager
     * listens. */
    config_manager_announce_load_status(app.config);

    GW_LOGI(MOD, "tinybms-gw %s running (data in %s); Ctrl-C to stop", GW_VERSION, opts->data_dir);
    int sig = 0;
    for (;;) {
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            break;
        GW_LOGI(MOD, "SIGHUP: reloading the configuration");
        config_manager_reload(app.config, NULL, 0); /* logs what changed or why not */
    }
    GW_LOGI(MOD, "signal %d: stopping", sig);
    stop_all(&app);
    GW_LOGI(MOD, "stopped cleanly");
    return 0;

fail:
    stop_all(&app);
    return 1;
}
