/* sqlite.c — the embedded default backend of store.h: one SQLite file in WAL mode. Per-batch
 * commits run under synchronous=NORMAL (appended to the WAL, crash-consistent) and `sync`
 * fdatasyncs the WAL: together exactly the fsync synchronous=FULL would do inside COMMIT, but
 * callable from the ledger's syncer thread so the writer never waits on the disk (see
 * store.h). Under the ledger's group commit, batches share one long transaction and are
 * records of the redo log beside the file instead ("Long transactions" below, redo.h). Rows
 * only; every rule lives in src/ledger/. Statements are prepared once at open (no parsing on
 * the hot path), every key starts with member_id, and schema migrations are versioned
 * (PRAGMA user_version). */
#include "creditgate/store.h"
#include "redo.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* page cache bound until the ledger sets its own (cache_bound): memory stays flat with 1M
 * members */
#define SQLITE_CACHE_KIB (CG_LEDGER_PAGE_CACHE_MB_DEFAULT * 1024)
#define SQLITE_BUSY_TIMEOUT_MS 5000
/* Checkpoint once the WAL holds this many pages (~117 MiB): rarer checkpoints write a hot
 * page once instead of once per 1000 pages (SQLite's default). Each flush of the long
 * transaction writes a shard's whole hot set (~10,000 pages at 100,000 members), so at
 * 10,000 nearly every flush checkpointed; at 30,000 one in two or three does, for 1.05-1.11x
 * charges/s (bench/RESULTS.md, session 6) against a larger WAL on disk and a longer WAL read
 * at open after a crash. A checkpoint on a second connection and thread was tried: under
 * steady writes it never finishes the WAL and re-copies pages, and on this 2-core machine it
 * cost ~20% more CPU per call for no better p99. */
#define SQLITE_WAL_CHECKPOINT_PAGES 30000
#define SQLITE_WAL_KEEP_BYTES (128 * 1024 * 1024) /* the WAL file kept after a reset */

/* Migration i brings the schema from version i to i + 1. Append only; never edit one. */
static const char *const migrations[] = {
    "CREATE TABLE members (member_id TEXT NOT NULL, effective_at_us INTEGER NOT NULL,"
    " plan TEXT NOT NULL, billing TEXT NOT NULL, joined_at_us INTEGER NOT NULL,"
    " recorded_at_us INTEGER NOT NULL, PRIMARY KEY (member_id, effective_at_us)) WITHOUT ROWID;"
    "CREATE TABLE grants (member_id TEXT NOT NULL, grant_id TEXT NOT NULL, source INTEGER NOT NULL,"
    " category INTEGER NOT NULL, priority INTEGER NOT NULL, credits INTEGER NOT NULL,"
    " remaining INTEGER NOT NULL, held INTEGER NOT NULL, starts_at_us INTEGER NOT NULL,"
    " expires_at_us INTEGER NOT NULL, created_at_us INTEGER NOT NULL, expired INTEGER NOT NULL,"
    " note TEXT NOT NULL, PRIMARY KEY (member_id, grant_id)) WITHOUT ROWID;"
    "CREATE INDEX grants_due ON grants (expires_at_us) WHERE expired = 0;"
    "CREATE TABLE charges (member_id TEXT NOT NULL, charge_id TEXT NOT NULL,"
    " status INTEGER NOT NULL, model TEXT NOT NULL, variant TEXT NOT NULL, count INTEGER NOT NULL,"
    " agent_model TEXT NOT NULL, agent_kind TEXT NOT NULL, prompt TEXT NOT NULL,"
    " at_us INTEGER NOT NULL, plan TEXT NOT NULL, billing TEXT NOT NULL,"
    " joined_at_us INTEGER NOT NULL, policy_version TEXT NOT NULL, items TEXT NOT NULL,"
    " credits INTEGER NOT NULL, held INTEGER NOT NULL, captured INTEGER NOT NULL,"
    " refunded INTEGER NOT NULL, parts TEXT NOT NULL, created_at_us INTEGER NOT NULL,"
    " expires_at_us INTEGER NOT NULL, settled_at_us INTEGER NOT NULL,"
    " PRIMARY KEY (member_id, charge_id)) WITHOUT ROWID;"
    "CREATE INDEX charges_due ON charges (expires_at_us) WHERE status = 0;"
    "CREATE TABLE journal (member_id TEXT NOT NULL, seq INTEGER NOT NULL, at_us INTEGER NOT NULL,"
    " kind INTEGER NOT NULL, grant_id TEXT NOT NULL, charge_id TEXT NOT NULL,"
    " delta_remaining INTEGER NOT NULL, delta_held INTEGER NOT NULL, note TEXT NOT NULL,"
    " PRIMARY KEY (member_id, seq)) WITHOUT ROWID;"
    "CREATE TABLE idempotency (member_id TEXT NOT NULL, key TEXT NOT NULL, op INTEGER NOT NULL,"
    " request_hash BLOB NOT NULL, object_id TEXT NOT NULL, created_at_us INTEGER NOT NULL,"
    " PRIMARY KEY (member_id, key)) WITHOUT ROWID;"
    "CREATE INDEX idempotency_age ON idempotency (created_at_us);"
    /* Journal is append-only: the database itself refuses edits. */
    "CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal"
    " BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;"
    "CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal"
    " BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;",
    /* 2: a member's charges newest first (cg_ledger_charges, the My Credits page). */
    "CREATE INDEX charges_by_time ON charges (member_id, created_at_us, charge_id);",
    /* 3: this file's place in a sharded ledger (store.h shard_mark); one row, written once. */
    ("CREATE TABLE shard (id INTEGER PRIMARY KEY CHECK (id = 0), shard_index INTEGER NOT NULL,"
     " shard_count INTEGER NOT NULL, ledger_id TEXT NOT NULL);"),
    /* 4: the last redo log record this file holds (long transactions); older creditgates,
     * which would not replay the log, refuse the file from here on. */
    ("CREATE TABLE redo (id INTEGER PRIMARY KEY CHECK (id = 0), applied_lsn INTEGER NOT NULL);"
     "INSERT INTO redo (id, applied_lsn) VALUES (0, 0);"),
    /* 5: charges, journal and idempotency keys become rowid tables, appended in the order
     * they are written, each with a small unique (member_id, ...) index for its lookups.
     * Keyed by member, their rows landed on a random leaf of the whole table: once the table
     * outgrew the page cache, nearly every charge read a page back and dirtied one more page
     * for the next commit. Now only the small indexes are written at random. */
    ("CREATE TABLE charges_v5 (member_id TEXT NOT NULL, charge_id TEXT NOT NULL,"
     " status INTEGER NOT NULL, model TEXT NOT NULL, variant TEXT NOT NULL,"
     " count INTEGER NOT NULL, agent_model TEXT NOT NULL, agent_kind TEXT NOT NULL,"
     " prompt TEXT NOT NULL, at_us INTEGER NOT NULL, plan TEXT NOT NULL, billing TEXT NOT NULL,"
     " joined_at_us INTEGER NOT NULL, policy_version TEXT NOT NULL, items TEXT NOT NULL,"
     " credits INTEGER NOT NULL, held INTEGER NOT NULL, captured INTEGER NOT NULL,"
     " refunded INTEGER NOT NULL, parts TEXT NOT NULL, created_at_us INTEGER NOT NULL,"
     " expires_at_us INTEGER NOT NULL, settled_at_us INTEGER NOT NULL);"
     "INSERT INTO charges_v5 SELECT member_id, charge_id, status, model, variant, count,"
     " agent_model, agent_kind, prompt, at_us, plan, billing, joined_at_us, policy_version,"
     " items, credits, held, captured, refunded, parts, created_at_us, expires_at_us,"
     " settled_at_us FROM charges ORDER BY created_at_us, member_id, charge_id;"
     "DROP TABLE charges;"
     "ALTER TABLE charges_v5 RENAME TO charges;"
     "CREATE UNIQUE INDEX charges_id ON charges (member_id, charge_id);"
     "CREATE INDEX charges_due ON charges (expires_at_us) WHERE status = 0;"
     /* charge ids are now made in creation order ("ch_t…", ops.c), so charges_id lists a
      * member's new charges newest first; the time index is kept for the older ids only */
     "CREATE INDEX charges_by_time ON charges (member_id, created_at_us, charge_id)"
     " WHERE substr(charge_id, 4, 1) < 't';"
     "CREATE TABLE journal_v5 (member_id TEXT NOT NULL, seq INTEGER NOT NULL,"
     " at_us INTEGER NOT NULL, kind INTEGER NOT NULL, grant_id TEXT NOT NULL,"
     " charge_id TEXT NOT NULL, delta_remaining INTEGER NOT NULL,"
     " delta_held INTEGER NOT NULL, note TEXT NOT NULL);"
     "INSERT INTO journal_v5 SELECT member_id, seq, at_us, kind, grant_id, charge_id,"
     " delta_remaining, delta_held, note FROM journal ORDER BY at_us, member_id, seq;"
     "DROP TABLE journal;"
     "ALTER TABLE journal_v5 RENAME TO journal;"
     "CREATE UNIQUE INDEX journal_seq ON journal (member_id, seq);"
     "CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal"
     " BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;"
     "CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal"
     " BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;"
     "CREATE TABLE idempotency_v5 (member_id TEXT NOT NULL, key TEXT NOT NULL,"
     " op INTEGER NOT NULL, request_hash BLOB NOT NULL, object_id TEXT NOT NULL,"
     " created_at_us INTEGER NOT NULL);"
     "INSERT INTO idempotency_v5 SELECT member_id, key, op, request_hash, object_id,"
     " created_at_us FROM idempotency ORDER BY created_at_us, member_id, key;"
     "DROP TABLE idempotency;"
     "ALTER TABLE idempotency_v5 RENAME TO idempotency;"
     "CREATE UNIQUE INDEX idempotency_key ON idempotency (member_id, key);"
     "CREATE INDEX idempotency_age ON idempotency (created_at_us);"),
};
#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(sizeof migrations / sizeof migrations[0] == CG_STORE_SCHEMA_VERSION,
               "CG_STORE_SCHEMA_VERSION names the last migration");

/* Statement numbers are written into the redo log (redo.h): append only, never renumber. */
enum {
    ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
    ST_MEMBER_INSERT, ST_MEMBER_AT, ST_MEMBER_VERSIONS,
    ST_GRANT_INSERT, ST_GRANT_GET, ST_GRANTS_OPEN, ST_GRANT_UPDATE, ST_GRANTS_DUE,
    ST_CHARGE_INSERT, ST_CHARGE_GET, ST_CHARGE_UPDATE, ST_CHARGES_DUE,
    ST_JOURNAL_LAST, ST_JOURNAL_APPEND, ST_JOURNAL_PAGE,
    ST_IDEM_GET, ST_IDEM_INSERT, ST_IDEM_PURGE,
    ST_SCAN_GRANTS, ST_SCAN_CHARGES, ST_COUNT_ENTRIES,
    ST_IDEM_CLAIM, ST_DATA_VERSION, ST_CHARGES_FIRST, ST_CHARGES_AFTER, ST_GRANT_UPDATE_CREDITS,
    ST_GRANT_UPDATE_AMOUNTS,
    ST_REDO_GET, ST_REDO_SET, ST_BATCH, ST_BATCH_RELEASE, ST_BATCH_ROLLBACK, ST_IDEM_DUE,
    ST_CHARGES_ORDERED, /* new ids at the end only: redo records name statements by number */
    ST_COUNT
};

