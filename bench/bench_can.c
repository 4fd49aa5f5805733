/* bench_can: CAN publisher and slcan transport figures on a pseudo-terminal.
 *  1. latency from publishing a battery view on the event bus to its 0x356 frame read on the other
 *     end of the slcan pty (p50 / p99), with live_period_ms = 100 so the schedule wait is
 *     bounded; the figure includes that wait (what a GX sees), and the same run reports the
 *     wait-free part: time from the cycle's first frame (0x351) to the 0x356 line.
 *  2. frames/s through the slcan transport (encode + non-blocking write with deadline), against
 *     a baseline of raw write() of pre-encoded lines on the same pty.
 *  3. several packs: 1, 2 and 4 packs' samples through the battery engine (plausibility, one charge
 *     control per pack, aggregation; a view published after each sample, as the battery service
 *     does) to the publisher's next cycle: the data age of the oldest sample at the 0x351 line and
 *     at the 0x356 line that carry the new aggregate, with the samples back to back (pollers in
 *     phase) and spread over 100 ms (pollers out of phase); plus the engine's own time per
 *     sample (feed + step). The hand-made one-view figure of 1. is the baseline.
 * Prints medians of several runs; never fails on speed. */
#define _GNU_SOURCE
#include "battery_engine.h"
#include "can_publisher.h"
#include "can_transport.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_config.h"
#include "gw_error.h"
#include "gw_log.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "bench_util.h"

static int open_pty(int *master, char *name)
{
    int slave;
    if (openpty(master, &slave, name, NULL, NULL) != 0)
        return -1;
    struct termios tio;
    tcgetattr(*master, &tio);
    cfmakeraw(&tio);
    tcsetattr(*master, TCSANOW, &tio);
    close(slave); /* the transport opens it by name */
    return 0;
}

/* Reads one '\r'-terminated line from fd into line (bounded), waiting up to timeout_ms. */
static int read_line(int fd, char *line, size_t cap, int timeout_ms, char *buf, size_t *buf_len)
{
    double deadline = bench_now_us() + timeout_ms * 1000.0;
    for (;;) {
        char *cr = memchr(buf, '\r', *buf_len);
        if (cr) {
            size_t n = (size_t)(cr - buf);
            size_t copy = n < cap - 1 ? n : cap - 1;
            memcpy(line, buf, copy);
            line[copy] = '\0';
            memmove(buf, cr + 1, *buf_len - n - 1);
            *buf_len -= n + 1;
            return (int)copy;
        }
        if (*buf_len >= 4096)
            *buf_len = 0; /* no line end in 4 KiB: junk */
        int left = (int)((deadline - bench_now_us()) / 1000.0);
        if (left <= 0)
            return -1;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, left) <= 0)
            continue;
        ssize_t r = read(fd, buf + *buf_len, 4096 - *buf_len);
        if (r > 0)
            *buf_len += (size_t)r;
    }
}

/* ---- 1. sample -> 0x356 latency -------------------------------------------------------- */

/* One battery view (what the battery service publishes) with this voltage. */
static void feed(struct event_bus *bus, float volts)
{
    static struct battery_view v;
    memset(&v, 0, sizeof v);
    v.seq++;
    v.timestamp_ms = gw_now_ms();
    v.pack_count = v.online_count = 1;
    v.voltage_v = volts;
    v.current_a = 10.0f;
    v.soc_pct = 50.0f;
    v.soh_pct = 100.0f;
    v.soh_valid = true;
    v.cell_count = 16;
    v.min_cell_v = v.max_cell_v = 3.3f;
    v.have_temp = true;
    v.temp_min_c = v.temp_max_c = 25.0f;
    v.alarms.online = true;
    v.modules.ok = 1;
    v.limits = (struct battery_limits){ .valid = true, .cvl_v = 55.2f, .ccl_a = 100.0f, .dcl_a = 150.0f };
    event_bus_publish(bus, EVENT_BATTERY_UPDATE, &v, sizeof v, 1000);
}

