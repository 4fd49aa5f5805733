/* A week of battery life through the gateway's own services, in seconds of real time: the
 * simulator's battery model (two 280 Ah LFP packs, tools/tinybms-sim/battery_model.c) lives a
 * daily cycle (charged 07:00-17:00 at up to 60 A within the gateway's CCL, a 20 A load the rest
 * of the day within its DCL), sampled every 20 s of model time; the real battery service, alert
 * manager and history logger run on one event bus with the test clock (FAKE_CLOCK) moved 20 s a
 * sample. Halfway the three services stop and start again on the same data directory (a
 * restart of the gateway).
 *
 * At the end:
 *  - energy: the gateway's charged/discharged counters (0x378, energy.json) agree with the
 *    model's own count within ENERGY_TOLERANCE, across the restart;
 *  - charge control: the packs reach float on some days; the restart happens at 16:00 of day
 *    4 with both floating, and each pack's phase and the counters are the same just before and
 *    just after it (the state in energy.json is the one used);
 *  - history: one row per period for each pack and the bank, no gap longer than a period plus
 *    a sample, an hour never short of rows, across the restart too;
 *  - alerts: every alert raised was cleared, or is still active with its reason.
 * Deterministic: each step waits for the services to have seen the sample (conditions with
 * deadlines, no sleep as synchronisation). Label "slow" (under a minute in a sanitizer build).
 * GW_WEEK_TRACE=1 prints the hours and the alert history. */
#define _GNU_SOURCE
#include "alert_manager.h"
#include "app_events.h"
#include "battery_model.h"
#include "battery_service.h"
#include "battery_view.h"
#include "charge_control.h"
#include "event_bus.h"
#include "fake_clock.h"
#include "gw_clock.h"
#include "gw_config.h"
#include "gw_error.h"
#include "history_logger.h"
#include "support/model_sample.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PACKS 2
#define DAYS 7
#define STEP_S 20u
#define HISTORY_PERIOD_S 60u
#define CHARGE_FROM_H 7
#define CHARGE_TO_H 17
#define CHARGE_A 60.0f             /* the bank's solar charger, at most */
#define LOAD_A 20.0f               /* the bank's load */
#define ENERGY_TOLERANCE 0.005     /* 0.5 %: the gateway integrates 20 s samples, the model 1 s steps */
#define WALL0_MS 1796256000000LL   /* 2026-12-03 00:00 UTC: the days start at midnight */

struct world {
    struct battery_model m[PACKS];
    double model_in_wh0[PACKS], model_out_wh0[PACKS];
    struct event_bus *bus;
    struct battery_service *bs;
    struct alert_manager *am;
    struct history_logger *hl;
    char dir[64];
    struct gw_config cfg;
    uint64_t t0_ms;
};

static void set_setting(struct bms_settings *s, unsigned reg, uint16_t value)
{
    s->valid = true;
    s->raw[reg - BMS_SETTINGS_FIRST] = value;
    s->present_mask |= 1ull << (reg - BMS_SETTINGS_FIRST);
}

/* What uart_bms would decode from the model's registers. */
static void sample(const struct battery_model *m, uint8_t id, struct bms_live_data *d)
{
    test_sample_from_model(m, d);
    d->battery_id = id;
    d->timestamp_ms = gw_now_ms();
    d->wall_time_ms = gw_wall_ms();
}

static void publish_settings(struct world *w)
{
    for (unsigned k = 0; k < PACKS; k++) {
        struct app_bms_settings s;
        memset(&s, 0, sizeof s);
        s.battery_id = (uint8_t)k;
        const struct battery_model_config *bc = &w->m[k].cfg;
        set_setting(&s.settings, 300, bc->fully_charged_mv);
        set_setting(&s.settings, 306, (uint16_t)(bc->capacity_ah * 100.0f));
        set_setting(&s.settings, 307, bc->cells);
        set_setting(&s.settings, 308, bc->allowed_disbalance_mv);
        set_setting(&s.settings, 315, bc->over_voltage_cutoff_mv);
        set_setting(&s.settings, 316, bc->under_voltage_cutoff_mv);
        set_setting(&s.settings, 317, bc->discharge_overcurrent_a);
        set_setting(&s.settings, 318, bc->charge_overcurrent_a);
        set_setting(&s.settings, 319, (uint16_t)bc->over_heat_cutoff_c);
        set_setting(&s.settings, 320, (uint16_t)bc->low_temp_charge_cutoff_c);
        CHECK(event_bus_publish(w->bus, EVENT_BMS_SETTINGS_UPDATE, &s, sizeof s, 5000) == GW_OK);
    }
}

