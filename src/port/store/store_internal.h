/* Private to src/port/store and its unit test: the writer's decision as a pure function, so the
 * "what next, and until when do I sleep" rules are table-tested without threads or clocks. */
#ifndef STORE_INTERNAL_H
#define STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store__plan_in {
    uint64_t now_ms;             /* gw_now_ms() */
    size_t len;                  /* records queued */
    size_t batch_threshold;      /* this many queued: written without waiting */
    uint64_t first_pending_ms;   /* when the oldest queued record started waiting */
    uint32_t commit_interval_ms; /* 0: write at once */
    bool flushing;               /* a flush waits for a queued record */
    bool failing;                /* the last write failed */
    uint64_t retry_at_ms;        /* when failing: not before this */
    bool retry_now;              /* a flush asked for one retry now */
    bool stopping;
    bool prune_wanted;           /* requested, or due after rows written */
    uint64_t next_prune_ms;      /* periodic prune; GW_CLOCK_NEVER when none */
};

enum store__action {
    STORE__WAIT,                 /* sleep until *deadline_ms (GW_CLOCK_NEVER: a signal) */
    STORE__WRITE,                /* write one batch */
    STORE__PRUNE,                /* run ops->prune */
    STORE__EXIT,                 /* stopping and nothing left */
};

/* A write goes first when due (a batch is full, a flush waits, stopping, or the oldest record
 * waited commit_interval_ms), but never before the back-off ends unless a flush or the stop asks;
 * then a prune (requested, due by rows, or its period; never by period while stopping); then
 * EXIT when stopping with an empty ring; else WAIT until the nearest of the write and prune
 * deadlines. *deadline_ms is set for WAIT only. */
enum store__action store__plan(const struct store__plan_in *in, uint64_t *deadline_ms);

#endif
