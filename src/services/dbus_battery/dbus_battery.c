/* dbus_battery: the Venus OS battery service over libdbus-1, from one thread with a poll()
 * loop (see dbus_battery.h). The values come from dbus_model.c; this file is the bus: the
 * connections, their watches and timeouts, com.victronenergy.BusItem, localsettings, names. */
#define _GNU_SOURCE
#include "dbus_battery.h"
#include "dbus_battery_internal.h"

#include "app_events.h"
#include "dbus_model.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"

#include <dbus/dbus.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#define SVC_MAX (1 + BATTERY_MAX_PACKS)
#define WATCH_MAX 8
#define TIMEOUT_MAX 8
#define BUSITEM "com.victronenergy.BusItem"
#define SETTINGS_NAME "com.victronenergy.settings"
#define SETTINGS_IFACE "com.victronenergy.Settings"
#define SERVICE_PREFIX "com.victronenergy.battery."
#define SYSTEM_BUS_ADDRESS "unix:path=/var/run/dbus/system_bus_socket" /* Debian and Venus OS */
/* Not one of the ids systemcalc gives special handling (dvcc.py quirks, batterysettings.py),
 * not dbus-serialbattery's 0xBA77: the "no product id" value of Victron's own test services. */
#define PRODUCT_ID 0xFFFF
#define PRODUCT_NAME "TinyBMS"
#define CALL_TIMEOUT_MS 5000       /* AddSettings, RequestName */
#define RELEASE_TIMEOUT_MS 2000    /* ReleaseName at stop */
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000
#define NAME_RETRY_MS 5000
#define XML_MAX 8192

enum svc_state { SVC_IDLE = 0, SVC_CONNECTED, SVC_NAMING, SVC_RUNNING };

struct tmo {
    DBusTimeout *t;
    uint64_t due;                     /* gw_now_ms(); GW_CLOCK_NEVER when disabled */
};

/* One com.victronenergy.battery.* service: its own connection, paths and values. Thread only. */
struct svc {
    struct dbus_battery *db;
    int pack;                         /* -1: the bank; else an index into view.packs */
    char name[DBUS_BATTERY_NAME_MAX];
    char settings_base[96];           /* "/Settings/Devices/tinybms_ttyUSB0" */
    char setting_instance[128];
    char setting_name[128];
    int32_t fallback_instance;
    bool instance_from_settings;
    struct dbus_identity id;
    DBusConnection *conn;
    DBusWatch *watches[WATCH_MAX];
    unsigned nwatch;
    struct tmo timeouts[TIMEOUT_MAX];
    unsigned ntimeout;
    uint8_t state;                    /* enum svc_state */
    bool settings_done;
    bool settings_present;            /* com.victronenergy.settings answered */
    DBusPendingCall *settings_call;
    DBusPendingCall *name_call;
    bool model_ready;
    struct dbus_model model;
    uint64_t retry_at;                /* IDLE: next connect; CONNECTED: next name request */
    uint32_t backoff_ms;
    bool name_taken_logged;
    uint8_t fresh;                    /* enum dbus_freshness last computed */
    bool fresh_known;
};

struct dbus_battery {
    struct event_bus *bus;
    uint32_t stale_ms;
    int32_t device_instance;
    bool per_pack;
    uint8_t capacity; /* enum gw_dbus_capacity */
    uint8_t pack_count;
    char devices[BATTERY_MAX_PACKS][256];
    char names[BATTERY_MAX_PACKS][BATTERY_NAME_LEN];
    char version[32];

    pthread_mutex_t lock;             /* guards the fields down to "thread only" */
    struct battery_view pending;
    uint64_t pending_ms;
    bool pending_new;
    struct bms_version in_ver[BATTERY_MAX_PACKS];
    struct bms_statistics in_stats[BATTERY_MAX_PACKS];
    bool ident_new;
    bool wake_pending;
    bool stop;
    struct dbus_battery_stats stats;
    int wake[2];
    pthread_t thread;
    bool running;

    /* thread only */
    struct battery_view view;
    bool have_view;
    uint64_t view_ms;
    struct bms_version ver[BATTERY_MAX_PACKS];       /* by battery_id */
    struct bms_statistics st[BATTERY_MAX_PACKS];
    unsigned nsvc;
    struct svc svc[SVC_MAX];
    struct dbus_value scratch[DBUS_MAX_LEAVES];
    uint64_t t_signals, t_changed, t_calls, t_updates, t_connects, t_disconnects, t_connect_failures;
    uint64_t t_cpu_total, t_cpu_max;
    uint32_t t_stale_transitions;
};

/* ------------------------------------------------------------------ event bus side */

static void wake_thread_locked(struct dbus_battery *db)
{
    if (db->wake_pending || db->wake[1] < 0)
        return;
    db->wake_pending = true;
    char b = 1;
    if (write(db->wake[1], &b, 1) < 0 && errno != EAGAIN)
        db->wake_pending = false;
}

static void on_view(const struct gw_event *ev, void *ctx)
{
    struct dbus_battery *db = ctx;
    const struct battery_view *v = EVENT_PAYLOAD(ev, struct battery_view);
    if (!v)
        return;
    uint64_t now = gw_now_ms();
    /* The view's own step time, unless it is missing or in the future (as can_publisher). */
    uint64_t t = v->timestamp_ms && v->timestamp_ms <= now ? v->timestamp_ms : now;
    pthread_mutex_lock(&db->lock);
    if (!db->pending_new || t >= db->pending_ms) {
        memcpy(&db->pending, v, sizeof db->pending);
        db->pending_ms = t;
        db->pending_new = true;
    }
    db->stats.views++;
    wake_thread_locked(db);
    pthread_mutex_unlock(&db->lock);
}

static void on_version(const struct gw_event *ev, void *ctx)
{
    struct dbus_battery *db = ctx;
    const struct app_bms_version *in = EVENT_PAYLOAD(ev, struct app_bms_version);
    if (!in)
        return;
    struct app_bms_version v = *in;
    if (v.battery_id >= BATTERY_MAX_PACKS)
        return;
    pthread_mutex_lock(&db->lock);
    db->in_ver[v.battery_id] = v.version;
    db->ident_new = true;
    wake_thread_locked(db);
    pthread_mutex_unlock(&db->lock);
}

static void on_stats(const struct gw_event *ev, void *ctx)
{
    struct dbus_battery *db = ctx;
    const struct app_bms_stats *in = EVENT_PAYLOAD(ev, struct app_bms_stats);
    if (!in)
        return;
    struct app_bms_stats s = *in;
    if (s.battery_id >= BATTERY_MAX_PACKS)
        return;
    pthread_mutex_lock(&db->lock);
    db->in_stats[s.battery_id] = s.stats;
    db->ident_new = true;
    wake_thread_locked(db);
    pthread_mutex_unlock(&db->lock);
}

static const struct {
    int id;
    event_bus_handler_fn fn;
    const char *name;
} subscriptions[] = {
    { EVENT_BATTERY_UPDATE, on_view, "dbus_battery.view" },
    { EVENT_BMS_VERSION_UPDATE, on_version, "dbus_battery.version" },
    { EVENT_BMS_STATS_UPDATE, on_stats, "dbus_battery.stats" },
};
#define SUBSCRIPTION_COUNT (sizeof subscriptions / sizeof subscriptions[0])

/* ------------------------------------------------------------------ marshalling */

