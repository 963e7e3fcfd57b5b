/* internal.h — what the files of src/http/ share and nobody else sees: the server value, the
 * per-request context, the policy snapshot, auth, metrics and JSON body checking.
 * server.c owns the daemon and routing; routes_*.c hold the handlers; auth.c, metrics.c,
 * body.c and snapshot.c are the pieces they use. */
#ifndef CREDITGATE_HTTP_INTERNAL_H
#define CREDITGATE_HTTP_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "creditgate/engine.h"
#include "creditgate/http.h"
#include "creditgate/ledger.h"
#include "creditgate/policy.h"


/* ---- auth --------------------------------------------------------------------------------- */

typedef enum role { ROLE_NONE = 0, ROLE_MEMBER, ROLE_SERVICE, ROLE_ADMIN } role;

typedef struct key_entry {
    char name[CG_HTTP_KEY_NAME_BYTES_MAX];
    role role;
    unsigned char hash[32]; /* SHA-256 of the key text */
} key_entry;

typedef struct keyring {
    key_entry keys[CG_HTTP_KEYS_MAX];
    int count;
    unsigned char token_secret[CG_HTTP_TOKEN_SECRET_BYTES];
} keyring;

typedef struct principal {
    role role;
    char name[CG_HTTP_KEY_NAME_BYTES_MAX];     /* key name, never the key */
    char member_id[CG_HTTP_ID_BYTES_MAX];      /* for ROLE_MEMBER */
    int64_t expires_at_us;                     /* a member token's expiry; INT64_MAX for keys */
} principal;

int keyring_load(keyring *ring, const char *keys_path, const char *secret_path, cg_err *err);
/* Checks "Bearer ..." against the keys (constant time) or as a member token. */
int keyring_authenticate(const keyring *ring, const char *authorization, int64_t now_us,
                         principal *out, cg_err *err);
int token_mint(const keyring *ring, const char *member_id, int64_t expires_at_us, char *buf,
               size_t buf_bytes);
const char *role_name(role r);

/* ---- snapshot: policy, engine and keys, refcounted so a reload never frees what a request
 * still reads. A request takes one reference for its whole life (req.snap). ---------------- */

typedef struct file_stamp {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
} file_stamp;

typedef struct snapshot {
    atomic_int refs;
    uint64_t generation;  /* random, never 0: tells one snapshot's keys from the next */
    cg_policy_set set;
    cg_engine engine;
    int32_t utc_offset_s; /* of the newest version: how `at` dates without offset are read */
    char label[CG_POLICY_VERSIONS_MAX * 8];
    file_stamp stamps[CG_HTTP_POLICY_FILES_MAX];
    keyring keys;         /* re-read with the policy: SIGHUP also rotates service keys */
} snapshot;

/* Loads policy files, engine and keys. Without a token secret file the random secret of prev
 * (NULL at start) carries over, so member tokens survive a reload. */
int snapshot_load(const cg_http_config *config, const snapshot *prev, snapshot **out,
                  cg_err *err);
void snapshot_release(snapshot *snap);
/* Compares the policy files with stamps taken earlier (at load, or at a failed attempt). */
bool stamps_changed(const cg_http_config *config, const file_stamp *seen);
void stamps_take(const cg_http_config *config, file_stamp *out);

/* ---- metrics ------------------------------------------------------------------------------ */

#define ROUTES_MAX 32
#define STATUS_SLOTS 20
#define LATENCY_BUCKETS 14
#define LABELLED_MAX 1024 /* distinct (model, benefit, outcome) series kept */

typedef struct labelled {
    char key[160];                /* rendered label set; written once, before count covers it */
    atomic_uint_fast64_t value;
} labelled;

