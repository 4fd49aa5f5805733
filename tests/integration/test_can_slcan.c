/* Integration: the can_publisher in-process on the slcan transport, talking over a socat pty
 * pair to an independent peer (python-can, tests/integration/can_peer.py) that decodes the
 * frames itself and sends the GX keep-alives. Fed with synthetic battery views (a bank of two
 * packs, as the battery service publishes them) through the event bus.
 * Checks, from what the PEER saw: the 1 s / 10 s periods (median, wide tolerance), the values
 * (limits rounded down, module counts, pack-qualified cell names), 0x351 and the measurements
 * withheld after the views stop (stale timeout) while 0x35A/0x372 say offline, everything
 * resumed when they come back with one pack offline; and from the publisher: inverter link
 * present from the peer's 0x305, lost after they stop.
 * argv: <python> <can_peer.py>. Every child is killed and reaped whatever happens. */
#define _GNU_SOURCE
#include "battery_view.h"
#include "can_publisher.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_config.h"
#include "gw_error.h"
#include "gw_log.h"
#include "support/wait.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *python_path, *peer_path;
static char dir[] = "/tmp/test_can_slcan_XXXXXX";
static char path_a[128], path_b[128], ready[128], done[128], stop_ka[128], peer_out[128], peer_err[128];
static pid_t socat_pid = -1, peer_pid = -1;

static pid_t spawn(char *const argv[], const char *out_path, const char *err_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out >= 0)
            dup2(out, 1);
        if (err >= 0)
            dup2(err, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void reap(pid_t *pid, int sig, unsigned grace_ms)
{
    if (*pid <= 0)
        return;
    if (sig)
        kill(*pid, sig);
    for (unsigned waited = 0;; waited += 10) {
        int status;
        pid_t r = waitpid(*pid, &status, WNOHANG);
        if (r == *pid || (r < 0 && errno == ECHILD))
            break;
        if (waited >= grace_ms) {
            kill(*pid, SIGKILL);
            waitpid(*pid, &status, 0);
            break;
        }
        gw_sleep_ms(10);
    }
    *pid = -1;
}

static void cleanup(void)
{
    reap(&peer_pid, SIGTERM, 2000);
    reap(&socat_pid, SIGTERM, 2000);
}

static bool wait_file(const char *path, unsigned timeout_ms)
{
    bool ok;
    WAIT_FOR(ok, access(path, F_OK) == 0, timeout_ms);
    return ok;
}

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0)
        close(fd);
}

/* ---- feeding ------------------------------------------------------------------------- */

struct feed_values {
    float volts, amps, temp_c, soc_pct;
    float cvl_v, ccl_a, dcl_a;
    unsigned online;                  /* of 2 packs */
};

static void feed(struct event_bus *bus, const struct feed_values *fv)
{
    static struct battery_view v;
    static uint64_t seq;
    memset(&v, 0, sizeof v);
    v.seq = ++seq;
    v.timestamp_ms = gw_now_ms();
    v.wall_time_ms = gw_wall_ms();
    v.pack_count = 2;
    v.online_count = (uint8_t)fv->online;
    v.voltage_v = fv->volts;
    v.current_a = fv->amps;
    v.soc_pct = fv->soc_pct;
    v.soh_pct = 100.0f;
    v.soh_valid = true;
    v.capacity_ah = 100.0f * (float)fv->online;
    v.installed_capacity_ah = 200.0f;
    v.cell_count = 16;
    v.min_cell_v = fv->volts / 16.0f;
    v.max_cell_v = fv->volts / 16.0f + 0.012f;
    snprintf(v.min_cell.name, sizeof v.min_cell.name, "P1C3");
    snprintf(v.max_cell.name, sizeof v.max_cell.name, "P2C7");
    v.have_temp = true;
    v.temp_min_c = fv->temp_c - 1.0f;
    v.temp_max_c = fv->temp_c;
    snprintf(v.min_temp.name, sizeof v.min_temp.name, "P2T1");
    snprintf(v.max_temp.name, sizeof v.max_temp.name, "P1T1");
    for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++)
        v.alarms.alarm[f] = v.alarms.warning[f] = VICTRON_FLAG_OK;
    v.alarms.online = fv->online > 0;
    v.modules = (struct victron_modules){ .ok = (uint16_t)fv->online, .offline = (uint16_t)(2 - fv->online) };
    v.energy_in_wh = 12345.0;
    v.energy_out_wh = 6789.0;
    v.limits = (struct battery_limits){ .valid = fv->online > 0, .cvl_v = fv->cvl_v, .ccl_a = fv->ccl_a,
                                        .dcl_a = fv->dcl_a, .discharge_v = 46.4f };
    for (unsigned i = 0; i < 2; i++) {
        v.packs[i].id = (uint8_t)i;
        v.packs[i].state = i < fv->online ? BATTERY_PACK_ONLINE : BATTERY_PACK_OFFLINE;
    }
    event_bus_publish(bus, EVENT_BATTERY_UPDATE, &v, sizeof v, 1000);
}

