/* Helpers shared by the fuzz targets (fuzz_support.h). */
#define _GNU_SOURCE
#include "fuzz_support.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[256];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void fuzz_remove_tree(const char *dir)
{
    if (dir && dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_scratch(void)
{
    fuzz_remove_tree(scratch);
}

const char *fuzz_scratch_dir(const char *name)
{
    if (scratch[0])
        return scratch;
    const char *base = getenv("GW_FUZZ_TMP");
    struct stat st;
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NULL;
    if (!base)
        base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    int n = snprintf(scratch, sizeof scratch, "%s/%s-XXXXXX", base, name);
    if (n < 0 || (size_t)n >= sizeof scratch || !mkdtemp(scratch)) {
        fprintf(stderr, "%s: cannot make a scratch directory under %s\n", name, base);
        abort();
    }
    atexit(remove_scratch);
    return scratch;
}

char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}
