/* json.c — names of the ledger's enums and the JSON shape of its objects (jansson), shared by
 * the CLI's --json and the HTTP bodies so both always agree. Instants are written twice:
 * RFC 3339 in UTC for people ("created_at") and microseconds for programs ("created_at_us");
 * "never" is null. No I/O here. */
#include "creditgate/ledger.h"

#include <assert.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

static const char *const source_names[] = {"plan", "purchase", "promo", "refund", "adjustment"};
static const char *const category_names[] = {"paid", "promotional"};
static const char *const status_names[] = {"held", "captured", "released", "expired"};
static const char *const kind_names[] = {"grant", "hold", "capture", "release", "refund",
                                         "expiry"};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *cg_grant_source_name(cg_grant_source s) {
    return (int)s >= 0 && (int)s < COUNT(source_names) ? source_names[s] : "unknown";
}
const char *cg_grant_category_name(cg_grant_category c) {
    return (int)c >= 0 && (int)c < COUNT(category_names) ? category_names[c] : "unknown";
}
const char *cg_charge_status_name(cg_charge_status s) {
    return (int)s >= 0 && (int)s < COUNT(status_names) ? status_names[s] : "unknown";
}
const char *cg_journal_kind_name(cg_journal_kind k) {
    return (int)k >= 0 && (int)k < COUNT(kind_names) ? kind_names[k] : "unknown";
}

int cg_grant_source_parse(const char *text, cg_grant_source *out, cg_err *err) {
    for (int i = 0; text && i < COUNT(source_names); i++)
        if (!strcasecmp(text, source_names[i])) return *out = (cg_grant_source)i, CG_OK;
    return cg_err_set_field(err, CG_EINVAL, "source", "unknown grant source '%s' (use plan, "
                            "purchase, promo, refund or adjustment)", text ? text : "");
}

int cg_grant_category_parse(const char *text, cg_grant_category *out, cg_err *err) {
    if (text && (!strcasecmp(text, "paid"))) return *out = CG_CATEGORY_PAID, CG_OK;
    if (text && (!strcasecmp(text, "promotional") || !strcasecmp(text, "promo")))
        return *out = CG_CATEGORY_PROMO, CG_OK;
    return cg_err_set_field(err, CG_EINVAL, "category", "unknown category '%s' (use paid or "
                            "promotional)", text ? text : "");
}

/* Sets name (RFC 3339 UTC, or null for never/unset) and name_us. */
static void set_instant(json_t *o, const char *name, int64_t at_us) {
    char key[64], text[CG_RFC3339_TEXT_BYTES];
    snprintf(key, sizeof key, "%s_us", name);
    if (at_us == CG_NO_END || at_us == 0) {
        json_object_set_new(o, name, json_null());
        json_object_set_new(o, key, json_null());
        return;
    }
    cg_time_format(at_us, 0, text, sizeof text);
    json_object_set_new(o, name, json_string(text));
    json_object_set_new(o, key, json_integer(at_us));
}

static void set_str(json_t *o, const char *name, const char *text) {
    json_object_set_new(o, name, text && *text ? json_string(text) : json_null());
}

static void set_int(json_t *o, const char *name, int64_t v) {
    json_object_set_new(o, name, json_integer((json_int_t)v));
}

json_t *cg_member_state_to_json(const cg_member_state *m) {
    assert(m);
    json_t *o = json_object();
    set_str(o, "member_id", m->member_id);
    set_str(o, "plan", m->plan);
    set_str(o, "billing", m->billing);
    set_instant(o, "joined_at", m->joined_at_us);
    set_instant(o, "effective_at", m->effective_at_us);
    set_instant(o, "recorded_at", m->recorded_at_us);
    return o;
}

json_t *cg_grant_to_json(const cg_grant *g) {
    assert(g);
    json_t *o = json_object();
    set_str(o, "grant_id", g->grant_id);
    set_str(o, "member_id", g->member_id);
    set_str(o, "source", cg_grant_source_name(g->source));
    set_str(o, "category", cg_grant_category_name(g->category));
    set_int(o, "priority", g->priority);
    set_int(o, "credits", g->credits);
    set_int(o, "remaining", g->remaining);
    set_int(o, "held", g->held);
    set_instant(o, "starts_at", g->starts_at_us);
    set_instant(o, "expires_at", g->expires_at_us);
    set_instant(o, "created_at", g->created_at_us);
    json_object_set_new(o, "expired", json_boolean(g->expired));
    set_str(o, "note", g->note);
    return o;
}

static json_t *item_to_json(const cg_charge_item *it) {
    json_t *o = json_object();
    set_str(o, "kind", it->kind);
    set_str(o, "model", it->model);
    set_str(o, "variant", it->variant);
    set_int(o, "count", it->count);
    json_object_set_new(o, "unlimited", json_boolean(it->unlimited));
    set_int(o, "credits", it->credits);
    set_str(o, "benefit", it->benefit);
    set_str(o, "reason_code", it->reason_code);
    set_str(o, "reason", it->reason);
    return o;
}

