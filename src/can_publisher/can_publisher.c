/* can_publisher: Victron CAN-bus BMS frames on a schedule, charge control, stale-data safety,
 * inverter link tracking, energy counters and the frame tap. See can_publisher.h. */
#define _GNU_SOURCE /* PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP */
#include "can_publisher.h"
#include "can_publisher_internal.h"

#include "app_events.h"
#include "charge_control.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "tinybms.h"
#include "victron.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_MOD "can_publisher"
#define WAIT_SLICE_MS 50u          /* longest real-time sleep of the TX loop (fake clocks move) */
#define RX_TIMEOUT_MS 100u         /* recv slice of the RX thread (stop latency) */
#define CYCLE_BUDGET_MS 500u       /* all frames of one cycle must be written within */
#define REOPEN_FIRST_MS 5000u      /* retry a transport that went away after, */
#define REOPEN_MAX_MS 60000u       /* doubling up to this (each failed open logs one line) */
#define EVENT_TIMEOUT_MS 20u       /* never block the TX thread on a full bus for long */



struct can_publisher {
    struct event_bus *bus;
    uint16_t live_ids[VICTRON_MAX_FRAMES];     /* the encoder's sets, in send order */
    size_t live_count;
    uint16_t identity_ids[VICTRON_MAX_FRAMES];
    size_t identity_count;
    uint8_t battery_id;
    bool persist;
    char energy_path[GW_PATH_MAX + 32];
    char spec[CAN_SPEC_MAX];
    uint32_t bitrate;

    /* Transport: readers (send/recv) share it, a reopen takes it exclusively. */
    pthread_rwlock_t tp_lock;
    struct can_transport *given;      /* borrowed from the options */
    struct can_transport *tp;         /* in use: given, or opened by us */
    bool tp_broken;                   /* a send/recv reported the device gone (under lock) */

    /* Everything below under lock. */
    pthread_mutex_t lock;
    pthread_cond_t wake;              /* stop requests */
    bool stop_requested;
    bool running;
    pthread_t tx_thread, rx_thread;
    bool rx_started;

    struct gw_config_can can_cfg;
    struct gw_config_charge charge_cfg;
    struct charge_control cc;
    struct victron_alarm_thresholds thresholds;

    struct bms_live_data sample;
    bool have_sample;
    uint64_t sample_ms;               /* monotonic time of the newest valid sample */
    struct bms_settings settings;
    bool have_settings;
    struct bms_event_log events;
    bool have_events;
    struct bms_version version;
    bool have_version;

    bool stale;
    uint32_t stale_transitions;

    bool link;
    bool link_identified;
    uint32_t link_last_id;
    uint64_t link_last_ms;
    uint64_t rx_frames;

    struct app_charge_limits limits;
    struct can_energy energy;
    uint64_t energy_saves, energy_save_errors;
    double saved_in_wh, saved_out_wh;  /* what the file holds (restored or last saved) */
    bool storage_failing;

    uint64_t live_cycles, identity_cycles, frames_sent, frames_failed;
    int last_error;
    uint32_t last_error_id;
    size_t id_count;
    struct can_publisher_id_counter ids[CAN_PUBLISHER_MAX_IDS];

    struct gw_log_limit withheld_log, tx_log, reopen_log;

    /* Tap ring, its own lock so the UI never waits on a cycle. */
    pthread_mutex_t tap_lock;
    struct can_tap_entry tap[CAN_TAP_ENTRIES];
    uint64_t tap_seq;                 /* seq of the newest entry */
};

/* ---- configuration --------------------------------------------------------------------- */

static int check_range(const char *name, uint64_t v, uint64_t lo, uint64_t hi)
{
    if (v < lo || v > hi) {
        GW_LOGE(LOG_MOD, "can.%s = %llu out of range %llu..%llu", name, (unsigned long long)v,
                (unsigned long long)lo, (unsigned long long)hi);
        return GW_ERR_RANGE;
    }
    return GW_OK;
}

static int validate_can(const struct gw_config_can *c)
{
    int rc = check_range("live_period_ms", c->live_period_ms, 100, 60000);
    if (!rc)
        rc = check_range("identity_period_ms", c->identity_period_ms, 100, 600000);
    if (!rc)
        rc = check_range("stale_timeout_ms", c->stale_timeout_ms, 500, 60000);
    if (!rc)
        rc = check_range("inverter_timeout_ms", c->inverter_timeout_ms, 500, 3600000);
    if (!rc)
        rc = check_range("energy_save_period_s", c->energy_save_period_s, 1, 86400);
    if (!rc && c->live_period_ms >= 3000)
        GW_LOGW(LOG_MOD, "can.live_period_ms = %u: the GX stops charging when 0x351 is older than 3 s",
                (unsigned)c->live_period_ms);
    return rc;
}

/* Thresholds from the chemistry defaults, moved to the BMS's own cutoffs when known. */
static void refresh_thresholds(struct can_publisher *p)
{
    victron_alarm_thresholds_defaults(&p->thresholds, p->charge_cfg.chemistry);
    if (p->have_settings)
        {
            struct bms_pack_limits l;
            tinybms_pack_limits_decode(&p->settings, &l);
            victron_alarm_thresholds_apply_limits(&p->thresholds, &l);
        }
}

/* ---- events ---------------------------------------------------------------------------- */

