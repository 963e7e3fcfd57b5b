/* json.c — decisions, active benefits and errors as JSON (jansson), one renderer for the CLI
 * and the HTTP server. Instants are RFC 3339 at the policy's UTC offset. */
#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "creditgate/engine_json.h"

/* Policy ids and names were checked as UTF-8 when the policy was loaded, and explanations
 * are built from them: the _nocheck constructors skip a second validation per string, which
 * is most of the cost of a quote response. */
static json_t *text_json(const char *text) { return json_string_nocheck(text); }

static json_t *instant_json(const cg_policy *p, int64_t at_us) {
    char text[CG_RFC3339_TEXT_BYTES];
    cg_time_format(at_us, p->utc_offset_s, text, sizeof text);
    return text_json(text);
}

static void set(json_t *obj, const char *key, json_t *value) { json_object_set_new_nocheck(obj, key, value); }

json_t *cg_item_to_json(const cg_decision *d, int item, cg_lang lang) {
    assert(item >= 0 && item < d->item_count);
    const cg_item *it = &d->items[item];
    const cg_policy *p = d->policy;
    const cg_model *m = &p->models[it->model];
    char reason[CG_EXPLAIN_BYTES_MAX];
    size_t reason_len = cg_item_explain(d, item, lang, reason, sizeof reason);
    json_t *o = json_object();
    set(o, "kind", text_json(it->kind == CG_ITEM_GENERATION ? "generation" : "conversation"));
    set(o, "model", text_json(m->id));
    set(o, "variant", it->variant >= 0 ? text_json(m->variants[it->variant].id) : json_null());
    set(o, "count", json_integer(it->count));
    set(o, "unlimited", json_boolean(it->unlimited));
    set(o, "credits", json_integer(it->credits));
    set(o, "benefit", it->unlimited ? text_json(p->benefits[it->benefit].id) : json_null());
    set(o, "reason", json_stringn_nocheck(reason, reason_len));
    return o;
}

json_t *cg_decision_to_json(const cg_decision *d, cg_lang lang) {
    json_t *items = json_array();
    for (int i = 0; i < d->item_count; i++) json_array_append_new(items, cg_item_to_json(d, i, lang));
    json_t *o = json_object();
    set(o, "policy", text_json(d->policy->version));
    set(o, "at", instant_json(d->policy, d->at_us));
    set(o, "items", items);
    set(o, "total_credits", json_integer(d->total_credits));
    return o;
}

/* ---- direct writer ---- */

typedef struct writer {
    char *buf;
    size_t cap, len;
    bool overflow;
} writer;

static void w_raw(writer *w, const char *text, size_t n) {
    if (w->len + n >= w->cap) {
        w->overflow = true;
        return;
    }
    memcpy(w->buf + w->len, text, n);
    w->len += n;
}

static void w_lit(writer *w, const char *text) { w_raw(w, text, strlen(text)); }

/* A JSON string: quotes, backslashes and control characters escaped (RFC 8259 §7); bytes
 * from 0x80 up are copied as they are (the text is UTF-8 already). */
static void w_string(writer *w, const char *text) {
    static const char hex[] = "0123456789abcdef";
    w_raw(w, "\"", 1);
    const char *run = text;
    for (const char *c = text; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (u >= 0x20 && u != '"' && u != '\\') continue;
        w_raw(w, run, (size_t)(c - run));
        char esc[6] = {'\\', 'u', '0', '0', hex[u >> 4], hex[u & 15]};
        if (u == '"' || u == '\\') w_raw(w, (char[]){'\\', (char)u}, 2);
        else if (u == '\n') w_raw(w, "\\n", 2);
        else w_raw(w, esc, 6);
        run = c + 1;
    }
    w_raw(w, run, strlen(run));
    w_raw(w, "\"", 1);
}

