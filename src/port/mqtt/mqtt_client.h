/* MQTT / MQTTS client of the gateway (module reference section 6), over libmosquitto.
 *
 * One opaque handle = one broker connection with its own network thread. The connection is
 * made asynchronously after mqtt_client_start() and kept up forever: on loss it reconnects with
 * an exponential backoff of 1, 2, 4, 8, 16, 32, 32, ... seconds, unlimited attempts. Link
 * changes (up, down with the reason) go to the link callback (mqtt_client_set_link_callback);
 * the client knows nothing of the event bus.
 *
 * While disconnected, QoS 1 messages (alerts) wait in a bounded FIFO (offline_queue_size) and
 * are sent in order on the next connection; when full the oldest is dropped. QoS 0 messages
 * published while disconnected are dropped. Every drop is counted.
 *
 * Security: mqtts:// verifies the server with ca_file (mosquitto_tls_set); cert_file+key_file
 * add a client certificate (mutual TLS); tls_insecure skips only the host-name check and only
 * when set explicitly.
 *
 * All functions are thread-safe unless stated otherwise. Callbacks (message, connect, link) run on
 * the network thread: they may call mqtt_client_publish() but must not call
 * stop/destroy/reconfigure.
 */
#ifndef MQTT_CLIENT_H
#define MQTT_CLIENT_H

#include "gw_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mqtt_client;

#define MQTT_CLIENT_MAX_TOPIC 256       /* bytes, NUL included */
#define MQTT_CLIENT_MAX_PAYLOAD 65536   /* bytes accepted by mqtt_client_publish */
#define MQTT_CLIENT_MAX_SUBSCRIPTIONS 16
#define MQTT_CLIENT_BACKOFF_MAX_S 32

/* A received message, valid only during the callback. topic is NUL-terminated; payload[0..len)
 * is followed by a NUL byte for convenience (the payload itself may contain NULs). */
struct mqtt_client_message {
    const char *topic;
    const void *payload;
    size_t len;
    int qos;
    bool retain;            /* true: a retained message replayed by the broker, not a new one */
};

/* Called on the network thread for each message matching a subscription. */
typedef void (*mqtt_client_message_fn)(const struct mqtt_client_message *msg, void *ctx);

/* Called on the network thread after every successful (re)connection, after subscriptions were
 * renewed and the offline queue was flushed (so it may publish at once). */
typedef void (*mqtt_client_connect_fn)(void *ctx);

/* Called on the network thread when the link changes: up = true after every successful
 * (re)connection, right after the connect callback; up = false with a one-line reason when an
 * established connection is lost or closed (stop, reconfiguration), and for the first failed
 * attempt after start (not for every retry while the broker stays away). reason is NULL when up
 * and valid only during the call. */
typedef void (*mqtt_client_link_fn)(bool up, const char *reason, void *ctx);

/* Last will, sent by the broker when the connection dies without a DISCONNECT. */
struct mqtt_client_will {
    const char *topic;   /* NULL or "" = no will */
    const char *payload; /* NUL-terminated text */
    int qos;             /* 0..2 */
    bool retain;
};

struct mqtt_client_stats {
    uint64_t connects;          /* successful CONNACKs */
    uint64_t disconnects;       /* connections lost or closed after a CONNACK */
    uint64_t connect_failures;  /* attempts that never reached CONNACK */
    uint64_t publishes;         /* messages handed to libmosquitto while connected */
    uint64_t publish_failures;  /* rejected by libmosquitto (bad topic, too large, ...) */
    uint64_t queued;            /* QoS 1 messages put in the offline queue */
    uint64_t dropped;           /* QoS 0 while disconnected + queue overflow */
    uint64_t received;          /* messages delivered to subscription callbacks */
    uint32_t queue_depth;       /* messages waiting in the offline queue now */
    uint32_t backoff_s;         /* delay before the next attempt (0 when connected) */
    bool connected;
};

/* Parsed broker URI. */
struct mqtt_client_uri {
    char host[128];
    uint16_t port;
    bool tls;
};

/* Parses "mqtt://host[:port]" or "mqtts://host[:port]" (default ports 1883 / 8883; IPv6 as
 * "[::1]:1883"; a trailing "/" is accepted). Pure function.
 * @retval GW_OK
 * @retval GW_ERR_INVAL unknown scheme, empty host, bad or zero port, trailing junk
 * @retval GW_ERR_OVERFLOW host longer than out->host */
int mqtt_client_parse_uri(const char *uri, struct mqtt_client_uri *out);

/* Delay in seconds before reconnect attempt number `attempt` (1 = first retry after a loss):
 * 1, 2, 4, 8, 16, 32, 32, ... Pure function. */
uint32_t mqtt_client_backoff_s(uint32_t attempt);

/* The effective client id of cfg: cfg->client_id, or "tinybms-gw-<hostname>" when empty.
 * @retval GW_OK, GW_ERR_OVERFLOW (cap too small) */
int mqtt_client_effective_id(const struct gw_config_mqtt *cfg, char *out, size_t cap);

