/* net_link: the rtnetlink side. Notifications (link, IPv4 and IPv6 addresses) only wake the
 * thread; it then re-reads the links and addresses whole (a dump on a second socket) and runs
 * the pure step on that view. Level-triggered: a lost notification (socket overrun) costs
 * nothing but a re-read, and the state never drifts from the kernel's. */
#define _GNU_SOURCE
#include "net_link.h"
#include "net_link_internal.h"

#include "app_events.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <openssl/crypto.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PUBLISH_TIMEOUT_MS 100

/* ------------------------------------------------------------------ reading the kernel */

static int on_notification(struct nl_msg *msg, void *arg)
{
    (void)msg;
    (void)arg;
    return NL_OK; /* content ignored: the thread re-reads everything */
}

static uint8_t map_scope(int scope)
{
    switch (scope) {
    case RT_SCOPE_UNIVERSE: return NET_LINK_SCOPE_GLOBAL;
    case RT_SCOPE_SITE: return NET_LINK_SCOPE_SITE;
    case RT_SCOPE_LINK: return NET_LINK_SCOPE_LINK;
    default: return NET_LINK_SCOPE_HOST;
    }
}

static struct net_link_iface *find_iface(struct net_link_view *v, int ifindex)
{
    for (size_t i = 0; i < v->count; i++)
        if (v->ifaces[i].ifindex == ifindex)
            return &v->ifaces[i];
    return NULL;
}

/* Fills nl->view from fresh dumps. Returns GW_OK or GW_ERR_IO. Thread (or start) only. */
static int read_view(struct net_link *nl)
{
    int err = nl_cache_refill(nl->sync, nl->links);
    if (!err)
        err = nl_cache_refill(nl->sync, nl->addrs);
    if (err) {
        nl->netlink_errors++;
        gw_log_ratelimited(&nl->read_limit, 60000, GW_LOG_WARN, MOD, "cannot read the interfaces: %s",
                           nl_geterror(err));
        return GW_ERR_IO;
    }
    struct net_link_view *v = &nl->view;
    memset(v, 0, sizeof *v);
    for (struct nl_object *o = nl_cache_get_first(nl->links); o; o = nl_cache_get_next(o)) {
        struct rtnl_link *l = (struct rtnl_link *)o;
        const char *name = rtnl_link_get_name(l);
        unsigned flags = rtnl_link_get_flags(l);
        /* only the watched ones: a machine with many (containers' veths) never pushes the
         * configured interface out of the view */
        if (nl->st.want[0] ? !name || strcmp(name, nl->st.want) != 0 : (flags & IFF_LOOPBACK) != 0)
            continue;
        if (v->count >= NET_LINK_MAX_IFACES)
            break;
        struct net_link_iface *i = &v->ifaces[v->count++];
        i->ifindex = rtnl_link_get_ifindex(l);
        snprintf(i->name, sizeof i->name, "%s", name ? name : "");
        i->up = flags & IFF_UP;
        i->running = flags & IFF_RUNNING;
        i->loopback = flags & IFF_LOOPBACK;
    }
    for (struct nl_object *o = nl_cache_get_first(nl->addrs); o; o = nl_cache_get_next(o)) {
        struct rtnl_addr *a = (struct rtnl_addr *)o;
        struct net_link_iface *i = find_iface(v, rtnl_addr_get_ifindex(a));
        int family = rtnl_addr_get_family(a);
        struct nl_addr *local = rtnl_addr_get_local(a);
        if (!i || !local || (family != AF_INET && family != AF_INET6))
            continue;
        if (nl_addr_get_len(local) != (family == AF_INET ? 4u : 16u))
            continue;
        struct net_link_addr x;
        memset(&x, 0, sizeof x);
        x.ipv6 = family == AF_INET6;
        x.scope = map_scope(rtnl_addr_get_scope(a));
        x.tentative = (rtnl_addr_get_flags(a) & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) != 0;
        const void *bin = nl_addr_get_binary_addr(local);
        if (!inet_ntop(family, bin, x.text, sizeof x.text))
            continue;
        if (!x.ipv6)
            memcpy(&x.ipv4, bin, 4);
        if (i->addr_count < NET_LINK_MAX_ADDRS) {
            i->addrs[i->addr_count++] = x;
            continue;
        }
        /* full (IPv6 privacy addresses pile up): a usable one takes the place of one that is not */
        for (size_t k = 0; k < i->addr_count && net_link__usable_addr(&x); k++) {
            if (!net_link__usable_addr(&i->addrs[k])) {
                i->addrs[k] = x;
                break;
            }
        }
    }
    /* Wi-Fi or not: asked once per interface index (nl80211) */
    for (size_t k = 0; k < v->count; k++) {
        struct net_link_iface *i = &v->ifaces[k];
        bool want = nl->st.want[0] ? strcmp(i->name, nl->st.want) == 0 : !i->loopback;
        if (want)
            i->wireless = net_link__is_wireless(nl, i->ifindex);
    }
    return GW_OK;
}

