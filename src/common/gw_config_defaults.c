#include "gw_config.h"

#include "app_events.h"

#include <string.h>

#define COPY(dst, src) strncpy((dst), (src), sizeof(dst) - 1)

static void set_curve(struct gw_curve *c, unsigned n, const float *x, const float *y)
{
    memset(c, 0, sizeof *c);
    c->count = (uint8_t)n;
    for (unsigned i = 0; i < n && i < GW_CURVE_POINTS; i++) {
        c->x[i] = x[i];
        c->y[i] = y[i];
    }
}

void gw_config_charge_defaults(struct gw_config_charge *ch, enum gw_chemistry chem)
{
    memset(ch, 0, sizeof *ch);
    ch->chemistry = (uint8_t)chem;
    ch->absorb_spread_mv = 10.0f;
    ch->absorb_time_s = 900;
    /* Time at the top (target reached, or the high cell held at the limit) per charge: the
     * TinyBMS's 60 mA balancer moves 0.12 Ah in 2 h, enough to hold a cell that leaks up to
     * 5 mA, while a wider spread stops keeping the cells near full for ever. */
    ch->max_top_time_s = 7200;
    /* 1 mV/s for 16 cells (dbus-serialbattery's float transition): 20 min from target to float
     * whatever the cell count, a 0.1 V step of CVL every 100 s. */
    ch->float_ramp_mv_per_cell_s = 0.0625f;
    ch->rebulk_soc_percent = 80.0f;
    ch->rebulk_spread_mv = 80.0f;
    ch->max_charge_a = 100.0f;
    ch->max_discharge_a = 150.0f;
    ch->increase_delay_s = 30;
    ch->increase_ramp_a_per_s = 5.0f;
    ch->zero_exit_a = 2.0f;
    ch->no_cell_temp_charge_a = 0.0f; /* no cell temperature: no charge (the board sensor is no cell) */
    if (chem == GW_CHEM_NMC) {
        ch->target_cell_v = 4.10f;
        ch->float_cell_v = 4.00f;
        ch->cell_limit_v = 4.15f;
        ch->discharge_cell_v = 3.20f;
        static const float cx[] = { 4.00f, 4.10f, 4.15f, 4.20f };
        static const float cy[] = { 1.0f, 0.5f, 0.1f, 0.0f };
        set_curve(&ch->charge_by_cell_v, 4, cx, cy);
        static const float dx[] = { 3.00f, 3.20f, 3.40f };
        static const float dy[] = { 0.0f, 0.2f, 1.0f };
        set_curve(&ch->discharge_by_cell_v, 3, dx, dy);
    } else {
        ch->target_cell_v = 3.45f;
        ch->float_cell_v = 3.375f;
        ch->cell_limit_v = 3.55f;
        ch->discharge_cell_v = 2.90f;
        static const float cx[] = { 3.40f, 3.50f, 3.55f, 3.60f };
        static const float cy[] = { 1.0f, 0.4f, 0.1f, 0.0f };
        set_curve(&ch->charge_by_cell_v, 4, cx, cy);
        static const float dx[] = { 2.80f, 2.90f, 3.00f, 3.10f };
        static const float dy[] = { 0.0f, 0.1f, 0.5f, 1.0f };
        set_curve(&ch->discharge_by_cell_v, 4, dx, dy);
    }
    /* LiFePO4 and NMC alike: no charge at or below 0 degC, derate when cold or hot. */
    static const float tcx[] = { 0.0f, 2.0f, 10.0f, 45.0f, 50.0f, 55.0f };
    static const float tcy[] = { 0.0f, 0.1f, 1.0f, 1.0f, 0.3f, 0.0f };
    set_curve(&ch->charge_by_temp, 6, tcx, tcy);
    static const float tdx[] = { -20.0f, -10.0f, 0.0f, 50.0f, 55.0f, 60.0f };
    static const float tdy[] = { 0.0f, 0.3f, 1.0f, 1.0f, 0.3f, 0.0f };
    set_curve(&ch->discharge_by_temp, 6, tdx, tdy);
}

static struct gw_alert_threshold thr(bool enabled, float value, float hysteresis, uint8_t level)
{
    struct gw_alert_threshold t = { .enabled = enabled, .value = value, .hysteresis = hysteresis, .level = level };
    return t;
}

