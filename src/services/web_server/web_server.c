/* The server: CivetWeb set-up, the request gate (route, method, first-run, login, CSRF, body),
 * security headers, JSON errors and the static UI folder. */
#define _GNU_SOURCE
#include "web_server_internal.h"

#include "config_manager.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"

#include <civetweb.h>
#include <dlfcn.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Debian's CivetWeb starts its workers with a 100 KiB stack (its compile-time USE_STACK_SIZE)
 * and uses most of it itself, which leaves a request handler about 14 KiB: a configuration save
 * (validation, the log line) overflowed it. CivetWeb has no run-time option for it, so the
 * gateway's executable provides pthread_attr_setstacksize (the shared library resolves it here
 * first) and raises any request below WEB_MIN_THREAD_STACK to it before calling the C
 * library's. Sizes at or above it, and threads created without one, are untouched. */
#define WEB_MIN_THREAD_STACK (512u * 1024u)
int pthread_attr_setstacksize(pthread_attr_t *attr, size_t size)
{
    static int (*real)(pthread_attr_t *, size_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_attr_setstacksize");
    if (!real)
        return ENOSYS;
    return real(attr, size < WEB_MIN_THREAD_STACK ? WEB_MIN_THREAD_STACK : size);
}

#define HEADER_MAX_BYTES 16384   /* request line + headers (CivetWeb answers 413 above) */
#define HTTP_WORKERS 16          /* workers for plain requests, on top of one per WebSocket client */
#define KEEP_ALIVE_MS 2000
#define FILE_CHUNK 16384

#ifndef GW_WEB_SOURCE_DIR
#define GW_WEB_SOURCE_DIR ""
#endif

const char web__security_headers[] =
    "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n"
    "X-Frame-Options: DENY\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n";

/* ------------------------------------------------------------------ responses */

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static const char *status_code_name(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "timeout";
    case 409: return "conflict";
    case 411: return "length_required";
    case 413: return "payload_too_large";
    case 415: return "unsupported_media_type";
    case 426: return "upgrade_required";
    case 429: return "too_many_requests";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    case 503: return "unavailable";
    default: return status >= 500 ? "internal_error" : "error";
    }
}

static void count_status(struct web_server *ws, int status)
{
    if (!ws)
        return;
    if (status >= 500)
        atomic_fetch_add(&ws->n_5xx, 1);
    else if (status >= 400)
        atomic_fetch_add(&ws->n_4xx, 1);
}

/* CivetWeb 1.15 has no call that ends a connection after the answer, and a "Connection: close"
 * the handler writes is not seen by it: its keep-alive decision (should_keep_alive, after the
 * handler returns) reads the request's own Connection header. So an answer that says close makes
 * the request say it too, and the remaining bytes of a refused body are never parsed as a next
 * request. The request_info is the connection's memory (const only in the API); after the
 * handler nothing but that check and the access log reads the headers. */
static void close_after_answer(struct mg_connection *conn)
{
    struct mg_request_info *ri = (struct mg_request_info *)mg_get_request_info(conn);
    if (!ri)
        return;
    int at = ri->num_headers < MG_MAX_HEADERS ? ri->num_headers : MG_MAX_HEADERS - 1;
    for (int i = 0; i < ri->num_headers && i < MG_MAX_HEADERS; i++)
        if (ri->http_headers[i].name && strcasecmp(ri->http_headers[i].name, "Connection") == 0) {
            at = i;
            break;
        }
    ri->http_headers[at].name = "Connection";
    ri->http_headers[at].value = "close";
    if (at == ri->num_headers)
        ri->num_headers++;
}

static void send_raw(struct web_server *ws, struct mg_connection *conn, int status, const char *content_type,
                     const char *body, size_t len, const char *extra, bool api, bool head)
{
    if (extra && strcasestr(extra, "Connection: close"))
        close_after_answer(conn);
    char hdr[2048];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "%s%s%s\r\n",
                     status, status_text(status), content_type, len, web__security_headers,
                     api ? "Cache-Control: no-store\r\n" : "", extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof hdr) {
        GW_LOGE(MOD, "response header too long (%d bytes): answer dropped", n);
        return;
    }
    count_status(ws, status);
    if (mg_write(conn, hdr, (size_t)n) != n)
        return;
    if (!head && len > 0)
        mg_write(conn, body, len);
}

void web__send(struct web_req *req, int status, const char *content_type, const char *body, size_t len,
               const char *extra_headers, bool api)
{
    send_raw(req->ws, req->conn, status, content_type, body, len, extra_headers, api, req->head);
}

static char *error_text(int status, const char *code, const char *message, cJSON *fields)
{
    cJSON *doc = cJSON_CreateObject();
    if (!doc) {
        cJSON_Delete(fields);
        return NULL;
    }
    cJSON_AddStringToObject(doc, "error", code ? code : status_code_name(status));
    cJSON_AddNumberToObject(doc, "status", status);
    cJSON_AddStringToObject(doc, "message", message ? message : status_text(status));
    if (!fields)
        fields = cJSON_CreateArray();
    if (fields)
        cJSON_AddItemToObject(doc, "fields", fields);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return text;
}

