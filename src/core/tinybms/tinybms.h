/* TinyBMS UART protocol codec (portable core: no OS calls, no allocation, no I/O, no state in
 * globals). Spec: shared/spec/tinybms-uart.md (Enepaq "Tiny BMS Communication Protocols" rev D plus
 * what real hardware does).
 *
 * Pieces:
 *  - CRC-16/MODBUS and request encoders writing into caller buffers;
 *  - a pure reply-frame decoder (tinybms_decode) and a streaming decoder (struct tinybms_decoder)
 *    that re-synchronises on 0xAA after garbage or a bad CRC;
 *  - payload helpers (register words, scalars, events, versions);
 *  - register-image decoders filling the shared data model (bms_data.h);
 *  - names/metadata: events, settings table and validator, one-line frame descriptions.
 *
 * Thread-safety: every function is reentrant; a struct tinybms_decoder must not be fed from two
 * threads at once. Every pointer argument is borrowed for the duration of the call only.
 * Return convention: >= 0 success (bytes or GW_OK), negative = enum gw_err. */
#ifndef TINYBMS_H
#define TINYBMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bms_data.h"
#include "gw_error.h"

/* ---------------------------------------------------------------- framing constants */

#define TINYBMS_SYNC 0xAA
#define TINYBMS_MAX_PAYLOAD 255           /* plain PL byte maximum */
#define TINYBMS_MAX_FRAME (3 + TINYBMS_MAX_PAYLOAD + 2) /* AA CMD PL payload crcL crcH */
#define TINYBMS_ACK_LEN 5                 /* AA 01 CMD crc */
#define TINYBMS_NACK_LEN 6                /* AA 00 CMD ERR crc */

#define TINYBMS_MODBUS_READ_MAX 127       /* 0x03 RL limit */
#define TINYBMS_MODBUS_WRITE_MAX 100      /* 0x10 RL limit */
#define TINYBMS_BLOCK_READ_MAX 127        /* 0x07 RL: more than 31 comes as several packets */
#define TINYBMS_PACKET_REGS 31            /* registers in one 0x07 packet (6-bit size field) */
#define TINYBMS_BLOCK_WRITE_MAX 30        /* 0x0B: PL = 2 + 2n must fit 6 bits */
#define TINYBMS_INDIVIDUAL_READ_MAX 15    /* 0x09: answer PL = 4n must fit 6 bits */
#define TINYBMS_INDIVIDUAL_WRITE_MAX 15   /* 0x0D: PL = 4n must fit 6 bits */
#define TINYBMS_SETTINGS_READ_MAX 100     /* 0x1D RL limit */
#define TINYBMS_MAX_REQUEST (7 + 2 * TINYBMS_MODBUS_WRITE_MAX + 2) /* largest request: 0x10 */

/* Assumed payload size of a non-last packet of a multi-packet 0x07 / 0x09 answer (PL bit 7 = 1
 * carries a packet id, not a size; no public capture shows the split, so we assume full packets:
 * 31 registers, or 15 address/value pairs). */
#define TINYBMS_MULTI_PACKET_PAYLOAD_07 62
#define TINYBMS_MULTI_PACKET_PAYLOAD_09 60

/* Command bytes. */
enum tinybms_cmd {
    TINYBMS_CMD_RESET = 0x02,
    TINYBMS_CMD_READ_MODBUS = 0x03,
    TINYBMS_CMD_READ_BLOCK = 0x07,
    TINYBMS_CMD_READ_INDIVIDUAL = 0x09,
    TINYBMS_CMD_WRITE_BLOCK = 0x0B,
    TINYBMS_CMD_WRITE_INDIVIDUAL = 0x0D,
    TINYBMS_CMD_WRITE_MODBUS = 0x10,
    TINYBMS_CMD_EVENTS_NEWEST = 0x11,
    TINYBMS_CMD_EVENTS_ALL = 0x12,
    TINYBMS_CMD_PACK_VOLTAGE = 0x14,
    TINYBMS_CMD_PACK_CURRENT = 0x15,
    TINYBMS_CMD_MAX_CELL = 0x16,
    TINYBMS_CMD_MIN_CELL = 0x17,
    TINYBMS_CMD_STATUS = 0x18,
    TINYBMS_CMD_LIFETIME = 0x19,
    TINYBMS_CMD_SOC = 0x1A,
    TINYBMS_CMD_TEMPERATURES = 0x1B,
    TINYBMS_CMD_CELLS = 0x1C,
    TINYBMS_CMD_SETTINGS = 0x1D,
    TINYBMS_CMD_VERSION = 0x1E,
    TINYBMS_CMD_VERSION_EXT = 0x1F,
    TINYBMS_CMD_SPEED_DISTANCE = 0x20,
};

