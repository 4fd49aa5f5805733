/* Fuzz target: the slcan (LAWICEL) receive side, what a USB CAN adapter sends us. The input is
 * the byte stream of the serial line: fed byte by byte to the incremental parser the transport
 * uses (can_slcan_parser_feed); every frame it reports must be valid and must encode back to the
 * line it came from (hex case and the optional Z1 timestamp aside). The whole input is also
 * given to the line parser at once, and to the "path@baud" argument parser.
 * Corpus: tests/fuzz/corpus/slcan (lines of the transport's tests, candump-style captures). */
#include "can_transport.h"
#include "can_transport_internal.h"
#include "fuzz_support.h"
#include "gw_error.h"

#include <ctype.h>
#include <string.h>

static bool same_line(const char *encoded, size_t enc_len, const char *line, size_t len)
{
    /* encoded ends with '\r'; the received line may carry a 4-digit timestamp after the data. */
    if (enc_len == 0 || encoded[enc_len - 1] != '\r')
        return false;
    enc_len--;
    if (len != enc_len && len != enc_len + 4)
        return false;
    for (size_t i = 0; i < enc_len; i++)
        if (toupper((unsigned char)encoded[i]) != toupper((unsigned char)line[i]))
            return false;
    return true;
}

static void check_frame(const struct can_frame_gw *f, const char *line, size_t len)
{
    FUZZ_ASSERT(can_frame_validate(f) == GW_OK);
    FUZZ_ASSERT(f->dlc <= 8);
    FUZZ_ASSERT(f->id <= (f->ext ? CAN_EXT_ID_MAX : CAN_STD_ID_MAX));
    char enc[CAN_SLCAN_LINE_MAX + 2];
    int n = can_slcan_encode(f, enc, sizeof enc);
    FUZZ_ASSERT(n > 0 && (size_t)n < sizeof enc);
    FUZZ_ASSERT(same_line(enc, (size_t)n, line, len));
    struct can_frame_gw back;
    FUZZ_ASSERT(can_slcan_parse_frame(enc, (size_t)n - 1, &back) == GW_OK);
    FUZZ_ASSERT(back.id == f->id && back.dlc == f->dlc && back.ext == f->ext && back.rtr == f->rtr);
    if (!f->rtr)
        FUZZ_ASSERT(memcmp(back.data, f->data, f->dlc) == 0);
}

static void fuzz_stream(const uint8_t *data, size_t size)
{
    struct can_slcan_parser p = { 0 };
    char line[CAN_SLCAN_LINE_MAX + 1];
    size_t len = 0;
    bool overlong = false;
    for (size_t i = 0; i < size; i++) {
        uint8_t b = data[i];
        struct can_frame_gw f;
        memset(&f, 0xA5, sizeof f);
        int ev = can_slcan_parser_feed(&p, b, &f);
        FUZZ_ASSERT(p.len <= CAN_SLCAN_LINE_MAX);
        switch (ev) {
        case CAN_SLCAN_NONE:
            FUZZ_ASSERT(b != '\r' && b != '\a');
            if (b != '\n') {
                if (len < CAN_SLCAN_LINE_MAX)
                    line[len++] = (char)b;
                else
                    overlong = true;
            }
            break;
        case CAN_SLCAN_ERROR:
            FUZZ_ASSERT(b == '\a');
            len = 0;
            overlong = false;
            break;
        case CAN_SLCAN_FRAME:
            FUZZ_ASSERT(b == '\r' && !overlong);
            check_frame(&f, line, len);
            len = 0;
            break;
        case CAN_SLCAN_OK:
            FUZZ_ASSERT(b == '\r' && len == 0 && !overlong);
            break;
        case CAN_SLCAN_TX_ACK:
            FUZZ_ASSERT(b == '\r' && len == 1 && (line[0] == 'z' || line[0] == 'Z'));
            len = 0;
            break;
        case CAN_SLCAN_IGNORED:
            FUZZ_ASSERT(b == '\r' && !overlong && len > 0);
            FUZZ_ASSERT(can_slcan_parse_frame(line, len, &f) != GW_OK);
            len = 0;
            break;
        case CAN_SLCAN_OVERLONG:
            FUZZ_ASSERT(b == '\r' && overlong);
            len = 0;
            overlong = false;
            break;
        default:
            FUZZ_ASSERT(!"unknown parser event");
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_stream(data, size);

    /* The line parser on the whole input (it takes a length, not a string). */
    struct can_frame_gw f;
    char *s = fuzz_strndup(data, size);
    if (can_slcan_parse_frame(s, size, &f) == GW_OK)
        check_frame(&f, s, size);

    /* "slcan:PATH[@BAUD]" as given on the command line or in can.interface. */
    char path[CAN_SPEC_MAX];
    uint32_t baud = 0;
    if (can_slcan__parse_arg(s, path, sizeof path, &baud) == GW_OK) {
        FUZZ_ASSERT(path[0] != '\0' && strlen(path) < sizeof path);
        FUZZ_ASSERT(baud > 0 && baud <= 100000000u);
    }
    (void)can_slcan__parse_arg(s, path, 4, &baud);
    free(s);
    return 0;
}
