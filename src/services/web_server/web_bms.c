/* The BMS endpoints: every setting register with its unit, range and the BMS's own min/max; a
 * validated write with read-back and a result per register; a backup file and its restore
 * (validate everything, then write); the BMS restart (confirmed by a second field); and the MQTT
 * connection test on the settings being edited.
 *
 * Nothing reaches the BMS unless both the documented range and the BMS's own min/max accept it
 * (web_setting_check); the poller checks it once more, writes it with MODBUS 0x10 and reads it
 * back (uart_bms_write_setting). One BMS command sequence runs at a time (bms_lock). */
#define _GNU_SOURCE
#include "web_server_internal.h"

#include "bms_data.h"
#include "config_manager.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "mqtt_client.h"
#include "tinybms.h"
#include "uart_bms.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITE_TIMEOUT_MS 5000      /* one register: queued behind a live read, written, read back */
#define RESTART_TIMEOUT_MS 5000
#define BACKUP_FORMAT "tinybms-gw-bms-settings"
#define BACKUP_FORMAT_VERSION 1
#define MAX_CHANGES 64             /* registers in one request (the table has 40) */
#define MQTT_TEST_TIMEOUT_MS 10000

static const char *kind_name(enum tinybms_setting_kind k)
{
    switch (k) {
    case TINYBMS_SETTING_U16: return "u16";
    case TINYBMS_SETTING_INT16: return "int16";
    case TINYBMS_SETTING_U32_LOW: return "u32_low";
    case TINYBMS_SETTING_U32_HIGH: return "u32_high";
    case TINYBMS_SETTING_LOW_BYTE: return "low_byte";
    case TINYBMS_SETTING_FLAGS: return "flags";
    case TINYBMS_SETTING_ENUM: return "enum";
    case TINYBMS_SETTING_BYTE_PAIR: return "byte_pair";
    }
    return "u16";
}

/* "Write to set" registers (SOC, SOH): a state of the battery, not a setting. They are listed
 * and can be written on purpose, but never go into a backup nor come back with a restore. */
static bool is_state_setter(const struct tinybms_setting_info *info)
{
    return (info->flags & TINYBMS_SETTING_FFFF_ACCEPTED) != 0;
}

static bool word_of(const struct bms_settings *s, uint16_t reg, uint16_t *out)
{
    if (!s->valid || reg < BMS_SETTINGS_FIRST || reg > BMS_SETTINGS_LAST)
        return false;
    unsigned i = reg - BMS_SETTINGS_FIRST;
    if (!(s->present_mask & (1ull << i)))
        return false;
    *out = s->raw[i];
    return true;
}

/* ------------------------------------------------------------------ which BMS */

struct bms_snap {
    struct bms_settings cur, min, max;
    struct bms_version ver;
    bool have_ver;
    bool limits_unsupported;   /* the BMS refused 0x1D: its min/max will never come */
};

static const char *limits_state(const struct bms_snap *s)
{
    return s->min.valid && s->max.valid ? "read" : s->limits_unsupported ? "unsupported" : "not_read_yet";
}

/* The poller of ?pack=N (0 when absent and there is one pack; required for changes with several
 * packs). False after an answer. */
static bool bms_of(struct web_req *req, bool change, int *pack_out, struct uart_bms **out)
{
    struct web_server *ws = req->ws;
    if (ws->bms_count == 0) {
        web__send_error(req, 503, "no_bms", "this gateway polls no BMS", NULL, NULL);
        return false;
    }
    char buf[16];
    int f = web__query_param(req, "pack", buf, sizeof buf);
    long pack = 0;
    if (f == 0 && change && ws->bms_count > 1) {
        char msg[128];
        snprintf(msg, sizeof msg, "this gateway has %u packs: say which with ?pack=0..%u", ws->bms_count,
                 ws->bms_count - 1);
        web__send_error(req, 400, "pack_required", msg, web__one_field("pack", "required with several packs"), NULL);
        return false;
    }
    if (f != 0) {
        char *end;
        errno = 0;
        pack = f > 0 ? strtol(buf, &end, 10) : -1;
        if (f < 0 || errno || end == buf || *end || pack < 0 || pack >= WEB_MAX_BMS) {
            web__bad_param(req, "pack", "a pack number (0..15)");
            return false;
        }
    }
    if ((unsigned)pack >= ws->bms_count || !ws->bms[pack]) {
        char msg[96];
        snprintf(msg, sizeof msg, "no BMS for pack %ld: this gateway has %u (0..%u)", pack, ws->bms_count,
                 ws->bms_count - 1);
        web__send_error(req, 404, "no_such_pack", msg, web__one_field("pack", msg), NULL);
        return false;
    }
    *pack_out = (int)pack;
    *out = ws->bms[pack];
    return true;
}

