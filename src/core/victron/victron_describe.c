/* One-line meaning of the Victron CAN-bus BMS frames, decoded independently of the encoder
 * (the tap shows what is on the wire, so an encoder bug shows up there too). */
#include "victron.h"

#include "can_frame.h"

#include "gw_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static uint16_t u16(const uint8_t *d) { return (uint16_t)(d[0] | (d[1] << 8)); }
static int16_t s16(const uint8_t *d) { return (int16_t)u16(d); }
static uint32_t u32(const uint8_t *d)
{
    return (uint32_t)d[0] | ((uint32_t)d[1] << 8) | ((uint32_t)d[2] << 16) | ((uint32_t)d[3] << 24);
}

/* Appends to buf at *pos; stops quietly when full (the text is truncated, still terminated). */
static void put(char *buf, size_t cap, size_t *pos, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
{
    if (*pos >= cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *pos += (size_t)n < cap - *pos ? (size_t)n : cap - *pos - 1;
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
static void list_active(const uint8_t *d, int base, char *buf, size_t cap, size_t *pos)
{
    int n = 0;
    for (int f = 0; f < 13; f++) {
        uint8_t byte = d[base + f / 4];
        int shift = 2 * (f % 4);
        if (byte & (1u << shift)) {
            put(buf, cap, pos, "%s%s", n ? ", " : " ", flag_names[f]);
            n++;
        }
    }
    if (!n)
        put(buf, cap, pos, " none");
}

int victron_describe_frame(const struct can_frame_gw *f, char *buf, size_t cap)
{
    if (!f || !buf || cap == 0)
        return GW_ERR_INVAL;
    size_t pos = 0;
    buf[0] = '\0';
    const uint8_t *d = f->data;
    char text[9];
    if (f->err) {
        put(buf, cap, &pos, "error frame class 0x%08X", (unsigned)f->id);
        return (int)pos;
    }
    put(buf, cap, &pos, f->ext ? "0x%08X" : "0x%03X", (unsigned)f->id);
    if (f->rtr) {
        put(buf, cap, &pos, " remote request [%u]", f->dlc);
        return (int)pos;
    }
    unsigned dlc = f->dlc;
    bool known = !f->ext;
    if (known) {
        switch (f->id) {
        case 0x351:
            if (dlc < 6)
                goto raw;
            put(buf, cap, &pos, " CVL %.1f V CCL %.1f A DCL %.1f A", u16(d) / 10.0, s16(d + 2) / 10.0,
                s16(d + 4) / 10.0);
            if (dlc >= 8)
                put(buf, cap, &pos, " DV %.1f V", u16(d + 6) / 10.0);
            return (int)pos;
        case 0x355:
            if (dlc < 4)
                goto raw;
            put(buf, cap, &pos, " SOC %u %% SOH %u %%", u16(d), u16(d + 2));
            if (dlc >= 6)
                put(buf, cap, &pos, " (%.2f %%)", u16(d + 4) / 100.0);
            return (int)pos;
        case 0x356:
            if (dlc < 6)
                goto raw;
            put(buf, cap, &pos, " %.2f V %.1f A %.1f degC", s16(d) / 100.0, s16(d + 2) / 10.0,
                s16(d + 4) / 10.0);
            return (int)pos;
        case 0x35A:
            if (dlc < 8)
                goto raw;
            put(buf, cap, &pos, " alarms:");
            list_active(d, 0, buf, cap, &pos);
            put(buf, cap, &pos, "; warnings:");
            list_active(d, 4, buf, cap, &pos);
            put(buf, cap, &pos, "; %s", (d[7] & 0x0C) == 0x08 ? "online" : (d[7] & 0x0C) == 0x04 ? "offline" : "status n/a");
            return (int)pos;
        case 0x35E:
            ascii(d, dlc, text);
            put(buf, cap, &pos, " manufacturer \"%s\"", text);
            return (int)pos;
        case 0x35F:
            if (dlc < 6)
                goto raw;
            put(buf, cap, &pos, " model %u fw %u.%u capacity %u Ah", u16(d), d[2], d[3], u16(d + 4));
            if (dlc >= 8)
                put(buf, cap, &pos, " hw %u", u16(d + 6));
            return (int)pos;
        case 0x370:
        case 0x371:
            ascii(d, dlc, text);
            put(buf, cap, &pos, " name[%d] \"%s\"", f->id == 0x370 ? 1 : 2, text);
            return (int)pos;
        case 0x372:
            if (dlc < 8)
                goto raw;
            put(buf, cap, &pos, " modules ok %u block-charge %u block-discharge %u offline %u", u16(d),
                u16(d + 2), u16(d + 4), u16(d + 6));
            return (int)pos;
        case 0x373:
            if (dlc < 4)
                goto raw;
            put(buf, cap, &pos, " cells %.3f..%.3f V", u16(d) / 1000.0, u16(d + 2) / 1000.0);
            if (dlc >= 8)
                put(buf, cap, &pos, " temp %.0f..%.0f degC", u16(d + 4) - 273.15, u16(d + 6) - 273.15);
            return (int)pos;
        case 0x374: case 0x375: case 0x376: case 0x377: {
            static const char *const what[] = { "min cell", "max cell", "min temp sensor", "max temp sensor" };
            ascii(d, dlc, text);
            put(buf, cap, &pos, " %s \"%s\"", what[f->id - 0x374], text);
            return (int)pos;
        }
        case 0x378:
            if (dlc < 8)
                goto raw;
            put(buf, cap, &pos, " energy in %.1f kWh out %.1f kWh", u32(d) / 10.0, u32(d + 4) / 10.0);
            return (int)pos;
        case 0x379:
            if (dlc < 2)
                goto raw;
            put(buf, cap, &pos, " installed capacity %u Ah", u16(d));
            return (int)pos;
        case 0x380:
        case 0x381:
            ascii(d, dlc, text);
            put(buf, cap, &pos, " serial[%d] \"%s\"", f->id == 0x380 ? 1 : 2, text);
            return (int)pos;
        case 0x382:
            ascii(d, dlc, text);
            put(buf, cap, &pos, " family \"%s\"", text);
            return (int)pos;
        case 0x305:
            put(buf, cap, &pos, " GX keep-alive");
            return (int)pos;
        case 0x306:
            put(buf, cap, &pos, " GX 0x306");
            return (int)pos;
        case 0x307:
            ascii(d + 4, dlc > 4 ? dlc - 4 : 0, text);
            put(buf, cap, &pos, " GX identification \"%s\"", text);
            return (int)pos;
        default:
            break;
        }
    }
raw:
    put(buf, cap, &pos, " [%u]", dlc);
    for (unsigned i = 0; i < dlc && i < 8; i++)
        put(buf, cap, &pos, " %02X", d[i]);
    return (int)pos;
}
