/* Releases side by side under DATA/releases/, the `current` and `previous` links switched by
 * rename, and the trial state in DATA/ota/state.json (atomic_file). The state file is the
 * commit point: the links are derived from it, so a crash between two steps is repaired by
 * ota__reconcile at the next start. */
#define _GNU_SOURCE
#include "atomic_file.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"
#include "ota_internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>


static const char *const state_names[] = { "none", "pending", "trial", "good", "failed", "rolled_back" };

const char *ota__state_name(enum ota_state_kind k)
{
    return (unsigned)k < sizeof state_names / sizeof state_names[0] ? state_names[k] : "none";
}

int ota__paths(const char *data_dir, struct ota_paths *p)
{
    memset(p, 0, sizeof *p);
    if (!data_dir || !*data_dir || strlen(data_dir) > OTA_DIR_MAX - 32)
        return GW_ERR_INVAL;
    ota__fmt(p->data, sizeof p->data, "%s", data_dir);
    ota__fmt(p->releases, sizeof p->releases, "%s/releases", data_dir);
    ota__fmt(p->ota, sizeof p->ota, "%s/ota", data_dir);
    ota__fmt(p->state, sizeof p->state, "%s/ota/state.json", data_dir);
    ota__fmt(p->lock, sizeof p->lock, "%s/ota/lock", data_dir);
    return GW_OK;
}

int ota__lock(const struct ota_paths *p)
{
    if (mkdir(p->ota, 0750) != 0 && errno != EEXIST)
        return errno == ENOSPC || errno == EROFS || errno == EACCES ? GW_ERR_STORAGE : GW_ERR_IO;
    int fd = open(p->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return errno == ENOSPC || errno == EROFS || errno == EACCES ? GW_ERR_STORAGE : GW_ERR_IO;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return GW_ERR_IO;
        }
    }
    return fd;
}

void ota__unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* drops the flock */
}

/* ---- state file --------------------------------------------------------------------------- */

int ota__state_to_json(const struct ota_state *st, char **out)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return GW_ERR_NOMEM;
    cJSON_AddNumberToObject(o, "format", 1);
    cJSON_AddStringToObject(o, "state", ota__state_name(st->kind));
    cJSON_AddStringToObject(o, "release", st->release);
    cJSON_AddStringToObject(o, "version", st->version);
    cJSON_AddStringToObject(o, "from_release", st->from_release);
    cJSON_AddStringToObject(o, "from_version", st->from_version);
    cJSON_AddNumberToObject(o, "starts", st->starts);
    cJSON_AddNumberToObject(o, "max_starts", st->max_starts);
    cJSON_AddNumberToObject(o, "timeout_s", st->timeout_s);
    cJSON_AddStringToObject(o, "reason", st->reason);
    cJSON_AddNumberToObject(o, "changed_ms", (double)st->changed_wall_ms);
    *out = cJSON_Print(o);
    cJSON_Delete(o);
    return *out ? GW_OK : GW_ERR_NOMEM;
}

static bool plain_name(const char *s)
{
    if (!s[0] || s[0] == '.')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") == strlen(s);
}

static bool json_str(const cJSON *o, const char *key, char *dst, size_t cap)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(it) || strlen(it->valuestring) >= cap)
        return false;
    gw_text_copy(dst, cap, it->valuestring);
    return true;
}

static uint32_t json_u32(const cJSON *o, const char *key, uint32_t dflt, uint32_t max)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > max)
        return dflt;
    return (uint32_t)it->valuedouble;
}

