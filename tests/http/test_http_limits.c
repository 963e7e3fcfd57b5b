/* test_http_limits.c — limits that need a server of their own: the connection cap, the
 * request timeout for a client that stalls, a server without a ledger (503 on money calls),
 * and ledger limits surfacing as 422. Each test starts an in-process server on a free port. */
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stalled_request_times_out),
        cmocka_unit_test(test_connection_cap),
        cmocka_unit_test(test_without_ledger_money_calls_are_503),
        cmocka_unit_test(test_grant_idempotent_and_open_grant_limit_422),
        cmocka_unit_test(test_drain_finishes_in_flight_and_reports_unready),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
