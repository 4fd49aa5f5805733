/* mqtt_client against a real mosquitto: plain, password, TLS, mutual TLS, test_connection
 * messages, broker restart with the QoS 1 offline queue. argv[1] = mosquitto path. */
#define _GNU_SOURCE
#include "mqtt_broker.h"
#include "mqtt_client.h"

#include "gw_config.h"
#include "gw_error.h"
#include "support/wait.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

static const char *mosquitto_exe = "/usr/sbin/mosquitto";

/* ---- link recorder (the client's link callback) */
struct conn_events {
    pthread_mutex_t lock;
    int connected;
    int disconnected;
    char last_reason[160];
};

static void on_link(bool up, const char *reason, void *ctx)
{
    struct conn_events *e = ctx;
    pthread_mutex_lock(&e->lock);
    if (up) {
        e->connected++;
    } else {
        e->disconnected++;
        if (reason)
            snprintf(e->last_reason, sizeof e->last_reason, "%s", reason);
    }
    pthread_mutex_unlock(&e->lock);
}

static int events_get(struct conn_events *e, bool connected)
{
    pthread_mutex_lock(&e->lock);
    int v = connected ? e->connected : e->disconnected;
    pthread_mutex_unlock(&e->lock);
    return v;
}

/* Waits (timeout_ms at most) until the link callback has reported want ups (connected) or
 * downs, then returns the count. The client clears or sets its connected flag before it calls
 * the callback, so mqtt_client_is_connected() changing does not mean the callback has run. */
static int wait_events(struct conn_events *e, bool connected, int want, uint32_t timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    int v = events_get(e, connected);
    while (v < want && test_now_ms() < deadline) {
        usleep(10000);
        v = events_get(e, connected);
    }
    return v;
}

static bool wait_connected(struct mqtt_client *c, bool want, uint32_t timeout_ms)
{
    bool ok;
    WAIT_FOR(ok, mqtt_client_is_connected(c) == want, timeout_ms);
    return ok;
}

static void base_cfg(struct gw_config_mqtt *m, const char *scheme, uint16_t port)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    *m = cfg.mqtt;
    m->enabled = true;
    snprintf(m->broker_uri, sizeof m->broker_uri, "%s://127.0.0.1:%u", scheme, (unsigned)port);
    snprintf(m->client_id, sizeof m->client_id, "gw-test-%ld", (long)getpid());
    m->keepalive_s = 30;
}

/* A plain broker. Returns false (and records a failure) when it does not start. */
static bool start_broker(struct test_broker *b)
{
    if (test_broker_init(b, mosquitto_exe) || test_broker_start(b, NULL)) {
        CHECK(!"broker start");
        test_broker_cleanup(b);
        return false;
    }
    return true;
}