int ota__state_from_json(const char *json, size_t len, struct ota_state *st)
{
    memset(st, 0, sizeof *st);
    cJSON *o = cJSON_ParseWithLength(json, len);
    int rc = GW_ERR_INVAL;
    char kind[24];
    if (!cJSON_IsObject(o) || !json_str(o, "state", kind, sizeof kind) ||
        !json_str(o, "release", st->release, sizeof st->release) ||
        !json_str(o, "version", st->version, sizeof st->version) ||
        !json_str(o, "from_release", st->from_release, sizeof st->from_release) ||
        !json_str(o, "from_version", st->from_version, sizeof st->from_version))
        goto out;
    json_str(o, "reason", st->reason, sizeof st->reason);
    unsigned k;
    for (k = 0; k < sizeof state_names / sizeof state_names[0]; k++)
        if (strcmp(kind, state_names[k]) == 0)
            break;
    if (k == sizeof state_names / sizeof state_names[0])
        goto out;
    st->kind = (enum ota_state_kind)k;
    if ((st->release[0] && !plain_name(st->release)) || (st->from_release[0] && !plain_name(st->from_release)))
        goto out;
    if (st->kind != OTA_STATE_NONE && !st->release[0])
        goto out;
    st->starts = json_u32(o, "starts", 0, 1000);
    st->max_starts = json_u32(o, "max_starts", OTA_DEFAULT_MAX_STARTS, 100);
    st->timeout_s = json_u32(o, "timeout_s", OTA_DEFAULT_TIMEOUT_S, 86400);
    if (!st->max_starts)
        st->max_starts = OTA_DEFAULT_MAX_STARTS;
    if (!st->timeout_s)
        st->timeout_s = OTA_DEFAULT_TIMEOUT_S;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "changed_ms");
    /* A time the file cannot mean (1e300, negative) reads as unknown: converting it would be
     * undefined behaviour. 2^53 ms is the exact range of a JSON number. */
    st->changed_wall_ms = cJSON_IsNumber(ch) && ch->valuedouble >= 0 && ch->valuedouble <= 9007199254740992.0
                              ? (int64_t)ch->valuedouble
                              : 0;
    rc = GW_OK;
out:
    cJSON_Delete(o);
    if (rc)
        memset(st, 0, sizeof *st);
    return rc;
}

int ota__state_read(const struct ota_paths *p, struct ota_state *st)
{
    char buf[4096];
    size_t len = 0;
    int rc = atomic_file_read(p->state, buf, sizeof buf, &len);
    if (rc) {
        memset(st, 0, sizeof *st);
        if (rc != GW_ERR_NOT_FOUND)
            GW_LOGE(MOD, "%s cannot be read: %s: taken as no update", p->state, gw_strerror(rc));
        return rc == GW_ERR_NOT_FOUND ? GW_ERR_NOT_FOUND : GW_ERR_INVAL;
    }
    if (ota__state_from_json(buf, len, st) != GW_OK) {
        GW_LOGE(MOD, "%s is not a valid update state: taken as no update", p->state);
        return GW_ERR_INVAL;
    }
    return GW_OK;
}

int ota__state_write(const struct ota_paths *p, const struct ota_state *st)
{
    if (mkdir(p->ota, 0750) != 0 && errno != EEXIST)
        return GW_ERR_STORAGE;
    struct ota_state copy = *st;
    copy.changed_wall_ms = gw_wall_ms();
    char *json = NULL;
    int rc = ota__state_to_json(&copy, &json);
    if (!rc)
        rc = atomic_file_write(p->state, json, strlen(json), 0640);
    free(json);
    if (rc)
        GW_LOGE(MOD, "cannot write the update state %s: %s", p->state, gw_strerror(rc));
    return rc;
}

/* ---- links -------------------------------------------------------------------------------- */

void ota__link_get(const struct ota_paths *p, const char *link, char *out, size_t cap)
{
    char path[OTA_DIR_MAX + 32];
    ota__fmt(path, sizeof path, "%s/%s", p->releases, link);
    char target[128];
    ssize_t n = readlink(path, target, sizeof target - 1);
    out[0] = '\0';
    if (n <= 0)
        return;
    target[n] = '\0';
    if (plain_name(target))
        gw_text_copy(out, cap, target);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return GW_ERR_IO;
    int rc = fsync(fd) == 0 ? GW_OK : GW_ERR_IO;
    close(fd);
    return rc;
}

int ota__link_set(const struct ota_paths *p, const char *link, const char *target)
{
    char path[OTA_DIR_MAX + 32], tmp[OTA_DIR_MAX + 64];
    ota__fmt(path, sizeof path, "%s/%s", p->releases, link);
    if (!target || !target[0]) {
        if (unlink(path) != 0 && errno != ENOENT) {
            GW_LOGE(MOD, "cannot remove %s: %s", path, strerror(errno));
            return GW_ERR_IO;
        }
        return fsync_dir(p->releases);
    }
    char have[128];
    ota__link_get(p, link, have, sizeof have);
    if (strcmp(have, target) == 0)
        return GW_OK;
    ota__fmt(tmp, sizeof tmp, "%s/.tmp-link-%s-%ld", p->releases, link, (long)getpid());
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        GW_LOGE(MOD, "cannot point %s at %s: %s", path, target, strerror(e));
        return e == ENOSPC || e == EROFS ? GW_ERR_STORAGE : GW_ERR_IO;
    }
    return fsync_dir(p->releases);
}

