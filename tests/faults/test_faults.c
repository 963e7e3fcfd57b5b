/* test_faults.c — storage faults under a real `creditgate serve`: disk full and I/O errors
 * while commits are in flight, injected by the LD_PRELOAD shim tests/faults/cgfault.c (built
 * here with $CC into $BUILD/faults/) and switched on and off through a control file.
 *
 * What must hold: a call that could not be made durable is answered 503 (never 2xx, never a
 * hang); nothing answered 2xx is missing afterwards; a call retried with its key after the
 * fault is applied exactly once; the server serves again once the fault clears (write faults:
 * at once; a failed fsync: after a restart, since what is on disk is then unknown); and
 * `creditgate ledger verify` passes on the database.
 *
 * After a failed fsync the server answers 503 (never 500) and /readyz says 503 while the ledger
 * refuses every call. CG_FAULT_ROUNDS sets the on/off rounds (default 4).
 *
 * The ledger appends each batch to a redo log (ledger.db-redo, fsynced per batch) and commits
 * the database file once a second: faults on every file hit the log first; faults on the WAL
 * alone hit that commit, which must neither lose an acknowledged call nor stop the server
 * (test_disk_full_on_the_wal_alone_recovers); a failed fsync of the WAL where a flush would
 * give the log up stops the shard and loses nothing
 * (test_failed_wal_fsync_at_log_restart_loses_nothing). */
#include "testlib.h"

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "crash/cgproc.h"

#define LOAD_THREADS 4
#define CHARGES_MAX 20000
#define TIMEOUT_MS 10000

typedef struct tally {
    atomic_long acked, answered_503, answered_500, answered_other, no_answer;
    atomic_long acked_faulty; /* 2xx for a request sent and answered while the fault was on */
} tally;

typedef struct loader {
    int thread;
    unsigned port;
    char (*ids)[40];
    char (*keys)[40];
    int count;
    int pending;       /* a key that got no 2xx yet: retried with the same key */
} loader;

static cp_env env;
static char ctl[600], shim[PATH_MAX];
static char env_preload[PATH_MAX + 16], env_match[64], env_ctl[700], env_asan[600];
static const char *fault_match = "ledger.db"; /* the files whose writes and syncs fail */
static const char *redo_mb;                   /* --ledger-redo-mb, when set */
static tally t;
static atomic_bool load_on;
static atomic_uint port_now;

/* Odd while a fault is switched on: a request sent and answered within one odd epoch could
 * not have been made durable (a commit already past its writes when the fault came on was
 * sent in the even epoch before). */
static atomic_int fault_epoch;

static void fault_set(const char *words) {
    bool on = *words != 0;
    /* The epoch is odd only while the file surely says "fault": it turns odd after the file is
     * written and even before the file is cleared. (Clearing first left a window — as long as
     * this thread stayed descheduled — where commits already succeeded in an odd epoch.) */
    if (!on && (atomic_load(&fault_epoch) & 1)) atomic_fetch_add(&fault_epoch, 1);
    FILE *f = fopen(ctl, "w");
    assert_non_null(f);
    fputs(words, f);
    fclose(f);
    if (on && !(atomic_load(&fault_epoch) & 1)) atomic_fetch_add(&fault_epoch, 1);
}

/* Injections logged so far on files whose path contains `in` ("" for any). */
static int faults_injected_in(const char *in) {
    char cmd[800];
    snprintf(cmd, sizeof cmd, "grep -c '^cgfault: [a-z0-9]* [^ ]*%s' '%s'", in, env.log);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = 0;
        pclose(p);
    }
    return n;
}

static int faults_injected(void) { return faults_injected_in(""); }

static int build_shim(void) {
    const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
    char rel[600];
    snprintf(rel, sizeof rel, "%s/faults/libcgfault.so", env.bin_dir);
    /* no sanitizer in the shim: it is preloaded ahead of the (maybe ASan) server */
    int rc = cp_sh("mkdir -p '%s/faults' && %s -O2 -shared -fPIC -o '%s' tests/faults/cgfault.c -ldl",
                   env.bin_dir, strcmp(cc, "clang") ? "cc" : cc, rel);
    if (rc || !realpath(rel, shim)) return -1; /* LD_PRELOAD wants an absolute path */
    return 0;
}

