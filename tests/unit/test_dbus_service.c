/* The D-Bus battery service on a private dbus-daemon started here (skipped when dbus-daemon is
 * not installed), fed battery views through a real event bus and read with plain libdbus calls:
 * the name appears with its values, limits go invalid when the views stop (a hung battery
 * service) or lose their limits, only changes are signalled, read-only paths refuse SetValue,
 * pack services are never a BMS, a taken name is retried, no bus at start neither fails nor
 * hangs, and at stop the values are invalidated before the name goes.
 * Synchronisation: waits for conditions with generous deadlines, never fixed sleeps. */
#define _GNU_SOURCE
#include "support/wait.h"
#include "test.h"

#include "app_events.h"
#include "dbus_battery.h"
#include "event_bus.h"
#include "gw_error.h"
#include "victron.h"

#include <dbus/dbus.h>
#include <fcntl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BANK "com.victronenergy.battery.ttyUSB0"
#define BUSITEM "com.victronenergy.BusItem"
#define DEADLINE_MS 15000

static pid_t bus_pid = -1;
static char bus_addr[512];
static char bus_dir[64];
static DBusConnection *cli;

static uint64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(int ms)
{
    poll(NULL, 0, ms); /* the step of a wait-with-deadline loop, never a synchronisation */
}

/* dbus-daemon --session on a private socket (the same path at every start, so a restarted bus
 * is found again); false when it cannot be started. */
