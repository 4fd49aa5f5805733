#define _POSIX_C_SOURCE 200809L
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>

struct recorder {
    pthread_mutex_t lock;
    int values[4096];
    int count;
};

static void record(const struct gw_event *ev, void *ctx)
{
    struct recorder *r = ctx;
    int v;
    memcpy(&v, ev->payload, sizeof v);
    pthread_mutex_lock(&r->lock);
    if (r->count < 4096)
        r->values[r->count++] = v;
    pthread_mutex_unlock(&r->lock);
}

static void test_fifo_order_and_payload_copy(void)
{
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct recorder r = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CHECK_EQ_INT(event_bus_subscribe(bus, 1, record, &r, "rec"), GW_OK);
    for (int i = 0; i < 200; i++) {
        int v = i;
        CHECK(event_bus_publish(bus, 1, &v, sizeof v, 1000) == GW_OK);
        v = -1; /* the bus must have copied it */
    }
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(r.count, 200);
    for (int i = 0; i < r.count; i++)
        CHECK_EQ_INT(r.values[i], i);
    event_bus_destroy(bus);
}

static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static atomic_int blocked_calls;
static void blocking_handler(const struct gw_event *ev, void *ctx)
{
    (void)ev;
    (void)ctx;
    atomic_fetch_add(&blocked_calls, 1);
    pthread_mutex_lock(&gate);
    pthread_mutex_unlock(&gate);
}

static void test_full_queue_times_out_and_counts_drop(void)
{
    struct event_bus_config cfg = { .queue_size = 4 };
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(&cfg, &bus), GW_OK);
    CHECK_EQ_INT(event_bus_subscribe(bus, 2, blocking_handler, NULL, "block"), GW_OK);
    pthread_mutex_lock(&gate);
    int v = 0;
    CHECK(event_bus_publish(bus, 2, &v, sizeof v, 100) == GW_OK);
    /* Wait until the dispatcher holds the first event, so exactly 4 more fit. */
    uint64_t deadline = gw_now_ms() + 5000;
    while (atomic_load(&blocked_calls) == 0 && gw_now_ms() < deadline)
        gw_sleep_ms(1);
    for (int i = 0; i < 4; i++)
        CHECK(event_bus_publish(bus, 2, &v, sizeof v, 100) == GW_OK);
    CHECK_EQ_INT(event_bus_publish(bus, 2, &v, sizeof v, 20), GW_ERR_FULL);
    CHECK_EQ_INT(event_bus_publish(bus, 2, &v, sizeof v, 0), GW_ERR_FULL);
    /* The handler still holds the first event: the queue cannot drain in time. */
    CHECK_EQ_INT(event_bus_flush(bus, 20), GW_ERR_TIMEOUT);
    struct event_bus_stats st;
    event_bus_get_stats(bus, &st);
    CHECK_EQ_INT(st.dropped, 2);
    CHECK_EQ_INT(st.queue_depth, 4);
    CHECK_EQ_INT(st.queue_high_water, 4);
    pthread_mutex_unlock(&gate);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(atomic_load(&blocked_calls), 5);
    event_bus_destroy(bus);
}

static void noop(const struct gw_event *ev, void *ctx)
{
    (void)ev;
    (void)ctx;
}

