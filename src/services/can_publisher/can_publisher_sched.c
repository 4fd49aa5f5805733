/* The TX thread's decisions (schedule, staleness, inverter link, reopen backoff) as pure
 * functions: see can_publisher_internal.h. No OS calls. */
#include "can_publisher_internal.h"

#include <stddef.h>

enum can_publisher__offline can_publisher__offline_reason(const struct can_publisher__freshness *f, uint64_t now_ms,
                                                          uint32_t stale_timeout_ms)
{
    if (!f->sampled) {
        uint64_t up = now_ms > f->started_ms ? now_ms - f->started_ms : 0;
        if (up <= stale_timeout_ms)
            return CAN_PUBLISHER__WARMING_UP;
    }
    if (!f->have_view)
        return CAN_PUBLISHER__NO_VIEW;
    uint64_t age = now_ms > f->view_ms ? now_ms - f->view_ms : 0;
    if (age > stale_timeout_ms)
        return CAN_PUBLISHER__STALE_VIEW;
    return f->limits_valid ? CAN_PUBLISHER__ONLINE : CAN_PUBLISHER__NO_LIMITS;
}

bool can_publisher__link_expired(bool link, uint64_t last_ms, uint64_t now_ms, uint32_t timeout_ms)
{
    /* (the RX thread may have stamped a frame after the caller read now_ms) */
    return link && now_ms > last_ms && now_ms - last_ms > timeout_ms;
}

void can_publisher__sched_init(struct can_publisher__sched *s, uint64_t now_ms, uint32_t live_period_ms,
                               uint32_t identity_period_ms)
{
    *s = (struct can_publisher__sched){
        .live_period_ms = live_period_ms, .identity_period_ms = identity_period_ms,
        .next_live_ms = now_ms, .next_identity_ms = now_ms,
        .last_live_ms = now_ms, .last_identity_ms = now_ms,
        .reopen_delay_ms = CAN_PUBLISHER__REOPEN_FIRST_MS,
    };
}

/* Next due time of a periodic task after the cycle scheduled at `scheduled`. */
static uint64_t next_due(uint64_t scheduled, uint64_t period, uint64_t now)
{
    uint64_t next = scheduled + period;
    return next <= now ? now + period : next;
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

struct can_publisher__decision can_publisher__step(struct can_publisher__sched *s,
                                                   const struct can_publisher__inputs *in)
{
    struct can_publisher__decision d = { .deadline_ms = UINT64_MAX };
    uint64_t now = in->now_ms;
    if (in->live_period_ms != s->live_period_ms) {
        s->live_period_ms = in->live_period_ms;
        s->next_live_ms = s->last_live_ms + in->live_period_ms;
    }
    if (in->identity_period_ms != s->identity_period_ms) {
        s->identity_period_ms = in->identity_period_ms;
        s->next_identity_ms = s->last_identity_ms + in->identity_period_ms;
    }
    if (in->identity_gen != s->identity_gen) {
        s->identity_gen = in->identity_gen; /* known (or changed): tell the GX now */
        s->next_identity_ms = now;
    }
    if (now >= s->next_live_ms) {
        d.live = true;
        s->last_live_ms = s->next_live_ms;
        s->next_live_ms = next_due(s->next_live_ms, s->live_period_ms, now);
    }
    if (now >= s->next_identity_ms) {
        d.identity = true;
        s->last_identity_ms = s->next_identity_ms;
        s->next_identity_ms = next_due(s->next_identity_ms, s->identity_period_ms, now);
    }
    d.link_lost = can_publisher__link_expired(in->link, in->link_last_ms, now, in->inverter_timeout_ms);

    if (!in->broken || !in->can_reopen) {
        s->reopen_at_ms = 0;
        s->reopen_delay_ms = CAN_PUBLISHER__REOPEN_FIRST_MS;
    } else if (s->reopen_at_ms == 0) {
        s->reopen_at_ms = now + s->reopen_delay_ms; /* just broke: first attempt after the delay */
    } else if (now >= s->reopen_at_ms) {
        d.reopen = true;
    }

    if (d.live || d.identity || d.link_lost || d.reopen)
        return d; /* the caller acts, then asks again */
    d.deadline_ms = min_u64(s->next_live_ms, s->next_identity_ms);
    if (in->link) {
        uint64_t expiry = in->link_last_ms + in->inverter_timeout_ms + 1;
        d.deadline_ms = min_u64(d.deadline_ms, expiry);
    }
    if (s->reopen_at_ms)
        d.deadline_ms = min_u64(d.deadline_ms, s->reopen_at_ms);
    return d;
}

void can_publisher__reopened(struct can_publisher__sched *s, uint64_t now_ms, bool ok)
{
    if (ok) {
        s->reopen_at_ms = 0;
        s->reopen_delay_ms = CAN_PUBLISHER__REOPEN_FIRST_MS;
        return;
    }
    uint32_t next = s->reopen_delay_ms * 2;
    s->reopen_delay_ms = next > CAN_PUBLISHER__REOPEN_MAX_MS ? CAN_PUBLISHER__REOPEN_MAX_MS : next;
    s->reopen_at_ms = now_ms + s->reopen_delay_ms;
}
