/* net_link: the nl80211 side (generic netlink). Is an interface Wi-Fi, and for the one in use:
 * SSID, frequency, signal and TX bit rate. Requests are bounded by a receive timeout. */
#define _GNU_SOURCE
#include "net_link_internal.h"

#include "gw_error.h"
#include "gw_log.h"

#include <errno.h>
#include <linux/nl80211.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#define GENL_TIMEOUT_MS 500

/* ------------------------------------------------------------------ parsers (pure) */

static struct nla_policy iface_policy[NL80211_ATTR_MAX + 1];
static struct nla_policy sta_policy[NL80211_STA_INFO_MAX + 1];
static struct nla_policy rate_policy[NL80211_RATE_INFO_MAX + 1];
static pthread_once_t policy_once = PTHREAD_ONCE_INIT;

static void policies_init(void)
{
    iface_policy[NL80211_ATTR_IFINDEX].type = NLA_U32;
    iface_policy[NL80211_ATTR_SSID].type = NLA_UNSPEC;
    iface_policy[NL80211_ATTR_SSID].maxlen = 32;
    iface_policy[NL80211_ATTR_WIPHY_FREQ].type = NLA_U32;
    iface_policy[NL80211_ATTR_STA_INFO].type = NLA_NESTED;
    sta_policy[NL80211_STA_INFO_SIGNAL].type = NLA_U8;
    sta_policy[NL80211_STA_INFO_TX_BITRATE].type = NLA_NESTED;
    rate_policy[NL80211_RATE_INFO_BITRATE].type = NLA_U16;
    rate_policy[NL80211_RATE_INFO_BITRATE32].type = NLA_U32;
}

/* A nest whose content is whole attributes (libnl ignores leftover bytes; we do not). */
static bool nest_whole(const struct nlattr *nest)
{
    const struct nlattr *pos;
    int rem;
    nla_for_each_nested(pos, nest, rem) {
    }
    return rem == 0;
}

static int parse_top(struct nl_msg *msg, struct nlattr **tb)
{
    pthread_once(&policy_once, policies_init);
    struct nlmsghdr *nlh = msg ? nlmsg_hdr(msg) : NULL;
    if (!nlh || !genlmsg_valid_hdr(nlh, 0))
        return GW_ERR_PROTO;
    struct genlmsghdr *g = nlmsg_data(nlh);
    if (nla_parse(tb, NL80211_ATTR_MAX, genlmsg_attrdata(g, 0), genlmsg_attrlen(g, 0), iface_policy) < 0)
        return GW_ERR_PROTO;
    return GW_OK;
}

int net_link__parse_interface(struct nl_msg *msg, struct net_link_wireless *out)
{
    struct nlattr *tb[NL80211_ATTR_MAX + 1];
    int rc = parse_top(msg, tb);
    if (rc)
        return rc;
    if (tb[NL80211_ATTR_SSID]) {
        /* bytes, not text: non-printable ones shown as '?' */
        int n = nla_len(tb[NL80211_ATTR_SSID]);
        const unsigned char *p = nla_data(tb[NL80211_ATTR_SSID]);
        if (n > 32)
            n = 32;
        for (int i = 0; i < n; i++)
            out->ssid[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
        out->ssid[n] = '\0';
    }
    if (tb[NL80211_ATTR_WIPHY_FREQ])
        out->frequency_mhz = nla_get_u32(tb[NL80211_ATTR_WIPHY_FREQ]);
    return GW_OK;
}

int net_link__parse_station(struct nl_msg *msg, struct net_link_wireless *out)
{
    struct nlattr *tb[NL80211_ATTR_MAX + 1];
    int rc = parse_top(msg, tb);
    if (rc)
        return rc;
    if (!tb[NL80211_ATTR_STA_INFO])
        return GW_OK;
    struct nlattr *si[NL80211_STA_INFO_MAX + 1];
    if (!nest_whole(tb[NL80211_ATTR_STA_INFO]) || nla_parse_nested(si, NL80211_STA_INFO_MAX, tb[NL80211_ATTR_STA_INFO], sta_policy) < 0)
        return GW_ERR_PROTO;
    out->associated = true;
    if (si[NL80211_STA_INFO_SIGNAL]) {
        out->signal_known = true;
        out->signal_dbm = (int8_t)nla_get_u8(si[NL80211_STA_INFO_SIGNAL]);
    }
    if (si[NL80211_STA_INFO_TX_BITRATE]) {
        struct nlattr *ri[NL80211_RATE_INFO_MAX + 1];
        if (!nest_whole(si[NL80211_STA_INFO_TX_BITRATE]) || nla_parse_nested(ri, NL80211_RATE_INFO_MAX, si[NL80211_STA_INFO_TX_BITRATE], rate_policy) < 0)
            return GW_ERR_PROTO;
        uint64_t units = 0; /* 100 kbit/s */
        if (ri[NL80211_RATE_INFO_BITRATE32])
            units = nla_get_u32(ri[NL80211_RATE_INFO_BITRATE32]);
        else if (ri[NL80211_RATE_INFO_BITRATE])
            units = nla_get_u16(ri[NL80211_RATE_INFO_BITRATE]);
        out->tx_bitrate_bps = units * 100000u;
    }
    return GW_OK;
}

/* ------------------------------------------------------------------ requests */

struct request {
    int err;                        /* > 0 waiting, 0 done, < 0 -errno from the kernel */
    int (*parse)(struct nl_msg *, struct net_link_wireless *);
    struct net_link_wireless *out;
    int answers;
};

static int on_valid(struct nl_msg *msg, void *arg)
{
    struct request *r = arg;
    if (r->parse && r->parse(msg, r->out) == GW_OK)
        r->answers++;
    return NL_OK;
}

static int on_error(struct sockaddr_nl *nla, struct nlmsgerr *e, void *arg)
{
    (void)nla;
    struct request *r = arg;
    r->err = e->error ? e->error : -EIO;
    return NL_STOP;
}

static int on_done(struct nl_msg *msg, void *arg)
{
    (void)msg;
    struct request *r = arg;
    r->err = 0;
    return NL_STOP;
}

/* Sends cmd for ifindex (flags: NLM_F_DUMP or 0) and collects the answers. genl_lock held. */
static int request(struct net_link *nl, uint8_t cmd, int flags, int ifindex,
                   int (*parse)(struct nl_msg *, struct net_link_wireless *), struct net_link_wireless *out,
                   int *answers)
{
    struct nl_msg *msg = nlmsg_alloc();
    struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
    int rc = GW_ERR_NOMEM;
    if (!msg || !cb)
        goto out;
    if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, nl->nl80211_id, 0, flags, cmd, 0) ||
        nla_put_u32(msg, NL80211_ATTR_IFINDEX, (uint32_t)ifindex) < 0)
        goto out;
    struct request r = { .err = 1, .parse = parse, .out = out };
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_valid, &r);
    nl_cb_set(cb, NL_CB_FINISH, NL_CB_CUSTOM, on_done, &r);
    nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_done, &r);
    nl_cb_err(cb, NL_CB_CUSTOM, on_error, &r);
    rc = GW_ERR_IO;
    if (nl_send_auto(nl->genl, msg) < 0)
        goto out;
    while (r.err > 0) {
        int e = nl_recvmsgs(nl->genl, cb);
        if (e < 0 && r.err > 0) {
            rc = e == -NLE_AGAIN ? GW_ERR_TIMEOUT : GW_ERR_IO;
            goto out;
        }
    }
    if (answers)
        *answers = r.answers;
    if (r.err == -ENODEV || r.err == -EOPNOTSUPP || r.err == -EINVAL)
        rc = GW_ERR_UNSUPPORTED;
    else
        rc = r.err < 0 ? GW_ERR_IO : GW_OK;
