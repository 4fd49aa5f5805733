/* Benchmark of the battery engine (portable core of the battery service): microseconds per
 * step (every pack's sample through the plausibility gate, one charge-control step per pack,
 * the aggregation into the bank) for 1, 4 and 16 packs. Median of 5 runs. Figures only. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "battery_engine.h"
#include "bench_util.h"

#define RUNS 5
#define STEPS 20000

static void make_sample(struct bms_live_data *d, uint8_t id, unsigned k)
{
    memset(d, 0, sizeof *d);
    d->battery_id = id;
    d->valid = true;
    d->cell_count = 16;
    for (unsigned i = 0; i < 16; i++)
        d->cell_mv_x10[i] = (uint16_t)(33000 + i * 7 + (k % 50));
    d->pack_voltage_v = 52.9f + (float)(k % 50) * 0.0016f;
    d->pack_current_a = 20.0f + (float)(k % 7);
    d->temp_dc[1] = 200;
    d->temp_present[1] = true;
    d->soc_ppm = 60000000u;
    d->soh_raw = 50000;
    d->soh_valid = true;
    d->online_status = 0x91;
    d->lifetime_s = 1000 + k;
}

int main(void)
{
    static const unsigned sizes[] = { 1, 4, 16 };
    struct battery_engine *e = malloc(sizeof *e);
    struct battery_view *v = malloc(sizeof *v);
    if (!e || !v)
        return 1;
    printf("battery engine: one step = every pack's sample fed + charge control per pack + bank aggregation\n");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        unsigned n = sizes[s];
        double feed_us[RUNS], step_us[RUNS];
        for (int r = 0; r < RUNS; r++) {
            struct battery_engine_config cfg;
            battery_engine_default_config(&cfg);
            cfg.pack_count = (uint8_t)n;
            for (unsigned i = 0; i < n; i++) {
                cfg.packs[i].id = (uint8_t)i;
                cfg.packs[i].capacity_ah = 100.0f + (float)i * 10.0f;
            }
            if (battery_engine_init(e, &cfg))
                return 1;
            double feed = 0.0, step = 0.0;
            uint64_t now = 1000;
            struct bms_live_data d;
            for (unsigned k = 0; k < STEPS; k++) {
                now += 1000;
                double t0 = bench_now_us();
                for (unsigned i = 0; i < n; i++) {
                    make_sample(&d, (uint8_t)i, k);
                    battery_engine_feed_sample(e, &d, now);
                }
                double t1 = bench_now_us();
                battery_engine_step(e, now, v);
                double t2 = bench_now_us();
                feed += t1 - t0;
                step += t2 - t1;
            }
            feed_us[r] = feed / STEPS;
            step_us[r] = step / STEPS;
        }
        printf("  %2u pack%s: step %.2f us, samples in %.2f us (median of %d x %d steps; view %zu bytes)\n", n,
               n == 1 ? " " : "s", bench_median(step_us, RUNS), bench_median(feed_us, RUNS), RUNS, STEPS,
               sizeof *v);
    }
    free(e);
    free(v);
    return 0;
}
