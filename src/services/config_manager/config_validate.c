/* Validation of a whole struct gw_config: per-field ranges and formats (from the field table),
 * then the coherence rules between fields. Pure: no state, no I/O. */
#define _POSIX_C_SOURCE 200809L
#include "config_internal.h"
#include "gw_error.h"
#include "gw_text.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Per-field checks
 * ------------------------------------------------------------------------------------------- */

static void check_curve(const struct gw_curve *c, const struct config_field *f, const char *path,
                        struct config_errors *errors)
{
    unsigned min_points = (unsigned)f->aux;
    if (c->count > GW_CURVE_POINTS || c->count < min_points) {
        config_errors_add(errors, path, "must have %u..%d points (has %u)", min_points, GW_CURVE_POINTS, c->count);
        return;
    }
    char sub[CONFIG_ERROR_PATH_MAX];
    for (unsigned i = 0; i < c->count; i++) {
        if (!isfinite(c->x[i]) || c->x[i] < (float)f->min || c->x[i] > (float)f->max) {
            config__format(sub, sizeof sub, "%s.x[%u]", path, i);
            config_errors_add(errors, sub, "must be in %g..%g (got %g)", f->min, f->max, (double)c->x[i]);
        } else if (i > 0 && !(c->x[i] > c->x[i - 1])) {
            config__format(sub, sizeof sub, "%s.x[%u]", path, i);
            config_errors_add(errors, sub, "x must be strictly increasing (%g after %g)", (double)c->x[i],
                              (double)c->x[i - 1]);
        }
        if (!isfinite(c->y[i]) || c->y[i] < 0.0f || c->y[i] > 1.0f) {
            config__format(sub, sizeof sub, "%s.y[%u]", path, i);
            config_errors_add(errors, sub, "must be a fraction in 0..1 (got %g)", (double)c->y[i]);
        }
    }
}

static void check_threshold(const struct gw_alert_threshold *t, const struct config_field *f, const char *path,
                            struct config_errors *errors)
{
    char sub[CONFIG_ERROR_PATH_MAX];
    if (!isfinite(t->value) || t->value < (float)f->min || t->value > (float)f->max) {
        config__format(sub, sizeof sub, "%s.value", path);
        config_errors_add(errors, sub, "must be in %g..%g (got %g)", f->min, f->max, (double)t->value);
    }
    if (!isfinite(t->hysteresis) || t->hysteresis < 0.0f || t->hysteresis > (float)f->aux) {
        config__format(sub, sizeof sub, "%s.hysteresis", path);
        config_errors_add(errors, sub, "must be in 0..%g (got %g)", f->aux, (double)t->hysteresis);
    }
    if (t->level > 2) {
        config__format(sub, sizeof sub, "%s.level", path);
        config_errors_add(errors, sub, "must be one of \"info\", \"warning\", \"error\"");
    }
}

static void check_packs(const struct gw_config_pack_list *l, const char *path, struct config_errors *errors)
{
    if (l->count > GW_MAX_PACKS) {
        config_errors_add(errors, path, "at most %d packs (got %u)", GW_MAX_PACKS, (unsigned)l->count);
        return;
    }
    for (unsigned i = 0; i < l->count; i++) {
        const struct gw_config_pack *p = &l->packs[i];
        char sub[CONFIG_ERROR_PATH_MAX];
        config__format(sub, sizeof sub, "%s[%u].uart_device", path, i);
        if (strnlen(p->uart_device, sizeof p->uart_device) >= sizeof p->uart_device || !p->uart_device[0]) {
            config_errors_add(errors, sub, "must name the pack's serial port");
        } else {
            const char *why = config__check_device_path(p->uart_device);
            if (why)
                config_errors_add(errors, sub, "%s", why);
            for (unsigned j = 0; j < i; j++)
                if (strncmp(p->uart_device, l->packs[j].uart_device, sizeof p->uart_device) == 0)
                    config_errors_add(errors, sub, "is also pack %u's port: one port per pack", j + 1);
        }
        config__format(sub, sizeof sub, "%s[%u].name", path, i);
        if (strnlen(p->name, sizeof p->name) >= sizeof p->name)
            config_errors_add(errors, sub, "is not terminated (at most %zu bytes)", sizeof p->name - 1);
        else if (p->name[0] && config__check_no_control(p->name))
            config_errors_add(errors, sub, "%s", config__check_no_control(p->name));
        config__format(sub, sizeof sub, "%s[%u].capacity_ah", path, i);
        if (!isfinite(p->capacity_ah) || p->capacity_ah < 0.0f || p->capacity_ah > 100000.0f)
            config_errors_add(errors, sub, "must be in 0..100000 Ah (0 = the BMS's own setting), got %g",
                              (double)p->capacity_ah);
    }
}

