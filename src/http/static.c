/* static.c — serves the two pages (web/index.html at /, web/support.html at /support), their
 * assets (/web/NAME) and /web/catalog.json, the public price list of the policy in force.
 * Nothing here authenticates: no page holds a secret; the pages call /v1 with the token or
 * key the person typed, in the Authorization header. Files are read per request (few, small)
 * and only by a single checked name inside WEB_ROOT, so no URL reaches another file. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "creditgate/time.h"
#include "static.h"

/* Security headers for every page answer: scripts and styles only from this origin (no
 * inline code, so an injected string cannot run), no framing, no referrer carrying paths. */
#define WEB_CSP                                                                                \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "               \
    "frame-ancestors 'none'"

typedef struct web_type {
    const char *ext;
    const char *content_type;
    const char *cache_control;
} web_type;

/* Pages, scripts and the catalog change with each deploy or policy reload and have no hash
 * in their names (no build step), so browsers revalidate them (cheap: ETag → 304). Images
 * may be kept an hour. */
static const web_type web_types[] = {
    {".html", "text/html; charset=utf-8", "no-cache"},
    {".css", "text/css; charset=utf-8", "no-cache"},
    {".js", "text/javascript; charset=utf-8", "no-cache"},
    {".json", "application/json", "no-cache"},
    {".svg", "image/svg+xml", "public, max-age=3600"},
    {".png", "image/png", "public, max-age=3600"},
    {".ico", "image/x-icon", "public, max-age=3600"},
    {".txt", "text/plain; charset=utf-8", "no-cache"},
};

bool web_static_match(const char *url) {
    return !strcmp(url, "/") || !strcmp(url, "/support") || !strncmp(url, "/web/", 5);
}

/* ---- Accept-Language -------------------------------------------------------------------- */

/* q of one "tag;q=0.8" item as thousandths (absent: 1000, malformed: 0). */
static int lang_q(const char *params, size_t len) {
    const char *q = NULL;
    for (size_t i = 0; i + 1 < len; i++)
        if (params[i] == 'q' && params[i + 1] == '=') q = params + i + 2;
    if (!q) return 1000;
    double v = strtod(q, NULL);
    if (!(v >= 0 && v <= 1)) return 0;
    return (int)(v * 1000 + 0.5);
}

const char *web_lang_pick(const char *header) {
    int best_q[2] = {-1, -1}; /* en, ko */
    const char *p = header ? header : "";
    for (int items = 0; *p && items < 32; items++) { /* a limit on what a header may make us do */
        while (*p == ' ' || *p == ',') p++;
        size_t len = strcspn(p, ",");
        size_t tag_len = strcspn(p, ";,- ");
        int which = tag_len == 2 && !strncasecmp(p, "en", 2) ? 0
                  : tag_len == 2 && !strncasecmp(p, "ko", 2) ? 1 : -1;
        if (which >= 0) {
            int q = lang_q(p + tag_len, len - tag_len);
            if (q > 0 && q > best_q[which]) best_q[which] = q;
        }
        p += len;
    }
    return best_q[1] > best_q[0] ? "ko" : "en";
}

/* ---- files ------------------------------------------------------------------------------- */

/* One segment of [A-Za-z0-9._-], not starting with '.', so never "..", never a subfolder. */
static bool name_valid(const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len >= WEB_NAME_BYTES_MAX || name[0] == '.') return false;
    for (const char *c = name; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-';
        if (!ok) return false;
    }
    return true;
}

static const web_type *type_of(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return NULL;
    for (size_t i = 0; i < sizeof web_types / sizeof web_types[0]; i++)
        if (!strcmp(dot, web_types[i].ext)) return &web_types[i];
    return NULL;
}

/* Reads WEB_ROOT/name: a regular file, not a symlink, at most WEB_FILE_BYTES_MAX. */
static char *file_read(const char *name, size_t *bytes, struct stat *st) {
    char path[CG_HTTP_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "%s/%s", WEB_ROOT, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return NULL;
    char *buf = NULL;
    if (fstat(fd, st) == 0 && S_ISREG(st->st_mode) && st->st_size <= WEB_FILE_BYTES_MAX)
        buf = malloc((size_t)st->st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st->st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st->st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            free(buf);
            buf = NULL;
        } else {
            got += (size_t)n;
        }
    }
    close(fd);
    *bytes = got;
    return buf;
}

/* Pages are written with <html lang="en">; a Korean reader gets lang="ko" (same length, so
 * in place), which the page script reads to choose its language. */
static void page_set_lang(char *text, size_t bytes, const char *lang) {
    static const char marker[] = "<html lang=\"en\"";
    char *at = memmem(text, bytes < 512 ? bytes : 512, marker, sizeof marker - 1);
    if (at) memcpy(at + sizeof marker - 4, lang, 2);
}

/* ---- answering --------------------------------------------------------------------------- */

static enum MHD_Result web_send(req *r, int status, struct MHD_Response *resp,
                                const web_type *type, const char *etag, bool vary_lang) {
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (type) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type->content_type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, type->cache_control);
    }
    if (etag) MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    if (vary_lang) MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Language");
    if (type && !strcmp(type->ext, ".html")) {
        MHD_add_response_header(resp, "Content-Security-Policy", WEB_CSP);
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    }
    if (status == 405) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->answered = true;
    return ok;
}

