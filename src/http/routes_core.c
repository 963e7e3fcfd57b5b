/* routes_core.c — the handlers that need no ledger write: health, readiness, metrics, the
 * OpenAPI document, POST /v1/quote (the same document as `creditgate quote --json`) and member
 * tokens. Ledger-backed member and charge handlers are in routes_ledger.c. */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>

#include "creditgate/engine_json.h"
#include "creditgate/time.h"
#include "internal.h"

bool id_valid(const char *id) {
    size_t len = id ? strlen(id) : 0;
    if (len == 0 || len >= CG_HTTP_ID_BYTES_MAX) return false;
    for (const char *p = id; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
        if (!ok) return false;
    }
    return true;
}

int parse_instant(req *r, const char *field, const char *text, int64_t *at_us) {
    cg_err err;
    int rc = cg_time_parse(text, r->snap->utc_offset_s, at_us, &err);
    if (rc) return fail(r, 400, "invalid", field, "%s: %s", field, err.msg);
    return 0;
}

int h_healthz(req *r) {
    json_t *body = json_pack("{s:s}", "status", "ok");
    return reply(r, 200, body);
}

/* Whether the ledger's storage answers now: a read through the ledger (an unknown member is an
 * answer) fails with CG_EUNAVAILABLE while PostgreSQL is down or unreachable (src/store/pg.c
 * bounds the wait), so /readyz takes the instance out of rotation until the store is back. */
static bool ledger_answers(req *r) {
    cg_ledger *ledger = ledger_enter(r);
    if (!ledger) return false;
    cg_member_state member;
    cg_err err;
    cg_err_clear(&err);
    int rc = cg_ledger_member_get(ledger, "readyz-probe", 0, &member, &err);
    ledger_leave(r);
    return rc == CG_OK || rc == CG_ENOTFOUND;
}

int h_readyz(req *r) {
    bool draining = atomic_load(&r->srv->draining);
    bool ledger_ok = !r->srv->config.db_path[0] ||
                     (r->srv->ledger && !atomic_load(&r->srv->ledger_failed) && !draining &&
                      ledger_answers(r));
    char label[CG_POLICY_VERSIONS_MAX * 8];
    cg_http_server_policy_label(r->srv, label, sizeof label);
    json_t *body = json_pack("{s:s,s:s,s:b}", "status", draining || !ledger_ok ? "unavailable" : "ready",
                             "policy", label, "ledger", ledger_ok);
    return reply(r, draining || !ledger_ok ? 503 : 200, body);
}

int h_metrics(req *r) {
    int count = 0;
    const char *const *names = route_pattern_names(&count);
    char label[CG_POLICY_VERSIONS_MAX * 8];
    cg_http_server_policy_label(r->srv, label, sizeof label);
    cg_ledger_stats stats;
    cg_ledger *ledger = ledger_enter(r);
    if (ledger) {
        cg_ledger_stats_get(ledger, &stats);
        ledger_leave(r);
    }
    char *text = metrics_render(&r->srv->metrics, names, count, label, ledger ? &stats : NULL);
    if (!text) return fail(r, 503, "out_of_memory", "", "cannot render metrics");
    r->out_text_owned = text;
    r->out_text_bytes = strlen(text);
    r->content_type = "text/plain; version=0.0.4";
    r->status = 200;
    return 200;
}

int h_openapi(req *r) {
    if (!r->srv->openapi_text)
        return fail(r, 404, "not_found", "", "OpenAPI document not installed (%s)",
                    r->srv->config.openapi_path);
    r->out_text = r->srv->openapi_text;
    r->out_text_bytes = r->srv->openapi_bytes;
    r->content_type = "application/yaml";
    r->status = 200;
    return 200;
}

/* ---- POST /v1/quote ---------------------------------------------------------------------- */

/* Indices into the field tables, so the handler reads the flat table (body_fields) by name. */
enum { M_PLAN, M_BILLING, M_JOINED };
enum { Q_MEMBER, Q_MEMBER_ID, Q_MODEL, Q_VARIANT, Q_COUNT, Q_AT, Q_AGENT, Q_LANG };

