/* web_server's path sanitising (no traversal, plain, encoded or double-encoded; no listing; no
 * hidden files), MIME types, the Origin/Host check and the JSON Content-Type check. */
#include "gw_error.h"
#include "test.h"
#include "web_internal.h"

static void test_paths_accepted(void)
{
    char out[64];
    CHECK_EQ_INT(web_path_resolve("/", out, sizeof out), GW_OK);
    CHECK_STR(out, "index.html");
    CHECK_EQ_INT(web_path_resolve("/app.js", out, sizeof out), GW_OK);
    CHECK_STR(out, "app.js");
    CHECK_EQ_INT(web_path_resolve("/css/site-1_2~x.min.css", out, sizeof out), GW_OK);
    CHECK_STR(out, "css/site-1_2~x.min.css");
    CHECK_EQ_INT(web_path_resolve("/a..b", out, sizeof out), GW_OK); /* dots inside a name are fine */
}

static void test_paths_refused(void)
{
    /* The server decodes once; what arrives here is that decoded path. */
    static const char *const bad[] = {
        "/..", "/../etc/passwd", "/css/../../etc/passwd", "/./index.html", "/.", "/.hidden", "/css/.git/config",
        "/%2e%2e/etc/passwd",   /* double-encoded ".." after one decoding */
        "/%252e%252e/x", "/..%2fetc", "/a\\..\\b", "/C:/x", "/dir/", "//etc/passwd", "/a//b", "", "index.html",
        "/a b", "/a\tb", "/\xc3\xa9", "/a?b", "/a#b", "/a;b", "/a\r\nb",
    };
    char out[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = web_path_resolve(bad[i], out, sizeof out);
        if (rc != GW_ERR_INVAL)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK_EQ_INT(rc, GW_ERR_INVAL);
        CHECK_STR(out, "");
    }
    CHECK_EQ_INT(web_path_resolve(NULL, out, sizeof out), GW_ERR_INVAL);
    CHECK_EQ_INT(web_path_resolve("/a-rather-long-name.html", out, 8), GW_ERR_OVERFLOW);
}

static void test_mime_types(void)
{
    CHECK_STR(web_mime_type("index.html"), "text/html; charset=utf-8");
    CHECK_STR(web_mime_type("APP.JS"), "text/javascript; charset=utf-8");
    CHECK_STR(web_mime_type("css/style.css"), "text/css; charset=utf-8");
    CHECK_STR(web_mime_type("logo.svg"), "image/svg+xml");
    CHECK_STR(web_mime_type("x.json"), "application/json");
    CHECK_STR(web_mime_type("font.woff2"), "font/woff2");
    CHECK_STR(web_mime_type("noext"), "application/octet-stream");
    CHECK_STR(web_mime_type("dir.d/noext"), "application/octet-stream");
    CHECK_STR(web_mime_type("x.exe"), "application/octet-stream");
}

static void test_origin_and_content_type(void)
{
    CHECK(web_origin_matches_host("http://192.168.1.5:8080", "192.168.1.5:8080"));
    CHECK(web_origin_matches_host("https://Gateway.local", "gateway.local"));
    CHECK(!web_origin_matches_host("http://evil.example", "192.168.1.5:8080"));
    CHECK(!web_origin_matches_host("http://192.168.1.5:8081", "192.168.1.5:8080"));
    CHECK(!web_origin_matches_host("http://192.168.1.5:8080.evil", "192.168.1.5:8080"));
    CHECK(!web_origin_matches_host("null", "192.168.1.5"));
    CHECK(!web_origin_matches_host(NULL, "x"));
    CHECK(web_is_json_content_type("application/json"));
    CHECK(web_is_json_content_type("application/json; charset=utf-8"));
    CHECK(web_is_json_content_type("Application/JSON"));
    CHECK(!web_is_json_content_type("application/jsonx"));
    CHECK(!web_is_json_content_type("text/plain"));
    CHECK(!web_is_json_content_type("application/x-www-form-urlencoded"));
    CHECK(!web_is_json_content_type(NULL));
}

TEST_MAIN(TEST_CASE(test_paths_accepted), TEST_CASE(test_paths_refused), TEST_CASE(test_mime_types),
          TEST_CASE(test_origin_and_content_type))