static bool bus_start(void)
{
    char listen[128];
    snprintf(listen, sizeof listen, "--address=unix:path=%s/bus", bus_dir);
    char sock[96];
    snprintf(sock, sizeof sock, "%s/bus", bus_dir);
    unlink(sock);
    int p[2];
    if (pipe(p) != 0)
        return false;
    bus_pid = fork();
    if (bus_pid == 0) {
        close(p[0]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2); /* its notices are not ours to print */
        char arg[32];
        snprintf(arg, sizeof arg, "--print-address=%d", p[1]);
        execlp("dbus-daemon", "dbus-daemon", "--session", "--nofork", "--nopidfile", listen, arg, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    uint64_t end = real_ms() + DEADLINE_MS;
    while (n < sizeof bus_addr - 1 && real_ms() < end) {
        struct pollfd pf = { .fd = p[0], .events = POLLIN };
        if (poll(&pf, 1, 200) <= 0)
            continue;
        ssize_t r = read(p[0], bus_addr + n, sizeof bus_addr - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (memchr(bus_addr, '\n', n))
            break;
    }
    close(p[0]);
    bus_addr[n] = '\0';
    bus_addr[strcspn(bus_addr, "\n")] = '\0';
    if (!bus_addr[0])
        return false;
    setenv("DBUS_SESSION_BUS_ADDRESS", bus_addr, 1);
    DBusError err;
    dbus_error_init(&err);
    cli = dbus_connection_open_private(bus_addr, &err);
    if (!cli || !dbus_bus_register(cli, &err)) {
        fprintf(stderr, "client: %s\n", err.message ? err.message : "?");
        dbus_error_free(&err);
        return false;
    }
    dbus_connection_set_exit_on_disconnect(cli, FALSE);
    return true;
}

static void bus_stop(void)
{
    if (cli) {
        dbus_connection_close(cli);
        dbus_connection_unref(cli);
        cli = NULL;
    }
    if (bus_pid > 0) {
        kill(bus_pid, SIGTERM);
        waitpid(bus_pid, NULL, 0);
        bus_pid = -1;
    }
}

/* ---- client calls --------------------------------------------------------------------- */

enum { V_ERROR = -1, V_INVALID = 0, V_DOUBLE, V_INT, V_STRING, V_OTHER };

struct val {
    int kind;
    double d;
    int32_t i;
    char s[128];
    char error[128];
};

static DBusMessage *call(const char *svc, const char *path, const char *iface, const char *member,
                         DBusMessage *(*fill)(DBusMessage *m, void *ctx), void *ctx, char *error, size_t cap)
{
    DBusMessage *m = dbus_message_new_method_call(svc, path, iface, member);
    if (fill)
        m = fill(m, ctx);
    DBusError err;
    dbus_error_init(&err);
    DBusMessage *r = dbus_connection_send_with_reply_and_block(cli, m, 5000, &err);
    dbus_message_unref(m);
    if (!r && error)
        snprintf(error, cap, "%s", err.name ? err.name : "?");
    dbus_error_free(&err);
    return r;
}

static void read_variant(DBusMessageIter *var, struct val *v)
{
    DBusMessageIter in;
    dbus_message_iter_recurse(var, &in);
    int t = dbus_message_iter_get_arg_type(&in);
    const char *s;
    switch (t) {
    case DBUS_TYPE_DOUBLE: v->kind = V_DOUBLE; dbus_message_iter_get_basic(&in, &v->d); break;
    case DBUS_TYPE_INT32: v->kind = V_INT; dbus_message_iter_get_basic(&in, &v->i); break;
    case DBUS_TYPE_STRING:
        v->kind = V_STRING;
        dbus_message_iter_get_basic(&in, &s);
        snprintf(v->s, sizeof v->s, "%s", s);
        break;
    case DBUS_TYPE_ARRAY: {
        char *sig = dbus_message_iter_get_signature(&in);
        DBusMessageIter a;
        dbus_message_iter_recurse(&in, &a);
        v->kind = strcmp(sig, "ai") == 0 && dbus_message_iter_get_arg_type(&a) == DBUS_TYPE_INVALID ? V_INVALID
                                                                                                     : V_OTHER;
        dbus_free(sig);
        break;
    }
    default: v->kind = V_OTHER; break;
    }
}

static struct val get_value(const char *svc, const char *path)
{
    struct val v = { .kind = V_ERROR };
    DBusMessage *r = call(svc, path, BUSITEM, "GetValue", NULL, NULL, v.error, sizeof v.error);
    DBusMessageIter it;
    if (r && dbus_message_iter_init(r, &it) && dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_VARIANT)
        read_variant(&it, &v);
    if (r)
        dbus_message_unref(r);
    return v;
}

struct set_arg {
    int type;
    const void *value;
};

static DBusMessage *fill_set(DBusMessage *m, void *ctx)
{
    struct set_arg *a = ctx;
    if (a->type == DBUS_TYPE_INVALID)
        return m; /* no argument at all */
    DBusMessageIter it, var;
    char sig[2] = { (char)a->type, 0 };
    dbus_message_iter_init_append(m, &it);
    dbus_message_iter_open_container(&it, DBUS_TYPE_VARIANT, sig, &var);
    dbus_message_iter_append_basic(&var, a->type, a->value);
    dbus_message_iter_close_container(&it, &var);
    return m;
}

/* SetValue's answer, or -100 for an error reply (name in error). */
static int set_value(const char *svc, const char *path, int type, const void *value, char *error, size_t cap)
{
    struct set_arg a = { type, value };
    DBusMessage *r = call(svc, path, BUSITEM, "SetValue", fill_set, &a, error, cap);
    int32_t code = -100;
    if (r) {
        dbus_message_get_args(r, NULL, DBUS_TYPE_INT32, &code, DBUS_TYPE_INVALID);
        dbus_message_unref(r);
    }
    return code;
}

static DBusMessage *fill_name(DBusMessage *m, void *ctx)
{
    const char *name = ctx;
    dbus_message_append_args(m, DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID);
    return m;
}

static bool has_owner(const char *name)
{
    DBusMessage *r = call(DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS, "NameHasOwner", fill_name,
                          (void *)name, NULL, 0);
    dbus_bool_t yes = FALSE;
    if (r) {
        dbus_message_get_args(r, NULL, DBUS_TYPE_BOOLEAN, &yes, DBUS_TYPE_INVALID);
        dbus_message_unref(r);
    }
    return yes;
}

static bool wait_owner(const char *name, bool owned)
{
    bool ok;
    WAIT_FOR(ok, has_owner(name) == owned, DEADLINE_MS);
    if (ok)
        return true;
    fprintf(stderr, "timeout: %s %s\n", name, owned ? "never appeared" : "never went");
    return false;
}

static bool wait_kind(const char *svc, const char *path, int kind)
{
    struct val v = { .kind = V_ERROR };
    bool ok;
    WAIT_FOR(ok, (v = get_value(svc, path)).kind == kind, DEADLINE_MS);
    if (ok)
        return true;
    fprintf(stderr, "timeout: %s %s kind %d, wanted %d\n", svc, path, v.kind, kind);
    return false;
}

/* ---- signals seen by the client -------------------------------------------------------- */

static void add_match(const char *rule)
{
    DBusError err;
    dbus_error_init(&err);
    dbus_bus_add_match(cli, rule, &err);
    CHECK(!dbus_error_is_set(&err));
    dbus_error_free(&err);
}

/* Next signal message received (or NULL after the deadline). Caller unrefs. */
static DBusMessage *next_signal(int timeout_ms)
{
    uint64_t end = real_ms() + (uint64_t)timeout_ms;
    for (;;) {
        DBusMessage *m = dbus_connection_pop_message(cli);
        if (m) {
            if (dbus_message_get_type(m) == DBUS_MESSAGE_TYPE_SIGNAL)
                return m;
            dbus_message_unref(m);
            continue;
        }
        uint64_t now = real_ms();
        if (now >= end)
            return NULL;
        dbus_connection_read_write(cli, (int)(end - now));
    }
}

static void drain_signals(void)
{
    DBusMessage *m;
    while ((m = next_signal(50)) != NULL)
        dbus_message_unref(m);
}

/* Paths (and invalid-or-not) of an ItemsChanged. */
struct items {
    unsigned n;
    char path[128][64];
    bool invalid[128];
};

static void read_items(DBusMessage *m, struct items *out)
{
    memset(out, 0, sizeof *out);
    DBusMessageIter it, arr;
    dbus_message_iter_init(m, &it);
    dbus_message_iter_recurse(&it, &arr);
    while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_DICT_ENTRY && out->n < 128) {
        DBusMessageIter e, d;
        const char *path;
        dbus_message_iter_recurse(&arr, &e);
        dbus_message_iter_get_basic(&e, &path);
        snprintf(out->path[out->n], sizeof out->path[0], "%s", path);
        dbus_message_iter_next(&e);
        dbus_message_iter_recurse(&e, &d);
        while (dbus_message_iter_get_arg_type(&d) == DBUS_TYPE_DICT_ENTRY) {
            DBusMessageIter kv;
            const char *key;
            dbus_message_iter_recurse(&d, &kv);
            dbus_message_iter_get_basic(&kv, &key);
            dbus_message_iter_next(&kv);
            if (strcmp(key, "Value") == 0) {
                struct val v = { 0 };
                read_variant(&kv, &v);
                out->invalid[out->n] = v.kind == V_INVALID;
            }
            dbus_message_iter_next(&d);
        }
        out->n++;
        dbus_message_iter_next(&arr);
    }
}

/* ---- fixtures -------------------------------------------------------------------------- */

static void make_view(struct battery_view *v, unsigned packs, uint64_t seq)
{
    memset(v, 0, sizeof *v);
    v->seq = seq;
    v->timestamp_ms = 0; /* "now" at reception */
    v->pack_count = (uint8_t)packs;
    v->online_count = (uint8_t)packs;
    v->voltage_v = 53.12f;
    v->current_a = 10.0f;
    v->power_w = 531.0f;
    v->soc_pct = 60.0f;
    v->capacity_ah = v->installed_capacity_ah = 280.0f * packs;
    v->cell_count = 16;
    v->min_cell_v = 3.30f;
    v->max_cell_v = 3.33f;
    v->modules.ok = (uint16_t)packs;
    v->limits.valid = true;
    v->limits.cvl_v = 55.3f;
    v->limits.ccl_a = 100.0f;
    v->limits.dcl_a = 150.0f;
    v->limits.discharge_v = 46.4f;
    for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++)
        v->alarms.alarm[f] = v->alarms.warning[f] = VICTRON_FLAG_OK;
    for (unsigned k = 0; k < packs; k++) {
        struct battery_pack *p = &v->packs[k];
        p->id = (uint8_t)k;
        p->state = BATTERY_PACK_ONLINE;
        p->capacity_ah = 280.0f;
        p->soc_pct = 60.0f;
        p->charge_allowed = p->discharge_allowed = true;
        p->live.valid = true;
        p->live.cell_count = 16;
        p->live.pack_voltage_v = 53.12f;
        for (unsigned c = 0; c < 16; c++)
            p->live.cell_mv_x10[c] = 33200;
    }
}

static struct event_bus *evbus;

static void publish(const struct battery_view *v)
{
    CHECK(event_bus_publish(evbus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
    event_bus_flush(evbus, 2000);
}

static struct dbus_battery *service_new(unsigned packs, bool per_pack, uint32_t stale_ms)
{
    static const char *devs[] = { "/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/ttyUSB2" };
    struct dbus_battery_options o = { .bus = evbus, .stale_timeout_ms = stale_ms, .device_instance = 3,
                                      .per_pack = per_pack, .pack_count = (uint8_t)packs };
    for (unsigned k = 0; k < packs; k++) {
        o.pack_devices[k] = devs[k];
        o.pack_names[k] = k ? "rear" : "front";
    }
    struct dbus_battery *db = NULL;
    CHECK_EQ_INT(dbus_battery_create(&o, &db), GW_OK);
    CHECK_EQ_INT(dbus_battery_start(db), GW_OK);
    return db;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_bad_options(void)
{
    struct dbus_battery *db = (void *)1;
    struct dbus_battery_options o = { .bus = evbus, .stale_timeout_ms = 5000, .pack_count = 1 };
    CHECK_EQ_INT(dbus_battery_create(NULL, &db), GW_ERR_INVAL);
    CHECK(db == NULL);
    o.pack_count = 0;
    CHECK_EQ_INT(dbus_battery_create(&o, &db), GW_ERR_INVAL);
    o.pack_count = 1;
    o.stale_timeout_ms = 100;
    CHECK_EQ_INT(dbus_battery_create(&o, &db), GW_ERR_RANGE);
    o.stale_timeout_ms = 5000;
    o.device_instance = 5000;
    CHECK_EQ_INT(dbus_battery_create(&o, &db), GW_ERR_RANGE);
    CHECK_EQ_INT(dbus_battery_start(NULL), GW_ERR_INVAL);
    dbus_battery_destroy(NULL);
}

static void test_name_appears_with_values_only_after_data(void)
{
    struct dbus_battery *db = service_new(1, false, 5000);
    /* No view yet: nothing on the bus (no path exists before it has its values). */
    CHECK(!has_owner(BANK));
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 1, 1);
    publish(v);
    CHECK(wait_owner(BANK, true));
    struct val x = get_value(BANK, "/Info/MaxChargeVoltage");
    CHECK_EQ_INT(x.kind, V_DOUBLE);
    CHECK_NEAR(x.d, 55.3, 1e-9);
    CHECK_EQ_INT(get_value(BANK, "/Connected").i, 1);
    CHECK_EQ_INT(get_value(BANK, "/DeviceInstance").i, 3); /* no settings service on this bus */
    CHECK_STR(get_value(BANK, "/Mgmt/Connection").s, "Serial /dev/ttyUSB0");
    CHECK_EQ_INT(get_value(BANK, "/Voltages/Cell16").kind, V_DOUBLE);
    CHECK_STR(get_value(BANK, "/Voltages/Cell17").error, DBUS_ERROR_UNKNOWN_OBJECT);
    CHECK_STR(get_value(BANK, "/Nope").error, DBUS_ERROR_UNKNOWN_OBJECT);
    CHECK_EQ_INT(get_value(BANK, "/").kind, V_OTHER); /* the dict */
    struct dbus_battery_stats st;
    CHECK_EQ_INT(dbus_battery_get_stats(db, &st), GW_OK);
    CHECK(st.online && st.services == 1 && st.services_on_bus == 1);
    CHECK_STR(st.name, BANK);
    dbus_battery_destroy(db);
    CHECK(wait_owner(BANK, false));
    free(v);
}

static void test_limits_invalid_when_views_stop_or_lose_limits(void)
{
    struct dbus_battery *db = service_new(1, false, 600);
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 1, 1);
    publish(v);
    CHECK(wait_owner(BANK, true));
    CHECK(wait_kind(BANK, "/Info/MaxChargeVoltage", V_DOUBLE));
    /* No more views (a hung battery service): the thread's own deadline invalidates. */
    CHECK(wait_kind(BANK, "/Info/MaxChargeVoltage", V_INVALID));
    CHECK_EQ_INT(get_value(BANK, "/Info/MaxChargeCurrent").kind, V_INVALID);
    CHECK_EQ_INT(get_value(BANK, "/Info/MaxDischargeCurrent").kind, V_INVALID);
    CHECK_EQ_INT(get_value(BANK, "/Dc/0/Voltage").kind, V_INVALID);
    CHECK_EQ_INT(get_value(BANK, "/Connected").i, 0);
    CHECK_EQ_INT(get_value(BANK, "/Io/AllowToCharge").i, 0);
    CHECK_EQ_INT(get_value(BANK, "/Alarms/BmsCable").i, 2);
    CHECK_EQ_INT(get_value(BANK, "/InstalledCapacity").kind, V_DOUBLE); /* not a measurement */
    /* Fresh again. */
    make_view(v, 1, 2);
    publish(v);
    CHECK(wait_kind(BANK, "/Info/MaxChargeVoltage", V_DOUBLE));
    CHECK_EQ_INT(get_value(BANK, "/Connected").i, 1);
    /* A fresh view without limits (no pack online): invalid at once. */
    v->limits.valid = false;
    v->seq = 3;
    publish(v);
    CHECK(wait_kind(BANK, "/Info/MaxChargeVoltage", V_INVALID));
    /* Limits CAN would refuse (CVL 0) are not sent either. */
    make_view(v, 1, 4);
    publish(v);
    CHECK(wait_kind(BANK, "/Info/MaxChargeVoltage", V_DOUBLE));
    v->limits.cvl_v = 0.0f;
    v->seq = 5;
    publish(v);
    CHECK(wait_kind(BANK, "/Info/MaxChargeVoltage", V_INVALID));
    struct dbus_battery_stats st;
    dbus_battery_get_stats(db, &st);
    CHECK_EQ_INT(st.stale_transitions, 3);
    dbus_battery_destroy(db);
    free(v);
}

static void test_only_changes_signalled_and_stop_order(void)
{
    add_match("type='signal',interface='" BUSITEM "'");
    add_match("type='signal',interface='" DBUS_INTERFACE_DBUS "',member='NameOwnerChanged',arg0='" BANK "'");
    struct dbus_battery *db = service_new(1, false, 5000);
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 1, 1);
    publish(v);
    CHECK(wait_owner(BANK, true));
    drain_signals();
    /* One value out of its deadband: one ItemsChanged with it alone, one PropertiesChanged. */
    v->voltage_v = 53.50f;
    v->seq = 2;
    publish(v);
    DBusMessage *m = next_signal(DEADLINE_MS);
    CHECK(m && dbus_message_is_signal(m, BUSITEM, "ItemsChanged"));
    if (m) {
        CHECK_STR(dbus_message_get_path(m), "/");
        CHECK_STR(dbus_message_get_signature(m), "a{sa{sv}}");
        struct items it;
        read_items(m, &it);
        CHECK_EQ_INT(it.n, 1);
        CHECK_STR(it.path[0], "/Dc/0/Voltage");
        dbus_message_unref(m);
    }
    m = next_signal(DEADLINE_MS);
    CHECK(m && dbus_message_is_signal(m, BUSITEM, "PropertiesChanged"));
    if (m) {
        CHECK_STR(dbus_message_get_path(m), "/Dc/0/Voltage");
        CHECK_STR(dbus_message_get_signature(m), "a{sv}");
        dbus_message_unref(m);
    }
    /* The same view again, and one moved inside the deadband: nothing. */
    v->seq = 3;
    publish(v);
    v->voltage_v = 53.51f;
    v->seq = 4;
    publish(v);
    v->current_a = 20.0f; /* a marker: the next signal must be this one */
    v->seq = 5;
    publish(v);
    m = next_signal(DEADLINE_MS);
    CHECK(m && dbus_message_is_signal(m, BUSITEM, "ItemsChanged"));
    if (m) {
        struct items it;
        read_items(m, &it);
        CHECK_EQ_INT(it.n, 1);
        CHECK_STR(it.path[0], "/Dc/0/Current");
        dbus_message_unref(m);
    }
    drain_signals();

    /* Stop: every value invalid in one ItemsChanged, then the name goes. */
    dbus_battery_destroy(db);
    bool invalidated = false, gone = false;
    while (!gone && (m = next_signal(DEADLINE_MS)) != NULL) {
        if (dbus_message_is_signal(m, BUSITEM, "ItemsChanged")) {
            struct items it;
            read_items(m, &it);
            bool all = it.n > 50;
            for (unsigned k = 0; k < it.n; k++)
                all = all && it.invalid[k];
            invalidated = invalidated || all;
        } else if (dbus_message_is_signal(m, DBUS_INTERFACE_DBUS, "NameOwnerChanged")) {
            const char *name, *old, *new_owner;
            dbus_message_get_args(m, NULL, DBUS_TYPE_STRING, &name, DBUS_TYPE_STRING, &old, DBUS_TYPE_STRING,
                                  &new_owner, DBUS_TYPE_INVALID);
            if (strcmp(name, BANK) == 0 && new_owner[0] == '\0') {
                gone = true;
                CHECK(invalidated); /* before, never after */
            }
        }
        dbus_message_unref(m);
    }
    CHECK(invalidated && gone);
    free(v);
}

static void test_set_value_and_bad_calls(void)
{
    struct dbus_battery *db = service_new(1, false, 5000);
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 1, 1);
    publish(v);
    CHECK(wait_owner(BANK, true));
    char err[128] = "";
    double d = 40.0;
    CHECK_EQ_INT(set_value(BANK, "/Info/MaxChargeVoltage", DBUS_TYPE_DOUBLE, &d, err, sizeof err), 1);
    CHECK_NEAR(get_value(BANK, "/Info/MaxChargeVoltage").d, 55.3, 1e-9); /* untouched */
    const char *name = "garage";
    CHECK_EQ_INT(set_value(BANK, "/CustomName", DBUS_TYPE_STRING, &name, err, sizeof err), 0);
    CHECK_STR(get_value(BANK, "/CustomName").s, "garage");
    CHECK_EQ_INT(set_value(BANK, "/CustomName", DBUS_TYPE_STRING, &name, err, sizeof err), 0); /* unchanged */
    CHECK_EQ_INT(set_value(BANK, "/CustomName", DBUS_TYPE_DOUBLE, &d, err, sizeof err), 1);    /* wrong type */
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    const char *ln = longname;
    CHECK_EQ_INT(set_value(BANK, "/CustomName", DBUS_TYPE_STRING, &ln, err, sizeof err), 2);
    CHECK_STR(get_value(BANK, "/CustomName").s, "garage");
    CHECK_EQ_INT(set_value(BANK, "/CustomName", DBUS_TYPE_INVALID, NULL, err, sizeof err), -100);
    CHECK_STR(err, DBUS_ERROR_INVALID_ARGS);
    DBusMessage *r = call(BANK, "/Soc", BUSITEM, "Explode", NULL, NULL, err, sizeof err);
    CHECK(r == NULL);
    CHECK_STR(err, DBUS_ERROR_UNKNOWN_METHOD);
    r = call(BANK, "/Soc", "org.example.Other", "GetValue", NULL, NULL, err, sizeof err);
    CHECK(r == NULL);
    r = call(BANK, "/Dc", DBUS_INTERFACE_INTROSPECTABLE, "Introspect", NULL, NULL, err, sizeof err);
    CHECK(r != NULL);
    if (r) {
        const char *xml = NULL;
        dbus_message_get_args(r, NULL, DBUS_TYPE_STRING, &xml, DBUS_TYPE_INVALID);
        CHECK(xml && strstr(xml, "<node name=\"0\"/>") && strstr(xml, BUSITEM));
        dbus_message_unref(r);
    }
    dbus_battery_destroy(db);
    free(v);
}

