/* Login limiter, credential cache, Basic header parsing and CSRF tokens (pure: no OS calls, the
 * time is an argument; OpenSSL only for HMAC and base64). */
#include "gw_error.h"
#include "web_internal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ limiter */

void web_auth_limiter_configure(struct web_auth_limiter *l, uint16_t max_attempts, uint64_t lockout_ms)
{
    l->max_attempts = max_attempts ? max_attempts : 1;
    l->lockout_ms = lockout_ms ? lockout_ms : 1;
}

void web_auth_limiter_init(struct web_auth_limiter *l, uint16_t max_attempts, uint64_t lockout_ms)
{
    memset(l, 0, sizeof *l);
    web_auth_limiter_configure(l, max_attempts, lockout_ms);
}

static struct web_auth_slot *find_slot(struct web_auth_limiter *l, const char *addr)
{
    for (size_t i = 0; i < WEB_AUTH_SLOTS; i++)
        if (l->slots[i].used && strncmp(l->slots[i].addr, addr, WEB_AUTH_ADDR_MAX) == 0)
            return &l->slots[i];
    return NULL;
}

static uint32_t seconds_left(uint64_t until_ms, uint64_t now_ms)
{
    uint64_t left = until_ms - now_ms;
    return (uint32_t)((left + 999) / 1000);
}

/* Forgets an address quiet for long and no longer locked (starts afresh). */
static void maybe_forget(struct web_auth_slot *s, uint64_t now_ms)
{
    if (s->used && s->locked_until_ms <= now_ms && now_ms - s->last_ms >= WEB_AUTH_FORGET_MS)
        memset(s, 0, sizeof *s);
}

uint32_t web_auth_limiter_check(struct web_auth_limiter *l, const char *addr, uint64_t now_ms)
{
    if (!l || !addr)
        return 0;
    struct web_auth_slot *s = find_slot(l, addr);
    if (!s)
        return 0;
    maybe_forget(s, now_ms);
    if (s->used && s->locked_until_ms > now_ms)
        return seconds_left(s->locked_until_ms, now_ms);
    return 0;
}

static struct web_auth_slot *take_slot(struct web_auth_limiter *l, uint64_t now_ms)
{
    struct web_auth_slot *free_slot = NULL, *lru = NULL, *soonest = NULL;
    for (size_t i = 0; i < WEB_AUTH_SLOTS; i++) {
        struct web_auth_slot *s = &l->slots[i];
        maybe_forget(s, now_ms);
        if (!s->used) {
            free_slot = s;
            break;
        }
        if (s->locked_until_ms <= now_ms) {
            if (!lru || s->last_ms < lru->last_ms)
                lru = s;
        } else if (!soonest || s->locked_until_ms < soonest->locked_until_ms) {
            soonest = s;
        }
    }
    struct web_auth_slot *s = free_slot ? free_slot : lru ? lru : soonest;
    memset(s, 0, sizeof *s);
    return s;
}

uint32_t web_auth_limiter_failed(struct web_auth_limiter *l, const char *addr, uint64_t now_ms)
{
    if (!l || !addr)
        return 0;
    l->failures_total++;
    struct web_auth_slot *s = find_slot(l, addr);
    if (s)
        maybe_forget(s, now_ms);
    if (!s || !s->used) {
        s = take_slot(l, now_ms);
        s->used = true;
        snprintf(s->addr, sizeof s->addr, "%s", addr);
    }
    s->last_ms = now_ms;
    if (s->locked_until_ms > now_ms)
        return 0; /* already locked (the caller should not have tried): no longer lockout */
    s->locked_until_ms = 0;
    if (++s->failures < l->max_attempts)
        return 0;
    /* Lockout n lasts lockout_ms * 2^(n-1), capped. */
    uint64_t ms = l->lockout_ms;
    for (unsigned i = 0; i < s->lockouts && ms < WEB_AUTH_LOCKOUT_MAX_MS; i++)
        ms *= 2;
    if (ms > WEB_AUTH_LOCKOUT_MAX_MS)
        ms = WEB_AUTH_LOCKOUT_MAX_MS;
    if (s->lockouts < UINT8_MAX)
        s->lockouts++;
    s->failures = 0;
    s->locked_until_ms = now_ms + ms;
    l->lockouts_total++;
    return seconds_left(s->locked_until_ms, now_ms);
}

void web_auth_limiter_succeeded(struct web_auth_limiter *l, const char *addr)
{
    if (!l || !addr)
        return;
    struct web_auth_slot *s = find_slot(l, addr);
    if (s)
        memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------ credential cache */

static void mac_of(const unsigned char key[32], const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    if (!HMAC(EVP_sha256(), key, 32, data, len, out, &n))
        memset(out, 0, 32); /* never matches a stored entry: stored ones come from a working HMAC */
}

void web_auth_cache_init(struct web_auth_cache *c, const unsigned char key[32])
{
    memset(c, 0, sizeof *c);
    memcpy(c->key, key, sizeof c->key);
}

bool web_auth_cache_lookup(const struct web_auth_cache *c, const char *credential, size_t len, uint64_t now_ms)
{
    if (!c || !credential)
        return false;
    unsigned char mac[32];
    mac_of(c->key, credential, len, mac);
    bool found = false;
    for (size_t i = 0; i < WEB_AUTH_CACHE_SLOTS; i++) {
        bool live = c->slots[i].used && c->slots[i].expires_ms > now_ms;
        /* Every slot is compared: the time does not depend on where (or whether) it matches. */
        bool eq = CRYPTO_memcmp(c->slots[i].mac, mac, sizeof mac) == 0;
        found |= live && eq;
    }
    return found;
}

void web_auth_cache_store(struct web_auth_cache *c, const char *credential, size_t len, uint64_t now_ms)
{
    if (!c || !credential)
        return;
    size_t pick = 0;
    for (size_t i = 0; i < WEB_AUTH_CACHE_SLOTS; i++) {
        if (!c->slots[i].used || c->slots[i].expires_ms <= now_ms) {
            pick = i;
            break;
        }
        if (c->slots[i].expires_ms < c->slots[pick].expires_ms)
            pick = i;
    }
    mac_of(c->key, credential, len, c->slots[pick].mac);
    c->slots[pick].used = true;
    c->slots[pick].expires_ms = now_ms + WEB_AUTH_CACHE_TTL_MS;
}

void web_auth_cache_clear(struct web_auth_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < WEB_AUTH_CACHE_SLOTS; i++) {
        OPENSSL_cleanse(c->slots[i].mac, sizeof c->slots[i].mac);
        c->slots[i].used = false;
        c->slots[i].expires_ms = 0;
    }
}

