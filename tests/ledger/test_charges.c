/* test_charges.c — every state transition of a charge (held → captured → refunded, held →
 * released, held → expired, captured at once → refunded) and every refusal: capture twice,
 * release after capture, refund more than captured, unknown charge, insufficient credits.
 * Backend from CG_TEST_DB. */
#include "ledger_fixture.h"

static void test_charge_holds_then_capture_spends(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1");
    assert_int_equal(c.status, CG_CHARGE_HELD);
    assert_int_equal(c.credits, 10);
    assert_int_equal(c.held, 10);
    assert_int_equal(c.part_count, 1);
    assert_int_equal(balance_of(l, "m1")->available, 90);
    assert_int_equal(balance_of(l, "m1")->held, 10);
    cg_charge done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), err);
    assert_int_equal(done.status, CG_CHARGE_CAPTURED);
    assert_int_equal(done.captured, 10);
    assert_int_equal(done.held, 0);
    assert_int_equal(balance_of(l, "m1")->available, 90);
    assert_int_equal(balance_of(l, "m1")->held, 0);
    assert_int_equal(balance_of(l, "m1")->grants[0].remaining, 90);
    assert_verify_clean(l);
}

static void test_charge_records_request_items_and_policy(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1");
    cg_charge got;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_charge_get(l, "m1", c.charge_id, &got, &err), err);
    assert_string_equal(got.model, "midjourney");
    assert_string_equal(got.plan, "free");
    assert_string_equal(got.policy_version, "carat-2026-11");
    assert_int_equal(got.item_count, 1);
    assert_string_equal(got.items[0].model, "midjourney");
    assert_false(got.items[0].unlimited);
    assert_int_equal(got.items[0].credits, 10);
    assert_string_equal(got.items[0].reason_code, "no_benefit");
    assert_true(strlen(got.items[0].reason) > 0);
    assert_int_equal(got.expires_at_us, T0 + 900 * CG_US_PER_S);
}

/* "Generating images with an unlimited-eligible model is free": recorded anyway, 0 credits. */
static void test_unlimited_charge_is_recorded_with_zero_credits(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "premium", "monthly", T0 - DAY_US, 0);
    cg_charge c;
    cg_err err = {0};
    assert_cg_ok(charge_try(l, "m1", "k1", "gpt-image-2.0", "low", &c, &err), err);
    assert_int_equal(c.credits, 0);
    assert_true(c.items[0].unlimited);
    assert_string_equal(c.items[0].benefit, "gpt-image-2-low");
    assert_string_equal(c.items[0].reason_code, "unlimited");
    assert_int_equal(c.part_count, 0);
    cg_charge done;
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), err);
    assert_int_equal(done.status, CG_CHARGE_CAPTURED);
    assert_verify_clean(l);
}

/* An agent conversation is charged even when the generation is free: two items. */
static void test_agent_charge_records_both_items(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "premium", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge_input in = {.member_id = "m1", .idempotency_key = "k1", .model = "gpt-image-2.0",
                          .variant = "low", .agent_model = "lite", .agent_kind = "image"};
    cg_charge c;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_charge(l, &in, &c, NULL, &err), err);
    assert_int_equal(c.item_count, 2);
    assert_int_equal(c.credits, 1);
    assert_string_equal(c.items[1].kind, "conversation");
}

static void test_capture_smaller_amount_returns_the_rest(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 500);
    cg_charge c, done;
    cg_err err = {0};
    assert_cg_ok(charge_try(l, "m1", "k1", "sora", NULL, &c, &err), err);
    assert_int_equal(c.credits, 200);
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", 150, &done, &err), err);
    assert_int_equal(done.captured, 150);
    assert_int_equal(balance_of(l, "m1")->available, 350);
    assert_verify_clean(l);
}

static void test_capture_more_than_held_is_refused(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_int_equal(settle_try(l, 'c', "m1", c.charge_id, "k2", 11, &done, &err), CG_EINVAL);
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k3", 10, &done, &err), err);
}

