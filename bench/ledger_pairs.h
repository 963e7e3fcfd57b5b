/* ledger_pairs.h — what bench/ledger (SQLite) and bench/ledger_pg (PostgreSQL) both do to a
 * ledger: fill it with members (a member and one grant each, from 64 threads), then let N
 * callers, one thread each, charge random members for a while and time every call. A unit is a
 * charge + capture pair, or with the caller's flags a hold alone or a charge with capture.
 * Header-only, like machine.h: each benchmark is one file. */
#ifndef CREDITGATE_BENCH_LEDGER_PAIRS_H
#define CREDITGATE_BENCH_LEDGER_PAIRS_H

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "creditgate/ledger.h"

#define BENCH_CALLERS_MAX 256
#define BENCH_SAMPLES_PER_CALLER_MAX 400000
#define BENCH_POPULATE_THREADS 64

typedef struct caller {
    cg_ledger *ledger;
    int id;
    uint64_t run;      /* in every idempotency key: runs on one database never collide */
    bool charges_only; /* a unit is the charge call alone (a durable hold) */
    bool at_once;      /* a unit is one charge with capture (a spend) */
    int64_t members;
    uint64_t rng;
    double until_s;
    int64_t pairs_max;
    int64_t pairs;
    int64_t failures;
    uint32_t *lat_us; /* unit latencies */
    int64_t lat_count;
    int64_t first_member, member_count; /* populate range */
} caller;

