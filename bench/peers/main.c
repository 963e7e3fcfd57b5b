/* bench/peers — the request mix that creditgate and its peer engines (Cedar, GoRules ZEN,
 * json-rules-engine; the .js files beside this one) are all measured on, with creditgate's answers, and
 * creditgate's own in-process figure on that same mix.
 *
 *   build/bench/peers [--requests N] [--seed S] [--out FILE] [--seconds S]
 *
 * Writes one JSON line per request to FILE: the member (plan, billing, joined as a Seoul
 * date), the instant of use in UTC (each peer converts it to a Seoul date itself), the
 * generation model and variant, and creditgate's answer (unlimited, benefit id, credits).
 * Then times cg_engine_decide over the same prepared requests, single thread after a
 * warm-up pass (the best half-second window), and prints one "result" line that bench/peers/run.sh reads. Agent 2.0
 * routing is not a benefit rule, so the mix names its generation model directly. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "creditgate/engine.h"

#define PEERS_POLICY "policy/carat.yaml"
#define PEERS_REQUESTS_MAX 10000000
#define PEERS_LATENCY_SAMPLES 100000
#define PEERS_ROUNDS_MIN 5
#define PEERS_WINDOW_S 0.5

typedef struct mix_opts {
    int64_t requests;
    uint64_t seed;
    const char *out_path;
    double seconds;
} mix_opts;

/* Joined dates on both sides of every signup boundary the page names, so that the
 * differential check reaches both sides of each (Nov 21–30, Dec 2025, Dec 17, Feb 25,
 * May 22), plus Feb 29 joins for the "1 year" clamp. */
static const char *boundary_dates[] = {
    "2025-11-20", "2025-11-21", "2025-11-30", "2025-12-01", "2025-12-16", "2025-12-17",
    "2026-02-24", "2026-02-25", "2026-05-21", "2026-05-22", "2027-02-28", "2028-02-28",
    "2028-02-29", "2028-03-01",
};
#define BOUNDARY_DATE_COUNT (sizeof boundary_dates / sizeof boundary_dates[0])

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_random(uint64_t *state) { /* xorshift64*: a repeatable mix per seed */
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * UINT64_C(2685821657736338717);
}

static int64_t pick(uint64_t *rng, int64_t n) {
    assert(n > 0);
    return (int64_t)(next_random(rng) % (uint64_t)n);
}

static cg_date date_of(const char *text) {
    cg_date d = 0;
    int rc = cg_date_parse(text, &d, NULL);
    assert(rc == 0);
    (void)rc;
    return d;
}

static cg_date pick_joined(uint64_t *rng) {
    if (pick(rng, 5) == 0) return date_of(boundary_dates[pick(rng, BOUNDARY_DATE_COUNT)]);
    return date_of("2025-10-01") + (cg_date)pick(rng, 460);
}

/* The instant of use: usually any time from joining (or from the policy's start) over 800
 * days; a quarter of the time within a day of the first anniversary of joining, and some of
 * those within a second of Seoul midnight, where "1 year" ends. */
static int64_t pick_at_us(uint64_t *rng, const cg_policy *p, cg_date joined) {
    int32_t off_s = p->utc_offset_s;
    int64_t joined_us = cg_date_start_us(joined, off_s);
    int64_t from_us = joined_us > p->effective_at_us ? joined_us : p->effective_at_us;
    if (pick(rng, 4)) return from_us + pick(rng, 800 * CG_US_PER_DAY / CG_US_PER_S) * CG_US_PER_S;
    int64_t anniversary_us = cg_date_start_us(cg_date_add(joined, 1, 0, 0), off_s);
    if (pick(rng, 4) == 0) return anniversary_us + (pick(rng, 3) - 1) * CG_US_PER_S;
    return anniversary_us - CG_US_PER_DAY + pick(rng, 2 * 86400) * CG_US_PER_S;
}

static const cg_model *pick_model(uint64_t *rng, const cg_policy *p) {
    if (pick(rng, 8) == 0) { /* Carat Video carries the only dated ("1 year") benefit */
        for (int i = 0; i < p->model_count; i++)
            if (!strcmp(p->models[i].id, "carat-video-ltx")) return &p->models[i];
    }
    const cg_model *m;
    do m = &p->models[pick(rng, p->model_count)]; while (m->kind == CG_KIND_CONVERSATION);
    return m;
}

/* Fills one text request; the strings it points at live in the policy or in joined. */
static void make_request(uint64_t *rng, const cg_policy *p, cg_quote_input *in,
                         char joined[CG_DATE_TEXT_BYTES]) {
    memset(in, 0, sizeof *in);
    in->plan = p->plans[pick(rng, p->plan_count)].id;
    in->billing = p->billings[pick(rng, p->billing_count)];
    cg_date j = pick_joined(rng);
    cg_date_format(j, joined, CG_DATE_TEXT_BYTES);
    in->joined = joined;
    in->at_us = pick_at_us(rng, p, j);
    in->count = 1 + pick(rng, 4);
    const cg_model *m = pick_model(rng, p);
    in->model = m->id;
    if (m->variant_count) in->variant = m->variants[pick(rng, m->variant_count)].id;
}

