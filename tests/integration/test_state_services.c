/* The gateway's state services together on one real event bus: battery views (two packs) feed
 * both the alert manager and the history logger; a history storage failure becomes a
 * STORAGE_ERROR alert that clears when the storage comes back with no row lost; alerts survive a
 * restart. */
#define _GNU_SOURCE
#include "alert_manager.h"
#include "app_events.h"
#include "battery_view.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "history_logger.h"
#include "support/wait.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_int storage_raised, storage_cleared, over_voltage_raised, over_voltage_pack;

static void on_alert(const struct gw_event *ev, void *ctx)
{
    (void)ctx;
    const struct app_alert *a = ev->payload;
    if (strcmp(a->code, "STORAGE_ERROR") == 0)
        atomic_fetch_add(ev->id == EVENT_ALERT_RAISED ? &storage_raised : &storage_cleared, 1);
    if (strcmp(a->code, "OVER_VOLTAGE") == 0 && ev->id == EVENT_ALERT_RAISED) {
        atomic_store(&over_voltage_pack, a->battery_id);
        atomic_fetch_add(&over_voltage_raised, 1);
    }
}

static bool wait_at_least(atomic_int *v, int want)
{
    bool ok;
    WAIT_FOR(ok, atomic_load(v) >= want, 20000);
    return ok;
}

static struct bms_live_data sample(int i, uint16_t cell1_mv_x10)
{
    struct bms_live_data d;
    memset(&d, 0, sizeof d);
    d.valid = true;
    d.timestamp_ms = gw_now_ms();
    d.wall_time_ms = gw_wall_ms() + i;
    d.cell_count = 16;
    for (int c = 0; c < 16; c++)
        d.cell_mv_x10[c] = 33000;
    d.cell_mv_x10[0] = cell1_mv_x10;
    d.pack_voltage_v = 52.8f;
    d.pack_current_a = -3.0f;
    d.soc_ppm = 70000000;
    d.online_status = BMS_STATUS_DISCHARGING;
    return d;
}

/* Two online packs; the second one's cell 1 is cell1_mv_x10. */
static void make_view(struct battery_view *v, int i, uint16_t cell1_mv_x10)
{
    memset(v, 0, sizeof *v);
    v->seq = (uint64_t)i + 1;
    v->timestamp_ms = gw_now_ms();
    v->wall_time_ms = gw_wall_ms() + i;
    v->pack_count = 2;
    v->online_count = 2;
    for (int k = 0; k < 2; k++) {
        struct battery_pack *p = &v->packs[k];
        p->id = (uint8_t)k;
        snprintf(p->name, sizeof p->name, "pack %d", k + 1);
        p->state = BATTERY_PACK_ONLINE;
        p->live = sample(i, k == 1 ? cell1_mv_x10 : 33000);
        p->live.battery_id = (uint8_t)k;
        p->live.timestamp_ms = 1000 + (uint64_t)i; /* a new sample in every view */
    }
    v->voltage_v = 52.8f;
    v->current_a = -6.0f;
    v->soc_pct = 70.0f;
    v->online_status = BMS_STATUS_DISCHARGING;
}

