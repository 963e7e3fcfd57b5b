/* ledger.h — the credit ledger: members, grants, charges (hold → capture | release → refund),
 * an append-only journal and its verification. Storage-independent: it reaches its database
 * only through store.h, so SQLite (default) and PostgreSQL behave identically.
 *
 * Threading: a cg_ledger is shared by any number of threads. Every call is queued to ONE writer
 * thread that applies many queued calls in one transaction (a refused call undoes only itself:
 * see docs/ledger.md, "Group commit"), commits once — one fsync for the whole batch — and only
 * then wakes each caller with its own result ("group commit"). A call that returned CG_OK is
 * durable. Reads go through the same queue, so a caller always reads its own writes.
 *
 * Time: the ledger's clock (config.clock_us, default wall clock) decides hold expiry, grant
 * start/expiry and idempotency-key age. A charge's at_us is only the instant of use handed to
 * the engine (the member state and policy version in force then).
 *
 * Exactly once: every mutating call carries an idempotency key (scoped to the member). A retry
 * with the same key and the same request returns the same object (same charge/grant id, its
 * current state, `replayed` set) with no second effect; the same key with another request is
 * refused with CG_ECONFLICT. Failed calls record nothing, so a refused charge can be retried
 * with its key once the member has credits. Keys are kept config.idempotency_keep_s (≥ 24 h). */
#ifndef CREDITGATE_LEDGER_H
#define CREDITGATE_LEDGER_H

#include <stdbool.h>
#include <stdint.h>

#include "creditgate/engine.h"
#include "creditgate/err.h"

/* Limits (TIGER_STYLE: a limit on everything that grows). */
#define CG_MEMBER_ID_BYTES_MAX 64       /* including NUL */
#define CG_OBJECT_ID_BYTES_MAX 32       /* grant ids "gr_" + 16 hex; charge ids "ch_t" + 21
                                           hex in creation order (before: "ch_" + 16 hex) */
#define CG_IDEMPOTENCY_KEY_BYTES_MAX 128
#define CG_GRANT_NOTE_BYTES_MAX 256
#define CG_REASON_CODE_BYTES_MAX 32
#define CG_GRANTS_OPEN_MAX 32           /* open grants (credits left or held) a `grant` call
                                           may bring a member to */
#define CG_GRANTS_REFUND_EXTRA 2        /* beyond that, one open `refund` grant per category:
                                           a refund never fails for want of room */
#define CG_MEMBER_GRANTS_MAX (CG_GRANTS_OPEN_MAX + CG_GRANTS_REFUND_EXTRA) /* open, all kinds */
#define CG_CHARGE_PARTS_MAX CG_MEMBER_GRANTS_MAX /* grants one charge may draw from */
#define CG_CHARGES_PAGE_MAX 100         /* charges per cg_ledger_charges page */
#define CG_CHARGES_CURSOR_BYTES_MAX 64  /* "<created_at_us>.<charge_id>" + NUL */
#define CG_LEDGER_CACHE_MEMBERS_DEFAULT 131072 /* members whose state the writer keeps in
                                           memory (576 bytes each: 73 MiB at most) */
#define CG_LEDGER_CACHE_MEMBERS_MAX (1 << 22)
#define CG_MEMBER_VERSIONS_MAX 64       /* member state history returned by one get */
#define CG_HISTORY_PAGE_MAX 500         /* journal entries per history page */
#define CG_LEDGER_QUEUE_OPS_MAX 4096    /* calls waiting for the writer; callers block beyond */
#define CG_LEDGER_BATCH_OPS_MAX 1024    /* calls applied in one transaction */
#define CG_LEDGER_SHARDS_MAX 16         /* writers (SQLite: files) members are spread over */
#define CG_LEDGER_SHARDS_DEFAULT 2      /* a new SQLite ledger's shard count: a writer per
                                           core here, 1.3–1.4x one shard's pairs/s on a quiet
                                           machine, no gain on a busy one (bench/RESULTS.md) */
#define CG_LEDGER_PG_CONNECTIONS_DEFAULT 4 /* a PostgreSQL ledger's writer connections: 2.1x
                                           one connection's pairs/s at 64 callers */
#define CG_LEDGER_SWEEP_PER_BATCH_MAX 64 /* expired holds / grants / keys handled per batch */
#define CG_VERIFY_PROBLEMS_MAX 16       /* differences quoted in a verify report */
#define CG_HOLD_TTL_S_DEFAULT 900       /* 15 minutes, when the policy sets none */
#define CG_IDEMPOTENCY_KEEP_S_MIN (24 * 3600)

