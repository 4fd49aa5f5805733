/* The bundle's manifest: versions, paths, structure and the update policy. No I/O. */
#include "gw_error.h"
#include "gw_text.h"
#include "ota_internal.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef GW_UPDATE_PLATFORM
#define GW_UPDATE_PLATFORM "linux"
#endif

const char *ota__arch(void)
{
#if defined(__x86_64__)
    return "x86_64";
#elif defined(__aarch64__)
    return "aarch64";
#elif defined(__arm__)
    return "armhf";
#elif defined(__i386__)
    return "i686";
#elif defined(__riscv) && __riscv_xlen == 64
    return "riscv64";
#else
    return "unknown";
#endif
}

const char *ota__platform(void)
{
    return GW_UPDATE_PLATFORM;
}

bool ota__fmt(char *out, size_t cap, const char *fmt, ...)
{
    if (!out || !cap)
        return true;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0) {
        out[0] = '\0';
        return true;
    }
    return (size_t)n >= cap;
}

/* ---- versions ---------------------------------------------------------------------------- */

int ota__version_parse(const char *s, struct ota_version *out)
{
    memset(out, 0, sizeof *out);
    if (!s || !*s || strlen(s) >= OTA_VERSION_MAX)
        return GW_ERR_INVAL;
    const char *p = s;
    for (;;) {
        if (*p < '0' || *p > '9' || out->count >= 4)
            return GW_ERR_INVAL;
        uint64_t v = 0;
        unsigned digits = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (uint64_t)(*p++ - '0');
            if (++digits > 9)
                return GW_ERR_INVAL;
        }
        out->n[out->count++] = (uint32_t)v;
        if (*p == '.') {
            p++;
            continue;
        }
        break;
    }
    if (out->count < 2)
        return GW_ERR_INVAL;
    if (*p == '-') {
        p++;
        size_t n = strlen(p);
        if (n == 0 || n >= sizeof out->pre)
            return GW_ERR_INVAL;
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.'))
                return GW_ERR_INVAL;
        }
        memcpy(out->pre, p, n + 1);
        return GW_OK;
    }
    return *p ? GW_ERR_INVAL : GW_OK;
}

int ota__version_cmp(const struct ota_version *a, const struct ota_version *b)
{
    for (unsigned i = 0; i < 4; i++) {
        if (a->n[i] != b->n[i])
            return a->n[i] < b->n[i] ? -1 : 1;
    }
    if (!a->pre[0] || !b->pre[0])
        return (a->pre[0] ? -1 : 0) + (b->pre[0] ? 1 : 0);
    int c = strcmp(a->pre, b->pre);
    return c < 0 ? -1 : c > 0;
}

/* ---- paths ------------------------------------------------------------------------------- */

int ota__path_clean(const char *in, char *out, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    out[0] = '\0';
    if (!in || !*in) {
        *why = "empty path";
        return GW_ERR_INVAL;
    }
    if (in[0] == '/') {
        *why = "absolute path";
        return GW_ERR_INVAL;
    }
    while (in[0] == '.' && in[1] == '/')
        in += 2;
    size_t n = strlen(in);
    while (n > 0 && in[n - 1] == '/') /* a directory entry's trailing slash */
        n--;
    if (n == 0) {
        *why = "empty path";
        return GW_ERR_INVAL;
    }
    if (n >= OTA_PATH_MAX) {
        *why = "path too long";
        return GW_ERR_INVAL;
    }
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && in[i] != '/') {
            char c = in[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' ||
                  c == '-' || c == '+')) {
                *why = "character not allowed in a path";
                return GW_ERR_INVAL;
            }
            continue;
        }
        size_t len = i - start;
        if (len == 0) {
            *why = "empty path component";
            return GW_ERR_INVAL;
        }
        if (len == 2 && in[start] == '.' && in[start + 1] == '.') {
            *why = "'..' in the path";
            return GW_ERR_INVAL;
        }
        if (len == 1 && in[start] == '.') {
            *why = "'.' in the path";
            return GW_ERR_INVAL;
        }
        start = i + 1;
    }
    memcpy(out, in, n);
    out[n] = '\0';
    return GW_OK;
}

/* ---- manifest ---------------------------------------------------------------------------- */

static int hex_decode(const char *hex, uint8_t *out, size_t n)
{
    if (!hex || strlen(hex) != 2 * n)
        return GW_ERR_INVAL;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = hex[i];
        int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (v < 0)
            return GW_ERR_INVAL;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return GW_OK;
}

