/* MQTT gateway: battery views -> topics, Home Assistant discovery, command topics (mqtt_gateway.h).
 *
 * Threads: bus handlers run on the dispatcher, the connect and command callbacks on the MQTT
 * network thread. `lock` guards the settings copy, schedules, bookkeeping and statistics; it is
 * never held while calling into mqtt_client (publish/subscribe), the bus or the charge-cap
 * callback, so no lock order can form with the client's own locks. `disc_lock` serialises
 * discovery rounds and `pub_lock` data rounds (each is held while publishing, and nothing that
 * holds a client lock ever takes them: the client calls us without its own lock held). */
#define _POSIX_C_SOURCE 200809L
#include "mqtt_gateway.h"
#include "mqtt_gateway_internal.h"

#include "app_events.h"
#include "battery_view.h"
#include "charge_control.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOPIC_MAX MQTT_CLIENT_MAX_TOPIC
#define NA MQTT_GATEWAY__UNAVAILABLE

EVENT_PAYLOAD_FITS(struct battery_view);

/* ------------------------------------------------------------------ tables */

/* The topics and Home Assistant entities are rows of the topic table (mqtt_format.c). */

static const int handled_events[] = {
    EVENT_BATTERY_UPDATE, EVENT_ALERT_RAISED, EVENT_ALERT_CLEARED, EVENT_BMS_VERSION_UPDATE, EVENT_CONFIG_UPDATED,
    EVENT_NET_CONNECTED,  EVENT_NET_DISCONNECTED, EVENT_OTA_UPDATE_STARTED, EVENT_OTA_UPDATE_COMPLETED,
    EVENT_OTA_UPDATE_FAILED, EVENT_OTA_UPDATE_ROLLED_BACK,
};

/* ------------------------------------------------------------------ state */

/* What this process left retained under one base (the bank or a pack). */
struct pub_mark {
    bool blank;       /* the "None" set is on the broker (published on the current link) */
    uint8_t cells;    /* cells/<k>/voltage topics that may hold something, 0..BMS_MAX_CELLS */
};

/* What the discovery announces (or should). */
struct disc_state {
    bool known;                                   /* built from a view */
    uint8_t pack_count;
    bool limits;                                  /* charge_* sensors */
    uint8_t bank_cells;                           /* cell_<k>_voltage of the bank (one pack) */
    uint8_t pack_cells[BATTERY_MAX_PACKS];
    uint8_t pack_ids[BATTERY_MAX_PACKS];
    char pack_names[BATTERY_MAX_PACKS][BATTERY_NAME_LEN + 1];
};

struct version_slot {
    bool used;
    uint8_t battery_id;
    struct bms_version version;
};

struct mqtt_gateway {
    pthread_mutex_t lock;
    pthread_mutex_t ctl_lock;      /* serialises apply_commands (start vs config handler) */
    pthread_mutex_t disc_lock;     /* one discovery round at a time */
    pthread_mutex_t pub_lock;      /* one data round at a time */
    struct event_bus *bus;
    struct mqtt_client *client;
    bool own_client;
    struct mqtt_gateway__net net;  /* the dispatcher thread's only */
    mqtt_gateway_config_fn get_config;
    void *config_ctx;
    mqtt_gateway_charge_cap_fn charge_cap;
    void *charge_cap_ctx;
    mqtt_gateway__sink_fn sink;    /* tests: set before start */
    void *sink_ctx;
    struct battery_view *scratch;  /* dispatcher only: copy of the event payload */

    /* --- guarded by lock --- */
    struct gw_config_mqtt cfg;
    bool started;
    bool enabled;
    uint64_t next_numeric_ms;
    uint64_t next_status_ms;
    uint64_t link_gen;             /* +1 per connection / prefix change: marks are per link */
    struct pub_mark bank_mark;
    struct pub_mark pack_marks[BATTERY_MAX_PACKS];
    bool limits_blank;
    struct version_slot versions[BATTERY_MAX_PACKS];
    struct disc_state want;
    struct disc_state announced;
    bool disc_forced;              /* republish every wanted config at the next round */
    char cmd_prefix[64];           /* prefix of the subscribed command topics, "" = none */
    struct mqtt_gateway_stats stats;
    uint64_t us_total;

    struct gw_log_limit cmd_log;   /* network thread only */
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int mqtt_gateway_availability_topic(const char *prefix, char *out, size_t cap)
{
    if (!prefix || !out || cap == 0)
        return GW_ERR_INVAL;
    struct gw_text t;
    gw_text_init(&t, out, cap);
    gw_text_put_str(&t, prefix);
    gw_text_put_str(&t, "/availability");
    return gw_text_status(&t);
}

static unsigned clamp_packs(uint8_t n)
{
    return n <= BATTERY_MAX_PACKS ? n : BATTERY_MAX_PACKS;
}

static unsigned clamp_cells(uint8_t n)
{
    return n <= BMS_MAX_CELLS ? n : BMS_MAX_CELLS;
}

/* ------------------------------------------------------------------ publishing helpers */

/* "<base>/<sub>"; false when it does not fit. */
static bool make_topic(char *buf, const char *base, const char *sub)
{
    struct gw_text t;
    gw_text_init(&t, buf, TOPIC_MAX);
    gw_text_put_str(&t, base);
    gw_text_put_char(&t, '/');
    gw_text_put_str(&t, sub);
    return gw_text_status(&t) == GW_OK;
}

static bool link_up(struct mqtt_gateway *gw)
{
    return gw->sink != NULL || mqtt_client_is_connected(gw->client);
}

static int publish_raw(struct mqtt_gateway *gw, const char *topic, const char *payload, size_t len,
                       int qos, bool retain)
{
    if (gw->sink) {
        gw->sink(gw->sink_ctx, topic, payload, len, qos, retain);
        return 0;
    }
    int rc = mqtt_client_publish(gw->client, topic, payload, len, qos, retain);
    /* Disconnected drops are counted by the client; only real failures count here. */
    return (rc == GW_OK || rc == GW_ERR_CLOSED) ? 0 : 1;
}

static int pub_text(struct mqtt_gateway *gw, const char *base, const char *sub, const char *text,
                    int qos, bool retain)
{
    char topic[TOPIC_MAX];
    if (!make_topic(topic, base, sub))
        return 1;
    return publish_raw(gw, topic, text, strlen(text), qos, retain);
}

/* A retained data value; NaN or infinite is published as "None" (never a stale number). */
static int pub_num(struct mqtt_gateway *gw, const char *base, const char *sub, double v, int decimals)
{
    char text[48];
    if (mqtt_gateway__format_number(text, sizeof text, v, decimals) != GW_OK)
        gw_text_copy(text, sizeof text, NA);
    return pub_text(gw, base, sub, text, 0, true);
}

static int pub_na(struct mqtt_gateway *gw, const char *base, const char *sub)
{
    return pub_text(gw, base, sub, NA, 0, true);
}

/* Empty retained: deletes the retained message of a topic that no longer exists. */
static int pub_delete(struct mqtt_gateway *gw, const char *base, const char *sub)
{
    char topic[TOPIC_MAX];
    if (!make_topic(topic, base, sub))
        return 1;
    return publish_raw(gw, topic, "", 0, 0, true);
}

static int pub_json(struct mqtt_gateway *gw, const char *topic, cJSON *doc, int qos, bool retain)
{
    if (!doc)
        return 1;
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!text)
        return 1;
    int e = publish_raw(gw, topic, text, strlen(text), qos, retain);
    cJSON_free(text);
    return e;
}

