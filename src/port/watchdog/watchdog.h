/* watchdog: tells systemd that the gateway is ready and still alive, so that a unit with
 * Type=notify and WatchdogSec= restarts a gateway that hangs (packaging/tinybms-gw.service).
 *
 * It speaks systemd's notification protocol itself (sd_notify(3): one datagram per message on
 * the unix socket named by $NOTIFY_SOCKET, "READY=1", "WATCHDOG=1", "STATUS=...",
 * "STOPPING=1"): no libsystemd, so the same code runs, and is tested, on Venus OS (no systemd,
 * no $NOTIFY_SOCKET: every call does nothing) and on Debian.
 *
 * Liveness: the threads that matter (each BMS poller, the CAN scheduler) are clients. Each one
 * checks in with the time it expects to run again (its own step's deadline); a ping thread
 * sends WATCHDOG=1 every third of $WATCHDOG_USEC as long as no client is overdue (later than
 * its declared time by more than that third). A hung poller stops the pings; systemd then
 * kills and restarts the gateway after WatchdogSec. Times are on the gateway clock
 * (gw_now_ms).
 *
 * Readiness: READY=1 once every expected unit (one per BMS pack) said it is ready (its first
 * sample, or the BMS declared absent).
 *
 * Every function accepts NULL (does nothing) and is thread-safe, except watchdog_create and
 * watchdog_destroy (main thread, no other thread of the process running for create). */
#ifndef WATCHDOG_H
#define WATCHDOG_H

#include <stdint.h>

struct watchdog;
struct watchdog_client;

#define WATCHDOG_MAX_CLIENTS 24
#define WATCHDOG_MAX_UNITS 32
#define WATCHDOG_IDLE UINT64_MAX  /* watchdog_checkin: not expected back (stopped, or waiting
                                     for an event only) */

/* Reads $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace), $WATCHDOG_USEC and
 * $WATCHDOG_PID (the watchdog is ours only when it names this process) and removes them from
 * the environment, so that children (the built-in simulator) never notify as the gateway.
 * Call before any thread is started: unsetenv is not thread-safe. Without $NOTIFY_SOCKET *out
 * is a disabled watchdog (every call does nothing). On failure *out = NULL.
 * @retval GW_OK
 * @retval GW_ERR_INVAL out is NULL, or $NOTIFY_SOCKET / $WATCHDOG_USEC is malformed (logged;
 *         the caller may go on with *out disabled)
 * @retval GW_ERR_NOMEM */
int watchdog_create(struct watchdog **out);

/* Sends STOPPING=1 (when enabled and not sent yet), stops the ping thread and frees. NULL ok. */
void watchdog_destroy(struct watchdog *wd);

/* Starts the ping thread when systemd asked for a watchdog. Idempotent.
 * @retval GW_OK, GW_ERR_IO (thread creation failed) */
int watchdog_start(struct watchdog *wd);

/* True when $NOTIFY_SOCKET was given; watchdog_interval_ms: $WATCHDOG_USEC in ms, 0 = none. */
int watchdog_enabled(const struct watchdog *wd);
uint32_t watchdog_interval_ms(const struct watchdog *wd);

/* A thread that must keep checking in, named for the log ("bms-poll0"; copied). Until its
 * first watchdog_checkin it counts as idle. Returns NULL when the watchdog is disabled or full
 * (WATCHDOG_MAX_CLIENTS): watchdog_checkin(NULL, ...) does nothing. Owned by wd. */
struct watchdog_client *watchdog_client_add(struct watchdog *wd, const char *name);

/* The client runs now and expects to run again by next_ms (gw_now_ms() time; WATCHDOG_IDLE:
 * not expected back, never overdue). Lock-free: safe from any thread, also one that holds
 * other locks. */
void watchdog_checkin(struct watchdog_client *c, uint64_t next_ms);

/* The time of the client's last check-in (WATCHDOG_IDLE: idle; NULL: WATCHDOG_IDLE). */
uint64_t watchdog_client_next_ms(const struct watchdog_client *c);

/* READY=1 is sent once `units` distinct units (0..WATCHDOG_MAX_UNITS-1) called
 * watchdog_unit_ready. expect_ready(0) sends it at once. within_ms > 0: readiness may take that
 * long (EXTEND_TIMEOUT_USEC, so that a long BMS communication timeout does not trip systemd's
 * start timeout). */
void watchdog_expect_ready(struct watchdog *wd, unsigned units, uint32_t within_ms);
void watchdog_unit_ready(struct watchdog *wd, unsigned unit, const char *why);

/* STOPPING=1 (once): the gateway is shutting down; pings stop. */
void watchdog_stopping(struct watchdog *wd);

#endif
