/* Publish/subscribe bus that decouples the services (design.md "Event bus").
 * A bounded FIFO queue drained by one dispatcher thread. Payloads are copied into the queue
 * entry at publish time (the caller keeps ownership of its buffer). Handlers run on the
 * dispatcher thread, in subscription order, one event at a time; a handler must not block for
 * long (its time is measured and exposed) and must not call event_bus_destroy().
 * All functions are thread-safe. */
#ifndef EVENT_BUS_H
#define EVENT_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVENT_BUS_DEFAULT_QUEUE 32
#define EVENT_BUS_DEFAULT_SUBSCRIBERS 32 /* per event id */
#define EVENT_BUS_MAX_PAYLOAD 8192        /* bytes copied per event (the battery view: 7.2 KB) */
#define EVENT_BUS_MAX_EVENT_ID 64         /* ids 0..63 */

struct event_bus;

struct gw_event {
    int id;                /* enum app_event_id */
    const void *payload;   /* valid only during the handler call; NULL when size is 0 */
    size_t size;
    uint64_t published_ms; /* gw_now_ms() at publish */
};

typedef void (*event_bus_handler_fn)(const struct gw_event *event, void *ctx);

/* The one way a handler reads a payload: the payload when its size is exactly expected_size,
 * else NULL, and the mismatch is logged (rate-limited, with the event id and both sizes) so a
 * publisher/subscriber disagreement never turns into silently zeroed fields. Use through
 * EVENT_PAYLOAD(ev, type). Thread-safe. */
const void *event_payload(const struct gw_event *event, size_t expected_size);
#define EVENT_PAYLOAD(ev, type) ((const type *)event_payload((ev), sizeof(type)))

/* Checked at compile time for every payload type (see app_events.h). */
#define EVENT_PAYLOAD_FITS(type) \
    _Static_assert(sizeof(type) <= EVENT_BUS_MAX_PAYLOAD, #type " must fit one bus event")

struct event_bus_config {
    uint32_t queue_size;          /* 0 = EVENT_BUS_DEFAULT_QUEUE */
    uint32_t max_subscribers;     /* per event id; 0 = EVENT_BUS_DEFAULT_SUBSCRIBERS */
};

struct event_bus_subscriber_stats {
    char name[32];
    int event_id;
    uint64_t calls;
    uint64_t total_us;
    uint64_t max_us;
};

struct event_bus_stats {
    uint64_t published;
    uint64_t dropped;       /* publish timed out on a full queue */
    uint64_t dispatched;
    uint32_t queue_depth;
    uint32_t queue_high_water;
};

/* Creates the bus and starts its dispatcher thread. cfg may be NULL for defaults.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM, GW_ERR_IO (thread creation) */
int event_bus_create(const struct event_bus_config *cfg, struct event_bus **out);

/* Stops the dispatcher after the events already queued are delivered, then frees the bus.
 * NULL is accepted. */
void event_bus_destroy(struct event_bus *bus);

/* Registers handler(ctx) for event_id. name (copied, may be NULL) labels its statistics.
 * @retval GW_OK, GW_ERR_INVAL (bad id / NULL handler), GW_ERR_FULL (max_subscribers reached) */
int event_bus_subscribe(struct event_bus *bus, int event_id, event_bus_handler_fn handler, void *ctx,
                        const char *name);

/* Removes every registration of (event_id, handler, ctx). Safe to call while events flow: on
 * return the handler is not running and will not be called again.
 * @retval GW_OK, GW_ERR_NOT_FOUND */
int event_bus_unsubscribe(struct event_bus *bus, int event_id, event_bus_handler_fn handler, void *ctx);

/* Queues a copy of payload[0..size). Waits up to timeout_ms for room when the queue is full.
 * @retval GW_OK queued
 * @retval GW_ERR_FULL the queue was still full after timeout_ms (the drop is counted, logged
 *         rate-limited)
 * @retval GW_ERR_STATE the bus is stopping (counted as a drop)
 * @retval GW_ERR_RANGE size is larger than EVENT_BUS_MAX_PAYLOAD
 * @retval GW_ERR_INVAL NULL bus, an id outside 1..EVENT_BUS_MAX_EVENT_ID-1, or size without payload */
int event_bus_publish(struct event_bus *bus, int event_id, const void *payload, size_t size,
                      uint32_t timeout_ms);

/* Blocks until every event queued before the call has been dispatched or timeout_ms passed.
 * @retval GW_OK drained
 * @retval GW_ERR_TIMEOUT events queued before the call were still undelivered at timeout_ms
 * @retval GW_ERR_STATE called from a handler (the dispatcher would wait for itself)
 * @retval GW_ERR_INVAL NULL bus */
int event_bus_flush(struct event_bus *bus, uint32_t timeout_ms);

void event_bus_get_stats(struct event_bus *bus, struct event_bus_stats *out);

/* Copies up to max subscriber statistics into out; returns how many were written. */
size_t event_bus_get_subscriber_stats(struct event_bus *bus, struct event_bus_subscriber_stats *out,
                                      size_t max);

#endif
