/* test_rules.c — every row of the help page's tables, each with an eligible member and a
 * just-ineligible one (boundary days on both sides, the Seoul midnight, the 1-year end, a
 * Feb 29 join). Expectations are read from the page, not from the policy file. */
#include "engine_fixture.h"

/* Nanobanana (base): "Plus / Pro members who joined on or after Dec 2025". */
static void test_nanobanana_base_plus_pro_from_dec_2025(void **s) {
    (void)s;
    assert_free(decide_at("plus", "monthly", "2025-12-01", "Nanobanana", NULL, NOW), "nanobanana-plus-pro-dec-2025");
    assert_free(decide_at("pro", "annual", "2026-01-01", "nanobanana", NULL, NOW), "nanobanana-plus-pro-dec-2025");
    assert_charged(decide_at("plus", "monthly", "2025-11-30", "Nanobanana", NULL, NOW), CG_REASON_NOT_ELIGIBLE);
    assert_charged(decide_at("premium", "monthly", "2026-01-01", "Nanobanana", NULL, NOW), CG_REASON_NOT_ELIGIBLE);
    /* Max receives Premium's benefits, and Premium is not listed for Nanobanana. */
    assert_charged(decide_at("max", "monthly", "2026-06-01", "Nanobanana", NULL, NOW), CG_REASON_NOT_ELIGIBLE);
    assert_charged(decide_at("free", "monthly", "2026-01-01", "Nanobanana", NULL, NOW), CG_REASON_NOT_ELIGIBLE);
}

/* Nanobanana Pro (1K, 2K): "Members who joined between Nov 21–30, 2025". */
static void test_nanobanana_pro_window_nov_21_30(void **s) {
    (void)s;
    const char *b = "nanobanana-pro-nov-21-30-2025";
    assert_free(decide_at("plus", "monthly", "2025-11-21", "Nanobanana Pro", "1k", NOW), b);
    assert_free(decide_at("plus", "monthly", "2025-11-30", "Nanobanana Pro", "2k", NOW), b);
    assert_free(decide_at("business", "annual", "2025-11-25", "nanobanana-pro", "2K", NOW), b);
    assert_charged(decide_at("plus", "monthly", "2025-11-20", "Nanobanana Pro", "1k", NOW), CG_REASON_NOT_ELIGIBLE);
    assert_charged(decide_at("plus", "monthly", "2025-12-01", "Nanobanana Pro", "1k", NOW), CG_REASON_NOT_ELIGIBLE);
    /* "Members who joined ..." names no plan: every paid plan, never free. */
    assert_charged(decide_at("free", "monthly", "2025-11-25", "Nanobanana Pro", "1k", NOW), CG_REASON_NOT_ELIGIBLE);
}

/* Signup dates are Seoul calendar dates: 2025-11-20T15:00Z is 2025-11-21 00:00 in Seoul. */
static void test_joined_instant_is_converted_to_seoul_date(void **s) {
    (void)s;
    assert_free(decide_at("plus", "monthly", "2025-11-20T15:00:00Z", "Nanobanana Pro", "1k", NOW),
                "nanobanana-pro-nov-21-30-2025");
    assert_charged(decide_at("plus", "monthly", "2025-11-20T14:59:59Z", "Nanobanana Pro", "1k", NOW),
                   CG_REASON_NOT_ELIGIBLE);
    assert_charged(decide_at("plus", "monthly", "2025-11-30T15:00:00Z", "Nanobanana Pro", "1k", NOW),
                   CG_REASON_NOT_ELIGIBLE);
    assert_free(decide_at("plus", "monthly", "2025-11-30T23:59:59+09:00", "Nanobanana Pro", "1k", NOW),
                "nanobanana-pro-nov-21-30-2025");
}

/* Nanobanana Pro 4K: "4K resolution is paid for all members". */
static void test_nanobanana_pro_4k_is_charged_for_everyone(void **s) {
    (void)s;
    cg_decision d = decide_at("plus", "monthly", "2025-11-25", "Nanobanana Pro", "4k", NOW);
    assert_charged(d, CG_REASON_VARIANT_NOT_COVERED);
    explain_contains(&d, 0, CG_LANG_EN, "4K resolution is paid for all members");
    assert_charged(decide_at("pro", "annual", "2025-11-25", "Nanobanana Pro 4K", NULL, NOW), CG_REASON_VARIANT_NOT_COVERED);
}

