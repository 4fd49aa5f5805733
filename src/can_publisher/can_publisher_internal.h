/* Private parts of can_publisher shared with its unit tests (nothing else includes this). */
#ifndef CAN_PUBLISHER_INTERNAL_H
#define CAN_PUBLISHER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Energy counters of 0x378, integrated from V x I over the time between samples. */
struct can_energy {
    double in_wh;       /* charged (positive power) */
    double out_wh;      /* discharged */
    bool have_prev;
    uint64_t prev_ms;
    double prev_power_w;
};

/* Adds one sample at monotonic time t_ms (power v x i, i positive = charge). The interval since
 * the previous sample is integrated with the trapezoid rule; intervals longer than max_gap_ms
 * (missing data) or a clock that did not advance contribute nothing. NaN/inf samples reset
 * the integration. */
void can_energy__add_sample(struct can_energy *e, uint64_t t_ms, float v, float i, uint32_t max_gap_ms);

/* Forgets the previous sample (the next one starts a new interval). */
void can_energy__break(struct can_energy *e);

/* JSON document {"version":1,"energy_in_wh":..,"energy_out_wh":..,"saved_at_ms":..} into buf.
 * Returns the length, or GW_ERR_NOMEM / GW_ERR_OVERFLOW. */
int can_energy__to_json(double in_wh, double out_wh, int64_t wall_ms, char *buf, size_t cap);

/* Parses the document; both counters must be finite and >= 0.
 * @retval GW_OK, GW_ERR_PROTO (not JSON, missing/invalid field, wrong version) */
int can_energy__from_json(const char *json, double *in_wh, double *out_wh);

/* Reads path. @retval GW_OK, GW_ERR_NOT_FOUND (no file: a first start), GW_ERR_PROTO (corrupt),
 * GW_ERR_OVERFLOW (too big: corrupt), GW_ERR_IO / GW_ERR_STORAGE */
int can_energy__load(const char *path, double *in_wh, double *out_wh);

/* Writes path atomically (atomic_file_write, mode 0644). @retval GW_OK or its codes */
int can_energy__save(const char *path, double in_wh, double out_wh);

#endif
