/* verify.c — `ledger verify`: recomputes every grant's remaining/held and every charge's
 * held/captured − refunded from the append-only journal and compares them with the stored
 * rows and the ledger invariants. Read-only; runs inside the writer's transaction so it sees
 * one consistent state. Storage-independent (store.h scans). */
#include "internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct verify_ctx {
    cg_verify_report *report;
    char last_member[CG_MEMBER_ID_BYTES_MAX];
} verify_ctx;

__attribute__((format(printf, 2, 3))) static void problem(cg_verify_report *r,
                                                          const char *fmt, ...) {
    if (r->problem_count < CG_VERIFY_PROBLEMS_MAX) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->problems[r->problem_count], sizeof r->problems[0], fmt, ap);
        va_end(ap);
    }
    r->problem_count++;
}

static int check_grant(void *ctx_, const cg_grant *g, const cg_store_sum *sum) {
    verify_ctx *ctx = ctx_;
    cg_verify_report *r = ctx->report;
    r->grants++;
    if (strcmp(ctx->last_member, g->member_id) != 0) {
        r->members++;
        snprintf(ctx->last_member, sizeof ctx->last_member, "%s", g->member_id);
    }
    if (sum->delta_remaining != g->remaining)
        problem(r, "%s/%s: remaining %" PRId64 " but the journal sums to %" PRId64,
                g->member_id, g->grant_id, g->remaining, sum->delta_remaining);
    if (sum->delta_held != g->held)
        problem(r, "%s/%s: held %" PRId64 " but the journal sums to %" PRId64, g->member_id,
                g->grant_id, g->held, sum->delta_held);
    if (g->held < 0 || g->held > g->remaining || g->remaining < 0)
        problem(r, "%s/%s: invariant 0 <= held (%" PRId64 ") <= remaining (%" PRId64 ") broken",
                g->member_id, g->grant_id, g->held, g->remaining);
    if (g->expired && g->remaining != g->held)
        problem(r, "%s/%s: expired with %" PRId64 " unheld credits still counted",
                g->member_id, g->grant_id, g->remaining - g->held);
    return 0;
}

static int check_charge(void *ctx_, const cg_charge *c, const cg_store_sum *sum) {
    cg_verify_report *r = ((verify_ctx *)ctx_)->report;
    r->charges++;
    int64_t held = 0, captured = 0, refunded = 0;
    for (int i = 0; i < c->part_count; i++) {
        held += c->parts[i].held;
        captured += c->parts[i].captured;
        refunded += c->parts[i].refunded;
    }
    bool open = c->status == CG_CHARGE_HELD;
    if (sum->delta_held != c->held || c->held != (open ? held : 0))
        problem(r, "%s/%s: held %" PRId64 ", parts %" PRId64 ", journal %" PRId64, c->member_id,
                c->charge_id, c->held, held, sum->delta_held);
    if (-sum->delta_remaining != c->captured - c->refunded)
        problem(r, "%s/%s: captured %" PRId64 " - refunded %" PRId64 " but the journal moved %"
                PRId64, c->member_id, c->charge_id, c->captured, c->refunded,
                -sum->delta_remaining);
    if (captured != c->captured || refunded != c->refunded || c->refunded > c->captured)
        problem(r, "%s/%s: parts disagree with totals", c->member_id, c->charge_id);
    if (held != c->credits || c->captured > c->credits)
        problem(r, "%s/%s: %" PRId64 " credits quoted but %" PRId64 " held", c->member_id,
                c->charge_id, c->credits, held);
    return 0;
}

int ledger_verify(ledger_shard *l, cg_verify_report *out, cg_err *err) {
    assert(l && out);
    memset(out, 0, sizeof *out);
    verify_ctx ctx = {.report = out};
    cg_store *s = l->store;
    int rc = s->ops->scan_grants(s, check_grant, &ctx, err);
    if (!rc) rc = s->ops->scan_charges(s, check_charge, &ctx, err);
    if (!rc) rc = s->ops->count_entries(s, &out->entries, err);
    if (rc) return rc;
    if (out->problem_count > 0)
        return cg_err_set(err, CG_ECONFLICT, "ledger verify found %" PRId64 " difference(s); "
                          "first: %s", out->problem_count, out->problems[0]);
    return CG_OK;
}
