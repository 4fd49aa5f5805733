/* The one way a test waits for another thread or process. Both forms re-evaluate cond in real
 * time (never the fake clock, so they also work while test time stands still; how often: see
 * WAIT_FOR) until it holds or ms milliseconds passed. The deadline is generous by design (a loaded
 * 2-core machine): it bounds a hang, it is never what the test asserts.
 *   WAIT_UNTIL(cond, ms)   in a test: fails like a CHECK, naming the condition and the time.
 *   WAIT_FOR(ok, cond, ms) in a helper that reports itself: ok = whether cond held in time.
 * Needs test.h's CHECK counters and gw_clock.h's real time (every test links gw_port). */
#ifndef GW_TEST_WAIT_H
#define GW_TEST_WAIT_H

#include "gw_clock.h"
#include "test.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Re-checks after 1, 2, 4, 8, then every 16 ms: quick when the condition comes soon, cheap
 * when it is a D-Bus call or a query and the wait is long. */
#define WAIT_FOR(ok, cond, ms)                                                                   \
    do {                                                                                         \
        uint64_t wait_deadline_ = gw_real_ms() + (uint32_t)(ms);                                 \
        uint32_t wait_step_ = 1;                                                                 \
        while (!((ok) = (cond)) && gw_real_ms() < wait_deadline_) {                              \
            gw_sleep_ms(wait_step_);                                                             \
            if (wait_step_ < 16)                                                                 \
                wait_step_ *= 2;                                                                 \
        }                                                                                        \
    } while (0)

#define WAIT_UNTIL(cond, ms)                                                                     \
    do {                                                                                         \
        bool wait_ok_;                                                                           \
        WAIT_FOR(wait_ok_, cond, ms);                                                            \
        test_checks_++;                                                                          \
        if (!wait_ok_) {                                                                         \
            test_failures_++;                                                                    \
            fprintf(stderr, "%s:%d: WAIT_UNTIL failed: %s still false after %u ms\n", __FILE__,  \
                    __LINE__, #cond, (unsigned)(ms));                                            \
        }                                                                                        \
    } while (0)

#endif
