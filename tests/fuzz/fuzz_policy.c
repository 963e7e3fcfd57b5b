/* fuzz_policy.c — libFuzzer target: any bytes as a policy file. Loading must either succeed
 * (then compiling, describing every benefit and listing active benefits must not crash) or
 * fail with a located message; never crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "creditgate/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 64 * 1024) return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    cg_policy *p = NULL;
    cg_err err = {0};
    if (cg_policy_load_string(text, "fuzz.yaml", &p, &err) == CG_OK) {
        cg_policy_set set;
        cg_policy_set_init(&set);
        cg_engine engine;
        if (cg_policy_set_add_take(&set, p, &err) == CG_OK && cg_engine_init(&engine, &set, &err) == CG_OK) {
            char buf[CG_EXPLAIN_BYTES_MAX];
            for (int b = 0; b < p->benefit_count; b++) {
                cg_benefit_describe(p, b, CG_LANG_EN, buf, sizeof buf);
                cg_benefit_describe(p, b, CG_LANG_KO, buf, sizeof buf);
            }
            static cg_active_benefit list[CG_BENEFITS_LIST_MAX];
            const cg_policy *used;
            cg_member member;
            int count;
            if (p->plan_count && p->billing_count)
                (void)cg_engine_active_benefits(&engine, p->plans[0].id, p->billings[0], "2026-01-01", 0,
                                                p->effective_at_us, &used, &member, list, CG_BENEFITS_LIST_MAX,
                                                &count, &err);
            cg_engine_free(&engine);
        }
        cg_policy_set_free(&set);
    } else if (err.msg[0] == '\0') {
        abort(); /* a refusal must say why */
    }
    free(text);
    return 0;
}
