/* test_spending.c — which credits a charge uses: spending order (priority, soonest expiry,
 * promotional before paid, oldest) and its edges, grants not yet started or expired (boundary
 * pairs), expiry journaled by the sweep, and refunds to expired sources. */
#include "ledger_fixture.h"

static void setup_member(cg_ledger *l) { put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0); }

static const char *first_part(cg_ledger *l, const char *key) {
    static char id[CG_OBJECT_ID_BYTES_MAX];
    cg_charge c = charge_mj(l, "m1", key);
    assert_int_equal(c.part_count, 1);
    snprintf(id, sizeof id, "%s", c.parts[0].grant_id);
    return id;
}

static void test_lower_priority_number_is_spent_first(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    grant_full(l, "m1", 100, CG_CATEGORY_PROMO, 50, 0, T0 + HOUR_US); /* expires sooner */
    cg_grant first = grant_full(l, "m1", 100, CG_CATEGORY_PAID, 10, 0, 0);
    assert_string_equal(first_part(l, "k1"), first.grant_id);
}

static void test_soonest_expiry_is_spent_first(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    grant_full(l, "m1", 100, CG_CATEGORY_PAID, -1, 0, T0 + 2 * DAY_US);
    cg_grant soon = grant_full(l, "m1", 100, CG_CATEGORY_PAID, -1, 0, T0 + DAY_US);
    assert_string_equal(first_part(l, "k1"), soon.grant_id);
}

static void test_non_expiring_is_spent_last(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    cg_grant never = grant_full(l, "m1", 100, CG_CATEGORY_PROMO, -1, 0, 0);
    cg_grant far = grant_full(l, "m1", 100, CG_CATEGORY_PAID, -1, 0, T0 + 3650 * DAY_US);
    assert_string_equal(first_part(l, "k1"), far.grant_id);
    (void)never;
}

static void test_promotional_before_paid_on_equal_expiry(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    grant_full(l, "m1", 100, CG_CATEGORY_PAID, -1, 0, T0 + DAY_US);
    cg_grant promo = grant_full(l, "m1", 100, CG_CATEGORY_PROMO, -1, 0, T0 + DAY_US);
    assert_string_equal(first_part(l, "k1"), promo.grant_id);
}

static void test_oldest_first_when_all_else_equal(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    cg_grant old = grant_full(l, "m1", 100, CG_CATEGORY_PAID, -1, 0, 0);
    fx_now_us += CG_US_PER_S;
    grant_full(l, "m1", 100, CG_CATEGORY_PAID, -1, 0, 0);
    assert_string_equal(first_part(l, "k1"), old.grant_id);
}

/* A charge larger than the first grant spans grants in order; capture settles in that order. */
static void test_charge_spans_grants_in_order(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    cg_grant a = grant_full(l, "m1", 4, CG_CATEGORY_PROMO, -1, 0, T0 + DAY_US);
    cg_grant b = grant_full(l, "m1", 100, CG_CATEGORY_PAID, -1, 0, 0);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    assert_int_equal(c.part_count, 2);
    assert_string_equal(c.parts[0].grant_id, a.grant_id);
    assert_int_equal(c.parts[0].held, 4);
    assert_string_equal(c.parts[1].grant_id, b.grant_id);
    assert_int_equal(c.parts[1].held, 6);
    cg_err err = {0};
    /* a shorter video: capture 5 — takes all of the promo grant, 1 from paid */
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", 5, &done, &err), err);
    assert_int_equal(done.parts[0].captured, 4);
    assert_int_equal(done.parts[1].captured, 1);
    cg_balance *bal = balance_of(l, "m1");
    assert_int_equal(bal->available, 99);
    assert_int_equal(bal->available_promo, 0);
    /* refund 2: latest-spent first — back to the paid grant */
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "k3", 2, &done, &err), err);
    assert_int_equal(done.parts[1].refunded, 1);
    assert_int_equal(done.parts[0].refunded, 1);
    assert_int_equal(balance_of(l, "m1")->available, 101);
    assert_verify_clean(l);
}

/* Held credits are not spendable: a second charge takes the next grant. */
static void test_held_credits_are_not_spent_twice(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    cg_grant a = grant_full(l, "m1", 10, CG_CATEGORY_PAID, 1, 0, 0);
    cg_grant b = grant_full(l, "m1", 10, CG_CATEGORY_PAID, 2, 0, 0);
    assert_string_equal(first_part(l, "k1"), a.grant_id);
    assert_string_equal(first_part(l, "k2"), b.grant_id);
    cg_charge c;
    cg_err err = {0};
    assert_int_equal(charge_try(l, "m1", "k3", "midjourney", NULL, &c, &err), CG_EINSUFFICIENT);
    assert_int_equal(c.credits_available, 0);
}

/* Boundary pair: spendable one microsecond before expiry, not at it. */
static void test_grant_spendable_just_before_expiry(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    grant_full(l, "m1", 10, CG_CATEGORY_PAID, -1, 0, T0 + HOUR_US);
    fx_now_us = T0 + HOUR_US - 1;
    cg_charge c;
    cg_err err = {0};
    assert_cg_ok(charge_try(l, "m1", "k1", "midjourney", NULL, &c, &err), err);
}

