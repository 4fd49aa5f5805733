/* can_publisher: Victron CAN-bus BMS frames on a schedule from the newest battery view,
 * stale-view safety, inverter link tracking and the frame tap. See can_publisher.h. */
#define _GNU_SOURCE /* PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP */
#include "can_publisher.h"
#include "can_publisher_internal.h"

#include "app_events.h"
#include "battery_view.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"
#include "victron.h"
#include "watchdog.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define RX_TIMEOUT_MS 100u         /* recv slice on a transport without poll_fd (see rx_main) */
#define RX_ERROR_PAUSE_MS 100u     /* after a receive error that is not "device gone" */
#define CYCLE_BUDGET_MS 500u       /* all frames of one cycle must be written within */
#define EVENT_TIMEOUT_MS 20u       /* never block the TX thread on a full bus for long */

/* Firmware / serial of one pack (EVENT_BMS_VERSION_UPDATE), for 0x35F and 0x380/0x381. */
struct pack_version {
    uint8_t battery_id;
    struct bms_version version;
};

/* Why the battery is offline on the bus (what 0x35A / 0x372 say, 0x351 withheld). */
enum offline_reason { ONLINE = CAN_PUBLISHER__ONLINE, OFF_NO_VIEW = CAN_PUBLISHER__NO_VIEW,
                      OFF_STALE_VIEW = CAN_PUBLISHER__STALE_VIEW, OFF_NO_LIMITS = CAN_PUBLISHER__NO_LIMITS,
                      WARMING_UP = CAN_PUBLISHER__WARMING_UP };

struct can_publisher {
    struct event_bus *bus;
    uint16_t live_ids[VICTRON_MAX_FRAMES];     /* the encoder's sets, in send order */
    size_t live_count;
    uint16_t identity_ids[VICTRON_MAX_FRAMES];
    size_t identity_count;
    char spec[CAN_SPEC_MAX];
    uint32_t bitrate;

    /* Transport: readers (send/recv) share it, a reopen takes it exclusively. */
    pthread_rwlock_t tp_lock;
    struct can_transport *given;      /* borrowed from the options */
    struct can_transport *tp;         /* in use: given, or opened by us */
    bool tp_broken;                   /* a send/recv reported the device gone (under lock) */
    int rx_wake_fd;                   /* eventfd: gets the RX thread out of poll() (stop, broken) */

    /* Everything below under lock. */
    pthread_mutex_t lock;
    pthread_cond_t wake;              /* TX/RX: stop, config change, link up, transport broken/reopened */
    bool stop_requested;
    bool running;
    pthread_t tx_thread, rx_thread;
    bool rx_started;

    struct gw_config_can can_cfg;
    struct watchdog_client *watchdog; /* borrowed, may be NULL */

    struct battery_view view;         /* the newest view (valid when have_view) */
    bool have_view;
    bool sampled;                     /* a view showed a pack with a BMS sample (latched) */
    uint64_t started_ms;              /* gw_now_ms() at can_publisher_start */
    uint64_t view_ms;                 /* monotonic time of the newest view */
    uint64_t views_received;
    struct pack_version versions[BATTERY_MAX_PACKS];
    size_t version_count;
    uint32_t identity_gen;            /* bumped when a pack's version is new or changed */

    uint8_t offline;                  /* enum offline_reason of the last live cycle */
    uint32_t stale_transitions;

    bool link;
    bool link_identified;
    uint32_t link_last_id;
    uint64_t link_last_ms;
    uint64_t rx_frames;

    uint64_t live_cycles, identity_cycles, frames_sent, frames_failed;
    int last_error;
    uint32_t last_error_id;
    size_t id_count;
    struct can_publisher_id_counter ids[CAN_PUBLISHER_MAX_IDS];
    uint64_t age_frames, age_sum_ms, age_max_ms;
    uint64_t age_le[CAN_PUBLISHER_AGE_BUCKETS];

    struct gw_log_limit withheld_log, tx_log, reopen_log;

    /* Tap ring, its own lock so the UI never waits on a cycle. */
    pthread_mutex_t tap_lock;
    struct can_tap_entry tap[CAN_TAP_ENTRIES];
    uint64_t tap_seq;                 /* seq of the newest entry */
};

/* ---- configuration --------------------------------------------------------------------- */

/* The ranges are the configuration's (config_manager validates every config it hands out, its
 * field table describes them once); a zero period would spin the TX thread, so a config that
 * never went through validation is refused here rather than trusted. */
