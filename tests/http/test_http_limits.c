/* test_http_limits.c — limits that need a server of their own: the connection cap, the
 * request timeout for a client that stalls or dribbles, a server without a ledger (503 on
 * money calls), ledger limits surfacing as 422, and the per-connection credential cache.
 * Each test starts an in-process server on a free port. */
#include "testlib.h"

#include <poll.h>
#include <pthread.h>

#include "creditgate/http.h"
#include "http/client.h"

static char dir[256];
static char admin[128], service[128];

static cg_http_server *start(int timeout_s, int connections_max, bool ledger) {
    cg_http_config c;
    cg_http_config_defaults(&c);
    c.port = 0;
    c.threads = 1;
    c.timeout_s = timeout_s;
    c.connections_max = connections_max;
    snprintf(c.keys_path, sizeof c.keys_path, "%s/keys", dir);
    snprintf(c.access_log_path, sizeof c.access_log_path, "off");
    if (ledger) snprintf(c.db_path, sizeof c.db_path, "%s/ledger.db", dir);
    else c.db_path[0] = '\0';
    cg_http_server *srv = NULL;
    cg_err err = {0};
    assert_cg_ok(cg_http_server_start(&c, &srv, &err), err);
    return srv;
}

static int setup(void **state) {
    (void)state;
    tc_tmpdir(dir, sizeof dir);
    tc_keys(dir, admin, service, sizeof admin);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tc_rmdir(dir);
    return 0;
}

/* Returns true when the server closed fd within wait_ms. */
static bool closed_within(int fd, int wait_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, wait_ms) != 1) return false;
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    while (n > 0) n = recv(fd, buf, sizeof buf, 0); /* a 408 answer, then close */
    return n == 0 || n < 0;
}

static void test_stalled_request_times_out(void **state) {
    (void)state;
    cg_http_server *srv = start(1, 100, false);
    int fd = tc_connect(cg_http_server_port(srv));
    assert_true(fd >= 0);
    const char *half = "POST /v1/quote HTTP/1.1\r\nHost: x\r\n"; /* and then nothing */
    assert_true(tc_write_all(fd, half, strlen(half)));
    assert_false(closed_within(fd, 300));  /* just inside the timeout: still open */
    assert_true(closed_within(fd, 4000));  /* past it: cut off */
    close(fd);
    cg_http_server_stop(srv);
}

static void test_connection_cap(void **state) {
    (void)state;
    cg_http_server *srv = start(30, 2, false);
    unsigned port = cg_http_server_port(srv);
    int a = tc_connect(port), b = tc_connect(port);
    assert_true(a >= 0 && b >= 0);
    usleep(100000); /* let the server accept both */
    /* At the cap the server stops accepting: a third client waits in the listen backlog
       unanswered, and is served once a slot frees. */
    int c = tc_connect(port);
    assert_true(c >= 0);
    const char *get = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_true(tc_write_all(c, get, strlen(get)));
    struct pollfd p = {c, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 500), 0); /* no answer while two are open */
    close(a);
    assert_int_equal(poll(&p, 1, 5000), 1);
    char buf[256];
    ssize_t n = recv(c, buf, sizeof buf - 1, 0);
    assert_true(n > 12);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "200 OK"));
    close(c);
    close(b);
    cg_http_server_stop(srv);
}

static void test_without_ledger_money_calls_are_503(void **state) {
    (void)state;
    cg_http_server *srv = start(30, 100, false);
    unsigned port = cg_http_server_port(srv);
    tc_response r = tc_request(port, "POST", "/v1/charges", service, NULL,
                               "{\"member_id\":\"m\",\"model\":\"sora\"}");
    assert_int_equal(r.status, 503);
    assert_true(tc_has_header(&r, "Retry-After: 1"));
    tc_free(&r);
    r = tc_request(port, "GET", "/v1/members/m/balance", service, NULL, NULL);
    assert_int_equal(r.status, 503);
    tc_free(&r);
    r = tc_request(port, "POST", "/v1/quote", service, NULL,
                   "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},\"model\":\"sora\"}");
    assert_int_equal(r.status, 200); /* decisions need no ledger */
    tc_free(&r);
    cg_http_server_stop(srv);
}

