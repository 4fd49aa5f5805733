/* Alert rules engine: scripted streams of battery views (one pack, several packs), hysteresis,
 * delays, every rule, every view condition, BMS event log, and docs/alerts.md in step with the
 * code table. */
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

/* A bank of n healthy packs (ids 0..n-1, named "pack 1".."pack n"), all online. The views are
 * large (7 KB): one static scratch. */
static struct battery_view view_buf;

static void view_reset(struct battery_view *v, unsigned n)
{
    memset(v, 0, sizeof *v);
    v->pack_count = (uint8_t)n;
    v->online_count = (uint8_t)n;
    v->soc_pct = 60.0f;
    v->voltage_v = 52.8f;
    v->online_status = BMS_STATUS_DISCHARGING;
    for (unsigned i = 0; i < n; i++) {
        struct battery_pack *p = &v->packs[i];
        p->id = (uint8_t)i;
        snprintf(p->name, sizeof p->name, "pack %u", i + 1);
        p->state = BATTERY_PACK_ONLINE;
        p->live = healthy();
        p->live.battery_id = (uint8_t)i;
    }
}

/* Recomputes the bank fields the engine reads from the packs (SOC, status, online count). */
static void view_sync(struct battery_view *v)
{
    float soc = 0;
    unsigned on = 0;
    for (unsigned i = 0; i < v->pack_count; i++) {
        const struct battery_pack *p = &v->packs[i];
        if (p->state != BATTERY_PACK_ONLINE && p->state != BATTERY_PACK_REJOINING)
            continue;
        soc += bms_soc_percent(&p->live);
        on++;
    }
    v->online_count = (uint8_t)on;
    v->soc_pct = on ? soc / (float)on : 0;
    v->online_status = on ? v->packs[0].live.online_status : 0;
}

static void feed_view(struct alert_engine *e, struct battery_view *v, uint64_t now)
{
    cur_now = now;
    CHECK_EQ_INT(alert_engine_process_view(e, v, now, 1700000000000LL + (int64_t)now), GW_OK);
}

