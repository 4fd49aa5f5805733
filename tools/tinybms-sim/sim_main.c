/* tinybms-sim: a TinyBMS s516 on a pseudo-terminal (or a real serial port).
 * Prints the slave path alone on the first stdout line, then answers one JSON line per control
 * command read from stdin (see docs/simulator.md; `fault` and `reset` inject the BMS failures a
 * gateway must survive). The battery model advances on the monotonic
 * clock times --speed, in steps of at most 1 s of model time. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "battery_model.h"
#include "gw_error.h"
#include "gw_log.h"
#include "sim_protocol.h"
#include "sim_registers.h"

#define TICK_MS 100u
#define PARTIAL_FRAME_TIMEOUT_MS 100u
#define WIRE_BYTES_PER_S 11520u          /* 115200 baud, 10 bits per byte */
#define OUT_SLOTS 4
#define OUT_STALE_MS 1000u               /* a reply nobody reads is dropped after this */
#define MAX_MODEL_S_PER_TICK 3600.0      /* a stopped process does not replay hours at once */
#define LINE_MAX_LEN 512
#define GARBAGE_MAX 512                  /* longest garbage burst (`garbage N`) */

enum scenario {
    SC_IDLE, SC_CHARGE, SC_DISCHARGE, SC_IMBALANCE, SC_OVERTEMP, SC_UNDERVOLTAGE, SC_NOISE,
    SC_UNPLUGGED, SC_COUNT
};
static const char *const scenario_names[SC_COUNT] = {
    "idle", "charge", "discharge", "imbalance", "overtemp", "undervoltage", "noise", "unplugged",
};

struct out_slot {
    bool used;
    bool counts_as_reply;         /* false for the first half of a split reply */
    uint64_t seq;                 /* queue order: slots leave in it */
    uint64_t ready_ms;
    size_t len, sent;
    uint8_t data[SIM_REPLY_MAX];
};

struct sim_app {
    struct sim_bms bms;
    struct sim_parser parser;
    /* device */
    int fd;                       /* pty master or serial device, -1 when unplugged */
    int slave_keep_fd;            /* our own slave handle: keeps the pty alive between clients */
    char path[256];               /* slave path or device path */
    const char *device;           /* --device, NULL for a pty */
    const char *link;             /* --link */
    /* behaviour */
    double speed;
    uint32_t latency_ms;
    bool pace;
    bool sleep_enabled;
    uint32_t sleep_after_ms;
    bool sleeping;                /* the next complete frame is ignored (wake-up) */
    uint64_t last_rx_ms;
    bool silence;
    double noise;
    uint32_t noise_rng;
    uint32_t garbage_pending;     /* bytes of garbage sent just before the next reply */
    uint32_t split_ms;            /* > 0: each reply's second half leaves this much later */
    enum scenario scenario;
    bool current_override;
    float current_a;
    /* time */
    uint64_t last_model_ms;
    /* output */
    struct out_slot out[OUT_SLOTS];
    uint64_t out_seq;
    /* stdin */
    bool stdin_open;
    bool exit_on_eof;             /* the controller (our parent) closed stdin: it is gone */
    char line[LINE_MAX_LEN];
    size_t line_len;
    bool line_overflow;
    /* counters */
    uint32_t requests, replies, wake_ignored, dropped_replies, corrupted_bytes, garbage_bytes,
        split_replies, nacks_sent;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------- device handling */

static int set_raw(int fd)
{
    struct termios t;
    if (tcgetattr(fd, &t) != 0)
        return -1;
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cflag &= ~(tcflag_t)(CSTOPB | PARENB | CRTSCTS);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    cfsetispeed(&t, B115200);
    cfsetospeed(&t, B115200);
    return tcsetattr(fd, TCSANOW, &t);
}

static void update_link(struct sim_app *app)
{
    if (!app->link)
        return;
    char tmp[300];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp%ld", app->link, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        GW_LOGE(MOD, "link path too long: %s", app->link);
        return;
    }
    unlink(tmp);
    if (symlink(app->path, tmp) != 0 || rename(tmp, app->link) != 0) {
        GW_LOGE(MOD, "cannot point %s at %s: %s", app->link, app->path, strerror(errno));
        unlink(tmp);
    }
}

