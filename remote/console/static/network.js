// The network activity page: the map of groups and flows, a side panel
// with the flows of the clicked edge or group, and a list of the
// connections with violations.

import { h, get, items, ago, notAvailable, table, onLeave, state } from '/ui/app.js';
import { graphFromFlows, NetMap } from '/ui/netmap.js';

const PAGE = 1000; // the flow listing's largest page

// allFlows reads every page of the flow listing: the first page says how
// many there are, the others are read at once.
async function allFlows() {
  const first = await get('/v1/flows?limit=' + PAGE + '&offset=0');
  if (first.status !== 200) return { r: first, flows: [] };
  const flows = items(first);
  const total = Math.min(first.data?.total ?? flows.length, 100 * PAGE);
  const rest = [];
  for (let offset = PAGE; offset < total && flows.length === PAGE; offset += PAGE) rest.push(get('/v1/flows?limit=' + PAGE + '&offset=' + offset));
  for (const r of await Promise.all(rest)) if (r.status === 200) flows.push(...items(r));
  return { r: first, flows };
}

function verdictOf(f, isViolation) {
  if ((f.dropped || 0) > 0) return ['denied', 'blocked ' + f.dropped];
  if (isViolation(f)) return ['alerted', 'violation'];
  return ['allowed', 'allowed'];
}

function flowItem(f, isViolation) {
  const [cls, word] = verdictOf(f, isViolation);
  return h('div', { class: 'flow' },
    h('div', null, h('span', { class: 'verdict ' + cls }, word), ' ', h('b', null, f.client), ' → ', h('b', null, f.server)),
    h('div', { class: 'muted' }, (f.proto === 17 ? 'udp' : 'tcp') + '/' + f.port + (f.app ? ' · ' + f.app : '') + ' · ' + (f.flows || 0) + ' flow(s) · mode ' + (f.mode || '—') +
      ' · node ' + (f.node || '—') + ' · last seen ' + ago(f.lastSeen)));
}

function edgePanel(g, e, isViolation) {
  const from = g.nodes[e.s].name, to = g.nodes[e.t].name;
  const recs = [...e.records].sort((a, b) => (b.dropped || 0) + (b.violations || 0) - (a.dropped || 0) - (a.violations || 0));
  return [h('h3', null, from, ' → ', to),
    h('div', { class: 'muted' }, e.records.length + ' flow record(s), ' + e.count + ' connection(s); ports ' + e.ports.join(', ') +
      (e.apps.length ? '; apps ' + e.apps.join(', ') : '')),
    e.violation && h('p', { class: 'bad' }, 'Policy violations on this connection.'),
    h('div', { id: 'edge-flows' }, recs.map((f) => flowItem(f, isViolation)))];
}

function nodePanel(g, p) {
  const i = g.index.get(p.name);
  const out = g.edges.filter((e) => e.s === i), inn = g.edges.filter((e) => e.t === i);
  const line = (e, other) => h('div', { class: 'flow' + (e.violation ? ' bad' : '') }, other, ' · ', e.ports.join(', '), e.apps.length ? ' · ' + e.apps.join(', ') : '', ' · ' + e.count + ' connection(s)');
  return [h('h3', null, p.name),
    h('div', { class: 'muted' }, out.length + ' outgoing, ' + inn.length + ' incoming connection(s)'),
    h('h4', null, 'Talks to'), out.length ? out.map((e) => line(e, '→ ' + g.nodes[e.t].name)) : h('p', { class: 'muted' }, 'Nothing.'),
    h('h4', null, 'Is reached by'), inn.length ? inn.map((e) => line(e, '← ' + g.nodes[e.s].name)) : h('p', { class: 'muted' }, 'Nothing.')];
}

