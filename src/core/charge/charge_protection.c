/* Which BMS protections are active, from the status register and the event log. */
#include "charge_control.h"

#include <stddef.h>

#define EVENT_AGE_MASK 0xFFFFFFu /* event timestamps are 24-bit BMS lifetime seconds */
#define NO_EVENT INT64_MAX
/* The event log is read apart from (and up to a slow-poll period after) the live sample, so an
 * event may be this much newer than the sample's lifetime counter: a negative age, not one of
 * 2^24 s. */
#define FUTURE_TOLERANCE_S 3600u

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

/* Age in seconds of the newest event with this id (negative: logged after the sample was
 * taken), NO_EVENT when absent. */
static int64_t newest_age_s(const struct bms_event_log *log, uint32_t now_s, uint8_t id)
{
    int64_t best = NO_EVENT;
    unsigned n = log->count > BMS_EVENT_SLOTS ? BMS_EVENT_SLOTS : log->count;
    for (unsigned i = 0; i < n; i++) {
        if (log->events[i].id != id)
            continue;
        int64_t age = (int64_t)((now_s - log->events[i].timestamp_s) & EVENT_AGE_MASK);
        if (age > (int64_t)(EVENT_AGE_MASK - FUTURE_TOLERANCE_S))
            age -= (int64_t)EVENT_AGE_MASK + 1;
        if (age < best)
            best = age;
    }
    return best;
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
    uint32_t now_s = live->lifetime_s & EVENT_AGE_MASK;
    for (size_t r = 0; r < sizeof protection_rules / sizeof protection_rules[0]; r++) {
        const struct protection_rule *rule = &protection_rules[r];
        int64_t fault_age = newest_age_s(log, now_s, rule->fault_id);
        if (fault_age == NO_EVENT || fault_age > (int64_t)hold_s)
            continue;
        bool recovered = false;
        for (unsigned k = 0; k < 2 && rule->recovery_id[k]; k++) {
            int64_t rec_age = newest_age_s(log, now_s, rule->recovery_id[k]);
            /* Same second: the recovery was logged after the fault. */
            if (rec_age != NO_EVENT && rec_age <= fault_age)
                recovered = true;
        }
        if (!recovered)
            active |= rule->bit;
    }
    return active;
}
