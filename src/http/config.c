/* config.c — the server's configuration: one table of keys read from a file, then the
 * environment, then flags, each later source overriding the earlier (include/creditgate/http.h).
 * No sockets here; the server (server.c) only ever sees a finished cg_http_config. */
#include "creditgate/http.h"
#include "creditgate/ledger.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_type { OPT_STR, OPT_INT, OPT_LISTEN, OPT_POLICY } opt_type;

typedef struct opt {
    const char *key;
    opt_type type;
    size_t offset;
    size_t bytes;         /* OPT_STR: buffer size; OPT_INT: sizeof the integer */
    int64_t min, max;     /* OPT_INT range */
    const char *help;
} opt;

#define OFF(f) offsetof(cg_http_config, f)
#define SZ(f) sizeof(((cg_http_config *)0)->f)

/* Every key, its range and meaning; --help prints this table. */
static const opt opts[] = {
    {"listen", OPT_LISTEN, 0, 0, 0, 0, "HOST:PORT to listen on (IPv4)"},
    {"policy", OPT_POLICY, 0, 0, 0, 0, "policy file; repeat for several versions"},
    {"db", OPT_STR, OFF(db_path), SZ(db_path), 0, 0, "SQLite ledger file ('' runs without a ledger)"},
    {"keys", OPT_STR, OFF(keys_path), SZ(keys_path), 0, 0,
     "service keys file: lines 'NAME ROLE SHA256HEX'"},
    {"token_secret", OPT_STR, OFF(token_secret_path), SZ(token_secret_path), 0, 0,
     "file of >= 32 bytes signing member tokens (random per process if unset)"},
    {"openapi", OPT_STR, OFF(openapi_path), SZ(openapi_path), 0, 0,
     "OpenAPI document served at /openapi.yaml"},
    {"access_log", OPT_STR, OFF(access_log_path), SZ(access_log_path), 0, 0,
     "access log: '-' stderr, 'off', or a file"},
    {"token_ttl_s", OPT_INT, OFF(token_ttl_s), SZ(token_ttl_s), 10, 86400,
     "member token lifetime in seconds"},
    {"threads", OPT_INT, OFF(threads), SZ(threads), 1, 1024,
     "worker threads (without a ledger at most one per core: nothing waits)"},
    {"body_bytes_max", OPT_INT, OFF(body_bytes_max), SZ(body_bytes_max), 256,
     CG_HTTP_BODY_BYTES_LIMIT, "largest request body (413 above)"},
    {"header_bytes_max", OPT_INT, OFF(header_bytes_max), SZ(header_bytes_max), 1024,
     1024 * 1024, "request line and headers (431 above)"},
    {"json_depth_max", OPT_INT, OFF(json_depth_max), SZ(json_depth_max), 2, 64,
     "deepest nesting of a JSON body"},
    {"string_bytes_max", OPT_INT, OFF(string_bytes_max), SZ(string_bytes_max), 64,
     1024 * 1024, "longest JSON string"},
    {"timeout_s", OPT_INT, OFF(timeout_s), SZ(timeout_s), 1, 3600,
     "idle connection and slow request timeout"},
    {"connections_max", OPT_INT, OFF(connections_max), SZ(connections_max), 1, 100000,
     "open connections in all"},
    {"connections_per_ip_max", OPT_INT, OFF(connections_per_ip_max),
     SZ(connections_per_ip_max), 0, 100000, "open connections per client address (0 any)"},
    {"reload_check_ms", OPT_INT, OFF(reload_check_ms), SZ(reload_check_ms), 0, 3600000,
     "how often policy files are checked for change (0 never)"},
    {"drain_timeout_ms", OPT_INT, OFF(drain_timeout_ms), SZ(drain_timeout_ms), 0, 600000,
     "SIGTERM: longest wait for in-flight requests"},
    {"ledger_shards", OPT_INT, OFF(ledger_shards), SZ(ledger_shards), 0, CG_LEDGER_SHARDS_MAX,
     "a new SQLite ledger's shard files, or PostgreSQL writer connections (0 default)"},
    {"ledger_flush_ms", OPT_INT, OFF(ledger_flush_ms), SZ(ledger_flush_ms), 0,
     CG_LEDGER_FLUSH_MS_MAX, "SQLite: ms between commits of the files, batches in the redo "
     "log meanwhile (0 every batch)"},
    {"ledger_cache_mb", OPT_INT, OFF(ledger_cache_mb), SZ(ledger_cache_mb), 1,
     CG_LEDGER_PAGE_CACHE_MB_MAX, "SQLite: MiB of page cache, split among the shard files"},
    {"ledger_redo_mb", OPT_INT, OFF(ledger_redo_mb), SZ(ledger_redo_mb), 1,
     CG_LEDGER_REDO_MB_MAX, "SQLite: MiB of redo log before a flush syncs the file and "
     "starts the log again (bounds the replay after a crash)"},
};
#define OPTS_COUNT (sizeof opts / sizeof opts[0])

