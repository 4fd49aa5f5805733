/* uart_bms: polls one TinyBMS over a serial port and publishes what it reads.
 *
 * One instance per serial port (several batteries = several instances, each with its own
 * battery_id). A poller thread refreshes all live data with one MODBUS block read of registers
 * 0..55 every poll_interval_ms, and reads version, settings (with the BMS's own min/max),
 * statistics and events at start and then every slow_poll_interval_s, one item per cycle and
 * only when it cannot delay the next live read. A sleeping BMS gets one resend before a timeout
 * counts. A serial device that disappears is reopened with backoff, without a restart.
 *
 * A line that stays silent (or returns only garbage) for 3 transactions in a row gets one
 * wiring hint in the log (TX/RX crossed, ground, baud, the BMS's broadcast settings) with the
 * first garbage frames received, once per run of failures.
 *
 * Published on the event bus: EVENT_BMS_DATA_UPDATE (struct bms_live_data) per valid sample,
 * EVENT_BMS_COMM_LOST / _RESTORED, EVENT_BMS_SETTINGS/STATS/EVENTS/VERSION_UPDATE.
 * Every public function is thread-safe. */
#ifndef UART_BMS_H
#define UART_BMS_H

#include "bms_data.h"
#include "serial.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_bus;
struct uart_bms;
struct watchdog_client;

#define UART_BMS_MAX_LISTENERS 8
#define UART_BMS_TAP_FRAMES 128
#define UART_BMS_TAP_BYTES 256

struct uart_bms_options {
    uint8_t battery_id;
    char device[256];               /* "/dev/ttyUSB0", a pty, or a symlink to one */
    uint32_t poll_interval_ms;      /* 100..10000 (clamped), default 1000 */
    uint32_t comm_timeout_ms;       /* BMS_COMM_LOST after this without valid data, default 30000 */
    uint32_t slow_poll_interval_s;  /* re-read settings/stats/events/version, default 60 */
    uint32_t reply_timeout_ms;      /* per transaction attempt, default 250 */
    uint8_t cell_order;             /* enum bms_cell_order */
    bool log_frames;                /* log every request and answer at debug level, in hex with
                                       its meaning (the daemon's -vv); the poll cycle itself is
                                       logged at debug level whenever that level is on (-v) */
    struct event_bus *bus;          /* may be NULL (no events) */
    const struct serial_ops *serial;/* NULL = serial_termios_ops */
    struct watchdog_client *watchdog; /* may be NULL; borrowed: the poller checks in with the
                                       time it expects to run again (a hung poller stops the
                                       systemd keep-alives) */
};

/* Fills the documented defaults (device left empty). */
void uart_bms_default_options(struct uart_bms_options *opts);

/* Creates the instance (does not open the device yet). opts is copied.
 * @retval GW_OK, GW_ERR_INVAL (empty device), GW_ERR_NOMEM */
int uart_bms_create(const struct uart_bms_options *opts, struct uart_bms **out);

/* Starts the poller thread. @retval GW_OK, GW_ERR_STATE (already running), GW_ERR_IO */
int uart_bms_start(struct uart_bms *ub);

/* Stops and joins the poller (waits for the transaction in progress). Idempotent, but not to be
 * called from two threads at once. A caller blocked in a command (write_setting, restart, clear)
 * gets GW_ERR_STATE. */
void uart_bms_stop(struct uart_bms *ub);

/* Stops if needed and frees. NULL accepted. No other call may be in progress or follow. */
void uart_bms_destroy(struct uart_bms *ub);

/* Copy of the latest valid sample. @retval GW_OK, GW_ERR_NOT_FOUND (none yet) */
int uart_bms_get_latest(struct uart_bms *ub, struct bms_live_data *out);
int uart_bms_get_settings(struct uart_bms *ub, struct bms_settings *current, struct bms_settings *min,
                          struct bms_settings *max);
int uart_bms_get_version(struct uart_bms *ub, struct bms_version *out);

