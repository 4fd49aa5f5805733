/* The one clock of the gateway. Every timeout, period and rate limit reads gw_now_ms()
 * (monotonic); wall-clock time is only for timestamps shown to people and stored in history.
 * Tests replace both sources to live through days of battery life in seconds. Thread-safe. */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

#include <pthread.h>
#include <stdint.h>

/* Milliseconds from an arbitrary origin, never going backwards. */
uint64_t gw_now_ms(void);

/* Unix time in milliseconds (CLOCK_REALTIME). */
int64_t gw_wall_ms(void);

/* Replace the sources (NULL restores the OS clocks). For tests and the simulator only;
 * call before any thread reads the clock. */
void gw_clock_set_sources(uint64_t (*now_ms)(void), int64_t (*wall_ms)(void));

/* Absolute CLOCK_MONOTONIC time ms milliseconds of real time from now, for
 * pthread_cond_timedwait on condition variables created with
 * pthread_condattr_setclock(CLOCK_MONOTONIC). Real time, not the replaceable source. */
struct timespec;
void gw_monotonic_deadline(struct timespec *out, uint64_t ms);

/* Sleep for ms milliseconds of real time (EINTR resumed). */
void gw_sleep_ms(uint32_t ms);

/* Deadline meaning "no deadline": wait for a signal only. */
#define GW_CLOCK_NEVER UINT64_MAX

/* Initialises cond for gw_clock_wait / gw_clock_wait_real (monotonic clock attribute).
 * Returns GW_OK or GW_ERR_NOMEM. */
int gw_clock_cond_init(pthread_cond_t *cond);

/* The one wait of every service loop: with mutex held, sleeps until cond is signalled or
 * gw_now_ms() reaches deadline_ms (GW_CLOCK_NEVER: signal only). Returns GW_OK when woken
 * (possibly spuriously: re-check the predicate) or GW_ERR_TIMEOUT once the deadline is reached.
 * A thread that calls it wakes only for a signal or its deadline, never to poll. */
int gw_clock_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ms);

/* Waits at most timeout_ms of real time, whatever the gateway clock does: for callers bounding
 * how long they block on another thread (flush, stop). Same returns as gw_clock_wait. */
int gw_clock_wait_real(pthread_cond_t *cond, pthread_mutex_t *mutex, uint32_t timeout_ms);

#endif
