/* main.c — `creditgate` entry point: dispatches to one subcommand per file in src/cli/. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    cli_command_fn fn;
    const char *summary;
} command;

static const command commands[] = {
    {"quote", cli_cmd_quote, "decide one request: unlimited or how many credits, and why"},
    {"benefits", cli_cmd_benefits, "list a member's active unlimited benefits"},
    {"policy", cli_cmd_policy, "policy check FILE: validate a policy and print it in words"},
    {"serve", cli_cmd_serve, "serve the HTTP/JSON API (docs/openapi.yaml)"},
    {"member", cli_cmd_member, "member put|get: a member's plan, billing and joined date, with history"},
    {"grant", cli_cmd_grant, "add credits to a member (source, category, priority, expiry)"},
    {"charge", cli_cmd_charge, "quote a request and hold the credits it needs"},
    {"capture", cli_cmd_capture, "settle a held charge (optionally a smaller final amount)"},
    {"release", cli_cmd_release, "generation failed: return every held credit of a charge"},
    {"refund", cli_cmd_refund, "return captured credits to the grants they came from"},
    {"balance", cli_cmd_balance, "a member's available and held credits, per grant"},
    {"history", cli_cmd_history, "a member's journal, page by page"},
    {"charges", cli_cmd_charges, "a member's charges, newest first, page by page"},
    {"ledger", cli_cmd_ledger, "ledger verify: recompute every balance from the journal"},
    /* ledger and server commands are added here by their own files */
};

static void usage(FILE *out) {
    fprintf(out, "usage: creditgate <command> [flags]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun `creditgate <command> --help` for its flags.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "creditgate: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