/* 0x02 options. */
enum tinybms_reset_option {
    TINYBMS_RESET_CLEAR_EVENTS = 0x01,
    TINYBMS_RESET_CLEAR_STATISTICS = 0x02,
    TINYBMS_RESET_BMS = 0x05,
};

/* 0x1D options. */
enum tinybms_settings_option {
    TINYBMS_SETTINGS_MIN = 1,
    TINYBMS_SETTINGS_MAX = 2,
    TINYBMS_SETTINGS_DEFAULT = 3,
    TINYBMS_SETTINGS_CURRENT = 4,
};

/* ---------------------------------------------------------------- command table
 * One row per command byte (tinybms_meta.c): the only place that knows how each request and
 * each OK answer is framed. The decoders, the encoders' checks and the frame describer read it;
 * test_tinybms_frame walks it against frames built from the spec. */

/* How a request of the command is framed. */
enum tinybms_request_kind {
    TINYBMS_REQ_SIMPLE = 0,       /* AA CMD crc: request_len (4) bytes, no field */
    TINYBMS_REQ_FIXED = 1,        /* fixed fields after CMD (0x02, 0x03, 0x07, 0x1D): request_len */
    TINYBMS_REQ_PL = 2,           /* AA CMD PL ... crc: 3 + PL + 2, PL allowed by request_pl
                                     (0x09, 0x0B, 0x0D: always one last packet) */
    TINYBMS_REQ_MODBUS_WRITE = 3, /* AA 10 ADDR_H ADDR_L 00 RL PL ... crc: 7 + PL + 2, PL = 2 x RL,
                                     RL 1..TINYBMS_MODBUS_WRITE_MAX */
};

/* How the OK answer of the command is framed. ACK / NACK frames (no length byte) may answer any
 * command of the table and are not described here. */
enum tinybms_answer_rule {
    TINYBMS_ANSWER_ACK_ONLY = 0,  /* only ACK / NACK: a data frame of this command is impossible */
    TINYBMS_ANSWER_FIXED = 1,     /* no PL byte: the frame is reply_len bytes */
    TINYBMS_ANSWER_PL = 2,        /* plain 8-bit PL = payload size, allowed by reply_pl */
    TINYBMS_ANSWER_PL_PACKETS = 3,/* PL bitfield: bit 7 clear = last packet, bits 0..5 = payload
                                     size allowed by reply_pl (bit 6 reserved, ignored); bit 7 set
                                     = bits 0..5 packet id, payload multi_packet_payload bytes */
};

/* Allowed PL values: min..max and a multiple of step (a power of two: 1, 2 or 4). */
struct tinybms_pl_rule {
    uint8_t min, max, step;
};

struct tinybms_command_info {
    uint8_t cmd;                      /* enum tinybms_cmd */
    const char *name;                 /* English, e.g. "read registers (MODBUS)" */
    uint8_t request;                  /* enum tinybms_request_kind */
    uint8_t request_len;              /* SIMPLE / FIXED: whole request frame; else 0 */
    struct tinybms_pl_rule request_pl;/* TINYBMS_REQ_PL only */
    uint8_t answer;                   /* enum tinybms_answer_rule */
    uint8_t reply_len;                /* TINYBMS_ANSWER_FIXED: whole reply frame; else 0 */
    struct tinybms_pl_rule reply_pl;  /* TINYBMS_ANSWER_PL / _PL_PACKETS */
    uint8_t multi_packet_payload;     /* TINYBMS_ANSWER_PL_PACKETS: payload of a non-last packet */
};

