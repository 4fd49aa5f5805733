/* The pure part of the D-Bus battery service, without a bus: the path table, the paths and nodes
 * of each kind of service, values from a battery view (limits exactly as CAN 0x351 rounds them),
 * the stale rule, texts, deadbands and change detection, strings made valid UTF-8. */
#include "test.h"

#include "dbus_model.h"
#include "gw_error.h"
#include "victron.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct dbus_identity ident(void)
{
    struct dbus_identity id;
    memset(&id, 0, sizeof id);
    id.device_instance = 7;
    id.product_id = 0xFFFF;
    strcpy(id.process_name, "tinybms-gw");
    strcpy(id.process_version, "0.1.0");
    strcpy(id.connection, "Serial /dev/ttyUSB0");
    strcpy(id.product_name, "TinyBMS");
    return id;
}

/* One online pack of 16 cells, 53.12 V, +25 A, limits 55.3 / 99.99 / 150 A. */
static void make_view(struct battery_view *v, unsigned packs)
{
    memset(v, 0, sizeof *v);
    v->seq = 1;
    v->timestamp_ms = 1000;
    v->pack_count = (uint8_t)packs;
    v->online_count = (uint8_t)packs;
    v->voltage_v = 53.1234f;
    v->current_a = 25.04f;
    v->power_w = 53.1234f * 25.04f;
    v->soc_pct = 55.55f;
    v->soh_valid = true;
    v->soh_pct = 98.0f;
    v->capacity_ah = 280.0f * packs;
    v->installed_capacity_ah = 280.0f * packs;
    v->time_left_s = 3600;
    v->cell_count = 16;
    v->min_cell_v = 3.301f;
    v->max_cell_v = 3.325f;
    strcpy(v->min_cell.name, "C3");
    strcpy(v->max_cell.name, "C9");
    v->have_temp = true;
    v->temp_min_c = 21.0f;
    v->temp_max_c = 23.46f;
    strcpy(v->min_temp.name, "T1");
    strcpy(v->max_temp.name, "T1");
    v->modules.ok = (uint16_t)packs;
    v->energy_in_wh = 12345.0;
    v->energy_out_wh = 6789.0;
    v->limits.valid = true;
    v->limits.cvl_v = 55.3f;   /* stored as 55.2999992: CAN sends 553 */
    v->limits.ccl_a = 99.99f;  /* CAN rounds down: 999 */
    v->limits.dcl_a = 150.0f;
    v->limits.discharge_v = 46.4f;
    for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++)
        v->alarms.alarm[f] = v->alarms.warning[f] = VICTRON_FLAG_OK;
    v->alarms.alarm[VICTRON_FLAG_CONTACTOR] = v->alarms.warning[VICTRON_FLAG_CONTACTOR] = VICTRON_FLAG_NOT_SUPPORTED;
    v->alarms.warning[VICTRON_FLAG_HIGH_TEMP] = VICTRON_FLAG_ACTIVE;
    v->alarms.alarm[VICTRON_FLAG_CELL_IMBALANCE] = VICTRON_FLAG_ACTIVE;
    for (unsigned k = 0; k < packs; k++) {
        struct battery_pack *p = &v->packs[k];
        p->id = (uint8_t)k;
        snprintf(p->name, sizeof p->name, "pack %u", k + 1);
        p->state = BATTERY_PACK_ONLINE;
        p->capacity_ah = 280.0f;
        p->soc_pct = 55.55f;
        p->charge_allowed = p->discharge_allowed = true;
        p->alarms = v->alarms;
        struct bms_live_data *d = &p->live;
        d->battery_id = (uint8_t)k;
        d->valid = true;
        d->cell_count = 16;
        for (unsigned c = 0; c < 16; c++)
            d->cell_mv_x10[c] = (uint16_t)(33010 + c * 10);
        d->min_cell_mv = 3301;
        d->max_cell_mv = 3316;
        d->min_cell_index = 1;
        d->max_cell_index = 16;
        d->cell_spread_mv_x10 = 150;
        d->pack_voltage_v = 53.1234f;
        d->pack_current_a = 25.04f;
        d->temp_dc[BMS_TEMP_INTERNAL] = 300;
        d->temp_present[BMS_TEMP_INTERNAL] = true;
        d->temp_dc[BMS_TEMP_EXT1] = 235;
        d->temp_present[BMS_TEMP_EXT1] = true;
        d->soc_ppm = 55550000;
        d->soh_raw = 49000;
        d->soh_valid = true;
        d->balancing_active = k == 0 ? 0x4 : 0;
    }
}

