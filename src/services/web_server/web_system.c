/* The gateway's own endpoints: the signed update upload and its status (the OTA service), the
 * metrics (the monitoring service, Prometheus text and JSON). Every refusal is a JSON error with
 * its reason, logged once here. */
#define _GNU_SOURCE /* strcasestr */
#include "web_server_internal.h"

#include "gw_error.h"
#include "gw_log.h"
#include "monitoring.h"
#include "ota_update.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


/* Body bytes beyond the bundle itself: the signature (at most 4 KiB), the small fields and the
 * multipart framing. */
#define UPLOAD_OVERHEAD (64u * 1024u)
#define UPLOAD_SIG_MAX 4096u
#define UPLOAD_CHUNK (64u * 1024u)
/* A refused upload still reads (and drops) what the client sends, so that the browser sees the
 * answer instead of a reset connection; at most this much. */
#define UPLOAD_DRAIN_MAX (64ull * 1024 * 1024)

enum upload_part { PART_NONE, PART_SIGNATURE, PART_FIRMWARE, PART_FORCE };

struct upload {
    struct web_req *req;
    struct ota_update *ota;
    struct ota_session *s;
    enum upload_part cur;
    bool have_sig, have_fw, have_force, sig_set;
    unsigned flags;
    uint8_t sig[UPLOAD_SIG_MAX];
    size_t sig_len;
    char force[8];
    size_t force_len;
    char filename[WEB_MP_FILENAME_MAX];
    uint64_t fw_bytes;
    uint64_t declared;         /* the body's Content-Length (0: chunked), the progress's total */
    int ota_rc;                /* the OTA service refused (its result at finish) */
    int status;                /* a refusal decided here (0: none) */
    char code[32];
    char msg[256];
};

#define STOP GW_ERR_STATE /* a callback's "stop here" (the reason is in the upload) */

__attribute__((format(printf, 4, 5))) static int refuse(struct upload *u, int status, const char *code,
                                                       const char *fmt, ...)
{
    if (!u->status) {
        u->status = status;
        snprintf(u->code, sizeof u->code, "%s", code);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(u->msg, sizeof u->msg, fmt, ap);
        va_end(ap);
    }
    return STOP;
}

static int begin_session(struct upload *u)
{
    int rc = ota_update_begin(u->ota, u->have_sig ? u->sig : NULL, u->have_sig ? u->sig_len : 0, u->flags, &u->s);
    if (rc == GW_ERR_BUSY)
        return refuse(u, 409, "busy",
                      "another update is being received, or the release just installed is still on trial: try "
                      "again once it is kept (GET /api/ota/status)");
    if (rc)
        return refuse(u, 503, "unavailable", "the update could not be started: %s", gw_strerror(rc));
    u->sig_set = u->have_sig;
    ota_update_set_total(u->s, u->declared);
    return GW_OK;
}

static int on_part_begin(void *ctx, const char *name, const char *filename)
{
    struct upload *u = ctx;
    if (strcmp(name, "signature") == 0) {
        if (u->have_sig)
            return refuse(u, 400, "bad_multipart", "two 'signature' parts");
        u->cur = PART_SIGNATURE;
        u->sig_len = 0;
    } else if (strcmp(name, "firmware") == 0) {
        if (u->have_fw)
            return refuse(u, 400, "bad_multipart", "two 'firmware' parts");
        u->have_fw = true;
        u->cur = PART_FIRMWARE;
        snprintf(u->filename, sizeof u->filename, "%s", filename);
        return begin_session(u);
    } else if (strcmp(name, "force") == 0) {
        if (u->have_fw)
            return refuse(u, 400, "bad_multipart", "the 'force' part must come before 'firmware'");
        u->cur = PART_FORCE;
        u->force_len = 0;
    } else {
        return refuse(u, 400, "bad_multipart",
                      "unknown part '%s': send 'firmware' (the bundle), 'signature' (its .sig file) and "
                      "optionally 'force'",
                      name);
    }
    return GW_OK;
}

static int on_part_data(void *ctx, const uint8_t *data, size_t len)
{
    struct upload *u = ctx;
    switch (u->cur) {
    case PART_SIGNATURE:
        if (len > sizeof u->sig - u->sig_len)
            return refuse(u, 400, "bad_signature", "the signature part is larger than 4 KiB: not a signature file");
        memcpy(u->sig + u->sig_len, data, len);
        u->sig_len += len;
        return GW_OK;
    case PART_FIRMWARE: {
        u->fw_bytes += len;
        int rc = ota_update_write(u->s, data, len);
        if (rc) {
            u->ota_rc = rc;
            return STOP;
        }
        return GW_OK;
    }
    case PART_FORCE:
        if (len > sizeof u->force - 1 - u->force_len)
            return refuse(u, 400, "bad_multipart", "'force' must be true or false");
        memcpy(u->force + u->force_len, data, len);
        u->force_len += len;
        u->force[u->force_len] = '\0';
        return GW_OK;
    default:
        return GW_OK;
    }
}

