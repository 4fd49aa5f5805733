/* Alert rules engine: scripted sample streams, hysteresis, delays, every rule, BMS event log. */
#include "alert_rules.h"
#include "gw_error.h"
#include "test.h"

#include <stdlib.h>

#define MAX_T 4096

struct rec_t {
    int kind;
    struct alert_record rec;
    uint64_t now_ms;
};

static struct rec_t seen[MAX_T];
static int n_seen;
static uint64_t cur_now;

static void on_emit(void *ctx, enum alert_transition kind, const struct alert_record *rec)
{
    (void)ctx;
    if (n_seen < MAX_T)
        seen[n_seen++] = (struct rec_t){ kind, *rec, cur_now };
}

static int count_kind(const char *code, int kind)
{
    int n = 0;
    for (int i = 0; i < n_seen; i++)
        if (seen[i].kind == kind && strcmp(seen[i].rec.alert.code, code) == 0)
            n++;
    return n;
}

static const struct rec_t *last_of(const char *code, int kind)
{
    for (int i = n_seen - 1; i >= 0; i--)
        if (seen[i].kind == kind && strcmp(seen[i].rec.alert.code, code) == 0)
            return &seen[i];
    return NULL;
}

static struct gw_config_alerts default_cfg(void)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    return cfg.alerts;
}

/* A healthy 16-cell LFP pack at 3.300 V per cell. */
static struct bms_live_data healthy(void)
{
    struct bms_live_data d;
    memset(&d, 0, sizeof d);
    d.valid = true;
    d.cell_count = 16;
    for (int i = 0; i < 16; i++)
        d.cell_mv_x10[i] = 33000;
    d.min_cell_mv = d.max_cell_mv = 3300;
    d.pack_voltage_v = 52.8f;
    d.pack_current_a = -5.0f;
    d.temp_dc[0] = 250;
    d.temp_present[0] = true;
    d.temp_dc[1] = 240;
    d.temp_present[1] = true;
    d.temp_dc[2] = BMS_TEMP_ABSENT_RAW;
    d.soc_ppm = 60000000;
    d.online_status = BMS_STATUS_DISCHARGING;
    return d;
}

static void feed(struct alert_engine *e, const struct bms_live_data *d, uint64_t now)
{
    cur_now = now;
    CHECK_EQ_INT(alert_engine_process_sample(e, d, now, 1700000000000LL + (int64_t)now), GW_OK);
}

static uint32_t lcg_state;
static int noise(int amplitude) /* uniform in [-amplitude, amplitude] */
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (int)((lcg_state >> 8) % (uint32_t)(2 * amplitude + 1)) - amplitude;
}

