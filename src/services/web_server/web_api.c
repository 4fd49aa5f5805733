/* The REST endpoints (the route table and its handlers) and the JSON of the battery view. */
#define _GNU_SOURCE
#include "web_server_internal.h"

#include "alert_manager.h"
#include "battery_service.h"
#include "charge_control.h"
#include "config_manager.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "history_logger.h"
#include "net_link.h"
#include "ota_update.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIB 1024u
#define CONFIG_BODY_MAX (64u * KIB)
#define SMALL_BODY_MAX (4u * KIB)
#define SETTINGS_BODY_MAX (16u * KIB) /* a settings backup is about 4 KiB */
#define HISTORY_DEFAULT_POINTS 300
#define HISTORY_DEFAULT_SPAN_MS (24ll * 3600 * 1000)
#define ALERTS_PAGE_DEFAULT 50
#define ALERTS_PAGE_MAX 500
#define ALERTS_OFFSET_MAX 9000

/* ------------------------------------------------------------------ JSON helpers */

/* A number rounded to `decimals` places, or null for NaN/inf. */
static void add_num(cJSON *o, const char *name, double v, int decimals)
{
    if (!isfinite(v)) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    double scale = pow(10.0, decimals);
    cJSON_AddNumberToObject(o, name, round(v * scale) / scale);
}

static cJSON *num_item(double v, int decimals)
{
    if (!isfinite(v))
        return cJSON_CreateNull();
    double scale = pow(10.0, decimals);
    return cJSON_CreateNumber(round(v * scale) / scale);
}

static cJSON *conditions_json(uint32_t bits)
{
    cJSON *arr = cJSON_CreateArray();
    for (unsigned i = 0; i < 32; i++)
        if (bits & (1u << i))
            cJSON_AddItemToArray(arr, cJSON_CreateString(battery_condition_name(1u << i)));
    return arr;
}

static cJSON *ref_json(const struct battery_ref *r, const char *index_name)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "pack", r->pack);
    cJSON_AddNumberToObject(o, index_name, r->index);
    cJSON_AddStringToObject(o, "name", r->name);
    return o;
}

static void add_limit(cJSON *o, const char *name, bool valid, double v, const char *unit, const char *reason,
                      uint8_t pack)
{
    cJSON *l = cJSON_AddObjectToObject(o, name);
    if (valid)
        add_num(l, "value", v, 2);
    else
        cJSON_AddNullToObject(l, "value");
    cJSON_AddStringToObject(l, "unit", unit);
    cJSON_AddStringToObject(l, "reason", valid ? reason : "no fresh BMS data: limits withheld");
    if (pack == BATTERY_BANK_ID)
        cJSON_AddStringToObject(l, "pack", "bank");
    else
        cJSON_AddNumberToObject(l, "pack", pack);
}

static cJSON *limits_json(const struct battery_limits *l, uint32_t outputs, bool bank)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "valid", l->valid);
    if (bank) {
        cJSON_AddBoolToObject(o, "sent", l->valid && outputs != 0);
        cJSON *by = cJSON_AddArrayToObject(o, "sent_by");
        if (outputs & BATTERY_OUTPUT_CAN)
            cJSON_AddItemToArray(by, cJSON_CreateString("can"));
        if (outputs & BATTERY_OUTPUT_DBUS)
            cJSON_AddItemToArray(by, cJSON_CreateString("dbus"));
    }
    cJSON_AddStringToObject(o, "phase", charge_phase_name(l->phase));
    add_limit(o, "cvl", l->valid, l->cvl_v, "V", l->cvl_reason, bank ? l->cvl_pack : BATTERY_BANK_ID);
    add_limit(o, "ccl", l->valid, l->ccl_a, "A", l->ccl_reason, bank ? l->ccl_pack : BATTERY_BANK_ID);
    add_limit(o, "dcl", l->valid, l->dcl_a, "A", l->dcl_reason, bank ? l->dcl_pack : BATTERY_BANK_ID);
    if (!bank) {
        /* A pack's own charge control: no "pack" owner to name. */
        cJSON_DeleteItemFromObject(cJSON_GetObjectItem(o, "cvl"), "pack");
        cJSON_DeleteItemFromObject(cJSON_GetObjectItem(o, "ccl"), "pack");
        cJSON_DeleteItemFromObject(cJSON_GetObjectItem(o, "dcl"), "pack");
    }
    if (l->valid)
        add_num(o, "discharge_v", l->discharge_v, 2);
    else
        cJSON_AddNullToObject(o, "discharge_v");
    return o;
}

static cJSON *live_json(const struct bms_live_data *d)
{
    if (!d->valid)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    add_num(o, "voltage_v", d->pack_voltage_v, 3);
    add_num(o, "current_a", d->pack_current_a, 2);
    add_num(o, "power_w", (double)d->pack_voltage_v * d->pack_current_a, 1);
    add_num(o, "soc_percent", bms_soc_percent(d), 2);
    if (d->soh_valid)
        add_num(o, "soh_percent", bms_soh_percent(d), 1);
    else
        cJSON_AddNullToObject(o, "soh_percent");
    cJSON_AddNumberToObject(o, "cell_count", d->cell_count);
    cJSON *cells = cJSON_AddArrayToObject(o, "cells_v");
    cJSON *bal = cJSON_AddArrayToObject(o, "balancing");
    for (unsigned i = 0; i < d->cell_count && i < BMS_MAX_CELLS; i++) {
        cJSON_AddItemToArray(cells, num_item(bms_cell_v(d, i), 4));
        if (d->balancing_active & (1u << i))
            cJSON_AddItemToArray(bal, cJSON_CreateNumber(i + 1));
    }
    add_num(o, "min_cell_v", d->min_cell_mv / 1000.0, 3);
    add_num(o, "max_cell_v", d->max_cell_mv / 1000.0, 3);
    cJSON_AddNumberToObject(o, "min_cell", d->min_cell_index);
    cJSON_AddNumberToObject(o, "max_cell", d->max_cell_index);
    add_num(o, "cell_spread_mv", d->cell_spread_mv_x10 / 10.0, 1);
    cJSON *t = cJSON_AddObjectToObject(o, "temperatures_c");
    static const char *const names[BMS_TEMP_SENSORS] = { "internal", "external1", "external2" };
    for (unsigned s = 0; s < BMS_TEMP_SENSORS; s++) {
        if (d->temp_present[s])
            add_num(t, names[s], bms_temp_c(d, s), 1);
        else
            cJSON_AddNullToObject(t, names[s]);
    }
    cJSON_AddStringToObject(o, "status", bms_online_status_name(d->online_status));
    cJSON_AddNumberToObject(o, "lifetime_s", d->lifetime_s);
    cJSON_AddNumberToObject(o, "time_left_s", d->time_left_s);
    cJSON_AddNumberToObject(o, "timestamp", (double)d->wall_time_ms);
    return o;
}

