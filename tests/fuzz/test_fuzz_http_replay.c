/* test_fuzz_http_replay.c — replays every seed and every crasher of the HTTP fuzz targets
 * (tests/fuzz/corpus/http_NAME and tests/fuzz/crashers/http_NAME) through the same target code against
 * one in-process server, built with the normal compiler and sanitizers, so a fixed crash stays
 * fixed. A target aborts on a 5xx, a cut answer or a hang. */
#include "testlib.h"
#include "fuzz/replay.h"

#define LLVMFuzzerTestOneInput fuzz_http_quote_one
#include "fuzz/fuzz_http_quote.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_http_charge_one
#include "fuzz/fuzz_http_charge.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_http_settle_one
#include "fuzz/fuzz_http_settle.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_http_member_one
#include "fuzz/fuzz_http_member.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_http_raw_one
#include "fuzz/fuzz_http_raw.c"
#undef LLVMFuzzerTestOneInput

static void test_http_quote_corpus_replays_clean(void **s) { (void)s; replay("http_quote", fuzz_http_quote_one); }
static void test_http_charge_corpus_replays_clean(void **s) { (void)s; replay("http_charge", fuzz_http_charge_one); }
static void test_http_settle_corpus_replays_clean(void **s) { (void)s; replay("http_settle", fuzz_http_settle_one); }
static void test_http_member_corpus_replays_clean(void **s) { (void)s; replay("http_member", fuzz_http_member_one); }
static void test_http_raw_corpus_replays_clean(void **s) { (void)s; replay("http_raw", fuzz_http_raw_one); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_quote_corpus_replays_clean),
        cmocka_unit_test(test_http_charge_corpus_replays_clean),
        cmocka_unit_test(test_http_settle_corpus_replays_clean),
        cmocka_unit_test(test_http_member_corpus_replays_clean),
        cmocka_unit_test(test_http_raw_corpus_replays_clean),
    };
    int rc = cmocka_run_group_tests_name("fuzz_http_replay", tests, NULL, NULL);
    if (fh_fd >= 0) close(fh_fd);
    cg_http_server_stop(fh_server);
    if (fh_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fh_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", fh_dir);
    }
    return rc;
}
