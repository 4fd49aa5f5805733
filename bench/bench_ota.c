/* Update bundles: time to verify and stage a bundle (signature, every file hashed, written and
 * fsync'ed, the switch), against a baseline of the same bytes only hashed and copied; and the
 * signature check alone. Prints medians; never fails on speed. */
#define _GNU_SOURCE
#include "bench_util.h"
#include "gw_error.h"
#include "gw_log.h"
#include "ota_internal.h"
#include "ota_update.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUNS 5

struct file {
    const char *path;
    size_t size;
    unsigned mode;
    uint8_t *data;
};

static struct file files[] = {
    { "bin/tinybms-gw", 2u << 20, 0755, NULL },
    { "bin/tinybms-sim", 512u << 10, 0755, NULL },
    { "share/ui/app.js", 1u << 20, 0644, NULL },
    { "share/ui/index.html", 16u << 10, 0644, NULL },
    { "share/ui/style.css", 64u << 10, 0644, NULL },
};
#define NFILES (sizeof files / sizeof files[0])

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s;
    (void)f;
    (void)w;
    return remove(p);
}

static size_t total_bytes(void)
{
    size_t t = 0;
    for (size_t i = 0; i < NFILES; i++)
        t += files[i].size;
    return t;
}

/* Writes the bundle to path and its signature (key k) to path.sig; returns the manifest. */
static char *make_bundle(const char *path, EVP_PKEY *k)
{
    static char m[4096];
    int n = snprintf(m, sizeof m, "{\"format\":1,\"name\":\"tinybms-gw\",\"version\":\"9.0.0\",\"compatible\":"
                                  "{\"architecture\":\"%s\",\"platform\":\"%s\"},\"files\":[",
                     ota__arch(), ota__platform());
    for (size_t i = 0; i < NFILES; i++) {
        uint8_t h[32];
        char hex[65];
        ota__sha256(files[i].data, files[i].size, h);
        ota__hex(h, 32, hex);
        n += snprintf(m + n, sizeof m - (size_t)n, "%s{\"path\":\"%s\",\"size\":%zu,\"sha256\":\"%s\",\"mode\":\"%s\"}",
                      i ? "," : "", files[i].path, files[i].size, hex, files[i].mode == 0755 ? "0755" : "0644");
    }
    snprintf(m + n, sizeof m - (size_t)n, "]}");
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, path);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "manifest.json");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)strlen(m));
    archive_write_header(a, e);
    archive_write_data(a, m, strlen(m));
    for (size_t i = 0; i < NFILES; i++) {
        archive_entry_clear(e);
        archive_entry_set_pathname(e, files[i].path);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, files[i].mode);
        archive_entry_set_size(e, (la_int64_t)files[i].size);
        archive_write_header(a, e);
        archive_write_data(a, files[i].data, files[i].size);
    }
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);

    uint8_t sig[64], raw[32], h[32];
    size_t sl = 64, rl = 32;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestSignInit(ctx, NULL, NULL, NULL, k);
    EVP_DigestSign(ctx, sig, &sl, (const uint8_t *)m, strlen(m));
    EVP_MD_CTX_free(ctx);
    char b64[100], kid[17], mh[65];
    EVP_EncodeBlock((unsigned char *)b64, sig, 64);
    EVP_PKEY_get_raw_public_key(k, raw, &rl);
    ota__sha256(raw, 32, h);
    ota__hex(h, 8, kid);
    ota__sha256(m, strlen(m), h);
    ota__hex(h, 32, mh);
    char sp[512];
    snprintf(sp, sizeof sp, "%s.sig", path);
    FILE *f = fopen(sp, "w");
    fprintf(f, "{\"format\":\"tinybms-gw-signature-1\",\"algorithm\":\"ed25519\",\"key_id\":\"%s\","
               "\"manifest_sha256\":\"%s\",\"signature\":\"%s\"}", kid, mh, b64);
    fclose(f);
    return m;
}

