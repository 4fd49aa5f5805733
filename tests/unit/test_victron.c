/* Victron encoder: golden frames from the spec's candump, edge values, strings, 0x35A flags. */
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
    struct bms_live_data live;
    struct victron_identity identity;
    struct victron_alarm_state alarms;
    struct victron_alarm_thresholds thr;
    struct victron_inputs in;
};

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    sample_live(&f->live);
    sample_identity(&f->identity);
    victron_alarm_thresholds_defaults(&f->thr, 0);
    CHECK_EQ_INT(victron_alarms_from_bms(&f->live, NULL, &f->thr, true, &f->alarms), GW_OK);
    f->in.live = &f->live;
    f->in.alarms = &f->alarms;
    f->in.identity = &f->identity;
    f->in.cvl_v = 58.1f;
    f->in.ccl_a = 110.0f;
    f->in.dcl_a = 110.0f;
    f->in.discharge_v = 0.0f;
    f->in.modules = victron_modules_single(true, 110.0f, 110.0f);
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
    strcpy(f.identity.battery_name, "ABCDEFGHIJKLMNOP");
    CHECK_EQ_INT(victron_encode_frame(0x371, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x371, 8, (const uint8_t *)"IJKLMNOP");
    strcpy(f.identity.manufacturer, "Ene\xc3\xa9q");
    CHECK_EQ_INT(victron_encode_frame(0x35E, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x35E, 8, (const uint8_t *)"Ene??q\0\0");
    /* Unterminated string in its array: bounded by the array size. */
    memset(f.identity.family, 'Z', sizeof f.identity.family);
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
    f.in.modules = victron_modules_single(true, 0.0f, NAN);
    CHECK_EQ_INT(victron_encode_frame(0x372, &f.in, &fr), GW_OK);
    static const uint8_t g372b[8] = { 1, 0, 1, 0, 1, 0, 0, 0 };
    expect_frame(&fr, 0x372, 8, g372b);
    f.in.modules = victron_modules_single(false, 10.0f, 10.0f);
    CHECK_EQ_INT(victron_encode_frame(0x372, &f.in, &fr), GW_OK);
    static const uint8_t g372c[8] = { 0, 0, 0, 0, 0, 0, 1, 0 };
    expect_frame(&fr, 0x372, 8, g372c);

    /* 0x373: 3550 / 3552 mV; coldest cell sensor 25.0 degC = 298 K, hottest 31.8 = 305 K. */
    CHECK_EQ_INT(victron_encode_frame(0x373, &f.in, &fr), GW_OK);
    static const uint8_t g373[8] = { 0xde, 0x0d, 0xe0, 0x0d, 0x2a, 0x01, 0x31, 0x01 };
    expect_frame(&fr, 0x373, 8, g373);

    f.live.min_cell_index = 3;
    f.live.max_cell_index = 12;
    CHECK_EQ_INT(victron_encode_frame(0x374, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x374, 8, (const uint8_t *)"C3\0\0\0\0\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x375, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x375, 8, (const uint8_t *)"C12\0\0\0\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x376, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x376, 8, (const uint8_t *)"T2\0\0\0\0\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x377, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x377, 8, (const uint8_t *)"T1\0\0\0\0\0\0");
    f.live.min_cell_index = 0; /* unknown: all zero */
    CHECK_EQ_INT(victron_encode_frame(0x374, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x374, 8, (const uint8_t *)"\0\0\0\0\0\0\0\0");

    /* Only the BMS board sensor: it is the battery temperature, id "BMS". */
    f.live.temp_present[BMS_TEMP_EXT1] = false;
    f.live.temp_present[BMS_TEMP_EXT2] = false;
    CHECK_EQ_INT(victron_encode_frame(0x377, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x377, 8, (const uint8_t *)"BMS\0\0\0\0\0");
    CHECK_EQ_INT(victron_encode_frame(0x356, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(fr.data[4] | fr.data[5] << 8, 290);

    /* No temperature at all: 0x356 and 0x373 are shortened to DLC 4, ids are empty. */
    f.live.temp_present[BMS_TEMP_INTERNAL] = false;
    CHECK_EQ_INT(victron_encode_frame(0x356, &f.in, &fr), GW_OK);
    static const uint8_t g356s[8] = { 0x31, 0x16, 0xce, 0x00, 0, 0, 0, 0 };
    expect_frame(&fr, 0x356, 4, g356s);
    CHECK_EQ_INT(victron_encode_frame(0x373, &f.in, &fr), GW_OK);
    static const uint8_t g373s[8] = { 0xde, 0x0d, 0xe0, 0x0d, 0, 0, 0, 0 };
    expect_frame(&fr, 0x373, 4, g373s);
    CHECK_EQ_INT(victron_encode_frame(0x376, &f.in, &fr), GW_OK);
    expect_frame(&fr, 0x376, 8, (const uint8_t *)"\0\0\0\0\0\0\0\0");

    /* SOH unknown -> 100 %. */
    f.live.soh_valid = false;
    CHECK_EQ_INT(victron_encode_frame(0x355, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(fr.data[2], 100);
}

static uint16_t u16_at(const struct victron_frame *fr, unsigned off)
{
    return (uint16_t)(fr->data[off] | fr->data[off + 1] << 8);
}

/* Edge values: (id, offset) raw after encoding one input. */
static void test_edge_values(void)
{
    struct fixture f;
    struct victron_frame fr;

    struct {
        float cvl, ccl, dcl;
        uint16_t raw_cvl, raw_ccl, raw_dcl;
    } limits[] = {
        { 58.05f, 0.05f, 0.04f, 581, 1, 0 },         /* .05 rounds up, .04 down */
        { 58.04f, 110.05f, 99.95f, 580, 1101, 1000 },
        { 7000.0f, 5000.0f, 1e30f, 65535, 32767, 32767 }, /* saturation */
        { 0.1f, -5.0f, -0.01f, 1, 0, 0 },            /* sent as positive numbers */
        { 58.1f, NAN, INFINITY, 581, 0, 0 },         /* NaN/inf -> 0 */
        { 58.1f, -INFINITY, NAN, 581, 0, 0 },
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        fixture_init(&f);
        f.in.cvl_v = limits[i].cvl;
        f.in.ccl_a = limits[i].ccl;
        f.in.dcl_a = limits[i].dcl;
        CHECK_EQ_INT(victron_encode_frame(0x351, &f.in, &fr), GW_OK);
        CHECK_EQ_INT(u16_at(&fr, 0), limits[i].raw_cvl);
        CHECK_EQ_INT(u16_at(&fr, 2), limits[i].raw_ccl);
        CHECK_EQ_INT(u16_at(&fr, 4), limits[i].raw_dcl);
    }

    /* CVL never 0: NaN, inf, 0, negative and tiny CVL withhold 0x351. */
    const float bad_cvl[] = { NAN, INFINITY, -INFINITY, 0.0f, -1.0f, 0.04f };
    for (size_t i = 0; i < sizeof bad_cvl / sizeof bad_cvl[0]; i++) {
        fixture_init(&f);
        f.in.cvl_v = bad_cvl[i];
        memset(&fr, 0x55, sizeof fr);
        CHECK_EQ_INT(victron_encode_frame(0x351, &f.in, &fr), GW_ERR_RANGE);
        CHECK_EQ_INT(fr.id, 0);
        CHECK_EQ_INT(fr.dlc, 0);
    }

    struct {
        float v, a;
        int16_t t_dc;
        int16_t raw_v, raw_a, raw_t;
    } meas[] = {
        { 56.81f, -20.6f, -400, 5681, -206, -400 },     /* discharge, -40 degC */
        { 48.005f, -0.05f, -1, 4801, -1, -1 },          /* half away from zero */
        { 400.0f, -5000.0f, 0, 32767, -32768, 0 },      /* saturation */
        { -3.0f, 3276.8f, 850, 0, 32767, 850 },         /* negative voltage -> 0 */
    };
    for (size_t i = 0; i < sizeof meas / sizeof meas[0]; i++) {
        fixture_init(&f);
        f.live.pack_voltage_v = meas[i].v;
        f.live.pack_current_a = meas[i].a;
        f.live.temp_present[BMS_TEMP_EXT2] = false;
        f.live.temp_dc[BMS_TEMP_EXT1] = meas[i].t_dc;
        CHECK_EQ_INT(victron_encode_frame(0x356, &f.in, &fr), GW_OK);
        CHECK_EQ_INT((int16_t)u16_at(&fr, 0), meas[i].raw_v);
        CHECK_EQ_INT((int16_t)u16_at(&fr, 2), meas[i].raw_a);
        CHECK_EQ_INT((int16_t)u16_at(&fr, 4), meas[i].raw_t);
    }
    /* -40 degC in 0x373 = 233.15 K -> 233. */
    fixture_init(&f);
    f.live.temp_dc[BMS_TEMP_EXT1] = -400;
    CHECK_EQ_INT(victron_encode_frame(0x373, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(u16_at(&fr, 4), 233);

    /* NaN voltage or current withholds 0x356 (shared voltage sense must not see a guess). */
    fixture_init(&f);
    f.live.pack_voltage_v = NAN;
    CHECK_EQ_INT(victron_encode_frame(0x356, &f.in, &fr), GW_ERR_RANGE);
    fixture_init(&f);
    f.live.pack_current_a = -INFINITY;
    CHECK_EQ_INT(victron_encode_frame(0x356, &f.in, &fr), GW_ERR_RANGE);

    /* SOC: 89.5 -> 90 (hi-res 8950); 100 % exactly; SOC above 100 saturates. */
    fixture_init(&f);
    f.live.soc_ppm = 89500000u;
    CHECK_EQ_INT(victron_encode_frame(0x355, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(u16_at(&fr, 0), 90);
    CHECK_EQ_INT(u16_at(&fr, 4), 8950);
    f.live.soc_ppm = 150000000u;
    CHECK_EQ_INT(victron_encode_frame(0x355, &f.in, &fr), GW_OK);
    CHECK_EQ_INT(u16_at(&fr, 0), 100);
    CHECK_EQ_INT(u16_at(&fr, 4), 10000);

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
    struct victron_inputs idonly = { .identity = &f.identity };
    CHECK_EQ_INT(victron_encode_set(VICTRON_SET_IDENTITY, &idonly, frames, VICTRON_MAX_FRAMES, &n),
                 GW_OK);
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
    CHECK_EQ_INT(victron_encode_set(VICTRON_SET_LIVE, &idonly, frames, VICTRON_MAX_FRAMES, &n),
                 GW_ERR_INVAL);
    struct victron_frame fr;
    CHECK_EQ_INT(victron_encode_frame(0x123, &f.in, &fr), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(victron_encode_frame(0x35E, &idonly, &fr), GW_OK);
    CHECK_EQ_INT(victron_encode_frame(0x373, &idonly, &fr), GW_ERR_INVAL);
    CHECK_EQ_INT(victron_encode_frame(0x35A, &idonly, &fr), GW_ERR_INVAL);
    CHECK(victron_find_frame(NULL, 3, 0x351) == NULL);
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
          TEST_CASE(test_live_extras), TEST_CASE(test_edge_values), TEST_CASE(test_encode_all),
          TEST_CASE(test_table_consistent), TEST_CASE(test_alarm_bits),
          TEST_CASE(test_alarms_from_values), TEST_CASE(test_alarms_from_events),
          TEST_CASE(test_thresholds_from_settings))
