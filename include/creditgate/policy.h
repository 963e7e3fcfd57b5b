/* policy.h — the validated policy model: plans, models, benefits, agent routing.
 *
 * A policy is read from a human-edited YAML file (libfyaml) by cg_policy_load_file and
 * validated completely before it is returned; every error names file:line:col. The model
 * here holds ids as small indices so the engine (engine.h) can decide without strings.
 * A cg_policy_set holds several versions; the one in force at an instant is the latest whose
 * effective_at_us is not after it. The policy is immutable once loaded. */
#ifndef CREDITGATE_POLICY_H
#define CREDITGATE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "creditgate/err.h"
#include "creditgate/time.h"

#define CG_ID_BYTES_MAX 48
#define CG_NAME_BYTES_MAX 64
#define CG_NOTE_BYTES_MAX 256
#define CG_PLANS_MAX 16
#define CG_BILLINGS_MAX 4
#define CG_MODELS_MAX 128
#define CG_VARIANTS_MAX 8
#define CG_ALIASES_MAX 8
#define CG_BENEFITS_MAX 128
#define CG_BENEFIT_COVERS_MAX 16
#define CG_RESTRICTIONS_MAX 16
#define CG_AGENT_ROUTES_MAX 8
#define CG_PHRASES_MAX 16
#define CG_AGENT_MODELS_MAX 4
#define CG_POLICY_VERSIONS_MAX 32
#define CG_CREDITS_MAX INT64_C(1000000000)

typedef enum cg_model_kind {
    CG_KIND_IMAGE = 0,
    CG_KIND_VIDEO = 1,
    CG_KIND_CONVERSATION = 2,
} cg_model_kind;

typedef struct cg_text { /* a sentence in both languages the product speaks */
    char en[CG_NOTE_BYTES_MAX];
    char ko[CG_NOTE_BYTES_MAX];
} cg_text;

typedef struct cg_plan {
    char id[CG_ID_BYTES_MAX];
    char name[CG_NAME_BYTES_MAX];
    char name_ko[CG_NAME_BYTES_MAX];
    bool paid;
    int inherits; /* plan index whose benefits this plan also receives, or -1 */
} cg_plan;

typedef struct cg_variant {
    char id[CG_ID_BYTES_MAX];
    char name[CG_NAME_BYTES_MAX];
    int64_t credits; /* per unit */
    cg_text note;    /* shown when this variant is charged, e.g. "4K is paid for all" */
} cg_variant;

typedef struct cg_model {
    char id[CG_ID_BYTES_MAX];
    char name[CG_NAME_BYTES_MAX];
    char aliases[CG_ALIASES_MAX][CG_NAME_BYTES_MAX];
    int alias_count;
    cg_model_kind kind;
    int64_t credits; /* per unit when the model has no variants */
    cg_variant variants[CG_VARIANTS_MAX];
    int variant_count;
    cg_text note; /* shown when this model is charged, e.g. "a separate model from Nanobanana" */
    int line, col; /* where it was written */
} cg_model;

typedef struct cg_cover { /* one model and which of its variants a benefit covers */
    int model;
    uint32_t variant_mask; /* bit i = variants[i]; all bits when the model has no variants */
} cg_cover;

/* A joined-date window: inclusive Seoul calendar dates; CG_DATE_MIN/MAX for open ends. */
typedef struct cg_window {
    cg_date from;
    cg_date to;
} cg_window;

typedef struct cg_duration {
    int years, months, days; /* all zero: the benefit does not end */
} cg_duration;

typedef struct cg_benefit {
    char id[CG_ID_BYTES_MAX];
    cg_cover covers[CG_BENEFIT_COVERS_MAX];
    int cover_count;
    uint32_t plan_mask_named;   /* plans as written (all paid plans when omitted) */
    uint32_t plan_mask;         /* after inheritance: what the engine checks */
    bool plans_omitted;
    uint32_t billing_mask;
    cg_window joined;
    cg_duration duration;       /* from the joined date, ending at 00:00 policy time */
    int line, col;              /* where it was written, for `policy check` */
} cg_benefit;

