/* Pure helpers of the gateway: numbers, the topic table, JSON documents (cJSON only), command
 * parsing. Text is built with the bounded text builder (gw_text). */
#include "mqtt_gateway_internal.h"

#include "charge_control.h"
#include "gw_error.h"
#include "gw_text.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ numbers */

int mqtt_gateway__format_number(char *buf, size_t cap, double value, int decimals)
{
    if (!buf || cap == 0 || decimals < 0 || decimals > 6)
        return GW_ERR_INVAL;
    buf[0] = '\0';
    if (!isfinite(value))
        return GW_ERR_RANGE;
    struct gw_text t; /* one sign rule: a value rounding to zero has none */
    gw_text_init(&t, buf, cap);
    gw_text_put_fixed(&t, value, (unsigned)decimals);
    if (gw_text_truncated(&t)) {
        buf[0] = '\0';
        return GW_ERR_OVERFLOW;
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
    gw_text_copyn(dst, cap, src, src_cap);
}

/* ------------------------------------------------------------------ battery view helpers */

bool mqtt_gateway__pack_online(const struct battery_pack *p)
{
    return p->state == BATTERY_PACK_ONLINE || p->state == BATTERY_PACK_REJOINING;
}

static bool cell_temp_extreme(const struct bms_live_data *d, bool want_max, int16_t *out)
{
    bool found = false;
    for (int s = BMS_TEMP_EXT1; s <= BMS_TEMP_EXT2; s++) {
        if (!d->temp_present[s])
            continue;
        if (!found || (want_max ? d->temp_dc[s] > *out : d->temp_dc[s] < *out))
            *out = d->temp_dc[s];
        found = true;
    }
    return found;
}

bool mqtt_gateway__cell_temp_max_dc(const struct bms_live_data *d, int16_t *out)
{
    return cell_temp_extreme(d, true, out);
}

bool mqtt_gateway__cell_temp_min_dc(const struct bms_live_data *d, int16_t *out)
{
    return cell_temp_extreme(d, false, out);
}

void mqtt_gateway__conditions_text(uint32_t bits, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return;
    struct gw_text t;
    gw_text_init(&t, buf, cap);
    for (unsigned b = 0; b < 32; b++) {
        uint32_t bit = 1u << b;
        if (!(bits & bit))
            continue;
        const char *name = battery_condition_name(bit);
        if (strcmp(name, "unknown") == 0)
            continue;
        if (gw_text_len(&t))
            gw_text_put_str(&t, ", ");
        gw_text_put_str(&t, name);
    }
    if (gw_text_len(&t) == 0 && !gw_text_truncated(&t))
        gw_text_put_str(&t, "ok");
}

static cJSON *conditions_array(uint32_t bits)
{
    cJSON *arr = cJSON_CreateArray();
    for (unsigned b = 0; b < 32 && arr; b++) {
        uint32_t bit = 1u << b;
        const char *name = battery_condition_name(bit);
        if ((bits & bit) && strcmp(name, "unknown") != 0)
            cJSON_AddItemToArray(arr, cJSON_CreateString(name));
    }
    return arr;
}

static unsigned cells_of(const struct bms_live_data *d)
{
    return d->cell_count <= BMS_MAX_CELLS ? d->cell_count : BMS_MAX_CELLS;
}

static void add_text_or_null(cJSON *obj, const char *name, bool have, const char *text)
{
    if (have)
        cJSON_AddStringToObject(obj, name, text);
    else
        cJSON_AddNullToObject(obj, name);
}

static cJSON *pack_json(const struct battery_view *v, unsigned i)
{
    const struct battery_pack *p = &v->packs[i];
    const struct bms_live_data *d = &p->live;
    bool on = mqtt_gateway__pack_online(p) && d->valid;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char name[BATTERY_NAME_LEN + 1];
    field_text(name, sizeof name, p->name, sizeof p->name);
    cJSON_AddNumberToObject(o, "n", i + 1);
    cJSON_AddNumberToObject(o, "id", p->id);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "state", battery_pack_state_name(p->state));
    cJSON_AddBoolToObject(o, "online", mqtt_gateway__pack_online(p));
    cJSON_AddItemToObject(o, "conditions", conditions_array(p->conditions));
    add_num(o, "voltage", on ? d->pack_voltage_v : NAN, 2);
    add_num(o, "current", on ? d->pack_current_a : NAN, 2);
    add_num(o, "soc", on ? bms_soc_percent(d) : NAN, 1);
    int16_t t = 0;
    add_num(o, "temperature_max", on && mqtt_gateway__cell_temp_max_dc(d, &t) ? t / 10.0 : NAN, 1);
    add_num(o, "temperature_min", on && mqtt_gateway__cell_temp_min_dc(d, &t) ? t / 10.0 : NAN, 1);
    cJSON_AddNumberToObject(o, "sample_age_ms", d->valid ? (double)p->sample_age_ms : -1.0);
    return o;
}

/* ------------------------------------------------------------------ documents */