static void test_flap_hysteresis_and_reraise(void)
{
    struct gw_config_alerts cfg = default_cfg(); /* 3.60 V, hysteresis 0.05, raise 5 s, clear 10 s */
    cfg.cell_imbalance.enabled = false;
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    lcg_state = 12345;
    struct bms_live_data d = healthy();
    uint64_t t = 1000;
    for (int i = 0; i < 60; i++, t += 1000)
        feed(e, &d, t);
    CHECK_EQ_INT(n_seen, 0);
    /* 30 minutes of cell 3 hovering at 3.600 V +- 20 mV (noise): raises once, never flaps. */
    for (int i = 0; i < 1800; i++, t += 1000) {
        d.cell_mv_x10[2] = (uint16_t)(36000 + noise(200));
        feed(e, &d, t);
    }
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 1);
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_CLEARED), 0);
    const struct rec_t *r = last_of("OVER_VOLTAGE", ALERT_TRANSITION_RAISED);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->rec.alert.count, 1);
        CHECK_EQ_INT(r->rec.alert.level, ALERT_LEVEL_ERROR);
        CHECK(strncmp(r->rec.alert.message, "Cell 3 voltage 3.6", 18) == 0);
        CHECK(strstr(r->rec.alert.message, "V above 3.600 V") != NULL);
        CHECK(r->rec.alert.value > 3.6f);
        CHECK_NEAR(r->rec.alert.threshold, 3.6, 1e-6);
        /* first_seen is when the condition started, 5 s (raise delay) before the raise */
        CHECK_EQ_INT(r->rec.alert.last_seen_ms - r->rec.alert.first_seen_ms, 5000);
    }
    CHECK_EQ_INT(alert_engine_active_count(e), 1);
    /* back to 3.400 V: clears exactly clear_delay after the value left the band */
    d.cell_mv_x10[2] = 34000;
    uint64_t back_at = t;
    for (int i = 0; i < 30; i++, t += 1000)
        feed(e, &d, t);
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_CLEARED), 1);
    const struct rec_t *c = last_of("OVER_VOLTAGE", ALERT_TRANSITION_CLEARED);
    if (c)
        CHECK_EQ_INT(c->now_ms - back_at, 10000);
    CHECK_EQ_INT(alert_engine_active_count(e), 0);
    /* later: 3.652 V again, raised a second time with count 2 */
    d.cell_mv_x10[2] = 36520;
    for (int i = 0; i < 10; i++, t += 1000)
        feed(e, &d, t);
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 2);
    r = last_of("OVER_VOLTAGE", ALERT_TRANSITION_RAISED);
    if (r) {
        CHECK_EQ_INT(r->rec.alert.count, 2);
        CHECK_STR(r->rec.alert.message, "Cell 3 voltage 3.652 V above 3.600 V");
    }
    CHECK_EQ_INT(e->raised_total[ALERT_CODE_OVER_VOLTAGE], 2);
    free(e);
}

static void test_dip_inside_clear_delay_keeps_alert(void)
{
    struct gw_config_alerts cfg = default_cfg();
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    struct bms_live_data d = healthy();
    uint64_t t = 0;
    d.temp_dc[0] = 600; /* 60 degC > 55 */
    for (int i = 0; i < 10; i++, t += 1000)
        feed(e, &d, t);
    CHECK_EQ_INT(count_kind("OVER_TEMP", ALERT_TRANSITION_RAISED), 1);
    /* below 50 (55 - 5 hysteresis) for 8 s, above again, below for 8 s...: never 10 s in a row */
    for (int cycle = 0; cycle < 20; cycle++) {
        d.temp_dc[0] = 480;
        for (int i = 0; i < 8; i++, t += 1000)
            feed(e, &d, t);
        d.temp_dc[0] = 560;
        feed(e, &d, t);
        t += 1000;
    }
    CHECK_EQ_INT(count_kind("OVER_TEMP", ALERT_TRANSITION_CLEARED), 0);
    CHECK_EQ_INT(count_kind("OVER_TEMP", ALERT_TRANSITION_RAISED), 1);
    /* inside the hysteresis band (52 degC): neither raises nor clears */
    d.temp_dc[0] = 520;
    for (int i = 0; i < 60; i++, t += 1000)
        feed(e, &d, t);
    CHECK_EQ_INT(count_kind("OVER_TEMP", ALERT_TRANSITION_CLEARED), 0);
    d.temp_dc[0] = 300;
    for (int i = 0; i < 11; i++, t += 1000)
        feed(e, &d, t);
    CHECK_EQ_INT(count_kind("OVER_TEMP", ALERT_TRANSITION_CLEARED), 1);
    free(e);
}

