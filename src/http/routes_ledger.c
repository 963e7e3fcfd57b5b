/* routes_ledger.c — the handlers over the ledger (ledger.h): members, grants, balance,
 * history, and charges with capture / release / refund. Each validates its body, calls one
 * ledger function with the request's Idempotency-Key, and renders with the ledger's JSON. */
#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "creditgate/engine_json.h"
#include "creditgate/time.h"
#include "internal.h"

void count_decision(req *r, const cg_decision *d);

/* The Idempotency-Key header, checked; without one a random key makes the call unique. */
const char *idempotency_key(req *r, char *buf, size_t buf_bytes, int *status) {
    const char *key = header_value(r, "Idempotency-Key");
    *status = 0;
    if (!key) {
        unsigned char raw[12];
        randombytes_buf(raw, sizeof raw);
        char hex[sizeof raw * 2 + 1];
        sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
        snprintf(buf, buf_bytes, "auto-%s", hex);
        return buf;
    }
    size_t len = strlen(key);
    bool ok = len > 0 && len < CG_IDEMPOTENCY_KEY_BYTES_MAX && len < buf_bytes;
    for (size_t i = 0; ok && i < len; i++) ok = key[i] > 0x20 && key[i] < 0x7f;
    if (!ok) {
        *status = fail(r, 400, "invalid", "Idempotency-Key",
                       "Idempotency-Key must be 1-%d printable ASCII characters",
                       CG_IDEMPOTENCY_KEY_BYTES_MAX - 1);
        return NULL;
    }
    snprintf(buf, buf_bytes, "%s", key);
    return buf;
}

/* Runs after a ledger call: the error, or the object with its status. */
static int ledger_result(req *r, int rc, const cg_err *err, bool replayed, int status,
                         json_t *body) {
    if (rc) {
        json_decref(body);
        return fail_err(r, err);
    }
    r->replayed = replayed;
    return reply(r, status, body);
}

#define LEDGER_OR_503(r, ledger)                                                              \
    cg_ledger *ledger = ledger_enter(r);                                                      \
    if (!ledger) return fail(r, 503, "unavailable", "", "this server runs without a ledger")

/* ---- members ----------------------------------------------------------------------------- */

