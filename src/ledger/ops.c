/* ops.c — the ledger's rules, applied by the writer one call at a time (ledger.c run_batch):
 * members, grants, charge = quote + hold, capture, release, refund, the expiry sweep and the
 * reads. Storage-independent: rows come and go only through store.h; no locking here (the
 * writer is the only thread in this file at a time). Every movement of credits appends to the
 * journal in the same transaction as the row it changes, so verify.c can recompute everything. */
#include "internal.h"

#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---- */

static int check_text(const char *text, const char *field, size_t bytes_max, cg_err *err) {
    if (!text || !*text) return cg_err_set_field(err, CG_EINVAL, field, "%s is required", field);
    if (strlen(text) >= bytes_max)
        return cg_err_set_field(err, CG_ELIMIT, field, "%s is longer than %zu bytes", field,
                                bytes_max - 1);
    return CG_OK;
}

static int check_member_key(const char *member_id, const char *key, cg_err *err) {
    int rc = check_text(member_id, "member_id", CG_MEMBER_ID_BYTES_MAX, err);
    if (!rc) rc = check_text(key, "idempotency_key", CG_IDEMPOTENCY_KEY_BYTES_MAX, err);
    return rc;
}

static void new_id(const char *prefix, char *out, size_t out_bytes) {
    uint8_t raw[8];
    randombytes_buf(raw, sizeof raw);
    char hex[2 * sizeof raw + 1];
    sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
    snprintf(out, out_bytes, "%s%s", prefix, hex);
}

/* A charge id that sorts in creation order: "ch_t", 13 hex digits of an instant that only
 * grows (now, or one microsecond past the last id), 8 random hex digits — 25 characters.
 * Listing a member's charges newest first then needs no index of its own (SQLite store);
 * older ids are "ch_" and 16 random hex digits, and sort before every "ch_t" id. */
static void new_charge_id(ledger_shard *l, int64_t now_us, char *out, size_t out_bytes) {
    static const char digits[] = "0123456789abcdef";
    enum { TIME_HEX = 13, RANDOM_BYTES = 4, ID_CHARS = 4 + TIME_HEX + 2 * RANDOM_BYTES };
    _Static_assert(ID_CHARS < CG_OBJECT_ID_BYTES_MAX, "a charge id fits an object id");
    _Static_assert(LEDGER_ID_RANDOM_BYTES % RANDOM_BYTES == 0, "ids take whole draws");
    assert(out_bytes > ID_CHARS);
    int64_t t = now_us > l->charge_id_us ? now_us : l->charge_id_us + 1;
    l->charge_id_us = t;
    if (l->id_random_used == 0) randombytes_buf(l->id_random, sizeof l->id_random);
    const uint8_t *raw = l->id_random + l->id_random_used;
    l->id_random_used = (l->id_random_used + RANDOM_BYTES) % LEDGER_ID_RANDOM_BYTES;
    memcpy(out, "ch_t", 4);
    assert((uint64_t)t >> (4 * TIME_HEX) == 0); /* until the year 2112 */
    for (int i = 0; i < TIME_HEX; i++)
        out[4 + i] = digits[((uint64_t)t >> (4 * (TIME_HEX - 1 - i))) & 15];
    for (int i = 0; i < RANDOM_BYTES; i++) {
        out[4 + TIME_HEX + 2 * i] = digits[raw[i] >> 4];
        out[4 + TIME_HEX + 2 * i + 1] = digits[raw[i] & 15];
    }
    out[ID_CHARS] = 0;
}

/* Truncating string copy; not snprintf, which cost ~5% of a charge in callgrind. */
static void copy(char *dst, size_t dst_bytes, const char *src) {
    assert(dst_bytes > 0);
    size_t n = src ? strnlen(src, dst_bytes - 1) : 0;
    if (n) memcpy(dst, src, n);
    dst[n] = 0;
}

/* Request fingerprint for idempotency: every field, length-prefixed so "a","bc" ≠ "ab","c". */
typedef struct hasher {
    crypto_generichash_state st;
} hasher;

static void hash_init(hasher *h, int op) {
    crypto_generichash_init(&h->st, NULL, 0, 16);
    crypto_generichash_update(&h->st, (const uint8_t *)&op, sizeof op);
}

static void hash_text(hasher *h, const char *text) {
    uint64_t n = text ? strlen(text) + 1 : 0;
    crypto_generichash_update(&h->st, (const uint8_t *)&n, sizeof n);
    if (text) crypto_generichash_update(&h->st, (const uint8_t *)text, n - 1);
}

static void hash_int(hasher *h, int64_t v) {
    crypto_generichash_update(&h->st, (const uint8_t *)&v, sizeof v);
}

static void hash_final(hasher *h, uint8_t out[16]) { crypto_generichash_final(&h->st, out, 16); }

/* Looks the key up. *found: a replay of the same request (object_id filled). A key used for
 * another request is CG_ECONFLICT. */
static int idem_lookup(cg_store *s, const char *member_id, const char *key, int op,
                       const uint8_t hash[16], char *object_id, bool *found, cg_err *err) {
    cg_store_idem row;
    *found = false;
    cg_err miss;
    int rc = s->ops->idem_get(s, member_id, key, &row, &miss);
    if (rc == CG_ENOTFOUND) return CG_OK;
    if (rc) {
        *err = miss;
        return rc;
    }
    if (row.op != op || memcmp(row.request_hash, hash, 16) != 0)
        return cg_err_set_field(err, CG_ECONFLICT, "idempotency_key",
                                "idempotency key '%s' was already used for a different request",
                                key);
    copy(object_id, CG_OBJECT_ID_BYTES_MAX, row.object_id);
    *found = true;
    return CG_OK;
}

/* One call's idempotency key, from idem_begin to idem_end. */
typedef struct idem_call {
    cg_store_idem row;
    bool claimed; /* already stored by idem_begin (store idem_claim) */
} idem_call;

/* Claims the key for object_id (the id this call will create or act on), or finds it used:
 * *found for a replay of the same request (replay_id filled), CG_ECONFLICT for another
 * request. A store with idem_claim writes the key here, in one statement; the call's
 * savepoint removes it again if the call then fails, so failed calls still record nothing. */
