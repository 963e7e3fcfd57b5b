/* store.h — the storage interface under the ledger: row-level reads and writes of members,
 * grants, charges, journal entries and idempotency keys, plus transactions and savepoints.
 *
 * The ledger (src/ledger/) holds every rule; a backend only persists. A backend is a
 * cg_store_ops table; SQLite (src/store/sqlite.c) is the default, PostgreSQL plugs in with the
 * same table and the same tests (tests/ledger/ take the backend from CG_TEST_DB).
 * Sharding rule: every table carries member_id, every key starts with it, and every call
 * except the sweep listings and the verify scan touches exactly one member.
 * A store is used by one thread at a time (the ledger's writer, or its mutex) — except
 * `sync`, which the ledger's syncer thread calls while the writer works on the next batch.
 *
 * Durability is split in two so group commit can pipeline: `commit` makes a transaction
 * visible and crash-consistent, `sync` makes every transaction committed so far durable
 * (power loss included). The ledger acknowledges a call only after a `sync` that began after
 * its commit. SQLite, per-batch commits: commit under synchronous=NORMAL (WAL appended, no
 * fsync), sync = fdatasync of the -wal file — the same fsync synchronous=FULL issues inside
 * COMMIT, moved off the writer so the next batch is applied while the disk flushes this one.
 * SQLite after log_batches (the ledger's default): commit appends the batch to the redo log
 * beside the file, sync = fdatasync of that log (src/store/redo.h). */
#ifndef CREDITGATE_STORE_H
#define CREDITGATE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "creditgate/err.h"
#include "creditgate/ledger.h"

#define CG_STORE_DSN_BYTES_MAX 1024
#define CG_STORE_SCHEMA_VERSION 5 /* SQLite. 2: charges listed by member, newest first;
                                     3: the shard table (shard_mark); 4: the redo position;
                                     5: charges, journal, keys appended (rowid tables) */

/* What an idempotency key remembers: the call, a hash of its request, the object it made. */
typedef struct cg_store_idem {
    char member_id[CG_MEMBER_ID_BYTES_MAX];
    char key[CG_IDEMPOTENCY_KEY_BYTES_MAX];
    int op;                                  /* the ledger's op code */
    uint8_t request_hash[16];
    char object_id[CG_OBJECT_ID_BYTES_MAX];  /* charge or grant id; member: effective instant */
    int64_t created_at_us;
} cg_store_idem;

/* Where a store sits in a sharded ledger: shard `index` of `count` of the ledger whose random
 * id (hex) is ledger_id. */
typedef struct cg_store_shard {
    int index;
    int count;
    char ledger_id[17];
} cg_store_shard;

/* A (member, object) pair listed by the sweeps. */
typedef struct cg_store_ref {
    char member_id[CG_MEMBER_ID_BYTES_MAX];
    char object_id[CG_OBJECT_ID_BYTES_MAX];
} cg_store_ref;

/* Journal sums of one grant or one charge, for verify. For a charge, delta_remaining sums
 * capture and refund entries; delta_held sums every held delta. */
typedef struct cg_store_sum {
    char member_id[CG_MEMBER_ID_BYTES_MAX];
    char object_id[CG_OBJECT_ID_BYTES_MAX];
    int64_t delta_remaining;
    int64_t delta_held;
    int64_t entries;
} cg_store_sum;

/* Called once per stored grant (or charge) during verify, with the journal sums for it
 * (zeros when none). Non-zero return stops the scan and is returned. */
typedef int (*cg_store_grant_fn)(void *ctx, const cg_grant *grant, const cg_store_sum *sum);
typedef int (*cg_store_charge_fn)(void *ctx, const cg_charge *charge, const cg_store_sum *sum);

