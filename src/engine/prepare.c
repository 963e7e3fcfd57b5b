/* prepare.c — turning a text request into a cg_request: choosing the policy version in force,
 * resolving plan/billing/model/variant names, parsing the joined date, routing Agent 2.0.
 *
 * Everything that can fail on input happens here, with err.field naming the input at fault,
 * so that cg_engine_decide never fails. Name lookups are whole-name matches after
 * normalization: "Nanobanana 2" can never become "Nanobanana". */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "creditgate/engine.h"
#include "engine_internal.h"

#define SUGGEST_DISTANCE_MIN 2

static void list_ids(char *buf, size_t buf_bytes, const char *ids, size_t stride, int count) {
    buf[0] = '\0';
    for (int i = 0; i < count; i++)
        snprintf(buf + strlen(buf), buf_bytes - strlen(buf), "%s%s", i ? ", " : "", ids + stride * (size_t)i);
}

int cg_engine_resolve_member(const cg_policy *p, const char *plan, const char *billing,
                             const char *joined, int64_t joined_at_us, cg_member *out,
                             cg_err *err) {
    char known[256];
    if (!plan) return cg_err_set_field(err, CG_EINVAL, "plan", "plan is required");
    out->plan = cg_policy_plan_find(p, plan);
    if (out->plan < 0) {
        list_ids(known, sizeof known, p->plans[0].id, sizeof p->plans[0], p->plan_count);
        return cg_err_set_field(err, CG_EINVAL, "plan", "unknown plan '%s' (plans: %s)", plan, known);
    }
    if (!billing) return cg_err_set_field(err, CG_EINVAL, "billing", "billing is required");
    out->billing = cg_policy_billing_find(p, billing);
    if (out->billing < 0) {
        list_ids(known, sizeof known, p->billings[0], sizeof p->billings[0], p->billing_count);
        return cg_err_set_field(err, CG_EINVAL, "billing", "unknown billing '%s' (billing: %s)", billing, known);
    }
    if (joined) {
        cg_err e;
        if (cg_date_parse_or_instant(joined, p->utc_offset_s, &out->joined, &e))
            return cg_err_set_field(err, CG_EINVAL, "joined", "joined: %s", e.msg);
    } else {
        out->joined = cg_time_to_date(joined_at_us, p->utc_offset_s);
    }
    return CG_OK;
}

