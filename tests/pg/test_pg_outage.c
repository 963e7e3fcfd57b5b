/* test_pg_outage.c — a slow or dead PostgreSQL under a real `creditgate serve --db postgres://…`
 * (issue 7): a throwaway cluster (scripts/pg.sh), eight client threads charging and capturing
 * with idempotency keys — retrying the same key after any 503 — while the test
 *   1. kills PostgreSQL mid-run (pg_ctl stop -m immediate), then restarts it;
 *   2. freezes every PostgreSQL process (SIGSTOP: a hung server that still accepts TCP), then
 *      thaws it;
 *   3. holds one member's lock from another session (psql) for 3 s.
 * What must hold: money calls answer 503 within a bounded time (never 500, never a hang, never
 * 2xx while nothing can commit); /healthz and an inline POST /v1/quote keep answering 200 while
 * the database is dead (no thread-pool exhaustion); /readyz says 503 while it is dead or hung;
 * charges succeed again after each recovery without restarting creditgate; every acknowledged
 * charge is in the ledger exactly once and captured, nothing else is; `creditgate ledger verify`
 * is clean. Skips when PostgreSQL is not installed, unless CG_PG_REQUIRED is set. */
#include "testlib.h"

#include <jansson.h>
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>

#include "crash/cgproc.h"

#define LOADERS 8                /* client threads, as many as the server's worker threads */
#define SERVER_THREADS "8"
#define CALLS_MAX 20000          /* charges per loader */
#define CLIENT_TIMEOUT_MS 15000  /* a call unanswered this long is a hang */
#define RETRY_PAUSE_US 10000     /* a client's pause before retrying a 503 */
#define DEAD_503_MS_MAX 2000     /* each bound: what one call may take to be refused */
#define SLOW_503_MS_MAX 4500     /* a hung server: one wait (2 s) + a connect attempt (≤ 2 s) */
#define LOCK_503_MS_MAX 4000     /* lock_timeout (1.5 s) behind another batch's lock wait */
#define PROBE_MS_MAX 1000        /* /healthz and /v1/quote while the database is dead */
#define RECOVER_MS_MAX 5000      /* from PostgreSQL back to the first acknowledged charge */
#define LOCKED_MEMBER 0          /* the loader whose member another session locks */

enum { PH_WARM, PH_DEAD, PH_RESTARTED, PH_HUNG, PH_THAWED, PH_LOCKED, PH_END, PH_COUNT };
static const char *const phase_name[PH_COUNT] = {"warm", "dead", "restarted", "hung", "thawed",
                                                 "locked", "end"};

/* Answers to money calls started in one phase: [0] the locked member's loader, [1] the rest. */
typedef struct phase_stats {
    atomic_long ok[2], unavailable[2], server_error[2], other[2], none[2];
    atomic_long ms_max_503[2], ms_max_ok[2];
    atomic_long ok_within[2];     /* 2xx answered before the phase ended */
    atomic_llong first_ok_at_ms;  /* monotonic; 0: none yet */
} phase_stats;

typedef struct loader {
    int index;
    char member[32];
    char (*ids)[40];       /* acknowledged charges, in order */
    int count;             /* charges acknowledged */
    int captured;          /* of those, captures acknowledged (count - 1 or count) */
    bool charge_in_doubt;  /* charge c-index-count sent, not yet acknowledged */
    int64_t price;
} loader;

static cp_env env;
static char pg_dir[512], pg_dsn[512];
static phase_stats stats[PH_COUNT];
static atomic_int phase;
static atomic_bool load_on;
static unsigned port;
static cp_proc server;

static void atomic_max(atomic_long *at, long v) {
    long old = atomic_load(at);
    while (v > old && !atomic_compare_exchange_weak(at, &old, v)) continue;
}

/* ---- the cluster ---- */

static bool pg_installed(void) { return cp_sh("ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1") == 0; }

static int pg_start(void) {
    FILE *f = popen("PG_OPTS='-c fsync=off' scripts/pg.sh start", "r");
    if (!f) return -1;
    int n = fscanf(f, "%511s %511s", pg_dir, pg_dsn);
    int rc = pclose(f);
    return n == 2 && rc == 0 ? 0 : -1;
}

