/* The configuration manager: load with recovery, validated updates, atomic saves with a backup,
 * runtime overrides, web password. One mutex guards the state; PBKDF2 and event publishing run
 * outside it so readers (config_manager_get on the BMS thread) never wait for a hash. */
#define _POSIX_C_SOURCE 200809L
#include "config_manager.h"

#include "app_events.h"
#include "atomic_file.h"
#include "config_internal.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_FILE "config.json"
#define CONFIG_FILE_MAX (256u * 1024u) /* far above a real document (~10 KiB) */
#define CONFIG_FILE_MODE 0600
#define PUBLISH_TIMEOUT_MS 2000u /* a change event lost would leave services on old settings: wait for room */

struct config_manager {
    pthread_mutex_t lock;
    struct event_bus *bus;
    char path[GW_PATH_MAX + 32];
    char backup_path[GW_PATH_MAX + 32];  /* the document before the last applied one */
    char applied_path[GW_PATH_MAX + 32]; /* the last applied document: the recovery copy */
    bool allow_defaults;
    struct gw_config stored;    /* what config.json holds */
    struct gw_config effective; /* stored + overrides */
    cJSON *overrides;           /* accumulated override document, NULL when none */
    enum config_load_status status;
    char status_reason[512];
    bool unsaved;               /* the configuration in use could not be written (disk full...) */
    atomic_bool storage_error_raised; /* a STORAGE_ERROR {config} was published... */
    bool storage_ok_due;        /* ...and a save worked since: publish STORAGE_OK (under lock) */
};

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

static void publish_storage_error(struct config_manager *cm, int err, const char *message)
{
    if (!cm->bus)
        return;
    struct app_storage_error ev = { .error = err };
    config__format(ev.module, sizeof ev.module, "config");
    config__format(ev.message, sizeof ev.message, "%s", message);
    atomic_store(&cm->storage_error_raised, true);
    if (event_bus_publish(cm->bus, EVENT_STORAGE_ERROR, &ev, sizeof ev, PUBLISH_TIMEOUT_MS) != GW_OK)
        GW_LOGW(MOD, "could not publish storage error (bus full)");
}

/* After a save that worked following a storage error: STORAGE_OK {config} clears its alert (the
 * alert manager keeps it raised until told so). Called outside the lock. */
static void publish_storage_ok_if_due(struct config_manager *cm)
{
    pthread_mutex_lock(&cm->lock);
    bool due = cm->storage_ok_due;
    cm->storage_ok_due = false;
    pthread_mutex_unlock(&cm->lock);
    if (!due || !cm->bus)
        return;
    struct app_storage_error ev = { .error = GW_OK };
    config__format(ev.module, sizeof ev.module, "config");
    config__format(ev.message, sizeof ev.message, "%s saved again", CONFIG_FILE);
    GW_LOGI(MOD, "%s saved again: storage works", CONFIG_FILE);
    if (event_bus_publish(cm->bus, EVENT_STORAGE_OK, &ev, sizeof ev, PUBLISH_TIMEOUT_MS) != GW_OK) {
        GW_LOGW(MOD, "could not publish storage recovery (bus full): retried at the next save");
        atomic_store(&cm->storage_error_raised, true);
    }
}

static void publish_change(struct config_manager *cm, const struct app_config_change *change)
{
    publish_storage_ok_if_due(cm);
    if (!cm->bus || change->sections == 0)
        return;
    if (event_bus_publish(cm->bus, EVENT_CONFIG_UPDATED, change, sizeof *change, PUBLISH_TIMEOUT_MS) != GW_OK)
        GW_LOGE(MOD, "could not publish config change (bus full for 2 s): %s applies after a restart",
                change->changed);
}

static void log_errors(const char *what, const struct config_errors *errors)
{
    for (uint32_t i = 0; i < errors->count; i++)
        GW_LOGE(MOD, "%s: %s%s%s", what, errors->items[i].path, errors->items[i].path[0] ? ": " : "",
                errors->items[i].message);
    if (errors->dropped)
        GW_LOGE(MOD, "%s: %u more problems not listed", what, errors->dropped);
}