static void publish(struct can_publisher *p, int id, const void *payload, size_t size)
{
    if (!event_bus_publish(p->bus, id, payload, size, EVENT_TIMEOUT_MS))
        GW_LOGD(LOG_MOD, "event %s dropped (bus full)", app_event_name(id));
}

static void storage_event(struct can_publisher *p, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void storage_event(struct can_publisher *p, int error, const char *fmt, ...)
{
    struct app_storage_error ev = { .error = error };
    snprintf(ev.module, sizeof ev.module, "energy");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev.message, sizeof ev.message, fmt, ap);
    va_end(ap);
    publish(p, error == GW_OK ? EVENT_STORAGE_OK : EVENT_STORAGE_ERROR, &ev, sizeof ev);
}

static void on_data(const struct gw_event *ev, void *ctx)
{
    struct can_publisher *p = ctx;
    if (ev->size != sizeof(struct bms_live_data))
        return;
    struct bms_live_data d;
    memcpy(&d, ev->payload, sizeof d);
    if (d.battery_id != p->battery_id)
        return;
    uint64_t now = gw_now_ms();
    /* The sample's own decode time, unless it is missing or in the future (another clock). */
    uint64_t t = (d.timestamp_ms == 0 || d.timestamp_ms > now) ? now : d.timestamp_ms;
    pthread_mutex_lock(&p->lock);
    if (d.valid && isfinite(d.pack_voltage_v) && isfinite(d.pack_current_a)) {
        can_energy__add_sample(&p->energy, t, d.pack_voltage_v, d.pack_current_a, p->can_cfg.stale_timeout_ms);
        if (!p->have_sample || t >= p->sample_ms) {
            p->sample = d;
            p->sample_ms = t;
            p->have_sample = true;
        }
    } else {
        can_energy__break(&p->energy); /* a gap: do not integrate across it */
    }
    pthread_mutex_unlock(&p->lock);
}

static void on_settings(const struct gw_event *ev, void *ctx)
{
    struct can_publisher *p = ctx;
    if (ev->size != sizeof(struct app_bms_settings))
        return;
    const struct app_bms_settings *s = ev->payload;
    if (s->battery_id != p->battery_id || !s->settings.valid)
        return;
    pthread_mutex_lock(&p->lock);
    p->settings = s->settings;
    p->have_settings = true;
    refresh_thresholds(p);
    pthread_mutex_unlock(&p->lock);
}

static void on_events(const struct gw_event *ev, void *ctx)
{
    struct can_publisher *p = ctx;
    if (ev->size != sizeof(struct app_bms_events))
        return;
    const struct app_bms_events *e = ev->payload;
    if (e->battery_id != p->battery_id || !e->log.valid)
        return;
    pthread_mutex_lock(&p->lock);
    p->events = e->log;
    p->have_events = true;
    pthread_mutex_unlock(&p->lock);
}

static void on_version(const struct gw_event *ev, void *ctx)
{
    struct can_publisher *p = ctx;
    if (ev->size != sizeof(struct app_bms_version))
        return;
    const struct app_bms_version *v = ev->payload;
    if (v->battery_id != p->battery_id || !v->version.valid)
        return;
    pthread_mutex_lock(&p->lock);
    p->version = v->version;
    p->version.serial[sizeof p->version.serial - 1] = '\0';
    p->have_version = true;
    pthread_mutex_unlock(&p->lock);
}

static void on_cap(const struct gw_event *ev, void *ctx)
{
    struct can_publisher *p = ctx;
    if (ev->size != sizeof(struct app_charge_cap))
        return;
    struct app_charge_cap cap;
    memcpy(&cap, ev->payload, sizeof cap);
    cap.source[sizeof cap.source - 1] = '\0';
    pthread_mutex_lock(&p->lock);
    int rc = charge_control_set_cap(&p->cc, &cap, gw_now_ms());
    pthread_mutex_unlock(&p->lock);
    if (rc != GW_OK)
        GW_LOGW(LOG_MOD, "charge cap request from '%s' rejected: %s", cap.source, gw_strerror(rc));
    else
        GW_LOGI(LOG_MOD, "charge cap from '%s': CCL <= %.1f A, DCL <= %.1f A for %u s", cap.source,
                (double)cap.ccl_cap_a, (double)cap.dcl_cap_a, (unsigned)cap.duration_s);
}

static const struct {
    int id;
    event_bus_handler_fn fn;
    const char *name;
} subscriptions[] = {
    { EVENT_BMS_DATA_UPDATE, on_data, "can_publisher.data" },
    { EVENT_BMS_SETTINGS_UPDATE, on_settings, "can_publisher.settings" },
    { EVENT_BMS_EVENTS_UPDATE, on_events, "can_publisher.events" },
    { EVENT_BMS_VERSION_UPDATE, on_version, "can_publisher.version" },
    { EVENT_CHARGE_CAP_REQUEST, on_cap, "can_publisher.cap" },
};
#define SUBSCRIPTION_COUNT (sizeof subscriptions / sizeof subscriptions[0])

/* ---- tap and counters ------------------------------------------------------------------ */

static void tap_add(struct can_publisher *p, uint8_t dir, int result, const struct can_frame_gw *f)
{
    struct can_tap_entry e = { .mono_ms = gw_now_ms(), .wall_ms = gw_wall_ms(), .dir = dir,
                               .result = result, .frame = *f };
    can_publisher_describe_frame(f, e.text, sizeof e.text);
    pthread_mutex_lock(&p->tap_lock);
    e.seq = ++p->tap_seq;
    p->tap[(e.seq - 1) % CAN_TAP_ENTRIES] = e;
    pthread_mutex_unlock(&p->tap_lock);
}