static int validate_can(const struct gw_config_can *c)
{
    if (!c->live_period_ms || !c->identity_period_ms || !c->stale_timeout_ms || !c->inverter_timeout_ms) {
        GW_LOGE(MOD, "can: a period or timeout is 0 (live %u, identity %u, stale %u, inverter %u ms): "
                "the configuration was not validated", (unsigned)c->live_period_ms,
                (unsigned)c->identity_period_ms, (unsigned)c->stale_timeout_ms, (unsigned)c->inverter_timeout_ms);
        return GW_ERR_RANGE;
    }
    int rc = GW_OK;
    if (c->live_period_ms >= 3000)
        GW_LOGW(MOD, "can.live_period_ms = %u: the GX stops charging when 0x351 is older than 3 s",
                (unsigned)c->live_period_ms);
    return rc;
}

static void fill_identity(const struct can_publisher *p, struct victron_identity *id);

/* ---- events ---------------------------------------------------------------------------- */

static void publish(struct can_publisher *p, int id, const void *payload, size_t size)
{
    if (event_bus_publish(p->bus, id, payload, size, EVENT_TIMEOUT_MS) != GW_OK)
        GW_LOGD(MOD, "event %s dropped (bus full)", app_event_name(id));
}

static void on_view(const struct gw_event *ev, void *ctx)
{
    struct can_publisher *p = ctx;
    const struct battery_view *v = EVENT_PAYLOAD(ev, struct battery_view);
    if (!v)
        return;
    uint64_t now = gw_now_ms();
    /* The view's own step time, unless it is missing or in the future (another clock). */
    uint64_t t = (v->timestamp_ms == 0 || v->timestamp_ms > now) ? now : v->timestamp_ms;
    pthread_mutex_lock(&p->lock);
    if (!p->have_view || t >= p->view_ms) { /* never replace a newer view by an older one */
        memcpy(&p->view, v, sizeof p->view);
        p->view_ms = t;
        p->have_view = true;
    }
    for (unsigned k = 0; k < v->pack_count && k < BATTERY_MAX_PACKS && !p->sampled; k++) {
        if (v->packs[k].state != BATTERY_PACK_NEVER_SEEN) {
            p->sampled = true; /* the first BMS sample: the battery's state is known from now on */
            p->identity_gen++; /* 0x35F (online capacity) can go now: at once */
            pthread_cond_broadcast(&p->wake);
        }
    }
    p->views_received++;
    pthread_mutex_unlock(&p->lock);
}

static void on_version(const struct gw_event *ev, void *ctx)
{
    struct can_publisher *p = ctx;
    const struct app_bms_version *v = EVENT_PAYLOAD(ev, struct app_bms_version);
    if (!v)
        return;
    if (!v->version.valid)
        return;
    pthread_mutex_lock(&p->lock);
    size_t i = 0;
    while (i < p->version_count && p->versions[i].battery_id != v->battery_id)
        i++;
    bool changed = false;
    if (i < BATTERY_MAX_PACKS) {
        struct bms_version next = v->version;
        next.serial[sizeof next.serial - 1] = '\0';
        const struct bms_version *old = i < p->version_count ? &p->versions[i].version : NULL;
        changed = !old || old->fw_public != next.fw_public || old->fw_internal != next.fw_internal ||
                  old->hw_version != next.hw_version || strcmp(old->serial, next.serial) != 0;
        p->versions[i].battery_id = v->battery_id;
        p->versions[i].version = next;
        if (i == p->version_count)
            p->version_count++;
    }
    struct victron_identity idn;
    bool configured_serial = false;
    if (changed) {
        p->identity_gen++;
        pthread_cond_broadcast(&p->wake); /* the TX thread sends the identity set now */
        fill_identity(p, &idn);
        configured_serial = p->can_cfg.serial[0] != '\0';
    }
    pthread_mutex_unlock(&p->lock);
    if (changed)
        GW_LOGI(MOD, "identity for the GX (battery %u): firmware %u.%u in 0x35F (TinyBMS firmware %u; the "
                "internal version %u does not fit the frame), serial \"%s\" in 0x380/0x381 (%s)",
                (unsigned)v->battery_id, (unsigned)idn.fw_major, (unsigned)idn.fw_minor,
                (unsigned)v->version.fw_public, (unsigned)v->version.fw_internal, idn.serial,
                configured_serial ? "can.serial" : "the last 16 of the BMS serial's 24 digits");
}

static const struct {
    int id;
    event_bus_handler_fn fn;
    const char *name;
} subscriptions[] = {
    { EVENT_BATTERY_UPDATE, on_view, "can_publisher.view" },
    { EVENT_BMS_VERSION_UPDATE, on_version, "can_publisher.version" },
};
#define SUBSCRIPTION_COUNT (sizeof subscriptions / sizeof subscriptions[0])

