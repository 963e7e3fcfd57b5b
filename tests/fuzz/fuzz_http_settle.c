/* fuzz_http_settle.c — libFuzzer target: capture, release and refund bodies of a real held
 * charge through a real server socket (see fuzz_http.h). Byte 0 picks the route. */
#include "fuzz_http.h"

static const fuzz_route settle_routes[] = {
    {"POST", "/v1/charges/%s/capture", 0},
    {"POST", "/v1/charges/%s/release", 0},
    {"POST", "/v1/charges/%s/refund", 1},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fh_one_body(settle_routes, 3, data, size);
}
