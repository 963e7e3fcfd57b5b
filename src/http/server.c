/* server.c — the libmicrohttpd daemon: the route table, one request's life (limits, auth,
 * body, dispatch, response, metrics, access log), policy reload and graceful drain.
 * Handlers live in routes_*.c and see only a `req`; nothing here knows about credits. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "creditgate/time.h"
#include "internal.h"
#include "static.h"

typedef enum auth_level {
    AUTH_PUBLIC = 0,
    AUTH_MEMBER_PATH,  /* a service key, or a member token for the {id} in the path */
    AUTH_MEMBER_QUERY, /* a service key, or a member token for ?member_id= */
    AUTH_MEMBER_BODY,  /* a service key, or a member token (the handler checks the body) */
    AUTH_SERVICE,      /* service or admin key */
    AUTH_ADMIN,        /* admin key */
} auth_level;

typedef struct route {
    const char *method;
    const char *pattern;
    handler_fn fn;
    auth_level auth;
    const char *query; /* allowed query parameters, comma separated */
    bool has_body;
} route;

/* Every route the server answers; docs/openapi.yaml must list exactly these (tested). One
 * list, expanded twice: the route table and the public method/pattern view of it. */
#define ROUTES(X)                                                                               \
    X("GET", "/healthz", h_healthz, AUTH_PUBLIC, "", false)                                     \
    X("GET", "/readyz", h_readyz, AUTH_PUBLIC, "", false)                                       \
    X("GET", "/metrics", h_metrics, AUTH_PUBLIC, "", false)                                     \
    X("GET", "/openapi.yaml", h_openapi, AUTH_PUBLIC, "", false)                                \
    X("POST", "/v1/quote", h_quote, AUTH_MEMBER_BODY, "", true)                                 \
    X("PUT", "/v1/members/{id}", h_member_put, AUTH_SERVICE, "", true)                          \
    X("GET", "/v1/members/{id}", h_member_get, AUTH_MEMBER_PATH, "at", false)                   \
    X("POST", "/v1/members/{id}/grants", h_member_grants, AUTH_ADMIN, "", true)                 \
    X("GET", "/v1/members/{id}/balance", h_member_balance, AUTH_MEMBER_PATH, "", false)         \
    X("GET", "/v1/members/{id}/benefits", h_member_benefits, AUTH_MEMBER_PATH, "lang,at", false) \
    X("GET", "/v1/members/{id}/prices", h_member_prices, AUTH_MEMBER_PATH, "lang,at", false)     \
    X("GET", "/v1/members/{id}/history", h_member_history, AUTH_MEMBER_PATH, "after,limit", false) \
    X("GET", "/v1/members/{id}/charges", h_member_charges, AUTH_MEMBER_PATH, "before,limit", false) \
    X("POST", "/v1/members/{id}/tokens", h_member_token, AUTH_SERVICE, "", true)                \
    X("POST", "/v1/charges", h_charge_create, AUTH_SERVICE, "", true)                           \
    X("GET", "/v1/charges/{id}", h_charge_get, AUTH_MEMBER_QUERY, "member_id", false)           \
    X("POST", "/v1/charges/{id}/capture", h_charge_capture, AUTH_SERVICE, "", true)             \
    X("POST", "/v1/charges/{id}/release", h_charge_release, AUTH_SERVICE, "", true)             \
    X("POST", "/v1/charges/{id}/refund", h_charge_refund, AUTH_ADMIN, "", true)

#define ROUTE_ENTRY(m, p, fn, auth, query, body) {m, p, fn, auth, query, body},
#define ROUTE_INFO(m, p, fn, auth, query, body) {m, p},
#define ROUTE_NAME(m, p, fn, auth, query, body) p,
static const route routes[] = {ROUTES(ROUTE_ENTRY)};
static const cg_http_route_info route_infos[] = {ROUTES(ROUTE_INFO)};
static const char *const route_names[] = {ROUTES(ROUTE_NAME)};
#define ROUTE_COUNT ((int)(sizeof routes / sizeof routes[0]))
_Static_assert(sizeof routes / sizeof routes[0] <= ROUTES_MAX, "raise ROUTES_MAX");

int cg_http_routes(const cg_http_route_info **out) {
    *out = route_infos;
    return ROUTE_COUNT;
}