static void services_start(struct world *w)
{
    struct battery_service_options bo = { .bus = w->bus, .data_dir = w->dir, .save_period_s = 3600 };
    battery_engine_default_config(&bo.engine);
    bo.engine.pack_count = PACKS;
    for (unsigned k = 0; k < PACKS; k++) {
        bo.engine.packs[k].id = (uint8_t)k;
        bo.engine.packs[k].capacity_ah = 280.0f;
    }
    bo.engine.charge = w->cfg.charge;
    /* One poll every 20 s: stale after the longest the engine accepts (60 s, three polls; energy
     * is integrated only over steps shorter than that). */
    bo.engine.stale_after_ms = 60000;
    bo.engine.offline_after_ms = 120000;
    bo.engine.frozen_after_ms = 120000;
    CHECK_EQ_INT(battery_service_create(&bo, &w->bs), GW_OK);
    struct alert_manager_options ao = { .bus = w->bus, .data_dir = w->dir, .config = w->cfg.alerts, .tick_ms = 1000 };
    CHECK_EQ_INT(alert_manager_create(&ao, &w->am), GW_OK);
    struct history_logger_options ho = { .bus = w->bus, .data_dir = w->dir, .config = w->cfg.history };
    CHECK_EQ_INT(history_logger_create(&ho, &w->hl), GW_OK);
    CHECK_EQ_INT(battery_service_start(w->bs), GW_OK);
    publish_settings(w);
    CHECK(event_bus_flush(w->bus, 10000) == GW_OK);
}

static void services_stop(struct world *w)
{
    CHECK(event_bus_flush(w->bus, 10000) == GW_OK);
    CHECK_EQ_INT(history_logger_flush(w->hl, 30000), GW_OK);
    battery_service_destroy(w->bs); /* saves energy.json */
    alert_manager_destroy(w->am);
    history_logger_destroy(w->hl);
    w->bs = NULL;
    w->am = NULL;
    w->hl = NULL;
}

/* Moves time one step, steps the models at the current asked for within the newest limits,
 * feeds both samples and waits until the battery service has stepped with both and every
 * subscriber has seen that view. */
static bool step(struct world *w, uint64_t t_s, struct battery_view *v)
{
    fake_clock_set_ms(w->t0_ms + t_s * 1000u);
    fake_clock_set_wall_ms(WALL0_MS + (int64_t)t_s * 1000);
    unsigned hour = (unsigned)(t_s % 86400u) / 3600u;
    float bank_a;
    if (hour >= CHARGE_FROM_H && hour < CHARGE_TO_H)
        bank_a = v->limits.valid ? fminf(CHARGE_A, v->limits.ccl_a) : 0.0f;
    else
        bank_a = v->limits.valid ? -fminf(LOAD_A, v->limits.dcl_a) : 0.0f;
    for (unsigned k = 0; k < PACKS; k++)
        for (unsigned s = 0; s < STEP_S; s++)
            battery_model_step(&w->m[k], bank_a / PACKS, 1.0f);
    uint64_t now = gw_now_ms();
    if (getenv("GW_WEEK_TRACE") && t_s % 3600u == 0)
        printf("t %5.2f d: asked %6.1f A, SOC %5.1f %%, limits %s CCL %.1f DCL %.1f, model I %.1f A, gw %.0f/%.0f Wh\n",
               (double)t_s / 86400.0, bank_a, v->soc_pct, v->limits.valid ? "valid" : "invalid", v->limits.ccl_a,
               v->limits.dcl_a, w->m[0].current_a, v->energy_in_wh, v->energy_out_wh);
    if (getenv("GW_WEEK_TRACE") && t_s % 3600u == 0)
        printf("   packs %u/%u cond 0x%x ccl '%s' dcl '%s'; p0 state %u cond 0x%x; p1 state %u cond 0x%x %s\n",
               v->online_count, v->pack_count, v->conditions, v->limits.ccl_reason, v->limits.dcl_reason,
               v->packs[0].state, v->packs[0].conditions, v->packs[1].state, v->packs[1].conditions,
               v->packs[0].bad_reason);
    for (unsigned k = 0; k < PACKS; k++) {
        struct bms_live_data d;
        sample(&w->m[k], (uint8_t)k, &d);
        if (event_bus_publish(w->bus, EVENT_BMS_DATA_UPDATE, &d, sizeof d, 5000) != GW_OK)
            return false;
    }
    for (int i = 0; i < 200000; i++) { /* up to ~20 s of real time, in 100 us waits */
        battery_service_get_view(w->bs, v);
        bool both = v->pack_count == PACKS;
        for (unsigned k = 0; k < PACKS && both; k++)
            both = v->packs[k].live.timestamp_ms == now;
        if (both && v->timestamp_ms >= now)
            return event_bus_flush(w->bus, 10000) == GW_OK;
        usleep(100);
    }
    fprintf(stderr, "t=%llu s: the battery service did not step with both samples\n", (unsigned long long)t_s);
    return false;
}

