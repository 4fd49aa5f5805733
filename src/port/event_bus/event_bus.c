#define _GNU_SOURCE /* pthread_setname_np */
#define _POSIX_C_SOURCE 200809L
#include "event_bus.h"

#include "app_events.h"

#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

struct queue_entry {
    int id;
    size_t size;
    uint64_t published_ms;
    /* Aligned for any type: handlers read it through EVENT_PAYLOAD as a typed pointer. */
    _Alignas(max_align_t) unsigned char payload[EVENT_BUS_MAX_PAYLOAD];
};

struct subscriber {
    event_bus_handler_fn handler;
    void *ctx;
    char name[32];
    uint64_t calls;
    uint64_t total_us;
    uint64_t max_us;
};

struct event_bus {
    pthread_mutex_t lock;           /* queue, subscriber tables, counters */
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    pthread_cond_t drained;
    pthread_mutex_t dispatch_lock;  /* held while handlers of one event run */
    pthread_t dispatcher;
    bool stopping;

    struct queue_entry *queue;
    struct queue_entry *scratch;    /* the dispatcher's copy of the event being delivered */
    uint32_t capacity;
    uint32_t head;                  /* next entry to dispatch */
    uint32_t count;

    uint32_t max_subscribers;
    struct subscriber *subs[EVENT_BUS_MAX_EVENT_ID]; /* max_subscribers each */
    uint32_t sub_count[EVENT_BUS_MAX_EVENT_ID];

    uint64_t published;
    uint64_t dropped;
    uint64_t dispatched;
    uint32_t high_water;
};

static uint64_t elapsed_us(const struct timespec *a, const struct timespec *b)
{
    int64_t us = (int64_t)(b->tv_sec - a->tv_sec) * 1000000 + (b->tv_nsec - a->tv_nsec) / 1000;
    return us > 0 ? (uint64_t)us : 0;
}

/* The registration of (handler, ctx) for id, or NULL once unsubscribed. Call with bus->lock. */
static struct subscriber *find_subscriber(struct event_bus *bus, int id, const struct subscriber *wanted)
{
    for (uint32_t k = 0; k < bus->sub_count[id]; k++) {
        struct subscriber *s = &bus->subs[id][k];
        if (s->handler == wanted->handler && s->ctx == wanted->ctx)
            return s;
    }
    return NULL;
}

static void dispatch_one(struct event_bus *bus, struct queue_entry *entry)
{
    /* Snapshot the subscriber list so handlers may (un)subscribe without deadlock. */
    struct subscriber local[EVENT_BUS_DEFAULT_SUBSCRIBERS * 2];
    uint32_t n;
    pthread_mutex_lock(&bus->lock);
    n = bus->sub_count[entry->id];
    if (n > sizeof local / sizeof local[0])
        n = sizeof local / sizeof local[0];
    memcpy(local, bus->subs[entry->id], n * sizeof local[0]);
    pthread_mutex_unlock(&bus->lock);

    struct gw_event ev = {
        .id = entry->id,
        .payload = entry->size ? entry->payload : NULL,
        .size = entry->size,
        .published_ms = entry->published_ms,
    };
    for (uint32_t i = 0; i < n; i++) {
        /* A handler unsubscribed by an earlier handler of this same event must not run. */
        pthread_mutex_lock(&bus->lock);
        bool still = find_subscriber(bus, entry->id, &local[i]) != NULL;
        pthread_mutex_unlock(&bus->lock);
        if (!still)
            continue;

        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        local[i].handler(&ev, local[i].ctx);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        uint64_t us = elapsed_us(&t0, &t1);

        pthread_mutex_lock(&bus->lock);
        struct subscriber *s = find_subscriber(bus, entry->id, &local[i]);
        if (s) {
            s->calls++;
            s->total_us += us;
            if (us > s->max_us)
                s->max_us = us;
        }
        pthread_mutex_unlock(&bus->lock);
        if (us > 100000) {
            static struct gw_log_limit slow_limit;
            gw_log_ratelimited(&slow_limit, 10000, GW_LOG_WARN, MOD,
                               "slow subscriber '%s' took %llu ms on %d", local[i].name,
                               (unsigned long long)(us / 1000), entry->id);
        }
    }
}

