/* One-line meaning of the Victron CAN-bus BMS frames, decoded independently of the encoder
 * (the tap shows what is on the wire, so an encoder bug shows up there too). */
#include "victron.h"

#include "can_frame.h"

#include "gw_error.h"
#include "gw_text.h"

#include <string.h>

static uint16_t u16(const uint8_t *d) { return (uint16_t)(d[0] | (d[1] << 8)); }
static int16_t s16(const uint8_t *d) { return (int16_t)u16(d); }
static uint32_t u32(const uint8_t *d)
{
    return (uint32_t)d[0] | ((uint32_t)d[1] << 8) | ((uint32_t)d[2] << 16) | ((uint32_t)d[3] << 24);
}

/* " <label><value><unit>": one number of a frame. */
static void put_num(struct gw_text *t, const char *label, double v, unsigned decimals, const char *unit)
{
    gw_text_put_str(t, label);
    gw_text_put_fixed(t, v, decimals);
    gw_text_put_str(t, unit);
}

static void put_quoted(struct gw_text *t, const char *label, const char *text)
{
    gw_text_put_str(t, label);
    gw_text_put_char(t, '"');
    gw_text_put_str(t, text);
    gw_text_put_char(t, '"');
}

/* Printable copy of up to n bytes of ASCII text (stops at NUL, '?' for the rest). */
static void ascii(const uint8_t *d, size_t n, char out[9])
{
    size_t k = 0;
    for (size_t i = 0; i < n && i < 8 && d[i]; i++)
        out[k++] = (d[i] >= 0x20 && d[i] < 0x7F) ? (char)d[i] : '?';
    out[k] = '\0';
}

static const char *const flag_names[13] = {
    "general", "high voltage", "low voltage", "high temp", "low temp", "high temp charge",
    "low temp charge", "high discharge current", "high charge current", "contactor",
    "short circuit", "BMS internal", "cell imbalance",
};

/* Lists the active flags of bytes base..base+3 (2 bits each, lower bit = active). */
static void list_active(const uint8_t *d, int base, struct gw_text *t)
{
    int n = 0;
    for (int f = 0; f < 13; f++) {
        uint8_t byte = d[base + f / 4];
        int shift = 2 * (f % 4);
        if (byte & (1u << shift)) {
            gw_text_put_str(t, n ? ", " : " ");
            gw_text_put_str(t, flag_names[f]);
            n++;
        }
    }
    if (!n)
        gw_text_put_str(t, " none");
}

