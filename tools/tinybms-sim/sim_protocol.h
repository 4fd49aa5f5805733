/* Server side of the TinyBMS UART protocol (the BMS end), independent of the gateway's codec.
 * Frames start with 0xAA and end with CRC-16/MODBUS sent LSB first. A byte-wise parser finds
 * request frames (re-synchronising on 0xAA, bounded buffer), sim_protocol_handle() answers one
 * request from a struct sim_bms exactly as a TinyBMS s516 would.
 * Portable (no OS calls, no allocation). Not thread-safe per parser / bms.
 *
 * Choices where the spec is silent (documented in docs/simulator.md):
 * - multi-packet answers (0x07 > 31 registers, 0x09 > 15 registers): every packet but the last
 *   carries PL = 0x80 | packet id (1, 2, ...) and a full payload of 62 bytes (0x07, 31 registers)
 *   or 60 bytes (0x09, 15 address/value pairs); the last packet has PL = its size (bit 7 = 0);
 * - unknown commands are taken as 4-byte frames (AA CMD crc) and answered NACK 0x00;
 * - 0x11 answers the events logged since the previous 0x11, 0x12 all stored events; both newest
 *   first, PL a plain byte count; 0x1C answers cells in register order; 0x14..0x1A and 0x20
 *   carry no PL byte (as the spec's table shows);
 * - every live answer (0x03/0x07/0x09 of registers 0..55, 0x14..0x1C, 0x20, the BMS time of
 *   0x11/0x12) carries the active fault (sim_bms_set_fault), with a valid CRC. */
#ifndef SIM_PROTOCOL_H
#define SIM_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "sim_registers.h"

#define SIM_SYNC 0xAA
#define SIM_REQUEST_MAX 272  /* longest request: 0x10 with PL 255 = 7 + 255 + 2 */
#define SIM_REPLY_MAX 1024   /* longest answer: 0x07 of 127 registers = 5 packets of <= 67 B */

#define SIM_ERR_COMMAND 0x00
#define SIM_ERR_CRC 0x01

/* CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) of len bytes. Pure. */
uint16_t sim_crc16(const uint8_t *data, size_t len);

/* Length of the request frame that starts at buf[0] (0xAA) given the first have bytes:
 * the total length, or 0 when more bytes are needed to know it. Unknown commands count 4. */
size_t sim_request_length(const uint8_t *buf, size_t have);

struct sim_parser {
    uint8_t buf[SIM_REQUEST_MAX];
    size_t len;
    uint32_t dropped_bytes;   /* bytes skipped while hunting for 0xAA */
};

void sim_parser_reset(struct sim_parser *p);

/* Feeds one received byte. Returns the frame length when p->buf now holds a complete request
 * (the caller handles it, then calls sim_parser_reset), 0 otherwise. Bytes before a 0xAA are
 * dropped. Never overflows: every request length is bounded by SIM_REQUEST_MAX. */
size_t sim_parser_push(struct sim_parser *p, uint8_t byte);

/* Answers one complete request frame (frame[0] = 0xAA). Writes the reply into reply (cap bytes,
 * at least SIM_REPLY_MAX) and returns its length; 0 when there is nothing to send (frame not
 * starting with 0xAA or too short). Bad CRC -> NACK ERR 0x01; unknown command, bad length,
 * out-of-range or forbidden register -> NACK ERR 0x00; b->nack_only: every request with a good
 * CRC -> NACK ERR 0x00 (and no side effect). Commands with side effects (writes,
 * 0x02 clears and reset, 0x11 event cursor) change b. */
size_t sim_protocol_handle(struct sim_bms *b, const uint8_t *frame, size_t len, uint8_t *reply,
                           size_t cap);

#endif
