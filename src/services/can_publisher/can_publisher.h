/* can_publisher: drives a Victron GX device over CAN as a "CAN-bus BMS" battery
 * (spec: shared/spec/victron-can-bms.md, user doc: docs/can.md). A pure consumer of the
 * battery view: it computes no limit, no alarm, no energy.
 *
 * - Subscribes to EVENT_BATTERY_UPDATE (struct battery_view: the bank of every pack, its limits,
 *   alarms, module counts, cell extremes, energy counters) and EVENT_BMS_VERSION_UPDATE (firmware
 *   and serial for the identity frames); keeps the newest copy under a mutex.
 * - A TX thread sends the live frames every can.live_period_ms (0x351 0x355 0x356 0x35A 0x372
 *   0x373 0x374..0x377 0x378 0x379) and the identity frames every can.identity_period_ms
 *   (0x35E 0x35F 0x370 0x371 0x380 0x381 0x382), all from the newest view, then one aggregated
 *   EVENT_CAN_TX_SUCCESS or EVENT_CAN_TX_FAILED per cycle.
 * - SAFETY: with no view newer than can.stale_timeout_ms (or none ever), or a view whose
 *   limits.valid is false (no pack online), the battery is "offline": 0x351 and the measurement
 *   frames (0x355 0x356 0x373..0x377) are NOT sent (the GX stops charging/discharging 3 s
 *   later, and never sees old values); 0x35A goes on with the offline code and the general
 *   alarm, 0x372 with every module offline, 0x378/0x379 with the last counters (not before a
 *   first view), the identity frames as usual. Sending resumes with a fresh valid view. Each
 *   transition is logged once. Before the first BMS sample (a view with a pack out of "never
 *   seen"), for at most can.stale_timeout_ms after start, 0x35A and 0x372 are withheld too: a
 *   start never tells the GX "offline, general alarm".
 * - Identity: 0x35F (firmware, online capacity) waits for the BMS version and the first sample,
 *   0x380/0x381 (serial) for the version unless can.serial is set; the identity set goes out at
 *   once when these become known, a version changes or a can.* name changes, then every
 *   can.identity_period_ms.
 * - An RX thread tracks the GX frames 0x305/0x306/0x307: EVENT_CAN_INVERTER_LINK on change
 *   (lost after can.inverter_timeout_ms without them). Never used to gate what we send.
 * - A ring of the last CAN_TAP_ENTRIES frames (TX and RX) with a decoded one-line meaning, for
 *   the UI's CAN monitor.
 *
 * Every function is thread-safe unless said otherwise. */
#ifndef CAN_PUBLISHER_H
#define CAN_PUBLISHER_H

#include "app_events.h"
#include "battery_view.h"
#include "can_transport.h"
#include "gw_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_bus;
struct can_publisher;
struct watchdog_client;

#define CAN_TAP_ENTRIES 256
#define CAN_TAP_TEXT 96
#define CAN_PUBLISHER_MAX_IDS 24 /* per-id counters kept (our 19 ids + room) */

struct can_publisher_options {
    const struct gw_config *config;   /* required; the can section is copied */
    struct event_bus *bus;            /* required, borrowed: must outlive the publisher */
    const char *transport_spec;       /* overrides config->can.interface when non-empty (copied) */
    struct can_transport *transport;  /* optional already-open transport (tests, tools): used
                                         instead of opening one; borrowed, the caller closes it
                                         after can_publisher_destroy */
    struct watchdog_client *watchdog; /* optional, borrowed: the TX scheduler checks in with the
                                         time of its next cycle (a hung scheduler stops the
                                         systemd keep-alives) */
};

/* Allocates the publisher, validates the configuration and subscribes to the bus. Opens
 * nothing yet. On failure *out = NULL.
 * @retval GW_OK
 * @retval GW_ERR_INVAL NULL options/config/bus/out, or no transport spec at all
 * @retval GW_ERR_RANGE a period or timeout is 0 (see can_publisher_apply_config)
 * @retval GW_ERR_NOMEM
 * @retval GW_ERR_FULL the bus has no room for our subscriptions */
int can_publisher_create(const struct can_publisher_options *opts, struct can_publisher **out);

/* Opens the transport (unless one was given) and starts the TX and RX threads. A device that
 * is absent or failing (GW_ERR_NOT_FOUND, GW_ERR_IO: a USB adapter not plugged yet) is retried
 * in the background like one that goes away later, and start succeeds.
 * @retval GW_OK
 * @retval GW_ERR_STATE already started
 * @retval GW_ERR_INVAL, GW_ERR_UNSUPPORTED (bad spec, kernel without CAN): the reason was logged
 * @retval GW_ERR_IO thread creation failed */
int can_publisher_start(struct can_publisher *pub);

/* Stops and joins the threads, closes a transport it opened. Idempotent; safe on a publisher
 * never started. */
void can_publisher_stop(struct can_publisher *pub);

/* Stops (if needed), unsubscribes and frees. NULL accepted. Must not be called from an event
 * bus handler. */
