/* pg.c — the PostgreSQL backend of store.h (libpq), chosen by a "postgres://" or
 * "postgresql://" DSN. Rows only; every rule lives in src/ledger/. Several creditgate servers
 * may share one database: each member-scoped call first takes a per-member transaction
 * advisory lock, so two servers' writes to one member serialize (no oversell, no double key)
 * while different members proceed in parallel. See docs/scaling.md.
 *
 * Round trips, not SQL, are the cost here, so the connection runs in libpq's pipeline mode:
 * writes (inserts, updates, savepoints, locks) are sent and not waited for; a read sends its
 * query and then collects every result queued before it. A charge costs ~4 round trips however
 * many rows it writes, and the group commit's COMMIT (with its WAL flush) covers a whole batch.
 * Errors of unwaited statements are attributed safely (see `pending_fail`).
 *
 * Schema migrations are versioned (table creditgate_schema) and applied on open under a
 * session advisory lock, so servers starting together do not race. A DSN parameter
 * `cg_schema=NAME` (stripped before libpq sees the DSN) puts the tables in schema NAME — the
 * tests use it for a clean database per test.
 *
 * A slow or dead server must cost a caller a bounded wait, never a hung writer thread (issue 7):
 * every answer is awaited at most `cg_wait_ms` (DSN parameter, default PG_WAIT_MS_DEFAULT) with
 * poll(), the server gives up on locks a little earlier (lock_timeout), connecting is bounded by
 * connect_timeout and TCP keepalives. A connection that timed out or broke is dropped; every call
 * then fails at once with CG_EUNAVAILABLE (503, retry with the same key) and the next `begin`
 * reconnects — at most once per PG_RECONNECT_BACKOFF_MS — so the ledger recovers by itself when
 * PostgreSQL is back (tests/pg/test_pg_outage.c). */
#include "creditgate/store.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_PARAMS_MAX 24
#define PG_PENDING_MAX 4096          /* unwaited statements before a forced drain */
#define PG_SCHEMA_BYTES_MAX 64
#define PG_MIGRATION_LOCK_KEY INT64_C(7301986442) /* pg_advisory_lock key of the migrations */
/* Waits. A caller's request waits for at most one batch's stuck round trip or reconnect plus its
 * own, so these bound a 503's latency when PostgreSQL is slow or gone. */
#define PG_WAIT_MS_DEFAULT 2000      /* longest wait for one answer before dropping the connection */
#define PG_WAIT_MS_MIN 100
#define PG_WAIT_MS_MAX 600000
#define PG_SCAN_WAIT_MS 600000       /* verify's scans sort whole tables before their first row */
#define PG_OPEN_WAIT_MS 60000        /* migrations wait for another server's migration lock */
#define PG_RECONNECT_BACKOFF_MS 500  /* between reconnect attempts: a dead server costs one
                                      * connect per interval, callers in between fail at once */
#define PG_CONNECT_TIMEOUT_S "2"     /* libpq's minimum */
#define PG_CHECK_INTERVAL_MS 1000    /* the server notices a dropped client during a long query */

/* Migration i brings the schema from version i to i + 1. Append only; never edit one.
 * Every table carries member_id and every key starts with it (Citus: distribution column). */
static const char *const migrations[] = {
    "CREATE TABLE members (member_id text NOT NULL, effective_at_us bigint NOT NULL,"
    " plan text NOT NULL, billing text NOT NULL, joined_at_us bigint NOT NULL,"
    " recorded_at_us bigint NOT NULL, PRIMARY KEY (member_id, effective_at_us));"
    "CREATE TABLE grants (member_id text NOT NULL, grant_id text NOT NULL,"
    " source smallint NOT NULL, category smallint NOT NULL, priority smallint NOT NULL,"
    " credits bigint NOT NULL, remaining bigint NOT NULL, held bigint NOT NULL,"
    " starts_at_us bigint NOT NULL, expires_at_us bigint NOT NULL, created_at_us bigint NOT NULL,"
    " expired boolean NOT NULL, note text NOT NULL, PRIMARY KEY (member_id, grant_id),"
    " CHECK (held >= 0 AND held <= remaining));"
    "CREATE INDEX grants_due ON grants (expires_at_us) WHERE NOT expired;"
    "CREATE TABLE charges (member_id text NOT NULL, charge_id text NOT NULL,"
    " status smallint NOT NULL, model text NOT NULL, variant text NOT NULL, count bigint NOT NULL,"
    " agent_model text NOT NULL, agent_kind text NOT NULL, prompt text NOT NULL,"
    " at_us bigint NOT NULL, plan text NOT NULL, billing text NOT NULL,"
    " joined_at_us bigint NOT NULL, policy_version text NOT NULL, items jsonb NOT NULL,"
    " credits bigint NOT NULL, held bigint NOT NULL, captured bigint NOT NULL,"
    " refunded bigint NOT NULL, parts jsonb NOT NULL, created_at_us bigint NOT NULL,"
    " expires_at_us bigint NOT NULL, settled_at_us bigint NOT NULL,"
    " PRIMARY KEY (member_id, charge_id));"
    "CREATE INDEX charges_due ON charges (expires_at_us) WHERE status = 0;"
    "CREATE INDEX charges_by_time ON charges (member_id, created_at_us, charge_id);"
    "CREATE TABLE journal (member_id text NOT NULL, seq bigint NOT NULL, at_us bigint NOT NULL,"
    " kind smallint NOT NULL, grant_id text NOT NULL, charge_id text NOT NULL,"
    " delta_remaining bigint NOT NULL, delta_held bigint NOT NULL, note text NOT NULL,"
    " PRIMARY KEY (member_id, seq));"
    "CREATE TABLE idempotency (member_id text NOT NULL, key text NOT NULL, op integer NOT NULL,"
    " request_hash bytea NOT NULL, object_id text NOT NULL, created_at_us bigint NOT NULL,"
    " PRIMARY KEY (member_id, key));"
    "CREATE INDEX idempotency_age ON idempotency (created_at_us);"
    /* The journal is append-only: the database itself refuses edits. */
    "CREATE FUNCTION journal_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN RAISE EXCEPTION 'journal is append-only'; END$$;"
    "CREATE TRIGGER journal_no_edit BEFORE UPDATE OR DELETE ON journal"
    " FOR EACH ROW EXECUTE FUNCTION journal_append_only();",
};
#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

enum {
    ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO, ST_LOCK,
    ST_MEMBER_INSERT, ST_MEMBER_AT, ST_MEMBER_VERSIONS,
    ST_GRANT_INSERT, ST_GRANT_GET, ST_GRANTS_OPEN, ST_GRANT_UPDATE, ST_GRANTS_DUE,
    ST_CHARGE_INSERT, ST_CHARGE_GET, ST_CHARGE_UPDATE, ST_CHARGES_DUE,
    ST_JOURNAL_LAST, ST_JOURNAL_APPEND, ST_JOURNAL_PAGE,
    ST_IDEM_GET, ST_IDEM_INSERT, ST_IDEM_PURGE,
    ST_SCAN_GRANTS, ST_SCAN_CHARGES, ST_COUNT_ENTRIES,
    ST_IDEM_CLAIM, ST_CHARGES_FIRST, ST_CHARGES_AFTER, ST_GRANT_UPDATE_CREDITS,
    ST_COUNT
};

#define MEMBER_COLS "member_id, effective_at_us, plan, billing, joined_at_us, recorded_at_us"
#define GRANT_COLS "member_id, grant_id, source, category, priority, credits, remaining, held," \
                   " starts_at_us, expires_at_us, created_at_us, expired, note"
#define CHARGE_COLS "member_id, charge_id, status, model, variant, count, agent_model,"       \
                    " agent_kind, prompt, at_us, plan, billing, joined_at_us, policy_version,"  \
                    " items, credits, held, captured, refunded, parts, created_at_us,"          \
                    " expires_at_us, settled_at_us"
#define JOURNAL_COLS "member_id, seq, at_us, kind, grant_id, charge_id, delta_remaining,"     \
                     " delta_held, note"

