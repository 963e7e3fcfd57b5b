/* test_http_api.c — the HTTP API over real sockets: an in-process server on a free port of
 * 127.0.0.1 with the bundled policy and a SQLite ledger in a temp dir, driven by raw HTTP/1.1.
 * Covers every route and status, auth, idempotent retry, limits, malformed bodies, reload
 * with a good and a broken policy, and the OpenAPI document against the route table.
 * Process-level behaviour (signals, drain) is in test_http_process.c. */
#include "testlib.h"

#include <ctype.h>
#include <jansson.h>
#include <pthread.h>

#include "creditgate/http.h"
#include "creditgate/ledger.h"
#include "http/client.h"

static char dir[256];
static char admin[128], service[128];
static char policy_path[512];
static cg_http_server *srv;
static unsigned port;

static int setup(void **state) {
    (void)state;
    tc_tmpdir(dir, sizeof dir);
    tc_keys(dir, admin, service, sizeof admin);
    snprintf(policy_path, sizeof policy_path, "%s/policy.yaml", dir);
    tc_copy(CG_TEST_POLICY, policy_path);
    cg_http_config c;
    cg_http_config_defaults(&c);
    c.port = 0;
    c.policy_path_count = 1;
    snprintf(c.policy_paths[0], sizeof c.policy_paths[0], "%s", policy_path);
    snprintf(c.db_path, sizeof c.db_path, "%s/ledger.db", dir);
    snprintf(c.keys_path, sizeof c.keys_path, "%s/keys", dir);
    snprintf(c.access_log_path, sizeof c.access_log_path, "%s/access.log", dir);
    c.body_bytes_max = 4096;
    c.header_bytes_max = 4096;
    c.json_depth_max = 4;
    c.string_bytes_max = 512;
    c.threads = 2;
    cg_err err = {0};
    if (cg_http_server_start(&c, &srv, &err)) {
        fprintf(stderr, "server start: %s\n", err.msg);
        return -1;
    }
    port = cg_http_server_port(srv);
    return port ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    cg_http_server_stop(srv);
    tc_rmdir(dir);
    return 0;
}

static json_t *body_json(const tc_response *r) {
    json_error_t e;
    json_t *j = json_loads(r->body ? r->body : "", 0, &e);
    if (!j) fail_msg("response is not JSON (%d): %s", r->status, r->body ? r->body : "");
    return j;
}

/* Asserts status, and for errors the error field named. */
static void expect(tc_response *r, int status, const char *field) {
    if (r->status != status)
        fail_msg("expected %d, got %d: %s", status, r->status, r->body ? r->body : "");
    if (field) {
        json_t *j = body_json(r);
        const char *got = json_string_value(json_object_get(json_object_get(j, "error"), "field"));
        if (!got || strcmp(got, field)) fail_msg("expected field '%s', got '%s': %s", field, got ? got : "", r->body);
        json_decref(j);
    }
    tc_free(r);
}

static int call(const char *method, const char *path, const char *auth, const char *body) {
    tc_response r = tc_request(port, method, path, auth, NULL, body);
    int status = r.status;
    tc_free(&r);
    return status;
}

static void put_member(const char *id, const char *plan, const char *billing, const char *joined) {
    char path[128], body[256];
    snprintf(path, sizeof path, "/v1/members/%s", id);
    /* effective from the joined date, so quotes at past instants see the member */
    snprintf(body, sizeof body,
             "{\"plan\":\"%s\",\"billing\":\"%s\",\"joined\":\"%s\",\"effective_at\":\"%s\"}", plan,
             billing, joined, joined);
    assert_int_equal(call("PUT", path, service, body), 200);
}

static void grant(const char *id, int credits) {
    char path[128], body[128];
    snprintf(path, sizeof path, "/v1/members/%s/grants", id);
    snprintf(body, sizeof body, "{\"credits\":%d,\"source\":\"purchase\"}", credits);
    assert_int_equal(call("POST", path, admin, body), 201);
}

/* ---- public endpoints -------------------------------------------------------------------- */

static void test_health_ready_metrics_openapi(void **state) {
    (void)state;
    tc_response r = tc_request(port, "GET", "/healthz", NULL, NULL, NULL);
    expect(&r, 200, NULL);
    r = tc_request(port, "GET", "/readyz", NULL, NULL, NULL);
    assert_non_null(strstr(r.body, "\"ready\""));
    expect(&r, 200, NULL);
    r = tc_request(port, "GET", "/metrics", NULL, NULL, NULL);
    assert_non_null(strstr(r.body, "creditgate_http_requests_total{route=\"/healthz\",status=\"200\"} 1"));
    assert_non_null(strstr(r.body, "creditgate_http_request_duration_seconds_bucket"));
    assert_true(tc_has_header(&r, "Content-Type: text/plain"));
    expect(&r, 200, NULL);
    r = tc_request(port, "GET", "/openapi.yaml", NULL, NULL, NULL);
    assert_non_null(strstr(r.body, "openapi: 3.1"));
    expect(&r, 200, NULL);
}

static void test_unknown_route_is_404_and_wrong_method_405(void **state) {
    (void)state;
    tc_response r = tc_request(port, "GET", "/v1/nothing", service, NULL, NULL);
    expect(&r, 404, NULL);
    r = tc_request(port, "DELETE", "/v1/quote", service, NULL, NULL);
    assert_true(tc_has_header(&r, "Allow: POST"));
    expect(&r, 405, NULL);
}

/* Every route of the server is in docs/openapi.yaml and every path+method there is served. */
static void test_openapi_matches_routes(void **state) {
    (void)state;
    FILE *f = fopen("docs/openapi.yaml", "r");
    assert_non_null(f);
    char doc[64][280];
    int doc_count = 0;
    char line[512], path[256] = "";
    bool in_paths = false;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "paths:", 6)) { in_paths = true; continue; }
        if (in_paths && line[0] != ' ' && line[0] != '\n') in_paths = false;
        if (!in_paths) continue;
        if (!strncmp(line, "  /", 3)) {
            sscanf(line + 2, "%255[^:]", path);
            continue;
        }
        static const char *const methods[] = {"get", "put", "post", "delete", "patch"};
        for (int m = 0; m < 5; m++) {
            char want[32];
            snprintf(want, sizeof want, "    %s:", methods[m]);
            if (!strncmp(line, want, strlen(want))) {
                assert_true(doc_count < 64);
                char upper[8] = "";
                for (int k = 0; methods[m][k] && k < 7; k++) {
                    upper[k] = (char)toupper((unsigned char)methods[m][k]);
                    upper[k + 1] = '\0';
                }
                snprintf(doc[doc_count++], sizeof doc[0], "%s %s", upper, path);
            }
        }
    }
    fclose(f);
    const cg_http_route_info *routes;
    int n = cg_http_routes(&routes);
    assert_int_equal(n, doc_count);
    for (int i = 0; i < n; i++) {
        char want[280];
        snprintf(want, sizeof want, "%s %s", routes[i].method, routes[i].pattern);
        bool found = false;
        for (int k = 0; k < doc_count; k++) found |= !strcmp(doc[k], want);
        if (!found) fail_msg("route %s is not in docs/openapi.yaml", want);
    }
}

/* ---- POST /v1/quote ---------------------------------------------------------------------- */

static json_t *cli_json(const char *args) {
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/creditgate quote %s --json", build, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_error_t e;
    json_t *j = json_loadf(p, 0, &e);
    pclose(p);
    if (!j) fail_msg("CLI gave no JSON for: %s", cmd);
    return j;
}