/* "first problem (+N more)" for one-line reasons. */
static void summarize_errors(const struct config_errors *errors, char *buf, size_t cap)
{
    if (errors->count == 0) {
        config__format(buf, cap, "invalid");
        return;
    }
    const struct config_error *e = &errors->items[0];
    uint32_t more = errors->count - 1 + errors->dropped;
    if (more)
        config__format(buf, cap, "%s%s%s (+%u more)", e->path, e->path[0] ? ": " : "", e->message, more);
    else
        config__format(buf, cap, "%s%s%s", e->path, e->path[0] ? ": " : "", e->message);
}

/* Writes cfg as the stored document to path (mode 0600). */
static int write_document(const char *path, const struct gw_config *cfg)
{
    char *text = NULL;
    int rc = gw_config_to_json(cfg, CONFIG_JSON_STORAGE, true, &text);
    if (rc)
        return rc;
    rc = atomic_file_write(path, text, strlen(text), CONFIG_FILE_MODE);
    free(text);
    return rc;
}

/* Saves next as config.json after keeping prev (the good document in use) as config.json.bak,
 * then next as the recovery copy config.json.applied: a later hand edit that breaks config.json
 * then falls back to what was running, not to the document before it.
 * On failure nothing visible changed except possibly a fresher backup of prev. */
static int save_locked(struct config_manager *cm, const struct gw_config *prev, const struct gw_config *next,
                       struct config_errors *errors)
{
    int rc = GW_OK;
    if (prev)
        rc = write_document(cm->backup_path, prev);
    if (rc == GW_OK)
        rc = write_document(cm->path, next);
    if (rc == GW_OK)
        rc = write_document(cm->applied_path, next);
    if (rc != GW_OK) {
        char msg[128];
        config__format(msg, sizeof msg, "cannot save %s: %s", CONFIG_FILE, gw_strerror(rc));
        GW_LOGE(MOD, "%s", msg);
        config_errors_add(errors, "", "%s", msg);
    }
    if (rc == GW_OK) {
        cm->unsaved = false;
        if (atomic_exchange(&cm->storage_error_raised, false))
            cm->storage_ok_due = true;
    }
    return rc;
}

/* effective = stored + overrides, validated. */
static int compute_effective(const struct gw_config *stored, const cJSON *overrides, struct gw_config *out,
                             struct config_errors *errors)
{
    *out = *stored;
    if (!overrides)
        return GW_OK;
    /* Two error lists (9 KB each) on the heap: web server threads have small stacks. */
    struct config_errors *local = calloc(1, sizeof *local), *verr = calloc(1, sizeof *verr);
    if (!local || !verr) {
        free(local);
        free(verr);
        return GW_ERR_NOMEM;
    }
    const struct config_apply_opts opts = { .user = true, .allow_secrets = false };
    unsigned problems = config__apply_json(overrides, out, &opts, local);
    int vrc = gw_config_validate(out, verr);
    for (uint32_t i = 0; i < local->count; i++)
        config_errors_add(errors, local->items[i].path, "%s (runtime override)", local->items[i].message);
    if (vrc != GW_OK)
        for (uint32_t i = 0; i < verr->count; i++)
            config_errors_add(errors, verr->items[i].path, "%s (with runtime overrides)", verr->items[i].message);
    free(local);
    free(verr);
    return (problems || vrc != GW_OK) ? GW_ERR_INVAL : GW_OK;
}

/* Applies a new stored document: save, swap, recompute effective, build the change event.
 * Caller holds the lock and has validated next (and its effective twin). */
static int commit_locked(struct config_manager *cm, const struct gw_config *next, const struct gw_config *next_eff,
                         struct config_errors *errors, struct app_config_change *change)
{
    memset(change, 0, sizeof *change);
    if (gw_config_diff(&cm->stored, next, NULL, 0, NULL) != 0) {
        int rc = save_locked(cm, &cm->stored, next, errors);
        if (rc)
            return rc;
    }
    change->sections =
        gw_config_diff(&cm->effective, next_eff, change->changed, sizeof change->changed, &change->restart_required);
    cm->stored = *next;
    cm->effective = *next_eff;
    return GW_OK;
}

