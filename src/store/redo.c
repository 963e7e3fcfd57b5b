/* redo.c — the redo log file of a SQLite ledger (redo.h): record encoding, append, sync,
 * lock and replay. It knows nothing of SQLite: a record is a list of (statement number,
 * bound values) that src/store/sqlite.c writes and replays.
 *
 * Record: a 32-byte header — magic, payload bytes, lsn (u32, u32, u64, little-endian as the
 * machine is), then a 16-byte BLAKE2b of those 16 bytes and the payload — then the payload:
 * entries of [u8 statement][u8 count] and count params of [u8 index][u8 type] followed by an
 * i64, or a u32 length and the bytes. The batch is built in place behind a reserved header, so
 * a record goes to the file in one pwrite. */
#include "redo.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define REDO_MAGIC 0x31524743u /* "CGR1" */
#define REDO_HEADER_BYTES 32
#define REDO_HASH_BYTES 16
#define REDO_BUF_BYTES_MIN (64 * 1024)

struct redo_log {
    int fd;
    bool locked;
    unsigned char *buf; /* [header][payload]; len counts the header */
    size_t len, cap;
    size_t entry_start; /* where the open entry began */
    bool overflow;      /* a put did not fit (or memory ran out): the batch cannot be written */
    int64_t off;        /* where the next record goes */
};

int redo_open(const char *path, redo_log **out, bool *owner, cg_err *err) {
    assert(path && out && owner);
    *out = NULL;
    *owner = false;
    redo_log *log = calloc(1, sizeof *log);
    if (!log) return cg_err_set(err, CG_ENOMEM, "out of memory opening %s", path);
    log->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (log->fd < 0) {
        int rc = cg_err_set(err, CG_EIO, "cannot open the redo log %s: %s", path,
                            strerror(errno));
        free(log);
        return rc;
    }
    log->len = REDO_HEADER_BYTES;
    *owner = redo_try_lock(log);
    *out = log;
    return CG_OK;
}

void redo_close(redo_log *log) {
    if (!log) return;
    close(log->fd); /* and the lock with it */
    free(log->buf);
    free(log);
}

bool redo_try_lock(redo_log *log) {
    assert(log);
    if (!log->locked) log->locked = flock(log->fd, LOCK_EX | LOCK_NB) == 0;
    return log->locked;
}

/* ---- building a batch ---- */

/* Room for n more bytes; false (and the batch marked unwritable) when there is none. */
static bool reserve(redo_log *log, size_t n) {
    if (log->overflow) return false;
    if (log->len + n <= log->cap) return true;
    if (log->len + n > REDO_BATCH_BYTES_MAX) {
        log->overflow = true;
        return false;
    }
    size_t cap = log->cap ? log->cap : REDO_BUF_BYTES_MIN;
    while (cap < log->len + n) cap *= 2;
    if (cap > REDO_BATCH_BYTES_MAX) cap = REDO_BATCH_BYTES_MAX;
    unsigned char *p = realloc(log->buf, cap);
    if (!p) {
        log->overflow = true;
        return false;
    }
    log->buf = p;
    log->cap = cap;
    return true;
}

static void put_bytes(redo_log *log, const void *p, size_t n) {
    if (!reserve(log, n)) return;
    memcpy(log->buf + log->len, p, n);
    log->len += n;
}

void redo_entry_begin(redo_log *log, int statement) {
    assert(statement >= 0 && statement < 256);
    log->entry_start = log->len;
    unsigned char head[2] = {(unsigned char)statement, 0};
    put_bytes(log, head, sizeof head);
}

/* The param header [index][type], counted in the open entry. */
static void put_param(redo_log *log, int index, int type) {
    assert(index > 0 && index < 256);
    if (log->overflow) return;
    assert(log->entry_start + 2 <= log->len);
    unsigned char *count = log->buf + log->entry_start + 1;
    assert(*count < REDO_PARAMS_MAX);
    (*count)++;
    unsigned char head[2] = {(unsigned char)index, (unsigned char)type};
    put_bytes(log, head, sizeof head);
}

