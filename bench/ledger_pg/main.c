/* bench/ledger_pg — durable charge+capture pairs per second on the PostgreSQL ledger
 * (src/store/pg.c), with 1 and 64 callers: group commit (one writer, one transaction per
 * batch, pipelined statements) against the naive one-transaction-per-call baseline in the same
 * run; then bench/ledger_pg/pgbench.sh: a charge transaction per pgbench client (64 parallel
 * connections), with row locks (FOR UPDATE) vs SERIALIZABLE with retries, and the floors: the
 * row writes alone, pipelined one member per statement and set-based (pgbench.sh).
 *
 *   build/bench/ledger_pg [--dsn postgres://...] [--members N] [--seconds S] [--shards N]
 *
 * --shards N: group commit over N connections, each with its own writer (members spread by
 * hash; default 1). The naive baseline always uses one.
 *
 * Without --dsn (or CG_BENCH_PG) it starts a throwaway cluster with scripts/pg.sh (PostgreSQL's
 * defaults: fsync on, synchronous_commit on) and removes it afterwards. Every call is durable
 * when it returns (its COMMIT flushed the WAL). Prints the figures, the ratio and the machine. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "creditgate/engine.h"
#include "creditgate/ledger.h"
#include "../machine.h"

#define BENCH_POLICY "policy/carat.yaml"
#define BENCH_CALLERS_MAX 64
#define BENCH_SAMPLES_PER_CALLER_MAX 200000
#define BENCH_POPULATE_THREADS 64

typedef struct caller {
    cg_ledger *ledger;
    int id;
    int64_t members;
    uint64_t rng;
    double until_s;
    int64_t pairs, failures;
    uint32_t *lat_us;
    int64_t lat_count;
    int64_t first_member, member_count; /* populate range */
} caller;