static void quote_equals_cli(const char *body, const char *args) {
    tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL, body);
    assert_int_equal(r.status, 200);
    json_t *http = body_json(&r);
    json_t *cli = cli_json(args);
    if (!json_equal(http, cli)) {
        char *a = json_dumps(cli, JSON_COMPACT);
        fail_msg("HTTP and CLI differ:\n%s\n%s", r.body, a);
    }
    json_decref(http);
    json_decref(cli);
    tc_free(&r);
}

static void test_quote_equals_cli_json(void **state) {
    (void)state;
    quote_equals_cli("{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},"
                     "\"model\":\"Nanobanana Pro\",\"variant\":\"2k\",\"at\":\"2026-06-01\"}",
                     "--plan plus --billing monthly --joined 2025-11-25 --model 'Nanobanana Pro' "
                     "--variant 2k --at 2026-06-01");
    quote_equals_cli("{\"member\":{\"plan\":\"premium\",\"billing\":\"monthly\",\"joined\":\"2026-03-01\"},"
                     "\"agent\":{\"model\":\"lite\",\"kind\":\"video\",\"prompt\":\"Use Carat Basic Video (LTX 2.3)\"},"
                     "\"at\":\"2026-12-01\",\"lang\":\"ko\",\"count\":3}",
                     "--plan premium --billing monthly --joined 2026-03-01 --agent-model lite --kind video "
                     "--prompt 'Use Carat Basic Video (LTX 2.3)' --at 2026-12-01 --lang ko --count 3");
    quote_equals_cli("{\"member\":{\"plan\":\"max\",\"billing\":\"annual\",\"joined\":\"2026-06-01\"},"
                     "\"model\":\"nanobanana-2\",\"variant\":\"4k\",\"at\":\"2026-07-01T12:00:00+09:00\"}",
                     "--plan max --billing annual --joined 2026-06-01 --model nanobanana-2 --variant 4k "
                     "--at 2026-07-01T12:00:00+09:00");
}

static void test_quote_by_member_id(void **state) {
    (void)state;
    put_member("q1", "pro", "monthly", "2025-12-10");
    tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL,
                               "{\"member_id\":\"q1\",\"model\":\"carat-video-ltx\"}");
    assert_non_null(strstr(r.body, "\"unlimited\":true"));
    expect(&r, 200, NULL);
    r = tc_request(port, "POST", "/v1/quote", service, NULL, "{\"member_id\":\"nobody\",\"model\":\"sora\"}");
    expect(&r, 404, "member_id");
}

/* Three quotes pipelined on one connection: each answer is written into the connection's
 * reply buffer, so each must be sent whole before the next request overwrites it. */
static void test_pipelined_quotes_each_get_their_own_answer(void **state) {
    (void)state;
    static const char *const models[] = {"sora", "grok-imagine", "midjourney"};
    char raw[4096];
    size_t used = 0;
    for (int i = 0; i < 3; i++) {
        char body[256];
        int n = snprintf(body, sizeof body, "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\","
                         "\"joined\":\"2025-11-25\"},\"model\":\"%s\",\"count\":%d}", models[i], i + 1);
        used += (size_t)snprintf(raw + used, sizeof raw - used,
                                 "POST /v1/quote HTTP/1.1\r\nHost: x\r\n%sAuthorization: Bearer %s\r\n"
                                 "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                                 i == 2 ? "Connection: close\r\n" : "", service, n, body);
    }
    tc_response r = tc_raw(port, raw, used);
    assert_int_equal(r.status, 200);
    /* the first answer's body runs into the next answers: find each in order */
    const char *at = r.body;
    for (int i = 0; i < 3; i++) {
        char want[96];
        snprintf(want, sizeof want, "\"model\":\"%s\",\"variant\":null,\"count\":%d,", models[i], i + 1);
        const char *hit = strstr(at, want);
        if (!hit) fail_msg("answer %d (%s) missing or out of order in:\n%s", i + 1, models[i], r.body);
        at = hit + strlen(want);
        if (i < 2) assert_non_null(strstr(at, "HTTP/1.1 200"));
    }
    tc_free(&r);
}

static const char *const member_ok = "\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"}";

static void quote_bad(const char *tail, int status, const char *field) {
    char body[2048];
    snprintf(body, sizeof body, "{%s%s}", member_ok, tail);
    tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL, body);
    expect(&r, status, field);
}

static void test_quote_rejects_bad_fields_naming_them(void **state) {
    (void)state;
    quote_bad(",\"model\":\"sora\",\"colour\":1", 400, "colour");
    quote_bad(",\"model\":\"sora\",\"count\":\"2\"", 400, "count");
    quote_bad(",\"model\":\"sora\",\"count\":0", 400, "count");
    quote_bad(",\"model\":\"sora\",\"count\":1001", 400, "count");
    quote_bad(",\"model\":\"sora\",\"count\":1000", 200, NULL); /* the boundary, just inside */
    quote_bad(",\"model\":\"sora\",\"count\":1.5", 400, "count");
    quote_bad(",\"model\":\"sora\",\"count\": 99999999999999999999999", 400, "count"); /* > int64 */
    quote_bad(",\"model\":\"sora\",\"count\":-1", 400, "count");
    quote_bad(",\"model\":42", 400, "model");
    quote_bad(",\"model\":\"sora\",\"agent\":{\"model\":\"lite\",\"kind\":\"video\",\"x\":1}", 400, "agent.x");
    quote_bad(",\"model\":\"sora\",\"agent\":{\"kind\":\"video\"}", 400, "agent.model");
    quote_bad(",\"model\":\"sora\",\"at\":\"2026-02-30\"", 400, "at");
    quote_bad(",\"model\":\"sora\",\"lang\":\"fr\"", 400, "lang");
    quote_bad(",\"model\":\"Nanobanana 3\"", 400, "model");
    quote_bad("", 400, "model");
    tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL,
                               "{\"member\":{\"plan\":\"gold\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},\"model\":\"sora\"}");
    expect(&r, 400, "plan");
    r = tc_request(port, "POST", "/v1/quote", service, NULL, "{\"model\":\"sora\"}");
    expect(&r, 400, "member");
    r = tc_request(port, "POST", "/v1/quote", service, NULL,
                   "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\"},\"model\":\"sora\"}");
    expect(&r, 400, "member.joined");
}

/* Numbers too big for any field are out_of_range against their field, not malformed JSON:
 * jansson refuses them while parsing ("real number overflow", "too big integer"). */
static void test_quote_huge_numbers_are_out_of_range(void **state) {
    (void)state;
    static const struct {
        const char *tail, *field;
    } cases[] = {
        {",\"model\":\"sora\",\"count\":1e999999", "count"},
        {",\"model\":\"sora\",\"count\": -1e999999 ", "count"},
        {",\"model\":\"sora\",\"count\":99999999999999999999999", "count"},
        {",\"model\":\"sora\",\"agent\":{\"kind\":\"video\",\"model\":1E+999999}", "agent.model"},
        {",\"model\":\"sora\",\"x\":[1e999999]", "body"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{%s%s}", member_ok, cases[i].tail);
        tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL, body);
        if (!strstr(r.body, "\"code\":\"out_of_range\"")) fail_msg("%s: %s", body, r.body);
        expect(&r, 400, strcmp(cases[i].field, "body") ? cases[i].field : NULL);
    }
    /* just inside: the largest double is a number, refused only because count is an integer */
    tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL,
                               "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},"
                               "\"model\":\"sora\",\"count\":1.7e308}");
    assert_non_null(strstr(r.body, "\"code\":\"invalid\""));
    expect(&r, 400, "count");
}

/* The common body is read by src/http/body_fast.c; anything outside its subset goes to jansson.
 * Over the wire, both sides of that line give the answers they always gave: the same 200 for
 * the same request written with escapes, UTF-8 or odd spacing, and the same 400s. */
