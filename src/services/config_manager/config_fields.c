/* The field table of the configuration: every field once, with its JSON name, kind, range,
 * restart flag and format check. config_json.c maps documents with it, config_validate.c checks
 * values with it, docs/configuration.md is kept in step with it. Pure: no state, no I/O. */
#define _POSIX_C_SOURCE 200809L
#include "config_fields.h"

#include "app_events.h"
#include "config_internal.h"
#include "gw_error.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const cell_order_names[] = { "documented", "reversed" };
const char *const config__chemistry_names[2] = { "lfp", "nmc" };
static const char *const net_reconnect_names[] = { "off", "wpa_supplicant" }; /* enum gw_net_reconnect */
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

    ENUMF(charge, S_CHG, chemistry, config__chemistry_names),
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
    FIELD(network, S_NET, wifi_ssid, CFG_STRING, .flags = CFG_F_RESTART, .format = config__check_ssid),
    FIELD(network, S_NET, wifi_password, CFG_STRING, .flags = CFG_F_SECRET | CFG_F_RESTART,
          .format = config__check_wifi_password),
    ENUMF(network, S_NET, reconnect, net_reconnect_names, .flags = CFG_F_RESTART),
    FIELD(network, S_NET, wpa_ctrl_dir, CFG_STRING, .flags = CFG_F_RESTART | CFG_F_NONEMPTY,
          .format = config__check_abs_path),

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

void config__field_path(const struct config_field *f, char *buf, size_t cap)
{
    config__format(buf, cap, "%s.%s", f->section, f->name);
}

/* ---------------------------------------------------------------------------------------------
 * Formats: each returns NULL when fine, else a static reason. Called on non-empty strings.
 * ------------------------------------------------------------------------------------------- */

const char *config__check_no_control(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return "must not contain control characters";
    return NULL;
}

const char *config__check_ascii(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return "must be printable ASCII (it is sent in CAN frames)";
    return NULL;
}

/* RFC 1123 host name: dot-separated labels of 1..63 letters, digits and '-', not starting or
 * ending with '-', 253 bytes at most. */
const char *config__check_hostname(const char *v)
{
    size_t len = strlen(v);
    if (len == 0 || len > 253)
        return "must be a host name of 1..253 characters";
    size_t label = 0;
    char prev = '.';
    for (const char *p = v; *p; p++) {
        char c = *p;
        if (c == '.') {
            if (label == 0)
                return "has an empty label (\"..\" or a leading dot)";
            if (prev == '-')
                return "has a label ending with '-'";
            label = 0;
        } else if (isalnum((unsigned char)c) || c == '-') {
            if (label == 0 && c == '-')
                return "has a label starting with '-'";
            if (++label > 63)
                return "has a label longer than 63 characters";
        } else {
            return "may only contain letters, digits, '-' and '.' (RFC 1123)";
        }
        prev = c;
    }
    if (prev == '-')
        return "has a label ending with '-'";
    if (prev == '.')
        return "must not end with a dot";
    return NULL;
}

const char *config__check_ip_literal(const char *v)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, v, buf) == 1 || inet_pton(AF_INET6, v, buf) == 1)
        return NULL;
    return "must be an IPv4 or IPv6 address (\"0.0.0.0\" for every interface)";
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* mqtt://host[:port] or mqtts://host[:port]; host: RFC 1123 name, IPv4 or [IPv6]. */
const char *config__check_mqtt_uri(const char *v)
{
    const char *rest;
    if (strncmp(v, "mqtt://", 7) == 0)
        rest = v + 7;
    else if (strncmp(v, "mqtts://", 8) == 0)
        rest = v + 8;
    else
        return "must start with mqtt:// or mqtts://";
    char host[128];
    const char *after;
    if (*rest == '[') {
        const char *close = strchr(rest, ']');
        if (!close)
            return "has an IPv6 address without ']'";
        size_t n = (size_t)(close - rest - 1);
        if (n == 0 || n >= sizeof host)
            return "has an invalid IPv6 address";
        memcpy(host, rest + 1, n);
        host[n] = '\0';
        unsigned char buf[16];
        if (inet_pton(AF_INET6, host, buf) != 1)
            return "has an invalid IPv6 address";
        after = close + 1;
    } else {
        size_t n = strcspn(rest, ":/@?#");
        if (n == 0)
            return "has no host (mqtt://host[:port])";
        if (n >= sizeof host)
            return "has a host name that is too long";
        memcpy(host, rest, n);
        host[n] = '\0';
        if (config__check_hostname(host))
            return "has an invalid host name (RFC 1123 name or IPv4 address expected)";
        after = rest + n;
    }
    if (*after == '\0')
        return NULL;
    if (*after != ':')
        return "must be mqtt[s]://host[:port] (no user, path or query)";
    const char *port = after + 1;
    size_t plen = strlen(port);
    if (!all_digits(port, plen) || plen > 5)
        return "has an invalid port (1..65535)";
    long p = strtol(port, NULL, 10);
    if (p < 1 || p > 65535)
        return "has a port outside 1..65535";
    return NULL;
}

