/* Fuzz target: the multipart/form-data reader every POST /api/ota/upload goes through
 * (web_multipart.c: web_multipart_boundary on the Content-Type, then web_multipart_feed over the
 * body as it streams in, web_multipart_finish at its end). The input is the Content-Type value up
 * to the first '\n', then the body. The body is fed three ways: whole, byte by byte, and in
 * chunks whose sizes the body's own bytes choose (mg_read hands it over in pieces of any size).
 * Invariants: the three give the same result, the same parts and the same bytes; a refusal has a
 * reason naming where it happened; after a refusal every call answers the same code; a part's
 * name is 1..31 bytes, its filename shorter than WEB_MP_FILENAME_MAX; no part's data holds the
 * delimiter; begin/end calls pair up; an accepted body, written again from its parts with the
 * same boundary, reads back to the same parts; a callback's stop code is what the feed returns.
 * Corpus: tests/fuzz/corpus/multipart (bodies as browsers' FormData and curl -F send them, the
 * unit tests' cases, a few refused ones). */
#include "fuzz_support.h"
#include "gw_error.h"
#include "web_internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define REC_MAX (256u * 1024u)
#define PARTS_MAX (WEB_MP_PARTS_MAX + 1)

/* What the callbacks saw. */
struct rec {
    unsigned begins, ends, data_calls;
    char names[PARTS_MAX][WEB_MP_NAME_MAX];
    char filenames[PARTS_MAX][WEB_MP_FILENAME_MAX];
    size_t data_len[PARTS_MAX];
    size_t used;
    bool open;               /* between a begin and its end */
    unsigned stop_at_begin;  /* answer GW_ERR_AUTH at this begin (0: never) */
    uint8_t data[REC_MAX];   /* every part's bytes, one after the other (last: not cleared) */
};

static struct rec recs[4];
static uint8_t again[REC_MAX + 64 * 1024];

static int on_begin(void *ctx, const char *name, const char *filename)
{
    struct rec *r = ctx;
    FUZZ_ASSERT(!r->open);
    FUZZ_ASSERT(r->begins < WEB_MP_PARTS_MAX);
    size_t nl = strlen(name), fl = strlen(filename);
    FUZZ_ASSERT(nl >= 1 && nl < WEB_MP_NAME_MAX);
    FUZZ_ASSERT(fl < WEB_MP_FILENAME_MAX);
    unsigned k = r->begins++;
    memcpy(r->names[k], name, nl + 1);
    memcpy(r->filenames[k], filename, fl + 1);
    r->data_len[k] = 0;
    r->open = true;
    if (r->stop_at_begin && r->begins == r->stop_at_begin)
        return GW_ERR_AUTH;
    return GW_OK;
}

static int on_data(void *ctx, const uint8_t *data, size_t len)
{
    struct rec *r = ctx;
    FUZZ_ASSERT(r->open && r->begins >= 1);
    FUZZ_ASSERT(len >= 1);
    FUZZ_ASSERT(r->used + len <= REC_MAX); /* never more than the body */
    memcpy(r->data + r->used, data, len);
    r->used += len;
    r->data_len[r->begins - 1] += len;
    r->data_calls++;
    return GW_OK;
}

static int on_end(void *ctx)
{
    struct rec *r = ctx;
    FUZZ_ASSERT(r->open);
    r->open = false;
    r->ends++;
    return GW_OK;
}

static const struct web_multipart_ops ops = { on_begin, on_data, on_end };

/* Feeds body in the given way (0 whole, 1 byte by byte, 2 chunks sized by the body's bytes) and
 * finishes; returns the first non-zero code. */
static int run(struct web_multipart *mp, const char *boundary, const uint8_t *body, size_t len, int way,
               struct rec *r)
{
    FUZZ_ASSERT(web_multipart_init(mp, boundary) == GW_OK);
    int rc = GW_OK;
    size_t i = 0;
    while (i < len && !rc) {
        size_t n = len - i;
        if (way == 1)
            n = 1;
        else if (way == 2 && n > 1)
            n = 1 + (body[i] * 7u + (unsigned)i) % (n < 600 ? n : 600);
        rc = web_multipart_feed(mp, body + i, n, &ops, r);
        i += n;
    }
    if (rc) {
        /* Stopped: every later call answers the same. */
        FUZZ_ASSERT(mp->state == WEB_MP_FAILED);
        FUZZ_ASSERT(web_multipart_feed(mp, "x", 1, &ops, r) == rc);
        FUZZ_ASSERT(web_multipart_finish(mp) == rc);
        return rc;
    }
    FUZZ_ASSERT(mp->bytes == len);
    return web_multipart_finish(mp);
}

static bool contains(const uint8_t *h, size_t hn, const char *needle, size_t nn)
{
    if (nn == 0 || hn < nn)
        return false;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == (uint8_t)needle[0] && memcmp(h + i, needle, nn) == 0)
            return true;
    return false;
}

static bool same_parts(const struct rec *a, const struct rec *b)
{
    if (a->begins != b->begins || a->ends != b->ends || a->used != b->used)
        return false;
    for (unsigned k = 0; k < a->begins; k++)
        if (strcmp(a->names[k], b->names[k]) != 0 || strcmp(a->filenames[k], b->filenames[k]) != 0 ||
            a->data_len[k] != b->data_len[k])
            return false;
    return memcmp(a->data, b->data, a->used) == 0;
}

