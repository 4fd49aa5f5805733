/* Benchmark of the simulator core: answers per second of the BMS-side responder for the live
 * refresh (0x03, registers 0..55) against a baseline of the bare CRC over the same request and
 * reply bytes measured in the same run, and battery-model steps per second (16 cells, 1 s steps),
 * i.e. how much faster than real time --speed can run. Median of 5 runs; prints figures only. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "battery_model.h"
#include "sim_protocol.h"
#include "sim_registers.h"
#include "bench_util.h"

#define RUNS 5
#define ANSWERS 200000
#define STEPS 2000000

int main(void)
{
    static struct sim_bms bms;
    struct battery_model_config cfg;
    battery_model_default_config(&cfg, BATTERY_LFP);
    if (sim_bms_init(&bms, &cfg, false) != 0)
        return 1;
    uint8_t req[] = { 0xAA, 0x03, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00 };
    uint16_t req_crc = sim_crc16(req, 6);
    req[6] = (uint8_t)(req_crc & 0xFF);
    req[7] = (uint8_t)(req_crc >> 8);
    uint8_t reply[SIM_REPLY_MAX];
    volatile size_t sink = 0;
    double answer_rate[RUNS], crc_rate[RUNS], step_rate[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now_s();
        for (int i = 0; i < ANSWERS; i++)
            sink += sim_protocol_handle(&bms, req, sizeof req, reply, sizeof reply);
        double t1 = bench_now_s();
        for (int i = 0; i < ANSWERS; i++)
            sink += sim_crc16(req, 6) + sim_crc16(reply, 115);
        double t2 = bench_now_s();
        answer_rate[r] = ANSWERS / (t1 - t0);
        crc_rate[r] = ANSWERS / (t2 - t1);

        struct battery_model m;
        battery_model_init(&m, &cfg);
        double t3 = bench_now_s();
        for (int i = 0; i < STEPS; i++)
            battery_model_step(&m, (i / 100000) % 2 ? 56.0f : -56.0f, 1.0f);
        double t4 = bench_now_s();
        step_rate[r] = STEPS / (t4 - t3);
        sink += (size_t)m.lifetime_s;
    }
    double a = bench_median(answer_rate, RUNS), c = bench_median(crc_rate, RUNS), s = bench_median(step_rate, RUNS);
    printf("sim 0x03 live answer (56 regs):  %.0f answers/s (%.2f us each)\n", a, 1e6 / a);
    printf("baseline CRC of request+reply:   %.0f /s; answer costs %.1fx the CRC alone\n", c, c / a);
    printf("battery model 1 s steps:         %.0f steps/s = model time up to %.0fx real time\n", s, s);
    printf("(sink %zu)\n", (size_t)sink % 10);
    return 0;
}
