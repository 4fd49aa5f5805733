/* An in-memory CAN transport (struct can_transport_ops) for tests, with a peer side standing in
 * for the bus: frames sent are queued for the peer to take, frames the peer puts are returned by
 * recv. It honours the transport contract that tests/contract/test_contract_can.c checks over
 * every implementation (bad frames refused and counted, timeouts, a full TX queue, hang-up,
 * counters, close twice), so a test that uses it exercises the same behaviour as a real bus.
 * Thread-safe like the real transports (one sender, one receiver, the peer, stats from anyone). */
#ifndef FAKE_CAN_H
#define FAKE_CAN_H

#include "can_transport.h"

#include <stdbool.h>
#include <stddef.h>

#define FAKE_CAN_QUEUE 256 /* frames kept each way */

extern const struct can_transport_ops fake_can_ops;

/* Allocates a transport on fake_can_ops and opens it (free with can_transport_close).
 * @retval GW_OK, GW_ERR_NOMEM */
int fake_can_open(struct can_transport **out);

/* Peer side. Each returns false when t is not an open fake. */
/* Takes the oldest frame the transport sent (false when none is queued: sends are synchronous). */
bool fake_can_peer_take(struct can_transport *t, struct can_frame_gw *frame);
/* Puts a frame on the bus for recv (false when the RX queue is full or the bus hung up). */
bool fake_can_peer_put(struct can_transport *t, const struct can_frame_gw *frame);
/* Frames the TX queue holds before send waits for the peer (1..FAKE_CAN_QUEUE, default max). */
bool fake_can_peer_set_tx_capacity(struct can_transport *t, size_t frames);
/* The bus goes away: send and recv then report GW_ERR_CLOSED. */
bool fake_can_peer_hang_up(struct can_transport *t);

#endif
