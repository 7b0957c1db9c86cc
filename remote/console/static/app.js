// The Palisade console. Every element is built with h(); text from the API
// is only ever placed with text nodes, never parsed as markup.

const CSRF_COOKIE = 'palisade_csrf';
const CSRF_HEADER = 'X-Palisade-CSRF';

export const state = { me: null, cluster: null, drill: null, primary: null };

// scope is the API prefix of the cluster being looked at: empty for this
// controller, the primary's read-only drill-in route for a remote.
export function scope(name = state.drill) {
  return name ? '/v1/fed/clusters/' + encodeURIComponent(name) + '/api' : '';
}

// get reads from the cluster being looked at.
export function get(path) { return api('GET', scope() + path); }

// link is the console address of a page of the cluster being looked at.
export function link(page, ...args) {
  const pre = state.drill ? '#/c/' + encodeURIComponent(state.drill) + '/' : '#/';
  return pre + [page, ...args.map(encodeURIComponent)].join('/');
}

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
  // A lapsed session signs out; a remote's answer through the drill-in
  // route says nothing about this controller's session.
  if (resp.status === 401 && path !== '/v1/auth/login' && !path.startsWith('/v1/fed/clusters/')) { state.me = null; location.hash = '#/login'; }
  return { status: resp.status, data };
}

export function errorText(r) {
  const d = r.data || {};
  let msg = d.message || ('HTTP ' + r.status);
  if (d.field) msg = d.field + ': ' + msg;
  return msg;
}

export function items(r) {
  if (!r || r.status !== 200 || r.data == null) return [];
  return Array.isArray(r.data) ? r.data : (r.data.items || []);
}

// can says what the signed-in user may do here; nothing is writable while
// looking at a remote through the primary.
export const can = {
  write: () => !state.drill && ['admin', 'fedAdmin'].includes(state.me?.role),
  fedRead: () => ['admin', 'fedAdmin', 'fedReader'].includes(state.me?.role),
  fedWrite: () => !state.drill && ['admin', 'fedAdmin'].includes(state.me?.role),
};

export function ago(t) {
  if (!t || t.startsWith('0001-')) return '—';
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  if (s < 0) return 'now';
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}

export function labels(m) {
  return Object.entries(m || {}).map(([k, v]) => h('span', { class: 'pill' }, k + '=' + v));
}

