/* fuzz_quote.c — libFuzzer target: a request as text against the bundled policy. The input is
 * split on newlines into plan, billing, joined, model, variant, agent model, kind, prompt, at.
 * Prepare must accept or refuse with a field; a decision must add up and render. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "creditgate/engine.h"
#include "creditgate/engine_json.h"

#define FIELDS 9

static cg_policy_set quote_set;
static cg_engine quote_engine;
static int quote_ready;

static int quote_setup(void) {
    cg_err err;
    cg_policy_set_init(&quote_set);
    if (cg_policy_set_load_file(&quote_set, "policy/carat.yaml", &err)) return -1;
    return cg_engine_init(&quote_engine, &quote_set, &err) ? -1 : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!quote_ready) quote_ready = quote_setup();
    if (quote_ready < 0) abort();
    if (size > 16 * 1024) return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char *field[FIELDS] = {NULL};
    char *cursor = text;
    for (int i = 0; i < FIELDS && cursor; i++) {
        field[i] = cursor;
        cursor = strchr(cursor, '\n');
        if (cursor) *cursor++ = '\0';
    }
    cg_quote_input in = {.plan = field[0], .billing = field[1], .joined = field[2], .model = field[3],
                         .variant = field[4] && field[4][0] ? field[4] : NULL,
                         .agent_model = field[5] && field[5][0] ? field[5] : NULL,
                         .agent_kind = field[6] && field[6][0] ? field[6] : NULL,
                         .prompt = field[7] && field[7][0] ? field[7] : NULL};
    cg_err err = {0};
    if (!field[8] || cg_time_parse(field[8], 9 * 3600, &in.at_us, &err)) in.at_us = INT64_C(1790000000000000);
    cg_decision d;
    if (cg_engine_quote(&quote_engine, &in, &d, &err) == CG_OK) {
        int64_t total = 0;
        for (int i = 0; i < d.item_count; i++) {
            if (d.items[i].unlimited != (d.items[i].credits == 0 && d.items[i].reason == CG_REASON_UNLIMITED)) abort();
            total += d.items[i].credits;
        }
        if (total != d.total_credits || total < 0) abort();
        json_decref(cg_decision_to_json(&d, CG_LANG_EN));
        json_decref(cg_decision_to_json(&d, CG_LANG_KO));
    } else if (err.msg[0] == '\0' || err.field[0] == '\0') {
        abort(); /* every refusal names what and where */
    } else {
        json_decref(cg_err_to_json(&err));
    }
    free(text);
    return 0;
}
