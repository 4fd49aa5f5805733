#include "app_events.h"

const char *app_event_name(int id)
{
    static const char *const names[EVENT_COUNT] = {
        [EVENT_NONE] = "none",
        [EVENT_BMS_DATA_UPDATE] = "bms_data_update",
        [EVENT_BMS_COMM_LOST] = "bms_comm_lost",
        [EVENT_BMS_COMM_RESTORED] = "bms_comm_restored",
        [EVENT_BMS_STATS_UPDATE] = "bms_stats_update",
        [EVENT_BMS_EVENTS_UPDATE] = "bms_events_update",
        [EVENT_BMS_SETTINGS_UPDATE] = "bms_settings_update",
        [EVENT_BMS_VERSION_UPDATE] = "bms_version_update",
        [EVENT_CONFIG_UPDATED] = "config_updated",
        [EVENT_NET_CONNECTED] = "net_connected",
        [EVENT_NET_DISCONNECTED] = "net_disconnected",
        [EVENT_MQTT_CONNECTED] = "mqtt_connected",
        [EVENT_MQTT_DISCONNECTED] = "mqtt_disconnected",
        [EVENT_ALERT_RAISED] = "alert_raised",
        [EVENT_ALERT_CLEARED] = "alert_cleared",
        [EVENT_ALERT_COMMAND] = "alert_command",
        [EVENT_CAN_TX_SUCCESS] = "can_tx_success",
        [EVENT_CAN_TX_FAILED] = "can_tx_failed",
        [EVENT_CAN_INVERTER_LINK] = "can_inverter_link",
        [EVENT_CHARGE_LIMITS] = "charge_limits",
        [EVENT_CHARGE_CAP_REQUEST] = "charge_cap_request",
        [EVENT_STORAGE_ERROR] = "storage_error",
        [EVENT_STORAGE_OK] = "storage_ok",
        [EVENT_OTA_UPDATE_STARTED] = "ota_update_started",
        [EVENT_OTA_UPDATE_COMPLETED] = "ota_update_completed",
        [EVENT_OTA_UPDATE_FAILED] = "ota_update_failed",
        [EVENT_OTA_UPDATE_ROLLED_BACK] = "ota_update_rolled_back",
        [EVENT_BATTERY_UPDATE] = "battery_update",
    };
    if (id < 0 || id >= EVENT_COUNT || !names[id])
        return "unknown";
    return names[id];
}
