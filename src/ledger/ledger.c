/* ledger.c — the ledger's lifetime, its shards and its group commit.
 *
 * Members are spread over shards by a hash of member_id (shard_for); each shard has its own
 * store (SQLite: its own file), queue, writer and syncer, so shards commit in parallel on
 * several cores. Within a shard, group commit is a two-stage pipeline:
 *   writer: takes up to batch_ops_max queued ops, applies them in one transaction (a refused
 *           op rolls back alone: see run_batch), commits (visible, not yet durable), hands
 *           the batch to the syncer and starts on the next batch at once;
 *   syncer: one store->sync (fdatasync of the WAL) for every batch committed so far, then
 *           wakes each caller with its own result.
 * So a caller is acknowledged only once its commit is durable, and the disk flush of batch k
 * overlaps the work on batch k+1. The rules themselves are in ops.c and verify.c. */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SWEEP_INTERVAL_US_DEFAULT (1000 * 1000)

void cg_ledger_config_default(cg_ledger_config *config) {
    assert(config);
    memset(config, 0, sizeof *config);
    config->group_commit = true;
    config->queue_ops_max = CG_LEDGER_QUEUE_OPS_MAX;
    config->batch_ops_max = CG_LEDGER_BATCH_OPS_MAX;
    config->hold_ttl_s = CG_HOLD_TTL_S_DEFAULT;
    config->idempotency_keep_s = CG_IDEMPOTENCY_KEEP_S_MIN;
    config->sweep_interval_us = SWEEP_INTERVAL_US_DEFAULT;
    config->cache_members_max = CG_LEDGER_CACHE_MEMBERS_DEFAULT;
    config->flush_interval_ms = CG_LEDGER_FLUSH_MS_DEFAULT;
    config->page_cache_mb = CG_LEDGER_PAGE_CACHE_MB_DEFAULT;
    config->redo_mb = CG_LEDGER_REDO_MB_DEFAULT;
}

int64_t ledger_now_us(const ledger_shard *ledger) {
    if (ledger->config.clock_us) return ledger->config.clock_us(ledger->config.clock_ctx);
    return cg_time_now_us();
}

static int config_check(const cg_ledger_config *c, cg_err *err) {
    if (c->queue_ops_max < 1 || c->queue_ops_max > CG_LEDGER_QUEUE_OPS_MAX)
        return cg_err_set(err, CG_EINVAL, "queue_ops_max must be 1..%d", CG_LEDGER_QUEUE_OPS_MAX);
    if (c->batch_ops_max < 1 || c->batch_ops_max > CG_LEDGER_BATCH_OPS_MAX)
        return cg_err_set(err, CG_EINVAL, "batch_ops_max must be 1..%d", CG_LEDGER_BATCH_OPS_MAX);
    if (c->hold_ttl_s < 1)
        return cg_err_set(err, CG_EINVAL, "hold_ttl_s must be at least 1 second");
    if (c->idempotency_keep_s < CG_IDEMPOTENCY_KEEP_S_MIN)
        return cg_err_set(err, CG_EINVAL, "idempotency keys must be kept at least %d s",
                          CG_IDEMPOTENCY_KEEP_S_MIN);
    if (c->sweep_interval_us < 0)
        return cg_err_set(err, CG_EINVAL, "sweep_interval_us must not be negative");
    if (c->redo_mb < 0 || c->redo_mb > CG_LEDGER_REDO_MB_MAX)
        return cg_err_set(err, CG_EINVAL, "redo_mb must be 0..%d", CG_LEDGER_REDO_MB_MAX);
    if (c->cache_members_max < 0 || c->cache_members_max > CG_LEDGER_CACHE_MEMBERS_MAX)
        return cg_err_set(err, CG_EINVAL, "cache_members_max must be 0..%d",
                          CG_LEDGER_CACHE_MEMBERS_MAX);
    if (c->shards < 0 || c->shards > CG_LEDGER_SHARDS_MAX)
        return cg_err_set(err, CG_EINVAL, "shards must be 0..%d", CG_LEDGER_SHARDS_MAX);
    if (c->flush_interval_ms < 0 || c->flush_interval_ms > CG_LEDGER_FLUSH_MS_MAX)
        return cg_err_set(err, CG_EINVAL, "flush_interval_ms must be 0..%d",
                          CG_LEDGER_FLUSH_MS_MAX);
    if (c->page_cache_mb < 0 || c->page_cache_mb > CG_LEDGER_PAGE_CACHE_MB_MAX)
        return cg_err_set(err, CG_EINVAL, "page_cache_mb must be 0..%d",
                          CG_LEDGER_PAGE_CACHE_MB_MAX);
    return CG_OK;
}

/* Runs the sweep inside the open transaction when its interval has passed: one round beside
 * callers' ops, up to LEDGER_SWEEP_ROUNDS_IDLE_MAX when idle (n_ops == 0). */
static int sweep_if_due(ledger_shard *l, int64_t now_us, int n_ops, cg_err *err) {
    if (now_us - l->swept_at_us < l->config.sweep_interval_us) return CG_OK;
    l->swept_at_us = now_us;
    bool more = true;
    int rc = CG_OK;
    for (int round = 0; !rc && more && round < (n_ops ? 1 : LEDGER_SWEEP_ROUNDS_IDLE_MAX); round++)
        rc = ledger_sweep(l, now_us, &more, err);
    return rc;
}