static int latency_run(size_t samples, double *lat_us, double *path_us, size_t *got)
{
    int master;
    char name[64], spec[96];
    if (open_pty(&master, name) != 0)
        return -1;
    snprintf(spec, sizeof spec, "slcan:%s", name);
    struct event_bus *bus = NULL;
    event_bus_create(NULL, &bus);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    cfg.can.live_period_ms = 100;
    struct can_publisher_options o = { .config = &cfg, .bus = bus, .transport_spec = spec };
    struct can_publisher *p = NULL;
    if (can_publisher_create(&o, &p) != GW_OK || can_publisher_start(p) != GW_OK) {
        can_publisher_destroy(p);
        event_bus_destroy(bus);
        close(master);
        return -1;
    }
    char buf[4096], line[128];
    size_t buf_len = 0;
    *got = 0;
    for (size_t k = 0; k < samples; k++) {
        /* A distinct voltage per sample: 40.00 V + k x 0.01 V (0x356 carries 0.01 V). */
        unsigned centivolts = 4000 + (unsigned)(k % 2000);
        char want[16];
        snprintf(want, sizeof want, "%02X%02X", centivolts & 0xFF, centivolts >> 8);
        /* Publish at a spread of phases of the 100 ms schedule (right after a frame, every
         * sample would wait a full period). */
        gw_sleep_ms((uint32_t)((k * 37) % 100));
        double t0 = bench_now_us();
        double t351 = 0;
        feed(bus, (float)centivolts / 100.0f);
        for (;;) {
            if (read_line(master, line, sizeof line, 3000, buf, &buf_len) < 0)
                break;
            double t = bench_now_us();
            if (strncmp(line, "t351", 4) == 0)
                t351 = t;
            if (strncmp(line, "t3568", 5) == 0 && strncmp(line + 5, want, 4) == 0) {
                lat_us[*got] = t - t0;
                path_us[*got] = t351 > 0 ? t - t351 : 0;
                (*got)++;
                break;
            }
        }
    }
    can_publisher_destroy(p);
    event_bus_destroy(bus);
    close(master);
    return 0;
}

/* ---- 3. several packs through the battery engine --------------------------------------- */

/* A plausible 16-cell sample of pack id at pack voltage volts (every cell volts / 16). */
static void pack_sample(struct bms_live_data *d, uint8_t id, float volts, uint32_t lifetime_s)
{
    memset(d, 0, sizeof *d);
    d->battery_id = id;
    d->valid = true;
    d->cell_count = 16;
    uint16_t cell = (uint16_t)(volts / 16.0f * 10000.0f + 0.5f);
    for (unsigned i = 0; i < 16; i++)
        d->cell_mv_x10[i] = cell;
    d->min_cell_mv = d->max_cell_mv = (uint16_t)(cell / 10);
    d->min_cell_index = 1;
    d->max_cell_index = 2;
    d->pack_voltage_v = (float)cell * 16.0f / 10000.0f;
    d->pack_current_a = 5.0f;
    d->temp_dc[BMS_TEMP_INTERNAL] = 250;
    d->temp_present[BMS_TEMP_INTERNAL] = true;
    d->temp_dc[BMS_TEMP_EXT1] = 200;
    d->temp_present[BMS_TEMP_EXT1] = true;
    d->soc_ppm = 60000000u;
    d->soh_raw = 50000;
    d->soh_valid = true;
    d->online_status = 0x91;
    d->lifetime_s = lifetime_s;
}

/* One run: `rounds` rounds; in round k every pack reports pack voltage 48.00 + (k % 200) x
 * 0.04 V (16 cells of a 0.0025 V step), fed to the engine one pack after the other (stagger_ms
 * apart), the engine stepped and the view published after each. The aggregate (the mean)
 * reaches that value only once every pack has reported, and each partial mean differs from it
 * by a multiple of 0.01 V: the first 0x356 carrying it is the one built from the whole round.
 * age351 / age356: from the round's first sample to the 0x351 line of that cycle and to its
 * 0x356 line; engine_us: time of feed + step per sample. */
