/* web_server's streaming multipart/form-data reader (web_multipart.c): the boundary of a
 * Content-Type, a body as a browser's FormData sends it fed whole, split at every position into
 * two chunks and byte by byte (the parts and their bytes always the same), data that holds
 * pieces of the delimiter, and every refusal: truncation at every length, parts without a name,
 * headers too long, too many parts, a callback's stop. */
#include "gw_error.h"
#include "test.h"
#include "web_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BOUNDARY "----WebKitFormBoundaryq7MA4YWxkTrZu0gW"
#define NEAR_MISS "----WebKitFormBoundaryq7MA4YWxkTrZu0gX" /* the boundary but its last byte */

/* What the callbacks saw: "name(filename)=<bytes>|" per part, in order. */
struct rec {
    char out[8192];
    size_t len;
    int parts, ends;
    int stop_at_begin; /* the part number whose begin answers GW_ERR_AUTH (0: never) */
    int stop_after_bytes; /* answer GW_ERR_OVERFLOW once this many data bytes went by (0: never) */
    size_t data_bytes;
};

static void put(struct rec *r, const void *p, size_t n)
{
    if (r->len + n < sizeof r->out) {
        memcpy(r->out + r->len, p, n);
        r->len += n;
        r->out[r->len] = '\0';
    }
}

static int on_begin(void *ctx, const char *name, const char *filename)
{
    struct rec *r = ctx;
    r->parts++;
    if (r->stop_at_begin == r->parts)
        return GW_ERR_AUTH;
    put(r, name, strlen(name));
    put(r, "(", 1);
    put(r, filename, strlen(filename));
    put(r, ")=", 2);
    return GW_OK;
}

static int on_data(void *ctx, const uint8_t *data, size_t len)
{
    struct rec *r = ctx;
    CHECK(len > 0);
    r->data_bytes += len;
    if (r->stop_after_bytes && r->data_bytes >= (size_t)r->stop_after_bytes)
        return GW_ERR_OVERFLOW;
    put(r, data, len);
    return GW_OK;
}

static int on_end(void *ctx)
{
    struct rec *r = ctx;
    r->ends++;
    put(r, "|", 1);
    return GW_OK;
}

static const struct web_multipart_ops ops = { on_begin, on_data, on_end };

/* The body of a FormData with a signature and a firmware file whose bytes hold CR, LF, "--", the
 * delimiter but its last byte, and the boundary without the CRLF before it (neither ends the
 * part: RFC 2046 only forbids the whole delimiter in the data). */
