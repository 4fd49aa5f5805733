#define _GNU_SOURCE
#include "alert_manager.h"

#include "alert_rules.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "store.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_CAP 256          /* transitions waiting to be published */
#define PERSIST_CAP 1024        /* transitions waiting for the writer */
#define PERSIST_BATCH 64
#define PRUNE_EVERY_ROWS 256    /* alert_history is trimmed to history_max_rows this often */
#define COUNT_NAMES 96          /* distinct codes counted */
#define PUBLISH_TIMEOUT_MS 20   /* short: we may be on the dispatcher thread itself */

struct transition {
    uint8_t kind;               /* enum alert_transition */
    int64_t wall_ms;
    struct alert_record rec;
};

struct code_count {
    char code[32];
    uint32_t count;
};

struct alert_manager {
    struct event_bus *bus;
    alert_manager_config_getter get_config;
    void *get_config_ctx;
    uint32_t tick_ms;
    uint32_t history_max_rows;
    char db_path[GW_PATH_MAX + 16];
    struct store *store;        /* alert_history (src/port/store); NULL = no persistence */

    pthread_mutex_t lock;       /* engine, outbox, counts, view */
    struct alert_engine engine;
    struct battery_view *view;  /* copy of the EVENT_BATTERY_UPDATE payload being evaluated */
    struct transition outbox[OUTBOX_CAP];
    size_t outbox_head, outbox_len;
    uint64_t outbox_dropped;
    struct code_count counts[COUNT_NAMES];
    size_t n_counts;

    pthread_mutex_t publish_lock; /* keeps publication order = transition order */
    uint64_t publish_dropped;
    struct gw_log_limit publish_limit;

    pthread_mutex_t tick_lock;
    pthread_cond_t tick_cond;
    bool tick_stop;
    bool ticker_started;
    pthread_t ticker;
};

/* ---- counts --------------------------------------------------------------------------------- */

static void count_add(struct alert_manager *am, const char *code, uint32_t n)
{
    for (size_t i = 0; i < am->n_counts; i++) {
        if (strcmp(am->counts[i].code, code) == 0) {
            am->counts[i].count += n;
            return;
        }
    }
    if (am->n_counts < COUNT_NAMES) {
        struct code_count *c = &am->counts[am->n_counts++];
        snprintf(c->code, sizeof c->code, "%s", code);
        c->count = n;
    }
}

/* ---- transitions: engine callback (under am->lock) ------------------------------------------ */

static void on_transition(void *ctx, enum alert_transition kind, const struct alert_record *rec)
{
    struct alert_manager *am = ctx;
    struct transition t = { .kind = (uint8_t)kind, .wall_ms = gw_wall_ms(), .rec = *rec };
    if (kind == ALERT_TRANSITION_RAISED)
        count_add(am, rec->alert.code, 1);
    if (am->outbox_len == OUTBOX_CAP) {
        am->outbox_head = (am->outbox_head + 1) % OUTBOX_CAP;
        am->outbox_len--;
        am->outbox_dropped++;
    }
    am->outbox[(am->outbox_head + am->outbox_len) % OUTBOX_CAP] = t;
    am->outbox_len++;
}

static void persist_enqueue(struct alert_manager *am, const struct transition *t)
{
    if (am->store)
        store_push(am->store, t); /* full: the oldest is dropped, counted and logged by the store */
}


static void log_transition(const struct transition *t)
{
    const struct app_alert *a = &t->rec.alert;
    if (t->kind == ALERT_TRANSITION_RAISED) {
        enum gw_log_level lvl = a->level == ALERT_LEVEL_ERROR ? GW_LOG_ERROR
                                : a->level == ALERT_LEVEL_WARNING ? GW_LOG_WARN : GW_LOG_INFO;
        gw_log(lvl, MOD, "raised %s%s%s (battery %u, count %u): %s", a->code, t->rec.subject[0] ? "/" : "",
               t->rec.subject, a->battery_id, a->count, a->message);
    } else if (t->kind == ALERT_TRANSITION_CLEARED) {
        GW_LOGI(MOD, "cleared %s%s%s (battery %u)", a->code, t->rec.subject[0] ? "/" : "", t->rec.subject,
                a->battery_id);
    } else {
        GW_LOGI(MOD, "acknowledged %s (battery %u)", a->code, a->battery_id);
    }
}