#define GRANT_COLS "member_id, grant_id, source, category, priority, credits, remaining, held," \
                   " starts_at_us, expires_at_us, created_at_us, expired, note"
#define CHARGE_COLS "member_id, charge_id, status, model, variant, count, agent_model,"       \
                    " agent_kind, prompt, at_us, plan, billing, joined_at_us, policy_version,"  \
                    " items, credits, held, captured, refunded, parts, created_at_us,"          \
                    " expires_at_us, settled_at_us"
#define JOURNAL_COLS "member_id, seq, at_us, kind, grant_id, charge_id, delta_remaining,"     \
                     " delta_held, note"

static const char *const statement_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT op",
    [ST_RELEASE] = "RELEASE op",
    [ST_ROLLBACK_TO] = "ROLLBACK TO op",
    [ST_MEMBER_INSERT] = "INSERT INTO members (member_id, effective_at_us, plan, billing,"
                         " joined_at_us, recorded_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                         " ON CONFLICT (member_id, effective_at_us) DO UPDATE SET plan = ?3,"
                         " billing = ?4, joined_at_us = ?5, recorded_at_us = ?6",
    [ST_MEMBER_AT] = "SELECT member_id, effective_at_us, plan, billing, joined_at_us,"
                     " recorded_at_us FROM members WHERE member_id = ?1 AND effective_at_us <= ?2"
                     " ORDER BY effective_at_us DESC LIMIT 1",
    [ST_MEMBER_VERSIONS] = "SELECT member_id, effective_at_us, plan, billing, joined_at_us,"
                           " recorded_at_us FROM members WHERE member_id = ?1"
                           " ORDER BY effective_at_us LIMIT ?2",
    [ST_GRANT_INSERT] = "INSERT INTO grants (" GRANT_COLS ") VALUES"
                        " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [ST_GRANT_GET] = "SELECT " GRANT_COLS " FROM grants WHERE member_id = ?1 AND grant_id = ?2",
    [ST_GRANTS_OPEN] = "SELECT " GRANT_COLS " FROM grants WHERE member_id = ?1"
                       " AND (remaining > 0 OR held > 0) LIMIT ?2",
    [ST_GRANT_UPDATE] = "UPDATE grants SET remaining = ?3, held = ?4, expired = ?5"
                        " WHERE member_id = ?1 AND grant_id = ?2",
    [ST_GRANTS_DUE] = "SELECT member_id, grant_id FROM grants WHERE expired = 0"
                      " AND expires_at_us <= ?1 ORDER BY expires_at_us LIMIT ?2",
    [ST_CHARGE_INSERT] = "INSERT INTO charges (" CHARGE_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
                         " ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,"
                         " ?21, ?22, ?23)",
    [ST_CHARGE_GET] = "SELECT " CHARGE_COLS " FROM charges WHERE member_id = ?1"
                      " AND charge_id = ?2",
    [ST_CHARGE_UPDATE] = "UPDATE charges SET status = ?3, held = ?4, captured = ?5,"
                         " refunded = ?6, parts = ?7, settled_at_us = ?8"
                         " WHERE member_id = ?1 AND charge_id = ?2",
    [ST_CHARGES_DUE] = "SELECT member_id, charge_id FROM charges WHERE status = 0"
                       " AND expires_at_us <= ?1 ORDER BY expires_at_us LIMIT ?2",
    [ST_JOURNAL_LAST] = "SELECT max(seq) FROM journal WHERE member_id = ?1",
    [ST_JOURNAL_APPEND] = "INSERT INTO journal (" JOURNAL_COLS ") VALUES"
                          " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_JOURNAL_PAGE] = "SELECT " JOURNAL_COLS " FROM journal WHERE member_id = ?1 AND seq > ?2"
                        " ORDER BY seq LIMIT ?3",
    [ST_IDEM_GET] = "SELECT member_id, key, op, request_hash, object_id, created_at_us"
                    " FROM idempotency WHERE member_id = ?1 AND key = ?2",
    [ST_IDEM_INSERT] = "INSERT INTO idempotency (member_id, key, op, request_hash, object_id,"
                       " created_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* ordered (the age index's own order), so a replay deletes exactly the same keys */
    [ST_IDEM_PURGE] = "DELETE FROM idempotency WHERE (member_id, key) IN (SELECT member_id, key"
                      " FROM idempotency WHERE created_at_us < ?1"
                      " ORDER BY created_at_us, member_id, key LIMIT ?2)",
    /* verify's scans sum the journal once, grouped, then join: a correlated sum per grant or
     * charge would rescan the member's whole journal each time (quadratic: 212 s for 37,631
     * charges of 4 members; the grouped pass takes well under a second). */
    [ST_SCAN_GRANTS] = "SELECT g.member_id, g.grant_id, g.source, g.category, g.priority,"
                       " g.credits, g.remaining, g.held, g.starts_at_us, g.expires_at_us,"
                       " g.created_at_us, g.expired, g.note,"
                       " coalesce(s.r, 0), coalesce(s.h, 0), coalesce(s.n, 0) FROM grants g"
                       " LEFT JOIN (SELECT member_id AS sm, grant_id AS sg, sum(delta_remaining) AS r,"
                       "  sum(delta_held) AS h, count(*) AS n FROM journal WHERE grant_id <> ''"
                       "  GROUP BY member_id, grant_id) s ON s.sm = g.member_id AND s.sg = g.grant_id"
                       " ORDER BY g.member_id, g.grant_id",
    [ST_SCAN_CHARGES] = "SELECT c.*, coalesce(s.r, 0), coalesce(s.h, 0), coalesce(s.n, 0)"
                        " FROM (SELECT " CHARGE_COLS " FROM charges) c"
                        " LEFT JOIN (SELECT member_id AS sm, charge_id AS sc, sum(delta_remaining) AS r,"
                        "  sum(delta_held) AS h, count(*) AS n FROM journal WHERE charge_id <> ''"
                        "  GROUP BY member_id, charge_id) s ON s.sm = c.member_id AND s.sc = c.charge_id"
                        " ORDER BY c.member_id, c.charge_id",
    [ST_COUNT_ENTRIES] = "SELECT count(*) FROM journal",
    [ST_IDEM_CLAIM] = "INSERT INTO idempotency (member_id, key, op, request_hash, object_id,"
                      " created_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                      " ON CONFLICT (member_id, key) DO NOTHING",
    [ST_DATA_VERSION] = "PRAGMA data_version",
    /* A member's charges newest first (sq_charges_page): ids in creation order ("ch_t…",
     * ops.c) by the charges_id index, then older random ids by the partial charges_by_time
     * index, whose WHERE the two statements repeat word for word so that SQLite uses it. */
    [ST_CHARGES_ORDERED] = "SELECT " CHARGE_COLS " FROM charges WHERE member_id = ?1"
                           " AND charge_id >= 'ch_t' AND charge_id < ?3"
                           " ORDER BY charge_id DESC LIMIT ?4",
    [ST_CHARGES_FIRST] = "SELECT " CHARGE_COLS " FROM charges WHERE member_id = ?1"
                         " AND substr(charge_id, 4, 1) < 't'"
                         " ORDER BY created_at_us DESC, charge_id DESC LIMIT ?4",
    [ST_CHARGES_AFTER] = "SELECT " CHARGE_COLS " FROM charges WHERE member_id = ?1"
                         " AND substr(charge_id, 4, 1) < 't'"
                         " AND (created_at_us, charge_id) < (?2, ?3)"
                         " ORDER BY created_at_us DESC, charge_id DESC LIMIT ?4",
    /* `expired` unchanged (nearly always): not setting it spares the grants_due partial index,
     * whose WHERE names it, a delete and a re-insert per update. */
    [ST_GRANT_UPDATE_AMOUNTS] = "UPDATE grants SET remaining = ?3, held = ?4"
                                " WHERE member_id = ?1 AND grant_id = ?2 AND expired = ?5",
    [ST_GRANT_UPDATE_CREDITS] = "UPDATE grants SET remaining = ?3, held = ?4, expired = ?5,"
                                " credits = ?6 WHERE member_id = ?1 AND grant_id = ?2",
    [ST_REDO_GET] = "SELECT applied_lsn FROM redo WHERE id = 0",
    [ST_REDO_SET] = "UPDATE redo SET applied_lsn = ?1 WHERE id = 0",
    [ST_BATCH] = "SAVEPOINT batch",
    [ST_BATCH_RELEASE] = "RELEASE batch",
    [ST_BATCH_ROLLBACK] = "ROLLBACK TO batch",
    [ST_IDEM_DUE] = "SELECT 1 FROM idempotency WHERE created_at_us < ?1 LIMIT 1",
};

/* The statements a batch's redo record may hold: every write of the ledger's calls. */
static bool statement_logged(int id) {
    switch (id) {
    case ST_MEMBER_INSERT: case ST_GRANT_INSERT: case ST_GRANT_UPDATE:
    case ST_GRANT_UPDATE_AMOUNTS: case ST_GRANT_UPDATE_CREDITS: case ST_CHARGE_INSERT:
    case ST_CHARGE_UPDATE: case ST_JOURNAL_APPEND: case ST_IDEM_INSERT: case ST_IDEM_PURGE:
    case ST_IDEM_CLAIM:
        return true;
    default:
        return false;
    }
}

typedef struct sqlite_store {
    cg_store base; /* first: a cg_store* is a sqlite_store* */
    sqlite3 *db;
    int wal_fd;    /* our own descriptor on PATH-wal for sync; -1 for :memory: */
    sqlite3_stmt *st[ST_COUNT];
    /* the redo log (long transactions, below); NULL for :memory: */
    redo_log *redo;
    bool redo_owner;       /* holds the log's lock: replayed it, may append to it */
    bool long_txn;         /* log_batches: batches share one long transaction */
    bool txn_open;         /* the long transaction is open */
    bool batch_savepoint;  /* the batch is a savepoint in it (begin), not bare (begin_bare) */
    bool logging;          /* the statement being bound goes into the batch's record */
    int64_t txn_began_us;
    uint64_t lsn;          /* the last record written, or the last the file holds */
    size_t op_mark;        /* the record's size at the op savepoint */
    int64_t flush_interval_us;
    int64_t redo_restart_bytes; /* a flush past this syncs the WAL and restarts the log */
    bool checkpointed;     /* wal_hook: a checkpoint backfilled the whole WAL */
    int checkpoint_error;  /* wal_hook: the last checkpoint's I/O error (SQLite code), or 0 */
    bool replay_due;       /* a flush failed: the next begin replays the log first */
    bool failed;           /* the log and the file disagree: refuse until reopened */
    cg_err failure;
} sqlite_store;

