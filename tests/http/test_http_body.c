/* test_http_body.c — the fast body scanner (src/http/body_fast.c) against jansson. The rule it
 * must keep: whatever it accepts, jansson with body.c's checks accepts too, with the same
 * values; whatever it declines it leaves untouched (body.c then judges it). Checked on named
 * cases and on ~300,000 generated and mutated bodies from a fixed seed. The scanner is
 * internal to src/http, so this test reads src/http/internal.h.
 *
 * The same check as a libFuzzer target (CG_BODY_FUZZ; the library built with clang too):
 *   make BUILD=build-fuzz-body CC=clang OPT=-O1 SAN="-fsanitize=fuzzer-no-link,address,undefined" \
 *     build-fuzz-body/libcreditgate.a
 *   clang -std=c17 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -DCG_BODY_FUZZ \
 *     -Iinclude -Itests tests/http/test_http_body.c build-fuzz-body/libcreditgate.a \
 *     $(pkg-config --libs libfyaml jansson libmicrohttpd sqlite3 libsodium libpq cmocka) \
 *     -lpthread -lm -o build-fuzz-body/fuzz_body
 *   build-fuzz-body/fuzz_body -max_total_time=600 tests/fuzz/corpus/http_quote */
/* before cmocka, whose fail() macro would swallow internal.h's fail() */
#include "../../src/http/internal.h"

#include "testlib.h"

/* A table like the quote's, with what it lacks (a required top-level field in one variant, a
 * boolean, a nullable required one) so every rule of the checks is reached. */