static bool valid_object_path(const char *p)
{
    if (p[0] != '/' || p[1] == '\0')
        return false;
    for (const char *c = p + 1; *c; c++) {
        bool ok = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' ||
                  *c == '/';
        if (!ok || (*c == '/' && (c[-1] == '/' || c[1] == '\0')))
            return false;
    }
    return true;
}

static void test_table_paths_unique_and_valid(void)
{
    size_t n;
    const struct dbus_row *t = dbus_model_table(&n);
    CHECK(n > 60);
    for (size_t k = 0; k < n; k++) {
        CHECK(valid_object_path(t[k].path));
        CHECK(strlen(t[k].path) < DBUS_PATH_MAX);
        CHECK(t[k].get != NULL);
        CHECK(t[k].kind >= DBUS_V_DOUBLE && t[k].kind <= DBUS_V_STRING);
        CHECK(t[k].description != NULL);
        for (size_t j = 0; j < k; j++)
            CHECK(strcmp(t[k].path, t[j].path) != 0);
        if (strncmp(t[k].path, "/Info/", 6) == 0) {
            CHECK(t[k].flags & DBUS_F_LIVE);          /* limits: invalid when not fresh */
            CHECK_EQ_INT(t[k].scope, DBUS_SCOPE_BMS); /* only the bank is a BMS */
            CHECK(t[k].deadband == 0.0);              /* every limit change goes out */
        }
        if (strncmp(t[k].path, "/Dc/0/", 6) == 0)
            CHECK(t[k].flags & DBUS_F_LIVE);
        if (strncmp(t[k].path, "/Alarms/", 8) == 0)
            CHECK_EQ_INT(t[k].kind, DBUS_V_INT);
    }
}

static bool has(const struct dbus_model *m, const char *path) { return dbus_model_find(m, path) >= 0; }

static void test_model_paths_per_service_kind(void)
{
    static const char *mandatory[] = { "/Mgmt/ProcessName", "/Mgmt/ProcessVersion", "/Mgmt/Connection",
                                       "/DeviceInstance", "/ProductId", "/ProductName", "/FirmwareVersion",
                                       "/HardwareVersion", "/Connected", "/CustomName", "/Serial" };
    struct dbus_model *m = malloc(sizeof *m);
    struct dbus_model_config bank1 = { .bms = true, .one_pack = true, .cell_count = 16 };
    CHECK_EQ_INT(dbus_model_init(m, &bank1), GW_OK);
    for (size_t k = 0; k < sizeof mandatory / sizeof mandatory[0]; k++)
        CHECK(has(m, mandatory[k]));
    CHECK(has(m, "/Info/MaxChargeVoltage") && has(m, "/Info/BatteryLowVoltage"));
    CHECK(has(m, "/Voltages/Cell16") && has(m, "/History/ChargeCycles") && has(m, "/History/ChargedEnergy"));
    CHECK(!has(m, "/Voltages/Cell17") && !has(m, "/Nope") && !has(m, "/Dc"));
    for (unsigned k = 0; k < m->count; k++)
        CHECK_EQ_INT(m->values[k].kind, DBUS_V_INVALID); /* nothing known before a view */
    /* Nodes: "/" first, every prefix of every leaf, nothing else. */
    CHECK_STR(m->nodes[0], "/");
    CHECK(dbus_model_find_node(m, "/Dc") > 0 && dbus_model_find_node(m, "/Dc/0") > 0);
    CHECK(dbus_model_find_node(m, "/Info") > 0 && dbus_model_find_node(m, "/Voltages") > 0);
    CHECK(dbus_model_find_node(m, "/Soc") < 0 && dbus_model_find_node(m, "/Dc/1") < 0);
    for (unsigned k = 0; k < m->count; k++) {
        char prefix[DBUS_PATH_MAX];
        strcpy(prefix, m->rows[k]->path);
        for (char *s = strrchr(prefix, '/'); s && s != prefix; s = strrchr(prefix, '/')) {
            *s = '\0';
            CHECK(dbus_model_find_node(m, prefix) > 0);
        }
    }

    struct dbus_model_config four_cells = { .bms = true, .one_pack = true, .cell_count = 4 };
    CHECK_EQ_INT(dbus_model_init(m, &four_cells), GW_OK);
    CHECK(has(m, "/Voltages/Cell4") && !has(m, "/Voltages/Cell5"));

    struct dbus_model_config bank4 = { .bms = true, .one_pack = false };
    CHECK_EQ_INT(dbus_model_init(m, &bank4), GW_OK);
    CHECK(has(m, "/Info/MaxChargeCurrent") && !has(m, "/Voltages/Cell1") && !has(m, "/History/ChargeCycles"));
    CHECK(has(m, "/History/DischargedEnergy") && has(m, "/System/NrOfModulesOnline"));

    struct dbus_model_config pack = { .bms = false, .one_pack = true, .cell_count = 16 };
    CHECK_EQ_INT(dbus_model_init(m, &pack), GW_OK);
    CHECK(!has(m, "/Info/MaxChargeVoltage") && dbus_model_find_node(m, "/Info") < 0); /* never a BMS */
    CHECK(has(m, "/Voltages/Cell1") && has(m, "/Dc/0/Voltage") && !has(m, "/History/ChargedEnergy"));
    CHECK_EQ_INT(dbus_model_init(NULL, &pack), GW_ERR_INVAL);
    free(m);
}