static bool append_variant(DBusMessageIter *it, const struct dbus_value *v)
{
    static const char *const sigs[] = { "ai", "d", "i", "s" };
    DBusMessageIter var;
    if (!dbus_message_iter_open_container(it, DBUS_TYPE_VARIANT, sigs[v->kind <= DBUS_V_STRING ? v->kind : 0], &var))
        return false;
    bool ok = true;
    const char *s = v->s;
    switch (v->kind) {
    case DBUS_V_DOUBLE: ok = dbus_message_iter_append_basic(&var, DBUS_TYPE_DOUBLE, &v->d); break;
    case DBUS_V_INT: ok = dbus_message_iter_append_basic(&var, DBUS_TYPE_INT32, &v->i); break;
    case DBUS_V_STRING: ok = dbus_message_iter_append_basic(&var, DBUS_TYPE_STRING, &s); break;
    default: { /* invalid: an empty array of int32, as velib */
        DBusMessageIter arr;
        ok = dbus_message_iter_open_container(&var, DBUS_TYPE_ARRAY, "i", &arr) &&
             dbus_message_iter_close_container(&var, &arr);
        break;
    }
    }
    if (!ok) {
        dbus_message_iter_abandon_container(it, &var);
        return false;
    }
    return dbus_message_iter_close_container(it, &var);
}

static bool append_string_variant(DBusMessageIter *it, const char *s)
{
    DBusMessageIter var;
    if (!dbus_message_iter_open_container(it, DBUS_TYPE_VARIANT, "s", &var))
        return false;
    if (!dbus_message_iter_append_basic(&var, DBUS_TYPE_STRING, &s)) {
        dbus_message_iter_abandon_container(it, &var);
        return false;
    }
    return dbus_message_iter_close_container(it, &var);
}

/* {key: variant(value)} or, with text, {key: variant(text)}. */
static bool append_entry(DBusMessageIter *dict, const char *key, const struct dbus_value *v, const char *text)
{
    DBusMessageIter e;
    if (!dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &e))
        return false;
    bool ok = dbus_message_iter_append_basic(&e, DBUS_TYPE_STRING, &key) &&
              (text ? append_string_variant(&e, text) : append_variant(&e, v));
    if (!ok) {
        dbus_message_iter_abandon_container(dict, &e);
        return false;
    }
    return dbus_message_iter_close_container(dict, &e);
}

/* a{sv} {Value: v, Text: v(s)} of one leaf. */
static bool append_value_text(DBusMessageIter *it, const struct svc *s, unsigned k)
{
    char text[DBUS_TEXT_MAX];
    dbus_value_text(s->model.rows[k], &s->model.values[k], text, sizeof text);
    DBusMessageIter d;
    if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &d))
        return false;
    if (!append_entry(&d, "Value", &s->model.values[k], NULL) || !append_entry(&d, "Text", NULL, text)) {
        dbus_message_iter_abandon_container(it, &d);
        return false;
    }
    return dbus_message_iter_close_container(it, &d);
}

/* a{sa{sv}} with absolute keys: every leaf (idx NULL) or the listed ones. */
static bool append_items(DBusMessageIter *it, const struct svc *s, const uint16_t *idx, size_t n)
{
    DBusMessageIter arr;
    if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sa{sv}}", &arr))
        return false;
    size_t count = idx ? n : s->model.count;
    for (size_t j = 0; j < count; j++) {
        unsigned k = idx ? idx[j] : (unsigned)j;
        const char *path = s->model.rows[k]->path;
        DBusMessageIter e;
        if (!dbus_message_iter_open_container(&arr, DBUS_TYPE_DICT_ENTRY, NULL, &e)) {
            dbus_message_iter_abandon_container(it, &arr);
            return false;
        }
        if (!dbus_message_iter_append_basic(&e, DBUS_TYPE_STRING, &path) || !append_value_text(&e, s, k)) {
            dbus_message_iter_abandon_container(&arr, &e);
            dbus_message_iter_abandon_container(it, &arr);
            return false;
        }
        if (!dbus_message_iter_close_container(&arr, &e)) {
            dbus_message_iter_abandon_container(it, &arr);
            return false;
        }
    }
    return dbus_message_iter_close_container(it, &arr);
}

/* GetValue / GetText of a node: variant of a{sv} (values) or a{ss} (texts), relative keys. */
static bool append_node_dict(DBusMessageIter *it, const struct svc *s, const char *node, bool text)
{
    DBusMessageIter var, arr;
    if (!dbus_message_iter_open_container(it, DBUS_TYPE_VARIANT, text ? "a{ss}" : "a{sv}", &var))
        return false;
    if (!dbus_message_iter_open_container(&var, DBUS_TYPE_ARRAY, text ? "{ss}" : "{sv}", &arr)) {
        dbus_message_iter_abandon_container(it, &var);
        return false;
    }
    bool ok = true;
    for (unsigned k = 0; k < s->model.count && ok; k++) {
        const char *rel;
        if (!dbus_model_below(node, s->model.rows[k]->path, &rel))
            continue;
        if (text) {
            char buf[DBUS_TEXT_MAX];
            const char *t = dbus_value_text(s->model.rows[k], &s->model.values[k], buf, sizeof buf);
            DBusMessageIter e;
            ok = dbus_message_iter_open_container(&arr, DBUS_TYPE_DICT_ENTRY, NULL, &e) &&
                 dbus_message_iter_append_basic(&e, DBUS_TYPE_STRING, &rel) &&
                 dbus_message_iter_append_basic(&e, DBUS_TYPE_STRING, &t) && dbus_message_iter_close_container(&arr, &e);
        } else {
            ok = append_entry(&arr, rel, &s->model.values[k], NULL);
        }
    }
    if (!ok) {
        dbus_message_iter_abandon_container(&var, &arr);
        dbus_message_iter_abandon_container(it, &var);
        return false;
    }
    return dbus_message_iter_close_container(&var, &arr) && dbus_message_iter_close_container(it, &var);
}

/* ------------------------------------------------------------------ signals */

static void send_msg(struct svc *s, DBusMessage *m)
{
    if (m && dbus_connection_send(s->conn, m, NULL))
        s->db->t_signals++;
    if (m)
        dbus_message_unref(m);
}

/* One ItemsChanged with the changed leaves, then a PropertiesChanged per leaf. */
static void emit(struct svc *s, const uint16_t *idx, size_t n)
{
    if (s->state != SVC_RUNNING || !s->conn || n == 0)
        return;
    DBusMessage *m = dbus_message_new_signal("/", BUSITEM, "ItemsChanged");
    DBusMessageIter it;
    if (m) {
        dbus_message_iter_init_append(m, &it);
        if (!append_items(&it, s, idx, n)) {
            dbus_message_unref(m);
            m = NULL;
        }
    }
    send_msg(s, m);
    for (size_t j = 0; j < n; j++) {
        m = dbus_message_new_signal(s->model.rows[idx[j]]->path, BUSITEM, "PropertiesChanged");
        if (!m)
            continue;
        dbus_message_iter_init_append(m, &it);
        if (!append_value_text(&it, s, idx[j])) {
            dbus_message_unref(m);
            continue;
        }
        send_msg(s, m);
    }
}

/* ------------------------------------------------------------------ values */

static const struct bms_version *svc_version(const struct dbus_battery *db, const struct svc *s)
{
    if (!db->have_view || db->view.pack_count == 0)
        return NULL;
    int k = s->pack >= 0 ? s->pack : 0;
    uint8_t id = db->view.packs[k].id;
    return id < BATTERY_MAX_PACKS && db->ver[id].valid ? &db->ver[id] : NULL;
}

static const struct bms_statistics *svc_stats(const struct dbus_battery *db, const struct svc *s)
{
    if (!db->have_view || db->view.pack_count == 0 || (s->pack < 0 && db->view.pack_count != 1))
        return NULL;
    int k = s->pack >= 0 ? s->pack : 0;
    uint8_t id = db->view.packs[k].id;
    return id < BATTERY_MAX_PACKS && db->st[id].valid ? &db->st[id] : NULL;
}

static enum dbus_freshness svc_freshness(const struct dbus_battery *db, const struct svc *s, uint64_t now)
{
    uint64_t age = db->have_view && now > db->view_ms ? now - db->view_ms : 0;
    return dbus_model_freshness(db->have_view ? &db->view : NULL, age, db->stale_ms, s->pack);
}

