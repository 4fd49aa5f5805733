/* MQTT client over libmosquitto with its own network thread (see mqtt_client.h).
 *
 * Why our own thread rather than mosquitto_loop_start(): libmosquitto's built-in backoff is
 * quadratic (1, 4, 9, ... s) while ours must double (1, 2, 4 ... 32 s); our wait is woken at
 * once by stop() and reconfigure(); and a reconfiguration swaps the whole mosquitto instance
 * inside the thread that owns it. The thread still uses the asynchronous connect and the
 * threaded mode of libmosquitto, so publishers never block on the network.
 *
 * The thread is a shell around the state machine of mqtt_link.c (attempt, CONNACK timeout,
 * backoff, keepalive service). It sleeps in one poll() on the broker socket and an eventfd
 * (`wake_fd`) until the machine's next deadline: publish/subscribe/stop/reconfigure write the
 * eventfd (libmosquitto's own wake-up pipe is not visible to us), socket readiness runs
 * mosquitto_loop() once with a zero timeout. Nothing wakes it otherwise (a connected idle
 * client: one keepalive service per quarter keepalive). Since it waits on sockets, its deadlines
 * are gateway-clock values turned into a poll() timeout: the test clock does not wake it.
 *
 * Locking: `lock` guards every field below it, including the mosquitto pointer, so a publisher
 * never uses an instance the thread is replacing. `dispatch_lock` is held while subscription
 * callbacks run (unsubscribe waits on it). Order: dispatch_lock -> lock. libmosquitto functions
 * called under `lock` are only the queueing ones (publish/subscribe), which in threaded mode
 * never call back into us. */
#define _GNU_SOURCE
#include "mqtt_client.h"
#include "mqtt_client_internal.h"

#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"

#include <errno.h>
#include <mosquitto.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_LOOP_MS 50           /* mosquitto_loop slice of the bounded flush at stop / the probe */
#define STOP_FLUSH_MS 1000u

struct subscription {
    char filter[MQTT_CLIENT_MAX_TOPIC];
    int qos;
    mqtt_client_message_fn cb;
    void *ctx;
    bool used;
};

struct mqtt_client {
    pthread_mutex_t lock;
    pthread_mutex_t dispatch_lock;
    int wake_fd;                  /* eventfd: wakes the network thread's poll() */
    pthread_t thread;

    /* --- guarded by lock --- */
    struct gw_config_mqtt cfg;
    struct mqtt_client_uri uri;
    char client_id[128];
    char *will_topic;
    char *will_payload;
    int will_qos;
    bool will_retain;
    struct mosquitto *mosq;       /* created/destroyed by the network thread (or stop) */
    bool started;
    bool stop_req;
    bool reconfig_req;            /* end the session and connect again at once ... */
    char reconfig_why[96];        /* ... because of this (the reason the link reports) */
    bool connected;               /* CONNACK accepted and socket alive */
    uint32_t unacked;             /* handed to libmosquitto, on_publish not seen yet */
    int connack_rc;               /* last CONNACK code, -1 = none yet on this socket */
    char last_error[160];         /* last libmosquitto error log line */
    struct mqtt_client__queue queue;
    struct subscription subs[MQTT_CLIENT_MAX_SUBSCRIPTIONS];
    mqtt_client_connect_fn connect_cb;
    void *connect_ctx;
    mqtt_client_link_fn link_cb;
    void *link_ctx;
    struct mqtt_client_stats stats;
};

static atomic_int lib_refs;
static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;

static void lib_acquire(void)
{
    pthread_mutex_lock(&lib_lock);
    if (atomic_fetch_add(&lib_refs, 1) == 0)
        mosquitto_lib_init();
    pthread_mutex_unlock(&lib_lock);
}

static void lib_release(void)
{
    pthread_mutex_lock(&lib_lock);
    if (atomic_fetch_sub(&lib_refs, 1) == 1)
        mosquitto_lib_cleanup();
    pthread_mutex_unlock(&lib_lock);
}

/* ------------------------------------------------------------------ pure helpers */

int mqtt_client_parse_uri(const char *uri, struct mqtt_client_uri *out)
{
    if (!uri || !out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    const char *p;
    if (strncmp(uri, "mqtt://", 7) == 0) {
        p = uri + 7;
        out->port = 1883;
    } else if (strncmp(uri, "mqtts://", 8) == 0) {
        p = uri + 8;
        out->port = 8883;
        out->tls = true;
    } else {
        return GW_ERR_INVAL;
    }
    const char *host_start = p, *host_end;
    if (*p == '[') { /* IPv6 literal */
        host_start = p + 1;
        host_end = strchr(host_start, ']');
        if (!host_end)
            return GW_ERR_INVAL;
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        p = host_end;
    }
    size_t hlen = (size_t)(host_end - host_start);
    if (hlen == 0)
        return GW_ERR_INVAL;
    if (hlen >= sizeof out->host)
        return GW_ERR_OVERFLOW;
    for (size_t i = 0; i < hlen; i++) {
        unsigned char ch = (unsigned char)host_start[i];
        if (ch <= ' ' || ch == '@' || ch == '?' || ch == '#' || ch >= 0x7f)
            return GW_ERR_INVAL;
    }
    memcpy(out->host, host_start, hlen);
    out->host[hlen] = '\0';
    if (*p == ':') {
        p++;
        unsigned long port = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 6) {
            port = port * 10 + (unsigned long)(*p - '0');
            p++;
            digits++;
        }
        if (digits == 0 || port == 0 || port > 65535)
            return GW_ERR_INVAL;
        out->port = (uint16_t)port;
    }
    if (*p == '/')
        p++;
    if (*p != '\0')
        return GW_ERR_INVAL;
    return GW_OK;
}

