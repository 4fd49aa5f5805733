/* Signed updates of the gateway's own release, with a trial and an automatic rollback
 * (docs/updates.md for users, docs/dev/updates.md for developers).
 *
 * A bundle is a plain tar: manifest.json first, then the files it lists (SHA-256 and size of
 * each). The manifest is signed with Ed25519; the signature is a detached file naming the key
 * it was made with, and the key must be in the keyring directory. Every byte is streamed into
 * a staging directory under DATA_DIR/releases/ and hashed on the way; nothing is switched
 * before every check passed. Installing makes the new release `current` (atomic symlink
 * rename), marks it "pending", and asks the daemon to restart into it; the launcher
 * (ota_launcher_main) runs it on trial and brings the previous one back when it does not
 * become healthy in time or fails to start three times.
 *
 * Thread-safety: one ota_update object may be used from several threads; at most one upload
 * session runs at a time (a second ota_update_begin answers GW_ERR_BUSY). */
#ifndef OTA_UPDATE_H
#define OTA_UPDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_bus;
struct ota_update;
struct ota_session;

/* Exit code of a supervised daemon that wants to be started again (into the release that is
 * `current` now): after an install or a manual rollback. */
#define OTA_EXIT_RESTART 75

/* ota_update_begin / install flags. */
#define OTA_INSTALL_FORCE 1u  /* accept a bundle of the version already running (another build) */
#define OTA_INSTALL_NO_RESTART 2u /* the caller restarts the daemon itself (the web answers first) */

/* Outcome of an install or a rollback: the code, the HTTP status the web answers with, and a
 * one-line reason for the log, the JSON error and the command line. */
struct ota_result {
    int error;            /* GW_OK or a negative gw_err */
    int http_status;      /* 200 installed; 400 bad/tampered/truncated bundle; 403 signature;
                             409 already running / another update in progress / nothing to roll
                             back to; 413 too large; 422 not for this gateway (architecture,
                             platform, version); 507 disk full; 500 anything else */
    char reason[256];
    char version[32];     /* the bundle's version, once its manifest was read */
    char key_id[24];      /* the key that signed it, once its signature was read */
    uint64_t bytes;       /* bundle bytes taken */
    uint64_t verify_ms;   /* time from the first byte to the end of the checks (gw_now_ms) */
};

struct ota_update_options {
    const char *data_dir;        /* required: releases/ and ota/ live here */
    const char *keyring_dir;     /* trusted public keys (*.pub, PEM); NULL or "" = DATA_DIR/keys */
    struct event_bus *bus;       /* NULL: no events, no health watch (command line) */
    uint32_t trial_timeout_s;    /* written into the trial: healthy within this (0 = 120) */
    uint32_t trial_max_starts;   /* starts allowed to become healthy (0 = 3) */
    uint32_t health_can_s;       /* CAN frames going out for this long count as healthy (0 = 5) */
    /* What "healthy" means for this daemon (only watched when it runs on trial): */
    bool config_loaded;          /* the configuration was loaded (false: never healthy) */
    unsigned pack_count;         /* each pack must deliver a valid sample; 0 = no pack */
    bool can_enabled;            /* CAN frames must go out */
    uint16_t http_port;          /* 0 = no web server; else GET /api/status on 127.0.0.1 must answer */
    uint64_t max_bundle_bytes;   /* 0 = 256 MiB */
    uint64_t reserve_bytes;      /* free space kept on the data disk after extraction (0 = 1 MiB) */
    /* Called (from the installing thread) after a successful install or rollback: the daemon
     * restarts into the new `current` (the app raises SIGUSR1 to itself). NULL: nothing. */
    void (*restart)(void *ctx);
    void *restart_ctx;
    /* Called once (from the health watch's thread) when this release, on trial, was found
     * healthy and confirmed to the launcher. NULL: nothing. ctx: restart_ctx. */
    void (*healthy)(void *ctx);
};

/* Creates the service. When the daemon runs on trial (started by the launcher) and a bus is
 * given, it watches the health signals (EVENT_BMS_DATA_UPDATE, EVENT_CAN_TX_SUCCESS, HTTP) and
 * tells the launcher once healthy; EVENT_OTA_UPDATE_COMPLETED is published then. A rollback
 * that brought this release back is published as EVENT_OTA_UPDATE_ROLLED_BACK, and its text is
 * returned by ota_update_rollback_notice() for the alert.
 * @retval GW_OK, GW_ERR_INVAL (NULL opts/out/data_dir, path too long), GW_ERR_NOMEM, GW_ERR_IO */
int ota_update_create(const struct ota_update_options *opts, struct ota_update **out);

/* Stops the health watch, aborts an open session (its staging directory is removed), frees.
 * NULL accepted. */
void ota_update_destroy(struct ota_update *ota);

/* Opens an upload session. sig (may be NULL, len 0) is the detached signature file; when it is
 * given, the manifest is verified as soon as it arrives and a bad one stops the upload before
 * any payload is written. Otherwise give it with ota_update_set_signature before finish.
 * *out receives the session (owned by the service until finish/abort).
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_BUSY (another session, or a release on trial),
 *         GW_ERR_NOMEM, GW_ERR_IO */
int ota_update_begin(struct ota_update *ota, const void *sig, size_t sig_len, unsigned flags,
                     struct ota_session **out);

/* Gives (or replaces) the detached signature of the session's bundle (copied).
 * @retval GW_OK, GW_ERR_INVAL (NULL, empty or larger than 4 KiB), GW_ERR_STATE (refused already) */
