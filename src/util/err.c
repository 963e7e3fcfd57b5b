/* err.c — filling cg_err values; see include/creditgate/err.h. No I/O here. */
#include "creditgate/err.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int err_vset(cg_err *err, int code, const char *field, const char *fmt, va_list ap) {
    assert(code < 0);
    if (!err) return code;
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    err->suggestion_count = 0;
    return code;
}

int cg_err_set(cg_err *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = err_vset(err, code, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int cg_err_set_field(cg_err *err, int code, const char *field, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = err_vset(err, code, field, fmt, ap);
    va_end(ap);
    return rc;
}

void cg_err_add_suggestion(cg_err *err, const char *suggestion) {
    if (!err || err->suggestion_count >= CG_ERR_SUGGESTIONS_MAX) return;
    snprintf(err->suggestions[err->suggestion_count++], CG_ERR_SUGGESTION_BYTES_MAX, "%s",
             suggestion);
}

void cg_err_clear(cg_err *err) {
    if (!err) return;
    memset(err, 0, sizeof *err);
}

const char *cg_err_name(int code) {
    switch (code) {
    case CG_OK: return "ok";
    case CG_EINVAL: return "invalid";
    case CG_EPARSE: return "parse_error";
    case CG_ENOTFOUND: return "not_found";
    case CG_ENOMEM: return "out_of_memory";
    case CG_EIO: return "io_error";
    case CG_ECONFLICT: return "conflict";
    case CG_EINSUFFICIENT: return "insufficient_credits";
    case CG_ELIMIT: return "limit_exceeded";
    case CG_ESTATE: return "invalid_state";
    case CG_EUNAVAILABLE: return "unavailable";
    default: return "error";
    }
}