static void pg_do(const char *what) { assert_int_equal(cp_sh("scripts/pg.sh %s '%s'", what, pg_dir), 0); }

/* The postmaster's pid and its children's (scripts/pg.sh pids): *count of them. */
static void pg_pids(int *pids, int max, int *count) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "scripts/pg.sh pids '%s'", pg_dir);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    *count = 0;
    while (*count < max && fscanf(f, "%d", &pids[*count]) == 1) (*count)++;
    pclose(f);
    assert_true(*count >= 1);
}

/* Waits until the process is stopped (state T): kill() returns before the stop lands. */
static void wait_stopped(int pid) {
    char path[64], stat[256];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(path, "r");
        if (!f) return; /* gone */
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = 0;
        const char *paren = strrchr(stat, ')');
        if (paren && (paren[2] == 'T' || paren[2] == 't')) return;
        usleep(1000);
    }
    fail_msg("PostgreSQL process %d did not stop", pid);
}

/* SIGSTOP to the postmaster, then to every child (none can be forked once it is stopped): a
 * server that hangs, while the kernel still accepts connections and acknowledges bytes for it. */
static void pg_freeze(void) {
    int pids[256], n;
    pg_pids(pids, 256, &n);
    assert_int_equal(kill(pids[0], SIGSTOP), 0);
    wait_stopped(pids[0]);
    pg_pids(pids, 256, &n);
    for (int i = 1; i < n; i++) kill(pids[i], SIGSTOP);
    for (int i = 1; i < n; i++) wait_stopped(pids[i]);
}

static void pg_thaw(void) {
    int pids[256], n;
    pg_pids(pids, 256, &n);
    for (int i = n - 1; i >= 0; i--) kill(pids[i], SIGCONT);
}

#define PSQL "\"$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql\""
#define LOCK_HOLDER "cg-outage-lock-holder"

/* Another session holds the member's advisory lock (the key pg.c locks members with) for
 * hold_s seconds, in the background; returns once the lock is held. */
static void pg_hold_member_lock(const char *member, int hold_s) {
    assert_int_equal(cp_sh("PGAPPNAME=" LOCK_HOLDER " " PSQL " -q -d '%s' -c \"BEGIN; SELECT "
                           "pg_advisory_xact_lock(hashtextextended('%s', 0)); SELECT pg_sleep(%d); "
                           "COMMIT;\" >/dev/null 2>&1 &", pg_dsn, member, hold_s), 0);
    for (int i = 0; i < 200; i++) {
        if (cp_sh(PSQL " -qtA -d '%s' -c \"SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                  " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = '" LOCK_HOLDER
                  "'\" | grep -q 1", pg_dsn) == 0)
            return;
        usleep(25000);
    }
    fail_msg("the lock holder did not get the lock");
}

/* ---- money calls ---- */

static void tally(int ph, int group, int status, long ms) {
    phase_stats *s = &stats[ph];
    if (status >= 200 && status < 300) {
        atomic_fetch_add(&s->ok[group], 1);
        atomic_max(&s->ms_max_ok[group], ms);
        long long none = 0;
        atomic_compare_exchange_strong(&s->first_ok_at_ms, &none, cp_now_ms());
    } else if (status == 503) {
        atomic_fetch_add(&s->unavailable[group], 1);
        atomic_max(&s->ms_max_503[group], ms);
    } else if (status >= 500) {
        atomic_fetch_add(&s->server_error[group], 1);
    } else if (status < 0) {
        atomic_fetch_add(&s->none[group], 1);
    } else {
        atomic_fetch_add(&s->other[group], 1);
    }
}

/* The first answers other than 2xx of each phase and status, quoted in the report. */
#define NOTES_PER_KIND 2
static pthread_mutex_t notes_mu = PTHREAD_MUTEX_INITIALIZER;
static char notes[64][340];
static int notes_count, notes_kind[PH_COUNT][7];
static int64_t started_at_ms;