uint32_t mqtt_client_backoff_s(uint32_t attempt)
{
    if (attempt <= 1)
        return 1;
    if (attempt > 6)
        return MQTT_CLIENT_BACKOFF_MAX_S;
    uint32_t d = 1u << (attempt - 1);
    return d > MQTT_CLIENT_BACKOFF_MAX_S ? MQTT_CLIENT_BACKOFF_MAX_S : d;
}

int mqtt_client_effective_id(const struct gw_config_mqtt *cfg, char *out, size_t cap)
{
    if (!cfg || !out || cap == 0)
        return GW_ERR_INVAL;
    if (cfg->client_id[0])
        return gw_text_copy(out, cap, cfg->client_id);
    char host[64];
    if (gethostname(host, sizeof host) != 0)
        gw_text_copy(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    struct gw_text t;
    gw_text_init(&t, out, cap);
    gw_text_put_str(&t, "tinybms-gw-");
    gw_text_put_str(&t, host);
    return gw_text_status(&t);
}

static bool topic_is_valid(const char *topic)
{
    size_t len = strnlen(topic, MQTT_CLIENT_MAX_TOPIC);
    if (len == 0 || len >= MQTT_CLIENT_MAX_TOPIC)
        return false;
    return strpbrk(topic, "+#") == NULL;
}

/* ------------------------------------------------------------------ mosquitto set-up */

/* Applies credentials, TLS and will to a fresh instance. Writes the reason of a failure in err.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_TLS, GW_ERR_NOMEM */
static int configure_mosq(struct mosquitto *mosq, const struct gw_config_mqtt *cfg,
                          const struct mqtt_client_uri *uri, const char *will_topic,
                          const char *will_payload, int will_qos, bool will_retain, char *err,
                          size_t cap)
{
    int rc;
    mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
    if (cfg->username[0]) {
        rc = mosquitto_username_pw_set(mosq, cfg->username, cfg->password[0] ? cfg->password : NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            snprintf(err, cap, "user name rejected by libmosquitto: %s", mosquitto_strerror(rc));
            return rc == MOSQ_ERR_NOMEM ? GW_ERR_NOMEM : GW_ERR_INVAL;
        }
    }
    if (cfg->cert_file[0] != '\0' && cfg->key_file[0] == '\0') {
        snprintf(err, cap, "client certificate set without its key file");
        return GW_ERR_INVAL;
    }
    if (cfg->key_file[0] != '\0' && cfg->cert_file[0] == '\0') {
        snprintf(err, cap, "client key set without its certificate file");
        return GW_ERR_INVAL;
    }
    if (uri->tls) {
        if (cfg->ca_file[0] == '\0')
            mosquitto_int_option(mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
        const char *ca = cfg->ca_file[0] ? cfg->ca_file : NULL;
        const char *cert = cfg->cert_file[0] ? cfg->cert_file : NULL;
        const char *key = cfg->key_file[0] ? cfg->key_file : NULL;
        if (ca && access(ca, R_OK) != 0) {
            snprintf(err, cap, "CA file %.120s is not readable: %s", ca, strerror(errno));
            return GW_ERR_INVAL;
        }
        if (cert && access(cert, R_OK) != 0) {
            snprintf(err, cap, "client certificate %.120s is not readable: %s", cert, strerror(errno));
            return GW_ERR_INVAL;
        }
        if (key && access(key, R_OK) != 0) {
            snprintf(err, cap, "client key %.120s is not readable: %s", key, strerror(errno));
            return GW_ERR_INVAL;
        }
        if (ca || cert) {
            rc = mosquitto_tls_set(mosq, ca, NULL, cert, key, NULL);
            if (rc != MOSQ_ERR_SUCCESS) {
                snprintf(err, cap, "TLS set-up failed: %s", mosquitto_strerror(rc));
                return GW_ERR_TLS;
            }
        }
        if (cfg->tls_insecure)
            mosquitto_tls_insecure_set(mosq, true);
    } else if (cfg->ca_file[0] || cfg->cert_file[0]) {
        GW_LOGW(MOD, "TLS files are configured but the URI %s is not mqtts://: sent in clear",
                cfg->broker_uri);
    }
    if (will_topic && will_topic[0]) {
        const char *wp = will_payload ? will_payload : "";
        rc = mosquitto_will_set(mosq, will_topic, (int)strlen(wp), wp, will_qos, will_retain);
        if (rc != MOSQ_ERR_SUCCESS) {
            snprintf(err, cap, "last will rejected: %s", mosquitto_strerror(rc));
            return GW_ERR_INVAL;
        }
    }
    return GW_OK;
}

/* ------------------------------------------------------------------ callbacks */

/* Wakes the network thread (any thread; async-signal-safe write of the eventfd counter). */
static void kick(struct mqtt_client *c)
{
    uint64_t one = 1;
    if (write(c->wake_fd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is saturated, the thread is woken anyway */
    }
}

/* Tells the link callback (network thread) that the link went up or down. Caller holds
 * dispatch_lock, not lock. */
static void report_link_locked(struct mqtt_client *c, bool up, const char *reason)
{
    pthread_mutex_lock(&c->lock);
    mqtt_client_link_fn cb = c->link_cb;
    void *ctx = c->link_ctx;
    pthread_mutex_unlock(&c->lock);
    if (cb)
        cb(up, up ? NULL : reason, ctx);
}

static void report_link(struct mqtt_client *c, bool up, const char *reason)
{
    pthread_mutex_lock(&c->dispatch_lock);
    report_link_locked(c, up, reason);
    pthread_mutex_unlock(&c->dispatch_lock);
}

/* Sends the queue in order. Caller holds lock and the session is up. */
static void flush_queue_locked(struct mqtt_client *c)
{
    struct mqtt_client__msg *m;
    while ((m = mqtt_client__queue_front(&c->queue)) != NULL) {
        int rc = mosquitto_publish(c->mosq, NULL, m->topic, (int)m->len, m->payload, m->qos,
                                   m->retain);
        if (rc == MOSQ_ERR_SUCCESS) {
            c->stats.publishes++;
            c->unacked++;
        } else if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST) {
            return; /* lost again: keep the rest for the next connection */
        } else {
            c->stats.publish_failures++;
        }
        mqtt_client__queue_pop(&c->queue);
    }
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    struct mqtt_client *c = obj;
    pthread_mutex_lock(&c->lock);
    c->connack_rc = rc;
    if (rc != 0) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    for (size_t i = 0; i < MQTT_CLIENT_MAX_SUBSCRIPTIONS; i++) {
        if (c->subs[i].used)
            mosquitto_subscribe(mosq, NULL, c->subs[i].filter, c->subs[i].qos);
    }
    c->connected = true;
    c->unacked = 0; /* what the last session left unacknowledged is not waited for */
    c->stats.connects++;
    c->stats.backoff_s = 0;
    uint32_t flushed = c->queue.count;
    flush_queue_locked(c);
    char host[sizeof c->uri.host];
    gw_text_copy(host, sizeof host, c->uri.host);
    uint16_t port = c->uri.port;
    pthread_mutex_unlock(&c->lock);

    GW_LOGI(MOD, "connected to %s:%u (%u queued message(s) sent)", host, (unsigned)port, flushed);
    /* dispatch_lock: mqtt_client_set_connect_callback(NULL) waits for a running callback. */
    pthread_mutex_lock(&c->dispatch_lock);
    pthread_mutex_lock(&c->lock);
    mqtt_client_connect_fn cb = c->connect_cb;
    void *ctx = c->connect_ctx;
    pthread_mutex_unlock(&c->lock);
    if (cb)
        cb(ctx);
    report_link_locked(c, true, NULL);
    pthread_mutex_unlock(&c->dispatch_lock);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
    (void)mosq;
    struct mqtt_client *c = obj;
    struct {
        mqtt_client_message_fn cb;
        void *ctx;
    } targets[MQTT_CLIENT_MAX_SUBSCRIPTIONS];
    size_t n = 0;

    pthread_mutex_lock(&c->dispatch_lock);
    pthread_mutex_lock(&c->lock);
    c->stats.received++;
    for (size_t i = 0; i < MQTT_CLIENT_MAX_SUBSCRIPTIONS; i++) {
        bool match = false;
        if (c->subs[i].used &&
            mosquitto_topic_matches_sub(c->subs[i].filter, msg->topic, &match) == MOSQ_ERR_SUCCESS &&
            match) {
            targets[n].cb = c->subs[i].cb;
            targets[n].ctx = c->subs[i].ctx;
            n++;
        }
    }
    pthread_mutex_unlock(&c->lock);
    /* libmosquitto NUL-terminates payloads (it allocates len + 1). */
    struct mqtt_client_message m = {
        .topic = msg->topic,
        .payload = msg->payload ? msg->payload : "",
        .len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0,
        .qos = msg->qos,
        .retain = msg->retain,
    };
    for (size_t i = 0; i < n; i++)
        targets[i].cb(&m, targets[i].ctx);
    pthread_mutex_unlock(&c->dispatch_lock);
}

/* QoS 0: written; QoS 1: PUBACK received. */
static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
    (void)mosq;
    (void)mid;
    struct mqtt_client *c = obj;
    pthread_mutex_lock(&c->lock);
    if (c->unacked)
        c->unacked--;
    pthread_mutex_unlock(&c->lock);
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
    (void)mosq;
    struct mqtt_client *c = obj;
    if (level != MOSQ_LOG_ERR && level != MOSQ_LOG_WARNING)
        return;
    pthread_mutex_lock(&c->lock);
    gw_text_copy(c->last_error, sizeof c->last_error, str);
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------ network thread */

/* Creates the instance for the current settings. Returns NULL (logged) on failure. */
static struct mosquitto *make_session(struct mqtt_client *c)
{
    pthread_mutex_lock(&c->lock);
    struct gw_config_mqtt cfg = c->cfg;
    struct mqtt_client_uri uri = c->uri;
    char id[sizeof c->client_id];
    gw_text_copy(id, sizeof id, c->client_id);
    char *wt = c->will_topic ? strdup(c->will_topic) : NULL;
    char *wp = c->will_payload ? strdup(c->will_payload) : NULL;
    int wq = c->will_qos;
    bool wr = c->will_retain;
    pthread_mutex_unlock(&c->lock);

    struct mosquitto *mosq = mosquitto_new(id, true, c);
    char err[200] = "";
    if (!mosq) {
        GW_LOGE(MOD, "mosquitto_new failed: %s", strerror(errno));
        goto out;
    }
    mosquitto_threaded_set(mosq, true);
    mosquitto_connect_callback_set(mosq, on_connect);
    mosquitto_message_callback_set(mosq, on_message);
    mosquitto_publish_callback_set(mosq, on_publish);
    mosquitto_log_callback_set(mosq, on_log);
    if (configure_mosq(mosq, &cfg, &uri, wt, wp, wq, wr, err, sizeof err) != GW_OK) {
        GW_LOGE(MOD, "cannot configure the connection to %s: %s", cfg.broker_uri, err);
        mosquitto_destroy(mosq);
        mosq = NULL;
    }
out:
    free(wt);
    free(wp);
    return mosq;
}

/* Sends what is pending and waits for its acknowledgements, then DISCONNECT, within
 * STOP_FLUSH_MS. Why wait for PUBACKs: libmosquitto holds QoS 1 messages beyond its in-flight
 * window in an internal queue, and a DISCONNECT sent while PUBACKs are due is not written at
 * all (the socket is just closed, so the broker fires the last will and loses the rest). */
static void graceful_disconnect(struct mqtt_client *c, struct mosquitto *mosq)
{
    uint64_t deadline = gw_real_ms() + STOP_FLUSH_MS; /* bounds the stop: real time */
    for (;;) {
        pthread_mutex_lock(&c->lock);
        uint32_t unacked = c->unacked;
        pthread_mutex_unlock(&c->lock);
        if ((unacked == 0 && !mosquitto_want_write(mosq)) || gw_real_ms() >= deadline)
            break;
        if (mosquitto_loop(mosq, FLUSH_LOOP_MS, 1) != MOSQ_ERR_SUCCESS)
            return;
    }
    if (mosquitto_disconnect(mosq) != MOSQ_ERR_SUCCESS)
        return;
    while (gw_real_ms() < deadline + STOP_FLUSH_MS) {
        if (mosquitto_loop(mosq, FLUSH_LOOP_MS, 1) != MOSQ_ERR_SUCCESS)
            break; /* NO_CONN once the DISCONNECT was written and the socket closed */
    }
}

/* Ends the session of mosq (stop or reconfiguration): flushes and disconnects when the socket
 * is open, accounts the disconnection, and destroys the instance. */
static void end_session(struct mqtt_client *c, struct mosquitto *mosq, bool socket_open, const char *reason)
{
    if (socket_open)
        graceful_disconnect(c, mosq);
    pthread_mutex_lock(&c->lock);
    bool was_connected = c->connected;
    c->connected = false;
    if (was_connected)
        c->stats.disconnects++;
    c->mosq = NULL;
    pthread_mutex_unlock(&c->lock);
    if (was_connected)
        report_link(c, false, reason);
    mosquitto_destroy(mosq);
}

/* Sleeps until deadline_ms (gw_now_ms(); GW_CLOCK_NEVER: none), the socket is ready for what
 * libmosquitto wants, or the eventfd was written. Returns true when the socket needs service. */
static bool wait_network(struct mqtt_client *c, struct mosquitto *mosq, bool socket_open, uint64_t deadline_ms)
{
    struct pollfd pfd[2] = { { .fd = c->wake_fd, .events = POLLIN } };
    nfds_t n = 1;
    if (socket_open && mosq) {
        int sock = mosquitto_socket(mosq);
        if (sock < 0)
            return true; /* libmosquitto closed it: the next loop reports the loss */
        pfd[1] = (struct pollfd){ .fd = sock, .events = POLLIN | (mosquitto_want_write(mosq) ? POLLOUT : 0) };
        n = 2;
    }
    int timeout = -1;
    if (deadline_ms != GW_CLOCK_NEVER) {
        uint64_t now = gw_now_ms();
        uint64_t left = deadline_ms > now ? deadline_ms - now : 0;
        timeout = left > INT_MAX ? INT_MAX : (int)left;
    }
    int r = poll(pfd, n, timeout);
    if (r > 0 && (pfd[0].revents & POLLIN)) {
        uint64_t count;
        if (read(c->wake_fd, &count, sizeof count) < 0) {
            /* EAGAIN: another read drained it */
        }
    }
    return r > 0 && n == 2 && pfd[1].revents != 0;
}

/* The session on the open socket ended (rc from mosquitto_loop, or aborted): account, log,
 * report, schedule the next attempt. */
static void session_ended(struct mqtt_client *c, struct mqtt_client__link *link, int rc, int err_no, bool aborted,
                          struct gw_log_limit *fail_log)
{
    pthread_mutex_lock(&c->lock);
    bool connected = c->connected;
    int connack = c->connack_rc;
    char last_error[sizeof c->last_error];
    gw_text_copy(last_error, sizeof last_error, c->last_error);
    pthread_mutex_unlock(&c->lock);

    char reason[160];
    if (connack > 0)
        snprintf(reason, sizeof reason, "broker refused: %s", mosquitto_connack_string(connack));
    else if (aborted)
        snprintf(reason, sizeof reason, "no CONNACK within %u ms", MQTT_CLIENT__CONNECT_TIMEOUT_MS);
    else if (last_error[0])
        gw_text_copy(reason, sizeof reason, last_error);
    else if (rc == MOSQ_ERR_ERRNO)
        gw_text_copy(reason, sizeof reason, strerror(err_no));
    else
        gw_text_copy(reason, sizeof reason, mosquitto_strerror(rc));

    struct mqtt_client__outcome o = mqtt_client__link_lost(link, gw_now_ms(), connected);
    pthread_mutex_lock(&c->lock);
    c->connected = false;
    if (connected)
        c->stats.disconnects++;
    else
        c->stats.connect_failures++;
    c->stats.backoff_s = o.delay_s;
    pthread_mutex_unlock(&c->lock);

    if (connected)
        GW_LOGW(MOD, "connection lost: %s; reconnecting in %u s", reason, o.delay_s);
    else
        gw_log_ratelimited(fail_log, 60000, GW_LOG_WARN, MOD, "connection attempt failed: %s; retry in %u s",
                           reason, o.delay_s);
    if (o.report_down)
        report_link(c, false, reason);
}

/* One connection attempt (creating the instance first when needed). */
static void start_attempt(struct mqtt_client *c, struct mosquitto **mosqp, struct mqtt_client__link *link,
                          struct gw_log_limit *fail_log)
{
    if (!*mosqp) {
        *mosqp = make_session(c);
        if (!*mosqp) {
            /* Bad settings: retry slowly in case files appear (certificates). */
            mqtt_client__link_setup_failed(link, gw_now_ms());
            return;
        }
        pthread_mutex_lock(&c->lock);
        c->mosq = *mosqp;
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_lock(&c->lock);
    char host[sizeof c->uri.host];
    gw_text_copy(host, sizeof host, c->uri.host);
    int port = c->uri.port;
    int keepalive = c->cfg.keepalive_s ? c->cfg.keepalive_s : 120;
    c->connack_rc = -1;
    c->last_error[0] = '\0';
    pthread_mutex_unlock(&c->lock);

    int rc = mosquitto_connect_async(*mosqp, host, port, keepalive);
    int err_no = errno;
    struct mqtt_client__outcome o = mqtt_client__link_connect_result(link, gw_now_ms(), rc == MOSQ_ERR_SUCCESS);
    if (rc == MOSQ_ERR_SUCCESS)
        return;
    char reason[160];
    snprintf(reason, sizeof reason, "connect to %s:%d failed: %s", host, port,
             rc == MOSQ_ERR_ERRNO ? strerror(err_no) : mosquitto_strerror(rc));
    pthread_mutex_lock(&c->lock);
    c->stats.connect_failures++;
    c->stats.backoff_s = o.delay_s;
    pthread_mutex_unlock(&c->lock);
    gw_log_ratelimited(fail_log, 60000, GW_LOG_WARN, MOD, "%s; retry in %u s", reason, o.delay_s);
    if (o.report_down)
        report_link(c, false, reason);
}

/* Runs libmosquitto once without blocking (socket I/O, callbacks, keepalive check). */
static void service(struct mqtt_client *c, struct mosquitto *mosq, struct mqtt_client__link *link,
                    uint32_t keepalive_s, struct gw_log_limit *fail_log)
{
    int rc = mosquitto_loop(mosq, 0, 1);
    int err_no = errno;
    mqtt_client__link_serviced(link, gw_now_ms(), keepalive_s);
    if (rc != MOSQ_ERR_SUCCESS)
        session_ended(c, link, rc, err_no, false, fail_log);
}

static void *network_main(void *arg)
{
    struct mqtt_client *c = arg;
    struct mosquitto *mosq = NULL;
    struct mqtt_client__link link;
    mqtt_client__link_init(&link, gw_now_ms());
    struct gw_log_limit fail_log = { 0 };

    for (;;) {
        pthread_mutex_lock(&c->lock);
        bool stop = c->stop_req;
        bool reconfig = c->reconfig_req;
        c->reconfig_req = false;
        char why[sizeof c->reconfig_why];
        gw_text_copy(why, sizeof why, c->reconfig_why);
        bool connected = c->connected;
        uint32_t keepalive = c->cfg.keepalive_s ? c->cfg.keepalive_s : 120;
        pthread_mutex_unlock(&c->lock);
        if (stop)
            break;
        if (reconfig) {
            if (mosq)
                end_session(c, mosq, link.socket_open, why);
            mosq = NULL;
            mqtt_client__link_reset(&link, gw_now_ms());
        }

        struct mqtt_client__decision d = mqtt_client__link_decide(&link, gw_now_ms(), connected);
        switch (d.action) {
        case MQTT_CLIENT__WAIT:
            if (wait_network(c, mosq, link.socket_open, d.deadline_ms))
                service(c, mosq, &link, keepalive, &fail_log);
            break;
        case MQTT_CLIENT__CONNECT:
            start_attempt(c, &mosq, &link, &fail_log);
            break;
        case MQTT_CLIENT__SERVICE:
            service(c, mosq, &link, keepalive, &fail_log);
            break;
        case MQTT_CLIENT__ABORT:
            mosquitto_disconnect(mosq);
            session_ended(c, &link, MOSQ_ERR_SUCCESS, 0, true, &fail_log);
            break;
        }
    }

    if (mosq)
        end_session(c, mosq, link.socket_open, "stopped");
    return NULL;
}

/* ------------------------------------------------------------------ API */

static int set_will_locked(struct mqtt_client *c, const struct mqtt_client_will *will)
{
    char *topic = NULL, *payload = NULL;
    if (will && will->topic && will->topic[0]) {
        if (!topic_is_valid(will->topic) || will->qos < 0 || will->qos > 2)
            return GW_ERR_INVAL;
        topic = strdup(will->topic);
        payload = strdup(will->payload ? will->payload : "");
        if (!topic || !payload) {
            free(topic);
            free(payload);
            return GW_ERR_NOMEM;
        }
    }
    free(c->will_topic);
    free(c->will_payload);
    c->will_topic = topic;
    c->will_payload = payload;
    c->will_qos = will ? will->qos : 0;
    c->will_retain = will ? will->retain : false;
    return GW_OK;
}

int mqtt_client_create(const struct gw_config_mqtt *cfg, const struct mqtt_client_will *will,
                       struct mqtt_client **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!cfg)
        return GW_ERR_INVAL;
    struct mqtt_client_uri uri;
    int rc = mqtt_client_parse_uri(cfg->broker_uri, &uri);
    if (rc != GW_OK) {
        GW_LOGE(MOD, "bad broker URI \"%s\": expected mqtt://host[:port] or mqtts://host[:port]",
                cfg->broker_uri);
        return GW_ERR_INVAL;
    }
    struct mqtt_client *c = calloc(1, sizeof *c);
    if (!c)
        return GW_ERR_NOMEM;
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->wake_fd < 0) {
        GW_LOGE(MOD, "eventfd failed: %s", strerror(errno));
        free(c);
        return GW_ERR_NOMEM;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->dispatch_lock, NULL);
    c->cfg = *cfg;
    c->uri = uri;
    rc = mqtt_client_effective_id(cfg, c->client_id, sizeof c->client_id);
    if (rc != GW_OK)
        goto err;
    rc = mqtt_client__queue_init(&c->queue, cfg->offline_queue_size);
    if (rc != GW_OK)
        goto err;
    rc = set_will_locked(c, will);
    if (rc != GW_OK)
        goto err;
    lib_acquire();
    *out = c;
    return GW_OK;
err:
    mqtt_client__queue_free(&c->queue);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->dispatch_lock);
    close(c->wake_fd);
    free(c);
    return rc;
}

