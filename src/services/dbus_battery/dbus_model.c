/* The path table of com.victronenergy.battery.* and the values of one service (see
 * dbus_model.h). Every value comes from the battery view (copied, never a limit computed here:
 * the limits are the view's, rounded exactly as CAN 0x351 rounds them), the BMS version and
 * statistics, or the service's identity. */
#include "dbus_model.h"

#include "gw_error.h"
#include "gw_text.h"
#include "victron.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ values */

void dbus_value_set_invalid(struct dbus_value *v)
{
    memset(v, 0, sizeof *v);
}

void dbus_value_set_double(struct dbus_value *v, double d, unsigned decimals)
{
    dbus_value_set_invalid(v);
    if (!isfinite(d) || fabs(d) > 1e15)
        return;
    double scale = 1.0;
    for (unsigned k = 0; k < decimals && k < 9; k++)
        scale *= 10.0;
    /* Half away from zero with the CAN encoder's tolerance of 1/200 step, so a decimal stored
     * as the float just below it (55.55f = 55.5499992) rounds as written. */
    double a = floor(fabs(d) * scale + 0.5 + 0.005) / scale;
    double r = d < 0.0 ? -a : a;
    v->kind = DBUS_V_DOUBLE;
    v->d = r == 0.0 ? 0.0 : r;           /* never -0.0 */
}

void dbus_value_set_int(struct dbus_value *v, int32_t i)
{
    dbus_value_set_invalid(v);
    v->kind = DBUS_V_INT;
    v->i = i;
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 when the bytes there are not one. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

void dbus_value_set_str(struct dbus_value *v, const char *s)
{
    dbus_value_set_invalid(v);
    v->kind = DBUS_V_STRING;
    if (!s)
        return;
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = utf8_seq(p);
        if (n == 0) {
            if (o + 1 >= sizeof v->s)
                break;
            v->s[o++] = '?';
            p++;
            continue;
        }
        if (o + n >= sizeof v->s)
            break; /* cut on a character boundary */
        memcpy(v->s + o, p, n);
        o += n;
        p += n;
    }
    v->s[o] = '\0';
}

bool dbus_value_changed(const struct dbus_row *row, const struct dbus_value *old, const struct dbus_value *fresh)
{
    if (old->kind != fresh->kind)
        return true;
    switch (fresh->kind) {
    case DBUS_V_INVALID: return false;
    case DBUS_V_INT: return old->i != fresh->i;
    case DBUS_V_STRING: return strcmp(old->s, fresh->s) != 0;
    case DBUS_V_DOUBLE: {
        double delta = fabs(fresh->d - old->d);
        if (row->deadband <= 0.0)
            return delta != 0.0;
        return delta >= row->deadband * (1.0 - 1e-9);
    }
    default: return true;
    }
}

const char *dbus_value_text(const struct dbus_row *row, const struct dbus_value *v, char *buf, size_t cap)
{
    struct gw_text t;
    gw_text_init(&t, buf, cap);
    switch (v->kind) {
    case DBUS_V_DOUBLE:
        gw_text_put_fixed(&t, v->d, row->decimals);
        gw_text_put_str(&t, row->unit);
        break;
    case DBUS_V_INT:
        if (row->flags & DBUS_F_HEX_TEXT) {
            gw_text_put_str(&t, "0x");
            gw_text_put_hex(&t, (uint32_t)v->i, 1);
        } else {
            gw_text_put_int(&t, v->i);
            gw_text_put_str(&t, row->unit);
        }
        break;
    case DBUS_V_STRING: gw_text_put_str(&t, v->s); break;
    default: gw_text_put_str(&t, "---"); break;
    }
    return buf;
}

int dbus_parse_class_instance(const char *text, int32_t *instance)
{
    if (!text || !instance)
        return GW_ERR_INVAL;
    const char *c = strchr(text, ':');
    if (!c || c == text || !c[1])
        return GW_ERR_INVAL;
    int64_t n = 0;
    for (const char *p = c + 1; *p; p++) {
        if (*p < '0' || *p > '9' || n > 100000)
            return GW_ERR_INVAL;
        n = n * 10 + (*p - '0');
    }
    *instance = (int32_t)n;
    return GW_OK;
}

const char *dbus_name_element(const char *device, const char *fallback, char *out, size_t cap)
{
    const char *base = device ? strrchr(device, '/') : NULL;
    base = base ? base + 1 : (device ? device : "");
    struct gw_text t;
    gw_text_init(&t, out, cap);
    for (const char *p = base; *p; p++) {
        char c = *p;
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        gw_text_put_char(&t, ok ? c : '_');
    }
    if (!out[0] || (out[0] >= '0' && out[0] <= '9') || gw_text_truncated(&t))
        gw_text_copy(out, cap, fallback);
    return out;
}

/* ------------------------------------------------------------------ getters */

