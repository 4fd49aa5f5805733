/* Private to can_publisher and its unit tests: the decisions of the TX thread as pure
 * functions over plain structs (no lock, no clock, no I/O), table-tested without threads. */
#ifndef CAN_PUBLISHER_INTERNAL_H
#define CAN_PUBLISHER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#define CAN_PUBLISHER__REOPEN_FIRST_MS 5000u  /* retry a transport that went away after, */
#define CAN_PUBLISHER__REOPEN_MAX_MS 60000u   /* doubling up to this */

/* Why the battery is offline on the bus (what 0x35A / 0x372 say, 0x351 withheld), or that it
 * is not known yet (WARMING_UP: nothing of the status goes out either). */
enum can_publisher__offline { CAN_PUBLISHER__ONLINE = 0, CAN_PUBLISHER__NO_VIEW, CAN_PUBLISHER__STALE_VIEW,
                              CAN_PUBLISHER__NO_LIMITS, CAN_PUBLISHER__WARMING_UP };

/* What the staleness rule looks at. */
struct can_publisher__freshness {
    bool have_view;             /* a battery view arrived */
    uint64_t view_ms;           /* its time */
    bool limits_valid;          /* its limits may be sent */
    bool sampled;               /* a view has shown a pack with a sample (latched) */
    uint64_t started_ms;        /* when the publisher started */
};

/* The staleness rule at now_ms: before any BMS sample and for at most stale_timeout_ms after
 * start, WARMING_UP (the battery is neither online nor offline yet: a GX told "offline, general
 * alarm" for the second before the first sample may log a battery alarm); then no view ever, a
 * view older than stale_timeout_ms (a view stamped after now_ms is 0 ms old), or a view whose
 * limits are not valid is offline. Pure. */
enum can_publisher__offline can_publisher__offline_reason(const struct can_publisher__freshness *f, uint64_t now_ms,
                                                          uint32_t stale_timeout_ms);

/* True when a present inverter link has had no GX frame for more than timeout_ms at now_ms. */
bool can_publisher__link_expired(bool link, uint64_t last_ms, uint64_t now_ms, uint32_t timeout_ms);

/* The TX schedule (thread-private). */
struct can_publisher__sched {
    uint64_t live_period_ms, identity_period_ms; /* the periods next_* were computed with */
    uint64_t next_live_ms, next_identity_ms;
    uint64_t last_live_ms, last_identity_ms;     /* scheduled time of the last cycles */
    uint64_t reopen_at_ms;                       /* 0: no reopen scheduled */
    uint32_t reopen_delay_ms;
    uint32_t identity_gen;                       /* identity generation last sent */
};

/* What the TX thread sees when it decides (copied under the publisher's lock). */
struct can_publisher__inputs {
    uint64_t now_ms;
    uint32_t live_period_ms, identity_period_ms, inverter_timeout_ms;
    bool link;                  /* inverter link present */
    uint64_t link_last_ms;      /* last GX frame */
    bool broken;                /* the transport reported the device gone */
    bool can_reopen;            /* we opened the transport (a given one is never reopened) */
    uint32_t identity_gen;      /* bumped when the identity (BMS firmware, serial) became known
                                   or changed: the identity set is due at once */
};

struct can_publisher__decision {
    bool live;                  /* send the live set now */
    bool identity;              /* send the identity set now */
    bool link_lost;             /* the inverter link timed out: mark it lost */
    bool reopen;                /* try to reopen the transport now */
    uint64_t deadline_ms;       /* when nothing is due: sleep until then (or an event) */
};

/* Both sets due at now_ms (the first cycles go out at start). */
void can_publisher__sched_init(struct can_publisher__sched *s, uint64_t now_ms, uint32_t live_period_ms,
                               uint32_t identity_period_ms);

/* Decides what is due at in->now_ms and consumes it (the next cycle is scheduled one period
 * after the one due, or one period after now when late: no burst after falling behind; a
 * period changed by configuration counts from the last cycle; a new identity_gen makes the
 * identity set due now, the next one a period later). When nothing is due,
 * deadline_ms is the nearest of: next live cycle, next identity cycle, the link timeout (link
 * present), the reopen attempt (transport broken). */
struct can_publisher__decision can_publisher__step(struct can_publisher__sched *s,
                                                   const struct can_publisher__inputs *in);

/* After a reopen attempt at now_ms: success resets the delay; a failure doubles it
 * (CAN_PUBLISHER__REOPEN_FIRST_MS .. _MAX_MS) and schedules the next attempt. */
void can_publisher__reopened(struct can_publisher__sched *s, uint64_t now_ms, bool ok);

#endif