static int pub_json_sub(struct mqtt_gateway *gw, const char *base, const char *sub, cJSON *doc)
{
    char topic[TOPIC_MAX];
    if (!make_topic(topic, base, sub)) {
        cJSON_Delete(doc);
        return 1;
    }
    return pub_json(gw, topic, doc, 0, true);
}

static void snapshot_cfg(struct mqtt_gateway *gw, struct gw_config_mqtt *out)
{
    pthread_mutex_lock(&gw->lock);
    *out = gw->cfg;
    pthread_mutex_unlock(&gw->lock);
}

/* Forgets what the current link holds: the next round republishes the "None" sets. With
 * unknown_cells, every cells/<k> topic is treated as possibly retained (a new prefix, or a
 * previous run of the daemon with more cells or another pack count). Under lock. */
static void reset_marks_locked(struct mqtt_gateway *gw, bool unknown_cells)
{
    gw->link_gen++;
    gw->limits_blank = false;
    gw->bank_mark.blank = false;
    if (unknown_cells)
        gw->bank_mark.cells = BMS_MAX_CELLS;
    for (size_t i = 0; i < BATTERY_MAX_PACKS; i++) {
        gw->pack_marks[i].blank = false;
        if (unknown_cells)
            gw->pack_marks[i].cells = BMS_MAX_CELLS;
    }
}

/* ------------------------------------------------------------------ data topics */

/* The cells row t under base: d's cell voltages (values) or "None" for k = 1..n, deleted for
 * k = n+1..m->cells; then m->cells = n. */
static int pub_cells(struct mqtt_gateway *gw, const char *base, const struct mqtt_gateway__topic *t,
                     const struct bms_live_data *d, unsigned n, bool values, struct pub_mark *m)
{
    int e = 0;
    char sub[48];
    for (unsigned c = 0; c < n; c++) {
        if (mqtt_gateway__expand(t->sub, c + 1, sub, sizeof sub) != GW_OK) {
            e++;
            continue;
        }
        e += values ? pub_num(gw, base, sub, d->cell_mv_x10[c] / 10000.0, t->decimals) : pub_na(gw, base, sub);
    }
    for (unsigned c = n; c < m->cells && c < BMS_MAX_CELLS; c++) {
        if (mqtt_gateway__expand(t->sub, c + 1, sub, sizeof sub) != GW_OK) {
            e++;
            continue;
        }
        e += pub_delete(gw, base, sub);
    }
    m->cells = (uint8_t)n;
    return e;
}

/* One row's value now under base ("None" when not available). */
static int pub_row(struct mqtt_gateway *gw, const char *base, const struct mqtt_gateway__topic *t,
                   const struct battery_view *v, unsigned pack)
{
    struct mqtt_gateway__value val = { .num = NAN };
    bool have = t->value(v, pack, &val);
    switch (t->kind) {
    case MQTT_GATEWAY__NUMBER:
        return have ? pub_num(gw, base, t->sub, val.num, t->decimals) : pub_na(gw, base, t->sub);
    case MQTT_GATEWAY__JSON:
        if (!have || !val.json) {
            cJSON_Delete(val.json);
            return pub_na(gw, base, t->sub);
        }
        return pub_json_sub(gw, base, t->sub, val.json);
    default:
        return pub_text(gw, base, t->sub, have && val.text ? val.text : NA, 0, true);
    }
}

/* The rows of one scope under base, in table order: every-round rows always; the others with
 * their values while `fresh`, else "None" once (until *blank is cleared by fresh values). The
 * cells row publishes the first `cells` cell voltages of d (values or "None") and deletes the
 * cell topics beyond them (m: what this link holds; NULL for a scope without cells). */
static int publish_scope(struct mqtt_gateway *gw, const char *base, uint8_t scope, const struct battery_view *v,
                         unsigned pack, bool fresh, const struct bms_live_data *d, unsigned cells, bool *blank,
                         struct pub_mark *m)
{
    int e = 0;
    size_t count;
    const struct mqtt_gateway__topic *rows = mqtt_gateway__topics(&count);
    bool blanking = !fresh && !*blank;
    for (size_t i = 0; i < count; i++) {
        const struct mqtt_gateway__topic *t = &rows[i];
        if (t->scope != scope)
            continue;
        if (t->kind == MQTT_GATEWAY__CELLS) {
            if ((fresh || blanking) && m)
                e += pub_cells(gw, base, t, d, cells, fresh, m);
        } else if (t->every_round || fresh) {
            e += pub_row(gw, base, t, v, pack);
        } else if (blanking) {
            e += pub_na(gw, base, t->sub);
        }
    }
    if (fresh || blanking)
        *blank = !fresh;
    return e;
}

static int publish_bank(struct mqtt_gateway *gw, const char *base, const struct battery_view *v, struct pub_mark *m)
{
    const struct battery_pack *p0 = &v->packs[0];
    bool one = clamp_packs(v->pack_count) == 1;
    bool fresh = v->online_count > 0;
    /* cells/<k>/voltage of the bank only mean something with one pack. */
    unsigned cells = 0;
    if (fresh && one && mqtt_gateway__pack_online(p0) && p0->live.valid)
        cells = clamp_cells(p0->live.cell_count);
    else if (!fresh && one && p0->live.valid)
        cells = clamp_cells(p0->live.cell_count);
    return publish_scope(gw, base, MQTT_GATEWAY__SCOPE_BANK, v, 0, fresh, &p0->live, cells, &m->blank, m);
}

static int publish_charge(struct mqtt_gateway *gw, const char *base, const struct battery_view *v, bool *blank)
{
    return publish_scope(gw, base, MQTT_GATEWAY__SCOPE_CHARGE, v, 0, v->limits.valid, NULL, 0, blank, NULL);
}

static int publish_pack(struct mqtt_gateway *gw, const char *prefix, const struct battery_view *v, unsigned i,
                        struct pub_mark *m)
{
    const struct battery_pack *p = &v->packs[i];
    const struct bms_live_data *d = &p->live;
    char base[TOPIC_MAX / 2];
    struct gw_text t;
    gw_text_init(&t, base, sizeof base);
    gw_text_put_str(&t, prefix);
    gw_text_put_str(&t, "/pack/");
    gw_text_put_uint(&t, i + 1);
    if (gw_text_status(&t) != GW_OK)
        return 1;
    /* Not online: its last values are not fresh. "None" once, until it is back. */
    bool fresh = mqtt_gateway__pack_online(p) && d->valid;
    unsigned cells = fresh || d->valid ? clamp_cells(d->cell_count) : 0;
    return publish_scope(gw, base, MQTT_GATEWAY__SCOPE_PACK, v, i, fresh, d, cells, &m->blank, m);
}

static void prefix_of(struct mqtt_gateway *gw, char *out, size_t cap)
{
    pthread_mutex_lock(&gw->lock);
    gw_text_copy(out, cap, gw->cfg.topic_prefix);
    pthread_mutex_unlock(&gw->lock);
}