int ota_update_set_signature(struct ota_session *s, const void *sig, size_t len);

/* The bundle's size as the uploader announced it (an HTTP Content-Length), shown as the total of
 * the progress in the status; 0 = unknown. NULL accepted. Thread-safe. */
void ota_update_set_total(struct ota_session *s, uint64_t total_bytes);

/* Streams the next chunk of the bundle (any size; read before return). Bytes are checked and
 * written to the staging directory as they come, and the call returns once they are (so the
 * refusal a chunk causes is that call's answer); the first refusal is sticky (later writes
 * answer the same code without reading, finish gives the reason).
 * @retval GW_OK, or the refusal's code (GW_ERR_INVAL, GW_ERR_AUTH, GW_ERR_CRC, GW_ERR_STORAGE,
 *         GW_ERR_OVERFLOW, GW_ERR_UNSUPPORTED, GW_ERR_PROTO...) */
int ota_update_write(struct ota_session *s, const void *chunk, size_t len);

/* Ends the upload: every check (signature, manifest policy, every file present with its size
 * and hash), then the switch (new `current`, trial pending) and the restart callback. The
 * session is freed; on failure the staging directory is removed and nothing else changed.
 * res (may be NULL) receives the outcome. Returns res->error. */
int ota_update_finish(struct ota_session *s, struct ota_result *res);

/* Drops the session and its staging directory. NULL accepted. */
void ota_update_abort(struct ota_session *s);

/* The same checks and switch for a bundle file (streamed from disk). sig_path NULL = BUNDLE.sig.
 * Returns res->error (res may be NULL). */
int ota_update_install_file(struct ota_update *ota, const char *bundle_path, const char *sig_path,
                            unsigned flags, struct ota_result *res);

/* Manual rollback to the previous release (or the installed program when the update came from
 * it): switched at once, then the restart callback (not with OTA_INSTALL_NO_RESTART in flags:
 * the caller restarts after answering). who: "web", "cli"... for the log. res->reason says why
 * a refusal (http_status 409: nothing to roll back to, or an upload runs).
 * @retval GW_OK, GW_ERR_NOT_FOUND (nothing to roll back to), GW_ERR_BUSY (a session runs),
 *         GW_ERR_IO, GW_ERR_STORAGE */
int ota_update_rollback(struct ota_update *ota, const char *who, unsigned flags, struct ota_result *res);

/* The update status as a JSON document (caller frees with free()): running version, the
 * release directory, the trial state and its reason, the previous release, the last result and
 * the progress of a running upload ("upload": phase, bytes, total, files), and "phase": one of
 * receiving, verifying, installing (an upload runs), switching (installed or rolled back, this
 * process restarts), trial, done (kept), rolled_back, refused (the last upload here; with
 * "phase_reason"), idle. @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM */
int ota_update_status_json(struct ota_update *ota, char **out);

/* True when this process was started by the launcher to run a new release on trial (it has not
 * been found healthy yet at its start). Reads the environment the launcher sets: call it before
 * ota_update_create, which consumes it. */
bool ota_update_launched_on_trial(void);

/* True while a switch to another release is under way: an install or a rollback done by this
 * process, or a release installed (by the command line) and not started yet. What a daemon
 * asked to restart checks to know it stops for a new release. Thread-safe; false for NULL. */
bool ota_update_switch_pending(struct ota_update *ota);

/* The text of the rollback that brought this release back at this start ("" when none).
 * Stable for the life of the object. */
const char *ota_update_rollback_notice(const struct ota_update *ota);

/* The running release's version: the manifest of the release this process runs from, else the
 * version this program was built as. Static string. */
const char *ota_update_running_version(const struct ota_update *ota);

/* The web server's port once it serves plain HTTP on the loopback (0: none): from then on, on
 * trial, GET /api/status answering there is part of the health (http_port of the options, for
 * a web server started after the service). Thread-safe. */
void ota_update_set_http_port(struct ota_update *ota, uint16_t port);

/* The largest bundle a session accepts (max_bundle_bytes, or its default), 0 when ota is NULL:
 * what an upload endpoint bounds its body with. */
uint64_t ota_update_max_bundle_bytes(const struct ota_update *ota);

/* ---- launcher: the first thing main() calls ------------------------------------------------ */

/* Decides which release this start runs (docs/dev/updates.md "Launcher"). Returns -1 when this
 * very process must run the daemon itself (no release installed, or this process was started by
 * a launcher); otherwise it ran the release as a supervised child until it stopped and returns
 * the exit code for main(). argv is passed on unchanged; data_dir as given on the command line.
 * Never returns -1 after having started a child. */
int ota_launcher_main(const char *data_dir, char **argv);

/* Command-line entry points (tinybms-gw --install-update / --rollback / --update-status).
 * Print what happened to stdout (errors to stderr) and return the process exit code. A gateway
 * running on the same data directory is told to restart into the result (SIGUSR1). */
struct ota_cli_options {
    const char *data_dir;
    const char *keyring_dir;     /* NULL = the configuration's update.keyring_dir, else DATA_DIR/keys */
    const char *bundle;          /* --install-update BUNDLE */
    const char *signature;       /* --signature FILE (default BUNDLE.sig) */
    bool force;                  /* --force */
    bool rollback;               /* --rollback */
    bool status;                 /* --update-status */
    uint32_t trial_timeout_s, trial_max_starts, health_can_s; /* 0 = defaults */
};
int ota_update_cli(const struct ota_cli_options *o);

#endif