static double model_in_wh(const struct world *w)
{
    double s = 0;
    for (unsigned k = 0; k < PACKS; k++)
        s += w->m[k].energy_in_wh - w->model_in_wh0[k];
    return s;
}

static double model_out_wh(const struct world *w)
{
    double s = 0;
    for (unsigned k = 0; k < PACKS; k++)
        s += w->m[k].energy_out_wh - w->model_out_wh0[k];
    return s;
}

/* Rows of one id in [from, to): no gap beyond a period plus a sample, and their count. */
static void check_history(struct world *w, uint8_t id, int64_t from_ms, int64_t to_ms, const char *what)
{
    size_t max = (size_t)((to_ms - from_ms) / 1000 / HISTORY_PERIOD_S) + 64;
    struct history_sample *rows = calloc(max, sizeof *rows);
    size_t n = 0;
    CHECK_EQ_INT(history_logger_query_samples(w->hl, id, from_ms, to_ms, rows, max, &n), GW_OK);
    int64_t worst = 0, worst_at = 0;
    for (size_t i = 1; i < n; i++) {
        int64_t gap = rows[i].ts_ms - rows[i - 1].ts_ms;
        if (gap > worst) {
            worst = gap;
            worst_at = rows[i - 1].ts_ms;
        }
    }
    size_t expected = (size_t)((to_ms - from_ms) / 1000 / HISTORY_PERIOD_S);
    printf("history %s id %u: %zu rows (a period: %zu), longest gap %lld s (at +%lld s)\n", what, id, n, expected,
           (long long)(worst / 1000), (long long)((worst_at - WALL0_MS) / 1000));
    CHECK(worst <= (int64_t)(HISTORY_PERIOD_S + STEP_S) * 1000);
    CHECK(n + 3 >= expected && n <= expected + 3); /* the restart may move one period */
    free(rows);
}

