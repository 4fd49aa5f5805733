/* The table core_entry_points.c (written by entry-points.sh at build time) defines: the address
 * of every public function and object of src/core. */
#ifndef CORE_ENTRY_POINTS_H
#define CORE_ENTRY_POINTS_H

#include <stddef.h>

extern const void *const gw_core_entry_points[];
extern const size_t gw_core_entry_point_count;

#endif
