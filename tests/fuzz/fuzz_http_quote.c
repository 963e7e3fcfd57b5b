/* fuzz_http_quote.c — libFuzzer target: POST /v1/quote bodies through a real server socket
 * (see fuzz_http.h). The input after the first byte is the JSON body. */
#include "fuzz_http.h"

static const fuzz_route quote_routes[] = {{"POST", "/v1/quote", 0}};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fh_one_body(quote_routes, 1, data, size);
}
