/* test_async.c — the asynchronous calls (cg_ledger_charge_async and its kin): each calls its
 * `done` exactly once with what the blocking call would have returned, replays and refusals
 * included; hundreds in flight from one thread end with exact balances and a clean verify;
 * the naive mode calls `done` before returning; closing the ledger completes every call still
 * queued. */
#include "ledger_fixture.h"

#include <pthread.h>

#define ASYNC_CALLS_MAX 2048

/* What the done callbacks saw, in the order they came. */
typedef struct completions {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int count;
    int calls[ASYNC_CALLS_MAX]; /* how many times each slot's done ran */
    int rc[ASYNC_CALLS_MAX];
    char msg[ASYNC_CALLS_MAX][64];
} completions;

typedef struct slot {
    completions *seen;
    int index;
} slot;

static completions *completions_new(void) {
    completions *c = calloc(1, sizeof *c);
    assert_non_null(c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    return c;
}

static void completions_free(completions *c) {
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void on_done(void *ctx, int rc, const cg_err *err) {
    slot *s = ctx;
    completions *c = s->seen;
    pthread_mutex_lock(&c->mu);
    c->calls[s->index]++;
    c->rc[s->index] = rc;
    snprintf(c->msg[s->index], sizeof c->msg[s->index], "%.63s", rc ? err->msg : "");
    c->count++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void wait_for(completions *c, int count) {
    pthread_mutex_lock(&c->mu);
    while (c->count < count) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void test_async_charge_and_capture_match_the_blocking_calls(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    completions *seen = completions_new();
    slot s[3] = {{seen, 0}, {seen, 1}, {seen, 2}};
    cg_charge_input in = {.member_id = "m1", .idempotency_key = "k1", .model = "midjourney"};
    static cg_charge a, b, captured;
    bool replayed = true;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_charge_async(l, &in, &a, &replayed, on_done, &s[0], &err), err);
    wait_for(seen, 1);
    assert_int_equal(seen->rc[0], CG_OK);
    assert_false(replayed);
    assert_int_equal(a.status, CG_CHARGE_HELD);
    assert_int_equal(a.held, 10);
    assert_int_equal(balance_of(l, "m1")->held, 10);
    /* the same key again: the original charge, replayed, no second hold */
    assert_cg_ok(cg_ledger_charge_async(l, &in, &b, &replayed, on_done, &s[1], &err), err);
    wait_for(seen, 2);
    assert_int_equal(seen->rc[1], CG_OK);
    assert_true(replayed);
    assert_string_equal(a.charge_id, b.charge_id);
    assert_int_equal(balance_of(l, "m1")->held, 10);
    cg_settle_input settle = {.member_id = "m1", .charge_id = a.charge_id,
                              .idempotency_key = "cap1", .credits = -1};
    assert_cg_ok(cg_ledger_capture_async(l, &settle, &captured, NULL, on_done, &s[2], &err), err);
    wait_for(seen, 3);
    assert_int_equal(seen->rc[2], CG_OK);
    assert_int_equal(captured.status, CG_CHARGE_CAPTURED);
    assert_int_equal(captured.captured, 10);
    assert_int_equal(balance_of(l, "m1")->available, 90);
    for (int i = 0; i < 3; i++) assert_int_equal(seen->calls[i], 1);
    assert_verify_clean(l);
    completions_free(seen);
}

static void test_async_refusals_come_through_done(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 5); /* Midjourney needs 10 */
    completions *seen = completions_new();
    slot s[3] = {{seen, 0}, {seen, 1}, {seen, 2}};
    cg_charge_input in = {.member_id = "m1", .idempotency_key = "k1", .model = "midjourney"};
    static cg_charge out;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_charge_async(l, &in, &out, NULL, on_done, &s[0], &err), err);
    /* capture and release of a charge that does not exist */
    cg_settle_input settle = {.member_id = "m1", .charge_id = "ch_0000000000000000",
                              .idempotency_key = "cap1", .credits = -1};
    static cg_charge c1, c2;
    assert_cg_ok(cg_ledger_capture_async(l, &settle, &c1, NULL, on_done, &s[1], &err), err);
    settle.idempotency_key = "rel1";
    assert_cg_ok(cg_ledger_release_async(l, &settle, &c2, NULL, on_done, &s[2], &err), err);
    wait_for(seen, 3);
    assert_int_equal(seen->rc[0], CG_EINSUFFICIENT);
    assert_int_equal(out.credits, 10);
    assert_int_equal(out.credits_available, 5);
    assert_int_equal(seen->rc[1], CG_ENOTFOUND);
    assert_int_equal(seen->rc[2], CG_ENOTFOUND);
    assert_true(seen->msg[1][0] != 0);
    assert_int_equal(balance_of(l, "m1")->held, 0); /* the refusal held nothing */
    for (int i = 0; i < 3; i++) assert_int_equal(seen->calls[i], 1);
    assert_verify_clean(l);
    completions_free(seen);
}

/* 600 charges on 6 members in flight at once from this one thread (more than a batch holds),
 * then their captures: every done once, balances exact, verify clean. */
static void test_many_async_calls_in_flight_from_one_thread(void **state) {
    cg_ledger *l = *state;
    enum { MEMBERS = 6, CHARGES = 600 };
    char ids[MEMBERS][16];
    for (int m = 0; m < MEMBERS; m++) {
        snprintf(ids[m], sizeof ids[m], "am%d", m);
        put_member(l, ids[m], "free", "monthly", T0 - DAY_US, 0);
        grant_simple(l, ids[m], 100000);
    }
    completions *seen = completions_new();
    static slot s[2 * CHARGES];
    static cg_charge_input in[CHARGES];
    static cg_settle_input settle[CHARGES];
    static cg_charge out[CHARGES];
    static char keys[CHARGES][24], caps[CHARGES][24];
    cg_err err = {0};
    for (int i = 0; i < CHARGES; i++) {
        s[i] = (slot){seen, i};
        snprintf(keys[i], sizeof keys[i], "ak%d", i);
        in[i] = (cg_charge_input){.member_id = ids[i % MEMBERS], .idempotency_key = keys[i],
                                  .model = "midjourney"};
        assert_cg_ok(cg_ledger_charge_async(l, &in[i], &out[i], NULL, on_done, &s[i], &err), err);
    }
    wait_for(seen, CHARGES);
    for (int i = 0; i < CHARGES; i++) {
        assert_int_equal(seen->calls[i], 1);
        assert_int_equal(seen->rc[i], CG_OK);
        s[CHARGES + i] = (slot){seen, CHARGES + i};
        snprintf(caps[i], sizeof caps[i], "ac%d", i);
        settle[i] = (cg_settle_input){.member_id = ids[i % MEMBERS], .charge_id = out[i].charge_id,
                                      .idempotency_key = caps[i], .credits = -1};
        assert_cg_ok(cg_ledger_capture_async(l, &settle[i], &out[i], NULL, on_done,
                                             &s[CHARGES + i], &err), err);
    }
    wait_for(seen, 2 * CHARGES);
    for (int i = 0; i < CHARGES; i++) {
        assert_int_equal(seen->calls[CHARGES + i], 1);
        assert_int_equal(seen->rc[CHARGES + i], CG_OK);
        assert_int_equal(out[i].status, CG_CHARGE_CAPTURED);
    }
    for (int m = 0; m < MEMBERS; m++) {
        cg_balance *b = balance_of(l, ids[m]);
        assert_int_equal(b->held, 0);
        assert_int_equal(b->available, 100000 - 10 * (CHARGES / MEMBERS));
    }
    assert_verify_clean(l);
    completions_free(seen);
}

/* Naive mode has no writer thread: the call is applied on the caller's thread and done runs
 * before the call returns. */
static void test_naive_mode_calls_done_before_returning(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    completions *seen = completions_new();
    slot s = {seen, 0};
    cg_charge_input in = {.member_id = "m1", .idempotency_key = "k1", .model = "midjourney"};
    static cg_charge out;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_charge_async(l, &in, &out, NULL, on_done, &s, &err), err);
    assert_int_equal(seen->count, 1); /* no wait */
    assert_int_equal(seen->rc[0], CG_OK);
    assert_int_equal(out.held, 10);
    completions_free(seen);
}