typedef struct run_result {
    double pairs_per_s;
    double cpu_us_per_pair;   /* all threads of this process: comparable on a busy machine */
    double disk_kib_per_pair; /* bytes this process caused to be written to disk */
    double p50_ms, p99_ms, max_ms;
    double calls_per_batch;   /* ledger calls per writer transaction (cg_ledger_stats) */
    double stalled_share;     /* --async: share of 10 ms ticks with under a tenth of the median
                                 tick's completions (callers all waiting); -1: not measured */
    int64_t failures;
} run_result;

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline uint64_t next_rand(uint64_t *s) { /* xorshift64*: uniform member choice */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static inline void member_name(int64_t i, char *buf, size_t bytes) {
    snprintf(buf, bytes, "member-%08" PRId64, i);
}

/* Members first_member .. + member_count: a Free monthly member with the largest grant. */
static inline void *populate_main(void *arg) {
    caller *c = arg;
    cg_err err;
    for (int64_t i = c->first_member; i < c->first_member + c->member_count; i++) {
        char id[32], key[48];
        member_name(i, id, sizeof id);
        snprintf(key, sizeof key, "put-%s", id);
        cg_member_put_input m = {.member_id = id, .idempotency_key = key, .plan = "free",
                                 .billing = "monthly", .joined_at_us = INT64_C(1767225600000000)};
        cg_member_state ms;
        if (cg_ledger_member_put(c->ledger, &m, &ms, NULL, &err)) goto fail;
        snprintf(key, sizeof key, "grant-%s", id);
        cg_grant_input g = {.member_id = id, .idempotency_key = key, .credits = CG_CREDITS_MAX,
                            .priority = -1, .source = CG_SOURCE_PURCHASE};
        cg_grant gr;
        if (cg_ledger_grant(c->ledger, &g, &gr, NULL, &err)) goto fail;
    }
    return NULL;
fail:
    fprintf(stderr, "populate: %s\n", err.msg);
    c->failures++;
    return NULL;
}

/* cs[0..n) each on its own thread; 0, or -1 when a thread could not start (none then runs
 * past the ones started, which are joined). */
static inline int run_threads(caller *cs, int n, void *(*fn)(void *)) {
    pthread_t th[BENCH_CALLERS_MAX];
    int started = 0;
    while (started < n && started < BENCH_CALLERS_MAX &&
           pthread_create(&th[started], NULL, fn, &cs[started]) == 0)
        started++;
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    return started == n ? 0 : -1;
}

static inline int populate(cg_ledger *l, int64_t members) {
    caller cs[BENCH_POPULATE_THREADS];
    int64_t per = (members + BENCH_POPULATE_THREADS - 1) / BENCH_POPULATE_THREADS;
    for (int i = 0; i < BENCH_POPULATE_THREADS; i++) {
        int64_t first = i * per, count = first >= members ? 0 : per;
        if (first + count > members) count = members - first;
        cs[i] = (caller){.ledger = l, .first_member = first, .member_count = count};
    }
    if (run_threads(cs, BENCH_POPULATE_THREADS, populate_main)) return -1;
    for (int i = 0; i < BENCH_POPULATE_THREADS; i++)
        if (cs[i].failures) return -1;
    return 0;
}

/* One unit on a random member: charge then capture, or the caller's one call; 0 on success. */
static inline int one_pair(caller *c, int64_t n) {
    char id[32], key[80], cap[96];
    member_name((int64_t)(next_rand(&c->rng) % (uint64_t)c->members), id, sizeof id);
    snprintf(key, sizeof key, "r%" PRIu64 "-c%d-%" PRId64, c->run, c->id, n);
    snprintf(cap, sizeof cap, "%s-cap", key);
    static __thread cg_charge ch;
    cg_err err;
    cg_charge_input in = {.member_id = id, .idempotency_key = key, .model = "midjourney",
                          .capture = c->at_once};
    if (cg_ledger_charge(c->ledger, &in, &ch, NULL, &err)) {
        fprintf(stderr, "charge: %s\n", err.msg);
        return -1;
    }
    if (c->charges_only || c->at_once) return 0;
    cg_settle_input s = {.member_id = id, .charge_id = ch.charge_id, .idempotency_key = cap,
                         .credits = -1};
    if (cg_ledger_capture(c->ledger, &s, &ch, NULL, &err)) {
        fprintf(stderr, "capture: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static inline void record_latency(caller *c, double t0) {
    double us = (now_s() - t0) * 1e6;
    if (c->lat_count < BENCH_SAMPLES_PER_CALLER_MAX)
        c->lat_us[c->lat_count++] = us > 4e9 ? UINT32_MAX : (uint32_t)us;
}

static inline void *pairs_main(void *arg) {
    caller *c = arg;
    for (int64_t n = 0;; n++) {
        double t0 = now_s();
        if (t0 >= c->until_s || c->pairs + c->failures >= c->pairs_max) break;
        if (one_pair(c, n)) {
            c->failures++;
            continue;
        }
        record_latency(c, t0);
        c->pairs++;
    }
    return NULL;
}

static inline int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Units per second, failures and latency percentiles over callers cs[0..n) that ran for
 * `elapsed` seconds; frees their latency buffers. */
static inline run_result pairs_result(caller *cs, int n, double elapsed) {
    int64_t total = 0, samples = 0;
    run_result r = {0};
    for (int i = 0; i < n; i++)
        total += cs[i].pairs, samples += cs[i].lat_count, r.failures += cs[i].failures;
    uint32_t *all = malloc(sizeof(uint32_t) * (size_t)(samples ? samples : 1));
    int64_t k = 0;
    for (int i = 0; i < n; i++) {
        if (all) memcpy(all + k, cs[i].lat_us, sizeof(uint32_t) * (size_t)cs[i].lat_count);
        k += cs[i].lat_count;
        free(cs[i].lat_us);
        cs[i].lat_us = NULL;
    }
    r.pairs_per_s = elapsed > 0 ? total / elapsed : 0;
    if (all && samples) {
        qsort(all, (size_t)samples, sizeof *all, cmp_u32);
        r.p50_ms = all[samples / 2] / 1e3;
        r.p99_ms = all[(samples * 99) / 100] / 1e3;
        r.max_ms = all[samples - 1] / 1e3;
    }
    free(all);
    return r;
}

#endif