static const struct battery_pack *src_pack(const struct dbus_src *s)
{
    if (!s->view || s->view->pack_count == 0)
        return NULL;
    int k = s->pack >= 0 ? s->pack : 0;
    return k < s->view->pack_count && k < BATTERY_MAX_PACKS ? &s->view->packs[k] : NULL;
}

static bool is_bank(const struct dbus_src *s) { return s->pack < 0; }

static void put_d(struct dbus_value *out, const struct dbus_row *r, double d) { dbus_value_set_double(out, d, r->decimals); }

enum id_field { ID_PROCESS_NAME, ID_PROCESS_VERSION, ID_CONNECTION, ID_PRODUCT_NAME, ID_CUSTOM_NAME,
                ID_FIRMWARE, ID_HARDWARE, ID_SERIAL, ID_DEVICE_INSTANCE, ID_PRODUCT_ID };

static void g_identity(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    const struct dbus_identity *id = s->id;
    const struct bms_version *ver = s->version && s->version->valid ? s->version : NULL;
    char buf[DBUS_STR_MAX];
    struct gw_text t;
    gw_text_init(&t, buf, sizeof buf);
    switch (r->arg) {
    case ID_PROCESS_NAME: dbus_value_set_str(out, id->process_name); break;
    case ID_PROCESS_VERSION: dbus_value_set_str(out, id->process_version); break;
    case ID_CONNECTION: dbus_value_set_str(out, id->connection); break;
    case ID_PRODUCT_NAME: dbus_value_set_str(out, id->product_name); break;
    case ID_CUSTOM_NAME:
        if (id->custom_name[0])
            dbus_value_set_str(out, id->custom_name);
        else
            dbus_value_set_invalid(out);
        break;
    case ID_FIRMWARE: /* "86 (internal 1234)", as MQTT and the web show it */
        if (!ver) {
            dbus_value_set_invalid(out);
            break;
        }
        gw_text_put_uint(&t, ver->fw_public);
        gw_text_put_str(&t, " (internal ");
        gw_text_put_uint(&t, ver->fw_internal);
        gw_text_put_char(&t, ')');
        dbus_value_set_str(out, buf);
        break;
    case ID_HARDWARE:
        if (!ver) {
            dbus_value_set_invalid(out);
            break;
        }
        gw_text_put_uint(&t, ver->hw_version);
        gw_text_put_char(&t, '.');
        gw_text_put_uint(&t, ver->hw_changes);
        dbus_value_set_str(out, buf);
        break;
    case ID_SERIAL:
        if (ver && ver->serial[0])
            dbus_value_set_str(out, ver->serial);
        else
            dbus_value_set_invalid(out);
        break;
    case ID_DEVICE_INSTANCE: dbus_value_set_int(out, id->device_instance); break;
    case ID_PRODUCT_ID: dbus_value_set_int(out, id->product_id); break;
    default: dbus_value_set_invalid(out); break;
    }
}

static void g_connected(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    (void)r;
    dbus_value_set_int(out, s->online ? 1 : 0);
}

enum dc_field { DC_VOLTAGE, DC_CURRENT, DC_POWER, DC_TEMP, DC_SOC, DC_SOH, DC_CONSUMED, DC_TTG };

/* Highest (max true) or lowest external (cell) sensor of a pack, false when none. */
static bool pack_ext_temp(const struct bms_live_data *d, bool max, double *out)
{
    bool have = false;
    double best = 0.0;
    for (unsigned k = BMS_TEMP_EXT1; k <= BMS_TEMP_EXT2; k++) {
        if (!d->temp_present[k])
            continue;
        double c = bms_temp_c(d, k);
        if (!have || (max ? c > best : c < best))
            best = c;
        have = true;
    }
    *out = best;
    return have;
}

static void g_dc(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    dbus_value_set_invalid(out);
    const struct battery_view *v = s->view;
    const struct battery_pack *p = src_pack(s);
    if (!v || (!is_bank(s) && !p))
        return;
    bool bank = is_bank(s);
    double volt = bank ? v->voltage_v : p->live.pack_voltage_v;
    double amp = bank ? v->current_a : p->live.pack_current_a;
    double soc = bank ? v->soc_pct : p->soc_pct;
    double cap = bank ? v->capacity_ah : p->capacity_ah;
    double t;
    switch (r->arg) {
    case DC_VOLTAGE: put_d(out, r, volt); break;
    case DC_CURRENT: put_d(out, r, amp); break;
    case DC_POWER: put_d(out, r, bank ? v->power_w : volt * amp); break;
    case DC_TEMP: /* the hottest cell sensor, as CAN 0x356 */
        if (bank ? v->have_temp : pack_ext_temp(&p->live, true, &t))
            put_d(out, r, bank ? v->temp_max_c : t);
        break;
    case DC_SOC: put_d(out, r, soc); break;
    case DC_SOH:
        if (bank ? v->soh_valid : p->live.soh_valid)
            put_d(out, r, bank ? v->soh_pct : bms_soh_percent(&p->live));
        break;
    case DC_CONSUMED: /* negative: what was taken from full (dbus-serialbattery's convention) */
        if (cap > 0.0 && soc >= 0.0 && soc <= 100.0)
            put_d(out, r, -cap * (100.0 - soc) / 100.0);
        break;
    case DC_TTG: { /* only while discharging; the BMS's estimate, 0 = unknown */
        uint32_t left = bank ? v->time_left_s : p->live.time_left_s;
        if (left > 0 && amp < 0.0)
            put_d(out, r, (double)left);
        break;
    }
    default: break;
    }
}

