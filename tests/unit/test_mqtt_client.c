/* Unit tests of mqtt_client's pure parts: URI parsing, backoff, offline queue, argument checks,
 * disconnected publishing (no broker needed). */
#define _POSIX_C_SOURCE 200809L
#include "mqtt_client.h"
#include "mqtt_client_internal.h"

#include "gw_config.h"
#include "gw_error.h"
#include "test.h"

#include <stdlib.h>

static void test_uri_valid(void)
{
    struct mqtt_client_uri u;
    CHECK_EQ_INT(mqtt_client_parse_uri("mqtt://localhost", &u), GW_OK);
    CHECK_STR(u.host, "localhost");
    CHECK_EQ_INT(u.port, 1883);
    CHECK(!u.tls);
    CHECK_EQ_INT(mqtt_client_parse_uri("mqtts://broker.example.com", &u), GW_OK);
    CHECK_STR(u.host, "broker.example.com");
    CHECK_EQ_INT(u.port, 8883);
    CHECK(u.tls);
    CHECK_EQ_INT(mqtt_client_parse_uri("mqtt://10.0.0.2:1884/", &u), GW_OK);
    CHECK_STR(u.host, "10.0.0.2");
    CHECK_EQ_INT(u.port, 1884);
    CHECK_EQ_INT(mqtt_client_parse_uri("mqtts://[::1]:8884", &u), GW_OK);
    CHECK_STR(u.host, "::1");
    CHECK_EQ_INT(u.port, 8884);
    CHECK(u.tls);
    CHECK_EQ_INT(mqtt_client_parse_uri("mqtt://h:65535", &u), GW_OK);
    CHECK_EQ_INT(u.port, 65535);
}

static void test_uri_invalid(void)
{
    struct mqtt_client_uri u;
    static const char *bad[] = {
        "",
        "localhost:1883",
        "http://localhost",
        "tcp://localhost:1883",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://host:",
        "mqtt://host:0",
        "mqtt://host:65536",
        "mqtt://host:1234567",
        "mqtt://host:12ab",
        "mqtt://host/topic",
        "mqtt://user@host",
        "mqtt://[::1",
        "mqtt://ho st",
        "MQTT://host",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = mqtt_client_parse_uri(bad[i], &u);
        if (rc == GW_OK)
            fprintf(stderr, "accepted bad URI \"%s\"\n", bad[i]);
        CHECK(rc != GW_OK);
    }
    CHECK_EQ_INT(mqtt_client_parse_uri(NULL, &u), GW_ERR_INVAL);
    char longuri[300] = "mqtt://";
    memset(longuri + 7, 'a', 200);
    longuri[207] = '\0';
    CHECK_EQ_INT(mqtt_client_parse_uri(longuri, &u), GW_ERR_OVERFLOW);
}

static void test_backoff_sequence(void)
{
    static const uint32_t expected[] = { 1, 1, 2, 4, 8, 16, 32, 32, 32 };
    for (uint32_t a = 0; a < 9; a++)
        CHECK_EQ_INT(mqtt_client_backoff_s(a), expected[a]);
    CHECK_EQ_INT(mqtt_client_backoff_s(1000), 32);
    CHECK_EQ_INT(mqtt_client_backoff_s(UINT32_MAX), 32);
}

static void push_text(struct mqtt_client__queue *q, const char *text, uint64_t *dropped)
{
    struct mqtt_client__msg m;
    CHECK_EQ_INT(mqtt_client__msg_make(&m, "t/alerts", text, strlen(text), 1, false), GW_OK);
    mqtt_client__queue_push(q, &m, dropped);
    CHECK(m.topic == NULL); /* ownership moved */
}

static void test_queue_bounded_oldest_dropped(void)
{
    struct mqtt_client__queue q;
    uint64_t dropped = 0;
    CHECK_EQ_INT(mqtt_client__queue_init(&q, 3), GW_OK);
    CHECK(mqtt_client__queue_front(&q) == NULL);
    char buf[16];
    for (int i = 1; i <= 5; i++) {
        snprintf(buf, sizeof buf, "m%d", i);
        push_text(&q, buf, &dropped);
    }
    CHECK_EQ_INT(q.count, 3);
    CHECK_EQ_INT(dropped, 2);
    for (int i = 3; i <= 5; i++) {
        struct mqtt_client__msg *m = mqtt_client__queue_front(&q);
        CHECK(m != NULL);
        if (!m)
            break;
        snprintf(buf, sizeof buf, "m%d", i);
        CHECK_STR((const char *)m->payload, buf);
        CHECK_EQ_INT(m->len, strlen(buf));
        CHECK_EQ_INT(m->qos, 1);
        mqtt_client__queue_pop(&q);
    }
    CHECK(mqtt_client__queue_front(&q) == NULL);
    mqtt_client__queue_pop(&q); /* empty: no-op */
    mqtt_client__queue_free(&q);
}

