/* The gateway's configuration: one JSON document (<data_dir>/config.json) mapped to struct
 * gw_config (src/common/gw_config.h), validated as a whole, saved atomically with a backup of
 * the previous good file, with secrets that never leave through a read.
 *
 * JSON layout: {"schema_version":1,"bms":{...},"can":{...},"charge":{...},"mqtt":{...},
 * "web":{...},"network":{...},"alerts":{...},"history":{...},"update":{...}}; field names are the
 * C field names. Enums are strings: bms.cell_order "documented"|"reversed", charge.chemistry
 * "lfp"|"nmc", alert level "info"|"warning"|"error". Curves are {"x":[...],"y":[...]}, alert
 * thresholds {"enabled":true,"value":3.6,"hysteresis":0.05,"level":"error"}.
 * Every field, range and rule is listed in docs/configuration.md.
 *
 * Two layers: pure functions over caller-owned structs (gw_config_validate, gw_config_from_json,
 * gw_config_to_json) and the stateful, thread-safe manager (config_manager_*). */
#ifndef CONFIG_MANAGER_H
#define CONFIG_MANAGER_H

#include "gw_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_bus;

/* ---------------------------------------------------------------------------------------------
 * Validation errors: a bounded list of {field path, reason}.
 * ------------------------------------------------------------------------------------------- */

#define CONFIG_ERRORS_MAX 48
#define CONFIG_ERROR_PATH_MAX 64
#define CONFIG_ERROR_MESSAGE_MAX 128

struct config_error {
    char path[CONFIG_ERROR_PATH_MAX];       /* "mqtt.broker_uri", "charge.charge_by_cell_v.x[2]",
                                             * "" for the document itself (bad JSON) */
    char message[CONFIG_ERROR_MESSAGE_MAX]; /* "must be an integer in 100..10000" */
};

struct config_errors {
    uint32_t count;                         /* entries used in items[] */
    uint32_t dropped;                       /* further problems not stored (list full) */
    struct config_error items[CONFIG_ERRORS_MAX];
};

/* Empties the list. NULL is accepted (no-op). */
void config_errors_clear(struct config_errors *errors);

/* Appends {path, printf(fmt)}; counts it in `dropped` when the list is full. Strings longer than
 * the fields are cut (the path stays recognisable). NULL errors is accepted (no-op). */