/* Z Image: "Members who joined on or after Dec 17, 2025". */
static void test_z_image_from_dec_17_2025(void **s) {
    (void)s;
    assert_free(decide_at("premium", "monthly", "2025-12-17", "Z Image", NULL, NOW), "z-image-dec-17-2025");
    assert_free(decide_at("business", "annual", "2026-04-01", "z-image", NULL, NOW), "z-image-dec-17-2025");
    assert_charged(decide_at("premium", "monthly", "2025-12-16", "Z Image", NULL, NOW), CG_REASON_NOT_ELIGIBLE);
    assert_charged(decide_at("free", "monthly", "2026-01-01", "Z Image", NULL, NOW), CG_REASON_NOT_ELIGIBLE);
}

/* ChatGPT Image 1.5, Seedream 4.0, Flux2 Pro: "Premium / Pro members who joined on or after
 * Feb 25, 2026"; Max gets what Premium gets. */
static void test_premium_pro_images_from_feb_25_2026(void **s) {
    (void)s;
    const char *models[] = {"ChatGPT Image 1.5", "Seedream 4.0", "Flux2 Pro"};
    const char *b = "premium-pro-images-feb-25-2026";
    for (int i = 0; i < 3; i++) {
        assert_free(decide_at("premium", "monthly", "2026-02-25", models[i], NULL, NOW), b);
        assert_free(decide_at("pro", "annual", "2026-02-25", models[i], NULL, NOW), b);
        assert_free(decide_at("max", "monthly", "2026-03-01", models[i], NULL, NOW), b);
        assert_charged(decide_at("premium", "monthly", "2026-02-24", models[i], NULL, NOW), CG_REASON_NOT_ELIGIBLE);
        assert_charged(decide_at("plus", "monthly", "2026-03-01", models[i], NULL, NOW), CG_REASON_NOT_ELIGIBLE);
        assert_charged(decide_at("business", "monthly", "2026-03-01", models[i], NULL, NOW), CG_REASON_NOT_ELIGIBLE);
    }
}

/* ChatGPT Image 2.0 Low: "Premium / Max / Pro members (monthly or annual)". */
static void test_gpt_image_2_low_premium_max_pro(void **s) {
    (void)s;
    assert_free(decide_at("premium", "monthly", "2024-01-01", "ChatGPT Image 2.0", "low", NOW), "gpt-image-2-low");
    assert_free(decide_at("max", "monthly", "2024-01-01", "gpt-image-2.0", "low", NOW), "gpt-image-2-low");
    assert_free(decide_at("pro", "annual", "2024-01-01", "ChatGPT Image 2.0 Low", NULL, NOW), "gpt-image-2-low");
    assert_charged(decide_at("plus", "monthly", "2026-01-01", "ChatGPT Image 2.0", "low", NOW), CG_REASON_NOT_ELIGIBLE);
    assert_charged(decide_at("business", "annual", "2026-01-01", "ChatGPT Image 2.0", "low", NOW), CG_REASON_NOT_ELIGIBLE);
}

/* ChatGPT Image 2.0 Medium: "Premium / Max / Pro members (annual subscription only)". */
static void test_gpt_image_2_medium_annual_only(void **s) {
    (void)s;
    assert_free(decide_at("premium", "annual", "2024-01-01", "ChatGPT Image 2.0", "medium", NOW), "gpt-image-2-medium-annual");
    assert_free(decide_at("pro", "annual", "2024-01-01", "ChatGPT Image 2.0", "medium", NOW), "gpt-image-2-medium-annual");
    assert_free(decide_at("max", "annual", "2026-05-22", "ChatGPT Image 2.0", "medium", NOW), "gpt-image-2-medium-annual");
    cg_decision d = decide_at("premium", "monthly", "2024-01-01", "ChatGPT Image 2.0", "medium", NOW);
    assert_charged(d, CG_REASON_NOT_ELIGIBLE);
    assert_int_equal(d.items[0].lacks, CG_LACKS_BILLING);
    explain_contains(&d, 0, CG_LANG_EN, "on annual billing");
}