int mqtt_gateway__publish_view(struct mqtt_gateway *gw, const struct battery_view *v)
{
    if (!gw || !v)
        return 1;
    uint64_t t0 = now_us();
    pthread_mutex_lock(&gw->pub_lock);
    char prefix[sizeof gw->cfg.topic_prefix];
    struct pub_mark bank, packs_m[BATTERY_MAX_PACKS];
    pthread_mutex_lock(&gw->lock);
    gw_text_copy(prefix, sizeof prefix, gw->cfg.topic_prefix);
    uint64_t gen = gw->link_gen;
    bank = gw->bank_mark;
    memcpy(packs_m, gw->pack_marks, sizeof packs_m);
    bool limits_blank = gw->limits_blank;
    pthread_mutex_unlock(&gw->lock);

    int errors = publish_bank(gw, prefix, v, &bank);
    errors += publish_charge(gw, prefix, v, &limits_blank);
    unsigned packs = clamp_packs(v->pack_count);
    for (unsigned i = 0; i < packs; i++)
        errors += publish_pack(gw, prefix, v, i, &packs_m[i]);

    bool up = link_up(gw);
    uint64_t us = now_us() - t0;
    pthread_mutex_lock(&gw->lock);
    /* What was published on a link that went away (or under an old prefix) is not kept. */
    if (up && gen == gw->link_gen) {
        gw->bank_mark = bank;
        memcpy(gw->pack_marks, packs_m, sizeof packs_m);
        gw->limits_blank = limits_blank;
    }
    gw->stats.samples_published++;
    if (v->limits.valid)
        gw->stats.limits_published++;
    gw->stats.publish_errors += (uint64_t)errors;
    gw->us_total += us;
    if (us > gw->stats.us_per_sample_max)
        gw->stats.us_per_sample_max = us;
    pthread_mutex_unlock(&gw->lock);
    pthread_mutex_unlock(&gw->pub_lock);
    return errors;
}

int mqtt_gateway__publish_status_view(struct mqtt_gateway *gw, const struct battery_view *v)
{
    if (!gw || !v)
        return 1;
    char prefix[sizeof gw->cfg.topic_prefix], topic[TOPIC_MAX];
    prefix_of(gw, prefix, sizeof prefix);
    if (!make_topic(topic, prefix, "status"))
        return 1;
    int errors = pub_json(gw, topic, mqtt_gateway__status_json(v), 0, true);
    pthread_mutex_lock(&gw->lock);
    gw->stats.status_published++;
    gw->stats.publish_errors += (uint64_t)errors;
    pthread_mutex_unlock(&gw->lock);
    return errors;
}

int mqtt_gateway__publish_sample(struct mqtt_gateway *gw, const struct bms_live_data *d)
{
    struct battery_view *v = malloc(sizeof *v);
    if (!v || !d) {
        free(v);
        return 1;
    }
    mqtt_gateway__view_from_sample(d, v);
    int e = mqtt_gateway__publish_view(gw, v);
    free(v);
    return e;
}

int mqtt_gateway__publish_status(struct mqtt_gateway *gw, const struct bms_live_data *d)
{
    struct battery_view *v = malloc(sizeof *v);
    if (!v || !d) {
        free(v);
        return 1;
    }
    mqtt_gateway__view_from_sample(d, v);
    int e = mqtt_gateway__publish_status_view(gw, v);
    free(v);
    return e;
}

/* ------------------------------------------------------------------ discovery */

static bool disc_equal(const struct disc_state *a, const struct disc_state *b)
{
    if (a->known != b->known)
        return false;
    if (!a->known)
        return true;
    if (a->pack_count != b->pack_count || a->limits != b->limits || a->bank_cells != b->bank_cells)
        return false;
    for (unsigned i = 0; i < a->pack_count && i < BATTERY_MAX_PACKS; i++) {
        if (a->pack_cells[i] != b->pack_cells[i] || a->pack_ids[i] != b->pack_ids[i] ||
            strcmp(a->pack_names[i], b->pack_names[i]) != 0)
            return false;
    }
    return true;
}

/* What a view asks the discovery to announce. A pack never seen keeps the cell count
 * announced before (none at first). */
static void want_from_view(const struct battery_view *v, const struct disc_state *prev, struct disc_state *w)
{
    memset(w, 0, sizeof *w);
    w->known = true;
    unsigned packs = clamp_packs(v->pack_count);
    w->pack_count = (uint8_t)packs;
    w->limits = v->limit_outputs != 0;
    for (unsigned i = 0; i < packs; i++) {
        const struct battery_pack *p = &v->packs[i];
        w->pack_ids[i] = p->id;
        gw_text_copyn(w->pack_names[i], sizeof w->pack_names[i], p->name, sizeof p->name);
        if (p->live.valid)
            w->pack_cells[i] = (uint8_t)clamp_cells(p->live.cell_count);
        else if (prev->known && i < prev->pack_count && prev->pack_ids[i] == p->id)
            w->pack_cells[i] = prev->pack_cells[i];
    }
    w->bank_cells = packs == 1 ? w->pack_cells[0] : 0;
}

static const struct bms_version *version_of(const struct version_slot *slots, uint8_t battery_id)
{
    for (size_t i = 0; i < BATTERY_MAX_PACKS; i++)
        if (slots[i].used && slots[i].battery_id == battery_id)
            return &slots[i].version;
    return NULL;
}

/* Whether the bank device announces row t (a bank or charge row with an entity). */
static bool bank_entity_wanted(const struct mqtt_gateway__topic *t, const struct disc_state *st)
{
    switch (t->when) {
    case MQTT_GATEWAY__WHEN_LIMITS: return st->limits;
    case MQTT_GATEWAY__WHEN_SEVERAL: return st->pack_count > 1;
    default: return true;
    }
}

/* A row of the bank device's entities (bank and charge rows with an object, not the cells). */
static bool bank_entity(const struct mqtt_gateway__topic *t)
{
    return t->scope != MQTT_GATEWAY__SCOPE_PACK && t->object && t->kind != MQTT_GATEWAY__CELLS;
}

/* A row of each pack device's entities (not the cells). */
static bool pack_entity(const struct mqtt_gateway__topic *t)
{
    return t->scope == MQTT_GATEWAY__SCOPE_PACK && t->object && t->kind != MQTT_GATEWAY__CELLS;
}

/* The config of row t on device dev (pack: 1-based position, 0 = the bank device; cell: the
 * cell of a cells row), or its removal (empty retained). */
static void publish_config(struct mqtt_gateway *gw, const struct gw_config_mqtt *cfg,
                           const struct mqtt_gateway__device *dev, const struct mqtt_gateway__topic *t,
                           unsigned pack, unsigned cell, bool remove, int *errors)
{
    struct mqtt_gateway__sensor_text text;
    struct mqtt_gateway__sensor s;
    mqtt_gateway__topic_sensor(t, pack, cell, &text, &s);
    char topic[TOPIC_MAX];
    struct gw_text b;
    gw_text_init(&b, topic, sizeof topic);
    gw_text_put_str(&b, cfg->ha_discovery_prefix);
    gw_text_put_str(&b, s.binary ? "/binary_sensor/" : "/sensor/");
    gw_text_put_str(&b, dev->node_id);
    gw_text_put_char(&b, '/');
    gw_text_put_str(&b, s.object);
    gw_text_put_str(&b, "/config");
    if (gw_text_status(&b) != GW_OK) {
        (*errors)++;
        return;
    }
    if (remove)
        *errors += publish_raw(gw, topic, "", 0, 1, true);
    else
        *errors += pub_json(gw, topic, mqtt_gateway__discovery_json(cfg->topic_prefix, dev, &s), 1, true);
}

static void bank_device(struct mqtt_gateway *gw, const struct version_slot *versions, const struct disc_state *st,
                        struct mqtt_gateway__device *dev)
{
    char id[128];
    mqtt_client_get_client_id(gw->client, id, sizeof id);
    uint8_t first = st->known && st->pack_count ? st->pack_ids[0] : 0;
    mqtt_gateway__device_info(id, version_of(versions, first), st->known ? st->pack_count : 1, dev);
}