void cg_http_config_defaults(cg_http_config *config) {
    assert(config);
    memset(config, 0, sizeof *config);
    snprintf(config->listen_host, sizeof config->listen_host, "127.0.0.1");
    config->port = 8080;
    snprintf(config->policy_paths[0], sizeof config->policy_paths[0], "policy/carat.yaml");
    config->policy_path_count = 1;
    snprintf(config->db_path, sizeof config->db_path, "data/creditgate.db");
    snprintf(config->openapi_path, sizeof config->openapi_path, "docs/openapi.yaml");
    snprintf(config->access_log_path, sizeof config->access_log_path, "-");
    config->token_ttl_s = 900;
    config->threads = 32; /* ledger calls block a thread until their group commit */
    config->body_bytes_max = 64 * 1024;
    config->header_bytes_max = 16 * 1024;
    config->json_depth_max = 8;
    config->string_bytes_max = 16 * 1024;
    config->timeout_s = 30;
    config->connections_max = 4096;
    config->connections_per_ip_max = 256; /* one address cannot take every connection */
    config->reload_check_ms = 1000;
    config->drain_timeout_ms = 10000;
    config->ledger_flush_ms = CG_LEDGER_FLUSH_MS_DEFAULT;
    config->ledger_cache_mb = CG_LEDGER_PAGE_CACHE_MB_DEFAULT;
    config->ledger_redo_mb = CG_LEDGER_REDO_MB_DEFAULT;
}

static const opt *opt_find(const char *key) {
    for (size_t i = 0; i < OPTS_COUNT; i++)
        if (!strcmp(opts[i].key, key)) return &opts[i];
    return NULL;
}

static int set_listen(cg_http_config *config, const char *value, cg_err *err) {
    const char *colon = strrchr(value, ':');
    if (!colon || colon == value || (size_t)(colon - value) >= sizeof config->listen_host)
        return cg_err_set_field(err, CG_EINVAL, "listen", "listen: want HOST:PORT, got '%s'",
                                value);
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || !end || *end || end == colon + 1 || port < 0 || port > 65535)
        return cg_err_set_field(err, CG_EINVAL, "listen", "listen: bad port in '%s'", value);
    memcpy(config->listen_host, value, (size_t)(colon - value));
    config->listen_host[colon - value] = '\0';
    config->port = (uint16_t)port;
    return CG_OK;
}

static int set_int(cg_http_config *config, const opt *o, const char *value, cg_err *err) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || !end || *end || end == value)
        return cg_err_set_field(err, CG_EINVAL, o->key, "%s: '%s' is not an integer", o->key,
                                value);
    if (v < o->min || v > o->max)
        return cg_err_set_field(err, CG_EINVAL, o->key,
                                "%s: %lld is out of range %" PRId64 "..%" PRId64, o->key, v,
                                o->min, o->max);
    char *field = (char *)config + o->offset;
    if (o->bytes == sizeof(int64_t)) {
        int64_t v64 = v;
        memcpy(field, &v64, sizeof v64);
    } else {
        assert(o->bytes == sizeof(int));
        int vi = (int)v;
        memcpy(field, &vi, sizeof vi);
    }
    return CG_OK;
}

/* `policy` from a higher-precedence source replaces the lower one's list; within one source
 * repeats append. The caller marks a new source by calling with key "policy!" first. */
static int set_policy(cg_http_config *config, const char *value, cg_err *err) {
    if (config->policy_path_count >= CG_HTTP_POLICY_FILES_MAX)
        return cg_err_set_field(err, CG_ELIMIT, "policy", "at most %d policy files",
                                CG_HTTP_POLICY_FILES_MAX);
    if (strlen(value) >= CG_HTTP_PATH_BYTES_MAX)
        return cg_err_set_field(err, CG_ELIMIT, "policy", "policy path too long");
    snprintf(config->policy_paths[config->policy_path_count++], CG_HTTP_PATH_BYTES_MAX, "%s",
             value);
    return CG_OK;
}

