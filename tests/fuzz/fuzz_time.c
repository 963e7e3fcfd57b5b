/* fuzz_time.c — libFuzzer target: the date and instant parsers. Whatever parses must format
 * and parse back to the same value; nothing may crash or read past the text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "creditgate/time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 256) return 0;
    char text[257];
    memcpy(text, data, size);
    text[size] = '\0';
    cg_err err;
    int64_t at_us;
    if (cg_time_parse(text, 9 * 3600, &at_us, &err) == CG_OK) {
        char out[CG_RFC3339_TEXT_BYTES];
        int64_t again;
        cg_time_format(at_us, 9 * 3600, out, sizeof out);
        if (cg_time_parse(out, 0, &again, &err) != CG_OK || again != at_us) abort();
    }
    cg_date date;
    if (cg_date_parse(text, &date, &err) == CG_OK) {
        char out[CG_DATE_TEXT_BYTES];
        cg_date_format(date, out, sizeof out);
        if (strcmp(out, text)) abort();
        (void)cg_date_add(date, 1, 0, 0);
    }
    (void)cg_date_parse_or_instant(text, -5 * 3600, &date, &err);
    int32_t offset;
    (void)cg_utc_offset_parse(text, &offset, &err);
    return 0;
}
