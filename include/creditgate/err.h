/* err.h — the one error type that flows through every creditgate module.
 *
 * Functions that can fail return int: CG_OK (0) or a negative CG_E* code, and fill a
 * caller-owned cg_err with a message a person can act on. Only main() prints and exits. */
#ifndef CREDITGATE_ERR_H
#define CREDITGATE_ERR_H

#include <stddef.h>

#define CG_ERR_MSG_BYTES_MAX 512
#define CG_ERR_FIELD_BYTES_MAX 64
#define CG_ERR_SUGGESTIONS_MAX 3
#define CG_ERR_SUGGESTION_BYTES_MAX 64

enum {
    CG_OK = 0,
    CG_EINVAL = -1,        /* bad input: flag, field, value */
    CG_EPARSE = -2,        /* malformed file or document */
    CG_ENOTFOUND = -3,     /* unknown model, member, charge, ... */
    CG_ENOMEM = -4,
    CG_EIO = -5,           /* file or database I/O failed */
    CG_ECONFLICT = -6,     /* idempotency key reused with another request, or bad state */
    CG_EINSUFFICIENT = -7, /* not enough credits */
    CG_ELIMIT = -8,        /* a configured limit was exceeded */
    CG_ESTATE = -9,        /* operation not allowed in the object's current state */
    CG_EUNAVAILABLE = -10, /* storage temporarily unable to make a write durable */
};

typedef struct cg_err {
    int code;
    char msg[CG_ERR_MSG_BYTES_MAX];
    char field[CG_ERR_FIELD_BYTES_MAX]; /* request field at fault, "" if none */
    int suggestion_count;
    char suggestions[CG_ERR_SUGGESTIONS_MAX][CG_ERR_SUGGESTION_BYTES_MAX];
} cg_err;

/* Sets err (if non-NULL) and returns code, so callers can `return cg_err_set(...)`. */
int cg_err_set(cg_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like cg_err_set, and records the request field at fault. */
int cg_err_set_field(cg_err *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void cg_err_add_suggestion(cg_err *err, const char *suggestion);
void cg_err_clear(cg_err *err);
/* Short stable name of a code: "invalid", "not_found", ... (used as JSON error codes). */
const char *cg_err_name(int code);

#endif
