/* can_publisher with a fake transport (ops struct) and a replaced clock: periods, stale stop and
 * resume of 0x351, inverter link, charge limits and caps, TX failure events, the tap, energy
 * integration and its save / restore / corrupt file, live config changes. Synchronisation is by
 * condition with a generous real-time deadline; the fake clock makes the schedule exact. */
#define _GNU_SOURCE /* mkdtemp */
#include "can_publisher.h"
#include "can_publisher_internal.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_config.h"
#include "gw_error.h"
#include "test.h"

#include <pthread.h>
#include <pty.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- fake clock ------------------------------------------------------------------------ */

static _Atomic uint64_t fake_now = 1000000;
static uint64_t fake_now_ms(void) { return atomic_load(&fake_now); }
static void clock_set(uint64_t t) { atomic_store(&fake_now, t); }

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
        fake.sent[fake.count++] = (struct sent_frame){ .t = fake_now_ms(), .f = *f };
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

static void fake_reset(void)
{
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
    for (int i = 0; i < 1000; i++) {
        if (count_sent(id, t) > 0)
            return true;
        real_sleep_ms(5);
    }
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

/* Advances the fake clock to t and waits for the live cycle of that time (0x35A is always sent). */
static bool step_to(uint64_t t)
{
    clock_set(t);
    return wait_sent(0x35A, t);
}

/* ---- event recorder -------------------------------------------------------------------- */

struct recorder {
    pthread_mutex_t lock;
    int counts[EVENT_COUNT];
    struct app_charge_limits limits;
    struct app_inverter_link link;
    struct app_can_tx tx_failed;
    struct app_storage_error storage;
};
static struct recorder rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_any(const struct gw_event *ev, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&rec.lock);
    rec.counts[ev->id]++;
    if (ev->id == EVENT_CHARGE_LIMITS && ev->size == sizeof rec.limits)
        memcpy(&rec.limits, ev->payload, sizeof rec.limits);
    if (ev->id == EVENT_CAN_INVERTER_LINK && ev->size == sizeof rec.link)
        memcpy(&rec.link, ev->payload, sizeof rec.link);
    if (ev->id == EVENT_CAN_TX_FAILED && ev->size == sizeof rec.tx_failed)
        memcpy(&rec.tx_failed, ev->payload, sizeof rec.tx_failed);
    if (ev->id == EVENT_STORAGE_ERROR && ev->size == sizeof rec.storage)
        memcpy(&rec.storage, ev->payload, sizeof rec.storage);
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
    for (int i = 0; i < 1000; i++) {
        if (rec_count(id) >= at_least)
            return true;
        real_sleep_ms(5);
    }
    fprintf(stderr, "timeout waiting for %d x %s\n", at_least, app_event_name(id));
    return false;
}

/* ---- fixtures -------------------------------------------------------------------------- */

static struct event_bus *bus_new(void)
{
    struct event_bus *bus = NULL;
    event_bus_create(NULL, &bus);
    static const int ids[] = { EVENT_CHARGE_LIMITS, EVENT_CAN_INVERTER_LINK, EVENT_CAN_TX_SUCCESS,
                               EVENT_CAN_TX_FAILED, EVENT_STORAGE_ERROR, EVENT_STORAGE_OK };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        event_bus_subscribe(bus, ids[i], on_any, NULL, "test");
    rec_reset();
    return bus;
}

static struct bms_live_data sample_at(uint64_t t, float volts, float amps)
{
    struct bms_live_data d = { .valid = true, .timestamp_ms = t, .cell_count = 16 };
    for (int i = 0; i < 16; i++)
        d.cell_mv_x10[i] = (uint16_t)(volts / 16.0f * 10000.0f);
    d.min_cell_mv = d.max_cell_mv = (uint16_t)(volts / 16.0f * 1000.0f);
    d.min_cell_index = 1;
    d.max_cell_index = 2;
    d.pack_voltage_v = volts;
    d.pack_current_a = amps;
    d.temp_dc[0] = 251;
    d.temp_present[0] = true;
    d.soc_ppm = 80000000; /* 80 % */
    d.soh_raw = 50000;    /* 100 % */
    d.soh_valid = true;
    d.online_status = BMS_STATUS_CHARGING;
    return d;
}

