/* The battery service on a real event bus: samples in, EVENT_BATTERY_UPDATE out, energy.json
 * saved and restored (an impossible one refused and set aside), external caps answered. */
#include "battery_service.h"
#include "battery_service_internal.h"

#include "app_events.h"
#include "event_bus.h"
#include "fake_clock.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "support/wait.h"
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned views_seen, storage_errors;
static struct battery_view last_view;

static void on_view(const struct gw_event *ev, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&rec_lock);
    if (ev->id == EVENT_BATTERY_UPDATE && ev->size == sizeof last_view) {
        memcpy(&last_view, ev->payload, sizeof last_view);
        views_seen++;
    } else if (ev->id == EVENT_STORAGE_ERROR) {
        storage_errors++;
    }
    pthread_mutex_unlock(&rec_lock);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct bms_live_data sample(uint8_t id, float current_a, uint32_t lifetime)
{
    struct bms_live_data s;
    memset(&s, 0, sizeof s);
    s.battery_id = id;
    s.valid = true;
    s.cell_count = 16;
    for (unsigned i = 0; i < 16; i++)
        s.cell_mv_x10[i] = 33000;
    s.pack_voltage_v = 52.8f;
    s.pack_current_a = current_a;
    s.soc_ppm = 50000000;
    s.temp_dc[BMS_TEMP_EXT1] = 200;
    s.temp_present[BMS_TEMP_EXT1] = true;
    s.online_status = BMS_STATUS_IDLE;
    s.lifetime_s = lifetime;
    return s;
}

/* Waits (deadline, not a timing assertion) until the newest view satisfies pred. */
static bool wait_view(struct battery_service *bs, bool (*pred)(const struct battery_view *))
{
    static struct battery_view v;
    bool ok;
    WAIT_FOR(ok, (battery_service_get_view(bs, &v), v.seq > 0 && pred(&v)), 10000);
    return ok;
}

static bool two_online(const struct battery_view *v) { return v->online_count == 2; }
static bool one_online(const struct battery_view *v) { return v->online_count == 1; }

static char dir[64];

static struct battery_service *make(struct event_bus *bus, unsigned packs)
{
    struct battery_service_options o = {.bus = bus, .data_dir = dir};
    battery_engine_default_config(&o.engine);
    o.engine.pack_count = (uint8_t)packs;
    for (unsigned i = 0; i < packs; i++) {
        o.engine.packs[i].id = (uint8_t)i;
        o.engine.packs[i].capacity_ah = 100.0f;
    }
    struct battery_service *bs = NULL;
    CHECK_EQ_INT(battery_service_create(&o, &bs), GW_OK);
    if (bs)
        CHECK_EQ_INT(battery_service_start(bs), GW_OK);
    return bs;
}

static void test_samples_to_views_and_state_file(void)
{
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    event_bus_subscribe(bus, EVENT_BATTERY_UPDATE, on_view, NULL, "test");
    struct battery_service *bs = make(bus, 2);
    for (uint32_t t = 0; t < 5; t++) {
        for (uint8_t id = 0; id < 2; id++) {
            struct bms_live_data s = sample(id, 10.0f, 100 + t);
            CHECK(event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &s, sizeof s, 1000) == GW_OK);
        }
        sleep_ms(20);
    }
    CHECK(wait_view(bs, two_online));
    event_bus_flush(bus, 2000);
    pthread_mutex_lock(&rec_lock);
    CHECK(views_seen > 0);
    CHECK(last_view.pack_count == 2);
    pthread_mutex_unlock(&rec_lock);
    /* Pack 2's poller loses its BMS: the bank goes on with one. */
    struct app_bms_comm lost = {.battery_id = 1};
    CHECK(event_bus_publish(bus, EVENT_BMS_COMM_LOST, &lost, sizeof lost, 1000) == GW_OK);
    CHECK(wait_view(bs, one_online));

    /* Caps: "no effect" while no output sends limits, "applied" once one does. */
    char answer[64];
    struct app_charge_cap cap = {.ccl_cap_a = 5.0f, .dcl_cap_a = -1.0f, .duration_s = 60};
    strcpy(cap.source, "test");
    CHECK_EQ_INT(battery_service_request_cap(bs, &cap, answer, sizeof answer), GW_ERR_UNSUPPORTED);
    CHECK(strstr(answer, "no effect") != NULL);
    battery_service_set_limit_outputs(bs, BATTERY_OUTPUT_CAN);
    CHECK_EQ_INT(battery_service_request_cap(bs, &cap, answer, sizeof answer), GW_OK);
    CHECK_STR(answer, "applied");
    struct battery_service_stats st;
    battery_service_get_stats(bs, &st);
    CHECK_EQ_INT(st.caps_applied, 1);
    CHECK_EQ_INT(st.caps_without_effect, 1);
    CHECK(st.samples_taken >= 10);
    battery_service_destroy(bs); /* saves */
    event_bus_destroy(bus);

    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, BATTERY_STATE_FILE);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (f) {
        char text[4096] = "";
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = 0;
        fclose(f);
        CHECK(strstr(text, "\"version\":2") != NULL);
        struct battery_engine_saved saved;
        CHECK_EQ_INT(battery_state__from_json(text, &saved), GW_OK);
        CHECK_EQ_INT(saved.pack_count, 2);
        CHECK(saved.energy_in_wh > 0.0);
    }
}