/* ---- tap and counters ------------------------------------------------------------------ */

static void tap_add(struct can_publisher *p, uint8_t dir, int result, const struct can_frame_gw *f)
{
    struct can_tap_entry e = { .mono_ms = gw_now_ms(), .wall_ms = gw_wall_ms(), .dir = dir,
                               .result = result, .frame = *f };
    victron_describe_frame(f, e.text, sizeof e.text);
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

static void wake_rx(struct can_publisher *p)
{
    uint64_t one = 1;
    if (write(p->rx_wake_fd, &one, sizeof one) != (ssize_t)sizeof one && errno != EAGAIN)
        GW_LOGE(MOD, "cannot wake the CAN receive thread: %s", strerror(errno));
}

static void mark_broken(struct can_publisher *p, int rc)
{
    if (rc != GW_ERR_CLOSED)
        return;
    pthread_mutex_lock(&p->lock);
    p->tp_broken = true;
    pthread_cond_broadcast(&p->wake); /* the TX thread schedules the reopen */
    pthread_mutex_unlock(&p->lock);
    wake_rx(p); /* it holds the transport in poll(): the reopen needs it released */
}

/* Reopens a transport we opened ourselves after the device went away (USB adapter unplugged).
 * Returns true when it is open again. */
static bool try_reopen(struct can_publisher *p, uint32_t next_delay_ms)
{
    pthread_rwlock_wrlock(&p->tp_lock);
    can_transport_close(p->tp);
    p->tp = NULL;
    int rc = can_transport_open(p->spec, p->bitrate, &p->tp);
    pthread_rwlock_unlock(&p->tp_lock);
    if (rc == GW_OK) {
        GW_LOGI(MOD, "CAN transport %s reopened", p->spec);
        pthread_mutex_lock(&p->lock);
        p->tp_broken = false;
        pthread_cond_broadcast(&p->wake); /* the RX thread reads again */
        pthread_mutex_unlock(&p->lock);
        return true;
    }
    gw_log_ratelimited(&p->reopen_log, 60000, GW_LOG_WARN, MOD,
                       "CAN transport %s still unavailable (%s), next attempt in %u s", p->spec,
                       gw_strerror(rc), (unsigned)(next_delay_ms / 1000));
    return false;
}

/* ---- the cycles ------------------------------------------------------------------------ */

/* Everything a cycle needs, copied under the lock so encoding and I/O run without it. */
struct cycle_input {
    struct victron_inputs vin;
    bool have_view;
    bool online;                      /* fresh view with valid limits: 0x351 and measurements go */
    bool warming_up;                  /* before the first sample: no status (0x35A, 0x372) yet */
    bool version_known;               /* a BMS version and a first sample arrived: 0x35F carries
                                         the firmware and the online capacity */
    bool serial_known;                /* can.serial set, or the BMS serial read: 0x380/0x381 */
    uint64_t data_ms;                 /* online: gw_now_ms() of the oldest online pack's sample */
};

/* Fine around one poll (100 ms at the fastest) plus a few ms, where the promise lies. */
const uint32_t can_publisher_age_bounds_ms[CAN_PUBLISHER_AGE_BUCKETS] = {
    5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 105, 110, 120, 150, 200, 500, 1000, 5000, UINT32_MAX
};

/* Called with lock held: one frame's data age into the histogram. */
static void count_data_age(struct can_publisher *p, uint64_t age_ms)
{
    p->age_frames++;
    p->age_sum_ms += age_ms;
    if (age_ms > p->age_max_ms)
        p->age_max_ms = age_ms;
    for (size_t i = 0; i < CAN_PUBLISHER_AGE_BUCKETS; i++)
        if (age_ms <= can_publisher_age_bounds_ms[i])
            p->age_le[i]++;
}

/* The oldest sample among the online packs of v (what the measurement frames are built from),
 * 0 when none. */
static uint64_t oldest_sample_ms(const struct battery_view *v)
{
    uint64_t oldest = 0;
    for (unsigned k = 0; k < v->pack_count && k < BATTERY_MAX_PACKS; k++) {
        const struct battery_pack *pk = &v->packs[k];
        bool online = pk->state == BATTERY_PACK_ONLINE || pk->state == BATTERY_PACK_REJOINING;
        if (online && pk->live.valid && pk->live.timestamp_ms && (!oldest || pk->live.timestamp_ms < oldest))
            oldest = pk->live.timestamp_ms;
    }
    return oldest;
}

/* The version of the pack the identity frames describe: the first configured pack of the view
 * that reported one, else the first version received. NULL when none. Called with lock held. */
static const struct bms_version *identity_version(const struct can_publisher *p)
{
    if (p->have_view) {
        for (unsigned k = 0; k < p->view.pack_count && k < BATTERY_MAX_PACKS; k++)
            for (size_t i = 0; i < p->version_count; i++)
                if (p->versions[i].battery_id == p->view.packs[k].id)
                    return &p->versions[i].version;
    }
    return p->version_count ? &p->versions[0].version : NULL;
}

/* Called with lock held. */
static void fill_identity(const struct can_publisher *p, struct victron_identity *id)
{
    memset(id, 0, sizeof *id);
    gw_text_copy(id->manufacturer, sizeof id->manufacturer, p->can_cfg.manufacturer);
    gw_text_copy(id->battery_name, sizeof id->battery_name, p->can_cfg.battery_name);
    gw_text_copy(id->family, sizeof id->family, p->can_cfg.family);
    const struct bms_version *ver = identity_version(p);
    if (p->can_cfg.serial[0]) {
        gw_text_copy(id->serial, sizeof id->serial, p->can_cfg.serial);
    } else if (ver) {
        /* The BMS serial has 24 hex digits; 0x380/0x381 carry 16: keep the last 16, the part
         * that differs between units. */
        size_t n = strlen(ver->serial);
        gw_text_copy(id->serial, sizeof id->serial, ver->serial + (n > 16 ? n - 16 : 0));
    }
    id->model_id = p->can_cfg.model_id;
    if (ver) {
        /* 0x35F bytes 2-3 are major.minor, one byte each. The TinyBMS has one public firmware
         * number (register 501, e.g. 90): it is the major, minor 0 (the GX shows 90.0). The
         * internal version (register 502, e.g. 580) is a 16-bit build number, not a minor
         * version: its low byte made the GX show "90.68". It stays in the log and MQTT. */
        id->fw_major = ver->fw_public;
        id->fw_minor = 0;
        id->hw_version = ver->hw_version;
    }
}

static const char *offline_text(uint8_t why, bool sampled)
{
    if (!sampled && why != ONLINE && why != WARMING_UP)
        return "no sample from the BMS since start";
    switch (why) {
    case OFF_NO_VIEW: return "no battery view yet";
    case OFF_STALE_VIEW: return "battery view stale";
    case OFF_NO_LIMITS: return "no pack online (limits not valid)";
    case WARMING_UP: return "waiting for the first sample";
    default: return "online";
    }
}

/* The values of an online battery, from a fresh view with valid limits. */
static void fill_online(const struct battery_view *v, struct victron_inputs *vin)
{
    vin->cvl_v = v->limits.cvl_v;
    vin->ccl_a = v->limits.ccl_a;
    vin->dcl_a = v->limits.dcl_a;
    vin->discharge_v = v->limits.discharge_v;
    vin->soc_pct = v->soc_pct;
    if (v->soh_valid)
        vin->soh_pct = v->soh_pct;
    vin->voltage_v = v->voltage_v;
    vin->current_a = v->current_a;
    /* One source for 0x373 and 0x374..0x377: the view's global extremes over the cells. */
    vin->min_cell_v = v->min_cell_v;
    vin->max_cell_v = v->max_cell_v;
    gw_text_copyn(vin->min_cell_id, sizeof vin->min_cell_id, v->min_cell.name, sizeof v->min_cell.name);
    gw_text_copyn(vin->max_cell_id, sizeof vin->max_cell_id, v->max_cell.name, sizeof v->max_cell.name);
    if (v->have_temp) {
        vin->temp_c = v->temp_max_c; /* battery temperature: the hottest cell sensor */
        vin->min_temp_c = v->temp_min_c;
        vin->max_temp_c = v->temp_max_c;
        gw_text_copyn(vin->min_temp_id, sizeof vin->min_temp_id, v->min_temp.name, sizeof v->min_temp.name);
        gw_text_copyn(vin->max_temp_id, sizeof vin->max_temp_id, v->max_temp.name, sizeof v->max_temp.name);
    }
    vin->alarms = v->alarms;
    vin->modules = v->modules;
    vin->capacity_ah = v->capacity_ah;
}

/* Called with lock held: online/offline (logged on change in live cycles) and the plain values
 * of the frames, all from the newest view. */
static void prepare_cycle(struct can_publisher *p, uint64_t now, bool live, struct cycle_input *in)
{
    memset(in, 0, sizeof *in);
    struct victron_inputs *vin = &in->vin;
    victron_inputs_init(vin);
    fill_identity(p, &vin->identity);
    const struct battery_view *v = &p->view;
    /* A view may have arrived after the loop read `now`: its age is then 0, not negative. */
    uint64_t age = (p->have_view && now > p->view_ms) ? now - p->view_ms : 0;
    struct can_publisher__freshness fr = { .have_view = p->have_view, .view_ms = p->view_ms,
                                           .limits_valid = v->limits.valid, .sampled = p->sampled,
                                           .started_ms = p->started_ms };
    uint8_t why = (uint8_t)can_publisher__offline_reason(&fr, now, p->can_cfg.stale_timeout_ms);
    if (why == ONLINE) {
        fill_online(v, vin);
        /* Limits the encoder refuses (never CVL 0) stop the GX like stale data: say so. */
        struct victron_frame probe;
        if (victron_encode_frame(VICTRON_ID_LIMITS, vin, &probe) != GW_OK) {
            why = OFF_NO_LIMITS;
            struct victron_identity keep = vin->identity;
            victron_inputs_init(vin);
            vin->identity = keep;
        }
    }
    if (why != ONLINE) {
        /* What the GX is told must match what it gets: offline, general alarm, every module
         * offline. The flags of an old view are not repeated as if current: all OK. */
        if (why == OFF_NO_LIMITS) {
            vin->alarms = v->alarms;
        } else {
            for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++)
                vin->alarms.alarm[f] = vin->alarms.warning[f] = VICTRON_FLAG_OK;
        }
        vin->modules.offline = p->have_view && v->pack_count ? v->pack_count : 1;
        vin->capacity_ah = 0.0f; /* nothing online */
        vin->alarms.online = false;
        vin->alarms.alarm[VICTRON_FLAG_GENERAL] = VICTRON_FLAG_ACTIVE;
    } else {
        vin->alarms.online = true;
    }
    if (p->have_view) {
        /* Lifetime counters and the installed capacity stay true while the view is old. */
        vin->energy_in_wh = v->energy_in_wh;
        vin->energy_out_wh = v->energy_out_wh;
        vin->installed_capacity_ah = v->installed_capacity_ah;
    }
    in->have_view = p->have_view;
    in->online = why == ONLINE;
    in->data_ms = in->online ? oldest_sample_ms(v) : 0;
    in->warming_up = why == WARMING_UP;
    /* 0x35F also carries the online capacity: with the firmware and after the first sample. */
    bool have_version = identity_version(p) != NULL;
    in->version_known = have_version && p->sampled;
    in->serial_known = p->can_cfg.serial[0] || have_version;

    if (live && why != p->offline) {
        if (why == ONLINE)
            GW_LOGI(MOD, "battery online%s (%u of %u packs): sending 0x351 and the measurements",
                    p->offline == WARMING_UP ? "" : " again", (unsigned)v->online_count, (unsigned)v->pack_count);
        else if (!p->have_view || p->offline == WARMING_UP)
            GW_LOGW(MOD, "battery offline: %s (%llu ms after start, limit %u ms): withholding 0x351 "
                    "and the measurements, GX stops charging/discharging", offline_text(why, p->sampled),
                    (unsigned long long)(now > p->started_ms ? now - p->started_ms : 0),
                    (unsigned)p->can_cfg.stale_timeout_ms);
        else
            GW_LOGW(MOD, "battery offline: %s (newest view %llu ms old, limit %u ms): withholding 0x351 "
                    "and the measurements, GX stops charging/discharging", offline_text(why, p->sampled),
                    (unsigned long long)age, (unsigned)p->can_cfg.stale_timeout_ms);
        if (p->offline == ONLINE)
            p->stale_transitions++;
        p->offline = why;
    }
}