/* One pack carrying sample d: what a single TinyBMS gives. */
static void feed(struct alert_engine *e, const struct bms_live_data *d, uint64_t now)
{
    view_reset(&view_buf, 1);
    view_buf.packs[0].live = *d;
    view_buf.packs[0].id = d->battery_id;
    if (!d->valid)
        view_buf.packs[0].state = BATTERY_PACK_STALE;
    view_sync(&view_buf);
    feed_view(e, &view_buf, now);
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
        CHECK(strncmp(r->rec.alert.message, "pack 1: cell 3 high 3.6", 23) == 0);
        CHECK(strstr(r->rec.alert.message, "V (limit 3.600 V)") != NULL);
        CHECK_EQ_INT(r->rec.alert.battery_id, 0);
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
        CHECK_STR(r->rec.alert.message, "pack 1: cell 3 high 3.652 V (limit 3.600 V)");
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
        CHECK_STR(r->rec.alert.message, "pack 1: discharge current high 200.0 A (limit 150.0 A)");
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
    uint8_t battery_id;
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
        { "OVER_VOLTAGE", m_cell_high, "pack 1: cell 3 high 3.652 V (limit 3.600 V)", ALERT_LEVEL_ERROR, 0 },
        { "UNDER_VOLTAGE", m_cell_low, "pack 1: cell 16 low 2.750 V (limit 2.800 V)", ALERT_LEVEL_ERROR, 0 },
        { "PACK_OVER_VOLTAGE", m_pack_high, "pack 1: voltage high 58.00 V (limit 57.60 V)", ALERT_LEVEL_ERROR, 0 },
        { "PACK_UNDER_VOLTAGE", m_pack_low, "pack 1: voltage low 44.00 V (limit 44.80 V)", ALERT_LEVEL_ERROR, 0 },
        { "OVER_TEMP", m_temp_high, "pack 1: temperature high 61.2 °C (limit 55.0 °C)", ALERT_LEVEL_ERROR, 0 },
        { "UNDER_TEMP", m_temp_low, "pack 1: temperature low -5.5 °C (limit 0.0 °C)", ALERT_LEVEL_WARNING, 0 },
        { "OVER_CURRENT", m_discharge, "pack 1: discharge current high 160.5 A (limit 150.0 A)", ALERT_LEVEL_WARNING,
          0 },
        { "CHARGE_OVER_CURRENT", m_charge, "pack 1: charge current high 120.0 A (limit 100.0 A)", ALERT_LEVEL_WARNING,
          0 },
        { "SOC_LOW", m_soc_low, "battery: state of charge low 8.5 % (limit 10.0 %)", ALERT_LEVEL_WARNING,
          BATTERY_BANK_ID },
        { "SOC_HIGH", m_soc_high, "battery: state of charge high 100.0 % (limit 95.0 %)", ALERT_LEVEL_INFO,
          BATTERY_BANK_ID },
        { "CELL_IMBALANCE", m_imbalance, "pack 1: cell imbalance 125.0 mV (limit 100.0 mV)", ALERT_LEVEL_WARNING, 0 },
        { "BMS_FAULT", m_fault, "pack 1: BMS reports a fault (status 0x9B)", ALERT_LEVEL_ERROR, 0 },
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
        CHECK_EQ_INT(r->rec.alert.battery_id, cases[i].battery_id);
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

/* Every row of the threshold table: a case exists for it, its direction decides (a threshold
 * just past the measured value raises, one just short of it does not, equal never does), and its
 * message is built from the row's label, word, unit and decimals. */
static void test_rule_table_rows(void)
{
    static const struct {
        int code;
        void (*mutate)(struct bms_live_data *d);
        float value;      /* what the rule reads after mutate, in its unit */
        unsigned cell;    /* named in the message, 0 = none */
    } cases[] = {
        { ALERT_CODE_OVER_VOLTAGE, m_cell_high, 3.652f, 3 },
        { ALERT_CODE_UNDER_VOLTAGE, m_cell_low, 2.75f, 16 },
        { ALERT_CODE_PACK_OVER_VOLTAGE, m_pack_high, 58.0f, 0 },
        { ALERT_CODE_PACK_UNDER_VOLTAGE, m_pack_low, 44.0f, 0 },
        { ALERT_CODE_OVER_TEMP, m_temp_high, 61.2f, 0 },
        { ALERT_CODE_UNDER_TEMP, m_temp_low, -5.5f, 0 },
        { ALERT_CODE_OVER_CURRENT, m_discharge, 160.5f, 0 },
        { ALERT_CODE_CHARGE_OVER_CURRENT, m_charge, 120.0f, 0 },
        { ALERT_CODE_SOC_LOW, m_soc_low, 8.5f, 0 },
        { ALERT_CODE_SOC_HIGH, m_soc_high, 100.0f, 0 },
        { ALERT_CODE_CELL_IMBALANCE, m_imbalance, 125.0f, 0 },
    };
    size_t n = alert_threshold_rule_count();
    CHECK_EQ_INT(n, sizeof cases / sizeof cases[0]);
    CHECK(alert_threshold_rule(n) == NULL);
    CHECK(alert_threshold_rule_config(NULL, 0) == NULL);
    struct alert_engine *e = malloc(sizeof *e);
    for (size_t i = 0; i < n; i++) {
        const struct alert_threshold_rule_info *row = alert_threshold_rule(i);
        CHECK(row != NULL);
        if (!row)
            continue;
        const char *code = alert_code_name(row->code);
        size_t k = 0;
        while (k < sizeof cases / sizeof cases[0] && cases[k].code != row->code)
            k++;
        if (k == sizeof cases / sizeof cases[0]) {
            fprintf(stderr, "  row %zu (%s) has no case\n", i, code);
            CHECK(false);
            continue;
        }
        CHECK(row->label && row->label[0] && row->unit && row->unit[0] && row->decimals <= 3);
        for (size_t j = 0; j < i; j++)
            CHECK(alert_threshold_rule(j)->code != row->code); /* one row per code */
        /* Thresholds around the measured value: -step, equal, +step. */
        float step = row->decimals >= 3 ? 0.01f : 1.0f;
        for (int side = -1; side <= 1; side++) {
            struct gw_config_alerts cfg = default_cfg();
            cfg.raise_delay_ms = 0;
            cfg.status_alerts = false;
            cfg.cell_imbalance.enabled = row->code == ALERT_CODE_CELL_IMBALANCE; /* no side raise */
            struct gw_alert_threshold *t = (struct gw_alert_threshold *)alert_threshold_rule_config(&cfg, i);
            CHECK(t != NULL);
            if (!t)
                continue;
            t->enabled = true;
            t->value = cases[k].value + (float)side * step;
            alert_engine_init(e, &cfg, on_emit, NULL);
            n_seen = 0;
            struct bms_live_data d = healthy();
            feed(e, &d, 1000);
            CHECK_EQ_INT(count_kind(code, ALERT_TRANSITION_RAISED), 0);
            cases[k].mutate(&d);
            feed(e, &d, 2000);
            /* raised when the value is past the threshold in the row's direction */
            bool want = row->above ? side < 0 : side > 0;
            const struct rec_t *r = last_of(code, ALERT_TRANSITION_RAISED);
            if ((r != NULL) != want)
                fprintf(stderr, "  %s: threshold %+d step: raised %d, expected %d\n", code, side, r != NULL, want);
            CHECK((r != NULL) == want);
            if (!r)
                continue;
            char expected[160], cell[16] = "", word[16] = "";
            if (cases[k].cell)
                snprintf(cell, sizeof cell, " %u", cases[k].cell);
            if (row->word)
                snprintf(word, sizeof word, " %s", row->word);
            snprintf(expected, sizeof expected, "%s: %s%s%s %.*f %s (limit %.*f %s)", row->bank ? "battery" : "pack 1",
                     row->label, cell, word, row->decimals, (double)cases[k].value, row->unit, row->decimals,
                     (double)t->value, row->unit);
            CHECK_STR(r->rec.alert.message, expected);
            CHECK_EQ_INT(r->rec.alert.battery_id, row->bank ? BATTERY_BANK_ID : 0);
            CHECK_NEAR(r->rec.alert.threshold, t->value, 1e-6);
            CHECK_NEAR(r->rec.alert.value, cases[k].value, 1e-4);
        }
    }
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
        CHECK_STR(r->rec.alert.message, "battery: status charging");
        CHECK_EQ_INT(r->rec.alert.battery_id, BATTERY_BANK_ID);
        CHECK_EQ_INT(r->rec.alert.level, ALERT_LEVEL_INFO);
    }
    d.online_status = BMS_STATUS_FULLY_CHARGED;
    for (int i = 0; i < 7; i++)
        feed(e, &d, t += 1000);
    r = last_of("BMS_STATUS", ALERT_TRANSITION_RAISED);
    if (r) {
        CHECK_STR(r->rec.alert.message, "battery: status fully charged");
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
        CHECK_STR(r->rec.alert.message, "pack id 0: BMS under-voltage cutoff (event 0x02 at BMS time 500 s)");
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
    CHECK_EQ_INT(alert_engine_process_view(e, NULL, 0, 0), GW_ERR_INVAL);
    CHECK_EQ_INT(alert_engine_process_view(NULL, &view_buf, 0, 0), GW_ERR_INVAL);
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
    view_reset(&view_buf, 2);
    view_buf.packs[1].live.pack_voltage_v = 58.5f;
    feed_view(e, &view_buf, 1000);
    const struct rec_t *r = last_of("PACK_OVER_VOLTAGE", ALERT_TRANSITION_RAISED);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->rec.alert.battery_id, 1);
        CHECK_STR(r->rec.alert.message, "pack 2: voltage high 58.50 V (limit 57.60 V)");
    }
    CHECK_EQ_INT(count_kind("PACK_OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 1);
    /* the rule gets disabled: the active alert clears now */
    cfg.pack_v_high.enabled = false;
    alert_engine_set_config(e, &cfg, 2000, 2000);
    CHECK_EQ_INT(count_kind("PACK_OVER_VOLTAGE", ALERT_TRANSITION_CLEARED), 1);
    feed_view(e, &view_buf, 3000);
    CHECK_EQ_INT(count_kind("PACK_OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 1);
    /* higher threshold: no longer a condition */
    cfg.pack_v_high.enabled = true;
    cfg.pack_v_high.value = 60.0f;
    alert_engine_set_config(e, &cfg, 4000, 4000);
    feed_view(e, &view_buf, 5000);
    CHECK_EQ_INT(count_kind("PACK_OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 1);
    /* too many pack ids over time: the ones that do not fit are skipped, the rest evaluated */
    int full = 0;
    for (int base = 2; base < 40; base += BATTERY_MAX_PACKS) {
        view_reset(&view_buf, BATTERY_MAX_PACKS);
        for (unsigned i = 0; i < BATTERY_MAX_PACKS; i++)
            view_buf.packs[i].id = (uint8_t)(base + (int)i);
        int rc = alert_engine_process_view(e, &view_buf, 6000, 6000);
        CHECK(rc == GW_OK || rc == GW_ERR_FULL);
        full += rc == GW_ERR_FULL;
    }
    CHECK(full > 0);
    free(e);
}

/* The same rule on two packs: two alerts, each keyed and named by its pack; one clears, the
 * other stays. A pack without fresh data is not evaluated. */
static void test_packs_keyed_and_named(void)
{
    struct gw_config_alerts cfg = default_cfg();
    cfg.raise_delay_ms = 0;
    cfg.cell_imbalance.enabled = false;
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    view_reset(&view_buf, 3);
    feed_view(e, &view_buf, 1000);
    CHECK_EQ_INT(n_seen, 0);
    view_buf.packs[1].live.cell_mv_x10[6] = 36200; /* pack 2, cell 7: 3.620 V */
    view_buf.packs[2].live.cell_mv_x10[6] = 36400; /* pack 3, cell 7: 3.640 V */
    feed_view(e, &view_buf, 2000);
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 2);
    CHECK_EQ_INT(alert_engine_active_count(e), 2);
    bool p2 = false, p3 = false;
    for (int i = 0; i < n_seen; i++) {
        const struct app_alert *a = &seen[i].rec.alert;
        if (seen[i].kind != ALERT_TRANSITION_RAISED)
            continue;
        if (a->battery_id == 1)
            p2 = strcmp(a->message, "pack 2: cell 7 high 3.620 V (limit 3.600 V)") == 0;
        if (a->battery_id == 2)
            p3 = strcmp(a->message, "pack 3: cell 7 high 3.640 V (limit 3.600 V)") == 0;
    }
    CHECK(p2 && p3);
    /* acknowledging is per alert: both are OVER_VOLTAGE, both acknowledged by code */
    CHECK_EQ_INT(alert_engine_ack(e, "OVER_VOLTAGE", 0), 2);
    /* pack 2 recovers: its alert clears after the clear delay, pack 3's stays */
    view_buf.packs[1].live.cell_mv_x10[6] = 33000;
    feed_view(e, &view_buf, 3000);
    feed_view(e, &view_buf, 13000);
    const struct rec_t *c = last_of("OVER_VOLTAGE", ALERT_TRANSITION_CLEARED);
    CHECK(c != NULL);
    if (c)
        CHECK_EQ_INT(c->rec.alert.battery_id, 1);
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_CLEARED), 1);
    CHECK_EQ_INT(alert_engine_active_count(e), 1);
    /* pack 3 turns stale with values held: not evaluated, its alert neither clears nor changes */
    view_buf.packs[2].state = BATTERY_PACK_STALE;
    view_buf.packs[2].live.cell_mv_x10[6] = 33000;
    view_buf.packs[1].state = BATTERY_PACK_STALE;
    view_buf.packs[1].live.pack_voltage_v = 70.0f; /* stale junk never raises */
    for (uint64_t t = 14000; t < 60000; t += 1000)
        feed_view(e, &view_buf, t);
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_CLEARED), 1);
    CHECK_EQ_INT(count_kind("PACK_OVER_VOLTAGE", ALERT_TRANSITION_RAISED), 0);
    /* fresh again (rejoining counts as fresh): evaluated again */
    view_buf.packs[2].state = BATTERY_PACK_REJOINING;
    feed_view(e, &view_buf, 60000);
    feed_view(e, &view_buf, 70000);
    CHECK_EQ_INT(count_kind("OVER_VOLTAGE", ALERT_TRANSITION_CLEARED), 2);
    free(e);
}