/* Recomputes every value of a service and publishes what changed. */
static void svc_refresh(struct svc *s, uint64_t now)
{
    struct dbus_battery *db = s->db;
    if (!s->model_ready)
        return;
    enum dbus_freshness f = svc_freshness(db, s, now);
    if (!s->fresh_known || f != s->fresh) {
        if (s->pack < 0) {
            if (f == DBUS_FRESH)
                GW_LOGI(MOD, "%s: battery data fresh: values and limits published, /Connected 1", s->name);
            else if (s->fresh_known && s->fresh == DBUS_FRESH) {
                GW_LOGW(MOD, "%s: %s: limits and measurements invalid, /Connected 0 (the GX stops using it as "
                             "BMS)", s->name, dbus_freshness_text(f));
                db->t_stale_transitions++;
            }
        } else {
            GW_LOGD(MOD, "%s: %s", s->name, dbus_freshness_text(f));
        }
        s->fresh = (uint8_t)f;
        s->fresh_known = true;
    }
    struct dbus_src src = { .view = db->have_view ? &db->view : NULL, .pack = s->pack, .online = f == DBUS_FRESH,
                            .version = svc_version(db, s), .stats = svc_stats(db, s), .id = &s->id,
                            .capacity = db->capacity };
    dbus_model_compute(&s->model, &src, db->scratch);
    uint16_t changed[DBUS_MAX_LEAVES];
    size_t n = dbus_model_update(&s->model, db->scratch, changed, DBUS_MAX_LEAVES);
    db->t_changed += n;
    emit(s, changed, n);
}

/* The paths of a service, once its first data says how many cells it has. */
static void svc_build_model(struct svc *s)
{
    struct dbus_battery *db = s->db;
    if (s->model_ready || !db->have_view || db->view.pack_count == 0)
        return;
    const struct battery_view *v = &db->view;
    struct dbus_model_config mc = { .bms = s->pack < 0, .one_pack = s->pack >= 0 || v->pack_count == 1,
                                    .capacity = db->capacity };
    if (mc.one_pack) {
        const struct battery_pack *p = &v->packs[s->pack >= 0 ? s->pack : 0];
        if (!p->live.valid)
            return; /* wait for the cell count */
        mc.cell_count = p->live.cell_count <= BMS_MAX_CELLS ? p->live.cell_count : BMS_MAX_CELLS;
    } else {
        bool any = false;
        for (unsigned k = 0; k < v->pack_count && k < BATTERY_MAX_PACKS; k++)
            any = any || v->packs[k].live.valid;
        if (!any)
            return;
    }
    int rc = dbus_model_init(&s->model, &mc);
    if (rc) {
        GW_LOGE(MOD, "%s: path table does not fit: %s", s->name, gw_strerror(rc));
        return;
    }
    s->model_ready = true;
}

/* ------------------------------------------------------------------ methods */

static void reply_int(DBusConnection *c, DBusMessage *m, int32_t v)
{
    DBusMessage *r = dbus_message_new_method_return(m);
    if (r && dbus_message_append_args(r, DBUS_TYPE_INT32, &v, DBUS_TYPE_INVALID))
        dbus_connection_send(c, r, NULL);
    if (r)
        dbus_message_unref(r);
}

static void reply_error(DBusConnection *c, DBusMessage *m, const char *name, const char *text)
{
    DBusMessage *r = dbus_message_new_error(m, name, text);
    if (r) {
        dbus_connection_send(c, r, NULL);
        dbus_message_unref(r);
    }
}

struct xml_ctx {
    struct gw_text *t;
};

static void xml_child(const char *name, void *ctx)
{
    struct xml_ctx *x = ctx;
    gw_text_put_str(x->t, "  <node name=\"");
    gw_text_put_str(x->t, name);
    gw_text_put_str(x->t, "\"/>\n");
}

static void introspect(struct svc *s, DBusMessage *m, const char *path, int leaf, int node)
{
    char *xml = malloc(XML_MAX);
    if (!xml)
        return;
    struct gw_text t;
    gw_text_init(&t, xml, XML_MAX);
    gw_text_put_str(&t, DBUS_INTROSPECT_1_0_XML_DOCTYPE_DECL_NODE "<node name=\"");
    gw_text_put_str(&t, path);
    gw_text_put_str(&t, "\">\n"
                        "  <interface name=\"org.freedesktop.DBus.Introspectable\">\n"
                        "    <method name=\"Introspect\"><arg direction=\"out\" type=\"s\"/></method>\n"
                        "  </interface>\n"
                        "  <interface name=\"" BUSITEM "\">\n");
    if (leaf >= 0) {
        gw_text_put_str(&t, "    <method name=\"GetValue\"><arg direction=\"out\" type=\"v\"/></method>\n"
                            "    <method name=\"GetText\"><arg direction=\"out\" type=\"s\"/></method>\n"
                            "    <method name=\"SetValue\"><arg direction=\"in\" type=\"v\" name=\"value\"/>"
                            "<arg direction=\"out\" type=\"i\"/></method>\n"
                            "    <method name=\"GetDescription\"><arg direction=\"in\" type=\"s\" name=\"language\"/>"
                            "<arg direction=\"in\" type=\"i\" name=\"length\"/><arg direction=\"out\" type=\"s\"/>"
                            "</method>\n"
                            "    <signal name=\"PropertiesChanged\"><arg type=\"a{sv}\" name=\"changes\"/></signal>\n");
    } else {
        gw_text_put_str(&t, "    <method name=\"GetValue\"><arg direction=\"out\" type=\"v\"/></method>\n"
                            "    <method name=\"GetText\"><arg direction=\"out\" type=\"v\"/></method>\n");
        if (node == 0)
            gw_text_put_str(&t, "    <method name=\"GetItems\"><arg direction=\"out\" type=\"a{sa{sv}}\"/></method>\n"
                                "    <signal name=\"ItemsChanged\"><arg type=\"a{sa{sv}}\" name=\"changes\"/>"
                                "</signal>\n");
    }
    gw_text_put_str(&t, "  </interface>\n");
    if (node >= 0) {
        struct xml_ctx x = { &t };
        dbus_model_children(&s->model, path, xml_child, &x);
    }
    gw_text_put_str(&t, "</node>\n");
    if (gw_text_status(&t) == GW_OK) {
        const char *p = xml;
        DBusMessage *r = dbus_message_new_method_return(m);
        if (r && dbus_message_append_args(r, DBUS_TYPE_STRING, &p, DBUS_TYPE_INVALID))
            dbus_connection_send(s->conn, r, NULL);
        if (r)
            dbus_message_unref(r);
    } else {
        reply_error(s->conn, m, DBUS_ERROR_FAILED, "introspection data too large");
    }
    free(xml);
}

static void forward_custom_name(struct svc *s)
{
    if (!s->settings_present || !s->conn)
        return;
    DBusMessage *m = dbus_message_new_method_call(SETTINGS_NAME, s->setting_name, BUSITEM, "SetValue");
    if (!m)
        return;
    dbus_message_set_no_reply(m, TRUE);
    dbus_message_set_auto_start(m, FALSE);
    DBusMessageIter it;
    dbus_message_iter_init_append(m, &it);
    if (append_string_variant(&it, s->id.custom_name))
        dbus_connection_send(s->conn, m, NULL);
    dbus_message_unref(m);
}