void can_publisher_destroy(struct can_publisher *pub);

/* Applies a new can section live: periods, timeouts, identity strings. The transport spec and
 * bitrate only apply after a restart (logged). cfg must have passed gw_config_validate (the
 * configuration's field table holds the ranges; config_manager validates every config it hands
 * out): only a zero period or timeout, which would spin the TX thread, is refused here. Other
 * sections are ignored.
 * @retval GW_OK
 * @retval GW_ERR_INVAL NULL argument
 * @retval GW_ERR_RANGE a period or timeout is 0 (nothing applied) */
int can_publisher_apply_config(struct can_publisher *pub, const struct gw_config *cfg);

/* Frames sent/failed for one CAN id. */
struct can_publisher_id_counter {
    uint16_t id;
    uint64_t sent;
    uint64_t failed;
    int last_error;                   /* gw_err of the last failure, GW_OK when none */
};

#define CAN_PUBLISHER_AGE_BUCKETS 20

struct can_publisher_status {
    bool running;
    char transport[CAN_SPEC_MAX];     /* spec in use */
    bool transport_open;
    /* The battery view */
    bool have_view;                   /* an EVENT_BATTERY_UPDATE arrived at least once */
    uint64_t view_seq;                /* seq of the newest view (0 when none) */
    uint64_t view_age_ms;             /* age of the newest view (0 when none) */
    uint64_t views_received;
    bool stale;                       /* true: offline, 0x351 and the measurements withheld (no
                                         fresh view, or its limits not valid) */
    bool awaiting_first_sample;       /* before the first BMS sample (at most stale_timeout_ms
                                         after start): 0x35A and 0x372 withheld too */
    uint32_t stale_transitions;       /* online -> offline transitions since start */
    /* Inverter (GX) link */
    bool inverter_link;
    uint32_t inverter_last_id;        /* 0x305 / 0x306 / 0x307, 0 = never */
    uint64_t inverter_last_ms;        /* gw_now_ms() of the last GX frame, 0 = never */
    bool inverter_identified;         /* a 0x307 "12 34 56 78 'V' 'I' 'C'" was received */
    uint64_t rx_frames;               /* every frame received (GX or other) */
    /* What 0x351 carries: the newest view's bank limits (sent only while !stale) */
    struct battery_limits limits;
    /* What 0x372 / 0x378 carry */
    uint8_t pack_count, online_count;
    double energy_in_wh;
    double energy_out_wh;
    /* Transmission */
    uint64_t live_cycles;
    uint64_t identity_cycles;
    uint64_t frames_sent;
    uint64_t frames_failed;
    int last_error;                   /* gw_err of the last failed send, GW_OK when none */
    uint32_t last_error_id;           /* its CAN id */
    size_t id_count;
    struct can_publisher_id_counter ids[CAN_PUBLISHER_MAX_IDS];
    struct can_transport_stats transport_stats;
    /* Age of the data in each limit or measurement frame (0x351, 0x355, 0x356, 0x373...) when
     * it was written: send time minus the time of the oldest BMS sample the frame was built
     * from (the oldest online pack's). A charger acts on it as if it were now. */
    uint64_t data_age_frames;         /* frames counted */
    uint64_t data_age_sum_ms;
    uint64_t data_age_max_ms;
    uint64_t data_age_le[CAN_PUBLISHER_AGE_BUCKETS]; /* frames with age <= can_publisher_age_bounds_ms[i]
                                                        (cumulative, as a Prometheus histogram) */
};

/* Upper bounds in ms of the data-age buckets (ascending; the last one is UINT32_MAX: every
 * frame). */
extern const uint32_t can_publisher_age_bounds_ms[CAN_PUBLISHER_AGE_BUCKETS];

/* Copies the current status into *out. @retval GW_OK, GW_ERR_INVAL (NULL) */
int can_publisher_get_status(struct can_publisher *pub, struct can_publisher_status *out);

enum can_tap_dir { CAN_TAP_TX = 0, CAN_TAP_RX = 1 };

/* One frame seen by the publisher. */
struct can_tap_entry {
    uint64_t seq;                     /* 1, 2, 3... never reused */
    uint64_t mono_ms;                 /* gw_now_ms() */
    int64_t wall_ms;                  /* gw_wall_ms() */
    uint8_t dir;                      /* enum can_tap_dir */
    int result;                       /* TX: gw_err of the send (GW_OK = sent); RX: GW_OK */
    struct can_frame_gw frame;
    char text[CAN_TAP_TEXT];          /* "0x351 CVL 55.2 V CCL 100.0 A DCL 150.0 A" */
};

/* Copies up to max entries with seq > after_seq, oldest first, into out (caller-owned).
 * Pass the last seq seen to poll incrementally (0 = everything still in the ring).
 * Returns the number of entries written. */
size_t can_publisher_tap_read(struct can_publisher *pub, uint64_t after_seq, struct can_tap_entry *out,
                              size_t max);

#endif