/* The safety rule: may this frame go out now? */
static bool may_send(uint16_t id, const struct cycle_input *in)
{
    switch (victron_frame_role(id)) {
    case VICTRON_ROLE_LIMITS:
    case VICTRON_ROLE_MEASUREMENT:
        return in->online;        /* never stale limits or values */
    case VICTRON_ROLE_TOTALS:
        return in->have_view;     /* counters unknown before the first view */
    case VICTRON_ROLE_STATUS:
        return !in->warming_up;   /* "offline, general alarm" before the first sample would be
                                     logged by a GX as a battery alarm at every start */
    case VICTRON_ROLE_BMS_IDENTITY:
        return id == VICTRON_ID_INFO ? in->version_known : in->serial_known; /* never as zeros */
    case VICTRON_ROLE_IDENTITY:
        return true;
    default:
        return false;
    }
}

/* Encodes and sends the frames of one cycle; returns how many were sent / failed. */
static void send_frames(struct can_publisher *p, const uint16_t *ids, size_t n, const struct cycle_input *in,
                        struct app_can_tx *result)
{
    memset(result, 0, sizeof *result);
    uint64_t deadline = gw_now_ms() + CYCLE_BUDGET_MS;
    bool gone = false;
    for (size_t i = 0; i < n; i++) {
        uint16_t id = ids[i];
        if (!may_send(id, in))
            continue; /* SAFETY: offline, no limits, no stale values */
        struct victron_frame vf;
        int rc = victron_encode_frame(id, &in->vin, &vf);
        if (rc != GW_OK) {
            gw_log_ratelimited(&p->withheld_log, 60000, GW_LOG_WARN, MOD,
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
            int role = victron_frame_role(id);
            if (in->data_ms && (role == VICTRON_ROLE_LIMITS || role == VICTRON_ROLE_MEASUREMENT)) {
                uint64_t sent_ms = gw_now_ms();
                count_data_age(p, sent_ms > in->data_ms ? sent_ms - in->data_ms : 0);
            }
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
        gw_log_ratelimited(&p->tx_log, 60000, GW_LOG_WARN, MOD, "%u of %u frames failed on %s: %s",
                           (unsigned)result->frames_failed,
                           (unsigned)(result->frames_failed + result->frames_ok), p->spec,
                           gw_strerror(result->last_error));
}

static void run_cycle(struct can_publisher *p, bool live, uint64_t now)
{
    struct cycle_input in;
    pthread_mutex_lock(&p->lock);
    prepare_cycle(p, now, live, &in);
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
                pthread_cond_broadcast(&p->wake); /* the TX thread now watches the timeout */
                GW_LOGI(MOD, "inverter (GX) link present (0x%03X received)", (unsigned)rx->id);
            }
        }
    } else if (can_publisher__link_expired(p->link, p->link_last_ms, now, p->can_cfg.inverter_timeout_ms)) {
        p->link = false;
        changed = true;
        GW_LOGW(MOD, "inverter (GX) link lost: no 0x305/0x306/0x307 for %u ms (we keep sending)",
                (unsigned)p->can_cfg.inverter_timeout_ms);
    }
    ev.present = p->link;
    ev.last_id = p->link_last_id;
    pthread_mutex_unlock(&p->lock);
    if (changed)
        publish(p, EVENT_CAN_INVERTER_LINK, &ev, sizeof ev);
}