int victron_describe_frame(const struct can_frame_gw *f, char *buf, size_t cap)
{
    if (!f || !buf || cap == 0)
        return GW_ERR_INVAL;
    struct gw_text t;
    gw_text_init(&t, buf, cap);
    const uint8_t *d = f->data;
    char text[9];
    if (f->err) {
        gw_text_put_str(&t, "error frame class 0x");
        gw_text_put_hex(&t, f->id, 8);
        return (int)gw_text_len(&t);
    }
    gw_text_put_str(&t, "0x");
    gw_text_put_hex(&t, f->id, f->ext ? 8 : 3);
    if (f->rtr) {
        gw_text_put_str(&t, " remote request [");
        gw_text_put_uint(&t, f->dlc);
        gw_text_put_char(&t, ']');
        return (int)gw_text_len(&t);
    }
    unsigned dlc = f->dlc;
    bool known = !f->ext;
    if (known) {
        switch (f->id) {
        case 0x351:
            if (dlc < 6)
                goto raw;
            put_num(&t, " CVL ", u16(d) / 10.0, 1, " V");
            put_num(&t, " CCL ", s16(d + 2) / 10.0, 1, " A");
            put_num(&t, " DCL ", s16(d + 4) / 10.0, 1, " A");
            if (dlc >= 8)
                put_num(&t, " DV ", u16(d + 6) / 10.0, 1, " V");
            return (int)gw_text_len(&t);
        case 0x355:
            if (dlc < 4)
                goto raw;
            put_num(&t, " SOC ", u16(d), 0, " %");
            put_num(&t, " SOH ", u16(d + 2), 0, " %");
            if (dlc >= 6)
                put_num(&t, " (", u16(d + 4) / 100.0, 2, " %)");
            return (int)gw_text_len(&t);
        case 0x356:
            if (dlc < 6)
                goto raw;
            put_num(&t, " ", s16(d) / 100.0, 2, " V");
            put_num(&t, " ", s16(d + 2) / 10.0, 1, " A");
            put_num(&t, " ", s16(d + 4) / 10.0, 1, " degC");
            return (int)gw_text_len(&t);
        case 0x35A:
            if (dlc < 8)
                goto raw;
            gw_text_put_str(&t, " alarms:");
            list_active(d, 0, &t);
            gw_text_put_str(&t, "; warnings:");
            list_active(d, 4, &t);
            gw_text_put_str(&t, (d[7] & 0x0C) == 0x08 ? "; online" : (d[7] & 0x0C) == 0x04 ? "; offline" : "; status n/a");
            return (int)gw_text_len(&t);
        case 0x35E:
            ascii(d, dlc, text);
            put_quoted(&t, " manufacturer ", text);
            return (int)gw_text_len(&t);
        case 0x35F:
            if (dlc < 6)
                goto raw;
            put_num(&t, " model ", u16(d), 0, "");
            put_num(&t, " fw ", d[2], 0, ".");
            gw_text_put_uint(&t, d[3]);
            put_num(&t, " capacity ", u16(d + 4), 0, " Ah");
            if (dlc >= 8)
                put_num(&t, " hw ", u16(d + 6), 0, "");
            return (int)gw_text_len(&t);
        case 0x370:
        case 0x371:
            ascii(d, dlc, text);
            put_quoted(&t, f->id == 0x370 ? " name[1] " : " name[2] ", text);
            return (int)gw_text_len(&t);
        case 0x372:
            if (dlc < 8)
                goto raw;
            put_num(&t, " modules ok ", u16(d), 0, "");
            put_num(&t, " block-charge ", u16(d + 2), 0, "");
            put_num(&t, " block-discharge ", u16(d + 4), 0, "");
            put_num(&t, " offline ", u16(d + 6), 0, "");
            return (int)gw_text_len(&t);
        case 0x373:
            if (dlc < 4)
                goto raw;
            put_num(&t, " cells ", u16(d) / 1000.0, 3, "..");
            put_num(&t, "", u16(d + 2) / 1000.0, 3, " V");
            if (dlc >= 8) {
                put_num(&t, " temp ", u16(d + 4) - 273.15, 0, "..");
                put_num(&t, "", u16(d + 6) - 273.15, 0, " degC");
            }
            return (int)gw_text_len(&t);
        case 0x374: case 0x375: case 0x376: case 0x377: {
            static const char *const what[] = { " min cell ", " max cell ", " min temp sensor ", " max temp sensor " };
            ascii(d, dlc, text);
            put_quoted(&t, what[f->id - 0x374], text);
            return (int)gw_text_len(&t);
        }
        case 0x378:
            if (dlc < 8)
                goto raw;
            put_num(&t, " energy in ", u32(d) / 10.0, 1, " kWh");
            put_num(&t, " out ", u32(d + 4) / 10.0, 1, " kWh");
            return (int)gw_text_len(&t);
        case 0x379:
            if (dlc < 2)
                goto raw;
            put_num(&t, " installed capacity ", u16(d), 0, " Ah");
            return (int)gw_text_len(&t);
        case 0x380:
        case 0x381:
            ascii(d, dlc, text);
            put_quoted(&t, f->id == 0x380 ? " serial[1] " : " serial[2] ", text);
            return (int)gw_text_len(&t);
        case 0x382:
            ascii(d, dlc, text);
            put_quoted(&t, " family ", text);
            return (int)gw_text_len(&t);
        case 0x305:
            gw_text_put_str(&t, " GX keep-alive");
            return (int)gw_text_len(&t);
        case 0x306:
            gw_text_put_str(&t, " GX 0x306");
            return (int)gw_text_len(&t);
        case 0x307:
            ascii(d + 4, dlc > 4 ? dlc - 4 : 0, text);
            put_quoted(&t, " GX identification ", text);
            return (int)gw_text_len(&t);
        default:
            break;
        }
    }
raw:
    gw_text_put_str(&t, " [");
    gw_text_put_uint(&t, dlc);
    gw_text_put_char(&t, ']');
    for (unsigned i = 0; i < dlc && i < 8; i++) {
        gw_text_put_char(&t, ' ');
        gw_text_put_hex(&t, d[i], 2);
    }
    return (int)gw_text_len(&t);
}