typedef enum cg_grant_source {
    CG_SOURCE_PLAN = 0,
    CG_SOURCE_PURCHASE,
    CG_SOURCE_PROMO,
    CG_SOURCE_REFUND, /* created by a refund whose source grants had expired */
    CG_SOURCE_ADJUSTMENT,
} cg_grant_source;

typedef enum cg_grant_category { CG_CATEGORY_PAID = 0, CG_CATEGORY_PROMO = 1 } cg_grant_category;

typedef enum cg_charge_status {
    CG_CHARGE_HELD = 0,     /* credits reserved, generation running */
    CG_CHARGE_CAPTURED,     /* settled; refunds may follow */
    CG_CHARGE_RELEASED,     /* generation failed: every held credit returned */
    CG_CHARGE_EXPIRED,      /* neither captured nor released within the hold TTL: released */
} cg_charge_status;

typedef enum cg_journal_kind {
    CG_JOURNAL_GRANT = 0, /* +remaining */
    CG_JOURNAL_HOLD,      /* +held */
    CG_JOURNAL_CAPTURE,   /* -remaining, and -held when it settles a hold (a charge captured
                             at once, cg_charge_input.capture, never held: -remaining only) */
    CG_JOURNAL_RELEASE,   /* -held (also for expired holds) */
    CG_JOURNAL_REFUND,    /* +remaining (on the source grant or a new refund grant) */
    CG_JOURNAL_EXPIRY,    /* -remaining: unspent credits of a grant past its expiry */
} cg_journal_kind;

/* ---- configuration and lifetime ---------------------------------------------------------- */

typedef struct cg_store cg_store; /* store.h */

#define CG_LEDGER_FLUSH_MS_DEFAULT 1000
#define CG_LEDGER_FLUSH_MS_MAX 60000
#define CG_LEDGER_REDO_MB_DEFAULT 32 /* the redo log restarts past this many MiB (see below) */
#define CG_LEDGER_REDO_MB_MAX 4096
#define CG_LEDGER_PAGE_CACHE_MB_DEFAULT 128 /* 64 to 128 MiB: +6 % pairs/s, +19 % charges/s
                                               (bench/RESULTS.md, session 4) */
#define CG_LEDGER_PAGE_CACHE_MB_MAX 65536

typedef int64_t (*cg_clock_fn)(void *ctx);

typedef struct cg_ledger_config {
    const cg_engine *engine;     /* borrowed; needed by charge and member put (validation).
                                    NULL: charge fails with CG_EINVAL, put is not validated */
    bool group_commit;           /* true (default via cg_ledger_config_default): writer thread.
                                    false: each call runs on its caller's thread in its own
                                    transaction under a mutex — the naive baseline of the bench */
    int queue_ops_max;           /* ≤ CG_LEDGER_QUEUE_OPS_MAX */
    int batch_ops_max;           /* ≤ CG_LEDGER_BATCH_OPS_MAX */
    int64_t hold_ttl_s;          /* used when the policy's hold_ttl_s is 0 */
    int64_t idempotency_keep_s;  /* ≥ CG_IDEMPOTENCY_KEEP_S_MIN */
    int64_t sweep_interval_us;   /* how often expired holds/grants/keys are swept when idle */
    cg_clock_fn clock_us;        /* NULL: wall clock. Tests inject a fake clock */
    void *clock_ctx;
    int cache_members_max;       /* members' state (latest version, open grants, journal seq)
                                    kept in memory by the writer, least recently used evicted;
                                    0: none (every read goes to the store). Default
                                    CG_LEDGER_CACHE_MEMBERS_DEFAULT, at most _MAX. Only used
                                    while the ledger is its database's single writer (the store
                                    reports other writers; see store.h data_version) */
    int shards;                  /* cg_ledger_open_dsn only. SQLite: the shard count of a NEW
                                    database — members are spread by a hash of member_id over
                                    that many files (PATH, PATH.shard1, …), each with its own
                                    writer thread; an existing database keeps the count it was
                                    created with (stored in each file). PostgreSQL: connections,
                                    each with its own writer, to the one database. 0: default
                                    (CG_LEDGER_SHARDS_DEFAULT for a new SQLite file,
                                    CG_LEDGER_PG_CONNECTIONS_DEFAULT for PostgreSQL). At most
                                    CG_LEDGER_SHARDS_MAX */
    int flush_interval_ms;       /* group commit on SQLite: each batch is appended to a redo log
                                    beside the file and fsynced there; the file itself is
                                    committed every this many ms (docs/ledger.md, "Redo log").
                                    0: every batch commits the file and fsyncs its WAL. Default
                                    CG_LEDGER_FLUSH_MS_DEFAULT, at most CG_LEDGER_FLUSH_MS_MAX */
    int page_cache_mb;           /* SQLite: the bound on the store's page cache, MiB, split
                                    evenly among the shards. Memory grows with this, not with
                                    members; a larger cache spills fewer dirty pages between
                                    flushes. 0: CG_LEDGER_PAGE_CACHE_MB_DEFAULT; at most
                                    CG_LEDGER_PAGE_CACHE_MB_MAX. PostgreSQL keeps its own */
    int redo_mb;                 /* SQLite with flush_interval_ms > 0: once a flush finds the
                                    redo log past this many MiB, it fdatasyncs the WAL and the
                                    log starts again at offset 0 — the bound on the log's disk
                                    use and on the replay after a crash. 0:
                                    CG_LEDGER_REDO_MB_DEFAULT; at most CG_LEDGER_REDO_MB_MAX */
} cg_ledger_config;