struct cond_case {
    uint32_t bit;
    bool bank;            /* bit of the view (else of pack 2) */
    const char *code;
    int level;
    uint8_t battery_id;
    const char *message;
    bool immediate;       /* no raise / clear delay */
};

static void cond_apply(struct battery_view *v, const struct cond_case *c, bool on)
{
    struct battery_pack *p = &v->packs[1];
    if (c->bank) {
        v->conditions = on ? c->bit : 0;
    } else {
        p->conditions = on ? c->bit : 0;
    }
    switch (c->bit) {
    case BATTERY_COND_PACK_OFFLINE:
        p->state = on ? BATTERY_PACK_OFFLINE : BATTERY_PACK_ONLINE;
        p->sample_age_ms = on ? 35400 : 0;
        break;
    case BATTERY_COND_COMM_LOST:
    case BATTERY_COND_IMPLAUSIBLE:
    case BATTERY_COND_FROZEN:
        p->state = on ? BATTERY_PACK_STALE : BATTERY_PACK_ONLINE;
        break;
    case BATTERY_COND_REJOIN_BLOCKED:
        p->state = on ? BATTERY_PACK_REJOINING : BATTERY_PACK_ONLINE;
        p->live.pack_voltage_v = on ? 53.6f : 52.8f;
        break;
    case BATTERY_COND_BELOW_MIN_ONLINE:
        p->state = on ? BATTERY_PACK_OFFLINE : BATTERY_PACK_ONLINE;
        v->conditions |= on ? BATTERY_COND_PACK_OFFLINE : 0;
        break;
    case BATTERY_COND_NO_DATA:
        for (unsigned i = 0; i < v->pack_count; i++)
            v->packs[i].state = on ? BATTERY_PACK_OFFLINE : BATTERY_PACK_ONLINE;
        v->conditions |= on ? BATTERY_COND_PACK_OFFLINE : 0;
        break;
    case BATTERY_COND_VOLTAGE_SPREAD:
        v->packs[0].live.pack_voltage_v = on ? 52.10f : 52.8f;
        v->packs[2].live.pack_voltage_v = on ? 52.90f : 52.8f;
        break;
    case BATTERY_COND_SOC_SPREAD:
        v->packs[0].live.soc_ppm = on ? 40000000 : 60000000;
        v->packs[2].live.soc_ppm = on ? 62500000 : 60000000;
        break;
    default:
        break;
    }
    view_sync(v);
}

