/* engine.h — the decision path: is this request free under an unlimited benefit, or how
 * many credits does it deduct, and why.
 *
 * cg_engine_init compiles every loaded policy version into per-(model, variant) rule lists.
 * A request is first resolved (cg_engine_prepare: names → indices, text → instants, the
 * version in force chosen); cg_engine_decide then answers it with no allocation, no parsing
 * and no I/O. Reasons are codes plus indices; cg_item_explain renders them in English or
 * Korean only when someone reads them. */
#ifndef CREDITGATE_ENGINE_H
#define CREDITGATE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "creditgate/err.h"
#include "creditgate/policy.h"
#include "creditgate/time.h"

#define CG_DECISION_ITEMS_MAX 2
#define CG_RULES_PER_TARGET_MAX 8
#define CG_COUNT_MAX 1000
#define CG_PROMPT_BYTES_MAX 8192
#define CG_EXPLAIN_BYTES_MAX 512
#define CG_BENEFITS_LIST_MAX 256
#define CG_NO_END INT64_MAX

typedef enum cg_lang { CG_LANG_EN = 0, CG_LANG_KO = 1 } cg_lang;

typedef enum cg_item_kind { CG_ITEM_GENERATION = 0, CG_ITEM_CONVERSATION = 1 } cg_item_kind;

typedef enum cg_reason {
    CG_REASON_UNLIMITED = 0,      /* benefit covers it: 0 credits */
    CG_REASON_NO_BENEFIT,         /* no benefit covers this model at all (Midjourney) */
    CG_REASON_VARIANT_NOT_COVERED,/* other variants are covered, this one never (4K) */
    CG_REASON_NOT_ELIGIBLE,       /* nearest benefit exists; see lacks */
    CG_REASON_RESTRICTED,         /* a plan restriction withholds every benefit */
    CG_REASON_CONVERSATION,       /* agent conversation, charged even when generation is free */
} cg_reason;

/* What the member lacks for the nearest benefit (bits, may combine). */
enum {
    CG_LACKS_PLAN = 1 << 0,
    CG_LACKS_BILLING = 1 << 1,
    CG_LACKS_JOINED_EARLY = 1 << 2, /* joined before the window */
    CG_LACKS_JOINED_LATE = 1 << 3,  /* joined after the window */
    CG_LACKS_EXPIRED = 1 << 4,      /* the benefit's duration has ended */
};

/* How Agent 2.0 chose the generation model. */
typedef enum cg_agent_choice {
    CG_AGENT_NONE = 0,      /* not through the agent, or the caller named the model */
    CG_AGENT_DEFAULT,       /* no model asked for: the policy's default (Seedance 2.0) */
    CG_AGENT_PROMPT,        /* the prompt explicitly asked for it ("Carat Basic Video (LTX 2.3)") */
} cg_agent_choice;

typedef struct cg_member {
    int plan;     /* index into policy->plans */
    int billing;  /* index into policy->billings */
    cg_date joined;
} cg_member;

/* A request with every name resolved against one policy version. */
typedef struct cg_request {
    const cg_policy *policy;
    int version;          /* index into the engine's versions */
    cg_member member;
    int model;            /* generation model index */
    int variant;          /* -1 when the model has no variants */
    int64_t count;
    int64_t at_us;
    int agent_model;      /* index into policy->agent_models, -1 without the agent */
    cg_agent_choice agent_choice;
} cg_request;

typedef struct cg_item {
    cg_item_kind kind;
    int model;
    int variant;          /* -1 when none */
    int64_t count;
    bool unlimited;
    int64_t credits;      /* total for this item: unit price × count, 0 when unlimited */
    int benefit;          /* the benefit that made it free, or the nearest one; -1 if none */
    cg_reason reason;
    unsigned lacks;       /* CG_LACKS_* for CG_REASON_NOT_ELIGIBLE */
    int restriction;      /* index for CG_REASON_RESTRICTED, else -1 */
    int64_t benefit_ends_at_us; /* end of the benefit (CG_NO_END if open) */
    cg_agent_choice agent_choice;
} cg_item;

typedef struct cg_decision {
    const cg_policy *policy;
    int64_t at_us;
    cg_member member;
    cg_item items[CG_DECISION_ITEMS_MAX];
    int item_count;
    int64_t total_credits;
} cg_decision;

