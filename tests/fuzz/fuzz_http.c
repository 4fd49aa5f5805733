/* Fuzz target: the HTTP request line and headers as CivetWeb hands them over, through everything
 * our code does with them: the request gate of web__on_request (routes, methods, the login with
 * its Authorization parsing, limiter and cache, CSRF tokens, the Origin/Host check of public
 * writes, Content-Type, Content-Length and Transfer-Encoding, the body limits), the endpoints' query
 * parameters (mg_get_var and our range checks: history, alerts, data, CSV export) and the static
 * files (the path sanitiser web_path_resolve, Accept-Encoding, If-None-Match) over the real UI
 * folder. The answer is checked by fuzz_web.c. The pure helpers (web_path_resolve,
 * web_auth_parse_basic, web_origin_matches_host, web_is_json_content_type, web_csrf_check) are
 * also called on the raw values.
 *
 * The input is an HTTP request as a client sends it; it is turned into the struct
 * mg_request_info that Debian's CivetWeb 1.15 makes of it (measured with that library): only its
 * known methods reach a handler, the URI must be printable ASCII starting with '/', the path is
 * percent-decoded once (a %00 ends it) and not cleaned (local_uri_raw), the query string stays
 * raw, header values lose their leading blanks, at most 64 headers, Content-Length or -1; a
 * chunked body is handed over as it is (CivetWeb would have de-chunked it). "@csrf@" in a header
 * value becomes a valid CSRF token of the logged-in user, so that mutations reach the endpoints.
 * Corpus: tests/fuzz/corpus/http (every endpoint of docs/web.md, logins, static files, path
 * traversal plain and encoded, the requests of tests/integration/test_web_*). */
#define _GNU_SOURCE
#include "fuzz_support.h"
#include "fuzz_web.h"
#include "gw_error.h"
#include "web_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_REQUEST (64 * 1024)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_web_init("fuzz_http");
    return 0;
}

/* CivetWeb 1.15's accepted methods (others: 400 before any handler). */
static bool known_method(const char *m)
{
    static const char *const methods[] = { "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT",
                                           "TRACE", "PROPFIND", "MKCOL", "LOCK", "UNLOCK", "MOVE", "COPY",
                                           "PROPPATCH", "REPORT" };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(m, methods[i]) == 0)
            return true;
    return false;
}

/* The next line of s (ending "\r\n" or "\n"), NUL-terminated in place; NULL at the end. */
static char *next_line(char **s)
{
    char *line = *s;
    if (!line || !*line)
        return NULL;
    char *nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *s = nl + 1;
    } else {
        *s = line + strlen(line);
    }
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r')
        line[n - 1] = '\0';
    return line;
}

static void pure_helpers(const struct mg_request_info *ri, const char *path)
{
    char rel[256];
    if (web_path_resolve(path, rel, sizeof rel) == GW_OK) {
        /* Relative, in the allowed alphabet, no empty, ".", ".." or hidden segment. */
        FUZZ_ASSERT(rel[0] != '/' && rel[0] != '\0');
        FUZZ_ASSERT(strspn(rel, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~/-") == strlen(rel));
        for (const char *seg = rel; *seg;) {
            size_t n = strcspn(seg, "/");
            FUZZ_ASSERT(n > 0 && seg[0] != '.');
            seg += n;
            if (*seg == '/')
                seg++;
        }
    }
    (void)web_path_resolve(path, rel, 4);
    (void)web_mime_type(path);
    const char *origin = NULL, *host = NULL;
    for (int i = 0; i < ri->num_headers; i++) {
        const char *name = ri->http_headers[i].name, *value = ri->http_headers[i].value;
        if (strcasecmp(name, "Authorization") == 0) {
            char user[64], pass[130];
            if (web_auth_parse_basic(value, user, sizeof user, pass, sizeof pass) == GW_OK)
                FUZZ_ASSERT(strlen(user) < sizeof user && strlen(pass) < sizeof pass);
            (void)web_auth_parse_basic(value, user, 1, pass, 1);
        } else if (strcasecmp(name, "Origin") == 0) {
            origin = value;
        } else if (strcasecmp(name, "Host") == 0) {
            host = value;
        } else if (strcasecmp(name, "Content-Type") == 0) {
            (void)web_is_json_content_type(value);
        }
    }
    if (origin && host)
        (void)web_origin_matches_host(origin, host);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_REQUEST)
        return 0;
    /* The head ends at the first empty line; the body is what follows. */
    const uint8_t *sep = memmem(data, size, "\r\n\r\n", 4);
    size_t head_len = sep ? (size_t)(sep - data) : size;
    const uint8_t *body = sep ? sep + 4 : data + size;
    size_t body_len = sep ? size - head_len - 4 : 0;
    if (memchr(data, '\0', head_len))
        return 0; /* CivetWeb refuses a NUL in the head */
    char *head = fuzz_strndup(data, head_len);
    char *cursor = head;

    /* Request line: METHOD SP URI [SP HTTP/x.y]. */
    char *line = next_line(&cursor);
    char *method = line, *uri = line ? strchr(line, ' ') : NULL;
    if (!uri) {
        free(head);
        return 0;
    }
    *uri++ = '\0';
    char *version = strchr(uri, ' ');
    if (version)
        *version++ = '\0';
    if (!known_method(method) || uri[0] != '/' || (version && strncmp(version, "HTTP/", 5) != 0)) {
        free(head);
        return 0;
    }
    for (const char *p = uri; *p; p++) {
        if (*p < 0x21 || *p > 0x7E) { /* CivetWeb: 400 */
            free(head);
            return 0;
        }
    }
    struct mg_request_info ri;
    memset(&ri, 0, sizeof ri);
    ri.request_method = method;
    ri.http_version = version ? version + 5 : "1.0";
    char *query = strchr(uri, '?');
    if (query)
        *query++ = '\0';
    ri.query_string = query;
    char path[MAX_REQUEST];
    int n = mg_url_decode(uri, (int)strlen(uri), path, (int)sizeof path, 0);
    FUZZ_ASSERT(n >= 0);
    ri.request_uri = path;
    ri.local_uri_raw = path;
    ri.local_uri = path;
    ri.content_length = -1;
    ri.remote_port = 40000;
    ri.server_port = 8080;

    /* Headers; values with the CSRF placeholder replaced. */
    static char values[64][256];
    while ((line = next_line(&cursor))) {
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            continue; /* CivetWeb skips what is not a header */
        if (ri.num_headers == 64) {
            free(head);
            return 0; /* too many headers: CivetWeb answers 400 */
        }
        *colon = '\0';
        const char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        if (strstr(value, FUZZ_WEB_CSRF_PLACEHOLDER)) {
            snprintf(values[ri.num_headers], sizeof values[0], "%s", fuzz_web_csrf_token());
            value = values[ri.num_headers];
        }
        ri.http_headers[ri.num_headers].name = line;
        ri.http_headers[ri.num_headers].value = value;
        ri.num_headers++;
        if (strcasecmp(line, "Content-Length") == 0) {
            char *end;
            long long cl = strtoll(value, &end, 10);
            if (end == value || *end || cl < 0) {
                free(head);
                return 0; /* CivetWeb: 400 */
            }
            ri.content_length = cl;
        }
    }
    if (ri.content_length >= 0 && (size_t)ri.content_length < body_len)
        body_len = (size_t)ri.content_length; /* the rest would be the next request */

    pure_helpers(&ri, path);
    int status = fuzz_web_request(&ri, body, body_len, data, size);
    FUZZ_ASSERT(status > 0);
    free(head);
    return 0;
}