static void test_impossible_state_file_refused(void)
{
    char path[128], aside[160];
    snprintf(path, sizeof path, "%s/%s", dir, BATTERY_STATE_FILE);
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("{\"version\":1,\"energy_in_wh\":1.47e28,\"energy_out_wh\":10}\n", f);
    fclose(f);
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    event_bus_subscribe(bus, EVENT_STORAGE_ERROR, on_view, NULL, "test");
    storage_errors = 0;
    struct battery_service *bs = make(bus, 1);
    struct stat stt;
    CHECK(stat(aside, &stt) == 0); /* set aside for a human, not silently kept */
    event_bus_flush(bus, 2000);
    pthread_mutex_lock(&rec_lock);
    CHECK(storage_errors >= 1);
    pthread_mutex_unlock(&rec_lock);
    struct bms_live_data s = sample(0, 0.0f, 5);
    event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &s, sizeof s, 1000);
    CHECK(wait_view(bs, one_online));
    struct battery_view *v = calloc(1, sizeof *v);
    battery_service_get_view(bs, v);
    CHECK(v->conditions & BATTERY_COND_ENERGY_REFUSED);
    CHECK(v->energy_in_wh < 1.0);
    free(v);
    battery_service_destroy(bs);
    event_bus_destroy(bus);
    /* A file that is not ours at all. */
    f = fopen(path, "w");
    fputs("garbage", f);
    fclose(f);
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    bs = make(bus, 1);
    CHECK(bs != NULL);
    battery_service_destroy(bs);
    event_bus_destroy(bus);
}