/* A request as text, the way the CLI, the HTTP API and the ledger receive it. */
typedef struct cg_quote_input {
    const char *plan;
    const char *billing;
    const char *joined;      /* "YYYY-MM-DD" or RFC 3339; NULL to use joined_at_us */
    int64_t joined_at_us;
    const char *model;       /* id, display name or alias; NULL only for an agent video */
    const char *variant;     /* NULL when the model has none (or named in `model`) */
    int64_t count;           /* 0 means 1 */
    int64_t at_us;
    const char *agent_model; /* lite | standard | soul; NULL without the agent */
    const char *agent_kind;  /* image | video; required with agent_model */
    const char *prompt;      /* the user's words to the agent, may be NULL */
} cg_quote_input;

typedef struct cg_rule_list {
    uint8_t benefits[CG_RULES_PER_TARGET_MAX];
    uint8_t count;
    bool any_variant_covered; /* some benefit covers another variant of this model */
} cg_rule_list;

typedef struct cg_engine_version {
    const cg_policy *policy;
    /* rules[model * CG_VARIANTS_MAX + variant_slot]; variant_slot 0 when no variants */
    cg_rule_list rules[CG_MODELS_MAX * CG_VARIANTS_MAX];
} cg_engine_version;

typedef struct cg_engine {
    const cg_policy_set *set; /* borrowed; must outlive the engine */
    cg_engine_version versions[CG_POLICY_VERSIONS_MAX];
    int version_count;
} cg_engine;

/* Compiles every version in set. The engine borrows set. */
int cg_engine_init(cg_engine *engine, const cg_policy_set *set, cg_err *err);
void cg_engine_free(cg_engine *engine);

/* Resolves a text request; err.field names the input at fault ("model", "joined", ...). */
int cg_engine_prepare(const cg_engine *engine, const cg_quote_input *in, cg_request *out,
                      cg_err *err);
/* The hot path: no allocation, no parsing, no I/O. Never fails on a prepared request. */
void cg_engine_decide(const cg_engine *engine, const cg_request *req, cg_decision *out);
/* prepare + decide. */
int cg_engine_quote(const cg_engine *engine, const cg_quote_input *in, cg_decision *out,
                    cg_err *err);

/* Index of the engine version in force at at_us, or -1 when at_us precedes every version. */
int cg_engine_version_index(const cg_engine *engine, int64_t at_us);
/* Resolves plan, billing and joined (text "YYYY-MM-DD"/RFC 3339, or joined_at_us when NULL). */
int cg_engine_resolve_member(const cg_policy *policy, const char *plan, const char *billing,
                             const char *joined, int64_t joined_at_us, cg_member *out,
                             cg_err *err);

/* Resolves a model name (id, display name or alias; case-, space- and dash-insensitive).
 * Returns the model index; if the name ends in a variant ("Nanobanana Pro 4K"), *variant is
 * set. On failure err holds up to three close names as suggestions. */
int cg_engine_resolve_model(const cg_policy *policy, const char *name, int *model,
                            int *variant, cg_err *err);

/* Renders the reason of one item, in English or Korean. Returns bytes written (truncated to
 * buf_bytes - 1). */
size_t cg_item_explain(const cg_decision *decision, int item, cg_lang lang, char *buf,
                       size_t buf_bytes);

/* One entry of a member's "Active benefits (혜택 사용중)". */
typedef struct cg_active_benefit {
    int model;
    int variant;              /* -1 for a model without variants */
    int benefit;
    int64_t expires_at_us;    /* CG_NO_END when open */
} cg_active_benefit;

/* Every model/variant unlimited for this member at at_us, in catalog order. */
int cg_engine_active_benefits(const cg_engine *engine, const char *plan, const char *billing,
                              const char *joined, int64_t joined_at_us, int64_t at_us,
                              const cg_policy **policy_out, cg_member *member_out,
                              cg_active_benefit *out, int out_max, int *count, cg_err *err);
/* Renders why an active benefit applies ("unlimited: ... until 2027-03-01"). */
size_t cg_active_benefit_explain(const cg_policy *policy, const cg_active_benefit *benefit,
                                 cg_lang lang, char *buf, size_t buf_bytes);
/* Describes a benefit in plain words, as `policy check` prints it. */
size_t cg_benefit_describe(const cg_policy *policy, int benefit, cg_lang lang, char *buf,
                           size_t buf_bytes);

int cg_lang_parse(const char *text, cg_lang *out, cg_err *err);

#endif
