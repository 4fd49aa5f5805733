/* Pure helpers of the gateway: numbers, JSON documents (cJSON only), command parsing. */
#include "mqtt_gateway_internal.h"

#include "gw_error.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ numbers */

int mqtt_gateway__format_number(char *buf, size_t cap, double value, int decimals)
{
    if (!buf || cap == 0 || decimals < 0 || decimals > 6)
        return GW_ERR_INVAL;
    buf[0] = '\0';
    if (!isfinite(value))
        return GW_ERR_RANGE;
    int n = snprintf(buf, cap, "%.*f", decimals, value);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return GW_ERR_OVERFLOW;
    }
    if (buf[0] == '-') { /* "-0.00": a tiny negative rounded to zero */
        bool all_zero = true;
        for (const char *p = buf + 1; *p; p++)
            if (*p != '0' && *p != '.')
                all_zero = false;
        if (all_zero)
            memmove(buf, buf + 1, (size_t)n);
    }
    return GW_OK;
}

double mqtt_gateway__round(double value, int decimals)
{
    if (!isfinite(value))
        return value;
    double scale = pow(10.0, decimals);
    double r = round(value * scale) / scale;
    return r == 0.0 ? 0.0 : r; /* no -0 */
}

/* Adds a rounded number, or null for NaN/inf (a NaN is never published as a number). */
static void add_num(cJSON *obj, const char *name, double v, int decimals)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(obj, name, mqtt_gateway__round(v, decimals));
    else
        cJSON_AddNullToObject(obj, name);
}

/* Copies a fixed-size field that may lack its NUL. */
static void field_text(char *dst, size_t cap, const char *src, size_t src_cap)
{
    size_t n = strnlen(src, src_cap);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ------------------------------------------------------------------ documents */

cJSON *mqtt_gateway__status_json(const struct bms_live_data *d)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    unsigned cells = d->cell_count <= BMS_MAX_CELLS ? d->cell_count : BMS_MAX_CELLS;

    cJSON_AddNumberToObject(root, "timestamp", (double)(d->wall_time_ms / 1000));

    cJSON *bat = cJSON_AddObjectToObject(root, "battery");
    double v = d->pack_voltage_v, i = d->pack_current_a;
    add_num(bat, "voltage", v, 2);
    add_num(bat, "current", i, 2);
    add_num(bat, "power", v * i, 1);
    add_num(bat, "soc", bms_soc_percent(d), 1);
    add_num(bat, "soh", d->soh_valid ? (double)bms_soh_percent(d) : NAN, 1);

    /* Highest/lowest from the registers; from the cells when the registers are empty. */
    unsigned max_mv = d->max_cell_mv, min_mv = d->min_cell_mv;
    if ((max_mv == 0 || min_mv == 0) && cells) {
        unsigned hi = 0, lo = UINT16_MAX;
        for (unsigned c = 0; c < cells; c++) {
            unsigned mv = (d->cell_mv_x10[c] + 5u) / 10u;
            hi = mv > hi ? mv : hi;
            lo = mv < lo ? mv : lo;
        }
        max_mv = hi;
        min_mv = lo;
    }
    cJSON *jc = cJSON_AddObjectToObject(root, "cells");
    cJSON_AddNumberToObject(jc, "count", cells);
    add_num(jc, "voltage_max", cells ? max_mv / 1000.0 : NAN, 3);
    add_num(jc, "voltage_min", cells ? min_mv / 1000.0 : NAN, 3);
    add_num(jc, "voltage_delta", cells ? d->cell_spread_mv_x10 / 10000.0 : NAN, 3);

    int present = 0;
    double sum = 0.0;
    int16_t tmax = 0, tmin = 0;
    for (unsigned s = 0; s < BMS_TEMP_SENSORS; s++) {
        if (d->temp_present[s]) {
            present++;
            sum += d->temp_dc[s] / 10.0;
        }
    }
    bool have_max = bms_temp_max_dc(d, &tmax);
    bool have_min = bms_temp_min_dc(d, &tmin);
    cJSON *jt = cJSON_AddObjectToObject(root, "temperature");
    cJSON_AddNumberToObject(jt, "sensor_count", present);
    add_num(jt, "max", have_max ? tmax / 10.0 : NAN, 1);
    add_num(jt, "min", have_min ? tmin / 10.0 : NAN, 1);
    add_num(jt, "avg", present ? sum / present : NAN, 1);

    /* Our extra fields (after the reference ones so readers of the reference format still
     * find what they expect). */
    cJSON_AddNumberToObject(root, "battery_id", d->battery_id);
    cJSON_AddStringToObject(bat, "status", bms_online_status_name(d->online_status));
    cJSON_AddNumberToObject(jc, "max_index", d->max_cell_index);
    cJSON_AddNumberToObject(jc, "min_index", d->min_cell_index);
    cJSON *volts = cJSON_AddArrayToObject(jc, "voltages");
    for (unsigned c = 0; c < cells; c++)
        cJSON_AddItemToArray(volts, cJSON_CreateNumber(mqtt_gateway__round(d->cell_mv_x10[c] / 10000.0, 3)));
    cJSON *bal = cJSON_AddArrayToObject(jc, "balancing");
    for (unsigned c = 0; c < cells; c++)
        if (d->balancing_active & (1u << c))
            cJSON_AddItemToArray(bal, cJSON_CreateNumber(c + 1));
    static const char *const sensor_names[BMS_TEMP_SENSORS] = { "internal", "external1", "external2" };
    for (unsigned s = 0; s < BMS_TEMP_SENSORS; s++)
        add_num(jt, sensor_names[s], d->temp_present[s] ? d->temp_dc[s] / 10.0 : NAN, 1);

    if (!bat || !jc || !jt || !volts || !bal) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static const char *level_name(uint8_t level)
{
    switch (level) {
    case ALERT_LEVEL_INFO: return "info";
    case ALERT_LEVEL_WARNING: return "warning";
    case ALERT_LEVEL_ERROR: return "error";
    default: return "unknown";
    }
}

cJSON *mqtt_gateway__alert_json(const struct app_alert *a, bool raised)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    char code[sizeof a->code + 1], message[sizeof a->message + 1];
    field_text(code, sizeof code, a->code, sizeof a->code);
    field_text(message, sizeof message, a->message, sizeof a->message);
    cJSON_AddStringToObject(root, "event", raised ? "raised" : "cleared");
    cJSON_AddStringToObject(root, "code", code);
    cJSON_AddStringToObject(root, "level", level_name(a->level));
    cJSON_AddNumberToObject(root, "battery_id", a->battery_id);
    cJSON_AddStringToObject(root, "message", message);
    add_num(root, "value", a->value, 3);
    add_num(root, "threshold", a->threshold, 3);
    cJSON_AddNumberToObject(root, "first_seen_ms", (double)a->first_seen_ms);
    cJSON_AddNumberToObject(root, "last_seen_ms", (double)a->last_seen_ms);
    cJSON_AddNumberToObject(root, "count", a->count);
    cJSON_AddBoolToObject(root, "acknowledged", a->acknowledged);
    return root;
}