static int open_pty(struct sim_app *app)
{
    int fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (fd < 0) {
        GW_LOGE(MOD, "posix_openpt: %s", strerror(errno));
        return -1;
    }
    if (grantpt(fd) != 0 || unlockpt(fd) != 0 || ptsname_r(fd, app->path, sizeof app->path) != 0) {
        GW_LOGE(MOD, "pty set-up: %s", strerror(errno));
        close(fd);
        return -1;
    }
    int slave = open(app->path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (slave < 0 || set_raw(slave) != 0) {
        GW_LOGE(MOD, "cannot open %s raw: %s", app->path, strerror(errno));
        if (slave >= 0)
            close(slave);
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    app->fd = fd;
    app->slave_keep_fd = slave;
    return 0;
}

static int open_device(struct sim_app *app)
{
    int fd = open(app->device, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        GW_LOGE(MOD, "cannot open %s: %s", app->device, strerror(errno));
        return -1;
    }
    if (set_raw(fd) != 0) {
        GW_LOGE(MOD, "%s: cannot set 115200 8N1 raw: %s", app->device, strerror(errno));
        close(fd);
        return -1;
    }
    snprintf(app->path, sizeof app->path, "%s", app->device);
    app->fd = fd;
    app->slave_keep_fd = -1;
    return 0;
}

static int plug(struct sim_app *app)
{
    int rc = app->device ? open_device(app) : open_pty(app);
    if (rc == 0) {
        update_link(app);
        sim_parser_reset(&app->parser);
        memset(app->out, 0, sizeof app->out);
        app->last_rx_ms = mono_ms();
    }
    return rc;
}

static void unplug(struct sim_app *app)
{
    if (app->fd >= 0)
        close(app->fd);
    if (app->slave_keep_fd >= 0)
        close(app->slave_keep_fd);
    app->fd = -1;
    app->slave_keep_fd = -1;
    if (app->link)
        unlink(app->link);
    memset(app->out, 0, sizeof app->out);
    sim_parser_reset(&app->parser);
}

/* ---------------------------------------------------------------- model and scenarios */

static float scenario_current(const struct sim_app *app)
{
    float c = app->bms.model.cfg.capacity_ah;
    switch (app->scenario) {
    case SC_CHARGE: return 0.2f * c;
    case SC_DISCHARGE: return -0.2f * c;
    case SC_UNDERVOLTAGE: return -0.5f * c;
    default: return 0.0f;
    }
}

static float requested_current(const struct sim_app *app)
{
    return app->current_override ? app->current_a : scenario_current(app);
}

static void apply_scenario(struct sim_app *app, enum scenario sc)
{
    struct battery_model *m = &app->bms.model;
    app->scenario = sc;
    m->heater_c_per_s = 0.0f;
    if (sc == SC_IMBALANCE && m->cfg.cells > 0) {
        /* One cell carries 10 % more charge than its neighbours. */
        unsigned cell = m->cfg.cells > 2 ? 2 : 0;
        float q = m->cell_charge_ah[cell] + 0.10f * m->cell_capacity_ah[cell];
        m->cell_charge_ah[cell] = q < m->cell_capacity_ah[cell] ? q : m->cell_capacity_ah[cell];
    }
    if (sc == SC_NOISE && app->noise <= 0.0)
        app->noise = 0.02;
    app->silence = (sc == SC_UNPLUGGED);
    battery_model_step(m, requested_current(app), 0.0f);
}

static void advance_model(struct sim_app *app, uint64_t now)
{
    struct battery_model *m = &app->bms.model;
    double real_s = (double)(now - app->last_model_ms) / 1000.0;
    double dt = real_s * app->speed;
    app->last_model_ms = now;
    /* The BMS clock (lifetime counter, registers 32-33) is not the battery: a slowed or frozen
     * model still has a BMS counting real seconds, as a real one does while nothing changes. */
    if (app->speed < 1.0)
        m->lifetime_s += real_s * (1.0 - app->speed);
    if (dt > MAX_MODEL_S_PER_TICK)
        dt = MAX_MODEL_S_PER_TICK;
    do {
        /* Over-temperature scenario: heat until the BMS cuts off, then let it cool. */
        if (app->scenario == SC_OVERTEMP)
            m->heater_c_per_s = m->over_heat_active ? 0.0f : 0.1f;
        double h = dt > 1.0 ? 1.0 : dt;
        battery_model_step(m, requested_current(app), (float)h);
        dt -= h;
    } while (dt > 0.0);
}

/* ---------------------------------------------------------------- serial side */

static uint32_t noise_next(struct sim_app *app)
{
    uint32_t x = app->noise_rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    app->noise_rng = x;
    return x;
}

static struct out_slot *queue_bytes(struct sim_app *app, const uint8_t *data, size_t len, uint64_t ready_ms);

/* Queues a reply: first any pending garbage burst, then the reply (corrupted at the noise rate),
 * cut in two halves split_ms apart when splitting is on (a USB adapter's latency timer). */
static void queue_reply(struct sim_app *app, const uint8_t *data, size_t len, uint64_t now)
{
    uint64_t ready = now + app->latency_ms;
    if (app->garbage_pending) {
        uint8_t junk[GARBAGE_MAX];
        size_t n = app->garbage_pending < sizeof junk ? app->garbage_pending : sizeof junk;
        for (size_t k = 0; k < n; k++)
            junk[k] = (uint8_t)(noise_next(app) >> 11);
        app->garbage_pending = 0;
        if (queue_bytes(app, junk, n, ready)) /* GARBAGE_MAX < SIM_REPLY_MAX: one slot */
            app->garbage_bytes += (uint32_t)n;
    }
    struct out_slot *first = queue_bytes(app, data, len, ready);
    if (first && app->split_ms && len >= 2) {
        size_t head = len / 2;
        first->len = head;
        first->counts_as_reply = false;
        double noise = app->noise; /* the tail was already corrupted with the first copy */
        app->noise = 0.0;
        if (queue_bytes(app, first->data + head, len - head, ready + app->split_ms))
            app->split_replies++;
        app->noise = noise;
    }
}

/* Queues len bytes (<= SIM_REPLY_MAX) leaving at ready_ms, corrupted at the noise rate. Returns
 * the slot, or NULL when every slot is busy (counted as a dropped reply). */
static struct out_slot *queue_bytes(struct sim_app *app, const uint8_t *data, size_t len, uint64_t ready_ms)
{
    for (int i = 0; i < OUT_SLOTS; i++) {
        struct out_slot *s = &app->out[i];
        if (s->used)
            continue;
        memcpy(s->data, data, len);
        if (app->noise > 0.0) {
            for (size_t k = 0; k < len; k++) {
                if ((double)(noise_next(app) >> 8) / 16777216.0 < app->noise) {
                    s->data[k] ^= (uint8_t)(1u << (noise_next(app) % 8));
                    app->corrupted_bytes++;
                }
            }
        }
        s->len = len;
        s->sent = 0;
        s->ready_ms = ready_ms;
        s->seq = ++app->out_seq;
        s->counts_as_reply = true;
        s->used = true;
        return s;
    }
    app->dropped_replies++;
    static struct gw_log_limit limit;
    gw_log_ratelimited(&limit, 5000, GW_LOG_WARN, MOD,
                       "reply dropped: %d replies already waiting (is anyone reading?)", OUT_SLOTS);
    return NULL;
}

/* Oldest pending slot (bytes leave in the order they were queued). */
static struct out_slot *head_slot(struct sim_app *app)
{
    struct out_slot *best = NULL;
    for (int i = 0; i < OUT_SLOTS; i++)
        if (app->out[i].used && (!best || app->out[i].seq < best->seq))
            best = &app->out[i];
    return best;
}

static void flush_output(struct sim_app *app, uint64_t now)
{
    struct out_slot *s;
    while (app->fd >= 0 && (s = head_slot(app)) != NULL && now >= s->ready_ms) {
        size_t allowed = s->len - s->sent;
        if (app->pace) {
            uint64_t budget = (now - s->ready_ms) * WIRE_BYTES_PER_S / 1000u + 1u;
            allowed = budget > s->sent ? (size_t)(budget - s->sent) : 0;
            if (allowed > s->len - s->sent)
                allowed = s->len - s->sent;
            if (allowed == 0)
                return;
        }
        ssize_t n = write(app->fd, s->data + s->sent, allowed);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                if (now - s->ready_ms > OUT_STALE_MS) {
                    s->used = false; /* nobody reads the line */
                    app->dropped_replies++;
                    continue;
                }
                return;
            }
            static struct gw_log_limit limit;
            gw_log_ratelimited(&limit, 5000, GW_LOG_WARN, MOD, "write to %s: %s", app->path,
                               strerror(errno));
            s->used = false;
            return;
        }
        s->sent += (size_t)n;
        if (s->sent >= s->len) {
            s->used = false;
            if (s->counts_as_reply)
                app->replies++;
        } else {
            return;
        }
    }
}