/* The TX thread: a shell around can_publisher__step. It reads the inputs under the lock,
 * acts on what is due without it, and otherwise sleeps in one gw_clock_wait until the step's
 * deadline or an event (stop, configuration, link present, transport broken). */
static void *tx_main(void *arg)
{
    struct can_publisher *p = arg;
    struct can_publisher__sched sched;
    pthread_mutex_lock(&p->lock);
    can_publisher__sched_init(&sched, gw_now_ms(), p->can_cfg.live_period_ms, p->can_cfg.identity_period_ms);
    while (!p->stop_requested) {
        struct can_publisher__inputs in = {
            .now_ms = gw_now_ms(),
            .live_period_ms = p->can_cfg.live_period_ms,
            .identity_period_ms = p->can_cfg.identity_period_ms,
            .inverter_timeout_ms = p->can_cfg.inverter_timeout_ms,
            .link = p->link,
            .link_last_ms = p->link_last_ms,
            .broken = p->tp_broken,
            .can_reopen = p->given == NULL,
            .identity_gen = p->identity_gen,
        };
        struct can_publisher__decision d = can_publisher__step(&sched, &in);
        if (!d.live && !d.identity && !d.link_lost && !d.reopen) {
            watchdog_checkin(p->watchdog, d.deadline_ms); /* back by its next cycle, unless stuck */
            gw_clock_wait(&p->wake, &p->lock, d.deadline_ms);
            continue;
        }
        watchdog_checkin(p->watchdog, in.now_ms); /* a cycle now: bounded by CYCLE_BUDGET_MS */
        pthread_mutex_unlock(&p->lock);
        if (d.live)
            run_cycle(p, true, in.now_ms);
        if (d.identity)
            run_cycle(p, false, in.now_ms);
        if (d.link_lost)
            update_link(p, in.now_ms, NULL);
        if (d.reopen) {
            uint32_t next = sched.reopen_delay_ms * 2 > CAN_PUBLISHER__REOPEN_MAX_MS ? CAN_PUBLISHER__REOPEN_MAX_MS
                                                                                    : sched.reopen_delay_ms * 2;
            can_publisher__reopened(&sched, gw_now_ms(), try_reopen(p, next));
        }
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    watchdog_checkin(p->watchdog, WATCHDOG_IDLE); /* stopped: not expected back */
    return NULL;
}

/* Blocks until the transport's descriptor or rx_wake_fd is readable (or in error); the next
 * recv tells which. Called with tp_lock held for reading. */
static void rx_poll(struct can_publisher *p, int fd)
{
    struct pollfd pfd[2] = { { .fd = fd, .events = POLLIN }, { .fd = p->rx_wake_fd, .events = POLLIN } };
    if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
        GW_LOGE(MOD, "poll on the CAN transport: %s", strerror(errno));
        return;
    }
    uint64_t count;
    if (pfd[1].revents & POLLIN)
        (void)!read(p->rx_wake_fd, &count, sizeof count); /* reset: the loop checks why */
}

