/* Fuzz target: every REST endpoint that takes a JSON body, with a well-formed, logged-in,
 * CSRF-carrying request, so that the body is all that varies and reaches the endpoint:
 * POST /api/config (configuration update), /api/config/import, /api/alerts/ack,
 * /api/alerts/clear, /api/security/first-password and /api/system/restart, through the real
 * request gate (read_body: limits, JSON parse, object check) and handlers over real services
 * (fuzz_web.c), the answer checked there. A configuration the body changed is restored before
 * the next input.
 * Input: byte 0 picks the endpoint, byte 1 bit 0 sends the body chunked (no Content-Length);
 * the rest is the body.
 * Corpus: tests/fuzz/corpus/rest (the bodies of docs/web.md and docs/configuration.md, the UI's
 * settings form, the fuzz_config corpus's updates). */
#include "fuzz_support.h"
#include "fuzz_web.h"

#include <stdio.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_web_init("fuzz_rest");
    return 0;
}

static const char *const endpoints[] = {
    "/api/config", "/api/config/import", "/api/alerts/ack", "/api/alerts/clear",
    "/api/security/first-password", "/api/system/restart",
};
#define ENDPOINTS (sizeof endpoints / sizeof endpoints[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = { data, size };
    const char *path = endpoints[fuzz_byte(&in) % ENDPOINTS];
    bool chunked = fuzz_byte(&in) & 1;

    struct mg_request_info ri;
    memset(&ri, 0, sizeof ri);
    ri.request_method = "POST";
    ri.request_uri = ri.local_uri_raw = ri.local_uri = path;
    ri.http_version = "1.1";
    char length[24];
    snprintf(length, sizeof length, "%zu", in.size);
    const struct mg_header headers[] = {
        { "Host", "192.0.2.1:8080" },
        { "Authorization", FUZZ_WEB_AUTH },
        { "X-CSRF-Token", fuzz_web_csrf_token() },
        { "Content-Type", "application/json" },
        { "Origin", "http://192.0.2.1:8080" },
        { chunked ? "Transfer-Encoding" : "Content-Length", chunked ? "chunked" : length },
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++)
        ri.http_headers[i] = headers[i];
    ri.num_headers = (int)(sizeof headers / sizeof headers[0]);
    ri.content_length = chunked ? -1 : (long long)in.size;
    int status = fuzz_web_request(&ri, in.data, in.size, data, size);
    /* Logged in with a valid token: the gate never refuses it as such. */
    FUZZ_ASSERT(status != 401 && status != 403 && status != 429);
    return 0;
}
