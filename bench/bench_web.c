/* Web server figures (never assertions) on the real daemon: tinybms-gw --simulate with every
 * service (CAN to a candump log, MQTT to a local mosquitto when one is installed, history,
 * alerts, the web server) on loopback.
 *
 * 1. wrk (Debian's) against /api/data and /api/status, 2 threads, BENCH_WEB_CONNS connections
 *    (default 16), BENCH_WEB_S seconds (default 5) after a second of warm-up, logged in (HTTP Basic,
 *    as a browser): requests/s, p50 and p99 latency, the gateway's CPU meanwhile. Skipped with a
 *    message when wrk is missing.
 * 2. BENCH_WEB_CLIENTS (default 100) WebSocket clients on /ws/live for BENCH_WEB_WS_S seconds
 *    (default 10), one thread with poll(), answering the gateway's pings: update -> delivered
 *    latency (the receive time minus the view's own timestamp, both wall clock on this machine;
 *    the view is made by the battery service, then goes through the bus, the JSON and each
 *    client's queue), p50/p99/max; messages per client; the gateway's CPU and RSS meanwhile, and
 *    its RSS before the clients came.
 *
 * Environment: TINYBMS_GW (default $GW_BUILD_DIR/tinybms-gw), GW_MOSQUITTO (default
 * /usr/sbin/mosquitto), BENCH_WEB_POLL_MS (BMS poll period, default 200: five views a second),
 * BENCH_WEB_HTTPS=1 (the same against HTTPS with a self-signed certificate made with openssl). */
#define _GNU_SOURCE
#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PASSWORD "bench-web-pass-1"
#define WS_BUF (256 * 1024)
#define MAX_LAT 400000

static void sleep_s(double s)
{
    struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v && atoi(v) > 0 ? atoi(v) : def;
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

static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int out = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out, 1);
        dup2(out, 2);
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

static void base64(const char *in, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* HTTP status of GET path (plain HTTP, one connection), -1 when nothing answers. */
static int http_status(int port, const char *path, const char *auth)
{
    int fd = connect_port(port);
    if (fd < 0)
        return -1;
    char req[512], buf[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\nConnection: close\r\n\r\n",
                     path, auth);
    int status = -1;
    if (write(fd, req, (size_t)n) == n) {
        ssize_t r = read(fd, buf, sizeof buf - 1);
        if (r > 12) {
            buf[r] = '\0';
            status = atoi(buf + 9);
        }
    }
    close(fd);
    return status;
}

/* Gateway CPU seconds (user + system) and RSS / peak RSS in KiB. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long proc_kib(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0)
            v = atol(line + kl);
    if (f)
        fclose(f);
    return v;
}

static int proc_threads(pid_t pid)
{
    return (int)proc_kib(pid, "Threads:");
}

/* ------------------------------------------------------------------ wrk */

static double parse_ms(const char *s)
{
    double v = atof(s);
    if (strstr(s, "us"))
        return v / 1000.0;
    if (strstr(s, "ms"))
        return v;
    if (strchr(s, 's'))
        return v * 1000.0;
    return v;
}

static void run_wrk(const char *scheme, int port, const char *path, const char *auth, pid_t gw)
{
    int conns = env_int("BENCH_WEB_CONNS", 16), secs = env_int("BENCH_WEB_S", 5);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "wrk -t2 -c%d -d%ds --latency -H 'Authorization: Basic %s' %s://127.0.0.1:%d%s 2>&1", conns, secs,
             auth, scheme, port, path);
    /* A second of warm-up, not counted: the connections' first requests (TLS handshakes, the
     * first login of each address through PBKDF2) are not the steady state. */
    char warm[600];
    snprintf(warm, sizeof warm, "wrk -t2 -c%d -d1s -H 'Authorization: Basic %s' %s://127.0.0.1:%d%s >/dev/null 2>&1",
             conns, auth, scheme, port, path);
    if (system(warm)) {
    }
    double c0 = proc_cpu_s(gw), t0 = bench_now_s();
    FILE *p = popen(cmd, "r");
    if (!p) {
        printf("  %s: wrk did not start\n", path);
        return;
    }
    char line[512];
    double rps = -1, p50 = -1, p99 = -1;
    long non2xx = 0, errors = 0;
    while (fgets(line, sizeof line, p)) {
        char *s;
        if ((s = strstr(line, "Requests/sec:")))
            rps = atof(s + 13);
        else if ((s = strstr(line, " 50%")))
            p50 = parse_ms(s + 4);
        else if ((s = strstr(line, " 99%")))
            p99 = parse_ms(s + 4);
        else if ((s = strstr(line, "Non-2xx or 3xx responses:")))
            non2xx = atol(s + 25);
        else if ((s = strstr(line, "Socket errors:")))
            errors = 1;
    }
    pclose(p);
    double cpu = proc_cpu_s(gw) - c0, window = bench_now_s() - t0;
    printf("  %-12s %5s: %8.0f req/s, p50 %.2f ms, p99 %.2f ms, gateway CPU %.0f%% of a core%s%s\n", path, scheme,
           rps, p50, p99, 100.0 * cpu / window, non2xx ? " (NON-2XX ANSWERS)" : "", errors ? " (socket errors)" : "");
}