export async function page() {
  const out = [h('h1', null, 'Network activity' + (state.drill ? ' of ' + state.drill : ''))];
  const [{ r, flows }, ev] = await Promise.all([allFlows(), get('/v1/events?limit=1000')]);
  if (r.status !== 200) return [...out, notAvailable('Flows', r)];
  performance.mark('palisade-netmap-flows-read');
  // A flow is a violation when it was dropped or when the agents reported
  // a violation event for it (Monitor or Protect); flows not allowed in
  // Discover are learned, not violations.
  const reported = new Set(items(ev).filter((e) => (e.kind || '').startsWith('network') && e.mode !== 'discover').map((e) => e.client + '|' + e.server + '|' + (e.port || 0)));
  const isViolation = (f) => (f.dropped || 0) > 0 || reported.has(f.client + '|' + f.server + '|' + (f.port || 0));
  const g = graphFromFlows(flows, isViolation);
  performance.mark('palisade-netmap-graph-built');
  const bad = g.edges.filter((e) => e.violation);
  const info = h('p', { class: 'muted', id: 'netmap-info' }, g.nodes.length + ' groups, ' + g.edges.length + ' connections, ' + bad.length + ' with violations (red) from ' + flows.length + ' flow record(s)');
  const canvas = h('canvas', { id: 'netmap', role: 'img', 'aria-label': 'network activity map' });
  const panel = h('div', { class: 'panel', id: 'netmap-panel' }, h('p', { class: 'muted' }, 'Click a connection (edge) to see its flows, or a group (node) to see what it talks to. Drag to pan, wheel to zoom.'));
  const find = h('input', { type: 'search', id: 'netmap-find', placeholder: 'Find a group…', list: 'netmap-names', size: 28 });
  const names = h('datalist', { id: 'netmap-names' });
  const only = h('input', { type: 'checkbox', id: 'netmap-only' });
  const fit = h('button', { class: 'secondary', id: 'netmap-fit' }, 'Fit');
  const legend = h('span', { class: 'legend' }, h('span', null, h('i'), 'allowed'), h('span', null, h('i', { class: 'red' }), 'blocked, or a violation in Monitor or Protect'));
  out.push(info, h('div', { class: 'filters' }, find, names, h('label', null, only, 'only violations'), fit, legend),
    h('div', { class: 'split' }, canvas, panel));
  if (bad.length) {
    out.push(h('h2', null, 'Connections with violations'));
    out.push(table([
      { h: 'From', f: (e) => g.nodes[e.s].name },
      { h: 'To', f: (e) => g.nodes[e.t].name },
      { h: 'Ports', f: (e) => e.ports.join(', ') },
      { h: 'Apps', f: (e) => e.apps.join(', ') },
      { h: 'Blocked', f: (e) => String(e.records.reduce((n, f) => n + (f.dropped || 0), 0)) },
      { h: 'Violating flows', f: (e) => String(e.records.filter(isViolation).length) },
    ], bad, { row: (tr, e) => { tr.classList.add('clickable'); tr.addEventListener('click', () => map?.select({ edge: e })); } }));
  }
  let map = null;
  // The map is built once the canvas is in the page and has its size.
  requestAnimationFrame(() => {
    if (!canvas.isConnected) return;
    map = new NetMap(canvas, g, {
      onSelect: (s) => {
        if (!s) panel.replaceChildren(h('p', { class: 'muted' }, 'Nothing selected.'));
        else panel.replaceChildren(...(s.edge ? edgePanel(g, s.edge, isViolation) : nodePanel(g, s.node)).filter(Boolean));
        panel.dataset.selected = s ? (s.edge ? g.nodes[s.edge.s].name + '>' + g.nodes[s.edge.t].name : s.node.name) : '';
      },
    });
    canvas.netmap = map;
    onLeave(() => map.destroy());
    names.replaceChildren(...g.nodes.slice(0, 5000).map((p) => h('option', { value: p.name })));
  });
  find.addEventListener('change', () => { if (map && !map.focus(find.value.trim())) find.setCustomValidity('no such group'); else find.setCustomValidity(''); });
  only.addEventListener('change', () => { if (map) { map.onlyViolations = only.checked; map.draw(); } });
  fit.addEventListener('click', () => map?.reset());
  return out;
}