/* Parses a user document; NULL with errors filled when it is not a JSON object. */
static cJSON *parse_document(const char *json, size_t len, struct config_errors *errors)
{
    /* A request body is bounded like the file itself, before cJSON allocates for it. */
    if (json && len > CONFIG_FILE_MAX) {
        config_errors_add(errors, "", "document larger than %u bytes", CONFIG_FILE_MAX);
        return NULL;
    }
    cJSON *root = config__parse(json, len, errors);
    if (!root)
        return NULL;
    if (!cJSON_IsObject(root)) {
        config_errors_add(errors, "", "the document must be a JSON object");
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* Recursively merges src into dst (objects merge, anything else replaces). */
static bool merge_json(cJSON *dst, const cJSON *src)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, src)
    {
        cJSON *existing = cJSON_GetObjectItemCaseSensitive(dst, item->string);
        if (existing && cJSON_IsObject(existing) && cJSON_IsObject(item)) {
            if (!merge_json(existing, item))
                return false;
            continue;
        }
        cJSON *copy = cJSON_Duplicate(item, true);
        if (!copy)
            return false;
        if (existing)
            cJSON_ReplaceItemInObjectCaseSensitive(dst, item->string, copy);
        else
            cJSON_AddItemToObject(dst, item->string, copy);
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Load
 * ------------------------------------------------------------------------------------------- */

/* Reads and validates one file onto defaults. reason gets why it failed. */
static int load_file(const char *path, struct gw_config *out, char *reason, size_t cap)
{
    char *buf = malloc(CONFIG_FILE_MAX);
    if (!buf)
        return GW_ERR_NOMEM;
    size_t len = 0;
    int rc = atomic_file_read(path, buf, CONFIG_FILE_MAX, &len);
    if (rc == GW_OK) {
        struct config_errors *errors = malloc(sizeof *errors);
        if (!errors) {
            free(buf);
            return GW_ERR_NOMEM;
        }
        gw_config_set_defaults(out);
        rc = gw_config_from_json(buf, len, out, errors);
        if (rc != GW_OK) {
            log_errors(path, errors);
            summarize_errors(errors, reason, cap);
            rc = GW_ERR_STORAGE;
        }
        free(errors);
    } else if (rc == GW_ERR_NOT_FOUND) {
        config__format(reason, cap, "missing");
    } else if (rc == GW_ERR_OVERFLOW) {
        config__format(reason, cap, "larger than %u bytes", CONFIG_FILE_MAX);
    } else {
        config__format(reason, cap, "unreadable: %s", gw_strerror(rc));
    }
    free(buf);
    return rc;
}

/* Moves an unusable config.json aside so nobody loses the evidence and the next save cannot
 * overwrite it. */
static void quarantine(const char *path)
{
    char dest[GW_PATH_MAX + 64];
    long long now_s = (long long)(gw_wall_ms() / 1000);
    struct stat st;
    config__format(dest, sizeof dest, "%s.corrupt-%lld", path, now_s);
    for (int i = 1; i < 100 && stat(dest, &st) == 0; i++)
        config__format(dest, sizeof dest, "%s.corrupt-%lld-%d", path, now_s, i);
    if (rename(path, dest) != 0)
        GW_LOGE(MOD, "cannot keep the unusable %s as %s: %s", path, dest, strerror(errno));
    else
        GW_LOGW(MOD, "unusable %s kept as %s", path, dest);
}

static int load(struct config_manager *cm)
{
    char reason[200] = "", bak_reason[200] = "";
    struct gw_config cfg;
    int rc = load_file(cm->path, &cfg, reason, sizeof reason);
    if (rc == GW_ERR_NOMEM)
        return rc;
    if (rc == GW_OK) {
        cm->status = CONFIG_LOAD_OK;
        config__format(cm->status_reason, sizeof cm->status_reason, "loaded %s", cm->path);
        /* What was just loaded is what runs: it becomes the recovery copy. */
        if (write_document(cm->applied_path, &cfg) != GW_OK)
            GW_LOGW(MOD, "cannot write the recovery copy %s", cm->applied_path);
        cm->stored = cfg;
        return GW_OK;
    }

    struct stat st;
    bool primary_missing = rc == GW_ERR_NOT_FOUND;
    bool applied_exists = stat(cm->applied_path, &st) == 0;
    bool backup_exists = stat(cm->backup_path, &st) == 0;
    if (primary_missing && !backup_exists && !applied_exists) {
        /* First start. */
        gw_config_set_defaults(&cfg);
        cm->stored = cfg;
        if (save_locked(cm, NULL, &cfg, NULL) != GW_OK) {
            /* A full or read-only disk must not keep the battery unmanaged: run on the
             * defaults, say so, and raise the storage alert. */
            cm->status = CONFIG_LOAD_DEFAULTS;
            cm->unsaved = true;
            config__format(cm->status_reason, sizeof cm->status_reason,
                           "no %s and the defaults could not be written: running unsaved", CONFIG_FILE);
            GW_LOGE(MOD, "%s", cm->status_reason);
            publish_storage_error(cm, GW_ERR_STORAGE, cm->status_reason);
            return GW_OK;
        }
        cm->status = CONFIG_LOAD_CREATED;
        config__format(cm->status_reason, sizeof cm->status_reason, "no %s: defaults written", CONFIG_FILE);
        GW_LOGI(MOD, "%s", cm->status_reason);
        return GW_OK;
    }

    const char *what = primary_missing ? "missing" : reason;
    GW_LOGE(MOD, "%s: %s", cm->path, primary_missing ? "missing but a recovery copy exists" : reason);
    if (!primary_missing)
        quarantine(cm->path);

    /* The last applied document first (what was running), then the one before it. */
    char applied_reason[200] = "";
    int arc = load_file(cm->applied_path, &cfg, applied_reason, sizeof applied_reason);
    int brc = GW_ERR_NOT_FOUND;
    if (arc == GW_ERR_NOMEM)
        return arc;
    if (arc != GW_OK) {
        brc = load_file(cm->backup_path, &cfg, bak_reason, sizeof bak_reason);
        if (brc == GW_ERR_NOMEM)
            return brc;
    }
    if (arc == GW_OK) {
        cm->status = CONFIG_LOAD_FROM_BACKUP;
        config__format(cm->status_reason, sizeof cm->status_reason,
                       "%s: %s; recovered from %s.applied, the last applied configuration", CONFIG_FILE, what,
                       CONFIG_FILE);
    } else if (brc == GW_OK) {
        cm->status = CONFIG_LOAD_FROM_BACKUP;
        config__format(cm->status_reason, sizeof cm->status_reason,
                       "%s: %s; recovered from %s.bak, the configuration before the last applied one "
                       "(%s.applied: %s)", CONFIG_FILE, what, CONFIG_FILE, CONFIG_FILE, applied_reason);
    } else if (!cm->allow_defaults) {
        /* A configuration existed: coming up on defaults (full currents, no credentials) would
         * be a silent rollback of everything the owner set. */
        GW_LOGE(MOD, "%s: %s; %s.applied: %s; %s.bak: %s: refusing to start on the defaults (fix or "
                     "restore the file, or start once with --allow-defaults to accept them)",
                CONFIG_FILE, what, CONFIG_FILE, applied_reason, CONFIG_FILE, bak_reason);
        return GW_ERR_STORAGE;
    } else {
        cm->status = CONFIG_LOAD_DEFAULTS;
        config__format(cm->status_reason, sizeof cm->status_reason,
                       "%s: %s; no usable recovery copy; using defaults (--allow-defaults)", CONFIG_FILE, what);
        gw_config_set_defaults(&cfg);
    }
    GW_LOGE(MOD, "%s", cm->status_reason);
    /* Write the document in use so the next start reads it; the backup stays as it was. */
    rc = save_locked(cm, NULL, &cfg, NULL);
    if (rc) {
        cm->unsaved = true;
        GW_LOGE(MOD, "running on an unsaved configuration until storage works again");
    }
    cm->stored = cfg;
    publish_storage_error(cm, GW_ERR_STORAGE, cm->status_reason);
    return GW_OK;
}

/* ---------------------------------------------------------------------------------------------
 * API
 * ------------------------------------------------------------------------------------------- */

int config_manager_create(const struct config_manager_options *opts, struct config_manager **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!opts || !opts->data_dir || !*opts->data_dir)
        return GW_ERR_INVAL;
    if (strlen(opts->data_dir) >= GW_PATH_MAX) {
        GW_LOGE(MOD, "data directory path too long (%zu bytes, at most %d)", strlen(opts->data_dir), GW_PATH_MAX - 1);
        return GW_ERR_INVAL;
    }
    if (opts->config_file && strlen(opts->config_file) >= GW_PATH_MAX) {
        GW_LOGE(MOD, "configuration file path too long (%zu bytes, at most %d)", strlen(opts->config_file),
                GW_PATH_MAX - 1);
        return GW_ERR_INVAL;
    }
    struct stat st;
    /* A directory that could not be created is an unsaved run (saving fails with its storage
     * alert, as on a read-only disk); a file in its place is a mistake to fix. */
    if (stat(opts->data_dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        GW_LOGE(MOD, "data directory %s is not a directory", opts->data_dir);
        return GW_ERR_INVAL;
    }
    struct config_manager *cm = calloc(1, sizeof *cm);
    if (!cm)
        return GW_ERR_NOMEM;
    int rc;
    if (pthread_mutex_init(&cm->lock, NULL) != 0) {
        free(cm);
        return GW_ERR_NOMEM;
    }
    cm->bus = opts->bus;
    cm->allow_defaults = opts->allow_defaults;
    if (opts->config_file && *opts->config_file) {
        config__format(cm->path, sizeof cm->path, "%s", opts->config_file);
        config__format(cm->backup_path, sizeof cm->backup_path, "%s.bak", opts->config_file);
        config__format(cm->applied_path, sizeof cm->applied_path, "%s.applied", opts->config_file);
    } else {
        config__format(cm->path, sizeof cm->path, "%s/%s", opts->data_dir, CONFIG_FILE);
        config__format(cm->backup_path, sizeof cm->backup_path, "%s/%s.bak", opts->data_dir, CONFIG_FILE);
        config__format(cm->applied_path, sizeof cm->applied_path, "%s/%s.applied", opts->data_dir, CONFIG_FILE);
    }
    /* Temporaries of writes a crash interrupted; nobody else writes these files yet. */
    atomic_file_cleanup(cm->path);
    atomic_file_cleanup(cm->backup_path);
    atomic_file_cleanup(cm->applied_path);
    rc = load(cm);
    if (rc)
        goto err;
    cm->effective = cm->stored;
    *out = cm;
    return GW_OK;
err:
    pthread_mutex_destroy(&cm->lock);
    free(cm);
    return rc;
}

void config_manager_destroy(struct config_manager *cm)
{
    if (!cm)
        return;
    cJSON_Delete(cm->overrides);
    pthread_mutex_destroy(&cm->lock);
    OPENSSL_cleanse(cm, sizeof *cm); /* passwords in clear live in stored/effective */
    free(cm);
}

enum config_load_status config_manager_load_status(struct config_manager *cm, char *reason, size_t cap)
{
    pthread_mutex_lock(&cm->lock);
    enum config_load_status st = cm->status;
    if (reason && cap)
        config__format(reason, cap, "%s", cm->status_reason);
    pthread_mutex_unlock(&cm->lock);
    return st;
}

bool config_manager_announce_load_status(struct config_manager *cm)
{
    char reason[sizeof cm->status_reason];
    enum config_load_status st = config_manager_load_status(cm, reason, sizeof reason);
    if (((st == CONFIG_LOAD_OK || st == CONFIG_LOAD_CREATED) && !cm->unsaved) || !cm->bus)
        return false;
    publish_storage_error(cm, GW_ERR_STORAGE, reason);
    return true;
}

void config_manager_get(struct config_manager *cm, struct gw_config *out)
{
    pthread_mutex_lock(&cm->lock);
    *out = cm->effective;
    pthread_mutex_unlock(&cm->lock);
}

int config_manager_update_json(struct config_manager *cm, const char *json, size_t len, struct config_errors *errors)
{
    config_errors_clear(errors);
    if (!cm) {
        config_errors_add(errors, "", "no configuration manager");
        return GW_ERR_INVAL;
    }
    cJSON *root = parse_document(json, len, errors);
    if (!root)
        return GW_ERR_INVAL;

    /* Hash a new web password before taking the lock (PBKDF2 is slow on purpose). */
    char hash[sizeof cm->stored.web.password_hash] = "";
    const cJSON *web = cJSON_GetObjectItemCaseSensitive(root, "web");
    const cJSON *pw = cJSON_IsObject(web) ? cJSON_GetObjectItemCaseSensitive(web, "password") : NULL;
    if (cJSON_IsString(pw) && strcmp(pw->valuestring, CONFIG_SECRET_MASK) != 0) {
        size_t plen = strlen(pw->valuestring);
        if (plen >= CONFIG_WEB_PASSWORD_MIN && plen <= CONFIG_WEB_PASSWORD_MAX)
            config_password_hash(pw->valuestring, hash, sizeof hash);
    }

    struct config_errors *local = malloc(sizeof *local);
    struct gw_config *next = malloc(sizeof *next), *next_eff = malloc(sizeof *next_eff);
    struct app_config_change change;
    int rc;
    if (!local || !next || !next_eff) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    config_errors_clear(local);
    const struct config_apply_opts opts = {
        .user = true, .allow_secrets = true, .chemistry_resets = true, .web_password_hash = hash[0] ? hash : NULL
    };

    pthread_mutex_lock(&cm->lock);
    *next = cm->stored;
    unsigned problems = config__apply_json(root, next, &opts, errors);
    /* Validate the stored result even after type errors: one answer lists every problem. */
    int vrc = gw_config_validate(next, local);
    for (uint32_t i = 0; i < local->count; i++)
        config_errors_add(errors, local->items[i].path, "%s", local->items[i].message);
    if (errors)
        errors->dropped += local->dropped;
    if (problems || vrc != GW_OK) {
        pthread_mutex_unlock(&cm->lock);
        rc = GW_ERR_INVAL;
        goto out;
    }
    rc = compute_effective(next, cm->overrides, next_eff, errors);
    if (rc == GW_OK)
        rc = commit_locked(cm, next, next_eff, errors, &change);
    pthread_mutex_unlock(&cm->lock);
    if (rc == GW_OK) {
        if (change.sections)
            GW_LOGI(MOD, "configuration updated: %s%s", change.changed,
                    change.restart_required ? " (restart required)" : "");
        publish_change(cm, &change);
    } else if (rc != GW_ERR_INVAL) {
        publish_storage_error(cm, rc, "cannot save config.json");
    }
out:
    OPENSSL_cleanse(hash, sizeof hash);
    if (rc == GW_ERR_INVAL && errors) {
        /* One line: the caller gets the full list; the log only needs to show it happened. */
        char summary[256];
        summarize_errors(errors, summary, sizeof summary);
        GW_LOGW(MOD, "rejected update: %s", summary);
    }
    free(local);
    free(next);
    free(next_eff);
    cJSON_Delete(root);
    return rc;
}

int config_manager_import_json(struct config_manager *cm, const char *json, size_t len, struct config_errors *errors)
{
    return config_manager_update_json(cm, json, len, errors);
}

int config_manager_set_override_json(struct config_manager *cm, const char *json)
{
    if (!cm || !json)
        return GW_ERR_INVAL;
    struct config_errors *errors = calloc(1, sizeof *errors);
    if (!errors)
        return GW_ERR_NOMEM;
    int rc = GW_ERR_INVAL;
    struct gw_config next_eff;
    struct app_config_change change = { 0 };
    cJSON *root = parse_document(json, strlen(json), errors);
    cJSON *merged = NULL;
    if (!root)
        goto out;
    pthread_mutex_lock(&cm->lock);
    merged = cm->overrides ? cJSON_Duplicate(cm->overrides, true) : cJSON_CreateObject();
    if (!merged || !merge_json(merged, root)) {
        pthread_mutex_unlock(&cm->lock);
        rc = GW_ERR_NOMEM;
        goto out;
    }
    rc = compute_effective(&cm->stored, merged, &next_eff, errors);
    if (rc == GW_OK) {
        change.sections = gw_config_diff(&cm->effective, &next_eff, change.changed, sizeof change.changed,
                                         &change.restart_required);
        cJSON_Delete(cm->overrides);
        cm->overrides = merged;
        merged = NULL;
        cm->effective = next_eff;
    }
    pthread_mutex_unlock(&cm->lock);
    if (rc == GW_OK) {
        GW_LOGI(MOD, "runtime override applied (not saved): %s", json);
        publish_change(cm, &change);
    }
out:
    if (rc == GW_ERR_INVAL)
        log_errors("rejected runtime override", errors);
    cJSON_Delete(merged);
    cJSON_Delete(root);
    free(errors);
    return rc;
}

int config_manager_to_json(struct config_manager *cm, enum config_json_mode mode, char **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!cm || (mode != CONFIG_JSON_MASKED && mode != CONFIG_JSON_EXPORT))
        return GW_ERR_INVAL;
    struct gw_config *copy = malloc(sizeof *copy);
    if (!copy)
        return GW_ERR_NOMEM;
    config_manager_get(cm, copy);
    int rc = gw_config_to_json(copy, mode, false, out);
    OPENSSL_cleanse(copy, sizeof *copy);
    free(copy);
    return rc;
}

int config_manager_export_json(struct config_manager *cm, char **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!cm)
        return GW_ERR_INVAL;
    struct gw_config *copy = malloc(sizeof *copy);
    if (!copy)
        return GW_ERR_NOMEM;
    config_manager_get(cm, copy);
    int rc = gw_config_to_json(copy, CONFIG_JSON_EXPORT, true, out);
    OPENSSL_cleanse(copy, sizeof *copy);
    free(copy);
    return rc;
}