static int idem_begin(cg_store *s, idem_call *ic, const char *member_id, const char *key,
                      int op, const uint8_t hash[16], const char *object_id, int64_t now_us,
                      char *replay_id, bool *found, cg_err *err) {
    memset(ic, 0, sizeof *ic);
    ic->row.op = op;
    ic->row.created_at_us = now_us;
    copy(ic->row.member_id, sizeof ic->row.member_id, member_id);
    copy(ic->row.key, sizeof ic->row.key, key);
    memcpy(ic->row.request_hash, hash, 16);
    copy(ic->row.object_id, sizeof ic->row.object_id, object_id);
    if (!s->ops->idem_claim)
        return idem_lookup(s, member_id, key, op, hash, replay_id, found, err);
    cg_store_idem existing;
    *found = false;
    int rc = s->ops->idem_claim(s, &ic->row, &ic->claimed, &existing, err);
    if (rc || ic->claimed) return rc;
    if (existing.op != op || memcmp(existing.request_hash, hash, 16) != 0)
        return cg_err_set_field(err, CG_ECONFLICT, "idempotency_key",
                                "idempotency key '%s' was already used for a different request",
                                key);
    copy(replay_id, CG_OBJECT_ID_BYTES_MAX, existing.object_id);
    *found = true;
    return CG_OK;
}

/* Records the key with the effect, unless idem_begin already did. */
static int idem_end(cg_store *s, const idem_call *ic, cg_err *err) {
    return ic->claimed ? CG_OK : s->ops->idem_insert(s, &ic->row, err);
}

/* For a call that decides before it writes: `checked` is its checks' outcome, nothing written
 * yet. Passed: claims the key (idem_begin). Refused by a rule: the key is only looked up, and
 * a replay (*found) or a conflict answers instead of the refusal, which stands otherwise. */
static int idem_after_checks(cg_store *s, idem_call *ic, int checked, const char *member_id,
                             const char *key, int op, const uint8_t hash[16],
                             const char *object_id, int64_t now_us, char *replay_id,
                             bool *found, cg_err *err) {
    *found = false;
    if (!checked)
        return idem_begin(s, ic, member_id, key, op, hash, object_id, now_us, replay_id, found,
                          err);
    if (!ledger_rc_is_refusal(checked)) return checked;
    cg_err refused = *err;
    int rc = idem_lookup(s, member_id, key, op, hash, replay_id, found, err);
    if (rc || *found) return rc;
    *err = refused;
    return checked;
}

/* Appends journal entries for one member, numbering them after the last stored seq. */
typedef struct journal {
    ledger_shard *ledger;
    cg_store *store;
    const char *member_id;
    int64_t now_us;
    int64_t seq;
    bool loaded;
} journal;

static int journal_add(journal *j, cg_journal_kind kind, const char *grant_id,
                       const char *charge_id, int64_t delta_remaining, int64_t delta_held,
                       const char *note, cg_err *err) {
    assert(delta_remaining != 0 || delta_held != 0);
    if (!j->loaded) {
        int rc = lg_journal_last_seq(j->ledger, j->member_id, &j->seq, err);
        if (rc) return rc;
        j->loaded = true;
    }
    cg_journal_entry e = {.seq = ++j->seq, .at_us = j->now_us, .kind = kind,
                          .delta_remaining = delta_remaining, .delta_held = delta_held};
    copy(e.member_id, sizeof e.member_id, j->member_id);
    copy(e.grant_id, sizeof e.grant_id, grant_id);
    copy(e.charge_id, sizeof e.charge_id, charge_id);
    copy(e.note, sizeof e.note, note);
    int rc = j->store->ops->journal_append(j->store, &e, err);
    if (!rc) lg_journal_appended(j->ledger, j->member_id, e.seq);
    return rc;
}

/* Spendable at now_us: started, not past expiry (swept or not). */
static bool grant_live(const cg_grant *g, int64_t now_us) {
    return !g->expired && g->starts_at_us <= now_us && now_us < g->expires_at_us;
}

static int64_t grant_free(const cg_grant *g) {
    assert(g->held >= 0 && g->held <= g->remaining);
    return g->remaining - g->held;
}

/* Spending order: priority, soonest expiry (never-expiring last), promotional before paid,
 * oldest, then id so the order is total. */
static int grant_order(const void *a_, const void *b_) {
    const cg_grant *a = a_, *b = b_;
    if (a->priority != b->priority) return a->priority < b->priority ? -1 : 1;
    if (a->expires_at_us != b->expires_at_us) return a->expires_at_us < b->expires_at_us ? -1 : 1;
    if (a->category != b->category) return a->category == CG_CATEGORY_PROMO ? -1 : 1;
    if (a->created_at_us != b->created_at_us) return a->created_at_us < b->created_at_us ? -1 : 1;
    return strcmp(a->grant_id, b->grant_id);
}

/* ---- members ---- */

static int member_validate(const ledger_shard *l, const cg_member_put_input *in, int64_t eff_us,
                           cg_err *err) {
    int rc = check_member_key(in->member_id, in->idempotency_key, err);
    if (!rc) rc = check_text(in->plan, "plan", CG_ID_BYTES_MAX, err);
    if (!rc) rc = check_text(in->billing, "billing", CG_ID_BYTES_MAX, err);
    if (rc || !l->config.engine) return rc;
    const cg_policy *p = cg_policy_set_at(l->config.engine->set, eff_us);
    if (!p) return cg_err_set_field(err, CG_EINVAL, "effective_at", "no policy in force then");
    if (cg_policy_plan_find(p, in->plan) < 0)
        return cg_err_set_field(err, CG_EINVAL, "plan", "unknown plan '%s' in policy %s",
                                in->plan, p->version);
    if (cg_policy_billing_find(p, in->billing) < 0)
        return cg_err_set_field(err, CG_EINVAL, "billing", "unknown billing '%s' in policy %s",
                                in->billing, p->version);
    return CG_OK;
}