static bool read_snap(struct web_req *req, struct uart_bms *ub, struct bms_snap *s)
{
    memset(s, 0, sizeof *s);
    if (uart_bms_get_settings(ub, &s->cur, &s->min, &s->max) != GW_OK) {
        web__send_error(req, 503, "settings_not_read",
                        "the BMS's settings have not been read yet (they are read shortly after it answers)", NULL,
                        "Retry-After: 5\r\n");
        return false;
    }
    s->have_ver = uart_bms_get_version(ub, &s->ver) == GW_OK && s->ver.valid;
    struct uart_bms_stats st;
    uart_bms_get_stats(ub, &st);
    s->limits_unsupported = st.settings_limits_unsupported;
    return true;
}

/* A change needs the BMS's own min/max (read shortly after the settings), unless its firmware
 * has none: then the documented ranges alone. False after a 503. */
static bool limits_known(struct web_req *req, const struct bms_snap *s)
{
    if ((s->min.valid && s->max.valid) || s->limits_unsupported)
        return true;
    web__send_error(req, 503, "bms_limits_not_read",
                    "the BMS's own min/max have not been read yet: nothing is written before they are", NULL,
                    "Retry-After: 5\r\n");
    return false;
}

static void add_bms_identity(cJSON *o, const struct bms_snap *s)
{
    cJSON *b = cJSON_AddObjectToObject(o, "bms");
    if (s->have_ver) {
        cJSON_AddStringToObject(b, "serial", s->ver.serial);
        char fw[32];
        snprintf(fw, sizeof fw, "%u.%u", s->ver.fw_public, s->ver.fw_internal);
        cJSON_AddStringToObject(b, "firmware", fw);
        cJSON_AddNumberToObject(b, "hardware", s->ver.hw_version);
    } else {
        cJSON_AddNullToObject(b, "serial");
    }
}

/* ------------------------------------------------------------------ GET /api/bms/settings */

static cJSON *setting_json(const struct tinybms_setting_info *info, const struct bms_snap *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "reg", info->reg);
    cJSON_AddStringToObject(o, "key", info->key);
    cJSON_AddStringToObject(o, "name", info->name);
    cJSON_AddStringToObject(o, "unit", info->unit);
    cJSON_AddStringToObject(o, "kind", kind_name(info->kind));
    uint16_t raw = 0;
    bool read = word_of(&s->cur, info->reg, &raw);
    if (read)
        cJSON_AddNumberToObject(o, "value", web_setting_value(info, raw));
    else
        cJSON_AddNullToObject(o, "value");
    cJSON_AddNumberToObject(o, "min", info->min);
    cJSON_AddNumberToObject(o, "max", info->max);
    int32_t lo, hi;
    if (web_setting_bms_range(info, &s->min, &s->max, &lo, &hi)) {
        cJSON_AddNumberToObject(o, "bms_min", lo);
        cJSON_AddNumberToObject(o, "bms_max", hi);
    } else {
        cJSON_AddNullToObject(o, "bms_min");
        cJSON_AddNullToObject(o, "bms_max");
    }
    char range[WEB_SETTING_REASON_MAX];
    web_setting_describe_range(info, &s->min, &s->max, range, sizeof range);
    cJSON_AddStringToObject(o, "range", range);
    if (info->kind == TINYBMS_SETTING_ENUM || info->kind == TINYBMS_SETTING_BYTE_PAIR) {
        cJSON *a = cJSON_AddArrayToObject(o, info->kind == TINYBMS_SETTING_ENUM ? "allowed" : "allowed_low_byte");
        for (unsigned v = 0; v < 32; v++)
            if (info->allowed_mask & (1u << v))
                cJSON_AddItemToArray(a, cJSON_CreateNumber(v));
    }
    if (info->kind == TINYBMS_SETTING_FLAGS)
        cJSON_AddNumberToObject(o, "writable_bits", info->allowed_mask);
    if (info->kind == TINYBMS_SETTING_U32_LOW) {
        uint16_t hi_word;
        if (read && word_of(&s->cur, (uint16_t)(info->reg + 1), &hi_word))
            cJSON_AddNumberToObject(o, "pair_value", (double)((uint32_t)raw | ((uint32_t)hi_word << 16)));
    }
    cJSON_AddBoolToObject(o, "newer_firmware_only", (info->flags & TINYBMS_SETTING_NEWER_FW) != 0);
    if (is_state_setter(info)) {
        cJSON_AddBoolToObject(o, "sets_state", true);
        cJSON_AddBoolToObject(o, "accepted", read && tinybms_setting_reads_accepted(info->reg, raw));
    }
    return o;
}

