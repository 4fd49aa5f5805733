/* systemd notification and watchdog without libsystemd: see watchdog.h. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "watchdog.h"
#include "watchdog_internal.h"

#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>


struct watchdog_client {
    char name[24];
    _Atomic uint64_t next_ms;   /* WATCHDOG_IDLE until the first check-in */
};

struct watchdog {
    int fd;                     /* datagram socket, -1 when disabled */
    struct sockaddr_un addr;
    socklen_t addr_len;
    uint32_t interval_ms;       /* $WATCHDOG_USEC in ms; 0 = no watchdog */
    uint32_t period_ms;         /* ping period = grace of a client */

    pthread_mutex_t lock;       /* everything below */
    pthread_cond_t wake;
    bool thread_started, stop_requested, stopping_sent, ready_sent;
    pthread_t thread;
    struct watchdog_client clients[WATCHDOG_MAX_CLIENTS];
    _Atomic size_t client_count;
    unsigned expected_units;    /* READY=1 when this many units are ready */
    bool expect_set;
    uint32_t ready_units;       /* bit per unit */
    int overdue;                /* client the last decision found overdue, -1 none (thread) */
};

/* ---- pure parts ------------------------------------------------------------------------- */

struct watchdog__decision watchdog__decide(uint64_t now_ms, const uint64_t *next, size_t n, uint32_t grace_ms)
{
    struct watchdog__decision d = { .ping = true, .overdue = -1 };
    for (size_t i = 0; i < n; i++) {
        if (next[i] == WATCHDOG_IDLE)
            continue;
        uint64_t limit = next[i] > UINT64_MAX - grace_ms ? UINT64_MAX : next[i] + grace_ms;
        if (now_ms > limit) {
            d.ping = false;
            d.overdue = (int)i;
            d.overdue_ms = now_ms - next[i];
            return d;
        }
    }
    return d;
}

uint32_t watchdog__period_ms(uint64_t watchdog_usec)
{
    uint64_t third = watchdog_usec / 3000u;
    if (third < 1)
        third = 1;
    return third > UINT32_MAX ? UINT32_MAX : (uint32_t)third;
}

int watchdog__parse_socket(const char *text, struct sockaddr_un *addr, socklen_t *len)
{
    if (!text || !addr || !len)
        return GW_ERR_INVAL;
    size_t n = strlen(text);
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    if (n < 2 || n >= sizeof addr->sun_path || (text[0] != '/' && text[0] != '@'))
        return GW_ERR_INVAL;
    memcpy(addr->sun_path, text, n);
    if (text[0] == '@')
        addr->sun_path[0] = '\0'; /* abstract namespace: the name is the bytes after the NUL */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (text[0] == '/' ? 1 : 0));
    return GW_OK;
}

/* ---- the protocol ----------------------------------------------------------------------- */

static void notify(struct watchdog *wd, const char *msg)
{
    if (wd->fd < 0)
        return;
    for (;;) {
        ssize_t n = sendto(wd->fd, msg, strlen(msg), MSG_NOSIGNAL, (const struct sockaddr *)&wd->addr, wd->addr_len);
        if (n >= 0 || errno != EINTR)
            break;
    }
    /* A failed send (systemd gone, a full socket) is not retried: the next ping is the retry,
     * and an unanswered watchdog is what systemd acts on anyway. */
}

