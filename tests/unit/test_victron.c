/* Victron encoder: golden frames from the spec's candump, edge values, limits rounded down,
 * strings, frame roles, 0x35A flags. */
#include "tinybms.h"
#include "victron.h"

#include "charge_control.h"
#include "gw_error.h"
#include "test.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* A healthy 16-cell sample matching the spec's example traffic. */
/* The BMS settings as the battery service hands them over: decoded by the codec. */
static void apply_settings(struct victron_alarm_thresholds *t, const struct bms_settings *s)
{
    struct bms_pack_limits l;
    tinybms_pack_limits_decode(s, &l);
    victron_alarm_thresholds_apply_limits(t, &l);
}

static void sample_live(struct bms_live_data *d)
{
    memset(d, 0, sizeof *d);
    d->valid = true;
    d->cell_count = 16;
    for (unsigned i = 0; i < 16; i++)
        d->cell_mv_x10[i] = 35500 + (uint16_t)i; /* 3.5500 .. 3.5515 V */
    d->min_cell_mv = 3550;
    d->max_cell_mv = 3552;
    d->min_cell_index = 1;
    d->max_cell_index = 16;
    d->cell_spread_mv_x10 = 15;
    d->pack_voltage_v = 56.81f;
    d->pack_current_a = 20.6f;
    d->temp_dc[BMS_TEMP_INTERNAL] = 290;
    d->temp_present[BMS_TEMP_INTERNAL] = true;
    d->temp_dc[BMS_TEMP_EXT1] = 318;
    d->temp_present[BMS_TEMP_EXT1] = true;
    d->temp_dc[BMS_TEMP_EXT2] = 250;
    d->temp_present[BMS_TEMP_EXT2] = true;
    d->soc_ppm = 89000000u;
    d->soh_raw = 50000;
    d->soh_valid = true;
    d->online_status = BMS_STATUS_CHARGING;
    d->lifetime_s = 100000;
}

static void sample_identity(struct victron_identity *id)
{
    memset(id, 0, sizeof *id);
    strcpy(id->manufacturer, "Enepaq");
    strcpy(id->battery_name, "TinyBMS");
    strcpy(id->family, "TinyBMS");
    strcpy(id->serial, "0123456789AB");
    id->model_id = 0x1234;
    id->fw_major = 2;
    id->fw_minor = 7;
    id->hw_version = 0x0102;
}

struct fixture {
    struct bms_live_data live;   /* only for the 0x35A flags (victron_alarms_from_bms) */
    struct victron_alarm_thresholds thr;
    struct victron_inputs in;
};

/* The spec's example traffic as plain values: no BMS registers reach the encoder. */
static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    sample_live(&f->live);
    victron_inputs_init(&f->in);
    sample_identity(&f->in.identity);
    victron_alarm_thresholds_defaults(&f->thr, 0);
    CHECK_EQ_INT(victron_alarms_from_bms(&f->live, NULL, &f->thr, true, &f->in.alarms), GW_OK);
    f->in.cvl_v = 58.1f;
    f->in.ccl_a = 110.0f;
    f->in.dcl_a = 110.0f;
    f->in.discharge_v = 0.0f;
    f->in.soc_pct = 89.0f;
    f->in.soh_pct = 100.0f;
    f->in.voltage_v = 56.81f;
    f->in.current_a = 20.6f;
    f->in.temp_c = 31.8f;
    f->in.modules = (struct victron_modules){ .ok = 1 };
    f->in.min_cell_v = 3.550f;
    f->in.max_cell_v = 3.5515f;
    f->in.min_temp_c = 25.0f;
    f->in.max_temp_c = 31.8f;
    strcpy(f->in.min_cell_id, "C1");
    strcpy(f->in.max_cell_id, "C16");
    strcpy(f->in.min_temp_id, "T2");
    strcpy(f->in.max_temp_id, "T1");
    f->in.energy_in_wh = 123456.0;
    f->in.energy_out_wh = 98765.0;
    f->in.capacity_ah = 280.0f;
    f->in.installed_capacity_ah = 280.0f;
}

static void expect_frame(const struct victron_frame *fr, uint16_t id, uint8_t dlc, const uint8_t *bytes)
{
    CHECK_EQ_INT(fr->id, id);
    CHECK_EQ_INT(fr->dlc, dlc);
    CHECK_MEM(fr->data, bytes, 8);
}

static void test_golden_candump(void)
{
    struct fixture f;
    fixture_init(&f);
    struct victron_frame fr;

    CHECK_EQ_INT(victron_encode_frame(0x351, &f.in, &fr), GW_OK);
    static const uint8_t g351[8] = { 0x45, 0x02, 0x4c, 0x04, 0x4c, 0x04, 0x00, 0x00 };
    expect_frame(&fr, 0x351, 8, g351);

    CHECK_EQ_INT(victron_encode_frame(0x355, &f.in, &fr), GW_OK);
    /* Spec: 59 00 64 00 ...; bytes 4-5 carry the optional high-resolution SOC 89.00 %. */
    static const uint8_t g355[8] = { 0x59, 0x00, 0x64, 0x00, 0xc4, 0x22, 0x00, 0x00 };
    expect_frame(&fr, 0x355, 8, g355);

    CHECK_EQ_INT(victron_encode_frame(0x356, &f.in, &fr), GW_OK);
    static const uint8_t g356[8] = { 0x31, 0x16, 0xce, 0x00, 0x3e, 0x01, 0x00, 0x00 };
    expect_frame(&fr, 0x356, 8, g356);

    CHECK_EQ_INT(victron_encode_frame(0x35A, &f.in, &fr), GW_OK);
    static const uint8_t g35a[8] = { 0xaa, 0xaa, 0xaa, 0x02, 0xaa, 0xaa, 0xaa, 0x0a };
    expect_frame(&fr, 0x35A, 8, g35a);
}

