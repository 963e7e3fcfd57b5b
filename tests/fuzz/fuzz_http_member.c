/* fuzz_http_member.c — libFuzzer target: member put, grants and token bodies through a real
 * server socket (see fuzz_http.h). Byte 0 picks the route. */
#include "fuzz_http.h"

static const fuzz_route member_routes[] = {
    {"PUT", "/v1/members/fz", 0},
    {"POST", "/v1/members/fz/grants", 1},
    {"POST", "/v1/members/fz/tokens", 0},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fh_one_body(member_routes, 3, data, size);
}