/* Number of rows and indexed access (ascending command byte; NULL past the end). The rows are
 * constant, static storage. */
size_t tinybms_command_count(void);
const struct tinybms_command_info *tinybms_command_at(size_t index);

/* The row of a command byte, NULL for a byte that is no command (hence no ACK/NACK names it). */
const struct tinybms_command_info *tinybms_command_info(uint8_t cmd);

/* True when pl is allowed by rule (min..max, multiple of step). rule may be NULL (false). */
bool tinybms_pl_allowed(const struct tinybms_pl_rule *rule, uint8_t pl);

/* Register blocks of the map. */
#define TINYBMS_REG_LIVE_FIRST 0
#define TINYBMS_REG_LIVE_COUNT 56         /* 0..55: one 0x03 read */
#define TINYBMS_REG_STATS_FIRST 100
#define TINYBMS_REG_STATS_COUNT 18        /* 100..117 */
#define TINYBMS_REG_EVENTS_FIRST 200
#define TINYBMS_REG_EVENTS_COUNT 98       /* 200..297 */
#define TINYBMS_REG_VERSION_FIRST 500
#define TINYBMS_REG_VERSION_COUNT 10      /* 500..509 */

/* ---------------------------------------------------------------- CRC */

/* CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF, no final xor) over buf[0..len).
 * On the wire it is sent LSB first. buf may be NULL only when len == 0. */
uint16_t tinybms_crc16(const uint8_t *buf, size_t len);

/* ---------------------------------------------------------------- request encoders
 * Each writes one complete request frame (0xAA ... CRC) into buf[0..cap) and returns the number of
 * bytes written.
 * @retval >0                frame length
 * @retval GW_ERR_INVAL      NULL pointer, count 0 or above the command's limit, unknown option
 * @retval GW_ERR_RANGE      (writes) a register outside 300..399
 * @retval GW_ERR_OVERFLOW   cap too small (nothing useful written) */

/* 0x03 MODBUS block read of count (1..127) registers from addr. Answer words are big-endian. */
int tinybms_encode_read_modbus(uint8_t *buf, size_t cap, uint16_t addr, uint8_t count);

/* 0x07 proprietary block read of count (1..127) registers from addr. Above 31 registers the
 * BMS answers in several packets (see TINYBMS_MULTI_PACKET_PAYLOAD_07). */
int tinybms_encode_read_block(uint8_t *buf, size_t cap, uint16_t addr, uint8_t count);

/* 0x09 read of n (1..15) individual registers. */
int tinybms_encode_read_individual(uint8_t *buf, size_t cap, const uint16_t *addrs, size_t n);

/* 0x0B block write of n (1..30) words from addr; addr..addr+n-1 must be within 300..399. */
int tinybms_encode_write_block(uint8_t *buf, size_t cap, uint16_t addr, const uint16_t *values,
                               size_t n);

/* 0x0D write of n (1..15) individual registers addrs[i] = values[i], each within 300..399. */
int tinybms_encode_write_individual(uint8_t *buf, size_t cap, const uint16_t *addrs,
                                    const uint16_t *values, size_t n);

/* 0x10 MODBUS block write of n (1..100) words (big-endian on the wire) from addr; the whole
 * range must be within 300..399. */
int tinybms_encode_write_modbus(uint8_t *buf, size_t cap, uint16_t addr, const uint16_t *values,
                                size_t n);

/* 0x02 reset / clear. opt is an enum tinybms_reset_option. */
int tinybms_encode_reset(uint8_t *buf, size_t cap, uint8_t opt);

/* 0x1D settings values: opt is an enum tinybms_settings_option, count (1..100) registers
 * starting at 300 (implied by the protocol). */
int tinybms_encode_read_settings(uint8_t *buf, size_t cap, uint8_t opt, uint8_t count);

/* A command without argument: 0x11, 0x12, 0x14..0x1C, 0x1E, 0x1F, 0x20 (4-byte frame).
 * @retval GW_ERR_INVAL for any other command byte. */
int tinybms_encode_simple(uint8_t *buf, size_t cap, uint8_t cmd);

/* ---------------------------------------------------------------- request decoding
 * (for the UI frame tap and tests; the gateway never receives requests) */