static cJSON *pack_json(const struct battery_pack *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", p->id);
    cJSON_AddStringToObject(o, "name", p->name);
    cJSON_AddStringToObject(o, "state", battery_pack_state_name(p->state));
    cJSON_AddNumberToObject(o, "sample_age_ms", (double)p->sample_age_ms);
    add_num(o, "capacity_ah", p->capacity_ah, 1);
    cJSON_AddBoolToObject(o, "charge_allowed", p->charge_allowed);
    cJSON_AddBoolToObject(o, "discharge_allowed", p->discharge_allowed);
    cJSON_AddItemToObject(o, "conditions", conditions_json(p->conditions));
    cJSON_AddNumberToObject(o, "bad_samples", p->bad_samples);
    cJSON_AddStringToObject(o, "bad_reason", p->bad_reason);
    cJSON_AddItemToObject(o, "live", live_json(&p->live));
    cJSON_AddItemToObject(o, "limits", limits_json(&p->limits, 0, false));
    return o;
}

static cJSON *bank_json(const struct battery_view *v)
{
    cJSON *o = cJSON_CreateObject();
    bool on = v->online_count > 0;
    cJSON_AddBoolToObject(o, "online", on);
    add_num(o, "voltage_v", on ? v->voltage_v : NAN, 3);
    add_num(o, "current_a", on ? v->current_a : NAN, 2);
    add_num(o, "power_w", on ? v->power_w : NAN, 1);
    add_num(o, "soc_percent", on ? v->soc_pct : NAN, 2);
    add_num(o, "soh_percent", on && v->soh_valid ? v->soh_pct : NAN, 1);
    add_num(o, "capacity_ah", v->capacity_ah, 1);
    add_num(o, "installed_capacity_ah", v->installed_capacity_ah, 1);
    cJSON_AddNumberToObject(o, "time_left_s", v->time_left_s);
    cJSON_AddNumberToObject(o, "cell_count", v->cell_count);
    add_num(o, "min_cell_v", on ? v->min_cell_v : NAN, 3);
    add_num(o, "max_cell_v", on ? v->max_cell_v : NAN, 3);
    add_num(o, "cell_spread_mv", on ? v->cell_spread_mv : NAN, 1);
    cJSON_AddItemToObject(o, "min_cell", ref_json(&v->min_cell, "cell"));
    cJSON_AddItemToObject(o, "max_cell", ref_json(&v->max_cell, "cell"));
    add_num(o, "temp_min_c", on && v->have_temp ? v->temp_min_c : NAN, 1);
    add_num(o, "temp_max_c", on && v->have_temp ? v->temp_max_c : NAN, 1);
    cJSON_AddStringToObject(o, "status", bms_online_status_name(v->online_status));
    add_num(o, "energy_in_wh", v->energy_in_wh, 1);
    add_num(o, "energy_out_wh", v->energy_out_wh, 1);
    cJSON_AddItemToObject(o, "conditions", conditions_json(v->conditions));
    return o;
}

cJSON *web__view_json(const struct battery_view *v, int pack)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "seq", (double)v->seq);
    cJSON_AddNumberToObject(o, "timestamp", (double)v->wall_time_ms);
    cJSON_AddNumberToObject(o, "pack_count", v->pack_count);
    cJSON_AddNumberToObject(o, "online_count", v->online_count);
    if (pack >= 0) {
        cJSON_AddItemToObject(o, "pack", pack_json(&v->packs[pack]));
        return o;
    }
    cJSON_AddItemToObject(o, "bank", bank_json(v));
    cJSON_AddItemToObject(o, "limits", limits_json(&v->limits, v->limit_outputs, true));
    cJSON *packs = cJSON_AddArrayToObject(o, "packs");
    for (unsigned i = 0; i < v->pack_count && i < BATTERY_MAX_PACKS; i++)
        cJSON_AddItemToArray(packs, pack_json(&v->packs[i]));
    return o;
}

/* The whole document of a view as text, built once per view: /api/data, the first message and
 * every update of /ws/live ask for the same text until the next view (5 a second at most, while a
 * page may ask for it far more often). Returns a malloc'ed copy (*len its length), NULL when out
 * of memory. */
char *web__view_text(struct web_server *ws, const struct battery_view *v, size_t *len)
{
    char *out = NULL;
    pthread_mutex_lock(&ws->view_lock);
    if (ws->view_text && ws->view_seq == v->seq && ws->view_wall_ms == v->wall_time_ms) {
        out = malloc(ws->view_len + 1);
        if (out) {
            memcpy(out, ws->view_text, ws->view_len + 1);
            *len = ws->view_len;
        }
        pthread_mutex_unlock(&ws->view_lock);
        return out;
    }
    pthread_mutex_unlock(&ws->view_lock);
    cJSON *doc = web__view_json(v, -1);
    out = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!out)
        return NULL;
    *len = strlen(out);
    char *keep = malloc(*len + 1);
    if (keep) {
        memcpy(keep, out, *len + 1);
        pthread_mutex_lock(&ws->view_lock);
        if (!ws->view_text || v->seq >= ws->view_seq) { /* never replace a newer view's text */
            free(ws->view_text);
            ws->view_text = keep;
            ws->view_len = *len;
            ws->view_seq = v->seq;
            ws->view_wall_ms = v->wall_time_ms;
            keep = NULL;
        }
        pthread_mutex_unlock(&ws->view_lock);
        free(keep);
    }
    return out;
}

/* ------------------------------------------------------------------ request helpers */

/* Query parameter name into buf; 1 found, 0 absent, -1 too long. */
int web__query_param(const struct web_req *req, const char *name, char *buf, size_t cap)
{
    if (!req->query)
        return 0;
    int n = mg_get_var(req->query, strlen(req->query), name, buf, cap);
    if (n == -1)
        return 0;
    if (n < 0)
        return -1;
    return 1;
}

