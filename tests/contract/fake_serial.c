/* In-memory serial port with a peer side; see fake_serial.h. */
#define _POSIX_C_SOURCE 200809L
#include "fake_serial.h"

#include "gw_clock.h"
#include "gw_error.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct serial_port {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    uint8_t to_port[FAKE_SERIAL_BUF], from_port[FAKE_SERIAL_BUF];
    size_t to_len, from_len, capacity;
    bool hung_up;
};

static bool baud_ok(uint32_t baud)
{
    static const uint32_t rates[] = { 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600 };
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
        if (rates[i] == baud)
            return true;
    return false;
}

static int fake_open(const char *path, uint32_t baud, struct serial_port **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!path || !path[0] || !baud_ok(baud))
        return GW_ERR_INVAL;
    if (strcmp(path, FAKE_SERIAL_MISSING) == 0)
        return GW_ERR_NOT_FOUND;
    if (strcmp(path, FAKE_SERIAL_NOT_A_TTY) == 0)
        return GW_ERR_IO;
    struct serial_port *p = calloc(1, sizeof *p);
    if (!p)
        return GW_ERR_NOMEM;
    pthread_mutex_init(&p->lock, NULL);
    if (gw_clock_cond_init(&p->changed) != GW_OK) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return GW_ERR_NOMEM;
    }
    p->capacity = FAKE_SERIAL_BUF;
    *out = p;
    return GW_OK;
}

static int fake_write(struct serial_port *p, const uint8_t *buf, size_t len, uint32_t timeout_ms)
{
    if (!p || (!buf && len))
        return GW_ERR_INVAL;
    struct timespec deadline;
    gw_monotonic_deadline(&deadline, timeout_ms);
    pthread_mutex_lock(&p->lock);
    int rc = GW_OK;
    size_t done = 0;
    while (done < len) {
        if (p->hung_up) {
            rc = GW_ERR_CLOSED;
            break;
        }
        size_t room = p->capacity > p->from_len ? p->capacity - p->from_len : 0;
        if (room) {
            size_t n = len - done < room ? len - done : room;
            memcpy(p->from_port + p->from_len, buf + done, n);
            p->from_len += n;
            done += n;
            pthread_cond_broadcast(&p->changed);
            continue;
        }
        if (pthread_cond_timedwait(&p->changed, &p->lock, &deadline) == ETIMEDOUT &&
            !p->hung_up && p->from_len >= p->capacity) {
            rc = GW_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static int fake_read(struct serial_port *p, uint8_t *buf, size_t cap, uint32_t timeout_ms, size_t *got)
{
    if (got)
        *got = 0;
    if (!p || !buf || !cap || !got)
        return GW_ERR_INVAL;
    struct timespec deadline;
    gw_monotonic_deadline(&deadline, timeout_ms);
    pthread_mutex_lock(&p->lock);
    int rc = GW_OK;
    for (;;) {
        if (p->to_len) {
            size_t n = p->to_len < cap ? p->to_len : cap;
            memcpy(buf, p->to_port, n);
            memmove(p->to_port, p->to_port + n, p->to_len - n);
            p->to_len -= n;
            *got = n;
            break;
        }
        if (p->hung_up) {
            rc = GW_ERR_CLOSED;
            break;
        }
        if (pthread_cond_timedwait(&p->changed, &p->lock, &deadline) == ETIMEDOUT && !p->to_len &&
            !p->hung_up)
            break; /* timeout: GW_OK, *got = 0 */
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static void fake_discard(struct serial_port *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->to_len = 0;
    pthread_mutex_unlock(&p->lock);
}

static void fake_close(struct serial_port *p)
{
    if (!p)
        return;
    pthread_cond_destroy(&p->changed);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

const struct serial_ops fake_serial_ops = {
    .open = fake_open,
    .write = fake_write,
    .read = fake_read,
    .discard_input = fake_discard,
    .close = fake_close,
};

size_t fake_serial_peer_read(struct serial_port *p, uint8_t *buf, size_t cap)
{
    if (!p || !buf)
        return 0;
    pthread_mutex_lock(&p->lock);
    size_t n = p->from_len < cap ? p->from_len : cap;
    memcpy(buf, p->from_port, n);
    memmove(p->from_port, p->from_port + n, p->from_len - n);
    p->from_len -= n;
    if (n)
        pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    return n;
}

bool fake_serial_peer_write(struct serial_port *p, const uint8_t *buf, size_t n)
{
    if (!p || (!buf && n))
        return false;
    pthread_mutex_lock(&p->lock);
    bool ok = !p->hung_up && n <= FAKE_SERIAL_BUF - p->to_len;
    if (ok && n) {
        memcpy(p->to_port + p->to_len, buf, n);
        p->to_len += n;
        pthread_cond_broadcast(&p->changed);
    }
    pthread_mutex_unlock(&p->lock);
    return ok;
}

bool fake_serial_peer_set_capacity(struct serial_port *p, size_t bytes)
{
    if (!p || bytes == 0 || bytes > FAKE_SERIAL_BUF)
        return false;
    pthread_mutex_lock(&p->lock);
    p->capacity = bytes;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    return true;
}

bool fake_serial_peer_hang_up(struct serial_port *p)
{
    if (!p)
        return false;
    pthread_mutex_lock(&p->lock);
    p->hung_up = true;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    return true;
}
