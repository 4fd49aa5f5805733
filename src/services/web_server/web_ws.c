/* The WebSocket channels: /ws/live (every battery view), /ws/alerts (raised/cleared alerts in the
 * module reference's format), /ws/events (configuration saved, links up/down, restart), /ws/uart
 * and /ws/can (the frame taps of the BMS pollers and of the CAN publisher, decoded).
 *
 * Each client has a bounded queue of shared, reference-counted messages and its own sender
 * thread: the bus dispatcher only appends to queues (never waits on a socket), and a client that
 * does not read fills its own queue, is dropped (queue freed, a close frame attempted) and never
 * slows the others. CivetWeb's reader loop then ends on the failed ping (enable_websocket_ping_pong)
 * and the close handler joins the sender.
 *
 * The taps are rings in uart_bms and can_publisher, read without polling: each client keeps the
 * sequence number of the newest frame it got, and the frames after it are sent (one message of
 * up to TAP_BATCH frames) on the bus events that follow them: every BMS sample or comm change,
 * every CAN cycle, and every battery update (at least once a second, so the frames of a silent
 * BMS arrive too). Raw frames and their meaning only: no secret passes there. */
#define _GNU_SOURCE
#include "web_server_internal.h"

#include "alert_manager.h"
#include "app_events.h"
#include "battery_service.h"
#include "can_publisher.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"
#include "uart_bms.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENDER_STACK (128 * 1024)
#define TAP_BATCH 64       /* frames per message at most (more wait for the next event) */
#define TAP_WELCOME 32     /* frames a new tap client gets first (the newest ones) */

struct ws_msg {
    atomic_uint refs;
    size_t len;
    char data[];
};

struct ws_client {
    struct ws_client *next;
    struct web_server *ws;
    struct mg_connection *conn;
    enum ws_channel ch;
    bool active;               /* the sender thread runs */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct ws_msg **q;
    unsigned head, count, cap;
    bool closing;              /* the connection is going away: the sender exits */
    bool dropped;              /* did not read: nothing more is queued */
    bool dead;                 /* a write failed */
    bool client_closed;        /* the client sent a close frame (a normal goodbye) */
    bool writing;              /* the sender is in a write */
    char addr[48];
    /* /ws/uart (one per pack) and /ws/can ([0]): the newest tap frame sent (tap_lock). */
    bool tap_started;
    uint64_t tap_seq[WEB_MAX_BMS];
};


static const char *const channel_paths[WS_CHANNELS] = { "/ws/live", "/ws/alerts", "/ws/events", "/ws/uart",
                                                         "/ws/can" };

static struct ws_msg *msg_new(const char *text, size_t len)
{
    struct ws_msg *m = malloc(sizeof *m + len + 1);
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    m->len = len;
    memcpy(m->data, text, len);
    m->data[len] = '\0';
    return m;
}

static void msg_unref(struct ws_msg *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1)
        free(m);
}

/* Caller holds c->lock. */
static void queue_release(struct ws_client *c)
{
    while (c->count) {
        msg_unref(c->q[c->head]);
        c->head = (c->head + 1) % c->cap;
        c->count--;
    }
}

/* Appends m to c (c->lock taken here). Never waits. */
static void client_enqueue(struct ws_client *c, struct ws_msg *m)
{
    struct web_server *ws = c->ws;
    pthread_mutex_lock(&c->lock);
    if (c->closing || c->dropped || c->dead) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    if (c->count == c->cap) {
        c->dropped = true;
        queue_release(c);
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
        atomic_fetch_add(&ws->n_ws_dropped, 1);
        GW_LOGW(MOD, "%s client %s dropped: it does not read (%u messages waiting)", channel_paths[c->ch], c->addr,
                c->cap);
        return;
    }
    atomic_fetch_add(&m->refs, 1);
    c->q[(c->head + c->count) % c->cap] = m;
    c->count++;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add(&ws->n_ws_messages, 1);
}

