/* test_redo.c — the redo log of a SQLite ledger (src/store/redo.c, sqlite.c "Long
 * transactions"): calls acknowledged only in the log — the database files do not hold them
 * yet — come back after kill -9; a torn or corrupt record after them is ignored; a database
 * older than its log is refused with an error that says so; a second process that opened
 * the files while the owner lived takes the log over when the owner dies, replaying it before
 * its own first write; its writes while the owner lives wait for the owner's flushes (or
 * death) and survive with the owner's; and a batch that fails undoes the open transaction's
 * earlier batches too, which the next batch replays from the log. SQLite only. */
#include "ledger_fixture.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define REDO_MEMBERS 4
#define REDO_PAIRS 40 /* acknowledged charge+capture pairs, then one charge left held */
#define FLUSH_NEVER_MS 60000

typedef struct ack {
    char member_id[16];
    char charge_id[CG_OBJECT_ID_BYTES_MAX];
    int status; /* what the child was told */
} ack;

/* sweep_us 0: the fixture's (sweep at every batch, idle wake-ups every second). */
static int open_ledger_swept(const char *dsn, int flush_ms, int64_t sweep_us, cg_ledger **out,
                             cg_err *err) {
    cg_ledger_config c;
    fx_config(&c, true);
    c.clock_us = NULL; /* the child runs on the wall clock: so does every reopening */
    c.flush_interval_ms = flush_ms;
    if (sweep_us) c.sweep_interval_us = sweep_us;
    return cg_ledger_open_dsn(dsn, &c, out, err);
}

static int open_ledger(const char *dsn, int flush_ms, cg_ledger **out, cg_err *err) {
    return open_ledger_swept(dsn, flush_ms, 0, out, err);
}

/* A fresh database with REDO_MEMBERS members and grants, written to the files (closed). */
static void populate(char *dsn, size_t bytes) {
    fx_fresh_dsn(dsn, bytes);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(open_ledger(dsn, FLUSH_NEVER_MS, &l, &err), err);
    for (int m = 0; m < REDO_MEMBERS; m++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", m);
        put_member(l, id, "free", "monthly", T0 - DAY_US, 0);
        grant_full(l, id, 100000, CG_CATEGORY_PAID, -1, 0, 0);
    }
    cg_ledger_close(l); /* a clean close commits the files */
}

/* Child: opens the ledger (committing its files every flush_ms; sweeping every sweep_us, 0 the
 * fixture's), says so with one byte, waits for one byte back, then acknowledges REDO_PAIRS
 * pairs and one held charge on the pipe, then waits for SIGKILL. */
static void child_run(const char *dsn, int flush_ms, int64_t sweep_us, int to_parent,
                      int from_parent) {
    cg_ledger *l = NULL;
    cg_err err;
    if (open_ledger_swept(dsn, flush_ms, sweep_us, &l, &err)) _exit(2);
    char byte = 'o';
    if (write(to_parent, &byte, 1) != 1 || read(from_parent, &byte, 1) != 1) _exit(3);
    cg_charge *c = malloc(sizeof *c);
    for (int i = 0; i <= REDO_PAIRS; i++) {
        ack a = {0};
        snprintf(a.member_id, sizeof a.member_id, "m%d", i % REDO_MEMBERS);
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        cg_charge_input in = {.member_id = a.member_id, .idempotency_key = key,
                              .model = "midjourney"};
        if (cg_ledger_charge(l, &in, c, NULL, &err)) _exit(4);
        snprintf(a.charge_id, sizeof a.charge_id, "%s", c->charge_id);
        a.status = CG_CHARGE_HELD;
        if (i < REDO_PAIRS) {
            snprintf(key, sizeof key, "k%d-cap", i);
            cg_settle_input s = {.member_id = a.member_id, .charge_id = a.charge_id,
                                 .idempotency_key = key, .credits = -1};
            if (cg_ledger_capture(l, &s, c, NULL, &err)) _exit(5);
            a.status = CG_CHARGE_CAPTURED;
        }
        if (write(to_parent, &a, sizeof a) != (ssize_t)sizeof a) _exit(6);
    }
    for (;;) pause();
}

typedef struct child {
    pid_t pid;
    int from_child, to_child;
} child;

static child child_start(const char *dsn, int flush_ms, int64_t sweep_us) {
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    child ch = {.pid = fork()};
    assert_true(ch.pid >= 0);
    if (ch.pid == 0) {
        close(up[0]);
        close(down[1]);
        child_run(dsn, flush_ms, sweep_us, up[1], down[0]);
    }
    close(up[1]);
    close(down[0]);
    ch.from_child = up[0];
    ch.to_child = down[1];
    char byte;
    assert_int_equal(read(ch.from_child, &byte, 1), 1); /* the child owns the logs now */
    return ch;
}