static int op_member_put(ledger_shard *l, ledger_op *op, int64_t now_us) {
    const cg_member_put_input *in = op->in;
    cg_member_state *out = op->out;
    cg_store *s = l->store;
    int64_t eff_us = in->effective_at_us ? in->effective_at_us : now_us;
    int rc = member_validate(l, in, eff_us, &op->err);
    if (rc) return rc;
    hasher h;
    hash_init(&h, OP_MEMBER_PUT);
    hash_text(&h, in->member_id);
    hash_text(&h, in->plan);
    hash_text(&h, in->billing);
    hash_int(&h, in->joined_at_us);
    hash_int(&h, in->effective_at_us);
    uint8_t hash[16];
    hash_final(&h, hash);
    char object_id[CG_OBJECT_ID_BYTES_MAX], replay_id[CG_OBJECT_ID_BYTES_MAX];
    snprintf(object_id, sizeof object_id, "%" PRId64, eff_us);
    bool found;
    idem_call ic;
    rc = idem_begin(s, &ic, in->member_id, in->idempotency_key, OP_MEMBER_PUT, hash, object_id,
                    now_us, replay_id, &found, &op->err);
    if (rc) return rc;
    if (found) {
        if (op->replayed) *op->replayed = true;
        return s->ops->member_at(s, in->member_id, strtoll(replay_id, NULL, 10), out, &op->err);
    }
    cg_member_state row = {.joined_at_us = in->joined_at_us, .effective_at_us = eff_us,
                           .recorded_at_us = now_us};
    copy(row.member_id, sizeof row.member_id, in->member_id);
    copy(row.plan, sizeof row.plan, in->plan);
    copy(row.billing, sizeof row.billing, in->billing);
    if ((rc = s->ops->member_insert(s, &row, &op->err))) return rc;
    lg_member_put_done(l, &row);
    rc = idem_end(s, &ic, &op->err);
    if (!rc) *out = row;
    return rc;
}

/* ---- grants ---- */

static int grant_validate(const cg_grant_input *in, int64_t starts_us, int64_t expires_us,
                          cg_err *err) {
    int rc = check_member_key(in->member_id, in->idempotency_key, err);
    if (rc) return rc;
    if (in->credits < 1 || in->credits > CG_CREDITS_MAX)
        return cg_err_set_field(err, CG_EINVAL, "credits", "credits must be 1..%" PRId64,
                                (int64_t)CG_CREDITS_MAX);
    if (in->priority < -1 || in->priority > LEDGER_PRIORITY_MAX)
        return cg_err_set_field(err, CG_EINVAL, "priority", "priority must be 0..%d",
                                LEDGER_PRIORITY_MAX);
    if ((unsigned)in->source > CG_SOURCE_ADJUSTMENT || (unsigned)in->category > 1)
        return cg_err_set_field(err, CG_EINVAL, "source", "unknown source or category");
    if (expires_us <= starts_us)
        return cg_err_set_field(err, CG_EINVAL, "expires_at", "a grant must expire after it "
                                "starts");
    if (in->note && strlen(in->note) >= CG_GRANT_NOTE_BYTES_MAX)
        return cg_err_set_field(err, CG_ELIMIT, "note", "note is longer than %d bytes",
                                CG_GRANT_NOTE_BYTES_MAX - 1);
    return CG_OK;
}

/* Refuses a new open grant when the member already has CG_GRANTS_OPEN_MAX. */
static int grant_room(ledger_shard *l, const char *member_id, cg_err *err) {
    int count = 0;
    int rc = lg_grants_open(l, member_id, l->scratch_grants, CG_MEMBER_GRANTS_MAX, &count, err);
    if (!rc && count >= CG_GRANTS_OPEN_MAX)
        rc = cg_err_set(err, CG_ELIMIT, "member '%s' already has %d open grants", member_id,
                        CG_GRANTS_OPEN_MAX);
    return rc;
}

static int op_grant(ledger_shard *l, ledger_op *op, int64_t now_us) {
    const cg_grant_input *in = op->in;
    cg_grant *out = op->out;
    cg_store *s = l->store;
    int64_t starts_us = in->starts_at_us ? in->starts_at_us : now_us;
    int64_t expires_us = in->expires_at_us ? in->expires_at_us : CG_NO_END;
    int rc = grant_validate(in, starts_us, expires_us, &op->err);
    if (rc) return rc;
    hasher h;
    hash_init(&h, OP_GRANT);
    hash_text(&h, in->member_id);
    hash_int(&h, in->source);
    hash_int(&h, in->category);
    hash_int(&h, in->priority);
    hash_int(&h, in->credits);
    hash_int(&h, in->starts_at_us);
    hash_int(&h, in->expires_at_us);
    hash_text(&h, in->note);
    uint8_t hash[16];
    hash_final(&h, hash);
    cg_grant g = {.source = in->source, .category = in->category,
                  .priority = in->priority < 0 ? LEDGER_PRIORITY_DEFAULT : in->priority,
                  .credits = in->credits, .remaining = in->credits, .starts_at_us = starts_us,
                  .expires_at_us = expires_us, .created_at_us = now_us};
    new_id("gr_", g.grant_id, sizeof g.grant_id);
    char replay_id[CG_OBJECT_ID_BYTES_MAX];
    bool found;
    idem_call ic;
    rc = idem_begin(s, &ic, in->member_id, in->idempotency_key, OP_GRANT, hash, g.grant_id,
                    now_us, replay_id, &found, &op->err);
    if (rc) return rc;
    if (found) {
        if (op->replayed) *op->replayed = true;
        return s->ops->grant_get(s, in->member_id, replay_id, out, &op->err);
    }
    if ((rc = lg_member_exists(l, in->member_id, &op->err))) return rc;
    if ((rc = grant_room(l, in->member_id, &op->err))) return rc;
    copy(g.member_id, sizeof g.member_id, in->member_id);
    copy(g.note, sizeof g.note, in->note);
    journal j = {.ledger = l, .store = s, .member_id = in->member_id, .now_us = now_us};
    if ((rc = lg_grant_insert(l, &g, &op->err))) return rc;
    rc = journal_add(&j, CG_JOURNAL_GRANT, g.grant_id, "", g.credits, 0, g.note, &op->err);
    if (!rc) rc = idem_end(s, &ic, &op->err);
    if (!rc) *out = g;
    return rc;
}

/* ---- charge: quote on the member's state at the instant of use, then hold ---- */

static const char *reason_code(cg_reason reason) {
    switch (reason) {
    case CG_REASON_UNLIMITED: return "unlimited";
    case CG_REASON_NO_BENEFIT: return "no_benefit";
    case CG_REASON_VARIANT_NOT_COVERED: return "variant_not_covered";
    case CG_REASON_NOT_ELIGIBLE: return "not_eligible";
    case CG_REASON_RESTRICTED: return "restricted";
    case CG_REASON_CONVERSATION: return "conversation";
    }
    return "unknown";
}