int mqtt_client_start(struct mqtt_client *c)
{
    if (!c)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&c->lock);
    if (c->started) {
        pthread_mutex_unlock(&c->lock);
        return GW_ERR_STATE;
    }
    c->stop_req = false;
    c->reconfig_req = false;
    c->started = true;
    pthread_mutex_unlock(&c->lock);
    int err = pthread_create(&c->thread, NULL, network_main, c);
    if (err == 0)
        pthread_setname_np(c->thread, "mqtt-net");
    if (err != 0) {
        GW_LOGE(MOD, "cannot start the network thread: %s", strerror(err));
        pthread_mutex_lock(&c->lock);
        c->started = false;
        pthread_mutex_unlock(&c->lock);
        return GW_ERR_IO;
    }
    return GW_OK;
}

void mqtt_client_stop(struct mqtt_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    if (!c->started) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    c->stop_req = true;
    kick(c);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    pthread_mutex_lock(&c->lock);
    c->started = false;
    c->stop_req = false;
    pthread_mutex_unlock(&c->lock);
}

void mqtt_client_destroy(struct mqtt_client *c)
{
    if (!c)
        return;
    mqtt_client_stop(c);
    mqtt_client__queue_free(&c->queue);
    free(c->will_topic);
    free(c->will_payload);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->dispatch_lock);
    close(c->wake_fd);
    free(c);
    lib_release();
}