typedef struct metrics {
    atomic_uint_fast64_t requests[ROUTES_MAX + 1][STATUS_SLOTS]; /* +1: unrouted */
    atomic_uint_fast64_t latency[ROUTES_MAX + 1][LATENCY_BUCKETS];
    atomic_uint_fast64_t latency_sum_us[ROUTES_MAX + 1];
    atomic_int_fast64_t holds_outstanding;
    atomic_uint_fast64_t reloads_ok, reloads_failed;
    atomic_uint_fast64_t deadline_cuts; /* connections cut at their total request deadline */
    /* The labelled tables only grow: a series, once counted, keeps its slot. Counting an
       existing series is lock-free (scan up to count, atomic add); lock serialises adding one. */
    pthread_mutex_t lock;
    labelled decisions[LABELLED_MAX];
    atomic_int decision_count;
    labelled charges[LABELLED_MAX];
    atomic_int charge_count;
    labelled credits[LABELLED_MAX];
    atomic_int credit_count;
} metrics;

void metrics_init(metrics *m);
void metrics_free(metrics *m);
void metrics_request(metrics *m, int route, int status, int64_t latency_us);
/* One decided item: outcome unlimited/charged by model and benefit. */
void metrics_decision(metrics *m, const char *model, const char *benefit, bool unlimited);
void metrics_charge(metrics *m, const char *model, int64_t credits);
/* Renders the Prometheus text exposition; caller frees. */
/* ledger: the ledger's figures (holds, caches, batches), NULL without a ledger. */
char *metrics_render(metrics *m, const char *const *route_names, int route_count,
                     const char *policy_label, const cg_ledger_stats *ledger);

/* ---- per connection (conn.c) --------------------------------------------------------------- */

/* "Bearer " and the longest member token: longer Authorization headers are never cached. */
#define AUTH_CACHE_BYTES_MAX (CG_HTTP_TOKEN_BYTES_MAX + 16)

typedef struct conn_state {
    struct conn_state *prev, *next; /* the server's list, under conns_lock */
    int fd;
    /* The next request must have arrived whole (headers and body) by then; 0 while a handler
       runs. Written by the connection's thread, read by the watchdog. */
    _Atomic int64_t deadline_at_us;
    /* The last credential this connection proved; only the connection's own thread. */
    uint64_t auth_generation; /* snapshot.generation it was checked under; 0: none */
    size_t auth_bytes;
    char auth_text[AUTH_CACHE_BYTES_MAX];
    principal auth_who;
    /* The quote's answer is written here rather than into a fresh 4 KiB block per request
       (malloc of that size consolidated the heap: ~1% of a quote). libmicrohttpd runs one
       request of a connection at a time and sends its response whole before it reads the next,
       so the buffer is free again whenever a handler runs. NULL until the first quote; at most
       connections_max of them (16 MiB at the default 4,096 connections). */
    char *reply_buf;
} conn_state;

struct cg_http_server;
int conns_init(struct cg_http_server *srv);
int conns_watch_start(struct cg_http_server *srv);
void conns_free(struct cg_http_server *srv); /* after MHD_stop_daemon */
void conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                 enum MHD_ConnectionNotificationCode code);
conn_state *conn_of(struct MHD_Connection *conn);
void conn_request_whole(conn_state *cs);                           /* the handler starts */
void conn_request_done(struct cg_http_server *srv, conn_state *cs, int64_t now_us); /* the next one's clock */
/* The connection's reply buffer of CG_DECISION_JSON_BYTES_MAX (see conn_state), or NULL. */
char *conn_reply_buffer(conn_state *cs);
bool conn_auth_cached(const conn_state *cs, const snapshot *snap, const char *authz,
                      int64_t now_us, principal *who);
void conn_auth_remember(conn_state *cs, const snapshot *snap, const char *authz,
                        const principal *who);

/* ---- the server --------------------------------------------------------------------------- */

