/* rows.c — the ledger's reads and writes of one member's rows (latest state, open grants,
 * journal seq) through the writer's cache (cache.c): a write goes to the store and then to the
 * cached copy; a read is answered from the cache and reaches the store only on a miss. With no
 * cache (config.cache_members_max 0, or a store without data_version) each call is the store
 * call it replaces. Rules stay in ops.c; this file only keeps the two copies equal. */
#include "internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* The cached copy of a member's state version. */
static void state_to_entry(member_entry *e, const cg_member_state *row) {
    e->has_state = true;
    memcpy(e->plan, row->plan, sizeof e->plan);
    memcpy(e->billing, row->billing, sizeof e->billing);
    e->joined_at_us = row->joined_at_us;
    e->effective_at_us = row->effective_at_us;
    e->recorded_at_us = row->recorded_at_us;
}

static member_entry *entry_for(ledger_shard *l, const char *member_id) {
    member_entry *e = ledger_cache_find(l->cache, member_id);
    return e ? e : ledger_cache_add(l->cache, member_id);
}

/* The member's latest version (from the cache, else the store, then cached). */
static int member_latest(ledger_shard *l, const char *member_id, cg_member_state *out,
                         cg_err *err) {
    member_entry *e = ledger_cache_find(l->cache, member_id);
    if (e && e->has_state) {
        memset(out, 0, sizeof *out);
        snprintf(out->member_id, sizeof out->member_id, "%s", e->member_id);
        memcpy(out->plan, e->plan, sizeof out->plan);
        memcpy(out->billing, e->billing, sizeof out->billing);
        out->joined_at_us = e->joined_at_us;
        out->effective_at_us = e->effective_at_us;
        out->recorded_at_us = e->recorded_at_us;
        return CG_OK;
    }
    cg_store *s = l->store;
    int rc = s->ops->member_at(s, member_id, INT64_MAX, out, err);
    if (rc) return rc; /* unknown members are not cached */
    if (!e) e = ledger_cache_add(l->cache, member_id);
    if (e) state_to_entry(e, out);
    return CG_OK;
}

int lg_member_at(ledger_shard *l, const char *member_id, int64_t at_us, cg_member_state *out,
                 cg_err *err) {
    cg_store *s = l->store;
    if (!l->cache) return s->ops->member_at(s, member_id, at_us, out, err);
    int rc = member_latest(l, member_id, out, err);
    if (rc) return rc;
    if (at_us >= out->effective_at_us) return CG_OK; /* the latest is in force */
    return s->ops->member_at(s, member_id, at_us, out, err); /* an earlier version */
}

int lg_member_exists(ledger_shard *l, const char *member_id, cg_err *err) {
    cg_store *s = l->store;
    cg_member_state m;
    int rc;
    if (l->cache) {
        rc = member_latest(l, member_id, &m, err);
    } else {
        int count = 0;
        rc = s->ops->member_versions(s, member_id, &m, 1, &count, err);
        if (!rc && count == 0) rc = CG_ENOTFOUND;
    }
    if (rc == CG_ENOTFOUND)
        return cg_err_set_field(err, CG_ENOTFOUND, "member_id",
                                "unknown member '%s' (put the member first)", member_id);
    return rc;
}

/* After member_insert: a version at or after the cached latest becomes the latest (the store
 * overwrites a version at the same instant). */
void lg_member_put_done(ledger_shard *l, const cg_member_state *row) {
    member_entry *e = ledger_cache_find(l->cache, row->member_id);
    if (!e || !e->has_state || row->effective_at_us < e->effective_at_us) return;
    state_to_entry(e, row);
}

/* ---- grants ---- */

static void to_cache(cache_grant *cg, const cg_grant *g) {
    memcpy(cg->grant_id, g->grant_id, sizeof cg->grant_id);
    cg->source = (int8_t)g->source;
    cg->category = (int8_t)g->category;
    cg->expired = g->expired;
    cg->priority = g->priority;
    cg->credits = g->credits;
    cg->remaining = g->remaining;
    cg->held = g->held;
    cg->starts_at_us = g->starts_at_us;
    cg->expires_at_us = g->expires_at_us;
    cg->created_at_us = g->created_at_us;
}