static void *sender_main(void *arg)
{
    struct ws_client *c = arg;
    pthread_setname_np(pthread_self(), "ws-sender");
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->closing && !c->dropped && !c->dead && c->count == 0)
            pthread_cond_wait(&c->cond, &c->lock);
        if (c->closing || c->dead)
            break;
        if (c->dropped) {
            pthread_mutex_unlock(&c->lock);
            /* 1008 policy violation: tells a client that reads again why it was cut. */
            static const char reason[] = "\x03\xf0" "not reading: dropped";
            mg_websocket_write(c->conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, reason, sizeof reason - 1);
            pthread_mutex_lock(&c->lock);
            c->dead = true;
            break;
        }
        struct ws_msg *m = c->q[c->head];
        c->head = (c->head + 1) % c->cap;
        c->count--;
        c->writing = true;
        pthread_mutex_unlock(&c->lock);
        int rc = mg_websocket_write(c->conn, MG_WEBSOCKET_OPCODE_TEXT, m->data, m->len);
        msg_unref(m);
        pthread_mutex_lock(&c->lock);
        c->writing = false;
        if (rc <= 0) {
            c->dead = true;
            queue_release(c);
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void client_free(struct ws_client *c)
{
    pthread_mutex_lock(&c->lock);
    queue_release(c);
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c->q);
    free(c);
}

/* Removes c from the list (ws_lock held). */
static void unlink_client(struct web_server *ws, struct ws_client *c)
{
    for (struct ws_client **pp = &ws->clients; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            ws->ws_count--;
            ws->ws_channel_count[c->ch]--;
            return;
        }
    }
}

/* ------------------------------------------------------------------ CivetWeb handlers */

static int on_connect(const struct mg_connection *cconn, void *cbdata)
{
    struct web_ws_chan *chan = cbdata;
    struct web_server *ws = chan->ws;
    struct mg_connection *conn = (struct mg_connection *)cconn; /* CivetWeb's own object, writable */
    atomic_fetch_add(&ws->n_requests, 1);
    char user[32];
    uint8_t access = chan->ch == WS_LIVE || chan->ch == WS_ALERTS ? WEB_READ : WEB_ADMIN;
    if (!web__authorize(ws, conn, access, user, sizeof user, NULL))
        return 1;
    const char *origin = mg_get_header(conn, "Origin");
    const char *host = mg_get_header(conn, "Host");
    if (origin && (!host || !web_origin_matches_host(origin, host))) {
        web__send_error_conn(ws, conn, 403, "bad_origin",
                             "WebSocket from another site refused (Origin does not match Host)", NULL);
        return 1;
    }
    struct ws_client *c = calloc(1, sizeof *c);
    if (c) {
        c->q = calloc(ws->ws_queue_len, sizeof *c->q);
        if (!c->q || pthread_mutex_init(&c->lock, NULL) != 0) {
            free(c->q);
            free(c);
            c = NULL;
        } else if (pthread_cond_init(&c->cond, NULL) != 0) {
            pthread_mutex_destroy(&c->lock);
            free(c->q);
            free(c);
            c = NULL;
        }
    }
    if (!c) {
        web__send_error_conn(ws, conn, 503, "unavailable", "out of memory", NULL);
        return 1;
    }
    c->ws = ws;
    c->conn = conn;
    c->ch = chan->ch;
    c->cap = ws->ws_queue_len;
    snprintf(c->addr, sizeof c->addr, "%s", mg_get_request_info(conn)->remote_addr);
    pthread_mutex_lock(&ws->ws_lock);
    bool full = ws->ws_count >= ws->ws_max;
    bool stopping = ws->ws_stopping;
    if (!full && !stopping) {
        c->next = ws->clients;
        ws->clients = c;
        ws->ws_count++;
        ws->ws_channel_count[c->ch]++;
    }
    pthread_mutex_unlock(&ws->ws_lock);
    if (full || stopping) {
        client_free(c);
        if (full) {
            atomic_fetch_add(&ws->n_ws_full, 1);
            char msg[128];
            snprintf(msg, sizeof msg, "too many WebSocket clients (web.ws_max_clients = %u): try again later",
                     ws->ws_max);
            web__send_error_conn(ws, conn, 503, "too_many_clients", msg, "Retry-After: 10\r\n");
        } else {
            web__send_error_conn(ws, conn, 503, "unavailable", "the gateway is stopping", NULL);
        }
        return 1;
    }
    mg_set_user_connection_data(conn, c);
    return 0;
}

