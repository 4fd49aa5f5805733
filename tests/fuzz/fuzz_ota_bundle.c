/* Fuzz target: the update bundle reader. The input is an uploaded bundle (a tar stream), pulled
 * by the streaming reader every upload and `--install-update` goes through (ota__extract:
 * libarchive, the secure-extraction rules, the manifest, sizes and SHA-256) in chunks whose sizes
 * depend on the input, into a staging directory of a scratch data directory; a late signature
 * from a key that is not trusted is then refused (ota__extract_verify_late). There is no
 * multipart parser on main yet (POST /api/ota/upload answers 501): the upload will feed this same
 * reader. Invariants: a refusal has a code, an HTTP status and a reason, and leaves no staging
 * directory; an accepted bundle has every listed file in its staging directory with the listed
 * size, nothing else escapes it, and freeing it leaves the releases directory empty.
 * Corpus: tests/fuzz/corpus/ota_bundle (tests/fuzz/tools/make-ota-seeds.py: good bundles and
 * the refusals of tests/unit/test_ota_bundle.c). */
#define _GNU_SOURCE
#include "fuzz_support.h"
#include "gw_error.h"
#include "gw_log.h"
#include "ota_internal.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char releases[512], keys[512], outside[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    const char *dir = fuzz_scratch_dir("fuzz_ota_bundle");
    snprintf(releases, sizeof releases, "%s/data/releases", dir);
    snprintf(keys, sizeof keys, "%s/keys", dir);
    snprintf(outside, sizeof outside, "%s/data", dir);
    char data[512];
    snprintf(data, sizeof data, "%s/data", dir);
    FUZZ_ASSERT(mkdir(data, 0755) == 0 && mkdir(releases, 0755) == 0 && mkdir(keys, 0755) == 0);
    return 0;
}

struct source {
    const uint8_t *data;
    size_t size, pos, chunk;
};

static long pull(void *ctx, void *buf, size_t cap)
{
    struct source *s = ctx;
    size_t n = s->size - s->pos;
    if (n > s->chunk)
        n = s->chunk;
    if (n > cap)
        n = cap;
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return (long)n;
}

/* Entries of a directory other than "." and "..". */
static unsigned entries(const char *dir)
{
    DIR *d = opendir(dir);
    FUZZ_ASSERT(d != NULL);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size && i < 64; i++)
        h = (h ^ data[i]) * 16777619u;
    struct source src = { data, size, 0, 1 + h % 20000 };
    struct ota_extract x;
    memset(&x, 0, sizeof x);
    x.releases_dir = releases;
    x.keyring_dir = keys;
    x.running_version = "0.1.0";
    struct ota_result res;
    memset(&res, 0, sizeof res);
    int rc = ota__extract(&x, pull, &src, &res);
    if (getenv("GW_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_ota_bundle: %s (%d): %s\n", gw_strerror(rc), res.http_status, rc ? res.reason : "");
    if (rc != GW_OK) {
        FUZZ_ASSERT(res.error == rc);
        FUZZ_ASSERT(res.http_status >= 400 && res.http_status < 600);
        FUZZ_ASSERT(res.reason[0] != '\0' && memchr(res.reason, '\0', sizeof res.reason));
        FUZZ_ASSERT(x.staging[0] == '\0' && x.staging_fd < 0);
    } else {
        FUZZ_ASSERT(x.staging[0] != '\0' && x.manifest && x.manifest_text);
        FUZZ_ASSERT(strncmp(x.staging, releases, strlen(releases)) == 0);
        for (unsigned i = 0; i < x.manifest->file_count; i++) {
            const struct ota_file *f = &x.manifest->files[i];
            char path[OTA_DIR_MAX + OTA_PATH_MAX + 2];
            snprintf(path, sizeof path, "%s/%s", x.staging, f->path);
            struct stat st;
            FUZZ_ASSERT(f->seen && lstat(path, &st) == 0 && S_ISREG(st.st_mode));
            FUZZ_ASSERT((uint64_t)st.st_size == f->size && (st.st_mode & 07777) == f->mode);
        }
        /* A signature from a key that is not in the keyring: refused, 403. */
        struct ota_signature sig;
        memset(&sig, 0, sizeof sig);
        memcpy(sig.key_id, "0123456789abcdef", OTA_KEY_ID_LEN + 1);
        memset(&res, 0, sizeof res);
        FUZZ_ASSERT(ota__extract_verify_late(&x, &sig, &res) == GW_ERR_AUTH);
        FUZZ_ASSERT(res.http_status == 403);
    }
    ota__extract_free(&x, false);
    /* Nothing left behind, nothing written beside releases/. */
    FUZZ_ASSERT(entries(releases) == 0);
    FUZZ_ASSERT(entries(outside) == 1);
    return 0;
}
