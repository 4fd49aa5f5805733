/* Private to the watchdog module and its unit tests: the ping thread's decision as a pure
 * function, and the notify socket address parser. */
#ifndef WATCHDOG_INTERNAL_H
#define WATCHDOG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/* What the ping thread does at now_ms, given when each client expects to run again (next[i],
 * WATCHDOG_IDLE = never overdue). A client is overdue when now_ms > next[i] + grace_ms. */
struct watchdog__decision {
    bool ping;               /* no client overdue: send WATCHDOG=1 */
    int overdue;             /* index of the first overdue client, -1 when none */
    uint64_t overdue_ms;     /* how late it is: now_ms - next[overdue] */
};
struct watchdog__decision watchdog__decide(uint64_t now_ms, const uint64_t *next, size_t n, uint32_t grace_ms);

/* The ping period and the grace of a client for a $WATCHDOG_USEC interval: a third of it each
 * (at least 1 ms): a ping is never more than a third late, and a hang is noticed within two
 * thirds, leaving a third before systemd's deadline. */
uint32_t watchdog__period_ms(uint64_t watchdog_usec);

/* $NOTIFY_SOCKET to a unix socket address: "/path" or "@abstract". @retval GW_OK, GW_ERR_INVAL
 * (empty, relative, too long, another family such as "vsock:"). *len = the address length. */
int watchdog__parse_socket(const char *text, struct sockaddr_un *addr, socklen_t *len);

#endif
