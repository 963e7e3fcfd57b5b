/* fuzz_http_body.c — libFuzzer target: the quote body scanner (src/http/body_fast.c) against
 * jansson on every input, with the widest and the narrowest limits; any disagreement aborts.
 * The check itself lives beside its unit test, tests/http/test_http_body.c. */
#define CG_BODY_FUZZ 1
#include "../http/test_http_body.c"
