/* parse.c — the policy file (YAML) → a validated cg_policy.
 *
 * Each mapping in the file is read by walk_map() against a table of the keys it may hold, so
 * an unknown or missing key is always reported at its file:line:col. Cross-references (plan
 * inheritance, models named by benefits, agent routes) are resolved here too; what is left
 * for validate.c is checks that need the whole policy (overlaps, name collisions). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "creditgate/policy.h"
#include "policy_internal.h"
#include "yaml.h"

#define PARSE_DOCUMENT_BYTES_MAX (4 * 1024 * 1024)

typedef struct parser {
    yaml_ctx y;
    cg_policy *p;
} parser;

typedef int (*field_fn)(parser *ps, struct fy_node *value, void *obj);

typedef struct field {
    const char *key;
    field_fn fn;
    bool required;
} field;

#define FIELDS_MAX 16

/* Reads a mapping whose keys must come from fields[]; reports unknown and missing keys. */
static int walk_map(parser *ps, struct fy_node *map, struct fy_node *where, const char *what,
                    const field *fields, int field_count, void *obj) {
    assert(field_count <= FIELDS_MAX);
    if (!yaml_is_map(map)) return yaml_fail(&ps->y, map ? map : where, "%s must be a mapping", what);
    bool seen[FIELDS_MAX] = {false};
    void *iter = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &iter))) {
        struct fy_node *key = fy_node_pair_key(pair);
        int i = 0;
        while (i < field_count && !yaml_key_is(key, fields[i].key)) i++;
        if (i == field_count) {
            char keys[256] = "", name[CG_NAME_BYTES_MAX] = "?";
            for (int k = 0; k < field_count; k++)
                snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s", k ? ", " : "",
                         fields[k].key);
            if (yaml_str(&ps->y, key, "key", name, sizeof name)) cg_err_clear(ps->y.err);
            return yaml_fail(&ps->y, key, "unknown key '%s' in %s (expected one of: %s)", name,
                             what, keys);
        }
        struct fy_node *value = fy_node_pair_value(pair);
        if (!value) return yaml_fail(&ps->y, key, "%s.%s has no value", what, fields[i].key);
        struct fy_node *outer = ps->y.fallback;
        ps->y.fallback = key;
        int rc = fields[i].fn(ps, value, obj);
        ps->y.fallback = outer;
        if (rc) return rc;
        seen[i] = true;
    }
    for (int i = 0; i < field_count; i++)
        if (fields[i].required && !seen[i])
            return yaml_fail(&ps->y, map, "%s is missing required key '%s'", what, fields[i].key);
    return CG_OK;
}

/* Calls fn on each element of a sequence, refusing more than max elements. */
static int walk_seq(parser *ps, struct fy_node *seq, const char *what, int max,
                    int (*fn)(parser *, struct fy_node *, void *), void *obj) {
    if (!yaml_is_seq(seq)) return yaml_fail(&ps->y, seq, "%s must be a list", what);
    void *iter = NULL;
    struct fy_node *item;
    int n = 0;
    while ((item = fy_node_sequence_iterate(seq, &iter))) {
        if (++n > max) return yaml_fail(&ps->y, item, "%s has more than %d entries", what, max);
        int rc = fn(ps, item, obj);
        if (rc) return rc;
    }
    return CG_OK;
}

/* ---- lookups that report unknown names with the list of known ones ---- */

static int plan_ref(parser *ps, struct fy_node *node, int *out) {
    char id[CG_ID_BYTES_MAX];
    int rc = yaml_str(&ps->y, node, "plan", id, sizeof id);
    if (rc) return rc;
    *out = cg_policy_plan_find(ps->p, id);
    if (*out < 0) {
        char known[256] = "";
        for (int i = 0; i < ps->p->plan_count; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     ps->p->plans[i].id);
        return yaml_fail(&ps->y, node, "unknown plan '%s' (plans are: %s)", id, known);
    }
    return CG_OK;
}

static int model_ref(parser *ps, struct fy_node *node, int *out) {
    char id[CG_ID_BYTES_MAX];
    int rc = yaml_str(&ps->y, node, "model", id, sizeof id);
    if (rc) return rc;
    *out = cg_policy_model_find_id(ps->p, id);
    if (*out < 0)
        return yaml_fail(&ps->y, node, "unknown model '%s' (not in models:, use its id)", id);
    return CG_OK;
}

static int add_plan_to_mask(parser *ps, struct fy_node *node, void *obj) {
    int plan;
    int rc = plan_ref(ps, node, &plan);
    if (rc) return rc;
    uint32_t *mask = obj;
    if (*mask & (1u << plan)) return yaml_fail(&ps->y, node, "plan listed twice");
    *mask |= 1u << plan;
    return CG_OK;
}