static void test_subscriber_limit_and_bad_input(void)
{
    struct event_bus_config cfg = { .max_subscribers = 3 };
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(&cfg, &bus), GW_OK);
    int ctx[4];
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(event_bus_subscribe(bus, 5, noop, &ctx[i], "n"), GW_OK);
    CHECK_EQ_INT(event_bus_subscribe(bus, 5, noop, &ctx[3], "n"), GW_ERR_FULL);
    CHECK_EQ_INT(event_bus_subscribe(bus, 6, noop, &ctx[3], "n"), GW_OK); /* per event id */
    CHECK_EQ_INT(event_bus_subscribe(bus, 0, noop, NULL, "n"), GW_ERR_INVAL);
    CHECK_EQ_INT(event_bus_subscribe(bus, EVENT_BUS_MAX_EVENT_ID, noop, NULL, "n"), GW_ERR_INVAL);
    CHECK_EQ_INT(event_bus_subscribe(bus, 5, NULL, NULL, "n"), GW_ERR_INVAL);
    static unsigned char big[EVENT_BUS_MAX_PAYLOAD + 1];
    CHECK_EQ_INT(event_bus_publish(bus, 5, big, sizeof big, 10), GW_ERR_RANGE);
    CHECK_EQ_INT(event_bus_publish(bus, 5, big, EVENT_BUS_MAX_PAYLOAD, 10), GW_OK);
    CHECK_EQ_INT(event_bus_publish(bus, 5, NULL, 4, 10), GW_ERR_INVAL);
    CHECK_EQ_INT(event_bus_publish(bus, 0, NULL, 0, 10), GW_ERR_INVAL);
    CHECK_EQ_INT(event_bus_publish(bus, EVENT_BUS_MAX_EVENT_ID, NULL, 0, 10), GW_ERR_INVAL);
    CHECK_EQ_INT(event_bus_publish(NULL, 5, NULL, 0, 10), GW_ERR_INVAL);
    CHECK_EQ_INT(event_bus_flush(NULL, 10), GW_ERR_INVAL);
    CHECK_EQ_INT(event_bus_unsubscribe(bus, 5, noop, &ctx[0]), GW_OK);
    CHECK_EQ_INT(event_bus_unsubscribe(bus, 5, noop, &ctx[0]), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(event_bus_subscribe(bus, 5, noop, &ctx[3], "n"), GW_OK);
    event_bus_destroy(bus);
}

struct publisher_arg {
    struct event_bus *bus;
    int base;
};

static void *publisher_thread(void *p)
{
    struct publisher_arg *a = p;
    for (int i = 0; i < 500; i++) {
        int v = a->base + i;
        while (event_bus_publish(a->bus, 1, &v, sizeof v, 1000) != GW_OK) {
        }
    }
    return NULL;
}

static void test_concurrent_publishers_keep_per_thread_order(void)
{
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    static struct recorder r = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CHECK_EQ_INT(event_bus_subscribe(bus, 1, record, &r, "rec"), GW_OK);
    pthread_t t[4];
    struct publisher_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct publisher_arg){ bus, i * 1000 };
        pthread_create(&t[i], NULL, publisher_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(event_bus_flush(bus, 10000) == GW_OK);
    CHECK_EQ_INT(r.count, 2000);
    int last[4] = { -1, -1, -1, -1 };
    for (int i = 0; i < r.count; i++) {
        int th = r.values[i] / 1000, seq = r.values[i] % 1000;
        CHECK(seq > last[th]);
        last[th] = seq;
    }
    struct event_bus_subscriber_stats ss[4];
    CHECK_EQ_INT(event_bus_get_subscriber_stats(bus, ss, 4), 1);
    CHECK_EQ_INT(ss[0].calls, 2000);
    CHECK_STR(ss[0].name, "rec");
    event_bus_destroy(bus);
}

struct self_unsub {
    struct event_bus *bus;
    int calls;
};

static void unsubscribing_handler(const struct gw_event *ev, void *ctx)
{
    struct self_unsub *s = ctx;
    s->calls++;
    event_bus_unsubscribe(s->bus, ev->id, unsubscribing_handler, ctx);
}