static void test_capture_twice_is_refused(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), err);
    assert_int_equal(settle_try(l, 'c', "m1", c.charge_id, "k3", -1, &done, &err), CG_ESTATE);
    assert_non_null(strstr(err.msg, "captured"));
    assert_int_equal(balance_of(l, "m1")->available, 90);
}

static void test_release_returns_every_held_credit(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'r', "m1", c.charge_id, "k2", 0, &done, &err), err);
    assert_int_equal(done.status, CG_CHARGE_RELEASED);
    assert_int_equal(done.captured, 0);
    assert_int_equal(balance_of(l, "m1")->available, 100);
    assert_int_equal(balance_of(l, "m1")->held, 0);
    assert_verify_clean(l);
}

static void test_release_after_capture_is_refused(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), err);
    assert_int_equal(settle_try(l, 'r', "m1", c.charge_id, "k3", 0, &done, &err), CG_ESTATE);
}

static void test_capture_after_release_is_refused(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'r', "m1", c.charge_id, "k2", 0, &done, &err), err);
    assert_int_equal(settle_try(l, 'c', "m1", c.charge_id, "k3", -1, &done, &err), CG_ESTATE);
    assert_int_equal(settle_try(l, 'f', "m1", c.charge_id, "k4", -1, &done, &err), CG_ESTATE);
}

static void test_refund_full_returns_to_source_grant(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    cg_grant g = grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), err);
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "k3", -1, &done, &err), err);
    assert_int_equal(done.refunded, 10);
    cg_balance *b = balance_of(l, "m1");
    assert_int_equal(b->available, 100);
    assert_int_equal(b->grant_count, 1);
    assert_string_equal(b->grants[0].grant_id, g.grant_id);
    assert_verify_clean(l);
}

static void test_refund_partial_then_rest_then_nothing_left(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), err);
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "k3", 4, &done, &err), err);
    assert_int_equal(done.refunded, 4);
    assert_int_equal(settle_try(l, 'f', "m1", c.charge_id, "k4", 7, &done, &err), CG_EINVAL);
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "k5", 6, &done, &err), err);
    assert_int_equal(done.refunded, 10);
    assert_int_equal(settle_try(l, 'f', "m1", c.charge_id, "k6", 1, &done, &err), CG_EINVAL);
    assert_int_equal(balance_of(l, "m1")->available, 100);
    assert_verify_clean(l);
}

static void test_refund_more_than_captured_is_refused(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", 6, &done, &err), err);
    assert_int_equal(settle_try(l, 'f', "m1", c.charge_id, "k3", 7, &done, &err), CG_EINVAL);
    assert_non_null(strstr(err.msg, "at most 6"));
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "k4", 6, &done, &err), err);
}

static void test_refund_before_capture_is_refused(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_int_equal(settle_try(l, 'f', "m1", c.charge_id, "k2", -1, &done, &err), CG_ESTATE);
}

