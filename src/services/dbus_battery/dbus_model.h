/* The pure part of the D-Bus battery service: the path table, the values of one service built
 * from the battery view, their text, and change detection with deadbands. No libdbus, no OS
 * calls, no allocation: unit-tested without a bus (tests/unit/test_dbus_model.c).
 *
 * Only dbus_battery.c and the tests include this header. */
#ifndef DBUS_MODEL_H
#define DBUS_MODEL_H

#include "battery_view.h"
#include "bms_data.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DBUS_STR_MAX 64          /* bytes of a string value, NUL included */
#define DBUS_MAX_LEAVES 128      /* paths of one service */
#define DBUS_MAX_NODES 24        /* "/" and the intermediate nodes ("/Dc", "/Dc/0", ...) */
#define DBUS_PATH_MAX 48
#define DBUS_TEXT_MAX 80         /* GetText of one leaf */

/* What a leaf holds. An invalid value goes on the bus as an empty int32 array (velib). */
enum dbus_kind { DBUS_V_INVALID = 0, DBUS_V_DOUBLE = 1, DBUS_V_INT = 2, DBUS_V_STRING = 3 };

struct dbus_value {
    uint8_t kind;                /* enum dbus_kind */
    int32_t i;
    double d;
    char s[DBUS_STR_MAX];        /* valid UTF-8 (dbus_model_set_str makes sure) */
};

/* Which services carry a row. */
enum dbus_scope {
    DBUS_SCOPE_ALL = 0,          /* every service */
    DBUS_SCOPE_BMS = 1,          /* only the service that sends the limits (the bank) */
    DBUS_SCOPE_ONE_PACK = 2,     /* services showing one pack's cells and BMS counters (a pack
                                    service, or the bank of a single pack) */
};

enum dbus_row_flag {
    DBUS_F_LIVE = 1u << 0,       /* a measurement or a limit: invalid while the data is not fresh */
    DBUS_F_WRITEABLE = 1u << 1,  /* SetValue accepted (a string) */
    DBUS_F_HEX_TEXT = 1u << 2,   /* text "0xFFFF" (velib's text of /ProductId) */
};

/* Strings of a service that do not come from the view. */
struct dbus_identity {
    int32_t device_instance;
    int32_t product_id;
    char process_name[32];
    char process_version[32];
    char connection[DBUS_STR_MAX];   /* "Serial /dev/ttyUSB0" */
    char product_name[32];
    char custom_name[DBUS_STR_MAX];  /* "" = invalid (not set) */
};

/* Everything the values of one service are made of. */
struct dbus_src {
    const struct battery_view *view;        /* NULL before the first view */
    int pack;                               /* -1: the bank; else an index into view->packs */
    bool online;                            /* fresh data (decided by the service; see
                                               dbus_battery.c): live rows valid */
    const struct bms_version *version;      /* of this service's (first) pack, NULL = unknown */
    const struct bms_statistics *stats;     /* NULL = unknown */
    const struct dbus_identity *id;         /* required */
};

struct dbus_row;
typedef void (*dbus_getter_fn)(const struct dbus_src *src, const struct dbus_row *row, struct dbus_value *out);

/* One path: how it is typed, rounded, shown and where its value comes from. */
struct dbus_row {
    const char *path;            /* "/Dc/0/Voltage" */
    uint8_t kind;                /* enum dbus_kind when valid */
    uint8_t decimals;            /* doubles are rounded to this (and shown with it) */
    const char *unit;            /* appended to the text ("V"), NULL = none */
    double deadband;             /* doubles: a change smaller than this is not published */
    uint8_t scope;               /* enum dbus_scope */
    uint8_t flags;               /* enum dbus_row_flag */
    int16_t arg;                 /* getter argument (cell number, alarm flag, ...) */
    dbus_getter_fn get;
    const char *description;     /* GetDescription */
};

/* The whole table (static storage), in the order paths are listed. */
const struct dbus_row *dbus_model_table(size_t *count);

struct dbus_model_config {
    bool bms;                    /* carries the DVCC limits (/Info/...) */
    bool one_pack;               /* carries one pack's cells and BMS counters */
    uint8_t cell_count;          /* /Voltages/Cell1..N (one_pack only), 0..BMS_MAX_CELLS */
};

