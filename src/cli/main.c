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