/* Feeds every 200 ms for ms (or until cond returns true when cond is not NULL). */
static bool feed_for(struct event_bus *bus, const struct feed_values *v, unsigned ms, struct can_publisher *p,
                     bool (*cond)(const struct can_publisher_status *))
{
    uint64_t end = gw_now_ms() + ms;
    while (gw_now_ms() < end) {
        if (v)
            feed(bus, v);
        if (cond) {
            struct can_publisher_status st;
            can_publisher_get_status(p, &st);
            if (cond(&st))
                return true;
        }
        gw_sleep_ms(200);
    }
    return cond == NULL;
}

static bool is_stale(const struct can_publisher_status *s) { return s->stale; }
static bool is_fresh(const struct can_publisher_status *s) { return !s->stale; }
static bool link_up(const struct can_publisher_status *s) { return s->inverter_link; }
static bool link_down(const struct can_publisher_status *s) { return !s->inverter_link; }

static int link_events;
static void on_link(const struct gw_event *ev, void *ctx)
{
    (void)ev, (void)ctx;
    __atomic_add_fetch(&link_events, 1, __ATOMIC_SEQ_CST);
}

/* ---- the peer's log -------------------------------------------------------------------- */

struct rx {
    double wall;
    int id;
    cJSON *decoded; /* owned by the line's root */
};

static cJSON *roots[8192];
static struct rx rxs[8192];
static size_t rx_count, root_count;
static cJSON *summary;

static void load_peer_log(void)
{
    FILE *fp = fopen(peer_out, "r");
    CHECK(fp != NULL);
    if (!fp)
        return;
    char line[4096];
    while (fgets(line, sizeof line, fp) && root_count < 8192) {
        cJSON *root = cJSON_Parse(line);
        if (!root)
            continue;
        roots[root_count++] = root;
        cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "summary");
        if (s) {
            summary = s;
            continue;
        }
        cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
        cJSON *wall = cJSON_GetObjectItemCaseSensitive(root, "wall");
        if (cJSON_IsString(id) && cJSON_IsNumber(wall)) {
            rxs[rx_count].wall = wall->valuedouble;
            rxs[rx_count].id = (int)strtol(id->valuestring, NULL, 16);
            rxs[rx_count].decoded = cJSON_GetObjectItemCaseSensitive(root, "decoded");
            rx_count++;
        }
    }
    fclose(fp);
}

static size_t count_between(int id, double from, double to)
{
    size_t n = 0;
    for (size_t i = 0; i < rx_count; i++)
        if (rxs[i].id == id && rxs[i].wall >= from && rxs[i].wall <= to)
            n++;
    return n;
}

/* The last frame of id received in [from, to], or NULL. */
static const struct rx *last_between(int id, double from, double to)
{
    const struct rx *r = NULL;
    for (size_t i = 0; i < rx_count; i++)
        if (rxs[i].id == id && rxs[i].wall >= from && rxs[i].wall <= to)
            r = &rxs[i];
    return r;
}