bool ota__release_runnable(const struct ota_paths *p, const char *name)
{
    if (!name || !plain_name(name))
        return false;
    char path[OTA_DIR_MAX + 300];
    ota__fmt(path, sizeof path, "%s/%s/%s", p->releases, name, OTA_DAEMON_PATH);
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

void ota__release_version(const struct ota_paths *p, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    if (!name || !plain_name(name))
        return;
    char path[OTA_DIR_MAX + 300];
    ota__fmt(path, sizeof path, "%s/%s/%s", p->releases, name, OTA_MANIFEST);
    char *buf = malloc(OTA_MANIFEST_MAX + 1);
    size_t len = 0;
    if (buf && atomic_file_read(path, buf, OTA_MANIFEST_MAX + 1, &len) == GW_OK) {
        cJSON *o = cJSON_ParseWithLength(buf, len);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "version");
        if (cJSON_IsString(v))
            gw_text_copy(out, cap, v->valuestring);
        cJSON_Delete(o);
    }
    free(buf);
}

int ota__release_remove(const struct ota_paths *p, const char *name)
{
    if (!name || !name[0] || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return GW_ERR_INVAL;
    char from[OTA_DIR_MAX + 300], to[OTA_DIR_MAX + 340];
    ota__fmt(from, sizeof from, "%s/%s", p->releases, name);
    if (name[0] == '.' && strncmp(name, ".trash-", 7) == 0) {
        ota__fmt(to, sizeof to, "%s", from);
    } else {
        ota__fmt(to, sizeof to, "%s/.trash-%s-%ld", p->releases, name, (long)getpid());
        ota__remove_tree(to);
        if (rename(from, to) != 0)
            return errno == ENOENT ? GW_ERR_NOT_FOUND : GW_ERR_IO;
        fsync_dir(p->releases);
    }
    ota__remove_tree(to);
    return GW_OK;
}

void ota__reconcile(const struct ota_paths *p, struct ota_state *st, char *run, size_t cap)
{
    char cur[128], prev[128];
    ota__link_get(p, "current", cur, sizeof cur);
    ota__link_get(p, "previous", prev, sizeof prev);
    const char *want_cur = cur, *want_prev = prev;
    switch (st->kind) {
    case OTA_STATE_NONE:
        break;
    case OTA_STATE_PENDING:
    case OTA_STATE_TRIAL:
    case OTA_STATE_GOOD:
        want_cur = st->release;
        want_prev = st->from_release;
        break;
    case OTA_STATE_FAILED:
    case OTA_STATE_ROLLED_BACK:
        want_cur = st->from_release;
        want_prev = "";
        break;
    }
    if (strcmp(want_prev, prev) != 0) {
        GW_LOGI(MOD, "releases/previous -> %s (repairing after an interrupted switch)", want_prev[0] ? want_prev : "none");
        ota__link_set(p, "previous", want_prev);
    }
    if (strcmp(want_cur, cur) != 0) {
        GW_LOGI(MOD, "releases/current -> %s (repairing after an interrupted switch)",
                want_cur[0] ? want_cur : "the installed program");
        ota__link_set(p, "current", want_cur);
    }
    gw_text_copy(run, cap, want_cur);
}

/* A staging directory that an install holds (flock) is in use. */
static bool staging_busy(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    bool busy = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return busy;
}

int ota__cleanup(const struct ota_paths *p, const struct ota_state *st)
{
    char cur[128], prev[128];
    ota__link_get(p, "current", cur, sizeof cur);
    ota__link_get(p, "previous", prev, sizeof prev);
    DIR *d = opendir(p->releases);
    if (!d)
        return 0;
    char names[64][128];
    unsigned count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && count < 64) {
        const char *n = e->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, "current") == 0 || strcmp(n, "previous") == 0)
            continue;
        if (strcmp(n, cur) == 0 || strcmp(n, prev) == 0 || strcmp(n, st->release) == 0 ||
            strcmp(n, st->from_release) == 0)
            continue;
        if (strlen(n) >= sizeof names[0])
            continue;
        char path[OTA_DIR_MAX + 300];
        ota__fmt(path, sizeof path, "%s/%s", p->releases, n);
        if (strncmp(n, ".staging-", 9) == 0 && staging_busy(path))
            continue;
        memcpy(names[count++], n, strlen(n) + 1);
    }
    closedir(d);
    int removed = 0;
    for (unsigned i = 0; i < count; i++) {
        char path[OTA_DIR_MAX + 300];
        ota__fmt(path, sizeof path, "%s/%s", p->releases, names[i]);
        if (strncmp(names[i], ".tmp-link-", 10) == 0) {
            unlink(path);
        } else if (strncmp(names[i], ".staging-", 9) == 0 || strncmp(names[i], ".trash-", 7) == 0) {
            ota__remove_tree(path);
        } else {
            GW_LOGI(MOD, "removing release %s (neither current nor previous)", names[i]);
            ota__release_remove(p, names[i]);
        }
        removed++;
    }
    return removed;
}