static enum MHD_Result web_error(req *r, int status, const char *message) {
    static const web_type text = {".txt", "text/plain; charset=utf-8", "no-store"};
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        strlen(message), (void *)message, MHD_RESPMEM_PERSISTENT);
    return web_send(r, status, resp, &text, NULL, false);
}

static bool etag_matches(req *r, const char *etag) {
    const char *inm = header_value(r, MHD_HTTP_HEADER_IF_NONE_MATCH);
    return inm && strstr(inm, etag) != NULL;
}

static enum MHD_Result serve_file(req *r, const char *name) {
    const web_type *type = type_of(name);
    if (!name_valid(name) || !type || !strcmp(name, "catalog.json"))
        return web_error(r, 404, "not found\n");
    size_t bytes = 0;
    struct stat st;
    char *text = file_read(name, &bytes, &st);
    if (!text) return web_error(r, 404, "not found\n");
    bool page = !strcmp(type->ext, ".html");
    const char *lang = page ? web_lang_pick(header_value(r, "Accept-Language")) : "";
    char etag[96];
    snprintf(etag, sizeof etag, "\"%jx-%jx-%jx%s\"", (uintmax_t)st.st_size,
             (uintmax_t)st.st_mtim.tv_sec, (uintmax_t)st.st_mtim.tv_nsec, lang);
    if (etag_matches(r, etag)) {
        free(text);
        return web_send(r, 304, MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT),
                        type, etag, page);
    }
    if (page) page_set_lang(text, bytes, lang);
    struct MHD_Response *resp = MHD_create_response_from_buffer(bytes, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) free(text);
    return web_send(r, 200, resp, type, etag, page);
}

/* ---- /web/catalog.json: what the upgrade page shows anyone ------------------------------- */

static json_t *text_json(const cg_text *t) {
    if (!t->en[0] && !t->ko[0]) return json_null();
    return json_pack("{s:s,s:s}", "en", t->en, "ko", t->ko);
}

static json_t *model_json(const cg_model *m) {
    json_t *variants = json_array();
    for (int v = 0; v < m->variant_count; v++)
        json_array_append_new(variants, json_pack("{s:s,s:s,s:I,s:o}", "id", m->variants[v].id,
                                                  "name", m->variants[v].name, "credits",
                                                  (json_int_t)m->variants[v].credits, "note",
                                                  text_json(&m->variants[v].note)));
    json_t *aliases = json_array();
    for (int a = 0; a < m->alias_count; a++) json_array_append_new(aliases, json_string(m->aliases[a]));
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "id", m->id, "name", m->name, "kind",
                     cg_model_kind_name(m->kind), "credits",
                     m->variant_count ? json_null() : json_integer(m->credits), "variants",
                     variants, "aliases", aliases, "note", text_json(&m->note));
}

static json_t *agent_json(const cg_policy *p) {
    json_t *models = json_array();
    for (int i = 0; i < p->agent_model_count; i++)
        json_array_append_new(models, json_pack("{s:s,s:s}", "id", p->agent_models[i].id, "model",
                                                p->models[p->agent_models[i].model].id));
    int dflt = p->agent_default_video_model;
    return json_pack("{s:o,s:o}", "models", models, "default_video_model",
                     dflt >= 0 ? json_string(p->models[dflt].id) : json_null());
}

static json_t *catalog_json(const cg_policy *p) {
    json_t *plans = json_array(), *models = json_array();
    for (int i = 0; i < p->plan_count; i++)
        json_array_append_new(plans, json_pack("{s:s,s:s,s:s,s:b}", "id", p->plans[i].id, "name",
                                               p->plans[i].name, "name_ko", p->plans[i].name_ko,
                                               "paid", p->plans[i].paid));
    for (int i = 0; i < p->model_count; i++) json_array_append_new(models, model_json(&p->models[i]));
    char offset[16];
    int32_t off_min = p->utc_offset_s / 60;
    snprintf(offset, sizeof offset, "%c%02d:%02d", off_min < 0 ? '-' : '+', abs(off_min) / 60,
             abs(off_min) % 60);
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o}", "policy", p->version, "timezone", p->timezone,
                     "utc_offset", offset, "plans", plans, "models", models, "agent",
                     agent_json(p));
}

static enum MHD_Result serve_catalog(req *r) {
    static const web_type json_type = {".json", "application/json", "no-cache"};
    snapshot *snap = snapshot_acquire(r->srv);
    int v = cg_engine_version_index(&snap->engine, cg_time_now_us());
    json_t *doc = catalog_json(snap->engine.versions[v < 0 ? 0 : v].policy);
    snapshot_release(snap);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) return web_error(r, 503, "out of memory\n");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) free(text);
    return web_send(r, 200, resp, &json_type, NULL, false);
}

enum MHD_Result web_static_serve(req *r, const char *method, const char *url) {
    assert(r && method && web_static_match(url));
    r->route = -1; /* counted with the unrouted requests, not as an API route */
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return web_error(r, 405, "only GET and HEAD here\n");
    if (!strcmp(url, "/")) return serve_file(r, "index.html");
    if (!strcmp(url, "/support")) return serve_file(r, "support.html");
    if (!strcmp(url + 5, "catalog.json")) return serve_catalog(r);
    return serve_file(r, url + 5);
}
