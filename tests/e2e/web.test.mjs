// web.test.mjs — My Credits and the support console in Debian's Chromium (playwright-core),
// against the real `creditgate serve` that test_web.sh started (CG_URL, CG_ADMIN_KEY,
// CG_SERVICE_KEY). Members, grants and charges are seeded through the real API first.
// Each test names the behaviour from issue 5 it proves; screenshots go to screenshots/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.CG_URL;
const ADMIN = process.env.CG_ADMIN_KEY;
const SERVICE = process.env.CG_SERVICE_KEY;
const SHOTS = path.join(path.dirname(new URL(import.meta.url).pathname), 'screenshots');
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage']; // containers often have a 64 MB /dev/shm
const DAY_MS = 86400e3;

assert.ok(BASE && ADMIN && SERVICE, 'run through test_web.sh (CG_URL, CG_ADMIN_KEY, CG_SERVICE_KEY)');

// ---- the real API -----------------------------------------------------------------------

async function call(key, method, p, body, idem) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idem) headers['Idempotency-Key'] = idem;
  const res = await fetch(BASE + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = await res.json().catch(() => null);
  return { status: res.status, json };
}

async function must(key, method, p, body, idem) {
  const r = await call(key, method, p, body, idem);
  assert.ok(r.status < 300, `${method} ${p} → ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

const seoulDate = (ms) => new Date(ms + 9 * 3600e3).toISOString().slice(0, 10);

// A Premium member "since 2026-03-01" has Carat Video until 2027-03-01. After that date the
// same case is checked with a member who joined 30 days ago, so the test never goes stale.
const PREMIUM_JOINED = Date.now() < Date.parse('2027-03-01T00:00:00+09:00') ? '2026-03-01' : seoulDate(Date.now() - 30 * DAY_MS);
const PREMIUM_ENDS = `${Number(PREMIUM_JOINED.slice(0, 4)) + 1}${PREMIUM_JOINED.slice(4)}`;

async function member(id, plan, billing, joined) {
  await must(SERVICE, 'PUT', `/v1/members/${id}`, { plan, billing, joined, effective_at: joined }, `seed-${id}`);
}

async function chargeAndCapture(memberId, request) {
  const c = await must(SERVICE, 'POST', '/v1/charges', { member_id: memberId, ...request });
  return must(SERVICE, 'POST', `/v1/charges/${c.charge_id}/capture`, { member_id: memberId });
}

async function token(memberId) {
  return (await must(SERVICE, 'POST', `/v1/members/${memberId}/tokens`, {})).token;
}

const seed = {};

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  await member('m-nov25', 'plus', 'monthly', '2025-11-25');
  await member('m-premium', 'premium', 'monthly', PREMIUM_JOINED);
  await must(ADMIN, 'POST', '/v1/members/m-nov25/grants', { credits: 1000, source: 'purchase', note: 'seed purchase' });
  await must(ADMIN, 'POST', '/v1/members/m-nov25/grants', {
    credits: 300, source: 'promo', note: 'welcome promo', expires_at: seoulDate(Date.now() + 10 * DAY_MS),
  });
  await must(ADMIN, 'POST', '/v1/members/m-premium/grants', { credits: 800, source: 'purchase', note: 'seed purchase' });
  seed.nano4k = await chargeAndCapture('m-nov25', { model: 'Nanobanana Pro', variant: '4k' });
  seed.nano2k = await chargeAndCapture('m-nov25', { model: 'Nanobanana Pro', variant: '2k' });
  seed.mj = await chargeAndCapture('m-nov25', { model: 'Midjourney' });
  seed.seedance = await chargeAndCapture('m-premium', { agent: { model: 'lite', kind: 'video', prompt: 'a cat surfing' } });
  seed.nanoPremium = await chargeAndCapture('m-premium', { model: 'Nanobanana Pro', variant: '1k' });
  seed.tokenNov = await token('m-nov25');
  seed.tokenPremium = await token('m-premium');
  assert.equal(seed.nano4k.items[0].credits, 24);
  assert.equal(seed.nano2k.items[0].unlimited, true);
});

// ---- the browser ------------------------------------------------------------------------

const browsers = [];
const profiles = [];
after(async () => {
  for (const b of browsers) await b.close();
  for (const dir of profiles) fs.rmSync(dir, { recursive: true, force: true });
});

// A fresh Chromium profile per locale: its Accept-Language is the locale's, as a member's is.
async function browserFor(locale, viewport) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cg-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS, locale, viewport,
    timezoneId: 'UTC',
  });
  browsers.push(ctx);
  profiles.push(dir);
  return ctx;
}

async function openMyCredits(ctx, tok, query = '') {
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`${BASE}/${query}`);
  await page.getByLabel(/Member token|회원 토큰/).fill(tok);
  await page.getByRole('button', { name: /^(Sign in|로그인)$/ }).click();
  page.errors = errors;
  return page;
}

async function ready(page) {
  await page.locator('#content:not([hidden])').waitFor();
  await page.locator('#status', { hasText: /Up to date|최신 정보/ }).waitFor();
}

const price = (page, model, variant = '') => page.locator(`li.price[data-model="${model}"][data-variant="${variant}"]`);

async function noHorizontalScroll(page) {
  const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scroll <= inner, `page is ${scroll}px wide on a ${inner}px screen`);
}

// WCAG AA: every visible element with its own text has contrast ≥ 4.5:1 against the first
// opaque background behind it.
async function readableContrast(page) {
  const bad = await page.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => [r, g, b].map((v) => {
      const x = v / 255;
      return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
    }).reduce((acc, v, i) => acc + v * [0.2126, 0.7152, 0.0722][i], 0);
    const background = (node) => {
      for (let n = node; n; n = n.parentElement) {
        const c = rgb(getComputedStyle(n).backgroundColor);
        if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const out = [];
    for (const node of document.querySelectorAll('body *')) {
      const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
      if (!own || !node.checkVisibility()) continue;
      const fg = lum(rgb(getComputedStyle(node).color)), bg = lum(background(node));
      const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
      if (ratio < 4.5) out.push(`${node.tagName}.${node.className} "${node.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
    }
    return out;
  });
  assert.deepEqual(bad, [], 'text below 4.5:1 contrast');
}