int config_manager_reset_defaults(struct config_manager *cm)
{
    if (!cm)
        return GW_ERR_INVAL;
    struct gw_config *next = malloc(sizeof *next), *next_eff = malloc(sizeof *next_eff);
    struct config_errors *errors = calloc(1, sizeof *errors);
    struct app_config_change change;
    int rc = GW_ERR_NOMEM;
    if (!next || !next_eff || !errors)
        goto out;
    gw_config_set_defaults(next);
    pthread_mutex_lock(&cm->lock);
    /* The web credential survives a reset (see the header for why). */
    memcpy(next->web.username, cm->stored.web.username, sizeof next->web.username);
    memcpy(next->web.password_hash, cm->stored.web.password_hash, sizeof next->web.password_hash);
    rc = compute_effective(next, cm->overrides, next_eff, errors);
    if (rc != GW_OK) {
        /* An override that only made sense with the old stored values: keep it out, not the
         * reset. Say so; the overrides stay recorded for the next update. */
        log_errors("runtime overrides not applicable after reset", errors);
        *next_eff = *next;
        rc = GW_OK;
    }
    rc = commit_locked(cm, next, next_eff, errors, &change);
    pthread_mutex_unlock(&cm->lock);
    if (rc == GW_OK) {
        GW_LOGI(MOD, "configuration reset to defaults (web credentials kept)");
        publish_change(cm, &change);
    } else {
        publish_storage_error(cm, rc, "cannot save config.json");
    }
out:
    free(next);
    free(next_eff);
    free(errors);
    return rc;
}