static sqlite_store *from(cg_store *store) {
    assert(store);
    return (sqlite_store *)store;
}

static int db_fail(sqlite_store *s, cg_err *err, const char *what) {
    int code = sqlite3_errcode(s->db);
    int cg = (code == SQLITE_BUSY || code == SQLITE_LOCKED || code == SQLITE_FULL)
                 ? CG_EUNAVAILABLE : CG_EIO;
    if (code == SQLITE_CONSTRAINT) cg = CG_ECONFLICT;
    return cg_err_set(err, cg, "sqlite %s: %s", what, sqlite3_errmsg(s->db));
}

/* Resets and clears a statement before use; returns it. */
static sqlite3_stmt *stmt(sqlite_store *s, int id) {
    assert(id >= 0 && id < ST_COUNT && s->st[id]);
    sqlite3_stmt *st = s->st[id];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static void bind_text(sqlite3_stmt *st, int i, const char *text) {
    sqlite3_bind_text(st, i, text ? text : "", -1, SQLITE_STATIC);
}

static void col_text(sqlite3_stmt *st, int i, char *dst, size_t dst_bytes) {
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, i) : 0;
    if (n >= dst_bytes) n = dst_bytes - 1;
    if (n) memcpy(dst, t, n);
    dst[n] = 0;
}

/* A write statement, reset and cleared: inside a long transaction its bound values also go
 * into the batch's redo record (lb_* below bind them), kept if it succeeds (exec_done). */
static sqlite3_stmt *stmt_write(sqlite_store *s, int id) {
    assert(statement_logged(id) && !s->logging);
    if (s->txn_open) {
        redo_entry_begin(s->redo, id);
        s->logging = true;
    }
    return stmt(s, id);
}

static void lb_text(sqlite_store *s, sqlite3_stmt *st, int i, const char *text) {
    bind_text(st, i, text);
    if (s->logging) redo_put_text(s->redo, i, text ? text : "");
}

static void lb_int(sqlite_store *s, sqlite3_stmt *st, int i, int64_t v) {
    sqlite3_bind_int64(st, i, v);
    if (s->logging) redo_put_int(s->redo, i, v);
}

static void lb_blob(sqlite_store *s, sqlite3_stmt *st, int i, const void *p, size_t n) {
    sqlite3_bind_blob(st, i, p, (int)n, SQLITE_STATIC);
    if (s->logging) redo_put_blob(s->redo, i, p, n);
}

/* Runs a statement that returns no rows. */
static int exec_done(sqlite_store *s, sqlite3_stmt *st, cg_err *err, const char *what) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (s->logging && rc != SQLITE_DONE) redo_entry_drop(s->redo); /* kept when done */
    s->logging = false;
    if (rc != SQLITE_DONE) return db_fail(s, err, what);
    return CG_OK;
}

static int exec_simple(cg_store *store, int id, cg_err *err, const char *what) {
    sqlite_store *s = from(store);
    return exec_done(s, stmt(s, id), err, what);
}

/* ---- transactions ----
 *
 * Per-batch commits (a new store, :memory:, the naive bench): begin/commit are BEGIN
 * IMMEDIATE/COMMIT and sync fdatasyncs the WAL.
 *
 * Long transactions (log_batches): one SQLite transaction spans the batches of a flush interval.
 * Each batch is a savepoint in it (a refused call still rolls back alone) — or, begun by
 * begin_bare, is not: a savepoint copies every page the batch first touches into its journal,
 * and the ledger keeps savepoints for the calls that may need one. A bare batch's rollback
 * undoes the whole transaction instead, and the next begin replays the log (below), which holds
 * every batch before it. `commit` appends what the batch wrote (its statements and bound values)
 * to the redo log as one record; `sync` fdatasyncs that log instead of the WAL. Once per flush
 * interval (or when the log passes REDO_LOG_BYTES_MAX) the writer commits the file itself with
 * the last record's lsn — without an fsync: the log still holds every record since it last
 * restarted. The log restarts (offset 0) only once the file holds all of it durably: after a
 * checkpoint that backfilled the whole WAL (which fsyncs the WAL first and the file after:
 * wal_hook), or after an fdatasync of the WAL once the log passes restart_bytes. A hot B-tree
 * page is then written once per flush instead of once per batch, and a batch makes durable only
 * the bytes it changed. A crash loses the open transaction, and maybe flushes since the last
 * restart (SQLite recovers a prefix of its commits); the next open (or the next writer, below)
 * replays the records past the lsn the file holds. Other processes read the file up to a flush
 * interval behind, and their writes wait for the writer's flush (busy timeout).
 *
 * If a flush fails (disk full, I/O error) its transaction is rolled back — the log holds every
 * record since the last flush — and the next begin replays the log into a new one and commits
 * it before anything else; until that succeeds every batch is refused (retry), and the log
 * stays locked, so no other process writes past records only the log holds. */

#define REDO_LOG_BYTES_MAX (64 * 1024 * 1024)     /* a flush is due */

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* fsync on any descriptor of a file flushes the file (Linux): SQLite's own writes to the WAL
 * through its descriptor become durable here. The WAL keeps its inode while the connection
 * is open (SQLite rewinds or truncates it, never replaces it). */
static int wal_sync(sqlite_store *s, cg_err *err) {
    if (s->wal_fd < 0) return CG_OK;
    if (fdatasync(s->wal_fd) != 0)
        return cg_err_set(err, CG_EIO, "fdatasync of the write-ahead log failed: %s",
                          strerror(errno));
    return CG_OK;
}

static int sq_sync(cg_store *st, cg_err *err) {
    sqlite_store *s = from(st);
    return s->long_txn ? redo_sync(s->redo, err) : wal_sync(s, err);
}

/* Stops the store for good (until reopened): the file and the log disagree, or an fsync of
 * the file failed — after which Linux may report later fsyncs clean without the lost writes,
 * so nothing written since is known durable and the log must not restart. */
static void fail_stop(sqlite_store *s, const cg_err *why) {
    s->failed = true;
    cg_err_set(&s->failure, CG_EIO, "the ledger file could not be committed (%s); restart "
               "creditgate to replay its redo log", why->msg);
}

/* Binds a replayed statement's values and runs it. */
static int replay_entry(void *ctx, int statement, const redo_param *params, int count,
                        cg_err *err) {
    sqlite_store *s = ctx;
    if (statement < 0 || statement >= ST_COUNT || !statement_logged(statement))
        return cg_err_set(err, CG_EIO, "the redo log names statement %d, not a ledger write",
                          statement);
    sqlite3_stmt *st = stmt(s, statement);
    int bindable = sqlite3_bind_parameter_count(st);
    for (int i = 0; i < count; i++) {
        const redo_param *p = &params[i];
        if (p->index < 1 || p->index > bindable)
            return cg_err_set(err, CG_EIO, "the redo log binds parameter %d of statement %d, "
                              "which has %d", p->index, statement, bindable);
        if (p->type == REDO_INT) sqlite3_bind_int64(st, p->index, p->i);
        else if (p->type == REDO_TEXT)
            sqlite3_bind_text(st, p->index, p->bytes, (int)p->n, SQLITE_STATIC);
        else sqlite3_bind_blob(st, p->index, p->bytes, (int)p->n, SQLITE_STATIC);
    }
    return exec_done(s, st, err, "replay the redo log");
}

/* Replays the log's records past the lsn the file holds, in one transaction, and makes the
 * result durable (an fsync of the WAL, even when nothing was replayed: a failed flush may
 * have committed without one). The log then restarts: the file holds all of it. */
static int recover(sqlite_store *s, cg_err *err) {
    assert(s->redo_owner && !s->txn_open);
    int rc = exec_simple(&s->base, ST_BEGIN, err, "begin recovery");
    if (rc) return rc;
    sqlite3_stmt *st = stmt(s, ST_REDO_GET);
    bool row = sqlite3_step(st) == SQLITE_ROW;
    uint64_t applied = row ? (uint64_t)sqlite3_column_int64(st, 0) : 0, last = 0;
    sqlite3_reset(st);
    if (!row) rc = db_fail(s, err, "read the redo position");
    if (!rc) rc = redo_replay(s->redo, applied, replay_entry, s, &last, err);
    if (!rc && last != applied) {
        st = stmt(s, ST_REDO_SET);
        sqlite3_bind_int64(st, 1, (int64_t)last);
        rc = exec_done(s, st, err, "record the redo position");
    }
    if (!rc) rc = exec_simple(&s->base, ST_COMMIT, err, "commit recovery");
    if (rc) {
        exec_simple(&s->base, ST_ROLLBACK, NULL, "rollback recovery");
        return rc;
    }
    if ((rc = wal_sync(s, err))) {
        fail_stop(s, err);
        return rc;
    }
    s->lsn = last;
    redo_restart(s->redo);
    return CG_OK;
}

/* Takes the log over if no process holds it (its owner exited or crashed) and replays it:
 * a per-batch writer must not write past records only the log holds. */
static int take_over_log(sqlite_store *s, cg_err *err) {
    if (!s->redo || s->redo_owner || !redo_try_lock(s->redo)) return CG_OK;
    s->redo_owner = true;
    return recover(s, err);
}

/* Commits the long transaction with the last record's lsn; restarts the log when the file
 * holds every record durably (see above). */
static int flush_to_file(sqlite_store *s, cg_err *err) {
    assert(s->txn_open && !s->logging);
    sqlite3_stmt *st = stmt(s, ST_REDO_SET);
    sqlite3_bind_int64(st, 1, (int64_t)s->lsn);
    s->checkpointed = false;
    int rc = exec_done(s, st, err, "record the redo position");
    if (!rc) rc = exec_simple(&s->base, ST_COMMIT, err, "commit");
    if (rc) return rc;
    s->txn_open = false;
    bool restart = s->checkpointed || redo_bytes(s->redo) >= s->redo_restart_bytes;
    if (s->checkpoint_error) { /* its fsync may be the one that failed: see fail_stop */
        rc = cg_err_set(err, CG_EIO, "sqlite checkpoint: %s",
                        sqlite3_errstr(s->checkpoint_error));
        fail_stop(s, err);
        return rc;
    }
    if (restart && !s->checkpointed && (rc = wal_sync(s, err))) {
        fail_stop(s, err);
        return rc;
    }
    if (restart) redo_restart(s->redo);
    return CG_OK;
}

/* Begins a batch: per-batch commits, BEGIN; long transactions, a savepoint in the open one
 * (opened here, after replaying the log if a flush failed) unless the batch is bare. */