int mqtt_client_publish(struct mqtt_client *c, const char *topic, const void *payload, size_t len,
                        int qos, bool retain)
{
    if (!c || !topic || (!payload && len) || qos < 0 || qos > 2 || len > MQTT_CLIENT_MAX_PAYLOAD ||
        !topic_is_valid(topic))
        return GW_ERR_INVAL;
    if (!payload)
        payload = "";
    int result = GW_OK;
    pthread_mutex_lock(&c->lock);
    if (c->connected && c->mosq) {
        int rc = mosquitto_publish(c->mosq, NULL, topic, (int)len, payload, qos, retain);
        if (rc == MOSQ_ERR_SUCCESS) {
            c->stats.publishes++;
            c->unacked++;
            kick(c); /* the network thread writes it */
            goto out;
        }
        if (rc != MOSQ_ERR_NO_CONN && rc != MOSQ_ERR_CONN_LOST) {
            c->stats.publish_failures++;
            result = rc == MOSQ_ERR_NOMEM ? GW_ERR_NOMEM : GW_ERR_IO;
            goto out;
        }
        /* The socket died under us: fall through to the disconnected path. */
    }
    if (qos == 0) {
        c->stats.dropped++;
        result = GW_ERR_CLOSED;
        goto out;
    }
    struct mqtt_client__msg msg;
    if (mqtt_client__msg_make(&msg, topic, payload, len, qos, retain) != GW_OK) {
        c->stats.publish_failures++;
        result = GW_ERR_NOMEM;
        goto out;
    }
    c->stats.queued++;
    mqtt_client__queue_push(&c->queue, &msg, &c->stats.dropped);
out:
    pthread_mutex_unlock(&c->lock);
    return result;
}