/* Inside the batch's transaction: if another connection committed since our last batch, what
 * the cache holds may be stale — forget it all. */
static int cache_check(ledger_shard *l, cg_err *err) {
    if (!l->cache) return CG_OK;
    int64_t version = 0;
    int rc = l->store->ops->data_version(l->store, &version, err);
    if (rc) return rc;
    if (l->data_version_known && version != l->data_version) ledger_cache_clear(l->cache);
    l->data_version = version;
    l->data_version_known = true;
    return CG_OK;
}

/* Idempotency keys past idempotency_keep_s, purged in step with the batch: each op may add a
 * key, so up to two per op (plus a sweep's worth) go — the table stops growing after a day
 * instead of gaining thousands of keys a second against the sweep's 64. When a purge finds
 * none due, the next waits a sweep interval: a statement (PostgreSQL: a round trip) per batch
 * saved while the table is younger than a day. Keys are kept at least as long either way. */
static int purge_keys(ledger_shard *l, int64_t now_us, int n_ops, cg_err *err) {
    if (now_us < l->purge_idle_until_us) return CG_OK;
    int deleted = 0;
    int max = 2 * n_ops + CG_LEDGER_SWEEP_PER_BATCH_MAX;
    int rc = l->store->ops->idem_purge(l->store,
                                       now_us - l->config.idempotency_keep_s * CG_US_PER_S, max,
                                       &deleted, err);
    if (!rc) l->purge_idle_until_us = deleted ? 0 : now_us + l->config.sweep_interval_us;
    return rc;
}

/* Opens a batch's transaction: begin, the cache check, the due sweep and the key purge.
 * bare non-NULL: a bare batch if the store has them (store.h begin_bare; *bare says). */
static int batch_begin(ledger_shard *l, int64_t now_us, int n, bool *bare, cg_err *err) {
    cg_store *s = l->store;
    int rc;
    if (bare && s->ops->begin_bare && s->ops->changes) {
        rc = s->ops->begin_bare(s, bare, err);
    } else {
        if (bare) *bare = false;
        rc = s->ops->begin(s, err);
    }
    if (!rc) rc = cache_check(l, err);
    if (!rc) rc = sweep_if_due(l, now_us, n, err);
    if (!rc && n > 0) rc = purge_keys(l, now_us, n, err);
    return rc;
}

/* Applies op in a savepoint of its own, so that its refusal undoes only its own writes. A
 * non-zero return is the store failing, not the op. */
static int apply_guarded(ledger_shard *l, ledger_op *op, int64_t now_us, cg_err *err) {
    cg_store *s = l->store;
    int rc = s->ops->savepoint(s, err);
    if (rc) return rc;
    ledger_cache_op_begin(l->cache);
    int64_t holds_delta = l->holds_delta;
    op->rc = ledger_apply(l, op, now_us);
    assert(op->rc <= 0);
    if (op->rc) {
        ledger_cache_op_rollback(l->cache);
        l->holds_delta = holds_delta;
    }
    return op->rc ? s->ops->savepoint_rollback(s, err) : s->ops->savepoint_release(s, err);
}

/* After a commit: what cg_ledger_stats_get reads. */
static void publish_stats(ledger_shard *l, int n) {
    if (atomic_load(&l->holds_open) >= 0) atomic_fetch_add(&l->holds_open, l->holds_delta);
    assert(atomic_load(&l->holds_open) >= -1);
    l->holds_delta = 0;
    atomic_fetch_add(&l->batches, 1);
    atomic_fetch_add(&l->calls, n);
    if (l->store->ops->cache_bytes)
        atomic_store(&l->cache_bytes, l->store->ops->cache_bytes(l->store));
    atomic_store(&l->member_cache_bytes, ledger_cache_bytes(l->cache));
}

/* Applies ops[0..n) in one transaction and commits it (durable after the next sync). Each
 * op's rc is final when this returns, unless the sync then fails.
 *
 * Savepoints cost a fifth of a call's instructions (SQLite copies every page an op first
 * touches into its statement journal), and they only matter when an op is refused after
 * some of its writes. So ops run bare, and a refusal that changed no rows (store `changes`)
 * needs nothing undone: charges, captures and releases decide every refusal before their
 * first write (ledger_op_refuses_first). In a bare batch (store.h begin_bare: no savepoint
 * around the batch either) the kinds that may be refused after writing run in a savepoint of
 * their own. Otherwise — a refusal after writes, or a store without `changes` — the
 * transaction is rolled back and the ops before it are applied again, each in a savepoint, as
 * is the rest of the batch. They meet the same state at the same instant, so they come to the
 * same results (new ids aside, which nobody has seen yet): a refusal costs at most its batch
 * once more (a bare batch's rollback, the replay of the batches since the store's last flush
 * too, which only a failing store should cause). */
