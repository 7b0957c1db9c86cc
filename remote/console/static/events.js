// The security events page: network and process events from the agents
// and admission decisions in one timeline, filtered by kind, group or
// namespace, verdict and age, and kept up to date by polling the APIs.

import { h, get, items, ago, notAvailable, onLeave, current, state } from '/ui/app.js';

const POLL_MS = 3000;
const KEEP = 2000;

const SINCE = [['15m', 'last 15 min', 15 * 60e3], ['1h', 'last hour', 3600e3], ['24h', 'last 24 h', 86400e3], ['7d', 'last 7 days', 7 * 86400e3], ['all', 'any time', 0]];

// fromSecurity and fromAdmission turn API records into timeline entries.
function fromSecurity(e, groupsOf) {
  const verdict = e.action === 'deny' ? 'denied' : 'alerted';
  const net = e.kind?.startsWith('network') || e.port;
  const what = net
    ? [h('b', null, e.client || '?'), ' → ', h('b', null, e.server || '?'), e.port ? ' :' + e.port : '', e.proto === 17 ? '/udp' : '']
    : [h('b', null, e.workload || '?'), e.path ? [' ran ', h('code', null, e.path)] : ''];
  const groups = [...groupsOf(e.client), ...groupsOf(e.server), ...groupsOf(e.workload)];
  return {
    key: 's:' + (e.id || e.time + e.kind + e.client + e.server), time: e.time, source: net ? 'network' : (e.kind || 'process'),
    kind: e.kind || 'event', verdict, what, groups,
    text: [e.kind, e.client, e.server, e.workload, e.node, e.path, e.message, ...groups].filter(Boolean).join(' ').toLowerCase(),
    detail: [e.kind, e.mode && 'mode ' + e.mode, e.node && 'node ' + e.node, e.message].filter(Boolean).join(' · '),
  };
}

function fromAdmission(e) {
  const verdict = !e.allowed ? 'denied' : e.wouldDeny ? 'alerted' : 'allowed';
  const obj = (e.namespace ? e.namespace + '/' : '') + (e.name || '?');
  return {
    key: 'a:' + (e.uid || '') + e.time + e.replica + obj, time: e.time, source: 'admission', kind: 'admission', verdict,
    what: [(e.operation || '').toLowerCase() + ' ', e.kind || 'object', ' ', h('b', null, obj), e.images?.length ? [' · ', e.images.map((i) => h('code', null, i + ' '))] : ''],
    groups: [],
    text: ['admission', e.kind, e.namespace, e.name, e.rule, e.user, e.message, ...(e.images || [])].filter(Boolean).join(' ').toLowerCase(),
    detail: [e.rule && 'rule ' + e.rule, e.mode && 'mode ' + e.mode, e.wouldDeny && 'would deny (monitor)', e.user && 'by ' + e.user, e.message, e.dryRun && 'dry run'].filter(Boolean).join(' · '),
  };
}