struct names {
    char list[32][DBUS_PATH_MAX];
    unsigned n;
};

static void collect(const char *name, void *ctx)
{
    struct names *x = ctx;
    if (x->n < 32)
        strcpy(x->list[x->n++], name);
}

static void test_children_and_relative_keys(void)
{
    struct dbus_model *m = malloc(sizeof *m);
    struct dbus_model_config c = { .bms = true, .one_pack = true, .cell_count = 4 };
    dbus_model_init(m, &c);
    struct names x = { .n = 0 };
    dbus_model_children(m, "/", collect, &x);
    unsigned dc = 0, soc = 0;
    for (unsigned k = 0; k < x.n; k++) {
        dc += strcmp(x.list[k], "Dc") == 0;
        soc += strcmp(x.list[k], "Soc") == 0;
        CHECK(strchr(x.list[k], '/') == NULL);
    }
    CHECK_EQ_INT(dc, 1);
    CHECK_EQ_INT(soc, 1);
    x.n = 0;
    dbus_model_children(m, "/Dc/0", collect, &x);
    CHECK_EQ_INT(x.n, 4);
    CHECK_STR(x.list[0], "Voltage");
    const char *rel = NULL;
    CHECK(dbus_model_below("/", "/Dc/0/Voltage", &rel));
    CHECK_STR(rel, "Dc/0/Voltage");
    CHECK(dbus_model_below("/Dc", "/Dc/0/Voltage", &rel));
    CHECK_STR(rel, "0/Voltage");
    CHECK(!dbus_model_below("/Dc/0/V", "/Dc/0/Voltage", &rel)); /* whole elements only */
    CHECK(!dbus_model_below("/Info", "/Dc/0/Voltage", &rel));
    free(m);
}

static const struct dbus_value *val(const struct dbus_model *m, const struct dbus_value *v, const char *path)
{
    int k = dbus_model_find(m, path);
    CHECK(k >= 0);
    static struct dbus_value none;
    return k >= 0 ? &v[k] : &none;
}

