/* test_exactly_once.c — idempotency (replay returns the same object with no second effect,
 * the same key with another request is a conflict, keys live ≥ 24 h), never negative under
 * concurrency (many threads charging one member), durability across close/reopen, and
 * verify catching a tampered row. */
#include "ledger_fixture.h"

#include <pthread.h>
#include <sqlite3.h>

static void test_charge_replay_returns_same_charge_once(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge_input in = {.member_id = "m1", .idempotency_key = "k1", .model = "midjourney"};
    cg_charge a, b;
    bool replayed = true;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_charge(l, &in, &a, &replayed, &err), err);
    assert_false(replayed);
    assert_cg_ok(cg_ledger_charge(l, &in, &b, &replayed, &err), err);
    assert_true(replayed);
    assert_string_equal(a.charge_id, b.charge_id);
    assert_int_equal(balance_of(l, "m1")->held, 10);
}

static void test_charge_same_key_other_request_conflicts(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 1000);
    cg_charge c;
    cg_err err = {0};
    assert_cg_ok(charge_try(l, "m1", "k1", "midjourney", NULL, &c, &err), err);
    assert_int_equal(charge_try(l, "m1", "k1", "sora", NULL, &c, &err), CG_ECONFLICT);
    assert_string_equal(err.field, "idempotency_key");
    /* the key's answer comes before any refusal the other request would meet on its own:
     * a model the policy does not know, a member with no state, more credits than there are */
    assert_int_equal(charge_try(l, "m1", "k1", "no-such-model", NULL, &c, &err), CG_ECONFLICT);
    assert_string_equal(err.field, "idempotency_key");
    assert_int_equal(charge_try(l, "nobody", "k1", "midjourney", NULL, &c, &err), CG_ENOTFOUND);
    put_member(l, "m2", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m2", 10);
    assert_cg_ok(charge_try(l, "m2", "k2", "midjourney", NULL, &c, &err), err);
    assert_int_equal(balance_of(l, "m2")->available, 0);
    assert_int_equal(charge_try(l, "m2", "k2", "sora", NULL, &c, &err), CG_ECONFLICT);
    assert_string_equal(err.field, "idempotency_key");
    assert_int_equal(balance_of(l, "m1")->held, 10);
}

static void test_capture_replay_has_no_second_effect(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1"), done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "cap", -1, &done, &err), err);
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "cap", -1, &done, &err), err);
    assert_int_equal(done.status, CG_CHARGE_CAPTURED);
    assert_int_equal(settle_try(l, 'c', "m1", c.charge_id, "cap", 5, &done, &err), CG_ECONFLICT);
    /* the charge is no longer held, yet the key's answer comes first: a replay, a conflict */
    assert_int_equal(settle_try(l, 'r', "m1", c.charge_id, "cap", -1, &done, &err), CG_ECONFLICT);
    assert_string_equal(err.field, "idempotency_key");
    assert_int_equal(settle_try(l, 'r', "m1", c.charge_id, "rel", -1, &done, &err), CG_ESTATE);
    assert_int_equal(settle_try(l, 'c', "m1", "ch_t0000000000000unknown", "cap", -1, &done,
                                &err), CG_ECONFLICT);
    /* a refund replay returns credits once */
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "ref", 3, &done, &err), err);
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "ref", 3, &done, &err), err);
    assert_int_equal(done.refunded, 3);
    assert_int_equal(balance_of(l, "m1")->available, 93);
    assert_verify_clean(l);
}

static void test_grant_replay_adds_credits_once(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    cg_grant_input in = {.member_id = "m1", .idempotency_key = "g", .credits = 50,
                         .priority = -1};
    cg_grant a, b;
    bool replayed = false;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_grant(l, &in, &a, NULL, &err), err);
    assert_cg_ok(cg_ledger_grant(l, &in, &b, &replayed, &err), err);
    assert_true(replayed);
    assert_string_equal(a.grant_id, b.grant_id);
    assert_int_equal(balance_of(l, "m1")->available, 50);
    in.credits = 51;
    assert_int_equal(cg_ledger_grant(l, &in, &b, NULL, &err), CG_ECONFLICT);
}

