/* JSON <-> struct gw_config, driven by the field table (each field described once). */
#define _POSIX_C_SOURCE 200809L
#include "app_events.h"
#include "config_internal.h"
#include "gw_error.h"
#include "gw_log.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "config"

static const char *const cell_order_names[] = { "documented", "reversed" };
static const char *const chemistry_names[] = { "lfp", "nmc" };
static const char *const dbus_capacity_names[] = { "remaining", "installed", "none" }; /* enum gw_dbus_capacity */
const char *const config__level_names[3] = { "info", "warning", "error" };

#define MSIZE(member) sizeof(((struct gw_config *)0)->member)
#define FIELD(sec, bit, member, k, ...)                                                                  \
    { .section = #sec, .section_bit = (bit), .name = #member, .kind = (k),                               \
      .offset = offsetof(struct gw_config, sec.member), .size = MSIZE(sec.member), __VA_ARGS__ }
#define ENUMF(sec, bit, member, arr, ...)                                                                \
    FIELD(sec, bit, member, CFG_ENUM, .names = (arr), .name_count = sizeof(arr) / sizeof((arr)[0]),    \
          __VA_ARGS__)
#define CURVE(member, xmin, xmax, minpts)                                                                \
    FIELD(charge, CONFIG_SECTION_CHARGE, member, CFG_CURVE, .min = (xmin), .max = (xmax), .aux = (minpts))
#define THRESH(member, vmin, vmax, hmax)                                                                 \
    FIELD(alerts, CONFIG_SECTION_ALERTS, member, CFG_THRESHOLD, .min = (vmin), .max = (vmax), .aux = (hmax))

#define S_BMS CONFIG_SECTION_BMS
#define S_CAN CONFIG_SECTION_CAN
#define S_CHG CONFIG_SECTION_CHARGE
#define S_MQTT CONFIG_SECTION_MQTT
#define S_WEB CONFIG_SECTION_WEB
#define S_NET CONFIG_SECTION_NETWORK
#define S_ALR CONFIG_SECTION_ALERTS
#define S_HIST CONFIG_SECTION_HISTORY
#define S_OTA CONFIG_SECTION_OTA
#define S_BAT CONFIG_SECTION_BATTERY
#define S_DBUS CONFIG_SECTION_DBUS