/* Every condition of the view: raised on the rising edge after the raise delay (or at once),
 * cleared when it has been gone for the clear delay, acknowledged, raised again (count 2). */
static void test_view_conditions(void)
{
    static const struct cond_case cases[] = {
        { BATTERY_COND_COMM_LOST, false, "BMS_COMM_LOST", ALERT_LEVEL_ERROR, 1,
          "pack 2: BMS communication lost (timeout)", true },
        { BATTERY_COND_IMPLAUSIBLE, false, "PACK_IMPLAUSIBLE", ALERT_LEVEL_WARNING, 1,
          "pack 2: implausible samples refused (cell 3 0 V): pack left out", false },
        { BATTERY_COND_FROZEN, false, "PACK_FROZEN", ALERT_LEVEL_WARNING, 1,
          "pack 2: BMS data frozen (the same sample again and again): pack left out", false },
        { BATTERY_COND_NO_CELL_TEMP, false, "PACK_NO_CELL_TEMP", ALERT_LEVEL_WARNING, 1,
          "pack 2: no cell temperature sensor: cell heat and cold are not watched", false },
        { BATTERY_COND_REJOIN_BLOCKED, false, "PACK_REJOIN_BLOCKED", ALERT_LEVEL_WARNING, 1,
          "pack 2: kept out of the bank: 53.60 V vs bank 52.80 V", false },
        { BATTERY_COND_PACK_OFFLINE, true, "PACK_OFFLINE", ALERT_LEVEL_WARNING, 1,
          "pack 2: offline (last data 35 s ago): the battery runs on 2 of 3 packs", false },
        { BATTERY_COND_BELOW_MIN_ONLINE, true, "PACKS_BELOW_MIN_ONLINE", ALERT_LEVEL_ERROR, BATTERY_BANK_ID,
          "battery: only 2 of 3 packs online, fewer than the minimum: charging and discharging stopped", false },
        { BATTERY_COND_NO_DATA, true, "BATTERY_NO_DATA", ALERT_LEVEL_ERROR, BATTERY_BANK_ID,
          "battery: no pack has usable data: charge limits are not sent", false },
        { BATTERY_COND_VOLTAGE_SPREAD, true, "PACK_VOLTAGE_SPREAD", ALERT_LEVEL_WARNING, BATTERY_BANK_ID,
          "battery: pack voltages differ by 0.80 V (pack 1 52.10 V, pack 3 52.90 V)", false },
        { BATTERY_COND_SOC_SPREAD, true, "PACK_SOC_SPREAD", ALERT_LEVEL_WARNING, BATTERY_BANK_ID,
          "battery: pack states of charge differ by 22.5 % (pack 1 40.0 %, pack 3 62.5 %)", false },
        { BATTERY_COND_ENERGY_REFUSED, true, "ENERGY_STATE_REFUSED", ALERT_LEVEL_WARNING, BATTERY_BANK_ID,
          "battery: saved energy counters or charge state refused at start (out of range): counting from 0",
          true },
    };
    struct gw_config_alerts cfg = default_cfg(); /* raise 5 s, clear 10 s */
    cfg.status_alerts = false;
    struct alert_engine *e = malloc(sizeof *e);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct cond_case *c = &cases[i];
        alert_engine_init(e, &cfg, on_emit, NULL);
        n_seen = 0;
        view_reset(&view_buf, 3);
        snprintf(view_buf.packs[1].bad_reason, sizeof view_buf.packs[1].bad_reason, "cell 3 0 V");
        CHECK_EQ_INT(alert_engine_set_comm_reason(e, 1, "timeout"), GW_OK);
        uint64_t t = 1000;
        feed_view(e, &view_buf, t);
        CHECK_EQ_INT(n_seen, 0);
        cond_apply(&view_buf, c, true);
        uint64_t on_at = t += 1000;
        for (int k = 0; k < 8; k++, t += 1000)
            feed_view(e, &view_buf, t);
        const struct rec_t *r = last_of(c->code, ALERT_TRANSITION_RAISED);
        CHECK(r != NULL);
        if (!r) {
            fprintf(stderr, "  condition %s did not raise\n", c->code);
            continue;
        }
        CHECK_EQ_INT(count_kind(c->code, ALERT_TRANSITION_RAISED), 1); /* rising edge only */
        CHECK_EQ_INT(r->now_ms - on_at, c->immediate ? 0 : cfg.raise_delay_ms);
        CHECK_EQ_INT(r->rec.alert.level, c->level);
        CHECK_EQ_INT(r->rec.alert.battery_id, c->battery_id);
        CHECK_STR(r->rec.alert.message, c->message);
        CHECK_EQ_INT(alert_engine_ack(e, c->code, 0), 1);
        /* gone: cleared after the clear delay (at once when immediate) */
        cond_apply(&view_buf, c, false);
        uint64_t off_at = t;
        for (int k = 0; k < 12; k++, t += 1000)
            feed_view(e, &view_buf, t);
        const struct rec_t *cl = last_of(c->code, ALERT_TRANSITION_CLEARED);
        CHECK(cl != NULL);
        if (cl)
            CHECK_EQ_INT(cl->now_ms - off_at, c->immediate ? 0 : cfg.clear_delay_ms);
        CHECK_EQ_INT(alert_engine_active_count(e), 0);
        /* back: raised again, count 2, not acknowledged */
        cond_apply(&view_buf, c, true);
        for (int k = 0; k < 8; k++, t += 1000)
            feed_view(e, &view_buf, t);
        r = last_of(c->code, ALERT_TRANSITION_RAISED);
        if (r) {
            CHECK_EQ_INT(r->rec.alert.count, 2);
            CHECK(!r->rec.alert.acknowledged);
        }
    }
    free(e);
}