static void publish(struct net_link *nl, const struct net_link_output *o)
{
    if (o->action == NET_LINK_NONE)
        return;
    int id = o->action == NET_LINK_CONNECTED ? EVENT_NET_CONNECTED : EVENT_NET_DISCONNECTED;
    if (o->action == NET_LINK_CONNECTED)
        GW_LOGI(MOD, "connected: %s on %s (%s)", o->link.address, o->link.interface, o->reason);
    else if (o->link.address[0])
        GW_LOGW(MOD, "disconnected: %s lost its address %s (%s)", o->link.interface, o->link.address, o->reason);
    else
        GW_LOGW(MOD, "not connected: %s (%s)", o->link.interface[0] ? o->link.interface : "no interface",
                o->reason);
    if (event_bus_publish(nl->bus, id, &o->link, sizeof o->link, PUBLISH_TIMEOUT_MS) != GW_OK) {
        pthread_mutex_lock(&nl->lock);
        nl->publish_drops++;
        pthread_mutex_unlock(&nl->lock);
        GW_LOGW(MOD, "event %s not published: the event bus is full", app_event_name(id));
    }
}

static void evaluate(struct net_link *nl)
{
    if (read_view(nl) != GW_OK)
        return;
    struct net_link_output out;
    pthread_mutex_lock(&nl->lock);
    bool was = nl->st.connected;
    net_link__step(&nl->st, &nl->view, &out);
    if (nl->st.connected && !was)
        nl->connected_since_ms = gw_now_ms();
    else if (!nl->st.connected)
        nl->connected_since_ms = 0;
    nl->ifindex = 0;
    for (size_t i = 0; i < nl->view.count; i++)
        if (strcmp(nl->view.ifaces[i].name, nl->st.iface) == 0)
            nl->ifindex = nl->view.ifaces[i].ifindex;
    pthread_mutex_unlock(&nl->lock);
    publish(nl, &out);
}

/* Reads every pending notification (non-blocking socket). Returns false when the socket only
 * gave errors (nothing read). */
static bool drain(struct net_link *nl)
{
    bool any = false;
    for (int guard = 0; guard < 1000; guard++) {
        int err = nl_recvmsgs_default(nl->events);
        if (err >= 0) {
            any = true;
            continue;
        }
        if (err == -NLE_AGAIN)
            return true;
        /* -NLE_NOMEM: the socket overran (ENOBUFS): notifications lost, the re-read covers it */
        pthread_mutex_lock(&nl->lock);
        nl->netlink_errors++;
        pthread_mutex_unlock(&nl->lock);
        gw_log_ratelimited(&nl->drain_limit, 60000, GW_LOG_WARN, MOD, "netlink notifications: %s (re-read)",
                           nl_geterror(err));
        if (err != -NLE_NOMEM && err != -NLE_INTR)
            return any;
    }
    return true;
}