static void feed(struct event_bus *bus, uint64_t t, float volts, float amps)
{
    struct bms_live_data d = sample_at(t, volts, amps);
    CHECK(event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &d, sizeof d, 1000));
    CHECK(event_bus_flush(bus, 5000));
}

static struct can_publisher *publisher_new(struct event_bus *bus, struct gw_config *cfg, const char *dir)
{
    struct can_publisher_options o = { .config = cfg, .bus = bus, .data_dir = dir, .transport = &fake_transport };
    struct can_publisher *p = NULL;
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_OK);
    return p;
}

static uint16_t le16(const uint8_t *d) { return (uint16_t)(d[0] | d[1] << 8); }

/* ---- tests ----------------------------------------------------------------------------- */

static void test_no_data_withholds_0x351_and_marks_offline(void)
{
    fake_reset();
    clock_set(100000);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg, NULL);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK_EQ_INT(can_publisher_start(p), GW_ERR_STATE);
    CHECK(step_to(100000));
    CHECK(wait_sent(0x382, 100000)); /* identity set sent at start too */
    CHECK(wait_count(EVENT_CHARGE_LIMITS, 1));
    CHECK_EQ_INT(count_sent(0x351, UINT64_MAX), 0);
    CHECK_EQ_INT(count_sent(0x355, UINT64_MAX), 0); /* nothing measured yet */
    CHECK_EQ_INT(count_sent(0x356, UINT64_MAX), 0);
    struct can_frame_gw f = { 0 };
    CHECK(last_sent(0x35A, &f));
    CHECK_EQ_INT(f.dlc, 8);
    CHECK_EQ_INT(f.data[7] & 0x0C, 0x04); /* offline */
    CHECK_EQ_INT(f.data[0] & 0x03, 0x01); /* general alarm active */
    CHECK(last_sent(0x372, &f));
    CHECK_EQ_INT(le16(f.data + 6), 1);    /* one module offline */
    CHECK(last_sent(0x35E, &f));
    CHECK_MEM(f.data, "Enepaq", 6);
    pthread_mutex_lock(&rec.lock);
    CHECK(!rec.limits.sending);
    pthread_mutex_unlock(&rec.lock);
    struct can_publisher_status st;
    CHECK_EQ_INT(can_publisher_get_status(p, &st), GW_OK);
    CHECK(st.running && st.stale && !st.have_sample);
    CHECK_EQ_INT(st.stale_transitions, 0);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

