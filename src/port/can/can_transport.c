/* Spec parsing (the factory) and the thin wrappers over the ops struct. */
#define _POSIX_C_SOURCE 200809L
#include "can_transport.h"
#include "can_transport_internal.h"

#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"

#include <net/if.h>
#include <stdlib.h>
#include <string.h>

#define SPEC_FORMS "can0 or socketcan:IFACE (a SocketCAN interface), slcan:/dev/ttyACM0[@BAUD] (an slcan " \
                   "adapter), log:FILE[@IFNAME] (a candump log file)"

uint64_t can__deadline(uint32_t timeout_ms)
{
    return gw_now_ms() + timeout_ms;
}

int can__remaining_ms(uint64_t deadline)
{
    uint64_t now = gw_now_ms();
    if (now >= deadline)
        return 0;
    uint64_t left = deadline - now;
    return left > 60000u ? 60000 : (int)left;
}

int can_frame_validate(const struct can_frame_gw *frame)
{
    if (!frame || frame->err || frame->dlc > 8)
        return GW_ERR_INVAL;
    if (frame->id > (frame->ext ? CAN_EXT_ID_MAX : CAN_STD_ID_MAX))
        return GW_ERR_INVAL;
    return GW_OK;
}

/* True for the names SocketCAN interfaces get from the kernel: can0, vcan0, vxcan0, slcan0. */
static bool can_like_name(const char *name)
{
    static const char *const prefixes[] = { "can", "vcan", "vxcan", "slcan" };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* Splits "kind:rest" for the known kinds; a spec without a known prefix is a SocketCAN
 * interface name ("can0"). */
static int pick_ops(const char *spec, const struct can_transport_ops **ops, const char **arg)
{
    static const struct {
        const char *prefix;
        const struct can_transport_ops *ops;
    } kinds[] = {
        { "socketcan:", &can_socketcan_ops },
        { "slcan:", &can_slcan_ops },
        { "log:", &can_log_ops },
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = strlen(kinds[i].prefix);
        if (strncmp(spec, kinds[i].prefix, n) == 0) {
            *ops = kinds[i].ops;
            *arg = spec + n;
            return GW_OK;
        }
    }
    if (strchr(spec, ':') || strchr(spec, '/'))
        return GW_ERR_INVAL; /* "foo:bar" with an unknown kind, or a path without "slcan:" */
    *ops = &can_socketcan_ops;
    *arg = spec;
    return GW_OK;
}

int can_transport_open(const char *spec, uint32_t bitrate, struct can_transport **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!spec || !spec[0] || strlen(spec) >= CAN_SPEC_MAX) {
        GW_LOGE(MOD, "invalid CAN transport spec (empty or longer than %d chars)", CAN_SPEC_MAX - 1);
        return GW_ERR_INVAL;
    }
    const struct can_transport_ops *ops;
    const char *arg;
    if (pick_ops(spec, &ops, &arg) != GW_OK || !arg[0]) {
        GW_LOGE(MOD, "CAN spec '%s' not understood; accepted forms: " SPEC_FORMS, spec);
        return GW_ERR_INVAL;
    }
    /* A bare word is a SocketCAN interface only when one of that name exists, or the name is
     * one the kernel gives CAN interfaces (an adapter plugged in later): "--can nonsense" is a
     * mistake to report now, not a device to wait for. */
    if (arg == spec && if_nametoindex(spec) == 0 && !can_like_name(spec)) {
        GW_LOGE(MOD, "CAN spec '%s' not understood: there is no network interface of that name; "
                "accepted forms: " SPEC_FORMS "; a SocketCAN interface of another name is written "
                "socketcan:NAME", spec);
        return GW_ERR_INVAL;
    }
    struct can_transport *t = calloc(1, sizeof *t);
    if (!t)
        return GW_ERR_NOMEM;
    t->ops = ops;
    memcpy(t->spec, spec, strlen(spec) + 1);
    int rc = ops->open(t, arg, bitrate);
    if (rc != GW_OK) {
        free(t);
        return rc;
    }
    *out = t;
    return GW_OK;
}

void can_transport_close(struct can_transport *t)
{
    if (!t)
        return;
    if (t->ops && t->ops->close)
        t->ops->close(t);
    free(t);
}

int can_transport_send(struct can_transport *t, const struct can_frame_gw *frame, uint32_t timeout_ms)
{
    if (!t || !t->ops || !frame)
        return GW_ERR_INVAL;
    return t->ops->send(t, frame, timeout_ms);
}

int can_transport_recv(struct can_transport *t, struct can_frame_gw *frame, uint32_t timeout_ms)
{
    if (!t || !t->ops || !frame)
        return GW_ERR_INVAL;
    return t->ops->recv(t, frame, timeout_ms);
}

int can_transport_poll_fd(struct can_transport *t)
{
    return t && t->ops && t->ops->poll_fd && t->impl ? t->ops->poll_fd(t) : -1;
}

void can_transport_get_stats(struct can_transport *t, struct can_transport_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (t && t->ops && t->ops->stats)
        t->ops->stats(t, out);
}