static void test_unknown_charge_is_not_found(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    cg_charge done;
    cg_err err = {0};
    assert_int_equal(settle_try(l, 'c', "m1", "ch_nope", "k1", -1, &done, &err), CG_ENOTFOUND);
    assert_int_equal(settle_try(l, 'r', "m1", "ch_nope", "k2", -1, &done, &err), CG_ENOTFOUND);
    assert_int_equal(settle_try(l, 'f', "m1", "ch_nope", "k3", -1, &done, &err), CG_ENOTFOUND);
    /* another member's charge is not visible either */
    put_member(l, "m2", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m2", 100);
    cg_charge c = charge_mj(l, "m2", "k1");
    assert_int_equal(settle_try(l, 'c', "m1", c.charge_id, "k4", -1, &done, &err), CG_ENOTFOUND);
}

static void test_unknown_member_is_not_found(void **state) {
    cg_ledger *l = *state;
    cg_charge c;
    cg_err err = {0};
    assert_int_equal(charge_try(l, "ghost", "k1", "midjourney", NULL, &c, &err), CG_ENOTFOUND);
    cg_grant_input in = {.member_id = "ghost", .idempotency_key = "k2", .credits = 5,
                         .priority = -1};
    cg_grant g;
    assert_int_equal(cg_ledger_grant(l, &in, &g, NULL, &err), CG_ENOTFOUND);
}

/* Insufficient: states needed and available, holds nothing. Pair: exactly enough works. */
static void test_insufficient_states_needed_available_and_holds_nothing(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 9);
    cg_charge c;
    cg_err err = {0};
    assert_int_equal(charge_try(l, "m1", "k1", "midjourney", NULL, &c, &err), CG_EINSUFFICIENT);
    assert_int_equal(c.credits, 10);
    assert_int_equal(c.credits_available, 9);
    assert_non_null(strstr(err.msg, "needs 10"));
    assert_non_null(strstr(err.msg, "9 available"));
    assert_int_equal(balance_of(l, "m1")->held, 0);
    assert_int_equal(balance_of(l, "m1")->available, 9);
    grant_simple(l, "m1", 1);
    /* the refused key recorded nothing, so the retry with it now succeeds */
    assert_cg_ok(charge_try(l, "m1", "k1", "midjourney", NULL, &c, &err), err);
    assert_int_equal(balance_of(l, "m1")->available, 0);
    assert_verify_clean(l);
}

/* Hold TTL 900 s: captured at 899 s works; at 900 s it has been released automatically. */
static void test_hold_capturable_just_before_ttl(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    fx_now_us = T0 + 899 * CG_US_PER_S;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), err);
}

static void test_hold_released_automatically_at_ttl(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    fx_now_us = T0 + 900 * CG_US_PER_S;
    assert_int_equal(balance_of(l, "m1")->available, 100); /* the sweep ran in that batch */
    assert_int_equal(balance_of(l, "m1")->held, 0);
    cg_err err = {0};
    assert_cg_ok(cg_ledger_charge_get(l, "m1", c.charge_id, &done, &err), err);
    assert_int_equal(done.status, CG_CHARGE_EXPIRED);
    assert_int_equal(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), CG_ESTATE);
    assert_verify_clean(l);
}

/* More expired holds than one sweep round handles (64): a busy batch releases one round, an
 * idle moment drains the rest. */
static void test_expired_hold_backlog_drains(void **state) {
    cg_ledger *l = *state;
    enum { HOLDS = 3 * CG_LEDGER_SWEEP_PER_BATCH_MAX / 2 };
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 10 * HOLDS);
    for (int i = 0; i < HOLDS; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        charge_mj(l, "m1", key);
    }
    fx_now_us = T0 + 900 * CG_US_PER_S;
    assert_int_equal(balance_of(l, "m1")->held, 10 * (HOLDS - CG_LEDGER_SWEEP_PER_BATCH_MAX));
    usleep(1500 * 1000); /* the writer's idle wake-up (1 s) sweeps until done */
    assert_int_equal(balance_of(l, "m1")->held, 0);
    assert_int_equal(balance_of(l, "m1")->available, 10 * HOLDS);
    assert_verify_clean(l);
}

/* ---- a charge with capture: quote + spend in one call ---- */

static int charge_capture_try(cg_ledger *l, const char *member, const char *key,
                              const char *model, const char *variant, bool capture,
                              cg_charge *out, bool *replayed, cg_err *err) {
    cg_charge_input in = {.member_id = member, .idempotency_key = key, .model = model,
                          .variant = variant, .capture = capture};
    return cg_ledger_charge(l, &in, out, replayed, err);
}

static int64_t holds_open(cg_ledger *l);

/* Spends across two grants in spending order, at once: captured, nothing held, one capture
 * entry per grant (−remaining, no held), no hold entry; capture and release are refused;
 * refund returns each share to its grant; the hold TTL passing changes nothing. */
