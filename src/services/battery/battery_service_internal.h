/* Private to the battery service and its unit tests: the thread's timers as a pure step. */
#ifndef BATTERY_SERVICE_INTERNAL_H
#define BATTERY_SERVICE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

/* When the thread next steps the engine and saves energy.json (gw_now_ms() values). */
struct battery_service__timers {
    uint64_t next_step_ms;   /* the engine's own next deadline (a pack turning stale, 1 s) */
    uint64_t next_save_ms;
    uint64_t save_period_ms;
};

/* What the thread does now, then the deadline of its wait (inputs wake it earlier). */
struct battery_service__decision {
    bool step;               /* step the engine and publish the view */
    bool save;               /* write energy.json */
    uint64_t deadline_ms;    /* wait until then when neither is due */
};

/* Starts the timers at now_ms: a step at once, the first save one period later. */
void battery_service__timers_init(struct battery_service__timers *t, uint64_t now_ms, uint64_t save_period_ms);

/* Pure: due work at now_ms given whether an input is pending. A step is due on input or at
 * next_step_ms; a save at next_save_ms (and never twice in one period). */
struct battery_service__decision battery_service__decide(const struct battery_service__timers *t, uint64_t now_ms,
                                                         bool input_pending);

/* Record what was done: the engine's returned deadline after a step; a save at now_ms. */
void battery_service__stepped(struct battery_service__timers *t, uint64_t engine_deadline_ms);
void battery_service__saved(struct battery_service__timers *t, uint64_t now_ms);

/* A new save period (configuration changed live): the next save is one new period after the
 * last one (at once when that is already past). */
void battery_service__save_period(struct battery_service__timers *t, uint64_t now_ms, uint64_t save_period_ms);

#endif
