/* Fuzz target for the TinyBMS codec: arbitrary bytes into the streaming decoder (in chunks whose
 * sizes come from the input), every payload helper on what it decodes, the request decoder, the
 * frame describer, and the register-image decoders. Invariant violations trap.
 *
 * Built two ways (tests/fuzz/fuzz.cmake):
 *  - with clang -fsanitize=fuzzer: a libFuzzer binary (GW_FUZZ_LIBFUZZER defined);
 *  - otherwise: a plain replay driver (main below) that runs the corpus files given on the command
 *    line plus a few thousand deterministic mutations of valid frames, as a CTest. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinybms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz_tinybms: invariant failed: %s (line %d)\n", #cond,      \
                    __LINE__);                                                             \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static void exercise_reply(const struct tinybms_reply *r)
{
    uint16_t regs[TINYBMS_MAX_PAYLOAD], addrs[64], values[64];
    size_t count = 0;
    float f;
    uint16_t u16;
    uint32_t u32;
    int16_t dc[BMS_TEMP_SENSORS];
    bool present[BMS_TEMP_SENSORS];
    struct tinybms_motion motion;
    struct tinybms_fw_version ver;
    struct bms_event events[BMS_EVENT_SLOTS];
    uint8_t echo_count;

    FUZZ_ASSERT(r->payload_len <= TINYBMS_MAX_PAYLOAD);
    FUZZ_ASSERT(r->frame_len <= TINYBMS_MAX_FRAME);
    (void)tinybms_reply_registers(r, regs, sizeof regs / sizeof regs[0], &count);
    FUZZ_ASSERT(count <= sizeof regs / sizeof regs[0]);
    (void)tinybms_reply_registers(r, regs, 3, &count);
    FUZZ_ASSERT(count <= 3);
    (void)tinybms_reply_individual(r, addrs, values, 64, &count);
    (void)tinybms_reply_write_echo(r, &u16, &echo_count);
    (void)tinybms_reply_float(r, &f);
    (void)tinybms_reply_u16(r, &u16);
    (void)tinybms_reply_u32(r, &u32);
    (void)tinybms_reply_temperatures(r, dc, present);
    (void)tinybms_reply_motion(r, &motion);
    (void)tinybms_reply_version(r, &ver);
    (void)tinybms_reply_events(r, &u32, events, BMS_EVENT_SLOTS, &count);
    FUZZ_ASSERT(count <= BMS_EVENT_SLOTS);
}

static void fuzz_stream(const uint8_t *data, size_t size)
{
    struct tinybms_decoder dec;
    tinybms_decoder_init(&dec);
    uint32_t seed = size ? data[0] : 0;
    size_t pos = 0, frame_bytes = 0;
    while (pos < size) {
        seed = seed * 1103515245u + 12345u;
        size_t chunk = 1 + (seed >> 16) % 97;
        if (chunk > size - pos)
            chunk = size - pos;
        const uint8_t *p = data + pos;
        size_t n = chunk;
        for (unsigned guard = 0;; guard++) {
            FUZZ_ASSERT(guard < 4 * TINYBMS_MAX_FRAME + 2 * chunk + 8); /* always progresses */
            size_t used = 0;
            struct tinybms_reply r;
            int rc = tinybms_decoder_feed(&dec, p, n, &used, &r);
            FUZZ_ASSERT(used <= n);
            FUZZ_ASSERT(dec.len <= TINYBMS_MAX_FRAME);
            p += used;
            n -= used;
            if (rc == 1) {
                frame_bytes += r.frame_len;
                exercise_reply(&r);
                char line[128];
                (void)tinybms_describe_frame(p - used, used, false, line, sizeof line);
            } else if (rc == 0) {
                FUZZ_ASSERT(n == 0);
                break;
            } else {
                FUZZ_ASSERT(rc == GW_ERR_CRC || rc == GW_ERR_PROTO);
            }
        }
        pos += chunk;
    }
    /* Idle line: give up on whatever is buffered and drain it. */
    while (tinybms_decoder_resync(&dec)) {
        for (;;) {
            size_t used;
            struct tinybms_reply r;
            int rc = tinybms_decoder_feed(&dec, NULL, 0, &used, &r);
            FUZZ_ASSERT(used == 0);
            if (rc == 1) {
                frame_bytes += r.frame_len;
                exercise_reply(&r);
            }
            if (rc == 0)
                break;
        }
    }
    FUZZ_ASSERT(dec.len == 0);
    /* Every input byte is accounted for exactly once: in a frame or as garbage. */
    FUZZ_ASSERT(frame_bytes + dec.garbage_bytes == size);
    FUZZ_ASSERT(dec.frames * (size_t)TINYBMS_ACK_LEN <= frame_bytes);
}

