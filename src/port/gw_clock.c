#define _POSIX_C_SOURCE 200809L
#include "gw_clock.h"

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
