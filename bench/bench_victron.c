/* Benchmark of the Victron encoder and charge control: ns to derive the 0x35A flags and encode
 * one full frame set (live + identity, 19 frames) per sample, against a baseline of copying the
 * same 19 frames measured in the same run; and ns per charge_control_step on a sample that
 * changes every iteration. Median of 5 runs. Prints figures only, never fails on speed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "charge_control.h"
#include "victron.h"
#include "bench_util.h"

#define RUNS 5
#define ITERS 200000

static void make_live(struct bms_live_data *d)
{
    memset(d, 0, sizeof *d);
    d->valid = true;
    d->cell_count = 16;
    for (unsigned i = 0; i < 16; i++)
        d->cell_mv_x10[i] = (uint16_t)(33000 + i * 7);
    d->min_cell_mv = 3300;
    d->max_cell_mv = 3310;
    d->min_cell_index = 1;
    d->max_cell_index = 16;
    d->cell_spread_mv_x10 = 105;
    d->pack_voltage_v = 52.9f;
    d->pack_current_a = 20.6f;
    for (unsigned s = 0; s < BMS_TEMP_SENSORS; s++) {
        d->temp_dc[s] = (int16_t)(250 + s * 10);
        d->temp_present[s] = true;
    }
    d->soc_ppm = 89000000u;
    d->soh_raw = 50000;
    d->soh_valid = true;
    d->online_status = BMS_STATUS_CHARGING;
    d->lifetime_s = 100000;
}

int main(void)
{
    struct bms_live_data live;
    make_live(&live);
    struct victron_inputs in;
    victron_inputs_init(&in);
    strcpy(in.identity.manufacturer, "Enepaq");
    strcpy(in.identity.battery_name, "TinyBMS");
    strcpy(in.identity.family, "TinyBMS");
    strcpy(in.identity.serial, "0123456789ABCDEF");
    struct victron_alarm_thresholds thr;
    victron_alarm_thresholds_defaults(&thr, 0);
    in.cvl_v = 55.2f;
    in.ccl_a = 100.0f;
    in.dcl_a = 150.0f;
    in.discharge_v = 46.4f;
    in.soc_pct = 89.0f;
    in.soh_pct = 100.0f;
    in.voltage_v = live.pack_voltage_v;
    in.current_a = live.pack_current_a;
    in.temp_c = 27.0f;
    in.modules = (struct victron_modules){ .ok = 1 };
    in.min_cell_v = 3.300f;
    in.max_cell_v = 3.310f;
    in.min_temp_c = 25.0f;
    in.max_temp_c = 27.0f;
    strcpy(in.min_cell_id, "C1");
    strcpy(in.max_cell_id, "C16");
    strcpy(in.min_temp_id, "T1");
    strcpy(in.max_temp_id, "T2");
    in.energy_in_wh = 1234567.0;
    in.energy_out_wh = 987654.0;
    in.capacity_ah = 280.0f;
    in.installed_capacity_ah = 280.0f;
    static struct victron_frame frames[VICTRON_MAX_FRAMES], copy[VICTRON_MAX_FRAMES];
    size_t count = 0;
    volatile unsigned sink = 0;

    double encode_ns[RUNS], copy_ns[RUNS], step_ns[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now_s();
        for (unsigned i = 0; i < ITERS; i++) {
            live.cell_mv_x10[i & 15] = (uint16_t)(33000 + (i & 63));
            in.ccl_a = (float)(i % 1000) * 0.1f;
            victron_alarms_from_bms(&live, NULL, &thr, true, &in.alarms);
            victron_encode_all(&in, frames, VICTRON_MAX_FRAMES, &count);
            sink += frames[(i % count)].data[0];
        }
        double t1 = bench_now_s();
        for (unsigned i = 0; i < ITERS; i++) {
            frames[i % VICTRON_MAX_FRAMES].data[1] = (uint8_t)i;
            memcpy(copy, frames, sizeof frames);
            sink += copy[i % VICTRON_MAX_FRAMES].data[1];
        }
        double t2 = bench_now_s();
        encode_ns[r] = (t1 - t0) / ITERS * 1e9;
        copy_ns[r] = (t2 - t1) / ITERS * 1e9;

        struct gw_config_charge cfg;
        gw_config_charge_defaults(&cfg, GW_CHEM_LFP);
        struct charge_control cc;
        charge_control_init(&cc, &cfg);
        struct bms_settings settings;
        memset(&settings, 0, sizeof settings);
        settings.valid = true;
        settings.raw[315 - 300] = 3650;
        settings.raw[316 - 300] = 2800;
        settings.raw[318 - 300] = 150;
        settings.present_mask = (1ull << 15) | (1ull << 16) | (1ull << 18);
        struct charge_inputs ci = { &live, &settings, NULL };
        struct charge_limits lim;
        double t3 = bench_now_s();
        for (unsigned i = 0; i < ITERS; i++) {
            live.cell_mv_x10[i & 15] = (uint16_t)(34000 + (i & 1023));
            charge_control_step(&cc, &ci, (uint64_t)i * 1000u, &lim);
            sink += (unsigned)lim.ccl_a;
        }
        step_ns[r] = (bench_now_s() - t3) / ITERS * 1e9;
    }
    double enc = bench_median(encode_ns, RUNS), cpy = bench_median(copy_ns, RUNS), step = bench_median(step_ns, RUNS);
    printf("bench_victron: alarms + encode_all (%zu frames): %.0f ns per sample (bench_median of %d)\n",
           count, enc, RUNS);
    printf("bench_victron: baseline memcpy of the same frames: %.0f ns (encode = %.1fx baseline)\n",
           cpy, cpy > 0 ? enc / cpy : 0.0);
    printf("bench_victron: charge_control_step: %.0f ns per step (bench_median of %d)\n", step, RUNS);
    return sink == 0xFFFFFFFFu ? 1 : 0;
}
