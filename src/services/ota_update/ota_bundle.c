/* Reading a bundle: a plain tar through libarchive, streamed from a pull source into a staging
 * directory, with the secure-extraction rules made here (no absolute path, no "..", no link or
 * device of any kind, nothing the manifest does not list, sizes and SHA-256 as listed). */
#define _GNU_SOURCE
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"
#include "ota_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define BLOCK (64u * 1024u)

void ota__refuse(struct ota_result *res, int err, int http, const char *fmt, ...)
{
    char buf[sizeof res->reason];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        buf[0] = '\0';
    GW_LOGW(MOD, "update refused: %s", buf);
    if (!res)
        return;
    res->error = err;
    res->http_status = http;
    memcpy(res->reason, buf, sizeof buf);
}

/* ---- the pull source as libarchive's read callback ---------------------------------------- */

struct pull_ctx {
    ota_pull_fn pull;
    void *ctx;
    uint8_t buf[BLOCK];
    uint64_t total, max;
    int err;            /* first error of the source, or GW_ERR_OVERFLOW past max */
};

static la_ssize_t pull_read(struct archive *a, void *client, const void **out)
{
    struct pull_ctx *p = client;
    *out = p->buf;
    long n = p->pull(p->ctx, p->buf, sizeof p->buf);
    if (n < 0) {
        p->err = (int)n;
        archive_set_error(a, EIO, "bundle source failed: %s", gw_strerror((int)n));
        return -1;
    }
    p->total += (uint64_t)n;
    if (p->total > p->max) {
        p->err = GW_ERR_OVERFLOW;
        archive_set_error(a, EFBIG, "bundle larger than the limit");
        return -1;
    }
    return n;
}

/* ---- staging ------------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        GW_LOGW(MOD, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

/* rm -r without following links. */
static void remove_tree(const char *dir)
{
    if (dir && dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int errno_to_gw(int e)
{
    return (e == ENOSPC || e == EDQUOT || e == EFBIG || e == EROFS || e == EACCES || e == EPERM) ? GW_ERR_STORAGE
                                                                                                : GW_ERR_IO;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    if (fd < 0)
        return GW_ERR_IO;
    int rc = fsync(fd) == 0 ? GW_OK : GW_ERR_IO;
    close(fd);
    return rc;
}

/* mkdir -p of path's parent directories inside the staging directory (path is clean). */
static int make_parents(const char *staging, const char *rel)
{
    char path[OTA_DIR_MAX + OTA_PATH_MAX + 2];
    int n = snprintf(path, sizeof path, "%s/%s", staging, rel);
    if (n < 0 || (size_t)n >= sizeof path)
        return GW_ERR_INVAL;
    size_t base = strlen(staging) + 1;
    for (size_t i = base; path[i]; i++) {
        if (path[i] != '/')
            continue;
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            path[i] = '/';
            return errno_to_gw(e);
        }
        struct stat st;
        if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            path[i] = '/';
            return GW_ERR_INVAL;
        }
        path[i] = '/';
    }
    return GW_OK;
}

static int write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int write_small_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[OTA_DIR_MAX + 64];
    ota__fmt(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno_to_gw(errno);
    int e = write_all(fd, data, len);
    if (!e && fsync(fd) != 0)
        e = -errno;
    close(fd);
    return e ? errno_to_gw(-e) : GW_OK;
}

static const char *entry_kind(mode_t type)
{
    switch (type) {
    case AE_IFLNK: return "a symbolic link";
    case AE_IFSOCK: return "a socket";
    case AE_IFCHR: return "a character device";
    case AE_IFBLK: return "a block device";
    case AE_IFIFO: return "a FIFO";
    default: return "not a regular file";
    }
}

