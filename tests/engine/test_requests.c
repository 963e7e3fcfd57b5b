/* test_requests.c — names ("Nanobanana 2" is not "Nanobanana"), suggestions, every input
 * error with the field it names, explanations in both languages, and active benefits. */
#include "engine_fixture.h"

static int resolve(const char *name, int *variant) {
    int model = -1;
    cg_err err;
    if (cg_engine_resolve_model(fixture_set.versions[0], name, &model, variant, &err)) return -1;
    return model;
}

static const char *resolved_id(const char *name) {
    int variant;
    int m = resolve(name, &variant);
    return m < 0 ? "(none)" : fixture_set.versions[0]->models[m].id;
}

static void test_similar_names_never_collapse(void **s) {
    (void)s;
    assert_string_equal(resolved_id("Nanobanana 2"), "nanobanana-2");
    assert_string_equal(resolved_id("nanobanana2"), "nanobanana-2");
    assert_string_equal(resolved_id("NANOBANANA"), "nanobanana");
    assert_string_equal(resolved_id("Nanobanana (base)"), "nanobanana");
    assert_string_equal(resolved_id("Nanobanana Pro"), "nanobanana-pro");
    assert_string_equal(resolved_id("nanobanana-pro"), "nanobanana-pro");
    assert_string_equal(resolved_id("Sora"), "sora");
    assert_string_equal(resolved_id("Sora 2"), "sora-2");
    assert_string_equal(resolved_id("Veo"), "veo");
    assert_string_equal(resolved_id("Veo3"), "veo-3");
    assert_string_equal(resolved_id("Carat Video (LTX model)"), "(none)");
    assert_string_equal(resolved_id("Carat Video (LTX)"), "carat-video-ltx");
    assert_string_equal(resolved_id("Nanobanana 3"), "(none)");
}

static void test_name_with_variant_suffix(void **s) {
    (void)s;
    int variant;
    int m = resolve("Nanobanana Pro 4K", &variant);
    assert_true(m >= 0);
    assert_string_equal(fixture_set.versions[0]->models[m].variants[variant].id, "4k");
    m = resolve("Nanobanana 2 1K", &variant);
    assert_string_equal(fixture_set.versions[0]->models[m].id, "nanobanana-2");
    assert_string_equal(fixture_set.versions[0]->models[m].variants[variant].id, "1k");
    m = resolve("Nanobanana 1K", &variant); /* the base model has no variants */
    assert_int_equal(m, -1);
}

static void test_unknown_name_suggests_close_names(void **s) {
    (void)s;
    int model, variant;
    cg_err err = {0};
    assert_int_equal(cg_engine_resolve_model(fixture_set.versions[0], "nanobananna pro", &model, &variant, &err),
                     CG_ENOTFOUND);
    assert_string_equal(err.field, "model");
    assert_true(err.suggestion_count >= 1 && err.suggestion_count <= 3);
    assert_string_equal(err.suggestions[0], "Nanobanana Pro");
    cg_err_clear(&err);
    assert_int_equal(cg_engine_resolve_model(fixture_set.versions[0], "qqqqqqqqqqqqqq", &model, &variant, &err),
                     CG_ENOTFOUND);
    assert_int_equal(err.suggestion_count, 0);
}

typedef struct bad_case {
    cg_quote_input in;
    const char *field;
} bad_case;

static void test_every_input_error_names_its_field(void **s) {
    (void)s;
    int64_t now = at_text(NOW);
    const bad_case cases[] = {
        {{.plan = "premuim", .billing = "monthly", .joined = "2026-01-01", .model = "grok", .at_us = now}, "plan"},
        {{.plan = NULL, .billing = "monthly", .joined = "2026-01-01", .model = "grok", .at_us = now}, "plan"},
        {{.plan = "plus", .billing = "weekly", .joined = "2026-01-01", .model = "grok", .at_us = now}, "billing"},
        {{.plan = "plus", .billing = "monthly", .joined = "2026-02-30", .model = "grok", .at_us = now}, "joined"},
        {{.plan = "plus", .billing = "monthly", .joined = "yesterday", .model = "grok", .at_us = now}, "joined"},
        {{.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = "grok 9", .at_us = now}, "model"},
        {{.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = NULL, .at_us = now}, "model"},
        {{.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = "Nanobanana Pro", .at_us = now}, "variant"},
        {{.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = "Nanobanana Pro", .variant = "8k", .at_us = now}, "variant"},
        {{.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = "Nanobanana Pro 4K", .variant = "1k", .at_us = now}, "variant"},
        {{.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = "grok", .variant = "1k", .at_us = now}, "variant"},
        {{.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = "grok", .count = -1, .at_us = now}, "count"},
        {{.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = "grok", .count = CG_COUNT_MAX + 1, .at_us = now}, "count"},
        {{.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = "grok", .at_us = 0}, "at"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cg_decision d;
        cg_err err = {0};
        int rc = cg_engine_quote(&fixture_engine, &cases[i].in, &d, &err);
        if (rc == CG_OK) fail_msg("case %zu was accepted", i);
        if (strcmp(err.field, cases[i].field)) fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field, cases[i].field, err.msg);
        assert_true(strlen(err.msg) > 10);
    }
}