const char *const *route_pattern_names(int *count) {
    *count = ROUTE_COUNT;
    return route_names;
}

/* ---- routing ------------------------------------------------------------------------------ */

/* Matches url against pattern, capturing the one {id} segment. */
static bool pattern_match(const char *pattern, const char *url, char *param, size_t bytes) {
    const char *p = pattern, *u = url;
    while (*p && *u) {
        if (*p == '{') {
            const char *end = strchr(u, '/');
            size_t len = end ? (size_t)(end - u) : strlen(u);
            if (len == 0 || len >= bytes) return false;
            memcpy(param, u, len);
            param[len] = '\0';
            u += len;
            p = strchr(p, '}') + 1;
            continue;
        }
        if (*p++ != *u++) return false;
    }
    return *p == '\0' && *u == '\0';
}

/* Finds the route; when only the method differs, fills Allow and returns -2. */
static int route_find(req *r, const char *method, const char *url) {
    char param[CG_HTTP_ID_BYTES_MAX]; /* a longer id matches nothing: 404 */
    int path_hits = 0;
    r->allow[0] = '\0';
    for (int i = 0; i < ROUTE_COUNT; i++) {
        if (!pattern_match(routes[i].pattern, url, param, sizeof param)) continue;
        if (!strcmp(routes[i].method, method)) {
            if (strchr(routes[i].pattern, '{')) memcpy(r->params[0], param, sizeof param);
            return i;
        }
        size_t used = strlen(r->allow);
        snprintf(r->allow + used, sizeof r->allow - used, "%s%s", path_hits++ ? ", " : "",
                 routes[i].method);
    }
    return path_hits ? -2 : -1;
}

/* ---- responses ---------------------------------------------------------------------------- */

int reply(req *r, int status, json_t *body) {
    assert(!r->out && body);
    r->out = body;
    r->status = status;
    return status;
}

static json_t *error_body(const char *code, const char *field, const char *message) {
    json_t *e = json_object();
    json_object_set_new(e, "code", json_string(code));
    json_object_set_new(e, "message", json_string(message));
    if (field && *field) json_object_set_new(e, "field", json_string(field));
    json_t *root = json_object();
    json_object_set_new(root, "error", e);
    return root;
}