typedef struct cg_ledger cg_ledger;

void cg_ledger_config_default(cg_ledger_config *config);
/* Opens a ledger over one store, which it takes (closed by cg_ledger_close, also on
 * failure): a single shard whatever config->shards says. Starts the writer thread when
 * config->group_commit. */
int cg_ledger_open(cg_store *store_take, const cg_ledger_config *config, cg_ledger **out,
                   cg_err *err);
/* Points the ledger at another engine: a policy reload, without closing and reopening the
 * ledger. The caller guarantees that no call is in flight (the server holds its ledger lock
 * for writing) and keeps `engine` alive until the next set_engine or close. */
void cg_ledger_set_engine(cg_ledger *ledger, const cg_engine *engine);
/* Applies everything queued, stops the writer, closes the store. NULL is a no-op. */
void cg_ledger_close(cg_ledger *ledger);
/* Opens the ledger at dsn (as in cg_store_open) with all its shards: for SQLite, PATH holds
 * the shard count and the other files are PATH.shard1 … — a missing shard file or one that
 * belongs to another ledger is refused, never silently recreated. */
int cg_ledger_open_dsn(const char *dsn, const cg_ledger_config *config, cg_ledger **out,
                       cg_err *err);

/* ---- members ----------------------------------------------------------------------------- */

typedef struct cg_member_state {
    char member_id[CG_MEMBER_ID_BYTES_MAX];
    char plan[CG_ID_BYTES_MAX];       /* policy plan id */
    char billing[CG_ID_BYTES_MAX];    /* policy billing id */
    int64_t joined_at_us;
    int64_t effective_at_us;          /* this state holds from here until the next version */
    int64_t recorded_at_us;           /* when the ledger recorded it */
} cg_member_state;

typedef struct cg_member_put_input {
    const char *member_id;
    const char *idempotency_key;
    const char *plan;
    const char *billing;
    int64_t joined_at_us;
    int64_t effective_at_us;          /* 0: now */
} cg_member_put_input;

/* Records a new version of the member's state (history is kept). Validates plan and billing
 * against the policy in force at effective_at_us when the ledger has an engine. */
int cg_ledger_member_put(cg_ledger *ledger, const cg_member_put_input *in, cg_member_state *out,
                         bool *replayed, cg_err *err);
/* The state in force at at_us (0: now); CG_ENOTFOUND if the member has none then. */
int cg_ledger_member_get(cg_ledger *ledger, const char *member_id, int64_t at_us,
                         cg_member_state *out, cg_err *err);
/* Every version, oldest first (at most max); *count is how many were written. */
int cg_ledger_member_history(cg_ledger *ledger, const char *member_id, cg_member_state *out,
                             int max, int *count, cg_err *err);

/* ---- grants ------------------------------------------------------------------------------ */

typedef struct cg_grant {
    char grant_id[CG_OBJECT_ID_BYTES_MAX];
    char member_id[CG_MEMBER_ID_BYTES_MAX];
    cg_grant_source source;
    cg_grant_category category;
    int priority;               /* 0..100, lower is spent first (Stripe's convention); 50 default */
    int64_t credits;            /* granted */
    int64_t remaining;          /* not yet spent (includes held); 0 once expired and unheld */
    int64_t held;               /* reserved by open holds; 0 ≤ held ≤ remaining */
    int64_t starts_at_us;       /* not spendable before */
    int64_t expires_at_us;      /* not spendable from here on; CG_NO_END: never */
    int64_t created_at_us;
    bool expired;               /* the expiry movement has been journaled */
    char note[CG_GRANT_NOTE_BYTES_MAX];
} cg_grant;