static void test_explanations_in_english_and_korean(void **s) {
    (void)s;
    cg_decision d = decide_at("plus", "monthly", "2026-01-03", "Nanobanana Pro", "1k", NOW);
    explain_contains(&d, 0, CG_LANG_EN,
                     "Nanobanana Pro 1K/2K is unlimited only for members who joined 2025-11-21 to 2025-11-30; this member joined 2026-01-03");
    explain_contains(&d, 0, CG_LANG_KO, "2025-11-21~2025-11-30 가입");
    explain_contains(&d, 0, CG_LANG_KO, "2026-01-03에 가입했습니다");
    d = decide_at("plus", "monthly", "2026-03-01", "Seedream 4.0", NULL, NOW);
    explain_contains(&d, 0, CG_LANG_EN, "this member is on the Plus plan");
    explain_contains(&d, 0, CG_LANG_KO, "플러스 플랜입니다");
    d = decide_at("premium", "monthly", "2026-03-01", "Carat Video", NULL, NOW);
    explain_contains(&d, 0, CG_LANG_KO, "무제한: 2026-02-25 이후 가입 프리미엄");
    explain_contains(&d, 0, CG_LANG_KO, "(2027-03-01까지)");
    d = decide_at("free", "monthly", "2026-03-01", "Z Image", NULL, NOW);
    explain_contains(&d, 0, CG_LANG_EN, "unlimited benefits are for paid plans");
}

static void test_decision_names_the_policy_version(void **s) {
    (void)s;
    cg_decision d = decide_at("plus", "monthly", "2026-01-03", "Grok", NULL, NOW);
    assert_string_equal(d.policy->version, "carat-2026-11");
    assert_int_equal(d.at_us, at_text(NOW));
}

static int active(const char *plan, const char *billing, const char *joined, const char *at,
                  cg_active_benefit *list, const cg_policy **p) {
    cg_member member;
    int count = 0;
    cg_err err = {0};
    int rc = cg_engine_active_benefits(&fixture_engine, plan, billing, joined, 0, at_text(at), p, &member, list,
                                       CG_BENEFITS_LIST_MAX, &count, &err);
    if (rc) fail_msg("active benefits: %s", err.msg);
    return count;
}

static bool has_active(const cg_policy *p, const cg_active_benefit *list, int count, const char *model,
                       const char *variant, int64_t *expires) {
    for (int i = 0; i < count; i++) {
        const cg_model *m = &p->models[list[i].model];
        if (strcmp(m->id, model)) continue;
        if (variant && (list[i].variant < 0 || strcmp(m->variants[list[i].variant].id, variant))) continue;
        if (expires) *expires = list[i].expires_at_us;
        return true;
    }
    return false;
}

static void test_active_benefits_list(void **s) {
    (void)s;
    cg_active_benefit list[CG_BENEFITS_LIST_MAX];
    const cg_policy *p;
    int n = active("plus", "monthly", "2025-11-25", NOW, list, &p);
    assert_true(has_active(p, list, n, "nanobanana-pro", "1k", NULL));
    assert_true(has_active(p, list, n, "nanobanana-pro", "2k", NULL));
    assert_false(has_active(p, list, n, "nanobanana-pro", "4k", NULL));
    assert_false(has_active(p, list, n, "nanobanana", NULL, NULL)); /* joined before Dec 2025 */
    assert_true(has_active(p, list, n, "grok-imagine", NULL, NULL));
    int64_t expires = 0;
    n = active("premium", "monthly", "2026-03-01", NOW, list, &p);
    assert_true(has_active(p, list, n, "carat-video-ltx", NULL, &expires));
    assert_int_equal(expires, at_text("2027-03-01T00:00:00+09:00"));
    assert_true(has_active(p, list, n, "gpt-image-2.0", "low", &expires));
    assert_int_equal(expires, CG_NO_END);
    assert_false(has_active(p, list, n, "gpt-image-2.0", "medium", NULL));
    n = active("premium", "monthly", "2026-03-01", "2027-03-01T00:00:00+09:00", list, &p);
    assert_false(has_active(p, list, n, "carat-video-ltx", NULL, NULL));
    assert_int_equal(active("max", "annual", "2026-05-21", NOW, list, &p), 0);
    assert_int_equal(active("free", "monthly", "2026-01-01", NOW, list, &p), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_similar_names_never_collapse),
        cmocka_unit_test(test_name_with_variant_suffix),
        cmocka_unit_test(test_unknown_name_suggests_close_names),
        cmocka_unit_test(test_every_input_error_names_its_field),
        cmocka_unit_test(test_explanations_in_english_and_korean),
        cmocka_unit_test(test_decision_names_the_policy_version),
        cmocka_unit_test(test_active_benefits_list),
    };
    return cmocka_run_group_tests_name("engine_requests", tests, fixture_setup, fixture_teardown);
}
