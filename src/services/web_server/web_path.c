/* URL path -> file of the UI folder, MIME types, Origin and Content-Type checks (pure). */
#include "gw_error.h"
#include "web_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool path_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == '~' || c == '/';
}

int web_path_resolve(const char *url_path, char *out, size_t cap)
{
    if (!url_path || !out || cap == 0)
        return GW_ERR_INVAL;
    out[0] = '\0';
    if (url_path[0] != '/')
        return GW_ERR_INVAL;
    if (strcmp(url_path, "/") == 0) {
        if (cap < sizeof "index.html")
            return GW_ERR_OVERFLOW;
        memcpy(out, "index.html", sizeof "index.html");
        return GW_OK;
    }
    const char *p = url_path + 1;
    size_t len = strlen(p);
    for (size_t i = 0; i < len; i++)
        if (!path_char_ok(p[i]))
            return GW_ERR_INVAL;
    /* Segment by segment: no empty, no "." / "..", no hidden names, no trailing '/'. */
    const char *seg = p;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t sl = slash ? (size_t)(slash - seg) : strlen(seg);
        if (sl == 0 || seg[0] == '.')
            return GW_ERR_INVAL; /* covers ".", "..", ".hidden", "//" and "dir/" */
        if (!slash)
            break;
        seg = slash + 1;
    }
    if (len + 1 > cap)
        return GW_ERR_OVERFLOW;
    memcpy(out, p, len + 1);
    return GW_OK;
}

static const struct {
    const char *ext;
    const char *type;
} mime_table[] = {
    { "html", "text/html; charset=utf-8" },
    { "htm", "text/html; charset=utf-8" },
    { "css", "text/css; charset=utf-8" },
    { "js", "text/javascript; charset=utf-8" },
    { "mjs", "text/javascript; charset=utf-8" },
    { "json", "application/json" },
    { "map", "application/json" },
    { "txt", "text/plain; charset=utf-8" },
    { "csv", "text/csv; charset=utf-8" },
    { "svg", "image/svg+xml" },
    { "png", "image/png" },
    { "jpg", "image/jpeg" },
    { "jpeg", "image/jpeg" },
    { "gif", "image/gif" },
    { "ico", "image/x-icon" },
    { "webp", "image/webp" },
    { "woff", "font/woff" },
    { "woff2", "font/woff2" },
    { "webmanifest", "application/manifest+json" },
    { "wasm", "application/wasm" },
};

const char *web_mime_type(const char *path)
{
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot || strchr(dot, '/'))
        return "application/octet-stream";
    for (size_t i = 0; i < sizeof mime_table / sizeof mime_table[0]; i++)
        if (strcasecmp(dot + 1, mime_table[i].ext) == 0)
            return mime_table[i].type;
    return "application/octet-stream";
}

bool web_origin_matches_host(const char *origin, const char *host)
{
    if (!origin || !host)
        return false;
    const char *p = strstr(origin, "://");
    if (!p)
        return false; /* "null" (sandboxed/file pages) and anything odd */
    p += 3;
    size_t ol = strlen(p);
    if (ol > 0 && p[ol - 1] == '/')
        ol--;
    size_t hl = strlen(host);
    if (ol == 0 || ol != hl)
        return false;
    return strncasecmp(p, host, ol) == 0;
}

bool web_is_json_content_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof want - 1) != 0)
        return false;
    char next = ct[sizeof want - 1];
    return next == '\0' || next == ';' || next == ' ';
}
