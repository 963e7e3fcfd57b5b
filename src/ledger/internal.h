/* internal.h — what the ledger's files share: the queued operation, the ledger value, and
 * the apply functions the writer calls inside a transaction. Not part of the public API
 * (include/creditgate/ledger.h); nothing outside src/ledger/ includes it. */
#ifndef CREDITGATE_LEDGER_INTERNAL_H
#define CREDITGATE_LEDGER_INTERNAL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>

#include "creditgate/ledger.h"
#include "creditgate/store.h"

typedef struct ledger_shard ledger_shard; /* below */

#define LEDGER_ID_RANDOM_BYTES 256 /* a charge id's random part is drawn this many bytes at
                                      a time: one getrandom call per 64 ids, not per id */
#define LEDGER_PRIORITY_DEFAULT 50
#define LEDGER_PRIORITY_MAX 100

/* Op codes are stored with idempotency keys: append only, never renumber. */
typedef enum ledger_op_kind {
    OP_MEMBER_PUT = 1,
    OP_GRANT = 2,
    OP_CHARGE = 3,
    OP_CAPTURE = 4,
    OP_RELEASE = 5,
    OP_REFUND = 6,
    /* reads: never stored */
    OP_MEMBER_GET = 100,
    OP_MEMBER_HISTORY,
    OP_CHARGE_GET,
    OP_BALANCE,
    OP_HISTORY,
    OP_VERIFY,
    OP_CHARGES,
} ledger_op_kind;

/* ---- the writer's member cache (cache.c) and the row access through it (rows.c) ---- */

#define LEDGER_CACHE_GRANTS_MAX 4   /* open grants kept per member; more: read from the store */
#define LEDGER_CACHE_TOUCHED_MAX 8  /* members one op may load or change before a rollback
                                       forgets the whole cache instead of just them */

typedef struct cache_grant {        /* a cg_grant without its note (never read from here) */
    char grant_id[CG_OBJECT_ID_BYTES_MAX];
    int8_t source, category;
    bool expired;
    int priority;
    int64_t credits, remaining, held, starts_at_us, expires_at_us, created_at_us;
} cache_grant;

typedef struct member_entry {
    char member_id[CG_MEMBER_ID_BYTES_MAX]; /* "" in a forgotten slot */
    uint32_t hash;
    int32_t chain_next, lru_prev, lru_next;
    bool has_state;                 /* the latest member version below is known */
    bool grants_known;              /* grants[] is every open grant of the member */
    bool seq_known;                 /* journal_seq is the member's last journal seq */
    char plan[CG_ID_BYTES_MAX];
    char billing[CG_ID_BYTES_MAX];
    int64_t joined_at_us, effective_at_us, recorded_at_us;
    int64_t journal_seq;
    int grant_count;
    cache_grant grants[LEDGER_CACHE_GRANTS_MAX];
} member_entry;

typedef struct ledger_cache_stats {
    int64_t hits, misses, evictions, rollbacks, clears;
} ledger_cache_stats;

typedef struct ledger_cache ledger_cache;
int ledger_cache_open(int members_max, ledger_cache **out); /* max 0: *out = NULL, no cache */
void ledger_cache_close(ledger_cache *cache);
void ledger_cache_clear(ledger_cache *cache);
member_entry *ledger_cache_find(ledger_cache *cache, const char *member_id);
member_entry *ledger_cache_add(ledger_cache *cache, const char *member_id); /* NULL: full */
void ledger_cache_op_begin(ledger_cache *cache);
void ledger_cache_op_rollback(ledger_cache *cache);
ledger_cache_stats ledger_cache_stats_get(const ledger_cache *cache);
int64_t ledger_cache_bytes(const ledger_cache *cache); /* entries handed out so far */

int lg_member_at(ledger_shard *l, const char *member_id, int64_t at_us, cg_member_state *out,
                 cg_err *err);
int lg_member_exists(ledger_shard *l, const char *member_id, cg_err *err);
void lg_member_put_done(ledger_shard *l, const cg_member_state *row);
int lg_grants_open(ledger_shard *l, const char *member_id, cg_grant *out, int max, int *count,
                   cg_err *err);
int lg_grant_get(ledger_shard *l, const char *member_id, const char *grant_id, cg_grant *out,
                 cg_err *err);
int lg_grant_insert(ledger_shard *l, const cg_grant *g, cg_err *err);
int lg_grant_update(ledger_shard *l, const cg_grant *g, bool with_credits, cg_err *err);
int lg_journal_last_seq(ledger_shard *l, const char *member_id, int64_t *seq, cg_err *err);
void lg_journal_appended(ledger_shard *l, const char *member_id, int64_t seq);

/* One call, queued by its caller and applied by the writer. Lives on the caller's stack
 * until `done` is posted — or, for an asynchronous call (done_fn set), on the heap until the
 * syncer has called done_fn and freed it. */
