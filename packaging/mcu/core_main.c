/* The firmware stand-in of `make size`: it keeps every public entry point of the core
 * (gw_core_entry_points, generated) so that --gc-sections leaves what a firmware using the
 * whole core would carry. Never run: it only has to link. */
#include "core_entry_points.h"

#include <stddef.h>

int main(void)
{
    const void *const *table = gw_core_entry_points;
    /* The empty asm hides where table points, so the compiler cannot fold the loop away and
     * every entry stays a root of the link. */
    __asm__ volatile("" : "+r"(table));
    size_t present = 0;
    for (size_t i = 0; i < gw_core_entry_point_count; i++)
        if (table[i] != NULL)
            present++;
    return present == gw_core_entry_point_count ? 0 : 1;
}