struct cg_http_server {
    cg_http_config config;
    struct MHD_Daemon *daemon;
    uint16_t port;
    char *openapi_text;
    size_t openapi_bytes;
    int log_fd;              /* -1: access log off */
    bool log_close;
    /* The policy in force. Readers take a reference under snap_lock; reload swaps. */
    pthread_mutex_t snap_lock;
    snapshot *snap;
    /* Requests hold ledger_lock for reading around each ledger call; a reload takes it for
       writing to point the ledger at the new engine (cg_ledger_set_engine) between calls. */
    pthread_rwlock_t ledger_lock;
    cg_ledger *ledger;
    pthread_mutex_t reload_lock; /* one reload at a time */
    file_stamp seen[CG_HTTP_POLICY_FILES_MAX]; /* last stamps tried, good or broken */
    atomic_int inflight;
    atomic_uint_fast64_t request_seq; /* X-Request-Id */
    atomic_bool draining;
    atomic_bool ledger_failed; /* a write could not be made durable (CG_EIO): /readyz says 503 */
    metrics metrics;
    /* Open connections and the watchdog that enforces their deadlines (conn.c). */
    pthread_mutex_t conns_lock;
    conn_state *conns;
    bool conns_ready;
    pthread_mutex_t watch_lock;
    pthread_cond_t watch_cond;
    pthread_t watch_thread;
    bool watch_stop, watch_running;
};

/* ---- one request -------------------------------------------------------------------------- */

#define PARAMS_MAX 1

typedef struct req {
    cg_http_server *srv;
    struct MHD_Connection *conn;
    conn_state *cs;                 /* NULL only if the connection's state could not be made */
    int route;                      /* index in the route table, -1 when none */
    char params[PARAMS_MAX][CG_HTTP_ID_BYTES_MAX];
    char *body;
    size_t body_bytes;
    size_t body_cap;
    bool body_too_large;
    bool answered;
    int64_t started_at_us;
    int status;
    principal who;
    struct snapshot *snap;          /* the policy and keys this request uses, start to end */
    char member_id[CG_HTTP_ID_BYTES_MAX]; /* for the access log */
    char request_id[24];
    char method[16];
    char path[192];                 /* for the access log; no query string, so no secrets */
    /* response under construction */
    json_t *out;
    const char *out_text;           /* static or owned text body */
    char *out_text_owned;
    size_t out_text_bytes;
    const char *content_type;
    bool replayed;
    char allow[64];                 /* 405: the Allow header */
} req;

typedef int (*handler_fn)(req *r);