// ---- tests ------------------------------------------------------------------------------

test('pages and assets are served with their content types, cache headers and no secret', async () => {
  for (const [p, type] of [['/', 'text/html'], ['/support', 'text/html'], ['/web/style.css', 'text/css'],
    ['/web/mycredits.js', 'text/javascript'], ['/web/support.js', 'text/javascript'], ['/web/common.js', 'text/javascript'],
    ['/web/catalog.json', 'application/json']]) {
    const res = await fetch(BASE + p);
    assert.equal(res.status, 200, p);
    assert.ok(res.headers.get('content-type').startsWith(type), `${p}: ${res.headers.get('content-type')}`);
    assert.equal(res.headers.get('cache-control'), 'no-cache', p);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff', p);
    const text = await res.text();
    for (const secret of [ADMIN, SERVICE, seed.tokenNov]) assert.ok(!text.includes(secret), `${p} holds a secret`);
    assert.ok(!/cgk_[A-Za-z0-9_-]{8}/.test(text), `${p} holds something shaped like a key`);
  }
  const page = await fetch(`${BASE}/`);
  assert.match(page.headers.get('content-security-policy'), /script-src 'self'/);
  const etag = page.headers.get('etag');
  assert.equal((await fetch(`${BASE}/`, { headers: { 'If-None-Match': etag } })).status, 304);
  // The page's language follows Accept-Language (q-values honoured; anything else: English).
  for (const [header, lang] of [['ko-KR,ko;q=0.9,en;q=0.5', 'ko'], ['ko;q=0.3, en-GB', 'en'], ['fr-FR, ko;q=0.1', 'ko'],
    ['en-US,en;q=0.9,ko;q=0.8', 'en'], ['ko;q=0', 'en'], ['*', 'en'], ['KO', 'ko'], ['kok, ko-x;q=0.2', 'ko']]) {
    const res = await fetch(`${BASE}/support`, { headers: { 'Accept-Language': header } });
    assert.match(await res.text(), new RegExp(`<html lang="${lang}"`), header);
    assert.equal(res.headers.get('vary'), 'Accept-Language');
  }
  const head = await fetch(`${BASE}/web/style.css`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), '');
});

test('paths outside web/ are refused, however they are spelled', async () => {
  const raw = (p) => new Promise((resolve, reject) => {
    const u = new URL(BASE);
    http.get({ host: u.hostname, port: u.port, path: p }, (res) => { res.resume(); resolve(res.statusCode); }).on('error', reject);
  });
  for (const p of ['/web/../README.md', '/web/..%2fREADME.md', '/web/%2e%2e/Makefile', '/web/.hidden',
    '/web/sub/x.js', '/web/', '/web/README.md', '/web//etc/passwd', '/web/%2e%2e%2f%2e%2e%2fetc%2fpasswd', '/web/style.css/..']) {
    assert.equal(await raw(p), 404, p);
  }
  assert.equal((await fetch(`${BASE}/support`, { method: 'POST' })).status, 405);
});