/* Brings the announced configs to `want`: publishes what is new (everything with forced, or
 * a device whose identity or name changed) and empties what is no longer wanted. */
static void discovery_sync(struct mqtt_gateway *gw, const struct gw_config_mqtt *cfg, bool forced)
{
    pthread_mutex_lock(&gw->disc_lock);
    struct disc_state old, want;
    struct version_slot versions[BATTERY_MAX_PACKS];
    pthread_mutex_lock(&gw->lock);
    old = gw->announced;
    want = gw->want;
    forced = forced || gw->disc_forced;
    memcpy(versions, gw->versions, sizeof versions);
    pthread_mutex_unlock(&gw->lock);
    bool ready = cfg->ha_discovery && want.known && link_up(gw);
    pthread_mutex_lock(&gw->lock);
    gw->disc_forced = ready ? false : forced;
    pthread_mutex_unlock(&gw->lock);
    if (!ready) {
        pthread_mutex_unlock(&gw->disc_lock);
        return;
    }

    int errors = 0;
    struct mqtt_gateway__device bank;
    bank_device(gw, versions, &want, &bank);
    bool several = want.pack_count > 1;
    bool bank_dirty = forced || !old.known || (old.pack_count > 1) != several ||
                      (several && old.pack_count != want.pack_count);
    size_t rows_n;
    const struct mqtt_gateway__topic *rows = mqtt_gateway__topics(&rows_n);
    const struct mqtt_gateway__topic *bank_cells = mqtt_gateway__cells_topic(MQTT_GATEWAY__SCOPE_BANK);
    const struct mqtt_gateway__topic *pack_cells = mqtt_gateway__cells_topic(MQTT_GATEWAY__SCOPE_PACK);
    for (size_t i = 0; i < rows_n; i++) {
        const struct mqtt_gateway__topic *t = &rows[i];
        if (!bank_entity(t))
            continue;
        bool in_old = old.known && bank_entity_wanted(t, &old);
        bool in_want = bank_entity_wanted(t, &want);
        if (in_want && (bank_dirty || !in_old))
            publish_config(gw, cfg, &bank, t, 0, 0, false, &errors);
        else if (in_old && !in_want)
            publish_config(gw, cfg, &bank, t, 0, 0, true, &errors);
    }
    for (unsigned k = 1; k <= BMS_MAX_CELLS; k++) {
        bool in_old = old.known && k <= old.bank_cells;
        bool in_want = k <= want.bank_cells;
        if (in_want && (bank_dirty || !in_old))
            publish_config(gw, cfg, &bank, bank_cells, 0, k, false, &errors);
        else if (in_old && !in_want)
            publish_config(gw, cfg, &bank, bank_cells, 0, k, true, &errors);
    }
    for (unsigned i = 0; i < BATTERY_MAX_PACKS; i++) {
        bool old_has = old.known && old.pack_count > 1 && i < old.pack_count;
        bool want_has = several && i < want.pack_count;
        if (!old_has && !want_has)
            continue;
        bool dirty = bank_dirty || !old_has || strcmp(old.pack_names[i], want.pack_names[i]) != 0 ||
                     old.pack_ids[i] != want.pack_ids[i];
        struct mqtt_gateway__device dev;
        const struct disc_state *named = want_has ? &want : &old;
        mqtt_gateway__pack_device_info(&bank, i + 1, named->pack_names[i], version_of(versions, named->pack_ids[i]),
                                       &dev);
        for (size_t j = 0; j < rows_n; j++) {
            if (!pack_entity(&rows[j]))
                continue;
            if (want_has && dirty)
                publish_config(gw, cfg, &dev, &rows[j], i + 1, 0, false, &errors);
            else if (!want_has)
                publish_config(gw, cfg, &dev, &rows[j], i + 1, 0, true, &errors);
        }
        for (unsigned k = 1; k <= BMS_MAX_CELLS; k++) {
            bool in_old = old_has && k <= old.pack_cells[i];
            bool in_want = want_has && k <= want.pack_cells[i];
            if (in_want && (dirty || !in_old))
                publish_config(gw, cfg, &dev, pack_cells, i + 1, k, false, &errors);
            else if (in_old && !in_want)
                publish_config(gw, cfg, &dev, pack_cells, i + 1, k, true, &errors);
        }
    }
    pthread_mutex_lock(&gw->lock);
    gw->announced = want;
    gw->stats.discovery_published++;
    gw->stats.publish_errors += (uint64_t)errors;
    pthread_mutex_unlock(&gw->lock);
    pthread_mutex_unlock(&gw->disc_lock);
    GW_LOGI(MOD, "Home Assistant discovery %s under %s/.../%s (%u pack%s, limits %s)",
            forced ? "published" : "updated", cfg->ha_discovery_prefix, bank.node_id, (unsigned)want.pack_count,
            want.pack_count == 1 ? "" : "s", want.limits ? "sent" : "not sent");
}

/* Empties every config cfg may have announced: every bank entity and cell, and the packs this
 * process announced (which makes Home Assistant remove the entities). */
static void discovery_remove(struct mqtt_gateway *gw, const struct gw_config_mqtt *cfg)
{
    pthread_mutex_lock(&gw->disc_lock);
    if (!link_up(gw)) {
        pthread_mutex_unlock(&gw->disc_lock);
        return;
    }
    struct disc_state old;
    struct version_slot versions[BATTERY_MAX_PACKS];
    pthread_mutex_lock(&gw->lock);
    old = gw->announced;
    memcpy(versions, gw->versions, sizeof versions);
    pthread_mutex_unlock(&gw->lock);
    int errors = 0;
    struct mqtt_gateway__device bank;
    bank_device(gw, versions, &old, &bank);
    size_t rows_n;
    const struct mqtt_gateway__topic *rows = mqtt_gateway__topics(&rows_n);
    for (size_t i = 0; i < rows_n; i++)
        if (bank_entity(&rows[i]))
            publish_config(gw, cfg, &bank, &rows[i], 0, 0, true, &errors);
    for (unsigned k = 1; k <= BMS_MAX_CELLS; k++)
        publish_config(gw, cfg, &bank, mqtt_gateway__cells_topic(MQTT_GATEWAY__SCOPE_BANK), 0, k, true, &errors);
    for (unsigned i = 0; old.known && old.pack_count > 1 && i < old.pack_count && i < BATTERY_MAX_PACKS; i++) {
        struct mqtt_gateway__device dev;
        mqtt_gateway__pack_device_info(&bank, i + 1, old.pack_names[i], NULL, &dev);
        for (size_t j = 0; j < rows_n; j++)
            if (pack_entity(&rows[j]))
                publish_config(gw, cfg, &dev, &rows[j], i + 1, 0, true, &errors);
        for (unsigned k = 1; k <= old.pack_cells[i]; k++)
            publish_config(gw, cfg, &dev, mqtt_gateway__cells_topic(MQTT_GATEWAY__SCOPE_PACK), i + 1, k, true,
                           &errors);
    }
    pthread_mutex_lock(&gw->lock);
    memset(&gw->announced, 0, sizeof gw->announced);
    gw->stats.publish_errors += (uint64_t)errors;
    pthread_mutex_unlock(&gw->lock);
    pthread_mutex_unlock(&gw->disc_lock);
    GW_LOGI(MOD, "Home Assistant discovery removed under %s/.../%s", cfg->ha_discovery_prefix, bank.node_id);
}

/* ------------------------------------------------------------------ commands */

/* One reply on <prefix>/cmd/result. answer (charge_cap only, may be NULL): the text for the
 * requester; applied is reported with it. */