out:
    nlmsg_free(msg);
    nl_cb_put(cb);
    return rc;
}

int net_link__wireless_open(struct net_link *nl)
{
    pthread_mutex_lock(&nl->genl_lock);
    nl->kind_count = 0;
    nl->nl80211_id = -1;
    nl->genl = nl_socket_alloc();
    int rc = GW_ERR_UNSUPPORTED;
    if (nl->genl && genl_connect(nl->genl) == 0) {
        struct timeval tv = { .tv_sec = 0, .tv_usec = GENL_TIMEOUT_MS * 1000 };
        setsockopt(nl_socket_get_fd(nl->genl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        nl->nl80211_id = genl_ctrl_resolve(nl->genl, NL80211_GENL_NAME);
        if (nl->nl80211_id >= 0)
            rc = GW_OK;
    }
    if (rc) {
        if (nl->genl)
            nl_socket_free(nl->genl);
        nl->genl = NULL;
        nl->nl80211_id = -1;
        GW_LOGD(MOD, "no nl80211 in this kernel: interfaces are taken as wired");
    }
    pthread_mutex_unlock(&nl->genl_lock);
    return rc;
}

void net_link__wireless_close(struct net_link *nl)
{
    pthread_mutex_lock(&nl->genl_lock);
    if (nl->genl)
        nl_socket_free(nl->genl);
    nl->genl = NULL;
    nl->nl80211_id = -1;
    nl->kind_count = 0;
    pthread_mutex_unlock(&nl->genl_lock);
}

bool net_link__is_wireless(struct net_link *nl, int ifindex)
{
    pthread_mutex_lock(&nl->genl_lock);
    bool wireless = false;
    bool known = false;
    for (size_t i = 0; i < nl->kind_count && !known; i++) {
        if (nl->kinds[i].ifindex == ifindex) {
            known = true;
            wireless = nl->kinds[i].wireless;
        }
    }
    if (!known && nl->genl) {
        struct net_link_wireless tmp = { 0 };
        int answers = 0;
        int rc = request(nl, NL80211_CMD_GET_INTERFACE, 0, ifindex, net_link__parse_interface, &tmp, &answers);
        wireless = rc == GW_OK && answers > 0;
        if (rc == GW_OK || rc == GW_ERR_UNSUPPORTED) { /* a timeout is asked again next time */
            if (nl->kind_count == NET_LINK_MAX_IFACES)
                nl->kind_count = 0; /* interfaces come and go: start over */
            nl->kinds[nl->kind_count].ifindex = ifindex;
            nl->kinds[nl->kind_count].wireless = wireless;
            nl->kind_count++;
        }
    }
    pthread_mutex_unlock(&nl->genl_lock);
    return wireless;
}

int net_link__wireless_query(struct net_link *nl, int ifindex, struct net_link_wireless *out)
{
    pthread_mutex_lock(&nl->genl_lock);
    int rc = GW_ERR_UNSUPPORTED;
    if (nl->genl) {
        rc = request(nl, NL80211_CMD_GET_INTERFACE, 0, ifindex, net_link__parse_interface, out, NULL);
        if (rc == GW_OK)
            rc = request(nl, NL80211_CMD_GET_STATION, NLM_F_DUMP, ifindex, net_link__parse_station, out, NULL);
    }
    pthread_mutex_unlock(&nl->genl_lock);
    return rc;
}
