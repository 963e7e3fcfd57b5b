// common.js — what both pages share: the language (Accept-Language via <html lang>, or the
// reader's choice), message lookup, dates in the reader's locale and the policy's time zone,
// and the one way to call the API (credential in the Authorization header, never in a URL).
// No secret lives in this file; credentials are typed by the person and kept in this tab.

const LANG_KEY = 'creditgate.lang'; // the reader's explicit choice (not secret)

export function initialLang() {
  const chosen = localStorage.getItem(LANG_KEY);
  if (chosen === 'en' || chosen === 'ko') return chosen;
  // The server wrote lang="ko" or "en" into the page from Accept-Language.
  return document.documentElement.lang === 'ko' ? 'ko' : 'en';
}

export function rememberLang(lang) {
  localStorage.setItem(LANG_KEY, lang);
}

// A locale for dates: the browser's own for that language when it has one (en-GB stays
// en-GB), else the usual one.
export function localeFor(lang) {
  const own = (navigator.languages || []).find((l) => l.toLowerCase().startsWith(lang));
  return own || (lang === 'ko' ? 'ko-KR' : 'en-US');
}

// t(key, vars) looks a message up; t.plural(key, n, vars) prefers `${key}_one` etc. by the
// language's plural rules ("1 credit", "2 credits"; Korean has one form).
export function makeT(messages, lang) {
  const table = messages[lang] || messages.en;
  const rules = new Intl.PluralRules(lang);
  const t = (key, vars = {}) => {
    let text = table[key] ?? messages.en[key] ?? key;
    for (const [k, v] of Object.entries(vars)) text = text.replaceAll(`{${k}}`, String(v));
    return text;
  };
  t.plural = (key, n, vars) => {
    const form = `${key}_${rules.select(n)}`;
    return t(table[form] ? form : key, vars);
  };
  return t;
}

// Benefit ends and expiries are instants at 00:00 in the policy's zone (Seoul): formatting
// them in the browser's zone would show the day before, so the zone is always given.
export function formatDate(iso, lang, timeZone) {
  if (!iso) return '';
  return new Intl.DateTimeFormat(localeFor(lang), { dateStyle: 'long', timeZone }).format(new Date(iso));
}

export function formatDateTime(iso, lang, timeZone) {
  if (!iso) return '';
  return new Intl.DateTimeFormat(localeFor(lang), {
    dateStyle: 'medium', timeStyle: 'short', timeZone,
  }).format(new Date(iso));
}

export function formatNumber(n, lang) {
  return new Intl.NumberFormat(localeFor(lang)).format(n);
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code || '';
  }
}

// Calls the API. The credential goes only in the Authorization header; the path carries
// ids, never a token or key, so access logs and browser history stay clean.
export async function api(credential, method, path, body, idempotencyKey) {
  const headers = { Accept: 'application/json' };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  const res = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
  });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

export async function loadCatalog() {
  const res = await fetch('/web/catalog.json', { cache: 'no-cache' });
  if (!res.ok) throw new ApiError(res.status, null);
  return res.json();
}

// Every journal page of a member, oldest first, up to maxEntries (a limit, so one member
// with a long past cannot stall the page).
export async function loadHistory(credential, memberId, maxEntries = 2000) {
  const entries = [];
  let after = 0;
  while (entries.length < maxEntries) {
    const page = await api(credential, 'GET',
      `/v1/members/${encodeURIComponent(memberId)}/history?after=${after}&limit=500`);
    entries.push(...page.entries);
    if (page.next_after == null) break;
    after = page.next_after;
  }
  return entries;
}

// Runs fn over items with at most `width` calls in flight.
export async function mapLimited(items, width, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}

// Tiny element builder: el('li', {class: 'x', dataset: {model: 'm'}}, 'text', child).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function modelName(catalog, id) {
  return catalog.models.find((m) => m.id === id)?.name || id;
}

export function variantName(catalog, modelId, variantId) {
  if (!variantId) return '';
  const m = catalog.models.find((x) => x.id === modelId);
  return m?.variants.find((v) => v.id === variantId)?.name || variantId;
}

export function planName(catalog, id, lang) {
  const p = catalog.plans.find((x) => x.id === id);
  if (!p) return id;
  return lang === 'ko' && p.name_ko ? p.name_ko : p.name;
}

// A new Idempotency-Key for one intended action (kept until it succeeds, so a retry or a
// double click never grants or refunds twice).
export function newIdempotencyKey(prefix) {
  return `${prefix}-${crypto.randomUUID()}`;
}

// Wires the language <select>: sets it, and on change remembers and calls render(lang).
export function bindLangSwitch(select, lang, render) {
  select.value = lang;
  select.addEventListener('change', () => {
    rememberLang(select.value);
    document.documentElement.lang = select.value;
    render(select.value);
  });
}
