/* MQTT benchmarks (figures only, never asserts on speed):
 *  1. gateway cost per sample in-process (client never connected: publishes are dropped at the
 *     client boundary), vs a baseline that only formats the same numbers with snprintf;
 *  2. publish-to-receive latency through a real mosquitto on loopback (p50/p99, ping-pong);
 *  3. highest sample rate sustained with every topic on (numeric + status each sample).
 * mosquitto path: $GW_MOSQUITTO or /usr/sbin/mosquitto (parts 2-3 skipped when missing). */
#define _GNU_SOURCE
#include "mqtt_broker.h"
#include "mqtt_client.h"
#include "mqtt_gateway.h"
#include "mqtt_gateway_internal.h"

#include "app_events.h"
#include "event_bus.h"
#include "gw_config.h"
#include "gw_error.h"
#include "gw_log.h"

#include <math.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "bench_util.h"

#define RUNS 5

static uint64_t ns_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct gw_config_mqtt bench_cfg;

static bool get_cfg(struct gw_config_mqtt *out, void *ctx)
{
    (void)ctx;
    *out = bench_cfg;
    return true;
}

static struct bms_live_data sample(unsigned i)
{
    struct bms_live_data d;
    memset(&d, 0, sizeof d);
    d.valid = true;
    d.wall_time_ms = 1700000000000LL + i;
    d.cell_count = 16;
    for (unsigned c = 0; c < 16; c++)
        d.cell_mv_x10[c] = (uint16_t)(33000 + c * 7 + i % 13);
    d.min_cell_mv = 3300;
    d.max_cell_mv = 3311;
    d.cell_spread_mv_x10 = 110;
    d.pack_voltage_v = 52.8f + (float)(i % 10) * 0.01f;
    d.pack_current_a = -12.5f;
    d.temp_dc[0] = 251;
    d.temp_present[0] = true;
    d.temp_dc[1] = 283;
    d.temp_present[1] = true;
    d.soc_ppm = 85200000;
    d.soh_raw = 49250;
    d.soh_valid = true;
    d.online_status = BMS_STATUS_DISCHARGING;
    d.balancing_active = 0x8;
    return d;
}

/* Baseline: format the same numbers a numeric round publishes, with no JSON and no client. */
static size_t baseline_format(const struct bms_live_data *d)
{
    char buf[48];
    size_t total = 0;
    double v = d->pack_voltage_v, i = d->pack_current_a;
    total += (size_t)snprintf(buf, sizeof buf, "%.2f", v);
    total += (size_t)snprintf(buf, sizeof buf, "%.2f", i);
    total += (size_t)snprintf(buf, sizeof buf, "%.1f", v * i);
    total += (size_t)snprintf(buf, sizeof buf, "%.1f", bms_soc_percent(d));
    total += (size_t)snprintf(buf, sizeof buf, "%.1f", bms_soh_percent(d));
    for (unsigned c = 0; c < d->cell_count; c++)
        total += (size_t)snprintf(buf, sizeof buf, "%.3f", d->cell_mv_x10[c] / 10000.0);
    return total;
}

static void bench_cost_per_sample(void)
{
    struct event_bus *bus = NULL;
    struct mqtt_client *client = NULL;
    struct mqtt_gateway *gw = NULL;
    if (event_bus_create(NULL, &bus) || mqtt_client_create(&bench_cfg, NULL, &client))
        return;
    struct mqtt_gateway_options opt = { .bus = bus, .get_config = get_cfg, .client = client };
    if (mqtt_gateway_create(&opt, &gw) != GW_OK)
        return;
    const int n = 20000;
    double sample_us[RUNS], status_us[RUNS], base_us[RUNS];
    volatile size_t sink = 0;
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = ns_now();
        for (int i = 0; i < n; i++) {
            struct bms_live_data d = sample((unsigned)i);
            mqtt_gateway__publish_sample(gw, &d);
        }
        uint64_t t1 = ns_now();
        for (int i = 0; i < n; i++) {
            struct bms_live_data d = sample((unsigned)i);
            mqtt_gateway__publish_status(gw, &d);
        }
        uint64_t t2 = ns_now();
        for (int i = 0; i < n; i++) {
            struct bms_live_data d = sample((unsigned)i);
            sink += baseline_format(&d);
        }
        uint64_t t3 = ns_now();
        sample_us[r] = (double)(t1 - t0) / n / 1000.0;
        status_us[r] = (double)(t2 - t1) / n / 1000.0;
        base_us[r] = (double)(t3 - t2) / n / 1000.0;
    }
    (void)sink;
    double s = bench_median(sample_us, RUNS), st = bench_median(status_us, RUNS), b = bench_median(base_us, RUNS);
    printf("gateway numeric round (27 topics, 16 cells): %.2f us/sample (baseline snprintf only "
           "%.2f us, ratio %.1fx)\n",
           s, b, b > 0 ? s / b : 0.0);
    printf("gateway status JSON: %.2f us/sample\n", st);
    mqtt_gateway_destroy(gw);
    mqtt_client_destroy(client);
    event_bus_destroy(bus);
}