/* kinds: 503 fast, 503 slower than a second, other 5xx, no answer, 4xx, 3xx */
static void note(int ph, int status, const char *body, long ms) {
    int kind = status == 503 ? (ms > 1000) : status >= 500 ? 2 : status < 0 ? 3 : status >= 400 ? 4 : status >= 300 ? 5 : 6;
    if (kind == 6) return;
    pthread_mutex_lock(&notes_mu);
    if (notes_kind[ph][kind] < NOTES_PER_KIND && notes_count < 64) {
        notes_kind[ph][kind]++;
        snprintf(notes[notes_count++], sizeof notes[0], "%s, at %.1f s, %d after %ld ms: %.240s", phase_name[ph],
                 (double)(cp_now_ms() - started_at_ms) / 1000, status, ms, body ? body : "");
    }
    pthread_mutex_unlock(&notes_mu);
}

/* The loaders' sockets have timeouts (SO_RCVTIMEO), so a signal arriving while one waits —
 * and the test's fork/exec of scripts and kill(SIGSTOP/SIGCONT) of PostgreSQL made recv fail
 * with EINTR now and then — is never restarted by the kernel: the client retries itself. */
static bool send_all(int fd, const char *buf, size_t bytes) {
    while (bytes) {
        ssize_t n = send(fd, buf, bytes, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        buf += n;
        bytes -= (size_t)n;
    }
    return true;
}

/* cp_http, saying why when there is no answer (connect refused, cut, timed out). */
static cp_resp post(const char *path, const char *key, const char *body, char *why, size_t why_bytes) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nIdempotency-Key: %s\r\nContent-Length: %zu\r\n\r\n%s",
                     path, env.service, key, strlen(body), body);
    assert(n > 0 && (size_t)n < sizeof req);
    cp_resp r = {.status = -1};
    int fd = cp_connect(port, CLIENT_TIMEOUT_MS);
    if (fd < 0 && errno == EINTR) fd = cp_connect(port, CLIENT_TIMEOUT_MS); /* nothing sent yet */
    if (fd < 0) {
        snprintf(why, why_bytes, "connect: %s", strerror(errno));
        return r;
    }
    if (!send_all(fd, req, (size_t)n)) snprintf(why, why_bytes, "send: %s", strerror(errno));
    shutdown(fd, SHUT_WR);
    /* read it all first, so a cut answer can be quoted */
    static _Thread_local char raw[65536];
    size_t len = 0;
    ssize_t got = 0;
    int recv_errno = 0;
    while (len < sizeof raw - 1) {
        got = recv(fd, raw + len, sizeof raw - 1 - len, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
    }
    if (got < 0) recv_errno = errno;
    raw[len] = 0;
    close(fd);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0) { /* replay the bytes through the parser */
        tc_write_all(pair[1], raw, len);
        close(pair[1]);
        r = cp_read_answer(pair[0]);
        close(pair[0]);
    }
    if (r.status < 0 && !why[0])
        snprintf(why, why_bytes, "no complete answer: %zu bytes, recv %zd (%s): %.60s", len, got,
                 recv_errno ? strerror(recv_errno) : "closed", raw);
    return r;
}

/* One attempt of a money call with its key; counted in the phase it started in. */
static cp_resp money_call(loader *l, const char *path, const char *key, const char *body) {
    char why[128] = "";
    int ph = atomic_load(&phase);
    int64_t t0 = cp_now_ms();
    cp_resp r = post(path, key, body, why, sizeof why);
    long ms = (long)(cp_now_ms() - t0);
    tally(ph, l->index == LOCKED_MEMBER ? 0 : 1, r.status, ms);
    if (r.status >= 200 && r.status < 300 && atomic_load(&phase) == ph)
        atomic_fetch_add(&stats[ph].ok_within[l->index == LOCKED_MEMBER ? 0 : 1], 1);
    note(ph, r.status, r.body ? r.body : why, ms);
    return r;
}

/* Charges l's next key until it is acknowledged (or the load stops). */
static bool charge(loader *l, bool until_done) {
    char key[48], body[128];
    snprintf(key, sizeof key, "c-%d-%d", l->index, l->count);
    snprintf(body, sizeof body, "{\"member_id\":\"%s\",\"model\":\"midjourney\"}", l->member);
    while (until_done || atomic_load(&load_on)) {
        l->charge_in_doubt = true; /* answered or not, it may have been applied */
        cp_resp r = money_call(l, "/v1/charges", key, body);
        bool done = r.status == 201;
        if (done) {
            json_t *j = json_loads(r.body, 0, NULL);
            snprintf(l->ids[l->count], sizeof l->ids[0], "%s",
                     json_string_value(json_object_get(j, "charge_id")));
            l->price = json_integer_value(json_object_get(j, "credits"));
            json_decref(j);
            l->count++;
            l->charge_in_doubt = false;
        }
        cp_resp_free(&r);
        if (done) return true;
        usleep(RETRY_PAUSE_US);
    }
    return false;
}

