/* policy.c — `creditgate policy check FILE...`: validates policy files and reads every benefit
 * back in plain words, so an operator can compare the file with the help page. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "creditgate/engine.h"

static void print_policy(const cg_policy *p, cg_lang lang) {
    char at[CG_RFC3339_TEXT_BYTES], text[CG_EXPLAIN_BYTES_MAX];
    cg_time_format(p->effective_at_us, p->utc_offset_s, at, sizeof at);
    printf("%s: version %s, in force from %s (%s)\n", p->source_path, p->version, at, p->timezone);
    printf("  %d plans, %d models, %d benefits, %d restrictions; holds expire after %llds\n", p->plan_count,
           p->model_count, p->benefit_count, p->restriction_count, (long long)p->hold_ttl_s);
    for (int i = 0; i < p->plan_count; i++)
        if (p->plans[i].inherits >= 0)
            printf("  %s receives the same unlimited benefits as %s\n", p->plans[i].name,
                   p->plans[p->plans[i].inherits].name);
    for (int r = 0; r < p->restriction_count; r++)
        printf("  restriction %s: %s\n", p->restrictions[r].id,
               lang == CG_LANG_KO ? p->restrictions[r].note.ko : p->restrictions[r].note.en);
    for (int b = 0; b < p->benefit_count; b++) {
        cg_benefit_describe(p, b, lang, text, sizeof text);
        printf("  benefit %s (line %d): %s\n", p->benefits[b].id, p->benefits[b].line, text);
    }
    if (p->agent_default_video_model >= 0)
        printf("  Agent 2.0 default video model: %s\n", p->models[p->agent_default_video_model].name);
    for (int r = 0; r < p->agent_route_count; r++)
        printf("  Agent 2.0 uses %s when the prompt says \"%s\" (%d phrases)\n",
               p->models[p->agent_routes[r].model].name, p->agent_routes[r].phrases[0],
               p->agent_routes[r].phrase_count);
    for (int a = 0; a < p->agent_model_count; a++) {
        const cg_model *m = &p->models[p->agent_models[a].model];
        printf("  agent model %s: %s, %lld credits per conversation\n", p->agent_models[a].id, m->name,
               (long long)m->credits);
    }
}

int cli_cmd_policy(int argc, char **argv) {
    const char *usage = "usage: creditgate policy check FILE... [--lang en|ko]\n";
    if (argc < 2 || strcmp(argv[1], "check")) {
        fputs(usage, argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
        return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    cg_lang lang = CG_LANG_EN;
    const char *files[CLI_POLICY_FILES_MAX];
    int file_count = 0;
    cg_err err = {0};
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--lang") && i + 1 < argc) {
            if (cg_lang_parse(argv[++i], &lang, &err)) return cli_fail(&err, false);
        } else if (file_count < CLI_POLICY_FILES_MAX && argv[i][0] != '-') {
            files[file_count++] = argv[i];
        } else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (file_count == 0) {
        fputs(usage, stderr);
        return 2;
    }
    cg_policy_set set;
    if (cli_load_policies(files, file_count, &set, &err)) return cli_fail(&err, false);
    cg_engine engine;
    int rc = cg_engine_init(&engine, &set, &err);
    if (!rc)
        for (int i = 0; i < set.count; i++) print_policy(set.versions[i], lang);
    if (!rc) printf("ok: %d version(s) valid\n", set.count);
    cg_engine_free(&engine);
    cg_policy_set_free(&set);
    return rc ? cli_fail(&err, false) : 0;
}
