/* cgproc.h — black-box harness for the reliability tests (tests/crash, tests/faults,
 * tests/hostile): starts `$BUILD/creditgate serve` as a real process on a free port over a temp
 * folder, and talks to it over real loopback sockets with a small blocking HTTP/1.1 client.
 * Only the public surface is used (the CLI, the HTTP API, http.h's key generator), so the
 * server's and the ledger's internals can be rewritten without touching these tests.
 * Header-only; every function is static inline. */
#ifndef CREDITGATE_TEST_CGPROC_H
#define CREDITGATE_TEST_CGPROC_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "creditgate/http.h"
#include "http/client.h" /* tc_write_all */

#define CP_RESPONSE_BYTES_MAX (1024 * 1024)
#define CP_ARGS_MAX 32

typedef struct cp_env {
    char dir[256];
    char db[512], keys[512], policy[512], log[512];
    char admin[128], service[128];
    const char *bin_dir;    /* $BUILD */
} cp_env;

typedef struct cp_proc {
    pid_t pid;
    unsigned port;
} cp_proc;

typedef struct cp_resp {
    int status;             /* -1: no connection or no complete answer */
    bool replayed;          /* Idempotent-Replayed: true */
    char *body;             /* NUL-terminated, owned (cp_resp_free) */
    size_t body_bytes;
    char headers[2048];
} cp_resp;

static inline int64_t cp_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void cp_resp_free(cp_resp *r) {
    free(r->body);
    r->body = NULL;
}

static inline int cp_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int cp_sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* A temp folder with a keys file (one admin, one service key) and a copy of the policy. */
static inline int cp_env_init(cp_env *env) {
    memset(env, 0, sizeof *env);
    env->bin_dir = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(env->dir, sizeof env->dir, "/tmp/cg-reliability-XXXXXX");
    if (!mkdtemp(env->dir)) return -1;
    snprintf(env->db, sizeof env->db, "%s/ledger.db", env->dir);
    snprintf(env->keys, sizeof env->keys, "%s/keys", env->dir);
    snprintf(env->policy, sizeof env->policy, "%s/policy.yaml", env->dir);
    snprintf(env->log, sizeof env->log, "%s/server.log", env->dir);
    char line_a[256], line_s[256];
    cg_err err;
    if (cg_http_key_generate("ops", "admin", env->admin, sizeof env->admin, line_a, sizeof line_a, &err) ||
        cg_http_key_generate("gen", "service", env->service, sizeof env->service, line_s, sizeof line_s, &err))
        return -1;
    FILE *f = fopen(env->keys, "w");
    if (!f) return -1;
    fprintf(f, "%s\n%s\n", line_a, line_s);
    fclose(f);
    return cp_sh("cp policy/carat.yaml '%s'", env->policy);
}

static inline void cp_env_free(cp_env *env) {
    if (env->dir[0] && !getenv("CG_KEEP_TMP")) cp_sh("rm -rf '%s'", env->dir);
}

/* Starts `creditgate serve` on 127.0.0.1:0 with the env's db/keys/policy plus extra flags
 * (NULL-terminated, may be NULL) and extra environment ("NAME=value", NULL-terminated, may be
 * NULL). Waits up to 30 s for the "listening" line. pid 0 on failure. */
static inline cp_proc cp_start(const cp_env *env, const char *const *flags, const char *const *envs) {
    cp_proc p = {0, 0};
    char bin[512];
    snprintf(bin, sizeof bin, "%s/creditgate", env->bin_dir);
    int fds[2];
    if (pipe(fds)) return p;
    pid_t pid = fork();
    if (pid < 0) return p;
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        FILE *log = fopen(env->log, "a");
        if (log) dup2(fileno(log), STDERR_FILENO);
        close(fds[0]);
        for (int i = 0; envs && envs[i]; i++) putenv((char *)envs[i]);
        const char *argv[CP_ARGS_MAX + 16] = {bin, "serve", "--listen", "127.0.0.1:0",
                                              "--policy", env->policy, "--db", env->db,
                                              "--keys", env->keys, "--access-log", "off"};
        int argc = 12;
        for (int i = 0; flags && flags[i] && i < CP_ARGS_MAX; i++) argv[argc++] = flags[i];
        argv[argc] = NULL;
        execv(bin, (char **)argv);
        _exit(127);
    }
    close(fds[1]);
    struct pollfd pfd = {fds[0], POLLIN, 0};
    char line[512] = "";
    size_t len = 0;
    int64_t deadline = cp_now_ms() + 30000; /* ASan start-up and WAL recovery can be slow */
    while (len < sizeof line - 1 && cp_now_ms() < deadline && poll(&pfd, 1, 1000) >= 0) {
        if (!(pfd.revents & (POLLIN | POLLHUP))) continue;
        ssize_t n = read(fds[0], line + len, 1);
        if (n <= 0 || line[len] == '\n') break;
        len++;
    }
    line[len] = '\0';
    close(fds[0]);
    const char *at = strstr(line, "\"port\":");
    if (!at) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fprintf(stderr, "server did not start: '%s' (log %s)\n", line, env->log);
        return p;
    }
    p.pid = pid;
    p.port = (unsigned)atoi(at + 7);
    return p;
}