static double field(const struct rx *r, const char *name)
{
    if (!r)
        return NAN;
    cJSON *f = cJSON_GetObjectItemCaseSensitive(r->decoded, name);
    return cJSON_IsNumber(f) ? f->valuedouble : cJSON_IsBool(f) ? (cJSON_IsTrue(f) ? 1.0 : 0.0) : NAN;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median interval between consecutive frames of id in [from, to]; NAN with fewer than 3. */
static double median_period(int id, double from, double to)
{
    static double t[8192], gaps[8192];
    size_t n = 0;
    for (size_t i = 0; i < rx_count; i++)
        if (rxs[i].id == id && rxs[i].wall >= from && rxs[i].wall <= to)
            t[n++] = rxs[i].wall;
    if (n < 3)
        return NAN;
    for (size_t i = 1; i < n; i++)
        gaps[i - 1] = t[i] - t[i - 1];
    qsort(gaps, n - 1, sizeof gaps[0], cmp_double);
    return gaps[(n - 1) / 2];
}

static double wall_s(void) { return (double)gw_wall_ms() / 1000.0; }

/* ---- the test -------------------------------------------------------------------------- */

static void test_publisher_against_python_can(void)
{
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path_a, sizeof path_a, "%s/ptyA", dir);
    snprintf(path_b, sizeof path_b, "%s/ptyB", dir);
    snprintf(ready, sizeof ready, "%s/ready", dir);
    snprintf(done, sizeof done, "%s/done", dir);
    snprintf(stop_ka, sizeof stop_ka, "%s/stop_keepalive", dir);
    snprintf(peer_out, sizeof peer_out, "%s/peer.jsonl", dir);
    snprintf(peer_err, sizeof peer_err, "%s/peer.err", dir);
    char socat_out[160], socat_err[160], link_a[160], link_b[160];
    snprintf(socat_out, sizeof socat_out, "%s/socat.out", dir);
    snprintf(socat_err, sizeof socat_err, "%s/socat.err", dir);
    snprintf(link_a, sizeof link_a, "pty,raw,echo=0,link=%s", path_a);
    snprintf(link_b, sizeof link_b, "pty,raw,echo=0,link=%s", path_b);

    char *socat_argv[] = { "/usr/bin/socat", "-d", "-d", link_a, link_b, NULL };
    if (access(socat_argv[0], X_OK) != 0) {
        fprintf(stderr, "socat not installed (Debian package socat): cannot run this test\n");
        CHECK(false);
        return;
    }
    socat_pid = spawn(socat_argv, socat_out, socat_err);
    CHECK(wait_file(path_a, 10000) && wait_file(path_b, 10000));

    char *peer_argv[] = { (char *)python_path, (char *)peer_path, "--channel", path_b, "--duration", "120",
                          "--until-file", done, "--ready-file", ready, "--keepalive", "0.5",
                          "--keepalive-stop-file", stop_ka, "--out", peer_out, NULL };
    peer_pid = spawn(peer_argv, "/dev/null", peer_err);
    if (!wait_file(ready, 30000)) {
        fprintf(stderr, "peer did not start (see %s)\n", peer_err);
        CHECK(false);
        return;
    }

    struct event_bus *bus = NULL;
    CHECK_EQ_INT(event_bus_create(NULL, &bus), GW_OK);
    event_bus_subscribe(bus, EVENT_CAN_INVERTER_LINK, on_link, NULL, "test");
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    cfg.can.enabled = true;
    cfg.can.stale_timeout_ms = 3000;
    cfg.can.inverter_timeout_ms = 2000;
    char spec[160];
    snprintf(spec, sizeof spec, "slcan:%s", path_a);
    struct can_publisher_options o = { .config = &cfg, .bus = bus, .transport_spec = spec };
    struct can_publisher *p = NULL;
    CHECK_EQ_INT(can_publisher_create(&o, &p), GW_OK);
    if (!p)
        return;

    /* Limits just below a step: they must go out rounded down (55.2 V, 100.0 A, 150.0 A). */
    const struct feed_values phase1 = { .volts = 52.8f, .amps = 20.0f, .temp_c = 25.1f, .soc_pct = 80.0f,
                                        .cvl_v = 55.249f, .ccl_a = 100.09f, .dcl_a = 150.099f, .online = 2 };
    /* After the silence: pack 2 stays away, the bank runs on pack 1. */
    const struct feed_values phase2 = { .volts = 53.1f, .amps = -5.0f, .temp_c = 24.3f, .soc_pct = 81.5f,
                                        .cvl_v = 55.2f, .ccl_a = 50.0f, .dcl_a = 75.0f, .online = 1 };
    feed(bus, &phase1);
    /* The first pack's TinyBMS version, as uart_bms reads it: 0x35F and 0x380/0x381 wait for it. */
    struct app_bms_version ver = { .battery_id = 0, .version = { .valid = true, .fw_public = 90, .fw_internal = 580 } };
    snprintf(ver.version.serial, sizeof ver.version.serial, "0123456789ABCDEF01234567");
    event_bus_publish(bus, EVENT_BMS_VERSION_UPDATE, &ver, sizeof ver, 1000);
    event_bus_flush(bus, 2000);
    double t_start = wall_s();
    CHECK_EQ_INT(can_publisher_start(p), GW_OK);

    /* Phase 1: data flowing, the peer's keep-alives make the link. */
    CHECK(feed_for(bus, &phase1, 15000, p, link_up));
    double elapsed_ms = (wall_s() - t_start) * 1000.0;
    feed_for(bus, &phase1, elapsed_ms < 12000.0 ? (unsigned)(12000.0 - elapsed_ms) : 0, NULL, NULL);
    double t_stop = wall_s();

    /* Phase 2: no views: stale after 3 s, 0x351 and the measurements withheld. */
    CHECK(feed_for(bus, NULL, 10000, p, is_stale));
    feed_for(bus, NULL, 6000, NULL, NULL); /* a few offline cycles past the margin below */
    double t_resume = wall_s();

    /* Phase 3: views again (one pack of two): everything resumes. */
    CHECK(feed_for(bus, &phase2, 10000, p, is_fresh));
    feed_for(bus, &phase2, 3000, NULL, NULL);

    /* Phase 4: the peer stops its keep-alives: link lost (we keep sending). */
    touch(stop_ka);
    CHECK(feed_for(bus, &phase2, 10000, p, link_down));
    feed_for(bus, &phase2, 1500, NULL, NULL);
    double t_end = wall_s();

    struct can_publisher_status st;
    can_publisher_get_status(p, &st);
    CHECK_EQ_INT(st.stale_transitions, 1);
    CHECK_EQ_INT(st.frames_failed, 0);
    CHECK(st.frames_sent > 100);
    CHECK(st.transport_stats.rx >= 5);
    CHECK_EQ_INT(__atomic_load_n(&link_events, __ATOMIC_SEQ_CST), 2);

    touch(done);
    can_publisher_destroy(p);
    event_bus_destroy(bus);
    int status = 0;
    for (int i = 0; i < 1000 && waitpid(peer_pid, &status, WNOHANG) == 0; i++)
        gw_sleep_ms(10);
    if (peer_pid > 0 && waitpid(peer_pid, &status, WNOHANG) != 0)
        peer_pid = -1;
    cleanup();
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    load_peer_log();
    CHECK(summary != NULL);
    cJSON *failures = cJSON_GetObjectItemCaseSensitive(summary, "failures");
    CHECK(cJSON_IsArray(failures) && cJSON_GetArraySize(failures) == 0);
    fprintf(stderr, "peer received %zu frames; phases: stop %.1f s, resume %.1f s, end %.1f s\n", rx_count,
            t_stop - t_start, t_resume - t_start, t_end - t_start);

    /* Periods measured by the peer (medians; wide tolerance: a loaded machine). */
    double live = median_period(0x351, t_start, t_stop);
    double live356 = median_period(0x356, t_start, t_end);
    double ident = median_period(0x35E, t_start, t_end);
    fprintf(stderr, "median periods: 0x351 %.3f s, 0x356 %.3f s, 0x35E %.3f s\n", live, live356, ident);
    CHECK(live > 0.7 && live < 1.3);
    CHECK(live356 > 0.7 && live356 < 1.3);
    CHECK(ident > 8.0 && ident < 12.0);
    CHECK(count_between(0x35F, t_start, t_end) >= 2);
    CHECK(count_between(0x382, t_start, t_end) >= 2);

    /* Values of phase 1, decoded by the peer. */
    const struct rx *r = last_between(0x356, t_start, t_stop);
    CHECK_NEAR(field(r, "voltage"), 52.8, 0.011);
    CHECK_NEAR(field(r, "current"), 20.0, 0.051);
    CHECK_NEAR(field(r, "temperature"), 25.1, 0.051);
    r = last_between(0x355, t_start, t_stop);
    CHECK_NEAR(field(r, "soc"), 80, 0.5);
    CHECK_NEAR(field(r, "soh"), 100, 0.5);
    r = last_between(0x351, t_start, t_stop);
    CHECK_NEAR(field(r, "cvl"), 55.2, 1e-6); /* 55.249 V rounded down, never 55.3 */
    CHECK_NEAR(field(r, "ccl"), 100.0, 1e-6);
    CHECK_NEAR(field(r, "dcl"), 150.0, 1e-6);
    r = last_between(0x35A, t_start, t_stop);
    CHECK_NEAR(field(r, "online"), 1, 0);
    r = last_between(0x372, t_start, t_stop);
    CHECK_NEAR(field(r, "ok"), 2, 0);
    CHECK_NEAR(field(r, "offline"), 0, 0);
    r = last_between(0x373, t_start, t_stop);
    CHECK_NEAR(field(r, "min_cell_mv"), 3300, 1);
    CHECK_NEAR(field(r, "max_cell_mv"), 3312, 1);
    CHECK_NEAR(field(r, "max_temp_k"), 298, 0);  /* 25.1 degC = 298.25 K */
    r = last_between(0x375, t_start, t_stop);
    cJSON *text = r ? cJSON_GetObjectItemCaseSensitive(r->decoded, "text") : NULL;
    CHECK(cJSON_IsString(text) && strcmp(text->valuestring, "P2C7") == 0);
    r = last_between(0x378, t_start, t_stop);
    CHECK_NEAR(field(r, "energy_in_wh"), 12300, 0);
    r = last_between(0x379, t_start, t_stop);
    CHECK_NEAR(field(r, "installed_ah"), 200, 0);
    r = last_between(0x35E, t_start, t_end);
    text = r ? cJSON_GetObjectItemCaseSensitive(r->decoded, "text") : NULL;
    CHECK(cJSON_IsString(text) && strcmp(text->valuestring, "Enepaq") == 0);

    /* Stale: 0x351 and every measurement absent from stop + timeout + margin (one cycle,
     * delivery to the peer) until resume; status, totals and identity go on. */
    double quiet_from = t_stop + 3.0 + 2.0;
    CHECK(count_between(0x351, t_start, t_stop) >= 8);
    static const int withheld[] = { 0x351, 0x355, 0x356, 0x373, 0x374, 0x375, 0x376, 0x377 };
    for (size_t i = 0; i < sizeof withheld / sizeof withheld[0]; i++) {
        if (count_between(withheld[i], quiet_from, t_resume) != 0)
            fprintf(stderr, "0x%03X sent while stale\n", (unsigned)withheld[i]);
        CHECK_EQ_INT(count_between(withheld[i], quiet_from, t_resume), 0);
    }
    CHECK(count_between(0x35A, quiet_from, t_resume) >= 3);
    CHECK(count_between(0x372, quiet_from, t_resume) >= 3);
    CHECK(count_between(0x378, quiet_from, t_resume) >= 3);
    r = last_between(0x35A, quiet_from, t_resume);
    CHECK_NEAR(field(r, "offline"), 1, 0);
    r = last_between(0x372, quiet_from, t_resume);
    CHECK_NEAR(field(r, "ok"), 0, 0);
    CHECK_NEAR(field(r, "offline"), 2, 0);

    /* Resume with the new values, one pack of two. */
    CHECK(count_between(0x351, t_resume, t_end) >= 3);
    r = last_between(0x356, t_resume + 1.5, t_end);
    CHECK_NEAR(field(r, "voltage"), 53.1, 0.011);
    CHECK_NEAR(field(r, "current"), -5.0, 0.051);
    r = last_between(0x351, t_resume + 1.5, t_end);
    CHECK_NEAR(field(r, "ccl"), 50.0, 1e-6);
    r = last_between(0x35A, t_resume + 1.5, t_end);
    CHECK_NEAR(field(r, "online"), 1, 0);
    r = last_between(0x372, t_resume + 1.5, t_end);
    CHECK_NEAR(field(r, "ok"), 1, 0);
    CHECK_NEAR(field(r, "offline"), 1, 0);

    for (size_t i = 0; i < root_count; i++)
        cJSON_Delete(roots[i]);
}