static void test_plain_publish_subscribe_and_events(void)
{
    struct test_broker b;
    struct conn_events ev = { .lock = PTHREAD_MUTEX_INITIALIZER };
    if (!start_broker(&b))
        return;

    struct test_sub *sub = test_sub_create(b.port, "t/#", NULL, NULL);
    CHECK(sub != NULL);

    struct gw_config_mqtt m;
    base_cfg(&m, "mqtt", b.port);
    char msg[256];
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_OK);
    CHECK(strstr(msg, "connected") != NULL);

    struct mqtt_client_will will = { .topic = "t/availability", .payload = "offline", .qos = 1,
                                      .retain = true };
    struct mqtt_client *c = NULL;
    CHECK_EQ_INT(mqtt_client_create(&m, &will, &c), GW_OK);
    mqtt_client_set_link_callback(c, on_link, &ev);
    struct inbox in = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CHECK_EQ_INT(mqtt_client_subscribe(c, "t/in/#", 1, inbox_cb, &in), GW_OK);
    CHECK_EQ_INT(mqtt_client_start(c), GW_OK);
    CHECK_EQ_INT(mqtt_client_start(c), GW_ERR_STATE);
    CHECK(wait_connected(c, true, 10000));
    CHECK_EQ_INT(wait_events(&ev, true, 1, 10000), 1);

    CHECK_EQ_INT(mqtt_client_publish(c, "t/value", "12.5", 4, 0, true), GW_OK);
    CHECK_EQ_INT(mqtt_client_publish(c, "t/alert", "{\"a\":1}", 7, 1, false), GW_OK);
    struct test_msg tm;
    CHECK_EQ_INT(test_sub_wait(sub, "t/value", 1, 5000, &tm), 1);
    CHECK_STR(tm.payload, "12.5");
    CHECK_EQ_INT(tm.qos, 0);
    CHECK_EQ_INT(test_sub_wait(sub, "t/alert", 1, 5000, &tm), 1);
    CHECK_STR(tm.payload, "{\"a\":1}");
    CHECK_EQ_INT(tm.qos, 1);
    CHECK(!tm.retain);

    /* Retained: a late subscriber gets it with the retain flag. */
    struct test_sub *late = test_sub_create(b.port, "t/value", NULL, NULL);
    CHECK(late != NULL);
    if (late) {
        CHECK_EQ_INT(test_sub_wait(late, "t/value", 1, 5000, &tm), 1);
        CHECK(tm.retain);
        test_sub_destroy(late);
    }

    /* Incoming messages reach the subscription callback. */
    if (sub) {
        CHECK_EQ_INT(test_sub_publish(sub, "t/in/cmd", "hello", false), 0);
        CHECK_EQ_INT(inbox_wait(&in, 1, 5000), 1);
        CHECK_STR(in.payloads[0], "hello");
    }

    /* A burst larger than libmosquitto's in-flight window, then a clean stop: every message
     * arrives and the broker sees a real DISCONNECT (so it discards the last will). */
    struct mqtt_client_stats st;
    mqtt_client_get_stats(c, &st);
    CHECK_EQ_INT(st.connects, 1);
    CHECK(st.publishes >= 2);
    CHECK(st.connected);
    char text[16];
    for (int i = 0; i < 50; i++) {
        snprintf(text, sizeof text, "%d", i);
        CHECK_EQ_INT(mqtt_client_publish(c, "t/burst", text, strlen(text), 1, false), GW_OK);
    }
    mqtt_client_stop(c);
    CHECK(!mqtt_client_is_connected(c));
    char line[128];
    snprintf(line, sizeof line, "Received DISCONNECT from %s", m.client_id);
    CHECK(test_broker_log_contains(&b, line, 5000));
    CHECK_EQ_INT(test_sub_wait(sub, "t/burst", 50, 10000, &tm), 50);
    CHECK_STR(tm.payload, "49");
    CHECK_EQ_INT(events_get(&ev, false), 1); /* stop() joined the network thread: reported */
    CHECK_EQ_INT(test_sub_count(sub, "t/availability"), 0);

    /* Restart after stop works. */
    CHECK_EQ_INT(mqtt_client_start(c), GW_OK);
    CHECK(wait_connected(c, true, 10000));
    mqtt_client_destroy(c);
    test_sub_destroy(sub);
    test_broker_cleanup(&b);
}

static void test_refused_and_timeout_messages(void)
{
    struct test_broker b;
    CHECK_EQ_INT(test_broker_init(&b, mosquitto_exe), 0);
    /* A port with nothing listening: start and stop a broker to get a port that is free now. */
    CHECK_EQ_INT(test_broker_start(&b, NULL), 0);
    uint16_t port = b.port;
    test_broker_stop(&b, true);
    struct gw_config_mqtt m;
    base_cfg(&m, "mqtt", port);
    char msg[256];
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_ERR_CLOSED);
    CHECK(strstr(msg, "refused") != NULL);
    printf("refused: %s\n", msg);

    /* A listening socket that never answers: timeout. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(fd, 4) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    base_cfg(&m, "mqtt", ntohs(a.sin_port));
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 700, msg, sizeof msg), GW_ERR_TIMEOUT);
    CHECK(strstr(msg, "timeout") != NULL);
    printf("timeout: %s\n", msg);
    close(fd);
    test_broker_cleanup(&b);
}

static void test_password_file(void)
{
    struct test_broker b;
    if (test_broker_init(&b, mosquitto_exe)) {
        CHECK(!"init");
        return;
    }
    CHECK_EQ_INT(test_sh("mosquitto_passwd -c -b '%s/passwd' gwuser 's3cret pass' >/dev/null 2>&1",
                         b.dir),
                 0);
    char extra[512];
    snprintf(extra, sizeof extra, "allow_anonymous false\npassword_file %s/passwd", b.dir);
    if (test_broker_start(&b, extra)) {
        CHECK(!"broker start");
        test_broker_cleanup(&b);
        return;
    }
    struct gw_config_mqtt m;
    base_cfg(&m, "mqtt", b.port);
    char msg[256];
    snprintf(m.username, sizeof m.username, "gwuser");
    snprintf(m.password, sizeof m.password, "wrong");
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_ERR_AUTH);
    CHECK(strstr(msg, "bad credentials") != NULL);
    printf("wrong password: %s\n", msg);

    m.username[0] = m.password[0] = '\0';
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_ERR_AUTH);

    snprintf(m.username, sizeof m.username, "gwuser");
    snprintf(m.password, sizeof m.password, "s3cret pass");
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_OK);
    printf("right password: %s\n", msg);

    /* The running client with the right password connects. */
    struct mqtt_client *c = NULL;
    CHECK_EQ_INT(mqtt_client_create(&m, NULL, &c), GW_OK);
    CHECK_EQ_INT(mqtt_client_start(c), GW_OK);
    CHECK(wait_connected(c, true, 10000));

    /* Reconfigure to a wrong password: disconnects, keeps failing, counts failures. */
    snprintf(m.password, sizeof m.password, "nope");
    CHECK_EQ_INT(mqtt_client_reconfigure(c, &m), GW_OK);
    CHECK(wait_connected(c, false, 10000));
    uint64_t deadline = test_now_ms() + 10000;
    struct mqtt_client_stats st;
    do {
        mqtt_client_get_stats(c, &st);
        usleep(20000);
    } while (st.connect_failures == 0 && test_now_ms() < deadline);
    CHECK(st.connect_failures >= 1);
    CHECK(!st.connected);
    /* And back to the right one. */
    snprintf(m.password, sizeof m.password, "s3cret pass");
    CHECK_EQ_INT(mqtt_client_reconfigure(c, &m), GW_OK);
    CHECK(wait_connected(c, true, 10000));
    mqtt_client_destroy(c);
    test_broker_cleanup(&b);
}

