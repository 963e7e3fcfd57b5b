/* test_migrate.c — schema migration 5 of a SQLite ledger (src/store/sqlite.c): charges,
 * journal and idempotency keys move from member-keyed WITHOUT ROWID tables to rowid tables
 * with unique (member_id, ...) indexes, and the time index keeps only the charge ids made
 * before ("ch_" + 16 hex; newer ids sort in creation order). A ledger with every kind of
 * charge and movement is written, its files are put back in the version-4 layout (the tables
 * as migration 1 made them, rows and all, charge ids as they were then), and reopening
 * migrates them: every charge, page of charges, journal entry and balance reads back as
 * before, verify is clean, the journal still refuses edits, a hold made before settles, and
 * new charges list ahead of the old ones. SQLite only. */
#include "ledger_fixture.h"

#include <sqlite3.h>

#define MIG_MEMBERS 6
#define MIG_CHARGES_MAX 64
#define MIG_ENTRIES_MAX 200

/* A charge id as creditgate made them before schema 5 ("ch_" + 16 hex): the last 16 hex
 * digits of a "ch_t" id, in SQL and in C. */
#define OLD_ID(col) "CASE WHEN " col " LIKE 'ch_t%' THEN 'ch_' || substr(" col ", 10, 16) ELSE " \
                    col " END"

static void old_id(char *id) {
    if (!strncmp(id, "ch_t", 4)) memmove(id + 3, id + 9, strlen(id + 9) + 1);
}

/* The version-4 layout of charges, journal and keys, filled from the current tables, charge
 * ids as they were then. */
static const char downgrade_sql[] =
    "CREATE TABLE charges_v4 (member_id TEXT NOT NULL, charge_id TEXT NOT NULL,"
    " status INTEGER NOT NULL, model TEXT NOT NULL, variant TEXT NOT NULL, count INTEGER NOT NULL,"
    " agent_model TEXT NOT NULL, agent_kind TEXT NOT NULL, prompt TEXT NOT NULL,"
    " at_us INTEGER NOT NULL, plan TEXT NOT NULL, billing TEXT NOT NULL,"
    " joined_at_us INTEGER NOT NULL, policy_version TEXT NOT NULL, items TEXT NOT NULL,"
    " credits INTEGER NOT NULL, held INTEGER NOT NULL, captured INTEGER NOT NULL,"
    " refunded INTEGER NOT NULL, parts TEXT NOT NULL, created_at_us INTEGER NOT NULL,"
    " expires_at_us INTEGER NOT NULL, settled_at_us INTEGER NOT NULL,"
    " PRIMARY KEY (member_id, charge_id)) WITHOUT ROWID;"
    "INSERT INTO charges_v4 SELECT member_id, " OLD_ID("charge_id") ", status, model, variant,"
    " count, agent_model, agent_kind, prompt, at_us, plan, billing, joined_at_us, policy_version,"
    " items, credits, held, captured, refunded, parts, created_at_us, expires_at_us,"
    " settled_at_us FROM charges;"
    "DROP TABLE charges;"
    "ALTER TABLE charges_v4 RENAME TO charges;"
    "CREATE INDEX charges_due ON charges (expires_at_us) WHERE status = 0;"
    "CREATE INDEX charges_by_time ON charges (member_id, created_at_us, charge_id);"
    "CREATE TABLE journal_v4 (member_id TEXT NOT NULL, seq INTEGER NOT NULL, at_us INTEGER NOT NULL,"
    " kind INTEGER NOT NULL, grant_id TEXT NOT NULL, charge_id TEXT NOT NULL,"
    " delta_remaining INTEGER NOT NULL, delta_held INTEGER NOT NULL, note TEXT NOT NULL,"
    " PRIMARY KEY (member_id, seq)) WITHOUT ROWID;"
    "INSERT INTO journal_v4 SELECT member_id, seq, at_us, kind, grant_id, " OLD_ID("charge_id")
    ", delta_remaining, delta_held, note FROM journal;"
    "DROP TABLE journal;"
    "ALTER TABLE journal_v4 RENAME TO journal;"
    "CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal"
    " BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;"
    "CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal"
    " BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;"
    "CREATE TABLE idempotency_v4 (member_id TEXT NOT NULL, key TEXT NOT NULL, op INTEGER NOT NULL,"
    " request_hash BLOB NOT NULL, object_id TEXT NOT NULL, created_at_us INTEGER NOT NULL,"
    " PRIMARY KEY (member_id, key)) WITHOUT ROWID;"
    "INSERT INTO idempotency_v4 SELECT member_id, key, op, request_hash, " OLD_ID("object_id")
    ", created_at_us FROM idempotency;"
    "DROP TABLE idempotency;"
    "ALTER TABLE idempotency_v4 RENAME TO idempotency;"
    "CREATE INDEX idempotency_age ON idempotency (created_at_us);"
    "PRAGMA user_version = 4;";