/* A Linux network interface name (IFNAMSIZ - 1 = 15 bytes). */
const char *config__check_ifname(const char *v)
{
    size_t len = strlen(v);
    if (len > 15)
        return "must be a network interface name of at most 15 characters";
    if (strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
        return "must be a network interface name";
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '/' || *p == ':')
            return "must be a network interface name (no spaces, '/' or ':')";
    return NULL;
}

const char *config__check_abs_path(const char *v)
{
    if (v[0] != '/')
        return "must be an absolute path";
    return config__check_no_control(v);
}

const char *config__check_device_path(const char *v)
{
    if (v[0] != '/')
        return "must be an absolute device path such as /dev/ttyUSB0";
    return config__check_no_control(v);
}

/* "can0" | "slcan:/dev/ttyACM0[@500000]" | "log:FILE". */
const char *config__check_can_interface(const char *v)
{
    if (strncmp(v, "slcan:", 6) == 0) {
        const char *dev = v + 6;
        if (dev[0] != '/')
            return "slcan: needs a device path (slcan:/dev/ttyACM0[@baud])";
        const char *at = strchr(dev, '@');
        if (at) {
            size_t n = strlen(at + 1);
            if (!all_digits(at + 1, n) || n > 7)
                return "slcan: serial speed after '@' must be a number";
            long baud = strtol(at + 1, NULL, 10);
            if (baud < 1200 || baud > 4000000)
                return "slcan: serial speed must be 1200..4000000";
        }
        return config__check_no_control(dev);
    }
    if (strncmp(v, "log:", 4) == 0) {
        if (v[4] == '\0')
            return "log: needs a file name (log:FILE)";
        return config__check_no_control(v + 4);
    }
    const char *why = config__check_ifname(v);
    return why ? "must be a SocketCAN interface (can0), slcan:/dev/DEVICE[@baud] or log:FILE" : NULL;
}

/* No MQTT wildcards, no leading/trailing '/', not a $SYS-like topic. */
const char *config__check_topic_prefix(const char *v)
{
    if (strpbrk(v, "+#"))
        return "must not contain MQTT wildcards '+' or '#'";
    if (v[0] == '/' || v[strlen(v) - 1] == '/')
        return "must not start or end with '/'";
    if (v[0] == '$')
        return "must not start with '$' (reserved by brokers)";
    if (strstr(v, "//"))
        return "must not contain an empty level (\"//\")";
    return config__check_no_control(v);
}

const char *config__check_client_id(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return "must be printable ASCII without spaces";
    return NULL;
}

const char *config__check_web_username(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == ':')
            return "must be printable ASCII without spaces or ':'";
    return NULL;
}

const char *config__check_ssid(const char *v)
{
    if (strlen(v) > 32)
        return "must be 1..32 bytes";
    return config__check_no_control(v);
}

/* WPA2 passphrase: 8..63 printable ASCII characters. */
const char *config__check_wifi_password(const char *v)
{
    size_t len = strlen(v);
    if (len < 8 || len > 63)
        return "must be 8..63 characters (WPA2 passphrase)";
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return "must be printable ASCII (WPA2 passphrase)";
    return NULL;
}
