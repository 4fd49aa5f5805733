#include "gw_error.h"

const char *gw_strerror(int err)
{
    switch (err) {
    case GW_OK: return "ok";
    case GW_ERR_INVAL: return "invalid argument";
    case GW_ERR_TIMEOUT: return "timeout";
    case GW_ERR_CRC: return "CRC error";
    case GW_ERR_FULL: return "full";
    case GW_ERR_NOMEM: return "out of memory";
    case GW_ERR_IO: return "I/O error";
    case GW_ERR_NACK: return "negative acknowledge";
    case GW_ERR_RANGE: return "value out of range";
    case GW_ERR_NOT_FOUND: return "not found";
    case GW_ERR_PROTO: return "protocol error";
    case GW_ERR_STATE: return "wrong state";
    case GW_ERR_BUSY: return "busy";
    case GW_ERR_UNSUPPORTED: return "not supported";
    case GW_ERR_AUTH: return "authentication failed";
    case GW_ERR_TLS: return "TLS error";
    case GW_ERR_CLOSED: return "closed";
    case GW_ERR_STORAGE: return "storage error";
    case GW_ERR_OVERFLOW: return "buffer too small";
    default: return "unknown error";
    }
}