static void exec_file(const char *file, const char *sql) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fail_msg("%s: %s", file, msg ? msg : "?");
    sqlite3_close(db);
}

/* The first column of the first row of sql on file, as text ("" when no row). */
static void query_file(const char *file, const char *sql, char *out, size_t out_bytes) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    out[0] = 0;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, out_bytes, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Everything a member's reads return, to compare before and after the migration. */
typedef struct member_view {
    cg_charge charges[MIG_CHARGES_MAX];
    int charge_count;
    cg_journal_entry entries[MIG_ENTRIES_MAX];
    int entry_count;
    int64_t available, held;
} member_view;

static member_view views[MIG_MEMBERS];

static void member_of(int i, char *out, size_t out_bytes) { snprintf(out, out_bytes, "mg%d", i); }

/* Every charge page by page (pages of 3, so the cursor is exercised), every journal entry. */
static void read_view(cg_ledger *l, const char *member, member_view *v) {
    memset(v, 0, sizeof *v);
    cg_err err = {0};
    char before[CG_CHARGES_CURSOR_BYTES_MAX] = "", next[CG_CHARGES_CURSOR_BYTES_MAX];
    for (;;) {
        int n = 0;
        assert_true(v->charge_count + 3 <= MIG_CHARGES_MAX);
        assert_cg_ok(cg_ledger_charges(l, member, before[0] ? before : NULL, 3,
                                       &v->charges[v->charge_count], &n, next, &err), err);
        v->charge_count += n;
        if (!next[0]) break;
        snprintf(before, sizeof before, "%s", next);
    }
    int64_t after = 0;
    for (;;) {
        int n = 0;
        int64_t next_seq = 0;
        assert_true(v->entry_count + 4 <= MIG_ENTRIES_MAX);
        assert_cg_ok(cg_ledger_history(l, member, after, 4, &v->entries[v->entry_count], &n,
                                       &next_seq, &err), err);
        v->entry_count += n;
        if (!next_seq) break;
        after = next_seq;
    }
    cg_balance *b = balance_of(l, member);
    v->available = b->available;
    v->held = b->held;
}

static void assert_views_equal(const member_view *a, const member_view *b) {
    assert_int_equal(a->charge_count, b->charge_count);
    for (int i = 0; i < a->charge_count; i++) {
        const cg_charge *x = &a->charges[i], *y = &b->charges[i];
        assert_string_equal(x->charge_id, y->charge_id);
        assert_int_equal(x->status, y->status);
        assert_int_equal(x->credits, y->credits);
        assert_int_equal(x->held, y->held);
        assert_int_equal(x->captured, y->captured);
        assert_int_equal(x->refunded, y->refunded);
        assert_int_equal(x->part_count, y->part_count);
        assert_int_equal(x->item_count, y->item_count);
        assert_string_equal(x->items[0].reason, y->items[0].reason);
        assert_int_equal(x->created_at_us, y->created_at_us);
    }
    assert_int_equal(a->entry_count, b->entry_count);
    for (int i = 0; i < a->entry_count; i++) {
        const cg_journal_entry *x = &a->entries[i], *y = &b->entries[i];
        assert_int_equal(x->seq, y->seq);
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->delta_remaining, y->delta_remaining);
        assert_int_equal(x->delta_held, y->delta_held);
        assert_string_equal(x->charge_id, y->charge_id);
        assert_string_equal(x->grant_id, y->grant_id);
    }
    assert_int_equal(a->available, b->available);
    assert_int_equal(a->held, b->held);
}

