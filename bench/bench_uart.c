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

#include "bench_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LIVE_REQUEST_BYTES 8
#define LIVE_REPLY_BYTES (5 + 2 * 56)
#define LINE_BYTES_PER_S 11520.0
#define BMS_LATENCY_MS 2.0

/* Runs uart_bms on a fresh simulator for n samples; returns the median cycle in µs. */
static int run_cycles(const char *const *sim_args, int n, double *median_us, double *p99_us)
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
    double *cycles = calloc((size_t)n, sizeof *cycles);
    struct uart_bms_stats st;
    uint64_t last_samples = 0;
    int got = 0;
    uint64_t deadline = gw_now_ms() + (uint64_t)n * 400 + 20000;
    /* Skip the first 10 samples: start-up (wake-up, slow reads). */
    while (got < n && gw_now_ms() < deadline) {
        gw_sleep_ms(20);
        uart_bms_get_stats(ub, &st);
        if (st.samples == last_samples)
            continue;
        last_samples = st.samples;
        if (st.samples < 10)
            continue;
        cycles[got++] = (double)st.last_cycle_us;
    }
    uart_bms_get_stats(ub, &st);
    uart_bms_destroy(ub);
    sim_process_stop(&sim);
    if (got < n / 2) {
        free(cycles);
        return -1;
    }
    *median_us = bench_quantile(cycles, (size_t)got, 0.5);
    *p99_us = bench_quantile(cycles, (size_t)got, 0.99);
    if (st.timeouts || st.crc_errors)
        printf("  (note: %llu timeouts, %llu CRC errors during the run)\n", (unsigned long long)st.timeouts,
               (unsigned long long)st.crc_errors);
    free(cycles);
    return 0;
}

/* CPU time of every thread of a process, in ns (/proc/PID/task/TID/schedstat, first field). */
static double process_cpu_ns(pid_t pid)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char stat_path[160];
        snprintf(stat_path, sizeof stat_path, "/proc/%d/task/%.20s/schedstat", (int)pid, e->d_name);
        FILE *f = fopen(stat_path, "r");
        unsigned long long ns = 0;
        if (f && fscanf(f, "%llu", &ns) == 1)
            total += (double)ns;
        if (f)
            fclose(f);
    }
    closedir(d);
    return total;
}

/* Returns the daemon's CPU use in ns per second of wall time, or -1. */
static double daemon_figures(int poll_ms, int seconds)
{
    char exe[512];
    const char *build = getenv("GW_BUILD_DIR");
    snprintf(exe, sizeof exe, "%s/tinybms-gw", build ? build : ".");
    char dir[] = "/tmp/tinybms-bench-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
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
    double cpu0 = process_cpu_ns(pid);
    gw_sleep_ms((uint32_t)seconds * 1000);
    double cpu1 = process_cpu_ns(pid);
    char path[64];
    long hwm_kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &hwm_kb) == 1)
            break;
    if (f)
        fclose(f);
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    double cpu_pct = 100.0 * (cpu1 - cpu0) / 1e9 / seconds;
    printf("daemon polling every %4d ms: peak RSS %.1f MiB, CPU %.3f %% of one core = %.0f us per poll "
           "(over %d s, exit %d)\n",
           poll_ms, hwm_kb / 1024.0, cpu_pct, (cpu1 - cpu0) / 1e3 / (seconds * 1000.0 / poll_ms), seconds,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
    }
    return (cpu1 - cpu0) / seconds;
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERROR);
    double physical_us = ((LIVE_REQUEST_BYTES + LIVE_REPLY_BYTES) / LINE_BYTES_PER_S * 1000.0 + BMS_LATENCY_MS) * 1000.0;
    const char *paced[] = { "--pace", "--latency-ms", "2", NULL };
    double med, p99;
    if (run_cycles(paced, 200, &med, &p99) == 0)
        printf("live refresh (regs 0..55) paced at 11,520 B/s, 2 ms latency: median %.2f ms, p99 %.2f ms; "
               "physical limit %.2f ms; ratio %.2f (target <= 1.3)\n",
               med / 1000, p99 / 1000, physical_us / 1000, med / physical_us);
    else
        printf("live refresh paced: FAILED to run\n");
    const char *fast[] = { "--latency-ms", "0", NULL };
    if (run_cycles(fast, 300, &med, &p99) == 0)
        printf("live refresh unpaced, 0 ms latency (pty + simulator + gateway): median %.0f us, p99 %.0f us per cycle\n",
               med, p99);
    else
        printf("live refresh unpaced: FAILED to run\n");
    double slow = daemon_figures(1000, 10);
    double fast_cpu = daemon_figures(100, 10);
    if (slow >= 0 && fast_cpu >= 0)
        printf("gateway CPU per live poll (daemon, 100 ms vs 1 s polling: 9 more polls/s): %.0f us\n",
               (fast_cpu - slow) / 9.0 / 1e3);
    return 0;
}