/* ------------------------------------------------------------------ frame taps */

static cJSON *hex_item(const uint8_t *data, size_t n)
{
    char buf[3 * UART_BMS_TAP_BYTES + 1];
    struct gw_text t;
    gw_text_init(&t, buf, sizeof buf);
    for (size_t i = 0; i < n; i++) {
        if (i)
            gw_text_put_char(&t, ' ');
        gw_text_put_hex(&t, data[i], 2);
    }
    return cJSON_CreateString(gw_text_str(&t));
}

/* The frames of pack p after *seq (at most TAP_BATCH) into arr; *seq moves to the newest. */
static void uart_frames(struct web_server *ws, unsigned p, uint64_t *seq, cJSON *arr, uint64_t *missed)
{
    uint64_t last = 0;
    size_t n = uart_bms_tap_read(ws->bms[p], *seq, ws->uart_tap_buf, TAP_BATCH, &last);
    if (n == 0) {
        *seq = last < *seq ? last : *seq;
        return;
    }
    uint64_t first = last - n + 1;
    if (first > *seq + 1)
        *missed += first - *seq - 1;
    for (size_t i = 0; i < n; i++) {
        const struct uart_bms_tap_entry *e = &ws->uart_tap_buf[i];
        cJSON *f = cJSON_CreateObject();
        cJSON_AddNumberToObject(f, "pack", p);
        cJSON_AddNumberToObject(f, "seq", (double)(first + i));
        cJSON_AddNumberToObject(f, "timestamp", (double)e->wall_ms);
        cJSON_AddStringToObject(f, "dir", e->tx ? "tx" : "rx");
        cJSON_AddNumberToObject(f, "len", e->len);
        cJSON_AddItemToObject(f, "hex", hex_item(e->data, e->len < UART_BMS_TAP_BYTES ? e->len : UART_BMS_TAP_BYTES));
        char meaning[sizeof e->meaning + 1];
        gw_text_copyn(meaning, sizeof meaning, e->meaning, sizeof e->meaning);
        cJSON_AddStringToObject(f, "meaning", meaning);
        cJSON_AddItemToArray(arr, f);
    }
    *seq = last;
}

static void can_frames(struct web_server *ws, uint64_t *seq, cJSON *arr, uint64_t *missed)
{
    size_t n = can_publisher_tap_read(ws->can, *seq, ws->can_tap_buf, TAP_BATCH);
    if (n == 0)
        return;
    if (ws->can_tap_buf[0].seq > *seq + 1)
        *missed += ws->can_tap_buf[0].seq - *seq - 1;
    for (size_t i = 0; i < n; i++) {
        const struct can_tap_entry *e = &ws->can_tap_buf[i];
        cJSON *f = cJSON_CreateObject();
        char id[16];
        snprintf(id, sizeof id, e->frame.ext ? "0x%08X" : "0x%03X", (unsigned)e->frame.id);
        cJSON_AddNumberToObject(f, "seq", (double)e->seq);
        cJSON_AddNumberToObject(f, "timestamp", (double)e->wall_ms);
        cJSON_AddStringToObject(f, "dir", e->dir == CAN_TAP_TX ? "tx" : "rx");
        cJSON_AddStringToObject(f, "id", id);
        cJSON_AddBoolToObject(f, "ext", e->frame.ext);
        cJSON_AddNumberToObject(f, "dlc", e->frame.dlc);
        cJSON_AddItemToObject(f, "data", hex_item(e->frame.data, e->frame.dlc <= 8 ? e->frame.dlc : 8));
        char text[CAN_TAP_TEXT + 1];
        gw_text_copyn(text, sizeof text, e->text, sizeof e->text);
        cJSON_AddStringToObject(f, "text", text);
        if (e->result != GW_OK)
            cJSON_AddStringToObject(f, "error", gw_strerror(e->result));
        cJSON_AddItemToArray(arr, f);
        *seq = e->seq;
    }
}

/* One message with the frames of c's channel after c's positions (moved on), or NULL when there
 * is nothing new (unless always: the welcome, which also says whether the source exists). Under
 * tap_lock. */