#define MAX_FAILED_WAKES 1000 /* a socket that only errors: give up rather than spin */

/* While disconnected, asks wpa_supplicant to join the configured network and reconnect, on the
 * retry schedule. Returns the poll() timeout until the next attempt (-1: none due). */
static int wpa_tick(struct net_link *nl)
{
    if (!nl->wpa)
        return -1;
    pthread_mutex_lock(&nl->lock);
    bool connected = nl->st.connected;
    pthread_mutex_unlock(&nl->lock);
    uint64_t now = gw_real_ms();
    net_link__retry_step(&nl->retry, now, connected);
    if (net_link__retry_due(&nl->retry, now)) {
        char why[200] = "";
        int rc = GW_OK;
        if (nl->wifi_ssid[0])
            rc = net_link__wpa_join(nl->wpa_dir, nl->st.want, nl->wifi_ssid, nl->wifi_password, why, sizeof why);
        if (rc == GW_OK)
            rc = net_link__wpa_reconnect(nl->wpa_dir, nl->st.want, why, sizeof why);
        pthread_mutex_lock(&nl->lock);
        nl->wpa_requests++;
        nl->wpa_failures += rc != GW_OK;
        pthread_mutex_unlock(&nl->lock);
        uint64_t next_s = (nl->retry.next_ms - now) / 1000u;
        if (rc == GW_OK)
            GW_LOGI(MOD, "asked wpa_supplicant to %s%s%s (attempt %u; next in %llu s if still down)",
                    nl->wifi_ssid[0] ? "join " : "reconnect", nl->wifi_ssid, nl->wifi_ssid[0] ? " and reconnect" : "",
                    nl->retry.attempts, (unsigned long long)next_s);
        else
            gw_log_ratelimited(&nl->wpa_limit, 60000, GW_LOG_WARN, MOD, "reconnection not asked: %s (retry in %llu s)",
                               why, (unsigned long long)next_s);
    }
    if (!nl->retry.active)
        return -1;
    uint64_t left = nl->retry.next_ms > now ? nl->retry.next_ms - now : 0;
    return left > 60000 ? 60000 : (int)left;
}

static void *watch_main(void *arg)
{
    struct net_link *nl = arg;
    pthread_setname_np(pthread_self(), "net-link");
    int fd = nl_socket_get_fd(nl->events);
    unsigned failed = 0;
    for (;;) {
        struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = nl->wake[0], .events = POLLIN } };
        int r = poll(p, 2, wpa_tick(nl)); /* no timeout unless a reconnection is pending */
        if (r < 0) {
            if (errno == EINTR)
                continue;
            GW_LOGE(MOD, "poll: %s: network link no longer watched", strerror(errno));
            break;
        }
        if (p[1].revents)
            break;
        if (p[0].revents & POLLNVAL) {
            GW_LOGE(MOD, "netlink socket closed: network link no longer watched");
            break;
        }
        if (!p[0].revents)
            continue;
        /* POLLIN, or POLLERR for an overrun: read what is there, then re-read the state */
        bool ok = drain(nl);
        evaluate(nl);
        failed = ok ? 0 : failed + 1;
        if (failed >= MAX_FAILED_WAKES) {
            GW_LOGE(MOD, "netlink socket keeps failing: network link no longer watched");
            break;
        }
    }
    pthread_mutex_lock(&nl->lock);
    nl->watching = false;
    pthread_mutex_unlock(&nl->lock);
    return NULL;
}

/* ------------------------------------------------------------------ life cycle */