typedef struct ledger_op {
    ledger_op_kind kind;
    const void *in;
    void *out;
    bool *replayed;
    /* arguments of the reads */
    const char *member_id;
    const char *object_id;
    int64_t at_us;
    int64_t after_seq;
    int limit;
    int *count;
    int64_t *next_seq;
    char *cursor;            /* OP_CHARGES: in "before", out "next" */
    /* result */
    int rc;
    cg_err err;
    sem_t done;
    cg_ledger_done_fn done_fn; /* asynchronous: called instead of posting done, then freed */
    void *done_ctx;
    struct ledger_op *next; /* in the syncer's list */
} ledger_op;

/* One shard: a store of its own (SQLite: its own file) with its own writer, syncer, member
 * cache and queue. Members are spread over the shards by a hash of member_id (ledger.c), so
 * each shard's writer is the only writer of its members and the shards commit in parallel. */
struct ledger_shard {
    cg_store *store;
    cg_ledger_config config; /* a copy of the ledger's */
    int index;
    pthread_mutex_t mu;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    ledger_op **ring;        /* config.queue_ops_max slots */
    int ring_head;
    int ring_count;
    bool stopping;
    bool writer_started;
    pthread_t writer;
    ledger_op **batch;       /* config.batch_ops_max slots, writer only */
    int64_t swept_at_us;     /* last sweep, writer (or mutex holder) only */
    int64_t charge_id_us;    /* the instant in the last charge id made, writer (or mutex
                                holder) only */
    uint8_t id_random[LEDGER_ID_RANDOM_BYTES]; /* random bytes for charge ids, drawn */
    int id_random_used;                        /* in bulk; same owner as charge_id_us */
    int64_t purge_idle_until_us; /* no key purge before this: the last found none due */
    /* the syncer: committed ops waiting for store->sync before their callers are woken */
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_work;
    pthread_cond_t sync_space;
    ledger_op *sync_head, *sync_tail;
    int sync_count;          /* ≤ LEDGER_SYNC_OPS_MAX */
    bool sync_stopping;
    bool syncer_started;
    pthread_t syncer;
    _Atomic int sync_failed; /* a sync failed: durability unknown, refuse everything */
    /* writer only (or the mutex holder in naive mode) */
    ledger_cache *cache;     /* NULL: no member state in memory */
    int64_t data_version;    /* the store's, at the last batch: another writer changes it */
    bool data_version_known;
    cg_grant *scratch_grants; /* CG_MEMBER_GRANTS_MAX: a member's open grants during one op */
    int64_t holds_delta;     /* held charges opened − closed by the batch so far, writer only;
                                published to holds_open when the batch commits */
    /* published by the writer after each batch, read by cg_ledger_stats_get */
    _Atomic int64_t holds_open;     /* -1: the store cannot count */
    _Atomic int64_t cache_bytes;
    _Atomic int64_t member_cache_bytes;
    _Atomic int64_t batches, calls;
};

struct cg_ledger {
    cg_ledger_config config;
    int shard_count;          /* 1..CG_LEDGER_SHARDS_MAX */
    bool partitioned;         /* each shard holds only its members (SQLite files); false: the
                                 shards are connections to one shared database (PostgreSQL) */
    ledger_shard *shards[CG_LEDGER_SHARDS_MAX];
};

/* Committed ops awaiting one sync: the writer applies up to this many ahead of the disk. */
#define LEDGER_SYNC_OPS_MAX (4 * CG_LEDGER_BATCH_OPS_MAX)

int64_t ledger_now_us(const ledger_shard *shard);

/* Applies one op inside the current transaction (bare or in a savepoint: run_batch). */
int ledger_apply(ledger_shard *ledger, ledger_op *op, int64_t now_us);
/* Whether ops of this kind make every refusal before their first write (charge, capture,
 * release, the reads): a refused one leaves nothing to undo, so it needs no savepoint. */
bool ledger_op_refuses_first(ledger_op_kind kind);
/* Whether rc is a refusal by the rules (bad input, unknown, conflict, credits, limit, state),
 * not the store failing. */
bool ledger_rc_is_refusal(int rc);
/* Expires due holds and grants and purges old idempotency keys, each bounded per call by
 * CG_LEDGER_SWEEP_PER_BATCH_MAX, each item in its own savepoint. *more: a listing came back
 * full, so another round may find more. */
int ledger_sweep(ledger_shard *ledger, int64_t now_us, bool *more, cg_err *err);

/* Sweep rounds in one idle transaction: drains a backlog of expired holds (64 per round)
 * without holding up callers, who are only served between transactions. */
#define LEDGER_SWEEP_ROUNDS_IDLE_MAX 16
int ledger_verify(ledger_shard *ledger, cg_verify_report *out, cg_err *err);

#endif