/* Keys are member-scoped: the same key for another member is another request. */
static void test_keys_are_scoped_to_the_member(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    put_member(l, "m2", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    grant_simple(l, "m2", 100);
    cg_charge a = charge_mj(l, "m1", "same");
    cg_charge b = charge_mj(l, "m2", "same");
    assert_string_not_equal(a.charge_id, b.charge_id);
}

/* Pair: a key replays just before 24 h; after 24 h it is purged and the key is new again. */
static void test_key_kept_24_hours(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_full(l, "m1", 100, CG_CATEGORY_PAID, -1, 0, 0);
    cg_charge first = charge_mj(l, "m1", "k1"), again;
    cg_err err = {0};
    fx_now_us = T0 + DAY_US - 1;
    bool replayed = false;
    cg_charge_input in = {.member_id = "m1", .idempotency_key = "k1", .model = "midjourney"};
    assert_cg_ok(cg_ledger_charge(l, &in, &again, &replayed, &err), err);
    assert_true(replayed);
    assert_string_equal(again.charge_id, first.charge_id);
    fx_now_us = T0 + DAY_US + 1;
    balance_of(l, "m1"); /* a batch: the sweep purges the key */
    assert_cg_ok(cg_ledger_charge(l, &in, &again, &replayed, &err), err);
    assert_false(replayed);
    assert_string_not_equal(again.charge_id, first.charge_id);
}

/* ---- never negative: many threads, one member, fixed balance ---- */

#define RACE_THREADS 16
#define RACE_CHARGES_PER_THREAD 40
#define RACE_BALANCE 2000 /* 200 Midjourney charges of 10 out of 640 attempts */

typedef struct race {
    cg_ledger *ledger;
    int thread;
    int captured;
    int refused;
    int other;
} race;

static void *race_main(void *arg) {
    race *r = arg;
    for (int i = 0; i < RACE_CHARGES_PER_THREAD; i++) {
        char key[64], cap[64];
        snprintf(key, sizeof key, "t%d-c%d", r->thread, i);
        snprintf(cap, sizeof cap, "t%d-c%d-cap", r->thread, i);
        cg_charge_input in = {.member_id = "m1", .idempotency_key = key, .model = "midjourney"};
        cg_charge *c = malloc(sizeof *c);
        cg_err err;
        int rc = cg_ledger_charge(r->ledger, &in, c, NULL, &err);
        if (rc == CG_EINSUFFICIENT) r->refused++;
        else if (rc) r->other++;
        else {
            cg_settle_input s = {.member_id = "m1", .charge_id = c->charge_id,
                                 .idempotency_key = cap, .credits = -1};
            if (cg_ledger_capture(r->ledger, &s, c, NULL, &err) == CG_OK) r->captured++;
            else r->other++;
        }
        free(c);
    }
    return NULL;
}

static void run_race(cg_ledger *l) {
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_full(l, "m1", RACE_BALANCE / 2, CG_CATEGORY_PROMO, -1, 0, T0 + DAY_US);
    grant_full(l, "m1", RACE_BALANCE / 2, CG_CATEGORY_PAID, -1, 0, 0);
    pthread_t th[RACE_THREADS];
    race r[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        r[i] = (race){.ledger = l, .thread = i};
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
    }
    int captured = 0, refused = 0, other = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(th[i], NULL);
        captured += r[i].captured;
        refused += r[i].refused;
        other += r[i].other;
    }
    assert_int_equal(other, 0);
    assert_int_equal(captured, RACE_BALANCE / 10);
    assert_int_equal(refused, RACE_THREADS * RACE_CHARGES_PER_THREAD - RACE_BALANCE / 10);
    cg_balance *b = balance_of(l, "m1");
    assert_int_equal(b->available, 0);
    assert_int_equal(b->held, 0);
    assert_verify_clean(l);
}

static void test_concurrent_charges_spend_exactly_the_balance(void **state) {
    run_race(*state);
}

static void test_concurrent_charges_naive_mode(void **state) { run_race(*state); }

/* ---- refusals in the middle of a batch: the ops around them apply exactly once ---- */

#define MIXED_THREADS 8
#define MIXED_ROUNDS 30

typedef struct mixed {
    cg_ledger *ledger;
    int thread;
    char ids[MIXED_ROUNDS][CG_OBJECT_ID_BYTES_MAX];
    int failures;
} mixed;

