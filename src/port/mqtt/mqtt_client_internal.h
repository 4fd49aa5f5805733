/* Private to mqtt_client (and its unit tests): the bounded offline queue (not thread-safe: the
 * client calls it under its lock) and the network thread's decisions (mqtt_link.c, pure). */
#ifndef MQTT_CLIENT_INTERNAL_H
#define MQTT_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One message waiting for a connection. topic/payload are heap copies owned by the message. */
struct mqtt_client__msg {
    char *topic;
    void *payload;
    size_t len;
    int qos;
    bool retain;
};

/* Ring buffer of at most `capacity` messages; capacity 0 keeps nothing. */
struct mqtt_client__queue {
    struct mqtt_client__msg *items;
    uint32_t capacity;
    uint32_t head;  /* oldest */
    uint32_t count;
};

/* @retval GW_OK, GW_ERR_NOMEM */
int mqtt_client__queue_init(struct mqtt_client__queue *q, uint32_t capacity);
void mqtt_client__queue_free(struct mqtt_client__queue *q);

/* Builds a message holding copies of topic and payload[0..len).
 * @retval GW_OK, GW_ERR_NOMEM (out reset) */
int mqtt_client__msg_make(struct mqtt_client__msg *out, const char *topic, const void *payload,
                          size_t len, int qos, bool retain);
void mqtt_client__msg_free(struct mqtt_client__msg *msg);

/* Appends msg (ownership moves to the queue). When full the oldest message is freed first and
 * *dropped is incremented; with capacity 0, msg itself is freed and counted. */
void mqtt_client__queue_push(struct mqtt_client__queue *q, struct mqtt_client__msg *msg,
                             uint64_t *dropped);

/* Peeks the oldest message (still owned by the queue); NULL when empty. */
struct mqtt_client__msg *mqtt_client__queue_front(struct mqtt_client__queue *q);

/* Removes and frees the oldest message. */
void mqtt_client__queue_pop(struct mqtt_client__queue *q);

/* Changes the capacity, keeping the newest messages; drops are added to *dropped.
 * @retval GW_OK, GW_ERR_NOMEM (queue unchanged) */
int mqtt_client__queue_resize(struct mqtt_client__queue *q, uint32_t capacity, uint64_t *dropped);

/* ---- the connection state machine of the network thread (pure: no clock, no I/O) ---------- */

#define MQTT_CLIENT__CONNECT_TIMEOUT_MS 15000u /* socket opened but no CONNACK: give up this attempt */

/* Thread-private state of the connection (gw_now_ms() values). */
struct mqtt_client__link {
    bool socket_open;          /* connect_async succeeded: a session is in progress */
    uint32_t failures;         /* consecutive failed attempts (1 after losing a connection) */
    uint64_t next_attempt_ms;  /* no socket: the next connect attempt */
    uint64_t attempt_started_ms;
    uint64_t service_due_ms;   /* socket open: run libmosquitto's keepalive check by then */
    bool ever_reported_down;   /* the first failure is reported; later ones only after a connection */
};

enum mqtt_client__action {
    MQTT_CLIENT__WAIT = 0,     /* sleep until deadline_ms, socket readiness or a wake-up */
    MQTT_CLIENT__CONNECT,      /* start a connection attempt */
    MQTT_CLIENT__SERVICE,      /* run libmosquitto once (I/O and keepalive) */
    MQTT_CLIENT__ABORT,        /* no CONNACK within MQTT_CLIENT__CONNECT_TIMEOUT_MS: drop the attempt */
};

struct mqtt_client__decision {
    enum mqtt_client__action action;
    uint64_t deadline_ms;      /* MQTT_CLIENT__WAIT: the next attempt, the CONNACK timeout or the
                                  keepalive service, whichever is nearest */
};

/* What a failure or a loss means for the user and the schedule. */
struct mqtt_client__outcome {
    uint32_t delay_s;          /* before the next attempt */
    bool report_down;          /* tell the link callback "down" */
};

/* Ready to connect at once. */
void mqtt_client__link_init(struct mqtt_client__link *l, uint64_t now_ms);

/* The one action due at now_ms; connected = CONNACK accepted on the open socket. */
struct mqtt_client__decision mqtt_client__link_decide(struct mqtt_client__link *l, uint64_t now_ms, bool connected);

/* connect_async returned: ok opens the session; a failure schedules the next attempt with the
 * doubling backoff (1, 2, 4 ... 32 s). */
struct mqtt_client__outcome mqtt_client__link_connect_result(struct mqtt_client__link *l, uint64_t now_ms, bool ok);

/* libmosquitto ran (I/O happened and the keepalive was checked): next service a quarter of
 * keepalive_s later (at least 1 s): a ping is then never later than 1.25 keepalives, within
 * the 1.5 the broker allows. */
void mqtt_client__link_serviced(struct mqtt_client__link *l, uint64_t now_ms, uint32_t keepalive_s);

/* The session ended (socket gone, refused, or aborted); was_connected: a CONNACK had been
 * accepted (then the backoff restarts at 1 s and the loss is always reported). */
struct mqtt_client__outcome mqtt_client__link_lost(struct mqtt_client__link *l, uint64_t now_ms, bool was_connected);

/* New settings: the session is ended by the caller; connect again at once, backoff reset. */
void mqtt_client__link_reset(struct mqtt_client__link *l, uint64_t now_ms);

/* Settings that cannot make a session (bad certificate path...): retry with the backoff. */
uint32_t mqtt_client__link_setup_failed(struct mqtt_client__link *l, uint64_t now_ms);

#endif