static void run_batch(ledger_shard *l, ledger_op **ops, int n) {
    cg_store *s = l->store;
    cg_err err = {0};
    int64_t now_us = ledger_now_us(l);
    if (l->sync_failed) {
        for (int i = 0; i < n; i++)
            ops[i]->rc = cg_err_set(&ops[i]->err, CG_EIO, "the ledger's storage failed to make "
                                    "a write durable earlier; restart after checking the disk");
        return;
    }
    int64_t swept_at_us = l->swept_at_us;
    l->holds_delta = 0;
    bool bare = false;
    int rc = batch_begin(l, now_us, n, &bare, &err);
    bool guarded = false;
    for (int i = 0; i < n && !rc; i++) {
        ledger_op *op = ops[i];
        if (guarded || (bare && !ledger_op_refuses_first(op->kind))) {
            rc = apply_guarded(l, op, now_us, &err);
            continue;
        }
        int64_t changes = s->ops->changes ? s->ops->changes(s) : -1;
        ledger_cache_op_begin(l->cache);
        op->rc = ledger_apply(l, op, now_us);
        assert(op->rc <= 0);
        if (!op->rc) continue;
        /* refused before any write: the cache changes only with the store, so it holds */
        if (changes >= 0 && ledger_rc_is_refusal(op->rc) && s->ops->changes(s) == changes)
            continue;
        int refused = op->rc;
        cg_err refusal = op->err;
        cg_err ignored;
        s->ops->rollback(s, &ignored);
        ledger_cache_clear(l->cache); /* written through by ops now undone */
        l->swept_at_us = swept_at_us; /* the sweep, too, runs again */
        l->holds_delta = 0;
        guarded = true;
        rc = batch_begin(l, now_us, n, NULL, &err);
        for (int k = 0; k < i && !rc; k++) rc = apply_guarded(l, ops[k], now_us, &err);
        op->rc = refused;
        op->err = refusal;
    }
    if (!rc) rc = s->ops->commit(s, &err);
    if (!rc) publish_stats(l, n);
    if (rc) {
        /* Nothing of this batch is durable: every op that had succeeded now fails, and the
         * cache, written through op by op, is ahead of the store. A store that has stopped
         * refuses until reopened: CG_EIO, as after a failed sync (the server then reports
         * itself not ready); anything else may pass on retry. */
        cg_err ignored;
        s->ops->rollback(s, &ignored);
        ledger_cache_clear(l->cache);
        l->holds_delta = 0;
        bool stopped = s->ops->stopped && s->ops->stopped(s);
        for (int i = 0; i < n; i++) {
            if (ops[i]->rc != CG_OK) continue; /* its own refusal stands: it changed nothing */
            if (stopped)
                ops[i]->rc = cg_err_set(&ops[i]->err, CG_EIO, "not committed: %s", err.msg);
            else
                ops[i]->rc = cg_err_set(&ops[i]->err, CG_EUNAVAILABLE,
                                        "not committed, retry with the same idempotency key: %s",
                                        err.msg);
        }
    }
}

/* Applies one sync result to ops already committed: on failure nothing is known durable. */
static void sync_outcome(ledger_shard *l, ledger_op *op, int sync_rc, const cg_err *sync_err) {
    if (!sync_rc || op->rc != CG_OK) return;
    l->sync_failed = 1;
    op->rc = cg_err_set(&op->err, CG_EIO, "committed but not confirmed durable: %s",
                        sync_err->msg);
}

/* Hands a committed batch to the syncer; waits while too many ops await a sync. */
static void hand_to_syncer(ledger_shard *l, ledger_op **ops, int n) {
    pthread_mutex_lock(&l->sync_mu);
    while (l->sync_count + n > LEDGER_SYNC_OPS_MAX) pthread_cond_wait(&l->sync_space, &l->sync_mu);
    for (int i = 0; i < n; i++) {
        ops[i]->next = NULL;
        if (l->sync_tail) l->sync_tail->next = ops[i];
        else l->sync_head = ops[i];
        l->sync_tail = ops[i];
    }
    l->sync_count += n;
    pthread_cond_signal(&l->sync_work);
    pthread_mutex_unlock(&l->sync_mu);
}

static void *syncer_main(void *arg) {
    ledger_shard *l = arg;
    for (;;) {
        pthread_mutex_lock(&l->sync_mu);
        while (!l->sync_head && !l->sync_stopping) pthread_cond_wait(&l->sync_work, &l->sync_mu);
        ledger_op *op = l->sync_head;
        if (!op) {
            pthread_mutex_unlock(&l->sync_mu);
            return NULL;
        }
        l->sync_head = l->sync_tail = NULL;
        l->sync_count = 0;
        pthread_cond_broadcast(&l->sync_space);
        pthread_mutex_unlock(&l->sync_mu);
        cg_err err = {0};
        int rc = l->store->ops->sync(l->store, &err);
        while (op) {
            ledger_op *next = op->next; /* op is gone once posted */
            sync_outcome(l, op, rc, &err);
            if (op->done_fn) {
                op->done_fn(op->done_ctx, op->rc, &op->err);
                free(op);
            } else {
                sem_post(&op->done);
            }
            op = next;
        }
    }
}