/* Sends sig and waits up to timeout_ms; then SIGKILL. Returns the wait status, or -1 when the
 * process had to be killed. A test never leaves a server behind. */
static inline int cp_stop(cp_proc *p, int sig, int timeout_ms) {
    int status = 0;
    if (p->pid <= 0) return 0;
    kill(p->pid, sig);
    int64_t deadline = cp_now_ms() + timeout_ms;
    while (cp_now_ms() < deadline) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            return status;
        }
        usleep(5000);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    return -1;
}

static inline int cp_connect(unsigned port, int timeout_ms) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
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


/* Reads until the peer closes (or timeout) and splits status, headers and body. */
static inline cp_resp cp_read_answer(int fd) {
    cp_resp r = {.status = -1};
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= CP_RESPONSE_BYTES_MAX) break;
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        /* A signal (a child exiting, a test's kill) interrupts a recv that has a receive
         * timeout and the kernel does not restart it: that is not the end of the answer. */
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) || !end) {
        free(buf);
        return r;
    }
    size_t head = (size_t)(end - buf);
    snprintf(r.headers, sizeof r.headers, "%.*s", (int)head, buf);
    r.body_bytes = len - head - 4;
    /* A Content-Length shorter than what arrived means the answer was cut: treat as none. */
    const char *cl = strcasestr(r.headers, "\r\nContent-Length:");
    if (cl && (size_t)atol(cl + 17) != r.body_bytes) {
        free(buf);
        return r;
    }
    r.status = atoi(buf + 9);
    r.replayed = strcasestr(r.headers, "Idempotent-Replayed: true") != NULL;
    r.body = malloc(r.body_bytes + 1);
    memcpy(r.body, end + 4, r.body_bytes);
    r.body[r.body_bytes] = '\0';
    free(buf);
    return r;
}

/* Sends raw bytes on a fresh connection and reads the whole answer. */
static inline cp_resp cp_raw(unsigned port, const char *request, size_t bytes, int timeout_ms) {
    cp_resp r = {.status = -1};
    int fd = cp_connect(port, timeout_ms);
    if (fd < 0) return r;
    tc_write_all(fd, request, bytes); /* the server may answer early (413) and close */
    shutdown(fd, SHUT_WR);
    r = cp_read_answer(fd);
    close(fd);
    return r;
}

/* One request, one connection. auth: bearer credential or NULL; extra: header lines each
 * ending in \r\n, or NULL; body NULL sends none. */
static inline cp_resp cp_http(unsigned port, const char *method, const char *path,
                              const char *auth, const char *extra, const char *body,
                              int timeout_ms) {
    size_t body_bytes = body ? strlen(body) : 0;
    size_t cap = body_bytes + 2048 + strlen(path) + (auth ? strlen(auth) : 0) +
                 (extra ? strlen(extra) : 0);
    char *req = malloc(cap);
    int n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, auth ? "Authorization: Bearer " : "", auth ? auth : "",
                     auth ? "\r\n" : "", body ? "Content-Type: application/json\r\n" : "",
                     extra ? extra : "", body_bytes);
    if (n < 0 || (size_t)n + body_bytes >= cap) abort();
    memcpy(req + n, body ? body : "", body_bytes);
    cp_resp r = cp_raw(port, req, (size_t)n + body_bytes, timeout_ms);
    free(req);
    return r;
}

/* The "code" of an {"error": {...}} body, or "" (a cheap scan; tests parse fully elsewhere). */
static inline void cp_error_code(const cp_resp *r, char *buf, size_t bytes) {
    buf[0] = '\0';
    const char *at = r->body ? strstr(r->body, "\"code\"") : NULL;
    if (!at) return;
    at = strchr(at + 6, '"');
    if (!at) return;
    const char *end = strchr(at + 1, '"');
    if (!end) return;
    snprintf(buf, bytes, "%.*s", (int)(end - at - 1), at + 1);
}

/* Open file descriptors and resident set of a process, from /proc. */
static inline int cp_proc_fds(pid_t pid) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls /proc/%d/fd 2>/dev/null | wc -l", (int)pid);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1) n = -1;
        pclose(f);
    }
    return n;
}

#endif