static void test_values_of_an_online_bank(void)
{
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 1);
    struct dbus_model *m = malloc(sizeof *m);
    struct dbus_value *out = malloc(sizeof(struct dbus_value) * DBUS_MAX_LEAVES);
    struct dbus_model_config c = { .bms = true, .one_pack = true, .cell_count = 16 };
    dbus_model_init(m, &c);
    struct dbus_identity id = ident();
    struct bms_version ver = { .valid = true, .hw_version = 2, .hw_changes = 1, .fw_public = 86, .fw_internal = 1234 };
    strcpy(ver.serial, "0123456789ABCDEF01234567");
    struct bms_statistics st = { .valid = true, .charging_count = 12, .under_voltage_count = 1,
                                 .over_voltage_count = 2, .min_pack_temp_c = -5, .max_pack_temp_c = 41 };
    struct dbus_src src = { .view = v, .pack = -1, .online = true, .version = &ver, .stats = &st, .id = &id };
    dbus_model_compute(m, &src, out);

    CHECK_NEAR(val(m, out, "/Dc/0/Voltage")->d, 53.12, 1e-9);
    CHECK_NEAR(val(m, out, "/Dc/0/Current")->d, 25.0, 1e-9);
    CHECK_NEAR(val(m, out, "/Dc/0/Power")->d, 1330.0, 1e-9);
    CHECK_NEAR(val(m, out, "/Dc/0/Temperature")->d, 23.5, 1e-9); /* the hottest cell sensor */
    CHECK_NEAR(val(m, out, "/Soc")->d, 55.6, 1e-9);
    CHECK_NEAR(val(m, out, "/Soh")->d, 98.0, 1e-9);
    CHECK_NEAR(val(m, out, "/InstalledCapacity")->d, 280.0, 1e-9);
    CHECK_NEAR(val(m, out, "/ConsumedAmphours")->d, -124.5, 1e-9); /* -(280 x 44.45 %) */
    CHECK_EQ_INT(val(m, out, "/TimeToGo")->kind, DBUS_V_INVALID);  /* charging */
    /* The limits: the numbers CAN 0x351 carries (CVL/CCL/DCL rounded down to 0.1). */
    CHECK_NEAR(val(m, out, "/Info/MaxChargeVoltage")->d, 55.3, 1e-9);
    CHECK_NEAR(val(m, out, "/Info/MaxChargeCurrent")->d, 99.9, 1e-9);
    CHECK_NEAR(val(m, out, "/Info/MaxDischargeCurrent")->d, 150.0, 1e-9);
    CHECK_NEAR(val(m, out, "/Info/BatteryLowVoltage")->d, 46.4, 1e-9);
    size_t nf;
    const struct victron_field *f = victron_field_table(&nf);
    for (size_t k = 0; k < nf; k++)
        if (f[k].can_id == VICTRON_ID_LIMITS && f[k].source == VICTRON_SRC_CCL_A)
            CHECK_NEAR(val(m, out, "/Info/MaxChargeCurrent")->d, victron_field_raw(&f[k], v->limits.ccl_a) / 10.0,
                       1e-9);
    CHECK_EQ_INT(val(m, out, "/Io/AllowToCharge")->i, 1);
    CHECK_EQ_INT(val(m, out, "/Io/AllowToDischarge")->i, 1);
    CHECK_EQ_INT(val(m, out, "/Connected")->i, 1);
    CHECK_EQ_INT(val(m, out, "/DeviceInstance")->i, 7);
    CHECK_EQ_INT(val(m, out, "/ProductId")->i, 0xFFFF);
    CHECK_STR(val(m, out, "/ProductName")->s, "TinyBMS");
    CHECK_STR(val(m, out, "/FirmwareVersion")->s, "86 (internal 1234)");
    CHECK_STR(val(m, out, "/HardwareVersion")->s, "2.1");
    CHECK_STR(val(m, out, "/Serial")->s, "0123456789ABCDEF01234567");
    CHECK_EQ_INT(val(m, out, "/CustomName")->kind, DBUS_V_INVALID); /* not set */
    CHECK_NEAR(val(m, out, "/System/MinCellVoltage")->d, 3.301, 1e-9);
    CHECK_STR(val(m, out, "/System/MaxVoltageCellId")->s, "C9");
    CHECK_STR(val(m, out, "/System/MaxTemperatureCellId")->s, "T1");
    CHECK_EQ_INT(val(m, out, "/System/NrOfCellsPerBattery")->i, 16);
    CHECK_EQ_INT(val(m, out, "/System/NrOfModulesOnline")->i, 1);
    CHECK_EQ_INT(val(m, out, "/System/NrOfModulesOffline")->i, 0);
    CHECK_EQ_INT(val(m, out, "/Balancing")->i, 1);
    CHECK_NEAR(val(m, out, "/Voltages/Cell1")->d, 3.301, 1e-9);
    CHECK_NEAR(val(m, out, "/Voltages/Cell16")->d, 3.316, 1e-9);
    CHECK_NEAR(val(m, out, "/Voltages/Sum")->d, 52.94, 1e-9);
    CHECK_NEAR(val(m, out, "/Voltages/Diff")->d, 0.015, 1e-9);
    CHECK_EQ_INT(val(m, out, "/History/ChargeCycles")->i, 12);
    CHECK_NEAR(val(m, out, "/History/MinimumTemperature")->d, -5.0, 1e-9);
    CHECK_NEAR(val(m, out, "/History/ChargedEnergy")->d, 12.3, 1e-9);
    CHECK_EQ_INT(val(m, out, "/Alarms/HighVoltage")->i, 0);
    CHECK_EQ_INT(val(m, out, "/Alarms/HighTemperature")->i, 1); /* warning */
    CHECK_EQ_INT(val(m, out, "/Alarms/CellImbalance")->i, 2);   /* alarm */
    CHECK_EQ_INT(val(m, out, "/Alarms/Contactor")->kind, DBUS_V_INVALID); /* not supported: hidden */
    CHECK_EQ_INT(val(m, out, "/Alarms/BmsCable")->i, 0);
    for (unsigned k = 0; k < m->count; k++)
        CHECK(out[k].kind == DBUS_V_INVALID || out[k].kind == m->rows[k]->kind);

    /* Discharging: the BMS's time left. */
    v->current_a = -20.0f;
    dbus_model_compute(m, &src, out);
    CHECK_NEAR(val(m, out, "/TimeToGo")->d, 3600.0, 1e-9);
    free(v);
    free(m);
    free(out);
}