static void *writer_main(void *arg) {
    ledger_shard *l = arg;
    /* Batches went to the store since it last committed its file: once idle for a tenth of
     * the flush interval, the writer has it commit them (store.h flush). */
    bool held_back = false;
    int64_t idle_flush_us = (int64_t)l->config.flush_interval_ms * 1000 / 10;
    if (!l->store->ops->flush || !l->config.group_commit) idle_flush_us = 0;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        bool flush_now = false;
        while (l->ring_count == 0 && !l->stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            int64_t wait_us = l->config.sweep_interval_us > 0 ? l->config.sweep_interval_us
                                                              : SWEEP_INTERVAL_US_DEFAULT;
            bool flush_due = held_back && idle_flush_us > 0 && idle_flush_us < wait_us;
            if (flush_due) wait_us = idle_flush_us;
            until.tv_sec += wait_us / 1000000;
            until.tv_nsec += (wait_us % 1000000) * 1000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            if (pthread_cond_timedwait(&l->not_empty, &l->mu, &until) == ETIMEDOUT) {
                flush_now = flush_due;
                break;
            }
        }
        if (l->ring_count == 0 && l->stopping) {
            pthread_mutex_unlock(&l->mu);
            return NULL;
        }
        if (flush_now && l->ring_count == 0) {
            pthread_mutex_unlock(&l->mu);
            cg_err err = {0};
            /* Non-zero: the store has stopped, and says why to the next batch (sq_begin); a
             * flush that merely failed left the batches in its log for that batch to replay. */
            (void)l->store->ops->flush(l->store, &err);
            held_back = false;
            continue;
        }
        int n = l->ring_count < l->config.batch_ops_max ? l->ring_count
                                                         : l->config.batch_ops_max;
        for (int i = 0; i < n; i++) {
            l->batch[i] = l->ring[l->ring_head];
            l->ring_head = (l->ring_head + 1) % l->config.queue_ops_max;
        }
        l->ring_count -= n;
        pthread_cond_broadcast(&l->not_full);
        pthread_mutex_unlock(&l->mu);
        run_batch(l, l->batch, n); /* n == 0: an idle sweep */
        if (n > 0) hand_to_syncer(l, l->batch, n);
        held_back = true; /* an idle sweep, too, leaves the store's transaction open */
    }
}

/* Naive mode (the bench's baseline): the caller applies its op in its own transaction. */
static int submit_direct(ledger_shard *l, ledger_op *op) {
    pthread_mutex_lock(&l->mu);
    ledger_op *one[1] = {op};
    run_batch(l, one, 1);
    cg_err sync_err = {0};
    int rc = l->store->ops->sync(l->store, &sync_err);
    sync_outcome(l, op, rc, &sync_err);
    pthread_mutex_unlock(&l->mu);
    return op->rc;
}

/* Puts op in the shard's queue, waiting for room. CG_EUNAVAILABLE when the ledger closes. */
static int enqueue(ledger_shard *l, ledger_op *op, cg_err *err) {
    pthread_mutex_lock(&l->mu);
    while (l->ring_count == l->config.queue_ops_max && !l->stopping)
        pthread_cond_wait(&l->not_full, &l->mu);
    if (l->stopping) {
        pthread_mutex_unlock(&l->mu);
        return cg_err_set(err, CG_EUNAVAILABLE, "ledger is closing");
    }
    int tail = (l->ring_head + l->ring_count) % l->config.queue_ops_max;
    l->ring[tail] = op;
    l->ring_count++;
    pthread_cond_signal(&l->not_empty);
    pthread_mutex_unlock(&l->mu);
    return CG_OK;
}

/* Queues op and waits until the writer has committed (or refused) it. */
static int submit(ledger_shard *l, ledger_op *op, cg_err *err) {
    assert(l && op);
    memset(&op->err, 0, sizeof op->err);
    op->rc = CG_OK;
    int rc;
    if (!l->config.group_commit) {
        rc = submit_direct(l, op);
    } else {
        sem_init(&op->done, 0, 0);
        if ((rc = enqueue(l, op, err))) {
            sem_destroy(&op->done);
            return rc;
        }
        while (sem_wait(&op->done) != 0) continue; /* EINTR */
        sem_destroy(&op->done);
        rc = op->rc;
    }
    if (rc && err) *err = op->err;
    return rc;
}

/* ---- one shard's lifetime ---- */

static void shard_close(ledger_shard *l) {
    if (!l) return;
    if (l->writer_started) {
        pthread_mutex_lock(&l->mu);
        l->stopping = true;
        pthread_cond_broadcast(&l->not_empty);
        pthread_cond_broadcast(&l->not_full);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->writer, NULL);
    }
    if (l->syncer_started) { /* after the writer: it may still hand over a last batch */
        pthread_mutex_lock(&l->sync_mu);
        l->sync_stopping = true;
        pthread_cond_signal(&l->sync_work);
        pthread_mutex_unlock(&l->sync_mu);
        pthread_join(l->syncer, NULL);
    }
    assert(l->ring_count == 0 && l->sync_head == NULL);
    cg_store_close(l->store);
    pthread_cond_destroy(&l->sync_space);
    pthread_cond_destroy(&l->sync_work);
    pthread_mutex_destroy(&l->sync_mu);
    pthread_cond_destroy(&l->not_full);
    pthread_cond_destroy(&l->not_empty);
    pthread_mutex_destroy(&l->mu);
    ledger_cache_close(l->cache);
    free(l->scratch_grants);
    free(l->batch);
    free(l->ring);
    free(l);
}