cJSON *web__one_field(const char *path, const char *reason)
{
    cJSON *arr = cJSON_CreateArray();
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "path", path);
    cJSON_AddStringToObject(f, "reason", reason);
    cJSON_AddItemToArray(arr, f);
    return arr;
}

void web__bad_param(struct web_req *req, const char *name, const char *reason)
{
    char msg[160];
    snprintf(msg, sizeof msg, "bad parameter %s: %s", name, reason);
    web__send_error(req, 400, "bad_parameter", msg, web__one_field(name, reason), NULL);
}

/* Integer parameter in [min, max]; false after answering 400. *out keeps its default when absent. */
static bool int_param(struct web_req *req, const char *name, long long min, long long max, long long *out)
{
    char buf[32];
    int f = web__query_param(req, name, buf, sizeof buf);
    if (f == 0)
        return true;
    char reason[96];
    snprintf(reason, sizeof reason, "must be an integer in %lld..%lld", min, max);
    if (f < 0) {
        web__bad_param(req, name, reason);
        return false;
    }
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end == buf || *end || v < min || v > max) {
        web__bad_param(req, name, reason);
        return false;
    }
    *out = v;
    return true;
}

/* ?pack=: -1 = the bank ("bank" or absent), else a pack id below count. False after an answer. */
static bool pack_param(struct web_req *req, unsigned count, int *out)
{
    *out = -1;
    char buf[16];
    int f = web__query_param(req, "pack", buf, sizeof buf);
    if (f == 0 || (f > 0 && strcmp(buf, "bank") == 0))
        return true;
    char *end;
    long v = f > 0 ? strtol(buf, &end, 10) : -1;
    if (f < 0 || end == buf || *end || v < 0 || v >= BATTERY_MAX_PACKS) {
        web__bad_param(req, "pack", "a pack number (0..15) or \"bank\"");
        return false;
    }
    if (count && (unsigned)v >= count) {
        char msg[96];
        snprintf(msg, sizeof msg, "no pack %ld: this gateway has %u (0..%u)", v, count, count - 1);
        web__send_error(req, 404, "no_such_pack", msg, web__one_field("pack", msg), NULL);
        return false;
    }
    *out = (int)v;
    return true;
}

static bool get_view(struct web_req *req, struct battery_view *v)
{
    if (!req->ws->battery || battery_service_get_view(req->ws->battery, v) != GW_OK) {
        web__send_error(req, 503, "unavailable", "the battery service is not running", NULL, NULL);
        return false;
    }
    if (v->seq == 0) {
        web__send_error(req, 503, "no_data", "no battery view yet (the gateway has just started)", NULL,
                        "Retry-After: 1\r\n");
        return false;
    }
    return true;
}

static cJSON *config_errors_fields(const struct config_errors *e)
{
    cJSON *arr = cJSON_CreateArray();
    for (uint32_t i = 0; i < e->count; i++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "path", e->items[i].path);
        cJSON_AddStringToObject(f, "reason", e->items[i].message);
        cJSON_AddItemToArray(arr, f);
    }
    return arr;
}

/* ------------------------------------------------------------------ handlers */

static void h_upgrade_required(struct web_req *req)
{
    web__send_error(req, 426, NULL, "this is a WebSocket endpoint: connect with a WebSocket client", NULL,
                    "Upgrade: websocket\r\n");
}

static const char *load_status_name(enum config_load_status s)
{
    switch (s) {
    case CONFIG_LOAD_OK: return "ok";
    case CONFIG_LOAD_CREATED: return "created";
    case CONFIG_LOAD_FROM_BACKUP: return "recovered_from_backup";
    case CONFIG_LOAD_DEFAULTS: return "defaults";
    }
    return "unknown";
}