static void test_raise_delay(void)
{
    struct gw_config_alerts cfg = default_cfg();
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    struct bms_live_data d = healthy();
    /* spikes shorter than the raise delay never raise */
    uint64_t t = 0;
    for (int cycle = 0; cycle < 50; cycle++) {
        d.pack_current_a = -200.0f; /* > 150 A discharge */
        for (int i = 0; i < 4; i++, t += 1000)
            feed(e, &d, t);
        d.pack_current_a = -20.0f;
        feed(e, &d, t);
        t += 1000;
    }
    CHECK_EQ_INT(n_seen, 0);
    /* held: raised exactly raise_delay after it started */
    d.pack_current_a = -200.0f;
    uint64_t start = t;
    for (int i = 0; i < 8; i++, t += 1000)
        feed(e, &d, t);
    const struct rec_t *r = last_of("OVER_CURRENT", ALERT_TRANSITION_RAISED);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->now_ms - start, 5000);
        CHECK_STR(r->rec.alert.message, "Discharge current 200.0 A above 150.0 A");
        CHECK_EQ_INT(r->rec.alert.level, ALERT_LEVEL_WARNING);
    }
    /* the tick alone completes a pending raise when samples stop */
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    feed(e, &d, 100000);
    alert_engine_tick(e, 104999, 0);
    CHECK_EQ_INT(n_seen, 0);
    cur_now = 105000;
    alert_engine_tick(e, 105000, 0);
    CHECK_EQ_INT(count_kind("OVER_CURRENT", ALERT_TRANSITION_RAISED), 1);
    free(e);
}

struct rule_case {
    const char *code;
    void (*mutate)(struct bms_live_data *d);
    const char *message;
    int level;
};

static void m_cell_high(struct bms_live_data *d) { d->cell_mv_x10[2] = 36520; }
static void m_cell_low(struct bms_live_data *d) { d->cell_mv_x10[15] = 27500; }
static void m_pack_high(struct bms_live_data *d) { d->pack_voltage_v = 58.0f; }
static void m_pack_low(struct bms_live_data *d) { d->pack_voltage_v = 44.0f; }
static void m_temp_high(struct bms_live_data *d) { d->temp_dc[1] = 612; }
static void m_temp_low(struct bms_live_data *d) { d->temp_dc[0] = -55; }
static void m_discharge(struct bms_live_data *d) { d->pack_current_a = -160.5f; }
static void m_charge(struct bms_live_data *d) { d->pack_current_a = 120.0f; }
static void m_soc_low(struct bms_live_data *d) { d->soc_ppm = 8500000; }
static void m_soc_high(struct bms_live_data *d) { d->soc_ppm = 100000000; }
static void m_imbalance(struct bms_live_data *d) { d->cell_mv_x10[4] = 34250; }
static void m_fault(struct bms_live_data *d) { d->online_status = BMS_STATUS_FAULT; }

static void test_each_rule(void)
{
    static const struct rule_case cases[] = {
        { "OVER_VOLTAGE", m_cell_high, "Cell 3 voltage 3.652 V above 3.600 V", ALERT_LEVEL_ERROR },
        { "UNDER_VOLTAGE", m_cell_low, "Cell 16 voltage 2.750 V below 2.800 V", ALERT_LEVEL_ERROR },
        { "PACK_OVER_VOLTAGE", m_pack_high, "Pack voltage 58.00 V above 57.60 V", ALERT_LEVEL_ERROR },
        { "PACK_UNDER_VOLTAGE", m_pack_low, "Pack voltage 44.00 V below 44.80 V", ALERT_LEVEL_ERROR },
        { "OVER_TEMP", m_temp_high, "Temperature 61.2 °C above 55.0 °C", ALERT_LEVEL_ERROR },
        { "UNDER_TEMP", m_temp_low, "Temperature -5.5 °C below 0.0 °C", ALERT_LEVEL_WARNING },
        { "OVER_CURRENT", m_discharge, "Discharge current 160.5 A above 150.0 A", ALERT_LEVEL_WARNING },
        { "CHARGE_OVER_CURRENT", m_charge, "Charge current 120.0 A above 100.0 A", ALERT_LEVEL_WARNING },
        { "SOC_LOW", m_soc_low, "State of charge 8.5 % below 10.0 %", ALERT_LEVEL_WARNING },
        { "SOC_HIGH", m_soc_high, "State of charge 100.0 % above 95.0 %", ALERT_LEVEL_INFO },
        { "CELL_IMBALANCE", m_imbalance, "Cell imbalance 125.0 mV above 100.0 mV", ALERT_LEVEL_WARNING },
        { "BMS_FAULT", m_fault, "BMS reports a fault (status 0x9B)", ALERT_LEVEL_ERROR },
    };
    struct gw_config_alerts cfg = default_cfg();
    cfg.soc_high.enabled = true;
    cfg.soc_high.value = 95.0f;
    cfg.raise_delay_ms = 0;
    cfg.status_alerts = false;
    struct alert_engine *e = malloc(sizeof *e);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        alert_engine_init(e, &cfg, on_emit, NULL);
        n_seen = 0;
        struct bms_live_data d = healthy();
        feed(e, &d, 1000);
        CHECK_EQ_INT(n_seen, 0);
        cases[i].mutate(&d);
        feed(e, &d, 2000);
        const struct rec_t *r = last_of(cases[i].code, ALERT_TRANSITION_RAISED);
        CHECK(r != NULL);
        if (!r) {
            fprintf(stderr, "  rule %s did not raise\n", cases[i].code);
            continue;
        }
        CHECK_STR(r->rec.alert.message, cases[i].message);
        CHECK_EQ_INT(r->rec.alert.level, cases[i].level);
        CHECK_EQ_INT(n_seen, 1 + (strcmp(cases[i].code, "OVER_VOLTAGE") == 0 ||
                                  strcmp(cases[i].code, "UNDER_VOLTAGE") == 0)); /* + imbalance */
        /* back to healthy: cleared after the clear delay */
        d = healthy();
        feed(e, &d, 3000);
        feed(e, &d, 13000);
        CHECK_EQ_INT(count_kind(cases[i].code, ALERT_TRANSITION_CLEARED), 1);
        CHECK_EQ_INT(alert_engine_active_count(e), 0);
    }
    /* disabled rule: nothing */
    cfg.cell_v_high.enabled = false;
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    struct bms_live_data d = healthy();
    d.cell_mv_x10[2] = 36520;
    feed(e, &d, 1000);
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 0);
    free(e);
}