cJSON *mqtt_gateway__status_json(const struct battery_view *v)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    unsigned packs = v->pack_count <= BATTERY_MAX_PACKS ? v->pack_count : BATTERY_MAX_PACKS;
    bool on = v->online_count > 0;
    bool one = packs == 1;
    const struct battery_pack *p0 = &v->packs[0];
    bool p0_on = one && mqtt_gateway__pack_online(p0) && p0->live.valid;
    unsigned cells = v->cell_count <= BMS_MAX_CELLS ? v->cell_count : BMS_MAX_CELLS;

    cJSON_AddNumberToObject(root, "timestamp", (double)(v->wall_time_ms / 1000));

    cJSON *bat = cJSON_AddObjectToObject(root, "battery");
    add_num(bat, "voltage", on ? v->voltage_v : NAN, 2);
    add_num(bat, "current", on ? v->current_a : NAN, 2);
    add_num(bat, "power", on ? v->power_w : NAN, 1);
    add_num(bat, "soc", on ? v->soc_pct : NAN, 1);
    add_num(bat, "soh", on && v->soh_valid ? v->soh_pct : NAN, 1);

    bool have_cells = on && cells > 0;
    cJSON *jc = cJSON_AddObjectToObject(root, "cells");
    cJSON_AddNumberToObject(jc, "count", cells);
    add_num(jc, "voltage_max", have_cells ? v->max_cell_v : NAN, 3);
    add_num(jc, "voltage_min", have_cells ? v->min_cell_v : NAN, 3);
    add_num(jc, "voltage_delta", have_cells ? v->cell_spread_mv / 1000.0 : NAN, 3);

    /* Cell (external) sensors of the online packs only: the board sensor is no cell. */
    int present = 0;
    double sum = 0.0;
    for (unsigned i = 0; i < packs; i++) {
        const struct battery_pack *p = &v->packs[i];
        if (!mqtt_gateway__pack_online(p) || !p->live.valid)
            continue;
        for (int s = BMS_TEMP_EXT1; s <= BMS_TEMP_EXT2; s++) {
            if (p->live.temp_present[s]) {
                present++;
                sum += p->live.temp_dc[s] / 10.0;
            }
        }
    }
    bool have_temp = on && v->have_temp;
    cJSON *jt = cJSON_AddObjectToObject(root, "temperature");
    cJSON_AddNumberToObject(jt, "sensor_count", present);
    add_num(jt, "max", have_temp ? v->temp_max_c : NAN, 1);
    add_num(jt, "min", have_temp ? v->temp_min_c : NAN, 1);
    add_num(jt, "avg", have_temp && present ? sum / present : NAN, 1);

    /* Our extra fields, after the reference ones. */
    char ref[sizeof v->max_cell.name + 1];
    add_text_or_null(bat, "status", on, bms_online_status_name(v->online_status));
    field_text(ref, sizeof ref, v->max_cell.name, sizeof v->max_cell.name);
    add_text_or_null(jc, "max_cell", have_cells, ref);
    field_text(ref, sizeof ref, v->min_cell.name, sizeof v->min_cell.name);
    add_text_or_null(jc, "min_cell", have_cells, ref);
    if (one) {
        cJSON_AddNumberToObject(jc, "max_index", have_cells ? v->max_cell.index : 0);
        cJSON_AddNumberToObject(jc, "min_index", have_cells ? v->min_cell.index : 0);
        cJSON *volts = cJSON_AddArrayToObject(jc, "voltages");
        cJSON *bal = cJSON_AddArrayToObject(jc, "balancing");
        unsigned pc = p0_on ? cells_of(&p0->live) : 0;
        for (unsigned c = 0; c < pc && volts && bal; c++) {
            cJSON_AddItemToArray(volts, cJSON_CreateNumber(mqtt_gateway__round(bms_cell_v(&p0->live, c), 3)));
            if (p0->live.balancing_active & (1u << c))
                cJSON_AddItemToArray(bal, cJSON_CreateNumber(c + 1));
        }
    }
    field_text(ref, sizeof ref, v->max_temp.name, sizeof v->max_temp.name);
    add_text_or_null(jt, "max_sensor", have_temp, ref);
    field_text(ref, sizeof ref, v->min_temp.name, sizeof v->min_temp.name);
    add_text_or_null(jt, "min_sensor", have_temp, ref);
    if (one) {
        /* Each sensor of the one pack; "internal" is the BMS board, never counted above. */
        static const char *const sensor_names[BMS_TEMP_SENSORS] = { "internal", "external1", "external2" };
        for (unsigned s = 0; s < BMS_TEMP_SENSORS; s++)
            add_num(jt, sensor_names[s], p0_on && p0->live.temp_present[s] ? p0->live.temp_dc[s] / 10.0 : NAN, 1);
    }

    const struct battery_limits *l = &v->limits;
    cJSON *jl = cJSON_AddObjectToObject(root, "charge");
    cJSON_AddBoolToObject(jl, "valid", l->valid);
    add_num(jl, "cvl", l->valid ? l->cvl_v : NAN, 2);
    add_num(jl, "ccl", l->valid ? l->ccl_a : NAN, 1);
    add_num(jl, "dcl", l->valid ? l->dcl_a : NAN, 1);
    add_text_or_null(jl, "phase", l->valid, charge_phase_name(l->phase));
    char reason[BATTERY_REASON_LEN + 1];
    field_text(reason, sizeof reason, l->cvl_reason, sizeof l->cvl_reason);
    add_text_or_null(jl, "cvl_reason", l->valid, reason);
    field_text(reason, sizeof reason, l->ccl_reason, sizeof l->ccl_reason);
    add_text_or_null(jl, "ccl_reason", l->valid, reason);
    field_text(reason, sizeof reason, l->dcl_reason, sizeof l->dcl_reason);
    add_text_or_null(jl, "dcl_reason", l->valid, reason);
    cJSON_AddBoolToObject(jl, "sent", v->limit_outputs != 0);

    cJSON_AddNumberToObject(root, "pack_count", packs);
    cJSON_AddNumberToObject(root, "online_count", v->online_count);
    cJSON_AddItemToObject(root, "conditions", conditions_array(v->conditions));
    cJSON *jp = cJSON_AddArrayToObject(root, "packs");
    for (unsigned i = 0; i < packs && jp; i++)
        cJSON_AddItemToArray(jp, pack_json(v, i));

    if (!bat || !jc || !jt || !jl || !jp) {
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

cJSON *mqtt_gateway__bank_balancing_json(const struct battery_view *v)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON *arr = cJSON_AddArrayToObject(root, "active_cells");
    unsigned packs = v->pack_count <= BATTERY_MAX_PACKS ? v->pack_count : BATTERY_MAX_PACKS;
    for (unsigned i = 0; i < packs && arr; i++) {
        const struct battery_pack *p = &v->packs[i];
        if (!mqtt_gateway__pack_online(p) || !p->live.valid)
            continue;
        unsigned cells = cells_of(&p->live);
        for (unsigned c = 0; c < cells; c++) {
            if (!(p->live.balancing_active & (1u << c)))
                continue;
            char name[16];
            struct gw_text t;
            gw_text_init(&t, name, sizeof name);
            gw_text_put_char(&t, 'P');
            gw_text_put_uint(&t, i + 1);
            gw_text_put_char(&t, 'C');
            gw_text_put_uint(&t, c + 1);
            cJSON_AddItemToArray(arr, cJSON_CreateString(name));
        }
    }
    return root;
}

