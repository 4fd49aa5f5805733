/* The battery view: the one battery every output sends (CAN, MQTT, web, D-Bus), built by the
 * battery service from N TinyBMS packs (rules R1-R13 of shared/spec/several-packs.md).
 * Payload of EVENT_BATTERY_UPDATE (copied into the bus entry) and of the service's snapshot
 * getter. Plain data, no pointers. Portable: no OS calls.
 *
 * Outputs read it; none of them computes a limit. A view with limits.valid == false means "do
 * not send charge limits" (CAN withholds 0x351, D-Bus stops charge/discharge). */
#ifndef BATTERY_VIEW_H
#define BATTERY_VIEW_H

#include "bms_data.h"
#include "victron.h"

#include <stdbool.h>
#include <stdint.h>

#define BATTERY_MAX_PACKS 16
#define BATTERY_NAME_LEN 16
#define BATTERY_REASON_LEN 48
/* battery_id of the aggregate wherever a pack id is expected (history rows, alerts). */
#define BATTERY_BANK_ID 255
/* Output bits of battery_view.limit_outputs: who sends the limits to a charger. */
#define BATTERY_OUTPUT_CAN (1u << 0)
#define BATTERY_OUTPUT_DBUS (1u << 1)

/* R1: a pack is ONLINE with a fresh plausible sample, STALE when samples stopped, are frozen
 * or implausible (values kept, limits 0 for it), OFFLINE after the BMS communication timeout. */
enum battery_pack_state {
    BATTERY_PACK_NEVER_SEEN = 0, /* configured, no sample yet */
    BATTERY_PACK_ONLINE = 1,
    BATTERY_PACK_STALE = 2,
    BATTERY_PACK_OFFLINE = 3,
    BATTERY_PACK_REJOINING = 4,  /* back online, limits ramping up again (R10) */
};

/* Conditions found by the service, per pack (battery_pack.conditions) and for the bank
 * (battery_view.conditions). The alert manager turns them into alerts that name the pack. */
enum battery_condition {
    BATTERY_COND_IMPLAUSIBLE = 1u << 0,      /* pack: implausible samples in a row */
    BATTERY_COND_FROZEN = 1u << 1,           /* pack: lifetime counter (reg 32) not advancing */
    BATTERY_COND_NO_CELL_TEMP = 1u << 2,     /* pack: no external (cell) temperature sensor */
    BATTERY_COND_COMM_LOST = 1u << 3,        /* pack: BMS communication lost */
    BATTERY_COND_REJOIN_BLOCKED = 1u << 4,   /* pack: voltage outside the rejoin window (R10) */
    BATTERY_COND_PACK_OFFLINE = 1u << 5,     /* bank: at least one configured pack not online */
    BATTERY_COND_BELOW_MIN_ONLINE = 1u << 6, /* bank: fewer than min_online packs: limits 0 (R9) */
    BATTERY_COND_VOLTAGE_SPREAD = 1u << 7,   /* bank: online pack voltages differ > rejoin window */
    BATTERY_COND_ENERGY_REFUSED = 1u << 8,   /* bank: restored energy/charge state out of range */
    BATTERY_COND_SOC_SPREAD = 1u << 9,       /* bank: online pack SOCs differ a lot */
    BATTERY_COND_NO_DATA = 1u << 10,         /* bank: no usable data: limits not sent */
};

/* CVL/CCL/DCL with the reason of each. For a pack: its own charge control. For the bank: the
 * aggregation result; *_pack names the pack whose limit won (BATTERY_BANK_ID = a bank rule). */
struct battery_limits {
    bool valid;                 /* false: outputs must not send limits (stale / no data) */
    float cvl_v;                /* never 0, never NaN when valid */
    float ccl_a;                /* >= 0 */
    float dcl_a;                /* >= 0 */
    float discharge_v;          /* 0x351 bytes 6-7 */
    uint8_t phase;              /* enum charge_phase (charge_control.h) */
    uint8_t cvl_pack, ccl_pack, dcl_pack;
    char cvl_reason[BATTERY_REASON_LEN]; /* bank: "pack 2: cell excess, max 3.560 V" */
    char ccl_reason[BATTERY_REASON_LEN];
    char dcl_reason[BATTERY_REASON_LEN];
};

