/* The bounded text builder and copy (gw_text.h). Portable: string.h only. */
#include "gw_text.h"

#include "gw_error.h"

#include <string.h>

/* A UTF-8 continuation byte (10xxxxxx). */
static bool utf8_continuation(char c) { return ((unsigned char)c & 0xC0u) == 0x80u; }

/* Appends n bytes of s, or what fits: then the cut is moved back to the start of a UTF-8
 * sequence it would split (at most 3 bytes: a longer run is not UTF-8 anyway) and the
 * builder is marked truncated. */
static void put_bytes(struct gw_text *t, const char *s, size_t n)
{
    if (t->truncated)
        return;
    size_t room = t->cap - 1 - t->len;
    if (n > room) {
        size_t k = room;
        while (k > 0 && room - k < 3 && utf8_continuation(s[k]))
            k--;
        n = k;
        t->truncated = true;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

void gw_text_init(struct gw_text *t, char *buf, size_t cap)
{
    if (!t)
        return;
    t->buf = buf;
    t->cap = buf ? cap : 0;
    t->len = 0;
    t->truncated = t->cap == 0; /* nothing can ever be written */
    if (t->cap)
        buf[0] = '\0';
}

void gw_text_put_str(struct gw_text *t, const char *s)
{
    if (t && s)
        put_bytes(t, s, strlen(s));
}

void gw_text_put_strn(struct gw_text *t, const char *s, size_t n)
{
    if (!t || !s)
        return;
    const char *nul = memchr(s, '\0', n);
    put_bytes(t, s, nul ? (size_t)(nul - s) : n);
}

void gw_text_put_char(struct gw_text *t, char c)
{
    if (t && c)
        put_bytes(t, &c, 1);
}

/* Writes the digits of v (base 10 or 16), at least min_digits, at the end of tmp[0..24);
 * returns the first digit. */
static char *digits(uint64_t v, unsigned base, unsigned min_digits, char tmp[24])
{
    static const char hex[] = "0123456789ABCDEF";
    char *p = tmp + 24;
    unsigned n = 0;
    do {
        *--p = hex[v % base];
        v /= base;
        n++;
    } while (v && n < 23);
    while (n < min_digits && n < 23) {
        *--p = '0';
        n++;
    }
    return p;
}

void gw_text_put_uint(struct gw_text *t, uint64_t v)
{
    if (!t)
        return;
    char tmp[24];
    const char *p = digits(v, 10, 1, tmp);
    put_bytes(t, p, (size_t)(tmp + sizeof tmp - p));
}

void gw_text_put_int(struct gw_text *t, int64_t v)
{
    if (!t)
        return;
    char tmp[25];
    uint64_t mag = v < 0 ? (uint64_t)(-(v + 1)) + 1u : (uint64_t)v;
    char *p = digits(mag, 10, 1, tmp + 1); /* at most 20 digits: tmp[0..4] stay free */
    if (v < 0)
        *--p = '-';
    put_bytes(t, p, (size_t)(tmp + sizeof tmp - p));
}

void gw_text_put_hex(struct gw_text *t, uint64_t v, unsigned min_digits)
{
    if (!t)
        return;
    char tmp[24];
    const char *p = digits(v, 16, min_digits > 16 ? 16 : min_digits, tmp);
    put_bytes(t, p, (size_t)(tmp + sizeof tmp - p));
}

void gw_text_put_fixed(struct gw_text *t, double value, unsigned decimals)
{
    static const uint64_t scales[10] = { 1u,      10u,      100u,      1000u,      10000u,
                                         100000u, 1000000u, 10000000u, 100000000u, 1000000000u };
    if (!t)
        return;
    if (decimals > 9)
        decimals = 9;
    if (value != value) {
        gw_text_put_str(t, "nan");
        return;
    }
    bool negative = value < 0.0;
    double mag = negative ? -value : value;
    if (mag >= 1e18) { /* infinite, or beyond what 64 bits hold in whole units */
        gw_text_put_str(t, negative ? "-inf" : "inf");
        return;
    }
    /* Whole part and fraction apart: mag - whole is exact, so the rounding sees the binary
     * value itself (no error from scaling a large number). */
    uint64_t whole = (uint64_t)mag;
    uint64_t scale = scales[decimals];
    uint64_t frac = (uint64_t)((mag - (double)whole) * (double)scale + 0.5);
    if (frac >= scale) {
        whole++;
        frac -= scale;
    }
    char out[48];
    size_t n = 0;
    if (negative && (whole || frac))
        out[n++] = '-'; /* a value that rounds to zero has no sign */
    char tmp[24];
    const char *p = digits(whole, 10, 1, tmp);
    size_t k = (size_t)(tmp + sizeof tmp - p);
    memcpy(out + n, p, k);
    n += k;
    if (decimals) {
        out[n++] = '.';
        p = digits(frac, 10, decimals, tmp);
        k = (size_t)(tmp + sizeof tmp - p);
        memcpy(out + n, p, k);
        n += k;
    }
    put_bytes(t, out, n);
}

const char *gw_text_str(const struct gw_text *t)
{
    return t && t->cap ? t->buf : "";
}

size_t gw_text_len(const struct gw_text *t)
{
    return t ? t->len : 0;
}

bool gw_text_truncated(const struct gw_text *t)
{
    return !t || t->truncated;
}

int gw_text_status(const struct gw_text *t)
{
    if (!t || t->cap == 0)
        return GW_ERR_INVAL;
    return t->truncated ? GW_ERR_OVERFLOW : GW_OK;
}

int gw_text_copy(char *dst, size_t cap, const char *src)
{
    struct gw_text t;
    gw_text_init(&t, dst, cap);
    gw_text_put_str(&t, src);
    return gw_text_status(&t);
}

int gw_text_copyn(char *dst, size_t cap, const char *src, size_t src_max)
{
    struct gw_text t;
    gw_text_init(&t, dst, cap);
    gw_text_put_strn(&t, src, src_max);
    return gw_text_status(&t);
}