static void test_pack_services_are_not_bms(void)
{
    struct dbus_battery *db = service_new(2, true, 5000);
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 2, 1);
    v->packs[1].live.pack_voltage_v = 52.0f;
    publish(v);
    const char *bank = "com.victronenergy.battery.tinybms_0";
    const char *p1 = "com.victronenergy.battery.ttyUSB0", *p2 = "com.victronenergy.battery.ttyUSB1";
    CHECK(wait_owner(bank, true) && wait_owner(p1, true) && wait_owner(p2, true));
    CHECK_EQ_INT(get_value(bank, "/Info/MaxChargeVoltage").kind, V_DOUBLE);
    CHECK_STR(get_value(p1, "/Info/MaxChargeVoltage").error, DBUS_ERROR_UNKNOWN_OBJECT);
    CHECK_NEAR(get_value(p2, "/Dc/0/Voltage").d, 52.0, 1e-9);
    CHECK_STR(get_value(p2, "/CustomName").s, "rear");
    CHECK_EQ_INT(get_value(bank, "/DeviceInstance").i, 3);
    CHECK_EQ_INT(get_value(p1, "/DeviceInstance").i, 4);
    CHECK_EQ_INT(get_value(p2, "/DeviceInstance").i, 5);
    CHECK_STR(get_value(bank, "/Voltages/Cell1").error, DBUS_ERROR_UNKNOWN_OBJECT); /* cells: per pack */
    CHECK_EQ_INT(get_value(p1, "/Voltages/Cell1").kind, V_DOUBLE);
    /* Pack 2 goes stale: its service says so; the bank is the battery service's business. */
    v->packs[1].state = BATTERY_PACK_STALE;
    v->seq = 2;
    publish(v);
    CHECK(wait_kind(p2, "/Dc/0/Voltage", V_INVALID));
    CHECK_EQ_INT(get_value(p2, "/Connected").i, 0);
    CHECK_EQ_INT(get_value(p1, "/Connected").i, 1);
    struct dbus_battery_stats st;
    dbus_battery_get_stats(db, &st);
    CHECK_EQ_INT(st.services, 3);
    dbus_battery_destroy(db);
    CHECK(wait_owner(bank, false) && wait_owner(p1, false) && wait_owner(p2, false));
    free(v);
}