static void handle_frame(struct sim_app *app, size_t len, uint64_t now)
{
    app->requests++;
    if (app->sleeping) {
        app->sleeping = false;
        app->wake_ignored++;
        GW_LOGD(MOD, "woke up: first command 0x%02X ignored", app->parser.buf[1]);
        return;
    }
    advance_model(app, now);
    uint8_t reply[SIM_REPLY_MAX];
    size_t n = sim_protocol_handle(&app->bms, app->parser.buf, len, reply, sizeof reply);
    if (n == 0 || app->silence)
        return;
    if (reply[1] == 0x00 && reply[3] == SIM_ERR_COMMAND)
        app->nacks_sent++; /* what the gateway must count as NACKs (CRC NACKs it counts as CRC errors) */
    if (reply[1] == 0x00)
        GW_LOGD(MOD, "NACK to command 0x%02X (%s), %zu-byte request", app->parser.buf[1],
                reply[3] == SIM_ERR_CRC ? "CRC error" : "command error", len);
    else
        GW_LOGD(MOD, "command 0x%02X answered with %zu bytes", app->parser.buf[1], n);
    queue_reply(app, reply, n, now);
}

/* Returns false when the device is gone: a hung-up serial port (USB adapter pulled) polls
 * readable for ever and reads 0 bytes or EIO, so it must be closed, not read again. */
static bool read_serial(struct sim_app *app, uint64_t now)
{
    uint8_t buf[512];
    ssize_t n = read(app->fd, buf, sizeof buf);
    if (n < 0) {
        int err = errno;
        if (err == EAGAIN || err == EINTR)
            return true;
        if (err == EIO && !app->device) /* pty master: no client has the slave open */
            return true;
        static struct gw_log_limit limit;
        gw_log_ratelimited(&limit, 5000, GW_LOG_WARN, MOD, "read %s: %s", app->path, strerror(err));
        return err != EIO && err != ENXIO && err != ENODEV && err != EBADF;
    }
    if (n == 0)
        return !app->device; /* end of file on a serial device: it hung up */
    if (app->sleep_enabled && now - app->last_rx_ms >= app->sleep_after_ms)
        app->sleeping = true; /* idle long enough: this traffic wakes the BMS */
    app->last_rx_ms = now;
    for (ssize_t i = 0; i < n; i++) {
        size_t len = sim_parser_push(&app->parser, buf[i]);
        if (len) {
            handle_frame(app, len, now);
            sim_parser_reset(&app->parser);
        }
    }
    return true;
}

/* ---------------------------------------------------------------- JSON control */

