#define _GNU_SOURCE
/* web_server's pure security parts: the per-address login limiter (lockout, doubling, scope,
 * eviction), the credential cache, the Basic header parser and the CSRF tokens (valid, expired,
 * foreign, forged, malformed). No server, no clock: the time is an argument. */
#include "gw_error.h"
#include "test.h"
#include "web_internal.h"

#include <stdlib.h>

static const unsigned char key_a[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const unsigned char key_b[32] = { 9, 9, 9 };

static void test_lockout_after_max_attempts_then_doubling(void)
{
    static struct web_auth_limiter l;
    web_auth_limiter_init(&l, 5, 60000);
    uint64_t t = 1000;
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(web_auth_limiter_check(&l, "10.0.0.9", t), 0);
        CHECK_EQ_INT(web_auth_limiter_failed(&l, "10.0.0.9", t), 0);
    }
    /* The fifth failure locks for 60 s. */
    CHECK_EQ_INT(web_auth_limiter_failed(&l, "10.0.0.9", t), 60);
    CHECK_EQ_INT(web_auth_limiter_check(&l, "10.0.0.9", t), 60);
    CHECK_EQ_INT(web_auth_limiter_check(&l, "10.0.0.9", t + 59001), 1);
    CHECK_EQ_INT(web_auth_limiter_check(&l, "10.0.0.9", t + 60000), 0);
    CHECK_EQ_INT(l.lockouts_total, 1);
    CHECK_EQ_INT(l.failures_total, 5);
    /* Five more: 120 s, then 240 s. */
    t += 60000;
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(web_auth_limiter_failed(&l, "10.0.0.9", t), 0);
    CHECK_EQ_INT(web_auth_limiter_failed(&l, "10.0.0.9", t), 120);
    t += 120000;
    for (int i = 0; i < 4; i++)
        web_auth_limiter_failed(&l, "10.0.0.9", t);
    CHECK_EQ_INT(web_auth_limiter_failed(&l, "10.0.0.9", t), 240);
    /* A success after the lockout resets the doubling. */
    t += 240000;
    CHECK_EQ_INT(web_auth_limiter_check(&l, "10.0.0.9", t), 0);
    web_auth_limiter_succeeded(&l, "10.0.0.9");
    for (int i = 0; i < 4; i++)
        web_auth_limiter_failed(&l, "10.0.0.9", t);
    CHECK_EQ_INT(web_auth_limiter_failed(&l, "10.0.0.9", t), 60);
}

static void test_lockout_is_per_address(void)
{
    static struct web_auth_limiter l;
    web_auth_limiter_init(&l, 3, 10000);
    for (int i = 0; i < 3; i++)
        web_auth_limiter_failed(&l, "192.168.1.66", 5);
    CHECK(web_auth_limiter_check(&l, "192.168.1.66", 6) > 0);
    CHECK_EQ_INT(web_auth_limiter_check(&l, "192.168.1.20", 6), 0); /* the owner's phone */
    CHECK_EQ_INT(web_auth_limiter_check(&l, "::1", 6), 0);
    /* Failures of another address do not add up with the attacker's. */
    CHECK_EQ_INT(web_auth_limiter_failed(&l, "192.168.1.20", 6), 0);
    CHECK_EQ_INT(web_auth_limiter_failed(&l, "192.168.1.20", 6), 0);
    CHECK_EQ_INT(web_auth_limiter_check(&l, "192.168.1.20", 6), 0);
}

static void test_full_table_keeps_locked_addresses(void)
{
    static struct web_auth_limiter l;
    web_auth_limiter_init(&l, 2, 600000);
    web_auth_limiter_failed(&l, "10.9.9.9", 0);
    web_auth_limiter_failed(&l, "10.9.9.9", 0);
    CHECK(web_auth_limiter_check(&l, "10.9.9.9", 1) > 0);
    /* Many other addresses with one failure each: the locked one is never the one forgotten. */
    char addr[32];
    for (int i = 0; i < 3 * WEB_AUTH_SLOTS; i++) {
        snprintf(addr, sizeof addr, "10.1.%d.%d", i / 250, i % 250);
        web_auth_limiter_failed(&l, addr, 10 + (uint64_t)i);
    }
    CHECK(web_auth_limiter_check(&l, "10.9.9.9", 5000) > 0);
    /* Long quiet: forgotten. */
    CHECK_EQ_INT(web_auth_limiter_check(&l, "10.9.9.9", WEB_AUTH_FORGET_MS + 700000), 0);
    /* NULL arguments are harmless. */
    CHECK_EQ_INT(web_auth_limiter_check(&l, NULL, 0), 0);
    CHECK_EQ_INT(web_auth_limiter_failed(NULL, "x", 0), 0);
}

