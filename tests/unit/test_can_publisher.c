/* can_publisher as a pure consumer of the battery view: synthetic views published on a real
 * event bus, a fake CAN transport (ops struct) and a replaced clock. Frames of 1 and 2 packs
 * (0x372 counts, pack-qualified names, the bank limits in 0x351), a pack dropping out while the
 * frames continue, the stale-view and no-limits safety (0x351 and the measurements withheld,
 * 0x35A / 0x372 / identity kept), limits rounded down on the bus, periods, inverter link,
 * identity and live config, TX failures, the tap. Synchronisation is by condition with a
 * generous real-time deadline; the fake clock makes the schedule exact. */
#define _GNU_SOURCE
#include "battery_view.h"
#include "can_publisher.h"
#include "can_publisher_internal.h"
#include "event_bus.h"
#include "fake_clock.h"
#include "gw_clock.h"
#include "gw_config.h"
#include "gw_error.h"
#include "support/wait.h"
#include "test.h"
#include "watchdog.h"

#include <fcntl.h>

#include <pthread.h>
#include <pty.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- fake clock ------------------------------------------------------------------------ */

static void clock_set(uint64_t t) { fake_clock_set_ms(t); }

static void real_sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- fake transport -------------------------------------------------------------------- */

#define FAKE_MAX 8192
struct sent_frame {
    uint64_t t;
    struct can_frame_gw f;
};

struct fake {
    pthread_mutex_t lock;
    struct sent_frame sent[FAKE_MAX];
    size_t count;
    int fail_with;                      /* send result; GW_OK = accept */
    struct can_frame_gw inbox[16];
    size_t inbox_len;
    uint64_t recv_calls;
};

static struct fake fake = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int fake_open(struct can_transport *t, const char *arg, uint32_t bitrate)
{
    (void)t, (void)arg, (void)bitrate;
    return GW_OK;
}

static int fake_send(struct can_transport *t, const struct can_frame_gw *f, uint32_t timeout_ms)
{
    (void)t, (void)timeout_ms;
    pthread_mutex_lock(&fake.lock);
    int rc = fake.fail_with;
    if (rc == GW_OK && fake.count < FAKE_MAX)
        fake.sent[fake.count++] = (struct sent_frame){ .t = gw_now_ms(), .f = *f };
    pthread_mutex_unlock(&fake.lock);
    return rc;
}

static int fake_recv(struct can_transport *t, struct can_frame_gw *f, uint32_t timeout_ms)
{
    (void)t;
    pthread_mutex_lock(&fake.lock);
    fake.recv_calls++;
    if (fake.inbox_len) {
        *f = fake.inbox[0];
        memmove(fake.inbox, fake.inbox + 1, (fake.inbox_len - 1) * sizeof fake.inbox[0]);
        fake.inbox_len--;
        pthread_mutex_unlock(&fake.lock);
        return GW_OK;
    }
    pthread_mutex_unlock(&fake.lock);
    real_sleep_ms(timeout_ms < 5 ? timeout_ms : 5);
    return GW_ERR_TIMEOUT;
}

static void fake_close(struct can_transport *t) { (void)t; }
static void fake_stats(struct can_transport *t, struct can_transport_stats *out)
{
    (void)t;
    pthread_mutex_lock(&fake.lock);
    out->tx_ok = fake.count;
    pthread_mutex_unlock(&fake.lock);
}

static const struct can_transport_ops fake_ops = {
    .name = "fake", .open = fake_open, .send = fake_send, .recv = fake_recv, .close = fake_close,
    .stats = fake_stats,
};
static struct can_transport fake_transport = { .ops = &fake_ops, .spec = "fake:" };

/* Set once a view was published: 0x379 is then the last frame of every live cycle (the totals
 * go out from the first view on), else 0x372 is. */
static bool totals_expected;

static void fake_reset(void)
{
    totals_expected = false;
    pthread_mutex_lock(&fake.lock);
    fake.count = 0;
    fake.fail_with = GW_OK;
    fake.inbox_len = 0;
    pthread_mutex_unlock(&fake.lock);
}

static void fake_inject(uint32_t id)
{
    pthread_mutex_lock(&fake.lock);
    if (fake.inbox_len < 16) {
        struct can_frame_gw f = { .id = id, .dlc = 8 };
        if (id == 0x307)
            memcpy(f.data, (const uint8_t[]){ 0x12, 0x34, 0x56, 0x78, 'V', 'I', 'C', 0 }, 8);
        fake.inbox[fake.inbox_len++] = f;
    }
    pthread_mutex_unlock(&fake.lock);
}

/* Number of frames with this id sent at fake time t (t = UINT64_MAX: any time). */
static size_t count_sent(uint32_t id, uint64_t t)
{
    size_t n = 0;
    pthread_mutex_lock(&fake.lock);
    for (size_t i = 0; i < fake.count; i++)
        if (fake.sent[i].f.id == id && (t == UINT64_MAX || fake.sent[i].t == t))
            n++;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

/* The last frame with this id; false when none. */
static bool last_sent(uint32_t id, struct can_frame_gw *out)
{
    bool found = false;
    pthread_mutex_lock(&fake.lock);
    for (size_t i = fake.count; i-- > 0;) {
        if (fake.sent[i].f.id == id) {
            *out = fake.sent[i].f;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&fake.lock);
    return found;
}

/* Waits (real time, generous) until a frame id was sent at fake time t. */
static bool wait_sent(uint32_t id, uint64_t t)
{
    bool ok;
    WAIT_FOR(ok, count_sent(id, t) > 0, 5000);
    if (ok)
        return true;
    fprintf(stderr, "timeout waiting for 0x%03X at t=%llu; sent at:", (unsigned)id, (unsigned long long)t);
    pthread_mutex_lock(&fake.lock);
    for (size_t i = 0, shown = 0; i < fake.count && shown < 40; i++) {
        if (fake.sent[i].f.id == id) {
            fprintf(stderr, " %llu", (unsigned long long)fake.sent[i].t);
            shown++;
        }
    }
    pthread_mutex_unlock(&fake.lock);
    fprintf(stderr, "\n");
    return false;
}

/* Advances the fake clock to t and waits until the live cycle of that time is complete. */
static bool step_to(uint64_t t)
{
    clock_set(t);
    return wait_sent(0x35A, t) && wait_sent(totals_expected ? 0x379 : 0x372, t);
}

/* ---- event recorder -------------------------------------------------------------------- */

struct recorder {
    pthread_mutex_t lock;
    int counts[EVENT_COUNT];
    struct app_inverter_link link;
    struct app_can_tx tx_failed;
};
static struct recorder rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_any(const struct gw_event *ev, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&rec.lock);
    rec.counts[ev->id]++;
    if (ev->id == EVENT_CAN_INVERTER_LINK && ev->size == sizeof rec.link)
        memcpy(&rec.link, ev->payload, sizeof rec.link);
    if (ev->id == EVENT_CAN_TX_FAILED && ev->size == sizeof rec.tx_failed)
        memcpy(&rec.tx_failed, ev->payload, sizeof rec.tx_failed);
    pthread_mutex_unlock(&rec.lock);
}

static int rec_count(int id)
{
    pthread_mutex_lock(&rec.lock);
    int n = rec.counts[id];
    pthread_mutex_unlock(&rec.lock);
    return n;
}

static void rec_reset(void)
{
    pthread_mutex_lock(&rec.lock);
    memset(rec.counts, 0, sizeof rec.counts);
    pthread_mutex_unlock(&rec.lock);
}

static bool wait_count(int id, int at_least)
{
    bool ok;
    WAIT_FOR(ok, rec_count(id) >= at_least, 5000);
    if (ok)
        return true;
    fprintf(stderr, "timeout waiting for %d x %s\n", at_least, app_event_name(id));
    return false;
}

/* ---- fixtures -------------------------------------------------------------------------- */

static struct event_bus *bus_new(void)
{
    struct event_bus *bus = NULL;
    event_bus_create(NULL, &bus);
    /* EVENT_CHARGE_LIMITS too: nothing may publish it any more (the view carries the limits). */
    static const int ids[] = { EVENT_CHARGE_LIMITS, EVENT_CAN_INVERTER_LINK, EVENT_CAN_TX_SUCCESS,
                               EVENT_CAN_TX_FAILED, EVENT_STORAGE_ERROR, EVENT_STORAGE_OK };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        event_bus_subscribe(bus, ids[i], on_any, NULL, "test");
    rec_reset();
    return bus;
}

/* A bank view as the battery service builds it: `packs` configured, the first `online` of them
 * online, cells 3.300 V except one low and one high cell, cell sensors 25.1 / 27.4 degC. */
static void make_view(struct battery_view *v, uint64_t t, unsigned packs, unsigned online, float volts,
                      float amps)
{
    static uint64_t seq;
    memset(v, 0, sizeof *v);
    bool several = packs > 1;
    v->seq = ++seq;
    v->timestamp_ms = t;
    v->wall_time_ms = 1700000000000LL + (int64_t)t;
    v->pack_count = (uint8_t)packs;
    v->online_count = (uint8_t)online;
    v->voltage_v = volts;
    v->current_a = amps;
    v->power_w = volts * amps;
    v->soc_pct = 80.0f;
    v->soh_pct = 100.0f;
    v->soh_valid = true;
    v->capacity_ah = 100.0f * (float)online;
    v->installed_capacity_ah = 100.0f * (float)packs;
    v->cell_count = 16;
    v->min_cell_v = 3.301f;
    v->max_cell_v = 3.345f;
    v->cell_spread_mv = 44.0f;
    v->min_cell = (struct battery_ref){ .pack = 0, .index = 3 };
    v->max_cell = (struct battery_ref){ .pack = (uint8_t)(several ? 1 : 0), .index = 7 };
    snprintf(v->min_cell.name, sizeof v->min_cell.name, "%s", several ? "P1C3" : "C3");
    snprintf(v->max_cell.name, sizeof v->max_cell.name, "%s", several ? "P2C7" : "C7");
    v->have_temp = true;
    v->temp_min_c = 25.1f;
    v->temp_max_c = 27.4f;
    snprintf(v->min_temp.name, sizeof v->min_temp.name, "%s", several ? "P2T1" : "T1");
    snprintf(v->max_temp.name, sizeof v->max_temp.name, "%s", several ? "P1T2" : "T2");
    v->online_status = BMS_STATUS_CHARGING;
    for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++)
        v->alarms.alarm[f] = v->alarms.warning[f] = VICTRON_FLAG_OK;
    v->alarms.online = online > 0;
    v->modules = (struct victron_modules){ .ok = (uint16_t)online, .offline = (uint16_t)(packs - online) };
    v->energy_in_wh = 123456.0;
    v->energy_out_wh = 98765.0;
    v->limits.valid = online > 0;
    v->limits.cvl_v = 55.2f;
    v->limits.ccl_a = 50.0f * (float)online;
    v->limits.dcl_a = 100.0f * (float)online;
    v->limits.discharge_v = 46.4f;
    snprintf(v->limits.cvl_reason, sizeof v->limits.cvl_reason, "absorption");
    if (!online) {
        v->alarms.alarm[VICTRON_FLAG_GENERAL] = VICTRON_FLAG_ACTIVE;
        v->conditions |= BATTERY_COND_NO_DATA;
    }
    for (unsigned i = 0; i < packs && i < BATTERY_MAX_PACKS; i++) {
        v->packs[i].id = (uint8_t)i;
        snprintf(v->packs[i].name, sizeof v->packs[i].name, "pack %u", i + 1);
        v->packs[i].state = i < online ? BATTERY_PACK_ONLINE : BATTERY_PACK_OFFLINE;
    }
}

