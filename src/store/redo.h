/* redo.h — the redo log beside a SQLite ledger file: what each batch changed, appended as
 * one checksummed record and made durable with one fdatasync, so that the database file itself
 * is committed only every few seconds (src/store/sqlite.c, "Long transactions").
 *
 * A record is the batch's statements with their bound values — the store's own writes, not
 * rules — and replays by running the same statements again in order. Records carry a log
 * sequence number (lsn); the database stores the last lsn it holds, so recovery applies
 * exactly the records past it. The log restarts at offset 0 after each database commit; stale
 * records behind the new ones end the replay by their lower lsn or a bad checksum.
 *
 * One process at a time owns the log (flock); only the owner appends or replays. Not thread
 * safe, except redo_sync, which the ledger's syncer calls while the writer appends. */
#ifndef CREDITGATE_STORE_REDO_H
#define CREDITGATE_STORE_REDO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "creditgate/err.h"

#define REDO_BATCH_BYTES_MAX (16 * 1024 * 1024) /* one batch's record */
#define REDO_PARAMS_MAX 32                       /* bound values of one statement */

typedef struct redo_log redo_log;

/* Opens (creates) the log at path and tries to take its lock: *owner says whether it did. */
int redo_open(const char *path, redo_log **out, bool *owner, cg_err *err);
void redo_close(redo_log *log); /* NULL is a no-op; releases the lock */
/* Takes the lock if no other process holds it now. */
bool redo_try_lock(redo_log *log);

/* ---- building the current batch's record ---- */
void redo_entry_begin(redo_log *log, int statement);
void redo_put_int(redo_log *log, int index, int64_t value);
void redo_put_text(redo_log *log, int index, const char *text); /* NUL-terminated */
void redo_put_blob(redo_log *log, int index, const void *bytes, size_t n);
void redo_entry_drop(redo_log *log); /* the statement failed: forget its entry */
size_t redo_mark(const redo_log *log);             /* bytes of the batch so far */
void redo_rewind(redo_log *log, size_t mark);      /* a savepoint rolled back */
bool redo_pending(const redo_log *log);            /* the batch wrote something */

/* Appends the batch as record lsn and empties it (not durable until redo_sync). On failure
 * the batch is kept and nothing counts as written. */
int redo_append(redo_log *log, uint64_t lsn, cg_err *err);
/* Empties the batch without writing it (the batch rolled back). */
void redo_discard(redo_log *log);
/* Makes every record appended so far durable. Thread-safe against the other calls. */
int redo_sync(redo_log *log, cg_err *err);
/* The database now holds every record: the next one goes at offset 0. */
void redo_restart(redo_log *log);
/* Bytes appended since the last restart. */
int64_t redo_bytes(const redo_log *log);

/* ---- recovery ---- */
typedef struct redo_param {
    int index;
    int type; /* REDO_INT, REDO_TEXT, REDO_BLOB */
    int64_t i;
    const void *bytes; /* text (NUL-terminated) or blob */
    size_t n;
} redo_param;
enum { REDO_INT = 1, REDO_TEXT = 2, REDO_BLOB = 3 };

/* Called once per statement of each record past after_lsn, in order. Non-zero stops. */
typedef int (*redo_entry_fn)(void *ctx, int statement, const redo_param *params, int count,
                             cg_err *err);
/* Reads the log from offset 0 and replays every intact record past after_lsn through fn,
 * stopping at the first torn, corrupt or out-of-sequence record. *last_lsn: the last record
 * replayed, or after_lsn when none. */
int redo_replay(redo_log *log, uint64_t after_lsn, redo_entry_fn fn, void *ctx,
                uint64_t *last_lsn, cg_err *err);

#endif