static int on_part_end(void *ctx)
{
    struct upload *u = ctx;
    enum upload_part p = u->cur;
    u->cur = PART_NONE;
    if (p == PART_SIGNATURE) {
        if (!u->sig_len)
            return refuse(u, 400, "bad_signature", "the 'signature' part is empty");
        u->have_sig = true;
        if (u->s && !u->sig_set) {
            int rc = ota_update_set_signature(u->s, u->sig, u->sig_len);
            if (rc == GW_ERR_STATE) { /* the bundle was refused already: finish gives why */
                u->ota_rc = rc;
                return STOP;
            }
            if (rc)
                return refuse(u, 400, "bad_signature", "the signature was refused: %s", gw_strerror(rc));
            u->sig_set = true;
        }
    } else if (p == PART_FORCE) {
        u->have_force = true;
        if (!strcasecmp(u->force, "1") || !strcasecmp(u->force, "true") || !strcasecmp(u->force, "on"))
            u->flags |= OTA_INSTALL_FORCE;
        else if (strcmp(u->force, "") && strcmp(u->force, "0") && strcasecmp(u->force, "false") &&
                 strcasecmp(u->force, "off"))
            return refuse(u, 400, "bad_multipart", "'force' must be true or false, not '%s'", u->force);
    }
    return GW_OK;
}

static const struct web_multipart_ops upload_ops = { on_part_begin, on_part_data, on_part_end };

static const char *result_code(int status)
{
    switch (status) {
    case 400: return "bad_bundle";
    case 403: return "bad_signature";
    case 409: return "conflict";
    case 413: return "too_large";
    case 422: return "incompatible";
    case 507: return "disk_full";
    default: return "update_failed";
    }
}

/* Reads and drops the rest of a refused body (at most UPLOAD_DRAIN_MAX), so that the client
 * reads the answer; false when it is too long to drain (the answer then closes the connection). */
static bool drain(struct mg_connection *conn, char *buf, long long declared, uint64_t got)
{
    if (declared < 0 || (uint64_t)declared - got > UPLOAD_DRAIN_MAX)
        return false;
    while (got < (uint64_t)declared) {
        int r = mg_read(conn, buf, UPLOAD_CHUNK);
        if (r <= 0)
            return false;
        got += (uint64_t)r;
    }
    return true;
}