static void test_tls_and_mutual_tls(void)
{
    struct test_broker b;
    if (test_broker_init(&b, mosquitto_exe) || test_make_certs(b.dir)) {
        CHECK(!"certs");
        test_broker_cleanup(&b);
        return;
    }
    char extra[1024];
    snprintf(extra, sizeof extra,
             "allow_anonymous true\ncafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
             "require_certificate false",
             b.dir, b.dir, b.dir);
    if (test_broker_start(&b, extra)) {
        CHECK(!"tls broker start");
        test_broker_cleanup(&b);
        return;
    }
    struct gw_config_mqtt m;
    base_cfg(&m, "mqtts", b.port);
    char msg[512];
    snprintf(m.ca_file, sizeof m.ca_file, "%s/ca.crt", b.dir);
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_OK);
    CHECK(strstr(msg, "TLS") != NULL);
    printf("tls: %s\n", msg);

    /* Host name: the certificate names localhost too. */
    snprintf(m.broker_uri, sizeof m.broker_uri, "mqtts://localhost:%u", (unsigned)b.port);
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_OK);

    /* Wrong CA: verification failure. */
    snprintf(m.broker_uri, sizeof m.broker_uri, "mqtts://127.0.0.1:%u", (unsigned)b.port);
    snprintf(m.ca_file, sizeof m.ca_file, "%s/other-ca.crt", b.dir);
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_ERR_TLS);
    CHECK(strstr(msg, "verification") != NULL);
    printf("wrong CA: %s\n", msg);

    /* Plain MQTT to the TLS port does not pass. */
    struct gw_config_mqtt plain;
    base_cfg(&plain, "mqtt", b.port);
    CHECK(mqtt_client_test_connection(&plain, 1500, msg, sizeof msg) != GW_OK);
    printf("plain to TLS port: %s\n", msg);

    /* The running client over TLS: round trip through its own subscription. */
    snprintf(m.ca_file, sizeof m.ca_file, "%s/ca.crt", b.dir);
    struct mqtt_client *c = NULL;
    CHECK_EQ_INT(mqtt_client_create(&m, NULL, &c), GW_OK);
    struct inbox in = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CHECK_EQ_INT(mqtt_client_subscribe(c, "tls/echo", 1, inbox_cb, &in), GW_OK);
    CHECK_EQ_INT(mqtt_client_start(c), GW_OK);
    CHECK(wait_connected(c, true, 10000));
    CHECK_EQ_INT(mqtt_client_publish(c, "tls/echo", "over-tls", 8, 1, false), GW_OK);
    CHECK_EQ_INT(inbox_wait(&in, 1, 5000), 1);
    CHECK_STR(in.payloads[0], "over-tls");
    mqtt_client_destroy(c);

    /* A certificate from the right CA but for another host name: refused unless tls_insecure. */
    test_broker_stop(&b, false);
    snprintf(extra, sizeof extra,
             "allow_anonymous true\ncafile %s/ca.crt\ncertfile %s/wrong.crt\nkeyfile %s/wrong.key\n"
             "require_certificate false",
             b.dir, b.dir, b.dir);
    if (test_broker_start(&b, extra)) {
        CHECK(!"wrong-name broker start");
        test_broker_cleanup(&b);
        return;
    }
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_ERR_TLS);
    CHECK(strstr(msg, "verification") != NULL);
    printf("wrong host name: %s\n", msg);
    m.tls_insecure = true;
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_OK);
    m.tls_insecure = false;

    /* Mutual TLS. */
    test_broker_stop(&b, false);
    snprintf(extra, sizeof extra,
             "allow_anonymous true\ncafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
             "require_certificate true",
             b.dir, b.dir, b.dir);
    if (test_broker_start(&b, extra)) {
        CHECK(!"mtls broker start");
        test_broker_cleanup(&b);
        return;
    }
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_ERR_TLS);
    printf("mTLS without client cert: %s\n", msg);
    snprintf(m.cert_file, sizeof m.cert_file, "%s/client.crt", b.dir);
    snprintf(m.key_file, sizeof m.key_file, "%s/client.key", b.dir);
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 5000, msg, sizeof msg), GW_OK);
    CHECK(strstr(msg, "client certificate") != NULL);
    printf("mTLS with client cert: %s\n", msg);

    c = NULL;
    CHECK_EQ_INT(mqtt_client_create(&m, NULL, &c), GW_OK);
    struct inbox in2 = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CHECK_EQ_INT(mqtt_client_subscribe(c, "tls/echo", 1, inbox_cb, &in2), GW_OK);
    CHECK_EQ_INT(mqtt_client_start(c), GW_OK);
    CHECK(wait_connected(c, true, 10000));
    CHECK_EQ_INT(mqtt_client_publish(c, "tls/echo", "mtls", 4, 1, false), GW_OK);
    CHECK_EQ_INT(inbox_wait(&in2, 1, 5000), 1);
    CHECK_STR(in2.payloads[0], "mtls");
    mqtt_client_destroy(c);
    test_broker_cleanup(&b);
}

