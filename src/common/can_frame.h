/* The classic CAN frame as every layer sees it (transports, the Victron describer, tools). */
#ifndef GW_CAN_FRAME_H
#define GW_CAN_FRAME_H

#include <stdbool.h>
#include <stdint.h>

/* One classic CAN frame. id is 11-bit (ext false) or 29-bit (ext true); dlc 0..8; data bytes
 * past dlc are zero. err = an error frame reported by the controller (SocketCAN only; id then
 * holds the error class bits of <linux/can/error.h>). */
struct can_frame_gw {
    uint32_t id;
    uint8_t dlc;
    uint8_t data[8];
    bool ext, rtr, err;
};

#endif
