/* engine_internal.h — what the files of src/engine/ share: the eligibility test that both
 * the decision path (engine.c) and the benefit listing use. */
#ifndef CREDITGATE_ENGINE_INTERNAL_H
#define CREDITGATE_ENGINE_INTERNAL_H

#include "creditgate/engine.h"

/* CG_LACKS_* bits for one benefit and member at at_us (0 = eligible); *ends_at_us is when
 * the benefit ends for this member (CG_NO_END when it has no duration). */
unsigned cg_benefit_lacks(const cg_policy *p, const cg_benefit *b, const cg_member *member,
                          int64_t at_us, int64_t *ends_at_us);
/* Index of the restriction that withholds every benefit from this member, or -1. */
int cg_member_restriction(const cg_policy *p, const cg_member *member);

#endif
