// The registries page: the registries this cluster scans with the status
// of their last pass, the scanned images with vulnerability counts by
// severity, and one image's report: packages, vulnerabilities with their
// fixed versions, and secrets by file and rule.

import { h, get, items, ago, notAvailable, errorText, table, link, state, yesNo } from '/ui/app.js';

const SEVERITIES = ['critical', 'high', 'medium', 'low'];

function sevChip(sev, n, fix) {
  const s = (sev || 'unknown').toLowerCase();
  return h('span', { class: 'sev ' + (n === 0 ? 'zero' : s), title: n + ' ' + s + (fix ? ', ' + fix + ' with a fix' : '') }, String(n));
}

function counts(r) {
  return h('span', { class: 'sevs' }, SEVERITIES.map((s) => sevChip(s, r[s] || 0, r[s + 'WithFix'])));
}

const rank = (r) => (r.critical || 0) * 1e6 + (r.high || 0) * 1e4 + (r.medium || 0) * 100 + (r.low || 0);
const sevRank = { CRITICAL: 4, HIGH: 3, MEDIUM: 2, LOW: 1 };
const short = (d) => (d || '').replace(/^sha256:/, '').slice(0, 12);

function registryTable(regs) {
  return table([
    { h: 'Registry', f: (r) => h('b', null, r.name) },
    { h: 'URL', f: (r) => h('code', null, r.url) },
    { h: 'Scope', f: (r) => r.federated ? h('span', { class: 'pill' }, 'federated') : 'this cluster' },
    { h: 'Every', f: (r) => r.interval || '' },
    { h: 'Last pass', f: (r) => !r.status ? h('span', { class: 'muted' }, 'not yet') : r.status.finished ? 'finished ' + ago(r.status.finished) : h('span', { class: 'warn' }, 'running since ' + ago(r.status.started)) },
    { h: 'Images', f: (r) => r.status ? r.status.images + ' (' + r.status.scanned + ' scanned, ' + r.status.skipped + ' known, ' + r.status.failed + ' failed)' : '' },
    { h: 'Error', f: (r) => r.status?.error ? h('span', { class: 'bad' }, r.status.error) : '' },
  ], regs, { empty: 'No registry is configured.' });
}

async function detail(r) {
  const out = [h('h2', { id: 'image-title' }, r.ref || r.digest)];
  out.push(h('dl', { class: 'kv' },
    h('dt', null, 'Digest'), h('dd', { class: 'mono' }, r.digest),
    r.indexDigest && [h('dt', null, 'Index'), h('dd', { class: 'mono' }, r.indexDigest)],
    h('dt', null, 'Source'), h('dd', null, r.source === 'federated' ? 'scanned by the primary' : 'scanned by this cluster'),
    h('dt', null, 'Scanned'), h('dd', null, ago(r.scannedAt)),
    h('dt', null, 'User'), h('dd', null, r.user || 'unknown'),
    h('dt', null, 'Signed'), h('dd', null, yesNo(!!r.signed)),
    h('dt', null, 'Vulnerabilities'), h('dd', { id: 'image-counts' }, counts(r), ' critical, high, medium, low')));
  const rep = await get('/v1/scan/reports/' + encodeURIComponent(r.digest));
  if (rep.status !== 200) {
    out.push(h('p', { class: 'muted', id: 'report-missing' }, rep.status === 404 ? errorText(rep) : 'Full report: ' + errorText(rep)));
    if (r.cves?.length) out.push(h('h3', null, 'Advisories'), h('p', null, r.cves.map((c) => h('span', { class: 'pill' }, c))));
    return out;
  }
  const d = rep.data;
  const vulns = [...(d.vulnerabilities || [])].sort((a, b) => (sevRank[b.severity] || 0) - (sevRank[a.severity] || 0) || (b.cvssScore || 0) - (a.cvssScore || 0));
  const pkgs = d.packages || [];
  const secrets = d.secrets || [];
  const by = { critical: 0, high: 0, medium: 0, low: 0, unknown: 0 };
  for (const v of vulns) { const k = (v.severity || 'unknown').toLowerCase(); by[k in by ? k : 'unknown']++; }
  const fixable = vulns.filter((v) => v.fixAvailable || v.fixedVersion).length;
  out[1].querySelector('#image-counts').replaceChildren(...['critical', 'high', 'medium', 'low', 'unknown'].map((k) => sevChip(k, by[k])),
    ' critical, high, medium, low, unrated · ' + fixable + ' of ' + vulns.length + ' with a fixed version');
  out[1].append(h('dt', null, 'System'), h('dd', null, d.os ? d.os.id + ' ' + (d.os.versionId || '') : 'unknown'),
    h('dt', null, 'Platform'), h('dd', null, d.platform || ''), h('dt', null, 'Layers'), h('dd', null, String((d.layers || []).length)));
  const body = h('div', { id: 'image-tab' });
  const tabs = [
    ['vulns', 'Vulnerabilities (' + vulns.length + ')', () => table([
      { h: 'Severity', f: (v) => h('span', { class: 'sev ' + (v.severity || 'unknown').toLowerCase() }, v.severity || 'UNKNOWN') },
      { h: 'Advisory', f: (v) => [h('b', null, v.id), v.aliases?.length ? h('div', { class: 'muted' }, v.aliases.join(', ')) : null] },
      { h: 'Package', f: (v) => v.package },
      { h: 'Installed', f: (v) => h('code', null, v.version) },
      { h: 'Fixed in', f: (v) => v.fixedVersion ? h('code', { class: 'ok' }, v.fixedVersion) : h('span', { class: 'muted' }, 'no fix') },
      { h: 'Score', f: (v) => v.cvssScore ? String(v.cvssScore) : '' },
      { h: 'Summary', f: (v) => v.summary || '' },
    ], vulns, { filter: true, empty: 'No known vulnerability.' })],
    ['pkgs', 'Packages (' + pkgs.length + ')', () => table([
      { h: 'Package', f: (p) => p.name },
      { h: 'Version', f: (p) => h('code', null, p.version) },
      { h: 'Type', f: (p) => p.type },
      { h: 'Source', f: (p) => p.sourceName ? p.sourceName + (p.sourceVersion ? ' ' + p.sourceVersion : '') : '' },
      { h: 'Recorded in', f: (p) => h('code', null, p.path) },
    ], pkgs, { filter: true, empty: 'No package found.' })],
    ['secrets', 'Secrets (' + secrets.length + ')', () => {
      if (!secrets.length) return h('p', { class: 'ok' }, 'No secret found.');
      const byFile = new Map();
      for (const s of secrets) { if (!byFile.has(s.path)) byFile.set(s.path, []); byFile.get(s.path).push(s); }
      return h('div', { id: 'secrets' }, [...byFile].map(([file, list]) => h('div', { class: 'card' }, h('b', { class: 'mono' }, file),
        h('ul', null, list.map((s) => h('li', null, h('span', { class: 'sev ' + (s.severity || 'unknown').toLowerCase() }, s.severity), ' ', s.title, ' · rule ', h('code', null, s.rule), ' · line ' + s.line))))));
    }],
  ];
  const buttons = tabs.map(([id, label, fn]) => {
    const b = h('button', { id: 'tab-' + id, onclick: () => { for (const x of buttons) x.classList.remove('active'); b.classList.add('active'); body.replaceChildren(fn()); } }, label);
    return b;
  });
  buttons[0].classList.add('active');
  body.replaceChildren(tabs[0][2]());
  if (d.notes?.length) out.push(h('p', { class: 'muted' }, d.notes.join(' · ')));
  out.push(h('div', { class: 'tabs' }, buttons), body);
  return out;
}