static int add_billing_to_mask(parser *ps, struct fy_node *node, void *obj) {
    char id[CG_ID_BYTES_MAX];
    int rc = yaml_str(&ps->y, node, "billing", id, sizeof id);
    if (rc) return rc;
    int b = cg_policy_billing_find(ps->p, id);
    if (b < 0) return yaml_fail(&ps->y, node, "unknown billing '%s'", id);
    uint32_t *mask = obj;
    if (*mask & (1u << b)) return yaml_fail(&ps->y, node, "billing listed twice");
    *mask |= 1u << b;
    return CG_OK;
}

static int plan_mask_read(parser *ps, struct fy_node *v, uint32_t *mask) {
    *mask = 0;
    int rc = walk_seq(ps, v, "plans", CG_PLANS_MAX, add_plan_to_mask, mask);
    if (!rc && *mask == 0) return yaml_fail(&ps->y, v, "plans must not be empty");
    return rc;
}

static int billing_mask_read(parser *ps, struct fy_node *v, uint32_t *mask) {
    *mask = 0;
    int rc = walk_seq(ps, v, "billing", CG_BILLINGS_MAX, add_billing_to_mask, mask);
    if (!rc && *mask == 0) return yaml_fail(&ps->y, v, "billing must not be empty");
    return rc;
}

/* ---- joined windows and durations ---- */

static int window_from(parser *ps, struct fy_node *v, void *obj) {
    return yaml_date(&ps->y, v, "joined.from", &((cg_window *)obj)->from);
}
static int window_to(parser *ps, struct fy_node *v, void *obj) {
    return yaml_date(&ps->y, v, "joined.to", &((cg_window *)obj)->to);
}

static int window_read(parser *ps, struct fy_node *v, cg_window *w) {
    static const field fields[] = {{"from", window_from, false}, {"to", window_to, false}};
    w->from = CG_DATE_MIN;
    w->to = CG_DATE_MAX;
    int rc = walk_map(ps, v, v, "joined", fields, 2, w);
    if (rc) return rc;
    if (w->from == CG_DATE_MIN && w->to == CG_DATE_MAX)
        return yaml_fail(&ps->y, v, "joined needs 'from', 'to' or both");
    if (w->from > w->to)
        return yaml_fail(&ps->y, v, "joined window is empty: 'from' is after 'to'");
    return CG_OK;
}

static int duration_read(parser *ps, struct fy_node *v, cg_duration *d) {
    char text[32], unit[16];
    int rc = yaml_str(&ps->y, v, "duration", text, sizeof text);
    if (rc) return rc;
    int n = 0;
    char extra;
    if (sscanf(text, "%d %15s %c", &n, unit, &extra) != 2 || n <= 0 || n > 100)
        return yaml_fail(&ps->y, v, "duration must be like '1 year', '6 months' or '30 days', got '%s'",
                         text);
    memset(d, 0, sizeof *d);
    if (!strcmp(unit, "year") || !strcmp(unit, "years")) d->years = n;
    else if (!strcmp(unit, "month") || !strcmp(unit, "months")) d->months = n;
    else if (!strcmp(unit, "day") || !strcmp(unit, "days")) d->days = n;
    else return yaml_fail(&ps->y, v, "duration unit must be year(s), month(s) or day(s), got '%s'", unit);
    return CG_OK;
}

/* ---- bilingual notes ---- */

static int text_en(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "note.en", ((cg_text *)obj)->en, CG_NOTE_BYTES_MAX);
}
static int text_ko(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "note.ko", ((cg_text *)obj)->ko, CG_NOTE_BYTES_MAX);
}
static int text_read(parser *ps, struct fy_node *v, cg_text *t) {
    static const field fields[] = {{"en", text_en, true}, {"ko", text_ko, true}};
    return walk_map(ps, v, v, "note", fields, 2, t);
}

/* ---- top level scalars ---- */