static void h_status(struct web_req *req)
{
    struct web_server *ws = req->ws;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", ws->ota ? ota_update_running_version(ws->ota) : GW_VERSION);
    cJSON_AddNumberToObject(o, "uptime_s", (double)((gw_now_ms() - ws->started_ms) / 1000));
    cJSON_AddNumberToObject(o, "time", (double)gw_wall_ms());
    struct gw_config *cfg = malloc(sizeof *cfg);
    if (cfg) {
        config_manager_get(ws->config, cfg);
        cJSON *w = cJSON_AddObjectToObject(o, "web");
        cJSON_AddBoolToObject(w, "password_set", cfg->web.password_hash[0] != '\0');
        cJSON_AddBoolToObject(w, "public_read", cfg->web.public_read);
        cJSON_AddBoolToObject(w, "https", ws->https);
        struct web_server_stats st;
        web_server_get_stats(ws, &st);
        cJSON_AddNumberToObject(w, "requests", (double)st.requests);
        cJSON_AddNumberToObject(w, "ws_clients", st.ws_clients);
        cJSON_AddNumberToObject(w, "ws_max_clients", ws->ws_max);
        cJSON_AddNumberToObject(w, "ws_dropped", (double)st.ws_dropped);
        cJSON_AddNumberToObject(w, "ws_refused_full", (double)st.ws_refused_full);
        cJSON_AddNumberToObject(w, "login_failures", (double)st.login_failures);
        cJSON_AddNumberToObject(w, "lockouts", (double)st.lockouts);
        cJSON_AddNumberToObject(w, "csrf_refused", (double)st.csrf_refused);
        OPENSSL_cleanse(cfg, sizeof *cfg);
        free(cfg);
    }
    char reason[256];
    enum config_load_status ls = config_manager_load_status(ws->config, reason, sizeof reason);
    cJSON *c = cJSON_AddObjectToObject(o, "config");
    cJSON_AddStringToObject(c, "status", load_status_name(ls));
    cJSON_AddStringToObject(c, "message", reason);

    struct battery_view *v = malloc(sizeof *v);
    cJSON *b = cJSON_AddObjectToObject(o, "battery");
    if (v && ws->battery && battery_service_get_view(ws->battery, v) == GW_OK) {
        cJSON_AddNumberToObject(b, "seq", (double)v->seq);
        cJSON_AddNumberToObject(b, "pack_count", v->pack_count);
        cJSON_AddNumberToObject(b, "online_count", v->online_count);
        cJSON_AddBoolToObject(b, "limits_valid", v->limits.valid);
        cJSON_AddBoolToObject(b, "limits_sent", v->limits.valid && v->limit_outputs != 0);
        cJSON *packs = cJSON_AddArrayToObject(b, "packs");
        for (unsigned i = 0; i < v->pack_count && i < BATTERY_MAX_PACKS; i++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddNumberToObject(p, "id", v->packs[i].id);
            cJSON_AddStringToObject(p, "name", v->packs[i].name);
            cJSON_AddStringToObject(p, "state", battery_pack_state_name(v->packs[i].state));
            cJSON_AddItemToArray(packs, p);
        }
    } else {
        cJSON_AddNullToObject(b, "seq");
    }
    free(v);
    cJSON *a = cJSON_AddObjectToObject(o, "alerts");
    if (ws->alerts)
        cJSON_AddNumberToObject(a, "active", (double)alert_manager_active_count(ws->alerts));
    else
        cJSON_AddNullToObject(a, "active");
    cJSON *h = cJSON_AddObjectToObject(o, "history");
    cJSON_AddBoolToObject(h, "enabled", ws->history != NULL);
    if (ws->history) {
        struct history_logger_stats hs;
        history_logger_get_stats(ws->history, &hs);
        cJSON_AddBoolToObject(h, "storage_ok", hs.storage_ok);
        cJSON_AddNumberToObject(h, "samples_written", (double)hs.samples_written);
        cJSON_AddNumberToObject(h, "queue_depth", hs.queue_depth);
    }
    /* The network link as the net_link watcher sees it (docs/monitoring.md "network link"). */
    cJSON *n = cJSON_AddObjectToObject(o, "network");
    struct net_link_status ns;
    if (ws->net && net_link_get_status(ws->net, &ns) == GW_OK) {
        cJSON_AddBoolToObject(n, "watching", ns.watching);
        cJSON_AddStringToObject(n, "watched", ns.watched[0] ? ns.watched : "any");
        cJSON_AddBoolToObject(n, "connected", ns.connected);
        cJSON_AddBoolToObject(n, "link_up", ns.link_up);
        cJSON_AddStringToObject(n, "interface", ns.interface);
        cJSON_AddStringToObject(n, "address", ns.address);
        cJSON_AddBoolToObject(n, "wireless", ns.wireless);
        cJSON_AddNumberToObject(n, "addresses", ns.addresses);
        if (ns.connected && ns.connected_since_ms)
            cJSON_AddNumberToObject(n, "connected_for_s", (double)((gw_now_ms() - ns.connected_since_ms) / 1000));
        else
            cJSON_AddNullToObject(n, "connected_for_s");
        cJSON_AddNumberToObject(n, "connects", (double)ns.connects);
        cJSON_AddNumberToObject(n, "disconnects", (double)ns.disconnects);
        cJSON_AddNumberToObject(n, "link_downs", (double)ns.link_downs);
        cJSON_AddNumberToObject(n, "address_changes", (double)ns.address_changes);
    } else {
        cJSON_AddBoolToObject(n, "watching", false);
    }
    struct event_bus_stats es;
    event_bus_get_stats(ws->bus, &es);
    cJSON *e = cJSON_AddObjectToObject(o, "event_bus");
    cJSON_AddNumberToObject(e, "published", (double)es.published);
    cJSON_AddNumberToObject(e, "dropped", (double)es.dropped);
    cJSON_AddNumberToObject(e, "queue_high_water", es.queue_high_water);
    web__send_json(req, 200, o);
}

static void send_config(struct web_req *req, enum config_json_mode mode, const char *extra)
{
    char *json = NULL;
    int rc = config_manager_to_json(req->ws->config, mode, &json);
    if (rc) {
        web__send_error(req, 500, NULL, gw_strerror(rc), NULL, NULL);
        return;
    }
    web__send(req, 200, "application/json", json, strlen(json), extra, true);
    free(json);
}

static void h_config_get(struct web_req *req)
{
    send_config(req, CONFIG_JSON_MASKED, NULL);
}

/* GET /api/config/schema: every field of GET /api/config with its type, unit, range, enum values
 * and restart flag, from the table the gateway validates with (a form repeats no range). */
static void h_config_schema(struct web_req *req)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(o, "fields");
    bool ok = o && list;
    for (size_t i = 0; ok && i < gw_config_field_count(); i++) {
        struct gw_config_field_info fi;
        if (gw_config_field_info(i, &fi) != GW_OK || fi.storage_only)
            continue;
        cJSON *f = cJSON_CreateObject();
        ok = f && cJSON_AddItemToArray(list, f);
        if (!ok)
            break;
        char path[96];
        snprintf(path, sizeof path, "%s.%s", fi.section, fi.name);
        cJSON_AddStringToObject(f, "path", path);
        cJSON_AddStringToObject(f, "type", fi.type);
        if (fi.unit[0])
            cJSON_AddStringToObject(f, "unit", fi.unit);
        if (fi.has_range) {
            cJSON_AddNumberToObject(f, "min", fi.min);
            cJSON_AddNumberToObject(f, "max", fi.max);
        }
        if (!strcmp(fi.type, "threshold"))
            cJSON_AddNumberToObject(f, "hysteresis_max", fi.aux);
        else if (!strcmp(fi.type, "curve"))
            cJSON_AddNumberToObject(f, "min_points", fi.aux);
        if (fi.max_length)
            cJSON_AddNumberToObject(f, "max_length", fi.max_length);
        if (fi.value_count) {
            cJSON *v = cJSON_AddArrayToObject(f, "values");
            for (unsigned k = 0; v && k < fi.value_count; k++)
                cJSON_AddItemToArray(v, cJSON_CreateString(fi.values[k]));
        }
        cJSON_AddBoolToObject(f, "restart", fi.restart);
        if (fi.secret)
            cJSON_AddBoolToObject(f, "secret", true);
        if (fi.nonempty)
            cJSON_AddBoolToObject(f, "required", true);
    }
    if (!ok) {
        cJSON_Delete(o);
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        return;
    }
    web__send_json(req, 200, o);
}

static void h_config_export(struct web_req *req)
{
    char *json = NULL;
    int rc = config_manager_export_json(req->ws->config, &json);
    if (rc) {
        web__send_error(req, 500, NULL, gw_strerror(rc), NULL, NULL);
        return;
    }
    web__send(req, 200, "application/json", json, strlen(json),
              "Content-Disposition: attachment; filename=\"tinybms-gw-config.json\"\r\n", true);
    free(json);
}