/* SetValue(v) -> i: 0 accepted (or unchanged), 1 not writeable / wrong type, 2 rejected. */
static void set_value(struct svc *s, DBusMessage *m, int leaf)
{
    DBusMessageIter it, var;
    if (!dbus_message_iter_init(m, &it) || dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_VARIANT) {
        reply_error(s->conn, m, DBUS_ERROR_INVALID_ARGS, "SetValue takes one variant");
        return;
    }
    const struct dbus_row *row = s->model.rows[leaf];
    if (!(row->flags & DBUS_F_WRITEABLE)) {
        reply_int(s->conn, m, 1);
        return;
    }
    dbus_message_iter_recurse(&it, &var);
    if (dbus_message_iter_get_arg_type(&var) != DBUS_TYPE_STRING) {
        reply_int(s->conn, m, 1);
        return;
    }
    const char *text = NULL;
    dbus_message_iter_get_basic(&var, &text);
    if (!text || strlen(text) >= sizeof s->id.custom_name) {
        reply_int(s->conn, m, 2);
        return;
    }
    if (strcmp(text, s->id.custom_name) != 0) {
        gw_text_copy(s->id.custom_name, sizeof s->id.custom_name, text);
        forward_custom_name(s);
        svc_refresh(s, gw_now_ms());
    }
    reply_int(s->conn, m, 0);
}

static DBusHandlerResult on_message(DBusConnection *c, DBusMessage *m, void *data)
{
    struct svc *s = data;
    (void)c;
    if (dbus_message_get_type(m) != DBUS_MESSAGE_TYPE_METHOD_CALL)
        return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
    s->db->t_calls++;
    const char *path = dbus_message_get_path(m);
    const char *iface = dbus_message_get_interface(m);
    const char *member = dbus_message_get_member(m);
    if (!path || !member)
        return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
    int leaf = s->model_ready ? dbus_model_find(&s->model, path) : -1;
    int node = s->model_ready && leaf < 0 ? dbus_model_find_node(&s->model, path) : -1;
    if (leaf < 0 && node < 0) {
        reply_error(s->conn, m, DBUS_ERROR_UNKNOWN_OBJECT, "no such path");
        return DBUS_HANDLER_RESULT_HANDLED;
    }
    if (iface && strcmp(iface, DBUS_INTERFACE_INTROSPECTABLE) == 0) {
        if (strcmp(member, "Introspect") == 0)
            introspect(s, m, path, leaf, node);
        else
            reply_error(s->conn, m, DBUS_ERROR_UNKNOWN_METHOD, "no such method");
        return DBUS_HANDLER_RESULT_HANDLED;
    }
    if (iface && strcmp(iface, BUSITEM) != 0) {
        reply_error(s->conn, m, DBUS_ERROR_UNKNOWN_METHOD, "no such interface");
        return DBUS_HANDLER_RESULT_HANDLED;
    }
    DBusMessage *r = NULL;
    DBusMessageIter it;
    bool ok = false;
    if (leaf >= 0 && strcmp(member, "SetValue") == 0) {
        set_value(s, m, leaf);
        return DBUS_HANDLER_RESULT_HANDLED;
    }
    if (strcmp(member, "GetValue") == 0 || strcmp(member, "GetText") == 0) {
        bool text = member[3] == 'T';
        r = dbus_message_new_method_return(m);
        if (r) {
            dbus_message_iter_init_append(r, &it);
            if (node >= 0) {
                ok = append_node_dict(&it, s, path, text);
            } else if (text) {
                char buf[DBUS_TEXT_MAX];
                const char *t = dbus_value_text(s->model.rows[leaf], &s->model.values[leaf], buf, sizeof buf);
                ok = dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &t);
            } else {
                ok = append_variant(&it, &s->model.values[leaf]);
            }
        }
    } else if (node == 0 && strcmp(member, "GetItems") == 0) {
        r = dbus_message_new_method_return(m);
        if (r) {
            dbus_message_iter_init_append(r, &it);
            ok = append_items(&it, s, NULL, 0);
        }
    } else if (leaf >= 0 && strcmp(member, "GetDescription") == 0) {
        r = dbus_message_new_method_return(m);
        const char *d = s->model.rows[leaf]->description ? s->model.rows[leaf]->description : "No description given";
        ok = r && dbus_message_append_args(r, DBUS_TYPE_STRING, &d, DBUS_TYPE_INVALID);
    } else {
        reply_error(s->conn, m, DBUS_ERROR_UNKNOWN_METHOD, "no such method on this path");
        return DBUS_HANDLER_RESULT_HANDLED;
    }
    if (ok)
        dbus_connection_send(s->conn, r, NULL);
    else
        reply_error(s->conn, m, DBUS_ERROR_NO_MEMORY, "reply not built");
    if (r)
        dbus_message_unref(r);
    return DBUS_HANDLER_RESULT_HANDLED;
}

static const DBusObjectPathVTable vtable = { .message_function = on_message };

/* ------------------------------------------------------------------ localsettings */

/* Reads {"Value": variant string} of a PropertiesChanged, or the "value" of an AddSettings
 * answer; false when absent or not a string. */
static bool read_string_variant(DBusMessageIter *var, char *out, size_t cap)
{
    if (dbus_message_iter_get_arg_type(var) != DBUS_TYPE_VARIANT)
        return false;
    DBusMessageIter in;
    dbus_message_iter_recurse(var, &in);
    if (dbus_message_iter_get_arg_type(&in) != DBUS_TYPE_STRING)
        return false;
    const char *s = NULL;
    dbus_message_iter_get_basic(&in, &s);
    return s && gw_text_copy(out, cap, s) == GW_OK;
}

static void apply_setting(struct svc *s, const char *path, const char *value)
{
    if (strcmp(path, s->setting_instance) == 0) {
        int32_t inst;
        if (dbus_parse_class_instance(value, &inst) == GW_OK) {
            if (inst != s->id.device_instance)
                GW_LOGI(MOD, "%s: DeviceInstance %d (com.victronenergy.settings %s)", s->name, (int)inst, value);
            s->id.device_instance = inst;
            s->instance_from_settings = true;
        } else {
            GW_LOGW(MOD, "%s: settings gave ClassAndVrmInstance '%s': kept DeviceInstance %d", s->name, value,
                    (int)s->id.device_instance);
        }
    } else if (strcmp(path, s->setting_name) == 0) {
        gw_text_copy(s->id.custom_name, sizeof s->id.custom_name, value);
    }
}

static void settings_reply(DBusPendingCall *pc, void *data)
{
    struct svc *s = data;
    DBusMessage *r = dbus_pending_call_steal_reply(pc);
    dbus_pending_call_unref(pc);
    s->settings_call = NULL;
    s->settings_done = true;
    if (!r)
        return;
    if (dbus_message_get_type(r) == DBUS_MESSAGE_TYPE_ERROR) {
        const char *e = dbus_message_get_error_name(r);
        if (e && (strcmp(e, DBUS_ERROR_SERVICE_UNKNOWN) == 0 || strcmp(e, DBUS_ERROR_NAME_HAS_NO_OWNER) == 0))
            GW_LOGI(MOD, "%s: no com.victronenergy.settings on this bus: DeviceInstance %d from the configuration",
                    s->name, (int)s->id.device_instance);
        else
            GW_LOGW(MOD, "%s: AddSettings failed (%s): DeviceInstance %d from the configuration", s->name,
                    e ? e : "?", (int)s->id.device_instance);
        dbus_message_unref(r);
        return;
    }
    s->settings_present = true;
    /* aa{sv}: per setting {"error": i, "path": s, "value": v}. */
    DBusMessageIter it, arr;
    if (!dbus_message_iter_init(r, &it) || dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY) {
        GW_LOGW(MOD, "%s: AddSettings answer of type '%s' ignored", s->name, dbus_message_get_signature(r));
        dbus_message_unref(r);
        return;
    }
    dbus_message_iter_recurse(&it, &arr);
    while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_ARRAY) {
        DBusMessageIter d;
        dbus_message_iter_recurse(&arr, &d);
        int32_t error = -1;
        char path[128] = "", value[DBUS_STR_MAX] = "";
        bool have_value = false;
        while (dbus_message_iter_get_arg_type(&d) == DBUS_TYPE_DICT_ENTRY) {
            DBusMessageIter e;
            dbus_message_iter_recurse(&d, &e);
            const char *key = NULL;
            if (dbus_message_iter_get_arg_type(&e) == DBUS_TYPE_STRING) {
                dbus_message_iter_get_basic(&e, &key);
                dbus_message_iter_next(&e);
                if (strcmp(key, "error") == 0 && dbus_message_iter_get_arg_type(&e) == DBUS_TYPE_VARIANT) {
                    DBusMessageIter in;
                    dbus_message_iter_recurse(&e, &in);
                    if (dbus_message_iter_get_arg_type(&in) == DBUS_TYPE_INT32)
                        dbus_message_iter_get_basic(&in, &error);
                } else if (strcmp(key, "path") == 0) {
                    read_string_variant(&e, path, sizeof path);
                } else if (strcmp(key, "value") == 0) {
                    have_value = read_string_variant(&e, value, sizeof value);
                }
            }
            dbus_message_iter_next(&d);
        }
        if (error == 0 && have_value)
            apply_setting(s, path, value);
        else
            GW_LOGW(MOD, "%s: setting %s not added (error %d)", s->name, path[0] ? path : "?", (int)error);
        dbus_message_iter_next(&arr);
    }
    if (!s->instance_from_settings)
        GW_LOGW(MOD, "%s: no ClassAndVrmInstance from settings: DeviceInstance %d from the configuration", s->name,
                (int)s->id.device_instance);
    dbus_message_unref(r);
    svc_refresh(s, gw_now_ms());
}

