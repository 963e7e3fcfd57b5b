/* test_json.c — the two renderers of a decision (jansson tree for the CLI, direct writer for
 * POST /v1/quote) must give equal documents: a varied mix of requests in both languages,
 * text that needs escaping, and a buffer too small to hold the answer. */
#include "engine_fixture.h"
#include "creditgate/engine_json.h"

static void assert_same_document(const cg_decision *d, cg_lang lang) {
    char buf[CG_DECISION_JSON_BYTES_MAX];
    size_t n = cg_decision_write_json(d, lang, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(strlen(buf), n);
    json_error_t jerr;
    json_t *written = json_loads(buf, 0, &jerr);
    if (!written) fail_msg("writer produced invalid JSON (%s): %s", jerr.text, buf);
    json_t *built = cg_decision_to_json(d, lang);
    if (!json_equal(written, built)) {
        char *b = json_dumps(built, JSON_COMPACT);
        fail_msg("documents differ:\n  writer: %s\n  jansson: %s", buf, b);
    }
    json_decref(written);
    json_decref(built);
}

static void test_writer_matches_jansson_on_a_varied_mix(void **s) {
    (void)s;
    const cg_policy *p = fixture_set.versions[0];
    static const char *agents[] = {NULL, "lite", "standard", "soul"};
    static const char *joined[] = {"2025-11-21", "2025-11-30", "2025-12-17", "2026-02-25", "2026-03-01", "2026-05-22", "2024-01-01"};
    static const char *ats[] = {"2026-11-25T12:00:00+09:00", "2027-03-01T00:00:00+09:00", "2026-01-01T00:00:00.25Z"};
    int checked = 0;
    for (int pl = 0; pl < p->plan_count; pl++)
        for (int b = 0; b < p->billing_count; b++)
            for (int m = 0; m < p->model_count; m++) {
                const cg_model *model = &p->models[m];
                if (model->kind == CG_KIND_CONVERSATION) continue;
                int variants = model->variant_count ? model->variant_count : 1;
                for (int v = 0; v < variants; v++) {
                    int k = checked;
                    cg_quote_input in = {.plan = p->plans[pl].id, .billing = p->billings[b], .joined = joined[k % 7],
                                         .model = model->id, .variant = model->variant_count ? model->variants[v].id : NULL,
                                         .count = 1 + k % 3, .at_us = at_text(ats[k % 3]), .agent_model = agents[k % 4],
                                         .agent_kind = agents[k % 4] ? cg_model_kind_name(model->kind) : NULL};
                    cg_decision d;
                    cg_err err = {0};
                    assert_cg_ok(cg_engine_quote(&fixture_engine, &in, &d, &err), err);
                    assert_same_document(&d, CG_LANG_EN);
                    assert_same_document(&d, CG_LANG_KO);
                    checked++;
                }
            }
    assert_int_equal(checked, 6 * 2 * 23); /* plans x billing x (model, variant) pairs */
}

static void test_writer_escapes_quotes_backslashes_and_controls(void **s) {
    (void)s;
    static const char policy[] =
        "version: \"v\\\"1\\\\\"\neffective_at: 2025-01-01T00:00:00Z\ntimezone: UTC\nutc_offset: Z\n"
        "plans: [{id: a, name: A, paid: true}]\nbilling: [m]\n"
        "models: [{id: x, name: \"X \\\"quoted\\\"\", kind: image, credits: 2,\n"
        "          note: {en: \"tab\\there, back\\\\slash \\\"q\\\" \\u001f end\", ko: \"한국어 \\\"따옴표\\\"\"}}]\n"
        "benefits: [{id: b, covers: [x], plans: [a], joined: {from: 2030-01-01}}]\n";
    cg_policy *pol = NULL;
    cg_err err = {0};
    /* This policy has no benefit covering x before 2030: charged with the model's note. */
    assert_cg_ok(cg_policy_load_string(policy, "escape.yaml", &pol, &err), err);
    cg_policy_set set;
    cg_policy_set_init(&set);
    assert_cg_ok(cg_policy_set_add_take(&set, pol, &err), err);
    cg_engine engine;
    assert_cg_ok(cg_engine_init(&engine, &set, &err), err);
    cg_quote_input in = {.plan = "a", .billing = "m", .joined = "2026-01-01", .model = "x", .at_us = at_text(NOW)};
    cg_decision d;
    assert_cg_ok(cg_engine_quote(&engine, &in, &d, &err), err);
    assert_same_document(&d, CG_LANG_EN);
    assert_same_document(&d, CG_LANG_KO);
    char small[64];
    assert_int_equal(cg_decision_write_json(&d, CG_LANG_EN, small, sizeof small), 0);
    cg_engine_free(&engine);
    cg_policy_set_free(&set);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_matches_jansson_on_a_varied_mix),
        cmocka_unit_test(test_writer_escapes_quotes_backslashes_and_controls),
    };
    return cmocka_run_group_tests_name("engine_json", tests, fixture_setup, fixture_teardown);
}
