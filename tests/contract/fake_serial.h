/* An in-memory serial port (struct serial_ops) for tests, with a peer side standing in for the
 * device at the other end of the line. It honours the serial contract that
 * tests/contract/test_contract_serial.c checks over every backend (open errors, bad arguments,
 * read timeouts, a full output buffer, discard, hang-up). One port at a time per path is not
 * enforced. Paths: FAKE_SERIAL_MISSING does not exist, FAKE_SERIAL_NOT_A_TTY is no serial
 * device, anything else opens. */
#ifndef FAKE_SERIAL_H
#define FAKE_SERIAL_H

#include "serial.h"

#include <stdbool.h>
#include <stddef.h>

#define FAKE_SERIAL_MISSING "fake:missing"
#define FAKE_SERIAL_NOT_A_TTY "fake:not-a-tty"
#define FAKE_SERIAL_BUF 4096 /* bytes buffered each way */

extern const struct serial_ops fake_serial_ops;

/* Peer side (the device). Each returns 0 / false when port is NULL. */
/* Bytes the port wrote, oldest first, up to cap; does not wait. */
size_t fake_serial_peer_read(struct serial_port *port, uint8_t *buf, size_t cap);
/* Bytes for the port to read; false when they do not fit or the line hung up. */
bool fake_serial_peer_write(struct serial_port *port, const uint8_t *buf, size_t n);
/* How many written bytes the line holds before write waits (1..FAKE_SERIAL_BUF). */
bool fake_serial_peer_set_capacity(struct serial_port *port, size_t bytes);
/* The device goes away (USB unplugged): read and write then report GW_ERR_CLOSED. */
bool fake_serial_peer_hang_up(struct serial_port *port);

#endif