int cg_http_config_set(cg_http_config *config, const char *key, const char *value,
                       cg_err *err) {
    assert(config && key && value);
    if (!strcmp(key, "policy!")) { /* start of a new source: its list replaces */
        config->policy_path_count = 0;
        return set_policy(config, value, err);
    }
    const opt *o = opt_find(key);
    if (!o) return cg_err_set_field(err, CG_EINVAL, key, "unknown setting '%s'", key);
    switch (o->type) {
    case OPT_LISTEN: return set_listen(config, value, err);
    case OPT_POLICY: return set_policy(config, value, err);
    case OPT_INT: return set_int(config, o, value, err);
    case OPT_STR:
        if (strlen(value) >= o->bytes)
            return cg_err_set_field(err, CG_ELIMIT, key, "%s: value too long", key);
        snprintf((char *)config + o->offset, o->bytes, "%s", value);
        return CG_OK;
    }
    return cg_err_set(err, CG_EINVAL, "bad option type");
}

/* 1-based line of a scalar node, 0 when unknown. */
static int node_line(struct fy_node *node) {
    struct fy_token *tok = node && fy_node_is_scalar(node) ? fy_node_get_scalar_token(node) : NULL;
    const struct fy_mark *m = tok ? fy_token_start_mark(tok) : NULL;
    return m ? m->line + 1 : 0;
}