static void test_quote_bodies_outside_the_fast_path(void **state) {
    (void)state;
    static const char *const plain = "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\","
                                     "\"joined\":\"2025-11-25\"},\"model\":\"sora\",\"count\":2}";
    static const char *const same[] = {
        "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},"
        "\"model\":\"s\\u006fra\",\"count\":2}", /* an escape in a value */
        "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},"
        "\"m\\u006fdel\":\"sora\",\"count\":2}", /* an escape in a name */
        "\r\n\t{ \"member\" : { \"plan\" : \"plus\" , \"billing\":\"monthly\",\"joined\":\"2025-11-25\" } ,"
        "\"count\" : 2 , \"model\" : \"sora\" , \"variant\" : null , \"agent\" : null }\n",
    };
    tc_response want = tc_request(port, "POST", "/v1/quote", service, NULL, plain);
    assert_int_equal(want.status, 200);
    char *cut = strstr(want.body, "\"items\""); /* "at" is the instant of each request */
    assert_non_null(cut);
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL, same[i]);
        if (r.status != 200 || !strstr(r.body, cut)) fail_msg("%s\n-> %d %s", same[i], r.status, r.body);
        tc_free(&r);
    }
    tc_free(&want);
    /* just inside the scanner (18 digits) and just outside (19): both out of range for count */
    quote_bad(",\"model\":\"sora\",\"count\":999999999999999999", 400, "count");
    quote_bad(",\"model\":\"sora\",\"count\":9999999999999999999", 400, "count");
    quote_bad(",\"model\":\"sora\",\"model\":\"sora\"", 400, NULL); /* duplicate: jansson's */
    quote_bad(",\"model\":\"sora\",\"count\":01", 400, NULL);       /* malformed */
    quote_bad(",\"model\":\"sora\",\"count\":-0", 400, "count");    /* 0: out of range */
    quote_bad(",\"model\":\"sora\",\"lang\":\"caf\xc3\xa9\"", 400, "lang");
    quote_bad(",\"model\":\"sora\",\"member_id\":null", 200, NULL); /* null: absent */
    quote_bad(",\"model\":\"sora\",\"agent\":{}", 400, "agent.model");
    quote_bad(",\"model\":\"sora\"} ", 400, NULL);                  /* text after the body */
}

static void test_quote_unknown_model_suggests(void **state) {
    (void)state;
    char body[512];
    snprintf(body, sizeof body, "{%s,\"model\":\"nanobanan\"}", member_ok);
    tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL, body);
    assert_non_null(strstr(r.body, "suggestions"));
    expect(&r, 400, "model");
}

static void test_malformed_and_limits(void **state) {
    (void)state;
    tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL, "{\"model\": ");
    assert_non_null(strstr(r.body, "malformed_json"));
    expect(&r, 400, NULL);
    r = tc_request(port, "POST", "/v1/quote", service, NULL, "[1,2]");
    expect(&r, 400, NULL);
    r = tc_request(port, "POST", "/v1/quote", service, NULL, "{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}");
    assert_non_null(strstr(r.body, "too_deep"));
    expect(&r, 400, NULL);
    r = tc_request(port, "POST", "/v1/quote", service, NULL, "{\"a\":{\"b\":{\"c\":{}}}}"); /* depth 4: parsed */
    expect(&r, 400, "a");
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char body[2048];
    snprintf(body, sizeof body, "{%s,\"model\":\"sora\",\"agent\":{\"model\":\"lite\",\"kind\":\"image\",\"prompt\":\"%s\"}}", member_ok, big);
    r = tc_request(port, "POST", "/v1/quote", service, NULL, body);
    assert_non_null(strstr(r.body, "too_long"));
    expect(&r, 400, "agent.prompt");
    r = tc_request(port, "POST", "/v1/quote", service, NULL, "{\"a\":1,\"a\":2}");
    expect(&r, 400, NULL);
}

static void test_body_size_limit_413(void **state) {
    (void)state;
    char *body = malloc(5000);
    memset(body, ' ', 4999);
    body[0] = '{';
    body[4998] = '}';
    body[4999] = '\0';
    tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL, body);
    expect(&r, 413, NULL);
    body[4096 - 1] = '}'; /* exactly the limit: parsed (and refused for its content) */
    body[4096] = '\0';
    r = tc_request(port, "POST", "/v1/quote", service, NULL, body);
    expect(&r, 400, "member");
    free(body);
    /* chunked: no Content-Length up front, refused once the body passes the limit */
    char raw[8192];
    int n = snprintf(raw, sizeof raw, "POST /v1/quote HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n", service);
    for (int i = 0; i < 3; i++) {
        n += snprintf(raw + n, sizeof raw - (size_t)n, "7d0\r\n");
        memset(raw + n, ' ', 2000);
        n += 2000;
        n += snprintf(raw + n, sizeof raw - (size_t)n, "\r\n");
    }
    n += snprintf(raw + n, sizeof raw - (size_t)n, "0\r\n\r\n");
    r = tc_raw(port, raw, (size_t)n);
    expect(&r, 413, NULL);
}

static void test_header_size_limit(void **state) {
    (void)state;
    char *extra = malloc(8000);
    int n = snprintf(extra, 8000, "X-Filler: ");
    memset(extra + n, 'a', 6000);
    snprintf(extra + n + 6000, 8000 - (size_t)n - 6000, "\r\n");
    tc_response r = tc_request(port, "GET", "/healthz", NULL, extra, NULL);
    expect(&r, 431, NULL); /* libmicrohttpd refuses before any handler runs */
    free(extra);
    char *path = malloc(6000);
    memcpy(path, "/healthz?", 9);
    memset(path + 9, 'a', 5000);
    path[5009] = '\0';
    r = tc_request(port, "GET", path, NULL, NULL, NULL);
    expect(&r, 414, NULL);
    free(path);
    r = tc_request(port, "GET", "/healthz", NULL, "X-Small: a\r\n", NULL);
    expect(&r, 200, NULL);
}

static void test_content_type_must_be_json(void **state) {
    (void)state;
    char raw[512];
    int n = snprintf(raw, sizeof raw, "POST /v1/quote HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Authorization: Bearer %s\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
                     service);
    tc_response r = tc_raw(port, raw, (size_t)n);
    expect(&r, 415, NULL);
}

/* Random damage to valid bodies (flipped, dropped, inserted bytes, truncation): every answer is
 * a 2xx or a 4xx JSON error, never a 5xx or a dropped connection. Seeded, so repeatable. */
static void test_mangled_bodies_never_500(void **state) {
    (void)state;
    static const char *const seeds[] = {
        "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},\"model\":\"Nanobanana Pro\",\"variant\":\"2k\",\"count\":2}",
        "{\"member\":{\"plan\":\"premium\",\"billing\":\"annual\",\"joined\":\"2026-03-01T10:00:00+09:00\"},\"agent\":{\"model\":\"soul\",\"kind\":\"video\",\"prompt\":\"\\ud55c \\\"LTX\\\"\"},\"lang\":\"ko\"}",
    };
    static const char junk[] = "{}[]\":,\\0123456789eE.-+ntfaluxyz\x01\xff\xc3";
    unsigned seed = 12345;
    for (int i = 0; i < 400; i++) {
        const char *base = seeds[i % 2];
        char body[512];
        size_t len = strlen(base);
        memcpy(body, base, len + 1);
        int edits = 1 + (int)(rand_r(&seed) % 4);
        for (int e = 0; e < edits && len > 2; e++) {
            size_t at = (size_t)rand_r(&seed) % len;
            char c = junk[(size_t)rand_r(&seed) % (sizeof junk - 1)];
            switch (rand_r(&seed) % 4) {
            case 0: body[at] = c; break;                                           /* flip */
            case 1: memmove(body + at, body + at + 1, len - at); len--; break;     /* drop */
            case 2:
                if (len + 1 < sizeof body) {                                       /* insert */
                    memmove(body + at + 1, body + at, len - at + 1);
                    body[at] = c;
                    len++;
                }
                break;
            default: body[at] = '\0'; len = at; break;                           /* truncate */
            }
        }
        tc_response r = tc_request(port, "POST", "/v1/quote", service, NULL, body);
        if (r.status < 200 || r.status >= 500 || (r.status >= 400 && !strstr(r.body, "\"error\"")))
            fail_msg("mangled body %d gave %d: %s\nbody: %s", i, r.status, r.body ? r.body : "", body);
        tc_free(&r);
    }
    assert_int_equal(call("GET", "/healthz", NULL, NULL), 200);
}

