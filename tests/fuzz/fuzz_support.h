/* Shared by the fuzz targets of tests/fuzz/ (docs/dev/README.md "Fuzzing").
 *
 * A target defines LLVMFuzzerTestOneInput() and, when it needs set-up (a scratch directory, a
 * service), LLVMFuzzerInitialize(). It is built twice by gw_add_fuzz() (fuzz.cmake): as a
 * libFuzzer binary with clang, and as a plain replay driver (fuzz_replay.c's main, any compiler)
 * that CTest runs over the corpus. Invariant violations abort() with a message, which both the
 * fuzzer and CTest report as a failure. */
#ifndef GW_FUZZ_SUPPORT_H
#define GW_FUZZ_SUPPORT_H

#include "gw_log.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_ASSERT(cond)                                                                        \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

/* A scratch directory for the whole run, removed at exit: under $GW_FUZZ_TMP, else /dev/shm
 * (configuration saves fsync: cheap on tmpfs), else $TMPDIR or /tmp. Returns its path (static
 * storage); aborts when none can be made. */
const char *fuzz_scratch_dir(const char *name);

/* Every input of a target would log its refusal: no logs, unless GW_FUZZ_VERBOSE is set (then
 * every level, to see what an input does). */
static inline void fuzz_quiet_logs(void)
{
    gw_log_set_level(getenv("GW_FUZZ_VERBOSE") ? GW_LOG_DEBUG : GW_LOG_NONE);
}

/* rm -r without following links. */
void fuzz_remove_tree(const char *dir);

/* Input cursor: structured inputs take their choices from the front of the data. */
struct fuzz_input {
    const uint8_t *data;
    size_t size;
};

/* The next byte (0 when the input is exhausted). */
static inline uint8_t fuzz_byte(struct fuzz_input *in)
{
    if (!in->size)
        return 0;
    in->size--;
    return *in->data++;
}

/* A NUL-terminated malloc'ed copy of data[0..size): caller frees. Aborts when out of memory. */
char *fuzz_strndup(const uint8_t *data, size_t size);

#endif