static void reply(struct mqtt_gateway *gw, const char *prefix, const char *command, bool ok, const char *error,
                  const char *answer, bool applied)
{
    char topic[TOPIC_MAX];
    if (!make_topic(topic, prefix, "cmd/result"))
        return;
    cJSON *doc = cJSON_CreateObject();
    if (!doc)
        return;
    cJSON_AddBoolToObject(doc, "ok", ok);
    cJSON_AddStringToObject(doc, "command", command);
    if (answer) {
        cJSON_AddBoolToObject(doc, "applied", applied);
        cJSON_AddStringToObject(doc, "answer", answer);
    }
    if (!ok && error)
        cJSON_AddStringToObject(doc, "error", error);
    pub_json(gw, topic, doc, 1, false);
}

/* "error: <why>" into buf. */
static void error_text(char *buf, size_t cap, const char *why)
{
    struct gw_text t;
    gw_text_init(&t, buf, cap);
    gw_text_put_str(&t, "error: ");
    gw_text_put_str(&t, why);
}

/* Hands a parsed cap to the callback. Returns whether the command is accepted; fills answer
 * and *applied. */
static bool apply_cap(struct mqtt_gateway *gw, const struct app_charge_cap *cap, char *answer, size_t cap_len,
                      bool *applied)
{
    *applied = false;
    if (!gw->charge_cap) {
        gw_text_copy(answer, cap_len, "no effect: no battery service");
        return false;
    }
    char text[160] = "";
    int rc = gw->charge_cap(gw->charge_cap_ctx, cap, text, sizeof text);
    text[sizeof text - 1] = '\0';
    if (rc == GW_OK) {
        *applied = true;
        gw_text_copy(answer, cap_len, text[0] ? text : "applied");
        return true;
    }
    if (rc == GW_ERR_UNSUPPORTED) {
        gw_text_copy(answer, cap_len, text[0] ? text : "no effect");
        return true;
    }
    error_text(answer, cap_len, text[0] ? text : gw_strerror(rc));
    return false;
}

void mqtt_gateway__command(struct mqtt_gateway *gw, const struct mqtt_client_message *msg)
{
    pthread_mutex_lock(&gw->lock);
    char prefix[sizeof gw->cmd_prefix];
    gw_text_copy(prefix, sizeof prefix, gw->cmd_prefix);
    bool allowed = gw->started && gw->cfg.commands_enabled && gw->cfg.username[0] != '\0';
    pthread_mutex_unlock(&gw->lock);
    size_t plen = strlen(prefix);
    if (!allowed || plen == 0 || strncmp(msg->topic, prefix, plen) != 0 ||
        strncmp(msg->topic + plen, "/cmd/", 5) != 0)
        return;
    const char *command = msg->topic + plen + 5;

    char err[200] = "";
    char answer[220] = "";
    bool is_cap = strcmp(command, "charge_cap") == 0;
    bool ok = false, applied = false;
    if (msg->retain) {
        /* A retained command would be re-applied at every reconnection. */
        gw_text_copy(err, sizeof err, "retained command ignored: publish commands without retain");
    } else if (strcmp(command, "alerts/ack") == 0 || strcmp(command, "alerts/clear") == 0) {
        struct app_alert_command cmd;
        int rc = command[7] == 'a' ? mqtt_gateway__parse_alert_ack(msg->payload, msg->len, &cmd, err, sizeof err)
                                   : mqtt_gateway__parse_alert_clear(msg->payload, msg->len, &cmd, err, sizeof err);
        if (rc == GW_OK) {
            ok = event_bus_publish(gw->bus, EVENT_ALERT_COMMAND, &cmd, sizeof cmd, 200) == GW_OK;
            if (!ok)
                gw_text_copy(err, sizeof err, "gateway busy (event queue full), try again");
        }
    } else if (is_cap) {
        struct app_charge_cap cap;
        if (mqtt_gateway__parse_charge_cap(msg->payload, msg->len, &cap, err, sizeof err) == GW_OK) {
            ok = apply_cap(gw, &cap, answer, sizeof answer, &applied);
            if (!ok) {
                const char *why = strncmp(answer, "error: ", 7) == 0 ? answer + 7 : answer;
                gw_text_copy(err, sizeof err, why);
            }
        }
    } else {
        gw_text_copy(err, sizeof err, "unknown command");
    }
    if (is_cap && answer[0] == '\0')
        error_text(answer, sizeof answer, err);
    pthread_mutex_lock(&gw->lock);
    if (ok)
        gw->stats.commands_accepted++;
    else
        gw->stats.commands_rejected++;
    if (is_cap && ok && applied)
        gw->stats.caps_applied++;
    else if (is_cap && !applied && (ok || strncmp(answer, "no effect", 9) == 0))
        gw->stats.caps_without_effect++;
    pthread_mutex_unlock(&gw->lock);
    if (ok) {
        GW_LOGI(MOD, "command %s accepted%s%s", command, is_cap ? ": " : "", is_cap ? answer : "");
    } else {
        gw_log_ratelimited(&gw->cmd_log, 10000, GW_LOG_WARN, MOD, "command %.60s rejected: %s", command, err);
    }
    reply(gw, prefix, command, ok, err, is_cap ? answer : NULL, applied);
}

static void on_command(const struct mqtt_client_message *msg, void *ctx)
{
    mqtt_gateway__command(ctx, msg);
}

static const char *const command_topics[] = { "cmd/alerts/ack", "cmd/alerts/clear", "cmd/charge_cap" };

/* Subscribes / unsubscribes the command topics to match the settings. Never under lock. */
static void apply_commands_locked(struct mqtt_gateway *gw, bool stopping);

static void apply_commands(struct mqtt_gateway *gw, bool stopping)
{
    pthread_mutex_lock(&gw->ctl_lock);
    apply_commands_locked(gw, stopping);
    pthread_mutex_unlock(&gw->ctl_lock);
}

static void apply_commands_locked(struct mqtt_gateway *gw, bool stopping)
{
    struct gw_config_mqtt cfg;
    snapshot_cfg(gw, &cfg);
    bool want = !stopping && cfg.commands_enabled && cfg.username[0] != '\0';
    if (!stopping && cfg.commands_enabled && cfg.username[0] == '\0')
        GW_LOGW(MOD, "command topics refused: the broker connection has no user name, so anyone "
                     "on the network could command the battery; set mqtt.username (and an ACL)");
    pthread_mutex_lock(&gw->lock);
    char old[sizeof gw->cmd_prefix];
    gw_text_copy(old, sizeof old, gw->cmd_prefix);
    pthread_mutex_unlock(&gw->lock);
    bool same = want && strcmp(old, cfg.topic_prefix) == 0;
    if (same)
        return;
    char topic[TOPIC_MAX];
    if (old[0]) {
        for (size_t i = 0; i < 3; i++)
            if (make_topic(topic, old, command_topics[i]))
                mqtt_client_unsubscribe(gw->client, topic);
        pthread_mutex_lock(&gw->lock);
        gw->cmd_prefix[0] = '\0';
        pthread_mutex_unlock(&gw->lock);
    }
    if (!want)
        return;
    pthread_mutex_lock(&gw->lock);
    gw_text_copy(gw->cmd_prefix, sizeof gw->cmd_prefix, cfg.topic_prefix);
    pthread_mutex_unlock(&gw->lock);
    int rc = GW_OK;
    for (size_t i = 0; i < 3 && rc == GW_OK; i++) {
        rc = make_topic(topic, cfg.topic_prefix, command_topics[i]) ? GW_OK : GW_ERR_OVERFLOW;
        if (rc == GW_OK)
            rc = mqtt_client_subscribe(gw->client, topic, 1, on_command, gw);
    }
    if (rc != GW_OK)
        GW_LOGE(MOD, "cannot subscribe the command topics: %s", gw_strerror(rc));
    else
        GW_LOGI(MOD, "command topics enabled under %s/cmd/ (user %s)", cfg.topic_prefix, cfg.username);
}

