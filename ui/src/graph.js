// Pure graph helpers of the web UI: keys, a cheap layered layout for large graphs, paths between two nodes,
// collapsing a graph that is too large to draw, and keyboard moves between nodes.

export const key = (ref) => `${ref.namespace}\u0001${ref.name}`;

// Beyond this many datasets the view is collapsed to a smaller depth (and says so).
export const COLLAPSE_AT = 2500;
// Beyond this many datasets the layered layout is computed here (one pass) instead of by dagre.
export const SIMPLE_LAYOUT_AT = 300;

// Positions by column (depth, left to right) and row (order within the column): linear time.
export function layered(nodes, { dx = 260, dy = 60 } = {}) {
  const columns = new Map();
  for (const n of nodes) {
    if (!columns.has(n.depth)) columns.set(n.depth, []);
    columns.get(n.depth).push(n);
  }
  const positions = new Map();
  for (const [depth, members] of columns) {
    members.sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
    const top = -((members.length - 1) * dy) / 2;
    members.forEach((n, i) => positions.set(n.id, { x: depth * dx, y: top + i * dy }));
  }
  return positions;
}

// A large graph is handed to cytoscape in two parts: the nodes within `margin` viewports of where the
// page opens (and the edges between them) first, so the first frame draws and styles only those, then the
// rest.  `view` is the opening viewport in model coordinates: { x1, y1, x2, y2 }.
export function nearFirst(nodes, edges, positions, view, margin = 1) {
  const w = (view.x2 - view.x1) * margin;
  const hgt = (view.y2 - view.y1) * margin;
  const near = new Set();
  for (const n of nodes) {
    const p = positions.get(n.id);
    if (p.x >= view.x1 - w && p.x <= view.x2 + w && p.y >= view.y1 - hgt && p.y <= view.y2 + hgt) near.add(n.id);
  }
  const first = { nodes: [], edges: [] };
  const rest = { nodes: [], edges: [] };
  for (const n of nodes) (near.has(n.id) ? first : rest).nodes.push(n);
  for (const e of edges) (near.has(e.source) && near.has(e.target) ? first : rest).edges.push(e);
  return { first, rest };
}

// Keep the nodes nearest the centre: the largest depth (each direction) whose nodes fit under `max`.
export function collapse(nodes, edges, max = COLLAPSE_AT) {
  if (nodes.length <= max) return { nodes, edges, collapsedTo: null, hidden: 0 };
  const byDepth = new Map();
  for (const n of nodes) byDepth.set(Math.abs(n.depth), (byDepth.get(Math.abs(n.depth)) || 0) + 1);
  let keep = 0;
  let count = 0;
  for (const depth of [...byDepth.keys()].sort((a, b) => a - b)) {
    if (count + byDepth.get(depth) > max && depth > 0) break;
    count += byDepth.get(depth);
    keep = depth;
  }
  const kept = nodes.filter((n) => Math.abs(n.depth) <= keep);
  const ids = new Set(kept.map((n) => n.id));
  return {
    nodes: kept,
    edges: edges.filter((e) => ids.has(e.source) && ids.has(e.target)),
    collapsedTo: keep,
    hidden: nodes.length - kept.length,
  };
}

function reach(start, next) {
  const seen = new Set([start]);
  const queue = [start];
  while (queue.length) {
    const at = queue.shift();
    for (const n of next.get(at) || []) {
      if (!seen.has(n)) {
        seen.add(n);
        queue.push(n);
      }
    }
  }
  return seen;
}

// Every node and edge on some directed path between a and b (either direction).
export function pathsBetween(edges, a, b) {
  const out = new Map();
  const into = new Map();
  for (const e of edges) {
    if (!out.has(e.source)) out.set(e.source, []);
    if (!into.has(e.target)) into.set(e.target, []);
    out.get(e.source).push(e.target);
    into.get(e.target).push(e.source);
  }
  for (const [from, to] of [[a, b], [b, a]]) {
    const forward = reach(from, out);
    if (!forward.has(to)) continue;
    const backward = reach(to, into);
    const nodes = new Set([...forward].filter((n) => backward.has(n)));
    const onPath = edges.filter((e) => nodes.has(e.source) && nodes.has(e.target));
    return { nodes, edges: onPath, from, to };
  }
  return { nodes: new Set(), edges: [], from: a, to: b };
}

// Where an arrow key moves from node `id`: right/left along edges, up/down within the same column.
export function move(nodes, edges, id, direction) {
  const at = nodes.find((n) => n.id === id);
  if (!at) return nodes.length ? nodes[0].id : null;
  if (direction === "ArrowRight" || direction === "ArrowLeft") {
    const right = direction === "ArrowRight";
    const next = edges.filter((e) => (right ? e.source === id : e.target === id)).map((e) => (right ? e.target : e.source));
    const candidates = nodes.filter((n) => next.includes(n.id)).sort((x, y) => (x.label < y.label ? -1 : 1));
    return candidates.length ? candidates[0].id : id;
  }
  const column = nodes.filter((n) => n.depth === at.depth).sort((x, y) => (x.label < y.label ? -1 : 1));
  const i = column.findIndex((n) => n.id === id);
  const j = direction === "ArrowDown" ? Math.min(column.length - 1, i + 1) : Math.max(0, i - 1);
  return column[j].id;
}
