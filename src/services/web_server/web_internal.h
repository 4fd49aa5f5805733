/* Private to web_server: the pure parts (login limiter, credential cache, CSRF tokens, URL path
 * sanitising, MIME types), unit-tested without a server (tests/unit/test_web_*.c). No OS calls,
 * no threads, no clock: every function takes the time (gw_now_ms()) as an argument; callers hold
 * their own lock. */
#ifndef WEB_INTERNAL_H
#define WEB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * Login limiter: failed logins per client address. max_attempts failures lock the address out for
 * lockout_ms, doubled on each further lockout (capped at WEB_AUTH_LOCKOUT_MAX_MS); a success
 * resets the address. One attacker's address never locks out another address.
 * ------------------------------------------------------------------------------------------- */

#define WEB_AUTH_ADDR_MAX 48                 /* as CivetWeb's remote_addr */
#define WEB_AUTH_SLOTS 256                   /* addresses tracked at once */
#define WEB_AUTH_LOCKOUT_MAX_MS (24ull * 3600 * 1000)
#define WEB_AUTH_FORGET_MS (24ull * 3600 * 1000) /* quiet this long: the address starts afresh */

struct web_auth_slot {
    bool used;
    char addr[WEB_AUTH_ADDR_MAX];
    uint16_t failures;            /* since the last lockout or success */
    uint8_t lockouts;             /* in a row (doubling) */
    uint64_t locked_until_ms;     /* 0: not locked */
    uint64_t last_ms;             /* last failure (eviction, forgetting) */
};

struct web_auth_limiter {
    uint16_t max_attempts;
    uint64_t lockout_ms;
    uint64_t failures_total, lockouts_total;
    struct web_auth_slot slots[WEB_AUTH_SLOTS];
};

/* max_attempts >= 1, lockout_ms >= 1 (clamped). */
void web_auth_limiter_init(struct web_auth_limiter *l, uint16_t max_attempts, uint64_t lockout_ms);

/* New settings; addresses already tracked keep their state. */
void web_auth_limiter_configure(struct web_auth_limiter *l, uint16_t max_attempts, uint64_t lockout_ms);

/* 0 when addr may try a login now, else the seconds left of its lockout (>= 1: Retry-After). */
uint32_t web_auth_limiter_check(struct web_auth_limiter *l, const char *addr, uint64_t now_ms);

/* Counts a failed login of addr. Returns the lockout seconds when this failure starts a lockout,
 * else 0. When the table is full the least recently failing unlocked address is forgotten (a
 * locked one only when every slot is locked: the one whose lockout ends first). */
uint32_t web_auth_limiter_failed(struct web_auth_limiter *l, const char *addr, uint64_t now_ms);

/* A successful login of addr: its failures and lockout count are forgotten. */
void web_auth_limiter_succeeded(struct web_auth_limiter *l, const char *addr);

/* ---------------------------------------------------------------------------------------------
 * Credential cache: PBKDF2 takes ~50-100 ms of CPU on purpose, far too much for every request of
 * a browser that sends Basic credentials each time. A verified Authorization value is remembered
 * as HMAC-SHA256(key, value) (never the value itself) until it expires or the password changes
 * (web_auth_cache_clear).
 * ------------------------------------------------------------------------------------------- */

#define WEB_AUTH_CACHE_SLOTS 16
#define WEB_AUTH_CACHE_TTL_MS (15ull * 60 * 1000)

struct web_auth_cache {
    unsigned char key[32];
    struct {
        bool used;
        unsigned char mac[32];
        uint64_t expires_ms;
    } slots[WEB_AUTH_CACHE_SLOTS];
};

/* key: 32 random bytes (copied). */
void web_auth_cache_init(struct web_auth_cache *c, const unsigned char key[32]);
/* True when credential[0..len) was stored and has not expired (constant-time compare). */
bool web_auth_cache_lookup(const struct web_auth_cache *c, const char *credential, size_t len, uint64_t now_ms);
/* Remembers a verified credential for WEB_AUTH_CACHE_TTL_MS (the oldest entry makes room). */
void web_auth_cache_store(struct web_auth_cache *c, const char *credential, size_t len, uint64_t now_ms);
/* Forgets every entry (password or user name changed). */
void web_auth_cache_clear(struct web_auth_cache *c);

/* Decodes an "Authorization: Basic <base64(user:password)>" value into user[ucap] and
 * pass[pcap] (NUL-terminated). @retval GW_OK, GW_ERR_INVAL (not Basic, bad base64, no ':',
 * control characters), GW_ERR_OVERFLOW (longer than the buffers) */
