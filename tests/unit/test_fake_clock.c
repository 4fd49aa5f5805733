/* The test clock (tests/support/fake_clock.c): reading, moving, and waking every sleeper in
 * gw_clock_wait without a lost wake-up, while gw_clock_wait_real stays real time. */
#define _POSIX_C_SOURCE 200809L
#include "fake_clock.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "support/wait.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* One sleeper: waits in gw_clock_wait until `deadline` or until `go` is set and signalled. */
struct sleeper {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t deadline;
    bool go;
    bool waiting;       /* inside gw_clock_wait (seen under lock: the lock was released by it) */
    int last_rc;
    int returns;
    atomic_bool done;
    pthread_t thread;
};

static void *sleeper_main(void *arg)
{
    struct sleeper *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        s->waiting = true;
        int rc = gw_clock_wait(&s->cond, &s->lock, s->deadline);
        s->waiting = false;
        s->returns++;
        s->last_rc = rc;
        if (rc == GW_ERR_TIMEOUT || s->go)
            break;
    }
    pthread_mutex_unlock(&s->lock);
    atomic_store(&s->done, true);
    return NULL;
}

static void sleeper_start(struct sleeper *s, uint64_t deadline)
{
    pthread_mutex_init(&s->lock, NULL);
    CHECK_EQ_INT(gw_clock_cond_init(&s->cond), GW_OK);
    s->deadline = deadline;
    s->go = false;
    s->waiting = false;
    s->returns = 0;
    s->last_rc = -1;
    atomic_init(&s->done, false);
    CHECK_EQ_INT(pthread_create(&s->thread, NULL, sleeper_main, s), 0);
}

/* Until the sleeper is inside gw_clock_wait (real time, bounded). */
static bool is_waiting(struct sleeper *s)
{
    pthread_mutex_lock(&s->lock);
    bool w = s->waiting;
    pthread_mutex_unlock(&s->lock);
    return w;
}

static bool wait_waiting(struct sleeper *s)
{
    bool ok;
    WAIT_FOR(ok, is_waiting(s), 10000);
    return ok;
}

static bool wait_done(struct sleeper *s, uint32_t timeout_ms)
{
    bool ok;
    WAIT_FOR(ok, atomic_load(&s->done), timeout_ms);
    return ok;
}

static void sleeper_join(struct sleeper *s)
{
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
}

static void test_follows_the_os_until_set(void)
{
    fake_clock_use_real();
    uint64_t a = gw_real_ms();
    uint64_t now = gw_now_ms();
    uint64_t b = gw_real_ms();
    CHECK(now >= a && now <= b);
    fake_clock_set_ms(1000);
    CHECK_EQ_INT(gw_now_ms(), 1000);
    fake_clock_advance_ms(250);
    CHECK_EQ_INT(gw_now_ms(), 1250);
    CHECK_EQ_INT(gw_now_ms(), 1250); /* frozen: reading does not move it */
    fake_clock_set_wall_ms(1705500000123LL);
    CHECK_EQ_INT(gw_wall_ms(), 1705500000123LL);
    fake_clock_use_real();
    CHECK(gw_now_ms() >= b);
    CHECK(gw_wall_ms() > 1705500000123LL);
}

static void test_step_moves_on_each_read(void)
{
    fake_clock_set_ms(5000);
    fake_clock_set_step_ms(1000);
    CHECK_EQ_INT(gw_now_ms(), 5000);
    CHECK_EQ_INT(gw_now_ms(), 6000);
    CHECK_EQ_INT(gw_now_ms(), 7000);
    fake_clock_set_step_ms(0);
    uint64_t t = gw_now_ms();
    CHECK_EQ_INT(gw_now_ms(), t);
    fake_clock_use_real();
}

/* A sleeper wakes exactly when time reaches its deadline: a move short of it is a spurious
 * wake (re-checked), the move onto it a timeout. */
static void test_sleeper_wakes_at_its_deadline(void)
{
    fake_clock_set_ms(10000);
    struct sleeper s;
    sleeper_start(&s, 10500);
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(fake_clock_waiters(), 1);
    CHECK_EQ_INT(fake_clock_next_deadline(), 10500);
    fake_clock_advance_ms(499);
    CHECK(fake_clock_settle(1, 10000)); /* woke, saw 10499, went back to sleep */
    CHECK(!atomic_load(&s.done));
    fake_clock_advance_ms(1);
    CHECK(wait_done(&s, 10000));
    sleeper_join(&s);
    CHECK_EQ_INT(s.last_rc, GW_ERR_TIMEOUT);
    CHECK_EQ_INT(s.returns, 2);
    CHECK_EQ_INT(fake_clock_waiters(), 0);
    CHECK_EQ_INT(fake_clock_next_deadline(), GW_CLOCK_NEVER);
    fake_clock_use_real();
}

