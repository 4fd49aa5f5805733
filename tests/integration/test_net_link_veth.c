/* net_link against the real kernel: the test moves itself into a new network namespace
 * (unshare(CLONE_NEWNET): nothing of the machine's network is touched, and everything vanishes
 * with the process), makes a veth pair there with ip(8), and checks the events on the bus for
 * link down/up, IPv4/IPv6 address added/removed and the interface removed; then the "every
 * interface" mode. Skipped (exit 77, the reason printed) where namespaces cannot be created.
 * Addresses are from the documentation ranges (198.51.100.0/24, 2001:db8::/32); no packet is
 * sent anywhere. */
#define _GNU_SOURCE
#include "net_link.h"

#include "app_events.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SKIP 77
#define WAIT_MS 20000 /* a failure bound, never a synchronisation */

struct recorded {
    int id;
    struct app_net_link link;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct recorded ev[256];
    size_t count;
} rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_net(const struct gw_event *e, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&rec.lock);
    if (rec.count < sizeof rec.ev / sizeof rec.ev[0] && e->size == sizeof(struct app_net_link)) {
        rec.ev[rec.count].id = e->id;
        memcpy(&rec.ev[rec.count].link, e->payload, sizeof rec.ev[0].link);
        rec.count++;
        pthread_cond_broadcast(&rec.cond);
    }
    pthread_mutex_unlock(&rec.lock);
}

static size_t next_event;

