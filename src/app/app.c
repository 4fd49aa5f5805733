#define _GNU_SOURCE
#include "app.h"

#include "app_events.h"
#include "bms_data.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_config.h"
#include "gw_error.h"
#include "gw_log.h"
#include "sim_process.h"
#include "uart_bms.h"

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
    struct gw_config cfg;
    struct event_bus *bus;
    struct sim_process sim;
    bool sim_running;
    struct uart_bms *bms;
};

void app_default_options(struct app_options *o)
{
    memset(o, 0, sizeof *o);
    o->data_dir = "/var/lib/tinybms-gw";
    o->summary = true;
}

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

static void log_comm(const struct gw_event *ev, void *ctx)
{
    (void)ctx;
    if (!ev->payload || ev->size != sizeof(struct app_bms_comm))
        return;
    struct app_bms_comm c;
    memcpy(&c, ev->payload, sizeof c);
    printf("battery %u: communication %s (%s)\n", c.battery_id,
           ev->id == EVENT_BMS_COMM_LOST ? "LOST" : "restored", c.reason);
    fflush(stdout);
}

static int ensure_dir(const char *path)
{
    if (mkdir(path, 0750) == 0 || errno == EEXIST)
        return GW_OK;
    GW_LOGE(MOD, "cannot create data directory %s: %s", path, strerror(errno));
    return GW_ERR_STORAGE;
}

static int start_bms(struct app *app)
{
    struct uart_bms_options bo;
    uart_bms_default_options(&bo);
    bo.battery_id = 0;
    snprintf(bo.device, sizeof bo.device, "%s", app->cfg.bms.uart_device);
    bo.poll_interval_ms = app->cfg.bms.poll_interval_ms;
    bo.comm_timeout_ms = app->cfg.bms.comm_timeout_ms;
    bo.slow_poll_interval_s = app->cfg.bms.slow_poll_interval_s;
    bo.cell_order = app->cfg.bms.cell_order;
    bo.bus = app->bus;
    int rc = uart_bms_create(&bo, &app->bms);
    if (!rc)
        rc = uart_bms_start(app->bms);
    if (rc)
        GW_LOGE(MOD, "cannot start the BMS poller on '%s': %s", bo.device, gw_strerror(rc));
    return rc;
}

static void stop_all(struct app *app)
{
    uart_bms_destroy(app->bms);
    app->bms = NULL;
    if (app->sim_running)
        sim_process_stop(&app->sim);
    app->sim_running = false;
    event_bus_destroy(app->bus);
    app->bus = NULL;
}

int app_run(const struct app_options *opts)
{
    struct app app = { .opts = opts };

    /* Signals go to this thread only (sigwait below); every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (ensure_dir(opts->data_dir))
        return 1;

    gw_config_set_defaults(&app.cfg);
    if (opts->poll_ms)
        app.cfg.bms.poll_interval_ms = (uint32_t)opts->poll_ms;
    if (opts->uart_device)
        snprintf(app.cfg.bms.uart_device, sizeof app.cfg.bms.uart_device, "%s", opts->uart_device);

    int rc = event_bus_create(NULL, &app.bus);
    if (rc) {
        GW_LOGE(MOD, "cannot create the event bus: %s", gw_strerror(rc));
        return 1;
    }

    if (opts->simulate) {
        rc = sim_process_start(&app.sim, opts->sim_args, 10000);
        if (rc)
            goto fail;
        app.sim_running = true;
        snprintf(app.cfg.bms.uart_device, sizeof app.cfg.bms.uart_device, "%s", app.sim.pty_path);
    }
    if (!app.cfg.bms.uart_device[0]) {
        GW_LOGE(MOD, "no BMS serial device: use --uart DEV, set bms.uart_device, or --simulate");
        goto fail;
    }

    if (opts->summary) {
        event_bus_subscribe(app.bus, EVENT_BMS_DATA_UPDATE, print_summary, NULL, "summary");
        event_bus_subscribe(app.bus, EVENT_BMS_COMM_LOST, log_comm, NULL, "summary");
        event_bus_subscribe(app.bus, EVENT_BMS_COMM_RESTORED, log_comm, NULL, "summary");
    }
    if (start_bms(&app))
        goto fail;

    GW_LOGI(MOD, "tinybms-gw %s running (data in %s); Ctrl-C to stop", GW_VERSION, opts->data_dir);
    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    GW_LOGI(MOD, "signal %d: stopping", sig);
    stop_all(&app);
    GW_LOGI(MOD, "stopped cleanly");
    return 0;

fail:
    stop_all(&app);
    return 1;
}
