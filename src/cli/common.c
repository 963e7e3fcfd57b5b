/* common.c — what every `creditgate` subcommand shares: loading --policy files, reporting
 * errors as one stderr line (and a JSON error object with --json), printing JSON. */
#include <stdio.h>

#include <jansson.h>

#include "cli.h"
#include "creditgate/engine_json.h"

int cli_load_policies(const char **paths, int path_count, cg_policy_set *set, cg_err *err) {
    static const char *default_paths[] = {CLI_DEFAULT_POLICY};
    if (path_count == 0) paths = default_paths, path_count = 1;
    cg_policy_set_init(set);
    for (int i = 0; i < path_count; i++) {
        int rc = cg_policy_set_load_file(set, paths[i], err);
        if (rc) {
            cg_policy_set_free(set);
            return rc;
        }
    }
    return CG_OK;
}

void cli_print_json(json_t *doc) {
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text) puts(text);
    free(text);
    json_decref(doc);
}

int cli_fail(const cg_err *err, bool json) {
    fprintf(stderr, "creditgate: %s\n", err->msg);
    if (json) cli_print_json(cg_err_to_json(err));
    return err->code == CG_EINVAL || err->code == CG_ENOTFOUND || err->code == CG_EPARSE ? 2 : 1;
}
