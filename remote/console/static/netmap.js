// The network activity map: groups as nodes, observed flows as edges,
// violations in red. It is a canvas renderer of its own: a force layout
// refined a few steps per animation frame (the first frame paints at
// once), pan and zoom, and level of detail so that thousands of nodes stay
// usable: off-screen items are skipped, names are painted only where they
// fit and arrowheads only when zoomed in. Loaded only by the network page.
// Names are painted as canvas text, which is never parsed as markup.

// violating is the default test of a flow record for a violation: it was
// dropped, or not allowed outside Discover (where everything not allowed
// is learned, not a violation).
export function violating(f) {
  return (f.dropped || 0) > 0 || ((f.violations || 0) > 0 && f.mode !== 'discover' && f.mode !== '');
}

// graphFromFlows folds flow records into group nodes and directed edges;
// every edge keeps the records drawn by it. An end with no group is shown
// by its own name; isViolation says which records are drawn in red.
export function graphFromFlows(flows, isViolation = violating) {
  const index = new Map();
  const nodes = [];
  const node = (name) => {
    let i = index.get(name);
    if (i === undefined) {
      i = nodes.length; index.set(name, i);
      nodes.push({ name, x: 0, y: 0, vx: 0, vy: 0, deg: 0, violation: false });
    }
    return i;
  };
  const edgeIndex = new Map(); // s * 2^22 + t -> edge
  const edges = [];
  const one = ['?'];
  const addTo = (list, v) => { if (v && !list.includes(v)) list.push(v); };
  for (const f of flows) {
    const from = f.clientGroups?.length ? f.clientGroups : (one[0] = f.client || '?', one);
    const bad = isViolation(f);
    for (const a of from) {
      const s = node(a);
      const to = f.serverGroups?.length ? f.serverGroups : [f.server || '?'];
      for (const b of to) {
        const t = node(b);
        const k = s * 4194304 + t;
        let e = edgeIndex.get(k);
        if (!e) {
          e = { s, t, records: [], count: 0, violation: false, apps: [], ports: [], reverse: false };
          edgeIndex.set(k, e); edges.push(e); nodes[s].deg++; nodes[t].deg++;
        }
        e.records.push(f);
        e.count += f.flows || 1;
        addTo(e.apps, f.app);
        addTo(e.ports, f.port);
        if (bad) { e.violation = true; nodes[s].violation = true; nodes[t].violation = true; }
      }
    }
  }
  for (const e of edges) e.reverse = edgeIndex.has(e.t * 4194304 + e.s);
  return { nodes, edges, index };
}

// seed places nodes on a sunflower spiral, busiest first, so hubs start in
// the middle and the first frame is already readable.
function seed(g, ideal) {
  const order = g.nodes.map((_, i) => i).sort((a, b) => g.nodes[b].deg - g.nodes[a].deg);
  order.forEach((i, rank) => {
    const a = rank * 2.399963, r = ideal * Math.sqrt(rank + 0.5) * 0.9;
    const p = g.nodes[i];
    p.x = r * Math.cos(a); p.y = r * Math.sin(a); p.vx = 0; p.vy = 0;
  });
}

// Layout is a force simulation run step by step; repulsion only acts within
// neighbouring grid cells, so a step costs about O(nodes + edges).
export class Layout {
  constructor(g, steps) {
    this.g = g;
    this.ideal = 40;
    this.steps = steps ?? (g.nodes.length > 1000 ? 120 : 300);
    this.step = 0;
    this.repel = 1;
    this.spring = 1;
    this.gravity = 0.01 / Math.sqrt(Math.max(1, g.nodes.length));
    seed(g, this.ideal);
  }

  get done() { return this.step >= this.steps || this.g.nodes.length < 2; }