/* ------------------------------------------------------------------ connection */

static void publish_availability(struct mqtt_gateway *gw, const char *prefix, const char *state)
{
    char topic[TOPIC_MAX];
    if (mqtt_gateway_availability_topic(prefix, topic, sizeof topic) == GW_OK)
        publish_raw(gw, topic, state, strlen(state), 1, true);
}

static void on_connected(void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    struct gw_config_mqtt cfg;
    pthread_mutex_lock(&gw->lock);
    cfg = gw->cfg;
    /* Retained values were dropped while offline: publish the next view at once. */
    gw->next_numeric_ms = 0;
    gw->next_status_ms = 0;
    reset_marks_locked(gw, false);
    gw->disc_forced = true; /* a broker restarted without persistence forgot the configs */
    pthread_mutex_unlock(&gw->lock);
    publish_availability(gw, cfg.topic_prefix, "online");
    if (cfg.ha_discovery)
        discovery_sync(gw, &cfg, true); /* waits for the first view when none came yet */
    else
        discovery_remove(gw, &cfg);
}

/* The client's link changes, told to the rest of the gateway as bus events (the alert manager
 * raises MQTT_DISCONNECTED on them). Network thread. */
static void on_link(bool up, const char *reason, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    int rc;
    if (up) {
        rc = event_bus_publish(gw->bus, EVENT_MQTT_CONNECTED, NULL, 0, 100);
    } else {
        struct app_text t;
        gw_text_copy(t.text, sizeof t.text, reason ? reason : "");
        rc = event_bus_publish(gw->bus, EVENT_MQTT_DISCONNECTED, &t, sizeof t, 100);
    }
    /* Not retried: links change at most once per reconnect back-off, and a lost one leaves the
     * broker alert stale until the next change, which the warning explains. */
    if (rc != GW_OK)
        GW_LOGW(MOD, "broker link %s not told to the other services: %s", up ? "up" : "down", gw_strerror(rc));
}

void mqtt_gateway__connected(struct mqtt_gateway *gw)
{
    on_connected(gw);
}

void mqtt_gateway__set_sink(struct mqtt_gateway *gw, mqtt_gateway__sink_fn sink, void *ctx)
{
    if (!gw)
        return;
    gw->sink = sink;
    gw->sink_ctx = ctx;
}

/* ------------------------------------------------------------------ event handlers */

/* True when `next` is due at `now`; then schedules the next one. A tenth of the period of slack
 * keeps a view stream with the same period from skipping every other view on jitter. */
static bool due(uint64_t *next, uint64_t now, uint32_t period_ms)
{
    if (now < *next)
        return false;
    *next = now + period_ms - period_ms / 10;
    return true;
}

static void on_battery(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    const struct battery_view *in = EVENT_PAYLOAD(ev, struct battery_view);
    if (!in) {
        pthread_mutex_lock(&gw->lock);
        gw->stats.views_ignored++;
        pthread_mutex_unlock(&gw->lock);
        return;
    }
    /* The dispatcher is the only writer of scratch. */
    memcpy(gw->scratch, in, sizeof *gw->scratch);
    const struct battery_view *v = gw->scratch;
    uint64_t now = gw_now_ms();
    pthread_mutex_lock(&gw->lock);
    gw->stats.views_received++;
    struct disc_state w;
    want_from_view(v, &gw->want, &w);
    gw->want = w;
    struct gw_config_mqtt cfg = gw->cfg;
    bool disc = cfg.ha_discovery && (gw->disc_forced || !disc_equal(&w, &gw->announced));
    bool numeric = gw->enabled && due(&gw->next_numeric_ms, now, cfg.publish_interval_ms);
    bool status = gw->enabled && due(&gw->next_status_ms, now, cfg.status_interval_ms);
    pthread_mutex_unlock(&gw->lock);

    /* Configs first: Home Assistant then subscribes and gets the retained values. */
    if (disc)
        discovery_sync(gw, &cfg, false);
    if (numeric)
        mqtt_gateway__publish_view(gw, v);
    if (status)
        mqtt_gateway__publish_status_view(gw, v);
}

static void on_alert(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    const struct app_alert *in = EVENT_PAYLOAD(ev, struct app_alert);
    if (!in)
        return;
    struct app_alert a = *in;
    struct gw_config_mqtt cfg;
    pthread_mutex_lock(&gw->lock);
    bool enabled = gw->enabled;
    cfg = gw->cfg;
    pthread_mutex_unlock(&gw->lock);
    if (!enabled)
        return;
    char topic[TOPIC_MAX];
    if (!make_topic(topic, cfg.topic_prefix, "alerts"))
        return;
    int e = pub_json(gw, topic, mqtt_gateway__alert_json(&a, ev->id == EVENT_ALERT_RAISED), 1, false);
    pthread_mutex_lock(&gw->lock);
    gw->stats.alerts_published++;
    gw->stats.publish_errors += (uint64_t)e;
    pthread_mutex_unlock(&gw->lock);
}

const char *mqtt_gateway__update_event_name(int event_id)
{
    switch (event_id) {
    case EVENT_OTA_UPDATE_STARTED: return "started";
    case EVENT_OTA_UPDATE_COMPLETED: return "completed";
    case EVENT_OTA_UPDATE_FAILED: return "failed";
    case EVENT_OTA_UPDATE_ROLLED_BACK: return "rolled_back";
    default: return NULL;
    }
}

/* <p>/update: what the update service said last, retained (the outcome stays readable). */
static void on_update(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    const struct app_text *t = EVENT_PAYLOAD(ev, struct app_text);
    const char *name = mqtt_gateway__update_event_name(ev->id);
    if (!t || !name)
        return;
    pthread_mutex_lock(&gw->lock);
    bool enabled = gw->enabled;
    char prefix[sizeof gw->cfg.topic_prefix];
    gw_text_copy(prefix, sizeof prefix, gw->cfg.topic_prefix);
    pthread_mutex_unlock(&gw->lock);
    char topic[TOPIC_MAX];
    if (!enabled || !make_topic(topic, prefix, "update"))
        return;
    char text[sizeof t->text];
    gw_text_copy(text, sizeof text, t->text); /* bounded even if the sender forgot the NUL */
    cJSON *doc = cJSON_CreateObject();
    if (doc) {
        cJSON_AddStringToObject(doc, "event", name);
        cJSON_AddStringToObject(doc, "message", text);
        cJSON_AddNumberToObject(doc, "time_ms", (double)gw_wall_ms());
    }
    int e = pub_json(gw, topic, doc, 1, true);
    pthread_mutex_lock(&gw->lock);
    gw->stats.publish_errors += (uint64_t)e;
    pthread_mutex_unlock(&gw->lock);
}

