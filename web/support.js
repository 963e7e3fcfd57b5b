// support.js — the support console: look a member up, see plan history, balance, grants and
// every charge with its policy version, benefit and reason; filter the charges that deducted
// credits for a model some plan has unlimited (the usual complaint) and show why this member
// did not qualify; grant and refund with a note, idempotently, and see the result at once.
// The admin key is typed by the person, kept in this tab's sessionStorage and sent only as
// `Authorization: Bearer`.
import {
  api, ApiError, bindLangSwitch, el, formatDate, formatDateTime, formatNumber, initialLang,
  loadCatalog, loadHistory, makeT, mapLimited, modelName, newIdempotencyKey, planName, variantName,
} from './common.js';

const KEY_KEY = 'creditgate.admin_key';
const CHARGES_MAX = 100;        // newest charges shown (one page of the charges listing)
const HISTORY_ROWS_MAX = 200;   // newest journal entries shown
const CALLS_IN_FLIGHT = 6;
// Charged although some plan has the model (or another variant of it) unlimited.
const SUSPECT_REASONS = new Set(['not_eligible', 'restricted', 'variant_not_covered']);

const MESSAGES = {
  en: {
    title: 'Support console', language: 'Language', signOut: 'Sign out', signIn: 'Sign in',
    signInTitle: 'Sign in',
    signInHelp: 'Paste your admin key. It stays in this tab only and is sent only in the Authorization header.',
    keyLabel: 'Admin key', lookupTitle: 'Look up a member', memberId: 'Member ID', lookUp: 'Look up',
    loading: 'Loading {member}…', loaded: 'Showing {member}.', notFound: 'No member “{member}”.',
    unauthorized: 'The key was refused: {message}', failed: 'Failed: {message}',
    summaryTitle: 'Member',
    summary: '{member} · {plan} ({billing}) · joined {joined}',
    monthly: 'monthly', annual: 'annual',
    available: 'Available', held: 'Held', paid: 'Paid', promo: 'Promotional',
    benefitsTitle: 'Active benefits', noBenefits: 'No unlimited benefit is active.',
    until: 'until {date}', noEnd: 'no end date',
    plansTitle: 'Plan history', effective: 'In force from', plan: 'Plan', billing: 'Billing',
    joined: 'Joined', recorded: 'Recorded',
    chargesTitle: 'Charges', suspectOnly: 'Only charges for a model that is unlimited for some plan',
    suspectHelp: 'These are the usual complaint: the model is unlimited for some members; the “why” column says what this member lacked.',
    chargesEmpty: 'No charges.', date: 'Date', model: 'Model', status: 'Status', creditsCol: 'Credits',
    refunded: 'Refunded', policy: 'Policy', benefit: 'Benefit', why: 'Why', action: 'Action',
    st_held: 'held', st_captured: 'captured', st_released: 'released', st_expired: 'expired',
    unlimited: 'unlimited', nearest: 'nearest', none: '—',
    refund: 'Refund', refundCredits: 'Credits to refund', noteRequired: 'Note (required)',
    refundDone: 'Refunded {credits} credits of {charge}.',
    grantsTitle: 'Grants', grantTitle: 'Grant credits', credits: 'Credits', source: 'Source',
    src_adjustment: 'Adjustment', src_promo: 'Promotional', src_purchase: 'Purchase',
    src_plan: 'Plan', src_refund: 'Refund', cat_paid: 'paid', cat_promotional: 'promotional',
    expiresOptional: 'Expires on (optional)', grant: 'Grant', grantDone: 'Granted {credits} credits.',
    grantId: 'Grant', category: 'Category', remaining: 'Remaining', expires: 'Expires', note: 'Note',
    historyTitle: 'Ledger history', kind: 'Entry', delta: 'Credits', deltaHeld: 'Held', charge: 'Charge',
    k_grant: 'grant', k_hold: 'hold', k_capture: 'capture', k_release: 'release', k_refund: 'refund',
    k_expiry: 'expiry',
  },
  ko: {
    title: '상담 콘솔', language: '언어', signOut: '로그아웃', signIn: '로그인', signInTitle: '로그인',
    signInHelp: '관리자 키를 붙여넣으세요. 키는 이 탭에만 보관되며 Authorization 헤더로만 전송됩니다.',
    keyLabel: '관리자 키', lookupTitle: '회원 조회', memberId: '회원 ID', lookUp: '조회',
    loading: '{member} 불러오는 중…', loaded: '{member} 조회 결과입니다.', notFound: '회원 “{member}”이(가) 없습니다.',
    unauthorized: '키가 거부되었습니다: {message}', failed: '실패: {message}',
    summaryTitle: '회원',
    summary: '{member} · {plan} ({billing}) · 가입일 {joined}',
    monthly: '월간', annual: '연간',
    available: '사용 가능', held: '예약됨', paid: '유료', promo: '프로모션',
    benefitsTitle: '혜택 사용중', noBenefits: '사용 중인 무제한 혜택이 없습니다.',
    until: '{date}까지', noEnd: '종료일 없음',
    plansTitle: '플랜 이력', effective: '적용 시작', plan: '플랜', billing: '결제 주기',
    joined: '가입일', recorded: '기록 시각',
    chargesTitle: '차감 내역', suspectOnly: '일부 플랜에서 무제한인 모델의 차감만 보기',
    suspectHelp: '가장 흔한 문의 유형입니다. 일부 회원에게는 무제한인 모델이며, “사유” 열에 이 회원이 대상이 아닌 이유가 표시됩니다.',
    chargesEmpty: '차감 내역이 없습니다.', date: '날짜', model: '모델', status: '상태', creditsCol: '크레딧',
    refunded: '환불됨', policy: '정책', benefit: '혜택', why: '사유', action: '작업',
    st_held: '예약', st_captured: '확정', st_released: '반환', st_expired: '만료',
    unlimited: '무제한', nearest: '가장 가까운 혜택', none: '—',
    refund: '환불', refundCredits: '환불할 크레딧', noteRequired: '메모 (필수)',
    refundDone: '{charge}의 {credits} 크레딧을 환불했습니다.',
    grantsTitle: '지급 내역', grantTitle: '크레딧 지급', credits: '크레딧', source: '구분',
    src_adjustment: '조정', src_promo: '프로모션', src_purchase: '구매', src_plan: '플랜', src_refund: '환불', cat_paid: '유료', cat_promotional: '프로모션',
    expiresOptional: '만료일 (선택)', grant: '지급', grantDone: '{credits} 크레딧을 지급했습니다.',
    grantId: '지급 ID', category: '분류', remaining: '남은 크레딧', expires: '만료', note: '메모',
    historyTitle: '원장 기록', kind: '항목', delta: '크레딧', deltaHeld: '예약', charge: '차감 ID',
    k_grant: '지급', k_hold: '예약', k_capture: '확정', k_release: '반환', k_refund: '환불', k_expiry: '만료',
  },
};

