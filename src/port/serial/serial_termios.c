#include "serial.h"

#include "gw_error.h"
#include "gw_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

struct serial_port {
    int fd;
    char path[256];
};

static speed_t baud_constant(uint32_t baud)
{
    switch (baud) {
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 500000: return B500000;
    case 576000: return B576000;
    case 921600: return B921600;
    case 1000000: return B1000000;
    case 1500000: return B1500000;
    case 2000000: return B2000000;
    case 3000000: return B3000000;
    default: return 0;
    }
}

static int termios_open(const char *path, uint32_t baud, struct serial_port **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    speed_t speed = baud_constant(baud);
    if (!path || !*path || speed == 0)
        return GW_ERR_INVAL;
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT || err == ENODEV || err == ENXIO) {
            GW_LOGD(MOD, "open %s: %s", path, strerror(err)); /* absent: the caller retries */
            return GW_ERR_NOT_FOUND;
        }
        /* Callers retry with a growing backoff, so this is at most one line every 30 s. */
        GW_LOGW(MOD, "cannot open %s: %s%s", path, strerror(err),
                err == EACCES ? " (add the user to the 'dialout' group, or run as a user that is)" : "");
        return GW_ERR_IO;
    }
    struct termios tio;
    if (tcgetattr(fd, &tio) != 0) {
        GW_LOGW(MOD, "%s is not a serial device: %s", path, strerror(errno));
        close(fd);
        return GW_ERR_IO;
    }
    cfmakeraw(&tio);
    tio.c_cflag |= CLOCAL | CREAD;
    tio.c_cflag &= ~(CSTOPB | PARENB | CRTSCTS);
    tio.c_iflag &= ~(IXON | IXOFF | IXANY);
    tio.c_cc[VMIN] = 0;
    tio.c_cc[VTIME] = 0;
    cfsetispeed(&tio, speed);
    cfsetospeed(&tio, speed);
    if (tcsetattr(fd, TCSANOW, &tio) != 0) {
        GW_LOGW(MOD, "cannot configure %s: %s", path, strerror(errno));
        close(fd);
        return GW_ERR_IO;
    }
    tcflush(fd, TCIOFLUSH);
    struct serial_port *p = calloc(1, sizeof *p);
    if (!p) {
        close(fd);
        return GW_ERR_NOMEM;
    }
    p->fd = fd;
    strncpy(p->path, path, sizeof p->path - 1);
    *out = p;
    return GW_OK;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll() takes an int: a timeout beyond INT_MAX ms would turn negative (wait for ever). */
static int poll_ms(int64_t ms)
{
    return ms > INT_MAX ? INT_MAX : ms < 0 ? 0 : (int)ms;
}

static int termios_write(struct serial_port *p, const uint8_t *buf, size_t len, uint32_t timeout_ms)
{
    if (!p || (!buf && len))
        return GW_ERR_INVAL;
    int64_t deadline = mono_ms() + timeout_ms;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(p->fd, buf + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return (errno == EIO || errno == ENXIO || errno == ENODEV) ? GW_ERR_CLOSED : GW_ERR_IO;
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            return GW_ERR_TIMEOUT;
        struct pollfd pfd = { .fd = p->fd, .events = POLLOUT };
        int pr = poll(&pfd, 1, poll_ms(left));
        if (pr > 0 && (pfd.revents & (POLLERR | POLLNVAL | POLLHUP)))
            return GW_ERR_CLOSED;
    }
    return GW_OK;
}

static int termios_read(struct serial_port *p, uint8_t *buf, size_t cap, uint32_t timeout_ms, size_t *got)
{
    if (got)
        *got = 0;
    /* cap 0 would read 0 bytes after POLLIN, which means "device gone" below. */
    if (!p || !buf || !cap || !got)
        return GW_ERR_INVAL;
    struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
    int pr;
    do {
        pr = poll(&pfd, 1, poll_ms(timeout_ms));
    } while (pr < 0 && errno == EINTR);
    if (pr < 0)
        return GW_ERR_IO;
    if (pr == 0)
        return GW_OK;
    if (pfd.revents & POLLIN) {
        ssize_t n = read(p->fd, buf, cap);
        if (n > 0) {
            *got = (size_t)n;
            return GW_OK;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return GW_OK;
        /* 0 bytes after POLLIN, or EIO: the device (USB adapter, pty master) went away. */
        return GW_ERR_CLOSED;
    }
    if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))
        return GW_ERR_CLOSED;
    return GW_OK;
}

int serial_termios_fd(const struct serial_port *port)
{
    return port ? port->fd : -1;
}

static void termios_discard_input(struct serial_port *p)
{
    if (!p)
        return;
    tcflush(p->fd, TCIFLUSH);
    /* What arrived between the flush and now; bounded, so a device that never stops talking
     * cannot keep us here (the decoder resynchronises on what is left). */
    uint8_t scratch[256];
    for (int i = 0; i < 16 && read(p->fd, scratch, sizeof scratch) > 0; i++) {
    }
}

static void termios_close(struct serial_port *p)
{
    if (!p)
        return;
    close(p->fd);
    free(p);
}

const struct serial_ops serial_termios_ops = {
    .open = termios_open,
    .write = termios_write,
    .read = termios_read,
    .discard_input = termios_discard_input,
    .close = termios_close,
};
