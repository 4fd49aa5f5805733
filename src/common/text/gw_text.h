/* One bounded text builder and one bounded copy (portable core: no stdio, no allocation, no
 * locale), used by every module that writes text into a fixed buffer.
 *
 * The builder is a cursor over a caller-owned buffer whose capacity is fixed when it is created
 * (gw_text_init), as curl's dynbuf has its maximum size, without growth:
 * - every put appends what fits; the text is NUL-terminated after every call;
 * - the first put that does not fit whole writes what fits and sets the truncation flag, which
 *   stays set: later puts append nothing, so a truncated text never ends with a piece that
 *   looks complete (a closing ")" after a cut message);
 * - a cut never splits a UTF-8 sequence ("°C" is kept whole or dropped whole).
 * Numbers are written in the C locale: digits, '-', '.'.
 *   put_fixed: value rounded half away from zero to `decimals` places (0..9). One rule for
 *     signs: a value that rounds to zero is written without a sign ("0.0", never "-0.0").
 *     Not a number is written "nan"; an infinite value, or a finite one of magnitude 1e18 or
 *     more (no quantity of this gateway comes near), is written "inf" or "-inf".
 *   put_hex: upper-case digits, no "0x", zero-padded to min_digits (at most 16).
 * Not thread-safe: one builder belongs to one caller at a time. */
#ifndef GW_TEXT_H
#define GW_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_text {
    char *buf;       /* caller's buffer, not owned */
    size_t cap;      /* bytes of buf, including the NUL */
    size_t len;      /* characters written, < cap */
    bool truncated;  /* a put did not fit (sticky) */
};

/* Starts an empty text in buf[0..cap) and writes its NUL. buf is borrowed for the builder's
 * life. buf NULL or cap 0: nothing is ever written and the builder reports GW_ERR_INVAL. */
void gw_text_init(struct gw_text *t, char *buf, size_t cap);

/* Appends a string (NULL appends nothing). */
void gw_text_put_str(struct gw_text *t, const char *s);

/* Appends at most n bytes of s, stopping at a NUL: for fixed-size fields that may lack their
 * terminator. */
void gw_text_put_strn(struct gw_text *t, const char *s, size_t n);

/* Appends one character ('\0' appends nothing). */
void gw_text_put_char(struct gw_text *t, char c);

/* Appends a decimal integer. */
void gw_text_put_uint(struct gw_text *t, uint64_t v);
void gw_text_put_int(struct gw_text *t, int64_t v);

/* Appends value with `decimals` fixed decimals (0..9; more are treated as 9), see above. */
void gw_text_put_fixed(struct gw_text *t, double value, unsigned decimals);

/* Appends v in upper-case hexadecimal, at least min_digits digits (0..16). */
void gw_text_put_hex(struct gw_text *t, uint64_t v, unsigned min_digits);

/* The text so far (always terminated; "" for a builder without buffer). */
const char *gw_text_str(const struct gw_text *t);

/* Characters written so far (without the NUL). */
size_t gw_text_len(const struct gw_text *t);

/* True once a put did not fit. */
bool gw_text_truncated(const struct gw_text *t);

/* @retval GW_OK           everything fitted
 * @retval GW_ERR_OVERFLOW a put was cut (the text holds what fitted)
 * @retval GW_ERR_INVAL    no buffer (NULL or capacity 0) */
int gw_text_status(const struct gw_text *t);

/* Copies src (NULL = "") into dst[0..cap), always NUL-terminated, cut on a UTF-8 boundary.
 * @retval GW_OK, GW_ERR_OVERFLOW (truncated), GW_ERR_INVAL (dst NULL or cap 0: nothing written) */
int gw_text_copy(char *dst, size_t cap, const char *src);

/* The same for a source of at most src_max bytes that may lack its NUL (a fixed-size field). */
int gw_text_copyn(char *dst, size_t cap, const char *src, size_t src_max);

#endif
