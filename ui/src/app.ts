// The front end of `kondukt ui`: a few pages rendered from the JSON API of operator/kondukt/cli/ui/server.py.
// No framework: the pages are small, and every list the browser shows is one page the server cut.
// The graph is laid out here with dagre (npm: @dagrejs/dagre); what it shows (nodes, edges, colours) is the
// server's, computed by the same code as `kondukt graph`. Nothing is fetched from anywhere but this server.
import dagre from "@dagrejs/dagre";

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Config { token: string; namespace: string; allNamespaces: boolean; readOnly: boolean; archive: boolean }

const config: Config = JSON.parse(
  document.querySelector<HTMLMetaElement>('meta[name="kondukt-config"]')?.content || "{}",
);
const main = document.getElementById("main") as HTMLElement;
const banner = document.getElementById("banner") as HTMLElement;
const PAGE_SIZE = 100;
const ATTEMPT_PAGE = 100;

// ------------------------------------------------------------------------------------------ helpers
function h<K extends keyof HTMLElementTagNameMap>(
  tag: K, attrs: Record<string, string | boolean | number | null | undefined> = {}, ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) el.append(child);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag: string, attrs: Record<string, string | number> = {}): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

class ApiError extends Error {
  constructor(message: string, public status: number) { super(message); }
}

async function api(path: string, init: RequestInit = {}): Promise<Json> {
  const response = await fetch(path, { ...init, headers: { Accept: "application/json", ...(init.headers || {}) } });
  const text = await response.text();
  let body: Json = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { error: text }; }
  if (!response.ok) throw new ApiError((body && body.error) || `HTTP ${response.status}`, response.status);
  return body;
}

function showBanner(kind: "error" | "ok", text: string): void {
  banner.className = kind;
  banner.textContent = text;
  banner.hidden = false;
}
function clearBanner(): void { banner.hidden = true; banner.textContent = ""; }