static void test_charge_with_capture_spends_at_once(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    cg_grant promo = grant_full(l, "m1", 4, CG_CATEGORY_PROMO, -1, 0, T0 + DAY_US);
    cg_grant paid = grant_simple(l, "m1", 100);
    cg_charge c, done;
    bool replayed = false;
    cg_err err = {0};
    assert_cg_ok(charge_capture_try(l, "m1", "k1", "midjourney", NULL, true, &c, &replayed,
                                    &err), err);
    assert_false(replayed);
    assert_int_equal(c.status, CG_CHARGE_CAPTURED);
    assert_int_equal(c.credits, 10);
    assert_int_equal(c.captured, 10);
    assert_int_equal(c.held, 0);
    assert_int_equal(c.settled_at_us, T0);
    assert_int_equal(c.part_count, 2);
    assert_string_equal(c.parts[0].grant_id, promo.grant_id);
    assert_int_equal(c.parts[0].held, 4);
    assert_int_equal(c.parts[0].captured, 4);
    assert_string_equal(c.parts[1].grant_id, paid.grant_id);
    assert_int_equal(c.parts[1].captured, 6);
    cg_balance *b = balance_of(l, "m1");
    assert_int_equal(b->available, 94);
    assert_int_equal(b->held, 0);
    assert_true(holds_open(l) <= 0); /* -1: not counted (a shared PostgreSQL database) */
    /* stored as returned */
    cg_charge got;
    assert_cg_ok(cg_ledger_charge_get(l, "m1", c.charge_id, &got, &err), err);
    assert_int_equal(got.status, CG_CHARGE_CAPTURED);
    assert_int_equal(got.captured, 10);
    assert_int_equal(got.parts[1].captured, 6);
    /* the journal: two grants, then one capture per grant and no hold */
    cg_journal_entry page[8];
    int n = 0;
    int64_t next = 0;
    assert_cg_ok(cg_ledger_history(l, "m1", 0, 8, page, &n, &next, &err), err);
    assert_int_equal(n, 4);
    for (int i = 2; i < 4; i++) {
        assert_int_equal(page[i].kind, CG_JOURNAL_CAPTURE);
        assert_int_equal(page[i].delta_held, 0);
        assert_string_equal(page[i].charge_id, c.charge_id);
    }
    assert_int_equal(page[2].delta_remaining, -4);
    assert_int_equal(page[3].delta_remaining, -6);
    /* nothing to settle */
    assert_int_equal(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), CG_ESTATE);
    assert_int_equal(settle_try(l, 'r', "m1", c.charge_id, "k3", -1, &done, &err), CG_ESTATE);
    /* the hold TTL (900 s) passing: still captured, still spent */
    fx_now_us = T0 + 2 * 900 * CG_US_PER_S;
    assert_cg_ok(cg_ledger_charge_get(l, "m1", c.charge_id, &got, &err), err);
    assert_int_equal(got.status, CG_CHARGE_CAPTURED);
    assert_int_equal(balance_of(l, "m1")->available, 94);
    /* refund: latest-spent first, back to each source grant */
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "k4", 7, &done, &err), err);
    assert_int_equal(done.refunded, 7);
    assert_int_equal(done.parts[1].refunded, 6);
    assert_int_equal(done.parts[0].refunded, 1);
    assert_int_equal(balance_of(l, "m1")->available, 101);
    assert_verify_clean(l);
}

/* The key covers `capture`: a retry replays; the same key without capture is another request;
 * a hold and a spend with different keys are independent. Insufficient spends nothing, and
 * an unlimited generation is recorded captured at 0 credits. */