void redo_put_int(redo_log *log, int index, int64_t value) {
    put_param(log, index, REDO_INT);
    put_bytes(log, &value, sizeof value);
}

void redo_put_blob(redo_log *log, int index, const void *bytes, size_t n) {
    assert(n <= UINT32_MAX);
    put_param(log, index, REDO_BLOB);
    uint32_t n32 = (uint32_t)n;
    put_bytes(log, &n32, sizeof n32);
    put_bytes(log, bytes, n);
}

void redo_put_text(redo_log *log, int index, const char *text) {
    size_t n = strlen(text);
    put_param(log, index, REDO_TEXT);
    uint32_t n32 = (uint32_t)n;
    put_bytes(log, &n32, sizeof n32);
    put_bytes(log, text, n);
}

void redo_entry_drop(redo_log *log) {
    assert(log->entry_start >= REDO_HEADER_BYTES && log->entry_start <= log->len);
    log->len = log->entry_start;
}

size_t redo_mark(const redo_log *log) { return log->len; }

void redo_rewind(redo_log *log, size_t mark) {
    assert(mark >= REDO_HEADER_BYTES && mark <= log->len);
    log->len = mark;
}

bool redo_pending(const redo_log *log) { return log->len > REDO_HEADER_BYTES || log->overflow; }

void redo_discard(redo_log *log) {
    log->len = REDO_HEADER_BYTES;
    log->overflow = false;
}

/* ---- writing ---- */

static void record_hash(const unsigned char *header16, const unsigned char *payload, size_t n,
                        unsigned char out[REDO_HASH_BYTES]) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, REDO_HASH_BYTES);
    crypto_generichash_update(&st, header16, 16);
    crypto_generichash_update(&st, payload, n);
    crypto_generichash_final(&st, out, REDO_HASH_BYTES);
}

int redo_append(redo_log *log, uint64_t lsn, cg_err *err) {
    assert(log->locked);
    if (log->overflow)
        return cg_err_set(err, CG_ELIMIT, "a batch's redo record exceeds %d bytes (or memory "
                          "ran out): the batch is refused", REDO_BATCH_BYTES_MAX);
    if (!reserve(log, 0) || !log->buf)
        return cg_err_set(err, CG_ENOMEM, "out of memory for the redo record");
    uint32_t magic = REDO_MAGIC, bytes = (uint32_t)(log->len - REDO_HEADER_BYTES);
    memcpy(log->buf, &magic, 4);
    memcpy(log->buf + 4, &bytes, 4);
    memcpy(log->buf + 8, &lsn, 8);
    record_hash(log->buf, log->buf + REDO_HEADER_BYTES, bytes, log->buf + 16);
    for (size_t done = 0; done < log->len;) {
        ssize_t n = pwrite(log->fd, log->buf + done, log->len - done, log->off + (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return cg_err_set(err, CG_EIO, "cannot write the redo log: %s",
                              n < 0 ? strerror(errno) : "no progress");
        done += (size_t)n;
    }
    log->off += (int64_t)log->len;
    redo_discard(log);
    return CG_OK;
}

int redo_sync(redo_log *log, cg_err *err) {
    if (fdatasync(log->fd) != 0)
        return cg_err_set(err, CG_EIO, "fdatasync of the redo log failed: %s", strerror(errno));
    return CG_OK;
}

void redo_restart(redo_log *log) { log->off = 0; }

int64_t redo_bytes(const redo_log *log) { return log->off; }

/* ---- replay ---- */

static int read_full(int fd, void *p, size_t n, int64_t off, bool *complete) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)p + done, n - done, (off_t)off + (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        done += (size_t)r;
    }
    *complete = done == n;
    return 0;
}