static void test_temperature_connected_sensors_only(void)
{
    struct gw_config_alerts cfg = default_cfg();
    cfg.raise_delay_ms = 0;
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    struct bms_live_data d = healthy();
    d.temp_dc[2] = 900; /* absent sensor with junk: ignored */
    d.temp_present[2] = false;
    feed(e, &d, 1000);
    CHECK_EQ_INT(n_seen, 0);
    d.temp_present[0] = d.temp_present[1] = false; /* no sensor at all: no evaluation */
    feed(e, &d, 2000);
    CHECK_EQ_INT(n_seen, 0);
    /* invalid sample ignored, even with crazy values */
    struct bms_live_data bad = healthy();
    bad.valid = false;
    bad.pack_voltage_v = 100.0f;
    feed(e, &bad, 3000);
    CHECK_EQ_INT(n_seen, 0);
    free(e);
}

static void test_status_change_info_alerts(void)
{
    struct gw_config_alerts cfg = default_cfg(); /* status changes must hold raise_delay (5 s) */
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    struct bms_live_data d = healthy();
    uint64_t t = 0;
    feed(e, &d, t); /* baseline: discharging, no alert */
    CHECK_EQ_INT(n_seen, 0);
    /* flicker to idle for 2 s: nothing */
    d.online_status = BMS_STATUS_IDLE;
    feed(e, &d, t += 1000);
    feed(e, &d, t += 1000);
    d.online_status = BMS_STATUS_DISCHARGING;
    feed(e, &d, t += 1000);
    CHECK_EQ_INT(n_seen, 0);
    d.online_status = BMS_STATUS_CHARGING;
    for (int i = 0; i < 7; i++)
        feed(e, &d, t += 1000);
    CHECK_EQ_INT(count_kind("BMS_STATUS", ALERT_TRANSITION_RAISED), 1);
    const struct rec_t *r = last_of("BMS_STATUS", ALERT_TRANSITION_RAISED);
    if (r) {
        CHECK_STR(r->rec.alert.message, "BMS status: charging");
        CHECK_EQ_INT(r->rec.alert.level, ALERT_LEVEL_INFO);
    }
    d.online_status = BMS_STATUS_FULLY_CHARGED;
    for (int i = 0; i < 7; i++)
        feed(e, &d, t += 1000);
    r = last_of("BMS_STATUS", ALERT_TRANSITION_RAISED);
    if (r) {
        CHECK_STR(r->rec.alert.message, "BMS status: fully charged");
        CHECK_EQ_INT(r->rec.alert.count, 2);
    }
    CHECK_EQ_INT(alert_engine_active_count(e), 1); /* one BMS_STATUS entry, updated */
    /* disabled: no status alert, and the active one goes away */
    cfg.status_alerts = false;
    alert_engine_set_config(e, &cfg, t, 0);
    CHECK_EQ_INT(alert_engine_active_count(e), 0);
    d.online_status = BMS_STATUS_IDLE;
    for (int i = 0; i < 7; i++)
        feed(e, &d, t += 1000);
    CHECK_EQ_INT(count_kind("BMS_STATUS", ALERT_TRANSITION_RAISED), 2);
    free(e);
}