/* The RX thread. A transport with a poll_fd is read without waiting and then waited for in
 * poll(), beside rx_wake_fd (stop, transport broken): no wake-up without a frame or an event.
 * One without (a test's fake) is read in RX_TIMEOUT_MS slices, which bound how long stop
 * waits. A write-only transport (the candump log) or a broken one is not read: the thread
 * sleeps until stop or until the TX thread reopened the transport. */
static void *rx_main(void *arg)
{
    struct can_publisher *p = arg;
    struct gw_log_limit rx_log = { 0 };
    bool write_only = false;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->stop_requested)
            break;
        if (write_only || p->tp_broken) {
            gw_clock_wait(&p->wake, &p->lock, GW_CLOCK_NEVER);
            continue;
        }
        pthread_mutex_unlock(&p->lock);
        struct can_frame_gw f;
        pthread_rwlock_rdlock(&p->tp_lock);
        int fd = can_transport_poll_fd(p->tp);
        int rc = p->tp ? can_transport_recv(p->tp, &f, fd >= 0 ? 0 : RX_TIMEOUT_MS) : GW_ERR_CLOSED;
        if (rc == GW_ERR_TIMEOUT && fd >= 0)
            rx_poll(p, fd);
        pthread_rwlock_unlock(&p->tp_lock);
        if (rc == GW_OK) {
            tap_add(p, CAN_TAP_RX, GW_OK, &f);
            update_link(p, gw_now_ms(), &f);
        } else if (rc == GW_ERR_UNSUPPORTED) {
            write_only = true; /* stays so: a reopen opens the same kind */
        } else if (rc != GW_ERR_TIMEOUT) {
            gw_log_ratelimited(&rx_log, 60000, GW_LOG_WARN, MOD, "CAN receive on %s: %s", p->spec,
                               gw_strerror(rc));
            mark_broken(p, rc);
            if (rc != GW_ERR_CLOSED) {
                /* An error that does not mean "device gone": try again after a pause. */
                pthread_mutex_lock(&p->lock);
                if (!p->stop_requested)
                    gw_clock_wait(&p->wake, &p->lock, gw_now_ms() + RX_ERROR_PAUSE_MS);
                pthread_mutex_unlock(&p->lock);
            }
        }
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------- */

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
        GW_LOGE(MOD, "no CAN interface configured (can.interface or --can)");
        return GW_ERR_INVAL;
    }
    struct can_publisher *p = calloc(1, sizeof *p);
    if (!p)
        return GW_ERR_NOMEM;
    p->bus = opts->bus;
    p->live_count = victron_set_ids(VICTRON_SET_LIVE, p->live_ids, VICTRON_MAX_FRAMES);
    p->identity_count = victron_set_ids(VICTRON_SET_IDENTITY, p->identity_ids, VICTRON_MAX_FRAMES);
    p->given = opts->transport;
    gw_text_copy(p->spec, sizeof p->spec, opts->transport ? opts->transport->spec : spec);
    p->bitrate = cfg->can.bitrate;
    p->can_cfg = cfg->can;
    p->watchdog = opts->watchdog;
    p->offline = WARMING_UP; /* nothing received yet: 0x351 and the status withheld */
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->tap_lock, NULL);
    gw_clock_cond_init(&p->wake);
    p->rx_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->rx_wake_fd < 0) {
        GW_LOGE(MOD, "eventfd: %s", strerror(errno));
        rc = GW_ERR_IO;
    }
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&p->tp_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    if (rc != GW_OK)
        goto err;

    size_t subscribed = 0;
    for (; subscribed < SUBSCRIPTION_COUNT; subscribed++) {
        rc = event_bus_subscribe(p->bus, subscriptions[subscribed].id, subscriptions[subscribed].fn, p,
                                 subscriptions[subscribed].name);
        if (rc != GW_OK) {
            GW_LOGE(MOD, "cannot subscribe to %s: %s", app_event_name(subscriptions[subscribed].id),
                    gw_strerror(rc));
            for (size_t i = 0; i < subscribed; i++)
                event_bus_unsubscribe(p->bus, subscriptions[i].id, subscriptions[i].fn, p);
            goto err;
        }
    }
    *out = p;
    return GW_OK;