/* ------------------------------------------------------------------ commands */

static int fail(char *err, size_t cap, int rc, const char *text)
{
    if (err && cap)
        gw_text_copy(err, cap, text);
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
        struct gw_text t;
        gw_text_init(&t, err, cap);
        gw_text_put_str(&t, name);
        gw_text_put_str(&t, " must be a number of amperes or null");
        return GW_ERR_INVAL;
    }
    if (it->valuedouble < 0.0 || it->valuedouble > MQTT_GATEWAY__CAP_MAX_A) {
        struct gw_text t;
        gw_text_init(&t, err, cap);
        gw_text_put_str(&t, name);
        gw_text_put_str(&t, " must be between 0 and ");
        gw_text_put_fixed(&t, MQTT_GATEWAY__CAP_MAX_A, 0);
        gw_text_put_str(&t, " A");
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
            struct gw_text t;
            gw_text_init(&t, err, err_cap);
            gw_text_put_str(&t, "unknown field \"");
            gw_text_put_strn(&t, it->string ? it->string : "", 40);
            gw_text_put_str(&t, "\" (allowed: ccl_a, dcl_a, duration_s)");
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
    gw_text_copy(out->source, sizeof out->source, "mqtt");
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
    gw_text_copy(out->source, sizeof out->source, "mqtt");
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
    gw_text_copy(out->source, sizeof out->source, "mqtt");
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
        gw_text_copy(dst, cap, "tinybms_gw");
}

/* "<a><b>" into buf. */
static void text_join(char *buf, size_t cap, const char *a, const char *b)
{
    struct gw_text t;
    gw_text_init(&t, buf, cap);
    gw_text_put_str(&t, a);
    gw_text_put_str(&t, b);
}

/* "<a><n><b>" into buf. */
static void text_num(char *buf, size_t cap, const char *a, unsigned n, const char *b)
{
    struct gw_text t;
    gw_text_init(&t, buf, cap);
    gw_text_put_str(&t, a);
    gw_text_put_uint(&t, n);
    gw_text_put_str(&t, b);
}

/* Model and software of a device described by a BMS version (NULL / invalid: the gateway's). */
static void device_versions(const struct bms_version *version, struct mqtt_gateway__device *dev)
{
    if (version && version->valid) {
        struct gw_text t;
        gw_text_init(&t, dev->model, sizeof dev->model);
        gw_text_put_str(&t, "TinyBMS (hw ");
        gw_text_put_uint(&t, version->hw_version);
        gw_text_put_char(&t, '.');
        gw_text_put_uint(&t, version->hw_changes);
        gw_text_put_char(&t, ')');
        gw_text_init(&t, dev->sw_version, sizeof dev->sw_version);
        gw_text_put_uint(&t, version->fw_public);
        gw_text_put_str(&t, " (internal ");
        gw_text_put_uint(&t, version->fw_internal);
        gw_text_put_char(&t, ')');
    } else {
        gw_text_copy(dev->model, sizeof dev->model, "TinyBMS");
        text_join(dev->sw_version, sizeof dev->sw_version, "gateway ", GW_VERSION);
    }
}