static void g_installed(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    dbus_value_set_invalid(out);
    const struct battery_pack *p = src_pack(s);
    double cap = !s->view ? 0.0 : is_bank(s) ? s->view->installed_capacity_ah : p ? p->capacity_ah : 0.0;
    if (cap > 0.0)
        put_d(out, r, cap);
}

/* The bank's limits, rounded as CAN 0x351 rounds them (CVL/CCL/DCL down to 0.1, the discharge
 * voltage to the nearest 0.1): the GX gets the same numbers whichever link it uses. */
static const struct victron_field *limit_field(int source)
{
    size_t n;
    const struct victron_field *t = victron_field_table(&n);
    for (size_t k = 0; k < n; k++)
        if (t[k].can_id == VICTRON_ID_LIMITS && t[k].source == source)
            return &t[k];
    return NULL;
}

static void g_limit(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    dbus_value_set_invalid(out);
    const struct battery_view *v = s->view;
    const struct victron_field *f = limit_field(r->arg);
    if (!v || !f || !v->limits.valid)
        return;
    double x = r->arg == VICTRON_SRC_CVL_V ? v->limits.cvl_v
               : r->arg == VICTRON_SRC_CCL_A ? v->limits.ccl_a
               : r->arg == VICTRON_SRC_DCL_A ? v->limits.dcl_a
                                             : v->limits.discharge_v;
    if (!isfinite(x))
        return;
    int64_t raw = victron_field_raw(f, x);
    put_d(out, r, ((double)raw - f->offset) / f->factor);
}

static void g_allow(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    bool charge = r->arg == 0;
    bool allowed = false;
    if (s->online && s->view) {
        if (is_bank(s)) {
            const struct victron_field *f = limit_field(charge ? VICTRON_SRC_CCL_A : VICTRON_SRC_DCL_A);
            double x = charge ? s->view->limits.ccl_a : s->view->limits.dcl_a;
            allowed = s->view->limits.valid && f && isfinite(x) && victron_field_raw(f, x) > 0;
        } else {
            const struct battery_pack *p = src_pack(s);
            allowed = p && (charge ? p->charge_allowed : p->discharge_allowed);
        }
    }
    dbus_value_set_int(out, allowed ? 1 : 0);
}

enum sys_field { SYS_MIN_CELL_V, SYS_MAX_CELL_V, SYS_MIN_CELL_ID, SYS_MAX_CELL_ID, SYS_MIN_TEMP, SYS_MAX_TEMP,
                 SYS_MIN_TEMP_ID, SYS_MAX_TEMP_ID };

static void put_ref(struct dbus_value *out, const struct battery_ref *ref)
{
    char name[sizeof ref->name + 1];
    gw_text_copyn(name, sizeof name, ref->name, sizeof ref->name);
    if (name[0])
        dbus_value_set_str(out, name);
}

static void g_system(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    dbus_value_set_invalid(out);
    const struct battery_view *v = s->view;
    const struct battery_pack *p = src_pack(s);
    if (!v || (!is_bank(s) && !p))
        return;
    char name[12];
    struct gw_text t;
    gw_text_init(&t, name, sizeof name);
    double temp;
    if (is_bank(s)) {
        switch (r->arg) {
        case SYS_MIN_CELL_V: put_d(out, r, v->min_cell_v); break;
        case SYS_MAX_CELL_V: put_d(out, r, v->max_cell_v); break;
        case SYS_MIN_CELL_ID: put_ref(out, &v->min_cell); break;
        case SYS_MAX_CELL_ID: put_ref(out, &v->max_cell); break;
        case SYS_MIN_TEMP: if (v->have_temp) put_d(out, r, v->temp_min_c); break;
        case SYS_MAX_TEMP: if (v->have_temp) put_d(out, r, v->temp_max_c); break;
        case SYS_MIN_TEMP_ID: if (v->have_temp) put_ref(out, &v->min_temp); break;
        case SYS_MAX_TEMP_ID: if (v->have_temp) put_ref(out, &v->max_temp); break;
        default: break;
        }
        return;
    }
    const struct bms_live_data *d = &p->live;
    switch (r->arg) {
    case SYS_MIN_CELL_V: put_d(out, r, d->min_cell_mv / 1000.0); break;
    case SYS_MAX_CELL_V: put_d(out, r, d->max_cell_mv / 1000.0); break;
    case SYS_MIN_CELL_ID:
    case SYS_MAX_CELL_ID: {
        uint8_t idx = r->arg == SYS_MIN_CELL_ID ? d->min_cell_index : d->max_cell_index;
        if (idx) {
            gw_text_put_char(&t, 'C');
            gw_text_put_uint(&t, idx);
            dbus_value_set_str(out, name);
        }
        break;
    }
    case SYS_MIN_TEMP:
    case SYS_MAX_TEMP:
        if (pack_ext_temp(d, r->arg == SYS_MAX_TEMP, &temp))
            put_d(out, r, temp);
        break;
    case SYS_MIN_TEMP_ID:
    case SYS_MAX_TEMP_ID: {
        /* Which external sensor ("T1", "T2"), as CAN 0x376/0x377 name them. */
        bool max = r->arg == SYS_MAX_TEMP_ID;
        int best = -1;
        for (unsigned k = BMS_TEMP_EXT1; k <= BMS_TEMP_EXT2; k++) {
            if (!d->temp_present[k])
                continue;
            if (best < 0 || (max ? d->temp_dc[k] > d->temp_dc[best] : d->temp_dc[k] < d->temp_dc[best]))
                best = (int)k;
        }
        if (best >= 0) {
            gw_text_put_char(&t, 'T');
            gw_text_put_uint(&t, (unsigned)best);
            dbus_value_set_str(out, name);
        }
        break;
    }
    default: break;
    }
}

