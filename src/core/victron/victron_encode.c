/* Frame encoder: numeric frames from the conversion table, strings, ids, 0x35A flags. */
#include "victron.h"

#include "gw_error.h"

#include <string.h>

enum frame_kind { KIND_NUMERIC, KIND_ALARMS, KIND_STRING, KIND_ID };

/* Which string / id a text frame carries. */
enum text_source {
    TEXT_NONE, TEXT_MANUFACTURER, TEXT_NAME, TEXT_FAMILY, TEXT_SERIAL,
    TEXT_MIN_CELL, TEXT_MAX_CELL, TEXT_MIN_TEMP, TEXT_MAX_TEMP
};

struct frame_def {
    uint16_t id;
    uint8_t set;        /* enum victron_frame_set */
    uint8_t role;       /* enum victron_frame_role */
    uint8_t kind;       /* enum frame_kind */
    uint8_t text;       /* enum text_source */
    uint8_t text_offset;/* first character of a split string (0 or 8) */
};

#define LIVE VICTRON_SET_LIVE
#define IDENT VICTRON_SET_IDENTITY

/* Send order: the live set, then the identity set. */
static const struct frame_def frame_defs[] = {
    { VICTRON_ID_LIMITS, LIVE, VICTRON_ROLE_LIMITS, KIND_NUMERIC, TEXT_NONE, 0 },
    { VICTRON_ID_SOC, LIVE, VICTRON_ROLE_MEASUREMENT, KIND_NUMERIC, TEXT_NONE, 0 },
    { VICTRON_ID_MEASURE, LIVE, VICTRON_ROLE_MEASUREMENT, KIND_NUMERIC, TEXT_NONE, 0 },
    { VICTRON_ID_ALARMS, LIVE, VICTRON_ROLE_STATUS, KIND_ALARMS, TEXT_NONE, 0 },
    { VICTRON_ID_MODULES, LIVE, VICTRON_ROLE_STATUS, KIND_NUMERIC, TEXT_NONE, 0 },
    { VICTRON_ID_CELL_EXTREMES, LIVE, VICTRON_ROLE_MEASUREMENT, KIND_NUMERIC, TEXT_NONE, 0 },
    { VICTRON_ID_MIN_CELL_ID, LIVE, VICTRON_ROLE_MEASUREMENT, KIND_ID, TEXT_MIN_CELL, 0 },
    { VICTRON_ID_MAX_CELL_ID, LIVE, VICTRON_ROLE_MEASUREMENT, KIND_ID, TEXT_MAX_CELL, 0 },
    { VICTRON_ID_MIN_TEMP_ID, LIVE, VICTRON_ROLE_MEASUREMENT, KIND_ID, TEXT_MIN_TEMP, 0 },
    { VICTRON_ID_MAX_TEMP_ID, LIVE, VICTRON_ROLE_MEASUREMENT, KIND_ID, TEXT_MAX_TEMP, 0 },
    { VICTRON_ID_ENERGY, LIVE, VICTRON_ROLE_TOTALS, KIND_NUMERIC, TEXT_NONE, 0 },
    { VICTRON_ID_INSTALLED_CAPACITY, LIVE, VICTRON_ROLE_TOTALS, KIND_NUMERIC, TEXT_NONE, 0 },
    { VICTRON_ID_MANUFACTURER, IDENT, VICTRON_ROLE_IDENTITY, KIND_STRING, TEXT_MANUFACTURER, 0 },
    { VICTRON_ID_INFO, IDENT, VICTRON_ROLE_BMS_IDENTITY, KIND_NUMERIC, TEXT_NONE, 0 },
    { VICTRON_ID_NAME1, IDENT, VICTRON_ROLE_IDENTITY, KIND_STRING, TEXT_NAME, 0 },
    { VICTRON_ID_NAME2, IDENT, VICTRON_ROLE_IDENTITY, KIND_STRING, TEXT_NAME, 8 },
    { VICTRON_ID_SERIAL1, IDENT, VICTRON_ROLE_BMS_IDENTITY, KIND_STRING, TEXT_SERIAL, 0 },
    { VICTRON_ID_SERIAL2, IDENT, VICTRON_ROLE_BMS_IDENTITY, KIND_STRING, TEXT_SERIAL, 8 },
    { VICTRON_ID_FAMILY, IDENT, VICTRON_ROLE_IDENTITY, KIND_STRING, TEXT_FAMILY, 0 },
};
#define FRAME_DEF_COUNT (sizeof frame_defs / sizeof frame_defs[0])

static const double not_a_number_source = 0.0; /* see nan_value() */

/* NaN without <math.h> (freestanding-friendly): 0/0 evaluated at run time. */
static double nan_value(void)
{
    volatile double zero = not_a_number_source;
    return zero / zero;
}

static bool finite_d(double x) { return x == x && x <= 1e300 && x >= -1e300; }

/* ---- sources ------------------------------------------------------------------------------- */