int watchdog_create(struct watchdog **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    struct watchdog *wd = calloc(1, sizeof *wd);
    if (!wd)
        return GW_ERR_NOMEM;
    wd->fd = -1;
    wd->overdue = -1;
    pthread_mutex_init(&wd->lock, NULL);
    if (gw_clock_cond_init(&wd->wake) != GW_OK) {
        pthread_mutex_destroy(&wd->lock);
        free(wd);
        return GW_ERR_NOMEM;
    }
    const char *sock = getenv("NOTIFY_SOCKET");
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    int rc = GW_OK;
    char sock_copy[sizeof wd->addr.sun_path + 1] = "";
    if (sock)
        snprintf(sock_copy, sizeof sock_copy, "%s", sock);
    if (sock && watchdog__parse_socket(sock, &wd->addr, &wd->addr_len) != GW_OK) {
        GW_LOGW(MOD, "NOTIFY_SOCKET '%s' is not a unix socket path: not notifying systemd", sock_copy);
        rc = GW_ERR_INVAL;
    } else if (sock) {
        wd->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (wd->fd < 0)
            GW_LOGW(MOD, "cannot open a socket to notify systemd: %s", strerror(errno));
    }
    if (wd->fd >= 0 && usec) {
        char *end;
        errno = 0;
        unsigned long long us = strtoull(usec, &end, 10);
        bool ours = !pid || (unsigned long long)strtoull(pid, NULL, 10) == (unsigned long long)getpid();
        if (errno || end == usec || *end || us == 0 || us / 1000 > UINT32_MAX) {
            GW_LOGW(MOD, "WATCHDOG_USEC '%s' is not a number of microseconds: no watchdog pings", usec);
            rc = GW_ERR_INVAL;
        } else if (ours) {
            wd->interval_ms = (uint32_t)(us / 1000 ? us / 1000 : 1);
            wd->period_ms = watchdog__period_ms(us);
        }
    }
    /* Children (the built-in simulator) must not talk to systemd as the gateway. */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    if (wd->fd >= 0)
        GW_LOGI(MOD, "notifying systemd on %s%s", sock_copy,
                wd->interval_ms ? "" : " (readiness only: no WatchdogSec)");
    if (wd->interval_ms)
        GW_LOGI(MOD, "watchdog every %u ms (WatchdogSec %u ms): the BMS pollers and the CAN scheduler must "
                "check in", (unsigned)wd->period_ms, (unsigned)wd->interval_ms);
    *out = wd;
    return rc;
}

int watchdog_enabled(const struct watchdog *wd) { return wd && wd->fd >= 0; }
uint32_t watchdog_interval_ms(const struct watchdog *wd) { return wd ? wd->interval_ms : 0; }

struct watchdog_client *watchdog_client_add(struct watchdog *wd, const char *name)
{
    if (!wd || !wd->interval_ms)
        return NULL;
    pthread_mutex_lock(&wd->lock);
    size_t n = atomic_load(&wd->client_count);
    struct watchdog_client *c = NULL;
    if (n < WATCHDOG_MAX_CLIENTS) {
        c = &wd->clients[n];
        snprintf(c->name, sizeof c->name, "%s", name ? name : "?");
        atomic_store(&c->next_ms, WATCHDOG_IDLE);
        atomic_store(&wd->client_count, n + 1); /* published after the slot is filled */
    } else {
        GW_LOGW(MOD, "more than %d watchdog clients: %s is not watched", WATCHDOG_MAX_CLIENTS, name ? name : "?");
    }
    pthread_mutex_unlock(&wd->lock);
    return c;
}

void watchdog_checkin(struct watchdog_client *c, uint64_t next_ms)
{
    if (c)
        atomic_store(&c->next_ms, next_ms);
}

uint64_t watchdog_client_next_ms(const struct watchdog_client *c)
{
    return c ? atomic_load(&c->next_ms) : WATCHDOG_IDLE;
}

static void send_ready(struct watchdog *wd, const char *why)
{
    char msg[160];
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=running: %s", why ? why : "started");
    notify(wd, msg);
    GW_LOGI(MOD, "told systemd the gateway is ready (%s)", why ? why : "started");
}

void watchdog_expect_ready(struct watchdog *wd, unsigned units, uint32_t within_ms)
{
    if (!wd || wd->fd < 0)
        return;
    if (within_ms) {
        char msg[48];
        snprintf(msg, sizeof msg, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)within_ms * 1000ull);
        notify(wd, msg);
    }
    pthread_mutex_lock(&wd->lock);
    wd->expected_units = units > WATCHDOG_MAX_UNITS ? WATCHDOG_MAX_UNITS : units;
    wd->expect_set = true;
    bool now = !wd->ready_sent && (unsigned)__builtin_popcount(wd->ready_units) >= wd->expected_units;
    if (now)
        wd->ready_sent = true;
    pthread_mutex_unlock(&wd->lock);
    if (now)
        send_ready(wd, "started");
}

void watchdog_unit_ready(struct watchdog *wd, unsigned unit, const char *why)
{
    if (!wd || wd->fd < 0 || unit >= WATCHDOG_MAX_UNITS)
        return;
    pthread_mutex_lock(&wd->lock);
    wd->ready_units |= 1u << unit;
    bool now = wd->expect_set && !wd->ready_sent &&
               (unsigned)__builtin_popcount(wd->ready_units) >= wd->expected_units;
    if (now)
        wd->ready_sent = true;
    pthread_mutex_unlock(&wd->lock);
    if (now)
        send_ready(wd, why);
}

