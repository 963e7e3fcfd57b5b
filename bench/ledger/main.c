/* bench/ledger — durable charge+capture pairs per second on the SQLite ledger, with 1 and with
 * 64 concurrent callers, group commit against the naive one-transaction-per-call baseline in
 * the same run, pair latency percentiles, and resident memory with many members.
 *
 *   build/bench/ledger [--members N] [--seconds S] [--callers LIST] [--dir DIR] [--pairs N]
 *                      [--shards LIST] [--flush LIST]
 *
 * --shards 1,2: group commit over each shard count in turn (a fresh database each), in the same
 * run; a shard is a file with its own writer. Default: CG_LEDGER_SHARDS_DEFAULT, what a new
 * database gets. The naive baseline is always one file.
 *
 * --flush 0,1000: group commit with each flush interval in turn (for each shard count): 0
 * commits the file at every batch (fdatasync of the WAL), N > 0 appends each batch to the redo
 * log (fdatasync of the log) and commits the file every N ms. Default
 * CG_LEDGER_FLUSH_MS_DEFAULT. The goal lines use the last run.
 *
 * --only floor: just the floors — the store's row writes for a pair with nothing else (see
 * run_floor), over the last shard count and flush interval, then the leanest SQLite layout
 * found for the same facts, all in cache and not durable (run_lean_floor): what SQLite itself
 * costs per pair on this machine. Every full run ends with them.
 *
 * --charges-only: each caller makes charge calls alone (durable holds, never captured), to
 * compare with peers whose one call is a charge (bench/peers: Redis, PostgreSQL).
 *
 * --capture-at-once: each caller makes charges with capture (quote + spend in one durable
 * call, final, cg_charge_input.capture): what the peers' one call does — check, decrement,
 * journal — with creditgate's decision, idempotency key and charge record on top.
 *
 * --async: in the group commit runs, N callers are N pairs in flight from one thread through
 * cg_ledger_charge_async / cg_ledger_capture_async instead of N threads each blocked in its
 * call (the naive baseline keeps its threads). Such a run also prints how much of it stalled:
 * the share of 10 ms ticks with under a tenth of the median tick's completions, when every
 * call in flight waited on one shard's file commit or checkpoint.
 *
 * Each run's line ends with calls per writer batch (cg_ledger_stats: calls / batches).
 *
 * --cache-mb N: the ledger's page cache bound (cg_ledger_config.page_cache_mb; default
 * CG_LEDGER_PAGE_CACHE_MB_DEFAULT).
 *
 * --pairs N stops each run after N pairs (split among the callers) so that instruction counts
 * under callgrind compare exactly between builds: valgrind --tool=callgrind build/bench/ledger
 * --members 2000 --callers 64 --only group --pairs 4000 --seconds 600.
 *
 * Every call is durable when it returns (its batch fdatasynced in the WAL or the redo log): a
 * pair is two acknowledged commits (charge = quote + hold, then capture). Prints the figures, the ratio and the machine. */
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "creditgate/engine.h"
#include "creditgate/ledger.h"
#include "creditgate/store.h"
#include "creditgate/time.h"
#include "../ledger_pairs.h"
#include "../machine.h"

#define BENCH_POLICY "policy/carat.yaml"

typedef struct bench_opts {
    int64_t members;
    double seconds;
    int64_t pairs; /* 0: as many as fit in seconds */
    bool charges_only; /* --charges-only: a "pair" is the charge call alone (a durable hold) */
    bool at_once;      /* --capture-at-once: a "pair" is one charge with capture (a spend) */
    int cache_mb;      /* --cache-mb: cg_ledger_config.page_cache_mb (0: its default) */
    bool async;        /* --async: group commit's callers are calls in flight from one thread */
    int callers[8];
    int caller_runs;
    const char *dir;
    const char *only; /* "group", "naive" or "floor": one mode (the 1M-member memory run),
                         NULL: all three */
    int shards[4];    /* group commit's shard counts, each run in turn */
    int shard_runs;
    int flushes[4];   /* and flush intervals (ms), each with each shard count */
    int flush_runs;
} bench_opts;

/* write_bytes of /proc/self/io: what this process sent to the disk so far. */
static int64_t disk_write_bytes(void) {
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    long long v = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "write_bytes: %lld", &v) == 1) break;
    if (f) fclose(f);
    return v;
}

static long rss_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n)) v = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return v;
}


/* ---- --async: the callers as calls in flight from one thread ----
 * The same pairs as pairs_main, but `callers` is how many pairs are in flight at once, all
 * driven by one thread through cg_ledger_charge_async / _capture_async: no thread parks per
 * call. Completions arrive on the ledger's syncer threads, which only queue them here; the
 * driver takes them in bunches and submits each pair's next call. */

typedef struct async_run async_run;

typedef struct async_slot {
    async_run *run;
    int index;
    bool capturing;     /* the capture is in flight (else the charge) */
    int rc;
    char member[32], key[64], cap[80];
    cg_charge_input charge;
    cg_settle_input settle;
    cg_charge out;
    double t0;
} async_slot;

struct async_run {
    pthread_mutex_t mu;
    pthread_cond_t done_cv;
    int *done;          /* slot indexes completed, not yet taken by the driver */
    int done_count;
};

static void async_done(void *ctx, int rc, const cg_err *err) {
    async_slot *slot = ctx;
    slot->rc = rc;
    if (rc) fprintf(stderr, "%s: %s\n", slot->capturing ? "capture" : "charge", err->msg);
    pthread_mutex_lock(&slot->run->mu);
    slot->run->done[slot->run->done_count++] = slot->index;
    pthread_cond_signal(&slot->run->done_cv);
    pthread_mutex_unlock(&slot->run->mu);
}