static void *dispatcher_main(void *arg)
{
    struct event_bus *bus = arg;
    pthread_setname_np(pthread_self(), "event-bus");
    struct queue_entry *entry = bus->scratch;
    for (;;) {
        pthread_mutex_lock(&bus->lock);
        while (bus->count == 0 && !bus->stopping)
            pthread_cond_wait(&bus->not_empty, &bus->lock);
        if (bus->count == 0 && bus->stopping) {
            pthread_mutex_unlock(&bus->lock);
            break;
        }
        struct queue_entry *slot = &bus->queue[bus->head];
        entry->id = slot->id;
        entry->size = slot->size;
        entry->published_ms = slot->published_ms;
        memcpy(entry->payload, slot->payload, slot->size);
        bus->head = (bus->head + 1) % bus->capacity;
        bus->count--;
        pthread_cond_signal(&bus->not_full);
        pthread_mutex_unlock(&bus->lock);

        pthread_mutex_lock(&bus->dispatch_lock);
        dispatch_one(bus, entry);
        pthread_mutex_unlock(&bus->dispatch_lock);

        pthread_mutex_lock(&bus->lock);
        bus->dispatched++;
        pthread_cond_broadcast(&bus->drained);
        pthread_mutex_unlock(&bus->lock);
    }
    return NULL;
}

/* Frees a bus that has no running dispatcher; with_sync: its locks and conditions exist. */
static void free_bus(struct event_bus *bus, bool with_sync)
{
    if (with_sync) {
        pthread_mutex_destroy(&bus->lock);
        pthread_mutex_destroy(&bus->dispatch_lock);
        pthread_cond_destroy(&bus->not_empty);
        pthread_cond_destroy(&bus->not_full);
        pthread_cond_destroy(&bus->drained);
    }
    for (int i = 0; i < EVENT_BUS_MAX_EVENT_ID; i++)
        free(bus->subs[i]);
    free(bus->scratch);
    free(bus->queue);
    free(bus);
}

int event_bus_create(const struct event_bus_config *cfg, struct event_bus **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    uint32_t capacity = cfg && cfg->queue_size ? cfg->queue_size : EVENT_BUS_DEFAULT_QUEUE;
    uint32_t max_subs = cfg && cfg->max_subscribers ? cfg->max_subscribers : EVENT_BUS_DEFAULT_SUBSCRIBERS;
    if (capacity > 4096 || max_subs > EVENT_BUS_DEFAULT_SUBSCRIBERS * 2)
        return GW_ERR_INVAL;

    struct event_bus *bus = calloc(1, sizeof *bus);
    if (!bus)
        return GW_ERR_NOMEM;
    bus->capacity = capacity;
    bus->max_subscribers = max_subs;
    bus->queue = calloc(capacity, sizeof *bus->queue);
    bus->scratch = malloc(sizeof *bus->scratch);
    if (!bus->queue || !bus->scratch)
        goto err_nomem;
    for (int i = 0; i < EVENT_BUS_MAX_EVENT_ID; i++) {
        bus->subs[i] = calloc(max_subs, sizeof(struct subscriber));
        if (!bus->subs[i])
            goto err_nomem;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&bus->lock, NULL);
    pthread_mutex_init(&bus->dispatch_lock, NULL);
    pthread_cond_init(&bus->not_empty, &ca);
    pthread_cond_init(&bus->not_full, &ca);
    pthread_cond_init(&bus->drained, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&bus->dispatcher, NULL, dispatcher_main, bus) != 0) {
        GW_LOGE(MOD, "cannot start dispatcher thread");
        free_bus(bus, true);
        return GW_ERR_IO;
    }
    *out = bus;
    return GW_OK;

err_nomem:
    free_bus(bus, false);
    return GW_ERR_NOMEM;
}