enum mod_field { MOD_CELLS, MOD_ONLINE, MOD_OFFLINE, MOD_BLOCK_CHARGE, MOD_BLOCK_DISCHARGE };

static void g_modules(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    dbus_value_set_invalid(out);
    const struct battery_view *v = s->view;
    const struct battery_pack *p = src_pack(s);
    if (!v)
        return;
    if (r->arg == MOD_CELLS) {
        uint8_t n = is_bank(s) ? v->cell_count : (p ? p->live.cell_count : 0);
        if (n)
            dbus_value_set_int(out, n);
        return;
    }
    /* Not fresh: every module offline, none blocking (what 0x372 says then). */
    int total = is_bank(s) ? (v->pack_count ? v->pack_count : 1) : 1;
    int online = 0, offline = total, bc = 0, bd = 0;
    if (s->online && is_bank(s)) {
        online = v->modules.ok;
        offline = v->modules.offline;
        bc = v->modules.blocking_charge;
        bd = v->modules.blocking_discharge;
    } else if (s->online && p) {
        online = 1;
        offline = 0;
        bc = !p->charge_allowed;
        bd = !p->discharge_allowed;
    }
    int x = r->arg == MOD_ONLINE ? online : r->arg == MOD_OFFLINE ? offline : r->arg == MOD_BLOCK_CHARGE ? bc : bd;
    dbus_value_set_int(out, x);
}

static bool pack_fresh(const struct battery_pack *p)
{
    return p->live.valid && (p->state == BATTERY_PACK_ONLINE || p->state == BATTERY_PACK_REJOINING);
}

static void g_balancing(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    (void)r;
    dbus_value_set_invalid(out);
    const struct battery_view *v = s->view;
    if (!v)
        return;
    bool any = false;
    if (is_bank(s)) {
        for (unsigned k = 0; k < v->pack_count && k < BATTERY_MAX_PACKS; k++)
            if (pack_fresh(&v->packs[k]) && v->packs[k].live.balancing_active)
                any = true;
    } else {
        const struct battery_pack *p = src_pack(s);
        any = p && p->live.balancing_active != 0;
    }
    dbus_value_set_int(out, any ? 1 : 0);
}

/* arg 1..16: a cell; 0: the sum; -1: the spread. */
static void g_cells(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    dbus_value_set_invalid(out);
    const struct battery_pack *p = src_pack(s);
    if (!p || !p->live.valid)
        return;
    const struct bms_live_data *d = &p->live;
    unsigned n = d->cell_count <= BMS_MAX_CELLS ? d->cell_count : BMS_MAX_CELLS;
    if (r->arg >= 1) {
        if ((unsigned)r->arg <= n)
            put_d(out, r, bms_cell_v(d, (unsigned)r->arg - 1));
    } else if (r->arg == 0 && n) {
        double sum = 0.0;
        for (unsigned k = 0; k < n; k++)
            sum += bms_cell_v(d, k);
        put_d(out, r, sum);
    } else if (n) {
        put_d(out, r, d->cell_spread_mv_x10 / 10000.0);
    }
}

enum hist_field { HIST_CHARGE_CYCLES, HIST_LOW_V_ALARMS, HIST_HIGH_V_ALARMS, HIST_MIN_TEMP, HIST_MAX_TEMP,
                  HIST_CHARGED_KWH, HIST_DISCHARGED_KWH };

