/* Write-only transport: every frame sent is appended to a file in the format of
 * `candump -l` ("(1700000000.123456) can0 351#4502...") so it can be replayed with
 * `canplayer` or read by python-can / SavvyCAN. Each line is flushed as written. The "file"
 * may also be a pipe or FIFO read by another program (log:/dev/stdout): a reader that stalls
 * makes send time out (never block the publisher), a reader that exits makes it GW_ERR_CLOSED. */
#define _POSIX_C_SOURCE 200809L
#include "can_transport.h"
#include "can_transport_internal.h"

#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IFNAME_MAX 16

int can_log_format(const struct can_frame_gw *frame, int64_t wall_us, const char *ifname, char *buf,
                   size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!buf || !ifname || !ifname[0] || wall_us < 0 || can_frame_validate(frame) != GW_OK)
        return GW_ERR_INVAL;
    int n = snprintf(buf, cap, "(%010" PRId64 ".%06" PRId64 ") %s ", wall_us / 1000000,
                     wall_us % 1000000, ifname);
    if (n < 0 || (size_t)n >= cap)
        return GW_ERR_OVERFLOW;
    size_t pos = (size_t)n;
    char tail[40];
    size_t k = 0;
    int id_digits = frame->ext ? 8 : 3;
    for (int i = id_digits - 1; i >= 0; i--)
        tail[k++] = hex[(frame->id >> (4 * i)) & 0xF];
    tail[k++] = '#';
    if (frame->rtr) {
        tail[k++] = 'R';
        if (frame->dlc > 0) /* candump prints a non-zero DLC of a remote frame */
            tail[k++] = hex[frame->dlc];
    } else {
        for (uint8_t i = 0; i < frame->dlc; i++) {
            tail[k++] = hex[frame->data[i] >> 4];
            tail[k++] = hex[frame->data[i] & 0xF];
        }
    }
    tail[k++] = '\n';
    if (pos + k + 1 > cap)
        return GW_ERR_OVERFLOW;
    memcpy(buf + pos, tail, k);
    pos += k;
    buf[pos] = '\0';
    return (int)pos;
}

struct canlog {
    int fd;
    char path[CAN_SPEC_MAX];
    char ifname[IFNAME_MAX + 1];
    pthread_mutex_t lock;           /* one line at a time, and the counters */
    struct can_transport_stats stats;
};

/* "FILE[@ifname]": the interface name is what follows the last '@' when it looks like one
 * (letters, digits, '-', '_', '.', at most 15 characters). */
static void split_arg(const char *arg, char *path, size_t path_cap, char *ifname, size_t if_cap)
{
    const char *at = strrchr(arg, '@');
    bool valid_if = at && at[1] && strlen(at + 1) < if_cap && strlen(at + 1) <= 15;
    for (const char *c = at ? at + 1 : ""; valid_if && *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_' || *c == '.'))
            valid_if = false;
    }
    gw_text_copyn(path, path_cap, arg, valid_if ? (size_t)(at - arg) : strlen(arg));
    gw_text_copy(ifname, if_cap, valid_if ? at + 1 : CAN_LOG_DEFAULT_IFNAME);
}

/* Why open() failed, said once, and whether waiting can help. Only a FIFO nobody reads yet
 * (ENXIO) or a passing OS failure is worth retrying; a missing directory, a directory in the
 * way, no permission or a read-only filesystem will not fix itself: the spec is refused. */
static int log_open_error(const char *path, int e)
{
    switch (e) {
    case ENXIO:
        GW_LOGW(MOD, "CAN log %s: a FIFO nobody reads yet (retried)", path);
        return GW_ERR_NOT_FOUND;
    case ENOENT:
    case ENOTDIR: {
        char dir[CAN_SPEC_MAX];
        const char *slash = strrchr(path, '/');
        gw_text_copyn(dir, sizeof dir, path, slash ? (size_t)(slash - path) : 0);
        GW_LOGE(MOD, "cannot create the CAN log %s: the directory '%s' does not exist (create it or "
                "choose another path in log:FILE)", path, slash ? (dir[0] ? dir : "/") : ".");
        return GW_ERR_INVAL;
    }
    case EACCES:
    case EPERM:
    case EROFS:
    case EISDIR:
    case ELOOP:
    case ENAMETOOLONG:
        GW_LOGE(MOD, "cannot create the CAN log %s: %s (choose a path the gateway may write in "
                "log:FILE)", path, strerror(e));
        return GW_ERR_INVAL;
    default:
        GW_LOGE(MOD, "cannot open the CAN log %s: %s", path, strerror(e));
        return GW_ERR_IO;
    }
}