typedef struct cg_grant_input {
    const char *member_id;
    const char *idempotency_key;
    cg_grant_source source;
    cg_grant_category category;
    int priority;               /* -1: default 50 */
    int64_t credits;            /* 1 .. CG_CREDITS_MAX */
    int64_t starts_at_us;       /* 0: now */
    int64_t expires_at_us;      /* 0 or CG_NO_END: never */
    const char *note;           /* may be NULL */
} cg_grant_input;

/* Adds credits. The member must exist. At most CG_GRANTS_OPEN_MAX open grants (CG_ELIMIT).
 * A refund that needs a `refund` grant adds to the member's open one of that category, or
 * makes one even beyond the limit (CG_GRANTS_REFUND_EXTRA), so refunds never hit it. */
int cg_ledger_grant(cg_ledger *ledger, const cg_grant_input *in, cg_grant *out, bool *replayed,
                    cg_err *err);

/* ---- charges ----------------------------------------------------------------------------- */

typedef struct cg_charge_item {
    char kind[16];                          /* "generation" | "conversation" */
    char model[CG_ID_BYTES_MAX];
    char variant[CG_ID_BYTES_MAX];          /* "" when none */
    int64_t count;
    bool unlimited;
    int64_t credits;
    char benefit[CG_ID_BYTES_MAX];          /* "" when none */
    char reason_code[CG_REASON_CODE_BYTES_MAX]; /* "unlimited", "not_eligible", ... */
    char reason[CG_EXPLAIN_BYTES_MAX];      /* English, from cg_item_explain */
} cg_charge_item;

/* The credits one charge took from one grant: support can tell which credits it used. */
typedef struct cg_charge_part {
    char grant_id[CG_OBJECT_ID_BYTES_MAX];
    cg_grant_source source;
    cg_grant_category category;
    int64_t held;       /* reserved at charge time */
    int64_t captured;   /* settled (≤ held) */
    int64_t refunded;   /* returned after capture (≤ captured) */
} cg_charge_part;

typedef struct cg_charge {
    char charge_id[CG_OBJECT_ID_BYTES_MAX];
    char member_id[CG_MEMBER_ID_BYTES_MAX];
    cg_charge_status status;
    /* the request as received */
    char model[CG_NAME_BYTES_MAX];
    char variant[CG_NAME_BYTES_MAX];
    int64_t count;
    char agent_model[CG_ID_BYTES_MAX];
    char agent_kind[16];
    char prompt[CG_PROMPT_BYTES_MAX];
    int64_t at_us;               /* instant of use */
    /* the member state and policy it was decided on */
    char plan[CG_ID_BYTES_MAX];
    char billing[CG_ID_BYTES_MAX];
    int64_t joined_at_us;
    char policy_version[CG_ID_BYTES_MAX];
    /* the decision */
    cg_charge_item items[CG_DECISION_ITEMS_MAX];
    int item_count;
    int64_t credits;             /* the quote: credits needed (also set on CG_EINSUFFICIENT) */
    int64_t credits_available;   /* set on CG_EINSUFFICIENT: what the member had */
    /* the money */
    int64_t held;                /* currently reserved */
    int64_t captured;
    int64_t refunded;
    cg_charge_part parts[CG_CHARGE_PARTS_MAX];
    int part_count;
    int64_t created_at_us;
    int64_t expires_at_us;       /* hold deadline */
    int64_t settled_at_us;       /* capture / release / expiry instant, 0 while held */
} cg_charge;

typedef struct cg_charge_input {
    const char *member_id;
    const char *idempotency_key;
    /* the same request fields as `quote` (see cg_quote_input); plan/billing/joined come from
       the member's stored state at at_us */
    const char *model;
    const char *variant;
    int64_t count;               /* 0 means 1 */
    int64_t at_us;               /* 0: now */
    const char *agent_model;
    const char *agent_kind;
    const char *prompt;
    bool capture;                /* settle at once: quote + spend, no hold to capture or release
                                    (a fixed fee, e.g. the agent's conversation credits); the
                                    charge is `captured` and may be refunded like any other */
} cg_charge_input;