int fail(req *r, int status, const char *code, const char *field, const char *fmt, ...) {
    char message[CG_ERR_MSG_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (r->out) json_decref(r->out);
    r->out = error_body(code, field, message);
    r->status = status;
    return status;
}

static bool entity_field(const char *field) {
    static const char *const entities[] = {"member", "member_id", "charge", "charge_id", "grant",
                                           "grant_id"};
    for (size_t i = 0; i < sizeof entities / sizeof entities[0]; i++)
        if (!strcmp(field, entities[i])) return true;
    return false;
}

static int err_status(const cg_err *err) {
    switch (err->code) {
    case CG_EINVAL: case CG_EPARSE: return 400;
    case CG_ENOTFOUND: /* an unknown model is a bad field; an unknown member or charge is 404 */
        return err->field[0] && !entity_field(err->field) ? 400 : 404;
    case CG_ECONFLICT: return 409;
    case CG_ESTATE: return 409;
    case CG_EINSUFFICIENT: return 402;
    case CG_ELIMIT: return 422;
    /* CG_EIO: a write or fsync failed — nothing was acknowledged, the client may retry later. */
    case CG_EUNAVAILABLE: case CG_ENOMEM: case CG_EIO: return 503;
    default: return 500;
    }
}

int fail_err(req *r, const cg_err *err) {
    int status = err_status(err);
    /* CG_EIO in a request comes from the ledger, which refuses every call after a failed fsync
     * until it is reopened: /readyz takes this instance out of the load balancer's rotation. */
    if (err->code == CG_EIO) atomic_store(&r->srv->ledger_failed, true);
    fail(r, status, cg_err_name(err->code), err->field, "%s", err->msg);
    if (err->suggestion_count > 0) {
        json_t *list = json_array();
        for (int i = 0; i < err->suggestion_count; i++)
            json_array_append_new(list, json_string(err->suggestions[i]));
        json_object_set_new(json_object_get(r->out, "error"), "suggestions", list);
    }
    return status;
}

/* Dumps into one buffer sized for the common answer, so jansson's growing string buffer
 * (16 bytes, doubling) does not realloc half a dozen times per response. */
#define RESPONSE_GUESS_BYTES 2048
static char *json_render(const json_t *body, size_t *bytes) {
    char *buf = malloc(RESPONSE_GUESS_BYTES);
    if (!buf) return NULL;
    size_t need = json_dumpb(body, buf, RESPONSE_GUESS_BYTES, JSON_COMPACT);
    if (need == 0) {
        free(buf);
        return NULL;
    }
    if (need > RESPONSE_GUESS_BYTES) {
        char *bigger = realloc(buf, need);
        if (!bigger) {
            free(buf);
            return NULL;
        }
        buf = bigger;
        need = json_dumpb(body, buf, need, JSON_COMPACT);
    }
    *bytes = need;
    return buf;
}

static enum MHD_Result send_response(req *r) {
    char *text = NULL;
    size_t bytes = 0;
    enum MHD_ResponseMemoryMode mode = MHD_RESPMEM_PERSISTENT;
    if (r->out) {
        text = json_render(r->out, &bytes);
        if (!text) return MHD_NO;
        mode = MHD_RESPMEM_MUST_FREE;
        r->content_type = "application/json";
    } else if (r->out_text_owned) {
        text = r->out_text_owned;
        r->out_text_owned = NULL;
        bytes = r->out_text_bytes;
        mode = MHD_RESPMEM_MUST_FREE;
    } else {
        text = (char *)(r->out_text ? r->out_text : "");
        bytes = r->out_text ? r->out_text_bytes : 0;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(bytes, text, mode);
    if (!resp) {
        if (mode == MHD_RESPMEM_MUST_FREE) free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type : "application/json");
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (r->replayed) MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    if (r->status == 405) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (r->status == 503) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    /* balances, histories and member tokens must not sit in a shared cache */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (atomic_load(&r->srv->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    r->answered = true;
    return ok;
}

/* ---- request helpers ---------------------------------------------------------------------- */

const char *query_arg(req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *header_value(req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

typedef struct query_check {
    const char *allowed;
    char bad[64];
} query_check;

static enum MHD_Result query_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
    (void)kind;
    (void)value;
    query_check *q = cls;
    size_t len = strlen(key);
    for (const char *p = q->allowed; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == len && !strncmp(p, key, n)) return MHD_YES;
        p += n + (comma ? 1 : 0);
    }
    snprintf(q->bad, sizeof q->bad, "%s", key);
    return MHD_NO;
}

snapshot *snapshot_acquire(cg_http_server *srv) {
    pthread_mutex_lock(&srv->snap_lock);
    snapshot *snap = srv->snap;
    atomic_fetch_add_explicit(&snap->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&srv->snap_lock);
    return snap;
}

cg_ledger *ledger_enter(req *r) {
    pthread_rwlock_rdlock(&r->srv->ledger_lock);
    if (!r->srv->ledger) pthread_rwlock_unlock(&r->srv->ledger_lock);
    return r->srv->ledger;
}

void ledger_leave(req *r) {
    pthread_rwlock_unlock(&r->srv->ledger_lock);
}

/* ---- auth --------------------------------------------------------------------------------- */

static int authorize(req *r, const route *rt) {
    if (rt->auth == AUTH_PUBLIC) return 0;
    cg_err err;
    cg_err_clear(&err);
    const char *authz = header_value(r, MHD_HTTP_HEADER_AUTHORIZATION);
    /* A keep-alive connection (a service's pool, a proxy's upstream) sends the same header on
       every request: hashing the key each time cost more than the decision (conn.c). */
    if (!conn_auth_cached(r->cs, r->snap, authz, r->started_at_us, &r->who)) {
        if (keyring_authenticate(&r->snap->keys, authz, cg_time_now_us(), &r->who, &err))
            return fail(r, 401, "unauthorized", "", "%s", err.msg);
        conn_auth_remember(r->cs, r->snap, authz, &r->who);
    }
    if (r->who.role == ROLE_ADMIN) return 0;
    if (rt->auth == AUTH_ADMIN)
        return fail(r, 403, "forbidden", "", "this call needs an admin key");
    if (r->who.role == ROLE_SERVICE) return 0;
    assert(r->who.role == ROLE_MEMBER);
    const char *target = NULL;
    if (rt->auth == AUTH_MEMBER_PATH) target = r->params[0];
    else if (rt->auth == AUTH_MEMBER_QUERY) target = query_arg(r, "member_id");
    else if (rt->auth == AUTH_MEMBER_BODY) return 0; /* the handler compares the body */
    else return fail(r, 403, "forbidden", "", "this call needs a service key");
    if (!target || strcmp(target, r->who.member_id) != 0)
        return fail(r, 403, "forbidden", "", "a member token reaches only its own member");
    return 0;
}

/* ---- one request -------------------------------------------------------------------------- */

static bool content_type_ok(req *r) {
    const char *ct = header_value(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct) return true;
    return !strncasecmp(ct, "application/json", 16) && (ct[16] == '\0' || ct[16] == ';');
}

/* First call: nothing of the body read yet. Refuses early what can be refused early. */
static int request_begin(req *r, const char *method, const char *url) {
    r->route = route_find(r, method, url);
    if (r->route == -1) return fail(r, 404, "not_found", "", "no route for %s", url);
    if (r->route == -2) {
        r->route = -1;
        return fail(r, 405, "method_not_allowed", "", "%s is not allowed here", method);
    }
    const route *rt = &routes[r->route];
    int status = authorize(r, rt); /* before anything else: strangers learn nothing more */
    if (status) return status;
    if (rt->has_body) {
        const char *cl = header_value(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoll(cl, NULL, 10) > r->srv->config.body_bytes_max)
            return fail(r, 413, "too_large", "", "body larger than %" PRId64 " bytes",
                        r->srv->config.body_bytes_max);
        if (!content_type_ok(r))
            return fail(r, 415, "unsupported_media_type", "", "send Content-Type: application/json");
    }
    query_check q = {rt->query, ""};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_visit, &q);
    if (q.bad[0])
        return fail(r, 400, "unknown_field", q.bad, "unknown query parameter '%s'", q.bad);
    if (rt->auth != AUTH_PUBLIC && strchr(rt->pattern, '{') && !id_valid(r->params[0]))
        return fail(r, 400, "invalid", "id", "ids are 1-63 characters of A-Z a-z 0-9 . _ : @ -");
    return 0;
}

static void body_append(req *r, const char *data, size_t bytes) {
    size_t max = (size_t)r->srv->config.body_bytes_max;
    if (r->body_too_large || r->body_bytes + bytes > max) {
        r->body_too_large = true; /* keep reading and dropping; answer 413 at the end */
        return;
    }
    if (r->body_bytes + bytes + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_bytes + bytes + 1) cap *= 2;
        if (cap > max + 1) cap = max + 1;
        char *grown = realloc(r->body, cap);
        if (!grown) {
            r->body_too_large = true;
            return;
        }
        r->body = grown;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_bytes, data, bytes);
    r->body_bytes += bytes;
    r->body[r->body_bytes] = '\0';
}

/* 16 hex digits; by hand because snprintf costs more than the rest of the request setup. */
static void request_id_format(uint64_t seq, char out[24]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, seq >>= 4) out[i] = hex[seq & 15];
    out[16] = '\0';
}

static void copy_bounded(char *dst, size_t bytes, const char *src) {
    size_t len = strnlen(src, bytes - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    cg_http_server *srv = cls;
    req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = srv;
        r->conn = conn;
        r->cs = conn_of(conn);
        r->started_at_us = cg_time_now_us();
        request_id_format(atomic_fetch_add(&srv->request_seq, 1) + 1, r->request_id);
        atomic_fetch_add(&srv->inflight, 1);
        *con_cls = r;
        copy_bounded(r->path, sizeof r->path, url); /* for the access log of every answer */
        copy_bounded(r->method, sizeof r->method, method);
        r->snap = snapshot_acquire(srv); /* released in on_completed */
        if (web_static_match(url)) {
            conn_request_whole(r->cs); /* a GET: nothing more to arrive */
            return web_static_serve(r, method, url);
        }
        if (request_begin(r, method, url)) return send_response(r);
        return MHD_YES;
    }
    if (r->answered) { /* refused early: drop whatever body still arrives */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        body_append(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    conn_request_whole(r->cs); /* all of it arrived in time: the handler may take its time */
    if (r->body_too_large)
        fail(r, 413, "too_large", "", "body larger than %" PRId64 " bytes",
             srv->config.body_bytes_max);
    else
        routes[r->route].fn(r);
    if (!r->status) fail(r, 500, "internal", "", "handler gave no answer");
    return send_response(r);
}

static void json_escape_into(char *buf, size_t bytes, const char *text) {
    json_t *s = json_string(text ? text : "");
    char *dumped = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    snprintf(buf, bytes, "%s", dumped ? dumped : "\"\"");
    free(dumped);
    json_decref(s);
}

static void access_log(cg_http_server *srv, req *r, const char *method, const char *url,
                       int64_t latency_us) {
    if (srv->log_fd < 0) return;
    char path[CG_HTTP_PATH_BYTES_MAX / 2], member[CG_HTTP_ID_BYTES_MAX * 2];
    json_escape_into(path, sizeof path, url);
    json_escape_into(member, sizeof member, r->member_id[0] ? r->member_id : r->who.member_id);
    char line[1024], ts[CG_RFC3339_TEXT_BYTES];
    cg_time_format(r->started_at_us, 0, ts, sizeof ts); /* UTC */
    int n = snprintf(line, sizeof line,
                     "{\"ts\":\"%s\",\"ts_us\":%" PRId64 ",\"event\":\"request\",\"request_id\":\"%s\","
                     "\"method\":\"%s\",\"route\":\"%s\",\"path\":%s,\"status\":%d,"
                     "\"latency_us\":%" PRId64 ",\"member_id\":%s,\"key\":\"%s\",\"role\":\"%s\","
                     "\"bytes_in\":%zu,\"replayed\":%s}\n",
                     ts, r->started_at_us, r->request_id, method,
                     r->route >= 0 ? routes[r->route].pattern : "unmatched", path, r->status,
                     latency_us, member, r->who.name, role_name(r->who.role), r->body_bytes,
                     r->replayed ? "true" : "false");
    if (n > 0 && (size_t)n < sizeof line) {
        ssize_t w = write(srv->log_fd, line, (size_t)n);
        (void)w; /* a full disk must not fail the request; the metrics still count it */
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)toe;
    cg_http_server *srv = cls;
    req *r = *con_cls;
    int64_t now_us = cg_time_now_us();
    conn_request_done(srv, r ? r->cs : conn_of(conn), now_us); /* the next request's clock starts */
    if (!r) return;
    int64_t latency_us = now_us - r->started_at_us;
    metrics_request(&srv->metrics, r->route, r->answered ? r->status : 0, latency_us);
    const char *method = r->method;
    access_log(srv, r, method, r->path, latency_us);
    snapshot_release(r->snap);
    json_decref(r->out);
    free(r->out_text_owned);
    free(r->body);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->inflight, 1);
}

/* ---- lifetime ----------------------------------------------------------------------------- */

void cg_http_server_log(cg_http_server *srv, const char *event, const char *json_members) {
    if (!srv || srv->log_fd < 0) return;
    char line[2048], ts[CG_RFC3339_TEXT_BYTES];
    int64_t now_us = cg_time_now_us();
    cg_time_format(now_us, 0, ts, sizeof ts);
    int n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"ts_us\":%" PRId64 ",\"event\":\"%s\"%s%s}\n",
                     ts, now_us, event, json_members && *json_members ? "," : "",
                     json_members ? json_members : "");
    if (n > 0 && (size_t)n < sizeof line) {
        ssize_t w = write(srv->log_fd, line, (size_t)n);
        (void)w;
    }
}

static int open_log(cg_http_server *srv, cg_err *err) {
    const char *path = srv->config.access_log_path;
    srv->log_fd = -1;
    if (!strcmp(path, "off")) return CG_OK;
    if (!strcmp(path, "-") || !*path) {
        srv->log_fd = STDERR_FILENO;
        return CG_OK;
    }
    srv->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (srv->log_fd < 0) return cg_err_set(err, CG_EIO, "%s: %s", path, strerror(errno));
    srv->log_close = true;
    return CG_OK;
}

static int read_openapi(cg_http_server *srv) {
    FILE *f = fopen(srv->config.openapi_path, "rb");
    if (!f) return CG_EIO;
    char *buf = malloc(1024 * 1024);
    size_t n = buf ? fread(buf, 1, 1024 * 1024 - 1, f) : 0;
    fclose(f);
    if (!buf) return CG_ENOMEM;
    buf[n] = '\0';
    srv->openapi_text = buf;
    srv->openapi_bytes = n;
    return CG_OK;
}

static int open_ledger(cg_http_server *srv, const snapshot *snap, cg_ledger **out,
                       cg_err *err) {
    *out = NULL;
    if (!srv->config.db_path[0]) return CG_OK;
    cg_ledger_config lc;
    cg_ledger_config_default(&lc);
    lc.engine = &snap->engine;
    lc.shards = srv->config.ledger_shards;
    lc.flush_interval_ms = srv->config.ledger_flush_ms;
    lc.page_cache_mb = srv->config.ledger_cache_mb;
    lc.redo_mb = srv->config.ledger_redo_mb;
    return cg_ledger_open_dsn(srv->config.db_path, &lc, out, err);
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decoding as libmicrohttpd does it, except that "%00" stays as it is: a decoded NUL
 * would silently cut the path ("/web/common.js%00.html" serving common.js), while "%00" left
 * in place fails every name check and answers 404. */
static size_t unescape_keep_nul(void *cls, struct MHD_Connection *conn, char *s) {
    (void)cls;
    (void)conn;
    char *out = s;
    for (const char *in = s; *in;) {
        int hi, lo;
        if (in[0] == '%' && in[1] && in[2] && (hi = hex_value(in[1])) >= 0 && (lo = hex_value(in[2])) >= 0 &&
            (hi | lo) != 0) {
            *out++ = (char)(hi * 16 + lo);
            in += 3;
        } else {
            *out++ = *in++;
        }
    }
    *out = '\0';
    return (size_t)(out - s);
}


static int start_daemon(cg_http_server *srv, cg_err *err) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(srv->config.port);
    if (inet_pton(AF_INET, srv->config.listen_host, &addr.sin_addr) != 1)
        return cg_err_set_field(err, CG_EINVAL, "listen", "listen host '%s' is not an IPv4 address",
                                srv->config.listen_host);
    const cg_http_config *c = &srv->config;
    /* `threads` is sized for ledger calls, which block a thread until their group commit. With
       no ledger nothing blocks, and threads beyond one per core only take turns: each request
       then pays a wake-up and a context switch (~1.5 us here) and the p99 grows with them. */
    unsigned threads = (unsigned)c->threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (!c->db_path[0] && cores >= 1 && (unsigned long)cores < threads) threads = (unsigned)cores;
    /* TURBO: optimistic reads and fewer shutdown() calls; the drain closes the listener itself */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_TURBO;
    srv->daemon = MHD_start_daemon(
        flags, srv->config.port, NULL, NULL, on_request, srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->connections_max,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)c->connections_per_ip_max,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)c->header_bytes_max,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, conn_notify, srv,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024U,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_keep_nul, NULL,
        MHD_OPTION_END);
    if (!srv->daemon)
        return cg_err_set(err, CG_EIO, "cannot listen on %s:%u (in use, or no permission)",
                          c->listen_host, (unsigned)c->port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : c->port;
    return CG_OK;
}