int config_manager_reload(struct config_manager *cm, char *reason, size_t cap)
{
    if (!cm)
        return GW_ERR_INVAL;
    char local_reason[160] = "";
    struct gw_config *next = malloc(sizeof *next), *next_eff = malloc(sizeof *next_eff);
    struct config_errors *errors = calloc(1, sizeof *errors);
    struct app_config_change change;
    int rc = GW_ERR_NOMEM;
    if (!next || !next_eff || !errors)
        goto out;
    /* The file as a whole, validated; nothing changes unless all of it is acceptable. */
    rc = load_file(cm->path, next, local_reason, sizeof local_reason);
    if (rc != GW_OK) {
        GW_LOGE(MOD, "reload of %s refused (%s): the running configuration is kept", cm->path, local_reason);
        goto out;
    }
    pthread_mutex_lock(&cm->lock);
    if (!next->web.password_hash[0]) /* a hand-edited file without it keeps the credential */
        memcpy(next->web.password_hash, cm->stored.web.password_hash, sizeof next->web.password_hash);
    rc = compute_effective(next, cm->overrides, next_eff, errors);
    if (rc == GW_OK)
        rc = commit_locked(cm, next, next_eff, errors, &change);
    pthread_mutex_unlock(&cm->lock);
    if (rc != GW_OK) {
        log_errors("reload refused", errors);
        summarize_errors(errors, local_reason, sizeof local_reason);
        goto out;
    }
    GW_LOGI(MOD, "configuration reloaded from %s%s%s%s", cm->path, change.changed[0] ? ": " : " (no change)",
            change.changed, change.restart_required ? " (some changes apply after a restart)" : "");
    if (change.sections)
        publish_change(cm, &change);
out:
    if (reason && cap)
        config__format(reason, cap, "%s", rc == GW_OK ? "reloaded" : local_reason);
    free(next);
    free(next_eff);
    free(errors);
    return rc;
}