static void reason_set(char *reason, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reason_set(char *reason, size_t cap, const char *fmt, ...)
{
    if (!reason || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(reason, cap, fmt, ap);
    va_end(ap);
    if (n < 0)
        reason[0] = '\0';
}

static bool get_string(const cJSON *obj, const char *key, char *dst, size_t cap, bool required, char *reason,
                       size_t rcap)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) {
        if (required)
            reason_set(reason, rcap, "manifest: \"%s\" is missing", key);
        dst[0] = '\0';
        return !required;
    }
    if (!cJSON_IsString(it) || strlen(it->valuestring) >= cap) {
        reason_set(reason, rcap, "manifest: \"%s\" must be a string of at most %zu characters", key, cap - 1);
        return false;
    }
    gw_text_copy(dst, cap, it->valuestring);
    return true;
}

static int parse_file(const cJSON *f, unsigned idx, struct ota_manifest *m, char *reason, size_t cap)
{
    struct ota_file *of = &m->files[m->file_count];
    memset(of, 0, sizeof *of);
    if (!cJSON_IsObject(f)) {
        reason_set(reason, cap, "manifest: files[%u] must be an object", idx);
        return GW_ERR_INVAL;
    }
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(f, "path");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(f, "size");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(f, "sha256");
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(f, "mode");
    const char *why = NULL;
    if (!cJSON_IsString(path) || ota__path_clean(path->valuestring, of->path, &why) != GW_OK) {
        reason_set(reason, cap, "manifest: files[%u].path is not accepted (%s)", idx,
                   cJSON_IsString(path) ? why : "not a string");
        return GW_ERR_INVAL;
    }
    if (strcmp(of->path, OTA_MANIFEST) == 0 || strcmp(of->path, OTA_SIGNATURE) == 0) {
        reason_set(reason, cap, "manifest: files[%u] may not list %s", idx, of->path);
        return GW_ERR_INVAL;
    }
    if (!cJSON_IsNumber(size) || size->valuedouble < 0 || size->valuedouble > 4e9 ||
        (double)(uint64_t)size->valuedouble != size->valuedouble) {
        reason_set(reason, cap, "manifest: %s: size must be a whole number of bytes", of->path);
        return GW_ERR_INVAL;
    }
    of->size = (uint64_t)size->valuedouble;
    if (!cJSON_IsString(sha) || hex_decode(sha->valuestring, of->sha256, 32) != GW_OK) {
        reason_set(reason, cap, "manifest: %s: sha256 must be 64 hexadecimal digits", of->path);
        return GW_ERR_INVAL;
    }
    of->mode = 0644;
    if (mode) {
        if (!cJSON_IsString(mode) || (strcmp(mode->valuestring, "0644") != 0 && strcmp(mode->valuestring, "0755") != 0)) {
            reason_set(reason, cap, "manifest: %s: mode must be \"0644\" or \"0755\"", of->path);
            return GW_ERR_INVAL;
        }
        of->mode = mode->valuestring[1] == '7' ? 0755 : 0644;
    }
    for (unsigned i = 0; i < m->file_count; i++) {
        const char *other = m->files[i].path;
        size_t lo = strlen(other), ln = strlen(of->path);
        if (strcmp(other, of->path) == 0) {
            reason_set(reason, cap, "manifest: %s is listed twice", of->path);
            return GW_ERR_INVAL;
        }
        /* "a" and "a/b" cannot both be files. */
        if ((lo < ln && strncmp(other, of->path, lo) == 0 && of->path[lo] == '/') ||
            (ln < lo && strncmp(other, of->path, ln) == 0 && other[ln] == '/')) {
            reason_set(reason, cap, "manifest: %s and %s cannot both be files", other, of->path);
            return GW_ERR_INVAL;
        }
    }
    m->total_bytes += of->size;
    m->file_count++;
    return GW_OK;
}