static void fuzz_pure_decoders(const uint8_t *data, size_t size)
{
    struct tinybms_reply r;
    int rc = tinybms_decode(data, size, &r);
    FUZZ_ASSERT(rc <= (int)size);
    if (rc > 0)
        exercise_reply(&r);
    struct tinybms_request q;
    rc = tinybms_decode_request(data, size, &q);
    FUZZ_ASSERT(rc <= (int)size);
    if (rc > 0)
        FUZZ_ASSERT(q.count <= TINYBMS_MODBUS_READ_MAX);
    char line[64];
    int n = tinybms_describe_frame(data, size, true, line, sizeof line);
    FUZZ_ASSERT(n >= 0 && (size_t)n < sizeof line && strlen(line) == (size_t)n);
    n = tinybms_describe_frame(data, size, false, line, 7);
    FUZZ_ASSERT(n >= 0 && n < 7);
}

static void fuzz_register_images(const uint8_t *data, size_t size)
{
    uint16_t regs[TINYBMS_REG_EVENTS_COUNT];
    memset(regs, 0, sizeof regs);
    for (size_t i = 0; i < TINYBMS_REG_EVENTS_COUNT && 2 * i + 1 < size; i++)
        regs[i] = (uint16_t)(data[2 * i] | data[2 * i + 1] << 8);

    for (int order = 0; order < 2; order++) {
        struct tinybms_decode_opts opts = { 1, (enum bms_cell_order)order };
        struct bms_live_data live;
        int rc = tinybms_decode_live(regs, &opts, &live);
        FUZZ_ASSERT(rc == GW_OK || rc == GW_ERR_RANGE);
        FUZZ_ASSERT(live.cell_count <= BMS_MAX_CELLS);
        FUZZ_ASSERT(live.min_cell_index <= live.cell_count);
        FUZZ_ASSERT(live.max_cell_index <= live.cell_count);
        if (live.min_cell_index)
            FUZZ_ASSERT(live.cell_mv_x10[live.min_cell_index - 1] != 0);
    }
    struct bms_statistics stats;
    FUZZ_ASSERT(tinybms_decode_statistics(regs, &stats) == GW_OK);
    struct bms_event_log log;
    FUZZ_ASSERT(tinybms_decode_events(regs, &log) == GW_OK);
    FUZZ_ASSERT(log.count <= BMS_EVENT_SLOTS);
    struct bms_version ver;
    FUZZ_ASSERT(tinybms_decode_version(regs, &ver) == GW_OK);
    FUZZ_ASSERT(strlen(ver.serial) == 24);
    struct bms_settings settings;
    memset(&settings, 0, sizeof settings);
    uint16_t first = size >= 2 ? (uint16_t)(280 + data[1] % 80) : 300;
    FUZZ_ASSERT(tinybms_decode_settings(regs, first, 60, &settings) == GW_OK);
    for (size_t i = 0; i < 16; i++) {
        uint16_t reg = (uint16_t)(290 + (regs[i] % 120));
        int rc = tinybms_setting_validate(reg, regs[i + 16], &settings, &settings);
        FUZZ_ASSERT(rc == GW_OK || rc == GW_ERR_RANGE || rc == GW_ERR_NOT_FOUND);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_stream(data, size);
    fuzz_pure_decoders(data, size);
    fuzz_register_images(data, size);
    return 0;
}

#ifndef GW_FUZZ_LIBFUZZER
/* ---------------------------------------------------------------- plain replay driver */

#define MAX_INPUT (64 * 1024)

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_tinybms: cannot open %s\n", path);
        return -1;
    }
    static uint8_t buf[MAX_INPUT];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