static void test_charge_with_capture_is_idempotent_and_refuses_like_a_hold(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 15);
    cg_charge c, again;
    bool replayed = false;
    cg_err err = {0};
    assert_cg_ok(charge_capture_try(l, "m1", "k1", "midjourney", NULL, true, &c, &replayed,
                                    &err), err);
    assert_cg_ok(charge_capture_try(l, "m1", "k1", "midjourney", NULL, true, &again, &replayed,
                                    &err), err);
    assert_true(replayed);
    assert_string_equal(again.charge_id, c.charge_id);
    assert_int_equal(again.status, CG_CHARGE_CAPTURED);
    assert_int_equal(balance_of(l, "m1")->available, 5);
    assert_int_equal(charge_capture_try(l, "m1", "k1", "midjourney", NULL, false, &again,
                                        &replayed, &err), CG_ECONFLICT);
    assert_int_equal(charge_capture_try(l, "m1", "k2", "midjourney", NULL, true, &again,
                                        &replayed, &err), CG_EINSUFFICIENT);
    assert_int_equal(again.credits_available, 5);
    assert_int_equal(balance_of(l, "m1")->available, 5);
    put_member(l, "m2", "premium", "monthly", T0 - DAY_US, 0);
    assert_cg_ok(charge_capture_try(l, "m2", "k1", "gpt-image-2.0", "low", true, &again,
                                    &replayed, &err), err);
    assert_int_equal(again.status, CG_CHARGE_CAPTURED);
    assert_int_equal(again.credits, 0);
    assert_int_equal(again.part_count, 0);
    assert_true(again.items[0].unlimited);
    assert_verify_clean(l);
}

/* Charge ids sort in creation order ("ch_t" + 21 hex), also when the clock stands still or
 * steps back, and a member's charges list newest first, page by page. */
static void test_charge_ids_sort_in_creation_order(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 1000);
    enum { N = 7 };
    char ids[N][CG_OBJECT_ID_BYTES_MAX];
    for (int i = 0; i < N; i++) { /* the clock stands still, except one step forward */
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        if (i == 5) fx_now_us += DAY_US;
        cg_charge c = charge_mj(l, "m1", key);
        snprintf(ids[i], sizeof ids[i], "%s", c.charge_id);
        assert_int_equal(strlen(ids[i]), 25);
        assert_memory_equal(ids[i], "ch_t", 4);
        if (i) assert_true(strcmp(ids[i - 1], ids[i]) < 0);
    }
    static cg_charge page[3];
    char before[CG_CHARGES_CURSOR_BYTES_MAX] = "", next[CG_CHARGES_CURSOR_BYTES_MAX];
    int seen = 0;
    cg_err err = {0};
    for (;;) {
        int n = 0;
        assert_cg_ok(cg_ledger_charges(l, "m1", before, 3, page, &n, next, &err), err);
        for (int i = 0; i < n; i++, seen++) assert_string_equal(page[i].charge_id, ids[N - 1 - seen]);
        if (!next[0]) break;
        snprintf(before, sizeof before, "%s", next);
    }
    assert_int_equal(seen, N);
    fx_now_us -= HOUR_US; /* the clock steps back: the next id still sorts after */
    cg_charge c = charge_mj(l, "m1", "k-back");
    assert_true(strcmp(ids[N - 1], c.charge_id) < 0);
}

static int64_t holds_open(cg_ledger *l) {
    cg_ledger_stats st;
    cg_ledger_stats_get(l, &st);
    return st.holds_open;
}