/* Hashes password (outside the lock: PBKDF2 is slow on purpose) and stores it. only_first: refuse
 * (GW_ERR_STATE) when a hash already exists, checked under the lock so two racing first-run
 * requests cannot both win. */
static int set_web_password(struct config_manager *cm, const char *password, bool only_first)
{
    if (!cm || !password)
        return GW_ERR_INVAL;
    size_t len = strlen(password);
    if (len < CONFIG_WEB_PASSWORD_MIN || len > CONFIG_WEB_PASSWORD_MAX) {
        GW_LOGW(MOD, "web password refused: %zu characters, must be %d..%d", len, CONFIG_WEB_PASSWORD_MIN,
                CONFIG_WEB_PASSWORD_MAX);
        return GW_ERR_INVAL;
    }
    if (only_first && config_manager_has_web_password(cm))
        return GW_ERR_STATE; /* cheap early answer; the check that counts is under the lock */
    char hash[sizeof cm->stored.web.password_hash];
    int rc = config_password_hash(password, hash, sizeof hash);
    if (rc)
        return rc;
    struct gw_config *next = malloc(sizeof *next);
    struct gw_config *next_eff = malloc(sizeof *next_eff);
    struct app_config_change change;
    if (!next || !next_eff) {
        free(next);
        free(next_eff);
        OPENSSL_cleanse(hash, sizeof hash);
        return GW_ERR_NOMEM;
    }
    pthread_mutex_lock(&cm->lock);
    if (only_first && cm->stored.web.password_hash[0] != '\0') {
        rc = GW_ERR_STATE;
    } else {
        *next = cm->stored;
        memcpy(next->web.password_hash, hash, sizeof hash);
        *next_eff = cm->effective;
        memcpy(next_eff->web.password_hash, hash, sizeof hash);
        rc = commit_locked(cm, next, next_eff, NULL, &change);
    }
    pthread_mutex_unlock(&cm->lock);
    if (rc == GW_OK) {
        GW_LOGI(MOD, "web password %s", only_first ? "set (first run)" : "changed");
        publish_change(cm, &change);
    } else if (rc != GW_ERR_STATE) {
        publish_storage_error(cm, rc, "cannot save config.json");
    }
    OPENSSL_cleanse(hash, sizeof hash);
    free(next);
    free(next_eff);
    return rc;
}