/* Lets the child work. */
static void child_go(child *ch) {
    char byte = 'g';
    assert_int_equal(write(ch->to_child, &byte, 1), 1);
}

/* Collects the child's acknowledgements, kills it. */
static void child_kill_after_acks(child *ch, ack *acks) {
    for (int i = 0; i <= REDO_PAIRS; i++)
        assert_int_equal(read(ch->from_child, &acks[i], sizeof acks[i]), (ssize_t)sizeof acks[i]);
    kill(ch->pid, SIGKILL);
    int status = 0;
    waitpid(ch->pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    close(ch->from_child);
    close(ch->to_child);
}

/* A populated ledger at dsn whose child acknowledged acks and was killed: the calls exist
 * only in the redo logs. */
static void crashed_ledger(char *dsn, size_t dsn_bytes, ack *acks) {
    populate(dsn, dsn_bytes);
    child ch = child_start(dsn, FLUSH_NEVER_MS, 0);
    child_go(&ch);
    child_kill_after_acks(&ch, acks);
}

/* Charges in the shard files as SQLite alone sees them (no replay). */
static int charges_in_files(void) {
    int total = 0;
    for (int i = 0; i < 2; i++) {
        char file[560];
        fx_shard_file(i, file, sizeof file);
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM charges", -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        total += sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    return total;
}

static void assert_acks_present(cg_ledger *l, const ack *acks) {
    cg_charge *c = malloc(sizeof *c);
    cg_err err = {0};
    for (int i = 0; i <= REDO_PAIRS; i++) {
        assert_cg_ok(cg_ledger_charge_get(l, acks[i].member_id, acks[i].charge_id, c, &err), err);
        assert_int_equal(c->status, acks[i].status);
    }
    free(c);
    for (int m = 0; m < REDO_MEMBERS; m++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", m);
        cg_balance *b = balance_of(l, id);
        int captured = REDO_PAIRS / REDO_MEMBERS, held = m == REDO_PAIRS % REDO_MEMBERS;
        assert_int_equal(b->held, held * 10);
        assert_int_equal(b->available, 100000 - 10 * captured - 10 * held);
    }
    assert_verify_clean(l);
}

static void test_acknowledged_calls_replay_after_kill_9(void **state) {
    char dsn[600];
    ack acks[REDO_PAIRS + 1];
    crashed_ledger(dsn, sizeof dsn, acks);
    assert_int_equal(charges_in_files(), 0); /* only the redo log holds them */
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(open_ledger(dsn, FLUSH_NEVER_MS, &l, &err), err);
    *state = l;
    assert_acks_present(l, acks);
    /* and the replay was committed: a plain reader sees the charges now */
    cg_ledger_close(l);
    *state = NULL;
    assert_int_equal(charges_in_files(), REDO_PAIRS + 1);
}

/* The offset where the intact records of the log at path end (its format: redo.c). */
static off_t log_end(const char *path, uint64_t *last_lsn) {
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    off_t off = 0;
    uint64_t prev = 0;
    for (bool first = true;; first = false) {
        unsigned char h[32];
        if (pread(fd, h, sizeof h, off) != (ssize_t)sizeof h) break;
        uint32_t magic, bytes;
        uint64_t lsn;
        memcpy(&magic, h, 4);
        memcpy(&bytes, h + 4, 4);
        memcpy(&lsn, h + 8, 8);
        if (magic != 0x31524743u || (!first && lsn != prev + 1)) break;
        prev = lsn;
        off += 32 + (off_t)bytes;
    }
    close(fd);
    *last_lsn = prev;
    return off;
}

static void test_torn_and_corrupt_records_are_ignored(void **state) {
    char dsn[600];
    ack acks[REDO_PAIRS + 1];
    crashed_ledger(dsn, sizeof dsn, acks);
    /* After the last intact record of each shard's log: a record whose checksum is wrong,
     * then (in the other shard) one cut short — what a crash mid-write leaves. */
    for (int i = 0; i < 2; i++) {
        char file[560], log[600];
        fx_shard_file(i, file, sizeof file);
        snprintf(log, sizeof log, "%s-redo", file);
        uint64_t last = 0;
        off_t end = log_end(log, &last);
        assert_true(end > 0);
        unsigned char rec[32 + 64] = {0};
        uint32_t magic = 0x31524743u, bytes = i == 0 ? 64 : 4096;
        uint64_t lsn = last + 1;
        memcpy(rec, &magic, 4);
        memcpy(rec + 4, &bytes, 4);
        memcpy(rec + 8, &lsn, 8);
        memset(rec + 32, 0x5a, 64);
        int fd = open(log, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, rec, sizeof rec, end), (ssize_t)sizeof rec);
        assert_int_equal(ftruncate(fd, end + (off_t)sizeof rec), 0);
        close(fd);
    }
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(open_ledger(dsn, FLUSH_NEVER_MS, &l, &err), err);
    *state = l;
    assert_acks_present(l, acks);
}

static void test_database_older_than_its_log_is_refused(void **state) {
    (void)state;
    char dsn[600];
    ack acks[REDO_PAIRS + 1];
    crashed_ledger(dsn, sizeof dsn, acks);
    /* as if shard 0's file were restored from a backup taken before its log began */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE redo SET applied_lsn = 0", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_int_equal(open_ledger(dsn, FLUSH_NEVER_MS, &l, &err), CG_EIO);
    assert_non_null(strstr(err.msg, "records are missing"));
    assert_null(l);
}

static void test_second_process_takes_over_when_the_owner_dies(void **state) {
    char dsn[600];
    populate(dsn, sizeof dsn);
    child ch = child_start(dsn, FLUSH_NEVER_MS, 0);
    /* opened while the child owns the logs: this ledger commits every batch itself */
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(open_ledger(dsn, FLUSH_NEVER_MS, &l, &err), err);
    *state = l;
    ack acks[REDO_PAIRS + 1];
    child_go(&ch);
    child_kill_after_acks(&ch, acks);
    assert_int_equal(charges_in_files(), 0);
    /* its next call replays the dead owner's log first, then sees every acknowledged call */
    assert_acks_present(l, acks);
    cg_charge c = charge_mj(l, "m0", "after-takeover");
    assert_int_equal(c.status, CG_CHARGE_HELD);
    assert_int_equal(charges_in_files(), REDO_PAIRS + 2);
}

/* The second process's side of the test below: a member of its own, then SECOND_CHARGES
 * charges. Runs on its own thread, so it records what went wrong instead of asserting. */
#define SECOND_CHARGES 10

typedef struct second_writer {
    cg_ledger *ledger;
    char first_charge_id[CG_OBJECT_ID_BYTES_MAX];
    int charged;
    double elapsed_s;
    cg_err err; /* the first failure */
} second_writer;

static void *second_writer_main(void *arg) {
    second_writer *w = arg;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cg_member_put_input m = {.member_id = "p0", .idempotency_key = "p0-put", .plan = "free",
                             .billing = "monthly", .joined_at_us = T0 - DAY_US};
    cg_grant_input g = {.member_id = "p0", .idempotency_key = "p0-grant",
                        .source = CG_SOURCE_PURCHASE, .category = CG_CATEGORY_PAID,
                        .priority = -1, .credits = 1000};
    static cg_member_state ms;
    static cg_grant gr;
    static cg_charge c;
    int rc = cg_ledger_member_put(w->ledger, &m, &ms, NULL, &w->err);
    if (!rc) rc = cg_ledger_grant(w->ledger, &g, &gr, NULL, &w->err);
    for (int i = 0; i < SECOND_CHARGES && !rc; i++) {
        char key[32];
        snprintf(key, sizeof key, "second-%d", i);
        cg_charge_input in = {.member_id = "p0", .idempotency_key = key, .model = "midjourney"};
        rc = cg_ledger_charge(w->ledger, &in, &c, NULL, &w->err);
        if (rc) break;
        if (i == 0) snprintf(w->first_charge_id, sizeof w->first_charge_id, "%s", c.charge_id);
        w->charged++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    w->elapsed_s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    return NULL;
}

/* A second process writes while the owner lives (committing its files every 100 ms, sweeping
 * only every 30 s) and, when owner_dies_first, as it dies. Its writes wait for the owner's
 * long transaction to end: at a flush — for an idle owner after a tenth of its flush interval,
 * not at its next sweep, 30 s away — or at the owner's death, after which the second process
 * takes the log over and replays it first. None is refused, none waits out SQLite's 5 s busy
 * timeout, and in the end the owner's acknowledged calls and the second process's are all
 * there, in one ledger that verifies clean. */
static void second_process_writes(void **state, bool owner_dies_first) {
    char dsn[600];
    populate(dsn, sizeof dsn);
    child ch = child_start(dsn, 100, 30 * CG_US_PER_S);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(open_ledger(dsn, FLUSH_NEVER_MS, &l, &err), err); /* commits every batch */
    *state = l;
    second_writer w = {.ledger = l};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, second_writer_main, &w), 0);
    child_go(&ch);
    ack acks[REDO_PAIRS + 1];
    if (!owner_dies_first) pthread_join(th, NULL); /* all of it while the owner lives */
    child_kill_after_acks(&ch, acks);
    /* killed right after its last acknowledgement: its last batches are usually in its log
     * only, and the second process's writes still waiting for the owner's lock */
    if (owner_dies_first) pthread_join(th, NULL);
    if (w.charged != SECOND_CHARGES) fail_msg("second process: %s", w.err.msg);
    assert_true(w.elapsed_s < 5);
    assert_acks_present(l, acks);
    cg_balance *b = balance_of(l, "p0");
    assert_int_equal(b->held, 10 * SECOND_CHARGES);
    assert_int_equal(b->available, 1000 - 10 * SECOND_CHARGES);
    cg_charge got;
    assert_cg_ok(cg_ledger_charge_get(l, "p0", w.first_charge_id, &got, &err), err);
    assert_int_equal(got.status, CG_CHARGE_HELD);
    assert_verify_clean(l);
}