static void test_name_taken_is_retried(void)
{
    DBusError err;
    dbus_error_init(&err);
    CHECK_EQ_INT(dbus_bus_request_name(cli, BANK, DBUS_NAME_FLAG_DO_NOT_QUEUE, &err),
                 DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER);
    struct dbus_battery *db = service_new(1, false, 60000); /* the data stays fresh while it waits */
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 1, 1);
    publish(v);
    /* It tried and failed (logged); the name is still ours. */
    struct dbus_battery_stats st;
    uint64_t end = real_ms() + DEADLINE_MS;
    do {
        pause_ms(20);
        dbus_battery_get_stats(db, &st);
    } while (st.connects == 0 && real_ms() < end);
    CHECK_EQ_INT(st.services_on_bus, 0);
    dbus_bus_release_name(cli, BANK, &err);
    dbus_error_free(&err);
    /* The next attempt (5 s later) takes it. */
    end = real_ms() + DEADLINE_MS;
    do {
        pause_ms(50);
        dbus_battery_get_stats(db, &st);
    } while (st.services_on_bus == 0 && real_ms() < end);
    CHECK_EQ_INT(st.services_on_bus, 1);
    CHECK_EQ_INT(get_value(BANK, "/Connected").i, 1);
    dbus_battery_destroy(db);
    free(v);
}