/* Publishes, logs and persists the transitions collected by on_transition. Called without
 * am->lock held, after every engine call. */
static void drain_outbox(struct alert_manager *am)
{
    pthread_mutex_lock(&am->publish_lock);
    for (;;) {
        struct transition t;
        pthread_mutex_lock(&am->lock);
        if (am->outbox_len == 0) {
            pthread_mutex_unlock(&am->lock);
            break;
        }
        t = am->outbox[am->outbox_head];
        am->outbox_head = (am->outbox_head + 1) % OUTBOX_CAP;
        am->outbox_len--;
        pthread_mutex_unlock(&am->lock);

        log_transition(&t);
        persist_enqueue(am, &t);
        if (t.kind == ALERT_TRANSITION_ACKED)
            continue; /* acknowledgements are not bus events */
        int id = t.kind == ALERT_TRANSITION_RAISED ? EVENT_ALERT_RAISED : EVENT_ALERT_CLEARED;
        if (event_bus_publish(am->bus, id, &t.rec.alert, sizeof t.rec.alert, PUBLISH_TIMEOUT_MS) != GW_OK) {
            am->publish_dropped++;
            gw_log_ratelimited(&am->publish_limit, 10000, GW_LOG_WARN, MOD,
                               "event bus full: %s %s not published (%llu dropped so far)",
                               alert_transition_name(t.kind), t.rec.alert.code,
                               (unsigned long long)am->publish_dropped);
        }
    }
    pthread_mutex_unlock(&am->publish_lock);
}

/* ---- the store's ops (writer thread) --------------------------------------------------------- */

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS alert_history("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, event TEXT NOT NULL,"
    " code TEXT NOT NULL, level INTEGER NOT NULL, battery_id INTEGER NOT NULL, subject TEXT NOT NULL,"
    " message TEXT NOT NULL, value REAL, threshold REAL, count INTEGER NOT NULL,"
    " acknowledged INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS alert_history_ts ON alert_history(ts_ms);";

static int migrate(void *ctx, sqlite3 *db, int from_version, char *why, size_t why_size)
{
    (void)ctx;
    (void)from_version;
    (void)why;
    (void)why_size;
    return sqlite3_exec(db, schema_sql, NULL, NULL, NULL);
}

static int bind_transition(void *ctx, sqlite3_stmt *st, const void *record)
{
    (void)ctx;
    const struct transition *t = record;
    const struct app_alert *a = &t->rec.alert;
    sqlite3_bind_int64(st, 1, t->wall_ms);
    sqlite3_bind_text(st, 2, alert_transition_name(t->kind), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->code, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 4, a->level);
    sqlite3_bind_int(st, 5, a->battery_id);
    sqlite3_bind_text(st, 6, t->rec.subject, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 7, a->message, -1, SQLITE_TRANSIENT);
    if (isfinite(a->value))
        sqlite3_bind_double(st, 8, a->value);
    else
        sqlite3_bind_null(st, 8);
    if (isfinite(a->threshold))
        sqlite3_bind_double(st, 9, a->threshold);
    else
        sqlite3_bind_null(st, 9);
    sqlite3_bind_int64(st, 10, a->count);
    return sqlite3_bind_int(st, 11, a->acknowledged);
}

/* Keeps the newest history_max_rows rows. */
static int prune(void *ctx, sqlite3 *db)
{
    struct alert_manager *am = ctx;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "DELETE FROM alert_history WHERE id <= (SELECT MAX(id) FROM alert_history) - ?",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, am->history_max_rows);
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

/* EVENT_STORAGE_ERROR / EVENT_STORAGE_OK {module "alerts"}: the STORAGE_ERROR alert. */
static void on_storage(void *ctx, bool ok, int err, const char *message)
{
    struct alert_manager *am = ctx;
    struct app_storage_error e;
    memset(&e, 0, sizeof e);
    snprintf(e.module, sizeof e.module, "alerts");
    e.error = ok ? GW_OK : err;
    snprintf(e.message, sizeof e.message, "%.*s", (int)sizeof e.message - 1, message);
    if (event_bus_publish(am->bus, ok ? EVENT_STORAGE_OK : EVENT_STORAGE_ERROR, &e, sizeof e, 1000) != GW_OK)
        GW_LOGW(MOD, "event bus full: storage %s not published", ok ? "ok" : "error");
}

static const struct store_ops alert_ops = {
    .schema_version = 1,
    .migrate = migrate,
    .insert_sql = "INSERT INTO alert_history(ts_ms,event,code,level,battery_id,subject,message,"
                  "value,threshold,count,acknowledged) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
    .bind = bind_transition,
    .prune = prune,
    .on_storage = on_storage,
};

static void restore_counts(struct alert_manager *am)
{
    sqlite3 *db = NULL;
    if (store_read_begin(am->store, &db) != GW_OK)
        return; /* logged by the store */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT code, COUNT(*) FROM alert_history WHERE event='raised' GROUP BY code", -1,
                           &st, NULL) != SQLITE_OK) {
        GW_LOGW(MOD, "cannot read alert counts: %s", sqlite3_errmsg(db));
    } else {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *code = (const char *)sqlite3_column_text(st, 0);
            if (code)
                count_add(am, code, (uint32_t)sqlite3_column_int64(st, 1));
        }
    }
    sqlite3_finalize(st);
    store_read_end(am->store);
}

