#define _POSIX_C_SOURCE 200809L
#include "gw_clock.h"

#include "gw_error.h"

#include <errno.h>
#include <stdatomic.h>
#include <time.h>

static _Atomic(uint64_t (*)(void)) now_source;
static _Atomic(int64_t (*)(void)) wall_source;

static uint64_t os_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t os_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t gw_now_ms(void)
{
    uint64_t (*fn)(void) = atomic_load(&now_source);
    return fn ? fn() : os_now_ms();
}

int64_t gw_wall_ms(void)
{
    int64_t (*fn)(void) = atomic_load(&wall_source);
    return fn ? fn() : os_wall_ms();
}

void gw_clock_set_sources(uint64_t (*now_ms)(void), int64_t (*wall_ms)(void))
{
    atomic_store(&now_source, now_ms);
    atomic_store(&wall_source, wall_ms);
}

void gw_monotonic_deadline(struct timespec *out, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, out);
    out->tv_sec += (time_t)(ms / 1000);
    out->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (out->tv_nsec >= 1000000000L) {
        out->tv_sec++;
        out->tv_nsec -= 1000000000L;
    }
}

void gw_sleep_ms(uint32_t ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

int gw_clock_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return GW_ERR_NOMEM;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? GW_OK : GW_ERR_NOMEM;
}

static int timed_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *ts)
{
    int rc = pthread_cond_timedwait(cond, mutex, ts);
    return rc == ETIMEDOUT ? GW_ERR_TIMEOUT : GW_OK;
}

int gw_clock_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ms)
{
    if (deadline_ms == GW_CLOCK_NEVER) {
        pthread_cond_wait(cond, mutex);
        return GW_OK;
    }
    uint64_t now = gw_now_ms();
    if (deadline_ms <= now)
        return GW_ERR_TIMEOUT;
    struct timespec ts;
    gw_monotonic_deadline(&ts, deadline_ms - now);
    return timed_wait(cond, mutex, &ts);
}

int gw_clock_wait_real(pthread_cond_t *cond, pthread_mutex_t *mutex, uint32_t timeout_ms)
{
    struct timespec ts;
    gw_monotonic_deadline(&ts, timeout_ms);
    return timed_wait(cond, mutex, &ts);
}