/* Waits for the next recorded event and checks it is (id, interface, address). */
static void expect(int id, const char *iface, const char *address, const char *what)
{
    pthread_mutex_lock(&rec.lock);
    uint64_t deadline = gw_now_ms() + WAIT_MS;
    while (rec.count <= next_event && gw_now_ms() < deadline)
        gw_clock_wait_real(&rec.cond, &rec.lock, 500);
    bool have = rec.count > next_event;
    struct recorded r = have ? rec.ev[next_event] : (struct recorded){ 0 };
    pthread_mutex_unlock(&rec.lock);
    if (!have) {
        fprintf(stderr, "%s: no event within %d ms\n", what, WAIT_MS);
        CHECK(0);
        return;
    }
    next_event++;
    bool ok = r.id == id && strcmp(r.link.interface, iface) == 0 && strcmp(r.link.address, address) == 0;
    if (!ok)
        fprintf(stderr, "%s: got %s %s '%s', want %s %s '%s'\n", what, app_event_name(r.id), r.link.interface,
                r.link.address, app_event_name(id), iface, address);
    CHECK(ok);
    printf("  %-40s -> %s %s %s\n", what, app_event_name(r.id), r.link.interface, r.link.address);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

static struct event_bus *bus;

static struct net_link *watch(const char *iface)
{
    struct net_link_options o = { .bus = bus, .interface = iface };
    struct net_link *nl = NULL;
    CHECK_EQ_INT(net_link_create(&o, &nl), GW_OK);
    CHECK_EQ_INT(net_link_start(nl), GW_OK);
    return nl;
}

static void test_configured_interface(void)
{
    CHECK_EQ_INT(sh("ip link add gwt0 type veth peer name gwt1"), 0);
    struct net_link *nl = watch("gwt0");
    expect(EVENT_NET_DISCONNECTED, "gwt0", "", "start, link down");
    struct net_link_status s;
    net_link_get_status(nl, &s);
    CHECK(s.watching);
    CHECK(!s.connected);

    /* up without an address (IPv6 link-local only): nothing; the next event proves it */
    CHECK_EQ_INT(sh("ip link set gwt1 up && ip link set gwt0 up"), 0);
    CHECK_EQ_INT(sh("ip addr add 198.51.100.1/24 dev gwt0"), 0);
    expect(EVENT_NET_CONNECTED, "gwt0", "198.51.100.1", "link up, IPv4 address added");
    char addr[64];
    CHECK_EQ_INT(net_link_get_ip_address(nl, addr, sizeof addr), GW_OK);
    CHECK_STR(addr, "198.51.100.1");
    uint32_t want;
    inet_pton(AF_INET, "198.51.100.1", &want);
    CHECK_EQ_INT(net_link_get_ipv4(nl), want);
    struct net_link_wireless w;
    CHECK_EQ_INT(net_link_get_wireless(nl, &w), GW_ERR_UNSUPPORTED); /* a veth is no Wi-Fi */

    /* the far end goes down: no carrier */
    CHECK_EQ_INT(sh("ip link set gwt1 down"), 0);
    expect(EVENT_NET_DISCONNECTED, "gwt0", "198.51.100.1", "peer down (carrier lost)");
    CHECK_EQ_INT(net_link_get_ip_address(nl, addr, sizeof addr), GW_ERR_NOT_FOUND);
    CHECK_EQ_INT(net_link_get_ipv4(nl), 0);
    CHECK_EQ_INT(sh("ip link set gwt1 up"), 0);
    expect(EVENT_NET_CONNECTED, "gwt0", "198.51.100.1", "peer up again");
    /* our own side administratively down and up */
    CHECK_EQ_INT(sh("ip link set gwt0 down"), 0);
    expect(EVENT_NET_DISCONNECTED, "gwt0", "198.51.100.1", "link set down");
    CHECK_EQ_INT(sh("ip link set gwt0 up"), 0);
    /* IPv4 addresses stay across down/up: the same one is back */
    expect(EVENT_NET_CONNECTED, "gwt0", "198.51.100.1", "link set up");

    /* address removed, then an IPv6 one */
    CHECK_EQ_INT(sh("ip addr del 198.51.100.1/24 dev gwt0"), 0);
    expect(EVENT_NET_DISCONNECTED, "gwt0", "198.51.100.1", "IPv4 address removed");
    CHECK_EQ_INT(sh("ip -6 addr add 2001:db8::1/64 dev gwt0 nodad"), 0);
    expect(EVENT_NET_CONNECTED, "gwt0", "2001:db8::1", "IPv6 address added");
    /* a second address: the one in use stays (nothing said); removing it moves to the other */
    CHECK_EQ_INT(sh("ip addr add 198.51.100.2/24 dev gwt0"), 0);
    CHECK_EQ_INT(sh("ip -6 addr del 2001:db8::1/64 dev gwt0"), 0);
    expect(EVENT_NET_CONNECTED, "gwt0", "198.51.100.2", "address in use removed, another left");

    /* many changes at once: whatever was lost in between, the state is the kernel's */
    CHECK_EQ_INT(sh("for i in $(seq 10 70); do echo addr add 198.51.100.$i/24 dev gwt0; done | ip -batch -"), 0);
    CHECK_EQ_INT(sh("ip addr flush dev gwt0"), 0);
    expect(EVENT_NET_DISCONNECTED, "gwt0", "198.51.100.2", "62 addresses added, then flushed");

    CHECK_EQ_INT(sh("ip addr add 198.51.100.3/24 dev gwt0"), 0);
    expect(EVENT_NET_CONNECTED, "gwt0", "198.51.100.3", "address back");
    CHECK_EQ_INT(sh("ip link del gwt0"), 0);
    expect(EVENT_NET_DISCONNECTED, "gwt0", "198.51.100.3", "interface removed");

    net_link_get_status(nl, &s);
    printf("  counters: connects %llu disconnects %llu reconnects %llu link downs %llu address changes %llu "
           "errors %llu\n",
           (unsigned long long)s.connects, (unsigned long long)s.disconnects, (unsigned long long)s.reconnects,
           (unsigned long long)s.link_downs, (unsigned long long)s.address_changes,
           (unsigned long long)s.netlink_errors);
    CHECK_EQ_INT(s.connects, 5); /* .1 three times, 2001:db8::1, .3 (.2 was a change) */
    CHECK_EQ_INT(s.disconnects, 5);
    CHECK_EQ_INT(s.reconnects, 4);
    CHECK_EQ_INT(s.link_downs, 3); /* peer down, own down, interface removed */
    CHECK_EQ_INT(s.address_changes, 1);
    CHECK(!s.connected);
    net_link_destroy(nl);
}

static void test_every_interface(void)
{
    /* lo only (and up): not connected, said once */
    struct net_link *nl = watch(NULL);
    expect(EVENT_NET_DISCONNECTED, "", "", "start, loopback only");
    CHECK_EQ_INT(sh("ip link add gwa0 type veth peer name gwa1 && ip addr add 198.51.100.9/24 dev gwa1 && "
                    "ip link set gwa0 up && ip link set gwa1 up"),
                 0);
    expect(EVENT_NET_CONNECTED, "gwa1", "198.51.100.9", "a new interface with an address");
    CHECK_EQ_INT(sh("ip link del gwa0"), 0); /* takes its peer with it */
    expect(EVENT_NET_DISCONNECTED, "gwa1", "198.51.100.9", "the pair removed");
    net_link_destroy(nl);
}

static void test_stop_is_prompt(void)
{
    /* a thread on poll() with no timeout stops at once when asked: start/stop many times */
    for (int i = 0; i < 20; i++) {
        struct net_link *nl = watch("nonexistent0");
        net_link_stop(nl);
        net_link_stop(nl);
        net_link_destroy(nl);
    }
    /* each start said "interface absent" once */
    for (int i = 0; i < 20; i++)
        expect(EVENT_NET_DISCONNECTED, "nonexistent0", "", "start on an absent interface");
}

int main(void)
{
    if (unshare(CLONE_NEWNET) != 0) {
        printf("SKIP: cannot create a network namespace (unshare(CLONE_NEWNET): %s); run as root or with "
               "CAP_SYS_ADMIN to test the link watcher against the kernel\n",
               strerror(errno));
        return SKIP;
    }
    if (system("ip -V > /dev/null 2>&1") != 0) {
        printf("SKIP: ip(8) not found (Debian package iproute2)\n");
        return SKIP;
    }
    if (system("ip link set lo up") != 0) {
        printf("SKIP: cannot configure the new namespace (ip link set lo up failed)\n");
        return SKIP;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rec.cond, &ca);
    if (event_bus_create(NULL, &bus) != GW_OK)
        return 1;
    event_bus_subscribe(bus, EVENT_NET_CONNECTED, on_net, NULL, "test");
    event_bus_subscribe(bus, EVENT_NET_DISCONNECTED, on_net, NULL, "test");
    static const struct test_case_ cases[] = { TEST_CASE(test_configured_interface), TEST_CASE(test_every_interface),
                                               TEST_CASE(test_stop_is_prompt) };
    int rc = test_run_(cases, sizeof cases / sizeof cases[0]);
    event_bus_destroy(bus);
    return rc;
}
