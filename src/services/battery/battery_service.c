/* battery_service: bus inputs -> battery engine -> EVENT_BATTERY_UPDATE. See battery_service.h. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "battery_service.h"
#include "battery_service_internal.h"

#include "app_events.h"
#include "atomic_file.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PUBLISH_TIMEOUT_MS 50u
#define STATE_FILE_MAX 8192u
#define DEFAULT_SAVE_PERIOD_S 600u

EVENT_PAYLOAD_FITS(struct battery_view);

static const int subscribed[] = {
    EVENT_BMS_DATA_UPDATE, EVENT_BMS_COMM_LOST, EVENT_BMS_COMM_RESTORED, EVENT_BMS_SETTINGS_UPDATE,
    EVENT_BMS_EVENTS_UPDATE,
};
#define SUBSCRIBED_COUNT (sizeof subscribed / sizeof subscribed[0])

struct battery_service {
    struct event_bus *bus;
    char state_path[GW_PATH_MAX + 32];
    bool persist;
    uint32_t save_period_s;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop_requested, running, input_pending;
    pthread_t thread;

    struct battery_engine *engine;       /* large: heap */
    struct battery_view *view;           /* newest published view (heap) */
    struct battery_view *scratch;        /* the thread's step output (heap) */
    struct battery_service_stats stats;
    uint64_t step_us_total;
    bool storage_failing;
    struct gw_log_limit bad_log, frozen_log, drop_log;
};

/* ---- energy.json -------------------------------------------------------------------------- */

/* x rounded to `decimals` places: the file keeps what matters, not float noise. */
static double rounded(double x, int decimals)
{
    double scale = decimals == 3 ? 1e3 : 1e4;
    return round(x * scale) / scale;
}

/* The document with cJSON, then copied into buf with its newline. GW_ERR_NOMEM when cJSON
 * cannot allocate. */
int battery_state__to_json(const struct battery_engine_saved *s, int64_t wall_ms, char *buf, size_t cap)
{
    if (!s || !buf || cap == 0)
        return GW_ERR_INVAL;
    buf[0] = '\0';
    cJSON *doc = cJSON_CreateObject();
    cJSON *packs = NULL;
    bool ok = doc && cJSON_AddNumberToObject(doc, "version", 2) &&
              cJSON_AddNumberToObject(doc, "energy_in_wh", rounded(s->energy_in_wh, 3)) &&
              cJSON_AddNumberToObject(doc, "energy_out_wh", rounded(s->energy_out_wh, 3)) &&
              cJSON_AddNumberToObject(doc, "saved_at_ms", (double)wall_ms) &&
              (packs = cJSON_AddArrayToObject(doc, "packs")) != NULL;
    for (unsigned i = 0; ok && i < s->pack_count && i < BATTERY_MAX_PACKS; i++) {
        const struct charge_control_state *c = &s->packs[i].charge;
        cJSON *p = cJSON_CreateObject();
        ok = p && cJSON_AddItemToArray(packs, p);
        if (!ok) {
            cJSON_Delete(p);
            break;
        }
        ok = cJSON_AddNumberToObject(p, "id", s->packs[i].id) &&
             cJSON_AddBoolToObject(p, "valid", s->packs[i].valid) &&
             cJSON_AddNumberToObject(p, "phase", (unsigned)c->phase) &&
             cJSON_AddNumberToObject(p, "absorb_elapsed_ms", (double)c->absorb_elapsed_ms) &&
             cJSON_AddNumberToObject(p, "top_elapsed_ms", (double)c->top_elapsed_ms) &&
             cJSON_AddNumberToObject(p, "float_cvl_v", rounded(c->float_cvl_v, 4)) &&
             cJSON_AddNumberToObject(p, "cvl_v", rounded(c->cvl_v, 4));
    }
    char *text = ok ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text)
        return GW_ERR_NOMEM;
    struct gw_text t;
    gw_text_init(&t, buf, cap);
    gw_text_put_str(&t, text);
    gw_text_put_char(&t, '\n');
    cJSON_free(text);
    if (gw_text_truncated(&t)) {
        buf[0] = '\0';
        return GW_ERR_OVERFLOW;
    }
    return (int)gw_text_len(&t);
}

static bool number(const cJSON *obj, const char *key, double *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(it))
        return false;
    *out = it->valuedouble;
    return true;
}