/* Grok Imagine: "Plus / Premium / Max / Pro members (monthly or annual)". */
static void test_grok_imagine_plus_to_pro(void **s) {
    (void)s;
    const char *plans[] = {"plus", "premium", "max", "pro"};
    for (int i = 0; i < 4; i++)
        assert_free(decide_at(plans[i], "monthly", "2024-01-01", "Grok Imagine", NULL, NOW), "grok-imagine");
    assert_charged(decide_at("business", "monthly", "2024-01-01", "Grok Imagine", NULL, NOW), CG_REASON_NOT_ELIGIBLE);
    assert_charged(decide_at("free", "monthly", "2024-01-01", "Grok Imagine", NULL, NOW), CG_REASON_NOT_ELIGIBLE);
}

/* Carat Video (LTX): "Pro / Business plan (regardless of signup date)". */
static void test_carat_video_pro_business_any_date(void **s) {
    (void)s;
    assert_free(decide_at("pro", "monthly", "2020-01-01", "Carat Video", NULL, NOW), "carat-video-pro-business");
    assert_free(decide_at("business", "annual", "2026-11-01", "carat-video-ltx", NULL, NOW), "carat-video-pro-business");
    assert_charged(decide_at("plus", "annual", "2026-03-01", "Carat Video", NULL, NOW), CG_REASON_NOT_ELIGIBLE);
}

/* Carat Video: "Premium members who joined on or after Feb 25, 2026 (1 year)": joined
 * 2026-03-01 ends at 2027-03-01 00:00 Seoul. */
static void test_carat_video_premium_one_year_ends_at_seoul_midnight(void **s) {
    (void)s;
    const char *b = "carat-video-premium-1y";
    cg_decision d = decide_at("premium", "monthly", "2026-03-01", "Carat Video", NULL, "2027-02-28T23:59:59+09:00");
    assert_free(d, b);
    assert_int_equal(d.items[0].benefit_ends_at_us, at_text("2027-03-01T00:00:00+09:00"));
    explain_contains(&d, 0, CG_LANG_EN, "unlimited: Carat Video for Premium (and Max) members who joined on or after 2026-02-25, until 2027-03-01");
    d = decide_at("premium", "monthly", "2026-03-01", "Carat Video", NULL, "2027-03-01T00:00:00+09:00");
    assert_charged(d, CG_REASON_NOT_ELIGIBLE);
    assert_int_equal(d.items[0].lacks, CG_LACKS_EXPIRED);
    explain_contains(&d, 0, CG_LANG_EN, "the benefit ended 2027-03-01");
    /* 2027-02-28T15:00Z is already 2027-03-01 00:00 in Seoul. */
    assert_charged(decide_at("premium", "monthly", "2026-03-01", "Carat Video", NULL, "2027-02-28T15:00:00Z"),
                   CG_REASON_NOT_ELIGIBLE);
    assert_free(decide_at("premium", "monthly", "2026-03-01", "Carat Video", NULL, "2027-02-28T14:59:59Z"), b);
    assert_free(decide_at("premium", "annual", "2026-02-25", "Carat Video", NULL, NOW), b);
    assert_charged(decide_at("premium", "annual", "2026-02-24", "Carat Video", NULL, NOW), CG_REASON_NOT_ELIGIBLE);
}

/* A Feb 29 join ends on Feb 28 of the next year (the anniversary clamps to the month). */
static void test_carat_video_feb_29_join_ends_feb_28(void **s) {
    (void)s;
    const char *b = "carat-video-premium-1y";
    cg_decision d = decide_at("premium", "monthly", "2028-02-29", "Carat Video", NULL, "2029-02-27T23:59:59+09:00");
    assert_free(d, b);
    assert_int_equal(d.items[0].benefit_ends_at_us, at_text("2029-02-28T00:00:00+09:00"));
    assert_charged(decide_at("premium", "monthly", "2028-02-29", "Carat Video", NULL, "2029-02-28T00:00:00+09:00"),
                   CG_REASON_NOT_ELIGIBLE);
}

