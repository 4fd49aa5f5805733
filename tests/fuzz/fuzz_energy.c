/* Fuzz target: energy.json, the file that keeps the energy counters and each pack's charge
 * state (phase, timers, float ramp, CVL) across restarts. The input is the file's content as the
 * battery service reads it at start (restore_state: refused when it holds a NUL), parsed by
 * battery_state__from_json and restored into a real battery engine of two packs
 * (battery_engine_restore, charge_control_set_state), which then steps with a sample as it would
 * after a restart. Invariants: the limits stay finite and in range whatever the file said, the
 * restored state saves and reads back to the same document.
 * Corpus: tests/fuzz/corpus/energy (files the service writes, version 1 and 2, the bad entries of
 * tests/unit/test_battery_service.c). */
#include "battery_engine.h"
#include "battery_service.h"
#include "fuzz_support.h"
#include "gw_error.h"
#include "gw_log.h"
#include "support/sample.h"

#include <math.h>
#include <string.h>

static struct battery_engine engine;
static struct battery_engine_config config;
static struct battery_view view;
static struct battery_engine_saved saved, again;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    battery_engine_default_config(&config);
    config.pack_count = 2;
    for (unsigned i = 0; i < 2; i++) {
        config.packs[i].id = (uint8_t)i;
        config.packs[i].capacity_ah = 100.0f;
    }
    return 0;
}

static struct bms_live_data sample(uint8_t id, float cell_v, float current_a, uint32_t lifetime_s)
{
    struct bms_live_data s = test_sample(id, cell_v, current_a);
    s.online_status = BMS_STATUS_CHARGING;
    s.lifetime_s = lifetime_s;
    return s;
}

static void check_limits(const struct battery_limits *l)
{
    if (!l->valid)
        return;
    FUZZ_ASSERT(isfinite(l->cvl_v) && l->cvl_v > 0.0f && l->cvl_v <= 80.0f);
    FUZZ_ASSERT(isfinite(l->ccl_a) && l->ccl_a >= 0.0f);
    FUZZ_ASSERT(isfinite(l->dcl_a) && l->dcl_a >= 0.0f);
    FUZZ_ASSERT(isfinite(l->discharge_v));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* restore_state reads the file into a buffer and refuses one that holds a NUL. */
    if (memchr(data, '\0', size))
        return 0;
    char *text = fuzz_strndup(data, size);
    int rc = battery_state__from_json(text, &saved);
    free(text);
    FUZZ_ASSERT(rc == GW_OK || rc == GW_ERR_PROTO);
    if (rc != GW_OK)
        return 0;
    FUZZ_ASSERT(saved.pack_count <= BATTERY_MAX_PACKS);

    FUZZ_ASSERT(battery_engine_init(&engine, &config) == GW_OK);
    rc = battery_engine_restore(&engine, &saved);
    FUZZ_ASSERT(rc == GW_OK || rc == GW_ERR_RANGE);

    /* The first minutes after the restart: samples of both packs, a step each second. */
    uint64_t now = 1000;
    for (unsigned t = 0; t < 5; t++) {
        for (uint8_t id = 0; id < 2; id++) {
            struct bms_live_data s = sample(id, 3.45f, 20.0f, 1000 + t);
            (void)battery_engine_feed_sample(&engine, &s, now);
        }
        (void)battery_engine_step(&engine, now, &view);
        check_limits(&view.limits);
        for (unsigned k = 0; k < view.pack_count && k < BATTERY_MAX_PACKS; k++)
            check_limits(&view.packs[k].limits);
        FUZZ_ASSERT(isfinite(view.energy_in_wh) && view.energy_in_wh >= 0.0);
        FUZZ_ASSERT(isfinite(view.energy_out_wh) && view.energy_out_wh >= 0.0);
        now += 1000;
    }

    /* What the service saves now reads back as the same document. */
    battery_engine_save(&engine, &saved);
    static char a[8192], b[8192];
    int n = battery_state__to_json(&saved, 1700000000000LL, a, sizeof a);
    FUZZ_ASSERT(n > 0);
    FUZZ_ASSERT(battery_state__from_json(a, &again) == GW_OK);
    FUZZ_ASSERT(again.pack_count == saved.pack_count);
    int m = battery_state__to_json(&again, 1700000000000LL, b, sizeof b);
    FUZZ_ASSERT(m == n && memcmp(a, b, (size_t)n) == 0);
    return 0;
}
