/* uart_bms against the real tinybms-sim on a pseudo-terminal: the gateway must report exactly
 * the values the independent simulator serves (cells in both numberings, min/max cell and index,
 * SOC, SOH, an absent temperature sensor), and survive noise, silence and unplug/replug. */
#define _GNU_SOURCE
#include "app_events.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "sim_process.h"
#include "support/wait.h"
#include "test.h"
#include "uart_bms.h"

#include <cjson/cJSON.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

static struct sim_process sim;
static char link_path[128];
static char tmp_dir[64];

/* Sends one control command and returns the parsed JSON answer (caller frees). */
static cJSON *sim_cmd(const char *cmd)
{
    char line[256];
    snprintf(line, sizeof line, "%s\n", cmd);
    if (write(sim.stdin_fd, line, strlen(line)) < 0)
        return NULL;
    static char buf[65536];
    size_t len = 0;
    uint64_t deadline = gw_now_ms() + 10000;
    while (gw_now_ms() < deadline && len + 1 < sizeof buf) {
        struct pollfd pfd = { .fd = sim.stdout_fd, .events = POLLIN };
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        char c;
        if (read(sim.stdout_fd, &c, 1) != 1)
            return NULL;
        if (c == '\n') {
            buf[len] = '\0';
            return cJSON_Parse(buf);
        }
        buf[len++] = c;
    }
    return NULL;
}

static bool sim_ok(const char *cmd)
{
    cJSON *j = sim_cmd(cmd);
    bool ok = j && cJSON_IsTrue(cJSON_GetObjectItem(j, "ok"));
    cJSON_Delete(j);
    return ok;
}

static double num(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static uint64_t samples_now(struct uart_bms *ub)
{
    struct uart_bms_stats st;
    uart_bms_get_stats(ub, &st);
    return st.samples;
}

static bool wait_samples(struct uart_bms *ub, uint64_t target, uint32_t timeout_ms)
{
    bool ok;
    WAIT_FOR(ok, samples_now(ub) >= target, timeout_ms);
    return ok;
}

static struct uart_bms *start_gateway(struct event_bus *bus, uint32_t comm_timeout_ms)
{
    struct uart_bms_options o;
    uart_bms_default_options(&o);
    snprintf(o.device, sizeof o.device, "%s", link_path);
    o.poll_interval_ms = 100;
    o.comm_timeout_ms = comm_timeout_ms;
    o.reply_timeout_ms = 500; /* a loaded CI machine: slow answers must not count as lost */
    o.bus = bus;
    struct uart_bms *ub = NULL;
    CHECK_EQ_INT(uart_bms_create(&o, &ub), GW_OK);
    CHECK_EQ_INT(uart_bms_start(ub), GW_OK);
    return ub;
}

/* Compares the gateway's latest sample with the simulator's frozen state. */
static void compare_with_state(struct uart_bms *ub, bool reversed)
{
    /* Freeze the model, then wait for two samples read after the freeze. */
    CHECK(sim_ok("speed 0"));
    uint64_t s = samples_now(ub);
    CHECK(wait_samples(ub, s + 2, 10000));
    cJSON *st = sim_cmd("state");
    CHECK(st != NULL);
    if (!st)
        return;
    struct bms_live_data d;
    CHECK_EQ_INT(uart_bms_get_latest(ub, &d), GW_OK);

    unsigned n = (unsigned)num(st, "cell_count");
    CHECK_EQ_INT(d.cell_count, n);
    const cJSON *cells = cJSON_GetObjectItem(st, "cells_mv");
    CHECK_EQ_INT(cJSON_GetArraySize(cells), (int)n);
    for (unsigned i = 0; i < n; i++) {
        double sim_mv = cJSON_GetArrayItem(cells, (int)i)->valuedouble;
        unsigned user = reversed ? n - 1 - i : i;
        CHECK_NEAR(d.cell_mv_x10[user] / 10.0, sim_mv, 1e-6);
    }
    CHECK_NEAR(d.pack_voltage_v, num(st, "pack_v"), 1e-6);
    CHECK_NEAR(d.pack_current_a, num(st, "current_a"), 1e-6);
    CHECK_EQ_INT(d.soc_ppm, llround(num(st, "soc_pct") * 1e6)); /* 0.000001 % units, exact */
    CHECK(d.soh_valid);
    CHECK_NEAR(bms_soh_percent(&d), num(st, "soh_pct"), 1e-4);
    CHECK_EQ_INT(d.online_status, (int)num(st, "status"));
    CHECK_EQ_INT(d.min_cell_mv, (int)num(st, "min_cell_mv"));
    CHECK_EQ_INT(d.max_cell_mv, (int)num(st, "max_cell_mv"));
    unsigned min_i = (unsigned)num(st, "min_cell"), max_i = (unsigned)num(st, "max_cell");
    CHECK_EQ_INT(d.min_cell_index, reversed ? n + 1 - min_i : min_i);
    CHECK_EQ_INT(d.max_cell_index, reversed ? n + 1 - max_i : max_i);
    CHECK_EQ_INT(d.balancing_decision, (int)num(st, "balancing_decision"));
    CHECK_EQ_INT(d.balancing_active, (int)num(st, "balancing_active"));
    CHECK_EQ_INT(d.lifetime_s, (long long)num(st, "lifetime_s"));
    CHECK(d.temp_present[BMS_TEMP_INTERNAL]);
    CHECK_NEAR(bms_temp_c(&d, BMS_TEMP_INTERNAL), num(st, "temp_internal_c"), 1e-6);
    CHECK(d.temp_present[BMS_TEMP_EXT1]);
    CHECK_NEAR(bms_temp_c(&d, BMS_TEMP_EXT1), num(st, "temp_ext1_c"), 1e-6);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(st, "temp_ext2_c"))); /* the simulator's default */
    CHECK(!d.temp_present[BMS_TEMP_EXT2]);
    /* Every register the simulator serves decodes to what it says. */
    const cJSON *regs = cJSON_GetObjectItem(st, "registers");
    CHECK_EQ_INT(cJSON_GetArraySize(regs), 56);
    CHECK_EQ_INT(d.cell_count, cJSON_GetArrayItem(regs, 53)->valueint);
    cJSON_Delete(st);
    CHECK(sim_ok("speed 1"));
}