/* A kill during a save leaves a temporary beside energy.json: the next start removes it. */
static void test_stale_state_temporaries_removed(void)
{
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-Ab12Cd", dir, BATTERY_STATE_FILE);
    FILE *f = fopen(tmp, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("{\"version\":2,\"energy_in_", f); /* cut short by the kill */
    fclose(f);
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct battery_service *bs = make(bus, 1);
    CHECK(bs != NULL);
    struct stat st;
    CHECK(stat(tmp, &st) != 0);
    battery_service_destroy(bs);
    event_bus_destroy(bus);
}

static void test_json_round_trip_and_bad_entries(void)
{
    struct battery_engine_saved s;
    memset(&s, 0, sizeof s);
    s.energy_in_wh = 1234.5;
    s.energy_out_wh = 99.25;
    s.pack_count = 2;
    s.packs[0].id = 0;
    s.packs[0].valid = true;
    s.packs[0].charge.phase = CHARGE_PHASE_FLOAT;
    s.packs[0].charge.float_cvl_v = 54.0f;
    s.packs[0].charge.cvl_v = 54.0f;
    s.packs[1].id = 1;
    char buf[2048];
    int n = battery_state__to_json(&s, 1700000000000LL, buf, sizeof buf);
    CHECK(n > 0);
    struct battery_engine_saved back;
    CHECK_EQ_INT(battery_state__from_json(buf, &back), GW_OK);
    CHECK_NEAR(back.energy_in_wh, 1234.5, 1e-3);
    CHECK_EQ_INT(back.pack_count, 2);
    CHECK_EQ_INT(back.packs[0].charge.phase, CHARGE_PHASE_FLOAT);
    CHECK_NEAR(back.packs[0].charge.cvl_v, 54.0f, 1e-3f);
    CHECK_EQ_INT(battery_state__to_json(&s, 0, buf, 16), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(battery_state__from_json("{\"version\":3,\"energy_in_wh\":1,\"energy_out_wh\":1}", &back),
                 GW_ERR_PROTO);
    CHECK_EQ_INT(battery_state__from_json("[]", &back), GW_ERR_PROTO);
    /* One broken pack entry: that pack starts fresh, the rest is read. */
    CHECK_EQ_INT(battery_state__from_json("{\"version\":2,\"energy_in_wh\":1,\"energy_out_wh\":2,\"packs\":["
                                          "{\"id\":\"x\"},{\"id\":1,\"valid\":true,\"phase\":2,\"absorb_elapsed_ms\":0,"
                                          "\"top_elapsed_ms\":0,\"float_cvl_v\":54,\"cvl_v\":54}]}",
                                          &back),
                 GW_OK);
    CHECK_EQ_INT(back.pack_count, 1);
    CHECK_EQ_INT(back.packs[0].id, 1);
}

/* The thread's timers, without the thread: a step at once, on input or at the engine's
 * deadline; a save every period; the wait until the nearest of the two. */
static void test_timers_table(void)
{
    struct battery_service__timers t;
    battery_service__timers_init(&t, 1000, 600000);
    static const struct {
        uint64_t now;
        bool input;
        bool step, save;
        uint64_t deadline;
        uint64_t engine_next;   /* fed back after a step (0: none) */
        bool saved;             /* fed back after a save */
    } rows[] = {
        { 1000, false, true, false, 1000, 2000, false },      /* start: step at once */
        { 1000, false, false, false, 2000, 0, false },        /* then sleep to the engine's deadline */
        { 1500, true, true, false, 2000, 2500, false },       /* an input steps early */
        { 2499, false, false, false, 2500, 0, false },
        { 2500, false, true, false, 2500, 601500, false },    /* the engine's deadline */
        { 2501, false, false, false, 601000, 0, false },      /* the save comes first now */
        { 601000, false, false, true, 601000, 0, true },
        { 601000, false, false, false, 601500, 0, false },    /* saved: next one a period later */
        { 601500, false, true, false, 601500, 602500, false },
        { 1201000, true, true, true, 602500, 1202000, true }, /* both due (a late wake-up) */
        { 1201001, false, false, false, 1202000, 0, false },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct battery_service__decision d = battery_service__decide(&t, rows[i].now, rows[i].input);
        CHECK_EQ_INT(d.step, rows[i].step);
        CHECK_EQ_INT(d.save, rows[i].save);
        CHECK_EQ_INT(d.deadline_ms, rows[i].deadline);
        if (d.step)
            battery_service__stepped(&t, rows[i].engine_next);
        if (d.save && rows[i].saved)
            battery_service__saved(&t, rows[i].now);
    }
}

/* can.energy_save_period_s changed live: the next save is one new period after the last one,
 * at once when that is past. */
static void test_save_period_live(void)
{
    struct battery_service__timers t;
    battery_service__timers_init(&t, 1000, 600000);        /* last save (start) 1000, next 601000 */
    battery_service__save_period(&t, 50000, 30000);       /* 1000 + 30 s = 31000: overdue, save now */
    CHECK_EQ_INT(t.next_save_ms, 31000);
    CHECK(battery_service__decide(&t, 50000, false).save);
    battery_service__saved(&t, 50000);
    CHECK_EQ_INT(t.next_save_ms, 80000);
    battery_service__save_period(&t, 60000, 120000);      /* longer: 50000 + 120 s */
    CHECK_EQ_INT(t.next_save_ms, 170000);
    CHECK(!battery_service__decide(&t, 169999, false).save);
    battery_service__save_period(&t, 60000, 10000);       /* shorter again: 50000 + 10 s, overdue */
    CHECK(battery_service__decide(&t, 60000, false).save);
}

/* On the test clock: with no input the thread sleeps exactly until the engine's deadline, steps
 * once when time reaches it, and sleeps again; moving time short of it steps nothing. */
static void test_thread_wakes_only_at_deadlines(void)
{
    fake_clock_set_ms(50000000);
    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct battery_service *bs = make(bus, 1);
    if (!bs)
        return;
    CHECK(fake_clock_settle(1, 10000));
    struct battery_service_stats st;
    battery_service_get_stats(bs, &st);
    CHECK_EQ_INT(st.steps, 1); /* the first view, at start */
    uint64_t deadline = fake_clock_next_deadline();
    CHECK(deadline > 50000000 && deadline <= 50000000 + 1000);
    for (int k = 0; k < 5; k++) {
        fake_clock_set_ms(deadline - 1);
        CHECK(fake_clock_settle(1, 10000));
        battery_service_get_stats(bs, &st);
        CHECK_EQ_INT(st.steps, 1 + k);
        CHECK_EQ_INT(fake_clock_next_deadline(), deadline);
        fake_clock_set_ms(deadline);
        CHECK(fake_clock_settle(1, 10000));
        battery_service_get_stats(bs, &st);
        CHECK_EQ_INT(st.steps, 2 + k);
        uint64_t next = fake_clock_next_deadline();
        CHECK(next > deadline && next <= deadline + 1000);
        deadline = next;
    }
    battery_service_destroy(bs);
    event_bus_destroy(bus);
    fake_clock_use_real();
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_battery_service.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    static const struct test_case_ cases[] = {TEST_CASE(test_samples_to_views_and_state_file),
                                   TEST_CASE(test_impossible_state_file_refused),
                                   TEST_CASE(test_stale_state_temporaries_removed),
                                   TEST_CASE(test_json_round_trip_and_bad_entries),
                                   TEST_CASE(test_timers_table), TEST_CASE(test_save_period_live),
                                   TEST_CASE(test_thread_wakes_only_at_deadlines)};
    int rc = test_run_(cases, sizeof cases / sizeof cases[0]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