const $ = (id) => document.getElementById(id);
const state = { lang: initialLang(), key: null, memberId: null, data: null, grantKey: null };
let t = makeT(MESSAGES, state.lang);

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function translateStatic() {
  document.title = t('title');
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
}

function setSignedIn(on) {
  $('signin').hidden = on;
  $('lookup').hidden = !on;
  $('signout').hidden = !on;
  if (!on) $('member').hidden = true;
}

function signOut() {
  sessionStorage.removeItem(KEY_KEY);
  state.key = null;
  state.data = null;
  setSignedIn(false);
}

function fail(e) {
  if (e instanceof ApiError && e.status === 401) {
    signOut();
    showError(t('unauthorized', { message: e.message }));
  } else if (e instanceof ApiError && e.status === 404 && e.code === 'not_found') {
    showError(t('notFound', { member: state.memberId }));
  } else {
    showError(t('failed', { message: e.message }));
  }
}

// ---- loading ----------------------------------------------------------------------------

// The recorded reason is English; for Korean the same request is decided again with the
// member state the charge recorded, at the instant it was made.
async function reasonIn(charge, lang) {
  const item = charge.items.find((x) => x.kind === 'generation') || charge.items[0];
  if (lang === 'en' || !item) return item?.reason || '';
  const rq = charge.request, m = charge.member;
  const body = { member: { plan: m.plan, billing: m.billing, joined: m.joined_at }, at: rq.at, lang, count: rq.count };
  if (rq.agent_model) body.agent = { model: rq.agent_model, kind: rq.agent_kind, prompt: rq.prompt };
  if (rq.model) { body.model = rq.model; body.variant = rq.variant; }
  try {
    const d = await api(state.key, 'POST', '/v1/quote', body);
    return (d.items.find((x) => x.kind === 'generation') || d.items[0]).reason;
  } catch {
    return item.reason;
  }
}