static void get_settings(struct web_req *req)
{
    int pack;
    struct uart_bms *ub;
    struct bms_snap *s = malloc(sizeof *s);
    if (!s) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        return;
    }
    if (bms_of(req, false, &pack, &ub) && read_snap(req, ub, s)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "pack", pack);
        add_bms_identity(o, s);
        cJSON_AddStringToObject(o, "bms_limits", limits_state(s));
        cJSON *arr = cJSON_AddArrayToObject(o, "settings");
        for (size_t i = 0; i < tinybms_setting_count(); i++)
            cJSON_AddItemToArray(arr, setting_json(tinybms_setting_at(i), s));
        web__send_json(req, 200, o);
    }
    free(s);
}

/* ------------------------------------------------------------------ changes */

struct change {
    const struct tinybms_setting_info *info;
    char path[64];             /* "settings.<key>" as the user wrote it */
    int64_t value;             /* as given (signed for signed registers) */
    uint16_t raw;              /* the word to write (after the check) */
    bool same;                 /* the BMS holds it already */
    const char *result;        /* "written", "unchanged", "failed", "not_written" */
    int rc;
    uint16_t read_back;
    bool have_read_back;
};

struct change_set {
    size_t n;
    struct change items[MAX_CHANGES];
    cJSON *errors;             /* field errors (path, reason), NULL while none */
};

static void change_error(struct change_set *cs, const char *path, const char *reason)
{
    if (!cs->errors)
        cs->errors = cJSON_CreateArray();
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "path", path);
    cJSON_AddStringToObject(f, "reason", reason);
    cJSON_AddItemToArray(cs->errors, f);
}

/* A key of the settings object: the register's key ("over_voltage_cutoff_mv") or its number. */
static const struct tinybms_setting_info *find_setting(const char *name)
{
    char *end;
    errno = 0;
    long reg = strtol(name, &end, 10);
    if (end != name && *end == '\0' && !errno)
        return reg >= 0 && reg <= 0xFFFF ? tinybms_setting_info((uint16_t)reg) : NULL;
    for (size_t i = 0; i < tinybms_setting_count(); i++)
        if (strcmp(tinybms_setting_at(i)->key, name) == 0)
            return tinybms_setting_at(i);
    return NULL;
}

/* Collects the entries of obj ({name: value} or, with allow_objects, {name: {"reg":r,"value":v}})
 * into cs; problems go to cs->errors. restore: state setters (SOC, SOH) are refused. */
static void collect_changes(const cJSON *obj, bool restore, struct change_set *cs)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, obj)
    {
        char path[64];
        snprintf(path, sizeof path, "settings.%.50s", e->string ? e->string : "");
        const struct tinybms_setting_info *info = e->string ? find_setting(e->string) : NULL;
        if (!info) {
            change_error(cs, path, "no such setting (the keys and registers are listed by GET /api/bms/settings)");
            continue;
        }
        const cJSON *v = e;
        if (restore && cJSON_IsObject(e)) {
            const cJSON *reg = cJSON_GetObjectItemCaseSensitive(e, "reg");
            v = cJSON_GetObjectItemCaseSensitive(e, "value");
            if (reg && (!cJSON_IsNumber(reg) || reg->valuedouble != info->reg)) {
                char why[96];
                snprintf(why, sizeof why, "\"reg\" does not match %s (register %u)", info->key, info->reg);
                change_error(cs, path, why);
                continue;
            }
        }
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
            fabs(v->valuedouble) > 1e9) {
            change_error(cs, path, restore ? "must be an integer, or {\"reg\":..,\"value\":integer}" : "must be an integer");
            continue;
        }
        if (restore && is_state_setter(info)) {
            change_error(cs, path, "a state of the battery (write to set), not a setting: never restored");
            continue;
        }
        bool dup = false;
        for (size_t i = 0; i < cs->n; i++)
            dup |= cs->items[i].info == info;
        if (dup) {
            change_error(cs, path, "the same register twice");
            continue;
        }
        if (cs->n == MAX_CHANGES) {
            change_error(cs, path, "too many settings in one request");
            continue;
        }
        struct change *c = &cs->items[cs->n++];
        memset(c, 0, sizeof *c);
        c->info = info;
        snprintf(c->path, sizeof c->path, "%s", path);
        c->value = (int64_t)v->valuedouble;
        c->result = "not_written";
    }
}