void gw_config_set_defaults(struct gw_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->schema_version = GW_CONFIG_SCHEMA_VERSION;

    cfg->bms.poll_interval_ms = 1000;
    cfg->bms.comm_timeout_ms = 30000;
    cfg->bms.slow_poll_interval_s = 60;
    cfg->bms.cell_order = 0;
    cfg->bms.soc_full_percent = 100.0f;
    cfg->bms.soc_empty_percent = 0.0f;

    cfg->can.enabled = false;
    cfg->can.bitrate = 500000;
    cfg->can.live_period_ms = 1000;
    cfg->can.identity_period_ms = 10000;
    cfg->can.stale_timeout_ms = 5000;
    cfg->can.inverter_timeout_ms = 10000;
    cfg->can.energy_save_period_s = 600;
    COPY(cfg->can.manufacturer, "Enepaq");
    COPY(cfg->can.battery_name, "TinyBMS");
    COPY(cfg->can.family, "TinyBMS");

    gw_config_charge_defaults(&cfg->charge, GW_CHEM_LFP);

    cfg->mqtt.enabled = false;
    COPY(cfg->mqtt.broker_uri, "mqtt://localhost:1883");
    cfg->mqtt.keepalive_s = 120;
    COPY(cfg->mqtt.topic_prefix, "tinybms");
    cfg->mqtt.publish_interval_ms = 1000;
    cfg->mqtt.status_interval_ms = 5000;
    cfg->mqtt.ha_discovery = true;
    COPY(cfg->mqtt.ha_discovery_prefix, "homeassistant");
    cfg->mqtt.commands_enabled = false;
    cfg->mqtt.offline_queue_size = 100;

    cfg->web.enabled = true;
    cfg->web.http_port = 8080;
    COPY(cfg->web.bind_address, "0.0.0.0");
    cfg->web.public_read = false;
    cfg->web.metrics_public = false;
    COPY(cfg->web.username, "admin");
    cfg->web.auth_max_attempts = 5;
    cfg->web.auth_lockout_s = 60;
    cfg->web.csrf_ttl_s = 300;
    cfg->web.ws_max_clients = 32;
    cfg->web.ws_queue_len = 64;
    cfg->web.request_timeout_ms = 10000;

    COPY(cfg->network.hostname, "tinybms-gw");
    cfg->network.reconnect = GW_NET_RECONNECT_OFF;
    COPY(cfg->network.wpa_ctrl_dir, "/run/wpa_supplicant");

    /* LiFePO4 16s defaults; the alert manager compares per-cell and pack values. */
    cfg->alerts.cell_v_high = thr(true, 3.60f, 0.05f, ALERT_LEVEL_ERROR);
    cfg->alerts.cell_v_low = thr(true, 2.80f, 0.10f, ALERT_LEVEL_ERROR);
    cfg->alerts.pack_v_high = thr(true, 57.6f, 0.8f, ALERT_LEVEL_ERROR);
    cfg->alerts.pack_v_low = thr(true, 44.8f, 1.6f, ALERT_LEVEL_ERROR);
    cfg->alerts.temp_high = thr(true, 55.0f, 5.0f, ALERT_LEVEL_ERROR);
    cfg->alerts.temp_low = thr(true, 0.0f, 3.0f, ALERT_LEVEL_WARNING);
    cfg->alerts.discharge_current = thr(true, 150.0f, 10.0f, ALERT_LEVEL_WARNING);
    cfg->alerts.charge_current = thr(true, 100.0f, 10.0f, ALERT_LEVEL_WARNING);
    cfg->alerts.soc_low = thr(true, 10.0f, 5.0f, ALERT_LEVEL_WARNING);
    cfg->alerts.soc_high = thr(false, 100.0f, 5.0f, ALERT_LEVEL_INFO);
    cfg->alerts.cell_imbalance = thr(true, 100.0f, 20.0f, ALERT_LEVEL_WARNING);
    cfg->alerts.raise_delay_ms = 5000;
    cfg->alerts.clear_delay_ms = 10000;
    cfg->alerts.status_alerts = true;

    cfg->history.enabled = true;
    cfg->history.period_s = 5;
    cfg->history.retention_days = 7;

    cfg->update.keyring_dir[0] = '\0'; /* DATA_DIR/keys */
    cfg->update.trial_timeout_s = 120;
    cfg->update.trial_max_starts = 3;
    cfg->update.health_can_s = 5;

    cfg->battery.packs.count = 0;
    cfg->battery.min_online_packs = 1;
    cfg->battery.rejoin_max_dv = 0.5f;
    cfg->battery.stale_after_ms = 5000;
    cfg->battery.frozen_after_ms = 10000;
    cfg->battery.implausible_in_row = 3;
    cfg->battery.soc_spread_percent = 15.0f;

    cfg->dbus.enabled = false;
    cfg->dbus.device_instance = 1;
    cfg->dbus.per_pack = false;
    cfg->dbus.capacity = GW_DBUS_CAPACITY_REMAINING;
}
