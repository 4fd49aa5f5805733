/* 0x35A flags from a live sample, the BMS settings and its protection events. */
#include "victron.h"

#include "charge_control.h"
#include "gw_config.h"
#include "gw_error.h"

#include <string.h>

void victron_alarm_thresholds_defaults(struct victron_alarm_thresholds *t, uint8_t chemistry)
{
    if (!t)
        return;
    memset(t, 0, sizeof *t);
    if (chemistry == GW_CHEM_NMC) {
        t->cell_high_alarm_v = 4.20f;
        t->cell_high_warn_v = 4.15f;
        t->cell_low_alarm_v = 3.00f;
        t->cell_low_warn_v = 3.10f;
    } else {
        t->cell_high_alarm_v = 3.65f;
        t->cell_high_warn_v = 3.60f;
        t->cell_low_alarm_v = 2.80f;
        t->cell_low_warn_v = 2.90f;
    }
    t->temp_high_alarm_c = 60.0f;
    t->temp_high_warn_c = 55.0f;
    t->temp_low_alarm_c = -20.0f;
    t->temp_low_warn_c = -10.0f;
    t->charge_temp_high_alarm_c = 55.0f;
    t->charge_temp_high_warn_c = 50.0f;
    t->charge_temp_low_alarm_c = 0.0f;
    t->charge_temp_low_warn_c = 3.0f;
    t->discharge_current_alarm_a = 200.0f;
    t->discharge_current_warn_a = 180.0f;
    t->charge_current_alarm_a = 150.0f;
    t->charge_current_warn_a = 135.0f;
    t->imbalance_alarm_mv = 200.0f;
    t->imbalance_warn_mv = 100.0f;
    t->charging_min_a = 0.5f;
    t->event_hold_s = CHARGE_PROT_HOLD_S_DEFAULT;
}

void victron_alarm_thresholds_apply_limits(struct victron_alarm_thresholds *t,
                                           const struct bms_pack_limits *l)
{
    if (!t || !l)
        return;
    if (l->has_over_voltage) {
        float gap = t->cell_high_alarm_v - t->cell_high_warn_v;
        t->cell_high_alarm_v = l->over_voltage_cell_v;
        t->cell_high_warn_v = t->cell_high_alarm_v - gap;
    }
    if (l->has_under_voltage) {
        float gap = t->cell_low_warn_v - t->cell_low_alarm_v;
        t->cell_low_alarm_v = l->under_voltage_cell_v;
        t->cell_low_warn_v = t->cell_low_alarm_v + gap;
    }
    if (l->has_discharge_overcurrent) {
        t->discharge_current_alarm_a = l->discharge_overcurrent_a;
        t->discharge_current_warn_a = 0.9f * l->discharge_overcurrent_a;
    }
    if (l->has_charge_overcurrent) {
        t->charge_current_alarm_a = l->charge_overcurrent_a;
        t->charge_current_warn_a = 0.9f * l->charge_overcurrent_a;
    }
    if (l->has_over_heat) {
        float gap = t->temp_high_alarm_c - t->temp_high_warn_c;
        t->temp_high_alarm_c = l->over_heat_c;
        t->temp_high_warn_c = l->over_heat_c - gap;
    }
    if (l->has_low_temp_charge) {
        float gap = t->charge_temp_low_warn_c - t->charge_temp_low_alarm_c;
        t->charge_temp_low_alarm_c = l->low_temp_charge_c;
        t->charge_temp_low_warn_c = l->low_temp_charge_c + gap;
    }
}

/* Sets a flag from "alarm condition" / "warning condition"; an alarm implies the warning. */
static void set_flag(struct victron_alarm_state *out, enum victron_flag f, bool alarm, bool warning)
{
    if (alarm)
        out->alarm[f] = VICTRON_FLAG_ACTIVE;
    if (alarm || warning)
        out->warning[f] = VICTRON_FLAG_ACTIVE;
}