/* A cell or a temperature sensor of the bank: which pack, which one (1-based cell number,
 * or enum bms_temp_sensor), and a short name for 0x374..0x377 ("P2C07", "P1T1"). */
struct battery_ref {
    uint8_t pack;
    uint8_t index;
    char name[8];
};

struct battery_pack {
    uint8_t id;                           /* battery_id of its uart_bms */
    char name[BATTERY_NAME_LEN];          /* configured name, default "pack N" (1-based) */
    uint8_t state;                        /* enum battery_pack_state */
    uint32_t conditions;                  /* enum battery_condition bits */
    float capacity_ah;                    /* configured override, else register 306, else 0 */
    float soc_pct;                        /* the BMS's SOC rescaled to the configured full/empty
                                             bounds (what is shown and sent) */
    bool charge_allowed;                  /* this pack's CCL > 0 and no charge-blocking protection */
    bool discharge_allowed;
    uint32_t protections;                 /* enum charge_protection bits active */
    uint64_t sample_age_ms;               /* age of live at the view's timestamp */
    struct bms_live_data live;            /* last plausible sample (valid false before any) */
    struct battery_limits limits;         /* this pack's own charge control */
    struct victron_alarm_state alarms;    /* this pack's flags */
    uint32_t bad_samples;                 /* implausible samples since start */
    uint32_t frozen_samples;              /* samples whose lifetime counter did not advance */
    char bad_reason[BATTERY_REASON_LEN];  /* why the last bad sample was refused */
};

struct battery_view {
    uint64_t seq;                         /* 1, 2, 3... one per step */
    uint64_t timestamp_ms;                /* gw_now_ms() of the step */
    int64_t wall_time_ms;
    uint8_t pack_count;                   /* configured packs (packs[0..pack_count)) */
    uint8_t online_count;                 /* R1: packs ONLINE or REJOINING */
    uint32_t conditions;                  /* enum battery_condition bits (bank) */
    uint32_t limit_outputs;               /* BATTERY_OUTPUT_* that send limits; 0: an external
                                             cap has no effect on any charger */

    /* The aggregate over the online packs (R2-R5); meaningful when online_count > 0. */
    float voltage_v;                      /* mean (R2) */
    float current_a;                      /* sum (R3), + = charge */
    float power_w;
    float soc_pct;                        /* capacity-weighted (R4), rescaled to the configured
                                             full/empty bounds: what is shown and sent */
    float soc_bms_pct;                    /* the same before rescaling (the BMS's own scale) */
    float soh_pct;                        /* capacity-weighted over packs with a valid SOH */
    bool soh_valid;
    float capacity_ah;                    /* online */
    float installed_capacity_ah;          /* every configured pack */
    uint32_t time_left_s;                 /* 0 = unknown */
    uint8_t cell_count;                   /* series cells (the same for every pack) */
    float min_cell_v, max_cell_v;         /* global extremes (R5) */
    float cell_spread_mv;                 /* max - min over every online cell */
    struct battery_ref min_cell, max_cell;
    bool have_temp;
    float temp_min_c, temp_max_c;         /* over the cell (external) sensors of online packs */
    struct battery_ref min_temp, max_temp;
    uint16_t online_status;               /* enum bms_online_status: fault if any, else the
                                             first pack's */
    uint32_t protections;                 /* OR of the online packs' */
    struct victron_alarm_state alarms;    /* worst per flag (R12); online = limits.valid */
    struct victron_modules modules;       /* 0x372 (R11) */
    double energy_in_wh;                  /* lifetime counters (0x378), persisted */
    double energy_out_wh;
    struct battery_limits limits;         /* what every output sends (R6-R9) */

    struct battery_pack packs[BATTERY_MAX_PACKS];
};

/* Static names: "never seen", "online", "stale", "offline", "rejoining"; "unknown". */
const char *battery_pack_state_name(uint8_t state);
/* Static short name of one condition bit ("implausible", "frozen", ...); "unknown". */
const char *battery_condition_name(uint32_t bit);

#endif
