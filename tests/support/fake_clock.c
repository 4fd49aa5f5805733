/* The test clock (library gw_fake_clock): gw_now_ms, gw_wall_ms and gw_clock_wait of
 * gw_clock.h on a time the test moves. See fake_clock.h.
 *
 * Waking sleepers without a lost wake-up: a thread in gw_clock_wait holds its mutex M while it
 * registers (cond, M, deadline) in the registry under reg_lock, reads the time under reg_lock
 * too, and only then waits on cond (which releases M). A move changes the time and takes a
 * snapshot of the registry under reg_lock, releases it, and then broadcasts each cond with its
 * M held. Either the waiter registered before the move (then the broadcast, which needs M,
 * happens once it is inside the wait) or after (then it read the new time).
 *
 * Lock order: M -> reg_lock only (a waiter holds M when it takes reg_lock; a move never holds
 * reg_lock while taking M). A snapshot entry is pinned (refs) until its broadcast is done; a
 * leaving waiter unlinks itself (no new pin possible), and if still pinned releases M, waits
 * for refs == 0 on reg_cond and takes M again, so a service never destroys a mutex the mover
 * is about to lock. */
#define _POSIX_C_SOURCE 200809L
#include "fake_clock.h"

#include "gw_clock.h"
#include "gw_error.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SNAPSHOT_MAX 256 /* waiters woken by one move; more is a test bug */

struct waiter {
    pthread_cond_t *cond;
    pthread_mutex_t *mutex;
    uint64_t deadline_ms;
    uint64_t epoch;      /* the move count when it registered */
    unsigned refs;       /* snapshots still to broadcast it */
    struct waiter *prev, *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cond = PTHREAD_COND_INITIALIZER; /* a pin was released */
static struct waiter *waiters;
static uint64_t epoch;                 /* moves so far (reg_lock) */

static atomic_bool mono_frozen, wall_frozen;
static _Atomic uint64_t mono_ms, step_ms;
static _Atomic int64_t wall_ms;
static _Atomic uint64_t wait_returns;

/* ---- reading ------------------------------------------------------------------------- */

uint64_t gw_now_ms(void)
{
    if (!atomic_load(&mono_frozen))
        return gw_real_ms();
    uint64_t step = atomic_load(&step_ms);
    return step ? atomic_fetch_add(&mono_ms, step) : atomic_load(&mono_ms);
}

int64_t gw_wall_ms(void)
{
    if (atomic_load(&wall_frozen))
        return atomic_load(&wall_ms);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- moving ---------------------------------------------------------------------------- */

/* With reg_lock held: pins every registered waiter into out. */
static size_t snapshot_locked(struct waiter **out)
{
    size_t n = 0;
    for (struct waiter *w = waiters; w; w = w->next) {
        if (n == SNAPSHOT_MAX) {
            fprintf(stderr, "fake_clock: more than %d threads waiting at once\n", SNAPSHOT_MAX);
            abort();
        }
        w->refs++;
        out[n++] = w;
    }
    return n;
}

static void wake(struct waiter **list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(list[i]->mutex);
        pthread_cond_broadcast(list[i]->cond);
        pthread_mutex_unlock(list[i]->mutex);
    }
    if (n == 0)
        return;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < n; i++)
        list[i]->refs--;
    pthread_cond_broadcast(&reg_cond);
    pthread_mutex_unlock(&reg_lock);
}

enum move { MOVE_SET, MOVE_ADVANCE, MOVE_STEP, MOVE_REAL };

static void move(enum move kind, uint64_t value)
{
    static struct waiter *list[SNAPSHOT_MAX];
    static pthread_mutex_t move_lock = PTHREAD_MUTEX_INITIALIZER; /* one mover at a time: list */
    pthread_mutex_lock(&move_lock);
    pthread_mutex_lock(&reg_lock);
    uint64_t now = gw_now_ms();
    switch (kind) {
    case MOVE_SET:
        atomic_store(&mono_ms, value);
        atomic_store(&mono_frozen, true);
        break;
    case MOVE_ADVANCE:
        atomic_store(&mono_ms, now + value);
        atomic_store(&mono_frozen, true);
        break;
    case MOVE_STEP:
        atomic_store(&mono_ms, now);
        atomic_store(&step_ms, value);
        atomic_store(&mono_frozen, true);
        break;
    case MOVE_REAL:
        atomic_store(&step_ms, 0);
        atomic_store(&mono_frozen, false);
        atomic_store(&wall_frozen, false);
        break;
    }
    epoch++;
    size_t n = snapshot_locked(list);
    pthread_mutex_unlock(&reg_lock);
    wake(list, n);
    pthread_mutex_unlock(&move_lock);
}

