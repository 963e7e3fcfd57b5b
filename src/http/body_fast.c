/* body_fast.c — the hot path through a request body (POST /v1/quote): a scanner for the small
 * subset of JSON that services send — one object whose member names are in the route's field
 * table; strings of printable ASCII without escapes; integers of at most 18 digits; true,
 * false, null; objects one level down — checked against the same field table and limits as
 * body.c. Whatever is outside the subset or fails a check is declined, never judged: body.c
 * then reads the body with jansson and writes the 400, so every error is the one it was.
 * Why: jansson reads one character at a time through a stream and allocates every node; on a
 * 130-byte quote body that was 13-15% of the server's CPU per request (bench/http, perf).
 * The rule it must keep: never accept what jansson refuses or reads differently —
 * tests/http/test_http_body.c checks it against jansson, on cases and as a libFuzzer target.
 * No recursion, no allocation, no writes to the text unless the whole body is accepted. */
#include <assert.h>
#include <string.h>

#include "internal.h"

/* Fewer digits than INT64_MAX has, so no value can overflow; longer ones go to jansson. */
#define INT_DIGITS_MAX 18

/* A field table has at most BODY_VALUES_MAX fields (body_layout asserts): one bit each. */
_Static_assert(BODY_VALUES_MAX <= 32, "seen bits are a uint32_t");

typedef struct scanner {
    char *p, *end;
    /* Closing quotes of accepted string values: NULs once the whole body is accepted. Each
       field is read at most once (duplicates decline), so BODY_VALUES_MAX bound them. */
    char *quote_at[BODY_VALUES_MAX];
    int quotes;
} scanner;

/* JSON's four whitespace characters (RFC 8259 §2), as jansson skips them. */
static void skip_ws(scanner *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* Consumes c after optional whitespace. */
static bool take(scanner *s, char c) {
    skip_ws(s);
    if (s->p >= s->end || *s->p != c) return false;
    s->p++;
    return true;
}

static bool take_word(scanner *s, const char *word, size_t len) {
    if ((size_t)(s->end - s->p) < len || memcmp(s->p, word, len) != 0) return false;
    s->p += len;
    return true;
}

/* A string of printable ASCII (0x20-0x7e) without a backslash: no escapes to decode, no
 * UTF-8 to validate, no NUL possible. *at is its first byte; p is left past the quote. */
static bool scan_string(scanner *s, char **at, size_t *bytes) {
    if (s->p >= s->end || *s->p != '"') return false;
    char *start = ++s->p;
    for (; s->p < s->end; s->p++) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            *at = start;
            *bytes = (size_t)(s->p - start);
            s->p++;
            return true;
        }
        if (c < 0x20 || c > 0x7e || c == '\\') return false;
    }
    return false; /* unterminated */
}

/* -?(0|[1-9][0-9]*) of at most INT_DIGITS_MAX digits. A fraction or exponent after it is not
 * consumed, so the caller, expecting ',' or '}', declines ("1.5", "1e3" are jansson's to
 * judge: reals are refused by type, huge numbers by range). */
static bool scan_int(scanner *s, int64_t *out) {
    bool negative = s->p < s->end && *s->p == '-';
    if (negative) s->p++;
    const char *first = s->p;
    int64_t n = 0;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        if (s->p - first >= INT_DIGITS_MAX) return false;
        n = n * 10 + (*s->p - '0');
        s->p++;
    }
    size_t digits = (size_t)(s->p - first);
    if (digits == 0 || (digits > 1 && *first == '0')) return false; /* JSON: no leading zeros */
    assert(n >= 0);
    *out = negative ? -n : n;
    return true;
}

