// common.js — what every peer driver shares: reading the mix that build/bench/peers wrote, and
// turning one request into plain facts (Seoul calendar days as YYYYMMDD numbers). The rules
// themselves live in each peer's own language (cedar/, zen/, jre/), never here.
'use strict';
const fs = require('fs');

const SEOUL_OFFSET_MS = 9 * 3600 * 1000; // Asia/Seoul is UTC+9 with no DST

function loadMix(path) {
  const lines = fs.readFileSync(path, 'utf8').split('\n');
  const reqs = [];
  for (const line of lines) if (line) reqs.push(JSON.parse(line));
  if (reqs.length === 0) throw new Error(`${path}: no requests`);
  return reqs;
}

// The Seoul calendar day of an RFC 3339 instant, as YYYYMMDD.
function seoulDay(instantText) {
  const ms = Date.parse(instantText);
  if (Number.isNaN(ms)) throw new Error(`bad instant ${instantText}`);
  const d = new Date(ms + SEOUL_OFFSET_MS);
  return d.getUTCFullYear() * 10000 + (d.getUTCMonth() + 1) * 100 + d.getUTCDate();
}

// "2026-02-25" (already a Seoul date) → 20260225.
function dayNumber(dateText) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(dateText);
  if (!m) throw new Error(`bad date ${dateText}`);
  return Number(m[1]) * 10000 + Number(m[2]) * 100 + Number(m[3]);
}

function facts(req) {
  return {
    model: req.model,
    variant: req.variant, // null for a model without variants
    plan: req.plan,
    billing: req.billing,
    joined: dayNumber(req.joined),
    joinedText: req.joined,
    today: seoulDay(req.at),
  };
}

module.exports = { loadMix, seoulDay, dayNumber, facts };
