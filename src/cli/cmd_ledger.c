/* cmd_ledger.c — the ledger's CLI: `member put|get`, `grant`, `charge`, `capture`, `release`,
 * `refund`, `balance`, `history`, `charges`, `ledger verify`, each on --db PATH (default
 * ./data/creditgate.db) with --json. Thin: flags → ledger.h call → print (JSON shapes come from
 * src/ledger/json.c so the HTTP bodies match). Without --idempotency-key a random one is
 * generated and printed, so a retry can reuse it. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "creditgate/engine.h"
#include "creditgate/ledger.h"

#define CLI_ZONE_OFFSET_S (9 * 3600) /* bare dates without a policy: the bundled Seoul zone */

typedef struct ledger_flags {
    const char *db, *member, *key, *plan, *billing, *joined, *effective, *at;
    const char *source, *category, *priority, *credits, *starts, *expires, *note;
    const char *charge, *model, *variant, *count, *agent_model, *kind, *prompt, *reason;
    const char *after, *limit, *before;
    const char *policies[CLI_POLICY_FILES_MAX];
    int policy_count;
    bool json;
    bool capture; /* charge --capture: quote + spend at once */
    char key_buf[48];
    /* resolved */
    int32_t utc_offset_s;
    cg_policy_set set;
    cg_engine engine;
    bool have_engine;
    cg_ledger *ledger;
} ledger_flags;

static const char usage_text[] =
    "usage: creditgate member put --member ID --plan P --billing B --joined DATE [--effective T]\n"
    "       creditgate member get --member ID [--at T]\n"
    "       creditgate grant --member ID --credits N [--source plan|purchase|promo|refund|adjustment]\n"
    "                        [--category paid|promotional] [--priority 0-100] [--starts T] [--expires T] [--note TEXT]\n"
    "       creditgate charge --member ID --model NAME [--variant V] [--count N] [--at T]\n"
    "                         [--agent-model lite|standard|soul --kind image|video] [--prompt TEXT]\n"
    "                         [--capture]   (settle at once: no hold to capture or release)\n"
    "       creditgate capture --member ID --charge ID [--credits N]\n"
    "       creditgate release --member ID --charge ID\n"
    "       creditgate refund  --member ID --charge ID [--credits N] [--reason TEXT]\n"
    "       creditgate balance --member ID\n"
    "       creditgate history --member ID [--after SEQ] [--limit N]\n"
    "       creditgate charges --member ID [--before CURSOR] [--limit N]   (newest first)\n"
    "       creditgate ledger verify\n"
    "every command: [--db PATH] (default ./" CLI_DEFAULT_DB ") [--json] [--policy FILE]...\n"
    "mutating commands: [--idempotency-key KEY] (generated and printed when omitted)\n";

