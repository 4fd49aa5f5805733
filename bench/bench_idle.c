/* Idle wake-ups of the daemon (figures, never assertions): tinybms-gw --simulate with the usual
 * outputs (CAN to a candump log, MQTT to a local mosquitto when one is installed, alerts and
 * history in a temporary data directory) runs untouched for BENCH_IDLE_S seconds (default 10)
 * after a start-up pause; the voluntary context switches of each of its threads
 * (/proc/PID/task/TID/status) over that window are its wake-ups. Printed per thread (name from
 * /proc/.../comm) and in total, the median of BENCH_IDLE_RUNS runs (default 3).
 *
 * Environment: TINYBMS_GW (the daemon; default $GW_BUILD_DIR/tinybms-gw), BENCH_IDLE_BASE (a
 * second daemon, e.g. an older build, measured in the same run: the ratio is printed),
 * GW_MOSQUITTO (the broker; default /usr/sbin/mosquitto). The BMS poll (1 s) and the outputs
 * it feeds are events: the figure is what the daemon costs per second when nothing else
 * happens, not zero. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define STARTUP_S 3

struct thread_sample {
    int tid;
    char name[32];
    unsigned long long voluntary, involuntary;
};

static void sleep_s(double s)
{
    struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Reads every thread of pid; returns how many. */
static int sample_threads(pid_t pid, struct thread_sample *out, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        if (e->d_name[0] == '.')
            continue;
        struct thread_sample *t = &out[n];
        memset(t, 0, sizeof *t);
        t->tid = atoi(e->d_name);
        char p[128];
        snprintf(p, sizeof p, "/proc/%d/task/%d/comm", (int)pid, t->tid);
        FILE *f = fopen(p, "r");
        if (f) {
            if (fgets(t->name, sizeof t->name, f))
                t->name[strcspn(t->name, "\n")] = '\0';
            fclose(f);
        }
        snprintf(p, sizeof p, "/proc/%d/task/%d/status", (int)pid, t->tid);
        f = fopen(p, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f)) {
            sscanf(line, "voluntary_ctxt_switches: %llu", &t->voluntary);
            sscanf(line, "nonvoluntary_ctxt_switches: %llu", &t->involuntary);
        }
        if (f)
            fclose(f);
        n++;
    }
    closedir(d);
    return n;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static pid_t spawn(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* One run of the daemon exe: total wake-ups per second (and per thread when verbose), or -1. */
static double run_once(const char *exe, int mqtt_port, double seconds, bool verbose)
{
    char dir[] = "/tmp/tinybms-idle-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    char can[96], mqtt[64];
    snprintf(can, sizeof can, "log:%s/can.log", dir);
    snprintf(mqtt, sizeof mqtt, "mqtt://127.0.0.1:%d", mqtt_port);
    char *argv[16];
    int argc = 0;
    argv[argc++] = (char *)exe;
    argv[argc++] = "--simulate";
    argv[argc++] = "--quiet";
    argv[argc++] = "--data-dir";
    argv[argc++] = dir;
    argv[argc++] = "--can";
    argv[argc++] = can;
    if (mqtt_port > 0) {
        argv[argc++] = "--mqtt";
        argv[argc++] = mqtt;
    }
    argv[argc] = NULL;
    pid_t pid = spawn(argv);
    sleep_s(STARTUP_S);
    static struct thread_sample a[MAX_THREADS], b[MAX_THREADS];
    int na = sample_threads(pid, a, MAX_THREADS);
    double t0 = bench_now_s();
    sleep_s(seconds);
    int nb = sample_threads(pid, b, MAX_THREADS);
    double window = bench_now_s() - t0;
    int status = 0;
    bool alive = waitpid(pid, &status, WNOHANG) == 0;
    stop(pid);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
    }
    if (!alive || na == 0 || nb == 0) {
        printf("  %s: the daemon did not run (exit %d)\n", exe, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    double total = 0;
    for (int i = 0; i < nb; i++) {
        unsigned long long before = 0;
        for (int k = 0; k < na; k++)
            if (a[k].tid == b[i].tid)
                before = a[k].voluntary;
        double per_s = (double)(b[i].voluntary - before) / window;
        total += per_s;
        if (verbose)
            printf("    tid %-7d %-16s %8.1f wake-ups/s\n", b[i].tid, b[i].name, per_s);
    }
    if (verbose)
        printf("    %d threads, total %.1f wake-ups/s over %.1f s\n", nb, total, window);
    return total;
}

/* Median over runs of exe's total; prints the threads of the first run. */
static double measure(const char *label, const char *exe, int mqtt_port, double seconds, int runs)
{
    double v[16];
    int n = 0;
    printf("%s: %s\n", label, exe);
    for (int r = 0; r < runs && r < 16; r++) {
        double x = run_once(exe, mqtt_port, seconds, r == 0);
        if (x >= 0)
            v[n++] = x;
    }
    if (n == 0)
        return -1;
    double med = bench_median(v, n);
    printf("  idle daemon: median %.1f wake-ups/s (%d runs of %.0f s)\n", med, n, seconds);
    return med;
}

int main(void)
{
    char exe[512];
    const char *env = getenv("TINYBMS_GW");
    const char *build = getenv("GW_BUILD_DIR");
    if (env && env[0])
        snprintf(exe, sizeof exe, "%s", env);
    else
        snprintf(exe, sizeof exe, "%s/tinybms-gw", build ? build : ".");
    double seconds = getenv("BENCH_IDLE_S") ? atof(getenv("BENCH_IDLE_S")) : 10.0;
    int runs = getenv("BENCH_IDLE_RUNS") ? atoi(getenv("BENCH_IDLE_RUNS")) : 3;
    if (seconds <= 0)
        seconds = 10.0;
    if (runs <= 0)
        runs = 1;

    const char *broker = getenv("GW_MOSQUITTO");
    if (!broker || !broker[0])
        broker = "/usr/sbin/mosquitto";
    pid_t mosq = -1;
    int port = -1;
    if (access(broker, X_OK) == 0 && (port = free_port()) > 0) {
        char ps[16];
        snprintf(ps, sizeof ps, "%d", port);
        char *argv[] = { (char *)broker, "-p", ps, NULL };
        mosq = spawn(argv);
        sleep_s(0.5);
        printf("MQTT: mosquitto on 127.0.0.1:%d\n", port);
    } else {
        printf("MQTT: no broker (%s): measured without MQTT\n", broker);
        port = -1;
    }
    double now_fig = measure("daemon", exe, port, seconds, runs);
    const char *base = getenv("BENCH_IDLE_BASE");
    if (base && base[0]) {
        double base_fig = measure("baseline", base, port, seconds, runs);
        if (now_fig >= 0 && base_fig > 0)
            printf("idle wake-ups: %.1f/s vs baseline %.1f/s, ratio %.2f\n", now_fig, base_fig, now_fig / base_fig);
    }
    stop(mosq);
    return 0;
}