void mqtt_gateway__device_info(const char *client_id, const struct bms_version *version,
                               uint8_t pack_count, struct mqtt_gateway__device *dev)
{
    memset(dev, 0, sizeof *dev);
    sanitize_id(dev->node_id, sizeof dev->node_id, client_id ? client_id : "");
    char serial[sizeof version->serial + 1] = "";
    if (version && version->valid)
        field_text(serial, sizeof serial, version->serial, sizeof version->serial);
    if (pack_count > 1) {
        gw_text_copy(dev->identifier, sizeof dev->identifier, dev->node_id);
        gw_text_copy(dev->name, sizeof dev->name, "TinyBMS bank");
        text_num(dev->model, sizeof dev->model, "TinyBMS bank of ", pack_count, " packs");
        text_join(dev->sw_version, sizeof dev->sw_version, "gateway ", GW_VERSION);
        return;
    }
    gw_text_copy(dev->name, sizeof dev->name, "TinyBMS");
    if (serial[0]) {
        char clean[32];
        sanitize_id(clean, sizeof clean, serial);
        text_join(dev->identifier, sizeof dev->identifier, "tinybms_", clean);
        device_versions(version, dev);
    } else {
        gw_text_copy(dev->identifier, sizeof dev->identifier, dev->node_id);
        device_versions(NULL, dev);
    }
}

void mqtt_gateway__pack_device_info(const struct mqtt_gateway__device *bank, unsigned n, const char *name,
                                    const struct bms_version *version, struct mqtt_gateway__device *dev)
{
    memset(dev, 0, sizeof *dev);
    gw_text_copy(dev->node_id, sizeof dev->node_id, bank->node_id);
    struct gw_text t;
    gw_text_init(&t, dev->identifier, sizeof dev->identifier);
    gw_text_put_str(&t, bank->node_id);
    gw_text_put_str(&t, "_pack");
    gw_text_put_uint(&t, n);
    gw_text_copy(dev->via_device, sizeof dev->via_device, bank->identifier);
    if (name && name[0])
        gw_text_copyn(dev->name, sizeof dev->name, name, BATTERY_NAME_LEN);
    else
        text_num(dev->name, sizeof dev->name, "pack ", n, "");
    device_versions(version, dev);
}

/* "<a><sep><b>" into buf (a topic, a unique id). */
static const char *text_path(char *buf, size_t cap, const char *a, char sep, const char *b)
{
    struct gw_text t;
    gw_text_init(&t, buf, cap);
    gw_text_put_str(&t, a);
    gw_text_put_char(&t, sep);
    gw_text_put_str(&t, b);
    return buf;
}

