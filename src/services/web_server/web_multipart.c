/* multipart/form-data read as it streams in (web_internal.h). The delimiter is CRLF "--"
 * boundary; a boundary holds no CR (RFC 2046's characters), so a partial match that fails can
 * only restart at the byte that broke it: the bytes held back are then data, and that byte is
 * tried again against the start of the delimiter. No allocation, no I/O. */
#include "gw_error.h"
#include "web_internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool bchar(char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return strchr("'()+_,-./:=? ", c) != NULL && c != '\0';
}

static bool valid_boundary(const char *b, size_t n)
{
    if (n == 0 || n > WEB_MP_BOUNDARY_MAX || b[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!bchar(b[i]))
            return false;
    return true;
}

int web_multipart_boundary(const char *content_type, char *out, size_t cap)
{
    if (out && cap)
        out[0] = '\0';
    if (!content_type || !out || !cap)
        return GW_ERR_INVAL;
    const char *p = content_type;
    while (*p == ' ' || *p == '\t')
        p++;
    static const char type[] = "multipart/form-data";
    if (strncasecmp(p, type, sizeof type - 1) != 0)
        return GW_ERR_INVAL;
    p += sizeof type - 1;
    if (*p && *p != ';' && *p != ' ' && *p != '\t')
        return GW_ERR_INVAL;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        const char *name = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        size_t nlen = (size_t)(p - name);
        while (nlen && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
            nlen--;
        if (*p != '=')
            continue;
        p++;
        const char *v;
        size_t vlen;
        if (*p == '"') {
            v = ++p;
            while (*p && *p != '"')
                p++;
            if (*p != '"')
                return GW_ERR_INVAL;
            vlen = (size_t)(p - v);
            p++;
        } else {
            v = p;
            while (*p && *p != ';' && *p != ' ' && *p != '\t')
                p++;
            vlen = (size_t)(p - v);
        }
        if (nlen == 8 && strncasecmp(name, "boundary", 8) == 0) {
            if (!valid_boundary(v, vlen))
                return GW_ERR_INVAL;
            if (vlen + 1 > cap)
                return GW_ERR_OVERFLOW;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return GW_OK;
        }
    }
    return GW_ERR_INVAL;
}

int web_multipart_init(struct web_multipart *mp, const char *boundary)
{
    if (!mp)
        return GW_ERR_INVAL;
    memset(mp, 0, sizeof *mp);
    mp->state = WEB_MP_FAILED;
    mp->error = GW_ERR_INVAL;
    size_t n = boundary ? strlen(boundary) : 0;
    if (!valid_boundary(boundary ? boundary : "", n))
        return GW_ERR_INVAL;
    memcpy(mp->delim, "\r\n--", 4);
    memcpy(mp->delim + 4, boundary, n + 1);
    mp->delim_len = 4 + n;
    /* The first boundary may open the body: as if a CRLF came before it. */
    mp->matched = 2;
    mp->state = WEB_MP_PREAMBLE;
    mp->error = GW_OK;
    return GW_OK;
}

static int fail(struct web_multipart *mp, int code, const char *why)
{
    if (why)
        snprintf(mp->reason, sizeof mp->reason, "%s (at byte %llu of the body)", why,
                 (unsigned long long)mp->bytes);
    mp->state = WEB_MP_FAILED;
    mp->error = code;
    return code;
}

/* The value of parameter `param` in a Content-Disposition value, into out[cap] (cut when
 * longer: *cut set). 1 found, 0 absent, -1 malformed. */
static int disposition_param(const char *v, size_t len, const char *param, char *out, size_t cap, bool *cut)
{
    size_t plen = strlen(param);
    size_t i = 0;
    *cut = false;
    out[0] = '\0';
    while (i < len) {
        while (i < len && (v[i] == ';' || v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t ns = i;
        while (i < len && v[i] != '=' && v[i] != ';')
            i++;
        size_t ne = i;
        while (ne > ns && (v[ne - 1] == ' ' || v[ne - 1] == '\t'))
            ne--;
        if (i >= len || v[i] != '=')
            continue;
        i++;
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t vs, ve;
        if (i < len && v[i] == '"') {
            vs = ++i;
            while (i < len && v[i] != '"') {
                if (v[i] == '\\' && i + 1 < len)
                    i++;
                i++;
            }
            if (i >= len)
                return -1; /* no closing quote */
            ve = i++;
        } else {
            vs = i;
            while (i < len && v[i] != ';' && v[i] != ' ' && v[i] != '\t')
                i++;
            ve = i;
        }
        if (ne - ns == plen && strncasecmp(v + ns, param, plen) == 0) {
            size_t o = 0;
            for (size_t k = vs; k < ve; k++) {
                if (v[k] == '\\' && k + 1 < ve)
                    k++;
                if (o + 1 >= cap) {
                    *cut = true;
                    break;
                }
                out[o++] = v[k];
            }
            out[o] = '\0';
            return 1;
        }
    }
    return 0;
}

/* The header block of a part (its final CRLF CRLF included) -> part_begin. */
static int part_headers(struct web_multipart *mp, const struct web_multipart_ops *ops, void *ctx)
{
    char name[WEB_MP_NAME_MAX], filename[WEB_MP_FILENAME_MAX];
    bool have = false;
    const char *h = mp->headers;
    size_t len = mp->headers_len - 4; /* the lines, without the CRLF CRLF that ends them */
    size_t i = 0;
    while (i < len) {
        const char *eol = memchr(h + i, '\r', len - i);
        size_t end = eol ? (size_t)(eol - h) : len;
        const char *line = h + i;
        size_t llen = end - i;
        i = end + 2;
        const char *colon = memchr(line, ':', llen);
        if (!colon)
            return fail(mp, GW_ERR_PROTO, "a part header line without ':'");
        size_t nlen = (size_t)(colon - line);
        if (nlen != 19 || strncasecmp(line, "Content-Disposition", 19) != 0)
            continue; /* Content-Type and others: not needed */
        const char *v = colon + 1;
        size_t vlen = llen - nlen - 1;
        while (vlen && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        if (vlen < 9 || strncasecmp(v, "form-data", 9) != 0 || (vlen > 9 && v[9] != ';' && v[9] != ' '))
            return fail(mp, GW_ERR_PROTO, "a part whose Content-Disposition is not form-data");
        bool cut = false;
        int r = disposition_param(v + 9, vlen - 9, "name", name, sizeof name, &cut);
        if (r < 0)
            return fail(mp, GW_ERR_PROTO, "a part's name without its closing quote");
        if (r == 0 || !name[0])
            return fail(mp, GW_ERR_PROTO, "a part without a name");
        if (cut)
            return fail(mp, GW_ERR_PROTO, "a part name longer than 31 bytes");
        if (disposition_param(v + 9, vlen - 9, "filename", filename, sizeof filename, &cut) < 0)
            return fail(mp, GW_ERR_PROTO, "a part's filename without its closing quote");
        have = true;
    }
    if (!have)
        return fail(mp, GW_ERR_PROTO, "a part without a Content-Disposition header");
    mp->state = WEB_MP_DATA;
    mp->matched = 0;
    if (ops && ops->part_begin) {
        int rc = ops->part_begin(ctx, name, filename);
        if (rc)
            return fail(mp, rc, NULL);
    }
    return GW_OK;
}

static int emit(struct web_multipart *mp, const struct web_multipart_ops *ops, void *ctx, const uint8_t *p,
                size_t n)
{
    if (mp->state != WEB_MP_DATA || n == 0 || !ops || !ops->part_data)
        return GW_OK;
    int rc = ops->part_data(ctx, p, n);
    return rc ? fail(mp, rc, NULL) : GW_OK;
}

int web_multipart_feed(struct web_multipart *mp, const void *buf, size_t len, const struct web_multipart_ops *ops,
                       void *ctx)
{
    if (!mp)
        return GW_ERR_INVAL;
    if (mp->state == WEB_MP_FAILED)
        return mp->error ? mp->error : GW_ERR_PROTO;
    if (!buf && len)
        return fail(mp, GW_ERR_INVAL, "no buffer");
    const uint8_t *b = buf;
    size_t i = 0;
    while (i < len) {
        int rc;
        switch (mp->state) {
        case WEB_MP_PREAMBLE:
        case WEB_MP_DATA: {
            uint8_t c = b[i];
            if (c == (uint8_t)mp->delim[mp->matched]) {
                mp->matched++;
                i++;
                mp->bytes++;
                if (mp->matched == mp->delim_len) {
                    if (mp->state == WEB_MP_DATA && ops && ops->part_end && (rc = ops->part_end(ctx)) != 0)
                        return fail(mp, rc, NULL);
                    mp->state = WEB_MP_AFTER_DELIM;
                    mp->matched = 0;
                    mp->after_len = 0;
                }
                break;
            }
            if (mp->matched) {
                /* The held bytes were data after all (none in the preamble's virtual CRLF). */
                bool virtual_crlf = mp->state == WEB_MP_PREAMBLE;
                size_t held = mp->matched;
                mp->matched = 0;
                if (!virtual_crlf && (rc = emit(mp, ops, ctx, (const uint8_t *)mp->delim, held)) != 0)
                    return rc;
                break; /* c again, against the delimiter's first byte */
            }
            const uint8_t *cr = memchr(b + i, '\r', len - i);
            size_t run = cr ? (size_t)(cr - (b + i)) : len - i;
            if ((rc = emit(mp, ops, ctx, b + i, run)) != 0)
                return rc;
            i += run;
            mp->bytes += run;
            break;
        }
        case WEB_MP_AFTER_DELIM: {
            char c = (char)b[i++];
            mp->bytes++;
            if (mp->after_len == 0 && (c == ' ' || c == '\t'))
                break; /* transport padding */
            mp->after[mp->after_len++] = c;
            if (mp->after_len < 2)
                break;
            if (mp->after[0] == '-' && mp->after[1] == '-') {
                mp->state = WEB_MP_DONE;
            } else if (mp->after[0] == '\r' && mp->after[1] == '\n') {
                if (++mp->parts > WEB_MP_PARTS_MAX)
                    return fail(mp, GW_ERR_PROTO, "more than 16 parts");
                mp->state = WEB_MP_HEADERS;
                mp->headers_len = 0;
            } else {
                return fail(mp, GW_ERR_PROTO, "a boundary not followed by CRLF or '--'");
            }
            break;
        }
        case WEB_MP_HEADERS: {
            if (mp->headers_len == WEB_MP_HEADERS_MAX)
                return fail(mp, GW_ERR_PROTO, "a part's headers longer than 2048 bytes");
            mp->headers[mp->headers_len++] = (char)b[i++];
            mp->bytes++;
            mp->headers[mp->headers_len] = '\0';
            size_t n = mp->headers_len;
            if (n == 2 && mp->headers[0] == '\r' && mp->headers[1] == '\n')
                return fail(mp, GW_ERR_PROTO, "a part without headers");
            if (n >= 4 && memcmp(mp->headers + n - 4, "\r\n\r\n", 4) == 0 && (rc = part_headers(mp, ops, ctx)) != 0)
                return rc;
            break;
        }
        case WEB_MP_DONE:
            mp->bytes += len - i; /* the epilogue */
            i = len;
            break;
        case WEB_MP_FAILED:
        default:
            return mp->error ? mp->error : GW_ERR_PROTO;
        }
    }
    return GW_OK;
}

int web_multipart_finish(struct web_multipart *mp)
{
    if (!mp)
        return GW_ERR_INVAL;
    switch (mp->state) {
    case WEB_MP_DONE:
        return GW_OK;
    case WEB_MP_FAILED:
        return mp->error ? mp->error : GW_ERR_PROTO;
    case WEB_MP_PREAMBLE:
        return fail(mp, GW_ERR_PROTO, "the body ended before its first boundary");
    case WEB_MP_HEADERS:
        return fail(mp, GW_ERR_PROTO, "the body ended inside a part's headers");
    default:
        return fail(mp, GW_ERR_PROTO, "the body ended inside a part (no closing boundary)");
    }
}
