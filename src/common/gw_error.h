/* Project-wide error codes (portable: no OS calls).
 * Every public function returns GW_OK (0) or one of these negative codes; library codes
 * (libmosquitto, SQLite, OpenSSL, errno) are translated at the module boundary. */
#ifndef GW_ERROR_H
#define GW_ERROR_H

enum gw_err {
    GW_OK = 0,
    GW_ERR_INVAL = -1,       /* invalid argument or malformed input */
    GW_ERR_TIMEOUT = -2,     /* no answer before the deadline */
    GW_ERR_CRC = -3,         /* checksum mismatch */
    GW_ERR_FULL = -4,        /* bounded queue/table full */
    GW_ERR_NOMEM = -5,       /* allocation failed */
    GW_ERR_IO = -6,          /* OS read/write/open failed (see log for errno) */
    GW_ERR_NACK = -7,        /* the peer answered with a negative acknowledge */
    GW_ERR_RANGE = -8,       /* value outside its documented range */
    GW_ERR_NOT_FOUND = -9,   /* no such item */
    GW_ERR_PROTO = -10,      /* protocol violation (bad length, unexpected command) */
    GW_ERR_STATE = -11,      /* operation not allowed in the current state */
    GW_ERR_BUSY = -12,       /* try again later (guard, rate limit) */
    GW_ERR_UNSUPPORTED = -13,/* not supported by this build, device or firmware */
    GW_ERR_AUTH = -14,       /* authentication or authorisation failure */
    GW_ERR_TLS = -15,        /* TLS set-up or verification failure */
    GW_ERR_CLOSED = -16,     /* peer or device went away */
    GW_ERR_STORAGE = -17,    /* persistent storage failure (disk full, read-only, corrupt) */
    GW_ERR_OVERFLOW = -18,   /* output buffer too small */
};

/* Human-readable, static string for a gw_err code (never NULL). */
const char *gw_strerror(int err);

#endif
