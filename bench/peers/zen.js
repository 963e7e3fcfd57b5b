// zen.js — the GoRules ZEN peer: zen/benefits.json (a JDM decision table, hit policy first)
// evaluated by @gorules/zen-engine (the Rust engine through N-API). The decision is created
// once; each request is one evaluate() call, awaited before the next (one in flight).
'use strict';
const fs = require('fs');
const path = require('path');
const { ZenEngine } = require('@gorules/zen-engine');
const { facts } = require('./common');

function prepare(req) {
  const f = facts(req);
  return { model: f.model, variant: f.variant, plan: f.plan, billing: f.billing, joined: f.joined, today: f.today };
}

function create() {
  const file = path.join(__dirname, 'zen', 'benefits.json');
  const engine = new ZenEngine();
  const decision = engine.createDecision(fs.readFileSync(file));
  const version = require('@gorules/zen-engine/package.json').version;
  async function decide(input) {
    const { result } = await decision.evaluate(input);
    return { unlimited: result.unlimited === true, benefit: result.unlimited ? result.benefit : null };
  }
  return { name: 'zen', label: `GoRules ZEN ${version} (decision table)`, async: true, prepare, decide };
}

module.exports = { create };
