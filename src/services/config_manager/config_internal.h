/* Private to config_manager: JSON mapping and validation over the field table (config_fields.h),
 * and the module's bounded message format. */
#ifndef CONFIG_INTERNAL_H
#define CONFIG_INTERNAL_H

#include "config_fields.h"
#include "config_manager.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

/* snprintf for messages, paths and reasons where a cut is harmless (buffers are bounded; a cut
 * text stays recognisable). A function, so the compiler does not flag every possible cut. */
void config__format(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* How a document is read. */
struct config_apply_opts {
    bool user;              /* update from a user: password_hash rejected, web.password taken */
    bool allow_secrets;     /* secrets accepted (false for CLI overrides) */
    bool chemistry_resets;  /* a changed charge.chemistry resets the charge section first */
    const char *web_password_hash; /* user mode: hash precomputed for "web.password" (NULL: refuse) */
};

/* Applies the parsed document root onto cfg (fields present replace, absent keep). Type and
 * representability problems are appended to errors; the affected fields keep their value.
 * Does NOT run gw_config_validate. Returns the number of problems found. */
unsigned config__apply_json(const struct cJSON *root, struct gw_config *cfg, const struct config_apply_opts *opts,
                            struct config_errors *errors);

/* Parses json[0..len) (need not be NUL-terminated) as one JSON value followed only by white
 * space. Returns the tree (caller cJSON_Delete()s) or NULL with the reason in errors. */
struct cJSON *config__parse(const char *json, size_t len, struct config_errors *errors);

/* Range/format validation of one field (used by gw_config_validate). */
void config__validate_field(const struct gw_config *cfg, const struct config_field *f, struct config_errors *errors);

#endif