static int log_open(struct can_transport *t, const char *arg, uint32_t bitrate)
{
    (void)bitrate;
    struct canlog *l = calloc(1, sizeof *l);
    if (!l)
        return GW_ERR_NOMEM;
    split_arg(arg, l->path, sizeof l->path, l->ifname, sizeof l->ifname);
    if (!l->path[0]) {
        GW_LOGE(MOD, "empty log file name in 'log:%s'", arg);
        free(l);
        return GW_ERR_INVAL;
    }
    /* O_NONBLOCK: no effect on a regular file; on a FIFO it keeps open and send from
     * blocking on a reader that is absent or stalled. */
    l->fd = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0644);
    if (l->fd < 0) {
        int e = errno;
        int rc = log_open_error(l->path, e);
        free(l);
        return rc;
    }
    pthread_mutex_init(&l->lock, NULL);
    t->impl = l;
    GW_LOGI(MOD, "writing CAN frames to %s as interface %s (candump -l format)", l->path, l->ifname);
    return GW_OK;
}

static int log_send(struct can_transport *t, const struct can_frame_gw *frame, uint32_t timeout_ms)
{
    struct canlog *l = t->impl;
    char line[128];
    int64_t wall_us = gw_wall_ms() * 1000;
    int n = can_log_format(frame, wall_us, l->ifname, line, sizeof line);
    uint64_t deadline = can__deadline(timeout_ms);
    pthread_mutex_lock(&l->lock);
    int rc = GW_OK;
    if (n < 0) {
        rc = GW_ERR_INVAL;
    } else {
        /* One write() per line with O_APPEND: lines never interleave, and nothing is left in
         * a user-space buffer (the "flushed" of candump -l). A line is shorter than PIPE_BUF,
         * so a pipe takes it whole or not at all (EAGAIN: the reader stalled, wait for room). */
        size_t done = 0;
        bool counted_full = false;
        while (done < (size_t)n) {
            ssize_t w = write(l->fd, line + done, (size_t)n - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!counted_full) {
                    l->stats.tx_queue_full++;
                    counted_full = true;
                }
                int left = can__remaining_ms(deadline);
                if (left <= 0) {
                    rc = GW_ERR_TIMEOUT;
                    break;
                }
                struct pollfd pfd = { .fd = l->fd, .events = POLLOUT };
                (void)poll(&pfd, 1, left); /* POLLERR (reader gone) shows in the next write */
                continue;
            }
            if (w <= 0) {
                rc = (errno == ENOSPC || errno == EDQUOT) ? GW_ERR_STORAGE
                     : errno == EPIPE                     ? GW_ERR_CLOSED /* the reader exited */
                                                          : GW_ERR_IO;
                break;
            }
            done += (size_t)w;
        }
    }
    if (rc == GW_OK)
        l->stats.tx_ok++;
    else
        l->stats.tx_failed++;
    pthread_mutex_unlock(&l->lock);
    return rc;
}

static int log_recv(struct can_transport *t, struct can_frame_gw *frame, uint32_t timeout_ms)
{
    (void)t;
    (void)frame;
    (void)timeout_ms;
    return GW_ERR_UNSUPPORTED; /* write-only: the caller paces itself */
}

static void log_close(struct can_transport *t)
{
    struct canlog *l = t->impl;
    if (!l)
        return;
    if (fsync(l->fd) != 0 && errno != EINVAL)
        GW_LOGW(MOD, "fsync %s: %s", l->path, strerror(errno));
    close(l->fd);
    pthread_mutex_destroy(&l->lock);
    free(l);
    t->impl = NULL;
}

static void log_stats(struct can_transport *t, struct can_transport_stats *out)
{
    struct canlog *l = t->impl;
    pthread_mutex_lock(&l->lock);
    *out = l->stats;
    pthread_mutex_unlock(&l->lock);
}

const struct can_transport_ops can_log_ops = {
    .name = "log",
    .open = log_open,
    .send = log_send,
    .recv = log_recv,
    .close = log_close,
    .stats = log_stats,
};
