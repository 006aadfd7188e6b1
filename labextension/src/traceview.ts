/**
 * TraceView widget (`kind` = "trace_view").
 *
 * Synced state: `trace` (updated live by Python), `filter_step`, `filter_status` (JS writes).
 * The waterfall is keyed by span id: a `trace` update creates rows for new spans, touches only
 * rows whose data changed, and moves rows only when the order changed, so a 1,000-span trace
 * stays cheap to update. Filtering toggles `hidden` on rows.
 *
 * Spans nest by cause: a span's parent is the span that emitted the event it handles
 * (`parent_id`, else the `parent_span_id` of the event with the span's `event_id`). Rows are in
 * tree order (children after their parent, by start time) and a parent's ▾/▸ collapses it.
 */
import { clear, formatDuration, h, prettyJson, token } from "./dom";
import { ensureStyles } from "./styles";
import type { AnyModel, Cleanup, TraceData, TraceSpan } from "./types";

interface Row {
  el: HTMLDivElement;
  name: HTMLDivElement;
  nameSig: string;
  bar: HTMLDivElement;
  dur: HTMLDivElement;
  sig: string;
  left: string;
  width: string;
  step: string;
  status: string;
}

/** Seconds after which a span without `end` is no longer drawn up to "now". */
const STALE_RUNNING_S = 600;

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

export interface SpanTree {
  /** Spans in tree order: each parent before its children, siblings by start time. */
  order: TraceSpan[];
  parent: Map<string, string | null>;
  depth: Map<string, number>;
  children: Map<string, string[]>;
}

/** The cause tree of a run's spans (see the module comment). Cycles are cut; unknown parents
 *  make roots. */
export function spanTree(data: TraceData): SpanTree {
  const spans = (data.spans ?? []).filter((s) => s && s.id !== undefined && s.id !== null);
  const ids = new Set(spans.map((s) => String(s.id)));
  const eventParent = new Map<string, string | null>();
  for (const e of data.events ?? []) if (e && e.id != null) eventParent.set(String(e.id), e.parent_span_id ?? null);
  const parent = new Map<string, string | null>();
  for (const s of spans) {
    const id = String(s.id);
    let p: string | null = s.parent_id != null ? String(s.parent_id) : null;
    if (p === null && s.event_id != null) p = eventParent.get(String(s.event_id)) ?? null;
    parent.set(id, p && p !== id && ids.has(p) ? p : null);
  }
  const start = (s: TraceSpan) => num(s.start) ?? Infinity;
  const byStart = spans
    .map((s, i) => ({ s, i }))
    .sort((a, b) => start(a.s) - start(b.s) || a.i - b.i)
    .map((x) => x.s);
  const children = new Map<string, string[]>();
  const roots: TraceSpan[] = [];
  const byId = new Map(spans.map((s) => [String(s.id), s]));
  for (const s of byStart) {
    const p = parent.get(String(s.id)) ?? null;
    if (p === null) roots.push(s);
    else {
      let l = children.get(p);
      if (!l) children.set(p, (l = []));
      l.push(String(s.id));
    }
  }
  const order: TraceSpan[] = [];
  const depth = new Map<string, number>();
  const visit = (s: TraceSpan, d: number) => {
    const stack: [TraceSpan, number][] = [[s, d]];
    while (stack.length) {
      const [x, dx] = stack.pop()!;
      const id = String(x.id);
      if (depth.has(id)) continue;
      depth.set(id, dx);
      order.push(x);
      const kids = children.get(id) ?? [];
      for (let i = kids.length - 1; i >= 0; i--) stack.push([byId.get(kids[i])!, dx + 1]);
    }
  };
  for (const r of roots) visit(r, 0);
  // spans only reachable through a cycle: roots of their own
  for (const s of byStart) if (!depth.has(String(s.id))) {
    parent.set(String(s.id), null);
    visit(s, 0);
  }
  return { order, parent, depth, children };
}

function relMs(ts: number | null | undefined, t0: number): string {
  const t = num(ts);
  return t === null ? "" : `+${formatDuration((t - t0) * 1000)}`;
}