/* PACK_OFFLINE is per pack, and not raised when the pack's own condition says why. */
static void test_pack_offline_per_pack_and_causes(void)
{
    struct gw_config_alerts cfg = default_cfg();
    cfg.raise_delay_ms = 0;
    cfg.clear_delay_ms = 0;
    cfg.status_alerts = false;
    struct alert_engine *e = malloc(sizeof *e);
    alert_engine_init(e, &cfg, on_emit, NULL);
    n_seen = 0;
    view_reset(&view_buf, 4);
    feed_view(e, &view_buf, 1000);
    /* pack 2 stale by age, pack 4 never seen: two PACK_OFFLINE alerts */
    view_buf.packs[1].state = BATTERY_PACK_STALE;
    view_buf.packs[1].sample_age_ms = 6200;
    view_buf.packs[3].state = BATTERY_PACK_NEVER_SEEN;
    view_buf.packs[3].live.valid = false;
    view_buf.conditions = BATTERY_COND_PACK_OFFLINE;
    view_sync(&view_buf);
    feed_view(e, &view_buf, 2000);
    CHECK_EQ_INT(count_kind("PACK_OFFLINE", ALERT_TRANSITION_RAISED), 2);
    bool stale = false, never = false;
    for (int i = 0; i < n_seen; i++) {
        if (seen[i].kind != ALERT_TRANSITION_RAISED)
            continue;
        if (seen[i].rec.alert.battery_id == 1)
            stale = strcmp(seen[i].rec.alert.message,
                           "pack 2: stale (last data 6 s ago): the battery runs on 2 of 4 packs") == 0;
        if (seen[i].rec.alert.battery_id == 3)
            never = strcmp(seen[i].rec.alert.message,
                           "pack 4: never seen (no data since start): the battery runs on 2 of 4 packs") == 0;
    }
    CHECK(stale && never);
    /* pack 2's communication is lost: BMS_COMM_LOST names it, PACK_OFFLINE of pack 2 goes */
    alert_engine_set_comm_reason(e, 1, "device unplugged");
    view_buf.packs[1].state = BATTERY_PACK_OFFLINE;
    view_buf.packs[1].conditions = BATTERY_COND_COMM_LOST;
    feed_view(e, &view_buf, 3000);
    const struct rec_t *r = last_of("BMS_COMM_LOST", ALERT_TRANSITION_RAISED);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->rec.alert.battery_id, 1);
        CHECK_STR(r->rec.alert.message, "pack 2: BMS communication lost (device unplugged)");
    }
    const struct rec_t *c = last_of("PACK_OFFLINE", ALERT_TRANSITION_CLEARED);
    CHECK(c != NULL);
    if (c)
        CHECK_EQ_INT(c->rec.alert.battery_id, 1);
    CHECK_EQ_INT(alert_engine_active_count(e), 2); /* comm lost pack 2, offline pack 4 */
    /* everything back */
    alert_engine_set_comm_reason(e, 1, NULL);
    view_reset(&view_buf, 4);
    feed_view(e, &view_buf, 4000);
    CHECK_EQ_INT(alert_engine_active_count(e), 0);
    /* clear all while a condition holds: it comes back after its raise delay */
    view_buf.packs[2].conditions = BATTERY_COND_NO_CELL_TEMP;
    feed_view(e, &view_buf, 5000);
    CHECK_EQ_INT(count_kind("PACK_NO_CELL_TEMP", ALERT_TRANSITION_RAISED), 1);
    CHECK_EQ_INT(alert_engine_clear_all(e, 5000, 0), 1);
    feed_view(e, &view_buf, 6000);
    CHECK_EQ_INT(count_kind("PACK_NO_CELL_TEMP", ALERT_TRANSITION_RAISED), 2);
    /* the event log names the pack once a view told its name */
    view_reset(&view_buf, 4);
    snprintf(view_buf.packs[2].name, sizeof view_buf.packs[2].name, "rack C");
    feed_view(e, &view_buf, 7000);
    struct bms_event_log *log = calloc(1, sizeof *log);
    log->valid = true;
    alert_engine_process_event_log(e, 2, log, 7000, 7000); /* baseline */
    log->count = 1;
    log->events[0] = (struct bms_event){ 900, 0x04 };
    alert_engine_process_event_log(e, 2, log, 8000, 8000);
    r = last_of("BMS_OVER_TEMP_CUTOFF", ALERT_TRANSITION_RAISED);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->rec.alert.battery_id, 2);
        CHECK_STR(r->rec.alert.message, "rack C: BMS over-temperature cutoff (event 0x04 at BMS time 900 s)");
    }
    free(log);
    free(e);
}