/* Called with lock held. */
static struct can_publisher_id_counter *id_counter(struct can_publisher *p, uint16_t id)
{
    for (size_t i = 0; i < p->id_count; i++)
        if (p->ids[i].id == id)
            return &p->ids[i];
    if (p->id_count >= CAN_PUBLISHER_MAX_IDS)
        return NULL;
    struct can_publisher_id_counter *c = &p->ids[p->id_count++];
    memset(c, 0, sizeof *c);
    c->id = id;
    return c;
}

/* ---- transport ------------------------------------------------------------------------- */

static void mark_broken(struct can_publisher *p, int rc)
{
    if (rc != GW_ERR_CLOSED)
        return;
    pthread_mutex_lock(&p->lock);
    p->tp_broken = true;
    pthread_mutex_unlock(&p->lock);
}

/* Reopens a transport we opened ourselves after the device went away (USB adapter unplugged).
 * Returns the delay before the next attempt (ms): doubling while it fails. */
static uint32_t maybe_reopen(struct can_publisher *p, uint32_t delay_ms)
{
    pthread_mutex_lock(&p->lock);
    bool broken = p->tp_broken;
    pthread_mutex_unlock(&p->lock);
    if (!broken || p->given)
        return REOPEN_FIRST_MS;
    pthread_rwlock_wrlock(&p->tp_lock);
    can_transport_close(p->tp);
    p->tp = NULL;
    int rc = can_transport_open(p->spec, p->bitrate, &p->tp);
    pthread_rwlock_unlock(&p->tp_lock);
    if (rc == GW_OK) {
        GW_LOGI(LOG_MOD, "CAN transport %s reopened", p->spec);
        pthread_mutex_lock(&p->lock);
        p->tp_broken = false;
        pthread_mutex_unlock(&p->lock);
        return REOPEN_FIRST_MS;
    }
    uint32_t next = delay_ms * 2 > REOPEN_MAX_MS ? REOPEN_MAX_MS : delay_ms * 2;
    gw_log_ratelimited(&p->reopen_log, 60000, GW_LOG_WARN, LOG_MOD,
                       "CAN transport %s still unavailable (%s), next attempt in %u s", p->spec,
                       gw_strerror(rc), (unsigned)(next / 1000));
    return next;
}

/* ---- the cycles ------------------------------------------------------------------------ */

/* Everything a cycle needs, copied under the lock so encoding and I/O run without it. */
struct cycle_input {
    struct bms_live_data live;
    bool have_sample;
    bool stale;
    bool send_limits;
    bool online;                      /* 0x35A / 0x372: what the GX is told, = 0x351 sent */
    struct victron_alarm_state alarms;
    struct victron_identity identity;
    struct charge_limits limits;
    double energy_in_wh, energy_out_wh;
    float capacity_ah;
};