int mqtt_client_subscribe(struct mqtt_client *c, const char *filter, int qos,
                          mqtt_client_message_fn cb, void *ctx)
{
    if (!c || !filter || !cb || qos < 0 || qos > 2)
        return GW_ERR_INVAL;
    size_t len = strnlen(filter, MQTT_CLIENT_MAX_TOPIC);
    if (len == 0 || len >= MQTT_CLIENT_MAX_TOPIC ||
        mosquitto_sub_topic_check(filter) != MOSQ_ERR_SUCCESS)
        return GW_ERR_INVAL;
    int rc = GW_OK;
    pthread_mutex_lock(&c->lock);
    struct subscription *slot = NULL;
    for (size_t i = 0; i < MQTT_CLIENT_MAX_SUBSCRIPTIONS; i++) {
        if (c->subs[i].used && strcmp(c->subs[i].filter, filter) == 0) {
            slot = &c->subs[i];
            break;
        }
        if (!c->subs[i].used && !slot)
            slot = &c->subs[i];
    }
    if (!slot) {
        rc = GW_ERR_FULL;
    } else {
        gw_text_copy(slot->filter, sizeof slot->filter, filter);
        slot->qos = qos;
        slot->cb = cb;
        slot->ctx = ctx;
        slot->used = true;
        if (c->connected && c->mosq && mosquitto_subscribe(c->mosq, NULL, filter, qos) == MOSQ_ERR_SUCCESS)
            kick(c);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int mqtt_client_unsubscribe(struct mqtt_client *c, const char *filter)
{
    if (!c || !filter)
        return GW_ERR_INVAL;
    int rc = GW_ERR_NOT_FOUND;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < MQTT_CLIENT_MAX_SUBSCRIPTIONS; i++) {
        if (c->subs[i].used && strcmp(c->subs[i].filter, filter) == 0) {
            c->subs[i].used = false;
            if (c->connected && c->mosq && mosquitto_unsubscribe(c->mosq, NULL, filter) == MOSQ_ERR_SUCCESS)
                kick(c);
            rc = GW_OK;
        }
    }
    bool on_network_thread = c->started && pthread_equal(pthread_self(), c->thread);
    pthread_mutex_unlock(&c->lock);
    if (rc == GW_OK && !on_network_thread) {
        /* Barrier: a callback already running for this filter finishes before we return. */
        pthread_mutex_lock(&c->dispatch_lock);
        pthread_mutex_unlock(&c->dispatch_lock);
    }
    return rc;
}

void mqtt_client_set_connect_callback(struct mqtt_client *c, mqtt_client_connect_fn cb, void *ctx)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->connect_cb = cb;
    c->connect_ctx = ctx;
    bool on_network_thread = c->started && pthread_equal(pthread_self(), c->thread);
    pthread_mutex_unlock(&c->lock);
    if (!on_network_thread) {
        /* Barrier: a callback already running finishes before we return. */
        pthread_mutex_lock(&c->dispatch_lock);
        pthread_mutex_unlock(&c->dispatch_lock);
    }
}

