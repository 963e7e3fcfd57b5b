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
} ledger_op_kind;

/* One call, queued by its caller and applied by the writer. Lives on the caller's stack
 * until `done` is posted. */
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
    /* result */
    int rc;
    cg_err err;
    sem_t done;
    struct ledger_op *next; /* in the syncer's list */
} ledger_op;

struct cg_ledger {
    cg_store *store;
    cg_ledger_config config;
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
};

/* Committed ops awaiting one sync: the writer applies up to this many ahead of the disk. */
#define LEDGER_SYNC_OPS_MAX (4 * CG_LEDGER_BATCH_OPS_MAX)

int64_t ledger_now_us(const cg_ledger *ledger);

/* Applies one op inside the current transaction (the caller brackets it in a savepoint). */
int ledger_apply(cg_ledger *ledger, ledger_op *op, int64_t now_us);
/* Expires due holds and grants and purges old idempotency keys, each bounded per call by
 * CG_LEDGER_SWEEP_PER_BATCH_MAX, each item in its own savepoint. *more: a listing came back
 * full, so another round may find more. */
int ledger_sweep(cg_ledger *ledger, int64_t now_us, bool *more, cg_err *err);

/* Sweep rounds in one idle transaction: drains a backlog of expired holds (64 per round)
 * without holding up callers, who are only served between transactions. */
#define LEDGER_SWEEP_ROUNDS_IDLE_MAX 16
int ledger_verify(cg_ledger *ledger, cg_verify_report *out, cg_err *err);

#endif