/* Checks every change against the documented range and the BMS's min/max, with the pair 312/313
 * as it will be. Problems go to cs->errors. */
static void check_changes(struct change_set *cs, const struct bms_snap *s)
{
    struct bms_settings proposed = s->cur;
    for (size_t i = 0; i < cs->n; i++) {
        const struct change *c = &cs->items[i];
        bool is_signed = c->info->kind == TINYBMS_SETTING_INT16;
        if (c->value < (is_signed ? INT16_MIN : 0) || c->value > (is_signed ? INT16_MAX : UINT16_MAX))
            continue; /* refused below */
        unsigned k = c->info->reg - BMS_SETTINGS_FIRST;
        proposed.raw[k] = is_signed ? (uint16_t)(int16_t)c->value : (uint16_t)c->value;
        proposed.present_mask |= 1ull << k;
    }
    for (size_t i = 0; i < cs->n; i++) {
        struct change *c = &cs->items[i];
        char why[WEB_SETTING_REASON_MAX + 32];
        if (web_setting_check(c->info->reg, c->value, &proposed, &s->min, &s->max, &c->raw, why, sizeof why) !=
            GW_OK) {
            change_error(cs, c->path, why);
            continue;
        }
        uint16_t cur;
        c->same = word_of(&s->cur, c->info->reg, &cur) && cur == c->raw;
    }
}

static const char *write_result_text(int rc)
{
    switch (rc) {
    case GW_ERR_RANGE: return "refused before sending: out of range";
    case GW_ERR_NACK: return "the BMS refused the write (NACK)";
    case GW_ERR_PROTO: return "the BMS answered, but the register reads back another value";
    case GW_ERR_TIMEOUT: return "no answer from the BMS";
    case GW_ERR_CLOSED: return "the BMS's serial port is not open";
    case GW_ERR_STATE: return "the BMS poller is not running";
    case GW_ERR_BUSY: return "the BMS poller is busy with another command";
    default: return gw_strerror(rc);
    }
}

/* Writes the changes one register at a time, in register order (the pair in the order whose
 * intermediate value is valid); stops at the first failure. Returns the number of failures. */
