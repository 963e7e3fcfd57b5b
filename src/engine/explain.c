/* explain.c — renders decisions and benefits as sentences a support agent can paste to a
 * member, in English and Korean. Runs only when someone reads a reason, never on the decision
 * path. Writes into caller buffers through a tiny bounded appender; never allocates. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "creditgate/engine.h"
#include "engine_internal.h"

typedef struct out {
    char *buf;
    size_t cap, len;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...) {
    if (o->len + 1 >= o->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0) o->len = o->len + (size_t)n < o->cap ? o->len + (size_t)n : o->cap - 1;
}

static const char *plan_name(const cg_plan *plan, cg_lang lang) {
    return lang == CG_LANG_KO ? plan->name_ko : plan->name;
}

static void put_date(out *o, cg_date d) {
    char text[CG_DATE_TEXT_BYTES];
    cg_date_format(d, text, sizeof text);
    put(o, "%s", text);
}

static void put_instant_date(out *o, const cg_policy *p, int64_t at_us) {
    put_date(o, cg_time_to_date(at_us, p->utc_offset_s));
}

/* "Nanobanana Pro 1K/2K", "Carat Video". */
static void put_model_variants(out *o, const cg_policy *p, int model, uint32_t variant_mask) {
    const cg_model *m = &p->models[model];
    put(o, "%s", m->name);
    uint32_t all = m->variant_count ? (1u << m->variant_count) - 1 : 0;
    if (!m->variant_count || variant_mask == all) return;
    const char *sep = " ";
    for (int v = 0; v < m->variant_count; v++)
        if (variant_mask & (1u << v)) put(o, "%s%s", sep, m->variants[v].name), sep = "/";
}

static void put_item_label(out *o, const cg_policy *p, int model, int variant) {
    put(o, "%s", p->models[model].name);
    if (variant >= 0) put(o, " %s", p->models[model].variants[variant].name);
}

static uint32_t cover_mask_for(const cg_benefit *b, int model) {
    for (int c = 0; c < b->cover_count; c++)
        if (b->covers[c].model == model) return b->covers[c].variant_mask;
    return 0;
}

/* "Premium (and Max)" — the plans as written, then those that inherit them. */
static void put_plans(out *o, const cg_policy *p, const cg_benefit *b, cg_lang lang) {
    if (b->plans_omitted) return;
    const char *sep = "";
    for (int i = 0; i < p->plan_count; i++)
        if (b->plan_mask_named & (1u << i)) put(o, "%s%s", sep, plan_name(&p->plans[i], lang)), sep = "/";
    uint32_t inherited = b->plan_mask & ~b->plan_mask_named;
    if (!inherited) return;
    put(o, lang == CG_LANG_KO ? " (" : " (and ");
    sep = "";
    for (int i = 0; i < p->plan_count; i++)
        if (inherited & (1u << i)) put(o, "%s%s", sep, plan_name(&p->plans[i], lang)), sep = "/";
    put(o, lang == CG_LANG_KO ? " 포함)" : ")");
}

static void put_billing(out *o, const cg_policy *p, const cg_benefit *b, cg_lang lang) {
    if (b->billing_mask == (1u << p->billing_count) - 1u) return;
    const char *sep = lang == CG_LANG_KO ? " (" : " on ";
    for (int i = 0; i < p->billing_count; i++) {
        if (!(b->billing_mask & (1u << i))) continue;
        const char *name = p->billings[i];
        if (lang == CG_LANG_KO) name = !strcmp(name, "annual") ? "연간 결제" : !strcmp(name, "monthly") ? "월간 결제" : name;
        put(o, "%s%s", sep, name);
        sep = "/";
    }
    put(o, lang == CG_LANG_KO ? ")" : " billing");
}

static void put_window_en(out *o, cg_window w) {
    if (w.from != CG_DATE_MIN && w.to != CG_DATE_MAX) {
        put(o, " who joined ");
        put_date(o, w.from);
        put(o, " to ");
        put_date(o, w.to);
    } else if (w.from != CG_DATE_MIN) {
        put(o, " who joined on or after ");
        put_date(o, w.from);
    } else if (w.to != CG_DATE_MAX) {
        put(o, " who joined on or before ");
        put_date(o, w.to);
    }
}

static void put_window_ko(out *o, cg_window w) {
    if (w.from != CG_DATE_MIN && w.to != CG_DATE_MAX) {
        put_date(o, w.from);
        put(o, "~");
        put_date(o, w.to);
        put(o, " 가입 ");
    } else if (w.from != CG_DATE_MIN) {
        put_date(o, w.from);
        put(o, " 이후 가입 ");
    } else if (w.to != CG_DATE_MAX) {
        put_date(o, w.to);
        put(o, " 이전 가입 ");
    }
}

