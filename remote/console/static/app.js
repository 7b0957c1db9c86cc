// The Palisade console. Every element is built with h(); text from the API
// is only ever placed with text nodes, never parsed as markup.

const CSRF_COOKIE = 'palisade_csrf';
const CSRF_HEADER = 'X-Palisade-CSRF';

const state = { me: null, cluster: null };

export function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid == null || kid === false) continue;
    e.append(kid instanceof Node ? kid : String(kid));
  }
  return e;
}

function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return '';
}

// api calls the controller's API; it resolves to {status, data} and never
// throws on an HTTP error status.
export async function api(method, path, body, contentType) {
  const headers = {};
  if (method !== 'GET' && method !== 'HEAD') headers[CSRF_HEADER] = cookie(CSRF_COOKIE);
  let payload;
  if (body !== undefined) {
    if (contentType) { headers['Content-Type'] = contentType; payload = body; }
    else { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  } catch (err) {
    return { status: 0, data: { message: 'network error: ' + err.message } };
  }
  let data = null;
  const text = await resp.text();
  if (text) { try { data = JSON.parse(text); } catch { data = { message: text }; } }
  if (resp.status === 401 && path !== '/v1/auth/login') { state.me = null; location.hash = '#/login'; }
  return { status: resp.status, data };
}

function errorText(r) {
  const d = r.data || {};
  let msg = d.message || ('HTTP ' + r.status);
  if (d.field) msg = d.field + ': ' + msg;
  return msg;
}

function items(r) {
  if (!r || r.status !== 200 || r.data == null) return [];
  return Array.isArray(r.data) ? r.data : (r.data.items || []);
}

const can = {
  write: () => ['admin', 'fedAdmin'].includes(state.me?.role),
  fedRead: () => ['admin', 'fedAdmin', 'fedReader'].includes(state.me?.role),
  fedWrite: () => ['admin', 'fedAdmin'].includes(state.me?.role),
};

function ago(t) {
  if (!t || t.startsWith('0001-')) return '—';
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  if (s < 0) return 'now';
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}

function labels(m) {
  return Object.entries(m || {}).map(([k, v]) => h('span', { class: 'pill' }, k + '=' + v));
}

function yesNo(b, good = true) {
  return h('span', { class: b === good ? 'ok' : 'bad' }, b ? 'yes' : 'no');
}

function cellText(v) {
  if (v == null) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// table renders rows with columns [{h, f}] and, with filter, a box that
// keeps the rows whose text contains what is typed. The first rows are
// built at once and the rest in chunks, so a long table shows at once.
const FIRST_ROWS = 100, CHUNK_ROWS = 500;

export function table(cols, rows, opts = {}) {
  const tbody = h('tbody');
  const trs = [];
  let query = '';
  const build = (r) => h('tr', null, cols.map((c) => {
    const v = c.f(r);
    return h('td', null, v instanceof Node || Array.isArray(v) ? v : cellText(v));
  }));
  const t = h('table', { 'data-rows': rows.length }, h('thead', null, h('tr', null, cols.map((c) => h('th', null, c.h)))), tbody);
  let next = 0;
  const more = (n) => {
    const chunk = rows.slice(next, next + n).map(build);
    next += chunk.length;
    for (const tr of chunk) tr.hidden = query !== '' && !tr.textContent.toLowerCase().includes(query);
    trs.push(...chunk);
    tbody.append(...chunk);
    if (next < rows.length) setTimeout(() => more(CHUNK_ROWS), 0);
    else { t.dataset.complete = 'true'; performance.mark('palisade-table-complete'); }
  };
  more(FIRST_ROWS);
  if (!rows.length) tbody.append(h('tr', null, h('td', { colspan: cols.length, class: 'muted' }, opts.empty || 'None.')));
  if (!opts.filter) return t;
  const box = h('input', { class: 'filter', type: 'search', placeholder: 'Filter…', 'aria-label': 'filter' });
  box.addEventListener('input', () => {
    query = box.value.toLowerCase();
    for (const tr of trs) tr.hidden = query !== '' && !tr.textContent.toLowerCase().includes(query);
  });
  return h('div', null, box, t);
}

// autoColumns picks columns for API listings whose shape may grow.
function autoColumns(rows, preferred) {
  const keys = new Set();
  for (const r of rows.slice(0, 50)) for (const k of Object.keys(r)) keys.add(k);
  const cols = preferred.filter((k) => keys.has(k));
  for (const k of keys) if (!cols.includes(k) && cols.length < 9) cols.push(k);
  return cols.map((k) => ({ h: k, f: (r) => r[k] }));
}

function notAvailable(what, r) {
  if (r.status === 404) return h('p', { class: 'muted' }, what + ': not available on this controller.');
  if (r.status === 403) return h('p', { class: 'muted' }, what + ': your role may not read this.');
  return h('p', { class: 'error' }, what + ': ' + errorText(r));
}

function genericListing(title, r, preferred) {
  if (r.status !== 200) return [h('h2', null, title), notAvailable(title, r)];
  const rows = items(r);
  return [h('h2', null, title + ' (' + (r.data?.total ?? rows.length) + ')'), table(autoColumns(rows, preferred), rows, { filter: true })];
}

// ---- pages ----

async function fleetPage() {
  const out = [h('h1', null, 'Fleet')];
  const cl = state.cluster;
  if (cl.role === 'primary' && can.fedRead()) {
    const st = await api('GET', '/v1/fed/status');
    if (st.status !== 200) return [...out, notAvailable('Federation status', st)];
    const s = st.data;
    const rows = [{ self: true, name: s.name, labels: {}, connected: true, ackedRevision: s.revision, lag: 0, lastContact: new Date().toISOString(), healthy: true }, ...(s.remotes || [])];
    out.push(h('p', { class: 'muted' }, (s.remotes || []).length + ' remote(s); federated revision ' + s.revision));
    out.push(table([
      { h: 'Cluster', f: (r) => r.name },
      { h: 'Role', f: (r) => r.self ? 'primary' : 'remote' },
      { h: 'Labels', f: (r) => labels(r.labels) },
      { h: 'Connected', f: (r) => r.self ? h('span', { class: 'ok' }, 'self') : yesNo(r.connected) },
      { h: 'Applied revision', f: (r) => String(r.ackedRevision || 0) },
      { h: 'Lag', f: (r) => h('span', { class: r.lag > 0 ? 'warn' : '' }, String(r.lag || 0)) },
      { h: 'Last contact', f: (r) => ago(r.lastContact) },
      { h: 'Health', f: (r) => r.kicked ? h('span', { class: 'bad' }, 'kicked') : (r.self || r.healthy ? h('span', { class: 'ok' }, 'healthy') : h('span', { class: 'bad' }, 'unhealthy')) },
      { h: 'Error', f: (r) => r.lastError || r.linkError || '' },
    ], rows, { filter: true }));
    return out;
  }
  out.push(h('p', null, 'Cluster ', h('b', null, cl.name), ' is ', cl.role, '; revision ' + cl.revision + '.'));
  if (cl.role === 'remote') {
    const link = await api('GET', '/v1/fed/link');
    if (link.status === 200) {
      const l = link.data;
      out.push(h('div', { class: 'card' }, 'Primary ', h('b', null, l.primary || '—'), ' · applied revision ' + l.applied + ' · link ',
        l.link?.connected ? h('span', { class: 'ok' }, 'connected') : h('span', { class: 'bad' }, 'down'), ' · labels ', labels(l.labels)));
    }
  }
  out.push(h('h2', null, 'Replicas'));
  out.push(table([
    { h: 'Replica', f: (r) => r.name },
    { h: 'State', f: (r) => h('span', { class: r.state === 'failed' ? 'bad' : 'ok' }, r.state) },
    { h: 'API address', f: (r) => r.address },
    { h: 'Raft address', f: (r) => r.raftAddress },
    { h: 'Leader', f: (r) => r.name === cl.leader ? 'yes' : '' },
  ], cl.replicas || []));
  return out;
}

async function rolloutsPage() {
  const out = [h('h1', null, 'Rollouts')];
  if (state.cluster.role !== 'primary') return [...out, h('p', { class: 'muted' }, 'Rollouts are run by a primary; this cluster is ' + state.cluster.role + '.')];
  const [ro, hist] = await Promise.all([api('GET', '/v1/fed/rollout'), api('GET', '/v1/fed/history')]);
  const msg = h('p', { class: 'error', id: 'rollout-msg' });
  const act = (path, body) => async () => {
    const r = await api('POST', path, body);
    if (r.status >= 300) msg.textContent = errorText(r); else route();
  };
  out.push(h('h2', null, 'Current rollout'));
  if (ro.status === 200) {
    const s = ro.data;
    out.push(h('div', { class: 'card' },
      h('div', null, 'Rollout ', h('b', null, s.id), ' of revision ' + s.revision + ' · phase ', h('b', { id: 'rollout-phase' }, s.phase), s.paused ? h('span', { class: 'warn' }, ' (paused)') : ''),
      h('div', null, 'Canaries: ', (s.canaries || []).map((c) => h('span', { class: 'pill' }, c))),
      h('div', { class: 'muted' }, s.message || ''),
      can.fedWrite() && h('div', { class: 'row' },
        h('button', { id: 'pause', disabled: s.paused, onclick: act('/v1/fed/rollout/pause') }, 'Pause'),
        h('button', { id: 'resume', class: 'secondary', disabled: !s.paused, onclick: act('/v1/fed/rollout/resume') }, 'Resume'))));
  } else out.push(ro.status === 404 ? h('p', { class: 'muted' }, 'No rollout.') : notAvailable('Rollout', ro));
  out.push(msg, h('h2', null, 'History'));
  if (hist.status !== 200) return [...out, notAvailable('History', hist)];
  const cols = [
    { h: 'Revision', f: (r) => String(r.revision) },
    { h: 'When', f: (r) => ago(r.at) },
    { h: 'User', f: (r) => r.user || '' },
    { h: 'Objects', f: (r) => String(r.objects) },
  ];
  if (can.fedWrite()) cols.push({ h: '', f: (r) => h('button', { class: 'secondary', onclick: () => { if (confirm('Roll the federated policy back to revision ' + r.revision + '?')) act('/v1/fed/rollback', { to: r.revision })(); } }, 'Roll back') });
  out.push(table(cols, items(hist), { empty: 'No federated policy recorded yet.' }));
  return out;
}

const EXAMPLE = `apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata:
  name: web
spec:
  criteria:
    - key: namespace
      op: "="
      value: shop
`;

function changesView(d) {
  const list = d.changes || d.plan?.changes || [];
  const lines = [];
  lines.push((d.dryRun ? 'Dry run: ' : 'Applied' + (d.revision ? ' as revision ' + d.revision : '') + ': ') + list.length + ' change(s)');
  for (const c of list) lines.push('  ' + c.op + ' ' + c.kind + ' ' + c.name + (c.fields?.length ? ' (' + c.fields.join(', ') + ')' : ''));
  for (const p of d.plan?.problems || d.problems || []) lines.push('  problem: ' + p);
  if (d.rollout) lines.push('rollout ' + d.rollout + ' started');
  return lines.join('\n');
}

async function policyPage() {
  const out = [h('h1', null, 'Policy')];
  const primary = state.cluster.role === 'primary';
  if (can.write() || (primary && can.fedWrite())) {
    const ta = h('textarea', { id: 'policy-yaml', spellcheck: 'false', 'aria-label': 'policy YAML' }, EXAMPLE);
    const target = h('select', { id: 'policy-target' },
      can.write() && h('option', { value: 'local' }, 'this cluster'),
      primary && can.fedWrite() && h('option', { value: 'federated', selected: true }, 'federated (every member)'));
    const canary = h('input', { id: 'policy-canary', placeholder: 'canary remotes (optional, comma-separated)', size: 36 });
    const result = h('div', { id: 'policy-result', class: 'result' });
    const send = (dry) => async () => {
      result.className = 'result'; result.textContent = dry ? 'Checking…' : 'Applying…';
      let path;
      if (target.value === 'federated') {
        path = '/v1/fed/policy/apply?dryRun=' + dry + (canary.value.trim() ? '&canary=' + encodeURIComponent(canary.value.trim()) : '');
      } else path = '/v1/policy/apply?dryRun=' + dry;
      const r = await api('POST', path, ta.value, 'application/yaml');
      if (r.status !== 200) { result.className = 'result error'; result.textContent = errorText(r); return; }
      result.textContent = changesView(r.data);
      if (!dry) loadLists();
    };
    out.push(h('div', { class: 'card' }, h('h2', null, 'Editor'), ta,
      h('div', { class: 'row' }, 'Apply to', target, primary && canary,
        h('button', { id: 'policy-dryrun', class: 'secondary', onclick: send(true) }, 'Dry run'),
        h('button', { id: 'policy-apply', onclick: send(false) }, 'Apply')), result));
  }
  const lists = h('div', { id: 'policy-lists' });
  out.push(lists);
  async function loadLists() {
    const [g, r, f] = await Promise.all([api('GET', '/v1/groups?limit=1000'), api('GET', '/v1/rules?limit=1000'),
      primary && can.fedRead() ? api('GET', '/v1/fed/policy') : Promise.resolve(null)]);
    const kids = [];
    kids.push(h('h2', null, 'Groups'));
    kids.push(g.status === 200 ? table([
      { h: 'Name', f: (x) => x.name },
      { h: 'Source', f: (x) => h('span', { class: 'pill' }, x.source) },
      { h: 'Criteria', f: (x) => (x.criteria || []).join(', ') },
      { h: 'Network mode', f: (x) => x.networkMode },
      { h: 'Process mode', f: (x) => x.processMode },
      { h: 'Members', f: (x) => x.members == null ? '' : String(x.members) },
    ], items(g), { filter: true }) : notAvailable('Groups', g));
    kids.push(h('h2', null, 'Network rules'));
    kids.push(r.status === 200 ? table([
      { h: '#', f: (x) => String(x.order) },
      { h: 'Name', f: (x) => x.name },
      { h: 'Source', f: (x) => h('span', { class: 'pill' }, x.source) },
      { h: 'From', f: (x) => x.from },
      { h: 'To', f: (x) => x.to },
      { h: 'Ports', f: (x) => x.ports },
      { h: 'Apps', f: (x) => (x.applications || []).join(', ') },
      { h: 'Action', f: (x) => h('span', { class: x.action === 'deny' ? 'bad' : 'ok' }, x.action) },
    ], items(r), { filter: true }) : notAvailable('Rules', r));
    if (f) {
      kids.push(h('h2', null, 'Federated objects on this primary'));
      kids.push(f.status === 200 ? table([
        { h: 'Object', f: (x) => x.key },
        { h: 'Revision', f: (x) => String(x.revision) },
      ], items(f), { filter: true }) : notAvailable('Federated objects', f));
    }
    lists.replaceChildren(...kids);
  }
  await loadLists();
  return out;
}

async function networkPage() {
  const out = [h('h1', null, 'Network activity')];
  const r = await api('GET', '/v1/flows?limit=1000');
  if (r.status !== 200) return [...out, notAvailable('Flows', r)];
  const flows = items(r);
  const info = h('p', { class: 'muted', id: 'netmap-info' });
  const canvas = h('canvas', { id: 'netmap' });
  out.push(info, canvas);
  queueMicrotask(async () => {
    const m = await import('/ui/netmap.js');
    const g = m.graphFromFlows(flows);
    info.textContent = g.nodes.length + ' groups, ' + g.edges.length + ' connections, ' + g.edges.filter((e) => e.violation).length + ' with violations (red)';
    m.draw(canvas, g);
  });
  return out;
}

async function eventsPage() {
  const [ev, adm] = await Promise.all([api('GET', '/v1/events?limit=1000'), api('GET', '/v1/admission/events?limit=1000')]);
  return [h('h1', null, 'Security events'),
    ...genericListing('Security events', ev, ['time', 'kind', 'action', 'mode', 'node', 'client', 'server', 'port', 'workload', 'path', 'message']),
    ...genericListing('Admission decisions', adm, ['time', 'namespace', 'name', 'kind', 'allowed', 'mode', 'rule', 'image', 'message', 'reason'])];
}

async function registriesPage() {
  const [reg, res] = await Promise.all([api('GET', '/v1/registries'), api('GET', '/v1/scan/results?limit=1000')]);
  return [h('h1', null, 'Registries and scans'),
    ...genericListing('Registries', reg, ['name', 'url', 'repositories', 'lastScan', 'images', 'status']),
    ...genericListing('Scan results', res, ['ref', 'digest', 'scannedAt', 'critical', 'high', 'medium', 'low', 'verdict'])];
}

// risk computes a score from 0 to 100 and what raises it, from what this
// controller serves; a missing source adds nothing.
export function risk({ groups = [], admission = null, results = null, admissionEvents = [], flows = [], remotes = [] }) {
  const reasons = [];
  const add = (pts, why) => { if (pts > 0) reasons.push({ pts: Math.round(pts), why }); };
  const discover = groups.filter((g) => g.networkMode === 'discover' && g.source !== 'learned');
  const monitor = groups.filter((g) => g.networkMode === 'monitor');
  add(Math.min(30, discover.length * 3), discover.length + ' group(s) in discover mode (nothing is blocked)');
  add(Math.min(10, monitor.length * 1), monitor.length + ' group(s) in monitor mode (violations are only alerted)');
  if (admission) {
    if (!admission.enabled) add(20, 'admission control is off');
    else if (admission.mode === 'monitor') add(15, 'admission control is in monitor mode');
  }
  if (results) {
    const scanned = new Set(results.map((r) => r.digest).filter(Boolean));
    const seen = new Set(admissionEvents.map((e) => e.digest || e.image).filter(Boolean));
    const unscanned = [...seen].filter((d) => !scanned.has(d)).length;
    add(Math.min(20, unscanned * 2), unscanned + ' admitted image(s) with no scan result');
    const crit = results.filter((r) => (r.critical || r.counts?.critical || 0) > 0).length;
    add(Math.min(15, crit * 3), crit + ' scanned image(s) with critical vulnerabilities');
  }
  const viol = flows.filter((f) => (f.violations || 0) > 0).length;
  add(Math.min(15, viol), viol + ' connection(s) with policy violations');
  const down = remotes.filter((r) => !r.connected).length;
  add(Math.min(10, down * 2), down + ' remote cluster(s) disconnected');
  reasons.sort((a, b) => b.pts - a.pts);
  return { score: Math.min(100, reasons.reduce((s, r) => s + r.pts, 0)), reasons };
}

async function dashboardPage() {
  const primary = state.cluster.role === 'primary' && can.fedRead();
  const [g, adm, res, aev, fl, fed] = await Promise.all([api('GET', '/v1/groups?limit=1000'), api('GET', '/v1/admission/status'),
    api('GET', '/v1/scan/results?limit=1000'), api('GET', '/v1/admission/events?limit=1000'), api('GET', '/v1/flows?limit=1000'),
    primary ? api('GET', '/v1/fed/status') : Promise.resolve(null)]);
  const r = risk({ groups: items(g), admission: adm.status === 200 ? adm.data : null, results: res.status === 200 ? items(res) : null,
    admissionEvents: items(aev), flows: items(fl), remotes: fed?.status === 200 ? fed.data.remotes || [] : [] });
  const cls = r.score >= 50 ? 'bad' : r.score >= 20 ? 'warn' : 'ok';
  const sources = [['groups', g], ['admission', adm], ['scan results', res], ['flows', fl]].filter(([, x]) => x.status === 404).map(([n]) => n);
  return [h('h1', null, 'Dashboard'),
    h('div', { class: 'card' }, h('div', { class: 'muted' }, 'Security risk score'), h('div', { class: 'score ' + cls, id: 'risk-score' }, String(r.score)),
      h('div', { class: 'muted' }, '0 is best, 100 is worst.')),
    h('h2', null, 'What raises it'),
    r.reasons.length ? h('ul', { id: 'risk-reasons' }, r.reasons.map((x) => h('li', null, '+' + x.pts + ' ', x.why))) : h('p', { class: 'ok' }, 'Nothing found.'),
    sources.length ? h('p', { class: 'muted' }, 'Not available here: ' + sources.join(', ') + '.') : null];
}

function loginPage() {
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', placeholder: 'user', required: true });
  const pw = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', placeholder: 'password', required: true });
  const err = h('div', { class: 'error', id: 'login-error' });
  const form = h('form', { class: 'login card' }, h('h1', null, 'Sign in'), user, pw, h('button', { id: 'login', type: 'submit' }, 'Sign in'), err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = await api('POST', '/v1/auth/login', { username: user.value, password: pw.value });
    if (r.status !== 200) { err.textContent = errorText(r); return; }
    state.me = { user: r.data.user, role: r.data.role };
    location.hash = '#/fleet';
  });
  return [form];
}

const pages = {
  dashboard: ['Dashboard', dashboardPage],
  fleet: ['Fleet', fleetPage],
  rollouts: ['Rollouts', rolloutsPage],
  policy: ['Policy', policyPage],
  network: ['Network', networkPage],
  events: ['Events', eventsPage],
  registries: ['Registries', registriesPage],
};

async function logout() {
  await api('POST', '/v1/auth/logout');
  state.me = null;
  location.hash = '#/login';
}

function chrome(active) {
  const nav = document.getElementById('nav');
  const me = document.getElementById('me');
  const cl = document.getElementById('cluster');
  if (!state.me) { nav.replaceChildren(); me.replaceChildren(); cl.textContent = ''; return; }
  nav.replaceChildren(...Object.entries(pages).map(([k, [title]]) => h('a', { href: '#/' + k, class: k === active ? 'active' : '' }, title)));
  cl.textContent = state.cluster ? state.cluster.name + ' · ' + state.cluster.role : '';
  me.replaceChildren(h('span', { id: 'whoami' }, state.me.user + ' (' + state.me.role + ')'), h('button', { class: 'secondary', id: 'logout', onclick: logout }, 'Sign out'));
}

let generation = 0;

export async function route() {
  const gen = ++generation;
  const main = document.getElementById('main');
  let name = location.hash.replace(/^#\/?/, '') || 'fleet';
  if (!state.me && name !== 'login') {
    const w = await api('GET', '/v1/auth/whoami');
    if (w.status === 200) state.me = { user: w.data.user, role: w.data.role };
    else name = 'login';
  }
  if (name === 'login') { state.cluster = null; chrome(); main.replaceChildren(...loginPage()); document.getElementById('username').focus(); return; }
  {
    const c = await api('GET', '/v1/cluster');
    if (c.status !== 200) { main.replaceChildren(h('p', { class: 'error' }, errorText(c))); return; }
    state.cluster = c.data;
  }
  const page = pages[name] || pages.fleet;
  chrome(pages[name] ? name : 'fleet');
  let kids;
  try { kids = await page[1](); } catch (err) { kids = [h('p', { class: 'error' }, String(err))]; }
  if (gen !== generation) return; // a newer navigation won
  main.replaceChildren(...kids.flat().filter(Boolean));
  main.dataset.page = name;
  performance.mark('palisade-page-' + name);
}

window.addEventListener('hashchange', route);
route();
