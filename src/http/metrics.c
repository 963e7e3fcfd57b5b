/* metrics.c — the server's Prometheus counters and their text rendering for GET /metrics.
 * Request counters are lock-free atomics on fixed arrays (route × status); the labelled series
 * (decisions, charges, credits by model) live in small bounded tables that only grow: counting
 * is lock-free, and only a new series takes the mutex. */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const int status_codes[STATUS_SLOTS] = {200, 201, 204, 400, 401, 402, 403, 404, 405,
                                               409, 413, 415, 422, 429, 431, 500, 503, 0};
/* Upper bounds in microseconds; the last bucket is +Inf. */
static const int64_t bucket_us[LATENCY_BUCKETS - 1] = {50,    100,    250,    500,    1000,
                                                       2500,  5000,   10000,  25000,  50000,
                                                       100000, 500000, 1000000};

static int status_slot(int status) {
    for (int i = 0; i < STATUS_SLOTS && status_codes[i]; i++)
        if (status_codes[i] == status) return i;
    return STATUS_SLOTS - 1; /* "other" */
}

void metrics_init(metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
}

void metrics_free(metrics *m) {
    if (m) pthread_mutex_destroy(&m->lock);
}

void metrics_request(metrics *m, int route, int status, int64_t latency_us) {
    int slot = route < 0 || route >= ROUTES_MAX ? ROUTES_MAX : route;
    atomic_fetch_add_explicit(&m->requests[slot][status_slot(status)], 1, memory_order_relaxed);
    int b = 0;
    while (b < LATENCY_BUCKETS - 1 && latency_us > bucket_us[b]) b++;
    atomic_fetch_add_explicit(&m->latency[slot][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us[slot], (uint64_t)(latency_us < 0 ? 0 : latency_us),
                              memory_order_relaxed);
}

/* The series named key, or -1. Lock-free: slots below count are complete (release/acquire). */
static int labelled_find(labelled *table, atomic_int *count, const char *key) {
    int n = atomic_load_explicit(count, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (!strcmp(table[i].key, key)) return i;
    return -1;
}

/* Adds delta to the series named key; beyond LABELLED_MAX series the rest go to "other" so a
 * flood of odd names cannot grow memory. Only adding a new series takes m->lock. */
static void labelled_add(metrics *m, labelled *table, atomic_int *count, const char *key,
                         uint64_t delta) {
    int i = labelled_find(table, count, key);
    if (i < 0) {
        pthread_mutex_lock(&m->lock);
        i = labelled_find(table, count, key); /* another thread may have just added it */
        int n = atomic_load_explicit(count, memory_order_relaxed);
        if (i < 0 && n < LABELLED_MAX - 1) {
            snprintf(table[n].key, sizeof table[n].key, "%s", key);
            atomic_store_explicit(&table[n].value, 0, memory_order_relaxed);
            atomic_store_explicit(count, n + 1, memory_order_release);
            i = n;
        } else if (i < 0) {
            i = LABELLED_MAX - 1; /* "other": named once, never listed in count */
            if (!table[i].key[0]) snprintf(table[i].key, sizeof table[i].key, "model=\"other\"");
        }
        pthread_mutex_unlock(&m->lock);
    }
    assert(i >= 0 && i < LABELLED_MAX);
    atomic_fetch_add_explicit(&table[i].value, delta, memory_order_relaxed);
}

/* The label set, built without snprintf: this runs for every decided item. */
static void label_put(char **at, const char *end, const char *text) {
    size_t len = strnlen(text, (size_t)(end - *at));
    memcpy(*at, text, len);
    *at += len;
}

void metrics_decision(metrics *m, const char *model, const char *benefit, bool unlimited) {
    char key[160];
    char *at = key, *end = key + sizeof key - 1;
    label_put(&at, end, "model=\"");
    label_put(&at, end, model);
    label_put(&at, end, "\",benefit=\"");
    label_put(&at, end, benefit ? benefit : "");
    label_put(&at, end, unlimited ? "\",outcome=\"unlimited\"" : "\",outcome=\"charged\"");
    *at = '\0';
    labelled_add(m, m->decisions, &m->decision_count, key, 1);
}

void metrics_charge(metrics *m, const char *model, int64_t credits) {
    char key[160];
    snprintf(key, sizeof key, "model=\"%s\"", model);
    labelled_add(m, m->charges, &m->charge_count, key, 1);
    labelled_add(m, m->credits, &m->credit_count, key, (uint64_t)(credits > 0 ? credits : 0));
}

typedef struct out {
    char *buf;
    size_t len, cap;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        assert(n >= 0);
        if (o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *grown = realloc(o->buf, cap);
        if (!grown) abort(); /* metrics text is bounded (fixed tables): this is a bug */
        o->buf = grown;
        o->cap = cap;
    }
}

static void render_requests(out *o, metrics *m, const char *const *names, int count) {
    put(o, "# HELP creditgate_http_requests_total HTTP requests by route and status.\n"
           "# TYPE creditgate_http_requests_total counter\n");
    for (int r = 0; r <= count; r++) {
        int slot = r == count ? ROUTES_MAX : r;
        const char *name = r == count ? "unmatched" : names[r];
        for (int s = 0; s < STATUS_SLOTS; s++) {
            uint64_t v = atomic_load_explicit(&m->requests[slot][s], memory_order_relaxed);
            if (!v) continue;
            if (status_codes[s])
                put(o, "creditgate_http_requests_total{route=\"%s\",status=\"%d\"} %" PRIu64 "\n",
                    name, status_codes[s], v);
            else
                put(o, "creditgate_http_requests_total{route=\"%s\",status=\"other\"} %" PRIu64
                       "\n", name, v);
        }
    }
}

static void render_latency(out *o, metrics *m, const char *const *names, int count) {
    put(o, "# HELP creditgate_http_request_duration_seconds Time from first byte to response.\n"
           "# TYPE creditgate_http_request_duration_seconds histogram\n");
    for (int r = 0; r <= count; r++) {
        int slot = r == count ? ROUTES_MAX : r;
        const char *name = r == count ? "unmatched" : names[r];
        uint64_t cumulative = 0;
        for (int b = 0; b < LATENCY_BUCKETS; b++) {
            cumulative += atomic_load_explicit(&m->latency[slot][b], memory_order_relaxed);
            if (b < LATENCY_BUCKETS - 1)
                put(o, "creditgate_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %"
                       PRIu64 "\n", name, (double)bucket_us[b] / 1e6, cumulative);
            else
                put(o, "creditgate_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %"
                       PRIu64 "\n", name, cumulative);
        }
        put(o, "creditgate_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
            (double)atomic_load(&m->latency_sum_us[slot]) / 1e6);
        put(o, "creditgate_http_request_duration_seconds_count{route=\"%s\"} %" PRIu64 "\n", name,
            cumulative);
    }
}

static void render_labelled(out *o, const char *name, const char *help, labelled *table,
                            atomic_int *count) {
    put(o, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    int n = atomic_load_explicit(count, memory_order_acquire);
    for (int i = 0; i < n; i++)
        put(o, "%s{%s} %" PRIu64 "\n", name, table[i].key,
            (uint64_t)atomic_load_explicit(&table[i].value, memory_order_relaxed));
    labelled *other = &table[LABELLED_MAX - 1];
    uint64_t other_value = atomic_load_explicit(&other->value, memory_order_relaxed);
    if (other_value) put(o, "%s{%s} %" PRIu64 "\n", name, other->key, other_value);
}

char *metrics_render(metrics *m, const char *const *route_names, int route_count,
                     const char *policy_label, const cg_ledger_stats *ledger) {
    assert(route_count <= ROUTES_MAX);
    out o = {malloc(16384), 0, 16384};
    if (!o.buf) return NULL;
    o.buf[0] = '\0';
    render_requests(&o, m, route_names, route_count);
    render_latency(&o, m, route_names, route_count);
    pthread_mutex_lock(&m->lock); /* the "other" slots' names are written under it */
    render_labelled(&o, "creditgate_decisions_total",
                    "Decided items (quotes and charges) by model, benefit and outcome.",
                    m->decisions, &m->decision_count);
    render_labelled(&o, "creditgate_charges_total", "Charges created by generation model.",
                    m->charges, &m->charge_count);
    render_labelled(&o, "creditgate_charged_credits_total",
                    "Credits held by new charges, by generation model.", m->credits,
                    &m->credit_count);
    pthread_mutex_unlock(&m->lock);
    /* Holds: the ledger's exact count (all members, expiries and restarts included) where it
     * can count; otherwise (a shared PostgreSQL) those opened and closed through this process. */
    bool exact = ledger && ledger->holds_open >= 0;
    put(&o, "# HELP creditgate_holds_outstanding Charges held now (%s).\n"
            "# TYPE creditgate_holds_outstanding gauge\ncreditgate_holds_outstanding %" PRId64 "\n",
        exact ? "every member, from the ledger" : "opened and not yet settled through this process",
        exact ? ledger->holds_open : (int64_t)atomic_load(&m->holds_outstanding));
    if (ledger)
        put(&o, "# HELP creditgate_ledger_page_cache_bytes Storage page cache in use (bounded).\n"
                "# TYPE creditgate_ledger_page_cache_bytes gauge\n"
                "creditgate_ledger_page_cache_bytes %" PRId64 "\n"
                "# HELP creditgate_ledger_member_cache_bytes The writers' member caches (bounded).\n"
                "# TYPE creditgate_ledger_member_cache_bytes gauge\n"
                "creditgate_ledger_member_cache_bytes %" PRId64 "\n"
                "# HELP creditgate_ledger_batches_total Ledger transactions committed.\n"
                "# TYPE creditgate_ledger_batches_total counter\n"
                "creditgate_ledger_batches_total %" PRId64 "\n"
                "# HELP creditgate_ledger_calls_total Ledger calls applied in them.\n"
                "# TYPE creditgate_ledger_calls_total counter\n"
                "creditgate_ledger_calls_total %" PRId64 "\n"
                "# HELP creditgate_ledger_shards Ledger shards (writers).\n"
                "# TYPE creditgate_ledger_shards gauge\ncreditgate_ledger_shards %d\n",
            ledger->page_cache_bytes, ledger->member_cache_bytes, ledger->batches, ledger->calls,
            ledger->shards);
    put(&o, "# HELP creditgate_policy_reloads_total Policy reloads by result.\n"
            "# TYPE creditgate_policy_reloads_total counter\n"
            "creditgate_policy_reloads_total{result=\"ok\"} %" PRIu64 "\n"
            "creditgate_policy_reloads_total{result=\"failed\"} %" PRIu64 "\n",
        (uint64_t)atomic_load(&m->reloads_ok), (uint64_t)atomic_load(&m->reloads_failed));
    put(&o, "# HELP creditgate_http_request_deadline_cuts_total Connections cut because a request "
            "had not arrived whole within timeout_s (slow or dribbling clients).\n"
            "# TYPE creditgate_http_request_deadline_cuts_total counter\n"
            "creditgate_http_request_deadline_cuts_total %" PRIu64 "\n",
        (uint64_t)atomic_load(&m->deadline_cuts));
    put(&o, "# HELP creditgate_policy_info The policy versions in force.\n"
            "# TYPE creditgate_policy_info gauge\ncreditgate_policy_info{versions=\"%s\"} 1\n",
        policy_label);
    return o.buf;
}