static void put_duration(out *o, const cg_duration *d, cg_lang lang) {
    if (!(d->years | d->months | d->days)) return;
    int n = d->years ? d->years : d->months ? d->months : d->days;
    if (lang == CG_LANG_KO) {
        put(o, " 가입 후 %d%s간", n, d->years ? "년" : d->months ? "개월" : "일");
        return;
    }
    const char *unit = d->years ? "year" : d->months ? "month" : "day";
    put(o, " for %d %s%s after joining", n, unit, n == 1 ? "" : "s");
}

/* "Premium members who joined on or after 2026-02-25" / "2026-02-25 이후 가입 프리미엄 회원". */
static void put_eligibility(out *o, const cg_policy *p, const cg_benefit *b, cg_lang lang) {
    if (lang == CG_LANG_KO) {
        put_window_ko(o, b->joined);
        put_plans(o, p, b, lang);
        put(o, b->plans_omitted ? "회원" : " 회원");
        put_billing(o, p, b, lang);
        return;
    }
    put_plans(o, p, b, lang);
    put(o, b->plans_omitted ? "members" : " members");
    put_billing(o, p, b, lang);
    put_window_en(o, b->joined);
}

static void put_unlimited(out *o, const cg_policy *p, int benefit, int model, int64_t ends_at_us, cg_lang lang) {
    const cg_benefit *b = &p->benefits[benefit];
    if (lang == CG_LANG_KO) {
        put(o, "무제한: ");
        put_eligibility(o, p, b, lang);
        put(o, " 대상 ");
        put_model_variants(o, p, model, cover_mask_for(b, model));
        if (ends_at_us != CG_NO_END) put(o, " ("), put_instant_date(o, p, ends_at_us), put(o, "까지)");
        return;
    }
    put(o, "unlimited: ");
    put_model_variants(o, p, model, cover_mask_for(b, model));
    put(o, " for ");
    put_eligibility(o, p, b, lang);
    if (ends_at_us != CG_NO_END) put(o, ", until "), put_instant_date(o, p, ends_at_us);
}

static void put_lacks(out *o, const cg_decision *d, const cg_item *it, cg_lang lang) {
    const cg_policy *p = d->policy;
    const cg_plan *plan = &p->plans[d->member.plan];
    bool ko = lang == CG_LANG_KO;
    const char *sep = "";
    put(o, ko ? "; 이 회원은 " : "; this member ");
    if (it->lacks & CG_LACKS_PLAN) {
        put(o, ko ? "%s 플랜입니다" : "is on the %s plan", plan_name(plan, lang));
        if (!plan->paid) put(o, ko ? " (무제한 혜택은 유료 플랜 전용)" : " (unlimited benefits are for paid plans)");
        sep = ko ? ", " : " and ";
    }
    if (it->lacks & CG_LACKS_BILLING) {
        put(o, ko ? "%s%s 결제입니다" : "%spays %s", sep, p->billings[d->member.billing]);
        sep = ko ? ", " : " and ";
    }
    if (it->lacks & (CG_LACKS_JOINED_EARLY | CG_LACKS_JOINED_LATE | CG_LACKS_EXPIRED)) {
        put(o, ko ? "%s" : "%sjoined ", sep);
        put_date(o, d->member.joined);
        if (ko) put(o, "에 가입했습니다");
    }
    if (it->lacks & CG_LACKS_EXPIRED) {
        put(o, ko ? " (혜택 종료: " : ", and the benefit ended ");
        put_instant_date(o, p, it->benefit_ends_at_us);
        if (ko) put(o, ")");
    }
}