int config_manager_set_web_password(struct config_manager *cm, const char *password)
{
    return set_web_password(cm, password, false);
}

int config_manager_set_first_web_password(struct config_manager *cm, const char *password)
{
    return set_web_password(cm, password, true);
}

bool config_manager_has_web_password(struct config_manager *cm)
{
    if (!cm)
        return false;
    pthread_mutex_lock(&cm->lock);
    bool set = cm->stored.web.password_hash[0] != '\0';
    pthread_mutex_unlock(&cm->lock);
    return set;
}

bool config_manager_verify_web_password(struct config_manager *cm, const char *user, const char *password)
{
    if (!cm || !user || !password)
        return false;
    char username[sizeof cm->stored.web.username];
    char hash[sizeof cm->stored.web.password_hash];
    memset(username, 0, sizeof username); /* bytes after the NUL must compare equal too */
    pthread_mutex_lock(&cm->lock);
    memcpy(username, cm->effective.web.username, strnlen(cm->effective.web.username, sizeof username - 1));
    memcpy(hash, cm->effective.web.password_hash, sizeof hash);
    pthread_mutex_unlock(&cm->lock);
    hash[sizeof hash - 1] = '\0';

    /* Compare the user name over the whole fixed buffer so its length does not leak either. */
    char given[sizeof username];
    memset(given, 0, sizeof given);
    size_t ulen = strnlen(user, sizeof given);
    bool user_fits = ulen < sizeof given;
    memcpy(given, user, user_fits ? ulen : sizeof given - 1);
    bool user_ok = user_fits && CRYPTO_memcmp(given, username, sizeof given) == 0;
    /* Always run the hash, even for a wrong user: the answer time must not tell which part failed. */
    bool password_ok = config_password_verify(hash, password);
    OPENSSL_cleanse(hash, sizeof hash);
    return user_ok && password_ok;
}