static struct ws_msg *tap_message(struct web_server *ws, enum ws_channel ch, uint64_t seq[WEB_MAX_BMS], bool always)
{
    cJSON *doc = cJSON_CreateObject();
    if (!doc)
        return NULL;
    cJSON_AddStringToObject(doc, "type", ch == WS_UART ? "uart" : "can");
    cJSON *arr = cJSON_AddArrayToObject(doc, "frames");
    uint64_t missed = 0;
    if (ch == WS_UART) {
        for (unsigned p = 0; p < ws->bms_count; p++)
            if (ws->bms[p])
                uart_frames(ws, p, &seq[p], arr, &missed);
    } else if (ws->can) {
        can_frames(ws, &seq[0], arr, &missed);
    }
    struct ws_msg *m = NULL;
    if (always)
        cJSON_AddBoolToObject(doc, "enabled", ch == WS_UART ? ws->bms_count > 0 : ws->can != NULL);
    if (always || cJSON_GetArraySize(arr) > 0) {
        if (missed)
            cJSON_AddNumberToObject(doc, "missed", (double)missed);
        char *text = cJSON_PrintUnformatted(doc);
        if (text)
            m = msg_new(text, strlen(text));
        free(text);
    }
    cJSON_Delete(doc);
    return m;
}

/* Sends every client of ch the frames it has not seen. Clients at the same positions (usually
 * all of them) share one message. */
static void tap_drain(struct web_server *ws, enum ws_channel ch)
{
    if (!ws->uart_tap_buf || !ws->can_tap_buf)
        return;
    pthread_mutex_lock(&ws->tap_lock);
    pthread_mutex_lock(&ws->ws_lock);
    uint64_t key[WEB_MAX_BMS], after[WEB_MAX_BMS];
    bool have = false;
    struct ws_msg *m = NULL;
    for (struct ws_client *c = ws->clients; c; c = c->next) {
        if (c->ch != ch || !c->tap_started)
            continue;
        if (!have || memcmp(key, c->tap_seq, sizeof key) != 0) {
            msg_unref(m);
            memcpy(key, c->tap_seq, sizeof key);
            m = tap_message(ws, ch, c->tap_seq, false);
            memcpy(after, c->tap_seq, sizeof after);
            have = true;
        } else {
            memcpy(c->tap_seq, after, sizeof after);
        }
        if (m)
            client_enqueue(c, m);
    }
    msg_unref(m);
    pthread_mutex_unlock(&ws->ws_lock);
    pthread_mutex_unlock(&ws->tap_lock);
}

/* A new tap client starts TAP_WELCOME frames back and gets them at once. */
static void tap_welcome(struct ws_client *c)
{
    struct web_server *ws = c->ws;
    if (!ws->uart_tap_buf || !ws->can_tap_buf)
        return;
    pthread_mutex_lock(&ws->tap_lock);
    memset(c->tap_seq, 0, sizeof c->tap_seq);
    if (c->ch == WS_UART) {
        for (unsigned p = 0; p < ws->bms_count; p++) {
            uint64_t last = 0;
            if (ws->bms[p])
                uart_bms_tap_read(ws->bms[p], 0, ws->uart_tap_buf, 1, &last);
            c->tap_seq[p] = last > TAP_WELCOME ? last - TAP_WELCOME : 0;
        }
    } else if (ws->can) {
        size_t n = can_publisher_tap_read(ws->can, 0, ws->can_tap_buf, CAN_TAP_ENTRIES);
        uint64_t last = n ? ws->can_tap_buf[n - 1].seq : 0;
        c->tap_seq[0] = last > TAP_WELCOME ? last - TAP_WELCOME : 0;
    }
    c->tap_started = true;
    struct ws_msg *m = tap_message(ws, c->ch, c->tap_seq, true);
    if (m)
        client_enqueue(c, m);
    msg_unref(m);
    pthread_mutex_unlock(&ws->tap_lock);
}