/* Copies the decision into the charge record: ids, credits, benefit and English reason. */
static void record_decision(cg_charge *c, const cg_decision *d) {
    const cg_policy *p = d->policy;
    copy(c->policy_version, sizeof c->policy_version, p->version);
    c->item_count = d->item_count;
    c->credits = d->total_credits;
    for (int i = 0; i < d->item_count; i++) {
        const cg_item *it = &d->items[i];
        cg_charge_item *ci = &c->items[i];
        assert(it->model >= 0 && it->model < p->model_count);
        const cg_model *m = &p->models[it->model];
        copy(ci->kind, sizeof ci->kind,
             it->kind == CG_ITEM_CONVERSATION ? "conversation" : "generation");
        copy(ci->model, sizeof ci->model, m->id);
        copy(ci->variant, sizeof ci->variant, it->variant >= 0 ? m->variants[it->variant].id : "");
        ci->count = it->count;
        ci->unlimited = it->unlimited;
        ci->credits = it->credits;
        copy(ci->benefit, sizeof ci->benefit, it->benefit >= 0 ? p->benefits[it->benefit].id : "");
        copy(ci->reason_code, sizeof ci->reason_code, reason_code(it->reason));
        cg_item_explain(d, i, CG_LANG_EN, ci->reason, sizeof ci->reason);
    }
}

static void charge_hash(const cg_charge_input *in, uint8_t hash[16]) {
    hasher h;
    hash_init(&h, OP_CHARGE);
    hash_text(&h, in->member_id);
    hash_text(&h, in->model);
    hash_text(&h, in->variant);
    hash_int(&h, in->count);
    hash_int(&h, in->at_us);
    hash_text(&h, in->agent_model);
    hash_text(&h, in->agent_kind);
    hash_text(&h, in->prompt);
    if (in->capture) hash_int(&h, 1); /* only then: keys stored before `capture` still match */
    hash_final(&h, hash);
}

/* Fills the request and member snapshot, and quotes it. */
static int charge_quote(ledger_shard *l, const cg_charge_input *in, int64_t at_us, cg_charge *c,
                        cg_err *err) {
    cg_member_state m;
    int rc = lg_member_at(l, in->member_id, at_us, &m, err);
    if (rc == CG_ENOTFOUND)
        return cg_err_set_field(err, CG_ENOTFOUND, "member_id",
                                "member '%s' has no recorded state at the instant of use",
                                in->member_id);
    if (rc) return rc;
    copy(c->member_id, sizeof c->member_id, in->member_id);
    copy(c->model, sizeof c->model, in->model);
    copy(c->variant, sizeof c->variant, in->variant);
    c->count = in->count ? in->count : 1;
    copy(c->agent_model, sizeof c->agent_model, in->agent_model);
    copy(c->agent_kind, sizeof c->agent_kind, in->agent_kind);
    copy(c->prompt, sizeof c->prompt, in->prompt);
    c->at_us = at_us;
    copy(c->plan, sizeof c->plan, m.plan);
    copy(c->billing, sizeof c->billing, m.billing);
    c->joined_at_us = m.joined_at_us;
    cg_quote_input q = {.plan = m.plan, .billing = m.billing, .joined = NULL,
                        .joined_at_us = m.joined_at_us, .model = in->model,
                        .variant = in->variant, .count = in->count, .at_us = at_us,
                        .agent_model = in->agent_model, .agent_kind = in->agent_kind,
                        .prompt = in->prompt};
    cg_decision d;
    if ((rc = cg_engine_quote(l->config.engine, &q, &d, err))) return rc;
    record_decision(c, &d);
    int64_t ttl_s = d.policy->hold_ttl_s > 0 ? d.policy->hold_ttl_s : l->config.hold_ttl_s;
    c->expires_at_us = ttl_s * CG_US_PER_S; /* made absolute by the caller */
    return CG_OK;
}

/* Picks the member's live grants with free credits into l->scratch_grants, in spending
 * order (*live of them), or refuses with CG_EINSUFFICIENT. Reads only: charge_take spends. */
static int charge_plan(ledger_shard *l, cg_charge *c, int64_t now_us, int *live, cg_err *err) {
    cg_grant *g = l->scratch_grants;
    int count = 0;
    int rc = lg_grants_open(l, c->member_id, g, CG_MEMBER_GRANTS_MAX, &count, err);
    int64_t available = 0;
    *live = 0;
    for (int i = 0; !rc && i < count; i++)
        if (grant_live(&g[i], now_us) && grant_free(&g[i]) > 0) {
            g[*live] = g[i];
            available += grant_free(&g[(*live)++]);
        }
    if (!rc && available < c->credits) {
        c->credits_available = available;
        rc = cg_err_set_field(err, CG_EINSUFFICIENT, "credits",
                              "insufficient credits: this needs %" PRId64 " credits, %" PRId64
                              " available; nothing was held", c->credits, available);
    }
    if (!rc) qsort(g, (size_t)*live, sizeof *g, grant_order);
    return rc;
}

/* Reserves c->credits from the grants charge_plan picked, or with `spend` takes them at once
 * (a charge captured in the same call: one capture entry per grant). */
static int charge_take(ledger_shard *l, cg_charge *c, int live, bool spend, journal *j,
                       cg_err *err) {
    cg_grant *g = l->scratch_grants;
    int64_t need = c->credits;
    int rc = CG_OK;
    for (int i = 0; !rc && i < live && need > 0; i++) {
        int64_t take = grant_free(&g[i]) < need ? grant_free(&g[i]) : need;
        assert(take > 0 && c->part_count < CG_CHARGE_PARTS_MAX);
        cg_charge_part *p = &c->parts[c->part_count++];
        copy(p->grant_id, sizeof p->grant_id, g[i].grant_id);
        p->source = g[i].source;
        p->category = g[i].category;
        p->held = take;
        if (spend) {
            p->captured = take;
            g[i].remaining -= take;
        } else {
            g[i].held += take;
        }
        need -= take;
        rc = lg_grant_update(l, &g[i], false, err);
        if (!rc && spend)
            rc = journal_add(j, CG_JOURNAL_CAPTURE, g[i].grant_id, c->charge_id, -take, 0, "",
                             err);
        else if (!rc)
            rc = journal_add(j, CG_JOURNAL_HOLD, g[i].grant_id, c->charge_id, 0, take, "", err);
    }
    assert(rc || need == 0);
    if (spend)
        c->captured = c->credits;
    else
        c->held = c->credits;
    return rc;
}