static const char *const statement_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT op",
    [ST_RELEASE] = "RELEASE SAVEPOINT op",
    [ST_ROLLBACK_TO] = "ROLLBACK TO SAVEPOINT op",
    /* Per-member serialization across servers; released at commit or rollback. */
    [ST_LOCK] = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
    [ST_MEMBER_INSERT] = "INSERT INTO members (" MEMBER_COLS ") VALUES ($1, $2, $3, $4, $5, $6)"
                         " ON CONFLICT (member_id, effective_at_us) DO UPDATE SET plan = $3,"
                         " billing = $4, joined_at_us = $5, recorded_at_us = $6",
    [ST_MEMBER_AT] = "SELECT " MEMBER_COLS " FROM members WHERE member_id = $1"
                     " AND effective_at_us <= $2 ORDER BY effective_at_us DESC LIMIT 1",
    [ST_MEMBER_VERSIONS] = "SELECT " MEMBER_COLS " FROM members WHERE member_id = $1"
                           " ORDER BY effective_at_us LIMIT $2",
    [ST_GRANT_INSERT] = "INSERT INTO grants (" GRANT_COLS ") VALUES"
                        " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    [ST_GRANT_GET] = "SELECT " GRANT_COLS " FROM grants WHERE member_id = $1 AND grant_id = $2",
    [ST_GRANTS_OPEN] = "SELECT " GRANT_COLS " FROM grants WHERE member_id = $1"
                       " AND (remaining > 0 OR held > 0) LIMIT $2",
    [ST_GRANT_UPDATE] = "UPDATE grants SET remaining = $3, held = $4, expired = $5"
                        " WHERE member_id = $1 AND grant_id = $2",
    /* Sweep listings span members (documented in docs/scaling.md); each item is then
     * re-read under its member's lock. */
    [ST_GRANTS_DUE] = "SELECT member_id, grant_id FROM grants WHERE NOT expired"
                      " AND expires_at_us <= $1 ORDER BY expires_at_us LIMIT $2",
    [ST_CHARGE_INSERT] = "INSERT INTO charges (" CHARGE_COLS ") VALUES ($1, $2, $3, $4, $5, $6,"
                         " $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,"
                         " $21, $22, $23)",
    [ST_CHARGE_GET] = "SELECT " CHARGE_COLS " FROM charges WHERE member_id = $1"
                      " AND charge_id = $2",
    [ST_CHARGE_UPDATE] = "UPDATE charges SET status = $3, held = $4, captured = $5,"
                         " refunded = $6, parts = $7, settled_at_us = $8"
                         " WHERE member_id = $1 AND charge_id = $2",
    [ST_CHARGES_DUE] = "SELECT member_id, charge_id FROM charges WHERE status = 0"
                       " AND expires_at_us <= $1 ORDER BY expires_at_us LIMIT $2",
    [ST_JOURNAL_LAST] = "SELECT coalesce(max(seq), 0) FROM journal WHERE member_id = $1",
    [ST_JOURNAL_APPEND] = "INSERT INTO journal (" JOURNAL_COLS ") VALUES"
                          " ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    [ST_JOURNAL_PAGE] = "SELECT " JOURNAL_COLS " FROM journal WHERE member_id = $1 AND seq > $2"
                        " ORDER BY seq LIMIT $3",
    [ST_IDEM_GET] = "SELECT member_id, key, op, request_hash, object_id, created_at_us"
                    " FROM idempotency WHERE member_id = $1 AND key = $2",
    [ST_IDEM_INSERT] = "INSERT INTO idempotency (member_id, key, op, request_hash, object_id,"
                       " created_at_us) VALUES ($1, $2, $3, $4, $5, $6)",
    /* Spans members (sweep). SKIP LOCKED: two servers purging at once never wait or
     * deadlock on each other's rows. */
    /* ORDER BY: a walk of idempotency_age that stops at the first key not due. Without it a
     * prepared (generic) plan guessed a third of the table due and scanned all of it on every
     * batch — 3.6 ms per call on an idle table (bench/RESULTS.md, PostgreSQL, session 3). */
    [ST_IDEM_PURGE] = "DELETE FROM idempotency WHERE (member_id, key) IN (SELECT member_id, key"
                      " FROM idempotency WHERE created_at_us < $1 ORDER BY created_at_us LIMIT $2"
                      " FOR UPDATE SKIP LOCKED)",
    /* Verify scans span members by design (docs/scaling.md). */
    [ST_SCAN_GRANTS] = "SELECT g.member_id, g.grant_id, g.source, g.category, g.priority,"
                       " g.credits, g.remaining, g.held, g.starts_at_us, g.expires_at_us,"
                       " g.created_at_us, g.expired, g.note, coalesce(j.r, 0), coalesce(j.h, 0),"
                       " coalesce(j.n, 0) FROM grants g LEFT JOIN (SELECT member_id, grant_id,"
                       " sum(delta_remaining) r, sum(delta_held) h, count(*) n FROM journal"
                       " GROUP BY member_id, grant_id) j USING (member_id, grant_id)"
                       " ORDER BY g.member_id COLLATE \"C\", g.grant_id COLLATE \"C\"",
    [ST_SCAN_CHARGES] = "SELECT c.member_id, c.charge_id, status, model, variant, count,"
                        " agent_model, agent_kind, prompt, at_us, plan, billing, joined_at_us,"
                        " policy_version, items, credits, held, captured, refunded, parts,"
                        " created_at_us, expires_at_us, settled_at_us, coalesce(j.r, 0),"
                        " coalesce(j.h, 0), coalesce(j.n, 0) FROM charges c LEFT JOIN"
                        " (SELECT member_id, charge_id, sum(delta_remaining) r,"
                        " sum(delta_held) h, count(*) n FROM journal WHERE charge_id <> ''"
                        " GROUP BY member_id, charge_id) j USING (member_id, charge_id)"
                        " ORDER BY c.member_id COLLATE \"C\", c.charge_id COLLATE \"C\"",
    [ST_COUNT_ENTRIES] = "SELECT count(*) FROM journal",
    [ST_IDEM_CLAIM] = "INSERT INTO idempotency (member_id, key, op, request_hash, object_id,"
                      " created_at_us) VALUES ($1, $2, $3, $4, $5, $6)"
                      " ON CONFLICT (member_id, key) DO NOTHING RETURNING 1",
    [ST_CHARGES_FIRST] = "SELECT " CHARGE_COLS " FROM charges WHERE member_id = $1"
                         " ORDER BY created_at_us DESC, charge_id COLLATE \"C\" DESC LIMIT $2",
    [ST_CHARGES_AFTER] = "SELECT " CHARGE_COLS " FROM charges WHERE member_id = $1"
                         " AND (created_at_us, charge_id COLLATE \"C\") < ($2, $3)"
                         " ORDER BY created_at_us DESC, charge_id COLLATE \"C\" DESC LIMIT $4",
    [ST_GRANT_UPDATE_CREDITS] = "UPDATE grants SET remaining = $3, held = $4, expired = $5,"
                                " credits = $6 WHERE member_id = $1 AND grant_id = $2",
};

/* One statement sent and not yet answered. */
typedef struct pending {
    int64_t seq;
    int id; /* statement */
} pending;

typedef struct pg_store {
    cg_store base; /* first: a cg_store* is a pg_store* */
    PGconn *conn;
    /* Unwaited statements, oldest first (a ring). */
    pending pend[PG_PENDING_MAX];
    int pend_head, pend_count;
    int64_t sent_seq;       /* statements sent so far */
    int64_t savepoint_seq;  /* seq of the current op's SAVEPOINT; 0 outside one */
    bool aborted;           /* a statement failed: the server skips the rest until a Sync */
    bool poisoned;          /* a failure outside the current savepoint: the batch must roll back */
    char poison_msg[CG_ERR_MSG_BYTES_MAX];
    char locked_member[CG_MEMBER_ID_BYTES_MAX]; /* last member locked in this savepoint */
    /* The connection and its recovery. broken: no usable connection (conn may still be open
     * until the next rollback/begin drops it); every call fails fast until a reconnect. */
    char conninfo[CG_STORE_DSN_BYTES_MAX]; /* the DSN without cg_ parameters */
    char schema[PG_SCHEMA_BYTES_MAX];
    int wait_ms;
    bool broken;
    int64_t down_at_ms;                    /* monotonic; when broken or a reconnect failed */
    int setup_wait_ms;                     /* the wait for open's and reconnect's statements */
    char down_msg[CG_ERR_MSG_BYTES_MAX];   /* why, for every 503 until reconnected */
} pg_store;

static pg_store *from(cg_store *store) {
    assert(store);
    return (pg_store *)store;
}

/* ---- parameters ---- */

typedef struct params {
    int n;
    const char *value[PG_PARAMS_MAX];
    int length[PG_PARAMS_MAX];
    int format[PG_PARAMS_MAX];
    char num[PG_PARAMS_MAX][24];
} params;

static void p_text(params *p, const char *text) {
    assert(p->n < PG_PARAMS_MAX);
    p->value[p->n] = text ? text : "";
    p->length[p->n] = 0;
    p->format[p->n++] = 0;
}

static void p_int(params *p, int64_t v) {
    assert(p->n < PG_PARAMS_MAX);
    snprintf(p->num[p->n], sizeof p->num[0], "%" PRId64, v);
    p_text(p, p->num[p->n]);
}

static void p_bytes(params *p, const void *bytes, int length) {
    assert(p->n < PG_PARAMS_MAX);
    p->value[p->n] = bytes;
    p->length[p->n] = length;
    p->format[p->n++] = 1;
}

/* ---- the pipeline ---- */