void web__send_error(struct web_req *req, int status, const char *code, const char *message, cJSON *fields,
                     const char *extra_headers)
{
    char *text = error_text(status, code, message, fields);
    static const char fallback[] = "{\"error\":\"internal_error\",\"status\":500,\"message\":\"out of memory\",\"fields\":[]}";
    if (!text)
        web__send(req, 500, "application/json", fallback, sizeof fallback - 1, NULL, true);
    else
        web__send(req, status, "application/json", text, strlen(text), extra_headers, true);
    free(text);
}

void web__send_error_conn(struct web_server *ws, struct mg_connection *conn, int status, const char *code,
                          const char *message, const char *extra_headers)
{
    char *text = error_text(status, code, message, NULL);
    if (text)
        send_raw(ws, conn, status, "application/json", text, strlen(text), extra_headers, true, false);
    free(text);
}

void web__send_json(struct web_req *req, int status, cJSON *doc)
{
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text) {
        web__send_error(req, 500, "internal_error", "out of memory building the answer", NULL, NULL);
        return;
    }
    web__send(req, status, "application/json", text, strlen(text), NULL, true);
    free(text);
}

/* ------------------------------------------------------------------ login */

static struct gw_log_limit login_log_limit;

bool web__authorize(struct web_server *ws, struct mg_connection *conn, uint8_t access, char *user, size_t ucap,
                    struct web_req *req)
{
    user[0] = '\0';
    struct gw_config *cfg = malloc(sizeof *cfg);
    if (!cfg) {
        web__send_error_conn(ws, conn, 503, "unavailable", "out of memory", NULL);
        return false;
    }
    config_manager_get(ws->config, cfg);
    bool has_password = cfg->web.password_hash[0] != '\0';
    bool public_read = cfg->web.public_read;
    bool metrics_public = cfg->web.metrics_public;
    char username[sizeof cfg->web.username];
    memcpy(username, cfg->web.username, sizeof username);
    uint16_t max_attempts = cfg->web.auth_max_attempts;
    uint64_t lockout_ms = (uint64_t)cfg->web.auth_lockout_s * 1000u;
    OPENSSL_cleanse(cfg, sizeof *cfg);
    free(cfg);
    (void)req;

    if (access == WEB_PUBLIC)
        return true;
    if (!has_password) {
        web__send_error_conn(ws, conn, 401, "no_password",
                             "no web password is set yet: open the gateway's home page in a browser to set one, "
                             "or run 'tinybms-gw --set-password' on the gateway",
                             NULL);
        return false;
    }
    if ((access == WEB_READ || access == WEB_METRICS) && public_read)
        return true;
    if (access == WEB_METRICS && metrics_public)
        return true;

    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *addr = ri->remote_addr;
    const char *header = mg_get_header(conn, "Authorization");
    uint64_t now = gw_now_ms();
    pthread_mutex_lock(&ws->auth_lock);
    web_auth_limiter_configure(&ws->limiter, max_attempts, lockout_ms);
    uint32_t retry = web_auth_limiter_check(&ws->limiter, addr, now);
    bool cached = !retry && header && web_auth_cache_lookup(&ws->cache, header, strlen(header), now);
    uint64_t gen = ws->auth_gen; /* a password change meanwhile must not cache the old one */
    pthread_mutex_unlock(&ws->auth_lock);
    if (retry) {
        char extra[64], msg[160];
        snprintf(extra, sizeof extra, "Retry-After: %u\r\n", retry);
        snprintf(msg, sizeof msg, "too many failed logins from this address: try again in %u s", retry);
        web__send_error_conn(ws, conn, 429, "locked_out", msg, extra);
        return false;
    }
    static const char challenge[] = "WWW-Authenticate: Basic realm=\"tinybms-gw\", charset=\"UTF-8\"\r\n";
    if (!header) {
        web__send_error_conn(ws, conn, 401, "login_required", "log in as the web user (HTTP Basic)", challenge);
        return false;
    }
    char given_user[64], pass[CONFIG_WEB_PASSWORD_MAX + 2];
    int prc = web_auth_parse_basic(header, given_user, sizeof given_user, pass, sizeof pass);
    bool ok = false;
    if (prc == GW_OK) {
        if (cached && strcmp(given_user, username) == 0)
            ok = true;
        else
            ok = config_manager_verify_web_password(ws->config, given_user, pass);
    }
    OPENSSL_cleanse(pass, sizeof pass);
    now = gw_now_ms();
    pthread_mutex_lock(&ws->auth_lock);
    if (ok) {
        web_auth_limiter_succeeded(&ws->limiter, addr);
        if (!cached && gen == ws->auth_gen)
            web_auth_cache_store(&ws->cache, header, strlen(header), now);
    } else {
        retry = web_auth_limiter_failed(&ws->limiter, addr, now);
    }
    pthread_mutex_unlock(&ws->auth_lock);
    if (!ok) {
        /* Never the password, nor the user name typed (it may be a password typed in the wrong box). */
        if (retry)
            GW_LOGW(MOD, "login failures from %s: locked out for %u s", addr, retry);
        else
            gw_log_ratelimited(&login_log_limit, 10000, GW_LOG_WARN, MOD, "failed login from %s", addr);
        char msg[160];
        if (prc != GW_OK)
            snprintf(msg, sizeof msg, "malformed Authorization header (expected Basic base64(user:password))");
        else if (retry)
            snprintf(msg, sizeof msg, "wrong user name or password; this address is locked out for %u s", retry);
        else
            snprintf(msg, sizeof msg, "wrong user name or password");
        web__send_error_conn(ws, conn, 401, "login_failed", msg, challenge);
        return false;
    }
    snprintf(user, ucap, "%s", username);
    return true;
}

