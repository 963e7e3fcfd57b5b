/* conn.c — what the server keeps per TCP connection (not per request): the total request
 * deadline that libmicrohttpd lacks, and the last credential this connection proved.
 * libmicrohttpd's timeout is an idle timeout, reset by every byte, so a client dribbling one
 * header byte a second would hold a connection for ever (slowloris, docs/RELIABILITY.md
 * Finding 3). Here every connection carries a deadline — timeout_s after it was accepted or
 * after its previous answer — by which the next request must have arrived whole; a watchdog
 * thread shuts down the socket of any connection past it, and libmicrohttpd, seeing the
 * socket end, closes the connection on its own thread. No request parsing here (server.c). */
#include <assert.h>
#include <microhttpd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "creditgate/engine_json.h"
#include "creditgate/time.h"
#include "internal.h"

/* How often the watchdog looks: a quarter of the timeout, at most this often and at least
 * once a second, so a cut comes at most ~25% after the deadline. */
#define WATCH_INTERVAL_MS_MIN 50
#define WATCH_INTERVAL_MS_MAX 1000

static int64_t deadline_after(const cg_http_server *srv, int64_t now_us) {
    return now_us + (int64_t)srv->config.timeout_s * CG_US_PER_S;
}

/* MHD_OPTION_NOTIFY_CONNECTION. Called on the connection's own thread; STARTED before any of
 * its bytes are read, CLOSED before libmicrohttpd closes the socket — so, under conns_lock, a
 * registered fd is always still this connection's socket and shutting it down is safe. */
void conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                 enum MHD_ConnectionNotificationCode code) {
    cg_http_server *srv = cls;
    conn_state *cs = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        assert(!cs);
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        cs = calloc(1, sizeof *cs);
        if (!cs) { /* without a deadline a slow client could hold it: refuse it instead */
            if (info) shutdown(info->connect_fd, SHUT_RDWR);
            return;
        }
        cs->fd = info ? info->connect_fd : -1;
        atomic_init(&cs->deadline_at_us, deadline_after(srv, cg_time_now_us()));
        pthread_mutex_lock(&srv->conns_lock);
        cs->next = srv->conns;
        if (srv->conns) srv->conns->prev = cs;
        srv->conns = cs;
        pthread_mutex_unlock(&srv->conns_lock);
        *socket_context = cs;
        return;
    }
    if (!cs) return;
    pthread_mutex_lock(&srv->conns_lock);
    if (cs->prev) cs->prev->next = cs->next;
    else srv->conns = cs->next;
    if (cs->next) cs->next->prev = cs->prev;
    pthread_mutex_unlock(&srv->conns_lock);
    sodium_memzero(cs->auth_text, sizeof cs->auth_text); /* a key or token was kept here */
    free(cs->reply_buf);
    free(cs);
    *socket_context = NULL;
}

conn_state *conn_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

void conn_request_whole(conn_state *cs) {
    if (cs) atomic_store_explicit(&cs->deadline_at_us, 0, memory_order_relaxed);
}

void conn_request_done(cg_http_server *srv, conn_state *cs, int64_t now_us) {
    if (cs) atomic_store_explicit(&cs->deadline_at_us, deadline_after(srv, now_us),
                                  memory_order_relaxed);
}

char *conn_reply_buffer(conn_state *cs) {
    if (cs && !cs->reply_buf) cs->reply_buf = malloc(CG_DECISION_JSON_BYTES_MAX);
    return cs ? cs->reply_buf : NULL;
}

/* ---- the watchdog ------------------------------------------------------------------------- */

/* Shuts down every connection past its deadline; returns how many. */
static int sweep(cg_http_server *srv, int64_t now_us) {
    int cut = 0;
    pthread_mutex_lock(&srv->conns_lock);
    for (conn_state *cs = srv->conns; cs; cs = cs->next) {
        int64_t deadline_us = atomic_load_explicit(&cs->deadline_at_us, memory_order_relaxed);
        if (deadline_us == 0 || now_us < deadline_us || cs->fd < 0) continue;
        /* once: libmicrohttpd sees the end of the socket and closes the connection itself */
        atomic_store_explicit(&cs->deadline_at_us, 0, memory_order_relaxed);
        /* counted before the cut: a client that sees its socket end then reads /metrics finds it */
        atomic_fetch_add_explicit(&srv->metrics.deadline_cuts, 1, memory_order_relaxed);
        shutdown(cs->fd, SHUT_RDWR);
        cut++;
    }
    pthread_mutex_unlock(&srv->conns_lock);
    return cut;
}