static void test_stale_stop_and_resume(void)
{
    fake_reset();
    uint64_t t0 = 200000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg, NULL);
    feed(bus, t0, 52.8f, 20.0f);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    CHECK_EQ_INT(count_sent(0x351, t0), 1);
    struct can_frame_gw f = { 0 };
    CHECK(last_sent(0x356, &f));
    CHECK_EQ_INT(le16(f.data), 5280);      /* 52.80 V */
    CHECK_EQ_INT(le16(f.data + 2), 200);   /* 20.0 A */
    CHECK_EQ_INT(le16(f.data + 4), 251);   /* 25.1 degC */
    CHECK(last_sent(0x355, &f));
    CHECK_EQ_INT(le16(f.data), 80);
    CHECK_EQ_INT(le16(f.data + 2), 100);
    CHECK(last_sent(0x351, &f));
    CHECK(le16(f.data) > 400 && le16(f.data) < 600); /* a CVL for 16 LFP cells, never 0 */
    CHECK(last_sent(0x35A, &f));
    CHECK_EQ_INT(f.data[7] & 0x0C, 0x08);  /* online */

    /* No more samples: 0x351 goes on until the sample is older than 5 s, then stops. */
    for (uint64_t t = t0 + 1000; t <= t0 + 5000; t += 1000) {
        CHECK(step_to(t));
        CHECK_EQ_INT(count_sent(0x351, t), 1);
    }
    for (uint64_t t = t0 + 6000; t <= t0 + 9000; t += 1000) {
        CHECK(step_to(t));
        CHECK_EQ_INT(count_sent(0x351, t), 0);
        CHECK_EQ_INT(count_sent(0x356, t), 1); /* the others keep going */
    }
    CHECK(last_sent(0x35A, &f));
    CHECK_EQ_INT(f.data[7] & 0x0C, 0x04);  /* offline */
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(st.stale);
    CHECK_EQ_INT(st.stale_transitions, 1);
    CHECK(!st.limits.sending);

    /* Data back: 0x351 resumes at the next cycle. */
    feed(bus, t0 + 9500, 53.0f, 5.0f);
    CHECK(step_to(t0 + 10000));
    CHECK_EQ_INT(count_sent(0x351, t0 + 10000), 1);
    CHECK(last_sent(0x356, &f));
    CHECK_EQ_INT(le16(f.data), 5300);
    can_publisher_get_status(p, &st);
    CHECK(!st.stale);
    CHECK(st.limits.sending);
    CHECK_EQ_INT(st.stale_transitions, 1);

    /* An invalid sample does not refresh the data. */
    struct bms_live_data bad = sample_at(t0 + 14000, 53.0f, 5.0f);
    bad.valid = false;
    event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &bad, sizeof bad, 1000);
    event_bus_flush(bus, 5000);
    CHECK(step_to(t0 + 15000));
    CHECK_EQ_INT(count_sent(0x351, t0 + 15000), 0);
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
    struct can_publisher *p = publisher_new(bus, &cfg, NULL);
    feed(bus, t0, 52.0f, 1.0f);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    for (uint64_t t = t0; t <= t0 + 30000; t += 500) {
        feed(bus, t, 52.0f, 1.0f);
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
    struct can_publisher *p = publisher_new(bus, &cfg, NULL);
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

static void test_limits_cap_and_identity(void)
{
    fake_reset();
    uint64_t t0 = 500000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    snprintf(cfg.can.manufacturer, sizeof cfg.can.manufacturer, "ACME");
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg, NULL);
    struct app_bms_version ver = { .version = { .valid = true, .fw_public = 6, .hw_version = 2 } };
    snprintf(ver.version.serial, sizeof ver.version.serial, "0123456789ABCDEF01234567");
    CHECK(event_bus_publish(bus, EVENT_BMS_VERSION_UPDATE, &ver, sizeof ver, 1000));
    feed(bus, t0, 52.8f, 0.0f);
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
    CHECK(wait_count(EVENT_CHARGE_LIMITS, 1));
    pthread_mutex_lock(&rec.lock);
    CHECK(rec.limits.sending);
    CHECK(rec.limits.cvl_v > 40.0f && rec.limits.cvl_v < 60.0f);
    CHECK(rec.limits.cvl_reason[0] != '\0');
    pthread_mutex_unlock(&rec.lock);

    /* A cap from MQTT/web lowers CCL at the next step. */
    struct app_charge_cap cap = { .ccl_cap_a = 10.0f, .dcl_cap_a = -1.0f, .duration_s = 600 };
    snprintf(cap.source, sizeof cap.source, "mqtt");
    CHECK(event_bus_publish(bus, EVENT_CHARGE_CAP_REQUEST, &cap, sizeof cap, 1000));
    feed(bus, t0 + 1000, 52.8f, 0.0f);
    CHECK(step_to(t0 + 1000));
    CHECK(last_sent(0x351, &f));
    CHECK(le16(f.data + 2) <= 100); /* CCL <= 10.0 A */
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK(st.limits.ccl_a <= 10.0f);

    /* Live config change: identity and a shorter live period. */
    gw_config_set_defaults(&cfg);
    cfg.can.live_period_ms = 500;
    snprintf(cfg.can.serial, sizeof cfg.can.serial, "SN42");
    CHECK_EQ_INT(can_publisher_apply_config(p, &cfg), GW_OK);
    feed(bus, t0 + 1500, 52.8f, 0.0f);
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
    bad.can.stale_timeout_ms = 100;
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
    struct can_publisher *p = publisher_new(bus, &cfg, NULL);
    pthread_mutex_lock(&fake.lock);
    fake.fail_with = GW_ERR_IO;
    pthread_mutex_unlock(&fake.lock);
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

static void test_energy_integration_unit(void)
{
    struct can_energy e = { 0 };
    /* 50 V x 20 A = 1000 W for 3600 s = 1000 Wh. */
    for (uint64_t t = 0; t <= 3600000; t += 1000)
        can_energy__add_sample(&e, t, 50.0f, 20.0f, 5000);
    CHECK_NEAR(e.in_wh, 1000.0, 1e-6);
    CHECK_NEAR(e.out_wh, 0.0, 1e-9);
    /* A gap longer than max_gap adds nothing; discharge counts out. */
    can_energy__add_sample(&e, 3600000 + 60000, 50.0f, -10.0f, 5000);
    CHECK_NEAR(e.in_wh, 1000.0, 1e-6);
    can_energy__add_sample(&e, 3600000 + 60000 + 3600, 50.0f, -10.0f, 5000);
    CHECK_NEAR(e.out_wh, 0.5, 1e-9); /* 500 W for 3.6 s */
    /* Trapezoid: ramp 0 -> 1000 W over 1 s = 500 J. */
    struct can_energy r = { 0 };
    can_energy__add_sample(&r, 0, 50.0f, 0.0f, 5000);
    can_energy__add_sample(&r, 1000, 50.0f, 20.0f, 5000);
    CHECK_NEAR(r.in_wh, 500.0 / 3600.0, 1e-9);
    /* A clock that goes backwards or repeats adds nothing; NaN resets. */
    can_energy__add_sample(&r, 1000, 50.0f, 20.0f, 5000);
    can_energy__add_sample(&r, 500, 50.0f, 20.0f, 5000);
    CHECK_NEAR(r.in_wh, 500.0 / 3600.0, 1e-9);
    can_energy__add_sample(&r, 2000, NAN, 20.0f, 5000);
    can_energy__add_sample(&r, 3000, 50.0f, 20.0f, 5000);
    CHECK_NEAR(r.in_wh, 500.0 / 3600.0, 1e-9);

    char buf[256];
    CHECK(can_energy__to_json(1234.5, 67.25, 1700000000000LL, buf, sizeof buf) > 0);
    double in = 0, out = 0;
    CHECK_EQ_INT(can_energy__from_json(buf, &in, &out), GW_OK);
    CHECK_NEAR(in, 1234.5, 1e-9);
    CHECK_NEAR(out, 67.25, 1e-9);
    CHECK_EQ_INT(can_energy__to_json(1, 2, 3, buf, 10), GW_ERR_OVERFLOW);
    static const char *const corrupt[] = {
        "", "{", "[]", "{\"version\":1}", "{\"version\":2,\"energy_in_wh\":1,\"energy_out_wh\":1}",
        "{\"version\":1,\"energy_in_wh\":-1,\"energy_out_wh\":1}",
        "{\"version\":1,\"energy_in_wh\":\"12\",\"energy_out_wh\":1}",
        "{\"version\":1,\"energy_in_wh\":1e999,\"energy_out_wh\":1}",
    };
    for (size_t i = 0; i < sizeof corrupt / sizeof corrupt[0]; i++)
        CHECK_EQ_INT(can_energy__from_json(corrupt[i], &in, &out), GW_ERR_PROTO);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(text, fp);
        fclose(fp);
    }
}