/* After the signature: the policy for this gateway and the free space. */
static int check_policy_and_space(struct ota_extract *x, struct ota_result *res)
{
    char why[256];
    int http = 422;
    int rc = ota__manifest_policy(x->manifest, x->running_version, x->force, why, sizeof why, &http);
    if (rc) {
        ota__refuse(res, rc, http, "%s", why);
        return rc;
    }
    if (x->manifest->total_bytes > x->max_bundle_bytes) {
        ota__refuse(res, GW_ERR_OVERFLOW, 413, "bundle holds %llu bytes, the limit is %llu",
                    (unsigned long long)x->manifest->total_bytes, (unsigned long long)x->max_bundle_bytes);
        return GW_ERR_OVERFLOW;
    }
    struct statvfs vfs;
    if (statvfs(x->releases_dir, &vfs) == 0) {
        uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
        uint64_t need = x->manifest->total_bytes + x->reserve_bytes;
        if (avail < need) {
            ota__refuse(res, GW_ERR_STORAGE, 507,
                        "not enough space in %s: the release needs %llu bytes (with %llu kept free), %llu are free",
                        x->releases_dir, (unsigned long long)x->manifest->total_bytes,
                        (unsigned long long)x->reserve_bytes, (unsigned long long)avail);
            return GW_ERR_STORAGE;
        }
    }
    return GW_OK;
}

static int verify_now(struct ota_extract *x, const struct ota_signature *sig, struct ota_result *res)
{
    char why[256];
    if (res)
        gw_text_copy(res->key_id, sizeof res->key_id, sig->key_id);
    int rc = ota__signature_verify(x->keyring_dir, sig, x->manifest_text, x->manifest_len, why, sizeof why);
    if (rc) {
        ota__refuse(res, rc == GW_ERR_NOT_FOUND ? GW_ERR_AUTH : rc, rc == GW_ERR_IO ? 500 : 403, "%s", why);
        return rc == GW_ERR_NOT_FOUND ? GW_ERR_AUTH : rc;
    }
    x->manifest_verified = true;
    GW_LOGI(MOD, "manifest of %s signed by key %s: verified", x->manifest->version, sig->key_id);
    return check_policy_and_space(x, res);
}

/* The first entry: manifest.json, read whole (bounded). */
static int read_manifest(struct ota_extract *x, struct archive *a, struct archive_entry *e, struct ota_result *res)
{
    char clean[OTA_PATH_MAX];
    const char *name = archive_entry_pathname(e);
    if (!name || ota__path_clean(name, clean, NULL) != GW_OK || strcmp(clean, OTA_MANIFEST) != 0) {
        ota__refuse(res, GW_ERR_PROTO, 400, "the first entry of a bundle must be %s, not %s", OTA_MANIFEST,
                    name ? name : "(no name)");
        return GW_ERR_PROTO;
    }
    if (archive_entry_filetype(e) != AE_IFREG) {
        ota__refuse(res, GW_ERR_PROTO, 400, "%s is %s", OTA_MANIFEST, entry_kind(archive_entry_filetype(e)));
        return GW_ERR_PROTO;
    }
    la_int64_t size = archive_entry_size(e);
    if (size <= 0 || size > (la_int64_t)OTA_MANIFEST_MAX) {
        ota__refuse(res, GW_ERR_PROTO, 400, "%s is %lld bytes (1..%u accepted)", OTA_MANIFEST, (long long)size,
                    OTA_MANIFEST_MAX);
        return GW_ERR_PROTO;
    }
    x->manifest_text = malloc((size_t)size + 1);
    if (!x->manifest_text) {
        ota__refuse(res, GW_ERR_NOMEM, 500, "out of memory for the manifest");
        return GW_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < (size_t)size) {
        la_ssize_t n = archive_read_data(a, x->manifest_text + got, (size_t)size - got);
        if (n <= 0) {
            ota__refuse(res, GW_ERR_PROTO, 400, "bundle truncated in %s (%s)", OTA_MANIFEST,
                        n < 0 ? archive_error_string(a) : "end of data");
            return GW_ERR_PROTO;
        }
        got += (size_t)n;
    }
    x->manifest_text[got] = '\0';
    x->manifest_len = got;
    char why[256];
    if (ota__manifest_parse(x->manifest_text, got, x->manifest, why, sizeof why) != GW_OK) {
        ota__refuse(res, GW_ERR_INVAL, 400, "%s", why);
        return GW_ERR_INVAL;
    }
    if (res)
        gw_text_copy(res->version, sizeof res->version, x->manifest->version);
    if (x->manifest->total_bytes > x->max_bundle_bytes) {
        ota__refuse(res, GW_ERR_OVERFLOW, 413, "bundle holds %llu bytes, the limit is %llu",
                    (unsigned long long)x->manifest->total_bytes, (unsigned long long)x->max_bundle_bytes);
        return GW_ERR_OVERFLOW;
    }
    if (x->sig)
        return verify_now(x, x->sig, res);
    return GW_OK;
}