static int f_version(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    return yaml_str(&ps->y, v, "version", ps->p->version, sizeof ps->p->version);
}
static int f_timezone(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    return yaml_str(&ps->y, v, "timezone", ps->p->timezone, sizeof ps->p->timezone);
}
static int f_utc_offset(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    char text[16];
    int rc = yaml_str(&ps->y, v, "utc_offset", text, sizeof text);
    if (rc) return rc;
    cg_err e;
    if (cg_utc_offset_parse(text, &ps->p->utc_offset_s, &e))
        return yaml_fail(&ps->y, v, "utc_offset: %s", e.msg);
    return CG_OK;
}
static int f_effective_at(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    char text[64];
    int rc = yaml_str(&ps->y, v, "effective_at", text, sizeof text);
    if (rc) return rc;
    cg_err e;
    /* A bare date would depend on utc_offset's position in the file: demand an offset. */
    if (strlen(text) <= 10 || cg_time_parse(text, 0, &ps->p->effective_at_us, &e))
        return yaml_fail(&ps->y, v, "effective_at must be an RFC 3339 instant with an offset, "
                                    "e.g. 2025-11-01T00:00:00+09:00, got '%s'", text);
    return CG_OK;
}
static int f_hold_ttl(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    return yaml_int(&ps->y, v, "hold_ttl_s", 1, 7 * 86400, &ps->p->hold_ttl_s);
}

/* ---- plans and billing ---- */

typedef struct plan_ctx {
    cg_plan *plan;
    struct fy_node *inherits_node; /* resolved after every plan is read */
} plan_ctx;

static int plan_id(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "plan id", ((plan_ctx *)obj)->plan->id, CG_ID_BYTES_MAX);
}
static int plan_name(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "plan name", ((plan_ctx *)obj)->plan->name, CG_NAME_BYTES_MAX);
}
static int plan_name_ko(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "plan name_ko", ((plan_ctx *)obj)->plan->name_ko, CG_NAME_BYTES_MAX);
}
static int plan_paid(parser *ps, struct fy_node *v, void *obj) {
    return yaml_bool(&ps->y, v, "plan paid", &((plan_ctx *)obj)->plan->paid);
}
static int plan_inherits(parser *ps, struct fy_node *v, void *obj) {
    (void)ps;
    ((plan_ctx *)obj)->inherits_node = v;
    return CG_OK;
}

typedef struct plans_ctx {
    struct fy_node *inherits[CG_PLANS_MAX];
} plans_ctx;

static int plan_item(parser *ps, struct fy_node *item, void *obj) {
    static const field fields[] = {{"id", plan_id, true},           {"name", plan_name, true},
                                   {"name_ko", plan_name_ko, false}, {"paid", plan_paid, true},
                                   {"inherits", plan_inherits, false}};
    plans_ctx *pc = obj;
    cg_policy *p = ps->p;
    plan_ctx ctx = {.plan = &p->plans[p->plan_count], .inherits_node = NULL};
    ctx.plan->inherits = -1;
    int rc = walk_map(ps, item, item, "plan", fields, 5, &ctx);
    if (rc) return rc;
    if (cg_policy_plan_find(p, ctx.plan->id) >= 0)
        return yaml_fail(&ps->y, item, "plan '%s' is defined twice", ctx.plan->id);
    if (!ctx.plan->name_ko[0]) memcpy(ctx.plan->name_ko, ctx.plan->name, sizeof ctx.plan->name);
    pc->inherits[p->plan_count++] = ctx.inherits_node;
    return CG_OK;
}

static int f_plans(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    plans_ctx pc = {{NULL}};
    int rc = walk_seq(ps, v, "plans", CG_PLANS_MAX, plan_item, &pc);
    if (rc) return rc;
    if (ps->p->plan_count == 0) return yaml_fail(&ps->y, v, "plans must not be empty");
    cg_policy *p = ps->p;
    for (int i = 0; i < p->plan_count; i++) {
        if (!pc.inherits[i]) continue;
        rc = plan_ref(ps, pc.inherits[i], &p->plans[i].inherits);
        if (rc) return rc;
        if (p->plans[i].inherits == i) return yaml_fail(&ps->y, pc.inherits[i], "a plan cannot inherit itself");
    }
    /* Chains are followed at most plan_count steps; a longer walk means a cycle. */
    for (int i = 0; i < p->plan_count; i++) {
        int at = i, steps = 0;
        while (at >= 0 && steps <= p->plan_count) at = p->plans[at].inherits, steps++;
        if (at >= 0) return yaml_fail(&ps->y, pc.inherits[i], "plan inheritance forms a cycle");
    }
    return CG_OK;
}

static int billing_item(parser *ps, struct fy_node *item, void *obj) {
    (void)obj;
    cg_policy *p = ps->p;
    int rc = yaml_str(&ps->y, item, "billing", p->billings[p->billing_count], CG_ID_BYTES_MAX);
    if (rc) return rc;
    if (cg_policy_billing_find(p, p->billings[p->billing_count]) >= 0)
        return yaml_fail(&ps->y, item, "billing '%s' is listed twice", p->billings[p->billing_count]);
    p->billing_count++;
    return CG_OK;
}