static void test_expired_grant_is_not_spendable(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    grant_full(l, "m1", 10, CG_CATEGORY_PAID, -1, 0, T0 + HOUR_US);
    fx_now_us = T0 + HOUR_US;
    cg_charge c;
    cg_err err = {0};
    assert_int_equal(charge_try(l, "m1", "k1", "midjourney", NULL, &c, &err), CG_EINSUFFICIENT);
    assert_int_equal(c.credits_available, 0);
    assert_int_equal(balance_of(l, "m1")->available, 0);
    /* the sweep journaled the expiry: history ends with it, verify is clean */
    cg_journal_entry page[4];
    int n = 0;
    int64_t next = 0;
    assert_cg_ok(cg_ledger_history(l, "m1", 0, 4, page, &n, &next, &err), err);
    assert_int_equal(n, 2);
    assert_int_equal(page[1].kind, CG_JOURNAL_EXPIRY);
    assert_int_equal(page[1].delta_remaining, -10);
    assert_verify_clean(l);
}

static void test_grant_not_started_is_not_spendable(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    grant_full(l, "m1", 10, CG_CATEGORY_PAID, -1, T0 + HOUR_US, 0);
    cg_charge c;
    cg_err err = {0};
    fx_now_us = T0 + HOUR_US - 1;
    assert_int_equal(charge_try(l, "m1", "k1", "midjourney", NULL, &c, &err), CG_EINSUFFICIENT);
    fx_now_us = T0 + HOUR_US;
    assert_cg_ok(charge_try(l, "m1", "k2", "midjourney", NULL, &c, &err), err);
}

/* A grant that expires while credits are held: the hold stays capturable; what a release
 * returns expires at once (journaled), so it never becomes spendable again. */
static void test_release_on_expired_grant_expires_the_credits(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    grant_full(l, "m1", 30, CG_CATEGORY_PAID, -1, 0, T0 + 60 * CG_US_PER_S);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    fx_now_us = T0 + 61 * CG_US_PER_S;
    assert_int_equal(balance_of(l, "m1")->available, 0); /* 20 free credits expired */
    assert_int_equal(balance_of(l, "m1")->held, 10);
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'r', "m1", c.charge_id, "k2", 0, &done, &err), err);
    cg_balance *b = balance_of(l, "m1");
    assert_int_equal(b->available, 0);
    assert_int_equal(b->held, 0);
    assert_int_equal(b->grant_count, 0);
    assert_verify_clean(l);
}

/* Refund after the source grant expired: a `refund` grant of the same category. */
static void test_refund_to_expired_source_creates_refund_grant(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    grant_full(l, "m1", 10, CG_CATEGORY_PROMO, -1, 0, T0 + 60 * CG_US_PER_S);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), err);
    fx_now_us = T0 + 120 * CG_US_PER_S;
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "k3", -1, &done, &err), err);
    cg_balance *b = balance_of(l, "m1");
    assert_int_equal(b->available, 10);
    assert_int_equal(b->grant_count, 1);
    assert_int_equal(b->grants[0].source, CG_SOURCE_REFUND);
    assert_int_equal(b->grants[0].category, CG_CATEGORY_PROMO);
    assert_int_equal(b->grants[0].expires_at_us, CG_NO_END);
    assert_verify_clean(l);
}

static void test_open_grants_are_limited(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    for (int i = 0; i < CG_GRANTS_OPEN_MAX; i++) grant_simple(l, "m1", 1);
    cg_grant_input in = {.member_id = "m1", .idempotency_key = "one-too-many", .credits = 1,
                         .priority = -1};
    cg_grant g;
    cg_err err = {0};
    assert_int_equal(cg_ledger_grant(l, &in, &g, NULL, &err), CG_ELIMIT);
}

static void test_grant_rejects_bad_input(void **state) {
    cg_ledger *l = *state;
    setup_member(l);
    cg_grant g;
    cg_err err = {0};
    cg_grant_input in = {.member_id = "m1", .idempotency_key = "a", .credits = 0, .priority = -1};
    assert_int_equal(cg_ledger_grant(l, &in, &g, NULL, &err), CG_EINVAL);
    in.credits = 5;
    in.priority = 101;
    assert_int_equal(cg_ledger_grant(l, &in, &g, NULL, &err), CG_EINVAL);
    in.priority = 100;
    in.starts_at_us = T0 + HOUR_US;
    in.expires_at_us = T0 + HOUR_US;
    assert_int_equal(cg_ledger_grant(l, &in, &g, NULL, &err), CG_EINVAL);
    in.idempotency_key = NULL;
    in.expires_at_us = 0;
    assert_int_equal(cg_ledger_grant(l, &in, &g, NULL, &err), CG_EINVAL);
    assert_string_equal(err.field, "idempotency_key");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lower_priority_number_is_spent_first, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_soonest_expiry_is_spent_first, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_non_expiring_is_spent_last, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_promotional_before_paid_on_equal_expiry, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_oldest_first_when_all_else_equal, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_charge_spans_grants_in_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_held_credits_are_not_spent_twice, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_grant_spendable_just_before_expiry, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_expired_grant_is_not_spendable, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_grant_not_started_is_not_spendable, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_release_on_expired_grant_expires_the_credits, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refund_to_expired_source_creates_refund_grant, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_open_grants_are_limited, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_grant_rejects_bad_input, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