/* The first messages of a new client: the current view (live) or the active alerts. */
static void send_welcome(struct ws_client *c)
{
    struct web_server *ws = c->ws;
    if (c->ch == WS_LIVE && ws->battery) {
        struct battery_view *v = malloc(sizeof *v);
        if (v && battery_service_get_view(ws->battery, v) == GW_OK && v->seq > 0) {
            size_t len = 0;
            char *text = web__view_text(ws, v, &len);
            struct ws_msg *m = text ? msg_new(text, len) : NULL;
            if (m)
                client_enqueue(c, m);
            msg_unref(m);
            free(text);
        }
        free(v);
    } else if (c->ch == WS_ALERTS && ws->alerts) {
        char *json = NULL;
        if (alert_manager_get_active_json_alloc(ws->alerts, &json) == GW_OK) {
            cJSON *arr = cJSON_Parse(json);
            cJSON *a;
            cJSON_ArrayForEach(a, arr)
            {
                cJSON_AddStringToObject(a, "event", "active");
                char *text = cJSON_PrintUnformatted(a);
                struct ws_msg *m = text ? msg_new(text, strlen(text)) : NULL;
                if (m)
                    client_enqueue(c, m);
                msg_unref(m);
                free(text);
            }
            cJSON_Delete(arr);
        }
        free(json);
    } else if (c->ch == WS_UART || c->ch == WS_CAN) {
        tap_welcome(c);
    }
}

static void on_ready(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    struct ws_client *c = mg_get_user_connection_data(conn);
    if (!c)
        return;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, SENDER_STACK);
    if (pthread_create(&c->thread, &attr, sender_main, c) == 0) {
        c->active = true;
        send_welcome(c);
    } else {
        GW_LOGE(MOD, "%s: no thread for client %s: it gets nothing", channel_paths[c->ch], c->addr);
        pthread_mutex_lock(&c->lock);
        c->dead = true;
        pthread_mutex_unlock(&c->lock);
    }
    pthread_attr_destroy(&attr);
    GW_LOGD(MOD, "%s: client %s connected", channel_paths[c->ch], c->addr);
}

static int on_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
    (void)data;
    (void)cbdata;
    if ((bits & 0x0f) == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE) {
        struct ws_client *c = mg_get_user_connection_data(conn);
        if (c) {
            pthread_mutex_lock(&c->lock);
            c->client_closed = true;
            pthread_mutex_unlock(&c->lock);
        }
    }
    /* Clients have nothing to say on these channels; a big frame ends the connection. */
    return len <= 4096;
}

static void release_client(struct web_server *ws, struct ws_client *c)
{
    pthread_mutex_lock(&ws->ws_lock);
    unlink_client(ws, c);
    pthread_mutex_unlock(&ws->ws_lock);
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (c->active)
        pthread_join(c->thread, NULL);
    client_free(c);
}

static void on_close(const struct mg_connection *conn, void *cbdata)
{
    struct web_ws_chan *chan = cbdata;
    struct ws_client *c = mg_get_user_connection_data(conn);
    if (!c)
        return;
    mg_set_user_connection_data(conn, NULL);
    struct web_server *ws = chan->ws;
    pthread_mutex_lock(&c->lock);
    bool goodbye = c->client_closed, dropped = c->dropped;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_lock(&ws->ws_lock);
    bool stopping = ws->ws_stopping;
    pthread_mutex_unlock(&ws->ws_lock);
    if (!goodbye && !dropped && !stopping) {
        /* No close frame: CivetWeb ended it because pings went unanswered or a write timed out
         * (a client that stopped reading), or the client vanished. Counted with the drops. */
        atomic_fetch_add(&ws->n_ws_dropped, 1);
        GW_LOGW(MOD, "%s client %s cut without a goodbye: it stopped reading or answering pings", channel_paths[c->ch],
                c->addr);
    } else {
        GW_LOGD(MOD, "%s: client %s gone%s", channel_paths[c->ch], c->addr, dropped ? " (dropped)" : "");
    }
    release_client(ws, c);
}

void web__ws_connection_closed(struct web_server *ws, const struct mg_connection *conn)
{
    /* A client accepted by on_connect whose handshake then failed: no close handler for it. */
    pthread_mutex_lock(&ws->ws_lock);
    struct ws_client *found = NULL;
    for (struct ws_client *c = ws->clients; c; c = c->next)
        if (c->conn == conn)
            found = c;
    pthread_mutex_unlock(&ws->ws_lock);
    if (found)
        release_client(ws, found);
}