static json_t *part_to_json(const cg_charge_part *p) {
    json_t *o = json_object();
    set_str(o, "grant_id", p->grant_id);
    set_str(o, "source", cg_grant_source_name(p->source));
    set_str(o, "category", cg_grant_category_name(p->category));
    set_int(o, "held", p->held);
    set_int(o, "captured", p->captured);
    set_int(o, "refunded", p->refunded);
    return o;
}

static json_t *request_to_json(const cg_charge *c) {
    json_t *o = json_object();
    set_str(o, "model", c->model);
    set_str(o, "variant", c->variant);
    set_int(o, "count", c->count);
    set_str(o, "agent_model", c->agent_model);
    set_str(o, "agent_kind", c->agent_kind);
    set_str(o, "prompt", c->prompt);
    set_instant(o, "at", c->at_us);
    return o;
}

json_t *cg_charge_to_json(const cg_charge *c) {
    assert(c);
    json_t *o = json_object();
    set_str(o, "charge_id", c->charge_id);
    set_str(o, "member_id", c->member_id);
    set_str(o, "status", cg_charge_status_name(c->status));
    json_object_set_new(o, "request", request_to_json(c));
    json_t *member = json_object();
    set_str(member, "plan", c->plan);
    set_str(member, "billing", c->billing);
    set_instant(member, "joined_at", c->joined_at_us);
    json_object_set_new(o, "member", member);
    set_str(o, "policy_version", c->policy_version);
    json_t *items = json_array();
    for (int i = 0; i < c->item_count; i++) json_array_append_new(items, item_to_json(&c->items[i]));
    json_object_set_new(o, "items", items);
    set_int(o, "credits", c->credits);
    set_int(o, "held", c->held);
    set_int(o, "captured", c->captured);
    set_int(o, "refunded", c->refunded);
    json_t *parts = json_array();
    for (int i = 0; i < c->part_count; i++) json_array_append_new(parts, part_to_json(&c->parts[i]));
    json_object_set_new(o, "parts", parts);
    set_instant(o, "created_at", c->created_at_us);
    set_instant(o, "expires_at", c->expires_at_us);
    set_instant(o, "settled_at", c->settled_at_us);
    return o;
}

json_t *cg_balance_to_json(const cg_balance *b) {
    assert(b);
    json_t *o = json_object();
    set_str(o, "member_id", b->member_id);
    set_instant(o, "at", b->at_us);
    set_int(o, "available", b->available);
    set_int(o, "available_paid", b->available_paid);
    set_int(o, "available_promotional", b->available_promo);
    set_int(o, "held", b->held);
    json_t *grants = json_array();
    for (int i = 0; i < b->grant_count; i++)
        json_array_append_new(grants, cg_grant_to_json(&b->grants[i]));
    json_object_set_new(o, "grants", grants);
    return o;
}

json_t *cg_journal_entry_to_json(const cg_journal_entry *e) {
    assert(e);
    json_t *o = json_object();
    set_str(o, "member_id", e->member_id);
    set_int(o, "seq", e->seq);
    set_instant(o, "at", e->at_us);
    set_str(o, "kind", cg_journal_kind_name(e->kind));
    set_str(o, "grant_id", e->grant_id);
    set_str(o, "charge_id", e->charge_id);
    set_int(o, "delta_remaining", e->delta_remaining);
    set_int(o, "delta_held", e->delta_held);
    set_str(o, "note", e->note);
    return o;
}

json_t *cg_verify_report_to_json(const cg_verify_report *r) {
    assert(r);
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_boolean(r->problem_count == 0));
    set_int(o, "members", r->members);
    set_int(o, "grants", r->grants);
    set_int(o, "charges", r->charges);
    set_int(o, "entries", r->entries);
    set_int(o, "problem_count", r->problem_count);
    json_t *problems = json_array();
    for (int64_t i = 0; i < r->problem_count && i < CG_VERIFY_PROBLEMS_MAX; i++)
        json_array_append_new(problems, json_string(r->problems[i]));
    json_object_set_new(o, "problems", problems);
    return o;
}

json_t *cg_ledger_error_to_json(const cg_err *err, const cg_charge *charge) {
    assert(err);
    json_t *e = json_object();
    set_str(e, "code", cg_err_name(err->code));
    set_str(e, "message", err->msg);
    set_str(e, "field", err->field);
    if (err->code == CG_EINSUFFICIENT && charge) {
        set_int(e, "needed", charge->credits);
        set_int(e, "available", charge->credits_available);
    }
    json_t *o = json_object();
    json_object_set_new(o, "error", e);
    return o;
}

json_t *cg_charges_page_to_json(const cg_charge *charges, int count, const char *next) {
    json_t *o = json_object(), *arr = json_array();
    for (int i = 0; i < count; i++) json_array_append_new(arr, cg_charge_to_json(&charges[i]));
    json_object_set_new(o, "charges", arr);
    json_object_set_new(o, "next", next && *next ? json_string(next) : json_null());
    return o;
}
