/* The check of a TinyBMS setting a web user asks to write (pure: no server, no I/O). The codec's
 * table (tinybms_setting_info) knows every register's structure and documented range; the BMS's
 * own min/max (command 0x1D) narrow it. Both must accept a value before it is sent; the poller
 * checks it once more and reads it back. */
#include "web_internal.h"

#include "bms_data.h"
#include "gw_error.h"
#include "gw_text.h"
#include "tinybms.h"

#include <string.h>

static bool bms_word(const struct bms_settings *s, uint16_t reg, uint16_t *out)
{
    if (!s || !s->valid || reg < BMS_SETTINGS_FIRST || reg > BMS_SETTINGS_LAST)
        return false;
    unsigned i = reg - BMS_SETTINGS_FIRST;
    if (!(s->present_mask & (1ull << i)))
        return false;
    *out = s->raw[i];
    return true;
}

int32_t web_setting_value(const struct tinybms_setting_info *info, uint16_t raw)
{
    return info && info->kind == TINYBMS_SETTING_INT16 ? (int32_t)(int16_t)raw : (int32_t)raw;
}

bool web_setting_bms_range(const struct tinybms_setting_info *info, const struct bms_settings *bms_min,
                           const struct bms_settings *bms_max, int32_t *lo, int32_t *hi)
{
    uint16_t a, b;
    if (!info || !bms_word(bms_min, info->reg, &a) || !bms_word(bms_max, info->reg, &b))
        return false;
    *lo = web_setting_value(info, a);
    *hi = web_setting_value(info, b);
    return true;
}

/* "0, 2..10" for the set bits of mask (0..31). */
static void put_mask_values(struct gw_text *t, uint32_t mask)
{
    bool first = true;
    for (unsigned v = 0; v < 32; v++) {
        if (!(mask & (1u << v)))
            continue;
        unsigned end = v;
        while (end + 1 < 32 && (mask & (1u << (end + 1))))
            end++;
        if (!first)
            gw_text_put_str(t, ", ");
        first = false;
        gw_text_put_uint(t, v);
        if (end > v) {
            gw_text_put_str(t, end == v + 1 ? ", " : "..");
            gw_text_put_uint(t, end);
        }
        v = end;
    }
}

static void put_range(struct gw_text *t, int64_t lo, int64_t hi, const char *unit)
{
    gw_text_put_int(t, lo);
    gw_text_put_str(t, "..");
    gw_text_put_int(t, hi);
    if (unit && *unit) {
        gw_text_put_char(t, ' ');
        gw_text_put_str(t, unit);
    }
}

void web_setting_describe_range(const struct tinybms_setting_info *info, const struct bms_settings *bms_min,
                                const struct bms_settings *bms_max, char *out, size_t cap)
{
    struct gw_text t;
    gw_text_init(&t, out, cap);
    if (!info)
        return;
    int32_t lo, hi;
    bool have_bms = web_setting_bms_range(info, bms_min, bms_max, &lo, &hi);
    switch (info->kind) {
    case TINYBMS_SETTING_ENUM:
        gw_text_put_str(&t, "one of ");
        put_mask_values(&t, info->allowed_mask);
        break;
    case TINYBMS_SETTING_FLAGS:
        gw_text_put_str(&t, "a bit field: only bits 0x");
        gw_text_put_hex(&t, info->allowed_mask, 1);
        gw_text_put_str(&t, " may be set");
        have_bms = false; /* the BMS's min/max of a bit field says nothing more */
        break;
    case TINYBMS_SETTING_BYTE_PAIR:
        gw_text_put_str(&t, "low byte + 256 x high byte, low byte one of ");
        put_mask_values(&t, info->allowed_mask);
        gw_text_put_str(&t, ", high byte ");
        put_range(&t, info->min, info->max, info->unit);
        have_bms = false; /* checked per byte: the BMS's word min/max is not a range of this */
        break;
    case TINYBMS_SETTING_U32_LOW:
    case TINYBMS_SETTING_U32_HIGH:
        gw_text_put_str(&t, "with its other word (312 low, 313 high) a value in ");
        put_range(&t, info->min, info->max, info->unit);
        have_bms = false;
        break;
    default:
        gw_text_put_str(&t, "an integer in ");
        put_range(&t, info->min, info->max, info->unit);
        break;
    }
    if (have_bms) {
        gw_text_put_str(&t, " (this BMS: ");
        put_range(&t, lo, hi, NULL);
        gw_text_put_char(&t, ')');
    }
}

