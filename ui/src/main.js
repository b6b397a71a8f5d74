// The Headwater web UI: dataset graph (with explain overlay and column lineage), run page, freshness board,
// runs listing and search, all from the lineage API's JSON.  The read token is asked once per tab, kept in
// sessionStorage and sent as a bearer header; it never goes into a URL.
import cytoscape from "cytoscape";
import dagre from "cytoscape-dagre";
import { COLLAPSE_AT, SIMPLE_LAYOUT_AT, collapse, key, layered, move, nearFirst, pathsBetween } from "./graph.js";

cytoscape.use(dagre);

const TOKEN = "headwater.token";
const main = document.getElementById("main");
const notice = document.getElementById("notice");
let cy = null;
window.headwater = { ready: false, renders: [] }; // for the browser tests and the benchmark

// ---------------------------------------------------------------------------------------------- helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class Unauthorized extends Error {}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(path, { headers, credentials: "omit", cache: "no-store" });
  if (response.status === 401 || response.status === 403) throw new Unauthorized();
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((body.error && body.error.message) || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

const enc = encodeURIComponent;
const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const pct = (p) => (p === null || p === undefined ? "" : `${p > 0 ? "+" : ""}${p.toFixed(1)}%`);
const when = (t) => (t ? new Date(t).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–");

function duration(a, b) {
  if (!a || !b) return "–";
  let s = Math.max(0, Math.round((new Date(b) - new Date(a)) / 1000));
  const m = Math.floor(s / 60);
  s -= m * 60;
  return m ? `${m}m ${s}s` : `${s}s`;
}

function hashParams() {
  const [path, query] = location.hash.slice(1).split("?");
  return { path: path || "/", params: new URLSearchParams(query || "") };
}

const datasetLink = (ref, extra = "") =>
  `#/dataset?name=${enc(ref.name)}&namespace=${enc(ref.namespace)}${extra}`;
const runLink = (id) => `#/run?id=${enc(id)}`;

function say(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

function setPage(...children) {
  if (cy) {
    cy.destroy();
    cy = null;
  }
  main.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

// A word for every colour: phases and freshness are written, not only coloured.
const PHASE_CLASS = { Succeeded: "ok", Failed: "bad", Skipped: "warn", Cancelled: "warn", Running: "run", Pending: "idle" };
const phase = (p) => h("span", { class: `badge ${PHASE_CLASS[p] || "idle"}` }, p || "Unknown");
const FRESH_TEXT = { fresh: "fresh", stale: "stale", at_risk: "at risk", unknown: "not yet written" };
const FRESH_CLASS = { fresh: "ok", stale: "bad", at_risk: "warn", unknown: "idle" };
const freshness = (s) => h("span", { class: `badge ${FRESH_CLASS[s] || "idle"}` }, FRESH_TEXT[s] || "no SLA");
// What the checks made of a dataset's latest version (checkStatus of /v1/graph): written, and drawn as a
// shape and a border style as well as a colour.
const CHECK_WORDS = { failed: "CHECK FAILED", warning: "CHECK WARNING" };
const CHECK_TEXT = { failed: "a blocking check failed: latest version not published", warning: "a check warned" };
const checkLine = (status, checks) => (status
  ? `${CHECK_WORDS[status]}: ${checks.map((c) => c.name).join(", ") || "not published"}` : "");

// -------------------------------------------------------------------------------------------- login

function login(retry) {
  setPage(
    h("section", { class: "login" },
      h("h1", {}, "Sign in"),
      h("p", {}, "The lineage API needs its read token (HEADWATER_API_TOKEN). It is kept in this tab only."),
      h("form", {
        id: "login-form",
        onsubmit: (ev) => {
          ev.preventDefault();
          sessionStorage.setItem(TOKEN, document.getElementById("login-token").value.trim());
          document.getElementById("logout").hidden = false;
          retry();
        },
      },
      h("label", { for: "login-token" }, "Read token"),
      h("input", { id: "login-token", type: "password", autocomplete: "off", required: true }),
      h("button", { type: "submit" }, "Sign in"))));
  document.getElementById("login-token").focus();
}

// --------------------------------------------------------------------------------------------- pages

async function home() {
  const [datasets, runs] = await Promise.all([api("/v1/datasets?limit=200"), api("/v1/runs?limit=20")]);
  setPage(
    h("h1", {}, "Datasets"),
    h("table", { class: "list" },
      h("thead", {}, h("tr", {}, h("th", {}, "Dataset"), h("th", {}, "Namespace"), h("th", {}, "Rows"),
        h("th", {}, "Last written"))),
      h("tbody", {}, datasets.datasets.map((d) => h("tr", {},
        h("td", {}, h("a", { href: datasetLink(d.dataset) }, d.dataset.name)),
        h("td", {}, d.dataset.namespace),
        h("td", { class: "num" }, fmt(d.latest && d.latest.rowCount)),
        h("td", {}, when(d.latest && d.latest.writtenAt)))))),
    h("h2", {}, "Recent runs"), runsTable(runs.runs));
}

function runsTable(runs) {
  return h("table", { class: "list" },
    h("thead", {}, h("tr", {}, h("th", {}, "Run"), h("th", {}, "Pipeline"), h("th", {}, "Phase"),
      h("th", {}, "Started"), h("th", {}, "Took"))),
    h("tbody", {}, runs.map((r) => h("tr", {},
      h("td", {}, h("a", { href: runLink(r.id) }, r.name || r.id)),
      h("td", {}, r.pipeline), h("td", {}, phase(r.phase)), h("td", {}, when(r.startedAt)),
      h("td", {}, duration(r.startedAt, r.finishedAt))))));
}

// the runs of one pipeline, in one Kubernetes namespace when given (same-named Pipelines of two teams apart)
const pipelineQuery = (pipeline, namespace) =>
  `${pipeline ? `&pipeline=${enc(pipeline)}` : ""}${namespace ? `&namespace=${enc(namespace)}` : ""}`;

async function runsPage(params) {
  const pipeline = params.get("pipeline");
  const namespace = params.get("namespace");
  const offset = Number(params.get("offset") || 0);
  const page = await api(`/v1/runs?limit=50&offset=${offset}${pipelineQuery(pipeline, namespace)}`);
  const more = page.runs.length === 50;
  const title = pipeline ? `Runs of ${pipeline}${namespace ? ` in ${namespace}` : ""}` : "Runs";
  setPage(h("h1", {}, title), runsTable(page.runs),
    more ? h("a", { href: `#/runs?offset=${offset + 50}${pipelineQuery(pipeline, namespace)}` }, "Older runs")
      : null);
}

async function searchPage(params) {
  const q = params.get("q") || "";
  document.getElementById("search").value = q;
  const hits = await api(`/v1/search?q=${enc(q)}`);
  const exact = hits.datasets.filter((d) => d.name === q);
  if (exact.length === 1 && params.get("go") !== "0") {
    location.replace(datasetLink(exact[0]));
    return;
  }
  setPage(h("h1", {}, `Search: ${q}`),
    h("h2", {}, "Datasets"),
    hits.datasets.length ? h("ul", { id: "hits-datasets" }, hits.datasets.map((d) =>
      h("li", {}, h("a", { href: datasetLink(d) }, d.name), ` (${d.namespace})`))) : h("p", {}, "No dataset."),
    h("h2", {}, "Pipelines"),
    hits.pipelineRefs.length ? h("ul", { id: "hits-pipelines" }, hits.pipelineRefs.map((p) =>
      h("li", {}, h("a", { href: `#/runs?${pipelineQuery(p.name, p.namespace).slice(1)}` }, p.name),
        ` (${p.namespace || "OpenLineage"})`))) : h("p", {}, "No pipeline."),
    h("h2", {}, "Runs"), hits.runs.length ? runsTable(hits.runs) : h("p", {}, "No run."));
}

// ---------------------------------------------------------------------------------------- dataset page

const STYLE = [
  { selector: "node", style: {
    shape: "round-rectangle", width: 200, height: 44, "background-color": "#f4f6f8", "border-width": 2,
    "border-color": "#7a8794", label: "data(label)", "text-wrap": "wrap", "text-max-width": 190,
    "text-valign": "center", "font-size": 10, color: "#1b2733", "min-zoomed-font-size": 6 } },
  { selector: "node.centre", style: { "border-width": 4, "border-color": "#1f5fbf" } },
  { selector: "node.fresh", style: { "background-color": "#e3f4e6" } },
  { selector: "node.stale", style: { "background-color": "#fbe1df" } },
  { selector: "node.at_risk", style: { "background-color": "#fff1cc" } },
  { selector: "node.focused", style: { "overlay-color": "#1f5fbf", "overlay-opacity": 0.25, "overlay-padding": 6 } },
  { selector: "node.picked", style: { "border-color": "#8a2be2", "border-width": 5 } },
  { selector: "node.onpath", style: { "border-color": "#8a2be2" } },
  { selector: "node.dim", style: { opacity: 0.3 } },
  { selector: "node.check-warning", style: { "border-style": "dashed", "border-width": 4, "border-color": "#b7791f",
    height: 58 } },
  { selector: "node.check-failed", style: { shape: "cut-rectangle", "border-style": "double", "border-width": 7,
    "border-color": "#c62828", height: 58 } },
  { selector: "node.cause", style: { "background-color": "mapData(score, 0, 100, #fff5f0, #d7301f)", color: "#000" } },
  { selector: "edge", style: { width: 1.5, "line-color": "#9aa5b1", "target-arrow-color": "#9aa5b1",
    "target-arrow-shape": "triangle", "curve-style": "bezier", "arrow-scale": 0.8 } },
  { selector: "edge.onpath", style: { "line-color": "#8a2be2", "target-arrow-color": "#8a2be2", width: 4 } },
  { selector: "edge.column", style: { "line-style": "dashed", "line-color": "#2a7f62", "target-arrow-color": "#2a7f62",
    label: "data(label)", "font-size": 8, "text-rotation": "autorotate", "curve-style": "unbundled-bezier" } },
];

async function datasetPage(params) {
  const name = params.get("name");
  const namespace = params.get("namespace");
  const depth = Number(params.get("depth") || 3);
  const ns = namespace ? `&namespace=${enc(namespace)}` : "";
  const started = performance.now();
  const [graph, board, detail] = await Promise.all([
    api(`/v1/graph/${enc(name)}?depth=${depth}&limit=10000${ns}`),
    api("/v1/freshness").catch(() => ({ available: false, datasets: [] })),
    api(`/v1/datasets/${enc(name)}?${ns.slice(1)}`).catch(() => null),
  ]);
  const sla = new Map(board.datasets.map((d) => [key(d), d]));
  const centre = key(graph.dataset);
  const all = graph.nodes.map((n) => {
    const id = key(n.dataset);
    const fresh = sla.get(id);
    const latest = n.latest;
    const state = fresh ? FRESH_TEXT[fresh.state] : "no SLA";
    const rows = latest && latest.rowCount !== null ? `${fmt(latest.rowCount)} rows` : "no rows recorded";
    const change = n.rowCountChangePct !== null && n.rowCountChangePct !== undefined ? ` (${pct(n.rowCountChangePct)})` : "";
    return { id, ref: n.dataset, depth: n.depth, label: n.dataset.name, state: fresh ? fresh.state : null,
      text: `${n.dataset.name}\n${state} · ${rows}${change}`, node: n, check: n.checkStatus || null,
      checks: n.failedChecks || [], checkText: checkLine(n.checkStatus, n.failedChecks || []) };
  });
  const edgeMap = new Map();
  for (const e of graph.edges) {
    const id = `${key(e.input)}\u0002${key(e.output)}`;
    const jobs = edgeMap.has(id) ? edgeMap.get(id).jobs : [];
    jobs.push(`${e.pipeline}/${e.step}`);
    edgeMap.set(id, { id, source: key(e.input), target: key(e.output), jobs });
  }
  const shown = collapse(all, [...edgeMap.values()]);
  const view = { nodes: shown.nodes, edges: shown.edges, centre, name, namespace: graph.dataset.namespace, depth,
    picked: [], focused: centre, explained: null, columns: false, detail, complete: Promise.resolve() };

  const depthSelect = h("select", { id: "depth", onchange: (ev) => {
    location.hash = datasetLink(graph.dataset, `&depth=${ev.target.value}`);
  } }, [1, 2, 3, 4, 5, 6, 8, 10, 15, 20].map((d) => h("option", { value: d, selected: d === depth }, d)));
  const status = h("p", { id: "focus-status", class: "sr-status", "aria-live": "polite" });
  const side = h("aside", { id: "side", "aria-label": "Details" });
  const container = h("div", { id: "graph", tabindex: "0", role: "application",
    "aria-label": "Lineage graph. Arrow keys move between datasets, Enter re-centres on the focused one, "
      + "Space selects it for highlighting paths, E toggles the explain overlay." });
  const notes = [];
  if (graph.truncated) notes.push(`The graph has more than ${graph.limit} datasets in a direction: only the nearest are shown.`);
  if (shown.collapsedTo !== null) {
    notes.push(`Collapsed by depth: ${all.length} datasets are more than ${COLLAPSE_AT}; showing the ${shown.nodes.length} `
      + `within ${shown.collapsedTo} hops (${shown.hidden} hidden). Re-centre on a node to see beyond.`);
  }
  const checked = (status) => shown.nodes.filter((n) => n.check === status).map((n) => n.label);
  const [failed, warned] = [checked("failed"), checked("warning")];
  const some = (names) => names.slice(0, 5).join(", ") + (names.length > 5 ? ` and ${names.length - 5} more` : "");
  if (failed.length) {
    notes.push(`Checks: ${failed.length} dataset${failed.length === 1 ? "" : "s"} held back by a failed blocking check `
      + `(latest version not published): ${some(failed)}.`);
  }
  if (warned.length) notes.push(`Checks: ${warned.length} dataset${warned.length === 1 ? "" : "s"} with a warning: ${some(warned)}.`);
  if (!board.available) notes.push("Freshness is not available from this API server (no SLA states shown).");
  setPage(
    h("div", { class: "toolbar" },
      h("h1", { id: "title" }, graph.dataset.name, h("small", {}, ` ${graph.dataset.namespace}`)),
      h("label", { for: "depth" }, "Depth "), depthSelect,
      h("button", { id: "explain-toggle", type: "button", "aria-pressed": "false", onclick: () => toggleExplain(view) },
        "Explain"),
      h("label", { class: "check" }, h("input", { id: "columns-toggle", type: "checkbox",
        onchange: (ev) => toggleColumns(view, ev.target.checked) }), " Column lineage"),
      h("button", { id: "clear-paths", type: "button", onclick: () => pick(view, null) }, "Clear path")),
    h("div", { id: "graph-notes", role: "note" }, notes.map((n) => h("p", { class: "note" }, n))),
    h("div", { class: "split" }, container, side), status,
    h("details", { class: "node-list" }, h("summary", {}, `All ${view.nodes.length} datasets in view (as text)`),
      h("ul", {}, view.nodes.slice(0, 500).map((n) => h("li", {},
        h("a", { href: datasetLink(n.ref) }, n.label), ` — ${n.depth < 0 ? `${-n.depth} upstream` : n.depth > 0
          ? `${n.depth} downstream` : "centre"}, ${n.text.split("\n")[1]}${n.check ? `, ${n.checkText}` : ""}`)))));
  view.side = side;
  view.status = status;
  const fetched = performance.now();
  draw(view, container);
  const drawn = performance.now();
  sideDetails(view);
  container.focus();
  // Measured once the graph has been painted (two animation frames later), from the request of its data.
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const done = performance.now();
  const render = { nodes: view.nodes.length, edges: view.edges.length, ms: done - started, fetchMs: fetched - started,
    drawMs: done - fetched, buildMs: drawn - fetched, collapsedTo: shown.collapsedTo, firstNodes: cy.nodes().length,
    complete: !view.rest.length, completeMs: view.rest.length ? null : done - started };
  window.headwater.renders.push(render);
  view.complete = addRest(view).then(() => {
    render.completeMs = performance.now() - started;
    render.complete = true;
  });
}

// The rest of a large graph, in chunks between frames so that the page keeps answering meanwhile.
async function addRest(view) {
  const rest = view.rest;
  for (let i = 0; i < rest.length; i += REST_CHUNK) {
    await new Promise((resolve) => setTimeout(resolve, 0));
    if (view.cy.destroyed()) return;
    view.cy.add(rest.slice(i, i + REST_CHUNK));
    view.cy.getElementById(view.focused).addClass("focused");
  }
  view.rest = [];
}

// A large graph's nodes carry their name only: measuring thousands of two-line labels is most of the
// first frame's work; the rest of a node's text is in the list below the graph and announced on focus.
const elementsOf = (view, nodes, edges, large, positions) => [
  ...nodes.map((n) => ({ group: "nodes",
    data: { id: n.id, label: large ? (n.check ? `[${CHECK_WORDS[n.check].toLowerCase()}] ${n.label}` : n.label)
      : (n.check ? `${n.text}\n${n.checkText}` : n.text) },
    classes: [n.id === view.centre ? "centre" : "", n.state || "", n.check ? `check-${n.check}` : ""].join(" ").trim(),
    position: positions ? positions.get(n.id) : undefined })),
  ...edges.map((e) => ({ group: "edges", data: { id: e.id, source: e.source, target: e.target } })),
];
const OPEN_ZOOM = 0.6;
const REST_CHUNK = 2000;

function draw(view, container) {
  const large = view.nodes.length > SIMPLE_LAYOUT_AT;
  const positions = large ? layered(view.nodes) : null;
  let elements = elementsOf(view, view.nodes, view.edges, large, positions);
  view.rest = [];
  if (large) {
    // The first frame styles and draws what is in view (and a viewport around it); the rest follows
    // in chunks once that frame is painted (addRest).
    const at = positions.get(view.centre);
    const w = container.clientWidth / OPEN_ZOOM / 2;
    const hgt = container.clientHeight / OPEN_ZOOM / 2;
    const { first, rest } = nearFirst(view.nodes, view.edges, positions,
      { x1: at.x - w, y1: at.y - hgt, x2: at.x + w, y2: at.y + hgt });
    elements = elementsOf(view, first.nodes, first.edges, large, positions);
    view.rest = elementsOf(view, rest.nodes, rest.edges, large, positions);
  }
  const style = large ? [...STYLE, { selector: "node", style: { "text-wrap": "none", height: 30 } },
    { selector: "edge", style: { "curve-style": "straight" } }] : STYLE;
  cy = cytoscape({
    container, elements, style, wheelSensitivity: 0.3, minZoom: 0.02, maxZoom: 3,
    textureOnViewport: large, hideEdgesOnViewport: large, hideLabelsOnViewport: large, motionBlur: false,
    pixelRatio: large ? 1 : "auto",
    // A large graph opens on its centre, readable; the rest is a pan or a zoom away.  Its viewport is set
    // from the computed positions: fitting would measure every label first.
    zoom: large ? OPEN_ZOOM : undefined,
    pan: large ? { x: container.clientWidth / 2 - OPEN_ZOOM * positions.get(view.centre).x,
      y: container.clientHeight / 2 - OPEN_ZOOM * positions.get(view.centre).y } : undefined,
    layout: large ? { name: "preset", fit: false }
      : { name: "dagre", rankDir: "LR", nodeSep: 16, rankSep: 70, fit: true, padding: 20 },
  });
  view.cy = cy;
  window.headwater.cy = cy;
  cy.on("tap", "node", (ev) => {
    const id = ev.target.id();
    if (ev.originalEvent && ev.originalEvent.shiftKey) pick(view, id);
    else recentre(view, id);
  });
  container.addEventListener("keydown", (ev) => {
    if (ev.key.startsWith("Arrow")) {
      ev.preventDefault();
      focusNode(view, move(view.nodes, view.edges, view.focused, ev.key));
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      recentre(view, view.focused);
    } else if (ev.key === " ") {
      ev.preventDefault();
      pick(view, view.focused);
    } else if (ev.key === "e" || ev.key === "E") {
      toggleExplain(view);
    }
  });
  focusNode(view, view.focused, false);
}

function recentre(view, id) {
  const n = view.nodes.find((x) => x.id === id);
  if (n) location.hash = datasetLink(n.ref, `&depth=${view.depth}`);
}

function focusNode(view, id, announce = true) {
  if (!id) return;
  view.focused = id;
  view.cy.nodes().removeClass("focused");
  const el = view.cy.getElementById(id);
  el.addClass("focused");
  const n = view.nodes.find((x) => x.id === id);
  const where = n.depth < 0 ? `${-n.depth} hops upstream` : n.depth > 0 ? `${n.depth} hops downstream` : "the centre";
  view.status.textContent = `Focused: ${n.text.replace("\n", ", ")}${n.check ? `, ${n.checkText}` : ""}; ${where}.`;
  view.status.dataset.focused = n.label;
  focusedDetails(view);
  if (announce && el.nonempty()) {
    const bb = el.renderedBoundingBox();
    const w = view.cy.width();
    const hgt = view.cy.height();
    if (bb.x1 < 0 || bb.y1 < 0 || bb.x2 > w || bb.y2 > hgt) view.cy.center(el);
  }
}

async function pick(view, id) {
  await view.complete; // every node is in the graph: a path may run through any of them
  view.cy.elements().removeClass("picked onpath dim");
  if (id === null) {
    view.picked = [];
    sideDetails(view);
    return;
  }
  view.picked = [...view.picked.filter((x) => x !== id), id].slice(-2);
  for (const p of view.picked) view.cy.getElementById(p).addClass("picked");
  if (view.picked.length === 2) {
    const found = pathsBetween(view.edges, view.picked[0], view.picked[1]);
    view.path = found;
    view.cy.nodes().addClass("dim");
    for (const n of found.nodes) view.cy.getElementById(n).removeClass("dim").addClass("onpath");
    for (const e of found.edges) view.cy.getElementById(e.id).addClass("onpath");
    for (const p of view.picked) view.cy.getElementById(p).removeClass("dim");
  }
  sideDetails(view);
}

// A node's failed checks: which, what was observed against which baseline, and what that meant.
function checksPanel(n, id) {
  if (!n.check) return null;
  return h("section", { id, class: `checks ${n.check}`, "aria-label": `Checks of ${n.label}` },
    h("p", {}, h("span", { class: `badge ${n.check === "failed" ? "bad" : "warn"}` }, CHECK_WORDS[n.check]), " ",
      CHECK_TEXT[n.check], n.check === "failed" ? "; downstream keeps the last good version." : "."),
    h("ul", {}, n.checks.map((c) => h("li", { class: "check" },
      h("strong", {}, c.name), ` (${c.kind}, ${c.severity === "error" ? "blocking" : "warning"}): `,
      `observed ${c.observed ?? "nothing"}; baseline ${c.baseline ?? "none"}.`, c.message ? ` ${c.message}` : ""))));
}

// The focused node's details, when it is not the centre (the keyboard's way to read any node).
function focusedDetails(view) {
  if (!view.focusBox) return;
  const n = view.nodes.find((x) => x.id === view.focused);
  if (!n || n.id === view.centre) {
    view.focusBox.replaceChildren();
    return;
  }
  view.focusBox.replaceChildren(h("h2", {}, "Focused: ", h("a", { href: datasetLink(n.ref) }, n.label)),
    h("p", {}, freshness(n.state), " ", n.text.split("\n")[1]), checksPanel(n, "focused-checks"));
}

function sideDetails(view) {
  const centre = view.nodes.find((n) => n.id === view.centre);
  view.focusBox = h("section", { id: "focused-details", "aria-label": "Focused dataset" });
  const parts = [h("h2", {}, "This dataset"), h("p", {}, freshness(centre.state), " ", centre.text.split("\n")[1]),
    checksPanel(centre, "centre-checks")];
  const latest = centre.node.latest;
  if (latest) {
    parts.push(h("p", {}, "Last written by ", h("code", {}, `${latest.pipeline}/${latest.step}`), " in run ",
      h("a", { href: runLink(latest.runId) }, latest.runId), ` at ${when(latest.writtenAt)}.`));
  }
  if (view.detail && view.detail.versions.length) {
    parts.push(h("h2", {}, "Latest writes"), h("ul", { id: "versions" }, view.detail.versions.slice(0, 10).map((v) =>
      h("li", {}, `${when(v.writtenAt)}: ${fmt(v.rowCount)} rows by ${v.pipeline}/${v.step} `,
        h("a", { href: runLink(v.runId) }, "run")))));
  }
  parts.push(view.focusBox);
  parts.push(h("p", { class: "hint" }, "Click a dataset to re-centre on it; Shift+click (or Space) two datasets to "
    + "highlight every path between them."));
  if (view.picked.length) {
    const label = (id) => view.nodes.find((n) => n.id === id).label;
    parts.push(h("h2", {}, "Path"), h("p", { id: "path-status" }, view.picked.length < 2
      ? `Selected ${label(view.picked[0])}; select one more.`
      : view.path && view.path.nodes.size
        ? `${view.path.nodes.size} datasets and ${view.path.edges.length} edges lie on paths from ${label(view.path.from)} `
          + `to ${label(view.path.to)}.`
        : `No path joins ${label(view.picked[0])} and ${label(view.picked[1])}.`));
  }
  if (view.explained) parts.push(explainPanel(view));
  if (view.columnLinks) parts.push(columnsPanel(view));
  view.side.replaceChildren(...parts.filter(Boolean));
  focusedDetails(view);
}

// --------------------------------------------------------------------------------------- explain overlay

const REASON_WORDS = { producer_failed: "failed step", producer_skipped: "skipped step", row_count_drop: "row drop",
  row_count_spike: "row spike", schema_changed: "schema change", stale: "stale input", never_written: "never written" };

async function toggleExplain(view) {
  await view.complete;
  const button = document.getElementById("explain-toggle");
  if (view.explained) {
    view.explained = null;
    view.cy.nodes().removeClass("cause").removeData("score");
    button.setAttribute("aria-pressed", "false");
    sideDetails(view);
    return;
  }
  const ns = `&namespace=${enc(view.namespace)}`;
  const explanation = await api(`/v1/explain/${enc(view.name)}?depth=${Math.max(view.depth, 1)}${ns}`);
  view.explained = explanation;
  button.setAttribute("aria-pressed", "true");
  explanation.nodes.forEach((n, i) => {
    const el = view.cy.getElementById(key(n.dataset));
    if (el.nonempty() && n.score > 0) {
      el.data("score", n.score);
      el.data("label", `#${i + 1} ${el.data("label")}`);
      el.addClass("cause");
    }
  });
  sideDetails(view);
  window.headwater.explained = true;
}

function explainPanel(view) {
  const causes = view.explained.nodes.filter((n) => n.score > 0);
  return h("section", { id: "explain-panel", "aria-label": "Likely causes" },
    h("h2", {}, "Likely causes"),
    causes.length ? h("ol", { id: "causes" }, causes.map((n) => h("li", { class: "cause-item" },
      h("a", { href: datasetLink(n.dataset) }, n.dataset.name), ` — score ${n.score.toFixed(0)}`,
      h("ul", {}, n.reasons.map((r) => h("li", {}, h("strong", {}, REASON_WORDS[r.code] || r.code), `: ${r.message}`))),
      n.failedSteps.length ? h("p", {}, "Failed: ", n.failedSteps.map((s) =>
        h("a", { href: runLink(s.runId) }, `${s.pipeline}/${s.step} (${s.phase})`))) : null,
      n.latestVersion ? h("p", {}, "Latest write: ", h("a", { href: runLink(n.latestVersion.runId) },
        `${n.latestVersion.pipeline}/${n.latestVersion.step}`), `, ${fmt(n.latestVersion.rowCount)} rows`
        + (n.rowCountChangePct !== null ? ` (${pct(n.rowCountChangePct)})` : "")) : null)))
      : h("p", {}, "Nothing upstream looks wrong."));
}

// ---------------------------------------------------------------------------------------- column lineage

const MAX_COLUMN_NODES = 100;

async function toggleColumns(view, on) {
  await view.complete;
  view.cy.edges(".column").remove();
  if (!on) {
    view.columnLinks = null;
    sideDetails(view);
    return;
  }
  const asked = view.nodes.slice(0, MAX_COLUMN_NODES);
  const answers = await Promise.all(asked.map((n) =>
    api(`/v1/columns/${enc(n.ref.name)}?namespace=${enc(n.ref.namespace)}`).catch(() => null)));
  const links = [];
  for (const a of answers.filter(Boolean)) {
    for (const l of a.links) links.push({ ...l, output: a.dataset });
  }
  view.columnLinks = { links, capped: view.nodes.length > MAX_COLUMN_NODES };
  links.forEach((l, i) => {
    const source = key(l.input);
    const target = key(l.output);
    if (view.cy.getElementById(source).nonempty() && view.cy.getElementById(target).nonempty()) {
      view.cy.add({ group: "edges", classes: "column",
        data: { id: `column-${i}`, source, target, label: `${l.inputField} → ${l.field}` } });
    }
  });
  sideDetails(view);
}

function columnsPanel(view) {
  const { links, capped } = view.columnLinks;
  return h("section", { id: "columns-panel", "aria-label": "Column lineage" },
    h("h2", {}, "Column lineage"),
    capped ? h("p", { class: "note" }, `Columns of the first ${MAX_COLUMN_NODES} datasets only.`) : null,
    links.length ? h("ul", {}, links.map((l) => h("li", { class: "column-link" },
      `${l.input.name}.${l.inputField} → ${l.output.name}.${l.field}`)))
      : h("p", {}, "No column lineage is known here (producers report it in OpenLineage columnLineage facets)."));
}

// ---------------------------------------------------------------------------------------------- run page

function commands(run) {
  const ns = run.namespace ? ` -n ${run.namespace}` : "";
  const out = [];
  if (run.name && ["Failed", "Cancelled"].includes(run.phase)) {
    out.push(["Retry the failed and skipped steps", `kubectl headwater run ${run.pipeline}${ns} --retry-of ${run.name}`]);
  }
  out.push(["Run the pipeline again", `kubectl headwater run ${run.pipeline}${ns}`]);
  for (const s of run.steps) {
    out.push([`Re-run from ${s.step}`, `kubectl headwater run ${run.pipeline}${ns} --from-step ${s.step}`]);
  }
  return out;
}

function copyable(label, text) {
  const code = h("code", {}, text);
  return h("li", {}, `${label}: `, code, " ", h("button", { type: "button", class: "copy", onclick: async (ev) => {
    try {
      await navigator.clipboard.writeText(text);
      ev.target.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      ev.target.textContent = "Selected: press Ctrl+C";
    }
  } }, "Copy"));
}

function gantt(steps) {
  const times = steps.flatMap((s) => [s.startedAt, s.finishedAt]).filter(Boolean).map((t) => new Date(t).getTime());
  if (!times.length) return h("p", {}, "No step has started.");
  const t0 = Math.min(...times);
  const span = Math.max(1, Math.max(...times) - t0);
  return h("div", { class: "gantt", role: "list", "aria-label": "Timeline of the steps" }, steps.map((s) => {
    const start = s.startedAt ? new Date(s.startedAt).getTime() : null;
    const end = s.finishedAt ? new Date(s.finishedAt).getTime() : start;
    const left = start === null ? 0 : ((start - t0) / span) * 100;
    const width = start === null ? 0 : Math.max(0.5, ((end - start) / span) * 100);
    const text = `${s.step}: ${s.phase}, ${duration(s.startedAt, s.finishedAt)}, ${s.attempts} attempt${s.attempts === 1 ? "" : "s"}`;
    return h("div", { class: "gantt-row", role: "listitem" },
      h("span", { class: "gantt-label" }, s.step),
      h("span", { class: "gantt-track" }, h("span", { class: `gantt-bar ${PHASE_CLASS[s.phase] || "idle"}`,
        style: `left:${left}%;width:${width}%`, title: text })),
      h("span", { class: "gantt-text" }, `${s.phase} · ${duration(s.startedAt, s.finishedAt)} · ${s.attempts}×`));
  }));
}

async function runPage(params) {
  const id = params.get("id");
  const run = await api(`/v1/runs/${enc(id)}`);
  const scope = run.namespace ? `&namespace=${enc(run.namespace)}` : "";
  const flow = await api(`/v1/flow?pipeline=${enc(run.pipeline)}${scope}`).catch(() => ({ links: [] }));
  const steps = new Set(run.steps.map((s) => s.step));
  const container = h("div", { id: "run-graph", tabindex: "0", role: "img",
    "aria-label": `Steps of run ${run.name || run.id}: ${run.steps.map((s) => `${s.step} ${s.phase}`).join(", ")}` });
  setPage(
    h("h1", {}, `Run ${run.name || run.id} `, phase(run.phase)),
    h("p", {}, `Pipeline ${run.pipeline}`, run.namespace ? ` in ${run.namespace}` : "", `, trigger ${run.trigger}, `,
      `started ${when(run.startedAt)}, took ${duration(run.startedAt, run.finishedAt)}.`,
      run.truncated ? " Only the first steps are shown." : ""),
    h("h2", {}, "Steps"), container,
    h("h2", {}, "Timeline"), gantt(run.steps),
    h("table", { class: "list", id: "steps" },
      h("thead", {}, h("tr", {}, ["Step", "Phase", "Attempts", "Started", "Took", "Rows", "Message"].map((t) => h("th", {}, t)))),
      h("tbody", {}, run.steps.map((s) => h("tr", { "data-step": s.step, class: `step-${PHASE_CLASS[s.phase] || "idle"}` },
        h("td", {}, s.step), h("td", {}, phase(s.phase)), h("td", { class: "num" }, s.attempts),
        h("td", {}, when(s.startedAt)), h("td", {}, duration(s.startedAt, s.finishedAt)),
        h("td", { class: "num" }, fmt(s.rowsAffected)),
        h("td", { class: "message" }, s.error || (s.phase === "Skipped" ? "skipped: a step it depends on did not succeed"
          : "")))))),
    h("h2", {}, "Commands"), h("ul", { class: "commands" }, commands(run).map(([l, t]) => copyable(l, t))));
  cy = cytoscape({
    container, style: [
      ...STYLE.slice(0, 1),
      { selector: "node", style: { width: 150, "background-color": "#eef1f4" } },
      { selector: "node.ok", style: { "background-color": "#e3f4e6", "border-color": "#2e7d32" } },
      { selector: "node.bad", style: { "background-color": "#fbe1df", "border-color": "#c62828" } },
      { selector: "node.warn", style: { "background-color": "#fff1cc", "border-color": "#b7791f" } },
      { selector: "node.run", style: { "background-color": "#e0ecfb", "border-color": "#1f5fbf" } },
      STYLE.find((s) => s.selector === "edge"),
    ],
    elements: [
      ...run.steps.map((s) => ({ group: "nodes", classes: PHASE_CLASS[s.phase] || "idle",
        data: { id: s.step, label: `${s.step}\n${s.phase}` } })),
      ...flow.links.filter((l) => steps.has(l.from) && steps.has(l.to)).map((l) => ({ group: "edges",
        data: { id: `${l.from}->${l.to}`, source: l.from, target: l.to } })),
    ],
    layout: { name: "dagre", rankDir: "LR", nodeSep: 12, rankSep: 50, fit: true, padding: 10 },
    userZoomingEnabled: true,
  });
}

// ------------------------------------------------------------------------------------------ freshness

async function freshnessPage() {
  const board = await api("/v1/freshness");
  if (!board.available) {
    setPage(h("h1", {}, "Freshness"), h("p", {}, board.reason || "Not available."));
    return;
  }
  const sla = (s) => (s.maxAge ? `max age ${s.maxAge}` : `by ${s.deadline} ${s.timeZone || "UTC"}`);
  setPage(h("h1", {}, "Freshness"),
    board.incidents.length ? h("section", { id: "incidents" }, h("h2", {}, "Open incidents"),
      board.incidents.map((i) => h("div", { class: "incident" },
        h("p", {}, h("strong", {}, `${i.pipeline}: `), i.cause, ` (raised ${when(i.raisedAt)})`),
        h("p", {}, `At risk downstream (${i.affectedCount}):`),
        h("ul", {}, i.affectedDatasets.map((d) => h("li", {}, h("a", { href: datasetLink(d) }, d.name))))))) : null,
    h("table", { class: "list", id: "board" },
      h("thead", {}, h("tr", {}, ["Dataset", "Pipeline", "SLA", "State", "Last updated", "Why"].map((t) => h("th", {}, t)))),
      h("tbody", {}, board.datasets.map((d) => h("tr", {},
        h("td", {}, h("a", { href: datasetLink(d) }, d.name)), h("td", {}, d.pipeline), h("td", {}, sla(d.sla)),
        h("td", {}, freshness(d.state)), h("td", {}, when(d.lastUpdated)), h("td", {}, d.atRisk || ""))))),
    board.truncated ? h("p", { class: "note" }, "Only the first datasets are shown.") : null);
}

// -------------------------------------------------------------------------------------------- router

const ROUTES = { "/": home, "/runs": runsPage, "/search": searchPage, "/dataset": datasetPage, "/run": runPage,
  "/freshness": freshnessPage };

async function route() {
  const { path, params } = hashParams();
  const page = ROUTES[path] || home;
  window.headwater.ready = false;
  say("");
  try {
    await page(params);
  } catch (error) {
    if (error instanceof Unauthorized) {
      sessionStorage.removeItem(TOKEN);
      login(route);
      if (sessionStorage.getItem(TOKEN) === null && path !== "/") say("Sign in to see this page.");
    } else {
      setPage(h("h1", {}, "Something went wrong"), h("p", { id: "error" }, error.message));
    }
  }
  window.headwater.ready = true;
}

document.getElementById("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = document.getElementById("search").value.trim();
  if (q) location.hash = `#/search?q=${enc(q)}`;
});
document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN);
  document.getElementById("logout").hidden = true;
  route();
});
document.getElementById("logout").hidden = !sessionStorage.getItem(TOKEN);
window.addEventListener("hashchange", route);
route();