static int begin_batch(sqlite_store *s, bool savepoint, cg_err *err) {
    cg_store *st = &s->base;
    if (!s->long_txn) {
        int rc = take_over_log(s, err);
        return rc ? rc : exec_simple(st, ST_BEGIN, err, "begin");
    }
    if (s->failed) {
        if (err) *err = s->failure;
        return s->failure.code;
    }
    if (s->replay_due) {
        uint64_t lsn = s->lsn;
        int rc = recover(s, err);
        if (rc && s->failed && err) *err = s->failure;
        if (rc) return s->failed ? s->failure.code : rc;
        s->replay_due = false;
        if (s->lsn != lsn) {
            cg_err why;
            cg_err_set(&why, CG_EIO, "the redo log replays to record %llu, but %llu were "
                       "written", (unsigned long long)s->lsn, (unsigned long long)lsn);
            fail_stop(s, &why);
            if (err) *err = s->failure;
            return s->failure.code;
        }
    }
    if (!s->txn_open) {
        int rc = exec_simple(st, ST_BEGIN, err, "begin");
        if (rc) return rc;
        s->txn_open = true;
        s->txn_began_us = mono_us();
    }
    assert(!redo_pending(s->redo));
    s->batch_savepoint = savepoint;
    return savepoint ? exec_simple(st, ST_BATCH, err, "begin batch") : CG_OK;
}

static int sq_begin(cg_store *st, cg_err *err) { return begin_batch(from(st), true, err); }

/* store.h begin_bare: bare only under long transactions (per-batch commits roll back cheaply
 * as they are). */
static int sq_begin_bare(cg_store *st, bool *bare, cg_err *err) {
    sqlite_store *s = from(st);
    *bare = s->long_txn;
    return begin_batch(s, !*bare, err);
}

/* store.h changes: rows inserted, updated or deleted on this connection so far. */
static int64_t sq_changes(cg_store *st) { return sqlite3_total_changes64(from(st)->db); }

/* Drops the open long transaction: the log holds every batch in it, and the next begin
 * replays them. */
static void replay_later(sqlite_store *s) {
    if (!sqlite3_get_autocommit(s->db)) exec_simple(&s->base, ST_ROLLBACK, NULL, "rollback");
    s->txn_open = false;
    s->replay_due = true;
}

/* The long transaction's flush, due or asked for. On failure the batches stay in the log and
 * the next batch replays them first (sq_begin), unless the store has stopped (fail_stop). */
static void flush_or_replay_later(sqlite_store *s) {
    cg_err why = {0};
    if (flush_to_file(s, &why) && !s->failed) replay_later(s);
}

static int sq_commit(cg_store *st, cg_err *err) {
    sqlite_store *s = from(st);
    if (!s->long_txn) return exec_simple(st, ST_COMMIT, err, "commit");
    assert(s->txn_open && !s->logging);
    if (redo_pending(s->redo)) {
        /* On failure the batch's savepoint is still open: the ledger rolls it back. */
        int rc = redo_append(s->redo, s->lsn + 1, err);
        if (rc) return rc;
        s->lsn++;
    }
    int rc = s->batch_savepoint ? exec_simple(st, ST_BATCH_RELEASE, err, "release batch")
                                : CG_OK;
    if (rc) {
        fail_stop(s, err);
        return rc;
    }
    s->batch_savepoint = false;
    if (mono_us() - s->txn_began_us < s->flush_interval_us &&
        redo_bytes(s->redo) < REDO_LOG_BYTES_MAX)
        return CG_OK;
    flush_or_replay_later(s); /* the batch is in the log all the same */
    return CG_OK;
}

/* store.h flush: the long transaction committed now, between batches. */
static int sq_flush(cg_store *st, cg_err *err) {
    sqlite_store *s = from(st);
    if (!s->long_txn || !s->txn_open || s->failed) return CG_OK;
    flush_or_replay_later(s);
    if (!s->failed) return CG_OK;
    if (err) *err = s->failure;
    return s->failure.code;
}

static int sq_rollback(cg_store *st, cg_err *err) {
    sqlite_store *s = from(st);
    if (!s->long_txn) return exec_simple(st, ST_ROLLBACK, err, "rollback");
    redo_discard(s->redo);
    if (!s->batch_savepoint) { /* a bare batch: the batches before it go too */
        replay_later(s);
        return CG_OK;
    }
    s->batch_savepoint = false;
    int rc = exec_simple(st, ST_BATCH_ROLLBACK, err, "rollback batch");
    if (!rc) rc = exec_simple(st, ST_BATCH_RELEASE, err, "release batch");
    return rc;
}

static int sq_savepoint(cg_store *st, cg_err *err) {
    sqlite_store *s = from(st);
    if (s->txn_open) s->op_mark = redo_mark(s->redo);
    return exec_simple(st, ST_SAVEPOINT, err, "savepoint");
}
static int sq_release(cg_store *st, cg_err *err) {
    return exec_simple(st, ST_RELEASE, err, "release savepoint");
}
static int sq_rollback_to(cg_store *st, cg_err *err) {
    sqlite_store *s = from(st);
    if (s->txn_open) redo_rewind(s->redo, s->op_mark);
    int rc = exec_simple(st, ST_ROLLBACK_TO, err, "rollback to savepoint");
    if (rc) return rc;
    return exec_simple(st, ST_RELEASE, err, "release savepoint");
}

/* store.h log_batches: long transactions from now on, when this process owns the log. */
static int sq_log_batches(cg_store *store, int64_t flush_interval_us, int64_t restart_bytes,
                          cg_err *err) {
    sqlite_store *s = from(store);
    assert(flush_interval_us > 0 && restart_bytes > 0 && !s->txn_open);
    int rc = take_over_log(s, err);
    if (rc) return rc;
    s->long_txn = s->redo_owner;
    s->flush_interval_us = flush_interval_us;
    s->redo_restart_bytes = restart_bytes;
    return CG_OK;
}

/* store.h stopped: fail_stop ran; every call is refused until the file is reopened. */
static bool sq_stopped(cg_store *store) { return from(store)->failed; }

/* ---- members ---- */

static void read_member(sqlite3_stmt *st, cg_member_state *m) {
    memset(m, 0, sizeof *m);
    col_text(st, 0, m->member_id, sizeof m->member_id);
    m->effective_at_us = sqlite3_column_int64(st, 1);
    col_text(st, 2, m->plan, sizeof m->plan);
    col_text(st, 3, m->billing, sizeof m->billing);
    m->joined_at_us = sqlite3_column_int64(st, 4);
    m->recorded_at_us = sqlite3_column_int64(st, 5);
}

static int sq_member_insert(cg_store *store, const cg_member_state *m, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt_write(s, ST_MEMBER_INSERT);
    lb_text(s, st, 1, m->member_id);
    lb_int(s, st, 2, m->effective_at_us);
    lb_text(s, st, 3, m->plan);
    lb_text(s, st, 4, m->billing);
    lb_int(s, st, 5, m->joined_at_us);
    lb_int(s, st, 6, m->recorded_at_us);
    return exec_done(s, st, err, "insert member");
}

static int sq_member_at(cg_store *store, const char *member_id, int64_t at_us,
                        cg_member_state *out, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt(s, ST_MEMBER_AT);
    bind_text(st, 1, member_id);
    sqlite3_bind_int64(st, 2, at_us);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_member(st, out);
        sqlite3_reset(st);
        return CG_OK;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return db_fail(s, err, "read member");
    return cg_err_set_field(err, CG_ENOTFOUND, "member", "no member '%s' at that instant",
                            member_id);
}

static int sq_member_versions(cg_store *store, const char *member_id, cg_member_state *out,
                              int max, int *count, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt(s, ST_MEMBER_VERSIONS);
    bind_text(st, 1, member_id);
    sqlite3_bind_int(st, 2, max);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max) read_member(st, &out[n++]);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_fail(s, err, "read member history");
    *count = n;
    return CG_OK;
}

/* ---- grants ---- */

static void read_grant(sqlite3_stmt *st, cg_grant *g) {
    memset(g, 0, sizeof *g);
    col_text(st, 0, g->member_id, sizeof g->member_id);
    col_text(st, 1, g->grant_id, sizeof g->grant_id);
    g->source = (cg_grant_source)sqlite3_column_int(st, 2);
    g->category = (cg_grant_category)sqlite3_column_int(st, 3);
    g->priority = sqlite3_column_int(st, 4);
    g->credits = sqlite3_column_int64(st, 5);
    g->remaining = sqlite3_column_int64(st, 6);
    g->held = sqlite3_column_int64(st, 7);
    g->starts_at_us = sqlite3_column_int64(st, 8);
    g->expires_at_us = sqlite3_column_int64(st, 9);
    g->created_at_us = sqlite3_column_int64(st, 10);
    g->expired = sqlite3_column_int(st, 11) != 0;
    col_text(st, 12, g->note, sizeof g->note);
}

static int sq_grant_insert(cg_store *store, const cg_grant *g, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt_write(s, ST_GRANT_INSERT);
    lb_text(s, st, 1, g->member_id);
    lb_text(s, st, 2, g->grant_id);
    lb_int(s, st, 3, g->source);
    lb_int(s, st, 4, g->category);
    lb_int(s, st, 5, g->priority);
    lb_int(s, st, 6, g->credits);
    lb_int(s, st, 7, g->remaining);
    lb_int(s, st, 8, g->held);
    lb_int(s, st, 9, g->starts_at_us);
    lb_int(s, st, 10, g->expires_at_us);
    lb_int(s, st, 11, g->created_at_us);
    lb_int(s, st, 12, g->expired);
    lb_text(s, st, 13, g->note);
    return exec_done(s, st, err, "insert grant");
}

/* One member's object by id (statement binds member_id, object_id): read_row fills out from
 * the row; CG_ENOTFOUND names `what` ("grant", "charge") when there is none. */
static int object_get(sqlite_store *s, int statement, const char *member_id,
                      const char *object_id, const char *what,
                      void (*read_row)(sqlite3_stmt *, void *), void *out, cg_err *err) {
    sqlite3_stmt *st = stmt(s, statement);
    bind_text(st, 1, member_id);
    bind_text(st, 2, object_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_row(st, out);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) return CG_OK;
    if (rc != SQLITE_DONE) {
        char doing[32];
        snprintf(doing, sizeof doing, "read %s", what);
        return db_fail(s, err, doing);
    }
    return cg_err_set_field(err, CG_ENOTFOUND, what, "no %s '%s' for member '%s'", what,
                            object_id, member_id);
}

static void read_grant_row(sqlite3_stmt *st, void *out) { read_grant(st, out); }

static int sq_grant_get(cg_store *store, const char *member_id, const char *grant_id,
                        cg_grant *out, cg_err *err) {
    return object_get(from(store), ST_GRANT_GET, member_id, grant_id, "grant", read_grant_row,
                      out, err);
}

