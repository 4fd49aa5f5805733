/* The BMS poller's decisions (poll schedule, slow-item budget, comm-lost timer, reopen backoff,
 * announcement retry) as pure functions: see uart_bms_internal.h. No OS calls. */
#include "uart_bms_internal.h"

#include <stddef.h>

#define NEVER UINT64_MAX

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

void uart_bms__sched_init(struct uart_bms__sched *s, uint64_t now_ms, uint32_t interval_ms)
{
    *s = (struct uart_bms__sched){
        .started_ms = now_ms, .next_poll_ms = now_ms, .interval_ms = interval_ms,
        .slow_next = UART_BMS__SLOW_VERSION, .reopen_at_ms = now_ms,
    };
}

struct uart_bms__decision uart_bms__decide(struct uart_bms__sched *s, const struct uart_bms__inputs *in)
{
    struct uart_bms__decision d = { .action = UART_BMS__WAIT, .deadline_ms = NEVER };
    uint64_t now = in->now_ms;
    s->interval_ms = in->poll_interval_ms;
    if (s->scheduled_interval && in->poll_interval_ms != s->scheduled_interval) {
        /* A new interval counts from the last read: 10 s -> 100 ms must not wait 10 s. */
        s->next_poll_ms = s->last_poll_ms + in->poll_interval_ms;
        s->scheduled_interval = in->poll_interval_ms;
    }
    bool slow_chance = s->slow_chance;
    s->slow_chance = false; /* one look per live read */

    if (!in->port_open && now >= s->reopen_at_ms) {
        d.action = UART_BMS__OPEN;
        return d;
    }
    if (in->command_pending) {
        d.action = UART_BMS__COMMAND;
        return d;
    }
    if (in->port_open && now >= s->next_poll_ms) {
        d.action = UART_BMS__POLL;
        return d;
    }
    /* The largest slow answer (events, 201 bytes) costs at most twice a live cycle (117 bytes):
     * budget three measured live cycles plus scheduling slack before the next live read. */
    uint64_t budget = 3ull * in->last_cycle_ms + 10;
    if (in->port_open && slow_chance && now >= s->slow_due_ms && s->next_poll_ms > now &&
        s->next_poll_ms - now > budget) {
        d.action = UART_BMS__SLOW;
        d.slow = s->slow_next;
        return d;
    }
    uint64_t since = in->last_valid_ms ? in->last_valid_ms : s->started_ms;
    if (!s->comm_lost && now - since >= in->comm_timeout_ms) {
        s->comm_lost = true;
        d.action = UART_BMS__COMM_LOST;
        return d;
    }
    if (s->comm_lost != s->comm_announced && now >= s->announce_retry_ms) {
        d.action = UART_BMS__ANNOUNCE;
        return d;
    }
    d.deadline_ms = in->port_open ? s->next_poll_ms : s->reopen_at_ms;
    if (!s->comm_lost)
        d.deadline_ms = min_u64(d.deadline_ms, since + in->comm_timeout_ms);
    if (s->comm_lost != s->comm_announced)
        d.deadline_ms = min_u64(d.deadline_ms, s->announce_retry_ms);
    return d;
}

/* Doubles the reopen backoff (0.5 s .. 30 s) and sets when to try again. It only restarts from
 * its minimum once a transaction succeeded on the port: a device that opens and then fails at
 * once is retried ever more slowly, not twice a second for ever. */
static void schedule_reopen(struct uart_bms__sched *s, uint64_t now_ms)
{
    s->reopen_backoff_ms = s->reopen_backoff_ms ? s->reopen_backoff_ms * 2 : UART_BMS__REOPEN_BACKOFF_MIN_MS;
    if (s->reopen_backoff_ms > UART_BMS__REOPEN_BACKOFF_MAX_MS)
        s->reopen_backoff_ms = UART_BMS__REOPEN_BACKOFF_MAX_MS;
    s->reopen_at_ms = now_ms + s->reopen_backoff_ms;
}

void uart_bms__open_failed(struct uart_bms__sched *s, uint64_t now_ms) { schedule_reopen(s, now_ms); }
void uart_bms__port_lost(struct uart_bms__sched *s, uint64_t now_ms) { schedule_reopen(s, now_ms); }
void uart_bms__port_works(struct uart_bms__sched *s) { s->reopen_backoff_ms = 0; }

void uart_bms__polled(struct uart_bms__sched *s, uint64_t started_ms, uint64_t now_ms, bool ok)
{
    s->last_poll_ms = started_ms;
    s->scheduled_interval = s->interval_ms;
    s->next_poll_ms += s->interval_ms;
    if (s->next_poll_ms <= now_ms)
        s->next_poll_ms = now_ms + s->interval_ms;
    s->slow_chance = ok;
}

void uart_bms__slow_done(struct uart_bms__sched *s, uint64_t now_ms, bool device_gone, uint32_t slow_interval_s)
{
    if (device_gone)
        return;
    s->slow_next++;
    if (s->slow_next >= UART_BMS__SLOW_DONE) {
        s->slow_next = UART_BMS__SLOW_VERSION;
        s->slow_due_ms = now_ms + (uint64_t)slow_interval_s * 1000u;
    }
}

void uart_bms__slow_restart(struct uart_bms__sched *s, int item)
{
    s->slow_next = item;
    s->slow_due_ms = 0;
}

enum uart_bms__hint uart_bms__transaction_done(struct uart_bms__sched *s, bool frame_seen, bool bytes)
{
    if (frame_seen) {
        s->failed_in_row = 0;
        s->bytes_in_failures = false;
        s->hinted = false;
        return UART_BMS__HINT_NONE;
    }
    if (s->failed_in_row < UINT32_MAX)
        s->failed_in_row++;
    s->bytes_in_failures = s->bytes_in_failures || bytes;
    if (s->hinted || s->failed_in_row < UART_BMS__HINT_AFTER)
        return UART_BMS__HINT_NONE;
    s->hinted = true;
    return s->bytes_in_failures ? UART_BMS__HINT_GARBAGE : UART_BMS__HINT_SILENT;
}

bool uart_bms__sample_ok(struct uart_bms__sched *s)
{
    bool was_lost = s->comm_lost;
    s->comm_lost = false;
    return was_lost;
}

void uart_bms__announced(struct uart_bms__sched *s, uint64_t now_ms, bool delivered)
{
    if (delivered) {
        s->comm_announced = s->comm_lost;
        s->announce_retry_ms = 0;
    } else {
        s->announce_retry_ms = now_ms + s->interval_ms; /* state, not a sample: retried, never dropped */
    }
}