/* SQLSTATEs a retry may cure map to CG_EUNAVAILABLE: the caller retries with its key. */
static int code_of(const char *sqlstate) {
    if (!sqlstate) return CG_EUNAVAILABLE; /* no answer: connection trouble */
    if (!strcmp(sqlstate, "23505")) return CG_ECONFLICT;
    if (!strncmp(sqlstate, "40", 2) || !strcmp(sqlstate, "55P03") || !strncmp(sqlstate, "08", 2) ||
        !strcmp(sqlstate, "57014") || !strncmp(sqlstate, "53", 2) || !strncmp(sqlstate, "57P", 3))
        return CG_EUNAVAILABLE;
    return CG_EIO;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int unavailable(pg_store *s, cg_err *err) {
    assert(s->broken);
    return cg_err_set(err, CG_EUNAVAILABLE, "postgres unavailable: %s", s->down_msg);
}

/* The connection is unusable from now on (timed out, closed by the server, reset). */
static void lose(pg_store *s, const char *why) {
    if (s->broken) return; /* keep the first reason */
    snprintf(s->down_msg, sizeof s->down_msg, "%s", why && *why ? why : "connection lost");
    s->down_msg[strcspn(s->down_msg, "\n")] = 0;
    s->down_at_ms = mono_ms();
    s->broken = true;
}

/* Closes the connection (the server rolls back whatever it had open) and forgets the pipeline. */
static void drop(pg_store *s) {
    lose(s, "connection dropped");
    PQfinish(s->conn);
    s->conn = NULL;
    s->pend_head = s->pend_count = 0;
    s->aborted = false;
    s->poisoned = false;
    s->savepoint_seq = 0;
    s->locked_member[0] = 0;
}

/* Waits until a result can be read without blocking, at most wait_ms. A server that does not
 * answer in time (stopped, hung, partitioned) is given up on: false, and the connection is lost. */
static bool await_input(pg_store *s, int wait_ms) {
    assert(wait_ms > 0);
    if (s->broken) return false;
    int64_t deadline_ms = mono_ms() + wait_ms;
    while (PQisBusy(s->conn)) {
        int64_t left_ms = deadline_ms - mono_ms();
        char why[96];
        if (left_ms <= 0) {
            snprintf(why, sizeof why, "no answer from PostgreSQL within %d ms", wait_ms);
            lose(s, why);
            return false;
        }
        /* In non-blocking mode a request may still sit partly in libpq's buffer. */
        int unsent = PQflush(s->conn);
        struct pollfd pfd = {.fd = PQsocket(s->conn), .events = POLLIN | (unsent > 0 ? POLLOUT : 0)};
        if (pfd.fd < 0 || unsent < 0) return true; /* closed: PQgetResult reports it at once */
        int n = poll(&pfd, 1, (int)left_ms);
        if (n < 0 && errno != EINTR) {
            snprintf(why, sizeof why, "poll: %s", strerror(errno));
            lose(s, why);
            return false;
        }
        if (n > 0 && (pfd.revents & ~POLLOUT) && !PQconsumeInput(s->conn))
            return true; /* the error is read as a result */
    }
    return true;
}

/* PQgetResult with a bounded wait; NULL also when the connection is (or just got) lost. */
static PGresult *get_result(pg_store *s, int wait_ms) {
    if (!await_input(s, wait_ms)) return NULL;
    PGresult *res = PQgetResult(s->conn);
    if (PQstatus(s->conn) == CONNECTION_BAD) lose(s, PQerrorMessage(s->conn));
    return res;
}

/* Sends what libpq has buffered (and a flush request, so the server answers what it has),
 * waiting at most wait_ms for the socket to take it. */
static int flush_out(pg_store *s, cg_err *err) {
    if (s->broken) return unavailable(s, err);
    int64_t deadline_ms = mono_ms() + s->wait_ms;
    int pending_bytes = PQsendFlushRequest(s->conn) == 1 ? PQflush(s->conn) : -1;
    while (pending_bytes == 1) {
        int64_t left_ms = deadline_ms - mono_ms();
        if (left_ms <= 0) {
            lose(s, "PostgreSQL takes no more data (send timed out)");
            return unavailable(s, err);
        }
        struct pollfd pfd = {.fd = PQsocket(s->conn), .events = POLLOUT | POLLIN};
        if (poll(&pfd, 1, (int)left_ms) > 0 && (pfd.revents & POLLIN)) PQconsumeInput(s->conn);
        pending_bytes = PQflush(s->conn);
    }
    if (pending_bytes < 0) {
        lose(s, PQerrorMessage(s->conn));
        return unavailable(s, err);
    }
    return CG_OK;
}

/* How long one statement's answer may take. */
static int wait_ms_for(const pg_store *s, int id) {
    return id == ST_SCAN_GRANTS || id == ST_SCAN_CHARGES || id == ST_COUNT_ENTRIES
               ? PG_SCAN_WAIT_MS : s->wait_ms;
}

static int fail_result(pg_store *s, const PGresult *res, cg_err *err, const char *what) {
    if (!res && s->broken) return unavailable(s, err);
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char clean[200];
    snprintf(clean, sizeof clean, "%s", msg && *msg ? msg : "no answer from the server");
    clean[strcspn(clean, "\n")] = 0;
    return cg_err_set(err, code_of(state), "postgres %s: %s", what, clean);
}

static bool result_ok(const PGresult *res) {
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE;
}

/* A statement that was not waited for failed. Inside the current op (sent after its
 * SAVEPOINT) the op fails and ROLLBACK TO undoes exactly its statements. Before it (an
 * earlier op's write, a RELEASE, the SAVEPOINT itself) an op already told "applied" may be
 * affected: the store is poisoned, the savepoint rollback and the commit refuse, and the
 * ledger rolls the whole batch back — nothing unsafe is ever acknowledged. */
static void pending_fail(pg_store *s, const pending *p, const PGresult *res) {
    if (s->savepoint_seq && p->seq > s->savepoint_seq) return;
    if (!s->poisoned) {
        cg_err e;
        fail_result(s, res, &e, statement_sql[p->id]);
        snprintf(s->poison_msg, sizeof s->poison_msg, "%s", e.msg);
    }
    s->poisoned = true;
}

/* Reads the next statement's result (the first non-NULL one) and its NULL terminator. */
static PGresult *next_result(pg_store *s, int wait_ms) {
    PGresult *res = get_result(s, wait_ms);
    if (!res) return NULL;
    PGresult *extra;
    while ((extra = get_result(s, wait_ms)) != NULL) PQclear(extra);
    return res;
}

/* Collects every pending result but the last `keep`; returns the first failure's code. */
static int drain(pg_store *s, int keep, cg_err *err) {
    int rc = CG_OK;
    if (s->pend_count > keep && (rc = flush_out(s, err))) {
        s->pend_count = 0; /* lost: nothing more will come */
        s->poisoned = true;
        snprintf(s->poison_msg, sizeof s->poison_msg, "%s", s->down_msg);
        return rc;
    }
    while (s->pend_count > keep) {
        pending p = s->pend[s->pend_head];
        s->pend_head = (s->pend_head + 1) % PG_PENDING_MAX;
        s->pend_count--;
        PGresult *res = next_result(s, wait_ms_for(s, p.id));
        if (!res || !result_ok(res)) {
            s->aborted = true;
            if (PQresultStatus(res) != PGRES_PIPELINE_ABORTED) pending_fail(s, &p, res);
            if (!rc) rc = fail_result(s, res, err, statement_sql[p.id]);
        }
        PQclear(res);
        if (!res) { /* connection gone or timed out: nothing more will come */
            s->pend_count = 0;
            s->poisoned = true;
            snprintf(s->poison_msg, sizeof s->poison_msg, "%s",
                     s->broken ? s->down_msg : "connection lost");
        }
    }
    return rc;
}

/* Sends a statement without waiting for its answer. */
static int send_stmt(pg_store *s, int id, const params *p, cg_err *err) {
    assert(id >= 0 && id < ST_COUNT);
    if (s->broken) return unavailable(s, err);
    if (s->pend_count == PG_PENDING_MAX) {
        int rc = drain(s, 0, err);
        if (rc) return rc;
    }
    char name[16];
    snprintf(name, sizeof name, "s%d", id);
    if (!PQsendQueryPrepared(s->conn, name, p ? p->n : 0, p ? p->value : NULL,
                             p ? p->length : NULL, p ? p->format : NULL, 0))
        return fail_result(s, NULL, err, statement_sql[id]);
    int tail = (s->pend_head + s->pend_count) % PG_PENDING_MAX;
    s->pend[tail] = (pending){.seq = ++s->sent_seq, .id = id};
    s->pend_count++;
    return CG_OK;
}

/* Sends a statement and waits for its answer (and every earlier one). On success *out is
 * the statement's result (PQclear it). */
static int query(pg_store *s, int id, const params *p, PGresult **out, cg_err *err) {
    *out = NULL;
    int rc = send_stmt(s, id, p, err);
    if (rc) return rc;
    rc = drain(s, 1, err); /* an earlier statement's failure fails this one too */
    cg_err flush_err;
    int flush_rc = flush_out(s, &flush_err);
    if (flush_rc) {
        if (!rc) *err = flush_err;
        return rc ? rc : flush_rc;
    }
    assert(s->pend_count == 1);
    s->pend_head = (s->pend_head + 1) % PG_PENDING_MAX;
    s->pend_count = 0;
    PGresult *res = next_result(s, wait_ms_for(s, id));
    if (rc) {
        PQclear(res);
        return rc;
    }
    if (!res || !result_ok(res)) {
        s->aborted = true;
        rc = fail_result(s, res, err, statement_sql[id]);
        PQclear(res);
        return rc;
    }
    *out = res;
    return CG_OK;
}

/* After a failure the server ignores everything until a Sync; this sends one and reads up
 * to it, leaving an explicit transaction open (in the aborted state). */
static int resync(pg_store *s, cg_err *err) {
    int rc = drain(s, 0, err);
    (void)rc; /* every failure is already recorded in aborted/poisoned */
    if (s->broken) return unavailable(s, err);
    /* PQpipelineSync flushes; in non-blocking mode what the socket does not take stays
     * buffered, and the bounded wait below gives up on a server that reads nothing. */
    if (PQpipelineSync(s->conn) != 1) return fail_result(s, NULL, err, "sync");
    for (;;) {
        PGresult *res = get_result(s, s->wait_ms);
        if (!res) {
            if (s->broken || PQstatus(s->conn) != CONNECTION_OK)
                return fail_result(s, NULL, err, "sync");
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        if (st == PGRES_PIPELINE_SYNC) break;
    }
    s->aborted = false;
    return CG_OK;
}

/* Sends every pending statement plus `id`, a Sync, and waits for all of it. */
static int send_synced(pg_store *s, int id, cg_err *err) {
    int rc = send_stmt(s, id, NULL, err);
    if (!rc) rc = drain(s, 0, err);
    int sync_rc = resync(s, err);
    return rc ? rc : sync_rc;
}

/* Takes the member's advisory lock (unwaited) before its first statement in this op. */
static int lock_member(pg_store *s, const char *member_id, cg_err *err) {
    if (!strcmp(s->locked_member, member_id)) return CG_OK;
    params p = {0};
    p_text(&p, member_id);
    int rc = send_stmt(s, ST_LOCK, &p, err);
    if (!rc) snprintf(s->locked_member, sizeof s->locked_member, "%s", member_id);
    return rc;
}

/* ---- transactions ---- */

static void reset_batch_state(pg_store *s) {
    s->savepoint_seq = 0;
    s->poisoned = false;
    s->poison_msg[0] = 0;
    s->locked_member[0] = 0;
}

static int connect_session(pg_store *s, int wait_ms, cg_err *err);
static int session_limits(pg_store *s, cg_err *err);
static int prepare_all(pg_store *s, cg_err *err);

/* A new connection in place of a lost one, at most once per PG_RECONNECT_BACKOFF_MS: while
 * PostgreSQL is down the calls in between fail at once instead of each waiting for a connect. */
static int reconnect(pg_store *s, cg_err *err) {
    assert(s->broken);
    if (s->conn) drop(s);
    if (mono_ms() - s->down_at_ms < PG_RECONNECT_BACKOFF_MS) return unavailable(s, err);
    cg_err why = {0};
    s->broken = false; /* the setup calls below refuse to run on a broken store */
    int rc = connect_session(s, s->wait_ms, &why);
    if (!rc) rc = session_limits(s, &why);
    if (!rc) rc = prepare_all(s, &why);
    if (rc) {
        drop(s);
        snprintf(s->down_msg, sizeof s->down_msg, "%s", why.msg);
        s->down_at_ms = mono_ms();
        return unavailable(s, err);
    }
    assert(!s->broken && s->pend_count == 0);
    return CG_OK;
}

static int pg_begin(cg_store *st, cg_err *err) {
    pg_store *s = from(st);
    reset_batch_state(s);
    if (s->broken) {
        int rc = reconnect(s, err);
        if (rc) return rc;
    }
    if (s->aborted) {
        int rc = resync(s, err);
        if (rc) return rc;
    }
    return send_stmt(s, ST_BEGIN, NULL, err);
}

static int pg_commit(cg_store *st, cg_err *err) {
    pg_store *s = from(st);
    s->savepoint_seq = 0;
    s->locked_member[0] = 0;
    if (s->poisoned) {
        int rc = cg_err_set(err, CG_EUNAVAILABLE, "postgres: batch not committed: %s",
                            s->poison_msg);
        cg_err ignored;
        send_synced(s, ST_ROLLBACK, &ignored);
        return rc;
    }
    return send_synced(s, ST_COMMIT, err);
}

static int pg_rollback(cg_store *st, cg_err *err) {
    pg_store *s = from(st);
    reset_batch_state(s);
    if (s->broken) { /* closing the connection rolls its transaction back */
        if (s->conn) drop(s);
        return CG_OK;
    }
    if (s->aborted) resync(s, err);
    return send_synced(s, ST_ROLLBACK, err);
}

/* COMMIT returns once PostgreSQL has flushed its WAL (synchronous_commit on): committed is
 * already durable, so there is nothing left to do here. */
static int pg_sync(cg_store *st, cg_err *err) {
    (void)st;
    (void)err;
    return CG_OK;
}

static int pg_savepoint(cg_store *st, cg_err *err) {
    pg_store *s = from(st);
    s->locked_member[0] = 0;
    int rc = send_stmt(s, ST_SAVEPOINT, NULL, err);
    if (!rc) s->savepoint_seq = s->sent_seq;
    return rc;
}

static int pg_release(cg_store *st, cg_err *err) {
    pg_store *s = from(st);
    s->savepoint_seq = 0;
    s->locked_member[0] = 0;
    if (s->poisoned)
        return cg_err_set(err, CG_EUNAVAILABLE, "postgres: %s", s->poison_msg);
    return send_stmt(s, ST_RELEASE, NULL, err);
}

static int pg_rollback_to(cg_store *st, cg_err *err) {
    pg_store *s = from(st);
    int rc = CG_OK;
    if (s->aborted || s->pend_count) rc = resync(s, err); /* attributes pending failures */
    s->savepoint_seq = 0;
    s->locked_member[0] = 0;
    if (rc) return rc;
    if (s->poisoned)
        return cg_err_set(err, CG_EUNAVAILABLE, "postgres: %s", s->poison_msg);
    rc = send_stmt(s, ST_ROLLBACK_TO, NULL, err);
    if (!rc) rc = send_stmt(s, ST_RELEASE, NULL, err);
    return rc;
}

/* ---- column readers ---- */

static void col_text(const PGresult *r, int row, int col, char *dst, size_t dst_bytes) {
    snprintf(dst, dst_bytes, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static int64_t col_int(const PGresult *r, int row, int col) {
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static bool col_bool(const PGresult *r, int row, int col) {
    return PQgetvalue(r, row, col)[0] == 't';
}

/* ---- members ---- */

static void read_member(const PGresult *r, int row, cg_member_state *m) {
    memset(m, 0, sizeof *m);
    col_text(r, row, 0, m->member_id, sizeof m->member_id);
    m->effective_at_us = col_int(r, row, 1);
    col_text(r, row, 2, m->plan, sizeof m->plan);
    col_text(r, row, 3, m->billing, sizeof m->billing);
    m->joined_at_us = col_int(r, row, 4);
    m->recorded_at_us = col_int(r, row, 5);
}

static int pg_member_insert(cg_store *store, const cg_member_state *m, cg_err *err) {
    pg_store *s = from(store);
    int rc = lock_member(s, m->member_id, err);
    if (rc) return rc;
    params p = {0};
    p_text(&p, m->member_id);
    p_int(&p, m->effective_at_us);
    p_text(&p, m->plan);
    p_text(&p, m->billing);
    p_int(&p, m->joined_at_us);
    p_int(&p, m->recorded_at_us);
    return send_stmt(s, ST_MEMBER_INSERT, &p, err);
}

/* Locks the member, runs a read keyed by it and returns the result. */
static int member_query(pg_store *s, int id, const char *member_id, params *p, PGresult **res,
                        cg_err *err) {
    int rc = lock_member(s, member_id, err);
    if (rc) return rc;
    return query(s, id, p, res, err);
}

static int pg_member_at(cg_store *store, const char *member_id, int64_t at_us,
                        cg_member_state *out, cg_err *err) {
    pg_store *s = from(store);
    params p = {0};
    p_text(&p, member_id);
    p_int(&p, at_us);
    PGresult *r;
    int rc = member_query(s, ST_MEMBER_AT, member_id, &p, &r, err);
    if (rc) return rc;
    bool found = PQntuples(r) > 0;
    if (found) read_member(r, 0, out);
    PQclear(r);
    if (found) return CG_OK;
    return cg_err_set_field(err, CG_ENOTFOUND, "member", "no member '%s' at that instant",
                            member_id);
}

static int pg_member_versions(cg_store *store, const char *member_id, cg_member_state *out,
                              int max, int *count, cg_err *err) {
    pg_store *s = from(store);
    params p = {0};
    p_text(&p, member_id);
    p_int(&p, max);
    PGresult *r;
    int rc = member_query(s, ST_MEMBER_VERSIONS, member_id, &p, &r, err);
    if (rc) return rc;
    int n = PQntuples(r) < max ? PQntuples(r) : max;
    for (int i = 0; i < n; i++) read_member(r, i, &out[i]);
    PQclear(r);
    *count = n;
    return CG_OK;
}

/* ---- grants ---- */

static void read_grant(const PGresult *r, int row, cg_grant *g) {
    memset(g, 0, sizeof *g);
    col_text(r, row, 0, g->member_id, sizeof g->member_id);
    col_text(r, row, 1, g->grant_id, sizeof g->grant_id);
    g->source = (cg_grant_source)col_int(r, row, 2);
    g->category = (cg_grant_category)col_int(r, row, 3);
    g->priority = (int)col_int(r, row, 4);
    g->credits = col_int(r, row, 5);
    g->remaining = col_int(r, row, 6);
    g->held = col_int(r, row, 7);
    g->starts_at_us = col_int(r, row, 8);
    g->expires_at_us = col_int(r, row, 9);
    g->created_at_us = col_int(r, row, 10);
    g->expired = col_bool(r, row, 11);
    col_text(r, row, 12, g->note, sizeof g->note);
}

static int pg_grant_insert(cg_store *store, const cg_grant *g, cg_err *err) {
    pg_store *s = from(store);
    int rc = lock_member(s, g->member_id, err);
    if (rc) return rc;
    params p = {0};
    p_text(&p, g->member_id);
    p_text(&p, g->grant_id);
    p_int(&p, g->source);
    p_int(&p, g->category);
    p_int(&p, g->priority);
    p_int(&p, g->credits);
    p_int(&p, g->remaining);
    p_int(&p, g->held);
    p_int(&p, g->starts_at_us);
    p_int(&p, g->expires_at_us);
    p_int(&p, g->created_at_us);
    p_text(&p, g->expired ? "true" : "false");
    p_text(&p, g->note);
    return send_stmt(s, ST_GRANT_INSERT, &p, err);
}

/* One member's object by id (statement binds member_id, object_id): read_row fills out from
 * the first row; CG_ENOTFOUND names `what` ("grant", "charge") when there is none. */
static int object_get(pg_store *s, int statement, const char *member_id, const char *object_id,
                      const char *what, void (*read_row)(const PGresult *, void *), void *out,
                      cg_err *err) {
    params p = {0};
    p_text(&p, member_id);
    p_text(&p, object_id);
    PGresult *r;
    int rc = member_query(s, statement, member_id, &p, &r, err);
    if (rc) return rc;
    bool found = PQntuples(r) > 0;
    if (found) read_row(r, out);
    PQclear(r);
    if (found) return CG_OK;
    return cg_err_set_field(err, CG_ENOTFOUND, what, "no %s '%s' for member '%s'", what,
                            object_id, member_id);
}

static void read_grant_row(const PGresult *r, void *out) { read_grant(r, 0, out); }

static int pg_grant_get(cg_store *store, const char *member_id, const char *grant_id,
                        cg_grant *out, cg_err *err) {
    return object_get(from(store), ST_GRANT_GET, member_id, grant_id, "grant", read_grant_row,
                      out, err);
}

static int pg_grants_open(cg_store *store, const char *member_id, cg_grant *out, int max,
                          int *count, cg_err *err) {
    pg_store *s = from(store);
    params p = {0};
    p_text(&p, member_id);
    p_int(&p, max + 1);
    PGresult *r;
    int rc = member_query(s, ST_GRANTS_OPEN, member_id, &p, &r, err);
    if (rc) return rc;
    int n = PQntuples(r);
    if (n > max) {
        PQclear(r);
        return cg_err_set(err, CG_ELIMIT, "member '%s' has more than %d open grants",
                          member_id, max);
    }
    for (int i = 0; i < n; i++) read_grant(r, i, &out[i]);
    PQclear(r);
    *count = n;
    return CG_OK;
}

static int pg_grant_update(cg_store *store, const cg_grant *g, cg_err *err) {
    pg_store *s = from(store);
    int rc = lock_member(s, g->member_id, err);
    if (rc) return rc;
    params p = {0};
    p_text(&p, g->member_id);
    p_text(&p, g->grant_id);
    p_int(&p, g->remaining);
    p_int(&p, g->held);
    p_text(&p, g->expired ? "true" : "false");
    return send_stmt(s, ST_GRANT_UPDATE, &p, err);
}

static int pg_grant_update_credits(cg_store *store, const cg_grant *g, cg_err *err) {
    pg_store *s = from(store);
    int rc = lock_member(s, g->member_id, err);
    if (rc) return rc;
    params p = {0};
    p_text(&p, g->member_id);
    p_text(&p, g->grant_id);
    p_int(&p, g->remaining);
    p_int(&p, g->held);
    p_text(&p, g->expired ? "true" : "false");
    p_int(&p, g->credits);
    return send_stmt(s, ST_GRANT_UPDATE_CREDITS, &p, err);
}

static int list_refs(pg_store *s, int id, int64_t now_us, cg_store_ref *out, int max,
                     int *count, cg_err *err) {
    params p = {0};
    p_int(&p, now_us);
    p_int(&p, max);
    PGresult *r;
    int rc = query(s, id, &p, &r, err);
    if (rc) return rc;
    int n = PQntuples(r) < max ? PQntuples(r) : max;
    for (int i = 0; i < n; i++) {
        col_text(r, i, 0, out[i].member_id, sizeof out[i].member_id);
        col_text(r, i, 1, out[i].object_id, sizeof out[i].object_id);
    }
    PQclear(r);
    *count = n;
    return CG_OK;
}

static int pg_grants_due(cg_store *store, int64_t now_us, cg_store_ref *out, int max,
                         int *count, cg_err *err) {
    return list_refs(from(store), ST_GRANTS_DUE, now_us, out, max, count, err);
}

/* ---- charges: items and parts are jsonb, so support can query them in SQL ---- */

static char *items_dump(const cg_charge *c) {
    json_t *a = json_array();
    for (int i = 0; a && i < c->item_count; i++) {
        const cg_charge_item *it = &c->items[i];
        json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:I,s:b,s:I,s:s,s:s,s:s}",
                                           "kind", it->kind, "model", it->model, "variant",
                                           it->variant, "count", (json_int_t)it->count,
                                           "unlimited", it->unlimited, "credits",
                                           (json_int_t)it->credits, "benefit", it->benefit,
                                           "reason_code", it->reason_code, "reason",
                                           it->reason));
    }
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return text;
}

static char *parts_dump(const cg_charge *c) {
    json_t *a = json_array();
    for (int i = 0; a && i < c->part_count; i++) {
        const cg_charge_part *p = &c->parts[i];
        json_array_append_new(a, json_pack("{s:s,s:i,s:i,s:I,s:I,s:I}", "grant_id", p->grant_id,
                                           "source", (int)p->source, "category",
                                           (int)p->category, "held", (json_int_t)p->held,
                                           "captured", (json_int_t)p->captured, "refunded",
                                           (json_int_t)p->refunded));
    }
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return text;
}

static void get_str(json_t *o, const char *key, char *dst, size_t dst_bytes) {
    const char *v = json_string_value(json_object_get(o, key));
    snprintf(dst, dst_bytes, "%s", v ? v : "");
}

static int64_t get_int(json_t *o, const char *key) {
    return (int64_t)json_integer_value(json_object_get(o, key));
}

static void items_load(cg_charge *c, const char *text) {
    json_t *a = json_loads(text, 0, NULL);
    c->item_count = 0;
    for (size_t i = 0; i < json_array_size(a) && c->item_count < CG_DECISION_ITEMS_MAX; i++) {
        json_t *o = json_array_get(a, i);
        cg_charge_item *it = &c->items[c->item_count++];
        get_str(o, "kind", it->kind, sizeof it->kind);
        get_str(o, "model", it->model, sizeof it->model);
        get_str(o, "variant", it->variant, sizeof it->variant);
        it->count = get_int(o, "count");
        it->unlimited = json_is_true(json_object_get(o, "unlimited"));
        it->credits = get_int(o, "credits");
        get_str(o, "benefit", it->benefit, sizeof it->benefit);
        get_str(o, "reason_code", it->reason_code, sizeof it->reason_code);
        get_str(o, "reason", it->reason, sizeof it->reason);
    }
    json_decref(a);
}

static void parts_load(cg_charge *c, const char *text) {
    json_t *a = json_loads(text, 0, NULL);
    c->part_count = 0;
    for (size_t i = 0; i < json_array_size(a) && c->part_count < CG_CHARGE_PARTS_MAX; i++) {
        json_t *o = json_array_get(a, i);
        cg_charge_part *p = &c->parts[c->part_count++];
        get_str(o, "grant_id", p->grant_id, sizeof p->grant_id);
        p->source = (cg_grant_source)get_int(o, "source");
        p->category = (cg_grant_category)get_int(o, "category");
        p->held = get_int(o, "held");
        p->captured = get_int(o, "captured");
        p->refunded = get_int(o, "refunded");
    }
    json_decref(a);
}

static void read_charge(const PGresult *r, int row, cg_charge *c) {
    memset(c, 0, sizeof *c);
    col_text(r, row, 0, c->member_id, sizeof c->member_id);
    col_text(r, row, 1, c->charge_id, sizeof c->charge_id);
    c->status = (cg_charge_status)col_int(r, row, 2);
    col_text(r, row, 3, c->model, sizeof c->model);
    col_text(r, row, 4, c->variant, sizeof c->variant);
    c->count = col_int(r, row, 5);
    col_text(r, row, 6, c->agent_model, sizeof c->agent_model);
    col_text(r, row, 7, c->agent_kind, sizeof c->agent_kind);
    col_text(r, row, 8, c->prompt, sizeof c->prompt);
    c->at_us = col_int(r, row, 9);
    col_text(r, row, 10, c->plan, sizeof c->plan);
    col_text(r, row, 11, c->billing, sizeof c->billing);
    c->joined_at_us = col_int(r, row, 12);
    col_text(r, row, 13, c->policy_version, sizeof c->policy_version);
    items_load(c, PQgetvalue(r, row, 14));
    c->credits = col_int(r, row, 15);
    c->held = col_int(r, row, 16);
    c->captured = col_int(r, row, 17);
    c->refunded = col_int(r, row, 18);
    parts_load(c, PQgetvalue(r, row, 19));
    c->created_at_us = col_int(r, row, 20);
    c->expires_at_us = col_int(r, row, 21);
    c->settled_at_us = col_int(r, row, 22);
}

static int pg_charge_insert(cg_store *store, const cg_charge *c, cg_err *err) {
    pg_store *s = from(store);
    int rc = lock_member(s, c->member_id, err);
    if (rc) return rc;
    char *items = items_dump(c), *parts = parts_dump(c);
    if (!items || !parts) {
        free(items);
        free(parts);
        return cg_err_set(err, CG_ENOMEM, "out of memory writing a charge");
    }
    params p = {0};
    p_text(&p, c->member_id);
    p_text(&p, c->charge_id);
    p_int(&p, c->status);
    p_text(&p, c->model);
    p_text(&p, c->variant);
    p_int(&p, c->count);
    p_text(&p, c->agent_model);
    p_text(&p, c->agent_kind);
    p_text(&p, c->prompt);
    p_int(&p, c->at_us);
    p_text(&p, c->plan);
    p_text(&p, c->billing);
    p_int(&p, c->joined_at_us);
    p_text(&p, c->policy_version);
    p_text(&p, items);
    p_int(&p, c->credits);
    p_int(&p, c->held);
    p_int(&p, c->captured);
    p_int(&p, c->refunded);
    p_text(&p, parts);
    p_int(&p, c->created_at_us);
    p_int(&p, c->expires_at_us);
    p_int(&p, c->settled_at_us);
    rc = send_stmt(s, ST_CHARGE_INSERT, &p, err); /* libpq has copied the values */
    free(items);
    free(parts);
    return rc;
}

static void read_charge_row(const PGresult *r, void *out) { read_charge(r, 0, out); }

static int pg_charge_get(cg_store *store, const char *member_id, const char *charge_id,
                         cg_charge *out, cg_err *err) {
    return object_get(from(store), ST_CHARGE_GET, member_id, charge_id, "charge",
                      read_charge_row, out, err);
}

static int pg_charge_update(cg_store *store, const cg_charge *c, cg_err *err) {
    pg_store *s = from(store);
    int rc = lock_member(s, c->member_id, err);
    if (rc) return rc;
    char *parts = parts_dump(c);
    if (!parts) return cg_err_set(err, CG_ENOMEM, "out of memory writing a charge");
    params p = {0};
    p_text(&p, c->member_id);
    p_text(&p, c->charge_id);
    p_int(&p, c->status);
    p_int(&p, c->held);
    p_int(&p, c->captured);
    p_int(&p, c->refunded);
    p_text(&p, parts);
    p_int(&p, c->settled_at_us);
    rc = send_stmt(s, ST_CHARGE_UPDATE, &p, err);
    free(parts);
    return rc;
}

static int pg_charges_page(cg_store *store, const char *member_id, int64_t before_at_us,
                           const char *before_id, int limit, cg_charge *out, int *count,
                           cg_err *err) {
    pg_store *s = from(store);
    bool first = !before_id || !*before_id;
    params p = {0};
    p_text(&p, member_id);
    if (!first) {
        p_int(&p, before_at_us);
        p_text(&p, before_id);
    }
    p_int(&p, limit);
    PGresult *r;
    *count = 0;
    int rc = member_query(s, first ? ST_CHARGES_FIRST : ST_CHARGES_AFTER, member_id, &p, &r,
                          err);
    if (rc) return rc;
    int n = PQntuples(r) < limit ? PQntuples(r) : limit;
    for (int i = 0; i < n; i++) read_charge(r, i, &out[i]);
    PQclear(r);
    *count = n;
    return CG_OK;
}

static int pg_charges_due(cg_store *store, int64_t now_us, cg_store_ref *out, int max,
                          int *count, cg_err *err) {
    return list_refs(from(store), ST_CHARGES_DUE, now_us, out, max, count, err);
}

/* ---- journal ---- */

static int pg_journal_last_seq(cg_store *store, const char *member_id, int64_t *seq,
                               cg_err *err) {
    pg_store *s = from(store);
    params p = {0};
    p_text(&p, member_id);
    PGresult *r;
    *seq = 0;
    int rc = member_query(s, ST_JOURNAL_LAST, member_id, &p, &r, err);
    if (rc) return rc;
    *seq = col_int(r, 0, 0);
    PQclear(r);
    return CG_OK;
}

static int pg_journal_append(cg_store *store, const cg_journal_entry *e, cg_err *err) {
    pg_store *s = from(store);
    int rc = lock_member(s, e->member_id, err);
    if (rc) return rc;
    params p = {0};
    p_text(&p, e->member_id);
    p_int(&p, e->seq);
    p_int(&p, e->at_us);
    p_int(&p, e->kind);
    p_text(&p, e->grant_id);
    p_text(&p, e->charge_id);
    p_int(&p, e->delta_remaining);
    p_int(&p, e->delta_held);
    p_text(&p, e->note);
    return send_stmt(s, ST_JOURNAL_APPEND, &p, err);
}

static void read_entry(const PGresult *r, int row, cg_journal_entry *e) {
    memset(e, 0, sizeof *e);
    col_text(r, row, 0, e->member_id, sizeof e->member_id);
    e->seq = col_int(r, row, 1);
    e->at_us = col_int(r, row, 2);
    e->kind = (cg_journal_kind)col_int(r, row, 3);
    col_text(r, row, 4, e->grant_id, sizeof e->grant_id);
    col_text(r, row, 5, e->charge_id, sizeof e->charge_id);
    e->delta_remaining = col_int(r, row, 6);
    e->delta_held = col_int(r, row, 7);
    col_text(r, row, 8, e->note, sizeof e->note);
}

static int pg_journal_page(cg_store *store, const char *member_id, int64_t after_seq,
                           int limit, cg_journal_entry *out, int *count, cg_err *err) {
    pg_store *s = from(store);
    params p = {0};
    p_text(&p, member_id);
    p_int(&p, after_seq);
    p_int(&p, limit);
    PGresult *r;
    int rc = member_query(s, ST_JOURNAL_PAGE, member_id, &p, &r, err);
    if (rc) return rc;
    int n = PQntuples(r) < limit ? PQntuples(r) : limit;
    for (int i = 0; i < n; i++) read_entry(r, i, &out[i]);
    PQclear(r);
    *count = n;
    return CG_OK;
}

/* ---- idempotency ---- */

static int hex_nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* bytea in text form is "\x" + hex. */
static void read_hash(const char *text, uint8_t *out, size_t out_bytes) {
    memset(out, 0, out_bytes);
    if (strncmp(text, "\\x", 2) != 0 || strlen(text) != 2 + 2 * out_bytes) return;
    for (size_t i = 0; i < out_bytes; i++) {
        int hi = hex_nibble(text[2 + 2 * i]), lo = hex_nibble(text[3 + 2 * i]);
        if (hi < 0 || lo < 0) return;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
}

static int pg_idem_get(cg_store *store, const char *member_id, const char *key,
                       cg_store_idem *out, cg_err *err) {
    pg_store *s = from(store);
    params p = {0};
    p_text(&p, member_id);
    p_text(&p, key);
    PGresult *r;
    int rc = member_query(s, ST_IDEM_GET, member_id, &p, &r, err);
    if (rc) return rc;
    bool found = PQntuples(r) > 0;
    if (found) {
        memset(out, 0, sizeof *out);
        col_text(r, 0, 0, out->member_id, sizeof out->member_id);
        col_text(r, 0, 1, out->key, sizeof out->key);
        out->op = (int)col_int(r, 0, 2);
        read_hash(PQgetvalue(r, 0, 3), out->request_hash, sizeof out->request_hash);
        col_text(r, 0, 4, out->object_id, sizeof out->object_id);
        out->created_at_us = col_int(r, 0, 5);
    }
    PQclear(r);
    if (found) return CG_OK;
    return cg_err_set(err, CG_ENOTFOUND, "unknown idempotency key");
}

static int pg_idem_insert(cg_store *store, const cg_store_idem *row, cg_err *err) {
    pg_store *s = from(store);
    int rc = lock_member(s, row->member_id, err);
    if (rc) return rc;
    params p = {0};
    p_text(&p, row->member_id);
    p_text(&p, row->key);
    p_int(&p, row->op);
    p_bytes(&p, row->request_hash, (int)sizeof row->request_hash);
    p_text(&p, row->object_id);
    p_int(&p, row->created_at_us);
    return send_stmt(s, ST_IDEM_INSERT, &p, err);
}

/* One round trip: insert the key, or learn it exists (then read it, a second one). */
static int pg_idem_claim(cg_store *store, const cg_store_idem *row, bool *claimed,
                         cg_store_idem *existing, cg_err *err) {
    pg_store *s = from(store);
    params p = {0};
    p_text(&p, row->member_id);
    p_text(&p, row->key);
    p_int(&p, row->op);
    p_bytes(&p, row->request_hash, (int)sizeof row->request_hash);
    p_text(&p, row->object_id);
    p_int(&p, row->created_at_us);
    PGresult *r;
    *claimed = false;
    int rc = member_query(s, ST_IDEM_CLAIM, row->member_id, &p, &r, err);
    if (rc) return rc;
    *claimed = PQntuples(r) == 1;
    PQclear(r);
    if (*claimed) return CG_OK;
    return pg_idem_get(store, row->member_id, row->key, existing, err);
}

static int pg_idem_purge(cg_store *store, int64_t before_us, int max, int *deleted,
                         cg_err *err) {
    pg_store *s = from(store);
    params p = {0};
    p_int(&p, before_us);
    p_int(&p, max);
    PGresult *r;
    *deleted = 0;
    int rc = query(s, ST_IDEM_PURGE, &p, &r, err);
    if (rc) return rc;
    *deleted = atoi(PQcmdTuples(r));
    PQclear(r);
    return CG_OK;
}

/* ---- verify scans: streamed row by row (single-row mode), memory stays flat ---- */

typedef void (*row_fn)(const PGresult *r, void *ctx, int *stop);

static int scan(pg_store *s, int id, row_fn fn, void *ctx, cg_err *err) {
    int rc = drain(s, 0, err);
    if (rc) return rc;
    if ((rc = send_stmt(s, id, NULL, err))) return rc;
    if ((rc = flush_out(s, err))) return rc;
    PQsetSingleRowMode(s->conn);
    s->pend_head = (s->pend_head + 1) % PG_PENDING_MAX;
    s->pend_count = 0;
    int stop = 0;
    PGresult *res;
    while ((res = get_result(s, wait_ms_for(s, id))) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE && !stop) fn(res, ctx, &stop);
        else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && !rc) {
            s->aborted = true;
            rc = fail_result(s, res, err, statement_sql[id]);
        }
        PQclear(res);
    }
    if (!rc && s->broken) return unavailable(s, err); /* cut short: the rows seen are not all */
    return rc ? rc : stop;
}

static void read_sum(const PGresult *r, int col, const char *member_id, const char *object_id,
                     cg_store_sum *sum) {
    snprintf(sum->member_id, sizeof sum->member_id, "%s", member_id);
    snprintf(sum->object_id, sizeof sum->object_id, "%s", object_id);
    sum->delta_remaining = col_int(r, 0, col);
    sum->delta_held = col_int(r, 0, col + 1);
    sum->entries = col_int(r, 0, col + 2);
}

typedef struct grant_scan {
    cg_store_grant_fn fn;
    void *ctx;
} grant_scan;

static void grant_row(const PGresult *r, void *ctx, int *stop) {
    grant_scan *g = ctx;
    cg_grant grant;
    cg_store_sum sum;
    read_grant(r, 0, &grant);
    read_sum(r, 13, grant.member_id, grant.grant_id, &sum);
    *stop = g->fn(g->ctx, &grant, &sum);
}

static int pg_scan_grants(cg_store *store, cg_store_grant_fn fn, void *ctx, cg_err *err) {
    grant_scan g = {fn, ctx};
    return scan(from(store), ST_SCAN_GRANTS, grant_row, &g, err);
}

typedef struct charge_scan {
    cg_store_charge_fn fn;
    void *ctx;
    cg_charge *charge; /* ~13 KB: off the writer's stack */
} charge_scan;

static void charge_row(const PGresult *r, void *ctx, int *stop) {
    charge_scan *c = ctx;
    cg_store_sum sum;
    read_charge(r, 0, c->charge);
    read_sum(r, 23, c->charge->member_id, c->charge->charge_id, &sum);
    *stop = c->fn(c->ctx, c->charge, &sum);
}

static int pg_scan_charges(cg_store *store, cg_store_charge_fn fn, void *ctx, cg_err *err) {
    charge_scan c = {fn, ctx, malloc(sizeof(cg_charge))};
    if (!c.charge) return cg_err_set(err, CG_ENOMEM, "out of memory scanning charges");
    int rc = scan(from(store), ST_SCAN_CHARGES, charge_row, &c, err);
    free(c.charge);
    return rc;
}

static int pg_count_entries(cg_store *store, int64_t *entries, cg_err *err) {
    PGresult *r;
    *entries = 0;
    int rc = query(from(store), ST_COUNT_ENTRIES, NULL, &r, err);
    if (rc) return rc;
    *entries = col_int(r, 0, 0);
    PQclear(r);
    return CG_OK;
}

/* ---- open / close ---- */

static void pg_close(cg_store *store) {
    if (!store) return;
    pg_store *s = from(store);
    PQfinish(s->conn);
    free(s);
}

static const cg_store_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit,
    .sync = pg_sync,
    .rollback = pg_rollback,
    .savepoint = pg_savepoint,
    .savepoint_release = pg_release,
    .savepoint_rollback = pg_rollback_to,
    .member_insert = pg_member_insert,
    .member_at = pg_member_at,
    .member_versions = pg_member_versions,
    .grant_insert = pg_grant_insert,
    .grant_get = pg_grant_get,
    .grants_open = pg_grants_open,
    .grant_update = pg_grant_update,
    .grants_due = pg_grants_due,
    .charge_insert = pg_charge_insert,
    .charge_get = pg_charge_get,
    .charge_update = pg_charge_update,
    .charges_due = pg_charges_due,
    .journal_last_seq = pg_journal_last_seq,
    .journal_append = pg_journal_append,
    .journal_page = pg_journal_page,
    .idem_get = pg_idem_get,
    .idem_insert = pg_idem_insert,
    .idem_purge = pg_idem_purge,
    .scan_grants = pg_scan_grants,
    .scan_charges = pg_scan_charges,
    .count_entries = pg_count_entries,
    .idem_claim = pg_idem_claim,
    /* data_version stays NULL: other servers commit to this database at any moment, so the
     * ledger must not keep member state in memory (store.h). */
    .charges_page = pg_charges_page,
    .grant_update_credits = pg_grant_update_credits,
};