function age(iso: string): string {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 120) return `${Math.round(seconds)}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

function phaseBadge(phase: string): HTMLElement {
  return h("span", { class: `phase phase-${phase || "PENDING"}` }, phase || "PENDING");
}

function pretty(value: Json): string { return JSON.stringify(value, null, 2); }

function parseHash(): { path: string[]; params: URLSearchParams } {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?", 2);
  return { path: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || "") };
}

function link(path: string[], params?: Record<string, string>): string {
  const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString() : "";
  return "#/" + path.map(encodeURIComponent).join("/") + (query ? "?" + query : "");
}

// Operations: the same requests `kondukt <op>` makes, through the server (which checks and sends them).
let bearer = sessionStorage.getItem("kondukt-bearer") || "";
async function operate(ns: string, name: string, body: Record<string, string>): Promise<void> {
  const headers: Record<string, string> = { "Content-Type": "application/json", "X-Kondukt-Token": config.token };
  if (config.readOnly) {
    if (!bearer) {
      bearer = (window.prompt("This UI is read-only: paste your own bearer token to make this request") || "").trim();
      if (bearer) sessionStorage.setItem("kondukt-bearer", bearer);
    }
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
  }
  try {
    const result = await api(`/api/namespaces/${encodeURIComponent(ns)}/workflows/${encodeURIComponent(name)}/operations`,
      { method: "POST", headers, body: JSON.stringify(body) });
    const warnings = (result.warnings || []).map((w: string) => `\nwarning: ${w}`).join("");
    showBanner("ok", result.message + warnings);
  } catch (err) {
    const e = err as ApiError;
    showBanner("error", `${body.op} refused: ${e.message}`);
  }
}

// ------------------------------------------------------------------------------------------ router
let cleanup: (() => void) | null = null;
let keyHandler: ((event: KeyboardEvent) => boolean) | null = null;

function route(): void {
  if (cleanup) { cleanup(); cleanup = null; }
  keyHandler = null;
  clearBanner();
  const { path, params } = parseHash();
  document.querySelectorAll<HTMLAnchorElement>("[data-nav]").forEach((a) => a.classList.remove("active"));
  const nav = path[0] === "definitions" || path[0] === "def" ? "definitions"
    : path[0] === "archive" || path[0] === "archived" ? "archive" : "list";
  document.querySelector(`[data-nav="${nav}"]`)?.classList.add("active");
  if (path[0] === "wf" && path.length === 3) workflowPage(path[1], path[2]);
  else if (path[0] === "archived" && path.length === 2) workflowPage("", "", path[1]);
  else if (path[0] === "archive") archivePage(params);
  else if (path[0] === "definitions") definitionsPage(params);
  else if (path[0] === "def" && path.length === 3) definitionPage(path[1], path[2]);
  else listPage(params);
}

// ------------------------------------------------------------------------------------------ list page
function listPage(params: URLSearchParams): void {
  const state = {
    ns: params.get("ns") ?? (config.allNamespaces ? "" : config.namespace),
    all: params.get("all") === "1" || (config.allNamespaces && !params.get("ns")),
    phase: params.get("phase") || "",
    q: params.get("q") || "",
    label: params.get("label") || "",
    offset: Number(params.get("offset") || "0"),
  };
  let selected = 0;
  let rows: Json[] = [];
  const search = h("input", { type: "search", id: "filter-text", placeholder: "filter: name, definition, message (/)",
    value: state.q, "aria-label": "filter by text" });
  const label = h("input", { type: "text", id: "filter-label", placeholder: "label selector (app=x)", value: state.label,
    "aria-label": "filter by label selector" });
  const ns = h("input", { type: "text", id: "filter-ns", value: state.all ? "" : state.ns, placeholder: "namespace",
    "aria-label": "namespace" });
  const all = h("input", { type: "checkbox", id: "filter-all", checked: state.all });
  const chips = h("span", { class: "chips", role: "group", "aria-label": "phase" });
  const table = h("table", { id: "workflows", "aria-label": "workflows" });
  const summary = h("p", { class: "muted", id: "list-summary" });
  const pager = h("div", { class: "pager" });
  main.replaceChildren(
    h("h1", {}, "Workflows"),
    h("div", { class: "filters" }, ns, h("label", {}, all, " all namespaces"), search, label, chips),
    summary, table, pager,
  );

  const go = (changes: Partial<typeof state>): void => {
    const next = { ...state, ...changes };
    const query: Record<string, string> = { phase: next.phase, q: next.q, label: next.label,
      offset: next.offset ? String(next.offset) : "" };
    if (next.all) query.all = "1"; else query.ns = next.ns;
    location.hash = link([], query);
  };
  search.addEventListener("change", () => go({ q: search.value, offset: 0 }));
  label.addEventListener("change", () => go({ label: label.value, offset: 0 }));
  ns.addEventListener("change", () => go({ ns: ns.value, all: false, offset: 0 }));
  all.addEventListener("change", () => go({ all: all.checked, offset: 0 }));

  const select = (index: number): void => {
    if (!rows.length) return;
    selected = Math.max(0, Math.min(rows.length - 1, index));
    table.querySelectorAll("tr.row").forEach((tr, i) => {
      tr.classList.toggle("selected", i === selected);
      tr.setAttribute("aria-selected", String(i === selected));
    });
    (table.querySelectorAll("tr.row")[selected] as HTMLElement | undefined)?.scrollIntoView({ block: "nearest" });
  };
  const open = (row: Json): void => { location.hash = link(["wf", row.namespace, row.name]); };

  // The chips are made once and updated in place (a pushed page must not take the keyboard focus away).
  const PHASES = ["RUNNING", "PAUSED", "COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED", "PENDING"];
  const chosen = new Set(state.phase.split(",").filter(Boolean));
  chips.replaceChildren(...PHASES.map((phase) => {
    const chip = h("button", { type: "button", class: "chip", "aria-pressed": String(chosen.has(phase)),
      "data-phase": phase }, phase);
    chip.addEventListener("click", () => {
      if (chosen.has(phase)) chosen.delete(phase); else chosen.add(phase);
      go({ phase: [...chosen].join(","), offset: 0 });
    });
    return chip;
  }));
  const prev = h("button", { type: "button", disabled: true }, "← newer");
  const next = h("button", { type: "button", disabled: true }, "older →");
  prev.addEventListener("click", () => go({ offset: Math.max(0, state.offset - PAGE_SIZE) }));
  next.addEventListener("click", () => go({ offset: state.offset + PAGE_SIZE }));
  pager.replaceChildren(prev, next);

  // One page as the server cut it (filters, newest first, this offset); pushed again on every change.
  const render = (page: Json): void => {
    const selectedName = rows[selected]?.name;
    rows = page.rows;
    const kept = rows.findIndex((row) => row.name === selectedName);
    if (kept >= 0) selected = kept;
    chips.querySelectorAll<HTMLElement>("[data-phase]").forEach((chip) => {
      const phase = chip.dataset.phase || "";
      chip.textContent = `${phase} ${page.phaseCounts[phase] || 0}`;
    });
    const first = page.matched ? page.offset + 1 : 0;
    summary.textContent = `${first}–${page.offset + rows.length} of ${page.matched} matching (${page.total} in ` +
      `${state.all ? "all namespaces" : "namespace " + state.ns}), newest first`;
    const head = h("tr", {}, ...(state.all ? ["Namespace"] : []).concat(
      ["Name", "Phase", "Progress", "Age", "Definition", "Started by", "Message"]).map((t) => h("th", { scope: "col" }, t)));
    table.replaceChildren(h("thead", {}, head), h("tbody", {}, ...rows.map((row, i) => {
      const tr = h("tr", { class: "row", "data-name": row.name, "aria-selected": "false" },
        ...(state.all ? [h("td", {}, row.namespace)] : []),
        h("td", {}, h("a", { href: link(["wf", row.namespace, row.name]) }, row.name)),
        h("td", {}, phaseBadge(row.phase)), h("td", {}, row.progress), h("td", { title: row.created }, age(row.created)),
        h("td", {}, row.definition), h("td", {}, row.startedBy), h("td", { class: "msg", title: row.message }, row.message));
      tr.addEventListener("click", (event) => { if ((event.target as HTMLElement).tagName !== "A") { select(i); open(row); } });
      return tr;
    })));
    select(selected);
    prev.disabled = state.offset <= 0;
    next.disabled = state.offset + PAGE_SIZE >= page.matched;
  };

  keyHandler = (event) => {
    if (event.key === "/") { search.focus(); search.select(); return true; }
    if (event.key === "j" || event.key === "ArrowDown") { select(selected + 1); return true; }
    if (event.key === "k" || event.key === "ArrowUp") { select(selected - 1); return true; }
    if (event.key === "Enter" && rows[selected]) { open(rows[selected]); return true; }
    return false;
  };
  // Live: the server watches the Workflow list and pushes this page again whenever a change alters it.
  const query = new URLSearchParams({ offset: String(state.offset), limit: String(PAGE_SIZE) });
  if (state.all) query.set("all", "1"); else query.set("namespace", state.ns);
  if (state.phase) query.set("phase", state.phase);
  if (state.q) query.set("q", state.q);
  if (state.label) query.set("label", state.label);
  let received = false;
  const source = new EventSource(`/api/workflows/stream?${query}`);
  source.addEventListener("page", (event) => {
    received = true;
    clearBanner();
    render(JSON.parse((event as MessageEvent).data));
  });
  source.addEventListener("problem", (event) => showBanner("error", JSON.parse((event as MessageEvent).data).error));
  source.onerror = () => {
    if (received) return; // the browser reconnects by itself; the rows shown stay until the next page
    // Refused before the first page (a bad filter, RBAC): ask once for the reason, say it, stop.
    source.close();
    api(`/api/workflows?${query}`).then((page) => {
      render(page);
      showBanner("error", "this list is not live (its stream was refused): reload the page to try again");
    }).catch((err) => {
      summary.textContent = "";
      table.replaceChildren();
      showBanner("error", (err as Error).message);
    });
  };
  // Ages move on without the server: redrawn from each row's creation time, no request.
  const ages = window.setInterval(() => {
    table.querySelectorAll<HTMLElement>("td[title]:not(.msg)").forEach((td) => { td.textContent = age(td.title); });
  }, 30000);
  cleanup = () => { source.close(); window.clearInterval(ages); };
}

// ------------------------------------------------------------------------------------------ the graph
function drawGraph(container: HTMLElement, graph: Json, selectedRef: string | null,
                   onSelect: (node: Json) => void, childLinks: Record<string, string> = {}): void {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: 24, ranksep: 36, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const cluster of graph.clusters) g.setNode(cluster.id, { label: cluster.label, clusterLabelPos: "top" });
  for (const cluster of graph.clusters) if (cluster.parent) g.setParent(cluster.id, cluster.parent);
  for (const node of graph.nodes) {
    const lines: string[] = node.label;
    const round = node.kind === "start" || node.kind === "end";
    const width = round ? 64 : Math.min(280, Math.max(90, Math.max(...lines.map((l) => l.length)) * 7 + 20));
    const height = round ? 40 : lines.length * 15 + 14 + (node.ref && childLinks[node.ref] ? 16 : 0);
    g.setNode(node.id, { width, height, node });
    if (node.cluster) g.setParent(node.id, node.cluster);
  }
  graph.edges.forEach((edge: Json, i: number) => {
    g.setEdge(edge.source, edge.target, { label: edge.label || "", edge, width: edge.label ? edge.label.length * 6 : 0,
      height: edge.label ? 14 : 0, labelpos: "c" }, `e${i}`);
  });
  dagre.layout(g);
  const size = g.graph();
  const svg = s("svg", { width: Math.ceil(size.width || 100), height: Math.ceil(size.height || 100),
    role: "group", "aria-label": `graph of ${graph.name}` }) as SVGSVGElement;
  for (const cluster of graph.clusters) {
    const box = g.node(cluster.id);
    if (!box) continue;
    svg.append(s("rect", { class: "cluster", x: box.x - box.width / 2, y: box.y - box.height / 2, width: box.width,
      height: box.height, rx: 6 }));
    const title = s("text", { x: box.x - box.width / 2 + 6, y: box.y - box.height / 2 + 13, class: "edgelabel" });
    title.textContent = cluster.label;
    svg.append(title);
  }
  const defs = s("defs");
  const marker = s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
    orient: "auto-start-reverse" });
  marker.append(s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#607d8b" }));
  defs.append(marker);
  svg.append(defs);
  for (const e of g.edges()) {
    const data = g.edge(e);
    const points: { x: number; y: number }[] = data.points || [];
    const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    svg.append(s("path", { class: `edge${data.edge.dashed ? " dashed" : ""}`, d, "marker-end": "url(#arrow)" }));
    if (data.label) {
      const t = s("text", { x: data.x, y: data.y + 4, class: "edgelabel", "text-anchor": "middle" });
      t.textContent = data.label;
      svg.append(t);
    }
  }
  for (const id of g.nodes()) {
    const box = g.node(id);
    const node = box && box.node;
    if (!node) continue;
    const group = s("g", { class: "node", tabindex: 0, role: "button", "data-id": node.id, "data-ref": node.ref || "",
      "data-status": node.status || "", "aria-label": `${node.label.join(", ")}` });
    if (selectedRef && node.ref === selectedRef) group.classList.add("selected");
    const fill = node.fill || "#ffffff";
    const stroke = node.stroke || "#78909c";
    const x = box.x - box.width / 2;
    const y = box.y - box.height / 2;
    const shape = node.kind === "start" || node.kind === "end"
      ? s("ellipse", { cx: box.x, cy: box.y, rx: box.width / 2, ry: box.height / 2, fill, stroke })
      : s("rect", { x, y, width: box.width, height: box.height, rx: node.kind === "system" || node.kind === "wait" ? 12 : 3,
        fill, stroke, "stroke-width": node.kind === "sub_workflow" ? 2.5 : 1.3 });
    if (node.dashed || node.kind === "placeholder") shape.setAttribute("stroke-dasharray", "5 4");
    group.append(shape);
    const lines: string[] = node.label;
    const lift = node.ref && childLinks[node.ref] ? 8 : 0;
    lines.forEach((line, i) => {
      const t = s("text", { x: box.x, y: box.y - ((lines.length - 1) * 15) / 2 + i * 15 + 4 - lift,
        "text-anchor": "middle" });
      t.textContent = line.length > 38 ? line.slice(0, 37) + "…" : line;
      if (i === 0) t.setAttribute("font-weight", "bold");
      group.append(t);
    });
    const title = s("title");
    title.textContent = lines.join("\n");
    group.append(title);
    const child = node.ref ? childLinks[node.ref] : undefined;
    if (child) {
      // A sub-workflow is one click away: its own page, from the node that started it.
      const anchor = s("a", { href: child, class: "child-link", "data-child": node.ref });
      const text = s("text", { x: box.x, y: box.y + box.height / 2 - 6, "text-anchor": "middle", fill: "#1565c0" });
      text.textContent = "open sub-workflow ↗";
      anchor.append(text);
      anchor.addEventListener("click", (event) => event.stopPropagation());
      group.append(anchor);
    }
    group.addEventListener("click", () => onSelect(node));
    group.addEventListener("keydown", (event) => {
      const key = (event as KeyboardEvent).key;
      if (key === "Enter" || key === " ") { event.preventDefault(); onSelect(node); }
    });
    svg.append(group);
  }
  container.replaceChildren(svg);
}

// ------------------------------------------------------------------------------------------ one workflow
function workflowPage(ns: string, name: string, archivedUid?: string): void {
  const base = archivedUid ? `/api/archive/${encodeURIComponent(archivedUid)}`
    : `/api/namespaces/${encodeURIComponent(ns)}/workflows/${encodeURIComponent(name)}`;
  let view: Json = null;
  let selectedRef: string | null = null;
  let openAttempt: string | null = null;
  let attemptFilter = "";
  let attemptLimit = ATTEMPT_PAGE;
  const title = h("h1", {}, name || "archived workflow");
  const back = h("p", {}, archivedUid ? h("a", { href: link(["archive"]) }, "← archive")
    : h("a", { href: link([], { ns }) }, `← workflows in ${ns}`));
  const live = h("span", { class: "live", id: "live" }, "connecting…");
  const meta = h("dl", { class: "meta" });
  const ops = h("div", { class: "ops", role: "group", "aria-label": "operations" });
  const graphBox = h("div", { class: "graphbox", id: "graph" });
  const panel = h("aside", { class: "panel", id: "panel", "aria-label": "task details", hidden: true });
  const attemptsFilter = h("input", { type: "search", id: "attempts-filter", placeholder: "filter attempts (/)",
    "aria-label": "filter attempts" });
  const attempts = h("table", { id: "attempts", "aria-label": "attempts" });
  const more = h("div", { class: "pager" });
  main.replaceChildren(
    back, title, meta, ops,
    h("div", { class: "layout" }, graphBox, panel),
    h("h2", {}, "Attempts"), h("div", { class: "filters" }, attemptsFilter), attempts, more,
  );
  attemptsFilter.addEventListener("input", () => { attemptFilter = attemptsFilter.value.toLowerCase(); attemptLimit = ATTEMPT_PAGE; renderAttempts(); });

  const opButton = (op: string, body: Record<string, string> = {}, danger = false): HTMLButtonElement => {
    const button = h("button", { type: "button", class: `op${danger ? " danger" : ""}`, "data-op": op }, op);
    button.addEventListener("click", () => {
      let reason = "";
      if (op === "terminate" && !window.confirm(`Terminate workflow ${name}?`)) return;
      if (op === "terminate" || op === "retry") reason = "";
      void operate(ns, name, { op, ...(reason ? { reason } : {}), ...body });
    });
    return button;
  };

  const renderHeader = (): void => {
    title.replaceChildren(view.name, phaseBadge(view.phase), live);
    const rows: [string, string | Node][] = [
      ["Namespace", view.namespace], ["Definition", view.definition], ["Progress", view.progress || "-"],
      ["Created", `${view.created} (${age(view.created)} ago)`], ["Started by", view.startedBy || "-"],
    ];
    if (view.startTime) rows.push(["Started", view.startTime]);
    if (view.endTime) rows.push(["Ended", view.endTime]);
    if (view.message) rows.push(["Message", view.message]);
    if (view.reason && view.reason !== view.message) rows.push(["Reason", view.reason]);
    if (view.suspended) rows.push(["Suspended", "yes (spec.suspend)"]);
    if (view.archived) rows.push(["Archived", `${view.archived.archived} (uid ${view.archived.uid})`]);
    meta.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    ops.replaceChildren(...view.operations.map((op: string) => opButton(op, {}, op === "terminate")));
  };

  const nodeAttempts = (ref: string): Json[] =>
    view.tasks.filter((t: Json) => t.definitionRef === ref || t.ref === ref);

  const renderPanel = (): void => {
    if (!selectedRef) { panel.hidden = true; return; }
    panel.hidden = false;
    const list = nodeAttempts(selectedRef);
    const close = h("button", { type: "button", class: "linkish close", "aria-label": "close panel" }, "✕ close");
    close.addEventListener("click", () => { selectedRef = null; openAttempt = null; renderPanel(); redrawGraph(); });
    const items = list.slice().reverse().map((t: Json, i: number) => {
      const box = h("div", { class: `attempt${i === 0 ? " current" : ""}`, "data-task-id": t.taskId },
        h("div", {}, phaseBadge(t.status), ` ${t.ref} · ${t.taskDefName} · seq ${t.seq}`,
          t.retryCount ? ` · retry ${t.retryCount}` : "", t.iteration ? ` · iteration ${t.iteration}` : ""),
        t.reason ? h("div", { class: "muted" }, `reason: ${t.reason}`) : null,
        h("div", { class: "muted" }, `scheduled ${t.scheduledTime || "-"} · started ${t.startTime || "-"} · ended ${t.endTime || "-"}`),
        t.childWorkflow ? h("div", {}, "sub-workflow: ", archivedUid ? t.childWorkflow
          : h("a", { href: link(["wf", ns, t.childWorkflow]), class: "child" }, t.childWorkflow)) : null);
      const details = h("button", { type: "button", class: "op", "data-action": "details" }, openAttempt === t.taskId ? "hide details" : "details & logs");
      details.addEventListener("click", () => { openAttempt = openAttempt === t.taskId ? null : t.taskId; renderPanel(); });
      box.append(details);
      if (openAttempt === t.taskId) box.append(attemptDetails(t.taskId));
      return box;
    });
    const forms = view.taskOperations.length ? taskForms(selectedRef, list[list.length - 1]) : null;
    panel.replaceChildren(h("h2", {}, `Task ${selectedRef}`), close,
      h("p", { class: "muted" }, `${list.length} attempt${list.length === 1 ? "" : "s"}`), ...items,
      ...(forms ? [forms] : []));
  };

  const attemptDetails = (taskId: string): HTMLElement => {
    const box = h("div", { class: "details", id: `details-${taskId}` }, h("p", { class: "muted" }, "loading…"));
    const attemptPath = `${base}/attempts/${encodeURIComponent(taskId)}`;
    void (async () => {
      try {
        const a = await api(attemptPath);
        const logs = h("div", { class: "logs" }, h("p", { class: "muted" }, "loading logs…"));
        box.replaceChildren(
          h("h3", {}, "Input"), h("pre", { class: "input" }, pretty(a.inputData)),
          h("h3", {}, "Output"), h("pre", { class: "output" }, pretty(a.outputData)),
          a.reason ? h("p", {}, h("b", {}, "Reason: "), a.reason) : "",
          h("p", { class: "muted" }, `taskId ${a.taskId}${a.workerId ? " · worker " + a.workerId : ""} · updated ${a.updateTime || "-"}`),
          h("h3", {}, "Logs"), logs);
        if (archivedUid) {
          logs.replaceChildren(h("p", { class: "muted" }, "logs are not archived: the pods went with the workflow"));
          return;
        }
        try {
          const l = await api(`${attemptPath}/logs`);
          if (!l.pods.length) {
            logs.replaceChildren(h("p", { class: "muted" }, `no pod matches ${l.selector} (the attempt ran no pod, or it was deleted)`));
          } else {
            logs.replaceChildren(...l.pods.map((p: Json) => h("div", { class: "pod" },
              h("p", {}, h("b", {}, `pod ${p.name}`), ` · ${p.phase}${p.node ? " on " + p.node : ""}`),
              p.error !== undefined ? h("pre", { class: "log-error" }, `the API server refused the log: ${p.error}`)
                : h("pre", { class: "log" }, p.log || "(empty log)"))));
          }
        } catch (err) {
          logs.replaceChildren(h("pre", { class: "log-error" }, `the API server refused: ${(err as Error).message}`));
        }
      } catch (err) {
        box.replaceChildren(h("pre", { class: "log-error" }, (err as Error).message));
      }
    })();
    return box;
  };

  const taskForms = (ref: string, latest: Json): HTMLElement => {
    const form = h("div", { class: "form" }, h("h3", {}, "Operations on this task"));
    const output = h("textarea", { id: "op-output", "aria-label": "output JSON", placeholder: '{"approved": true}' });
    const status = h("select", { id: "op-status", "aria-label": "status" },
      ...view.completableStatuses.map((st: string) => h("option", { value: st }, st)));
    const taskInput = h("textarea", { id: "op-task-input", "aria-label": "new task input JSON (rerun)", placeholder: "{}" });
    const buttons = h("div", { class: "ops" });
    for (const op of view.taskOperations) {
      const button = h("button", { type: "button", class: "op", "data-op": op },
        op === "rerun" ? "rerun from here" : op);
      button.addEventListener("click", () => {
        const body: Record<string, string> = { op, task: ref };
        if (op === "complete") { body.status = status.value; body.output = output.value.trim(); }
        if (op === "skip") body.output = output.value.trim();
        if (op === "rerun") body.taskInput = taskInput.value.trim();
        void operate(ns, name, body);
      });
      buttons.append(button);
    }
    form.append(buttons, h("label", { for: "op-status" }, "status (complete)"), status,
      h("label", { for: "op-output" }, "output (complete, skip): JSON object"), output,
      h("label", { for: "op-task-input" }, "new task input (rerun): JSON object"), taskInput);
    if (latest && ["HUMAN", "WAIT"].includes(latest.type)) form.prepend(h("p", {}, `${latest.type} task: complete it below.`));
    return form;
  };

  const select = (node: Json): void => {
    if (node.kind === "collapsed") {
      const fork = view.graph.edges.find((e: Json) => e.target === node.id);
      const forkNode = fork && view.graph.nodes.find((n: Json) => n.id === fork.source);
      attemptsFilter.value = forkNode ? `parent:${forkNode.ref}` : "";
      attemptFilter = attemptsFilter.value.toLowerCase();
      attemptLimit = ATTEMPT_PAGE;
      renderAttempts();
      attemptsFilter.scrollIntoView({ block: "center" });
      return;
    }
    if (!node.ref) return;
    selectedRef = node.ref;
    openAttempt = null;
    renderPanel();
    redrawGraph();
    (panel.querySelector("button") as HTMLElement | null)?.focus({ preventScroll: true });
  };

  const redrawGraph = (): void => {
    if (!view.graph) { graphBox.replaceChildren(h("p", { class: "muted" }, "no definition to draw yet")); return; }
    const focused = (document.activeElement as Element | null)?.getAttribute?.("data-id");
    const children: Record<string, string> = {};
    if (!archivedUid) for (const t of view.tasks) if (t.childWorkflow) children[t.definitionRef] = link(["wf", ns, t.childWorkflow]);
    drawGraph(graphBox, view.graph, selectedRef, select, children);
    if (focused) (graphBox.querySelector(`[data-id="${CSS.escape(focused)}"]`) as HTMLElement | null)?.focus();
  };

  const renderAttempts = (): void => {
    let list: Json[] = view.tasks;
    if (attemptFilter.startsWith("parent:")) {
      const parent = attemptFilter.slice(7);
      list = list.filter((t) => t.parentTaskRef.toLowerCase() === parent);
    } else if (attemptFilter) {
      list = list.filter((t) => `${t.ref} ${t.taskDefName} ${t.status} ${t.reason}`.toLowerCase().includes(attemptFilter));
    }
    const shown = list.slice(0, attemptLimit);
    attempts.replaceChildren(
      h("thead", {}, h("tr", {}, ...["Seq", "Reference", "Task", "Status", "Retry", "Started", "Ended", "Reason"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...shown.map((t) => {
        const tr = h("tr", { class: "row", "data-task-id": t.taskId, tabindex: 0 },
          h("td", {}, String(t.seq)), h("td", {}, t.ref), h("td", {}, t.taskDefName), h("td", {}, phaseBadge(t.status)),
          h("td", {}, String(t.retryCount)), h("td", {}, t.startTime), h("td", {}, t.endTime), h("td", { class: "msg" }, t.reason));
        const pick = (): void => { selectedRef = t.definitionRef; openAttempt = t.taskId; renderPanel(); redrawGraph(); };
        tr.addEventListener("click", pick);
        tr.addEventListener("keydown", (e) => { if (e.key === "Enter") pick(); });
        return tr;
      })));
    const showMore = h("button", { type: "button", hidden: list.length <= attemptLimit }, `show ${Math.min(ATTEMPT_PAGE, list.length - attemptLimit)} more`);
    showMore.addEventListener("click", () => { attemptLimit += ATTEMPT_PAGE; renderAttempts(); });
    more.replaceChildren(h("span", { class: "muted" }, `${shown.length} of ${list.length} attempts`), showMore);
  };

  const render = (next: Json): void => {
    if (next.error) { showBanner("error", next.error); return; }
    const first = view === null;
    view = next;
    renderHeader();
    redrawGraph();
    renderAttempts();
    if (selectedRef) {
      // Keep an open attempt's details (and their logs) as they are: re-render only the list part.
      const openDetails = openAttempt ? panel.querySelector(`#details-${CSS.escape(openAttempt)}`) : null;
      renderPanel();
      if (openDetails && openAttempt) panel.querySelector(`#details-${CSS.escape(openAttempt)}`)?.replaceWith(openDetails);
    }
    main.setAttribute("data-resource-version", view.resourceVersion);
    main.setAttribute("data-phase", view.phase);
    if (first) main.setAttribute("data-rendered", String(performance.now()));
  };

  keyHandler = (event) => {
    if (event.key === "/") { attemptsFilter.focus(); return true; }
    if (event.key === "Escape") {
      if (selectedRef) { selectedRef = null; openAttempt = null; renderPanel(); redrawGraph(); return true; }
      location.hash = archivedUid ? link(["archive"]) : link([], { ns });
      return true;
    }
    return false;
  };
  if (archivedUid) {
    // An archived run does not change: read once, no pushes, no operations.
    live.textContent = "archived";
    live.className = "live off";
    api(base).then(render).catch((err) => showBanner("error", (err as Error).message));
    return;
  }
  const source = new EventSource(`${base}/stream`);
  source.addEventListener("workflow", (event) => {
    live.textContent = "● live";
    live.className = "live";
    render(JSON.parse((event as MessageEvent).data));
  });
  source.addEventListener("deleted", () => { showBanner("error", `workflow ${ns}/${name} was deleted`); source.close(); });
  source.addEventListener("problem", (event) => showBanner("error", JSON.parse((event as MessageEvent).data).error));
  source.onerror = () => {
    live.textContent = "○ reconnecting";
    live.className = "live off";
    if (view === null) {
      // The stream was refused before it started: say why (the API server's answer) once.
      api(base)
        .then(render).catch((err) => { showBanner("error", (err as Error).message); source.close(); live.textContent = ""; });
    }
  };
  cleanup = () => source.close();
}

