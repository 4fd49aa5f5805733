/* The one way a test waits for another thread or process: WAIT_UNTIL(cond, ms) re-evaluates
 * cond every millisecond of real time (never the fake clock, so it also works while test time
 * stands still) until it holds or ms milliseconds passed; then, if it still does not hold, the
 * test fails like a CHECK, naming the condition and the time waited. The deadline is generous
 * by design (a loaded 2-core machine): it bounds a hang, it is never what the test asserts.
 * Needs test.h's CHECK counters and gw_clock.h's real time (every test links gw_port). */
#ifndef GW_TEST_WAIT_H
#define GW_TEST_WAIT_H

#include "gw_clock.h"
#include "test.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* True while the caller should keep waiting (cond false, time left): sleeps 1 ms first. */
static inline bool test_wait_more_(bool done, uint64_t deadline_ms, uint32_t ms, const char *what,
                                   const char *file, int line)
{
    if (done)
        return false;
    if (gw_real_ms() < deadline_ms) {
        gw_sleep_ms(1);
        return true;
    }
    test_failures_++;
    fprintf(stderr, "%s:%d: WAIT_UNTIL failed: %s still false after %u ms\n", file, line, what, (unsigned)ms);
    return false;
}

#define WAIT_UNTIL(cond, ms)                                                                     \
    do {                                                                                         \
        uint32_t wait_ms_ = (uint32_t)(ms);                                                      \
        uint64_t wait_deadline_ = gw_real_ms() + wait_ms_;                                       \
        test_checks_++;                                                                          \
        while (test_wait_more_((cond), wait_deadline_, wait_ms_, #cond, __FILE__, __LINE__)) {   \
        }                                                                                        \
    } while (0)

#endif