static int sq_grants_open(cg_store *store, const char *member_id, cg_grant *out, int max,
                          int *count, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt(s, ST_GRANTS_OPEN);
    bind_text(st, 1, member_id);
    sqlite3_bind_int(st, 2, max + 1);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == max) {
            sqlite3_reset(st);
            return cg_err_set(err, CG_ELIMIT, "member '%s' has more than %d open grants",
                              member_id, max);
        }
        read_grant(st, &out[n++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return db_fail(s, err, "read grants");
    *count = n;
    return CG_OK;
}

static int sq_grant_update(cg_store *store, const cg_grant *g, cg_err *err) {
    sqlite_store *s = from(store);
    for (int id = ST_GRANT_UPDATE_AMOUNTS;; id = ST_GRANT_UPDATE) {
        sqlite3_stmt *st = stmt_write(s, id);
        lb_text(s, st, 1, g->member_id);
        lb_text(s, st, 2, g->grant_id);
        lb_int(s, st, 3, g->remaining);
        lb_int(s, st, 4, g->held);
        lb_int(s, st, 5, g->expired);
        int rc = exec_done(s, st, err, "update grant");
        if (rc || sqlite3_changes(s->db) == 1 || id == ST_GRANT_UPDATE) {
            assert(rc || sqlite3_changes(s->db) == 1);
            return rc;
        }
    }
}

static int sq_grant_update_credits(cg_store *store, const cg_grant *g, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt_write(s, ST_GRANT_UPDATE_CREDITS);
    lb_text(s, st, 1, g->member_id);
    lb_text(s, st, 2, g->grant_id);
    lb_int(s, st, 3, g->remaining);
    lb_int(s, st, 4, g->held);
    lb_int(s, st, 5, g->expired);
    lb_int(s, st, 6, g->credits);
    int rc = exec_done(s, st, err, "update grant credits");
    assert(rc || sqlite3_changes(s->db) == 1);
    return rc;
}

static int list_refs(sqlite_store *s, int id, int64_t now_us, cg_store_ref *out, int max,
                     int *count, cg_err *err) {
    sqlite3_stmt *st = stmt(s, id);
    sqlite3_bind_int64(st, 1, now_us);
    sqlite3_bind_int(st, 2, max);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max) {
        col_text(st, 0, out[n].member_id, sizeof out[n].member_id);
        col_text(st, 1, out[n].object_id, sizeof out[n].object_id);
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_fail(s, err, "sweep listing");
    *count = n;
    return CG_OK;
}

static int sq_grants_due(cg_store *store, int64_t now_us, cg_store_ref *out, int max,
                         int *count, cg_err *err) {
    return list_refs(from(store), ST_GRANTS_DUE, now_us, out, max, count, err);
}

/* ---- charges: items and parts are text columns in a compact internal form ----
 *
 * Fields are separated by US (0x1f) and records by RS (0x1e), characters that never occur in
 * ids or English reasons (they are replaced by spaces if they ever do). Not JSON: these two
 * columns are written and read on every charge and capture, and a jansson round trip cost
 * ~15 µs per pair of calls — a tenth of the ledger's CPU. The form belongs to this backend. */

#define FIELD_SEP '\x1f'
#define RECORD_SEP '\x1e'
#define ITEMS_TEXT_BYTES_MAX (CG_DECISION_ITEMS_MAX * (CG_EXPLAIN_BYTES_MAX + 6 * CG_ID_BYTES_MAX + 96))
#define PARTS_TEXT_BYTES_MAX (CG_CHARGE_PARTS_MAX * (CG_OBJECT_ID_BYTES_MAX + 80))

typedef struct text_buf {
    char *p;
    size_t len, cap;
} text_buf;

static void put_text(text_buf *b, const char *text, char sep) {
    for (const char *t = text; *t && b->len + 2 < b->cap; t++)
        b->p[b->len++] = (*t == FIELD_SEP || *t == RECORD_SEP) ? ' ' : *t;
    if (b->len + 1 < b->cap) b->p[b->len++] = sep;
    b->p[b->len] = 0;
}

static void put_int(text_buf *b, int64_t v, char sep) {
    char num[24];
    snprintf(num, sizeof num, "%" PRId64, v);
    put_text(b, num, sep);
}

/* Reads one field up to sep into dst; returns the position after the separator. */
static const char *get_text(const char *t, char *dst, size_t dst_bytes) {
    size_t n = 0;
    while (*t && *t != FIELD_SEP && *t != RECORD_SEP) {
        if (n + 1 < dst_bytes) dst[n++] = *t;
        t++;
    }
    dst[n] = 0;
    return *t ? t + 1 : t;
}

static const char *get_int(const char *t, int64_t *v) {
    char num[24];
    t = get_text(t, num, sizeof num);
    *v = strtoll(num, NULL, 10);
    return t;
}

static void items_dump(const cg_charge *c, text_buf *b) {
    for (int i = 0; i < c->item_count; i++) {
        const cg_charge_item *it = &c->items[i];
        put_text(b, it->kind, FIELD_SEP);
        put_text(b, it->model, FIELD_SEP);
        put_text(b, it->variant, FIELD_SEP);
        put_int(b, it->count, FIELD_SEP);
        put_int(b, it->unlimited, FIELD_SEP);
        put_int(b, it->credits, FIELD_SEP);
        put_text(b, it->benefit, FIELD_SEP);
        put_text(b, it->reason_code, FIELD_SEP);
        put_text(b, it->reason, RECORD_SEP);
    }
}

static void parts_dump(const cg_charge *c, text_buf *b) {
    for (int i = 0; i < c->part_count; i++) {
        const cg_charge_part *p = &c->parts[i];
        put_text(b, p->grant_id, FIELD_SEP);
        put_int(b, p->source, FIELD_SEP);
        put_int(b, p->category, FIELD_SEP);
        put_int(b, p->held, FIELD_SEP);
        put_int(b, p->captured, FIELD_SEP);
        put_int(b, p->refunded, RECORD_SEP);
    }
}

static void items_load(cg_charge *c, const char *t) {
    c->item_count = 0;
    while (t && *t && c->item_count < CG_DECISION_ITEMS_MAX) {
        cg_charge_item *it = &c->items[c->item_count++];
        int64_t unlimited = 0;
        t = get_text(t, it->kind, sizeof it->kind);
        t = get_text(t, it->model, sizeof it->model);
        t = get_text(t, it->variant, sizeof it->variant);
        t = get_int(t, &it->count);
        t = get_int(t, &unlimited);
        it->unlimited = unlimited != 0;
        t = get_int(t, &it->credits);
        t = get_text(t, it->benefit, sizeof it->benefit);
        t = get_text(t, it->reason_code, sizeof it->reason_code);
        t = get_text(t, it->reason, sizeof it->reason);
    }
}

static void parts_load(cg_charge *c, const char *t) {
    c->part_count = 0;
    while (t && *t && c->part_count < CG_CHARGE_PARTS_MAX) {
        cg_charge_part *p = &c->parts[c->part_count++];
        int64_t source = 0, category = 0;
        t = get_text(t, p->grant_id, sizeof p->grant_id);
        t = get_int(t, &source);
        t = get_int(t, &category);
        p->source = (cg_grant_source)source;
        p->category = (cg_grant_category)category;
        t = get_int(t, &p->held);
        t = get_int(t, &p->captured);
        t = get_int(t, &p->refunded);
    }
}

/* Every field is assigned below (items and parts up to their counts), so no memset of the
 * 13 KB struct: it was the largest single cost of a capture in callgrind. */
static void read_charge(sqlite3_stmt *st, cg_charge *c) {
    c->credits_available = 0;
    col_text(st, 0, c->member_id, sizeof c->member_id);
    col_text(st, 1, c->charge_id, sizeof c->charge_id);
    c->status = (cg_charge_status)sqlite3_column_int(st, 2);
    col_text(st, 3, c->model, sizeof c->model);
    col_text(st, 4, c->variant, sizeof c->variant);
    c->count = sqlite3_column_int64(st, 5);
    col_text(st, 6, c->agent_model, sizeof c->agent_model);
    col_text(st, 7, c->agent_kind, sizeof c->agent_kind);
    col_text(st, 8, c->prompt, sizeof c->prompt);
    c->at_us = sqlite3_column_int64(st, 9);
    col_text(st, 10, c->plan, sizeof c->plan);
    col_text(st, 11, c->billing, sizeof c->billing);
    c->joined_at_us = sqlite3_column_int64(st, 12);
    col_text(st, 13, c->policy_version, sizeof c->policy_version);
    items_load(c, (const char *)sqlite3_column_text(st, 14));
    c->credits = sqlite3_column_int64(st, 15);
    c->held = sqlite3_column_int64(st, 16);
    c->captured = sqlite3_column_int64(st, 17);
    c->refunded = sqlite3_column_int64(st, 18);
    parts_load(c, (const char *)sqlite3_column_text(st, 19));
    c->created_at_us = sqlite3_column_int64(st, 20);
    c->expires_at_us = sqlite3_column_int64(st, 21);
    c->settled_at_us = sqlite3_column_int64(st, 22);
}

static int sq_charge_insert(cg_store *store, const cg_charge *c, cg_err *err) {
    sqlite_store *s = from(store);
    char items[ITEMS_TEXT_BYTES_MAX], parts[PARTS_TEXT_BYTES_MAX];
    text_buf ib = {items, 0, sizeof items}, pb = {parts, 0, sizeof parts};
    items[0] = parts[0] = 0;
    items_dump(c, &ib);
    parts_dump(c, &pb);
    sqlite3_stmt *st = stmt_write(s, ST_CHARGE_INSERT);
    lb_text(s, st, 1, c->member_id);
    lb_text(s, st, 2, c->charge_id);
    lb_int(s, st, 3, c->status);
    lb_text(s, st, 4, c->model);
    lb_text(s, st, 5, c->variant);
    lb_int(s, st, 6, c->count);
    lb_text(s, st, 7, c->agent_model);
    lb_text(s, st, 8, c->agent_kind);
    lb_text(s, st, 9, c->prompt);
    lb_int(s, st, 10, c->at_us);
    lb_text(s, st, 11, c->plan);
    lb_text(s, st, 12, c->billing);
    lb_int(s, st, 13, c->joined_at_us);
    lb_text(s, st, 14, c->policy_version);
    lb_text(s, st, 15, items);
    lb_int(s, st, 16, c->credits);
    lb_int(s, st, 17, c->held);
    lb_int(s, st, 18, c->captured);
    lb_int(s, st, 19, c->refunded);
    lb_text(s, st, 20, parts);
    lb_int(s, st, 21, c->created_at_us);
    lb_int(s, st, 22, c->expires_at_us);
    lb_int(s, st, 23, c->settled_at_us);
    return exec_done(s, st, err, "insert charge");
}

static void read_charge_row(sqlite3_stmt *st, void *out) { read_charge(st, out); }

static int sq_charge_get(cg_store *store, const char *member_id, const char *charge_id,
                         cg_charge *out, cg_err *err) {
    return object_get(from(store), ST_CHARGE_GET, member_id, charge_id, "charge",
                      read_charge_row, out, err);
}

static int sq_charge_update(cg_store *store, const cg_charge *c, cg_err *err) {
    sqlite_store *s = from(store);
    char parts[PARTS_TEXT_BYTES_MAX];
    text_buf pb = {parts, 0, sizeof parts};
    parts[0] = 0;
    parts_dump(c, &pb);
    sqlite3_stmt *st = stmt_write(s, ST_CHARGE_UPDATE);
    lb_text(s, st, 1, c->member_id);
    lb_text(s, st, 2, c->charge_id);
    lb_int(s, st, 3, c->status);
    lb_int(s, st, 4, c->held);
    lb_int(s, st, 5, c->captured);
    lb_int(s, st, 6, c->refunded);
    lb_text(s, st, 7, parts);
    lb_int(s, st, 8, c->settled_at_us);
    return exec_done(s, st, err, "update charge");
}

/* Steps st into out[*n..limit); resets it. */
static int charges_rows(sqlite_store *s, sqlite3_stmt *st, int limit, cg_charge *out, int *n,
                        cg_err *err) {
    int rc = SQLITE_DONE;
    while (*n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) read_charge(st, &out[(*n)++]);
    if (*n == limit) rc = SQLITE_DONE;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? CG_OK : db_fail(s, err, "list charges");
}

/* Newest first: the ids made in creation order ("ch_t…", every charge since schema 5), then
 * the older random ids by created_at_us — every one of them older than any "ch_t" id. */
static int sq_charges_page(cg_store *store, const char *member_id, int64_t before_at_us,
                           const char *before_id, int limit, cg_charge *out, int *count,
                           cg_err *err) {
    sqlite_store *s = from(store);
    bool first = !before_id || !*before_id;
    bool past_ordered = !first && strncmp(before_id, "ch_t", 4) < 0; /* the cursor is old */
    int n = 0, rc = CG_OK;
    if (!past_ordered) {
        sqlite3_stmt *st = stmt(s, ST_CHARGES_ORDERED);
        bind_text(st, 1, member_id);
        bind_text(st, 3, first ? "ch_u" : before_id);
        sqlite3_bind_int(st, 4, limit);
        rc = charges_rows(s, st, limit, out, &n, err);
    }
    if (!rc && n < limit) {
        sqlite3_stmt *st = stmt(s, past_ordered ? ST_CHARGES_AFTER : ST_CHARGES_FIRST);
        bind_text(st, 1, member_id);
        if (past_ordered) {
            sqlite3_bind_int64(st, 2, before_at_us);
            bind_text(st, 3, before_id);
        }
        sqlite3_bind_int(st, 4, limit - n);
        rc = charges_rows(s, st, limit, out, &n, err);
    }
    *count = rc ? 0 : n;
    return rc;
}

static int sq_charges_due(cg_store *store, int64_t now_us, cg_store_ref *out, int max,
                          int *count, cg_err *err) {
    return list_refs(from(store), ST_CHARGES_DUE, now_us, out, max, count, err);
}

/* ---- journal ---- */

static int sq_journal_last_seq(cg_store *store, const char *member_id, int64_t *seq,
                               cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt(s, ST_JOURNAL_LAST);
    bind_text(st, 1, member_id);
    int rc = sqlite3_step(st);
    *seq = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) return db_fail(s, err, "read journal");
    return CG_OK;
}

