/* test_cache.c — the writer's member cache never changes an answer: a tiny cache that evicts on
 * every call, a restart (cold cache) mid-script and no cache at all end with the same balances;
 * another writer's commit is seen; members with more open grants than the cache keeps fall
 * back to the store. Also the charges listing (newest first, 0-credit charges included, page by
 * page), refunds that need a `refund` grant when the member is at the open-grant limit, and
 * idempotency keys past 24 h purged as fast as calls add them; the store's page cache keeps to
 * its configured bound. */
#include "ledger_fixture.h"

#include <pthread.h>
#include <stdint.h>

#define SCRIPT_MEMBERS 6

static int path_seq;

/* A fresh SQLite path of this test's own (two databases in one test), with nothing left at it
 * by an earlier process that had the same pid. */
static void own_path(char *path, size_t bytes) {
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, bytes, "%s/cg-cache-test-%d-%d", dir, (int)getpid(), ++path_seq);
    fx_remove_db(path);
}

static cg_ledger *open_path(const char *path, int cache_members_max) {
    cg_ledger_config c;
    fx_config(&c, true);
    c.cache_members_max = cache_members_max;
    char dsn[600];
    snprintf(dsn, sizeof dsn, "sqlite:%s", path);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_open_dsn(dsn, &c, &l, &err), err);
    return l;
}

static void member_name(int i, char *buf, size_t bytes) { snprintf(buf, bytes, "cm%d", i); }

/* Part `part` of a fixed script over SCRIPT_MEMBERS members: grants of both categories, some
 * expiring, charges captured / released / refunded / left to expire. Keys are deterministic. */
static void run_script(cg_ledger *l, int part) {
    char id[16], key[64];
    cg_err err = {0};
    static cg_charge c, done;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < SCRIPT_MEMBERS; i++) {
            member_name(i, id, sizeof id);
            if (part == 0 && round == 0) {
                put_member(l, id, "free", "monthly", T0 - DAY_US, 0);
                grant_full(l, id, 25, CG_CATEGORY_PROMO, -1, 0, T0 + 2 * HOUR_US);
                grant_full(l, id, 40 + i, CG_CATEGORY_PAID, -1, 0, 0);
            }
            snprintf(key, sizeof key, "p%d-r%d-%s", part, round, id);
            int rc = charge_try(l, id, key, "midjourney", NULL, &c, &err);
            if (rc == CG_EINSUFFICIENT) continue;
            assert_cg_ok(rc, err);
            snprintf(key, sizeof key, "p%d-r%d-%s-s", part, round, id);
            int which = (i + round + part) % 4;
            if (which == 0) {
                assert_cg_ok(settle_try(l, 'c', id, c.charge_id, key, 7, &done, &err), err);
                snprintf(key, sizeof key, "p%d-r%d-%s-f", part, round, id);
                assert_cg_ok(settle_try(l, 'f', id, c.charge_id, key, 3, &done, &err), err);
            } else if (which == 1) {
                assert_cg_ok(settle_try(l, 'r', id, c.charge_id, key, 0, &done, &err), err);
            } else if (which == 2) {
                assert_cg_ok(settle_try(l, 'c', id, c.charge_id, key, -1, &done, &err), err);
            } /* 3: left held; the hold TTL releases it */
        }
        fx_now_us += 20 * 60 * CG_US_PER_S; /* past the 15-minute hold TTL, toward the expiry */
    }
}

typedef struct outcome {
    int64_t available[SCRIPT_MEMBERS], held[SCRIPT_MEMBERS], grants[SCRIPT_MEMBERS];
} outcome;

static outcome outcome_of(cg_ledger *l) {
    outcome o = {0};
    char id[16];
    for (int i = 0; i < SCRIPT_MEMBERS; i++) {
        member_name(i, id, sizeof id);
        cg_balance *b = balance_of(l, id);
        o.available[i] = b->available;
        o.held[i] = b->held;
        o.grants[i] = b->grant_count;
    }
    return o;
}