/* The candump log written by the log transport, read back by python-can's own candump reader. */
static void test_candump_log_read_by_python_can(void)
{
    char ldir[] = "/tmp/test_can_log_XXXXXX";
    CHECK(mkdtemp(ldir) != NULL);
    char log[160], spec[200], out[160], err[160];
    snprintf(log, sizeof log, "%s/frames.log", ldir);
    snprintf(spec, sizeof spec, "log:%s@vcan3", log);
    snprintf(out, sizeof out, "%s/py.out", ldir);
    snprintf(err, sizeof err, "%s/py.err", ldir);
    struct can_transport *t = NULL;
    CHECK_EQ_INT(can_transport_open(spec, 500000, &t), GW_OK);
    if (!t)
        return;
    struct can_frame_gw frames[] = {
        { .id = 0x351, .dlc = 8, .data = { 0x45, 0x02, 0x4c, 0x04, 0x4c, 0x04, 0x00, 0x00 } },
        { .id = 0x1ABCDEF0, .dlc = 2, .data = { 0xAB, 0x01 }, .ext = true },
        { .id = 0x305, .dlc = 0 },
        { .id = 0x123, .dlc = 0, .rtr = true },
    };
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++)
        CHECK_EQ_INT(can_transport_send(t, &frames[i], 0), GW_OK);
    can_transport_close(t);
    char *argv[] = { (char *)python_path, "-c",
                     "import sys, can\n"
                     "for m in can.CanutilsLogReader(sys.argv[1]):\n"
                     "    print('%X %d %d %d %s %s %.0f' % (m.arbitration_id, m.is_extended_id, m.is_remote_frame,"
                     " m.dlc, bytes(m.data).hex(), m.channel, m.timestamp))\n",
                     log, NULL };
    pid_t pid = spawn(argv, out, err);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    FILE *fp = fopen(out, "r");
    char got[1024] = "";
    if (fp) {
        size_t n = fread(got, 1, sizeof got - 1, fp);
        got[n] = '\0';
        fclose(fp);
    }
    /* Drop the timestamps (checked for plausibility below) before comparing. */
    char lines[4][128] = { "", "", "", "" };
    double ts[4] = { 0 };
    int nlines = 0;
    for (char *save = NULL, *l = strtok_r(got, "\n", &save); l && nlines < 4; l = strtok_r(NULL, "\n", &save)) {
        char *sp = strrchr(l, ' ');
        if (sp) {
            ts[nlines] = atof(sp + 1);
            *sp = '\0';
        }
        snprintf(lines[nlines++], sizeof lines[0], "%s", l);
    }
    CHECK_EQ_INT(nlines, 4);
    CHECK_STR(lines[0], "351 0 0 8 45024c044c040000 vcan3");
    CHECK_STR(lines[1], "1ABCDEF0 1 0 2 ab01 vcan3");
    CHECK_STR(lines[2], "305 0 0 0  vcan3");
    CHECK_STR(lines[3], "123 0 1 0  vcan3");
    double now = wall_s();
    CHECK(ts[0] > now - 60 && ts[0] <= now + 1);
    unlink(log);
    unlink(out);
    unlink(err);
    rmdir(ldir);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <python3 with python-can> <can_peer.py>\n", argv[0]);
        return 2;
    }
    python_path = argv[1];
    peer_path = argv[2];
    atexit(cleanup);
    signal(SIGPIPE, SIG_IGN);
    static const struct test_case_ cases[] = { TEST_CASE(test_candump_log_read_by_python_can),
                                               TEST_CASE(test_publisher_against_python_can) };
    int rc = test_run_(cases, sizeof cases / sizeof cases[0]);
    if (rc)
        fprintf(stderr, "artifacts kept in %s\n", dir);
    return rc;
}