/* ---- auth -------------------------------------------------------------------------------- */

static void test_auth_missing_wrong_and_role(void **state) {
    (void)state;
    tc_response r = tc_request(port, "GET", "/v1/members/a1", NULL, NULL, NULL);
    assert_true(tc_has_header(&r, "WWW-Authenticate: Bearer"));
    expect(&r, 401, NULL);
    r = tc_request(port, "GET", "/v1/members/a1", "cgk_not-a-real-key", NULL, NULL);
    expect(&r, 401, NULL);
    /* a stranger is refused before its body is even looked at */
    r = tc_raw(port, "POST /v1/quote HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Type: text/plain\r\nContent-Length: 999999\r\n\r\n", 105);
    expect(&r, 401, NULL);
    r = tc_request(port, "GET", "/v1/members/a1", NULL, "Authorization: Basic Zm9vOmJhcg==\r\n", NULL);
    expect(&r, 401, NULL);
    put_member("a1", "plus", "monthly", "2025-11-25");
    /* grants and refunds need admin */
    r = tc_request(port, "POST", "/v1/members/a1/grants", service, NULL, "{\"credits\":5,\"source\":\"promo\"}");
    expect(&r, 403, NULL);
    r = tc_request(port, "POST", "/v1/charges/ch_x/refund", service, NULL, "{\"member_id\":\"a1\",\"reason\":\"x\"}");
    expect(&r, 403, NULL);
    r = tc_request(port, "POST", "/v1/members/a1/grants", admin, NULL, "{\"credits\":5,\"source\":\"promo\"}");
    expect(&r, 201, NULL);
}

static void mint(const char *id, char *token, size_t bytes) {
    char path[128];
    snprintf(path, sizeof path, "/v1/members/%s/tokens", id);
    tc_response r = tc_request(port, "POST", path, service, NULL, "{}");
    assert_int_equal(r.status, 201);
    assert_true(tc_has_header(&r, "Cache-Control: no-store"));
    json_t *j = body_json(&r);
    snprintf(token, bytes, "%s", json_string_value(json_object_get(j, "token")));
    json_decref(j);
    tc_free(&r);
}

static void test_member_token_reaches_only_its_member(void **state) {
    (void)state;
    put_member("ta", "premium", "monthly", "2026-03-01");
    put_member("tb", "plus", "monthly", "2025-12-05");
    char token[CG_HTTP_TOKEN_BYTES_MAX];
    mint("ta", token, sizeof token);
    assert_int_equal(call("GET", "/v1/members/ta", token, NULL), 200);
    assert_int_equal(call("GET", "/v1/members/ta/balance", token, NULL), 200);
    assert_int_equal(call("GET", "/v1/members/ta/benefits", token, NULL), 200);
    assert_int_equal(call("GET", "/v1/members/ta/history", token, NULL), 200);
    assert_int_equal(call("GET", "/v1/members/tb", token, NULL), 403);
    assert_int_equal(call("GET", "/v1/members/tb/balance", token, NULL), 403);
    assert_int_equal(call("GET", "/v1/members/ta/prices", token, NULL), 200);
    assert_int_equal(call("GET", "/v1/members/tb/prices", token, NULL), 403);
    assert_int_equal(call("GET", "/v1/members/ta/prices", NULL, NULL), 401);
    assert_int_equal(call("POST", "/v1/quote", token, "{\"member_id\":\"ta\",\"model\":\"sora\"}"), 200);
    assert_int_equal(call("POST", "/v1/quote", token, "{\"member_id\":\"tb\",\"model\":\"sora\"}"), 403);
    assert_int_equal(call("GET", "/v1/charges/ch_1?member_id=tb", token, NULL), 403);
    /* a member cannot spend, grant, change itself or mint tokens */
    assert_int_equal(call("POST", "/v1/charges", token, "{\"member_id\":\"ta\",\"model\":\"sora\"}"), 403);
    assert_int_equal(call("PUT", "/v1/members/ta", token, "{\"plan\":\"max\",\"billing\":\"monthly\",\"joined\":\"2026-03-01\"}"), 403);
    assert_int_equal(call("POST", "/v1/members/ta/tokens", token, "{}"), 403);
    /* a tampered token is refused */
    token[strlen(token) - 2] = token[strlen(token) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(call("GET", "/v1/members/ta", token, NULL), 401);
    assert_int_equal(call("POST", "/v1/members/nobody/tokens", service, "{}"), 404);
    assert_int_equal(call("POST", "/v1/members/ta/tokens", service, "{\"ttl_s\":5}"), 400);
}

static void test_no_secret_in_access_log(void **state) {
    (void)state;
    char path[512], token[CG_HTTP_TOKEN_BYTES_MAX];
    mint("a1", token, sizeof token);
    assert_int_equal(call("GET", "/v1/members/a1", token, NULL), 200);
    snprintf(path, sizeof path, "%s/access.log", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *text = calloc(1, 4 * 1024 * 1024);
    size_t n = fread(text, 1, 4 * 1024 * 1024 - 1, f);
    fclose(f);
    assert_true(n > 0);
    assert_null(strstr(text, admin));
    assert_null(strstr(text, service));
    assert_null(strstr(text, token));
    assert_non_null(strstr(text, "\"route\":\"/v1/members/{id}\""));
    assert_non_null(strstr(text, "\"member_id\":\"a1\""));
    assert_non_null(strstr(text, "\"key\":\"gen\""));
    free(text);
}

/* ---- members, grants, balance, history --------------------------------------------------- */

static void test_member_routes(void **state) {
    (void)state;
    put_member("m1", "plus", "monthly", "2025-11-25");
    /* an upgrade later: a second version, the first kept */
    assert_int_equal(call("PUT", "/v1/members/m1", service,
                          "{\"plan\":\"premium\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\","
                          "\"effective_at\":\"2026-01-01\"}"), 200);
    /* PUT honours Idempotency-Key like every mutating call */
    const char *put = "{\"plan\":\"pro\",\"billing\":\"monthly\",\"joined\":\"2025-11-10\",\"effective_at\":\"2025-11-10\"}";
    tc_response r = tc_request(port, "PUT", "/v1/members/idem", service, "Idempotency-Key: put-1\r\n", put);
    expect(&r, 200, NULL);
    r = tc_request(port, "PUT", "/v1/members/idem", service, "Idempotency-Key: put-1\r\n", put);
    assert_true(tc_has_header(&r, "Idempotent-Replayed: true"));
    expect(&r, 200, NULL);
    r = tc_request(port, "PUT", "/v1/members/idem", service, "Idempotency-Key: put-1\r\n",
                   "{\"plan\":\"max\",\"billing\":\"monthly\",\"joined\":\"2025-11-10\"}");
    expect(&r, 409, NULL);
    r = tc_request(port, "GET", "/v1/members/m1", service, NULL, NULL);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "plan")), "premium");
    assert_int_equal(json_array_size(json_object_get(j, "versions")), 2);
    json_decref(j);
    expect(&r, 200, NULL);
    r = tc_request(port, "GET", "/v1/members/ghost", service, NULL, NULL);
    expect(&r, 404, NULL);
    r = tc_request(port, "PUT", "/v1/members/m1", service, NULL, "{\"plan\":\"gold\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"}");
    expect(&r, 400, "plan");
    r = tc_request(port, "PUT", "/v1/members/bad%20id", service, NULL, "{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"}");
    expect(&r, 400, "id");
    grant("m1", 300);
    r = tc_request(port, "POST", "/v1/members/m1/grants", admin, NULL, "{\"credits\":0,\"source\":\"purchase\"}");
    expect(&r, 400, "credits");
    r = tc_request(port, "POST", "/v1/members/m1/grants", admin, NULL, "{\"credits\":5,\"source\":\"gift\"}");
    expect(&r, 400, "source");
    r = tc_request(port, "POST", "/v1/members/ghost/grants", admin, NULL, "{\"credits\":5,\"source\":\"promo\"}");
    expect(&r, 404, NULL);
    r = tc_request(port, "GET", "/v1/members/m1/balance", service, NULL, NULL);
    assert_non_null(strstr(r.body, "\"available\":300"));
    expect(&r, 200, NULL);
    r = tc_request(port, "GET", "/v1/members/m1/benefits?lang=ko&at=2026-06-01", service, NULL, NULL);
    assert_non_null(strstr(r.body, "nanobanana-pro"));
    expect(&r, 200, NULL);
    r = tc_request(port, "GET", "/v1/members/m1/benefits?colour=red", service, NULL, NULL);
    expect(&r, 400, "colour");
    /* the price list: each entry is what POST /v1/quote answers for that model and variant */
    r = tc_request(port, "GET", "/v1/members/m1/prices?lang=ko&at=2026-06-01", service, NULL, NULL);
    j = body_json(&r);
    expect(&r, 200, NULL);
    json_t *prices = json_object_get(j, "prices");
    assert_true(json_array_size(prices) >= 10);
    size_t compared = 0, unlimited = 0;
    for (size_t i = 0; i < json_array_size(prices); i++) {
        json_t *e = json_array_get(prices, i);
        const char *model = json_string_value(json_object_get(e, "model"));
        const char *variant = json_string_value(json_object_get(e, "variant"));
        char body[256];
        snprintf(body, sizeof body, "{\"member_id\":\"m1\",\"model\":\"%s\",%s%s%s"
                 "\"at\":\"2026-06-01\",\"lang\":\"ko\"}", model,
                 variant ? "\"variant\":\"" : "", variant ? variant : "", variant ? "\"," : "");
        tc_response q = tc_request(port, "POST", "/v1/quote", service, NULL, body);
        json_t *qj = body_json(&q);
        assert_int_equal(q.status, 200);
        assert_true(json_equal(json_array_get(json_object_get(qj, "items"), 0),
                               json_object_get(e, "item")));
        unlimited += json_is_true(json_object_get(json_object_get(e, "item"), "unlimited"));
        compared++;
        json_decref(qj);
        tc_free(&q);
    }
    assert_int_equal(compared, json_array_size(prices));
    assert_true(unlimited > 0); /* m1 has a benefit then (the benefits answer above) */
    json_decref(j);
    r = tc_request(port, "GET", "/v1/members/ghost/prices", service, NULL, NULL);
    expect(&r, 404, NULL);
    r = tc_request(port, "GET", "/v1/members/m1/prices?colour=red", service, NULL, NULL);
    expect(&r, 400, "colour");
    r = tc_request(port, "GET", "/v1/members/m1/history?limit=1", service, NULL, NULL);
    j = body_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "entries")), 1);
    json_decref(j);
    expect(&r, 200, NULL);
    r = tc_request(port, "GET", "/v1/members/m1/history?limit=0", service, NULL, NULL);
    expect(&r, 400, "limit");
    r = tc_request(port, "GET", "/v1/members/m1/history?limit=501", service, NULL, NULL);
    expect(&r, 400, "limit");
}

