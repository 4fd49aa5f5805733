/* Private helpers of the CAN transports, shared between their files and their unit tests.
 * Nothing outside src/port/can and tests/unit/test_can_*.c includes this. */
#ifndef CAN_TRANSPORT_INTERNAL_H
#define CAN_TRANSPORT_INTERNAL_H

#include "can_transport.h"

#include <linux/can.h>
#include <stdbool.h>

/* Our frame to the kernel's struct can_frame. @retval GW_OK, GW_ERR_INVAL (bad frame) */
int can_socketcan__to_linux(const struct can_frame_gw *in, struct can_frame *out);

/* The kernel's frame to ours (error frames: err = true, id = error class bits).
 * @retval GW_OK, GW_ERR_INVAL (dlc > 8) */
int can_socketcan__from_linux(const struct can_frame *in, struct can_frame_gw *out);

/* True when an error frame reports bus-off (CAN_ERR_BUSOFF). */
bool can_socketcan__is_bus_off(const struct can_frame_gw *err_frame);

/* True when an error frame reports the controller restarted (CAN_ERR_RESTARTED). */
bool can_socketcan__is_restarted(const struct can_frame_gw *err_frame);

/* Link type of a network interface (/sys/class/net/NAME/type: 280 = ARPHRD_CAN, 772 = loopback),
 * or -1 when there is no such interface or it cannot be read. */
int can_socketcan__link_type(const char *ifname);

/* Splits "path[@baud]" into path (cap bytes) and baud (default CAN_SLCAN_DEFAULT_BAUD).
 * @retval GW_OK, GW_ERR_INVAL (empty path, bad or zero baud, too long) */
int can_slcan__parse_arg(const char *arg, char *path, size_t cap, uint32_t *baud);

/* Nanoseconds-free deadline helpers over gw_now_ms(). */
uint64_t can__deadline(uint32_t timeout_ms);
int can__remaining_ms(uint64_t deadline);

#endif
