/* Internals of ota_update shared by its files and its unit tests only. */
#ifndef OTA_INTERNAL_H
#define OTA_INTERNAL_H

#include "ota_update.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTA_NAME "tinybms-gw"
#define OTA_MANIFEST "manifest.json"
#define OTA_SIGNATURE "manifest.sig"       /* the signature, kept beside the manifest in a release */
#define OTA_MAX_FILES 256
#define OTA_PATH_MAX 160                   /* a bundle entry's path */
#define OTA_VERSION_MAX 32
#define OTA_MANIFEST_MAX (256u * 1024u)    /* bytes */
#define OTA_SIG_MAX 4096u
#define OTA_KEY_ID_LEN 16                  /* hex characters */
#define OTA_DIR_MAX 512
#define OTA_DAEMON_PATH "bin/tinybms-gw"   /* every release has it */
#define OTA_DEFAULT_TIMEOUT_S 120
#define OTA_DEFAULT_MAX_STARTS 3
#define OTA_DEFAULT_CAN_S 5
#define OTA_DEFAULT_MAX_BUNDLE (256ull * 1024 * 1024)
#define OTA_DEFAULT_RESERVE (1024ull * 1024)

/* Environment between the launcher and the daemon it supervises. */
#define OTA_ENV_SUPERVISED "GW_OTA_SUPERVISED"  /* "1": started by a launcher, never launch again */
#define OTA_ENV_NOTIFY_FD "GW_OTA_NOTIFY_FD"    /* on trial: write "wait <why>\n" / "good\n" here */
#define OTA_ENV_RELEASE "GW_OTA_RELEASE"        /* release directory name this process runs from */
#define OTA_ENV_NOTICE "GW_OTA_NOTICE"          /* the rollback that brought this release back */

/* The architecture and platform this program was built for (manifest "compatible"). */
const char *ota__arch(void);
const char *ota__platform(void);

/* ---- versions: "MAJOR.MINOR[.PATCH[.BUILD]][-pre]" ----------------------------------------- */
struct ota_version {
    uint32_t n[4];
    unsigned count;
    char pre[24];        /* "" = a release; a pre-release sorts before the release */
};
/* @retval GW_OK, GW_ERR_INVAL (not a version) */
int ota__version_parse(const char *s, struct ota_version *out);
/* <0, 0, >0 like strcmp (missing numbers are 0: 1.2 == 1.2.0). */
int ota__version_cmp(const struct ota_version *a, const struct ota_version *b);

/* ---- manifest ------------------------------------------------------------------------------ */
struct ota_file {
    char path[OTA_PATH_MAX];
    uint64_t size;
    uint8_t sha256[32];
    uint16_t mode;       /* 0644 or 0755 */
    bool seen;
};

struct ota_manifest {
    char name[32];
    char version[OTA_VERSION_MAX];
    char arch[32];
    char platform[32];
    char min_from[OTA_VERSION_MAX];   /* "" = any */
    bool allow_downgrade;
    char changelog[512];
    unsigned file_count;
    uint64_t total_bytes;
    struct ota_file files[OTA_MAX_FILES];
};

/* A bundle path as the manifest and the tar must name it: relative, '/'-separated, no "." or
 * ".." component, no empty component, [A-Za-z0-9._+-] only, < OTA_PATH_MAX. A leading "./" is
 * dropped first (tar's habit). Writes the clean path to out (cap OTA_PATH_MAX).
 * @retval GW_OK, GW_ERR_INVAL with why (static text) */
int ota__path_clean(const char *in, char *out, const char **why);

/* Parses and checks the structure of a manifest (not its policy). reason gets why not.
 * @retval GW_OK, GW_ERR_INVAL */
int ota__manifest_parse(const char *json, size_t len, struct ota_manifest *m, char *reason, size_t cap);

/* The listed file of that clean path, or NULL. */
struct ota_file *ota__manifest_find(struct ota_manifest *m, const char *path);

/* Policy for this gateway: name, compatible architecture and platform, minimum version to
 * update from, downgrade, same version. running: the version running now. http_status gets
 * 409 (same version) or 422. @retval GW_OK, GW_ERR_UNSUPPORTED, GW_ERR_STATE (same version) */
int ota__manifest_policy(const struct ota_manifest *m, const char *running, bool force, char *reason,
                         size_t cap, int *http_status);

/* ---- signature ----------------------------------------------------------------------------- */
struct ota_signature {
    char key_id[OTA_KEY_ID_LEN + 1];
    uint8_t manifest_sha256[32];
    bool has_manifest_sha256;
    uint8_t sig[64];
};
/* Parses the detached signature file ({"format":"tinybms-gw-signature","key_id":..,
 * "algorithm":"ed25519","manifest_sha256":..,"signature":base64}). @retval GW_OK, GW_ERR_INVAL */
int ota__signature_parse(const char *text, size_t len, struct ota_signature *out, char *reason, size_t cap);

