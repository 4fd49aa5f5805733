/* Private helpers shared by the tinybms codec files. Nothing outside src/core/tinybms includes
 * this. */
#ifndef TINYBMS_INTERNAL_H
#define TINYBMS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* True for every command byte a request can carry (hence that an ACK/NACK can name). */
bool tinybms__is_known_cmd(uint8_t cmd);

#endif