/* ---- switching ---------------------------------------------------------------------------- */

int ota__switch_to(const struct ota_paths *p, const char *staging, const char *name, const char *version,
                   const char *running_version, uint32_t timeout_s, uint32_t max_starts, struct ota_result *res)
{
    int lock = ota__lock(p);
    if (lock < 0) {
        ota__refuse(res, lock, 500, "cannot lock %s: %s", p->lock, gw_strerror(lock));
        return lock;
    }
    int rc = GW_OK;
    struct ota_state st;
    ota__state_read(p, &st);
    char cur[128];
    ota__link_get(p, "current", cur, sizeof cur);
    if (st.kind == OTA_STATE_PENDING || st.kind == OTA_STATE_TRIAL) {
        ota__refuse(res, GW_ERR_BUSY, 409, "version %s is on trial: wait until it is confirmed or rolled back",
                    st.version);
        rc = GW_ERR_BUSY;
        goto out;
    }
    if (strcmp(cur, name) == 0) {
        ota__refuse(res, GW_ERR_STATE, 409, "version %s is already running (identical bundle)", version);
        rc = GW_ERR_STATE;
        goto out;
    }
    char dst[OTA_DIR_MAX + 300];
    ota__fmt(dst, sizeof dst, "%s/%s", p->releases, name);
    struct stat sb;
    if (lstat(dst, &sb) == 0)
        ota__release_remove(p, name); /* an older copy of the same build (previous or a leftover) */
    if (rename(staging, dst) != 0) {
        int e = errno;
        rc = e == ENOSPC || e == EROFS ? GW_ERR_STORAGE : GW_ERR_IO;
        ota__refuse(res, rc, 500, "cannot move the staging directory to %s: %s", dst, strerror(e));
        goto out;
    }
    fsync_dir(p->releases);
    struct ota_state next = { .kind = OTA_STATE_PENDING, .starts = 0, .max_starts = max_starts,
                              .timeout_s = timeout_s };
    gw_text_copy(next.release, sizeof next.release, name);
    gw_text_copy(next.version, sizeof next.version, version);
    gw_text_copy(next.from_release, sizeof next.from_release, cur);
    gw_text_copy(next.from_version, sizeof next.from_version, running_version);
    rc = ota__state_write(p, &next); /* the commit point */
    if (rc) {
        ota__refuse(res, rc, rc == GW_ERR_STORAGE ? 507 : 500, "cannot write the update state: %s", gw_strerror(rc));
        ota__release_remove(p, name);
        goto out;
    }
    /* The links follow the state; a crash before they do is repaired by ota__reconcile. */
    ota__link_set(p, "previous", cur);
    ota__link_set(p, "current", name);
    ota__cleanup(p, &next);
    GW_LOGI(MOD, "release %s (%s) is current, %s previous: pending its trial", name, version,
            cur[0] ? cur : "the installed program");
out:
    ota__unlock(lock);
    return rc;
}

int ota__rollback(const struct ota_paths *p, struct ota_state *st, enum ota_state_kind kind, const char *reason)
{
    if (st->kind == OTA_STATE_NONE || st->kind == OTA_STATE_FAILED || st->kind == OTA_STATE_ROLLED_BACK)
        return GW_ERR_NOT_FOUND;
    if (st->from_release[0] && !ota__release_runnable(p, st->from_release)) {
        GW_LOGE(MOD, "previous release %s is missing or damaged: going back to the installed program",
                st->from_release);
        st->from_release[0] = '\0';
    }
    st->kind = kind;
    gw_text_copy(st->reason, sizeof st->reason, reason ? reason : "");
    int rc = ota__state_write(p, st);
    if (rc)
        return rc;
    ota__link_set(p, "current", st->from_release);
    ota__link_set(p, "previous", "");
    ota__cleanup(p, st);
    GW_LOGW(MOD, "update to %s %s: back to %s (%s)", st->version,
            kind == OTA_STATE_FAILED ? "failed" : "rolled back",
            st->from_version[0] ? st->from_version : "the installed program", st->reason);
    return GW_OK;
}
