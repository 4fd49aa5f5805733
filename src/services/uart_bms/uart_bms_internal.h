/* Private to uart_bms and its unit tests: the poller's decisions as a pure step over plain
 * structs (no lock, no clock, no I/O), table-tested without threads. */
#ifndef UART_BMS_INTERNAL_H
#define UART_BMS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#define UART_BMS__REOPEN_BACKOFF_MIN_MS 500u
#define UART_BMS__REOPEN_BACKOFF_MAX_MS 30000u
#define UART_BMS__HINT_AFTER 3u  /* failed transactions in a row (each resent once) before the
                                    wiring hint: 6 requests without a valid answer */

/* The wiring hint due after a run of failed transactions (uart_bms__transaction_done). */
enum uart_bms__hint {
    UART_BMS__HINT_NONE = 0,
    UART_BMS__HINT_SILENT,  /* not one byte came back: wiring, ground, the wrong port */
    UART_BMS__HINT_GARBAGE, /* bytes came back, never a valid frame: baud, broadcasts, noise */
};

/* Slow items, read at start and then every slow_poll_interval_s, one per cycle. Version first:
 * what the firmware supports decides how the others are read. */
enum uart_bms__slow_item { UART_BMS__SLOW_VERSION = 0, UART_BMS__SLOW_SETTINGS, UART_BMS__SLOW_SETTINGS_MIN,
                           UART_BMS__SLOW_SETTINGS_MAX, UART_BMS__SLOW_STATS, UART_BMS__SLOW_EVENTS,
                           UART_BMS__SLOW_DONE };

/* The poller's schedule and link state (poller thread only). */
struct uart_bms__sched {
    uint64_t started_ms;
    uint64_t next_poll_ms;        /* scheduled time of the next live read */
    uint64_t last_poll_ms;        /* start of the last live read */
    uint32_t interval_ms;         /* the poll interval now */
    uint32_t scheduled_interval;  /* the interval next_poll_ms was computed with, 0 = no read yet */
    int slow_next;                /* enum uart_bms__slow_item */
    uint64_t slow_due_ms;
    bool slow_chance;             /* a live read just succeeded: one slow item may follow */
    uint64_t reopen_at_ms;        /* closed port: next open attempt */
    uint32_t reopen_backoff_ms;   /* 0 = the port worked since the last failure */
    bool comm_lost;               /* no valid data for comm_timeout_ms */
    bool comm_announced;          /* the state subscribers were last told (LOST / RESTORED) */
    uint64_t announce_retry_ms;   /* a failed announcement is retried then */
    uint32_t failed_in_row;       /* transactions without a valid frame since the last one */
    bool bytes_in_failures;       /* some of them received bytes (garbage, bad CRC) */
    bool hinted;                  /* this run of failures got its wiring hint */
};

/* What the poller sees when it decides (copied under the instance lock). */
struct uart_bms__inputs {
    uint64_t now_ms;
    uint32_t poll_interval_ms;
    uint32_t comm_timeout_ms;
    bool port_open;
    bool command_pending;
    uint64_t last_valid_ms;       /* gw_now_ms() of the last valid sample, 0 = never */
    uint32_t last_cycle_ms;       /* duration of the last live read */
};

enum uart_bms__action {
    UART_BMS__WAIT = 0,   /* nothing due: sleep until deadline_ms or an event */
    UART_BMS__OPEN,       /* open the serial device */
    UART_BMS__COMMAND,    /* run the caller's command (fails at once without a device) */
    UART_BMS__POLL,       /* one live read */
    UART_BMS__SLOW,       /* read slow item `slow` */
    UART_BMS__COMM_LOST,  /* no valid data for comm_timeout_ms: say why (comm_lost is set) */
    UART_BMS__ANNOUNCE,   /* tell subscribers LOST / RESTORED (comm_lost != comm_announced) */
};

struct uart_bms__decision {
    enum uart_bms__action action;
    int slow;                     /* UART_BMS__SLOW: the item */
    uint64_t deadline_ms;         /* UART_BMS__WAIT: the nearest of the next poll (device open),
                                     the reopen (closed), the comm-lost timer, an announce retry */
};

void uart_bms__sched_init(struct uart_bms__sched *s, uint64_t now_ms, uint32_t interval_ms);

/* The one action due at in->now_ms, in this order: open, command, live read, slow item (only
 * right after a good live read, and only when three measured live cycles plus 10 ms fit before
 * the next one), comm-lost, announcement. Called again after each action. */
struct uart_bms__decision uart_bms__decide(struct uart_bms__sched *s, const struct uart_bms__inputs *in);

/* Results fed back by the poller. */
void uart_bms__open_failed(struct uart_bms__sched *s, uint64_t now_ms);    /* backoff doubles */
void uart_bms__port_lost(struct uart_bms__sched *s, uint64_t now_ms);      /* same: reopen later */
void uart_bms__port_works(struct uart_bms__sched *s);                      /* a transaction worked */
void uart_bms__polled(struct uart_bms__sched *s, uint64_t started_ms, uint64_t now_ms, bool ok);
/* device_gone: the slow read stopped on a lost port (the item is retried after reopening). */
void uart_bms__slow_done(struct uart_bms__sched *s, uint64_t now_ms, bool device_gone, uint32_t slow_interval_s);
void uart_bms__slow_restart(struct uart_bms__sched *s, int item);          /* read it next cycle */
/* After each transaction: frame_seen = a valid frame came back (data, ACK or NACK), bytes =
 * any byte came back. Returns the hint due now: once per run of failures, when it reaches
 * UART_BMS__HINT_AFTER transactions (SILENT when not one byte came back in the run, GARBAGE
 * otherwise). A valid frame ends the run (and re-arms the hint). */
enum uart_bms__hint uart_bms__transaction_done(struct uart_bms__sched *s, bool frame_seen, bool bytes);

/* A valid sample: returns true when it ends a loss (then announce RESTORED). */
bool uart_bms__sample_ok(struct uart_bms__sched *s);
void uart_bms__announced(struct uart_bms__sched *s, uint64_t now_ms, bool delivered);

#endif
