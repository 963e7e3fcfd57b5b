/* engine_json.h — the JSON documents of the engine, shared by `creditgate ... --json` and the
 * HTTP API so both always print the same thing (jansson). The caller owns returned json_t. */
#ifndef CREDITGATE_ENGINE_JSON_H
#define CREDITGATE_ENGINE_JSON_H

#include <jansson.h>

#include "creditgate/engine.h"

/* {"policy", "at", "items": [{"kind", "model", "variant", "count", "unlimited", "credits",
 *  "benefit", "reason"}], "total_credits"} */
json_t *cg_decision_to_json(const cg_decision *decision, cg_lang lang);
/* The same document as cg_decision_to_json, compact, written straight into buf without
 * allocating: the hot path of POST /v1/quote, where building and dumping a jansson tree cost
 * more than deciding. Returns the length written, or 0 when buf_bytes is too small
 * (CG_DECISION_JSON_BYTES_MAX always suffices). tests/engine/test_json.c checks that both
 * renderers give equal documents for every request of a varied mix. */
#define CG_DECISION_JSON_BYTES_MAX 4096
size_t cg_decision_write_json(const cg_decision *decision, cg_lang lang, char *buf, size_t buf_bytes);
/* One item of the above. */
json_t *cg_item_to_json(const cg_decision *decision, int item, cg_lang lang);
/* {"benefits": [{"model", "variant", "benefit", "expires_at", "reason"}]} */
json_t *cg_active_benefits_to_json(const cg_policy *policy, const cg_active_benefit *list,
                                   int count, cg_lang lang);
/* {"error": {"code", "message", "field"?, "suggestions": [...]}} */
json_t *cg_err_to_json(const cg_err *err);

#endif