static void test_grant_idempotent_and_open_grant_limit_422(void **state) {
    (void)state;
    cg_http_server *srv = start(30, 100, true);
    unsigned port = cg_http_server_port(srv);
    tc_response r = tc_request(port, "PUT", "/v1/members/g1", service, NULL,
                               "{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"}");
    assert_int_equal(r.status, 200);
    tc_free(&r);
    const char *body = "{\"credits\":10,\"source\":\"promo\",\"note\":\"welcome\"}";
    r = tc_request(port, "POST", "/v1/members/g1/grants", admin, "Idempotency-Key: welcome\r\n", body);
    assert_int_equal(r.status, 201);
    char first[4096];
    snprintf(first, sizeof first, "%s", r.body);
    tc_free(&r);
    r = tc_request(port, "POST", "/v1/members/g1/grants", admin, "Idempotency-Key: welcome\r\n", body);
    assert_int_equal(r.status, 201);
    assert_true(tc_has_header(&r, "Idempotent-Replayed: true"));
    assert_string_equal(r.body, first);
    tc_free(&r);
    int status = 0;
    for (int i = 0; i < 40 && status != 422; i++) { /* CG_GRANTS_OPEN_MAX open grants */
        r = tc_request(port, "POST", "/v1/members/g1/grants", admin, NULL, body);
        status = r.status;
        if (status != 201 && status != 422) fail_msg("grant %d: %d %s", i, status, r.body);
        tc_free(&r);
    }
    assert_int_equal(status, 422);
    cg_http_server_stop(srv);
}

static void *stop_thread(void *arg) {
    cg_http_server_stop(arg);
    return NULL;
}

static bool read_until(int fd, const char *needle, char *buf, size_t bytes) {
    size_t len = 0;
    struct pollfd p = {fd, POLLIN, 0};
    while (len + 1 < bytes && poll(&p, 1, 5000) == 1) {
        ssize_t n = recv(fd, buf + len, bytes - len - 1, 0);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, needle)) return true;
    }
    return false;
}

/* SIGTERM's drain: the listener closes at once, readiness turns 503 on open connections, and a
 * request already in flight still gets its answer before the server goes. */
static void test_drain_finishes_in_flight_and_reports_unready(void **state) {
    (void)state;
    cg_http_server *srv = start(30, 100, false);
    unsigned port = cg_http_server_port(srv);
    int busy = tc_connect(port), idle = tc_connect(port);
    assert_true(busy >= 0 && idle >= 0);
    char head[512];
    int n = snprintf(head, sizeof head, "POST /v1/quote HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: 120\r\n\r\n{\"member\":", service);
    assert_true(tc_write_all(busy, head, (size_t)n)); /* half a body: in flight */
    usleep(100000);
    pthread_t t;
    pthread_create(&t, NULL, stop_thread, srv);
    usleep(200000);
    assert_true(tc_connect(port) < 0); /* no longer accepting */
    const char *ready = "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(tc_write_all(idle, ready, strlen(ready)));
    char buf[2048];
    assert_true(read_until(idle, "unavailable", buf, sizeof buf));
    assert_non_null(strstr(buf, "503"));
    assert_non_null(strcasestr(buf, "Connection: close"));
    const char *rest = "{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},\"model\":\"sora\"}";
    char body_tail[128];
    snprintf(body_tail, sizeof body_tail, "%-*s", 120 - 10, rest); /* pad to Content-Length */
    assert_true(tc_write_all(busy, body_tail, strlen(body_tail)));
    assert_true(read_until(busy, "total_credits", buf, sizeof buf));
    assert_non_null(strstr(buf, "200 OK"));
    pthread_join(t, NULL);
    close(busy);
    close(idle);
}

/* Milliseconds on the monotonic clock. */
static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A client dribbling one header byte every 100 ms resets libmicrohttpd's idle timeout each
 * time; the total deadline (timeout_s from the connection's start) still cuts it. */
static void test_dribbling_request_cut_at_deadline(void **state) {
    (void)state;
    cg_http_server *srv = start(1, 100, false);
    int fd = tc_connect(cg_http_server_port(srv));
    assert_true(fd >= 0);
    int64_t start_ms = now_ms();
    const char *head = "GET /healthz HTTP/1.1\r\nX-Slow: ";
    assert_true(tc_write_all(fd, head, strlen(head)));
    int64_t cut_ms = -1;
    for (int i = 0; i < 40 && cut_ms < 0; i++) { /* up to 4 s */
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) == 1) cut_ms = now_ms() - start_ms; /* the server's end: EOF */
        else if (send(fd, "a", 1, MSG_NOSIGNAL) != 1) cut_ms = now_ms() - start_ms;
    }
    assert_true(cut_ms >= 800);  /* not before its deadline (1 s, less the clock's slack) */
    assert_true(cut_ms > 0 && cut_ms <= 2500); /* and not long after it */
    close(fd);
    tc_response r = tc_request(cg_http_server_port(srv), "GET", "/metrics", NULL, NULL, NULL);
    assert_non_null(r.body);
    assert_non_null(strstr(r.body, "creditgate_http_request_deadline_cuts_total 1\n"));
    tc_free(&r);
    cg_http_server_stop(srv);
}