void watchdog_stopping(struct watchdog *wd)
{
    if (!wd || wd->fd < 0)
        return;
    pthread_mutex_lock(&wd->lock);
    bool send = !wd->stopping_sent;
    wd->stopping_sent = true;
    pthread_cond_broadcast(&wd->wake); /* no more pings */
    pthread_mutex_unlock(&wd->lock);
    if (send)
        notify(wd, "STOPPING=1\nSTATUS=stopping");
}

/* ---- the ping thread -------------------------------------------------------------------- */

/* A shell around watchdog__decide: wakes every period, pings unless a client is overdue, says
 * once when one becomes overdue and when it is back. */
static void *ping_main(void *arg)
{
    struct watchdog *wd = arg;
    pthread_mutex_lock(&wd->lock);
    uint64_t next_wake = gw_now_ms();
    while (!wd->stop_requested && !wd->stopping_sent) {
        uint64_t now = gw_now_ms();
        if (now < next_wake) {
            gw_clock_wait(&wd->wake, &wd->lock, next_wake);
            continue;
        }
        size_t n = atomic_load(&wd->client_count);
        uint64_t next[WATCHDOG_MAX_CLIENTS];
        for (size_t i = 0; i < n; i++)
            next[i] = atomic_load(&wd->clients[i].next_ms);
        struct watchdog__decision d = watchdog__decide(now, next, n, wd->period_ms);
        int was = wd->overdue;
        wd->overdue = d.overdue;
        pthread_mutex_unlock(&wd->lock);
        if (d.ping)
            notify(wd, "WATCHDOG=1");
        else
            GW_LOGD(MOD, "keep-alive withheld: %s %llu ms past its deadline", wd->clients[d.overdue].name,
                    (unsigned long long)d.overdue_ms);
        if (d.overdue >= 0 && d.overdue != was)
            GW_LOGE(MOD, "%s is %llu ms past its deadline (hung?): no keep-alive to systemd, which restarts the "
                    "gateway after WatchdogSec (%u ms) if it stays stuck", wd->clients[d.overdue].name,
                    (unsigned long long)d.overdue_ms, (unsigned)wd->interval_ms);
        else if (d.overdue < 0 && was >= 0)
            GW_LOGI(MOD, "%s runs again: keep-alives to systemd resumed", wd->clients[was].name);
        pthread_mutex_lock(&wd->lock);
        next_wake = now + wd->period_ms;
    }
    pthread_mutex_unlock(&wd->lock);
    return NULL;
}

int watchdog_start(struct watchdog *wd)
{
    if (!wd || !wd->interval_ms)
        return GW_OK;
    pthread_mutex_lock(&wd->lock);
    int rc = GW_OK;
    if (!wd->thread_started) {
        wd->stop_requested = false;
        /* Created before app_run blocks the signals it sigwaits for: the thread blocks every
         * signal, else a SIGTERM during start-up (main not in sigwait yet) is delivered to it and
         * kills the process without a clean stop. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int crc = pthread_create(&wd->thread, NULL, ping_main, wd);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (crc == 0) {
            wd->thread_started = true;
            pthread_setname_np(wd->thread, "watchdog");
        } else {
            rc = GW_ERR_IO;
        }
    }
    pthread_mutex_unlock(&wd->lock);
    if (rc)
        GW_LOGE(MOD, "cannot start the watchdog thread: systemd will restart the gateway after WatchdogSec");
    return rc;
}

void watchdog_destroy(struct watchdog *wd)
{
    if (!wd)
        return;
    watchdog_stopping(wd);
    pthread_mutex_lock(&wd->lock);
    bool join = wd->thread_started;
    wd->stop_requested = true;
    pthread_cond_broadcast(&wd->wake);
    pthread_mutex_unlock(&wd->lock);
    if (join)
        pthread_join(wd->thread, NULL);
    if (wd->fd >= 0)
        close(wd->fd);
    pthread_cond_destroy(&wd->wake);
    pthread_mutex_destroy(&wd->lock);
    free(wd);
}