static bool wait_stat(struct dbus_battery *db, size_t offset, uint64_t at_least)
{
    struct dbus_battery_stats st;
    uint64_t v = 0;
    bool ok;
    WAIT_FOR(ok, (dbus_battery_get_stats(db, &st), memcpy(&v, (const char *)&st + offset, sizeof v), v >= at_least),
             DEADLINE_MS);
    return ok;
}

/* The bus goes away under a running service and comes back (a dbus-daemon restart). */
static void test_bus_restart_reconnects(void)
{
    struct dbus_battery *db = service_new(1, false, 60000);
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 1, 1);
    publish(v);
    CHECK(wait_owner(BANK, true));
    bus_stop();
    CHECK(wait_stat(db, offsetof(struct dbus_battery_stats, disconnects), 1));
    CHECK(bus_start());
    CHECK(wait_stat(db, offsetof(struct dbus_battery_stats, connects), 2));
    CHECK(wait_owner(BANK, true));
    CHECK_EQ_INT(get_value(BANK, "/Connected").i, 1);
    CHECK_NEAR(get_value(BANK, "/Info/MaxChargeVoltage").d, 55.3, 1e-9);
    dbus_battery_destroy(db);
    free(v);
}

static void test_no_bus_neither_fails_nor_hangs(void)
{
    setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/tinybms-gw-test-bus", 1);
    struct dbus_battery *db = service_new(1, false, 5000);
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 1, 1);
    publish(v);
    CHECK(wait_stat(db, offsetof(struct dbus_battery_stats, connect_failures), 1));
    struct dbus_battery_stats st;
    dbus_battery_get_stats(db, &st);
    CHECK_EQ_INT(st.services_on_bus, 0);
    CHECK_EQ_INT(st.connects, 0);
    dbus_battery_destroy(db); /* returns at once, between two attempts */
    setenv("DBUS_SESSION_BUS_ADDRESS", bus_addr, 1);
    free(v);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(bus_dir, sizeof bus_dir, "/tmp/gw-dbus-test-XXXXXX");
    if (!mkdtemp(bus_dir)) {
        printf("skipped: no temporary directory\n");
        return 0;
    }
    if (!bus_start()) {
        printf("skipped: dbus-daemon could not be started (Debian package dbus-daemon)\n");
        bus_stop();
        return 0;
    }
    event_bus_create(NULL, &evbus);
    static const struct test_case_ cases[] = {
        TEST_CASE(test_bad_options),
        TEST_CASE(test_name_appears_with_values_only_after_data),
        TEST_CASE(test_limits_invalid_when_views_stop_or_lose_limits),
        TEST_CASE(test_only_changes_signalled_and_stop_order),
        TEST_CASE(test_set_value_and_bad_calls),
        TEST_CASE(test_pack_services_are_not_bms),
        TEST_CASE(test_name_taken_is_retried),
        TEST_CASE(test_bus_restart_reconnects),
        TEST_CASE(test_no_bus_neither_fails_nor_hangs),
    };
    int rc = test_run_(cases, sizeof cases / sizeof cases[0]);
    event_bus_destroy(evbus);
    bus_stop();
    char sock[96];
    snprintf(sock, sizeof sock, "%s/bus", bus_dir);
    unlink(sock);
    rmdir(bus_dir);
    return rc;
}