int web_auth_parse_basic(const char *header, char *user, size_t ucap, char *pass, size_t pcap);

/* ---------------------------------------------------------------------------------------------
 * CSRF tokens: "<expiry ms, hex>.<HMAC-SHA256(key, user NUL expiry) hex>", bound to the user,
 * valid until expiry (gw_now_ms() clock). The key is random per process start: a restart
 * invalidates every token.
 * ------------------------------------------------------------------------------------------- */

#define WEB_CSRF_TOKEN_MAX 96

struct web_csrf {
    unsigned char key[32];
};

void web_csrf_init(struct web_csrf *c, const unsigned char key[32]);

/* Writes a token for user valid ttl_ms from now_ms into out[cap] (cap >= WEB_CSRF_TOKEN_MAX).
 * @retval GW_OK, GW_ERR_INVAL (NULL, empty user), GW_ERR_OVERFLOW */
int web_csrf_issue(const struct web_csrf *c, const char *user, uint64_t now_ms, uint64_t ttl_ms, char *out,
                   size_t cap);

/* @retval GW_OK          valid for user
 * @retval GW_ERR_INVAL   missing (NULL/empty) or malformed
 * @retval GW_ERR_TIMEOUT expired
 * @retval GW_ERR_AUTH    not made by this gateway for this user (foreign, forged, other user) */
int web_csrf_check(const struct web_csrf *c, const char *user, const char *token, uint64_t now_ms);

/* ---------------------------------------------------------------------------------------------
 * Static files.
 * ------------------------------------------------------------------------------------------- */

/* Maps a URL path (already percent-decoded once by the server) to a file path relative to the UI
 * folder: "/" -> "index.html", "/css/app.css" -> "css/app.css". Refused (GW_ERR_INVAL): not
 * starting with '/', any "." or ".." segment, hidden names (a segment starting with '.'), a
 * trailing '/' other than the root (no listing), empty segments, any byte outside
 * [A-Za-z0-9._~/-] (so '%' of a double-encoded "..", '\\', ':' and control bytes never reach
 * the file system). GW_ERR_OVERFLOW when out[cap] is too small. */
int web_path_resolve(const char *url_path, char *out, size_t cap);

/* MIME type by file extension (case-insensitive), "application/octet-stream" when unknown.
 * Text types carry "; charset=utf-8". Static string. */
const char *web_mime_type(const char *path);

/* ---------------------------------------------------------------------------------------------
 * Small parsers shared by the API.
 * ------------------------------------------------------------------------------------------- */

/* True when an Origin header value ("http://host:port") names the same host[:port] as the Host
 * header (case-insensitive host). NULL origin (not a browser) is accepted by the caller, not
 * here: both must be non-NULL. */
bool web_origin_matches_host(const char *origin, const char *host);

/* Content-Type is application/json (parameters such as charset allowed). */
bool web_is_json_content_type(const char *content_type);

/* ---------------------------------------------------------------------------------------------
 * TinyBMS settings a web user asks to write (web_settings.c), over the codec's register table.
 * ------------------------------------------------------------------------------------------- */

struct bms_settings;
struct tinybms_setting_info;

#define WEB_SETTING_REASON_MAX 192

/* The value shown for a raw word of the register (signed for the signed registers). */
int32_t web_setting_value(const struct tinybms_setting_info *info, uint16_t raw);

/* The BMS's own min/max of the register (0x1D), as values; false when not read. */
bool web_setting_bms_range(const struct tinybms_setting_info *info, const struct bms_settings *bms_min,
                           const struct bms_settings *bms_max, int32_t *lo, int32_t *hi);

/* "an integer in 1200..4500 mV (this BMS: 2000..4500)", "one of 0, 2..10", ... into out[cap]. */
void web_setting_describe_range(const struct tinybms_setting_info *info, const struct bms_settings *bms_min,
                                const struct bms_settings *bms_max, char *out, size_t cap);

/* Checks value (as a user gives it: negative only for the signed registers) for reg. Both the
 * documented structure and range (tinybms_setting_info) and, when bms_min/bms_max are valid, the
 * BMS's own min/max must accept it. The u32 pair 312/313 is checked whole, from proposed (the
 * settings as they will be: current values with the request's other values; NULL refuses a pair
 * word). On GW_OK *raw is the word to write; otherwise reason[cap] (may be NULL) says the range
 * and the value given. @retval GW_OK, GW_ERR_NOT_FOUND (no such setting), GW_ERR_RANGE */