bool ledger_rc_is_refusal(int rc) {
    return rc == CG_EINVAL || rc == CG_ENOTFOUND || rc == CG_ECONFLICT ||
           rc == CG_EINSUFFICIENT || rc == CG_ELIMIT || rc == CG_ESTATE;
}

/* Decides everything before its first write — quote, member, credits — so that a refusal
 * leaves nothing to undo (ledger.c runs charges without a savepoint). A refused request may
 * still be the replay of one that succeeded: the key is looked up then, and the replay wins. */
static int op_charge(ledger_shard *l, ledger_op *op, int64_t now_us) {
    const cg_charge_input *in = op->in;
    cg_charge *c = op->out;
    cg_store *s = l->store;
    memset(c, 0, sizeof *c);
    int rc = check_member_key(in->member_id, in->idempotency_key, &op->err);
    if (rc) return rc;
    if (!l->config.engine)
        return cg_err_set(&op->err, CG_EINVAL, "this ledger was opened without a policy engine");
    uint8_t hash[16];
    charge_hash(in, hash);
    char charge_id[CG_OBJECT_ID_BYTES_MAX], replay_id[CG_OBJECT_ID_BYTES_MAX];
    new_charge_id(l, now_us, charge_id, sizeof charge_id);
    int live = 0;
    rc = charge_quote(l, in, in->at_us ? in->at_us : now_us, c, &op->err);
    if (!rc) {
        copy(c->charge_id, sizeof c->charge_id, charge_id);
        c->status = in->capture ? CG_CHARGE_CAPTURED : CG_CHARGE_HELD;
        c->created_at_us = now_us;
        c->expires_at_us += now_us;
        if (in->capture) c->settled_at_us = now_us;
        rc = charge_plan(l, c, now_us, &live, &op->err);
    }
    bool found;
    idem_call ic;
    rc = idem_after_checks(s, &ic, rc, in->member_id, in->idempotency_key, OP_CHARGE, hash,
                           charge_id, now_us, replay_id, &found, &op->err);
    if (rc) return rc;
    if (found) {
        if (op->replayed) *op->replayed = true;
        memset(c, 0, sizeof *c);
        return s->ops->charge_get(s, in->member_id, replay_id, c, &op->err);
    }
    journal j = {.ledger = l, .store = s, .member_id = in->member_id, .now_us = now_us};
    if ((rc = charge_take(l, c, live, in->capture, &j, &op->err))) return rc;
    if ((rc = s->ops->charge_insert(s, c, &op->err))) return rc;
    if ((rc = idem_end(s, &ic, &op->err))) return rc;
    if (!in->capture) l->holds_delta++;
    return CG_OK;
}

/* ---- settle: capture / release / expiry of a hold ---- */

/* Takes back `release` held credits of one part; on a grant already expired they expire too
 * (the expiry movement of credits that were held when the grant ran out). */
static int settle_part(ledger_shard *l, cg_charge *c, cg_charge_part *p, int64_t capture,
                       journal *j, cg_err *err) {
    cg_grant g;
    int rc = lg_grant_get(l, c->member_id, p->grant_id, &g, err);
    if (rc) return rc;
    int64_t release = p->held - capture;
    assert(capture >= 0 && release >= 0 && g.held >= p->held && g.remaining >= p->held);
    g.held -= p->held;
    g.remaining -= capture;
    p->captured = capture;
    if (capture > 0)
        rc = journal_add(j, CG_JOURNAL_CAPTURE, g.grant_id, c->charge_id, -capture, -capture, "",
                         err);
    if (!rc && release > 0)
        rc = journal_add(j, CG_JOURNAL_RELEASE, g.grant_id, c->charge_id, 0, -release, "", err);
    if (!rc && release > 0 && g.expired) {
        g.remaining -= release;
        rc = journal_add(j, CG_JOURNAL_EXPIRY, g.grant_id, "", -release, 0, c->charge_id, err);
    }
    if (!rc) rc = lg_grant_update(l, &g, false, err);
    return rc;
}

/* Settles a held charge at `final` credits (0: release), parts in spending order. */
static int settle(ledger_shard *l, cg_charge *c, int64_t final, cg_charge_status status,
                  int64_t now_us, cg_err *err) {
    assert(c->status == CG_CHARGE_HELD && final >= 0 && final <= c->held);
    cg_store *s = l->store;
    journal j = {.ledger = l, .store = s, .member_id = c->member_id, .now_us = now_us};
    int64_t left = final;
    int rc = CG_OK;
    for (int i = 0; !rc && i < c->part_count; i++) {
        cg_charge_part *p = &c->parts[i];
        int64_t capture = p->held < left ? p->held : left;
        left -= capture;
        rc = settle_part(l, c, p, capture, &j, err);
    }
    if (rc) return rc;
    assert(left == 0);
    c->status = status;
    c->captured = final;
    c->held = 0;
    c->settled_at_us = now_us;
    rc = s->ops->charge_update(s, c, err);
    if (!rc) l->holds_delta--;
    return rc;
}

static const char *op_name(ledger_op_kind kind) {
    return kind == OP_CAPTURE ? "capture" : kind == OP_RELEASE ? "release" : "refund";
}

static void settle_hash(const ledger_op *op, uint8_t hash[16]) {
    const cg_settle_input *in = op->in;
    hasher h;
    hash_init(&h, op->kind);
    hash_text(&h, in->member_id);
    hash_text(&h, in->charge_id);
    hash_int(&h, op->kind == OP_RELEASE ? 0 : in->credits);
    hash_text(&h, op->kind == OP_REFUND ? in->reason : NULL);
    hash_final(&h, hash);
}

/* A settle call's own rules for the charge it acts on: a refusal, or CG_OK. */
typedef int (*settle_check_fn)(const ledger_op *op, const cg_charge *c, int64_t now_us,
                               cg_err *err);

/* Loads the charge of a settle call into op->out and checks it before anything is written
 * (the charge unknown, or check's refusal), then settles the key (idem_after_checks); *done:
 * the key already did this, and op->out is the charge as it is now. */