int net_link_create(const struct net_link_options *opts, struct net_link **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!opts || !opts->bus)
        return GW_ERR_INVAL;
    if (opts->interface && strlen(opts->interface) >= NET_LINK_IFNAME)
        return GW_ERR_INVAL;
    struct net_link *nl = calloc(1, sizeof *nl);
    if (!nl)
        return GW_ERR_NOMEM;
    nl->bus = opts->bus;
    snprintf(nl->st.want, sizeof nl->st.want, "%s", opts->interface ? opts->interface : "");
    if (opts->wpa_reconnect) {
        if (!nl->st.want[0])
            GW_LOGW(MOD, "reconnection through wpa_supplicant needs network.interface (its socket is per "
                         "interface): not asked");
        nl->wpa = nl->st.want[0] != '\0';
        snprintf(nl->wpa_dir, sizeof nl->wpa_dir, "%s",
                 opts->wpa_ctrl_dir && opts->wpa_ctrl_dir[0] ? opts->wpa_ctrl_dir : "/run/wpa_supplicant");
        snprintf(nl->wifi_ssid, sizeof nl->wifi_ssid, "%s", opts->wifi_ssid ? opts->wifi_ssid : "");
        snprintf(nl->wifi_password, sizeof nl->wifi_password, "%s", opts->wifi_password ? opts->wifi_password : "");
    }
    nl->wake[0] = nl->wake[1] = -1;
    nl->nl80211_id = -1;
    pthread_mutex_init(&nl->lock, NULL);
    pthread_mutex_init(&nl->genl_lock, NULL);
    *out = nl;
    return GW_OK;
}

static void close_sockets(struct net_link *nl)
{
    net_link__wireless_close(nl);
    if (nl->links)
        nl_cache_free(nl->links);
    if (nl->addrs)
        nl_cache_free(nl->addrs);
    if (nl->sync)
        nl_socket_free(nl->sync);
    if (nl->events)
        nl_socket_free(nl->events);
    nl->links = nl->addrs = NULL;
    nl->sync = nl->events = NULL;
    for (int i = 0; i < 2; i++) {
        if (nl->wake[i] >= 0)
            close(nl->wake[i]);
        nl->wake[i] = -1;
    }
}