export async function page(args, gen) {
  const out = [h('h1', null, 'Security events and admission decisions' + (state.drill ? ' of ' + state.drill : ''))];
  const [ev, adm, fl] = await Promise.all([get('/v1/events?limit=1000'), get('/v1/admission/events?limit=1000'), get('/v1/flows?limit=1000')]);
  const sources = [];
  if (ev.status !== 200) out.push(notAvailable('Security events', ev)); else sources.push('security');
  if (adm.status !== 200) out.push(notAvailable('Admission decisions', adm)); else sources.push('admission');
  if (!sources.length) return out;

  // Workloads' groups, from the flows, so events can be found by group.
  const wg = new Map();
  for (const f of items(fl)) {
    if (f.client) wg.set(f.client, f.clientGroups || []);
    if (f.server) wg.set(f.server, f.serverGroups || []);
  }
  const groupsOf = (w) => (w && wg.get(w)) || [];

  const byKey = new Map();
  let entries = [];
  const add = (list, fresh) => {
    let n = 0;
    for (const x of list) {
      if (byKey.has(x.key)) continue;
      x.fresh = fresh; byKey.set(x.key, x); entries.push(x); n++;
    }
    if (n) {
      entries.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
      if (entries.length > KEEP) { for (const x of entries.splice(KEEP)) byKey.delete(x.key); }
    }
    return n;
  };
  add(items(ev).map((e) => fromSecurity(e, groupsOf)), false);
  add(items(adm).map(fromAdmission), false);

  // Filters.
  const kind = h('select', { id: 'ev-kind', 'aria-label': 'kind' });
  const text = h('input', { id: 'ev-text', type: 'search', placeholder: 'group, namespace or workload', size: 28, 'aria-label': 'group or namespace' });
  const verdict = h('select', { id: 'ev-verdict', 'aria-label': 'verdict' },
    [['', 'any verdict'], ['denied', 'denied'], ['alerted', 'alerted'], ['allowed', 'allowed']].map(([v, l]) => h('option', { value: v }, l)));
  const since = h('select', { id: 'ev-since', 'aria-label': 'since' }, SINCE.map(([v, l]) => h('option', { value: v, selected: v === '24h' }, l)));
  const live = h('input', { type: 'checkbox', id: 'ev-live', checked: true });
  const liveText = h('span', { class: 'live on', id: 'ev-live-status' }, 'live');
  const counts = h('div', { class: 'counts', id: 'ev-counts' });
  const list = h('ol', { class: 'timeline', id: 'ev-list' });
  const shownInfo = h('p', { class: 'muted', id: 'ev-shown' });

  const kinds = () => {
    const have = [...new Set(entries.map((x) => x.kind))].sort();
    const cur = kind.value;
    kind.replaceChildren(h('option', { value: '' }, 'any kind'), ...have.map((k) => h('option', { value: k, selected: k === cur }, k)));
  };

  const render = () => {
    const q = text.value.trim().toLowerCase();
    const lim = SINCE.find(([v]) => v === since.value)?.[2] || 0;
    const from = lim ? Date.now() - lim : 0;
    const sel = entries.filter((x) => (!kind.value || x.kind === kind.value) && (!verdict.value || x.verdict === verdict.value) &&
      (!q || x.text.includes(q)) && (!from || new Date(x.time).getTime() >= from));
    const c = { denied: 0, alerted: 0, allowed: 0 };
    for (const x of sel) c[x.verdict]++;
    counts.replaceChildren(...Object.entries(c).map(([k, n]) => h('div', { class: 'count' }, h('b', { class: k === 'denied' ? 'bad' : k === 'alerted' ? 'warn' : 'ok' }, String(n)), k)));
    const shown = sel.slice(0, 500);
    list.replaceChildren(...shown.map((x) => h('li', { class: x.fresh ? 'fresh' : null, 'data-verdict': x.verdict, 'data-source': x.source },
      h('div', { class: 'when', title: x.time }, new Date(x.time).toLocaleString(), h('br'), ago(x.time)),
      h('div', null, h('span', { class: 'verdict ' + x.verdict }, x.verdict)),
      h('div', { class: 'what' }, h('span', { class: 'src' }, x.source), x.what,
        x.groups.length ? h('div', null, [...new Set(x.groups)].map((g) => h('span', { class: 'pill' }, g))) : null,
        x.detail ? h('div', { class: 'detail' }, x.detail) : null))));
    if (!shown.length) list.append(h('li', { class: 'muted' }, h('span'), h('span'), h('span', null, entries.length ? 'No event matches the filters.' : 'No events yet.')));
    shownInfo.textContent = sel.length > shown.length ? 'Showing the newest 500 of ' + sel.length + ' matching.' : sel.length + ' of ' + entries.length + ' event(s) match.';
    list.dataset.count = String(sel.length);
    for (const x of entries) x.fresh = false;
  };
  for (const el of [kind, verdict, since]) el.addEventListener('change', render);
  text.addEventListener('input', render);
  kinds();
  render();

  // Live updates: poll both listings; the newest come first, so a short
  // page is enough, and admission events are asked only since the newest.
  let timer = 0, busy = false;
  const poll = async () => {
    if (!current(gen)) return;
    if (busy || !live.checked) { timer = setTimeout(poll, POLL_MS); return; }
    busy = true;
    const newestAdm = entries.find((x) => x.source === 'admission')?.time;
    const [e2, a2] = await Promise.all([
      sources.includes('security') ? get('/v1/events?limit=200') : null,
      sources.includes('admission') ? get('/v1/admission/events?limit=200' + (newestAdm ? '&since=' + encodeURIComponent(newestAdm) : '')) : null]);
    busy = false;
    if (!current(gen)) return;
    const n = add(items(e2).map((e) => fromSecurity(e, groupsOf)), true) + add(items(a2).map(fromAdmission), true);
    liveText.textContent = 'live · checked ' + new Date().toLocaleTimeString() + (n ? ' · ' + n + ' new' : '');
    if (n) { kinds(); render(); }
    timer = setTimeout(poll, POLL_MS);
  };
  timer = setTimeout(poll, POLL_MS);
  live.addEventListener('change', () => { liveText.classList.toggle('on', live.checked); liveText.textContent = live.checked ? 'live' : 'paused'; });
  onLeave(() => clearTimeout(timer));

  out.push(h('div', { class: 'filters' }, h('label', null, 'Kind', kind), h('label', null, 'Group or namespace', text),
    h('label', null, 'Verdict', verdict), h('label', null, 'Since', since), h('label', null, live, liveText)),
  counts, shownInfo, list);
  return out;
}