static void config_write(struct web_req *req, bool import)
{
    struct web_server *ws = req->ws;
    struct config_errors *errors = calloc(1, sizeof *errors);
    struct gw_config *before = malloc(sizeof *before), *after = malloc(sizeof *after);
    if (!errors || !before || !after) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        goto out;
    }
    config_manager_get(ws->config, before);
    int rc = import ? config_manager_import_json(ws->config, req->body, req->body_len, errors)
                    : config_manager_update_json(ws->config, req->body, req->body_len, errors);
    if (rc == GW_ERR_INVAL) {
        char msg[200];
        snprintf(msg, sizeof msg, "the configuration was refused: %u problem%s, nothing changed%s", errors->count,
                 errors->count == 1 ? "" : "s", errors->dropped ? " (list cut)" : "");
        web__send_error(req, 400, "invalid_config", msg, config_errors_fields(errors), NULL);
        goto out;
    }
    if (rc) {
        char msg[200];
        snprintf(msg, sizeof msg, "the configuration could not be saved (%s): nothing changed",
                 errors->count ? errors->items[0].message : gw_strerror(rc));
        web__send_error(req, 503, "storage", msg, NULL, NULL);
        goto out;
    }
    config_manager_get(ws->config, after);
    char changed[512];
    bool restart = false;
    gw_config_diff(before, after, changed, sizeof changed, &restart);
    char *json = NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", true);
    cJSON_AddStringToObject(o, "changed", changed);
    cJSON_AddBoolToObject(o, "restart_required", restart);
    if (config_manager_to_json(ws->config, CONFIG_JSON_MASKED, &json) == GW_OK) {
        cJSON *cfgdoc = cJSON_Parse(json);
        if (cfgdoc)
            cJSON_AddItemToObject(o, "config", cfgdoc);
    }
    free(json);
    web__send_json(req, 200, o);
out:
    if (before)
        OPENSSL_cleanse(before, sizeof *before);
    if (after)
        OPENSSL_cleanse(after, sizeof *after);
    free(errors);
    free(before);
    free(after);
}

static void h_config_post(struct web_req *req)
{
    config_write(req, false);
}

static void h_config_import(struct web_req *req)
{
    config_write(req, true);
}

static void h_data(struct web_req *req)
{
    struct battery_view *v = malloc(sizeof *v);
    if (!v) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        return;
    }
    int pack;
    if (get_view(req, v) && pack_param(req, v->pack_count, &pack)) {
        cJSON *doc;
        if (pack >= 0) {
            doc = web__view_json(v, pack);
        } else if (req->query && strstr(req->query, "pack=")) { /* ?pack=bank: the bank alone */
            doc = cJSON_CreateObject();
            cJSON_AddNumberToObject(doc, "seq", (double)v->seq);
            cJSON_AddNumberToObject(doc, "timestamp", (double)v->wall_time_ms);
            cJSON_AddItemToObject(doc, "bank", bank_json(v));
            cJSON_AddItemToObject(doc, "limits", limits_json(&v->limits, v->limit_outputs, true));
        } else {
            size_t len = 0;
            char *text = web__view_text(req->ws, v, &len);
            if (text)
                web__send(req, 200, "application/json", text, len, NULL, true);
            else
                web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
            free(text);
            free(v);
            return;
        }
        web__send_json(req, 200, doc);
    }
    free(v);
}

static void h_limits(struct web_req *req)
{
    struct battery_view *v = malloc(sizeof *v);
    if (!v) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        return;
    }
    if (get_view(req, v)) {
        cJSON *o = limits_json(&v->limits, v->limit_outputs, true);
        cJSON_AddNumberToObject(o, "seq", (double)v->seq);
        cJSON_AddNumberToObject(o, "timestamp", (double)v->wall_time_ms);
        cJSON *packs = cJSON_AddArrayToObject(o, "packs");
        for (unsigned i = 0; i < v->pack_count && i < BATTERY_MAX_PACKS; i++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddNumberToObject(p, "id", v->packs[i].id);
            cJSON_AddStringToObject(p, "name", v->packs[i].name);
            cJSON_AddStringToObject(p, "state", battery_pack_state_name(v->packs[i].state));
            cJSON_AddItemToObject(p, "limits", limits_json(&v->packs[i].limits, 0, false));
            cJSON_AddItemToArray(packs, p);
        }
        web__send_json(req, 200, o);
    }
    free(v);
}

static bool need_alerts(struct web_req *req)
{
    if (req->ws->alerts)
        return true;
    web__send_error(req, 503, "unavailable", "the alert manager is not running", NULL, NULL);
    return false;
}

static void h_alerts(struct web_req *req)
{
    if (!need_alerts(req))
        return;
    long long limit = ALERTS_PAGE_DEFAULT, offset = 0, from = 0, to = 0;
    if (!int_param(req, "limit", 1, ALERTS_PAGE_MAX, &limit) || !int_param(req, "offset", 0, ALERTS_OFFSET_MAX, &offset) ||
        !int_param(req, "from", 0, INT64_MAX / 2, &from) || !int_param(req, "to", 0, INT64_MAX / 2, &to))
        return;
    cJSON *o = cJSON_CreateObject();
    char *json = NULL;
    if (alert_manager_get_active_json_alloc(req->ws->alerts, &json) == GW_OK) {
        cJSON *a = cJSON_Parse(json);
        cJSON_AddItemToObject(o, "active", a ? a : cJSON_CreateArray());
    } else {
        cJSON_AddArrayToObject(o, "active");
    }
    free(json);
    json = NULL;
    int rc = alert_manager_get_history_json(req->ws->alerts, from, to, (uint32_t)(offset + limit + 1), &json);
    cJSON *page = cJSON_AddArrayToObject(o, "history");
    bool more = false;
    if (rc == GW_OK) {
        cJSON *all = cJSON_Parse(json);
        int n = cJSON_GetArraySize(all);
        for (int i = (int)offset; i < n && i < offset + limit; i++)
            cJSON_AddItemToArray(page, cJSON_Duplicate(cJSON_GetArrayItem(all, i), true));
        more = n > offset + limit;
        cJSON_Delete(all);
    } else {
        cJSON_AddStringToObject(o, "history_error", gw_strerror(rc));
    }
    free(json);
    cJSON_AddNumberToObject(o, "offset", (double)offset);
    cJSON_AddNumberToObject(o, "limit", (double)limit);
    cJSON_AddBoolToObject(o, "more", more);
    json = NULL;
    if (alert_manager_get_counts_json_alloc(req->ws->alerts, &json) == GW_OK) {
        cJSON *c = cJSON_Parse(json);
        if (c)
            cJSON_AddItemToObject(o, "counts", c);
    }
    free(json);
    web__send_json(req, 200, o);
}