void event_bus_destroy(struct event_bus *bus)
{
    if (!bus)
        return;
    pthread_mutex_lock(&bus->lock);
    bus->stopping = true;
    pthread_cond_broadcast(&bus->not_empty);
    pthread_cond_broadcast(&bus->not_full);
    pthread_mutex_unlock(&bus->lock);
    pthread_join(bus->dispatcher, NULL);
    free_bus(bus, true);
}

int event_bus_subscribe(struct event_bus *bus, int event_id, event_bus_handler_fn handler, void *ctx,
                        const char *name)
{
    if (!bus || !handler || event_id <= 0 || event_id >= EVENT_BUS_MAX_EVENT_ID)
        return GW_ERR_INVAL;
    int rc = GW_OK;
    pthread_mutex_lock(&bus->lock);
    if (bus->sub_count[event_id] >= bus->max_subscribers) {
        rc = GW_ERR_FULL;
    } else {
        struct subscriber *s = &bus->subs[event_id][bus->sub_count[event_id]++];
        memset(s, 0, sizeof *s);
        s->handler = handler;
        s->ctx = ctx;
        gw_text_copy(s->name, sizeof s->name, name ? name : "?");
    }
    pthread_mutex_unlock(&bus->lock);
    if (rc)
        GW_LOGE(MOD, "subscriber '%s' rejected for event %d: %u subscribers already",
                name ? name : "?", event_id, bus->max_subscribers);
    return rc;
}

int event_bus_unsubscribe(struct event_bus *bus, int event_id, event_bus_handler_fn handler, void *ctx)
{
    if (!bus || event_id <= 0 || event_id >= EVENT_BUS_MAX_EVENT_ID)
        return GW_ERR_INVAL;
    int removed = 0;
    pthread_mutex_lock(&bus->lock);
    struct subscriber *list = bus->subs[event_id];
    uint32_t n = bus->sub_count[event_id];
    for (uint32_t i = 0; i < n;) {
        if (list[i].handler == handler && list[i].ctx == ctx) {
            memmove(&list[i], &list[i + 1], (n - i - 1) * sizeof list[0]);
            n--;
            removed++;
        } else {
            i++;
        }
    }
    bus->sub_count[event_id] = n;
    pthread_mutex_unlock(&bus->lock);
    /* Wait for a handler call in progress, unless we are that call. */
    if (!pthread_equal(pthread_self(), bus->dispatcher)) {
        pthread_mutex_lock(&bus->dispatch_lock);
        pthread_mutex_unlock(&bus->dispatch_lock);
    }
    return removed ? GW_OK : GW_ERR_NOT_FOUND;
}

int event_bus_publish(struct event_bus *bus, int event_id, const void *payload, size_t size,
                      uint32_t timeout_ms)
{
    if (!bus || event_id <= 0 || event_id >= EVENT_BUS_MAX_EVENT_ID || (size && !payload))
        return GW_ERR_INVAL;
    if (size > EVENT_BUS_MAX_PAYLOAD)
        return GW_ERR_RANGE;
    struct timespec deadline;
    gw_monotonic_deadline(&deadline, timeout_ms);
    pthread_mutex_lock(&bus->lock);
    while (bus->count == bus->capacity && !bus->stopping) {
        if (timeout_ms == 0 || pthread_cond_timedwait(&bus->not_full, &bus->lock, &deadline) == ETIMEDOUT) {
            if (bus->count == bus->capacity)
                break;
        }
    }
    if (bus->stopping || bus->count == bus->capacity) {
        int rc = bus->stopping ? GW_ERR_STATE : GW_ERR_FULL;
        bus->dropped++;
        pthread_mutex_unlock(&bus->lock);
        static struct gw_log_limit drop_limit;
        gw_log_ratelimited(&drop_limit, 10000, GW_LOG_WARN, MOD, "%s: event %d dropped",
                           rc == GW_ERR_STATE ? "bus stopping" : "queue full", event_id);
        return rc;
    }
    struct queue_entry *slot = &bus->queue[(bus->head + bus->count) % bus->capacity];
    slot->id = event_id;
    slot->size = size;
    slot->published_ms = gw_now_ms();
    if (size)
        memcpy(slot->payload, payload, size);
    bus->count++;
    bus->published++;
    if (bus->count > bus->high_water)
        bus->high_water = bus->count;
    pthread_cond_signal(&bus->not_empty);
    pthread_mutex_unlock(&bus->lock);
    return GW_OK;
}

