/* The whole configuration of the gateway (one JSON document, see config_manager).
 * Plain struct with fixed-size strings so it can be copied and carried on the event bus
 * section by section. Units are in the field names. Defaults: gw_config_set_defaults().
 * JSON field names are the C field names, grouped by section ("bms.poll_interval_ms").
 * Portable: no OS calls. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define GW_CONFIG_SCHEMA_VERSION 1
#define GW_PATH_MAX 256
#define GW_CURVE_POINTS 8

/* A piecewise-linear curve: y(x) interpolated between points sorted by x, clamped at both ends.
 * Used by charge control for current limits (y = fraction 0..1 of the maximum current). */
struct gw_curve {
    uint8_t count;                    /* 0 = curve disabled (factor 1) */
    float x[GW_CURVE_POINTS];
    float y[GW_CURVE_POINTS];
};

struct gw_config_bms {
    char uart_device[GW_PATH_MAX];    /* "/dev/ttyUSB0"; empty with --simulate */
    uint32_t poll_interval_ms;        /* 100..10000, default 1000 */
    uint32_t comm_timeout_ms;         /* BMS_COMM_LOST after this without valid data, default 30000 */
    uint32_t slow_poll_interval_s;    /* settings/stats/events/version re-read, default 60 */
    uint8_t cell_order;               /* enum bms_cell_order, default documented */
    float soc_full_percent;           /* shown as 100 % at/above, default 100 */
    float soc_empty_percent;          /* shown as 0 % at/below, default 0 */
};

enum gw_can_transport_kind { GW_CAN_SOCKETCAN = 0, GW_CAN_SLCAN = 1, GW_CAN_LOG = 2 };

struct gw_config_can {
    bool enabled;                     /* default false (enabled by --can) */
    char interface[GW_PATH_MAX];      /* "can0", "slcan:/dev/ttyACM0[@500000]", "log:FILE" */
    uint32_t bitrate;                 /* 250000 or 500000, default 500000 */
    uint32_t live_period_ms;          /* 0x351/0x355/0x356/0x35A..., default 1000 */
    uint32_t identity_period_ms;      /* 0x35E/0x35F/0x370.., default 10000 */
    uint32_t stale_timeout_ms;        /* stop 0x351 when the newest sample is older, default 5000 */
    uint32_t inverter_timeout_ms;     /* inverter link lost after no 0x305 for this, default 10000 */
    uint32_t energy_save_period_s;    /* 0x378 counters saved every, default 600 */
    char manufacturer[9];             /* 0x35E, default "Enepaq" */
    char battery_name[17];            /* 0x370/0x371, default "TinyBMS" */
    char family[9];                   /* 0x382, default "TinyBMS" */
    char serial[17];                  /* 0x380/0x381; empty = the BMS serial number */
    uint16_t model_id;                /* 0x35F bytes 0-1, default 0 */
};

enum gw_chemistry { GW_CHEM_LFP = 0, GW_CHEM_NMC = 1 };

struct gw_config_charge {
    uint8_t chemistry;                /* enum gw_chemistry; selects the defaults below */
    float target_cell_v;              /* absorption cell voltage, LFP 3.45, NMC 4.10 */
    float float_cell_v;               /* float cell voltage, LFP 3.375, NMC 4.00 */
    float cell_limit_v;               /* above this a cell's excess lowers CVL, LFP 3.55, NMC 4.15 */
    float discharge_cell_v;           /* 0x351 byte 6 discharge voltage per cell, LFP 2.90, NMC 3.20 */
    float absorb_spread_mv;           /* absorption starts with spread within, default 10 */
    uint32_t absorb_time_s;           /* absorption duration before float, default 900 */
    uint32_t max_top_time_s;          /* at most this long at the top per charge, then float, default 7200 */
    float float_ramp_mv_per_cell_s;   /* CVL ramp from target to float, default 1.0 */
    float rebulk_soc_percent;         /* back to bulk below, default 80 */
    float rebulk_spread_mv;           /* back to bulk above this spread, default 80 */
    float max_charge_a;               /* configured maximum CCL, default 100 */
    float max_discharge_a;            /* configured maximum DCL, default 150 */
    uint32_t increase_delay_s;        /* increases wait this long, default 30 */
    float increase_ramp_a_per_s;      /* then ramp at, default 5 */
    float zero_exit_a;                /* hysteresis: leave 0 A only when the target exceeds, default 2 */
    float no_cell_temp_charge_a;      /* CCL cap without an external (cell) temperature sensor, default 0 */
    struct gw_curve charge_by_cell_v; /* fraction of max_charge_a by highest cell voltage (V) */
    struct gw_curve discharge_by_cell_v; /* fraction of max_discharge_a by lowest cell voltage (V) */
    struct gw_curve charge_by_temp;   /* by temperature (degC), applied at min and max sensor */
    struct gw_curve discharge_by_temp;
    struct gw_curve charge_by_soc;    /* optional, count 0 = off */
    struct gw_curve discharge_by_soc; /* optional */
};