/* One request on a kept-alive connection; returns the status (-1 when the connection failed). */
static int keep_alive_call(int fd, const char *method, const char *path, const char *auth,
                           const char *body) {
    char req_text[2048], buf[8192];
    size_t body_bytes = body ? strlen(body) : 0;
    int n = snprintf(req_text, sizeof req_text,
                     "%s %s HTTP/1.1\r\nHost: x\r\n%s%s%sContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, auth ? "Authorization: Bearer " : "", auth ? auth : "",
                     auth ? "\r\n" : "", body_bytes, body ? body : "");
    if (n < 0 || (size_t)n >= sizeof req_text || !tc_write_all(fd, req_text, (size_t)n)) return -1;
    size_t len = 0;
    struct pollfd p = {fd, POLLIN, 0};
    while (len + 1 < sizeof buf && poll(&p, 1, 5000) == 1) {
        ssize_t got = recv(fd, buf + len, sizeof buf - len - 1, 0);
        if (got <= 0) return -1;
        len += (size_t)got;
        buf[len] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "Content-Length:");
        if (end && cl && len >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10)) break;
    }
    int status = -1;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) return -1;
    return status;
}

/* The deadline restarts after every answer: a kept-alive connection may send request after
 * request for longer than timeout_s in all. */
static void test_keep_alive_requests_each_get_their_deadline(void **state) {
    (void)state;
    cg_http_server *srv = start(1, 100, false);
    int fd = tc_connect(cg_http_server_port(srv));
    assert_true(fd >= 0);
    for (int i = 0; i < 4; i++) { /* 4 x 0.6 s: past the 1 s deadline of the first request */
        assert_int_equal(keep_alive_call(fd, "GET", "/healthz", NULL, NULL), 200);
        usleep(600000);
    }
    close(fd);
    cg_http_server_stop(srv);
}

/* A connection remembers the credential it proved, but a different one — even one of the same
 * length — is checked in full, and a reload that drops the key refuses it on the same
 * connection at once. */
static void test_connection_credential_cache_is_exact_and_reloaded(void **state) {
    (void)state;
    cg_http_server *srv = start(30, 100, false);
    int fd = tc_connect(cg_http_server_port(srv));
    assert_true(fd >= 0);
    const char *quote = "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},"
                        "\"model\":\"sora\"}";
    char wrong[128];
    snprintf(wrong, sizeof wrong, "%s", service);
    wrong[strlen(wrong) - 1] = wrong[strlen(wrong) - 1] == 'A' ? 'B' : 'A'; /* same length */
    unsigned port = cg_http_server_port(srv);
    /* a refusal before the body is read closes the connection, so each one needs a new one */
    assert_int_equal(keep_alive_call(fd, "POST", "/v1/quote", service, quote), 200);
    assert_int_equal(keep_alive_call(fd, "POST", "/v1/quote", wrong, quote), 401);
    close(fd);
    fd = tc_connect(port);
    assert_int_equal(keep_alive_call(fd, "POST", "/v1/quote", service, quote), 200);
    assert_int_equal(keep_alive_call(fd, "POST", "/v1/quote", NULL, quote), 401);
    close(fd);
    fd = tc_connect(port);
    assert_int_equal(keep_alive_call(fd, "POST", "/v1/quote", service, quote), 200);
    assert_int_equal(keep_alive_call(fd, "POST", "/v1/members/m/grants", service, "{}"), 403);
    close(fd);
    fd = tc_connect(port);
    assert_int_equal(keep_alive_call(fd, "POST", "/v1/quote", service, quote), 200);
    assert_int_equal(keep_alive_call(fd, "POST", "/v1/quote", service, quote), 200);
    /* the keys file loses every key; a reload reads it */
    char path[512];
    snprintf(path, sizeof path, "%s/keys", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# no keys\n", f);
    fclose(f);
    cg_err err = {0};
    assert_cg_ok(cg_http_server_reload(srv, &err), err);
    assert_int_equal(keep_alive_call(fd, "POST", "/v1/quote", service, quote), 401);
    close(fd);
    cg_http_server_stop(srv);
    tc_keys(dir, admin, service, sizeof admin); /* for the tests after this one */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stalled_request_times_out),
        cmocka_unit_test(test_connection_cap),
        cmocka_unit_test(test_without_ledger_money_calls_are_503),
        cmocka_unit_test(test_grant_idempotent_and_open_grant_limit_422),
        cmocka_unit_test(test_drain_finishes_in_flight_and_reports_unready),
        cmocka_unit_test(test_dribbling_request_cut_at_deadline),
        cmocka_unit_test(test_keep_alive_requests_each_get_their_deadline),
        cmocka_unit_test(test_connection_credential_cache_is_exact_and_reloaded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
