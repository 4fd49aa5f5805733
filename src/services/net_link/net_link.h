/* net_link: watches the network link of the gateway (the module reference's "wifi"). On Linux
 * the operating system owns Wi-Fi and addresses; this module watches and reports.
 *
 * - Watches the configured interface (network.interface), or every non-loopback interface when
 *   none is configured, through rtnetlink (libnl-route): link up/down and IPv4/IPv6 addresses
 *   gained/lost. "Connected" means a watched interface is up and running with a usable address
 *   (global or site scope, not tentative or failed duplicate detection; link-local addresses
 *   do not count).
 * - Publishes EVENT_NET_CONNECTED (struct app_net_link: interface, address) when it becomes
 *   connected and again when the address changes (receivers rebind), EVENT_NET_DISCONNECTED
 *   with the address that went away (the alert manager raises WIFI_DISCONNECTED after its grace
 *   period). The first state is published once at start.
 * - Counts connects, disconnects, reconnects, link downs and address changes.
 * - For a wireless interface: SSID, signal (dBm), bit rate and frequency from nl80211 (generic
 *   netlink), read when asked (net_link_get_wireless), never on a timer.
 * - Optionally (reconnect = wpa_supplicant, off by default) asks wpa_supplicant, over its control
 *   socket, to join the configured SSID and to reconnect while the link is down: 1 s after the
 *   loss, then 2, 4, 8, 16 s apart. NetworkManager is not driven (it reconnects by itself).
 * One thread ("net-link") waits on the netlink socket with poll(): no periodic wake-up.
 * Every function is thread-safe. */
#ifndef NET_LINK_H
#define NET_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_bus;
struct net_link;

struct net_link_options {
    struct event_bus *bus;      /* required; borrowed, must outlive the watcher */
    const char *interface;      /* NULL or "": every non-loopback interface; copied (< 32 chars) */
    bool wpa_reconnect;         /* ask wpa_supplicant to reconnect (needs interface) */
    const char *wpa_ctrl_dir;   /* its ctrl_interface directory; NULL: /run/wpa_supplicant */
    const char *wifi_ssid;      /* NULL or "": reconnect only; else joined first (copied) */
    const char *wifi_password;  /* NULL or "": an open network; copied, never logged */
};

/* Allocates the watcher. Opens nothing yet. On failure *out = NULL.
 * @retval GW_OK, GW_ERR_INVAL (NULL bus/out, interface name too long), GW_ERR_NOMEM */
int net_link_create(const struct net_link_options *opts, struct net_link **out);

/* Opens the netlink sockets, reads the current state, publishes it, starts the thread.
 * @retval GW_OK
 * @retval GW_ERR_STATE already started
 * @retval GW_ERR_IO no netlink here (sandbox, no permission): the reason was logged; the
 *         gateway runs without link events
 * @retval GW_ERR_NOMEM */
int net_link_start(struct net_link *nl);

/* Stops and joins the thread, closes the sockets. Idempotent. */
void net_link_stop(struct net_link *nl);

/* Stops and frees. NULL accepted. */
void net_link_destroy(struct net_link *nl);

struct net_link_status {
    bool watching;              /* the thread runs on a netlink socket */
    bool connected;
    bool link_up;               /* a watched interface is up and running (carrier) */
    char watched[32];           /* the configured interface, "" = every non-loopback one */
    char interface[32];         /* the interface of the address, or the last one used */
    char address[64];           /* the address in use, "" when disconnected */
    bool wireless;              /* interface is a Wi-Fi interface (nl80211) */
    uint32_t addresses;         /* usable addresses on the watched interfaces */
    uint64_t connects;          /* disconnected -> connected (the first connection included) */
    uint64_t disconnects;       /* connected -> disconnected */
    uint64_t reconnects;        /* connects after a disconnect */
    uint64_t link_downs;        /* link up -> down */
    uint64_t address_changes;   /* the address in use changed while connected */
    uint64_t netlink_errors;    /* lost notifications (resynchronised) and failed reads */
    uint64_t connected_since_ms;/* gw_now_ms() of the last connect, 0 when disconnected */
    uint64_t wpa_requests;      /* reconnections asked of wpa_supplicant */
    uint64_t wpa_failures;      /* of which failed (not running, refused, no answer) */
};

/* Copies the current status. @retval GW_OK, GW_ERR_INVAL */
int net_link_get_status(struct net_link *nl, struct net_link_status *out);

/* The address in use as text ("192.0.2.7" or "2001:db8::7"), NUL-terminated into buf.
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOT_FOUND (not connected; buf holds ""), GW_ERR_OVERFLOW */
int net_link_get_ip_address(struct net_link *nl, char *buf, size_t size);

/* The IPv4 address in use in network byte order, 0 when there is none (the module reference's
 * wifi_get_ip_address()). */
uint32_t net_link_get_ipv4(struct net_link *nl);

struct net_link_wireless {
    char interface[32];
    bool associated;            /* a station (the access point) is known */
    char ssid[33];
    bool signal_known;
    int signal_dbm;
    uint64_t tx_bitrate_bps;    /* 0 = unknown */
    uint32_t frequency_mhz;     /* 0 = unknown */
};

/* Asks nl80211 about the interface in use (or the watched one): SSID, signal, bit rate. One
 * request/answer on a generic netlink socket, bounded to 500 ms. Call it from a sampler, not
 * from a hot path.
 * @retval GW_OK
 * @retval GW_ERR_UNSUPPORTED not a Wi-Fi interface, or no nl80211 in this kernel
 * @retval GW_ERR_INVAL, GW_ERR_STATE (not started), GW_ERR_IO, GW_ERR_TIMEOUT */
int net_link_get_wireless(struct net_link *nl, struct net_link_wireless *out);

#endif