void victron_inputs_init(struct victron_inputs *in)
{
    if (!in)
        return;
    memset(in, 0, sizeof *in); /* strings empty, flags not supported, offline, counts 0 */
    float nan = (float)nan_value();
    in->cvl_v = in->ccl_a = in->dcl_a = in->discharge_v = nan;
    in->soc_pct = in->soh_pct = nan;
    in->voltage_v = in->current_a = in->temp_c = nan;
    in->min_cell_v = in->max_cell_v = in->min_temp_c = in->max_temp_c = nan;
    in->energy_in_wh = in->energy_out_wh = nan_value();
    in->capacity_ah = in->installed_capacity_ah = nan;
}

static void fill_sources(const struct victron_inputs *in, double *v)
{
    v[VICTRON_SRC_CVL_V] = in->cvl_v;
    v[VICTRON_SRC_CCL_A] = in->ccl_a;
    v[VICTRON_SRC_DCL_A] = in->dcl_a;
    v[VICTRON_SRC_DISCHARGE_V] = in->discharge_v;
    v[VICTRON_SRC_SOC_PCT] = in->soc_pct;
    v[VICTRON_SRC_SOH_PCT] = in->soh_pct;
    v[VICTRON_SRC_SOC_HIRES_PCT] = in->soc_pct;
    v[VICTRON_SRC_PACK_V] = in->voltage_v;
    v[VICTRON_SRC_PACK_A] = in->current_a;
    v[VICTRON_SRC_TEMP_C] = in->temp_c;
    v[VICTRON_SRC_MODEL_ID] = in->identity.model_id;
    v[VICTRON_SRC_FW_MAJOR] = in->identity.fw_major;
    v[VICTRON_SRC_FW_MINOR] = in->identity.fw_minor;
    v[VICTRON_SRC_CAPACITY_AH] = in->capacity_ah;
    v[VICTRON_SRC_HW_VERSION] = in->identity.hw_version;
    v[VICTRON_SRC_MODULES_OK] = in->modules.ok;
    v[VICTRON_SRC_MODULES_BLOCK_CHARGE] = in->modules.blocking_charge;
    v[VICTRON_SRC_MODULES_BLOCK_DISCHARGE] = in->modules.blocking_discharge;
    v[VICTRON_SRC_MODULES_OFFLINE] = in->modules.offline;
    v[VICTRON_SRC_MIN_CELL_V] = in->min_cell_v;
    v[VICTRON_SRC_MAX_CELL_V] = in->max_cell_v;
    v[VICTRON_SRC_MIN_TEMP_C] = in->min_temp_c;
    v[VICTRON_SRC_MAX_TEMP_C] = in->max_temp_c;
    v[VICTRON_SRC_ENERGY_IN_WH] = in->energy_in_wh;
    v[VICTRON_SRC_ENERGY_OUT_WH] = in->energy_out_wh;
    v[VICTRON_SRC_INSTALLED_AH] = in->installed_capacity_ah;
}

/* ---- frame bodies -------------------------------------------------------------------------- */

static void put_le(uint8_t *dst, uint8_t size, int64_t raw)
{
    uint64_t u = (uint64_t)raw;
    for (uint8_t i = 0; i < size; i++)
        dst[i] = (uint8_t)(u >> (8u * i));
}

static int encode_numeric(uint16_t id, const double *values, struct victron_frame *out)
{
    size_t count;
    const struct victron_field *table = victron_field_table(&count);
    uint8_t dlc = 8;
    for (size_t i = 0; i < count; i++) {
        const struct victron_field *f = &table[i];
        if (f->can_id != id)
            continue;
        double value = values[f->source];
        int64_t raw;
        if (!finite_d(value)) {
            if (f->nan_policy == VICTRON_NAN_WITHHOLD)
                return GW_ERR_RANGE;
            if (f->nan_policy == VICTRON_NAN_TRUNCATE) {
                if (f->byte_offset < dlc)
                    dlc = f->byte_offset;
                continue;
            }
            raw = (int64_t)f->nan_raw;
        } else {
            raw = victron_field_raw(f, value);
            /* CVL is never 0: below one step (rounded down) withholds 0x351. */
            if (f->source == VICTRON_SRC_CVL_V && raw < 1)
                return GW_ERR_RANGE;
        }
        put_le(&out->data[f->byte_offset], f->size, raw);
    }
    out->dlc = dlc;
    memset(&out->data[dlc], 0, (size_t)(8 - dlc));
    return GW_OK;
}

/* Up to 8 characters of s starting at offset, 7-bit printable ASCII ('?' otherwise),
 * zero-padded. */
static void put_text(uint8_t *dst, const char *s, size_t s_size, size_t offset)
{
    memset(dst, 0, 8);
    size_t len = 0;
    while (len < s_size && s[len])
        len++;
    for (size_t i = 0; i < 8 && offset + i < len; i++) {
        unsigned char c = (unsigned char)s[offset + i];
        dst[i] = (c >= 0x20 && c < 0x7F) ? c : (uint8_t)'?';
    }
}

