/* Fuzz target: method calls to the Venus OS battery services, SetValue above all (the one
 * call that writes: /CustomName), as any client of the system bus can send them. Each input is
 * one message handed to the object path handler (dbus_battery__handle) of a real dbus_battery
 * with two packs and a service per pack, attached to a view made by a real battery engine. The
 * service's connection is this file's: dbus_connection_send is provided here (the executable's
 * definition comes before libdbus's), so every reply and signal the service builds is checked
 * instead of sent: a reply must marshal and demarshal, and a method call always gets exactly one
 * reply (a return or an error) unless it asked for none. libdbus aborts on any misuse of its
 * API (its check failures are fatal), which the fuzzer reports.
 * Input: byte 0 picks the service, byte 1 the form of the rest: a message in D-Bus wire format
 * (demarshalled as the bus daemon would deliver it), or "path\0member\0interface\0" then an
 * argument: a type letter and its value (s string, i int32, d double, b bool, a int32 array,
 * v variant in a variant, n none; upper case: not in a variant; x: the string and int32 of
 * GetDescription).
 * Corpus: tests/fuzz/corpus/dbus (the calls of tests/unit/test_dbus_service.c and of Victron's
 * dbus-spy / systemcalc: GetValue, GetText, GetItems, SetValue /CustomName, Introspect). */
#include "battery_engine.h"
#include "dbus_battery.h"
#include "dbus_battery_internal.h"
#include "event_bus.h"
#include "fuzz_support.h"
#include "gw_error.h"
#include "gw_log.h"
#include "support/sample.h"

#include <dbus/dbus.h>
#include <string.h>

static struct event_bus *bus;
static struct dbus_battery *db;
static struct battery_view view;
static struct battery_engine engine;
static DBusConnection *const fake_conn = (DBusConnection *)&fake_conn;
static unsigned replies, signals, sends;
static dbus_uint32_t expected_reply_serial;

/* Every message the service sends comes here. */
dbus_bool_t dbus_connection_send(DBusConnection *connection, DBusMessage *message, dbus_uint32_t *client_serial)
{
    FUZZ_ASSERT(connection == fake_conn);
    FUZZ_ASSERT(message != NULL);
    sends++;
    int type = dbus_message_get_type(message);
    if (type == DBUS_MESSAGE_TYPE_METHOD_RETURN || type == DBUS_MESSAGE_TYPE_ERROR) {
        replies++;
        FUZZ_ASSERT(dbus_message_get_reply_serial(message) == expected_reply_serial);
        if (getenv("GW_FUZZ_VERBOSE"))
            fprintf(stderr, "fuzz_dbus: reply %s %s\n", type == DBUS_MESSAGE_TYPE_ERROR ? "error" : "return",
                    type == DBUS_MESSAGE_TYPE_ERROR ? dbus_message_get_error_name(message) : dbus_message_get_signature(message));
    } else if (type == DBUS_MESSAGE_TYPE_SIGNAL) {
        /* ItemsChanged / PropertiesChanged of the values: built by libdbus's checked appends;
         * not marshalled here (every input resends them all). */
        signals++;
        return TRUE;
    } else {
        /* The custom name forwarded to com.victronenergy.settings: only with settings present. */
        FUZZ_ASSERT(type == DBUS_MESSAGE_TYPE_METHOD_CALL);
    }
    if (dbus_message_get_serial(message) == 0)
        dbus_message_set_serial(message, 1000 + sends);
    char *wire = NULL;
    int len = 0;
    FUZZ_ASSERT(dbus_message_marshal(message, &wire, &len));
    DBusError err;
    dbus_error_init(&err);
    DBusMessage *back = dbus_message_demarshal(wire, len, &err);
    if (!back)
        fprintf(stderr, "fuzz_dbus: a message the service built does not demarshal: %s\n", err.message);
    FUZZ_ASSERT(back != NULL);
    dbus_message_unref(back);
    dbus_free(wire);
    if (client_serial)
        *client_serial = dbus_message_get_serial(message);
    return TRUE;
}