static int packs_run(unsigned packs, size_t rounds, unsigned stagger_ms, double *age351, double *age356,
                     double *engine_us, size_t *got, size_t *engine_n)
{
    int master;
    char name[64], spec[96];
    if (open_pty(&master, name) != 0)
        return -1;
    snprintf(spec, sizeof spec, "slcan:%s", name);
    struct event_bus *bus = NULL;
    event_bus_create(NULL, &bus);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    cfg.can.live_period_ms = 100;
    struct can_publisher_options o = { .config = &cfg, .bus = bus, .transport_spec = spec };
    struct can_publisher *p = NULL;
    struct battery_engine *e = calloc(1, sizeof *e);
    static struct battery_view v;
    struct battery_engine_config ec;
    battery_engine_default_config(&ec);
    ec.pack_count = (uint8_t)packs;
    for (unsigned i = 0; i < packs; i++) {
        ec.packs[i].id = (uint8_t)i;
        ec.packs[i].capacity_ah = 100.0f + 50.0f * (float)i;
    }
    if (!e || battery_engine_init(e, &ec) != GW_OK || can_publisher_create(&o, &p) != GW_OK ||
        can_publisher_start(p) != GW_OK) {
        can_publisher_destroy(p);
        event_bus_destroy(bus);
        free(e);
        close(master);
        return -1;
    }
    char buf[4096], line[128];
    size_t buf_len = 0;
    uint32_t lifetime = 1000;
    *got = *engine_n = 0;
    for (size_t k = 0; k <= rounds; k++) {
        unsigned centivolts = 4800 + (unsigned)(k % 200) * 4;
        char want[16];
        snprintf(want, sizeof want, "%02X%02X", centivolts & 0xFF, centivolts >> 8);
        gw_sleep_ms((uint32_t)((k * 37) % 100)); /* a spread of phases of the 100 ms schedule */
        lifetime++;
        double t0 = bench_now_us();
        for (unsigned i = 0; i < packs; i++) {
            if (i && stagger_ms)
                gw_sleep_ms(stagger_ms);
            struct bms_live_data d;
            pack_sample(&d, (uint8_t)i, (float)centivolts / 100.0f, lifetime);
            double te = bench_now_us();
            uint64_t now = gw_now_ms();
            battery_engine_feed_sample(e, &d, now);
            battery_engine_step(e, now, &v);
            if (k > 0)
                engine_us[(*engine_n)++] = bench_now_us() - te;
            event_bus_publish(bus, EVENT_BATTERY_UPDATE, &v, sizeof v, 1000);
        }
        if (k == 0)
            continue; /* the first round starts the engine (limits from the first step) */
        double t351 = 0;
        for (;;) {
            if (read_line(master, line, sizeof line, 3000, buf, &buf_len) < 0)
                break;
            double t = bench_now_us();
            if (strncmp(line, "t351", 4) == 0)
                t351 = t;
            if (strncmp(line, "t3568", 5) == 0 && strncmp(line + 5, want, 4) == 0) {
                age351[*got] = t351 > 0 ? t351 - t0 : t - t0;
                age356[*got] = t - t0;
                (*got)++;
                break;
            }
        }
    }
    can_publisher_destroy(p);
    event_bus_destroy(bus);
    free(e);
    close(master);
    return 0;
}

static void packs_bench(double baseline_p50_ms)
{
    enum { RUNS = 3, ROUNDS = 60 };
    static const unsigned sizes[] = { 1, 2, 4 };
    static double a351[RUNS * ROUNDS], a356[RUNS * ROUNDS], eng[RUNS * ROUNDS * 4];
    for (unsigned spread = 0; spread < 2; spread++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            unsigned n = sizes[s];
            unsigned stagger = spread && n > 1 ? 100u / n : 0u;
            if (spread && n == 1)
                continue;
            double run_p50[RUNS], run_p99[RUNS];
            size_t total = 0, total_e = 0;
            int runs_ok = 0;
            for (int r = 0; r < RUNS; r++) {
                size_t got = 0, got_e = 0;
                if (packs_run(n, ROUNDS, stagger, a351 + total, a356 + total, eng + total_e, &got, &got_e) != 0 ||
                    got == 0) {
                    printf("bench_can: %u-pack run %d failed\n", n, r);
                    continue;
                }
                double tmp[ROUNDS];
                memcpy(tmp, a351 + total, got * sizeof tmp[0]);
                run_p50[runs_ok] = bench_quantile(tmp, got, 0.5);
                run_p99[runs_ok] = bench_quantile(tmp, got, 0.99);
                runs_ok++;
                total += got;
                total_e += got_e;
            }
            if (!total)
                continue;
            double p50_351 = bench_median(run_p50, runs_ok) / 1000.0;
            double p99_351 = bench_median(run_p99, runs_ok) / 1000.0;
            printf("bench_can: %u pack%s, samples %s: oldest sample -> 0x351 p50 %.1f ms, p99 %.1f ms (median of "
                   "%d runs x %d rounds); -> 0x356 p50 %.1f ms (all rounds); engine feed+step %.1f us per "
                   "sample (median); ratio to the one-view baseline (p50 %.1f ms to 0x356) %.2f\n",
                   n, n > 1 ? "s" : "", stagger ? "spread over 100 ms" : "back to back", p50_351, p99_351,
                   runs_ok, ROUNDS, bench_quantile(a356, total, 0.5) / 1000.0, bench_quantile(eng, total_e, 0.5),
                   baseline_p50_ms, baseline_p50_ms > 0 ? bench_quantile(a356, total, 0.5) / 1000.0 / baseline_p50_ms
                                                        : 0.0);
            fflush(stdout);
        }
    }
}

/* ---- 2. frames/s through slcan --------------------------------------------------------- */

struct drain {
    int fd;
    atomic_bool stop;
    atomic_ulong lines;
};

static void *drain_main(void *arg)
{
    struct drain *d = arg;
    char buf[65536];
    while (!atomic_load(&d->stop)) {
        struct pollfd pfd = { .fd = d->fd, .events = POLLIN };
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        ssize_t n = read(d->fd, buf, sizeof buf);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\r')
                atomic_fetch_add(&d->lines, 1);
    }
    return NULL;
}

