#define _POSIX_C_SOURCE 200809L
#include "atomic_file.h"

#include "gw_error.h"
#include "gw_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static int errno_to_gw(int err)
{
    switch (err) {
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
    case EROFS:
    case EACCES:
    case EPERM:
        return GW_ERR_STORAGE;
    case ENOENT:
        return GW_ERR_NOT_FOUND;
    default:
        return GW_ERR_IO;
    }
}

/* Write failures never report NOT_FOUND: a missing directory is an I/O problem of the caller's
 * storage, not an absent item. */
static int write_errno_to_gw(int err)
{
    int rc = errno_to_gw(err);
    return rc == GW_ERR_NOT_FOUND ? GW_ERR_IO : rc;
}

/* Splits path into its directory ("." when none) and base name. */
static int split_path(const char *path, char *dir, size_t dir_cap, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        if (dir_cap < 2)
            return GW_ERR_INVAL;
        strcpy(dir, ".");
        *base = path;
        return GW_OK;
    }
    size_t dlen = (size_t)(slash - path);
    if (dlen == 0)
        dlen = 1; /* "/file": the directory is "/" */
    if (dlen >= dir_cap)
        return GW_ERR_INVAL;
    memcpy(dir, path, dlen);
    dir[dlen] = '\0';
    *base = slash + 1;
    return GW_OK;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) { /* should not happen for regular files; avoid spinning */
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int atomic_file_write(const char *path, const void *data, size_t len, unsigned mode)
{
    if (!path || !*path || (!data && len > 0))
        return GW_ERR_INVAL;

    char dir[4096];
    const char *base;
    if (split_path(path, dir, sizeof dir, &base) != GW_OK || !*base) {
        GW_LOGE(MOD, "invalid path \"%s\"", path);
        return GW_ERR_INVAL;
    }
    char tmp[4096];
    int n = strcmp(dir, "/") == 0 ? snprintf(tmp, sizeof tmp, "/.%s.tmp-XXXXXX", base)
                                   : snprintf(tmp, sizeof tmp, "%s/.%s.tmp-XXXXXX", dir, base);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        GW_LOGE(MOD, "path too long: \"%s\"", path);
        return GW_ERR_INVAL;
    }

    const char *step = "create temporary";
    int fd = mkstemp(tmp);
    if (fd < 0)
        goto err_no_tmp;
    step = "chmod temporary";
    if (fchmod(fd, (mode_t)(mode & 07777)) != 0)
        goto err;
    step = "write temporary";
    if (write_all(fd, data, len) != 0)
        goto err;
    step = "fsync temporary";
    if (fsync(fd) != 0)
        goto err;
    step = "close temporary";
    int close_rc = close(fd);
    fd = -1;
    if (close_rc != 0)
        goto err;
    step = "rename temporary";
    if (rename(tmp, path) != 0)
        goto err;

    /* Make the rename durable. Some file systems refuse fsync on a directory (EINVAL): the data
     * is in place and visible, so only a real I/O error is reported. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        int frc = fsync(dfd);
        int ferr = errno;
        close(dfd);
        if (frc != 0 && ferr == EIO) {
            GW_LOGE(MOD, "fsync directory %s: %s", dir, strerror(ferr));
            return GW_ERR_IO;
        }
    }
    return GW_OK;

err: {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        errno = saved;
    }
err_no_tmp: {
        int saved = errno;
        GW_LOGE(MOD, "cannot write %s (%s): %s", path, step, strerror(saved));
        return write_errno_to_gw(saved);
    }
}

int atomic_file_read(const char *path, char *buf, size_t cap, size_t *len)
{
    if (len)
        *len = 0;
    if (!path || !buf || cap == 0)
        return GW_ERR_INVAL;

    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, before the
     * regular-file check below could refuse it (no effect on regular files). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int saved = errno;
        if (saved != ENOENT)
            GW_LOGE(MOD, "cannot open %s: %s", path, strerror(saved));
        return errno_to_gw(saved);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int saved = errno;
        GW_LOGE(MOD, "cannot stat %s: %s", path, strerror(saved));
        close(fd);
        return GW_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        GW_LOGE(MOD, "cannot read %s: not a regular file", path);
        close(fd);
        return GW_ERR_IO;
    }

    size_t total = 0;
    for (;;) {
        if (total == cap) {
            /* Full: one more byte tells "exactly cap" from "larger" (st_size is not trusted,
             * the file may be growing or be a pseudo-file). */
            char extra;
            ssize_t r;
            do {
                r = read(fd, &extra, 1);
            } while (r < 0 && errno == EINTR);
            if (r < 0)
                goto read_err;
            close(fd);
            if (r > 0) {
                GW_LOGW(MOD, "%s is larger than %zu bytes", path, cap);
                return GW_ERR_OVERFLOW;
            }
            break;
        }
        ssize_t r = read(fd, buf + total, cap - total);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            goto read_err;
        }
        if (r == 0) {
            close(fd);
            break;
        }
        total += (size_t)r;
    }
    if (total < cap)
        buf[total] = '\0';
    if (len)
        *len = total;
    return GW_OK;

read_err: {
        int saved = errno;
        close(fd);
        GW_LOGE(MOD, "cannot read %s: %s", path, strerror(saved));
        return errno_to_gw(saved) == GW_ERR_NOT_FOUND ? GW_ERR_IO : errno_to_gw(saved);
    }
}

int atomic_file_cleanup(const char *path)
{
    if (!path || !*path)
        return 0;
    char dir[4096], prefix[512];
    const char *base;
    if (split_path(path, dir, sizeof dir, &base) != GW_OK || !*base)
        return 0;
    int n = snprintf(prefix, sizeof prefix, ".%s.tmp-", base);
    if (n < 0 || (size_t)n >= sizeof prefix)
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        /* mkstemp's suffix is exactly six characters: anything else is not ours. */
        if (strncmp(e->d_name, prefix, (size_t)n) != 0 || strlen(e->d_name) != (size_t)n + 6)
            continue;
        char victim[4096 + 512];
        if (snprintf(victim, sizeof victim, "%s/%s", dir, e->d_name) >= (int)sizeof victim)
            continue;
        if (unlink(victim) == 0) {
            removed++;
            GW_LOGW(MOD, "removed %s left by an interrupted write", victim);
        }
    }
    closedir(d);
    return removed;
}