static void set_log(struct bms_event_log *log, const struct bms_event *ev, int n)
{
    memset(log, 0, sizeof *log);
    log->valid = true;
    log->count = (uint8_t)n;
    for (int i = 0; i < n; i++)
        log->events[i] = ev[i];
}

static void test_event_log_dedup(void)
{
    struct gw_config_alerts cfg = default_cfg();
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    struct bms_event_log *log = malloc(sizeof *log);
    struct bms_event evs[BMS_EVENT_SLOTS] = {
        { 100, 0x61 }, { 200, 0x03 }, { 300, 0x79 }, { 400, 0x62 },
    };
    set_log(log, evs, 4);
    CHECK_EQ_INT(alert_engine_process_event_log(e, 0, log, 1000, 1000), GW_OK);
    CHECK_EQ_INT(n_seen, 0); /* first log: baseline, old entries never alert */
    CHECK_EQ_INT(alert_engine_process_event_log(e, 0, log, 2000, 2000), GW_OK);
    CHECK_EQ_INT(n_seen, 0);
    evs[4] = (struct bms_event){ 500, 0x02 }; /* a new under-voltage cutoff */
    set_log(log, evs, 5);
    CHECK_EQ_INT(alert_engine_process_event_log(e, 0, log, 3000, 3000), GW_OK);
    CHECK_EQ_INT(n_seen, 1);
    const struct rec_t *r = last_of("BMS_UNDER_VOLTAGE_CUTOFF", ALERT_TRANSITION_RAISED);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->rec.alert.level, ALERT_LEVEL_ERROR);
        CHECK_STR(r->rec.alert.message, "BMS under-voltage cutoff (event 0x02 at BMS time 500 s)");
    }
    /* re-sent several times, also reordered: still one */
    for (int i = 0; i < 5; i++)
        alert_engine_process_event_log(e, 0, log, 4000, 4000);
    struct bms_event rev[5];
    for (int i = 0; i < 5; i++)
        rev[i] = evs[4 - i];
    set_log(log, rev, 5);
    alert_engine_process_event_log(e, 0, log, 5000, 5000);
    CHECK_EQ_INT(n_seen, 1);
    /* the ring drops its oldest entry and gets two new ones: warning + recovery of the cutoff */
    struct bms_event next[] = { { 200, 0x03 }, { 300, 0x79 }, { 400, 0x62 }, { 500, 0x02 },
                                { 600, 0x37 }, { 700, 0x7B } };
    set_log(log, next, 6);
    alert_engine_process_event_log(e, 0, log, 6000, 6000);
    CHECK_EQ_INT(count_kind("BMS_LOW_TEMP_CHARGE_CUTOFF", ALERT_TRANSITION_RAISED), 1);
    CHECK_EQ_INT(count_kind("BMS_UNDER_VOLTAGE_CUTOFF", ALERT_TRANSITION_CLEARED), 1);
    CHECK_EQ_INT(count_kind("BMS_OVER_VOLTAGE_CUTOFF", ALERT_TRANSITION_RAISED), 0);
    r = last_of("BMS_LOW_TEMP_CHARGE_CUTOFF", ALERT_TRANSITION_RAISED);
    if (r)
        CHECK_EQ_INT(r->rec.alert.level, ALERT_LEVEL_WARNING);
    CHECK_EQ_INT(alert_engine_active_count(e), 1);
    /* invalid log ignored; another battery has its own baseline */
    log->valid = false;
    CHECK_EQ_INT(alert_engine_process_event_log(e, 0, log, 7000, 7000), GW_OK);
    set_log(log, next, 6);
    alert_engine_process_event_log(e, 1, log, 8000, 8000);
    CHECK_EQ_INT(n_seen, 3);
    CHECK_EQ_INT(alert_engine_process_event_log(e, 0, NULL, 0, 0), GW_ERR_INVAL);
    free(log);
    free(e);
}

