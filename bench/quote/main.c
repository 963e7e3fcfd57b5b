/* bench/quote — in-process decisions per second on a mix of 100k varied requests (every
 * model and variant, every plan and billing, joined and use dates spread over 2025–2027,
 * a fifth through the agent), single thread, and the allocations made while deciding.
 *
 * Prints, side by side in one run: the decision path on prepared requests (the figure the
 * issue's goal is about), and prepare+decide from text (what an HTTP request pays). Allocation
 * counting interposes malloc/calloc/realloc for this binary only. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "creditgate/engine.h"
#include "creditgate/engine_json.h"
#include "../machine.h"

#define REQUESTS 100000
#define ROUNDS_MIN 20

/* ---- allocation counter ---- */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static atomic_long allocations;
static atomic_bool counting;
void *malloc(size_t n) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add(&allocations, 1);
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t m) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add(&allocations, 1);
    return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add(&allocations, 1);
    return __libc_realloc(p, n);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct text_request {
    cg_quote_input in;
    char joined[CG_DATE_TEXT_BYTES];
} text_request;

static void make_mix(const cg_policy *p, text_request *reqs) {
    static const char *prompts[] = {"a cat surfing", "Use Carat Basic Video (LTX 2.3)", "캐럿 기본 비디오로", NULL};
    static const char *agent_models[] = {"lite", "standard", "soul"};
    cg_date joined_from, use_from;
    cg_date_parse("2025-10-01", &joined_from, NULL);
    cg_date_parse("2025-11-01", &use_from, NULL);
    for (int i = 0; i < REQUESTS; i++) {
        text_request *r = &reqs[i];
        memset(r, 0, sizeof *r);
        r->in.plan = p->plans[next_random() % (uint64_t)p->plan_count].id;
        r->in.billing = p->billings[next_random() % (uint64_t)p->billing_count];
        cg_date_format(joined_from + (cg_date)(next_random() % 460), r->joined, sizeof r->joined);
        r->in.joined = r->joined;
        r->in.at_us = cg_date_start_us(use_from + (cg_date)(next_random() % 800), p->utc_offset_s) +
                      (int64_t)(next_random() % 86400) * CG_US_PER_S;
        r->in.count = 1 + (int64_t)(next_random() % 4);
        const cg_model *m;
        do m = &p->models[next_random() % (uint64_t)p->model_count]; while (m->kind == CG_KIND_CONVERSATION);
        r->in.model = next_random() % 3 ? m->id : m->name;
        if (m->variant_count) r->in.variant = m->variants[next_random() % (uint64_t)m->variant_count].id;
        if (next_random() % 5 == 0) {
            r->in.agent_model = agent_models[next_random() % 3];
            r->in.agent_kind = cg_model_kind_name(m->kind);
            r->in.prompt = prompts[next_random() % 4];
            if (m->kind == CG_KIND_VIDEO && next_random() % 2) r->in.model = NULL, r->in.variant = NULL;
        }
    }
}


