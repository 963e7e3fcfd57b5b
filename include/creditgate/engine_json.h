/* engine_json.h — the JSON documents of the engine, shared by `creditgate ... --json` and the
 * HTTP API so both always print the same thing (jansson). The caller owns returned json_t. */
#ifndef CREDITGATE_ENGINE_JSON_H
#define CREDITGATE_ENGINE_JSON_H

#include <jansson.h>

#include "creditgate/engine.h"

/* {"policy", "at", "items": [{"kind", "model", "variant", "count", "unlimited", "credits",
 *  "benefit", "reason"}], "total_credits"} */
json_t *cg_decision_to_json(const cg_decision *decision, cg_lang lang);
/* One item of the above. */
json_t *cg_item_to_json(const cg_decision *decision, int item, cg_lang lang);
/* {"benefits": [{"model", "variant", "benefit", "expires_at", "reason"}]} */
json_t *cg_active_benefits_to_json(const cg_policy *policy, const cg_active_benefit *list,
                                   int count, cg_lang lang);
/* {"error": {"code", "message", "field"?, "suggestions": [...]}} */
json_t *cg_err_to_json(const cg_err *err);

#endif
