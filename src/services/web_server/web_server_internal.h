/* Private to web_server: the server state shared by its files (web_server.c: CivetWeb, the
 * request gate, static files; web_api.c: the REST endpoints and the route table; web_bms.c: the
 * BMS settings, restart and the MQTT connection test; web_ws.c: the WebSocket channels and the
 * frame taps). */
#ifndef WEB_SERVER_INTERNAL_H
#define WEB_SERVER_INTERNAL_H

#include "gw_config.h"
#include "web_internal.h"
#include "web_server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mg_connection;
struct mg_context;
struct cJSON;
struct ws_client;
struct uart_bms_tap_entry;
struct can_tap_entry;

/* Who may call an endpoint. */
enum web_access {
    WEB_PUBLIC = 0, /* always, even before a password exists (the UI files, the first-run call) */
    WEB_READ = 1,   /* read-only: login required unless web.public_read */
    WEB_ADMIN = 2,  /* login always */
    WEB_METRICS = 3, /* GET /metrics: login unless web.metrics_public or web.public_read */
};

enum web_method { WEB_GET = 1u << 0, WEB_HEAD = 1u << 1, WEB_POST = 1u << 2, WEB_PUT = 1u << 3, WEB_DELETE = 1u << 4 };

enum ws_channel { WS_LIVE = 0, WS_ALERTS = 1, WS_EVENTS = 2, WS_UART = 3, WS_CAN = 4, WS_CHANNELS = 5 };

struct web_server {
    struct mg_context *ctx;
    struct event_bus *bus;
    struct config_manager *config;
    struct battery_service *battery;
    struct alert_manager *alerts;
    struct history_logger *history;
    struct uart_bms *bms[WEB_MAX_BMS];
    unsigned bms_count;
    struct can_publisher *can;
    struct ota_update *ota;
    struct monitoring *monitoring;
    struct net_link *net;
    void (*restart)(void *ctx);
    void *restart_ctx;
    atomic_bool restart_requested;
    char ui_dir[GW_PATH_MAX];
    int port;
    bool https;
    uint64_t started_ms;
    uint32_t request_timeout_ms;

    /* Login limiter, credential cache, CSRF key (auth_lock). */
    pthread_mutex_t auth_lock;
    struct web_auth_limiter limiter;
    struct web_auth_cache cache;
    struct web_csrf csrf;
    uint64_t auth_gen;        /* +1 at each cache clear (credentials changed) */

    /* WebSocket clients (ws_lock). */
    pthread_mutex_t ws_lock;
    struct ws_client *clients;
    unsigned ws_count;
    unsigned ws_channel_count[WS_CHANNELS];
    unsigned ws_max;
    unsigned ws_queue_len;
    bool ws_stopping;
    bool subscribed;
    struct web_ws_chan {
        struct web_server *ws;
        enum ws_channel ch;
    } ws_chan[WS_CHANNELS];

    /* The text of the newest view's whole document (view_lock). */
    pthread_mutex_t view_lock;
    char *view_text;
    size_t view_len;
    uint64_t view_seq;
    int64_t view_wall_ms;

    /* One BMS command sequence (settings write, restore, restart) at a time (bms_lock, tried). */
    pthread_mutex_t bms_lock;
    atomic_bool mqtt_test_running;

    /* Frame taps: each tap client's position (struct ws_client) and the read buffers. */
    pthread_mutex_t tap_lock;
    struct uart_bms_tap_entry *uart_tap_buf; /* scratch of the tap reads (tap_lock) */
    struct can_tap_entry *can_tap_buf;

    atomic_uint_fast64_t n_requests, n_4xx, n_5xx, n_csrf, n_ws_dropped, n_ws_full, n_ws_messages;
};

/* One HTTP request being answered (a worker thread's stack). */
struct web_req {
    struct web_server *ws;
    struct mg_connection *conn;
    const char *method;
    unsigned method_bit;      /* enum web_method, 0 for others */
    const char *path;         /* decoded once, no query */
    const char *query;        /* raw query string or NULL */
    char user[32];            /* logged-in user ("" when none) */
    char *body;               /* NUL-terminated, malloc'ed (NULL when none) */
    size_t body_len;
    struct cJSON *json;       /* parsed body when the route takes JSON (NULL otherwise) */
    bool head;                /* HEAD: headers only */
};

typedef void (*web_handler_fn)(struct web_req *req);

struct web_route {
    const char *path;
    unsigned methods;         /* enum web_method bits */
    uint8_t access;           /* enum web_access */
    uint32_t body_max;        /* bytes; 0: no body accepted */
    bool json_body;           /* POST body must be application/json (an empty body is allowed
                                 when empty_ok) */
    bool empty_ok;
    bool no_body_read;        /* the handler answers without reading the body (501 upload) */
    web_handler_fn handler;
};

