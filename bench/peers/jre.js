// jre.js — the json-rules-engine peer: jre/rules.json run by json-rules-engine (pure
// JavaScript). Besides the rules it needs three things in JavaScript, as its users write
// them: the memberPlans fact (plan inheritance), the caratVideoYearEnds fact (the
// anniversary of joining) and the sharesAny operator.
'use strict';
const fs = require('fs');
const path = require('path');
const { Engine } = require('json-rules-engine');
const { facts } = require('./common');

// "Max receives the same unlimited benefits as Premium"; Free is the only unpaid plan.
const INHERITS = { max: 'premium' };

function memberPlans(plan) {
  const out = [plan];
  if (INHERITS[plan]) out.push(INHERITS[plan]);
  if (plan !== 'free') out.push('paid');
  return out;
}

// "1 year" from joining ends at 00:00 Seoul on the anniversary; a Feb 29 join ends on Feb 28.
function yearEnds(joinedText) {
  const [y, m, d] = joinedText.split('-').map(Number);
  const lastDay = new Date(Date.UTC(y + 1, m, 0)).getUTCDate(); // day 0 of the next month
  return (y + 1) * 10000 + m * 100 + Math.min(d, lastDay);
}

function prepare(req) {
  const f = facts(req);
  return { model: f.model, variant: f.variant, plan: f.plan, billing: f.billing, joined: f.joined,
           today: f.today, joinedText: f.joinedText };
}

function create() {
  const doc = JSON.parse(fs.readFileSync(path.join(__dirname, 'jre', 'rules.json'), 'utf8'));
  const engine = new Engine([], { allowUndefinedFacts: false });
  engine.addOperator('sharesAny', (factValue, wanted) => factValue.some((p) => wanted.includes(p)));
  engine.addFact('memberPlans', async (params, almanac) => memberPlans(await almanac.factValue('plan')));
  engine.addFact('caratVideoYearEnds', async (params, almanac) => yearEnds(await almanac.factValue('joinedText')));
  for (const [name, condition] of Object.entries(doc.conditions)) engine.setCondition(name, condition);
  for (const rule of doc.rules) engine.addRule(rule);
  const version = require('json-rules-engine/package.json').version;
  async function decide(input) {
    const { events } = await engine.run(input);
    const benefits = events.filter((e) => e.type === 'unlimited').map((e) => e.params.benefit);
    return benefits.length ? { unlimited: true, benefit: benefits.join('+') } : { unlimited: false, benefit: null };
  }
  return { name: 'jre', label: `json-rules-engine ${version} (${doc.rules.length} rules)`, async: true, prepare, decide };
}

module.exports = { create, yearEnds };
