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

/* Register number (0..15) that serves model cell `cell` (0-based) with n cells. */
unsigned sim_registers_cell_register(unsigned cells, unsigned cell);

#endif