static void test_queue_zero_capacity_and_resize(void)
{
    struct mqtt_client__queue q;
    uint64_t dropped = 0;
    CHECK_EQ_INT(mqtt_client__queue_init(&q, 0), GW_OK);
    push_text(&q, "x", &dropped);
    CHECK_EQ_INT(q.count, 0);
    CHECK_EQ_INT(dropped, 1);
    mqtt_client__queue_free(&q);

    dropped = 0;
    CHECK_EQ_INT(mqtt_client__queue_init(&q, 4), GW_OK);
    push_text(&q, "a", &dropped);
    push_text(&q, "b", &dropped);
    mqtt_client__queue_pop(&q); /* head moves: the ring wraps below */
    push_text(&q, "c", &dropped);
    push_text(&q, "d", &dropped);
    push_text(&q, "e", &dropped);
    CHECK_EQ_INT(q.count, 4);
    CHECK_EQ_INT(mqtt_client__queue_resize(&q, 2, &dropped), GW_OK);
    CHECK_EQ_INT(dropped, 2);
    CHECK_EQ_INT(q.count, 2);
    CHECK_STR((const char *)mqtt_client__queue_front(&q)->payload, "d");
    CHECK_EQ_INT(mqtt_client__queue_resize(&q, 10, &dropped), GW_OK);
    push_text(&q, "f", &dropped);
    CHECK_EQ_INT(q.count, 3);
    CHECK_STR((const char *)mqtt_client__queue_front(&q)->payload, "d");
    mqtt_client__queue_free(&q);
}

static void default_cfg(struct gw_config_mqtt *m)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    *m = cfg.mqtt;
}

static void test_effective_id(void)
{
    struct gw_config_mqtt m;
    default_cfg(&m);
    char id[128];
    CHECK_EQ_INT(mqtt_client_effective_id(&m, id, sizeof id), GW_OK);
    CHECK(strncmp(id, "tinybms-gw-", 11) == 0);
    CHECK(strlen(id) > 11);
    snprintf(m.client_id, sizeof m.client_id, "my-id");
    CHECK_EQ_INT(mqtt_client_effective_id(&m, id, sizeof id), GW_OK);
    CHECK_STR(id, "my-id");
    CHECK_EQ_INT(mqtt_client_effective_id(&m, id, 3), GW_ERR_OVERFLOW);
}

static void noop_message(const struct mqtt_client_message *m, void *ctx)
{
    (void)m;
    (void)ctx;
}

