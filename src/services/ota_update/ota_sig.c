/* Detached Ed25519 signature of the manifest, and the keyring of trusted public keys
 * (OpenSSL 3 EVP: one-shot EVP_DigestVerify with no digest, as Ed25519 requires). */
#define _POSIX_C_SOURCE 200809L
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"
#include "ota_internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


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

void ota__sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL))
        memset(out, 0, 32);
}

void ota__hex(const uint8_t *bin, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bin[i] >> 4];
        out[2 * i + 1] = digits[bin[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex32(const char *hex, uint8_t out[32])
{
    if (!hex || strlen(hex) != 64)
        return GW_ERR_INVAL;
    for (int i = 0; i < 64; i++) {
        char c = hex[i];
        int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (v < 0)
            return GW_ERR_INVAL;
        out[i / 2] = (uint8_t)(i % 2 ? (out[i / 2] | v) : (v << 4));
    }
    return GW_OK;
}

int ota__signature_parse(const char *text, size_t len, struct ota_signature *out, char *reason, size_t cap)
{
    memset(out, 0, sizeof *out);
    if (!text || len == 0) {
        reason_set(reason, cap, "bundle is not signed (no signature file)");
        return GW_ERR_INVAL;
    }
    if (len > OTA_SIG_MAX) {
        reason_set(reason, cap, "signature file is %zu bytes, at most %u", len, OTA_SIG_MAX);
        return GW_ERR_INVAL;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    int rc = GW_ERR_INVAL;
    if (!cJSON_IsObject(root)) {
        reason_set(reason, cap, "signature file is not the gateway's format (JSON object expected)");
        goto out;
    }
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(root, "algorithm");
    const cJSON *kid = cJSON_GetObjectItemCaseSensitive(root, "key_id");
    const cJSON *msha = cJSON_GetObjectItemCaseSensitive(root, "manifest_sha256");
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(root, "signature");
    if (!cJSON_IsString(format) || strcmp(format->valuestring, "tinybms-gw-signature-1") != 0) {
        reason_set(reason, cap, "signature file: format must be \"tinybms-gw-signature-1\"");
        goto out;
    }
    if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "ed25519") != 0) {
        reason_set(reason, cap, "signature file: algorithm must be \"ed25519\"");
        goto out;
    }
    if (!cJSON_IsString(kid) || strlen(kid->valuestring) != OTA_KEY_ID_LEN ||
        strspn(kid->valuestring, "0123456789abcdef") != OTA_KEY_ID_LEN) {
        reason_set(reason, cap, "signature file: key_id must be %d lowercase hexadecimal digits", OTA_KEY_ID_LEN);
        goto out;
    }
    memcpy(out->key_id, kid->valuestring, OTA_KEY_ID_LEN + 1);
    if (msha) {
        if (!cJSON_IsString(msha) || hex32(msha->valuestring, out->manifest_sha256) != GW_OK) {
            reason_set(reason, cap, "signature file: manifest_sha256 must be 64 lowercase hexadecimal digits");
            goto out;
        }
        out->has_manifest_sha256 = true;
    }
    /* Base64 of exactly 64 bytes: 88 characters with "==". */
    if (!cJSON_IsString(sig) || strlen(sig->valuestring) != 88) {
        reason_set(reason, cap, "signature file: signature must be the base64 of 64 bytes");
        goto out;
    }
    unsigned char raw[66];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)sig->valuestring, 88);
    if (n != 66 || sig->valuestring[86] != '=' || sig->valuestring[87] != '=') {
        reason_set(reason, cap, "signature file: signature is not valid base64 of 64 bytes");
        goto out;
    }
    memcpy(out->sig, raw, 64);
    rc = GW_OK;
out:
    cJSON_Delete(root);
    return rc;
}

static EVP_PKEY *load_pub(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (k && EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

static int key_id(EVP_PKEY *k, char out[OTA_KEY_ID_LEN + 1])
{
    uint8_t raw[32];
    size_t n = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(k, raw, &n) != 1 || n != 32)
        return GW_ERR_INVAL;
    uint8_t h[32];
    ota__sha256(raw, 32, h);
    ota__hex(h, OTA_KEY_ID_LEN / 2, out);
    return GW_OK;
}

int ota__key_id_of_file(const char *pem_path, char out[OTA_KEY_ID_LEN + 1])
{
    out[0] = '\0';
    EVP_PKEY *k = load_pub(pem_path);
    if (!k)
        return GW_ERR_INVAL;
    int rc = key_id(k, out);
    EVP_PKEY_free(k);
    return rc;
}

/* The keyring key with that id (caller frees), or NULL; *found_keys gets how many keys the
 * directory holds. */
static EVP_PKEY *keyring_find(const char *dir, const char *id, unsigned *found_keys, int *err)
{
    *found_keys = 0;
    *err = GW_OK;
    DIR *d = opendir(dir);
    if (!d) {
        *err = errno == ENOENT ? GW_ERR_NOT_FOUND : GW_ERR_IO;
        return NULL;
    }
    EVP_PKEY *match = NULL;
    struct dirent *e;
    while (!match && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || n < 5 || strcmp(e->d_name + n - 4, ".pub") != 0)
            continue;
        char path[OTA_DIR_MAX + 256];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        EVP_PKEY *k = load_pub(path);
        if (!k) {
            GW_LOGW(MOD, "keyring: %s is not an Ed25519 public key (PEM): ignored", path);
            continue;
        }
        (*found_keys)++;
        char kid[OTA_KEY_ID_LEN + 1];
        if (key_id(k, kid) == GW_OK && strcmp(kid, id) == 0)
            match = k;
        else
            EVP_PKEY_free(k);
    }
    closedir(d);
    return match;
}

int ota__signature_verify(const char *keyring_dir, const struct ota_signature *sig, const void *manifest, size_t len,
                          char *reason, size_t cap)
{
    if (sig->has_manifest_sha256) {
        uint8_t h[32];
        ota__sha256(manifest, len, h);
        if (memcmp(h, sig->manifest_sha256, 32) != 0) {
            reason_set(reason, cap, "signature is for another manifest (the bundle was changed after signing, or "
                                    "the signature belongs to another bundle)");
            return GW_ERR_AUTH;
        }
    }
    unsigned keys = 0;
    int err;
    EVP_PKEY *k = keyring_find(keyring_dir, sig->key_id, &keys, &err);
    if (!k) {
        if (err == GW_ERR_IO) {
            reason_set(reason, cap, "keyring %s cannot be read: %s", keyring_dir, strerror(errno));
            return GW_ERR_IO;
        }
        reason_set(reason, cap, "signed with key %s, which is not in the keyring %s (%u trusted key%s)", sig->key_id,
                   keyring_dir, keys, keys == 1 ? "" : "s");
        return GW_ERR_NOT_FOUND;
    }
    int rc = GW_ERR_AUTH;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k) == 1) {
        int ok = EVP_DigestVerify(ctx, sig->sig, 64, manifest, len);
        if (ok == 1)
            rc = GW_OK;
    }
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    if (rc != GW_OK)
        reason_set(reason, cap, "signature of the manifest does not verify with key %s (tampered manifest or "
                                "wrong signature)", sig->key_id);
    return rc;
}
