/* Which BMS protections are active, from the status register and the event log. */
#include "charge_control.h"
#include "charge_internal.h"

#include <stddef.h>

#define EVENT_AGE_MASK 0xFFFFFFu /* event timestamps are 24-bit BMS lifetime seconds */
#define EVENT_PERIOD ((int64_t)EVENT_AGE_MASK + 1)
#define NO_EVENT INT64_MAX
/* The event log is read apart from (and up to a slow-poll period after) the live sample, so an
 * event may be this much newer than the sample's lifetime counter: a negative age. */
#define FUTURE_TOLERANCE_S 3600

struct protection_rule {
    uint8_t fault_id;
    uint8_t recovery_id[2]; /* 0 = none */
    uint32_t bit;           /* enum charge_protection */
};

/* TinyBMS event ids (spec tinybms-uart.md "Event ids"). */
static const struct protection_rule protection_rules[] = {
    { 0x03, { 0x79, 0 }, CHARGE_PROT_OVER_VOLTAGE },
    { 0x02, { 0x7B, 0 }, CHARGE_PROT_UNDER_VOLTAGE },
    { 0x04, { 0x73, 0 }, CHARGE_PROT_OVER_TEMP },
    { 0x0A, { 0x75, 0 }, CHARGE_PROT_LOW_TEMP },
    { 0x37, { 0x74, 0 }, CHARGE_PROT_LOW_TEMP_CHARGE },
    { 0x05, { 0x77, 0 }, CHARGE_PROT_DISCHARGE_OC },
    { 0x06, { 0x76, 0 }, CHARGE_PROT_CHARGE_OC },
    { 0x07, { 0x78, 0 }, CHARGE_PROT_CHARGE_OC },
    { 0x0B, { 0, 0 }, CHARGE_PROT_SWITCH_ERROR },
    { 0x0C, { 0, 0 }, CHARGE_PROT_SWITCH_ERROR },
    { 0x0D, { 0, 0 }, CHARGE_PROT_SWITCH_ERROR },
    { 0x0E, { 0x0F, 0x7C }, CHARGE_PROT_SENSOR_ERROR },
    { 0x31, { 0x7A, 0 }, CHARGE_PROT_FULLY_DISCHARGED },
};

/* Lifetime at which an event with timestamp ts24 was logged, seen from a sample at now_s:
 * the latest matching lifetime not after now_s; when there is none (the counter is younger
 * than the timestamp), the one just after now_s if within the tolerance; else NO_EVENT.
 * allow_future_first: prefer the one just after now_s when it is within the tolerance (an
 * event known to be new). */
static int64_t place_event(uint32_t now_s, uint32_t ts24, bool allow_future_first)
{
    uint32_t back = ((now_s & EVENT_AGE_MASK) - ts24) & EVENT_AGE_MASK; /* age if in the past */
    int64_t ahead = back ? EVENT_PERIOD - (int64_t)back : 0;
    if (allow_future_first && back && ahead <= FUTURE_TOLERANCE_S)
        return (int64_t)now_s + ahead;
    if (back <= now_s)
        return (int64_t)now_s - (int64_t)back;
    if (ahead <= FUTURE_TOLERANCE_S)
        return (int64_t)now_s + ahead;
    return NO_EVENT;
}

/* Bits of the rules whose newest fault event is younger than hold_s without a later recovery.
 * logged[i] is the lifetime of log->events[i] (NO_EVENT: ignored). */
static uint32_t evaluate_rules(const struct bms_event_log *log, unsigned n, const int64_t *logged,
                               uint32_t now_s, uint32_t hold_s)
{
    uint32_t active = 0;
    for (size_t r = 0; r < sizeof protection_rules / sizeof protection_rules[0]; r++) {
        const struct protection_rule *rule = &protection_rules[r];
        int64_t fault_at = NO_EVENT, rec_at = NO_EVENT;
        for (unsigned i = 0; i < n; i++) {
            if (logged[i] == NO_EVENT)
                continue;
            uint8_t id = log->events[i].id;
            if (id == rule->fault_id && (fault_at == NO_EVENT || logged[i] > fault_at))
                fault_at = logged[i];
            for (unsigned k = 0; k < 2 && rule->recovery_id[k]; k++)
                if (id == rule->recovery_id[k] && (rec_at == NO_EVENT || logged[i] > rec_at))
                    rec_at = logged[i];
        }
        if (fault_at == NO_EVENT || (int64_t)now_s - fault_at > (int64_t)hold_s)
            continue;
        /* Same second: the recovery was logged after the fault. */
        if (rec_at != NO_EVENT && rec_at >= fault_at)
            continue;
        active |= rule->bit;
    }
    return active;
}

