/* Asking wpa_supplicant to reconnect and to join the configured network, over its control
 * interface (a datagram socket per interface in its ctrl_interface directory, text commands,
 * the protocol of wpa_ctrl.c). One request at a time from the net-link thread: no ATTACH, so no
 * unsolicited messages are expected (a stray one, starting with '<', is skipped).
 * The client side is an abstract socket name: nothing is created in the file system. */
#define _GNU_SOURCE
#include "net_link_internal.h"

#include "gw_error.h"

#include <errno.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>


static unsigned long request_serial;

int net_link__wpa_request(const char *ctrl_dir, const char *ifname, const char *cmd, char *reply, size_t cap,
                          int timeout_ms)
{
    if (!ctrl_dir || !ifname || !cmd || !reply || cap < 2)
        return GW_ERR_INVAL;
    reply[0] = '\0';
    struct sockaddr_un to = { .sun_family = AF_UNIX };
    if ((size_t)snprintf(to.sun_path, sizeof to.sun_path, "%s/%s", ctrl_dir, ifname) >= sizeof to.sun_path)
        return GW_ERR_OVERFLOW;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return GW_ERR_IO;
    struct sockaddr_un me = { .sun_family = AF_UNIX };
    /* abstract name (leading NUL): wpa_supplicant answers to the sender's address */
    int n = snprintf(me.sun_path + 1, sizeof me.sun_path - 1, "tinybms-gw-wpa-%ld-%lu", (long)getpid(),
                     __atomic_add_fetch(&request_serial, 1, __ATOMIC_RELAXED));
    socklen_t me_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int rc = GW_ERR_IO;
    if (bind(fd, (struct sockaddr *)&me, me_len) != 0 || connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        rc = errno == ENOENT || errno == ECONNREFUSED ? GW_ERR_NOT_FOUND : GW_ERR_IO;
        goto out;
    }
    if (send(fd, cmd, strlen(cmd), 0) < 0)
        goto out;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long spent = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent >= timeout_ms) {
            rc = GW_ERR_TIMEOUT;
            goto out;
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)(timeout_ms - spent));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r == 0 ? GW_ERR_TIMEOUT : GW_ERR_IO;
            goto out;
        }
        ssize_t got = recv(fd, reply, cap - 1, 0);
        if (got < 0) {
            rc = GW_ERR_IO;
            goto out;
        }
        reply[got] = '\0';
        if (got > 0 && reply[0] == '<')
            continue; /* an event message, not our answer */
        rc = GW_OK;
        goto out;
    }
out:
    close(fd);
    return rc;
}

/* A command whose answer must be "OK". */
static int wpa_ok(const char *dir, const char *ifname, const char *cmd, const char *what, char *why, size_t cap)
{
    char reply[64];
    int rc = net_link__wpa_request(dir, ifname, cmd, reply, sizeof reply, NET_LINK_WPA_TIMEOUT_MS);
    if (rc == GW_OK && strncmp(reply, "OK", 2) == 0)
        return GW_OK;
    if (rc == GW_OK) {
        snprintf(why, cap, "wpa_supplicant refused to %s", what);
        return GW_ERR_PROTO;
    }
    snprintf(why, cap, "wpa_supplicant (%s/%s) %s: %s", dir, ifname,
             rc == GW_ERR_NOT_FOUND ? "not there" : "did not answer", gw_strerror(rc));
    return rc;
}

