/* CAN transports behind one ops struct (like Zephyr's can_driver_api): SocketCAN, slcan
 * (LAWICEL ASCII over a serial device) and a write-only candump log. The CAN publisher only
 * sees struct can_transport; unit tests plug in their own ops.
 *
 * Thread-safety: one thread may call send() while another calls recv() on the same transport
 * (the publisher sends from its TX schedule and tracks the GX frames on RX); stats() may be
 * called from any thread. open/close are not concurrent with anything else.
 *
 * Specs understood by can_transport_open():
 *   "can0", "socketcan:can0"         SocketCAN raw socket on interface can0; a bare name is taken
 *                                    as an interface only when one of that name exists or it
 *                                    starts with can/vcan/vxcan/slcan (anything else is refused
 *                                    as not understood: "socketcan:NAME" for other names)
 *   "slcan:/dev/ttyACM0[@115200]"    slcan adapter; "@N" is the SERIAL baud rate (default
 *                                    115200); the CAN bitrate is the bitrate argument
 *   "log:FILE[@ifname]"              append frames to FILE in `candump -l` format, shown as
 *                                    interface ifname (default "can0"); write-only */
#ifndef CAN_TRANSPORT_H
#define CAN_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "can_frame.h"

#define CAN_STD_ID_MAX 0x7FFu
#define CAN_EXT_ID_MAX 0x1FFFFFFFu
#define CAN_SPEC_MAX 256     /* longest spec string accepted */
#define CAN_SLCAN_DEFAULT_BAUD 115200u
#define CAN_LOG_DEFAULT_IFNAME "can0"

/* Counters of one transport since it was opened. */
struct can_transport_stats {
    uint64_t tx_ok;          /* frames handed to the bus / adapter / file */
    uint64_t tx_failed;      /* send() calls that failed (timeout, I/O, bus-off) */
    uint64_t rx;             /* frames received and returned by recv() */
    uint64_t bus_errors;     /* error frames (SocketCAN) or error replies '\a' (slcan) */
    uint64_t bus_off_count;  /* transitions to bus-off (SocketCAN) */
    uint64_t tx_queue_full;  /* ENOBUFS / EAGAIN seen while sending (retried until timeout) */
    uint64_t rx_ignored;     /* input lines not understood (slcan), counted and skipped */
    uint64_t rx_overlong;    /* slcan lines longer than the bound, dropped (resync at \r) */
    uint64_t tx_acks;        /* slcan transmit acknowledgements (z\r / Z\r) */
    bool bus_off;            /* currently bus-off (SocketCAN) */
};

struct can_transport;

/* One implementation per file. Every function gets the transport it was opened into. */
struct can_transport_ops {
    const char *name;        /* "socketcan", "slcan", "log" */
    /* Opens the device named by arg (the spec without its "kind:" prefix) at the CAN bitrate
     * (bit/s) and stores its state in t->impl.
     * @retval GW_OK, GW_ERR_INVAL (malformed arg, unsupported bitrate), GW_ERR_NOT_FOUND,
     *         GW_ERR_IO, GW_ERR_UNSUPPORTED (no such transport on this system) */
    int (*open)(struct can_transport *t, const char *arg, uint32_t bitrate);
    /* Queues one frame, retrying a full TX queue until timeout_ms (0 = one attempt); never
     * blocks longer. A bad frame reaches nothing and counts in tx_failed like every failure.
     * @retval GW_OK, GW_ERR_INVAL (bad frame), GW_ERR_TIMEOUT (queue full: bus, adapter, a
     *         stalled log reader), GW_ERR_IO, GW_ERR_CLOSED (adapter, interface or log reader
     *         gone), GW_ERR_STATE (bus-off), GW_ERR_STORAGE (log: disk full) */
    int (*send)(struct can_transport *t, const struct can_frame_gw *frame, uint32_t timeout_ms);
    /* Waits up to timeout_ms for one received frame.
     * @retval GW_OK, GW_ERR_TIMEOUT (none arrived), GW_ERR_IO, GW_ERR_CLOSED,
     *         GW_ERR_UNSUPPORTED (write-only transport: returns at once) */
    int (*recv)(struct can_transport *t, struct can_frame_gw *frame, uint32_t timeout_ms);
    /* Releases t->impl (not t itself) and sets it to NULL: a second call does nothing. */
    void (*close)(struct can_transport *t);
    /* Copies the counters. */
    void (*stats)(struct can_transport *t, struct can_transport_stats *out);
    /* Optional (NULL = none): a descriptor that polls readable (or in error) when recv may
     * have a frame, once a recv with timeout 0 returned GW_ERR_TIMEOUT (nothing left buffered).
     * Lets a reader sleep in poll() beside its own wake-up descriptor instead of in slices. */
    int (*poll_fd)(struct can_transport *t);
};

/* A transport: ops + the implementation's private state. Callers may build one themselves
 * (tests: a fake transport) and use the wrappers below on it. */
struct can_transport {
    const struct can_transport_ops *ops;
    void *impl;
    char spec[CAN_SPEC_MAX];  /* the spec it was opened with, for logs and status */
};

extern const struct can_transport_ops can_socketcan_ops;
extern const struct can_transport_ops can_slcan_ops;
extern const struct can_transport_ops can_log_ops;

