/* test_shards.c — a SQLite ledger spread over several files: members land in every shard and
 * stay where they landed across reopening, verify adds the shards up, and the layout is
 * defended — a missing shard file, a file of another ledger, opening a shard file on its own,
 * and a single-file database from before shards are each refused or kept as they are, never
 * silently recreated empty. SQLite only (a PostgreSQL ledger's shards are connections). */
#include "ledger_fixture.h"

#include <sqlite3.h>

static bool on_sqlite(void) {
    const char *dsn = getenv("CG_TEST_DB");
    return !dsn || !strncmp(dsn, "sqlite:", 7);
}

static int open_at(const char *dsn, int shards, cg_ledger **out, cg_err *err) {
    cg_ledger_config c;
    fx_config(&c, true);
    c.shards = shards;
    return cg_ledger_open_dsn(dsn, &c, out, err);
}

/* Rows in `table` of shard file i; -1 when the file does not exist. */
static int rows_in(int shard, const char *table) {
    char file[560], sql[128];
    fx_shard_file(shard, file, sizeof file);
    if (access(file, F_OK) != 0) return -1;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void fresh(char *dsn, size_t bytes) {
    fx_fresh_dsn(dsn, bytes);
    fx_now_us = T0;
}

static void add_members(cg_ledger *l, int n) {
    for (int m = 0; m < n; m++) {
        char id[32], key[32];
        snprintf(id, sizeof id, "member-%d", m);
        put_member(l, id, "free", "monthly", T0 - DAY_US, 0);
        grant_simple(l, id, 100);
        snprintf(key, sizeof key, "c-%d", m);
        charge_mj(l, id, key);
    }
}

/* A fresh ledger at dsn over `shards` files with `members` members (each charged once), closed. */
static void populated(char *dsn, size_t dsn_bytes, int shards, int members) {
    fresh(dsn, dsn_bytes);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(open_at(dsn, shards, &l, &err), err);
    add_members(l, members);
    assert_verify_clean(l);
    cg_ledger_close(l);
}

static void test_members_spread_over_every_shard_and_stay_there(void **state) {
    (void)state;
    if (!on_sqlite()) return;
    char dsn[600];
    fresh(dsn, sizeof dsn);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(open_at(dsn, 3, &l, &err), err);
    add_members(l, 60);
    cg_verify_report r;
    assert_cg_ok(cg_ledger_verify(l, &r, &err), err);
    assert_int_equal(r.members, 60);
    assert_int_equal(r.grants, 60);
    assert_int_equal(r.charges, 60);
    cg_ledger_close(l);
    int total = 0;
    for (int i = 0; i < 3; i++) {
        int n = rows_in(i, "members");
        assert_true(n > 5); /* 60 members over 3 shards: each holds a fair share */
        total += n;
    }
    assert_int_equal(total, 60);
    assert_int_equal(rows_in(3, "members"), -1);

    /* Reopened asking for another count: the database keeps its 3, every member is found. */
    assert_cg_ok(open_at(dsn, 5, &l, &err), err);
    for (int m = 0; m < 60; m++) {
        char id[32];
        snprintf(id, sizeof id, "member-%d", m);
        assert_int_equal(balance_of(l, id)->available, 90);
    }
    assert_cg_ok(cg_ledger_verify(l, &r, &err), err);
    assert_int_equal(r.members, 60);
    cg_ledger_close(l);
    assert_int_equal(rows_in(3, "members"), -1);
    fx_remove_files();
}

static void test_verify_reports_a_problem_in_any_shard(void **state) {
    (void)state;
    if (!on_sqlite()) return;
    char dsn[600];
    populated(dsn, sizeof dsn, 2, 20);
    cg_ledger *l = NULL;
    cg_err err = {0};
    char file[560];
    fx_shard_file(1, file, sizeof file);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE grants SET remaining = remaining + 1", 0, 0, 0),
                     SQLITE_OK);
    int changed = sqlite3_changes(db);
    sqlite3_close(db);
    assert_true(changed > 0);
    assert_cg_ok(open_at(dsn, 0, &l, &err), err);
    cg_verify_report r;
    assert_int_equal(cg_ledger_verify(l, &r, &err), CG_ECONFLICT);
    assert_int_equal(r.problem_count, changed);
    assert_non_null(strstr(err.msg, "difference"));
    assert_int_equal(r.members, 20); /* the clean shard was counted too */
    cg_ledger_close(l);
    fx_remove_files();
}

static void test_a_missing_shard_file_is_refused(void **state) {
    (void)state;
    if (!on_sqlite()) return;
    char dsn[600];
    populated(dsn, sizeof dsn, 2, 10);
    cg_ledger *l = NULL;
    cg_err err = {0};
    char file[560], moved[600];
    fx_shard_file(1, file, sizeof file);
    snprintf(moved, sizeof moved, "%s.away", file);
    assert_int_equal(rename(file, moved), 0);
    assert_int_equal(open_at(dsn, 0, &l, &err), CG_EIO);
    assert_null(l);
    assert_non_null(strstr(err.msg, "is missing"));
    assert_non_null(strstr(err.msg, ".shard1"));
    assert_int_equal(access(file, F_OK), -1); /* not recreated empty */
    assert_int_equal(rename(moved, file), 0);
    assert_cg_ok(open_at(dsn, 0, &l, &err), err);
    assert_verify_clean(l);
    cg_ledger_close(l);
    fx_remove_files();
}