/* web_server.c: CivetWeb's request handler for every path (cbdata: the struct web_server): the
 * gate (route, method, login, CSRF or Origin, body) then the endpoint or a static file. Reads the
 * request through mg_get_request_info / mg_get_header / mg_read and answers with mg_write /
 * mg_send_chunk only, so tests/fuzz/fuzz_http.c can call it with a connection of its own. */
int web__on_request(struct mg_connection *conn, void *cbdata);

/* web_api.c: the route of path (exact match), or NULL. */
const struct web_route *web__find_route(const char *path);

/* web_api.c, request helpers shared by the handlers. */
/* Query parameter name into buf: 1 found, 0 absent, -1 too long. */
int web__query_param(const struct web_req *req, const char *name, char *buf, size_t cap);
/* [{"path":path,"reason":reason}] (a new array). */
struct cJSON *web__one_field(const char *path, const char *reason);
/* 400 bad_parameter naming the parameter. */
void web__bad_param(struct web_req *req, const char *name, const char *reason);

/* web_bms.c: the handlers of /api/bms/... and /api/config/test-mqtt. */
void web__h_bms_settings(struct web_req *req);
void web__h_bms_backup(struct web_req *req);
void web__h_bms_restore(struct web_req *req);
void web__h_bms_restart(struct web_req *req);
void web__h_test_mqtt(struct web_req *req);

/* web_system.c: POST /api/ota/upload (streamed multipart into the OTA service), GET
 * /api/ota/status, GET /metrics (Prometheus text), GET /api/metrics (JSON). */
void web__h_ota_upload(struct web_req *req);
void web__h_ota_status(struct web_req *req);
void web__h_ota_rollback(struct web_req *req);
void web__h_metrics_prometheus(struct web_req *req);
void web__h_metrics_json(struct web_req *req);

/* Sends a complete response: status line, the security headers, Content-Type, Content-Length,
 * extra header lines (each ending in "\r\n", may be NULL), then body (not for HEAD). api: adds
 * Cache-Control: no-store. */
void web__send(struct web_req *req, int status, const char *content_type, const char *body, size_t len,
               const char *extra_headers, bool api);

/* JSON answer; takes ownership of doc (deleted). A NULL doc (allocation failed) answers 500. */
void web__send_json(struct web_req *req, int status, struct cJSON *doc);

/* JSON error {"error":code,"message":message,"fields":fields or []}; takes ownership of fields. */
void web__send_error(struct web_req *req, int status, const char *code, const char *message, struct cJSON *fields,
                     const char *extra_headers);

/* The same on a bare connection (CivetWeb's own errors, WebSocket refusals). */
void web__send_error_conn(struct web_server *ws, struct mg_connection *conn, int status, const char *code,
                          const char *message, const char *extra_headers);

/* The security headers every response carries, as header lines. */
extern const char web__security_headers[];

/* The login gate for access on conn: true when allowed (user[ucap] gets the user, "" for an
 * open read endpoint); false after an error answer was sent (401, 429). */
bool web__authorize(struct web_server *ws, struct mg_connection *conn, uint8_t access, char *user, size_t ucap,
                    struct web_req *req);

/* web_ws.c */
int web__ws_start(struct web_server *ws);   /* handlers + bus subscriptions */
void web__ws_stop(struct web_server *ws);   /* unsubscribe, wake senders (before mg_stop) */
void web__ws_connection_closed(struct web_server *ws, const struct mg_connection *conn);
/* Queues text to every client of channel (copied once, shared). */
void web__ws_broadcast(struct web_server *ws, enum ws_channel ch, const char *text, size_t len);
/* Broadcasts {"type":type,"timestamp":ms} plus the members of extra (owned, may be NULL) on /ws/events. */
void web__ws_event(struct web_server *ws, const char *type, struct cJSON *extra);
unsigned web__ws_client_count(struct web_server *ws);
/* Waits (at most timeout_ms) until the clients of ch have written what is queued for them. */
void web__ws_drain(struct web_server *ws, enum ws_channel ch, uint32_t timeout_ms);

/* web_api.c: JSON of the battery view (pack < 0: the bank and every pack; else that pack). */
struct battery_view;
struct cJSON *web__view_json(const struct battery_view *v, int pack);
/* The whole view's text (pack < 0), built once per view (view_lock); malloc'ed copy, NULL when
 * out of memory. */
char *web__view_text(struct web_server *ws, const struct battery_view *v, size_t *len);

#endif