static void test_signal_and_past_deadline(void)
{
    fake_clock_set_ms(2000);
    /* A deadline already reached returns at once, without sleeping. */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c;
    CHECK_EQ_INT(gw_clock_cond_init(&c), GW_OK);
    uint64_t before = fake_clock_wait_returns();
    pthread_mutex_lock(&m);
    CHECK_EQ_INT(gw_clock_wait(&c, &m, 2000), GW_ERR_TIMEOUT);
    CHECK_EQ_INT(gw_clock_wait(&c, &m, 1), GW_ERR_TIMEOUT);
    pthread_mutex_unlock(&m);
    CHECK_EQ_INT(fake_clock_wait_returns() - before, 2);
    pthread_cond_destroy(&c);

    /* A signal wakes it before the deadline: GW_OK. */
    struct sleeper s;
    sleeper_start(&s, 1000000);
    CHECK(fake_clock_settle(1, 10000));
    pthread_mutex_lock(&s.lock);
    s.go = true;
    pthread_cond_signal(&s.cond);
    pthread_mutex_unlock(&s.lock);
    CHECK(wait_done(&s, 10000));
    sleeper_join(&s);
    CHECK_EQ_INT(s.last_rc, GW_OK);
    CHECK_EQ_INT(gw_now_ms(), 2000);

    /* GW_CLOCK_NEVER: not a timed waiter, moves do not end it, a signal does. */
    sleeper_start(&s, GW_CLOCK_NEVER);
    CHECK(wait_waiting(&s));
    fake_clock_advance_ms(1000000);
    CHECK_EQ_INT(fake_clock_waiters(), 0);
    pthread_mutex_lock(&s.lock);
    s.go = true;
    pthread_cond_signal(&s.cond);
    pthread_mutex_unlock(&s.lock);
    CHECK(wait_done(&s, 10000));
    sleeper_join(&s);
    CHECK_EQ_INT(s.last_rc, GW_OK);
    fake_clock_use_real();
}

/* A thread that started waiting on the OS clock (a minute away) is woken by freezing the clock
 * onto its deadline: it does not sleep the real minute. */
static void test_freezing_wakes_real_time_sleepers(void)
{
    fake_clock_use_real();
    uint64_t deadline = gw_now_ms() + 60000;
    struct sleeper s;
    sleeper_start(&s, deadline);
    CHECK(fake_clock_settle(1, 10000));
    uint64_t t0 = gw_real_ms();
    fake_clock_set_ms(deadline);
    CHECK(wait_done(&s, 30000));
    CHECK(gw_real_ms() - t0 < 60000);
    sleeper_join(&s);
    CHECK_EQ_INT(s.last_rc, GW_ERR_TIMEOUT);
    fake_clock_use_real();
}

/* gw_clock_wait_real is real time even while the gateway clock stands still. */
static void test_wait_real_is_real(void)
{
    fake_clock_set_ms(42);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c;
    CHECK_EQ_INT(gw_clock_cond_init(&c), GW_OK);
    uint64_t t0 = gw_real_ms();
    pthread_mutex_lock(&m);
    int rc;
    do
        rc = gw_clock_wait_real(&c, &m, 30);
    while (rc == GW_OK); /* spurious */
    pthread_mutex_unlock(&m);
    CHECK_EQ_INT(rc, GW_ERR_TIMEOUT);
    CHECK(gw_real_ms() - t0 >= 30);
    CHECK_EQ_INT(gw_now_ms(), 42);
    pthread_cond_destroy(&c);
    fake_clock_use_real();
}

/* Many sleepers, each on its own mutex and condition variable created and destroyed per wait,
 * while time moves one millisecond at a time from another thread, with no pause for them to
 * settle. A lost wake-up leaves a sleeper asleep after the last move (found below, without any
 * further move); a mover touching a mutex its owner destroyed is found by AddressSanitizer. */
#define STRESS_THREADS 8
#define STRESS_ROUNDS 60

struct stress {
    int index;
    atomic_int rounds_done;
};

static void *stress_main(void *arg)
{
    struct stress *st = arg;
    for (int r = 0; r < STRESS_ROUNDS; r++) {
        pthread_mutex_t *m = malloc(sizeof *m);
        pthread_cond_t *c = malloc(sizeof *c);
        pthread_mutex_init(m, NULL);
        gw_clock_cond_init(c);
        uint64_t deadline = 1000 + (uint64_t)(r * 10 + st->index % 10);
        pthread_mutex_lock(m);
        while (gw_clock_wait(c, m, deadline) != GW_ERR_TIMEOUT) {
        }
        pthread_mutex_unlock(m);
        pthread_cond_destroy(c);
        pthread_mutex_destroy(m);
        free(c);
        free(m);
        atomic_store(&st->rounds_done, r + 1);
    }
    return NULL;
}

static void test_no_lost_wakeups_under_load(void)
{
    fake_clock_set_ms(1000);
    struct stress st[STRESS_THREADS];
    pthread_t th[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++) {
        st[i].index = i;
        atomic_init(&st[i].rounds_done, 0);
        CHECK_EQ_INT(pthread_create(&th[i], NULL, stress_main, &st[i]), 0);
    }
    uint64_t last = 1000 + (STRESS_ROUNDS - 1) * 10 + 9;
    for (uint64_t t = 1000; t <= last; t++) {
        fake_clock_set_ms(t);
        if (t % 8 == 0)
            gw_sleep_ms(1); /* pacing, so that sleepers are asleep for some of the moves */
    }
    /* No further move: every sleeper must finish on the wake-ups it got. */
    uint64_t give_up = gw_real_ms() + 30000;
    bool all = false;
    while (!all && gw_real_ms() < give_up) {
        all = true;
        for (int i = 0; i < STRESS_THREADS; i++)
            if (atomic_load(&st[i].rounds_done) < STRESS_ROUNDS)
                all = false;
        if (!all)
            gw_sleep_ms(2);
    }
    CHECK(all);
    if (!all) /* unstick the lost ones so the test can end */
        for (int k = 0; k < 1000 && fake_clock_waiters(); k++)
            fake_clock_set_ms(last);
    for (int i = 0; i < STRESS_THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(fake_clock_waiters(), 0);
    fake_clock_use_real();
}

TEST_MAIN(TEST_CASE(test_follows_the_os_until_set), TEST_CASE(test_step_moves_on_each_read),
          TEST_CASE(test_sleeper_wakes_at_its_deadline), TEST_CASE(test_signal_and_past_deadline),
          TEST_CASE(test_freezing_wakes_real_time_sleepers), TEST_CASE(test_wait_real_is_real),
          TEST_CASE(test_no_lost_wakeups_under_load))