static void test_ack_clear_counts(void)
{
    struct gw_config_alerts cfg = default_cfg();
    cfg.cell_imbalance.enabled = false;
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    struct bms_live_data d = healthy();
    d.cell_mv_x10[0] = 36500;
    d.cell_mv_x10[1] = 36500;
    uint64_t t = 0;
    for (int i = 0; i < 6; i++)
        feed(e, &d, t += 1000);
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 1);
    CHECK_EQ_INT(alert_engine_raise(e, "CONFIG_RECOVERED", 0, NULL, ALERT_LEVEL_WARNING,
                                    "config.json corrupt: last good copy loaded", 0, 0, t,
                                    1700000000000LL + (int64_t)t), GW_OK);
    CHECK_EQ_INT(alert_engine_active_count(e), 2);
    CHECK_EQ_INT(alert_engine_ack(e, "OVER_VOLTAGE", 0), 1);
    CHECK_EQ_INT(alert_engine_ack(e, "OVER_VOLTAGE", 0), 0); /* already */
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_ACKED), 1);
    struct alert_record act[4];
    size_t total = 0;
    CHECK_EQ_INT(alert_engine_active(e, act, 4, &total), 2);
    CHECK_EQ_INT(total, 2);
    CHECK_STR(act[0].alert.code, "OVER_VOLTAGE"); /* oldest first */
    CHECK(act[0].alert.acknowledged);
    CHECK(!act[1].alert.acknowledged);
    CHECK_EQ_INT(alert_engine_ack(e, NULL, 0), 1);
    /* clear all: both go; the over-voltage is still there so it comes back after the delay */
    cur_now = t;
    CHECK_EQ_INT(alert_engine_clear_all(e, t, 0), 2);
    CHECK_EQ_INT(alert_engine_active_count(e), 0);
    feed(e, &d, t += 1000);
    alert_engine_tick(e, t += 3000, 0);
    CHECK_EQ_INT(alert_engine_active_count(e), 0);
    feed(e, &d, t += 1000);
    CHECK_EQ_INT(alert_engine_active_count(e), 1);
    const struct rec_t *r = last_of("OVER_VOLTAGE", ALERT_TRANSITION_RAISED);
    if (r) {
        CHECK_EQ_INT(r->rec.alert.count, 2);
        CHECK(!r->rec.alert.acknowledged);
    }
    CHECK_EQ_INT(count_kind("CONFIG_RECOVERED", ALERT_TRANSITION_RAISED), 1); /* latched: not back */
    /* manual clear by code, unknown code */
    CHECK_EQ_INT(alert_engine_clear(e, "CONFIG_RECOVERED", ALERT_BATTERY_ANY, NULL, t, 0), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(alert_engine_raise(e, "MY_MODULE_WARNING", 0, NULL, ALERT_LEVEL_INFO, NULL, 0, 0, t, 0), GW_OK);
    CHECK_EQ_INT(alert_engine_raise(e, "MY_MODULE_WARNING", 0, NULL, ALERT_LEVEL_INFO, NULL, 0, 0, t, 0), GW_OK);
    r = last_of("MY_MODULE_WARNING", ALERT_TRANSITION_RAISED);
    if (r) {
        CHECK_EQ_INT(r->rec.alert.count, 2);
        CHECK_STR(r->rec.alert.message, "MY_MODULE_WARNING");
    }
    CHECK_EQ_INT(alert_engine_clear(e, "MY_MODULE_WARNING", ALERT_BATTERY_ANY, NULL, t, 0), GW_OK);
    CHECK_EQ_INT(e->raised_total[ALERT_CODE_OVER_VOLTAGE], 2);
    CHECK_EQ_INT(e->raised_total[ALERT_CODE_CUSTOM], 2);
    /* bad input */
    CHECK_EQ_INT(alert_engine_raise(e, "", 0, NULL, 0, NULL, 0, 0, t, 0), GW_ERR_INVAL);
    CHECK_EQ_INT(alert_engine_raise(e, "A_CODE_THAT_IS_FAR_TOO_LONG_TO_FIT", 0, NULL, 0, NULL, 0, 0, t, 0),
                 GW_ERR_INVAL);
    CHECK_EQ_INT(alert_engine_raise(e, "X", 0, NULL, 7, NULL, 0, 0, t, 0), GW_ERR_INVAL);
    CHECK_EQ_INT(alert_engine_process_sample(e, NULL, 0, 0), GW_ERR_INVAL);
    free(e);
}