/* ------------------------------------------------------------------ static files */

static bool accepts_gzip(struct mg_connection *conn)
{
    const char *ae = mg_get_header(conn, "Accept-Encoding");
    return ae && strstr(ae, "gzip") != NULL;
}

static int open_file(const char *dir, const char *rel, struct stat *st)
{
    char full[GW_PATH_MAX * 2];
    int n = snprintf(full, sizeof full, "%s/%s", dir, rel);
    if (n < 0 || (size_t)n >= sizeof full)
        return -1;
    int fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -1;
    }
    return fd;
}

static void serve_static(struct web_req *req)
{
    struct web_server *ws = req->ws;
    if (!(req->method_bit & (WEB_GET | WEB_HEAD))) {
        web__send_error(req, 405, NULL, "only GET and HEAD are allowed on the UI files", NULL, "Allow: GET, HEAD\r\n");
        return;
    }
    char rel[GW_PATH_MAX];
    if (web_path_resolve(req->path, rel, sizeof rel - 4) != GW_OK) {
        GW_LOGD(MOD, "refused static path from %s", mg_get_request_info(req->conn)->remote_addr);
        web__send_error(req, 404, NULL, "no such file", NULL, NULL);
        return;
    }
    /* Before a password exists the home page is the first-run page. */
    if (strcmp(rel, "index.html") == 0 && !config_manager_has_web_password(ws->config))
        snprintf(rel, sizeof rel, "first-run.html");
    const char *mime = web_mime_type(rel);
    struct stat st;
    bool gz = false;
    int fd = -1;
    if (accepts_gzip(req->conn)) {
        char relgz[GW_PATH_MAX + 4];
        int n = snprintf(relgz, sizeof relgz, "%s.gz", rel);
        if (n > 0 && (size_t)n < sizeof relgz)
            fd = open_file(ws->ui_dir, relgz, &st);
        gz = fd >= 0;
    }
    if (fd < 0)
        fd = open_file(ws->ui_dir, rel, &st);
    if (fd < 0) {
        web__send_error(req, 404, NULL, "no such file", NULL, NULL);
        return;
    }
    char etag[64];
    snprintf(etag, sizeof etag, "\"%llx-%llx%s\"", (unsigned long long)st.st_mtime, (unsigned long long)st.st_size,
             gz ? "-gz" : "");
    const char *inm = mg_get_header(req->conn, "If-None-Match");
    char extra[256];
    snprintf(extra, sizeof extra, "Cache-Control: no-cache\r\nETag: %s\r\nVary: Accept-Encoding\r\n%s", etag,
             gz ? "Content-Encoding: gzip\r\n" : "");
    if (inm && strcmp(inm, etag) == 0) {
        close(fd);
        char hdr[1536];
        int n = snprintf(hdr, sizeof hdr, "HTTP/1.1 304 Not Modified\r\n%s%s\r\n", web__security_headers, extra);
        if (n > 0 && (size_t)n < sizeof hdr)
            mg_write(req->conn, hdr, (size_t)n);
        return;
    }
    char hdr[1536];
    int n = snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\n%s%s\r\n", mime,
                     (long long)st.st_size, web__security_headers, extra);
    if (n < 0 || (size_t)n >= sizeof hdr || mg_write(req->conn, hdr, (size_t)n) != n || req->head) {
        close(fd);
        return;
    }
    char *buf = malloc(FILE_CHUNK);
    off_t left = st.st_size;
    while (buf && left > 0) {
        ssize_t r = read(fd, buf, FILE_CHUNK);
        if (r <= 0)
            break; /* the length was promised: the client sees a short body and closes */
        if (mg_write(req->conn, buf, (size_t)r) != r)
            break;
        left -= r;
    }
    free(buf);
    close(fd);
}

/* ------------------------------------------------------------------ the gate */