static int parse(int argc, char **argv, ledger_flags *f, cg_err *err) {
    static const struct option opts[] = {
        {"db", 1, 0, 'd'}, {"member", 1, 0, 'm'}, {"idempotency-key", 1, 0, 'k'},
        {"plan", 1, 0, 'p'}, {"billing", 1, 0, 'b'}, {"joined", 1, 0, 'j'},
        {"effective", 1, 0, 'e'}, {"at", 1, 0, 'a'}, {"source", 1, 0, 's'},
        {"category", 1, 0, 'g'}, {"priority", 1, 0, 'P'}, {"credits", 1, 0, 'c'},
        {"starts", 1, 0, 'S'}, {"expires", 1, 0, 'E'}, {"note", 1, 0, 'n'},
        {"charge", 1, 0, 'C'}, {"model", 1, 0, 'M'}, {"variant", 1, 0, 'v'},
        {"count", 1, 0, 'N'}, {"agent-model", 1, 0, 'A'}, {"kind", 1, 0, 'K'},
        {"prompt", 1, 0, 'T'}, {"reason", 1, 0, 'r'}, {"after", 1, 0, 'f'},
        {"limit", 1, 0, 'l'}, {"before", 1, 0, 'B'}, {"policy", 1, 0, 'y'}, {"json", 0, 0, 'J'},
        {"capture", 0, 0, 'X'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    f->db = CLI_DEFAULT_DB;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': f->db = optarg; break;
        case 'm': f->member = optarg; break;
        case 'k': f->key = optarg; break;
        case 'p': f->plan = optarg; break;
        case 'b': f->billing = optarg; break;
        case 'j': f->joined = optarg; break;
        case 'e': f->effective = optarg; break;
        case 'a': f->at = optarg; break;
        case 's': f->source = optarg; break;
        case 'g': f->category = optarg; break;
        case 'P': f->priority = optarg; break;
        case 'c': f->credits = optarg; break;
        case 'S': f->starts = optarg; break;
        case 'E': f->expires = optarg; break;
        case 'n': f->note = optarg; break;
        case 'C': f->charge = optarg; break;
        case 'M': f->model = optarg; break;
        case 'v': f->variant = optarg; break;
        case 'N': f->count = optarg; break;
        case 'A': f->agent_model = optarg; break;
        case 'K': f->kind = optarg; break;
        case 'T': f->prompt = optarg; break;
        case 'r': f->reason = optarg; break;
        case 'f': f->after = optarg; break;
        case 'l': f->limit = optarg; break;
        case 'B': f->before = optarg; break;
        case 'X': f->capture = true; break;
        case 'y':
            if (f->policy_count >= CLI_POLICY_FILES_MAX)
                return cg_err_set(err, CG_EINVAL, "too many --policy files");
            f->policies[f->policy_count++] = optarg;
            break;
        case 'J': f->json = true; break;
        case 'h': fputs(usage_text, stdout); return 1;
        default:
            fputs(usage_text, stderr);
            return cg_err_set(err, CG_EINVAL, "unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        fputs(usage_text, stderr);
        return cg_err_set(err, CG_EINVAL, "unexpected argument '%s'", argv[optind]);
    }
    return CG_OK;
}

static int need(const char *value, const char *flag, cg_err *err) {
    if (value && *value) return CG_OK;
    return cg_err_set_field(err, CG_EINVAL, flag, "missing --%s", flag);
}

static int parse_int(const char *text, const char *flag, int64_t lo, int64_t hi, int64_t *out,
                     cg_err *err) {
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (!*text || *end || v < lo || v > hi)
        return cg_err_set_field(err, CG_EINVAL, flag, "--%s must be a whole number from %" PRId64
                                " to %" PRId64 ", got '%s'", flag, lo, hi, text);
    *out = v;
    return CG_OK;
}

/* 0 when text is NULL; a bare date is midnight in the policy's zone. */
static int parse_time(const ledger_flags *f, const char *text, const char *flag, int64_t *out,
                      cg_err *err) {
    *out = 0;
    if (!text) return CG_OK;
    cg_err e;
    if (cg_time_parse(text, f->utc_offset_s, out, &e))
        return cg_err_set_field(err, CG_EINVAL, flag, "--%s: %s", flag, e.msg);
    return CG_OK;
}

/* Opens the ledger (and, when with_engine, the policies and the engine). */
static int open_ledger(ledger_flags *f, bool with_engine, cg_err *err) {
    f->utc_offset_s = CLI_ZONE_OFFSET_S;
    cg_ledger_config config;
    cg_ledger_config_default(&config);
    config.group_commit = false; /* one call per process: no writer thread needed */
    if (with_engine) {
        int rc = cli_load_policies(f->policies, f->policy_count, &f->set, err);
        if (rc) return rc;
        if ((rc = cg_engine_init(&f->engine, &f->set, err))) {
            cg_policy_set_free(&f->set);
            return rc;
        }
        f->have_engine = true;
        f->utc_offset_s = f->set.versions[f->set.count - 1]->utc_offset_s;
        config.engine = &f->engine;
    }
    if (!f->key) {
        if (sodium_init() < 0) return cg_err_set(err, CG_EIO, "libsodium failed to start");
        uint8_t raw[12];
        randombytes_buf(raw, sizeof raw);
        strcpy(f->key_buf, "cli-");
        sodium_bin2hex(f->key_buf + 4, sizeof f->key_buf - 4, raw, sizeof raw);
        f->key = f->key_buf;
    }
    return cg_ledger_open_dsn(f->db, &config, &f->ledger, err);
}

static void close_ledger(ledger_flags *f) {
    cg_ledger_close(f->ledger);
    if (f->have_engine) {
        cg_engine_free(&f->engine);
        cg_policy_set_free(&f->set);
    }
}

static void fmt_time(int64_t at_us, int32_t offset_s, char *buf, size_t bytes) {
    if (at_us == CG_NO_END || at_us == 0) snprintf(buf, bytes, "never");
    else cg_time_format(at_us, offset_s, buf, bytes);
}

/* Prints a JSON object with "replayed" and "idempotency_key" added. */
static void print_json_obj(json_t *o, const ledger_flags *f, bool mutating, bool replayed) {
    if (mutating) {
        json_object_set_new(o, "idempotency_key", json_string(f->key));
        json_object_set_new(o, "replayed", json_boolean(replayed));
    }
    cli_print_json(o);
}

static void print_key(const ledger_flags *f, bool replayed) {
    if (!f->json)
        printf("idempotency key: %s%s\n", f->key, replayed ? " (replayed: no second effect)" : "");
}

/* ---- member ---- */

static void print_member(const cg_member_state *m, int32_t off) {
    char joined[CG_RFC3339_TEXT_BYTES], eff[CG_RFC3339_TEXT_BYTES];
    fmt_time(m->joined_at_us, off, joined, sizeof joined);
    fmt_time(m->effective_at_us, off, eff, sizeof eff);
    printf("member %s: plan %s, billing %s, joined %s (in force from %s)\n", m->member_id,
           m->plan, m->billing, joined, eff);
}

static int member_put(ledger_flags *f, cg_err *err) {
    int rc = need(f->member, "member", err);
    if (!rc) rc = need(f->plan, "plan", err);
    if (!rc) rc = need(f->billing, "billing", err);
    if (!rc) rc = need(f->joined, "joined", err);
    if (!rc) rc = open_ledger(f, true, err);
    if (rc) return rc;
    cg_member_put_input in = {.member_id = f->member, .idempotency_key = f->key,
                              .plan = f->plan, .billing = f->billing};
    rc = parse_time(f, f->joined, "joined", &in.joined_at_us, err);
    if (!rc) rc = parse_time(f, f->effective, "effective", &in.effective_at_us, err);
    cg_member_state m;
    bool replayed = false;
    if (!rc) rc = cg_ledger_member_put(f->ledger, &in, &m, &replayed, err);
    if (rc) return rc;
    if (f->json) return print_json_obj(cg_member_state_to_json(&m), f, true, replayed), CG_OK;
    print_member(&m, f->utc_offset_s);
    print_key(f, replayed);
    return CG_OK;
}

static int member_get(ledger_flags *f, cg_err *err) {
    int rc = need(f->member, "member", err);
    if (!rc) rc = open_ledger(f, false, err);
    int64_t at_us = 0;
    if (!rc) rc = parse_time(f, f->at, "at", &at_us, err);
    if (rc) return rc;
    cg_member_state hist[CG_MEMBER_VERSIONS_MAX], m;
    int n = 0;
    rc = cg_ledger_member_get(f->ledger, f->member, at_us, &m, err);
    if (!rc) rc = cg_ledger_member_history(f->ledger, f->member, hist, CG_MEMBER_VERSIONS_MAX,
                                           &n, err);
    if (rc) return rc;
    if (f->json) {
        json_t *o = cg_member_state_to_json(&m), *h = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(h, cg_member_state_to_json(&hist[i]));
        json_object_set_new(o, "history", h);
        cli_print_json(o);
        return CG_OK;
    }
    print_member(&m, f->utc_offset_s);
    printf("history (%d version%s):\n", n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        printf("  ");
        print_member(&hist[i], f->utc_offset_s);
    }
    return CG_OK;
}

int cli_cmd_member(int argc, char **argv) {
    ledger_flags f = {0};
    cg_err err = {0};
    const char *sub = argc > 1 ? argv[1] : "";
    int rc = parse(argc - 1, argv + 1, &f, &err);
    if (rc == 1) return 0;
    if (!rc && !strcmp(sub, "put")) rc = member_put(&f, &err);
    else if (!rc && !strcmp(sub, "get")) rc = member_get(&f, &err);
    else if (!rc) rc = cg_err_set(&err, CG_EINVAL, "usage: creditgate member put|get ...");
    close_ledger(&f);
    return rc ? cli_fail(&err, f.json) : 0;
}

/* ---- grant ---- */

static void print_grant_line(const cg_grant *g, int32_t off) {
    char exp[CG_RFC3339_TEXT_BYTES];
    fmt_time(g->expires_at_us, off, exp, sizeof exp);
    printf("  %s  %-10s %-11s prio %3d  %6" PRId64 " left of %-6" PRId64 " held %-6" PRId64
           " expires %s%s%s\n", g->grant_id, cg_grant_source_name(g->source),
           cg_grant_category_name(g->category), g->priority, g->remaining, g->credits, g->held,
           exp, g->note[0] ? "  " : "", g->note);
}

static int grant_inputs(ledger_flags *f, cg_grant_input *in, cg_err *err) {
    in->source = CG_SOURCE_PURCHASE;
    in->category = CG_CATEGORY_PAID;
    in->priority = -1;
    int64_t v = 0;
    int rc = parse_int(f->credits, "credits", 1, CG_CREDITS_MAX, &in->credits, err);
    if (!rc && f->source) rc = cg_grant_source_parse(f->source, &in->source, err);
    if (!rc && f->source && !f->category && in->source == CG_SOURCE_PROMO)
        in->category = CG_CATEGORY_PROMO;
    if (!rc && f->category) rc = cg_grant_category_parse(f->category, &in->category, err);
    if (!rc && f->priority && !(rc = parse_int(f->priority, "priority", 0, 100, &v, err)))
        in->priority = (int)v;
    if (!rc) rc = parse_time(f, f->starts, "starts", &in->starts_at_us, err);
    if (!rc) rc = parse_time(f, f->expires, "expires", &in->expires_at_us, err);
    return rc;
}

int cli_cmd_grant(int argc, char **argv) {
    ledger_flags f = {0};
    cg_err err = {0};
    int rc = parse(argc, argv, &f, &err);
    if (rc == 1) return 0;
    if (!rc) rc = need(f.member, "member", &err);
    if (!rc) rc = need(f.credits, "credits", &err);
    if (!rc) rc = open_ledger(&f, false, &err);
    cg_grant_input in = {.member_id = f.member, .idempotency_key = f.key, .note = f.note};
    if (!rc) rc = grant_inputs(&f, &in, &err);
    cg_grant g;
    bool replayed = false;
    if (!rc) rc = cg_ledger_grant(f.ledger, &in, &g, &replayed, &err);
    if (!rc && f.json) print_json_obj(cg_grant_to_json(&g), &f, true, replayed);
    else if (!rc) {
        printf("granted %" PRId64 " credits to %s:\n", g.credits, g.member_id);
        print_grant_line(&g, f.utc_offset_s);
        print_key(&f, replayed);
    }
    close_ledger(&f);
    return rc ? cli_fail(&err, f.json) : 0;
}

/* ---- charge, capture, release, refund ---- */

static void print_charge(const cg_charge *c, int32_t off) {
    char exp[CG_RFC3339_TEXT_BYTES];
    fmt_time(c->expires_at_us, off, exp, sizeof exp);
    printf("charge %s for %s: %s, %" PRId64 " credits (policy %s; plan %s, %s)\n", c->charge_id,
           c->member_id, cg_charge_status_name(c->status), c->credits, c->policy_version,
           c->plan, c->billing);
    if (c->status == CG_CHARGE_HELD) printf("  held %" PRId64 " until %s\n", c->held, exp);
    else printf("  captured %" PRId64 ", refunded %" PRId64 "\n", c->captured, c->refunded);
    for (int i = 0; i < c->item_count; i++) {
        const cg_charge_item *it = &c->items[i];
        printf("  %-12s %s%s%s x%" PRId64 ": %s, %" PRId64 " credits\n      %s\n", it->kind,
               it->model, it->variant[0] ? " " : "", it->variant, it->count,
               it->unlimited ? "UNLIMITED" : "charged", it->credits, it->reason);
    }
    for (int i = 0; i < c->part_count; i++) {
        const cg_charge_part *p = &c->parts[i];
        printf("  from %s (%s, %s): held %" PRId64 ", captured %" PRId64 ", refunded %" PRId64
               "\n", p->grant_id, cg_grant_source_name(p->source),
               cg_grant_category_name(p->category), p->held, p->captured, p->refunded);
    }
}

static int charge_inputs(ledger_flags *f, cg_charge_input *in, cg_err *err) {
    int rc = need(f->member, "member", err);
    if (!rc && !f->model && !f->agent_model) rc = need(f->model, "model", err);
    in->member_id = f->member;
    in->model = f->model;
    in->variant = f->variant;
    in->agent_model = f->agent_model;
    in->agent_kind = f->kind;
    in->prompt = f->prompt;
    in->capture = f->capture;
    if (!rc && f->count) rc = parse_int(f->count, "count", 1, CG_COUNT_MAX, &in->count, err);
    return rc;
}

int cli_cmd_charge(int argc, char **argv) {
    ledger_flags f = {0};
    cg_err err = {0};
    cg_charge_input in = {0};
    static cg_charge c;
    int rc = parse(argc, argv, &f, &err);
    if (rc == 1) return 0;
    if (!rc) rc = charge_inputs(&f, &in, &err);
    if (!rc) rc = open_ledger(&f, true, &err);
    in.idempotency_key = f.key;
    if (!rc) rc = parse_time(&f, f.at, "at", &in.at_us, &err);
    bool replayed = false;
    if (!rc) rc = cg_ledger_charge(f.ledger, &in, &c, &replayed, &err);
    if (!rc && f.json) print_json_obj(cg_charge_to_json(&c), &f, true, replayed);
    else if (!rc) {
        print_charge(&c, f.utc_offset_s);
        print_key(&f, replayed);
    }
    close_ledger(&f);
    if (rc == CG_EINSUFFICIENT && f.json) {
        fprintf(stderr, "creditgate: %s\n", err.msg);
        cli_print_json(cg_ledger_error_to_json(&err, &c));
        return 1;
    }
    return rc ? cli_fail(&err, f.json) : 0;
}

typedef int (*settle_fn)(cg_ledger *, const cg_settle_input *, cg_charge *, bool *, cg_err *);

static int settle_cmd(int argc, char **argv, settle_fn fn) {
    ledger_flags f = {0};
    cg_err err = {0};
    static cg_charge c;
    int rc = parse(argc, argv, &f, &err);
    if (rc == 1) return 0;
    if (!rc) rc = need(f.member, "member", &err);
    if (!rc) rc = need(f.charge, "charge", &err);
    cg_settle_input in = {.member_id = f.member, .charge_id = f.charge, .credits = -1,
                          .reason = f.reason};
    if (!rc && f.credits) rc = parse_int(f.credits, "credits", 0, CG_CREDITS_MAX, &in.credits,
                                         &err);
    if (!rc) rc = open_ledger(&f, false, &err);
    in.idempotency_key = f.key;
    bool replayed = false;
    if (!rc) rc = fn(f.ledger, &in, &c, &replayed, &err);
    if (!rc && f.json) print_json_obj(cg_charge_to_json(&c), &f, true, replayed);
    else if (!rc) {
        print_charge(&c, f.utc_offset_s);
        print_key(&f, replayed);
    }
    close_ledger(&f);
    return rc ? cli_fail(&err, f.json) : 0;
}

int cli_cmd_capture(int argc, char **argv) { return settle_cmd(argc, argv, cg_ledger_capture); }
int cli_cmd_release(int argc, char **argv) { return settle_cmd(argc, argv, cg_ledger_release); }
int cli_cmd_refund(int argc, char **argv) { return settle_cmd(argc, argv, cg_ledger_refund); }

/* ---- balance, history, verify ---- */

int cli_cmd_balance(int argc, char **argv) {
    ledger_flags f = {0};
    cg_err err = {0};
    static cg_balance b;
    int rc = parse(argc, argv, &f, &err);
    if (rc == 1) return 0;
    if (!rc) rc = need(f.member, "member", &err);
    if (!rc) rc = open_ledger(&f, false, &err);
    if (!rc) rc = cg_ledger_balance(f.ledger, f.member, &b, &err);
    if (!rc && f.json) cli_print_json(cg_balance_to_json(&b));
    else if (!rc) {
        printf("%s: %" PRId64 " available (paid %" PRId64 ", promotional %" PRId64 "), %" PRId64
               " held\ngrants in spending order:\n", b.member_id, b.available, b.available_paid,
               b.available_promo, b.held);
        for (int i = 0; i < b.grant_count; i++) print_grant_line(&b.grants[i], f.utc_offset_s);
    }
    close_ledger(&f);
    return rc ? cli_fail(&err, f.json) : 0;
}

int cli_cmd_history(int argc, char **argv) {
    ledger_flags f = {0};
    cg_err err = {0};
    static cg_journal_entry page[CG_HISTORY_PAGE_MAX];
    int64_t after = 0, limit = 50, next = 0;
    int n = 0;
    int rc = parse(argc, argv, &f, &err);
    if (rc == 1) return 0;
    if (!rc) rc = need(f.member, "member", &err);
    if (!rc && f.after) rc = parse_int(f.after, "after", 0, INT64_MAX, &after, &err);
    if (!rc && f.limit) rc = parse_int(f.limit, "limit", 1, CG_HISTORY_PAGE_MAX, &limit, &err);
    if (!rc) rc = open_ledger(&f, false, &err);
    if (!rc) rc = cg_ledger_history(f.ledger, f.member, after, (int)limit, page, &n, &next, &err);
    if (!rc && f.json) {
        json_t *o = json_object(), *arr = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(arr, cg_journal_entry_to_json(&page[i]));
        json_object_set_new(o, "entries", arr);
        json_object_set_new(o, "next_after", next ? json_integer(next) : json_null());
        cli_print_json(o);
    } else if (!rc) {
        char at[CG_RFC3339_TEXT_BYTES];
        for (int i = 0; i < n; i++) {
            const cg_journal_entry *e = &page[i];
            fmt_time(e->at_us, f.utc_offset_s, at, sizeof at);
            printf("%5" PRId64 "  %s  %-7s %-19s %-19s remaining %+" PRId64 " held %+" PRId64
                   "%s%s\n", e->seq, at, cg_journal_kind_name(e->kind), e->grant_id,
                   e->charge_id[0] ? e->charge_id : "-", e->delta_remaining, e->delta_held,
                   e->note[0] ? "  " : "", e->note);
        }
        if (next) printf("more: --after %" PRId64 "\n", next);
    }
    close_ledger(&f);
    return rc ? cli_fail(&err, f.json) : 0;
}

/* A member's charges, newest first, 0-credit (unlimited) ones included. */
int cli_cmd_charges(int argc, char **argv) {
    ledger_flags f = {0};
    cg_err err = {0};
    static cg_charge page[CG_CHARGES_PAGE_MAX];
    char next[CG_CHARGES_CURSOR_BYTES_MAX] = "";
    int64_t limit = 20;
    int n = 0;
    int rc = parse(argc, argv, &f, &err);
    if (rc == 1) return 0;
    if (!rc) rc = need(f.member, "member", &err);
    if (!rc && f.limit) rc = parse_int(f.limit, "limit", 1, CG_CHARGES_PAGE_MAX, &limit, &err);
    if (!rc) rc = open_ledger(&f, false, &err);
    if (!rc) rc = cg_ledger_charges(f.ledger, f.member, f.before, (int)limit, page, &n, next, &err);
    if (!rc && f.json) {
        cli_print_json(cg_charges_page_to_json(page, n, next));
    } else if (!rc) {
        for (int i = 0; i < n; i++) print_charge(&page[i], f.utc_offset_s);
        if (n == 0) printf("no charges\n");
        if (next[0]) printf("more: --before %s\n", next);
    }
    close_ledger(&f);
    return rc ? cli_fail(&err, f.json) : 0;
}

int cli_cmd_ledger(int argc, char **argv) {
    ledger_flags f = {0};
    cg_err err = {0};
    static cg_verify_report r;
    const char *sub = argc > 1 ? argv[1] : "";
    int rc = parse(argc - 1, argv + 1, &f, &err);
    if (rc == 1) return 0;
    if (!rc && strcmp(sub, "verify") != 0)
        rc = cg_err_set(&err, CG_EINVAL, "usage: creditgate ledger verify [--db PATH] [--json]");
    if (!rc) rc = open_ledger(&f, false, &err);
    int vrc = rc ? rc : cg_ledger_verify(f.ledger, &r, &err);
    close_ledger(&f);
    if (rc || (vrc && vrc != CG_ECONFLICT)) return cli_fail(&err, f.json);
    if (f.json) cli_print_json(cg_verify_report_to_json(&r));
    else {
        printf("%s: %" PRId64 " members, %" PRId64 " grants, %" PRId64 " charges, %" PRId64
               " journal entries recomputed; %" PRId64 " difference(s)\n",
               r.problem_count ? "DIFFERENCES" : "ok", r.members, r.grants, r.charges,
               r.entries, r.problem_count);
        for (int64_t i = 0; i < r.problem_count && i < CG_VERIFY_PROBLEMS_MAX; i++)
            printf("  %s\n", r.problems[i]);
    }
    return r.problem_count ? 1 : 0;
}