int victron_encode_alarms(const struct victron_alarm_state *alarms, struct victron_frame *out)
{
    if (!alarms || !out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    out->id = VICTRON_ID_ALARMS;
    out->dlc = 8;
    for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++) {
        unsigned byte = f / 4u, shift = 2u * (f % 4u);
        const uint8_t states[2] = { alarms->alarm[f], alarms->warning[f] };
        for (unsigned w = 0; w < 2; w++) {
            /* active = lower bit of the pair, OK = upper bit; anything else = not supported */
            uint8_t bits = states[w] == VICTRON_FLAG_ACTIVE ? 0x1u
                           : states[w] == VICTRON_FLAG_OK   ? 0x2u : 0x0u;
            out->data[byte + 4u * w] |= (uint8_t)(bits << shift);
        }
    }
    out->data[7] |= alarms->online ? 0x08u : 0x04u;
    return GW_OK;
}

static const struct frame_def *find_def(uint16_t id)
{
    for (size_t i = 0; i < FRAME_DEF_COUNT; i++)
        if (frame_defs[i].id == id)
            return &frame_defs[i];
    return NULL;
}

static int encode_def(const struct frame_def *def, const struct victron_inputs *in,
                      const double *values, struct victron_frame *out)
{
    memset(out, 0, sizeof *out);
    int rc = GW_OK;
    switch (def->kind) {
    case KIND_NUMERIC:
        rc = encode_numeric(def->id, values, out);
        break;
    case KIND_ALARMS:
        rc = victron_encode_alarms(&in->alarms, out);
        break;
    case KIND_STRING: {
        const struct victron_identity *idn = &in->identity;
        out->dlc = 8;
        if (def->text == TEXT_MANUFACTURER)
            put_text(out->data, idn->manufacturer, sizeof idn->manufacturer, def->text_offset);
        else if (def->text == TEXT_NAME)
            put_text(out->data, idn->battery_name, sizeof idn->battery_name, def->text_offset);
        else if (def->text == TEXT_FAMILY)
            put_text(out->data, idn->family, sizeof idn->family, def->text_offset);
        else
            put_text(out->data, idn->serial, sizeof idn->serial, def->text_offset);
        break;
    }
    case KIND_ID:
        out->dlc = 8;
        if (def->text == TEXT_MIN_CELL)
            put_text(out->data, in->min_cell_id, sizeof in->min_cell_id, 0);
        else if (def->text == TEXT_MAX_CELL)
            put_text(out->data, in->max_cell_id, sizeof in->max_cell_id, 0);
        else if (def->text == TEXT_MIN_TEMP)
            put_text(out->data, in->min_temp_id, sizeof in->min_temp_id, 0);
        else
            put_text(out->data, in->max_temp_id, sizeof in->max_temp_id, 0);
        break;
    default:
        return GW_ERR_INVAL;
    }
    if (rc) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    out->id = def->id;
    return GW_OK;
}

int victron_encode_frame(uint16_t id, const struct victron_inputs *in, struct victron_frame *out)
{
    if (!in || !out)
        return GW_ERR_INVAL;
    const struct frame_def *def = find_def(id);
    if (!def) {
        memset(out, 0, sizeof *out);
        return GW_ERR_NOT_FOUND;
    }
    double values[VICTRON_SRC_COUNT];
    fill_sources(in, values);
    return encode_def(def, in, values, out);
}

int victron_encode_set(unsigned sets, const struct victron_inputs *in, struct victron_frame *frames,
                       size_t capacity, size_t *count)
{
    if (count)
        *count = 0;
    if (!in || !frames || !count)
        return GW_ERR_INVAL;
    double values[VICTRON_SRC_COUNT];
    fill_sources(in, values);
    int result = GW_OK;
    for (size_t i = 0; i < FRAME_DEF_COUNT; i++) {
        const struct frame_def *def = &frame_defs[i];
        if (!(def->set & sets))
            continue;
        if (*count >= capacity)
            return GW_ERR_OVERFLOW;
        int rc = encode_def(def, in, values, &frames[*count]);
        if (rc == GW_ERR_RANGE) {
            result = GW_ERR_RANGE; /* withheld; the others still go out */
            continue;
        }
        if (rc)
            return rc;
        (*count)++;
    }
    return result;
}

int victron_encode_all(const struct victron_inputs *in, struct victron_frame *frames,
                       size_t capacity, size_t *count)
{
    return victron_encode_set(VICTRON_SET_ALL, in, frames, capacity, count);
}

size_t victron_set_ids(unsigned sets, uint16_t *ids, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < FRAME_DEF_COUNT; i++) {
        if (!(frame_defs[i].set & sets))
            continue;
        if (ids && n < cap)
            ids[n] = frame_defs[i].id;
        n++;
    }
    return n;
}

const struct victron_frame *victron_find_frame(const struct victron_frame *frames, size_t count,
                                               uint16_t id)
{
    if (!frames)
        return NULL;
    for (size_t i = 0; i < count; i++)
        if (frames[i].id == id)
            return &frames[i];
    return NULL;
}

int victron_frame_role(uint16_t id)
{
    const struct frame_def *def = find_def(id);
    return def ? def->role : GW_ERR_NOT_FOUND;
}
