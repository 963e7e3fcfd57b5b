/* test_fuzz_replay.c — replays every seed and every crasher found by the fuzzers
 * (tests/fuzz/corpus/<target>/, tests/fuzz/crashers/<target>/) through the same target code,
 * built with the normal compiler and sanitizers, so a fixed crash stays fixed. */
#include "testlib.h"
#include "fuzz/replay.h"

#define LLVMFuzzerTestOneInput fuzz_policy_one
#include "fuzz/fuzz_policy.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_quote_one
#include "fuzz/fuzz_quote.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_time_one
#include "fuzz/fuzz_time.c"
#undef LLVMFuzzerTestOneInput

static void test_policy_corpus_replays_clean(void **s) { (void)s; replay("policy", fuzz_policy_one); }
static void test_quote_corpus_replays_clean(void **s) { (void)s; replay("quote", fuzz_quote_one); }
static void test_time_corpus_replays_clean(void **s) { (void)s; replay("time", fuzz_time_one); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_corpus_replays_clean),
        cmocka_unit_test(test_quote_corpus_replays_clean),
        cmocka_unit_test(test_time_corpus_replays_clean),
    };
    int rc = cmocka_run_group_tests_name("fuzz_replay", tests, NULL, NULL);
    cg_engine_free(&quote_engine);
    cg_policy_set_free(&quote_set);
    return rc;
}
