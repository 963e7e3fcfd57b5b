/* yaml.h — small typed readers over libfyaml nodes for the policy parser (private to
 * src/policy/). Every failure fills the parser's cg_err with "file:line:col: message". */
#ifndef CREDITGATE_POLICY_YAML_H
#define CREDITGATE_POLICY_YAML_H

#include <libfyaml.h>
#include <stdbool.h>
#include <stdint.h>

#include "creditgate/err.h"
#include "creditgate/time.h"

typedef struct yaml_ctx {
    const char *name; /* file name used in messages */
    cg_err *err;
    struct fy_node *fallback; /* the key being read: marks an empty collection's errors */
} yaml_ctx;

/* 1-based line and column of a node (a collection reports its first scalar). */
void yaml_mark(struct fy_node *node, int *line, int *col);
int yaml_fail(const yaml_ctx *y, struct fy_node *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

bool yaml_is_map(struct fy_node *node);
bool yaml_is_seq(struct fy_node *node);
/* Copies a scalar into buf (NUL-terminated); refuses non-scalars, empty and too-long text. */
int yaml_str(const yaml_ctx *y, struct fy_node *node, const char *what, char *buf,
             size_t buf_bytes);
int yaml_int(const yaml_ctx *y, struct fy_node *node, const char *what, int64_t min,
             int64_t max, int64_t *out);
int yaml_bool(const yaml_ctx *y, struct fy_node *node, const char *what, bool *out);
int yaml_date(const yaml_ctx *y, struct fy_node *node, const char *what, cg_date *out);
/* YAML is Unicode text: refuses invalid UTF-8 and control characters other than tab, LF and
 * CR before libfyaml sees them (libfyaml 0.7.12 loops forever on "%" + an invalid byte). */
int yaml_text_check(const char *name, const char *text, size_t len, cg_err *err);
/* True when the node is a scalar equal to text. */
bool yaml_key_is(struct fy_node *key, const char *text);

#endif