void web__h_ota_upload(struct web_req *req)
{
    struct web_server *ws = req->ws;
    const char *addr = mg_get_request_info(req->conn)->remote_addr;
    if (!ws->ota) {
        web__send_error(req, 503, "unavailable", "updates are not available on this gateway (see its log)", NULL,
                        "Connection: close\r\n");
        return;
    }
    const struct mg_request_info *ri = mg_get_request_info(req->conn);
    long long declared = ri->content_length;
    const char *te = mg_get_header(req->conn, "Transfer-Encoding");
    bool chunked = te && strcasestr(te, "chunked");
    uint64_t max = ota_update_max_bundle_bytes(ws->ota) + UPLOAD_OVERHEAD;
    char boundary[WEB_MP_BOUNDARY_MAX + 1];
    const char *ctype = mg_get_header(req->conn, "Content-Type");
    if (declared <= 0 && !chunked) {
        web__send_error(req, 400, "body_required",
                        "send the bundle and its signature as multipart/form-data: parts 'firmware' (the .tar) and "
                        "'signature' (its .sig file)",
                        NULL, NULL);
        return;
    }
    if (!ctype || strncasecmp(ctype, "multipart/form-data", 19) != 0) {
        GW_LOGW(MOD, "update upload from %s refused: Content-Type %.60s", addr, ctype ? ctype : "(none)");
        web__send_error(req, 415, NULL,
                        "the body must be multipart/form-data (parts 'firmware' and 'signature'), as a browser's "
                        "form or curl -F sends it",
                        NULL, "Connection: close\r\n");
        return;
    }
    if (web_multipart_boundary(ctype, boundary, sizeof boundary) != GW_OK) {
        GW_LOGW(MOD, "update upload from %s refused: no usable boundary in its Content-Type", addr);
        web__send_error(req, 400, "bad_multipart", "the Content-Type has no valid multipart boundary", NULL,
                        "Connection: close\r\n");
        return;
    }
    char msg[320];
    if (declared > 0 && (uint64_t)declared > max) {
        snprintf(msg, sizeof msg, "the upload is %lld bytes; at most %llu are accepted (a bundle of %llu MiB)",
                 declared, (unsigned long long)max, (unsigned long long)(ota_update_max_bundle_bytes(ws->ota) >> 20));
        GW_LOGW(MOD, "update upload from %s refused: %s", addr, msg);
        web__send_error(req, 413, "too_large", msg, NULL, "Connection: close\r\n");
        return;
    }
    struct upload *u = calloc(1, sizeof *u);
    struct web_multipart *mp = calloc(1, sizeof *mp);
    char *buf = malloc(UPLOAD_CHUNK);
    if (!u || !mp || !buf) {
        free(u);
        free(mp);
        free(buf);
        web__send_error(req, 503, NULL, "out of memory", NULL, "Connection: close\r\n");
        return;
    }
    u->req = req;
    u->ota = ws->ota;
    u->declared = declared > 0 ? (uint64_t)declared : 0;
    /* The restart comes after the answer (below), not from inside the install. */
    u->flags = ws->restart ? OTA_INSTALL_NO_RESTART : 0;
    web_multipart_init(mp, boundary);
    GW_LOGI(MOD, "update upload from %s (%lld bytes)", addr, declared);
    uint64_t got = 0;
    int rc = GW_OK;
    bool too_large = false, cut = false;
    for (;;) {
        int r = mg_read(req->conn, buf, UPLOAD_CHUNK);
        if (r < 0) {
            cut = true;
            break;
        }
        if (r == 0)
            break;
        got += (uint64_t)r;
        if (got > max) {
            too_large = true;
            break;
        }
        rc = web_multipart_feed(mp, buf, (size_t)r, &upload_ops, u);
        if (rc)
            break;
    }
    if (!rc && !too_large && declared > 0 && got < (uint64_t)declared)
        cut = true;
    if (!rc && !too_large && !cut) {
        rc = web_multipart_finish(mp);
        if (!rc && !u->have_fw)
            rc = refuse(u, 400, "bad_multipart", "no 'firmware' part: the bundle (.tar) is missing");
        else if (!rc && !u->have_sig)
            rc = refuse(u, 400, "bad_signature",
                        "no 'signature' part: the bundle's signature file (BUNDLE.sig) is missing");
    }

    struct ota_result res = { 0 };
    int status;
    char code[32];
    const char *extra = NULL;
    bool decided_here = too_large || cut || u->status || (rc && !u->ota_rc);
    if (decided_here) {
        ota_update_abort(u->s);
        u->s = NULL;
        if (too_large) {
            status = 413;
            snprintf(code, sizeof code, "too_large");
            snprintf(msg, sizeof msg, "the upload is larger than the %llu bytes accepted", (unsigned long long)max);
            extra = "Connection: close\r\n";
        } else if (cut) {
            status = 400;
            snprintf(code, sizeof code, "incomplete_body");
            snprintf(msg, sizeof msg, "the upload ended after %llu bytes, before its end (connection lost?)",
                     (unsigned long long)got);
            extra = "Connection: close\r\n";
        } else if (u->status) {
            status = u->status;
            snprintf(code, sizeof code, "%s", u->code);
            snprintf(msg, sizeof msg, "%s", u->msg);
        } else {
            status = 400;
            snprintf(code, sizeof code, "bad_multipart");
            snprintf(msg, sizeof msg, "the body is not valid multipart/form-data: %s", mp->reason);
        }
    } else {
        /* Every part read (or the OTA service refused a chunk): its checks and the switch. */
        ota_update_finish(u->s, &res);
        u->s = NULL;
        status = res.http_status ? res.http_status : 500;
        snprintf(code, sizeof code, "%s", result_code(status));
        snprintf(msg, sizeof msg, "%s", res.reason[0] ? res.reason : gw_strerror(res.error));
    }
    if (status != 200 && !extra && !drain(req->conn, buf, declared, got))
        extra = "Connection: close\r\n";
    if (status == 200) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", true);
        cJSON_AddStringToObject(o, "version", res.version);
        cJSON_AddStringToObject(o, "key_id", res.key_id);
        cJSON_AddNumberToObject(o, "bytes", (double)res.bytes);
        cJSON_AddNumberToObject(o, "verify_ms", (double)res.verify_ms);
        cJSON_AddBoolToObject(o, "forced", (u->flags & OTA_INSTALL_FORCE) != 0);
        cJSON_AddBoolToObject(o, "restarting", true);
        cJSON_AddStringToObject(o, "message", res.reason);
        GW_LOGI(MOD, "update upload from %s: version %s installed (%s, %llu bytes); the gateway restarts into it",
                addr, res.version, u->filename[0] ? u->filename : "no file name", (unsigned long long)res.bytes);
        web__send_json(req, 200, o);
        if (ws->restart && !atomic_exchange(&ws->restart_requested, true)) {
            web__ws_event(ws, "restart", NULL);
            web__ws_drain(ws, WS_EVENTS, 2000);
            ws->restart(ws->restart_ctx);
        }
    } else {
        if (decided_here)
            GW_LOGW(MOD, "update upload from %s refused (%d %s): %s", addr, status, code, msg);
        else /* the update service logged why */
            GW_LOGI(MOD, "update upload from %s refused (%d %s)", addr, status, code);
        web__send_error(req, status, code, msg, NULL, extra);
    }
    free(buf);
    free(mp);
    free(u);
}