static int f_billing(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    int rc = walk_seq(ps, v, "billing", CG_BILLINGS_MAX, billing_item, NULL);
    if (!rc && ps->p->billing_count == 0) return yaml_fail(&ps->y, v, "billing must not be empty");
    return rc;
}

/* ---- models ---- */

static int variant_id(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "variant id", ((cg_variant *)obj)->id, CG_ID_BYTES_MAX);
}
static int variant_name(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "variant name", ((cg_variant *)obj)->name, CG_NAME_BYTES_MAX);
}
static int variant_credits(parser *ps, struct fy_node *v, void *obj) {
    return yaml_int(&ps->y, v, "credits", 0, CG_CREDITS_MAX, &((cg_variant *)obj)->credits);
}
static int variant_note(parser *ps, struct fy_node *v, void *obj) {
    return text_read(ps, v, &((cg_variant *)obj)->note);
}

static int variant_item(parser *ps, struct fy_node *item, void *obj) {
    static const field fields[] = {{"id", variant_id, true},
                                   {"name", variant_name, false},
                                   {"credits", variant_credits, true},
                                   {"note", variant_note, false}};
    cg_model *m = obj;
    cg_variant *var = &m->variants[m->variant_count];
    int rc = walk_map(ps, item, item, "variant", fields, 4, var);
    if (rc) return rc;
    if (cg_policy_variant_find(m, var->id) >= 0)
        return yaml_fail(&ps->y, item, "variant '%s' is defined twice in model '%s'", var->id, m->id);
    if (!var->name[0]) memcpy(var->name, var->id, sizeof var->id); /* name defaults to id */
    m->variant_count++;
    return CG_OK;
}

typedef struct model_ctx {
    cg_model *m;
    bool has_credits;
} model_ctx;

static int model_id(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "model id", ((model_ctx *)obj)->m->id, CG_ID_BYTES_MAX);
}
static int model_name(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "model name", ((model_ctx *)obj)->m->name, CG_NAME_BYTES_MAX);
}
static int model_alias(parser *ps, struct fy_node *v, void *obj) {
    cg_model *m = obj;
    return yaml_str(&ps->y, v, "alias", m->aliases[m->alias_count++], CG_NAME_BYTES_MAX);
}
static int model_aliases(parser *ps, struct fy_node *v, void *obj) {
    return walk_seq(ps, v, "aliases", CG_ALIASES_MAX, model_alias, ((model_ctx *)obj)->m);
}
static int model_kind(parser *ps, struct fy_node *v, void *obj) {
    char text[16];
    int rc = yaml_str(&ps->y, v, "kind", text, sizeof text);
    if (rc) return rc;
    cg_model *m = ((model_ctx *)obj)->m;
    if (!strcmp(text, "image")) m->kind = CG_KIND_IMAGE;
    else if (!strcmp(text, "video")) m->kind = CG_KIND_VIDEO;
    else if (!strcmp(text, "conversation")) m->kind = CG_KIND_CONVERSATION;
    else return yaml_fail(&ps->y, v, "kind must be image, video or conversation, got '%s'", text);
    return CG_OK;
}
static int model_credits(parser *ps, struct fy_node *v, void *obj) {
    ((model_ctx *)obj)->has_credits = true;
    return yaml_int(&ps->y, v, "credits", 0, CG_CREDITS_MAX, &((model_ctx *)obj)->m->credits);
}
static int model_variants(parser *ps, struct fy_node *v, void *obj) {
    cg_model *m = ((model_ctx *)obj)->m;
    int rc = walk_seq(ps, v, "variants", CG_VARIANTS_MAX, variant_item, m);
    if (!rc && m->variant_count == 0) return yaml_fail(&ps->y, v, "variants must not be empty");
    return rc;
}
static int model_note(parser *ps, struct fy_node *v, void *obj) {
    return text_read(ps, v, &((model_ctx *)obj)->m->note);
}

static int model_item(parser *ps, struct fy_node *item, void *obj) {
    (void)obj;
    static const field fields[] = {{"id", model_id, true},           {"name", model_name, true},
                                   {"aliases", model_aliases, false}, {"kind", model_kind, true},
                                   {"credits", model_credits, false}, {"variants", model_variants, false},
                                   {"note", model_note, false}};
    cg_policy *p = ps->p;
    model_ctx ctx = {.m = &p->models[p->model_count], .has_credits = false};
    int rc = walk_map(ps, item, item, "model", fields, 7, &ctx);
    if (rc) return rc;
    if (cg_policy_model_find_id(p, ctx.m->id) >= 0)
        return yaml_fail(&ps->y, item, "model '%s' is defined twice", ctx.m->id);
    yaml_mark(item, &ctx.m->line, &ctx.m->col);
    if (ctx.has_credits == (ctx.m->variant_count > 0))
        return yaml_fail(&ps->y, item, "model '%s' needs exactly one of 'credits' or 'variants'",
                         ctx.m->id);
    p->model_count++;
    return CG_OK;
}