/* Collects every result of what was just sent outside the pipeline, each awaited at most
 * s->setup_wait_ms; *out (when not NULL) keeps the last one. The first failure is returned. */
static int collect(pg_store *s, PGresult **out, cg_err *err, const char *what) {
    int rc = CG_OK;
    PGresult *res;
    while ((res = get_result(s, s->setup_wait_ms)) != NULL) {
        if (!rc && !result_ok(res)) rc = fail_result(s, res, err, what);
        if (out && !rc) {
            PQclear(*out);
            *out = res;
        } else {
            PQclear(res);
        }
    }
    if (!rc && s->broken) rc = unavailable(s, err);
    if (rc && out) {
        PQclear(*out);
        *out = NULL;
    }
    return rc;
}

/* Runs SQL outside the pipeline (open, migrations and reconnects only); *out as in collect. */
static int exec_result(pg_store *s, const char *sql, PGresult **out, cg_err *err) {
    if (out) *out = NULL;
    if (s->broken) return unavailable(s, err);
    if (!PQsendQuery(s->conn, sql)) return fail_result(s, NULL, err, "setup");
    return collect(s, out, err, "setup");
}

static int exec_sql(pg_store *s, const char *sql, cg_err *err) {
    return exec_result(s, sql, NULL, err);
}

