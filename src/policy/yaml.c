/* yaml.c — typed, located reads of libfyaml nodes for the policy parser.
 * Knows YAML shapes only; what the values mean is parse.c's business. */
#include "yaml.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define YAML_DESCEND_MAX 64

void yaml_mark(struct fy_node *node, int *line, int *col) {
    *line = 0;
    *col = 0;
    for (int depth = 0; node && depth < YAML_DESCEND_MAX; depth++) {
        enum fy_node_type t = fy_node_get_type(node);
        if (t == FYNT_SCALAR) {
            struct fy_token *tok = fy_node_get_scalar_token(node);
            const struct fy_mark *m = tok ? fy_token_start_mark(tok) : NULL;
            if (m) {
                *line = m->line + 1;
                *col = m->column + 1;
            }
            return;
        }
        void *iter = NULL;
        if (t == FYNT_MAPPING) {
            struct fy_node_pair *pair = fy_node_mapping_iterate(node, &iter);
            node = pair ? fy_node_pair_key(pair) : NULL;
        } else {
            node = fy_node_sequence_iterate(node, &iter);
        }
    }
}

int yaml_fail(const yaml_ctx *y, struct fy_node *node, const char *fmt, ...) {
    char msg[CG_ERR_MSG_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    yaml_mark(node, &line, &col);
    if (line == 0 && y->fallback) yaml_mark(y->fallback, &line, &col);
    return cg_err_set(y->err, CG_EPARSE, "%s:%d:%d: %s", y->name, line, col, msg);
}

bool yaml_is_map(struct fy_node *node) { return node && fy_node_get_type(node) == FYNT_MAPPING; }
bool yaml_is_seq(struct fy_node *node) { return node && fy_node_get_type(node) == FYNT_SEQUENCE; }

int yaml_str(const yaml_ctx *y, struct fy_node *node, const char *what, char *buf,
             size_t buf_bytes) {
    assert(buf_bytes > 0);
    if (!node || fy_node_get_type(node) != FYNT_SCALAR)
        return yaml_fail(y, node, "%s must be a single value, not a list or mapping", what);
    size_t len = 0;
    const char *text = fy_node_get_scalar(node, &len);
    if (!text || len == 0) return yaml_fail(y, node, "%s must not be empty", what);
    if (len >= buf_bytes)
        return yaml_fail(y, node, "%s is too long (%zu bytes, at most %zu)", what, len,
                         buf_bytes - 1);
    if (memchr(text, '\0', len)) return yaml_fail(y, node, "%s contains a NUL byte", what);
    memcpy(buf, text, len);
    buf[len] = '\0';
    return CG_OK;
}

int yaml_int(const yaml_ctx *y, struct fy_node *node, const char *what, int64_t min,
             int64_t max, int64_t *out) {
    char text[32];
    int rc = yaml_str(y, node, what, text, sizeof text);
    if (rc) return rc;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end != '\0' || end == text)
        return yaml_fail(y, node, "%s must be a whole number, got '%s'", what, text);
    if (v < min || v > max)
        return yaml_fail(y, node, "%s must be between %lld and %lld, got %lld", what,
                         (long long)min, (long long)max, v);
    *out = v;
    return CG_OK;
}

int yaml_bool(const yaml_ctx *y, struct fy_node *node, const char *what, bool *out) {
    char text[8];
    int rc = yaml_str(y, node, what, text, sizeof text);
    if (rc) return yaml_fail(y, node, "%s must be true or false", what);
    if (!strcmp(text, "true")) *out = true;
    else if (!strcmp(text, "false")) *out = false;
    else return yaml_fail(y, node, "%s must be true or false, got '%s'", what, text);
    return CG_OK;
}

int yaml_date(const yaml_ctx *y, struct fy_node *node, const char *what, cg_date *out) {
    char text[32];
    int rc = yaml_str(y, node, what, text, sizeof text);
    if (rc) return rc;
    cg_err e;
    if (cg_date_parse(text, out, &e)) return yaml_fail(y, node, "%s: %s", what, e.msg);
    return CG_OK;
}

bool yaml_key_is(struct fy_node *key, const char *text) {
    if (!key || fy_node_get_type(key) != FYNT_SCALAR) return false;
    size_t len = 0;
    const char *s = fy_node_get_scalar(key, &len);
    return s && len == strlen(text) && memcmp(s, text, len) == 0;
}

/* Length of the UTF-8 sequence at s (1..4), or 0 when it is not well-formed: no overlongs, no
 * surrogates, nothing above U+10FFFF (RFC 3629). */
static size_t utf8_sequence(const unsigned char *s, size_t left) {
    if (s[0] < 0x80) return 1;
    size_t n = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || n > left || s[0] > 0xF4) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && s[0] == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
    if (n == 3 && s[0] == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
    if (n == 4 && s[0] == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (n == 4 && s[0] == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
    return n;
}

int yaml_text_check(const char *name, const char *text, size_t len, cg_err *err) {
    const unsigned char *s = (const unsigned char *)text;
    int line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(s + i, len - i);
        if (n == 0)
            return cg_err_set(err, CG_EPARSE, "%s:%d:%d: invalid UTF-8 byte 0x%02X (the file must be UTF-8 text)",
                              name, line, col, s[i]);
        if (n == 1 && ((s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') || s[i] == 0x7F))
            return cg_err_set(err, CG_EPARSE, "%s:%d:%d: control character 0x%02X is not allowed in YAML",
                              name, line, col, s[i]);
        if (s[i] == '\n') line++, col = 1;
        else col++;
        i += n;
    }
    return CG_OK;
}