test('a member who joined 2025-11-25 sees Nanobanana Pro 1K/2K unlimited and 4K charged', async () => {
  const ctx = await browserFor('en-US', PHONE);
  const page = await openMyCredits(ctx, seed.tokenNov);
  await ready(page);
  assert.equal(await page.locator('h1').textContent(), 'My Credits');
  for (const v of ['1k', '2k']) {
    await assert.doesNotReject(price(page, 'nanobanana-pro', v).filter({ hasText: 'Unlimited for you' }).waitFor());
    assert.equal(await price(page, 'nanobanana-pro', v).getAttribute('data-unlimited'), 'true');
  }
  assert.equal(await price(page, 'nanobanana-pro', '4k').getAttribute('data-unlimited'), 'false');
  assert.equal((await price(page, 'nanobanana-pro', '4k').locator('.badge').textContent()).trim(), '24 credits');
  assert.equal(await price(page, 'nanobanana-2', '1k').getAttribute('data-unlimited'), 'false');
  // The usage history says why 4K was charged; the balance shows what expires soon.
  await page.locator('#usage-list li.capture', { hasText: '4K resolution is paid for all members' }).waitFor();
  // The 2K image moved no credits, yet it is in the history, with the benefit that made it free.
  const free2k = page.locator('#usage-list li.unlimited', { hasText: 'Unlimited (no credits deducted)' });
  await free2k.waitFor();
  assert.match(await free2k.textContent(), /unlimited: Nanobanana Pro 1K\/2K for members who joined 2025-11-21 to 2025-11-30/);
  assert.match(await page.locator('#expiring li.soon').first().textContent(), /credits expire on/);
  assert.equal(await page.locator('#available').textContent(), '1,266 credits'); // 1300 − 24 − 10
  assert.ok(!page.url().includes(seed.tokenNov), 'the token must never be in the URL');
  assert.ok(await page.locator('#agent-note').isHidden(), 'no Carat Video benefit: no Agent 2.0 note');
  await noHorizontalScroll(page);
  await readableContrast(page);
  await page.screenshot({ path: path.join(SHOTS, 'mycredits-en.png'), fullPage: true });
  assert.deepEqual(page.errors, []);
});

test('a Premium member since 2026-03-01 sees, in Korean, Carat Video unlimited until 2027-03-01', async () => {
  const ctx = await browserFor('ko-KR', PHONE);
  const page = await openMyCredits(ctx, seed.tokenPremium);
  await ready(page);
  assert.equal(await page.locator('h1').textContent(), '내 크레딧');
  assert.equal(await page.title(), '내 크레딧');
  assert.equal(await page.locator('#benefits-title').textContent(), '혜택 사용중');
  const [y, m, d] = PREMIUM_ENDS.split('-').map(Number);
  const carat = page.locator('#benefit-list li[data-model="carat-video-ltx"]');
  assert.equal((await carat.locator('.badge').textContent()).trim(), `${y}년 ${m}월 ${d}일까지 무제한`);
  assert.equal(await price(page, 'carat-video-ltx').getAttribute('data-unlimited'), 'true');
  assert.equal(await price(page, 'seedance-2.0').getAttribute('data-unlimited'), 'false');
  assert.equal(await price(page, 'gpt-image-2.0', 'low').getAttribute('data-unlimited'), 'true');
  assert.equal(await price(page, 'gpt-image-2.0', 'medium').getAttribute('data-unlimited'), 'false');
  // The Agent 2.0 note applies to this member: how to ask for Carat Basic Video (LTX 2.3).
  assert.match(await page.locator('#agent-note').textContent(), /Use Carat Basic Video \(LTX 2\.3\)/);
  // Reasons in the history are Korean too.
  await page.locator('#usage-list li.capture .reason', { hasText: /회원/ }).first().waitFor();
  await noHorizontalScroll(page);
  await page.screenshot({ path: path.join(SHOTS, 'mycredits-ko.png'), fullPage: true });
  // The visible switch turns the page to English and dates with it.
  await page.getByLabel('언어').selectOption('en');
  await page.locator('h1', { hasText: 'My Credits' }).waitFor();
  await page.locator('#status', { hasText: 'Up to date' }).waitFor();
  const months = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
  assert.equal((await carat.locator('.badge').textContent()).trim(), `Unlimited until ${months[m - 1]} ${d}, ${y}`);
  assert.deepEqual(page.errors, []);
});