static void test_handler_may_unsubscribe_itself(void)
{
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct self_unsub s = { bus, 0 };
    CHECK_EQ_INT(event_bus_subscribe(bus, 3, unsubscribing_handler, &s, "self"), GW_OK);
    for (int i = 0; i < 3; i++)
        CHECK(event_bus_publish(bus, 3, NULL, 0, 100) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK_EQ_INT(s.calls, 1);
    event_bus_destroy(bus);
}

static void test_destroy_delivers_queued_events(void)
{
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    static struct recorder r = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CHECK_EQ_INT(event_bus_subscribe(bus, 1, record, &r, "rec"), GW_OK);
    for (int i = 0; i < 20; i++)
        CHECK(event_bus_publish(bus, 1, &i, sizeof i, 1000) == GW_OK);
    event_bus_destroy(bus);
    CHECK_EQ_INT(r.count, 20);
}

/* The bus logs drops and slow handlers through one static rate-limit site shared by every
 * publishing thread: gw_log_ratelimited must count exactly under contention (it lost counts
 * and could log twice per window when a site was not per thread). */
#define LIMIT_THREADS 4
#define LIMIT_CALLS 100000

static struct gw_log_limit shared_limit;

static void *hammer_limit(void *arg)
{
    (void)arg;
    for (int i = 0; i < LIMIT_CALLS; i++)
        gw_log_ratelimited(&shared_limit, 3600000, GW_LOG_ERROR, "test", "shared site %d", i);
    return NULL;
}

static void test_shared_rate_limit_site_counts_exactly(void)
{
    memset(&shared_limit, 0, sizeof shared_limit);
    pthread_t th[LIMIT_THREADS];
    for (int i = 0; i < LIMIT_THREADS; i++)
        CHECK_EQ_INT(pthread_create(&th[i], NULL, hammer_limit, NULL), 0);
    for (int i = 0; i < LIMIT_THREADS; i++)
        pthread_join(th[i], NULL);
    /* One line logged within the hour-long window, every other call counted. */
    CHECK_EQ_INT(shared_limit.suppressed, LIMIT_THREADS * LIMIT_CALLS - 1);
}

/* A handler reads its payload only when the size is exactly its type's: a short or long payload
 * is refused (NULL), never read as zeros or past its end. */
static void test_payload_accessor_refuses_a_size_mismatch(void)
{
    struct payload { uint32_t a, b; } p = { 1, 2 };
    struct gw_event ev = { .id = 5, .payload = &p, .size = sizeof p };
    const struct payload *got = EVENT_PAYLOAD(&ev, struct payload);
    CHECK(got == &p);
    ev.size = sizeof p - 1;
    CHECK(EVENT_PAYLOAD(&ev, struct payload) == NULL);
    ev.size = sizeof p + 4;
    CHECK(EVENT_PAYLOAD(&ev, struct payload) == NULL);
    ev.size = 0;
    ev.payload = NULL;
    CHECK(EVENT_PAYLOAD(&ev, struct payload) == NULL);
    CHECK(event_payload(NULL, 0) == NULL);
}

struct flush_probe {
    struct event_bus *bus;
    atomic_int rc;
    atomic_int calls;
};

static void flushing_handler(const struct gw_event *ev, void *ctx)
{
    (void)ev;
    struct flush_probe *f = ctx;
    atomic_store(&f->rc, event_bus_flush(f->bus, 100));
    atomic_fetch_add(&f->calls, 1);
}

/* A handler that flushes would wait for its own event: refused at once, not a timeout. */
static void test_flush_from_a_handler_is_refused(void)
{
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct flush_probe f = { .bus = bus, .rc = GW_OK };
    CHECK_EQ_INT(event_bus_subscribe(bus, 4, flushing_handler, &f, "flush"), GW_OK);
    CHECK_EQ_INT(event_bus_publish(bus, 4, NULL, 0, 100), GW_OK);
    CHECK_EQ_INT(event_bus_flush(bus, 5000), GW_OK);
    CHECK_EQ_INT(atomic_load(&f.calls), 1);
    CHECK_EQ_INT(atomic_load(&f.rc), GW_ERR_STATE);
    event_bus_destroy(bus);
}

TEST_MAIN(TEST_CASE(test_fifo_order_and_payload_copy), TEST_CASE(test_full_queue_times_out_and_counts_drop),
          TEST_CASE(test_subscriber_limit_and_bad_input), TEST_CASE(test_concurrent_publishers_keep_per_thread_order),
          TEST_CASE(test_handler_may_unsubscribe_itself), TEST_CASE(test_destroy_delivers_queued_events),
          TEST_CASE(test_shared_rate_limit_site_counts_exactly),
          TEST_CASE(test_payload_accessor_refuses_a_size_mismatch), TEST_CASE(test_flush_from_a_handler_is_refused))
