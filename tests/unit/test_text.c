/* gw_text: the bounded text builder and copy. Every put, truncation at every capacity (the
 * buffer allocated to the exact size, so the sanitizer sees one byte too many, plus a canary),
 * the sticky flag, UTF-8-safe cuts, the sign rule of put_fixed and its agreement with printf
 * away from ties, and bad arguments. */
#include "gw_text.h"

#include "gw_error.h"
#include "test.h"

#include <float.h>
#include <limits.h>
#include <stdlib.h>

static void test_empty_and_bad_arguments(void)
{
    struct gw_text t;
    gw_text_init(&t, NULL, 16);
    gw_text_put_str(&t, "x");
    gw_text_put_fixed(&t, 1.5, 1);
    CHECK_STR(gw_text_str(&t), "");
    CHECK_EQ_INT(gw_text_len(&t), 0);
    CHECK(gw_text_truncated(&t));
    CHECK_EQ_INT(gw_text_status(&t), GW_ERR_INVAL);

    char one = 'Z';
    gw_text_init(&t, &one, 0);
    gw_text_put_char(&t, 'a');
    CHECK(one == 'Z'); /* capacity 0: not even the NUL */
    CHECK_EQ_INT(gw_text_status(&t), GW_ERR_INVAL);

    gw_text_init(&t, &one, 1);
    CHECK(one == '\0');
    CHECK_EQ_INT(gw_text_status(&t), GW_OK); /* "" fits */
    gw_text_put_str(&t, "");
    CHECK_EQ_INT(gw_text_status(&t), GW_OK);
    gw_text_put_char(&t, 'a');
    CHECK(one == '\0');
    CHECK_EQ_INT(gw_text_status(&t), GW_ERR_OVERFLOW);

    char buf[8];
    gw_text_init(&t, buf, sizeof buf);
    gw_text_put_str(&t, NULL);
    gw_text_put_strn(&t, NULL, 3);
    gw_text_put_char(&t, '\0');
    CHECK_STR(buf, "");
    CHECK_EQ_INT(gw_text_status(&t), GW_OK);
    /* NULL builder: ignored, reported as no buffer. */
    gw_text_init(NULL, buf, sizeof buf);
    gw_text_put_str(NULL, "x");
    gw_text_put_fixed(NULL, 1, 1);
    CHECK_STR(gw_text_str(NULL), "");
    CHECK_EQ_INT(gw_text_status(NULL), GW_ERR_INVAL);
    CHECK(gw_text_truncated(NULL));
}

static void test_puts(void)
{
    char buf[128];
    struct gw_text t;
    gw_text_init(&t, buf, sizeof buf);
    gw_text_put_str(&t, "cell ");
    gw_text_put_uint(&t, 7);
    gw_text_put_char(&t, ' ');
    gw_text_put_fixed(&t, 3.62, 3);
    gw_text_put_str(&t, " V, ");
    gw_text_put_int(&t, -42);
    gw_text_put_str(&t, " 0x");
    gw_text_put_hex(&t, 0x9B, 2);
    gw_text_put_char(&t, ' ');
    gw_text_put_strn(&t, "abcdef", 3);
    gw_text_put_strn(&t, "xy\0zz", 5);
    CHECK_STR(buf, "cell 7 3.620 V, -42 0x9B abcxy");
    CHECK_EQ_INT(gw_text_len(&t), strlen(buf));
    CHECK(gw_text_str(&t) == buf);
    CHECK(!gw_text_truncated(&t));
    CHECK_EQ_INT(gw_text_status(&t), GW_OK);

    static const struct {
        uint64_t v;
        const char *text;
    } uints[] = { { 0, "0" }, { 9, "9" }, { 10, "10" }, { 4294967296u, "4294967296" },
                  { UINT64_MAX, "18446744073709551615" } };
    for (size_t i = 0; i < sizeof uints / sizeof uints[0]; i++) {
        gw_text_init(&t, buf, sizeof buf);
        gw_text_put_uint(&t, uints[i].v);
        CHECK_STR(buf, uints[i].text);
    }
    static const struct {
        int64_t v;
        const char *text;
    } ints[] = { { 0, "0" }, { -1, "-1" }, { 123, "123" }, { INT64_MAX, "9223372036854775807" },
                 { INT64_MIN, "-9223372036854775808" } };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        gw_text_init(&t, buf, sizeof buf);
        gw_text_put_int(&t, ints[i].v);
        CHECK_STR(buf, ints[i].text);
    }
    static const struct {
        uint64_t v;
        unsigned min;
        const char *text;
    } hexes[] = { { 0, 0, "0" }, { 0, 2, "00" }, { 5, 2, "05" }, { 0xAB, 2, "AB" }, { 0x351, 3, "351" },
                  { 0x18FF50E5u, 8, "18FF50E5" }, { 0x305, 8, "00000305" }, { UINT64_MAX, 0, "FFFFFFFFFFFFFFFF" },
                  { 1, 40, "0000000000000001" } };
    for (size_t i = 0; i < sizeof hexes / sizeof hexes[0]; i++) {
        gw_text_init(&t, buf, sizeof buf);
        gw_text_put_hex(&t, hexes[i].v, hexes[i].min);
        CHECK_STR(buf, hexes[i].text);
    }
}