static unsigned method_bit(const char *m)
{
    if (strcmp(m, "GET") == 0)
        return WEB_GET;
    if (strcmp(m, "HEAD") == 0)
        return WEB_HEAD;
    if (strcmp(m, "POST") == 0)
        return WEB_POST;
    if (strcmp(m, "PUT") == 0)
        return WEB_PUT;
    if (strcmp(m, "DELETE") == 0)
        return WEB_DELETE;
    return 0;
}

static void allow_header(unsigned methods, char *out, size_t cap)
{
    static const char *names[] = { "GET", "HEAD", "POST", "PUT", "DELETE" };
    size_t used = (size_t)snprintf(out, cap, "Allow: ");
    bool first = true;
    for (unsigned i = 0; i < 5; i++) {
        if (!(methods & (1u << i)))
            continue;
        used += (size_t)snprintf(out + used, cap - used, "%s%s", first ? "" : ", ", names[i]);
        first = false;
    }
    snprintf(out + used, cap - used, "\r\n");
}

/* NULL when the request's body framing is unambiguous, else why not (RFC 9112 6.3: a
 * Content-Length beside a Transfer-Encoding, several Content-Lengths that differ, one that is not
 * a plain number). CivetWeb picks one reading (the chunked one, the first length, the digits
 * before any garbage); a proxy in front may pick another, and the bytes one of them takes for a
 * body the other would take for a next request. */
static const char *body_framing_error(const struct mg_header *h, int n)
{
    const char *length = NULL;
    bool te = false;
    for (int i = 0; i < n && i < MG_MAX_HEADERS; i++) {
        if (!h[i].name || !h[i].value)
            continue;
        if (strcasecmp(h[i].name, "Transfer-Encoding") == 0) {
            te = true;
        } else if (strcasecmp(h[i].name, "Content-Length") == 0) {
            const char *v = h[i].value;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t digits = strspn(v, "0123456789");
            size_t rest = digits + strspn(v + digits, " \t");
            if (digits == 0 || v[rest] != '\0')
                return "the Content-Length is not a number";
            if (length && (strlen(length) != digits || strncmp(length, v, digits) != 0))
                return "two Content-Length headers that differ";
            length = v;
        }
    }
    if (te && length)
        return "both Content-Length and Transfer-Encoding: the body's length is ambiguous";
    return NULL;
}