/* Copies printable ASCII of src into dst (cap bytes, NUL-terminated). */
static void copy_text(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* Called with lock held. */
static void fill_identity(struct can_publisher *p, struct victron_identity *id)
{
    memset(id, 0, sizeof *id);
    copy_text(id->manufacturer, sizeof id->manufacturer, p->can_cfg.manufacturer);
    copy_text(id->battery_name, sizeof id->battery_name, p->can_cfg.battery_name);
    copy_text(id->family, sizeof id->family, p->can_cfg.family);
    if (p->can_cfg.serial[0]) {
        copy_text(id->serial, sizeof id->serial, p->can_cfg.serial);
    } else if (p->have_version) {
        /* The BMS serial has 24 hex digits; 0x380/0x381 carry 16: keep the last 16, the part
         * that differs between units. */
        size_t n = strlen(p->version.serial);
        copy_text(id->serial, sizeof id->serial, p->version.serial + (n > 16 ? n - 16 : 0));
    }
    id->model_id = p->can_cfg.model_id;
    if (p->have_version) {
        id->fw_major = p->version.fw_public;
        id->fw_minor = (uint8_t)(p->version.fw_internal & 0xFF);
        id->hw_version = p->version.hw_version;
    }
}

/* Called with lock held: staleness, charge-control step, alarm flags, and the copies. */
static void prepare_cycle(struct can_publisher *p, uint64_t now, bool step, struct cycle_input *in)
{
    memset(in, 0, sizeof *in);
    /* A sample may have arrived after the loop read `now`: its age is then 0, not negative. */
    uint64_t age = (p->have_sample && now > p->sample_ms) ? now - p->sample_ms : 0;
    bool fresh = p->have_sample && p->sample.valid && age <= p->can_cfg.stale_timeout_ms;
    if (fresh && p->stale) {
        GW_LOGI(LOG_MOD, "BMS data fresh again: sending 0x351 (charge limits)");
    } else if (!fresh && !p->stale) {
        p->stale_transitions++;
        GW_LOGW(LOG_MOD, "BMS data stale (newest sample %llu ms old, limit %u ms): withholding "
                "0x351, GX stops charging/discharging", (unsigned long long)age,
                (unsigned)p->can_cfg.stale_timeout_ms);
    }
    p->stale = !fresh;
    in->stale = !fresh;
    in->have_sample = p->have_sample;
    if (p->have_sample)
        in->live = p->sample;
    else
        in->live.battery_id = p->battery_id;

    if (step) {
        struct charge_inputs ci = {
            .live = fresh ? &p->sample : NULL,
            .settings = p->have_settings ? &p->settings : NULL,
            .events = p->have_events ? &p->events : NULL,
        };
        int rc = charge_control_step(&p->cc, &ci, now, &in->limits);
        in->send_limits = fresh && rc == GW_OK; /* a fresh sample may still be unusable */
        struct app_charge_limits *l = &p->limits;
        l->battery_id = p->battery_id;
        l->cvl_v = in->limits.cvl_v;
        l->ccl_a = in->limits.ccl_a;
        l->dcl_a = in->limits.dcl_a;
        l->phase = in->limits.phase;
        l->sending = in->send_limits;
        copy_text(l->cvl_reason, sizeof l->cvl_reason, in->limits.cvl_reason);
        copy_text(l->ccl_reason, sizeof l->ccl_reason, in->limits.ccl_reason);
        copy_text(l->dcl_reason, sizeof l->dcl_reason, in->limits.dcl_reason);
    } else {
        in->limits.cvl_v = p->limits.cvl_v;
        in->limits.ccl_a = p->limits.ccl_a;
        in->limits.dcl_a = p->limits.dcl_a;
        in->send_limits = p->limits.sending;
    }
    /* Online only while the limits go out: data the controller refuses (a cell register at 0,
     * a cell count out of range) stops the GX just like stale data, and must look like it. */
    in->online = fresh && in->send_limits;
    victron_alarms_from_bms(&in->live, p->have_events ? &p->events : NULL, &p->thresholds, in->online,
                            &in->alarms);
    fill_identity(p, &in->identity);
    in->energy_in_wh = p->energy.in_wh;
    in->energy_out_wh = p->energy.out_wh;
    /* Register 306: battery capacity in 0.01 Ah. */
    unsigned cap_idx = 306 - BMS_SETTINGS_FIRST;
    if (p->have_settings && (p->settings.present_mask & (1ull << cap_idx)))
        in->capacity_ah = (float)p->settings.raw[cap_idx] / 100.0f;
}

/* Frames computed from live measurements: meaningless before the first sample. */
static bool needs_sample(uint16_t id)
{
    switch (id) {
    case VICTRON_ID_SOC: case VICTRON_ID_MEASURE: case VICTRON_ID_CELL_EXTREMES:
    case VICTRON_ID_MIN_CELL_ID: case VICTRON_ID_MAX_CELL_ID: case VICTRON_ID_MIN_TEMP_ID:
    case VICTRON_ID_MAX_TEMP_ID:
        return true;
    default:
        return false;
    }
}

/* Encodes and sends the frames of one cycle; returns how many were sent / failed. */
static void send_frames(struct can_publisher *p, const uint16_t *ids, size_t n, const struct cycle_input *in,
                        struct app_can_tx *result)
{
    struct victron_inputs vin = {
        .live = &in->live,
        .alarms = &in->alarms,
        .identity = &in->identity,
        .cvl_v = in->limits.cvl_v,
        .ccl_a = in->limits.ccl_a,
        .dcl_a = in->limits.dcl_a,
        .discharge_v = in->limits.discharge_v,
        .modules = victron_modules_single(in->online, in->limits.ccl_a, in->limits.dcl_a),
        .energy_in_wh = in->energy_in_wh,
        .energy_out_wh = in->energy_out_wh,
        .capacity_ah = in->stale ? 0.0f : in->capacity_ah,
        .installed_capacity_ah = in->capacity_ah,
    };
    memset(result, 0, sizeof *result);
    uint64_t deadline = gw_now_ms() + CYCLE_BUDGET_MS;
    bool gone = false;
    for (size_t i = 0; i < n; i++) {
        uint16_t id = ids[i];
        if (id == VICTRON_ID_LIMITS && !in->send_limits)
            continue; /* SAFETY: no fresh data, no charge limits */
        if (!in->have_sample && needs_sample(id))
            continue;
        struct victron_frame vf;
        int rc = victron_encode_frame(id, &vin, &vf);
        if (rc != GW_OK) {
            gw_log_ratelimited(&p->withheld_log, 60000, GW_LOG_WARN, LOG_MOD,
                               "frame 0x%03X withheld: %s", id, gw_strerror(rc));
            continue;
        }
        struct can_frame_gw f = { .id = vf.id, .dlc = vf.dlc };
        memcpy(f.data, vf.data, sizeof f.data);
        uint64_t now = gw_now_ms();
        uint32_t budget = (gone || now >= deadline) ? 0 : (uint32_t)(deadline - now);
        if (gone) {
            rc = GW_ERR_CLOSED;
        } else {
            pthread_rwlock_rdlock(&p->tp_lock);
            rc = p->tp ? can_transport_send(p->tp, &f, budget) : GW_ERR_CLOSED;
            pthread_rwlock_unlock(&p->tp_lock);
        }
        if (rc == GW_ERR_CLOSED)
            gone = true; /* the rest of the cycle fails at once */
        tap_add(p, CAN_TAP_TX, rc, &f);
        pthread_mutex_lock(&p->lock);
        struct can_publisher_id_counter *c = id_counter(p, id);
        if (rc == GW_OK) {
            p->frames_sent++;
            if (c)
                c->sent++;
            result->frames_ok++;
        } else {
            p->frames_failed++;
            p->last_error = rc;
            p->last_error_id = id;
            if (c) {
                c->failed++;
                c->last_error = rc;
            }
            result->frames_failed++;
            result->last_error = rc;
        }
        result->last_can_id = id;
        pthread_mutex_unlock(&p->lock);
    }
    if (gone)
        mark_broken(p, GW_ERR_CLOSED);
    if (result->frames_failed)
        gw_log_ratelimited(&p->tx_log, 60000, GW_LOG_WARN, LOG_MOD, "%u of %u frames failed on %s: %s",
                           (unsigned)result->frames_failed,
                           (unsigned)(result->frames_failed + result->frames_ok), p->spec,
                           gw_strerror(result->last_error));
}

static void run_cycle(struct can_publisher *p, bool live, uint64_t now)
{
    struct cycle_input in;
    struct app_charge_limits limits;
    pthread_mutex_lock(&p->lock);
    prepare_cycle(p, now, live, &in);
    limits = p->limits;
    if (live)
        p->live_cycles++;
    else
        p->identity_cycles++;
    pthread_mutex_unlock(&p->lock);

    struct app_can_tx result;
    if (live)
        send_frames(p, p->live_ids, p->live_count, &in, &result);
    else
        send_frames(p, p->identity_ids, p->identity_count, &in, &result);
    if (live)
        publish(p, EVENT_CHARGE_LIMITS, &limits, sizeof limits);
    if (result.frames_ok || result.frames_failed)
        publish(p, result.frames_failed ? EVENT_CAN_TX_FAILED : EVENT_CAN_TX_SUCCESS, &result, sizeof result);
}

/* Inverter link present/lost; publishes on change. */
static void update_link(struct can_publisher *p, uint64_t now, const struct can_frame_gw *rx)
{
    struct app_inverter_link ev = { 0 };
    bool changed = false;
    pthread_mutex_lock(&p->lock);
    if (rx) {
        p->rx_frames++;
        if (!rx->ext && !rx->rtr && !rx->err && rx->id >= 0x305 && rx->id <= 0x307) {
            p->link_last_ms = now;
            p->link_last_id = rx->id;
            static const uint8_t vic[7] = { 0x12, 0x34, 0x56, 0x78, 'V', 'I', 'C' };
            if (rx->id == 0x307 && rx->dlc >= 7 && memcmp(rx->data, vic, sizeof vic) == 0)
                p->link_identified = true;
            if (!p->link) {
                p->link = true;
                changed = true;
                GW_LOGI(LOG_MOD, "inverter (GX) link present (0x%03X received)", (unsigned)rx->id);
            }
        }
    } else if (p->link && now > p->link_last_ms && now - p->link_last_ms > p->can_cfg.inverter_timeout_ms) {
        /* (the RX thread may have stamped a frame after this thread read `now`) */
        p->link = false;
        changed = true;
        GW_LOGW(LOG_MOD, "inverter (GX) link lost: no 0x305/0x306/0x307 for %u ms (we keep sending)",
                (unsigned)p->can_cfg.inverter_timeout_ms);
    }
    ev.present = p->link;
    ev.last_id = p->link_last_id;
    pthread_mutex_unlock(&p->lock);
    if (changed)
        publish(p, EVENT_CAN_INVERTER_LINK, &ev, sizeof ev);
}

static void save_energy(struct can_publisher *p)
{
    if (!p->persist)
        return;
    pthread_mutex_lock(&p->lock);
    double in_wh = p->energy.in_wh, out_wh = p->energy.out_wh;
    pthread_mutex_unlock(&p->lock);
    int rc = can_energy__save(p->energy_path, in_wh, out_wh);
    pthread_mutex_lock(&p->lock);
    bool was_failing = p->storage_failing;
    if (rc == GW_OK) {
        p->energy_saves++;
        p->saved_in_wh = in_wh;
        p->saved_out_wh = out_wh;
        p->storage_failing = false;
    } else {
        p->energy_save_errors++;
        p->storage_failing = true;
    }
    pthread_mutex_unlock(&p->lock);
    if (rc != GW_OK && !was_failing) {
        GW_LOGE(LOG_MOD, "cannot save energy counters to %s: %s", p->energy_path, gw_strerror(rc));
        storage_event(p, rc, "cannot save %s: %s", p->energy_path, gw_strerror(rc));
    } else if (rc == GW_OK && was_failing) {
        GW_LOGI(LOG_MOD, "energy counters saved again to %s", p->energy_path);
        storage_event(p, GW_OK, "saved %s", p->energy_path);
    }
}

/* Waits up to ms of real time, or until stop is requested. Returns true when stopping. */
static bool wait_or_stop(struct can_publisher *p, uint32_t ms)
{
    struct timespec ts;
    gw_monotonic_deadline(&ts, ms);
    pthread_mutex_lock(&p->lock);
    while (!p->stop_requested) {
        if (pthread_cond_timedwait(&p->wake, &p->lock, &ts) == ETIMEDOUT)
            break;
    }
    bool stop = p->stop_requested;
    pthread_mutex_unlock(&p->lock);
    return stop;
}

/* Next due time of a periodic task after a cycle at `ran` (no burst after falling behind). */
static uint64_t next_due(uint64_t scheduled, uint64_t period, uint64_t now)
{
    uint64_t next = scheduled + period;
    return next <= now ? now + period : next;
}

static void *tx_main(void *arg)
{
    struct can_publisher *p = arg;
    uint64_t now = gw_now_ms();
    pthread_mutex_lock(&p->lock);
    uint64_t live_period = p->can_cfg.live_period_ms;
    uint64_t identity_period = p->can_cfg.identity_period_ms;
    uint64_t save_period = (uint64_t)p->can_cfg.energy_save_period_s * 1000u;
    pthread_mutex_unlock(&p->lock);
    uint64_t next_live = now, next_identity = now, next_save = now + save_period, next_reopen = now;
    uint64_t last_live = now, last_identity = now; /* scheduled time of the last cycles */
    uint32_t reopen_delay = REOPEN_FIRST_MS;
    for (;;) {
        now = gw_now_ms();
        pthread_mutex_lock(&p->lock);
        uint64_t lp = p->can_cfg.live_period_ms;
        uint64_t ip = p->can_cfg.identity_period_ms;
        save_period = (uint64_t)p->can_cfg.energy_save_period_s * 1000u;
        pthread_mutex_unlock(&p->lock);
        /* A period changed by apply_config counts from the last cycle. */
        if (lp != live_period) {
            live_period = lp;
            next_live = last_live + lp;
        }
        if (ip != identity_period) {
            identity_period = ip;
            next_identity = last_identity + ip;
        }
        if (now >= next_live) {
            run_cycle(p, true, now);
            last_live = next_live;
            next_live = next_due(next_live, live_period, now);
        }
        if (now >= next_identity) {
            run_cycle(p, false, now);
            last_identity = next_identity;
            next_identity = next_due(next_identity, identity_period, now);
        }
        update_link(p, now, NULL);
        if (now >= next_save) {
            save_energy(p);
            next_save = now + save_period;
        }
        if (now >= next_reopen) {
            reopen_delay = maybe_reopen(p, reopen_delay);
            next_reopen = now + reopen_delay;
        }
        uint64_t next = next_live < next_identity ? next_live : next_identity;
        uint64_t after = gw_now_ms();
        uint64_t wait = next > after ? next - after : 0;
        if (wait_or_stop(p, (uint32_t)(wait < WAIT_SLICE_MS ? wait : WAIT_SLICE_MS)))
            break;
    }
    return NULL;
}

static void *rx_main(void *arg)
{
    struct can_publisher *p = arg;
    struct gw_log_limit rx_log = { 0 };
    for (;;) {
        pthread_mutex_lock(&p->lock);
        bool stop = p->stop_requested;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            break;
        struct can_frame_gw f;
        pthread_rwlock_rdlock(&p->tp_lock);
        int rc = p->tp ? can_transport_recv(p->tp, &f, RX_TIMEOUT_MS) : GW_ERR_CLOSED;
        pthread_rwlock_unlock(&p->tp_lock);
        if (rc == GW_OK) {
            tap_add(p, CAN_TAP_RX, GW_OK, &f);
            update_link(p, gw_now_ms(), &f);
            continue;
        }
        if (rc == GW_ERR_TIMEOUT)
            continue;
        if (rc != GW_ERR_UNSUPPORTED) {
            gw_log_ratelimited(&rx_log, 60000, GW_LOG_WARN, LOG_MOD, "CAN receive on %s: %s", p->spec,
                               gw_strerror(rc));
            mark_broken(p, rc);
        }
        /* Write-only or broken transport: nothing to read, check again later. */
        if (wait_or_stop(p, rc == GW_ERR_UNSUPPORTED ? 1000 : RX_TIMEOUT_MS))
            break;
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static void restore_energy(struct can_publisher *p)
{
    double in_wh = 0, out_wh = 0;
    int rc = can_energy__load(p->energy_path, &in_wh, &out_wh);
    if (rc == GW_OK) {
        p->energy.in_wh = in_wh;
        p->energy.out_wh = out_wh;
        p->saved_in_wh = in_wh;
        p->saved_out_wh = out_wh;
        GW_LOGI(LOG_MOD, "energy counters restored from %s: in %.1f Wh, out %.1f Wh", p->energy_path,
                in_wh, out_wh);
        return;
    }
    if (rc == GW_ERR_NOT_FOUND) {
        GW_LOGI(LOG_MOD, "no %s yet: energy counters start at 0", p->energy_path);
        return;
    }
    /* Corrupt or unreadable: keep the evidence, start from 0, tell the user. */
    char moved[sizeof p->energy_path + 16];
    snprintf(moved, sizeof moved, "%s.corrupt", p->energy_path);
    bool kept = (rc == GW_ERR_PROTO || rc == GW_ERR_OVERFLOW) && rename(p->energy_path, moved) == 0;
    GW_LOGE(LOG_MOD, "energy counters in %s unreadable (%s): starting from 0%s%s", p->energy_path,
            gw_strerror(rc), kept ? ", old file kept as " : "", kept ? moved : "");
    storage_event(p, rc == GW_ERR_OVERFLOW ? GW_ERR_PROTO : rc, "%s unreadable (%s), counters reset to 0",
                  p->energy_path, gw_strerror(rc));
}

int can_publisher_create(const struct can_publisher_options *opts, struct can_publisher **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!opts || !opts->config || !opts->bus)
        return GW_ERR_INVAL;
    const struct gw_config *cfg = opts->config;
    int rc = validate_can(&cfg->can);
    if (rc)
        return rc;
    const char *spec = (opts->transport_spec && opts->transport_spec[0]) ? opts->transport_spec : cfg->can.interface;
    if (!opts->transport && (!spec || !spec[0])) {
        GW_LOGE(LOG_MOD, "no CAN interface configured (can.interface or --can)");
        return GW_ERR_INVAL;
    }
    struct can_publisher *p = calloc(1, sizeof *p);
    if (!p)
        return GW_ERR_NOMEM;
    p->bus = opts->bus;
    p->live_count = victron_set_ids(VICTRON_SET_LIVE, p->live_ids, VICTRON_MAX_FRAMES);
    p->identity_count = victron_set_ids(VICTRON_SET_IDENTITY, p->identity_ids, VICTRON_MAX_FRAMES);
    p->battery_id = opts->battery_id;
    p->given = opts->transport;
    snprintf(p->spec, sizeof p->spec, "%s", opts->transport ? opts->transport->spec : spec);
    p->bitrate = cfg->can.bitrate;
    p->can_cfg = cfg->can;
    p->charge_cfg = cfg->charge;
    p->stale = true; /* nothing received yet: 0x351 withheld until the first sample */
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->tap_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&p->tp_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    charge_control_init(&p->cc, &p->charge_cfg);
    refresh_thresholds(p);
    p->limits.battery_id = p->battery_id;

    if (opts->data_dir && opts->data_dir[0]) {
        int n = snprintf(p->energy_path, sizeof p->energy_path, "%s/%s", opts->data_dir, CAN_ENERGY_FILE);
        if (n < 0 || (size_t)n >= sizeof p->energy_path) {
            GW_LOGE(LOG_MOD, "data directory path too long: %s", opts->data_dir);
            rc = GW_ERR_INVAL;
            goto err;
        }
        p->persist = true;
        restore_energy(p);
    }
    size_t subscribed = 0;
    for (; subscribed < SUBSCRIPTION_COUNT; subscribed++) {
        rc = event_bus_subscribe(p->bus, subscriptions[subscribed].id, subscriptions[subscribed].fn, p,
                                 subscriptions[subscribed].name);
        if (rc != GW_OK) {
            GW_LOGE(LOG_MOD, "cannot subscribe to %s: %s", app_event_name(subscriptions[subscribed].id),
                    gw_strerror(rc));
            for (size_t i = 0; i < subscribed; i++)
                event_bus_unsubscribe(p->bus, subscriptions[i].id, subscriptions[i].fn, p);
            goto err;
        }
    }
    *out = p;
    return GW_OK;
err:
    pthread_rwlock_destroy(&p->tp_lock);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->tap_lock);
    pthread_mutex_destroy(&p->lock);
    free(p);
    return rc;
}

int can_publisher_start(struct can_publisher *pub)
{
    if (!pub)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&pub->lock);
    bool running = pub->running;
    pthread_mutex_unlock(&pub->lock);
    if (running)
        return GW_ERR_STATE;
    pthread_rwlock_wrlock(&pub->tp_lock);
    int rc = GW_OK;
    if (pub->given)
        pub->tp = pub->given;
    else
        rc = can_transport_open(pub->spec, pub->bitrate, &pub->tp);
    pthread_rwlock_unlock(&pub->tp_lock);
    /* An adapter that is absent or failing now (USB not plugged yet) is retried like one that
     * goes away later; a bad spec or a kernel without CAN cannot get better: fail now. */
    bool retry_later = rc == GW_ERR_NOT_FOUND || rc == GW_ERR_IO || rc == GW_ERR_CLOSED;
    if (rc != GW_OK && !retry_later)
        return rc;
    if (rc != GW_OK)
        GW_LOGW(LOG_MOD, "CAN transport %s unavailable (%s): starting anyway, retrying in %u s", pub->spec,
                gw_strerror(rc), REOPEN_FIRST_MS / 1000);
    pthread_mutex_lock(&pub->lock);
    pub->stop_requested = false;
    pub->tp_broken = rc != GW_OK;
    pub->running = true;
    pthread_mutex_unlock(&pub->lock);
    if (pthread_create(&pub->tx_thread, NULL, tx_main, pub) != 0) {
        rc = GW_ERR_IO;
        goto err;
    }
    if (pthread_create(&pub->rx_thread, NULL, rx_main, pub) != 0) {
        pthread_mutex_lock(&pub->lock);
        pub->stop_requested = true;
        pthread_cond_broadcast(&pub->wake);
        pthread_mutex_unlock(&pub->lock);
        pthread_join(pub->tx_thread, NULL);
        rc = GW_ERR_IO;
        goto err;
    }
    GW_LOGI(LOG_MOD, "publishing on %s: live frames every %u ms, identity every %u ms, 0x351 withheld "
            "after %u ms without BMS data", pub->spec, (unsigned)pub->can_cfg.live_period_ms,
            (unsigned)pub->can_cfg.identity_period_ms, (unsigned)pub->can_cfg.stale_timeout_ms);
    return GW_OK;
err:
    GW_LOGE(LOG_MOD, "cannot start the CAN threads");
    pthread_mutex_lock(&pub->lock);
    pub->running = false;
    pthread_mutex_unlock(&pub->lock);
    pthread_rwlock_wrlock(&pub->tp_lock);
    if (!pub->given)
        can_transport_close(pub->tp);
    pub->tp = NULL;
    pthread_rwlock_unlock(&pub->tp_lock);
    return rc;
}