/* Answers with {"error": {...}}. Returns status so handlers can `return fail(...)`. */
int fail(req *r, int status, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Maps a cg_err from the engine or ledger to a status and error body. */
int fail_err(req *r, const cg_err *err);
/* Sets a JSON response (takes the reference). */
int reply(req *r, int status, json_t *body);

/* Query parameter or NULL. */
const char *query_arg(req *r, const char *name);
/* Request header or NULL. */
const char *header_value(req *r, const char *name);

snapshot *snapshot_acquire(cg_http_server *srv);
/* The route patterns in table order, for the metrics labels. */
const char *const *route_pattern_names(int *count);

/* Ledger calls run with the read side held; NULL when the server runs without a ledger. */
cg_ledger *ledger_enter(req *r);
void ledger_leave(req *r);

/* ---- JSON bodies -------------------------------------------------------------------------- */

typedef enum field_type { F_STR, F_INT, F_OBJ, F_BOOL } field_type;

typedef struct field_spec {
    const char *name;
    field_type type;
    bool required;
    bool nullable;
    int64_t min, max;               /* F_INT range; F_STR length in bytes (max 0: config) */
    const struct field_spec *sub;   /* F_OBJ: its fields, terminated by name NULL */
} field_spec;

/* The `agent` object of a quote or a charge body (routes_core.c): {model, kind, prompt}. */
enum { AGENT_MODEL, AGENT_KIND, AGENT_PROMPT };
extern const field_spec agent_fields[];

/* Parses the body as one JSON object checked against spec: malformed JSON, too deep, unknown
 * fields, wrong types, out-of-range numbers, too-long strings all fail naming the field.
 * An empty body is `{}`. */
int body_parse(req *r, const field_spec *spec, json_t **out);
/* Deepest [ / { nesting outside strings in text; stops counting once over max. */
int body_depth_scan(const char *text, size_t bytes, int max);
/* Small accessors for validated bodies (NULL / dflt when absent or null). */
const char *jstr(json_t *obj, const char *name);
int64_t jint(json_t *obj, const char *name, int64_t dflt);

/* What a body's values may be, from the server's configuration. */
typedef struct body_limits {
    int depth_max;
    int64_t string_bytes_max;
} body_limits;

/* Whether one value passes spec f (type, null, range, length): the check every body gets. */
bool body_value_ok(const field_spec *f, json_t *v, const body_limits *lim);
bool body_str_ok(const field_spec *f, size_t bytes, const body_limits *lim);
bool body_int_ok(const field_spec *f, int64_t n);

/* A checked body as a flat table instead of a tree: values[i] is spec[i]; the fields of an
 * F_OBJ spec[i] follow at values[sub_at[i] + j] (body_layout). Filled either by the fast
 * scanner (body_fast.c, strings point into the request body) or from jansson's tree (root,
 * strings point into it) — the handler cannot tell which. */
#define BODY_VALUES_MAX 24

typedef struct body_value {
    bool present;     /* the member was in the body, null or not */
    bool null;
    bool flag;        /* F_BOOL */
    const char *str;  /* F_STR: NUL-ended, no NUL inside */
    int64_t num;      /* F_INT */
} body_value;

typedef struct body_fields {
    body_value values[BODY_VALUES_MAX];
    uint8_t sub_at[BODY_VALUES_MAX];
    json_t *root;     /* NULL when the fast scanner read the body */
} body_fields;

/* Like body_parse, into a table: the fast scanner first, and for anything it declines,
 * body_parse (jansson) — which alone writes the 400s, so every error is body_parse's. */
int body_fields_parse(req *r, const field_spec *spec, body_fields *out);
void body_fields_free(body_fields *b);
/* Clears out and computes sub_at for spec. */
void body_layout(const field_spec *spec, body_fields *out);
/* Fills out from a tree body_parse accepted. */
void body_fields_from_json(const field_spec *spec, json_t *root, body_fields *out);
/* The value of spec field `field` (sub < 0), or of field `sub` of the object field `field`. */
const body_value *bf_value(const body_fields *b, int field, int sub);
const char *bf_str(const body_fields *b, int field, int sub);            /* NULL: absent, null */
int64_t bf_int(const body_fields *b, int field, int sub, int64_t dflt);  /* dflt: absent, null */
bool bf_object(const body_fields *b, int field);                         /* present, not null */

/* body_fast.c: 0 when text is in the fast scanner's subset of JSON and passes spec and lim,
 * with out filled (the strings' closing quotes in text overwritten with NULs); 1 when it is
 * not — text is then untouched, and body_parse must read it and say what is wrong. */
int body_fast_scan(char *text, size_t bytes, const field_spec *spec, const body_limits *lim,
                   body_fields *out);

/* ---- handlers (routes_*.c) ---------------------------------------------------------------- */

int h_healthz(req *r);
int h_readyz(req *r);
int h_metrics(req *r);
int h_openapi(req *r);
int h_quote(req *r);
int h_member_put(req *r);
int h_member_get(req *r);
int h_member_grants(req *r);
int h_member_balance(req *r);
int h_member_benefits(req *r);
int h_member_prices(req *r);
int h_member_history(req *r);
int h_member_charges(req *r);
int h_member_token(req *r);
int h_charge_create(req *r);
int h_charge_get(req *r);
int h_charge_capture(req *r);
int h_charge_release(req *r);
int h_charge_refund(req *r);

/* Helpers shared by the route files. */
bool id_valid(const char *id);
int parse_instant(req *r, const char *field, const char *text, int64_t *at_us);
const char *idempotency_key(req *r, char *buf, size_t buf_bytes, int *status);

#endif