/* Opens shard `index` over store_take (taken: closed on failure too) and starts its threads. */
static int shard_open(cg_store *store_take, const cg_ledger_config *config, int index,
                      int cache_members_max, ledger_shard **out, cg_err *err) {
    *out = NULL;
    int64_t held = -1; /* held charges now: the start of cg_ledger_stats.holds_open */
    int rc = CG_OK;
    if (store_take->ops->count_held) rc = store_take->ops->count_held(store_take, &held, err);
    if (!rc && config->group_commit && config->flush_interval_ms > 0 &&
        store_take->ops->log_batches)
        rc = store_take->ops->log_batches(
            store_take, config->flush_interval_ms * 1000LL,
            (int64_t)(config->redo_mb ? config->redo_mb : CG_LEDGER_REDO_MB_DEFAULT) << 20, err);
    if (rc) {
        cg_store_close(store_take);
        return rc;
    }
    ledger_shard *l = calloc(1, sizeof *l);
    int cache_rc = CG_OK;
    if (l) {
        l->ring = calloc((size_t)config->queue_ops_max, sizeof *l->ring);
        l->batch = calloc((size_t)config->batch_ops_max, sizeof *l->batch);
        l->scratch_grants = calloc(CG_MEMBER_GRANTS_MAX, sizeof *l->scratch_grants);
        /* member state in memory only where the store can tell us about other writers */
        if (store_take->ops->data_version)
            cache_rc = ledger_cache_open(cache_members_max, &l->cache);
    }
    if (!l || !l->ring || !l->batch || !l->scratch_grants || cache_rc) {
        if (l) free(l->ring), free(l->batch), free(l->scratch_grants), ledger_cache_close(l->cache);
        free(l);
        cg_store_close(store_take);
        return cg_err_set(err, CG_ENOMEM, "out of memory opening the ledger");
    }
    l->store = store_take;
    l->config = *config;
    l->index = index;
    atomic_init(&l->holds_open, held);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->not_empty, NULL);
    pthread_cond_init(&l->not_full, NULL);
    pthread_mutex_init(&l->sync_mu, NULL);
    pthread_cond_init(&l->sync_work, NULL);
    pthread_cond_init(&l->sync_space, NULL);
    l->swept_at_us = INT64_MIN / 2;
    if (config->group_commit) {
        l->syncer_started = pthread_create(&l->syncer, NULL, syncer_main, l) == 0;
        l->writer_started =
            l->syncer_started && pthread_create(&l->writer, NULL, writer_main, l) == 0;
        if (!l->writer_started) {
            shard_close(l);
            return cg_err_set(err, CG_ENOMEM, "cannot start the ledger's threads");
        }
    }
    *out = l;
    return CG_OK;
}

/* ---- the ledger: its shards ---- */

void cg_ledger_close(cg_ledger *l) {
    if (!l) return;
    for (int i = 0; i < l->shard_count; i++) shard_close(l->shards[i]);
    free(l);
}

/* Opens a ledger over stores[0..n), taking every one of them (closed on failure too). */
static int ledger_open_stores(cg_store **stores_take, int n, bool partitioned,
                              const cg_ledger_config *config, cg_ledger **out, cg_err *err) {
    assert(n >= 1 && n <= CG_LEDGER_SHARDS_MAX);
    *out = NULL;
    cg_ledger *l = calloc(1, sizeof *l);
    int rc = l ? CG_OK : cg_err_set(err, CG_ENOMEM, "out of memory opening the ledger");
    if (l) {
        l->config = *config;
        l->partitioned = partitioned;
    }
    /* The cache bounds are the ledger's: each shard keeps its share of the member cache and of
     * the store's page cache. */
    int cache_share = (config->cache_members_max + n - 1) / n;
    int64_t page_cache_mb = config->page_cache_mb ? config->page_cache_mb
                                                  : CG_LEDGER_PAGE_CACHE_MB_DEFAULT;
    int64_t page_cache_kib = page_cache_mb * 1024 / n;
    for (int i = 0; i < n; i++) {
        if (!rc && stores_take[i]->ops->cache_bound)
            rc = stores_take[i]->ops->cache_bound(stores_take[i], page_cache_kib, err);
        if (rc) {
            cg_store_close(stores_take[i]);
            continue;
        }
        rc = shard_open(stores_take[i], config, i, cache_share, &l->shards[i], err);
        if (!rc) l->shard_count = i + 1;
    }
    if (rc) {
        cg_ledger_close(l);
        return rc;
    }
    *out = l;
    return CG_OK;
}

/* config, or the defaults in *defaults when NULL, checked; and libsodium ready (new ids). */
static int open_begin(const cg_ledger_config **config, cg_ledger_config *defaults, cg_err *err) {
    if (!*config) {
        cg_ledger_config_default(defaults);
        *config = defaults;
    }
    int rc = config_check(*config, err);
    if (!rc && sodium_init() < 0) rc = cg_err_set(err, CG_EIO, "libsodium failed to initialize");
    return rc;
}