/* ---- charges ----------------------------------------------------------------------------- */

static void charge_id(tc_response *r, char *id, size_t bytes) {
    json_t *j = body_json(r);
    snprintf(id, bytes, "%s", json_string_value(json_object_get(j, "charge_id")));
    json_decref(j);
}

static void test_charge_lifecycle(void **state) {
    (void)state;
    put_member("c1", "plus", "monthly", "2025-11-25");
    grant("c1", 1000);
    const char *sora = "{\"member_id\":\"c1\",\"model\":\"sora-2\"}";
    tc_response r = tc_request(port, "POST", "/v1/charges", service, "Idempotency-Key: c1-first\r\n", sora);
    assert_int_equal(r.status, 201);
    char id[64], path[160];
    charge_id(&r, id, sizeof id);
    tc_free(&r);
    /* retry: same answer, no second hold */
    r = tc_request(port, "POST", "/v1/charges", service, "Idempotency-Key: c1-first\r\n", sora);
    assert_true(tc_has_header(&r, "Idempotent-Replayed: true"));
    char again[64];
    charge_id(&r, again, sizeof again);
    assert_string_equal(id, again);
    expect(&r, 201, NULL);
    /* same key, other request */
    r = tc_request(port, "POST", "/v1/charges", service, "Idempotency-Key: c1-first\r\n",
                   "{\"member_id\":\"c1\",\"model\":\"kling\"}");
    expect(&r, 409, NULL);
    r = tc_request(port, "GET", "/v1/members/c1/balance", service, NULL, NULL);
    assert_non_null(strstr(r.body, "\"held\":250")); /* one hold only */
    expect(&r, 200, NULL);
    snprintf(path, sizeof path, "/v1/charges/%s?member_id=c1", id);
    r = tc_request(port, "GET", path, service, NULL, NULL);
    expect(&r, 200, NULL);
    r = tc_request(port, "GET", "/v1/charges/ch_0000000000000000?member_id=c1", service, NULL, NULL);
    expect(&r, 404, NULL);
    r = tc_request(port, "GET", "/v1/charges/ch_1", service, NULL, NULL);
    expect(&r, 400, "member_id");
    snprintf(path, sizeof path, "/v1/charges/%s/capture", id);
    r = tc_request(port, "POST", path, service, "Idempotency-Key: cap1\r\n", "{\"member_id\":\"c1\",\"credits\":200}");
    assert_non_null(strstr(r.body, "\"captured\":200"));
    expect(&r, 200, NULL);
    r = tc_request(port, "POST", path, service, "Idempotency-Key: cap1\r\n", "{\"member_id\":\"c1\",\"credits\":200}");
    assert_true(tc_has_header(&r, "Idempotent-Replayed: true"));
    expect(&r, 200, NULL);
    r = tc_request(port, "POST", path, service, "Idempotency-Key: cap2\r\n", "{\"member_id\":\"c1\"}");
    expect(&r, 409, NULL); /* captured twice */
    snprintf(path, sizeof path, "/v1/charges/%s/release", id);
    r = tc_request(port, "POST", path, service, NULL, "{\"member_id\":\"c1\"}");
    expect(&r, 409, NULL); /* release after capture */
    snprintf(path, sizeof path, "/v1/charges/%s/refund", id);
    r = tc_request(port, "POST", path, admin, NULL, "{\"member_id\":\"c1\",\"credits\":500,\"reason\":\"x\"}");
    expect(&r, 400, NULL); /* more than captured */
    r = tc_request(port, "POST", path, admin, NULL, "{\"member_id\":\"c1\",\"credits\":50,\"reason\":\"video came out broken\"}");
    assert_non_null(strstr(r.body, "\"refunded\":50"));
    expect(&r, 200, NULL);
    r = tc_request(port, "POST", path, admin, NULL, "{\"member_id\":\"c1\",\"credits\":50}");
    expect(&r, 400, "reason");
}

