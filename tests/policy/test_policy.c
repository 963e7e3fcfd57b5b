/* test_policy.c — the policy file: the bundled one loads, and every kind of mistake an
 * operator makes is refused with file:line:col and what is wrong. Each case edits one spot
 * of the bundled file, so the rest stays valid. */
#include "testlib.h"
#include "creditgate/engine.h"
#include "creditgate/policy.h"

static char *bundled;

static int read_bundled(void **state) {
    (void)state;
    FILE *f = fopen(CG_TEST_POLICY, "rb");
    if (!f) return -1;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    bundled = buf;
    return 0;
}

/* The bundled text with the first `find` replaced by `replace`. */
static char *mutate(const char *find, const char *replace) {
    const char *at = strstr(bundled, find);
    if (!at) fail_msg("'%s' is not in the bundled policy", find);
    size_t head = (size_t)(at - bundled), total = strlen(bundled) - strlen(find) + strlen(replace);
    char *out = malloc(total + 1);
    memcpy(out, bundled, head);
    strcpy(out + head, replace);
    strcat(out, at + strlen(find));
    return out;
}

static void expect_error(const char *find, const char *replace, const char *where, const char *what) {
    char *text = mutate(find, replace);
    cg_policy *p = NULL;
    cg_err err = {0};
    int rc = cg_policy_load_string(text, "carat.yaml", &p, &err);
    free(text);
    if (rc == CG_OK) {
        cg_policy_free(p);
        fail_msg("mutation '%s' -> '%s' was accepted", find, replace);
    }
    assert_null(p);
    if (!strstr(err.msg, where) || !strstr(err.msg, what))
        fail_msg("error \"%s\" lacks \"%s\" or \"%s\"", err.msg, where, what);
}