  tick() {
    const { g, ideal } = this;
    const n = g.nodes.length;
    const temp = 1 - this.step / this.steps;
    const cell = ideal * 2;
    const grid = new Map();
    for (let i = 0; i < n; i++) {
      const p = g.nodes[i];
      const k = Math.floor(p.x / cell) * 65536 + Math.floor(p.y / cell);
      let b = grid.get(k); if (!b) grid.set(k, (b = [])); b.push(i);
    }
    const k2 = ideal * ideal;
    for (let i = 0; i < n; i++) {
      const p = g.nodes[i];
      const cx = Math.floor(p.x / cell), cy = Math.floor(p.y / cell);
      for (let dx = -1; dx <= 1; dx++) for (let dy = -1; dy <= 1; dy++) {
        const b = grid.get((cx + dx) * 65536 + cy + dy);
        if (!b) continue;
        for (const j of b) {
          if (j === i) continue;
          const q = g.nodes[j];
          let ddx = p.x - q.x, ddy = p.y - q.y;
          let d2 = ddx * ddx + ddy * ddy;
          if (d2 < 0.01) { ddx = ((i * 7919) % 13) - 6; ddy = ((j * 104729) % 13) - 6; d2 = ddx * ddx + ddy * ddy || 1; }
          if (d2 > cell * cell) continue;
          const f = k2 / d2 * this.repel;
          p.vx += ddx * f; p.vy += ddy * f;
        }
      }
    }
    for (const e of g.edges) {
      const a = g.nodes[e.s], b = g.nodes[e.t];
      const ddx = b.x - a.x, ddy = b.y - a.y;
      const d = Math.sqrt(ddx * ddx + ddy * ddy) || 1;
      // Logarithmic springs (Eades): long edges of a tangled graph pull
      // gently instead of collapsing it.
      const f = Math.log(d / ideal) * this.spring / d;
      a.vx += ddx * f; a.vy += ddy * f; b.vx -= ddx * f; b.vy -= ddy * f;
    }
    const max = ideal * temp + 1;
    for (const p of g.nodes) {
      p.vx -= p.x * this.gravity; p.vy -= p.y * this.gravity;
      const v = Math.sqrt(p.vx * p.vx + p.vy * p.vy);
      if (v > max) { p.vx *= max / v; p.vy *= max / v; }
      p.x += p.vx; p.y += p.vy; p.vx *= 0.5; p.vy *= 0.5;
    }
    this.step++;
  }
}

const COLORS = {
  edge: 'rgba(80,100,140,0.40)', edgeFar: 'rgba(80,100,140,0.22)', violation: 'rgba(198,40,40,0.95)',
  node: '#1f5fbf', nodeBad: '#c62828', label: '#1d2330', selected: '#ff9800', faint: 'rgba(31,95,191,0.15)',
};

// NetMap draws a graph on a canvas and answers clicks with onSelect({edge}
// or {node} or null).
export class NetMap {
  constructor(canvas, g, opts = {}) {
    this.canvas = canvas;
    this.g = g;
    this.onSelect = opts.onSelect || (() => {});
    this.onSettled = opts.onSettled || (() => {});
    this.layout = new Layout(g, opts.steps);
    this.k = 1; this.tx = 0; this.ty = 0;
    this.userMoved = false;
    this.selected = null; // {edge} | {node}
    this.onlyViolations = false;
    this.frame = 0;
    this.painted = false;
    this.bind();
    this.resize();
    // A first settling burst before the first paint, bounded in time.
    const t0 = performance.now();
    while (!this.layout.done && performance.now() - t0 < 25) this.layout.tick();
    this.fit();
    this.draw();
    this.painted = true;
    canvas.dataset.state = 'drawn';
    performance.mark('palisade-netmap-first-paint');
    this.schedule();
  }

  schedule() {
    if (this.layout.done) { this.settle(); return; }
    this.frame = requestAnimationFrame(() => {
      const t0 = performance.now();
      while (!this.layout.done && performance.now() - t0 < 12) this.layout.tick();
      if (!this.userMoved) this.fit();
      this.draw();
      this.schedule();
    });
  }

  settle() {
    if (this.canvas.dataset.state === 'settled') return;
    if (!this.userMoved) this.fit();
    this.draw();
    this.canvas.dataset.state = 'settled';
    performance.mark('palisade-netmap-settled');
    this.onSettled();
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.ro?.disconnect();
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    this.w = this.canvas.clientWidth || 800; this.h = this.canvas.clientHeight || 600;
    this.canvas.width = Math.round(this.w * dpr); this.canvas.height = Math.round(this.h * dpr);
    this.dpr = dpr;
  }