/* Per member: charges captured in full and in part, released, refunded, captured at once,
 * an unlimited one, and one left held — spread over the clock so pages order by time. */
static void write_history(cg_ledger *l) {
    cg_err err = {0};
    for (int i = 0; i < MIG_MEMBERS; i++) {
        char m[16], key[48];
        member_of(i, m, sizeof m);
        put_member(l, m, i % 2 ? "premium" : "free", "monthly", T0 - DAY_US, 0);
        grant_full(l, m, 30, CG_CATEGORY_PROMO, -1, 0, T0 + 30 * DAY_US);
        grant_simple(l, m, 500);
        for (int k = 0; k < 8; k++) {
            fx_now_us += CG_US_PER_S;
            snprintf(key, sizeof key, "%s-c%d", m, k);
            cg_charge c, done;
            if (k == 5) { /* captured at once */
                cg_charge_input in = {.member_id = m, .idempotency_key = key,
                                      .model = "midjourney", .capture = true};
                assert_cg_ok(cg_ledger_charge(l, &in, &c, NULL, &err), err);
                continue;
            }
            if (k == 6) { /* unlimited for premium, 2 credits otherwise */
                assert_cg_ok(charge_try(l, m, key, "gpt-image-2.0", "low", &c, &err), err);
                continue;
            }
            c = charge_mj(l, m, key);
            snprintf(key, sizeof key, "%s-s%d", m, k);
            if (k == 7) continue; /* left held */
            int which = k == 2 ? 'r' : 'c';
            int64_t credits = k == 1 ? 4 : -1;
            assert_cg_ok(settle_try(l, which, m, c.charge_id, key, credits, &done, &err), err);
            if (k == 3) {
                snprintf(key, sizeof key, "%s-f%d", m, k);
                assert_cg_ok(settle_try(l, 'f', m, c.charge_id, key, 3, &done, &err), err);
            }
        }
    }
}