void can_publisher_stop(struct can_publisher *pub)
{
    if (!pub)
        return;
    pthread_mutex_lock(&pub->lock);
    bool running = pub->running;
    pub->stop_requested = true;
    pthread_cond_broadcast(&pub->wake);
    /* Never started, but samples were integrated: keep them too. */
    bool dirty = pub->energy.in_wh != pub->saved_in_wh || pub->energy.out_wh != pub->saved_out_wh;
    pthread_mutex_unlock(&pub->lock);
    if (!running) {
        if (dirty)
            save_energy(pub);
        return;
    }
    pthread_join(pub->tx_thread, NULL);
    pthread_join(pub->rx_thread, NULL);
    save_energy(pub);
    pthread_rwlock_wrlock(&pub->tp_lock);
    if (!pub->given)
        can_transport_close(pub->tp);
    pub->tp = NULL;
    pthread_rwlock_unlock(&pub->tp_lock);
    pthread_mutex_lock(&pub->lock);
    pub->running = false;
    pthread_mutex_unlock(&pub->lock);
    GW_LOGI(LOG_MOD, "stopped");
}

void can_publisher_destroy(struct can_publisher *pub)
{
    if (!pub)
        return;
    can_publisher_stop(pub);
    for (size_t i = 0; i < SUBSCRIPTION_COUNT; i++)
        event_bus_unsubscribe(pub->bus, subscriptions[i].id, subscriptions[i].fn, pub);
    pthread_rwlock_destroy(&pub->tp_lock);
    pthread_cond_destroy(&pub->wake);
    pthread_mutex_destroy(&pub->tap_lock);
    pthread_mutex_destroy(&pub->lock);
    free(pub);
}