/* Submits slot's next charge (a new pair on a random member); 0 or the refusal to queue. */
static int async_charge(cg_ledger *l, async_slot *slot, caller *c, int64_t n) {
    member_name((int64_t)(next_rand(&c->rng) % (uint64_t)c->members), slot->member,
                sizeof slot->member);
    snprintf(slot->key, sizeof slot->key, "r%" PRIu64 "-a%d-%" PRId64, c->run, slot->index, n);
    snprintf(slot->cap, sizeof slot->cap, "%s-cap", slot->key);
    slot->charge = (cg_charge_input){.member_id = slot->member, .idempotency_key = slot->key,
                                     .model = "midjourney", .capture = c->at_once};
    slot->capturing = false;
    slot->t0 = now_s();
    cg_err err;
    return cg_ledger_charge_async(l, &slot->charge, &slot->out, NULL, async_done, slot, &err);
}

static int async_capture(cg_ledger *l, async_slot *slot) {
    slot->settle = (cg_settle_input){.member_id = slot->member, .charge_id = slot->out.charge_id,
                                     .idempotency_key = slot->cap, .credits = -1};
    slot->capturing = true;
    cg_err err;
    return cg_ledger_capture_async(l, &slot->settle, &slot->out, NULL, async_done, slot, &err);
}

#define STALL_TICK_S 0.01 /* completions are counted per tick of 10 ms */
#define STALL_TICKS_MAX (3600 * 100)

static int cmp_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The share of ticks[0..n) with under a tenth of the median tick's completions: the time all
 * calls in flight waited on something (a writer committing its file, a checkpoint). */
static double stalled_share(const int64_t *ticks, int n) {
    if (n < 10) return -1;
    int64_t *sorted = malloc(sizeof *sorted * (size_t)n);
    if (!sorted) return -1;
    memcpy(sorted, ticks, sizeof *sorted * (size_t)n);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_int64);
    int64_t median = sorted[n / 2];
    int stalled = 0;
    for (int i = 0; i < n; i++) stalled += ticks[i] * 10 < median;
    free(sorted);
    return (double)stalled / n;
}

/* One driver thread keeps `in_flight` pairs going until the time is up; c collects the pairs,
 * failures and latencies as a caller of pairs_main would, *stalled the share of stalled ticks
 * (stalled_share). */
