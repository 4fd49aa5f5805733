/* fake_clock: the gateway clock of tests, linked instead of the OS clock (register the test
 * with gw_add_test(... FAKE_CLOCK)). It defines gw_now_ms, gw_wall_ms and gw_clock_wait of
 * gw_clock.h; the real-time part of that header (gw_real_ms, gw_clock_wait_real, gw_sleep_ms)
 * stays real.
 *
 * Until a test sets them, both clocks follow the OS (a test that never touches them runs in
 * real time). fake_clock_set_ms / _advance_ms freeze the monotonic clock at a value the test
 * moves; every move wakes every thread inside gw_clock_wait, which re-checks its deadline
 * against the new time, so a service sleeping until "now + 10 s" wakes exactly when the test
 * moves time past it, and not before. The wall clock is separate (fake_clock_set_wall_ms).
 *
 * Not to be called while holding a mutex that a thread passes to gw_clock_wait (a move locks
 * each waiter's mutex to wake it without a lost wake-up). Every function is thread-safe. */
#ifndef FAKE_CLOCK_H
#define FAKE_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

/* Freezes gw_now_ms() at now_ms (it may go back: tests only) and wakes every waiter. */
void fake_clock_set_ms(uint64_t now_ms);

/* Moves gw_now_ms() forward by ms (from the OS reading when not frozen yet) and wakes every
 * waiter. */
void fake_clock_advance_ms(uint64_t ms);

/* Every gw_now_ms() read returns the current time and then moves it forward by step_ms (0 =
 * off): "time passes on its own" for code that loops on the clock. Freezes the clock at its
 * current value first. A read does not wake waiters. */
void fake_clock_set_step_ms(uint64_t step_ms);

/* Freezes gw_wall_ms() at wall_ms. */
void fake_clock_set_wall_ms(int64_t wall_ms);

/* Both clocks follow the OS again (and step is off); wakes every waiter. */
void fake_clock_use_real(void);

/* Threads inside gw_clock_wait with a deadline (not GW_CLOCK_NEVER) right now. */
unsigned fake_clock_waiters(void);

/* The earliest deadline of those, GW_CLOCK_NEVER when there is none. */
uint64_t fake_clock_next_deadline(void);

/* Waits (real time, at most timeout_ms) until at least n threads are inside gw_clock_wait with a
 * deadline, every one of them having entered it after the latest move of the clock (so each
 * has seen the current time and chosen its next deadline). Returns false on timeout. The way
 * to let services react to a move before the next one. */
bool fake_clock_settle(unsigned n, uint32_t timeout_ms);

/* Returns from gw_clock_wait so far, of every thread (timeouts, signals and spurious wakes):
 * a test can check that a loop did not wake more often than its deadlines and events. */
uint64_t fake_clock_wait_returns(void);

#endif