async function loadMember(memberId) {
  const lang = state.lang, enc = encodeURIComponent(memberId);
  const [catalog, member, balance, benefits, entries] = await Promise.all([
    loadCatalog(),
    api(state.key, 'GET', `/v1/members/${enc}`),
    api(state.key, 'GET', `/v1/members/${enc}/balance`),
    api(state.key, 'GET', `/v1/members/${enc}/benefits?lang=${lang}`),
    loadHistory(state.key, memberId),
  ]);
  // The member's charges, newest first, in one call — unlimited (0-credit) ones too, so support
  // also sees which benefit made a generation free.
  const page = await api(state.key, 'GET', `/v1/members/${enc}/charges?limit=${CHARGES_MAX}`);
  const charges = await mapLimited(page.charges, CALLS_IN_FLIGHT, async (c) => {
    c.reasonText = await reasonIn(c, lang);
    return c;
  });
  return { lang, catalog, member, balance, benefits, entries, charges };
}

async function lookup(memberId, message) {
  state.memberId = memberId;
  showError('');
  $('status').textContent = t('loading', { member: memberId });
  try {
    state.data = await loadMember(memberId);
    history.replaceState(null, '', `/support?member=${encodeURIComponent(memberId)}`);
    render();
    $('status').textContent = message || t('loaded', { member: memberId });
  } catch (e) {
    $('member').hidden = true;
    $('status').textContent = '';
    fail(e);
  }
}

// ---- rendering --------------------------------------------------------------------------

const num = (n) => formatNumber(n, state.lang);

function table(node, headers, rows) {
  const head = el('thead', {}, el('tr', {}, headers.map(([text, cls]) => el('th', { scope: 'col', class: cls }, text))));
  node.replaceChildren(head, el('tbody', {}, rows));
}

function renderSummary(d) {
  const m = d.member, b = d.balance, tz = d.catalog.timezone;
  $('summary').textContent = t('summary', {
    member: m.member_id, plan: planName(d.catalog, m.plan, state.lang), billing: t(m.billing),
    joined: formatDate(m.joined_at, state.lang, tz),
  });
  $('available').textContent = num(b.available);
  $('held').textContent = num(b.held);
  $('available-paid').textContent = num(b.available_paid);
  $('available-promo').textContent = num(b.available_promotional);
  const items = d.benefits.benefits.map((x) => el('li', { dataset: { model: x.model, benefit: x.benefit } },
    el('span', { class: 'benefit-name' }, [modelName(d.catalog, x.model), variantName(d.catalog, x.model, x.variant)].filter(Boolean).join(' ')),
    el('span', { class: 'badge free' }, x.expires_at ? t('until', { date: formatDate(x.expires_at, state.lang, tz) }) : t('noEnd')),
    el('span', { class: 'reason' }, `${x.benefit}: ${x.reason}`)));
  $('benefit-list').replaceChildren(...(items.length ? items : [el('li', { class: 'hint' }, t('noBenefits'))]));
}