/* Calls still queued when the ledger closes are applied and completed, none lost; after the
 * close their effects are in the database. */
static void test_close_completes_every_queued_call(void **state) {
    cg_ledger *l = *state;
    enum { CHARGES = 300 };
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    put_member(l, "m2", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100000);
    grant_simple(l, "m2", 100000);
    completions *seen = completions_new();
    static slot s[CHARGES];
    static cg_charge_input in[CHARGES];
    static cg_charge out[CHARGES];
    static char keys[CHARGES][24];
    cg_err err = {0};
    for (int i = 0; i < CHARGES; i++) {
        s[i] = (slot){seen, i};
        snprintf(keys[i], sizeof keys[i], "q%d", i);
        in[i] = (cg_charge_input){.member_id = i % 2 ? "m1" : "m2", .idempotency_key = keys[i],
                                  .model = "midjourney"};
        assert_cg_ok(cg_ledger_charge_async(l, &in[i], &out[i], NULL, on_done, &s[i], &err), err);
    }
    cg_ledger_close(l);
    *state = NULL;
    assert_int_equal(seen->count, CHARGES); /* close returned after every done */
    for (int i = 0; i < CHARGES; i++) {
        assert_int_equal(seen->calls[i], 1);
        assert_int_equal(seen->rc[i], CG_OK);
    }
    const char *db = getenv("CG_TEST_DB");
    if (db && strncmp(db, "sqlite:", 7) != 0) { /* reopening the same place is SQLite's */
        completions_free(seen);
        return;
    }
    char dsn[600];
    snprintf(dsn, sizeof dsn, "sqlite:%s", fx_path);
    cg_ledger_config c;
    fx_config(&c, true);
    assert_cg_ok(cg_ledger_open_dsn(dsn, &c, &l, &err), err);
    *state = l;
    assert_int_equal(balance_of(l, "m1")->held, 10 * (CHARGES / 2));
    assert_int_equal(balance_of(l, "m2")->held, 10 * (CHARGES / 2));
    assert_verify_clean(l);
    completions_free(seen);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_async_charge_and_capture_match_the_blocking_calls,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_async_refusals_come_through_done, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_async_calls_in_flight_from_one_thread,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_naive_mode_calls_done_before_returning,
                                        fx_setup_naive, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_completes_every_queued_call, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