int net_link_start(struct net_link *nl)
{
    if (!nl)
        return GW_ERR_INVAL;
    if (nl->started)
        return GW_ERR_STATE;
    int err = 0;
    const char *step = "allocate";
    nl->events = nl_socket_alloc();
    nl->sync = nl_socket_alloc();
    if (!nl->events || !nl->sync)
        goto fail;
    nl_socket_disable_seq_check(nl->events);
    nl_socket_modify_cb(nl->events, NL_CB_VALID, NL_CB_CUSTOM, on_notification, nl);
    step = "connect";
    if ((err = nl_connect(nl->events, NETLINK_ROUTE)) < 0)
        goto fail;
    /* subscribe before the first dump: no change can fall between the two */
    step = "subscribe";
    if ((err = nl_socket_add_memberships(nl->events, RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, 0)) < 0)
        goto fail;
    if ((err = nl_socket_set_nonblocking(nl->events)) < 0)
        goto fail;
    step = "connect";
    if ((err = nl_connect(nl->sync, NETLINK_ROUTE)) < 0)
        goto fail;
    step = "dump";
    if ((err = rtnl_link_alloc_cache(nl->sync, AF_UNSPEC, &nl->links)) < 0)
        goto fail;
    if ((err = rtnl_addr_alloc_cache(nl->sync, &nl->addrs)) < 0)
        goto fail;
    step = "pipe";
    if (pipe2(nl->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        err = 0;
        goto fail;
    }
    net_link__wireless_open(nl); /* no nl80211: every interface is wired */

    evaluate(nl); /* the state at start, published once */
    pthread_mutex_lock(&nl->lock);
    nl->watching = true;
    pthread_mutex_unlock(&nl->lock);
    int terr = pthread_create(&nl->thread, NULL, watch_main, nl);
    if (terr) {
        GW_LOGE(MOD, "cannot start the network link thread: %s", strerror(terr));
        pthread_mutex_lock(&nl->lock);
        nl->watching = false;
        pthread_mutex_unlock(&nl->lock);
        close_sockets(nl);
        return GW_ERR_IO;
    }
    nl->started = true;
    GW_LOGI(MOD, "watching %s", nl->st.want[0] ? nl->st.want : "every non-loopback interface");
    return GW_OK;

fail:
    GW_LOGW(MOD, "network link not watched (netlink %s: %s): no connected/disconnected events", step,
            err ? nl_geterror(err) : strerror(errno));
    close_sockets(nl);
    return GW_ERR_IO;
}

void net_link_stop(struct net_link *nl)
{
    if (!nl || !nl->started)
        return;
    char c = 1;
    if (write(nl->wake[1], &c, 1) != 1)
        GW_LOGW(MOD, "cannot wake the network link thread: %s", strerror(errno));
    pthread_join(nl->thread, NULL);
    nl->started = false;
    pthread_mutex_lock(&nl->lock);
    nl->watching = false;
    pthread_mutex_unlock(&nl->lock);
    close_sockets(nl);
}

void net_link_destroy(struct net_link *nl)
{
    if (!nl)
        return;
    net_link_stop(nl);
    close_sockets(nl);
    pthread_mutex_destroy(&nl->genl_lock);
    pthread_mutex_destroy(&nl->lock);
    OPENSSL_cleanse(nl->wifi_password, sizeof nl->wifi_password);
    free(nl);
}

/* ------------------------------------------------------------------ getters */

int net_link_get_status(struct net_link *nl, struct net_link_status *out)
{
    if (!nl || !out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&nl->lock);
    const struct net_link_state *s = &nl->st;
    out->watching = nl->watching;
    out->connected = s->connected;
    out->link_up = s->link_up;
    snprintf(out->watched, sizeof out->watched, "%s", s->want);
    snprintf(out->interface, sizeof out->interface, "%s", s->iface);
    snprintf(out->address, sizeof out->address, "%s", s->address);
    out->wireless = s->wireless;
    out->addresses = s->addresses;
    out->connects = s->connects;
    out->disconnects = s->disconnects;
    out->reconnects = s->reconnects;
    out->link_downs = s->link_downs;
    out->address_changes = s->address_changes;
    out->netlink_errors = nl->netlink_errors + nl->publish_drops;
    out->connected_since_ms = nl->connected_since_ms;
    out->wpa_requests = nl->wpa_requests;
    out->wpa_failures = nl->wpa_failures;
    pthread_mutex_unlock(&nl->lock);
    return GW_OK;
}

int net_link_get_ip_address(struct net_link *nl, char *buf, size_t size)
{
    if (!nl || !buf || size == 0)
        return GW_ERR_INVAL;
    buf[0] = '\0';
    pthread_mutex_lock(&nl->lock);
    int rc = GW_OK;
    if (!nl->st.connected)
        rc = GW_ERR_NOT_FOUND;
    else if (strlen(nl->st.address) >= size)
        rc = GW_ERR_OVERFLOW;
    else
        memcpy(buf, nl->st.address, strlen(nl->st.address) + 1);
    pthread_mutex_unlock(&nl->lock);
    return rc;
}

uint32_t net_link_get_ipv4(struct net_link *nl)
{
    if (!nl)
        return 0;
    pthread_mutex_lock(&nl->lock);
    uint32_t v = nl->st.connected ? nl->st.ipv4 : 0;
    pthread_mutex_unlock(&nl->lock);
    return v;
}

int net_link_get_wireless(struct net_link *nl, struct net_link_wireless *out)
{
    if (!nl || !out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&nl->lock);
    bool started = nl->watching;
    bool wireless = nl->st.wireless;
    int ifindex = nl->ifindex;
    snprintf(out->interface, sizeof out->interface, "%s", nl->st.iface);
    pthread_mutex_unlock(&nl->lock);
    if (!started)
        return GW_ERR_STATE;
    if (!wireless || ifindex <= 0)
        return GW_ERR_UNSUPPORTED;
    return net_link__wireless_query(nl, ifindex, out);
}