err:
    if (p->rx_wake_fd >= 0)
        close(p->rx_wake_fd);
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
        GW_LOGW(MOD, "CAN transport %s unavailable (%s): starting anyway, retrying in %u s", pub->spec,
                gw_strerror(rc), CAN_PUBLISHER__REOPEN_FIRST_MS / 1000);
    pthread_mutex_lock(&pub->lock);
    pub->stop_requested = false;
    pub->tp_broken = rc != GW_OK;
    pub->running = true;
    pub->started_ms = gw_now_ms();
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
    pthread_setname_np(pub->tx_thread, "can-tx");
    pthread_setname_np(pub->rx_thread, "can-rx");
    GW_LOGI(MOD, "publishing on %s: live frames every %u ms, identity every %u ms, 0x351 withheld "
            "after %u ms without a battery view", pub->spec, (unsigned)pub->can_cfg.live_period_ms,
            (unsigned)pub->can_cfg.identity_period_ms, (unsigned)pub->can_cfg.stale_timeout_ms);
    return GW_OK;
err:
    GW_LOGE(MOD, "cannot start the CAN threads");
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
    pthread_mutex_unlock(&pub->lock);
    if (!running)
        return;
    wake_rx(pub);
    pthread_join(pub->tx_thread, NULL);
    pthread_join(pub->rx_thread, NULL);
    pthread_rwlock_wrlock(&pub->tp_lock);
    if (!pub->given)
        can_transport_close(pub->tp);
    pub->tp = NULL;
    pthread_rwlock_unlock(&pub->tp_lock);
    pthread_mutex_lock(&pub->lock);
    pub->running = false;
    pthread_mutex_unlock(&pub->lock);
    GW_LOGI(MOD, "stopped");
}