/* Replays the entries of one intact record's payload. */
static int replay_payload(const unsigned char *p, size_t n, uint64_t lsn, redo_entry_fn fn,
                          void *ctx, cg_err *err) {
    redo_param params[REDO_PARAMS_MAX];
    size_t at = 0;
    while (at < n) {
        if (n - at < 2) goto corrupt;
        int statement = p[at], count = p[at + 1];
        at += 2;
        if (count > REDO_PARAMS_MAX) goto corrupt;
        for (int i = 0; i < count; i++) {
            if (n - at < 2) goto corrupt;
            redo_param *q = &params[i];
            q->index = p[at];
            q->type = p[at + 1];
            at += 2;
            if (q->type == REDO_INT) {
                if (n - at < 8) goto corrupt;
                memcpy(&q->i, p + at, 8);
                at += 8;
                continue;
            }
            uint32_t len;
            if ((q->type != REDO_TEXT && q->type != REDO_BLOB) || n - at < 4) goto corrupt;
            memcpy(&len, p + at, 4);
            at += 4;
            if (n - at < len) goto corrupt;
            q->bytes = p + at;
            q->n = len;
            at += len;
        }
        int rc = fn(ctx, statement, params, count, err);
        if (rc) return rc;
    }
    return CG_OK;
corrupt:
    return cg_err_set(err, CG_EIO, "redo record %llu is intact but unreadable at byte %zu: "
                      "written by another creditgate version?", (unsigned long long)lsn, at);
}

int redo_replay(redo_log *log, uint64_t after_lsn, redo_entry_fn fn, void *ctx,
                uint64_t *last_lsn, cg_err *err) {
    assert(log->locked && fn && last_lsn);
    *last_lsn = after_lsn;
    unsigned char *buf = NULL;
    int64_t off = 0;
    uint64_t prev = 0;
    bool first = true;
    int rc = CG_OK;
    for (;;) {
        unsigned char header[REDO_HEADER_BYTES];
        bool complete;
        if (read_full(log->fd, header, sizeof header, off, &complete)) {
            rc = cg_err_set(err, CG_EIO, "cannot read the redo log: %s", strerror(errno));
            break;
        }
        uint32_t magic, bytes;
        uint64_t lsn;
        memcpy(&magic, header, 4);
        memcpy(&bytes, header + 4, 4);
        memcpy(&lsn, header + 8, 8);
        if (!complete || magic != REDO_MAGIC || bytes > REDO_BATCH_BYTES_MAX ||
            (!first && lsn != prev + 1))
            break; /* the end: torn, stale, or never written */
        unsigned char *p = realloc(buf, bytes ? bytes : 1);
        if (!p) {
            rc = cg_err_set(err, CG_ENOMEM, "out of memory reading the redo log");
            break;
        }
        buf = p;
        if (read_full(log->fd, buf, bytes, off + REDO_HEADER_BYTES, &complete)) {
            rc = cg_err_set(err, CG_EIO, "cannot read the redo log: %s", strerror(errno));
            break;
        }
        unsigned char hash[REDO_HASH_BYTES];
        if (complete) record_hash(header, buf, bytes, hash);
        if (!complete || sodium_memcmp(hash, header + 16, REDO_HASH_BYTES) != 0) break;
        if (lsn > after_lsn && lsn != *last_lsn + 1) {
            rc = cg_err_set(err, CG_EIO, "the redo log continues at record %llu but the "
                            "database holds up to %llu: records are missing (was the database "
                            "restored without its -redo file?)", (unsigned long long)lsn,
                            (unsigned long long)*last_lsn);
            break;
        }
        if (lsn > after_lsn) {
            if ((rc = replay_payload(buf, bytes, lsn, fn, ctx, err))) break;
            *last_lsn = lsn;
        }
        first = false;
        prev = lsn;
        off += REDO_HEADER_BYTES + (int64_t)bytes;
    }
    free(buf);
    return rc;
}
