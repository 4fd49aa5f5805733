/* SocketCAN (Linux CAN_RAW) transport. The interface is configured outside the gateway
 * (`ip link set can0 up type can bitrate 500000 restart-ms 100`); we open a raw socket bound to
 * it with error frames enabled, count bus errors and bus-off, and retry a full TX queue
 * (ENOBUFS) until the caller's timeout. An interface that exists but is not CAN (link type in
 * /sys/class/net/NAME/type) is refused with GW_ERR_INVAL; on a kernel without CAN sockets, open
 * fails with GW_ERR_UNSUPPORTED and a message saying so. */
#define _GNU_SOURCE
#include "can_transport.h"
#include "can_transport_internal.h"

#include "gw_error.h"
#include "gw_log.h"

#include <errno.h>
#include <linux/can.h>
#include <linux/can/error.h>
#include <linux/can/raw.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define ENOBUFS_RETRY_MS 2

int can_socketcan__to_linux(const struct can_frame_gw *in, struct can_frame *out)
{
    if (!out || can_frame_validate(in) != GW_OK)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    out->can_id = in->ext ? ((in->id & CAN_EFF_MASK) | CAN_EFF_FLAG) : (in->id & CAN_SFF_MASK);
    if (in->rtr)
        out->can_id |= CAN_RTR_FLAG;
    out->can_dlc = in->dlc;
    if (!in->rtr)
        memcpy(out->data, in->data, in->dlc);
    return GW_OK;
}

int can_socketcan__from_linux(const struct can_frame *in, struct can_frame_gw *out)
{
    if (!in || !out || in->can_dlc > 8)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    out->err = (in->can_id & CAN_ERR_FLAG) != 0;
    out->ext = !out->err && (in->can_id & CAN_EFF_FLAG) != 0;
    out->rtr = !out->err && (in->can_id & CAN_RTR_FLAG) != 0;
    if (out->err)
        out->id = in->can_id & CAN_ERR_MASK;
    else
        out->id = in->can_id & (out->ext ? CAN_EFF_MASK : CAN_SFF_MASK);
    out->dlc = in->can_dlc;
    if (!out->rtr)
        memcpy(out->data, in->data, in->can_dlc);
    return GW_OK;
}

bool can_socketcan__is_bus_off(const struct can_frame_gw *f)
{
    return f && f->err && (f->id & CAN_ERR_BUSOFF);
}

bool can_socketcan__is_restarted(const struct can_frame_gw *f)
{
    return f && f->err && (f->id & CAN_ERR_RESTARTED);
}

int can_socketcan__link_type(const char *ifname)
{
    char path[64], text[16];
    int n = snprintf(path, sizeof path, "/sys/class/net/%s/type", ifname);
    if (n < 0 || (size_t)n >= sizeof path || strchr(ifname, '/'))
        return -1;
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char *line = fgets(text, sizeof text, f);
    fclose(f);
    if (!line)
        return -1;
    char *end;
    long type = strtol(text, &end, 10);
    return end != text && type >= 0 && type <= 65535 ? (int)type : -1;
}

struct socketcan {
    int fd;
    char ifname[IFNAMSIZ];
    pthread_mutex_t lock; /* counters and bus-off flag */
    struct can_transport_stats stats;
};

static void add(struct socketcan *s, uint64_t *field)
{
    pthread_mutex_lock(&s->lock);
    (*field)++;
    pthread_mutex_unlock(&s->lock);
}

static int socketcan_open(struct can_transport *t, const char *arg, uint32_t bitrate)
{
    if (bitrate == 0) {
        GW_LOGE(MOD, "CAN bitrate 0 is invalid");
        return GW_ERR_INVAL;
    }
    size_t len = strlen(arg);
    if (len == 0 || len >= IFNAMSIZ || strchr(arg, '/') || strchr(arg, ' ')) {
        GW_LOGE(MOD, "invalid CAN interface name '%s'", arg);
        return GW_ERR_INVAL;
    }
    /* An interface that exists but is not CAN (eth0, lo) is a wrong spec, whatever the kernel
     * supports; one that does not exist yet may be an adapter not plugged in (checked below). */
    int type = can_socketcan__link_type(arg);
    if (type >= 0 && type != ARPHRD_CAN) {
        GW_LOGE(MOD, "%s is a network interface but not a CAN one (link type %d, CAN is %d): "
                "use the CAN interface (ip -details link show type can), slcan:/dev/ttyACM0 or log:FILE",
                arg, type, ARPHRD_CAN);
        return GW_ERR_INVAL;
    }
    int fd = socket(PF_CAN, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, CAN_RAW);
    if (fd < 0) {
        int e = errno;
        if (e == EAFNOSUPPORT || e == EPROTONOSUPPORT) {
            GW_LOGE(MOD, "this kernel has no CAN sockets (%s): load the can and can_raw "
                    "modules, or use --can slcan:/dev/ttyACM0 or --can log:FILE", strerror(e));
            return GW_ERR_UNSUPPORTED;
        }
        GW_LOGE(MOD, "socket(PF_CAN): %s", strerror(e));
        return GW_ERR_IO;
    }
    struct socketcan *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return GW_ERR_NOMEM;
    }
    s->fd = fd;
    memcpy(s->ifname, arg, len + 1);
    pthread_mutex_init(&s->lock, NULL);
    int rc;
    unsigned ifindex = if_nametoindex(s->ifname);
    if (ifindex == 0) {
        GW_LOGE(MOD, "no CAN interface %s (create it, then `ip link set %s up type can "
                "bitrate %u`)", s->ifname, s->ifname, (unsigned)bitrate);
        rc = GW_ERR_NOT_FOUND;
        goto err;
    }
    /* Errors we want to see as error frames: bus-off, controller state, restarts, tx timeouts. */
    can_err_mask_t err_mask = CAN_ERR_TX_TIMEOUT | CAN_ERR_CRTL | CAN_ERR_BUSOFF | CAN_ERR_BUSERROR |
                              CAN_ERR_RESTARTED | CAN_ERR_ACK | CAN_ERR_PROT;
    if (setsockopt(fd, SOL_CAN_RAW, CAN_RAW_ERR_FILTER, &err_mask, sizeof err_mask) != 0) {
        GW_LOGE(MOD, "CAN_RAW_ERR_FILTER on %s: %s", s->ifname, strerror(errno));
        rc = GW_ERR_IO;
        goto err;
    }
    struct sockaddr_can addr = { .can_family = AF_CAN, .can_ifindex = (int)ifindex };
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        GW_LOGE(MOD, "bind to %s: %s", s->ifname, strerror(errno));
        rc = GW_ERR_IO;
        goto err;
    }
    t->impl = s;
    GW_LOGI(MOD, "opened %s (bitrate set by `ip link`; expected %u bit/s)", s->ifname, (unsigned)bitrate);
    return GW_OK;
