/* Fuzz target: the configuration loader and validator. The input is a config.json as read from
 * disk (gw_config_from_json, what config_manager_create and a SIGHUP reload run, validation
 * included), and the same text as a user update (config__apply_json in user mode with the
 * chemistry reset, then gw_config_validate, what POST /api/config and an import run under the
 * manager). Invariants: an accepted document validates; it serialises in every mode to JSON that
 * parses, and its storage form loads back to the same configuration (no field differs); the
 * error list stays bounded and serialises.
 * Corpus: tests/fuzz/corpus/config (the defaults' golden file, the examples of the docs, partial
 * updates and the errors of tests/unit/test_config_validate.c). */
#include "config_internal.h"
#include "config_manager.h"
#include "fuzz_support.h"
#include "gw_error.h"
#include "gw_log.h"

#include <cjson/cJSON.h>
#include <string.h>

static struct gw_config defaults, cfg, back;
static struct config_errors errors;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    gw_log_set_level(GW_LOG_ERROR); /* unknown keys are logged as warnings: not per input */
    gw_config_set_defaults(&defaults);
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
