/* Register image of the simulated TinyBMS s516, computed from the battery model.
 * Live data 0..55, statistics 100..117, events 200..297, settings 300..343 (writable within
 * their ranges), version 500..509, exactly as /work/shared/spec/tinybms-uart.md lays them out.
 * Portable (no OS calls, no allocation). Not thread-safe: one owner per struct sim_bms.
 *
 * Cell layout: with n cells, model cell i (user "cell i+1", documented order) is served in
 * register 16 - n + i; registers below 16 - n read 0 (as the public 14-cell dump shows).
 * Balancing bits: bit i = model cell i. Event registers: slot 0 (registers 200/201) = newest. */
#ifndef SIM_REGISTERS_H
#define SIM_REGISTERS_H

#include <stdbool.h>
#include <stdint.h>

#include "battery_model.h"

#define SIM_LIVE_COUNT 56          /* registers 0..55 */
#define SIM_SETTINGS_FIRST 300
#define SIM_SETTINGS_SPAN 100      /* 300..399: the writable window */
#define SIM_SETTINGS_LAST_DOC 343  /* last documented setting */
#define SIM_VERSION_FIRST 500
#define SIM_VERSION_COUNT 10

/* Injected faults (docs/simulator.md "Fault modes"): what every live read (registers 0..55 and
 * the commands built on them) serves instead of the model's values, with valid CRCs. One at a
 * time. The impossible-* faults overwrite registers with values no real pack can have; frozen
 * serves one snapshot for ever; no-ext-temp / no-temp make sensors read absent (0x8000). */
enum sim_fault {
    SIM_FAULT_NONE = 0,
    SIM_FAULT_PACK_ZERO,       /* 36-37 = 0.0 V */
    SIM_FAULT_PACK_NEGATIVE,   /* 36-37 = -53.0 V */
    SIM_FAULT_PACK_HUGE,       /* 36-37 = 1e30 V */
    SIM_FAULT_CURRENT_HUGE,    /* 38-39 = 1e30 A */
    SIM_FAULT_CELL_MAX,        /* user cell 1 (register 16 - n) = 0xFFFF (6.5535 V), 41 = 6554 mV */
    SIM_FAULT_SOC_HUGE,        /* 46-47 = 0xFFFFFFFF (4294.967295 %) */
    SIM_FAULT_TEMP_HUGE,       /* 42 (external sensor 1) = 32767 (3276.7 degC) */
    SIM_FAULT_FROZEN,          /* 0..55 = the snapshot taken when the fault was set */
    SIM_FAULT_NO_EXT_TEMP,     /* 42, 43 = 0x8000 (absent) */
    SIM_FAULT_NO_TEMP,         /* 42, 43, 48 = 0x8000 (absent) */
    SIM_FAULT_COUNT
};

/* Register 114 low byte ("last reset cause"). The spec lists no codes: these are the
 * simulator's own. */
#define SIM_RESET_CAUSE_POWER_ON 0x01  /* at start-up */
#define SIM_RESET_CAUSE_WATCHDOG 0x02  /* control `reset`: the BMS restarted by itself */
#define SIM_RESET_CAUSE_COMMAND 0x05   /* command 0x02 option 0x05 */

/* 0x1D table selectors. */
enum sim_settings_table { SIM_TABLE_MIN = 1, SIM_TABLE_MAX = 2, SIM_TABLE_DEFAULT = 3, SIM_TABLE_CURRENT = 4 };

struct sim_bms {
    struct battery_model model;
    bool old_firmware;             /* NACK registers only newer firmware has */
    bool old_firmware_junk;        /* with old_firmware: serve 0xFFFF for them instead of NACK */
    uint16_t settings[SIM_SETTINGS_SPAN];       /* current values of 300..399 */
    uint16_t setting_default[SIM_SETTINGS_SPAN];/* defaults (some follow the model config) */
    bool soh_written, soc_written; /* registers 323 / 328 read 0xFFFF once written */
    uint16_t version[SIM_VERSION_COUNT];
    uint8_t last_reset_cause, last_wake_cause;  /* register 114 */
    uint32_t events_reported_total; /* model event_total already sent by command 0x11 */
    enum sim_fault fault;          /* set with sim_bms_set_fault */
    uint16_t frozen_live[SIM_LIVE_COUNT]; /* SIM_FAULT_FROZEN: the registers served */
    bool nack_only;                /* a BMS that refuses everything: every well-formed request
                                      is answered NACK ERR 0x00 (command error), valid CRC */
};