void config__validate_field(const struct gw_config *cfg, const struct config_field *f, struct config_errors *errors)
{
    char path[CONFIG_ERROR_PATH_MAX];
    config__field_path(f, path, sizeof path);
    const void *p = config__field_cptr(cfg, f);
    double v;
    switch ((enum config_kind)f->kind) {
    case CFG_BOOL:
        return;
    case CFG_U8:
        v = *(const uint8_t *)p;
        goto integer;
    case CFG_U16:
        v = *(const uint16_t *)p;
        goto integer;
    case CFG_U32:
        v = *(const uint32_t *)p;
    integer:
        if (v < f->min || v > f->max)
            config_errors_add(errors, path, "must be an integer in %.10g..%.10g (got %.10g)", f->min, f->max, v);
        return;
    case CFG_FLOAT: {
        float fv = *(const float *)p;
        /* Compare in float: 0.01 typed by a user is stored as 0.0099999998f. */
        if (!isfinite(fv) || fv < (float)f->min || fv > (float)f->max)
            config_errors_add(errors, path, "must be in %g..%g (got %g)", f->min, f->max, (double)fv);
        return;
    }
    case CFG_STRING: {
        const char *s = p;
        if (strnlen(s, f->size) >= f->size) {
            config_errors_add(errors, path, "is not terminated (at most %zu bytes)", f->size - 1);
            return;
        }
        if (s[0] == '\0') {
            if (f->flags & CFG_F_NONEMPTY)
                config_errors_add(errors, path, "must not be empty");
            return;
        }
        const char *why = f->format ? f->format(s) : config__check_no_control(s);
        if (!why && f->format && f->format != config__check_no_control)
            why = config__check_no_control(s);
        if (why)
            config_errors_add(errors, path, "%s", why);
        return;
    }
    case CFG_ENUM:
        if (*(const uint8_t *)p >= f->name_count)
            config_errors_add(errors, path, "has an unknown value %u", *(const uint8_t *)p);
        return;
    case CFG_CURVE:
        check_curve(p, f, path, errors);
        return;
    case CFG_THRESHOLD:
        check_threshold(p, f, path, errors);
        return;
    case CFG_PACKS:
        check_packs(p, path, errors);
        return;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Coherence rules
 * ------------------------------------------------------------------------------------------- */

struct chem_bounds {
    const char *name;
    float rated_max;                  /* the cells' rated maximum charge voltage */
    float target_min, target_max;
    float float_min, float_max;
    float limit_min, limit_max;
    float discharge_min, discharge_max;
};

/* Beyond these a setting is a typo or a wrong chemistry, not a tuning choice. The cell limit
 * (where charge control starts pulling CVL down) stays 50 mV below the cells' rated maximum,
 * under which the BMS over-voltage cutoff belongs; the target stays below the limit. */
static const struct chem_bounds chem_bounds[] = {
    [GW_CHEM_LFP] = { "LFP", 3.65f, 3.30f, 3.55f, 3.20f, 3.45f, 3.40f, 3.60f, 2.50f, 3.20f },
    [GW_CHEM_NMC] = { "NMC", 4.20f, 3.90f, 4.10f, 3.80f, 4.05f, 4.00f, 4.15f, 2.80f, 3.60f },
};

static void check_bound(float v, float lo, float hi, const char *path, const struct chem_bounds *b,
                        const char *why, struct config_errors *errors)
{
    if (isfinite(v) && (v < lo || v > hi))
        config_errors_add(errors, path, "must be in %.3g..%.3g V for %s cells (got %g)%s", (double)lo, (double)hi,
                          b->name, (double)v, why);
}

static void check_pair(const struct gw_alert_threshold *low, const struct gw_alert_threshold *high,
                       const char *low_path, struct config_errors *errors)
{
    if (low->enabled && high->enabled && !(low->value < high->value)) {
        char sub[CONFIG_ERROR_PATH_MAX];
        config__format(sub, sizeof sub, "%s.value", low_path);
        config_errors_add(errors, sub, "low threshold %g must be below the high threshold %g", (double)low->value,
                          (double)high->value);
    }
}

static void check_coherence(const struct gw_config *c, struct config_errors *errors)
{
    /* BMS */
    if (!(c->bms.soc_empty_percent < c->bms.soc_full_percent))
        config_errors_add(errors, "bms.soc_empty_percent", "must be below bms.soc_full_percent (%g >= %g)",
                          (double)c->bms.soc_empty_percent, (double)c->bms.soc_full_percent);
    if ((uint64_t)c->bms.comm_timeout_ms < 2ull * c->bms.poll_interval_ms)
        config_errors_add(errors, "bms.comm_timeout_ms", "must be at least twice bms.poll_interval_ms (%u < 2 x %u)",
                          c->bms.comm_timeout_ms, c->bms.poll_interval_ms);

    /* CAN */
    if (c->can.enabled && c->can.interface[0] == '\0')
        config_errors_add(errors, "can.interface", "must be set when can.enabled is true");
    if (c->can.bitrate > 250000 && c->can.bitrate < 500000) /* outside: reported by the range */
        config_errors_add(errors, "can.bitrate", "must be 250000 or 500000 (got %u)", c->can.bitrate);
    if (c->can.identity_period_ms < c->can.live_period_ms)
        config_errors_add(errors, "can.identity_period_ms", "must not be shorter than can.live_period_ms");
    if (c->can.stale_timeout_ms < c->can.live_period_ms)
        config_errors_add(errors, "can.stale_timeout_ms", "must not be shorter than can.live_period_ms");
    /* Two polls must fit, or one late answer would withhold the charge limits. */
    if (c->can.enabled && c->can.stale_timeout_ms <= 2 * c->bms.poll_interval_ms)
        config_errors_add(errors, "can.stale_timeout_ms", "must be longer than 2 x bms.poll_interval_ms");

    /* Charge: voltages ordered and sane for the chemistry. */
    const struct gw_config_charge *ch = &c->charge;
    if (!(ch->float_cell_v < ch->target_cell_v))
        config_errors_add(errors, "charge.float_cell_v", "must be below charge.target_cell_v (%g >= %g)",
                          (double)ch->float_cell_v, (double)ch->target_cell_v);
    if (!(ch->target_cell_v < ch->cell_limit_v))
        config_errors_add(errors, "charge.target_cell_v", "must be below charge.cell_limit_v (%g >= %g)",
                          (double)ch->target_cell_v, (double)ch->cell_limit_v);
    if (!(ch->discharge_cell_v < ch->float_cell_v))
        config_errors_add(errors, "charge.discharge_cell_v", "must be below charge.float_cell_v (%g >= %g)",
                          (double)ch->discharge_cell_v, (double)ch->float_cell_v);
    if (ch->chemistry <= GW_CHEM_NMC) {
        const struct chem_bounds *b = &chem_bounds[ch->chemistry];
        char rated[96];
        config__format(rated, sizeof rated, ": %s cells are rated %.3g V at most, the limit keeps 50 mV below",
                       b->name, (double)b->rated_max);
        check_bound(ch->target_cell_v, b->target_min, b->target_max, "charge.target_cell_v", b,
                    ", below charge.cell_limit_v", errors);
        check_bound(ch->float_cell_v, b->float_min, b->float_max, "charge.float_cell_v", b, "", errors);
        check_bound(ch->cell_limit_v, b->limit_min, b->limit_max, "charge.cell_limit_v", b, rated, errors);
        check_bound(ch->discharge_cell_v, b->discharge_min, b->discharge_max, "charge.discharge_cell_v", b, "",
                    errors);
    }
    if (ch->max_top_time_s < ch->absorb_time_s)
        config_errors_add(errors, "charge.max_top_time_s",
                          "must be at least charge.absorb_time_s, or absorption could never end normally (%u < %u)",
                          ch->max_top_time_s, ch->absorb_time_s);
    if (!(ch->no_cell_temp_charge_a <= ch->max_charge_a))
        config_errors_add(errors, "charge.no_cell_temp_charge_a", "must not exceed charge.max_charge_a (%g > %g)",
                          (double)ch->no_cell_temp_charge_a, (double)ch->max_charge_a);
    if (!(ch->rebulk_spread_mv > ch->absorb_spread_mv))
        config_errors_add(errors, "charge.rebulk_spread_mv",
                          "must be above charge.absorb_spread_mv, or the phases would oscillate (%g <= %g)",
                          (double)ch->rebulk_spread_mv, (double)ch->absorb_spread_mv);

    /* MQTT */
    const struct gw_config_mqtt *m = &c->mqtt;
    if ((m->cert_file[0] != '\0') != (m->key_file[0] != '\0'))
        config_errors_add(errors, m->cert_file[0] ? "mqtt.key_file" : "mqtt.cert_file",
                          "mutual TLS needs both mqtt.cert_file and mqtt.key_file");
    if (m->commands_enabled && m->username[0] == '\0')
        config_errors_add(errors, "mqtt.commands_enabled", "needs mqtt.username (commands need an authenticated broker)");
    if (m->password[0] != '\0' && m->username[0] == '\0')
        config_errors_add(errors, "mqtt.password", "needs mqtt.username (MQTT sends no password without a user)");

    /* Web */
    if (c->web.https_enabled) {
        if (c->web.cert_file[0] == '\0')
            config_errors_add(errors, "web.cert_file", "must be set when web.https_enabled is true");
        if (c->web.key_file[0] == '\0')
            config_errors_add(errors, "web.key_file", "must be set when web.https_enabled is true");
    }

    /* Network */
    if (c->network.wifi_password[0] != '\0' && c->network.wifi_ssid[0] == '\0')
        config_errors_add(errors, "network.wifi_ssid", "must be set when network.wifi_password is");

    /* Alerts: a low threshold at or above its high twin would raise both at once. */
    const struct gw_config_alerts *a = &c->alerts;
    check_pair(&a->cell_v_low, &a->cell_v_high, "alerts.cell_v_low", errors);
    check_pair(&a->pack_v_low, &a->pack_v_high, "alerts.pack_v_low", errors);
    check_pair(&a->temp_low, &a->temp_high, "alerts.temp_low", errors);
    check_pair(&a->soc_low, &a->soc_high, "alerts.soc_low", errors);

    /* Several packs: the bank cannot need more packs online than it has. */
    unsigned packs = c->battery.packs.count ? c->battery.packs.count : 1;
    if (c->battery.min_online_packs > packs)
        config_errors_add(errors, "battery.min_online_packs", "must be at most the number of packs (%u), got %u",
                          packs, (unsigned)c->battery.min_online_packs);
}

int gw_config_validate(const struct gw_config *cfg, struct config_errors *errors)
{
    config_errors_clear(errors);
    if (!cfg) {
        config_errors_add(errors, "", "no configuration");
        return GW_ERR_INVAL;
    }
    /* Count without a list too: validation must work with errors == NULL. On the heap: this runs
     * on web server threads, whose stacks are small. */
    struct config_errors *local = errors ? NULL : calloc(1, sizeof *local);
    struct config_errors *e = errors ? errors : local;
    if (!e)
        return GW_ERR_NOMEM;
    if (cfg->schema_version == 0)
        config_errors_add(e, "schema_version", "must be a positive integer");
    for (size_t i = 0; i < config__field_count; i++)
        config__validate_field(cfg, &config__fields[i], e);
    check_coherence(cfg, e);
    int rc = (e->count || e->dropped) ? GW_ERR_INVAL : GW_OK;
    free(local);
    return rc;
}