cJSON *mqtt_gateway__balancing_json(const struct bms_live_data *d)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    unsigned cells = d->cell_count <= BMS_MAX_CELLS ? d->cell_count : BMS_MAX_CELLS;
    cJSON_AddNumberToObject(root, "active_mask", d->balancing_active);
    cJSON_AddNumberToObject(root, "decision_mask", d->balancing_decision);
    cJSON *arr = cJSON_AddArrayToObject(root, "active_cells");
    for (unsigned c = 0; c < cells && arr; c++)
        if (d->balancing_active & (1u << c))
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(c + 1));
    return root;
}

/* ------------------------------------------------------------------ commands */

static int fail(char *err, size_t cap, int rc, const char *text)
{
    if (err && cap)
        snprintf(err, cap, "%s", text);
    return rc;
}

/* ampere field: absent/null -> -1 (no cap); number 0..MAX -> value. */
static int parse_amps(const cJSON *root, const char *name, float *out, char *err, size_t cap)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!it || cJSON_IsNull(it)) {
        *out = -1.0f;
        return GW_OK;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
        snprintf(err, cap, "%s must be a number of amperes or null", name);
        return GW_ERR_INVAL;
    }
    if (it->valuedouble < 0.0 || it->valuedouble > MQTT_GATEWAY__CAP_MAX_A) {
        snprintf(err, cap, "%s must be between 0 and %.0f A", name, MQTT_GATEWAY__CAP_MAX_A);
        return GW_ERR_RANGE;
    }
    *out = (float)it->valuedouble;
    return GW_OK;
}