export function yesNo(b, good = true) {
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
  const build = (r) => {
    const tr = h('tr', null, cols.map((c) => {
      const v = c.f(r);
      return h('td', null, v instanceof Node || Array.isArray(v) ? v : cellText(v));
    }));
    if (opts.row) opts.row(tr, r);
    return tr;
  };
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

export function notAvailable(what, r) {
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

// drillLink opens a remote's own pages through the primary.
function drillLink(name) {
  return h('a', { href: '#/c/' + encodeURIComponent(name) + '/dashboard', class: 'drill', title: 'Open ' + name + "'s pages (read-only)" }, name);
}

async function fleetPage() {
  const out = [h('h1', null, 'Fleet')];
  const cl = state.cluster;
  if (!state.drill && cl.role === 'primary' && can.fedRead()) {
    const st = await api('GET', '/v1/fed/status');
    if (st.status !== 200) return [...out, notAvailable('Federation status', st)];
    const s = st.data;
    const rows = [{ self: true, name: s.name, labels: {}, connected: true, ackedRevision: s.revision, lag: 0, lastContact: new Date().toISOString(), healthy: true }, ...(s.remotes || [])];
    out.push(h('p', { class: 'muted' }, (s.remotes || []).length + ' remote(s); federated revision ' + s.revision + '. Open a remote by its name to see its own pages.'));
    out.push(table([
      { h: 'Cluster', f: (r) => r.self ? h('b', null, r.name) : drillLink(r.name) },
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
  out[0] = h('h1', null, state.drill ? 'Cluster ' + cl.name : 'Fleet');
  out.push(h('p', null, 'Cluster ', h('b', null, cl.name), ' is ', cl.role, '; revision ' + cl.revision + '.'));
  if (cl.role === 'remote') {
    const link = await get('/v1/fed/link');
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

// bar is a progress bar from 0 to 1 (its width set through the CSSOM,
// which the style policy allows, never through a style attribute).
export function bar(frac, title) {
  const fill = h('span');
  fill.style.width = Math.round(Math.max(0, Math.min(1, frac)) * 100) + '%';
  return h('div', { class: 'bar', title }, fill);
}

// confirmButton asks again in place (no modal dialog) before acting.
function confirmButton(label, question, attrs, action) {
  const wrap = h('span', { class: 'confirm' });
  const ask = () => wrap.replaceChildren(h('span', { class: 'warn' }, question + ' '),
    h('button', { class: 'danger', id: attrs.id ? attrs.id + '-confirm' : null, onclick: action }, 'Yes, ' + label.toLowerCase()),
    h('button', { class: 'secondary', onclick: reset }, 'Cancel'));
  const reset = () => wrap.replaceChildren(h('button', { ...attrs, onclick: ask }, label));
  reset();
  return wrap;
}

function rolloutCard(s, remotes, history, act) {
  const finished = s.phase === 'done' || s.phase === 'rolled-back';
  const canaries = new Set(s.canaries || []);
  const target = s.phase === 'rolled-back' ? s.rollbackRevision : s.revision;
  const phaseClass = s.phase === 'rolled-back' ? 'bad' : s.paused ? 'warn' : finished ? 'ok' : '';
  const wave = (r) => canaries.has(r.name) ? 1 : 2;
  const progress = (r) => {
    const applied = r.ackedRevision || 0;
    if (applied >= target) return h('span', { class: 'ok' }, 'applied');
    if (!r.connected) return h('span', { class: 'bad' }, 'not connected');
    if (wave(r) === 2 && s.phase === 'canary') return h('span', { class: 'muted' }, s.paused ? 'held (paused)' : 'held until the canaries are healthy');
    return h('span', { class: 'warn' }, 'pending');
  };
  const rows = [...remotes].sort((a, b) => wave(a) - wave(b) || a.name.localeCompare(b.name));
  const done = rows.filter((r) => (r.ackedRevision || 0) >= target).length;
  const prev = history.filter((x) => x.revision < s.revision).sort((a, b) => b.revision - a.revision)[0];
  return h('div', { class: 'card', id: 'rollout-card', 'data-phase': s.phase, 'data-paused': String(!!s.paused) },
    h('div', { class: 'row' }, h('span', null, 'Rollout ', h('b', null, s.id), ' of revision ' + s.revision),
      h('span', { class: 'badge ' + phaseClass, id: 'rollout-phase' }, s.phase + (s.paused ? ' · paused' : '')),
      h('span', { class: 'muted' }, 'started ' + ago(s.startedAt) + ', changed ' + ago(s.updatedAt))),
    s.message && h('div', { class: 'muted', id: 'rollout-message' }, s.message),
    h('div', { class: 'waves' },
      h('div', { class: 'wave' + (s.phase === 'canary' ? ' current' : '') }, h('b', null, 'Wave 1 · canaries'), ' ', (s.canaries || []).map((c) => h('span', { class: 'pill' }, c))),
      h('div', { class: 'wave' + (s.phase === 'rest' ? ' current' : '') }, h('b', null, 'Wave 2 · every other remote'), ' ', String(Math.max(0, remotes.length - canaries.size)) + ' remote(s)')),
    bar(remotes.length ? done / remotes.length : 1, done + ' of ' + remotes.length + ' applied'),
    h('div', { class: 'muted' }, done + ' of ' + remotes.length + ' remote(s) applied revision ' + target),
    can.fedWrite() && !finished && h('div', { class: 'row' },
      h('button', { id: 'pause', disabled: s.paused, onclick: act('/v1/fed/rollout/pause') }, 'Pause'),
      h('button', { id: 'resume', class: 'secondary', disabled: !s.paused, onclick: act('/v1/fed/rollout/resume') }, 'Resume'),
      prev && confirmButton('Roll back', 'Restore the federated policy of revision ' + prev.revision + '?', { id: 'rollback', class: 'secondary' },
        act('/v1/fed/rollback', { to: prev.revision }))),
    table([
      { h: 'Remote', f: (r) => r.name },
      { h: 'Wave', f: (r) => wave(r) === 1 ? 'canary' : '2' },
      { h: 'Applied revision', f: (r) => String(r.ackedRevision || 0) },
      { h: 'Progress', f: progress },
      { h: 'Health', f: (r) => !r.connected ? h('span', { class: 'muted' }, 'unknown (no link)') : r.healthy ? h('span', { class: 'ok' }, 'healthy') : h('span', { class: 'bad' }, 'unhealthy') },
    ], rows, { empty: 'No remotes.' }));
}

// rolloutKey is what the rollout card shows, to redraw it only on change.
function rolloutKey(st) {
  const r = st.rollout;
  return JSON.stringify([r?.id, r?.phase, r?.paused, r?.message, (st.remotes || []).map((x) => [x.name, x.ackedRevision, x.connected, x.healthy])]);
}

async function rolloutsPage(args, gen) {
  const out = [h('h1', null, 'Rollouts')];
  if (state.drill || state.cluster.role !== 'primary') return [...out, h('p', { class: 'muted' }, 'Rollouts are run by a primary; this cluster is ' + state.cluster.role + '.')];
  const [st, hist] = await Promise.all([api('GET', '/v1/fed/status'), api('GET', '/v1/fed/history')]);
  const msg = h('p', { class: 'error', id: 'rollout-msg' });
  const act = (path, body) => async () => {
    msg.textContent = '';
    const r = await api('POST', path, body);
    if (r.status >= 300) msg.textContent = errorText(r); else route();
  };
  const history = items(hist);
  out.push(h('h2', null, 'Current rollout'));
  if (st.status !== 200) out.push(notAvailable('Federation status', st));
  else if (!st.data.rollout) out.push(h('p', { class: 'muted', id: 'no-rollout' }, 'No rollout. Apply federated policy with canary remotes to start one.'));
  else out.push(rolloutCard(st.data.rollout, st.data.remotes || [], history, act));
  // While a rollout runs, its progress is followed: the page is redrawn
  // when the rollout or a remote's applied revision changes, unless a
  // question is open.
  if (st.status === 200 && st.data.rollout) {
    let key = rolloutKey(st.data), timer = 0;
    const poll = async () => {
      if (!current(gen)) return;
      const again = await api('GET', '/v1/fed/status');
      if (!current(gen)) return;
      if (again.status === 200 && rolloutKey(again.data) !== key && !document.querySelector('#main .confirm .danger')) { key = rolloutKey(again.data); route(); return; }
      timer = setTimeout(poll, 2000);
    };
    timer = setTimeout(poll, 2000);
    onLeave(() => clearTimeout(timer));
  }
  out.push(msg, h('h2', null, 'History'));
  if (hist.status !== 200) return [...out, notAvailable('History', hist)];
  const cols = [
    { h: 'Revision', f: (r) => String(r.revision) },
    { h: 'When', f: (r) => ago(r.at) },
    { h: 'User', f: (r) => r.user || '' },
    { h: 'Objects', f: (r) => String(r.objects) },
  ];
  const newest = Math.max(0, ...history.map((x) => x.revision));
  if (can.fedWrite()) cols.push({ h: '', f: (r) => r.revision === newest ? h('span', { class: 'muted' }, 'in force') : confirmButton('Roll back', 'Restore revision ' + r.revision + '?', { class: 'secondary', 'data-revision': r.revision }, act('/v1/fed/rollback', { to: r.revision })) });
  out.push(table(cols, history, { empty: 'No federated policy recorded yet.' }));
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
  const primary = !state.drill && state.cluster.role === 'primary';
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
    const [g, r, f] = await Promise.all([get('/v1/groups?limit=1000'), get('/v1/rules?limit=1000'),
      primary && !state.drill && can.fedRead() ? api('GET', '/v1/fed/policy') : Promise.resolve(null)]);
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

async function agentsPage() {
  const r = await get('/v1/agents');
  const out = [h('h1', null, 'Agents')];
  if (r.status !== 200) return [...out, notAvailable('Agents', r)];
  const rows = items(r);
  out.push(h('p', { class: 'muted' }, rows.length + ' node(s), ' + rows.filter((n) => n.connected).length + ' connected'));
  out.push(table([
    { h: 'Node', f: (n) => n.name },
    { h: 'Connected', f: (n) => yesNo(!!n.connected) },
    { h: 'Addresses', f: (n) => (n.addresses || []).join(', ') },
    { h: 'Workloads', f: (n) => (n.workloads || []).map((w) => h('span', { class: 'pill' }, (w.namespace ? w.namespace + '/' : '') + (w.name || w.id || ''))) },
    { h: 'Updated', f: (n) => ago(n.updated) },
  ], rows, { filter: true, empty: 'No agent has enrolled.' }));
  return out;
}

// lazy loads a page kept in its own module, so the first page stays small.
const lazy = (file) => async (args, gen) => (await import('/ui/' + file)).page(args, gen);

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
  const primary = !state.drill && state.cluster.role === 'primary' && can.fedRead();
  const [g, adm, res, aev, fl, fed] = await Promise.all([get('/v1/groups?limit=1000'), get('/v1/admission/status'),
    get('/v1/scan/results?limit=1000'), get('/v1/admission/events?limit=1000'), get('/v1/flows?limit=1000'),
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
  rollouts: ['Rollouts', rolloutsPage, { primaryOnly: true }],
  policy: ['Policy', policyPage],
  network: ['Network', lazy('network.js')],
  events: ['Events', lazy('events.js')],
  registries: ['Registries', lazy('registries.js')],
  agents: ['Agents', agentsPage],
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
  const ctx = document.getElementById('context');
  if (!state.me) { nav.replaceChildren(); me.replaceChildren(); cl.textContent = ''; ctx.replaceChildren(); ctx.hidden = true; return; }
  const shown = Object.entries(pages).filter(([, [, , o]]) => !(o?.primaryOnly && (state.drill || state.cluster?.role !== 'primary' || !can.fedRead())));
  nav.replaceChildren(...shown.map(([k, [title]]) => h('a', { href: link(k), class: k === active ? 'active' : '' }, title)));
  cl.textContent = state.cluster ? state.cluster.name + ' · ' + state.cluster.role : '';
  me.replaceChildren(h('span', { id: 'whoami' }, state.me.user + ' (' + state.me.role + ')'), h('button', { class: 'secondary', id: 'logout', onclick: logout }, 'Sign out'));
  document.body.classList.toggle('drilled', !!state.drill);
  ctx.hidden = !state.drill;
  if (state.drill) {
    ctx.replaceChildren(h('span', { class: 'lens' }, 'Remote cluster'), h('b', { id: 'drill-name' }, state.drill),
      h('span', null, ' seen through primary ' + (state.primary?.name || '') + ' · read-only'),
      h('a', { href: '#/fleet', id: 'drill-exit' }, '← back to the fleet'));
  } else ctx.replaceChildren();
}

let generation = 0;
let leaving = [];

// onLeave registers what to stop (timers, maps) when the page is left.
export function onLeave(fn) { leaving.push(fn); }

// parseHash splits "#/c/NAME/page/arg..." or "#/page/arg...".
export function parseHash(hash) {
  let parts = hash.replace(/^#\/?/, '').split('/').filter((x) => x !== '');
  let drill = null;
  if (parts[0] === 'c' && parts.length >= 2) { drill = decodeURIComponent(parts[1]); parts = parts.slice(2); }
  const [name = drill ? 'dashboard' : 'fleet', ...args] = parts;
  let decoded;
  try { decoded = args.map(decodeURIComponent); } catch { decoded = args; }
  return { drill, name, args: decoded };
}

export async function route() {
  const gen = ++generation;
  for (const fn of leaving.splice(0)) { try { fn(); } catch { /* page already gone */ } }
  const main = document.getElementById('main');
  let { drill, name, args } = parseHash(location.hash);
  if (!state.me && name !== 'login') {
    const w = await api('GET', '/v1/auth/whoami');
    if (w.status === 200) state.me = { user: w.data.user, role: w.data.role };
    else name = 'login';
  }
  if (name === 'login') { state.cluster = null; state.drill = null; chrome(); main.replaceChildren(...loginPage()); document.getElementById('username').focus(); return; }
  {
    const c = await api('GET', '/v1/cluster');
    if (c.status !== 200) { main.replaceChildren(h('p', { class: 'error' }, errorText(c))); return; }
    state.primary = c.data;
    state.cluster = c.data;
    state.drill = null;
  }
  if (drill) {
    if (state.primary.role !== 'primary' || !can.fedRead()) {
      chrome(); main.replaceChildren(h('p', { class: 'error' }, 'Only a primary shows remote clusters, to a role that may read the federation.')); return;
    }
    state.drill = drill;
    const c = await get('/v1/cluster');
    if (gen !== generation) return;
    if (c.status !== 200) {
      chrome(name);
      main.replaceChildren(h('h1', null, 'Cluster ' + drill), h('p', { class: 'error', id: 'drill-error' }, drill + ': ' + errorText(c)));
      main.dataset.page = name;
      return;
    }
    state.cluster = c.data;
  }
  const page = pages[name] || pages.fleet;
  chrome(pages[name] ? name : 'fleet');
  let kids;
  try { kids = await page[1](args, gen); } catch (err) { kids = [h('p', { class: 'error' }, String(err))]; }
  if (gen !== generation) return; // a newer navigation won
  main.replaceChildren(...kids.flat().filter(Boolean));
  main.dataset.page = name;
  main.dataset.cluster = state.cluster.name;
  performance.mark('palisade-page-' + name);
}

// current tells a page whether it is still on screen.
export function current(gen) { return gen === generation; }

window.addEventListener('hashchange', route);
route();