static void on_version(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    const struct app_bms_version *in = EVENT_PAYLOAD(ev, struct app_bms_version);
    if (!in)
        return;
    struct app_bms_version v = *in;
    if (!v.version.valid)
        return;
    pthread_mutex_lock(&gw->lock);
    struct version_slot *slot = NULL;
    for (size_t i = 0; i < BATTERY_MAX_PACKS && !slot; i++)
        if (gw->versions[i].used && gw->versions[i].battery_id == v.battery_id)
            slot = &gw->versions[i];
    for (size_t i = 0; i < BATTERY_MAX_PACKS && !slot; i++)
        if (!gw->versions[i].used)
            slot = &gw->versions[i];
    bool changed = false;
    if (slot) {
        const struct bms_version *o = &slot->version;
        changed = !slot->used || memcmp(o->serial, v.version.serial, sizeof o->serial) != 0 ||
                  o->fw_public != v.version.fw_public || o->fw_internal != v.version.fw_internal ||
                  o->hw_version != v.version.hw_version || o->hw_changes != v.version.hw_changes;
        slot->used = true;
        slot->battery_id = v.battery_id;
        slot->version = v.version;
    }
    if (changed)
        gw->disc_forced = true;
    struct gw_config_mqtt cfg = gw->cfg;
    pthread_mutex_unlock(&gw->lock);
    if (changed && cfg.ha_discovery)
        discovery_sync(gw, &cfg, true);
}

static bool broker_settings_differ(const struct gw_config_mqtt *a, const struct gw_config_mqtt *b)
{
    return strcmp(a->broker_uri, b->broker_uri) || strcmp(a->username, b->username) ||
           strcmp(a->password, b->password) || strcmp(a->client_id, b->client_id) ||
           a->keepalive_s != b->keepalive_s || strcmp(a->ca_file, b->ca_file) ||
           strcmp(a->cert_file, b->cert_file) || strcmp(a->key_file, b->key_file) ||
           a->tls_insecure != b->tls_insecure || a->offline_queue_size != b->offline_queue_size;
}

static void set_own_will(struct mqtt_gateway *gw, const char *prefix)
{
    char topic[TOPIC_MAX];
    if (mqtt_gateway_availability_topic(prefix, topic, sizeof topic) != GW_OK)
        return;
    struct mqtt_client_will will = { .topic = topic, .payload = "offline", .qos = 1, .retain = true };
    mqtt_client_set_will(gw->client, &will);
}

static void apply_config(struct mqtt_gateway *gw)
{
    struct gw_config_mqtt nc;
    if (!gw->get_config(&nc, gw->config_ctx)) {
        GW_LOGW(MOD, "config getter failed: keeping the previous MQTT settings");
        return;
    }
    if (nc.topic_prefix[0] == '\0' || strpbrk(nc.topic_prefix, "+#") ||
        nc.ha_discovery_prefix[0] == '\0' || strpbrk(nc.ha_discovery_prefix, "+#")) {
        GW_LOGE(MOD, "new topic prefix \"%s\" / discovery prefix \"%s\" refused (empty or "
                     "wildcard): keeping the previous MQTT settings",
                nc.topic_prefix, nc.ha_discovery_prefix);
        return;
    }
    if (nc.publish_interval_ms == 0)
        nc.publish_interval_ms = 1000;
    if (nc.status_interval_ms == 0)
        nc.status_interval_ms = 5000;
    pthread_mutex_lock(&gw->lock);
    struct gw_config_mqtt old = gw->cfg;
    gw->cfg = nc;
    gw->next_numeric_ms = 0;
    gw->next_status_ms = 0;
    bool prefix_changed = strcmp(old.topic_prefix, nc.topic_prefix) != 0;
    /* Under a new prefix nothing of ours is known to be retained yet. */
    reset_marks_locked(gw, prefix_changed);
    pthread_mutex_unlock(&gw->lock);

    bool reconnecting = false;
    bool connected = link_up(gw);
    bool discovery_changed = prefix_changed || old.ha_discovery != nc.ha_discovery ||
                             strcmp(old.ha_discovery_prefix, nc.ha_discovery_prefix) != 0;
    /* Remove what the old settings announced before moving. */
    if (connected && old.ha_discovery && discovery_changed)
        discovery_remove(gw, &old);
    if (connected && prefix_changed) {
        /* Empty retained = delete the old availability topic rather than leave it "online". */
        char topic[TOPIC_MAX];
        if (mqtt_gateway_availability_topic(old.topic_prefix, topic, sizeof topic) == GW_OK)
            publish_raw(gw, topic, "", 0, 1, true);
    }

    if (gw->own_client) {
        if (prefix_changed)
            set_own_will(gw, nc.topic_prefix);
        if (!nc.enabled && old.enabled) {
            GW_LOGI(MOD, "MQTT disabled by configuration: disconnecting");
            publish_availability(gw, nc.topic_prefix, "offline");
            mqtt_client_stop(gw->client);
        } else if (nc.enabled && (!old.enabled || broker_settings_differ(&old, &nc) || prefix_changed)) {
            if (mqtt_client_reconfigure(gw->client, &nc) == GW_OK) {
                reconnecting = true;
                int rc = mqtt_client_start(gw->client);
                if (rc != GW_OK && rc != GW_ERR_STATE)
                    GW_LOGE(MOD, "cannot start the MQTT client: %s", gw_strerror(rc));
            }
        }
    } else if (prefix_changed) {
        GW_LOGW(MOD, "topic prefix changed to %s: the owner of the MQTT client must update its last "
                     "will topic", nc.topic_prefix);
    }
    /* A reconnection re-announces everything from the connect callback. */
    if (!reconnecting && link_up(gw)) {
        if (prefix_changed)
            publish_availability(gw, nc.topic_prefix, "online");
        /* Removal of the old announcement was done above. */
        if (discovery_changed && nc.ha_discovery)
            discovery_sync(gw, &nc, true);
        else if (discovery_changed && !old.ha_discovery)
            discovery_remove(gw, &nc);
    }
    apply_commands(gw, false);
}

static void on_config(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    const struct app_config_change *ch = EVENT_PAYLOAD(ev, struct app_config_change);
    if (!ch)
        return;
    if (ch->sections & CONFIG_SECTION_MQTT)
        apply_config(gw);
}

bool mqtt_gateway__net_event(struct mqtt_gateway__net *st, bool up, const char *address, bool mqtt_connected,
                             char *why, size_t cap)
{
    if (!up) {
        st->down = true;
        return false;
    }
    const char *addr = address ? address : "";
    bool moved = st->address[0] && addr[0] && strcmp(st->address, addr) != 0;
    bool back = st->down && !mqtt_connected;
    if (moved)
        snprintf(why, cap, "the network address changed (%s -> %s)", st->address, addr);
    else if (back)
        snprintf(why, cap, "the network is back (%s)", addr[0] ? addr : "no address");
    if (addr[0])
        gw_text_copy(st->address, sizeof st->address, addr);
    st->down = false;
    return moved || back;
}

static void on_network(const struct gw_event *ev, void *ctx)
{
    struct mqtt_gateway *gw = ctx;
    const struct app_net_link *link = EVENT_PAYLOAD(ev, struct app_net_link);
    if (!link || !gw->client)
        return;
    char why[160];
    if (mqtt_gateway__net_event(&gw->net, ev->id == EVENT_NET_CONNECTED, link->address,
                                mqtt_client_is_connected(gw->client), why, sizeof why))
        mqtt_client_reconnect_now(gw->client, why);
}

static event_bus_handler_fn handler_of(int id)
{
    switch (id) {
    case EVENT_BATTERY_UPDATE: return on_battery;
    case EVENT_ALERT_RAISED:
    case EVENT_ALERT_CLEARED: return on_alert;
    case EVENT_BMS_VERSION_UPDATE: return on_version;
    case EVENT_NET_CONNECTED:
    case EVENT_NET_DISCONNECTED: return on_network;
    case EVENT_OTA_UPDATE_STARTED:
    case EVENT_OTA_UPDATE_COMPLETED:
    case EVENT_OTA_UPDATE_FAILED:
    case EVENT_OTA_UPDATE_ROLLED_BACK: return on_update;
    default: return on_config;
    }
}