/* The one sign rule, rounding half away from zero, the tokens, the decimals bound. */
static void test_fixed(void)
{
    static const struct {
        double v;
        unsigned decimals;
        const char *text;
    } cases[] = {
        { 0.0, 1, "0.0" },
        { -0.0, 1, "0.0" },              /* never "-0.0" */
        { -0.04, 1, "0.0" },             /* rounds to zero: no sign */
        { -0.0001, 2, "0.00" },
        { -0.4, 0, "0" },
        { -DBL_MIN, 3, "0.000" },
        { -0.06, 1, "-0.1" },
        { 0.125, 2, "0.13" },            /* an exact tie: away from zero */
        { -0.125, 2, "-0.13" },
        { 2.5, 0, "3" },
        { -2.5, 0, "-3" },
        { 0.5, 0, "1" },
        { 1.005, 2, "1.00" },            /* 1.00499999999999989... in binary */
        { 9.9996, 3, "10.000" },         /* carry into the whole part */
        { -9.9996, 3, "-10.000" },
        { 0.9999999996, 9, "1.000000000" },
        { 13.294f, 2, "13.29" },
        { -12.5f, 2, "-12.50" },
        { 3.3f, 3, "3.300" },            /* a float promoted: 3.2999999523... */
        { 58.1f, 1, "58.1" },
        { 4294967296.5, 0, "4294967297" },
        { 429496729600.0, 3, "429496729600.000" },
        { 1e17, 0, "100000000000000000" },
        { 123.456, 0, "123" },
        { 0.5, 12, "0.500000000" },      /* decimals beyond 9 are 9 */
        { 1e18, 0, "inf" },              /* out of the writable range */
        { -1e18, 2, "-inf" },
        { NAN, 1, "nan" },
        { -NAN, 1, "nan" },
        { INFINITY, 1, "inf" },
        { -INFINITY, 3, "-inf" },
    };
    char buf[64];
    struct gw_text t;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_text_init(&t, buf, sizeof buf);
        gw_text_put_fixed(&t, cases[i].v, cases[i].decimals);
        if (strcmp(buf, cases[i].text) != 0)
            fprintf(stderr, "  case %zu: %.17g with %u decimals\n", i, cases[i].v, cases[i].decimals);
        CHECK_STR(buf, cases[i].text);
        CHECK_EQ_INT(gw_text_status(&t), GW_OK);
    }
}

/* Agreement with printf's %.*f wherever the value is not at (or within a rounding error of) a
 * tie, and nowhere a "-0": a fixed-seed sweep over signs, magnitudes and decimals. */
static void test_fixed_matches_printf(void)
{
    uint32_t lcg = 12345u;
    unsigned compared = 0;
    for (unsigned i = 0; i < 200000; i++) {
        lcg = lcg * 1664525u + 1013904223u;
        unsigned decimals = (lcg >> 4) % 7u;
        double mag = (double)((lcg >> 8) % 1000000u) / 1000.0;
        lcg = lcg * 1664525u + 1013904223u;
        double v = (mag + (double)(lcg >> 8) / 16777216.0 * 1e-3) * ((lcg & 1u) ? -1.0 : 1.0);
        if (i % 7 == 0)
            v = v * 1e-4; /* around zero: the sign rule */
        char ours[64], ref[64];
        struct gw_text t;
        gw_text_init(&t, ours, sizeof ours);
        gw_text_put_fixed(&t, v, decimals);
        snprintf(ref, sizeof ref, "%.*f", (int)decimals, v);
        CHECK(ours[0] != '-' || strspn(ours + 1, "0.") != strlen(ours + 1)); /* never -0 */
        /* printf writes "-0.00" for a tiny negative: the one difference by design. */
        const char *r = ref;
        if (ref[0] == '-' && strspn(ref + 1, "0.") == strlen(ref + 1))
            r = ref + 1;
        if (strcmp(ours, r) == 0) {
            compared++;
            continue;
        }
        double scaled = fabs(v) * pow(10.0, decimals);
        double dist = fabs(scaled - floor(scaled) - 0.5);
        if (dist > 1e-6 * (scaled > 1.0 ? scaled : 1.0)) {
            fprintf(stderr, "  %.17g (%u decimals): ours %s, printf %s\n", v, decimals, ours, ref);
            CHECK(false);
        }
    }
    CHECK(compared > 199000);
}

/* Reference of the truncation tests: every kind of put. */
static void put_sequence(struct gw_text *t)
{
    gw_text_put_str(t, "pack 2: temperature ");
    gw_text_put_fixed(t, -5.25, 1);
    gw_text_put_str(t, " °C (limit ");
    gw_text_put_fixed(t, 0.0, 1);
    gw_text_put_str(t, " °C) ");
    gw_text_put_int(t, -1234);
    gw_text_put_char(t, '/');
    gw_text_put_uint(t, 987654321);
    gw_text_put_str(t, " 0x");
    gw_text_put_hex(t, 0x35A, 3);
    gw_text_put_strn(t, "€uro", 8);
}

