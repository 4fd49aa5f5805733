/* Benchmark of the TinyBMS codec: streaming-decoder throughput on an 8 MB stream of mixed valid
 * and corrupt frames (fed in 64-byte and 4 KiB chunks), against a baseline of plain CRC-16 over
 * the same bytes measured in the same run; and ns per tinybms_decode_live. Median of 5 runs.
 * Prints figures only, never fails on speed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tinybms.h"
#include "bench_util.h"

#define STREAM_BYTES (8u * 1024u * 1024u)
#define RUNS 5
#define LIVE_ITERS 200000

static size_t put_frame(uint8_t *out, const uint8_t *head, size_t head_len, const uint8_t *payload,
                        size_t n)
{
    memcpy(out, head, head_len);
    memcpy(out + head_len, payload, n);
    uint16_t crc = tinybms_crc16(out, head_len + n);
    out[head_len + n] = (uint8_t)crc;
    out[head_len + n + 1] = (uint8_t)(crc >> 8);
    return head_len + n + 2;
}

/* Mix per 16 frames: 10 live reads (0x03, 56 registers), 2 ACKs, 2 temperature answers,
 * 1 live read with a bad CRC, 1 burst of garbage. Returns the stream length; *valid_frames gets
 * the number of frames a correct decoder must find. */
static size_t build_stream(uint8_t *s, size_t cap, unsigned *valid_frames)
{
    uint8_t live[112], temps[6] = { 0x16, 0x01, 0x14, 0x01, 0x00, 0x80 };
    for (int i = 0; i < 112; i++)
        live[i] = (uint8_t)(i * 29 + 3);
    const uint8_t h03[] = { 0xAA, 0x03, 112 }, h1b[] = { 0xAA, 0x1B, 6 }, hack[] = { 0xAA, 0x01 };
    const uint8_t ack_cmd = 0x10;
    size_t len = 0;
    unsigned frames = 0;
    uint32_t seed = 7;
    for (unsigned k = 0; len + 600 < cap; k++) {
        unsigned slot = k % 16;
        if (slot < 10) {
            live[0] = (uint8_t)k; /* vary the payload */
            len += put_frame(s + len, h03, 3, live, 112);
            frames++;
        } else if (slot < 12) {
            len += put_frame(s + len, hack, 2, &ack_cmd, 1);
            frames++;
        } else if (slot < 14) {
            len += put_frame(s + len, h1b, 3, temps, 6);
            frames++;
        } else if (slot == 14) {
            size_t n = put_frame(s + len, h03, 3, live, 112);
            s[len + 50] ^= 0x5A; /* corrupt */
            len += n;
        } else {
            for (int g = 0; g < 23; g++) {
                seed = seed * 1664525u + 1013904223u;
                uint8_t b = (uint8_t)(seed >> 24);
                s[len++] = b == 0xAA ? 0x55 : b;
            }
        }
    }
    *valid_frames = frames;
    return len;
}

static unsigned decode_all(const uint8_t *s, size_t len, size_t chunk, uint32_t *crc_errors)
{
    static struct tinybms_decoder dec;
    struct tinybms_reply r;
    tinybms_decoder_init(&dec);
    unsigned frames = 0;
    for (size_t pos = 0; pos < len; pos += chunk) {
        size_t n = len - pos < chunk ? len - pos : chunk;
        const uint8_t *p = s + pos;
        for (;;) {
            size_t used;
            int rc = tinybms_decoder_feed(&dec, p, n, &used, &r);
            p += used;
            n -= used;
            if (rc == 1)
                frames++;
            else if (rc == 0)
                break;
        }
    }
    *crc_errors = dec.crc_errors;
    return frames;
}

static void bench_stream(const uint8_t *s, size_t len, unsigned expected, size_t chunk,
                         double baseline_mbs)
{
    double mbs[RUNS];
    unsigned frames = 0;
    uint32_t crc_errors = 0;
    for (int run = 0; run < RUNS; run++) {
        double t0 = bench_now_s();
        frames = decode_all(s, len, chunk, &crc_errors);
        double dt = bench_now_s() - t0;
        mbs[run] = (double)len / 1e6 / dt;
    }
    double m = bench_median(mbs, RUNS);
    printf("decoder, %5zu-byte chunks: %8.1f MB/s  (%.2fx CRC-only baseline; %u/%u frames, "
           "%u bad CRC)\n",
           chunk, m, m / baseline_mbs, frames, expected, (unsigned)crc_errors);
    if (frames != expected)
        printf("WARNING: decoder found %u frames, expected %u\n", frames, expected);
}

int main(void)
{
    uint8_t *stream = malloc(STREAM_BYTES);
    if (!stream) {
        fprintf(stderr, "bench_tinybms: out of memory\n");
        return 1;
    }
    unsigned expected = 0;
    size_t len = build_stream(stream, STREAM_BYTES, &expected);
    printf("bench_tinybms: %.1f MB stream, %u valid frames, bench_median of %d runs\n",
           (double)len / 1e6, expected, RUNS);

    /* Baseline: CRC-16 over every byte once, the floor of any validating decoder. */
    double base[RUNS];
    volatile uint16_t sink = 0;
    for (int run = 0; run < RUNS; run++) {
        double t0 = bench_now_s();
        sink = (uint16_t)(sink ^ tinybms_crc16(stream, len));
        base[run] = (double)len / 1e6 / (bench_now_s() - t0);
    }
    double base_mbs = bench_median(base, RUNS);
    printf("baseline CRC-16 only:      %8.1f MB/s\n", base_mbs);
    bench_stream(stream, len, expected, 64, base_mbs);
    bench_stream(stream, len, expected, 4096, base_mbs);

    /* decode_live on a 14-cell image. */
    uint16_t regs[TINYBMS_REG_LIVE_COUNT] = { 0 };
    for (int r = 2; r <= 15; r++)
        regs[r] = (uint16_t)(33000 + r * 7);
    regs[36] = 0x23D7;
    regs[37] = 0x425F;
    regs[45] = 48000;
    regs[53] = 14;
    struct tinybms_decode_opts opts = { 0, BMS_CELL_ORDER_REVERSED };
    struct bms_live_data d;
    double ns[RUNS];
    volatile uint32_t acc = 0;
    for (int run = 0; run < RUNS; run++) {
        double t0 = bench_now_s();
        for (int i = 0; i < LIVE_ITERS; i++) {
            regs[2] = (uint16_t)(33000 + (i & 63)); /* defeat hoisting */
            tinybms_decode_live(regs, &opts, &d);
            acc += d.min_cell_index;
        }
        ns[run] = (bench_now_s() - t0) * 1e9 / LIVE_ITERS;
    }
    printf("decode_live (14 cells):    %8.1f ns per call\n", bench_median(ns, RUNS));
    (void)sink;
    (void)acc;
    free(stream);
    return 0;
}