static int sq_journal_append(cg_store *store, const cg_journal_entry *e, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt_write(s, ST_JOURNAL_APPEND);
    lb_text(s, st, 1, e->member_id);
    lb_int(s, st, 2, e->seq);
    lb_int(s, st, 3, e->at_us);
    lb_int(s, st, 4, e->kind);
    lb_text(s, st, 5, e->grant_id);
    lb_text(s, st, 6, e->charge_id);
    lb_int(s, st, 7, e->delta_remaining);
    lb_int(s, st, 8, e->delta_held);
    lb_text(s, st, 9, e->note);
    return exec_done(s, st, err, "append journal");
}

static void read_entry(sqlite3_stmt *st, cg_journal_entry *e) {
    memset(e, 0, sizeof *e);
    col_text(st, 0, e->member_id, sizeof e->member_id);
    e->seq = sqlite3_column_int64(st, 1);
    e->at_us = sqlite3_column_int64(st, 2);
    e->kind = (cg_journal_kind)sqlite3_column_int(st, 3);
    col_text(st, 4, e->grant_id, sizeof e->grant_id);
    col_text(st, 5, e->charge_id, sizeof e->charge_id);
    e->delta_remaining = sqlite3_column_int64(st, 6);
    e->delta_held = sqlite3_column_int64(st, 7);
    col_text(st, 8, e->note, sizeof e->note);
}

static int sq_journal_page(cg_store *store, const char *member_id, int64_t after_seq,
                           int limit, cg_journal_entry *out, int *count, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt(s, ST_JOURNAL_PAGE);
    bind_text(st, 1, member_id);
    sqlite3_bind_int64(st, 2, after_seq);
    sqlite3_bind_int(st, 3, limit);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < limit) read_entry(st, &out[n++]);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_fail(s, err, "read journal page");
    *count = n;
    return CG_OK;
}

/* ---- idempotency ---- */

static int sq_idem_get(cg_store *store, const char *member_id, const char *key,
                       cg_store_idem *out, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt(s, ST_IDEM_GET);
    bind_text(st, 1, member_id);
    bind_text(st, 2, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        col_text(st, 0, out->member_id, sizeof out->member_id);
        col_text(st, 1, out->key, sizeof out->key);
        out->op = sqlite3_column_int(st, 2);
        int hash_bytes = sqlite3_column_bytes(st, 3);
        const void *hash = sqlite3_column_blob(st, 3);
        if (hash && hash_bytes == (int)sizeof out->request_hash)
            memcpy(out->request_hash, hash, sizeof out->request_hash);
        col_text(st, 4, out->object_id, sizeof out->object_id);
        out->created_at_us = sqlite3_column_int64(st, 5);
        sqlite3_reset(st);
        return CG_OK;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return db_fail(s, err, "read idempotency key");
    return cg_err_set(err, CG_ENOTFOUND, "unknown idempotency key");
}

/* The six parameters of ST_IDEM_INSERT and ST_IDEM_CLAIM. */
static void bind_idem(sqlite_store *s, sqlite3_stmt *st, const cg_store_idem *row) {
    lb_text(s, st, 1, row->member_id);
    lb_text(s, st, 2, row->key);
    lb_int(s, st, 3, row->op);
    lb_blob(s, st, 4, row->request_hash, sizeof row->request_hash);
    lb_text(s, st, 5, row->object_id);
    lb_int(s, st, 6, row->created_at_us);
}

static int sq_idem_insert(cg_store *store, const cg_store_idem *row, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt_write(s, ST_IDEM_INSERT);
    bind_idem(s, st, row);
    return exec_done(s, st, err, "insert idempotency key");
}

/* One index seek when no key is due (nearly every batch); only then the DELETE, whose IN
 * list builds a temporary table (perf: 2 % of the writer in malloc when it ran every batch). */
static int sq_idem_purge(cg_store *store, int64_t before_us, int max, int *deleted,
                         cg_err *err) {
    sqlite_store *s = from(store);
    *deleted = 0;
    sqlite3_stmt *st = stmt(s, ST_IDEM_DUE);
    sqlite3_bind_int64(st, 1, before_us);
    int step = sqlite3_step(st);
    sqlite3_reset(st);
    if (step == SQLITE_DONE) return CG_OK;
    if (step != SQLITE_ROW) return db_fail(s, err, "find due idempotency keys");
    st = stmt_write(s, ST_IDEM_PURGE);
    lb_int(s, st, 1, before_us);
    lb_int(s, st, 2, max);
    int rc = exec_done(s, st, err, "purge idempotency keys");
    *deleted = rc ? 0 : sqlite3_changes(s->db);
    return rc;
}

static int sq_idem_claim(cg_store *store, const cg_store_idem *row, bool *claimed,
                         cg_store_idem *existing, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt_write(s, ST_IDEM_CLAIM);
    bind_idem(s, st, row);
    int rc = exec_done(s, st, err, "claim idempotency key");
    if (rc) return rc;
    *claimed = sqlite3_changes(s->db) == 1;
    if (*claimed) return CG_OK;
    return sq_idem_get(store, row->member_id, row->key, existing, err);
}

static int sq_data_version(cg_store *store, int64_t *version, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt(s, ST_DATA_VERSION);
    int rc = sqlite3_step(st);
    *version = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) return db_fail(s, err, "read data_version");
    return CG_OK;
}

/* ---- the shard table (once, at open: statements prepared on the spot) ---- */

/* Runs sql with the three shard parameters bound (when it has them); *row: a row came back. */
static int shard_step(sqlite_store *s, const char *sql, const cg_store_shard *bind,
                      cg_store_shard *out, bool *row, cg_err *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, "prepare a shard table statement");
    if (bind) {
        sqlite3_bind_int(st, 1, bind->index);
        sqlite3_bind_int(st, 2, bind->count);
        sqlite3_bind_text(st, 3, bind->ledger_id, -1, SQLITE_STATIC);
    }
    int step = sqlite3_step(st);
    *row = step == SQLITE_ROW;
    if (*row && out) {
        out->index = sqlite3_column_int(st, 0);
        out->count = sqlite3_column_int(st, 1);
        const unsigned char *id = sqlite3_column_text(st, 2);
        snprintf(out->ledger_id, sizeof out->ledger_id, "%s", id ? (const char *)id : "");
    }
    int rc = step == SQLITE_ROW || step == SQLITE_DONE ? CG_OK
                                                       : db_fail(s, err, "use the shard table");
    sqlite3_finalize(st);
    return rc;
}

static int sq_shard_mark(cg_store *store, const cg_store_shard *want, cg_store_shard *out,
                         cg_err *err) {
    sqlite_store *s = from(store);
    static const char select_sql[] =
        "SELECT shard_index, shard_count, ledger_id FROM shard WHERE id = 0";
    bool row = false;
    int rc = shard_step(s, select_sql, NULL, out, &row, err);
    if (rc || row) return rc;
    /* None yet: a file that already holds members predates shards and stays shard 0 of 1. */
    bool used = false;
    rc = shard_step(s, "SELECT 1 WHERE EXISTS (SELECT 1 FROM members) OR EXISTS (SELECT 1 FROM"
                    " grants) OR EXISTS (SELECT 1 FROM charges)", NULL, NULL, &used, err);
    cg_store_shard mark = *want;
    if (used) mark.index = 0, mark.count = 1;
    /* OR IGNORE: another process opening the same new file at once may have won; both then
     * read its row. */
    if (!rc) rc = shard_step(s, "INSERT OR IGNORE INTO shard (id, shard_index, shard_count,"
                             " ledger_id) VALUES (0, ?1, ?2, ?3)", &mark, NULL, &row, err);
    if (!rc) rc = shard_step(s, select_sql, NULL, out, &row, err);
    if (!rc && !row) rc = cg_err_set(err, CG_EIO, "sqlite: the shard table stayed empty");
    return rc;
}

static int sq_count_held(cg_store *store, int64_t *count, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = NULL; /* once per open: prepared on the spot; charges_due covers it */
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM charges WHERE status = 0", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(s, err, "prepare count of held charges");
    int step = sqlite3_step(st);
    *count = step == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return step == SQLITE_ROW ? CG_OK : db_fail(s, err, "count held charges");
}