int web_setting_check(uint16_t reg, int64_t value, const struct bms_settings *proposed,
                      const struct bms_settings *bms_min, const struct bms_settings *bms_max, uint16_t *raw,
                      char *reason, size_t cap);

/* Writing the pair one register at a time passes through an intermediate value: 0 = write 312
 * (low) first, 1 = 313 (high) first, -1 = neither intermediate is valid (refuse the change). */
int web_setting_pair_order(uint16_t cur_lo, uint16_t cur_hi, uint16_t new_lo, uint16_t new_hi,
                           const struct bms_settings *bms_min, const struct bms_settings *bms_max);

/* ---------------------------------------------------------------------------------------------
 * multipart/form-data (RFC 7578) read as it streams in (web_multipart.c): the body arrives in
 * chunks of any size, split anywhere (inside a boundary too); each part's bytes go to a callback
 * as they come, nothing is buffered but the part headers (at most WEB_MP_HEADERS_MAX bytes) and
 * a partial boundary. Only what a browser's FormData sends is understood: a
 * Content-Disposition of form-data with a name (and maybe a filename) per part; a preamble
 * before the first boundary and an epilogue after the last one are skipped.
 * ------------------------------------------------------------------------------------------- */

#define WEB_MP_BOUNDARY_MAX 70     /* RFC 2046 */
#define WEB_MP_HEADERS_MAX 2048    /* one part's header block */
#define WEB_MP_NAME_MAX 32         /* a part's name: longer is refused */
#define WEB_MP_FILENAME_MAX 128    /* a part's filename: longer is cut (it is only logged) */
#define WEB_MP_PARTS_MAX 16
#define WEB_MP_REASON_MAX 160

struct web_multipart_ops {
    /* A part starts: its name and filename ("" when none). Non-zero stops the parse with it. */
    int (*part_begin)(void *ctx, const char *name, const char *filename);
    /* Bytes of the current part (len >= 1), in order. */
    int (*part_data)(void *ctx, const uint8_t *data, size_t len);
    /* The current part ended (its closing delimiter was read). */
    int (*part_end)(void *ctx);
};

enum web_mp_state { WEB_MP_PREAMBLE, WEB_MP_AFTER_DELIM, WEB_MP_HEADERS, WEB_MP_DATA, WEB_MP_DONE, WEB_MP_FAILED };

struct web_multipart {
    char delim[4 + WEB_MP_BOUNDARY_MAX + 1]; /* "\r\n--" boundary */
    size_t delim_len;
    size_t matched;                          /* bytes of delim matched so far */
    enum web_mp_state state;
    char after[2];                           /* the two bytes after a delimiter ("--" or CRLF) */
    size_t after_len;
    char headers[WEB_MP_HEADERS_MAX + 1];
    size_t headers_len;
    unsigned parts;
    uint64_t bytes;                          /* body bytes fed */
    int error;                               /* the code that stopped it (WEB_MP_FAILED) */
    char reason[WEB_MP_REASON_MAX];          /* why it failed (GW_ERR_PROTO) */
};

/* The boundary parameter of a Content-Type "multipart/form-data; boundary=..." (quoted or not)
 * into out[cap]. @retval GW_OK, GW_ERR_INVAL (not multipart/form-data, no boundary, a boundary of
 * characters RFC 2046 does not allow or longer than 70), GW_ERR_OVERFLOW (cap too small) */
int web_multipart_boundary(const char *content_type, char *out, size_t cap);

/* Prepares mp for a body with this boundary (as web_multipart_boundary gives it).
 * @retval GW_OK, GW_ERR_INVAL (NULL, empty or too long) */
int web_multipart_init(struct web_multipart *mp, const char *boundary);

/* Feeds the next len bytes of the body. Callbacks run from this call. Returns GW_OK, a
 * callback's non-zero value (the parse stops there), or GW_ERR_PROTO for a body that is not
 * multipart/form-data as announced (mp->reason says where and why). After an error every call
 * returns GW_ERR_PROTO or the same code. */
int web_multipart_feed(struct web_multipart *mp, const void *buf, size_t len, const struct web_multipart_ops *ops,
                       void *ctx);

/* The body ended: GW_OK when the closing boundary was read, else GW_ERR_PROTO (mp->reason). */
int web_multipart_finish(struct web_multipart *mp);

#endif