static int file_scalar(struct fy_node *node, const char *path, const char *key, char *buf,
                       size_t buf_bytes, cg_err *err) {
    size_t len = 0;
    const char *text = node ? fy_node_get_scalar(node, &len) : NULL;
    if (!text || len >= buf_bytes) {
        return cg_err_set_field(err, CG_EPARSE, key, "%s:%d: '%s' needs a short scalar value",
                                path, node_line(node), key);
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    return CG_OK;
}

static int file_pair(cg_http_config *config, struct fy_node_pair *pair, const char *path,
                     bool *policy_seen, cg_err *err) {
    char key[64], value[CG_HTTP_PATH_BYTES_MAX];
    int rc = file_scalar(fy_node_pair_key(pair), path, "key", key, sizeof key, err);
    if (rc) return rc;
    struct fy_node *v = fy_node_pair_value(pair);
    if (!strcmp(key, "policy") && v && fy_node_is_sequence(v)) {
        void *iter = NULL;
        struct fy_node *item;
        while ((item = fy_node_sequence_iterate(v, &iter))) {
            if ((rc = file_scalar(item, path, key, value, sizeof value, err))) return rc;
            rc = cg_http_config_set(config, *policy_seen ? "policy" : "policy!", value, err);
            if (rc) return rc;
            *policy_seen = true;
        }
        return CG_OK;
    }
    if ((rc = file_scalar(v, path, key, value, sizeof value, err))) return rc;
    if (!strcmp(key, "policy")) {
        rc = cg_http_config_set(config, *policy_seen ? "policy" : "policy!", value, err);
        *policy_seen = true;
    } else {
        rc = cg_http_config_set(config, key, value, err);
    }
    if (rc) {
        char msg[CG_ERR_MSG_BYTES_MAX];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        return cg_err_set_field(err, rc, key, "%s:%d: %s", path, node_line(v), msg);
    }
    return CG_OK;
}

int cg_http_config_load_file(cg_http_config *config, const char *path, cg_err *err) {
    assert(config && path);
    struct fy_document *doc = fy_document_build_from_file(NULL, path);
    if (!doc) return cg_err_set(err, CG_EPARSE, "%s: cannot read or parse config file", path);
    struct fy_node *root = fy_document_root(doc);
    int rc = CG_OK;
    if (root && !fy_node_is_mapping(root)) {
        rc = cg_err_set(err, CG_EPARSE, "%s: config must be a mapping of key: value", path);
    } else if (root) {
        void *iter = NULL;
        struct fy_node_pair *pair;
        bool policy_seen = false;
        while (!rc && (pair = fy_node_mapping_iterate(root, &iter)))
            rc = file_pair(config, pair, path, &policy_seen, err);
    }
    fy_document_destroy(doc);
    return rc;
}

/* CREDITGATE_ + upper-cased key; `policy` may hold several paths separated by ':'. */
int cg_http_config_load_env(cg_http_config *config, cg_err *err) {
    for (size_t i = 0; i < OPTS_COUNT; i++) {
        char name[96] = "CREDITGATE_";
        size_t n = strlen(name);
        for (const char *k = opts[i].key; *k && n + 1 < sizeof name; k++)
            name[n++] = (char)toupper((unsigned char)*k);
        name[n] = '\0';
        const char *value = getenv(name);
        if (!value || !*value) continue;
        int rc = CG_OK;
        if (opts[i].type == OPT_POLICY) {
            char buf[CG_HTTP_POLICY_FILES_MAX * CG_HTTP_PATH_BYTES_MAX];
            snprintf(buf, sizeof buf, "%s", value);
            bool first = true;
            for (char *save = NULL, *p = strtok_r(buf, ":", &save); p && !rc;
                 p = strtok_r(NULL, ":", &save), first = false)
                rc = cg_http_config_set(config, first ? "policy!" : "policy", p, err);
        } else {
            rc = cg_http_config_set(config, opts[i].key, value, err);
        }
        if (rc) {
            char msg[CG_ERR_MSG_BYTES_MAX];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            return cg_err_set_field(err, rc, opts[i].key, "%s: %s", name, msg);
        }
    }
    return CG_OK;
}

/* Splits "--key=value" or "--key value"; dashes in flag names stand for underscores. */
static int flag_split(int argc, char **argv, int *i, char *key, size_t key_bytes,
                      const char **value, cg_err *err) {
    const char *arg = argv[*i];
    if (strncmp(arg, "--", 2) != 0)
        return cg_err_set(err, CG_EINVAL, "unexpected argument '%s'", arg);
    const char *eq = strchr(arg + 2, '=');
    size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    if (len == 0 || len >= key_bytes) return cg_err_set(err, CG_EINVAL, "bad flag '%s'", arg);
    for (size_t k = 0; k < len; k++) key[k] = arg[2 + k] == '-' ? '_' : arg[2 + k];
    key[len] = '\0';
    if (eq) {
        *value = eq + 1;
    } else {
        if (*i + 1 >= argc) return cg_err_set(err, CG_EINVAL, "flag '%s' needs a value", arg);
        *value = argv[++*i];
    }
    return CG_OK;
}

int cg_http_config_load(cg_http_config *config, int argc, char **argv, cg_err *err) {
    cg_http_config_defaults(config);
    const char *file = getenv("CREDITGATE_CONFIG");
    char key[64];
    const char *value = NULL;
    for (int i = 0; i < argc; i++) { /* find --config first: it is the lowest layer */
        int rc = flag_split(argc, argv, &i, key, sizeof key, &value, err);
        if (rc) return rc;
        if (!strcmp(key, "config")) file = value;
    }
    int rc;
    if (file && *file && (rc = cg_http_config_load_file(config, file, err))) return rc;
    if ((rc = cg_http_config_load_env(config, err))) return rc;
    bool policy_seen = false;
    for (int i = 0; i < argc; i++) {
        if ((rc = flag_split(argc, argv, &i, key, sizeof key, &value, err))) return rc;
        if (!strcmp(key, "config")) continue;
        if (!strcmp(key, "policy")) {
            rc = cg_http_config_set(config, policy_seen ? "policy" : "policy!", value, err);
            policy_seen = true;
        } else {
            rc = cg_http_config_set(config, key, value, err);
        }
        if (rc) return rc;
    }
    assert(config->policy_path_count >= 1 || !policy_seen);
    return CG_OK;
}

void cg_http_config_usage(void *file) {
    FILE *out = file;
    cg_http_config d;
    cg_http_config_defaults(&d);
    fprintf(out, "settings (flag --KEY, env CREDITGATE_KEY, or 'key: value' in --config FILE;\n"
                 "flags win over env, env over the file):\n");
    for (size_t i = 0; i < OPTS_COUNT; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", opts[i].key);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_') *p = '-';
        char dflt[CG_HTTP_PATH_BYTES_MAX + 16] = "";
        const char *field = (const char *)&d + opts[i].offset;
        if (opts[i].type == OPT_LISTEN) snprintf(dflt, sizeof dflt, "%s:%u", d.listen_host, (unsigned)d.port);
        else if (opts[i].type == OPT_POLICY) snprintf(dflt, sizeof dflt, "%s", d.policy_paths[0]);
        else if (opts[i].type == OPT_STR) snprintf(dflt, sizeof dflt, "%s", field[0] ? field : "unset");
        else if (opts[i].bytes == sizeof(int64_t)) snprintf(dflt, sizeof dflt, "%" PRId64, *(const int64_t *)(const void *)field);
        else snprintf(dflt, sizeof dflt, "%d", *(const int *)(const void *)field);
        fprintf(out, "  %-26s %s [%s]\n", flag, opts[i].help, dflt);
    }
}
