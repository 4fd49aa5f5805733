/* dbus_battery: the battery on D-Bus as a Venus OS battery service, com.victronenergy.battery.*
 * (spec: shared/spec/venus-dbus-battery.md; user doc docs/venus-os.md; developer notes
 * docs/dev/dbus.md). An output beside can_publisher: a pure consumer of the battery view, it
 * computes no limit.
 *
 * - Subscribes to EVENT_BATTERY_UPDATE (values, limits, alarms: the view is copied) and, for
 *   the identity and history paths only, EVENT_BMS_VERSION_UPDATE and EVENT_BMS_STATS_UPDATE.
 * - One thread, one poll() loop over the D-Bus sockets and a wake-up pipe: it wakes for bus
 *   traffic, a new view, or the staleness deadline, never periodically. libdbus-1 only.
 * - One service for the bank (with the DVCC limits /Info/...) and, optionally, one per pack
 *   (measurements only: a pack service is never a BMS). Each service has its own private
 *   connection to the session bus when DBUS_SESSION_BUS_ADDRESS is set, else to the system bus.
 *   Its paths and first values exist before its name is claimed (after the first view that has
 *   data, once com.victronenergy.settings answered AddSettings or is known absent).
 * - com.victronenergy.BusItem as velib_python implements it; on each view one ItemsChanged on
 *   "/" with only what changed (deadbands for noisy values) and one PropertiesChanged per
 *   changed leaf.
 * - SAFETY: with no view newer than stale_timeout_ms (a stopped poller, a hung battery
 *   service), or a view without valid limits, the limit and measurement paths become invalid
 *   (empty array), /Connected 0, /Alarms/BmsCable 2: the GX stops using the service as its BMS.
 *   At stop every value is invalidated before the name is released.
 *
 * Every function is thread-safe unless said otherwise. */
#ifndef DBUS_BATTERY_H
#define DBUS_BATTERY_H

#include "battery_view.h"

#include <stdbool.h>
#include <stdint.h>

struct event_bus;
struct dbus_battery;

#define DBUS_BATTERY_NAME_MAX 128

struct dbus_battery_options {
    struct event_bus *bus;              /* required, borrowed: must outlive the service */
    uint32_t stale_timeout_ms;          /* 500..60000 (the daemon passes can.stale_timeout_ms) */
    int32_t device_instance;            /* 0..1023: /DeviceInstance without localsettings; pack
                                           services take the next ones */
    bool per_pack;                      /* also one service per pack (when there are several) */
    uint8_t pack_count;                 /* 1..BATTERY_MAX_PACKS */
    const char *pack_devices[BATTERY_MAX_PACKS]; /* serial port of each pack (copied): names
                                           the services ("/dev/ttyUSB0" -> ...battery.ttyUSB0) */
    const char *pack_names[BATTERY_MAX_PACKS];   /* optional (copied): a pack service's /CustomName */
    const char *process_version;        /* /Mgmt/ProcessVersion (copied), NULL = GW_VERSION */
};

struct dbus_battery_stats {
    unsigned services;                  /* configured */
    unsigned services_on_bus;           /* name owned */
    bool online;                        /* bank: fresh data, limits published */
    uint32_t stale_transitions;         /* bank: online -> not fresh */
    int32_t device_instance;            /* bank */
    bool instance_from_settings;        /* bank: allocated by com.victronenergy.settings */
    char name[DBUS_BATTERY_NAME_MAX];   /* bank service name */
    uint64_t views;                     /* battery views received */
    uint64_t updates;                   /* view/deadline steps that recomputed the values */
    uint64_t values_changed;            /* leaves published with a new value */
    uint64_t signals;                   /* ItemsChanged + PropertiesChanged sent */
    uint64_t method_calls;              /* handled for others */
    uint64_t connects, disconnects;
    uint64_t connect_failures;          /* no bus (yet): retried 1 s .. 30 s apart */
    uint64_t update_cpu_ns_total;       /* thread CPU time of the updates (values, diff, signals) */
    uint64_t update_cpu_ns_max;
};

/* Validates the options, subscribes to the bus. Connects nothing yet. On failure *out = NULL.
 * @retval GW_OK
 * @retval GW_ERR_INVAL NULL options/bus/out, no pack
 * @retval GW_ERR_RANGE stale_timeout_ms or device_instance outside its range
 * @retval GW_ERR_NOMEM
 * @retval GW_ERR_FULL the event bus has no room for our subscriptions */
int dbus_battery_create(const struct dbus_battery_options *opts, struct dbus_battery **out);

/* Starts the thread, which connects (and reconnects after a bus restart, 1 s .. 30 s apart).
 * A bus that is absent at start is retried the same way: start still succeeds.
 * @retval GW_OK, GW_ERR_STATE (running), GW_ERR_IO (pipe/thread creation failed) */
int dbus_battery_start(struct dbus_battery *db);

/* Invalidates every value on the bus, releases the names, closes, joins. Idempotent. */
void dbus_battery_stop(struct dbus_battery *db);

/* Stops, unsubscribes, frees. NULL accepted. Not from an event bus handler. */
void dbus_battery_destroy(struct dbus_battery *db);

/* Copies the counters. @retval GW_OK, GW_ERR_INVAL */
int dbus_battery_get_stats(struct dbus_battery *db, struct dbus_battery_stats *out);

#endif
