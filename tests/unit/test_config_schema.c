/* gw_config_field_info: the field table as the web's schema reads it (type, unit from the name,
 * range, enum values, flags), every index, and bad arguments. */
#define _POSIX_C_SOURCE 200809L
#include "config_internal.h"
#include "config_manager.h"
#include "gw_error.h"
#include "test.h"

#include <string.h>

static const struct gw_config_field_info *find(struct gw_config_field_info *buf, const char *section,
                                                const char *name)
{
    for (size_t i = 0; i < gw_config_field_count(); i++)
        if (gw_config_field_info(i, buf) == GW_OK && !strcmp(buf->section, section) && !strcmp(buf->name, name))
            return buf;
    return NULL;
}

static void test_every_field_as_the_table_has_it(void)
{
    CHECK_EQ_INT((int)gw_config_field_count(), (int)config__field_count);
    CHECK(gw_config_field_count() > 50);
    for (size_t i = 0; i < gw_config_field_count(); i++) {
        const struct config_field *f = &config__fields[i];
        struct gw_config_field_info fi;
        CHECK_EQ_INT(gw_config_field_info(i, &fi), GW_OK);
        CHECK_STR(fi.section, f->section);
        CHECK_STR(fi.name, f->name);
        CHECK(strcmp(fi.type, "unknown") != 0);
        CHECK(fi.restart == ((f->flags & CFG_F_RESTART) != 0));
        CHECK(fi.secret == ((f->flags & CFG_F_SECRET) != 0));
        CHECK(fi.storage_only == ((f->flags & CFG_F_HASH) != 0));
        if (f->kind == CFG_STRING) {
            CHECK_EQ_INT((int)fi.max_length, (int)f->size - 1);
            CHECK(!fi.has_range);
        } else if (f->kind == CFG_BOOL || f->kind == CFG_ENUM) {
            CHECK(!fi.has_range);
        } else {
            CHECK(fi.has_range);
            CHECK(fi.min == f->min && fi.max == f->max && fi.min <= fi.max);
        }
        if (f->kind == CFG_ENUM) {
            CHECK(fi.value_count == f->name_count && fi.value_count > 0);
            CHECK(fi.values == f->names);
        } else {
            CHECK(fi.values == NULL && fi.value_count == 0);
        }
        /* A threshold's value and a curve's x always have a unit (the names do not say it). */
        if (f->kind == CFG_THRESHOLD || f->kind == CFG_CURVE)
            CHECK(fi.unit[0] != '\0');
    }
}

static void test_units_from_the_names(void)
{
    static const struct {
        const char *section, *name, *unit;
    } cases[] = {
        { "bms", "poll_interval_ms", "ms" },        { "bms", "slow_poll_interval_s", "s" },
        { "bms", "soc_full_percent", "%" },         { "charge", "target_cell_v", "V" },
        { "charge", "max_charge_a", "A" },          { "charge", "absorb_spread_mv", "mV" },
        { "charge", "increase_ramp_a_per_s", "A/s" }, { "charge", "float_ramp_mv_per_cell_s", "mV/cell/s" },
        { "battery", "rejoin_max_dv", "V" },        { "history", "retention_days", "days" },
        { "can", "bitrate", "bit/s" },              { "alerts", "temp_high", "°C" },
        { "alerts", "cell_imbalance", "mV" },       { "charge", "charge_by_soc", "%" },
        { "bms", "uart_device", "" },               { "can", "model_id", "" },
        { "update", "pause_charge_on_switch", "" }, { "network", "wifi_ssid", "" },
    };
    struct gw_config_field_info fi;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct gw_config_field_info *f = find(&fi, cases[i].section, cases[i].name);
        CHECK(f != NULL);
        if (f)
            CHECK_STR(f->unit, cases[i].unit);
    }
    const struct gw_config_field_info *f = find(&fi, "bms", "poll_interval_ms");
    CHECK(f && !strcmp(f->type, "integer") && f->min == 100 && f->max == 10000 && !f->restart);
    f = find(&fi, "alerts", "cell_v_high");
    CHECK(f && !strcmp(f->type, "threshold") && f->aux == 1);
    f = find(&fi, "web", "password_hash");
    CHECK(f && f->storage_only);
}

static void test_bad_arguments(void)
{
    struct gw_config_field_info fi;
    memset(&fi, 0x5A, sizeof fi);
    CHECK_EQ_INT(gw_config_field_info(gw_config_field_count(), &fi), GW_ERR_INVAL);
    CHECK(fi.section == NULL && fi.name == NULL && fi.type == NULL && !fi.has_range);
    CHECK_EQ_INT(gw_config_field_info((size_t)-1, &fi), GW_ERR_INVAL);
    CHECK_EQ_INT(gw_config_field_info(0, NULL), GW_ERR_INVAL);
}

TEST_MAIN(TEST_CASE(test_every_field_as_the_table_has_it), TEST_CASE(test_units_from_the_names),
          TEST_CASE(test_bad_arguments))