static int exec_sql(sqlite_store *s, const char *sql, cg_err *err); /* below, with the schema */

static int sq_cache_bound(cg_store *store, int64_t kib, cg_err *err) {
    assert(kib >= 1);
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size = -%" PRId64, kib);
    return exec_sql(from(store), pragma, err);
}

static int64_t sq_cache_bytes(cg_store *store) {
    int used = 0, highwater = 0;
    if (sqlite3_db_status(from(store)->db, SQLITE_DBSTATUS_CACHE_USED, &used, &highwater, 0))
        return 0;
    return used;
}

/* ---- verify scans ---- */

static void read_sum(sqlite3_stmt *st, int col, const char *member_id, const char *object_id,
                     cg_store_sum *sum) {
    snprintf(sum->member_id, sizeof sum->member_id, "%s", member_id);
    snprintf(sum->object_id, sizeof sum->object_id, "%s", object_id);
    sum->delta_remaining = sqlite3_column_int64(st, col);
    sum->delta_held = sqlite3_column_int64(st, col + 1);
    sum->entries = sqlite3_column_int64(st, col + 2);
}

static int sq_scan_grants(cg_store *store, cg_store_grant_fn fn, void *ctx, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt(s, ST_SCAN_GRANTS);
    int rc, stop = 0;
    cg_grant g;
    cg_store_sum sum;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_grant(st, &g);
        read_sum(st, 13, g.member_id, g.grant_id, &sum);
        stop = fn(ctx, &g, &sum);
    }
    sqlite3_reset(st);
    if (stop) return stop;
    if (rc != SQLITE_DONE) return db_fail(s, err, "scan grants");
    return CG_OK;
}

static int sq_scan_charges(cg_store *store, cg_store_charge_fn fn, void *ctx, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt(s, ST_SCAN_CHARGES);
    cg_charge *c = malloc(sizeof *c); /* ~13 KB: keep it off the writer's stack */
    if (!c) return cg_err_set(err, CG_ENOMEM, "out of memory scanning charges");
    int rc, stop = 0;
    cg_store_sum sum;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_charge(st, c);
        read_sum(st, 23, c->member_id, c->charge_id, &sum);
        stop = fn(ctx, c, &sum);
    }
    sqlite3_reset(st);
    free(c);
    if (stop) return stop;
    if (rc != SQLITE_DONE) return db_fail(s, err, "scan charges");
    return CG_OK;
}

static int sq_count_entries(cg_store *store, int64_t *entries, cg_err *err) {
    sqlite_store *s = from(store);
    sqlite3_stmt *st = stmt(s, ST_COUNT_ENTRIES);
    int rc = sqlite3_step(st);
    *entries = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) return db_fail(s, err, "count journal");
    return CG_OK;
}

/* ---- WAL write coalescing: a VFS shim over the default one ----
 *
 * SQLite 3.40 writes each WAL frame as two pwrite calls (24-byte header, then the page), and a
 * ledger call dirties ~5 random pages: `perf` put a fifth of the process's time in those
 * syscalls. This shim gathers the contiguous writes of one transaction to the -wal file and
 * hands them to the real file in one write when the commit frame (header with a non-zero
 * "database size after commit") has been followed by its page — still inside COMMIT, before
 * SQLite publishes the frames in the wal-index, so other connections and the ledger's syncer
 * (whose fdatasync begins after COMMIT returned) see exactly what they saw before. Any other
 * access to the file (read, size, truncate, sync, a non-contiguous write, close) writes the
 * gathered bytes first. Other files pass straight through. */

#define WAL_GATHER_BYTES_MAX (4 * 1024 * 1024)
#define WAL_FRAME_HEADER_BYTES 24
#define CW_VFS_NAME "creditgate-wal"

typedef struct cw_file {
    sqlite3_file base;
    sqlite3_file *real; /* the default VFS's file, allocated right after this struct */
    bool wal;
    bool commit_pending; /* the commit frame's header is gathered: flush after its page */
    unsigned char *buf;  /* WAL_GATHER_BYTES_MAX, allocated on the first write */
    size_t len;
    sqlite3_int64 off;   /* file offset of buf[0] */
} cw_file;

static sqlite3_vfs cw_vfs;

/* The unix VFS writes at most 128 KiB - 1 per call (seekAndWrite masks the size with
 * 0x1ffff), so the gathered bytes go in 64 KiB writes. */
#define WAL_WRITE_BYTES_MAX (64 * 1024)

static int cw_flush(cw_file *c) {
    int rc = SQLITE_OK;
    for (size_t done = 0; done < c->len && rc == SQLITE_OK; done += WAL_WRITE_BYTES_MAX) {
        size_t n = c->len - done < WAL_WRITE_BYTES_MAX ? c->len - done : WAL_WRITE_BYTES_MAX;
        rc = c->real->pMethods->xWrite(c->real, c->buf + done, (int)n,
                                       c->off + (sqlite3_int64)done);
    }
    c->len = 0;
    c->commit_pending = false;
    return rc;
}

static int cw_close(sqlite3_file *f) {
    cw_file *c = (cw_file *)f;
    int rc = cw_flush(c);
    int rc2 = c->real->pMethods->xClose(c->real);
    free(c->buf);
    c->buf = NULL;
    return rc ? rc : rc2;
}

static int cw_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off) {
    cw_file *c = (cw_file *)f;
    int rc = cw_flush(c);
    return rc ? rc : c->real->pMethods->xRead(c->real, p, n, off);
}

static bool is_commit_header(const void *p, int n) {
    const unsigned char *h = p; /* bytes 4..7: database size after commit, 0 in other frames */
    return n == WAL_FRAME_HEADER_BYTES && (h[4] | h[5] | h[6] | h[7]) != 0;
}

static int cw_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off) {
    cw_file *c = (cw_file *)f;
    if (!c->wal) return c->real->pMethods->xWrite(c->real, p, n, off);
    int rc = SQLITE_OK;
    if (c->len && (off != c->off + (sqlite3_int64)c->len || c->len + (size_t)n > WAL_GATHER_BYTES_MAX))
        rc = cw_flush(c);
    if (rc) return rc;
    if (!c->buf) c->buf = malloc(WAL_GATHER_BYTES_MAX);
    if (!c->buf || (size_t)n > WAL_GATHER_BYTES_MAX)
        return c->real->pMethods->xWrite(c->real, p, n, off);
    if (c->len == 0) c->off = off;
    memcpy(c->buf + c->len, p, (size_t)n);
    c->len += (size_t)n;
    if (is_commit_header(p, n)) {
        c->commit_pending = true;
        return SQLITE_OK;
    }
    return c->commit_pending ? cw_flush(c) : SQLITE_OK;
}

static int cw_truncate(sqlite3_file *f, sqlite3_int64 size) {
    cw_file *c = (cw_file *)f;
    int rc = cw_flush(c);
    return rc ? rc : c->real->pMethods->xTruncate(c->real, size);
}

static int cw_sync(sqlite3_file *f, int flags) {
    cw_file *c = (cw_file *)f;
    int rc = cw_flush(c);
    return rc ? rc : c->real->pMethods->xSync(c->real, flags);
}

static int cw_file_size(sqlite3_file *f, sqlite3_int64 *size) {
    cw_file *c = (cw_file *)f;
    int rc = cw_flush(c);
    return rc ? rc : c->real->pMethods->xFileSize(c->real, size);
}

#define CW_REAL(f) (((cw_file *)(f))->real)
static int cw_lock(sqlite3_file *f, int l) { return CW_REAL(f)->pMethods->xLock(CW_REAL(f), l); }
static int cw_unlock(sqlite3_file *f, int l) {
    return CW_REAL(f)->pMethods->xUnlock(CW_REAL(f), l);
}
static int cw_check_reserved(sqlite3_file *f, int *out) {
    return CW_REAL(f)->pMethods->xCheckReservedLock(CW_REAL(f), out);
}
static int cw_file_control(sqlite3_file *f, int op, void *arg) {
    cw_file *c = (cw_file *)f;
    int rc = cw_flush(c);
    return rc ? rc : c->real->pMethods->xFileControl(c->real, op, arg);
}
static int cw_sector_size(sqlite3_file *f) {
    return CW_REAL(f)->pMethods->xSectorSize(CW_REAL(f));
}
static int cw_device(sqlite3_file *f) {
    return CW_REAL(f)->pMethods->xDeviceCharacteristics(CW_REAL(f));
}
static int cw_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **out) {
    return CW_REAL(f)->pMethods->xShmMap(CW_REAL(f), pg, sz, extend, out);
}
static int cw_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
    return CW_REAL(f)->pMethods->xShmLock(CW_REAL(f), offset, n, flags);
}
static void cw_shm_barrier(sqlite3_file *f) { CW_REAL(f)->pMethods->xShmBarrier(CW_REAL(f)); }
static int cw_shm_unmap(sqlite3_file *f, int del) {
    return CW_REAL(f)->pMethods->xShmUnmap(CW_REAL(f), del);
}
static int cw_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out) {
    cw_file *c = (cw_file *)f;
    int rc = cw_flush(c);
    return rc ? rc : c->real->pMethods->xFetch(c->real, off, n, out);
}
static int cw_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
    return CW_REAL(f)->pMethods->xUnfetch(CW_REAL(f), off, p);
}

static const sqlite3_io_methods cw_io = {
    3, cw_close, cw_read, cw_write, cw_truncate, cw_sync, cw_file_size, cw_lock, cw_unlock,
    cw_check_reserved, cw_file_control, cw_sector_size, cw_device, cw_shm_map, cw_shm_lock,
    cw_shm_barrier, cw_shm_unmap, cw_fetch, cw_unfetch,
};

static int cw_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out) {
    sqlite3_vfs *real_vfs = vfs->pAppData;
    cw_file *c = (cw_file *)f;
    memset(c, 0, sizeof *c);
    c->real = (sqlite3_file *)(c + 1);
    c->wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = real_vfs->xOpen(real_vfs, name, c->real, flags, out);
    /* the real file must offer every method we forward (version 3: shm and fetch) */
    c->base.pMethods = c->real->pMethods && c->real->pMethods->iVersion >= 3 ? &cw_io : NULL;
    if (c->real->pMethods && !c->base.pMethods) {
        c->real->pMethods->xClose(c->real);
        return SQLITE_CANTOPEN;
    }
    return rc;
}

