/* In-memory CAN transport with a peer side; see fake_can.h. */
#define _POSIX_C_SOURCE 200809L
#include "fake_can.h"

#include "gw_clock.h"
#include "gw_error.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ring {
    struct can_frame_gw f[FAKE_CAN_QUEUE];
    size_t head, len;
};

struct fake_can {
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a queue moved or the bus hung up */
    struct ring tx, rx;
    size_t tx_capacity;
    bool hung_up;
    struct can_transport_stats stats;
};

static void ring_push(struct ring *r, const struct can_frame_gw *f)
{
    r->f[(r->head + r->len) % FAKE_CAN_QUEUE] = *f;
    r->len++;
}

static struct can_frame_gw ring_pop(struct ring *r)
{
    struct can_frame_gw f = r->f[r->head];
    r->head = (r->head + 1) % FAKE_CAN_QUEUE;
    r->len--;
    return f;
}

/* Waits on changed until deadline (real time); false once it passed. Called with lock held. */
static bool wait_until(struct fake_can *c, const struct timespec *deadline)
{
    return pthread_cond_timedwait(&c->changed, &c->lock, deadline) != ETIMEDOUT;
}

static int fake_open(struct can_transport *t, const char *arg, uint32_t bitrate)
{
    (void)arg;
    if (bitrate == 0)
        return GW_ERR_INVAL;
    struct fake_can *c = calloc(1, sizeof *c);
    if (!c)
        return GW_ERR_NOMEM;
    pthread_mutex_init(&c->lock, NULL);
    if (gw_clock_cond_init(&c->changed) != GW_OK) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return GW_ERR_NOMEM;
    }
    c->tx_capacity = FAKE_CAN_QUEUE;
    t->impl = c;
    return GW_OK;
}

static int fake_send(struct can_transport *t, const struct can_frame_gw *frame, uint32_t timeout_ms)
{
    struct fake_can *c = t->impl;
    int rc = can_frame_validate(frame);
    struct timespec deadline;
    gw_monotonic_deadline(&deadline, timeout_ms);
    pthread_mutex_lock(&c->lock);
    bool waited = false;
    while (rc == GW_OK && !c->hung_up && c->tx.len >= c->tx_capacity) {
        if (!waited) {
            c->stats.tx_queue_full++;
            waited = true;
        }
        if (!wait_until(c, &deadline) && !c->hung_up && c->tx.len >= c->tx_capacity)
            rc = GW_ERR_TIMEOUT;
    }
    if (rc == GW_OK && c->hung_up)
        rc = GW_ERR_CLOSED;
    if (rc == GW_OK) {
        ring_push(&c->tx, frame);
        c->stats.tx_ok++;
        pthread_cond_broadcast(&c->changed);
    } else {
        c->stats.tx_failed++;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int fake_recv(struct can_transport *t, struct can_frame_gw *frame, uint32_t timeout_ms)
{
    struct fake_can *c = t->impl;
    struct timespec deadline;
    gw_monotonic_deadline(&deadline, timeout_ms);
    pthread_mutex_lock(&c->lock);
    int rc = GW_ERR_TIMEOUT;
    for (;;) {
        if (c->hung_up) {
            rc = GW_ERR_CLOSED;
            break;
        }
        if (c->rx.len) {
            *frame = ring_pop(&c->rx);
            c->stats.rx++;
            rc = GW_OK;
            break;
        }
        if (!wait_until(c, &deadline) && !c->rx.len && !c->hung_up)
            break;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void fake_close(struct can_transport *t)
{
    struct fake_can *c = t->impl;
    if (!c)
        return;
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->lock);
    free(c);
    t->impl = NULL;
}

static void fake_stats(struct can_transport *t, struct can_transport_stats *out)
{
    struct fake_can *c = t->impl;
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

const struct can_transport_ops fake_can_ops = {
    .name = "fake",
    .open = fake_open,
    .send = fake_send,
    .recv = fake_recv,
    .close = fake_close,
    .stats = fake_stats,
};

int fake_can_open(struct can_transport **out)
{
    *out = NULL;
    struct can_transport *t = calloc(1, sizeof *t);
    if (!t)
        return GW_ERR_NOMEM;
    t->ops = &fake_can_ops;
    memcpy(t->spec, "fake:", 6);
    int rc = fake_can_ops.open(t, "", 500000);
    if (rc != GW_OK) {
        free(t);
        return rc;
    }
    *out = t;
    return GW_OK;
}

static struct fake_can *peer(struct can_transport *t)
{
    return t && t->ops == &fake_can_ops ? t->impl : NULL;
}

bool fake_can_peer_take(struct can_transport *t, struct can_frame_gw *frame)
{
    struct fake_can *c = peer(t);
    if (!c || !frame)
        return false;
    pthread_mutex_lock(&c->lock);
    bool got = c->tx.len > 0;
    if (got) {
        *frame = ring_pop(&c->tx);
        pthread_cond_broadcast(&c->changed);
    }
    pthread_mutex_unlock(&c->lock);
    return got;
}

bool fake_can_peer_put(struct can_transport *t, const struct can_frame_gw *frame)
{
    struct fake_can *c = peer(t);
    if (!c || !frame)
        return false;
    pthread_mutex_lock(&c->lock);
    bool ok = !c->hung_up && c->rx.len < FAKE_CAN_QUEUE;
    if (ok) {
        ring_push(&c->rx, frame);
        pthread_cond_broadcast(&c->changed);
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

bool fake_can_peer_set_tx_capacity(struct can_transport *t, size_t frames)
{
    struct fake_can *c = peer(t);
    if (!c || frames == 0 || frames > FAKE_CAN_QUEUE)
        return false;
    pthread_mutex_lock(&c->lock);
    c->tx_capacity = frames;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    return true;
}

bool fake_can_peer_hang_up(struct can_transport *t)
{
    struct fake_can *c = peer(t);
    if (!c)
        return false;
    pthread_mutex_lock(&c->lock);
    c->hung_up = true;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    return true;
}