  // fit scales and centres the whole graph in the canvas.
  fit() {
    let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (const p of this.g.nodes) {
      if (p.x < minX) minX = p.x; if (p.y < minY) minY = p.y;
      if (p.x > maxX) maxX = p.x; if (p.y > maxY) maxY = p.y;
    }
    if (!this.g.nodes.length) { minX = minY = -1; maxX = maxY = 1; }
    const pad = 60;
    this.k = Math.min((this.w - 2 * pad) / Math.max(1, maxX - minX), (this.h - 2 * pad) / Math.max(1, maxY - minY), 2.5);
    this.tx = this.w / 2 - (minX + maxX) / 2 * this.k;
    this.ty = this.h / 2 - (minY + maxY) / 2 * this.k;
  }

  reset() { this.userMoved = false; this.fit(); this.draw(); }

  sx(x) { return x * this.k + this.tx; }
  sy(y) { return y * this.k + this.ty; }

  // radius shrinks nodes when zoomed out, so a large graph reads as its
  // shape rather than as a blot.
  radius(p) { return Math.min(11, 3.5 + Math.sqrt(p.deg) * 1.2, Math.max(1.5, this.layout.ideal * this.k * 0.28)); }

  // offset returns the screen-space shift of an edge drawn beside its
  // reverse, so both directions stay visible and clickable.
  ends(e) {
    const a = this.g.nodes[e.s], b = this.g.nodes[e.t];
    let x1 = this.sx(a.x), y1 = this.sy(a.y), x2 = this.sx(b.x), y2 = this.sy(b.y);
    if (e.reverse) {
      const dx = x2 - x1, dy = y2 - y1, d = Math.hypot(dx, dy) || 1;
      const ox = -dy / d * 4, oy = dx / d * 4;
      x1 += ox; y1 += oy; x2 += ox; y2 += oy;
    }
    return [x1, y1, x2, y2];
  }

  visible(x1, y1, x2, y2) {
    const m = 20;
    return !(Math.max(x1, x2) < -m || Math.min(x1, x2) > this.w + m || Math.max(y1, y2) < -m || Math.min(y1, y2) > this.h + m);
  }

  shown(e) { return !this.onlyViolations || e.violation; }

