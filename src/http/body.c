/* body.c — turns a request body into a checked JSON object or a 400 that names the field.
 * Depth is measured by a scan before jansson parses (jansson recurses up to its own fixed
 * limit); then every member is checked against the route's field table: unknown names, wrong
 * types, out-of-range integers and over-long strings are refused. body_fields_parse gives the
 * same answer as a flat table, reading the common body with body_fast.c's scanner instead. */
#include <assert.h>
#include <string.h>

#include "internal.h"

/* internal.h. */
int body_depth_scan(const char *text, size_t bytes, int max) {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < bytes; i++) {
        char c = text[i];
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '{' || c == '[') {
            if (++depth > deepest) deepest = depth;
            if (deepest > max) return deepest;
        } else if (c == '}' || c == ']') depth--;
    }
    return deepest;
}

static const field_spec *spec_find(const field_spec *spec, const char *name) {
    for (const field_spec *f = spec; f->name; f++)
        if (!strcmp(f->name, name)) return f;
    return NULL;
}

static void path_join(char *buf, size_t bytes, const char *prefix, const char *name) {
    if (prefix && *prefix) snprintf(buf, bytes, "%s.%s", prefix, name);
    else snprintf(buf, bytes, "%s", name);
}

static const char *type_name(field_type t) {
    switch (t) {
    case F_STR: return "a string";
    case F_INT: return "an integer";
    case F_OBJ: return "an object";
    case F_BOOL: return "true or false";
    }
    return "?";
}

static int check_value(req *r, const field_spec *f, json_t *v, const char *path) {
    if (json_is_null(v)) {
        if (f->nullable || !f->required) return 0;
        return fail(r, 400, "invalid", path, "%s must not be null", path);
    }
    bool ok = (f->type == F_STR && json_is_string(v)) || (f->type == F_INT && json_is_integer(v)) ||
              (f->type == F_OBJ && json_is_object(v)) || (f->type == F_BOOL && json_is_boolean(v));
    if (!ok) return fail(r, 400, "invalid", path, "%s must be %s", path, type_name(f->type));
    if (f->type == F_INT) {
        json_int_t n = json_integer_value(v);
        if (n < f->min || n > f->max)
            return fail(r, 400, "out_of_range", path, "%s must be between %lld and %lld", path,
                        (long long)f->min, (long long)f->max);
    }
    if (f->type == F_STR) {
        int64_t max = r->srv->config.string_bytes_max; /* the server-wide cap wins */
        if (f->max > 0 && f->max < max) max = f->max;
        size_t len = json_string_length(v);
        if ((int64_t)len > max)
            return fail(r, 400, "too_long", path, "%s is longer than %lld bytes", path,
                        (long long)max);
        if ((int64_t)len < f->min)
            return fail(r, 400, "invalid", path, "%s must not be empty", path);
        if (memchr(json_string_value(v), '\0', len))
            return fail(r, 400, "invalid", path, "%s must not contain NUL", path);
    }
    return 0;
}

bool body_str_ok(const field_spec *f, size_t bytes, const body_limits *lim) {
    int64_t max = lim->string_bytes_max; /* the server-wide cap wins */
    if (f->max > 0 && f->max < max) max = f->max;
    return (int64_t)bytes <= max && (int64_t)bytes >= f->min;
}

bool body_int_ok(const field_spec *f, int64_t n) {
    return n >= f->min && n <= f->max;
}

/* True when v passes check_value (no error body is written). */
bool body_value_ok(const field_spec *f, json_t *v, const body_limits *lim) {
    if (json_is_null(v)) return f->nullable || !f->required;
    switch (f->type) {
    case F_INT: return json_is_integer(v) && body_int_ok(f, json_integer_value(v));
    case F_STR: {
        if (!json_is_string(v)) return false;
        size_t len = json_string_length(v);
        return body_str_ok(f, len, lim) && !memchr(json_string_value(v), '\0', len);
    }
    case F_OBJ: return json_is_object(v);
    case F_BOOL: return json_is_boolean(v);
    }
    return false;
}

static body_limits limits_of(const req *r) {
    return (body_limits){r->srv->config.json_depth_max, r->srv->config.string_bytes_max};
}

