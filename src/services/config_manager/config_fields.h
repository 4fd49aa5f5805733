/* Private to config_manager: the field table that drives JSON mapping, validation, diffs and the
 * restart flag, so a field is described exactly once (config_fields.c). */
#ifndef CONFIG_FIELDS_H
#define CONFIG_FIELDS_H

#include "gw_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum config_kind {
    CFG_BOOL,
    CFG_U8,
    CFG_U16,
    CFG_U32,
    CFG_FLOAT,
    CFG_STRING,
    CFG_ENUM,      /* uint8_t stored, names[] in JSON */
    CFG_CURVE,     /* struct gw_curve as {"x":[...],"y":[...]} */
    CFG_THRESHOLD, /* struct gw_alert_threshold */
    CFG_PACKS,     /* struct gw_config_pack_list as [{"uart_device","name","capacity_ah"}, ...] */
};

enum config_flag {
    CFG_F_RESTART = 1u << 0,  /* applies only after a restart */
    CFG_F_SECRET = 1u << 1,   /* masked on read, omitted on export */
    CFG_F_HASH = 1u << 2,     /* web.password_hash: storage only, never accepted from users */
    CFG_F_NONEMPTY = 1u << 3, /* empty string not allowed */
};

/* Format checks for strings: return NULL when fine, else a static reason. */
typedef const char *(*config_format_fn)(const char *value);

struct config_field {
    const char *section;          /* "bms" */
    uint32_t section_bit;         /* enum app_config_section */
    const char *name;             /* "poll_interval_ms" */
    uint8_t kind;                 /* enum config_kind */
    uint16_t flags;               /* enum config_flag */
    size_t offset;                /* in struct gw_config */
    size_t size;                  /* bytes of the member (string buffer size) */
    double min, max;              /* numbers; curve x; threshold value */
    double aux;                   /* threshold: max hysteresis; curve: minimum point count */
    const char *const *names;     /* CFG_ENUM */
    uint8_t name_count;
    config_format_fn format;      /* CFG_STRING, may be NULL */
};

extern const struct config_field config__fields[];
extern const size_t config__field_count;

/* Names of enum values as written in JSON. */
extern const char *const config__level_names[3];
/* enum gw_chemistry as written in JSON (charge.chemistry). */
extern const char *const config__chemistry_names[2];

/* Pointer to the member of cfg described by f. */
static inline void *config__field_ptr(struct gw_config *cfg, const struct config_field *f)
{
    return (char *)cfg + f->offset;
}
static inline const void *config__field_cptr(const struct gw_config *cfg, const struct config_field *f)
{
    return (const char *)cfg + f->offset;
}

/* "section.name" into buf. */
void config__field_path(const struct config_field *f, char *buf, size_t cap);

/* Format checkers shared by the table and the tests. */
const char *config__check_mqtt_uri(const char *v);
const char *config__check_hostname(const char *v);
const char *config__check_ip_literal(const char *v);
const char *config__check_ifname(const char *v);
const char *config__check_can_interface(const char *v);
const char *config__check_abs_path(const char *v);
const char *config__check_device_path(const char *v);
const char *config__check_ascii(const char *v);
const char *config__check_topic_prefix(const char *v);
const char *config__check_client_id(const char *v);
const char *config__check_web_username(const char *v);
const char *config__check_ssid(const char *v);
const char *config__check_wifi_password(const char *v);
const char *config__check_no_control(const char *v);

#endif
