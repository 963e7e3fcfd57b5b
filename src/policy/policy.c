/* policy.c — lookups over a loaded policy, whole-policy validation and policy version sets.
 * Parsing lives in parse.c; deciding lives in src/engine/. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "creditgate/policy.h"
#include "policy_internal.h"

int cg_policy_plan_find(const cg_policy *policy, const char *id) {
    for (int i = 0; i < policy->plan_count; i++)
        if (!strcmp(policy->plans[i].id, id)) return i;
    return -1;
}

int cg_policy_billing_find(const cg_policy *policy, const char *id) {
    for (int i = 0; i < policy->billing_count; i++)
        if (!strcmp(policy->billings[i], id)) return i;
    return -1;
}

int cg_policy_model_find_id(const cg_policy *policy, const char *id) {
    for (int i = 0; i < policy->model_count; i++)
        if (!strcmp(policy->models[i].id, id)) return i;
    return -1;
}

int cg_policy_variant_find(const cg_model *model, const char *id) {
    for (int i = 0; i < model->variant_count; i++)
        if (!strcasecmp(model->variants[i].id, id)) return i;
    return -1;
}

int cg_policy_agent_model_find(const cg_policy *policy, const char *id) {
    for (int i = 0; i < policy->agent_model_count; i++)
        if (!strcmp(policy->agent_models[i].id, id)) return i;
    return -1;
}

const char *cg_model_kind_name(cg_model_kind kind) {
    switch (kind) {
    case CG_KIND_IMAGE: return "image";
    case CG_KIND_VIDEO: return "video";
    case CG_KIND_CONVERSATION: return "conversation";
    }
    return "?";
}

bool cg_name_normalize(const char *text, char *out, size_t out_bytes) {
    assert(out_bytes > 0);
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == ' ' || *c == '-' || *c == '_' || *c == '(' || *c == ')' || *c == '\t') continue;
        if (n + 1 >= out_bytes) {
            out[0] = '\0';
            return false;
        }
        out[n++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    }
    out[n] = '\0';
    return true;
}

void cg_policy_free(cg_policy *policy) { free(policy); }

/* ---- validation ---- */

/* Every plan that inherits (directly or through a chain) from a plan in mask joins it:
 * "Max receives the same unlimited benefits as Premium". */
static uint32_t inherit_mask(const cg_policy *p, uint32_t named) {
    uint32_t mask = named;
    for (int i = 0; i < p->plan_count; i++) {
        int at = p->plans[i].inherits;
        for (int steps = 0; at >= 0 && steps < p->plan_count; steps++) {
            if (named & (1u << at)) mask |= 1u << i;
            at = p->plans[at].inherits;
        }
    }
    return mask;
}

/* Adds a normalized name; *clash is the other model already using it, or -1. */
static bool add_name(cg_policy *p, const char *name, int model, int *clash) {
    char norm[CG_NAME_BYTES_MAX];
    *clash = -1;
    if (!cg_name_normalize(name, norm, sizeof norm) || !norm[0]) return false;
    for (int i = 0; i < p->name_count; i++) {
        if (strcmp(p->names[i].norm, norm)) continue;
        if (p->names[i].model != model) *clash = p->names[i].model;
        return true; /* the same model may spell itself twice ("seedance-2.0", "Seedance 2.0") */
    }
    assert(p->name_count < CG_NAMES_MAX);
    snprintf(p->names[p->name_count].norm, CG_NAME_BYTES_MAX, "%s", norm);
    p->names[p->name_count++].model = model;
    return true;
}

/* "Nanobanana 2" must never resolve to "Nanobanana": names are matched whole after
 * normalization, so the only way to confuse two models is two equal names — refused here. */
