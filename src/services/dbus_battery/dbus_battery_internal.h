/* Private to dbus_battery and its fuzz target (tests/fuzz/fuzz_dbus.c): the method-call handler
 * of a service, without a bus. Nothing else includes this. */
#ifndef DBUS_BATTERY_INTERNAL_H
#define DBUS_BATTERY_INTERNAL_H

#include "battery_view.h"
#include "dbus_battery.h"

#include <dbus/dbus.h>
#include <stdbool.h>

/* Number of com.victronenergy.battery.* services of db (the bank, then one per pack with
 * per_pack and several packs). */
unsigned dbus_battery__service_count(const struct dbus_battery *db);

/* Resets service k as a fresh start would (identity from the configuration, no custom name from
 * the settings), gives db the view v as if the thread had taken it now, builds the service's
 * paths and marks it running on conn. conn is not owned and never read, flushed or closed here:
 * every reply and signal of the service goes out through dbus_connection_send(conn, ...).
 * Only while the service thread is not running (dbus_battery_start not called).
 * @retval true the service has its paths (v has a pack with data for it) */
bool dbus_battery__attach(struct dbus_battery *db, unsigned k, DBusConnection *conn, const struct battery_view *v);

/* Handles one message of the bus for service k as its object path handler does (GetValue,
 * GetText, GetItems, GetDescription, SetValue, Introspect on any path). */
DBusHandlerResult dbus_battery__handle(struct dbus_battery *db, unsigned k, DBusMessage *m);

#endif