static void test_storage_failure_is_an_alert_and_loses_nothing(void)
{
    char root[] = "/tmp/gw_state_XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    char blocker[300], hist_dir[320];
    snprintf(blocker, sizeof blocker, "%s/blocked", root);
    snprintf(hist_dir, sizeof hist_dir, "%s/history", blocker);
    FILE *fp = fopen(blocker, "w"); /* a regular file where a directory should be */
    CHECK(fp != NULL);
    if (fp)
        fclose(fp);

    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    event_bus_subscribe(bus, EVENT_ALERT_RAISED, on_alert, NULL, "test");
    event_bus_subscribe(bus, EVENT_ALERT_CLEARED, on_alert, NULL, "test");
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    cfg.alerts.raise_delay_ms = 0;
    cfg.alerts.status_alerts = false;
    cfg.history.period_s = 1;
    cfg.history.retention_days = 3650;

    struct alert_manager_options aopt = { .bus = bus, .data_dir = root, .config = cfg.alerts, .tick_ms = 20 };
    struct alert_manager *am = NULL;
    CHECK_EQ_INT(alert_manager_create(&aopt, &am), GW_OK);
    struct history_logger_options hopt = { .bus = bus, .data_dir = hist_dir, .config = cfg.history,
                                           .retry_max_ms = 200 };
    struct history_logger *hl = NULL;
    CHECK_EQ_INT(history_logger_create(&hopt, &hl), GW_OK);
    if (!am || !hl)
        return;
    CHECK(wait_at_least(&storage_raised, 1));

    /* views keep flowing to both services while the history cannot be written; each view's rows
     * are queued once, whether the bus path (period) or record_view takes them first */
    struct battery_view *v = malloc(sizeof *v);
    for (int i = 0; i < 30; i++) {
        make_view(v, i, i >= 20 ? 36600 : 33000);
        CHECK(event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000) == GW_OK);
        CHECK_EQ_INT(history_logger_record_view(hl, v, NULL), GW_OK);
    }
    free(v);
    CHECK(event_bus_flush(bus, 5000) == GW_OK);
    CHECK(wait_at_least(&over_voltage_raised, 1));
    CHECK_EQ_INT(atomic_load(&over_voltage_pack), 1); /* the second pack's alert */
    CHECK_EQ_INT(history_logger_flush(hl, 10000), GW_ERR_STORAGE);
    char *json = NULL;
    CHECK_EQ_INT(alert_manager_get_active_json_alloc(am, &json), GW_OK);
    CHECK(json && strstr(json, "\"code\":\"STORAGE_ERROR\"") && strstr(json, "\"subject\":\"history\""));
    free(json);

    /* the storage comes back: the buffered samples land, the alert clears */
    CHECK_EQ_INT(unlink(blocker), 0);
    CHECK_EQ_INT(mkdir(blocker, 0755), 0);
    bool flushed = false;
    for (int i = 0; i < 400 && !flushed; i++) {
        flushed = history_logger_flush(hl, 1000) == GW_OK;
        if (!flushed)
            gw_sleep_ms(25);
    }
    CHECK(flushed);
    CHECK(wait_at_least(&storage_cleared, 1));
    CHECK_EQ_INT(atomic_load(&storage_raised), 1);
    struct history_logger_stats st;
    history_logger_get_stats(hl, &st);
    CHECK_EQ_INT(st.samples_dropped, 0);
    CHECK_EQ_INT(st.samples_written, st.samples_queued);
    CHECK_EQ_INT(st.samples_queued, 30 * 3); /* two packs and the aggregate */
    uint64_t rows = 0;
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_ALL_IDS, INT64_MIN, INT64_MAX, &rows), GW_OK);
    CHECK_EQ_INT(rows, st.samples_queued);
    CHECK_EQ_INT(history_logger_count(hl, HISTORY_AGGREGATE, INT64_MIN, INT64_MAX, &rows), GW_OK);
    CHECK_EQ_INT(rows, 30);
    CHECK_EQ_INT(history_logger_count(hl, 1, INT64_MIN, INT64_MAX, &rows), GW_OK);
    CHECK_EQ_INT(rows, 30);

    history_logger_destroy(hl);
    alert_manager_destroy(am);

    /* restart: the alert history is still there */
    CHECK_EQ_INT(alert_manager_create(&aopt, &am), GW_OK);
    char *hist = NULL;
    CHECK_EQ_INT(alert_manager_get_history_json(am, 0, 0, 100, &hist), GW_OK);
    cJSON *h = hist ? cJSON_Parse(hist) : NULL;
    int storage_rows = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, h) {
        if (strcmp(cJSON_GetObjectItem(it, "code")->valuestring, "STORAGE_ERROR") == 0)
            storage_rows++;
    }
    CHECK_EQ_INT(storage_rows, 2); /* raised + cleared */
    CHECK_EQ_INT(alert_manager_count(am, "OVER_VOLTAGE"), 1);
    cJSON_Delete(h);
    free(hist);
    alert_manager_destroy(am);
    event_bus_destroy(bus);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK_EQ_INT(system(cmd), 0);
}

TEST_MAIN(TEST_CASE(test_storage_failure_is_an_alert_and_loses_nothing))