/* Records (or reads) the first shard's place: a new store becomes shard 0 of `count` of a new
 * ledger id. *first is what the store holds; *created: this call recorded it. `where` names
 * the store in errors. */
static int mark_first_shard(cg_store *store, const char *where, int count, cg_store_shard *first,
                            bool *created, cg_err *err) {
    cg_store_shard want = {.index = 0, .count = count};
    uint8_t raw[8];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(want.ledger_id, sizeof want.ledger_id, raw, sizeof raw);
    int rc = store->ops->shard_mark(store, &want, first, err);
    if (!rc && (first->index != 0 || first->count < 1 || first->count > CG_LEDGER_SHARDS_MAX))
        rc = cg_err_set(err, CG_EINVAL, "%s is shard %d of %d of ledger %s, not the first "
                        "shard: open the first file", where, first->index, first->count,
                        first->ledger_id);
    *created = !rc && !strcmp(first->ledger_id, want.ledger_id);
    return rc;
}

int cg_ledger_open(cg_store *store_take, const cg_ledger_config *config, cg_ledger **out,
                   cg_err *err) {
    assert(store_take && out);
    *out = NULL;
    cg_ledger_config defaults;
    int rc = open_begin(&config, &defaults, err);
    if (!rc && store_take->ops->shard_mark) { /* one store is a whole ledger only if unsharded */
        cg_store_shard first;
        bool created;
        rc = mark_first_shard(store_take, "the store", 1, &first, &created, err);
        if (!rc && first.count != 1)
            rc = cg_err_set(err, CG_EINVAL, "this store is shard 0 of %d of ledger %s: open the "
                            "ledger with cg_ledger_open_dsn", first.count, first.ledger_id);
    }
    if (rc) {
        cg_store_close(store_take);
        return rc;
    }
    cg_store *one[1] = {store_take};
    return ledger_open_stores(one, 1, true, config, out, err);
}

/* The DSN of shard i ≥ 1 of a SQLite ledger: "PATH.shard<i>" (":memory:" stays itself). */
static int shard_dsn(const char *dsn, int i, char *out, size_t out_bytes, cg_err *err) {
    int n = !strcmp(dsn, ":memory:") || !strcmp(dsn, "sqlite::memory:")
                ? snprintf(out, out_bytes, "%s", dsn)
                : snprintf(out, out_bytes, "%s.shard%d", dsn, i);
    if (n < 0 || (size_t)n >= out_bytes)
        return cg_err_set(err, CG_ELIMIT, "database path longer than %zu bytes", out_bytes - 20);
    return CG_OK;
}

static bool dsn_is_file(const char *dsn) {
    const char *path = strncmp(dsn, "sqlite:", 7) ? dsn : dsn + 7;
    return strcmp(path, ":memory:") != 0;
}

/* Opens the other shards of a partitioned (SQLite) ledger whose first shard says it has
 * `first.count`, checking each file is the shard it should be. stores[0] is open already. */
static int open_partitions(const char *dsn, const cg_store_shard *first, bool created,
                           cg_store **stores, cg_err *err) {
    for (int i = 1; i < first->count; i++) {
        char path[CG_STORE_DSN_BYTES_MAX + 16];
        int rc = shard_dsn(dsn, i, path, sizeof path, err);
        if (rc) return rc;
        const char *file = strncmp(path, "sqlite:", 7) ? path : path + 7;
        /* An existing ledger's shard file must exist: recreating it empty would lose members. */
        if (!created && dsn_is_file(dsn) && access(file, F_OK) != 0)
            return cg_err_set(err, CG_EIO, "shard file %s of ledger %s (%d shards) is missing: "
                              "restore it from backup", file, first->ledger_id, first->count);
        if ((rc = cg_store_open(path, &stores[i], err))) return rc;
        cg_store_shard want = {.index = i, .count = first->count}, got;
        memcpy(want.ledger_id, first->ledger_id, sizeof want.ledger_id);
        if ((rc = stores[i]->ops->shard_mark(stores[i], &want, &got, err))) return rc;
        if (got.index != i || got.count != first->count ||
            strcmp(got.ledger_id, first->ledger_id) != 0)
            return cg_err_set(err, CG_EINVAL, "%s is shard %d of %d of ledger %s, expected shard "
                              "%d of %d of ledger %s", file, got.index, got.count, got.ledger_id,
                              i, first->count, first->ledger_id);
    }
    return CG_OK;
}

int cg_ledger_open_dsn(const char *dsn, const cg_ledger_config *config, cg_ledger **out,
                       cg_err *err) {
    assert(dsn && out);
    *out = NULL;
    cg_ledger_config defaults;
    int rc = open_begin(&config, &defaults, err);
    if (rc) return rc;
    cg_store *stores[CG_LEDGER_SHARDS_MAX] = {0};
    if ((rc = cg_store_open(dsn, &stores[0], err))) return rc;
    int n = config->shards;
    bool partitioned = stores[0]->ops->shard_mark != NULL;
    if (partitioned) {
        cg_store_shard first;
        bool created;
        rc = mark_first_shard(stores[0], dsn, n ? n : CG_LEDGER_SHARDS_DEFAULT, &first, &created,
                              err);
        if (!rc) rc = open_partitions(dsn, &first, created, stores, err);
        n = first.count;
    } else {
        if (!n) n = CG_LEDGER_PG_CONNECTIONS_DEFAULT;
        for (int i = 1; i < n && !rc; i++) rc = cg_store_open(dsn, &stores[i], err);
    }
    if (rc) {
        for (int i = 0; i < CG_LEDGER_SHARDS_MAX; i++) cg_store_close(stores[i]);
        return rc;
    }
    return ledger_open_stores(stores, n, partitioned, config, out, err);
}

