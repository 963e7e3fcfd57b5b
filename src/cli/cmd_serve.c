/* cmd_serve.c — `creditgate serve`: runs the HTTP server (src/http/) until SIGTERM/SIGINT,
 * reloading the policy on SIGHUP or when its file changes; and `creditgate serve keygen NAME
 * ROLE` to make a service key. Thin: configuration and signals here, everything else in
 * libcreditgate (include/creditgate/http.h). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "creditgate/http.h"

static const char serve_usage[] =
    "usage: creditgate serve [--config FILE] [--listen HOST:PORT] [--policy FILE]... [--db PATH]\n"
    "                        [--keys FILE] [other settings below]\n"
    "       creditgate serve keygen NAME service|admin\n\n"
    "Serves the JSON API (docs/openapi.yaml). SIGHUP reloads the policy; SIGTERM drains and exits.\n\n";

static int keygen(int argc, char **argv) {
    if (argc != 4) {
        fputs(serve_usage, stderr);
        return 2;
    }
    char key[128], line[256];
    cg_err err = {0};
    if (cg_http_key_generate(argv[2], argv[3], key, sizeof key, line, sizeof line, &err))
        return cli_fail(&err, false);
    /* The key goes to the caller once; only its hash line belongs in the keys file. */
    printf("key: %s\nkeys-file line: %s\n", key, line);
    return 0;
}

static void log_event(cg_http_server *srv, const char *event, int sig) {
    char members[64];
    snprintf(members, sizeof members, "\"signal\":%d", sig);
    cg_http_server_log(srv, event, members);
}

/* Waits for signals; between them checks the policy files for change. */
static void run_until_stopped(cg_http_server *srv, const cg_http_config *config,
                              const sigset_t *set) {
    int check_ms = config->reload_check_ms > 0 ? config->reload_check_ms : 1000;
    for (;;) {
        struct timespec ts = {check_ms / 1000, (long)(check_ms % 1000) * 1000000L};
        int sig = sigtimedwait(set, NULL, &ts);
        cg_err err = {0};
        if (sig == SIGTERM || sig == SIGINT) {
            log_event(srv, "draining", sig);
            return;
        }
        if (sig == SIGHUP) {
            cg_http_server_reload(srv, &err); /* logged by the server; old policy kept */
            continue;
        }
        bool reloaded = false;
        if (config->reload_check_ms > 0) cg_http_server_reload_if_changed(srv, &reloaded, &err);
    }
}

int cli_cmd_serve(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "keygen")) return keygen(argc, argv);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(serve_usage, stdout);
            cg_http_config_usage(stdout);
            return 0;
        }
    cg_http_config config;
    cg_err err = {0};
    if (cg_http_config_load(&config, argc - 1, argv + 1, &err)) return cli_fail(&err, false);
    /* Block the signals before any thread starts so only this thread receives them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    cg_http_server *srv = NULL;
    if (cg_http_server_start(&config, &srv, &err)) return cli_fail(&err, false);
    char label[256];
    cg_http_server_policy_label(srv, label, sizeof label);
    printf("{\"event\":\"listening\",\"host\":\"%s\",\"port\":%u,\"policy\":\"%s\"}\n",
           config.listen_host, (unsigned)cg_http_server_port(srv), label);
    fflush(stdout);
    run_until_stopped(srv, &config, &set);
    cg_http_server_stop(srv); /* logs "stopped" once every acknowledged write is committed */
    return 0;
}