/* ---- ticker --------------------------------------------------------------------------------- */

static void *ticker_main(void *arg)
{
    struct alert_manager *am = arg;
    pthread_setname_np(pthread_self(), "alert-ticker");
    pthread_mutex_lock(&am->tick_lock);
    while (!am->tick_stop) {
        gw_clock_wait_real(&am->tick_cond, &am->tick_lock, am->tick_ms);
        if (am->tick_stop)
            break;
        pthread_mutex_unlock(&am->tick_lock);
        pthread_mutex_lock(&am->lock);
        alert_engine_tick(&am->engine, gw_now_ms(), gw_wall_ms());
        pthread_mutex_unlock(&am->lock);
        drain_outbox(am);
        pthread_mutex_lock(&am->tick_lock);
    }
    pthread_mutex_unlock(&am->tick_lock);
    return NULL;
}

/* ---- bus handlers --------------------------------------------------------------------------- */

static void set_condition(struct alert_manager *am, int code, uint8_t battery_id, const char *subject, bool present,
                          uint8_t level, const char *message, bool delayed)
{
    pthread_mutex_lock(&am->lock);
    uint32_t raise_delay = delayed ? am->engine.cfg.raise_delay_ms : 0;
    int rc = alert_engine_set_condition(&am->engine, code, battery_id, subject, present, level, message, raise_delay,
                                        0, gw_now_ms(), gw_wall_ms());
    pthread_mutex_unlock(&am->lock);
    if (rc != GW_OK)
        GW_LOGW(MOD, "cannot track %s: %s", alert_code_name(code), gw_strerror(rc));
    drain_outbox(am);
}

