/* The field table read from outside config_manager: what a settings form or a document needs to
 * know about each field (type, unit, range, enum values, restart), so that no other module
 * repeats a range. */
#include "config_internal.h"
#include "gw_error.h"

#include <string.h>

/* Units follow the names (poll_interval_ms, target_cell_v, max_charge_a): the suffix is the unit.
 * Longest suffix first, so "_a_per_s" wins over "_s". */
static const struct {
    const char *suffix, *unit;
} unit_by_suffix[] = {
    { "_mv_per_cell_s", "mV/cell/s" }, { "_a_per_s", "A/s" }, { "_percent", "%" }, { "_days", "days" },
    { "_ms", "ms" }, { "_mv", "mV" }, { "_dv", "V" }, { "_s", "s" }, { "_v", "V" }, { "_a", "A" },
};

/* Names that carry no unit suffix. Thresholds: the unit of the value; curves: the unit of x. */
static const struct {
    const char *name, *unit;
} unit_by_name[] = {
    { "bitrate", "bit/s" },         { "ws_queue_len", "messages" },  { "cell_v_high", "V" },
    { "cell_v_low", "V" },          { "pack_v_high", "V" },          { "pack_v_low", "V" },
    { "temp_high", "°C" },          { "temp_low", "°C" },            { "discharge_current", "A" },
    { "charge_current", "A" },      { "soc_low", "%" },              { "soc_high", "%" },
    { "cell_imbalance", "mV" },     { "charge_by_cell_v", "V" },     { "discharge_by_cell_v", "V" },
    { "charge_by_temp", "°C" },     { "discharge_by_temp", "°C" },   { "charge_by_soc", "%" },
    { "discharge_by_soc", "%" },
};

static const char *unit_of(const char *name)
{
    for (size_t i = 0; i < sizeof unit_by_name / sizeof unit_by_name[0]; i++)
        if (strcmp(name, unit_by_name[i].name) == 0)
            return unit_by_name[i].unit;
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof unit_by_suffix / sizeof unit_by_suffix[0]; i++) {
        size_t k = strlen(unit_by_suffix[i].suffix);
        if (n > k && strcmp(name + n - k, unit_by_suffix[i].suffix) == 0)
            return unit_by_suffix[i].unit;
    }
    return "";
}

static const char *const type_names[] = {
    [CFG_BOOL] = "bool",     [CFG_U8] = "integer",     [CFG_U16] = "integer",     [CFG_U32] = "integer",
    [CFG_FLOAT] = "number",  [CFG_STRING] = "string",  [CFG_ENUM] = "enum",       [CFG_CURVE] = "curve",
    [CFG_THRESHOLD] = "threshold", [CFG_PACKS] = "packs",
};

size_t gw_config_field_count(void)
{
    return config__field_count;
}

int gw_config_field_info(size_t index, struct gw_config_field_info *out)
{
    if (!out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    if (index >= config__field_count)
        return GW_ERR_INVAL;
    const struct config_field *f = &config__fields[index];
    out->section = f->section;
    out->name = f->name;
    out->type = f->kind < sizeof type_names / sizeof type_names[0] ? type_names[f->kind] : "unknown";
    out->unit = unit_of(f->name);
    out->has_range = f->kind != CFG_BOOL && f->kind != CFG_STRING && f->kind != CFG_ENUM;
    out->min = f->min;
    out->max = f->max;
    out->aux = f->aux;
    out->max_length = f->kind == CFG_STRING && f->size ? (unsigned)(f->size - 1) : 0;
    out->values = f->kind == CFG_ENUM ? f->names : NULL;
    out->value_count = f->kind == CFG_ENUM ? f->name_count : 0;
    out->restart = (f->flags & CFG_F_RESTART) != 0;
    out->secret = (f->flags & CFG_F_SECRET) != 0;
    out->nonempty = (f->flags & CFG_F_NONEMPTY) != 0;
    out->storage_only = (f->flags & CFG_F_HASH) != 0;
    return GW_OK;
}