static int schema_version(pg_store *s, int *version, cg_err *err) {
    int rc = exec_sql(s, "CREATE TABLE IF NOT EXISTS creditgate_schema (version integer NOT NULL)",
                      err);
    if (rc) return rc;
    PGresult *r;
    rc = exec_result(s, "SELECT coalesce(max(version), 0) FROM creditgate_schema", &r, err);
    if (rc) return rc;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        rc = fail_result(s, r, err, "read schema version");
        PQclear(r);
        return rc;
    }
    *version = (int)col_int(r, 0, 0);
    PQclear(r);
    return CG_OK;
}

/* Applies every migration past the database's version, each in its own transaction. The
 * caller holds the migration lock. */
static int migrate_locked(pg_store *s, cg_err *err) {
    int version = 0;
    int rc = schema_version(s, &version, err);
    if (rc) return rc;
    if (version > MIGRATION_COUNT)
        return cg_err_set(err, CG_EINVAL, "database schema version %d is newer than this "
                          "creditgate (%d); upgrade creditgate", version, MIGRATION_COUNT);
    for (int v = version; v < MIGRATION_COUNT; v++) {
        char bump[96];
        snprintf(bump, sizeof bump, "INSERT INTO creditgate_schema (version) VALUES (%d)", v + 1);
        if ((rc = exec_sql(s, "BEGIN", err))) return rc;
        if ((rc = exec_sql(s, migrations[v], err)) || (rc = exec_sql(s, bump, err))) {
            exec_sql(s, "ROLLBACK", NULL);
            return rc;
        }
        if ((rc = exec_sql(s, "COMMIT", err))) return rc;
    }
    return CG_OK;
}

