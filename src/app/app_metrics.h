/* The daemon's metrics wiring: one monitoring source per service, reading its public stats
 * getter, plus the few figures only the bus shows (limit changes, time in each charge phase,
 * MQTT connections). The monitoring module itself knows no service; this file knows them all. */
#ifndef APP_METRICS_H
#define APP_METRICS_H

struct alert_manager;
struct battery_service;
struct can_publisher;
struct event_bus;
struct history_logger;
struct monitoring;
struct mqtt_gateway;
struct net_link;
struct uart_bms;

/* Borrowed pointers; NULL for a service that is off. They must outlive app_metrics_destroy. */
struct app_metrics_services {
    const char *data_dir;
    struct uart_bms *const *bms;       /* bms[0..pack_count) */
    unsigned pack_count;
    struct battery_service *battery;
    struct can_publisher *can;
    struct mqtt_gateway *mqtt;
    struct history_logger *history;
    struct alert_manager *alerts;
    struct net_link *net;
};

struct app_metrics;

/* Subscribes the bus counters (limit changes, phase time, MQTT connections). Call before the
 * services start, so that no event is missed. bus is borrowed.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM, GW_ERR_FULL (bus subscriber table) */
int app_metrics_create(struct event_bus *bus, struct app_metrics **out);

/* Registers one source per running service with m (not started yet). On failure some sources
 * may already be registered with m: destroy m too, without starting it.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_FULL (too many sources) */
int app_metrics_add_sources(struct app_metrics *am, const struct app_metrics_services *s, struct monitoring *m);

/* Unsubscribes and frees. Call after monitoring_stop (no source may run). NULL accepted. */
void app_metrics_destroy(struct app_metrics *am);

#endif
