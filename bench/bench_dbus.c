/* bench_dbus: the D-Bus battery service on a private dbus-daemon, fed battery views through the
 * event bus as fast as it takes them (one view at a time, so each is one update):
 * - CPU of the service thread per update (its own CLOCK_THREAD_CPUTIME_ID figure), with 1 battery
 *   (one service, 16 cells) and 4 batteries (the bank + one service per pack: 5 services);
 * - signals and bytes on the bus per update (counted by a monitor connection: at the battery
 *   service's one view per second, the same numbers per second), and dbus-daemon's own CPU;
 * - baseline in the same run: every value changing on every update (what publishing without
 *   change detection and deadbands costs; dbus-serialbattery rewrote ~100 paths per second).
 * Figures are medians of several runs; nothing fails on a figure. */
#define _GNU_SOURCE
#include "bench_util.h"

#include "app_events.h"
#include "dbus_battery.h"
#include "event_bus.h"
#include "gw_log.h"
#include "victron.h"

#include <dbus/dbus.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUNS 5
#define UPDATES 500 /* dbus-daemon CPU is read in 10 ms ticks: 20 us resolution */

static pid_t bus_pid = -1;
static char bus_addr[512];

static int bus_start(void)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    bus_pid = fork();
    if (bus_pid == 0) {
        close(p[0]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2); /* its notices are not ours to print */
        char arg[32];
        snprintf(arg, sizeof arg, "--print-address=%d", p[1]);
        execlp("dbus-daemon", "dbus-daemon", "--session", "--nofork", "--nopidfile", arg, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    ssize_t n = 0, r;
    while ((r = read(p[0], bus_addr + n, sizeof bus_addr - 1 - (size_t)n)) > 0) {
        n += r;
        if (memchr(bus_addr, '\n', (size_t)n))
            break;
    }
    close(p[0]);
    bus_addr[n > 0 ? n : 0] = '\0';
    bus_addr[strcspn(bus_addr, "\n")] = '\0';
    if (!bus_addr[0])
        return -1;
    setenv("DBUS_SESSION_BUS_ADDRESS", bus_addr, 1);
    return 0;
}

/* utime + stime of a process, in seconds. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0.0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return 0.0;
}

/* ---- a monitor connection counting what the services put on the bus ----------------------- */

static struct {
    pthread_mutex_t lock;
    uint64_t signals, bytes;
    volatile int stop;
    DBusConnection *conn;
} mon = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *monitor_thread(void *arg)
{
    (void)arg;
    while (!mon.stop) {
        dbus_connection_read_write(mon.conn, 50);
        DBusMessage *m;
        while ((m = dbus_connection_pop_message(mon.conn)) != NULL) {
            if (dbus_message_get_type(m) == DBUS_MESSAGE_TYPE_SIGNAL &&
                dbus_message_has_interface(m, "com.victronenergy.BusItem")) {
                char *buf = NULL;
                int len = 0;
                if (dbus_message_marshal(m, &buf, &len)) {
                    pthread_mutex_lock(&mon.lock);
                    mon.signals++;
                    mon.bytes += (uint64_t)len;
                    pthread_mutex_unlock(&mon.lock);
                    free(buf);
                }
            }
            dbus_message_unref(m);
        }
    }
    return NULL;
}

static int monitor_start(pthread_t *t)
{
    DBusError err;
    dbus_error_init(&err);
    mon.conn = dbus_connection_open_private(bus_addr, &err);
    if (!mon.conn || !dbus_bus_register(mon.conn, &err))
        return -1;
    DBusMessage *m = dbus_message_new_method_call(DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, "org.freedesktop.DBus.Monitoring",
                                                  "BecomeMonitor");
    DBusMessageIter it, arr;
    dbus_message_iter_init_append(m, &it);
    dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "s", &arr);
    const char *rule = "type='signal',interface='com.victronenergy.BusItem'";
    dbus_message_iter_append_basic(&arr, DBUS_TYPE_STRING, &rule);
    dbus_message_iter_close_container(&it, &arr);
    uint32_t flags = 0;
    dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &flags);
    DBusMessage *r = dbus_connection_send_with_reply_and_block(mon.conn, m, 5000, &err);
    dbus_message_unref(m);
    if (!r) {
        fprintf(stderr, "BecomeMonitor: %s\n", err.message);
        dbus_error_free(&err);
        return -1;
    }
    dbus_message_unref(r);
    return pthread_create(t, NULL, monitor_thread, NULL) == 0 ? 0 : -1;
}

static void monitor_read(uint64_t *signals, uint64_t *bytes)
{
    pthread_mutex_lock(&mon.lock);
    *signals = mon.signals;
    *bytes = mon.bytes;
    pthread_mutex_unlock(&mon.lock);
}

/* ---- views ------------------------------------------------------------------------------- */

static uint32_t rng = 12345;
static double jitter(double amplitude)
{
    rng = rng * 1103515245u + 12345u;
    return amplitude * (((double)((rng >> 8) & 0xFFFF) / 65535.0) * 2.0 - 1.0);
}

