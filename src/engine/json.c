/* json.c — decisions, active benefits and errors as JSON (jansson), one renderer for the CLI
 * and the HTTP server. Instants are RFC 3339 at the policy's UTC offset. */
#include <assert.h>

#include "creditgate/engine_json.h"

static json_t *instant_json(const cg_policy *p, int64_t at_us) {
    char text[CG_RFC3339_TEXT_BYTES];
    cg_time_format(at_us, p->utc_offset_s, text, sizeof text);
    return json_string(text);
}

json_t *cg_item_to_json(const cg_decision *d, int item, cg_lang lang) {
    assert(item >= 0 && item < d->item_count);
    const cg_item *it = &d->items[item];
    const cg_policy *p = d->policy;
    const cg_model *m = &p->models[it->model];
    char reason[CG_EXPLAIN_BYTES_MAX];
    cg_item_explain(d, item, lang, reason, sizeof reason);
    return json_pack("{s:s, s:s, s:o, s:I, s:b, s:I, s:o, s:s}",
                     "kind", it->kind == CG_ITEM_GENERATION ? "generation" : "conversation",
                     "model", m->id,
                     "variant", it->variant >= 0 ? json_string(m->variants[it->variant].id) : json_null(),
                     "count", (json_int_t)it->count,
                     "unlimited", it->unlimited,
                     "credits", (json_int_t)it->credits,
                     "benefit", it->unlimited ? json_string(p->benefits[it->benefit].id) : json_null(),
                     "reason", reason);
}

json_t *cg_decision_to_json(const cg_decision *d, cg_lang lang) {
    json_t *items = json_array();
    for (int i = 0; i < d->item_count; i++) json_array_append_new(items, cg_item_to_json(d, i, lang));
    return json_pack("{s:s, s:o, s:o, s:I}", "policy", d->policy->version, "at",
                     instant_json(d->policy, d->at_us), "items", items, "total_credits",
                     (json_int_t)d->total_credits);
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