/* The leaves and nodes of one service, with the values last published. */
struct dbus_model {
    uint16_t count;
    const struct dbus_row *rows[DBUS_MAX_LEAVES];
    struct dbus_value values[DBUS_MAX_LEAVES];   /* what the bus was told (all invalid at init) */
    uint16_t node_count;
    char nodes[DBUS_MAX_NODES][DBUS_PATH_MAX];   /* nodes[0] = "/" */
};

/* Selects the rows of a service and derives its nodes; every value starts invalid.
 * @retval GW_OK, GW_ERR_INVAL (NULL), GW_ERR_OVERFLOW (table larger than the limits above) */
int dbus_model_init(struct dbus_model *m, const struct dbus_model_config *cfg);

/* Index of a leaf, or -1. */
int dbus_model_find(const struct dbus_model *m, const char *path);

/* Index of a node ("/" is 0), or -1. */
int dbus_model_find_node(const struct dbus_model *m, const char *path);

/* True when leaf path lies below node (the root holds every leaf). On true, *rel receives the
 * key relative to the node ("Dc/0/Voltage" below "/", "0/Voltage" below "/Dc"). */
bool dbus_model_below(const char *node, const char *leaf, const char **rel);

/* Calls fn once per direct child name of node ("Dc", "Soc" below "/"), in path order. */
void dbus_model_children(const struct dbus_model *m, const char *node, void (*fn)(const char *name, void *ctx),
                         void *ctx);

/* The value every leaf should have now (out[0..m->count)), rounded. */
void dbus_model_compute(const struct dbus_model *m, const struct dbus_src *src, struct dbus_value *out);

/* True when fresh must be published in place of old (kind changed, string/int changed, a double
 * moved by at least the row's deadband; any change when the deadband is 0). */
bool dbus_value_changed(const struct dbus_row *row, const struct dbus_value *old, const struct dbus_value *fresh);

/* Stores into m->values every fresh value that changed and lists their indexes in changed[]
 * (at most cap). Returns the number of changed leaves. */
size_t dbus_model_update(struct dbus_model *m, const struct dbus_value *fresh, uint16_t *changed, size_t cap);

/* GetText of a value: "---" when invalid, "53.12V", "0xFFFF" for a hex row, the string itself.
 * Returns buf. */
const char *dbus_value_text(const struct dbus_row *row, const struct dbus_value *v, char *buf, size_t cap);

/* Value setters. A string is copied as valid UTF-8 (a byte that does not belong to a valid
 * sequence becomes '?'; the copy is cut on a character boundary). A non-finite double is invalid. */
void dbus_value_set_double(struct dbus_value *v, double d, unsigned decimals);
void dbus_value_set_int(struct dbus_value *v, int32_t i);
void dbus_value_set_str(struct dbus_value *v, const char *s);
void dbus_value_set_invalid(struct dbus_value *v);

/* Why a service's data is not fresh (DBUS_FRESH when it is). */
enum dbus_freshness {
    DBUS_FRESH = 0,
    DBUS_NO_VIEW,        /* no battery view yet */
    DBUS_STALE_VIEW,     /* the newest view is older than the timeout (a hung battery service) */
    DBUS_NO_LIMITS,      /* the view says: no limits (no pack online, stale packs) */
    DBUS_BAD_LIMITS,     /* limits CAN would refuse too (CVL below one step, NaN, negative) */
    DBUS_PACK_OFFLINE,   /* a pack service: that pack is not online */
};

/* Is the view fresh enough to publish values (and, for the bank, limits)? view_age_ms is the
 * age of the newest view; pack < 0 for the bank. */
enum dbus_freshness dbus_model_freshness(const struct battery_view *view, uint64_t view_age_ms,
                                         uint32_t stale_timeout_ms, int pack);

/* Static text of a freshness ("fresh", "no battery view yet", ...). */
const char *dbus_freshness_text(enum dbus_freshness f);

/* "battery:7" -> 7 (ClassAndVrmInstance of localsettings). @retval GW_OK, GW_ERR_INVAL */
int dbus_parse_class_instance(const char *text, int32_t *instance);

/* The last element of a D-Bus service name from a serial device ("/dev/ttyUSB0" -> "ttyUSB0"):
 * [A-Za-z0-9_] kept, other characters become '_'; empty, or starting with a digit, gives
 * fallback. Returns out. */
const char *dbus_name_element(const char *device, const char *fallback, char *out, size_t cap);

#endif
