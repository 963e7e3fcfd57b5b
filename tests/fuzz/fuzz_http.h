/* fuzz_http.h — shared body of the HTTP fuzz targets (fuzz_http_*.c). The JSON request parsing
 * of src/http is internal (body.c and the routes' field tables are not exported), so the
 * targets fuzz it the way an attacker reaches it: an in-process server (http.h) on a free
 * loopback port with a real SQLite ledger in a temp folder, one keep-alive connection, and
 * each input sent as the body of one route (or, for http_raw, as the whole request).
 *
 * Every answer must be a complete HTTP response, never 5xx (400–499 refusals are fine), and a
 * 4xx must carry {"error": {"code": ...}}. A hang of FUZZ_HTTP_TIMEOUT_S, a cut answer or a 5xx
 * aborts, which libFuzzer records as a crasher; ASan/UBSan see the server's threads too.
 *
 * A target defines FUZZ_HTTP_ROUTES (a table of method + path) and includes this file. The
 * first input byte picks the route; the rest is the body. */
#ifndef CREDITGATE_FUZZ_HTTP_H
#define CREDITGATE_FUZZ_HTTP_H

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "creditgate/http.h"

#define FUZZ_HTTP_TIMEOUT_S 10
#define FUZZ_HTTP_BODY_MAX (70 * 1024) /* a little over the 64 KiB default: 413 is reached */

typedef struct fuzz_route {
    const char *method;
    const char *path;      /* "%s" is replaced by the held charge's id */
    int admin;             /* 1: the admin key, else the service key */
} fuzz_route;

static cg_http_server *fh_server;
static unsigned fh_port;
static int fh_fd = -1;
static char fh_admin[128], fh_service[128], fh_charge[64], fh_dir[64];

static int fh_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) abort();
    struct timeval tv = {FUZZ_HTTP_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fh_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) abort(); /* the server is gone */
    return fd;
}

static int fh_send(int fd, const char *buf, size_t bytes) {
    while (bytes) {
        ssize_t n = send(fd, buf, bytes, MSG_NOSIGNAL);
        if (n <= 0) return -1;
        buf += n;
        bytes -= (size_t)n;
    }
    return 0;
}

/* Reads one answer (headers + Content-Length body). Returns the status; *close_after when the
 * server said Connection: close. -1: no or cut answer. The body is put in body (NUL-ended). */
static int fh_read(int fd, char *buf, size_t cap, char **body, int *close_after) {
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        if (len + 1 >= cap) return -1;
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) return -1;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (strncmp(buf, "HTTP/1.", 7)) return -1;
    int status = atoi(buf + 9);
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t want = cl && cl < end ? (size_t)atol(cl + 17) : 0;
    const char *conn = strcasestr(buf, "\r\nConnection: close");
    *close_after = conn && conn < end;
    size_t head = (size_t)(end - buf) + 4;
    if (head + want + 1 > cap) return -1;
    while (len < head + want) {
        ssize_t n = recv(fd, buf + len, head + want - len, 0);
        if (n <= 0) return -1;
        len += (size_t)n;
    }
    buf[head + want] = '\0';
    *body = buf + head;
    return status;
}

static cg_http_server *fh_start(void) {
    snprintf(fh_dir, sizeof fh_dir, "/tmp/cg-fuzz-http-XXXXXX");
    if (!mkdtemp(fh_dir)) abort();
    char line_a[256], line_s[256], path[128];
    cg_err err;
    if (cg_http_key_generate("ops", "admin", fh_admin, sizeof fh_admin, line_a, sizeof line_a, &err) ||
        cg_http_key_generate("gen", "service", fh_service, sizeof fh_service, line_s, sizeof line_s, &err))
        abort();
    snprintf(path, sizeof path, "%s/keys", fh_dir);
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fprintf(f, "%s\n%s\n", line_a, line_s);
    fclose(f);
    cg_http_config config;
    cg_http_config_defaults(&config);
    config.port = 0;
    config.threads = 2;
    snprintf(config.db_path, sizeof config.db_path, "%s/ledger.db", fh_dir);
    snprintf(config.keys_path, sizeof config.keys_path, "%s", path);
    snprintf(config.access_log_path, sizeof config.access_log_path, "off");
    config.reload_check_ms = 0;
    cg_http_server *srv = NULL;
    if (cg_http_server_start(&config, &srv, &err)) {
        fprintf(stderr, "fuzz_http: cannot start the server: %s\n", err.msg);
        abort();
    }
    return srv;
}