static void g_history(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    dbus_value_set_invalid(out);
    if (r->arg == HIST_CHARGED_KWH || r->arg == HIST_DISCHARGED_KWH) {
        if (s->view && is_bank(s))
            put_d(out, r, (r->arg == HIST_CHARGED_KWH ? s->view->energy_in_wh : s->view->energy_out_wh) / 1000.0);
        return;
    }
    const struct bms_statistics *st = s->stats && s->stats->valid ? s->stats : NULL;
    if (!st)
        return;
    switch (r->arg) {
    case HIST_CHARGE_CYCLES: dbus_value_set_int(out, st->charging_count); break;
    case HIST_LOW_V_ALARMS: dbus_value_set_int(out, st->under_voltage_count); break;
    case HIST_HIGH_V_ALARMS: dbus_value_set_int(out, st->over_voltage_count); break;
    case HIST_MIN_TEMP: put_d(out, r, st->min_pack_temp_c); break;
    case HIST_MAX_TEMP: put_d(out, r, st->max_pack_temp_c); break;
    default: break;
    }
}

/* 0 OK, 1 warning, 2 alarm, from the view's flags (the same that CAN 0x35A carries); a flag the
 * view does not support stays invalid (the GUI then hides the row). */
static void g_alarm(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    dbus_value_set_invalid(out);
    const struct battery_pack *p = src_pack(s);
    if (!s->view || (!is_bank(s) && !p) || r->arg < 0 || r->arg >= VICTRON_FLAG_COUNT)
        return;
    const struct victron_alarm_state *a = is_bank(s) ? &s->view->alarms : &p->alarms;
    uint8_t al = a->alarm[r->arg], wa = a->warning[r->arg];
    if (al == VICTRON_FLAG_ACTIVE)
        dbus_value_set_int(out, 2);
    else if (wa == VICTRON_FLAG_ACTIVE)
        dbus_value_set_int(out, 1);
    else if (al == VICTRON_FLAG_OK || wa == VICTRON_FLAG_OK)
        dbus_value_set_int(out, 0);
}

/* The link to the BMS: alarm while the data is not fresh (as dbus-serialbattery raises it). */
static void g_bms_cable(const struct dbus_src *s, const struct dbus_row *r, struct dbus_value *out)
{
    (void)r;
    if (!s->view)
        dbus_value_set_invalid(out);
    else
        dbus_value_set_int(out, s->online ? 0 : 2);
}

/* ------------------------------------------------------------------ the table */

#define L DBUS_F_LIVE
#define ALL DBUS_SCOPE_ALL
#define BMS DBUS_SCOPE_BMS
#define ONE DBUS_SCOPE_ONE_PACK
#define ROW(p, k, dec, u, db, sc, fl, a, g, desc) { p, k, dec, u, db, sc, fl, a, g, desc }
#define STR(p, a, fl, desc) ROW(p, DBUS_V_STRING, 0, NULL, 0, ALL, fl, a, g_identity, desc)
#define CELL(n) ROW("/Voltages/Cell" #n, DBUS_V_DOUBLE, 3, "V", 0.002, ONE, L, n, g_cells, "cell " #n " voltage")
#define ALARM(name, flag) ROW("/Alarms/" name, DBUS_V_INT, 0, NULL, 0, ALL, 0, flag, g_alarm, \
                              "0 ok, 1 warning, 2 alarm")