/* The optional "code" of an ack/clear body: NULL when absent; false after a 400. */
static bool code_field(struct web_req *req, const char **code)
{
    *code = NULL;
    const cJSON *c = req->json ? cJSON_GetObjectItemCaseSensitive(req->json, "code") : NULL;
    if (!c || cJSON_IsNull(c))
        return true;
    if (!cJSON_IsString(c) || strlen(c->valuestring) == 0 || strlen(c->valuestring) > 31) {
        web__send_error(req, 400, "invalid_body", "code must be an alert code (1..31 characters)",
                        web__one_field("code", "must be a string of 1..31 characters"), NULL);
        return false;
    }
    *code = c->valuestring;
    return true;
}

static void h_alerts_ack(struct web_req *req)
{
    const char *code;
    if (!need_alerts(req) || !code_field(req, &code))
        return;
    size_t n = alert_manager_ack(req->ws->alerts, code);
    if (code && n == 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "no active alert with code %s", code);
        web__send_error(req, 404, "no_such_alert", msg, NULL, NULL);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "acknowledged", (double)n);
    web__send_json(req, 200, o);
}

static void h_alerts_clear(struct web_req *req)
{
    const char *code;
    if (!need_alerts(req) || !code_field(req, &code))
        return;
    cJSON *o = cJSON_CreateObject();
    if (code) {
        int rc = alert_manager_clear(req->ws->alerts, code);
        if (rc == GW_ERR_NOT_FOUND) {
            cJSON_Delete(o);
            char msg[96];
            snprintf(msg, sizeof msg, "no active alert with code %s", code);
            web__send_error(req, 404, "no_such_alert", msg, NULL, NULL);
            return;
        }
        cJSON_AddStringToObject(o, "cleared_code", code);
    } else {
        cJSON_AddNumberToObject(o, "cleared", (double)alert_manager_clear_all(req->ws->alerts));
    }
    GW_LOGI(MOD, "alerts cleared from the web (%s)", code ? code : "all");
    web__send_json(req, 200, o);
}

static bool need_history(struct web_req *req)
{
    if (req->ws->history)
        return true;
    web__send_error(req, 503, "history_disabled", "history is disabled (history.enabled is false)", NULL, NULL);
    return false;
}

static const struct {
    const char *name;
    const char *unit;
    int decimals;
    size_t offset;
} history_fields[] = {
    { "voltage", "V", 3, offsetof(struct history_bucket, voltage_v) },
    { "current", "A", 2, offsetof(struct history_bucket, current_a) },
    { "soc", "%", 2, offsetof(struct history_bucket, soc_percent) },
    { "temp_min", "°C", 1, offsetof(struct history_bucket, temp_min_c) },
    { "temp_max", "°C", 1, offsetof(struct history_bucket, temp_max_c) },
    { "cell_min", "mV", 1, offsetof(struct history_bucket, cell_min_mv) },
    { "cell_max", "mV", 1, offsetof(struct history_bucket, cell_max_mv) },
};
#define HISTORY_FIELD_COUNT (sizeof history_fields / sizeof history_fields[0])

static void h_history(struct web_req *req)
{
    if (!need_history(req))
        return;
    int64_t now = gw_wall_ms();
    long long to = now, from = -1, points = HISTORY_DEFAULT_POINTS;
    if (!int_param(req, "to", 1, INT64_MAX / 4, &to) || !int_param(req, "from", 0, INT64_MAX / 4, &from) ||
        !int_param(req, "points", 1, HISTORY_MAX_BUCKETS, &points))
        return;
    if (from < 0)
        from = to - HISTORY_DEFAULT_SPAN_MS;
    if (from >= to) {
        web__bad_param(req, "from", "must be before to (Unix milliseconds)");
        return;
    }
    if (to - from < points) {
        web__bad_param(req, "points", "more points than milliseconds in the range");
        return;
    }
    int pack;
    if (!pack_param(req, 0, &pack))
        return;
    bool want[HISTORY_FIELD_COUNT];
    char fields[128];
    int ff = web__query_param(req, "fields", fields, sizeof fields);
    if (ff < 0) {
        web__bad_param(req, "fields", "too long");
        return;
    }
    for (size_t i = 0; i < HISTORY_FIELD_COUNT; i++)
        want[i] = ff == 0;
    if (ff > 0) {
        char *save = NULL;
        for (char *tok = strtok_r(fields, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            size_t i = 0;
            while (i < HISTORY_FIELD_COUNT && strcmp(tok, history_fields[i].name) != 0)
                i++;
            if (i == HISTORY_FIELD_COUNT) {
                web__bad_param(req, "fields",
                          "comma-separated list of voltage,current,soc,temp_min,temp_max,cell_min,cell_max");
                return;
            }
            want[i] = true;
        }
    }
    struct history_bucket *b = calloc((size_t)points, sizeof *b);
    if (!b) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        return;
    }
    uint8_t id = pack < 0 ? HISTORY_AGGREGATE : (uint8_t)pack;
    struct history_query_info info = { 0 };
    int rc = history_logger_query_buckets_from(req->ws->history, id, from, to, (uint32_t)points, HISTORY_SOURCE_AUTO, b,
                                               &info);
    if (rc) {
        free(b);
        web__send_error(req, rc == GW_ERR_INVAL ? 400 : 503, rc == GW_ERR_INVAL ? "bad_parameter" : "storage",
                        gw_strerror(rc), NULL, NULL);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "from", (double)from);
    cJSON_AddNumberToObject(o, "to", (double)to);
    cJSON_AddNumberToObject(o, "points", (double)points);
    cJSON_AddNumberToObject(o, "bucket_ms", (double)(to - from) / (double)points);
    /* The table that answered: "samples", or a downsampled one whose whole steps count in the
     * bucket where they start. */
    cJSON_AddStringToObject(o, "source", history_source_name(info.source));
    cJSON_AddNumberToObject(o, "resolution_ms", (double)info.resolution_ms);
    if (pack < 0)
        cJSON_AddStringToObject(o, "pack", "bank");
    else
        cJSON_AddNumberToObject(o, "pack", pack);
    cJSON *t = cJSON_AddArrayToObject(o, "time");
    cJSON *cnt = cJSON_AddArrayToObject(o, "count");
    for (long long i = 0; i < points; i++) {
        cJSON_AddItemToArray(t, cJSON_CreateNumber((double)b[i].start_ms));
        cJSON_AddItemToArray(cnt, cJSON_CreateNumber(b[i].count));
    }
    cJSON *series = cJSON_AddObjectToObject(o, "series");
    for (size_t f = 0; f < HISTORY_FIELD_COUNT; f++) {
        if (!want[f])
            continue;
        cJSON *s = cJSON_AddObjectToObject(series, history_fields[f].name);
        cJSON_AddStringToObject(s, "unit", history_fields[f].unit);
        cJSON *mn = cJSON_AddArrayToObject(s, "min"), *av = cJSON_AddArrayToObject(s, "avg"),
              *mx = cJSON_AddArrayToObject(s, "max");
        for (long long i = 0; i < points; i++) {
            const struct history_stat *st = (const void *)((const char *)&b[i] + history_fields[f].offset);
            bool gap = b[i].count == 0;
            cJSON_AddItemToArray(mn, num_item(gap ? NAN : st->min, history_fields[f].decimals));
            cJSON_AddItemToArray(av, num_item(gap ? NAN : st->avg, history_fields[f].decimals));
            cJSON_AddItemToArray(mx, num_item(gap ? NAN : st->max, history_fields[f].decimals));
        }
    }
    free(b);
    web__send_json(req, 200, o);
}