static void test_charge_release_and_unlimited(void **state) {
    (void)state;
    put_member("c2", "premium", "monthly", "2026-03-01");
    grant("c2", 100);
    tc_response r = tc_request(port, "POST", "/v1/charges", service, NULL,
                               "{\"member_id\":\"c2\",\"model\":\"Carat Video\",\"at\":\"2026-06-01\"}");
    assert_non_null(strstr(r.body, "\"credits\":0"));
    assert_non_null(strstr(r.body, "carat-video-premium-1y"));
    expect(&r, 201, NULL);
    r = tc_request(port, "POST", "/v1/charges", service, NULL, "{\"member_id\":\"c2\",\"model\":\"midjourney\"}");
    char id[64], path[160];
    charge_id(&r, id, sizeof id);
    expect(&r, 201, NULL);
    snprintf(path, sizeof path, "/v1/charges/%s/release", id);
    r = tc_request(port, "POST", path, service, NULL, "{\"member_id\":\"c2\"}");
    assert_non_null(strstr(r.body, "\"released\""));
    expect(&r, 200, NULL);
    r = tc_request(port, "POST", "/v1/charges/ch_nope/capture", service, NULL, "{\"member_id\":\"c2\"}");
    expect(&r, 404, NULL);
}

/* The usage history lists every charge newest first, the unlimited (0-credit) ones too. */
static void test_member_charges_lists_unlimited_and_charged(void **state) {
    (void)state;
    put_member("c3", "premium", "monthly", "2026-03-01");
    put_member("c4", "plus", "monthly", "2026-03-01");
    grant("c3", 500);
    tc_response r = tc_request(port, "POST", "/v1/charges", service, NULL,
                               "{\"member_id\":\"c3\",\"model\":\"Carat Video\",\"at\":\"2026-06-01\"}");
    expect(&r, 201, NULL);
    r = tc_request(port, "POST", "/v1/charges", service, NULL, "{\"member_id\":\"c3\",\"model\":\"midjourney\"}");
    expect(&r, 201, NULL);
    r = tc_request(port, "GET", "/v1/members/c3/charges?limit=1", service, NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    json_t *charges = json_object_get(j, "charges");
    assert_int_equal(json_array_size(charges), 1);
    assert_non_null(strstr(r.body, "midjourney")); /* newest first */
    const char *next = json_string_value(json_object_get(j, "next"));
    assert_non_null(next);
    char path[256];
    snprintf(path, sizeof path, "/v1/members/c3/charges?limit=5&before=%s", next);
    json_decref(j);
    tc_free(&r);
    r = tc_request(port, "GET", path, service, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "carat-video-premium-1y"));
    j = body_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "charges")), 1);
    assert_true(json_is_null(json_object_get(j, "next")));
    json_decref(j);
    tc_free(&r);
    char token[CG_HTTP_TOKEN_BYTES_MAX];
    mint("c3", token, sizeof token);
    assert_int_equal(call("GET", "/v1/members/c3/charges", token, NULL), 200);
    assert_int_equal(call("GET", "/v1/members/c4/charges", token, NULL), 403);
    r = tc_request(port, "GET", "/v1/members/c3/charges?limit=0", service, NULL, NULL);
    expect(&r, 400, "limit");
    r = tc_request(port, "GET", "/v1/members/c3/charges?before=%21%21", service, NULL, NULL);
    expect(&r, 400, "before");
}

static void test_charge_insufficient_402(void **state) {
    (void)state;
    put_member("poor", "plus", "monthly", "2025-11-25");
    grant("poor", 10);
    tc_response r = tc_request(port, "POST", "/v1/charges", service, NULL, "{\"member_id\":\"poor\",\"model\":\"veo-3\"}");
    json_t *j = body_json(&r);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "insufficient_credits");
    assert_int_equal(json_integer_value(json_object_get(e, "available")), 10);
    assert_true(json_integer_value(json_object_get(e, "needed")) > 10);
    json_decref(j);
    expect(&r, 402, NULL);
    r = tc_request(port, "POST", "/v1/charges", service, NULL, "{\"member_id\":\"poor\",\"model\":\"veo-3\",\"count\":1001}");
    expect(&r, 400, "count");
    r = tc_request(port, "POST", "/v1/charges", service, NULL, "{\"model\":\"veo-3\"}");
    expect(&r, 400, "member_id");
    r = tc_request(port, "POST", "/v1/charges", service, "Idempotency-Key: \x01\r\n", "{\"member_id\":\"poor\",\"model\":\"veo-3\"}");
    assert_true(r.status == 400);
    tc_free(&r);
    r = tc_request(port, "POST", "/v1/charges", service, NULL, "{\"member_id\":\"ghost\",\"model\":\"veo-3\"}");
    expect(&r, 404, NULL);
}

static void test_metrics_count_decisions_and_charges(void **state) {
    (void)state;
    tc_response r = tc_request(port, "GET", "/metrics", NULL, NULL, NULL);
    assert_non_null(strstr(r.body, "creditgate_decisions_total{model=\"carat-video-ltx\",benefit=\"carat-video-premium-1y\",outcome=\"unlimited\"}"));
    assert_non_null(strstr(r.body, "creditgate_charges_total{model=\"sora-2\"} 1"));
    assert_non_null(strstr(r.body, "creditgate_charged_credits_total{model=\"sora-2\"} 250"));
    assert_non_null(strstr(r.body, "creditgate_holds_outstanding"));
    assert_non_null(strstr(r.body, "route=\"/v1/charges\",status=\"402\""));
    assert_non_null(strstr(r.body, "creditgate_ledger_page_cache_bytes "));
    assert_non_null(strstr(r.body, "creditgate_ledger_batches_total "));
    expect(&r, 200, NULL);
}

/* The value of an unlabelled metric line "NAME VALUE"; fails the test if absent. */
static long long metric_value(const char *name) {
    tc_response r = tc_request(port, "GET", "/metrics", NULL, NULL, NULL);
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *at = strstr(r.body, key);
    assert_non_null(at);
    long long v = strtoll(at + strlen(key), NULL, 10);
    tc_free(&r);
    return v;
}

/* creditgate_holds_outstanding is the ledger's count: a charge opens one, a release closes it. */
static void test_metrics_holds_outstanding_follows_the_ledger(void **state) {
    (void)state;
    put_member("h1", "plus", "monthly", "2025-11-25");
    grant("h1", 1000);
    long long before = metric_value("creditgate_holds_outstanding");
    long long calls = metric_value("creditgate_ledger_calls_total");
    assert_true(before >= 0);
    tc_response r = tc_request(port, "POST", "/v1/charges", service, "Idempotency-Key: h1-a\r\n",
                               "{\"member_id\":\"h1\",\"model\":\"midjourney\"}");
    assert_int_equal(r.status, 201);
    char id[64], path[160];
    charge_id(&r, id, sizeof id);
    tc_free(&r);
    assert_int_equal(metric_value("creditgate_holds_outstanding"), before + 1);
    assert_true(metric_value("creditgate_ledger_calls_total") > calls);
    snprintf(path, sizeof path, "/v1/charges/%s/release", id);
    r = tc_request(port, "POST", path, service, "Idempotency-Key: h1-a-rel\r\n",
                   "{\"member_id\":\"h1\"}");
    assert_int_equal(r.status, 200);
    tc_free(&r);
    assert_int_equal(metric_value("creditgate_holds_outstanding"), before);
}