typedef struct cg_store_ops {
    const char *name; /* "sqlite", "postgres" */
    void (*close)(cg_store *store);

    /* Transactions. begin/commit/rollback bracket a batch; savepoints bracket one call. */
    int (*begin)(cg_store *store, cg_err *err);
    int (*commit)(cg_store *store, cg_err *err); /* visible; durable after the next sync */
    /* Makes every committed transaction durable. Thread-safe against the other calls. */
    int (*sync)(cg_store *store, cg_err *err);
    int (*rollback)(cg_store *store, cg_err *err);
    int (*savepoint)(cg_store *store, cg_err *err);
    int (*savepoint_release)(cg_store *store, cg_err *err);
    int (*savepoint_rollback)(cg_store *store, cg_err *err); /* and release */

    /* Members: versions keyed (member_id, effective_at_us). */
    int (*member_insert)(cg_store *store, const cg_member_state *row, cg_err *err);
    /* The latest version with effective_at_us ≤ at_us; CG_ENOTFOUND if none. */
    int (*member_at)(cg_store *store, const char *member_id, int64_t at_us, cg_member_state *out,
                     cg_err *err);
    int (*member_versions)(cg_store *store, const char *member_id, cg_member_state *out, int max,
                           int *count, cg_err *err);

    /* Grants keyed (member_id, grant_id). */
    int (*grant_insert)(cg_store *store, const cg_grant *row, cg_err *err);
    int (*grant_get)(cg_store *store, const char *member_id, const char *grant_id, cg_grant *out,
                     cg_err *err);
    /* Open grants (remaining > 0 or held > 0), any order; CG_ELIMIT beyond max. */
    int (*grants_open)(cg_store *store, const char *member_id, cg_grant *out, int max,
                       int *count, cg_err *err);
    /* Writes remaining, held and expired. */
    int (*grant_update)(cg_store *store, const cg_grant *row, cg_err *err);
    /* Sweep: grants not yet marked expired with expires_at_us ≤ now_us, across members. */
    int (*grants_due)(cg_store *store, int64_t now_us, cg_store_ref *out, int max, int *count,
                      cg_err *err);

    /* Charges keyed (member_id, charge_id); the store keeps items, parts and request. */
    int (*charge_insert)(cg_store *store, const cg_charge *row, cg_err *err);
    int (*charge_get)(cg_store *store, const char *member_id, const char *charge_id,
                      cg_charge *out, cg_err *err);
    /* Writes status, held, captured, refunded, parts, settled_at_us. */
    int (*charge_update)(cg_store *store, const cg_charge *row, cg_err *err);
    /* Sweep: held charges with expires_at_us ≤ now_us, across members. */
    int (*charges_due)(cg_store *store, int64_t now_us, cg_store_ref *out, int max, int *count,
                       cg_err *err);

    /* Journal keyed (member_id, seq); append-only. */
    int (*journal_last_seq)(cg_store *store, const char *member_id, int64_t *seq, cg_err *err);
    int (*journal_append)(cg_store *store, const cg_journal_entry *row, cg_err *err);
    int (*journal_page)(cg_store *store, const char *member_id, int64_t after_seq, int limit,
                        cg_journal_entry *out, int *count, cg_err *err);

    /* Idempotency keys keyed (member_id, key). */
    int (*idem_get)(cg_store *store, const char *member_id, const char *key, cg_store_idem *out,
                    cg_err *err); /* CG_ENOTFOUND when unknown */
    int (*idem_insert)(cg_store *store, const cg_store_idem *row, cg_err *err);
    /* Deletes at most max keys created before before_us; *deleted says how many. */
    int (*idem_purge)(cg_store *store, int64_t before_us, int max, int *deleted, cg_err *err);

    /* Verify scans: every grant / charge with its journal sums. */
    int (*scan_grants)(cg_store *store, cg_store_grant_fn fn, void *ctx, cg_err *err);
    int (*scan_charges)(cg_store *store, cg_store_charge_fn fn, void *ctx, cg_err *err);
    /* Totals for the verify report. */
    int (*count_entries)(cg_store *store, int64_t *entries, cg_err *err);

    /* ---- Optional ops (added later). A backend may leave any of them NULL; the ledger then
     * does what it did before they existed, so every backend keeps working unchanged. ---- */

    /* Inserts the key unless (member_id, key) exists: *claimed true when inserted; otherwise
     * *existing is the stored row and nothing was written. One statement instead of idem_get
     * before the effect and idem_insert after it (the ledger claims once the call's checks
     * passed, or first and rolls its savepoint back if the call fails). NULL: idem_get +
     * idem_insert. */
    int (*idem_claim)(cg_store *store, const cg_store_idem *row, bool *claimed,
                      cg_store_idem *existing, cg_err *err);
    /* A counter that changes whenever ANOTHER connection or process committed to the database
     * (SQLite: PRAGMA data_version), read inside the writer's transaction. The ledger keeps
     * per-member state in memory only while it is the single writer: a change empties its
     * cache. NULL: the ledger keeps no member state in memory (every read goes to the store). */
    int (*data_version)(cg_store *store, int64_t *version, cg_err *err);
    /* A member's charges, newest first (created_at_us, then charge_id, both descending),
     * strictly before (before_at_us, before_id) when before_id is non-empty; at most limit.
     * SQLite orders the ids made in creation order ("ch_t…", since schema 5) by id alone,
     * which is the same order unless the clock stepped back between two charges.
     * NULL: cg_ledger_charges answers CG_EINVAL ("not supported by this backend"). */
    int (*charges_page)(cg_store *store, const char *member_id, int64_t before_at_us,
                        const char *before_id, int limit, cg_charge *out, int *count,
                        cg_err *err);
    /* Like grant_update, and also writes credits: a refund merged into the member's open
     * `refund` grant of the same category. NULL: the refund makes a new grant as before. */
    int (*grant_update_credits)(cg_store *store, const cg_grant *row, cg_err *err);
    /* The store's place in a sharded ledger. Records *want if the store has no place yet — a
     * store that already holds members from before shards existed records shard 0 of 1
     * instead — then fills *out with what is recorded. NULL: the store is one shared database
     * (PostgreSQL); the ledger's shards are then connections to it and nothing is recorded. */
    int (*shard_mark)(cg_store *store, const cg_store_shard *want, cg_store_shard *out,
                      cg_err *err);
    /* Charges held now, all members (the ledger keeps the count from there). NULL: unknown —
     * the store is shared with other processes that change it. */
    int (*count_held)(cg_store *store, int64_t *count, cg_err *err);
    /* Bytes of page cache the store's connection holds now. NULL: 0. */
    int64_t (*cache_bytes)(cg_store *store);
    /* Bounds the store's page cache to kib KiB: the ledger gives each of its stores an even
     * share of cg_ledger_config.page_cache_mb, so its memory does not grow with its shard
     * count. NULL: the store has no page cache of its own to bound. */
    int (*cache_bound)(cg_store *store, int64_t kib, cg_err *err);
    /* Group commit from now on: `commit` appends the batch's writes to a redo log beside the
     * store (made durable by `sync`) and the store itself is committed only every
     * flush_interval_us (SQLite: src/store/sqlite.c, "Long transactions"); a flush that finds
     * the log past restart_bytes makes the store durable and starts the log again. Called
     * once, by the ledger at open, before its threads start. A store another process is
     * logging for stays as it was. NULL: every commit writes the store. */
    int (*log_batches)(cg_store *store, int64_t flush_interval_us, int64_t restart_bytes,
                       cg_err *err);
    /* After log_batches: commits the store now if batches are held back for the next flush
     * (the ledger's writer calls it once it has been idle for a tenth of the flush interval),
     * so that other processes' writes and reads do not wait for the interval. A failed flush
     * leaves the batches in the log, as at the interval: the next batch replays them first,
     * or the store has stopped and refuses. NULL: nothing is ever held back. */
    int (*flush)(cg_store *store, cg_err *err);
    /* Whether the store refuses every call until it is reopened, after a failure that only
     * reopening can clear (SQLite: a flush whose fsync of the file failed — what the file
     * holds is then unknown, and the redo log replays at the next open). NULL: never. */
    bool (*stopped)(cg_store *store);
    /* Like begin, for a store whose batches carry a cost only a rollback needs (SQLite's long
     * transaction: a savepoint per batch, which copies every page the batch first touches).
     * *bare: the batch was begun without it, and `rollback` then undoes every batch since the
     * store last committed its file and has the next begin replay them from the log — so the
     * ledger, which asks for this only together with `changes`, keeps rollbacks for failures
     * and runs the calls that may be refused after writing in savepoints of their own. *bare
     * false: an ordinary batch. NULL: begin. */
    int (*begin_bare)(cg_store *store, bool *bare, cg_err *err);
    /* Rows inserted, updated or deleted on this connection so far: a call refused with the
     * count unchanged wrote nothing, and the batch goes on without a rollback. NULL: the
     * ledger takes every refused call as having written. */
    int64_t (*changes)(cg_store *store);
} cg_store_ops;

/* Every backend's handle starts with this. */
struct cg_store {
    const cg_store_ops *ops;
};

/* Opens a backend by data source name: "sqlite:PATH", a bare PATH (SQLite), ":memory:", or
 * "postgres://..." / "postgresql://..." (src/store/pg.c). Creates the file and its folder if
 * missing and applies versioned schema migrations. */
int cg_store_open(const char *dsn, cg_store **out, cg_err *err);
int cg_store_sqlite_open(const char *path, cg_store **out, cg_err *err);
/* A libpq DSN, plus optional query parameters `cg_schema=NAME` (the tables live in schema
 * NAME, created if missing) and `cg_wait_ms=N` (100..600000, default 2000: the longest wait for
 * one answer before the connection is dropped and the call fails CG_EUNAVAILABLE; reconnects
 * follow by themselves — src/store/pg.c). */
int cg_store_pg_open(const char *dsn, cg_store **out, cg_err *err);
/* NULL is a no-op. */
void cg_store_close(cg_store *store);

#endif