/* Verifies manifest[0..len) with the keyring's key named by sig->key_id.
 * @retval GW_OK, GW_ERR_NOT_FOUND (no such key in the keyring), GW_ERR_AUTH (bad signature,
 *         or a hash for another manifest), GW_ERR_IO (keyring unreadable) */
int ota__signature_verify(const char *keyring_dir, const struct ota_signature *sig, const void *manifest,
                          size_t len, char *reason, size_t cap);

/* Key id of a PEM Ed25519 public key file: the first 8 bytes of SHA-256 over the raw 32-byte key,
 * in hex. @retval GW_OK, GW_ERR_INVAL (not an Ed25519 public key), GW_ERR_IO */
int ota__key_id_of_file(const char *pem_path, char out[OTA_KEY_ID_LEN + 1]);

/* snprintf that says whether it cut (true = truncated; out is always terminated). */
bool ota__fmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* SHA-256 helpers (OpenSSL EVP). */
void ota__sha256(const void *data, size_t len, uint8_t out[32]);
void ota__hex(const uint8_t *bin, size_t n, char *out); /* out: 2n+1 */

/* ---- bundle reader ------------------------------------------------------------------------- */
/* Pull source of bundle bytes: returns bytes put in buf (0 = end of bundle, <0 gw_err). */
typedef long (*ota_pull_fn)(void *ctx, void *buf, size_t cap);

struct ota_extract {
    /* in */
    const char *releases_dir;   /* the staging directory is created here */
    const char *keyring_dir;
    const char *running_version;
    bool force;
    uint64_t max_bundle_bytes, reserve_bytes;
    const struct ota_signature *sig; /* NULL: not known yet; verified in ota__extract_finish */
    /* out */
    char staging[OTA_DIR_MAX];  /* created staging directory ("" none) */
    int staging_fd;             /* holds a flock on it so a cleanup leaves it alone (-1 none) */
    struct ota_manifest *manifest;
    char *manifest_text;        /* malloc'd copy (kept for a late signature) */
    size_t manifest_len;
    bool manifest_verified;
    uint64_t bytes;
    /* progress (read by other threads without a lock: advisory) */
    volatile unsigned files_done;
};

/* Reads a whole bundle through pull into a new staging directory, every check made on the way
 * (res gets the refusal). Without a signature in x->sig the manifest is checked later by
 * ota__extract_verify_late. On failure the staging directory is removed.
 * @retval GW_OK or the refusal's code */
int ota__extract(struct ota_extract *x, ota_pull_fn pull, void *ctx, struct ota_result *res);

/* Verifies the manifest of an extracted bundle with a signature given after the upload, then
 * its policy. @retval GW_OK or the refusal's code */
int ota__extract_verify_late(struct ota_extract *x, const struct ota_signature *sig, struct ota_result *res);

/* Writes the signature file beside the manifest in dir. @retval GW_OK, GW_ERR_IO, GW_ERR_STORAGE */
int ota__write_signature(const char *dir, const void *sig, size_t len);
/* rm -r of dir without following links ("" and NULL ignored). */
void ota__remove_tree(const char *dir);

/* Frees what x holds and removes the staging directory when keep_staging is false. */
void ota__extract_free(struct ota_extract *x, bool keep_staging);