static void test_bundled_policy_loads(void **s) {
    (void)s;
    cg_policy *p = NULL;
    cg_err err = {0};
    assert_cg_ok(cg_policy_load_file(CG_TEST_POLICY, &p, &err), err);
    assert_string_equal(p->version, "carat-2026-11");
    assert_int_equal(p->utc_offset_s, 9 * 3600);
    assert_int_equal(p->plan_count, 6);
    assert_int_equal(p->hold_ttl_s, 900);
    const char *ids[] = {"nanobanana", "nanobanana-pro", "nanobanana-2", "z-image", "gpt-image-1.5",
                         "seedream-4.0", "flux2-pro", "gpt-image-2.0", "grok-imagine", "midjourney",
                         "carat-video-ltx", "seedance-2.0", "sora", "sora-2", "veo", "veo-3", "kling",
                         "lip-sync", "carat-1.0-lite", "carat-1.0", "carat-1.0-soul"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (cg_policy_model_find_id(p, ids[i]) < 0) fail_msg("catalog lacks %s", ids[i]);
    assert_int_equal(p->model_count, (int)(sizeof ids / sizeof ids[0]));
    int max = cg_policy_plan_find(p, "max"), premium = cg_policy_plan_find(p, "premium");
    assert_int_equal(p->plans[max].inherits, premium);
    assert_false(p->plans[cg_policy_plan_find(p, "free")].paid);
    cg_policy_free(p);
}

static void test_syntax_error_names_line(void **s) {
    (void)s;
    expect_error("billing: [monthly, annual]", "billing: [monthly, annual", "carat.yaml:33:3", "did not find expected");
}

static void test_unknown_keys_are_refused(void **s) {
    (void)s;
    expect_error("hold_ttl_s: 900", "hold_ttl_s: 900\nholdttl: 5", "carat.yaml:19:1", "unknown key 'holdttl' in policy");
    expect_error("    plans: [plus, pro]\n", "    plans: [plus, pro]\n    plan: [plus]\n", "carat.yaml:118:5",
                 "unknown key 'plan' in benefit");
    expect_error("{id: z-image, name: Z Image,", "{id: z-image, nmae: Z Image,", "carat.yaml:", "unknown key 'nmae' in model");
}

static void test_unknown_plan_model_variant_billing_are_refused(void **s) {
    (void)s;
    expect_error("    plans: [plus, pro]\n", "    plans: [plus, premuim]\n", "carat.yaml:117:19", "unknown plan 'premuim'");
    expect_error("    covers: [z-image]", "    covers: [z-imag]", "carat.yaml:123:14", "unknown model 'z-imag'");
    expect_error("variants: [1k, 2k]}]", "variants: [1k, 8k]}]", "carat.yaml:", "model 'nanobanana-pro' has no variant '8k'");
    expect_error("    billing: [annual]\n    joined: {from: 2026-05-22}", "    billing: [yearly]\n    joined: {from: 2026-05-22}",
                 "carat.yaml:", "unknown billing 'yearly'");
    expect_error("default_video_model: seedance-2.0", "default_video_model: nanobanana", "carat.yaml:", "is not a video model");
}

static void test_bad_values_are_refused(void **s) {
    (void)s;
    expect_error("joined: {from: 2025-11-21, to: 2025-11-30}", "joined: {from: 2025-11-30, to: 2025-11-21}",
                 "carat.yaml:", "joined window is empty");
    expect_error("joined: {from: 2025-12-17}", "joined: {from: 2025-02-30}", "carat.yaml:", "has no day 30");
    expect_error("duration: 1 year", "duration: 1 fortnight", "carat.yaml:", "duration unit");
    expect_error("credits: 4 ", "credits: -4 ", "carat.yaml:", "credits must be between");
    expect_error("effective_at: 2025-11-01T00:00:00+09:00", "effective_at: 2025-11-01", "carat.yaml:", "RFC 3339");
    expect_error("utc_offset: \"+09:00\"", "utc_offset: \"+9\"", "carat.yaml:", "UTC offset");
    expect_error("kind: video\n    credits: 40", "kind: movie\n    credits: 40", "carat.yaml:", "kind must be image, video or conversation");
}

static void test_duplicates_are_refused(void **s) {
    (void)s;
    /* Two benefits making Grok Imagine free for Plus on any billing and date. */
    expect_error("  - id: carat-video-pro-business\n", "  - id: grok-again\n    covers: [grok-imagine]\n    plans: [plus]\n"
                 "  - id: carat-video-pro-business\n", "carat.yaml:", "overlaps benefit 'grok-imagine'");
    expect_error("id: nanobanana-plus-pro-dec-2025", "id: grok-imagine", "carat.yaml:", "benefit 'grok-imagine' is defined twice");
    expect_error("{id: sora, name: Sora,", "{id: veo, name: Sora,", "carat.yaml:", "model 'veo' is defined twice");
    /* An alias that would make "Nanobanana 2" resolve to the base model. */
    expect_error("aliases: [Nano banana 2,", "aliases: [Nanobanana,", "carat.yaml:", "already a name of model 'nanobanana'");
    expect_error("{id: plus, name: Plus,", "{id: premium, name: Plus,", "carat.yaml:", "plan 'premium' is defined twice");
}

static void test_plan_inheritance_cycle_is_refused(void **s) {
    (void)s;
    expect_error("{id: premium, name: Premium, name_ko: 프리미엄, paid: true}",
                 "{id: premium, name: Premium, name_ko: 프리미엄, paid: true, inherits: max}", "carat.yaml:", "cycle");
}

static void test_missing_required_key_is_refused(void **s) {
    (void)s;
    expect_error("version: carat-2026-11\n", "", "carat.yaml:", "missing required key 'version'");
    expect_error("    covers: [z-image]\n", "", "carat.yaml:", "missing required key 'covers'");
}

static const char *second_version(const char *version, const char *effective) {
    static char buf[1 << 16];
    char find_v[] = "version: carat-2026-11", find_e[] = "effective_at: 2025-11-01T00:00:00+09:00";
    char *v = mutate(find_v, version);
    const char *saved = bundled;
    bundled = v;
    char *e = mutate(find_e, effective);
    bundled = (char *)saved;
    snprintf(buf, sizeof buf, "%s", e);
    free(v);
    free(e);
    return buf;
}

/* Rules change over time: a decision at T uses the version in force at T and names it. */
static void test_versions_decide_by_instant(void **s) {
    (void)s;
    cg_policy_set set;
    cg_policy_set_init(&set);
    cg_err err = {0};
    assert_cg_ok(cg_policy_set_load_file(&set, CG_TEST_POLICY, &err), err);
    /* Version 2 from 2027-01-01: Grok Imagine costs 60 and is no longer unlimited for Plus. */
    const char *v2 = second_version("version: carat-2027-01", "effective_at: 2027-01-01T00:00:00+09:00");
    char *text = strdup(v2);
    char *grok = strstr(text, "    plans: [plus, premium, max, pro]");
    assert_non_null(grok);
    memcpy(grok, "    plans: [premium, max, pro]      ", strlen("    plans: [premium, max, pro]      "));
    cg_policy *p2 = NULL;
    assert_cg_ok(cg_policy_load_string(text, "v2.yaml", &p2, &err), err);
    free(text);
    assert_cg_ok(cg_policy_set_add_take(&set, p2, &err), err);
    cg_engine engine;
    assert_cg_ok(cg_engine_init(&engine, &set, &err), err);
    cg_quote_input in = {.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = "grok-imagine"};
    cg_decision d;
    assert_cg_ok(cg_time_parse("2026-12-31T23:59:59+09:00", 0, &in.at_us, &err), err);
    assert_cg_ok(cg_engine_quote(&engine, &in, &d, &err), err);
    assert_string_equal(d.policy->version, "carat-2026-11");
    assert_true(d.items[0].unlimited);
    assert_cg_ok(cg_time_parse("2027-01-01T00:00:00+09:00", 0, &in.at_us, &err), err);
    assert_cg_ok(cg_engine_quote(&engine, &in, &d, &err), err);
    assert_string_equal(d.policy->version, "carat-2027-01");
    assert_false(d.items[0].unlimited);
    /* The same version twice is refused. */
    cg_policy *dup = NULL;
    assert_cg_ok(cg_policy_load_file(CG_TEST_POLICY, &dup, &err), err);
    assert_int_equal(cg_policy_set_add_take(&set, dup, &err), CG_EINVAL);
    assert_non_null(strstr(err.msg, "already loaded"));
    cg_engine_free(&engine);
    cg_policy_set_free(&set);
}

/* libfyaml 0.7.12 loops forever on "%" followed by an invalid UTF-8 byte (found by
 * tests/fuzz/fuzz_policy); such text is refused before it reaches the parser. */
static void test_invalid_utf8_and_control_characters_are_refused(void **s) {
    (void)s;
    expect_error("timezone: Asia/Seoul", "timezone: Asia/Seoul\n%\xdf", "carat.yaml:17:2", "invalid UTF-8 byte 0xDF");
    expect_error("timezone: Asia/Seoul", "timezone: Asia/\x01Seoul", "carat.yaml:16:16", "control character 0x01");
    expect_error("name: Nanobanana\n", "name: Nano\xed\xa0\x80" "banana\n", "carat.yaml:", "invalid UTF-8"); /* surrogate */
    expect_error("name: Nanobanana\n", "name: Nano\xc0\xaf" "banana\n", "carat.yaml:", "invalid UTF-8"); /* overlong */
}

static void test_missing_file_is_an_io_error(void **s) {
    (void)s;
    cg_policy *p = NULL;
    cg_err err = {0};
    assert_int_equal(cg_policy_load_file("policy/does-not-exist.yaml", &p, &err), CG_EIO);
    assert_non_null(strstr(err.msg, "does-not-exist.yaml"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bundled_policy_loads),
        cmocka_unit_test(test_syntax_error_names_line),
        cmocka_unit_test(test_unknown_keys_are_refused),
        cmocka_unit_test(test_unknown_plan_model_variant_billing_are_refused),
        cmocka_unit_test(test_bad_values_are_refused),
        cmocka_unit_test(test_duplicates_are_refused),
        cmocka_unit_test(test_plan_inheritance_cycle_is_refused),
        cmocka_unit_test(test_missing_required_key_is_refused),
        cmocka_unit_test(test_versions_decide_by_instant),
        cmocka_unit_test(test_invalid_utf8_and_control_characters_are_refused),
        cmocka_unit_test(test_missing_file_is_an_io_error),
    };
    return cmocka_run_group_tests_name("policy", tests, read_bundled, NULL);
}