static void test_edge_conditions(void)
{
    struct gw_config_alerts cfg = default_cfg();
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    cur_now = 1000;
    CHECK_EQ_INT(alert_engine_set_condition(e, ALERT_CODE_BMS_COMM_LOST, 0, NULL, true, ALERT_LEVEL_ERROR,
                                            "No valid BMS data: timeout", 0, 0, 1000, 1000), GW_OK);
    CHECK_EQ_INT(count_kind("BMS_COMM_LOST", ALERT_TRANSITION_RAISED), 1);
    /* re-sent lost: no second raise */
    alert_engine_set_condition(e, ALERT_CODE_BMS_COMM_LOST, 0, NULL, true, ALERT_LEVEL_ERROR, NULL, 0, 0, 1500, 1500);
    CHECK_EQ_INT(count_kind("BMS_COMM_LOST", ALERT_TRANSITION_RAISED), 1);
    alert_engine_set_condition(e, ALERT_CODE_BMS_COMM_LOST, 0, NULL, false, ALERT_LEVEL_ERROR, NULL, 0, 0, 2000, 2000);
    CHECK_EQ_INT(count_kind("BMS_COMM_LOST", ALERT_TRANSITION_CLEARED), 1);
    /* MQTT with a raise delay: a short outage never raises */
    alert_engine_set_condition(e, ALERT_CODE_MQTT_DISCONNECTED, 0, NULL, true, ALERT_LEVEL_WARNING, NULL, 5000, 0,
                               10000, 0);
    alert_engine_tick(e, 12000, 0);
    alert_engine_set_condition(e, ALERT_CODE_MQTT_DISCONNECTED, 0, NULL, false, ALERT_LEVEL_WARNING, NULL, 5000, 0,
                               13000, 0);
    alert_engine_tick(e, 20000, 0);
    CHECK_EQ_INT(count_kind("MQTT_DISCONNECTED", ALERT_TRANSITION_RAISED), 0);
    alert_engine_set_condition(e, ALERT_CODE_MQTT_DISCONNECTED, 0, NULL, true, ALERT_LEVEL_WARNING, NULL, 5000, 0,
                               30000, 0);
    alert_engine_tick(e, 35000, 0);
    CHECK_EQ_INT(count_kind("MQTT_DISCONNECTED", ALERT_TRANSITION_RAISED), 1);
    /* storage errors are per module (subject) */
    alert_engine_set_condition(e, ALERT_CODE_STORAGE_ERROR, 0, "history", true, ALERT_LEVEL_ERROR, "disk full", 0, 0,
                               40000, 0);
    alert_engine_set_condition(e, ALERT_CODE_STORAGE_ERROR, 0, "config", true, ALERT_LEVEL_ERROR, "read-only", 0, 0,
                               40000, 0);
    CHECK_EQ_INT(count_kind("STORAGE_ERROR", ALERT_TRANSITION_RAISED), 2);
    alert_engine_set_condition(e, ALERT_CODE_STORAGE_ERROR, 0, "history", false, ALERT_LEVEL_ERROR, NULL, 0, 0,
                               41000, 0);
    const struct rec_t *c = last_of("STORAGE_ERROR", ALERT_TRANSITION_CLEARED);
    CHECK(c != NULL);
    if (c)
        CHECK_STR(c->rec.subject, "history");
    CHECK_EQ_INT(alert_engine_active_count(e), 2); /* MQTT + config storage */
    CHECK_EQ_INT(alert_engine_set_condition(e, ALERT_CODE_CUSTOM, 0, NULL, true, 0, NULL, 0, 0, 0, 0), GW_ERR_INVAL);
    free(e);
}