/* ------------------------------------------------------------------ WebSocket clients */

struct wsc {
    int fd;
    bool open;
    size_t len;
    unsigned messages;
    uint8_t *buf;
};

static void ws_send(int fd, int opcode, const uint8_t *payload, size_t n)
{
    uint8_t frame[140];
    if (n > 125)
        return;
    frame[0] = (uint8_t)(0x80 | opcode);
    frame[1] = (uint8_t)(0x80 | n);
    uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
    memcpy(frame + 2, mask, 4);
    for (size_t i = 0; i < n; i++)
        frame[6 + i] = payload[i] ^ mask[i % 4];
    if (write(fd, frame, 6 + n) < 0) {
    }
}

static int ws_connect(int port, const char *auth)
{
    int fd = connect_port(port);
    if (fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws/live HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Authorization: Basic %s\r\n\r\n",
                     port, auth);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    char head[1024];
    size_t got = 0;
    while (got < sizeof head - 1) {
        ssize_t r = read(fd, head + got, 1); /* byte by byte up to the blank line: frames follow */
        if (r <= 0)
            break;
        got++;
        if (got >= 4 && memcmp(head + got - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[got] = '\0';
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Frames complete in c->buf: text -> one latency, ping -> pong, close -> closed. */
static void ws_parse(struct wsc *c, double *lat, size_t *nlat)
{
    size_t off = 0;
    for (;;) {
        if (c->len - off < 2)
            break;
        uint8_t *p = c->buf + off;
        int op = p[0] & 0x0f;
        uint64_t n = p[1] & 0x7f;
        size_t h = 2;
        if (n == 126) {
            if (c->len - off < 4)
                break;
            n = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (n == 127) {
            if (c->len - off < 10)
                break;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | p[2 + i];
            h = 10;
        }
        if (c->len - off < h + n)
            break;
        uint8_t *payload = p + h;
        if (op == 1) {
            c->messages++;
            const char *ts = memmem(payload, n, "\"timestamp\":", 12);
            if (ts && *nlat < MAX_LAT) {
                double sent = strtod(ts + 12, NULL);
                lat[(*nlat)++] = wall_ms() - sent;
            }
        } else if (op == 9) {
            ws_send(c->fd, 10, payload, n);
        } else if (op == 8) {
            c->open = false;
        }
        off += h + n;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
}

static void run_ws(int port, const char *auth, pid_t gw)
{
    int nclients = env_int("BENCH_WEB_CLIENTS", 100), secs = env_int("BENCH_WEB_WS_S", 10);
    long rss_before = proc_kib(gw, "VmRSS:");
    struct wsc *c = calloc((size_t)nclients, sizeof *c);
    struct pollfd *pf = calloc((size_t)nclients, sizeof *pf);
    double *lat = malloc(MAX_LAT * sizeof *lat);
    int connected = 0;
    for (int i = 0; i < nclients; i++) {
        c[i].fd = ws_connect(port, auth);
        c[i].open = c[i].fd >= 0;
        c[i].buf = malloc(WS_BUF);
        connected += c[i].open;
    }
    size_t nlat = 0;
    sleep_s(1); /* the welcome messages are not updates */
    for (int i = 0; i < nclients; i++) {
        if (!c[i].open)
            continue;
        uint8_t tmp[65536];
        while (read(c[i].fd, tmp, sizeof tmp) > 0) {
        }
        c[i].len = 0;
    }
    double c0 = proc_cpu_s(gw), t0 = bench_now_s();
    long rss_peak = 0;
    double next_rss = t0;
    while (bench_now_s() - t0 < secs) {
        for (int i = 0; i < nclients; i++) {
            pf[i].fd = c[i].open ? c[i].fd : -1;
            pf[i].events = POLLIN;
        }
        poll(pf, (nfds_t)nclients, 100);
        for (int i = 0; i < nclients; i++) {
            if (!c[i].open || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = read(c[i].fd, c[i].buf + c[i].len, WS_BUF - c[i].len);
            if (r <= 0) {
                if (r == 0 || (errno != EAGAIN && errno != EINTR))
                    c[i].open = false;
                continue;
            }
            c[i].len += (size_t)r;
            ws_parse(&c[i], lat, &nlat);
            if (c[i].len == WS_BUF)
                c[i].len = 0; /* a frame this big is not a view */
        }
        if (bench_now_s() >= next_rss) {
            long r = proc_kib(gw, "VmRSS:");
            rss_peak = r > rss_peak ? r : rss_peak;
            next_rss += 0.5;
        }
    }
    double cpu = proc_cpu_s(gw) - c0, window = bench_now_s() - t0;
    long rss_end = proc_kib(gw, "VmRSS:");
    int threads = proc_threads(gw);
    int still = 0;
    unsigned min_msgs = ~0u, max_msgs = 0;
    for (int i = 0; i < nclients; i++) {
        still += c[i].open;
        if (c[i].fd >= 0) {
            min_msgs = c[i].messages < min_msgs ? c[i].messages : min_msgs;
            max_msgs = c[i].messages > max_msgs ? c[i].messages : max_msgs;
        }
    }
    printf("  %d WebSocket clients on /ws/live (%d connected, %d still open after %.0f s), %zu updates received "
           "(%u..%u per client)\n",
           nclients, connected, still, window, nlat, min_msgs == ~0u ? 0 : min_msgs, max_msgs);
    if (nlat) {
        double mx = 0;
        for (size_t i = 0; i < nlat; i++)
            mx = lat[i] > mx ? lat[i] : mx;
        printf("  update -> delivered: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", bench_quantile(lat, nlat, 0.5),
               bench_quantile(lat, nlat, 0.99), mx);
    }
    printf("  gateway meanwhile: CPU %.0f%% of a core, RSS %.1f MiB (peak %.1f MiB; %.1f MiB before the clients), "
           "%d threads\n",
           100.0 * cpu / window, rss_end / 1024.0, (rss_peak > rss_end ? rss_peak : rss_end) / 1024.0,
           rss_before / 1024.0, threads);
    for (int i = 0; i < nclients; i++) {
        if (c[i].fd >= 0) {
            ws_send(c[i].fd, 8, (const uint8_t *)"\x03\xe8", 2);
            close(c[i].fd);
        }
        free(c[i].buf);
    }
    free(c);
    free(pf);
    free(lat);
}

/* ------------------------------------------------------------------ the daemon */

static bool write_config(const char *dir, int clients, bool https)
{
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    fprintf(f, "{\"web\":{\"ws_max_clients\":%d,\"ws_queue_len\":64,\"ui_dir\":\"%s\"", clients + 8, dir);
    if (https)
        fprintf(f, ",\"https_enabled\":true,\"cert_file\":\"%s/cert.pem\",\"key_file\":\"%s/key.pem\"", dir, dir);
    fprintf(f, "},\"history\":{\"period_s\":1}}\n");
    fclose(f);
    chmod(path, 0600);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "printf '%%s\\n' '%s' | '%s' --set-password --data-dir '%s' >/dev/null 2>&1", PASSWORD,
             getenv("BENCH_WEB_EXE"), dir);
    return system(cmd) == 0;
}

int main(void)
{
    char exe[512];
    const char *env = getenv("TINYBMS_GW");
    const char *build = getenv("GW_BUILD_DIR");
    snprintf(exe, sizeof exe, "%s", env && env[0] ? env : "");
    if (!exe[0])
        snprintf(exe, sizeof exe, "%s/tinybms-gw", build ? build : ".");
    setenv("BENCH_WEB_EXE", exe, 1);
    bool https = getenv("BENCH_WEB_HTTPS") && atoi(getenv("BENCH_WEB_HTTPS")) > 0;
    int clients = env_int("BENCH_WEB_CLIENTS", 100);
    bool have_wrk = system("command -v wrk >/dev/null 2>&1") == 0;

    const char *broker = getenv("GW_MOSQUITTO");
    if (!broker || !broker[0])
        broker = "/usr/sbin/mosquitto";
    pid_t mosq = -1;
    int mport = -1;
    if (access(broker, X_OK) == 0 && (mport = free_port()) > 0) {
        char ps[16];
        snprintf(ps, sizeof ps, "%d", mport);
        char *argv[] = { (char *)broker, "-p", ps, NULL };
        mosq = spawn(argv, NULL);
        sleep_s(0.5);
    } else {
        mport = -1;
    }

    char dir[] = "/tmp/tinybms-web-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (https) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 "
                 "-keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1",
                 dir, dir);
        if (system(cmd) != 0)
            printf("openssl could not make a certificate\n");
    }
    int port = free_port();
    if (!write_config(dir, clients, https)) {
        printf("bench_web: cannot prepare %s (is %s built?)\n", dir, exe);
        return 0;
    }
    char can[600], mqtt[64], http[16], log[640], poll_ms[16];
    snprintf(can, sizeof can, "log:%s/can.log", dir);
    snprintf(mqtt, sizeof mqtt, "mqtt://127.0.0.1:%d", mport);
    snprintf(http, sizeof http, "%d", port);
    snprintf(log, sizeof log, "%s/gw.log", dir);
    snprintf(poll_ms, sizeof poll_ms, "%d", env_int("BENCH_WEB_POLL_MS", 200));
    char *argv[20];
    int argc = 0;
    argv[argc++] = exe;
    argv[argc++] = "--simulate";
    argv[argc++] = "--quiet";
    argv[argc++] = "--data-dir";
    argv[argc++] = dir;
    argv[argc++] = "--http";
    argv[argc++] = http;
    argv[argc++] = "--can";
    argv[argc++] = can;
    argv[argc++] = "--poll-ms";
    argv[argc++] = poll_ms;
    if (mport > 0) {
        argv[argc++] = "--mqtt";
        argv[argc++] = mqtt;
    }
    argv[argc] = NULL;
    pid_t gw = spawn(argv, log);
    char user_pass[64], auth[128];
    snprintf(user_pass, sizeof user_pass, "admin:%s", PASSWORD);
    base64(user_pass, auth);
    bool up = false;
    for (int i = 0; i < 300 && !up && !https; i++) {
        up = http_status(port, "/api/data", auth) == 200;
        if (!up)
            sleep_s(0.1);
    }
    if (https) {
        sleep_s(3);
        up = waitpid(gw, NULL, WNOHANG) == 0;
    }
    printf("gateway: %s, every service (CAN log, MQTT %s, history, alerts), BMS poll %s ms, %s on 127.0.0.1:%d\n", exe,
           mport > 0 ? "to a local mosquitto" : "off (no mosquitto)", poll_ms, https ? "HTTPS" : "HTTP", port);
    if (!up) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "tail -5 %s", log);
        printf("  the web server did not come up; its log says:\n");
        fflush(stdout);
        if (system(cmd)) {
        }
    } else {
        /* The clients first, on the fresh daemon: its RSS is then what a gateway with 100 open
         * pages holds, not what the request bursts below leave in malloc's arenas. */
        if (!https)
            run_ws(port, auth, gw);
        if (have_wrk) {
            printf("wrk, 2 threads, %d connections, %d s, logged in:\n", env_int("BENCH_WEB_CONNS", 16),
                   env_int("BENCH_WEB_S", 5));
            run_wrk(https ? "https" : "http", port, "/api/data", auth, gw);
            run_wrk(https ? "https" : "http", port, "/api/status", auth, gw);
            printf("  gateway RSS after wrk: %.1f MiB (peak %.1f MiB)\n", proc_kib(gw, "VmRSS:") / 1024.0,
                   proc_kib(gw, "VmHWM:") / 1024.0);
        } else {
            printf("wrk not installed (scripts/install-deps test): HTTP figures skipped\n");
        }
    }
    stop(gw);
    stop(mosq);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
    }
    return 0;
}