void can_publisher_destroy(struct can_publisher *pub)
{
    if (!pub)
        return;
    can_publisher_stop(pub);
    for (size_t i = 0; i < SUBSCRIPTION_COUNT; i++)
        event_bus_unsubscribe(pub->bus, subscriptions[i].id, subscriptions[i].fn, pub);
    close(pub->rx_wake_fd);
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
    const struct gw_config_can *o = &pub->can_cfg, *n = &cfg->can;
    if (strcmp(o->manufacturer, n->manufacturer) || strcmp(o->battery_name, n->battery_name) ||
        strcmp(o->family, n->family) || strcmp(o->serial, n->serial) || o->model_id != n->model_id)
        pub->identity_gen++; /* the GX learns a new name or serial now, not up to 10 s later */
    pub->can_cfg = cfg->can;
    pthread_cond_broadcast(&pub->wake); /* the TX thread reschedules with the new periods */
    pthread_mutex_unlock(&pub->lock);
    if (restart)
        GW_LOGI(MOD, "CAN interface/bitrate change applies after a restart (now %s)", pub->spec);
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
    gw_text_copy(out->transport, sizeof out->transport, pub->spec);
    out->have_view = pub->have_view;
    out->view_seq = pub->have_view ? pub->view.seq : 0;
    out->view_age_ms = pub->have_view && now > pub->view_ms ? now - pub->view_ms : 0;
    out->views_received = pub->views_received;
    out->stale = pub->offline != ONLINE;
    out->awaiting_first_sample = pub->offline == WARMING_UP;
    out->stale_transitions = pub->stale_transitions;
    out->inverter_link = pub->link;
    out->inverter_last_id = pub->link_last_id;
    out->inverter_last_ms = pub->link_last_ms;
    out->inverter_identified = pub->link_identified;
    out->rx_frames = pub->rx_frames;
    if (pub->have_view) {
        out->limits = pub->view.limits;
        out->pack_count = pub->view.pack_count;
        out->online_count = pub->view.online_count;
        out->energy_in_wh = pub->view.energy_in_wh;
        out->energy_out_wh = pub->view.energy_out_wh;
    }
    out->live_cycles = pub->live_cycles;
    out->identity_cycles = pub->identity_cycles;
    out->frames_sent = pub->frames_sent;
    out->frames_failed = pub->frames_failed;
    out->last_error = pub->last_error;
    out->last_error_id = pub->last_error_id;
    out->id_count = pub->id_count;
    memcpy(out->ids, pub->ids, sizeof out->ids);
    out->data_age_frames = pub->age_frames;
    out->data_age_sum_ms = pub->age_sum_ms;
    out->data_age_max_ms = pub->age_max_ms;
    memcpy(out->data_age_le, pub->age_le, sizeof out->data_age_le);
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
