/* The network thread's connection state machine (attempt, CONNACK timeout, backoff, keepalive
 * service, what to report) as pure functions: see mqtt_client_internal.h. No OS calls. */
#include "mqtt_client.h"
#include "mqtt_client_internal.h"

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static uint64_t service_period_ms(uint32_t keepalive_s)
{
    uint64_t q = (uint64_t)(keepalive_s ? keepalive_s : 120) * 1000u / 4u;
    return q < 1000 ? 1000 : q;
}

void mqtt_client__link_init(struct mqtt_client__link *l, uint64_t now_ms)
{
    *l = (struct mqtt_client__link){ .next_attempt_ms = now_ms };
}

struct mqtt_client__decision mqtt_client__link_decide(struct mqtt_client__link *l, uint64_t now_ms, bool connected)
{
    struct mqtt_client__decision d = { .action = MQTT_CLIENT__WAIT, .deadline_ms = UINT64_MAX };
    if (!l->socket_open) {
        if (now_ms >= l->next_attempt_ms)
            d.action = MQTT_CLIENT__CONNECT;
        else
            d.deadline_ms = l->next_attempt_ms;
        return d;
    }
    uint64_t give_up = l->attempt_started_ms + MQTT_CLIENT__CONNECT_TIMEOUT_MS;
    if (!connected && now_ms > give_up) {
        d.action = MQTT_CLIENT__ABORT;
        return d;
    }
    if (now_ms >= l->service_due_ms) {
        d.action = MQTT_CLIENT__SERVICE;
        return d;
    }
    d.deadline_ms = l->service_due_ms;
    if (!connected)
        d.deadline_ms = min_u64(d.deadline_ms, give_up + 1);
    return d;
}

static struct mqtt_client__outcome fail(struct mqtt_client__link *l, uint64_t now_ms, bool was_connected)
{
    struct mqtt_client__outcome o;
    l->socket_open = false;
    l->failures = was_connected ? 1 : l->failures + 1;
    o.delay_s = mqtt_client_backoff_s(l->failures);
    o.report_down = was_connected || !l->ever_reported_down;
    l->ever_reported_down = true;
    l->next_attempt_ms = now_ms + (uint64_t)o.delay_s * 1000u;
    return o;
}

struct mqtt_client__outcome mqtt_client__link_connect_result(struct mqtt_client__link *l, uint64_t now_ms, bool ok)
{
    if (!ok)
        return fail(l, now_ms, false);
    l->socket_open = true;
    l->attempt_started_ms = now_ms;
    l->service_due_ms = now_ms; /* write the CONNECT at once */
    return (struct mqtt_client__outcome){ 0 };
}

void mqtt_client__link_serviced(struct mqtt_client__link *l, uint64_t now_ms, uint32_t keepalive_s)
{
    l->service_due_ms = now_ms + service_period_ms(keepalive_s);
}

struct mqtt_client__outcome mqtt_client__link_lost(struct mqtt_client__link *l, uint64_t now_ms, bool was_connected)
{
    return fail(l, now_ms, was_connected);
}

void mqtt_client__link_reset(struct mqtt_client__link *l, uint64_t now_ms)
{
    l->socket_open = false;
    l->failures = 0;
    l->next_attempt_ms = now_ms;
}

uint32_t mqtt_client__link_setup_failed(struct mqtt_client__link *l, uint64_t now_ms)
{
    l->failures++;
    uint32_t delay = mqtt_client_backoff_s(l->failures);
    l->next_attempt_ms = now_ms + (uint64_t)delay * 1000u;
    return delay;
}