static const field_spec member_fields[] = {
    [M_PLAN] = {"plan", F_STR, true, false, 1, CG_ID_BYTES_MAX - 1, NULL},
    [M_BILLING] = {"billing", F_STR, true, false, 1, CG_ID_BYTES_MAX - 1, NULL},
    [M_JOINED] = {"joined", F_STR, true, false, 1, CG_RFC3339_TEXT_BYTES - 1, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

const field_spec agent_fields[] = {
    [AGENT_MODEL] = {"model", F_STR, true, false, 1, CG_ID_BYTES_MAX - 1, NULL},
    [AGENT_KIND] = {"kind", F_STR, true, false, 1, 16, NULL},
    [AGENT_PROMPT] = {"prompt", F_STR, false, true, 0, CG_PROMPT_BYTES_MAX - 1, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

static const field_spec quote_fields[] = {
    [Q_MEMBER] = {"member", F_OBJ, false, false, 0, 0, member_fields},
    [Q_MEMBER_ID] = {"member_id", F_STR, false, false, 1, CG_HTTP_ID_BYTES_MAX - 1, NULL},
    [Q_MODEL] = {"model", F_STR, false, true, 1, CG_NAME_BYTES_MAX - 1, NULL},
    [Q_VARIANT] = {"variant", F_STR, false, true, 1, CG_ID_BYTES_MAX - 1, NULL},
    [Q_COUNT] = {"count", F_INT, false, false, 1, CG_COUNT_MAX, NULL},
    [Q_AT] = {"at", F_STR, false, true, 1, CG_RFC3339_TEXT_BYTES - 1, NULL},
    [Q_AGENT] = {"agent", F_OBJ, false, true, 0, 0, agent_fields},
    [Q_LANG] = {"lang", F_STR, false, true, 1, 8, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

static int lang_of(req *r, const char *text, cg_lang *lang) {
    cg_err err;
    if (cg_lang_parse(text, lang, &err)) return fail(r, 400, "invalid", "lang", "lang: %s", err.msg);
    return 0;
}

/* Fills plan/billing/joined from the stored member (at the instant of use). */
static int member_from_ledger(req *r, const char *member_id, int64_t at_us, cg_member_state *ms,
                              cg_quote_input *in) {
    cg_ledger *ledger = ledger_enter(r);
    if (!ledger) return fail(r, 503, "unavailable", "member_id", "this server runs without a ledger");
    cg_err err;
    cg_err_clear(&err);
    int rc = cg_ledger_member_get(ledger, member_id, at_us, ms, &err);
    ledger_leave(r);
    if (rc == CG_ENOTFOUND)
        return fail(r, 404, "not_found", "member_id", "no member '%s' at that instant",
                    member_id);
    if (rc) return fail_err(r, &err);
    in->plan = ms->plan;
    in->billing = ms->billing;
    in->joined = NULL;
    in->joined_at_us = ms->joined_at_us;
    return 0;
}

static int quote_input(req *r, const body_fields *body, cg_quote_input *in, cg_member_state *ms) {
    bool member = bf_object(body, Q_MEMBER);
    const char *member_id = bf_str(body, Q_MEMBER_ID, -1);
    if (member == !!member_id)
        return fail(r, 400, "invalid", "member", "give exactly one of member or member_id");
    if (r->who.role == ROLE_MEMBER && (!member_id || strcmp(member_id, r->who.member_id)))
        return fail(r, 403, "forbidden", "member_id", "a member token quotes only its own member");
    memset(in, 0, sizeof *in);
    in->model = bf_str(body, Q_MODEL, -1);
    in->variant = bf_str(body, Q_VARIANT, -1);
    in->count = bf_int(body, Q_COUNT, -1, 1);
    in->at_us = cg_time_now_us();
    const char *at = bf_str(body, Q_AT, -1);
    int status;
    if (at && (status = parse_instant(r, "at", at, &in->at_us))) return status;
    if (bf_object(body, Q_AGENT)) {
        in->agent_model = bf_str(body, Q_AGENT, AGENT_MODEL);
        in->agent_kind = bf_str(body, Q_AGENT, AGENT_KIND);
        in->prompt = bf_str(body, Q_AGENT, AGENT_PROMPT);
    }
    if (!in->model && !in->agent_model)
        return fail(r, 400, "missing_field", "model", "model is required (unless agent.kind is video)");
    if (member_id) {
        snprintf(r->member_id, sizeof r->member_id, "%s", member_id);
        return member_from_ledger(r, member_id, in->at_us, ms, in);
    }
    in->plan = bf_str(body, Q_MEMBER, M_PLAN);
    in->billing = bf_str(body, Q_MEMBER, M_BILLING);
    in->joined = bf_str(body, Q_MEMBER, M_JOINED);
    return 0;
}

void count_decision(req *r, const cg_decision *d);
void count_decision(req *r, const cg_decision *d) {
    for (int i = 0; i < d->item_count; i++) {
        const cg_item *it = &d->items[i];
        const cg_policy *p = d->policy;
        metrics_decision(&r->srv->metrics, p->models[it->model].id,
                         it->benefit >= 0 ? p->benefits[it->benefit].id : "", it->unlimited);
    }
}

/* The quote answer is written straight into the response buffer (cg_decision_write_json):
 * on this hot path a jansson tree and its dump cost more than the decision itself. The
 * buffer is the connection's (conn_reply_buffer), sent as it is; a fresh one only when the
 * connection has none. */
static int reply_decision(req *r, const cg_decision *d, cg_lang lang) {
    char *text = conn_reply_buffer(r->cs);
    bool owned = text == NULL;
    if (owned) text = malloc(CG_DECISION_JSON_BYTES_MAX);
    size_t bytes = text ? cg_decision_write_json(d, lang, text, CG_DECISION_JSON_BYTES_MAX) : 0;
    if (bytes == 0) {
        if (owned) free(text);
        return reply(r, 200, cg_decision_to_json(d, lang));
    }
    if (owned) r->out_text_owned = text;
    else r->out_text = text;
    r->out_text_bytes = bytes;
    r->content_type = "application/json";
    r->status = 200;
    return 200;
}

int h_quote(req *r) {
    body_fields body;
    int status = body_fields_parse(r, quote_fields, &body);
    if (status) return status;
    cg_lang lang;
    cg_quote_input in;
    cg_member_state ms;
    status = lang_of(r, bf_str(&body, Q_LANG, -1), &lang);
    if (!status) status = quote_input(r, &body, &in, &ms);
    if (!status) {
        snapshot *snap = r->snap;
        cg_decision d;
        cg_err err;
        cg_err_clear(&err);
        if (cg_engine_quote(&snap->engine, &in, &d, &err)) {
            status = fail_err(r, &err);
        } else {
            count_decision(r, &d);
            status = reply_decision(r, &d, lang);
        }
    }
    body_fields_free(&body);
    return status;
}

/* The start of GET /v1/members/{id}/benefits and /prices: ?lang= and ?at= (default now), and
 * the member's state then, also as the member fields of *in (zeroed first). */
static int member_view_begin(req *r, cg_lang *lang, int64_t *at_us, cg_member_state *ms,
                             cg_quote_input *in) {
    snprintf(r->member_id, sizeof r->member_id, "%s", r->params[0]);
    int status = lang_of(r, query_arg(r, "lang"), lang);
    if (status) return status;
    *at_us = cg_time_now_us();
    const char *at = query_arg(r, "at");
    if (at && (status = parse_instant(r, "at", at, at_us))) return status;
    memset(in, 0, sizeof *in);
    return member_from_ledger(r, r->params[0], *at_us, ms, in);
}

/* ---- GET /v1/members/{id}/benefits ------------------------------------------------------- */

int h_member_benefits(req *r) {
    const char *id = r->params[0];
    cg_lang lang;
    int64_t at_us;
    cg_quote_input in;
    cg_member_state ms;
    int status = member_view_begin(r, &lang, &at_us, &ms, &in);
    if (status) return status;
    snapshot *snap = r->snap;
    cg_active_benefit list[CG_BENEFITS_LIST_MAX];
    int count = 0;
    const cg_policy *policy = NULL;
    cg_member member;
    cg_err err;
    cg_err_clear(&err);
    if (cg_engine_active_benefits(&snap->engine, ms.plan, ms.billing, NULL, ms.joined_at_us, at_us,
                                  &policy, &member, list, CG_BENEFITS_LIST_MAX, &count, &err)) {
        status = fail_err(r, &err);
    } else {
        json_t *out = cg_active_benefits_to_json(policy, list, count, lang);
        json_object_set_new(out, "member_id", json_string(id));
        json_object_set_new(out, "policy", json_string(policy->version));
        status = reply(r, 200, out);
    }
    return status;
}

/* ---- GET /v1/members/{id}/prices --------------------------------------------------------- */

/* Every image and video model and variant of the policy in force at `at` (default now),
 * decided for this member exactly as POST /v1/quote decides it: the My Credits page's price
 * list in one call instead of one quote per model. Not counted as decisions in /metrics. */
int h_member_prices(req *r) {
    const char *id = r->params[0];
    cg_lang lang;
    int64_t at_us;
    cg_quote_input base;
    cg_member_state ms;
    int status = member_view_begin(r, &lang, &at_us, &ms, &base);
    if (status) return status;
    base.at_us = at_us;
    base.count = 1;
    const cg_engine *engine = &r->snap->engine;
    int v = cg_engine_version_index(engine, at_us);
    const cg_policy *p = engine->versions[v < 0 ? 0 : v].policy;
    json_t *prices = json_array();
    for (int i = 0; i < p->model_count; i++) {
        const cg_model *m = &p->models[i];
        if (m->kind == CG_KIND_CONVERSATION) continue;
        for (int k = 0; k < (m->variant_count ? m->variant_count : 1); k++) {
            cg_quote_input in = base;
            in.model = m->id;
            in.variant = m->variant_count ? m->variants[k].id : NULL;
            cg_decision d;
            cg_err err;
            cg_err_clear(&err);
            if (cg_engine_quote(engine, &in, &d, &err)) {
                json_decref(prices);
                return fail_err(r, &err);
            }
            json_t *doc = cg_decision_to_json(&d, lang);
            json_t *item = json_array_get(json_object_get(doc, "items"), 0);
            json_array_append_new(prices, json_pack("{s:s,s:o,s:O}", "model", m->id, "variant",
                                                    in.variant ? json_string(in.variant)
                                                               : json_null(),
                                                    "item", item ? item : json_null()));
            json_decref(doc);
        }
    }
    return reply(r, 200, json_pack("{s:s,s:s,s:o}", "member_id", id, "policy", p->version,
                                   "prices", prices));
}

/* ---- POST /v1/members/{id}/tokens -------------------------------------------------------- */

static const field_spec token_fields[] = {
    {"ttl_s", F_INT, false, false, 10, 86400, NULL},
    {NULL, 0, false, false, 0, 0, NULL},
};

int h_member_token(req *r) {
    json_t *body = NULL;
    int status = body_parse(r, token_fields, &body);
    if (status) return status;
    const char *id = r->params[0];
    snprintf(r->member_id, sizeof r->member_id, "%s", id);
    int64_t ttl_s = jint(body, "ttl_s", r->srv->config.token_ttl_s);
    if (ttl_s > r->srv->config.token_ttl_s) ttl_s = r->srv->config.token_ttl_s;
    json_decref(body);
    cg_quote_input unused;
    cg_member_state ms;
    if (r->srv->config.db_path[0] && (status = member_from_ledger(r, id, 0, &ms, &unused)))
        return status; /* no token for a member that does not exist */
    int64_t expires_at_us = cg_time_now_us() + ttl_s * CG_US_PER_S;
    char token[CG_HTTP_TOKEN_BYTES_MAX];
    if (token_mint(&r->snap->keys, id, expires_at_us, token, sizeof token))
        return fail(r, 500, "internal", "", "token too long");
    char at[CG_RFC3339_TEXT_BYTES];
    cg_time_format(expires_at_us, 0, at, sizeof at);
    json_t *out = json_pack("{s:s,s:s,s:s,s:I}", "token", token, "member_id", id, "expires_at", at,
                            "expires_at_us", (json_int_t)expires_at_us);
    sodium_memzero(token, sizeof token);
    return reply(r, 201, out);
}