static void test_not_fresh_invalidates_limits_and_measurements(void)
{
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 2);
    struct dbus_model *m = malloc(sizeof *m);
    struct dbus_value *out = malloc(sizeof(struct dbus_value) * DBUS_MAX_LEAVES);
    struct dbus_model_config c = { .bms = true, .one_pack = false };
    dbus_model_init(m, &c);
    struct dbus_identity id = ident();
    struct dbus_src src = { .view = v, .pack = -1, .online = false, .id = &id };
    dbus_model_compute(m, &src, out);
    for (unsigned k = 0; k < m->count; k++)
        if (m->rows[k]->flags & DBUS_F_LIVE)
            CHECK_EQ_INT(out[k].kind, DBUS_V_INVALID);
    CHECK_EQ_INT(val(m, out, "/Info/MaxChargeVoltage")->kind, DBUS_V_INVALID);
    CHECK_EQ_INT(val(m, out, "/Info/MaxChargeCurrent")->kind, DBUS_V_INVALID);
    CHECK_EQ_INT(val(m, out, "/Dc/0/Voltage")->kind, DBUS_V_INVALID);
    CHECK_EQ_INT(val(m, out, "/Connected")->i, 0);
    CHECK_EQ_INT(val(m, out, "/Io/AllowToCharge")->i, 0);
    CHECK_EQ_INT(val(m, out, "/Io/AllowToDischarge")->i, 0);
    CHECK_EQ_INT(val(m, out, "/Alarms/BmsCable")->i, 2);
    CHECK_EQ_INT(val(m, out, "/System/NrOfModulesOffline")->i, 2);
    CHECK_EQ_INT(val(m, out, "/System/NrOfModulesOnline")->i, 0);
    CHECK_NEAR(val(m, out, "/InstalledCapacity")->d, 560.0, 1e-9); /* stays true */
    CHECK_NEAR(val(m, out, "/History/DischargedEnergy")->d, 6.8, 1e-9);
    /* No view at all: identity only. */
    src.view = NULL;
    dbus_model_compute(m, &src, out);
    CHECK_EQ_INT(val(m, out, "/Alarms/BmsCable")->kind, DBUS_V_INVALID);
    CHECK_EQ_INT(val(m, out, "/DeviceInstance")->i, 7);
    free(v);
    free(m);
    free(out);
}

static void test_freshness_rule(void)
{
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 2);
    CHECK_EQ_INT(dbus_model_freshness(NULL, 0, 5000, -1), DBUS_NO_VIEW);
    CHECK_EQ_INT(dbus_model_freshness(v, 5000, 5000, -1), DBUS_FRESH);
    CHECK_EQ_INT(dbus_model_freshness(v, 5001, 5000, -1), DBUS_STALE_VIEW); /* a hung battery service */
    CHECK_EQ_INT(dbus_model_freshness(v, 5001, 5000, 0), DBUS_STALE_VIEW);
    CHECK_EQ_INT(dbus_model_freshness(v, 0, 5000, 1), DBUS_FRESH);
    v->packs[1].state = BATTERY_PACK_STALE;
    CHECK_EQ_INT(dbus_model_freshness(v, 0, 5000, 1), DBUS_PACK_OFFLINE);
    CHECK_EQ_INT(dbus_model_freshness(v, 0, 5000, 2), DBUS_PACK_OFFLINE); /* no such pack */
    v->limits.cvl_v = NAN;
    CHECK_EQ_INT(dbus_model_freshness(v, 0, 5000, -1), DBUS_BAD_LIMITS);
    v->limits.cvl_v = 0.05f; /* below one 0x351 step: CAN withholds it too */
    CHECK_EQ_INT(dbus_model_freshness(v, 0, 5000, -1), DBUS_BAD_LIMITS);
    v->limits.cvl_v = 55.0f;
    v->limits.ccl_a = -1.0f;
    CHECK_EQ_INT(dbus_model_freshness(v, 0, 5000, -1), DBUS_BAD_LIMITS);
    v->limits.ccl_a = 10.0f;
    v->limits.dcl_a = INFINITY;
    CHECK_EQ_INT(dbus_model_freshness(v, 0, 5000, -1), DBUS_BAD_LIMITS);
    v->limits.dcl_a = 10.0f;
    CHECK_EQ_INT(dbus_model_freshness(v, 0, 5000, -1), DBUS_FRESH);
    v->limits.valid = false;
    CHECK_EQ_INT(dbus_model_freshness(v, 0, 5000, -1), DBUS_NO_LIMITS);
    CHECK_STR(dbus_freshness_text(DBUS_STALE_VIEW), "battery view stale");
    free(v);
}