static void assert_same(const outcome *a, const outcome *b) {
    for (int i = 0; i < SCRIPT_MEMBERS; i++) {
        assert_int_equal(a->available[i], b->available[i]);
        assert_int_equal(a->held[i], b->held[i]);
        assert_int_equal(a->grants[i], b->grants[i]);
    }
}

/* Same script: no cache, a 2-member cache (evicts all the time), the default cache. */
static void test_tiny_cache_gives_the_same_results_as_none(void **state) {
    (void)state;
    int sizes[3] = {0, 2, CG_LEDGER_CACHE_MEMBERS_DEFAULT};
    outcome o[3];
    for (int k = 0; k < 3; k++) {
        char path[512];
        own_path(path, sizeof path);
        fx_now_us = T0;
        cg_ledger *l = open_path(path, sizes[k]);
        run_script(l, 0);
        run_script(l, 1);
        o[k] = outcome_of(l);
        assert_verify_clean(l);
        cg_ledger_close(l);
        fx_remove_db(path);
    }
    assert_same(&o[0], &o[1]);
    assert_same(&o[0], &o[2]);
}

/* Restart between the two parts (cold cache) against one ledger kept open (warm cache). */
static void test_restart_with_cold_cache_gives_the_same_results(void **state) {
    (void)state;
    char warm_path[512], cold_path[512];
    own_path(warm_path, sizeof warm_path);
    own_path(cold_path, sizeof cold_path);
    fx_now_us = T0;
    cg_ledger *warm = open_path(warm_path, CG_LEDGER_CACHE_MEMBERS_DEFAULT);
    run_script(warm, 0);
    run_script(warm, 1);
    outcome a = outcome_of(warm);
    cg_ledger_close(warm);
    fx_now_us = T0;
    cg_ledger *cold = open_path(cold_path, CG_LEDGER_CACHE_MEMBERS_DEFAULT);
    run_script(cold, 0);
    cg_ledger_close(cold);
    cold = open_path(cold_path, CG_LEDGER_CACHE_MEMBERS_DEFAULT);
    run_script(cold, 1);
    outcome b = outcome_of(cold);
    assert_verify_clean(cold);
    cg_ledger_close(cold);
    assert_same(&a, &b);
    fx_remove_db(warm_path);
    fx_remove_db(cold_path);
}

/* A second writer on the same file (another process, the CLI): the first sees its grant. */
static void test_another_writers_commit_empties_the_cache(void **state) {
    (void)state;
    char path[512];
    own_path(path, sizeof path);
    fx_now_us = T0;
    cg_ledger *a = open_path(path, CG_LEDGER_CACHE_MEMBERS_DEFAULT);
    put_member(a, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(a, "m1", 10);
    charge_mj(a, "m1", "k1"); /* a's cache now says: nothing left */
    cg_ledger *b = open_path(path, CG_LEDGER_CACHE_MEMBERS_DEFAULT);
    grant_simple(b, "m1", 10);
    cg_ledger_close(b);
    charge_mj(a, "m1", "k2"); /* would be CG_EINSUFFICIENT on a stale cache */
    assert_int_equal(balance_of(a, "m1")->held, 20);
    assert_verify_clean(a);
    cg_ledger_close(a);
    fx_remove_db(path);
}

/* More open grants than the cache keeps (LEDGER_CACHE_GRANTS_MAX = 4): spending order holds. */
static void test_member_with_many_grants_spends_in_order(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    cg_grant g[6];
    for (int i = 0; i < 6; i++) g[i] = grant_full(l, "m1", 3, CG_CATEGORY_PAID, 60 - i, 0, 0);
    cg_charge c = charge_mj(l, "m1", "k1"); /* 10 credits: priorities 55, 56, 57, then 1 of 58 */
    assert_int_equal(c.part_count, 4);
    assert_string_equal(c.parts[0].grant_id, g[5].grant_id);
    assert_string_equal(c.parts[3].grant_id, g[2].grant_id);
    assert_int_equal(c.parts[3].held, 1);
    cg_charge done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), err);
    assert_int_equal(balance_of(l, "m1")->available, 8);
    assert_int_equal(balance_of(l, "m1")->grant_count, 3);
    assert_verify_clean(l);
}

