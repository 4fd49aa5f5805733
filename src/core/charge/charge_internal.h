/* Charge control internals shared by its own files (nothing outside src/core/charge includes
 * this). */
#ifndef CHARGE_INTERNAL_H
#define CHARGE_INTERNAL_H

#include "charge_control.h"

/* charge_protections_active with the event timestamps unwrapped from step to step in *track:
 * an event seen in an earlier log keeps the lifetime it was given then; an event that appears
 * in a later log is new (logged since, possibly a few seconds after the sample); the events of
 * the first log are placed as charge_protections_active does. A NULL or invalid log gives the
 * status bits only and leaves *track as it was. track, live not NULL. */
uint32_t charge__protections_tracked(struct charge_event_track *track,
                                     const struct bms_live_data *live,
                                     const struct bms_event_log *log, uint32_t hold_s);

#endif