// ------------------------------------------------------------------------------------------ archive
function archivePage(params: URLSearchParams): void {
  const state = { ns: params.get("ns") ?? config.namespace, all: params.get("all") === "1",
    phase: params.get("phase") || "", label: params.get("label") || "", since: params.get("since") || "" };
  const go = (changes: Partial<typeof state>): void => {
    const next = { ...state, ...changes };
    const query: Record<string, string> = { phase: next.phase, label: next.label, since: next.since };
    if (next.all) query.all = "1"; else query.ns = next.ns;
    location.hash = link(["archive"], query);
  };
  const ns = h("input", { type: "text", id: "archive-ns", value: state.all ? "" : state.ns, "aria-label": "namespace" });
  const all = h("input", { type: "checkbox", id: "archive-all", checked: state.all });
  const label = h("input", { type: "text", id: "archive-label", value: state.label, placeholder: "label selector",
    "aria-label": "label selector" });
  const since = h("input", { type: "text", id: "archive-since", value: state.since, placeholder: "finished since (7d, 2h, RFC 3339)",
    "aria-label": "finished since" });
  ns.addEventListener("change", () => go({ ns: ns.value, all: false }));
  all.addEventListener("change", () => go({ all: all.checked }));
  label.addEventListener("change", () => go({ label: label.value }));
  since.addEventListener("change", () => go({ since: since.value }));
  const chosen = new Set(state.phase.split(",").filter(Boolean));
  const chips = h("span", { class: "chips", role: "group", "aria-label": "phase" },
    ...["COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED"].map((phase) => {
      const chip = h("button", { type: "button", class: "chip", "aria-pressed": String(chosen.has(phase)), "data-phase": phase }, phase);
      chip.addEventListener("click", () => {
        if (chosen.has(phase)) chosen.delete(phase); else chosen.add(phase);
        go({ phase: [...chosen].join(",") });
      });
      return chip;
    }));
  const table = h("table", { id: "archived", "aria-label": "archived workflows" });
  const summary = h("p", { class: "muted" }, "loading…");
  main.replaceChildren(h("h1", {}, "Archive"),
    h("div", { class: "filters" }, ns, h("label", {}, all, " all namespaces"), label, since, chips), summary, table);
  let rows: Json[] = [];
  let selected = 0;
  const select = (index: number): void => {
    if (!rows.length) return;
    selected = Math.max(0, Math.min(rows.length - 1, index));
    table.querySelectorAll("tr.row").forEach((tr, i) => tr.classList.toggle("selected", i === selected));
  };
  keyHandler = (event) => {
    if (event.key === "j" || event.key === "ArrowDown") { select(selected + 1); return true; }
    if (event.key === "k" || event.key === "ArrowUp") { select(selected - 1); return true; }
    if (event.key === "Enter" && rows[selected]) { location.hash = link(["archived", rows[selected].uid]); return true; }
    return false;
  };
  void (async () => {
    const query = new URLSearchParams();
    if (state.all) query.set("all", "1"); else query.set("namespace", state.ns);
    for (const key of ["phase", "label", "since"] as const) if (state[key]) query.set(key, state[key]);
    try {
      const page = await api(`/api/archive?${query}`);
      rows = page.rows;
      summary.textContent = `${rows.length} archived workflow${rows.length === 1 ? "" : "s"}` +
        `${rows.length >= page.limit ? ` (the newest ${page.limit})` : ""}, newest first`;
      table.replaceChildren(
        h("thead", {}, h("tr", {}, ...["Namespace", "Name", "Phase", "Finished", "Definition", "UID"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, ...rows.map((r) => {
          const tr = h("tr", { class: "row", "data-uid": r.uid },
            h("td", {}, r.namespace), h("td", {}, h("a", { href: link(["archived", r.uid]) }, r.name)),
            h("td", {}, phaseBadge(r.phase)), h("td", {}, r.finished), h("td", {}, r.definition), h("td", {}, r.uid));
          return tr;
        })));
      select(0);
    } catch (err) {
      summary.textContent = "";
      showBanner("error", (err as Error).message);
    }
  })();
}

// ------------------------------------------------------------------------------------------ definitions
function definitionsPage(params: URLSearchParams): void {
  const ns = params.get("ns") || config.namespace;
  const nsInput = h("input", { type: "text", id: "defs-ns", value: ns, "aria-label": "namespace" });
  nsInput.addEventListener("change", () => { location.hash = link(["definitions"], { ns: nsInput.value }); });
  const body = h("div", {}, h("p", { class: "muted" }, "loading…"));
  main.replaceChildren(h("h1", {}, "Definitions"), h("div", { class: "filters" }, nsInput), body);
  void (async () => {
    try {
      const page = await api(`/api/definitions?namespace=${encodeURIComponent(ns)}`);
      const wtable = h("table", { id: "workflowdefs", "aria-label": "workflow definitions" },
        h("thead", {}, h("tr", {}, ...["WorkflowDef", "Name", "Version", "Tasks", "Description"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ...page.workflowDefs.map((d: Json) => h("tr", { class: "row" },
          h("td", {}, h("a", { href: link(["def", d.namespace, d.name]) }, d.name)), h("td", {}, d.definitionName),
          h("td", {}, String(d.version)), h("td", {}, String(d.tasks)), h("td", {}, d.description)))));
      const ttable = h("table", { id: "taskdefs", "aria-label": "task definitions" },
        h("thead", {}, h("tr", {}, ...["TaskDef", "Image", "Retries", "Timeout (s)", "Description"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ...page.taskDefs.map((d: Json) => h("tr", {},
          h("td", {}, d.name), h("td", {}, d.image), h("td", {}, String(d.retryCount ?? "")),
          h("td", {}, String(d.timeoutSeconds ?? "")), h("td", {}, d.description)))));
      body.replaceChildren(h("h2", {}, `WorkflowDefs (${page.workflowDefs.length})`), wtable,
        h("h2", {}, `TaskDefs (${page.taskDefs.length})`), ttable);
    } catch (err) {
      body.replaceChildren();
      showBanner("error", (err as Error).message);
    }
  })();
}

function definitionPage(ns: string, name: string): void {
  const box = h("div", { class: "graphbox", id: "graph" });
  const spec = h("pre", { id: "def-spec" });
  main.replaceChildren(h("p", {}, h("a", { href: link(["definitions"], { ns }) }, `← definitions in ${ns}`)),
    h("h1", {}, `WorkflowDef ${name}`), box, h("h2", {}, "Spec"), spec);
  void (async () => {
    try {
      const d = await api(`/api/namespaces/${encodeURIComponent(ns)}/workflowdefs/${encodeURIComponent(name)}`);
      drawGraph(box, d.graph, null, () => undefined);
      spec.textContent = pretty(d.spec);
    } catch (err) {
      showBanner("error", (err as Error).message);
    }
  })();
}

// ------------------------------------------------------------------------------------------ keys
let pendingG = false;
document.addEventListener("keydown", (event) => {
  const target = event.target as HTMLElement;
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
  if (typing) {
    if (event.key === "Escape") target.blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (pendingG) {
    pendingG = false;
    if (event.key === "w") { location.hash = "#/"; event.preventDefault(); return; }
    if (event.key === "d") { location.hash = "#/definitions"; event.preventDefault(); return; }
    if (event.key === "a" && config.archive) { location.hash = "#/archive"; event.preventDefault(); return; }
  }
  if (event.key === "g") { pendingG = true; return; }
  if (event.key === "?") { (document.getElementById("help") as HTMLDialogElement).showModal(); event.preventDefault(); return; }
  if (event.key === "Enter" && (target.tagName === "A" || target.tagName === "BUTTON" || target.getAttribute("role") === "button")) return;
  if (keyHandler && keyHandler(event)) event.preventDefault();
});
document.getElementById("keys-help")?.addEventListener("click", () => (document.getElementById("help") as HTMLDialogElement).showModal());
if (config.archive) (document.getElementById("nav-archive") as HTMLElement).hidden = false;
if (config.readOnly) (document.getElementById("mode") as HTMLElement).textContent = "read-only: operations need your token";
window.addEventListener("hashchange", route);
route();