/* Writes s as a JSON string (quotes, backslashes and control characters escaped). */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_float(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

static float reg_float(const uint16_t *regs)
{
    uint32_t u = (uint32_t)regs[0] | ((uint32_t)regs[1] << 16);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void json_temp(FILE *f, const char *name, uint16_t raw)
{
    fprintf(f, ",\"%s\":", name);
    if (raw == 0x8000)
        fputs("null", f);
    else
        json_float(f, (int16_t)raw / 10.0);
}

static void print_state(struct sim_app *app)
{
    FILE *f = stdout;
    const struct battery_model *m = &app->bms.model;
    uint16_t r[SIM_LIVE_COUNT];
    sim_registers_live(&app->bms, r);
    unsigned n = r[53] <= 16 ? r[53] : 16, first = 16 - n;
    fputs("{\"ok\":true,\"cmd\":\"state\",\"device\":", f);
    json_string(f, app->path);
    fprintf(f, ",\"plugged\":%s", app->fd >= 0 ? "true" : "false");
    fprintf(f, ",\"scenario\":\"%s\",\"speed\":", scenario_names[app->scenario]);
    json_float(f, app->speed);
    fputs(",\"fault_mode\":", f);
    json_string(f, sim_fault_name(app->bms.fault));
    fprintf(f, ",\"silence\":%s,\"noise\":", app->silence ? "true" : "false");
    json_float(f, app->noise);
    fprintf(f, ",\"nack_only\":%s,\"split_ms\":%u,\"garbage_bytes\":%u,\"split_replies\":%u,\"nacks_sent\":%u",
            app->bms.nack_only ? "true" : "false", app->split_ms, app->garbage_bytes, app->split_replies,
            app->nacks_sent);
    fprintf(f, ",\"sleeping\":%s,\"wake_ignored\":%u,\"requests\":%u,\"replies\":%u,"
               "\"dropped_replies\":%u,\"corrupted_bytes\":%u,\"parser_dropped\":%u",
            app->sleeping ? "true" : "false", app->wake_ignored, app->requests, app->replies,
            app->dropped_replies, app->corrupted_bytes, app->parser.dropped_bytes);
    fputs(",\"registers\":[", f);
    for (unsigned i = 0; i < SIM_LIVE_COUNT; i++)
        fprintf(f, "%s%u", i ? "," : "", r[i]);
    fputs("],\"cells_reg_mv\":[", f);
    for (unsigned i = 0; i < 16; i++) {
        fputs(i ? "," : "", f);
        json_float(f, r[i] / 10.0);
    }
    fputs("],\"cells_mv\":[", f);
    unsigned min_i = first, max_i = first;
    for (unsigned i = first; i < 16; i++) {
        fputs(i > first ? "," : "", f);
        json_float(f, r[i] / 10.0);
        if (r[i] < r[min_i])
            min_i = i;
        if (r[i] > r[max_i])
            max_i = i;
    }
    fprintf(f, "],\"cell_count\":%u,\"pack_v\":", n);
    json_float(f, reg_float(&r[36]));
    fputs(",\"current_a\":", f);
    json_float(f, reg_float(&r[38]));
    fputs(",\"requested_current_a\":", f);
    json_float(f, requested_current(app));
    uint32_t soc = (uint32_t)r[46] | ((uint32_t)r[47] << 16);
    fputs(",\"soc_pct\":", f);
    json_float(f, soc / 1.0e6);
    fputs(",\"soh_pct\":", f);
    json_float(f, r[45] * 0.002);
    json_temp(f, "temp_internal_c", r[48]);
    json_temp(f, "temp_ext1_c", r[42]);
    json_temp(f, "temp_ext2_c", r[43]);
    fprintf(f, ",\"status\":%u,\"min_cell_mv\":%u,\"min_cell\":%u,\"min_cell_reg\":%u"
               ",\"max_cell_mv\":%u,\"max_cell\":%u,\"max_cell_reg\":%u"
               ",\"balancing_decision\":%u,\"balancing_active\":%u",
            r[50], r[40], n ? min_i - first + 1 : 0, min_i, r[41], n ? max_i - first + 1 : 0, max_i,
            r[51], r[52]);
    fprintf(f, ",\"lifetime_s\":%u,\"time_left_s\":%u",
            (unsigned)(r[32] | ((uint32_t)r[33] << 16)), (unsigned)(r[34] | ((uint32_t)r[35] << 16)));
    fprintf(f, ",\"model_lifetime_s\":%u,\"last_reset_cause\":%u,\"last_wake_cause\":%u",
            (unsigned)m->lifetime_s, app->bms.last_reset_cause, app->bms.last_wake_cause);
    fprintf(f, ",\"charge_enabled\":%s,\"discharge_enabled\":%s,\"fault\":%s",
            m->charge_enabled ? "true" : "false", m->discharge_enabled ? "true" : "false",
            m->fault ? "true" : "false");
    fprintf(f, ",\"stats\":{\"under_voltage\":%u,\"over_voltage\":%u,\"discharge_oc\":%u,"
               "\"charge_oc\":%u,\"over_heat\":%u,\"charging\":%u,\"full_charge\":%u}",
            m->under_voltage_count, m->over_voltage_count, m->discharge_oc_count,
            m->charge_oc_count, m->over_heat_count, m->charging_count, m->full_charge_count);
    fputs(",\"events\":[", f);
    for (unsigned k = 0; k < m->event_count; k++) {
        const struct battery_event *e = &m->events[m->event_count - 1 - k];
        fprintf(f, "%s{\"ts\":%u,\"id\":%u}", k ? "," : "", (unsigned)e->timestamp_s, e->id);
    }
    fputs("]}\n", f);
}

static void reply_ok(const char *cmd)
{
    printf("{\"ok\":true,\"cmd\":\"%s\"}\n", cmd);
}

static void reply_err(const char *cmd, const char *why)
{
    printf("{\"ok\":false,\"cmd\":\"%s\",\"error\":\"%s\"}\n", cmd, why);
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s)
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

static int find_scenario(const char *name)
{
    for (int i = 0; name && i < SC_COUNT; i++)
        if (strcmp(name, scenario_names[i]) == 0)
            return i;
    return -1;
}

/* "none frozen ..." : every fault name, for usage and error messages. */
static const char *fault_names(void)
{
    static char list[512];
    if (!list[0]) {
        size_t used = 0;
        for (unsigned i = 0; i < SIM_FAULT_COUNT; i++) {
            int n = snprintf(list + used, sizeof list - used, "%s%s", i ? " " : "",
                             sim_fault_name((enum sim_fault)i));
            if (n < 0 || (size_t)n >= sizeof list - used)
                break;
            used += (size_t)n;
        }
    }
    return list;
}

/* `fault NAME` or `fault impossible KIND` (= NAME impossible-KIND). */
static void command_fault(struct sim_app *app, const char *a1, const char *a2)
{
    char name[64];
    enum sim_fault f;
    int n = (a1 && strcmp(a1, "impossible") == 0 && a2)
                ? snprintf(name, sizeof name, "impossible-%s", a2)
                : snprintf(name, sizeof name, "%s", a1 ? a1 : "");
    if (n < 0 || (size_t)n >= sizeof name || sim_fault_from_name(name, &f) != GW_OK) {
        printf("{\"ok\":false,\"cmd\":\"fault\",\"error\":\"usage: fault NAME | fault impossible "
               "KIND (NAME: %s)\"}\n",
               fault_names());
        return;
    }
    sim_bms_set_fault(&app->bms, f);
    GW_LOGI(MOD, "fault %s: %s", sim_fault_name(f), sim_fault_description(f));
    printf("{\"ok\":true,\"cmd\":\"fault\",\"fault\":\"%s\"}\n", sim_fault_name(f));
}

/* `reset [SOC_PCT [CAUSE]]`: the BMS restarts by itself. */
static void command_reset(struct sim_app *app, const char *a1, const char *a2)
{
    double soc = 0.0, cause = SIM_RESET_CAUSE_WATCHDOG;
    if ((a1 && !parse_double(a1, 0.0, 100.0, &soc)) ||
        (a2 && (!parse_double(a2, 0.0, 255.0, &cause) || cause != floor(cause)))) {
        reply_err("reset", "usage: reset [SOC_PCT [CAUSE]] (SOC 0..100, default 0; cause 0..255, default 2)");
        return;
    }
    sim_bms_restart(&app->bms, (float)soc, (uint8_t)cause);
    battery_model_step(&app->bms.model, requested_current(app), 0.0f);
    GW_LOGI(MOD, "BMS reset: SOC re-estimated at %.1f %%, reset cause %u", soc, (unsigned)cause);
    printf("{\"ok\":true,\"cmd\":\"reset\",\"soc_pct\":");
    json_float(stdout, soc);
    printf(",\"reset_cause\":%u}\n", (unsigned)cause);
}

static void handle_command(struct sim_app *app, char *line, uint64_t now)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r", &save);
    char *a1 = strtok_r(NULL, " \t\r", &save);
    char *a2 = strtok_r(NULL, " \t\r", &save);
    double v, w;
    if (!cmd)
        return;
    advance_model(app, now);
    if (strcmp(cmd, "state") == 0) {
        print_state(app);
    } else if (strcmp(cmd, "current") == 0) {
        if (!parse_double(a1, -5000.0, 5000.0, &v)) {
            reply_err(cmd, "usage: current A (-5000..5000, + = charge)");
        } else {
            app->current_override = true;
            app->current_a = (float)v;
            battery_model_step(&app->bms.model, app->current_a, 0.0f);
            reply_ok(cmd);
        }
    } else if (strcmp(cmd, "scenario") == 0) {
        int sc = find_scenario(a1);
        if (sc < 0) {
            reply_err(cmd, "unknown scenario (idle charge discharge imbalance overtemp undervoltage noise unplugged)");
        } else {
            app->current_override = false;
            apply_scenario(app, (enum scenario)sc);
            reply_ok(cmd);
        }
    } else if (strcmp(cmd, "silence") == 0) {
        if (a1 && (strcmp(a1, "on") == 0 || strcmp(a1, "off") == 0)) {
            app->silence = strcmp(a1, "on") == 0;
            reply_ok(cmd);
        } else {
            reply_err(cmd, "usage: silence on|off");
        }
    } else if (strcmp(cmd, "noise") == 0) {
        if (!parse_double(a1, 0.0, 1.0, &v)) {
            reply_err(cmd, "usage: noise RATE (0..1)");
        } else {
            app->noise = v;
            reply_ok(cmd);
        }
    } else if (strcmp(cmd, "garbage") == 0) {
        if (!parse_double(a1, 1.0, GARBAGE_MAX, &v) || v != floor(v)) {
            reply_err(cmd, "usage: garbage N (1..512 random bytes sent just before the next reply)");
        } else {
            app->garbage_pending = (uint32_t)v;
            reply_ok(cmd);
        }
    } else if (strcmp(cmd, "split") == 0) {
        if (!parse_double(a1, 0.0, 10000.0, &v) || v != floor(v)) {
            reply_err(cmd, "usage: split MS (0..10000: each reply's second half MS later; 0 = off)");
        } else {
            app->split_ms = (uint32_t)v;
            reply_ok(cmd);
        }
    } else if (strcmp(cmd, "nack") == 0) {
        if (a1 && (strcmp(a1, "on") == 0 || strcmp(a1, "off") == 0)) {
            app->bms.nack_only = strcmp(a1, "on") == 0;
            reply_ok(cmd);
        } else {
            reply_err(cmd, "usage: nack on|off (on: every request answered NACK 0x00)");
        }
    } else if (strcmp(cmd, "speed") == 0) {
        if (!parse_double(a1, 0.0, 100000.0, &v)) {
            reply_err(cmd, "usage: speed FACTOR (0..100000)");
        } else {
            app->speed = v;
            reply_ok(cmd);
        }
    } else if (strcmp(cmd, "set-cell") == 0) {
        if (!parse_double(a1, 1.0, app->bms.model.cfg.cells, &v) || v != floor(v) ||
            !parse_double(a2, 1000.0, 5000.0, &w)) {
            reply_err(cmd, "usage: set-cell I MV (I = 1..cells, MV = 1000..5000)");
        } else {
            battery_model_set_cell_ocv(&app->bms.model, (unsigned)v - 1u, (float)(w / 1000.0));
            battery_model_step(&app->bms.model, requested_current(app), 0.0f);
            reply_ok(cmd);
        }
    } else if (strcmp(cmd, "fault") == 0) {
        command_fault(app, a1, a2);
    } else if (strcmp(cmd, "reset") == 0) {
        command_reset(app, a1, a2);
    } else if (strcmp(cmd, "unplug") == 0) {
        unplug(app);
        reply_ok(cmd);
    } else if (strcmp(cmd, "replug") == 0) {
        unplug(app);
        if (plug(app) != 0) {
            reply_err(cmd, "cannot open a new device (see stderr)");
        } else {
            fputs("{\"ok\":true,\"cmd\":\"replug\",\"device\":", stdout);
            json_string(stdout, app->path);
            fputs("}\n", stdout);
        }
    } else if (strcmp(cmd, "quit") == 0) {
        reply_ok(cmd);
        stop_requested = 1;
    } else {
        reply_err(cmd, "unknown command (state current scenario silence noise garbage split nack speed set-cell fault reset unplug replug quit)");
    }
    fflush(stdout);
}

static void read_stdin(struct sim_app *app, uint64_t now)
{
    char buf[512];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            app->stdin_open = false;
        return;
    }
    if (n == 0) {
        app->stdin_open = false; /* keep serving the line without a controller... */
        if (app->exit_on_eof)
            stop_requested = 1;  /* ...unless asked to follow the parent that started us */
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            app->line[app->line_len] = '\0';
            if (app->line_overflow)
                reply_err("?", "command line too long");
            else
                handle_command(app, app->line, now);
            fflush(stdout);
            app->line_len = 0;
            app->line_overflow = false;
        } else if (app->line_len + 1 < sizeof app->line) {
            app->line[app->line_len++] = buf[i];
        } else {
            app->line_overflow = true;
        }
    }
}