static void put_charged(out *o, const cg_decision *d, const cg_item *it, cg_lang lang) {
    const cg_policy *p = d->policy;
    const cg_model *m = &p->models[it->model];
    bool ko = lang == CG_LANG_KO;
    switch (it->reason) {
    case CG_REASON_NO_BENEFIT:
        if (m->note.en[0]) { put(o, "%s", ko ? m->note.ko : m->note.en); break; }
        put_item_label(o, p, it->model, it->variant);
        put(o, ko ? "은(는) 무제한 혜택 대상이 아니며 모든 회원에게 크레딧이 차감됩니다"
                  : " is not covered by any unlimited benefit; credits are deducted for every member");
        break;
    case CG_REASON_VARIANT_NOT_COVERED: {
        const cg_variant *v = &m->variants[it->variant];
        put_item_label(o, p, it->model, it->variant);
        if (v->note.en[0]) { put(o, ": %s", ko ? v->note.ko : v->note.en); break; }
        put(o, ko ? "은(는) 모든 회원에게 크레딧이 차감됩니다" : " is charged for every member");
        if (m->note.en[0]) put(o, "; %s", ko ? m->note.ko : m->note.en);
        break;
    }
    case CG_REASON_NOT_ELIGIBLE: {
        const cg_benefit *b = &p->benefits[it->benefit];
        put_model_variants(o, p, it->model, cover_mask_for(b, it->model));
        if (ko) {
            put(o, "은(는) ");
            put_eligibility(o, p, b, lang);
            put(o, "에게만");
            put_duration(o, &b->duration, lang);
            put(o, " 무제한입니다");
        } else {
            put(o, " is unlimited only for ");
            put_eligibility(o, p, b, lang);
            put_duration(o, &b->duration, lang);
        }
        put_lacks(o, d, it, lang);
        break;
    }
    case CG_REASON_RESTRICTED: {
        const cg_restriction *r = &p->restrictions[it->restriction];
        put(o, "%s", ko ? r->note.ko : r->note.en);
        put(o, ko ? "; 이 회원은 " : "; this member joined ");
        put_date(o, d->member.joined);
        if (ko) put(o, "에 가입했습니다");
        break;
    }
    case CG_REASON_CONVERSATION:
        put(o, ko ? "AI 에이전트 대화(%s)는 생성이 무제한이어도 별도로 크레딧이 차감됩니다"
                  : "AI agent conversation (%s) is charged separately, even when the generation is unlimited",
            m->name);
        break;
    case CG_REASON_UNLIMITED:
        assert(0 && "unlimited items are not charged");
        break;
    }
}

static void put_agent_choice(out *o, const cg_policy *p, const cg_item *it, cg_lang lang) {
    bool ko = lang == CG_LANG_KO;
    if (it->agent_choice == CG_AGENT_PROMPT) {
        put(o, ko ? "프롬프트가 %s을(를) 요청함; " : "the prompt asked for %s; ", p->models[it->model].name);
    } else if (it->agent_choice == CG_AGENT_DEFAULT) {
        put(o, ko ? "Agent 2.0 기본 모델 %s 사용" : "Agent 2.0 used its default model %s", p->models[it->model].name);
        if (p->agent_route_count && p->agent_routes[0].model != it->model) {
            const cg_agent_route *r = &p->agent_routes[0];
            put(o, ko ? " (%s을(를) 쓰려면 \"%s\"처럼 명시적으로 요청하세요)"
                      : " (to use %s, ask for it explicitly, e.g. \"%s\")",
                p->models[r->model].name, r->phrases[0]);
        }
        put(o, "; ");
    }
}

size_t cg_item_explain(const cg_decision *d, int item, cg_lang lang, char *buf, size_t buf_bytes) {
    assert(item >= 0 && item < d->item_count && buf_bytes > 0);
    out o = {buf, buf_bytes, 0};
    buf[0] = '\0';
    const cg_item *it = &d->items[item];
    put_agent_choice(&o, d->policy, it, lang);
    if (it->unlimited) put_unlimited(&o, d->policy, it->benefit, it->model, it->benefit_ends_at_us, lang);
    else put_charged(&o, d, it, lang);
    return o.len;
}

size_t cg_active_benefit_explain(const cg_policy *p, const cg_active_benefit *ab, cg_lang lang, char *buf,
                                 size_t buf_bytes) {
    assert(buf_bytes > 0);
    out o = {buf, buf_bytes, 0};
    buf[0] = '\0';
    put_unlimited(&o, p, ab->benefit, ab->model, ab->expires_at_us, lang);
    return o.len;
}

size_t cg_benefit_describe(const cg_policy *p, int benefit, cg_lang lang, char *buf, size_t buf_bytes) {
    assert(benefit >= 0 && benefit < p->benefit_count && buf_bytes > 0);
    const cg_benefit *b = &p->benefits[benefit];
    out o = {buf, buf_bytes, 0};
    buf[0] = '\0';
    for (int c = 0; c < b->cover_count; c++) {
        put(&o, "%s", c ? ", " : "");
        put_model_variants(&o, p, b->covers[c].model, b->covers[c].variant_mask);
    }
    if (lang == CG_LANG_KO) {
        put(&o, ": ");
        put_eligibility(&o, p, b, lang);
        put(&o, " 대상");
        put_duration(&o, &b->duration, lang);
        put(&o, " 무제한");
    } else {
        put(&o, b->cover_count > 1 ? " are unlimited for " : " is unlimited for ");
        put_eligibility(&o, p, b, lang);
        if (b->plans_omitted) put(&o, " (any paid plan)");
        if (b->joined.from == CG_DATE_MIN && b->joined.to == CG_DATE_MAX) put(&o, ", regardless of signup date");
        put_duration(&o, &b->duration, lang);
    }
    return o.len;
}