static void test_broker_restart_offline_queue(void)
{
    struct test_broker b;
    struct conn_events ev = { .lock = PTHREAD_MUTEX_INITIALIZER };
    if (!start_broker(&b))
        return;

    struct gw_config_mqtt m;
    base_cfg(&m, "mqtt", b.port);
    m.offline_queue_size = 3;
    struct mqtt_client *c = NULL;
    CHECK_EQ_INT(mqtt_client_create(&m, NULL, &c), GW_OK);
    mqtt_client_set_link_callback(c, on_link, &ev);
    /* The client's own subscription is renewed before the queue is flushed, so it sees the
     * queued alerts whatever the timing of the restart. */
    struct inbox in = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CHECK_EQ_INT(mqtt_client_subscribe(c, "q/alerts", 1, inbox_cb, &in), GW_OK);
    CHECK_EQ_INT(mqtt_client_start(c), GW_OK);
    CHECK(wait_connected(c, true, 10000));

    test_broker_stop(&b, true);
    CHECK(wait_connected(c, false, 10000));
    CHECK_EQ_INT(wait_events(&ev, false, 1, 10000), 1);

    char text[16];
    for (int i = 1; i <= 5; i++) {
        snprintf(text, sizeof text, "alert-%d", i);
        CHECK_EQ_INT(mqtt_client_publish(c, "q/alerts", text, strlen(text), 1, false), GW_OK);
    }
    CHECK_EQ_INT(mqtt_client_publish(c, "q/value", "1", 1, 0, true), GW_ERR_CLOSED);
    struct mqtt_client_stats st;
    mqtt_client_get_stats(c, &st);
    CHECK_EQ_INT(st.queue_depth, 3);
    CHECK_EQ_INT(st.dropped, 3); /* 2 overflow + 1 QoS 0 */

    CHECK_EQ_INT(test_broker_start(&b, NULL), 0); /* same port */
    CHECK(wait_connected(c, true, 60000));
    CHECK_EQ_INT(inbox_wait(&in, 3, 10000), 3);
    CHECK_STR(in.payloads[0], "alert-3");
    CHECK_STR(in.payloads[1], "alert-4");
    CHECK_STR(in.payloads[2], "alert-5");
    mqtt_client_get_stats(c, &st);
    CHECK_EQ_INT(st.queue_depth, 0);
    CHECK_EQ_INT(st.connects, 2);
    CHECK_EQ_INT(st.disconnects, 1);
    CHECK_EQ_INT(wait_events(&ev, true, 2, 10000), 2);
    pthread_mutex_lock(&ev.lock);
    printf("disconnect reason: %s\n", ev.last_reason);
    CHECK(ev.last_reason[0] != '\0');
    pthread_mutex_unlock(&ev.lock);

    mqtt_client_destroy(c);
    test_broker_cleanup(&b);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        mosquitto_exe = argv[1];
    static const struct test_case_ cases[] = {
        TEST_CASE(test_plain_publish_subscribe_and_events),
        TEST_CASE(test_refused_and_timeout_messages),
        TEST_CASE(test_password_file),
        TEST_CASE(test_tls_and_mutual_tls),
        TEST_CASE(test_broker_restart_offline_queue),
    };
    return test_run_(cases, sizeof cases / sizeof cases[0]);
}