static unsigned write_changes(struct uart_bms *ub, int pack, struct change_set *cs, const struct bms_snap *s)
{
    /* Order: ascending registers; 313 before 312 when only that order passes valid values. */
    size_t order[MAX_CHANGES];
    for (size_t i = 0; i < cs->n; i++)
        order[i] = i;
    for (size_t i = 1; i < cs->n; i++)
        for (size_t j = i; j > 0 && cs->items[order[j]].info->reg < cs->items[order[j - 1]].info->reg; j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int lo = -1, hi = -1;
    for (size_t i = 0; i < cs->n; i++) {
        if (cs->items[order[i]].info->reg == 312)
            lo = (int)i;
        if (cs->items[order[i]].info->reg == 313)
            hi = (int)i;
    }
    if (lo >= 0 && hi >= 0) {
        uint16_t cl = 0, ch = 0;
        word_of(&s->cur, 312, &cl);
        word_of(&s->cur, 313, &ch);
        if (web_setting_pair_order(cl, ch, cs->items[order[lo]].raw, cs->items[order[hi]].raw, &s->min, &s->max) == 1) {
            size_t t = order[lo];
            order[lo] = order[hi];
            order[hi] = t;
        }
    }
    unsigned failed = 0;
    for (size_t k = 0; k < cs->n; k++) {
        struct change *c = &cs->items[order[k]];
        if (failed) {
            c->result = "not_written";
            continue;
        }
        if (c->same) {
            c->result = "unchanged";
            continue;
        }
        c->rc = uart_bms_write_setting(ub, c->info->reg, c->raw, WRITE_TIMEOUT_MS);
        c->result = c->rc == GW_OK ? "written" : "failed";
        if (c->rc != GW_OK) {
            failed++;
            GW_LOGW(MOD, "pack %d: register %u (%s) not set to %lld from the web: %s", pack, c->info->reg,
                    c->info->key, (long long)c->value, write_result_text(c->rc));
        }
    }
    /* What the BMS holds now (the poller updated its copy with each read-back). */
    struct bms_settings now;
    if (uart_bms_get_settings(ub, &now, NULL, NULL) == GW_OK)
        for (size_t i = 0; i < cs->n; i++)
            cs->items[i].have_read_back = word_of(&now, cs->items[i].info->reg, &cs->items[i].read_back);
    return failed;
}

static bool pair_reachable(struct web_req *req, struct change_set *cs, const struct bms_snap *s)
{
    const struct change *l = NULL, *h = NULL;
    for (size_t i = 0; i < cs->n; i++) {
        if (cs->items[i].info->reg == 312 && !cs->items[i].same)
            l = &cs->items[i];
        if (cs->items[i].info->reg == 313 && !cs->items[i].same)
            h = &cs->items[i];
    }
    uint16_t cl = 0, ch = 0;
    if (!l || !h || !word_of(&s->cur, 312, &cl) || !word_of(&s->cur, 313, &ch))
        return true;
    if (web_setting_pair_order(cl, ch, l->raw, h->raw, &s->min, &s->max) >= 0)
        return true;
    web__send_error(req, 400, "invalid_settings",
                    "pulses per unit (312/313) cannot reach this value one register at a time: change it in two "
                    "steps through a value below 65536",
                    web__one_field(l->path, "no valid intermediate value between the two writes"), NULL);
    return false;
}

/* The answer: 200 when everything was written (or unchanged), 502 with the same results and
 * the error fields when a write failed (what was written before it stays written). */
static void send_results(struct web_req *req, int pack, struct change_set *cs, unsigned failed, bool dry_run,
                         const char *what)
{
    cJSON *o = cJSON_CreateObject();
    unsigned written = 0, unchanged = 0, not_written = 0;
    cJSON *fields = cJSON_CreateArray();
    const struct change *first_fail = NULL;
    for (size_t i = 0; i < cs->n; i++) {
        const struct change *c = &cs->items[i];
        written += strcmp(c->result, "written") == 0;
        unchanged += strcmp(c->result, "unchanged") == 0;
        not_written += strcmp(c->result, "not_written") == 0;
        if (c->rc != GW_OK) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "path", c->path);
            cJSON_AddStringToObject(f, "reason", write_result_text(c->rc));
            cJSON_AddItemToArray(fields, f);
            if (!first_fail)
                first_fail = c;
        }
    }
    if (failed) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s stopped: register %u (%s): %s; %u written before it, %u not written", what,
                 first_fail->info->reg, first_fail->info->key, write_result_text(first_fail->rc), written,
                 not_written);
        cJSON_AddStringToObject(o, "error", "bms_write_failed");
        cJSON_AddNumberToObject(o, "status", 502);
        cJSON_AddStringToObject(o, "message", msg);
        cJSON_AddItemToObject(o, "fields", fields);
    } else {
        cJSON_Delete(fields);
    }
    cJSON_AddBoolToObject(o, "ok", failed == 0);
    cJSON_AddNumberToObject(o, "pack", pack);
    if (dry_run)
        cJSON_AddBoolToObject(o, "dry_run", true);
    cJSON_AddNumberToObject(o, "written", written);
    cJSON_AddNumberToObject(o, "unchanged", unchanged);
    cJSON_AddNumberToObject(o, "failed", failed);
    cJSON_AddNumberToObject(o, "not_written", not_written);
    cJSON *arr = cJSON_AddArrayToObject(o, "results");
    for (size_t i = 0; i < cs->n; i++) {
        const struct change *c = &cs->items[i];
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "reg", c->info->reg);
        cJSON_AddStringToObject(r, "key", c->info->key);
        cJSON_AddNumberToObject(r, "value", (double)c->value);
        cJSON_AddStringToObject(r, "result", dry_run ? (c->same ? "unchanged" : "valid") : c->result);
        if (c->have_read_back)
            cJSON_AddNumberToObject(r, "read_back", web_setting_value(c->info, c->read_back));
        if (c->rc != GW_OK)
            cJSON_AddStringToObject(r, "message", write_result_text(c->rc));
        cJSON_AddItemToArray(arr, r);
    }
    web__send_json(req, failed ? 502 : 200, o);
}

