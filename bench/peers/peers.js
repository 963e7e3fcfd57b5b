#!/usr/bin/env node
// peers.js — runs each peer engine over the mix that build/bench/peers wrote, single thread:
// first every request once, comparing each answer (unlimited or charged, and which benefit)
// with creditgate's — this pass is also the warm-up — then timed passes for decisions/s (the
// best half-second window) and the p99 of single decisions. Prints one "result" line per peer for run.sh; any disagreement
// is printed with its request and makes the exit status 1.
//
//   node bench/peers/peers.js --mix FILE [--peers cedar,zen,jre] [--seconds S] [--check-only]
'use strict';
const { performance } = require('perf_hooks');
const { loadMix } = require('./common');

const PEERS = { cedar: './cedar', zen: './zen', jre: './jre' };
const PRINT_MAX = 100; // disagreements printed in full; the count covers all of them
const LATENCY_SAMPLES_MAX = 1000000;

function parseArgs(argv) {
  const o = { mix: null, peers: Object.keys(PEERS), seconds: 2, checkOnly: false };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--mix') o.mix = argv[++i];
    else if (a === '--peers') o.peers = argv[++i].split(',').filter(Boolean);
    else if (a === '--seconds') o.seconds = Number(argv[++i]);
    else if (a === '--check-only') o.checkOnly = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.mix) throw new Error('usage: peers.js --mix FILE [--peers cedar,zen,jre] [--seconds S] [--check-only]');
  for (const p of o.peers) if (!PEERS[p]) throw new Error(`unknown peer ${p} (known: ${Object.keys(PEERS)})`);
  return o;
}

function disagrees(got, req) {
  if (got.unlimited !== req.unlimited) return true;
  return req.unlimited && got.benefit !== req.benefit;
}

function show(a) {
  return a.unlimited ? `unlimited (${a.benefit})` : 'charged';
}

async function agreement(peer, reqs, inputs) {
  let bad = 0;
  for (let i = 0; i < reqs.length; i++) {
    const got = peer.async ? await peer.decide(inputs[i]) : peer.decide(inputs[i]);
    if (!disagrees(got, reqs[i])) continue;
    if (++bad <= PRINT_MAX) {
      const { unlimited, benefit, credits, ...request } = reqs[i];
      console.log(`DISAGREEMENT ${peer.name} request ${JSON.stringify(request)}: creditgate ` +
                  `${show(reqs[i])}, ${peer.name} ${show(got)}`);
    }
  }
  if (bad > PRINT_MAX) console.log(`... and ${bad - PRINT_MAX} more disagreements from ${peer.name}`);
  return bad;
}

// Timed passes over the whole mix until `seconds` have gone by (at least one pass), in windows
// of WINDOW_S; the figure is the best window's rate, because the machine is shared and a
// neighbour's burst should not decide the comparison (creditgate's row is taken the same way).
// Every decision is also timed alone for the p99 (performance.now costs well under a µs).
const WINDOW_S = 0.5;
async function timed(peer, inputs, seconds) {
  const lat = new Float64Array(Math.min(LATENCY_SAMPLES_MAX, inputs.length * 50));
  let k = 0, best = 0, windowCount = 0, i = 0;
  const t0 = performance.now();
  let w0 = t0;
  for (;;) {
    const a = performance.now();
    if (peer.async) await peer.decide(inputs[i]);
    else peer.decide(inputs[i]);
    const b = performance.now();
    if (k < lat.length) lat[k++] = b - a;
    windowCount++;
    if (b - w0 >= WINDOW_S * 1000) {
      best = Math.max(best, windowCount / ((b - w0) / 1000));
      w0 = b;
      windowCount = 0;
    }
    if (++i === inputs.length) {
      i = 0;
      if (b - t0 >= seconds * 1000) break;
    }
  }
  if (best === 0) best = windowCount / ((performance.now() - w0) / 1000);
  const sorted = lat.subarray(0, k).sort();
  return { rate: best, p99us: sorted[Math.floor(k * 0.99)] * 1000 };
}

async function main() {
  const o = parseArgs(process.argv);
  const reqs = loadMix(o.mix);
  let failed = false;
  for (const name of o.peers) {
    const peer = require(PEERS[name]).create();
    const inputs = reqs.map((r) => peer.prepare(r)); // outside the clock, like creditgate's prepare
    const bad = await agreement(peer, reqs, inputs);
    failed = failed || bad > 0;
    let line = `result peer=${name} requests=${reqs.length} disagreements=${bad}`;
    if (!o.checkOnly) {
      const t = await timed(peer, inputs, o.seconds);
      line += ` decisions_per_s=${t.rate.toFixed(0)} p99_us=${t.p99us.toFixed(3)}`;
    }
    console.log(`${line} label="${peer.label}"`);
  }
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(`peers.js: ${e.stack || e}`);
  process.exit(2);
});
