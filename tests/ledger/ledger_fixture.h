/* ledger_fixture.h — a fresh ledger per test over the backend named by CG_TEST_DB
 * (unset: a new SQLite file under $TMPDIR; "sqlite:DIR" for files in DIR; a PostgreSQL
 * DSN: a new schema per test in that database, see tests/pg/), with the bundled policy and a
 * fake clock the test moves. CG_TEST_SHARDS sets the shard count (unset: a SQLite ledger is
 * spread over two files, so every test crosses shards whenever it uses two members). */
#ifndef CREDITGATE_TEST_LEDGER_FIXTURE_H
#define CREDITGATE_TEST_LEDGER_FIXTURE_H

#include "testlib.h"

#include <unistd.h>

#include "creditgate/engine.h"
#include "creditgate/ledger.h"
#include "creditgate/store.h"

#define T0 INT64_C(1780000000000000) /* 2026-05-28T20:26:40Z: after every benefit window */
#define HOUR_US (INT64_C(3600) * CG_US_PER_S)
#define DAY_US CG_US_PER_DAY

static cg_policy_set fx_set;
static cg_engine fx_engine;
static int64_t fx_now_us;
static char fx_path[512];

static inline int64_t fx_clock(void *ctx) {
    (void)ctx;
    return fx_now_us;
}

static inline int fx_group_setup(void **state) {
    (void)state;
    cg_err err = {0};
    cg_policy_set_init(&fx_set);
    if (cg_policy_set_load_file(&fx_set, CG_TEST_POLICY, &err) ||
        cg_engine_init(&fx_engine, &fx_set, &err)) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static inline int fx_group_teardown(void **state) {
    (void)state;
    cg_engine_free(&fx_engine);
    cg_policy_set_free(&fx_set);
    return 0;
}

/* A DSN for a fresh, empty database. */
static inline void fx_fresh_dsn(char *dsn, size_t dsn_bytes) {
    const char *base = getenv("CG_TEST_DB");
    if (base && strncmp(base, "sqlite:", 7) != 0) { /* PostgreSQL: a new schema per test */
        static int schema_seq;
        snprintf(dsn, dsn_bytes, "%s%scg_schema=t%d_%d", base, strchr(base, '?') ? "&" : "?",
                 (int)getpid(), ++schema_seq);
        return;
    }
    const char *dir = base ? base + 7 : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(fx_path, sizeof fx_path, "%s/cg-ledger-test-XXXXXX", dir);
    int fd = mkstemp(fx_path);
    if (fd >= 0) close(fd);
    unlink(fx_path);
    snprintf(dsn, dsn_bytes, "sqlite:%s", fx_path);
}

/* The file of SQLite shard i (0: fx_path itself). */
static inline void fx_shard_file(int i, char *out, size_t out_bytes) {
    if (i) snprintf(out, out_bytes, "%s.shard%d", fx_path, i);
    else snprintf(out, out_bytes, "%s", fx_path);
}

/* Removes the database at path: every shard file with its -wal, -shm and -redo. */
static inline void fx_remove_db(const char *path) {
    for (int i = 0; i < CG_LEDGER_SHARDS_MAX; i++) {
        char file[560], p[600];
        if (i) snprintf(file, sizeof file, "%s.shard%d", path, i);
        else snprintf(file, sizeof file, "%s", path);
        unlink(file);
        snprintf(p, sizeof p, "%s-wal", file);
        unlink(p);
        snprintf(p, sizeof p, "%s-shm", file);
        unlink(p);
        snprintf(p, sizeof p, "%s-redo", file);
        unlink(p);
    }
}

static inline void fx_remove_files(void) {
    if (!fx_path[0]) return;
    fx_remove_db(fx_path);
    fx_path[0] = 0;
}

static inline void fx_config(cg_ledger_config *c, bool group_commit) {
    cg_ledger_config_default(c);
    c->engine = &fx_engine;
    c->group_commit = group_commit;
    c->clock_us = fx_clock;
    c->sweep_interval_us = 0; /* sweep on every batch: tests see expiry at once */
    /* SQLite: two shard files, so every test with two members crosses shards; PostgreSQL: the
     * default (one connection) */
    const char *db = getenv("CG_TEST_DB");
    bool sqlite = !db || !strncmp(db, "sqlite:", 7);
    c->shards = getenv("CG_TEST_SHARDS") ? atoi(getenv("CG_TEST_SHARDS")) : sqlite ? 2 : 0;
}

static inline int fx_open_mode(void **state, bool group_commit) {
    char dsn[600];
    fx_fresh_dsn(dsn, sizeof dsn);
    fx_now_us = T0;
    cg_ledger_config c;
    fx_config(&c, group_commit);
    cg_err err = {0};
    cg_ledger *l = NULL;
    if (cg_ledger_open_dsn(dsn, &c, &l, &err)) {
        fprintf(stderr, "open %s: %s\n", dsn, err.msg);
        return -1;
    }
    *state = l;
    return 0;
}

static inline int fx_setup(void **state) { return fx_open_mode(state, true); }
static inline int fx_setup_naive(void **state) { return fx_open_mode(state, false); }

static inline int fx_teardown(void **state) {
    cg_ledger_close(*state);
    fx_remove_files();
    return 0;
}

/* ---- shorthands: each fails the test on an unexpected error ---- */

static inline void put_member(cg_ledger *l, const char *id, const char *plan, const char *billing,
                       int64_t joined_at_us, int64_t effective_at_us) {
    char key[96];
    snprintf(key, sizeof key, "put-%s-%s-%lld", id, plan, (long long)effective_at_us);
    cg_member_put_input in = {.member_id = id, .idempotency_key = key, .plan = plan,
                              .billing = billing, .joined_at_us = joined_at_us,
                              .effective_at_us = effective_at_us};
    cg_member_state m;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_member_put(l, &in, &m, NULL, &err), err);
}