/* Validates everything, then (unless dry_run) writes. The caller holds bms_lock. */
static void apply_changes(struct web_req *req, struct uart_bms *ub, int pack, const cJSON *obj, bool restore,
                          bool dry_run, const struct bms_snap *s)
{
    struct change_set *cs = calloc(1, sizeof *cs);
    if (!cs) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        return;
    }
    collect_changes(obj, restore, cs);
    check_changes(cs, s); /* every problem at once, also when some entries were malformed */
    if (cs->errors) {
        char msg[160];
        int n = cJSON_GetArraySize(cs->errors);
        snprintf(msg, sizeof msg, "%d setting%s refused: nothing was written to the BMS", n, n == 1 ? "" : "s");
        web__send_error(req, 400, "invalid_settings", msg, cs->errors, NULL);
        free(cs);
        return;
    }
    if (cs->n == 0) {
        web__send_error(req, 400, "invalid_settings", "no setting given",
                        web__one_field("settings", "an object of {key or register: value}"), NULL);
        free(cs);
        return;
    }
    if (!pair_reachable(req, cs, s)) {
        free(cs);
        return;
    }
    unsigned failed = dry_run ? 0 : write_changes(ub, pack, cs, s);
    if (!dry_run)
        GW_LOGI(MOD, "pack %d: BMS settings %s from the web (client %s): %zu given, %s", pack,
                restore ? "restored" : "changed", mg_get_request_info(req->conn)->remote_addr, cs->n,
                failed ? "stopped at a failure" : "done");
    send_results(req, pack, cs, failed, dry_run, restore ? "the restore" : "the change");
    free(cs);
}

static bool lock_bms(struct web_req *req)
{
    if (pthread_mutex_trylock(&req->ws->bms_lock) == 0)
        return true;
    web__send_error(req, 409, "busy", "another change of the BMS is in progress: try again when it has finished",
                    NULL, "Retry-After: 2\r\n");
    return false;
}

static void post_settings(struct web_req *req)
{
    int pack;
    struct uart_bms *ub;
    if (!bms_of(req, true, &pack, &ub))
        return;
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(req->json, "settings");
    if (!cJSON_IsObject(settings)) {
        web__send_error(req, 400, "invalid_body", "send {\"settings\":{\"<key or register>\": value, ...}}",
                        web__one_field("settings", "must be an object of {key or register: integer}"), NULL);
        return;
    }
    const cJSON *dry = cJSON_GetObjectItemCaseSensitive(req->json, "dry_run");
    if (dry && !cJSON_IsBool(dry)) {
        web__send_error(req, 400, "invalid_body", "dry_run must be true or false",
                        web__one_field("dry_run", "must be a boolean"), NULL);
        return;
    }
    if (!lock_bms(req))
        return;
    struct bms_snap *s = malloc(sizeof *s);
    if (!s)
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
    else if (read_snap(req, ub, s) && limits_known(req, s))
        apply_changes(req, ub, pack, settings, false, cJSON_IsTrue(dry), s);
    free(s);
    pthread_mutex_unlock(&req->ws->bms_lock);
}

void web__h_bms_settings(struct web_req *req)
{
    if (req->method_bit == WEB_POST)
        post_settings(req);
    else
        get_settings(req);
}

/* ------------------------------------------------------------------ backup and restore */

void web__h_bms_backup(struct web_req *req)
{
    int pack;
    struct uart_bms *ub;
    struct bms_snap *s = malloc(sizeof *s);
    if (!s) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        return;
    }
    if (!bms_of(req, false, &pack, &ub) || !read_snap(req, ub, s)) {
        free(s);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", BACKUP_FORMAT);
    cJSON_AddNumberToObject(o, "format_version", BACKUP_FORMAT_VERSION);
    cJSON_AddNumberToObject(o, "created_ms", (double)gw_wall_ms());
    cJSON_AddStringToObject(o, "gateway_version", GW_VERSION);
    cJSON_AddNumberToObject(o, "pack", pack);
    add_bms_identity(o, s);
    cJSON *set = cJSON_AddObjectToObject(o, "settings");
    unsigned n = 0;
    for (size_t i = 0; i < tinybms_setting_count(); i++) {
        const struct tinybms_setting_info *info = tinybms_setting_at(i);
        uint16_t raw = 0;
        if (is_state_setter(info) || !word_of(&s->cur, info->reg, &raw))
            continue;
        cJSON *e = cJSON_AddObjectToObject(set, info->key);
        cJSON_AddNumberToObject(e, "reg", info->reg);
        cJSON_AddNumberToObject(e, "value", web_setting_value(info, raw));
        if (info->unit[0])
            cJSON_AddStringToObject(e, "unit", info->unit);
        n++;
    }
    free(s);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        return;
    }
    char extra[128];
    snprintf(extra, sizeof extra, "Content-Disposition: attachment; filename=\"tinybms-settings-pack%d.json\"\r\n",
             pack + 1);
    web__send(req, 200, "application/json", text, strlen(text), extra, true);
    free(text);
    GW_LOGD(MOD, "pack %d: settings backup of %u registers sent", pack, n);
}

