/* Fuzz target: the JSON documents of an update. The input is given, as the update code reads
 * them, to the manifest parser (manifest.json, the first entry of a bundle: ota__manifest_parse)
 * and its policy for this gateway (ota__manifest_policy), the detached signature file's parser
 * (BUNDLE.sig: ota__signature_parse), the trial state file's parser (DATA/ota/state.json:
 * ota__state_from_json), and as a text to the version and bundle-path parsers. Invariants: an
 * accepted manifest lists clean, distinct paths with the daemon among them and sums its sizes;
 * the policy answers 409 or 422 with a reason; an accepted state file writes back to a document
 * that reads the same; a clean path is its own clean form and never climbs out.
 * Corpus: tests/fuzz/corpus/ota_manifest (manifests as scripts/sign-update.sh and the unit tests
 * make them, signature files, state files). */
#include "fuzz_support.h"
#include "gw_error.h"
#include "gw_log.h"
#include "ota_internal.h"

#include <string.h>

static struct ota_manifest manifest;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    return 0;
}

static void check_clean(const char *path)
{
    FUZZ_ASSERT(path[0] != '\0' && path[0] != '/' && strlen(path) < OTA_PATH_MAX);
    FUZZ_ASSERT(strstr(path, "//") == NULL);
    char again[OTA_PATH_MAX];
    FUZZ_ASSERT(ota__path_clean(path, again, NULL) == GW_OK && strcmp(again, path) == 0);
    /* No component is "." or "..". */
    const char *p = path;
    while (*p) {
        size_t n = strcspn(p, "/");
        FUZZ_ASSERT(!(n == 1 && p[0] == '.') && !(n == 2 && p[0] == '.' && p[1] == '.'));
        p += n;
        if (*p == '/')
            p++;
    }
}

static void fuzz_manifest(const char *text, size_t size)
{
    char reason[256];
    reason[0] = '\0';
    int rc = ota__manifest_parse(text, size, &manifest, reason, sizeof reason);
    FUZZ_ASSERT(rc == GW_OK || rc == GW_ERR_INVAL);
    if (rc != GW_OK) {
        FUZZ_ASSERT(reason[0] != '\0' && strlen(reason) < sizeof reason);
        return;
    }
    FUZZ_ASSERT(manifest.file_count >= 1 && manifest.file_count <= OTA_MAX_FILES);
    uint64_t total = 0;
    for (unsigned i = 0; i < manifest.file_count; i++) {
        const struct ota_file *f = &manifest.files[i];
        check_clean(f->path);
        FUZZ_ASSERT(f->mode == 0644 || f->mode == 0755);
        FUZZ_ASSERT(strcmp(f->path, OTA_MANIFEST) != 0 && strcmp(f->path, OTA_SIGNATURE) != 0);
        FUZZ_ASSERT(ota__manifest_find(&manifest, f->path) == f); /* listed once */
        total += f->size;
    }
    FUZZ_ASSERT(total == manifest.total_bytes);
    const struct ota_file *daemon = ota__manifest_find(&manifest, OTA_DAEMON_PATH);
    FUZZ_ASSERT(daemon && daemon->mode == 0755);
    struct ota_version v;
    FUZZ_ASSERT(ota__version_parse(manifest.version, &v) == GW_OK);

    static const char *const running[] = { "0.1.0", "1.0.0", "1.0.0-rc1", "99.99.99.99", "bad" };
    for (size_t i = 0; i < sizeof running / sizeof running[0]; i++) {
        for (int force = 0; force < 2; force++) {
            int http = 0;
            reason[0] = '\0';
            rc = ota__manifest_policy(&manifest, running[i], force, reason, sizeof reason, &http);
            FUZZ_ASSERT(rc == GW_OK || rc == GW_ERR_UNSUPPORTED || rc == GW_ERR_STATE);
            if (rc != GW_OK) {
                FUZZ_ASSERT(http == 409 || http == 422);
                FUZZ_ASSERT(reason[0] != '\0');
            }
        }
    }
}

static void fuzz_signature(const char *text, size_t size)
{
    struct ota_signature sig;
    char reason[256];
    if (ota__signature_parse(text, size, &sig, reason, sizeof reason) == GW_OK) {
        FUZZ_ASSERT(strlen(sig.key_id) == OTA_KEY_ID_LEN);
        FUZZ_ASSERT(strspn(sig.key_id, "0123456789abcdef") == OTA_KEY_ID_LEN);
    }
}

static void fuzz_state(const char *text, size_t size)
{
    struct ota_state st, back;
    if (ota__state_from_json(text, size, &st) != GW_OK)
        return;
    FUZZ_ASSERT(st.kind <= OTA_STATE_ROLLED_BACK);
    FUZZ_ASSERT(st.kind == OTA_STATE_NONE || st.release[0] != '\0');
    FUZZ_ASSERT(st.max_starts >= 1 && st.max_starts <= 100 && st.timeout_s >= 1 && st.timeout_s <= 86400);
    char *json = NULL;
    FUZZ_ASSERT(ota__state_to_json(&st, &json) == GW_OK);
    FUZZ_ASSERT(ota__state_from_json(json, strlen(json), &back) == GW_OK);
    FUZZ_ASSERT(back.kind == st.kind && strcmp(back.release, st.release) == 0 &&
                strcmp(back.version, st.version) == 0 && strcmp(back.from_release, st.from_release) == 0 &&
                back.starts == st.starts && back.max_starts == st.max_starts && back.timeout_s == st.timeout_s &&
                strcmp(back.reason, st.reason) == 0 && back.changed_wall_ms == st.changed_wall_ms);
    free(json);
}

static void fuzz_texts(const char *s)
{
    struct ota_version v, w;
    if (ota__version_parse(s, &v) == GW_OK) {
        FUZZ_ASSERT(v.count >= 2 && v.count <= 4);
        FUZZ_ASSERT(ota__version_cmp(&v, &v) == 0);
        static const char *const others[] = { "1.0", "1.0.0-rc1", "0.0.1", "4294967295.1" };
        for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
            if (ota__version_parse(others[i], &w) != GW_OK)
                continue;
            FUZZ_ASSERT(ota__version_cmp(&v, &w) == -ota__version_cmp(&w, &v));
        }
    }
    char clean[OTA_PATH_MAX];
    const char *why = NULL;
    if (ota__path_clean(s, clean, &why) == GW_OK)
        check_clean(clean);
    else
        FUZZ_ASSERT(why != NULL && clean[0] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The documents are read into buffers of their exact length (no NUL after them). */
    fuzz_manifest((const char *)data, size);
    fuzz_signature((const char *)data, size);
    fuzz_state((const char *)data, size);
    char *s = fuzz_strndup(data, size);
    fuzz_texts(s);
    free(s);
    return 0;
}