/* Quote + hold in one step (quote + spend with in->capture). Records the request, items
 * (with benefit and English reason) and policy version, also for a 0-credit (unlimited)
 * charge. Spending order: priority, then soonest expiry (non-expiring last), then promotional
 * before paid, then oldest.
 * CG_EINSUFFICIENT holds nothing; out->credits / out->credits_available say needed/available. */
int cg_ledger_charge(cg_ledger *ledger, const cg_charge_input *in, cg_charge *out,
                     bool *replayed, cg_err *err);

typedef struct cg_settle_input {
    const char *member_id;
    const char *charge_id;
    const char *idempotency_key;
    int64_t credits;             /* capture: final amount (≤ held), refund: amount (≤ captured −
                                    refunded); -1: everything. Ignored by release */
    const char *reason;          /* refund reason (journaled); may be NULL */
} cg_settle_input;

/* Settles a held charge; credits beyond the final amount return to their grants.
 * CG_ESTATE if the charge is not held (captured twice, released, expired). */
int cg_ledger_capture(cg_ledger *ledger, const cg_settle_input *in, cg_charge *out,
                      bool *replayed, cg_err *err);
/* Generation failed: every held credit returns. CG_ESTATE unless held. */
int cg_ledger_release(cg_ledger *ledger, const cg_settle_input *in, cg_charge *out,
                      bool *replayed, cg_err *err);
/* After capture: credits return to the grants they came from (latest-spent first), or, for a
 * grant that has expired meanwhile, to a new `refund` grant of the same category.
 * CG_ESTATE unless captured; CG_EINVAL when more than captured − refunded. */
int cg_ledger_refund(cg_ledger *ledger, const cg_settle_input *in, cg_charge *out,
                     bool *replayed, cg_err *err);

/* Asynchronous forms of charge, capture, release and refund, for an event loop or any caller
 * that must not park a thread per call in flight (bench/ledger --async). CG_OK: the call is
 * queued and done(ctx, rc, err) will be called exactly once, from one of the ledger's threads,
 * when it is durable or refused — rc and err as the blocking form would have returned them
 * (without group commit there is no such thread: the call is applied, and done called, on the
 * caller's thread before this returns). Until done, in (and the strings it points to), out and
 * replayed must stay valid; done must not call the ledger. Non-zero (and *err): nothing was
 * queued (the ledger is closing) and done is not called. Waiting for room in a full queue may
 * block. cg_ledger_close completes every queued call before it returns. */
typedef void (*cg_ledger_done_fn)(void *ctx, int rc, const cg_err *err);
int cg_ledger_charge_async(cg_ledger *ledger, const cg_charge_input *in, cg_charge *out,
                           bool *replayed, cg_ledger_done_fn done, void *ctx, cg_err *err);
int cg_ledger_capture_async(cg_ledger *ledger, const cg_settle_input *in, cg_charge *out,
                            bool *replayed, cg_ledger_done_fn done, void *ctx, cg_err *err);
int cg_ledger_release_async(cg_ledger *ledger, const cg_settle_input *in, cg_charge *out,
                            bool *replayed, cg_ledger_done_fn done, void *ctx, cg_err *err);
int cg_ledger_refund_async(cg_ledger *ledger, const cg_settle_input *in, cg_charge *out,
                           bool *replayed, cg_ledger_done_fn done, void *ctx, cg_err *err);
int cg_ledger_charge_get(cg_ledger *ledger, const char *member_id, const char *charge_id,
                         cg_charge *out, cg_err *err);

/* A member's charges page by page, newest first, every status, 0-credit (unlimited) ones
 * included — what the My Credits page lists. before: "" or NULL for the first page, else the
 * previous page's *next. limit 1..CG_CHARGES_PAGE_MAX; out holds limit charges (~13 KB each:
 * heap). *next is set to the cursor of the following page when this one came back full, ""
 * when it is the last. CG_EINVAL on a malformed cursor. */
int cg_ledger_charges(cg_ledger *ledger, const char *member_id, const char *before, int limit,
                      cg_charge *out, int *count, char next[CG_CHARGES_CURSOR_BYTES_MAX],
                      cg_err *err);

/* ---- balance, history, verify ------------------------------------------------------------ */