static void test_credential_cache(void)
{
    static struct web_auth_cache c;
    web_auth_cache_init(&c, key_a);
    const char *cred = "Basic YWRtaW46c2VjcmV0LXBhc3M=";
    CHECK(!web_auth_cache_lookup(&c, cred, strlen(cred), 0));
    web_auth_cache_store(&c, cred, strlen(cred), 0);
    CHECK(web_auth_cache_lookup(&c, cred, strlen(cred), 1000));
    CHECK(!web_auth_cache_lookup(&c, "Basic YWRtaW46c2VjcmV0LXBhc3N=", 30, 1000));
    CHECK(!web_auth_cache_lookup(&c, cred, strlen(cred), WEB_AUTH_CACHE_TTL_MS));
    web_auth_cache_store(&c, cred, strlen(cred), 5);
    web_auth_cache_clear(&c);
    CHECK(!web_auth_cache_lookup(&c, cred, strlen(cred), 10));
    /* The credential itself is never kept. */
    web_auth_cache_store(&c, cred, strlen(cred), 5);
    CHECK(memmem(&c, sizeof c, "YWRtaW4", 7) == NULL);
    /* More credentials than slots: the newest are found. */
    char buf[40];
    for (int i = 0; i < WEB_AUTH_CACHE_SLOTS + 4; i++) {
        snprintf(buf, sizeof buf, "Basic cred-%d", i);
        web_auth_cache_store(&c, buf, strlen(buf), 100 + (uint64_t)i);
    }
    CHECK(web_auth_cache_lookup(&c, buf, strlen(buf), 200));
}

static void test_basic_header(void)
{
    char u[32], p[130];
    CHECK_EQ_INT(web_auth_parse_basic("Basic YWRtaW46c2VjcmV0LXBhc3M=", u, sizeof u, p, sizeof p), GW_OK);
    CHECK_STR(u, "admin");
    CHECK_STR(p, "secret-pass");
    CHECK_EQ_INT(web_auth_parse_basic("basic YWRtaW46YTpi", u, sizeof u, p, sizeof p), GW_OK); /* admin:a:b */
    CHECK_STR(p, "a:b");
    CHECK_EQ_INT(web_auth_parse_basic("Bearer abc", u, sizeof u, p, sizeof p), GW_ERR_INVAL);
    CHECK_EQ_INT(web_auth_parse_basic("Basic ", u, sizeof u, p, sizeof p), GW_ERR_INVAL);
    CHECK_EQ_INT(web_auth_parse_basic("Basic YWRtaW4=", u, sizeof u, p, sizeof p), GW_ERR_INVAL); /* no ':' */
    CHECK_EQ_INT(web_auth_parse_basic("Basic !!!!", u, sizeof u, p, sizeof p), GW_ERR_INVAL);
    CHECK_EQ_INT(web_auth_parse_basic("Basic YWRtaW46AGI=", u, sizeof u, p, sizeof p), GW_ERR_INVAL); /* NUL */
    char big[1024] = "Basic ";
    memset(big + 6, 'Q', 800);
    big[806] = 0;
    CHECK_EQ_INT(web_auth_parse_basic(big, u, sizeof u, p, sizeof p), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(web_auth_parse_basic(NULL, u, sizeof u, p, sizeof p), GW_ERR_INVAL);
}

static void test_csrf_tokens(void)
{
    struct web_csrf c, other;
    web_csrf_init(&c, key_a);
    web_csrf_init(&other, key_b);
    char tok[WEB_CSRF_TOKEN_MAX];
    CHECK_EQ_INT(web_csrf_issue(&c, "admin", 1000, 300000, tok, sizeof tok), GW_OK);
    CHECK_EQ_INT(web_csrf_check(&c, "admin", tok, 1000), GW_OK);
    CHECK_EQ_INT(web_csrf_check(&c, "admin", tok, 300999), GW_OK);
    CHECK_EQ_INT(web_csrf_check(&c, "admin", tok, 301000), GW_ERR_TIMEOUT);    /* expired */
    CHECK_EQ_INT(web_csrf_check(&c, "root", tok, 2000), GW_ERR_AUTH);          /* bound to the user */
    CHECK_EQ_INT(web_csrf_check(&other, "admin", tok, 2000), GW_ERR_AUTH);     /* another gateway */
    CHECK_EQ_INT(web_csrf_check(&c, "admin", NULL, 2000), GW_ERR_INVAL);       /* missing */
    CHECK_EQ_INT(web_csrf_check(&c, "admin", "", 2000), GW_ERR_INVAL);
    CHECK_EQ_INT(web_csrf_check(&c, "admin", "abc", 2000), GW_ERR_INVAL);
    /* A longer expiry with the old MAC is a forgery, not a renewal. */
    char forged[WEB_CSRF_TOKEN_MAX];
    snprintf(forged, sizeof forged, "ffffffff%s", strchr(tok, '.'));
    CHECK_EQ_INT(web_csrf_check(&c, "admin", forged, 2000), GW_ERR_AUTH);
    /* One flipped digit of the MAC. */
    char flipped[WEB_CSRF_TOKEN_MAX];
    snprintf(flipped, sizeof flipped, "%s", tok);
    char *last = flipped + strlen(flipped) - 1;
    *last = *last == '0' ? '1' : '0';
    CHECK_EQ_INT(web_csrf_check(&c, "admin", flipped, 2000), GW_ERR_AUTH);
    CHECK_EQ_INT(web_csrf_check(&c, "admin", "zz.0000000000000000000000000000000000000000000000000000000000000000", 2000),
                 GW_ERR_INVAL);
    CHECK_EQ_INT(web_csrf_issue(&c, "admin", 0, 1, tok, 10), GW_ERR_OVERFLOW);
    CHECK_EQ_INT(web_csrf_issue(&c, "", 0, 1, tok, sizeof tok), GW_ERR_INVAL);
}

TEST_MAIN(TEST_CASE(test_lockout_after_max_attempts_then_doubling), TEST_CASE(test_lockout_is_per_address),
          TEST_CASE(test_full_table_keeps_locked_addresses), TEST_CASE(test_credential_cache),
          TEST_CASE(test_basic_header), TEST_CASE(test_csrf_tokens))