struct tinybms_request {
    uint8_t cmd;
    uint8_t option;          /* 0x02 / 0x1D option, else 0 */
    uint16_t addr;           /* first register: 0x03, 0x07, 0x0B, 0x10; 300 for 0x1D */
    uint8_t count;           /* registers concerned (0 for commands without registers) */
    uint16_t addrs[TINYBMS_INDIVIDUAL_WRITE_MAX > TINYBMS_INDIVIDUAL_READ_MAX
                       ? TINYBMS_INDIVIDUAL_WRITE_MAX
                       : TINYBMS_INDIVIDUAL_READ_MAX]; /* 0x09, 0x0D */
    uint16_t values[TINYBMS_MODBUS_WRITE_MAX];         /* 0x0B, 0x0D, 0x10 */
    size_t frame_len;
};

/* Decodes one request frame at buf[0]. out is written only on success.
 * @retval >0             bytes consumed (frame length)
 * @retval 0              need more bytes
 * @retval GW_ERR_PROTO   not 0xAA, unknown command or impossible length field
 * @retval GW_ERR_CRC     checksum mismatch
 * @retval GW_ERR_INVAL   NULL buf/out */
int tinybms_decode_request(const uint8_t *buf, size_t len, struct tinybms_request *out);

/* ---------------------------------------------------------------- reply decoding */

enum tinybms_reply_kind {
    TINYBMS_REPLY_ACK = 1,
    TINYBMS_REPLY_NACK = 2,
    TINYBMS_REPLY_DATA = 3,
};

enum tinybms_nack_error {
    TINYBMS_NACK_COMMAND_ERROR = 0x00,
    TINYBMS_NACK_CRC_ERROR = 0x01,
};

struct tinybms_reply {
    uint8_t cmd;                   /* command answered */
    enum tinybms_reply_kind kind;
    uint8_t nack_error;            /* NACK only: enum tinybms_nack_error (other values kept raw) */
    bool has_pl;                   /* the frame carries a PL byte */
    uint8_t pl_raw;                /* raw PL byte (0 when !has_pl) */
    bool last_packet;              /* 0x07/0x09: PL bit 7 clear; true for every other reply */
    uint8_t packet_id;             /* 0x07/0x09 multi-packet: PL bits 0..5 when not last, else 0 */
    uint16_t payload_len;          /* bytes in payload (after cmd / PL, before the CRC) */
    uint8_t payload[TINYBMS_MAX_PAYLOAD];
    size_t frame_len;              /* whole frame, 0xAA to CRC */
};

/* Total length of the reply frame starting at buf[0], derived from the command byte (and PL):
 * @retval >0            frame length
 * @retval 0             need more bytes to know it
 * @retval GW_ERR_PROTO  buf[0] != 0xAA, unknown command, impossible PL */
int tinybms_reply_frame_len(const uint8_t *buf, size_t len);

/* Decodes one reply frame at buf[0] (pure). Length and CRC are checked before any field is
 * used; out is written only on success.
 * @retval >0             bytes consumed
 * @retval 0              need more bytes
 * @retval GW_ERR_PROTO   not 0xAA, unknown command, impossible length
 * @retval GW_ERR_CRC     checksum mismatch
 * @retval GW_ERR_INVAL   NULL buf/out */
int tinybms_decode(const uint8_t *buf, size_t len, struct tinybms_reply *out);

/* Streaming decoder: feed it arbitrary chunks of received bytes. It keeps at most one frame
 * (TINYBMS_MAX_FRAME bytes) buffered, skips garbage up to the next 0xAA and, after a bad CRC or
 * an impossible length, drops one byte and rescans. Plain struct, no allocation. */
struct tinybms_decoder {
    uint8_t buf[TINYBMS_MAX_FRAME];
    size_t len;
    uint32_t frames;           /* valid frames decoded */
    uint32_t crc_errors;       /* complete frames dropped for a bad CRC */
    uint32_t proto_errors;     /* candidate frames dropped for an impossible length / command */
    uint32_t garbage_bytes;    /* bytes discarded outside valid frames */
};