typedef struct cg_balance {
    char member_id[CG_MEMBER_ID_BYTES_MAX];
    int64_t at_us;
    int64_t available;           /* spendable now: Σ (remaining − held) over live grants */
    int64_t available_paid;
    int64_t available_promo;
    int64_t held;                /* Σ held */
    cg_grant grants[CG_MEMBER_GRANTS_MAX]; /* open grants (credits left or held), spending order */
    int grant_count;
} cg_balance;

int cg_ledger_balance(cg_ledger *ledger, const char *member_id, cg_balance *out, cg_err *err);

typedef struct cg_journal_entry {
    char member_id[CG_MEMBER_ID_BYTES_MAX];
    int64_t seq;                 /* per member, from 1, gapless */
    int64_t at_us;
    cg_journal_kind kind;
    char grant_id[CG_OBJECT_ID_BYTES_MAX];
    char charge_id[CG_OBJECT_ID_BYTES_MAX]; /* "" for grant / expiry */
    int64_t delta_remaining;
    int64_t delta_held;
    char note[CG_GRANT_NOTE_BYTES_MAX];     /* refund reason, grant note */
} cg_journal_entry;

/* One page of the member's journal, entries with seq > after_seq, oldest first; limit is
 * 1..CG_HISTORY_PAGE_MAX. *next_seq is the after_seq of the next page when the page came back
 * full (that page may be empty), 0 when it came back short: the end. */
int cg_ledger_history(cg_ledger *ledger, const char *member_id, int64_t after_seq, int limit,
                      cg_journal_entry *out, int *count, int64_t *next_seq, cg_err *err);

typedef struct cg_verify_report {
    int64_t members;
    int64_t grants;
    int64_t charges;
    int64_t entries;
    int64_t problem_count;       /* every difference found (only the first few are quoted) */
    char problems[CG_VERIFY_PROBLEMS_MAX][256];
} cg_verify_report;

/* What the ledger holds in memory and in flight, for /metrics and the soak: read at any time
 * from any thread (each shard's writer publishes its figures after every batch). */
typedef struct cg_ledger_stats {
    int64_t holds_open;        /* charges held now, all members: counted from the store at open,
                                  then kept by every committed charge, capture, release and
                                  expiry; -1 when the store cannot count (PostgreSQL: other
                                  servers change it) */
    int64_t page_cache_bytes;  /* the store's page cache in use (SQLite; 0 elsewhere) */
    int64_t member_cache_bytes; /* the writers' member caches, entries handed out so far */
    int64_t batches;           /* transactions committed by the writers */
    int64_t calls;             /* calls applied in them */
    int shards;
} cg_ledger_stats;
void cg_ledger_stats_get(cg_ledger *ledger, cg_ledger_stats *out);

/* Recomputes every grant's remaining/held and every charge's held/captured/refunded from the
 * journal and compares with the stored values and the invariants (0 ≤ held ≤ remaining).
 * Returns CG_OK with problem_count 0 when clean; CG_ECONFLICT when any difference exists. */
int cg_ledger_verify(cg_ledger *ledger, cg_verify_report *out, cg_err *err);

/* ---- names and JSON (shared by the CLI --json and the HTTP bodies) ------------------------ */

const char *cg_grant_source_name(cg_grant_source source);
int cg_grant_source_parse(const char *text, cg_grant_source *out, cg_err *err);
const char *cg_grant_category_name(cg_grant_category category);
int cg_grant_category_parse(const char *text, cg_grant_category *out, cg_err *err);
const char *cg_charge_status_name(cg_charge_status status);
const char *cg_journal_kind_name(cg_journal_kind kind);

/* New jansson objects (caller json_decref). Instants are RFC 3339 in UTC plus *_at_us. */
struct json_t;
struct json_t *cg_member_state_to_json(const cg_member_state *member);
struct json_t *cg_grant_to_json(const cg_grant *grant);
struct json_t *cg_charge_to_json(const cg_charge *charge);
struct json_t *cg_balance_to_json(const cg_balance *balance);
struct json_t *cg_journal_entry_to_json(const cg_journal_entry *entry);
struct json_t *cg_verify_report_to_json(const cg_verify_report *report);
/* {"charges": [cg_charge_to_json...], "next": cursor or null} — one cg_ledger_charges page. */
struct json_t *cg_charges_page_to_json(const cg_charge *charges, int count, const char *next);
/* {"error": {"code": "insufficient_credits", "message": ..., "needed": n, "available": n}}
 * — charge may be NULL; needed/available are added for CG_EINSUFFICIENT. */
struct json_t *cg_ledger_error_to_json(const cg_err *err, const cg_charge *charge);

#endif