/* One payload entry: a listed regular file, written and hashed. */
static int read_file(struct ota_extract *x, struct archive *a, struct archive_entry *e, const char *clean,
                     struct ota_result *res)
{
    struct ota_file *f = ota__manifest_find(x->manifest, clean);
    if (!f) {
        ota__refuse(res, GW_ERR_PROTO, 400, "bundle holds %s, which the manifest does not list", clean);
        return GW_ERR_PROTO;
    }
    if (f->seen) {
        ota__refuse(res, GW_ERR_PROTO, 400, "bundle holds %s twice", clean);
        return GW_ERR_PROTO;
    }
    if (!archive_entry_size_is_set(e) || archive_entry_size(e) != (la_int64_t)f->size) {
        ota__refuse(res, GW_ERR_CRC, 400, "%s is %lld bytes in the bundle, the manifest says %llu (tampered or damaged)",
                    clean, (long long)archive_entry_size(e), (unsigned long long)f->size);
        return GW_ERR_CRC;
    }
    int rc = make_parents(x->staging, clean);
    if (rc) {
        ota__refuse(res, rc, rc == GW_ERR_STORAGE ? 507 : 400, "cannot create the directory of %s%s", clean,
                    rc == GW_ERR_STORAGE ? " (disk full or read-only: the update was stopped, nothing changed)" : "");
        return rc;
    }
    char path[OTA_DIR_MAX + OTA_PATH_MAX + 2];
    ota__fmt(path, sizeof path, "%s/%s", x->staging, clean);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e2 = errno;
        ota__refuse(res, errno_to_gw(e2), errno_to_gw(e2) == GW_ERR_STORAGE ? 507 : 500, "cannot create %s: %s%s", clean,
                    strerror(e2), e2 == ENOSPC ? " (disk full: the update was stopped, nothing changed)" : "");
        return errno_to_gw(e2);
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        close(fd);
        ota__refuse(res, GW_ERR_NOMEM, 500, "cannot start a SHA-256");
        return GW_ERR_NOMEM;
    }
    static __thread uint8_t buf[BLOCK];
    uint64_t got = 0;
    rc = GW_OK;
    for (;;) {
        la_ssize_t n = archive_read_data(a, buf, sizeof buf);
        if (n == 0)
            break;
        if (n < 0) {
            rc = GW_ERR_PROTO;
            ota__refuse(res, rc, 400, "bundle truncated or damaged in %s (%s)", clean, archive_error_string(a));
            break;
        }
        got += (uint64_t)n;
        EVP_DigestUpdate(md, buf, (size_t)n);
        int w = write_all(fd, buf, (size_t)n);
        if (w) {
            rc = errno_to_gw(-w);
            bool full = -w == ENOSPC || -w == EDQUOT || -w == EFBIG;
            ota__refuse(res, rc, full ? 507 : 500, "cannot write %s: %s%s", clean, strerror(-w),
                        full ? " (disk full: the update was stopped, nothing changed)" : "");
            break;
        }
    }
    uint8_t h[32];
    unsigned hl = 32;
    EVP_DigestFinal_ex(md, h, &hl);
    EVP_MD_CTX_free(md);
    if (rc == GW_OK && got != f->size) {
        rc = GW_ERR_PROTO;
        ota__refuse(res, rc, 400, "bundle truncated in %s: %llu of %llu bytes", clean, (unsigned long long)got,
                    (unsigned long long)f->size);
    }
    if (rc == GW_OK && memcmp(h, f->sha256, 32) != 0) {
        rc = GW_ERR_CRC;
        ota__refuse(res, rc, 400, "%s: SHA-256 does not match the manifest (tampered or damaged)", clean);
    }
    if (rc == GW_OK && fsync(fd) != 0) {
        int e2 = errno;
        rc = errno_to_gw(e2);
        ota__refuse(res, rc, e2 == ENOSPC ? 507 : 500, "cannot write %s: %s", clean, strerror(e2));
    }
    if (rc == GW_OK && fchmod(fd, f->mode) != 0) {
        rc = GW_ERR_IO;
        ota__refuse(res, rc, 500, "cannot set the mode of %s: %s", clean, strerror(errno));
    }
    close(fd);
    if (rc == GW_OK) {
        f->seen = true;
        x->files_done++;
    }
    return rc;
}