static void test_a_week(void)
{
    static struct world w;
    memset(&w, 0, sizeof w);
    snprintf(w.dir, sizeof w.dir, "/tmp/gw_week_XXXXXX");
    CHECK(mkdtemp(w.dir) != NULL);
    gw_config_set_defaults(&w.cfg);
    w.cfg.history.period_s = HISTORY_PERIOD_S;
    w.cfg.history.retention_days = 30;
    w.t0_ms = 1000000;
    fake_clock_set_ms(w.t0_ms);
    fake_clock_set_wall_ms(WALL0_MS);
    for (unsigned k = 0; k < PACKS; k++) {
        struct battery_model_config bc;
        battery_model_default_config(&bc, BATTERY_LFP);
        bc.seed = 7u + 31u * k;
        bc.capacity_ah = 280.0f;
        bc.initial_soc = 0.6f;
        CHECK_EQ_INT(battery_model_init(&w.m[k], &bc), 0);
    }
    CHECK_EQ_INT(event_bus_create(NULL, &w.bus), GW_OK);
    services_start(&w);

    static struct battery_view v;
    memset(&v, 0, sizeof v);
    /* Halfway, at 16:00: the battery full, in absorption or float (the state worth keeping). */
    const uint64_t total_s = DAYS * 86400u, restart_s = 3 * 86400u + 16 * 3600u;
    bool ok = true;
    uint64_t t = STEP_S;
    /* The gateway counts from its first sample on: so does the comparison. */
    ok = step(&w, t, &v);
    for (unsigned k = 0; k < PACKS; k++) {
        w.model_in_wh0[k] = w.m[k].energy_in_wh;
        w.model_out_wh0[k] = w.m[k].energy_out_wh;
    }
    double gw_in0 = v.energy_in_wh, gw_out0 = v.energy_out_wh;
    unsigned full_days = 0; /* days both packs' charge control reached float */
    bool full_today = false;
    for (t += STEP_S; ok && t <= restart_s; t += STEP_S) {
        ok = step(&w, t, &v);
        full_today |= v.packs[0].limits.phase == CHARGE_PHASE_FLOAT && v.packs[1].limits.phase == CHARGE_PHASE_FLOAT;
        if (t % 86400u == 0) {
            full_days += full_today;
            full_today = false;
        }
    }
    CHECK(ok);
    struct battery_view before = v;
    CHECK_EQ_INT(before.packs[0].limits.phase, CHARGE_PHASE_FLOAT); /* a state worth keeping */
    CHECK_EQ_INT(before.packs[1].limits.phase, CHARGE_PHASE_FLOAT);
    services_stop(&w);
    printf("restart at day %.1f: gateway %.0f Wh in / %.0f Wh out, phases %u %u\n", (double)restart_s / 86400.0,
           before.energy_in_wh, before.energy_out_wh, before.packs[0].limits.phase, before.packs[1].limits.phase);

    /* The restart: the same data directory; the BMS keeps its state (the models carry on). */
    services_start(&w);
    memset(&v, 0, sizeof v);
    v.limits = before.limits; /* the charger keeps what it was told until the first new view */
    ok = step(&w, t, &v);
    CHECK(ok);
    printf("after the restart: gateway %.0f Wh in / %.0f Wh out, phases %u %u\n", v.energy_in_wh, v.energy_out_wh,
           v.packs[0].limits.phase, v.packs[1].limits.phase);
    /* At most the one step since: 60 V at the current flowing, one step. */
    double one_step_wh = 1.0 + 60.0 * (fabs(before.current_a) + CHARGE_A) * STEP_S / 3600.0;
    /* (energy.json keeps 0.1 Wh) */
    CHECK(v.energy_in_wh >= before.energy_in_wh - 0.1 && v.energy_in_wh <= before.energy_in_wh + one_step_wh);
    CHECK(v.energy_out_wh >= before.energy_out_wh - 0.1 && v.energy_out_wh <= before.energy_out_wh + one_step_wh);
    for (unsigned k = 0; k < PACKS; k++)
        CHECK_EQ_INT(v.packs[k].limits.phase, before.packs[k].limits.phase);
    CHECK(v.limits.valid);
    for (t += STEP_S; ok && t <= total_s; t += STEP_S) {
        ok = step(&w, t, &v);
        full_today |= v.packs[0].limits.phase == CHARGE_PHASE_FLOAT && v.packs[1].limits.phase == CHARGE_PHASE_FLOAT;
        if (t % 86400u == 0) {
            full_days += full_today;
            full_today = false;
        }
    }
    CHECK(ok);
    CHECK_EQ_INT(history_logger_flush(w.hl, 30000), GW_OK);

    /* Energy: the gateway's counters against the model's own. */
    double gi = v.energy_in_wh - gw_in0, go = v.energy_out_wh - gw_out0;
    double mi = model_in_wh(&w), mo = model_out_wh(&w);
    printf("energy over %u days: charged gateway %.1f Wh, model %.1f Wh (%+.3f %%); discharged gateway %.1f Wh, "
           "model %.1f Wh (%+.3f %%); days reaching float %u\n", DAYS, gi, mi, 100.0 * (gi - mi) / mi, go, mo,
           100.0 * (go - mo) / mo, full_days);
    CHECK(mi > 20000.0 && mo > 20000.0); /* a real week of cycles: about 3.5 kWh each way a day */
    CHECK(fabs(gi - mi) <= ENERGY_TOLERANCE * mi);
    CHECK(fabs(go - mo) <= ENERGY_TOLERANCE * mo);
    CHECK(full_days >= 2);

    /* History: every period, both packs and the bank, on each side of the restart and across it. */
    int64_t from = WALL0_MS + 2 * STEP_S * 1000, to = WALL0_MS + (int64_t)total_s * 1000;
    check_history(&w, 0, from, to, "pack 1");
    check_history(&w, 1, from, to, "pack 2");
    check_history(&w, HISTORY_AGGREGATE, from, to, "bank");
    struct history_bucket hours[DAYS * 24];
    CHECK_EQ_INT(history_logger_query_buckets_from(w.hl, HISTORY_AGGREGATE, WALL0_MS + 3600000,
                                                   WALL0_MS + (int64_t)total_s * 1000, DAYS * 24 - 1,
                                                   HISTORY_SOURCE_SAMPLES, hours, NULL), GW_OK);
    uint32_t short_hours = 0;
    for (unsigned h = 0; h < DAYS * 24 - 1; h++)
        short_hours += hours[h].count + 1 < 3600 / HISTORY_PERIOD_S;
    printf("history: %u of %u hours short of %u rows\n", short_hours, DAYS * 24 - 1, 3600 / HISTORY_PERIOD_S);
    CHECK_EQ_INT(short_hours, 0);

    /* Alerts: every one raised is cleared, or still active with its reason. */
    CHECK(event_bus_flush(w.bus, 10000) == GW_OK);
    CHECK_EQ_INT(alert_manager_flush(w.am, 30000), GW_OK);
    char *hist = NULL, *active = NULL;
    CHECK_EQ_INT(alert_manager_get_history_json(w.am, 0, 0, 10000, &hist), GW_OK);
    CHECK_EQ_INT(alert_manager_get_active_json_alloc(w.am, &active), GW_OK);
    cJSON *h = hist ? cJSON_Parse(hist) : NULL, *a = active ? cJSON_Parse(active) : NULL;
    CHECK(h != NULL && a != NULL);
    /* Each alert (code, battery, subject): its last transition in the history. A "raised" one
     * must be active with its reason; one cleared must not be. (A status notice is superseded
     * by the next one: raised again, the latest active.) */
    struct last { char key[96]; bool raised; } *keys = calloc(256, sizeof *keys);
    size_t nkeys = 0;
    int raised = 0, cleared = 0, open = 0;
    int nrows = cJSON_GetArraySize(h);
    for (int i = nrows - 1; i >= 0; i--) { /* newest first in the document: oldest first here */
        const cJSON *row = cJSON_GetArrayItem(h, i);
        const char *ev = cJSON_GetStringValue(cJSON_GetObjectItem(row, "event"));
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(row, "code"));
        const char *subj = cJSON_GetStringValue(cJSON_GetObjectItem(row, "subject"));
        char key[96];
        snprintf(key, sizeof key, "%s/%d/%s", code ? code : "?",
                 (int)cJSON_GetNumberValue(cJSON_GetObjectItem(row, "battery_id")), subj ? subj : "");
        size_t k = 0;
        while (k < nkeys && strcmp(keys[k].key, key) != 0)
            k++;
        if (k == nkeys && nkeys < 256)
            snprintf(keys[nkeys++].key, sizeof keys[0].key, "%s", key);
        bool is_raise = ev && strcmp(ev, "raised") == 0;
        raised += is_raise;
        cleared += ev && strcmp(ev, "cleared") == 0;
        if (k < nkeys)
            keys[k].raised = is_raise;
    }
    const cJSON *act = cJSON_IsArray(a) ? a : cJSON_GetObjectItem(a, "alerts"), *row;
    size_t still = 0;
    for (size_t k = 0; k < nkeys; k++)
        still += keys[k].raised;
    cJSON_ArrayForEach(row, act) {
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(row, "message"));
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(row, "code"));
        printf("alert still active: %s: %s\n", code ? code : "?", msg ? msg : "(no reason)");
        CHECK(msg && msg[0]);
        open++;
    }
    printf("alerts: %d raised, %d cleared, %zu distinct alerts, %zu last raised, %d active\n", raised, cleared,
           nkeys, still, open);
    CHECK_EQ_INT(still, open);
    free(keys);
    cJSON_Delete(h);
    cJSON_Delete(a);
    free(hist);
    free(active);

    services_stop(&w);
    event_bus_destroy(w.bus);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", w.dir);
    CHECK_EQ_INT(system(cmd), 0);
}

TEST_MAIN(TEST_CASE(test_a_week))