/* Clears the buffer and the counters. */
void tinybms_decoder_init(struct tinybms_decoder *dec);

/* Drops buffered bytes (e.g. after a timeout, before a new request); counters are kept. */
void tinybms_decoder_reset(struct tinybms_decoder *dec);

/* Gives up on the partially buffered candidate frame: drops its first byte and everything up to
 * the next 0xAA already buffered. Call it when the line went idle with a partial frame buffered
 * (e.g. garbage such as "AA 03 FA" made the decoder wait for a long frame), then call
 * tinybms_decoder_feed(dec, NULL, 0, ...) until it returns 0 to extract frames still buffered.
 * Returns true when something was buffered. Counts the dropped bytes as garbage. */
bool tinybms_decoder_resync(struct tinybms_decoder *dec);

/* Feeds data[0..n). *consumed receives how many input bytes were used. Call it again with the
 * remaining input (data + *consumed, n - *consumed) until it returns 0: a call can also make
 * progress inside its own buffer without consuming input.
 * @retval 1              a frame was decoded into *out
 * @retval 0              all input consumed, no complete frame buffered
 * @retval GW_ERR_CRC     a frame with a bad CRC was dropped (one byte skipped, rescanning)
 * @retval GW_ERR_PROTO   a candidate frame with an impossible length/command was dropped
 * @retval GW_ERR_INVAL   NULL argument (data may be NULL when n == 0) */
int tinybms_decoder_feed(struct tinybms_decoder *dec, const uint8_t *data, size_t n,
                         size_t *consumed, struct tinybms_reply *out);

/* ---------------------------------------------------------------- payload helpers
 * Each checks r->kind == DATA and the command; GW_ERR_PROTO when the reply is of another command
 * or kind or its payload has the wrong size, GW_ERR_INVAL on NULL. */

/* Register words of a 0x03 (big-endian), 0x07, 0x1C or 0x1D (little-endian) reply into
 * regs[0..max); *count = words stored.
 * @retval GW_ERR_OVERFLOW  more words than max (the first max are stored) */
int tinybms_reply_registers(const struct tinybms_reply *r, uint16_t *regs, size_t max,
                            size_t *count);

/* 0x09 reply: address/value pairs. @retval GW_ERR_OVERFLOW more pairs than max. */
int tinybms_reply_individual(const struct tinybms_reply *r, uint16_t *addrs, uint16_t *values,
                             size_t max, size_t *count);

/* 0x10 reply: echoed first register and count. */
int tinybms_reply_write_echo(const struct tinybms_reply *r, uint16_t *addr, uint8_t *count);

/* 0x14 pack voltage (V) / 0x15 pack current (A). */
int tinybms_reply_float(const struct tinybms_reply *r, float *out);

/* 0x16 max cell (mV), 0x17 min cell (mV), 0x18 online status. */
int tinybms_reply_u16(const struct tinybms_reply *r, uint16_t *out);

/* 0x19 lifetime (s), 0x1A SOC (0.000001 %). */
int tinybms_reply_u32(const struct tinybms_reply *r, uint32_t *out);

/* 0x1B temperatures in 0.1 degC, index enum bms_temp_sensor (internal, ext1, ext2);
 * present[i] false when the sensor reads -32768 (dc[i] is then 0). */
int tinybms_reply_temperatures(const struct tinybms_reply *r, int16_t dc[BMS_TEMP_SENSORS],
                               bool present[BMS_TEMP_SENSORS]);

struct tinybms_motion {
    float speed_kmh;
    uint32_t distance_left_km;
    uint32_t time_left_s;
};
/* 0x20 speed / distance / time left. */
int tinybms_reply_motion(const struct tinybms_reply *r, struct tinybms_motion *out);

struct tinybms_fw_version {
    uint8_t hw_version;
    uint8_t hw_changes;
    uint8_t fw_public;
    uint16_t fw_internal;
    bool extended;               /* 0x1F: the two fields below are valid */
    uint8_t bootloader_version;
    uint8_t register_map_version;
};
/* 0x1E version / 0x1F extended version. */
int tinybms_reply_version(const struct tinybms_reply *r, struct tinybms_fw_version *out);