int mqtt_gateway__parse_charge_cap(const char *payload, size_t len, struct app_charge_cap *out,
                                   char *err, size_t err_cap)
{
    char dummy[8];
    if (!err || err_cap == 0) {
        err = dummy;
        err_cap = sizeof dummy;
    }
    err[0] = '\0';
    if (!out)
        return fail(err, err_cap, GW_ERR_INVAL, "internal: no output");
    memset(out, 0, sizeof *out);
    if (!payload || len == 0)
        return fail(err, err_cap, GW_ERR_INVAL, "empty payload: expected {\"ccl_a\":..,\"dcl_a\":..,\"duration_s\":..}");
    if (len > MQTT_GATEWAY__CMD_MAX_PAYLOAD)
        return fail(err, err_cap, GW_ERR_INVAL, "payload larger than 512 bytes");
    cJSON *root = cJSON_ParseWithLength(payload, len);
    if (!root)
        return fail(err, err_cap, GW_ERR_INVAL, "payload is not valid JSON");
    int rc = GW_OK;
    if (!cJSON_IsObject(root)) {
        rc = fail(err, err_cap, GW_ERR_INVAL, "payload is not a JSON object");
        goto out;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        if (!it->string || (strcmp(it->string, "ccl_a") != 0 && strcmp(it->string, "dcl_a") != 0 &&
                            strcmp(it->string, "duration_s") != 0)) {
            snprintf(err, err_cap, "unknown field \"%.40s\" (allowed: ccl_a, dcl_a, duration_s)",
                     it->string ? it->string : "");
            rc = GW_ERR_INVAL;
            goto out;
        }
    }
    const cJSON *dur = cJSON_GetObjectItemCaseSensitive(root, "duration_s");
    if (!dur || !cJSON_IsNumber(dur) || !isfinite(dur->valuedouble) ||
        dur->valuedouble != floor(dur->valuedouble)) {
        rc = fail(err, err_cap, GW_ERR_INVAL, "duration_s must be a whole number of seconds (0 = cancel)");
        goto out;
    }
    if (dur->valuedouble < 0 || dur->valuedouble > MQTT_GATEWAY__CAP_MAX_S) {
        rc = fail(err, err_cap, GW_ERR_RANGE, "duration_s must be between 0 and 604800 (7 days)");
        goto out;
    }
    out->duration_s = (uint32_t)dur->valuedouble;
    rc = parse_amps(root, "ccl_a", &out->ccl_cap_a, err, err_cap);
    if (rc == GW_OK)
        rc = parse_amps(root, "dcl_a", &out->dcl_cap_a, err, err_cap);
    if (rc != GW_OK)
        goto out;
    if (out->duration_s == 0) {
        out->ccl_cap_a = -1.0f;
        out->dcl_cap_a = -1.0f;
    } else if (out->ccl_cap_a < 0 && out->dcl_cap_a < 0) {
        rc = fail(err, err_cap, GW_ERR_INVAL, "nothing to cap: give ccl_a and/or dcl_a");
        goto out;
    }
    snprintf(out->source, sizeof out->source, "mqtt");
out:
    cJSON_Delete(root);
    if (rc != GW_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

/* Trims white space; returns false when the trimmed text does not fit. */
static bool trimmed(const char *payload, size_t len, char *buf, size_t cap)
{
    while (len && isspace((unsigned char)payload[0])) {
        payload++;
        len--;
    }
    while (len && isspace((unsigned char)payload[len - 1]))
        len--;
    if (len >= cap)
        return false;
    memcpy(buf, payload, len);
    buf[len] = '\0';
    return strlen(buf) == len; /* no embedded NUL */
}

int mqtt_gateway__parse_alert_ack(const char *payload, size_t len, struct app_alert_command *out,
                                  char *err, size_t err_cap)
{
    char text[40];
    if (!out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    if (!payload || !trimmed(payload, len, text, sizeof text) || text[0] == '\0' ||
        strlen(text) >= sizeof out->code)
        return fail(err, err_cap, GW_ERR_INVAL, "payload must be an alert code (1..31 characters) or \"all\"");
    snprintf(out->source, sizeof out->source, "mqtt");
    if (strcmp(text, "all") == 0) {
        out->op = ALERT_OP_ACK_ALL;
        return GW_OK;
    }
    for (const char *p = text; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_') {
            memset(out, 0, sizeof *out);
            return fail(err, err_cap, GW_ERR_INVAL, "alert code may only hold letters, digits and '_'");
        }
    }
    out->op = ALERT_OP_ACK;
    memcpy(out->code, text, strlen(text) + 1); /* length checked above */
    return GW_OK;
}

int mqtt_gateway__parse_alert_clear(const char *payload, size_t len, struct app_alert_command *out,
                                    char *err, size_t err_cap)
{
    char text[8];
    if (!out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    if (len > 0 && (!payload || !trimmed(payload, len, text, sizeof text) ||
                    (text[0] != '\0' && strcmp(text, "all") != 0)))
        return fail(err, err_cap, GW_ERR_INVAL, "payload must be \"all\" or empty");
    out->op = ALERT_OP_CLEAR_ALL;
    snprintf(out->source, sizeof out->source, "mqtt");
    return GW_OK;
}

/* ------------------------------------------------------------------ discovery */

static void sanitize_id(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (const char *p = src; *p && n + 1 < cap; p++) {
        unsigned char ch = (unsigned char)*p;
        dst[n++] = (isalnum(ch) || ch == '_' || ch == '-') ? (char)ch : '_';
    }
    dst[n] = '\0';
    if (n == 0)
        snprintf(dst, cap, "tinybms_gw");
}

void mqtt_gateway__device_info(const char *client_id, const struct bms_version *version,
                               struct mqtt_gateway__device *dev)
{
    memset(dev, 0, sizeof *dev);
    sanitize_id(dev->node_id, sizeof dev->node_id, client_id ? client_id : "");
    char serial[sizeof version->serial + 1] = "";
    if (version && version->valid)
        field_text(serial, sizeof serial, version->serial, sizeof version->serial);
    if (serial[0]) {
        char clean[32];
        sanitize_id(clean, sizeof clean, serial);
        snprintf(dev->identifier, sizeof dev->identifier, "tinybms_%s", clean);
        snprintf(dev->model, sizeof dev->model, "TinyBMS (hw %u.%u)", version->hw_version,
                 version->hw_changes);
        snprintf(dev->sw_version, sizeof dev->sw_version, "%u (internal %u)", version->fw_public,
                 version->fw_internal);
    } else {
        snprintf(dev->identifier, sizeof dev->identifier, "%s", dev->node_id);
        snprintf(dev->model, sizeof dev->model, "TinyBMS");
        snprintf(dev->sw_version, sizeof dev->sw_version, "gateway %s", GW_VERSION);
    }
}

cJSON *mqtt_gateway__discovery_json(const char *prefix, const struct mqtt_gateway__device *dev,
                                    const struct mqtt_gateway__sensor *s)
{
    char buf[320];
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddStringToObject(root, "name", s->name);
    snprintf(buf, sizeof buf, "%s_%s", dev->node_id, s->object);
    cJSON_AddStringToObject(root, "unique_id", buf);
    snprintf(buf, sizeof buf, "%s/%s", prefix, s->state_subtopic);
    cJSON_AddStringToObject(root, "state_topic", buf);
    snprintf(buf, sizeof buf, "%s/availability", prefix);
    cJSON_AddStringToObject(root, "availability_topic", buf);
    cJSON_AddStringToObject(root, "payload_available", "online");
    cJSON_AddStringToObject(root, "payload_not_available", "offline");
    if (s->device_class)
        cJSON_AddStringToObject(root, "device_class", s->device_class);
    if (s->unit) {
        cJSON_AddStringToObject(root, "unit_of_measurement", s->unit);
        cJSON_AddStringToObject(root, "state_class", "measurement");
    }
    if (s->precision >= 0)
        cJSON_AddNumberToObject(root, "suggested_display_precision", s->precision);
    if (s->icon)
        cJSON_AddStringToObject(root, "icon", s->icon);
    cJSON *device = cJSON_AddObjectToObject(root, "device");
    cJSON *ids = cJSON_AddArrayToObject(device, "identifiers");
    cJSON_AddItemToArray(ids, cJSON_CreateString(dev->identifier));
    cJSON_AddStringToObject(device, "name", "TinyBMS");
    cJSON_AddStringToObject(device, "manufacturer", "Energus Power Solutions");
    cJSON_AddStringToObject(device, "model", dev->model);
    cJSON_AddStringToObject(device, "sw_version", dev->sw_version);
    if (!device || !ids) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}