/* ------------------------------------------------------------------ broadcasting */

void web__ws_broadcast(struct web_server *ws, enum ws_channel ch, const char *text, size_t len)
{
    pthread_mutex_lock(&ws->ws_lock);
    if (ws->ws_channel_count[ch] == 0 || ws->ws_stopping) {
        pthread_mutex_unlock(&ws->ws_lock);
        return;
    }
    struct ws_msg *m = msg_new(text, len);
    if (m)
        for (struct ws_client *c = ws->clients; c; c = c->next)
            if (c->ch == ch)
                client_enqueue(c, m);
    pthread_mutex_unlock(&ws->ws_lock);
    msg_unref(m);
}

static bool channel_listened(struct web_server *ws, enum ws_channel ch)
{
    pthread_mutex_lock(&ws->ws_lock);
    bool any = ws->ws_channel_count[ch] > 0;
    pthread_mutex_unlock(&ws->ws_lock);
    return any;
}

static void broadcast_doc(struct web_server *ws, enum ws_channel ch, cJSON *doc)
{
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (text)
        web__ws_broadcast(ws, ch, text, strlen(text));
    free(text);
}

void web__ws_event(struct web_server *ws, const char *type, cJSON *extra)
{
    if (!channel_listened(ws, WS_EVENTS)) {
        cJSON_Delete(extra);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    if (!doc) {
        cJSON_Delete(extra);
        return;
    }
    cJSON_AddStringToObject(doc, "type", type);
    cJSON_AddNumberToObject(doc, "timestamp", (double)gw_wall_ms());
    if (extra) {
        cJSON *item = extra->child;
        while (item) {
            cJSON *next = item->next;
            cJSON_AddItemToObject(doc, item->string, cJSON_DetachItemViaPointer(extra, item));
            item = next;
        }
        cJSON_Delete(extra);
    }
    broadcast_doc(ws, WS_EVENTS, doc);
}

void web__ws_drain(struct web_server *ws, enum ws_channel ch, uint32_t timeout_ms)
{
    uint64_t deadline = gw_now_ms() + timeout_ms;
    for (;;) {
        bool pending = false;
        pthread_mutex_lock(&ws->ws_lock);
        for (struct ws_client *c = ws->clients; c && !pending; c = c->next) {
            if (c->ch != ch)
                continue;
            pthread_mutex_lock(&c->lock);
            pending = !c->dead && !c->dropped && !c->closing && c->active && (c->count > 0 || c->writing);
            pthread_mutex_unlock(&c->lock);
        }
        pthread_mutex_unlock(&ws->ws_lock);
        if (!pending || gw_now_ms() >= deadline)
            return;
        gw_sleep_ms(5); /* a bounded courtesy wait before a restart, not a synchronisation */
    }
}

unsigned web__ws_client_count(struct web_server *ws)
{
    pthread_mutex_lock(&ws->ws_lock);
    unsigned n = ws->ws_count;
    pthread_mutex_unlock(&ws->ws_lock);
    return n;
}

static const char *level_name(uint8_t level)
{
    return level == ALERT_LEVEL_ERROR ? "error" : level == ALERT_LEVEL_WARNING ? "warning" : "info";
}

/* The frames that came before this event go to the tap clients. */
static void tap_events(struct web_server *ws, int id)
{
    bool uart = false, can = false;
    switch (id) {
    case EVENT_BATTERY_UPDATE: uart = can = true; break; /* at least every second */
    case EVENT_BMS_DATA_UPDATE:
    case EVENT_BMS_COMM_LOST:
    case EVENT_BMS_COMM_RESTORED:
    case EVENT_BMS_SETTINGS_UPDATE: uart = true; break;
    case EVENT_CAN_TX_SUCCESS:
    case EVENT_CAN_TX_FAILED:
    case EVENT_CAN_INVERTER_LINK: can = true; break;
    default: break;
    }
    if (uart && ws->bms_count && channel_listened(ws, WS_UART))
        tap_drain(ws, WS_UART);
    if (can && ws->can && channel_listened(ws, WS_CAN))
        tap_drain(ws, WS_CAN);
}

static void on_bus(const struct gw_event *ev, void *ctx)
{
    struct web_server *ws = ctx;
    tap_events(ws, ev->id);
    switch (ev->id) {
    case EVENT_BATTERY_UPDATE:
        const struct battery_view *view = EVENT_PAYLOAD(ev, struct battery_view);
        if (view && channel_listened(ws, WS_LIVE)) {
            size_t len = 0;
            char *text = web__view_text(ws, view, &len);
            if (text)
                web__ws_broadcast(ws, WS_LIVE, text, len);
            free(text);
        }
        break;
    case EVENT_ALERT_RAISED:
    case EVENT_ALERT_CLEARED: {
        const struct app_alert *in = EVENT_PAYLOAD(ev, struct app_alert);
        if (!in || !channel_listened(ws, WS_ALERTS))
            break;
        struct app_alert a = *in;
        bool raised = ev->id == EVENT_ALERT_RAISED;
        cJSON *doc = cJSON_CreateObject();
        if (!doc)
            break;
        int64_t t = raised ? (a.first_seen_ms ? a.first_seen_ms : gw_wall_ms()) : gw_wall_ms();
        /* The module reference's four fields first, then ours. */
        cJSON_AddNumberToObject(doc, "timestamp", (double)(t / 1000));
        cJSON_AddStringToObject(doc, "level", level_name(a.level));
        cJSON_AddStringToObject(doc, "code", a.code);
        cJSON_AddStringToObject(doc, "message", a.message);
        cJSON_AddStringToObject(doc, "event", raised ? "raised" : "cleared");
        cJSON_AddNumberToObject(doc, "battery_id", a.battery_id);
        if (a.value == a.value)
            cJSON_AddNumberToObject(doc, "value", a.value);
        if (a.threshold == a.threshold)
            cJSON_AddNumberToObject(doc, "threshold", a.threshold);
        cJSON_AddNumberToObject(doc, "count", a.count);
        cJSON_AddBoolToObject(doc, "acknowledged", a.acknowledged);
        broadcast_doc(ws, WS_ALERTS, doc);
        break;
    }
    case EVENT_CONFIG_UPDATED: {
        const struct app_config_change *in = EVENT_PAYLOAD(ev, struct app_config_change);
        if (!in)
            break;
        struct app_config_change ch = *in;
        if (ch.sections & CONFIG_SECTION_WEB) {
            /* The password or the user may have changed: every remembered login is re-checked. */
            pthread_mutex_lock(&ws->auth_lock);
            web_auth_cache_clear(&ws->cache);
            ws->auth_gen++;
            pthread_mutex_unlock(&ws->auth_lock);
        }
        cJSON *extra = cJSON_CreateObject();
        ch.changed[sizeof ch.changed - 1] = '\0';
        /* Paths only: never a value (web.password_hash changes show as a path, nothing else). */
        cJSON_AddStringToObject(extra, "changed", ch.changed);
        cJSON_AddBoolToObject(extra, "restart_required", ch.restart_required);
        web__ws_event(ws, "config_saved", extra);
        break;
    }
    case EVENT_NET_CONNECTED:
    case EVENT_NET_DISCONNECTED: {
        const struct app_net_link *in = EVENT_PAYLOAD(ev, struct app_net_link);
        if (!in)
            break;
        struct app_net_link l = *in;
        l.interface[sizeof l.interface - 1] = l.address[sizeof l.address - 1] = '\0';
        cJSON *extra = cJSON_CreateObject();
        cJSON_AddStringToObject(extra, "link", "network");
        cJSON_AddStringToObject(extra, "interface", l.interface);
        cJSON_AddStringToObject(extra, "address", l.address);
        web__ws_event(ws, ev->id == EVENT_NET_CONNECTED ? "link_up" : "link_down", extra);
        break;
    }
    case EVENT_MQTT_CONNECTED:
    case EVENT_MQTT_DISCONNECTED: {
        cJSON *extra = cJSON_CreateObject();
        cJSON_AddStringToObject(extra, "link", "mqtt");
        const struct app_text *in = ev->id == EVENT_MQTT_DISCONNECTED ? EVENT_PAYLOAD(ev, struct app_text) : NULL;
        if (in) {
            struct app_text t = *in;
            t.text[sizeof t.text - 1] = '\0';
            cJSON_AddStringToObject(extra, "reason", t.text);
        }
        web__ws_event(ws, ev->id == EVENT_MQTT_CONNECTED ? "link_up" : "link_down", extra);
        break;
    }
    case EVENT_BMS_COMM_LOST:
    case EVENT_BMS_COMM_RESTORED: {
        const struct app_bms_comm *in = EVENT_PAYLOAD(ev, struct app_bms_comm);
        if (!in)
            break;
        struct app_bms_comm c = *in;
        c.reason[sizeof c.reason - 1] = '\0';
        cJSON *extra = cJSON_CreateObject();
        cJSON_AddStringToObject(extra, "link", "bms");
        cJSON_AddNumberToObject(extra, "pack", c.battery_id);
        cJSON_AddStringToObject(extra, "reason", c.reason);
        web__ws_event(ws, ev->id == EVENT_BMS_COMM_RESTORED ? "link_up" : "link_down", extra);
        break;
    }
    case EVENT_CAN_INVERTER_LINK: {
        const struct app_inverter_link *in = EVENT_PAYLOAD(ev, struct app_inverter_link);
        if (!in)
            break;
        struct app_inverter_link l = *in;
        cJSON *extra = cJSON_CreateObject();
        cJSON_AddStringToObject(extra, "link", "inverter");
        web__ws_event(ws, l.present ? "link_up" : "link_down", extra);
        break;
    }
    default:
        break;
    }
}

static const int bus_events[] = { EVENT_BATTERY_UPDATE, EVENT_ALERT_RAISED, EVENT_ALERT_CLEARED,
                                  EVENT_CONFIG_UPDATED, EVENT_NET_CONNECTED, EVENT_NET_DISCONNECTED,
                                  EVENT_MQTT_CONNECTED, EVENT_MQTT_DISCONNECTED, EVENT_BMS_COMM_LOST,
                                  EVENT_BMS_COMM_RESTORED, EVENT_CAN_INVERTER_LINK, EVENT_BMS_DATA_UPDATE,
                                  EVENT_BMS_SETTINGS_UPDATE, EVENT_CAN_TX_SUCCESS, EVENT_CAN_TX_FAILED };

int web__ws_start(struct web_server *ws)
{
    ws->uart_tap_buf = calloc(TAP_BATCH, sizeof *ws->uart_tap_buf);
    ws->can_tap_buf = calloc(CAN_TAP_ENTRIES, sizeof *ws->can_tap_buf);
    if (!ws->uart_tap_buf || !ws->can_tap_buf)
        return GW_ERR_NOMEM;
    for (int i = 0; i < WS_CHANNELS; i++) {
        ws->ws_chan[i].ws = ws;
        ws->ws_chan[i].ch = (enum ws_channel)i;
        mg_set_websocket_handler(ws->ctx, channel_paths[i], on_connect, on_ready, on_data, on_close, &ws->ws_chan[i]);
    }
    for (size_t i = 0; i < sizeof bus_events / sizeof bus_events[0]; i++) {
        int rc = event_bus_subscribe(ws->bus, bus_events[i], on_bus, ws, "web");
        if (rc) {
            for (size_t k = 0; k < i; k++)
                event_bus_unsubscribe(ws->bus, bus_events[k], on_bus, ws);
            return rc;
        }
    }
    ws->subscribed = true;
    return GW_OK;
}

void web__ws_stop(struct web_server *ws)
{
    if (ws->subscribed) {
        for (size_t i = 0; i < sizeof bus_events / sizeof bus_events[0]; i++)
            event_bus_unsubscribe(ws->bus, bus_events[i], on_bus, ws);
        ws->subscribed = false;
    }
    pthread_mutex_lock(&ws->ws_lock);
    ws->ws_stopping = true;
    for (struct ws_client *c = ws->clients; c; c = c->next) {
        pthread_mutex_lock(&c->lock);
        c->closing = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&ws->ws_lock);
}
