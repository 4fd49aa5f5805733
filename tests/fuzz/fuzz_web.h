/* The web server without a socket, shared by fuzz_http.c and fuzz_rest.c (fuzz_web.c).
 *
 * A real struct web_server (src/services/web_server/web_server_internal.h) over real services
 * (configuration manager on a scratch data directory, battery service with a view, alert manager,
 * history logger), whose request handler web__on_request is called with a connection of this
 * file: mg_get_request_info, mg_get_header, mg_read, mg_write and mg_send_chunk are defined in
 * fuzz_web.c (the executable's definitions come before libcivetweb's), so the request is what
 * the fuzz target puts in a struct mg_request_info, exactly as CivetWeb 1.15 hands it over, and
 * the answer is collected and checked instead of sent. */
#ifndef GW_FUZZ_WEB_H
#define GW_FUZZ_WEB_H

#include <civetweb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FUZZ_WEB_USER "admin"
#define FUZZ_WEB_PASSWORD "fuzz-password"
/* "Basic " + base64("admin:fuzz-password"): logged in (verified once, then from the cache). */
#define FUZZ_WEB_AUTH "Basic YWRtaW46ZnV6ei1wYXNzd29yZA=="
/* Replaced in a header value by a valid CSRF token of FUZZ_WEB_USER. */
#define FUZZ_WEB_CSRF_PLACEHOLDER "@csrf@"
#define FUZZ_WEB_REMOTE_ADDR "192.0.2.7"

/* Creates the services and the server (once; a scratch directory removed at exit). */
void fuzz_web_init(const char *name);

/* A valid X-CSRF-Token for FUZZ_WEB_USER (valid for a day). */
const char *fuzz_web_csrf_token(void);

/* One request: ri as CivetWeb fills it (remote_addr is set here), body[0..body_len) what mg_read
 * returns. input[0..input_len): the fuzz input, for the check that no secret leaves unless the
 * input itself carried it. Runs web__on_request with a fresh login limiter and credential cache,
 * checks the answer (one well-formed HTTP response, Content-Length = body, JSON bodies parse,
 * the security headers, no 500, no secret) and restores the configuration when the request
 * changed it. Returns the HTTP status answered. */
int fuzz_web_request(struct mg_request_info *ri, const uint8_t *body, size_t body_len, const uint8_t *input,
                     size_t input_len);

#endif