function renderPlans(d) {
  const tz = d.catalog.timezone;
  table($('plans'), [[t('effective')], [t('plan')], [t('billing')], [t('joined')], [t('recorded')]],
    [...d.member.versions].reverse().map((v) => el('tr', {},
      el('td', {}, formatDateTime(v.effective_at, state.lang, tz)), el('td', {}, planName(d.catalog, v.plan, state.lang)),
      el('td', {}, t(v.billing)), el('td', {}, formatDate(v.joined_at, state.lang, tz)),
      el('td', {}, formatDateTime(v.recorded_at, state.lang, tz)))));
}

function isSuspect(c) {
  return c.items.some((x) => !x.unlimited && x.credits > 0 && x.kind === 'generation' && SUSPECT_REASONS.has(x.reason_code));
}

function refundForm(c) {
  const refundable = c.captured - c.refunded;
  if (c.status !== 'captured' || refundable <= 0) return t('none');
  const idem = newIdempotencyKey('support-refund'); // one per intended refund: retries are safe
  const ids = { credits: `refund-credits-${c.charge_id}`, note: `refund-note-${c.charge_id}` };
  const form = el('form', { class: 'refund', dataset: { charge: c.charge_id } },
    el('label', { for: ids.credits }, t('refundCredits')),
    el('input', { id: ids.credits, name: 'credits', type: 'number', min: 1, max: refundable, value: refundable, required: true }),
    el('label', { for: ids.note }, t('noteRequired')),
    el('input', { id: ids.note, name: 'note', required: true, maxlength: 200 }),
    el('button', { type: 'submit' }, t('refund')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = form.querySelector('button');
    button.disabled = true;
    const credits = Number(form.elements.credits.value);
    try {
      await api(state.key, 'POST', `/v1/charges/${encodeURIComponent(c.charge_id)}/refund`,
        { member_id: c.member_id, credits, reason: form.elements.note.value.trim() }, idem);
      await lookup(state.memberId, t('refundDone', { credits: num(credits), charge: c.charge_id }));
    } catch (e) {
      button.disabled = false;
      fail(e);
    }
  });
  return el('details', { class: 'action' }, el('summary', {}, t('refund')), form);
}

function renderCharges(d) {
  const tz = d.catalog.timezone, only = $('suspect-only').checked;
  const shown = d.charges.filter((c) => !only || isSuspect(c));
  const rows = shown.map((c) => {
    const item = c.items.find((x) => x.kind === 'generation') || c.items[0];
    const name = item ? [modelName(d.catalog, item.model), variantName(d.catalog, item.model, item.variant)].filter(Boolean).join(' ') : '';
    const suspect = isSuspect(c);
    return el('tr', { class: suspect ? 'suspect' : '', dataset: { charge: c.charge_id, suspect: String(suspect) } },
      el('td', {}, formatDateTime(c.request.at, state.lang, tz)),
      el('td', { class: 'nowrap' }, name, el('br'), el('small', {}, c.charge_id)),
      el('td', {}, t(`st_${c.status}`)),
      el('td', { class: 'num' }, num(c.captured || c.held || c.credits)),
      el('td', { class: 'num' }, num(c.refunded)),
      el('td', { class: 'nowrap' }, c.policy_version),
      el('td', {}, !item?.benefit ? t('none') : `${t(item.unlimited ? 'unlimited' : 'nearest')}: ${item.benefit}`),
      el('td', { class: suspect ? 'why' : '' }, c.reasonText),
      el('td', { class: 'nowrap' }, refundForm(c)));
  });
  table($('charges'), [[t('date')], [t('model')], [t('status')], [t('creditsCol'), 'num'], [t('refunded'), 'num'],
    [t('policy')], [t('benefit')], [t('why')], [t('action')]], rows);
  $('charges-empty').hidden = rows.length > 0;
}

