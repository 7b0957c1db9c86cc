// The network activity map: groups as nodes, flows as edges, violations in
// red, laid out by a small force simulation on a canvas. Loaded only by
// the network page.

// graphFromFlows folds flow records into group nodes and edges; an end with
// no group is shown by its name.
export function graphFromFlows(flows) {
  const index = new Map();
  const nodes = [];
  const node = (name) => {
    let i = index.get(name);
    if (i === undefined) { i = nodes.length; index.set(name, i); nodes.push({ name, x: 0, y: 0, vx: 0, vy: 0, deg: 0 }); }
    return i;
  };
  const edgeIndex = new Map();
  const edges = [];
  for (const f of flows) {
    const from = f.clientGroups?.length ? f.clientGroups : [f.client || '?'];
    const to = f.serverGroups?.length ? f.serverGroups : [f.server || '?'];
    for (const a of from) for (const b of to) {
      const s = node(a), t = node(b);
      const k = s + '>' + t;
      let e = edgeIndex.get(k);
      if (!e) { e = { s, t, flows: 0, violation: false }; edgeIndex.set(k, e); edges.push(e); nodes[s].deg++; nodes[t].deg++; }
      e.flows += f.flows || 1;
      if ((f.violations || 0) > 0 || (f.dropped || 0) > 0) e.violation = true;
    }
  }
  return { nodes, edges };
}

// layout runs a force simulation; repulsion only acts within nearby grid
// cells, so each step costs about O(nodes + edges).
export function layout(g, width, height, steps = 200) {
  const n = g.nodes.length;
  if (!n) return;
  const ideal = Math.max(12, Math.sqrt((width * height) / n) * 0.8);
  g.nodes.forEach((p, i) => {
    const a = i * 2.399963, r = ideal * Math.sqrt(i + 0.5) * 0.6;
    p.x = width / 2 + r * Math.cos(a); p.y = height / 2 + r * Math.sin(a);
  });
  const cell = ideal * 2;
  for (let step = 0; step < steps; step++) {
    const temp = 1 - step / steps;
    const grid = new Map();
    for (let i = 0; i < n; i++) {
      const p = g.nodes[i];
      const k = Math.floor(p.x / cell) + ',' + Math.floor(p.y / cell);
      let b = grid.get(k); if (!b) grid.set(k, (b = [])); b.push(i);
    }
    for (let i = 0; i < n; i++) {
      const p = g.nodes[i];
      const cx = Math.floor(p.x / cell), cy = Math.floor(p.y / cell);
      for (let dx = -1; dx <= 1; dx++) for (let dy = -1; dy <= 1; dy++) {
        const b = grid.get((cx + dx) + ',' + (cy + dy));
        if (!b) continue;
        for (const j of b) {
          if (j === i) continue;
          const q = g.nodes[j];
          let ddx = p.x - q.x, ddy = p.y - q.y;
          let d2 = ddx * ddx + ddy * ddy;
          if (d2 < 0.01) { ddx = Math.random() - 0.5; ddy = Math.random() - 0.5; d2 = 0.25; }
          const f = (ideal * ideal) / d2;
          p.vx += ddx * f * 0.05; p.vy += ddy * f * 0.05;
        }
      }
    }
    for (const e of g.edges) {
      const a = g.nodes[e.s], b = g.nodes[e.t];
      const ddx = b.x - a.x, ddy = b.y - a.y;
      const d = Math.sqrt(ddx * ddx + ddy * ddy) || 1;
      const f = (d - ideal) / d * 0.05;
      a.vx += ddx * f; a.vy += ddy * f; b.vx -= ddx * f; b.vy -= ddy * f;
    }
    for (const p of g.nodes) {
      p.vx += (width / 2 - p.x) * 0.002; p.vy += (height / 2 - p.y) * 0.002;
      const v = Math.sqrt(p.vx * p.vx + p.vy * p.vy), max = ideal * temp + 1;
      if (v > max) { p.vx *= max / v; p.vy *= max / v; }
      p.x += p.vx; p.y += p.vy; p.vx *= 0.5; p.vy *= 0.5;
    }
  }
}

// draw lays the graph out and paints it, fitted to the canvas. Names are
// painted as canvas text, which is never parsed as markup.
export function draw(canvas, g) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 800, hgt = canvas.clientHeight || 600;
  canvas.width = w * dpr; canvas.height = hgt * dpr;
  const ctx = canvas.getContext('2d');
  ctx.scale(dpr, dpr);
  layout(g, w, hgt, g.nodes.length > 1000 ? 80 : 200);
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (const p of g.nodes) { minX = Math.min(minX, p.x); minY = Math.min(minY, p.y); maxX = Math.max(maxX, p.x); maxY = Math.max(maxY, p.y); }
  const pad = 40, s = Math.min((w - 2 * pad) / Math.max(1, maxX - minX), (hgt - 2 * pad) / Math.max(1, maxY - minY), 3);
  const X = (x) => pad + (x - minX) * s, Y = (y) => pad + (y - minY) * s;
  ctx.clearRect(0, 0, w, hgt);
  ctx.lineWidth = 1;
  for (const pass of [false, true]) {
    ctx.strokeStyle = pass ? 'rgba(198,40,40,0.9)' : 'rgba(80,100,140,0.35)';
    ctx.beginPath();
    for (const e of g.edges) {
      if (e.violation !== pass) continue;
      const a = g.nodes[e.s], b = g.nodes[e.t];
      ctx.moveTo(X(a.x), Y(a.y)); ctx.lineTo(X(b.x), Y(b.y));
    }
    ctx.stroke();
  }
  const labelled = g.nodes.length <= 300;
  ctx.font = '11px system-ui, sans-serif';
  for (const p of g.nodes) {
    const r = Math.min(10, 3 + Math.sqrt(p.deg));
    ctx.fillStyle = '#1f5fbf';
    ctx.beginPath(); ctx.arc(X(p.x), Y(p.y), r, 0, Math.PI * 2); ctx.fill();
    if (labelled) { ctx.fillStyle = '#1d2330'; ctx.fillText(p.name, X(p.x) + r + 2, Y(p.y) + 4); }
  }
}