void web__h_bms_restore(struct web_req *req)
{
    int pack;
    struct uart_bms *ub;
    if (!bms_of(req, true, &pack, &ub))
        return;
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(req->json, "format");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(req->json, "format_version");
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(req->json, "settings");
    if (!cJSON_IsString(format) || strcmp(format->valuestring, BACKUP_FORMAT) != 0) {
        web__send_error(req, 400, "invalid_backup", "not a BMS settings backup of this gateway",
                        web__one_field("format", "must be \"" BACKUP_FORMAT "\""), NULL);
        return;
    }
    if (!cJSON_IsNumber(version) || version->valuedouble != BACKUP_FORMAT_VERSION) {
        web__send_error(req, 400, "invalid_backup", "a backup of another format version",
                        web__one_field("format_version", "must be 1"), NULL);
        return;
    }
    if (!cJSON_IsObject(settings)) {
        web__send_error(req, 400, "invalid_backup", "the backup has no settings",
                        web__one_field("settings", "must be an object"), NULL);
        return;
    }
    const cJSON *other = cJSON_GetObjectItemCaseSensitive(req->json, "allow_other_bms");
    if (!lock_bms(req))
        return;
    struct bms_snap *s = malloc(sizeof *s);
    if (!s) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
    } else if (read_snap(req, ub, s) && limits_known(req, s)) {
        const cJSON *bms = cJSON_GetObjectItemCaseSensitive(req->json, "bms");
        const cJSON *serial = bms ? cJSON_GetObjectItemCaseSensitive(bms, "serial") : NULL;
        if (cJSON_IsString(serial) && serial->valuestring[0] && s->have_ver &&
            strcmp(serial->valuestring, s->ver.serial) != 0 && !cJSON_IsTrue(other)) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "this backup comes from another BMS (serial %.24s, this one %.24s): add "
                     "\"allow_other_bms\": true to restore it anyway",
                     serial->valuestring, s->ver.serial);
            web__send_error(req, 409, "other_bms", msg, web__one_field("bms.serial", "not this BMS's serial"),
                            NULL);
        } else {
            apply_changes(req, ub, pack, settings, true, false, s);
        }
    }
    free(s);
    pthread_mutex_unlock(&req->ws->bms_lock);
}

/* ------------------------------------------------------------------ restart */

void web__h_bms_restart(struct web_req *req)
{
    int pack;
    struct uart_bms *ub;
    if (!bms_of(req, true, &pack, &ub))
        return;
    const cJSON *restart = cJSON_GetObjectItemCaseSensitive(req->json, "restart");
    const cJSON *confirm = cJSON_GetObjectItemCaseSensitive(req->json, "confirm");
    if (!cJSON_IsTrue(restart) || !cJSON_IsTrue(confirm)) {
        cJSON *fields = cJSON_CreateArray();
        const char *names[2] = { "restart", "confirm" };
        const cJSON *items[2] = { restart, confirm };
        for (int i = 0; i < 2; i++) {
            if (cJSON_IsTrue(items[i]))
                continue;
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "path", names[i]);
            cJSON_AddStringToObject(f, "reason", "must be true");
            cJSON_AddItemToArray(fields, f);
        }
        web__send_error(req, 400, "confirmation_required",
                        "a BMS restart opens its switches for a moment: send {\"restart\":true,\"confirm\":true}",
                        fields, NULL);
        return;
    }
    if (!lock_bms(req))
        return;
    int rc = uart_bms_restart_bms(ub, RESTART_TIMEOUT_MS);
    pthread_mutex_unlock(&req->ws->bms_lock);
    GW_LOGI(MOD, "pack %d: BMS restart from the web (client %s): %s", pack, mg_get_request_info(req->conn)->remote_addr,
            gw_strerror(rc));
    if (rc == GW_ERR_BUSY) {
        web__send_error(req, 409, "restart_too_soon",
                        "the BMS was restarted less than 60 s ago: one restart a minute at most", NULL,
                        "Retry-After: 60\r\n");
        return;
    }
    if (rc == GW_ERR_NACK) {
        web__send_error(req, 502, "bms_refused", "the BMS refused the restart command (NACK)", NULL, NULL);
        return;
    }
    if (rc) {
        char msg[160];
        snprintf(msg, sizeof msg, "the restart was not confirmed by the BMS: %s", write_result_text(rc));
        web__send_error(req, 503, "bms_unreachable", msg, NULL, NULL);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", true);
    cJSON_AddNumberToObject(o, "pack", pack);
    cJSON_AddStringToObject(o, "message", "the BMS restarts: its data is back within a few seconds");
    web__send_json(req, 200, o);
}