struct gw_config_mqtt {
    bool enabled;                     /* default false (enabled by --mqtt or config) */
    char broker_uri[128];             /* mqtt://host:port or mqtts://host:port */
    char username[64];
    char password[64];                /* secret: masked on read */
    char client_id[64];               /* empty = "tinybms-gw-<hostname>" */
    uint16_t keepalive_s;             /* default 120 */
    char ca_file[GW_PATH_MAX];        /* server verification (mqtts) */
    char cert_file[GW_PATH_MAX];      /* client certificate (mutual TLS) */
    char key_file[GW_PATH_MAX];
    bool tls_insecure;                /* skip host name verification; only when set explicitly */
    char topic_prefix[64];            /* default "tinybms" */
    uint32_t publish_interval_ms;     /* numeric topics, default 1000 */
    uint32_t status_interval_ms;      /* status JSON, default 5000 */
    bool ha_discovery;                /* Home Assistant discovery, default true */
    char ha_discovery_prefix[64];     /* default "homeassistant" */
    bool commands_enabled;            /* command topics, default false; needs username */
    uint32_t offline_queue_size;      /* QoS 1 messages kept while disconnected, default 100 */
};

struct gw_config_web {
    bool enabled;                     /* default true (--http 0 turns it off for a run) */
    uint16_t http_port;               /* default 8080 (--http PORT overrides) */
    char bind_address[64];            /* default "0.0.0.0" */
    bool public_read;                 /* read-only endpoints without login, default false */
    bool metrics_public;              /* GET /metrics (Prometheus) without login, default false */
    char username[32];                /* default "admin" */
    char password_hash[160];          /* "pbkdf2-sha256$<iter>$<salt b64>$<hash b64>"; never returned;
                                         empty = no password yet (first-run page) */
    bool https_enabled;
    char cert_file[GW_PATH_MAX];
    char key_file[GW_PATH_MAX];
    uint16_t auth_max_attempts;       /* failed logins per client address before a lockout, default 5 */
    uint32_t auth_lockout_s;          /* first lockout, doubling on each repeat, default 60 */
    uint32_t csrf_ttl_s;              /* default 300 */
    uint16_t ws_max_clients;          /* WebSocket clients at once (503 above), default 32 */
    uint16_t ws_queue_len;            /* messages queued per WebSocket client before it is dropped, default 64 */
    uint32_t request_timeout_ms;      /* a request (headers, each body read, each write), default 10000 */
    char ui_dir[GW_PATH_MAX];         /* static UI folder; "" = the one installed with the program */
};

struct gw_config_network {
    char hostname[32];                /* default "tinybms-gw" */
    char interface[32];               /* link watched for EVENT_NET_*; empty = any */
    char wifi_ssid[33];
    char wifi_password[64];           /* secret: masked on read */
    uint8_t reconnect;                /* enum gw_net_reconnect, default off */
    char wpa_ctrl_dir[108];           /* wpa_supplicant's ctrl_interface, default /run/wpa_supplicant */
};

/* One threshold rule of the alert manager. */
struct gw_alert_threshold {
    bool enabled;
    float value;
    float hysteresis;                 /* clears when back past value -/+ hysteresis */
    uint8_t level;                    /* enum app_alert_level */
};

struct gw_config_alerts {
    struct gw_alert_threshold cell_v_high;     /* V */
    struct gw_alert_threshold cell_v_low;      /* V */
    struct gw_alert_threshold pack_v_high;     /* V */
    struct gw_alert_threshold pack_v_low;      /* V */
    struct gw_alert_threshold temp_high;       /* degC */
    struct gw_alert_threshold temp_low;        /* degC */
    struct gw_alert_threshold discharge_current; /* A (positive number) */
    struct gw_alert_threshold charge_current;  /* A */
    struct gw_alert_threshold soc_low;         /* % */
    struct gw_alert_threshold soc_high;        /* % */
    struct gw_alert_threshold cell_imbalance;  /* mV */
    uint32_t raise_delay_ms;          /* condition must hold this long to raise, default 5000 */
    uint32_t clear_delay_ms;          /* condition gone this long to clear, default 10000 */
    bool status_alerts;               /* info alerts on BMS status changes, default true */
};