export async function page(args) {
  const out = [h('h1', null, 'Registries and scan results' + (state.drill ? ' of ' + state.drill : ''))];
  const [reg, res, fail] = await Promise.all([get('/v1/registries'), get('/v1/scan/results?limit=1000'), get('/v1/scan/failures')]);
  out.push(h('h2', null, 'Registries'));
  out.push(reg.status === 200 ? registryTable(items(reg)) : notAvailable('Registries', reg));
  if (res.status !== 200) return [...out, notAvailable('Scan results', res)];
  const results = items(res).sort((a, b) => rank(b) - rank(a) || (a.ref || '').localeCompare(b.ref || ''));
  const sum = Object.fromEntries(SEVERITIES.map((s) => [s, results.reduce((n, r) => n + (r[s] || 0), 0)]));
  out.push(h('h2', null, 'Images (' + (res.data?.total ?? results.length) + ')'),
    h('p', { class: 'muted' }, 'Vulnerabilities in all images: ', counts(sum), ' critical, high, medium, low. Click an image for its packages, vulnerabilities and secrets.'));
  const pane = h('div', { id: 'image-detail' });
  const chosen = args[0];
  let selectedRow = null;
  const open = async (r, tr) => {
    if (selectedRow) selectedRow.classList.remove('selected');
    selectedRow = tr; tr?.classList.add('selected');
    history.replaceState(null, '', link('registries', r.digest));
    pane.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    pane.replaceChildren(...(await detail(r)).flat(Infinity).filter(Boolean));
    pane.dataset.digest = r.digest;
  };
  out.push(table([
    { h: 'Image', f: (r) => h('b', null, r.ref || short(r.digest)) },
    { h: 'Digest', f: (r) => h('code', { title: r.digest }, short(r.digest)) },
    { h: 'Critical · High · Medium · Low', f: counts },
    { h: 'Advisories', f: (r) => h('span', { class: 'advisories', title: (r.cves || []).join(' ') }, String((r.cves || []).length)) },
    { h: 'Source', f: (r) => r.source || '' },
    { h: 'Scanned', f: (r) => ago(r.scannedAt) },
  ], results, {
    filter: true, empty: 'No image has been scanned.',
    row: (tr, r) => {
      tr.classList.add('clickable'); tr.dataset.digest = r.digest; tr.addEventListener('click', () => open(r, tr));
      if (chosen && r.digest === chosen) queueMicrotask(() => open(r, tr));
    },
  }), pane);
  const fails = items(fail);
  if (fails.length) {
    out.push(h('h2', null, 'Images that could not be scanned (' + fails.length + ')'));
    out.push(table([
      { h: 'Registry', f: (f) => f.registry },
      { h: 'Image', f: (f) => f.ref },
      { h: 'Attempts', f: (f) => String(f.attempts) },
      { h: 'Error', f: (f) => h('span', { class: 'bad' }, f.error) },
      { h: 'When', f: (f) => ago(f.at) },
    ], fails));
  }
  return out;
}