/* ---- the charges listing ---- */

static void test_charges_list_newest_first_with_unlimited_ones(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "premium", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 1000);
    char ids[5][CG_OBJECT_ID_BYTES_MAX];
    cg_charge c;
    cg_err err = {0};
    for (int i = 0; i < 5; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        if (i % 2) assert_cg_ok(charge_try(l, "m1", key, "gpt-image-2.0", "low", &c, &err), err);
        else assert_cg_ok(charge_try(l, "m1", key, "midjourney", NULL, &c, &err), err);
        snprintf(ids[i], sizeof ids[i], "%s", c.charge_id);
        fx_now_us += CG_US_PER_S;
    }
    cg_charge *page = calloc(2, sizeof *page);
    char next[CG_CHARGES_CURSOR_BYTES_MAX], before[CG_CHARGES_CURSOR_BYTES_MAX] = "";
    int count = 0, seen = 0;
    do {
        assert_cg_ok(cg_ledger_charges(l, "m1", before, 2, page, &count, next, &err), err);
        for (int i = 0; i < count; i++, seen++) {
            assert_string_equal(page[i].charge_id, ids[4 - seen]);
            assert_int_equal(page[i].credits, (4 - seen) % 2 ? 0 : 10);
            if ((4 - seen) % 2) assert_true(page[i].items[0].unlimited);
        }
        snprintf(before, sizeof before, "%s", next);
    } while (next[0]);
    assert_int_equal(seen, 5);
    free(page);
}

static void test_charges_list_refuses_bad_input(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    cg_charge *page = calloc(1, sizeof *page);
    char next[CG_CHARGES_CURSOR_BYTES_MAX];
    int count = 7;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_charges(l, "m1", NULL, 1, page, &count, next, &err), err);
    assert_int_equal(count, 0);
    assert_string_equal(next, "");
    assert_int_equal(cg_ledger_charges(l, "m1", "garbage", 1, page, &count, next, &err),
                     CG_EINVAL);
    assert_int_equal(cg_ledger_charges(l, "m1", NULL, 0, page, &count, next, &err), CG_EINVAL);
    assert_int_equal(cg_ledger_charges(l, "m1", NULL, CG_CHARGES_PAGE_MAX + 1, page, &count,
                                       next, &err), CG_EINVAL);
    assert_int_equal(cg_ledger_charges(l, "nobody", NULL, 1, page, &count, next, &err),
                     CG_ENOTFOUND);
    free(page);
}

/* ---- refunds at the open-grant limit ---- */

static void test_refund_at_open_grant_limit_succeeds(void **state) {
    cg_ledger *l = *state;
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_full(l, "m1", 10, CG_CATEGORY_PROMO, 0, 0, T0 + HOUR_US); /* spent first, expires */
    cg_charge c = charge_mj(l, "m1", "k1");
    cg_charge done;
    cg_err err = {0};
    assert_cg_ok(settle_try(l, 'c', "m1", c.charge_id, "k2", -1, &done, &err), err);
    for (int i = 0; i < CG_GRANTS_OPEN_MAX; i++) grant_simple(l, "m1", 1);
    fx_now_us = T0 + 2 * HOUR_US; /* the source grant expired */
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "k3", 4, &done, &err), err);
    assert_int_equal(balance_of(l, "m1")->grant_count, CG_GRANTS_OPEN_MAX + 1);
    assert_cg_ok(settle_try(l, 'f', "m1", c.charge_id, "k4", 6, &done, &err), err); /* merged */
    cg_balance *b = balance_of(l, "m1");
    assert_int_equal(b->grant_count, CG_GRANTS_OPEN_MAX + 1);
    assert_int_equal(b->available_promo, 10);
    assert_int_equal(done.refunded, 10);
    cg_grant_input in = {.member_id = "m1", .idempotency_key = "more", .credits = 1,
                         .priority = -1};
    cg_grant g;
    assert_int_equal(cg_ledger_grant(l, &in, &g, NULL, &err), CG_ELIMIT); /* grants still are */
    assert_verify_clean(l);
}