struct gw_config_history {
    bool enabled;                     /* default true */
    uint32_t period_s;                /* 1..3600, default 5 */
    uint16_t retention_days;          /* 1..3650, default 7 */
};

/* Several TinyBMS packs in parallel, aggregated into one battery (docs/several-packs.md). */
#define GW_MAX_PACKS 16

struct gw_config_pack {
    char uart_device[GW_PATH_MAX];    /* serial port of this pack's TinyBMS */
    char name[16];                    /* shown to people; empty = "pack N" */
    float capacity_ah;                /* 0 = the BMS's own setting (register 306) */
};

struct gw_config_pack_list {
    uint8_t count;                    /* 0 = one pack on bms.uart_device */
    struct gw_config_pack packs[GW_MAX_PACKS];
};

struct gw_config_battery {
    struct gw_config_pack_list packs; /* restart required */
    uint8_t min_online_packs;         /* fewer online: charge and discharge stop, default 1 */
    float rejoin_max_dv;              /* a pack rejoins within this of the bank voltage, default 0.5 V */
    uint32_t stale_after_ms;          /* a pack without fresh data for this stops counting, default 5000 */
    uint32_t frozen_after_ms;         /* a BMS repeating one sample this long is stale, default 10000 */
    uint32_t implausible_in_row;      /* bad samples in a row before the alert, default 3 */
    float soc_spread_percent;         /* alert when packs' SOC differ more, default 15 */
};

/* Signed updates of the gateway (docs/updates.md). */
struct gw_config_update {
    char keyring_dir[GW_PATH_MAX];    /* trusted public keys (*.pub); empty = DATA_DIR/keys */
    uint32_t trial_timeout_s;         /* a new release must be healthy within, default 120 */
    uint32_t trial_max_starts;        /* starts it gets to become healthy, default 3 */
    uint32_t health_can_s;            /* CAN frames going out this long count as healthy, default 5 */
    bool pause_charge_on_switch;      /* CCL 0 from the switch until the new release is healthy
                                         (or the previous one is back), default false */
};

/* What the D-Bus path /Capacity carries: Victron never defined it for batteries;
 * dbus-serialbattery publishes the remaining Ah, gui-v2 labels it "Total capacity" for parallel
 * BMSes (spec venus-dbus-battery.md), so the owner chooses. */
enum gw_dbus_capacity { GW_DBUS_CAPACITY_REMAINING = 0, GW_DBUS_CAPACITY_INSTALLED = 1, GW_DBUS_CAPACITY_NONE = 2 };

/* Whom the gateway asks to reconnect the network while it is down: nobody (the operating system
 * reconnects by itself), or wpa_supplicant over its control socket. */
enum gw_net_reconnect { GW_NET_RECONNECT_OFF = 0, GW_NET_RECONNECT_WPA = 1 };

/* The Venus OS D-Bus battery service (docs/venus-os.md). */
struct gw_config_dbus {
    bool enabled;                     /* default false (enabled by --dbus) */
    uint16_t device_instance;         /* 0..1023, default 1: used when com.victronenergy.settings
                                         does not allocate one */
    bool per_pack;                    /* also one service per pack, default false */
    uint8_t capacity;                 /* enum gw_dbus_capacity: what /Capacity means, default
                                         remaining */
};

struct gw_config {
    uint32_t schema_version;          /* GW_CONFIG_SCHEMA_VERSION */
    struct gw_config_bms bms;
    struct gw_config_can can;
    struct gw_config_charge charge;
    struct gw_config_mqtt mqtt;
    struct gw_config_web web;
    struct gw_config_network network;
    struct gw_config_alerts alerts;
    struct gw_config_history history;
    struct gw_config_battery battery;
    struct gw_config_update update;
    struct gw_config_dbus dbus;
};

/* Fills cfg with the documented defaults (LiFePO4 charge parameters). */
void gw_config_set_defaults(struct gw_config *cfg);

/* Resets the charge section to the defaults of a chemistry. */
void gw_config_charge_defaults(struct gw_config_charge *charge, enum gw_chemistry chemistry);

#endif