  draw() {
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.w, this.h);
    const g = this.g;
    const near = this.k * this.layout.ideal > 70;
    // Edges: ordinary ones in one path, violations over them.
    let onScreen = 0;
    for (const pass of [false, true]) {
      ctx.strokeStyle = pass ? COLORS.violation : (near ? COLORS.edge : COLORS.edgeFar);
      ctx.lineWidth = pass ? 2.5 : 1;
      ctx.beginPath();
      for (const e of g.edges) {
        if (e.violation !== pass || !this.shown(e)) continue;
        const [x1, y1, x2, y2] = this.ends(e);
        if (!this.visible(x1, y1, x2, y2)) continue;
        onScreen++;
        ctx.moveTo(x1, y1); ctx.lineTo(x2, y2);
      }
      ctx.stroke();
    }
    // Arrowheads when zoomed in and not too many.
    if (near && onScreen < 1500) {
      for (const e of g.edges) {
        if (!this.shown(e)) continue;
        const [x1, y1, x2, y2] = this.ends(e);
        if (!this.visible(x1, y1, x2, y2)) continue;
        const b = g.nodes[e.t], r = this.radius(b) + 2;
        const d = Math.hypot(x2 - x1, y2 - y1) || 1, ux = (x2 - x1) / d, uy = (y2 - y1) / d;
        const hx = x2 - ux * r, hy = y2 - uy * r, s = e.violation ? 9 : 7;
        ctx.fillStyle = e.violation ? COLORS.violation : 'rgba(80,100,140,0.7)';
        ctx.beginPath(); ctx.moveTo(hx, hy);
        ctx.lineTo(hx - ux * s - uy * s * 0.5, hy - uy * s + ux * s * 0.5);
        ctx.lineTo(hx - ux * s + uy * s * 0.5, hy - uy * s - ux * s * 0.5);
        ctx.fill();
      }
    }
    // Applications and ports on the edges when few are on screen.
    if (near && onScreen <= 150) {
      ctx.font = '11px system-ui, sans-serif';
      ctx.textBaseline = 'middle';
      ctx.textAlign = 'center';
      for (const e of g.edges) {
        if (!this.shown(e)) continue;
        const [x1, y1, x2, y2] = this.ends(e);
        if (!this.visible(x1, y1, x2, y2) || Math.hypot(x2 - x1, y2 - y1) < 90) continue;
        const text = [...e.apps, ...e.ports.map(String)].slice(0, 3).join(' · ');
        if (!text) continue;
        const off = e.reverse ? 8 : 0, d = Math.hypot(x2 - x1, y2 - y1) || 1;
        const mx = (x1 + x2) / 2 - (y2 - y1) / d * off, my = (y1 + y2) / 2 + (x2 - x1) / d * off;
        ctx.fillStyle = e.violation ? 'rgba(198,40,40,0.95)' : 'rgba(80,100,140,0.95)';
        ctx.fillText(text, mx, my - 8);
      }
      ctx.textAlign = 'start';
    }
    // The selected edge on top.
    const sel = this.selected;
    if (sel?.edge) {
      const [x1, y1, x2, y2] = this.ends(sel.edge);
      ctx.strokeStyle = COLORS.selected; ctx.lineWidth = 5; ctx.globalAlpha = 0.55;
      ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.strokeStyle = sel.edge.violation ? COLORS.violation : COLORS.node; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke();
    }
    // Nodes, batched by colour.
    const involved = this.onlyViolations ? (p) => p.violation : () => true;
    const visibleNodes = [];
    for (const [color, want] of [[COLORS.faint, 0], [COLORS.node, 1], [COLORS.nodeBad, 2]]) {
      ctx.fillStyle = color;
      ctx.beginPath();
      for (const p of g.nodes) {
        const kind = !involved(p) ? 0 : p.violation ? 2 : 1;
        if (kind !== want) continue;
        const x = this.sx(p.x), y = this.sy(p.y);
        if (x < -20 || x > this.w + 20 || y < -20 || y > this.h + 20) continue;
        const r = this.radius(p);
        ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, Math.PI * 2);
        if (kind) visibleNodes.push(p);
      }
      ctx.fill();
    }
    if (sel?.node) {
      const p = sel.node;
      ctx.strokeStyle = COLORS.selected; ctx.lineWidth = 3;
      ctx.beginPath(); ctx.arc(this.sx(p.x), this.sy(p.y), this.radius(p) + 3, 0, Math.PI * 2); ctx.stroke();
    }
    this.labels(ctx, visibleNodes);
    this.canvas.dataset.visibleNodes = String(visibleNodes.length);
  }

  // labels paints names where they fit: selected and violating ends first,
  // then the busiest; a coarse occupancy grid keeps them from overlapping.
  labels(ctx, nodes) {
    const sel = this.selected;
    const must = new Set();
    if (sel?.node) must.add(sel.node);
    if (sel?.edge) { must.add(this.g.nodes[sel.edge.s]); must.add(this.g.nodes[sel.edge.t]); }
    const rank = (p) => (must.has(p) ? 1e9 : 0) + (p.violation ? 1e6 : 0) + p.deg;
    const list = nodes.length > 400 ? nodes.filter((p) => must.has(p) || p.violation || p.deg > 2) : nodes;
    list.sort((a, b) => rank(b) - rank(a));
    const budget = Math.max(must.size, Math.min(list.length, nodes.length > 400 ? 60 : 400));
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    const cw = 80, ch = 16, taken = new Set();
    this.labelBoxes = [];
    let n = 0;
    for (const p of list) {
      if (n >= budget) break;
      const r = this.radius(p);
      const x = this.sx(p.x) + r + 3, y = this.sy(p.y);
      const text = p.name.length > 40 ? p.name.slice(0, 39) + '…' : p.name;
      const w = ctx.measureText(text).width;
      const cells = [];
      for (let cx = Math.floor(x / cw); cx <= Math.floor((x + w) / cw); cx++) cells.push(cx + ':' + Math.floor(y / ch));
      if (!must.has(p) && cells.some((c) => taken.has(c))) continue;
      for (const c of cells) taken.add(c);
      ctx.fillStyle = 'rgba(255,255,255,0.85)';
      ctx.fillRect(x - 1, y - 7, w + 2, 14);
      this.labelBoxes.push([x - 3, y - 9, x + w + 3, y + 9]);
      ctx.fillStyle = must.has(p) ? '#000' : COLORS.label;
      ctx.fillText(text, x, y);
      n++;
    }
  }

  // hit finds the node or edge under a point in canvas pixels.
  hit(x, y) {
    let best = null, bestD = Infinity;
    for (const p of this.g.nodes) {
      const d = Math.hypot(this.sx(p.x) - x, this.sy(p.y) - y);
      if (d <= this.radius(p) + 3 && d < bestD) { best = { node: p }; bestD = d; }
    }
    if (best) return best;
    bestD = 7;
    for (const e of this.g.edges) {
      if (!this.shown(e)) continue;
      const [x1, y1, x2, y2] = this.ends(e);
      const dx = x2 - x1, dy = y2 - y1, l2 = dx * dx + dy * dy || 1;
      const t = Math.max(0, Math.min(1, ((x - x1) * dx + (y - y1) * dy) / l2));
      const d = Math.hypot(x1 + t * dx - x, y1 + t * dy - y) - (e.violation ? 1.5 : 0);
      if (d < bestD) { best = { edge: e }; bestD = d; }
    }
    return best;
  }

  select(s) {
    this.selected = s;
    this.draw();
    this.onSelect(s);
  }

  // edge returns the edge from one node name to another, if drawn.
  edge(from, to) {
    const s = this.g.index.get(from), t = this.g.index.get(to);
    return this.g.edges.find((e) => e.s === s && e.t === t) || null;
  }

  // edgePoint is where on the page (CSS pixels, viewport) an edge can be
  // clicked: the point nearest its middle where a click selects it (clear
  // of nodes and of other edges).
  edgePoint(from, to) {
    const e = this.edge(from, to);
    if (!e) return null;
    const [x1, y1, x2, y2] = this.ends(e);
    const r = this.canvas.getBoundingClientRect();
    let at = [(x1 + x2) / 2, (y1 + y2) / 2];
    for (let i = 0; i <= 40; i++) {
      const t = 0.5 + (i % 2 ? 1 : -1) * Math.ceil(i / 2) * 0.02;
      const x = x1 + (x2 - x1) * t, y = y1 + (y2 - y1) * t;
      const underLabel = (this.labelBoxes || []).some(([a, b, c, d]) => x >= a && x <= c && y >= b && y <= d);
      if (!underLabel && this.hit(x, y)?.edge === e) { at = [x, y]; break; }
    }
    return { x: r.left + at[0], y: r.top + at[1] };
  }

  // focus centres a node by name and selects it.
  focus(name) {
    const i = this.g.index.get(name);
    if (i === undefined) return false;
    const p = this.g.nodes[i];
    this.userMoved = true;
    this.k = Math.max(this.k, 1.5);
    this.tx = this.w / 2 - p.x * this.k; this.ty = this.h / 2 - p.y * this.k;
    this.select({ node: p });
    return true;
  }

  bind() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener('pointerdown', (ev) => {
      drag = { x: ev.offsetX, y: ev.offsetY, tx: this.tx, ty: this.ty, moved: false };
      c.setPointerCapture?.(ev.pointerId);
    });
    c.addEventListener('pointermove', (ev) => {
      if (!drag) {
        c.style.cursor = this.hit(ev.offsetX, ev.offsetY) ? 'pointer' : 'grab';
        return;
      }
      const dx = ev.offsetX - drag.x, dy = ev.offsetY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (drag.moved) { this.userMoved = true; this.tx = drag.tx + dx; this.ty = drag.ty + dy; this.draw(); }
    });
    c.addEventListener('pointerup', (ev) => {
      const d = drag; drag = null;
      if (d && !d.moved) this.select(this.hit(ev.offsetX, ev.offsetY));
    });
    c.addEventListener('wheel', (ev) => {
      ev.preventDefault();
      const f = Math.exp(-ev.deltaY * 0.0015);
      const k = Math.max(0.02, Math.min(20, this.k * f));
      const x = ev.offsetX, y = ev.offsetY;
      this.tx = x - (x - this.tx) * (k / this.k); this.ty = y - (y - this.ty) * (k / this.k);
      this.k = k; this.userMoved = true; this.draw();
    }, { passive: false });
    if (window.ResizeObserver) {
      this.ro = new ResizeObserver(() => {
        const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
        if (w === this.w && h === this.h) return;
        this.resize(); if (!this.userMoved) this.fit();
        if (this.painted) this.draw();
      });
      this.ro.observe(c);
    }
  }
}