/* ------------------------------------------------------------------ API */

int mqtt_gateway_create(const struct mqtt_gateway_options *opt, struct mqtt_gateway **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!opt || !opt->bus || !opt->get_config)
        return GW_ERR_INVAL;
    struct mqtt_gateway *gw = calloc(1, sizeof *gw);
    if (!gw)
        return GW_ERR_NOMEM;
    gw->scratch = malloc(sizeof *gw->scratch);
    if (!gw->scratch) {
        free(gw);
        return GW_ERR_NOMEM;
    }
    pthread_mutex_init(&gw->lock, NULL);
    pthread_mutex_init(&gw->ctl_lock, NULL);
    pthread_mutex_init(&gw->disc_lock, NULL);
    pthread_mutex_init(&gw->pub_lock, NULL);
    gw->bus = opt->bus;
    gw->charge_cap = opt->charge_cap;
    gw->charge_cap_ctx = opt->charge_cap_ctx;
    /* A previous run may have left cell topics retained (more cells, another pack count). */
    reset_marks_locked(gw, true);
    gw->get_config = opt->get_config;
    gw->config_ctx = opt->config_ctx;
    gw->enabled = true;
    int rc;
    if (!gw->get_config(&gw->cfg, gw->config_ctx)) {
        GW_LOGE(MOD, "config getter failed at creation");
        rc = GW_ERR_INVAL;
        goto err;
    }
    if (gw->cfg.topic_prefix[0] == '\0' || strpbrk(gw->cfg.topic_prefix, "+#") ||
        gw->cfg.ha_discovery_prefix[0] == '\0' || strpbrk(gw->cfg.ha_discovery_prefix, "+#")) {
        GW_LOGE(MOD, "bad topic prefix \"%s\" or discovery prefix \"%s\" (empty or wildcard)",
                gw->cfg.topic_prefix, gw->cfg.ha_discovery_prefix);
        rc = GW_ERR_INVAL;
        goto err;
    }
    if (gw->cfg.publish_interval_ms == 0)
        gw->cfg.publish_interval_ms = 1000;
    if (gw->cfg.status_interval_ms == 0)
        gw->cfg.status_interval_ms = 5000;
    if (opt->client) {
        gw->client = opt->client;
    } else {
        char topic[TOPIC_MAX];
        rc = mqtt_gateway_availability_topic(gw->cfg.topic_prefix, topic, sizeof topic);
        if (rc != GW_OK)
            goto err;
        struct mqtt_client_will will = { .topic = topic, .payload = "offline", .qos = 1, .retain = true };
        rc = mqtt_client_create(&gw->cfg, &will, &gw->client);
        if (rc != GW_OK)
            goto err;
        gw->own_client = true;
    }
    *out = gw;
    return GW_OK;
err:
    pthread_mutex_destroy(&gw->lock);
    pthread_mutex_destroy(&gw->ctl_lock);
    pthread_mutex_destroy(&gw->disc_lock);
    pthread_mutex_destroy(&gw->pub_lock);
    free(gw->scratch);
    free(gw);
    return rc;
}

int mqtt_gateway_start(struct mqtt_gateway *gw)
{
    if (!gw)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&gw->lock);
    if (gw->started) {
        pthread_mutex_unlock(&gw->lock);
        return GW_ERR_STATE;
    }
    gw->started = true;
    bool enabled_cfg = gw->cfg.enabled;
    pthread_mutex_unlock(&gw->lock);

    int rc = GW_OK;
    size_t subscribed = 0;
    for (; subscribed < sizeof handled_events / sizeof handled_events[0]; subscribed++) {
        int id = handled_events[subscribed];
        rc = event_bus_subscribe(gw->bus, id, handler_of(id), gw, MOD);
        if (rc != GW_OK)
            break;
    }
    if (rc != GW_OK) {
        GW_LOGE(MOD, "cannot subscribe to the event bus: %s", gw_strerror(rc));
        for (size_t i = 0; i < subscribed; i++)
            event_bus_unsubscribe(gw->bus, handled_events[i], handler_of(handled_events[i]), gw);
        pthread_mutex_lock(&gw->lock);
        gw->started = false;
        pthread_mutex_unlock(&gw->lock);
        return rc;
    }
    mqtt_client_set_connect_callback(gw->client, on_connected, gw);
    mqtt_client_set_link_callback(gw->client, on_link, gw);
    apply_commands(gw, false);
    if (link_up(gw))
        on_connected(gw); /* external client already up: announce now */
    if (gw->own_client) {
        if (enabled_cfg) {
            rc = mqtt_client_start(gw->client);
            if (rc != GW_OK && rc != GW_ERR_STATE) {
                mqtt_gateway_stop(gw);
                return GW_ERR_IO;
            }
        } else {
            GW_LOGI(MOD, "MQTT disabled in the configuration: not connecting");
        }
    }
    return GW_OK;
}

void mqtt_gateway_stop(struct mqtt_gateway *gw)
{
    if (!gw)
        return;
    pthread_mutex_lock(&gw->lock);
    bool was = gw->started;
    gw->started = false;
    char prefix[sizeof gw->cfg.topic_prefix];
    gw_text_copy(prefix, sizeof prefix, gw->cfg.topic_prefix);
    pthread_mutex_unlock(&gw->lock);
    if (!was)
        return;
    for (size_t i = 0; i < sizeof handled_events / sizeof handled_events[0]; i++)
        event_bus_unsubscribe(gw->bus, handled_events[i], handler_of(handled_events[i]), gw);
    apply_commands(gw, true);
    mqtt_client_set_connect_callback(gw->client, NULL, NULL);
    if (link_up(gw))
        publish_availability(gw, prefix, "offline");
    if (gw->own_client)
        mqtt_client_stop(gw->client); /* its "stopped" still goes on the bus */
    mqtt_client_set_link_callback(gw->client, NULL, NULL);
}

void mqtt_gateway_destroy(struct mqtt_gateway *gw)
{
    if (!gw)
        return;
    mqtt_gateway_stop(gw);
    if (gw->own_client)
        mqtt_client_destroy(gw->client);
    pthread_mutex_destroy(&gw->lock);
    pthread_mutex_destroy(&gw->ctl_lock);
    pthread_mutex_destroy(&gw->disc_lock);
    pthread_mutex_destroy(&gw->pub_lock);
    free(gw->scratch);
    free(gw);
}

void mqtt_gateway_set_enabled(struct mqtt_gateway *gw, bool enabled)
{
    if (!gw)
        return;
    pthread_mutex_lock(&gw->lock);
    bool changed = gw->enabled != enabled;
    gw->enabled = enabled;
    if (enabled) {
        gw->next_numeric_ms = 0;
        gw->next_status_ms = 0;
    }
    pthread_mutex_unlock(&gw->lock);
    if (changed)
        GW_LOGI(MOD, "publishing %s", enabled ? "enabled" : "disabled");
}

void mqtt_gateway_get_stats(struct mqtt_gateway *gw, struct mqtt_gateway_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!gw)
        return;
    pthread_mutex_lock(&gw->lock);
    *out = gw->stats;
    out->enabled = gw->enabled;
    out->us_per_sample_avg = gw->stats.samples_published
                                 ? (double)gw->us_total / (double)gw->stats.samples_published
                                 : 0.0;
    pthread_mutex_unlock(&gw->lock);
}
