/* The link-state step of net_link: a view of the interfaces in, what to publish out. Pure (no
 * OS call), table-tested in tests/unit/test_net_link.c. */
#include "net_link_internal.h"

#include <stdio.h>
#include <string.h>

bool net_link__usable_addr(const struct net_link_addr *a)
{
    return (a->scope == NET_LINK_SCOPE_GLOBAL || a->scope == NET_LINK_SCOPE_SITE) && !a->tentative && a->text[0];
}

static bool watched(const struct net_link_state *st, const struct net_link_iface *i)
{
    if (st->want[0])
        return strcmp(i->name, st->want) == 0;
    return !i->loopback;
}

/* The usable address of iface to use: IPv4 first (what brokers and browsers are mostly given),
 * then IPv6; the current one when still there (no flapping between two addresses). */
static const struct net_link_addr *pick_addr(const struct net_link_iface *i, const char *current)
{
    const struct net_link_addr *v4 = NULL, *v6 = NULL;
    for (size_t k = 0; k < i->addr_count; k++) {
        const struct net_link_addr *a = &i->addrs[k];
        if (!net_link__usable_addr(a))
            continue;
        if (current && strcmp(a->text, current) == 0)
            return a;
        if (!a->ipv6 && !v4)
            v4 = a;
        if (a->ipv6 && !v6)
            v6 = a;
    }
    return v4 ? v4 : v6;
}

static void fill_link(struct app_net_link *l, const char *iface, const char *addr)
{
    snprintf(l->interface, sizeof l->interface, "%s", iface);
    snprintf(l->address, sizeof l->address, "%s", addr);
}

void net_link__step(struct net_link_state *st, const struct net_link_view *view, struct net_link_output *out)
{
    memset(out, 0, sizeof *out);
    bool link_up = false;
    uint32_t addresses = 0;
    const struct net_link_iface *best = NULL;
    const struct net_link_addr *best_addr = NULL;
    const struct net_link_iface *named = NULL; /* a watched interface, for the name when down */
    bool current_iface_present = false;
    for (size_t n = 0; n < view->count; n++) {
        const struct net_link_iface *i = &view->ifaces[n];
        if (!watched(st, i))
            continue;
        if (!named)
            named = i;
        if (strcmp(i->name, st->iface) == 0)
            current_iface_present = true;
        if (!(i->up && i->running))
            continue;
        link_up = true;
        const struct net_link_addr *a = pick_addr(i, st->connected ? st->address : NULL);
        for (size_t k = 0; k < i->addr_count; k++)
            addresses += net_link__usable_addr(&i->addrs[k]);
        if (!a)
            continue;
        /* keep the interface in use while it stays usable */
        bool is_current = st->connected && strcmp(i->name, st->iface) == 0;
        if (!best || is_current) {
            best = i;
            best_addr = a;
        }
    }

    bool was_connected = st->connected, was_known = st->known;
    if (st->known && st->link_up && !link_up)
        st->link_downs++;
    st->link_up = link_up;
    st->addresses = addresses;
    st->known = true;

    if (best) {
        bool changed = !was_connected || strcmp(st->address, best_addr->text) != 0 || strcmp(st->iface, best->name) != 0;
        if (was_connected && changed)
            st->address_changes++;
        if (!was_connected) {
            st->connects++;
            if (st->disconnects > 0)
                st->reconnects++;
        }
        st->connected = true;
        st->wireless = best->wireless;
        snprintf(st->iface, sizeof st->iface, "%s", best->name);
        snprintf(st->address, sizeof st->address, "%s", best_addr->text);
        st->ipv4 = best_addr->ipv6 ? 0 : best_addr->ipv4;
        if (changed) {
            out->action = NET_LINK_CONNECTED;
            fill_link(&out->link, st->iface, st->address);
            snprintf(out->reason, sizeof out->reason, "%s", !was_connected ? "address usable" : "address changed");
        }
        return;
    }

    /* not connected */
    const char *why = !named ? (st->want[0] ? "interface absent" : "no network interface")
                      : !link_up ? "link down"
                                 : "no address";
    if (was_connected || !was_known) {
        if (was_connected)
            st->disconnects++;
        out->action = NET_LINK_DISCONNECTED;
        /* the address that went away, on the interface that carried it */
        const char *iface = was_connected ? st->iface : (st->want[0] ? st->want : (named ? named->name : ""));
        fill_link(&out->link, iface, was_connected ? st->address : "");
        snprintf(out->reason, sizeof out->reason, "%s", was_connected && !current_iface_present ? "interface removed" : why);
    }
    st->connected = false;
    st->address[0] = '\0';
    st->ipv4 = 0;
    if (!was_connected && named && !st->iface[0])
        snprintf(st->iface, sizeof st->iface, "%s", st->want[0] ? st->want : named->name);
    st->wireless = false;
    for (size_t n = 0; n < view->count; n++)
        if (strcmp(view->ifaces[n].name, st->iface) == 0)
            st->wireless = view->ifaces[n].wireless;
}
