/* policy_internal.h — what parse.c and policy.c share inside src/policy/. */
#ifndef CREDITGATE_POLICY_INTERNAL_H
#define CREDITGATE_POLICY_INTERNAL_H

#include "creditgate/policy.h"
#include "yaml.h"

/* Whole-policy checks after parsing: inheritance masks, name collisions, overlapping
 * benefits. Fills derived fields (plan_mask, names). */
int cg_policy_validate(cg_policy *policy, const yaml_ctx *y);

#endif
