// mycredits.js — My Credits (내 크레딧): balance, Active benefits (혜택 사용중), what each model
// costs this member today, and the usage history with each charge's reason.
// Signs in with a member token (from the app, or pasted) kept in this tab's sessionStorage
// and sent only as `Authorization: Bearer`; the server refuses any other member's data.
import {
  api, ApiError, bindLangSwitch, el, formatDate, formatDateTime, formatNumber, initialLang,
  loadCatalog, loadHistory, makeT, mapLimited, modelName, planName, variantName,
} from './common.js';

const TOKEN_KEY = 'creditgate.member_token';
const EXPIRING_DAYS = 30;       // "expiring soon": within this many days
const HISTORY_ROWS_MAX = 50;    // newest movements shown
const QUOTES_IN_FLIGHT = 6;     // a browser's connections per host
const UNLIMITED_ROWS_MAX = 50;  // newest unlimited uses looked up for the history

const MESSAGES = {
  en: {
    title: 'My Credits', language: 'Language', signOut: 'Sign out', signIn: 'Sign in',
    signInTitle: 'Sign in',
    signInHelp: 'Opened from the app you are signed in already. Otherwise paste the member token the app gave you; it stays in this tab only.',
    tokenLabel: 'Member token', loading: 'Loading your credits…', loaded: 'Up to date.',
    tokenBad: 'This is not a member token. Copy it again from the app.',
    tokenExpired: 'Your sign-in has expired. Open My Credits from the app again.',
    forbidden: 'This page belongs to another member ({member}). Your sign-in opens only your own credits.',
    failed: 'Could not load your credits: {message}',
    whoami: 'Member {member} · {plan} ({billing}) · joined {joined}',
    monthly: 'monthly', annual: 'annual',
    balanceTitle: 'Balance', available: 'Available', held: 'Held for generations in progress',
    paid: 'Paid', promo: 'Promotional', expiringTitle: 'Expiring soon',
    expiring: '{credits} credits expire on {date}', expiring_one: '{credits} credit expires on {date}',
    noExpiring: 'No credits expire in the next {days} days.',
    benefitsTitle: 'Active benefits', noBenefits: 'No unlimited benefit is active for you right now.',
    until: 'Unlimited until {date}', noEnd: 'Unlimited, no end date',
    agentTitle: 'Agent 2.0 and Carat Video',
    agentText: 'Agent 2.0 makes videos with Seedance 2.0 by default, which deducts credits. To use your unlimited Carat Video (LTX), ask for it explicitly: “Use Carat Basic Video (LTX 2.3)”. The conversation with the agent still deducts credits.',
    modelsTitle: 'What each model costs you',
    modelsHelp: 'Prices for you today. Unlimited means no credits are deducted.',
    image: 'Image models', video: 'Video models', conversation: 'AI agent conversation',
    unlimited: 'Unlimited for you', credits: '{credits} credits', credits_one: '{credits} credit',
    perRequest: '{credits} credits per request', perRequest_one: '{credits} credit per request',
    conversationNote: 'Conversation with the agent is charged even when the image or video is unlimited.',
    usageTitle: 'Usage history', usageEmpty: 'No credit movements yet.',
    k_grant: 'Credits added', k_hold: 'Reserved (generation in progress)', k_capture: 'Used',
    k_release: 'Returned (generation failed)', k_refund: 'Refunded', k_expiry: 'Expired',
    k_unlimited: 'Unlimited (no credits deducted)',
    why: 'Why',
  },
  ko: {
    title: '내 크레딧', language: '언어', signOut: '로그아웃', signIn: '로그인',
    signInTitle: '로그인',
    signInHelp: '앱에서 열면 이미 로그인되어 있습니다. 그렇지 않다면 앱에서 받은 회원 토큰을 붙여넣으세요. 토큰은 이 탭에만 보관됩니다.',
    tokenLabel: '회원 토큰', loading: '크레딧 정보를 불러오는 중…', loaded: '최신 정보입니다.',
    tokenBad: '회원 토큰이 아닙니다. 앱에서 다시 복사해 주세요.',
    tokenExpired: '로그인이 만료되었습니다. 앱에서 내 크레딧을 다시 열어 주세요.',
    forbidden: '다른 회원({member})의 페이지입니다. 내 로그인으로는 내 크레딧만 볼 수 있습니다.',
    failed: '크레딧 정보를 불러오지 못했습니다: {message}',
    whoami: '회원 {member} · {plan} ({billing}) · 가입일 {joined}',
    monthly: '월간', annual: '연간',
    balanceTitle: '잔액', available: '사용 가능', held: '생성 중 예약된 크레딧',
    paid: '유료', promo: '프로모션', expiringTitle: '곧 만료되는 크레딧',
    expiring: '{date}에 {credits} 크레딧 만료',
    noExpiring: '{days}일 안에 만료되는 크레딧이 없습니다.',
    benefitsTitle: '혜택 사용중', noBenefits: '현재 사용 중인 무제한 혜택이 없습니다.',
    until: '{date}까지 무제한', noEnd: '무제한 (종료일 없음)',
    agentTitle: '에이전트 2.0과 캐럿 비디오',
    agentText: '에이전트 2.0은 성능을 위해 기본 동영상 모델로 Seedance 2.0을 사용하며, 이때 크레딧이 차감됩니다. 무제한 캐럿 비디오(LTX)를 사용하려면 “Use Carat Basic Video (LTX 2.3)”라고 명시적으로 요청하세요. 에이전트와의 대화는 별도로 크레딧이 차감됩니다.',
    modelsTitle: '모델별 크레딧',
    modelsHelp: '오늘 기준 회원님의 가격입니다. 무제한은 크레딧이 차감되지 않습니다.',
    image: '이미지 모델', video: '동영상 모델', conversation: 'AI 에이전트 대화',
    unlimited: '무제한 (내 혜택)', credits: '{credits} 크레딧', perRequest: '요청당 {credits} 크레딧',
    conversationNote: '이미지·동영상이 무제한이어도 에이전트와의 대화는 크레딧이 차감됩니다.',
    usageTitle: '사용 내역', usageEmpty: '아직 크레딧 변동이 없습니다.',
    k_grant: '크레딧 지급', k_hold: '예약 (생성 중)', k_capture: '사용',
    k_release: '반환 (생성 실패)', k_refund: '환불', k_expiry: '만료',
    k_unlimited: '무제한 (차감 없음)',
    why: '사유',
  },
};