static void write_line(FILE *f, int64_t i, const cg_quote_input *in, const cg_decision *d) {
    const cg_policy *p = d->policy;
    const cg_item *it = &d->items[0];
    assert(d->item_count == 1 && it->kind == CG_ITEM_GENERATION);
    char at[CG_RFC3339_TEXT_BYTES];
    cg_time_format(in->at_us, 0, at, sizeof at); /* UTC: each peer finds the Seoul date */
    fprintf(f, "{\"i\":%" PRId64 ",\"plan\":\"%s\",\"billing\":\"%s\",\"joined\":\"%s\","
               "\"at\":\"%s\",\"model\":\"%s\",\"variant\":", i, in->plan, in->billing,
            in->joined, at, in->model);
    if (in->variant) fprintf(f, "\"%s\"", in->variant);
    else fputs("null", f);
    fprintf(f, ",\"count\":%" PRId64 ",\"unlimited\":%s,\"benefit\":", in->count,
            it->unlimited ? "true" : "false");
    if (it->unlimited) fprintf(f, "\"%s\"", p->benefits[it->benefit].id);
    else fputs("null", f);
    fprintf(f, ",\"credits\":%" PRId64 "}\n", it->credits);
}

static void usage(void) {
    fprintf(stderr, "usage: bench/peers [--requests N] [--seed S] [--out FILE] [--seconds S]\n");
    exit(2);
}

static void parse_opts(int argc, char **argv, mix_opts *o) {
    *o = (mix_opts){.requests = 100000, .seed = 0x9E3779B97F4A7C15ull,
                    .out_path = "build/bench/peers-mix.jsonl", .seconds = 1.0};
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--requests")) o->requests = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seed")) o->seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--out")) o->out_path = argv[++i];
        else if (!strcmp(argv[i], "--seconds")) o->seconds = strtod(argv[++i], NULL);
        else usage();
    }
    if (o->requests < 1 || o->requests > PEERS_REQUESTS_MAX || o->seconds <= 0 || !o->seed)
        usage();
}

/* Generates, prepares and answers the whole mix, writing it out. Returns unlimited count. */
static int64_t build_mix(const cg_engine *engine, const mix_opts *o, cg_request *prepared) {
    const cg_policy *p = engine->set->versions[0];
    FILE *f = fopen(o->out_path, "w");
    if (!f) {
        perror(o->out_path);
        exit(1);
    }
    uint64_t rng = o->seed;
    int64_t unlimited = 0;
    for (int64_t i = 0; i < o->requests; i++) {
        cg_quote_input in;
        char joined[CG_DATE_TEXT_BYTES];
        cg_err err = {0};
        cg_decision d;
        make_request(&rng, p, &in, joined);
        if (cg_engine_prepare(engine, &in, &prepared[i], &err)) {
            fprintf(stderr, "bench/peers: request %" PRId64 ": %s\n", i, err.msg);
            exit(1);
        }
        cg_engine_decide(engine, &prepared[i], &d);
        unlimited += d.items[0].unlimited;
        write_line(f, i, &in, &d);
    }
    if (fclose(f)) {
        perror(o->out_path);
        exit(1);
    }
    return unlimited;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* p99 of single decisions, each timed alone: an upper bound, since it includes the two
 * clock reads (tens of ns) around a decision that takes about as long. */
static double p99_ns(const cg_engine *engine, const cg_request *prepared, int64_t n) {
    int64_t samples = n < PEERS_LATENCY_SAMPLES ? n : PEERS_LATENCY_SAMPLES;
    int64_t *ns = malloc(sizeof *ns * (size_t)samples);
    cg_decision d;
    for (int64_t i = 0; i < samples; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        cg_engine_decide(engine, &prepared[i], &d);
        clock_gettime(CLOCK_MONOTONIC, &b);
        ns[i] = (b.tv_sec - a.tv_sec) * INT64_C(1000000000) + (b.tv_nsec - a.tv_nsec);
    }
    qsort(ns, (size_t)samples, sizeof *ns, cmp_i64);
    double v = (double)ns[(samples * 99) / 100];
    free(ns);
    return v;
}

/* Decisions/s of the best PEERS_WINDOW_S window over `seconds` of whole passes: the machine
 * is shared, and the peers' rows (peers.js) are taken the same way. */
static double best_rate(const cg_engine *engine, const cg_request *prepared, int64_t n,
                        double seconds, int64_t *checksum) {
    cg_decision d;
    double best = 0, t0 = now_s(), w0 = t0;
    int64_t in_window = 0, rounds = 0;
    while (rounds < PEERS_ROUNDS_MIN || now_s() - t0 < seconds) {
        for (int64_t i = 0; i < n; i++) {
            cg_engine_decide(engine, &prepared[i], &d);
            *checksum += d.total_credits;
        }
        rounds++;
        in_window += n;
        double t = now_s();
        if (t - w0 >= PEERS_WINDOW_S) {
            if ((double)in_window / (t - w0) > best) best = (double)in_window / (t - w0);
            w0 = t;
            in_window = 0;
        }
    }
    if (best == 0) best = (double)in_window / (now_s() - w0);
    assert(best > 0);
    return best;
}

int main(int argc, char **argv) {
    mix_opts o;
    parse_opts(argc, argv, &o);
    cg_policy_set set;
    cg_engine engine;
    cg_err err = {0};
    cg_policy_set_init(&set);
    if (cg_policy_set_load_file(&set, PEERS_POLICY, &err) || cg_engine_init(&engine, &set, &err)) {
        fprintf(stderr, "bench/peers: %s\n", err.msg);
        return 1;
    }
    cg_request *prepared = calloc((size_t)o.requests, sizeof *prepared);
    if (!prepared) return 1;
    int64_t unlimited = build_mix(&engine, &o, prepared); /* also the warm-up pass */

    int64_t checksum = 0;
    double rate = best_rate(&engine, prepared, o.requests, o.seconds, &checksum);
    printf("result peer=creditgate requests=%" PRId64 " unlimited=%" PRId64
           " decisions_per_s=%.0f p99_us=%.3f checksum=%" PRId64 " mix=%s\n", o.requests,
           unlimited, rate, p99_ns(&engine, prepared, o.requests) / 1e3, checksum, o.out_path);
    free(prepared);
    cg_engine_free(&engine);
    cg_policy_set_free(&set);
    return 0;
}