static const struct dbus_row table[] = {
    STR("/Mgmt/ProcessName", ID_PROCESS_NAME, 0, "process"),
    STR("/Mgmt/ProcessVersion", ID_PROCESS_VERSION, 0, "process version"),
    STR("/Mgmt/Connection", ID_CONNECTION, 0, "how the BMS is connected"),
    ROW("/DeviceInstance", DBUS_V_INT, 0, NULL, 0, ALL, 0, ID_DEVICE_INSTANCE, g_identity, "device instance"),
    ROW("/ProductId", DBUS_V_INT, 0, NULL, 0, ALL, DBUS_F_HEX_TEXT, ID_PRODUCT_ID, g_identity, "product id"),
    STR("/ProductName", ID_PRODUCT_NAME, 0, "product name"),
    STR("/FirmwareVersion", ID_FIRMWARE, 0, "TinyBMS firmware"),
    STR("/HardwareVersion", ID_HARDWARE, 0, "TinyBMS hardware"),
    STR("/Serial", ID_SERIAL, 0, "TinyBMS serial number"),
    STR("/CustomName", ID_CUSTOM_NAME, DBUS_F_WRITEABLE, "name given by the user"),
    ROW("/Connected", DBUS_V_INT, 0, NULL, 0, ALL, 0, 0, g_connected, "1 while the BMS data is fresh"),

    ROW("/Dc/0/Voltage", DBUS_V_DOUBLE, 2, "V", 0.02, ALL, L, DC_VOLTAGE, g_dc, "battery voltage"),
    ROW("/Dc/0/Current", DBUS_V_DOUBLE, 1, "A", 0.2, ALL, L, DC_CURRENT, g_dc, "battery current, + charging"),
    ROW("/Dc/0/Power", DBUS_V_DOUBLE, 0, "W", 5.0, ALL, L, DC_POWER, g_dc, "battery power, + charging"),
    ROW("/Dc/0/Temperature", DBUS_V_DOUBLE, 1, "°C", 0.2, ALL, L, DC_TEMP, g_dc, "battery temperature"),
    ROW("/Soc", DBUS_V_DOUBLE, 1, "%", 0.1, ALL, L, DC_SOC, g_dc, "state of charge"),
    ROW("/Soh", DBUS_V_DOUBLE, 1, "%", 0.5, ALL, L, DC_SOH, g_dc, "state of health"),
    ROW("/InstalledCapacity", DBUS_V_DOUBLE, 1, "Ah", 0, ALL, 0, 0, g_installed, "installed capacity"),
    ROW("/ConsumedAmphours", DBUS_V_DOUBLE, 1, "Ah", 0.1, ALL, L, DC_CONSUMED, g_dc, "consumed from full"),
    ROW("/TimeToGo", DBUS_V_DOUBLE, 0, "s", 60.0, ALL, L, DC_TTG, g_dc, "time left while discharging"),

    ROW("/Info/MaxChargeVoltage", DBUS_V_DOUBLE, 1, "V", 0, BMS, L, VICTRON_SRC_CVL_V, g_limit, "CVL"),
    ROW("/Info/MaxChargeCurrent", DBUS_V_DOUBLE, 1, "A", 0, BMS, L, VICTRON_SRC_CCL_A, g_limit, "CCL"),
    ROW("/Info/MaxDischargeCurrent", DBUS_V_DOUBLE, 1, "A", 0, BMS, L, VICTRON_SRC_DCL_A, g_limit, "DCL"),
    ROW("/Info/BatteryLowVoltage", DBUS_V_DOUBLE, 1, "V", 0, BMS, L, VICTRON_SRC_DISCHARGE_V, g_limit,
        "discharge voltage"),
    ROW("/Io/AllowToCharge", DBUS_V_INT, 0, NULL, 0, ALL, 0, 0, g_allow, "1 charging allowed"),
    ROW("/Io/AllowToDischarge", DBUS_V_INT, 0, NULL, 0, ALL, 0, 1, g_allow, "1 discharging allowed"),

    ROW("/System/MinCellVoltage", DBUS_V_DOUBLE, 3, "V", 0, ALL, L, SYS_MIN_CELL_V, g_system, "lowest cell"),
    ROW("/System/MaxCellVoltage", DBUS_V_DOUBLE, 3, "V", 0, ALL, L, SYS_MAX_CELL_V, g_system, "highest cell"),
    ROW("/System/MinVoltageCellId", DBUS_V_STRING, 0, NULL, 0, ALL, L, SYS_MIN_CELL_ID, g_system, "lowest cell"),
    ROW("/System/MaxVoltageCellId", DBUS_V_STRING, 0, NULL, 0, ALL, L, SYS_MAX_CELL_ID, g_system, "highest cell"),
    ROW("/System/MinCellTemperature", DBUS_V_DOUBLE, 1, "°C", 0.2, ALL, L, SYS_MIN_TEMP, g_system, "coldest sensor"),
    ROW("/System/MaxCellTemperature", DBUS_V_DOUBLE, 1, "°C", 0.2, ALL, L, SYS_MAX_TEMP, g_system, "hottest sensor"),
    ROW("/System/MinTemperatureCellId", DBUS_V_STRING, 0, NULL, 0, ALL, L, SYS_MIN_TEMP_ID, g_system, "coldest"),
    ROW("/System/MaxTemperatureCellId", DBUS_V_STRING, 0, NULL, 0, ALL, L, SYS_MAX_TEMP_ID, g_system, "hottest"),
    ROW("/System/NrOfCellsPerBattery", DBUS_V_INT, 0, NULL, 0, ALL, 0, MOD_CELLS, g_modules, "series cells"),
    ROW("/System/NrOfModulesOnline", DBUS_V_INT, 0, NULL, 0, ALL, 0, MOD_ONLINE, g_modules, "packs online"),
    ROW("/System/NrOfModulesOffline", DBUS_V_INT, 0, NULL, 0, ALL, 0, MOD_OFFLINE, g_modules, "packs offline"),
    ROW("/System/NrOfModulesBlockingCharge", DBUS_V_INT, 0, NULL, 0, ALL, 0, MOD_BLOCK_CHARGE, g_modules,
        "packs blocking charge"),
    ROW("/System/NrOfModulesBlockingDischarge", DBUS_V_INT, 0, NULL, 0, ALL, 0, MOD_BLOCK_DISCHARGE, g_modules,
        "packs blocking discharge"),
    ROW("/Balancing", DBUS_V_INT, 0, NULL, 0, ALL, L, 0, g_balancing, "1 while a cell is balanced"),

    CELL(1), CELL(2), CELL(3), CELL(4), CELL(5), CELL(6), CELL(7), CELL(8),
    CELL(9), CELL(10), CELL(11), CELL(12), CELL(13), CELL(14), CELL(15), CELL(16),
    ROW("/Voltages/Sum", DBUS_V_DOUBLE, 2, "V", 0.02, ONE, L, 0, g_cells, "sum of the cells"),
    ROW("/Voltages/Diff", DBUS_V_DOUBLE, 3, "V", 0.002, ONE, L, -1, g_cells, "highest - lowest cell"),

    ROW("/History/ChargeCycles", DBUS_V_INT, 0, NULL, 0, ONE, 0, HIST_CHARGE_CYCLES, g_history, "charging count"),
    ROW("/History/LowVoltageAlarms", DBUS_V_INT, 0, NULL, 0, ONE, 0, HIST_LOW_V_ALARMS, g_history,
        "under-voltage cutoffs"),
    ROW("/History/HighVoltageAlarms", DBUS_V_INT, 0, NULL, 0, ONE, 0, HIST_HIGH_V_ALARMS, g_history,
        "over-voltage cutoffs"),
    ROW("/History/MinimumTemperature", DBUS_V_DOUBLE, 0, "°C", 0, ONE, 0, HIST_MIN_TEMP, g_history, "lowest pack"),
    ROW("/History/MaximumTemperature", DBUS_V_DOUBLE, 0, "°C", 0, ONE, 0, HIST_MAX_TEMP, g_history, "highest pack"),
    ROW("/History/ChargedEnergy", DBUS_V_DOUBLE, 1, "kWh", 0, BMS, 0, HIST_CHARGED_KWH, g_history, "charged"),
    ROW("/History/DischargedEnergy", DBUS_V_DOUBLE, 1, "kWh", 0, BMS, 0, HIST_DISCHARGED_KWH, g_history,
        "discharged"),

    ALARM("LowVoltage", VICTRON_FLAG_LOW_VOLTAGE),
    ALARM("HighVoltage", VICTRON_FLAG_HIGH_VOLTAGE),
    ALARM("HighTemperature", VICTRON_FLAG_HIGH_TEMP),
    ALARM("LowTemperature", VICTRON_FLAG_LOW_TEMP),
    ALARM("HighChargeTemperature", VICTRON_FLAG_HIGH_TEMP_CHARGE),
    ALARM("LowChargeTemperature", VICTRON_FLAG_LOW_TEMP_CHARGE),
    ALARM("HighDischargeCurrent", VICTRON_FLAG_HIGH_DISCHARGE_CURRENT),
    ALARM("HighChargeCurrent", VICTRON_FLAG_HIGH_CHARGE_CURRENT),
    ALARM("Contactor", VICTRON_FLAG_CONTACTOR),
    ALARM("InternalFailure", VICTRON_FLAG_BMS_INTERNAL),
    ALARM("CellImbalance", VICTRON_FLAG_CELL_IMBALANCE),
    ROW("/Alarms/BmsCable", DBUS_V_INT, 0, NULL, 0, ALL, 0, 0, g_bms_cable, "2 while no fresh BMS data"),
};