static void text_field(char *dst, size_t size, const char *src, size_t src_size)
{
    size_t n = strnlen(src, src_size);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void on_event(const struct gw_event *ev, void *ctx)
{
    struct alert_manager *am = ctx;
    char msg[160];
    switch (ev->id) {
    case EVENT_BATTERY_UPDATE: {
        const struct battery_view *view = EVENT_PAYLOAD(ev, struct battery_view);
        if (!view)
            return;
        pthread_mutex_lock(&am->lock);
        memcpy(am->view, view, sizeof *am->view);
        int rc = alert_engine_process_view(&am->engine, am->view, gw_now_ms(), gw_wall_ms());
        pthread_mutex_unlock(&am->lock);
        if (rc != GW_OK)
            GW_LOGD(MOD, "battery view not fully evaluated: %s", gw_strerror(rc));
        drain_outbox(am);
        break;
    }
    case EVENT_BMS_COMM_LOST:
    case EVENT_BMS_COMM_RESTORED: {
        /* The alert itself follows the battery view (BATTERY_COND_COMM_LOST of the pack); the
         * event only says why, for its message. */
        const struct app_bms_comm *comm = EVENT_PAYLOAD(ev, struct app_bms_comm);
        if (!comm)
            return;
        struct app_bms_comm c = *comm;
        char reason[sizeof c.reason];
        text_field(reason, sizeof reason, c.reason, sizeof c.reason);
        pthread_mutex_lock(&am->lock);
        alert_engine_set_comm_reason(&am->engine, c.battery_id, ev->id == EVENT_BMS_COMM_LOST ? reason : NULL);
        pthread_mutex_unlock(&am->lock);
        break;
    }
    case EVENT_BMS_EVENTS_UPDATE: {
        const struct app_bms_events *in = EVENT_PAYLOAD(ev, struct app_bms_events);
        if (!in)
            return;
        struct app_bms_events *e = malloc(sizeof *e);
        if (!e)
            return;
        memcpy(e, in, sizeof *e);
        pthread_mutex_lock(&am->lock);
        alert_engine_process_event_log(&am->engine, e->battery_id, &e->log, gw_now_ms(), gw_wall_ms());
        pthread_mutex_unlock(&am->lock);
        free(e);
        drain_outbox(am);
        break;
    }
    case EVENT_MQTT_CONNECTED:
    case EVENT_MQTT_DISCONNECTED: {
        /* Connected carries nothing, disconnected the reason. */
        struct app_text t = { { 0 } };
        if (ev->size) {
            const struct app_text *in = EVENT_PAYLOAD(ev, struct app_text);
            if (!in)
                return;
            t = *in;
        }
        char reason[sizeof t.text];
        text_field(reason, sizeof reason, t.text, sizeof t.text);
        snprintf(msg, sizeof msg, "MQTT broker connection lost%s%.100s", reason[0] ? ": " : "", reason);
        set_condition(am, ALERT_CODE_MQTT_DISCONNECTED, 0, NULL, ev->id == EVENT_MQTT_DISCONNECTED,
                      ALERT_LEVEL_WARNING, msg, true);
        break;
    }
    case EVENT_NET_CONNECTED:
    case EVENT_NET_DISCONNECTED: {
        const struct app_net_link *link = EVENT_PAYLOAD(ev, struct app_net_link);
        if (!link)
            return;
        struct app_net_link l = *link;
        char iface[sizeof l.interface];
        text_field(iface, sizeof iface, l.interface, sizeof l.interface);
        snprintf(msg, sizeof msg, "Network link %.31s down", iface[0] ? iface : "(any)");
        set_condition(am, ALERT_CODE_WIFI_DISCONNECTED, 0, NULL, ev->id == EVENT_NET_DISCONNECTED,
                      ALERT_LEVEL_WARNING, msg, true);
        break;
    }
    case EVENT_CAN_INVERTER_LINK: {
        const struct app_inverter_link *in = EVENT_PAYLOAD(ev, struct app_inverter_link);
        if (!in)
            return;
        struct app_inverter_link l = *in;
        set_condition(am, ALERT_CODE_CAN_INVERTER_LINK_LOST, 0, NULL, !l.present, ALERT_LEVEL_WARNING,
                      "No keep-alive from the inverter on CAN", true);
        break;
    }
    case EVENT_STORAGE_ERROR:
    case EVENT_STORAGE_OK: {
        const struct app_storage_error *in = EVENT_PAYLOAD(ev, struct app_storage_error);
        if (!in)
            return;
        struct app_storage_error s = *in;
        char module[sizeof s.module], text[sizeof s.message];
        text_field(module, sizeof module, s.module, sizeof s.module);
        text_field(text, sizeof text, s.message, sizeof s.message);
        snprintf(msg, sizeof msg, "Storage error (%.23s): %.100s", module[0] ? module : "?",
                 text[0] ? text : gw_strerror(s.error));
        set_condition(am, ALERT_CODE_STORAGE_ERROR, 0, module, ev->id == EVENT_STORAGE_ERROR, ALERT_LEVEL_ERROR, msg,
                      false);
        break;
    }
    case EVENT_CONFIG_UPDATED: {
        const struct app_config_change *in = EVENT_PAYLOAD(ev, struct app_config_change);
        if (!in)
            return;
        struct app_config_change c = *in;
        if (!(c.sections & CONFIG_SECTION_ALERTS) || !am->get_config)
            return;
        struct gw_config_alerts cfg;
        int rc = am->get_config(am->get_config_ctx, &cfg);
        if (rc != GW_OK) {
            GW_LOGW(MOD, "cannot read the alert configuration: %s (thresholds unchanged)", gw_strerror(rc));
            return;
        }
        pthread_mutex_lock(&am->lock);
        alert_engine_set_config(&am->engine, &cfg, gw_now_ms(), gw_wall_ms());
        pthread_mutex_unlock(&am->lock);
        GW_LOGI(MOD, "alert thresholds reloaded");
        drain_outbox(am);
        break;
    }
    case EVENT_ALERT_COMMAND: {
        const struct app_alert_command *in = EVENT_PAYLOAD(ev, struct app_alert_command);
        if (!in)
            return;
        struct app_alert_command cmd = *in;
        char code[sizeof cmd.code];
        text_field(code, sizeof code, cmd.code, sizeof cmd.code);
        if (cmd.op == ALERT_OP_ACK)
            alert_manager_ack(am, code[0] ? code : NULL);
        else if (cmd.op == ALERT_OP_ACK_ALL)
            alert_manager_ack(am, NULL);
        else if (cmd.op == ALERT_OP_CLEAR_ALL)
            alert_manager_clear_all(am);
        else
            GW_LOGW(MOD, "unknown alert command op %u ignored", cmd.op);
        break;
    }
    default:
        break;
    }
}

static const int subscribed_events[] = {
    EVENT_BATTERY_UPDATE,  EVENT_BMS_COMM_LOST,     EVENT_BMS_COMM_RESTORED, EVENT_BMS_EVENTS_UPDATE,
    EVENT_MQTT_CONNECTED,  EVENT_MQTT_DISCONNECTED, EVENT_NET_CONNECTED,     EVENT_NET_DISCONNECTED,
    EVENT_CAN_INVERTER_LINK, EVENT_STORAGE_ERROR,   EVENT_STORAGE_OK,        EVENT_CONFIG_UPDATED,
    EVENT_ALERT_COMMAND,
};
#define N_SUBSCRIBED (sizeof subscribed_events / sizeof subscribed_events[0])

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void stop_ticker(struct alert_manager *am)
{
    if (!am->ticker_started)
        return;
    pthread_mutex_lock(&am->tick_lock);
    am->tick_stop = true;
    pthread_cond_signal(&am->tick_cond);
    pthread_mutex_unlock(&am->tick_lock);
    pthread_join(am->ticker, NULL);
    am->ticker_started = false;
}

static void free_manager(struct alert_manager *am)
{
    store_destroy(am->store); /* writes what is still queued */
    pthread_mutex_destroy(&am->lock);
    pthread_mutex_destroy(&am->publish_lock);
    pthread_mutex_destroy(&am->tick_lock);
    pthread_cond_destroy(&am->tick_cond);
    free(am->view);
    free(am);
}

int alert_manager_create(const struct alert_manager_options *opt, struct alert_manager **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!opt || !opt->bus)
        return GW_ERR_INVAL;
    struct alert_manager *am = calloc(1, sizeof *am);
    if (!am)
        return GW_ERR_NOMEM;
    if (gw_clock_cond_init(&am->tick_cond) != GW_OK) {
        free(am);
        return GW_ERR_NOMEM;
    }
    int rc = GW_OK;
    bool no_history = false;
    am->bus = opt->bus;
    am->get_config = opt->get_config;
    am->get_config_ctx = opt->get_config_ctx;
    am->tick_ms = opt->tick_ms ? opt->tick_ms : 250;
    am->history_max_rows = opt->history_max_rows ? opt->history_max_rows : 10000;
    pthread_mutex_init(&am->lock, NULL);
    pthread_mutex_init(&am->publish_lock, NULL);
    pthread_mutex_init(&am->tick_lock, NULL);
    alert_engine_init(&am->engine, &opt->config, on_transition, am);
    am->view = malloc(sizeof *am->view);
    if (!am->view) {
        rc = GW_ERR_NOMEM;
        goto err;
    }

    if (opt->data_dir && *opt->data_dir) {
        int n = snprintf(am->db_path, sizeof am->db_path, "%s/alerts.db", opt->data_dir);
        if (n < 0 || (size_t)n >= sizeof am->db_path) {
            GW_LOGE(MOD, "data directory path too long (%zu characters)", strlen(opt->data_dir));
            rc = GW_ERR_INVAL;
            goto err;
        }
        struct store_config sc = {
            .name = MOD, .noun = "alert transitions", .path = am->db_path, .open_required = true,
            .ops = &alert_ops, .ctx = am, .record_size = sizeof(struct transition), .capacity = PERSIST_CAP,
            .batch_max = PERSIST_BATCH, .prune_every_rows = PRUNE_EVERY_ROWS,
        };
        rc = store_create(&sc, &am->store);
        if (rc == GW_OK) {
            restore_counts(am);
        } else if (rc == GW_ERR_NOMEM || rc == GW_ERR_IO || rc == GW_ERR_INVAL) {
            goto err;
        } else { /* the store logged why the database cannot be used */
            GW_LOGW(MOD, "running without alert history");
            rc = GW_OK;
            no_history = true;
        }
    }
    if (pthread_create(&am->ticker, NULL, ticker_main, am) != 0) {
        GW_LOGE(MOD, "cannot start the alert ticker: %s", strerror(errno));
        rc = GW_ERR_IO;
        goto err;
    }
    am->ticker_started = true;
    for (size_t i = 0; i < N_SUBSCRIBED; i++) {
        rc = event_bus_subscribe(am->bus, subscribed_events[i], on_event, am, "alert_manager");
        if (rc != GW_OK) {
            GW_LOGE(MOD, "cannot subscribe to %s: %s", app_event_name(subscribed_events[i]), gw_strerror(rc));
            for (size_t j = 0; j < i; j++)
                event_bus_unsubscribe(am->bus, subscribed_events[j], on_event, am);
            goto err;
        }
    }
    /* The store's own report of it went on the bus before this manager listened: raise it here,
     * or a database that cannot open would never be an alert (nor reach MQTT or the web). */
    if (no_history) {
        char msg[160];
        snprintf(msg, sizeof msg, "Storage error (alerts): cannot open %.80s; alerts not kept over a restart",
                 am->db_path);
        set_condition(am, ALERT_CODE_STORAGE_ERROR, 0, "alerts", true, ALERT_LEVEL_ERROR, msg, false);
    }
    *out = am;
    return GW_OK;
err:
    stop_ticker(am);
    free_manager(am);
    return rc;
}