void config_errors_add(struct config_errors *errors, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Serialises as {"errors":[{"path":"...","message":"..."},...],"dropped":N}.
 * *out is malloc'ed, NUL-terminated, owned by the caller (free()).
 * @retval GW_OK, GW_ERR_INVAL (NULL argument), GW_ERR_NOMEM */
int config_errors_to_json(const struct config_errors *errors, char **out);

/* ---------------------------------------------------------------------------------------------
 * Pure functions (no state, no I/O, thread-safe).
 * ------------------------------------------------------------------------------------------- */

/* Checks every field's range and format and every coherence rule (soc_empty < soc_full,
 * float < target < cell_limit, alert low < high, curves, TLS pairs...). Appends one entry per
 * problem to errors (may be NULL when only the verdict is needed; cleared first otherwise).
 * @retval GW_OK          valid
 * @retval GW_ERR_INVAL   at least one problem (see errors), or NULL cfg */
int gw_config_validate(const struct gw_config *cfg, struct config_errors *errors);

/* Parses a stored-document JSON text (json[0..len), need not be NUL-terminated) onto *cfg: the
 * fields present replace those in *cfg, absent ones keep their value (start from
 * gw_config_set_defaults() for a whole document). Secrets and web.password_hash are accepted
 * (this is the file format); a masked secret "********" keeps the value in *cfg. Unknown keys are
 * ignored with a warning log. The result is validated; on any problem *cfg is left unchanged and
 * every problem is listed in errors (may be NULL; cleared first).
 * @retval GW_OK
 * @retval GW_ERR_INVAL   bad JSON, wrong types, too-long strings or invalid values */
int gw_config_from_json(const char *json, size_t len, struct gw_config *cfg, struct config_errors *errors);

/* One field of the configuration as a settings form needs it (the table that validates it).
 * Strings are static. */
struct gw_config_field_info {
    const char *section, *name;  /* "bms", "poll_interval_ms" */
    const char *type;            /* bool, integer, number, string, enum, curve ({"x","y"}),
                                  * threshold ({"enabled","value","hysteresis","level"}), packs */
    const char *unit;            /* "ms", "V", "°C"...; curves: the unit of x; "" when none */
    bool has_range;              /* min/max apply: numbers, curve x, threshold value, pack count */
    double min, max;
    double aux;                  /* threshold: largest hysteresis; curve: fewest points */
    unsigned max_length;         /* strings: bytes at most (0: not a string) */
    const char *const *values;   /* enum: the names accepted */
    unsigned value_count;
    bool restart;                /* applies after a restart of the gateway */
    bool secret;                 /* masked on read */
    bool nonempty;               /* "" refused */
    bool storage_only;           /* never in a read, never accepted from a user (web.password_hash) */
};

/* Number of fields in the table (constant). */
size_t gw_config_field_count(void);

/* Field index (0..gw_config_field_count()-1) into *out. Thread-safe.
 * @retval GW_OK, GW_ERR_INVAL (NULL out, index out of range; *out zeroed) */
int gw_config_field_info(size_t index, struct gw_config_field_info *out);

enum config_json_mode {
    CONFIG_JSON_MASKED = 0,  /* for readers (REST GET, MQTT): passwords as "********" (or "" when
                              * unset), web.password_hash omitted */
    CONFIG_JSON_EXPORT = 1,  /* for backup/transfer to another gateway: every secret and
                              * web.password_hash omitted, so an import keeps the target's */
    CONFIG_JSON_STORAGE = 2, /* the file format: everything, secrets in clear (file mode 0600) */
};

/* Serialises cfg. *out is malloc'ed, NUL-terminated, owned by the caller (free()).
 * pretty: indented (the file) or compact (API).
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM */
int gw_config_to_json(const struct gw_config *cfg, enum config_json_mode mode, bool pretty, char **out);

/* Bits of enum app_config_section whose fields differ between a and b, and the comma-separated
 * paths of the differing fields in changed[0..cap) (cut at a field boundary with a trailing
 * ",..." when it does not fit; may be NULL). *restart_required (may be NULL) is set when one of
 * them only applies after a restart (bms.uart_device, can.*, web.http_port...). */
uint32_t gw_config_diff(const struct gw_config *a, const struct gw_config *b, char *changed, size_t cap,
                        bool *restart_required);

/* ---------------------------------------------------------------------------------------------
 * Web password hashing (PBKDF2-HMAC-SHA256, OpenSSL).
 * ------------------------------------------------------------------------------------------- */

#define CONFIG_PBKDF2_ITERATIONS 100000
#define CONFIG_WEB_PASSWORD_MIN 8
#define CONFIG_WEB_PASSWORD_MAX 128
#define CONFIG_SECRET_MASK "********"

/* Hashes password with a fresh 16-byte salt (RAND_bytes) into
 * "pbkdf2-sha256$<iter>$<salt b64>$<hash b64>" (out[cap], cap >= 128 is enough).
 * Takes ~50-100 ms of CPU on purpose.
 * @retval GW_OK, GW_ERR_INVAL (NULL, length outside CONFIG_WEB_PASSWORD_MIN..MAX), GW_ERR_OVERFLOW,
 *         GW_ERR_IO (OpenSSL failure, logged) */
int config_password_hash(const char *password, char *out, size_t cap);

/* True when password matches a hash made by config_password_hash() (constant-time compare).
 * False for any malformed hash (logged once). */
bool config_password_verify(const char *hash, const char *password);

/* ---------------------------------------------------------------------------------------------
 * The manager (thread-safe: every function may be called from any thread).
 * ------------------------------------------------------------------------------------------- */

struct config_manager;

struct config_manager_options {
    const char *data_dir;      /* directory of config.json (must exist); copied */
    const char *config_file;   /* another path for the file (--config); NULL = data_dir/config.json;
                                  its backup is <config_file>.bak beside it */
    struct event_bus *bus;     /* EVENT_CONFIG_UPDATED / EVENT_STORAGE_ERROR; may be NULL */
    bool allow_defaults;       /* a configuration existed but neither it nor its recovery copies
                                  are usable: false = refuse (create fails with GW_ERR_STORAGE),
                                  true = run on the defaults (--allow-defaults) */
};

enum config_load_status {
    CONFIG_LOAD_OK = 0,             /* config.json read and valid */
    CONFIG_LOAD_CREATED = 1,        /* no config.json (first start): defaults written */
    CONFIG_LOAD_FROM_BACKUP = 2,    /* config.json corrupt/unreadable/missing: the last applied
                                       document (config.json.applied), else config.json.bak, used */
    CONFIG_LOAD_DEFAULTS = 3,       /* neither file usable, or the first defaults could not be
                                       written (disk full, read-only): defaults in memory, alert */
};

/* Loads <data_dir>/config.json (see docs/configuration.md "Backups"). A corrupt or unreadable
 * file is kept as config.json.corrupt-<unixtime>, the backup config.json.bak is used instead and
 * EVENT_STORAGE_ERROR {module "config"} is published; defaults are used only when nothing is
 * readable (also published). No web password is ever generated: without a hash the web server
 * serves only its first-run page (config_manager_set_first_web_password, or `tinybms-gw
 * --set-password`). The files are written with mode 0600.
 * @retval GW_OK            *out set (check config_manager_load_status())
 * @retval GW_ERR_INVAL     NULL argument, missing data_dir
 * @retval GW_ERR_NOMEM
 * @retval GW_ERR_STORAGE / GW_ERR_IO  the initial file could not be written (nothing created) */
int config_manager_create(const struct config_manager_options *opts, struct config_manager **out);

/* Frees the manager. NULL is accepted. No call may be running on it. */
void config_manager_destroy(struct config_manager *cm);

/* How the configuration was obtained at create(); reason[0..cap) (may be NULL) receives a
 * sentence for people ("config.json: line 3: bad JSON; recovered from config.json.bak"). */
enum config_load_status config_manager_load_status(struct config_manager *cm, char *reason, size_t cap);

/* Publishes EVENT_STORAGE_ERROR again when the load was not CONFIG_LOAD_OK/CREATED, for services
 * (the alert manager) that subscribed after create(). Returns true when published. */
bool config_manager_announce_load_status(struct config_manager *cm);

/* Copies the EFFECTIVE configuration (stored document + runtime overrides) into *out. */
void config_manager_get(struct config_manager *cm, struct gw_config *out);

/* Merges a partial JSON document (any subset of sections/fields) onto the stored configuration.
 * Everything is checked BEFORE anything is applied: JSON syntax, types, ranges, formats,
 * coherence, both for the stored result and for the effective one (with overrides). A rejected
 * update changes nothing and lists every problem in errors (may be NULL).
 * Special fields: "********" for a secret keeps the stored one; "web":{"password":"..."} sets
 * the web password (hashed, never stored in clear); "web.password_hash" is rejected; changing
 * "charge.chemistry" first resets the charge section to that chemistry's defaults, then applies
 * the other charge fields of the document. Unknown keys are ignored with a warning.
 * On success: saved atomically (previous file kept as config.json.bak), then
 * EVENT_CONFIG_UPDATED {sections, changed paths, restart_required} is published when the
 * effective configuration changed.
 * @retval GW_OK
 * @retval GW_ERR_INVAL     invalid document (see errors), or larger than 256 KiB (refused before
 *                         parsing; the same bound applies to import and overrides)
 * @retval GW_ERR_STORAGE / GW_ERR_IO  saving failed (nothing changed, errors has the reason)
 * @retval GW_ERR_NOMEM */
int config_manager_update_json(struct config_manager *cm, const char *json, size_t len,
                               struct config_errors *errors);

/* Runtime overrides (CLI --uart/--can/--mqtt/--http): a partial NUL-terminated document applied
 * in memory on top of the stored one, never written to config.json, re-applied after every update
 * and reset. Successive calls accumulate (later values win). Validated like an update against the
 * effective result; secrets and web.password are not accepted here. Each problem is logged at
 * ERROR with its field path (the CLI shows the log). Publishes EVENT_CONFIG_UPDATED on change.
 * Example: {"bms":{"uart_device":"/dev/ttyUSB1"},"can":{"enabled":true,"interface":"can0"}}.
 * @retval GW_OK, GW_ERR_INVAL (rejected, nothing changed), GW_ERR_NOMEM */
int config_manager_set_override_json(struct config_manager *cm, const char *json);

/* Serialises the effective configuration: CONFIG_JSON_MASKED for readers, CONFIG_JSON_EXPORT
 * for a backup without secrets (CONFIG_JSON_STORAGE is refused: secrets never leave).
 * *out is malloc'ed, owned by the caller (free()).
 * @retval GW_OK, GW_ERR_INVAL, GW_ERR_NOMEM */
int config_manager_to_json(struct config_manager *cm, enum config_json_mode mode, char **out);

/* Same as config_manager_to_json(cm, CONFIG_JSON_EXPORT, out), pretty-printed. */
int config_manager_export_json(struct config_manager *cm, char **out);

/* Imports an exported document: same as config_manager_update_json() (secrets absent from the
 * export keep the target's values). */
int config_manager_import_json(struct config_manager *cm, const char *json, size_t len,
                               struct config_errors *errors);

/* Re-reads the configuration file (SIGHUP): the whole document is parsed and validated with the
 * runtime overrides applied; when anything is wrong nothing changes and the running
 * configuration is kept. On success the previous document becomes the backup, the file is
 * rewritten in canonical form and EVENT_CONFIG_UPDATED says what changed. reason[0..cap) (may
 * be NULL) receives "reloaded" or why not.
 * @retval GW_OK, GW_ERR_STORAGE (unreadable / invalid file), GW_ERR_NOT_FOUND (no file),
 *         GW_ERR_INVAL (valid file, but invalid with the overrides), GW_ERR_NOMEM */
int config_manager_reload(struct config_manager *cm, char *reason, size_t cap);

/* Restores every default and saves, EXCEPT the web credentials (web.username and
 * web.password_hash): a reset is requested by an authenticated administrator, and dropping the
 * credential would send the UI back to its first-run page, where anyone on the network could
 * claim it. Overrides are re-applied.
 * @retval GW_OK, GW_ERR_STORAGE / GW_ERR_IO (nothing changed) */
int config_manager_reset_defaults(struct config_manager *cm);

/* Sets the web password (CONFIG_WEB_PASSWORD_MIN..MAX bytes): stores only its salted hash, saves.
 * Never logs the password. Slow on purpose (PBKDF2), outside the manager lock.
 * @retval GW_OK, GW_ERR_INVAL (length), GW_ERR_STORAGE / GW_ERR_IO, GW_ERR_NOMEM */
int config_manager_set_web_password(struct config_manager *cm, const char *password);

/* The first-run flow: same as config_manager_set_web_password, but only while no password hash
 * is stored (checked under the lock: of two racing callers, one wins).
 * @retval GW_OK, GW_ERR_STATE (a password exists already), GW_ERR_INVAL (length),
 *         GW_ERR_STORAGE / GW_ERR_IO, GW_ERR_NOMEM */
int config_manager_set_first_web_password(struct config_manager *cm, const char *password);

/* True when a web password hash is stored (false: first run, only the first-run page answers). */
bool config_manager_has_web_password(struct config_manager *cm);

/* True when user equals web.username and password matches the stored hash. Constant time with
 * respect to the password; slow on purpose (PBKDF2). Does not hold the manager lock while hashing. */
bool config_manager_verify_web_password(struct config_manager *cm, const char *user, const char *password);

#endif