export function renderTraceView(model: AnyModel, el: HTMLElement): Cleanup {
  ensureStyles(el.ownerDocument ?? document);

  // ------------------------------------------------------------ skeleton
  const statusBadge = h("span", { class: "wistro-status wistro-run-status" });
  const title = h("span", { class: "wistro-tv-title" });
  const traceId = h("code", { class: "wistro-trace-id" });
  const duration = h("span", { class: "wistro-run-duration" });
  const counts = h("span", { class: "wistro-muted wistro-run-counts" });
  const head = h("div", { class: "wistro-tv-head" }, statusBadge, title, traceId, duration, counts);
  const runErrors = h("div", { class: "wistro-tv-errors", hidden: true });
  const stepSelect = h("select", { class: "wistro-filter-step", title: "Only this step" });
  const statusSelect = h("select", { class: "wistro-filter-status", title: "Only this status" });
  const shown = h("span", { class: "wistro-muted wistro-shown" });
  const toolbar = h(
    "div",
    { class: "wistro-toolbar" },
    h("label", null, "Step", stepSelect),
    h("label", null, "Status", statusSelect),
    h("span", { class: "wistro-spacer" }),
    shown,
  );
  const axisTicks = h("div", { class: "ticks" });
  const axis = h("div", { class: "wistro-tv-axis" }, h("div", null, "step"), axisTicks, h("div"));
  const empty = h("div", { class: "wistro-empty" }, "No spans yet");
  const rowsEl = h("div", { class: "wistro-rows" });
  const waterfall = h("div", { class: "wistro-waterfall" }, empty, rowsEl);
  const detail = h("div", { class: "wistro-tv-detail", hidden: true });
  const root = h(
    "div",
    { class: "wistro-widget wistro-traceview" },
    head,
    runErrors,
    toolbar,
    axis,
    waterfall,
    detail,
  );
  el.appendChild(root);

  // ------------------------------------------------------------ state
  let disposed = false;
  let rows = new Map<string, Row>();
  let spansById = new Map<string, TraceSpan>();
  let currentTraceId: string | undefined;
  let selectedSpan: string | null = null;
  let t0 = 0;
  let total = 1;
  let lastKnown = 0; // latest timestamp seen in the trace
  let optionsKey = "";
  let tree: SpanTree = { order: [], parent: new Map(), depth: new Map(), children: new Map() };
  const collapsedSpans = new Set<string>();
  let ticker: ReturnType<typeof setInterval> | null = null;

  const trace = (): TraceData => (model.get("trace") ?? {}) as TraceData;

  // ------------------------------------------------------------ header
  function renderHeader(data: TraceData): void {
    const run = data.run ?? {};
    const st = token(run.status ?? "unknown");
    statusBadge.className = `wistro-status wistro-run-status status-${st}`;
    statusBadge.textContent = String(run.status ?? "—");
    title.textContent = [
      run.topic,
      run.trigger ? `(${run.trigger})` : "",
      run.version ? `· version ${run.version}` : "",
    ]
      .filter(Boolean)
      .join(" ");
    traceId.textContent = run.trace_id ? String(run.trace_id) : "";
    renderDuration();
    const spans = data.spans ?? [];
    const errors = spans.filter((s) => s.status && s.status !== "ok" && s.status !== "running");
    const parts = [
      `${spans.length} span${spans.length === 1 ? "" : "s"}`,
      `${(data.events ?? []).length} events`,
      `${(data.logs ?? []).length} logs`,
      `${(data.state_ops ?? []).length} state changes`,
    ];
    if (errors.length) parts.push(`${errors.length} failed`);
    counts.textContent = parts.join(" · ");
    const refused = (data.events ?? []).filter((e) => e.error);
    clear(runErrors);
    runErrors.hidden = refused.length === 0;
    for (const e of refused.slice(0, 20)) {
      runErrors.append(h("div", null, `${e.source ?? "?"} → ${e.topic ?? "?"}: ${e.error}`));
    }
    const running = run.status === "running";
    if (running && !ticker) ticker = setInterval(renderDuration, 1000);
    if (!running && ticker) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  function renderDuration(): void {
    const run = trace().run ?? {};
    const start = num(run.start);
    const end = num(run.end);
    if (start === null) {
      duration.textContent = "";
      return;
    }
    // running: up to now, unless nothing was heard for long (a run left over from a crash)
    const now = Date.now() / 1000;
    const stop = end ?? (now - lastKnown < STALE_RUNNING_S ? now : lastKnown);
    duration.textContent = `${formatDuration((stop - start) * 1000)}${end === null ? "…" : ""}`;
  }

  // ------------------------------------------------------------ filters
  function updateFilterOptions(spans: TraceSpan[]): void {
    const steps = [...new Set(spans.map((s) => String(s.step ?? "")).filter(Boolean))].sort();
    const statuses = [...new Set(spans.map((s) => String(s.status ?? "")).filter(Boolean))].sort();
    const fStep = String(model.get("filter_step") ?? "");
    const fStatus = String(model.get("filter_status") ?? "");
    if (fStep && !steps.includes(fStep)) steps.push(fStep);
    if (fStatus && !statuses.includes(fStatus)) statuses.push(fStatus);
    const key = `${steps.join("\u0000")}\u0001${statuses.join("\u0000")}`;
    if (key !== optionsKey) {
      optionsKey = key;
      clear(stepSelect);
      stepSelect.append(h("option", { value: "" }, "all"));
      for (const s of steps) stepSelect.append(h("option", { value: s }, s));
      clear(statusSelect);
      statusSelect.append(h("option", { value: "" }, "all"));
      for (const s of statuses) statusSelect.append(h("option", { value: s }, s));
    }
    stepSelect.value = fStep;
    statusSelect.value = fStatus;
  }

  function applyFilters(): void {
    const fStep = String(model.get("filter_step") ?? "");
    const fStatus = String(model.get("filter_status") ?? "");
    let visible = 0;
    const folded = (id: string): boolean => {
      for (let p = tree.parent.get(id) ?? null, n = 0; p !== null && n < 10_000; p = tree.parent.get(p) ?? null, n++) {
        if (collapsedSpans.has(p)) return true;
      }
      return false;
    };
    for (const [id, row] of rows) {
      const show =
        (!fStep || row.step === fStep) && (!fStatus || row.status === fStatus) && !folded(id);
      if (row.el.hidden === show) row.el.hidden = !show;
      if (show) visible++;
    }
    shown.textContent = fStep || fStatus ? `${visible} of ${rows.size} spans` : "";
    stepSelect.value = fStep;
    statusSelect.value = fStatus;
  }

  stepSelect.addEventListener("change", () => {
    model.set("filter_step", stepSelect.value);
    model.save_changes();
    applyFilters();
  });
  statusSelect.addEventListener("change", () => {
    model.set("filter_status", statusSelect.value);
    model.save_changes();
    applyFilters();
  });

  // ------------------------------------------------------------ waterfall
  function makeRow(): Row {
    const name = h("div", { class: "span-name" });
    const bar = h("div", { class: "span-bar" });
    const dur = h("div", { class: "span-dur" });
    const el = h("div", { class: "span-row" }, name, h("div", { class: "span-track" }, bar), dur);
    return { el, name, nameSig: "", bar, dur, sig: "", left: "", width: "", step: "", status: "" };
  }

  function timeScale(data: TraceData, spans: TraceSpan[]): void {
    const run = data.run ?? {};
    let lo = num(run.start);
    let hi = num(run.end);
    let anyOpen = false;
    for (const s of spans) {
      const a = num(s.start);
      const b = num(s.end);
      if (a !== null) {
        if (lo === null || a < lo) lo = a;
        if (hi === null || a > hi) hi = a;
      }
      if (b !== null && (hi === null || b > hi)) hi = b;
      if (b === null) anyOpen = true;
    }
    if (lo === null) lo = 0;
    if (hi === null) hi = lo;
    lastKnown = hi;
    if (anyOpen || num(run.end) === null) {
      const now = Date.now() / 1000;
      if (now > hi && now - hi < STALE_RUNNING_S) hi = now;
    }
    t0 = lo;
    total = Math.max(hi - lo, 1e-3);
  }

  function spanEnd(s: TraceSpan): number {
    const e = num(s.end);
    if (e !== null) return e;
    return t0 + total; // running: drawn to the end of the scale
  }

  function renderTicks(): void {
    clear(axisTicks);
    for (let i = 0; i <= 4; i++) {
      axisTicks.append(h("span", null, formatDuration(((total * i) / 4) * 1000)));
    }
  }

  function updateRows(data: TraceData): void {
    const spans = (data.spans ?? []).filter((s) => s && s.id !== undefined && s.id !== null);
    timeScale(data, spans);
    renderTicks();
    tree = spanTree(data);
    const order = tree.order;
    const seen = new Set<string>();
    spansById = new Map();
    for (const s of order) {
      const id = String(s.id);
      seen.add(id);
      spansById.set(id, s);
      let row = rows.get(id);
      if (!row) {
        row = makeRow();
        row.el.setAttribute("data-span-id", id);
        rows.set(id, row);
      }
      const st = token(s.status ?? "unknown");
      const sig = `${s.step}\u0000${s.status}\u0000${s.attempt}\u0000${s.start}\u0000${s.end}\u0000${s.topic}`;
      if (sig !== row.sig) {
        row.sig = sig;
        row.step = String(s.step ?? "");
        row.status = String(s.status ?? "");
        row.el.className = `span-row status-${st}${id === selectedSpan ? " selected" : ""}`;
        row.el.setAttribute("data-step", row.step);
        row.el.setAttribute("data-status", row.status);
        row.el.title = `${s.step ?? "?"} ← ${s.topic ?? "?"} (${s.status ?? "?"})`;
        row.nameSig = "";
        const a = num(s.start);
        const b = num(s.end);
        row.dur.textContent = a !== null && b !== null ? formatDuration((b - a) * 1000) : "…";
      }
      const depth = tree.depth.get(id) ?? 0;
      const kids = (tree.children.get(id) ?? []).length;
      const folded = collapsedSpans.has(id);
      const nameSig = `${depth}\u0000${kids}\u0000${folded}`;
      if (nameSig !== row.nameSig) {
        row.nameSig = nameSig;
        clear(row.name);
        row.el.setAttribute("data-depth", String(depth));
        const parentId = tree.parent.get(id);
        if (parentId) row.el.setAttribute("data-parent-id", parentId);
        else row.el.removeAttribute("data-parent-id");
        row.el.classList.toggle("has-children", kids > 0);
        row.el.classList.toggle("collapsed", folded);
        row.name.append(h("span", { class: "span-indent", style: `width:${depth * 14}px` }));
        row.name.append(
          kids
            ? h("span", { class: "span-toggle", title: folded ? `Show ${kids} caused spans` : "Hide the spans it caused" }, folded ? "▸" : "▾")
            : h("span", { class: "span-toggle" }),
        );
        row.name.append(row.step || "?");
        if (s.language) row.name.append(h("small", { class: "lang" }, ` ${s.language}`));
        if ((s.attempt ?? 1) > 1) row.name.append(h("small", null, `attempt ${s.attempt}`));
      }
      const a = num(s.start) ?? t0;
      const left = `${(((a - t0) / total) * 100).toFixed(3)}%`;
      const width = `${(Math.max(spanEnd(s) - a, 0) / total * 100).toFixed(3)}%`;
      if (left !== row.left) row.bar.style.left = row.left = left;
      if (width !== row.width) row.bar.style.width = row.width = width;
    }
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.el.remove();
        rows.delete(id);
      }
    }
    // Keyed reorder: touch the DOM only where the order differs.
    let ref = rowsEl.firstChild;
    for (const s of order) {
      const el = rows.get(String(s.id))!.el;
      if (el === ref) ref = ref.nextSibling;
      else rowsEl.insertBefore(el, ref);
    }
    empty.hidden = rows.size > 0;
    updateFilterOptions(spans);
    applyFilters();
  }

  rowsEl.addEventListener("click", (e) => {
    const target = e.target as Element | null;
    const rowEl = target?.closest?.(".span-row");
    if (!rowEl) return;
    if (target?.closest?.(".span-toggle") && rowEl.classList.contains("has-children")) {
      toggleSpan(rowEl.getAttribute("data-span-id") ?? "");
      return;
    }
    select(rowEl.getAttribute("data-span-id"));
  });

  function toggleSpan(id: string): void {
    if (collapsedSpans.has(id)) collapsedSpans.delete(id);
    else collapsedSpans.add(id);
    updateRows(trace());
  }

  function select(id: string | null): void {
    if (selectedSpan && rows.get(selectedSpan)) rows.get(selectedSpan)!.el.classList.remove("selected");
    selectedSpan = id;
    if (id && rows.get(id)) rows.get(id)!.el.classList.add("selected");
    renderDetail();
  }

  // ------------------------------------------------------------ selected span
  function renderDetail(): void {
    clear(detail);
    const s = selectedSpan ? spansById.get(selectedSpan) : undefined;
    if (!s) {
      detail.hidden = true;
      return;
    }
    detail.hidden = false;
    const data = trace();
    const id = String(s.id);
    const a = num(s.start);
    const b = num(s.end);
    const kv = (k: string, v: string | Node) => h("span", null, h("b", null, k), v);
    detail.append(
      h("h4", null, `${s.step ?? "?"}`),
      h(
        "div",
        { class: "wistro-kv" },
        kv("status", h("span", { class: `wistro-status status-${token(s.status)}` }, String(s.status ?? "?"))),
        kv("topic", String(s.topic ?? "")),
        kv("attempt", String(s.attempt ?? 1)),
        kv("start", relMs(a, t0)),
        kv("duration", a !== null && b !== null ? formatDuration((b - a) * 1000) : "running"),
        kv("span", h("code", null, id)),
      ),
    );
    if (s.error || s.traceback) {
      const tb = h(
        "details",
        { class: "wistro-traceback" },
        h("summary", null, String(s.error ?? "error")),
        h("pre", null, String(s.traceback ?? s.error ?? "")),
      );
      detail.append(tb);
    }
    const event = (data.events ?? []).find((e) => String(e.id) === String(s.event_id));
    detail.append(h("h4", null, "Event payload"));
    if (event) {
      detail.append(
        h(
          "div",
          { class: "wistro-kv wistro-muted" },
          kv("topic", String(event.topic ?? "")),
          kv("from", String(event.source ?? "")),
          kv("at", relMs(event.ts, t0)),
        ),
        h("pre", { class: "wistro-payload" }, prettyJson(event.data)),
      );
      if (event.error) detail.append(h("div", { class: "wistro-tv-errors" }, String(event.error)));
    } else {
      detail.append(h("div", { class: "wistro-muted" }, "event not recorded"));
    }
    const logs = (data.logs ?? []).filter((l) => String(l.span_id ?? "") === id);
    detail.append(h("h4", null, `Logs (${logs.length})`));
    if (logs.length) {
      detail.append(
        h(
          "table",
          { class: "wistro-logs" },
          ...logs.map((l) =>
            h(
              "tr",
              null,
              h("td", { class: "wistro-muted" }, relMs(l.ts, t0)),
              h("td", { class: `wistro-log-level level-${token(l.level)}` }, String(l.level ?? "")),
              h("td", null, String(l.message ?? "")),
              h(
                "td",
                null,
                l.fields && Object.keys(l.fields).length
                  ? h("code", null, JSON.stringify(l.fields))
                  : "",
              ),
            ),
          ),
        ),
      );
    }
    const ops = (data.state_ops ?? []).filter((o) => String(o.span_id ?? "") === id);
    detail.append(h("h4", null, `State changes (${ops.length})`));
    if (ops.length) {
      detail.append(
        h(
          "table",
          { class: "wistro-state-ops" },
          ...ops.map((o) =>
            h(
              "tr",
              null,
              h("td", { class: "wistro-muted" }, relMs(o.ts, t0)),
              h("td", null, String(o.op ?? "")),
              h("td", null, h("code", null, `${o.group ?? ""}${o.key != null ? `/${o.key}` : ""}`)),
              h("td", null, o.value === undefined ? "" : h("code", null, JSON.stringify(o.value) ?? "")),
            ),
          ),
        ),
      );
    }
  }

  // ------------------------------------------------------------ model wiring
  function update(): void {
    if (disposed) return;
    const data = trace();
    const id = data.run?.trace_id;
    if (id !== currentTraceId) {
      currentTraceId = id;
      for (const row of rows.values()) row.el.remove();
      rows = new Map();
      selectedSpan = null;
      collapsedSpans.clear();
    }
    updateRows(data);
    renderHeader(data);
    if (selectedSpan && !spansById.has(selectedSpan)) selectedSpan = null;
    renderDetail();
  }

  const onTrace = () => update();
  const onFilter = () => {
    updateFilterOptions([...spansById.values()]);
    applyFilters();
  };
  model.on("change:trace", onTrace);
  model.on("change:filter_step", onFilter);
  model.on("change:filter_status", onFilter);
  update();

  return () => {
    disposed = true;
    if (ticker) clearInterval(ticker);
    model.off("change:trace", onTrace);
    model.off("change:filter_step", onFilter);
    model.off("change:filter_status", onFilter);
    root.remove();
  };
}