static int settle_begin(ledger_shard *l, ledger_op *op, settle_check_fn check, idem_call *ic,
                        bool *done, int64_t now_us) {
    const cg_settle_input *in = op->in;
    cg_store *s = l->store;
    *done = false;
    int rc = check_member_key(in->member_id, in->idempotency_key, &op->err);
    if (!rc) rc = check_text(in->charge_id, "charge_id", CG_OBJECT_ID_BYTES_MAX, &op->err);
    if (rc) return rc;
    uint8_t hash[16];
    settle_hash(op, hash);
    char replay_id[CG_OBJECT_ID_BYTES_MAX];
    int got = s->ops->charge_get(s, in->member_id, in->charge_id, op->out, &op->err);
    rc = got ? got : check(op, op->out, now_us, &op->err);
    rc = idem_after_checks(s, ic, rc, in->member_id, in->idempotency_key, op->kind, hash,
                           in->charge_id, now_us, replay_id, done, &op->err);
    if (rc || !*done) return rc;
    if (op->replayed) *op->replayed = true;
    /* a replay: op->out holds the charge as read above, before any write, unless that failed */
    return got ? s->ops->charge_get(s, in->member_id, in->charge_id, op->out, &op->err) : CG_OK;
}

/* What a capture or release may settle: a held charge before its TTL; a capture, at most
 * what it holds. */
static int settle_check(const ledger_op *op, const cg_charge *c, int64_t now_us, cg_err *err) {
    const cg_settle_input *in = op->in;
    if (c->status != CG_CHARGE_HELD)
        return cg_err_set(err, CG_ESTATE, "cannot %s charge %s: it is %s, not held",
                          op_name(op->kind), c->charge_id, cg_charge_status_name(c->status));
    if (now_us >= c->expires_at_us)
        return cg_err_set(err, CG_ESTATE, "cannot %s charge %s: its hold expired (TTL) and its "
                          "credits are being released", op_name(op->kind), c->charge_id);
    if (op->kind == OP_CAPTURE && in->credits > c->held)
        return cg_err_set_field(err, CG_EINVAL, "credits",
                                "cannot capture %" PRId64 " credits: only %" PRId64
                                " are held by %s", in->credits, c->held, c->charge_id);
    return CG_OK;
}

static int op_capture_release(ledger_shard *l, ledger_op *op, int64_t now_us) {
    const cg_settle_input *in = op->in;
    cg_charge *c = op->out;
    bool done;
    idem_call ic;
    int rc = settle_begin(l, op, settle_check, &ic, &done, now_us);
    if (rc || done) return rc;
    int64_t final = 0;
    if (op->kind == OP_CAPTURE) final = in->credits < 0 ? c->held : in->credits;
    rc = settle(l, c, final, op->kind == OP_CAPTURE ? CG_CHARGE_CAPTURED : CG_CHARGE_RELEASED,
                now_us, &op->err);
    if (!rc) rc = idem_end(l->store, &ic, &op->err);
    return rc;
}

/* ---- refund ---- */

/* The member's open, non-expiring `refund` grant of category, or NULL. */
static cg_grant *open_refund_grant(cg_grant *open, int count, cg_grant_category category,
                                   int64_t now_us) {
    for (int i = 0; i < count; i++)
        if (open[i].source == CG_SOURCE_REFUND && open[i].category == category &&
            open[i].expires_at_us == CG_NO_END && grant_live(&open[i], now_us))
            return &open[i];
    return NULL;
}

/* Returns `amount` credits of category to a non-expiring `refund` grant: a new one while the
 * member has room under CG_GRANTS_OPEN_MAX (its note names the charge), else the member's open
 * refund grant of that category grows, else a new one beyond the limit — at most one per
 * category then, so a refund never fails for want of room (CG_GRANTS_REFUND_EXTRA). */
static int refund_grant(ledger_shard *l, const cg_charge *c, cg_grant_category category,
                        int64_t amount, const char *reason, journal *j, cg_err *err) {
    cg_store *s = l->store;
    int count = 0;
    int rc = lg_grants_open(l, c->member_id, l->scratch_grants, CG_MEMBER_GRANTS_MAX, &count,
                            err);
    if (rc) return rc;
    cg_grant *merge = count >= CG_GRANTS_OPEN_MAX && s->ops->grant_update_credits
                          ? open_refund_grant(l->scratch_grants, count, category, j->now_us)
                          : NULL;
    if (merge) {
        merge->credits += amount;
        merge->remaining += amount;
        rc = lg_grant_update(l, merge, true, err);
        if (!rc) rc = journal_add(j, CG_JOURNAL_REFUND, merge->grant_id, c->charge_id, amount, 0,
                                  reason, err);
        return rc;
    }
    if (count >= CG_MEMBER_GRANTS_MAX)
        return cg_err_set(err, CG_ELIMIT, "member '%s' already has %d open grants", c->member_id,
                          CG_MEMBER_GRANTS_MAX);
    cg_grant g = {.source = CG_SOURCE_REFUND, .category = category,
                  .priority = LEDGER_PRIORITY_DEFAULT, .credits = amount, .remaining = amount,
                  .starts_at_us = j->now_us, .expires_at_us = CG_NO_END,
                  .created_at_us = j->now_us};
    new_id("gr_", g.grant_id, sizeof g.grant_id);
    copy(g.member_id, sizeof g.member_id, c->member_id);
    snprintf(g.note, sizeof g.note, "refund of %s (source grants expired): %s", c->charge_id,
             reason ? reason : "");
    if ((rc = lg_grant_insert(l, &g, err))) return rc;
    return journal_add(j, CG_JOURNAL_REFUND, g.grant_id, c->charge_id, amount, 0, reason, err);
}

