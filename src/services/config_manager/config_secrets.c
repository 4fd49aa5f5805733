/* Web password hashing: PBKDF2-HMAC-SHA256 with a random 16-byte salt, stored as
 * "pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>". */
#define _POSIX_C_SOURCE 200809L
#include "config_internal.h"
#include "gw_error.h"
#include "gw_log.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALT_LEN 16
#define HASH_LEN 32
#define PREFIX "pbkdf2-sha256$"
/* Bounds accepted when verifying: below, the hash is too weak to trust; above, one login would
 * burn seconds of CPU (a hand-edited file must not turn the login into a denial of service). */
#define ITER_MIN 1000
#define ITER_MAX 10000000

static void log_openssl(const char *what)
{
    char buf[160];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    GW_LOGE(MOD, "%s failed: %s", what, e ? buf : "unknown OpenSSL error");
}

/* Standard base64 decoding of src (with padding) into out[cap]; returns the byte count or -1. */
static int b64_decode(const char *src, size_t len, unsigned char *out, size_t cap)
{
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap)
        return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)src, (int)len);
    if (n < 0)
        return -1;
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    if (src[len - 1] == '=')
        n--;
    if (src[len - 2] == '=')
        n--;
    return n;
}

int config_password_hash(const char *password, char *out, size_t cap)
{
    if (!password || !out || cap == 0)
        return GW_ERR_INVAL;
    out[0] = '\0';
    size_t len = strlen(password);
    if (len < CONFIG_WEB_PASSWORD_MIN || len > CONFIG_WEB_PASSWORD_MAX)
        return GW_ERR_INVAL;
    unsigned char salt[SALT_LEN], hash[HASH_LEN];
    if (RAND_bytes(salt, sizeof salt) != 1) {
        log_openssl("RAND_bytes");
        return GW_ERR_IO;
    }
    if (PKCS5_PBKDF2_HMAC(password, (int)len, salt, sizeof salt, CONFIG_PBKDF2_ITERATIONS, EVP_sha256(),
                          sizeof hash, hash) != 1) {
        log_openssl("PKCS5_PBKDF2_HMAC");
        return GW_ERR_IO;
    }
    char salt_b64[4 * ((SALT_LEN + 2) / 3) + 1], hash_b64[4 * ((HASH_LEN + 2) / 3) + 1];
    EVP_EncodeBlock((unsigned char *)salt_b64, salt, sizeof salt);
    EVP_EncodeBlock((unsigned char *)hash_b64, hash, sizeof hash);
    OPENSSL_cleanse(hash, sizeof hash);
    int n = snprintf(out, cap, PREFIX "%d$%s$%s", CONFIG_PBKDF2_ITERATIONS, salt_b64, hash_b64);
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return GW_ERR_OVERFLOW;
    }
    return GW_OK;
}

bool config_password_verify(const char *stored, const char *password)
{
    if (!stored || !password || strncmp(stored, PREFIX, strlen(PREFIX)) != 0)
        return false;
    const char *p = stored + strlen(PREFIX);
    char *end;
    long iter = strtol(p, &end, 10);
    if (end == p || *end != '$' || iter < ITER_MIN || iter > ITER_MAX) {
        GW_LOGW(MOD, "stored web password hash is malformed (iterations)");
        return false;
    }
    const char *salt_s = end + 1;
    const char *dollar = strchr(salt_s, '$');
    if (!dollar) {
        GW_LOGW(MOD, "stored web password hash is malformed (fields)");
        return false;
    }
    unsigned char salt[64], expected[HASH_LEN + 3], actual[HASH_LEN];
    int salt_len = b64_decode(salt_s, (size_t)(dollar - salt_s), salt, sizeof salt);
    int hash_len = b64_decode(dollar + 1, strlen(dollar + 1), expected, sizeof expected);
    if (salt_len < 8 || hash_len != HASH_LEN) {
        GW_LOGW(MOD, "stored web password hash is malformed (base64)");
        return false;
    }
    size_t plen = strnlen(password, CONFIG_WEB_PASSWORD_MAX + 1);
    if (PKCS5_PBKDF2_HMAC(password, (int)plen, salt, salt_len, (int)iter, EVP_sha256(), HASH_LEN, actual) != 1) {
        log_openssl("PKCS5_PBKDF2_HMAC");
        return false;
    }
    bool ok = CRYPTO_memcmp(actual, expected, HASH_LEN) == 0;
    OPENSSL_cleanse(actual, sizeof actual);
    return ok;
}