static const field_spec member_spec[] = {
    {"plan", F_STR, true, false, 1, 31, NULL},
    {"billing", F_STR, true, false, 1, 31, NULL},
    {"joined", F_STR, true, false, 1, 39, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

static const field_spec agent_spec[] = {
    {"model", F_STR, true, false, 1, 31, NULL},
    {"kind", F_STR, true, false, 1, 16, NULL},
    {"prompt", F_STR, false, true, 0, 1023, NULL},
    {"on", F_BOOL, false, false, 0, 0, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

static const field_spec quote_spec[] = {
    {"member", F_OBJ, false, false, 0, 0, member_spec},
    {"member_id", F_STR, false, false, 1, 63, NULL},
    {"model", F_STR, false, true, 1, 63, NULL},
    {"variant", F_STR, false, true, 1, 31, NULL},
    {"count", F_INT, false, false, 1, 1000, NULL},
    {"at", F_STR, false, true, 1, 39, NULL},
    {"agent", F_OBJ, false, true, 0, 0, agent_spec},
    {"lang", F_STR, false, true, 1, 8, NULL},
    {"flag", F_BOOL, false, true, 0, 0, NULL},
    {"delta", F_INT, false, false, -1000000000000000000LL, 1000000000000000000LL, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

static const field_spec strict_spec[] = { /* required, and required-but-nullable */
    {"id", F_STR, true, false, 1, 8, NULL},
    {"n", F_INT, true, true, 0, 5, NULL},
    {"o", F_OBJ, true, false, 0, 0, agent_spec},
    {NULL, 0, false, false, 0, 0, NULL},
};

static const field_spec *const specs[] = {quote_spec, strict_spec};

/* ---- the oracle: jansson, as body_parse reads a body ------------------------------------- */

static bool object_ok(const field_spec *spec, json_t *obj, const body_limits *lim) {
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v) {
        const field_spec *f = spec;
        while (f->name && strcmp(f->name, name)) f++;
        if (!f->name || !body_value_ok(f, v, lim)) return false;
        if (f->type == F_OBJ && json_is_object(v) && !object_ok(f->sub, v, lim)) return false;
    }
    for (const field_spec *f = spec; f->name; f++) {
        v = json_object_get(obj, f->name);
        if (f->required && (!v || json_is_null(v))) return false;
    }
    return true;
}

/* The tree body_parse would accept, or NULL. */
static json_t *oracle(const char *text, size_t bytes, const field_spec *spec, const body_limits *lim) {
    if (body_depth_scan(text, bytes, lim->depth_max) > lim->depth_max) return NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, bytes, JSON_REJECT_DUPLICATES, &jerr);
    if (root && json_is_object(root) && object_ok(spec, root, lim)) return root;
    json_decref(root);
    return NULL;
}

static bool same_value(const body_value *a, const body_value *b, const field_spec *f) {
    if (a->present != b->present || a->null != b->null) return false;
    if (!a->present || a->null) return true;
    if (f->type == F_STR) return !strcmp(a->str, b->str);
    if (f->type == F_INT) return a->num == b->num;
    if (f->type == F_BOOL) return a->flag == b->flag;
    return true;
}

static bool same_fields(const field_spec *spec, const body_fields *a, const body_fields *b) {
    for (int i = 0; spec[i].name; i++) {
        if (!same_value(&a->values[i], &b->values[i], &spec[i])) return false;
        if (spec[i].type != F_OBJ) continue;
        for (int j = 0; spec[i].sub[j].name; j++)
            if (!same_value(bf_value(a, i, j), bf_value(b, i, j), &spec[i].sub[j])) return false;
    }
    return true;
}

/* Scans text with spec and lim; false (with a note) when the scanner breaks the rule. *accepted
 * says whether it took the fast path. */
static bool agrees(const char *text, size_t bytes, const field_spec *spec, const body_limits *lim,
                   bool *accepted) {
    char *copy = malloc(bytes + 1);
    memcpy(copy, text, bytes);
    copy[bytes] = '\0';
    body_fields fast;
    bool ok = true;
    *accepted = body_fast_scan(copy, bytes, spec, lim, &fast) == 0;
    if (!*accepted) {
        ok = memcmp(copy, text, bytes) == 0; /* declined: untouched */
    } else {
        json_t *root = oracle(text, bytes, spec, lim);
        body_fields slow;
        if (root) body_fields_from_json(spec, root, &slow);
        ok = root && same_fields(spec, &fast, &slow);
        json_decref(root);
    }
    if (!ok)
        fprintf(stderr, "body scanner disagrees with jansson (%s) on %zu bytes: %.*s\n",
                *accepted ? "accepted" : "declined but changed", bytes, (int)bytes, text);
    free(copy);
    return ok;
}

static const body_limits wide = {8, 16 * 1024};
static const body_limits narrow = {2, 64}; /* the smallest the configuration allows */

#ifdef CG_BODY_FUZZ

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bool accepted;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
        for (int l = 0; l < 2; l++)
            if (!agrees((const char *)data, size, specs[s], l ? &narrow : &wide, &accepted)) abort();
    return 0;
}

#else

/* ---- generated bodies --------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* Pieces chosen for the places where a scanner and jansson could part: escapes, NULs, UTF-8,
 * number forms, literals cut short, separators, names in and out of the tables. */
static const char *const tokens[] = {
    "{", "}", "[", "]", ",", ":", " ", "\t", "\n", "\r", "\v", "\f", "\"", "\\", "\\\"", "\\u0000",
    "\\u0041", "\\ud800", "\\n", "\\/", "\xc3\xa9", "\xed\xa0\x80", "\xff", "\x7f", "\x01",
    "null", "nul", "nulll", "true", "tru", "false", "falsey", "0", "-0", "01", "-", "1", "1000",
    "1001", "999999999999999999", "1000000000000000000", "9223372036854775807",
    "9223372036854775808", "-9223372036854775809", "1.5", "1e3", "1E3", "1.", ".5", "+1", "0x10",
    "\"member\"", "\"member_id\"", "\"model\"", "\"variant\"", "\"count\"", "\"at\"", "\"agent\"",
    "\"lang\"", "\"flag\"", "\"delta\"", "\"plan\"", "\"billing\"", "\"joined\"", "\"kind\"",
    "\"prompt\"", "\"on\"", "\"id\"", "\"n\"", "\"o\"", "\"x\"", "\"sora\"", "\"\"", "\"ko\"",
    "\"2025-11-25\"", "\"Nanobanana Pro\"", "\"a\\\"b\"", "\"caf\xc3\xa9\"",
};
#define TOKEN_COUNT (sizeof tokens / sizeof tokens[0])

static const char *const seeds[] = {
    "{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},"
    "\"model\":\"Nanobanana Pro\",\"variant\":\"2k\"}",
    "{\"member_id\":\"fz\",\"model\":\"sora-2\",\"count\":2,\"at\":\"2026-05-01T00:00:00+09:00\","
    "\"lang\":\"ko\"}",
    "{\"member\":{\"plan\":\"premium\",\"billing\":\"annual\",\"joined\":\"2026-03-01\"},\"agent\":"
    "{\"model\":\"agent-2.0\",\"kind\":\"video\",\"prompt\":\"Use Carat Basic Video (LTX 2.3)\","
    "\"on\":true},\"flag\":false,\"delta\":-17}",
    " { \"model\" : null , \"variant\" : null , \"agent\" : null , \"count\" : 1000 } \n",
    "{\"id\":\"abc\",\"n\":0,\"o\":{\"model\":\"m\",\"kind\":\"k\"}}",
    "{\"id\":\"abc\",\"n\":5,\"o\":{\"model\":\"m\",\"kind\":\"k\",\"prompt\":\"\"}}",
    "{}",
};
#define SEED_COUNT (sizeof seeds / sizeof seeds[0])

static const char *const names[] = {
    "member", "member_id", "model", "variant", "count", "at", "agent", "lang", "flag", "delta",
    "plan", "billing", "joined", "kind", "prompt", "on", "id", "n", "o", "x", "",
};
static const char *const values[] = {
    "null", "true", "false", "0", "1", "-1", "7", "1000", "1001", "999999999999999999",
    "\"sora\"", "\"\"", "\"ko\"", "\"2025-11-25\"", "\"plus\"", "\"123456789\"", "1.0", "{}",
};

static void put(char *buf, size_t *len, size_t cap, const char *text) {
    size_t n = strlen(text);
    if (*len + n + 1 >= cap) return;
    memcpy(buf + *len, text, n);
    *len += n;
}

/* Whitespace, usually none, now and then a random token in its place. */
static void gap(char *buf, size_t *len, size_t cap) {
    uint32_t roll = rnd(40);
    if (roll < 30) return;
    if (roll < 38) put(buf, len, cap, (const char *const[]){" ", "\n", "\t", "\r", "  "}[rnd(5)]);
    else put(buf, len, cap, tokens[rnd(TOKEN_COUNT)]);
}

/* An object of random members, often shaped the way the tables want, one level deep. */
static size_t generate(char *buf, size_t cap) {
    size_t len = 0;
    int members = (int)rnd(7);
    put(buf, &len, cap, "{");
    for (int i = 0; i < members; i++) {
        char key[48];
        snprintf(key, sizeof key, "\"%s\"", names[rnd(sizeof names / sizeof names[0])]);
        gap(buf, &len, cap);
        put(buf, &len, cap, key);
        gap(buf, &len, cap);
        put(buf, &len, cap, ":");
        gap(buf, &len, cap);
        if (rnd(4) == 0) { /* an object of scalars */
            int inner = (int)rnd(5);
            put(buf, &len, cap, "{");
            for (int j = 0; j < inner; j++) {
                snprintf(key, sizeof key, "\"%s\":", names[rnd(sizeof names / sizeof names[0])]);
                put(buf, &len, cap, key);
                put(buf, &len, cap, values[rnd(sizeof values / sizeof values[0])]);
                if (j + 1 < inner) put(buf, &len, cap, ",");
                gap(buf, &len, cap);
            }
            put(buf, &len, cap, "}");
        } else {
            put(buf, &len, cap, values[rnd(sizeof values / sizeof values[0])]);
        }
        gap(buf, &len, cap);
        if (i + 1 < members) put(buf, &len, cap, ",");
    }
    put(buf, &len, cap, "}");
    gap(buf, &len, cap);
    return len;
}

/* A seed with one to three edits: a byte changed, dropped or doubled, or a token put in. */
static size_t mutate(char *buf, size_t cap) {
    const char *seed = seeds[rnd(SEED_COUNT)];
    size_t len = strlen(seed);
    memcpy(buf, seed, len);
    int edits = 1 + (int)rnd(3);
    for (int e = 0; e < edits && len > 0; e++) {
        size_t at = rnd((uint32_t)len);
        const char *t = tokens[rnd(TOKEN_COUNT)];
        size_t n = strlen(t);
        switch (rnd(4)) {
        case 0: buf[at] = (char)rnd(256); break;
        case 1: memmove(buf + at, buf + at + 1, len - at - 1); len--; break;
        case 2:
            if (len + 1 < cap) { memmove(buf + at + 1, buf + at, len - at); len++; }
            break;
        default:
            if (len + n < cap) {
                memmove(buf + at + n, buf + at, len - at);
                memcpy(buf + at, t, n);
                len += n;
            }
        }
    }
    return len;
}

static int check_many(int rounds, bool mutated) {
    char buf[1024];
    int accepted_count = 0;
    for (int i = 0; i < rounds; i++) {
        size_t len = mutated ? mutate(buf, sizeof buf) : generate(buf, sizeof buf);
        for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
            bool accepted;
            if (!agrees(buf, len, specs[s], i % 2 ? &narrow : &wide, &accepted)) fail();
            accepted_count += accepted;
        }
    }
    return accepted_count;
}

/* ---- cases -------------------------------------------------------------------------------- */

static bool fast(const char *text, const field_spec *spec) {
    bool accepted;
    assert_true(agrees(text, strlen(text), spec, &wide, &accepted));
    return accepted;
}

static void test_common_bodies_take_the_fast_path(void **state) {
    (void)state;
    for (size_t i = 0; i < SEED_COUNT; i++)
        if (strcmp(seeds[i], "{}") && seeds[i][2] != 'i') assert_true(fast(seeds[i], quote_spec));
    assert_true(fast(seeds[4], strict_spec));
    assert_true(fast(seeds[5], strict_spec));
    char text[] = "{\"model\":\"sora\",\"count\":7,\"flag\":true}";
    body_fields b;
    assert_int_equal(body_fast_scan(text, strlen(text), quote_spec, &wide, &b), 0);
    assert_string_equal(bf_str(&b, 2, -1), "sora");
    assert_int_equal(bf_int(&b, 4, -1, 1), 7);
    assert_int_equal(bf_int(&b, 9, -1, 42), 42); /* absent: the default */
    assert_true(b.values[8].flag);
    assert_false(bf_object(&b, 0));
    assert_null(b.root);
}

static void test_what_jansson_must_judge_is_declined(void **state) {
    (void)state;
    static const char *const declined[] = {
        "{\"model\":\"s\\u006fra\"}",             /* an escape */
        "{\"model\":\"caf\xc3\xa9\"}",            /* UTF-8 */
        "{\"model\":\"sora\",\"model\":\"x\"}",    /* a duplicate */
        "{\"colour\":1}",                         /* unknown */
        "{\"count\":1.5}", "{\"count\":1e3}", "{\"count\":01}", "{\"count\":-0}",
        "{\"count\":1001}", "{\"count\":0}", "{\"count\":\"2\"}",
        "{\"delta\":9999999999999999999}",       /* 19 digits: jansson's range check */
        "{\"model\":42}", "{\"model\":\"\"}", "{\"flag\":nul}", "{\"flag\":truex}",
        "{\"model\":\"sora\",}", "{\"model\":\"sora\"", "{\"model\":\"sora\"}x", "[1]", "",
        "{\"member\":{\"plan\":\"plus\"}}",        /* required inside */
        "{\"member\":{\"plan\":\"plus\",\"billing\":\"m\",\"joined\":\"j\",\"x\":{}}}",
        "{\"lang\":\"123456789\"}",               /* longer than its field allows */
        "{\"model\":\"a\x01\"}", "{\"model\":\"a\x7f\"}", "\xef\xbb\xbf{}",
    };
    for (size_t i = 0; i < sizeof declined / sizeof declined[0]; i++) {
        if (fast(declined[i], quote_spec)) fail_msg("accepted: %s", declined[i]);
    }
    assert_false(fast("{\"id\":\"a\",\"n\":null}", strict_spec));           /* o missing */
    assert_false(fast("{\"id\":\"a\",\"n\":1,\"o\":null}", strict_spec));   /* o null */
    /* required but nullable: null is still "n is required" in body.c */
    assert_false(fast("{\"id\":\"a\",\"n\":null,\"o\":{\"model\":\"m\",\"kind\":\"k\"}}", strict_spec));
    assert_true(fast("{\"id\":\"a\",\"n\":0,\"o\":{\"model\":\"m\",\"kind\":\"k\"}}", strict_spec));
}

static void test_limits_boundaries(void **state) {
    (void)state;
    char text[256];
    /* just inside and just outside the server-wide string cap */
    snprintf(text, sizeof text, "{\"model\":\"%.*s\"}", 63, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    bool accepted;
    assert_true(agrees(text, strlen(text), quote_spec, &narrow, &accepted));
    assert_true(accepted);
    body_limits tight = {2, 62};
    assert_true(agrees(text, strlen(text), quote_spec, &tight, &accepted));
    assert_false(accepted);
    assert_true(fast("{\"count\":1000}", quote_spec));
    assert_false(fast("{\"count\":1001}", quote_spec));
    assert_true(fast("{\"delta\":999999999999999999}", quote_spec));   /* 18 digits */
    assert_true(fast("{\"delta\":-999999999999999999}", quote_spec));
}

static void test_generated_bodies_agree_with_jansson(void **state) {
    (void)state;
    int accepted = check_many(150000, false);
    print_message("generated: %d of 300000 scans took the fast path\n", accepted);
    assert_true(accepted > 3000); /* the generator reaches the fast path, not only declines */
}

static void test_mutated_bodies_agree_with_jansson(void **state) {
    (void)state;
    int accepted = check_many(150000, true);
    print_message("mutated: %d of 300000 scans took the fast path\n", accepted);
    assert_true(accepted > 3000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_bodies_take_the_fast_path),
        cmocka_unit_test(test_what_jansson_must_judge_is_declined),
        cmocka_unit_test(test_limits_boundaries),
        cmocka_unit_test(test_generated_bodies_agree_with_jansson),
        cmocka_unit_test(test_mutated_bodies_agree_with_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