/* Sets res's code, http status and reason (printf-style) and logs the reason once. */
void ota__refuse(struct ota_result *res, int err, int http, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- releases and the trial state ---------------------------------------------------------- */
enum ota_state_kind {
    OTA_STATE_NONE = 0,   /* never updated: the installed program runs */
    OTA_STATE_PENDING,    /* installed and switched, not started yet */
    OTA_STATE_TRIAL,      /* started, not healthy yet */
    OTA_STATE_GOOD,       /* healthy: kept */
    OTA_STATE_FAILED,     /* not healthy: the previous release came back by itself */
    OTA_STATE_ROLLED_BACK /* rolled back by hand */
};
const char *ota__state_name(enum ota_state_kind k);

struct ota_state {
    enum ota_state_kind kind;
    char release[64];        /* directory under releases/ of the update ("" none) */
    char version[OTA_VERSION_MAX];
    char from_release[64];   /* the one before it ("" = the installed program) */
    char from_version[OTA_VERSION_MAX];
    uint32_t starts;         /* trial starts made */
    uint32_t max_starts;
    uint32_t timeout_s;
    char reason[192];        /* failed / rolled back: why */
    int64_t changed_wall_ms;
};

struct ota_paths {
    char data[OTA_DIR_MAX];
    char releases[OTA_DIR_MAX];   /* DATA/releases */
    char ota[OTA_DIR_MAX];        /* DATA/ota */
    char state[OTA_DIR_MAX];      /* DATA/ota/state.json */
    char lock[OTA_DIR_MAX];       /* DATA/ota/lock */
};
int ota__paths(const char *data_dir, struct ota_paths *p);

/* Exclusive lock of DATA/ota/lock (creates ota/). Returns the fd, or a negative gw_err. */
int ota__lock(const struct ota_paths *p);
void ota__unlock(int fd);

/* @retval GW_OK, GW_ERR_NOT_FOUND (no state file: NONE), GW_ERR_INVAL (unreadable: NONE) */
int ota__state_read(const struct ota_paths *p, struct ota_state *st);
int ota__state_write(const struct ota_paths *p, const struct ota_state *st);
int ota__state_to_json(const struct ota_state *st, char **out);
int ota__state_from_json(const char *json, size_t len, struct ota_state *st);

/* Target name of releases/<link> ("" when absent or not a plain name). */
void ota__link_get(const struct ota_paths *p, const char *link, char *out, size_t cap);
/* Points releases/<link> at target atomically (new link + rename + fsync); target "" removes it.
 * @retval GW_OK, GW_ERR_IO, GW_ERR_STORAGE */
int ota__link_set(const struct ota_paths *p, const char *link, const char *target);
/* true when releases/<name>/bin/tinybms-gw is an executable regular file. */
bool ota__release_runnable(const struct ota_paths *p, const char *name);
/* Version in releases/<name>/manifest.json ("" when unreadable). */
void ota__release_version(const struct ota_paths *p, const char *name, char *out, size_t cap);
/* Makes the links agree with the state (after a crash between the state write and a link).
 * Returns the release to run ("" = the installed program). */
void ota__reconcile(const struct ota_paths *p, struct ota_state *st, char *run, size_t cap);
/* Removes every directory of releases/ that neither the state nor a link names, and leftovers
 * (.staging-*, .trash-*, temporary links). Returns how many. */
int ota__cleanup(const struct ota_paths *p, const struct ota_state *st);
/* Renames releases/<name> aside and removes it. */
int ota__release_remove(const struct ota_paths *p, const char *name);
/* Moves the verified staging directory to releases/<name> and switches to it: state pending
 * (from the current release), previous -> old current, current -> name. Under the lock.
 * @retval GW_OK, GW_ERR_STATE (already running / a trial in progress), GW_ERR_IO, GW_ERR_STORAGE */
int ota__switch_to(const struct ota_paths *p, const char *staging, const char *name, const char *version,
                   const char *running_version, uint32_t timeout_s, uint32_t max_starts, struct ota_result *res);
/* Back to state->from_release (automatic: kind FAILED, or by hand: ROLLED_BACK) with reason.
 * @retval GW_OK, GW_ERR_NOT_FOUND, GW_ERR_IO, GW_ERR_STORAGE */
int ota__rollback(const struct ota_paths *p, struct ota_state *st, enum ota_state_kind kind, const char *reason);

/* ---- trial decisions (pure: no OS call) ---------------------------------------------------- */
enum ota_trial_event {
    OTA_EV_BOOT,          /* the launcher starts */
    OTA_EV_HEALTHY,       /* the child said "good" */
    OTA_EV_CHILD_EXIT,    /* the child ended (exit code in input) */
    OTA_EV_DEADLINE       /* trial timeout of this start reached */
};
enum ota_trial_action {
    OTA_ACT_RUN,          /* run `run` (no trial) */
    OTA_ACT_RUN_TRIAL,    /* run `run` on trial (state written with starts+1) */
    OTA_ACT_CONTINUE,     /* keep waiting */
    OTA_ACT_ROLLBACK,     /* roll back with reason, then run the previous (no trial) */
    OTA_ACT_REBOOT,       /* read the state again and decide as at a start */
    OTA_ACT_EXIT          /* end with the child's code */
};
struct ota_trial_input {
    enum ota_trial_event event;
    int exit_code;        /* CHILD_EXIT: code (128+signal when killed) */
    bool stop_requested;  /* CHILD_EXIT: the launcher forwarded SIGTERM/SIGINT */
    bool run_runnable;    /* BOOT: the release the state wants to run exists and is runnable */
    const char *waiting_for; /* DEADLINE: the child's last "wait" text (may be NULL) */
};
struct ota_trial_decision {
    enum ota_trial_action action;
    bool write_state;     /* st was changed and must be written before acting */
    char reason[192];     /* ROLLBACK: why */
};
/* The launcher's decisions, table-tested (tests/unit/test_ota_trial.c). st is updated in place. */
void ota__trial_decide(struct ota_state *st, const struct ota_trial_input *in, struct ota_trial_decision *d);

/* Health of a daemon on trial (pure). */
struct ota_health_input {
    bool config_loaded;
    unsigned packs_required;
    uint32_t packs_seen;      /* bit per pack id that delivered a valid sample */
    bool can_required;
    uint64_t can_first_ms, can_last_ms; /* frames going out: first and last success (0 = none) */
    uint32_t can_ok_ms;       /* frames for this long */
    bool http_required;
    bool http_ok;
};
/* true when healthy; otherwise missing gets what is still missing ("BMS not answering (pack 2),
 * CAN frames not going out"). */
bool ota__health_eval(const struct ota_health_input *in, char *missing, size_t cap);

#endif
