/* engine.c — compiling policy versions into rule lists, and the decision path itself.
 *
 * cg_engine_decide is the hot path: it reads the prepared request's indices, walks the
 * (model, variant) rule list — at most CG_RULES_PER_TARGET_MAX benefits — and fills the
 * caller's cg_decision. No allocation, no strings, no I/O; text is rendered later by
 * explain.c. Names and dates are resolved before, in prepare.c. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "creditgate/engine.h"
#include "engine_internal.h"

static int rule_slot(int model, int variant) {
    return model * CG_VARIANTS_MAX + (variant < 0 ? 0 : variant);
}

static int compile_version(cg_engine_version *ev, const cg_policy *p, cg_err *err) {
    memset(ev, 0, sizeof *ev);
    ev->policy = p;
    for (int b = 0; b < p->benefit_count; b++) {
        const cg_benefit *benefit = &p->benefits[b];
        for (int c = 0; c < benefit->cover_count; c++) {
            const cg_cover *cover = &benefit->covers[c];
            int slots = p->models[cover->model].variant_count ? p->models[cover->model].variant_count : 1;
            for (int v = 0; v < slots; v++) {
                if (!(cover->variant_mask & (1u << v))) continue;
                cg_rule_list *rl = &ev->rules[rule_slot(cover->model, v)];
                if (rl->count >= CG_RULES_PER_TARGET_MAX)
                    return cg_err_set(err, CG_ELIMIT, "%s: more than %d benefits cover model '%s'",
                                      p->source_path, CG_RULES_PER_TARGET_MAX, p->models[cover->model].id);
                rl->benefits[rl->count++] = (uint8_t)b;
            }
        }
    }
    for (int m = 0; m < p->model_count; m++) {
        int slots = p->models[m].variant_count ? p->models[m].variant_count : 1;
        bool any = false;
        for (int v = 0; v < slots; v++) any |= ev->rules[rule_slot(m, v)].count > 0;
        for (int v = 0; v < slots; v++) ev->rules[rule_slot(m, v)].any_variant_covered = any;
    }
    return CG_OK;
}

int cg_engine_init(cg_engine *engine, const cg_policy_set *set, cg_err *err) {
    assert(engine && set);
    static_assert(CG_BENEFITS_MAX <= 256, "rule lists store benefit indices in uint8_t");
    memset(engine, 0, sizeof *engine);
    engine->set = set;
    if (set->count == 0) return cg_err_set(err, CG_EINVAL, "no policy version loaded");
    for (int i = 0; i < set->count; i++) {
        int rc = compile_version(&engine->versions[i], set->versions[i], err);
        if (rc) return rc;
    }
    engine->version_count = set->count;
    return CG_OK;
}

void cg_engine_free(cg_engine *engine) {
    if (!engine) return;
    engine->version_count = 0;
    engine->set = NULL;
}

unsigned cg_benefit_lacks(const cg_policy *p, const cg_benefit *b, const cg_member *member,
                          int64_t at_us, int64_t *ends_at_us) {
    unsigned lacks = 0;
    if (!(b->plan_mask & (1u << member->plan))) lacks |= CG_LACKS_PLAN;
    if (!(b->billing_mask & (1u << member->billing))) lacks |= CG_LACKS_BILLING;
    if (member->joined < b->joined.from) lacks |= CG_LACKS_JOINED_EARLY;
    if (member->joined > b->joined.to) lacks |= CG_LACKS_JOINED_LATE;
    *ends_at_us = CG_NO_END;
    const cg_duration *d = &b->duration;
    if (d->years | d->months | d->days) {
        /* "1 year" from joining 2026-03-01 ends at 2027-03-01 00:00 in the policy's zone. */
        cg_date end = cg_date_add(member->joined, d->years, d->months, d->days);
        *ends_at_us = cg_date_start_us(end, p->utc_offset_s);
        if (at_us >= *ends_at_us) lacks |= CG_LACKS_EXPIRED;
    }
    return lacks;
}

int cg_member_restriction(const cg_policy *p, const cg_member *member) {
    for (int r = 0; r < p->restriction_count; r++) {
        const cg_restriction *res = &p->restrictions[r];
        if ((res->plan_mask & (1u << member->plan)) && (res->billing_mask & (1u << member->billing)) &&
            (member->joined < res->joined.from || member->joined > res->joined.to))
            return r;
    }
    return -1;
}

/* How far a member is from a benefit: a plan they are not on weighs most, an ended duration
 * least, so a Premium member past their year hears about their own benefit ending rather
 * than about the Pro plan. */
static int miss_weight(unsigned lacks) {
    return 3 * !!(lacks & CG_LACKS_PLAN) + 2 * !!(lacks & CG_LACKS_BILLING) +
           2 * !!(lacks & (CG_LACKS_JOINED_EARLY | CG_LACKS_JOINED_LATE)) + !!(lacks & CG_LACKS_EXPIRED);
}

/* Decides one item against its rule list. Eligible benefits: the one lasting longest wins
 * (an open-ended benefit beats one that ends). Otherwise the nearest benefit — least
 * miss_weight, first in file order — is kept so the reason can say what the member lacks. */