static const field_spec member_put_fields[] = {
    {"plan", F_STR, true, false, 1, CG_ID_BYTES_MAX - 1, NULL},
    {"billing", F_STR, true, false, 1, CG_ID_BYTES_MAX - 1, NULL},
    {"joined", F_STR, true, false, 1, CG_RFC3339_TEXT_BYTES - 1, NULL},
    {"effective_at", F_STR, false, true, 1, CG_RFC3339_TEXT_BYTES - 1, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

int h_member_put(req *r) {
    snprintf(r->member_id, sizeof r->member_id, "%s", r->params[0]);
    json_t *body = NULL;
    int status = body_parse(r, member_put_fields, &body);
    if (status) return status;
    char key_buf[CG_IDEMPOTENCY_KEY_BYTES_MAX];
    cg_member_put_input in = {.member_id = r->params[0], .plan = jstr(body, "plan"),
                              .billing = jstr(body, "billing")};
    in.idempotency_key = idempotency_key(r, key_buf, sizeof key_buf, &status);
    if (!status) status = parse_instant(r, "joined", jstr(body, "joined"), &in.joined_at_us);
    const char *eff = jstr(body, "effective_at");
    if (!status && eff) status = parse_instant(r, "effective_at", eff, &in.effective_at_us);
    if (status) {
        json_decref(body);
        return status;
    }
    LEDGER_OR_503(r, ledger);
    cg_member_state out;
    bool replayed = false;
    cg_err err;
    cg_err_clear(&err);
    int rc = cg_ledger_member_put(ledger, &in, &out, &replayed, &err);
    ledger_leave(r);
    json_decref(body);
    return ledger_result(r, rc, &err, replayed, 200, rc ? NULL : cg_member_state_to_json(&out));
}

int h_member_get(req *r) {
    const char *id = r->params[0];
    snprintf(r->member_id, sizeof r->member_id, "%s", id);
    int64_t at_us = 0;
    const char *at = query_arg(r, "at");
    int status;
    if (at && (status = parse_instant(r, "at", at, &at_us))) return status;
    cg_member_state *versions = calloc(CG_MEMBER_VERSIONS_MAX, sizeof *versions);
    if (!versions) return fail(r, 503, "out_of_memory", "", "out of memory");
    LEDGER_OR_503(r, ledger);
    cg_member_state now;
    int count = 0;
    cg_err err;
    cg_err_clear(&err);
    int rc = cg_ledger_member_get(ledger, id, at_us, &now, &err);
    if (!rc) rc = cg_ledger_member_history(ledger, id, versions, CG_MEMBER_VERSIONS_MAX, &count, &err);
    ledger_leave(r);
    json_t *out = NULL;
    if (!rc) {
        out = cg_member_state_to_json(&now);
        json_t *list = json_array();
        for (int i = 0; i < count; i++) json_array_append_new(list, cg_member_state_to_json(&versions[i]));
        json_object_set_new(out, "versions", list);
    }
    free(versions);
    return ledger_result(r, rc, &err, false, 200, out);
}

/* ---- grants ------------------------------------------------------------------------------ */

static const field_spec grant_fields[] = {
    {"credits", F_INT, true, false, 1, CG_CREDITS_MAX, NULL},
    {"source", F_STR, true, false, 1, 16, NULL},
    {"category", F_STR, false, true, 1, 16, NULL},
    {"priority", F_INT, false, true, 0, 100, NULL},
    {"starts_at", F_STR, false, true, 1, CG_RFC3339_TEXT_BYTES - 1, NULL},
    {"expires_at", F_STR, false, true, 1, CG_RFC3339_TEXT_BYTES - 1, NULL},
    {"note", F_STR, false, true, 0, CG_GRANT_NOTE_BYTES_MAX - 1, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

static int grant_input(req *r, json_t *body, cg_grant_input *in) {
    cg_err err;
    if (cg_grant_source_parse(jstr(body, "source"), &in->source, &err))
        return fail(r, 400, "invalid", "source", "source: %s", err.msg);
    const char *category = jstr(body, "category");
    in->category = in->source == CG_SOURCE_PROMO ? CG_CATEGORY_PROMO : CG_CATEGORY_PAID;
    if (category && cg_grant_category_parse(category, &in->category, &err))
        return fail(r, 400, "invalid", "category", "category: %s", err.msg);
    in->priority = (int)jint(body, "priority", -1);
    in->credits = jint(body, "credits", 0);
    in->note = jstr(body, "note");
    const char *starts = jstr(body, "starts_at"), *expires = jstr(body, "expires_at");
    int status = 0;
    if (starts) status = parse_instant(r, "starts_at", starts, &in->starts_at_us);
    if (!status && expires) status = parse_instant(r, "expires_at", expires, &in->expires_at_us);
    return status;
}

int h_member_grants(req *r) {
    snprintf(r->member_id, sizeof r->member_id, "%s", r->params[0]);
    json_t *body = NULL;
    int status = body_parse(r, grant_fields, &body);
    if (status) return status;
    char key_buf[CG_IDEMPOTENCY_KEY_BYTES_MAX];
    cg_grant_input in = {.member_id = r->params[0]};
    in.idempotency_key = idempotency_key(r, key_buf, sizeof key_buf, &status);
    if (!status) status = grant_input(r, body, &in);
    if (status) {
        json_decref(body);
        return status;
    }
    LEDGER_OR_503(r, ledger);
    cg_grant out;
    bool replayed = false;
    cg_err err;
    cg_err_clear(&err);
    int rc = cg_ledger_grant(ledger, &in, &out, &replayed, &err);
    ledger_leave(r);
    json_decref(body); /* after the call: in.note points into it */
    return ledger_result(r, rc, &err, replayed, 201, rc ? NULL : cg_grant_to_json(&out));
}

int h_member_balance(req *r) {
    snprintf(r->member_id, sizeof r->member_id, "%s", r->params[0]);
    cg_balance *out = malloc(sizeof *out);
    if (!out) return fail(r, 503, "out_of_memory", "", "out of memory");
    cg_err err;
    cg_err_clear(&err);
    cg_ledger *ledger = ledger_enter(r);
    if (!ledger) {
        free(out);
        return fail(r, 503, "unavailable", "", "this server runs without a ledger");
    }
    int rc = cg_ledger_balance(ledger, r->params[0], out, &err);
    ledger_leave(r);
    int status = ledger_result(r, rc, &err, false, 200, rc ? NULL : cg_balance_to_json(out));
    free(out);
    return status;
}

static int history_args(req *r, int64_t *after, int *limit) {
    const char *a = query_arg(r, "after"), *l = query_arg(r, "limit");
    char *end = NULL;
    *after = 0;
    *limit = 100;
    if (a) {
        long long v = strtoll(a, &end, 10);
        if (!*a || *end || v < 0) return fail(r, 400, "invalid", "after", "after must be a sequence number >= 0");
        *after = v;
    }
    if (l) {
        long long v = strtoll(l, &end, 10);
        if (!*l || *end || v < 1 || v > CG_HISTORY_PAGE_MAX)
            return fail(r, 400, "out_of_range", "limit", "limit must be between 1 and %d",
                        CG_HISTORY_PAGE_MAX);
        *limit = (int)v;
    }
    return 0;
}

int h_member_history(req *r) {
    snprintf(r->member_id, sizeof r->member_id, "%s", r->params[0]);
    int64_t after = 0, next = 0;
    int limit = 0, count = 0;
    int status = history_args(r, &after, &limit);
    if (status) return status;
    cg_journal_entry *entries = calloc((size_t)limit, sizeof *entries);
    if (!entries) return fail(r, 503, "out_of_memory", "", "out of memory");
    cg_err err;
    cg_err_clear(&err);
    cg_ledger *ledger = ledger_enter(r);
    int rc = CG_EUNAVAILABLE;
    if (ledger) {
        rc = cg_ledger_history(ledger, r->params[0], after, limit, entries, &count, &next, &err);
        ledger_leave(r);
    } else {
        cg_err_set(&err, CG_EUNAVAILABLE, "this server runs without a ledger");
    }
    json_t *out = NULL;
    if (!rc) {
        json_t *list = json_array();
        for (int i = 0; i < count; i++) json_array_append_new(list, cg_journal_entry_to_json(&entries[i]));
        out = json_pack("{s:s,s:o,s:o}", "member_id", r->params[0], "entries", list, "next_after",
                        next ? json_integer(next) : json_null());
    }
    free(entries);
    return ledger_result(r, rc, &err, false, 200, out);
}

/* ---- GET /v1/members/{id}/charges ------------------------------------------------------- */

/* A member's charges newest first, 0-credit (unlimited) ones included: the usage history of
 * My Credits and the support console. ?before= is the previous page's "next" cursor. */
int h_member_charges(req *r) {
    snprintf(r->member_id, sizeof r->member_id, "%s", r->params[0]);
    const char *before = query_arg(r, "before");
    const char *l = query_arg(r, "limit");
    int limit = 20;
    if (l) {
        char *end = NULL;
        long long v = strtoll(l, &end, 10);
        if (!*l || *end || v < 1 || v > CG_CHARGES_PAGE_MAX)
            return fail(r, 400, "out_of_range", "limit", "limit must be between 1 and %d", CG_CHARGES_PAGE_MAX);
        limit = (int)v;
    }
    if (before && strlen(before) >= CG_CHARGES_CURSOR_BYTES_MAX)
        return fail(r, 400, "invalid", "before", "before is not a cursor from a previous page");
    cg_charge *page = calloc((size_t)limit, sizeof *page);
    if (!page) return fail(r, 503, "out_of_memory", "", "out of memory");
    char next[CG_CHARGES_CURSOR_BYTES_MAX] = "";
    int count = 0;
    cg_err err;
    cg_err_clear(&err);
    cg_ledger *ledger = ledger_enter(r);
    int rc = CG_EUNAVAILABLE;
    if (ledger) {
        rc = cg_ledger_charges(ledger, r->params[0], before, limit, page, &count, next, &err);
        ledger_leave(r);
    } else {
        cg_err_set(&err, CG_EUNAVAILABLE, "this server runs without a ledger");
    }
    if (rc == CG_EINVAL && !err.field[0]) snprintf(err.field, sizeof err.field, "before");
    json_t *out = rc ? NULL : cg_charges_page_to_json(page, count, next);
    free(page);
    return ledger_result(r, rc, &err, false, 200, out);
}

/* ---- charges ----------------------------------------------------------------------------- */

/* Indices into the field tables: the charge handler reads the flat table (body_fields), which
 * the fast scanner fills for the common body and jansson for the rest. */
enum { C_MEMBER_ID, C_MODEL, C_VARIANT, C_COUNT, C_AT, C_AGENT, C_CAPTURE };

static const field_spec charge_fields[] = {
    [C_MEMBER_ID] = {"member_id", F_STR, true, false, 1, CG_HTTP_ID_BYTES_MAX - 1, NULL},
    [C_MODEL] = {"model", F_STR, false, true, 1, CG_NAME_BYTES_MAX - 1, NULL},
    [C_VARIANT] = {"variant", F_STR, false, true, 1, CG_ID_BYTES_MAX - 1, NULL},
    [C_COUNT] = {"count", F_INT, false, false, 1, CG_COUNT_MAX, NULL},
    [C_AT] = {"at", F_STR, false, true, 1, CG_RFC3339_TEXT_BYTES - 1, NULL},
    [C_AGENT] = {"agent", F_OBJ, false, true, 0, 0, agent_fields},
    [C_CAPTURE] = {"capture", F_BOOL, false, true, 0, 0, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

static void count_charge(req *r, const cg_charge *c) {
    for (int i = 0; i < c->item_count; i++)
        metrics_decision(&r->srv->metrics, c->items[i].model, c->items[i].benefit, c->items[i].unlimited);
    metrics_charge(&r->srv->metrics, c->item_count ? c->items[0].model : "", c->credits);
    if (c->credits > 0 && c->status == CG_CHARGE_HELD)
        atomic_fetch_add(&r->srv->metrics.holds_outstanding, 1);
}

static int charge_input(req *r, const body_fields *body, cg_charge_input *in, char *key_buf,
                        size_t key_bytes) {
    int status = 0;
    memset(in, 0, sizeof *in);
    in->member_id = bf_str(body, C_MEMBER_ID, -1);
    if (!id_valid(in->member_id)) return fail(r, 400, "invalid", "member_id", "member_id is not a valid id");
    snprintf(r->member_id, sizeof r->member_id, "%s", in->member_id);
    in->idempotency_key = idempotency_key(r, key_buf, key_bytes, &status);
    if (status) return status;
    in->model = bf_str(body, C_MODEL, -1);
    in->variant = bf_str(body, C_VARIANT, -1);
    in->count = bf_int(body, C_COUNT, -1, 1);
    const char *at = bf_str(body, C_AT, -1);
    if (at && (status = parse_instant(r, "at", at, &in->at_us))) return status;
    const body_value *capture = bf_value(body, C_CAPTURE, -1);
    in->capture = capture->present && !capture->null && capture->flag;
    if (bf_object(body, C_AGENT)) {
        in->agent_model = bf_str(body, C_AGENT, AGENT_MODEL);
        in->agent_kind = bf_str(body, C_AGENT, AGENT_KIND);
        in->prompt = bf_str(body, C_AGENT, AGENT_PROMPT);
    }
    if (!in->model && !in->agent_model)
        return fail(r, 400, "missing_field", "model", "model is required (unless agent.kind is video)");
    return 0;
}

int h_charge_create(req *r) {
    body_fields body;
    int status = body_fields_parse(r, charge_fields, &body);
    if (status) return status;
    char key_buf[CG_IDEMPOTENCY_KEY_BYTES_MAX];
    cg_charge_input in;
    if ((status = charge_input(r, &body, &in, key_buf, sizeof key_buf))) {
        body_fields_free(&body);
        return status;
    }
    cg_charge *out = calloc(1, sizeof *out);
    if (!out) {
        body_fields_free(&body);
        return fail(r, 503, "out_of_memory", "", "out of memory");
    }
    bool replayed = false;
    cg_err err;
    cg_err_clear(&err);
    cg_ledger *ledger = ledger_enter(r);
    int rc = CG_EUNAVAILABLE;
    if (ledger) {
        rc = cg_ledger_charge(ledger, &in, out, &replayed, &err);
        ledger_leave(r);
    } else {
        cg_err_set(&err, CG_EUNAVAILABLE, "this server runs without a ledger");
    }
    body_fields_free(&body); /* in points into it until here */
    if (rc == CG_EINSUFFICIENT) {
        r->status = 402;
        r->out = cg_ledger_error_to_json(&err, out);
        status = 402;
    } else if (rc) {
        status = fail_err(r, &err);
    } else {
        if (!replayed) count_charge(r, out);
        status = ledger_result(r, rc, &err, replayed, 201, cg_charge_to_json(out));
    }
    free(out);
    return status;
}

int h_charge_get(req *r) {
    const char *member_id = query_arg(r, "member_id");
    if (!member_id) return fail(r, 400, "missing_field", "member_id", "member_id query parameter is required");
    if (!id_valid(member_id)) return fail(r, 400, "invalid", "member_id", "member_id is not a valid id");
    snprintf(r->member_id, sizeof r->member_id, "%s", member_id);
    cg_charge *out = calloc(1, sizeof *out);
    if (!out) return fail(r, 503, "out_of_memory", "", "out of memory");
    cg_err err;
    cg_err_clear(&err);
    cg_ledger *ledger = ledger_enter(r);
    int rc = CG_EUNAVAILABLE;
    if (ledger) {
        rc = cg_ledger_charge_get(ledger, member_id, r->params[0], out, &err);
        ledger_leave(r);
    } else {
        cg_err_set(&err, CG_EUNAVAILABLE, "this server runs without a ledger");
    }
    int status = ledger_result(r, rc, &err, false, 200, rc ? NULL : cg_charge_to_json(out));
    free(out);
    return status;
}

typedef int (*settle_fn)(cg_ledger *, const cg_settle_input *, cg_charge *, bool *, cg_err *);

static const field_spec capture_fields[] = {
    {"member_id", F_STR, true, false, 1, CG_HTTP_ID_BYTES_MAX - 1, NULL},
    {"credits", F_INT, false, true, 0, CG_CREDITS_MAX, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};
static const field_spec release_fields[] = {
    {"member_id", F_STR, true, false, 1, CG_HTTP_ID_BYTES_MAX - 1, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};
static const field_spec refund_fields[] = {
    {"member_id", F_STR, true, false, 1, CG_HTTP_ID_BYTES_MAX - 1, NULL},
    {"credits", F_INT, false, true, 1, CG_CREDITS_MAX, NULL},
    {"reason", F_STR, true, false, 1, CG_GRANT_NOTE_BYTES_MAX - 1, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

static int settle(req *r, const field_spec *spec, settle_fn fn, bool closes_hold) {
    json_t *body = NULL;
    int status = body_parse(r, spec, &body);
    if (status) return status;
    char key_buf[CG_IDEMPOTENCY_KEY_BYTES_MAX];
    cg_settle_input in = {.member_id = jstr(body, "member_id"), .charge_id = r->params[0],
                          .credits = jint(body, "credits", -1), .reason = jstr(body, "reason")};
    if (!id_valid(in.member_id)) status = fail(r, 400, "invalid", "member_id", "member_id is not a valid id");
    if (!status) {
        snprintf(r->member_id, sizeof r->member_id, "%s", in.member_id);
        in.idempotency_key = idempotency_key(r, key_buf, sizeof key_buf, &status);
    }
    cg_charge *out = status ? NULL : calloc(1, sizeof *out);
    if (!status && !out) status = fail(r, 503, "out_of_memory", "", "out of memory");
    if (status) {
        json_decref(body);
        return status;
    }
    bool replayed = false;
    cg_err err;
    cg_err_clear(&err);
    cg_ledger *ledger = ledger_enter(r);
    int rc = CG_EUNAVAILABLE;
    if (ledger) {
        rc = fn(ledger, &in, out, &replayed, &err);
        ledger_leave(r);
    } else {
        cg_err_set(&err, CG_EUNAVAILABLE, "this server runs without a ledger");
    }
    json_decref(body);
    if (!rc && !replayed && closes_hold && out->credits > 0)
        atomic_fetch_sub(&r->srv->metrics.holds_outstanding, 1);
    status = ledger_result(r, rc, &err, replayed, 200, rc ? NULL : cg_charge_to_json(out));
    free(out);
    return status;
}

int h_charge_capture(req *r) { return settle(r, capture_fields, cg_ledger_capture, true); }
int h_charge_release(req *r) { return settle(r, release_fields, cg_ledger_release, true); }
int h_charge_refund(req *r) { return settle(r, refund_fields, cg_ledger_refund, false); }