static void test_second_process_writes_while_the_owner_lives(void **state) {
    second_process_writes(state, false);
}

static void test_second_process_writes_as_the_owner_dies(void **state) {
    second_process_writes(state, true);
}

/* A batch whose record cannot be written (here: the process's file size limit, EFBIG) is
 * refused and undone whole — a batch is no savepoint of its own (store.h begin_bare) — and
 * with it the batches before it in the same open transaction, which the next batch first
 * replays from the log: nothing acknowledged is lost, and the refused call, retried with its
 * key, is applied once. */
static void test_failed_batch_replays_the_batches_before_it(void **state) {
    char dsn[600];
    populate(dsn, sizeof dsn);
    cg_ledger *l = NULL;
    cg_err err = {0};
    assert_cg_ok(open_ledger(dsn, FLUSH_NEVER_MS, &l, &err), err);
    *state = l;
    enum { BEFORE = 4 };
    char ids[BEFORE][CG_OBJECT_ID_BYTES_MAX];
    for (int i = 0; i < BEFORE; i++) { /* acknowledged: in the log and the open transaction */
        char key[16];
        snprintf(key, sizeof key, "a%d", i);
        snprintf(ids[i], sizeof ids[i], "%s", charge_mj(l, "m0", key).charge_id);
    }
    struct rlimit unlimited, one_byte;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &unlimited), 0);
    one_byte = (struct rlimit){.rlim_cur = 1, .rlim_max = unlimited.rlim_max};
    void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
    cg_charge c;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &one_byte), 0); /* every write past byte 1 fails */
    int rc = charge_try(l, "m0", "b", "midjourney", NULL, &c, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &unlimited), 0);
    signal(SIGXFSZ, was);
    assert_int_equal(rc, CG_EUNAVAILABLE);
    assert_non_null(strstr(err.msg, "retry with the same idempotency key"));
    assert_cg_ok(charge_try(l, "m0", "b", "midjourney", NULL, &c, &err), err);
    for (int i = 0; i < BEFORE; i++) {
        char key[16];
        snprintf(key, sizeof key, "a%d", i);
        cg_charge again;
        cg_charge_input in = {.member_id = "m0", .idempotency_key = key, .model = "midjourney"};
        bool replayed = false;
        assert_cg_ok(cg_ledger_charge(l, &in, &again, &replayed, &err), err);
        assert_true(replayed);
        assert_string_equal(again.charge_id, ids[i]);
    }
    assert_int_equal(balance_of(l, "m0")->held, 10 * (BEFORE + 1));
    assert_verify_clean(l);
    /* and it all reaches the files: a plain reader sees the charges after a clean close */
    cg_ledger_close(l);
    *state = NULL;
    assert_int_equal(charges_in_files(), BEFORE + 1);
}