static int f_models(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    int rc = walk_seq(ps, v, "models", CG_MODELS_MAX, model_item, NULL);
    if (!rc && ps->p->model_count == 0) return yaml_fail(&ps->y, v, "models must not be empty");
    return rc;
}

/* ---- benefits ---- */

typedef struct cover_ctx {
    cg_cover *cover;
    struct fy_node *variants;
} cover_ctx;

static int cover_model(parser *ps, struct fy_node *v, void *obj) {
    return model_ref(ps, v, &((cover_ctx *)obj)->cover->model);
}
static int cover_variants(parser *ps, struct fy_node *v, void *obj) {
    (void)ps;
    ((cover_ctx *)obj)->variants = v;
    return CG_OK;
}

static int cover_variant_item(parser *ps, struct fy_node *item, void *obj) {
    cg_cover *c = obj;
    const cg_model *m = &ps->p->models[c->model];
    char id[CG_ID_BYTES_MAX];
    int rc = yaml_str(&ps->y, item, "variant", id, sizeof id);
    if (rc) return rc;
    int var = cg_policy_variant_find(m, id);
    if (var < 0) return yaml_fail(&ps->y, item, "model '%s' has no variant '%s'", m->id, id);
    if (c->variant_mask & (1u << var)) return yaml_fail(&ps->y, item, "variant listed twice");
    c->variant_mask |= 1u << var;
    return CG_OK;
}

static int cover_item(parser *ps, struct fy_node *item, void *obj) {
    static const field fields[] = {{"model", cover_model, true}, {"variants", cover_variants, false}};
    cg_benefit *b = obj;
    cover_ctx ctx = {.cover = &b->covers[b->cover_count], .variants = NULL};
    ctx.cover->variant_mask = 0;
    int rc = fy_node_get_type(item) == FYNT_SCALAR
                 ? model_ref(ps, item, &ctx.cover->model)
                 : walk_map(ps, item, item, "covers entry", fields, 2, &ctx);
    if (rc) return rc;
    const cg_model *m = &ps->p->models[ctx.cover->model];
    if (ctx.variants) {
        if (m->variant_count == 0)
            return yaml_fail(&ps->y, ctx.variants, "model '%s' has no variants", m->id);
        rc = walk_seq(ps, ctx.variants, "variants", CG_VARIANTS_MAX, cover_variant_item, ctx.cover);
        if (rc) return rc;
        if (!ctx.cover->variant_mask) return yaml_fail(&ps->y, ctx.variants, "variants must not be empty");
    } else {
        int n = m->variant_count ? m->variant_count : 1;
        ctx.cover->variant_mask = (uint32_t)((1u << n) - 1);
    }
    for (int i = 0; i < b->cover_count; i++)
        if (b->covers[i].model == ctx.cover->model)
            return yaml_fail(&ps->y, item, "model '%s' is listed twice in covers", m->id);
    b->cover_count++;
    return CG_OK;
}

static int benefit_id(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "benefit id", ((cg_benefit *)obj)->id, CG_ID_BYTES_MAX);
}
static int benefit_covers(parser *ps, struct fy_node *v, void *obj) {
    int rc = walk_seq(ps, v, "covers", CG_BENEFIT_COVERS_MAX, cover_item, obj);
    if (!rc && ((cg_benefit *)obj)->cover_count == 0) return yaml_fail(&ps->y, v, "covers must not be empty");
    return rc;
}
static int benefit_plans(parser *ps, struct fy_node *v, void *obj) {
    ((cg_benefit *)obj)->plans_omitted = false;
    return plan_mask_read(ps, v, &((cg_benefit *)obj)->plan_mask_named);
}
static int benefit_billing(parser *ps, struct fy_node *v, void *obj) {
    return billing_mask_read(ps, v, &((cg_benefit *)obj)->billing_mask);
}
static int benefit_joined(parser *ps, struct fy_node *v, void *obj) {
    return window_read(ps, v, &((cg_benefit *)obj)->joined);
}
static int benefit_duration(parser *ps, struct fy_node *v, void *obj) {
    return duration_read(ps, v, &((cg_benefit *)obj)->duration);
}

