/* quote.c — `creditgate quote` and `creditgate benefits`: one decision, or a member's active
 * benefits, printed as text or --json. Thin: flags → cg_quote_input → engine → print. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "creditgate/engine.h"
#include "creditgate/engine_json.h"

typedef struct quote_flags {
    cg_quote_input in;
    const char *at_text;
    const char *count_text;
    const char *lang_text;
    const char *policies[CLI_POLICY_FILES_MAX];
    int policy_count;
    bool json;
} quote_flags;

static const char quote_usage[] =
    "usage: creditgate quote --plan P --billing B --joined DATE|RFC3339 --model NAME [--variant V]\n"
    "                        [--count N] [--at DATE|RFC3339] [--agent-model lite|standard|soul]\n"
    "                        [--kind image|video] [--prompt TEXT] [--policy FILE]... [--lang en|ko] [--json]\n";
static const char benefits_usage[] =
    "usage: creditgate benefits --plan P --billing B --joined D [--at T] [--policy FILE]... [--lang en|ko] [--json]\n";

static int usage_error(cg_err *err, const char *usage, const char *what) {
    fputs(usage, stderr);
    return cg_err_set(err, CG_EINVAL, "%s", what);
}

/* Parses the flags shared by quote and benefits; returns 1 after printing --help. */
static int parse_flags(int argc, char **argv, const char *usage, quote_flags *f, cg_err *err) {
    enum { O_PLAN = 1, O_BILLING, O_JOINED, O_MODEL, O_VARIANT, O_COUNT, O_AT, O_AGENT, O_KIND, O_PROMPT,
           O_POLICY, O_LANG, O_JSON, O_HELP };
    static const struct option opts[] = {
        {"plan", required_argument, 0, O_PLAN},       {"billing", required_argument, 0, O_BILLING},
        {"joined", required_argument, 0, O_JOINED},   {"model", required_argument, 0, O_MODEL},
        {"variant", required_argument, 0, O_VARIANT}, {"count", required_argument, 0, O_COUNT},
        {"at", required_argument, 0, O_AT},           {"agent-model", required_argument, 0, O_AGENT},
        {"kind", required_argument, 0, O_KIND},       {"prompt", required_argument, 0, O_PROMPT},
        {"policy", required_argument, 0, O_POLICY},   {"lang", required_argument, 0, O_LANG},
        {"json", no_argument, 0, O_JSON},             {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    memset(f, 0, sizeof *f);
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_PLAN: f->in.plan = optarg; break;
        case O_BILLING: f->in.billing = optarg; break;
        case O_JOINED: f->in.joined = optarg; break;
        case O_MODEL: f->in.model = optarg; break;
        case O_VARIANT: f->in.variant = optarg; break;
        case O_COUNT: f->count_text = optarg; break;
        case O_AT: f->at_text = optarg; break;
        case O_AGENT: f->in.agent_model = optarg; break;
        case O_KIND: f->in.agent_kind = optarg; break;
        case O_PROMPT: f->in.prompt = optarg; break;
        case O_POLICY:
            if (f->policy_count >= CLI_POLICY_FILES_MAX)
                return usage_error(err, usage, "too many --policy files");
            f->policies[f->policy_count++] = optarg;
            break;
        case O_LANG: f->lang_text = optarg; break;
        case O_JSON: f->json = true; break;
        case O_HELP: fputs(usage, stdout); return 1;
        default: {
            char what[128];
            snprintf(what, sizeof what, "unknown or incomplete flag '%s'", argv[optind - 1]);
            return usage_error(err, usage, what);
        }
        }
    }
    if (optind < argc) return usage_error(err, usage, "unexpected argument");
    if (!f->in.plan) return cg_err_set_field(err, CG_EINVAL, "plan", "missing --plan");
    if (!f->in.billing) return cg_err_set_field(err, CG_EINVAL, "billing", "missing --billing");
    if (!f->in.joined) return cg_err_set_field(err, CG_EINVAL, "joined", "missing --joined");
    return CG_OK;
}