/* Returns credits part by part, latest-spent first. */
static int refund_parts(ledger_shard *l, cg_charge *c, int64_t amount, const char *reason,
                        int64_t now_us, cg_err *err) {
    cg_store *s = l->store;
    journal j = {.ledger = l, .store = s, .member_id = c->member_id, .now_us = now_us};
    int64_t to_new[2] = {0, 0}; /* by category, for sources that expired */
    int rc = CG_OK;
    for (int i = c->part_count - 1; i >= 0 && amount > 0 && !rc; i--) {
        cg_charge_part *p = &c->parts[i];
        int64_t r = p->captured - p->refunded < amount ? p->captured - p->refunded : amount;
        if (r <= 0) continue;
        amount -= r;
        p->refunded += r;
        cg_grant g;
        if ((rc = lg_grant_get(l, c->member_id, p->grant_id, &g, err))) break;
        if (g.expired || now_us >= g.expires_at_us) {
            to_new[p->category] += r;
            continue;
        }
        g.remaining += r;
        rc = lg_grant_update(l, &g, false, err);
        if (!rc) rc = journal_add(&j, CG_JOURNAL_REFUND, g.grant_id, c->charge_id, r, 0, reason,
                                  err);
    }
    assert(rc || amount == 0);
    for (int k = 0; k < 2 && !rc; k++)
        if (to_new[k] > 0) rc = refund_grant(l, c, (cg_grant_category)k, to_new[k], reason, &j, err);
    return rc;
}

/* What a refund may return: part or all of what a captured charge has not had back. */
static int refund_check(const ledger_op *op, const cg_charge *c, int64_t now_us, cg_err *err) {
    (void)now_us;
    const cg_settle_input *in = op->in;
    if (c->status != CG_CHARGE_CAPTURED)
        return cg_err_set(err, CG_ESTATE, "cannot refund charge %s: it is %s, not captured",
                          c->charge_id, cg_charge_status_name(c->status));
    int64_t refundable = c->captured - c->refunded;
    int64_t amount = in->credits < 0 ? refundable : in->credits;
    if (amount > refundable || amount <= 0)
        return cg_err_set_field(err, CG_EINVAL, "credits",
                                "cannot refund %" PRId64 " credits: charge %s captured %" PRId64
                                ", refunded %" PRId64 ", so at most %" PRId64 " can be refunded",
                                amount, c->charge_id, c->captured, c->refunded, refundable);
    if (in->reason && strlen(in->reason) >= CG_GRANT_NOTE_BYTES_MAX)
        return cg_err_set_field(err, CG_ELIMIT, "reason", "reason is longer than %d bytes",
                                CG_GRANT_NOTE_BYTES_MAX - 1);
    return CG_OK;
}

static int op_refund(ledger_shard *l, ledger_op *op, int64_t now_us) {
    const cg_settle_input *in = op->in;
    cg_charge *c = op->out;
    bool done;
    idem_call ic;
    int rc = settle_begin(l, op, refund_check, &ic, &done, now_us);
    if (rc || done) return rc;
    int64_t amount = in->credits < 0 ? c->captured - c->refunded : in->credits;
    if ((rc = refund_parts(l, c, amount, in->reason, now_us, &op->err))) return rc;
    c->refunded += amount;
    if ((rc = l->store->ops->charge_update(l->store, c, &op->err))) return rc;
    return idem_end(l->store, &ic, &op->err);
}

/* ---- sweep ---- */

/* Releases one hold past its TTL (status expired). */
static int expire_hold(ledger_shard *l, const cg_store_ref *ref, int64_t now_us, cg_err *err) {
    cg_store *s = l->store;
    cg_charge *c = malloc(sizeof *c);
    if (!c) return cg_err_set(err, CG_ENOMEM, "out of memory");
    int rc = s->ops->charge_get(s, ref->member_id, ref->object_id, c, err);
    if (!rc && c->status == CG_CHARGE_HELD) rc = settle(l, c, 0, CG_CHARGE_EXPIRED, now_us, err);
    free(c);
    return rc;
}

/* Journals the expiry of a grant's unheld credits; held ones expire when released. */
static int expire_grant(ledger_shard *l, const cg_store_ref *ref, int64_t now_us, cg_err *err) {
    cg_store *s = l->store;
    cg_grant g;
    int rc = lg_grant_get(l, ref->member_id, ref->object_id, &g, err);
    if (rc || g.expired) return rc;
    int64_t lost = grant_free(&g);
    g.remaining -= lost;
    g.expired = true;
    journal j = {.ledger = l, .store = s, .member_id = g.member_id, .now_us = now_us};
    if (lost > 0) rc = journal_add(&j, CG_JOURNAL_EXPIRY, g.grant_id, "", -lost, 0, "", err);
    if (!rc) rc = lg_grant_update(l, &g, false, err);
    return rc;
}

typedef int (*sweep_fn)(ledger_shard *l, const cg_store_ref *ref, int64_t now_us, cg_err *err);

/* Each item in its own savepoint: one broken row must not stop the others. */
static int sweep_each(ledger_shard *l, const cg_store_ref *refs, int count, sweep_fn fn,
                      int64_t now_us, cg_err *err) {
    cg_store *s = l->store;
    for (int i = 0; i < count; i++) {
        int rc = s->ops->savepoint(s, err);
        if (rc) return rc;
        cg_err item_err;
        ledger_cache_op_begin(l->cache);
        int64_t holds_delta = l->holds_delta;
        rc = fn(l, &refs[i], now_us, &item_err);
        if (rc) {
            ledger_cache_op_rollback(l->cache);
            l->holds_delta = holds_delta;
        }
        rc = rc ? s->ops->savepoint_rollback(s, err) : s->ops->savepoint_release(s, err);
        if (rc) return rc;
    }
    return CG_OK;
}

int ledger_sweep(ledger_shard *l, int64_t now_us, bool *more, cg_err *err) {
    cg_store *s = l->store;
    cg_store_ref refs[CG_LEDGER_SWEEP_PER_BATCH_MAX];
    int holds = 0, grants = 0, deleted = 0;
    int rc = s->ops->charges_due(s, now_us, refs, CG_LEDGER_SWEEP_PER_BATCH_MAX, &holds, err);
    if (!rc) rc = sweep_each(l, refs, holds, expire_hold, now_us, err);
    if (!rc) rc = s->ops->grants_due(s, now_us, refs, CG_LEDGER_SWEEP_PER_BATCH_MAX, &grants, err);
    if (!rc) rc = sweep_each(l, refs, grants, expire_grant, now_us, err);
    if (!rc)
        rc = s->ops->idem_purge(s, now_us - l->config.idempotency_keep_s * CG_US_PER_S,
                                CG_LEDGER_SWEEP_PER_BATCH_MAX, &deleted, err);
    *more = holds == CG_LEDGER_SWEEP_PER_BATCH_MAX || grants == CG_LEDGER_SWEEP_PER_BATCH_MAX ||
            deleted == CG_LEDGER_SWEEP_PER_BATCH_MAX;
    return rc;
}

