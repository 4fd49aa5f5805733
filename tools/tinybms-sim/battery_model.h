/* Battery model of the TinyBMS simulator (portable: no OS calls, no allocation).
 * A pack of 4..16 series cells, each with its own capacity and resistance spread, coulomb
 * counting, an open-circuit-voltage curve per chemistry, temperatures that follow current,
 * BMS-style balancing above a threshold, and protection cutoffs that open the charge or
 * discharge switch and log events like a TinyBMS. Used by tinybms-sim and, in-process, by the
 * closed-loop charge-control test. */
#ifndef BATTERY_MODEL_H
#define BATTERY_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#define BATTERY_MODEL_MAX_CELLS 16
#define BATTERY_MODEL_EVENT_RING 49

enum battery_chemistry { BATTERY_LFP = 0, BATTERY_NMC = 1 };

struct battery_model_config {
    uint8_t cells;                 /* 4..16, default 16 */
    uint8_t chemistry;             /* enum battery_chemistry, default LFP */
    float capacity_ah;             /* nominal, default 280 */
    float capacity_spread;         /* relative 1-sigma-ish spread between cells, default 0.02 */
    float resistance_mohm;         /* per cell, default 0.25 */
    float resistance_spread;       /* relative, default 0.10 */
    float initial_soc;             /* 0..1, default 0.5 */
    float initial_soc_spread;      /* relative SOC offset between cells, default 0.0 */
    float ambient_c;               /* default 25 */
    uint32_t seed;                 /* deterministic spread, default 1 */
    /* BMS settings the model enforces (same units as the TinyBMS registers). */
    uint16_t over_voltage_cutoff_mv;   /* reg 315, LFP default 3650 */
    uint16_t under_voltage_cutoff_mv;  /* reg 316, LFP default 2800 */
    uint16_t fully_charged_mv;         /* reg 300, LFP default 3650 */
    uint16_t early_balancing_mv;       /* reg 303, LFP default 3400 */
    uint16_t allowed_disbalance_mv;    /* reg 308, default 15 */
    uint16_t discharge_overcurrent_a;  /* reg 317, default 200 */
    uint16_t charge_overcurrent_a;     /* reg 318, default 150 */
    int16_t over_heat_cutoff_c;        /* reg 319, default 60 */
    int16_t low_temp_charge_cutoff_c;  /* reg 320, default 0 */
    float balance_current_a;           /* bleed current of a balancing cell, default 0.06 */
};

struct battery_event {
    uint32_t timestamp_s;          /* BMS lifetime seconds */
    uint8_t id;                    /* TinyBMS event id (0x02 under-voltage cutoff, ...) */
};

struct battery_model {
    struct battery_model_config cfg;
    float cell_capacity_ah[BATTERY_MODEL_MAX_CELLS];
    float cell_resistance_ohm[BATTERY_MODEL_MAX_CELLS];
    float cell_charge_ah[BATTERY_MODEL_MAX_CELLS];  /* stored charge */
    float cell_voltage_v[BATTERY_MODEL_MAX_CELLS];  /* terminal voltage at the last step */
    float current_a;               /* flowing current after the switches, + = charge */
    float requested_current_a;     /* what the charger/load asked for */
    float temp_internal_c;
    float temp_ext_c[2];
    bool ext_sensor_connected[2];
    bool charge_enabled;           /* charge switch closed */
    bool discharge_enabled;        /* discharge switch closed */
    bool fault;                    /* status 0x9B */
    uint16_t balancing_bits;       /* bit i = cell i bleeding */
    double lifetime_s;
    double soc_ah;                 /* pack coulomb counter (what the BMS reports as SOC) */
    double energy_in_wh, energy_out_wh;
    struct battery_event events[BATTERY_MODEL_EVENT_RING];
    uint8_t event_count;           /* entries used, newest last */
    uint32_t event_total;          /* events ever logged */
    /* Statistics (registers 100..117). */
    float max_discharge_a, max_charge_a;
    uint16_t under_voltage_count, over_voltage_count, discharge_oc_count, charge_oc_count,
        over_heat_count, charging_count, full_charge_count;
    float max_cell_diff_mv;
    float min_temp_c, max_temp_c;