void mqtt_client_set_link_callback(struct mqtt_client *c, mqtt_client_link_fn cb, void *ctx)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->link_cb = cb;
    c->link_ctx = ctx;
    bool on_network_thread = c->started && pthread_equal(pthread_self(), c->thread);
    pthread_mutex_unlock(&c->lock);
    if (!on_network_thread) {
        /* Barrier: a callback already running finishes before we return. */
        pthread_mutex_lock(&c->dispatch_lock);
        pthread_mutex_unlock(&c->dispatch_lock);
    }
}

int mqtt_client_set_will(struct mqtt_client *c, const struct mqtt_client_will *will)
{
    if (!c)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&c->lock);
    int rc = set_will_locked(c, will);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int mqtt_client_reconfigure(struct mqtt_client *c, const struct gw_config_mqtt *cfg)
{
    if (!c || !cfg)
        return GW_ERR_INVAL;
    struct mqtt_client_uri uri;
    if (mqtt_client_parse_uri(cfg->broker_uri, &uri) != GW_OK) {
        GW_LOGE(MOD, "reconfigure refused: bad broker URI \"%s\"; keeping %s", cfg->broker_uri,
                c->cfg.broker_uri);
        return GW_ERR_INVAL;
    }
    char id[sizeof c->client_id];
    if (mqtt_client_effective_id(cfg, id, sizeof id) != GW_OK)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&c->lock);
    c->cfg = *cfg;
    c->uri = uri;
    gw_text_copy(c->client_id, sizeof c->client_id, id);
    if (mqtt_client__queue_resize(&c->queue, cfg->offline_queue_size, &c->stats.dropped) != GW_OK)
        GW_LOGW(MOD, "offline queue keeps its size %u (no memory for %u)", c->queue.capacity,
                cfg->offline_queue_size);
    c->reconfig_req = true;
    gw_text_copy(c->reconfig_why, sizeof c->reconfig_why, "reconfiguring");
    kick(c);
    pthread_mutex_unlock(&c->lock);
    GW_LOGI(MOD, "reconfigured: broker %s, client id %s", cfg->broker_uri, id);
    return GW_OK;
}