struct csv_stream {
    struct web_req *req;
    char day[16];
    bool started, chunked, failed;
};

static int csv_write(void *ctx, const char *data, size_t len)
{
    struct csv_stream *s = ctx;
    struct mg_connection *conn = s->req->conn;
    if (!s->started) {
        s->started = true;
        const struct mg_request_info *ri = mg_get_request_info(conn);
        s->chunked = !(ri->http_version && strcmp(ri->http_version, "1.0") == 0);
        char hdr[1536];
        int n = snprintf(hdr, sizeof hdr,
                         "HTTP/1.1 200 OK\r\nContent-Type: text/csv; charset=utf-8\r\n%s"
                         "Content-Disposition: attachment; filename=\"history-%s.csv\"\r\n%sCache-Control: no-store\r\n\r\n",
                         s->chunked ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n", s->day,
                         web__security_headers);
        if (n < 0 || (size_t)n >= sizeof hdr || mg_write(conn, hdr, (size_t)n) != n) {
            s->failed = true;
            return 1;
        }
    }
    if (len == 0)
        return 0;
    int rc = s->chunked ? mg_send_chunk(conn, data, (unsigned)len) : mg_write(conn, data, len);
    if (rc <= 0) {
        s->failed = true;
        return 1; /* the client went away: stop reading the database */
    }
    return 0;
}

