/* Real-time helpers of gw_clock.h, shared by the OS clock (gw_clock.c) and the test clock
 * (tests/support/fake_clock.c): linked with gw_port, whichever clock an executable chooses. */
#define _POSIX_C_SOURCE 200809L
#include "gw_clock.h"

#include "gw_error.h"

#include <errno.h>
#include <time.h>

uint64_t gw_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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

int gw_clock_wait_real(pthread_cond_t *cond, pthread_mutex_t *mutex, uint32_t timeout_ms)
{
    struct timespec ts;
    gw_monotonic_deadline(&ts, timeout_ms);
    return pthread_cond_timedwait(cond, mutex, &ts) == ETIMEDOUT ? GW_ERR_TIMEOUT : GW_OK;
}