typedef struct run_result {
    double pairs_per_s, p50_ms, p99_ms;
    int64_t failures;
} run_result;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t next_rand(uint64_t *s) { /* xorshift64*: uniform member choice */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static void member_name(int64_t i, char *buf, size_t bytes) {
    snprintf(buf, bytes, "member-%08" PRId64, i);
}

static void *populate_main(void *arg) {
    caller *c = arg;
    cg_err err;
    for (int64_t i = c->first_member; i < c->first_member + c->member_count; i++) {
        char id[32], key[48];
        member_name(i, id, sizeof id);
        snprintf(key, sizeof key, "put-%s", id);
        cg_member_put_input m = {.member_id = id, .idempotency_key = key, .plan = "free",
                                 .billing = "monthly", .joined_at_us = INT64_C(1767225600000000)};
        cg_member_state ms;
        snprintf(key, sizeof key, "put-%s", id);
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

/* One charge + capture on a random member; 0 on success. */
static int one_pair(caller *c, int64_t n, uint64_t run) {
    char id[32], key[64], cap[80];
    member_name((int64_t)(next_rand(&c->rng) % (uint64_t)c->members), id, sizeof id);
    snprintf(key, sizeof key, "r%" PRIu64 "-c%d-%" PRId64, run, c->id, n);
    snprintf(cap, sizeof cap, "%s-cap", key);
    static __thread cg_charge ch;
    cg_err err;
    cg_charge_input in = {.member_id = id, .idempotency_key = key, .model = "midjourney"};
    if (cg_ledger_charge(c->ledger, &in, &ch, NULL, &err)) {
        fprintf(stderr, "charge: %s\n", err.msg);
        return -1;
    }
    cg_settle_input s = {.member_id = id, .charge_id = ch.charge_id, .idempotency_key = cap,
                         .credits = -1};
    if (cg_ledger_capture(c->ledger, &s, &ch, NULL, &err)) {
        fprintf(stderr, "capture: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static uint64_t run_seq;

static void *pairs_main(void *arg) {
    caller *c = arg;
    for (int64_t n = 0;; n++) {
        double t0 = now_s();
        if (t0 >= c->until_s) break;
        if (one_pair(c, n, run_seq)) {
            c->failures++;
            continue;
        }
        double us = (now_s() - t0) * 1e6;
        if (c->lat_count < BENCH_SAMPLES_PER_CALLER_MAX)
            c->lat_us[c->lat_count++] = us > 4e9 ? UINT32_MAX : (uint32_t)us;
        c->pairs++;
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void run_threads(caller *cs, int n, void *(*fn)(void *)) {
    pthread_t th[BENCH_POPULATE_THREADS];
    for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, fn, &cs[i]);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
}

static run_result run_pairs(cg_ledger *l, int64_t members, double seconds, int callers) {
    caller cs[BENCH_CALLERS_MAX];
    run_seq++;
    double start = now_s();
    for (int i = 0; i < callers; i++) {
        cs[i] = (caller){.ledger = l, .id = i, .members = members,
                         .rng = run_seq * 7919 + (uint64_t)i * 104729 + 1,
                         .until_s = start + seconds};
        cs[i].lat_us = malloc(sizeof(uint32_t) * BENCH_SAMPLES_PER_CALLER_MAX);
    }
    run_threads(cs, callers, pairs_main);
    double elapsed = now_s() - start;
    int64_t total = 0, samples = 0;
    run_result r = {0};
    for (int i = 0; i < callers; i++)
        total += cs[i].pairs, samples += cs[i].lat_count, r.failures += cs[i].failures;
    uint32_t *all = malloc(sizeof(uint32_t) * (size_t)(samples ? samples : 1));
    int64_t k = 0;
    for (int i = 0; i < callers; i++) {
        memcpy(all + k, cs[i].lat_us, sizeof(uint32_t) * (size_t)cs[i].lat_count);
        k += cs[i].lat_count;
        free(cs[i].lat_us);
    }
    qsort(all, (size_t)samples, sizeof *all, cmp_u32);
    r.pairs_per_s = total / elapsed;
    if (samples) {
        r.p50_ms = all[samples / 2] / 1e3;
        r.p99_ms = all[(samples * 99) / 100] / 1e3;
    }
    free(all);
    return r;
}

static int populate(cg_ledger *l, int64_t members) {
    caller cs[BENCH_POPULATE_THREADS];
    int64_t per = (members + BENCH_POPULATE_THREADS - 1) / BENCH_POPULATE_THREADS;
    for (int i = 0; i < BENCH_POPULATE_THREADS; i++) {
        int64_t first = i * per, count = first >= members ? 0 : per;
        if (first + count > members) count = members - first;
        cs[i] = (caller){.ledger = l, .first_member = first, .member_count = count};
    }
    run_threads(cs, BENCH_POPULATE_THREADS, populate_main);
    for (int i = 0; i < BENCH_POPULATE_THREADS; i++)
        if (cs[i].failures) return -1;
    return 0;
}

static void print_machine(const char *dsn) {
    bench_print_machine("(other work on the machine)");
    PGconn *c = PQconnectdb(dsn);
    PGresult *r = PQexec(c, "SELECT current_setting('server_version'), current_setting('fsync'),"
                            " current_setting('synchronous_commit')");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        printf("storage: PostgreSQL %s on 127.0.0.1 (same machine), fsync=%s, "
               "synchronous_commit=%s: a call returns after its COMMIT flushed the WAL\n",
               PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    PQclear(r);
    PQfinish(c);
}

static cg_ledger *open_ledger(const char *dsn, const cg_engine *engine, bool group, int shards) {
    cg_ledger_config cfg;
    cg_ledger_config_default(&cfg);
    cfg.engine = engine;
    cfg.group_commit = group;
    cfg.shards = shards;
    cg_ledger *l = NULL;
    cg_err err;
    if (cg_ledger_open_dsn(dsn, &cfg, &l, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    return l;
}

/* Starts a throwaway cluster; fills dir and dsn. */
static int cluster_start(char *dir, size_t dir_bytes, char *dsn, size_t dsn_bytes) {
    FILE *p = popen("scripts/pg.sh start", "r");
    char line[1024] = "";
    if (!p || !fgets(line, sizeof line, p)) return -1;
    pclose(p);
    line[strcspn(line, "\n")] = 0;
    char *space = strchr(line, ' ');
    if (!space) return -1;
    *space = 0;
    snprintf(dir, dir_bytes, "%s", line);
    snprintf(dsn, dsn_bytes, "%s", space + 1);
    return 0;
}

int main(int argc, char **argv) {
    const char *dsn_arg = getenv("CG_BENCH_PG");
    int64_t members = 10000;
    double seconds = 5;
    int shards = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dsn")) dsn_arg = argv[i + 1];
        else if (!strcmp(argv[i], "--members")) members = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--seconds")) seconds = strtod(argv[i + 1], NULL);
        else if (!strcmp(argv[i], "--shards")) shards = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: ledger_pg [--dsn DSN] [--members N] [--seconds S] "
                            "[--shards N]\n");
            return 2;
        }
    }
    char dir[1024] = "", dsn[1024];
    if (dsn_arg) snprintf(dsn, sizeof dsn, "%s", dsn_arg);
    else if (cluster_start(dir, sizeof dir, dsn, sizeof dsn)) {
        fprintf(stderr, "bench: cannot start PostgreSQL (scripts/pg.sh start)\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    cg_policy_set set;
    cg_engine engine;
    cg_err err;
    cg_policy_set_init(&set);
    if (cg_policy_set_load_file(&set, BENCH_POLICY, &err) || cg_engine_init(&engine, &set, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    print_machine(dsn);
    printf("members %" PRId64 ", %.1f s per run, charge = Midjourney (10 credits) on a random "
           "member, then capture; both durable\n", members, seconds);
    if (shards < 1 || shards > CG_LEDGER_SHARDS_MAX) {
        fprintf(stderr, "bench: --shards must be 1..%d\n", CG_LEDGER_SHARDS_MAX);
        return 2;
    }
    cg_ledger *l = open_ledger(dsn, &engine, true, 1);
    double t0 = now_s();
    if (populate(l, members)) return 1;
    printf("populated %" PRId64 " members (member + grant each) in %.1f s\n", members,
           now_s() - t0);
    cg_ledger_close(l);
    const int callers[2] = {1, 64};
    run_result res[2][2];
    for (int mode = 0; mode < 2; mode++) {
        bool group = mode == 1;
        if (group)
            printf("group commit (%d writer connection(s): a transaction per batch, statements "
                   "pipelined):\n", shards);
        else
            printf("naive baseline (one transaction + WAL flush per call):\n");
        l = open_ledger(dsn, &engine, group, group ? shards : 1);
        for (int i = 0; i < 2; i++) {
            run_result r = run_pairs(l, members, seconds, callers[i]);
            res[mode][i] = r;
            printf("  %3d callers: %8.0f pairs/s  p50 %7.2f ms  p99 %7.2f ms  failures %" PRId64
                   "\n", callers[i], r.pairs_per_s, r.p50_ms, r.p99_ms, r.failures);
        }
        cg_ledger_close(l);
    }
    l = open_ledger(dsn, &engine, true, 1);
    cg_verify_report rep;
    int vrc = cg_ledger_verify(l, &rep, &err);
    printf("ledger verify: %s (%" PRId64 " grants, %" PRId64 " charges, %" PRId64 " entries)\n",
           vrc ? "DIFFERENCES" : "clean", rep.grants, rep.charges, rep.entries);
    cg_ledger_close(l);
    double ratio1 = res[0][0].pairs_per_s > 0 ? res[1][0].pairs_per_s / res[0][0].pairs_per_s : 0;
    double ratio64 = res[0][1].pairs_per_s > 0 ? res[1][1].pairs_per_s / res[0][1].pairs_per_s : 0;
    printf("ratio group/naive:  1 callers %.1fx  64 callers %.1fx\n", ratio1, ratio64);
    printf("goal >= 10x the naive baseline with 64 callers: %.1fx — %s\n", ratio64,
           ratio64 >= 10 ? "MET" : "NOT MET");
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "bench/ledger_pg/pgbench.sh '%s' %.0f %" PRId64 " %.0f", dsn,
             seconds, members, res[1][1].pairs_per_s);
    int prc = system(cmd);
    if (dir[0]) {
        snprintf(cmd, sizeof cmd, "scripts/pg.sh stop '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "bench: could not stop the cluster in %s\n", dir);
    }
    cg_engine_free(&engine);
    cg_policy_set_free(&set);
    return vrc || prc ? 1 : 0;
}