/* A directory entry: only a directory that some listed file lives in. */
static int read_dir(struct ota_extract *x, const char *clean, struct ota_result *res)
{
    size_t n = strlen(clean);
    for (unsigned i = 0; i < x->manifest->file_count; i++) {
        const char *p = x->manifest->files[i].path;
        if (strncmp(p, clean, n) == 0 && p[n] == '/')
            return GW_OK; /* created with its files, 0755 */
    }
    ota__refuse(res, GW_ERR_PROTO, 400, "bundle holds the directory %s, which no listed file is in", clean);
    return GW_ERR_PROTO;
}

int ota__extract(struct ota_extract *x, ota_pull_fn pull, void *ctx, struct ota_result *res)
{
    uint64_t t0 = gw_now_ms();
    x->staging[0] = '\0';
    x->staging_fd = -1;
    x->manifest_verified = false;
    x->files_done = 0;
    if (!x->max_bundle_bytes)
        x->max_bundle_bytes = OTA_DEFAULT_MAX_BUNDLE;
    x->manifest = calloc(1, sizeof *x->manifest);
    struct pull_ctx *p = calloc(1, sizeof *p);
    struct archive *a = archive_read_new();
    int rc = GW_OK;
    if (!x->manifest || !p || !a) {
        ota__refuse(res, GW_ERR_NOMEM, 500, "out of memory");
        rc = GW_ERR_NOMEM;
        goto out;
    }
    p->pull = pull;
    p->ctx = ctx;
    /* the tar's own headers and padding: a few KiB per file on top of the payload */
    p->max = x->max_bundle_bytes + OTA_MANIFEST_MAX + (uint64_t)OTA_MAX_FILES * 4096 + 65536;
    archive_read_support_format_tar(a);
    archive_read_support_filter_none(a);
    if (archive_read_open(a, p, NULL, pull_read, NULL) != ARCHIVE_OK) {
        if (p->err && p->err != GW_ERR_OVERFLOW) {
            ota__refuse(res, p->err, 400, "bundle could not be read: %s", gw_strerror(p->err));
            rc = p->err;
        } else {
            ota__refuse(res, GW_ERR_PROTO, 400, "not a tar bundle (%s)", archive_error_string(a));
            rc = GW_ERR_PROTO;
        }
        goto out;
    }
    int n = snprintf(x->staging, sizeof x->staging, "%s/.staging-XXXXXX", x->releases_dir);
    if (n < 0 || (size_t)n >= sizeof x->staging || !mkdtemp(x->staging)) {
        int e = errno;
        x->staging[0] = '\0';
        rc = errno_to_gw(e);
        ota__refuse(res, rc, e == ENOSPC ? 507 : 500, "cannot create a staging directory in %s: %s", x->releases_dir,
                    strerror(e));
        goto out;
    }
    chmod(x->staging, 0755);
    x->staging_fd = open(x->staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (x->staging_fd >= 0)
        flock(x->staging_fd, LOCK_EX);
    struct archive_entry *e;
    bool first = true;
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            if (p->err == GW_ERR_OVERFLOW) {
                ota__refuse(res, GW_ERR_OVERFLOW, 413, "bundle is larger than the limit of %llu bytes",
                            (unsigned long long)x->max_bundle_bytes);
                rc = GW_ERR_OVERFLOW;
            } else if (first) {
                ota__refuse(res, GW_ERR_PROTO, 400, "not a tar bundle (%s)", archive_error_string(a));
                rc = GW_ERR_PROTO;
            } else {
                ota__refuse(res, GW_ERR_PROTO, 400, "bundle truncated or damaged (%s)", archive_error_string(a));
                rc = GW_ERR_PROTO;
            }
            goto out;
        }
        if (first) {
            first = false;
            rc = read_manifest(x, a, e, res);
            if (rc)
                goto out;
            continue;
        }
        const char *name = archive_entry_pathname(e);
        char clean[OTA_PATH_MAX];
        const char *why = NULL;
        if (!name || ota__path_clean(name, clean, &why) != GW_OK) {
            ota__refuse(res, GW_ERR_PROTO, 400, "bundle entry \"%.120s\" refused: %s", name ? name : "", why ? why : "no name");
            rc = GW_ERR_PROTO;
            goto out;
        }
        if (archive_entry_hardlink(e)) {
            ota__refuse(res, GW_ERR_PROTO, 400, "bundle entry %s is a hard link (links are not accepted)", clean);
            rc = GW_ERR_PROTO;
            goto out;
        }
        mode_t type = archive_entry_filetype(e);
        if (type == AE_IFREG)
            rc = read_file(x, a, e, clean, res);
        else if (type == AE_IFDIR)
            rc = read_dir(x, clean, res);
        else {
            const char *target = type == AE_IFLNK ? archive_entry_symlink(e) : NULL;
            ota__refuse(res, GW_ERR_PROTO, 400, "bundle entry %s is %s%s%.100s%s (only files and directories are accepted)",
                        clean, entry_kind(type), target ? " to \"" : "", target ? target : "", target ? "\"" : "");
            rc = GW_ERR_PROTO;
        }
        if (rc)
            goto out;
    }
    if (first) {
        ota__refuse(res, GW_ERR_PROTO, 400, "bundle is empty");
        rc = GW_ERR_PROTO;
        goto out;
    }
    for (unsigned i = 0; i < x->manifest->file_count; i++) {
        if (!x->manifest->files[i].seen) {
            ota__refuse(res, GW_ERR_PROTO, 400, "bundle truncated or incomplete: %s is missing",
                        x->manifest->files[i].path);
            rc = GW_ERR_PROTO;
            goto out;
        }
    }
    rc = write_small_file(x->staging, OTA_MANIFEST, x->manifest_text, x->manifest_len);
    if (!rc)
        rc = fsync_path(x->staging);
    if (rc) {
        ota__refuse(res, rc, rc == GW_ERR_STORAGE ? 507 : 500, "cannot write the staging directory %s", x->staging);
        goto out;
    }