cJSON *mqtt_gateway__discovery_json(const char *prefix, const struct mqtt_gateway__device *dev,
                                    const struct mqtt_gateway__sensor *s)
{
    char buf[320];
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddStringToObject(root, "name", s->name);
    cJSON_AddStringToObject(root, "unique_id", text_path(buf, sizeof buf, dev->node_id, '_', s->object));
    cJSON_AddStringToObject(root, "state_topic", text_path(buf, sizeof buf, prefix, '/', s->state_subtopic));
    bool avail_ok = true;
    if (s->avail_subtopic) {
        /* Available only while the gateway is online AND the pack is. */
        cJSON *list = cJSON_AddArrayToObject(root, "availability");
        cJSON *gwa = cJSON_CreateObject();
        cJSON *pka = cJSON_CreateObject();
        avail_ok = list && gwa && pka;
        cJSON_AddStringToObject(gwa, "topic", text_path(buf, sizeof buf, prefix, '/', "availability"));
        cJSON_AddStringToObject(gwa, "payload_available", "online");
        cJSON_AddStringToObject(gwa, "payload_not_available", "offline");
        cJSON_AddStringToObject(pka, "topic", text_path(buf, sizeof buf, prefix, '/', s->avail_subtopic));
        cJSON_AddStringToObject(pka, "payload_available", "true");
        cJSON_AddStringToObject(pka, "payload_not_available", "false");
        if (!cJSON_AddItemToArray(list, gwa)) {
            cJSON_Delete(gwa);
            avail_ok = false;
        }
        if (!cJSON_AddItemToArray(list, pka)) {
            cJSON_Delete(pka);
            avail_ok = false;
        }
        cJSON_AddStringToObject(root, "availability_mode", "all");
    } else {
        cJSON_AddStringToObject(root, "availability_topic", text_path(buf, sizeof buf, prefix, '/', "availability"));
        cJSON_AddStringToObject(root, "payload_available", "online");
        cJSON_AddStringToObject(root, "payload_not_available", "offline");
    }
    if (s->binary) {
        cJSON_AddStringToObject(root, "payload_on", "true");
        cJSON_AddStringToObject(root, "payload_off", "false");
    }
    if (s->device_class)
        cJSON_AddStringToObject(root, "device_class", s->device_class);
    if (s->unit && !s->binary) {
        cJSON_AddStringToObject(root, "unit_of_measurement", s->unit);
        cJSON_AddStringToObject(root, "state_class", "measurement");
    }
    if (s->precision >= 0 && !s->binary)
        cJSON_AddNumberToObject(root, "suggested_display_precision", s->precision);
    if (s->icon)
        cJSON_AddStringToObject(root, "icon", s->icon);
    cJSON *device = cJSON_AddObjectToObject(root, "device");
    cJSON *ids = cJSON_AddArrayToObject(device, "identifiers");
    cJSON_AddItemToArray(ids, cJSON_CreateString(dev->identifier));
    cJSON_AddStringToObject(device, "name", dev->name[0] ? dev->name : "TinyBMS");
    cJSON_AddStringToObject(device, "manufacturer", "Energus Power Solutions");
    cJSON_AddStringToObject(device, "model", dev->model);
    cJSON_AddStringToObject(device, "sw_version", dev->sw_version);
    if (dev->via_device[0])
        cJSON_AddStringToObject(device, "via_device", dev->via_device);
    if (!device || !ids || !avail_ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* ------------------------------------------------------------------ one-pack view */

void mqtt_gateway__view_from_sample(const struct bms_live_data *d, struct battery_view *out)
{
    memset(out, 0, sizeof *out);
    out->seq = 1;
    out->timestamp_ms = d->timestamp_ms;
    out->wall_time_ms = d->wall_time_ms;
    out->pack_count = 1;
    struct battery_pack *p = &out->packs[0];
    p->id = d->battery_id;
    gw_text_copy(p->name, sizeof p->name, "pack 1");
    p->live = *d;
    p->state = d->valid ? BATTERY_PACK_ONLINE : BATTERY_PACK_NEVER_SEEN;
    if (d->valid && !d->temp_present[BMS_TEMP_EXT1] && !d->temp_present[BMS_TEMP_EXT2])
        p->conditions |= BATTERY_COND_NO_CELL_TEMP;
    if (!d->valid) {
        out->conditions = BATTERY_COND_NO_DATA | BATTERY_COND_PACK_OFFLINE;
        return;
    }
    out->online_count = 1;
    out->voltage_v = d->pack_voltage_v;
    out->current_a = d->pack_current_a;
    out->power_w = d->pack_voltage_v * d->pack_current_a;
    out->soc_pct = bms_soc_percent(d);
    out->soh_valid = d->soh_valid;
    out->soh_pct = d->soh_valid ? bms_soh_percent(d) : 0.0f;
    out->time_left_s = d->time_left_s;
    unsigned cells = cells_of(d);
    out->cell_count = (uint8_t)cells;
    for (unsigned c = 0; c < cells; c++) {
        float cv = bms_cell_v(d, c);
        if (c == 0 || cv < out->min_cell_v) {
            out->min_cell_v = cv;
            out->min_cell.index = (uint8_t)(c + 1);
        }
        if (c == 0 || cv > out->max_cell_v) {
            out->max_cell_v = cv;
            out->max_cell.index = (uint8_t)(c + 1);
        }
    }
    if (cells) {
        out->min_cell.pack = out->max_cell.pack = d->battery_id;
        text_num(out->min_cell.name, sizeof out->min_cell.name, "C", out->min_cell.index, "");
        text_num(out->max_cell.name, sizeof out->max_cell.name, "C", out->max_cell.index, "");
        out->cell_spread_mv = (out->max_cell_v - out->min_cell_v) * 1000.0f;
    }
    for (int s = BMS_TEMP_EXT1; s <= BMS_TEMP_EXT2; s++) {
        if (!d->temp_present[s])
            continue;
        float t = bms_temp_c(d, (unsigned)s);
        if (!out->have_temp || t < out->temp_min_c) {
            out->temp_min_c = t;
            out->min_temp.pack = d->battery_id;
            out->min_temp.index = (uint8_t)s;
            text_num(out->min_temp.name, sizeof out->min_temp.name, "T", (unsigned)s, "");
        }
        if (!out->have_temp || t > out->temp_max_c) {
            out->temp_max_c = t;
            out->max_temp.pack = d->battery_id;
            out->max_temp.index = (uint8_t)s;
            text_num(out->max_temp.name, sizeof out->max_temp.name, "T", (unsigned)s, "");
        }
        out->have_temp = true;
    }
    out->online_status = d->online_status;
}

/* ------------------------------------------------------------------ the topic table */

static const struct battery_pack *pack_at(const struct battery_view *v, unsigned i)
{
    return &v->packs[i < BATTERY_MAX_PACKS ? i : 0];
}

static unsigned packs_of(const struct battery_view *v)
{
    return v->pack_count <= BATTERY_MAX_PACKS ? v->pack_count : BATTERY_MAX_PACKS;
}

static bool num(struct mqtt_gateway__value *out, bool available, double x)
{
    out->num = x;
    return available;
}

static bool text(struct mqtt_gateway__value *out, const char *t)
{
    out->text = t;
    return true;
}

/* A fixed-size field of the view (may lack its NUL) as the text. */
static bool field(struct mqtt_gateway__value *out, const char *src, size_t src_cap)
{
    gw_text_copyn(out->buf, sizeof out->buf, src, src_cap);
    out->text = out->buf;
    return true;
}

static bool json(struct mqtt_gateway__value *out, cJSON *doc)
{
    out->json = doc;
    return true;
}

/* "can", "dbus", "can,dbus"; "none" without an output; "other" for outputs without a name. */
static const char *outputs_name(uint32_t outputs)
{
    bool can = outputs & BATTERY_OUTPUT_CAN, dbus = outputs & BATTERY_OUTPUT_DBUS;
    if (!outputs)
        return "none";
    return can && dbus ? "can,dbus" : can ? "can" : dbus ? "dbus" : "other";
}

/* bank */
static bool b_conditions(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    mqtt_gateway__conditions_text(v->conditions, o->buf, sizeof o->buf);
    return text(o, o->buf);
}
static bool b_pack_count(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, true, packs_of(v));
}
static bool b_online_count(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, true, v->online_count);
}
static bool b_voltage(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, true, v->voltage_v);
}
static bool b_current(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, true, v->current_a);
}
static bool b_power(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, true, v->power_w);
}
static bool b_soc(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, true, v->soc_pct);
}
static bool b_soh(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, v->soh_valid, v->soh_pct);
}
/* Cell sensors only (the board sensor is no cell): none -> "None", not the last value. */
static bool b_temp_max(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, v->have_temp, v->temp_max_c);
}
static bool b_temp_min(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, v->have_temp, v->temp_min_c);
}
static bool b_cell_max(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, v->cell_count > 0, v->max_cell_v);
}
static bool b_cell_min(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, v->cell_count > 0, v->min_cell_v);
}
static bool b_balancing(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return json(o, packs_of(v) == 1 ? mqtt_gateway__balancing_json(&v->packs[0].live)
                                    : mqtt_gateway__bank_balancing_json(v));
}
static bool b_online_status(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return text(o, bms_online_status_name(v->online_status));
}