/* Checks one object level; nested objects are checked by the caller's second pass so there is
 * no recursion (field tables nest at most one level, asserted). */
static int check_object(req *r, const field_spec *spec, json_t *obj, const char *prefix) {
    const char *name;
    json_t *v;
    char path[128];
    body_limits lim = limits_of(r);
    json_object_foreach(obj, name, v) {
        const field_spec *f = spec_find(spec, name);
        /* The dotted path is only built for an error: this loop runs on every request. */
        if (!f || !body_value_ok(f, v, &lim)) {
            path_join(path, sizeof path, prefix, name);
            if (!f) return fail(r, 400, "unknown_field", path, "unknown field '%s'", path);
            return check_value(r, f, v, path);
        }
    }
    for (const field_spec *f = spec; f->name; f++) {
        if (!f->required) continue;
        v = json_object_get(obj, f->name);
        if (!v || json_is_null(v)) {
            path_join(path, sizeof path, prefix, f->name);
            return fail(r, 400, "missing_field", path, "%s is required", path);
        }
    }
    return 0;
}

/* The dotted path of the member whose value is at pos ("agent.count" in
 * {"agent":{"count": 1e999999}}), so a number too big for jansson is still reported against
 * its field. A forward scan keeping the last key seen at each depth: no recursion, and depth
 * is already known to be at most json_depth_max (<= KEY_DEPTH_MAX, asserted by the caller's
 * scan). Empty when the value is not directly a member of an object. */
#define KEY_DEPTH_MAX 64
#define KEY_BYTES_MAX 64
static void key_path_at(const char *text, size_t pos, char *buf, size_t bytes) {
    assert(bytes > 0);
    buf[0] = '\0';
    size_t key_at[KEY_DEPTH_MAX + 1] = {0}, key_len[KEY_DEPTH_MAX + 1] = {0};
    int depth = 0;
    for (size_t i = 0; i < pos; i++) {
        char c = text[i];
        if (c == '{' || c == '[') {
            if (++depth > KEY_DEPTH_MAX) return;
            key_len[depth] = 0;
        } else if (c == '}' || c == ']') {
            if (--depth < 0) return;
        } else if (c == '"') {
            size_t start = ++i;
            while (i < pos && text[i] != '"') i += text[i] == '\\' ? 2 : 1;
            if (i >= pos) return;
            size_t j = i + 1;
            while (j < pos && (text[j] == ' ' || text[j] == '\t' || text[j] == '\n' || text[j] == '\r')) j++;
            if (j < pos && text[j] == ':' && depth > 0) { /* a member name */
                key_at[depth] = start;
                key_len[depth] = i - start;
            }
        }
    }
    size_t used = 0;
    for (int d = 1; d <= depth; d++) {
        if (key_len[d] == 0 || key_len[d] > KEY_BYTES_MAX) return; /* in an array, or odd */
        size_t need = key_len[d] + (used ? 1 : 0);
        if (used + need + 1 > bytes) return;
        if (used) buf[used++] = '.';
        memcpy(buf + used, text + key_at[d], key_len[d]);
        used += key_len[d];
        buf[used] = '\0';
    }
}

int body_parse(req *r, const field_spec *spec, json_t **out) {
    assert(r && spec && out);
    *out = NULL;
    const char *text = r->body_bytes ? r->body : "{}";
    size_t bytes = r->body_bytes ? r->body_bytes : 2;
    int max = r->srv->config.json_depth_max;
    if (body_depth_scan(text, bytes, max) > max)
        return fail(r, 400, "too_deep", "", "JSON nested deeper than %d levels", max);
    json_error_t jerr;
    json_t *root = json_loadb(text, bytes, JSON_REJECT_DUPLICATES, &jerr);
    /* Both "too big integer" and "real number overflow" (1e999999): a number, not bad JSON.
     * jansson's position is just past the number, inside the member's value. */
    if (!root && json_error_code(&jerr) == json_error_numeric_overflow) {
        char key[128];
        key_path_at(text, (size_t)jerr.position < bytes ? (size_t)jerr.position : bytes, key, sizeof key);
        return fail(r, 400, "out_of_range", key, "%s: number out of range", key[0] ? key : "body");
    }
    if (!root)
        return fail(r, 400, "malformed_json", "", "malformed JSON at line %d column %d: %s",
                    jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(r, 400, "invalid", "", "the body must be a JSON object");
    }
    int status = check_object(r, spec, root, "");
    for (const field_spec *f = spec; !status && f->name; f++) {
        if (f->type != F_OBJ) continue; /* before the lookup: each one hashes the name */
        json_t *sub = json_object_get(root, f->name);
        if (!json_is_object(sub)) continue;
        assert(f->sub);
        for (const field_spec *g = f->sub; g->name; g++) assert(g->type != F_OBJ);
        status = check_object(r, f->sub, sub, f->name);
    }
    if (status) {
        json_decref(root);
        return status;
    }
    *out = root;
    return 0;
}