static void hex_of(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

/* The id of the network whose SSID is ssid in a LIST_NETWORKS answer ("id\tssid\tbssid\tflags"
 * lines after a header), -1 when absent. wpa_supplicant prints an SSID with non-printable bytes
 * escaped, so only a printable SSID is matched; another one is added again (harmless). */
int net_link__wpa_find_network(const char *list, const char *ssid)
{
    const char *line = strchr(list, '\n'); /* the header */
    while (line && *++line) {
        const char *tab = strchr(line, '\t');
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        if (tab && tab < end) {
            const char *name = tab + 1;
            const char *name_end = memchr(name, '\t', (size_t)(end - name));
            if (!name_end)
                name_end = end;
            if ((size_t)(name_end - name) == strlen(ssid) && memcmp(name, ssid, strlen(ssid)) == 0)
                return atoi(line);
        }
        line = *end ? end : NULL;
    }
    return -1;
}

int net_link__wpa_join(const char *dir, const char *ifname, const char *ssid, const char *password, char *why,
                       size_t cap)
{
    size_t ssid_len = strlen(ssid);
    if (ssid_len == 0 || ssid_len > 32)
        return GW_ERR_INVAL;
    char list[4096], reply[64], cmd[256];
    int rc = net_link__wpa_request(dir, ifname, "LIST_NETWORKS", list, sizeof list, NET_LINK_WPA_TIMEOUT_MS);
    if (rc != GW_OK) {
        snprintf(why, cap, "wpa_supplicant (%s/%s) %s: %s", dir, ifname,
                 rc == GW_ERR_NOT_FOUND ? "not there" : "did not answer", gw_strerror(rc));
        return rc;
    }
    int id = net_link__wpa_find_network(list, ssid);
    if (id < 0) {
        rc = net_link__wpa_request(dir, ifname, "ADD_NETWORK", reply, sizeof reply, NET_LINK_WPA_TIMEOUT_MS);
        if (rc != GW_OK || reply[0] < '0' || reply[0] > '9') {
            snprintf(why, cap, "wpa_supplicant would not add a network");
            return rc != GW_OK ? rc : GW_ERR_PROTO;
        }
        id = atoi(reply);
    }
    char hex[2 * 64 + 1];
    hex_of((const unsigned char *)ssid, ssid_len, hex);
    snprintf(cmd, sizeof cmd, "SET_NETWORK %d ssid %s", id, hex); /* hex: any byte of an SSID */
    if ((rc = wpa_ok(dir, ifname, cmd, "set the SSID", why, cap)) != GW_OK)
        return rc;
    if (password && password[0]) {
        /* The 256-bit PSK of WPA2-Personal (PBKDF2-SHA1, the SSID as salt, 4096 rounds), sent in
         * hex: the passphrase itself never goes over the socket, and no quoting is needed. */
        unsigned char psk[32];
        if (PKCS5_PBKDF2_HMAC_SHA1(password, (int)strlen(password), (const unsigned char *)ssid, (int)ssid_len,
                                   4096, (int)sizeof psk, psk) != 1) {
            snprintf(why, cap, "cannot derive the Wi-Fi key");
            return GW_ERR_IO;
        }
        hex_of(psk, sizeof psk, hex);
        snprintf(cmd, sizeof cmd, "SET_NETWORK %d psk %s", id, hex);
        rc = wpa_ok(dir, ifname, cmd, "set the key", why, cap);
        memset(cmd, 0, sizeof cmd);
        memset(hex, 0, sizeof hex);
        memset(psk, 0, sizeof psk);
        if (rc != GW_OK)
            return rc;
    } else {
        snprintf(cmd, sizeof cmd, "SET_NETWORK %d key_mgmt NONE", id);
        if ((rc = wpa_ok(dir, ifname, cmd, "make the network open", why, cap)) != GW_OK)
            return rc;
    }
    snprintf(cmd, sizeof cmd, "SELECT_NETWORK %d", id);
    return wpa_ok(dir, ifname, cmd, "select the network", why, cap);
}

int net_link__wpa_reconnect(const char *dir, const char *ifname, char *why, size_t cap)
{
    return wpa_ok(dir, ifname, "RECONNECT", "reconnect", why, cap);
}

void net_link__retry_step(struct net_link_retry *r, uint64_t now_ms, bool connected)
{
    if (connected) {
        *r = (struct net_link_retry){ 0 };
        return;
    }
    if (!r->active) {
        r->active = true;
        r->attempts = 0;
        r->next_ms = now_ms + 1000;
    }
}

bool net_link__retry_due(struct net_link_retry *r, uint64_t now_ms)
{
    if (!r->active || now_ms < r->next_ms)
        return false;
    r->attempts++;
    uint32_t shift = r->attempts < 4 ? r->attempts : 4; /* 2, 4, 8, 16, 16 ... s */
    r->next_ms = now_ms + (1000u << shift);
    return true;
}