err:
    close(fd);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return rc;
}

static int socketcan_send(struct can_transport *t, const struct can_frame_gw *frame, uint32_t timeout_ms)
{
    struct socketcan *s = t->impl;
    struct can_frame lf;
    if (can_socketcan__to_linux(frame, &lf) != GW_OK) {
        add(s, &s->stats.tx_failed);
        return GW_ERR_INVAL;
    }
    uint64_t deadline = can__deadline(timeout_ms);
    int rc = GW_OK;
    for (;;) {
        ssize_t n = write(s->fd, &lf, sizeof lf);
        if (n == (ssize_t)sizeof lf)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == ENOBUFS || errno == EAGAIN)) {
            /* TX queue full (ENOBUFS does not wake poll() on CAN sockets): short naps. */
            add(s, &s->stats.tx_queue_full);
            int left = can__remaining_ms(deadline);
            if (left <= 0) {
                rc = GW_ERR_TIMEOUT;
                break;
            }
            struct pollfd pfd = { .fd = s->fd, .events = POLLOUT };
            (void)poll(&pfd, 1, left < ENOBUFS_RETRY_MS ? left : ENOBUFS_RETRY_MS);
            continue;
        }
        rc = (n < 0 && (errno == ENETDOWN || errno == ENODEV || errno == ENXIO)) ? GW_ERR_CLOSED : GW_ERR_IO;
        break;
    }
    pthread_mutex_lock(&s->lock);
    if (rc == GW_OK) {
        s->stats.tx_ok++;
    } else {
        s->stats.tx_failed++;
        if (s->stats.bus_off && rc == GW_ERR_TIMEOUT)
            rc = GW_ERR_STATE;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int socketcan_recv(struct can_transport *t, struct can_frame_gw *frame, uint32_t timeout_ms)
{
    struct socketcan *s = t->impl;
    uint64_t deadline = can__deadline(timeout_ms);
    for (;;) {
        struct can_frame lf;
        ssize_t n = read(s->fd, &lf, sizeof lf);
        if (n == (ssize_t)sizeof lf) {
            struct can_frame_gw f;
            if (can_socketcan__from_linux(&lf, &f) != GW_OK)
                continue;
            pthread_mutex_lock(&s->lock);
            if (f.err) {
                s->stats.bus_errors++;
                if (can_socketcan__is_bus_off(&f) && !s->stats.bus_off) {
                    s->stats.bus_off = true;
                    s->stats.bus_off_count++;
                    GW_LOGW(MOD, "%s is bus-off (no ACK from the inverter? wiring, "
                            "terminator, bitrate)", s->ifname);
                } else if (can_socketcan__is_restarted(&f) && s->stats.bus_off) {
                    s->stats.bus_off = false;
                    GW_LOGI(MOD, "%s restarted after bus-off", s->ifname);
                }
            } else {
                s->stats.rx++;
                if (s->stats.bus_off) /* traffic again: the controller recovered */
                    s->stats.bus_off = false;
            }
            pthread_mutex_unlock(&s->lock);
            *frame = f;
            return GW_OK; /* error frames are returned too (err = true) */
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return (errno == ENETDOWN || errno == ENODEV) ? GW_ERR_CLOSED : GW_ERR_IO;
        int left = can__remaining_ms(deadline);
        if (left <= 0)
            return GW_ERR_TIMEOUT;
        struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
        int pr = poll(&pfd, 1, left);
        if (pr == 0)
            return GW_ERR_TIMEOUT;
        if (pr < 0 && errno != EINTR)
            return GW_ERR_IO;
    }
}

static int socketcan_poll_fd(struct can_transport *t)
{
    const struct socketcan *s = t->impl;
    return s->fd;
}

static void socketcan_close(struct can_transport *t)
{
    struct socketcan *s = t->impl;
    if (!s)
        return;
    close(s->fd);
    pthread_mutex_destroy(&s->lock);
    free(s);
    t->impl = NULL;
}

static void socketcan_stats(struct can_transport *t, struct can_transport_stats *out)
{
    struct socketcan *s = t->impl;
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}

const struct can_transport_ops can_socketcan_ops = {
    .name = "socketcan",
    .open = socketcan_open,
    .send = socketcan_send,
    .recv = socketcan_recv,
    .close = socketcan_close,
    .stats = socketcan_stats,
    .poll_fd = socketcan_poll_fd,
};