/* Called on the poller thread after each valid sample, until uart_bms_destroy; must be quick
 * and must not call back into uart_bms. It stays beside the bus events for `tinybms-gw --probe`,
 * which runs one poller without an event bus (the daemon's services use EVENT_BMS_DATA_UPDATE).
 * @retval GW_OK, GW_ERR_FULL (UART_BMS_MAX_LISTENERS reached), GW_ERR_INVAL */
typedef void (*uart_bms_listener_fn)(const struct bms_live_data *sample, void *ctx);
int uart_bms_add_listener(struct uart_bms *ub, uart_bms_listener_fn fn, void *ctx);

/* Applies at the next cycle. @retval GW_OK, GW_ERR_RANGE (outside 100..10000) */
int uart_bms_set_poll_interval_ms(struct uart_bms *ub, uint32_t interval_ms);
int uart_bms_set_cell_order(struct uart_bms *ub, uint8_t cell_order);
void uart_bms_set_comm_timeout_ms(struct uart_bms *ub, uint32_t timeout_ms);

/* Writes one setting register (300..399) and reads it back to confirm. The value is checked
 * against the documented range and, once read, the BMS's own min/max (command 0x1D).
 * Runs on the poller thread between live reads; blocks the caller up to timeout_ms.
 * @retval GW_OK, GW_ERR_RANGE (register or value out of range), GW_ERR_NACK (BMS refused),
 *         GW_ERR_PROTO (read-back differs), GW_ERR_TIMEOUT, GW_ERR_CLOSED (no device) */
int uart_bms_write_setting(struct uart_bms *ub, uint16_t reg, uint16_t value, uint32_t timeout_ms);

/* Restarts the BMS (command 0x02 option 0x05). Refused with GW_ERR_BUSY within 60 s of the
 * previous restart, so a double click or a retry loop cannot reset it repeatedly. */
int uart_bms_restart_bms(struct uart_bms *ub, uint32_t timeout_ms);
int uart_bms_clear_events(struct uart_bms *ub, uint32_t timeout_ms);
int uart_bms_clear_statistics(struct uart_bms *ub, uint32_t timeout_ms);

struct uart_bms_stats {
    bool device_open;
    bool comm_ok;                   /* a valid sample within comm_timeout_ms */
    uint64_t polls;                 /* live read attempts */
    uint64_t samples;               /* valid live samples */
    uint64_t transactions;
    uint64_t timeouts;              /* after the resend */
    uint64_t resends;               /* first attempt unanswered (wake-up) */
    uint64_t crc_errors;
    uint64_t nacks;
    uint64_t garbage_bytes;
    uint64_t reopens;               /* device reopened after it vanished or failed */
    uint64_t last_cycle_us;         /* duration of the last live transaction */
    uint64_t last_valid_ms;         /* gw_now_ms() of the last valid sample, 0 = never */
    int last_error;                 /* gw_err of the last failed transaction */
    char last_error_text[96];
    uint32_t failed_in_row;         /* transactions without a valid answer since the last one */
    char line_hint[200];            /* the wiring hint of the current run of failures (logged once
                                       after 3 failed transactions: nothing came back, or only
                                       garbage); empty when the BMS answers */
    bool settings_limits_unsupported; /* the BMS refused 0x1D min/max: only the documented ranges */
};
void uart_bms_get_stats(struct uart_bms *ub, struct uart_bms_stats *out);

/* The frame tap: every request and answer with time, direction and meaning. */
struct uart_bms_tap_entry {
    int64_t wall_ms;
    bool tx;                        /* true = gateway to BMS */
    uint16_t len;                   /* bytes on the wire (data may hold fewer) */
    uint8_t data[UART_BMS_TAP_BYTES];
    char meaning[96];
};

/* Copies up to max of the newest entries, oldest first, with sequence number > after_seq;
 * returns how many were copied and stores the newest sequence number in *last_seq. */
size_t uart_bms_tap_read(struct uart_bms *ub, uint64_t after_seq, struct uart_bms_tap_entry *out,
                         size_t max, uint64_t *last_seq);

#endif