const struct dbus_row *dbus_model_table(size_t *count)
{
    if (count)
        *count = sizeof table / sizeof table[0];
    return table;
}

/* ------------------------------------------------------------------ the model of a service */

static int add_node(struct dbus_model *m, const char *path, size_t len)
{
    for (unsigned k = 0; k < m->node_count; k++)
        if (strlen(m->nodes[k]) == len && memcmp(m->nodes[k], path, len) == 0)
            return GW_OK;
    if (m->node_count >= DBUS_MAX_NODES || len >= DBUS_PATH_MAX)
        return GW_ERR_OVERFLOW;
    memcpy(m->nodes[m->node_count], path, len);
    m->nodes[m->node_count][len] = '\0';
    m->node_count++;
    return GW_OK;
}

int dbus_model_init(struct dbus_model *m, const struct dbus_model_config *cfg)
{
    if (!m || !cfg)
        return GW_ERR_INVAL;
    memset(m, 0, sizeof *m);
    int rc = add_node(m, "/", 1);
    size_t n;
    const struct dbus_row *t = dbus_model_table(&n);
    for (size_t k = 0; k < n && !rc; k++) {
        const struct dbus_row *r = &t[k];
        if ((r->scope == DBUS_SCOPE_BMS && !cfg->bms) || (r->scope == DBUS_SCOPE_ONE_PACK && !cfg->one_pack))
            continue;
        if (r->get == g_cells && r->arg >= 1 && r->arg > cfg->cell_count)
            continue;
        if (m->count >= DBUS_MAX_LEAVES)
            return GW_ERR_OVERFLOW;
        m->rows[m->count++] = r;
        /* Every prefix of the path is a node: "/Dc", "/Dc/0" for "/Dc/0/Voltage". */
        for (const char *p = strchr(r->path + 1, '/'); p && !rc; p = strchr(p + 1, '/'))
            rc = add_node(m, r->path, (size_t)(p - r->path));
    }
    return rc;
}