const $ = (id) => document.getElementById(id);
const state = { lang: initialLang(), token: null, memberId: null, data: null };
let t = makeT(MESSAGES, state.lang);

// The member id is inside the token ("cgm1." base64url(member|expires_us) "." mac); reading
// it here is only for display and paths — the server checks the signature on every call.
function tokenClaims(token) {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== 'cgm1') return null;
  try {
    const text = atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
    const bar = text.lastIndexOf('|');
    if (bar <= 0) return null;
    return { memberId: text.slice(0, bar), expiresUs: Number(text.slice(bar + 1)) };
  } catch {
    return null;
  }
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function translateStatic() {
  document.title = t('title');
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.data = null;
  $('content').hidden = true;
  $('signout').hidden = true;
  $('signin').hidden = false;
  $('status').textContent = '';
}

// ---- loading ----------------------------------------------------------------------------

// Every image and video model and variant, decided for this member now by the engine (never
// by the page), in one call: each entry is what POST /v1/quote would answer for it.
async function loadPrices(memberId, lang) {
  const d = await api(state.token, 'GET', `/v1/members/${encodeURIComponent(memberId)}/prices?lang=${lang}`);
  return d.prices;
}

// A charge's reason in the reader's language: the recorded reason is English, so the same
// request is decided again for the same instant (the member's state then is the same).
async function chargeReason(charge, lang) {
  const item = charge.items[0];
  if (lang === 'en' || !item) return item?.reason || '';
  const rq = charge.request;
  const body = { member_id: charge.member_id, at: rq.at, lang, count: rq.count };
  if (rq.agent_model) body.agent = { model: rq.agent_model, kind: rq.agent_kind, prompt: rq.prompt };
  if (rq.model) { body.model = rq.model; body.variant = rq.variant; }
  try {
    const d = await api(state.token, 'POST', '/v1/quote', body);
    return d.items.map((x) => x.reason).join(' · ');
  } catch {
    return item.reason;
  }
}

// The journal holds credit movements; an unlimited (0-credit) use moves nothing, so those
// come from the member's charge list and are shown as their own rows.
async function loadUsage(memberId, lang) {
  const enc = encodeURIComponent(memberId);
  const [journal, recent] = await Promise.all([
    loadHistory(state.token, memberId),
    api(state.token, 'GET', `/v1/members/${enc}/charges?limit=${UNLIMITED_ROWS_MAX}`),
  ]);
  const entries = journal.slice(-HISTORY_ROWS_MAX);
  for (const c of recent.charges) {
    if (c.credits === 0) entries.push({ kind: 'unlimited', at: c.created_at, charge_id: c.charge_id, delta_remaining: 0, delta_held: 0 });
  }
  entries.sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
  entries.length = Math.min(entries.length, HISTORY_ROWS_MAX);
  const ids = [...new Set(entries.map((e) => e.charge_id).filter(Boolean))];
  const charges = new Map();
  const listed = new Map(recent.charges.map((c) => [c.charge_id, c])); // fetched already
  await mapLimited(ids, QUOTES_IN_FLIGHT, async (id) => {
    const c = listed.get(id) ||
      await api(state.token, 'GET', `/v1/charges/${encodeURIComponent(id)}?member_id=${enc}`);
    c.reasonText = await chargeReason(c, lang);
    charges.set(id, c);
  });
  return { entries, charges };
}