int can_publisher_apply_config(struct can_publisher *pub, const struct gw_config *cfg)
{
    if (!pub || !cfg)
        return GW_ERR_INVAL;
    int rc = validate_can(&cfg->can);
    if (rc)
        return rc;
    pthread_mutex_lock(&pub->lock);
    bool restart = strcmp(pub->can_cfg.interface, cfg->can.interface) != 0 ||
                   pub->can_cfg.bitrate != cfg->can.bitrate;
    pub->can_cfg = cfg->can;
    pub->charge_cfg = cfg->charge;
    rc = charge_control_set_config(&pub->cc, &pub->charge_cfg);
    refresh_thresholds(pub);
    pthread_mutex_unlock(&pub->lock);
    if (restart)
        GW_LOGI(LOG_MOD, "CAN interface/bitrate change applies after a restart (now %s)", pub->spec);
    return rc;
}

int can_publisher_get_status(struct can_publisher *pub, struct can_publisher_status *out)
{
    if (!pub || !out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    uint64_t now = gw_now_ms();
    pthread_mutex_lock(&pub->lock);
    out->running = pub->running;
    snprintf(out->transport, sizeof out->transport, "%s", pub->spec);
    out->have_sample = pub->have_sample;
    out->sample_age_ms = pub->have_sample && now > pub->sample_ms ? now - pub->sample_ms : 0;
    out->stale = pub->stale;
    out->stale_transitions = pub->stale_transitions;
    out->inverter_link = pub->link;
    out->inverter_last_id = pub->link_last_id;
    out->inverter_last_ms = pub->link_last_ms;
    out->inverter_identified = pub->link_identified;
    out->rx_frames = pub->rx_frames;
    out->limits = pub->limits;
    out->energy_in_wh = pub->energy.in_wh;
    out->energy_out_wh = pub->energy.out_wh;
    out->energy_saves = pub->energy_saves;
    out->energy_save_errors = pub->energy_save_errors;
    out->live_cycles = pub->live_cycles;
    out->identity_cycles = pub->identity_cycles;
    out->frames_sent = pub->frames_sent;
    out->frames_failed = pub->frames_failed;
    out->last_error = pub->last_error;
    out->last_error_id = pub->last_error_id;
    out->id_count = pub->id_count;
    memcpy(out->ids, pub->ids, sizeof out->ids);
    bool broken = pub->tp_broken;
    pthread_mutex_unlock(&pub->lock);
    pthread_rwlock_rdlock(&pub->tp_lock);
    out->transport_open = pub->tp != NULL && !broken;
    if (pub->tp)
        can_transport_get_stats(pub->tp, &out->transport_stats);
    pthread_rwlock_unlock(&pub->tp_lock);
    return GW_OK;
}

size_t can_publisher_tap_read(struct can_publisher *pub, uint64_t after_seq, struct can_tap_entry *out,
                              size_t max)
{
    if (!pub || !out || max == 0)
        return 0;
    pthread_mutex_lock(&pub->tap_lock);
    uint64_t newest = pub->tap_seq;
    uint64_t oldest = newest > CAN_TAP_ENTRIES ? newest - CAN_TAP_ENTRIES + 1 : 1;
    uint64_t first = after_seq + 1 > oldest ? after_seq + 1 : oldest;
    size_t n = 0;
    for (uint64_t s = first; s <= newest && n < max; s++)
        out[n++] = pub->tap[(s - 1) % CAN_TAP_ENTRIES];
    pthread_mutex_unlock(&pub->tap_lock);
    return n;
}