/* Valid frames of every kind, concatenated, as the base for mutations. */
static size_t seed_stream(uint8_t *out, size_t cap)
{
    size_t len = 0;
    uint8_t frame[TINYBMS_MAX_FRAME];
    static const uint8_t replies[][16] = {
        { 0xAA, 0x03, 0x0A, 0x97, 0x40, 0x97, 0x40, 0x97, 0x2C, 0x97, 0x2C, 0x97, 0x2C, 0x3E, 0xC7 },
        { 0xAA, 0x1B, 0x06, 0x16, 0x01, 0x14, 0x01, 0x16, 0x01, 0x0E, 0x4E },
        { 0xAA, 0x10, 0x01, 0x3B, 0x00, 0x02, 0x28, 0x22 },
    };
    static const size_t reply_len[] = { 15, 11, 8 };
    for (size_t i = 0; i < 3 && len + reply_len[i] <= cap; i++) {
        memcpy(out + len, replies[i], reply_len[i]);
        len += reply_len[i];
    }
    /* ACK, NACK and a 56-register read built with the codec's CRC. */
    const uint8_t heads[][4] = { { 0xAA, 0x01, 0x0D, 0 }, { 0xAA, 0x00, 0x03, 0x01 } };
    for (size_t h = 0; h < 2; h++) {
        size_t fl = h ? 4 : 3;
        memcpy(frame, heads[h], fl);
        uint16_t crc = tinybms_crc16(frame, fl);
        frame[fl] = (uint8_t)crc;
        frame[fl + 1] = (uint8_t)(crc >> 8);
        if (len + fl + 2 <= cap) {
            memcpy(out + len, frame, fl + 2);
            len += fl + 2;
        }
    }
    frame[0] = 0xAA;
    frame[1] = 0x03;
    frame[2] = 112;
    for (int i = 0; i < 112; i++)
        frame[3 + i] = (uint8_t)(i * 37);
    uint16_t crc = tinybms_crc16(frame, 115);
    frame[115] = (uint8_t)crc;
    frame[116] = (uint8_t)(crc >> 8);
    if (len + 117 <= cap) {
        memcpy(out + len, frame, 117);
        len += 117;
    }
    /* Every request the encoders produce. */
    uint8_t req[TINYBMS_MAX_REQUEST];
    int n = tinybms_encode_read_modbus(req, sizeof req, 0, 56);
    if (n > 0 && len + (size_t)n <= cap) {
        memcpy(out + len, req, (size_t)n);
        len += (size_t)n;
    }
    return len;
}

int main(int argc, char **argv)
{
    int files = 0;
    for (int i = 1; i < argc; i++) {
        if (replay_file(argv[i]) != 0)
            return 1;
        files++;
    }
    static uint8_t base[1024], input[1024];
    size_t base_len = seed_stream(base, sizeof base);
    uint32_t seed = 0x12345678u;
    const int rounds = 3000;
    for (int round = 0; round < rounds; round++) {
        memcpy(input, base, base_len);
        size_t len = base_len;
        int flips = round % 8;
        for (int k = 0; k < flips; k++) {
            seed = seed * 1664525u + 1013904223u;
            size_t at = (seed >> 8) % len;
            seed = seed * 1664525u + 1013904223u;
            input[at] = (uint8_t)(seed >> 24);
        }
        seed = seed * 1664525u + 1013904223u;
        if (round % 3 == 0)
            len = (seed >> 8) % (len + 1); /* truncate */
        LLVMFuzzerTestOneInput(input, len);
        /* Pure random bytes too. */
        for (size_t i = 0; i < 300; i++) {
            seed = seed * 1664525u + 1013904223u;
            input[i] = (uint8_t)(seed >> 24);
            if (round % 4 == 0 && i % 7 == 0)
                input[i] = 0xAA; /* many sync bytes */
        }
        LLVMFuzzerTestOneInput(input, 300);
    }
    printf("fuzz_tinybms: replayed %d corpus files and %d generated inputs\n", files,
           2 * rounds);
    return 0;
}
#endif