/* POST /api/ota/rollback: back to the previous release (the same path as `tinybms-gw --rollback`),
 * then the restart after the answer, as after an upload. */
void web__h_ota_rollback(struct web_req *req)
{
    struct web_server *ws = req->ws;
    const char *addr = mg_get_request_info(req->conn)->remote_addr;
    if (!ws->ota) {
        web__send_error(req, 503, "unavailable", "updates are not available on this gateway (see its log)", NULL, NULL);
        return;
    }
    struct ota_result res;
    char who[64];
    snprintf(who, sizeof who, "web, client %s", addr);
    int rc = ota_update_rollback(ws->ota, who, ws->restart ? OTA_INSTALL_NO_RESTART : 0, &res);
    if (rc) {
        const char *code = rc == GW_ERR_NOT_FOUND ? "no_previous_release" : rc == GW_ERR_BUSY ? "busy" : "rollback_failed";
        GW_LOGW(MOD, "rollback from %s refused: %s", addr, res.reason);
        web__send_error(req, res.http_status ? res.http_status : 500, code, res.reason[0] ? res.reason : gw_strerror(rc),
                        NULL, NULL);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", true);
    cJSON_AddStringToObject(o, "version", res.version);
    cJSON_AddBoolToObject(o, "restarting", true);
    cJSON_AddStringToObject(o, "message", res.reason);
    GW_LOGI(MOD, "rollback from %s: %s", addr, res.reason);
    web__send_json(req, 200, o);
    if (ws->restart && !atomic_exchange(&ws->restart_requested, true)) {
        web__ws_event(ws, "restart", NULL);
        web__ws_drain(ws, WS_EVENTS, 2000);
        ws->restart(ws->restart_ctx);
    }
}

/* GET /api/ota/status: the document of `tinybms-gw --update-status`. */
void web__h_ota_status(struct web_req *req)
{
    if (!req->ws->ota) {
        web__send_error(req, 503, "unavailable", "updates are not available on this gateway (see its log)", NULL, NULL);
        return;
    }
    char *json = NULL;
    int rc = ota_update_status_json(req->ws->ota, &json);
    if (rc) {
        web__send_error(req, 500, NULL, gw_strerror(rc), NULL, NULL);
        return;
    }
    web__send(req, 200, "application/json", json, strlen(json), NULL, true);
    free(json);
}

/* GET /metrics: the newest snapshot in the Prometheus text format. */
void web__h_metrics_prometheus(struct web_req *req)
{
    if (!req->ws->monitoring) {
        web__send_error(req, 503, "unavailable", "monitoring is not running on this gateway (see its log)", NULL,
                        NULL);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = monitoring_render_prometheus_alloc(req->ws->monitoring, &text, &len);
    if (rc) {
        web__send_error(req, rc == GW_ERR_NOMEM ? 503 : 500, NULL, gw_strerror(rc), NULL, NULL);
        return;
    }
    web__send(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL, true);
    free(text);
}

/* GET /api/metrics: the same figures as JSON. */
void web__h_metrics_json(struct web_req *req)
{
    if (!req->ws->monitoring) {
        web__send_error(req, 503, "unavailable", "monitoring is not running on this gateway (see its log)", NULL,
                        NULL);
        return;
    }
    char *json = NULL;
    int rc = monitoring_get_system_metrics_json_alloc(req->ws->monitoring, &json);
    if (rc) {
        web__send_error(req, rc == GW_ERR_NOMEM ? 503 : 500, NULL, gw_strerror(rc), NULL, NULL);
        return;
    }
    web__send(req, 200, "application/json", json, strlen(json), NULL, true);
    free(json);
}
