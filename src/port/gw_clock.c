/* The gateway clock on the OS clocks (library gw_clock): what the daemon and the tools link.
 * Tests link tests/support/fake_clock.c instead (library gw_fake_clock); see gw_clock.h. */
#define _POSIX_C_SOURCE 200809L
#include "gw_clock.h"

#include "gw_error.h"

#include <errno.h>
#include <time.h>

uint64_t gw_now_ms(void)
{
    return gw_real_ms();
}

int64_t gw_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    return pthread_cond_timedwait(cond, mutex, &ts) == ETIMEDOUT ? GW_ERR_TIMEOUT : GW_OK;
}
