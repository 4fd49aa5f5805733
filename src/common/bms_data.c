#include "bms_data.h"

const char *bms_online_status_name(uint16_t status)
{
    switch (status) {
    case BMS_STATUS_CHARGING: return "charging";
    case BMS_STATUS_FULLY_CHARGED: return "fully charged";
    case BMS_STATUS_DISCHARGING: return "discharging";
    case BMS_STATUS_REGENERATION: return "regeneration";
    case BMS_STATUS_IDLE: return "idle";
    case BMS_STATUS_FAULT: return "fault";
    default: return "unknown";
    }
}

static bool temp_extreme(const struct bms_live_data *d, int16_t *out, bool want_max)
{
    bool found = false;
    int16_t best = 0;
    for (unsigned s = 0; s < BMS_TEMP_SENSORS; s++) {
        if (!d->temp_present[s])
            continue;
        if (!found || (want_max ? d->temp_dc[s] > best : d->temp_dc[s] < best))
            best = d->temp_dc[s];
        found = true;
    }
    if (found)
        *out = best;
    return found;
}

bool bms_temp_max_dc(const struct bms_live_data *d, int16_t *out) { return temp_extreme(d, out, true); }
bool bms_temp_min_dc(const struct bms_live_data *d, int16_t *out) { return temp_extreme(d, out, false); }