void cg_ledger_set_engine(cg_ledger *l, const cg_engine *engine) {
    assert(l);
    l->config.engine = engine;
    /* Under each shard's queue lock: the writer takes its next call under it, so it reads the
     * new engine for every call queued from now on (none is in flight: the caller's promise). */
    for (int i = 0; i < l->shard_count; i++) {
        ledger_shard *sh = l->shards[i];
        pthread_mutex_lock(&sh->mu);
        sh->config.engine = engine;
        pthread_mutex_unlock(&sh->mu);
    }
}

/* The shard that owns member_id: FNV-1a of its bytes. Part of the on-disk layout of a sharded
 * SQLite ledger — never change it. A missing id goes to shard 0, which refuses it. */
static ledger_shard *shard_for(cg_ledger *l, const char *member_id) {
    if (l->shard_count == 1 || !member_id) return l->shards[0];
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)member_id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return l->shards[h % (uint32_t)l->shard_count];
}

/* ---- public calls: each builds an op and submits it to its member's shard ---- */

static int call(cg_ledger *l, const char *member_id, ledger_op_kind kind, const void *in,
                void *out, bool *replayed, cg_err *err) {
    ledger_op op = {.kind = kind, .in = in, .out = out, .replayed = replayed};
    if (replayed) *replayed = false;
    return submit(shard_for(l, member_id), &op, err);
}

int cg_ledger_member_put(cg_ledger *l, const cg_member_put_input *in, cg_member_state *out,
                         bool *replayed, cg_err *err) {
    return call(l, in->member_id, OP_MEMBER_PUT, in, out, replayed, err);
}

int cg_ledger_grant(cg_ledger *l, const cg_grant_input *in, cg_grant *out, bool *replayed,
                    cg_err *err) {
    return call(l, in->member_id, OP_GRANT, in, out, replayed, err);
}

int cg_ledger_charge(cg_ledger *l, const cg_charge_input *in, cg_charge *out, bool *replayed,
                     cg_err *err) {
    return call(l, in->member_id, OP_CHARGE, in, out, replayed, err);
}

int cg_ledger_capture(cg_ledger *l, const cg_settle_input *in, cg_charge *out, bool *replayed,
                      cg_err *err) {
    return call(l, in->member_id, OP_CAPTURE, in, out, replayed, err);
}

int cg_ledger_release(cg_ledger *l, const cg_settle_input *in, cg_charge *out, bool *replayed,
                      cg_err *err) {
    return call(l, in->member_id, OP_RELEASE, in, out, replayed, err);
}

int cg_ledger_refund(cg_ledger *l, const cg_settle_input *in, cg_charge *out, bool *replayed,
                     cg_err *err) {
    return call(l, in->member_id, OP_REFUND, in, out, replayed, err);
}

/* An asynchronous call: the op lives on the heap until the syncer has called done (see
 * syncer_main). Naive mode applies it here and calls done before returning. */
static int call_async(cg_ledger *l, const char *member_id, ledger_op_kind kind, const void *in,
                      void *out, bool *replayed, cg_ledger_done_fn done, void *ctx,
                      cg_err *err) {
    assert(done);
    ledger_shard *sh = shard_for(l, member_id);
    if (!sh->config.group_commit) {
        cg_err e = {0};
        int rc = call(l, member_id, kind, in, out, replayed, &e);
        done(ctx, rc, &e);
        return CG_OK;
    }
    ledger_op *op = malloc(sizeof *op);
    if (!op) return cg_err_set(err, CG_ENOMEM, "out of memory queueing a ledger call");
    *op = (ledger_op){.kind = kind, .in = in, .out = out, .replayed = replayed, .done_fn = done,
                      .done_ctx = ctx};
    if (replayed) *replayed = false;
    int rc = enqueue(sh, op, err);
    if (rc) free(op);
    return rc;
}

int cg_ledger_charge_async(cg_ledger *l, const cg_charge_input *in, cg_charge *out,
                           bool *replayed, cg_ledger_done_fn done, void *ctx, cg_err *err) {
    return call_async(l, in->member_id, OP_CHARGE, in, out, replayed, done, ctx, err);
}

int cg_ledger_capture_async(cg_ledger *l, const cg_settle_input *in, cg_charge *out,
                            bool *replayed, cg_ledger_done_fn done, void *ctx, cg_err *err) {
    return call_async(l, in->member_id, OP_CAPTURE, in, out, replayed, done, ctx, err);
}

