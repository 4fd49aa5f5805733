/* Fuzz target: the configuration loader and validator. The input is a config.json as read from
 * disk (gw_config_from_json, validation included), the same text as a user update
 * (config__apply_json in user mode with the chemistry reset, then gw_config_validate, what
 * POST /api/config and an import run under the manager), and the file itself given to the real
 * loader (config_manager_create over a scratch data directory that also holds a good
 * config.json.applied) and to a SIGHUP reload (config_manager_reload). Invariants: an accepted
 * document validates; it serialises in every mode to JSON that parses, and its storage form loads
 * back to the same configuration (no field differs); the error list stays bounded and serialises;
 * the loader always comes up: with the file when it is acceptable, else with the recovery copy,
 * the bad file kept aside byte for byte and a loadable config.json written; a reload of a bad file
 * changes nothing.
 * Corpus: tests/fuzz/corpus/config (the defaults' golden file, the examples of the docs, partial
 * updates and the errors of tests/unit/test_config_validate.c). */
#include "config_internal.h"
#include "config_manager.h"
#include "fuzz_support.h"
#include "gw_error.h"
#include "gw_log.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct gw_config defaults, cfg, back, loaded, applied_cfg, got;
static struct config_errors errors;
static char dir[400], path[512], applied_path[512];
static char *applied_doc;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    gw_config_set_defaults(&defaults);
    snprintf(dir, sizeof dir, "%s/data", fuzz_scratch_dir("fuzz_config"));
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(applied_path, sizeof applied_path, "%s/config.json.applied", dir);
    FUZZ_ASSERT(mkdir(dir, 0700) == 0);
    /* The recovery copy: what ran before, not the defaults. */
    applied_cfg = defaults;
    applied_cfg.bms.poll_interval_ms = 700;
    FUZZ_ASSERT(gw_config_to_json(&applied_cfg, CONFIG_JSON_STORAGE, true, &applied_doc) == GW_OK);
    return 0;
}

static void check_errors(const struct config_errors *e)
{
    FUZZ_ASSERT(e->count <= CONFIG_ERRORS_MAX);
    for (uint32_t i = 0; i < e->count; i++) {
        FUZZ_ASSERT(memchr(e->items[i].path, '\0', sizeof e->items[i].path) != NULL);
        FUZZ_ASSERT(memchr(e->items[i].message, '\0', sizeof e->items[i].message) != NULL);
        FUZZ_ASSERT(e->items[i].message[0] != '\0');
    }
    char *json = NULL;
    FUZZ_ASSERT(config_errors_to_json(e, &json) == GW_OK);
    cJSON *doc = cJSON_Parse(json);
    FUZZ_ASSERT(doc != NULL);
    cJSON_Delete(doc);
    free(json);
}

/* An accepted configuration: valid, and every serialisation parses; the stored form loads back
 * onto the defaults as the very same configuration. */
static void check_accepted(const struct gw_config *c)
{
    FUZZ_ASSERT(gw_config_validate(c, NULL) == GW_OK);
    for (int mode = CONFIG_JSON_MASKED; mode <= CONFIG_JSON_STORAGE; mode++) {
        char *json = NULL;
        FUZZ_ASSERT(gw_config_to_json(c, (enum config_json_mode)mode, mode == CONFIG_JSON_STORAGE, &json) == GW_OK);
        cJSON *doc = cJSON_Parse(json);
        FUZZ_ASSERT(doc != NULL);
        cJSON_Delete(doc);
        if (mode == CONFIG_JSON_STORAGE) {
            back = defaults;
            int rc = gw_config_from_json(json, strlen(json), &back, &errors);
            if (rc != GW_OK)
                fprintf(stderr, "stored form refused: %s: %s\n", errors.count ? errors.items[0].path : "",
                        errors.count ? errors.items[0].message : "");
            FUZZ_ASSERT(rc == GW_OK);
            char changed[512];
            uint32_t diff = gw_config_diff(c, &back, changed, sizeof changed, NULL);
            if (diff)
                fprintf(stderr, "round trip changed: %s\n", changed);
            FUZZ_ASSERT(diff == 0);
        }
        free(json);
    }
}

static void write_file(const char *p, const void *data, size_t size)
{
    FILE *f = fopen(p, "wb");
    FUZZ_ASSERT(f && fwrite(data, 1, size, f) == size && fclose(f) == 0);
}