static void h_history_csv(struct web_req *req)
{
    if (!need_history(req))
        return;
    struct csv_stream s = { .req = req };
    int f = web__query_param(req, "day", s.day, sizeof s.day);
    int64_t start, end;
    if (f < 0 || (f > 0 && history_day_range(s.day, gw_wall_ms(), &start, &end) != GW_OK)) {
        web__bad_param(req, "day", "a UTC day as YYYY-MM-DD");
        return;
    }
    if (f == 0) {
        history_day_range(NULL, gw_wall_ms(), &start, &end);
        time_t t = (time_t)(start / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(s.day, sizeof s.day, "%Y-%m-%d", &tm);
    }
    int pack;
    if (!pack_param(req, 0, &pack))
        return;
    int rc = history_logger_export_csv_day(req->ws->history, s.day, pack < 0 ? HISTORY_AGGREGATE : (uint8_t)pack,
                                           csv_write, &s);
    if (!s.started) {
        if (rc == GW_OK) {
            csv_write(&s, NULL, 0); /* headers for an empty day (the function writes the header row first) */
        } else {
            web__send_error(req, rc == GW_ERR_INVAL ? 400 : 503, rc == GW_ERR_INVAL ? "bad_parameter" : "storage",
                            gw_strerror(rc), NULL, NULL);
            return;
        }
    }
    if (rc != GW_OK && !s.failed)
        GW_LOGW(MOD, "CSV export of %s stopped: %s", s.day, gw_strerror(rc));
    if (s.chunked && !s.failed && rc == GW_OK)
        mg_send_chunk(req->conn, "", 0);
}

static void h_csrf(struct web_req *req)
{
    struct gw_config *cfg = malloc(sizeof *cfg);
    uint32_t ttl_s = 300;
    if (cfg) {
        config_manager_get(req->ws->config, cfg);
        ttl_s = cfg->web.csrf_ttl_s;
        OPENSSL_cleanse(cfg, sizeof *cfg);
        free(cfg);
    }
    char token[WEB_CSRF_TOKEN_MAX];
    pthread_mutex_lock(&req->ws->auth_lock);
    int rc = web_csrf_issue(&req->ws->csrf, req->user[0] ? req->user : "-", gw_now_ms(), (uint64_t)ttl_s * 1000u,
                            token, sizeof token);
    pthread_mutex_unlock(&req->ws->auth_lock);
    if (rc) {
        web__send_error(req, 500, NULL, gw_strerror(rc), NULL, NULL);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", token);
    cJSON_AddStringToObject(o, "header", "X-CSRF-Token");
    cJSON_AddNumberToObject(o, "expires_in_s", ttl_s);
    web__send_json(req, 200, o);
}

static void h_first_password(struct web_req *req)
{
    const cJSON *pw = cJSON_GetObjectItemCaseSensitive(req->json, "password");
    char reason[80];
    snprintf(reason, sizeof reason, "must be a string of %d..%d characters", CONFIG_WEB_PASSWORD_MIN,
             CONFIG_WEB_PASSWORD_MAX);
    if (!cJSON_IsString(pw)) {
        web__send_error(req, 400, "invalid_body", "send {\"password\":\"...\"}", web__one_field("password", reason), NULL);
        return;
    }
    if (config_manager_has_web_password(req->ws->config)) {
        web__send_error(req, 409, "password_exists", "a web password is set already: log in with it", NULL, NULL);
        return;
    }
    int rc = config_manager_set_first_web_password(req->ws->config, pw->valuestring);
    OPENSSL_cleanse(pw->valuestring, strlen(pw->valuestring));
    if (rc == GW_ERR_STATE) {
        web__send_error(req, 409, "password_exists", "a web password is set already: log in with it", NULL, NULL);
    } else if (rc == GW_ERR_INVAL) {
        web__send_error(req, 400, "invalid_password", "the password was refused", web__one_field("password", reason), NULL);
    } else if (rc) {
        web__send_error(req, 503, "storage", "the password could not be saved (see the gateway's log)", NULL, NULL);
    } else {
        struct gw_config *cfg = malloc(sizeof *cfg);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", true);
        if (cfg) {
            config_manager_get(req->ws->config, cfg);
            cJSON_AddStringToObject(o, "user", cfg->web.username);
            OPENSSL_cleanse(cfg, sizeof *cfg);
            free(cfg);
        }
        GW_LOGI(MOD, "web password set from the first-run page (client %s)", mg_get_request_info(req->conn)->remote_addr);
        web__send_json(req, 200, o);
    }
}

static void h_restart(struct web_req *req)
{
    struct web_server *ws = req->ws;
    if (!ws->restart) {
        web__send_error(req, 501, NULL, "this gateway cannot restart itself", NULL, NULL);
        return;
    }
    bool already = atomic_exchange(&ws->restart_requested, true);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "restarting", true);
    web__send_json(req, 202, o);
    if (already)
        return;
    GW_LOGI(MOD, "restart requested from the web (client %s)", mg_get_request_info(req->conn)->remote_addr);
    web__ws_event(ws, "restart", NULL);
    web__ws_drain(ws, WS_EVENTS, 2000); /* so /ws/events clients hear it before the connections close */
    ws->restart(ws->restart_ctx);
}

/* ------------------------------------------------------------------ the table */

static void h_config(struct web_req *req)
{
    if (req->method_bit == WEB_POST)
        h_config_post(req);
    else
        h_config_get(req);
}


#define GET_ONLY WEB_GET
static const struct web_route routes[] = {
    { "/api/status", GET_ONLY, WEB_READ, 0, false, false, false, h_status },
    { "/api/config", WEB_GET | WEB_POST, WEB_ADMIN, CONFIG_BODY_MAX, true, false, false, h_config },
    { "/api/config/schema", GET_ONLY, WEB_ADMIN, 0, false, false, false, h_config_schema },
    { "/api/config/export", GET_ONLY, WEB_ADMIN, 0, false, false, false, h_config_export },
    { "/api/config/import", WEB_POST, WEB_ADMIN, CONFIG_BODY_MAX, true, false, false, h_config_import },
    { "/api/data", GET_ONLY, WEB_READ, 0, false, false, false, h_data },
    { "/api/limits", GET_ONLY, WEB_READ, 0, false, false, false, h_limits },
    { "/api/alerts", GET_ONLY, WEB_READ, 0, false, false, false, h_alerts },
    { "/api/alerts/ack", WEB_POST, WEB_ADMIN, SMALL_BODY_MAX, true, true, false, h_alerts_ack },
    { "/api/alerts/clear", WEB_POST, WEB_ADMIN, SMALL_BODY_MAX, true, true, false, h_alerts_clear },
    { "/api/history", GET_ONLY, WEB_READ, 0, false, false, false, h_history },
    { "/api/history.csv", GET_ONLY, WEB_READ, 0, false, false, false, h_history_csv },
    { "/api/security/csrf", GET_ONLY, WEB_ADMIN, 0, false, false, false, h_csrf },
    { "/api/security/first-password", WEB_POST, WEB_PUBLIC, SMALL_BODY_MAX, true, false, false, h_first_password },
    { "/api/config/test-mqtt", WEB_POST, WEB_ADMIN, CONFIG_BODY_MAX, true, true, false, web__h_test_mqtt },
    { "/api/bms/settings", WEB_GET | WEB_POST, WEB_ADMIN, SETTINGS_BODY_MAX, true, false, false, web__h_bms_settings },
    { "/api/bms/settings/backup", GET_ONLY, WEB_ADMIN, 0, false, false, false, web__h_bms_backup },
    { "/api/bms/settings/restore", WEB_POST, WEB_ADMIN, SETTINGS_BODY_MAX, true, false, false, web__h_bms_restore },
    { "/api/bms/restart", WEB_POST, WEB_ADMIN, SMALL_BODY_MAX, true, false, false, web__h_bms_restart },
    { "/api/ota/upload", WEB_POST, WEB_ADMIN, 0, false, false, true, web__h_ota_upload },
    { "/api/ota/status", GET_ONLY, WEB_READ, 0, false, false, false, web__h_ota_status },
    { "/api/ota/rollback", WEB_POST, WEB_ADMIN, SMALL_BODY_MAX, true, true, false, web__h_ota_rollback },
    { "/metrics", GET_ONLY, WEB_METRICS, 0, false, false, false, web__h_metrics_prometheus },
    { "/api/metrics", GET_ONLY, WEB_READ, 0, false, false, false, web__h_metrics_json },
    { "/api/system/restart", WEB_POST, WEB_ADMIN, SMALL_BODY_MAX, true, true, false, h_restart },
    { "/ws/live", GET_ONLY, WEB_READ, 0, false, false, false, h_upgrade_required },
    { "/ws/alerts", GET_ONLY, WEB_READ, 0, false, false, false, h_upgrade_required },
    { "/ws/events", GET_ONLY, WEB_ADMIN, 0, false, false, false, h_upgrade_required },
    { "/ws/uart", GET_ONLY, WEB_ADMIN, 0, false, false, false, h_upgrade_required },
    { "/ws/can", GET_ONLY, WEB_ADMIN, 0, false, false, false, h_upgrade_required },
};

const struct web_route *web__find_route(const char *path)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(routes[i].path, path) == 0)
            return &routes[i];
    return NULL;
}