int victron_alarms_from_bms(const struct bms_live_data *live, const struct bms_event_log *recent,
                            const struct victron_alarm_thresholds *t, bool online,
                            struct victron_alarm_state *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!live || !t || !out)
        return GW_ERR_INVAL;
    /* Every flag is supported: start from OK. */
    for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++) {
        out->alarm[f] = VICTRON_FLAG_OK;
        out->warning[f] = VICTRON_FLAG_OK;
    }
    out->online = online && live->valid;

    if (live->valid) {
        float max_cell = (float)live->max_cell_mv / 1000.0f;
        float min_cell = (float)live->min_cell_mv / 1000.0f;
        if (live->cell_count >= BMS_MIN_CELLS && live->cell_count <= BMS_MAX_CELLS) {
            /* The cells themselves when present (registers 40/41 may lag the cells). */
            float hi = 0.0f, lo = 1e9f;
            for (unsigned i = 0; i < live->cell_count; i++) {
                float c = bms_cell_v(live, i);
                if (c <= 0.0f)
                    continue;
                hi = c > hi ? c : hi;
                lo = c < lo ? c : lo;
            }
            if (hi > 0.0f) {
                max_cell = hi;
                min_cell = lo;
            }
        }
        set_flag(out, VICTRON_FLAG_HIGH_VOLTAGE, max_cell >= t->cell_high_alarm_v,
                 max_cell >= t->cell_high_warn_v);
        if (min_cell > 0.0f)
            set_flag(out, VICTRON_FLAG_LOW_VOLTAGE, min_cell <= t->cell_low_alarm_v,
                     min_cell <= t->cell_low_warn_v);

        int16_t tmax_dc, tmin_dc;
        float current = live->pack_current_a == live->pack_current_a ? live->pack_current_a : 0.0f;
        bool charging = current > t->charging_min_a;
        if (bms_temp_max_dc(live, &tmax_dc) && bms_temp_min_dc(live, &tmin_dc)) {
            float tmax = (float)tmax_dc / 10.0f, tmin = (float)tmin_dc / 10.0f;
            set_flag(out, VICTRON_FLAG_HIGH_TEMP, tmax >= t->temp_high_alarm_c,
                     tmax >= t->temp_high_warn_c);
            set_flag(out, VICTRON_FLAG_LOW_TEMP, tmin <= t->temp_low_alarm_c,
                     tmin <= t->temp_low_warn_c);
            set_flag(out, VICTRON_FLAG_HIGH_TEMP_CHARGE,
                     charging && tmax >= t->charge_temp_high_alarm_c,
                     charging && tmax >= t->charge_temp_high_warn_c);
            set_flag(out, VICTRON_FLAG_LOW_TEMP_CHARGE,
                     charging && tmin <= t->charge_temp_low_alarm_c,
                     charging && tmin <= t->charge_temp_low_warn_c);
        }
        set_flag(out, VICTRON_FLAG_HIGH_DISCHARGE_CURRENT, -current >= t->discharge_current_alarm_a,
                 -current >= t->discharge_current_warn_a);
        set_flag(out, VICTRON_FLAG_HIGH_CHARGE_CURRENT, current >= t->charge_current_alarm_a,
                 current >= t->charge_current_warn_a);
        float spread_mv = (float)live->cell_spread_mv_x10 / 10.0f;
        set_flag(out, VICTRON_FLAG_CELL_IMBALANCE, spread_mv >= t->imbalance_alarm_mv,
                 spread_mv >= t->imbalance_warn_mv);

        /* What the BMS itself says: status fault and protection events. */
        uint32_t prot = charge_protections_active(live, recent, t->event_hold_s);
        if (prot & (CHARGE_PROT_FAULT | CHARGE_PROT_SENSOR_ERROR))
            set_flag(out, VICTRON_FLAG_BMS_INTERNAL, true, true);
        if (prot & CHARGE_PROT_OVER_VOLTAGE)
            set_flag(out, VICTRON_FLAG_HIGH_VOLTAGE, true, true);
        if (prot & (CHARGE_PROT_UNDER_VOLTAGE | CHARGE_PROT_FULLY_DISCHARGED))
            set_flag(out, VICTRON_FLAG_LOW_VOLTAGE, true, true);
        if (prot & CHARGE_PROT_OVER_TEMP)
            set_flag(out, VICTRON_FLAG_HIGH_TEMP, true, true);
        if (prot & CHARGE_PROT_LOW_TEMP)
            set_flag(out, VICTRON_FLAG_LOW_TEMP, true, true);
        if (prot & CHARGE_PROT_LOW_TEMP_CHARGE)
            set_flag(out, VICTRON_FLAG_LOW_TEMP_CHARGE, true, true);
        if (prot & CHARGE_PROT_DISCHARGE_OC) {
            /* TinyBMS has no separate short-circuit trip: its discharge over-current cutoff
             * (with the fast peak-current trip of register 305) is what acts on a short. */
            set_flag(out, VICTRON_FLAG_HIGH_DISCHARGE_CURRENT, true, true);
            set_flag(out, VICTRON_FLAG_SHORT_CIRCUIT, true, true);
        }
        if (prot & CHARGE_PROT_CHARGE_OC)
            set_flag(out, VICTRON_FLAG_HIGH_CHARGE_CURRENT, true, true);
        if (prot & CHARGE_PROT_SWITCH_ERROR)
            set_flag(out, VICTRON_FLAG_CONTACTOR, true, true);
    }

    bool any_alarm = !out->online, any_warning = false;
    for (unsigned f = VICTRON_FLAG_GENERAL + 1; f < VICTRON_FLAG_COUNT; f++) {
        any_alarm |= out->alarm[f] == VICTRON_FLAG_ACTIVE;
        any_warning |= out->warning[f] == VICTRON_FLAG_ACTIVE;
    }
    out->alarm[VICTRON_FLAG_GENERAL] = any_alarm ? VICTRON_FLAG_ACTIVE : VICTRON_FLAG_OK;
    out->warning[VICTRON_FLAG_GENERAL] = any_warning ? VICTRON_FLAG_ACTIVE : VICTRON_FLAG_OK;
    return GW_OK;
}