int main(void) {
    cg_policy_set set;
    cg_engine engine;
    cg_err err = {0};
    cg_policy_set_init(&set);
    if (cg_policy_set_load_file(&set, "policy/carat.yaml", &err) || cg_engine_init(&engine, &set, &err)) {
        fprintf(stderr, "bench/quote: %s\n", err.msg);
        return 1;
    }
    text_request *texts = calloc(REQUESTS, sizeof *texts);
    cg_request *prepared = calloc(REQUESTS, sizeof *prepared);
    make_mix(set.versions[0], texts);
    for (int i = 0; i < REQUESTS; i++)
        if (cg_engine_prepare(&engine, &texts[i].in, &prepared[i], &err)) {
            fprintf(stderr, "bench/quote: request %d: %s\n", i, err.msg);
            return 1;
        }
    cg_decision d;
    int64_t checksum = 0, unlimited = 0;
    for (int i = 0; i < REQUESTS; i++) { /* warm-up, and the mix's share of free decisions */
        cg_engine_decide(&engine, &prepared[i], &d);
        unlimited += d.items[0].unlimited;
    }

    atomic_store(&allocations, 0);
    atomic_store(&counting, true);
    double t0 = now_s();
    int rounds = 0;
    while (rounds < ROUNDS_MIN || now_s() - t0 < 1.0) {
        for (int i = 0; i < REQUESTS; i++) {
            cg_engine_decide(&engine, &prepared[i], &d);
            checksum += d.total_credits;
        }
        rounds++;
    }
    double decide_s = now_s() - t0;
    atomic_store(&counting, false);
    long decide_allocs = atomic_load(&allocations);
    double decide_rate = (double)rounds * REQUESTS / decide_s;

    atomic_store(&allocations, 0);
    atomic_store(&counting, true);
    t0 = now_s();
    int text_rounds = 0;
    while (text_rounds < 2 || now_s() - t0 < 1.0) {
        for (int i = 0; i < REQUESTS; i++) {
            cg_request r;
            if (cg_engine_prepare(&engine, &texts[i].in, &r, &err)) return 1;
            cg_engine_decide(&engine, &r, &d);
            checksum += d.total_credits;
        }
        text_rounds++;
    }
    double text_s = now_s() - t0;
    atomic_store(&counting, false);
    long text_allocs = atomic_load(&allocations);
    double text_rate = (double)text_rounds * REQUESTS / text_s;

    /* What POST /v1/quote pays on top: the response document. The direct writer is what the
     * server uses; the jansson tree + dump (what the CLI uses) is shown beside it. */
    double json_rate[2];
    size_t json_bytes = 0;
    for (int way = 0; way < 2; way++) {
        t0 = now_s();
        int json_rounds = 0;
        while (json_rounds < 1 || now_s() - t0 < 1.0) {
            for (int i = 0; i < REQUESTS; i++) {
                cg_engine_decide(&engine, &prepared[i], &d);
                if (way == 0) {
                    char out[CG_DECISION_JSON_BYTES_MAX];
                    json_bytes += cg_decision_write_json(&d, CG_LANG_EN, out, sizeof out);
                    continue;
                }
                json_t *doc = cg_decision_to_json(&d, CG_LANG_EN);
                char *text = json_dumps(doc, JSON_COMPACT);
                free(text);
                json_decref(doc);
            }
            json_rounds++;
        }
        json_rate[way] = (double)json_rounds * REQUESTS / (now_s() - t0);
    }
    checksum += (int64_t)(json_bytes & 1); /* keeps the writer's output observable */

    bench_print_machine("");
    printf("mix: %d requests, %.1f%% unlimited, %d policy version(s), checksum %lld\n", REQUESTS,
           100.0 * (double)unlimited / REQUESTS, set.count, (long long)checksum);
    printf("%-34s %14s %10s %14s\n", "path (single thread)", "decisions/s", "ns/each", "allocations");
    printf("%-34s %14.0f %10.1f %14ld\n", "decide (prepared request)", decide_rate, 1e9 / decide_rate, decide_allocs);
    printf("%-34s %14.0f %10.1f %14ld\n", "prepare+decide (text request)", text_rate, 1e9 / text_rate, text_allocs);
    printf("%-34s %14.0f %10.1f %14s\n", "decide+response, direct writer", json_rate[0], 1e9 / json_rate[0], "-");
    printf("%-34s %14.0f %10.1f %14s\n", "decide+response, jansson tree+dump", json_rate[1], 1e9 / json_rate[1], "-");
    printf("ratio decide / prepare+decide: %.1fx; direct writer / jansson: %.1fx\n", decide_rate / text_rate,
           json_rate[0] / json_rate[1]);
    printf("goal >= 10,000,000 decisions/s with 0 allocations: %s\n",
           decide_rate >= 1e7 && decide_allocs == 0 ? "MET" : "NOT MET");
    free(texts);
    free(prepared);
    cg_engine_free(&engine);
    cg_policy_set_free(&set);
    return 0;
}
