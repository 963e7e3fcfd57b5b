/* cache.c — the writer's memory of members: the latest state version, the open grants and the
 * last journal seq of up to config.cache_members_max members, least recently used evicted.
 * The ledger is its database's single writer, so what it wrote is what the store holds: every
 * write goes to the store first and then here (write-through; no entry is ever dirty), reads
 * come from here and reach the store only on a miss. What an op loaded or changed is forgotten
 * when its savepoint rolls back, everything when a batch rolls back or another connection
 * committed (store data_version). One pool allocated at open; no allocation per op.
 * Only the writer (or, in naive mode, the holder of the ledger's mutex) is ever in here. */
#include "internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define NIL (-1)

struct ledger_cache {
    member_entry *pool;      /* max entries */
    int32_t *buckets;        /* bucket_count heads of hash chains, NIL when empty */
    uint32_t bucket_count;   /* power of two ≥ 2 × max */
    int max;
    int used;                /* pool[0..used) have been handed out at least once */
    int32_t lru_head, lru_tail; /* head: most recently used */
    int32_t touched[LEDGER_CACHE_TOUCHED_MAX]; /* entries the current op loaded or changed */
    int touched_count;
    bool touched_overflow;
    ledger_cache_stats stats;
};

static uint32_t hash_id(const char *id) { /* FNV-1a */
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) h = (h ^ *p) * 16777619u;
    return h;
}

int ledger_cache_open(int max, ledger_cache **out) {
    *out = NULL;
    if (max <= 0) return CG_OK;
    assert(max <= CG_LEDGER_CACHE_MEMBERS_MAX);
    ledger_cache *c = calloc(1, sizeof *c);
    if (!c) return CG_ENOMEM;
    c->bucket_count = 1;
    while (c->bucket_count < 2u * (uint32_t)max) c->bucket_count <<= 1;
    /* calloc: untouched pages of the pool cost no memory until members arrive */
    c->pool = calloc((size_t)max, sizeof *c->pool);
    c->buckets = malloc(sizeof *c->buckets * c->bucket_count);
    if (!c->pool || !c->buckets) {
        ledger_cache_close(c);
        return CG_ENOMEM;
    }
    c->max = max;
    ledger_cache_clear(c);
    *out = c;
    return CG_OK;
}

void ledger_cache_close(ledger_cache *c) {
    if (!c) return;
    free(c->pool);
    free(c->buckets);
    free(c);
}

void ledger_cache_clear(ledger_cache *c) {
    if (!c) return;
    for (uint32_t i = 0; i < c->bucket_count; i++) c->buckets[i] = NIL;
    c->used = 0;
    c->lru_head = c->lru_tail = NIL;
    c->touched_count = 0;
    c->touched_overflow = false;
    c->stats.clears++;
}

static void lru_unlink(ledger_cache *c, int32_t i) {
    member_entry *e = &c->pool[i];
    if (e->lru_prev != NIL) c->pool[e->lru_prev].lru_next = e->lru_next;
    else c->lru_head = e->lru_next;
    if (e->lru_next != NIL) c->pool[e->lru_next].lru_prev = e->lru_prev;
    else c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NIL;
}

static void lru_push_front(ledger_cache *c, int32_t i) {
    member_entry *e = &c->pool[i];
    e->lru_prev = NIL;
    e->lru_next = c->lru_head;
    if (c->lru_head != NIL) c->pool[c->lru_head].lru_prev = i;
    c->lru_head = i;
    if (c->lru_tail == NIL) c->lru_tail = i;
}

static void chain_remove(ledger_cache *c, int32_t i) {
    member_entry *e = &c->pool[i];
    int32_t *link = &c->buckets[e->hash & (c->bucket_count - 1)];
    while (*link != i) {
        assert(*link != NIL);
        link = &c->pool[*link].chain_next;
    }
    *link = e->chain_next;
}

static void touch(ledger_cache *c, int32_t i) {
    for (int k = 0; k < c->touched_count; k++)
        if (c->touched[k] == i) return;
    if (c->touched_count == LEDGER_CACHE_TOUCHED_MAX) c->touched_overflow = true;
    else c->touched[c->touched_count++] = i;
}

member_entry *ledger_cache_find(ledger_cache *c, const char *member_id) {
    if (!c) return NULL;
    uint32_t h = hash_id(member_id);
    for (int32_t i = c->buckets[h & (c->bucket_count - 1)]; i != NIL; i = c->pool[i].chain_next) {
        member_entry *e = &c->pool[i];
        if (e->hash == h && !strcmp(e->member_id, member_id)) {
            lru_unlink(c, i);
            lru_push_front(c, i);
            touch(c, i);
            c->stats.hits++;
            return e;
        }
    }
    c->stats.misses++;
    return NULL;
}

/* A blank entry for member_id (not present): a fresh slot, or the least recently used one.
 * Every entry is clean (write-through), so any may go — except one the current op holds. */
member_entry *ledger_cache_add(ledger_cache *c, const char *member_id) {
    if (!c || strlen(member_id) >= CG_MEMBER_ID_BYTES_MAX) return NULL;
    int32_t i;
    if (c->used < c->max) {
        i = c->used++;
    } else {
        i = c->lru_tail;
        for (int k = 0; i != NIL && k < c->touched_count; k++)
            if (c->touched[k] == i) i = NIL; /* in use by this op: do not reuse */
        if (i == NIL) return NULL;
        lru_unlink(c, i);
        chain_remove(c, i);
        c->stats.evictions++;
    }
    member_entry *e = &c->pool[i];
    memset(e, 0, sizeof *e);
    strcpy(e->member_id, member_id);
    e->hash = hash_id(member_id);
    int32_t *head = &c->buckets[e->hash & (c->bucket_count - 1)];
    e->chain_next = *head;
    *head = i;
    e->lru_prev = e->lru_next = NIL;
    lru_push_front(c, i);
    touch(c, i);
    return e;
}

static void forget(ledger_cache *c, int32_t i) {
    lru_unlink(c, i);
    chain_remove(c, i);
    member_entry *e = &c->pool[i];
    e->member_id[0] = 0;
    /* the slot goes to the tail so it is reused first */
    e->lru_prev = c->lru_tail;
    e->lru_next = NIL;
    if (c->lru_tail != NIL) c->pool[c->lru_tail].lru_next = i;
    c->lru_tail = i;
    if (c->lru_head == NIL) c->lru_head = i;
    /* a forgotten slot is in no chain: chain_remove on reuse must not look for it */
    e->hash = 0;
    e->chain_next = NIL;
    int32_t *head = &c->buckets[0];
    e->chain_next = *head; /* park it in chain 0 under an empty id nobody looks up */
    *head = i;
}

int64_t ledger_cache_bytes(const ledger_cache *c) {
    return c ? (int64_t)c->used * (int64_t)sizeof(member_entry) : 0;
}

void ledger_cache_op_begin(ledger_cache *c) {
    if (!c) return;
    c->touched_count = 0;
    c->touched_overflow = false;
}

/* The op's savepoint rolled back: what it loaded or changed may not be what the store holds. */
void ledger_cache_op_rollback(ledger_cache *c) {
    if (!c) return;
    if (c->touched_overflow) {
        ledger_cache_clear(c);
        return;
    }
    for (int k = 0; k < c->touched_count; k++) forget(c, c->touched[k]);
    c->stats.rollbacks++;
    c->touched_count = 0;
}

ledger_cache_stats ledger_cache_stats_get(const ledger_cache *c) {
    ledger_cache_stats none = {0};
    return c ? c->stats : none;
}