/* Ranges here are the single source for validation and docs/configuration.md. */
const struct config_field config__fields[] = {
    FIELD(bms, S_BMS, uart_device, CFG_STRING, .flags = CFG_F_RESTART, .format = config__check_device_path),
    FIELD(bms, S_BMS, poll_interval_ms, CFG_U32, .min = 100, .max = 10000),
    FIELD(bms, S_BMS, comm_timeout_ms, CFG_U32, .min = 1000, .max = 600000),
    FIELD(bms, S_BMS, slow_poll_interval_s, CFG_U32, .min = 5, .max = 3600),
    ENUMF(bms, S_BMS, cell_order, cell_order_names),
    FIELD(bms, S_BMS, soc_full_percent, CFG_FLOAT, .min = 50, .max = 100),
    FIELD(bms, S_BMS, soc_empty_percent, CFG_FLOAT, .min = 0, .max = 50),

    FIELD(can, S_CAN, enabled, CFG_BOOL, .flags = CFG_F_RESTART),
    FIELD(can, S_CAN, interface, CFG_STRING, .flags = CFG_F_RESTART, .format = config__check_can_interface),
    FIELD(can, S_CAN, bitrate, CFG_U32, .flags = CFG_F_RESTART, .min = 250000, .max = 500000),
    FIELD(can, S_CAN, live_period_ms, CFG_U32, .min = 100, .max = 10000),
    FIELD(can, S_CAN, identity_period_ms, CFG_U32, .min = 1000, .max = 600000),
    FIELD(can, S_CAN, stale_timeout_ms, CFG_U32, .min = 1000, .max = 60000),
    FIELD(can, S_CAN, inverter_timeout_ms, CFG_U32, .min = 1000, .max = 600000),
    FIELD(can, S_CAN, energy_save_period_s, CFG_U32, .min = 10, .max = 86400),
    FIELD(can, S_CAN, manufacturer, CFG_STRING, .format = config__check_ascii),
    FIELD(can, S_CAN, battery_name, CFG_STRING, .format = config__check_ascii),
    FIELD(can, S_CAN, family, CFG_STRING, .format = config__check_ascii),
    FIELD(can, S_CAN, serial, CFG_STRING, .format = config__check_ascii),
    FIELD(can, S_CAN, model_id, CFG_U16, .min = 0, .max = 65535),

    ENUMF(charge, S_CHG, chemistry, chemistry_names),
    FIELD(charge, S_CHG, target_cell_v, CFG_FLOAT, .min = 3.0, .max = 4.25),
    FIELD(charge, S_CHG, float_cell_v, CFG_FLOAT, .min = 3.0, .max = 4.25),
    FIELD(charge, S_CHG, cell_limit_v, CFG_FLOAT, .min = 3.0, .max = 4.3),
    FIELD(charge, S_CHG, discharge_cell_v, CFG_FLOAT, .min = 2.5, .max = 4.0),
    FIELD(charge, S_CHG, absorb_spread_mv, CFG_FLOAT, .min = 1, .max = 500),
    FIELD(charge, S_CHG, absorb_time_s, CFG_U32, .min = 0, .max = 86400),
    FIELD(charge, S_CHG, max_top_time_s, CFG_U32, .min = 600, .max = 86400),
    FIELD(charge, S_CHG, float_ramp_mv_per_cell_s, CFG_FLOAT, .min = 0.01, .max = 100),
    FIELD(charge, S_CHG, rebulk_soc_percent, CFG_FLOAT, .min = 0, .max = 100),
    FIELD(charge, S_CHG, rebulk_spread_mv, CFG_FLOAT, .min = 1, .max = 1000),
    FIELD(charge, S_CHG, max_charge_a, CFG_FLOAT, .min = 0, .max = 5000),
    FIELD(charge, S_CHG, max_discharge_a, CFG_FLOAT, .min = 0, .max = 5000),
    FIELD(charge, S_CHG, increase_delay_s, CFG_U32, .min = 0, .max = 3600),
    FIELD(charge, S_CHG, increase_ramp_a_per_s, CFG_FLOAT, .min = 0.01, .max = 1000),
    FIELD(charge, S_CHG, zero_exit_a, CFG_FLOAT, .min = 0, .max = 100),
    FIELD(charge, S_CHG, no_cell_temp_charge_a, CFG_FLOAT, .min = 0, .max = 5000),
    CURVE(charge_by_cell_v, 2.0, 4.5, 1),
    CURVE(discharge_by_cell_v, 2.0, 4.5, 1),
    CURVE(charge_by_temp, -40, 100, 1),
    CURVE(discharge_by_temp, -40, 100, 1),
    CURVE(charge_by_soc, 0, 100, 0),
    CURVE(discharge_by_soc, 0, 100, 0),

    FIELD(mqtt, S_MQTT, enabled, CFG_BOOL),
    FIELD(mqtt, S_MQTT, broker_uri, CFG_STRING, .flags = CFG_F_NONEMPTY, .format = config__check_mqtt_uri),
    FIELD(mqtt, S_MQTT, username, CFG_STRING, .format = config__check_no_control),
    FIELD(mqtt, S_MQTT, password, CFG_STRING, .flags = CFG_F_SECRET, .format = config__check_no_control),
    FIELD(mqtt, S_MQTT, client_id, CFG_STRING, .format = config__check_client_id),
    FIELD(mqtt, S_MQTT, keepalive_s, CFG_U16, .min = 5, .max = 3600),
    FIELD(mqtt, S_MQTT, ca_file, CFG_STRING, .format = config__check_abs_path),
    FIELD(mqtt, S_MQTT, cert_file, CFG_STRING, .format = config__check_abs_path),
    FIELD(mqtt, S_MQTT, key_file, CFG_STRING, .format = config__check_abs_path),
    FIELD(mqtt, S_MQTT, tls_insecure, CFG_BOOL),
    FIELD(mqtt, S_MQTT, topic_prefix, CFG_STRING, .flags = CFG_F_NONEMPTY, .format = config__check_topic_prefix),
    FIELD(mqtt, S_MQTT, publish_interval_ms, CFG_U32, .min = 100, .max = 3600000),
    FIELD(mqtt, S_MQTT, status_interval_ms, CFG_U32, .min = 1000, .max = 3600000),
    FIELD(mqtt, S_MQTT, ha_discovery, CFG_BOOL),
    FIELD(mqtt, S_MQTT, ha_discovery_prefix, CFG_STRING, .flags = CFG_F_NONEMPTY,
          .format = config__check_topic_prefix),
    FIELD(mqtt, S_MQTT, commands_enabled, CFG_BOOL),
    FIELD(mqtt, S_MQTT, offline_queue_size, CFG_U32, .min = 0, .max = 100000),

    FIELD(web, S_WEB, enabled, CFG_BOOL, .flags = CFG_F_RESTART),
    FIELD(web, S_WEB, http_port, CFG_U16, .flags = CFG_F_RESTART, .min = 1, .max = 65535),
    FIELD(web, S_WEB, bind_address, CFG_STRING, .flags = CFG_F_RESTART | CFG_F_NONEMPTY,
          .format = config__check_ip_literal),
    FIELD(web, S_WEB, public_read, CFG_BOOL),
    FIELD(web, S_WEB, metrics_public, CFG_BOOL),
    FIELD(web, S_WEB, username, CFG_STRING, .flags = CFG_F_NONEMPTY, .format = config__check_web_username),
    FIELD(web, S_WEB, password_hash, CFG_STRING, .flags = CFG_F_HASH),
    FIELD(web, S_WEB, https_enabled, CFG_BOOL, .flags = CFG_F_RESTART),
    FIELD(web, S_WEB, cert_file, CFG_STRING, .flags = CFG_F_RESTART, .format = config__check_abs_path),
    FIELD(web, S_WEB, key_file, CFG_STRING, .flags = CFG_F_RESTART, .format = config__check_abs_path),
    FIELD(web, S_WEB, auth_max_attempts, CFG_U16, .min = 1, .max = 100),
    FIELD(web, S_WEB, auth_lockout_s, CFG_U32, .min = 1, .max = 86400),
    FIELD(web, S_WEB, csrf_ttl_s, CFG_U32, .min = 30, .max = 86400),
    FIELD(web, S_WEB, ws_max_clients, CFG_U16, .flags = CFG_F_RESTART, .min = 1, .max = 256),
    FIELD(web, S_WEB, ws_queue_len, CFG_U16, .flags = CFG_F_RESTART, .min = 4, .max = 4096),
    FIELD(web, S_WEB, request_timeout_ms, CFG_U32, .flags = CFG_F_RESTART, .min = 1000, .max = 120000),
    FIELD(web, S_WEB, ui_dir, CFG_STRING, .flags = CFG_F_RESTART, .format = config__check_abs_path),

    FIELD(network, S_NET, hostname, CFG_STRING, .flags = CFG_F_RESTART | CFG_F_NONEMPTY,
          .format = config__check_hostname),
    FIELD(network, S_NET, interface, CFG_STRING, .flags = CFG_F_RESTART, .format = config__check_ifname),
    FIELD(network, S_NET, wifi_ssid, CFG_STRING, .format = config__check_ssid),
    FIELD(network, S_NET, wifi_password, CFG_STRING, .flags = CFG_F_SECRET, .format = config__check_wifi_password),

    THRESH(cell_v_high, 0, 5, 1),
    THRESH(cell_v_low, 0, 5, 1),
    THRESH(pack_v_high, 0, 1000, 100),
    THRESH(pack_v_low, 0, 1000, 100),
    THRESH(temp_high, -50, 150, 50),
    THRESH(temp_low, -50, 150, 50),
    THRESH(discharge_current, 0, 5000, 1000),
    THRESH(charge_current, 0, 5000, 1000),
    THRESH(soc_low, 0, 100, 50),
    THRESH(soc_high, 0, 100, 50),
    THRESH(cell_imbalance, 0, 5000, 1000),
    FIELD(alerts, S_ALR, raise_delay_ms, CFG_U32, .min = 0, .max = 3600000),
    FIELD(alerts, S_ALR, clear_delay_ms, CFG_U32, .min = 0, .max = 3600000),
    FIELD(alerts, S_ALR, status_alerts, CFG_BOOL),

    FIELD(history, S_HIST, enabled, CFG_BOOL, .flags = CFG_F_RESTART),
    FIELD(history, S_HIST, period_s, CFG_U32, .min = 1, .max = 3600),
    FIELD(history, S_HIST, retention_days, CFG_U16, .min = 1, .max = 3650),

    FIELD(update, S_OTA, keyring_dir, CFG_STRING, .flags = CFG_F_RESTART, .format = config__check_abs_path),
    FIELD(update, S_OTA, trial_timeout_s, CFG_U32, .flags = CFG_F_RESTART, .min = 10, .max = 3600),
    FIELD(update, S_OTA, trial_max_starts, CFG_U32, .flags = CFG_F_RESTART, .min = 1, .max = 10),
    FIELD(update, S_OTA, health_can_s, CFG_U32, .flags = CFG_F_RESTART, .min = 0, .max = 600),
    FIELD(update, S_OTA, pause_charge_on_switch, CFG_BOOL),

    FIELD(battery, S_BAT, packs, CFG_PACKS, .flags = CFG_F_RESTART, .min = 0, .max = GW_MAX_PACKS),
    FIELD(battery, S_BAT, min_online_packs, CFG_U8, .min = 1, .max = GW_MAX_PACKS),
    FIELD(battery, S_BAT, rejoin_max_dv, CFG_FLOAT, .min = 0.05, .max = 5),
    FIELD(battery, S_BAT, stale_after_ms, CFG_U32, .min = 1000, .max = 60000),
    FIELD(battery, S_BAT, frozen_after_ms, CFG_U32, .min = 2000, .max = 600000),
    FIELD(battery, S_BAT, implausible_in_row, CFG_U32, .min = 1, .max = 100),
    FIELD(battery, S_BAT, soc_spread_percent, CFG_FLOAT, .min = 1, .max = 100),

    FIELD(dbus, S_DBUS, enabled, CFG_BOOL, .flags = CFG_F_RESTART),
    FIELD(dbus, S_DBUS, device_instance, CFG_U16, .flags = CFG_F_RESTART, .min = 0, .max = 1023),
    FIELD(dbus, S_DBUS, per_pack, CFG_BOOL, .flags = CFG_F_RESTART),
    ENUMF(dbus, S_DBUS, capacity, dbus_capacity_names, .flags = CFG_F_RESTART),
};
const size_t config__field_count = sizeof config__fields / sizeof config__fields[0];