void alert_manager_destroy(struct alert_manager *am)
{
    if (!am)
        return;
    for (size_t i = 0; i < N_SUBSCRIBED; i++)
        event_bus_unsubscribe(am->bus, subscribed_events[i], on_event, am);
    stop_ticker(am);
    drain_outbox(am); /* anything raised by the last tick: logged, published, queued */
    free_manager(am);
}

/* ---- commands ------------------------------------------------------------------------------- */

int alert_manager_raise(struct alert_manager *am, const char *code, uint8_t level, const char *message)
{
    if (!am || !code || !*code || strlen(code) >= sizeof(((struct app_alert *)0)->code) ||
        level > ALERT_LEVEL_ERROR) {
        GW_LOGW(MOD, "manual raise refused: bad code or level");
        return GW_ERR_INVAL;
    }
    pthread_mutex_lock(&am->lock);
    int rc = alert_engine_raise(&am->engine, code, 0, NULL, level, message, NAN, NAN, gw_now_ms(), gw_wall_ms());
    pthread_mutex_unlock(&am->lock);
    if (rc != GW_OK)
        GW_LOGW(MOD, "cannot raise %s: %s", code, gw_strerror(rc));
    drain_outbox(am);
    return rc;
}

int alert_manager_clear(struct alert_manager *am, const char *code)
{
    if (!am || !code || !*code)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&am->lock);
    int rc = alert_engine_clear(&am->engine, code, ALERT_BATTERY_ANY, NULL, gw_now_ms(), gw_wall_ms());
    pthread_mutex_unlock(&am->lock);
    drain_outbox(am);
    return rc;
}