/* ---- latency: ping-pong through the broker */

struct pong {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t received_seq;
    uint64_t recv_ns;
    uint64_t count;
};

static void on_pong(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    struct pong *p = obj;
    uint64_t now = ns_now();
    unsigned long long seq = 0;
    if (msg->payloadlen > 0)
        sscanf((const char *)msg->payload, "%llu", &seq);
    pthread_mutex_lock(&p->lock);
    p->received_seq = seq;
    p->recv_ns = now;
    p->count++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static struct mosquitto *raw_sub(uint16_t port, const char *filter, struct pong *p)
{
    struct mosquitto *m = mosquitto_new(NULL, true, p);
    if (!m)
        return NULL;
    mosquitto_message_callback_set(m, on_pong);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    if (mosquitto_connect(m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS ||
        mosquitto_subscribe(m, NULL, filter, 0) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(m) != MOSQ_ERR_SUCCESS) {
        mosquitto_destroy(m);
        return NULL;
    }
    return m;
}

static void bench_latency(struct mqtt_client *client, uint16_t port)
{
    struct pong p = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    struct mosquitto *sub = raw_sub(port, "bench/ping", &p);
    if (!sub)
        return;
    /* Wait until the subscription is live: ping until one comes back. */
    char payload[32];
    uint64_t deadline = ns_now() + 5000000000ull;
    while (ns_now() < deadline) {
        mqtt_client_publish(client, "bench/ping", "0", 1, 0, false);
        pthread_mutex_lock(&p.lock);
        uint64_t c = p.count;
        pthread_mutex_unlock(&p.lock);
        if (c)
            break;
        usleep(10000);
    }
    const int n = 2000;
    double *lat = calloc((size_t)n, sizeof *lat);
    int got = 0;
    for (int i = 1; i <= n && lat; i++) {
        snprintf(payload, sizeof payload, "%d", i);
        uint64_t t0 = ns_now();
        mqtt_client_publish(client, "bench/ping", payload, strlen(payload), 0, false);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 2;
        pthread_mutex_lock(&p.lock);
        while (p.received_seq != (uint64_t)i) {
            if (pthread_cond_timedwait(&p.cond, &p.lock, &ts) != 0)
                break;
        }
        bool ok = p.received_seq == (uint64_t)i;
        uint64_t t1 = p.recv_ns;
        pthread_mutex_unlock(&p.lock);
        if (ok)
            lat[got++] = (double)(t1 - t0) / 1000.0;
    }
    if (got) {
        qsort(lat, (size_t)got, sizeof *lat, bench_cmp_double);
        printf("publish-to-receive latency via mosquitto (loopback, QoS 0, %d msgs): p50 %.0f us, "
               "p99 %.0f us, max %.0f us\n",
               got, lat[got / 2], lat[(int)(got * 0.99)], lat[got - 1]);
    }
    free(lat);
    mosquitto_disconnect(sub);
    mosquitto_loop_stop(sub, false);
    mosquitto_destroy(sub);
}

/* ---- sustained rate with every topic on */

/* Publishes full rounds (numeric + status) as fast as the gateway can for 2 s, then waits until
 * the subscriber has received every message: the sustained rate is what went end to end per
 * second of (publish + drain) time. */
static void bench_rate(struct mqtt_client *client, uint16_t port)
{
    struct pong p = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    struct mosquitto *sub = raw_sub(port, "rate/#", &p);
    if (!sub)
        return;
    struct event_bus *bus = NULL;
    if (event_bus_create(NULL, &bus))
        return;
    struct gw_config_mqtt cfg = bench_cfg;
    snprintf(cfg.topic_prefix, sizeof cfg.topic_prefix, "rate");
    cfg.ha_discovery = false;
    bench_cfg = cfg;
    struct mqtt_gateway_options opt = { .bus = bus, .get_config = get_cfg, .client = client };
    struct mqtt_gateway *gw = NULL;
    if (mqtt_gateway_create(&opt, &gw))
        return;
    /* Subscription live? ping the prefix until something comes back. */
    uint64_t deadline = ns_now() + 5000000000ull;
    for (;;) {
        mqtt_client_publish(client, "rate/ping", "1", 1, 0, false);
        pthread_mutex_lock(&p.lock);
        uint64_t c = p.count;
        pthread_mutex_unlock(&p.lock);
        if (c || ns_now() > deadline)
            break;
        usleep(10000);
    }
    pthread_mutex_lock(&p.lock);
    uint64_t base_received = p.count;
    pthread_mutex_unlock(&p.lock);
    struct mqtt_client_stats before, after;
    mqtt_client_get_stats(client, &before);
    uint64_t t0 = ns_now(), end = t0 + 2000000000ull;
    unsigned rounds = 0;
    while (ns_now() < end) {
        struct bms_live_data d = sample(rounds);
        mqtt_gateway__publish_sample(gw, &d);
        mqtt_gateway__publish_status(gw, &d);
        rounds++;
    }
    uint64_t t_pub = ns_now();
    mqtt_client_get_stats(client, &after);
    uint64_t sent = after.publishes - before.publishes;
    uint64_t received = 0, last_ns = t_pub;
    deadline = ns_now() + 30000000000ull;
    while (ns_now() < deadline) {
        pthread_mutex_lock(&p.lock);
        received = p.count - base_received;
        last_ns = p.recv_ns;
        pthread_mutex_unlock(&p.lock);
        if (received >= sent)
            break;
        usleep(10000);
    }
    double secs = (double)(last_ns - t0) / 1e9;
    struct mqtt_gateway_stats gs;
    mqtt_gateway_get_stats(gw, &gs);
    printf("sustained, all topics (27 numeric + status per sample, 16 cells): %u samples in %.2f s "
           "publish + %.2f s drain -> %.0f samples/s end to end (%.0f msgs/s; %llu of %llu "
           "messages received, %llu dropped)\n",
           rounds, (double)(t_pub - t0) / 1e9, (double)(last_ns - t_pub) / 1e9,
           secs > 0 ? rounds / secs : 0.0, secs > 0 ? received / secs : 0.0,
           (unsigned long long)received, (unsigned long long)sent,
           (unsigned long long)(after.dropped - before.dropped));
    mqtt_gateway_destroy(gw);
    event_bus_destroy(bus);
    mosquitto_disconnect(sub);
    mosquitto_loop_stop(sub, false);
    mosquitto_destroy(sub);
}

int main(void)
{
    gw_log_set_level(GW_LOG_WARN);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    bench_cfg = cfg.mqtt;
    snprintf(bench_cfg.client_id, sizeof bench_cfg.client_id, "bench-gw");
    bench_cost_per_sample();

    const char *exe = getenv("GW_MOSQUITTO");
    if (!exe || !exe[0])
        exe = "/usr/sbin/mosquitto";
    if (access(exe, X_OK) != 0) {
        printf("mosquitto not found (%s): broker benchmarks skipped\n", exe);
        return 0;
    }
    mosquitto_lib_init();
    struct test_broker b;
    if (test_broker_init(&b, exe) || test_broker_start(&b, NULL)) {
        printf("cannot start mosquitto: broker benchmarks skipped\n");
        test_broker_cleanup(&b);
        return 0;
    }
    snprintf(bench_cfg.broker_uri, sizeof bench_cfg.broker_uri, "mqtt://127.0.0.1:%u", (unsigned)b.port);
    bench_cfg.enabled = true;
    struct mqtt_client *client = NULL;
    if (mqtt_client_create(&bench_cfg, NULL, &client) == GW_OK &&
        mqtt_client_start(client) == GW_OK) {
        uint64_t deadline = ns_now() + 10000000000ull;
        while (!mqtt_client_is_connected(client) && ns_now() < deadline)
            usleep(10000);
        if (mqtt_client_is_connected(client)) {
            bench_latency(client, b.port);
            bench_rate(client, b.port);
        } else {
            printf("client did not connect: broker benchmarks skipped\n");
        }
    }
    mqtt_client_destroy(client);
    test_broker_cleanup(&b);
    mosquitto_lib_cleanup();
    return 0;
}