static bool add_setting_entry(DBusMessageIter *arr, const char *path, const char *def)
{
    DBusMessageIter d;
    struct dbus_value v;
    if (!dbus_message_iter_open_container(arr, DBUS_TYPE_ARRAY, "{sv}", &d))
        return false;
    dbus_value_set_str(&v, path);
    bool ok = append_entry(&d, "path", &v, NULL);
    dbus_value_set_str(&v, def);
    ok = ok && append_entry(&d, "default", &v, NULL);
    if (!ok) {
        dbus_message_iter_abandon_container(arr, &d);
        return false;
    }
    return dbus_message_iter_close_container(arr, &d);
}

/* AddSettings of our two settings (never overwrites an existing value): localsettings
 * allocates the next free battery instance and keeps the user's name. */
static void request_settings(struct svc *s)
{
    char rule[256];
    struct gw_text t;
    gw_text_init(&t, rule, sizeof rule);
    gw_text_put_str(&t, "type='signal',sender='" SETTINGS_NAME "',interface='" BUSITEM
                        "',member='PropertiesChanged',path_namespace='");
    gw_text_put_str(&t, s->settings_base);
    gw_text_put_str(&t, "'");
    dbus_bus_add_match(s->conn, rule, NULL); /* asynchronous: errors are not reported */

    char def[32];
    gw_text_init(&t, def, sizeof def);
    gw_text_put_str(&t, "battery:");
    gw_text_put_int(&t, s->fallback_instance);
    DBusMessage *m = dbus_message_new_method_call(SETTINGS_NAME, "/", SETTINGS_IFACE, "AddSettings");
    if (!m) {
        s->settings_done = true;
        return;
    }
    dbus_message_set_auto_start(m, FALSE);
    DBusMessageIter it, arr;
    dbus_message_iter_init_append(m, &it);
    bool ok = dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr);
    if (ok) {
        ok = add_setting_entry(&arr, s->setting_instance, def) &&
             add_setting_entry(&arr, s->setting_name, s->id.custom_name);
        if (ok)
            ok = dbus_message_iter_close_container(&it, &arr);
        else
            dbus_message_iter_abandon_container(&it, &arr);
    }
    DBusPendingCall *pc = NULL;
    if (ok && dbus_connection_send_with_reply(s->conn, m, &pc, CALL_TIMEOUT_MS) && pc &&
        dbus_pending_call_set_notify(pc, settings_reply, s, NULL)) {
        s->settings_call = pc;
    } else {
        if (pc)
            dbus_pending_call_unref(pc);
        s->settings_done = true;
    }
    dbus_message_unref(m);
}

/* A change of one of our settings (the GUI changed the instance or the name). */
static DBusHandlerResult on_filter(DBusConnection *c, DBusMessage *m, void *data)
{
    struct svc *s = data;
    (void)c;
    if (!dbus_message_is_signal(m, BUSITEM, "PropertiesChanged"))
        return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
    const char *path = dbus_message_get_path(m);
    if (!path || (strcmp(path, s->setting_instance) != 0 && strcmp(path, s->setting_name) != 0))
        return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
    DBusMessageIter it, d;
    if (!dbus_message_iter_init(m, &it) || dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY)
        return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
    dbus_message_iter_recurse(&it, &d);
    while (dbus_message_iter_get_arg_type(&d) == DBUS_TYPE_DICT_ENTRY) {
        DBusMessageIter e;
        dbus_message_iter_recurse(&d, &e);
        const char *key = NULL;
        char value[DBUS_STR_MAX];
        if (dbus_message_iter_get_arg_type(&e) == DBUS_TYPE_STRING) {
            dbus_message_iter_get_basic(&e, &key);
            dbus_message_iter_next(&e);
            if (strcmp(key, "Value") == 0 && read_string_variant(&e, value, sizeof value)) {
                apply_setting(s, path, value);
                svc_refresh(s, gw_now_ms());
            }
        }
        dbus_message_iter_next(&d);
    }
    return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
}

/* ------------------------------------------------------------------ the bus name */

static void name_reply(DBusPendingCall *pc, void *data)
{
    struct svc *s = data;
    DBusMessage *r = dbus_pending_call_steal_reply(pc);
    dbus_pending_call_unref(pc);
    s->name_call = NULL;
    uint32_t code = 0;
    DBusError err;
    dbus_error_init(&err);
    if (r && dbus_message_get_type(r) != DBUS_MESSAGE_TYPE_ERROR &&
        dbus_message_get_args(r, &err, DBUS_TYPE_UINT32, &code, DBUS_TYPE_INVALID) &&
        (code == DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER || code == DBUS_REQUEST_NAME_REPLY_ALREADY_OWNER)) {
        s->state = SVC_RUNNING;
        s->name_taken_logged = false;
        GW_LOGI(MOD, "on D-Bus as %s (DeviceInstance %d from %s, %u paths)", s->name, (int)s->id.device_instance,
                s->instance_from_settings ? "com.victronenergy.settings" : "the configuration",
                (unsigned)s->model.count);
    } else {
        const char *why = !r ? "no answer"
                          : dbus_message_get_type(r) == DBUS_MESSAGE_TYPE_ERROR ? dbus_message_get_error_name(r)
                          : code == DBUS_REQUEST_NAME_REPLY_EXISTS ? "owned by another process"
                                                                   : "refused";
        if (!s->name_taken_logged)
            GW_LOGE(MOD, "cannot own %s: %s (another driver for this battery?); retrying every %u s", s->name, why,
                    NAME_RETRY_MS / 1000);
        s->name_taken_logged = true;
        s->state = SVC_CONNECTED;
        s->retry_at = gw_now_ms() + NAME_RETRY_MS;
    }
    dbus_error_free(&err);
    if (r)
        dbus_message_unref(r);
}

static void request_name(struct svc *s)
{
    const char *name = s->name;
    uint32_t flags = DBUS_NAME_FLAG_DO_NOT_QUEUE;
    DBusMessage *m = dbus_message_new_method_call(DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS, "RequestName");
    DBusPendingCall *pc = NULL;
    if (m && dbus_message_append_args(m, DBUS_TYPE_STRING, &name, DBUS_TYPE_UINT32, &flags, DBUS_TYPE_INVALID) &&
        dbus_connection_send_with_reply(s->conn, m, &pc, CALL_TIMEOUT_MS) && pc &&
        dbus_pending_call_set_notify(pc, name_reply, s, NULL)) {
        s->name_call = pc;
        s->state = SVC_NAMING;
    } else {
        if (pc)
            dbus_pending_call_unref(pc);
        s->retry_at = gw_now_ms() + NAME_RETRY_MS;
    }
    if (m)
        dbus_message_unref(m);
}