size_t alert_manager_ack(struct alert_manager *am, const char *code)
{
    if (!am)
        return 0;
    pthread_mutex_lock(&am->lock);
    size_t n = alert_engine_ack(&am->engine, code, gw_wall_ms());
    pthread_mutex_unlock(&am->lock);
    drain_outbox(am);
    return n;
}

size_t alert_manager_clear_all(struct alert_manager *am)
{
    if (!am)
        return 0;
    pthread_mutex_lock(&am->lock);
    size_t n = alert_engine_clear_all(&am->engine, gw_now_ms(), gw_wall_ms());
    pthread_mutex_unlock(&am->lock);
    if (n)
        GW_LOGI(MOD, "%zu active alerts cleared on request", n);
    drain_outbox(am);
    return n;
}

size_t alert_manager_active_count(struct alert_manager *am)
{
    if (!am)
        return 0;
    pthread_mutex_lock(&am->lock);
    size_t n = alert_engine_active_count(&am->engine);
    pthread_mutex_unlock(&am->lock);
    return n;
}

uint32_t alert_manager_count(struct alert_manager *am, const char *code)
{
    if (!am || !code)
        return 0;
    uint32_t n = 0;
    pthread_mutex_lock(&am->lock);
    for (size_t i = 0; i < am->n_counts; i++)
        if (strcmp(am->counts[i].code, code) == 0)
            n = am->counts[i].count;
    pthread_mutex_unlock(&am->lock);
    return n;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

struct jbuf {
    char *buf;
    size_t size, len;
    bool growable;
    bool failed;
};

static void jb_reserve(struct jbuf *j, size_t extra)
{
    if (j->failed || j->len + extra < j->size)
        return;
    if (!j->growable) {
        j->failed = true;
        return;
    }
    size_t size = j->size ? j->size : 256;
    while (j->len + extra >= size)
        size *= 2;
    char *p = realloc(j->buf, size);
    if (!p) {
        j->failed = true;
        return;
    }
    j->buf = p;
    j->size = size;
}

static void jb_raw(struct jbuf *j, const char *s, size_t n)
{
    jb_reserve(j, n + 1);
    if (j->failed)
        return;
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

static void jb_printf(struct jbuf *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jb_printf(struct jbuf *j, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        j->failed = true;
        return;
    }
    jb_raw(j, tmp, (size_t)n);
}

static void jb_string(struct jbuf *j, const char *s)
{
    if (!s)
        s = "";
    jb_raw(j, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = { '\\', (char)*p };
            jb_raw(j, e, 2);
        } else if (*p < 0x20) {
            jb_printf(j, "\\u%04x", *p);
        } else {
            jb_raw(j, (const char *)p, 1);
        }
    }
    jb_raw(j, "\"", 1);
}

static void jb_number(struct jbuf *j, double v)
{
    if (isfinite(v))
        jb_printf(j, "%.6g", v);
    else
        jb_raw(j, "null", 4);
}

static void active_json(struct alert_manager *am, struct jbuf *j)
{
    struct alert_record *recs = malloc(sizeof *recs * ALERT_ENGINE_MAX_SLOTS);
    if (!recs) {
        j->failed = true;
        return;
    }
    pthread_mutex_lock(&am->lock);
    size_t n = alert_engine_active(&am->engine, recs, ALERT_ENGINE_MAX_SLOTS, NULL);
    pthread_mutex_unlock(&am->lock);
    jb_raw(j, "[", 1);
    for (size_t i = 0; i < n; i++) {
        const struct app_alert *a = &recs[i].alert;
        jb_raw(j, i ? ",{" : "{", i ? 2 : 1);
        jb_printf(j, "\"timestamp\":%lld,\"level\":", (long long)(a->first_seen_ms / 1000));
        jb_string(j, alert_level_name(a->level));
        jb_raw(j, ",\"code\":", 8);
        jb_string(j, a->code);
        jb_raw(j, ",\"message\":", 11);
        jb_string(j, a->message);
        jb_raw(j, ",\"value\":", 9);
        jb_number(j, a->value);
        jb_raw(j, ",\"threshold\":", 13);
        jb_number(j, a->threshold);
        jb_printf(j, ",\"first_seen\":%lld,\"last_seen\":%lld,\"count\":%u,\"acknowledged\":%s,\"battery_id\":%u",
                  (long long)a->first_seen_ms, (long long)a->last_seen_ms, a->count,
                  a->acknowledged ? "true" : "false", a->battery_id);
        jb_raw(j, ",\"subject\":", 11);
        jb_string(j, recs[i].subject);
        jb_raw(j, "}", 1);
    }
    jb_raw(j, "]", 1);
    free(recs);
}

int alert_manager_get_active_json(struct alert_manager *am, char *buf, size_t size, size_t *len)
{
    if (len)
        *len = 0;
    if (!am || !buf || size == 0)
        return GW_ERR_INVAL;
    struct jbuf j = { .buf = buf, .size = size };
    buf[0] = '\0';
    active_json(am, &j);
    if (j.failed) {
        buf[0] = '\0';
        return GW_ERR_OVERFLOW;
    }
    if (len)
        *len = j.len;
    return GW_OK;
}

int alert_manager_get_active_json_alloc(struct alert_manager *am, char **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!am)
        return GW_ERR_INVAL;
    struct jbuf j = { .growable = true };
    active_json(am, &j);
    if (j.failed) {
        free(j.buf);
        return GW_ERR_NOMEM;
    }
    *out = j.buf;
    return GW_OK;
}