out:
    x->bytes = p ? p->total : 0;
    if (res) {
        res->bytes = x->bytes;
        res->verify_ms = gw_now_ms() - t0;
    }
    if (a)
        archive_read_free(a);
    free(p);
    if (rc && x->staging[0]) {
        remove_tree(x->staging);
        x->staging[0] = '\0';
    }
    if (rc && x->staging_fd >= 0) {
        close(x->staging_fd);
        x->staging_fd = -1;
    }
    return rc;
}

int ota__extract_verify_late(struct ota_extract *x, const struct ota_signature *sig, struct ota_result *res)
{
    if (!x->manifest_text || !x->manifest) {
        ota__refuse(res, GW_ERR_STATE, 400, "no manifest was read");
        return GW_ERR_STATE;
    }
    if (x->manifest_verified)
        return GW_OK;
    return verify_now(x, sig, res);
}

int ota__write_signature(const char *dir, const void *sig, size_t len)
{
    return write_small_file(dir, OTA_SIGNATURE, sig, len);
}

void ota__remove_tree(const char *dir)
{
    remove_tree(dir);
}

void ota__extract_free(struct ota_extract *x, bool keep_staging)
{
    if (!keep_staging && x->staging[0])
        remove_tree(x->staging);
    x->staging[0] = '\0';
    if (x->staging_fd >= 0)
        close(x->staging_fd);
    x->staging_fd = -1;
    free(x->manifest);
    x->manifest = NULL;
    free(x->manifest_text);
    x->manifest_text = NULL;
}
