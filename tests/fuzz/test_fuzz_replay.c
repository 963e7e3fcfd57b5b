/* test_fuzz_replay.c — replays every seed and every crasher found by the fuzzers
 * (tests/fuzz/corpus/<target>/, tests/fuzz/crashers/<target>/) through the same target code,
 * built with the normal compiler and sanitizers, so a fixed crash stays fixed. */
#include "testlib.h"

#include <dirent.h>

#define LLVMFuzzerTestOneInput fuzz_policy_one
#include "fuzz/fuzz_policy.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_quote_one
#include "fuzz/fuzz_quote.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_time_one
#include "fuzz/fuzz_time.c"
#undef LLVMFuzzerTestOneInput

typedef int (*fuzz_fn)(const uint8_t *, size_t);

static int replay_dir(const char *dir, fuzz_fn fn) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int files = 0;
    struct dirent *e;
    static uint8_t buf[1 << 17];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        fn(buf, n);
        files++;
    }
    closedir(d);
    return files;
}

static void replay(const char *target, fuzz_fn fn) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", target);
    int seeds = replay_dir(dir, fn);
    snprintf(dir, sizeof dir, "tests/fuzz/crashers/%s", target);
    int crashers = replay_dir(dir, fn);
    if (seeds == 0) fail_msg("no seed corpus for %s", target);
    printf("  %s: %d seeds, %d crashers replayed\n", target, seeds, crashers);
}

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