test("a member token cannot open another member's page", async () => {
  const ctx = await browserFor('en-US', PHONE);
  const page = await openMyCredits(ctx, seed.tokenNov, '?member=m-premium');
  await page.locator('#error:not([hidden])').waitFor();
  assert.match(await page.locator('#error').textContent(), /another member \(m-premium\)/);
  assert.ok(await page.locator('#content').isHidden());
  assert.equal(await page.locator('#available').textContent(), '');
  // And the API itself refuses, whatever a page does.
  for (const p of ['/v1/members/m-premium/balance', '/v1/members/m-premium/benefits', '/v1/members/m-premium/history',
    '/v1/members/m-premium/prices', '/v1/members/m-premium/charges'])
    assert.equal((await call(seed.tokenNov, 'GET', p)).status, 403, p);
  assert.equal((await call(seed.tokenNov, 'POST', `/v1/charges/${seed.nano4k.charge_id}/refund`,
    { member_id: 'm-nov25', reason: 'self-service' })).status, 403);
});

async function openSupport(ctx, memberId) {
  const page = await ctx.newPage();
  await page.goto(`${BASE}/support`);
  await page.getByLabel(/Admin key|관리자 키/).fill(ADMIN);
  await page.getByRole('button', { name: /^(Sign in|로그인)$/ }).click();
  await page.getByLabel(/Member ID|회원 ID/).fill(memberId);
  await page.getByRole('button', { name: /^(Look up|조회)$/ }).click();
  await page.locator('#member:not([hidden])').waitFor();
  return page;
}

test('support finds why a member was charged, refunds it, and the member sees the balance change', async () => {
  const ctx = await browserFor('en-US', DESKTOP);
  const member = await openMyCredits(ctx, seed.tokenNov);
  await ready(member);
  const before = await member.locator('#available').textContent();

  const page = await openSupport(ctx, 'm-nov25');
  assert.equal(await page.locator('h1').textContent(), 'Support console');
  const row = page.locator(`#charges tr[data-charge="${seed.nano4k.charge_id}"]`);
  await row.waitFor();
  assert.match(await row.textContent(), /carat-2026-11/);                  // policy version
  // unlimited (0-credit) charges are listed too, with the benefit that made them free
  const free = page.locator(`#charges tr[data-charge="${seed.nano2k.charge_id}"]`);
  await free.waitFor();
  assert.match(await free.textContent(), /nanobanana-pro-nov-21-30-2025/);
  await page.getByLabel('Only charges for a model that is unlimited for some plan').check();
  assert.equal(await page.locator('#charges tbody tr').count(), 1);        // 4K only, not Midjourney or 2K
  assert.match(await row.locator('td.why').textContent(), /4K resolution is paid for all members/);

  await row.locator('summary').click();
  await row.getByLabel('Note (required)').fill('4K charged during Nov promo: goodwill refund');
  await row.getByRole('button', { name: 'Refund' }).click();
  await page.locator('#status', { hasText: `Refunded 24 credits of ${seed.nano4k.charge_id}` }).waitFor();
  // The refund appears in the history at once, with its note.
  await page.locator('#history tr[data-kind="refund"]', { hasText: 'goodwill refund' }).waitFor();
  const charge = await must(ADMIN, 'GET', `/v1/charges/${seed.nano4k.charge_id}?member_id=m-nov25`);
  assert.equal(charge.refunded, 24);

  // A grant with a note, too.
  await page.getByLabel('Credits', { exact: true }).fill('50');
  await page.getByLabel('Note (required)', { exact: true }).fill('apology for the wait');
  await page.getByRole('button', { name: 'Grant', exact: true }).click();
  await page.locator('#history tr[data-kind="grant"]', { hasText: 'apology for the wait' }).waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'support-en.png'), fullPage: true });

  await member.reload();
  await ready(member);
  const after = await member.locator('#available').textContent();
  assert.equal(before, '1,266 credits');
  assert.equal(after, '1,340 credits'); // + 24 refunded + 50 granted
  await member.locator('#usage-list li.refund', { hasText: 'goodwill refund' }).waitFor();
});

test('the support console in Korean explains why a member did not qualify', async () => {
  const ctx = await browserFor('ko-KR', DESKTOP);
  const page = await openSupport(ctx, 'm-premium');
  assert.equal(await page.locator('h1').textContent(), '상담 콘솔');
  await page.getByLabel('일부 플랜에서 무제한인 모델의 차감만 보기').check();
  const row = page.locator(`#charges tr[data-charge="${seed.nanoPremium.charge_id}"]`);
  await row.waitFor();
  assert.equal(await page.locator('#charges tbody tr').count(), 1);        // Nanobanana Pro 1K, not Seedance
  assert.match(await row.locator('td.why').textContent(), /2025-11-21~2025-11-30/);
  assert.match(await page.locator('#benefit-list').textContent(), /carat-video-premium-1y/);
  await readableContrast(page);
  await page.screenshot({ path: path.join(SHOTS, 'support-ko.png'), fullPage: true });
});