/* Creates the schema (if one was named) and migrates, under a session advisory lock so two
 * servers starting together apply each migration once. */
static int migrate(pg_store *s, const char *schema, cg_err *err) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", (long long)PG_MIGRATION_LOCK_KEY);
    int rc = exec_sql(s, sql, err);
    if (rc) return rc;
    if (schema[0]) {
        char *ident = PQescapeIdentifier(s->conn, schema, strlen(schema));
        if (!ident) {
            rc = cg_err_set(err, CG_EINVAL, "bad schema name '%s'", schema);
        } else {
            snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s; SET search_path TO %s",
                     ident, ident);
            PQfreemem(ident);
            rc = exec_sql(s, sql, err);
        }
    }
    if (!rc) rc = migrate_locked(s, err);
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", (long long)PG_MIGRATION_LOCK_KEY);
    cg_err ignored;
    exec_sql(s, sql, &ignored);
    return rc;
}

/* Prepares every statement, then switches to pipeline mode and non-blocking sends (a server
 * that stops reading must not block the writer in send()). */
static int prepare_all(pg_store *s, cg_err *err) {
    for (int i = 0; i < ST_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        int rc = PQsendPrepare(s->conn, name, statement_sql[i], 0, NULL)
                     ? collect(s, NULL, err, statement_sql[i])
                     : fail_result(s, NULL, err, statement_sql[i]);
        if (rc) return rc;
    }
    if (PQenterPipelineMode(s->conn) != 1 || PQsetnonblocking(s->conn, 1) != 0)
        return cg_err_set(err, CG_EIO, "postgres: cannot enter non-blocking pipeline mode");
    return CG_OK;
}