async function load() {
  const lang = state.lang;
  const claims = tokenClaims(state.token);
  if (!claims) { signOut(); showError(t('tokenBad')); return; }
  if (claims.expiresUs <= Date.now() * 1000) { signOut(); showError(t('tokenExpired')); return; }
  // A link may name the member (?member=ID); the token decides whether it opens.
  const wanted = new URLSearchParams(location.search).get('member');
  const memberId = wanted || claims.memberId;
  const enc = encodeURIComponent(memberId);
  $('status').textContent = t('loading');
  showError('');
  try {
    const [catalog, member, balance, benefits] = await Promise.all([
      loadCatalog(),
      api(state.token, 'GET', `/v1/members/${enc}`),
      api(state.token, 'GET', `/v1/members/${enc}/balance`),
      api(state.token, 'GET', `/v1/members/${enc}/benefits?lang=${lang}`),
    ]);
    const [prices, usage] = await Promise.all([loadPrices(memberId, lang), loadUsage(memberId, lang)]);
    state.data = { lang, catalog, member, balance, benefits, prices, usage };
    render();
    $('status').textContent = t('loaded');
  } catch (e) {
    $('content').hidden = true;
    $('status').textContent = '';
    if (e instanceof ApiError && e.status === 403) showError(t('forbidden', { member: memberId }));
    else if (e instanceof ApiError && e.status === 401) { signOut(); showError(t('tokenExpired')); }
    else showError(t('failed', { message: e.message }));
  }
}

// ---- rendering --------------------------------------------------------------------------

function credits(n) {
  return t.plural('credits', n, { credits: formatNumber(n, state.lang) });
}

function renderBalance(d) {
  const b = d.balance, tz = d.catalog.timezone;
  $('available').textContent = credits(b.available);
  $('held').textContent = credits(b.held);
  $('available-paid').textContent = credits(b.available_paid);
  $('available-promo').textContent = credits(b.available_promotional);
  const soon = Date.now() + EXPIRING_DAYS * 86400e3;
  const expiring = b.grants.filter((g) => g.expires_at && g.remaining - g.held > 0)
    .sort((x, y) => x.expires_at_us - y.expires_at_us);
  const list = $('expiring');
  list.replaceChildren(...expiring.map((g) => {
    const isSoon = Date.parse(g.expires_at) <= soon;
    return el('li', { class: isSoon ? 'soon' : '' },
      t.plural('expiring', g.remaining - g.held, {
        credits: formatNumber(g.remaining - g.held, state.lang), date: formatDate(g.expires_at, state.lang, tz),
      }));
  }));
  if (!expiring.some((g) => Date.parse(g.expires_at) <= soon))
    list.append(el('li', { class: 'hint' }, t('noExpiring', { days: EXPIRING_DAYS })));
}

function renderBenefits(d) {
  const tz = d.catalog.timezone;
  const items = d.benefits.benefits.map((b) => {
    const name = [modelName(d.catalog, b.model), variantName(d.catalog, b.model, b.variant)].filter(Boolean).join(' ');
    const end = b.expires_at ? t('until', { date: formatDate(b.expires_at, state.lang, tz) }) : t('noEnd');
    return el('li', { dataset: { model: b.model, variant: b.variant || '', benefit: b.benefit } },
      el('span', { class: 'benefit-name' }, name),
      el('span', { class: 'badge free' }, end),
      el('span', { class: 'reason' }, b.reason));
  });
  $('benefit-list').replaceChildren(...(items.length ? items : [el('li', { class: 'hint' }, t('noBenefits'))]));
  // The help page's Agent 2.0 note matters only to members for whom Carat Video is free.
  const video = d.catalog.agent.default_video_model;
  const caratFree = d.prices.some((p) => p.item.unlimited && p.item.model !== video &&
    d.catalog.models.find((m) => m.id === p.model)?.kind === 'video');
  $('agent-note').hidden = !caratFree;
  $('agent-text').textContent = t('agentText');
}

function priceBadge(item) {
  if (item.unlimited) return el('span', { class: 'badge free' }, t('unlimited'));
  return el('span', { class: 'badge charged' }, credits(item.credits));
}