static void test_truncation_at_every_length(void)
{
    char full[256];
    struct gw_text t;
    gw_text_init(&t, full, sizeof full);
    put_sequence(&t);
    CHECK_EQ_INT(gw_text_status(&t), GW_OK);
    size_t n = gw_text_len(&t);
    CHECK_EQ_INT(n, strlen(full));
    CHECK(n > 60);
    for (size_t cap = 1; cap <= n + 2; cap++) {
        /* Exactly cap bytes (the sanitizer sees a write past them) and a canary behind a copy. */
        char *exact = malloc(cap);
        char guarded[300];
        memset(guarded, 0x5A, sizeof guarded);
        if (!exact)
            abort();
        for (int pass = 0; pass < 2; pass++) {
            char *buf = pass ? guarded : exact;
            gw_text_init(&t, buf, cap);
            put_sequence(&t);
            size_t len = gw_text_len(&t);
            bool cut = cap <= n;
            CHECK_EQ_INT(gw_text_truncated(&t), cut);
            CHECK_EQ_INT(gw_text_status(&t), cut ? GW_ERR_OVERFLOW : GW_OK);
            CHECK_EQ_INT(strlen(buf), len);
            CHECK(len < cap);
            CHECK(memcmp(buf, full, len) == 0); /* a prefix of the whole text */
            /* Cut only where a character starts, and no more than one character early. */
            CHECK(((unsigned char)full[len] & 0xC0u) != 0x80u);
            CHECK(len + 4 > cap - 1 || !cut);
            if (cut && len < cap - 1)
                CHECK((unsigned char)full[len] >= 0xC0u); /* backed off a multi-byte character */
            if (!cut)
                CHECK_EQ_INT(len, n);
            /* Sticky: a put that would fit now appends nothing to a cut text. */
            if (cut) {
                gw_text_put_str(&t, "");
                gw_text_put_char(&t, 'x');
                CHECK_EQ_INT(gw_text_len(&t), len);
                CHECK_EQ_INT(strlen(buf), len);
            }
        }
        for (size_t i = cap; i < sizeof guarded; i++)
            if ((unsigned char)guarded[i] != 0x5A) {
                fprintf(stderr, "  cap %zu: byte %zu written\n", cap, i);
                CHECK(false);
                break;
            }
        free(exact);
    }
}

static void test_copy(void)
{
    char buf[8];
    CHECK_EQ_INT(gw_text_copy(buf, sizeof buf, "north"), GW_OK);
    CHECK_STR(buf, "north");
    CHECK_EQ_INT(gw_text_copy(buf, sizeof buf, "1234567"), GW_OK);
    CHECK_STR(buf, "1234567");
    CHECK_EQ_INT(gw_text_copy(buf, sizeof buf, "12345678"), GW_ERR_OVERFLOW);
    CHECK_STR(buf, "1234567");
    CHECK_EQ_INT(gw_text_copy(buf, sizeof buf, NULL), GW_OK);
    CHECK_STR(buf, "");
    CHECK_EQ_INT(gw_text_copy(buf, 6, "12.5 °C"), GW_ERR_OVERFLOW);
    CHECK_STR(buf, "12.5 "); /* the degree sign is not split */
    buf[0] = 'Q';
    CHECK_EQ_INT(gw_text_copy(buf, 0, "x"), GW_ERR_INVAL);
    CHECK(buf[0] == 'Q');
    CHECK_EQ_INT(gw_text_copy(NULL, 4, "x"), GW_ERR_INVAL);

    /* A fixed-size field without its NUL. */
    const char field[4] = { 'P', '1', 'C', '4' };
    CHECK_EQ_INT(gw_text_copyn(buf, sizeof buf, field, sizeof field), GW_OK);
    CHECK_STR(buf, "P1C4");
    CHECK_EQ_INT(gw_text_copyn(buf, 3, field, sizeof field), GW_ERR_OVERFLOW);
    CHECK_STR(buf, "P1");
    CHECK_EQ_INT(gw_text_copyn(buf, sizeof buf, "ab\0cd", 5), GW_OK);
    CHECK_STR(buf, "ab");
    /* Every capacity of a copy, exact allocations. */
    static const char src[] = "pack 12: cell 16 high";
    for (size_t cap = 1; cap <= sizeof src + 1; cap++) {
        char *d = malloc(cap);
        if (!d)
            abort();
        int rc = gw_text_copy(d, cap, src);
        CHECK_EQ_INT(rc, cap >= sizeof src ? GW_OK : GW_ERR_OVERFLOW);
        CHECK_EQ_INT(strlen(d), cap >= sizeof src ? sizeof src - 1 : cap - 1);
        CHECK(strncmp(d, src, strlen(d)) == 0);
        free(d);
    }
}

TEST_MAIN(TEST_CASE(test_empty_and_bad_arguments), TEST_CASE(test_puts), TEST_CASE(test_fixed),
          TEST_CASE(test_fixed_matches_printf), TEST_CASE(test_truncation_at_every_length), TEST_CASE(test_copy))