static void test_exact_values_both_cell_orders(void)
{
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct uart_bms *ub = start_gateway(bus, 30000);
    CHECK(wait_samples(ub, 3, 15000));
    compare_with_state(ub, false);
    CHECK_EQ_INT(uart_bms_set_cell_order(ub, BMS_CELL_ORDER_REVERSED), GW_OK);
    compare_with_state(ub, true);

    /* The slow reads completed: version with a serial number, settings. */
    uint64_t deadline = gw_now_ms() + 15000;
    struct bms_version v = { 0 };
    struct bms_settings cur = { 0 };
    while (gw_now_ms() < deadline &&
           (uart_bms_get_version(ub, &v) != GW_OK || uart_bms_get_settings(ub, &cur, NULL, NULL) != GW_OK))
        gw_sleep_ms(50);
    CHECK(v.valid);
    CHECK(strlen(v.serial) == 24);
    CHECK(cur.valid);
    CHECK_EQ_INT(cur.raw[307 - 300], 14); /* number of series cells */
    /* A write within range is confirmed by the read-back; the simulator holds the new value. */
    CHECK_EQ_INT(uart_bms_write_setting(ub, 308, 20, 5000), GW_OK);
    CHECK_EQ_INT(uart_bms_write_setting(ub, 308, 200, 5000), GW_ERR_RANGE);
    uart_bms_destroy(ub);
    event_bus_destroy(bus);
}