/* ------------------------------------------------------------------ connections */

static dbus_bool_t add_watch(DBusWatch *w, void *data)
{
    struct svc *s = data;
    if (s->nwatch >= WATCH_MAX)
        return FALSE;
    s->watches[s->nwatch++] = w;
    return TRUE;
}

static void remove_watch(DBusWatch *w, void *data)
{
    struct svc *s = data;
    for (unsigned k = 0; k < s->nwatch; k++) {
        if (s->watches[k] == w) {
            s->watches[k] = s->watches[--s->nwatch];
            return;
        }
    }
}

static void toggle_watch(DBusWatch *w, void *data)
{
    (void)w; /* read with dbus_watch_get_enabled when the poll set is built */
    (void)data;
}

static uint64_t timeout_due(DBusTimeout *t)
{
    return dbus_timeout_get_enabled(t) ? gw_now_ms() + (uint64_t)dbus_timeout_get_interval(t) : GW_CLOCK_NEVER;
}

static dbus_bool_t add_timeout(DBusTimeout *t, void *data)
{
    struct svc *s = data;
    if (s->ntimeout >= TIMEOUT_MAX)
        return FALSE;
    s->timeouts[s->ntimeout].t = t;
    s->timeouts[s->ntimeout].due = timeout_due(t);
    s->ntimeout++;
    return TRUE;
}

static void remove_timeout(DBusTimeout *t, void *data)
{
    struct svc *s = data;
    for (unsigned k = 0; k < s->ntimeout; k++) {
        if (s->timeouts[k].t == t) {
            s->timeouts[k] = s->timeouts[--s->ntimeout];
            return;
        }
    }
}

static void toggle_timeout(DBusTimeout *t, void *data)
{
    struct svc *s = data;
    for (unsigned k = 0; k < s->ntimeout; k++)
        if (s->timeouts[k].t == t)
            s->timeouts[k].due = timeout_due(t);
}

static void svc_close(struct svc *s)
{
    if (s->settings_call) {
        dbus_pending_call_cancel(s->settings_call);
        dbus_pending_call_unref(s->settings_call);
        s->settings_call = NULL;
    }
    if (s->name_call) {
        dbus_pending_call_cancel(s->name_call);
        dbus_pending_call_unref(s->name_call);
        s->name_call = NULL;
    }
    if (s->conn) {
        dbus_connection_close(s->conn);
        dbus_connection_unref(s->conn);
        s->conn = NULL;
    }
    s->nwatch = 0;
    s->ntimeout = 0;
    s->state = SVC_IDLE;
}

/* The session bus when DBUS_SESSION_BUS_ADDRESS is set (velib's rule), else the system bus. Read
 * at every connection (libdbus's own bus lookup keeps the first address it saw). */
static const char *bus_address(bool *session)
{
    const char *a = getenv("DBUS_SESSION_BUS_ADDRESS");
    *session = a && *a;
    if (*session)
        return a;
    a = getenv("DBUS_SYSTEM_BUS_ADDRESS");
    return a && *a ? a : SYSTEM_BUS_ADDRESS;
}

static void svc_connect(struct svc *s, uint64_t now)
{
    bool session;
    const char *address = bus_address(&session);
    DBusError err;
    dbus_error_init(&err);
    DBusConnection *c = dbus_connection_open_private(address, &err);
    if (c && !dbus_bus_register(c, &err)) {
        dbus_connection_close(c);
        dbus_connection_unref(c);
        c = NULL;
    }
    if (!c) {
        static struct gw_log_limit limit;
        gw_log_ratelimited(&limit, 60000, GW_LOG_WARN, MOD, "%s: no %s bus (%s): retrying in %u s", s->name,
                           session ? "session" : "system", err.message ? err.message : "?",
                           (unsigned)(s->backoff_ms / 1000));
        dbus_error_free(&err);
        s->db->t_connect_failures++;
        s->retry_at = now + s->backoff_ms;
        s->backoff_ms = s->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : s->backoff_ms * 2;
        return;
    }
    s->conn = c;
    s->nwatch = s->ntimeout = 0;
    dbus_connection_set_exit_on_disconnect(c, FALSE);
    if (!dbus_connection_set_watch_functions(c, add_watch, remove_watch, toggle_watch, s, NULL) ||
        !dbus_connection_set_timeout_functions(c, add_timeout, remove_timeout, toggle_timeout, s, NULL) ||
        !dbus_connection_register_fallback(c, "/", &vtable, s) ||
        !dbus_connection_add_filter(c, on_filter, s, NULL)) {
        GW_LOGE(MOD, "%s: cannot set up the connection (out of memory)", s->name);
        svc_close(s);
        s->retry_at = now + s->backoff_ms;
        return;
    }
    s->db->t_connects++;
    s->state = SVC_CONNECTED;
    s->backoff_ms = RETRY_MIN_MS;
    s->retry_at = 0;
    s->settings_done = false;
    s->settings_present = false;
    GW_LOGD(MOD, "%s: connected to the %s bus as %s", s->name, session ? "session" : "system",
            dbus_bus_get_unique_name(c));
    request_settings(s);
}

/* Moves a service along: connect, claim the name once its paths and values exist. */
static void svc_step(struct svc *s, uint64_t now)
{
    if (s->state == SVC_IDLE && now >= s->retry_at)
        svc_connect(s, now);
    if (s->state == SVC_CONNECTED && s->settings_done && now >= s->retry_at) {
        svc_build_model(s);
        if (s->model_ready) {
            svc_refresh(s, now); /* the values exist before the name (nothing is sent yet) */
            request_name(s);
        }
    }
}

/* Every value invalid, flushed, then the name released: importers never keep our last values. */
static void svc_leave(struct svc *s)
{
    if (!s->conn)
        return;
    if (s->state == SVC_RUNNING && s->model_ready) {
        struct dbus_value *none = s->db->scratch;
        memset(none, 0, sizeof s->db->scratch);
        uint16_t changed[DBUS_MAX_LEAVES];
        size_t n = dbus_model_update(&s->model, none, changed, DBUS_MAX_LEAVES);
        emit(s, changed, n);
        dbus_connection_flush(s->conn);
        const char *name = s->name;
        DBusMessage *m =
            dbus_message_new_method_call(DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS, "ReleaseName");
        if (m && dbus_message_append_args(m, DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID)) {
            DBusError err;
            dbus_error_init(&err);
            DBusMessage *r = dbus_connection_send_with_reply_and_block(s->conn, m, RELEASE_TIMEOUT_MS, &err);
            if (r)
                dbus_message_unref(r);
            dbus_error_free(&err);
        }
        if (m)
            dbus_message_unref(m);
        GW_LOGI(MOD, "%s: values invalidated, name released", s->name);
    }
    svc_close(s);
}

/* ------------------------------------------------------------------ the thread */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Takes what the bus handlers left; true when something new arrived. */
static bool take_inputs(struct dbus_battery *db, bool *stop)
{
    bool fresh = false;
    pthread_mutex_lock(&db->lock);
    if (db->pending_new) {
        memcpy(&db->view, &db->pending, sizeof db->view);
        db->view_ms = db->pending_ms;
        db->have_view = true;
        db->pending_new = false;
        fresh = true;
    }
    if (db->ident_new) {
        memcpy(db->ver, db->in_ver, sizeof db->ver);
        memcpy(db->st, db->in_stats, sizeof db->st);
        db->ident_new = false;
        fresh = true;
    }
    *stop = db->stop;
    db->wake_pending = false;
    pthread_mutex_unlock(&db->lock);
    char buf[64];
    while (read(db->wake[0], buf, sizeof buf) > 0) {
    }
    return fresh;
}

