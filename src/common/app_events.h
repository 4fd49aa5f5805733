/* Every event of the gateway and its payload type, in one place (design.md "Event bus").
 * Payloads are plain structs copied into the bus queue entry: no pointers inside. */
#ifndef APP_EVENTS_H
#define APP_EVENTS_H

#include "bms_data.h"

#include <stdbool.h>
#include <stdint.h>

enum app_event_id {
    EVENT_NONE = 0,
    EVENT_BMS_DATA_UPDATE,      /* struct bms_live_data, on every valid live sample */
    EVENT_BMS_COMM_LOST,        /* struct app_bms_comm, no valid data for comm_timeout_ms */
    EVENT_BMS_COMM_RESTORED,    /* struct app_bms_comm */
    EVENT_BMS_STATS_UPDATE,     /* struct app_bms_stats */
    EVENT_BMS_EVENTS_UPDATE,    /* struct app_bms_events (whole log after each slow read) */
    EVENT_BMS_SETTINGS_UPDATE,  /* struct app_bms_settings */
    EVENT_BMS_VERSION_UPDATE,   /* struct app_bms_version */
    EVENT_CONFIG_UPDATED,       /* struct app_config_change */
    EVENT_NET_CONNECTED,        /* struct app_net_link */
    EVENT_NET_DISCONNECTED,     /* struct app_net_link */
    EVENT_MQTT_CONNECTED,       /* no payload */
    EVENT_MQTT_DISCONNECTED,    /* struct app_text (reason) */
    EVENT_ALERT_RAISED,         /* struct app_alert */
    EVENT_ALERT_CLEARED,        /* struct app_alert */
    EVENT_ALERT_COMMAND,        /* struct app_alert_command (from MQTT/web to alert_manager) */
    EVENT_CAN_TX_SUCCESS,       /* struct app_can_tx (aggregated: one per publish cycle) */
    EVENT_CAN_TX_FAILED,        /* struct app_can_tx */
    EVENT_CAN_INVERTER_LINK,    /* struct app_inverter_link, on change */
    EVENT_CHARGE_LIMITS,        /* struct app_charge_limits, on every charge-control step */
    EVENT_CHARGE_CAP_REQUEST,   /* struct app_charge_cap (MQTT/web: temporary lower limits) */
    EVENT_STORAGE_ERROR,        /* struct app_storage_error */
    EVENT_STORAGE_OK,           /* struct app_storage_error (module only: recovered) */
    EVENT_OTA_UPDATE_STARTED,   /* struct app_text: a bundle is being received */
    EVENT_OTA_UPDATE_COMPLETED, /* struct app_text: the new release runs and is healthy */
    EVENT_OTA_UPDATE_FAILED,    /* struct app_text: a bundle was refused (the reason) */
    EVENT_OTA_UPDATE_ROLLED_BACK, /* struct app_text: back to the previous release, and why */
    EVENT_BATTERY_UPDATE,       /* struct battery_view (src/core/battery/battery_view.h): the one
                                   battery every output sends, after each battery-service step */
    EVENT_COUNT
};

/* Static name of an event id ("bms_data_update", ...). */
const char *app_event_name(int id);

struct app_text {
    char text[160];
};

struct app_bms_comm {
    uint8_t battery_id;
    uint64_t last_valid_ms;     /* gw_now_ms() of the last valid sample, 0 = never */
    char reason[96];            /* "timeout", "device unplugged", ... */
};

struct app_bms_stats {
    uint8_t battery_id;
    struct bms_statistics stats;
};

struct app_bms_events {
    uint8_t battery_id;
    struct bms_event_log log;
};

struct app_bms_settings {
    uint8_t battery_id;
    struct bms_settings settings;
};

struct app_bms_version {
    uint8_t battery_id;
    struct bms_version version;
};

/* Bit per configuration section, in app_config_change.sections. */
enum app_config_section {
    CONFIG_SECTION_BMS = 1u << 0,
    CONFIG_SECTION_CAN = 1u << 1,
    CONFIG_SECTION_CHARGE = 1u << 2,
    CONFIG_SECTION_MQTT = 1u << 3,
    CONFIG_SECTION_WEB = 1u << 4,
    CONFIG_SECTION_NETWORK = 1u << 5,
    CONFIG_SECTION_ALERTS = 1u << 6,
    CONFIG_SECTION_HISTORY = 1u << 7,
    CONFIG_SECTION_OTA = 1u << 8,
    CONFIG_SECTION_BATTERY = 1u << 9,
    CONFIG_SECTION_DBUS = 1u << 10,
};

struct app_config_change {
    uint32_t sections;          /* enum app_config_section bits that changed */
    bool restart_required;      /* some changed field only applies after a restart */
    char changed[256];          /* comma-separated field paths ("mqtt.broker_uri,bms.poll_interval_ms") */
};

struct app_net_link {
    char interface[32];
    char address[64];
};

enum app_alert_level { ALERT_LEVEL_INFO = 0, ALERT_LEVEL_WARNING = 1, ALERT_LEVEL_ERROR = 2 };

struct app_alert {
    char code[32];              /* "OVER_VOLTAGE", "BMS_COMM_LOST", ... */
    uint8_t level;              /* enum app_alert_level */
    uint8_t battery_id;
    char message[160];
    float value;
    float threshold;
    int64_t first_seen_ms;      /* wall ms */
    int64_t last_seen_ms;       /* wall ms */
    uint32_t count;
    bool acknowledged;
};

enum app_alert_op { ALERT_OP_ACK = 0, ALERT_OP_ACK_ALL = 1, ALERT_OP_CLEAR_ALL = 2 };

struct app_alert_command {
    uint8_t op;                 /* enum app_alert_op */
    char code[32];              /* for ALERT_OP_ACK */
    char source[16];            /* "mqtt", "web" */
};

struct app_can_tx {
    uint32_t frames_ok;
    uint32_t frames_failed;
    uint32_t last_can_id;
    int last_error;             /* gw_err */
};

struct app_inverter_link {
    bool present;
    uint32_t last_id;           /* 0x305 / 0x306 / 0x307 */
};

struct app_charge_limits {
    uint8_t battery_id;
    float cvl_v;
    float ccl_a;
    float dcl_a;
    uint8_t phase;              /* charge control phase (bulk/absorption/float) */
    bool sending;               /* false while 0x351 is withheld (stale data) */
    char cvl_reason[48];
    char ccl_reason[48];
    char dcl_reason[48];
};

struct app_charge_cap {
    float ccl_cap_a;            /* < 0: no cap on charge */
    float dcl_cap_a;            /* < 0: no cap on discharge */
    uint32_t duration_s;        /* 0 = cancel every cap */
    char source[16];
};

struct app_storage_error {
    char module[24];            /* "history", "config", "energy" */
    int error;                  /* gw_err */
    char message[128];
};

#endif