/* "capture": true settles in the same call: 201 captured, nothing held or counted as an open
 * hold, capture/release refused, refund as usual; a non-boolean capture is a 400 naming it. */
static void test_charge_with_capture(void **state) {
    (void)state;
    put_member("c5", "plus", "monthly", "2025-11-25");
    grant("c5", 100);
    long long holds = metric_value("creditgate_holds_outstanding");
    const char *body = "{\"member_id\":\"c5\",\"model\":\"midjourney\",\"capture\":true}";
    tc_response r = tc_request(port, "POST", "/v1/charges", service, "Idempotency-Key: c5-a\r\n", body);
    assert_non_null(strstr(r.body, "\"status\":\"captured\""));
    assert_non_null(strstr(r.body, "\"captured\":10"));
    char id[64], path[160];
    charge_id(&r, id, sizeof id);
    expect(&r, 201, NULL);
    r = tc_request(port, "POST", "/v1/charges", service, "Idempotency-Key: c5-a\r\n", body);
    assert_true(tc_has_header(&r, "Idempotent-Replayed: true"));
    char again[64];
    charge_id(&r, again, sizeof again);
    assert_string_equal(id, again);
    expect(&r, 201, NULL);
    /* the same key without capture is another request */
    r = tc_request(port, "POST", "/v1/charges", service, "Idempotency-Key: c5-a\r\n",
                   "{\"member_id\":\"c5\",\"model\":\"midjourney\",\"capture\":false}");
    expect(&r, 409, NULL);
    r = tc_request(port, "GET", "/v1/members/c5/balance", service, NULL, NULL);
    assert_non_null(strstr(r.body, "\"available\":90"));
    assert_non_null(strstr(r.body, "\"held\":0"));
    expect(&r, 200, NULL);
    assert_int_equal(metric_value("creditgate_holds_outstanding"), holds);
    snprintf(path, sizeof path, "/v1/charges/%s/capture", id);
    r = tc_request(port, "POST", path, service, NULL, "{\"member_id\":\"c5\"}");
    expect(&r, 409, NULL);
    snprintf(path, sizeof path, "/v1/charges/%s/release", id);
    r = tc_request(port, "POST", path, service, NULL, "{\"member_id\":\"c5\"}");
    expect(&r, 409, NULL);
    snprintf(path, sizeof path, "/v1/charges/%s/refund", id);
    r = tc_request(port, "POST", path, admin, NULL, "{\"member_id\":\"c5\",\"reason\":\"failed\"}");
    assert_non_null(strstr(r.body, "\"refunded\":10"));
    expect(&r, 200, NULL);
    /* null is the default (a hold); anything but a boolean is refused, naming the field */
    r = tc_request(port, "POST", "/v1/charges", service, NULL,
                   "{\"member_id\":\"c5\",\"capture\":null,\"model\":\"midjourney\"}");
    assert_non_null(strstr(r.body, "\"status\":\"held\""));
    expect(&r, 201, NULL);
    r = tc_request(port, "POST", "/v1/charges", service, NULL,
                   "{\"member_id\":\"c5\",\"model\":\"midjourney\",\"capture\":\"yes\"}");
    expect(&r, 400, "capture");
    r = tc_request(port, "POST", "/v1/charges", service, NULL,
                   "{\"member_id\":\"c5\",\"model\":\"midjourney\",\"capture\":1}");
    expect(&r, 400, "capture");
}

/* ---- reload ------------------------------------------------------------------------------ */

static void rewrite_policy(const char *from, const char *to) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sed -i 's/%s/%s/' '%s'", from, to, policy_path);
    assert_int_equal(system(cmd), 0);
}

static void *quote_loop(void *arg) {
    int *bad = arg;
    char body[512];
    snprintf(body, sizeof body, "{%s,\"model\":\"sora\"}", member_ok);
    for (int i = 0; i < 60; i++)
        if (call("POST", "/v1/quote", service, body) != 200) (*bad)++;
    return NULL;
}

static void test_reload_good_then_broken_keeps_old(void **state) {
    (void)state;
    int bad = 0;
    pthread_t t;
    pthread_create(&t, NULL, quote_loop, &bad); /* requests keep flowing during the reloads */
    rewrite_policy("^version: carat-2026-11", "version: carat-reloaded");
    cg_err err = {0};
    assert_cg_ok(cg_http_server_reload(srv, &err), err);
    char label[256];
    cg_http_server_policy_label(srv, label, sizeof label);
    assert_string_equal(label, "carat-reloaded");
    tc_response r = tc_request(port, "GET", "/readyz", NULL, NULL, NULL);
    assert_non_null(strstr(r.body, "carat-reloaded"));
    expect(&r, 200, NULL);
    rewrite_policy("^version: carat-reloaded", "version: carat-reloaded\\nbogus_key: 1");
    bool reloaded = false;
    assert_int_not_equal(cg_http_server_reload_if_changed(srv, &reloaded, &err), 0);
    assert_true(reloaded);
    assert_non_null(strstr(err.msg, "bogus_key"));
    cg_http_server_policy_label(srv, label, sizeof label);
    assert_string_equal(label, "carat-reloaded"); /* old one kept */
    assert_int_equal(cg_http_server_reload_if_changed(srv, &reloaded, &err), 0);
    assert_false(reloaded); /* the broken file is not retried until it changes again */
    for (int i = 0; i < 5; i++) assert_int_not_equal(cg_http_server_reload(srv, &err), 0);
    pthread_join(t, NULL);
    assert_int_equal(bad, 0);
    r = tc_request(port, "GET", "/metrics", NULL, NULL, NULL);
    assert_non_null(strstr(r.body, "creditgate_policy_reloads_total{result=\"ok\"} 1"));
    expect(&r, 200, NULL);
    tc_copy(CG_TEST_POLICY, policy_path); /* restore for later tests */
    assert_cg_ok(cg_http_server_reload(srv, &err), err);
    assert_int_equal(call("POST", "/v1/members/c1/tokens", service, "{}"), 201); /* ledger reopened */
}

static void *charge_loop(void *arg) {
    int *bad = arg;
    for (int i = 0; i < 40; i++) {
        tc_response r = tc_request(port, "POST", "/v1/charges", service, NULL,
                                   "{\"member_id\":\"rl\",\"model\":\"midjourney\"}");
        if (r.status != 201) (*bad)++;
        tc_free(&r);
    }
    return NULL;
}

/* The ledger is reopened over the new engine on reload: charges in flight finish, the ones
 * arriving wait a moment, none fails, and the reload is not starved by the load. */
static void test_reload_during_charges(void **state) {
    (void)state;
    put_member("rl", "plus", "monthly", "2025-11-25");
    grant("rl", 100000);
    int bad[4] = {0};
    long long calls_before = metric_value("creditgate_ledger_calls_total");
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, charge_loop, &bad[i]);
    cg_err err = {0};
    for (int i = 0; i < 5; i++) {
        assert_cg_ok(cg_http_server_reload(srv, &err), err);
        usleep(10000);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(bad[i], 0);
    }
    /* the ledger was not reopened by the reloads: its counters carried on */
    assert_true(metric_value("creditgate_ledger_calls_total") >= calls_before + 4 * 40);
}

/* SIGHUP re-reads the keys file with the policy: a new key works at once, a removed one stops
 * working, and member tokens minted before the reload stay valid (the random secret carries). */