/* Initialises b: the model from cfg (copied), settings at their defaults (thresholds, capacity
 * and cell count taken from cfg), version registers with a serial number derived from cfg->seed.
 * @retval GW_OK
 * @retval GW_ERR_INVAL b or cfg NULL, or cfg out of range (battery_model_init refused it) */
int sim_bms_init(struct sim_bms *b, const struct battery_model_config *cfg, bool old_firmware);

/* Reads one register as the BMS would serve it at this instant (no model step).
 * @retval GW_OK           *value set
 * @retval GW_ERR_NOT_FOUND address not in a readable block (0..99, 100..199, 200..299,
 *                          300..399, 500..599), or a newer-firmware register on old firmware
 *                          (unless old_firmware_junk: then 0xFFFF is served) */
int sim_registers_read(const struct sim_bms *b, uint16_t addr, uint16_t *value);

/* Reads count consecutive registers from addr into out[0..count-1] (all or nothing).
 * @retval GW_OK, GW_ERR_INVAL (count 0 or NULL), GW_ERR_NOT_FOUND (see sim_registers_read) */
int sim_registers_read_block(const struct sim_bms *b, uint16_t addr, unsigned count, uint16_t *out);

/* The live registers 0..55 at this instant (never fails for a valid b; on old firmware
 * register 45 is filled too, the protocol layer refuses to serve it). */
void sim_registers_live(const struct sim_bms *b, uint16_t out[SIM_LIVE_COUNT]);

/* Writes n registers (addresses need not be consecutive) as one transaction: every address must
 * be a documented setting the firmware has, every value within its range (and 312/313 together
 * within 1..100000), else nothing changes. Applies the settings to the model (thresholds,
 * capacity, recovery delay; 323 sets SOH, 328 sets SOC).
 * @retval GW_OK
 * @retval GW_ERR_INVAL    NULL pointers or n == 0
 * @retval GW_ERR_NOT_FOUND an address outside 300..399, reserved, or absent on this firmware
 * @retval GW_ERR_RANGE    a value outside the setting's range */
int sim_registers_write(struct sim_bms *b, const uint16_t *addrs, const uint16_t *values, unsigned n);

/* One entry of the 0x1D tables for register 300 + index (index 0..99): min, max, default or
 * current. Reserved registers give 0. Signed settings (319, 320) are two's complement.
 * @retval GW_OK, GW_ERR_INVAL (table not 1..4, index >= 100, NULL) */
int sim_registers_settings_table(const struct sim_bms *b, enum sim_settings_table table,
                                 unsigned index, uint16_t *value);

/* Selects the fault every live read serves from now on (SIM_FAULT_NONE: the model again).
 * SIM_FAULT_FROZEN snapshots the fault-free live registers at this instant (setting it again
 * takes a new snapshot); the model keeps running underneath.
 * @retval GW_OK
 * @retval GW_ERR_INVAL b NULL or f not an enum sim_fault */
int sim_bms_set_fault(struct sim_bms *b, enum sim_fault f);

/* Name of a fault as the --fault option and the `fault` control command spell it
 * ("none", "impossible-pack-zero", ..., "frozen", "no-ext-temp", "no-temp"); "?" when out of
 * range. Static string. */
const char *sim_fault_name(enum sim_fault f);

/* One-line description of a fault ("pack voltage 0 V (regs 36-37)"). Static string. */
const char *sim_fault_description(enum sim_fault f);

/* Looks a fault up by its name (exact, see sim_fault_name).
 * @retval GW_OK           *out set
 * @retval GW_ERR_NOT_FOUND unknown name (*out untouched)
 * @retval GW_ERR_INVAL    NULL argument */
int sim_fault_from_name(const char *name, enum sim_fault *out);

/* The BMS restarts (a watchdog or power glitch, or command 0x02 option 0x05): protections
 * clear, both switches close, event 0x61 "system started" is logged, register 114's low byte
 * becomes cause. soc_pct 0..100 is the SOC the BMS re-estimates (registers 46-47 jump to it);
 * a negative soc_pct keeps the coulomb counter. The lifetime counter (32-33), the statistics
 * and the event log are kept (they are the BMS's lifetime records). The active fault is kept.
 * @retval GW_OK
 * @retval GW_ERR_INVAL b NULL or soc_pct above 100 / NaN */
int sim_bms_restart(struct sim_bms *b, float soc_pct, uint8_t cause);

/* Register number (0..15) that serves model cell `cell` (0-based) with n cells. */
unsigned sim_registers_cell_register(unsigned cells, unsigned cell);

#endif