/* Reads the body into req (bounded by route->body_max). Returns false after an error answer. */
static bool read_body(struct web_req *req, const struct web_route *route)
{
    const struct mg_request_info *ri = mg_get_request_info(req->conn);
    long long declared = ri->content_length;
    const char *te = mg_get_header(req->conn, "Transfer-Encoding");
    bool chunked = te && strcasestr(te, "chunked");
    bool has_body = declared > 0 || (declared < 0 && chunked);
    if (!has_body) {
        if (route->json_body && !route->empty_ok) {
            web__send_error(req, 400, "body_required", "this endpoint needs a JSON object in the body", NULL, NULL);
            return false;
        }
        return true;
    }
    if (route->json_body && !web_is_json_content_type(mg_get_header(req->conn, "Content-Type"))) {
        web__send_error(req, 415, NULL, "the body must be JSON (Content-Type: application/json)", NULL, NULL);
        return false;
    }
    char msg[128];
    if (declared > (long long)route->body_max) {
        snprintf(msg, sizeof msg, "the body is larger than this endpoint accepts (%u bytes)", route->body_max);
        web__send_error(req, 413, NULL, msg, NULL, "Connection: close\r\n");
        return false;
    }
    size_t cap = (size_t)route->body_max + 1;
    char *buf = malloc(cap + 1);
    if (!buf) {
        web__send_error(req, 503, NULL, "out of memory", NULL, NULL);
        return false;
    }
    size_t len = 0;
    while (len < cap) {
        int r = mg_read(req->conn, buf + len, cap - len);
        if (r < 0) {
            /* A chunked body whose framing is broken (or a lost connection): never act on it. */
            free(buf);
            web__send_error(req, 400, "bad_body_framing",
                            "the body's chunked framing is invalid (or the connection was lost)", NULL,
                            "Connection: close\r\n");
            return false;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > route->body_max) {
        free(buf);
        snprintf(msg, sizeof msg, "the body is larger than this endpoint accepts (%u bytes)", route->body_max);
        web__send_error(req, 413, NULL, msg, NULL, "Connection: close\r\n");
        return false;
    }
    if (declared > 0 && (long long)len < declared) {
        free(buf);
        web__send_error(req, 400, "incomplete_body", "the body ended before its Content-Length", NULL,
                        "Connection: close\r\n");
        return false;
    }
    buf[len] = '\0';
    req->body = buf;
    req->body_len = len;
    if (route->json_body && len > 0) {
        const char *end = NULL;
        req->json = cJSON_ParseWithLengthOpts(buf, len + 1, &end, 1); /* + its NUL */
        if (!req->json) {
            snprintf(msg, sizeof msg, "the body is not valid JSON (near byte %ld)", end ? (long)(end - buf) : 0L);
            web__send_error(req, 400, "bad_json", msg, NULL, NULL);
            return false;
        }
        if (!cJSON_IsObject(req->json)) {
            web__send_error(req, 400, "bad_json", "the body must be a JSON object", NULL, NULL);
            return false;
        }
    }
    return true;
}

int web__on_request(struct mg_connection *conn, void *cbdata)
{
    struct web_server *ws = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    struct web_req req = { .ws = ws, .conn = conn, .method = ri->request_method,
                           .path = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri, .query = ri->query_string };
    req.method_bit = method_bit(req.method);
    req.head = req.method_bit == WEB_HEAD;
    atomic_fetch_add(&ws->n_requests, 1);
    if (!req.path) {
        web__send_error(&req, 400, NULL, "no path", NULL, NULL);
        return 400;
    }
    if (ri->num_headers >= MG_MAX_HEADERS) {
        /* CivetWeb keeps the first 64 headers and drops the rest unseen: a Content-Length or
         * Transfer-Encoding among them would frame the body differently for us and for a proxy. */
        GW_LOGW(MOD, "request from %s refused: %d headers or more", ri->remote_addr, MG_MAX_HEADERS);
        web__send_error(&req, 431, "too_many_headers", "more than 63 header lines", NULL, "Connection: close\r\n");
        return 431;
    }
    const char *framing = body_framing_error(ri->http_headers, ri->num_headers);
    if (framing) {
        GW_LOGW(MOD, "request from %s refused: %s", ri->remote_addr, framing);
        web__send_error(&req, 400, "bad_body_framing", framing, NULL, "Connection: close\r\n");
        return 400;
    }
    const struct web_route *route = web__find_route(req.path);
    if (!route) {
        if (strncmp(req.path, "/api/", 5) == 0 || strcmp(req.path, "/api") == 0 || strncmp(req.path, "/ws/", 4) == 0) {
            web__send_error(&req, 404, NULL, "no such endpoint (see docs/web.md for the API)", NULL, NULL);
            return 404;
        }
        serve_static(&req);
        return 200;
    }
    if (!(route->methods & req.method_bit)) {
        char allow[96], msg[160];
        allow_header(route->methods, allow, sizeof allow);
        snprintf(msg, sizeof msg, "%s is not allowed on %s (%.*s)", req.method, route->path,
                 (int)(strlen(allow) - 9), allow + 7);
        web__send_error(&req, 405, NULL, msg, NULL, allow);
        return 405;
    }
    if (!web__authorize(ws, conn, route->access, req.user, sizeof req.user, &req))
        return 401;
    bool mutating = req.method_bit & (WEB_POST | WEB_PUT | WEB_DELETE);
    if (mutating && route->access != WEB_PUBLIC) {
        const char *token = mg_get_header(conn, "X-CSRF-Token");
        pthread_mutex_lock(&ws->auth_lock);
        int crc = web_csrf_check(&ws->csrf, req.user[0] ? req.user : "-", token, gw_now_ms());
        pthread_mutex_unlock(&ws->auth_lock);
        if (crc != GW_OK) {
            atomic_fetch_add(&ws->n_csrf, 1);
            const char *why = crc == GW_ERR_TIMEOUT ? "the X-CSRF-Token has expired: get a new one from GET /api/security/csrf"
                              : crc == GW_ERR_AUTH  ? "the X-CSRF-Token was not issued for this user by this gateway"
                                                    : "this request needs an X-CSRF-Token header (GET /api/security/csrf)";
            web__send_error(&req, 403, "csrf", why, NULL, NULL);
            return 403;
        }
    } else if (mutating) {
        /* Public writes (the first-run password): a browser on another site sends its Origin. */
        const char *origin = mg_get_header(conn, "Origin");
        const char *host = mg_get_header(conn, "Host");
        if (origin && (!host || !web_origin_matches_host(origin, host))) {
            web__send_error(&req, 403, "bad_origin", "cross-site request refused (Origin does not match Host)", NULL,
                            NULL);
            return 403;
        }
    }
    if (mutating && !route->no_body_read && !read_body(&req, route)) {
        free(req.body);
        cJSON_Delete(req.json);
        return 400;
    }
    route->handler(&req);
    if (req.body)
        OPENSSL_cleanse(req.body, req.body_len);
    free(req.body);
    cJSON_Delete(req.json);
    return 200;
}

/* ------------------------------------------------------------------ CivetWeb callbacks */

static int on_http_error(struct mg_connection *conn, int status, const char *errmsg)
{
    struct web_server *ws = mg_get_user_data(mg_get_context(conn));
    char msg[200];
    snprintf(msg, sizeof msg, "%s", errmsg && *errmsg ? errmsg : status_text(status));
    web__send_error_conn(ws, conn, status, status_code_name(status), msg,
                         status == 413 || status == 400 ? "Connection: close\r\n" : NULL);
    return 0;
}

static struct gw_log_limit civet_log_limit;

static int on_log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    gw_log_ratelimited(&civet_log_limit, 10000, GW_LOG_WARN, MOD, "civetweb: %s", message);
    return 1;
}

