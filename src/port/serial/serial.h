/* Serial port (termios, raw 8N1) behind an ops struct, so the BMS poller can run over a real
 * UART, a USB adapter, a pseudo-terminal, or a scripted fake in unit tests. Every backend keeps
 * the same contract, checked over each by tests/contract/test_contract_serial.c.
 * One port is used by one thread at a time. */
#ifndef SERIAL_H
#define SERIAL_H

#include <stddef.h>
#include <stdint.h>

struct serial_port;

struct serial_ops {
    /* Opens path at baud (raw 8N1, no flow control); *out = NULL on failure.
     * @retval GW_OK, GW_ERR_NOT_FOUND (no such device), GW_ERR_IO (open/termios failed, not a
     * serial device), GW_ERR_INVAL (unsupported baud, NULL or empty path, NULL out) */
    int (*open)(const char *path, uint32_t baud, struct serial_port **out);
    /* Writes all of buf before timeout_ms (never blocks longer). @retval GW_OK, GW_ERR_TIMEOUT,
     * GW_ERR_CLOSED (device gone), GW_ERR_IO, GW_ERR_INVAL (NULL port, NULL buf with len > 0) */
    int (*write)(struct serial_port *port, const uint8_t *buf, size_t len, uint32_t timeout_ms);
    /* Reads what is available, waiting up to timeout_ms for the first byte; *got = 0 on timeout.
     * @retval GW_OK (also on timeout), GW_ERR_CLOSED (device gone: hang-up, EIO), GW_ERR_IO,
     *         GW_ERR_INVAL (NULL port/buf/got, cap 0) */
    int (*read)(struct serial_port *port, uint8_t *buf, size_t cap, uint32_t timeout_ms, size_t *got);
    /* Drops bytes received but not yet read. NULL accepted. */
    void (*discard_input)(struct serial_port *port);
    /* Closes and frees; NULL accepted. */
    void (*close)(struct serial_port *port);
};

/* The termios implementation. */
extern const struct serial_ops serial_termios_ops;

/* The descriptor of a port opened by serial_termios_ops, for poll() beside other descriptors
 * (the slcan CAN reader); -1 for NULL. The port keeps ownership: never read or close it. */
int serial_termios_fd(const struct serial_port *port);

#endif