/* Baseline: read the bundle, hash every byte, write it to one file and fsync it. */
static double baseline_ms(const char *bundle, const char *dir)
{
    double t0 = bench_now_us();
    int in = open(bundle, O_RDONLY);
    char out_path[512];
    snprintf(out_path, sizeof out_path, "%s/copy", dir);
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    static uint8_t buf[64 * 1024];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        EVP_DigestUpdate(md, buf, (size_t)n);
        if (write(out, buf, (size_t)n) != n)
            break;
    }
    uint8_t h[32];
    EVP_DigestFinal_ex(md, h, NULL);
    EVP_MD_CTX_free(md);
    fsync(out);
    close(out);
    close(in);
    unlink(out_path);
    return (bench_now_us() - t0) / 1000.0;
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERROR);
    for (size_t i = 0; i < NFILES; i++) {
        files[i].data = malloc(files[i].size);
        for (size_t j = 0; j < files[i].size; j++)
            files[i].data[j] = (uint8_t)(j * 2654435761u >> 13);
    }
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char root[] = "/tmp/gw_bench_ota_XXXXXX";
    if (!mkdtemp(root))
        return 1;
    char bundle[256], keys[256];
    snprintf(bundle, sizeof bundle, "%s/bundle.tar", root);
    snprintf(keys, sizeof keys, "%s/keys", root);
    mkdir(keys, 0755);
    char pub[300];
    snprintf(pub, sizeof pub, "%s/update.pub", keys);
    FILE *f = fopen(pub, "w");
    PEM_write_PUBKEY(f, k);
    fclose(f);
    const char *manifest = make_bundle(bundle, k);
    struct stat bst;
    stat(bundle, &bst);

    double install[RUNS], base[RUNS], verify_us[RUNS];
    for (int r = 0; r < RUNS; r++) {
        char data[300];
        snprintf(data, sizeof data, "%s/data%d", root, r);
        mkdir(data, 0755);
        struct ota_update_options o = { .data_dir = data, .keyring_dir = keys, .config_loaded = true };
        struct ota_update *ota;
        if (ota_update_create(&o, &ota) != GW_OK)
            return 1;
        struct ota_result res;
        double t0 = bench_now_us();
        int rc = ota_update_install_file(ota, bundle, NULL, 0, &res);
        install[r] = (bench_now_us() - t0) / 1000.0;
        if (rc) {
            fprintf(stderr, "install failed: %s\n", res.reason);
            return 1;
        }
        ota_update_destroy(ota);
        base[r] = baseline_ms(bundle, root);
        nftw(data, rm_cb, 16, FTW_DEPTH | FTW_PHYS);

        char sigtext[512], sp[300];
        snprintf(sp, sizeof sp, "%s.sig", bundle);
        f = fopen(sp, "r");
        size_t sl = fread(sigtext, 1, sizeof sigtext - 1, f);
        fclose(f);
        sigtext[sl] = '\0';
        struct ota_signature sig;
        char why[256];
        t0 = bench_now_us();
        ota__signature_parse(sigtext, sl, &sig, why, sizeof why);
        rc = ota__signature_verify(keys, &sig, manifest, strlen(manifest), why, sizeof why);
        verify_us[r] = bench_now_us() - t0;
        if (rc)
            return 1;
    }
    double mi = bench_median(install, RUNS), mb = bench_median(base, RUNS);
    double mib = (double)bst.st_size / (1024.0 * 1024.0);
    printf("update bundle of %.1f MiB (%zu files, %zu payload bytes): verified and staged in %.1f ms "
           "(%.0f MiB/s); baseline hash + copy + fsync %.1f ms (ratio %.2f)\n",
           mib, NFILES, total_bytes(), mi, mib / (mi / 1000.0), mb, mi / mb);
    printf("manifest signature (Ed25519, keyring of 1 key): %.0f us\n", bench_median(verify_us, RUNS));
    nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    EVP_PKEY_free(k);
    for (size_t i = 0; i < NFILES; i++)
        free(files[i].data);
    return 0;
}