static void test_disconnected_publish_counts(void)
{
    struct gw_config_mqtt m;
    default_cfg(&m);
    m.offline_queue_size = 2;
    struct mqtt_client *c = NULL;
    CHECK_EQ_INT(mqtt_client_create(&m, NULL, &c), GW_OK);
    if (!c)
        return;
    CHECK(!mqtt_client_is_connected(c));
    CHECK_EQ_INT(mqtt_client_publish(c, "a/b", "1", 1, 0, true), GW_ERR_CLOSED);
    CHECK_EQ_INT(mqtt_client_publish(c, "a/alerts", "x", 1, 1, false), GW_OK);
    CHECK_EQ_INT(mqtt_client_publish(c, "a/alerts", "y", 1, 1, false), GW_OK);
    CHECK_EQ_INT(mqtt_client_publish(c, "a/alerts", "z", 1, 1, false), GW_OK);
    struct mqtt_client_stats st;
    mqtt_client_get_stats(c, &st);
    CHECK_EQ_INT(st.queued, 3);
    CHECK_EQ_INT(st.queue_depth, 2);
    CHECK_EQ_INT(st.dropped, 2); /* one QoS 0 + one overflow */
    CHECK_EQ_INT(st.publishes, 0);

    /* Bad arguments. */
    CHECK_EQ_INT(mqtt_client_publish(c, "", "1", 1, 0, false), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_client_publish(c, "a/+", "1", 1, 0, false), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_client_publish(c, "a/#", "1", 1, 0, false), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_client_publish(c, "a", "1", 1, 3, false), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_client_publish(c, "a", NULL, 4, 0, false), GW_ERR_INVAL);
    char longtopic[MQTT_CLIENT_MAX_TOPIC + 4];
    memset(longtopic, 'x', sizeof longtopic - 1);
    longtopic[sizeof longtopic - 1] = '\0';
    CHECK_EQ_INT(mqtt_client_publish(c, longtopic, "1", 1, 0, false), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_client_subscribe(c, "a/#/b", 0, noop_message, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_client_subscribe(c, "a/b", 0, NULL, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(mqtt_client_subscribe(c, "a/b", 3, noop_message, NULL), GW_ERR_INVAL);
    char filter[32];
    for (int i = 0; i < MQTT_CLIENT_MAX_SUBSCRIPTIONS; i++) {
        snprintf(filter, sizeof filter, "f/%d", i);
        CHECK_EQ_INT(mqtt_client_subscribe(c, filter, 1, noop_message, NULL), GW_OK);
    }
    CHECK_EQ_INT(mqtt_client_subscribe(c, "f/extra", 1, noop_message, NULL), GW_ERR_FULL);
    CHECK_EQ_INT(mqtt_client_subscribe(c, "f/3", 0, noop_message, NULL), GW_OK); /* replace */
    CHECK_EQ_INT(mqtt_client_unsubscribe(c, "f/3"), GW_OK);
    CHECK_EQ_INT(mqtt_client_subscribe(c, "f/extra", 1, noop_message, NULL), GW_OK);
    CHECK_EQ_INT(mqtt_client_unsubscribe(c, "nothing"), GW_ERR_NOT_FOUND);

    /* Reconfigure with a bad URI keeps the old settings. */
    struct gw_config_mqtt bad = m;
    snprintf(bad.broker_uri, sizeof bad.broker_uri, "ftp://x");
    CHECK_EQ_INT(mqtt_client_reconfigure(c, &bad), GW_ERR_INVAL);
    mqtt_client_destroy(c);

    struct mqtt_client *c2 = NULL;
    CHECK_EQ_INT(mqtt_client_create(&bad, NULL, &c2), GW_ERR_INVAL);
    CHECK(c2 == NULL);
}

static void test_connection_bad_inputs(void)
{
    struct gw_config_mqtt m;
    default_cfg(&m);
    char msg[256];
    snprintf(m.broker_uri, sizeof m.broker_uri, "mqtt//nope");
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 1000, msg, sizeof msg), GW_ERR_INVAL);
    CHECK(strstr(msg, "bad broker URI") != NULL);
    snprintf(m.broker_uri, sizeof m.broker_uri, "mqtt://no-such-host.invalid:1883");
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 3000, msg, sizeof msg), GW_ERR_NOT_FOUND);
    CHECK(strstr(msg, "DNS failure") != NULL);
    snprintf(m.broker_uri, sizeof m.broker_uri, "mqtts://127.0.0.1:1");
    snprintf(m.ca_file, sizeof m.ca_file, "/nonexistent/ca.pem");
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 1000, msg, sizeof msg), GW_ERR_INVAL);
    CHECK(strstr(msg, "CA file") != NULL);
    m.ca_file[0] = '\0';
    snprintf(m.cert_file, sizeof m.cert_file, "/tmp/cert.pem");
    CHECK_EQ_INT(mqtt_client_test_connection(&m, 1000, msg, sizeof msg), GW_ERR_INVAL);
    CHECK(strstr(msg, "key") != NULL);
    CHECK_EQ_INT(mqtt_client_test_connection(NULL, 1000, msg, sizeof msg), GW_ERR_INVAL);
}

