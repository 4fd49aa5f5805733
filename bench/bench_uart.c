/* UART benchmarks (figures, never assertions):
 *  1. full live refresh against tinybms-sim pacing at the line rate with ~2 ms latency: time per
 *     poll cycle and its ratio to the physical limit (request + reply bytes at 11,520 B/s + 2 ms);
 *  2. the gateway's own CPU per cycle with pacing and latency off (µs);
 *  3. the daemon's peak RSS and CPU % of one core polling at 1 s and at 100 ms. */
#define _GNU_SOURCE
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "sim_process.h"
#include "uart_bms.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define LIVE_REQUEST_BYTES 8
#define LIVE_REPLY_BYTES (5 + 2 * 56)
#define LINE_BYTES_PER_S 11520.0
#define BMS_LATENCY_MS 2.0

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Runs uart_bms on a fresh simulator for n samples; returns the median cycle in µs. */
static int run_cycles(const char *const *sim_args, int n, double *median_us, double *p99_us, double *cpu_us)
{
    struct sim_process sim;
    if (sim_process_start(&sim, sim_args, 10000))
        return -1;
    struct uart_bms_options o;
    uart_bms_default_options(&o);
    snprintf(o.device, sizeof o.device, "%s", sim.pty_path);
    o.poll_interval_ms = 100;
    o.slow_poll_interval_s = 3600; /* measure live refreshes only (slow reads happen at start) */
    struct uart_bms *ub;
    if (uart_bms_create(&o, &ub) || uart_bms_start(ub)) {
        sim_process_stop(&sim);
        return -1;
    }
    uint64_t *cycles = calloc((size_t)n, sizeof *cycles);
    struct uart_bms_stats st;
    uint64_t last_samples = 0;
    int got = 0;
    uint64_t deadline = gw_now_ms() + (uint64_t)n * 400 + 20000;
    double cpu0 = 0;
    /* Skip the first 10 samples: start-up (wake-up, slow reads). */
    while (got < n && gw_now_ms() < deadline) {
        gw_sleep_ms(20);
        uart_bms_get_stats(ub, &st);
        if (st.samples == last_samples)
            continue;
        last_samples = st.samples;
        if (st.samples == 10)
            cpu0 = cpu_seconds();
        if (st.samples > 10)
            cycles[got++] = st.last_cycle_us;
    }
    double cpu1 = cpu_seconds();
    uart_bms_get_stats(ub, &st);
    uart_bms_destroy(ub);
    sim_process_stop(&sim);
    if (got < n / 2) {
        free(cycles);
        return -1;
    }
    qsort(cycles, (size_t)got, sizeof *cycles, cmp_u64);
    *median_us = (double)cycles[got / 2];
    *p99_us = (double)cycles[(got * 99) / 100];
    *cpu_us = got ? (cpu1 - cpu0) * 1e6 / got : 0;
    if (st.timeouts || st.crc_errors)
        printf("  (note: %llu timeouts, %llu CRC errors during the run)\n", (unsigned long long)st.timeouts,
               (unsigned long long)st.crc_errors);
    free(cycles);
    return 0;
}

static void daemon_figures(int poll_ms, int seconds)
{
    char exe[512];
    const char *build = getenv("GW_BUILD_DIR");
    snprintf(exe, sizeof exe, "%s/tinybms-gw", build ? build : ".");
    char dir[] = "/tmp/tinybms-bench-XXXXXX";
    if (!mkdtemp(dir))
        return;
    char poll[16];
    snprintf(poll, sizeof poll, "%d", poll_ms);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(exe, exe, "--simulate", "--quiet", "--data-dir", dir, "--poll-ms", poll, (char *)NULL);
        _exit(127);
    }
    gw_sleep_ms(2000); /* start-up */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    long hz = sysconf(_SC_CLK_TCK);
    unsigned long long t0 = 0, t1 = 0;
    FILE *f = fopen(path, "r");
    unsigned long ut, st;
    if (f && fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        t0 = ut + st;
    if (f)
        fclose(f);
    gw_sleep_ms((uint32_t)seconds * 1000);
    f = fopen(path, "r");
    if (f && fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        t1 = ut + st;
    if (f)
        fclose(f);
    long hwm_kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &hwm_kb) == 1)
            break;
    if (f)
        fclose(f);
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    double cpu_pct = 100.0 * (double)(t1 - t0) / (double)hz / seconds;
    printf("daemon polling every %4d ms: peak RSS %.1f MiB, CPU %.2f %% of one core (over %d s, exit %d)\n",
           poll_ms, hwm_kb / 1024.0, cpu_pct, seconds, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
    }
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERROR);
    double physical_us = ((LIVE_REQUEST_BYTES + LIVE_REPLY_BYTES) / LINE_BYTES_PER_S * 1000.0 + BMS_LATENCY_MS) * 1000.0;
    const char *paced[] = { "--pace", "--latency-ms", "2", NULL };
    double med, p99, cpu;
    if (run_cycles(paced, 200, &med, &p99, &cpu) == 0)
        printf("live refresh (regs 0..55) paced at 11,520 B/s, 2 ms latency: median %.2f ms, p99 %.2f ms; "
               "physical limit %.2f ms; ratio %.2f (target <= 1.3)\n",
               med / 1000, p99 / 1000, physical_us / 1000, med / physical_us);
    else
        printf("live refresh paced: FAILED to run\n");
    const char *fast[] = { "--latency-ms", "0", NULL };
    if (run_cycles(fast, 300, &med, &p99, &cpu) == 0)
        printf("live refresh unpaced, 0 ms latency: median %.0f us, p99 %.0f us per cycle; gateway CPU %.0f us per "
               "cycle (poller + decode + bus publish)\n",
               med, p99, cpu);
    else
        printf("live refresh unpaced: FAILED to run\n");
    daemon_figures(1000, 10);
    daemon_figures(100, 10);
    return 0;
}