static void test_pack_service_values(void)
{
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 2);
    v->packs[1].live.pack_voltage_v = 52.0f;
    v->packs[1].live.temp_present[BMS_TEMP_EXT1] = false; /* only the internal sensor */
    v->packs[1].charge_allowed = false;
    struct dbus_model *m = malloc(sizeof *m);
    struct dbus_value *out = malloc(sizeof(struct dbus_value) * DBUS_MAX_LEAVES);
    struct dbus_model_config c = { .bms = false, .one_pack = true, .cell_count = 16 };
    dbus_model_init(m, &c);
    struct dbus_identity id = ident();
    strcpy(id.custom_name, "pack 2");
    struct dbus_src src = { .view = v, .pack = 1, .online = true, .id = &id };
    dbus_model_compute(m, &src, out);
    CHECK_NEAR(val(m, out, "/Dc/0/Voltage")->d, 52.0, 1e-9);
    CHECK_EQ_INT(val(m, out, "/Dc/0/Temperature")->kind, DBUS_V_INVALID); /* no cell sensor */
    CHECK_STR(val(m, out, "/CustomName")->s, "pack 2");
    CHECK_EQ_INT(val(m, out, "/Io/AllowToCharge")->i, 0);
    CHECK_EQ_INT(val(m, out, "/System/NrOfModulesBlockingCharge")->i, 1);
    CHECK_STR(val(m, out, "/System/MinVoltageCellId")->s, "C1");
    CHECK_EQ_INT(val(m, out, "/Balancing")->i, 0);
    free(v);
    free(m);
    free(out);
}

static void test_texts(void)
{
    size_t n;
    const struct dbus_row *t = dbus_model_table(&n);
    const struct dbus_row *volt = NULL, *pid = NULL, *temp = NULL, *name = NULL, *conn = NULL;
    for (size_t k = 0; k < n; k++) {
        if (!strcmp(t[k].path, "/Dc/0/Voltage")) volt = &t[k];
        if (!strcmp(t[k].path, "/ProductId")) pid = &t[k];
        if (!strcmp(t[k].path, "/Dc/0/Temperature")) temp = &t[k];
        if (!strcmp(t[k].path, "/ProductName")) name = &t[k];
        if (!strcmp(t[k].path, "/Connected")) conn = &t[k];
    }
    CHECK(volt && pid && temp && name && conn);
    char buf[DBUS_TEXT_MAX];
    struct dbus_value v;
    dbus_value_set_double(&v, 53.125, 2);
    CHECK_STR(dbus_value_text(volt, &v, buf, sizeof buf), "53.13V");
    dbus_value_set_double(&v, -0.004, 2);
    CHECK(v.d == 0.0 && !signbit(v.d)); /* never -0 */
    CHECK_STR(dbus_value_text(volt, &v, buf, sizeof buf), "0.00V");
    dbus_value_set_double(&v, 23.46, 1);
    CHECK_STR(dbus_value_text(temp, &v, buf, sizeof buf), "23.5°C");
    dbus_value_set_int(&v, 0xFFFF);
    CHECK_STR(dbus_value_text(pid, &v, buf, sizeof buf), "0xFFFF");
    dbus_value_set_int(&v, 1);
    CHECK_STR(dbus_value_text(conn, &v, buf, sizeof buf), "1");
    dbus_value_set_str(&v, "TinyBMS");
    CHECK_STR(dbus_value_text(name, &v, buf, sizeof buf), "TinyBMS");
    dbus_value_set_invalid(&v);
    CHECK_STR(dbus_value_text(volt, &v, buf, sizeof buf), "---");
    dbus_value_set_double(&v, NAN, 2);
    CHECK_EQ_INT(v.kind, DBUS_V_INVALID); /* NaN never reaches the bus */
    dbus_value_set_double(&v, INFINITY, 2);
    CHECK_EQ_INT(v.kind, DBUS_V_INVALID);
}