#define CW_VFS(v) ((sqlite3_vfs *)(v)->pAppData)
static int cw_delete(sqlite3_vfs *v, const char *n, int sync) {
    return CW_VFS(v)->xDelete(CW_VFS(v), n, sync);
}
static int cw_access(sqlite3_vfs *v, const char *n, int flags, int *out) {
    return CW_VFS(v)->xAccess(CW_VFS(v), n, flags, out);
}
static int cw_full_pathname(sqlite3_vfs *v, const char *n, int size, char *out) {
    return CW_VFS(v)->xFullPathname(CW_VFS(v), n, size, out);
}
static void *cw_dl_open(sqlite3_vfs *v, const char *n) { return CW_VFS(v)->xDlOpen(CW_VFS(v), n); }
static void cw_dl_error(sqlite3_vfs *v, int n, char *out) { CW_VFS(v)->xDlError(CW_VFS(v), n, out); }
static void (*cw_dl_sym(sqlite3_vfs *v, void *h, const char *n))(void) {
    return CW_VFS(v)->xDlSym(CW_VFS(v), h, n);
}
static void cw_dl_close(sqlite3_vfs *v, void *h) { CW_VFS(v)->xDlClose(CW_VFS(v), h); }
static int cw_randomness(sqlite3_vfs *v, int n, char *out) {
    return CW_VFS(v)->xRandomness(CW_VFS(v), n, out);
}
static int cw_sleep(sqlite3_vfs *v, int us) { return CW_VFS(v)->xSleep(CW_VFS(v), us); }
static int cw_current_time(sqlite3_vfs *v, double *out) {
    return CW_VFS(v)->xCurrentTime(CW_VFS(v), out);
}
static int cw_last_error(sqlite3_vfs *v, int n, char *out) {
    return CW_VFS(v)->xGetLastError(CW_VFS(v), n, out);
}
static int cw_current_time64(sqlite3_vfs *v, sqlite3_int64 *out) {
    return CW_VFS(v)->xCurrentTimeInt64(CW_VFS(v), out);
}

/* Registers the shim over the default VFS (once per process; see sqlite_process_config). */
static void cw_register(void) {
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);
    if (!real || real->iVersion < 2) return;
    cw_vfs = (sqlite3_vfs){
        .iVersion = 2, .szOsFile = (int)sizeof(cw_file) + real->szOsFile,
        .mxPathname = real->mxPathname, .zName = CW_VFS_NAME, .pAppData = real,
        .xOpen = cw_open, .xDelete = cw_delete, .xAccess = cw_access,
        .xFullPathname = cw_full_pathname, .xDlOpen = cw_dl_open, .xDlError = cw_dl_error,
        .xDlSym = cw_dl_sym, .xDlClose = cw_dl_close, .xRandomness = cw_randomness,
        .xSleep = cw_sleep, .xCurrentTime = cw_current_time, .xGetLastError = cw_last_error,
        .xCurrentTimeInt64 = cw_current_time64,
    };
    sqlite3_vfs_register(&cw_vfs, 0);
}

/* ---- open / close ---- */

static void sq_close(cg_store *store) {
    if (!store) return;
    sqlite_store *s = from(store);
    /* A clean close leaves nothing to replay; a failed store leaves its log for the next
     * open (closing the connection rolls the open transaction back). */
    cg_err ignored;
    if (s->txn_open && !s->failed) flush_to_file(s, &ignored);
    redo_close(s->redo);
    if (s->wal_fd >= 0) close(s->wal_fd);
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    free(s);
}

static const cg_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .sync = sq_sync,
    .rollback = sq_rollback,
    .savepoint = sq_savepoint,
    .savepoint_release = sq_release,
    .savepoint_rollback = sq_rollback_to,
    .member_insert = sq_member_insert,
    .member_at = sq_member_at,
    .member_versions = sq_member_versions,
    .grant_insert = sq_grant_insert,
    .grant_get = sq_grant_get,
    .grants_open = sq_grants_open,
    .grant_update = sq_grant_update,
    .grants_due = sq_grants_due,
    .charge_insert = sq_charge_insert,
    .charge_get = sq_charge_get,
    .charge_update = sq_charge_update,
    .charges_due = sq_charges_due,
    .journal_last_seq = sq_journal_last_seq,
    .journal_append = sq_journal_append,
    .journal_page = sq_journal_page,
    .idem_get = sq_idem_get,
    .idem_insert = sq_idem_insert,
    .idem_purge = sq_idem_purge,
    .scan_grants = sq_scan_grants,
    .scan_charges = sq_scan_charges,
    .count_entries = sq_count_entries,
    .idem_claim = sq_idem_claim,
    .data_version = sq_data_version,
    .charges_page = sq_charges_page,
    .grant_update_credits = sq_grant_update_credits,
    .shard_mark = sq_shard_mark,
    .count_held = sq_count_held,
    .cache_bytes = sq_cache_bytes,
    .cache_bound = sq_cache_bound,
    .flush = sq_flush,
    .log_batches = sq_log_batches,
    .stopped = sq_stopped,
    .begin_bare = sq_begin_bare,
    .changes = sq_changes,
};

static int exec_sql(sqlite_store *s, const char *sql, cg_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK) return CG_OK;
    int rc = cg_err_set(err, CG_EIO, "sqlite: %s (in: %.60s)", msg ? msg : "error", sql);
    sqlite3_free(msg);
    return rc;
}

static int user_version(sqlite_store *s, int *version, cg_err *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, "read schema version");
    *version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    return CG_OK;
}

/* Applies every migration past the file's version, each in its own transaction. */
static int migrate(sqlite_store *s, cg_err *err) {
    int version = 0;
    int rc = user_version(s, &version, err);
    if (rc) return rc;
    if (version > MIGRATION_COUNT)
        return cg_err_set(err, CG_EINVAL, "database schema version %d is newer than this "
                          "creditgate (%d); upgrade creditgate", version, MIGRATION_COUNT);
    for (int v = version; v < MIGRATION_COUNT; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        if ((rc = exec_sql(s, "BEGIN IMMEDIATE", err))) return rc;
        if ((rc = exec_sql(s, migrations[v], err)) || (rc = exec_sql(s, bump, err))) {
            exec_sql(s, "ROLLBACK", NULL);
            return rc;
        }
        if ((rc = exec_sql(s, "COMMIT", err))) return rc;
    }
    return CG_OK;
}

/* mkdir -p of the folder holding path, so `--db data/x.db` works on a fresh checkout. */
static int make_parent_dirs(const char *path, cg_err *err) {
    char dir[CG_STORE_DSN_BYTES_MAX];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return cg_err_set(err, CG_ELIMIT, "database path longer than %d bytes",
                          CG_STORE_DSN_BYTES_MAX);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return cg_err_set(err, CG_EIO, "cannot create folder %s: %s", dir, strerror(errno));
        *p = '/';
    }
    return CG_OK;
}

/* SQLite's autocheckpoint, and a note of it: called after every commit with the WAL's size.
 * A checkpoint that backfilled the whole WAL has fsynced the WAL and then the file (WAL,
 * synchronous=NORMAL), so every commit so far is durable in the file itself. */
static int wal_hook(void *ctx, sqlite3 *db, const char *name, int frames) {
    sqlite_store *s = ctx;
    if (frames < SQLITE_WAL_CHECKPOINT_PAGES) return SQLITE_OK;
    int log = -1, done = -1;
    int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc == SQLITE_OK && log >= 0 && done == log) s->checkpointed = true;
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) s->checkpoint_error = rc;
    return SQLITE_OK; /* like autocheckpoint: a checkpoint that could not run is no error */
}

static int configure(sqlite_store *s, bool memory, cg_err *err) {
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode = %s; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -%d;"
             " PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;"
             " PRAGMA wal_autocheckpoint = %d; PRAGMA journal_size_limit = %d;",
             memory ? "MEMORY" : "WAL", SQLITE_CACHE_KIB, SQLITE_WAL_CHECKPOINT_PAGES,
             SQLITE_WAL_KEEP_BYTES);
    sqlite3_busy_timeout(s->db, SQLITE_BUSY_TIMEOUT_MS);
    int rc = exec_sql(s, pragmas, err);
    if (rc) return rc;
    if (!memory) sqlite3_wal_hook(s->db, wal_hook, s); /* replaces wal_autocheckpoint's */
    if ((rc = migrate(s, err))) return rc;
    if (!memory) {
        char wal[CG_STORE_DSN_BYTES_MAX + 8];
        snprintf(wal, sizeof wal, "%s-wal", sqlite3_db_filename(s->db, "main"));
        s->wal_fd = open(wal, O_RDWR | O_CLOEXEC);
        if (s->wal_fd < 0)
            return cg_err_set(err, CG_EIO, "cannot open %s for syncing: %s", wal, strerror(errno));
    }
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->st[i], NULL) != SQLITE_OK)
            return db_fail(s, err, statement_sql[i]);
    return CG_OK;
}

/* PATH-redo beside the file; its owner replays it now (a crash left records behind). */
static int open_redo(sqlite_store *s, const char *path, cg_err *err) {
    char redo_path[CG_STORE_DSN_BYTES_MAX + 8];
    if (snprintf(redo_path, sizeof redo_path, "%s-redo", path) >= (int)sizeof redo_path)
        return cg_err_set(err, CG_ELIMIT, "database path longer than %d bytes",
                          CG_STORE_DSN_BYTES_MAX);
    int rc = redo_open(redo_path, &s->redo, &s->redo_owner, err);
    if (!rc && s->redo_owner) rc = recover(s, err);
    return rc;
}

/* Process configuration, once, before SQLite initializes: no global memory statistics (a
 * mutex taken on every one of SQLite's ~100 allocations per ledger call). If something else in
 * the process initialized SQLite first this fails harmlessly and the default stays. */
static void sqlite_process_config(void) {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    cw_register();
}

int cg_store_sqlite_open(const char *path, cg_store **out, cg_err *err) {
    assert(path && out);
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_process_config);
    *out = NULL;
    bool memory = !strcmp(path, ":memory:");
    if (!memory) {
        int rc = make_parent_dirs(path, err);
        if (rc) return rc;
    }
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s) return cg_err_set(err, CG_ENOMEM, "out of memory opening %s", path);
    s->base.ops = &sqlite_ops;
    s->wal_fd = -1;
    /* NOMUTEX: the ledger guarantees one thread at a time on this connection. */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    const char *vfs = !memory && sqlite3_vfs_find(CW_VFS_NAME) ? CW_VFS_NAME : NULL;
    if (sqlite3_open_v2(path, &s->db, flags, vfs) != SQLITE_OK) {
        int rc = cg_err_set(err, CG_EIO, "cannot open database %s: %s", path,
                            s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sq_close(&s->base);
        return rc;
    }
    int rc = configure(s, memory, err);
    if (!rc && !memory) rc = open_redo(s, path, err);
    if (rc) {
        sq_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return CG_OK;
}

int cg_store_open(const char *dsn, cg_store **out, cg_err *err) {
    assert(dsn && out);
    if (!strncmp(dsn, "sqlite:", 7)) return cg_store_sqlite_open(dsn + 7, out, err);
    if (!strncmp(dsn, "postgres://", 11) || !strncmp(dsn, "postgresql://", 13))
        return cg_store_pg_open(dsn, out, err);
    return cg_store_sqlite_open(dsn, out, err);
}

void cg_store_close(cg_store *store) {
    if (store) store->ops->close(store);
}