/* Max gets Premium's Carat Video year; Max annual only from 2026-05-22. */
static void test_max_inherits_premium_carat_video(void **s) {
    (void)s;
    cg_decision d = decide_at("max", "annual", "2026-06-01", "Carat Video", NULL, NOW);
    assert_free(d, "carat-video-premium-1y");
    assert_int_equal(d.items[0].benefit_ends_at_us, at_text("2027-06-01T00:00:00+09:00"));
    assert_free(decide_at("max", "monthly", "2026-03-01", "Carat Video", NULL, NOW), "carat-video-premium-1y");
}

/* "Max annual benefits apply to signups on or after May 22, 2026" — even benefits naming Max. */
static void test_max_annual_before_cutoff_is_charged(void **s) {
    (void)s;
    cg_decision d = decide_at("max", "annual", "2026-05-21", "Grok Imagine", NULL, NOW);
    assert_charged(d, CG_REASON_RESTRICTED);
    explain_contains(&d, 0, CG_LANG_EN, "Max annual benefits apply only to members who joined on or after 2026-05-22");
    explain_contains(&d, 0, CG_LANG_EN, "this member joined 2026-05-21");
    assert_charged(decide_at("max", "annual", "2026-05-21", "ChatGPT Image 2.0", "low", NOW), CG_REASON_RESTRICTED);
    assert_free(decide_at("max", "annual", "2026-05-22", "Grok Imagine", NULL, NOW), "grok-imagine");
    /* Monthly Max is not restricted: "identical for monthly and annual" otherwise. */
    assert_free(decide_at("max", "monthly", "2026-05-21", "Grok Imagine", NULL, NOW), "grok-imagine");
    /* A Max annual member who joined Nov 25, 2025 loses even the Nanobanana Pro window. */
    assert_charged(decide_at("max", "annual", "2025-11-25", "Nanobanana Pro", "1k", NOW), CG_REASON_RESTRICTED);
    assert_free(decide_at("max", "monthly", "2025-11-25", "Nanobanana Pro", "1k", NOW), "nanobanana-pro-nov-21-30-2025");
}

/* Nanobanana 2: charged by default; 1K unlimited for Max annual from 2026-05-22 only. */
static void test_nanobanana_2_is_a_separate_model(void **s) {
    (void)s;
    const char *b = "nanobanana-2-1k-max-annual";
    assert_free(decide_at("max", "annual", "2026-05-22", "Nanobanana 2", "1k", NOW), b);
    assert_charged(decide_at("max", "annual", "2026-05-21", "Nanobanana 2", "1k", NOW), CG_REASON_NOT_ELIGIBLE);
    assert_charged(decide_at("max", "annual", "2026-06-01", "Nanobanana 2", "2k", NOW), CG_REASON_VARIANT_NOT_COVERED);
    assert_charged(decide_at("max", "annual", "2026-06-01", "Nanobanana 2", "4k", NOW), CG_REASON_VARIANT_NOT_COVERED);
    assert_charged(decide_at("max", "monthly", "2026-06-01", "Nanobanana 2", "1k", NOW), CG_REASON_NOT_ELIGIBLE);
    assert_charged(decide_at("premium", "annual", "2026-06-01", "Nanobanana 2", "1k", NOW), CG_REASON_NOT_ELIGIBLE);
    /* A member whose Nanobanana is free still pays for Nanobanana 2. */
    assert_free(decide_at("plus", "monthly", "2026-01-01", "Nanobanana", NULL, NOW), "nanobanana-plus-pro-dec-2025");
    cg_decision d = decide_at("plus", "monthly", "2026-01-01", "Nanobanana 2", "1k", NOW);
    assert_charged(d, CG_REASON_NOT_ELIGIBLE);
    assert_string_equal(d.policy->models[d.items[0].model].id, "nanobanana-2");
}