static void test_change_detection_and_deadbands(void)
{
    size_t n;
    const struct dbus_row *t = dbus_model_table(&n);
    const struct dbus_row *volt = NULL, *cvl = NULL, *conn = NULL, *name = NULL;
    for (size_t k = 0; k < n; k++) {
        if (!strcmp(t[k].path, "/Dc/0/Voltage")) volt = &t[k];
        if (!strcmp(t[k].path, "/Info/MaxChargeVoltage")) cvl = &t[k];
        if (!strcmp(t[k].path, "/Connected")) conn = &t[k];
        if (!strcmp(t[k].path, "/ProductName")) name = &t[k];
    }
    struct dbus_value a, b;
    dbus_value_set_double(&a, 53.12, 2);
    dbus_value_set_double(&b, 53.13, 2);
    CHECK(!dbus_value_changed(volt, &a, &b)); /* within the 0.02 V deadband */
    dbus_value_set_double(&b, 53.14, 2);
    CHECK(dbus_value_changed(volt, &a, &b));
    dbus_value_set_double(&b, 53.10, 2);
    CHECK(dbus_value_changed(volt, &a, &b));
    dbus_value_set_double(&a, 55.2, 1);
    dbus_value_set_double(&b, 55.1, 1);
    CHECK(dbus_value_changed(cvl, &a, &b)); /* a limit: any change */
    CHECK(!dbus_value_changed(cvl, &a, &a));
    dbus_value_set_invalid(&b);
    CHECK(dbus_value_changed(cvl, &a, &b)); /* valid -> invalid */
    CHECK(dbus_value_changed(cvl, &b, &a));
    CHECK(!dbus_value_changed(cvl, &b, &b));
    dbus_value_set_int(&a, 1);
    dbus_value_set_int(&b, 0);
    CHECK(dbus_value_changed(conn, &a, &b));
    dbus_value_set_str(&a, "x");
    dbus_value_set_str(&b, "x");
    CHECK(!dbus_value_changed(name, &a, &b));
    dbus_value_set_str(&b, "y");
    CHECK(dbus_value_changed(name, &a, &b));

    /* update(): only the changed leaves are stored and listed; the deadband keeps the old one. */
    struct battery_view *v = malloc(sizeof *v);
    make_view(v, 1);
    struct dbus_model *m = malloc(sizeof *m);
    struct dbus_value *out = malloc(sizeof(struct dbus_value) * DBUS_MAX_LEAVES);
    struct dbus_model_config c = { .bms = true, .one_pack = true, .cell_count = 16 };
    dbus_model_init(m, &c);
    struct dbus_identity id = ident();
    struct dbus_src src = { .view = v, .pack = -1, .online = true, .id = &id };
    uint16_t changed[DBUS_MAX_LEAVES];
    dbus_model_compute(m, &src, out);
    size_t first = dbus_model_update(m, out, changed, DBUS_MAX_LEAVES);
    CHECK(first > 50);
    dbus_model_compute(m, &src, out);
    CHECK_EQ_INT(dbus_model_update(m, out, changed, DBUS_MAX_LEAVES), 0);
    v->voltage_v = 53.13f;              /* inside the deadband */
    v->packs[0].live.cell_mv_x10[4] += 30; /* cell 5 +3 mV: outside its 2 mV deadband */
    v->limits.ccl_a = 50.0f;
    dbus_model_compute(m, &src, out);
    size_t nc = dbus_model_update(m, out, changed, DBUS_MAX_LEAVES);
    CHECK_EQ_INT(nc, 2); /* CCL and Cell5; the sum moved 3 mV, inside its deadband */
    bool ccl = false, cell5 = false;
    for (size_t k = 0; k < nc; k++) {
        ccl = ccl || !strcmp(m->rows[changed[k]]->path, "/Info/MaxChargeCurrent");
        cell5 = cell5 || !strcmp(m->rows[changed[k]]->path, "/Voltages/Cell5");
    }
    CHECK(ccl && cell5);
    CHECK_NEAR(m->values[dbus_model_find(m, "/Dc/0/Voltage")].d, 53.12, 1e-9); /* kept */
    /* Going stale: the live leaves and /Connected change, in one batch. */
    src.online = false;
    dbus_model_compute(m, &src, out);
    nc = dbus_model_update(m, out, changed, DBUS_MAX_LEAVES);
    CHECK(nc > 20);
    CHECK_EQ_INT(m->values[dbus_model_find(m, "/Info/MaxChargeVoltage")].kind, DBUS_V_INVALID);
    free(v);
    free(m);
    free(out);
}