/* charge */
static bool c_outputs(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return text(o, outputs_name(v->limit_outputs));
}
static bool c_valid(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return text(o, v->limits.valid ? "true" : "false");
}
static bool c_cvl(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, true, v->limits.cvl_v);
}
static bool c_ccl(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, true, v->limits.ccl_a);
}
static bool c_dcl(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return num(o, true, v->limits.dcl_a);
}
static bool c_cvl_reason(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return field(o, v->limits.cvl_reason, sizeof v->limits.cvl_reason);
}
static bool c_ccl_reason(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return field(o, v->limits.ccl_reason, sizeof v->limits.ccl_reason);
}
static bool c_dcl_reason(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return field(o, v->limits.dcl_reason, sizeof v->limits.dcl_reason);
}
static bool c_phase(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    (void)i;
    return text(o, charge_phase_name(v->limits.phase));
}

/* pack i */
static bool p_name(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    return field(o, pack_at(v, i)->name, sizeof pack_at(v, i)->name);
}
static bool p_status(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    return text(o, battery_pack_state_name(pack_at(v, i)->state));
}
static bool p_online(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    return text(o, mqtt_gateway__pack_online(pack_at(v, i)) ? "true" : "false");
}
static bool p_conditions(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    mqtt_gateway__conditions_text(pack_at(v, i)->conditions, o->buf, sizeof o->buf);
    return text(o, o->buf);
}
static bool p_voltage(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    return num(o, true, pack_at(v, i)->live.pack_voltage_v);
}
static bool p_current(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    return num(o, true, pack_at(v, i)->live.pack_current_a);
}
static bool p_soc(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    return num(o, true, bms_soc_percent(&pack_at(v, i)->live));
}
static bool p_soh(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    const struct bms_live_data *d = &pack_at(v, i)->live;
    return num(o, d->soh_valid, d->soh_valid ? bms_soh_percent(d) : NAN);
}
static bool p_temp_max(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    int16_t t = 0;
    bool have = mqtt_gateway__cell_temp_max_dc(&pack_at(v, i)->live, &t);
    return num(o, have, t / 10.0);
}
static bool p_temp_min(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    int16_t t = 0;
    bool have = mqtt_gateway__cell_temp_min_dc(&pack_at(v, i)->live, &t);
    return num(o, have, t / 10.0);
}
/* The BMS's own extreme (registers 40/41) when it gave one, else the extreme of the cells. */
static bool pack_cell_extreme(const struct battery_view *v, unsigned i, bool want_max, struct mqtt_gateway__value *o)
{
    const struct bms_live_data *d = &pack_at(v, i)->live;
    unsigned cells = cells_of(d);
    if (!cells)
        return num(o, false, NAN);
    unsigned hi = 0, lo = UINT32_MAX;
    for (unsigned c = 0; c < cells; c++) {
        hi = d->cell_mv_x10[c] > hi ? d->cell_mv_x10[c] : hi;
        lo = d->cell_mv_x10[c] < lo ? d->cell_mv_x10[c] : lo;
    }
    if (want_max)
        return num(o, true, d->max_cell_mv ? d->max_cell_mv / 1000.0 : hi / 10000.0);
    return num(o, true, d->min_cell_mv ? d->min_cell_mv / 1000.0 : lo / 10000.0);
}
static bool p_cell_max(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    return pack_cell_extreme(v, i, true, o);
}
static bool p_cell_min(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    return pack_cell_extreme(v, i, false, o);
}
static bool p_balancing(const struct battery_view *v, unsigned i, struct mqtt_gateway__value *o)
{
    return json(o, mqtt_gateway__balancing_json(&pack_at(v, i)->live));
}