static struct bms_live_data sample(uint8_t id, float cell_v, float current_a)
{
    struct bms_live_data s = test_sample(id, cell_v, current_a);
    for (unsigned i = 0; i < 16; i++) /* a spread of 30 mV a cell: balancing, min/max cells */
        s.cell_mv_x10[i] = (uint16_t)(cell_v * 10000.0f + 0.5f + (float)(i * 30));
    s.pack_voltage_v = cell_v * 16.0f + 0.2f;
    s.soc_ppm = 65u * 1000000u;
    s.temp_dc[BMS_TEMP_EXT1] = 215;
    s.online_status = BMS_STATUS_CHARGING;
    s.lifetime_s = 5000;
    s.balancing_active = 0x0101;
    return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    FUZZ_ASSERT(event_bus_create(NULL, &bus) == GW_OK);
    struct dbus_battery_options o = { .bus = bus, .stale_timeout_ms = 60000, .device_instance = 1, .per_pack = true,
                                      .pack_count = 2, .pack_devices = { "/dev/ttyUSB0", "/dev/serial/by-id/usb-FTDI_B-if00" },
                                      .pack_names = { "front", "" }, .process_version = "1.0.0" };
    FUZZ_ASSERT(dbus_battery_create(&o, &db) == GW_OK);
    FUZZ_ASSERT(dbus_battery__service_count(db) == 3);

    /* The view of a real engine: two packs charging, limits valid. */
    struct battery_engine_config cfg;
    battery_engine_default_config(&cfg);
    cfg.pack_count = 2;
    for (unsigned i = 0; i < 2; i++) {
        cfg.packs[i].id = (uint8_t)i;
        cfg.packs[i].capacity_ah = 280.0f;
    }
    FUZZ_ASSERT(battery_engine_init(&engine, &cfg) == GW_OK);
    battery_engine_set_limit_outputs(&engine, BATTERY_OUTPUT_DBUS);
    uint64_t now = 1000;
    for (unsigned t = 0; t < 10; t++, now += 1000) {
        for (uint8_t id = 0; id < 2; id++) {
            struct bms_live_data s = sample(id, 3.40f + 0.01f * id, 30.0f);
            s.lifetime_s += t;
            (void)battery_engine_feed_sample(&engine, &s, now);
        }
        (void)battery_engine_step(&engine, now, &view);
    }
    FUZZ_ASSERT(view.limits.valid);
    for (unsigned k = 0; k < 3; k++)
        FUZZ_ASSERT(dbus_battery__attach(db, k, fake_conn, &view));
    return 0;
}

/* A NUL-terminated field of the input. */
static const char *field(struct fuzz_input *in)
{
    const char *s = (const char *)in->data;
    const uint8_t *nul = memchr(in->data, '\0', in->size);
    if (!nul)
        return NULL;
    size_t n = (size_t)(nul - in->data) + 1;
    in->data += n;
    in->size -= n;
    return s;
}