const char *jstr(json_t *obj, const char *name) {
    json_t *v = obj ? json_object_get(obj, name) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int64_t jint(json_t *obj, const char *name, int64_t dflt) {
    json_t *v = obj ? json_object_get(obj, name) : NULL;
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* ---- the flat table ----------------------------------------------------------------------- */

void body_layout(const field_spec *spec, body_fields *out) {
    memset(out, 0, sizeof *out);
    int count = 0;
    for (const field_spec *f = spec; f->name; f++) count++;
    int next = count;
    for (int i = 0; i < count; i++) {
        if (spec[i].type != F_OBJ) continue;
        out->sub_at[i] = (uint8_t)next;
        for (const field_spec *g = spec[i].sub; g->name; g++) {
            assert(g->type != F_OBJ); /* field tables nest one level */
            next++;
        }
    }
    assert(next <= BODY_VALUES_MAX);
}

static void value_from_json(const field_spec *f, json_t *v, body_value *out) {
    out->present = v != NULL;
    out->null = json_is_null(v);
    if (!v || out->null) return;
    if (f->type == F_STR) out->str = json_string_value(v);
    else if (f->type == F_INT) out->num = (int64_t)json_integer_value(v);
    else if (f->type == F_BOOL) out->flag = json_is_true(v);
}

void body_fields_from_json(const field_spec *spec, json_t *root, body_fields *out) {
    body_layout(spec, out);
    out->root = root;
    for (int i = 0; spec[i].name; i++) {
        json_t *v = json_object_get(root, spec[i].name);
        value_from_json(&spec[i], v, &out->values[i]);
        if (spec[i].type != F_OBJ || !json_is_object(v)) continue;
        const field_spec *sub = spec[i].sub;
        for (int j = 0; sub[j].name; j++)
            value_from_json(&sub[j], json_object_get(v, sub[j].name), &out->values[out->sub_at[i] + j]);
    }
}

int body_fields_parse(req *r, const field_spec *spec, body_fields *out) {
    assert(r && spec && out);
    body_limits lim = limits_of(r);
    char empty[] = "{}"; /* as body_parse reads an empty body */
    char *text = r->body_bytes ? r->body : empty;
    if (body_fast_scan(text, r->body_bytes ? r->body_bytes : 2, spec, &lim, out) == 0) return 0;
    json_t *root = NULL;
    int status = body_parse(r, spec, &root);
    if (status) {
        body_layout(spec, out);
        return status;
    }
    body_fields_from_json(spec, root, out);
    return 0;
}

void body_fields_free(body_fields *b) {
    if (!b) return;
    json_decref(b->root);
    b->root = NULL;
}

const body_value *bf_value(const body_fields *b, int field, int sub) {
    assert(field >= 0 && field < BODY_VALUES_MAX);
    if (sub < 0) return &b->values[field];
    assert(b->sub_at[field] > 0 && b->sub_at[field] + sub < BODY_VALUES_MAX);
    return &b->values[b->sub_at[field] + sub];
}

const char *bf_str(const body_fields *b, int field, int sub) {
    const body_value *v = bf_value(b, field, sub);
    return v->present && !v->null ? v->str : NULL;
}

int64_t bf_int(const body_fields *b, int field, int sub, int64_t dflt) {
    const body_value *v = bf_value(b, field, sub);
    return v->present && !v->null ? v->num : dflt;
}

bool bf_object(const body_fields *b, int field) {
    const body_value *v = bf_value(b, field, -1);
    return v->present && !v->null;
}