/* ---------------------------------------------------------------- CLI */

static void usage(FILE *f)
{
    fputs("usage: tinybms-sim [options]\n"
          "A TinyBMS s516 on a pseudo-terminal: prints the slave path on the first stdout line,\n"
          "then reads control commands on stdin (one per line, one JSON line answered).\n"
          "  --device PATH        serve a real serial port instead of a pty\n"
          "  --link PATH          keep a symlink to the current slave path\n"
          "  --cells N            4..16 series cells (default 16)\n"
          "  --chemistry lfp|nmc  cell chemistry (default lfp)\n"
          "  --capacity AH        nominal capacity (default 280)\n"
          "  --soc PCT            initial state of charge 0..100 (default 50)\n"
          "  --seed N             spread between cells (default 1)\n"
          "  --latency-ms X       answer delay (default 2)\n"
          "  --pace               send replies at 11520 bytes/s like a 115200-baud line\n"
          "  --speed FACTOR       model time acceleration (default 1, 0 freezes the model)\n"
          "  --scenario NAME      idle charge discharge imbalance overtemp undervoltage noise unplugged\n"
          "  --current A          charge (+) / discharge (-) current, overrides the scenario\n"
          "  --noise RATE         fraction 0..1 of reply bytes corrupted\n"
          "  --split-ms MS        send each reply's second half MS later (a USB adapter's latency)\n"
          "  --nack-only          answer every request NACK 0x00 (a BMS refusing everything)\n"
          "  --fault NAME         serve a fault in every live read (names below; default none)\n"
          "  --ext2 | --no-ext2   second external sensor present / absent (default absent)\n"
          "  --old-firmware       NACK registers only newer firmware has (45 305 310 311 321 322 323 329)\n"
          "  --old-firmware-junk  like --old-firmware but serve 0xFFFF for those registers\n"
          "  --sleep-after-ms N   idle time before the BMS sleeps (default 2000); when asleep the\n"
          "                       first command is ignored and the resend answered\n"
          "  --no-sleep           never sleep\n"
          "  --exit-on-eof        exit when standard input closes (the controlling parent is gone)\n"
          "  -v                   debug logs on stderr\n"
          "  --help               this text\n"
          "stdin commands: state | current A | scenario NAME | silence on|off | noise RATE |\n"
          "  garbage N | split MS | nack on|off |\n"
          "  set-cell I MV | speed F | fault NAME | fault impossible KIND | reset [SOC [CAUSE]] |\n"
          "  unplug | replug | quit\n",
          f);
    fprintf(f, "faults: %s\n", fault_names());
}

