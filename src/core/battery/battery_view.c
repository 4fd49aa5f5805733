/* Names of the battery view's states and conditions. */
#include "battery_view.h"

const char *battery_pack_state_name(uint8_t state)
{
    switch (state) {
    case BATTERY_PACK_NEVER_SEEN: return "never seen";
    case BATTERY_PACK_ONLINE: return "online";
    case BATTERY_PACK_STALE: return "stale";
    case BATTERY_PACK_OFFLINE: return "offline";
    case BATTERY_PACK_REJOINING: return "rejoining";
    default: return "unknown";
    }
}

const char *battery_condition_name(uint32_t bit)
{
    switch (bit) {
    case BATTERY_COND_IMPLAUSIBLE: return "implausible";
    case BATTERY_COND_FROZEN: return "frozen";
    case BATTERY_COND_NO_CELL_TEMP: return "no cell temperature";
    case BATTERY_COND_COMM_LOST: return "communication lost";
    case BATTERY_COND_REJOIN_BLOCKED: return "rejoin blocked";
    case BATTERY_COND_PACK_OFFLINE: return "pack offline";
    case BATTERY_COND_BELOW_MIN_ONLINE: return "below min online";
    case BATTERY_COND_VOLTAGE_SPREAD: return "voltage spread";
    case BATTERY_COND_ENERGY_REFUSED: return "energy state refused";
    case BATTERY_COND_SOC_SPREAD: return "soc spread";
    case BATTERY_COND_NO_DATA: return "no data";
    default: return "unknown";
    }
}