static cp_proc start_faulty(void) {
    snprintf(env_preload, sizeof env_preload, "LD_PRELOAD=%s", shim);
    snprintf(env_match, sizeof env_match, "CG_FAULT_MATCH=%s", fault_match);
    snprintf(env_ctl, sizeof env_ctl, "CG_FAULT_CTL=%s", ctl);
    /* an ASan server refuses a preloaded library ahead of its runtime unless told */
    const char *asan = getenv("ASAN_OPTIONS");
    snprintf(env_asan, sizeof env_asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    const char *envs[] = {env_preload, env_match, env_ctl, env_asan, NULL};
    const char *flags[] = {"--threads", "8", redo_mb ? "--ledger-redo-mb" : NULL, redo_mb, NULL};
    cp_proc p = cp_start(&env, flags, envs);
    assert_true(p.pid > 0);
    atomic_store(&port_now, p.port);
    return p;
}

static void count(int status) {
    if (status >= 200 && status < 300) atomic_fetch_add(&t.acked, 1);
    else if (status == 503) atomic_fetch_add(&t.answered_503, 1);
    else if (status == 500) atomic_fetch_add(&t.answered_500, 1);
    else if (status < 0) atomic_fetch_add(&t.no_answer, 1);
    else atomic_fetch_add(&t.answered_other, 1);
}

/* One charge attempt with the loader's pending key; a 201 records the charge id. */
static int charge_once(loader *l) {
    char extra[96], body[128];
    snprintf(extra, sizeof extra, "Idempotency-Key: %s\r\n", l->keys[l->count]);
    snprintf(body, sizeof body, "{\"member_id\":\"faulty-%d\",\"model\":\"midjourney\"}", l->thread);
    int epoch = atomic_load(&fault_epoch);
    cp_resp r = cp_http(atomic_load(&port_now), "POST", "/v1/charges", env.service, extra, body, TIMEOUT_MS);
    count(r.status);
    if ((epoch & 1) && epoch == atomic_load(&fault_epoch) && r.status >= 200 && r.status < 300)
        atomic_fetch_add(&t.acked_faulty, 1);
    if (r.status == 201) {
        json_t *j = json_loads(r.body, 0, NULL);
        snprintf(l->ids[l->count], sizeof l->ids[0], "%s", json_string_value(json_object_get(j, "charge_id")));
        json_decref(j);
        l->count++;
        l->pending = 0;
    } else if (r.status != 503 && r.status != 500 && r.status > 0) {
        fail_msg("charge answered %d: %s", r.status, r.body);
    }
    int status = r.status;
    cp_resp_free(&r);
    return status;
}

static void *load_main(void *arg) {
    loader *l = arg;
    for (int i = 0; atomic_load(&load_on) && l->count < CHARGES_MAX - 1; i++) {
        if (!l->pending) {
            snprintf(l->keys[l->count], sizeof l->keys[0], "f-%d-%d", l->thread, i);
            l->pending = 1;
        }
        if (charge_once(l) != 201) usleep(2000);
    }
    return NULL;
}

static void member_setup(unsigned port, int thread) {
    char path[96], body[96];
    snprintf(path, sizeof path, "/v1/members/faulty-%d", thread);
    cp_resp r = cp_http(port, "PUT", path, env.service, NULL,
                        "{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2026-01-03\"}", TIMEOUT_MS);
    assert_int_equal(r.status, 200);
    cp_resp_free(&r);
    snprintf(path, sizeof path, "/v1/members/faulty-%d/grants", thread);
    snprintf(body, sizeof body, "{\"credits\":1000000000,\"source\":\"purchase\"}");
    r = cp_http(port, "POST", path, env.admin, NULL, body, TIMEOUT_MS);
    assert_int_equal(r.status, 201);
    cp_resp_free(&r);
}

/* Every charge the loaders were told of is in the ledger once, each pending key now applies
 * exactly once, and nothing else holds credits. */
static int64_t check_after(unsigned port, loader *ls) {
    int64_t checked = 0;
    for (int i = 0; i < LOAD_THREADS; i++) {
        loader *l = &ls[i];
        l->port = port;
        if (l->pending) { /* retried after the fault: must now apply (or replay) once */
            atomic_store(&port_now, port);
            for (int tries = 0; tries < 50 && charge_once(l) != 201; tries++) usleep(50000);
            assert_int_equal(l->pending, 0);
        }
        char path[160];
        int64_t holds = 0;
        for (int c = 0; c < l->count; c++) {
            snprintf(path, sizeof path, "/v1/charges/%s?member_id=faulty-%d", l->ids[c], l->thread);
            cp_resp r = cp_http(port, "GET", path, env.service, NULL, NULL, TIMEOUT_MS);
            if (r.status != 200) fail_msg("acknowledged charge %s is missing (%d)", l->ids[c], r.status);
            cp_resp_free(&r);
            checked++;
        }
        if (l->count == 0) fail_msg("loader %d was never acknowledged", l->thread);
        /* the journal holds exactly the acknowledged charges: count distinct held charges */
        snprintf(path, sizeof path, "/v1/members/faulty-%d/balance", l->thread);
        cp_resp r = cp_http(port, "GET", path, env.service, NULL, NULL, TIMEOUT_MS);
        assert_int_equal(r.status, 200);
        json_t *j = json_loads(r.body, 0, NULL);
        holds = json_integer_value(json_object_get(j, "held"));
        json_decref(j);
        cp_resp_free(&r);
        /* midjourney costs the same every time for this member: held = count × price */
        snprintf(path, sizeof path, "/v1/charges/%s?member_id=faulty-%d", l->ids[0], l->thread);
        r = cp_http(port, "GET", path, env.service, NULL, NULL, TIMEOUT_MS);
        j = json_loads(r.body, 0, NULL);
        int64_t price = json_integer_value(json_object_get(j, "credits"));
        json_decref(j);
        cp_resp_free(&r);
        if (holds != price * l->count)
            fail_msg("faulty-%d holds %lld credits; %d acknowledged charges of %lld make %lld", l->thread,
                     (long long)holds, l->count, (long long)price, (long long)(price * l->count));
    }
    return checked;
}

static void verify_clean(void) {
    int rc = cp_sh("'%s/creditgate' ledger verify --db '%s' >'%s/verify.out' 2>&1", env.bin_dir, env.db, env.dir);
    if (rc) cp_sh("cat '%s/verify.out'", env.dir);
    assert_int_equal(rc, 0);
}

static void run_load(loader *ls, pthread_t *th) {
    static char ids[LOAD_THREADS][CHARGES_MAX][40], keys[LOAD_THREADS][CHARGES_MAX][40];
    atomic_store(&load_on, true);
    for (int i = 0; i < LOAD_THREADS; i++) {
        memset(&ls[i], 0, sizeof ls[i]);
        ls[i].thread = i;
        ls[i].ids = ids[i];
        ls[i].keys = keys[i];
        pthread_create(&th[i], NULL, load_main, &ls[i]);
    }
}

static void stop_load(pthread_t *th) {
    atomic_store(&load_on, false);
    for (int i = 0; i < LOAD_THREADS; i++) pthread_join(th[i], NULL);
}

static void fresh_env(void) {
    assert_int_equal(cp_env_init(&env), 0);
    assert_int_equal(build_shim(), 0);
    snprintf(ctl, sizeof ctl, "%s/fault.ctl", env.dir);
    fault_set("");
    memset(&t, 0, sizeof t);
}

/* A faulty server with LOAD_THREADS members, charged by LOAD_THREADS loaders from now on. */
static cp_proc start_loaded(loader *ls, pthread_t *th) {
    cp_proc p = start_faulty();
    for (int i = 0; i < LOAD_THREADS; i++) member_setup(p.port, i);
    run_load(ls, th);
    return p;
}

/* `rounds` times: 300 ms clear, then `words` for on_us. */
static void fault_windows(const char *words, int rounds, useconds_t on_us) {
    for (int round = 0; round < rounds; round++) {
        usleep(300000);
        fault_set(words);
        usleep(on_us);
        fault_set("");
    }
}

/* Disk full (or EIO) on every write to the database files, switched on and off under load. */
static void write_faults(const char *words) {
    fresh_env();
    int rounds = getenv("CG_FAULT_ROUNDS") ? atoi(getenv("CG_FAULT_ROUNDS")) : 4;
    static loader ls[LOAD_THREADS];
    pthread_t th[LOAD_THREADS];
    cp_proc p = start_loaded(ls, th);
    fault_windows(words, rounds, 350000);
    long acked_faulty = atomic_load(&t.acked_faulty);
    usleep(300000);
    long acked_after = atomic_load(&t.acked);
    usleep(300000);
    bool recovered = atomic_load(&t.acked) > acked_after;
    stop_load(th);
    int injected = faults_injected(), injected_log = faults_injected_in("-redo");
    int64_t checked = check_after(p.port, ls);
    int status = cp_stop(&p, SIGTERM, 30000);
    verify_clean();
    printf("  %s: %d rounds, %d faults injected; answers: %ld 2xx (%ld while faulty), %ld 503, "
           "%ld 500, %ld none; served again after clearing: %s; %lld acknowledged charges read back, "
           "verify clean\n", words, rounds, injected, (long)atomic_load(&t.acked), acked_faulty,
           (long)atomic_load(&t.answered_503), (long)atomic_load(&t.answered_500),
           (long)atomic_load(&t.no_answer), recovered ? "yes" : "NO", (long long)checked);
    assert_true(injected > 0);
    assert_true(injected_log > 0); /* the redo log is what a batch writes */
    assert_true(atomic_load(&t.answered_503) > 0);
    assert_int_equal(atomic_load(&t.answered_500), 0);
    assert_int_equal(atomic_load(&t.no_answer), 0);
    assert_int_equal(atomic_load(&t.answered_other), 0);
    assert_int_equal(acked_faulty, 0); /* nothing acknowledged while no write could land */
    assert_true(recovered);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cp_env_free(&env);
}

static void test_disk_full_answers_503_and_recovers(void **s) { (void)s; write_faults("write=ENOSPC"); }
static void test_write_eio_answers_503_and_recovers(void **s) { (void)s; write_faults("write=EIO"); }

static int ready_status(unsigned port) {
    cp_resp r = cp_http(port, "GET", "/readyz", NULL, NULL, NULL, TIMEOUT_MS);
    int status = r.status;
    cp_resp_free(&r);
    return status;
}

/* A failed fsync: the ledger refuses everything after it (what is on disk is unknown), a
 * restart on the same file recovers, and retried keys apply exactly once. */
static void test_failed_fsync_refuses_until_restart_and_loses_nothing(void **s) {
    (void)s;
    fresh_env();
    static loader ls[LOAD_THREADS];
    pthread_t th[LOAD_THREADS];
    cp_proc p = start_loaded(ls, th);
    fault_windows("fsync=EIO", 1, 300000);
    long acked_mid = atomic_load(&t.acked);
    usleep(300000);
    long acked_after_fault = atomic_load(&t.acked) - acked_mid; /* must be 0: poisoned */
    int ready = ready_status(p.port);
    stop_load(th);
    long answered_500 = atomic_load(&t.answered_500), answered_503 = atomic_load(&t.answered_503);
    int status = cp_stop(&p, SIGTERM, 30000);
    int injected = faults_injected(), injected_log = faults_injected_in("-redo");
    p = start_faulty(); /* same database, no fault */
    int64_t checked = check_after(p.port, ls);
    cp_stop(&p, SIGTERM, 30000);
    verify_clean();
    printf("  fsync=EIO: %d faults injected; then %ld 2xx before restart, answers 503: %ld, "
           "500: %ld; /readyz while refusing: %d; after restart %lld acknowledged charges read "
           "back, pending keys applied once, verify clean\n", injected, acked_after_fault,
           answered_503, answered_500, ready, (long long)checked);
    assert_true(injected > 0);
    assert_true(injected_log > 0); /* the fsync that failed is the redo log's */
    assert_int_equal(acked_after_fault, 0);
    assert_true(answered_500 + answered_503 > 0);
    assert_int_equal(atomic_load(&t.no_answer), 0);
    assert_true(status != -1); /* it stopped on SIGTERM */
    assert_int_equal(answered_500, 0); /* issue 7: 503 for what could not be made durable */
    assert_int_equal(ready, 503);      /* a refusing ledger is not ready */
    cp_env_free(&env);
}

/* Disk full on the WAL alone, for longer than the ledger's flush interval (1 s): batches still
 * reach the redo log and are acknowledged, the flush into the file fails and is rolled back,
 * and the next batches — refused (503) while the WAL stays full — replay the log first. Once it
 * clears the server serves again, without a restart, and every acknowledged charge is there. */
static void test_disk_full_on_the_wal_alone_recovers(void **s) {
    (void)s;
    fault_match = "ledger.db-wal";
    fresh_env();
    static loader ls[LOAD_THREADS];
    pthread_t th[LOAD_THREADS];
    cp_proc p = start_loaded(ls, th);
    fault_windows("write=ENOSPC", 2, 2500000);
    usleep(300000);
    long acked_after = atomic_load(&t.acked);
    usleep(500000);
    bool recovered = atomic_load(&t.acked) > acked_after;
    stop_load(th);
    int injected = faults_injected_in("-wal");
    int64_t checked = check_after(p.port, ls);
    int status = cp_stop(&p, SIGTERM, 30000);
    verify_clean();
    fault_match = "ledger.db";
    printf("  write=ENOSPC on the WAL: %d faults injected; answers: %ld 2xx, %ld 503, %ld 500, "
           "%ld none; served again after clearing: %s; %lld acknowledged charges read back, "
           "verify clean\n", injected, (long)atomic_load(&t.acked),
           (long)atomic_load(&t.answered_503), (long)atomic_load(&t.answered_500),
           (long)atomic_load(&t.no_answer), recovered ? "yes" : "NO", (long long)checked);
    assert_true(injected > 0); /* a flush met the full disk */
    assert_true(atomic_load(&t.answered_503) > 0);
    assert_int_equal(atomic_load(&t.answered_500), 0);
    assert_int_equal(atomic_load(&t.no_answer), 0);
    assert_int_equal(atomic_load(&t.answered_other), 0);
    assert_true(recovered);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cp_env_free(&env);
}

/* A failed fsync of the WAL when a flush would restart the redo log (past --ledger-redo-mb,
 * 1 MiB here: the first restart comes within seconds). The restart is the only moment the log
 * is given up for the file, so the log must be kept: the shard stops and refuses (503, never
 * 500; /readyz 503) saying so, the other shard serves on, and a restart replays the log —
 * every acknowledged charge is there once, each pending key applies once, verify is clean. */
static void test_failed_wal_fsync_at_log_restart_loses_nothing(void **s) {
    (void)s;
    fault_match = "ledger.db-wal"; /* shard 0's WAL; its redo log (ledger.db-redo) syncs */
    redo_mb = "1";
    fresh_env();
    static loader ls[LOAD_THREADS];
    pthread_t th[LOAD_THREADS];
    cp_proc p = start_loaded(ls, th);
    fault_set("fsync=EIO");
    for (int i = 0; i < 1200 && atomic_load(&t.answered_503) == 0; i++) usleep(100000);
    int ready = ready_status(p.port);
    /* what a refused call is told: members no one created, so a charge on the serving shard
     * is a 404 that changes nothing, and one on the stopped shard is refused */
    char said[512] = "";
    for (int i = 0; i < 32 && !said[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"member_id\":\"probe-%d\",\"model\":\"midjourney\"}", i);
        cp_resp r = cp_http(p.port, "POST", "/v1/charges", env.service, NULL, body, TIMEOUT_MS);
        if (r.status == 503 && r.body) snprintf(said, sizeof said, "%s", r.body);
        cp_resp_free(&r);
    }
    stop_load(th);
    long acked = atomic_load(&t.acked), answered_503 = atomic_load(&t.answered_503);
    int injected_wal = faults_injected_in("-wal");
    cp_stop(&p, SIGTERM, 30000);
    fault_set("");
    redo_mb = NULL;
    p = start_faulty(); /* same files, no fault: the log replays */
    int64_t checked = check_after(p.port, ls);
    int status = cp_stop(&p, SIGTERM, 30000);
    verify_clean();
    fault_match = "ledger.db";
    printf("  fsync=EIO on the WAL at the log's restart: %d faults injected; answers: %ld 2xx, "
           "%ld 503, %ld 500, %ld none; /readyz after: %d; refusal: %.160s; after restart %lld "
           "acknowledged charges read back, pending keys applied once, verify clean\n",
           injected_wal, acked, answered_503, (long)atomic_load(&t.answered_500),
           (long)atomic_load(&t.no_answer), ready, said, (long long)checked);
    assert_true(injected_wal > 0);                   /* the WAL's fsync was tried, and failed */
    assert_true(answered_503 > 0);                   /* shard 0 then refused */
    assert_non_null(strstr(said, "write-ahead log")); /* and says why */
    assert_int_equal(ready, 503);
    assert_int_equal(atomic_load(&t.answered_500), 0);
    assert_int_equal(atomic_load(&t.no_answer), 0);
    assert_int_equal(atomic_load(&t.answered_other), 0);
    assert_true(acked > 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cp_env_free(&env);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disk_full_answers_503_and_recovers),
        cmocka_unit_test(test_write_eio_answers_503_and_recovers),
        cmocka_unit_test(test_failed_fsync_refuses_until_restart_and_loses_nothing),
        cmocka_unit_test(test_disk_full_on_the_wal_alone_recovers),
        cmocka_unit_test(test_failed_wal_fsync_at_log_restart_loses_nothing),
    };
    return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