static void test_version_4_files_migrate_and_read_the_same(void **state) {
    cg_ledger *l = *state;
    write_history(l);
    assert_verify_clean(l);
    for (int i = 0; i < MIG_MEMBERS; i++) {
        char m[16];
        member_of(i, m, sizeof m);
        read_view(l, m, &views[i]);
        assert_int_equal(views[i].charge_count, 8);
    }
    for (int i = 0; i < MIG_MEMBERS; i++) { /* what the downgrade below makes of the ids */
        for (int k = 0; k < views[i].charge_count; k++) old_id(views[i].charges[k].charge_id);
        for (int k = 0; k < views[i].entry_count; k++) old_id(views[i].entries[k].charge_id);
    }
    cg_ledger_config c;
    fx_config(&c, true);
    int shards = c.shards ? c.shards : 1;
    cg_ledger_close(l);
    *state = NULL;

    /* every shard file back to the version-4 layout, rows and all */
    char file[600], got[4096];
    for (int i = 0; i < shards; i++) {
        fx_shard_file(i, file, sizeof file);
        query_file(file, "PRAGMA user_version", got, sizeof got);
        assert_string_equal(got, "5");
        exec_file(file, downgrade_sql);
        query_file(file, "SELECT sql FROM sqlite_master WHERE name = 'charges'", got, sizeof got);
        assert_non_null(strstr(got, "WITHOUT ROWID"));
    }

    /* reopening migrates */
    char dsn[640];
    snprintf(dsn, sizeof dsn, "sqlite:%s", fx_path);
    cg_err err = {0};
    assert_cg_ok(cg_ledger_open_dsn(dsn, &c, &l, &err), err);
    *state = l;
    for (int i = 0; i < shards; i++) {
        fx_shard_file(i, file, sizeof file);
        query_file(file, "PRAGMA user_version", got, sizeof got);
        assert_string_equal(got, "5");
        query_file(file, "SELECT sql FROM sqlite_master WHERE name = 'charges'", got, sizeof got);
        assert_null(strstr(got, "WITHOUT ROWID"));
        query_file(file, "SELECT sql FROM sqlite_master WHERE name = 'journal'", got, sizeof got);
        assert_null(strstr(got, "WITHOUT ROWID"));
        query_file(file, "SELECT sql FROM sqlite_master WHERE name = 'idempotency'", got,
                   sizeof got);
        assert_null(strstr(got, "WITHOUT ROWID"));
        query_file(file, "SELECT count(*) FROM sqlite_master WHERE name IN ('charges_id',"
                   " 'charges_due', 'charges_by_time', 'journal_seq', 'journal_no_update',"
                   " 'journal_no_delete', 'idempotency_key', 'idempotency_age')", got,
                   sizeof got);
        assert_string_equal(got, "8");
    }
    assert_verify_clean(l);
    for (int i = 0; i < MIG_MEMBERS; i++) {
        char m[16];
        member_of(i, m, sizeof m);
        static member_view after;
        read_view(l, m, &after);
        assert_views_equal(&views[i], &after);
        /* each stored charge by id, too */
        for (int k = 0; k < views[i].charge_count; k++) {
            cg_charge got_charge;
            assert_cg_ok(cg_ledger_charge_get(l, m, views[i].charges[k].charge_id, &got_charge,
                                              &err), err);
            assert_int_equal(got_charge.captured, views[i].charges[k].captured);
        }
    }

    /* the journal still refuses edits */
    fx_shard_file(0, file, sizeof file);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_not_equal(sqlite3_exec(db, "UPDATE journal SET delta_remaining = 0", NULL, NULL,
                                      NULL), SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM journal", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    /* new calls land after the migrated rows: newest first, replayed keys still replay, a
     * hold made before the migration still settles */
    cg_charge c2, done;
    fx_now_us += CG_US_PER_S;
    c2 = charge_mj(l, "mg0", "mg0-new");
    assert_memory_equal(c2.charge_id, "ch_t", 4);
    assert_cg_ok(settle_try(l, 'c', "mg0", c2.charge_id, "mg0-new-cap", -1, &done, &err), err);
    assert_int_equal(views[0].charges[0].status, CG_CHARGE_HELD); /* k = 7, the newest */
    assert_cg_ok(settle_try(l, 'c', "mg0", views[0].charges[0].charge_id, "mg0-old-cap", -1,
                            &done, &err), err);
    static member_view mixed; /* pages of 3 cross from the new id to the old ones */
    read_view(l, "mg0", &mixed);
    assert_int_equal(mixed.charge_count, views[0].charge_count + 1);
    assert_string_equal(mixed.charges[0].charge_id, c2.charge_id);
    for (int k = 0; k < views[0].charge_count; k++)
        assert_string_equal(mixed.charges[k + 1].charge_id, views[0].charges[k].charge_id);
    cg_charge page[2];
    int n = 0;
    char next[CG_CHARGES_CURSOR_BYTES_MAX];
    assert_cg_ok(cg_ledger_charges(l, "mg0", NULL, 2, page, &n, next, &err), err);
    assert_int_equal(n, 2);
    assert_string_equal(page[0].charge_id, c2.charge_id);
    assert_string_equal(page[1].charge_id, views[0].charges[0].charge_id);
    bool replayed = false;
    cg_charge_input again = {.member_id = "mg0", .idempotency_key = "mg0-c0",
                             .model = "midjourney"};
    assert_cg_ok(cg_ledger_charge(l, &again, &c2, &replayed, &err), err);
    assert_true(replayed);
    assert_verify_clean(l);
}

int main(void) {
    const char *dsn = getenv("CG_TEST_DB");
    if (dsn && strncmp(dsn, "sqlite:", 7) != 0) return 0; /* SQLite's schema; PostgreSQL has its own */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_version_4_files_migrate_and_read_the_same, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