void fake_clock_set_ms(uint64_t now_ms) { move(MOVE_SET, now_ms); }
void fake_clock_advance_ms(uint64_t ms) { move(MOVE_ADVANCE, ms); }
void fake_clock_set_step_ms(uint64_t step) { move(MOVE_STEP, step); }
void fake_clock_use_real(void) { move(MOVE_REAL, 0); }

void fake_clock_set_wall_ms(int64_t wall)
{
    atomic_store(&wall_ms, wall);
    atomic_store(&wall_frozen, true);
}

/* ---- waiting --------------------------------------------------------------------------- */

int gw_clock_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ms)
{
    if (deadline_ms == GW_CLOCK_NEVER) {
        pthread_cond_wait(cond, mutex);
        atomic_fetch_add(&wait_returns, 1);
        return GW_OK;
    }
    struct waiter w = { .cond = cond, .mutex = mutex, .deadline_ms = deadline_ms };
    pthread_mutex_lock(&reg_lock);
    uint64_t now = gw_now_ms();
    bool frozen = atomic_load(&mono_frozen);
    if (now >= deadline_ms) {
        pthread_mutex_unlock(&reg_lock);
        atomic_fetch_add(&wait_returns, 1);
        return GW_ERR_TIMEOUT;
    }
    w.epoch = epoch;
    w.next = waiters;
    if (waiters)
        waiters->prev = &w;
    waiters = &w;
    pthread_mutex_unlock(&reg_lock);

    if (frozen) {
        pthread_cond_wait(cond, mutex); /* only a signal or a move wakes it */
    } else {
        struct timespec ts;
        gw_monotonic_deadline(&ts, deadline_ms - now);
        pthread_cond_timedwait(cond, mutex, &ts);
    }

    /* Unlinked first, so no later move can pin it; then the pins taken so far are waited for
     * with the mutex released (their mover locks it). */
    pthread_mutex_lock(&reg_lock);
    if (w.prev)
        w.prev->next = w.next;
    else
        waiters = w.next;
    if (w.next)
        w.next->prev = w.prev;
    if (w.refs) {
        pthread_mutex_unlock(mutex);
        while (w.refs)
            pthread_cond_wait(&reg_cond, &reg_lock);
        pthread_mutex_unlock(&reg_lock);
        pthread_mutex_lock(mutex);
    } else {
        pthread_mutex_unlock(&reg_lock);
    }
    atomic_fetch_add(&wait_returns, 1);
    return gw_now_ms() >= deadline_ms ? GW_ERR_TIMEOUT : GW_OK;
}

/* ---- observing ------------------------------------------------------------------------- */

unsigned fake_clock_waiters(void)
{
    unsigned n = 0;
    pthread_mutex_lock(&reg_lock);
    for (struct waiter *w = waiters; w; w = w->next)
        n++;
    pthread_mutex_unlock(&reg_lock);
    return n;
}

uint64_t fake_clock_next_deadline(void)
{
    uint64_t next = GW_CLOCK_NEVER;
    pthread_mutex_lock(&reg_lock);
    for (struct waiter *w = waiters; w; w = w->next)
        if (w->deadline_ms < next)
            next = w->deadline_ms;
    pthread_mutex_unlock(&reg_lock);
    return next;
}

bool fake_clock_settle(unsigned n, uint32_t timeout_ms)
{
    uint64_t give_up = gw_real_ms() + timeout_ms;
    for (;;) {
        unsigned settled = 0;
        bool stale = false;
        pthread_mutex_lock(&reg_lock);
        for (struct waiter *w = waiters; w; w = w->next) {
            if (w->epoch == epoch)
                settled++;
            else
                stale = true;
        }
        pthread_mutex_unlock(&reg_lock);
        if (settled >= n && !stale)
            return true;
        if (gw_real_ms() >= give_up)
            return false;
        gw_sleep_ms(1);
    }
}

uint64_t fake_clock_wait_returns(void)
{
    return atomic_load(&wait_returns);
}