int ota__manifest_parse(const char *json, size_t len, struct ota_manifest *m, char *reason, size_t cap)
{
    memset(m, 0, sizeof *m);
    cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
    int rc = GW_ERR_INVAL;
    if (!cJSON_IsObject(root)) {
        reason_set(reason, cap, "manifest: not a JSON object");
        goto out;
    }
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsNumber(format) || format->valuedouble != 1) {
        reason_set(reason, cap, "manifest: \"format\" must be 1 (this gateway reads format 1)");
        goto out;
    }
    if (!get_string(root, "name", m->name, sizeof m->name, true, reason, cap) ||
        !get_string(root, "version", m->version, sizeof m->version, true, reason, cap) ||
        !get_string(root, "min_from_version", m->min_from, sizeof m->min_from, false, reason, cap) ||
        !get_string(root, "changelog", m->changelog, sizeof m->changelog, false, reason, cap))
        goto out;
    struct ota_version v;
    if (ota__version_parse(m->version, &v) != GW_OK) {
        reason_set(reason, cap, "manifest: version \"%s\" is not a version (like 1.2.3)", m->version);
        goto out;
    }
    if (m->min_from[0] && ota__version_parse(m->min_from, &v) != GW_OK) {
        reason_set(reason, cap, "manifest: min_from_version \"%s\" is not a version", m->min_from);
        goto out;
    }
    const cJSON *compat = cJSON_GetObjectItemCaseSensitive(root, "compatible");
    if (!cJSON_IsObject(compat)) {
        reason_set(reason, cap, "manifest: \"compatible\" {architecture, platform} is missing");
        goto out;
    }
    if (!get_string(compat, "architecture", m->arch, sizeof m->arch, true, reason, cap) ||
        !get_string(compat, "platform", m->platform, sizeof m->platform, true, reason, cap))
        goto out;
    const cJSON *down = cJSON_GetObjectItemCaseSensitive(root, "allow_downgrade");
    if (down && !cJSON_IsBool(down)) {
        reason_set(reason, cap, "manifest: allow_downgrade must be true or false");
        goto out;
    }
    m->allow_downgrade = cJSON_IsTrue(down);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    if (!cJSON_IsArray(files) || cJSON_GetArraySize(files) == 0) {
        reason_set(reason, cap, "manifest: \"files\" must be a non-empty array");
        goto out;
    }
    if (cJSON_GetArraySize(files) > OTA_MAX_FILES) {
        reason_set(reason, cap, "manifest: %d files, at most %d", cJSON_GetArraySize(files), OTA_MAX_FILES);
        goto out;
    }
    unsigned idx = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, files)
    {
        if (parse_file(f, idx++, m, reason, cap) != GW_OK)
            goto out;
    }
    const struct ota_file *daemon = ota__manifest_find(m, OTA_DAEMON_PATH);
    if (!daemon || daemon->mode != 0755) {
        reason_set(reason, cap, "manifest: a release must hold %s with mode \"0755\"", OTA_DAEMON_PATH);
        goto out;
    }
    rc = GW_OK;
out:
    cJSON_Delete(root);
    return rc;
}

struct ota_file *ota__manifest_find(struct ota_manifest *m, const char *path)
{
    for (unsigned i = 0; i < m->file_count; i++)
        if (strcmp(m->files[i].path, path) == 0)
            return &m->files[i];
    return NULL;
}

int ota__manifest_policy(const struct ota_manifest *m, const char *running, bool force, char *reason, size_t cap,
                         int *http_status)
{
    *http_status = 422;
    if (strcmp(m->name, OTA_NAME) != 0) {
        reason_set(reason, cap, "bundle is for \"%s\", not %s", m->name, OTA_NAME);
        return GW_ERR_UNSUPPORTED;
    }
    if (strcmp(m->arch, ota__arch()) != 0) {
        reason_set(reason, cap, "bundle is built for %s, this gateway is %s", m->arch, ota__arch());
        return GW_ERR_UNSUPPORTED;
    }
    if (strcmp(m->platform, ota__platform()) != 0 && strcmp(m->platform, "any") != 0) {
        reason_set(reason, cap, "bundle is for the %s platform, this gateway is %s", m->platform, ota__platform());
        return GW_ERR_UNSUPPORTED;
    }
    struct ota_version nv, rv, minv;
    ota__version_parse(m->version, &nv);
    if (ota__version_parse(running, &rv) != GW_OK) {
        reason_set(reason, cap, "the running version \"%s\" cannot be compared", running ? running : "");
        return GW_ERR_UNSUPPORTED;
    }
    if (m->min_from[0] && ota__version_parse(m->min_from, &minv) == GW_OK && ota__version_cmp(&rv, &minv) < 0) {
        reason_set(reason, cap, "version %s updates only from %s or newer; this gateway runs %s: install %s first",
                   m->version, m->min_from, running, m->min_from);
        return GW_ERR_UNSUPPORTED;
    }
    int c = ota__version_cmp(&nv, &rv);
    if (c < 0 && !m->allow_downgrade) {
        reason_set(reason, cap, "version %s is older than the running %s (a downgrade needs a bundle that allows it)",
                   m->version, running);
        return GW_ERR_UNSUPPORTED;
    }
    if (c == 0 && !force) {
        *http_status = 409;
        reason_set(reason, cap, "version %s is already running", m->version);
        return GW_ERR_STATE;
    }
    *http_status = 200;
    return GW_OK;
}