static void test_energy_save_restore_corrupt(void)
{
    fake_reset();
    char dir[] = "/tmp/test_can_energy_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128], moved[160];
    snprintf(path, sizeof path, "%s/energy.json", dir);
    snprintf(moved, sizeof moved, "%s/energy.json.corrupt", dir);
    uint64_t t0 = 700000;
    clock_set(t0 + 1000000); /* samples below are in the past of the clock */
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    cfg.can.energy_save_period_s = 1;
    struct event_bus *bus = bus_new();

    /* First run: no file yet, integrate 2000 W for 360 s (200 Wh in), 1000 W out for 360 s. */
    struct can_publisher *p = publisher_new(bus, &cfg, dir);
    for (uint64_t k = 0; k <= 360; k++) {
        struct bms_live_data d = sample_at(t0 + k * 1000, 50.0f, 40.0f);
        CHECK(event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &d, sizeof d, 1000));
    }
    for (uint64_t k = 0; k <= 360; k++) {
        struct bms_live_data d = sample_at(t0 + 400000 + k * 1000, 50.0f, -20.0f);
        CHECK(event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &d, sizeof d, 1000));
    }
    CHECK(event_bus_flush(bus, 10000));
    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK_NEAR(st.energy_in_wh, 200.0, 1e-6);
    CHECK_NEAR(st.energy_out_wh, 100.0, 1e-6);
    can_publisher_destroy(p); /* never started: still saved */
    CHECK(access(path, F_OK) == 0);

    /* Second run: restored, sent in 0x378 (100 Wh units), saved periodically. */
    p = publisher_new(bus, &cfg, dir);
    can_publisher_get_status(p, &st);
    CHECK_NEAR(st.energy_in_wh, 200.0, 1e-3);
    CHECK_NEAR(st.energy_out_wh, 100.0, 1e-3);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    uint64_t t1 = t0 + 1000000;
    CHECK(step_to(t1));
    struct can_frame_gw f = { 0 };
    CHECK(last_sent(0x378, &f));
    CHECK_EQ_INT(le16(f.data), 2);
    CHECK_EQ_INT(le16(f.data + 4), 1);
    clock_set(t1 + 1000);
    for (int i = 0; i < 1000 && st.energy_saves == 0; i++) {
        real_sleep_ms(5);
        can_publisher_get_status(p, &st);
    }
    CHECK(st.energy_saves >= 1);
    can_publisher_destroy(p);
    CHECK_EQ_INT(rec_count(EVENT_STORAGE_ERROR), 0);

    /* Corrupt file: logged, moved aside, counting from 0, EVENT_STORAGE_ERROR. */
    write_text(path, "{\"version\":1,\"energy_in_wh\":");
    p = publisher_new(bus, &cfg, dir);
    CHECK(p != NULL);
    can_publisher_get_status(p, &st);
    CHECK_NEAR(st.energy_in_wh, 0.0, 1e-9);
    CHECK(wait_count(EVENT_STORAGE_ERROR, 1));
    pthread_mutex_lock(&rec.lock);
    CHECK_STR(rec.storage.module, "energy");
    CHECK_EQ_INT(rec.storage.error, GW_ERR_PROTO);
    pthread_mutex_unlock(&rec.lock);
    CHECK(access(moved, F_OK) == 0);
    can_publisher_destroy(p);

    /* A binary / oversized file is corrupt too, never a crash. */
    char big[4096];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    write_text(path, big);
    p = publisher_new(bus, &cfg, dir);
    can_publisher_get_status(p, &st);
    CHECK_NEAR(st.energy_in_wh, 0.0, 1e-9);
    CHECK(wait_count(EVENT_STORAGE_ERROR, 2));
    can_publisher_destroy(p);

    /* An unwritable data directory: EVENT_STORAGE_ERROR on save, no crash. */
    char missing[200];
    snprintf(missing, sizeof missing, "%s/does/not/exist", dir);
    p = publisher_new(bus, &cfg, missing);
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    can_publisher_destroy(p);
    CHECK(wait_count(EVENT_STORAGE_ERROR, 3));

    unlink(path);
    unlink(moved);
    rmdir(dir);
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
    cfg.can.inverter_timeout_ms = 1;
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
        CHECK(can_publisher_describe_frame(&f, buf, sizeof buf) > 0);
        CHECK_STR(buf, cases[i].text);
    }
    struct can_frame_gw f = { .id = 0x351, .dlc = 8 };
    char tiny[8];
    CHECK(can_publisher_describe_frame(&f, tiny, sizeof tiny) >= 0);
    CHECK_EQ_INT(strlen(tiny), 7); /* truncated, terminated */
    CHECK_EQ_INT(can_publisher_describe_frame(NULL, tiny, sizeof tiny), GW_ERR_INVAL);
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