/* The view of step i. realistic: a pack at rest with sensor noise (voltage ±5 mV, current ±0.3 A,
 * cells ±1 mV, SOC creeping); every_change: every value moves well past its deadband. */
static void make_view(struct battery_view *v, unsigned packs, unsigned i, bool every_change)
{
    memset(v, 0, sizeof *v);
    v->seq = i + 1;
    v->pack_count = (uint8_t)packs;
    v->online_count = (uint8_t)packs;
    double step = every_change ? (double)(i % 2) : 0.0;
    v->voltage_v = (float)(53.12 + (every_change ? step * 0.5 : jitter(0.005)));
    v->current_a = (float)(-12.0 + (every_change ? step * 5.0 : jitter(0.3)));
    v->power_w = v->voltage_v * v->current_a;
    v->soc_pct = (float)(60.0 - i * (every_change ? 0.5 : 0.001));
    v->soh_valid = true;
    v->soh_pct = 99.0f;
    v->capacity_ah = v->installed_capacity_ah = 280.0f * packs;
    v->time_left_s = 20000 - i * (every_change ? 100 : 1);
    v->cell_count = 16;
    v->min_cell_v = (float)(3.300 + step * 0.01);
    v->max_cell_v = (float)(3.330 + step * 0.01);
    snprintf(v->min_cell.name, sizeof v->min_cell.name, "C%u", every_change ? 1 + i % 2 : 3);
    snprintf(v->max_cell.name, sizeof v->max_cell.name, "C%u", every_change ? 9 + i % 2 : 9);
    v->have_temp = true;
    v->temp_min_c = (float)(21.0 + step);
    v->temp_max_c = (float)(23.0 + step);
    snprintf(v->min_temp.name, sizeof v->min_temp.name, "T1");
    snprintf(v->max_temp.name, sizeof v->max_temp.name, "T1");
    v->modules.ok = (uint16_t)packs;
    v->energy_in_wh = 100000.0 + i * (every_change ? 100.0 : 0.0);
    v->energy_out_wh = 90000.0 + i * (every_change ? 100.0 : 0.0);
    v->limits.valid = true;
    v->limits.cvl_v = (float)(55.2 - step * 0.2);
    v->limits.ccl_a = (float)(100.0 - step * 10.0);
    v->limits.dcl_a = (float)(150.0 - step * 10.0);
    v->limits.discharge_v = 46.4f;
    for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++)
        v->alarms.alarm[f] = v->alarms.warning[f] = VICTRON_FLAG_OK;
    for (unsigned k = 0; k < packs; k++) {
        struct battery_pack *p = &v->packs[k];
        p->id = (uint8_t)k;
        p->state = BATTERY_PACK_ONLINE;
        p->capacity_ah = 280.0f;
        p->soc_pct = v->soc_pct;
        p->charge_allowed = p->discharge_allowed = true;
        p->alarms = v->alarms;
        struct bms_live_data *d = &p->live;
        d->battery_id = (uint8_t)k;
        d->valid = true;
        d->cell_count = 16;
        for (unsigned c = 0; c < 16; c++)
            d->cell_mv_x10[c] = (uint16_t)(33100 + c * 10 + (every_change ? step * 100 : jitter(10.0)));
        d->min_cell_mv = 3310;
        d->max_cell_mv = 3325;
        d->min_cell_index = 1;
        d->max_cell_index = 16;
        d->cell_spread_mv_x10 = (uint16_t)(150 + step * 50);
        d->pack_voltage_v = v->voltage_v;
        d->pack_current_a = v->current_a / (float)packs;
        d->temp_dc[BMS_TEMP_EXT1] = (int16_t)(230 + step * 10);
        d->temp_present[BMS_TEMP_EXT1] = true;
        d->soh_raw = 49500;
        d->soh_valid = true;
        d->time_left_s = v->time_left_s;
    }
}

/* ---- one scenario -------------------------------------------------------------------------- */

struct figures {
    double cpu_us;          /* service thread CPU per update (median of runs) */
    double signals;         /* per update, counted by the monitor */
    double sent;            /* per update, counted by the service */
    double bytes;           /* per update */
    double daemon_us;       /* dbus-daemon CPU per update */
    unsigned services;
};

static bool wait_updates(struct dbus_battery *db, uint64_t n)
{
    struct dbus_battery_stats st;
    double end = bench_now_s() + 10.0;
    do {
        dbus_battery_get_stats(db, &st);
        if (st.updates >= n)
            return true;
        usleep(100); /* not spinning: the service's lock stays free */
    } while (bench_now_s() < end);
    return false;
}