function renderGrants(d) {
  const tz = d.catalog.timezone;
  table($('grants'), [[t('grantId')], [t('source')], [t('category')], [t('credits'), 'num'], [t('remaining'), 'num'],
    [t('held'), 'num'], [t('expires')], [t('note')]],
  d.balance.grants.map((g) => el('tr', { dataset: { grant: g.grant_id } },
    el('td', {}, g.grant_id), el('td', {}, t(`src_${g.source}`)), el('td', {}, t(`cat_${g.category}`)),
    el('td', { class: 'num' }, num(g.credits)), el('td', { class: 'num' }, num(g.remaining)),
    el('td', { class: 'num' }, num(g.held)), el('td', {}, g.expires_at ? formatDate(g.expires_at, state.lang, tz) : t('none')),
    el('td', {}, g.note || ''))));
}

function renderHistory(d) {
  const tz = d.catalog.timezone;
  table($('history'), [[t('date')], [t('kind')], [t('delta'), 'num'], [t('deltaHeld'), 'num'], [t('charge')], [t('note')]],
    d.entries.slice(-HISTORY_ROWS_MAX).reverse().map((e) => el('tr', { dataset: { kind: e.kind, seq: e.seq } },
      el('td', {}, formatDateTime(e.at, state.lang, tz)), el('td', {}, t(`k_${e.kind}`)),
      el('td', { class: 'num' }, e.delta_remaining > 0 ? `+${num(e.delta_remaining)}` : num(e.delta_remaining)),
      el('td', { class: 'num' }, e.delta_held > 0 ? `+${num(e.delta_held)}` : num(e.delta_held)),
      el('td', {}, e.charge_id || ''), el('td', {}, e.note || ''))));
}

function render() {
  translateStatic();
  const d = state.data;
  if (!d) return;
  renderSummary(d);
  renderPlans(d);
  renderCharges(d);
  renderGrants(d);
  renderHistory(d);
  $('member').hidden = false;
}

// ---- start ------------------------------------------------------------------------------

async function grant(ev) {
  ev.preventDefault();
  const form = ev.target, button = form.querySelector('button');
  state.grantKey ||= newIdempotencyKey('support-grant'); // kept until this grant succeeds
  const credits = Number(form.elements.credits.value);
  const body = { credits, source: form.elements.source.value, note: form.elements.note.value.trim() };
  if (form.elements.expires.value) body.expires_at = form.elements.expires.value;
  button.disabled = true;
  try {
    await api(state.key, 'POST', `/v1/members/${encodeURIComponent(state.memberId)}/grants`, body, state.grantKey);
    state.grantKey = null;
    form.reset();
    await lookup(state.memberId, t('grantDone', { credits: num(credits) }));
  } catch (e) {
    fail(e);
  } finally {
    button.disabled = false;
  }
}

function start() {
  bindLangSwitch($('lang'), state.lang, (lang) => {
    state.lang = lang;
    t = makeT(MESSAGES, lang);
    translateStatic();
    if (state.key && state.memberId) lookup(state.memberId); // reasons come in one language
  });
  translateStatic();
  $('signout').addEventListener('click', signOut);
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.key = $('key').value.trim();
    $('key').value = '';
    sessionStorage.setItem(KEY_KEY, state.key);
    setSignedIn(true);
    showError('');
  });
  $('lookup-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    lookup($('member-id').value.trim());
  });
  $('suspect-only').addEventListener('change', () => state.data && renderCharges(state.data));
  $('grant-form').addEventListener('input', () => { state.grantKey = null; }); // a changed grant is a new one
  $('grant-form').addEventListener('submit', grant);
  state.key = sessionStorage.getItem(KEY_KEY);
  setSignedIn(Boolean(state.key));
  const wanted = new URLSearchParams(location.search).get('member');
  if (wanted) $('member-id').value = wanted;
  if (state.key && wanted) lookup(wanted);
}

start();