static void setup(void)
{
    gw_clock_set_sources(fake_now_ms, NULL);
}

static void test_setup(void) { setup(); }


/* Regression: a fresh sample that charge control cannot use (here a cell register reads 0: a
 * sense wire off) withholds 0x351, so the GX stops 3 s later, but 0x35A still said "online,
 * no alarm" and 0x372 "one module OK": the user saw a healthy battery that does not charge.
 * The status must say what the GX is told: offline, general alarm, module offline. */
static void test_unusable_sample_is_reported_offline(void)
{
    fake_reset();
    uint64_t t0 = 300000;
    clock_set(t0);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    struct event_bus *bus = bus_new();
    struct can_publisher *p = publisher_new(bus, &cfg, NULL);
    struct bms_live_data d = sample_at(t0, 52.8f, 20.0f);
    d.cell_mv_x10[4] = 0;
    CHECK(event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &d, sizeof d, 1000));
    CHECK(event_bus_flush(bus, 5000));
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);
    CHECK(step_to(t0));
    CHECK_EQ_INT(count_sent(0x351, t0), 0);
    CHECK_EQ_INT(count_sent(0x356, t0), 1); /* the measurements still go out */
    struct can_frame_gw f;
    memset(&f, 0, sizeof f);
    CHECK(last_sent(0x35A, &f));
    CHECK_EQ_INT(f.data[7] & 0x0C, 0x04); /* offline */
    CHECK_EQ_INT(f.data[0] & 0x03, 0x01); /* general alarm active */
    CHECK(last_sent(0x372, &f));
    CHECK_EQ_INT(le16(f.data), 0);        /* no module OK */
    CHECK_EQ_INT(le16(f.data + 6), 1);    /* one module offline */

    /* A usable sample: online again, 0x351 sent. */
    feed(bus, t0 + 500, 52.8f, 20.0f);
    CHECK(step_to(t0 + 1000));
    CHECK_EQ_INT(count_sent(0x351, t0 + 1000), 1);
    CHECK(last_sent(0x35A, &f));
    CHECK_EQ_INT(f.data[7] & 0x0C, 0x08); /* online */
    can_publisher_destroy(p);
    event_bus_destroy(bus);
}

TEST_MAIN(TEST_CASE(test_setup), TEST_CASE(test_unusable_sample_is_reported_offline), TEST_CASE(test_describe_golden), TEST_CASE(test_energy_integration_unit),
          TEST_CASE(test_create_rejects_bad_options), TEST_CASE(test_no_data_withholds_0x351_and_marks_offline),
          TEST_CASE(test_stale_stop_and_resume), TEST_CASE(test_periods_exact_with_fake_clock),
          TEST_CASE(test_inverter_link_present_and_lost), TEST_CASE(test_limits_cap_and_identity),
          TEST_CASE(test_tx_failures_are_counted_and_aggregated), TEST_CASE(test_energy_save_restore_corrupt),
          TEST_CASE(test_slcan_device_gone_is_survived))