static void publish_stats(struct dbus_battery *db)
{
    pthread_mutex_lock(&db->lock);
    struct dbus_battery_stats *st = &db->stats;
    st->services = db->nsvc;
    st->services_on_bus = 0;
    for (unsigned k = 0; k < db->nsvc; k++)
        st->services_on_bus += db->svc[k].state == SVC_RUNNING;
    const struct svc *bank = &db->svc[0];
    st->online = bank->fresh_known && bank->fresh == DBUS_FRESH;
    st->stale_transitions = db->t_stale_transitions;
    st->device_instance = bank->id.device_instance;
    st->instance_from_settings = bank->instance_from_settings;
    gw_text_copy(st->name, sizeof st->name, bank->name);
    st->updates = db->t_updates;
    st->values_changed = db->t_changed;
    st->signals = db->t_signals;
    st->method_calls = db->t_calls;
    st->connects = db->t_connects;
    st->disconnects = db->t_disconnects;
    st->connect_failures = db->t_connect_failures;
    st->update_cpu_ns_total = db->t_cpu_total;
    st->update_cpu_ns_max = db->t_cpu_max;
    pthread_mutex_unlock(&db->lock);
}

/* The next moment something has to happen without bus traffic or a new view. */
static uint64_t next_deadline(const struct dbus_battery *db)
{
    uint64_t d = GW_CLOCK_NEVER;
    bool any_fresh = false;
    for (unsigned k = 0; k < db->nsvc; k++) {
        const struct svc *s = &db->svc[k];
        if ((s->state == SVC_IDLE || (s->state == SVC_CONNECTED && s->retry_at)) && s->retry_at < d)
            d = s->retry_at;
        for (unsigned j = 0; j < s->ntimeout; j++)
            if (s->timeouts[j].due < d && dbus_timeout_get_enabled(s->timeouts[j].t))
                d = s->timeouts[j].due;
        any_fresh = any_fresh || (s->fresh_known && s->fresh == DBUS_FRESH);
    }
    /* The staleness deadline: only while something is fresh (a stale view wakes nobody). */
    if (any_fresh && db->have_view) {
        uint64_t stale_at = db->view_ms + db->stale_ms + 1;
        if (stale_at < d)
            d = stale_at;
    }
    return d;
}

static void handle_timeouts(struct svc *s, uint64_t now)
{
    for (unsigned guard = 0; guard < TIMEOUT_MAX * 2; guard++) {
        DBusTimeout *due = NULL;
        for (unsigned j = 0; j < s->ntimeout && !due; j++) {
            if (s->timeouts[j].due <= now && dbus_timeout_get_enabled(s->timeouts[j].t)) {
                due = s->timeouts[j].t;
                s->timeouts[j].due = now + (uint64_t)dbus_timeout_get_interval(due);
            }
        }
        if (!due)
            return;
        dbus_timeout_handle(due);
    }
}

static bool has_watch(const struct svc *s, const DBusWatch *w)
{
    for (unsigned k = 0; k < s->nwatch; k++)
        if (s->watches[k] == w)
            return true;
    return false;
}

static void *dbus_thread(void *arg)
{
    struct dbus_battery *db = arg;
    pthread_setname_np(pthread_self(), "dbus");
    struct pollfd fds[1 + SVC_MAX * WATCH_MAX];
    struct {
        struct svc *s;
        DBusWatch *w;
    } map[1 + SVC_MAX * WATCH_MAX];
    for (;;) {
        bool stop;
        bool fresh = take_inputs(db, &stop);
        if (stop)
            break;
        uint64_t now = gw_now_ms();
        uint64_t cpu0 = thread_cpu_ns();
        for (unsigned k = 0; k < db->nsvc; k++)
            svc_step(&db->svc[k], now);
        /* A new view, or the staleness deadline passed: recompute and publish what changed. */
        bool due = false;
        for (unsigned k = 0; k < db->nsvc && !due; k++) {
            const struct svc *s = &db->svc[k];
            due = s->model_ready && s->fresh_known && (enum dbus_freshness)s->fresh != svc_freshness(db, s, now);
        }
        if (fresh || due) {
            for (unsigned k = 0; k < db->nsvc; k++)
                svc_refresh(&db->svc[k], now);
            uint64_t cpu = thread_cpu_ns() - cpu0;
            db->t_updates++;
            db->t_cpu_total += cpu;
            if (cpu > db->t_cpu_max)
                db->t_cpu_max = cpu;
            for (unsigned k = 0; k < db->nsvc; k++)
                svc_step(&db->svc[k], now); /* a model built by this view claims its name */
        }
        publish_stats(db);

        nfds_t nf = 0;
        fds[nf].fd = db->wake[0];
        fds[nf].events = POLLIN;
        fds[nf].revents = 0;
        nf++;
        bool pending_dispatch = false;
        for (unsigned k = 0; k < db->nsvc; k++) {
            struct svc *s = &db->svc[k];
            if (!s->conn)
                continue;
            if (dbus_connection_get_dispatch_status(s->conn) == DBUS_DISPATCH_DATA_REMAINS)
                pending_dispatch = true;
            for (unsigned j = 0; j < s->nwatch; j++) {
                DBusWatch *w = s->watches[j];
                if (!dbus_watch_get_enabled(w))
                    continue;
                unsigned flags = dbus_watch_get_flags(w);
                fds[nf].fd = dbus_watch_get_unix_fd(w);
                fds[nf].events = (short)(((flags & DBUS_WATCH_READABLE) ? POLLIN : 0) |
                                         ((flags & DBUS_WATCH_WRITABLE) ? POLLOUT : 0));
                fds[nf].revents = 0;
                map[nf].s = s;
                map[nf].w = w;
                nf++;
            }
        }
        uint64_t deadline = next_deadline(db);
        now = gw_now_ms();
        int timeout = -1;
        if (pending_dispatch || deadline <= now)
            timeout = 0;
        else if (deadline != GW_CLOCK_NEVER)
            timeout = deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
        int rc = poll(fds, nf, timeout);
        if (rc < 0 && errno != EINTR) {
            GW_LOGE(MOD, "poll failed: %s", strerror(errno));
            break;
        }
        for (nfds_t i = 1; rc > 0 && i < nf; i++) {
            if (!fds[i].revents || !has_watch(map[i].s, map[i].w))
                continue;
            unsigned cond = ((fds[i].revents & POLLIN) ? DBUS_WATCH_READABLE : 0) |
                            ((fds[i].revents & POLLOUT) ? DBUS_WATCH_WRITABLE : 0) |
                            ((fds[i].revents & POLLERR) ? DBUS_WATCH_ERROR : 0) |
                            ((fds[i].revents & POLLHUP) ? DBUS_WATCH_HANGUP : 0);
            dbus_watch_handle(map[i].w, cond);
        }
        now = gw_now_ms();
        for (unsigned k = 0; k < db->nsvc; k++) {
            struct svc *s = &db->svc[k];
            if (!s->conn)
                continue;
            handle_timeouts(s, now);
            while (s->conn && dbus_connection_dispatch(s->conn) == DBUS_DISPATCH_DATA_REMAINS) {
            }
            if (s->conn && !dbus_connection_get_is_connected(s->conn)) {
                GW_LOGW(MOD, "%s: disconnected from the bus: reconnecting in %u s", s->name,
                        (unsigned)(s->backoff_ms / 1000));
                db->t_disconnects++;
                svc_close(s);
                s->retry_at = now + s->backoff_ms;
                s->fresh_known = false;
            }
        }
    }
    for (unsigned k = 0; k < db->nsvc; k++)
        svc_leave(&db->svc[k]);
    publish_stats(db);
    return NULL;
}

/* ------------------------------------------------------------------ life cycle */

