/* docs/can-frames.md carries the conversion table generated from victron_field_table(): this
 * test regenerates it and fails when the document is out of date.
 * To refresh the document: GW_PRINT_TABLE=1 ./test_victron_doc and paste the output between the
 * markers. */
#define _POSIX_C_SOURCE 200809L
#include "victron.h"

#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BEGIN_MARK "<!-- conversion-table:begin -->\n"
#define END_MARK "<!-- conversion-table:end -->"

static const char *type_name(const struct victron_field *f)
{
    switch (f->size) {
    case 1: return f->is_signed ? "sn8" : "un8";
    case 2: return f->is_signed ? "sn16" : "un16";
    case 4: return f->is_signed ? "sn32" : "un32";
    default: return "?";
    }
}

static void nan_text(const struct victron_field *f, char *buf, size_t cap)
{
    if (f->nan_policy == VICTRON_NAN_WITHHOLD)
        snprintf(buf, cap, "frame withheld");
    else if (f->nan_policy == VICTRON_NAN_TRUNCATE)
        snprintf(buf, cap, "DLC shortened to %u", (unsigned)f->byte_offset);
    else
        snprintf(buf, cap, "raw %.0f", f->nan_raw);
}

/* The markdown table, one row per field. */
static size_t render(char *out, size_t cap)
{
    size_t n = 0, len = 0;
    const struct victron_field *t = victron_field_table(&n);
    len += (size_t)snprintf(out + len, cap - len,
                            "| id | byte | field | type | resolution | raw = | out of range | NaN/inf |\n"
                            "|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n && len < cap; i++) {
        char nan[32], conv[64];
        nan_text(&t[i], nan, sizeof nan);
        const char *down = t[i].rounding == VICTRON_ROUND_DOWN ? ", rounded down" : "";
        if (t[i].offset != 0.0)
            snprintf(conv, sizeof conv, "%s x %g + %g%s", t[i].unit, t[i].factor, t[i].offset, down);
        else
            snprintf(conv, sizeof conv, "%s x %g%s", t[i].unit[0] ? t[i].unit : "value", t[i].factor, down);
        len += (size_t)snprintf(out + len, cap - len, "| 0x%03X | %u | %s | %s | %s | %s | %s %.0f..%.0f | %s |\n",
                                t[i].can_id, (unsigned)t[i].byte_offset, t[i].name, type_name(&t[i]),
                                t[i].resolution, conv, t[i].wraps ? "wraps modulo, from" : "saturates to",
                                t[i].raw_min, t[i].raw_max, nan);
    }
    return len;
}

static void test_doc_matches_table(void)
{
    static char table[16384];
    size_t len = render(table, sizeof table);
    CHECK(len < sizeof table - 1);
    if (getenv("GW_PRINT_TABLE")) {
        fputs(table, stdout);
        return;
    }
    const char *src = getenv("GW_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/can-frames.md", src ? src : ".");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f)
        return;
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    const char *begin = strstr(doc, BEGIN_MARK);
    const char *end = begin ? strstr(begin, END_MARK) : NULL;
    CHECK(begin && end);
    if (!begin || !end)
        return;
    begin += strlen(BEGIN_MARK);
    size_t doc_len = (size_t)(end - begin);
    CHECK_EQ_INT(doc_len, len);
    if (doc_len != len || memcmp(begin, table, len) != 0) {
        test_failures_++;
        fprintf(stderr, "docs/can-frames.md conversion table is out of date; expected:\n%s", table);
    }
}

TEST_MAIN(TEST_CASE(test_doc_matches_table))
