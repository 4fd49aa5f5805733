/* The one clock of the gateway. Every timeout, period and rate limit reads gw_now_ms()
 * (monotonic); wall-clock time is only for timestamps shown to people and stored in history.
 *
 * Two implementations define the "gateway clock" part (gw_now_ms, gw_wall_ms, gw_clock_wait):
 * the OS clock (library gw_clock, src/port/gw_clock.c) for the daemon and the tools, and a
 * fake clock for tests (library gw_fake_clock, tests/support/fake_clock.h), chosen when an
 * executable is linked, never at run time: production code has no hook to replace the clock.
 * The rest of this header (gw_real_ms, gw_clock_wait_real, gw_sleep_ms, ...) is real time in
 * both (src/port/gw_clock_common.c, in gw_port). docs/architecture.md, "Time", says how to link.
 * Every function is thread-safe. */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

#include <pthread.h>
#include <stdint.h>

/* ---- the gateway clock (faked in tests) ------------------------------------------------ */

/* Milliseconds from an arbitrary origin, never going backwards. */
uint64_t gw_now_ms(void);

/* Unix time in milliseconds (CLOCK_REALTIME). */
int64_t gw_wall_ms(void);

/* Deadline meaning "no deadline": wait for a signal only. */
#define GW_CLOCK_NEVER UINT64_MAX

/* The one wait of every service loop: with mutex held, sleeps until cond is signalled or
 * gw_now_ms() reaches deadline_ms (GW_CLOCK_NEVER: signal only). Returns GW_OK when woken
 * (possibly spuriously: re-check the predicate) or GW_ERR_TIMEOUT once the deadline is reached.
 * A thread that calls it wakes only for a signal or its deadline, never to poll. cond must come
 * from gw_clock_cond_init. The fake clock wakes every thread waiting here when test time moves;
 * the mutex may then be released and re-taken once more before the return (as any wait does). */
int gw_clock_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ms);

/* ---- real time (never faked) ----------------------------------------------------------- */

/* Milliseconds of CLOCK_MONOTONIC: only to bound how long a call blocks on the outside world
 * (a serial answer, a broker flush, a test waiting for a thread), never for a schedule. */
uint64_t gw_real_ms(void);

/* Absolute CLOCK_MONOTONIC time ms milliseconds of real time from now, for
 * pthread_cond_timedwait on condition variables created with
 * pthread_condattr_setclock(CLOCK_MONOTONIC). Real time, not the gateway clock. */
struct timespec;
void gw_monotonic_deadline(struct timespec *out, uint64_t ms);

/* Sleep for ms milliseconds of real time (EINTR resumed). */
void gw_sleep_ms(uint32_t ms);

/* Initialises cond for gw_clock_wait / gw_clock_wait_real (monotonic clock attribute).
 * Returns GW_OK or GW_ERR_NOMEM. */
int gw_clock_cond_init(pthread_cond_t *cond);

/* Waits at most timeout_ms of real time, whatever the gateway clock does: for callers bounding
 * how long they block on another thread (flush, stop). Same returns as gw_clock_wait. */
int gw_clock_wait_real(pthread_cond_t *cond, pthread_mutex_t *mutex, uint32_t timeout_ms);

#endif