int cg_http_server_start(const cg_http_config *config, cg_http_server **out, cg_err *err) {
    assert(config && out);
    *out = NULL;
    cg_http_server *srv = calloc(1, sizeof *srv);
    if (!srv) return cg_err_set(err, CG_ENOMEM, "out of memory");
    srv->config = *config;
    srv->log_fd = -1;
    metrics_init(&srv->metrics);
    pthread_mutex_init(&srv->snap_lock, NULL);
    pthread_mutex_init(&srv->reload_lock, NULL);
    /* Writer preference: under steady charge load a reader-preferring lock would never let
       a reload in. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&srv->ledger_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    json_object_seed(0); /* before any thread builds objects */
    int rc = open_log(srv, err);
    if (!rc) {
        stamps_take(config, srv->seen);
        rc = snapshot_load(config, NULL, &srv->snap, err);
    }
    if (!rc) rc = open_ledger(srv, srv->snap, &srv->ledger, err);
    if (!rc && srv->snap->keys.count == 0)
        cg_http_server_log(srv, "warning", "\"message\":\"no service keys (--keys): every /v1 call "
                                           "without a member token is refused\"");
    if (!rc && read_openapi(srv))
        cg_http_server_log(srv, "warning", "\"message\":\"openapi document not found\"");
    if (!rc) rc = conns_init(srv);
    if (!rc) rc = start_daemon(srv, err);
    if (!rc && conns_watch_start(srv))
        rc = cg_err_set(err, CG_ENOMEM, "cannot start the request deadline watchdog");
    if (rc) {
        cg_http_server_stop(srv);
        return rc;
    }
    *out = srv;
    return CG_OK;
}