/* Creates a stopped client. cfg is copied. will may be NULL.
 * Does not connect: see mqtt_client_start().
 * @retval GW_OK, GW_ERR_INVAL (NULL cfg/out, bad URI), GW_ERR_NOMEM, GW_ERR_IO (libmosquitto) */
int mqtt_client_create(const struct gw_config_mqtt *cfg, const struct mqtt_client_will *will,
                       struct mqtt_client **out);

/* Starts the network thread; connection happens in the background.
 * @retval GW_OK, GW_ERR_STATE (already started), GW_ERR_IO (thread creation) */
int mqtt_client_start(struct mqtt_client *client);

/* Sends what is pending (up to ~1 s), disconnects cleanly (no will) and joins the network
 * thread. Queued offline messages stay queued. No-op when not started. */
void mqtt_client_stop(struct mqtt_client *client);

/* Stops if needed and frees everything. NULL accepted. */
void mqtt_client_destroy(struct mqtt_client *client);

/* Publishes payload[0..len) on topic (both copied). qos 0..1 (2 is accepted and sent as 2 while
 * connected, queued as QoS 1 traffic while not).
 * @retval GW_OK sent to libmosquitto, or queued (QoS >= 1 while disconnected)
 * @retval GW_ERR_CLOSED QoS 0 while disconnected: dropped and counted
 * @retval GW_ERR_INVAL bad topic (empty, wildcard, too long), bad qos, payload too large
 * @retval GW_ERR_NOMEM, GW_ERR_IO (libmosquitto refused; counted in publish_failures) */
int mqtt_client_publish(struct mqtt_client *client, const char *topic, const void *payload,
                        size_t len, int qos, bool retain);

/* Subscribes topic_filter (wildcards allowed) with callback cb(ctx); renewed on every
 * reconnection. Replaces the callback of an existing identical filter.
 * @retval GW_OK, GW_ERR_INVAL (bad filter/qos, NULL cb), GW_ERR_FULL (too many filters) */
int mqtt_client_subscribe(struct mqtt_client *client, const char *topic_filter, int qos,
                          mqtt_client_message_fn cb, void *ctx);

/* Removes a subscription. On return its callback is not running and won't be called again
 * (unless called from that callback itself).
 * @retval GW_OK, GW_ERR_NOT_FOUND */
int mqtt_client_unsubscribe(struct mqtt_client *client, const char *topic_filter);

/* Sets the connect callback (one slot; NULL clears). On return a previously set callback is
 * not running any more (unless called from that callback). */
void mqtt_client_set_connect_callback(struct mqtt_client *client, mqtt_client_connect_fn cb,
                                      void *ctx);

/* Sets the link callback (one slot; NULL clears). On return a previously set callback is not
 * running any more (unless called from that callback). */
void mqtt_client_set_link_callback(struct mqtt_client *client, mqtt_client_link_fn cb, void *ctx);

/* Replaces the last will; applied at the next connection (call reconfigure to apply now).
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM */
int mqtt_client_set_will(struct mqtt_client *client, const struct mqtt_client_will *will);

/* Applies new settings: disconnects (if connected) and reconnects with cfg (copied) right away
 * when started. The offline queue is kept (it is resized to the new offline_queue_size, oldest
 * dropped). Subscriptions are kept.
 * @retval GW_OK, GW_ERR_INVAL (bad URI: the old settings stay) */
int mqtt_client_reconfigure(struct mqtt_client *client, const struct gw_config_mqtt *cfg);

/* Ends the session (if any) and connects again at once, the back-off forgotten: for a network
 * change (a new address leaves the old socket dead until the keepalive notices). why is what
 * the link reports and the log says. Harmless when stopped (the next start connects).
 * @retval GW_OK, GW_ERR_INVAL */
int mqtt_client_reconnect_now(struct mqtt_client *client, const char *why);

void mqtt_client_get_stats(struct mqtt_client *client, struct mqtt_client_stats *out);
bool mqtt_client_is_connected(struct mqtt_client *client);

/* Copies the effective client id into out (see mqtt_client_effective_id). */
void mqtt_client_get_client_id(struct mqtt_client *client, char *out, size_t cap);

/* Blocks until a connection with cfg succeeds (CONNACK accepted, then disconnects cleanly) or
 * fails, at most timeout_ms (0 = 10000). Independent of any running client. Writes a one-line
 * human message to message[0..cap) (may be NULL) saying what to fix.
 * @retval GW_OK connected and authenticated
 * @retval GW_ERR_INVAL bad URI / settings (e.g. client cert without key, unreadable CA file)
 * @retval GW_ERR_NOT_FOUND host name does not resolve (DNS failure)
 * @retval GW_ERR_CLOSED connection refused (nothing listening on the port) or closed by the peer
 * @retval GW_ERR_AUTH CONNACK refused: bad user name or password / not authorised
 * @retval GW_ERR_TLS TLS handshake or certificate / host-name verification failed
 * @retval GW_ERR_TIMEOUT no CONNACK before the deadline
 * @retval GW_ERR_NACK other CONNACK refusal (protocol version, client id rejected, ...)
 * @retval GW_ERR_IO other network error */
int mqtt_client_test_connection(const struct gw_config_mqtt *cfg, uint32_t timeout_ms,
                                char *message, size_t cap);

#endif