/* The holds gauge of /metrics: every way a hold opens or closes, and a restart. */
static void test_stats_count_open_holds(void **state) {
    cg_ledger *l = *state;
    const char *dsn_env = getenv("CG_TEST_DB");
    bool sqlite = !dsn_env || !strncmp(dsn_env, "sqlite:", 7);
    if (!sqlite) { /* shared database: other servers change it, so it cannot be counted */
        assert_int_equal(holds_open(l), -1);
        return;
    }
    assert_int_equal(holds_open(l), 0);
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    put_member(l, "m2", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    grant_simple(l, "m2", 15);
    cg_charge a = charge_mj(l, "m1", "a"), b = charge_mj(l, "m1", "b");
    charge_mj(l, "m2", "c");
    assert_int_equal(holds_open(l), 3);
    charge_mj(l, "m1", "a"); /* a replay opens nothing */
    cg_charge out;
    cg_err err = {0};
    assert_int_equal(charge_try(l, "m2", "d", "midjourney", NULL, &out, &err), CG_EINSUFFICIENT);
    assert_int_equal(holds_open(l), 3);
    assert_cg_ok(settle_try(l, 'c', "m1", a.charge_id, "cap-a", -1, &out, &err), err);
    assert_int_equal(settle_try(l, 'c', "m1", a.charge_id, "cap-a2", -1, &out, &err),
                     CG_ESTATE); /* capture twice: refused, closes nothing more */
    assert_int_equal(holds_open(l), 2);
    assert_cg_ok(settle_try(l, 'r', "m1", b.charge_id, "rel-b", 0, &out, &err), err);
    assert_int_equal(holds_open(l), 1);
    fx_now_us = T0 + 900 * CG_US_PER_S; /* the TTL: m2's hold expires on the next batch */
    assert_int_equal(balance_of(l, "m2")->held, 0);
    assert_int_equal(holds_open(l), 0);
    charge_mj(l, "m1", "e");
    charge_mj(l, "m1", "f");
    assert_int_equal(holds_open(l), 2);
    cg_ledger_stats st;
    cg_ledger_stats_get(l, &st);
    assert_true(st.batches > 0 && st.calls >= st.batches);
    assert_true(st.page_cache_bytes > 0);
    assert_int_equal(st.shards, 2); /* the fixture's */
    assert_true(st.member_cache_bytes > 0);
    /* reopened: counted from the store */
    cg_ledger_close(l);
    *state = NULL;
    char dsn[600];
    snprintf(dsn, sizeof dsn, "sqlite:%s", fx_path);
    cg_ledger_config cfg;
    fx_config(&cfg, true);
    assert_cg_ok(cg_ledger_open_dsn(dsn, &cfg, &l, &err), err);
    *state = l;
    assert_int_equal(holds_open(l), 2);
}

/* A policy reload: the next call is decided by the new engine, the ledger stays open. */
static void test_set_engine_applies_to_the_next_call(void **state) {
    cg_ledger *l = *state;
    char path[] = "/tmp/cg-policy-swap-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "sed 's/^version: carat-2026-11/version: carat-swapped/' %s > %s",
             CG_TEST_POLICY, path);
    assert_int_equal(system(cmd), 0);
    cg_policy_set set2;
    cg_engine engine2;
    cg_err err = {0};
    cg_policy_set_init(&set2);
    assert_cg_ok(cg_policy_set_load_file(&set2, path, &err), err);
    assert_cg_ok(cg_engine_init(&engine2, &set2, &err), err);
    unlink(path);
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    assert_string_equal(charge_mj(l, "m1", "before").policy_version, "carat-2026-11");
    cg_ledger_set_engine(l, &engine2);
    assert_string_equal(charge_mj(l, "m1", "after").policy_version, "carat-swapped");
    assert_string_equal(charge_mj(l, "m1", "before").policy_version, "carat-2026-11"); /* replay */
    cg_ledger_set_engine(l, &fx_engine);
    cg_engine_free(&engine2);
    cg_policy_set_free(&set2);
    assert_string_equal(charge_mj(l, "m1", "again").policy_version, "carat-2026-11");
    assert_verify_clean(l);
}