#define BANK MQTT_GATEWAY__SCOPE_BANK
#define CHARGE MQTT_GATEWAY__SCOPE_CHARGE
#define PACK MQTT_GATEWAY__SCOPE_PACK
#define NUMBER MQTT_GATEWAY__NUMBER
#define TEXT MQTT_GATEWAY__TEXT
#define JSON MQTT_GATEWAY__JSON
#define CELLS MQTT_GATEWAY__CELLS
#define ALWAYS MQTT_GATEWAY__WHEN_ALWAYS
#define LIMITS MQTT_GATEWAY__WHEN_LIMITS
#define SEVERAL MQTT_GATEWAY__WHEN_SEVERAL
#define EVERY true   /* every round */
#define FRESH false  /* while the scope's values are fresh, else "None" once */

/* Every data topic, in publishing order (docs/mqtt.md lists them for users). Columns: scope,
 * when published, kind, topic under the base, decimals, value; then the Home Assistant entity:
 * object, name, device class, unit, icon, binary, when announced, pack availability. */
static const struct mqtt_gateway__topic topics[] = {
    { BANK, EVERY, TEXT, "conditions", -1, b_conditions,
      "conditions", "Conditions", NULL, NULL, "mdi:alert-circle-outline", false, ALWAYS, false },
    { BANK, EVERY, NUMBER, "pack_count", 0, b_pack_count, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },
    { BANK, EVERY, NUMBER, "online_count", 0, b_online_count,
      "online_count", "Packs online", NULL, NULL, "mdi:battery-check", false, SEVERAL, false },
    { BANK, FRESH, NUMBER, "voltage", 2, b_voltage, "voltage", "Pack voltage", "voltage", "V", NULL, false, ALWAYS, false },
    { BANK, FRESH, NUMBER, "current", 2, b_current, "current", "Current", "current", "A", NULL, false, ALWAYS, false },
    { BANK, FRESH, NUMBER, "power", 1, b_power, "power", "Power", "power", "W", NULL, false, ALWAYS, false },
    { BANK, FRESH, NUMBER, "soc", 1, b_soc, "soc", "State of charge", "battery", "%", NULL, false, ALWAYS, false },
    { BANK, FRESH, NUMBER, "soh", 1, b_soh,
      "soh", "State of health", NULL, "%", "mdi:battery-heart-variant", false, ALWAYS, false },
    { BANK, FRESH, NUMBER, "temperature/max", 1, b_temp_max,
      "temperature_max", "Temperature max", "temperature", "°C", NULL, false, ALWAYS, false },
    { BANK, FRESH, NUMBER, "temperature/min", 1, b_temp_min,
      "temperature_min", "Temperature min", "temperature", "°C", NULL, false, ALWAYS, false },
    { BANK, FRESH, NUMBER, "cells/voltage/max", 3, b_cell_max,
      "cell_voltage_max", "Cell voltage max", "voltage", "V", NULL, false, ALWAYS, false },
    { BANK, FRESH, NUMBER, "cells/voltage/min", 3, b_cell_min,
      "cell_voltage_min", "Cell voltage min", "voltage", "V", NULL, false, ALWAYS, false },
    { BANK, FRESH, JSON, "balancing", -1, b_balancing, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },
    { BANK, FRESH, TEXT, "online_status", -1, b_online_status,
      "online_status", "Status", NULL, NULL, "mdi:battery-sync", false, ALWAYS, false },
    /* cells/<k>/voltage of the bank only mean something with one pack */
    { BANK, FRESH, CELLS, "cells/{k}/voltage", 3, NULL,
      "cell_{k}_voltage", "Cell {k} voltage", "voltage", "V", NULL, false, ALWAYS, false },

    { CHARGE, EVERY, TEXT, "charge/outputs", -1, c_outputs, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },
    { CHARGE, EVERY, TEXT, "charge/valid", -1, c_valid, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },
    { CHARGE, FRESH, NUMBER, "charge/cvl", 2, c_cvl,
      "charge_cvl", "Charge voltage limit", "voltage", "V", NULL, false, LIMITS, false },
    { CHARGE, FRESH, NUMBER, "charge/ccl", 1, c_ccl,
      "charge_ccl", "Charge current limit", "current", "A", NULL, false, LIMITS, false },
    { CHARGE, FRESH, NUMBER, "charge/dcl", 1, c_dcl,
      "charge_dcl", "Discharge current limit", "current", "A", NULL, false, LIMITS, false },
    { CHARGE, FRESH, TEXT, "charge/cvl_reason", -1, c_cvl_reason, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },
    { CHARGE, FRESH, TEXT, "charge/ccl_reason", -1, c_ccl_reason, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },
    { CHARGE, FRESH, TEXT, "charge/dcl_reason", -1, c_dcl_reason, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },
    { CHARGE, FRESH, TEXT, "charge/phase", -1, c_phase, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },

    { PACK, EVERY, TEXT, "name", -1, p_name, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },
    { PACK, EVERY, TEXT, "status", -1, p_status,
      "status", "Pack state", NULL, NULL, "mdi:battery-sync", false, ALWAYS, false },
    { PACK, EVERY, TEXT, "online", -1, p_online, "online", "Online", "connectivity", NULL, NULL, true, ALWAYS, false },
    { PACK, EVERY, TEXT, "conditions", -1, p_conditions,
      "conditions", "Conditions", NULL, NULL, "mdi:alert-circle-outline", false, ALWAYS, false },
    { PACK, FRESH, NUMBER, "voltage", 2, p_voltage, "voltage", "Voltage", "voltage", "V", NULL, false, ALWAYS, true },
    { PACK, FRESH, NUMBER, "current", 2, p_current, "current", "Current", "current", "A", NULL, false, ALWAYS, true },
    { PACK, FRESH, NUMBER, "soc", 1, p_soc, "soc", "State of charge", "battery", "%", NULL, false, ALWAYS, true },
    { PACK, FRESH, NUMBER, "soh", 1, p_soh, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },
    { PACK, FRESH, NUMBER, "temperature/max", 1, p_temp_max,
      "temperature_max", "Temperature max", "temperature", "°C", NULL, false, ALWAYS, true },
    { PACK, FRESH, NUMBER, "temperature/min", 1, p_temp_min,
      "temperature_min", "Temperature min", "temperature", "°C", NULL, false, ALWAYS, true },
    { PACK, FRESH, NUMBER, "cells/voltage/max", 3, p_cell_max,
      "cell_voltage_max", "Cell voltage max", "voltage", "V", NULL, false, ALWAYS, true },
    { PACK, FRESH, NUMBER, "cells/voltage/min", 3, p_cell_min,
      "cell_voltage_min", "Cell voltage min", "voltage", "V", NULL, false, ALWAYS, true },
    { PACK, FRESH, JSON, "balancing", -1, p_balancing, NULL, NULL, NULL, NULL, NULL, false, ALWAYS, false },
    { PACK, FRESH, CELLS, "cells/{k}/voltage", 3, NULL,
      "cell_{k}_voltage", "Cell {k} voltage", "voltage", "V", NULL, false, ALWAYS, true },
};