/* The network thread's state machine, without a thread or a broker. */
static void test_link_state_machine(void)
{
    struct mqtt_client__link l;
    mqtt_client__link_init(&l, 1000);
    struct mqtt_client__decision d = mqtt_client__link_decide(&l, 1000, false);
    CHECK_EQ_INT(d.action, MQTT_CLIENT__CONNECT);
    /* The broker is away: 1, 2, 4, 8, 16, 32, 32 s; only the first failure is reported. */
    static const uint32_t delays[] = { 1, 2, 4, 8, 16, 32, 32 };
    uint64_t t = 1000;
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        struct mqtt_client__outcome o = mqtt_client__link_connect_result(&l, t, false);
        CHECK_EQ_INT(o.delay_s, delays[i]);
        CHECK_EQ_INT(o.report_down, i == 0);
        d = mqtt_client__link_decide(&l, t + delays[i] * 1000 - 1, false);
        CHECK_EQ_INT(d.action, MQTT_CLIENT__WAIT);
        CHECK_EQ_INT(d.deadline_ms, t + delays[i] * 1000);
        t += delays[i] * 1000;
        CHECK_EQ_INT(mqtt_client__link_decide(&l, t, false).action, MQTT_CLIENT__CONNECT);
    }
    /* The socket opens: service at once (the CONNECT goes out), then sleep until the CONNACK
     * timeout or the keepalive service (a quarter of 120 s), whichever is nearer. */
    mqtt_client__link_connect_result(&l, t, true);
    CHECK_EQ_INT(mqtt_client__link_decide(&l, t, false).action, MQTT_CLIENT__SERVICE);
    mqtt_client__link_serviced(&l, t, 120);
    d = mqtt_client__link_decide(&l, t + 10, false);
    CHECK_EQ_INT(d.action, MQTT_CLIENT__WAIT);
    CHECK_EQ_INT(d.deadline_ms, t + MQTT_CLIENT__CONNECT_TIMEOUT_MS + 1);
    CHECK_EQ_INT(mqtt_client__link_decide(&l, t + MQTT_CLIENT__CONNECT_TIMEOUT_MS + 1, false).action,
                 MQTT_CLIENT__ABORT);
    struct mqtt_client__outcome o = mqtt_client__link_lost(&l, t + MQTT_CLIENT__CONNECT_TIMEOUT_MS + 1, false);
    CHECK_EQ_INT(o.delay_s, 32);
    CHECK(!o.report_down);
    /* Connected: only the keepalive service is a deadline. */
    t += MQTT_CLIENT__CONNECT_TIMEOUT_MS + 1 + 32000;
    CHECK_EQ_INT(mqtt_client__link_decide(&l, t, false).action, MQTT_CLIENT__CONNECT);
    mqtt_client__link_connect_result(&l, t, true);
    mqtt_client__link_serviced(&l, t, 120);
    d = mqtt_client__link_decide(&l, t + 20000, true);
    CHECK_EQ_INT(d.action, MQTT_CLIENT__WAIT);
    CHECK_EQ_INT(d.deadline_ms, t + 30000);
    CHECK_EQ_INT(mqtt_client__link_decide(&l, t + 30000, true).action, MQTT_CLIENT__SERVICE);
    mqtt_client__link_serviced(&l, t + 30000, 2); /* a short keepalive: at least 1 s apart */
    CHECK_EQ_INT(mqtt_client__link_decide(&l, t + 30000, true).deadline_ms, t + 31000);
    /* Lost after a CONNACK: reported, and the backoff starts again at 1 s. */
    o = mqtt_client__link_lost(&l, t + 40000, true);
    CHECK_EQ_INT(o.delay_s, 1);
    CHECK(o.report_down);
    o = mqtt_client__link_connect_result(&l, t + 41000, false);
    CHECK_EQ_INT(o.delay_s, 2);
    CHECK(!o.report_down);
    /* Bad settings (no session could be made): backoff too; a reconfiguration connects at once. */
    CHECK_EQ_INT(mqtt_client__link_setup_failed(&l, t + 43000), 4);
    CHECK_EQ_INT(mqtt_client__link_decide(&l, t + 43000, false).deadline_ms, t + 47000);
    mqtt_client__link_reset(&l, t + 44000);
    CHECK_EQ_INT(mqtt_client__link_decide(&l, t + 44000, false).action, MQTT_CLIENT__CONNECT);
    o = mqtt_client__link_connect_result(&l, t + 44000, false);
    CHECK_EQ_INT(o.delay_s, 1);
}

TEST_MAIN(TEST_CASE(test_uri_valid), TEST_CASE(test_uri_invalid), TEST_CASE(test_backoff_sequence),
          TEST_CASE(test_queue_bounded_oldest_dropped), TEST_CASE(test_queue_zero_capacity_and_resize),
          TEST_CASE(test_effective_id), TEST_CASE(test_disconnected_publish_counts),
          TEST_CASE(test_connection_bad_inputs), TEST_CASE(test_link_state_machine))