/* ---- idempotency keys past 24 h go as fast as calls add them, not 64 per sweep ---- */

static void test_old_keys_are_purged_in_step_with_calls(void **state) {
    (void)state;
    char path[512];
    own_path(path, sizeof path);
    fx_now_us = T0;
    cg_ledger_config c;
    fx_config(&c, true);
    c.sweep_interval_us = HOUR_US; /* one sweep in the test's whole day after */
    char dsn[600];
    snprintf(dsn, sizeof dsn, "sqlite:%s", path);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_open_dsn(dsn, &c, &l, &err), err);
    put_member(l, "m1", "free", "monthly", T0 - DAY_US, 0);
    grant_simple(l, "m1", 2000);
    char key[32];
    for (int i = 0; i < 150; i++) {
        snprintf(key, sizeof key, "old-%03d", i); /* purged in key order: old-149 last */
        charge_mj(l, "m1", key);
    }
    fx_now_us = T0 + DAY_US + 1;
    for (int i = 0; i < 3; i++) balance_of(l, "m1"); /* three batches */
    cg_charge again;
    bool replayed = true;
    cg_charge_input in = {.member_id = "m1", .idempotency_key = "old-000", .model = "midjourney"};
    assert_cg_ok(cg_ledger_charge(l, &in, &again, &replayed, &err), err);
    assert_false(replayed);
    in.idempotency_key = "old-149";
    assert_cg_ok(cg_ledger_charge(l, &in, &again, &replayed, &err), err);
    assert_false(replayed);
    assert_verify_clean(l);
    cg_ledger_close(l);
    fx_remove_db(path);
}

/* ---- big transactions: the WAL write gathering (src/store/sqlite.c) flushes in pieces ---- */

#define BIG_THREADS 32
#define BIG_MEMBERS_PER_THREAD 40

static void *big_main(void *arg) {
    cg_ledger *l = ((void **)arg)[0];
    int t = (int)(intptr_t)((void **)arg)[1];
    for (int i = 0; i < BIG_MEMBERS_PER_THREAD; i++) {
        char id[32], key[48];
        snprintf(id, sizeof id, "big-%d-%d", t, i);
        snprintf(key, sizeof key, "put-%s", id);
        cg_member_put_input m = {.member_id = id, .idempotency_key = key, .plan = "free",
                                 .billing = "monthly", .joined_at_us = T0 - DAY_US};
        cg_member_state ms;
        cg_err err = {0};
        if (cg_ledger_member_put(l, &m, &ms, NULL, &err)) return (void *)1;
        snprintf(key, sizeof key, "grant-%s", id);
        cg_grant_input g = {.member_id = id, .idempotency_key = key, .credits = 100,
                            .priority = -1, .note = "a note long enough to fill the WAL"};
        cg_grant gr;
        if (cg_ledger_grant(l, &g, &gr, NULL, &err)) return (void *)1;
    }
    return NULL;
}

/* Many callers at once: batches whose WAL writes exceed the 128 KiB a single write may carry. */
static void test_large_batches_commit_and_survive_reopen(void **state) {
    (void)state;
    char path[512];
    own_path(path, sizeof path);
    fx_now_us = T0;
    cg_ledger *l = open_path(path, CG_LEDGER_CACHE_MEMBERS_DEFAULT);
    pthread_t th[BIG_THREADS];
    void *args[BIG_THREADS][2];
    for (int t = 0; t < BIG_THREADS; t++) {
        args[t][0] = l;
        args[t][1] = (void *)(intptr_t)t;
        assert_int_equal(pthread_create(&th[t], NULL, big_main, args[t]), 0);
    }
    for (int t = 0; t < BIG_THREADS; t++) {
        void *rc;
        pthread_join(th[t], &rc);
        assert_null(rc);
    }
    cg_ledger_close(l);
    l = open_path(path, CG_LEDGER_CACHE_MEMBERS_DEFAULT);
    cg_verify_report r;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_verify(l, &r, &err), err);
    assert_int_equal(r.grants, BIG_THREADS * BIG_MEMBERS_PER_THREAD);
    assert_int_equal(balance_of(l, "big-31-39")->available, 100);
    cg_ledger_close(l);
    fx_remove_db(path);
}