static bool append_arg(DBusMessage *m, struct fuzz_input *in)
{
    uint8_t kind = fuzz_byte(in);
    bool variant = kind >= 'a' && kind <= 'z';
    char k = (char)(variant ? kind : kind + ('a' - 'A'));
    DBusMessageIter it, var;
    dbus_message_iter_init_append(m, &it);
    const char *sig = k == 's' ? "s" : k == 'i' ? "i" : k == 'd' ? "d" : k == 'b' ? "b" : k == 'a' ? "ai" : k == 'v' ? "v"
                                                                                                          : NULL;
    if (k == 'n')
        return true;
    char *text = fuzz_strndup(in->data, in->size);
    bool ok = true;
    if (k == 'x') { /* GetDescription(s language, i length) */
        const char *lang = dbus_validate_utf8(text, NULL) ? text : "en";
        dbus_int32_t len = 100;
        ok = dbus_message_append_args(m, DBUS_TYPE_STRING, &lang, DBUS_TYPE_INT32, &len, DBUS_TYPE_INVALID);
        free(text);
        return ok;
    }
    if (!sig || ((k == 's' || k == 'v') && !dbus_validate_utf8(text, NULL))) {
        free(text);
        return false; /* the bus would not deliver it */
    }
    DBusMessageIter *dst = &it;
    if (variant) {
        ok = dbus_message_iter_open_container(&it, DBUS_TYPE_VARIANT, sig, &var);
        dst = &var;
    }
    dbus_int32_t i32 = 0;
    double d = 0;
    dbus_bool_t b = FALSE;
    memcpy(&i32, in->data, in->size < 4 ? in->size : 4);
    memcpy(&d, in->data, in->size < 8 ? in->size : 8);
    b = in->size && (in->data[0] & 1);
    const char *str = text;
    if (ok) {
        switch (k) {
        case 's': ok = dbus_message_iter_append_basic(dst, DBUS_TYPE_STRING, &str); break;
        case 'i': ok = dbus_message_iter_append_basic(dst, DBUS_TYPE_INT32, &i32); break;
        case 'd': ok = dbus_message_iter_append_basic(dst, DBUS_TYPE_DOUBLE, &d); break;
        case 'b': ok = dbus_message_iter_append_basic(dst, DBUS_TYPE_BOOLEAN, &b); break;
        case 'a': {
            DBusMessageIter arr;
            ok = dbus_message_iter_open_container(dst, DBUS_TYPE_ARRAY, "i", &arr);
            for (size_t j = 0; ok && j + 4 <= in->size && j < 64; j += 4) {
                memcpy(&i32, in->data + j, 4);
                ok = dbus_message_iter_append_basic(&arr, DBUS_TYPE_INT32, &i32);
            }
            ok = ok && dbus_message_iter_close_container(dst, &arr);
            break;
        }
        case 'v': {
            DBusMessageIter inner;
            ok = dbus_message_iter_open_container(dst, DBUS_TYPE_VARIANT, "s", &inner) &&
                 dbus_message_iter_append_basic(&inner, DBUS_TYPE_STRING, &str) &&
                 dbus_message_iter_close_container(dst, &inner);
            break;
        }
        }
    }
    if (variant && ok)
        ok = dbus_message_iter_close_container(&it, &var);
    free(text);
    return ok;
}

/* "path\0member\0interface\0" + argument: a method call built as a client would. */
static DBusMessage *structured(struct fuzz_input *in)
{
    const char *path = field(in), *member = field(in), *iface = field(in);
    if (!path || !member || !iface || !dbus_validate_path(path, NULL) || !dbus_validate_member(member, NULL) ||
        (iface[0] && !dbus_validate_interface(iface, NULL)))
        return NULL;
    DBusMessage *m = dbus_message_new_method_call("com.victronenergy.battery.ttyUSB0", path, iface[0] ? iface : NULL,
                                                  member);
    FUZZ_ASSERT(m != NULL);
    if (!append_arg(m, in)) {
        dbus_message_unref(m);
        return NULL;
    }
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = { data, size };
    unsigned k = fuzz_byte(&in) % dbus_battery__service_count(db);
    uint8_t form = fuzz_byte(&in);
    DBusMessage *m;
    if (form & 1) {
        /* The wire format, as the daemon delivers it (libdbus validates it first). */
        m = dbus_message_demarshal((const char *)in.data, (int)(in.size > 65536 ? 65536 : in.size), NULL);
    } else {
        m = structured(&in);
    }
    if (!m)
        return 0;
    if (dbus_message_get_serial(m) == 0)
        dbus_message_set_serial(m, 7);
    /* A fresh service for every input: the same input always does the same. */
    FUZZ_ASSERT(dbus_battery__attach(db, k, fake_conn, &view));
    expected_reply_serial = dbus_message_get_serial(m);
    unsigned before = replies;
    DBusHandlerResult r = dbus_battery__handle(db, k, m);
    bool call = dbus_message_get_type(m) == DBUS_MESSAGE_TYPE_METHOD_CALL;
    if (call && dbus_message_get_path(m) && dbus_message_get_member(m)) {
        FUZZ_ASSERT(r == DBUS_HANDLER_RESULT_HANDLED);
        FUZZ_ASSERT(replies == before + 1);
    } else {
        FUZZ_ASSERT(r == DBUS_HANDLER_RESULT_NOT_YET_HANDLED && replies == before);
    }
    dbus_message_unref(m);
    return 0;
}
