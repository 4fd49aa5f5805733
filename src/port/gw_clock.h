/* The one clock of the gateway. Every timeout, period and rate limit reads gw_now_ms()
 * (monotonic); wall-clock time is only for timestamps shown to people and stored in history.
 * Tests replace both sources to live through days of battery life in seconds. Thread-safe. */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

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

#endif
