/* client.h — a tiny blocking HTTP/1.1 client for the server tests: one request per TCP
 * connection to 127.0.0.1 (Connection: close), so each call sees the real socket path.
 * Header-only; shared by tests/http/test_*.c. Also: temp dirs and service keys for tests. */
#ifndef CREDITGATE_TEST_HTTP_CLIENT_H
#define CREDITGATE_TEST_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "creditgate/http.h"

#define TC_RESPONSE_BYTES_MAX (4 * 1024 * 1024)

typedef struct tc_response {
    int status;          /* -1: could not connect or no answer */
    char headers[4096];
    char *body;          /* NUL-terminated, owned (tc_free) */
    size_t body_bytes;
} tc_response;

static inline void tc_free(tc_response *r) {
    free(r->body);
    r->body = NULL;
}

static inline int tc_connect(unsigned port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0}; /* a hung server fails the test instead of hanging it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline bool tc_write_all(int fd, const char *buf, size_t bytes) {
    while (bytes) {
        ssize_t n = send(fd, buf, bytes, MSG_NOSIGNAL);
        if (n <= 0) return false;
        buf += n;
        bytes -= (size_t)n;
    }
    return true;
}

/* Sends raw bytes and reads the whole answer until the server closes. */
static inline tc_response tc_raw(unsigned port, const char *request, size_t bytes) {
    tc_response r = {.status = -1};
    int fd = tc_connect(port);
    if (fd < 0) return r;
    if (!tc_write_all(fd, request, bytes)) { /* the server may answer early (413) and close */ }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= TC_RESPONSE_BYTES_MAX) break;
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) || !end) {
        free(buf);
        return r;
    }
    r.status = atoi(buf + 9);
    size_t head = (size_t)(end - buf);
    snprintf(r.headers, sizeof r.headers, "%.*s", (int)head, buf);
    r.body_bytes = len - head - 4;
    r.body = malloc(r.body_bytes + 1);
    memcpy(r.body, end + 4, r.body_bytes);
    r.body[r.body_bytes] = '\0';
    free(buf);
    return r;
}

/* One request. auth is the bearer credential or NULL; extra is more header lines, each ending
 * in \r\n, or NULL; body NULL sends none. */
static inline tc_response tc_request(unsigned port, const char *method, const char *path,
                                     const char *auth, const char *extra, const char *body) {
    size_t body_bytes = body ? strlen(body) : 0;
    size_t cap = body_bytes + 4096 + strlen(path) + (auth ? strlen(auth) : 0) +
                 (extra ? strlen(extra) : 0);
    char *req = malloc(cap);
    int n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, auth ? "Authorization: Bearer " : "", auth ? auth : "",
                     auth ? "\r\n" : "", body ? "Content-Type: application/json\r\n" : "",
                     extra ? extra : "", body_bytes);
    if (n < 0 || (size_t)n + body_bytes >= cap) abort(); /* the sizing above is wrong */
    memcpy(req + n, body ? body : "", body_bytes);
    tc_response r = tc_raw(port, req, (size_t)n + body_bytes);
    free(req);
    return r;
}

static inline bool tc_has_header(const tc_response *r, const char *line) {
    return strcasestr(r->headers, line) != NULL;
}

/* A fresh directory under /tmp; removed by tc_rmdir. */
static inline void tc_tmpdir(char *buf, size_t bytes) {
    snprintf(buf, bytes, "/tmp/cg-http-test-XXXXXX");
    if (!mkdtemp(buf)) abort();
}

static inline void tc_rmdir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* Writes dir/keys with an admin and a service key; fills their secrets. */
static inline void tc_keys(const char *dir, char *admin, char *service, size_t bytes) {
    char line_a[256], line_s[256], path[512];
    cg_err err;
    if (cg_http_key_generate("ops", "admin", admin, bytes, line_a, sizeof line_a, &err) ||
        cg_http_key_generate("gen", "service", service, bytes, line_s, sizeof line_s, &err))
        abort();
    snprintf(path, sizeof path, "%s/keys", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# test keys\n%s\n%s\n", line_a, line_s);
    fclose(f);
}

static inline void tc_copy(const char *from, const char *to) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    if (system(cmd) != 0) abort();
}

#endif