static int grant_seq;

static inline cg_grant grant_full(cg_ledger *l, const char *member, int64_t credits,
                           cg_grant_category category, int priority, int64_t starts_at_us,
                           int64_t expires_at_us) {
    char key[64];
    snprintf(key, sizeof key, "grant-%d", ++grant_seq);
    cg_grant_input in = {.member_id = member, .idempotency_key = key,
                         .source = category == CG_CATEGORY_PROMO ? CG_SOURCE_PROMO
                                                                 : CG_SOURCE_PURCHASE,
                         .category = category, .priority = priority, .credits = credits,
                         .starts_at_us = starts_at_us, .expires_at_us = expires_at_us};
    cg_grant g;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_grant(l, &in, &g, NULL, &err), err);
    return g;
}

static inline cg_grant grant_simple(cg_ledger *l, const char *member, int64_t credits) {
    return grant_full(l, member, credits, CG_CATEGORY_PAID, -1, 0, 0);
}

static inline int charge_try(cg_ledger *l, const char *member, const char *key, const char *model,
                      const char *variant, cg_charge *out, cg_err *err) {
    cg_charge_input in = {.member_id = member, .idempotency_key = key, .model = model,
                          .variant = variant};
    return cg_ledger_charge(l, &in, out, NULL, err);
}

/* Midjourney: 10 credits for everyone (no benefit covers it). */
static inline cg_charge charge_mj(cg_ledger *l, const char *member, const char *key) {
    static cg_charge c;
    cg_err err = {0};
    assert_cg_ok(charge_try(l, member, key, "midjourney", NULL, &c, &err), err);
    return c;
}

static inline int settle_try(cg_ledger *l, int which, const char *member, const char *charge_id,
                      const char *key, int64_t credits, cg_charge *out, cg_err *err) {
    cg_settle_input in = {.member_id = member, .charge_id = charge_id, .idempotency_key = key,
                          .credits = credits, .reason = "test"};
    switch (which) {
    case 'c': return cg_ledger_capture(l, &in, out, NULL, err);
    case 'r': return cg_ledger_release(l, &in, out, NULL, err);
    default: return cg_ledger_refund(l, &in, out, NULL, err);
    }
}

static inline cg_balance *balance_of(cg_ledger *l, const char *member) {
    static cg_balance b;
    cg_err err = {0};
    assert_cg_ok(cg_ledger_balance(l, member, &b, &err), err);
    return &b;
}

static inline void assert_verify_clean(cg_ledger *l) {
    cg_verify_report r;
    cg_err err = {0};
    int rc = cg_ledger_verify(l, &r, &err);
    if (rc) fail_msg("verify: %s", err.msg);
    assert_int_equal(r.problem_count, 0);
}

#endif