static void from_cache(cg_grant *g, const cache_grant *cg, const char *member_id) {
    memset(g, 0, sizeof *g);
    memcpy(g->grant_id, cg->grant_id, sizeof g->grant_id);
    snprintf(g->member_id, sizeof g->member_id, "%s", member_id);
    g->source = (cg_grant_source)cg->source;
    g->category = (cg_grant_category)cg->category;
    g->expired = cg->expired;
    g->priority = cg->priority;
    g->credits = cg->credits;
    g->remaining = cg->remaining;
    g->held = cg->held;
    g->starts_at_us = cg->starts_at_us;
    g->expires_at_us = cg->expires_at_us;
    g->created_at_us = cg->created_at_us;
}

static bool grant_open(const cg_grant *g) { return g->remaining > 0 || g->held > 0; }

/* Open grants (notes left empty when they come from the cache: no caller reads them). */
int lg_grants_open(ledger_shard *l, const char *member_id, cg_grant *out, int max, int *count,
                   cg_err *err) {
    member_entry *e = ledger_cache_find(l->cache, member_id);
    if (e && e->grants_known && e->grant_count <= max) {
        for (int i = 0; i < e->grant_count; i++) from_cache(&out[i], &e->grants[i], member_id);
        *count = e->grant_count;
        return CG_OK;
    }
    cg_store *s = l->store;
    int rc = s->ops->grants_open(s, member_id, out, max, count, err);
    if (rc || *count > LEDGER_CACHE_GRANTS_MAX || !l->cache) return rc;
    if (!e) e = ledger_cache_add(l->cache, member_id);
    if (!e) return CG_OK;
    for (int i = 0; i < *count; i++) to_cache(&e->grants[i], &out[i]);
    e->grant_count = *count;
    e->grants_known = true;
    return CG_OK;
}

int lg_grant_get(ledger_shard *l, const char *member_id, const char *grant_id, cg_grant *out,
                 cg_err *err) {
    member_entry *e = ledger_cache_find(l->cache, member_id);
    if (e && e->grants_known)
        for (int i = 0; i < e->grant_count; i++)
            if (!strcmp(e->grants[i].grant_id, grant_id)) {
                from_cache(out, &e->grants[i], member_id);
                return CG_OK;
            }
    /* not open (or not cached): the store has it */
    return l->store->ops->grant_get(l->store, member_id, grant_id, out, err);
}

/* After the store wrote g: the cached list follows (opened, changed or closed). */
static void grant_written(ledger_shard *l, const cg_grant *g) {
    member_entry *e = ledger_cache_find(l->cache, g->member_id);
    if (!e || !e->grants_known) return;
    for (int i = 0; i < e->grant_count; i++) {
        if (strcmp(e->grants[i].grant_id, g->grant_id) != 0) continue;
        if (grant_open(g)) to_cache(&e->grants[i], g);
        else e->grants[i] = e->grants[--e->grant_count];
        return;
    }
    if (!grant_open(g)) return;
    if (e->grant_count == LEDGER_CACHE_GRANTS_MAX) e->grants_known = false; /* store from now */
    else to_cache(&e->grants[e->grant_count++], g);
}

int lg_grant_insert(ledger_shard *l, const cg_grant *g, cg_err *err) {
    int rc = l->store->ops->grant_insert(l->store, g, err);
    if (!rc) grant_written(l, g);
    return rc;
}

int lg_grant_update(ledger_shard *l, const cg_grant *g, bool with_credits, cg_err *err) {
    cg_store *s = l->store;
    assert(!with_credits || s->ops->grant_update_credits);
    int rc = with_credits ? s->ops->grant_update_credits(s, g, err)
                          : s->ops->grant_update(s, g, err);
    if (!rc) grant_written(l, g);
    return rc;
}

/* ---- journal ---- */

int lg_journal_last_seq(ledger_shard *l, const char *member_id, int64_t *seq, cg_err *err) {
    member_entry *e = ledger_cache_find(l->cache, member_id);
    if (e && e->seq_known) {
        *seq = e->journal_seq;
        return CG_OK;
    }
    int rc = l->store->ops->journal_last_seq(l->store, member_id, seq, err);
    if (rc || !l->cache) return rc;
    if (!e) e = entry_for(l, member_id);
    if (e) {
        e->journal_seq = *seq;
        e->seq_known = true;
    }
    return CG_OK;
}

void lg_journal_appended(ledger_shard *l, const char *member_id, int64_t seq) {
    member_entry *e = ledger_cache_find(l->cache, member_id);
    if (!e || !e->seq_known) return;
    assert(seq == e->journal_seq + 1);
    e->journal_seq = seq;
}