/* Turns --at and --count text into numbers, using the policy's zone for a bare --at date. */
static int resolve_numbers(quote_flags *f, const cg_policy_set *set, cg_err *err) {
    f->in.at_us = cg_time_now_us();
    if (f->at_text) {
        cg_err e;
        if (cg_time_parse(f->at_text, set->versions[set->count - 1]->utc_offset_s, &f->in.at_us, &e))
            return cg_err_set_field(err, CG_EINVAL, "at", "--at: %s", e.msg);
    }
    if (f->count_text) {
        char *end = NULL;
        long long n = strtoll(f->count_text, &end, 10);
        if (!*f->count_text || *end || n < 1 || n > CG_COUNT_MAX)
            return cg_err_set_field(err, CG_EINVAL, "count", "--count must be a whole number from 1 to %d, got '%s'",
                                    CG_COUNT_MAX, f->count_text);
        f->in.count = n;
    }
    return CG_OK;
}

static int setup(int argc, char **argv, const char *usage, quote_flags *f, cg_policy_set *set,
                 cg_engine *engine, cg_lang *lang, cg_err *err) {
    int rc = parse_flags(argc, argv, usage, f, err);
    if (rc) return rc;
    rc = cg_lang_parse(f->lang_text, lang, err);
    if (!rc) rc = cli_load_policies(f->policies, f->policy_count, set, err);
    if (rc) return rc;
    rc = resolve_numbers(f, set, err);
    if (!rc) rc = cg_engine_init(engine, set, err);
    if (rc) cg_policy_set_free(set);
    return rc;
}

static void print_decision_text(const cg_decision *d, cg_lang lang) {
    char at[CG_RFC3339_TEXT_BYTES], reason[CG_EXPLAIN_BYTES_MAX];
    cg_time_format(d->at_us, d->policy->utc_offset_s, at, sizeof at);
    printf("policy %s at %s\n", d->policy->version, at);
    for (int i = 0; i < d->item_count; i++) {
        const cg_item *it = &d->items[i];
        const cg_model *m = &d->policy->models[it->model];
        cg_item_explain(d, i, lang, reason, sizeof reason);
        printf("%-12s %s%s%s x%lld: %s, %lld credits\n    %s\n",
               it->kind == CG_ITEM_GENERATION ? "generation" : "conversation", m->id,
               it->variant >= 0 ? " " : "", it->variant >= 0 ? m->variants[it->variant].id : "",
               (long long)it->count, it->unlimited ? "UNLIMITED" : "charged", (long long)it->credits, reason);
    }
    printf("total: %lld credits\n", (long long)d->total_credits);
}

int cli_cmd_quote(int argc, char **argv) {
    quote_flags f;
    cg_policy_set set;
    cg_engine engine;
    cg_lang lang;
    cg_err err = {0};
    int rc = setup(argc, argv, quote_usage, &f, &set, &engine, &lang, &err);
    if (rc == 1) return 0;
    if (rc) return cli_fail(&err, f.json);
    cg_decision d;
    rc = cg_engine_quote(&engine, &f.in, &d, &err);
    if (!rc) {
        if (f.json) cli_print_json(cg_decision_to_json(&d, lang));
        else print_decision_text(&d, lang);
    }
    cg_engine_free(&engine);
    cg_policy_set_free(&set);
    return rc ? cli_fail(&err, f.json) : 0;
}

int cli_cmd_benefits(int argc, char **argv) {
    quote_flags f;
    cg_policy_set set;
    cg_engine engine;
    cg_lang lang;
    cg_err err = {0};
    int rc = setup(argc, argv, benefits_usage, &f, &set, &engine, &lang, &err);
    if (rc == 1) return 0;
    if (rc) return cli_fail(&err, f.json);
    static cg_active_benefit list[CG_BENEFITS_LIST_MAX];
    int count = 0;
    const cg_policy *p = NULL;
    cg_member member;
    rc = cg_engine_active_benefits(&engine, f.in.plan, f.in.billing, f.in.joined, 0, f.in.at_us, &p, &member,
                                   list, CG_BENEFITS_LIST_MAX, &count, &err);
    if (!rc && f.json) cli_print_json(cg_active_benefits_to_json(p, list, count, lang));
    else if (!rc) {
        char reason[CG_EXPLAIN_BYTES_MAX];
        printf(lang == CG_LANG_KO ? "혜택 사용중 (%s, %d개)\n" : "Active benefits (policy %s, %d)\n", p->version, count);
        for (int i = 0; i < count; i++) {
            cg_active_benefit_explain(p, &list[i], lang, reason, sizeof reason);
            printf("  %s: %s\n", p->benefits[list[i].benefit].id, reason);
        }
    }
    cg_engine_free(&engine);
    cg_policy_set_free(&set);
    return rc ? cli_fail(&err, f.json) : 0;
}