/* ---- reads ---- */

static int op_balance(ledger_shard *l, ledger_op *op, int64_t now_us) {
    cg_balance *b = op->out;
    cg_store *s = l->store;
    memset(b, 0, sizeof *b);
    int rc = check_text(op->member_id, "member_id", CG_MEMBER_ID_BYTES_MAX, &op->err);
    if (!rc) rc = lg_member_exists(l, op->member_id, &op->err);
    if (!rc) rc = s->ops->grants_open(s, op->member_id, b->grants, CG_MEMBER_GRANTS_MAX,
                                      &b->grant_count, &op->err);
    if (rc) return rc;
    copy(b->member_id, sizeof b->member_id, op->member_id);
    b->at_us = now_us;
    qsort(b->grants, (size_t)b->grant_count, sizeof b->grants[0], grant_order);
    for (int i = 0; i < b->grant_count; i++) {
        const cg_grant *g = &b->grants[i];
        b->held += g->held;
        if (!grant_live(g, now_us)) continue;
        b->available += grant_free(g);
        if (g->category == CG_CATEGORY_PROMO) b->available_promo += grant_free(g);
        else b->available_paid += grant_free(g);
    }
    assert(b->available == b->available_paid + b->available_promo);
    return CG_OK;
}

static int op_history(ledger_shard *l, ledger_op *op) {
    if (op->limit < 1 || op->limit > CG_HISTORY_PAGE_MAX)
        return cg_err_set_field(&op->err, CG_EINVAL, "limit", "limit must be 1..%d",
                                CG_HISTORY_PAGE_MAX);
    int rc = check_text(op->member_id, "member_id", CG_MEMBER_ID_BYTES_MAX, &op->err);
    if (rc) return rc;
    cg_journal_entry *out = op->out;
    rc = l->store->ops->journal_page(l->store, op->member_id, op->after_seq, op->limit, out,
                                     op->count, &op->err);
    if (rc) return rc;
    *op->next_seq = *op->count == op->limit ? out[*op->count - 1].seq : 0;
    return CG_OK;
}

/* A page of the member's charges, newest first; the cursor is "<created_at_us>.<charge_id>"
 * of the last charge of the previous page. */
static int op_charges(ledger_shard *l, ledger_op *op) {
    cg_store *s = l->store;
    if (!s->ops->charges_page)
        return cg_err_set(&op->err, CG_EINVAL, "the %s store cannot list charges", s->ops->name);
    if (op->limit < 1 || op->limit > CG_CHARGES_PAGE_MAX)
        return cg_err_set_field(&op->err, CG_EINVAL, "limit", "limit must be 1..%d",
                                CG_CHARGES_PAGE_MAX);
    int rc = check_text(op->member_id, "member_id", CG_MEMBER_ID_BYTES_MAX, &op->err);
    if (!rc) rc = lg_member_exists(l, op->member_id, &op->err);
    if (rc) return rc;
    int64_t before_us = 0;
    char before_id[CG_OBJECT_ID_BYTES_MAX] = "";
    if (op->object_id && *op->object_id) {
        char *dot = NULL;
        before_us = strtoll(op->object_id, &dot, 10);
        if (!dot || *dot != '.' || !dot[1] || strlen(dot + 1) >= sizeof before_id)
            return cg_err_set_field(&op->err, CG_EINVAL, "before", "malformed cursor '%s'",
                                    op->object_id);
        copy(before_id, sizeof before_id, dot + 1);
    }
    cg_charge *out = op->out;
    rc = s->ops->charges_page(s, op->member_id, before_us, before_id, op->limit, out, op->count,
                              &op->err);
    if (rc) return rc;
    op->cursor[0] = 0;
    if (*op->count == op->limit) {
        const cg_charge *last = &out[*op->count - 1];
        snprintf(op->cursor, CG_CHARGES_CURSOR_BYTES_MAX, "%" PRId64 ".%s", last->created_at_us,
                 last->charge_id);
    }
    return CG_OK;
}

static int op_read(ledger_shard *l, ledger_op *op, int64_t now_us) {
    cg_store *s = l->store;
    switch (op->kind) {
    case OP_MEMBER_GET:
        if (check_text(op->member_id, "member_id", CG_MEMBER_ID_BYTES_MAX, &op->err))
            return op->err.code;
        return s->ops->member_at(s, op->member_id, op->at_us ? op->at_us : now_us, op->out,
                                 &op->err);
    case OP_MEMBER_HISTORY:
        if (op->limit < 1) return cg_err_set(&op->err, CG_EINVAL, "max must be positive");
        return s->ops->member_versions(s, op->member_id, op->out, op->limit, op->count,
                                       &op->err);
    case OP_CHARGE_GET:
        if (check_text(op->object_id, "charge_id", CG_OBJECT_ID_BYTES_MAX, &op->err))
            return op->err.code;
        return s->ops->charge_get(s, op->member_id, op->object_id, op->out, &op->err);
    case OP_BALANCE: return op_balance(l, op, now_us);
    case OP_HISTORY: return op_history(l, op);
    case OP_VERIFY: return ledger_verify(l, op->out, &op->err);
    case OP_CHARGES: return op_charges(l, op);
    default: break;
    }
    return cg_err_set(&op->err, CG_EINVAL, "unknown ledger operation %d", (int)op->kind);
}

/* A refund may still be refused after writing (CG_ELIMIT in refund_grant), and grants and
 * member versions validate as they go. */
bool ledger_op_refuses_first(ledger_op_kind kind) {
    return kind == OP_CHARGE || kind == OP_CAPTURE || kind == OP_RELEASE ||
           kind >= OP_MEMBER_GET;
}

int ledger_apply(ledger_shard *l, ledger_op *op, int64_t now_us) {
    assert(l && op);
    switch (op->kind) {
    case OP_MEMBER_PUT: return op_member_put(l, op, now_us);
    case OP_GRANT: return op_grant(l, op, now_us);
    case OP_CHARGE: return op_charge(l, op, now_us);
    case OP_CAPTURE:
    case OP_RELEASE: return op_capture_release(l, op, now_us);
    case OP_REFUND: return op_refund(l, op, now_us);
    default: return op_read(l, op, now_us);
    }
}