/* Returns frames/s; baseline = raw write() of the encoded lines when raw is true. */
static double throughput_run(size_t frames, bool raw)
{
    int master;
    char name[64], spec[96];
    if (open_pty(&master, name) != 0)
        return 0;
    snprintf(spec, sizeof spec, "slcan:%s", name);
    struct can_transport *t = NULL;
    if (can_transport_open(spec, 500000, &t) != GW_OK) {
        close(master);
        return 0;
    }
    struct drain d = { .fd = master };
    pthread_t th;
    pthread_create(&th, NULL, drain_main, &d);
    struct can_frame_gw f = { .id = 0x356, .dlc = 8, .data = { 0x31, 0x16, 0xce, 0x00, 0x3e, 0x01, 0, 0 } };
    char line[CAN_SLCAN_LINE_MAX];
    int len = can_slcan_encode(&f, line, sizeof line);
    int fd = -1;
    if (raw)
        fd = open(name, O_WRONLY | O_NOCTTY);
    unsigned long start_lines = atomic_load(&d.lines); /* the C/S/O open lines */
    double t0 = bench_now_us();
    size_t sent = 0;
    for (size_t i = 0; i < frames; i++) {
        if (raw) {
            if (write(fd, line, (size_t)len) == len)
                sent++;
        } else if (can_transport_send(t, &f, 1000) == GW_OK) {
            sent++;
        }
    }
    while (atomic_load(&d.lines) - start_lines < sent && bench_now_us() - t0 < 10e6)
        gw_sleep_ms(1);
    double elapsed = (bench_now_us() - t0) / 1e6;
    atomic_store(&d.stop, true);
    pthread_join(th, NULL);
    if (fd >= 0)
        close(fd);
    can_transport_close(t);
    close(master);
    return elapsed > 0 ? (double)sent / elapsed : 0;
}

int main(void)
{
    gw_log_set_level(GW_LOG_WARN);
    enum { RUNS = 3, SAMPLES = 70, FRAMES = 20000 };
    static double lat[RUNS * SAMPLES], path[RUNS * SAMPLES];
    double run_p50[RUNS], run_p99[RUNS], run_path[RUNS];
    size_t total = 0;
    double baseline_p50_ms = 0.0;
    for (int r = 0; r < RUNS; r++) {
        size_t got = 0;
        if (latency_run(SAMPLES, lat + total, path + total, &got) != 0 || got == 0) {
            printf("bench_can: latency run %d failed\n", r);
            continue;
        }
        double tmp[SAMPLES], tmp2[SAMPLES];
        memcpy(tmp, lat + total, got * sizeof tmp[0]);
        memcpy(tmp2, path + total, got * sizeof tmp2[0]);
        run_p50[r] = bench_quantile(tmp, got, 0.5);
        run_p99[r] = bench_quantile(tmp, got, 0.99);
        run_path[r] = bench_quantile(tmp2, got, 0.5);
        total += got;
    }
    if (total) {
        qsort(run_p50, RUNS, sizeof run_p50[0], bench_cmp_double);
        qsort(run_path, RUNS, sizeof run_path[0], bench_cmp_double);
        qsort(run_p99, RUNS, sizeof run_p99[0], bench_cmp_double);
        printf("bench_can: sample->0x356 on slcan pty (live period 100 ms, %zu samples, %d runs): "
               "p50 %.1f ms, p99 %.1f ms (all samples); median of run p50s %.1f ms, of run p99s %.1f ms\n",
               total, RUNS, bench_quantile(lat, total, 0.5) / 1000.0, bench_quantile(lat, total, 0.99) / 1000.0,
               run_p50[RUNS / 2] / 1000.0, run_p99[RUNS / 2] / 1000.0);
        printf("bench_can: cycle path 0x351 line -> 0x356 line (no schedule wait): median %.3f ms\n",
               run_path[RUNS / 2] / 1000.0);
        baseline_p50_ms = bench_quantile(lat, total, 0.5) / 1000.0;
    }
    fflush(stdout);
    packs_bench(baseline_p50_ms);
    double fps[RUNS], base[RUNS];
    for (int r = 0; r < RUNS; r++) {
        fps[r] = throughput_run(FRAMES, false);
        base[r] = throughput_run(FRAMES, true);
    }
    qsort(fps, RUNS, sizeof fps[0], bench_cmp_double);
    qsort(base, RUNS, sizeof base[0], bench_cmp_double);
    printf("bench_can: slcan transport %.0f frames/s (median of %d x %d); raw pty write baseline %.0f "
           "lines/s; ratio %.2f\n", fps[RUNS / 2], RUNS, FRAMES, base[RUNS / 2],
           base[RUNS / 2] > 0 ? fps[RUNS / 2] / base[RUNS / 2] : 0.0);
    fflush(stdout);
    printf("bench_can: for scale, a 115200-baud slcan adapter carries ~%d such lines/s; a 500 kbit/s "
           "bus ~%d 8-byte frames/s\n", 115200 / 10 / 22, 500000 / 130);
    return 0;
}