uint16_t cg_http_server_port(const cg_http_server *srv) {
    return srv->port;
}

void cg_http_server_policy_label(cg_http_server *srv, char *buf, size_t buf_bytes) {
    snapshot *snap = snapshot_acquire(srv);
    snprintf(buf, buf_bytes, "%s", snap->label);
    snapshot_release(snap);
}

static void log_reload(cg_http_server *srv, bool ok, const char *detail) {
    char members[CG_ERR_MSG_BYTES_MAX * 2 + 64], text[CG_ERR_MSG_BYTES_MAX * 2];
    json_escape_into(text, sizeof text, detail);
    snprintf(members, sizeof members, "\"result\":\"%s\",\"%s\":%s", ok ? "ok" : "refused",
             ok ? "versions" : "error", text);
    cg_http_server_log(srv, "policy_reload", members);
}

/* Swaps in the new snapshot, pointing the ledger at its engine first (the ledger stays open:
 * its queue, caches and files carry on; a call queued after the swap sees the new rules). */
static int reload_swap(cg_http_server *srv, snapshot *next, cg_err *err) {
    (void)err;
    if (srv->ledger) {
        pthread_rwlock_wrlock(&srv->ledger_lock); /* waits for ledger calls in flight */
        cg_ledger_set_engine(srv->ledger, &next->engine);
        pthread_rwlock_unlock(&srv->ledger_lock);
    }
    pthread_mutex_lock(&srv->snap_lock);
    snapshot *old = srv->snap;
    srv->snap = next;
    pthread_mutex_unlock(&srv->snap_lock);
    snapshot_release(old);
    return CG_OK;
}