static void on_connection_close(const struct mg_connection *conn)
{
    struct web_server *ws = mg_get_user_data(mg_get_context(conn));
    if (ws)
        web__ws_connection_closed(ws, conn);
}

struct tls_files {
    const char *cert, *key;
};
static __thread const struct tls_files *tls_pending;

static void log_openssl(const char *what, const char *path)
{
    char buf[200];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    GW_LOGE(MOD, "HTTPS: %s %s refused: %s", what, path, e ? buf : "unknown OpenSSL error");
    ERR_clear_error();
}

/* Our certificate and key are two files; CivetWeb wants one: load them ourselves. */
static int on_init_ssl(void *ssl_ctx, void *user_data)
{
    (void)user_data;
    const struct tls_files *t = tls_pending;
    if (!t)
        return -1;
    SSL_CTX *ctx = ssl_ctx;
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
        log_openssl("certificate", t->cert);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL 3 compares the key with the certificate already here. */
        bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        log_openssl(mismatch ? "key (does not match the certificate)" : "key", t->key);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_openssl("key (does not match the certificate)", t->key);
        return -1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    return 1;
}

/* ------------------------------------------------------------------ life cycle */

/* CivetWeb loads OpenSSL itself: dlopen("libssl.so"), then dlsym of every function it calls, by
 * the OpenSSL 1.1 names in Debian 12's 1.15, among them SSL_get_peer_certificate, which OpenSSL 3
 * no longer exports (a macro for SSL_get1_peer_certificate now): it then calls a NULL pointer
 * after every TLS handshake.
 *
 * The missing function, with the same semantics (the peer's certificate, its reference taken for
 * the caller, who frees it). A symbol of the program is not found by a dlsym on libssl's handle,
 * so the program is linked with the DT_SONAME "libssl.so" and exports this one symbol
 * (CMakeLists.txt of this module: INTERFACE link options of gw_web_server): dlopen("libssl.so")
 * then returns the program itself, whose dlsym scope is the program and its dependencies
 * (libssl.so.3, libcrypto.so.3): every other function comes from OpenSSL as before. */
#if OPENSSL_VERSION_MAJOR >= 3
#undef SSL_get_peer_certificate
X509 *SSL_get_peer_certificate(const SSL *ssl);
X509 *SSL_get_peer_certificate(const SSL *ssl)
{
    return SSL_get1_peer_certificate(ssl);
}
#endif

/* The same lookup as CivetWeb's: HTTPS is refused with a reason instead of crashing at the
 * first client when the function cannot be found (a program linked without the options above,
 * e.g. a test). */
static bool civetweb_tls_usable(char *why, size_t cap)
{
    void *h = dlopen("libssl.so", RTLD_LAZY | RTLD_LOCAL);
    if (!h) {
        snprintf(why, cap, "libssl.so cannot be loaded (%s)", dlerror());
        return false;
    }
    bool old_names = dlsym(h, "SSL_get_peer_certificate") != NULL;
    dlclose(h);
    if (!old_names)
        snprintf(why, cap, "this system's CivetWeb %s was built for OpenSSL 1.1 and crashes on HTTPS with the "
                           "installed OpenSSL 3 (it calls SSL_get_peer_certificate, which OpenSSL 3 removed, and this "
                           "program was linked without the replacement); serve HTTPS through a reverse proxy in "
                           "front of the gateway (docs/web.md)",
                 mg_version());
    return old_names;
}

static void resolve_ui_dir(const char *opt, const char *configured, char *out, size_t cap)
{
    if (opt && *opt) {
        gw_text_copy(out, cap, opt);
        return;
    }
    if (configured && *configured) {
        gw_text_copy(out, cap, configured);
        return;
    }
    /* Installed: <prefix>/bin/tinybms-gw -> <prefix>/share/tinybms-gw/web. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char cand[PATH_MAX + 32];
            snprintf(cand, sizeof cand, "%s/../share/tinybms-gw/web", exe);
            struct stat st;
            if (stat(cand, &st) == 0 && S_ISDIR(st.st_mode)) {
                char *real = realpath(cand, NULL);
                int w = snprintf(out, cap, "%s", real ? real : cand);
                free(real);
                if (w >= 0 && (size_t)w < cap)
                    return; /* else too long for out: the source tree's folder below */
            }
        }
    }
    gw_text_copy(out, cap, GW_WEB_SOURCE_DIR);
}

