/* http.h — the HTTP/JSON server behind `creditgate serve` (libmicrohttpd + jansson + libsodium).
 *
 * The server owns: routing, authentication (service keys and member tokens), request limits,
 * JSON request validation, the Prometheus counters, the access log, the atomic policy reload
 * and the graceful drain. Decisions come from the engine (engine.h), money from the ledger
 * (ledger.h); nothing here decides a price or moves a credit by itself.
 *
 * Configuration comes from three sources applied in order file < environment < flags: every
 * key below exists in all three (`listen` is `--listen` and CREDITGATE_LISTEN). */
#ifndef CREDITGATE_HTTP_H
#define CREDITGATE_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "creditgate/err.h"

#define CG_HTTP_PATH_BYTES_MAX 512
#define CG_HTTP_HOST_BYTES_MAX 64
#define CG_HTTP_POLICY_FILES_MAX 8
#define CG_HTTP_CONFIG_LINE_BYTES_MAX 1024
#define CG_HTTP_KEYS_MAX 256            /* service keys in the keys file */
#define CG_HTTP_KEY_NAME_BYTES_MAX 64
#define CG_HTTP_ID_BYTES_MAX 64         /* member and charge ids in paths */
#define CG_HTTP_IDEMPOTENCY_KEY_BYTES_MAX 128
#define CG_HTTP_TOKEN_BYTES_MAX 256
#define CG_HTTP_TOKEN_SECRET_BYTES 32   /* HMAC-SHA-256 key */
#define CG_HTTP_BODY_BYTES_LIMIT (16 * 1024 * 1024) /* no config may allow more */

typedef struct cg_http_config {
    char listen_host[CG_HTTP_HOST_BYTES_MAX]; /* numeric IPv4 address */
    uint16_t port;                           /* 0: any free port (tests) */
    char policy_paths[CG_HTTP_POLICY_FILES_MAX][CG_HTTP_PATH_BYTES_MAX];
    int policy_path_count;
    char db_path[CG_HTTP_PATH_BYTES_MAX];    /* "" runs without a ledger: /v1 money calls 503 */
    char keys_path[CG_HTTP_PATH_BYTES_MAX];  /* service key hashes; "" refuses every /v1 call */
    char token_secret_path[CG_HTTP_PATH_BYTES_MAX]; /* "" : a random secret per process */
    char openapi_path[CG_HTTP_PATH_BYTES_MAX];
    char access_log_path[CG_HTTP_PATH_BYTES_MAX]; /* "-" stderr, "off" none, else a file */
    int64_t token_ttl_s;
    int threads;
    int64_t body_bytes_max;
    int64_t header_bytes_max;
    int json_depth_max;
    int64_t string_bytes_max;
    int timeout_s;
    int connections_max;
    int connections_per_ip_max;
    int reload_check_ms;   /* how often the policy files are checked for change; 0 never */
    int drain_timeout_ms;  /* SIGTERM: how long in-flight requests may take to finish */
    int ledger_shards;     /* cg_ledger_config.shards: a new SQLite ledger's file count, or
                              PostgreSQL writer connections; 0 the default */
    int ledger_flush_ms;   /* cg_ledger_config.flush_interval_ms: how often a SQLite ledger's
                              files are committed (between, batches go to their redo logs);
                              0 commits every batch. Default CG_LEDGER_FLUSH_MS_DEFAULT */
    int ledger_cache_mb;   /* cg_ledger_config.page_cache_mb: a SQLite ledger's page cache,
                              MiB, over all its shard files. Default
                              CG_LEDGER_PAGE_CACHE_MB_DEFAULT */
    int ledger_redo_mb;    /* cg_ledger_config.redo_mb: a SQLite redo log's size before a
                              flush syncs the file and starts it again. Default
                              CG_LEDGER_REDO_MB_DEFAULT */
} cg_http_config;

/* Built-in defaults: 127.0.0.1:8080, policy/carat.yaml, data/creditgate.db, ... */
void cg_http_config_defaults(cg_http_config *config);
/* Sets one key from text ("listen", "127.0.0.1:9000"). `policy` appends unless reset. */
int cg_http_config_set(cg_http_config *config, const char *key, const char *value, cg_err *err);
/* Reads a `key: value` file (YAML mapping of scalars, `policy` may be a list). */
int cg_http_config_load_file(cg_http_config *config, const char *path, cg_err *err);
/* Applies every CREDITGATE_<KEY> environment variable that is set. */
int cg_http_config_load_env(cg_http_config *config, cg_err *err);
/* Loads in the documented order: defaults, file (--config or CREDITGATE_CONFIG), env, flags.
 * argv holds flags only (`--listen X` or `--listen=X`). */
int cg_http_config_load(cg_http_config *config, int argc, char **argv, cg_err *err);
/* Prints the keys, their env names and defaults, for --help. */
void cg_http_config_usage(void *file);

typedef struct cg_http_server cg_http_server;

/* Loads the policy, opens the ledger, starts listening. */
int cg_http_server_start(const cg_http_config *config, cg_http_server **out, cg_err *err);
/* The port actually bound (useful with port 0). */
uint16_t cg_http_server_port(const cg_http_server *server);
/* Loads the policy files again and swaps them in atomically; requests in flight keep the
 * version they started with. On failure the running policy stays and err says why. */
int cg_http_server_reload(cg_http_server *server, cg_err *err);
/* Reloads if any policy file changed since the last load (*reloaded tells). */
int cg_http_server_reload_if_changed(cg_http_server *server, bool *reloaded, cg_err *err);
/* The version label of the policy in force ("2026-05" or "a,b" for several). */
void cg_http_server_policy_label(cg_http_server *server, char *buf, size_t buf_bytes);
/* Stops accepting, lets in-flight requests finish (up to drain_timeout_ms), closes the
 * ledger so every acknowledged write is committed, and frees the server. NULL is a no-op. */
void cg_http_server_stop(cg_http_server *server);

/* Writes one structured JSON log line (event plus preformatted JSON members) to the log. */
void cg_http_server_log(cg_http_server *server, const char *event, const char *json_members);

/* Service keys: a new random key and the keys-file line for it ("name role hash"). */
int cg_http_key_generate(const char *name, const char *role, char *key, size_t key_bytes,
                         char *line, size_t line_bytes, cg_err *err);

/* Route table, for the OpenAPI agreement test: fills method/pattern pairs. */
typedef struct cg_http_route_info {
    const char *method;
    const char *pattern; /* "/v1/members/{id}/balance" */
} cg_http_route_info;
int cg_http_routes(const cg_http_route_info **out);

#endif