int event_bus_flush(struct event_bus *bus, uint32_t timeout_ms)
{
    if (!bus)
        return GW_ERR_INVAL;
    if (pthread_equal(pthread_self(), bus->dispatcher))
        return GW_ERR_STATE;
    struct timespec deadline;
    gw_monotonic_deadline(&deadline, timeout_ms);
    pthread_mutex_lock(&bus->lock);
    uint64_t accepted = bus->published;
    bool ok = true;
    while (bus->dispatched < accepted) {
        if (pthread_cond_timedwait(&bus->drained, &bus->lock, &deadline) == ETIMEDOUT) {
            ok = bus->dispatched >= accepted;
            break;
        }
    }
    pthread_mutex_unlock(&bus->lock);
    return ok ? GW_OK : GW_ERR_TIMEOUT;
}

void event_bus_get_stats(struct event_bus *bus, struct event_bus_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!bus)
        return;
    pthread_mutex_lock(&bus->lock);
    out->published = bus->published;
    out->dropped = bus->dropped;
    out->dispatched = bus->dispatched;
    out->queue_depth = bus->count;
    out->queue_high_water = bus->high_water;
    pthread_mutex_unlock(&bus->lock);
}

size_t event_bus_get_subscriber_stats(struct event_bus *bus, struct event_bus_subscriber_stats *out, size_t max)
{
    size_t written = 0;
    if (!bus || !out)
        return 0;
    pthread_mutex_lock(&bus->lock);
    for (int id = 0; id < EVENT_BUS_MAX_EVENT_ID && written < max; id++) {
        for (uint32_t k = 0; k < bus->sub_count[id] && written < max; k++) {
            const struct subscriber *s = &bus->subs[id][k];
            struct event_bus_subscriber_stats *o = &out[written++];
            gw_text_copy(o->name, sizeof o->name, s->name);
            o->event_id = id;
            o->calls = s->calls;
            o->total_us = s->total_us;
            o->max_us = s->max_us;
        }
    }
    pthread_mutex_unlock(&bus->lock);
    return written;
}

const void *event_payload(const struct gw_event *event, size_t expected_size)
{
    if (!event)
        return NULL;
    if (event->size == expected_size && (event->payload || expected_size == 0))
        return event->payload;
    static struct gw_log_limit limit;
    gw_log_ratelimited(&limit, 10000, GW_LOG_ERROR, MOD,
                       "event %d carries %zu bytes where its handler expects %zu: ignored", event->id,
                       event->size, expected_size);
    return NULL;
}

/* Every payload type of app_events.h fits one event (the battery view is checked where it is
 * defined and published). */
EVENT_PAYLOAD_FITS(struct bms_live_data);
EVENT_PAYLOAD_FITS(struct app_text);
EVENT_PAYLOAD_FITS(struct app_bms_comm);
EVENT_PAYLOAD_FITS(struct app_bms_stats);
EVENT_PAYLOAD_FITS(struct app_bms_events);
EVENT_PAYLOAD_FITS(struct app_bms_settings);
EVENT_PAYLOAD_FITS(struct app_bms_version);
EVENT_PAYLOAD_FITS(struct app_config_change);
EVENT_PAYLOAD_FITS(struct app_net_link);
EVENT_PAYLOAD_FITS(struct app_alert);
EVENT_PAYLOAD_FITS(struct app_alert_command);
EVENT_PAYLOAD_FITS(struct app_can_tx);
EVENT_PAYLOAD_FITS(struct app_inverter_link);
EVENT_PAYLOAD_FITS(struct app_charge_limits);
EVENT_PAYLOAD_FITS(struct app_charge_cap);
EVENT_PAYLOAD_FITS(struct app_storage_error);