static void drive_async(cg_ledger *l, caller *c, int in_flight, double *stalled) {
    async_run run = {.done = calloc((size_t)in_flight, sizeof(int))};
    async_slot *slots = calloc((size_t)in_flight, sizeof *slots);
    pthread_mutex_init(&run.mu, NULL);
    pthread_cond_init(&run.done_cv, NULL);
    int *taken = calloc((size_t)in_flight, sizeof(int));
    int64_t *ticks = calloc(STALL_TICKS_MAX, sizeof *ticks);
    double ticks_start = now_s();
    int tick_last = 0;
    int active = 0;
    int64_t n = 0;
    for (int i = 0; i < in_flight; i++) {
        slots[i] = (async_slot){.run = &run, .index = i};
        if (async_charge(l, &slots[i], c, n++) == 0) active++;
        else c->failures++;
    }
    while (active > 0) {
        pthread_mutex_lock(&run.mu);
        while (run.done_count == 0) pthread_cond_wait(&run.done_cv, &run.mu);
        int k = run.done_count;
        memcpy(taken, run.done, sizeof(int) * (size_t)k);
        run.done_count = 0;
        pthread_mutex_unlock(&run.mu);
        double t = now_s();
        bool more = t < c->until_s && c->pairs + c->failures < c->pairs_max;
        int tick = (int)((t - ticks_start) / STALL_TICK_S);
        if (ticks && more && tick < STALL_TICKS_MAX) {
            ticks[tick] += k;
            tick_last = tick;
        }
        for (int j = 0; j < k; j++) {
            async_slot *slot = &slots[taken[j]];
            int rc = slot->rc;
            if (!rc && !slot->capturing && !c->charges_only && !c->at_once) {
                if (async_capture(l, slot) == 0) continue;
                rc = -1;
            }
            if (rc) {
                c->failures++;
            } else {
                record_latency(c, slot->t0);
                c->pairs++;
            }
            if (more && async_charge(l, slot, c, n++) == 0) continue;
            active--;
        }
    }
    *stalled = ticks ? stalled_share(ticks, tick_last) : -1; /* the last tick is partial */
    free(ticks);
    pthread_cond_destroy(&run.done_cv);
    pthread_mutex_destroy(&run.mu);
    free(taken);
    free(slots);
    free(run.done);
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* async: `callers` pairs in flight from one thread (drive_async) instead of a thread each. */
static run_result run_pairs(cg_ledger *l, const bench_opts *o, int callers, uint64_t seed,
                            bool async) {
    int in_flight = callers;
    if (async) callers = 1;
    caller *cs = calloc((size_t)callers, sizeof *cs);
    double start = now_s(), cpu_start = cpu_s();
    int64_t disk_start = disk_write_bytes();
    cg_ledger_stats st0, st1;
    cg_ledger_stats_get(l, &st0);
    for (int i = 0; i < callers; i++) {
        cs[i] = (caller){.ledger = l, .id = i, .run = seed, .members = o->members,
                         .charges_only = o->charges_only, .at_once = o->at_once,
                         .rng = seed * 7919 + (uint64_t)i * 104729 + 1,
                         .until_s = start + o->seconds,
                         .pairs_max = o->pairs ? (o->pairs + callers - 1) / callers : INT64_MAX};
        cs[i].lat_us = malloc(sizeof(uint32_t) * BENCH_SAMPLES_PER_CALLER_MAX);
    }
    double stalled = -1;
    if (async) drive_async(l, &cs[0], in_flight, &stalled);
    else run_threads(cs, callers, pairs_main);
    double elapsed = now_s() - start, cpu = cpu_s() - cpu_start;
    cg_ledger_stats_get(l, &st1);
    int64_t disk = disk_write_bytes() - disk_start, total = 0;
    for (int i = 0; i < callers; i++) total += cs[i].pairs;
    run_result r = pairs_result(cs, callers, elapsed);
    r.cpu_us_per_pair = total ? cpu * 1e6 / total : 0;
    r.disk_kib_per_pair = total ? (double)disk / 1024 / total : 0;
    int64_t batches = st1.batches - st0.batches;
    r.calls_per_batch = batches > 0 ? (double)(st1.calls - st0.calls) / (double)batches : 0;
    r.stalled_share = stalled;
    free(cs);
    return r;
}

static void usage(void) {
    fprintf(stderr, "usage: bench/ledger [--members N] [--seconds S] [--callers 1,64] [--dir DIR]"
                    " [--only group|naive|floor] [--pairs N] [--shards 1,2] [--flush 0,1000]"
                    " [--charges-only | --capture-at-once] [--cache-mb N] [--async]\n");
    exit(2);
}

static void parse_opts(int argc, char **argv, bench_opts *o) {
    *o = (bench_opts){.members = 100000, .seconds = 5, .callers = {1, 64}, .caller_runs = 2,
                      .dir = "build", .shards = {CG_LEDGER_SHARDS_DEFAULT}, .shard_runs = 1,
                      .flushes = {CG_LEDGER_FLUSH_MS_DEFAULT}, .flush_runs = 1};
    for (int i = 1; i < argc; i++) {
        bool flag = !strcmp(argv[i], "--charges-only") || !strcmp(argv[i], "--async") ||
                    !strcmp(argv[i], "--capture-at-once");
        if (!flag && i + 1 >= argc) usage(); /* every other option takes a value */
        if (!strcmp(argv[i], "--members")) o->members = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seconds")) o->seconds = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--pairs")) o->pairs = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dir")) o->dir = argv[++i];
        else if (!strcmp(argv[i], "--only")) o->only = argv[++i];
        else if (!strcmp(argv[i], "--charges-only")) o->charges_only = true;
        else if (!strcmp(argv[i], "--capture-at-once")) o->at_once = true;
        else if (!strcmp(argv[i], "--cache-mb")) o->cache_mb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--async")) o->async = true;
        else if (!strcmp(argv[i], "--flush")) {
            o->flush_runs = 0;
            for (char *t = strtok(argv[++i], ","); t && o->flush_runs < 4; t = strtok(NULL, ","))
                o->flushes[o->flush_runs++] = atoi(t);
        } else if (!strcmp(argv[i], "--shards")) {
            o->shard_runs = 0;
            for (char *t = strtok(argv[++i], ","); t && o->shard_runs < 4; t = strtok(NULL, ","))
                o->shards[o->shard_runs++] = atoi(t);
        }
        else if (!strcmp(argv[i], "--callers")) {
            o->caller_runs = 0;
            for (char *t = strtok(argv[++i], ","); t && o->caller_runs < 8; t = strtok(NULL, ","))
                o->callers[o->caller_runs++] = atoi(t);
        } else usage();
    }
    if (o->members < 1 || o->seconds <= 0 || o->shard_runs < 1 || o->flush_runs < 1 ||
        o->cache_mb < 0 || o->cache_mb > CG_LEDGER_PAGE_CACHE_MB_MAX)
        usage();
    for (int i = 0; i < o->flush_runs; i++)
        if (o->flushes[i] < 0 || o->flushes[i] > CG_LEDGER_FLUSH_MS_MAX) usage();
    for (int i = 0; i < o->shard_runs; i++)
        if (o->shards[i] < 1 || o->shards[i] > CG_LEDGER_SHARDS_MAX) usage();
    for (int i = 0; i < o->caller_runs; i++)
        if (o->callers[i] < 1 || o->callers[i] > BENCH_CALLERS_MAX) usage();
}