int cg_http_server_reload(cg_http_server *srv, cg_err *err) {
    assert(srv);
    pthread_mutex_lock(&srv->reload_lock);
    stamps_take(&srv->config, srv->seen);
    snapshot *next = NULL;
    int rc = snapshot_load(&srv->config, srv->snap, &next, err); /* only this thread swaps */
    if (!rc) {
        rc = reload_swap(srv, next, err);
        if (rc) snapshot_release(next);
    }
    if (rc) {
        atomic_fetch_add(&srv->metrics.reloads_failed, 1);
        log_reload(srv, false, err ? err->msg : "");
    } else {
        atomic_fetch_add(&srv->metrics.reloads_ok, 1);
        log_reload(srv, true, next->label);
    }
    pthread_mutex_unlock(&srv->reload_lock);
    return rc;
}

int cg_http_server_reload_if_changed(cg_http_server *srv, bool *reloaded, cg_err *err) {
    *reloaded = false;
    if (!stamps_changed(&srv->config, srv->seen)) return CG_OK;
    *reloaded = true;
    return cg_http_server_reload(srv, err);
}

static void drain(cg_http_server *srv) {
    atomic_store(&srv->draining, true);
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    int64_t deadline_us = cg_time_now_us() + (int64_t)srv->config.drain_timeout_ms * 1000;
    /* In-flight requests finish and get "Connection: close"; idle keep-alive connections are
       closed by MHD_stop_daemon once nothing is running. */
    while (atomic_load(&srv->inflight) > 0 && cg_time_now_us() < deadline_us) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
}

void cg_http_server_stop(cg_http_server *srv) {
    if (!srv) return;
    if (srv->daemon) drain(srv);
    conns_free(srv); /* every connection is closed: stop the watchdog */
    cg_ledger_close(srv->ledger); /* applies and commits everything acknowledged */
    srv->ledger = NULL;
    if (srv->snap) cg_http_server_log(srv, "stopped", NULL); /* only a server that started */
    snapshot_release(srv->snap);
    free(srv->openapi_text);
    metrics_free(&srv->metrics);
    if (srv->log_close) close(srv->log_fd);
    pthread_rwlock_destroy(&srv->ledger_lock);
    pthread_mutex_destroy(&srv->reload_lock);
    pthread_mutex_destroy(&srv->snap_lock);
    free(srv);
}