/* Each round: a charge that succeeds on the thread's own member, then one refused for want of
 * credits on a shared empty member — so batches mix successes and refusals. */
static void *mixed_main(void *arg) {
    mixed *m = arg;
    char member[32];
    snprintf(member, sizeof member, "rich-%d", m->thread);
    for (int i = 0; i < MIXED_ROUNDS; i++) {
        char key[32], poor_key[32];
        snprintf(key, sizeof key, "ok-%d-%d", m->thread, i);
        snprintf(poor_key, sizeof poor_key, "no-%d-%d", m->thread, i);
        cg_charge_input ok = {.member_id = member, .idempotency_key = key,
                              .model = "midjourney"};
        cg_charge_input no = {.member_id = "poor", .idempotency_key = poor_key,
                              .model = "midjourney"};
        cg_charge *c = malloc(sizeof *c);
        cg_err err;
        if (cg_ledger_charge(m->ledger, &ok, c, NULL, &err) != CG_OK) m->failures++;
        else snprintf(m->ids[i], sizeof m->ids[i], "%s", c->charge_id);
        if (cg_ledger_charge(m->ledger, &no, c, NULL, &err) != CG_EINSUFFICIENT) m->failures++;
        free(c);
    }
    return NULL;
}

static void test_refusals_amid_a_batch_leave_the_rest_applied_once(void **state) {
    cg_ledger *l = *state;
    put_member(l, "poor", "free", "monthly", T0 - DAY_US, 0);
    for (int t = 0; t < MIXED_THREADS; t++) {
        char member[32];
        snprintf(member, sizeof member, "rich-%d", t);
        put_member(l, member, "free", "monthly", T0 - DAY_US, 0);
        grant_simple(l, member, 10 * MIXED_ROUNDS);
    }
    pthread_t th[MIXED_THREADS];
    static mixed m[MIXED_THREADS];
    for (int t = 0; t < MIXED_THREADS; t++) {
        memset(&m[t], 0, sizeof m[t]);
        m[t].ledger = l;
        m[t].thread = t;
        assert_int_equal(pthread_create(&th[t], NULL, mixed_main, &m[t]), 0);
    }
    for (int t = 0; t < MIXED_THREADS; t++) pthread_join(th[t], NULL);
    cg_charge *c = malloc(sizeof *c);
    for (int t = 0; t < MIXED_THREADS; t++) {
        assert_int_equal(m[t].failures, 0);
        char member[32];
        snprintf(member, sizeof member, "rich-%d", t);
        cg_balance *b = balance_of(l, member);
        assert_int_equal(b->available, 0); /* every charge held once: all credits held */
        assert_int_equal(b->held, 10 * MIXED_ROUNDS);
        for (int i = 0; i < MIXED_ROUNDS; i++) { /* the id each caller was told is the one kept */
            cg_err err = {0};
            assert_cg_ok(cg_ledger_charge_get(l, member, m[t].ids[i], c, &err), err);
            assert_int_equal(c->held, 10);
            char key[32];
            snprintf(key, sizeof key, "ok-%d-%d", t, i);
            cg_charge_input again = {.member_id = member, .idempotency_key = key,
                                     .model = "midjourney"};
            bool replayed = false;
            assert_cg_ok(cg_ledger_charge(l, &again, c, &replayed, &err), err);
            assert_true(replayed);
            assert_string_equal(c->charge_id, m[t].ids[i]);
        }
    }
    free(c);
    cg_balance *poor = balance_of(l, "poor");
    assert_int_equal(poor->available, 0);
    assert_int_equal(poor->held, 0);
    assert_verify_clean(l);
    cg_ledger_stats st; /* batches rolled back and applied again counted each hold once */
    cg_ledger_stats_get(l, &st);
    const char *dsn_env = getenv("CG_TEST_DB");
    if (!dsn_env || !strncmp(dsn_env, "sqlite:", 7))
        assert_int_equal(st.holds_open, MIXED_THREADS * MIXED_ROUNDS);
}

/* ---- durability and verify ---- */

