/* test_agent.c — Agent 2.0: the default video model, prompts that ask for Carat Basic Video
 * (LTX 2.3) in English and Korean, and the conversation item that is always charged. */
#include "engine_fixture.h"

static cg_decision agent(const char *plan, const char *joined, const char *agent_model, const char *kind,
                         const char *model, const char *prompt) {
    cg_quote_input in = {.plan = plan, .billing = "monthly", .joined = joined, .model = model,
                         .agent_model = agent_model, .agent_kind = kind, .prompt = prompt, .at_us = at_text(NOW)};
    cg_decision d;
    cg_err err = {0};
    if (cg_engine_quote(&fixture_engine, &in, &d, &err)) fail_msg("agent quote: %s", err.msg);
    return d;
}

static const char *model_id(const cg_decision *d, int item) { return d->policy->models[d->items[item].model].id; }

static void test_agent_video_defaults_to_seedance_and_is_charged(void **s) {
    (void)s;
    cg_decision d = agent("pro", "2026-01-01", "standard", "video", NULL, "a cat surfing at sunset");
    assert_int_equal(d.item_count, 2);
    assert_string_equal(model_id(&d, 0), "seedance-2.0");
    assert_false(d.items[0].unlimited);
    assert_int_equal(d.items[0].agent_choice, CG_AGENT_DEFAULT);
    explain_contains(&d, 0, CG_LANG_EN, "default model Seedance 2.0");
    explain_contains(&d, 0, CG_LANG_EN, "Carat Video");
}

static void test_agent_prompt_asking_for_ltx_routes_to_carat_video(void **s) {
    (void)s;
    const char *prompts[] = {"Use Carat Basic Video (LTX 2.3)", "please use   CARAT basic VIDEO for this",
                             "make it with ltx 2.3", "LTX please", "캐럿 기본 비디오로 만들어줘",
                             "캐럿 베이직 비디오 사용"};
    for (int i = 0; i < 6; i++) {
        cg_decision d = agent("pro", "2026-01-01", "lite", "video", NULL, prompts[i]);
        if (strcmp(model_id(&d, 0), "carat-video-ltx")) fail_msg("prompt '%s' did not route", prompts[i]);
        assert_true(d.items[0].unlimited);
        assert_int_equal(d.items[0].agent_choice, CG_AGENT_PROMPT);
    }
}

static void test_agent_prompt_without_explicit_request_keeps_default(void **s) {
    (void)s;
    const char *prompts[] = {"a salty ocean video", "video of a basic cat", "vltx3 style", ""};
    for (int i = 0; i < 4; i++) {
        cg_decision d = agent("pro", "2026-01-01", "lite", "video", NULL, prompts[i]);
        if (strcmp(model_id(&d, 0), "seedance-2.0")) fail_msg("prompt '%s' routed away from default", prompts[i]);
    }
}

/* "Even when generating images with an unlimited model, the conversation itself with the AI
 * agent deducts credits separately." */
static void test_conversation_is_charged_even_when_generation_is_free(void **s) {
    (void)s;
    cg_decision d = agent("plus", "2026-01-01", "lite", "image", "Nanobanana", NULL);
    assert_true(d.items[0].unlimited);
    assert_int_equal(d.items[1].kind, CG_ITEM_CONVERSATION);
    assert_false(d.items[1].unlimited);
    assert_int_equal(d.items[1].reason, CG_REASON_CONVERSATION);
    assert_string_equal(model_id(&d, 1), "carat-1.0-lite");
    assert_int_equal(d.total_credits, d.items[1].credits);
    assert_true(d.total_credits > 0);
    explain_contains(&d, 1, CG_LANG_EN, "charged separately");
    explain_contains(&d, 1, CG_LANG_KO, "별도로 크레딧이 차감");
}

/* Carat 1.0 Lite (low) < Carat 1.0 (medium) < Carat 1.0 Soul (high). */
static void test_conversation_prices_lite_standard_soul(void **s) {
    (void)s;
    int64_t lite = agent("plus", "2026-01-01", "lite", "image", "Nanobanana", NULL).items[1].credits;
    int64_t standard = agent("plus", "2026-01-01", "standard", "image", "Nanobanana", NULL).items[1].credits;
    int64_t soul = agent("plus", "2026-01-01", "soul", "image", "Nanobanana", NULL).items[1].credits;
    assert_true(lite > 0 && lite < standard && standard < soul);
}

static void test_agent_named_model_wins_over_prompt(void **s) {
    (void)s;
    cg_decision d = agent("pro", "2026-01-01", "lite", "video", "Kling", "use carat basic video");
    assert_string_equal(model_id(&d, 0), "kling");
    assert_int_equal(d.items[0].agent_choice, CG_AGENT_NONE);
}

static void expect_agent_error(const char *agent_model, const char *kind, const char *model, const char *field) {
    cg_quote_input in = {.plan = "pro", .billing = "monthly", .joined = "2026-01-01", .model = model,
                         .agent_model = agent_model, .agent_kind = kind, .at_us = at_text(NOW)};
    cg_decision d;
    cg_err err = {0};
    assert_int_not_equal(cg_engine_quote(&fixture_engine, &in, &d, &err), CG_OK);
    assert_string_equal(err.field, field);
}

static void test_agent_input_errors(void **s) {
    (void)s;
    expect_agent_error("ultra", "video", NULL, "agent.model");
    expect_agent_error("lite", "audio", NULL, "agent.kind");
    expect_agent_error("lite", NULL, NULL, "agent.kind");
    expect_agent_error("lite", "image", NULL, "model");          /* no default image model */
    expect_agent_error("lite", "video", "Nanobanana", "agent.kind"); /* an image model for a video */
    expect_agent_error(NULL, "video", "Kling", "agent.model");   /* kind without the agent */
    expect_agent_error(NULL, NULL, "carat-1.0", "model");        /* conversation model as a generation */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_video_defaults_to_seedance_and_is_charged),
        cmocka_unit_test(test_agent_prompt_asking_for_ltx_routes_to_carat_video),
        cmocka_unit_test(test_agent_prompt_without_explicit_request_keeps_default),
        cmocka_unit_test(test_conversation_is_charged_even_when_generation_is_free),
        cmocka_unit_test(test_conversation_prices_lite_standard_soul),
        cmocka_unit_test(test_agent_named_model_wins_over_prompt),
        cmocka_unit_test(test_agent_input_errors),
    };
    return cmocka_run_group_tests_name("engine_agent", tests, fixture_setup, fixture_teardown);
}