function renderModelGroup(d, kind) {
  const rows = d.catalog.models.filter((m) => m.kind === kind).map((m) => {
    const mine = d.prices.filter((p) => p.model === m.id);
    const lines = mine.map((p) => el('li', {
      class: 'price', dataset: { model: m.id, variant: p.variant || '', unlimited: String(p.item.unlimited) },
      title: p.item.reason,
    },
    el('span', { class: 'variant' }, p.variant ? variantName(d.catalog, m.id, p.variant) : ''),
    priceBadge(p.item)));
    return el('li', { class: 'model' }, el('span', { class: 'model-name' }, m.name), el('ul', { class: 'prices' }, lines));
  });
  return el('section', { class: 'group' }, el('h3', {}, t(kind)), el('ul', { class: 'model-list' }, rows));
}

function renderConversation(d) {
  const rows = d.catalog.models.filter((m) => m.kind === 'conversation').map((m) =>
    el('li', { class: 'model' }, el('span', { class: 'model-name' }, m.name),
      el('ul', { class: 'prices' }, el('li', { class: 'price', dataset: { model: m.id, unlimited: 'false' } },
        el('span', { class: 'variant' }, ''),
        el('span', { class: 'badge charged' }, t.plural('perRequest', m.credits, { credits: formatNumber(m.credits, state.lang) }))))));
  return el('section', { class: 'group' }, el('h3', {}, t('conversation')),
    el('p', { class: 'hint' }, t('conversationNote')), el('ul', { class: 'model-list' }, rows));
}

function usageWhat(d, entry, charge) {
  if (!charge) return entry.note || '';
  const rq = charge.request, item = charge.items[0];
  const name = item ? [modelName(d.catalog, item.model), variantName(d.catalog, item.model, item.variant)].filter(Boolean).join(' ')
    : rq.model;
  return entry.kind === 'refund' && entry.note ? `${name} — ${entry.note}` : name;
}

function renderUsage(d) {
  const tz = d.catalog.timezone;
  // A settled charge's hold is noise beside its capture or release: only open holds show.
  const shown = d.usage.entries.filter((e) => e.kind !== 'hold' || d.usage.charges.get(e.charge_id)?.status === 'held');
  const rows = shown.map((e) => {
    const charge = e.charge_id ? d.usage.charges.get(e.charge_id) : null;
    const delta = e.kind === 'hold' ? e.delta_held : e.delta_remaining; // a release spends nothing: 0
    const sign = { hold: '−', capture: '−', expiry: '−', release: '', unlimited: '' }[e.kind] ?? '+';
    return el('li', { class: `entry ${e.kind}`, dataset: { kind: e.kind, charge: e.charge_id || '' } },
      el('span', { class: 'when' }, formatDateTime(e.at, state.lang, tz)),
      el('span', { class: 'what' }, `${t(`k_${e.kind}`)} · ${usageWhat(d, e, charge)}`),
      el('span', { class: 'amount' }, `${sign}${credits(Math.abs(delta))}`),
      charge ? el('span', { class: 'reason' }, `${t('why')}: ${charge.reasonText}`) : null);
  });
  $('usage-list').replaceChildren(...rows);
  $('usage-empty').hidden = rows.length > 0;
}

function render() {
  const d = state.data;
  translateStatic();
  if (!d) return;
  const m = d.member;
  $('whoami').textContent = t('whoami', {
    member: m.member_id, plan: planName(d.catalog, m.plan, state.lang), billing: t(m.billing),
    joined: formatDate(m.joined_at, state.lang, d.catalog.timezone),
  });
  renderBalance(d);
  renderBenefits(d);
  $('model-groups').replaceChildren(renderModelGroup(d, 'image'), renderModelGroup(d, 'video'), renderConversation(d));
  renderUsage(d);
  $('content').hidden = false;
  $('signin').hidden = true;
  $('signout').hidden = false;
}

// ---- start ------------------------------------------------------------------------------

function start() {
  bindLangSwitch($('lang'), state.lang, (lang) => {
    state.lang = lang;
    t = makeT(MESSAGES, lang);
    translateStatic();
    // Reasons and benefit texts come from the server in one language: fetch them again.
    if (state.token) load();
  });
  translateStatic();
  $('signout').addEventListener('click', signOut);
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    $('token').value = '';
    if (!tokenClaims(token)) { showError(t('tokenBad')); return; }
    sessionStorage.setItem(TOKEN_KEY, token);
    state.token = token;
    $('signin').hidden = true;
    load();
  });
  state.token = sessionStorage.getItem(TOKEN_KEY);
  if (state.token) load();
  else $('signin').hidden = false;
}

start();