int alert_manager_get_counts_json_alloc(struct alert_manager *am, char **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!am)
        return GW_ERR_INVAL;
    struct jbuf j = { .growable = true };
    jb_raw(&j, "{", 1);
    pthread_mutex_lock(&am->lock);
    for (size_t i = 0; i < am->n_counts; i++) {
        if (i)
            jb_raw(&j, ",", 1);
        jb_string(&j, am->counts[i].code);
        jb_printf(&j, ":%u", am->counts[i].count);
    }
    pthread_mutex_unlock(&am->lock);
    jb_raw(&j, "}", 1);
    if (j.failed) {
        free(j.buf);
        return GW_ERR_NOMEM;
    }
    *out = j.buf;
    return GW_OK;
}

int alert_manager_flush(struct alert_manager *am, uint32_t timeout_ms)
{
    if (!am)
        return GW_ERR_INVAL;
    if (!am->store)
        return GW_ERR_STORAGE;
    return store_flush(am->store, timeout_ms);
}

int alert_manager_get_history_json(struct alert_manager *am, int64_t from_ms, int64_t to_ms, uint32_t limit,
                                   char **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!am || limit > 10000 || (to_ms && to_ms < from_ms))
        return GW_ERR_INVAL;
    if (!am->store)
        return GW_ERR_STORAGE;
    if (limit == 0)
        limit = 100;
    int rc = alert_manager_flush(am, 5000);
    if (rc != GW_OK)
        return rc;
    sqlite3 *db = NULL;
    rc = store_read_begin(am->store, &db);
    if (rc != GW_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id,ts_ms,event,code,level,battery_id,subject,message,value,threshold,count "
                           "FROM alert_history WHERE ts_ms >= ? AND ts_ms < ? ORDER BY id DESC LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK) {
        GW_LOGE(MOD, "alert history query failed: %s", sqlite3_errmsg(db));
        store_read_end(am->store);
        return GW_ERR_STORAGE;
    }
    sqlite3_bind_int64(st, 1, from_ms);
    sqlite3_bind_int64(st, 2, to_ms ? to_ms : INT64_MAX);
    sqlite3_bind_int(st, 3, (int)limit);
    struct jbuf j = { .growable = true };
    jb_raw(&j, "[", 1);
    int step;
    size_t rows = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (rows++)
            jb_raw(&j, ",", 1);
        jb_raw(&j, "{", 1);
        jb_printf(&j, "\"id\":%lld,\"timestamp_ms\":%lld,\"event\":", (long long)sqlite3_column_int64(st, 0),
                  (long long)sqlite3_column_int64(st, 1));
        jb_string(&j, (const char *)sqlite3_column_text(st, 2));
        jb_raw(&j, ",\"code\":", 8);
        jb_string(&j, (const char *)sqlite3_column_text(st, 3));
        jb_raw(&j, ",\"level\":", 9);
        jb_string(&j, alert_level_name(sqlite3_column_int(st, 4)));
        jb_printf(&j, ",\"battery_id\":%d,\"subject\":", sqlite3_column_int(st, 5));
        jb_string(&j, (const char *)sqlite3_column_text(st, 6));
        jb_raw(&j, ",\"message\":", 11);
        jb_string(&j, (const char *)sqlite3_column_text(st, 7));
        jb_raw(&j, ",\"value\":", 9);
        jb_number(&j, sqlite3_column_type(st, 8) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 8));
        jb_raw(&j, ",\"threshold\":", 13);
        jb_number(&j, sqlite3_column_type(st, 9) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 9));
        jb_printf(&j, ",\"count\":%lld}", (long long)sqlite3_column_int64(st, 10));
    }
    if (step != SQLITE_DONE)
        GW_LOGE(MOD, "alert history query failed: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    store_read_end(am->store);
    jb_raw(&j, "]", 1);
    if (step != SQLITE_DONE || j.failed) {
        free(j.buf);
        return step != SQLITE_DONE ? GW_ERR_STORAGE : GW_ERR_NOMEM;
    }
    *out = j.buf;
    return GW_OK;
}