static int build_names(cg_policy *p, const yaml_ctx *y) {
    for (int m = 0; m < p->model_count; m++) {
        const cg_model *model = &p->models[m];
        const char *names[CG_ALIASES_MAX + 2] = {model->id, model->name};
        int count = 2;
        for (int a = 0; a < model->alias_count; a++) names[count++] = model->aliases[a];
        for (int i = 0; i < count; i++) {
            int clash;
            if (!add_name(p, names[i], m, &clash))
                return cg_err_set(y->err, CG_EPARSE, "%s:%d:%d: model '%s' has an empty name '%s'",
                                  y->name, model->line, model->col, model->id, names[i]);
            if (clash >= 0)
                return cg_err_set(y->err, CG_EPARSE,
                                  "%s:%d:%d: name '%s' of model '%s' is already a name of model '%s'",
                                  y->name, model->line, model->col, names[i], model->id,
                                  p->models[clash].id);
        }
    }
    return CG_OK;
}

static bool windows_overlap(cg_window a, cg_window b) { return a.from <= b.to && b.from <= a.to; }

/* Two benefits that make the same model/variant free for the same plan, billing and joined
 * days are a duplicate: one of them is dead text, or a typo the operator should see. */
static int check_overlap(const cg_policy *p, const yaml_ctx *y, int i, int j) {
    const cg_benefit *a = &p->benefits[i], *b = &p->benefits[j];
    if (!(a->plan_mask_named & b->plan_mask_named) || !(a->billing_mask & b->billing_mask) ||
        !windows_overlap(a->joined, b->joined))
        return CG_OK;
    for (int ca = 0; ca < a->cover_count; ca++)
        for (int cb = 0; cb < b->cover_count; cb++)
            if (a->covers[ca].model == b->covers[cb].model &&
                (a->covers[ca].variant_mask & b->covers[cb].variant_mask))
                return cg_err_set(y->err, CG_EPARSE,
                                  "%s:%d:%d: benefit '%s' overlaps benefit '%s' (line %d): both make "
                                  "'%s' free for the same plan, billing and joined dates",
                                  y->name, b->line, b->col, b->id, a->id, a->line,
                                  p->models[a->covers[ca].model].id);
    return CG_OK;
}

int cg_policy_validate(cg_policy *p, const yaml_ctx *y) {
    for (int b = 0; b < p->benefit_count; b++) {
        cg_benefit *benefit = &p->benefits[b];
        benefit->plan_mask = inherit_mask(p, benefit->plan_mask_named);
        for (int other = 0; other < b; other++) {
            int rc = check_overlap(p, y, other, b);
            if (rc) return rc;
        }
    }
    return build_names(p, y);
}

/* ---- version sets ---- */

void cg_policy_set_init(cg_policy_set *set) { memset(set, 0, sizeof *set); }

int cg_policy_set_add_take(cg_policy_set *set, cg_policy *policy, cg_err *err) {
    assert(policy);
    int rc = CG_OK;
    if (set->count >= CG_POLICY_VERSIONS_MAX)
        rc = cg_err_set(err, CG_ELIMIT, "at most %d policy versions can be loaded", CG_POLICY_VERSIONS_MAX);
    for (int i = 0; !rc && i < set->count; i++) {
        if (!strcmp(set->versions[i]->version, policy->version))
            rc = cg_err_set(err, CG_EINVAL, "%s: policy version '%s' is already loaded from %s",
                            policy->source_path, policy->version, set->versions[i]->source_path);
        else if (set->versions[i]->effective_at_us == policy->effective_at_us)
            rc = cg_err_set(err, CG_EINVAL, "%s: version '%s' takes effect at the same instant as '%s'",
                            policy->source_path, policy->version, set->versions[i]->version);
    }
    if (rc) {
        cg_policy_free(policy);
        return rc;
    }
    int at = set->count++;
    while (at > 0 && set->versions[at - 1]->effective_at_us > policy->effective_at_us) {
        set->versions[at] = set->versions[at - 1];
        at--;
    }
    set->versions[at] = policy;
    return CG_OK;
}

const cg_policy *cg_policy_set_at(const cg_policy_set *set, int64_t at_us) {
    for (int i = set->count - 1; i >= 0; i--)
        if (set->versions[i]->effective_at_us <= at_us) return set->versions[i];
    return NULL;
}

void cg_policy_set_free(cg_policy_set *set) {
    if (!set) return;
    for (int i = 0; i < set->count; i++) cg_policy_free(set->versions[i]);
    set->count = 0;
}