struct cli {
    const char *device, *link;
    unsigned cells;
    int chemistry;
    double capacity, soc, latency, speed, current, noise, split_ms;
    bool nack_only;
    bool soc_set, current_set, pace, ext2, old_fw, old_fw_junk, sleep_enabled, verbose, exit_on_eof;
    unsigned long seed, sleep_after;
    int scenario;
    enum sim_fault fault;
};

static bool need_arg(int i, int argc, const char *opt)
{
    if (i + 1 < argc)
        return true;
    fprintf(stderr, "tinybms-sim: %s needs a value (see --help)\n", opt);
    return false;
}

static bool bad_value(const char *opt, const char *val, const char *range)
{
    fprintf(stderr, "tinybms-sim: bad value '%s' for %s (expected %s)\n", val, opt, range);
    return false;
}

/* Splits GNU-style "--option=value" into "--option" "value" (the form `tinybms-gw --sim-arg=...`
 * and users write). out must hold 2 * argc + 1 pointers; returns the new argc. */
static int split_equals(int argc, char **argv, char **out, char *storage, size_t storage_cap)
{
    int n = 0;
    size_t used = 0;
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        size_t name_len = eq ? (size_t)(eq - argv[i]) : 0;
        if (i > 0 && eq && strncmp(argv[i], "--", 2) == 0 && used + name_len + 1 <= storage_cap) {
            memcpy(storage + used, argv[i], name_len);
            storage[used + name_len] = '\0';
            out[n++] = storage + used;
            used += name_len + 1;
            out[n++] = (char *)eq + 1;
        } else {
            out[n++] = argv[i];
        }
    }
    out[n] = NULL;
    return n;
}

