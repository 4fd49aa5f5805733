/* Test helpers for the MQTT integration tests and the benchmark: a real mosquitto broker on a
 * free loopback port (generated config in a mkdtemp dir, always killed and reaped), TLS
 * material made with the openssl CLI, and a libmosquitto subscriber that records messages. */
#ifndef MQTT_BROKER_H
#define MQTT_BROKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct test_broker {
    const char *exe;        /* path of mosquitto */
    char dir[64];           /* work dir (config, log, certs) */
    char conf_path[300];
    char log_path[300];
    char extra[2048];       /* extra config lines for the listener */
    uint16_t port;
    pid_t pid;              /* 0 = not running */
};

/* Creates a temp dir (mkdtemp) for a broker; exe is the mosquitto path. Returns 0 or -1. */
int test_broker_init(struct test_broker *b, const char *exe);

/* Starts mosquitto with `extra` config lines (NULL = anonymous plain listener) on b->port (a free
 * port is chosen when 0) and waits until the port accepts (10 s deadline). Returns 0 or -1. */
int test_broker_start(struct test_broker *b, const char *extra);

/* SIGKILL (hard = true, as a crash) or SIGTERM, then reaps. Safe when not running. */
void test_broker_stop(struct test_broker *b, bool hard);

/* Stops the broker and removes the temp dir. */
void test_broker_cleanup(struct test_broker *b);

/* Waits until the broker log contains text (timeout_ms). Returns true when found. */
bool test_broker_log_contains(struct test_broker *b, const char *text, uint32_t timeout_ms);

/* Runs a shell command quietly; returns its exit status (or -1). */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Makes in dir: ca.crt/ca.key, server.crt/key (CN localhost, SAN localhost + 127.0.0.1),
 * wrong.crt/key (signed by ca for "wrong.example" only), client.crt/key signed by ca, and
 * other-ca.crt (an unrelated CA). Returns 0 or -1. */
int test_make_certs(const char *dir);

/* A recorded message. */
struct test_msg {
    char topic[256];
    char payload[4096];     /* NUL-terminated copy (truncated when larger) */
    int len;
    int qos;
    bool retain;
};

struct test_sub;

/* Connects a subscriber on 127.0.0.1:port (plain) to filter with QoS 1. user/pass may be NULL.
 * Waits for the SUBACK (5 s). Returns NULL on failure. */
struct test_sub *test_sub_create(uint16_t port, const char *filter, const char *user,
                                 const char *pass);
void test_sub_destroy(struct test_sub *s);

/* Waits until at least `count` messages on topic were recorded (timeout_ms), copies the last one
 * into out (may be NULL). Returns the number recorded on that topic. */
int test_sub_wait(struct test_sub *s, const char *topic, int count, uint32_t timeout_ms,
                  struct test_msg *out);

/* Copies the i-th (0-based) message recorded on topic. Returns 0 or -1. */
int test_sub_get(struct test_sub *s, const char *topic, int index, struct test_msg *out);

/* Number of messages recorded on topic (NULL = all topics). */
int test_sub_count(struct test_sub *s, const char *topic);

/* Forgets every recorded message. */
void test_sub_clear(struct test_sub *s);

/* Publishes from the subscriber's connection (QoS 1). Returns 0 or -1. */
int test_sub_publish(struct test_sub *s, const char *topic, const char *payload, bool retain);

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t test_now_ms(void);

/* Messages received through a gateway-side mqtt_client subscription (mqtt_client_subscribe
 * callback inbox_cb with ctx = the inbox). Payloads kept NUL-terminated, truncated to 511 bytes;
 * at most 64 are kept. Initialise with { .lock = PTHREAD_MUTEX_INITIALIZER }. */
struct mqtt_client_message;
struct inbox {
    pthread_mutex_t lock;
    char payloads[64][512];
    int count;
};
void inbox_cb(const struct mqtt_client_message *m, void *ctx);
/* Waits until the inbox holds count messages or timeout_ms passed; returns how many it holds. */
int inbox_wait(struct inbox *in, int count, uint32_t timeout_ms);

#endif