/* Connects with bounded waits and sets the session up; not yet prepared. The defaults come
 * before the DSN, so a DSN that sets connect_timeout or keepalives wins. */
static int connect_session(pg_store *s, int wait_ms, cg_err *err) {
    assert(!s->conn && !s->broken);
    char tcp_user_timeout[24], sql[256];
    snprintf(tcp_user_timeout, sizeof tcp_user_timeout, "%d", 5 * s->wait_ms);
    const char *const keys[] = {"connect_timeout", "keepalives", "keepalives_idle",
                                "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                                "dbname", NULL};
    const char *const values[] = {PG_CONNECT_TIMEOUT_S, "1", "5", "2", "3", tcp_user_timeout,
                                  s->conninfo, NULL};
    s->conn = PQconnectdbParams(keys, values, 1);
    if (!s->conn) return cg_err_set(err, CG_ENOMEM, "out of memory connecting to PostgreSQL");
    if (PQstatus(s->conn) != CONNECTION_OK) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->conn));
        msg[strcspn(msg, "\n")] = 0;
        return cg_err_set(err, CG_EUNAVAILABLE, "cannot connect to PostgreSQL: %s", msg);
    }
    s->setup_wait_ms = wait_ms;
    int rc = exec_sql(s, "SET client_min_messages = warning", err);
    if (!rc && s->schema[0]) {
        char *ident = PQescapeIdentifier(s->conn, s->schema, strlen(s->schema));
        if (!ident) return cg_err_set(err, CG_EINVAL, "bad schema name '%s'", s->schema);
        snprintf(sql, sizeof sql, "SET search_path TO %s", ident);
        PQfreemem(ident);
        rc = exec_sql(s, sql, err);
    }
    return rc;
}