static void publish_view(struct event_bus *bus, const struct battery_view *v)
{
    totals_expected = true;
    CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
}

static void feed(struct event_bus *bus, uint64_t t, unsigned packs, unsigned online)
{
    struct battery_view v;
    make_view(&v, t, packs, online, 52.8f, 20.0f);
    publish_view(bus, &v);
}

/* A TinyBMS version as uart_bms publishes it (registers 500..509). */
static void publish_version(struct event_bus *bus, uint8_t battery_id, uint8_t fw_public, uint16_t fw_internal,
                            const char *serial)
{
    struct app_bms_version ver = { .battery_id = battery_id,
                                   .version = { .valid = true, .fw_public = fw_public, .fw_internal = fw_internal,
                                                .hw_version = 1 } };
    snprintf(ver.version.serial, sizeof ver.version.serial, "%s", serial);
    CHECK(event_bus_publish(bus, EVENT_BMS_VERSION_UPDATE, &ver, sizeof ver, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
}

/* Moves the test clock to t and waits until the TX thread sleeps again (its cycle done, if one
 * was due): for moments when nothing at all may be sent, so no frame can mark the cycle. */
static void settle_at(uint64_t t)
{
    clock_set(t);
    CHECK(fake_clock_settle(1, 10000));
}

static struct can_publisher *publisher_new(struct event_bus *bus, struct gw_config *cfg)
{
    struct can_publisher_options o = { .config = cfg, .bus = bus, .transport = &fake_transport };
    struct can_publisher *p = NULL;
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_OK);
    return p;
}

static uint16_t le16(const uint8_t *d) { return (uint16_t)(d[0] | d[1] << 8); }
static uint32_t le32(const uint8_t *d)
{
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

/* The frames that carry live values: never sent while the battery is offline. */
static const uint32_t measurement_ids[] = { 0x351, 0x355, 0x356, 0x373, 0x374, 0x375, 0x376, 0x377 };
#define MEASUREMENT_IDS (sizeof measurement_ids / sizeof measurement_ids[0])

static size_t measurements_sent_at(uint64_t t)
{
    size_t n = 0;
    for (size_t i = 0; i < MEASUREMENT_IDS; i++)
        n += count_sent(measurement_ids[i], t);
    return n;
}

/* 0x35A says offline with the general alarm; 0x372 counts `offline` modules offline, none OK. */
static void expect_offline_status(uint16_t offline)
{
    struct can_frame_gw f = { 0 };
    CHECK(last_sent(0x35A, &f));
    CHECK_EQ_INT(f.dlc, 8);
    CHECK_EQ_INT(f.data[7] & 0x0C, 0x04); /* offline */
    CHECK_EQ_INT(f.data[0] & 0x03, 0x01); /* general alarm active */
    CHECK(last_sent(0x372, &f));
    CHECK_EQ_INT(le16(f.data), 0);
    CHECK_EQ_INT(le16(f.data + 2), 0);
    CHECK_EQ_INT(le16(f.data + 4), 0);
    CHECK_EQ_INT(le16(f.data + 6), offline);
}

/* ---- tests ----------------------------------------------------------------------------- */

/* Before the first BMS sample the battery is neither online nor offline: nothing that a GX may
 * log as a battery alarm goes out (no 0x35A "offline, general alarm", no 0x372 "module
 * offline"), no limits, no measurements, and the identity frames read from the BMS (0x35F
 * firmware, 0x380/0x381 serial) wait for its version instead of going out as zeros. Only when
 * no sample came within can.stale_timeout_ms of the start is the battery reported offline. */
static void test_nothing_alarming_before_the_first_sample(void)
{
    fake_reset();
    uint64_t t0 = 100000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK_EQ_INT(can_publisher_start(p), GW_ERR_STATE);
    CHECK(wait_sent(0x382, t0)); /* the configured names go out at start */
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(count_sent(0x35E, t0), 1);
    CHECK_EQ_INT(count_sent(0x370, t0), 1);
    CHECK_EQ_INT(count_sent(0x35F, UINT64_MAX), 0);   /* firmware unknown: not "0.0" */
    CHECK_EQ_INT(count_sent(0x380, UINT64_MAX), 0);   /* serial unknown: not empty */
    CHECK_EQ_INT(count_sent(0x381, UINT64_MAX), 0);
    struct can_publisher_status st;
    CHECK_EQ_INT(can_publisher_get_status(p, &st), GW_OK);
    CHECK(st.running && st.stale && st.awaiting_first_sample && !st.have_view);

    /* A view without any sample yet (the battery service runs before the BMS answers): its
     * energy counters are true and go out, its "no pack online" is not an alarm yet. */
    struct battery_view v;
    make_view(&v, t0 + 200, 1, 0, 0.0f, 0.0f);
    v.packs[0].state = BATTERY_PACK_NEVER_SEEN;
    publish_view(bus, &v);
    for (uint64_t t = t0 + 1000; t <= t0 + 5000; t += 1000) {
        settle_at(t);
        CHECK_EQ_INT(count_sent(0x378, t), 1);
    }
    CHECK_EQ_INT(count_sent(0x35A, UINT64_MAX), 0);
    CHECK_EQ_INT(count_sent(0x372, UINT64_MAX), 0);
    CHECK_EQ_INT(measurements_sent_at(UINT64_MAX), 0);
    CHECK_EQ_INT(can_publisher_get_status(p, &st), GW_OK);
    CHECK_EQ_INT(st.live_cycles, 6);
    CHECK(st.awaiting_first_sample);

    /* No sample within the stale timeout of the start: now the BMS is missing, and the GX is
     * told so (offline, general alarm, the module offline), 0x351 still withheld. */
    CHECK(step_to(t0 + 6000));
    CHECK_EQ_INT(measurements_sent_at(UINT64_MAX), 0);
    expect_offline_status(1);
    CHECK_EQ_INT(can_publisher_get_status(p, &st), GW_OK);
    CHECK(st.stale && !st.awaiting_first_sample);
    CHECK_EQ_INT(st.stale_transitions, 0);
    CHECK_EQ_INT(rec_count(EVENT_CHARGE_LIMITS), 0);
    can_publisher_destroy(p);

    /* Without any view at all, the same after the stale timeout. */
    fake_reset();
    clock_set(t0);
    p = publisher_new(bus, &cfg);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(wait_sent(0x382, t0));
    settle_at(t0 + 5000);
    CHECK_EQ_INT(count_sent(0x35A, UINT64_MAX), 0);
    CHECK_EQ_INT(count_sent(0x378, UINT64_MAX), 0); /* counters unknown before the first view */
    CHECK(step_to(t0 + 6000));
    expect_offline_status(1);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

/* A normal start: the first sample arrives within a second; the first 0x35A the GX ever sees
 * says online with every flag OK: no alarm, no offline code, at any moment. */
static void test_first_status_is_online_when_the_bms_answers(void)
{
    fake_reset();
    uint64_t t0 = 120000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(wait_sent(0x382, t0));
    settle_at(t0 + 700);
    feed(bus, t0 + 700, 1, 1);
    CHECK(step_to(t0 + 1000));
    for (uint64_t t = t0 + 2000; t <= t0 + 4000; t += 1000) {
        feed(bus, t, 1, 1);
        CHECK(step_to(t));
    }
    CHECK_EQ_INT(count_sent(0x35A, UINT64_MAX), 4);
    pthread_mutex_lock(&fake.lock);
    for (size_t i = 0; i < fake.count; i++) {
        const struct can_frame_gw *f = &fake.sent[i].f;
        if (f->id == 0x35A) {
            CHECK_EQ_INT(f->data[7] & 0x0C, 0x08); /* online */
            CHECK_EQ_INT(f->data[0] & 0x03, 0x02); /* general alarm OK */
        }
        if (f->id == 0x372)
            CHECK_EQ_INT(le16(f->data + 6), 0);    /* no module offline */
    }
    pthread_mutex_unlock(&fake.lock);
    CHECK_EQ_INT(count_sent(0x351, t0 + 1000), 1);
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(!st.stale && !st.awaiting_first_sample);
    CHECK_EQ_INT(st.stale_transitions, 0);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

/* The identity read from the BMS goes out as soon as it is known (not up to 10 s later), and
 * right at start when it already is; 0x35F carries the TinyBMS firmware as major.minor = public
 * version.0 (never the low byte of the internal version: 580 made the GX show "90.68"); the
 * serial is the last 16 of its 24 hex digits unless can.serial says otherwise. */
static void test_identity_sent_once_known(void)
{
    fake_reset();
    uint64_t t0 = 130000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    feed(bus, t0, 1, 1);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    CHECK(wait_sent(0x382, t0));
    CHECK_EQ_INT(count_sent(0x35F, UINT64_MAX), 0);
    settle_at(t0 + 300);
    publish_version(bus, 0, 90, 580, "0123456789ABCDEF01234567");
    CHECK(wait_sent(0x35F, t0 + 300)); /* at once, at the same instant */
    CHECK(wait_sent(0x382, t0 + 300));
    struct can_frame_gw f = { 0 };
    CHECK(last_sent(0x35F, &f));
    CHECK_EQ_INT(f.dlc, 8);
    CHECK_EQ_INT(f.data[2], 90);            /* major: the public firmware version */
    CHECK_EQ_INT(f.data[3], 0);             /* minor: none (not 580 & 0xFF = 68) */
    CHECK_EQ_INT(le16(f.data + 4), 100);    /* online capacity */
    CHECK(last_sent(0x380, &f));
    CHECK_MEM(f.data, "89ABCDEF", 8);
    CHECK(last_sent(0x381, &f));
    CHECK_MEM(f.data, "01234567", 8);
    /* The same version read again (the slow poll) does not resend; the period goes on from
     * the early cycle. */
    publish_version(bus, 0, 90, 580, "0123456789ABCDEF01234567");
    feed(bus, t0 + 1000, 1, 1);
    CHECK(step_to(t0 + 1000));
    CHECK_EQ_INT(count_sent(0x35F, UINT64_MAX), 1);
    settle_at(t0 + 10299);
    CHECK_EQ_INT(count_sent(0x35F, UINT64_MAX), 1);
    settle_at(t0 + 10300);
    CHECK_EQ_INT(count_sent(0x35F, t0 + 10300), 1);
    can_publisher_destroy(p);

    /* Known before the start: sent right at start. A configured serial needs no BMS. */
    fake_reset();
    clock_set(t0);
    snprintf(cfg.can.serial, sizeof cfg.can.serial, "SN-7");
    p = publisher_new(bus, &cfg);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(wait_sent(0x380, t0));
    CHECK(last_sent(0x380, &f));
    CHECK_MEM(f.data, "SN-7\0\0\0\0", 8);
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(count_sent(0x35F, UINT64_MAX), 0);  /* still no firmware */
    can_publisher_destroy(p);
    fake_reset();
    clock_set(t0);
    p = publisher_new(bus, &cfg);
    publish_version(bus, 0, 91, 600, "0123456789ABCDEF01234567");
    feed(bus, t0, 1, 1);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(wait_sent(0x35F, t0));
    CHECK(last_sent(0x35F, &f));
    CHECK_EQ_INT(f.data[2], 91);
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(count_sent(0x35F, UINT64_MAX), 1); /* one identity cycle at start, not two */
    can_publisher_destroy(p);

    /* The version is read a moment after the first answer and may reach the publisher before
     * the battery view of that sample: 0x35F (with the online capacity) waits for the view and
     * goes at once with it, the serial goes with the version. */
    fake_reset();
    clock_set(t0);
    gw_config_set_defaults(&cfg);
    p = publisher_new(bus, &cfg);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(wait_sent(0x382, t0));
    settle_at(t0 + 100);
    publish_version(bus, 0, 90, 580, "0123456789ABCDEF01234567");
    CHECK(wait_sent(0x380, t0 + 100));
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(count_sent(0x35F, UINT64_MAX), 0);
    settle_at(t0 + 150);
    feed(bus, t0 + 150, 1, 1);
    CHECK(wait_sent(0x35F, t0 + 150));
    CHECK(last_sent(0x35F, &f));
    CHECK_EQ_INT(f.data[2], 90);
    CHECK_EQ_INT(le16(f.data + 4), 100);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

static void test_one_pack_frames_from_the_view(void)
{
    fake_reset();
    uint64_t t0 = 150000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    struct battery_view v;
    make_view(&v, t0, 1, 1, 52.8f, 20.0f);
    v.alarms.warning[VICTRON_FLAG_CELL_IMBALANCE] = VICTRON_FLAG_ACTIVE; /* the view's flags, as is */
    v.alarms.warning[VICTRON_FLAG_GENERAL] = VICTRON_FLAG_ACTIVE;
    v.limits.cvl_v = 55.249f;  /* rounded DOWN on the bus: 55.2 V, never 55.3 V */
    v.limits.ccl_a = 100.09f;  /* 100.0 A */
    v.limits.dcl_a = 150.099f; /* 150.0 A */
    publish_view(bus, &v);
    publish_version(bus, 0, 90, 580, "0123456789ABCDEF01234567");
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    CHECK(wait_sent(0x382, t0));
    struct can_frame_gw f = { 0 };
    CHECK(last_sent(0x351, &f));
    CHECK_EQ_INT(le16(f.data), 552);
    CHECK_EQ_INT(le16(f.data + 2), 1000);
    CHECK_EQ_INT(le16(f.data + 4), 1500);
    CHECK_EQ_INT(le16(f.data + 6), 464);   /* discharge voltage 46.4 V */
    CHECK(last_sent(0x355, &f));
    CHECK_EQ_INT(le16(f.data), 80);
    CHECK_EQ_INT(le16(f.data + 2), 100);
    CHECK_EQ_INT(le16(f.data + 4), 8000);
    CHECK(last_sent(0x356, &f));
    CHECK_EQ_INT(f.dlc, 8);
    CHECK_EQ_INT(le16(f.data), 5280);      /* 52.80 V */
    CHECK_EQ_INT(le16(f.data + 2), 200);   /* 20.0 A */
    CHECK_EQ_INT(le16(f.data + 4), 274);   /* 27.4 degC: the hottest cell sensor */
    CHECK(last_sent(0x35A, &f));
    static const uint8_t a35a[8] = { 0xaa, 0xaa, 0xaa, 0x02, 0xa9, 0xaa, 0xaa, 0x09 };
    CHECK_MEM(f.data, a35a, 8);            /* online, imbalance warning from the view */
    CHECK(last_sent(0x372, &f));
    CHECK_EQ_INT(le16(f.data), 1);
    CHECK_EQ_INT(le16(f.data + 6), 0);
    /* 0x373 and 0x374..0x377 from one source: the view's cell extremes. */
    CHECK(last_sent(0x373, &f));
    CHECK_EQ_INT(f.dlc, 8);
    CHECK_EQ_INT(le16(f.data), 3301);
    CHECK_EQ_INT(le16(f.data + 2), 3345);
    CHECK_EQ_INT(le16(f.data + 4), 298);   /* 25.1 degC */
    CHECK_EQ_INT(le16(f.data + 6), 301);   /* 27.4 degC = 300.55 K */
    CHECK(last_sent(0x374, &f));
    CHECK_MEM(f.data, "C3\0\0\0\0\0\0", 8);
    CHECK(last_sent(0x375, &f));
    CHECK_MEM(f.data, "C7\0\0\0\0\0\0", 8);
    CHECK(last_sent(0x376, &f));
    CHECK_MEM(f.data, "T1\0\0\0\0\0\0", 8);
    CHECK(last_sent(0x377, &f));
    CHECK_MEM(f.data, "T2\0\0\0\0\0\0", 8);
    CHECK(last_sent(0x378, &f));
    CHECK_EQ_INT(le32(f.data), 1235);      /* 123456 Wh in 100 Wh steps */
    CHECK_EQ_INT(le32(f.data + 4), 988);
    CHECK(last_sent(0x379, &f));
    CHECK_EQ_INT(le16(f.data), 100);
    CHECK(last_sent(0x35F, &f));
    CHECK_EQ_INT(le16(f.data + 4), 100);   /* online capacity */

    /* A view without cell sensors: the temperatures are left out (DLC 4), ids empty. */
    make_view(&v, t0 + 500, 1, 1, 52.8f, 20.0f);
    v.have_temp = false;
    memset(v.min_temp.name, 0, sizeof v.min_temp.name);
    memset(v.max_temp.name, 0, sizeof v.max_temp.name);
    publish_view(bus, &v);
    CHECK(step_to(t0 + 1000));
    CHECK(last_sent(0x356, &f));
    CHECK_EQ_INT(f.dlc, 4);
    CHECK(last_sent(0x373, &f));
    CHECK_EQ_INT(f.dlc, 4);
    CHECK(last_sent(0x377, &f));
    CHECK_MEM(f.data, "\0\0\0\0\0\0\0\0", 8);

    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(!st.stale && st.have_view);
    CHECK_EQ_INT(st.view_seq, v.seq);
    CHECK_EQ_INT(st.views_received, 2);
    CHECK(st.limits.valid);
    CHECK_NEAR(st.limits.cvl_v, 55.2, 1e-5);
    CHECK_NEAR(st.energy_in_wh, 123456.0, 1e-9);
    CHECK_EQ_INT(rec_count(EVENT_CHARGE_LIMITS), 0);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

/* Two packs: 0x372 counts both, the bank limits go out, the names say which pack; one pack drops
 * out: 0x372 ok 1 offline 1, the (lower) bank limits, and the frames never stop. */
static void test_two_packs_then_one_offline(void)
{
    fake_reset();
    uint64_t t0 = 170000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    struct battery_view v;
    make_view(&v, t0, 2, 2, 52.8f, 40.0f);
    v.limits.ccl_a = 160.0f;
    v.limits.dcl_a = 200.0f;
    v.modules.blocking_discharge = 1;
    publish_view(bus, &v);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    struct can_frame_gw f = { 0 };
    CHECK(last_sent(0x372, &f));
    CHECK_EQ_INT(le16(f.data), 2);
    CHECK_EQ_INT(le16(f.data + 2), 0);
    CHECK_EQ_INT(le16(f.data + 4), 1);
    CHECK_EQ_INT(le16(f.data + 6), 0);
    CHECK(last_sent(0x351, &f));
    CHECK_EQ_INT(le16(f.data), 552);
    CHECK_EQ_INT(le16(f.data + 2), 1600);
    CHECK_EQ_INT(le16(f.data + 4), 2000);
    CHECK(last_sent(0x374, &f));
    CHECK_MEM(f.data, "P1C3\0\0\0\0", 8);
    CHECK(last_sent(0x375, &f));
    CHECK_MEM(f.data, "P2C7\0\0\0\0", 8);
    CHECK(last_sent(0x376, &f));
    CHECK_MEM(f.data, "P2T1\0\0\0\0", 8);
    CHECK(last_sent(0x377, &f));
    CHECK_MEM(f.data, "P1T2\0\0\0\0", 8);
    CHECK(last_sent(0x379, &f));
    CHECK_EQ_INT(le16(f.data), 200);
    CHECK(last_sent(0x356, &f));
    CHECK_EQ_INT(le16(f.data + 2), 400);

    /* Pack 2 drops out: the service recomputes with one pack (R9). */
    for (uint64_t t = t0 + 1000; t <= t0 + 4000; t += 1000) {
        make_view(&v, t - 100, 2, 1, 52.7f, 20.0f);
        v.limits.ccl_a = 80.0f;
        v.limits.dcl_a = 100.0f;
        v.conditions |= BATTERY_COND_PACK_OFFLINE;
        publish_view(bus, &v);
        CHECK(step_to(t));
        CHECK_EQ_INT(measurements_sent_at(t), MEASUREMENT_IDS); /* every frame still goes out */
        CHECK_EQ_INT(count_sent(0x372, t), 1);
    }
    CHECK(last_sent(0x372, &f));
    CHECK_EQ_INT(le16(f.data), 1);
    CHECK_EQ_INT(le16(f.data + 6), 1);
    CHECK(last_sent(0x351, &f));
    CHECK_EQ_INT(le16(f.data + 2), 800);
    CHECK_EQ_INT(le16(f.data + 4), 1000);
    CHECK(last_sent(0x35A, &f));
    CHECK_EQ_INT(f.data[7] & 0x0C, 0x08); /* still online: one pack carries the bank */
    CHECK(last_sent(0x379, &f));
    CHECK_EQ_INT(le16(f.data), 200);      /* installed: both packs */
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(!st.stale);
    CHECK_EQ_INT(st.stale_transitions, 0);
    CHECK_EQ_INT(st.pack_count, 2);
    CHECK_EQ_INT(st.online_count, 1);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

static void test_stale_view_withholds_and_resumes(void)
{
    fake_reset();
    uint64_t t0 = 200000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    struct battery_view v;
    make_view(&v, t0, 2, 2, 52.8f, 20.0f);
    v.alarms.alarm[VICTRON_FLAG_HIGH_TEMP] = VICTRON_FLAG_ACTIVE; /* must not outlive the view */
    publish_view(bus, &v);
    publish_version(bus, 0, 90, 580, "0123456789ABCDEF01234567");
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    CHECK_EQ_INT(measurements_sent_at(t0), MEASUREMENT_IDS);
    struct can_frame_gw f = { 0 };
    CHECK(last_sent(0x35A, &f));
    CHECK_EQ_INT(f.data[7] & 0x0C, 0x08);  /* online */

    /* No more views: everything goes on until the view is older than 5 s... */
    for (uint64_t t = t0 + 1000; t <= t0 + 5000; t += 1000) {
        CHECK(step_to(t));
        CHECK_EQ_INT(measurements_sent_at(t), MEASUREMENT_IDS);
    }
    /* ...then 0x351 and every measurement stop; status, counters and identity go on. */
    for (uint64_t t = t0 + 6000; t <= t0 + 10000; t += 1000) {
        CHECK(step_to(t));
        CHECK_EQ_INT(measurements_sent_at(t), 0);
        CHECK_EQ_INT(count_sent(0x372, t), 1);
        CHECK_EQ_INT(count_sent(0x378, t), 1);
        CHECK_EQ_INT(count_sent(0x379, t), 1);
    }
    CHECK(wait_sent(0x35E, t0 + 10000));
    expect_offline_status(2);
    CHECK(last_sent(0x35A, &f));
    CHECK_EQ_INT(f.data[0], 0x80 | 0x20 | 0x08 | 0x01); /* the old high-temp alarm is not repeated */
    CHECK(last_sent(0x378, &f));
    CHECK_EQ_INT(le32(f.data), 1235);     /* the last counters stay true */
    CHECK(last_sent(0x35F, &f));
    CHECK_EQ_INT(le16(f.data + 4), 0);    /* nothing online */
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(st.stale);
    CHECK_EQ_INT(st.stale_transitions, 1);
    CHECK(st.view_age_ms >= 10000);

    /* A view again: everything resumes at the next cycle, with the new values. */
    make_view(&v, t0 + 10500, 2, 2, 53.0f, 5.0f);
    publish_view(bus, &v);
    CHECK(step_to(t0 + 11000));
    CHECK_EQ_INT(measurements_sent_at(t0 + 11000), MEASUREMENT_IDS);
    CHECK(last_sent(0x356, &f));
    CHECK_EQ_INT(le16(f.data), 5300);
    CHECK(last_sent(0x35A, &f));
    CHECK_EQ_INT(f.data[7] & 0x0C, 0x08);
    can_publisher_get_status(p, &st);
    CHECK(!st.stale);
    CHECK_EQ_INT(st.stale_transitions, 1);

    /* A view older than the one held (another clock, a late delivery) does not replace it. */
    make_view(&v, t0 + 2000, 2, 2, 40.0f, 5.0f);
    publish_view(bus, &v);
    CHECK(step_to(t0 + 12000));
    CHECK(last_sent(0x356, &f));
    CHECK_EQ_INT(le16(f.data), 5300);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

/* A fresh view whose limits are not valid (no pack online): offline like a stale view. */
static void test_no_pack_online_withholds(void)
{
    fake_reset();
    uint64_t t0 = 250000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    feed(bus, t0, 2, 2);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    CHECK_EQ_INT(measurements_sent_at(t0), MEASUREMENT_IDS);
    for (uint64_t t = t0 + 1000; t <= t0 + 3000; t += 1000) {
        feed(bus, t, 2, 0); /* views keep coming, fresh, but nothing to send */
        CHECK(step_to(t));
        CHECK_EQ_INT(measurements_sent_at(t), 0);
        CHECK_EQ_INT(count_sent(0x35A, t), 1);
        CHECK_EQ_INT(count_sent(0x372, t), 1);
    }
    expect_offline_status(2);
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(st.stale);
    CHECK(!st.limits.valid);
    CHECK_EQ_INT(st.stale_transitions, 1);
    CHECK(st.view_age_ms <= 1000); /* (published before the clock moved to its time) */

    /* Limits the encoder must refuse (CVL below one step) are reported offline, never 0x351
     * missing behind an "online" 0x35A. */
    struct battery_view v;
    make_view(&v, t0 + 3500, 2, 2, 52.8f, 0.0f);
    v.limits.cvl_v = 0.05f;
    publish_view(bus, &v);
    CHECK(step_to(t0 + 4000));
    CHECK_EQ_INT(measurements_sent_at(t0 + 4000), 0);
    expect_offline_status(2);

    feed(bus, t0 + 4500, 2, 2);
    CHECK(step_to(t0 + 5000));
    CHECK_EQ_INT(measurements_sent_at(t0 + 5000), MEASUREMENT_IDS);
    can_publisher_get_status(p, &st);
    CHECK(!st.stale);
    CHECK_EQ_INT(st.stale_transitions, 1);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

static void test_periods_exact_with_fake_clock(void)
{
    fake_reset();
    uint64_t t0 = 300000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    feed(bus, t0, 1, 1);
    publish_version(bus, 0, 90, 580, "0123456789ABCDEF01234567");
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    for (uint64_t t = t0; t <= t0 + 30000; t += 500) {
        feed(bus, t, 1, 1);
        clock_set(t);
        if ((t - t0) % 1000 == 0)
            CHECK(wait_sent(0x35A, t));
        if ((t - t0) % 10000 == 0)
            CHECK(wait_sent(0x382, t));
    }
    can_publisher_stop(p);
    /* Live set every 1 s: 31 cycles in [t0, t0+30 s]; identity every 10 s: 4. */
    static const uint32_t live[] = { 0x351, 0x355, 0x356, 0x35A, 0x372, 0x373, 0x374, 0x375, 0x376, 0x377, 0x378, 0x379 };
    static const uint32_t ident[] = { 0x35E, 0x35F, 0x370, 0x371, 0x380, 0x381, 0x382 };
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
        if (count_sent(live[i], UINT64_MAX) != 31)
            fprintf(stderr, "0x%03X sent %zu times\n", (unsigned)live[i], count_sent(live[i], UINT64_MAX));
        CHECK_EQ_INT(count_sent(live[i], UINT64_MAX), 31);
    }
    for (size_t i = 0; i < sizeof ident / sizeof ident[0]; i++) {
        CHECK_EQ_INT(count_sent(ident[i], UINT64_MAX), 4);
        CHECK_EQ_INT(count_sent(ident[i], t0 + 20000), 1);
    }
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK_EQ_INT(st.live_cycles, 31);
    CHECK_EQ_INT(st.identity_cycles, 4);
    CHECK_EQ_INT(st.frames_sent, 31 * 12 + 4 * 7);
    CHECK_EQ_INT(st.frames_failed, 0);
    CHECK_EQ_INT(st.id_count, 19);
    CHECK(!st.running);
    CHECK(wait_count(EVENT_CAN_TX_SUCCESS, 35));
    CHECK_EQ_INT(rec_count(EVENT_CAN_TX_FAILED), 0);
    CHECK_EQ_INT(rec_count(EVENT_CHARGE_LIMITS), 0);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

static void test_inverter_link_present_and_lost(void)
{
    fake_reset();
    uint64_t t0 = 400000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    feed(bus, t0, 1, 1);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(!st.inverter_link);
    fake_inject(0x123); /* not from the GX: counted, does not make a link */
    fake_inject(0x307);
    CHECK(wait_count(EVENT_CAN_INVERTER_LINK, 1));
    pthread_mutex_lock(&rec.lock);
    CHECK(rec.link.present);
    CHECK_EQ_INT(rec.link.last_id, 0x307);
    pthread_mutex_unlock(&rec.lock);
    can_publisher_get_status(p, &st);
    CHECK(st.inverter_link);
    CHECK(st.inverter_identified);
    CHECK_EQ_INT(st.rx_frames, 2);
    /* Keep-alives within the timeout keep it; no second event. */
    clock_set(t0 + 8000);
    fake_inject(0x305);
    for (int i = 0; i < 1000 && st.inverter_last_id != 0x305; i++) {
        real_sleep_ms(5);
        can_publisher_get_status(p, &st);
    }
    CHECK_EQ_INT(st.inverter_last_id, 0x305);
    CHECK(step_to(t0 + 17000));
    can_publisher_get_status(p, &st);
    CHECK(st.inverter_link);
    CHECK_EQ_INT(rec_count(EVENT_CAN_INVERTER_LINK), 1);
    /* Silence past the 10 s timeout: lost, one event; frames keep flowing regardless. */
    CHECK(step_to(t0 + 18001));
    CHECK(wait_count(EVENT_CAN_INVERTER_LINK, 2));
    pthread_mutex_lock(&rec.lock);
    CHECK(!rec.link.present);
    pthread_mutex_unlock(&rec.lock);
    CHECK(step_to(t0 + 19001));
    CHECK_EQ_INT(rec_count(EVENT_CAN_INVERTER_LINK), 2);

    /* The tap saw TX and RX frames with their meaning. */
    struct can_tap_entry *tap = calloc(CAN_TAP_ENTRIES, sizeof *tap);
    size_t n = can_publisher_tap_read(p, 0, tap, CAN_TAP_ENTRIES);
    CHECK(n > 0 && n <= CAN_TAP_ENTRIES);
    bool rx_seen = false, tx_seen = false;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            CHECK(tap[i].seq == tap[i - 1].seq + 1);
        if (tap[i].dir == CAN_TAP_RX && tap[i].frame.id == 0x305)
            rx_seen = strcmp(tap[i].text, "0x305 GX keep-alive") == 0;
        if (tap[i].dir == CAN_TAP_TX && tap[i].frame.id == 0x35E)
            tx_seen = strcmp(tap[i].text, "0x35E manufacturer \"Enepaq\"") == 0;
    }
    CHECK(rx_seen);
    CHECK(tx_seen);
    /* Incremental read: nothing newer than the newest. */
    CHECK_EQ_INT(can_publisher_tap_read(p, tap[n - 1].seq + 1000, tap, CAN_TAP_ENTRIES), 0);
    size_t m = can_publisher_tap_read(p, tap[n - 1].seq - 2, tap, 2);
    CHECK_EQ_INT(m, 2);
    free(tap);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

static void test_identity_and_live_config(void)
{
    fake_reset();
    uint64_t t0 = 500000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    snprintf(cfg.can.manufacturer, sizeof cfg.can.manufacturer, "ACME");
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    /* Pack 1 (id 1) reports first; the identity describes the first configured pack (id 0). */
    struct app_bms_version ver = { .battery_id = 1, .version = { .valid = true, .fw_public = 5, .hw_version = 1 } };
    snprintf(ver.version.serial, sizeof ver.version.serial, "FFFFFFFFFFFFFFFFFFFFFFFF");
    CHECK(event_bus_publish(bus, EVENT_BMS_VERSION_UPDATE, &ver, sizeof ver, 1000) == GW_OK);
    ver = (struct app_bms_version){ .battery_id = 0, .version = { .valid = true, .fw_public = 6, .hw_version = 2 } };
    snprintf(ver.version.serial, sizeof ver.version.serial, "0123456789ABCDEF01234567");
    CHECK(event_bus_publish(bus, EVENT_BMS_VERSION_UPDATE, &ver, sizeof ver, 1000) == GW_OK);
    feed(bus, t0, 2, 2);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    CHECK(wait_sent(0x382, t0));
    struct can_frame_gw f = { 0 };
    CHECK(last_sent(0x35E, &f));
    CHECK_MEM(f.data, "ACME\0\0\0\0", 8);
    CHECK(last_sent(0x380, &f));
    CHECK_MEM(f.data, "89ABCDEF", 8); /* last 16 of the 24 digits */
    CHECK(last_sent(0x381, &f));
    CHECK_MEM(f.data, "01234567", 8);
    CHECK(last_sent(0x35F, &f));
    CHECK_EQ_INT(f.data[2], 6);
    CHECK_EQ_INT(f.data[3], 0);
    CHECK_EQ_INT(le16(f.data + 4), 200);   /* both packs online */
    CHECK_EQ_INT(le16(f.data + 6), 2);

    /* Live config change: identity and a shorter live period. */
    gw_config_set_defaults(&cfg);
    cfg.can.live_period_ms = 500;
    snprintf(cfg.can.serial, sizeof cfg.can.serial, "SN42");
    CHECK_EQ_INT(can_publisher_apply_config(p, &cfg), GW_OK);
    for (int i = 0; i < 1000 && count_sent(0x382, t0) < 2; i++)
        real_sleep_ms(5); /* a new name or serial goes out at once: a second identity set at t0 */
    CHECK_EQ_INT(count_sent(0x382, t0), 2);
    CHECK(last_sent(0x380, &f));
    CHECK_MEM(f.data, "SN42\0\0\0\0", 8);
    feed(bus, t0 + 1500, 2, 2);
    CHECK(step_to(t0 + 1000));
    CHECK(step_to(t0 + 1500));
    CHECK(step_to(t0 + 2000));
    clock_set(t0 + 10000);
    CHECK(wait_sent(0x380, t0 + 10000));
    CHECK(last_sent(0x380, &f));
    CHECK_MEM(f.data, "SN42\0\0\0\0", 8);
    CHECK(last_sent(0x35E, &f));
    CHECK_MEM(f.data, "Enepaq", 6);
    struct gw_config bad = cfg;
    bad.can.live_period_ms = 0;
    CHECK_EQ_INT(can_publisher_apply_config(p, &bad), GW_ERR_RANGE);
    bad = cfg;
    bad.can.stale_timeout_ms = 0;
    CHECK_EQ_INT(can_publisher_apply_config(p, &bad), GW_ERR_RANGE);
    CHECK_EQ_INT(can_publisher_apply_config(p, NULL), GW_ERR_INVAL);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

static void test_tx_failures_are_counted_and_aggregated(void)
{
    fake_reset();
    uint64_t t0 = 600000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    pthread_mutex_lock(&fake.lock);
    fake.fail_with = GW_ERR_IO;
    pthread_mutex_unlock(&fake.lock);
    feed(bus, t0, 1, 1);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(wait_count(EVENT_CAN_TX_FAILED, 2)); /* live + identity cycle at t0 */
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(st.frames_failed >= 2);
    CHECK_EQ_INT(st.frames_sent, 0);
    CHECK_EQ_INT(st.last_error, GW_ERR_IO);
    bool id_counted = false;
    for (size_t i = 0; i < st.id_count; i++)
        if (st.ids[i].id == 0x35A && st.ids[i].failed >= 1 && st.ids[i].last_error == GW_ERR_IO)
            id_counted = true;
    CHECK(id_counted);
    pthread_mutex_lock(&rec.lock);
    CHECK(rec.tx_failed.frames_failed >= 1);
    CHECK_EQ_INT(rec.tx_failed.last_error, GW_ERR_IO);
    pthread_mutex_unlock(&rec.lock);
    CHECK_EQ_INT(rec_count(EVENT_CAN_TX_SUCCESS), 0);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

static void test_create_rejects_bad_options(void)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = (struct can_publisher *)1;
    struct can_publisher_options o = { .config = &cfg, .bus = bus };
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_ERR_INVAL); /* no interface at all */
    CHECK(p == NULL);
    o.transport_spec = "log:/tmp/x.log";
    cfg.can.live_period_ms = 0;
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_ERR_RANGE);
    gw_config_set_defaults(&cfg);
    cfg.can.inverter_timeout_ms = 0;
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_ERR_RANGE);
    CHECK_EQ_INT(can_publisher_create(NULL, &p), GW_ERR_INVAL);
    o.bus = NULL;
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_ERR_INVAL);
    /* A spec that cannot be right fails at start with its reason... */
    gw_config_set_defaults(&cfg);
    o.bus = bus;
    o.transport_spec = "bogus:x";
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_OK);
    CHECK_EQ_INT(can_publisher_start(p), GW_ERR_INVAL);
    can_publisher_stop(p);
    can_publisher_destroy(p);
    /* ...an adapter that is only absent now starts, reports the link broken and is retried;
     * stop/destroy stay safe. */
    o.transport_spec = "slcan:/dev/does-not-exist";
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_OK);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    can_publisher_stop(p);
    can_publisher_destroy(p);
    can_publisher_destroy(NULL);
    /* A payload of another size on EVENT_BATTERY_UPDATE is ignored. */
    o.transport_spec = NULL;
    o.transport = &fake_transport;
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_OK);
    uint8_t junk[16] = { 0 };
    CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, junk, sizeof junk, 1000) == GW_OK);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(!st.have_view);
    CHECK_EQ_INT(st.views_received, 0);
    CHECK_EQ_INT(can_publisher_get_status(NULL, &st), GW_ERR_INVAL);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

static void test_describe_golden(void)
{
    static const struct {
        uint32_t id;
        uint8_t dlc;
        uint8_t data[8];
        const char *text;
    } cases[] = {
        { 0x351, 8, { 0x45, 0x02, 0x4c, 0x04, 0x4c, 0x04, 0x00, 0x00 }, "0x351 CVL 58.1 V CCL 110.0 A DCL 110.0 A DV 0.0 V" },
        { 0x355, 4, { 0x59, 0x00, 0x64, 0x00 }, "0x355 SOC 89 % SOH 100 %" },
        { 0x356, 6, { 0x31, 0x16, 0xce, 0x00, 0x3e, 0x01 }, "0x356 56.81 V 20.6 A 31.8 degC" },
        { 0x35A, 8, { 0xaa, 0xaa, 0xaa, 0x02, 0xaa, 0xaa, 0xaa, 0x0a }, "0x35A alarms: none; warnings: none; online" },
        { 0x35A, 8, { 0x59, 0xaa, 0xaa, 0x02, 0xaa, 0xaa, 0xaa, 0x05 }, "0x35A alarms: general, low voltage, high temp; warnings: cell imbalance; offline" },
        { 0x305, 8, { 0 }, "0x305 GX keep-alive" },
        { 0x307, 8, { 0x12, 0x34, 0x56, 0x78, 'V', 'I', 'C', 0 }, "0x307 GX identification \"VIC\"" },
        { 0x378, 8, { 0x0c, 0, 0, 0, 0x01, 0, 0, 0 }, "0x378 energy in 1.2 kWh out 0.1 kWh" },
        { 0x373, 8, { 0xE4, 0x0C, 0x4A, 0x0D, 0x28, 0x01, 0x2A, 0x01 }, "0x373 cells 3.300..3.402 V temp 23..25 degC" },
        { 0x351, 2, { 0x45, 0x02 }, "0x351 [2] 45 02" },
        { 0x123, 3, { 1, 2, 3 }, "0x123 [3] 01 02 03" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct can_frame_gw f = { .id = cases[i].id, .dlc = cases[i].dlc };
        memcpy(f.data, cases[i].data, 8);
        char buf[CAN_TAP_TEXT];
        CHECK(victron_describe_frame(&f, buf, sizeof buf) > 0);
        CHECK_STR(buf, cases[i].text);
    }
    struct can_frame_gw f = { .id = 0x351, .dlc = 8 };
    char tiny[8];
    CHECK(victron_describe_frame(&f, tiny, sizeof tiny) >= 0);
    CHECK_EQ_INT(strlen(tiny), 7); /* truncated, terminated */
    CHECK_EQ_INT(victron_describe_frame(NULL, tiny, sizeof tiny), GW_ERR_INVAL);
}

static void test_slcan_device_gone_is_survived(void)
{
    /* A real slcan transport on a pty whose other end disappears (USB adapter unplugged):
     * sends fail as "closed", the publisher keeps its schedule, retries the open, never crashes. */
    fake_reset();
    uint64_t t0 = 800000;
    clock_set(t0);
    int master, slave;
    char name[64], spec[96];
    CHECK_EQ_INT(openpty(&master, &slave, name, NULL, NULL), 0);
    close(slave);
    snprintf(spec, sizeof spec, "slcan:%s", name);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher_options o = { .config = &cfg, .bus = bus, .transport_spec = spec };
    struct can_publisher *p = NULL;
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_OK);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(wait_count(EVENT_CAN_TX_SUCCESS, 1));
    close(master);
    struct can_publisher_status st = { 0 };
    for (uint64_t k = 1; k <= 20; k++) {
        clock_set(t0 + k * 1000);
        real_sleep_ms(20);
    }
    CHECK(wait_count(EVENT_CAN_TX_FAILED, 1));
    for (int i = 0; i < 1000; i++) {
        can_publisher_get_status(p, &st);
        if (!st.transport_open && st.frames_failed > 0)
            break;
        real_sleep_ms(5);
    }
    CHECK(!st.transport_open);
    CHECK(st.frames_failed > 0);
    CHECK_EQ_INT(st.last_error, GW_ERR_CLOSED);
    CHECK(st.running);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

/* ---- the TX thread's decisions, without threads ---------------------------------------- */

static void test_offline_reason_table(void)
{
    static const struct {
        bool have_view;
        uint64_t view_ms;
        bool limits_valid;
        bool sampled;
        uint64_t started;
        uint64_t now;
        uint32_t stale_ms;
        int want;
    } rows[] = {
        { false, 0, true, true, 0, 1000, 3000, CAN_PUBLISHER__NO_VIEW },
        { true, 1000, true, true, 0, 1000, 3000, CAN_PUBLISHER__ONLINE },
        { true, 1000, true, true, 0, 4000, 3000, CAN_PUBLISHER__ONLINE },      /* exactly the timeout: fresh */
        { true, 1000, true, true, 0, 4001, 3000, CAN_PUBLISHER__STALE_VIEW },
        { true, 1000, false, true, 0, 2000, 3000, CAN_PUBLISHER__NO_LIMITS },
        { true, 1000, false, true, 0, 9000, 3000, CAN_PUBLISHER__STALE_VIEW }, /* stale wins over no limits */
        { true, 5000, true, true, 0, 1000, 3000, CAN_PUBLISHER__ONLINE },      /* stamped after now: age 0 */
        /* Before the first sample: not known yet, for the stale timeout after the start. */
        { false, 0, false, false, 1000, 1000, 3000, CAN_PUBLISHER__WARMING_UP },
        { false, 0, false, false, 1000, 4000, 3000, CAN_PUBLISHER__WARMING_UP },
        { false, 0, false, false, 1000, 4001, 3000, CAN_PUBLISHER__NO_VIEW },
        { true, 3500, false, false, 1000, 3900, 3000, CAN_PUBLISHER__WARMING_UP }, /* a view, no sample */
        { true, 3500, false, false, 1000, 4001, 3000, CAN_PUBLISHER__NO_LIMITS },
        { true, 3500, false, false, 5000, 3900, 3000, CAN_PUBLISHER__WARMING_UP }, /* started after now */
        { true, 2000, true, true, 1000, 2000, 3000, CAN_PUBLISHER__ONLINE },       /* sampled: at once */
        { true, 2000, false, true, 1000, 2000, 3000, CAN_PUBLISHER__NO_LIMITS },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct can_publisher__freshness fr = { .have_view = rows[i].have_view, .view_ms = rows[i].view_ms,
                                               .limits_valid = rows[i].limits_valid, .sampled = rows[i].sampled,
                                               .started_ms = rows[i].started };
        int got = can_publisher__offline_reason(&fr, rows[i].now, rows[i].stale_ms);
        if (got != rows[i].want)
            fprintf(stderr, "offline reason row %zu\n", i);
        CHECK_EQ_INT(got, rows[i].want);
    }
    CHECK(!can_publisher__link_expired(false, 0, 100000, 10000));
    CHECK(!can_publisher__link_expired(true, 1000, 11000, 10000));
    CHECK(can_publisher__link_expired(true, 1000, 11001, 10000));
    CHECK(!can_publisher__link_expired(true, 12000, 11001, 10000)); /* stamped after now */
}

/* One row per call of the step: inputs, what is due, and the deadline when nothing is. */
static void test_schedule_table(void)
{
    struct can_publisher__sched s;
    can_publisher__sched_init(&s, 10000, 1000, 10000);
    enum { L = 1, I = 2, LOST = 4, RE = 8 };
    static const struct {
        uint64_t now;
        uint32_t live, ident;
        bool link;
        uint64_t link_last;
        bool broken;
        unsigned due;
        uint64_t deadline;      /* checked when nothing is due */
        int reopen_ok;          /* after a reopen: 1 ok, 0 failed */
    } rows[] = {
        { 10000, 1000, 10000, false, 0, false, L | I, 0, -1 },        /* both at start */
        { 10000, 1000, 10000, false, 0, false, 0, 11000, -1 },
        { 10999, 1000, 10000, false, 0, false, 0, 11000, -1 },
        { 11000, 1000, 10000, false, 0, false, L, 0, -1 },
        { 11000, 1000, 10000, true, 11000, false, 0, 12000, -1 },     /* link: timeout 21001 later */
        { 13500, 1000, 10000, true, 11000, false, L, 0, -1 },         /* late: 12000 missed */
        { 13500, 1000, 10000, true, 11000, false, 0, 14500, -1 },     /* next one period after now */
        { 14500, 1000, 10000, true, 11000, false, L, 0, -1 },
        { 14600, 1000, 10000, true, 11000, false, 0, 15500, -1 },
        { 14600, 500, 10000, true, 11000, false, 0, 15000, -1 },      /* 500 ms from the last (14500) */
        { 20000, 500, 10000, true, 11000, false, L | I, 0, -1 },
        { 20000, 500, 2000, true, 11000, false, 0, 20500, -1 },       /* identity 2 s from 20000 */
        { 20000, 60000, 60000, true, 11000, false, 0, 21001, -1 },    /* the link timeout is nearest */
        { 21001, 60000, 60000, true, 11000, false, LOST, 0, -1 },
        { 21001, 60000, 60000, false, 11000, true, 0, 26001, -1 },    /* broken: first try in 5 s */
        { 26001, 60000, 60000, false, 11000, true, RE, 0, 0 },        /* fails: 10 s */
        { 26001, 60000, 60000, false, 11000, true, 0, 36001, -1 },
        { 36001, 60000, 60000, false, 11000, true, RE, 0, 0 },        /* fails: 20 s */
        { 56001, 60000, 60000, false, 11000, true, RE, 0, 0 },        /* 40 s */
        { 96001, 60000, 60000, false, 11000, true, L | I | RE, 0, 0 }, /* 60 s (the cap); cycles due */
        { 96001, 60000, 60000, false, 11000, true, 0, 135000, -1 },   /* the cycles come first */
        { 156001, 60000, 60000, false, 11000, true, L | I | RE, 0, 1 },
        { 156001, 60000, 60000, false, 11000, false, 0, 195000, -1 }, /* reopened: nothing pending */
        { 156001, 60000, 60000, false, 11000, true, 0, 161001, -1 },  /* broken again: 5 s again */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct can_publisher__inputs in = {
            .now_ms = rows[i].now, .live_period_ms = rows[i].live, .identity_period_ms = rows[i].ident,
            .inverter_timeout_ms = 10000, .link = rows[i].link, .link_last_ms = rows[i].link_last,
            .broken = rows[i].broken, .can_reopen = true,
        };
        struct can_publisher__decision d = can_publisher__step(&s, &in);
        unsigned due = (d.live ? L : 0) | (d.identity ? I : 0) | (d.link_lost ? LOST : 0) | (d.reopen ? RE : 0);
        if (due != rows[i].due)
            fprintf(stderr, "row %zu: due %u, want %u\n", i, due, rows[i].due);
        CHECK_EQ_INT(due, rows[i].due);
        if (!due) {
            if (d.deadline_ms != rows[i].deadline)
                fprintf(stderr, "row %zu\n", i);
            CHECK_EQ_INT(d.deadline_ms, rows[i].deadline);
        }
        if (d.reopen)
            can_publisher__reopened(&s, rows[i].now, rows[i].reopen_ok == 1);
    }
    /* The identity becoming known (or changing) makes the identity set due at once; the next
     * one follows a period after that, and the same generation never triggers twice. */
    static const struct {
        uint64_t now;
        uint32_t gen;
        unsigned due;
        uint64_t deadline;
    } ident[] = {
        { 0, 0, L | I, 0 }, { 0, 0, 0, 1000 }, { 300, 1, I, 0 }, { 300, 1, 0, 1000 }, { 1000, 1, L, 0 },
        { 10299, 1, L, 0 }, { 10299, 1, 0, 10300 }, { 10300, 1, I, 0 }, { 10300, 1, 0, 11299 },
        { 10500, 2, I, 0 }, { 10500, 2, 0, 11299 }, { 11299, 2, L, 0 }, { 11299, 2, 0, 12299 },
    };
    can_publisher__sched_init(&s, 0, 1000, 10000);
    for (size_t i = 0; i < sizeof ident / sizeof ident[0]; i++) {
        struct can_publisher__inputs in = { .now_ms = ident[i].now, .live_period_ms = 1000,
                                            .identity_period_ms = 10000, .inverter_timeout_ms = 10000,
                                            .identity_gen = ident[i].gen };
        struct can_publisher__decision d = can_publisher__step(&s, &in);
        unsigned due = (d.live ? L : 0) | (d.identity ? I : 0);
        if (due != ident[i].due || (!due && d.deadline_ms != ident[i].deadline))
            fprintf(stderr, "identity row %zu: due %u deadline %llu\n", i, due, (unsigned long long)d.deadline_ms);
        CHECK_EQ_INT(due, ident[i].due);
        if (!due)
            CHECK_EQ_INT(d.deadline_ms, ident[i].deadline);
    }

    /* A given transport (tests, tools) is never reopened. */
    can_publisher__sched_init(&s, 0, 1000, 10000);
    struct can_publisher__inputs in = { .now_ms = 0, .live_period_ms = 1000, .identity_period_ms = 10000,
                                        .inverter_timeout_ms = 10000, .broken = true, .can_reopen = false };
    for (uint64_t t = 0; t < 100000; t += 1000) {
        in.now_ms = t;
        CHECK(!can_publisher__step(&s, &in).reopen);
    }
}

/* On the test clock, the TX thread sleeps until its next cycle and nothing else: a move short
 * of it sends nothing, the move onto it one cycle, and it wakes once per move. */
static void test_tx_thread_wakes_only_for_its_cycles(void)
{
    fake_reset();
    uint64_t t0 = 700000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    feed(bus, t0, 1, 1);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(wait_sent(0x35A, t0));
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(fake_clock_next_deadline(), t0 + cfg.can.live_period_ms);
    for (uint64_t k = 1; k <= 5; k++) {
        uint64_t due = t0 + k * cfg.can.live_period_ms;
        uint64_t returns = fake_clock_wait_returns();
        clock_set(due - 1);
        CHECK(fake_clock_settle(1, 10000));
        CHECK_EQ_INT(count_sent(0x35A, UINT64_MAX), k);
        CHECK_EQ_INT(fake_clock_next_deadline(), due);
        clock_set(due);
        CHECK(wait_sent(0x35A, due));
        CHECK(fake_clock_settle(1, 10000));
        CHECK_EQ_INT(count_sent(0x35A, UINT64_MAX), k + 1);
        CHECK_EQ_INT(fake_clock_next_deadline(), due + cfg.can.live_period_ms);
        CHECK_EQ_INT(fake_clock_wait_returns() - returns, 2); /* one per move, no polling */
    }
    /* A period changed by configuration wakes it at once and counts from the last cycle. */
    uint64_t last = t0 + 5 * cfg.can.live_period_ms;
    cfg.can.live_period_ms = 300;
    CHECK_EQ_INT(can_publisher_apply_config(p, &cfg), GW_OK);
    for (int i = 0; i < 1000 && fake_clock_next_deadline() != last + 300; i++)
        real_sleep_ms(5);
    CHECK_EQ_INT(fake_clock_next_deadline(), last + 300);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

/* systemd's watchdog follows the TX scheduler: it checks in with the time of its next cycle
 * (so a scheduler that misses it by the grace is hung), and says idle once stopped. */
static void test_scheduler_checks_in_with_its_next_cycle(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_can_publisher_notify_%d", (int)getpid());
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    unlink(path);
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "30000000", 1);
    struct watchdog *wd = NULL;
    CHECK_EQ_INT(watchdog_create(&wd), GW_OK);
    struct watchdog_client *c = watchdog_client_add(wd, "can-tx");
    CHECK(c != NULL);
    fake_reset();
    uint64_t t0 = 900000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher_options o = { .config = &cfg, .bus = bus, .transport = &fake_transport, .watchdog = c };
    struct can_publisher *p = NULL;
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_OK);
    feed(bus, t0, 1, 1);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(watchdog_client_next_ms(c), t0 + 1000);
    CHECK(step_to(t0 + 1000));
    CHECK(fake_clock_settle(1, 10000));
    CHECK_EQ_INT(watchdog_client_next_ms(c), t0 + 2000);
    can_publisher_stop(p);
    CHECK_EQ_INT(watchdog_client_next_ms(c), WATCHDOG_IDLE);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
    watchdog_destroy(wd);
    close(fd);
    unlink(path);
}

/* The age of the data a limit or measurement frame carries when written: send time minus the
 * oldest online pack's sample (what a charger acts on), never an offline pack's old sample. */
static void test_data_age_at_send(void)
{
    fake_reset();
    uint64_t t0 = 180000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg);
    struct battery_view v;
    make_view(&v, t0 - 30, 3, 2, 52.8f, 20.0f);
    v.packs[0].live.valid = true;
    v.packs[0].live.timestamp_ms = t0 - 80; /* the oldest online sample */
    v.packs[1].live.valid = true;
    v.packs[1].live.timestamp_ms = t0 - 30;
    v.packs[2].live.valid = true;
    v.packs[2].live.timestamp_ms = t0 - 900; /* offline: not in the frames */
    publish_view(bus, &v);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(st.data_age_frames >= 3); /* 0x351, 0x355, 0x356 at least */
    CHECK_EQ_INT(st.data_age_max_ms, 80);
    CHECK_EQ_INT(st.data_age_sum_ms, 80 * st.data_age_frames);
    for (size_t i = 0; i < CAN_PUBLISHER_AGE_BUCKETS; i++)
        CHECK_EQ_INT(st.data_age_le[i], can_publisher_age_bounds_ms[i] >= 80 ? st.data_age_frames : 0);
    CHECK_EQ_INT(can_publisher_age_bounds_ms[CAN_PUBLISHER_AGE_BUCKETS - 1], UINT32_MAX);

    /* Nothing online: 0x351 and the measurements withheld, no age counted. */
    uint64_t counted = st.data_age_frames;
    make_view(&v, t0 + 1000, 3, 0, 52.8f, 20.0f);
    publish_view(bus, &v);
    CHECK(step_to(t0 + 1000));
    can_publisher_get_status(p, &st);
    CHECK(st.stale);
    CHECK_EQ_INT(st.data_age_frames, counted);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

static void setup(void)
{
    fake_clock_set_ms(1000000);
}

static void test_setup(void) { setup(); }

/* ---- a transport with a poll_fd: the RX thread sleeps in poll(), never in slices ---------- */

static struct {
    int pipe[2];          /* one byte written = one frame arrived */
    atomic_int recv_calls;
    atomic_int timed_calls; /* recv asked to wait: a slice */
} polled;

static int polled_recv(struct can_transport *t, struct can_frame_gw *f, uint32_t timeout_ms)
{
    (void)t;
    atomic_fetch_add(&polled.recv_calls, 1);
    if (timeout_ms)
        atomic_fetch_add(&polled.timed_calls, 1);
    uint8_t b;
    if (read(polled.pipe[0], &b, 1) == 1) {
        *f = (struct can_frame_gw){ .id = 0x305, .dlc = 8 };
        return GW_OK;
    }
    return GW_ERR_TIMEOUT;
}

static int polled_fd(struct can_transport *t)
{
    (void)t;
    return polled.pipe[0];
}

static const struct can_transport_ops polled_ops = {
    .name = "polled", .open = fake_open, .send = fake_send, .recv = polled_recv, .close = fake_close,
    .stats = fake_stats, .poll_fd = polled_fd,
};
static struct can_transport polled_transport = { .ops = &polled_ops, .impl = &polled, .spec = "polled:" };

/* Between frames the RX thread makes no call at all: each frame costs one recv that returns it
 * and one that finds nothing (then poll()); stop gets it out of poll() at once. With slices it
 * made a recv call per slice, with a timeout. */
static void test_rx_waits_in_poll_without_slices(void)
{
    fake_reset();
    clock_set(500000);
    CHECK_EQ_INT(pipe2(polled.pipe, O_NONBLOCK | O_CLOEXEC), 0);
    atomic_store(&polled.recv_calls, 0);
    atomic_store(&polled.timed_calls, 0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher_options o = { .config = &cfg, .bus = bus, .transport = &polled_transport };
    struct can_publisher *p = NULL;
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_OK);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    WAIT_UNTIL(atomic_load(&polled.recv_calls) >= 1, 10000); /* found nothing: in poll() now */
    struct can_publisher_status st;
    for (int i = 1; i <= 5; i++) {
        CHECK_EQ_INT(write(polled.pipe[1], "x", 1), 1);
        WAIT_UNTIL((can_publisher_get_status(p, &st), st.rx_frames >= (uint64_t)i), 10000);
        /* The frame's recv, then the one that finds nothing and goes back to poll(). */
        WAIT_UNTIL(atomic_load(&polled.recv_calls) >= 1 + 2 * i, 10000);
    }
    can_publisher_stop(p);
    CHECK_EQ_INT(atomic_load(&polled.timed_calls), 0);
    CHECK(atomic_load(&polled.recv_calls) <= 1 + 2 * 5 + 1); /* + at most one after the stop's wake */
    can_publisher_get_status(p, &st);
    CHECK_EQ_INT(st.rx_frames, 5);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
    close(polled.pipe[0]);
    close(polled.pipe[1]);
}

TEST_MAIN(TEST_CASE(test_setup), TEST_CASE(test_describe_golden), TEST_CASE(test_rx_waits_in_poll_without_slices), TEST_CASE(test_create_rejects_bad_options),
          TEST_CASE(test_nothing_alarming_before_the_first_sample),
          TEST_CASE(test_first_status_is_online_when_the_bms_answers), TEST_CASE(test_identity_sent_once_known), TEST_CASE(test_one_pack_frames_from_the_view),
          TEST_CASE(test_two_packs_then_one_offline), TEST_CASE(test_stale_view_withholds_and_resumes),
          TEST_CASE(test_no_pack_online_withholds), TEST_CASE(test_periods_exact_with_fake_clock),
          TEST_CASE(test_inverter_link_present_and_lost), TEST_CASE(test_identity_and_live_config),
          TEST_CASE(test_tx_failures_are_counted_and_aggregated), TEST_CASE(test_slcan_device_gone_is_survived),
          TEST_CASE(test_offline_reason_table), TEST_CASE(test_schedule_table),
          TEST_CASE(test_tx_thread_wakes_only_for_its_cycles), TEST_CASE(test_scheduler_checks_in_with_its_next_cycle),
          TEST_CASE(test_data_age_at_send))