static int benefit_item(parser *ps, struct fy_node *item, void *obj) {
    (void)obj;
    static const field fields[] = {{"id", benefit_id, true},           {"covers", benefit_covers, true},
                                   {"plans", benefit_plans, false},     {"billing", benefit_billing, false},
                                   {"joined", benefit_joined, false},   {"duration", benefit_duration, false}};
    cg_policy *p = ps->p;
    cg_benefit *b = &p->benefits[p->benefit_count];
    b->plans_omitted = true;
    b->billing_mask = (1u << p->billing_count) - 1;
    b->joined.from = CG_DATE_MIN;
    b->joined.to = CG_DATE_MAX;
    yaml_mark(item, &b->line, &b->col);
    int rc = walk_map(ps, item, item, "benefit", fields, 6, b);
    if (rc) return rc;
    for (int i = 0; i < p->benefit_count; i++)
        if (!strcmp(p->benefits[i].id, b->id))
            return yaml_fail(&ps->y, item, "benefit '%s' is defined twice (first at line %d)", b->id,
                             p->benefits[i].line);
    if (b->plans_omitted) /* "Members who joined ..." with no plan named: every paid plan */
        for (int i = 0; i < p->plan_count; i++)
            if (p->plans[i].paid) b->plan_mask_named |= 1u << i;
    if ((b->duration.years || b->duration.months || b->duration.days) && b->joined.from == CG_DATE_MIN)
        return yaml_fail(&ps->y, item, "benefit '%s' has a duration but no joined.from", b->id);
    p->benefit_count++;
    return CG_OK;
}

static int f_benefits(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    if (!ps->p->plan_count || !ps->p->model_count || !ps->p->billing_count)
        return yaml_fail(&ps->y, v, "benefits must come after plans, billing and models");
    return walk_seq(ps, v, "benefits", CG_BENEFITS_MAX, benefit_item, NULL);
}

/* ---- restrictions ---- */

static int restriction_id(parser *ps, struct fy_node *v, void *obj) {
    return yaml_str(&ps->y, v, "restriction id", ((cg_restriction *)obj)->id, CG_ID_BYTES_MAX);
}
static int restriction_plans(parser *ps, struct fy_node *v, void *obj) {
    return plan_mask_read(ps, v, &((cg_restriction *)obj)->plan_mask);
}
static int restriction_billing(parser *ps, struct fy_node *v, void *obj) {
    return billing_mask_read(ps, v, &((cg_restriction *)obj)->billing_mask);
}
static int restriction_joined(parser *ps, struct fy_node *v, void *obj) {
    return window_read(ps, v, &((cg_restriction *)obj)->joined);
}
static int restriction_note(parser *ps, struct fy_node *v, void *obj) {
    return text_read(ps, v, &((cg_restriction *)obj)->note);
}

static int restriction_item(parser *ps, struct fy_node *item, void *obj) {
    (void)obj;
    static const field fields[] = {{"id", restriction_id, true},        {"plans", restriction_plans, true},
                                   {"billing", restriction_billing, false}, {"joined", restriction_joined, true},
                                   {"note", restriction_note, true}};
    cg_policy *p = ps->p;
    cg_restriction *r = &p->restrictions[p->restriction_count];
    r->billing_mask = (1u << p->billing_count) - 1;
    int rc = walk_map(ps, item, item, "restriction", fields, 5, r);
    if (rc) return rc;
    p->restriction_count++;
    return CG_OK;
}

static int f_restrictions(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    if (!ps->p->plan_count || !ps->p->billing_count)
        return yaml_fail(&ps->y, v, "restrictions must come after plans and billing");
    return walk_seq(ps, v, "restrictions", CG_RESTRICTIONS_MAX, restriction_item, NULL);
}

/* ---- agent ---- */

static int route_model(parser *ps, struct fy_node *v, void *obj) {
    return model_ref(ps, v, &((cg_agent_route *)obj)->model);
}
static int route_phrase(parser *ps, struct fy_node *v, void *obj) {
    cg_agent_route *r = obj;
    char *phrase = r->phrases[r->phrase_count];
    int rc = yaml_str(&ps->y, v, "phrase", phrase, CG_NAME_BYTES_MAX);
    if (rc) return rc;
    for (char *c = phrase; *c; c++)
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    r->phrase_count++;
    return CG_OK;
}
static int route_phrases(parser *ps, struct fy_node *v, void *obj) {
    int rc = walk_seq(ps, v, "phrases", CG_PHRASES_MAX, route_phrase, obj);
    if (!rc && ((cg_agent_route *)obj)->phrase_count == 0)
        return yaml_fail(&ps->y, v, "phrases must not be empty");
    return rc;
}
static int route_item(parser *ps, struct fy_node *item, void *obj) {
    (void)obj;
    static const field fields[] = {{"model", route_model, true}, {"phrases", route_phrases, true}};
    cg_policy *p = ps->p;
    return walk_map(ps, item, item, "agent request", fields, 2, &p->agent_routes[p->agent_route_count++]);
}