/* Levenshtein distance of two short strings (both < CG_NAME_BYTES_MAX), two rows, no recursion. */
static int edit_distance(const char *a, const char *b) {
    int row0[CG_NAME_BYTES_MAX + 1], row1[CG_NAME_BYTES_MAX + 1];
    int la = (int)strlen(a), lb = (int)strlen(b);
    assert(la < CG_NAME_BYTES_MAX && lb < CG_NAME_BYTES_MAX);
    int *prev = row0, *cur = row1;
    for (int j = 0; j <= lb; j++) prev[j] = j;
    for (int i = 1; i <= la; i++) {
        cur[0] = i;
        for (int j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        int *t = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* Fills err's suggestions with up to three models whose names are closest to norm. */
static void suggest_models(const cg_policy *p, const char *norm, cg_err *err) {
    int best[CG_MODELS_MAX];
    for (int m = 0; m < p->model_count; m++) best[m] = 1 << 20;
    for (int i = 0; i < p->name_count; i++) {
        int d = edit_distance(norm, p->names[i].norm);
        if (strstr(p->names[i].norm, norm) || strstr(norm, p->names[i].norm)) d = d < 2 ? d : 2;
        if (d < best[p->names[i].model]) best[p->names[i].model] = d;
    }
    int limit = (int)strlen(norm) / 3;
    if (limit < SUGGEST_DISTANCE_MIN) limit = SUGGEST_DISTANCE_MIN;
    for (int round = 0; round < CG_ERR_SUGGESTIONS_MAX; round++) {
        int pick = -1;
        for (int m = 0; m < p->model_count; m++)
            if (best[m] <= limit && (pick < 0 || best[m] < best[pick])) pick = m;
        if (pick < 0) break;
        cg_err_add_suggestion(err, p->models[pick].name);
        best[pick] = 1 << 20;
    }
}

static int find_norm(const cg_policy *p, const char *norm) {
    for (int i = 0; i < p->name_count; i++)
        if (!strcmp(p->names[i].norm, norm)) return p->names[i].model;
    return -1;
}

int cg_engine_resolve_model(const cg_policy *p, const char *name, int *model, int *variant,
                            cg_err *err) {
    char norm[CG_NAME_BYTES_MAX];
    *variant = -1;
    if (!name || !name[0]) return cg_err_set_field(err, CG_EINVAL, "model", "model is required");
    if (!cg_name_normalize(name, norm, sizeof norm))
        return cg_err_set_field(err, CG_EINVAL, "model", "model name is longer than %d bytes",
                                CG_NAME_BYTES_MAX - 1);
    *model = find_norm(p, norm);
    if (*model >= 0) return CG_OK;
    /* "Nanobanana Pro 4K": a model name followed by one of its variants. */
    size_t len = strlen(norm);
    for (int m = 0; m < p->model_count; m++) {
        for (int v = 0; v < p->models[m].variant_count; v++) {
            char vnorm[CG_NAME_BYTES_MAX];
            cg_name_normalize(p->models[m].variants[v].id, vnorm, sizeof vnorm);
            size_t vl = strlen(vnorm);
            if (vl == 0 || vl >= len || strcmp(norm + len - vl, vnorm)) continue;
            char prefix[CG_NAME_BYTES_MAX];
            memcpy(prefix, norm, len - vl);
            prefix[len - vl] = '\0';
            if (find_norm(p, prefix) == m) {
                *model = m;
                *variant = v;
                return CG_OK;
            }
        }
    }
    cg_err_set_field(err, CG_ENOTFOUND, "model", "unknown model '%s'", name);
    suggest_models(p, norm, err);
    if (err && err->suggestion_count) {
        char list[256] = "";
        for (int i = 0; i < err->suggestion_count; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", err->suggestions[i]);
        snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg), " (did you mean: %s?)", list);
    }
    return CG_ENOTFOUND;
}

static bool is_word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Lower-cases ASCII and collapses whitespace runs to one space. */
static void prompt_fold(const char *prompt, char *out, size_t out_bytes) {
    size_t n = 0;
    bool space = false;
    for (const unsigned char *c = (const unsigned char *)prompt; *c && n + 1 < out_bytes; c++) {
        if (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\r') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < out_bytes) out[n++] = ' ';
        space = false;
        out[n++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    }
    out[n] = '\0';
}

/* An ASCII phrase must stand as whole words ("ltx" not inside "saltx"); Korean phrases match
 * anywhere, since particles attach to them ("캐럿 비디오로"). */
static bool prompt_has_phrase(const char *folded, const char *phrase) {
    size_t pl = strlen(phrase);
    for (const char *at = strstr(folded, phrase); at; at = strstr(at + 1, phrase)) {
        unsigned char before = at > folded ? (unsigned char)at[-1] : ' ';
        unsigned char after = (unsigned char)at[pl];
        bool ascii_start = (unsigned char)phrase[0] < 0x80, ascii_end = (unsigned char)phrase[pl - 1] < 0x80;
        if ((!ascii_start || !is_word_byte(before)) && (!ascii_end || !is_word_byte(after))) return true;
    }
    return false;
}

/* Agent 2.0 with no model named: "Agent 2.0 uses Seedance 2.0 as its default video model ...
 * explicitly request 'Use Carat Basic Video (LTX 2.3)'". */
static int agent_route(const cg_policy *p, const char *kind_text, const char *prompt, int *model,
                       cg_agent_choice *choice, cg_err *err) {
    bool video = !strcmp(kind_text, "video");
    if (prompt && video) {
        static __thread char folded[CG_PROMPT_BYTES_MAX];
        prompt_fold(prompt, folded, sizeof folded);
        for (int r = 0; r < p->agent_route_count; r++)
            for (int i = 0; i < p->agent_routes[r].phrase_count; i++)
                if (prompt_has_phrase(folded, p->agent_routes[r].phrases[i])) {
                    *model = p->agent_routes[r].model;
                    *choice = CG_AGENT_PROMPT;
                    return CG_OK;
                }
    }
    *model = video ? p->agent_default_video_model : p->agent_default_image_model;
    if (*model < 0)
        return cg_err_set_field(err, CG_EINVAL, "model", "model is required: the policy has no default %s model for the agent",
                                kind_text);
    *choice = CG_AGENT_DEFAULT;
    return CG_OK;
}

static int resolve_variant(const cg_policy *p, const cg_quote_input *in, cg_request *out, cg_err *err) {
    const cg_model *m = &p->models[out->model];
    if (in->variant && in->variant[0]) {
        if (m->variant_count == 0)
            return cg_err_set_field(err, CG_EINVAL, "variant", "model '%s' has no variants", m->id);
        int v = cg_policy_variant_find(m, in->variant);
        if (v < 0) { /* the list only for the error: quotes with a valid variant skip it */
            char known[128];
            list_ids(known, sizeof known, m->variants[0].id, sizeof m->variants[0], m->variant_count);
            return cg_err_set_field(err, CG_EINVAL, "variant", "model '%s' has no variant '%s' (variants: %s)",
                                    m->id, in->variant, known);
        }
        if (out->variant >= 0 && out->variant != v)
            return cg_err_set_field(err, CG_EINVAL, "variant", "model name says '%s' but variant says '%s'",
                                    m->variants[out->variant].id, in->variant);
        out->variant = v;
    }
    if (m->variant_count > 0 && out->variant < 0) {
        char known[128];
        list_ids(known, sizeof known, m->variants[0].id, sizeof m->variants[0], m->variant_count);
        return cg_err_set_field(err, CG_EINVAL, "variant", "model '%s' needs a variant (%s)", m->id, known);
    }
    return CG_OK;
}

static int resolve_agent(const cg_policy *p, const cg_quote_input *in, cg_request *out, cg_err *err) {
    out->agent_model = -1;
    out->agent_choice = CG_AGENT_NONE;
    if (!in->agent_model) {
        if (in->agent_kind || in->prompt)
            return cg_err_set_field(err, CG_EINVAL, "agent.model", "kind and prompt apply only with an agent model");
        return CG_OK;
    }
    out->agent_model = cg_policy_agent_model_find(p, in->agent_model);
    if (out->agent_model < 0) {
        char known[128];
        list_ids(known, sizeof known, p->agent_models[0].id, sizeof p->agent_models[0], p->agent_model_count);
        return cg_err_set_field(err, CG_EINVAL, "agent.model", "unknown agent model '%s' (agent models: %s)",
                                in->agent_model, p->agent_model_count ? known : "none in this policy");
    }
    if (!in->agent_kind || (strcmp(in->agent_kind, "image") && strcmp(in->agent_kind, "video")))
        return cg_err_set_field(err, CG_EINVAL, "agent.kind", "agent kind must be image or video, got '%s'",
                                in->agent_kind ? in->agent_kind : "nothing");
    if (in->prompt && strlen(in->prompt) >= CG_PROMPT_BYTES_MAX)
        return cg_err_set_field(err, CG_ELIMIT, "agent.prompt", "prompt is longer than %d bytes", CG_PROMPT_BYTES_MAX - 1);
    return CG_OK;
}

int cg_engine_prepare(const cg_engine *engine, const cg_quote_input *in, cg_request *out, cg_err *err) {
    memset(out, 0, sizeof *out);
    out->version = cg_engine_version_index(engine, in->at_us);
    if (out->version < 0) {
        char first[CG_RFC3339_TEXT_BYTES];
        const cg_policy *p0 = engine->versions[0].policy;
        cg_time_format(p0->effective_at_us, p0->utc_offset_s, first, sizeof first);
        return cg_err_set_field(err, CG_EINVAL, "at", "no policy version is in force at that instant (the first takes effect %s)", first);
    }
    const cg_policy *p = engine->versions[out->version].policy;
    out->policy = p;
    out->at_us = in->at_us;
    int rc = cg_engine_resolve_member(p, in->plan, in->billing, in->joined, in->joined_at_us, &out->member, err);
    if (rc) return rc;
    out->count = in->count == 0 ? 1 : in->count;
    if (out->count < 1 || out->count > CG_COUNT_MAX)
        return cg_err_set_field(err, CG_EINVAL, "count", "count must be between 1 and %d, got %lld", CG_COUNT_MAX,
                                (long long)in->count);
    rc = resolve_agent(p, in, out, err);
    if (rc) return rc;
    out->variant = -1;
    if (in->model && in->model[0]) {
        rc = cg_engine_resolve_model(p, in->model, &out->model, &out->variant, err);
    } else if (out->agent_model >= 0) {
        rc = agent_route(p, in->agent_kind, in->prompt, &out->model, &out->agent_choice, err);
    } else {
        rc = cg_err_set_field(err, CG_EINVAL, "model", "model is required (it may be omitted only for an agent video)");
    }
    if (rc) return rc;
    const cg_model *m = &p->models[out->model];
    if (m->kind == CG_KIND_CONVERSATION)
        return cg_err_set_field(err, CG_EINVAL, "model", "'%s' is an agent conversation model; give it as the agent model", m->id);
    if (out->agent_model >= 0 && strcmp(cg_model_kind_name(m->kind), in->agent_kind))
        return cg_err_set_field(err, CG_EINVAL, "agent.kind", "model '%s' is a %s model, not %s", m->id,
                                cg_model_kind_name(m->kind), in->agent_kind);
    return resolve_variant(p, in, out, err);
}

int cg_lang_parse(const char *text, cg_lang *out, cg_err *err) {
    if (!text || !strcmp(text, "en")) *out = CG_LANG_EN;
    else if (!strcmp(text, "ko")) *out = CG_LANG_KO;
    else return cg_err_set_field(err, CG_EINVAL, "lang", "lang must be en or ko, got '%s'", text);
    return CG_OK;
}