/* ------------------------------------------------------------------ MQTT connection test */

static const char *mqtt_result_name(int rc)
{
    switch (rc) {
    case GW_OK: return "ok";
    case GW_ERR_INVAL: return "bad_settings";
    case GW_ERR_NOT_FOUND: return "dns";
    case GW_ERR_CLOSED: return "refused";
    case GW_ERR_AUTH: return "auth";
    case GW_ERR_TLS: return "tls";
    case GW_ERR_TIMEOUT: return "timeout";
    case GW_ERR_NACK: return "broker_refused";
    default: return "network";
    }
}

void web__h_test_mqtt(struct web_req *req)
{
    struct web_server *ws = req->ws;
    const cJSON *mqtt = req->json ? cJSON_GetObjectItemCaseSensitive(req->json, "mqtt") : NULL;
    if (mqtt && !cJSON_IsObject(mqtt)) {
        web__send_error(req, 400, "invalid_body", "send {\"mqtt\":{...the settings to test...}} or nothing",
                        web__one_field("mqtt", "must be an object"), NULL);
        return;
    }
    if (atomic_exchange(&ws->mqtt_test_running, true)) {
        web__send_error(req, 409, "busy", "an MQTT connection test is running already", NULL, "Retry-After: 10\r\n");
        return;
    }
    struct gw_config *cfg = malloc(sizeof *cfg);
    struct config_errors *errors = calloc(1, sizeof *errors);
    char *text = NULL;
    if (!cfg || !errors) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        goto out;
    }
    config_manager_get(ws->config, cfg);
    if (mqtt) {
        /* The edited section over the saved one ("********" keeps the saved password). */
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddItemToObject(doc, "mqtt", cJSON_Duplicate(mqtt, true));
        text = cJSON_PrintUnformatted(doc);
        cJSON_Delete(doc);
        if (!text) {
            web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
            goto out;
        }
        if (gw_config_from_json(text, strlen(text), cfg, errors) != GW_OK) {
            cJSON *fields = cJSON_CreateArray();
            for (uint32_t i = 0; i < errors->count; i++) {
                cJSON *f = cJSON_CreateObject();
                cJSON_AddStringToObject(f, "path", errors->items[i].path);
                cJSON_AddStringToObject(f, "reason", errors->items[i].message);
                cJSON_AddItemToArray(fields, f);
            }
            web__send_error(req, 400, "invalid_config", "these MQTT settings are refused: nothing was tried", fields,
                            NULL);
            goto out;
        }
    }
    if (!cfg->mqtt.broker_uri[0]) {
        web__send_error(req, 400, "invalid_config", "no broker to test",
                        web__one_field("mqtt.broker_uri", "must be mqtt://host:port or mqtts://host:port"), NULL);
        goto out;
    }
    char msg[256] = "";
    uint64_t t0 = gw_real_ms();
    int rc = mqtt_client_test_connection(&cfg->mqtt, MQTT_TEST_TIMEOUT_MS, msg, sizeof msg);
    uint64_t took = gw_real_ms() - t0;
    if (cfg->mqtt.password[0] && strstr(msg, cfg->mqtt.password))
        snprintf(msg, sizeof msg, "%s", gw_strerror(rc)); /* never echo a secret */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", rc == GW_OK);
    cJSON_AddStringToObject(o, "result", mqtt_result_name(rc));
    cJSON_AddStringToObject(o, "message", msg[0] ? msg : gw_strerror(rc));
    cJSON_AddStringToObject(o, "broker_uri", cfg->mqtt.broker_uri);
    cJSON_AddNumberToObject(o, "duration_ms", (double)took);
    GW_LOGI(MOD, "MQTT connection test to %s from the web: %s", cfg->mqtt.broker_uri, mqtt_result_name(rc));
    web__send_json(req, 200, o);
out:
    if (text) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    if (cfg)
        OPENSSL_cleanse(cfg, sizeof *cfg);
    free(cfg);
    free(errors);
    atomic_store(&ws->mqtt_test_running, false);
}