int mqtt_client_reconnect_now(struct mqtt_client *c, const char *why)
{
    if (!c)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&c->lock);
    c->reconfig_req = true;
    gw_text_copy(c->reconfig_why, sizeof c->reconfig_why, why && why[0] ? why : "asked to reconnect");
    kick(c);
    pthread_mutex_unlock(&c->lock);
    GW_LOGI(MOD, "reconnecting now: %s", why && why[0] ? why : "asked to");
    return GW_OK;
}

void mqtt_client_get_stats(struct mqtt_client *c, struct mqtt_client_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    out->queue_depth = c->queue.count;
    out->connected = c->connected;
    pthread_mutex_unlock(&c->lock);
}

bool mqtt_client_is_connected(struct mqtt_client *c)
{
    if (!c)
        return false;
    pthread_mutex_lock(&c->lock);
    bool v = c->connected;
    pthread_mutex_unlock(&c->lock);
    return v;
}

void mqtt_client_get_client_id(struct mqtt_client *c, char *out, size_t cap)
{
    if (!c || !out || cap == 0)
        return;
    pthread_mutex_lock(&c->lock);
    gw_text_copy(out, cap, c->client_id);
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------ test connection */

struct probe {
    int connack_rc;       /* -1 until CONNACK */
    char last_error[200];
};

static void probe_on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq;
    ((struct probe *)obj)->connack_rc = rc;
}

static void probe_on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
    (void)mosq;
    struct probe *p = obj;
    /* Keep the first error line: OpenSSL's reason comes before the generic follow-ups. */
    if ((level == MOSQ_LOG_ERR) && p->last_error[0] == '\0')
        gw_text_copy(p->last_error, sizeof p->last_error, str);
}

static bool tls_text_says_verify(const char *s)
{
    return strstr(s, "certificate verify failed") || strstr(s, "hostname") ||
           strstr(s, "host name") || strstr(s, "self signed") || strstr(s, "self-signed");
}