static void *watchdog_main(void *arg) {
    cg_http_server *srv = arg;
    int64_t interval_ms = (int64_t)srv->config.timeout_s * 1000 / 4;
    if (interval_ms < WATCH_INTERVAL_MS_MIN) interval_ms = WATCH_INTERVAL_MS_MIN;
    if (interval_ms > WATCH_INTERVAL_MS_MAX) interval_ms = WATCH_INTERVAL_MS_MAX;
    pthread_mutex_lock(&srv->watch_lock);
    while (!srv->watch_stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)(interval_ms % 1000) * 1000000L;
        until.tv_sec += (time_t)(interval_ms / 1000) + until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&srv->watch_cond, &srv->watch_lock, &until);
        if (srv->watch_stop) break;
        pthread_mutex_unlock(&srv->watch_lock);
        int cut = sweep(srv, cg_time_now_us());
        if (cut > 0) {
            char members[96];
            snprintf(members, sizeof members, "\"cut\":%d,\"timeout_s\":%d", cut,
                     (int)srv->config.timeout_s);
            cg_http_server_log(srv, "request_deadline", members);
        }
        pthread_mutex_lock(&srv->watch_lock);
    }
    pthread_mutex_unlock(&srv->watch_lock);
    return NULL;
}

int conns_init(cg_http_server *srv) {
    pthread_mutex_init(&srv->conns_lock, NULL);
    pthread_mutex_init(&srv->watch_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->watch_cond, &attr);
    pthread_condattr_destroy(&attr);
    srv->conns = NULL;
    srv->watch_stop = false;
    srv->conns_ready = true;
    return CG_OK;
}

int conns_watch_start(cg_http_server *srv) {
    assert(srv->conns_ready && !srv->watch_running);
    if (pthread_create(&srv->watch_thread, NULL, watchdog_main, srv)) return CG_ENOMEM;
    srv->watch_running = true;
    return CG_OK;
}

void conns_free(cg_http_server *srv) {
    if (!srv->conns_ready) return;
    if (srv->watch_running) {
        pthread_mutex_lock(&srv->watch_lock);
        srv->watch_stop = true;
        pthread_cond_signal(&srv->watch_cond);
        pthread_mutex_unlock(&srv->watch_lock);
        pthread_join(srv->watch_thread, NULL);
        srv->watch_running = false;
    }
    assert(!srv->conns); /* libmicrohttpd has said CLOSED for every connection by now */
    pthread_cond_destroy(&srv->watch_cond);
    pthread_mutex_destroy(&srv->watch_lock);
    pthread_mutex_destroy(&srv->conns_lock);
    srv->conns_ready = false;
}

/* ---- the connection's last credential ----------------------------------------------------- */

/* True, with *who filled, when this connection already proved exactly this Authorization
 * header under this snapshot's keys and the proof has not expired. The comparison is
 * sodium_memcmp over the whole text, so its time says nothing about where a guess differs;
 * only a length equal to the cached one is compared at all, and that length is the format's. */
bool conn_auth_cached(const conn_state *cs, const snapshot *snap, const char *authz,
                      int64_t now_us, principal *who) {
    if (!cs || !authz || cs->auth_generation == 0 || cs->auth_generation != snap->generation)
        return false;
    size_t len = strnlen(authz, sizeof cs->auth_text);
    if (len != cs->auth_bytes || sodium_memcmp(authz, cs->auth_text, len) != 0) return false;
    if (now_us >= cs->auth_who.expires_at_us) return false;
    *who = cs->auth_who;
    return true;
}

void conn_auth_remember(conn_state *cs, const snapshot *snap, const char *authz,
                        const principal *who) {
    if (!cs || !authz) return;
    size_t len = strnlen(authz, sizeof cs->auth_text);
    if (len >= sizeof cs->auth_text) return; /* too long to keep: checked in full each time */
    if (cs->auth_bytes > len) sodium_memzero(cs->auth_text + len, cs->auth_bytes - len);
    memcpy(cs->auth_text, authz, len);
    cs->auth_bytes = len;
    cs->auth_who = *who;
    cs->auth_generation = snap->generation;
}