static void test_strings_valid_utf8(void)
{
    struct dbus_value v;
    dbus_value_set_str(&v, "Süd \xff\xfe ok");
    CHECK_STR(v.s, "Süd ?? ok");
    dbus_value_set_str(&v, "\xc3");          /* truncated sequence */
    CHECK_STR(v.s, "?");
    dbus_value_set_str(&v, "\xed\xa0\x80"); /* a surrogate */
    CHECK_STR(v.s, "???");
    dbus_value_set_str(&v, "\xe0\x80\x80"); /* overlong */
    CHECK_STR(v.s, "???");
    char longs[200];
    memset(longs, 'a', sizeof longs);
    strcpy(longs + DBUS_STR_MAX - 2, "é end");
    dbus_value_set_str(&v, longs);
    CHECK_EQ_INT(strlen(v.s), DBUS_STR_MAX - 2); /* "é" would not fit whole: cut before it */
    dbus_value_set_str(&v, NULL);
    CHECK_EQ_INT(v.kind, DBUS_V_STRING);
    CHECK_STR(v.s, "");
}

static void test_parse_and_names(void)
{
    int32_t n = -1;
    CHECK_EQ_INT(dbus_parse_class_instance("battery:7", &n), GW_OK);
    CHECK_EQ_INT(n, 7);
    CHECK_EQ_INT(dbus_parse_class_instance("battery:512", &n), GW_OK);
    CHECK_EQ_INT(n, 512);
    CHECK_EQ_INT(dbus_parse_class_instance("battery:", &n), GW_ERR_INVAL);
    CHECK_EQ_INT(dbus_parse_class_instance("7", &n), GW_ERR_INVAL);
    CHECK_EQ_INT(dbus_parse_class_instance(":7", &n), GW_ERR_INVAL);
    CHECK_EQ_INT(dbus_parse_class_instance("battery:7x", &n), GW_ERR_INVAL);
    CHECK_EQ_INT(dbus_parse_class_instance("battery:99999999999", &n), GW_ERR_INVAL);
    CHECK_EQ_INT(dbus_parse_class_instance(NULL, &n), GW_ERR_INVAL);
    CHECK_EQ_INT(n, 512);
    char el[32];
    CHECK_STR(dbus_name_element("/dev/ttyUSB0", "tinybms_0", el, sizeof el), "ttyUSB0");
    CHECK_STR(dbus_name_element("/dev/pts/3", "tinybms_0", el, sizeof el), "tinybms_0"); /* digit first */
    CHECK_STR(dbus_name_element("/tmp/bms-1.link", "tinybms_0", el, sizeof el), "bms_1_link");
    CHECK_STR(dbus_name_element("", "tinybms_1", el, sizeof el), "tinybms_1");
    CHECK_STR(dbus_name_element(NULL, "tinybms_1", el, sizeof el), "tinybms_1");
    CHECK_STR(dbus_name_element("/dev/serial/by-id/usb-FTDI_very_long_name_that_goes_on_and_on", "tinybms_0", el,
                                sizeof el), "tinybms_0"); /* too long: never a cut name */
}

TEST_MAIN(TEST_CASE(test_table_paths_unique_and_valid), TEST_CASE(test_model_paths_per_service_kind),
          TEST_CASE(test_children_and_relative_keys), TEST_CASE(test_values_of_an_online_bank),
          TEST_CASE(test_not_fresh_invalidates_limits_and_measurements), TEST_CASE(test_freshness_rule),
          TEST_CASE(test_pack_service_values), TEST_CASE(test_texts), TEST_CASE(test_change_detection_and_deadbands),
          TEST_CASE(test_strings_valid_utf8), TEST_CASE(test_parse_and_names))