int dbus_model_find(const struct dbus_model *m, const char *path)
{
    if (!m || !path)
        return -1;
    for (unsigned k = 0; k < m->count; k++)
        if (strcmp(m->rows[k]->path, path) == 0)
            return (int)k;
    return -1;
}

int dbus_model_find_node(const struct dbus_model *m, const char *path)
{
    if (!m || !path)
        return -1;
    for (unsigned k = 0; k < m->node_count; k++)
        if (strcmp(m->nodes[k], path) == 0)
            return (int)k;
    return -1;
}

bool dbus_model_below(const char *node, const char *leaf, const char **rel)
{
    if (strcmp(node, "/") == 0) {
        if (rel)
            *rel = leaf + 1;
        return leaf[0] == '/';
    }
    size_t n = strlen(node);
    if (strncmp(leaf, node, n) != 0 || leaf[n] != '/')
        return false;
    if (rel)
        *rel = leaf + n + 1;
    return true;
}

void dbus_model_children(const struct dbus_model *m, const char *node, void (*fn)(const char *name, void *ctx),
                         void *ctx)
{
    /* At most DBUS_MAX_LEAVES distinct names; listed in path order, each once. */
    const char *seen[DBUS_MAX_LEAVES];
    size_t seen_len[DBUS_MAX_LEAVES];
    unsigned ns = 0;
    for (unsigned k = 0; k < m->count; k++) {
        const char *rel;
        if (!dbus_model_below(node, m->rows[k]->path, &rel))
            continue;
        size_t len = strcspn(rel, "/");
        bool dup = false;
        for (unsigned j = 0; j < ns && !dup; j++)
            dup = seen_len[j] == len && memcmp(seen[j], rel, len) == 0;
        if (dup)
            continue;
        seen[ns] = rel;
        seen_len[ns++] = len;
        char name[DBUS_PATH_MAX];
        gw_text_copyn(name, sizeof name, rel, len);
        fn(name, ctx);
    }
}

void dbus_model_compute(const struct dbus_model *m, const struct dbus_src *src, struct dbus_value *out)
{
    for (unsigned k = 0; k < m->count; k++) {
        const struct dbus_row *r = m->rows[k];
        if ((r->flags & DBUS_F_LIVE) && !src->online) {
            dbus_value_set_invalid(&out[k]); /* never an old measurement or limit as if current */
            continue;
        }
        r->get(src, r, &out[k]);
        if (out[k].kind != DBUS_V_INVALID && out[k].kind != r->kind)
            dbus_value_set_invalid(&out[k]); /* a getter never changes a path's type */
    }
}

size_t dbus_model_update(struct dbus_model *m, const struct dbus_value *fresh, uint16_t *changed, size_t cap)
{
    size_t n = 0;
    for (unsigned k = 0; k < m->count && n < cap; k++) {
        if (!dbus_value_changed(m->rows[k], &m->values[k], &fresh[k]))
            continue;
        m->values[k] = fresh[k];
        changed[n++] = (uint16_t)k;
    }
    return n;
}

enum dbus_freshness dbus_model_freshness(const struct battery_view *v, uint64_t view_age_ms,
                                         uint32_t stale_timeout_ms, int pack)
{
    if (!v)
        return DBUS_NO_VIEW;
    if (view_age_ms > stale_timeout_ms)
        return DBUS_STALE_VIEW;
    if (pack >= 0) {
        if (pack >= v->pack_count || pack >= BATTERY_MAX_PACKS || !pack_fresh(&v->packs[pack]))
            return DBUS_PACK_OFFLINE;
        return DBUS_FRESH;
    }
    const struct battery_limits *l = &v->limits;
    if (!l->valid)
        return DBUS_NO_LIMITS;
    const struct victron_field *f = limit_field(VICTRON_SRC_CVL_V);
    if (!isfinite(l->cvl_v) || !isfinite(l->ccl_a) || !isfinite(l->dcl_a) || !isfinite(l->discharge_v) ||
        l->ccl_a < 0.0f || l->dcl_a < 0.0f || !f || victron_field_raw(f, l->cvl_v) < 1)
        return DBUS_BAD_LIMITS;
    return DBUS_FRESH;
}

const char *dbus_freshness_text(enum dbus_freshness f)
{
    switch (f) {
    case DBUS_FRESH: return "fresh";
    case DBUS_NO_VIEW: return "no battery view yet";
    case DBUS_STALE_VIEW: return "battery view stale";
    case DBUS_NO_LIMITS: return "no pack online (limits not valid)";
    case DBUS_BAD_LIMITS: return "limits out of range";
    case DBUS_PACK_OFFLINE: return "pack not online";
    default: return "unknown";
    }
}