/* One request on the kept connection; reconnects when the server closed it. Aborts on a
 * broken answer or a 5xx. */
static int fh_request(const char *method, const char *path, const char *auth, const char *body,
                      size_t body_bytes) {
    static char head[1024], answer[1 << 20];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, auth, body_bytes);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (fh_fd < 0) fh_fd = fh_connect();
        char *reply = NULL;
        int close_after = 0;
        int status = -1;
        if (!fh_send(fh_fd, head, (size_t)n) && !fh_send(fh_fd, body, body_bytes))
            status = fh_read(fh_fd, answer, sizeof answer, &reply, &close_after);
        if (status < 0 || close_after) {
            close(fh_fd);
            fh_fd = -1;
        }
        if (status < 0 && attempt == 0) continue; /* a kept connection may have timed out */
        if (status < 0) {
            fprintf(stderr, "fuzz_http: no complete answer to %s %s\n", method, path);
            abort();
        }
        if (status >= 500) {
            fprintf(stderr, "fuzz_http: %s %s answered %d: %s\n", method, path, status, reply);
            abort();
        }
        if (status >= 400 && status != 413) {
            json_t *j = json_loads(reply, 0, NULL);
            json_t *code = json_object_get(json_object_get(j, "error"), "code");
            if (!json_is_string(code)) {
                fprintf(stderr, "fuzz_http: %s %s answered %d without an error code: %s\n", method,
                        path, status, reply);
                abort();
            }
            json_decref(j);
        }
        return status;
    }
    return -1;
}

/* A member with credits and one held charge, so the money routes reach the ledger. */
static void fh_seed(void) {
    const char *put = "{\"plan\":\"premium\",\"billing\":\"monthly\",\"joined\":\"2026-03-01\"}";
    const char *grant = "{\"credits\":1000000000,\"source\":\"purchase\"}";
    const char *charge = "{\"member_id\":\"fz\",\"model\":\"sora-2\"}";
    if (fh_request("PUT", "/v1/members/fz", fh_service, put, strlen(put)) != 200) abort();
    if (fh_request("POST", "/v1/members/fz/grants", fh_admin, grant, strlen(grant)) != 201) abort();
    static char answer[65536];
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /v1/charges HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                     fh_service, strlen(charge), charge);
    int fd = fh_connect();
    char *reply = NULL;
    int close_after = 0;
    if (fh_send(fd, req, (size_t)n) || fh_read(fd, answer, sizeof answer, &reply, &close_after) != 201) abort();
    close(fd);
    json_t *j = json_loads(reply, 0, NULL);
    snprintf(fh_charge, sizeof fh_charge, "%s", json_string_value(json_object_get(j, "charge_id")));
    json_decref(j);
}

static void fh_init(void) {
    if (fh_server) return;
    fh_server = fh_start();
    fh_port = cg_http_server_port(fh_server);
    fh_seed();
}

/* The route body targets: byte 0 picks the route, the rest is the JSON body. */
__attribute__((unused)) static int fh_one_body(const fuzz_route *routes, size_t route_count, const uint8_t *data, size_t size) {
    fh_init();
    if (size < 1 || size > FUZZ_HTTP_BODY_MAX) return 0;
    const fuzz_route *route = &routes[data[0] % route_count];
    char path[256];
    snprintf(path, sizeof path, route->path, fh_charge);
    fh_request(route->method, path, route->admin ? fh_admin : fh_service, (const char *)data + 1, size - 1);
    return 0;
}

#endif