/* Captures l's last charge until acknowledged (or the load stops). */
static bool capture(loader *l, bool until_done) {
    assert(l->captured == l->count - 1); /* plain assert: loader threads run this */
    char key[48], path[128], body[96];
    snprintf(key, sizeof key, "k-%d-%d", l->index, l->captured);
    snprintf(path, sizeof path, "/v1/charges/%s/capture", l->ids[l->captured]);
    snprintf(body, sizeof body, "{\"member_id\":\"%s\"}", l->member);
    while (until_done || atomic_load(&load_on)) {
        cp_resp r = money_call(l, path, key, body);
        bool done = r.status == 200;
        cp_resp_free(&r);
        if (done) {
            l->captured++;
            return true;
        }
        usleep(RETRY_PAUSE_US);
    }
    return false;
}

static void *loader_main(void *arg) {
    loader *l = arg;
    while (atomic_load(&load_on) && l->count < CALLS_MAX) {
        if (l->captured < l->count) capture(l, false);
        else charge(l, false);
    }
    return NULL;
}

/* ---- probes from the main thread ---- */

typedef struct probe_stats {
    long healthz_ms_max, quote_ms_max, readyz_ms_max;
    int healthz_bad, quote_bad, readyz_200, readyz_503, readyz_other, rounds;
} probe_stats;

static long probe(const char *method, const char *path, const char *auth, const char *body, int *status) {
    int64_t t0 = cp_now_ms();
    cp_resp r = cp_http(port, method, path, auth, NULL, body, CLIENT_TIMEOUT_MS);
    *status = r.status;
    cp_resp_free(&r);
    return (long)(cp_now_ms() - t0);
}

/* Probes for ms: /healthz, an inline quote (no ledger) and /readyz, each in turn. */
static probe_stats probe_for(int ms) {
    static const char quote[] = "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":"
                                "\"2025-11-25\"},\"model\":\"Nanobanana Pro\",\"variant\":\"2k\"}";
    probe_stats p = {0};
    int64_t until = cp_now_ms() + ms;
    while (cp_now_ms() < until) {
        int st;
        long t = probe("GET", "/healthz", NULL, NULL, &st);
        if (t > p.healthz_ms_max) p.healthz_ms_max = t;
        p.healthz_bad += st != 200;
        t = probe("POST", "/v1/quote", env.service, quote, &st);
        if (t > p.quote_ms_max) p.quote_ms_max = t;
        p.quote_bad += st != 200;
        t = probe("GET", "/readyz", NULL, NULL, &st);
        if (t > p.readyz_ms_max) p.readyz_ms_max = t;
        if (st == 200) p.readyz_200++;
        else if (st == 503) p.readyz_503++;
        else p.readyz_other++;
        p.rounds++;
        usleep(50000);
    }
    return p;
}

static void print_phase(int ph, const probe_stats *p) {
    phase_stats *s = &stats[ph];
    printf("  %-9s money calls: %ld 2xx (%ld answered within the phase), %ld 503 (slowest %ld ms), %ld 500, %ld none, %ld other;"
           " locked member: %ld 2xx, %ld 503 (slowest %ld ms)", phase_name[ph], atomic_load(&s->ok[1]),
           atomic_load(&s->ok_within[0]) + atomic_load(&s->ok_within[1]),
           atomic_load(&s->unavailable[1]), atomic_load(&s->ms_max_503[1]), atomic_load(&s->server_error[1]),
           atomic_load(&s->none[1]), atomic_load(&s->other[1]), atomic_load(&s->ok[0]),
           atomic_load(&s->unavailable[0]), atomic_load(&s->ms_max_503[0]));
    if (p)
        printf("\n            probes x%d: /healthz slowest %ld ms (%d not 200), /v1/quote slowest %ld ms "
               "(%d not 200), /readyz %d x 503, %d x 200, slowest %ld ms", p->rounds, p->healthz_ms_max,
               p->healthz_bad, p->quote_ms_max, p->quote_bad, p->readyz_503, p->readyz_200, p->readyz_ms_max);
    printf("\n");
}