static unsigned log_count(const struct bms_event_log *log)
{
    return log->count > BMS_EVENT_SLOTS ? BMS_EVENT_SLOTS : log->count;
}

uint32_t charge_protections_active(const struct bms_live_data *live,
                                   const struct bms_event_log *log, uint32_t hold_s)
{
    uint32_t active = 0;
    if (!live)
        return 0;
    if (live->online_status == BMS_STATUS_FAULT)
        active |= CHARGE_PROT_FAULT;
    if (!log || !log->valid)
        return active;
    unsigned n = log_count(log);
    int64_t logged[BMS_EVENT_SLOTS];
    for (unsigned i = 0; i < n; i++)
        logged[i] = place_event(live->lifetime_s, log->events[i].timestamp_s & EVENT_AGE_MASK, false);
    return active | evaluate_rules(log, n, logged, live->lifetime_s, hold_s);
}

uint32_t charge__protections_tracked(struct charge_event_track *track,
                                     const struct bms_live_data *live,
                                     const struct bms_event_log *log, uint32_t hold_s)
{
    uint32_t active = live->online_status == BMS_STATUS_FAULT ? CHARGE_PROT_FAULT : 0;
    if (!log || !log->valid)
        return active;
    unsigned n = log_count(log);
    uint32_t now_s = live->lifetime_s;
    struct charge_event_track next = { .primed = true, .count = (uint8_t)n };
    bool used[BMS_EVENT_SLOTS] = { false };
    int64_t logged[BMS_EVENT_SLOTS];
    for (unsigned i = 0; i < n; i++) {
        struct charge_event_seen *e = &next.ev[i];
        e->ts24 = log->events[i].timestamp_s & EVENT_AGE_MASK;
        e->id = log->events[i].id;
        /* Seen before (the same slot first: the log mostly stays in place)? */
        int match = -1;
        if (i < track->count && !used[i] && track->ev[i].ts24 == e->ts24 && track->ev[i].id == e->id)
            match = (int)i;
        for (unsigned j = 0; match < 0 && j < track->count; j++)
            if (!used[j] && track->ev[j].ts24 == e->ts24 && track->ev[j].id == e->id)
                match = (int)j;
        if (match >= 0) {
            used[match] = true;
            e->known = track->ev[match].known;
            e->lifetime_s = track->ev[match].lifetime_s;
        } else {
            /* New since the last log: logged recently, maybe after the sample. */
            int64_t at = place_event(now_s, e->ts24, track->primed);
            e->known = at != NO_EVENT;
            e->lifetime_s = at;
        }
        /* A lifetime counter that went back (another BMS) cannot date anything. */
        logged[i] = (e->known && e->lifetime_s <= (int64_t)now_s + FUTURE_TOLERANCE_S)
                        ? e->lifetime_s : NO_EVENT;
    }
    *track = next;
    return active | evaluate_rules(log, n, logged, now_s, hold_s);
}

float charge_curve_eval(const struct gw_curve *c, float x)
{
    if (!c || c->count == 0)
        return 1.0f;
    unsigned n = c->count > GW_CURVE_POINTS ? GW_CURVE_POINTS : c->count;
    if (x != x) /* NaN input: the safe answer is "no current" */
        return 0.0f;
    if (x <= c->x[0])
        return c->y[0];
    for (unsigned i = 1; i < n; i++) {
        if (x <= c->x[i]) {
            float span = c->x[i] - c->x[i - 1];
            if (span <= 0.0f)
                return c->y[i];
            return c->y[i - 1] + (c->y[i] - c->y[i - 1]) * (x - c->x[i - 1]) / span;
        }
    }
    return c->y[n - 1];
}