int battery_state__from_json(const char *json, struct battery_engine_saved *out)
{
    if (!json || !out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_Parse(json);
    if (!root)
        return GW_ERR_PROTO;
    int rc = GW_ERR_PROTO;
    double version, in_wh, out_wh;
    if (!cJSON_IsObject(root) || !number(root, "version", &version) || (version != 1 && version != 2) ||
        !number(root, "energy_in_wh", &in_wh) || !number(root, "energy_out_wh", &out_wh))
        goto done;
    /* Ranges are the engine's to judge (it refuses with an alert); here only the shape. */
    out->energy_in_wh = in_wh;
    out->energy_out_wh = out_wh;
    const cJSON *packs = cJSON_GetObjectItemCaseSensitive(root, "packs");
    if (version == 2 && cJSON_IsArray(packs)) {
        const cJSON *p;
        cJSON_ArrayForEach(p, packs)
        {
            if (out->pack_count >= BATTERY_MAX_PACKS)
                break;
            double id, phase, absorb, top, fcvl, cvl;
            const cJSON *valid = cJSON_GetObjectItemCaseSensitive(p, "valid");
            if (!cJSON_IsObject(p) || !number(p, "id", &id) || id < 0 || id > 255 || !number(p, "phase", &phase) ||
                !number(p, "absorb_elapsed_ms", &absorb) || !number(p, "top_elapsed_ms", &top) ||
                !number(p, "float_cvl_v", &fcvl) || !number(p, "cvl_v", &cvl) || !cJSON_IsBool(valid))
                continue; /* one bad entry: that pack starts fresh, the others keep theirs */
            unsigned k = out->pack_count++;
            out->packs[k].id = (uint8_t)id;
            out->packs[k].valid = cJSON_IsTrue(valid);
            struct charge_control_state *c = &out->packs[k].charge;
            c->phase = phase >= 0 && phase <= 255 ? (uint8_t)phase : 255;
            c->absorb_elapsed_ms = absorb >= 0 && absorb < 1e15 ? (uint64_t)absorb : UINT64_MAX;
            c->top_elapsed_ms = top >= 0 && top < 1e15 ? (uint64_t)top : UINT64_MAX;
            c->float_cvl_v = (float)fcvl;
            c->cvl_v = (float)cvl;
        }
    }
    rc = GW_OK;
done:
    cJSON_Delete(root);
    return rc;
}

static void storage_event(struct battery_service *bs, int error, const char *msg)
{
    struct app_storage_error e = { .error = error };
    gw_text_copy(e.module, sizeof e.module, "energy");
    gw_text_copy(e.message, sizeof e.message, msg);
    int rc = event_bus_publish(bs->bus, error ? EVENT_STORAGE_ERROR : EVENT_STORAGE_OK, &e, sizeof e, 200);
    if (rc != GW_OK)
        GW_LOGW(MOD, "energy storage %s not published: %s", error ? "error" : "ok", gw_strerror(rc));
}

static void restore_state(struct battery_service *bs)
{
    /* Temporaries a kill during a save left behind (no writer runs yet). */
    atomic_file_cleanup(bs->state_path);
    char *buf = malloc(STATE_FILE_MAX);
    if (!buf)
        return;
    size_t len = 0;
    int rc = atomic_file_read(bs->state_path, buf, STATE_FILE_MAX - 1, &len);
    if (rc == GW_ERR_NOT_FOUND) {
        GW_LOGI(MOD, "no %s yet: energy counters start at 0", bs->state_path);
        free(buf);
        return;
    }
    struct battery_engine_saved *saved = calloc(1, sizeof *saved);
    if (rc == GW_OK) {
        buf[len] = '\0';
        rc = strlen(buf) == len && saved ? battery_state__from_json(buf, saved) : GW_ERR_PROTO;
    }
    if (rc == GW_OK) {
        rc = battery_engine_restore(bs->engine, saved);
        if (rc == GW_OK) {
            GW_LOGI(MOD, "energy counters restored from %s: in %.1f Wh, out %.1f Wh (%u pack charge states)",
                    bs->state_path, saved->energy_in_wh, saved->energy_out_wh, (unsigned)saved->pack_count);
        } else {
            GW_LOGE(MOD, "%s holds impossible counters (%g Wh in, %g Wh out): refused, counting from 0",
                    bs->state_path, saved->energy_in_wh, saved->energy_out_wh);
        }
    }
    if (rc != GW_OK) {
        char aside[sizeof bs->state_path + 16];
        snprintf(aside, sizeof aside, "%s.corrupt", bs->state_path);
        bool kept = rename(bs->state_path, aside) == 0;
        GW_LOGE(MOD, "energy counters in %s unreadable (%s): starting from 0%s%s", bs->state_path, gw_strerror(rc),
                kept ? ", the file is kept as " : "", kept ? aside : "");
        char msg[128];
        snprintf(msg, sizeof msg, "energy counters refused (%s): counting from 0", gw_strerror(rc));
        storage_event(bs, rc, msg);
    }
    free(saved);
    free(buf);
}

static void save_state(struct battery_service *bs)
{
    if (!bs->persist)
        return;
    struct battery_engine_saved *saved = calloc(1, sizeof *saved);
    char *buf = malloc(STATE_FILE_MAX);
    int rc = GW_ERR_NOMEM;
    if (saved && buf) {
        pthread_mutex_lock(&bs->lock);
        battery_engine_save(bs->engine, saved);
        pthread_mutex_unlock(&bs->lock);
        int n = battery_state__to_json(saved, gw_wall_ms(), buf, STATE_FILE_MAX);
        rc = n < 0 ? n : atomic_file_write(bs->state_path, buf, (size_t)n, 0644);
    }
    pthread_mutex_lock(&bs->lock);
    if (rc == GW_OK)
        bs->stats.saves++;
    else
        bs->stats.save_errors++;
    bool was_failing = bs->storage_failing;
    bs->storage_failing = rc != GW_OK;
    pthread_mutex_unlock(&bs->lock);
    if (rc != GW_OK && !was_failing) {
        GW_LOGE(MOD, "cannot save %s: %s (the counters stay in memory, retried)", bs->state_path, gw_strerror(rc));
        storage_event(bs, rc, "cannot save the energy counters");
    } else if (rc == GW_OK && was_failing) {
        GW_LOGI(MOD, "saved %s again", bs->state_path);
        storage_event(bs, GW_OK, "energy counters saved");
    }
    free(saved);
    free(buf);
}

/* ---- bus inputs (dispatcher thread) -------------------------------------------------------- */

static void nudge(struct battery_service *bs)
{
    bs->input_pending = true;
    pthread_cond_signal(&bs->wake);
}

static void on_event(const struct gw_event *ev, void *ctx)
{
    struct battery_service *bs = ctx;
    uint64_t now = gw_now_ms();
    switch (ev->id) {
    case EVENT_BMS_DATA_UPDATE: {
        const struct bms_live_data *in = EVENT_PAYLOAD(ev, struct bms_live_data);
        if (!in)
            return;
        struct bms_live_data d = *in;
        pthread_mutex_lock(&bs->lock);
        int r = battery_engine_feed_sample(bs->engine, &d, now);
        unsigned pos = 0;
        for (; pos < bs->engine->cfg.pack_count && bs->engine->packs[pos].cfg.id != d.battery_id; pos++)
            ;
        char reason[BATTERY_REASON_LEN] = "";
        uint32_t total = 0;
        if (pos < bs->engine->cfg.pack_count) {
            gw_text_copy(reason, sizeof reason, bs->engine->packs[pos].bad_reason);
            total = bs->engine->packs[pos].bad_total;
        }
        switch (r) {
        case BATTERY_FEED_TAKEN: bs->stats.samples_taken++; break;
        case BATTERY_FEED_IMPLAUSIBLE: bs->stats.samples_implausible++; break;
        case BATTERY_FEED_FROZEN: bs->stats.samples_frozen++; break;
        case BATTERY_FEED_UNKNOWN_PACK: bs->stats.samples_unknown_pack++; break;
        default: break;
        }
        nudge(bs);
        pthread_mutex_unlock(&bs->lock);
        if (r == BATTERY_FEED_IMPLAUSIBLE)
            gw_log_ratelimited(&bs->bad_log, 60000, GW_LOG_WARN, MOD,
                               "battery %u: implausible sample refused (%s; %u so far)", d.battery_id, reason,
                               (unsigned)total);
        else if (r == BATTERY_FEED_FROZEN)
            gw_log_ratelimited(&bs->frozen_log, 60000, GW_LOG_WARN, MOD,
                               "battery %u: the BMS repeats the same sample (lifetime counter %u s not advancing): "
                               "treated as stale", d.battery_id, (unsigned)d.lifetime_s);
        break;
    }
    case EVENT_BMS_COMM_LOST:
    case EVENT_BMS_COMM_RESTORED: {
        const struct app_bms_comm *c = EVENT_PAYLOAD(ev, struct app_bms_comm);
        if (!c)
            return;
        pthread_mutex_lock(&bs->lock);
        battery_engine_feed_comm(bs->engine, c->battery_id, ev->id == EVENT_BMS_COMM_LOST);
        nudge(bs);
        pthread_mutex_unlock(&bs->lock);
        break;
    }
    case EVENT_BMS_SETTINGS_UPDATE: {
        const struct app_bms_settings *s = EVENT_PAYLOAD(ev, struct app_bms_settings);
        if (!s)
            return;
        pthread_mutex_lock(&bs->lock);
        battery_engine_feed_settings(bs->engine, s->battery_id, &s->settings);
        pthread_mutex_unlock(&bs->lock);
        break;
    }
    case EVENT_BMS_EVENTS_UPDATE: {
        const struct app_bms_events *l = EVENT_PAYLOAD(ev, struct app_bms_events);
        if (!l)
            return;
        pthread_mutex_lock(&bs->lock);
        battery_engine_feed_events(bs->engine, l->battery_id, &l->log);
        pthread_mutex_unlock(&bs->lock);
        break;
    }
    default:
        break;
    }
}

/* ---- the thread ---------------------------------------------------------------------------- */

static uint64_t elapsed_us(const struct timespec *a, const struct timespec *b)
{
    int64_t ns = (int64_t)(b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
    return ns > 0 ? (uint64_t)ns / 1000u : 0;
}

void battery_service__timers_init(struct battery_service__timers *t, uint64_t now_ms, uint64_t save_period_ms)
{
    t->next_step_ms = now_ms;
    t->save_period_ms = save_period_ms;
    t->next_save_ms = now_ms + save_period_ms;
}

struct battery_service__decision battery_service__decide(const struct battery_service__timers *t, uint64_t now_ms,
                                                         bool input_pending)
{
    struct battery_service__decision d = {
        .step = input_pending || now_ms >= t->next_step_ms,
        .save = now_ms >= t->next_save_ms,
    };
    d.deadline_ms = t->next_step_ms < t->next_save_ms ? t->next_step_ms : t->next_save_ms;
    return d;
}

void battery_service__stepped(struct battery_service__timers *t, uint64_t engine_deadline_ms)
{
    t->next_step_ms = engine_deadline_ms;
}

void battery_service__saved(struct battery_service__timers *t, uint64_t now_ms)
{
    t->next_save_ms = now_ms + t->save_period_ms;
}

void battery_service__save_period(struct battery_service__timers *t, uint64_t now_ms, uint64_t save_period_ms)
{
    uint64_t last_save = t->next_save_ms - t->save_period_ms;
    t->save_period_ms = save_period_ms;
    (void)now_ms; /* the last save was at or before now: a save already overdue comes at once */
    t->next_save_ms = last_save + save_period_ms;
}

/* The shell: the timers decide, one wait until their deadline or an input (nudge). */
static void *service_main(void *arg)
{
    struct battery_service *bs = arg;
    pthread_setname_np(pthread_self(), "battery");
    struct battery_service__timers timers;
    battery_service__timers_init(&timers, gw_now_ms(), (uint64_t)bs->save_period_s * 1000u);
    pthread_mutex_lock(&bs->lock);
    while (!bs->stop_requested) {
        uint64_t now = gw_now_ms();
        if (timers.save_period_ms != (uint64_t)bs->save_period_s * 1000u)
            battery_service__save_period(&timers, now, (uint64_t)bs->save_period_s * 1000u);
        struct battery_service__decision d = battery_service__decide(&timers, now, bs->input_pending);
        if (!d.step && !d.save) {
            gw_clock_wait(&bs->wake, &bs->lock, d.deadline_ms);
            continue;
        }
        bool queued = true;
        if (d.step) {
            bs->input_pending = false;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            battery_service__stepped(&timers, battery_engine_step(bs->engine, now, bs->scratch));
            clock_gettime(CLOCK_MONOTONIC, &t1);
            bs->scratch->wall_time_ms = gw_wall_ms();
            uint64_t us = elapsed_us(&t0, &t1);
            bs->stats.steps++;
            bs->step_us_total += us;
            if (us > bs->stats.step_us_max)
                bs->stats.step_us_max = us;
            memcpy(bs->view, bs->scratch, sizeof *bs->view);
        }
        pthread_mutex_unlock(&bs->lock);
        if (d.step) {
            /* Published outside the lock: a full bus must not stall the inputs. The scratch
             * view is only written by this thread. */
            queued = event_bus_publish(bs->bus, EVENT_BATTERY_UPDATE, bs->scratch, sizeof *bs->scratch,
                                       PUBLISH_TIMEOUT_MS) == GW_OK;
            if (!queued)
                gw_log_ratelimited(&bs->drop_log, 60000, GW_LOG_WARN, MOD, "battery view dropped: event bus full");
        }
        if (d.save) {
            save_state(bs);
            battery_service__saved(&timers, gw_now_ms());
        }
        pthread_mutex_lock(&bs->lock);
        if (!queued)
            bs->stats.views_dropped++;
    }
    pthread_mutex_unlock(&bs->lock);
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

int battery_service_create(const struct battery_service_options *opts, struct battery_service **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!opts || !opts->bus)
        return GW_ERR_INVAL;
    struct battery_service *bs = calloc(1, sizeof *bs);
    if (!bs)
        return GW_ERR_NOMEM;
    int rc = GW_ERR_NOMEM;
    bs->bus = opts->bus;
    bs->save_period_s = opts->save_period_s ? opts->save_period_s : DEFAULT_SAVE_PERIOD_S;
    pthread_mutex_init(&bs->lock, NULL);
    if (gw_clock_cond_init(&bs->wake) != GW_OK) {
        pthread_mutex_destroy(&bs->lock);
        free(bs);
        return GW_ERR_NOMEM;
    }
    bs->engine = calloc(1, sizeof *bs->engine);
    bs->view = calloc(1, sizeof *bs->view);
    bs->scratch = calloc(1, sizeof *bs->scratch);
    if (!bs->engine || !bs->view || !bs->scratch)
        goto err;
    rc = battery_engine_init(bs->engine, &opts->engine);
    if (rc) {
        GW_LOGE(MOD, "bad pack list (%u packs): %s", (unsigned)opts->engine.pack_count, gw_strerror(rc));
        goto err;
    }
    if (opts->data_dir && opts->data_dir[0]) {
        int n = snprintf(bs->state_path, sizeof bs->state_path, "%s/%s", opts->data_dir, BATTERY_STATE_FILE);
        if (n < 0 || (size_t)n >= sizeof bs->state_path) {
            rc = GW_ERR_INVAL;
            goto err;
        }
        bs->persist = true;
        restore_state(bs);
    }
    for (size_t i = 0; i < SUBSCRIBED_COUNT; i++) {
        rc = event_bus_subscribe(bs->bus, subscribed[i], on_event, bs, MOD);
        if (rc)
            goto err;
    }
    *out = bs;
    return GW_OK;
err:
    battery_service_destroy(bs);
    return rc;
}

int battery_service_start(struct battery_service *bs)
{
    if (!bs)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&bs->lock);
    if (bs->running) {
        pthread_mutex_unlock(&bs->lock);
        return GW_ERR_STATE;
    }
    bs->stop_requested = false;
    int err = pthread_create(&bs->thread, NULL, service_main, bs);
    bs->running = err == 0;
    pthread_mutex_unlock(&bs->lock);
    if (err) {
        GW_LOGE(MOD, "cannot start the battery thread: %s", strerror(err));
        return GW_ERR_IO;
    }
    return GW_OK;
}

void battery_service_stop(struct battery_service *bs)
{
    if (!bs)
        return;
    pthread_mutex_lock(&bs->lock);
    bool running = bs->running;
    bs->stop_requested = true;
    pthread_cond_broadcast(&bs->wake);
    pthread_mutex_unlock(&bs->lock);
    if (running) {
        pthread_join(bs->thread, NULL);
        pthread_mutex_lock(&bs->lock);
        bs->running = false;
        pthread_mutex_unlock(&bs->lock);
        save_state(bs);
    }
}

void battery_service_destroy(struct battery_service *bs)
{
    if (!bs)
        return;
    battery_service_stop(bs);
    for (size_t i = 0; i < SUBSCRIBED_COUNT; i++)
        event_bus_unsubscribe(bs->bus, subscribed[i], on_event, bs);
    pthread_cond_destroy(&bs->wake);
    pthread_mutex_destroy(&bs->lock);
    free(bs->engine);
    free(bs->view);
    free(bs->scratch);
    free(bs);
}

int battery_service_apply_config(struct battery_service *bs, const struct battery_engine_config *cfg)
{
    if (!bs || !cfg)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&bs->lock);
    int rc = battery_engine_set_config(bs->engine, cfg);
    nudge(bs);
    pthread_mutex_unlock(&bs->lock);
    return rc;
}