/* Midjourney, advanced video and Lip sync: charged for everyone, with more credits than an image. */
static void test_not_covered_models_are_charged(void **s) {
    (void)s;
    cg_decision mj = decide_at("pro", "annual", "2026-03-01", "Midjourney", NULL, NOW);
    assert_charged(mj, CG_REASON_NO_BENEFIT);
    explain_contains(&mj, 0, CG_LANG_EN, "Midjourney is not eligible");
    const char *video[] = {"Sora", "Sora2", "Veo", "Veo 3", "Kling", "Lip sync", "Seedance 2.0"};
    const char *ids[] = {"sora", "sora-2", "veo", "veo-3", "kling", "lip-sync", "seedance-2.0"};
    int64_t most_image = 0;
    const char *images[] = {"nanobanana", "z-image", "gpt-image-1.5", "seedream-4.0", "flux2-pro", "grok-imagine", "midjourney"};
    for (int i = 0; i < 7; i++)
        { int64_t c = decide_at("free", "monthly", "2026-01-01", images[i], NULL, NOW).items[0].credits; if (c > most_image) most_image = c; }
    for (int i = 0; i < 7; i++) {
        cg_decision d = decide_at("pro", "annual", "2026-03-01", video[i], NULL, NOW);
        assert_charged(d, CG_REASON_NO_BENEFIT);
        assert_string_equal(d.policy->models[d.items[0].model].id, ids[i]);
        assert_true(d.items[0].credits > most_image);
    }
}

static void test_free_plan_gets_nothing(void **s) {
    (void)s;
    const char *models[] = {"nanobanana", "z-image", "grok-imagine", "carat-video-ltx", "gpt-image-1.5"};
    for (int i = 0; i < 5; i++) {
        cg_decision d = decide_at("free", "annual", "2025-12-20", models[i], NULL, NOW);
        assert_false(d.items[0].unlimited);
    }
}

/* count multiplies the unit price; an unlimited item stays 0 whatever the count. */
static void test_count_multiplies_credits(void **s) {
    (void)s;
    cg_quote_input in = {.plan = "plus", .billing = "monthly", .joined = "2026-01-01", .model = "midjourney",
                         .count = 4, .at_us = at_text(NOW)};
    cg_decision d;
    cg_err err;
    assert_cg_ok(cg_engine_quote(&fixture_engine, &in, &d, &err), err);
    int64_t one = decide_at("plus", "monthly", "2026-01-01", "midjourney", NULL, NOW).items[0].credits;
    assert_int_equal(d.items[0].credits, 4 * one);
    assert_int_equal(d.total_credits, 4 * one);
    in.model = "grok-imagine";
    assert_cg_ok(cg_engine_quote(&fixture_engine, &in, &d, &err), err);
    assert_int_equal(d.total_credits, 0);
    assert_int_equal(d.items[0].count, 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nanobanana_base_plus_pro_from_dec_2025),
        cmocka_unit_test(test_nanobanana_pro_window_nov_21_30),
        cmocka_unit_test(test_joined_instant_is_converted_to_seoul_date),
        cmocka_unit_test(test_nanobanana_pro_4k_is_charged_for_everyone),
        cmocka_unit_test(test_z_image_from_dec_17_2025),
        cmocka_unit_test(test_premium_pro_images_from_feb_25_2026),
        cmocka_unit_test(test_gpt_image_2_low_premium_max_pro),
        cmocka_unit_test(test_gpt_image_2_medium_annual_only),
        cmocka_unit_test(test_grok_imagine_plus_to_pro),
        cmocka_unit_test(test_carat_video_pro_business_any_date),
        cmocka_unit_test(test_carat_video_premium_one_year_ends_at_seoul_midnight),
        cmocka_unit_test(test_carat_video_feb_29_join_ends_feb_28),
        cmocka_unit_test(test_max_inherits_premium_carat_video),
        cmocka_unit_test(test_max_annual_before_cutoff_is_charged),
        cmocka_unit_test(test_nanobanana_2_is_a_separate_model),
        cmocka_unit_test(test_not_covered_models_are_charged),
        cmocka_unit_test(test_free_plan_gets_nothing),
        cmocka_unit_test(test_count_multiplies_credits),
    };
    return cmocka_run_group_tests_name("engine_rules", tests, fixture_setup, fixture_teardown);
}