static const char *const section_names[] = { "bms", "can", "charge", "mqtt", "web",
                                             "network", "alerts", "history", "update", "battery", "dbus" };
#define SECTION_COUNT (sizeof section_names / sizeof section_names[0])

void config__field_path(const struct config_field *f, char *buf, size_t cap)
{
    config__format(buf, cap, "%s.%s", f->section, f->name);
}

/* ---------------------------------------------------------------------------------------------
 * JSON -> struct
 * ------------------------------------------------------------------------------------------- */

static const char *json_type_name(const cJSON *item)
{
    if (cJSON_IsBool(item))
        return "a boolean";
    if (cJSON_IsNumber(item))
        return "a number";
    if (cJSON_IsString(item))
        return "a string";
    if (cJSON_IsArray(item))
        return "an array";
    if (cJSON_IsObject(item))
        return "an object";
    if (cJSON_IsNull(item))
        return "null";
    return "invalid";
}

/* Integer of [min,max] from a JSON number; false when not a number, not integral or outside. */
static bool json_integer(const cJSON *item, double min, double max, double *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double v = item->valuedouble;
    if (!isfinite(v) || floor(v) != v || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool json_float(const cJSON *item, float *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double v = item->valuedouble;
    if (!isfinite(v) || fabs(v) > FLT_MAX)
        return false;
    *out = (float)v;
    return true;
}

static unsigned apply_curve(const cJSON *item, struct gw_curve *curve, const char *path,
                            struct config_errors *errors)
{
    if (!cJSON_IsObject(item)) {
        config_errors_add(errors, path, "must be an object {\"x\":[...],\"y\":[...]}, not %s",
                          json_type_name(item));
        return 1;
    }
    const cJSON *xs = cJSON_GetObjectItemCaseSensitive(item, "x");
    const cJSON *ys = cJSON_GetObjectItemCaseSensitive(item, "y");
    unsigned problems = 0;
    if (!cJSON_IsArray(xs) || !cJSON_IsArray(ys)) {
        config_errors_add(errors, path, "needs both \"x\" and \"y\" arrays of numbers");
        return 1;
    }
    int nx = cJSON_GetArraySize(xs), ny = cJSON_GetArraySize(ys);
    if (nx != ny) {
        config_errors_add(errors, path, "\"x\" has %d points but \"y\" has %d", nx, ny);
        return 1;
    }
    if (nx > GW_CURVE_POINTS) {
        config_errors_add(errors, path, "has %d points, at most %d", nx, GW_CURVE_POINTS);
        return 1;
    }
    struct gw_curve parsed = { .count = (uint8_t)nx };
    char sub[CONFIG_ERROR_PATH_MAX];
    for (int axis = 0; axis < 2; axis++) {
        const cJSON *arr = axis == 0 ? xs : ys;
        float *dst = axis == 0 ? parsed.x : parsed.y;
        int i = 0;
        const cJSON *el;
        cJSON_ArrayForEach(el, arr)
        {
            if (!json_float(el, &dst[i])) {
                config__format(sub, sizeof sub, "%s.%c[%d]", path, axis == 0 ? 'x' : 'y', i);
                config_errors_add(errors, sub, "must be a number, not %s", json_type_name(el));
                problems++;
            }
            i++;
        }
    }
    const cJSON *child;
    cJSON_ArrayForEach(child, item)
    {
        if (strcmp(child->string, "x") != 0 && strcmp(child->string, "y") != 0)
            GW_LOGW(MOD, "%s: unknown key \"%s\" ignored", path, child->string);
    }
    if (!problems)
        *curve = parsed;
    return problems;
}

static int enum_index(const char *const *names, unsigned count, const char *s)
{
    for (unsigned i = 0; i < count; i++)
        if (strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

static void enum_list(const char *const *names, unsigned count, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < count && used < cap; i++) {
        int n = snprintf(buf + used, cap - used, "%s\"%s\"", i ? ", " : "", names[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static unsigned apply_threshold(const cJSON *item, struct gw_alert_threshold *thr, const char *path,
                                struct config_errors *errors)
{
    if (!cJSON_IsObject(item)) {
        config_errors_add(errors, path, "must be an object {\"enabled\",\"value\",\"hysteresis\",\"level\"}, not %s",
                          json_type_name(item));
        return 1;
    }
    struct gw_alert_threshold t = *thr;
    unsigned problems = 0;
    char sub[CONFIG_ERROR_PATH_MAX];
    const cJSON *child;
    cJSON_ArrayForEach(child, item)
    {
        config__format(sub, sizeof sub, "%s.%s", path, child->string);
        if (strcmp(child->string, "enabled") == 0) {
            if (cJSON_IsBool(child))
                t.enabled = cJSON_IsTrue(child);
            else {
                config_errors_add(errors, sub, "must be true or false, not %s", json_type_name(child));
                problems++;
            }
        } else if (strcmp(child->string, "value") == 0 || strcmp(child->string, "hysteresis") == 0) {
            float v;
            if (json_float(child, &v)) {
                if (child->string[0] == 'v')
                    t.value = v;
                else
                    t.hysteresis = v;
            } else {
                config_errors_add(errors, sub, "must be a number, not %s", json_type_name(child));
                problems++;
            }
        } else if (strcmp(child->string, "level") == 0) {
            int idx = cJSON_IsString(child) ? enum_index(config__level_names, 3, child->valuestring) : -1;
            if (idx >= 0)
                t.level = (uint8_t)idx;
            else {
                config_errors_add(errors, sub, "must be one of \"info\", \"warning\", \"error\"");
                problems++;
            }
        } else {
            GW_LOGW(MOD, "%s: unknown key ignored", sub);
        }
    }
    if (!problems)
        *thr = t;
    return problems;
}

/* The pack list replaces the stored one as a whole (an array of objects). */
static unsigned apply_packs(const cJSON *item, struct gw_config_pack_list *list, const char *path,
                            struct config_errors *errors)
{
    if (!cJSON_IsArray(item)) {
        config_errors_add(errors, path, "must be an array of {\"uart_device\",\"name\",\"capacity_ah\"}, not %s",
                          json_type_name(item));
        return 1;
    }
    int n = cJSON_GetArraySize(item);
    if (n > GW_MAX_PACKS) {
        config_errors_add(errors, path, "at most %d packs (got %d)", GW_MAX_PACKS, n);
        return 1;
    }
    struct gw_config_pack_list next;
    memset(&next, 0, sizeof next);
    unsigned problems = 0;
    char sub[CONFIG_ERROR_PATH_MAX];
    const cJSON *pack;
    cJSON_ArrayForEach(pack, item)
    {
        struct gw_config_pack *p = &next.packs[next.count];
        config__format(sub, sizeof sub, "%s[%u]", path, (unsigned)next.count);
        next.count++;
        if (!cJSON_IsObject(pack)) {
            config_errors_add(errors, sub, "must be an object, not %s", json_type_name(pack));
            problems++;
            continue;
        }
        const cJSON *child;
        cJSON_ArrayForEach(child, pack)
        {
            char key[CONFIG_ERROR_PATH_MAX];
            config__format(key, sizeof key, "%s.%s", sub, child->string);
            if (strcmp(child->string, "uart_device") == 0 || strcmp(child->string, "name") == 0) {
                bool dev = child->string[0] == 'u';
                size_t cap = dev ? sizeof p->uart_device : sizeof p->name;
                if (!cJSON_IsString(child)) {
                    config_errors_add(errors, key, "must be a string, not %s", json_type_name(child));
                    problems++;
                } else if (strlen(child->valuestring) >= cap) {
                    config_errors_add(errors, key, "too long: at most %zu bytes", cap - 1);
                    problems++;
                } else {
                    memcpy(dev ? p->uart_device : p->name, child->valuestring, strlen(child->valuestring) + 1);
                }
            } else if (strcmp(child->string, "capacity_ah") == 0) {
                if (!json_float(child, &p->capacity_ah)) {
                    config_errors_add(errors, key, "must be a number, not %s", json_type_name(child));
                    problems++;
                }
            } else {
                GW_LOGW(MOD, "%s: unknown key ignored", key);
            }
        }
    }
    if (!problems)
        *list = next;
    return problems;
}

static unsigned apply_field(const cJSON *item, struct gw_config *cfg, const struct config_field *f,
                            const struct config_apply_opts *opts, struct config_errors *errors)
{
    char path[CONFIG_ERROR_PATH_MAX];
    config__field_path(f, path, sizeof path);
    void *p = config__field_ptr(cfg, f);
    double d;

    switch ((enum config_kind)f->kind) {
    case CFG_BOOL:
        if (!cJSON_IsBool(item)) {
            config_errors_add(errors, path, "must be true or false, not %s", json_type_name(item));
            return 1;
        }
        *(bool *)p = cJSON_IsTrue(item);
        return 0;
    case CFG_U8:
    case CFG_U16:
    case CFG_U32:
        if (!json_integer(item, f->min, f->max, &d)) {
            if (!cJSON_IsNumber(item))
                config_errors_add(errors, path, "must be an integer in %.10g..%.10g, not %s", f->min, f->max,
                                  json_type_name(item));
            else
                config_errors_add(errors, path, "must be an integer in %.10g..%.10g (got %.10g)", f->min, f->max,
                                  item->valuedouble);
            return 1;
        }
        if (f->kind == CFG_U8)
            *(uint8_t *)p = (uint8_t)d;
        else if (f->kind == CFG_U16)
            *(uint16_t *)p = (uint16_t)d;
        else
            *(uint32_t *)p = (uint32_t)d;
        return 0;
    case CFG_FLOAT: {
        float v;
        if (!json_float(item, &v)) {
            config_errors_add(errors, path, "must be a number, not %s", json_type_name(item));
            return 1;
        }
        *(float *)p = v;
        return 0;
    }
    case CFG_STRING: {
        if (!cJSON_IsString(item)) {
            config_errors_add(errors, path, "must be a string, not %s", json_type_name(item));
            return 1;
        }
        if ((f->flags & CFG_F_HASH) && opts->user) {
            config_errors_add(errors, path, "cannot be set directly; send \"web\":{\"password\":\"...\"}");
            return 1;
        }
        if ((f->flags & CFG_F_SECRET) && !opts->allow_secrets) {
            config_errors_add(errors, path, "secrets are not accepted here");
            return 1;
        }
        const char *s = item->valuestring;
        if ((f->flags & CFG_F_SECRET) && strcmp(s, CONFIG_SECRET_MASK) == 0)
            return 0; /* the masked value sent back: keep the stored secret */
        size_t len = strlen(s);
        if (len >= f->size) {
            config_errors_add(errors, path, "too long: %zu bytes, at most %zu", len, f->size - 1);
            return 1;
        }
        memcpy(p, s, len + 1);
        return 0;
    }
    case CFG_ENUM: {
        int idx = cJSON_IsString(item) ? enum_index(f->names, f->name_count, item->valuestring) : -1;
        if (idx < 0) {
            char list[96];
            enum_list(f->names, f->name_count, list, sizeof list);
            config_errors_add(errors, path, "must be one of %s", list);
            return 1;
        }
        *(uint8_t *)p = (uint8_t)idx;
        return 0;
    }
    case CFG_CURVE:
        return apply_curve(item, p, path, errors);
    case CFG_THRESHOLD:
        return apply_threshold(item, p, path, errors);
    case CFG_PACKS:
        return apply_packs(item, p, path, errors);
    }
    return 0;
}

static const struct config_field *find_field(const char *section, const char *name)
{
    for (size_t i = 0; i < config__field_count; i++)
        if (strcmp(config__fields[i].section, section) == 0 && strcmp(config__fields[i].name, name) == 0)
            return &config__fields[i];
    return NULL;
}

static bool known_section(const char *name)
{
    for (size_t i = 0; i < SECTION_COUNT; i++)
        if (strcmp(section_names[i], name) == 0)
            return true;
    return false;
}

static unsigned apply_web_password(const cJSON *item, struct gw_config *cfg, const struct config_apply_opts *opts,
                                   struct config_errors *errors)
{
    if (!opts->user) {
        GW_LOGW(MOD, "web.password in a stored document is ignored: set the password through the web UI or API");
        return 0;
    }
    if (!opts->allow_secrets) {
        config_errors_add(errors, "web.password", "secrets are not accepted here");
        return 1;
    }
    if (!cJSON_IsString(item)) {
        config_errors_add(errors, "web.password", "must be a string, not %s", json_type_name(item));
        return 1;
    }
    if (strcmp(item->valuestring, CONFIG_SECRET_MASK) == 0)
        return 0; /* masked value echoed back: unchanged */
    size_t len = strlen(item->valuestring);
    if (len < CONFIG_WEB_PASSWORD_MIN || len > CONFIG_WEB_PASSWORD_MAX) {
        config_errors_add(errors, "web.password", "must be %d..%d characters (got %zu)", CONFIG_WEB_PASSWORD_MIN,
                          CONFIG_WEB_PASSWORD_MAX, len);
        return 1;
    }
    if (!opts->web_password_hash || strlen(opts->web_password_hash) >= sizeof cfg->web.password_hash) {
        config_errors_add(errors, "web.password", "could not be hashed (see log)");
        return 1;
    }
    strcpy(cfg->web.password_hash, opts->web_password_hash);
    return 0;
}

unsigned config__apply_json(const cJSON *root, struct gw_config *cfg, const struct config_apply_opts *opts,
                            struct config_errors *errors)
{
    if (!cJSON_IsObject(root)) {
        config_errors_add(errors, "", "the document must be a JSON object, not %s", json_type_name(root));
        return 1;
    }
    unsigned problems = 0;
    const cJSON *sec;
    cJSON_ArrayForEach(sec, root)
    {
        if (strcmp(sec->string, "schema_version") == 0) {
            double v;
            if (!json_integer(sec, 1, 1000000, &v)) {
                config_errors_add(errors, "schema_version", "must be a positive integer");
                problems++;
            } else if (v > GW_CONFIG_SCHEMA_VERSION) {
                GW_LOGW(MOD, "document schema_version %.0f is newer than this gateway's %d: unknown keys are ignored",
                        v, GW_CONFIG_SCHEMA_VERSION);
            }
            continue;
        }
        if (!known_section(sec->string)) {
            GW_LOGW(MOD, "unknown key \"%s\" ignored", sec->string);
            continue;
        }
        if (!cJSON_IsObject(sec)) {
            config_errors_add(errors, sec->string, "must be an object, not %s", json_type_name(sec));
            problems++;
            continue;
        }
        /* A new chemistry brings its own voltages and curves; fields of this same document
         * still win because they are applied afterwards. */
        if (opts->chemistry_resets && strcmp(sec->string, "charge") == 0) {
            const cJSON *chem = cJSON_GetObjectItemCaseSensitive(sec, "chemistry");
            int idx = cJSON_IsString(chem) ? enum_index(chemistry_names, 2, chem->valuestring) : -1;
            if (idx >= 0 && idx != cfg->charge.chemistry)
                gw_config_charge_defaults(&cfg->charge, (enum gw_chemistry)idx);
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, sec)
        {
            const struct config_field *f = find_field(sec->string, item->string);
            if (f) {
                problems += apply_field(item, cfg, f, opts, errors);
            } else if (strcmp(sec->string, "web") == 0 && strcmp(item->string, "password") == 0) {
                problems += apply_web_password(item, cfg, opts, errors);
            } else {
                GW_LOGW(MOD, "unknown key \"%s.%s\" ignored", sec->string, item->string);
            }
        }
    }
    return problems;
}

cJSON *config__parse(const char *json, size_t len, struct config_errors *errors)
{
    if (!json) {
        config_errors_add(errors, "", "no document");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        config_errors_add(errors, "", "invalid JSON near byte %zu", at);
        return NULL;
    }
    size_t off = end && end >= json ? (size_t)(end - json) : len;
    while (off < len && (json[off] == ' ' || json[off] == '\t' || json[off] == '\n' || json[off] == '\r'))
        off++;
    /* Anything after the document, a NUL included (a file cut and glued by a crash or an
     * editor), makes it a different document than the one its writer meant. */
    if (off < len) {
        config_errors_add(errors, "", "invalid JSON: unexpected data after the document at byte %zu", off);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int gw_config_from_json(const char *json, size_t len, struct gw_config *cfg, struct config_errors *errors)
{
    config_errors_clear(errors);
    if (!json || !cfg) {
        config_errors_add(errors, "", "no document");
        return GW_ERR_INVAL;
    }
    cJSON *root = config__parse(json, len, errors);
    if (!root)
        return GW_ERR_INVAL;
    /* The candidate and the second error list on the heap: web server threads have small stacks. */
    struct gw_config *candidate = malloc(sizeof *candidate);
    struct config_errors *more = errors ? calloc(1, sizeof *more) : NULL;
    if (!candidate || (errors && !more)) {
        cJSON_Delete(root);
        free(candidate);
        free(more);
        return GW_ERR_NOMEM;
    }
    *candidate = *cfg;
    const struct config_apply_opts opts = { .user = false, .allow_secrets = true };
    unsigned problems = config__apply_json(root, candidate, &opts, errors);
    cJSON_Delete(root);
    /* Validate even after type errors so one pass reports every problem. */
    int vrc = gw_config_validate(candidate, more);
    if (errors && vrc != GW_OK) {
        for (uint32_t i = 0; i < more->count; i++)
            config_errors_add(errors, more->items[i].path, "%s", more->items[i].message);
        errors->dropped += more->dropped;
    }
    int rc = (problems || vrc != GW_OK) ? GW_ERR_INVAL : GW_OK;
    if (rc == GW_OK)
        *cfg = *candidate;
    free(candidate);
    free(more);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * struct -> JSON
 * ------------------------------------------------------------------------------------------- */

/* The shortest decimal that reads back as the same float: 3.45f prints as 3.45, not
 * 3.4500000476837158, so the file stays readable and round-trips exactly. */
static double tidy_float(float f)
{
    char buf[32];
    for (int digits = 6; digits <= 9; digits++) {
        config__format(buf, sizeof buf, "%.*g", digits, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f)
            return d;
    }
    return (double)f;
}

static cJSON *curve_to_json(const struct gw_curve *c)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON *xs = cJSON_AddArrayToObject(obj, "x");
    cJSON *ys = cJSON_AddArrayToObject(obj, "y");
    if (!obj || !xs || !ys) {
        cJSON_Delete(obj);
        return NULL;
    }
    unsigned n = c->count > GW_CURVE_POINTS ? GW_CURVE_POINTS : c->count;
    for (unsigned i = 0; i < n; i++) {
        cJSON_AddItemToArray(xs, cJSON_CreateNumber(tidy_float(c->x[i])));
        cJSON_AddItemToArray(ys, cJSON_CreateNumber(tidy_float(c->y[i])));
    }
    return obj;
}

static cJSON *packs_to_json(const struct gw_config_pack_list *l)
{
    cJSON *arr = cJSON_CreateArray();
    for (unsigned i = 0; arr && i < l->count && i < GW_MAX_PACKS; i++) {
        const struct gw_config_pack *p = &l->packs[i];
        cJSON *o = cJSON_CreateObject();
        char dev[GW_PATH_MAX], name[sizeof p->name];
        config__format(dev, sizeof dev, "%.*s", (int)strnlen(p->uart_device, sizeof p->uart_device), p->uart_device);
        config__format(name, sizeof name, "%.*s", (int)strnlen(p->name, sizeof p->name), p->name);
        if (!o || !cJSON_AddStringToObject(o, "uart_device", dev) || !cJSON_AddStringToObject(o, "name", name) ||
            !cJSON_AddNumberToObject(o, "capacity_ah", (double)p->capacity_ah)) {
            cJSON_Delete(o);
            cJSON_Delete(arr);
            return NULL;
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static cJSON *threshold_to_json(const struct gw_alert_threshold *t)
{
    cJSON *obj = cJSON_CreateObject();
    if (!obj)
        return NULL;
    cJSON_AddBoolToObject(obj, "enabled", t->enabled);
    cJSON_AddNumberToObject(obj, "value", tidy_float(t->value));
    cJSON_AddNumberToObject(obj, "hysteresis", tidy_float(t->hysteresis));
    cJSON_AddStringToObject(obj, "level", t->level < 3 ? config__level_names[t->level] : "error");
    return obj;
}

static bool add_field(cJSON *obj, const struct gw_config *cfg, const struct config_field *f,
                      enum config_json_mode mode)
{
    const void *p = config__field_cptr(cfg, f);
    cJSON *item = NULL;
    if ((f->flags & CFG_F_HASH) && mode != CONFIG_JSON_STORAGE)
        return true;
    if ((f->flags & CFG_F_SECRET) && mode == CONFIG_JSON_EXPORT)
        return true;
    switch ((enum config_kind)f->kind) {
    case CFG_BOOL:
        item = cJSON_CreateBool(*(const bool *)p);
        break;
    case CFG_U8:
        item = cJSON_CreateNumber(*(const uint8_t *)p);
        break;
    case CFG_U16:
        item = cJSON_CreateNumber(*(const uint16_t *)p);
        break;
    case CFG_U32:
        item = cJSON_CreateNumber(*(const uint32_t *)p);
        break;
    case CFG_FLOAT:
        item = cJSON_CreateNumber(tidy_float(*(const float *)p));
        break;
    case CFG_STRING: {
        char tmp[GW_PATH_MAX];
        size_t n = strnlen(p, f->size);
        if (n >= sizeof tmp)
            n = sizeof tmp - 1;
        memcpy(tmp, p, n);
        tmp[n] = '\0';
        if ((f->flags & CFG_F_SECRET) && mode == CONFIG_JSON_MASKED)
            item = cJSON_CreateString(n ? CONFIG_SECRET_MASK : "");
        else
            item = cJSON_CreateString(tmp);
        break;
    }
    case CFG_ENUM: {
        uint8_t v = *(const uint8_t *)p;
        item = cJSON_CreateString(v < f->name_count ? f->names[v] : f->names[0]);
        break;
    }
    case CFG_CURVE:
        item = curve_to_json(p);
        break;
    case CFG_THRESHOLD:
        item = threshold_to_json(p);
        break;
    case CFG_PACKS:
        item = packs_to_json(p);
        break;
    }
    if (!item)
        return false;
    cJSON_AddItemToObject(obj, f->name, item);
    return true;
}

int gw_config_to_json(const struct gw_config *cfg, enum config_json_mode mode, bool pretty, char **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!cfg || mode > CONFIG_JSON_STORAGE)
        return GW_ERR_INVAL;
    cJSON *root = cJSON_CreateObject();
    if (!root || !cJSON_AddNumberToObject(root, "schema_version", GW_CONFIG_SCHEMA_VERSION))
        goto nomem;
    for (size_t s = 0; s < SECTION_COUNT; s++) {
        cJSON *sec = cJSON_AddObjectToObject(root, section_names[s]);
        if (!sec)
            goto nomem;
        for (size_t i = 0; i < config__field_count; i++) {
            if (strcmp(config__fields[i].section, section_names[s]) != 0)
                continue;
            if (!add_field(sec, cfg, &config__fields[i], mode))
                goto nomem;
        }
    }
    *out = pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *out ? GW_OK : GW_ERR_NOMEM;
nomem:
    cJSON_Delete(root);
    return GW_ERR_NOMEM;
}

/* ---------------------------------------------------------------------------------------------
 * Diff
 * ------------------------------------------------------------------------------------------- */

static bool field_equal(const struct gw_config *a, const struct gw_config *b, const struct config_field *f)
{
    const void *pa = config__field_cptr(a, f), *pb = config__field_cptr(b, f);
    switch ((enum config_kind)f->kind) {
    case CFG_STRING:
        return strncmp(pa, pb, f->size) == 0;
    case CFG_CURVE: {
        const struct gw_curve *ca = pa, *cb = pb;
        if (ca->count != cb->count)
            return false;
        for (unsigned i = 0; i < ca->count && i < GW_CURVE_POINTS; i++)
            if (ca->x[i] != cb->x[i] || ca->y[i] != cb->y[i])
                return false;
        return true;
    }
    case CFG_THRESHOLD: {
        const struct gw_alert_threshold *ta = pa, *tb = pb;
        return ta->enabled == tb->enabled && ta->value == tb->value && ta->hysteresis == tb->hysteresis &&
               ta->level == tb->level;
    }
    case CFG_FLOAT:
        return *(const float *)pa == *(const float *)pb;
    case CFG_PACKS: {
        const struct gw_config_pack_list *la = pa, *lb = pb;
        if (la->count != lb->count)
            return false;
        for (unsigned i = 0; i < la->count && i < GW_MAX_PACKS; i++)
            if (strncmp(la->packs[i].uart_device, lb->packs[i].uart_device, GW_PATH_MAX) != 0 ||
                strncmp(la->packs[i].name, lb->packs[i].name, sizeof la->packs[i].name) != 0 ||
                la->packs[i].capacity_ah != lb->packs[i].capacity_ah)
                return false;
        return true;
    }
    default:
        return memcmp(pa, pb, f->size) == 0;
    }
}

uint32_t gw_config_diff(const struct gw_config *a, const struct gw_config *b, char *changed, size_t cap,
                        bool *restart_required)
{
    uint32_t sections = 0;
    bool restart = false, truncated = false;
    size_t used = 0;
    if (changed && cap)
        changed[0] = '\0';
    for (size_t i = 0; i < config__field_count; i++) {
        const struct config_field *f = &config__fields[i];
        if (field_equal(a, b, f))
            continue;
        sections |= f->section_bit;
        if (f->flags & CFG_F_RESTART)
            restart = true;
        if (!changed || cap == 0 || truncated)
            continue;
        char path[CONFIG_ERROR_PATH_MAX];
        config__field_path(f, path, sizeof path);
        size_t need = strlen(path) + (used ? 1 : 0);
        /* Keep room for ",..." so a cut list says it was cut. */
        if (used + need + 4 >= cap) {
            truncated = true;
            if (used + 4 < cap) {
                memcpy(changed + used, ",...", 5);
                used += 4;
            }
            continue;
        }
        if (used)
            changed[used++] = ',';
        memcpy(changed + used, path, strlen(path) + 1);
        used += strlen(path);
    }
    if (restart_required)
        *restart_required = restart;
    return sections;
}