const struct mqtt_gateway__topic *mqtt_gateway__topics(size_t *count)
{
    if (count)
        *count = sizeof topics / sizeof topics[0];
    return topics;
}

const struct mqtt_gateway__topic *mqtt_gateway__cells_topic(uint8_t scope)
{
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
        if (topics[i].kind == MQTT_GATEWAY__CELLS && topics[i].scope == scope)
            return &topics[i];
    return NULL;
}

int mqtt_gateway__expand(const char *template_text, unsigned k, char *buf, size_t cap)
{
    struct gw_text t;
    gw_text_init(&t, buf, cap);
    for (const char *p = template_text ? template_text : ""; *p;) {
        const char *mark = strstr(p, "{k}");
        if (!mark) {
            gw_text_put_str(&t, p);
            break;
        }
        gw_text_put_strn(&t, p, (size_t)(mark - p));
        gw_text_put_uint(&t, k);
        p = mark + 3;
    }
    return gw_text_status(&t);
}

void mqtt_gateway__topic_sensor(const struct mqtt_gateway__topic *t, unsigned pack, unsigned cell,
                                struct mqtt_gateway__sensor_text *text_buf, struct mqtt_gateway__sensor *s)
{
    char object[sizeof text_buf->object], sub[sizeof text_buf->state];
    mqtt_gateway__expand(t->object, cell, object, sizeof object);
    mqtt_gateway__expand(t->sub, cell, sub, sizeof sub);
    mqtt_gateway__expand(t->name, cell, text_buf->name, sizeof text_buf->name);
    if (pack) {
        struct gw_text b;
        gw_text_init(&b, text_buf->object, sizeof text_buf->object);
        gw_text_put_str(&b, "pack");
        gw_text_put_uint(&b, pack);
        gw_text_put_char(&b, '_');
        gw_text_put_str(&b, object);
        gw_text_init(&b, text_buf->state, sizeof text_buf->state);
        gw_text_put_str(&b, "pack/");
        gw_text_put_uint(&b, pack);
        gw_text_put_char(&b, '/');
        gw_text_put_str(&b, sub);
        text_num(text_buf->avail, sizeof text_buf->avail, "pack/", pack, "/online");
    } else {
        gw_text_copy(text_buf->object, sizeof text_buf->object, object);
        gw_text_copy(text_buf->state, sizeof text_buf->state, sub);
        text_buf->avail[0] = '\0';
    }
    /* A display precision only for a quantity with a unit (a count or a text has none). */
    *s = (struct mqtt_gateway__sensor){ text_buf->object, text_buf->name, text_buf->state, t->device_class, t->unit,
                                        t->unit ? t->decimals : -1, t->icon, t->binary,
                                        pack && t->pack_availability ? text_buf->avail : NULL };
}