/* Removes the database at path: every shard file with its -wal, -shm and -redo. */
static void remove_db(const char *path) {
    for (int shard = 0; shard < CG_LEDGER_SHARDS_MAX; shard++) {
        char file[600], p[640];
        if (shard) snprintf(file, sizeof file, "%s.shard%d", path, shard);
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

static void print_machine(const bench_opts *o) {
    bench_print_machine("(other work on the machine)");
    printf("storage: SQLite %s, WAL; a call is acknowledged after one fdatasync (of the WAL, or"
           " of the redo log with flush > 0); writer's member cache %d members; page cache %d"
           " MiB\n", sqlite3_libversion(), CG_LEDGER_CACHE_MEMBERS_DEFAULT,
           o->cache_mb ? o->cache_mb : CG_LEDGER_PAGE_CACHE_MB_DEFAULT);
}

/* Opens a fresh ledger in the given mode and populates it. */
static cg_ledger *open_fresh(const bench_opts *o, const cg_engine *engine, int shards,
                             int flush_ms, const char *path) {
    bool group = shards > 0;
    remove_db(path);
    cg_ledger_config cfg;
    cg_ledger_config_default(&cfg);
    cfg.engine = engine;
    cfg.group_commit = true; /* populate fast either way; reopened below for naive */
    cfg.shards = group ? shards : 1;
    cfg.flush_interval_ms = flush_ms;
    cfg.page_cache_mb = o->cache_mb;
    cg_ledger *l = NULL;
    cg_err err;
    char dsn[600];
    snprintf(dsn, sizeof dsn, "sqlite:%s", path);
    double t0 = now_s();
    if (cg_ledger_open_dsn(dsn, &cfg, &l, &err) || populate(l, o->members)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    printf("  populated %" PRId64 " members (member + grant each) in %.1f s\n", o->members,
           now_s() - t0);
    if (group) return l;
    cg_ledger_close(l);
    cfg.group_commit = false;
    if (cg_ledger_open_dsn(dsn, &cfg, &l, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    return l;
}


/* ---- The floor: the store's row writes alone ----
 * What a pair costs in the store with nothing else: per shard file one thread calls the same
 * store ops the ledger's writer calls for a charge (key claim, charge row, journal entry, grant
 * update) and for its capture (key claim, charge update, journal entry, grant update), in
 * batches of 64 / shards pairs — a batch of charges, then one of their captures, each committed
 * into the redo log and fdatasynced (not overlapped, as the ledger's syncer does). No engine,
 * no ledger rules, no caller threads, no member cache lookups. The rows are copies of a real
 * charge's, so they are as wide as the ledger's. The CPU per pair is what the current schema
 * costs by itself; the goal of 50,000 pairs/s on 2 cores leaves 40 us per pair for everything. */

#define FLOOR_BATCH_PAIRS_TOTAL 64

typedef struct floor_grant {
    int64_t remaining, held, seq;
} floor_grant;

typedef struct floor_shard {
    cg_store *store;
    int index;
    int64_t members;             /* this file's members: member-<index>-<n> */
    floor_grant *grants;
    char grant_id[CG_OBJECT_ID_BYTES_MAX];
    const cg_charge *held_row;   /* templates from a real charge and its capture */
    const cg_charge *captured_row;
    int batch_pairs;
    uint64_t rng;
    double until_s;
    int64_t pairs_max, pairs;
    int failed;
    cg_err err;
} floor_shard;

static void floor_member(const floor_shard *f, int64_t n, char *out, size_t bytes) {
    snprintf(out, bytes, "member-%d-%08" PRId64, f->index, n);
}

static int floor_populate(floor_shard *f) {
    cg_store *s = f->store;
    const cg_store_ops *ops = s->ops;
    int rc = ops->begin(s, &f->err);
    for (int64_t n = 0; n < f->members && !rc; n++) {
        cg_member_state m = {.joined_at_us = INT64_C(1767225600000000),
                             .effective_at_us = 1, .recorded_at_us = 1};
        floor_member(f, n, m.member_id, sizeof m.member_id);
        snprintf(m.plan, sizeof m.plan, "free");
        snprintf(m.billing, sizeof m.billing, "monthly");
        cg_grant g = {.source = CG_SOURCE_PURCHASE, .category = CG_CATEGORY_PAID,
                      .priority = 50, .credits = CG_CREDITS_MAX, .remaining = CG_CREDITS_MAX,
                      .expires_at_us = CG_NO_END, .created_at_us = 1};
        memcpy(g.member_id, m.member_id, sizeof g.member_id);
        memcpy(g.grant_id, f->grant_id, sizeof g.grant_id);
        rc = ops->member_insert(s, &m, &f->err);
        if (!rc) rc = ops->grant_insert(s, &g, &f->err);
        f->grants[n] = (floor_grant){.remaining = CG_CREDITS_MAX};
    }
    if (!rc) rc = ops->commit(s, &f->err);
    if (!rc) rc = ops->sync(s, &f->err);
    return rc;
}

/* One batch: the charges (capture false) or the captures of the same members and ids. */
static int floor_batch(floor_shard *f, bool capture, const int64_t *who, const uint64_t *ids,
                       int64_t first) {
    cg_store *s = f->store;
    const cg_store_ops *ops = s->ops;
    int64_t now = cg_time_now_us();
    int rc = ops->begin(s, &f->err);
    for (int i = 0; i < f->batch_pairs && !rc; i++) {
        floor_grant *g = &f->grants[who[i]];
        cg_store_idem key = {.op = capture ? 4 : 3, .created_at_us = now};
        floor_member(f, who[i], key.member_id, sizeof key.member_id);
        snprintf(key.key, sizeof key.key, "f%d-%" PRId64 "%s", f->index, first + i,
                 capture ? "-cap" : "");
        static __thread cg_charge row;
        row = capture ? *f->captured_row : *f->held_row;
        memcpy(row.member_id, key.member_id, sizeof row.member_id);
        snprintf(row.charge_id, sizeof row.charge_id, "ch_%016" PRIx64, ids[i]);
        memcpy(key.object_id, row.charge_id, sizeof key.object_id);
        bool claimed = false;
        cg_store_idem existing;
        rc = ops->idem_claim(s, &key, &claimed, &existing, &f->err);
        if (!rc && !claimed)
            rc = cg_err_set(&f->err, CG_ECONFLICT, "floor: key %s reused", key.key);
        if (!rc) rc = capture ? ops->charge_update(s, &row, &f->err)
                              : ops->charge_insert(s, &row, &f->err);
        cg_journal_entry e = {.seq = ++g->seq, .at_us = now,
                              .kind = capture ? CG_JOURNAL_CAPTURE : CG_JOURNAL_HOLD,
                              .delta_remaining = capture ? -row.captured : 0,
                              .delta_held = capture ? -row.captured : row.held};
        memcpy(e.member_id, row.member_id, sizeof e.member_id);
        memcpy(e.grant_id, f->grant_id, sizeof e.grant_id);
        memcpy(e.charge_id, row.charge_id, sizeof e.charge_id);
        if (!rc) rc = ops->journal_append(s, &e, &f->err);
        g->remaining += e.delta_remaining;
        g->held += e.delta_held;
        cg_grant gr = {.remaining = g->remaining, .held = g->held};
        memcpy(gr.member_id, row.member_id, sizeof gr.member_id);
        memcpy(gr.grant_id, f->grant_id, sizeof gr.grant_id);
        if (!rc) rc = ops->grant_update(s, &gr, &f->err);
    }
    if (!rc) rc = ops->commit(s, &f->err);
    if (!rc) rc = ops->sync(s, &f->err);
    return rc;
}

static void *floor_main(void *arg) {
    floor_shard *f = arg;
    int64_t who[FLOOR_BATCH_PAIRS_TOTAL];
    uint64_t ids[FLOOR_BATCH_PAIRS_TOTAL];
    while (now_s() < f->until_s && f->pairs < f->pairs_max) {
        for (int i = 0; i < f->batch_pairs; i++) {
            who[i] = (int64_t)(next_rand(&f->rng) % (uint64_t)f->members);
            ids[i] = next_rand(&f->rng);
        }
        if (floor_batch(f, false, who, ids, f->pairs) || floor_batch(f, true, who, ids, f->pairs)) {
            f->failed = 1;
            return NULL;
        }
        f->pairs += f->batch_pairs;
    }
    return NULL;
}

/* A real charge of the bench's kind and its capture, as the store holds them. */
static int floor_templates(const bench_opts *o, const cg_engine *engine, cg_charge *held,
                           cg_charge *captured, char *grant_id, size_t grant_id_bytes) {
    char path[600], dsn[640];
    snprintf(path, sizeof path, "%s/bench-floor-template.db", o->dir);
    remove_db(path);
    snprintf(dsn, sizeof dsn, "sqlite:%s", path);
    cg_ledger_config cfg;
    cg_ledger_config_default(&cfg);
    cfg.engine = engine;
    cfg.shards = 1;
    cg_ledger *l = NULL;
    cg_err err;
    caller c = {.first_member = 0, .member_count = 1};
    int rc = cg_ledger_open_dsn(dsn, &cfg, &l, &err);
    if (!rc) {
        c.ledger = l;
        populate_main(&c);
        rc = c.failures ? -1 : 0;
    }
    char id[32];
    member_name(0, id, sizeof id);
    cg_charge_input in = {.member_id = id, .idempotency_key = "t", .model = "midjourney"};
    if (!rc) rc = cg_ledger_charge(l, &in, held, NULL, &err);
    cg_settle_input st = {.member_id = id, .charge_id = held->charge_id, .idempotency_key = "tc",
                          .credits = -1};
    if (!rc) rc = cg_ledger_capture(l, &st, captured, NULL, &err);
    if (!rc) snprintf(grant_id, grant_id_bytes, "%s", held->parts[0].grant_id);
    if (rc) fprintf(stderr, "bench: floor template: %s\n", err.msg);
    cg_ledger_close(l);
    remove_db(path);
    return rc;
}

static int run_floor(const bench_opts *o, const cg_engine *engine, int shards, int flush_ms) {
    static cg_charge held, captured;
    char grant_id[CG_OBJECT_ID_BYTES_MAX];
    if (floor_templates(o, engine, &held, &captured, grant_id, sizeof grant_id)) return -1;
    printf("floor, %d shard file(s), flush %d ms (the store's row writes alone: per file one "
           "thread, %d pairs a batch, no engine, no ledger rules, no callers):\n", shards,
           flush_ms, FLOOR_BATCH_PAIRS_TOTAL / shards);
    floor_shard fs[CG_LEDGER_SHARDS_MAX];
    int rc = 0;
    for (int i = 0; i < shards && !rc; i++) {
        char path[600], dsn[640];
        snprintf(path, sizeof path, "%s/bench-floor-%d.db", o->dir, i);
        remove_db(path);
        snprintf(dsn, sizeof dsn, "sqlite:%s", path);
        fs[i] = (floor_shard){.index = i, .members = (o->members + shards - 1) / shards,
                              .held_row = &held, .captured_row = &captured,
                              .batch_pairs = FLOOR_BATCH_PAIRS_TOTAL / shards,
                              .rng = (uint64_t)i * 104729 + 17,
                              .pairs_max = o->pairs ? (o->pairs + shards - 1) / shards : INT64_MAX};
        memcpy(fs[i].grant_id, grant_id, sizeof fs[i].grant_id);
        fs[i].grants = calloc((size_t)fs[i].members, sizeof *fs[i].grants);
        rc = cg_store_open(dsn, &fs[i].store, &fs[i].err);
        int64_t cache_mb = o->cache_mb ? o->cache_mb : CG_LEDGER_PAGE_CACHE_MB_DEFAULT;
        if (!rc && fs[i].store->ops->cache_bound) /* the ledger's share per file */
            rc = fs[i].store->ops->cache_bound(fs[i].store, cache_mb * 1024 / shards, &fs[i].err);
        if (!rc) rc = floor_populate(&fs[i]); /* before the log: its pages are on disk */
        if (!rc && flush_ms && fs[i].store->ops->log_batches)
            rc = fs[i].store->ops->log_batches(fs[i].store, (int64_t)flush_ms * 1000,
                                               (int64_t)CG_LEDGER_REDO_MB_DEFAULT << 20,
                                               &fs[i].err);
        if (rc) fprintf(stderr, "bench: floor: %s\n", fs[i].err.msg);
    }
    if (rc) return rc;
    double start = now_s(), cpu_start = cpu_s();
    int64_t disk_start = disk_write_bytes();
    pthread_t th[CG_LEDGER_SHARDS_MAX];
    for (int i = 0; i < shards; i++) {
        fs[i].until_s = start + o->seconds;
        if (pthread_create(&th[i], NULL, floor_main, &fs[i])) return -1;
    }
    int64_t pairs = 0;
    for (int i = 0; i < shards; i++) {
        pthread_join(th[i], NULL);
        pairs += fs[i].pairs;
        if (fs[i].failed) fprintf(stderr, "bench: floor: %s\n", fs[i].err.msg), rc = -1;
    }
    double elapsed = now_s() - start, cpu = cpu_s() - cpu_start;
    int64_t disk = disk_write_bytes() - disk_start;
    double cpu_us = pairs ? cpu * 1e6 / pairs : 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("  %9.0f pairs/s  cpu %5.0f us/pair  disk %5.1f KiB/pair\n", pairs / elapsed, cpu_us,
           pairs ? (double)disk / 1024 / pairs : 0);
    printf("  so the store alone, on all %ld cpus and nothing else, tops out near %.0f pairs/s\n",
           cpus, cpu_us > 0 ? cpus * 1e6 / cpu_us : 0);
    for (int i = 0; i < shards; i++) {
        cg_store_close(fs[i].store);
        free(fs[i].grants);
        char path[600];
        snprintf(path, sizeof path, "%s/bench-floor-%d.db", o->dir, i);
        remove_db(path);
    }
    return rc;
}


/* ---- The lean floor: the fewest rows a pair can write in SQLite ----
 * Not creditgate's schema: the leanest layout found for the same facts (the best of the ones
 * tried, bench/RESULTS.md), in plain SQLite with nothing around it. A pair writes a key and a
 * journal entry per call, the charge once and then its status, the grant twice: charges and
 * journal are rowid tables (appends) with one small (member_id, ...) index each, keys and
 * grants keyed by member, keys also by age (for their purge). Integer columns, a 400-byte
 * blob for the request and items. One thread, batches of 32 pairs as savepoints in a
 * transaction, no fsync.
 * So it is below any durable ledger on this machine: CPU per pair here is SQLite's own cost
 * of the rows, nothing else. */

#define LEAN_BATCH_PAIRS 32
/* Twice: with everything cached and one commit at the end (SQLite's absolute cost), then
 * with a bounded page cache, as one of the ledger's two shards runs — 32 MiB, its share of the
 * 64 MiB bound the floor was first measured under (half its share of today's 128 MiB default,
 * so a stricter floor), memory flat with a million members — and the file committed once a
 * second at issue 3's rate (25,000 pairs per shard). */
#define LEAN_CACHE_KIB_UNBOUNDED 2000000
#define LEAN_COMMIT_PAIRS_RARELY 1000000000
#define LEAN_CACHE_KIB_BOUNDED 32768
#define LEAN_COMMIT_PAIRS_EVERY_SECOND 25024 /* a multiple of the batch */

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int lean_exec(sqlite3 *db, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    fprintf(stderr, "bench: lean floor: %s: %s\n", sql, msg ? msg : "?");
    sqlite3_free(msg);
    return -1;
}

static int lean_step(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) return 0;
    fprintf(stderr, "bench: lean floor: %s\n", sqlite3_errstr(rc));
    return -1;
}

/* cache_kib: SQLite's page cache bound; commit_pairs: pairs per committed transaction. */
static int run_lean_floor(const bench_opts *o, int cache_kib, int64_t commit_pairs) {
    char path[600];
    snprintf(path, sizeof path, "%s/bench-lean.db", o->dir);
    remove_db(path);
    sqlite3 *db = NULL;
    enum { GRANT_INSERT, CHARGE_INSERT, CHARGE_SETTLE, JOURNAL_INSERT, KEY_INSERT, GRANT_UPDATE,
           LEAN_STATEMENTS };
    static const char *const sql[LEAN_STATEMENTS] = {
        [GRANT_INSERT] = "INSERT INTO grants VALUES (?1, 1, 1000000000000, 0)",
        [CHARGE_INSERT] = "INSERT INTO charges (member_id, status, credits, held, captured,"
                          " created_at_us, request) VALUES (?1, 0, 10, 10, 0, ?2, ?3)",
        [CHARGE_SETTLE] = "UPDATE charges SET status = 1, held = 0, captured = 10 WHERE id = ?1",
        [JOURNAL_INSERT] = "INSERT INTO journal (member_id, seq, at_us, kind, grant_id,"
                           " charge, delta_remaining, delta_held) VALUES (?1, ?2, ?3, ?4, 1, ?5,"
                           " ?6, ?7)",
        [KEY_INSERT] = "INSERT INTO keys VALUES (?1, ?2, ?3, ?4, ?5)",
        [GRANT_UPDATE] = "UPDATE grants SET remaining = ?2, held = ?3 WHERE member_id = ?1"
                         " AND grant_id = 1",
    };
    sqlite3_stmt *st[LEAN_STATEMENTS] = {0};
    int rc = sqlite3_open(path, &db) == SQLITE_OK ? 0 : -1;
    char pragmas[160];
    snprintf(pragmas, sizeof pragmas, "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;"
             " PRAGMA cache_size = -%d;", cache_kib);
    if (!rc) rc = lean_exec(db, pragmas);
    if (!rc)
        rc = lean_exec(db,
            "CREATE TABLE grants (member_id TEXT, grant_id INT, remaining INT, held INT,"
            " PRIMARY KEY (member_id, grant_id)) WITHOUT ROWID;"
            "CREATE TABLE charges (id INTEGER PRIMARY KEY, member_id TEXT, status INT,"
            " credits INT, held INT, captured INT, created_at_us INT, request BLOB);"
            "CREATE INDEX charges_by_member ON charges (member_id, id);"
            "CREATE TABLE journal (id INTEGER PRIMARY KEY, member_id TEXT, seq INT, at_us INT,"
            " kind INT, grant_id INT, charge INT, delta_remaining INT, delta_held INT);"
            "CREATE INDEX journal_by_member ON journal (member_id, seq);"
            "CREATE TABLE keys (member_id TEXT, key TEXT, request_hash BLOB, object INT,"
            " created_at_us INT, PRIMARY KEY (member_id, key)) WITHOUT ROWID;"
            "CREATE INDEX keys_by_age ON keys (created_at_us);");
    for (int i = 0; i < LEAN_STATEMENTS && !rc; i++)
        if (sqlite3_prepare_v2(db, sql[i], -1, &st[i], NULL) != SQLITE_OK) rc = -1;
    int64_t *seq = calloc((size_t)o->members, sizeof *seq);
    if (!seq) rc = -1;
    char member[32];
    rc = rc ? rc : lean_exec(db, "BEGIN");
    for (int64_t m = 0; m < o->members && !rc; m++) {
        member_name(m, member, sizeof member);
        sqlite3_bind_text(st[GRANT_INSERT], 1, member, -1, SQLITE_TRANSIENT);
        rc = lean_step(st[GRANT_INSERT]);
    }
    rc = rc ? rc : lean_exec(db, "COMMIT");
    static const uint8_t request[400], hash[16];
    uint64_t rng = 7;
    int64_t who[LEAN_BATCH_PAIRS], ids[LEAN_BATCH_PAIRS], pairs = 0;
    double start = now_s(), cpu_start = thread_cpu_s();
    while (!rc && now_s() - start < o->seconds && (!o->pairs || pairs < o->pairs)) {
        if (pairs % commit_pairs == 0) rc = lean_exec(db, "BEGIN");
        /* --capture-at-once: one call per unit, the charge written captured at once */
        for (int settle = 0; settle < (o->at_once ? 1 : 2) && !rc; settle++) {
            rc = lean_exec(db, "SAVEPOINT batch");
            for (int i = 0; i < LEAN_BATCH_PAIRS && !rc; i++) {
                if (!settle) who[i] = (int64_t)(next_rand(&rng) % (uint64_t)o->members);
                member_name(who[i], member, sizeof member);
                char key[48];
                snprintf(key, sizeof key, "k%" PRId64 "-%d", pairs + i, settle);
                sqlite3_stmt *k = st[KEY_INSERT];
                sqlite3_bind_text(k, 1, member, -1, SQLITE_STATIC);
                sqlite3_bind_text(k, 2, key, -1, SQLITE_STATIC);
                sqlite3_bind_blob(k, 3, hash, sizeof hash, SQLITE_STATIC);
                sqlite3_bind_int64(k, 5, pairs);
                if (!settle) {
                    sqlite3_stmt *c = st[CHARGE_INSERT];
                    sqlite3_bind_text(c, 1, member, -1, SQLITE_STATIC);
                    sqlite3_bind_int64(c, 2, pairs);
                    sqlite3_bind_blob(c, 3, request, sizeof request, SQLITE_STATIC);
                    rc = lean_step(c);
                    ids[i] = sqlite3_last_insert_rowid(db);
                } else {
                    sqlite3_bind_int64(st[CHARGE_SETTLE], 1, ids[i]);
                    rc = lean_step(st[CHARGE_SETTLE]);
                }
                sqlite3_bind_int64(k, 4, ids[i]);
                rc = rc ? rc : lean_step(k);
                sqlite3_stmt *j = st[JOURNAL_INSERT];
                sqlite3_bind_text(j, 1, member, -1, SQLITE_STATIC);
                sqlite3_bind_int64(j, 2, ++seq[who[i]]);
                sqlite3_bind_int64(j, 3, pairs);
                bool spend = settle || o->at_once;
                sqlite3_bind_int(j, 4, spend ? CG_JOURNAL_CAPTURE : CG_JOURNAL_HOLD);
                sqlite3_bind_int64(j, 5, ids[i]);
                sqlite3_bind_int(j, 6, spend ? -10 : 0);
                sqlite3_bind_int(j, 7, settle ? -10 : o->at_once ? 0 : 10);
                rc = rc ? rc : lean_step(j);
                sqlite3_stmt *g = st[GRANT_UPDATE];
                sqlite3_bind_text(g, 1, member, -1, SQLITE_STATIC);
                sqlite3_bind_int64(g, 2, 1000000000000 - 10 * seq[who[i]]);
                sqlite3_bind_int(g, 3, settle ? 0 : 10);
                rc = rc ? rc : lean_step(g);
            }
            rc = rc ? rc : lean_exec(db, "RELEASE batch");
        }
        pairs += LEAN_BATCH_PAIRS;
        if (!rc && pairs % commit_pairs == 0) rc = lean_exec(db, "COMMIT");
    }
    if (!rc && pairs % commit_pairs) rc = lean_exec(db, "COMMIT"); /* counted: pages out */
    double cpu_us = pairs ? (thread_cpu_s() - cpu_start) * 1e6 / pairs : 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const char *unit = o->at_once ? "charges with capture" : "pairs";
    printf("lean floor, page cache %d MiB, committed every %" PRId64 " %s (plain SQLite, the "
           "fewest rows one writes, no fsync, one thread; not creditgate's schema):\n",
           cache_kib / 1024, commit_pairs, unit);
    printf("  %9.0f %s/s  cpu %5.1f us each: SQLite alone, on all %ld cpus, tops out near "
           "%.0f/s\n", pairs / (now_s() - start), unit, cpu_us, cpus,
           cpu_us > 0 ? cpus * 1e6 / cpu_us : 0);
    for (int i = 0; i < LEAN_STATEMENTS; i++) sqlite3_finalize(st[i]);
    sqlite3_close(db);
    free(seq);
    remove_db(path);
    return rc;
}

int main(int argc, char **argv) {
    bench_opts o;
    parse_opts(argc, argv, &o);
    cg_policy_set set;
    cg_engine engine;
    cg_err err;
    cg_policy_set_init(&set);
    if (cg_policy_set_load_file(&set, BENCH_POLICY, &err) || cg_engine_init(&engine, &set, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    print_machine(&o);
    printf("members %" PRId64 ", %.1f s per run, charge = Midjourney (10 credits) on a random "
           "member, then capture; both durable\n", o.members, o.seconds);
    if (o.async)
        printf("--async: group commit's callers are calls in flight from one thread\n");
    if (o.charges_only)
        printf("--charges-only: every \"pair\" below is one charge call alone (quote + hold, "
               "durable), no capture; the goal lines are left out\n");
    if (o.at_once)
        printf("--capture-at-once: every \"pair\" below is one charge with capture (quote + "
               "spend, durable, final); the goal lines are left out\n");
    char path[512];
    snprintf(path, sizeof path, "%s/bench-ledger.db", o.dir);
    run_result naive[8], group[16][8];
    int runs = o.shard_runs * o.flush_runs; /* group commit: run k = shards[k / flush_runs],
                                               flushes[k % flush_runs] */
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows when redirected */
    if (o.only && strcmp(o.only, "group") && strcmp(o.only, "naive") && strcmp(o.only, "floor"))
        usage();
    bool run_naive = !o.only || !strcmp(o.only, "naive");
    bool run_group = !o.only || !strcmp(o.only, "group");
    /* mode 0: naive; mode 1 + k: group commit over o.shards[k] */
    for (int mode = 0; mode < 1 + runs; mode++) {
        bool is_group = mode > 0;
        if (!(is_group ? run_group : run_naive)) continue;
        int shards = is_group ? o.shards[(mode - 1) / o.flush_runs] : 0;
        int flush_ms = is_group ? o.flushes[(mode - 1) % o.flush_runs] : 0;
        if (is_group && flush_ms)
            printf("group commit, %d shard(s), flush %d ms (per shard: a writer, one redo "
                   "record per batch, the file committed every %d ms; a syncer, one fdatasync "
                   "of the redo log per batch, overlapped):\n", shards, flush_ms, flush_ms);
        else if (is_group)
            printf("group commit, %d shard(s), flush 0 (per shard: a writer, one transaction per "
                   "batch; a syncer, one fdatasync of the WAL per batch, overlapped):\n", shards);
        else
            printf("naive baseline (one file, one transaction + fdatasync per call):\n");
        cg_ledger *l = open_fresh(&o, &engine, shards, flush_ms, path);
        for (int i = 0; i < o.caller_runs; i++) {
            run_result r = run_pairs(l, &o, o.callers[i], (uint64_t)(i + 1), is_group && o.async);
            (is_group ? group[mode - 1] : naive)[i] = r;
            printf("  %3d callers: %9.0f pairs/s  p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms"
                   "  cpu %5.0f us/pair  disk %5.1f KiB/pair  calls/batch %5.1f  failures %"
                   PRId64 "\n", o.callers[i], r.pairs_per_s, r.p50_ms, r.p99_ms, r.max_ms,
                   r.cpu_us_per_pair, r.disk_kib_per_pair, r.calls_per_batch, r.failures);
            if (r.stalled_share >= 0)
                printf("               stalled: %.1f %% of 10 ms ticks had under a tenth of the "
                       "median tick's completions (every call in flight waiting)\n",
                       100 * r.stalled_share);
        }
        cg_verify_report rep;
        double t0 = now_s();
        int vrc = cg_ledger_verify(l, &rep, &err);
        printf("  ledger verify: %s (%" PRId64 " grants, %" PRId64 " charges, %" PRId64
               " entries) in %.1f s\n", vrc ? "DIFFERENCES" : "clean", rep.grants, rep.charges,
               rep.entries, now_s() - t0);
        printf("  RSS now %ld KiB, peak %ld KiB\n", rss_kib("VmRSS:"), rss_kib("VmHWM:"));
        cg_ledger_close(l);
        if (vrc) return 1;
    }
    /* The floor with the last group run's shards and flush, and the share of the CPU it is. */
    int floor_shards = o.shards[o.shard_runs - 1], floor_flush = o.flushes[o.flush_runs - 1];
    if ((!o.only || !strcmp(o.only, "floor")) &&
        (run_floor(&o, &engine, floor_shards, floor_flush) ||
         run_lean_floor(&o, LEAN_CACHE_KIB_UNBOUNDED, LEAN_COMMIT_PAIRS_RARELY) ||
         run_lean_floor(&o, LEAN_CACHE_KIB_BOUNDED, LEAN_COMMIT_PAIRS_EVERY_SECOND)))
        return 1;
    if (run_group && runs > 1)
        for (int i = 0; i < o.caller_runs; i++) {
            printf("ratio to the first group run (%d shards, flush %d), %d callers:", o.shards[0],
                   o.flushes[0], o.callers[i]);
            for (int k = 1; k < runs; k++)
                printf("  %d shards flush %d: %.2fx", o.shards[k / o.flush_runs],
                       o.flushes[k % o.flush_runs],
                       group[0][i].pairs_per_s > 0
                           ? group[k][i].pairs_per_s / group[0][i].pairs_per_s : 0);
            printf("\n");
        }
    if (!run_naive || !run_group) o.caller_runs = 0;
    const run_result *last = group[runs - 1];
    for (int k = 0; k < runs && o.caller_runs; k++) {
        printf("ratio group (%d shards, flush %d)/naive:", o.shards[k / o.flush_runs],
               o.flushes[k % o.flush_runs]);
        for (int i = 0; i < o.caller_runs; i++)
            printf("  %d callers %.1fx", o.callers[i],
                   naive[i].pairs_per_s > 0 ? group[k][i].pairs_per_s / naive[i].pairs_per_s : 0);
        printf("\n");
    }
    for (int i = 0; i < o.caller_runs && !o.charges_only && !o.at_once; i++) {
        if (o.callers[i] != 64) continue;
        double ratio = naive[i].pairs_per_s > 0 ? last[i].pairs_per_s / naive[i].pairs_per_s : 0;
        printf("goal >= 50,000 durable pairs/s with 64 callers: %.0f — %s\n", last[i].pairs_per_s,
               last[i].pairs_per_s >= 50000 ? "MET" : "NOT MET");
        printf("goal >= 20x the naive baseline with 64 callers: %.1fx — %s\n", ratio,
               ratio >= 20 ? "MET" : "NOT MET");
        printf("goal p99 < 10 ms with 64 callers: %.2f ms — %s\n", last[i].p99_ms,
               last[i].p99_ms < 10 ? "MET" : "NOT MET");
    }
    remove_db(path);
    cg_engine_free(&engine);
    cg_policy_set_free(&set);
    return 0;
}