static void test_committed_state_survives_reopen(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    cg_charge c = charge_mj(l, "m1", "k1");
    const char *dsn_env = getenv("CG_TEST_DB");
    if (dsn_env && strncmp(dsn_env, "sqlite:", 7) != 0) return; /* file reopen is SQLite's */
    cg_ledger_close(l);
    cg_ledger_config cfg;
    fx_config(&cfg, true);
    char dsn[600];
    snprintf(dsn, sizeof dsn, "sqlite:%s", fx_path);
    cg_err err = {0};
    assert_cg_ok(cg_ledger_open_dsn(dsn, &cfg, &l, &err), err);
    *state = l;
    cg_charge got;
    assert_cg_ok(cg_ledger_charge_get(l, "m1", c.charge_id, &got, &err), err);
    assert_int_equal(got.held, 10);
    assert_int_equal(balance_of(l, "m1")->available, 90);
    assert_verify_clean(l);
}

/* Closes the ledger (its files then hold every call: a clean close commits the redo log's
 * batches) and reopens it at the same place. */
static cg_ledger *reopen_closed(void) {
    cg_ledger_config cfg;
    fx_config(&cfg, true);
    char dsn[600];
    snprintf(dsn, sizeof dsn, "sqlite:%s", fx_path);
    cg_err err = {0};
    cg_ledger *l = NULL;
    assert_cg_ok(cg_ledger_open_dsn(dsn, &cfg, &l, &err), err);
    return l;
}

static cg_ledger *reopen(cg_ledger *l) {
    cg_ledger_close(l);
    return reopen_closed();
}

/* Runs sql on every shard file of the ledger (behind its back). */
static void tamper(const char *sql) {
    for (int i = 0; i < CG_LEDGER_SHARDS_MAX; i++) {
        char file[560];
        fx_shard_file(i, file, sizeof file);
        if (access(file, F_OK) != 0) continue;
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
        char *msg = NULL;
        int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK) fail_msg("tamper %s: %s", file, msg);
        sqlite3_close(db);
    }
}

static void test_verify_reports_a_changed_balance(void **state) {
    cg_ledger *l = *state;
    const char *dsn_env = getenv("CG_TEST_DB");
    if (dsn_env && strncmp(dsn_env, "sqlite:", 7) != 0) return;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    charge_mj(l, "m1", "k1");
    assert_verify_clean(l);
    cg_ledger_close(l); /* an open ledger holds the files' write lock between flushes */
    *state = NULL;
    tamper("UPDATE grants SET remaining = remaining + 5");
    l = *state = reopen_closed();
    cg_verify_report r;
    cg_err err = {0};
    assert_int_equal(cg_ledger_verify(l, &r, &err), CG_ECONFLICT);
    assert_int_equal(r.problem_count, 1);
    assert_non_null(strstr(r.problems[0], "remaining 105"));
}

static void test_journal_refuses_edits(void **state) {
    cg_ledger *l = *state;
    const char *dsn_env = getenv("CG_TEST_DB");
    if (dsn_env && strncmp(dsn_env, "sqlite:", 7) != 0) return;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 100);
    *state = l = reopen(l); /* the files hold what the ledger acknowledged */
    int files_with_entries = 0;
    for (int i = 0; i < CG_LEDGER_SHARDS_MAX; i++) { /* m1's entries are in one shard file */
        char file[560];
        fx_shard_file(i, file, sizeof file);
        if (access(file, F_OK) != 0) continue;
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM journal", -1, &st, 0),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        bool has_entries = sqlite3_column_int(st, 0) > 0;
        sqlite3_finalize(st);
        if (has_entries) {
            files_with_entries++;
            assert_int_not_equal(sqlite3_exec(db, "UPDATE journal SET delta_remaining = 1", 0, 0,
                                              0), SQLITE_OK);
            assert_int_not_equal(sqlite3_exec(db, "DELETE FROM journal", 0, 0, 0), SQLITE_OK);
        }
        sqlite3_close(db);
    }
    assert_int_equal(files_with_entries, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_charge_replay_returns_same_charge_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refusals_amid_a_batch_leave_the_rest_applied_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_charge_same_key_other_request_conflicts, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_capture_replay_has_no_second_effect, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_grant_replay_adds_credits_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_keys_are_scoped_to_the_member, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_key_kept_24_hours, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_charges_spend_exactly_the_balance, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_charges_naive_mode, fx_setup_naive, fx_teardown),
        cmocka_unit_test_setup_teardown(test_committed_state_survives_reopen, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_verify_reports_a_changed_balance, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_journal_refuses_edits, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