/* "A charge is decided on the member's state at the instant of use." */
static void test_charge_uses_member_state_at_instant_of_use(void **state) {
    cg_ledger *l = *state;
    int64_t upgrade = T0 - 10 * DAY_US;
    put_member(l, "m1", "free", "monthly", T0 - 100 * DAY_US, T0 - 100 * DAY_US);
    put_member(l, "m1", "premium", "monthly", T0 - 100 * DAY_US, upgrade);
    grant_simple(l, "m1", 100);
    cg_charge_input in = {.member_id = "m1", .idempotency_key = "before", .model = "gpt-image-2.0",
                          .variant = "low", .at_us = upgrade - 1};
    cg_charge c;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_charge(l, &in, &c, NULL, &err), err);
    assert_string_equal(c.plan, "free");
    assert_false(c.items[0].unlimited);
    in.idempotency_key = "after";
    in.at_us = upgrade;
    assert_cg_ok(cg_ledger_charge(l, &in, &c, NULL, &err), err);
    assert_string_equal(c.plan, "premium");
    assert_true(c.items[0].unlimited);
    cg_member_state hist[4];
    int n = 0;
    assert_cg_ok(cg_ledger_member_history(l, "m1", hist, 4, &n, &err), err);
    assert_int_equal(n, 2);
}

static void test_member_put_rejects_unknown_plan(void **state) {
    cg_ledger *l = *state;
    cg_member_put_input in = {.member_id = "m1", .idempotency_key = "k", .plan = "premuim",
                              .billing = "monthly"};
    cg_member_state m;
    cg_err err = {0};
    assert_int_equal(cg_ledger_member_put(l, &in, &m, NULL, &err), CG_EINVAL);
    assert_string_equal(err.field, "plan");
}

static void test_history_pages_in_order(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", 4, &done, &err), err);
    /* grant, hold, capture, release = 4 entries; pages of 3 */
    cg_journal_entry page[3];
    int n = 0;
    int64_t next = 0;
    assert_cg_ok(cg_ledger_history(l, "m1", 0, 3, page, &n, &next, &err), err);
    assert_int_equal(n, 3);
    assert_int_equal(page[0].kind, CG_JOURNAL_GRANT);
    assert_int_equal(page[1].kind, CG_JOURNAL_HOLD);
    assert_int_equal(page[2].kind, CG_JOURNAL_CAPTURE);
    assert_int_equal(next, 3);
    assert_cg_ok(cg_ledger_history(l, "m1", next, 3, page, &n, &next, &err), err);
    assert_int_equal(n, 1);
    assert_int_equal(page[0].kind, CG_JOURNAL_RELEASE);
    assert_int_equal(page[0].delta_held, -6);
    assert_int_equal(next, 0);
}

static void test_naive_mode_behaves_the_same(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 15);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_int_equal(charge_try(l, "m1", "k2", "midjourney", NULL, &done, &err),
                     CG_EINSUFFICIENT);
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k3", -1, &done, &err), err);
    assert_int_equal(balance_of(l, "m1")->available, 5);
    assert_verify_clean(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_charge_holds_then_capture_spends, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_charge_records_request_items_and_policy, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unlimited_charge_is_recorded_with_zero_credits, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_agent_charge_records_both_items, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_capture_smaller_amount_returns_the_rest, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_capture_more_than_held_is_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_capture_twice_is_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_release_returns_every_held_credit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_release_after_capture_is_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_capture_after_release_is_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refund_full_returns_to_source_grant, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refund_partial_then_rest_then_nothing_left, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refund_more_than_captured_is_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refund_before_capture_is_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_charge_is_not_found, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_member_is_not_found, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_insufficient_states_needed_available_and_holds_nothing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hold_capturable_just_before_ttl, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hold_released_automatically_at_ttl, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_expired_hold_backlog_drains, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_charge_with_capture_spends_at_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_charge_with_capture_is_idempotent_and_refuses_like_a_hold, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_charge_ids_sort_in_creation_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stats_count_open_holds, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_set_engine_applies_to_the_next_call, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_charge_uses_member_state_at_instant_of_use, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_member_put_rejects_unknown_plan, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_history_pages_in_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_naive_mode_behaves_the_same, fx_setup_naive, fx_teardown),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