static bool parse_cli(int argc, char **argv, struct cli *c)
{
    memset(c, 0, sizeof *c);
    c->cells = 16;
    c->chemistry = BATTERY_LFP;
    c->capacity = 280.0;
    c->latency = 2.0;
    c->speed = 1.0;
    c->seed = 1;
    c->sleep_enabled = true;
    c->sleep_after = 2000;
    c->scenario = SC_IDLE;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        double v;
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(o, "--pace") == 0) {
            c->pace = true;
        } else if (strcmp(o, "--ext2") == 0) {
            c->ext2 = true;
        } else if (strcmp(o, "--no-ext2") == 0) {
            c->ext2 = false;
        } else if (strcmp(o, "--old-firmware") == 0) {
            c->old_fw = true;
        } else if (strcmp(o, "--old-firmware-junk") == 0) {
            c->old_fw = c->old_fw_junk = true;
        } else if (strcmp(o, "--nack-only") == 0) {
            c->nack_only = true;
        } else if (strcmp(o, "--no-sleep") == 0) {
            c->sleep_enabled = false;
        } else if (strcmp(o, "--exit-on-eof") == 0) {
            c->exit_on_eof = true;
        } else if (strcmp(o, "-v") == 0) {
            c->verbose = true;
        } else if (!need_arg(i, argc, o)) {
            return false;
        } else {
            const char *a = argv[++i];
            if (strcmp(o, "--device") == 0) {
                c->device = a;
            } else if (strcmp(o, "--link") == 0) {
                c->link = a;
            } else if (strcmp(o, "--cells") == 0) {
                if (!parse_double(a, 4, 16, &v) || v != floor(v))
                    return bad_value(o, a, "an integer 4..16");
                c->cells = (unsigned)v;
            } else if (strcmp(o, "--chemistry") == 0) {
                if (strcmp(a, "lfp") == 0)
                    c->chemistry = BATTERY_LFP;
                else if (strcmp(a, "nmc") == 0)
                    c->chemistry = BATTERY_NMC;
                else
                    return bad_value(o, a, "lfp or nmc");
            } else if (strcmp(o, "--capacity") == 0) {
                if (!parse_double(a, 1.0, 655.0, &c->capacity))
                    return bad_value(o, a, "1..655 Ah");
            } else if (strcmp(o, "--soc") == 0) {
                if (!parse_double(a, 0.0, 100.0, &c->soc))
                    return bad_value(o, a, "0..100 %");
                c->soc_set = true;
            } else if (strcmp(o, "--seed") == 0) {
                if (!parse_double(a, 0, 4294967295.0, &v) || v != floor(v))
                    return bad_value(o, a, "an integer 0..4294967295");
                c->seed = (unsigned long)v;
            } else if (strcmp(o, "--latency-ms") == 0) {
                if (!parse_double(a, 0.0, 10000.0, &c->latency))
                    return bad_value(o, a, "0..10000 ms");
            } else if (strcmp(o, "--speed") == 0) {
                if (!parse_double(a, 0.0, 100000.0, &c->speed))
                    return bad_value(o, a, "0..100000");
            } else if (strcmp(o, "--scenario") == 0) {
                c->scenario = find_scenario(a);
                if (c->scenario < 0)
                    return bad_value(o, a, "idle charge discharge imbalance overtemp undervoltage noise unplugged");
            } else if (strcmp(o, "--current") == 0) {
                if (!parse_double(a, -5000.0, 5000.0, &c->current))
                    return bad_value(o, a, "-5000..5000 A");
                c->current_set = true;
            } else if (strcmp(o, "--fault") == 0) {
                if (sim_fault_from_name(a, &c->fault) != GW_OK)
                    return bad_value(o, a, fault_names());
            } else if (strcmp(o, "--split-ms") == 0) {
                if (!parse_double(a, 0.0, 10000.0, &c->split_ms) || c->split_ms != floor(c->split_ms))
                    return bad_value(o, a, "an integer 0..10000 ms");
            } else if (strcmp(o, "--noise") == 0) {
                if (!parse_double(a, 0.0, 1.0, &c->noise))
                    return bad_value(o, a, "0..1");
            } else if (strcmp(o, "--sleep-after-ms") == 0) {
                if (!parse_double(a, 1.0, 86400000.0, &v) || v != floor(v))
                    return bad_value(o, a, "1..86400000 ms");
                c->sleep_after = (unsigned long)v;
            } else {
                fprintf(stderr, "tinybms-sim: unknown option %s (see --help)\n", o);
                return false;
            }
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    struct cli c;
    if (argc > 256) {
        fprintf(stderr, "tinybms-sim: too many arguments\n");
        return 2;
    }
    char *args[2 * 256 + 1];
    char names[4096];
    int nargs = split_equals(argc, argv, args, names, sizeof names);
    if (!parse_cli(nargs, args, &c))
        return 2;
    if (c.verbose)
        gw_log_set_level(GW_LOG_DEBUG);

    static struct sim_app app; /* large (reply buffers): keep it off the stack */
    memset(&app, 0, sizeof app);
    app.fd = app.slave_keep_fd = -1;
    app.device = c.device;
    app.link = c.link;

    struct battery_model_config cfg;
    battery_model_default_config(&cfg, (enum battery_chemistry)c.chemistry);
    cfg.cells = (uint8_t)c.cells;
    cfg.capacity_ah = (float)c.capacity;
    cfg.seed = (uint32_t)c.seed;
    cfg.initial_soc_spread = 0.02f; /* cells start a little apart, as real packs do */
    if (c.soc_set)
        cfg.initial_soc = (float)(c.soc / 100.0);
    else if (c.scenario == SC_UNDERVOLTAGE)
        cfg.initial_soc = 0.05f; /* reach the cutoff within minutes */
    if (sim_bms_init(&app.bms, &cfg, c.old_fw) != 0) {
        fprintf(stderr, "tinybms-sim: battery configuration out of range\n");
        return 2;
    }
    app.bms.old_firmware_junk = c.old_fw_junk;
    app.bms.model.ext_sensor_connected[1] = c.ext2;
    app.speed = c.speed;
    app.latency_ms = (uint32_t)lround(c.latency);
    app.pace = c.pace;
    app.sleep_enabled = c.sleep_enabled;
    app.sleep_after_ms = (uint32_t)c.sleep_after;
    app.noise = c.noise;
    app.split_ms = (uint32_t)c.split_ms;
    app.bms.nack_only = c.nack_only;
    app.noise_rng = (uint32_t)c.seed * 2654435761u + 12345u;
    if (!app.noise_rng)
        app.noise_rng = 1;
    app.current_override = c.current_set;
    app.current_a = (float)c.current;
    app.stdin_open = true;
    app.exit_on_eof = c.exit_on_eof;
    apply_scenario(&app, (enum scenario)c.scenario);
    sim_bms_set_fault(&app.bms, c.fault); /* after the scenario: frozen snapshots its start */

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (plug(&app) != 0)
        return 1;
    printf("%s\n", app.path);
    fflush(stdout);
    GW_LOGI(MOD, "serving %s: %u %s cells, %.0f Ah, SOC %.1f %%, scenario %s, speed %g", app.path,
            cfg.cells, cfg.chemistry == BATTERY_NMC ? "NMC" : "LFP", (double)cfg.capacity_ah,
            (double)cfg.initial_soc * 100.0, scenario_names[app.scenario], app.speed);
    if (app.bms.fault != SIM_FAULT_NONE)
        GW_LOGI(MOD, "fault %s: %s", sim_fault_name(app.bms.fault), sim_fault_description(app.bms.fault));

    uint64_t now = mono_ms();
    app.last_model_ms = now;
    app.last_rx_ms = now;
    uint64_t next_tick = now + TICK_MS;
    while (!stop_requested) {
        now = mono_ms();
        if (now >= next_tick) {
            advance_model(&app, now);
            next_tick = now + TICK_MS;
        }
        if (app.parser.len > 0 && now - app.last_rx_ms >= PARTIAL_FRAME_TIMEOUT_MS)
            sim_parser_reset(&app.parser); /* line went quiet mid-frame: drop it */
        flush_output(&app, now);

        uint64_t wake = next_tick;
        struct out_slot *head = head_slot(&app);
        if (head && app.fd >= 0) {
            uint64_t t = head->ready_ms > now ? head->ready_ms : now + 1;
            if (t < wake)
                wake = t;
        }
        if (app.parser.len > 0 && app.last_rx_ms + PARTIAL_FRAME_TIMEOUT_MS < wake)
            wake = app.last_rx_ms + PARTIAL_FRAME_TIMEOUT_MS;
        int timeout = wake > now ? (int)(wake - now) : 0;

        struct pollfd pfd[2];
        int nfds = 0, serial_idx = -1, stdin_idx = -1;
        if (app.stdin_open) {
            pfd[nfds] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
            stdin_idx = nfds++;
        }
        if (app.fd >= 0) {
            short ev = POLLIN;
            if (head && head->ready_ms <= now && !app.pace)
                ev |= POLLOUT;
            pfd[nfds] = (struct pollfd){ .fd = app.fd, .events = ev };
            serial_idx = nfds++;
        }
        int rc = poll(pfd, (nfds_t)nfds, timeout);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            GW_LOGE(MOD, "poll: %s", strerror(errno));
            break;
        }
        now = mono_ms();
        /* POLLNVAL too: a closed stdin (started with <&-) must not make poll() return at once
         * for ever; the read then fails and stdin is no longer polled. */
        if (stdin_idx >= 0 && (pfd[stdin_idx].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)))
            read_stdin(&app, now);
        if (serial_idx >= 0 && app.fd >= 0 && pfd[serial_idx].fd == app.fd) {
            short rev = pfd[serial_idx].revents;
            bool gone = (rev & POLLIN) ? !read_serial(&app, now) : (rev & (POLLHUP | POLLERR | POLLNVAL)) != 0;
            if (gone) {
                /* The port went away (USB adapter pulled): stop polling it; `replug` retries. */
                GW_LOGE(MOD, "%s hung up; closed (send 'replug' to reopen)", app.path);
                unplug(&app);
            }
        }
    }
    GW_LOGI(MOD, "stopping: %u requests, %u replies, %u ignored at wake-up", app.requests,
            app.replies, app.wake_ignored);
    unplug(&app);
    return 0;
}
