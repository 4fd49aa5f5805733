#include "app_events.h"
#include "bms_data.h"
#include "gw_config.h"
#include "gw_error.h"
#include "test.h"

static void test_strerror_covers_codes(void)
{
    for (int e = GW_ERR_OVERFLOW; e <= GW_OK; e++)
        CHECK(strcmp(gw_strerror(e), "unknown error") != 0);
    CHECK_STR(gw_strerror(12345), "unknown error");
}

static void test_status_names(void)
{
    CHECK_STR(bms_online_status_name(0x91), "charging");
    CHECK_STR(bms_online_status_name(0x9B), "fault");
    CHECK_STR(bms_online_status_name(0x42), "unknown");
}

static void test_temp_extremes_skip_absent_sensors(void)
{
    struct bms_live_data d = { 0 };
    int16_t t;
    CHECK(!bms_temp_max_dc(&d, &t));
    d.temp_present[0] = true;
    d.temp_dc[0] = 250;
    d.temp_present[2] = true;
    d.temp_dc[2] = -15;
    d.temp_dc[1] = 999; /* absent: ignored */
    CHECK(bms_temp_max_dc(&d, &t));
    CHECK_EQ_INT(t, 250);
    CHECK(bms_temp_min_dc(&d, &t));
    CHECK_EQ_INT(t, -15);
}

static void test_defaults_are_coherent(void)
{
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 1000);
    CHECK(cfg.charge.float_cell_v < cfg.charge.target_cell_v);
    CHECK(cfg.charge.target_cell_v < cfg.charge.cell_limit_v);
    CHECK_STR(cfg.mqtt.topic_prefix, "tinybms");
    CHECK_EQ_INT(cfg.history.period_s, 5);
    gw_config_charge_defaults(&cfg.charge, GW_CHEM_NMC);
    CHECK(cfg.charge.float_cell_v < cfg.charge.target_cell_v);
}

static void test_event_names(void)
{
    CHECK_STR(app_event_name(EVENT_BMS_DATA_UPDATE), "bms_data_update");
    CHECK_STR(app_event_name(EVENT_COUNT), "unknown");
    for (int i = 0; i < EVENT_COUNT; i++)
        CHECK(strcmp(app_event_name(i), "unknown") != 0);
}

TEST_MAIN(TEST_CASE(test_strerror_covers_codes), TEST_CASE(test_status_names),
          TEST_CASE(test_temp_extremes_skip_absent_sensors),
          TEST_CASE(test_defaults_are_coherent), TEST_CASE(test_event_names))