/* The store's page cache keeps to page_cache_mb, split among the shards: the same writes
 * (large prompts, so megabytes of pages) hold ~1 MiB of pages under a 1 MiB bound and many
 * times that under the default bound; a negative bound is refused by name. */
static void test_page_cache_keeps_to_its_bound(void **state) {
    (void)state;
    static char prompt[6001];
    memset(prompt, 'p', sizeof prompt - 1);
    int64_t used[2];
    const int bounds_mb[2] = {1, 0}; /* 0: CG_LEDGER_PAGE_CACHE_MB_DEFAULT */
    for (int k = 0; k < 2; k++) {
        char path[512];
        own_path(path, sizeof path);
        cg_ledger_config c;
        fx_config(&c, true);
        c.shards = 2;
        c.page_cache_mb = bounds_mb[k];
        char dsn[600];
        snprintf(dsn, sizeof dsn, "sqlite:%s", path);
        cg_ledger *l = NULL;
        cg_err err = {0};
        assert_cg_ok(cg_ledger_open_dsn(dsn, &c, &l, &err), err);
        char id[16], key[32];
        for (int m = 0; m < 8; m++) {
            member_name(m, id, sizeof id);
            put_member(l, id, "free", "monthly", T0 - DAY_US, 0);
            grant_simple(l, id, 100000);
        }
        for (int i = 0; i < 600; i++) {
            member_name(i % 8, id, sizeof id);
            snprintf(key, sizeof key, "pc%d", i);
            cg_charge_input in = {.member_id = id, .idempotency_key = key,
                                  .model = "midjourney", .agent_model = "lite",
                                  .agent_kind = "image", .prompt = prompt};
            static cg_charge out;
            assert_cg_ok(cg_ledger_charge(l, &in, &out, NULL, &err), err);
        }
        cg_ledger_stats st;
        cg_ledger_stats_get(l, &st);
        used[k] = st.page_cache_bytes;
        cg_ledger_close(l);
        fx_remove_db(path);
    }
    assert_true(used[0] > 0);
    assert_true(used[0] <= 2 * 1024 * 1024); /* 1 MiB of pages plus SQLite's page headers */
    assert_true(used[1] > 3 * used[0]);

    char path[512];
    own_path(path, sizeof path);
    cg_ledger_config c;
    fx_config(&c, true);
    c.page_cache_mb = -1;
    char dsn[600];
    snprintf(dsn, sizeof dsn, "sqlite:%s", path);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_int_equal(cg_ledger_open_dsn(dsn, &c, &l, &err), CG_EINVAL);
    assert_non_null(strstr(err.msg, "page_cache_mb"));
    assert_null(l);
    fx_remove_db(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_cache_gives_the_same_results_as_none),
        cmocka_unit_test(test_restart_with_cold_cache_gives_the_same_results),
        cmocka_unit_test(test_another_writers_commit_empties_the_cache),
        cmocka_unit_test_setup_teardown(test_member_with_many_grants_spends_in_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_charges_list_newest_first_with_unlimited_ones, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_charges_list_refuses_bad_input, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refund_at_open_grant_limit_succeeds, fx_setup, fx_teardown),
        cmocka_unit_test(test_old_keys_are_purged_in_step_with_calls),
        cmocka_unit_test(test_large_batches_commit_and_survive_reopen),
        cmocka_unit_test(test_page_cache_keeps_to_its_bound),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
