/* Private to mqtt_client (and its unit tests): the bounded offline queue. Not thread-safe:
 * the client calls it under its lock. */
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

#endif