static int scenario(const char *label, unsigned packs, bool per_pack, bool every_change, struct figures *out)
{
    static const char *devs[] = { "/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/ttyUSB2", "/dev/ttyUSB3" };
    struct event_bus *bus = NULL;
    event_bus_create(NULL, &bus);
    struct dbus_battery_options o = { .bus = bus, .stale_timeout_ms = 60000, .device_instance = 1,
                                      .per_pack = per_pack, .pack_count = (uint8_t)packs };
    for (unsigned k = 0; k < packs; k++)
        o.pack_devices[k] = devs[k];
    struct dbus_battery *db = NULL;
    if (dbus_battery_create(&o, &db) || dbus_battery_start(db))
        return -1;
    struct battery_view *v = malloc(sizeof *v);
    /* Until every service owns its name. */
    struct dbus_battery_stats st;
    unsigned i = 0;
    double end = bench_now_s() + 20.0;
    do {
        make_view(v, packs, i++, every_change);
        event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000);
        event_bus_flush(bus, 1000);
        poll(NULL, 0, 20);
        dbus_battery_get_stats(db, &st);
    } while (st.services_on_bus < st.services && bench_now_s() < end);
    if (st.services_on_bus < st.services) {
        fprintf(stderr, "%s: services not on the bus\n", label);
        return -1;
    }
    double cpu[RUNS], sig[RUNS], byt[RUNS], dmn[RUNS], snt[RUNS];
    for (int r = 0; r < RUNS; r++) {
        dbus_battery_get_stats(db, &st);
        uint64_t u0 = st.updates, c0 = st.update_cpu_ns_total, n0 = st.signals, s0, b0, s1, b1;
        wait_updates(db, u0); /* settle */
        poll(NULL, 0, 100);  /* let the monitor catch up with what came before */
        monitor_read(&s0, &b0);
        double d0 = proc_cpu_s(bus_pid);
        for (unsigned k = 0; k < UPDATES; k++) {
            make_view(v, packs, i++, every_change);
            event_bus_publish(bus, EVENT_BATTERY_UPDATE, v, sizeof *v, 1000);
            if (!wait_updates(db, u0 + k + 1))
                fprintf(stderr, "%s: update %u not processed\n", label, k);
        }
        dbus_battery_get_stats(db, &st);
        uint64_t updates = st.updates - u0;
        /* Until the monitor has seen every signal the service sent (or 5 s). */
        double until = bench_now_s() + 5.0;
        do {
            poll(NULL, 0, 20);
            monitor_read(&s1, &b1);
        } while (s1 - s0 < st.signals - n0 && bench_now_s() < until);
        cpu[r] = (double)(st.update_cpu_ns_total - c0) / 1000.0 / (double)updates;
        sig[r] = (double)(s1 - s0) / (double)updates;
        byt[r] = (double)(b1 - b0) / (double)updates;
        snt[r] = (double)(st.signals - n0) / (double)updates;
        dmn[r] = (proc_cpu_s(bus_pid) - d0) * 1e6 / (double)updates;
    }
    out->cpu_us = bench_median(cpu, RUNS);
    out->signals = bench_median(sig, RUNS);
    out->bytes = bench_median(byt, RUNS);
    out->sent = bench_median(snt, RUNS);
    out->daemon_us = bench_median(dmn, RUNS);
    out->services = st.services;
    dbus_battery_destroy(db);
    event_bus_destroy(bus);
    free(v);
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    gw_log_set_level(GW_LOG_WARN);
    if (bus_start() != 0) {
        printf("bench_dbus: skipped (dbus-daemon could not be started)\n");
        return 0;
    }
    pthread_t mt;
    if (monitor_start(&mt) != 0) {
        printf("bench_dbus: skipped (no monitor connection)\n");
        kill(bus_pid, SIGTERM);
        waitpid(bus_pid, NULL, 0);
        return 0;
    }
    struct figures one, four, worst;
    int rc = scenario("1 battery", 1, false, false, &one) | scenario("4 batteries", 4, true, false, &four) |
             scenario("1 battery, every value changing", 1, false, true, &worst);
    if (rc == 0) {
        printf("D-Bus battery service, %d runs x %d updates (medians); per update = per second at the battery "
               "service's 1 view/s\n", RUNS, UPDATES);
        printf("  %-40s %9s %9s %9s %10s %12s\n", "scenario", "CPU us", "sent", "signals", "bytes", "daemon us");
        const struct {
            const char *name;
            const struct figures *f;
        } rows[] = { { "1 battery (1 service, 16 cells)", &one },
                     { "4 batteries (bank + 4 pack services)", &four },
                     { "baseline: every measured value changing", &worst } };
        for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++)
            printf("  %-40s %9.1f %9.1f %9.1f %10.0f %12.1f\n", rows[k].name, rows[k].f->cpu_us, rows[k].f->sent,
                   rows[k].f->signals, rows[k].f->bytes, rows[k].f->daemon_us);
        printf("  ratio 1 battery / baseline: CPU %.2f, bytes %.2f\n", one.cpu_us / worst.cpu_us,
               one.bytes / worst.bytes);
        printf("  share of one core at 1 update/s, this machine: 1 battery %.4f %%, 4 batteries %.4f %%\n",
               one.cpu_us / 1e4, four.cpu_us / 1e4);
    }
    mon.stop = 1;
    pthread_join(mt, NULL);
    dbus_connection_close(mon.conn);
    dbus_connection_unref(mon.conn);
    kill(bus_pid, SIGTERM);
    waitpid(bus_pid, NULL, 0);
    return rc ? 1 : 0;
}
