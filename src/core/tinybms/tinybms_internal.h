/* Private helpers shared by the tinybms codec files. Nothing outside src/core/tinybms includes
 * this. */
#ifndef TINYBMS_INTERNAL_H
#define TINYBMS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tinybms.h"

static inline uint16_t tinybms__le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint16_t tinybms__be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t tinybms__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* IEEE-754 single from its bit pattern, without aliasing tricks. */
static inline float tinybms__f32_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The command table (tinybms_meta.c), indexed by command byte: slots 0..TINYBMS_CMD_SPEED_DISTANCE,
 * name NULL where no command has that byte. */
#define TINYBMS__COMMAND_SLOTS (TINYBMS_CMD_SPEED_DISTANCE + 1)
extern const struct tinybms_command_info tinybms__commands[TINYBMS__COMMAND_SLOTS];

/* Row of cmd or NULL; inline for the decoders. */
static inline const struct tinybms_command_info *tinybms__command(uint8_t cmd)
{
    if (cmd >= TINYBMS__COMMAND_SLOTS || !tinybms__commands[cmd].name)
        return NULL;
    return &tinybms__commands[cmd];
}

/* pl within rule (min..max, multiple of step). step is a power of two (1, 2, 4: checked by
 * test_tinybms_frame), so the multiple is a mask test, not a division on the decoder's path;
 * a rule with step 0 allows nothing. */
static inline bool tinybms__pl_allowed(const struct tinybms_pl_rule *rule, uint8_t pl)
{
    return rule->step && pl >= rule->min && pl <= rule->max && (pl & (rule->step - 1u)) == 0;
}

#endif