static int set_msg(char *message, size_t cap, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_msg(char *message, size_t cap, int rc, const char *fmt, ...)
{
    if (message && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, cap, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int mqtt_client_test_connection(const struct gw_config_mqtt *cfg, uint32_t timeout_ms,
                                char *message, size_t cap)
{
    if (message && cap)
        message[0] = '\0';
    if (!cfg)
        return set_msg(message, cap, GW_ERR_INVAL, "no configuration");
    if (timeout_ms == 0)
        timeout_ms = 10000;
    uint64_t deadline = gw_real_ms() + timeout_ms; /* the caller's bound: real time */
    struct mqtt_client_uri uri;
    if (mqtt_client_parse_uri(cfg->broker_uri, &uri) != GW_OK)
        return set_msg(message, cap, GW_ERR_INVAL,
                       "bad broker URI \"%s\": expected mqtt://host[:port] or mqtts://host[:port]",
                       cfg->broker_uri);

    /* Resolve first so a DNS failure gets its own message (libmosquitto only says EAI). */
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(uri.host, NULL, &hints, &ai);
    if (gai != 0)
        return set_msg(message, cap, GW_ERR_NOT_FOUND,
                       "DNS failure: cannot resolve host \"%s\" (%s); check the broker address",
                       uri.host, gai_strerror(gai));
    freeaddrinfo(ai);

    char id[128];
    if (mqtt_client_effective_id(cfg, id, sizeof id) != GW_OK)
        return set_msg(message, cap, GW_ERR_INVAL, "client id too long");
    /* A distinct id so the probe never kicks the running gateway off the broker. */
    char probe_id[160];
    snprintf(probe_id, sizeof probe_id, "%.100s-test-%ld", id, (long)getpid());

    lib_acquire();
    int result;
    struct probe p = { .connack_rc = -1 };
    struct mosquitto *mosq = mosquitto_new(probe_id, true, &p);
    if (!mosq) {
        result = set_msg(message, cap, GW_ERR_NOMEM, "out of memory");
        goto out;
    }
    mosquitto_connect_callback_set(mosq, probe_on_connect);
    mosquitto_log_callback_set(mosq, probe_on_log);
    char err[200] = "";
    result = configure_mosq(mosq, cfg, &uri, NULL, NULL, 0, false, err, sizeof err);
    if (result != GW_OK) {
        set_msg(message, cap, result, "%s", err);
        goto out;
    }

    int rc = mosquitto_connect_async(mosq, uri.host, uri.port, cfg->keepalive_s ? cfg->keepalive_s : 120);
    int err_no = errno;
    while (rc == MOSQ_ERR_SUCCESS && p.connack_rc < 0 && gw_real_ms() < deadline) {
        rc = mosquitto_loop(mosq, FLUSH_LOOP_MS, 1);
        err_no = errno;
    }

    if (p.connack_rc == 0) {
        mosquitto_disconnect(mosq);
        mosquitto_loop(mosq, FLUSH_LOOP_MS, 1);
        result = set_msg(message, cap, GW_OK, "connected to %s:%u%s%s%s%s", uri.host,
                         (unsigned)uri.port, uri.tls ? " over TLS" : "",
                         cfg->cert_file[0] && uri.tls ? " with a client certificate" : "",
                         cfg->username[0] ? " as user " : ", no user name", cfg->username);
    } else if (p.connack_rc == 4 || p.connack_rc == 5) {
        result = set_msg(message, cap, GW_ERR_AUTH,
                         "bad credentials: the broker refused user \"%s\" (%s); check user name "
                         "and password",
                         cfg->username, mosquitto_connack_string(p.connack_rc));
    } else if (p.connack_rc > 0) {
        result = set_msg(message, cap, GW_ERR_NACK, "the broker refused the connection: %s",
                         mosquitto_connack_string(p.connack_rc));
    } else if (rc == MOSQ_ERR_SUCCESS) {
        result = set_msg(message, cap, GW_ERR_TIMEOUT,
                         "timeout: no answer from %s:%u within %u ms (firewall, wrong port, or "
                         "TLS expected on one side only?)",
                         uri.host, (unsigned)uri.port, timeout_ms);
    } else if (rc == MOSQ_ERR_EAI) {
        result = set_msg(message, cap, GW_ERR_NOT_FOUND, "DNS failure: cannot resolve host \"%s\"",
                         uri.host);
    } else if (rc == MOSQ_ERR_ERRNO && (err_no == ECONNREFUSED)) {
        result = set_msg(message, cap, GW_ERR_CLOSED,
                         "connection refused by %s:%u: no broker listening on that port",
                         uri.host, (unsigned)uri.port);
    } else if (rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_TLS_HANDSHAKE ||
               (uri.tls && (rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO))) {
        if (tls_text_says_verify(p.last_error))
            result = set_msg(message, cap, GW_ERR_TLS,
                             "TLS verification failed: the broker certificate is not trusted by "
                             "the CA file or does not match host \"%s\" (%s)",
                             uri.host, p.last_error);
        else if (strstr(p.last_error, "certificate required") || strstr(p.last_error, "alert"))
            result = set_msg(message, cap, GW_ERR_TLS,
                             "TLS handshake rejected by the broker (client certificate required "
                             "or refused?): %s",
                             p.last_error);
        else
            result = set_msg(message, cap, GW_ERR_TLS,
                             "TLS failure talking to %s:%u (%s); %s",
                             uri.host, (unsigned)uri.port,
                             p.last_error[0] ? p.last_error : mosquitto_strerror(rc),
                             cfg->cert_file[0] ? "is the port a TLS listener and the client "
                                                 "certificate accepted by the broker?"
                                               : "the broker may require a client certificate "
                                                 "(none configured), or the port is not TLS");
    } else if (rc == MOSQ_ERR_CONN_LOST) {
        result = set_msg(message, cap, GW_ERR_CLOSED,
                         "the broker closed the connection before accepting it (%s)",
                         p.last_error[0] ? p.last_error : "no reason given");
    } else {
        result = set_msg(message, cap, GW_ERR_IO, "network error: %s",
                         rc == MOSQ_ERR_ERRNO ? strerror(err_no) : mosquitto_strerror(rc));
    }
out:
    if (mosq)
        mosquitto_destroy(mosq);
    lib_release();
    if (result == GW_OK)
        GW_LOGI(MOD, "test connection: %s", message ? message : "ok");
    else
        GW_LOGW(MOD, "test connection to %s failed: %s", cfg->broker_uri, message ? message : "");
    return result;
}