int cg_ledger_release_async(cg_ledger *l, const cg_settle_input *in, cg_charge *out,
                            bool *replayed, cg_ledger_done_fn done, void *ctx, cg_err *err) {
    return call_async(l, in->member_id, OP_RELEASE, in, out, replayed, done, ctx, err);
}

int cg_ledger_refund_async(cg_ledger *l, const cg_settle_input *in, cg_charge *out,
                           bool *replayed, cg_ledger_done_fn done, void *ctx, cg_err *err) {
    return call_async(l, in->member_id, OP_REFUND, in, out, replayed, done, ctx, err);
}

int cg_ledger_member_get(cg_ledger *l, const char *member_id, int64_t at_us,
                         cg_member_state *out, cg_err *err) {
    ledger_op op = {.kind = OP_MEMBER_GET, .out = out, .member_id = member_id, .at_us = at_us};
    return submit(shard_for(l, member_id), &op, err);
}

int cg_ledger_member_history(cg_ledger *l, const char *member_id, cg_member_state *out,
                             int max, int *count, cg_err *err) {
    ledger_op op = {.kind = OP_MEMBER_HISTORY, .out = out, .member_id = member_id,
                    .limit = max, .count = count};
    return submit(shard_for(l, member_id), &op, err);
}

int cg_ledger_charge_get(cg_ledger *l, const char *member_id, const char *charge_id,
                         cg_charge *out, cg_err *err) {
    ledger_op op = {.kind = OP_CHARGE_GET, .out = out, .member_id = member_id,
                    .object_id = charge_id};
    return submit(shard_for(l, member_id), &op, err);
}

int cg_ledger_balance(cg_ledger *l, const char *member_id, cg_balance *out, cg_err *err) {
    ledger_op op = {.kind = OP_BALANCE, .out = out, .member_id = member_id};
    return submit(shard_for(l, member_id), &op, err);
}

int cg_ledger_history(cg_ledger *l, const char *member_id, int64_t after_seq, int limit,
                      cg_journal_entry *out, int *count, int64_t *next_seq, cg_err *err) {
    ledger_op op = {.kind = OP_HISTORY, .out = out, .member_id = member_id,
                    .after_seq = after_seq, .limit = limit, .count = count,
                    .next_seq = next_seq};
    return submit(shard_for(l, member_id), &op, err);
}

int cg_ledger_charges(cg_ledger *l, const char *member_id, const char *before, int limit,
                      cg_charge *out, int *count, char next[CG_CHARGES_CURSOR_BYTES_MAX],
                      cg_err *err) {
    assert(out && count && next);
    *count = 0;
    next[0] = 0;
    ledger_op op = {.kind = OP_CHARGES, .out = out, .member_id = member_id,
                    .object_id = before ? before : "", .limit = limit, .count = count,
                    .cursor = next};
    return submit(shard_for(l, member_id), &op, err);
}

void cg_ledger_stats_get(cg_ledger *l, cg_ledger_stats *out) {
    assert(l && out);
    memset(out, 0, sizeof *out);
    out->shards = l->shard_count;
    for (int i = 0; i < l->shard_count; i++) {
        ledger_shard *sh = l->shards[i];
        int64_t held = atomic_load(&sh->holds_open);
        if (held < 0 || out->holds_open < 0) out->holds_open = -1;
        else out->holds_open += held;
        out->page_cache_bytes += atomic_load(&sh->cache_bytes);
        out->member_cache_bytes += atomic_load(&sh->member_cache_bytes);
        out->batches += atomic_load(&sh->batches);
        out->calls += atomic_load(&sh->calls);
    }
    if (!l->partitioned && l->shard_count > 0) out->holds_open = -1;
}

/* Verifies every shard (one, when the shards share a database) and adds up the reports. */
int cg_ledger_verify(cg_ledger *l, cg_verify_report *out, cg_err *err) {
    assert(l && out);
    memset(out, 0, sizeof *out);
    int n = l->partitioned ? l->shard_count : 1;
    cg_verify_report *one = malloc(sizeof *one);
    if (!one) return cg_err_set(err, CG_ENOMEM, "out of memory verifying the ledger");
    int rc = CG_OK;
    for (int i = 0; i < n; i++) {
        ledger_op op = {.kind = OP_VERIFY, .out = one};
        cg_err e = {0};
        int shard_rc = submit(l->shards[i], &op, &e);
        if (shard_rc && shard_rc != CG_ECONFLICT) {
            rc = shard_rc;
            if (err) *err = e;
            break;
        }
        out->members += one->members;
        out->grants += one->grants;
        out->charges += one->charges;
        out->entries += one->entries;
        for (int64_t k = 0; k < one->problem_count && k < CG_VERIFY_PROBLEMS_MAX; k++)
            if (out->problem_count + k < CG_VERIFY_PROBLEMS_MAX)
                memcpy(out->problems[out->problem_count + k], one->problems[k],
                       sizeof out->problems[0]);
        out->problem_count += one->problem_count;
    }
    free(one);
    if (rc) return rc;
    if (out->problem_count > 0)
        return cg_err_set(err, CG_ECONFLICT, "ledger verify found %" PRId64 " difference(s); "
                          "first: %s", out->problem_count, out->problems[0]);
    return CG_OK;
}
