/* The replay driver of a fuzz target without a main of its own (fuzz.cmake): each file given on
 * the command line is run as it is, then in FUZZ_REPLAY_MUTATIONS deterministic variants (bytes
 * flipped, replaced, inserted, removed, the input cut and doubled) so that CTest exercises the
 * error paths of the parser on every run, with the sanitizers of the test build, under gcc too.
 * Options: --mutations=N per file (default 64). A failure aborts (the sanitizers' report, or the
 * target's FUZZ_ASSERT message), which fails the test. */
#include "fuzz_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT (1024 * 1024)

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static uint32_t rng = 0x9E3779B9u;

static uint32_t next(void)
{
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

/* One variant of base[0..len) into out (cap >= 2 * len + 16); returns its length. */
static size_t mutate(const uint8_t *base, size_t len, uint8_t *out, size_t cap, unsigned round)
{
    size_t n = len < cap ? len : cap;
    memcpy(out, base, n);
    switch (round % 6) {
    case 0: /* cut */
        return n ? next() % n : 0;
    case 1: /* a few bits flipped */
        for (unsigned k = 0; n && k < 1 + round % 4; k++)
            out[next() % n] ^= (uint8_t)(1u << (next() % 8));
        return n;
    case 2: { /* a byte replaced by an interesting one */
        static const uint8_t special[] = { 0, 0xFF, 0x7F, 0x80, '"', '\\', '{', '}', '[', ']', ':', ',', '\r', '\n',
                                           '%', '/', '.', '0', '9', '-', 'e', 0xC3, 0xA9, 0xF0 };
        for (unsigned k = 0; n && k < 1 + round % 3; k++)
            out[next() % n] = special[next() % sizeof special];
        return n;
    }
    case 3: { /* a run removed */
        if (n < 2)
            return n;
        size_t at = next() % n, cnt = 1 + next() % (n - at);
        memmove(out + at, out + at + cnt, n - at - cnt);
        return n - cnt;
    }
    case 4: { /* a run duplicated */
        if (!n || 2 * n > cap)
            return n;
        size_t at = next() % n, cnt = 1 + next() % (n - at);
        memmove(out + at + cnt, out + at, n - at);
        return n + cnt;
    }
    default: /* the whole input twice (streams, trailing data) */
        if (2 * n <= cap) {
            memcpy(out + n, base, n);
            return 2 * n;
        }
        return n;
    }
}

int main(int argc, char **argv)
{
    unsigned mutations = 64;
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    uint8_t *buf = malloc(MAX_INPUT), *var = malloc(2 * MAX_INPUT + 16);
    if (!buf || !var)
        return 1;
    int files = 0;
    unsigned long inputs = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--mutations=", 12) == 0) {
            mutations = (unsigned)strtoul(argv[i] + 12, NULL, 10);
            continue;
        }
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            fprintf(stderr, "%s: cannot open %s\n", argv[0], argv[i]);
            return 1;
        }
        size_t n = fread(buf, 1, MAX_INPUT, f);
        fclose(f);
        files++;
        LLVMFuzzerTestOneInput(buf, n);
        inputs++;
        for (unsigned r = 0; r < mutations; r++) {
            size_t m = mutate(buf, n, var, 2 * MAX_INPUT + 16, r);
            LLVMFuzzerTestOneInput(var, m);
            inputs++;
        }
    }
    /* The empty input, always. */
    LLVMFuzzerTestOneInput(buf, 0);
    inputs++;
    printf("%s: replayed %d corpus files, %lu inputs in all\n", argv[0], files, inputs);
    free(buf);
    free(var);
    return files > 0 ? 0 : 1;
}