int battery_service_set_save_period_s(struct battery_service *bs, uint32_t save_period_s)
{
    if (!bs || save_period_s == 0)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&bs->lock);
    if (bs->save_period_s != save_period_s)
        GW_LOGI(MOD, "energy counters now saved every %u s", (unsigned)save_period_s);
    bs->save_period_s = save_period_s;
    nudge(bs);
    pthread_mutex_unlock(&bs->lock);
    return GW_OK;
}

int battery_service_request_cap(struct battery_service *bs, const struct app_charge_cap *request, char *answer,
                                size_t answer_len)
{
    char scratch[8];
    if (!answer || answer_len == 0) {
        answer = scratch;
        answer_len = sizeof scratch;
    }
    answer[0] = '\0';
    if (!bs || !request)
        return GW_ERR_INVAL;
    struct app_charge_cap cap = *request;
    cap.source[sizeof cap.source - 1] = '\0';
    pthread_mutex_lock(&bs->lock);
    uint32_t outputs = bs->engine->limit_outputs;
    int rc = battery_engine_set_cap(bs->engine, &cap, gw_now_ms());
    if (rc == GW_OK && outputs)
        bs->stats.caps_applied++;
    else if (rc == GW_OK)
        bs->stats.caps_without_effect++;
    nudge(bs);
    pthread_mutex_unlock(&bs->lock);
    if (rc != GW_OK) {
        gw_text_copy(answer, answer_len, "invalid cap (a value is not a number)");
        GW_LOGW(MOD, "charge cap from '%s' rejected: %s", cap.source, gw_strerror(rc));
        return rc;
    }
    if (!outputs) {
        gw_text_copy(answer, answer_len, "no effect: no output sends limits");
        GW_LOGW(MOD, "charge cap from '%s' has no effect: no output sends limits to a charger", cap.source);
        return GW_ERR_UNSUPPORTED;
    }
    if (cap.duration_s == 0)
        gw_text_copy(answer, answer_len, "applied: caps cancelled");
    else
        gw_text_copy(answer, answer_len, "applied");
    char ccl[24] = "uncapped", dcl[24] = "uncapped";
    if (cap.ccl_cap_a >= 0.0f)
        snprintf(ccl, sizeof ccl, "<= %.1f A", (double)cap.ccl_cap_a);
    if (cap.dcl_cap_a >= 0.0f)
        snprintf(dcl, sizeof dcl, "<= %.1f A", (double)cap.dcl_cap_a);
    GW_LOGI(MOD, "charge cap from '%s': CCL %s, DCL %s for %u s", cap.source, ccl, dcl, (unsigned)cap.duration_s);
    return GW_OK;
}

void battery_service_set_limit_outputs(struct battery_service *bs, uint32_t outputs)
{
    if (!bs)
        return;
    pthread_mutex_lock(&bs->lock);
    battery_engine_set_limit_outputs(bs->engine, outputs);
    nudge(bs);
    pthread_mutex_unlock(&bs->lock);
}

int battery_service_get_view(struct battery_service *bs, struct battery_view *out)
{
    if (!bs || !out)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&bs->lock);
    memcpy(out, bs->view, sizeof *out);
    pthread_mutex_unlock(&bs->lock);
    return GW_OK;
}

void battery_service_get_stats(struct battery_service *bs, struct battery_service_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!bs)
        return;
    pthread_mutex_lock(&bs->lock);
    *out = bs->stats;
    out->step_us_avg = bs->stats.steps ? (double)bs->step_us_total / (double)bs->stats.steps : 0.0;
    pthread_mutex_unlock(&bs->lock);
}
