// cedar.js — the Cedar peer: cedar/benefits.cedar evaluated by @cedar-policy/cedar-wasm (the
// Rust authorizer compiled to WebAssembly). The policy set is parsed once (preparsePolicySet);
// each decision is one statefulIsAuthorized call with the member, plan and model entities.
// Allow = unlimited, and the determining permit's @id is the benefit.
'use strict';
const fs = require('fs');
const path = require('path');
const cedar = require('@cedar-policy/cedar-wasm/nodejs');
const { facts } = require('./common');

const POLICY_SET_ID = 'carat-benefits';
// The plan hierarchy: "Max receives the same unlimited benefits as Premium"; every plan but
// Free is a paid plan.
const PLAN_PARENT = { free: null, plus: 'paid', premium: 'paid', max: 'premium', pro: 'paid', business: 'paid' };

// Splits the file into its policies and names each by its @id, so that a decision's reason
// names the benefit rather than "policy4".
function loadPolicies(file) {
  const parts = cedar.policySetTextToParts(fs.readFileSync(file, 'utf8'));
  if (parts.type !== 'success') throw new Error(`${file}: ${JSON.stringify(parts.errors)}`);
  const staticPolicies = {};
  for (const text of parts.policies) {
    const json = cedar.policyToJson(text);
    const id = json.type === 'success' && json.json.annotations && json.json.annotations.id;
    if (!id) throw new Error(`${file}: a policy has no @id: ${text.slice(0, 80)}`);
    staticPolicies[id] = text;
  }
  const rc = cedar.preparsePolicySet(POLICY_SET_ID, { staticPolicies });
  if (rc.type !== 'success') throw new Error(`${file}: ${JSON.stringify(rc.errors)}`);
  return Object.keys(staticPolicies).length;
}

function planEntities(plan) {
  const out = [];
  for (let p = plan; p; p = PLAN_PARENT[p]) {
    const parent = PLAN_PARENT[p];
    out.push({ uid: { type: 'Plan', id: p }, attrs: {}, parents: parent ? [{ type: 'Plan', id: parent }] : [] });
  }
  if (!(plan in PLAN_PARENT)) throw new Error(`unknown plan ${plan}`);
  return out;
}

function prepare(req) {
  const f = facts(req);
  const principal = { type: 'Member', id: 'member' };
  const entities = [
    { uid: principal, attrs: { billing: f.billing, joined: f.joined, joined_text: f.joinedText },
      parents: [{ type: 'Plan', id: f.plan }] },
    ...planEntities(f.plan),
  ];
  let resource = { type: 'Model', id: f.model };
  if (f.variant) {
    resource = { type: 'Variant', id: `${f.model}/${f.variant}` };
    entities.push({ uid: resource, attrs: {}, parents: [{ type: 'Model', id: f.model }] });
  }
  return { principal, action: { type: 'Action', id: 'generate' }, resource, context: { today: f.today },
           entities, preparsedPolicySetId: POLICY_SET_ID };
}

function decide(call) {
  const answer = cedar.statefulIsAuthorized(call);
  if (answer.type !== 'success') throw new Error(`cedar: ${JSON.stringify(answer.errors)}`);
  const r = answer.response;
  if (r.diagnostics.errors.length) throw new Error(`cedar: ${JSON.stringify(r.diagnostics.errors)}`);
  if (r.decision !== 'allow') return { unlimited: false, benefit: null };
  return { unlimited: true, benefit: r.diagnostics.reason.join('+') };
}

function create() {
  const count = loadPolicies(path.join(__dirname, 'cedar', 'benefits.cedar'));
  return { name: 'cedar', label: `Cedar ${cedar.getCedarVersion()} (wasm, ${count} policies)`, async: false,
           prepare, decide };
}

module.exports = { create };
