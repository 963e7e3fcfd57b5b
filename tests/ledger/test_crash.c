/* test_crash.c — "a call that returned success survives kill -9": a child process charges and
 * captures from many threads and reports every acknowledged call on a pipe; the parent kills
 * it with SIGKILL mid-stream, reopens the database and finds every acknowledged charge in its
 * acknowledged state, and `verify` clean. (Power loss is the fsync's job: see store.h.) */
#include "ledger_fixture.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#define CRASH_THREADS 8
#define CRASH_ACKS_MIN 200 /* acknowledged calls seen before the kill */
#define CRASH_ACKS_MAX 100000

typedef struct ack {
    char charge_id[CG_OBJECT_ID_BYTES_MAX];
    char member_id[16];
    int captured; /* 0: charge acknowledged, 1: capture acknowledged */
} ack;

typedef struct child_worker {
    cg_ledger *ledger;
    int fd;
    int thread;
} child_worker;

static pthread_mutex_t pipe_mu = PTHREAD_MUTEX_INITIALIZER;

static void report(int fd, const ack *a) {
    pthread_mutex_lock(&pipe_mu);
    if (write(fd, a, sizeof *a) != (ssize_t)sizeof *a) _exit(3);
    pthread_mutex_unlock(&pipe_mu);
}

static void *child_main(void *arg) {
    child_worker *w = arg;
    cg_charge *c = malloc(sizeof *c);
    for (int i = 0;; i++) {
        ack a = {0};
        snprintf(a.member_id, sizeof a.member_id, "m%d", i % 4);
        char key[64];
        snprintf(key, sizeof key, "t%d-%d", w->thread, i);
        cg_charge_input in = {.member_id = a.member_id, .idempotency_key = key,
                              .model = "midjourney"};
        cg_err err;
        if (cg_ledger_charge(w->ledger, &in, c, NULL, &err)) _exit(4);
        snprintf(a.charge_id, sizeof a.charge_id, "%s", c->charge_id);
        report(w->fd, &a);
        snprintf(key, sizeof key, "t%d-%d-cap", w->thread, i);
        cg_settle_input s = {.member_id = a.member_id, .charge_id = a.charge_id,
                             .idempotency_key = key, .credits = -1};
        if (cg_ledger_capture(w->ledger, &s, c, NULL, &err)) _exit(5);
        a.captured = 1;
        report(w->fd, &a);
    }
    return NULL;
}

static void run_child(const char *dsn, int fd) {
    cg_ledger_config cfg;
    cg_ledger_config_default(&cfg);
    cfg.engine = &fx_engine;
    cg_ledger *l = NULL;
    cg_err err;
    if (cg_ledger_open_dsn(dsn, &cfg, &l, &err)) _exit(2);
    child_worker w[CRASH_THREADS];
    pthread_t th[CRASH_THREADS];
    for (int i = 0; i < CRASH_THREADS; i++) {
        w[i] = (child_worker){.ledger = l, .fd = fd, .thread = i};
        pthread_create(&th[i], NULL, child_main, &w[i]);
    }
    for (;;) pause(); /* until SIGKILL */
}

static void test_acknowledged_calls_survive_kill_9(void **state) {
    cg_ledger *l = *state;
    for (int m = 0; m < 4; m++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", m);
        put_member(l, id, "free", "monthly", T0 - DAY_US, 0);
        grant_full(l, id, CG_CREDITS_MAX, CG_CATEGORY_PAID, -1, 0, 0);
    }
    cg_ledger_close(l);
    *state = NULL;
    char dsn[600];
    snprintf(dsn, sizeof dsn, "sqlite:%s", fx_path);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        run_child(dsn, fds[1]);
    }
    close(fds[1]);
    ack *acks = malloc(sizeof(ack) * CRASH_ACKS_MAX);
    int n = 0;
    while (n < CRASH_ACKS_MIN && read(fds[0], &acks[n], sizeof acks[n]) == sizeof acks[n]) n++;
    kill(pid, SIGKILL);
    while (n < CRASH_ACKS_MAX && read(fds[0], &acks[n], sizeof acks[n]) == sizeof acks[n]) n++;
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    close(fds[0]);

    cg_ledger_config cfg;
    fx_config(&cfg, true);
    cfg.clock_us = NULL; /* the child used the wall clock */
    cg_err err = {0};
    assert_cg_ok(cg_ledger_open_dsn(dsn, &cfg, &l, &err), err);
    *state = l;
    cg_charge *c = malloc(sizeof *c);
    for (int i = 0; i < n; i++) {
        assert_cg_ok(cg_ledger_charge_get(l, acks[i].member_id, acks[i].charge_id, c, &err), err);
        if (acks[i].captured) assert_int_equal(c->status, CG_CHARGE_CAPTURED);
    }
    free(c);
    free(acks);
    assert_verify_clean(l);
}

static int crash_teardown(void **state) {
    if (*state) cg_ledger_close(*state);
    fx_remove_files();
    return 0;
}

int main(void) {
    const char *dsn = getenv("CG_TEST_DB");
    if (dsn && strncmp(dsn, "sqlite:", 7) != 0) return 0; /* a server backend: its own test */
    if (getenv("CG_VALGRIND")) return 0; /* fork + SIGKILL under memcheck reports the child */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acknowledged_calls_survive_kill_9, fx_setup,
                                        crash_teardown),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