/* "Max annual benefits apply to signups on or after May 22, 2026": members on these plans
 * and billings receive no unlimited benefit unless they joined inside the window. */
typedef struct cg_restriction {
    char id[CG_ID_BYTES_MAX];
    uint32_t plan_mask;
    uint32_t billing_mask;
    cg_window joined;
    cg_text note;
} cg_restriction;

/* Agent 2.0: a phrase in the prompt that explicitly asks for another model. */
typedef struct cg_agent_route {
    int model;
    char phrases[CG_PHRASES_MAX][CG_NAME_BYTES_MAX]; /* normalized lower case */
    int phrase_count;
} cg_agent_route;

typedef struct cg_agent_model { /* lite | standard | soul → a conversation model */
    char id[CG_ID_BYTES_MAX];
    int model;
} cg_agent_model;

#define CG_NAMES_MAX (CG_MODELS_MAX * (CG_ALIASES_MAX + 2))

typedef struct cg_name_entry { /* a model's id, name or alias in normalized form */
    char norm[CG_NAME_BYTES_MAX];
    int model;
} cg_name_entry;

typedef struct cg_policy {
    char version[CG_ID_BYTES_MAX];
    int64_t effective_at_us;
    char timezone[CG_NAME_BYTES_MAX];
    int32_t utc_offset_s;
    int64_t hold_ttl_s;
    char source_path[256];
    cg_plan plans[CG_PLANS_MAX];
    int plan_count;
    char billings[CG_BILLINGS_MAX][CG_ID_BYTES_MAX];
    int billing_count;
    cg_model models[CG_MODELS_MAX];
    int model_count;
    cg_benefit benefits[CG_BENEFITS_MAX];
    int benefit_count;
    cg_restriction restrictions[CG_RESTRICTIONS_MAX];
    int restriction_count;
    int agent_default_video_model; /* -1 if none */
    int agent_default_image_model; /* -1 if none */
    cg_agent_route agent_routes[CG_AGENT_ROUTES_MAX];
    int agent_route_count;
    cg_agent_model agent_models[CG_AGENT_MODELS_MAX];
    int agent_model_count;
    cg_name_entry names[CG_NAMES_MAX];
    int name_count;
} cg_policy;

/* Loads and validates one policy document. On success *out is owned by the caller
 * (cg_policy_free). On failure err says "path:line:col: what is wrong". */
int cg_policy_load_file(const char *path, cg_policy **out, cg_err *err);
int cg_policy_load_string(const char *text, const char *name, cg_policy **out, cg_err *err);
void cg_policy_free(cg_policy *policy);

/* Lookups by exact id; return the index or -1. */
int cg_policy_plan_find(const cg_policy *policy, const char *id);
int cg_policy_billing_find(const cg_policy *policy, const char *id);
int cg_policy_model_find_id(const cg_policy *policy, const char *id);
int cg_policy_variant_find(const cg_model *model, const char *id);
int cg_policy_agent_model_find(const cg_policy *policy, const char *id);
const char *cg_model_kind_name(cg_model_kind kind);
/* Lower-cases ASCII and drops spaces, '-', '_', '(' and ')': "Nanobanana-2" → "nanobanana2".
 * Returns false when the result does not fit. */
bool cg_name_normalize(const char *text, char *out, size_t out_bytes);

/* Several versions of the policy, ordered by effective instant. Owns its policies. */
typedef struct cg_policy_set {
    cg_policy *versions[CG_POLICY_VERSIONS_MAX];
    int count;
} cg_policy_set;

void cg_policy_set_init(cg_policy_set *set);
/* Takes ownership of policy (freed on failure too). Refuses a duplicate version or instant. */
int cg_policy_set_add_take(cg_policy_set *set, cg_policy *policy, cg_err *err);
/* Loads every YAML document of the file (one version each) into set. */
int cg_policy_set_load_file(cg_policy_set *set, const char *path, cg_err *err);
/* The version in force at at_us, or NULL when at_us is before every version. */
const cg_policy *cg_policy_set_at(const cg_policy_set *set, int64_t at_us);
void cg_policy_set_free(cg_policy_set *set);

#endif