/* The u32 pair 312/313 as it will be. */
static bool pair_value(const struct bms_settings *proposed, uint32_t *v)
{
    uint16_t lo, hi;
    if (!bms_word(proposed, 312, &lo) || !bms_word(proposed, 313, &hi))
        return false;
    *v = (uint32_t)lo | ((uint32_t)hi << 16);
    return true;
}

static bool pair_ok(uint32_t v, const struct bms_settings *bms_min, const struct bms_settings *bms_max)
{
    bool bms = bms_min && bms_max && bms_min->valid && bms_max->valid;
    return tinybms_setting_validate_u32(312, v, NULL, NULL) == GW_OK &&
           (!bms || tinybms_setting_validate_u32(312, v, bms_min, bms_max) == GW_OK);
}

int web_setting_check(uint16_t reg, int64_t value, const struct bms_settings *proposed,
                      const struct bms_settings *bms_min, const struct bms_settings *bms_max, uint16_t *raw,
                      char *reason, size_t cap)
{
    if (reason && cap)
        reason[0] = '\0';
    const struct tinybms_setting_info *info = tinybms_setting_info(reg);
    if (!info || !raw) {
        if (reason && cap)
            gw_text_copy(reason, cap, "no such setting register (see GET /api/bms/settings)");
        return GW_ERR_NOT_FOUND;
    }
    char range[WEB_SETTING_REASON_MAX];
    web_setting_describe_range(info, bms_min, bms_max, range, sizeof range);
    int64_t lo = info->kind == TINYBMS_SETTING_INT16 ? INT16_MIN : 0;
    int64_t hi = info->kind == TINYBMS_SETTING_INT16 ? INT16_MAX : UINT16_MAX;
    int rc = GW_OK;
    uint16_t word = 0;
    if (value < lo || value > hi) {
        rc = GW_ERR_RANGE;
    } else {
        word = (uint16_t)(info->kind == TINYBMS_SETTING_INT16 ? (uint16_t)(int16_t)value : (uint16_t)value);
        bool bms = bms_min && bms_max && bms_min->valid && bms_max->valid;
        /* The documented structure and range, then the BMS's own limits: both must agree. */
        if (tinybms_setting_validate(reg, word, NULL, NULL) != GW_OK ||
            (bms && tinybms_setting_validate(reg, word, bms_min, bms_max) != GW_OK))
            rc = GW_ERR_RANGE;
        if (rc == GW_OK && (info->kind == TINYBMS_SETTING_U32_LOW || info->kind == TINYBMS_SETTING_U32_HIGH)) {
            struct bms_settings p;
            uint32_t v = 0;
            if (proposed)
                p = *proposed;
            else
                memset(&p, 0, sizeof p);
            p.raw[reg - BMS_SETTINGS_FIRST] = word;
            p.present_mask |= 1ull << (reg - BMS_SETTINGS_FIRST);
            p.valid = true;
            if (!pair_value(&p, &v) || !pair_ok(v, bms_min, bms_max))
                rc = GW_ERR_RANGE;
        }
    }
    if (rc != GW_OK) {
        if (reason && cap) {
            struct gw_text t;
            gw_text_init(&t, reason, cap);
            gw_text_put_str(&t, "must be ");
            gw_text_put_str(&t, range);
            gw_text_put_str(&t, " (got ");
            gw_text_put_int(&t, value);
            gw_text_put_char(&t, ')');
        }
        return rc;
    }
    *raw = word;
    return GW_OK;
}

int web_setting_pair_order(uint16_t cur_lo, uint16_t cur_hi, uint16_t new_lo, uint16_t new_hi,
                           const struct bms_settings *bms_min, const struct bms_settings *bms_max)
{
    uint32_t low_first = (uint32_t)new_lo | ((uint32_t)cur_hi << 16);  /* after writing 312 alone */
    uint32_t high_first = (uint32_t)cur_lo | ((uint32_t)new_hi << 16); /* after writing 313 alone */
    if (new_lo == cur_lo || new_hi == cur_hi || pair_ok(low_first, bms_min, bms_max))
        return 0;
    if (pair_ok(high_first, bms_min, bms_max))
        return 1;
    return -1;
}