/* The session's own limits, set after the migrations (whose lock may rightly be waited for
 * while another server migrates). The server gives up on a lock (another session's, or a
 * stuck server's orphan) before we give up on the server, so a lock wait fails one call and
 * keeps the connection; on PostgreSQL 14+ a backend whose client gave up stops its query
 * within a second. */
static int session_limits(pg_store *s, cg_err *err) {
    char sql[96];
    snprintf(sql, sizeof sql, "SET lock_timeout = %d", s->wait_ms * 3 / 4);
    int rc = exec_sql(s, sql, err);
    if (!rc && PQserverVersion(s->conn) >= 140000) {
        snprintf(sql, sizeof sql, "SET client_connection_check_interval = %d",
                 PG_CHECK_INTERVAL_MS);
        rc = exec_sql(s, sql, err);
    }
    return rc;
}

/* Splits "cg_schema=NAME" and "cg_wait_ms=N" out of the DSN's query string (libpq refuses
 * unknown parameters) into s->schema and s->wait_ms; the rest goes to s->conninfo. */
static int split_dsn(pg_store *s, const char *dsn, cg_err *err) {
    char *conninfo = s->conninfo, *schema = s->schema;
    size_t conninfo_bytes = sizeof s->conninfo;
    schema[0] = 0;
    s->wait_ms = PG_WAIT_MS_DEFAULT;
    if (strlen(dsn) >= conninfo_bytes)
        return cg_err_set(err, CG_ELIMIT, "database DSN longer than %d bytes",
                          CG_STORE_DSN_BYTES_MAX);
    snprintf(conninfo, conninfo_bytes, "%s", dsn);
    char *q = strchr(conninfo, '?');
    if (!q) return CG_OK;
    char kept[CG_STORE_DSN_BYTES_MAX] = "";
    size_t kept_len = 0;
    for (char *tok = strtok(q + 1, "&"); tok; tok = strtok(NULL, "&")) {
        if (!strncmp(tok, "cg_schema=", 10)) {
            if (strlen(tok + 10) >= PG_SCHEMA_BYTES_MAX || !tok[10])
                return cg_err_set(err, CG_EINVAL, "cg_schema must be 1..%d bytes",
                                  PG_SCHEMA_BYTES_MAX - 1);
            snprintf(schema, PG_SCHEMA_BYTES_MAX, "%s", tok + 10);
            continue;
        }
        if (!strncmp(tok, "cg_wait_ms=", 11)) {
            char *end;
            long ms = strtol(tok + 11, &end, 10);
            if (*end || end == tok + 11 || ms < PG_WAIT_MS_MIN || ms > PG_WAIT_MS_MAX)
                return cg_err_set(err, CG_EINVAL, "cg_wait_ms must be %d..%d", PG_WAIT_MS_MIN,
                                  PG_WAIT_MS_MAX);
            s->wait_ms = (int)ms;
            continue;
        }
        kept_len += (size_t)snprintf(kept + kept_len, sizeof kept - kept_len, "%s%s",
                                     kept_len ? "&" : "", tok);
    }
    if (kept_len) snprintf(q + 1, conninfo_bytes - (size_t)(q + 1 - conninfo), "%s", kept);
    else *q = 0;
    return CG_OK;
}

int cg_store_pg_open(const char *dsn, cg_store **out, cg_err *err) {
    assert(dsn && out);
    *out = NULL;
    pg_store *s = calloc(1, sizeof *s);
    if (!s) return cg_err_set(err, CG_ENOMEM, "out of memory opening %s", dsn);
    s->base.ops = &pg_ops;
    int rc = split_dsn(s, dsn, err);
    /* Migrations may wait for another server's migration lock: a longer wait than a call's. */
    if (!rc) rc = connect_session(s, PG_OPEN_WAIT_MS, err);
    if (!rc) rc = migrate(s, s->schema, err);
    s->setup_wait_ms = s->wait_ms;
    if (!rc) rc = session_limits(s, err);
    if (!rc) rc = prepare_all(s, err);
    if (rc) {
        pg_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return CG_OK;
}