static void test_a_shard_of_another_ledger_is_refused(void **state) {
    (void)state;
    if (!on_sqlite()) return;
    char dsn_a[600], dsn_b[600], path_a[512];
    fresh(dsn_a, sizeof dsn_a);
    snprintf(path_a, sizeof path_a, "%s", fx_path);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(open_at(dsn_a, 2, &l, &err), err);
    cg_ledger_close(l);
    populated(dsn_b, sizeof dsn_b, 2, 4);
    /* b's second file replaced by a's */
    char file_a[600], file_b[560];
    snprintf(file_a, sizeof file_a, "%s.shard1", path_a);
    fx_shard_file(1, file_b, sizeof file_b);
    char saved[600];
    snprintf(saved, sizeof saved, "%s.saved", file_b);
    assert_int_equal(rename(file_b, saved), 0);
    assert_int_equal(rename(file_a, file_b), 0);
    assert_int_equal(open_at(dsn_b, 0, &l, &err), CG_EINVAL);
    assert_non_null(strstr(err.msg, "expected shard 1 of 2"));
    assert_int_equal(rename(saved, file_b), 0);
    /* a shard file opened as if it were the ledger */
    char dsn_shard[620];
    snprintf(dsn_shard, sizeof dsn_shard, "%s.shard1", dsn_b);
    assert_int_equal(open_at(dsn_shard, 0, &l, &err), CG_EINVAL);
    assert_non_null(strstr(err.msg, "not the first shard"));
    fx_remove_files();
    fx_remove_db(path_a);
}

/* A database written before shards (one file, no shard row) stays one file. */
static void test_a_single_file_ledger_stays_single(void **state) {
    (void)state;
    if (!on_sqlite()) return;
    char dsn[600];
    populated(dsn, sizeof dsn, 1, 6);
    cg_ledger *l = NULL;
    cg_err err = {0};
    sqlite3 *db = NULL; /* as a version-2 database would look: no shard row */
    assert_int_equal(sqlite3_open(fx_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DELETE FROM shard", 0, 0, 0), SQLITE_OK);
    sqlite3_close(db);
    assert_cg_ok(open_at(dsn, 4, &l, &err), err);
    for (int m = 0; m < 6; m++) {
        char id[32];
        snprintf(id, sizeof id, "member-%d", m);
        assert_int_equal(balance_of(l, id)->available, 90);
    }
    cg_ledger_close(l);
    assert_int_equal(rows_in(1, "members"), -1);
    assert_int_equal(rows_in(0, "shard"), 1);
    fx_remove_files();
}

/* cg_ledger_open takes one store: it refuses a store that is one shard of several. */
static void test_one_store_of_a_sharded_ledger_is_refused(void **state) {
    (void)state;
    if (!on_sqlite()) return;
    char dsn[600];
    populated(dsn, sizeof dsn, 2, 4);
    cg_store *store = NULL;
    cg_err err = {0};
    assert_cg_ok(cg_store_open(dsn, &store, &err), err);
    cg_ledger_config c;
    fx_config(&c, true);
    cg_ledger *l = NULL;
    assert_int_equal(cg_ledger_open(store, &c, &l, &err), CG_EINVAL); /* takes the store */
    assert_null(l);
    assert_non_null(strstr(err.msg, "shard 0 of 2"));
    fx_remove_files();
    fresh(dsn, sizeof dsn); /* a fresh store opened alone becomes a one-shard ledger for good */
    assert_cg_ok(cg_store_open(dsn, &store, &err), err);
    assert_cg_ok(cg_ledger_open(store, &c, &l, &err), err);
    add_members(l, 3);
    cg_ledger_close(l);
    assert_cg_ok(open_at(dsn, 4, &l, &err), err);
    assert_int_equal(balance_of(l, "member-2")->available, 90);
    cg_ledger_close(l);
    assert_int_equal(rows_in(1, "members"), -1);
    fx_remove_files();
}

static void test_shard_count_is_bounded(void **state) {
    (void)state;
    char dsn[600];
    fresh(dsn, sizeof dsn);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_int_equal(open_at(dsn, CG_LEDGER_SHARDS_MAX + 1, &l, &err), CG_EINVAL);
    assert_non_null(strstr(err.msg, "shards"));
    assert_int_equal(open_at(dsn, -1, &l, &err), CG_EINVAL);
    fx_remove_files();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members_spread_over_every_shard_and_stay_there),
        cmocka_unit_test(test_verify_reports_a_problem_in_any_shard),
        cmocka_unit_test(test_a_missing_shard_file_is_refused),
        cmocka_unit_test(test_a_shard_of_another_ledger_is_refused),
        cmocka_unit_test(test_a_single_file_ledger_stays_single),
        cmocka_unit_test(test_one_store_of_a_sharded_ledger_is_refused),
        cmocka_unit_test(test_shard_count_is_bounded),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