/* One scalar (or null) for field f, checked as body_value_ok checks it. */
static bool scan_value(scanner *s, const field_spec *f, const body_limits *lim, body_value *v) {
    skip_ws(s);
    if (s->p >= s->end) return false;
    v->present = true;
    if (*s->p == 'n') {
        v->null = true;
        return take_word(s, "null", 4) && (f->nullable || !f->required);
    }
    switch (f->type) {
    case F_STR: {
        char *at;
        size_t bytes;
        if (!scan_string(s, &at, &bytes) || !body_str_ok(f, bytes, lim)) return false;
        assert(s->quotes < BODY_VALUES_MAX);
        s->quote_at[s->quotes++] = at + bytes;
        v->str = at;
        return true;
    }
    case F_INT: return scan_int(s, &v->num) && body_int_ok(f, v->num);
    case F_BOOL:
        v->flag = *s->p == 't';
        return v->flag ? take_word(s, "true", 4) : take_word(s, "false", 5);
    case F_OBJ: return false; /* a '{' is the caller's; anything else is the wrong type */
    }
    return false;
}

/* A member name and its colon: the index of a field of spec not seen yet in this object, or
 * -1 (unknown names and duplicates are body.c's to report). */
static int scan_key(scanner *s, const field_spec *spec, uint32_t *seen) {
    char *at;
    size_t bytes;
    skip_ws(s);
    if (!scan_string(s, &at, &bytes) || !take(s, ':')) return -1;
    for (int i = 0; spec[i].name; i++) {
        /* the first byte rejects most names cheaply; at[0] is the closing quote when empty */
        if (spec[i].name[0] != at[0] || strncmp(spec[i].name, at, bytes) != 0 ||
            spec[i].name[bytes] != '\0')
            continue;
        if (*seen & (1u << i)) return -1;
        *seen |= 1u << i;
        return i;
    }
    return -1;
}

/* After a member: 1 at the object's '}', 0 at ',' (a member follows), -1 at anything else. */
static int scan_next(scanner *s) {
    if (take(s, ',')) return 0;
    if (take(s, '}')) return 1;
    return -1;
}

/* Required means present and not null (body.c: "x is required" for both). */
static bool required_present(const field_spec *spec, const body_value *values) {
    for (int i = 0; spec[i].name; i++)
        if (spec[i].required && (!values[i].present || values[i].null)) return false;
    return true;
}

/* The members of an object of scalars (an F_OBJ field's value), from after its '{'. */
static bool scan_flat(scanner *s, const field_spec *spec, const body_limits *lim,
                      body_value *values) {
    uint32_t seen = 0;
    if (take(s, '}')) return required_present(spec, values);
    for (int n = 0; n < BODY_VALUES_MAX; n++) { /* each round reads a new field */
        int i = scan_key(s, spec, &seen);
        if (i < 0 || spec[i].type == F_OBJ || !scan_value(s, &spec[i], lim, &values[i]))
            return false;
        int end = scan_next(s);
        if (end < 0) return false;
        if (end) return required_present(spec, values);
    }
    return false;
}

/* The body's object: scalars, and objects of scalars one level down. */
static bool scan_top(scanner *s, const field_spec *spec, const body_limits *lim,
                     body_fields *out) {
    uint32_t seen = 0;
    if (!take(s, '{')) return false;
    if (take(s, '}')) return required_present(spec, out->values);
    for (int n = 0; n < BODY_VALUES_MAX; n++) { /* each round reads a new field */
        int i = scan_key(s, spec, &seen);
        if (i < 0) return false;
        const field_spec *f = &spec[i];
        body_value *v = &out->values[i];
        bool ok;
        skip_ws(s);
        if (f->type == F_OBJ && s->p < s->end && *s->p == '{') {
            s->p++;
            v->present = true;
            ok = lim->depth_max >= 2 && scan_flat(s, f->sub, lim, &out->values[out->sub_at[i]]);
        } else {
            ok = scan_value(s, f, lim, v);
        }
        if (!ok) return false;
        int end = scan_next(s);
        if (end < 0) return false;
        if (end) return required_present(spec, out->values);
    }
    return false;
}

int body_fast_scan(char *text, size_t bytes, const field_spec *spec, const body_limits *lim,
                   body_fields *out) {
    assert(text && spec && lim && out);
    body_layout(spec, out);
    scanner s = {.p = text, .end = text + bytes, .quotes = 0};
    if (!scan_top(&s, spec, lim, out)) return 1;
    skip_ws(&s);
    if (s.p != s.end) return 1; /* trailing text: jansson says "end of file expected" */
    for (int i = 0; i < s.quotes; i++) *s.quote_at[i] = '\0';
    return 0;
}