static void svc_setup(struct dbus_battery *db, struct svc *s, int pack)
{
    memset(s, 0, sizeof *s);
    s->db = db;
    s->pack = pack;
    s->backoff_ms = RETRY_MIN_MS;
    char el[64], fallback[32];
    struct gw_text t;
    gw_text_init(&t, fallback, sizeof fallback);
    gw_text_put_str(&t, "tinybms_");
    gw_text_put_uint(&t, pack < 0 ? 0 : (unsigned)pack + 1);
    const char *dev = db->devices[pack < 0 ? 0 : pack];
    if (pack < 0 && db->pack_count > 1)
        gw_text_copy(el, sizeof el, fallback); /* the bank of several packs: no one port names it */
    else
        dbus_name_element(dev, fallback, el, sizeof el);
    gw_text_init(&t, s->name, sizeof s->name);
    gw_text_put_str(&t, SERVICE_PREFIX);
    gw_text_put_str(&t, el);
    gw_text_init(&t, s->settings_base, sizeof s->settings_base);
    gw_text_put_str(&t, "/Settings/Devices/tinybms_");
    gw_text_put_str(&t, el);
    gw_text_init(&t, s->setting_instance, sizeof s->setting_instance);
    gw_text_put_str(&t, s->settings_base);
    gw_text_put_str(&t, "/ClassAndVrmInstance");
    gw_text_init(&t, s->setting_name, sizeof s->setting_name);
    gw_text_put_str(&t, s->settings_base);
    gw_text_put_str(&t, "/CustomName");

    s->fallback_instance = db->device_instance + (pack < 0 ? 0 : pack + 1);
    s->id.device_instance = s->fallback_instance;
    s->id.product_id = PRODUCT_ID;
    gw_text_copy(s->id.process_name, sizeof s->id.process_name, "tinybms-gw");
    gw_text_copy(s->id.process_version, sizeof s->id.process_version, db->version);
    gw_text_copy(s->id.product_name, sizeof s->id.product_name, PRODUCT_NAME);
    gw_text_init(&t, s->id.connection, sizeof s->id.connection);
    gw_text_put_str(&t, "Serial ");
    gw_text_put_str(&t, dev);
    if (pack < 0 && db->pack_count > 1) {
        gw_text_put_str(&t, " (+");
        gw_text_put_uint(&t, db->pack_count - 1u);
        gw_text_put_str(&t, db->pack_count == 2 ? " pack)" : " packs)");
    }
    if (pack >= 0)
        gw_text_copy(s->id.custom_name, sizeof s->id.custom_name, db->names[pack]);
}

int dbus_battery_create(const struct dbus_battery_options *opts, struct dbus_battery **out)
{
    if (out)
        *out = NULL;
    if (!opts || !opts->bus || !out || opts->pack_count == 0 || opts->pack_count > BATTERY_MAX_PACKS)
        return GW_ERR_INVAL;
    if (opts->stale_timeout_ms < 500 || opts->stale_timeout_ms > 60000 || opts->device_instance < 0 ||
        opts->device_instance > 1023)
        return GW_ERR_RANGE;
    struct dbus_battery *db = calloc(1, sizeof *db);
    if (!db)
        return GW_ERR_NOMEM;
    db->bus = opts->bus;
    db->stale_ms = opts->stale_timeout_ms;
    db->device_instance = opts->device_instance;
    db->per_pack = opts->per_pack;
    db->capacity = opts->capacity <= GW_DBUS_CAPACITY_NONE ? opts->capacity : GW_DBUS_CAPACITY_REMAINING;
    db->pack_count = opts->pack_count;
    db->wake[0] = db->wake[1] = -1;
    gw_text_copy(db->version, sizeof db->version, opts->process_version ? opts->process_version : GW_VERSION);
    for (unsigned k = 0; k < opts->pack_count; k++) {
        gw_text_copy(db->devices[k], sizeof db->devices[k], opts->pack_devices[k]);
        gw_text_copy(db->names[k], sizeof db->names[k], opts->pack_names[k]);
    }
    pthread_mutex_init(&db->lock, NULL);
    svc_setup(db, &db->svc[0], -1);
    db->nsvc = 1;
    if (db->per_pack && db->pack_count > 1)
        for (unsigned k = 0; k < db->pack_count; k++)
            svc_setup(db, &db->svc[db->nsvc++], (int)k);
    for (unsigned k = 0; k < SUBSCRIPTION_COUNT; k++) {
        int rc = event_bus_subscribe(db->bus, subscriptions[k].id, subscriptions[k].fn, db, subscriptions[k].name);
        if (rc) {
            for (unsigned j = 0; j < k; j++)
                event_bus_unsubscribe(db->bus, subscriptions[j].id, subscriptions[j].fn, db);
            pthread_mutex_destroy(&db->lock);
            free(db);
            return rc;
        }
    }
    *out = db;
    return GW_OK;
}

int dbus_battery_start(struct dbus_battery *db)
{
    if (!db)
        return GW_ERR_INVAL;
    if (db->running)
        return GW_ERR_STATE;
    if (!dbus_threads_init_default())
        return GW_ERR_NOMEM;
    if (pipe2(db->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        GW_LOGE(MOD, "cannot create the wake-up pipe: %s", strerror(errno));
        db->wake[0] = db->wake[1] = -1;
        return GW_ERR_IO;
    }
    db->stop = false;
    if (pthread_create(&db->thread, NULL, dbus_thread, db) != 0) {
        GW_LOGE(MOD, "cannot start the D-Bus thread");
        close(db->wake[0]);
        close(db->wake[1]);
        db->wake[0] = db->wake[1] = -1;
        return GW_ERR_IO;
    }
    db->running = true;
    GW_LOGI(MOD, "D-Bus battery service %s starting (%s bus, %u service%s, limits invalid after %u ms without "
                 "fresh data)", db->svc[0].name, getenv("DBUS_SESSION_BUS_ADDRESS") ? "session" : "system",
            db->nsvc, db->nsvc == 1 ? "" : "s", (unsigned)db->stale_ms);
    return GW_OK;
}

void dbus_battery_stop(struct dbus_battery *db)
{
    if (!db || !db->running)
        return;
    pthread_mutex_lock(&db->lock);
    db->stop = true;
    db->wake_pending = false;
    wake_thread_locked(db);
    pthread_mutex_unlock(&db->lock);
    pthread_join(db->thread, NULL);
    db->running = false;
    pthread_mutex_lock(&db->lock);
    close(db->wake[0]);
    close(db->wake[1]);
    db->wake[0] = db->wake[1] = -1;
    pthread_mutex_unlock(&db->lock);
}

void dbus_battery_destroy(struct dbus_battery *db)
{
    if (!db)
        return;
    dbus_battery_stop(db);
    for (unsigned k = 0; k < SUBSCRIPTION_COUNT; k++)
        event_bus_unsubscribe(db->bus, subscriptions[k].id, subscriptions[k].fn, db);
    pthread_mutex_destroy(&db->lock);
    free(db);
}

int dbus_battery_get_stats(struct dbus_battery *db, struct dbus_battery_stats *out)
{
    if (!db || !out)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&db->lock);
    *out = db->stats;
    pthread_mutex_unlock(&db->lock);
    return GW_OK;
}

/* ------------------------------------------------------------------ fuzz seam (dbus_battery_internal.h) */

unsigned dbus_battery__service_count(const struct dbus_battery *db)
{
    return db ? db->nsvc : 0;
}

bool dbus_battery__attach(struct dbus_battery *db, unsigned k, DBusConnection *conn, const struct battery_view *v)
{
    if (!db || !v || k >= db->nsvc || db->running)
        return false;
    memcpy(&db->view, v, sizeof db->view);
    db->view_ms = gw_now_ms();
    db->have_view = true;
    struct svc *s = &db->svc[k];
    svc_setup(db, s, s->pack);
    s->conn = conn;
    svc_build_model(s);
    if (!s->model_ready)
        return false;
    s->state = SVC_RUNNING;
    svc_refresh(s, db->view_ms);
    return true;
}

DBusHandlerResult dbus_battery__handle(struct dbus_battery *db, unsigned k, DBusMessage *m)
{
    if (!db || k >= db->nsvc)
        return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
    return on_message(db->svc[k].conn, m, &db->svc[k]);
}