    /* ---- Added for the simulator (appended; the fields above keep their meaning). ---- */
    float temp_pack_c;             /* cell-block temperature that external sensor 1 measures */
    float heater_c_per_s;          /* extra pack heating in degC per model second (scenarios) */
    float soh;                     /* 0..1 state of health (register 45), default 1 */
    uint16_t balancing_decision_bits; /* register 51; balancing_bits is register 52 */
    uint16_t recovery_s;           /* automatic recovery delay (reg 332), 1..30, default 5 */
    uint32_t stats_cleared_s;      /* lifetime_s when the statistics were last cleared */
    uint32_t rng_state;            /* xorshift32 state derived from cfg.seed */
    /* Protection state: each flag is one active cutoff; the timers count model seconds the
     * condition has been gone (recovery after recovery_s, with hysteresis). */
    bool over_voltage_active, under_voltage_active, discharge_oc_active, charge_oc_active,
        over_heat_active, low_temp_charge_active;
    bool charge_done;              /* a cell reached fully_charged_mv: charge switch open */
    bool fully_charged;            /* pack full (status 0x92 when no current flows) */
    bool charging_session;         /* a charge is in progress (charging_count, event 0x62) */
    float ov_clear_s, uv_clear_s, dis_oc_clear_s, chg_oc_clear_s, heat_clear_s, low_temp_clear_s;
    /* Double-precision shadow of cell_charge_ah (a float cannot count 1 s of a 60 mA bleed on
     * 280 Ah). A caller may still write cell_charge_ah: the model adopts the new value. */
    double cell_charge_precise_ah[BATTERY_MODEL_MAX_CELLS];

    /* ---- Added for the closed-loop charge tests (appended; 0 = off, the default). ---- */
    float cell_leak_a[BATTERY_MODEL_MAX_CELLS]; /* self-discharge of each cell, A */
    float polarisation_ohm;        /* per cell: an RC branch in series (diffusion), ohm */
    float polarisation_tau_s;      /* its time constant, s (0 = off) */
    float cell_polar_v[BATTERY_MODEL_MAX_CELLS]; /* the RC branch's voltage now */
};

/* Fills cfg with the defaults documented above for a chemistry. */
void battery_model_default_config(struct battery_model_config *cfg, enum battery_chemistry chem);

/* Initialises m from cfg (copied). Returns 0, or -1 when cfg is out of range. */
int battery_model_init(struct battery_model *m, const struct battery_model_config *cfg);

/* Advances the model by dt_s seconds with the external source/load asking for current_a
 * (+ = charge). The BMS switches decide what actually flows (m->current_a). dt_s 0..60. */
void battery_model_step(struct battery_model *m, float current_a, float dt_s);

float battery_model_pack_voltage(const struct battery_model *m);
/* SOC 0..1 as the BMS reports it (coulomb counter). */
float battery_model_soc(const struct battery_model *m);
/* Online status as register 50 (0x91 charging, 0x92 fully charged, 0x93 discharging,
 * 0x97 idle, 0x9B fault). */
uint16_t battery_model_status(const struct battery_model *m);
float battery_model_min_cell_v(const struct battery_model *m, unsigned *index);
float battery_model_max_cell_v(const struct battery_model *m, unsigned *index);

/* Forces a cell's stored charge so it sits at the given open-circuit voltage (scenarios). */
void battery_model_set_cell_ocv(struct battery_model *m, unsigned cell, float ocv_v);

/* Appends an event to the ring (the oldest drops when full). */
void battery_model_log_event(struct battery_model *m, uint8_t id);

/* ---- Added for the simulator. ---- */

/* Open-circuit voltage in volts of one cell of chemistry chem at state of charge soc (0..1;
 * values slightly outside extrapolate steeply so over/under-charge shows). Monotonic in soc.
 * Pure function. */
float battery_model_ocv(enum battery_chemistry chem, float soc);

/* Open-circuit voltage of cell (0-based, < cfg.cells) at its current charge; 0 when cell is out
 * of range. */
float battery_model_cell_ocv(const struct battery_model *m, unsigned cell);

/* Sets the BMS coulomb counter (what a write to register 328 does); soc is clamped to 0..1.
 * The cells' real charge is not changed. */
void battery_model_set_soc(struct battery_model *m, float soc);

/* Empties the event ring (command 0x02 option 0x01). event_total is kept. */
void battery_model_clear_events(struct battery_model *m);

/* Resets the statistics fields and stamps stats_cleared_s (command 0x02 option 0x02). */
void battery_model_clear_statistics(struct battery_model *m);

/* Clears every active protection and closes both switches, logs 0x61 "system started"
 * (command 0x02 option 0x05, BMS reset). Cells, counters and statistics are kept. */
void battery_model_reset_bms(struct battery_model *m);

#endif