int web_server_create(const struct web_server_options *opts, struct web_server **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!opts || !opts->bus || !opts->config)
        return GW_ERR_INVAL;
    struct gw_config *cfg = malloc(sizeof *cfg);
    struct web_server *ws = calloc(1, sizeof *ws);
    int rc = GW_ERR_NOMEM;
    bool lib = false, locks = false;
    if (!cfg || !ws)
        goto err;
    config_manager_get(opts->config, cfg);
    ws->bus = opts->bus;
    ws->config = opts->config;
    ws->battery = opts->battery;
    ws->alerts = opts->alerts;
    ws->history = opts->history;
    ws->bms_count = opts->bms && opts->bms_count ? (opts->bms_count < WEB_MAX_BMS ? opts->bms_count : WEB_MAX_BMS) : 0;
    for (unsigned i = 0; i < ws->bms_count; i++)
        ws->bms[i] = opts->bms[i];
    ws->can = opts->can;
    ws->ota = opts->ota;
    ws->monitoring = opts->monitoring;
    ws->net = opts->net;
    ws->restart = opts->restart;
    ws->restart_ctx = opts->restart_ctx;
    ws->port = cfg->web.http_port;
    ws->https = cfg->web.https_enabled;
    ws->ws_max = cfg->web.ws_max_clients;
    ws->ws_queue_len = cfg->web.ws_queue_len;
    ws->request_timeout_ms = cfg->web.request_timeout_ms;
    ws->started_ms = gw_now_ms();
    resolve_ui_dir(opts->ui_dir, cfg->web.ui_dir, ws->ui_dir, sizeof ws->ui_dir);

    unsigned char key[32];
    if (RAND_bytes(key, sizeof key) != 1) {
        rc = GW_ERR_IO;
        GW_LOGE(MOD, "no random bytes for the CSRF key");
        goto err;
    }
    web_csrf_init(&ws->csrf, key);
    if (RAND_bytes(key, sizeof key) != 1) {
        rc = GW_ERR_IO;
        goto err;
    }
    web_auth_cache_init(&ws->cache, key);
    OPENSSL_cleanse(key, sizeof key);
    web_auth_limiter_init(&ws->limiter, cfg->web.auth_max_attempts, (uint64_t)cfg->web.auth_lockout_s * 1000u);
    if (pthread_mutex_init(&ws->auth_lock, NULL) != 0)
        goto err;
    if (pthread_mutex_init(&ws->ws_lock, NULL) != 0) {
        pthread_mutex_destroy(&ws->auth_lock);
        goto err;
    }
    if (pthread_mutex_init(&ws->bms_lock, NULL) != 0) {
        pthread_mutex_destroy(&ws->auth_lock);
        pthread_mutex_destroy(&ws->ws_lock);
        goto err;
    }
    if (pthread_mutex_init(&ws->tap_lock, NULL) != 0) {
        pthread_mutex_destroy(&ws->auth_lock);
        pthread_mutex_destroy(&ws->ws_lock);
        pthread_mutex_destroy(&ws->bms_lock);
        goto err;
    }
    if (pthread_mutex_init(&ws->view_lock, NULL) != 0) {
        pthread_mutex_destroy(&ws->auth_lock);
        pthread_mutex_destroy(&ws->ws_lock);
        pthread_mutex_destroy(&ws->bms_lock);
        pthread_mutex_destroy(&ws->tap_lock);
        goto err;
    }
    locks = true;

    const char *addr = cfg->web.bind_address;
    bool v6 = strchr(addr, ':') != NULL;
    mg_init_library(ws->https ? MG_FEATURES_TLS : 0);
    lib = true;
    if (v6 && !mg_check_feature(MG_FEATURES_IPV6)) {
        GW_LOGE(MOD, "web.bind_address %s is IPv6, but this CivetWeb library was built without IPv6: use an IPv4 "
                     "address (0.0.0.0 for every interface)",
                addr);
        rc = GW_ERR_UNSUPPORTED;
        goto err;
    }
    if (ws->https && !mg_check_feature(MG_FEATURES_TLS)) {
        GW_LOGE(MOD, "HTTPS is configured but this CivetWeb library has no TLS");
        rc = GW_ERR_UNSUPPORTED;
        goto err;
    }
    char why[320];
    if (ws->https && !civetweb_tls_usable(why, sizeof why)) {
        GW_LOGE(MOD, "HTTPS refused: %s", why);
        rc = GW_ERR_UNSUPPORTED;
        goto err;
    }
    struct stat st;
    if (stat(ws->ui_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        GW_LOGW(MOD, "UI folder %s missing: the API works, the pages answer 404 (set web.ui_dir)", ws->ui_dir);

    char ports[128], threads[16], timeout[16], ws_timeout[16], header_max[16], keep_alive[16];
    snprintf(ports, sizeof ports, v6 ? "[%s]:%u%s" : "%s:%u%s", addr, cfg->web.http_port, ws->https ? "s" : "");
    snprintf(threads, sizeof threads, "%u", ws->ws_max + HTTP_WORKERS);
    snprintf(timeout, sizeof timeout, "%u", ws->request_timeout_ms);
    snprintf(ws_timeout, sizeof ws_timeout, "%u", ws->request_timeout_ms);
    snprintf(header_max, sizeof header_max, "%u", HEADER_MAX_BYTES);
    snprintf(keep_alive, sizeof keep_alive, "%u", KEEP_ALIVE_MS);
    const char *options[] = {
        "listening_ports", ports,
        "num_threads", threads,
        "request_timeout_ms", timeout,
        "websocket_timeout_ms", ws_timeout,
        "enable_websocket_ping_pong", "yes",
        "enable_keep_alive", "yes",
        "tcp_nodelay", "1", /* header and body leave at once: no 40 ms Nagle/delayed-ACK stall */
        "keep_alive_timeout_ms", keep_alive,
        "max_request_size", header_max,
        "enable_directory_listing", "no",
        "access_control_allow_origin", "",
        "access_control_allow_methods", "",
        "access_control_allow_headers", "",
        "decode_url", "yes",
        NULL, NULL,
    };
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.http_error = on_http_error;
    cb.log_message = on_log_message;
    cb.connection_close = on_connection_close;
    struct tls_files tls = { cfg->web.cert_file, cfg->web.key_file };
    if (ws->https) {
        cb.init_ssl = on_init_ssl;
        tls_pending = &tls;
    }
    struct mg_init_data init = { .callbacks = &cb, .user_data = ws, .configuration_options = options };
    char errtext[256] = "";
    struct mg_error_data err = { .text = errtext, .text_buffer_size = sizeof errtext };
    ws->ctx = mg_start2(&init, &err);
    tls_pending = NULL;
    if (!ws->ctx) {
        GW_LOGE(MOD, v6 ? "cannot serve %s://[%s]:%u: %s" : "cannot serve %s://%s:%u: %s", ws->https ? "https" : "http",
                addr, cfg->web.http_port, errtext[0] ? errtext : "unknown CivetWeb error");
        rc = ws->https && strstr(errtext, "SSL") ? GW_ERR_TLS : GW_ERR_IO;
        goto err;
    }
    mg_set_request_handler(ws->ctx, "/", web__on_request, ws);
    rc = web__ws_start(ws);
    if (rc) {
        GW_LOGE(MOD, "cannot subscribe the WebSocket channels: %s", gw_strerror(rc));
        goto err;
    }
    GW_LOGI(MOD, "serving %s://%s:%u/ (UI from %s)%s", ws->https ? "https" : "http", v6 ? addr : addr,
            cfg->web.http_port, ws->ui_dir,
            cfg->web.password_hash[0] ? "" : "; no web password yet: open the page to set one");
    OPENSSL_cleanse(cfg, sizeof *cfg);
    free(cfg);
    *out = ws;
    return GW_OK;
err:
    if (ws && ws->ctx) {
        web__ws_stop(ws);
        mg_stop(ws->ctx);
    }
    if (lib)
        mg_exit_library();
    if (ws) {
        free(ws->uart_tap_buf);
        free(ws->can_tap_buf);
    }
    if (ws && locks) {
        pthread_mutex_destroy(&ws->auth_lock);
        pthread_mutex_destroy(&ws->ws_lock);
        pthread_mutex_destroy(&ws->bms_lock);
        pthread_mutex_destroy(&ws->tap_lock);
        pthread_mutex_destroy(&ws->view_lock);
    }
    if (ws)
        free(ws->view_text);
    if (cfg)
        OPENSSL_cleanse(cfg, sizeof *cfg);
    free(cfg);
    free(ws);
    return rc;
}

void web_server_destroy(struct web_server *ws)
{
    if (!ws)
        return;
    web__ws_stop(ws);
    mg_stop(ws->ctx);
    mg_exit_library();
    free(ws->uart_tap_buf);
    free(ws->can_tap_buf);
    pthread_mutex_destroy(&ws->auth_lock);
    pthread_mutex_destroy(&ws->ws_lock);
    pthread_mutex_destroy(&ws->bms_lock);
    pthread_mutex_destroy(&ws->tap_lock);
    pthread_mutex_destroy(&ws->view_lock);
    free(ws->view_text);
    OPENSSL_cleanse(ws, sizeof *ws);
    free(ws);
}

int web_server_port(const struct web_server *ws)
{
    return ws ? ws->port : 0;
}

void web_server_get_stats(struct web_server *ws, struct web_server_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!ws)
        return;
    out->requests = atomic_load(&ws->n_requests);
    out->errors_4xx = atomic_load(&ws->n_4xx);
    out->errors_5xx = atomic_load(&ws->n_5xx);
    out->csrf_refused = atomic_load(&ws->n_csrf);
    out->ws_dropped = atomic_load(&ws->n_ws_dropped);
    out->ws_refused_full = atomic_load(&ws->n_ws_full);
    out->ws_messages = atomic_load(&ws->n_ws_messages);
    out->ws_clients = web__ws_client_count(ws);
    pthread_mutex_lock(&ws->auth_lock);
    out->login_failures = ws->limiter.failures_total;
    out->lockouts = ws->limiter.lockouts_total;
    pthread_mutex_unlock(&ws->auth_lock);
}