static void test_config_change_and_batteries(void)
{
    struct gw_config_alerts cfg = default_cfg();
    cfg.raise_delay_ms = 0;
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    struct bms_live_data a = healthy(), b = healthy();
    b.battery_id = 1;
    b.pack_voltage_v = 58.5f;
    feed(e, &a, 1000);
    feed(e, &b, 1000);
    const struct rec_t *r = last_of("PACK_OVER_VOLTAGE", ALERT_TRANSITION_RAISED);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->rec.alert.battery_id, 1);
        CHECK_STR(r->rec.alert.message, "Pack voltage 58.50 V above 57.60 V (battery 1)");
    }
    CHECK_EQ_INT(count_kind("PACK_OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 1);
    /* the rule gets disabled: the active alert clears now */
    cfg.pack_v_high.enabled = false;
    alert_engine_set_config(e, &cfg, 2000, 2000);
    CHECK_EQ_INT(count_kind("PACK_OVER_VOLTAGE", ALERT_TRANSITION_CLEARED), 1);
    feed(e, &b, 3000);
    CHECK_EQ_INT(count_kind("PACK_OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 1);
    /* higher threshold: no longer a condition */
    cfg.pack_v_high.enabled = true;
    cfg.pack_v_high.value = 60.0f;
    alert_engine_set_config(e, &cfg, 4000, 4000);
    feed(e, &b, 5000);
    CHECK_EQ_INT(count_kind("PACK_OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 1);
    /* too many batteries */
    for (int i = 2; i < 40; i++) {
        struct bms_live_data x = healthy();
        x.battery_id = (uint8_t)i;
        int rc = alert_engine_process_sample(e, &x, 6000, 6000);
        CHECK(rc == GW_OK || (rc == GW_ERR_FULL && i >= ALERT_ENGINE_MAX_BATTERIES));
    }
    free(e);
}

static void test_names(void)
{
    for (int c = 0; c < ALERT_CODE_CUSTOM; c++) {
        CHECK(alert_code_name(c)[0] != '\0');
        CHECK_EQ_INT(alert_code_from_name(alert_code_name(c)), c);
    }
    CHECK_EQ_INT(alert_code_from_name("nope"), ALERT_CODE_CUSTOM);
    CHECK_STR(alert_code_name(-1), "");
    CHECK_EQ_INT(alert_code_for_bms_event(0x61), -1);
    CHECK_EQ_INT(alert_code_for_bms_event(0x0E), ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED);
    CHECK_STR(alert_level_name(ALERT_LEVEL_ERROR), "error");
}

TEST_MAIN(TEST_CASE(test_flap_hysteresis_and_reraise), TEST_CASE(test_dip_inside_clear_delay_keeps_alert),
          TEST_CASE(test_raise_delay), TEST_CASE(test_each_rule), TEST_CASE(test_temperature_connected_sensors_only),
          TEST_CASE(test_status_change_info_alerts), TEST_CASE(test_event_log_dedup),
          TEST_CASE(test_ack_clear_counts), TEST_CASE(test_edge_conditions),
          TEST_CASE(test_config_change_and_batteries), TEST_CASE(test_names))
