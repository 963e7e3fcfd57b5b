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
#include "../ledger_pairs.h"
#include "../machine.h"

#define BENCH_POLICY "policy/carat.yaml"

static uint64_t run_seq;

static run_result run_pairs(cg_ledger *l, int64_t members, double seconds, int callers) {
    caller cs[BENCH_CALLERS_MAX];
    run_seq++;
    double start = now_s();
    for (int i = 0; i < callers; i++) {
        cs[i] = (caller){.ledger = l, .id = i, .run = run_seq, .members = members,
                         .rng = run_seq * 7919 + (uint64_t)i * 104729 + 1,
                         .until_s = start + seconds, .pairs_max = INT64_MAX};
        cs[i].lat_us = malloc(sizeof(uint32_t) * BENCH_SAMPLES_PER_CALLER_MAX);
    }
    run_threads(cs, callers, pairs_main);
    return pairs_result(cs, callers, now_s() - start);
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
