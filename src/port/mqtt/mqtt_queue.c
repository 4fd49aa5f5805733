/* Bounded FIFO of QoS 1 messages kept while the broker is unreachable. */
#include "mqtt_client_internal.h"

#include "gw_error.h"

#include <stdlib.h>
#include <string.h>

int mqtt_client__queue_init(struct mqtt_client__queue *q, uint32_t capacity)
{
    memset(q, 0, sizeof *q);
    if (capacity) {
        q->items = calloc(capacity, sizeof *q->items);
        if (!q->items)
            return GW_ERR_NOMEM;
    }
    q->capacity = capacity;
    return GW_OK;
}

void mqtt_client__queue_free(struct mqtt_client__queue *q)
{
    while (q->count)
        mqtt_client__queue_pop(q);
    free(q->items);
    memset(q, 0, sizeof *q);
}

int mqtt_client__msg_make(struct mqtt_client__msg *out, const char *topic, const void *payload,
                          size_t len, int qos, bool retain)
{
    memset(out, 0, sizeof *out);
    size_t tlen = strlen(topic);
    out->topic = malloc(tlen + 1);
    /* +1: keep payloads NUL-terminated for whoever prints them; never counted in len. */
    out->payload = malloc(len + 1);
    if (!out->topic || !out->payload) {
        mqtt_client__msg_free(out);
        return GW_ERR_NOMEM;
    }
    memcpy(out->topic, topic, tlen + 1);
    if (len)
        memcpy(out->payload, payload, len);
    ((char *)out->payload)[len] = '\0';
    out->len = len;
    out->qos = qos;
    out->retain = retain;
    return GW_OK;
}

void mqtt_client__msg_free(struct mqtt_client__msg *msg)
{
    free(msg->topic);
    free(msg->payload);
    memset(msg, 0, sizeof *msg);
}

void mqtt_client__queue_push(struct mqtt_client__queue *q, struct mqtt_client__msg *msg,
                             uint64_t *dropped)
{
    if (q->capacity == 0) {
        mqtt_client__msg_free(msg);
        (*dropped)++;
        return;
    }
    if (q->count == q->capacity) {
        mqtt_client__queue_pop(q);
        (*dropped)++;
    }
    q->items[(q->head + q->count) % q->capacity] = *msg;
    q->count++;
    memset(msg, 0, sizeof *msg);
}

struct mqtt_client__msg *mqtt_client__queue_front(struct mqtt_client__queue *q)
{
    return q->count ? &q->items[q->head] : NULL;
}

void mqtt_client__queue_pop(struct mqtt_client__queue *q)
{
    if (!q->count)
        return;
    mqtt_client__msg_free(&q->items[q->head]);
    q->head = (q->head + 1) % q->capacity;
    q->count--;
}

int mqtt_client__queue_resize(struct mqtt_client__queue *q, uint32_t capacity, uint64_t *dropped)
{
    if (capacity == q->capacity)
        return GW_OK;
    struct mqtt_client__msg *items = NULL;
    if (capacity) {
        items = calloc(capacity, sizeof *items);
        if (!items)
            return GW_ERR_NOMEM;
    }
    while (q->count > capacity) {
        mqtt_client__queue_pop(q);
        (*dropped)++;
    }
    for (uint32_t i = 0; i < q->count; i++)
        items[i] = q->items[(q->head + i) % q->capacity];
    free(q->items);
    q->items = items;
    q->capacity = capacity;
    q->head = 0;
    return GW_OK;
}