static void test_reload_rotates_keys_and_keeps_tokens(void **state) {
    (void)state;
    char token[CG_HTTP_TOKEN_BYTES_MAX], path[512], saved[600], key[128], line[256];
    mint("a1", token, sizeof token);
    snprintf(path, sizeof path, "%s/keys", dir);
    snprintf(saved, sizeof saved, "%s/keys.saved", dir);
    tc_copy(path, saved);
    cg_err err = {0};
    assert_cg_ok(cg_http_key_generate("rotated", "service", key, sizeof key, line, sizeof line, &err), err);
    assert_int_equal(call("GET", "/v1/members/a1", key, NULL), 401);
    FILE *f = fopen(path, "a");
    fprintf(f, "%s\n", line);
    fclose(f);
    assert_cg_ok(cg_http_server_reload(srv, &err), err);
    assert_int_equal(call("GET", "/v1/members/a1", key, NULL), 200);
    assert_int_equal(call("GET", "/v1/members/a1", token, NULL), 200);
    f = fopen(path, "w"); /* the old keys removed, only the new one left */
    fprintf(f, "%s\n", line);
    fclose(f);
    assert_cg_ok(cg_http_server_reload(srv, &err), err);
    assert_int_equal(call("GET", "/v1/members/a1", service, NULL), 401);
    f = fopen(path, "w"); /* a broken keys file is refused like a broken policy */
    fprintf(f, "rotated service not-hex\n");
    fclose(f);
    assert_int_not_equal(cg_http_server_reload(srv, &err), 0);
    assert_int_equal(call("GET", "/v1/members/a1", key, NULL), 200);
    tc_copy(saved, path);
    assert_cg_ok(cg_http_server_reload(srv, &err), err);
    assert_int_equal(call("GET", "/v1/members/a1", service, NULL), 200);
}

/* ---- configuration ----------------------------------------------------------------------- */

static void test_config_precedence_flags_env_file(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/serve.yaml", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "listen: 127.0.0.1:7001\nthreads: 3\nbody_bytes_max: 1000\npolicy: [a.yaml, b.yaml]\n");
    fclose(f);
    cg_http_config c;
    cg_err err = {0};
    char flag_config[600];
    snprintf(flag_config, sizeof flag_config, "--config=%s", path);
    char *argv1[] = {flag_config};
    assert_cg_ok(cg_http_config_load(&c, 1, argv1, &err), err);
    assert_int_equal(c.port, 7001);
    assert_int_equal(c.threads, 3);
    assert_int_equal(c.policy_path_count, 2);
    setenv("CREDITGATE_THREADS", "5", 1);
    setenv("CREDITGATE_BODY_BYTES_MAX", "2000", 1);
    assert_cg_ok(cg_http_config_load(&c, 1, argv1, &err), err);
    assert_int_equal(c.threads, 5);          /* env over file */
    assert_int_equal(c.body_bytes_max, 2000);
    assert_int_equal(c.port, 7001);          /* file still applies where env is silent */
    char *argv2[] = {flag_config, "--threads", "7", "--policy=c.yaml"};
    assert_cg_ok(cg_http_config_load(&c, 4, argv2, &err), err);
    assert_int_equal(c.threads, 7);          /* flag over env */
    assert_int_equal(c.policy_path_count, 1);
    assert_string_equal(c.policy_paths[0], "c.yaml");
    char *argv3[] = {"--threads", "0"};
    assert_int_equal(cg_http_config_load(&c, 2, argv3, &err), CG_EINVAL);
    assert_string_equal(err.field, "threads");
    char *argv4[] = {"--no-such-setting", "1"};
    assert_int_equal(cg_http_config_load(&c, 2, argv4, &err), CG_EINVAL);
    char *argv5[] = {"--ledger-shards", "4"};
    assert_cg_ok(cg_http_config_load(&c, 2, argv5, &err), err);
    assert_int_equal(c.ledger_shards, 4);
    char *argv6[] = {"--ledger-shards", "17"}; /* above CG_LEDGER_SHARDS_MAX */
    assert_int_equal(cg_http_config_load(&c, 2, argv6, &err), CG_EINVAL);
    assert_string_equal(err.field, "ledger_shards");
    assert_int_equal(c.ledger_flush_ms, CG_LEDGER_FLUSH_MS_DEFAULT);
    char *argv7[] = {"--ledger-flush-ms", "0"};  /* every batch commits the files */
    assert_cg_ok(cg_http_config_load(&c, 2, argv7, &err), err);
    assert_int_equal(c.ledger_flush_ms, 0);
    char *argv8[] = {"--ledger-flush-ms", "60001"};
    assert_int_equal(cg_http_config_load(&c, 2, argv8, &err), CG_EINVAL);
    assert_string_equal(err.field, "ledger_flush_ms");
    assert_int_equal(c.ledger_cache_mb, CG_LEDGER_PAGE_CACHE_MB_DEFAULT);
    char *argv9[] = {"--ledger-cache-mb", "512"};
    assert_cg_ok(cg_http_config_load(&c, 2, argv9, &err), err);
    assert_int_equal(c.ledger_cache_mb, 512);
    char *argv10[] = {"--ledger-cache-mb", "0"};
    assert_int_equal(cg_http_config_load(&c, 2, argv10, &err), CG_EINVAL);
    assert_string_equal(err.field, "ledger_cache_mb");
    assert_int_equal(c.ledger_redo_mb, CG_LEDGER_REDO_MB_DEFAULT);
    char *argv11[] = {"--ledger-redo-mb", "1"};
    assert_cg_ok(cg_http_config_load(&c, 2, argv11, &err), err);
    assert_int_equal(c.ledger_redo_mb, 1);
    char *argv12[] = {"--ledger-redo-mb", "4097"};
    assert_int_equal(cg_http_config_load(&c, 2, argv12, &err), CG_EINVAL);
    assert_string_equal(err.field, "ledger_redo_mb");
    unsetenv("CREDITGATE_THREADS");
    unsetenv("CREDITGATE_BODY_BYTES_MAX");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_ready_metrics_openapi),
        cmocka_unit_test(test_unknown_route_is_404_and_wrong_method_405),
        cmocka_unit_test(test_openapi_matches_routes),
        cmocka_unit_test(test_quote_equals_cli_json),
        cmocka_unit_test(test_quote_by_member_id),
        cmocka_unit_test(test_pipelined_quotes_each_get_their_own_answer),
        cmocka_unit_test(test_quote_rejects_bad_fields_naming_them),
        cmocka_unit_test(test_quote_huge_numbers_are_out_of_range),
        cmocka_unit_test(test_quote_unknown_model_suggests),
        cmocka_unit_test(test_quote_bodies_outside_the_fast_path),
        cmocka_unit_test(test_malformed_and_limits),
        cmocka_unit_test(test_mangled_bodies_never_500),
        cmocka_unit_test(test_body_size_limit_413),
        cmocka_unit_test(test_header_size_limit),
        cmocka_unit_test(test_content_type_must_be_json),
        cmocka_unit_test(test_auth_missing_wrong_and_role),
        cmocka_unit_test(test_member_token_reaches_only_its_member),
        cmocka_unit_test(test_no_secret_in_access_log),
        cmocka_unit_test(test_member_routes),
        cmocka_unit_test(test_charge_lifecycle),
        cmocka_unit_test(test_charge_release_and_unlimited),
        cmocka_unit_test(test_charge_with_capture),
        cmocka_unit_test(test_member_charges_lists_unlimited_and_charged),
        cmocka_unit_test(test_charge_insufficient_402),
        cmocka_unit_test(test_metrics_count_decisions_and_charges),
        cmocka_unit_test(test_metrics_holds_outstanding_follows_the_ledger),
        cmocka_unit_test(test_reload_good_then_broken_keeps_old),
        cmocka_unit_test(test_reload_during_charges),
        cmocka_unit_test(test_reload_rotates_keys_and_keeps_tokens),
        cmocka_unit_test(test_config_precedence_flags_env_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