static void test_noise_silence_unplug_replug(void)
{
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct uart_bms *ub = start_gateway(bus, 1500);
    CHECK(wait_samples(ub, 2, 15000));

    /* Line noise: corrupted answers are rejected by CRC, valid ones keep coming. */
    CHECK(sim_ok("noise 0.02"));
    uint64_t s = samples_now(ub);
    CHECK(wait_samples(ub, s + 10, 30000));
    CHECK(sim_ok("noise 0"));
    struct uart_bms_stats st;
    uart_bms_get_stats(ub, &st);
    CHECK(st.crc_errors + st.garbage_bytes > 0);

    /* Silence: communication lost after the timeout, restored when answers come back. */
    CHECK(sim_ok("silence on"));
    uint64_t deadline = gw_now_ms() + 15000;
    do {
        gw_sleep_ms(50);
        uart_bms_get_stats(ub, &st);
    } while (st.comm_ok && gw_now_ms() < deadline);
    CHECK(!st.comm_ok);
    CHECK(st.timeouts > 0);
    CHECK(sim_ok("silence off"));
    s = samples_now(ub);
    CHECK(wait_samples(ub, s + 2, 15000));
    uart_bms_get_stats(ub, &st);
    CHECK(st.comm_ok);

    /* Unplug: the device vanishes; replug: a new pty behind the same link, reopened. */
    CHECK(sim_ok("unplug"));
    deadline = gw_now_ms() + 15000;
    do {
        gw_sleep_ms(50);
        uart_bms_get_stats(ub, &st);
    } while (st.device_open && gw_now_ms() < deadline);
    CHECK(!st.device_open);
    CHECK(sim_ok("replug"));
    s = samples_now(ub);
    CHECK(wait_samples(ub, s + 2, 30000));
    uart_bms_get_stats(ub, &st);
    CHECK(st.reopens >= 1);
    CHECK(st.device_open);
    uart_bms_destroy(ub);
    event_bus_destroy(bus);
}

/* A firmware without the newer registers (45, 305, 310, 311, 321, 322, 323, 329) NACKs them,
 * also inside block reads: live data must still flow (read around register 45, no SOH) and the
 * settings must be read register by register, the newer ones marked absent. */
static void test_old_firmware(void)
{
    char old_link[160];
    snprintf(old_link, sizeof old_link, "%s/old", tmp_dir);
    const char *args[] = { "--old-firmware", "--link", old_link, NULL };
    struct sim_process old_sim;
    CHECK_EQ_INT(sim_process_start(&old_sim, args, 10000), GW_OK);
    struct event_bus *bus;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    struct uart_bms_options o;
    uart_bms_default_options(&o);
    snprintf(o.device, sizeof o.device, "%s", old_link);
    o.poll_interval_ms = 200;
    o.reply_timeout_ms = 500;
    o.bus = bus;
    struct uart_bms *ub = NULL;
    CHECK_EQ_INT(uart_bms_create(&o, &ub), GW_OK);
    CHECK_EQ_INT(uart_bms_start(ub), GW_OK);
    CHECK(wait_samples(ub, 3, 20000));
    struct bms_live_data d = { 0 };
    CHECK_EQ_INT(uart_bms_get_latest(ub, &d), GW_OK);
    CHECK(!d.soh_valid);
    CHECK_EQ_INT(d.cell_count, 16);
    CHECK(d.pack_voltage_v > 40.0f && d.pack_voltage_v < 60.0f);
    struct bms_settings cur = { 0 };
    uint64_t deadline = gw_now_ms() + 30000;
    while (gw_now_ms() < deadline && uart_bms_get_settings(ub, &cur, NULL, NULL) != GW_OK)
        gw_sleep_ms(50);
    CHECK(cur.valid);
    CHECK(cur.present_mask & (1ull << (300 - 300)));
    CHECK(!(cur.present_mask & (1ull << (305 - 300))));
    CHECK(!(cur.present_mask & (1ull << (321 - 300))));
    CHECK(cur.present_mask & (1ull << (315 - 300)));
    uart_bms_destroy(ub);
    event_bus_destroy(bus);
    sim_process_stop(&old_sim);
    unlink(old_link);
}

int main(void)
{
    gw_log_set_level(GW_LOG_WARN);
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/gw-uart-sim-XXXXXX");
    if (!mkdtemp(tmp_dir))
        return 1;
    snprintf(link_path, sizeof link_path, "%s/bms", tmp_dir);
    const char *args[] = { "--cells", "14", "--soc", "62.5", "--seed", "7", "--scenario", "discharge",
                           "--link", link_path, NULL };
    if (sim_process_start(&sim, args, 10000) != GW_OK) {
        fprintf(stderr, "cannot start tinybms-sim\n");
        return 1;
    }
    static const struct test_case_ cases[] = { TEST_CASE(test_exact_values_both_cell_orders),
                                               TEST_CASE(test_noise_silence_unplug_replug),
                                               TEST_CASE(test_old_firmware) };
    int rc = test_run_(cases, sizeof cases / sizeof cases[0]);
    sim_process_stop(&sim);
    unlink(link_path);
    rmdir(tmp_dir);
    return rc;
}
