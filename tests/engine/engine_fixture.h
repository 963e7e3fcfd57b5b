/* engine_fixture.h — loads the bundled policy once per test binary and decides requests
 * written as text, the way members and support staff state them. */
#ifndef CREDITGATE_TEST_ENGINE_FIXTURE_H
#define CREDITGATE_TEST_ENGINE_FIXTURE_H

#include "testlib.h"
#include "creditgate/engine.h"

static cg_policy_set fixture_set;
static cg_engine fixture_engine;

static inline int fixture_setup(void **state) {
    (void)state;
    cg_err err = {0};
    cg_policy_set_init(&fixture_set);
    if (cg_policy_set_load_file(&fixture_set, CG_TEST_POLICY, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return cg_engine_init(&fixture_engine, &fixture_set, &err) ? -1 : 0;
}

static inline int fixture_teardown(void **state) {
    (void)state;
    cg_engine_free(&fixture_engine);
    cg_policy_set_free(&fixture_set);
    return 0;
}

static inline int64_t at_text(const char *text) {
    int64_t at_us = 0;
    cg_err err;
    if (cg_time_parse(text, 9 * 3600, &at_us, &err)) fail_msg("bad instant %s: %s", text, err.msg);
    return at_us;
}

/* Decides one generation; fails the test on an input error. */
static inline cg_decision decide_at(const char *plan, const char *billing, const char *joined, const char *model,
                             const char *variant, const char *at) {
    cg_quote_input in = {.plan = plan, .billing = billing, .joined = joined, .model = model,
                         .variant = variant, .at_us = at_text(at)};
    cg_decision d;
    cg_err err = {0};
    int rc = cg_engine_quote(&fixture_engine, &in, &d, &err);
    if (rc) fail_msg("quote %s %s %s %s: %s", plan, billing, joined, model, err.msg);
    return d;
}

#define NOW "2026-11-25T12:00:00+09:00"

static inline const char *benefit_of(const cg_decision *d, int item) {
    return d->items[item].benefit >= 0 ? d->policy->benefits[d->items[item].benefit].id : "";
}

/* The generation item is unlimited under exactly this benefit. */
#define assert_free(d, benefit_id)                                   \
    do {                                                             \
        cg_decision d_ = (d);                                        \
        assert_true(d_.items[0].unlimited);                          \
        assert_int_equal(d_.items[0].credits, 0);                    \
        assert_string_equal(benefit_of(&d_, 0), benefit_id);         \
    } while (0)

/* The generation item is charged for this reason. */
#define assert_charged(d, why)                                       \
    do {                                                             \
        cg_decision d_ = (d);                                        \
        assert_false(d_.items[0].unlimited);                         \
        assert_true(d_.items[0].credits > 0);                        \
        assert_int_equal(d_.items[0].reason, why);                   \
    } while (0)

static inline void explain_contains(const cg_decision *d, int item, cg_lang lang, const char *want) {
    char text[CG_EXPLAIN_BYTES_MAX];
    cg_item_explain(d, item, lang, text, sizeof text);
    if (!strstr(text, want)) fail_msg("explanation \"%s\" lacks \"%s\"", text, want);
}

#endif