/* The file a name starting with prefix in dir holds is data[0..size) (one such file). */
static bool kept_aside(const char *prefix, const uint8_t *data, size_t size)
{
    DIR *d = opendir(dir);
    FUZZ_ASSERT(d);
    struct dirent *e;
    bool found = false;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char p[sizeof dir + 300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        FILE *f = fopen(p, "rb");
        FUZZ_ASSERT(f);
        uint8_t *buf = malloc(size + 1);
        FUZZ_ASSERT(buf);
        size_t n = fread(buf, 1, size + 1, f);
        fclose(f);
        found = n == size && (size == 0 || memcmp(buf, data, size) == 0);
        free(buf);
    }
    closedir(d);
    return found;
}

static void clear_dir(void)
{
    DIR *d = opendir(dir);
    FUZZ_ASSERT(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            char p[sizeof dir + 300];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
}

/* config.json = the input, beside a good config.json.applied: create, then a reload of the input. */
static void fuzz_loader(const uint8_t *data, size_t size, bool accepted)
{
    clear_dir();
    write_file(path, data, size);
    write_file(applied_path, applied_doc, strlen(applied_doc));
    struct config_manager_options o = { .data_dir = dir };
    struct config_manager *cm = NULL;
    FUZZ_ASSERT(config_manager_create(&o, &cm) == GW_OK);
    enum config_load_status st = config_manager_load_status(cm, NULL, 0);
    config_manager_get(cm, &got);
    if (accepted) {
        FUZZ_ASSERT(st == CONFIG_LOAD_OK);
        FUZZ_ASSERT(gw_config_diff(&got, &loaded, NULL, 0, NULL) == 0);
    } else {
        FUZZ_ASSERT(st == CONFIG_LOAD_FROM_BACKUP);
        FUZZ_ASSERT(gw_config_diff(&got, &applied_cfg, NULL, 0, NULL) == 0);
        FUZZ_ASSERT(kept_aside("config.json.corrupt-", data, size));
        /* The document in use was written back: the next start reads it. */
        FILE *f = fopen(path, "rb");
        FUZZ_ASSERT(f);
        static char text[256 * 1024];
        size_t n = fread(text, 1, sizeof text, f);
        fclose(f);
        back = defaults;
        FUZZ_ASSERT(gw_config_from_json(text, n, &back, NULL) == GW_OK);
        FUZZ_ASSERT(gw_config_diff(&back, &applied_cfg, NULL, 0, NULL) == 0);
    }
    /* SIGHUP with the input as the file: taken whole or not at all. */
    write_file(path, data, size);
    int rc = config_manager_reload(cm, NULL, 0);
    struct gw_config *before = accepted ? &loaded : &applied_cfg;
    config_manager_get(cm, &got);
    if (accepted)
        FUZZ_ASSERT(rc == GW_OK);
    else
        FUZZ_ASSERT(rc == GW_ERR_STORAGE && gw_config_diff(&got, before, NULL, 0, NULL) == 0);
    config_manager_destroy(cm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;

    /* The stored document (the file, a reload). */
    cfg = defaults;
    int rc = gw_config_from_json(json, size, &cfg, &errors);
    FUZZ_ASSERT(rc == GW_OK || rc == GW_ERR_INVAL);
    check_errors(&errors);
    if (rc == GW_OK)
        check_accepted(&cfg);
    else
        FUZZ_ASSERT(errors.count > 0);
    loaded = cfg;
    fuzz_loader(data, size, rc == GW_OK);

    /* The same text as a user's update (POST /api/config, import). */
    config_errors_clear(&errors);
    cJSON *root = config__parse(json, size, &errors);
    if (root) {
        cfg = defaults;
        const struct config_apply_opts opts = {
            .user = true, .allow_secrets = true, .chemistry_resets = true,
            .web_password_hash = "pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA==$"
                                 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        };
        unsigned problems = config__apply_json(root, &cfg, &opts, &errors);
        cJSON_Delete(root);
        struct config_errors more;
        int vrc = gw_config_validate(&cfg, &more);
        check_errors(&errors);
        check_errors(&more);
        if (!problems && vrc == GW_OK)
            check_accepted(&cfg);
        /* Whatever happened, the diff against the defaults is well formed. */
        char changed[96];
        bool restart = false;
        (void)gw_config_diff(&defaults, &cfg, changed, sizeof changed, &restart);
        FUZZ_ASSERT(strlen(changed) < sizeof changed);
    } else {
        FUZZ_ASSERT(errors.count == 1);
    }
    return 0;
}
