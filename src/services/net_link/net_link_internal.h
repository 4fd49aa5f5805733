/* net_link internals: the pure link-state step (table-tested) and the nl80211 answer parsers.
 * Nothing outside src/services/net_link and its tests includes this. */
#ifndef NET_LINK_INTERNAL_H
#define NET_LINK_INTERNAL_H

#include "app_events.h"
#include "net_link.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_LINK_MAX_IFACES 16
#define NET_LINK_MAX_ADDRS 8        /* per interface */
#define NET_LINK_IFNAME 32
#define NET_LINK_ADDR_TEXT 64

enum net_link_scope { NET_LINK_SCOPE_GLOBAL = 0, NET_LINK_SCOPE_SITE = 1, NET_LINK_SCOPE_LINK = 2,
                      NET_LINK_SCOPE_HOST = 3 };

struct net_link_addr {
    bool ipv6;
    uint8_t scope;                  /* enum net_link_scope */
    bool tentative;                 /* IPv6 duplicate detection running or failed */
    char text[NET_LINK_ADDR_TEXT];  /* without prefix length */
    uint32_t ipv4;                  /* network byte order (IPv4 only) */
};

struct net_link_iface {
    int ifindex;
    char name[NET_LINK_IFNAME];
    bool up;                        /* IFF_UP: administratively up */
    bool running;                   /* IFF_RUNNING: carrier / operationally up */
    bool loopback;
    bool wireless;
    size_t addr_count;
    struct net_link_addr addrs[NET_LINK_MAX_ADDRS];
};

/* Everything the kernel told at one instant. */
struct net_link_view {
    size_t count;
    struct net_link_iface ifaces[NET_LINK_MAX_IFACES];
};

struct net_link_state {
    char want[NET_LINK_IFNAME];     /* configured interface, "" = any non-loopback */
    bool known;                     /* a first view was evaluated */
    bool connected;
    bool link_up;
    bool wireless;
    char iface[NET_LINK_IFNAME];
    char address[NET_LINK_ADDR_TEXT];
    uint32_t ipv4;
    uint32_t addresses;
    uint64_t connects, disconnects, reconnects, link_downs, address_changes;
};

enum net_link_action { NET_LINK_NONE = 0, NET_LINK_CONNECTED, NET_LINK_DISCONNECTED };

struct net_link_output {
    int action;                     /* enum net_link_action: what to publish */
    struct app_net_link link;       /* its payload */
    char reason[64];                /* why (for the log): "link down", "address lost", ... */
};

/* One step: the new view against the state. Pure. */
void net_link__step(struct net_link_state *st, const struct net_link_view *view, struct net_link_output *out);

/* Is this address one that makes the gateway reachable? */
bool net_link__usable_addr(const struct net_link_addr *a);

/* Parsers of nl80211 answers (pure over the message): GET_INTERFACE (SSID, frequency) and
 * GET_STATION (signal, TX bit rate). Fill only what the message carries.
 * @retval GW_OK, GW_ERR_PROTO (not an nl80211 message / attributes broken) */
struct nl_msg;
int net_link__parse_interface(struct nl_msg *msg, struct net_link_wireless *out);
int net_link__parse_station(struct nl_msg *msg, struct net_link_wireless *out);

/* ------------------------------------------------------------------ wpa_supplicant (net_link_wpa.c) */

#define NET_LINK_WPA_TIMEOUT_MS 2000

/* When to ask for a reconnection while disconnected: 1 s after the loss, then 2, 4, 8, 16 s
 * apart. Pure. */
struct net_link_retry {
    bool active;
    uint32_t attempts;
    uint64_t next_ms;
};
void net_link__retry_step(struct net_link_retry *r, uint64_t now_ms, bool connected);
/* Whether an attempt is due now (and then the next one is scheduled). */
bool net_link__retry_due(struct net_link_retry *r, uint64_t now_ms);

/* One command to wpa_supplicant's control socket ctrl_dir/ifname; its answer into reply.
 * @retval GW_OK, GW_ERR_NOT_FOUND (no such socket: not running / other directory),
 *         GW_ERR_TIMEOUT, GW_ERR_IO, GW_ERR_OVERFLOW (path too long), GW_ERR_INVAL */
int net_link__wpa_request(const char *ctrl_dir, const char *ifname, const char *cmd, char *reply, size_t cap,
                          int timeout_ms);
/* The id of ssid in a LIST_NETWORKS answer, -1 when absent. Pure. */
int net_link__wpa_find_network(const char *list, const char *ssid);
/* Makes ssid (with password: WPA-PSK; without: open) the selected network, adding it when
 * wpa_supplicant does not have it. why gets the reason of a failure (never the password). */
int net_link__wpa_join(const char *ctrl_dir, const char *ifname, const char *ssid, const char *password, char *why,
                       size_t cap);
int net_link__wpa_reconnect(const char *ctrl_dir, const char *ifname, char *why, size_t cap);

/* ------------------------------------------------------------------ the watcher's state */

#include "gw_log.h"
#include <pthread.h>

struct nl_sock;
struct nl_cache;

struct net_link {
    struct event_bus *bus;
    pthread_mutex_t lock;           /* st, counters, ifindex, watching */
    struct net_link_state st;
    uint64_t connected_since_ms;
    uint64_t netlink_errors;
    uint64_t publish_drops;
    int ifindex;                    /* of st.iface, 0 when absent */
    bool watching;
    bool started;                   /* owner's thread only */
    pthread_t thread;
    int wake[2];                    /* stop pipe */
    struct nl_sock *events;         /* rtnetlink notifications */
    struct nl_sock *sync;           /* dumps */
    struct nl_cache *links, *addrs;
    struct net_link_view view;      /* thread (and start) only */
    struct gw_log_limit read_limit, drain_limit;
    /* nl80211 (net_link_wireless.c) */
    pthread_mutex_t genl_lock;      /* genl, nl80211_id, the per-ifindex answers */
    struct nl_sock *genl;
    int nl80211_id;                 /* -1: none */
    struct {
        int ifindex;
        bool wireless;
    } kinds[NET_LINK_MAX_IFACES];
    size_t kind_count;
    /* reconnection through wpa_supplicant (thread only, after start) */
    bool wpa;                       /* asked for, with an interface to name */
    char wpa_dir[108];
    char wifi_ssid[33];
    char wifi_password[64];
    struct net_link_retry retry;
    struct gw_log_limit wpa_limit;
    uint64_t wpa_requests, wpa_failures; /* under lock */
};

/* net_link_wireless.c: opens the generic netlink socket and resolves nl80211 (GW_OK, or
 * GW_ERR_UNSUPPORTED when the kernel has none). */
int net_link__wireless_open(struct net_link *nl);
void net_link__wireless_close(struct net_link *nl);
/* Is ifindex a Wi-Fi interface (asked once per index, then remembered)? */
bool net_link__is_wireless(struct net_link *nl, int ifindex);
/* SSID and frequency (GET_INTERFACE), then signal and TX rate (GET_STATION dump). */
int net_link__wireless_query(struct net_link *nl, int ifindex, struct net_link_wireless *out);

#endif