/* Parses spec (see the top of this file), allocates the transport and opens it at bitrate
 * (bit/s; slcan accepts 10k, 20k, 50k, 100k, 125k, 250k, 500k, 800k, 1M; SocketCAN takes the
 * interface as configured by `ip link`, the bitrate is only checked to be non-zero; the log
 * ignores it). On success *out owns the transport (free with can_transport_close); on failure
 * *out = NULL and the reason is logged once.
 * @retval GW_OK
 * @retval GW_ERR_INVAL malformed spec (unknown kind, empty device, bad @baud, a bare word that
 *         names no interface), bitrate, an interface that is not CAN, or a log file that cannot
 *         be created (missing directory, no permission, read-only): waiting will not help
 * @retval GW_ERR_NOT_FOUND no such device / CAN interface yet, or a log FIFO nobody reads yet
 *         (worth retrying: an adapter plugged in later)
 * @retval GW_ERR_UNSUPPORTED the kernel has no CAN sockets (SocketCAN)
 * @retval GW_ERR_IO the OS refused (permissions, termios, bind)
 * @retval GW_ERR_NOMEM */
int can_transport_open(const char *spec, uint32_t bitrate, struct can_transport **out);

/* Closes and frees a transport made by can_transport_open. NULL accepted. */
void can_transport_close(struct can_transport *t);

/* Thin wrappers over t->ops (same return codes as the ops above). */
int can_transport_send(struct can_transport *t, const struct can_frame_gw *frame, uint32_t timeout_ms);
int can_transport_recv(struct can_transport *t, struct can_frame_gw *frame, uint32_t timeout_ms);
void can_transport_get_stats(struct can_transport *t, struct can_transport_stats *out);

/* The transport's poll_fd (see the ops), or -1 when it has none (then recv with a timeout is
 * the only way to wait) or t is NULL. */
int can_transport_poll_fd(struct can_transport *t);

/* Checks a frame before it is sent: id within 11/29 bits, dlc <= 8, not an error frame.
 * @retval GW_OK, GW_ERR_INVAL */
int can_frame_validate(const struct can_frame_gw *frame);

/* ---- slcan (LAWICEL) codec: pure functions, exposed for tests and tools ---------------- */

#define CAN_SLCAN_LINE_MAX 40 /* longest valid line: T + 8 id + 1 dlc + 16 data + 4 timestamp */

/* Bitrate (bit/s) to the slcan S command digit 0..8. @retval GW_OK, GW_ERR_INVAL (no code). */
int can_slcan_bitrate_code(uint32_t bitrate, char *code);

/* Encodes frame as "tIIILDD..\r" / "TIIIIIIIILDD..\r" / "rIIIL\r" / "RIIIIIIIIL\r" (upper-case
 * hex) into buf. Returns the length written (without NUL; buf is NUL-terminated), or
 * GW_ERR_INVAL (bad frame) / GW_ERR_OVERFLOW (cap too small; needs CAN_SLCAN_LINE_MAX). */
int can_slcan_encode(const struct can_frame_gw *frame, char *buf, size_t cap);

enum can_slcan_event {
    CAN_SLCAN_NONE = 0,      /* byte consumed, nothing complete yet */
    CAN_SLCAN_FRAME,         /* a t/T/r/R line: *frame filled */
    CAN_SLCAN_OK,            /* empty line: "\r" reply to a command */
    CAN_SLCAN_ERROR,         /* '\a' (0x07) error reply */
    CAN_SLCAN_TX_ACK,        /* "z\r" / "Z\r" transmit acknowledgement */
    CAN_SLCAN_IGNORED,       /* a complete line that is malformed or not understood */
    CAN_SLCAN_OVERLONG,      /* a line exceeded CAN_SLCAN_LINE_MAX: dropped up to its \r */
};

/* Incremental line parser state; zero-initialise. */
struct can_slcan_parser {
    char line[CAN_SLCAN_LINE_MAX + 1];
    size_t len;
    bool overlong;
};

/* Feeds one received byte. Returns an enum can_slcan_event; *frame is written only for
 * CAN_SLCAN_FRAME. '\n' bytes are skipped (adapters that end lines with \r\n). */
int can_slcan_parser_feed(struct can_slcan_parser *p, uint8_t byte, struct can_frame_gw *frame);

/* Parses one complete line without its '\r' (len bytes). Accepts an optional 4-hex-digit
 * timestamp after the data (adapters in Z1 mode).
 * @retval GW_OK frame filled; GW_ERR_PROTO malformed or not a frame line */
int can_slcan_parse_frame(const char *line, size_t len, struct can_frame_gw *frame);

/* ---- candump log ----------------------------------------------------------------------- */

/* Formats one `candump -l` line: "(1700000000.123456) can0 351#4502...\n" (upper-case hex,
 * 3-digit standard / 8-digit extended id, "R" + optional dlc digit for remote frames).
 * wall_us = Unix time in microseconds. Returns the length written (NUL-terminated), or
 * GW_ERR_INVAL / GW_ERR_OVERFLOW. */
int can_log_format(const struct can_frame_gw *frame, int64_t wall_us, const char *ifname, char *buf,
                   size_t cap);

#endif