/* ------------------------------------------------------------------ Basic header */

int web_auth_parse_basic(const char *header, char *user, size_t ucap, char *pass, size_t pcap)
{
    if (!header || !user || !pass || ucap == 0 || pcap == 0)
        return GW_ERR_INVAL;
    user[0] = pass[0] = '\0';
    if (strncasecmp(header, "Basic ", 6) != 0)
        return GW_ERR_INVAL;
    const char *b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    size_t len = strlen(b64);
    while (len > 0 && b64[len - 1] == ' ')
        len--;
    /* user (31) + ':' + password (128): 160 bytes decoded at most, 216 base64 characters. */
    if (len == 0 || len % 4 != 0)
        return GW_ERR_INVAL;
    if (len > 4 * ((ucap + pcap + 2) / 3 + 1))
        return GW_ERR_OVERFLOW;
    unsigned char *raw = malloc(len / 4 * 3 + 1);
    if (!raw)
        return GW_ERR_NOMEM;
    for (size_t i = 0; i < len; i++) {
        char ch = b64[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' ||
                  ch == '/' || (ch == '=' && i >= len - 2);
        if (!ok) {
            free(raw);
            return GW_ERR_INVAL;
        }
    }
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
    if (n < 0) {
        free(raw);
        return GW_ERR_INVAL;
    }
    if (b64[len - 1] == '=')
        n--;
    if (b64[len - 2] == '=')
        n--;
    int rc = GW_ERR_INVAL;
    unsigned char *colon = memchr(raw, ':', (size_t)n);
    if (colon) {
        size_t ul = (size_t)(colon - raw), pl = (size_t)n - ul - 1;
        bool clean = true;
        for (int i = 0; i < n; i++)
            if (raw[i] < 0x20 || raw[i] == 0x7f)
                clean = false;
        if (!clean) {
            rc = GW_ERR_INVAL;
        } else if (ul >= ucap || pl >= pcap) {
            rc = GW_ERR_OVERFLOW;
        } else {
            memcpy(user, raw, ul);
            user[ul] = '\0';
            memcpy(pass, colon + 1, pl);
            pass[pl] = '\0';
            rc = GW_OK;
        }
    }
    OPENSSL_cleanse(raw, (size_t)n);
    free(raw);
    return rc;
}

/* ------------------------------------------------------------------ CSRF */

void web_csrf_init(struct web_csrf *c, const unsigned char key[32])
{
    memcpy(c->key, key, sizeof c->key);
}

/* HMAC(key, user NUL expiry-hex) as 64 hex digits into hex[65]. */
static void csrf_mac(const struct web_csrf *c, const char *user, const char *expiry_hex, char hex[65])
{
    char msg[160];
    size_t ul = strnlen(user, 64), el = strnlen(expiry_hex, 32);
    memcpy(msg, user, ul);
    msg[ul] = '\0';
    memcpy(msg + ul + 1, expiry_hex, el);
    unsigned char mac[32];
    mac_of(c->key, msg, ul + 1 + el, mac);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    OPENSSL_cleanse(mac, sizeof mac);
}

int web_csrf_issue(const struct web_csrf *c, const char *user, uint64_t now_ms, uint64_t ttl_ms, char *out,
                   size_t cap)
{
    if (!c || !user || !*user || !out)
        return GW_ERR_INVAL;
    char expiry[24], mac[65];
    snprintf(expiry, sizeof expiry, "%llx", (unsigned long long)(now_ms + ttl_ms));
    csrf_mac(c, user, expiry, mac);
    int n = snprintf(out, cap, "%s.%s", expiry, mac);
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return GW_ERR_OVERFLOW;
    }
    return GW_OK;
}

int web_csrf_check(const struct web_csrf *c, const char *user, const char *token, uint64_t now_ms)
{
    if (!c || !user || !token || !*token)
        return GW_ERR_INVAL;
    const char *dot = strchr(token, '.');
    if (!dot || dot == token || dot - token > 16 || strlen(dot + 1) != 64)
        return GW_ERR_INVAL;
    char expiry[24];
    memcpy(expiry, token, (size_t)(dot - token));
    expiry[dot - token] = '\0';
    for (const char *p = expiry; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return GW_ERR_INVAL;
    char mac[65];
    csrf_mac(c, user, expiry, mac);
    bool ok = CRYPTO_memcmp(mac, dot + 1, 64) == 0;
    if (!ok)
        return GW_ERR_AUTH;
    unsigned long long until = strtoull(expiry, NULL, 16);
    if (now_ms >= until)
        return GW_ERR_TIMEOUT;
    return GW_OK;
}