static void test_identity_frames(void)
{
    struct fixture f;
    fixture_init(&f);
    struct victron_frame fr;

    CHECK_EQ_INT(victron_encode_frame(0x35E, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x35E, 8, (const uint8_t *)"Enepaq\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x35F, &f.in, &fr), GW_OK);
    static const uint8_t g35f[8] = { 0x34, 0x12, 2, 7, 0x18, 0x01, 0x02, 0x01 };
    expect_frame(&fr, 0x35F, 8, g35f);
    CHECK_EQ_INT(victron_encode_frame(0x370, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x370, 8, (const uint8_t *)"TinyBMS\0");
    CHECK_EQ_INT(victron_encode_frame(0x371, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x371, 8, (const uint8_t *)"\0\0\0\0\0\0\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x380, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x380, 8, (const uint8_t *)"01234567");
    CHECK_EQ_INT(victron_encode_frame(0x381, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x381, 8, (const uint8_t *)"89AB\0\0\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x382, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x382, 8, (const uint8_t *)"TinyBMS\0");
    CHECK_EQ_INT(victron_encode_frame(0x379, &f.in, &fr), GW_OK);
    static const uint8_t g379[8] = { 0x18, 0x01, 0, 0, 0, 0, 0, 0 };
    expect_frame(&fr, 0x379, 8, g379);
    /* 123456 Wh -> 1235 x 100 Wh, 98765 Wh -> 988 */
    CHECK_EQ_INT(victron_encode_frame(0x378, &f.in, &fr), GW_OK);
    static const uint8_t g378[8] = { 0xd3, 0x04, 0, 0, 0xdc, 0x03, 0, 0 };
    expect_frame(&fr, 0x378, 8, g378);

    /* 16 characters split 8 + 8; non-ASCII bytes become '?'. */
    strcpy(f.in.identity.battery_name, "ABCDEFGHIJKLMNOP");
    CHECK_EQ_INT(victron_encode_frame(0x371, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x371, 8, (const uint8_t *)"IJKLMNOP");
    strcpy(f.in.identity.manufacturer, "Ene\xc3\xa9q");
    CHECK_EQ_INT(victron_encode_frame(0x35E, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x35E, 8, (const uint8_t *)"Ene??q\0\0");
    /* Unterminated string in its array: bounded by the array size. */
    memset(f.in.identity.family, 'Z', sizeof f.in.identity.family);
    CHECK_EQ_INT(victron_encode_frame(0x382, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x382, 8, (const uint8_t *)"ZZZZZZZZ");
}

static void test_live_extras(void)
{
    struct fixture f;
    fixture_init(&f);
    struct victron_frame fr;

    CHECK_EQ_INT(victron_encode_frame(0x372, &f.in, &fr), GW_OK);
    static const uint8_t g372[8] = { 1, 0, 0, 0, 0, 0, 0, 0 };
    expect_frame(&fr, 0x372, 8, g372);
    /* Two packs, one blocking charge, one offline (R11). */
    f.in.modules = (struct victron_modules){ .ok = 2, .blocking_charge = 1, .offline = 1 };
    CHECK_EQ_INT(victron_encode_frame(0x372, &f.in, &fr), GW_OK);
    static const uint8_t g372b[8] = { 2, 0, 1, 0, 0, 0, 1, 0 };
    expect_frame(&fr, 0x372, 8, g372b);

    /* 0x373: 3550 / 3552 mV (3.5515 V rounds to nearest); 25.0 degC = 298 K, 31.8 = 305 K. */
    CHECK_EQ_INT(victron_encode_frame(0x373, &f.in, &fr), GW_OK);
    static const uint8_t g373[8] = { 0xde, 0x0d, 0xe0, 0x0d, 0x2a, 0x01, 0x31, 0x01 };
    expect_frame(&fr, 0x373, 8, g373);

    CHECK_EQ_INT(victron_encode_frame(0x374, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x374, 8, (const uint8_t *)"C1\0\0\0\0\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x375, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x375, 8, (const uint8_t *)"C16\0\0\0\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x376, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x376, 8, (const uint8_t *)"T2\0\0\0\0\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x377, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x377, 8, (const uint8_t *)"T1\0\0\0\0\0\0");
    /* Pack-qualified names of a bank; 8 characters at most; unknown: all zero. */
    strcpy(f.in.min_cell_id, "P2C07");
    strcpy(f.in.max_temp_id, "P12T2");
    CHECK_EQ_INT(victron_encode_frame(0x374, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x374, 8, (const uint8_t *)"P2C07\0\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x377, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x377, 8, (const uint8_t *)"P12T2\0\0\0");
    memset(f.in.max_cell_id, 'X', sizeof f.in.max_cell_id); /* unterminated */
    CHECK_EQ_INT(victron_encode_frame(0x375, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x375, 8, (const uint8_t *)"XXXXXXXX");
    f.in.min_cell_id[0] = '\0';
    CHECK_EQ_INT(victron_encode_frame(0x374, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x374, 8, (const uint8_t *)"\0\0\0\0\0\0\0\0");

    /* No temperature at all: 0x356 and 0x373 are shortened to DLC 4. */
    f.in.temp_c = f.in.min_temp_c = f.in.max_temp_c = NAN;
    CHECK_EQ_INT(victron_encode_frame(0x356, &f.in, &fr), GW_OK);
    static const uint8_t g356s[8] = { 0x31, 0x16, 0xce, 0x00, 0, 0, 0, 0 };
    expect_frame(&fr, 0x356, 4, g356s);
    CHECK_EQ_INT(victron_encode_frame(0x373, &f.in, &fr), GW_OK);
    static const uint8_t g373s[8] = { 0xde, 0x0d, 0xe0, 0x0d, 0, 0, 0, 0 };
    expect_frame(&fr, 0x373, 4, g373s);

    /* SOH unknown -> 100 %; cell voltages unknown -> 0. */
    f.in.soh_pct = NAN;
    CHECK_EQ_INT(victron_encode_frame(0x355, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(fr.data[2], 100);
    f.in.min_cell_v = NAN;
    CHECK_EQ_INT(victron_encode_frame(0x373, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(fr.data[0] | fr.data[1], 0);
}

static uint16_t u16_at(const struct victron_frame *fr, unsigned off)
{
    return (uint16_t)(fr->data[off] | fr->data[off + 1] << 8);
}

/* CVL/CCL/DCL are rounded DOWN to the 0.1 step: a limit never goes out higher than asked. */
static void test_limits_round_down(void)
{
    struct fixture f;
    struct victron_frame fr;
    struct {
        float cvl, ccl, dcl;
        uint16_t raw_cvl, raw_ccl, raw_dcl;
    } limits[] = {
        { 55.249f, 100.09f, 150.099f, 552, 1000, 1500 }, /* never up to 55.3 / 100.1 / 150.1 */
        { 55.25f, 0.05f, 0.04f, 552, 0, 0 },             /* half a step is still below */
        { 55.2999f, 99.99f, 0.0999f, 552, 999, 0 },
        { 55.3f, 100.1f, 150.1f, 553, 1001, 1501 },      /* 55.2999992f is 55.3 as written */
        { 58.05f, 110.05f, 99.95f, 580, 1100, 999 },
        { 58.1f, 110.0f, 110.0f, 581, 1100, 1100 },
        { 0.1f, 3276.7f, 3276.79f, 1, 32767, 32767 },    /* the smallest CVL; the largest current */
        { 7000.0f, 5000.0f, 1e30f, 65535, 32767, 32767 }, /* saturation */
        { 58.1f, -5.0f, -0.01f, 581, 0, 0 },             /* sent as positive numbers */
        { 58.1f, NAN, INFINITY, 581, 0, 0 },             /* NaN/inf -> 0 */
        { 58.1f, -INFINITY, NAN, 581, 0, 0 },
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        fixture_init(&f);
        f.in.cvl_v = limits[i].cvl;
        f.in.ccl_a = limits[i].ccl;
        f.in.dcl_a = limits[i].dcl;
        CHECK_EQ_INT(victron_encode_frame(0x351, &f.in, &fr), GW_OK);
        if (u16_at(&fr, 0) != limits[i].raw_cvl || u16_at(&fr, 2) != limits[i].raw_ccl ||
            u16_at(&fr, 4) != limits[i].raw_dcl)
            fprintf(stderr, "case %zu: %.7g %.7g %.7g\n", i, (double)limits[i].cvl, (double)limits[i].ccl,
                    (double)limits[i].dcl);
        CHECK_EQ_INT(u16_at(&fr, 0), limits[i].raw_cvl);
        CHECK_EQ_INT(u16_at(&fr, 2), limits[i].raw_ccl);
        CHECK_EQ_INT(u16_at(&fr, 4), limits[i].raw_dcl);
    }
    /* Every float limit on a 1 mV grid: the value sent is never above it, and less than one
     * step below it. */
    fixture_init(&f);
    for (int mv = 100; mv <= 65000; mv += 7) {
        f.in.cvl_v = (float)mv / 1000.0f;
        f.in.ccl_a = (float)mv / 1000.0f;
        CHECK_EQ_INT(victron_encode_frame(0x351, &f.in, &fr), GW_OK);
        double sent_v = u16_at(&fr, 0) / 10.0, sent_a = u16_at(&fr, 2) / 10.0;
        double want = mv / 1000.0;
        if (!(sent_v <= want + 1e-9 && sent_v > want - 0.1 - 1e-9 && sent_a == sent_v)) {
            fprintf(stderr, "%d mV -> CVL %.1f V CCL %.1f A\n", mv, sent_v, sent_a);
            CHECK(false);
            break;
        }
    }
    /* The discharge voltage (byte 6) keeps rounding to nearest. */
    fixture_init(&f);
    f.in.discharge_v = 46.39f;
    CHECK_EQ_INT(victron_encode_frame(0x351, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(u16_at(&fr, 6), 464);

    /* CVL never 0: NaN, inf, 0, negative and below one step withhold 0x351. */
    const float bad_cvl[] = { NAN, INFINITY, -INFINITY, 0.0f, -1.0f, 0.04f, 0.09f, 0.0999f };
    for (size_t i = 0; i < sizeof bad_cvl / sizeof bad_cvl[0]; i++) {
        fixture_init(&f);
        f.in.cvl_v = bad_cvl[i];
        memset(&fr, 0x55, sizeof fr);
        CHECK_EQ_INT(victron_encode_frame(0x351, &f.in, &fr), GW_ERR_RANGE);
        CHECK_EQ_INT(fr.id, 0);
        CHECK_EQ_INT(fr.dlc, 0);
    }
}

/* Edge values: (id, offset) raw after encoding one input. */
static void test_edge_values(void)
{
    struct fixture f;
    struct victron_frame fr;

    struct {
        float v, a, t;
        int16_t raw_v, raw_a, raw_t;
    } meas[] = {
        { 56.81f, -20.6f, -40.0f, 5681, -206, -400 },   /* discharge, -40 degC */
        { 48.005f, -0.05f, -0.1f, 4801, -1, -1 },       /* half away from zero */
        { 400.0f, -5000.0f, 0.0f, 32767, -32768, 0 },   /* saturation */
        { -3.0f, 3276.8f, 85.0f, 0, 32767, 850 },       /* negative voltage -> 0 */
    };
    for (size_t i = 0; i < sizeof meas / sizeof meas[0]; i++) {
        fixture_init(&f);
        f.in.voltage_v = meas[i].v;
        f.in.current_a = meas[i].a;
        f.in.temp_c = meas[i].t;
        CHECK_EQ_INT(victron_encode_frame(0x356, &f.in, &fr), GW_OK);
        CHECK_EQ_INT((int16_t)u16_at(&fr, 0), meas[i].raw_v);
        CHECK_EQ_INT((int16_t)u16_at(&fr, 2), meas[i].raw_a);
        CHECK_EQ_INT((int16_t)u16_at(&fr, 4), meas[i].raw_t);
    }
    /* -40 degC in 0x373 = 233.15 K -> 233. */
    fixture_init(&f);
    f.in.min_temp_c = -40.0f;
    CHECK_EQ_INT(victron_encode_frame(0x373, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(u16_at(&fr, 4), 233);

    /* NaN voltage or current withholds 0x356 (shared voltage sense must not see a guess). */
    fixture_init(&f);
    f.in.voltage_v = NAN;
    CHECK_EQ_INT(victron_encode_frame(0x356, &f.in, &fr), GW_ERR_RANGE);
    fixture_init(&f);
    f.in.current_a = -INFINITY;
    CHECK_EQ_INT(victron_encode_frame(0x356, &f.in, &fr), GW_ERR_RANGE);

    /* SOC: 89.5 -> 90 (hi-res 8950); above 100 saturates; unknown withholds 0x355. */
    fixture_init(&f);
    f.in.soc_pct = 89.5f;
    CHECK_EQ_INT(victron_encode_frame(0x355, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(u16_at(&fr, 0), 90);
    CHECK_EQ_INT(u16_at(&fr, 4), 8950);
    f.in.soc_pct = 150.0f;
    CHECK_EQ_INT(victron_encode_frame(0x355, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(u16_at(&fr, 0), 100);
    CHECK_EQ_INT(u16_at(&fr, 4), 10000);
    f.in.soc_pct = NAN;
    CHECK_EQ_INT(victron_encode_frame(0x355, &f.in, &fr), GW_ERR_RANGE);

    /* Energy: 100 Wh steps, rollover past 2^32 x 100 Wh, NaN/negative -> 0. */
    struct {
        double wh;
        uint32_t raw;
    } energy[] = {
        { 0.0, 0 }, { 49.0, 0 }, { 50.0, 1 }, { 429496729500.0, 0xFFFFFFFFu },
        { 429496729600.0, 0 }, { 429496730100.0, 5 }, { -100.0, 0 }, { NAN, 0 }, { INFINITY, 0 },
    };
    for (size_t i = 0; i < sizeof energy / sizeof energy[0]; i++) {
        fixture_init(&f);
        f.in.energy_in_wh = energy[i].wh;
        f.in.energy_out_wh = energy[i].wh;
        CHECK_EQ_INT(victron_encode_frame(0x378, &f.in, &fr), GW_OK);
        uint32_t in = (uint32_t)fr.data[0] | (uint32_t)fr.data[1] << 8 | (uint32_t)fr.data[2] << 16 |
                      (uint32_t)fr.data[3] << 24;
        uint32_t out = (uint32_t)fr.data[4] | (uint32_t)fr.data[5] << 8 |
                       (uint32_t)fr.data[6] << 16 | (uint32_t)fr.data[7] << 24;
        CHECK_EQ_INT(in, energy[i].raw);
        CHECK_EQ_INT(out, energy[i].raw);
    }
    /* Capacity NaN -> 0, huge -> 65535. */
    fixture_init(&f);
    f.in.capacity_ah = NAN;
    f.in.installed_capacity_ah = 1e9f;
    CHECK_EQ_INT(victron_encode_frame(0x35F, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(u16_at(&fr, 4), 0);
    CHECK_EQ_INT(victron_encode_frame(0x379, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(u16_at(&fr, 0), 65535);
}

/* Nothing known (victron_inputs_init): only what is safe without data goes out. */
static void test_inputs_init_is_nothing_known(void)
{
    struct victron_inputs in;
    memset(&in, 0x5A, sizeof in);
    victron_inputs_init(&in);
    victron_inputs_init(NULL);
    struct victron_frame frames[VICTRON_MAX_FRAMES];
    size_t n = 0;
    CHECK_EQ_INT(victron_encode_all(&in, frames, VICTRON_MAX_FRAMES, &n), GW_ERR_RANGE);
    CHECK(victron_find_frame(frames, n, 0x351) == NULL);
    CHECK(victron_find_frame(frames, n, 0x355) == NULL);
    CHECK(victron_find_frame(frames, n, 0x356) == NULL);
    const struct victron_frame *a = victron_find_frame(frames, n, 0x35A);
    CHECK(a != NULL);
    if (a) {
        static const uint8_t off[8] = { 0, 0, 0, 0, 0, 0, 0, 0x04 };
        CHECK_MEM(a->data, off, 8);
    }
    const struct victron_frame *m = victron_find_frame(frames, n, 0x372);
    CHECK(m != NULL && m->data[0] == 0 && m->data[6] == 0);
    CHECK_EQ_INT(n, VICTRON_MAX_FRAMES - 3);
}

static void test_encode_all(void)
{
    struct fixture f;
    fixture_init(&f);
    struct victron_frame frames[VICTRON_MAX_FRAMES];
    size_t n = 99;
    CHECK_EQ_INT(victron_encode_all(&f.in, frames, VICTRON_MAX_FRAMES, &n), GW_OK);
    CHECK_EQ_INT(n, VICTRON_MAX_FRAMES);
    static const uint16_t order[] = { 0x351, 0x355, 0x356, 0x35A, 0x372, 0x373, 0x374, 0x375,
                                      0x376, 0x377, 0x378, 0x379, 0x35E, 0x35F, 0x370, 0x371,
                                      0x380, 0x381, 0x382 };
    for (size_t i = 0; i < n && i < sizeof order / sizeof order[0]; i++)
        CHECK_EQ_INT(frames[i].id, order[i]);
    /* The sets the publisher schedules are these, in this order. */
    uint16_t ids[VICTRON_MAX_FRAMES];
    CHECK_EQ_INT(victron_set_ids(VICTRON_SET_LIVE, ids, VICTRON_MAX_FRAMES), VICTRON_LIVE_FRAMES);
    CHECK_MEM(ids, order, VICTRON_LIVE_FRAMES * sizeof ids[0]);
    CHECK_EQ_INT(victron_set_ids(VICTRON_SET_IDENTITY, ids, VICTRON_MAX_FRAMES), VICTRON_IDENTITY_FRAMES);
    CHECK_MEM(ids, order + VICTRON_LIVE_FRAMES, VICTRON_IDENTITY_FRAMES * sizeof ids[0]);
    CHECK_EQ_INT(victron_set_ids(VICTRON_SET_ALL, ids, 3), VICTRON_MAX_FRAMES); /* count, 3 stored */

    CHECK_EQ_INT(victron_encode_set(VICTRON_SET_LIVE, &f.in, frames, VICTRON_MAX_FRAMES, &n), GW_OK);
    CHECK_EQ_INT(n, VICTRON_LIVE_FRAMES);
    CHECK_EQ_INT(victron_encode_set(VICTRON_SET_IDENTITY, &f.in, frames, VICTRON_MAX_FRAMES, &n), GW_OK);
    CHECK_EQ_INT(n, VICTRON_IDENTITY_FRAMES);

    /* NaN CVL: 0x351 withheld, the rest still encoded. */
    f.in.cvl_v = NAN;
    CHECK_EQ_INT(victron_encode_all(&f.in, frames, VICTRON_MAX_FRAMES, &n), GW_ERR_RANGE);
    CHECK_EQ_INT(n, VICTRON_MAX_FRAMES - 1);
    CHECK(victron_find_frame(frames, n, 0x351) == NULL);
    CHECK(victron_find_frame(frames, n, 0x355) != NULL);

    /* Small buffer, NULLs, unknown ids. */
    f.in.cvl_v = 55.0f;
    CHECK_EQ_INT(victron_encode_all(&f.in, frames, 5, &n), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(victron_encode_all(NULL, frames, VICTRON_MAX_FRAMES, &n), GW_ERR_INVAL);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(victron_encode_all(&f.in, NULL, VICTRON_MAX_FRAMES, &n), GW_ERR_INVAL);
    struct victron_frame fr;
    CHECK_EQ_INT(victron_encode_frame(0x123, &f.in, &fr), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(victron_encode_frame(0x351, NULL, &fr), GW_ERR_INVAL);
    CHECK_EQ_INT(victron_encode_frame(0x351, &f.in, NULL), GW_ERR_INVAL);
    CHECK(victron_find_frame(NULL, 3, 0x351) == NULL);
}

/* Every frame has a role; the publisher's withholding rule is built on them. */
static void test_frame_roles(void)
{
    static const struct {
        uint16_t id;
        int role;
    } roles[] = {
        { 0x351, VICTRON_ROLE_LIMITS }, { 0x355, VICTRON_ROLE_MEASUREMENT },
        { 0x356, VICTRON_ROLE_MEASUREMENT }, { 0x35A, VICTRON_ROLE_STATUS },
        { 0x372, VICTRON_ROLE_STATUS }, { 0x373, VICTRON_ROLE_MEASUREMENT },
        { 0x374, VICTRON_ROLE_MEASUREMENT }, { 0x375, VICTRON_ROLE_MEASUREMENT },
        { 0x376, VICTRON_ROLE_MEASUREMENT }, { 0x377, VICTRON_ROLE_MEASUREMENT },
        { 0x378, VICTRON_ROLE_TOTALS }, { 0x379, VICTRON_ROLE_TOTALS },
        { 0x35E, VICTRON_ROLE_IDENTITY }, { 0x35F, VICTRON_ROLE_BMS_IDENTITY },
        { 0x370, VICTRON_ROLE_IDENTITY }, { 0x371, VICTRON_ROLE_IDENTITY },
        { 0x380, VICTRON_ROLE_BMS_IDENTITY }, { 0x381, VICTRON_ROLE_BMS_IDENTITY },
        { 0x382, VICTRON_ROLE_IDENTITY },
    };
    CHECK_EQ_INT(sizeof roles / sizeof roles[0], VICTRON_MAX_FRAMES);
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        CHECK_EQ_INT(victron_frame_role(roles[i].id), roles[i].role);
    CHECK_EQ_INT(victron_frame_role(0x305), GW_ERR_NOT_FOUND);
}

static void test_table_consistent(void)
{
    size_t n = 0;
    const struct victron_field *t = victron_field_table(&n);
    CHECK(n >= 25);
    uint8_t used[0x400][8];
    memset(used, 0, sizeof used);
    for (size_t i = 0; i < n; i++) {
        CHECK(t[i].size == 1 || t[i].size == 2 || t[i].size == 4);
        CHECK(t[i].byte_offset + t[i].size <= 8);
        CHECK(t[i].source < VICTRON_SRC_COUNT);
        CHECK(t[i].raw_min <= t[i].raw_max);
        CHECK(t[i].name && t[i].unit && t[i].resolution);
        CHECK(t[i].can_id >= 0x351 && t[i].can_id < 0x400);
        for (unsigned b = 0; b < t[i].size && t[i].byte_offset + b < 8; b++) {
            CHECK_EQ_INT(used[t[i].can_id][t[i].byte_offset + b], 0); /* no overlap */
            used[t[i].can_id][t[i].byte_offset + b] = 1;
        }
        if (t[i].can_id == 0x351 && t[i].byte_offset == 0)
            CHECK_EQ_INT(t[i].nan_policy, VICTRON_NAN_WITHHOLD);
        /* The charge limits (CVL, CCL, DCL) round down; everything else to nearest. */
        CHECK_EQ_INT(t[i].rounding, t[i].can_id == 0x351 && t[i].byte_offset < 6 ? VICTRON_ROUND_DOWN
                                                                                 : VICTRON_ROUND_NEAREST);
    }
    CHECK_EQ_INT(victron_field_raw(NULL, 1.0), 0);
    CHECK_EQ_INT(victron_field_raw(&t[0], NAN), 0);
}

/* ---- 0x35A ---- */

static void alarms_frame(const struct bms_live_data *live, const struct bms_event_log *log,
                         bool online, struct victron_alarm_state *st, struct victron_frame *fr)
{
    struct victron_alarm_thresholds t;
    victron_alarm_thresholds_defaults(&t, 0);
    CHECK_EQ_INT(victron_alarms_from_bms(live, log, &t, online, st), GW_OK);
    CHECK_EQ_INT(victron_encode_alarms(st, fr), GW_OK);
}

static void test_alarm_bits(void)
{
    struct victron_alarm_state st;
    memset(&st, 0, sizeof st);
    struct victron_frame fr;
    /* Nothing supported, offline: only byte 7 = 0x04. */
    CHECK_EQ_INT(victron_encode_alarms(&st, &fr), GW_OK);
    static const uint8_t none[8] = { 0, 0, 0, 0, 0, 0, 0, 0x04 };
    expect_frame(&fr, 0x35A, 8, none);
    /* Each flag active: lower bit of its pair. */
    for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++) {
        memset(&st, 0, sizeof st);
        st.online = true;
        st.alarm[f] = VICTRON_FLAG_ACTIVE;
        st.warning[f] = VICTRON_FLAG_OK;
        CHECK_EQ_INT(victron_encode_alarms(&st, &fr), GW_OK);
        CHECK_EQ_INT(fr.data[f / 4], 0x01u << (2 * (f % 4)));
        CHECK_EQ_INT(fr.data[4 + f / 4] & ~(f / 4 == 3 ? 0x0Cu : 0u), 0x02u << (2 * (f % 4)));
    }
    CHECK_EQ_INT(victron_encode_alarms(NULL, &fr), GW_ERR_INVAL);
}

static void test_alarms_from_values(void)
{
    struct bms_live_data d;
    struct victron_alarm_state st;
    struct victron_frame fr;

    /* High cell: warning at 3.60, alarm at 3.65 (defaults = BMS cutoff). */
    sample_live(&d);
    d.cell_mv_x10[4] = 36100;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_VOLTAGE], VICTRON_FLAG_OK);
    CHECK_EQ_INT(st.warning[VICTRON_FLAG_HIGH_VOLTAGE], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.warning[VICTRON_FLAG_GENERAL], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_GENERAL], VICTRON_FLAG_OK);
    CHECK_EQ_INT(fr.data[4], 0x01 | 0x04 | 0x20 | 0x80);
    d.cell_mv_x10[4] = 36500;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_VOLTAGE], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(fr.data[0], 0x01 | 0x04 | 0x20 | 0x80);

    /* Low cell. */
    sample_live(&d);
    d.cell_mv_x10[0] = 28000;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_LOW_VOLTAGE], VICTRON_FLAG_ACTIVE);

    /* Temperatures; "while charging" only while charging. */
    sample_live(&d);
    d.temp_dc[BMS_TEMP_EXT1] = 560;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(st.warning[VICTRON_FLAG_HIGH_TEMP], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_TEMP], VICTRON_FLAG_OK);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_TEMP_CHARGE], VICTRON_FLAG_ACTIVE);
    d.pack_current_a = -10.0f;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_TEMP_CHARGE], VICTRON_FLAG_OK);
    CHECK_EQ_INT(st.warning[VICTRON_FLAG_HIGH_TEMP_CHARGE], VICTRON_FLAG_OK);
    sample_live(&d);
    d.temp_dc[BMS_TEMP_EXT2] = -5;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_LOW_TEMP_CHARGE], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_LOW_TEMP], VICTRON_FLAG_OK);
    d.temp_dc[BMS_TEMP_EXT2] = -250;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_LOW_TEMP], VICTRON_FLAG_ACTIVE);

    /* Currents. */
    sample_live(&d);
    d.pack_current_a = -190.0f;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(st.warning[VICTRON_FLAG_HIGH_DISCHARGE_CURRENT], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_DISCHARGE_CURRENT], VICTRON_FLAG_OK);
    d.pack_current_a = 151.0f;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_CHARGE_CURRENT], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_DISCHARGE_CURRENT], VICTRON_FLAG_OK);

    /* Imbalance: warning at 100 mV, alarm at 200 mV. */
    sample_live(&d);
    d.cell_spread_mv_x10 = 1500;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(fr.data[7], 0x01 | 0x08);
    CHECK_EQ_INT(fr.data[3], 0x02);
    d.cell_spread_mv_x10 = 2500;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(fr.data[3], 0x01);
    CHECK_EQ_INT(fr.data[0] & 0x03, 0x01); /* general alarm */

    /* BMS fault -> BMS internal. */
    sample_live(&d);
    d.online_status = BMS_STATUS_FAULT;
    alarms_frame(&d, NULL, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_BMS_INTERNAL], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(fr.data[2] >> 6, 0x01);

    /* Offline: byte 7 offline code, general alarm, other flags still OK. */
    sample_live(&d);
    alarms_frame(&d, NULL, false, &st, &fr);
    static const uint8_t off[8] = { 0xa9, 0xaa, 0xaa, 0x02, 0xaa, 0xaa, 0xaa, 0x06 };
    expect_frame(&fr, 0x35A, 8, off);
    d.valid = false;
    alarms_frame(&d, NULL, true, &st, &fr);
    expect_frame(&fr, 0x35A, 8, off);

    struct victron_alarm_thresholds t;
    victron_alarm_thresholds_defaults(&t, 0);
    CHECK_EQ_INT(victron_alarms_from_bms(NULL, NULL, &t, true, &st), GW_ERR_INVAL);
    CHECK_EQ_INT(victron_alarms_from_bms(&d, NULL, NULL, true, &st), GW_ERR_INVAL);
}

static void add_event(struct bms_event_log *log, uint32_t ts, uint8_t id)
{
    log->valid = true;
    log->events[log->count].timestamp_s = ts;
    log->events[log->count].id = id;
    log->count++;
}

static void test_alarms_from_events(void)
{
    struct bms_live_data d;
    struct victron_alarm_state st;
    struct victron_frame fr;
    struct bms_event_log log;
    sample_live(&d); /* lifetime 100000 s */

    memset(&log, 0, sizeof log);
    add_event(&log, 99990, 0x03); /* over-voltage cutoff 10 s ago */
    alarms_frame(&d, &log, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_VOLTAGE], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_GENERAL], VICTRON_FLAG_ACTIVE);
    add_event(&log, 99995, 0x79); /* recovered */
    alarms_frame(&d, &log, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_VOLTAGE], VICTRON_FLAG_OK);

    memset(&log, 0, sizeof log);
    add_event(&log, 90000, 0x03); /* too old: beyond the hold time */
    alarms_frame(&d, &log, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_VOLTAGE], VICTRON_FLAG_OK);

    memset(&log, 0, sizeof log);
    add_event(&log, 99999, 0x05);
    add_event(&log, 99998, 0x0C);
    add_event(&log, 99997, 0x0E);
    add_event(&log, 99996, 0x02);
    add_event(&log, 99995, 0x37);
    alarms_frame(&d, &log, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_DISCHARGE_CURRENT], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_SHORT_CIRCUIT], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_CONTACTOR], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_BMS_INTERNAL], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_LOW_VOLTAGE], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_LOW_TEMP_CHARGE], VICTRON_FLAG_ACTIVE);
    CHECK_EQ_INT(fr.data[2], 0x02 | 0x04 | 0x10 | 0x40); /* charge current OK, rest active */
    /* Information events change nothing. */
    memset(&log, 0, sizeof log);
    add_event(&log, 99999, 0x61);
    add_event(&log, 99999, 0x63);
    alarms_frame(&d, &log, true, &st, &fr);
    static const uint8_t ok[8] = { 0xaa, 0xaa, 0xaa, 0x02, 0xaa, 0xaa, 0xaa, 0x0a };
    expect_frame(&fr, 0x35A, 8, ok);
    /* 24-bit wrap of the BMS lifetime counter. */
    d.lifetime_s = 0x1000005;
    memset(&log, 0, sizeof log);
    add_event(&log, 0xFFFFF0, 0x04);
    alarms_frame(&d, &log, true, &st, &fr);
    CHECK_EQ_INT(st.alarm[VICTRON_FLAG_HIGH_TEMP], VICTRON_FLAG_ACTIVE);
}

static void test_thresholds_from_settings(void)
{
    struct victron_alarm_thresholds t;
    victron_alarm_thresholds_defaults(&t, 0);
    struct bms_settings s;
    memset(&s, 0, sizeof s);
    s.valid = true;
    s.raw[315 - 300] = 3600;
    s.raw[316 - 300] = 2500;
    s.raw[317 - 300] = 100;
    s.raw[318 - 300] = 9999; /* out of range: ignored */
    s.raw[319 - 300] = 50;
    s.raw[320 - 300] = (uint16_t)(int16_t)-5;
    s.present_mask = (1ull << 15) | (1ull << 16) | (1ull << 17) | (1ull << 18) | (1ull << 19) |
                     (1ull << 20);
    apply_settings(&t, &s);
    CHECK_NEAR(t.cell_high_alarm_v, 3.60, 1e-6);
    CHECK_NEAR(t.cell_high_warn_v, 3.55, 1e-6);
    CHECK_NEAR(t.cell_low_alarm_v, 2.50, 1e-6);
    CHECK_NEAR(t.cell_low_warn_v, 2.60, 1e-6);
    CHECK_NEAR(t.discharge_current_alarm_a, 100, 1e-6);
    CHECK_NEAR(t.discharge_current_warn_a, 90, 1e-4);
    CHECK_NEAR(t.charge_current_alarm_a, 150, 1e-6);
    CHECK_NEAR(t.temp_high_alarm_c, 50, 1e-6);
    CHECK_NEAR(t.temp_high_warn_c, 45, 1e-6);
    CHECK_NEAR(t.charge_temp_low_alarm_c, -5, 1e-6);
    CHECK_NEAR(t.charge_temp_low_warn_c, -2, 1e-6);
    /* Absent registers change nothing. */
    struct victron_alarm_thresholds before = t;
    s.present_mask = 0;
    apply_settings(&t, &s);
    CHECK_MEM(&t, &before, sizeof t);
    victron_alarm_thresholds_apply_limits(&t, NULL);
    CHECK_MEM(&t, &before, sizeof t);
    victron_alarm_thresholds_defaults(&t, 1);
    CHECK_NEAR(t.cell_high_alarm_v, 4.20, 1e-6);
}

TEST_MAIN(TEST_CASE(test_golden_candump), TEST_CASE(test_identity_frames),
          TEST_CASE(test_live_extras), TEST_CASE(test_limits_round_down), TEST_CASE(test_edge_values),
          TEST_CASE(test_inputs_init_is_nothing_known), TEST_CASE(test_encode_all),
          TEST_CASE(test_frame_roles),
          TEST_CASE(test_table_consistent), TEST_CASE(test_alarm_bits),
          TEST_CASE(test_alarms_from_values), TEST_CASE(test_alarms_from_events),
          TEST_CASE(test_thresholds_from_settings))
