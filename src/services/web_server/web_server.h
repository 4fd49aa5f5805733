/* web_server: the gateway's HTTP(S) server on CivetWeb: the static UI folder, the REST API
 * (JSON in and out) and the WebSocket channels /ws/live, /ws/alerts, /ws/events, /ws/uart, /ws/can.
 *
 * It reads the battery view (snapshot getter and EVENT_BATTERY_UPDATE), the configuration, the
 * alert manager, the history logger, the BMS pollers (settings, restart, the UART frame tap) and
 * the CAN publisher (its frame tap); it never computes a limit. Security: HTTP Basic against
 * the salted PBKDF2 hash of the config manager (first-run flow while no password exists), a
 * per-address login limiter, CSRF tokens on every POST/PUT/DELETE, Origin checks on WebSocket
 * upgrades, security headers on every response, body and header limits, request timeouts.
 * Every endpoint, status and message is listed in docs/web.md.
 *
 * CivetWeb and its callbacks stay inside this module. Every function is thread-safe. */
#ifndef WEB_SERVER_H
#define WEB_SERVER_H

#include <stdbool.h>
#include <stdint.h>

struct event_bus;
struct config_manager;
struct battery_service;
struct alert_manager;
struct history_logger;
struct uart_bms;
struct can_publisher;
struct ota_update;
struct monitoring;
struct net_link;
struct web_server;

#define WEB_MAX_BMS 16 /* BMS pollers the server knows (pack ids 0..15) */

struct web_server_options {
    struct event_bus *bus;              /* required, borrowed (outlives the server) */
    struct config_manager *config;      /* required, borrowed: web.* settings, /api/config, password */
    struct battery_service *battery;    /* borrowed; NULL: data endpoints answer 503 */
    struct alert_manager *alerts;       /* borrowed; NULL: alert endpoints answer 503 */
    struct history_logger *history;     /* borrowed; NULL: history is disabled (503) */
    /* The BMS pollers by pack id (bms[i] polls pack i; borrowed, may hold NULLs): BMS settings,
     * restart, /ws/uart. bms_count 0: those endpoints answer 503. At most WEB_MAX_BMS. */
    struct uart_bms *const *bms;
    unsigned bms_count;
    struct can_publisher *can;          /* borrowed; NULL: CAN is off (/ws/can sends nothing) */
    struct ota_update *ota;             /* borrowed; NULL: /api/ota/... answer 503 */
    struct monitoring *monitoring;      /* borrowed; NULL: /metrics and /api/metrics answer 503 */
    struct net_link *net;               /* borrowed; NULL: /api/status says the link is not watched */
    const char *ui_dir;                 /* static UI folder (copied); NULL: web.ui_dir, else the
                                           folder installed with the program or the source tree's */
    /* POST /api/system/restart: called once the answer is sent (from a server thread: it must only
     * ask the daemon to restart, e.g. raise a signal). NULL: the endpoint answers 501. */
    void (*restart)(void *ctx);
    void *restart_ctx;
};

struct web_server_stats {
    uint64_t requests;
    uint64_t errors_4xx, errors_5xx;
    uint64_t login_failures;            /* wrong user or password */
    uint64_t lockouts;                  /* addresses locked out (429) */
    uint64_t csrf_refused;
    uint32_t ws_clients;                /* connected now, every channel */
    uint64_t ws_dropped;                /* clients dropped because they did not read */
    uint64_t ws_refused_full;           /* upgrades answered 503 (cap reached) */
    uint64_t ws_messages;               /* messages queued to clients */
};

/* Starts the server on web.bind_address:web.http_port (HTTPS when web.https_enabled) with the
 * settings of the configuration at this moment (the web.* fields marked "restart" apply at the
 * next start). Logs the address served, or why not (port in use, bad certificate, no IPv6 in this
 * CivetWeb build). On failure *out = NULL.
 * @retval GW_OK
 * @retval GW_ERR_INVAL  NULL argument, missing bus/config
 * @retval GW_ERR_IO     the listener could not be opened (reason logged)
 * @retval GW_ERR_TLS    certificate or key refused (reason logged)
 * @retval GW_ERR_UNSUPPORTED  IPv6 address with a CivetWeb built without IPv6
 * @retval GW_ERR_NOMEM */
int web_server_create(const struct web_server_options *opts, struct web_server **out);

/* Closes every connection (WebSocket clients included), joins every thread, frees. NULL accepted.
 * Not from a bus handler. */
void web_server_destroy(struct web_server *ws);

/* The TCP port actually listened on (the configured one), 0 when ws is NULL. */
int web_server_port(const struct web_server *ws);

void web_server_get_stats(struct web_server *ws, struct web_server_stats *out);

#endif