/* The parts of r written again as a FormData body with boundary; 0 when it does not fit (or a
 * name or filename holds a quote or a backslash, which would need escaping). */
static size_t rewrite(const struct rec *r, const char *boundary, uint8_t *out, size_t cap)
{
    size_t o = 0, at = 0;
    for (unsigned k = 0; k < r->begins; k++) {
        if (strpbrk(r->names[k], "\"\\\r\n") || strpbrk(r->filenames[k], "\"\\\r\n"))
            return 0;
        char head[WEB_MP_BOUNDARY_MAX + WEB_MP_NAME_MAX + WEB_MP_FILENAME_MAX + 128];
        int n = snprintf(head, sizeof head, "--%s\r\nContent-Disposition: form-data; name=\"%s\"%s%s%s\r\n\r\n",
                         boundary, r->names[k], r->filenames[k][0] ? "; filename=\"" : "", r->filenames[k],
                         r->filenames[k][0] ? "\"" : "");
        FUZZ_ASSERT(n > 0 && (size_t)n < sizeof head);
        if (o + (size_t)n + r->data_len[k] + 2 > cap)
            return 0;
        memcpy(out + o, head, (size_t)n);
        o += (size_t)n;
        memcpy(out + o, r->data + at, r->data_len[k]);
        o += r->data_len[k];
        at += r->data_len[k];
        memcpy(out + o, "\r\n", 2);
        o += 2;
    }
    int n = snprintf((char *)out + o, cap - o, "--%s--\r\n", boundary);
    if (n < 0 || (size_t)n >= cap - o)
        return 0;
    return o + (size_t)n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > REC_MAX)
        return 0;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t ct_len = nl ? (size_t)(nl - data) : size;
    char *ctype = fuzz_strndup(data, ct_len);
    const uint8_t *body = nl ? nl + 1 : data + size;
    size_t len = nl ? size - ct_len - 1 : 0;

    char boundary[WEB_MP_BOUNDARY_MAX + 1];
    int brc = web_multipart_boundary(ctype, boundary, sizeof boundary);
    FUZZ_ASSERT(brc == GW_OK || brc == GW_ERR_INVAL || brc == GW_ERR_OVERFLOW);
    if (brc != GW_OK) {
        FUZZ_ASSERT(boundary[0] == '\0');
        free(ctype);
        return 0;
    }
    size_t blen = strlen(boundary);
    FUZZ_ASSERT(blen >= 1 && blen <= WEB_MP_BOUNDARY_MAX && !strpbrk(boundary, "\r\n\""));
    free(ctype);

    static struct web_multipart mp[3];
    int rc[3];
    for (int way = 0; way < 3; way++) {
        memset(&recs[way], 0, offsetof(struct rec, data));
        rc[way] = run(&mp[way], boundary, body, len, way, &recs[way]);
        FUZZ_ASSERT(rc[way] == GW_OK || rc[way] == GW_ERR_PROTO);
        if (rc[way] == GW_ERR_PROTO) {
            FUZZ_ASSERT(mp[way].reason[0] != '\0' && strstr(mp[way].reason, "at byte") != NULL);
            FUZZ_ASSERT(strlen(mp[way].reason) < WEB_MP_REASON_MAX);
        }
    }
    /* However it is split, the same answer and the same parts; a refusal at the same byte. */
    for (int way = 1; way < 3; way++) {
        FUZZ_ASSERT(rc[way] == rc[0]);
        FUZZ_ASSERT(same_parts(&recs[way], &recs[0]));
        if (rc[0] == GW_ERR_PROTO)
            FUZZ_ASSERT(strcmp(mp[way].reason, mp[0].reason) == 0);
    }

    const struct rec *r = &recs[0];
    char delim[4 + WEB_MP_BOUNDARY_MAX + 1];
    snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    size_t at = 0;
    for (unsigned k = 0; k < r->begins; k++) {
        FUZZ_ASSERT(!contains(r->data + at, r->data_len[k], delim, strlen(delim)));
        at += r->data_len[k];
    }
    FUZZ_ASSERT(r->used <= len);
    if (rc[0] == GW_OK) {
        FUZZ_ASSERT(r->begins == r->ends && !r->open);
        FUZZ_ASSERT(mp[0].parts == r->begins);
        /* Written again from its parts, it reads back the same. */
        size_t n = rewrite(r, boundary, again, sizeof again);
        if (n) {
            struct rec *r2 = &recs[3];
            memset(r2, 0, offsetof(struct rec, data));
            FUZZ_ASSERT(run(&mp[1], boundary, again, n, 2, r2) == GW_OK);
            FUZZ_ASSERT(same_parts(r2, r));
        }
    } else {
        FUZZ_ASSERT(r->ends <= r->begins && r->begins <= r->ends + 1);
    }

    /* A callback that stops at the first part: the feed returns its code and reads no further. */
    if (r->begins >= 1) {
        struct rec *r2 = &recs[3];
        memset(r2, 0, offsetof(struct rec, data));
        r2->stop_at_begin = 1;
        FUZZ_ASSERT(run(&mp[1], boundary, body, len, 0, r2) == GW_ERR_AUTH);
        FUZZ_ASSERT(r2->begins == 1 && r2->used == 0 && r2->ends == 0);
        FUZZ_ASSERT(mp[1].error == GW_ERR_AUTH);
    }
    return 0;
}