/* 0x11 / 0x12 events: *bms_time_s = BTSP (the BMS's current lifetime seconds), events[0..max)
 * in frame order, *count stored.
 * @retval GW_ERR_OVERFLOW  more events than max (the first max are stored) */
int tinybms_reply_events(const struct tinybms_reply *r, uint32_t *bms_time_s,
                         struct bms_event *events, size_t max, size_t *count);

/* ---------------------------------------------------------------- register images */

struct tinybms_decode_opts {
    uint8_t battery_id;
    enum bms_cell_order cell_order;
};

/* Registers 0..55 (regs[i] = register i) into *out (every field; timestamps left 0 for the
 * caller). Cell count n = register 53, cells from registers 16-n..15 (a 14-cell pack uses
 * 2..15, as on real hardware); when register 53 is 0 or above 16 the cells are the span between
 * the lowest and highest non-zero register among 0..15. Empty (0) registers never count as
 * 0 V cells in min/max/spread. min/max_cell_mv from registers 40/41; min/max_cell_index from
 * the cells in user numbering (opts->cell_order). SOH valid only if <= 50000. Speed NaN/inf
 * reads as 0.
 * @retval GW_OK         out filled, out->valid = true
 * @retval GW_ERR_RANGE  pack voltage or current is NaN/inf: out filled for diagnosis but
 *                       out->valid = false (do not publish it)
 * @retval GW_ERR_INVAL  NULL argument or unknown cell order (out untouched) */
int tinybms_decode_live(const uint16_t regs[TINYBMS_REG_LIVE_COUNT],
                        const struct tinybms_decode_opts *opts, struct bms_live_data *out);

/* Registers 100..117 (regs[i] = register 100 + i). Sets out->valid. */
int tinybms_decode_statistics(const uint16_t regs[TINYBMS_REG_STATS_COUNT],
                              struct bms_statistics *out);

/* Registers 200..297 (regs[i] = register 200 + i): 49 slots, all-zero slots skipped, order kept.
 * Sets out->valid. */
int tinybms_decode_events(const uint16_t regs[TINYBMS_REG_EVENTS_COUNT],
                          struct bms_event_log *out);

/* Registers 500..509 (regs[i] = register 500 + i); serial = the six words 504..509 in register
 * order, each as 4 upper-case hex digits (high byte first). Sets out->valid. */
int tinybms_decode_version(const uint16_t regs[TINYBMS_REG_VERSION_COUNT],
                           struct bms_version *out);

/* Merges n raw words starting at first_reg into out->raw and marks them in present_mask.
 * Words outside 300..343 are ignored. Sets out->valid when at least one word was stored.
 * @retval GW_OK, GW_ERR_INVAL (NULL) */
int tinybms_decode_settings(const uint16_t *regs, uint16_t first_reg, size_t n,
                            struct bms_settings *out);

/* ---------------------------------------------------------------- events metadata */

enum tinybms_event_category {
    TINYBMS_EVENT_UNKNOWN = 0,
    TINYBMS_EVENT_FAULT = 1,     /* 0x01..0x30 */
    TINYBMS_EVENT_WARNING = 2,   /* 0x31..0x60 */
    TINYBMS_EVENT_INFO = 3,      /* 0x61..0x90 */
};

/* English description of an event id ("under-voltage cutoff"); "unknown event" for ids the
 * document does not list. Static string, never NULL. */
const char *tinybms_event_name(uint8_t id);

/* Category by id range. */
enum tinybms_event_category tinybms_event_category(uint8_t id);

/* "fault", "warning", "info", "unknown". Static string. */
const char *tinybms_event_category_name(enum tinybms_event_category c);

/* Name of a command byte ("read registers (MODBUS)"), "unknown command" otherwise. */
const char *tinybms_command_name(uint8_t cmd);

/* ---------------------------------------------------------------- settings metadata */

