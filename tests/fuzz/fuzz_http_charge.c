/* fuzz_http_charge.c — libFuzzer target: POST /v1/charges bodies through a real server socket
 * (see fuzz_http.h): member_id, model, variant, count, at, agent.{model,kind,prompt}. */
#include "fuzz_http.h"

static const fuzz_route charge_routes[] = {{"POST", "/v1/charges", 0}};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fh_one_body(charge_routes, 1, data, size);
}