/* Waits (while probing /readyz) until a charge started in phase ph is acknowledged; returns
 * the milliseconds from `since`. */
static long wait_recovered(int ph, int64_t since) {
    while (!atomic_load(&stats[ph].first_ok_at_ms) && cp_now_ms() - since < 4 * RECOVER_MS_MAX)
        usleep(20000);
    long long at = atomic_load(&stats[ph].first_ok_at_ms);
    return at ? (long)(at - since) : -1;
}

/* No 500, no hang, nothing but 2xx and 503 in any phase. */
static void assert_clean_answers(void) {
    for (int ph = 0; ph < PH_COUNT; ph++)
        for (int g = 0; g < 2; g++) {
            assert_int_equal(atomic_load(&stats[ph].server_error[g]), 0);
            assert_int_equal(atomic_load(&stats[ph].none[g]), 0);
            assert_int_equal(atomic_load(&stats[ph].other[g]), 0);
        }
}

/* ---- after the load ---- */

static json_t *get_json(const char *path) {
    cp_resp r = cp_http(port, "GET", path, env.service, NULL, NULL, CLIENT_TIMEOUT_MS);
    if (r.status != 200) fail_msg("GET %s answered %d: %s", path, r.status, r.body ? r.body : "");
    json_t *j = json_loads(r.body, 0, NULL);
    cp_resp_free(&r);
    assert_non_null(j);
    return j;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The member's charges in the ledger are exactly the acknowledged ones, each once, each
 * captured; nothing is held. Returns the charges checked. */
static int check_member(loader *l) {
    char **listed = calloc(CALLS_MAX + 1, sizeof *listed);
    char **acked = calloc((size_t)l->count + 1, sizeof *acked);
    assert_true(listed && acked);
    int n = 0;
    char path[256], before[128] = "";
    for (;;) {
        snprintf(path, sizeof path, "/v1/members/%s/charges?limit=100%s%s", l->member,
                 before[0] ? "&before=" : "", before);
        json_t *page = get_json(path);
        json_t *arr = json_object_get(page, "charges"), *c;
        size_t i;
        json_array_foreach(arr, i, c) {
            assert_true(n < CALLS_MAX);
            if (strcmp(json_string_value(json_object_get(c, "status")), "captured"))
                fail_msg("%s: charge %s is %s, acknowledged as captured", l->member,
                         json_string_value(json_object_get(c, "charge_id")),
                         json_string_value(json_object_get(c, "status")));
            listed[n++] = strdup(json_string_value(json_object_get(c, "charge_id")));
        }
        json_t *next = json_object_get(page, "next");
        snprintf(before, sizeof before, "%s", json_is_string(next) ? json_string_value(next) : "");
        json_decref(page);
        if (!before[0]) break;
    }
    if (n != l->count) fail_msg("%s: %d charges in the ledger, %d acknowledged", l->member, n, l->count);
    for (int i = 0; i < l->count; i++) acked[i] = l->ids[i];
    qsort(listed, (size_t)n, sizeof *listed, cmp_str);
    qsort(acked, (size_t)l->count, sizeof *acked, cmp_str);
    for (int i = 0; i < n; i++) {
        if (i > 0 && !strcmp(listed[i], listed[i - 1])) fail_msg("%s: charge %s twice", l->member, listed[i]);
        if (strcmp(listed[i], acked[i])) fail_msg("%s: ledger has %s, acknowledged %s", l->member, listed[i], acked[i]);
    }
    snprintf(path, sizeof path, "/v1/members/%s/balance", l->member);
    json_t *bal = get_json(path);
    int64_t held = json_integer_value(json_object_get(bal, "held"));
    int64_t available = json_integer_value(json_object_get(bal, "available"));
    json_decref(bal);
    if (held != 0 || available != 1000000000 - l->price * l->count)
        fail_msg("%s: available %lld held %lld; %d captures of %lld acknowledged", l->member,
                 (long long)available, (long long)held, l->count, (long long)l->price);
    for (int i = 0; i < n; i++) free(listed[i]);
    free(listed);
    free(acked);
    return n;
}

static void setup_member(const char *member) {
    char path[96];
    snprintf(path, sizeof path, "/v1/members/%s", member);
    cp_resp r = cp_http(port, "PUT", path, env.service, NULL,
                        "{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2026-01-03\"}", CLIENT_TIMEOUT_MS);
    assert_int_equal(r.status, 200);
    cp_resp_free(&r);
    snprintf(path, sizeof path, "/v1/members/%s/grants", member);
    r = cp_http(port, "POST", path, env.admin, NULL, "{\"credits\":1000000000,\"source\":\"purchase\"}",
                CLIENT_TIMEOUT_MS);
    assert_int_equal(r.status, 201);
    cp_resp_free(&r);
}

static void enter(int ph) { atomic_store(&phase, ph); }

static void test_dead_and_hung_postgres_fail_fast_and_recover(void **state) {
    (void)state;
    assert_int_equal(cp_env_init(&env), 0);
    assert_int_equal(pg_start(), 0);
    snprintf(env.db, sizeof env.db, "%s", pg_dsn);
    const char *flags[] = {"--threads", SERVER_THREADS, NULL};
    server = cp_start(&env, flags, NULL);
    assert_true(server.pid > 0);
    port = server.port;
    static loader ls[LOADERS];
    static char ids[LOADERS][CALLS_MAX][40];
    pthread_t th[LOADERS];
    for (int i = 0; i < LOADERS; i++) {
        ls[i] = (loader){.index = i, .ids = ids[i]};
        snprintf(ls[i].member, sizeof ls[i].member, "pg-%d", i);
        setup_member(ls[i].member);
    }
    atomic_store(&load_on, true);
    started_at_ms = cp_now_ms();
    for (int i = 0; i < LOADERS; i++) pthread_create(&th[i], NULL, loader_main, &ls[i]);
    usleep(1500000);

    /* 1. dead: an immediate stop, as a crash or a lost host */
    pg_do("halt");
    enter(PH_DEAD);
    probe_stats dead = probe_for(3000);
    pg_do("resume");
    int64_t back_at = cp_now_ms();
    enter(PH_RESTARTED);
    long restart_ms = wait_recovered(PH_RESTARTED, back_at);
    probe_stats restarted = probe_for(1000);

    /* 2. hung: every PostgreSQL process stopped; TCP still accepts */
    pg_freeze();
    enter(PH_HUNG);
    probe_stats hung = probe_for(5000);
    pg_thaw();
    back_at = cp_now_ms();
    enter(PH_THAWED);
    long thaw_ms = wait_recovered(PH_THAWED, back_at);
    probe_stats thawed = probe_for(1000);

    /* 3. one member's lock held by another session */
    pg_hold_member_lock(ls[LOCKED_MEMBER].member, 4);
    enter(PH_LOCKED);
    probe_stats locked = probe_for(2500);
    enter(PH_END);
    atomic_store(&load_on, false);
    for (int i = 0; i < LOADERS; i++) pthread_join(th[i], NULL);
    /* every call cut short by the stop is retried with its key until answered */
    for (int i = 0; i < LOADERS; i++) {
        if (ls[i].captured < ls[i].count) capture(&ls[i], true);
        if (ls[i].charge_in_doubt && charge(&ls[i], true)) capture(&ls[i], true);
    }

    printf("  PostgreSQL halted (pg_ctl stop -m immediate) for 3 s, restarted: first charge "
           "acknowledged %ld ms after it was back\n", restart_ms);
    printf("  PostgreSQL hung (SIGSTOP, every process) for 5 s, thawed: first charge acknowledged "
           "%ld ms after\n", thaw_ms);
    print_phase(PH_WARM, NULL);
    print_phase(PH_DEAD, &dead);
    print_phase(PH_RESTARTED, &restarted);
    print_phase(PH_HUNG, &hung);
    print_phase(PH_THAWED, &thawed);
    print_phase(PH_LOCKED, &locked);
    print_phase(PH_END, NULL);
    for (int i = 0; i < notes_count; i++) printf("  answer: %s\n", notes[i]);

    int checked = 0;
    for (int i = 0; i < LOADERS; i++) checked += check_member(&ls[i]);
    int status = cp_stop(&server, SIGTERM, 30000);
    int vrc = cp_sh("'%s/creditgate' ledger verify --db '%s' >'%s/verify.out' 2>&1", env.bin_dir, pg_dsn, env.dir);
    if (vrc) cp_sh("cat '%s/verify.out'", env.dir);
    printf("  %d acknowledged charges, each in the ledger once and captured, nothing else; "
           "SIGTERM exit %d; ledger verify %s\n", checked, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
           vrc ? "FAILED" : "clean");

    assert_clean_answers();
    assert_true(atomic_load(&stats[PH_WARM].ok[1]) > 0);
    /* dead: refused fast, nothing acknowledged, the rest of the server unaffected */
    assert_int_equal(atomic_load(&stats[PH_DEAD].ok_within[0]) + atomic_load(&stats[PH_DEAD].ok_within[1]), 0);
    assert_true(atomic_load(&stats[PH_DEAD].unavailable[1]) > 0);
    assert_true(atomic_load(&stats[PH_DEAD].ms_max_503[0]) < DEAD_503_MS_MAX);
    assert_true(atomic_load(&stats[PH_DEAD].ms_max_503[1]) < DEAD_503_MS_MAX);
    assert_true(dead.rounds > 0 && dead.healthz_bad == 0 && dead.quote_bad == 0);
    assert_true(dead.healthz_ms_max < PROBE_MS_MAX && dead.quote_ms_max < PROBE_MS_MAX);
    assert_true(dead.readyz_503 > 0 && dead.readyz_200 == 0 && dead.readyz_other == 0);
    assert_true(restart_ms >= 0 && restart_ms < RECOVER_MS_MAX);
    assert_true(restarted.readyz_200 > 0);
    /* hung: bounded refusals, nothing acknowledged */
    assert_int_equal(atomic_load(&stats[PH_HUNG].ok_within[0]) + atomic_load(&stats[PH_HUNG].ok_within[1]), 0);
    assert_true(atomic_load(&stats[PH_HUNG].unavailable[1]) > 0);
    assert_true(atomic_load(&stats[PH_HUNG].ms_max_503[0]) < SLOW_503_MS_MAX);
    assert_true(atomic_load(&stats[PH_HUNG].ms_max_503[1]) < SLOW_503_MS_MAX);
    assert_true(hung.healthz_bad == 0 && hung.quote_bad == 0);
    assert_true(hung.healthz_ms_max < SLOW_503_MS_MAX && hung.quote_ms_max < SLOW_503_MS_MAX);
    assert_true(hung.readyz_503 > 0 && hung.readyz_other == 0);
    assert_true(thaw_ms >= 0 && thaw_ms < RECOVER_MS_MAX);
    assert_true(thawed.readyz_200 > 0);
    /* locked: that member refused within the lock timeout, the others served */
    assert_true(atomic_load(&stats[PH_LOCKED].unavailable[0]) > 0);
    assert_true(atomic_load(&stats[PH_LOCKED].ms_max_503[0]) < LOCK_503_MS_MAX);
    assert_true(atomic_load(&stats[PH_LOCKED].ok[1]) > 0);
    assert_true(locked.readyz_other == 0 && locked.readyz_200 > 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(vrc, 0);
    cp_env_free(&env);
}

static int teardown(void **state) {
    (void)state;
    cp_stop(&server, SIGKILL, 5000); /* after a failed assertion: no server left behind */
    if (pg_dir[0]) cp_sh("kill -CONT $(scripts/pg.sh pids '%s' 2>/dev/null) 2>/dev/null; scripts/pg.sh stop '%s'",
                         pg_dir, pg_dir);
    return 0;
}

int main(void) {
    if (!pg_installed()) {
        if (getenv("CG_PG_REQUIRED")) {
            printf("FAIL: PostgreSQL not installed\n");
            return 1;
        }
        printf("skip: PostgreSQL not installed (apt-get install postgresql)\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_dead_and_hung_postgres_fail_fast_and_recover, teardown),
    };
    return cmocka_run_group_tests_name("pg_outage", tests, NULL, NULL);
}