static int agent_default_model(parser *ps, struct fy_node *v, int *out, cg_model_kind kind) {
    int rc = model_ref(ps, v, out);
    if (rc) return rc;
    if (ps->p->models[*out].kind != kind)
        return yaml_fail(&ps->y, v, "model '%s' is not a %s model", ps->p->models[*out].id,
                         cg_model_kind_name(kind));
    return CG_OK;
}
static int agent_video(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    return agent_default_model(ps, v, &ps->p->agent_default_video_model, CG_KIND_VIDEO);
}
static int agent_image(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    return agent_default_model(ps, v, &ps->p->agent_default_image_model, CG_KIND_IMAGE);
}
static int agent_requests(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    return walk_seq(ps, v, "agent.requests", CG_AGENT_ROUTES_MAX, route_item, NULL);
}
static int agent_conversation(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    cg_policy *p = ps->p;
    if (!yaml_is_map(v)) return yaml_fail(&ps->y, v, "agent.conversation must be a mapping");
    void *iter = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(v, &iter))) {
        if (p->agent_model_count >= CG_AGENT_MODELS_MAX)
            return yaml_fail(&ps->y, fy_node_pair_key(pair), "at most %d agent models", CG_AGENT_MODELS_MAX);
        cg_agent_model *am = &p->agent_models[p->agent_model_count];
        int rc = yaml_str(&ps->y, fy_node_pair_key(pair), "agent model", am->id, sizeof am->id);
        if (!rc) rc = agent_default_model(ps, fy_node_pair_value(pair), &am->model, CG_KIND_CONVERSATION);
        if (rc) return rc;
        p->agent_model_count++;
    }
    return CG_OK;
}

static int f_agent(parser *ps, struct fy_node *v, void *obj) {
    (void)obj;
    static const field fields[] = {{"default_video_model", agent_video, false},
                                   {"default_image_model", agent_image, false},
                                   {"requests", agent_requests, false},
                                   {"conversation", agent_conversation, true}};
    if (!ps->p->model_count) return yaml_fail(&ps->y, v, "agent must come after models");
    return walk_map(ps, v, v, "agent", fields, 4, NULL);
}

/* ---- document ---- */

static int parse_document(parser *ps, struct fy_node *root) {
    static const field fields[] = {
        {"version", f_version, true},       {"effective_at", f_effective_at, true},
        {"timezone", f_timezone, true},     {"utc_offset", f_utc_offset, true},
        {"hold_ttl_s", f_hold_ttl, false},  {"plans", f_plans, true},
        {"billing", f_billing, true},       {"restrictions", f_restrictions, false},
        {"models", f_models, true},         {"benefits", f_benefits, true},
        {"agent", f_agent, false},
    };
    cg_policy *p = ps->p;
    p->hold_ttl_s = 900;
    p->agent_default_video_model = -1;
    p->agent_default_image_model = -1;
    int rc = walk_map(ps, root, root, "policy", fields, (int)(sizeof fields / sizeof fields[0]), NULL);
    if (rc) return rc;
    return cg_policy_validate(p, &ps->y);
}

/* libfyaml reports syntax errors through its diag object; keep the first message. */
static void diag_output(struct fy_diag *diag, void *user, const char *buf, size_t len) {
    (void)diag;
    char *first = user;
    if (first[0]) return;
    size_t n = len < CG_ERR_MSG_BYTES_MAX - 1 ? len : CG_ERR_MSG_BYTES_MAX - 1;
    memcpy(first, buf, n);
    first[n] = '\0';
    char *nl = strchr(first, '\n');
    if (nl) *nl = '\0';
}

/* libfyaml says "<source>:LINE:COL: error: what"; we say "name:LINE:COL: what". */
static int syntax_error(const char *name, const char *diag, cg_err *err) {
    for (const char *c = diag; *c; c++) {
        int line, col, used = 0;
        if (*c == ':' && sscanf(c, ":%d:%d: %n", &line, &col, &used) == 2 && used > 0) {
            const char *what = c + used;
            if (!strncmp(what, "error: ", 7)) what += 7;
            return cg_err_set(err, CG_EPARSE, "%s:%d:%d: %s", name, line, col, what);
        }
    }
    return cg_err_set(err, CG_EPARSE, "%s: YAML syntax error%s%s", name, diag[0] ? ": " : "", diag);
}

typedef int (*document_fn)(cg_policy *policy, void *user, cg_err *err);

/* Parses every document of text (len bytes, NUL-terminated); calls fn with each validated
 * policy, which fn takes. */