static void decide_item(const cg_engine_version *ev, const cg_request *req, int restriction,
                        int model, int variant, cg_item *it) {
    const cg_policy *p = ev->policy;
    const cg_model *m = &p->models[model];
    assert(variant < m->variant_count);
    int64_t unit = variant >= 0 ? m->variants[variant].credits : m->credits;
    it->model = model;
    it->variant = variant;
    it->unlimited = false;
    it->credits = unit * it->count;
    it->benefit = -1;
    it->lacks = 0;
    it->restriction = -1;
    it->benefit_ends_at_us = CG_NO_END;
    const cg_rule_list *rl = &ev->rules[rule_slot(model, variant)];
    if (rl->count == 0) {
        it->reason = rl->any_variant_covered ? CG_REASON_VARIANT_NOT_COVERED : CG_REASON_NO_BENEFIT;
        return;
    }
    int best = -1, nearest = -1, nearest_misses = 99;
    int64_t best_ends = 0, nearest_ends = CG_NO_END;
    unsigned nearest_lacks = 0;
    for (int i = 0; i < rl->count; i++) {
        int64_t ends;
        unsigned lacks = cg_benefit_lacks(p, &p->benefits[rl->benefits[i]], &req->member, req->at_us, &ends);
        if (lacks == 0) {
            if (best < 0 || ends > best_ends) best = rl->benefits[i], best_ends = ends;
        } else if (miss_weight(lacks) < nearest_misses) {
            nearest = rl->benefits[i], nearest_misses = miss_weight(lacks), nearest_lacks = lacks;
            nearest_ends = ends;
        }
    }
    if (best >= 0) {
        it->benefit = best;
        it->benefit_ends_at_us = best_ends;
        if (restriction >= 0) { /* "Max annual benefits apply to signups on or after ..." */
            it->reason = CG_REASON_RESTRICTED;
            it->restriction = restriction;
            return;
        }
        it->unlimited = true;
        it->credits = 0;
        it->reason = CG_REASON_UNLIMITED;
        return;
    }
    assert(nearest >= 0);
    it->benefit = nearest;
    it->lacks = nearest_lacks;
    it->reason = CG_REASON_NOT_ELIGIBLE;
    if (nearest_lacks & CG_LACKS_EXPIRED) it->benefit_ends_at_us = nearest_ends;
}

void cg_engine_decide(const cg_engine *engine, const cg_request *req, cg_decision *out) {
    assert(req->version >= 0 && req->version < engine->version_count);
    const cg_engine_version *ev = &engine->versions[req->version];
    assert(ev->policy == req->policy);
    assert(req->count >= 1 && req->count <= CG_COUNT_MAX);
    int restriction = cg_member_restriction(ev->policy, &req->member);
    out->policy = ev->policy;
    out->at_us = req->at_us;
    out->member = req->member;
    out->item_count = 0;
    out->total_credits = 0;
    cg_item *gen = &out->items[out->item_count++];
    gen->kind = CG_ITEM_GENERATION;
    gen->count = req->count;
    decide_item(ev, req, restriction, req->model, req->variant, gen);
    gen->agent_choice = req->agent_choice;
    out->total_credits += gen->credits;
    if (req->agent_model >= 0) {
        /* "Even when generating images with an unlimited model, the conversation itself with
         * the AI agent deducts credits separately." */
        cg_item *conv = &out->items[out->item_count++];
        conv->kind = CG_ITEM_CONVERSATION;
        conv->count = 1;
        decide_item(ev, req, restriction, ev->policy->agent_models[req->agent_model].model, -1, conv);
        if (conv->reason == CG_REASON_NO_BENEFIT) conv->reason = CG_REASON_CONVERSATION;
        conv->agent_choice = CG_AGENT_NONE;
        out->total_credits += conv->credits;
    }
    assert(out->total_credits >= 0);
}

int cg_engine_quote(const cg_engine *engine, const cg_quote_input *in, cg_decision *out,
                    cg_err *err) {
    cg_request req;
    int rc = cg_engine_prepare(engine, in, &req, err);
    if (rc) return rc;
    cg_engine_decide(engine, &req, out);
    return CG_OK;
}

int cg_engine_version_index(const cg_engine *engine, int64_t at_us) {
    for (int i = engine->version_count - 1; i >= 0; i--)
        if (engine->versions[i].policy->effective_at_us <= at_us) return i;
    return -1;
}

static void add_active(const cg_policy *p, const cg_engine_version *ev, const cg_member *member,
                       int64_t at_us, int model, int variant, cg_active_benefit *out, int out_max,
                       int *count) {
    const cg_rule_list *rl = &ev->rules[rule_slot(model, variant)];
    int best = -1;
    int64_t best_ends = 0;
    for (int i = 0; i < rl->count; i++) {
        int64_t ends;
        if (cg_benefit_lacks(p, &p->benefits[rl->benefits[i]], member, at_us, &ends)) continue;
        if (best < 0 || ends > best_ends) best = rl->benefits[i], best_ends = ends;
    }
    if (best < 0 || *count >= out_max) return;
    out[*count] = (cg_active_benefit){.model = model, .variant = variant, .benefit = best,
                                      .expires_at_us = best_ends};
    (*count)++;
}

int cg_engine_active_benefits(const cg_engine *engine, const char *plan, const char *billing,
                              const char *joined, int64_t joined_at_us, int64_t at_us,
                              const cg_policy **policy_out, cg_member *member_out,
                              cg_active_benefit *out, int out_max, int *count, cg_err *err) {
    *count = 0;
    int version = cg_engine_version_index(engine, at_us);
    if (version < 0) return cg_err_set_field(err, CG_EINVAL, "at", "no policy version is in force at that instant");
    const cg_engine_version *ev = &engine->versions[version];
    const cg_policy *p = ev->policy;
    int rc = cg_engine_resolve_member(p, plan, billing, joined, joined_at_us, member_out, err);
    if (rc) return rc;
    *policy_out = p;
    if (cg_member_restriction(p, member_out) >= 0) return CG_OK;
    for (int m = 0; m < p->model_count; m++) {
        int slots = p->models[m].variant_count;
        if (!slots) add_active(p, ev, member_out, at_us, m, -1, out, out_max, count);
        for (int v = 0; v < slots; v++) add_active(p, ev, member_out, at_us, m, v, out, out_max, count);
    }
    return CG_OK;
}