static size_t form_body(char *out, size_t cap)
{
    int n = snprintf(out, cap,
                     "--" BOUNDARY "\r\n"
                     "Content-Disposition: form-data; name=\"signature\"; filename=\"b.tar.sig\"\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n"
                     "{\"sig\":1}\r\n"
                     "--" BOUNDARY "\r\n"
                     "Content-Disposition: form-data; name=\"force\"\r\n\r\n"
                     "1\r\n"
                     "--" BOUNDARY "\r\n"
                     "content-disposition: Form-Data; filename=\"a \\\"q\\\".tar\"; name=firmware\r\n\r\n"
                     "\r\n\r--\r\n-\r\n--" NEAR_MISS "\r\nx--" BOUNDARY "x\r\n--" "----WebKit\rend\r\n"
                     "\r\n--" BOUNDARY "--\r\nepilogue\r\n");
    CHECK(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

static const char expected[] = "signature(b.tar.sig)={\"sig\":1}|force()=1|"
                               "firmware(a \"q\".tar)=\r\n\r--\r\n-\r\n--" NEAR_MISS "\r\nx--" BOUNDARY "x\r\n------WebKit\rend\r\n|";

static void test_boundary_of_content_type(void)
{
    char b[80];
    CHECK_EQ_INT(web_multipart_boundary("multipart/form-data; boundary=" BOUNDARY, b, sizeof b), GW_OK);
    CHECK_STR(b, BOUNDARY);
    CHECK_EQ_INT(web_multipart_boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b:c\"", b, sizeof b), GW_OK);
    CHECK_STR(b, "a b:c");
    CHECK_EQ_INT(web_multipart_boundary("multipart/form-data; boundary=x;", b, sizeof b), GW_OK);
    CHECK_STR(b, "x");
    static const char *const bad[] = {
        "application/octet-stream", "multipart/form-data", "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"\"", "multipart/form-data; boundary=\"abc", "multipart/mixed; boundary=x",
        "multipart/form-datax; boundary=x", "multipart/form-data; boundary=a\r\nb", "multipart/form-data; boundary=\"a \"",
        "multipart/form-data; boundary=" "01234567890123456789012345678901234567890123456789012345678901234567890",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(web_multipart_boundary(bad[i], b, sizeof b), GW_ERR_INVAL);
        CHECK_STR(b, "");
    }
    CHECK_EQ_INT(web_multipart_boundary(NULL, b, sizeof b), GW_ERR_INVAL);
    CHECK_EQ_INT(web_multipart_boundary("multipart/form-data; boundary=abcdef", b, 4), GW_ERR_OVERFLOW);
    struct web_multipart mp;
    CHECK_EQ_INT(web_multipart_init(&mp, ""), GW_ERR_INVAL);
    CHECK_EQ_INT(web_multipart_init(&mp, "a\rb"), GW_ERR_INVAL);
    CHECK_EQ_INT(web_multipart_feed(&mp, "x", 1, &ops, NULL), GW_ERR_INVAL);
}

/* Feeds body in chunks of the sizes given by split (a chunk per call: [0, at) then the rest; at
 * 0 = byte by byte). */
static int feed_split(const char *body, size_t len, size_t at, struct rec *r, struct web_multipart *mp)
{
    CHECK_EQ_INT(web_multipart_init(mp, BOUNDARY), GW_OK);
    int rc = GW_OK;
    if (at == 0) {
        for (size_t i = 0; i < len && !rc; i++)
            rc = web_multipart_feed(mp, body + i, 1, &ops, r);
    } else {
        rc = web_multipart_feed(mp, body, at, &ops, r);
        if (!rc)
            rc = web_multipart_feed(mp, body + at, len - at, &ops, r);
    }
    return rc ? rc : web_multipart_finish(mp);
}

static void test_every_split_gives_the_same_parts(void)
{
    char body[2048];
    size_t len = form_body(body, sizeof body);
    for (size_t at = 0; at < len; at++) {
        struct rec r = { 0 };
        struct web_multipart mp;
        int rc = feed_split(body, len, at, &r, &mp);
        CHECK_EQ_INT(rc, GW_OK);
        if (rc || strcmp(r.out, expected) != 0) {
            fprintf(stderr, "split at %zu: rc %d, got [%s]\n", at, rc, r.out);
            CHECK_STR(r.out, expected);
            return;
        }
        CHECK_EQ_INT(r.parts, 3);
        CHECK_EQ_INT(r.ends, 3);
        CHECK_EQ_INT(mp.parts, 3);
        CHECK(mp.bytes == len);
    }
}

static void test_preamble_and_empty_parts(void)
{
    static const char body[] = "preamble\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\r\n--b\r\n"
                               "Content-Disposition: form-data; name=\"c\"\r\n\r\nx\r\n--b--";
    struct rec r = { 0 };
    struct web_multipart mp;
    CHECK_EQ_INT(web_multipart_init(&mp, "b"), GW_OK);
    CHECK_EQ_INT(web_multipart_feed(&mp, body, sizeof body - 1, &ops, &r), GW_OK);
    CHECK_EQ_INT(web_multipart_finish(&mp), GW_OK);
    CHECK_STR(r.out, "a()=|c()=x|");
}

static void test_truncated_at_every_length(void)
{
    char body[2048];
    size_t len = form_body(body, sizeof body);
    size_t end = strstr(body, BOUNDARY "--") - body + strlen(BOUNDARY "--"); /* the closing boundary ends here */
    for (size_t n = 0; n < end; n++) {
        struct rec r = { 0 };
        struct web_multipart mp;
        CHECK_EQ_INT(web_multipart_init(&mp, BOUNDARY), GW_OK);
        CHECK_EQ_INT(web_multipart_feed(&mp, body, n, &ops, &r), GW_OK);
        int rc = web_multipart_finish(&mp);
        if (rc != GW_ERR_PROTO)
            fprintf(stderr, "truncated at %zu accepted\n", n);
        CHECK_EQ_INT(rc, GW_ERR_PROTO);
        CHECK(strstr(mp.reason, "the body ended") != NULL);
    }
    (void)len;
}

static void refused(const char *body, const char *why)
{
    struct rec r = { 0 };
    struct web_multipart mp;
    CHECK_EQ_INT(web_multipart_init(&mp, "b"), GW_OK);
    int rc = web_multipart_feed(&mp, body, strlen(body), &ops, &r);
    if (!rc)
        rc = web_multipart_finish(&mp);
    CHECK_EQ_INT(rc, GW_ERR_PROTO);
    if (!strstr(mp.reason, why))
        fprintf(stderr, "reason [%s], expected [%s]\n", mp.reason, why);
    CHECK(strstr(mp.reason, why) != NULL);
    /* Sticky: later bytes are refused the same way. */
    CHECK_EQ_INT(web_multipart_feed(&mp, "--b--", 5, &ops, &r), GW_ERR_PROTO);
}

static void test_malformed_bodies(void)
{
    refused("", "before its first boundary");
    refused("no boundary at all", "before its first boundary");
    refused("--b\r\n\r\nx\r\n--b--", "without headers");
    refused("--bX\r\n", "not followed by CRLF");
    refused("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "without a Content-Disposition");
    refused("--b\r\nContent-Disposition form-data\r\n\r\n", "without ':'");
    refused("--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n", "not form-data");
    refused("--b\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\n", "without a name");
    refused("--b\r\nContent-Disposition: form-data; name=\"\"\r\n\r\n", "without a name");
    refused("--b\r\nContent-Disposition: form-data; name=\"abc\r\n\r\n", "closing quote");
    refused("--b\r\nContent-Disposition: form-data; name=\"0123456789012345678901234567890123\"\r\n\r\n",
            "longer than 31");
    refused("--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b\r\n", "inside a part's headers");
    refused("--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nxyz", "no closing boundary");
    char *big = malloc(4096);
    snprintf(big, 4096, "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Pad: %03000d\r\n\r\n", 0);
    refused(big, "longer than 2048");
    size_t o = 0;
    for (int i = 0; i < 17; i++)
        o += (size_t)snprintf(big + o, 4096 - o, "--b\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\n\r\n");
    refused(big, "more than 16 parts");
    free(big);
}

static void test_callback_stops_the_parse(void)
{
    char body[2048];
    size_t len = form_body(body, sizeof body);
    struct rec r = { .stop_at_begin = 2 };
    struct web_multipart mp;
    CHECK_EQ_INT(feed_split(body, len, len / 2, &r, &mp), GW_ERR_AUTH);
    CHECK_STR(r.out, "signature(b.tar.sig)={\"sig\":1}|");
    CHECK_EQ_INT(web_multipart_feed(&mp, "x", 1, &ops, &r), GW_ERR_AUTH);
    struct rec r2 = { .stop_after_bytes = 12 };
    CHECK_EQ_INT(feed_split(body, len, 0, &r2, &mp), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(web_multipart_finish(&mp), GW_ERR_OVERFLOW);
}

/* A large part in uneven chunks: every byte once, in order, and few callbacks (runs, not bytes). */
static void test_large_part_in_chunks(void)
{
    size_t n = 1 << 20;
    char *body = malloc(n + 512);
    size_t o = (size_t)snprintf(body, 512, "--b\r\nContent-Disposition: form-data; name=\"firmware\"\r\n\r\n");
    for (size_t i = 0; i < n; i++)
        body[o + i] = (char)((i * 7) % 251 == 13 ? '\r' : 'a' + (int)(i % 26));
    o += n;
    memcpy(body + o, "\r\n--b--\r\n", 9);
    o += 9;
    struct web_multipart mp;
    CHECK_EQ_INT(web_multipart_init(&mp, "b"), GW_OK);
    struct rec r = { 0 };
    size_t pos = 0, step = 1;
    while (pos < o) {
        size_t k = step < o - pos ? step : o - pos;
        CHECK_EQ_INT(web_multipart_feed(&mp, body + pos, k, &ops, &r), GW_OK);
        pos += k;
        step = step * 3 + 1;
        if (step > 70000)
            step = 5;
    }
    CHECK_EQ_INT(web_multipart_finish(&mp), GW_OK);
    CHECK(r.data_bytes == n);
    CHECK_EQ_INT(r.ends, 1);
    free(body);
}

TEST_MAIN(TEST_CASE(test_boundary_of_content_type), TEST_CASE(test_every_split_gives_the_same_parts),
          TEST_CASE(test_preamble_and_empty_parts), TEST_CASE(test_truncated_at_every_length),
          TEST_CASE(test_malformed_bodies), TEST_CASE(test_callback_stops_the_parse),
          TEST_CASE(test_large_part_in_chunks))