static int load_documents(const char *text, size_t len, const char *name, document_fn fn, void *user,
                          cg_err *err) {
    int rc = yaml_text_check(name, text, len, err);
    if (rc) return rc;
    char diag_first[CG_ERR_MSG_BYTES_MAX] = "";
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = diag_output;
    dcfg.user = diag_first;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag) return cg_err_set(err, CG_ENOMEM, "%s: cannot create YAML diagnostics", name);
    struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET | FYPCF_DEFAULT_PARSE, .diag = diag};
    struct fy_parser *fyp = fy_parser_create(&cfg);
    int documents = 0;
    if (!fyp) rc = cg_err_set(err, CG_ENOMEM, "%s: cannot create YAML parser", name);
    else if (fy_parser_set_string(fyp, text, len)) rc = cg_err_set(err, CG_ENOMEM, "%s: cannot start parsing", name);
    while (!rc) {
        struct fy_document *doc = fy_parse_load_document(fyp);
        if (!doc) break;
        cg_policy *p = calloc(1, sizeof *p);
        if (!p) rc = cg_err_set(err, CG_ENOMEM, "%s: out of memory", name);
        parser ps = {.y = {.name = name, .err = err}, .p = p};
        if (!rc && !fy_document_root(doc)) rc = cg_err_set(err, CG_EPARSE, "%s: empty document", name);
        if (!rc) rc = parse_document(&ps, fy_document_root(doc));
        if (p) snprintf(p->source_path, sizeof p->source_path, "%s", name);
        fy_parse_document_destroy(fyp, doc);
        if (rc) cg_policy_free(p);
        else rc = fn(p, user, err), documents++;
    }
    if (!rc && fyp && fy_parser_get_stream_error(fyp)) rc = syntax_error(name, diag_first, err);
    if (!rc && documents == 0) rc = cg_err_set(err, CG_EPARSE, "%s: no policy document", name);
    fy_parser_destroy(fyp);
    fy_diag_destroy(diag);
    return rc;
}

/* Reads a whole policy file (at most PARSE_DOCUMENT_BYTES_MAX) into a NUL-terminated buffer. */
static int read_file(const char *path, char **text_out, size_t *len_out, cg_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return cg_err_set(err, CG_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *text = malloc(PARSE_DOCUMENT_BYTES_MAX + 1);
    size_t len = text ? fread(text, 1, PARSE_DOCUMENT_BYTES_MAX + 1, f) : 0;
    int failed = text ? ferror(f) : 1;
    fclose(f);
    if (failed) {
        free(text);
        return cg_err_set(err, CG_EIO, "%s: cannot read", path);
    }
    if (len > PARSE_DOCUMENT_BYTES_MAX) {
        free(text);
        return cg_err_set(err, CG_ELIMIT, "%s: larger than %d bytes", path, PARSE_DOCUMENT_BYTES_MAX);
    }
    text[len] = '\0';
    *text_out = text;
    *len_out = len;
    return CG_OK;
}

static int keep_first(cg_policy *policy, void *user, cg_err *err) {
    cg_policy **out = user;
    if (*out) {
        cg_err_set(err, CG_EPARSE, "%s: holds more than one document; load it as a set",
                   policy->source_path);
        cg_policy_free(policy);
        return CG_EPARSE;
    }
    *out = policy;
    return CG_OK;
}

static int add_to_set(cg_policy *policy, void *user, cg_err *err) {
    return cg_policy_set_add_take(user, policy, err);
}

int cg_policy_load_file(const char *path, cg_policy **out, cg_err *err) {
    *out = NULL;
    char *text;
    size_t len;
    int rc = read_file(path, &text, &len, err);
    if (rc) return rc;
    rc = load_documents(text, len, path, keep_first, out, err);
    free(text);
    if (rc) cg_policy_free(*out), *out = NULL;
    return rc;
}

int cg_policy_load_string(const char *text, const char *name, cg_policy **out, cg_err *err) {
    *out = NULL;
    size_t len = strlen(text);
    if (len > PARSE_DOCUMENT_BYTES_MAX)
        return cg_err_set(err, CG_ELIMIT, "%s: larger than %d bytes", name, PARSE_DOCUMENT_BYTES_MAX);
    int rc = load_documents(text, len, name, keep_first, out, err);
    if (rc) cg_policy_free(*out), *out = NULL;
    return rc;
}

int cg_policy_set_load_file(cg_policy_set *set, const char *path, cg_err *err) {
    char *text;
    size_t len;
    int rc = read_file(path, &text, &len, err);
    if (rc) return rc;
    rc = load_documents(text, len, path, add_to_set, set, err);
    free(text);
    return rc;
}
