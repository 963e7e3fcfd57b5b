/* cli.h — shared pieces of the `creditgate` command shells (one file each under src/cli).
 *
 * Each subcommand is one thin file over the library: it parses flags, calls cg_* functions
 * and prints. Only these shells print to stdout/stderr and choose exit codes. */
#ifndef CREDITGATE_CLI_H
#define CREDITGATE_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <stdlib.h>

#include "creditgate/err.h"
#include "creditgate/policy.h"

#define CLI_DEFAULT_POLICY "policy/carat.yaml"
#define CLI_DEFAULT_DB "data/creditgate.db"
#define CLI_POLICY_FILES_MAX 8

typedef int (*cli_command_fn)(int argc, char **argv);

/* Subcommand entry points; argv[0] is the subcommand name. */
int cli_cmd_quote(int argc, char **argv);
int cli_cmd_benefits(int argc, char **argv);
int cli_cmd_policy(int argc, char **argv);
int cli_cmd_serve(int argc, char **argv);
/* ledger commands (cmd_ledger.c) */
int cli_cmd_member(int argc, char **argv);
int cli_cmd_grant(int argc, char **argv);
int cli_cmd_charge(int argc, char **argv);
int cli_cmd_capture(int argc, char **argv);
int cli_cmd_release(int argc, char **argv);
int cli_cmd_refund(int argc, char **argv);
int cli_cmd_balance(int argc, char **argv);
int cli_cmd_history(int argc, char **argv);
int cli_cmd_charges(int argc, char **argv);
int cli_cmd_ledger(int argc, char **argv);

/* Loads --policy files (default the bundled one) into set. */
int cli_load_policies(const char **paths, int path_count, cg_policy_set *set, cg_err *err);

/* Reports err: one line on stderr, and with json an {"error": ...} object on stdout.
 * Returns the exit code to use (2 for usage/input errors, 1 otherwise). */
int cli_fail(const cg_err *err, bool json);
/* Prints doc indented on stdout and releases it. */
void cli_print_json(json_t *doc);

#endif