static void w_int(writer *w, int64_t v) {
    char digits[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do digits[n++] = (char)('0' + u % 10), u /= 10; while (u);
    if (v < 0) digits[n++] = '-';
    char out[24];
    for (int i = 0; i < n; i++) out[i] = digits[n - 1 - i];
    w_raw(w, out, (size_t)n);
}

static void w_key(writer *w, const char *key) {
    w_string(w, key);
    w_raw(w, ":", 1);
}

static void w_item(writer *w, const cg_decision *d, int item, cg_lang lang) {
    const cg_item *it = &d->items[item];
    const cg_policy *p = d->policy;
    const cg_model *m = &p->models[it->model];
    char reason[CG_EXPLAIN_BYTES_MAX];
    cg_item_explain(d, item, lang, reason, sizeof reason);
    w_lit(w, "{\"kind\":");
    w_string(w, it->kind == CG_ITEM_GENERATION ? "generation" : "conversation");
    w_lit(w, ",\"model\":");
    w_string(w, m->id);
    w_lit(w, ",\"variant\":");
    if (it->variant >= 0) w_string(w, m->variants[it->variant].id);
    else w_lit(w, "null");
    w_lit(w, ",\"count\":");
    w_int(w, it->count);
    w_lit(w, it->unlimited ? ",\"unlimited\":true,\"credits\":" : ",\"unlimited\":false,\"credits\":");
    w_int(w, it->credits);
    w_lit(w, ",\"benefit\":");
    if (it->unlimited) w_string(w, p->benefits[it->benefit].id);
    else w_lit(w, "null");
    w_lit(w, ",");
    w_key(w, "reason");
    w_string(w, reason);
    w_lit(w, "}");
}

size_t cg_decision_write_json(const cg_decision *d, cg_lang lang, char *buf, size_t buf_bytes) {
    assert(buf_bytes > 0);
    writer w = {buf, buf_bytes, 0, false};
    char at[CG_RFC3339_TEXT_BYTES];
    cg_time_format(d->at_us, d->policy->utc_offset_s, at, sizeof at);
    w_lit(&w, "{\"policy\":");
    w_string(&w, d->policy->version);
    w_lit(&w, ",\"at\":");
    w_string(&w, at);
    w_lit(&w, ",\"items\":[");
    for (int i = 0; i < d->item_count; i++) {
        if (i) w_lit(&w, ",");
        w_item(&w, d, i, lang);
    }
    w_lit(&w, "],\"total_credits\":");
    w_int(&w, d->total_credits);
    w_lit(&w, "}");
    if (w.overflow) return 0;
    buf[w.len] = '\0';
    return w.len;
}

json_t *cg_active_benefits_to_json(const cg_policy *p, const cg_active_benefit *list, int count,
                                   cg_lang lang) {
    json_t *arr = json_array();
    for (int i = 0; i < count; i++) {
        const cg_active_benefit *ab = &list[i];
        const cg_model *m = &p->models[ab->model];
        char reason[CG_EXPLAIN_BYTES_MAX];
        cg_active_benefit_explain(p, ab, lang, reason, sizeof reason);
        json_array_append_new(
            arr, json_pack("{s:s, s:o, s:s, s:o, s:s}", "model", m->id, "variant",
                           ab->variant >= 0 ? json_string(m->variants[ab->variant].id) : json_null(),
                           "benefit", p->benefits[ab->benefit].id, "expires_at",
                           ab->expires_at_us == CG_NO_END ? json_null() : instant_json(p, ab->expires_at_us),
                           "reason", reason));
    }
    return json_pack("{s:s, s:o}", "policy", p->version, "benefits", arr);
}

json_t *cg_err_to_json(const cg_err *err) {
    json_t *e = json_pack("{s:s, s:s}", "code", cg_err_name(err->code), "message", err->msg);
    if (err->field[0]) json_object_set_new(e, "field", json_string(err->field));
    json_t *s = json_array();
    for (int i = 0; i < err->suggestion_count; i++) json_array_append_new(s, json_string(err->suggestions[i]));
    json_object_set_new(e, "suggestions", s);
    return json_pack("{s:o}", "error", e);
}