enum tinybms_setting_kind {
    TINYBMS_SETTING_U16 = 0,       /* plain unsigned word */
    TINYBMS_SETTING_INT16 = 1,     /* signed word (319, 320) */
    TINYBMS_SETTING_U32_LOW = 2,   /* 312: low word of the u32 312-313 */
    TINYBMS_SETTING_U32_HIGH = 3,  /* 313: high word */
    TINYBMS_SETTING_LOW_BYTE = 4,  /* value in the low byte, high byte must be 0 (332) */
    TINYBMS_SETTING_FLAGS = 5,     /* bit field (329): allowed_mask = writable bits */
    TINYBMS_SETTING_ENUM = 6,      /* low byte one of allowed_mask's bits, high byte 0 */
    TINYBMS_SETTING_BYTE_PAIR = 7, /* 330: low byte enum (allowed_mask), high byte min..max */
};

#define TINYBMS_SETTING_NEWER_FW 0x01        /* exists only on newer firmware (rev D) */
#define TINYBMS_SETTING_FFFF_ACCEPTED 0x02   /* reads 0xFFFF once a written value was accepted */

struct tinybms_setting_info {
    uint16_t reg;
    const char *key;         /* machine name, e.g. "over_voltage_cutoff_mv" */
    const char *name;        /* English label */
    const char *unit;        /* "mV", "A", "0.01 Ah", "" ... */
    int32_t min, max;        /* documented range of the value (low byte / high byte of pairs:
                                see kind); u32 pair: range of the whole u32 */
    enum tinybms_setting_kind kind;
    uint32_t allowed_mask;   /* ENUM / BYTE_PAIR low byte: bit v set = value v allowed;
                                FLAGS: writable bits */
    uint8_t flags;           /* TINYBMS_SETTING_* */
};

/* Metadata of a documented setting register (300..343), NULL for undocumented ones. */
const struct tinybms_setting_info *tinybms_setting_info(uint16_t reg);

/* Number of entries of the table and indexed access (ascending register order; NULL past end). */
size_t tinybms_setting_count(void);
const struct tinybms_setting_info *tinybms_setting_at(size_t index);

/* True when reg is flagged TINYBMS_SETTING_FFFF_ACCEPTED and value == 0xFFFF: show "accepted". */
bool tinybms_setting_reads_accepted(uint16_t reg, uint16_t value);

/* Checks a raw word about to be written to reg. Structure (byte fields, enum values, flag bits)
 * is always checked; the range check uses the BMS's own min/max read with 0x1D when given and
 * present for reg (they are the authority: the BMS adapts some to its current sensor), else the
 * documented range. For 312/313 only the word's share is checkable: use
 * tinybms_setting_validate_u32 for the pair.
 * @retval GW_OK
 * @retval GW_ERR_RANGE      reg outside 300..399, or value out of range / not allowed
 * @retval GW_ERR_NOT_FOUND  reg in 300..399 but not a documented setting */
int tinybms_setting_validate(uint16_t reg, uint16_t value, const struct bms_settings *bms_min,
                             const struct bms_settings *bms_max);

/* Checks the u32 pulses-per-unit pair 312-313 (1..100000, or the BMS's min/max when given).
 * @retval GW_OK, GW_ERR_RANGE */
int tinybms_setting_validate_u32(uint16_t reg_low, uint32_t value,
                                 const struct bms_settings *bms_min,
                                 const struct bms_settings *bms_max);

/* Decodes the pack's protection settings (registers 300..321) into named values: each one is
 * set only when its present_mask bit is set and the raw value is in the documented range of
 * tinybms_setting_info(); everything else stays has_* = false. settings may be NULL or invalid
 * (all false). out must not be NULL. Pure. */
void tinybms_pack_limits_decode(const struct bms_settings *settings, struct bms_pack_limits *out);

/* ---------------------------------------------------------------- frame tap */

/* One human-readable line for a frame (request when is_request, else reply), e.g.
 * "read regs 0..55 (MODBUS)", "ACK 0x10", "NACK 0x03: CRC error", "reply 0x03: 56 registers",
 * "bad CRC", "truncated frame (3 bytes)". Always NUL-terminates when cap > 0 (truncating).
 * @retval >=0             characters written (without the NUL)
 * @retval GW_ERR_INVAL    NULL out or cap == 0 */
int tinybms_describe_frame(const uint8_t *buf, size_t len, bool is_request, char *out,
                           size_t cap);

#endif