/* docs/alerts.md lists every code (the user's list of alerts and what to do). */
static void test_docs_list_every_code(void)
{
    const char *src = getenv("GW_SOURCE_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/docs/alerts.md", src ? src : ".");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f)
        return;
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    doc[n] = '\0';
    fclose(f);
    for (int c = 0; c < ALERT_CODE_CUSTOM; c++) {
        char tick[48];
        snprintf(tick, sizeof tick, "`%s`", alert_code_name(c));
        if (!strstr(doc, tick)) {
            fprintf(stderr, "  docs/alerts.md does not mention %s\n", tick);
            CHECK(false);
        }
    }
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
    /* The code table: every BMS event code is raised by exactly its event, recoveries clear. */
    CHECK_EQ_INT(alert_code_for_bms_event(0x00), -1);
    CHECK_EQ_INT(alert_code_for_bms_event(0x02), ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF);
    CHECK_EQ_INT(alert_code_for_bms_event(0x39), ALERT_CODE_BMS_CHARGER_VOLTAGE_LOW);
    CHECK_EQ_INT(alert_code_cleared_by_bms_event(0x7B), ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF);
    CHECK_EQ_INT(alert_code_cleared_by_bms_event(0x0F), ALERT_CODE_BMS_CURRENT_SENSOR_DISCONNECTED);
    CHECK_EQ_INT(alert_code_cleared_by_bms_event(0x02), -1);
    int raised_by_events = 0;
    for (unsigned id = 1; id < 256; id++)
        raised_by_events += alert_code_for_bms_event((uint8_t)id) >= 0;
    CHECK_EQ_INT(raised_by_events, ALERT_CODE_BMS_CHARGER_VOLTAGE_LOW - ALERT_CODE_BMS_UNDER_VOLTAGE_CUTOFF + 1);
    CHECK_EQ_INT(alert_code_default_level(ALERT_CODE_SOC_HIGH), ALERT_LEVEL_INFO);
    CHECK_EQ_INT(alert_code_default_level(ALERT_CODE_BATTERY_NO_DATA), ALERT_LEVEL_ERROR);
    CHECK_EQ_INT(alert_code_default_level(ALERT_CODE_PACK_FROZEN), ALERT_LEVEL_WARNING);
    CHECK_EQ_INT(alert_code_default_level(-3), ALERT_LEVEL_WARNING);
}

TEST_MAIN(TEST_CASE(test_flap_hysteresis_and_reraise), TEST_CASE(test_dip_inside_clear_delay_keeps_alert),
          TEST_CASE(test_raise_delay), TEST_CASE(test_each_rule), TEST_CASE(test_rule_table_rows), TEST_CASE(test_temperature_connected_sensors_only),
          TEST_CASE(test_status_change_info_alerts), TEST_CASE(test_event_log_dedup),
          TEST_CASE(test_ack_clear_counts), TEST_CASE(test_edge_conditions),
          TEST_CASE(test_config_change_and_batteries), TEST_CASE(test_packs_keyed_and_named),
          TEST_CASE(test_view_conditions), TEST_CASE(test_pack_offline_per_pack_and_causes),
          TEST_CASE(test_docs_list_every_code), TEST_CASE(test_names))