static int redo_teardown(void **state) {
    if (*state) cg_ledger_close(*state);
    *state = NULL;
    fx_remove_files();
    return 0;
}

int main(void) {
    const char *dsn = getenv("CG_TEST_DB");
    if (dsn && strncmp(dsn, "sqlite:", 7) != 0) return 0; /* SQLite's log; PostgreSQL has WAL */
    if (getenv("CG_VALGRIND")) return 0; /* fork + SIGKILL under memcheck reports the child */
    if (getenv("CG_TEST_SHARDS") && atoi(getenv("CG_TEST_SHARDS")) != 2) return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_acknowledged_calls_replay_after_kill_9, redo_teardown),
        cmocka_unit_test_teardown(test_torn_and_corrupt_records_are_ignored, redo_teardown),
        cmocka_unit_test_teardown(test_database_older_than_its_log_is_refused, redo_teardown),
        cmocka_unit_test_teardown(test_second_process_takes_over_when_the_owner_dies,
                                  redo_teardown),
        cmocka_unit_test_teardown(test_second_process_writes_while_the_owner_lives,
                                  redo_teardown),
        cmocka_unit_test_teardown(test_second_process_writes_as_the_owner_dies, redo_teardown),
        cmocka_unit_test_teardown(test_failed_batch_replays_the_batches_before_it,
                                  redo_teardown),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
