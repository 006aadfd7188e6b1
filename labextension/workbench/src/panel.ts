/**
 * The Workbench panel: one Lumino widget showing a Wistro project through a Transport (the
 * current notebook's kernel, or a running project through the Jupyter server): its flows as the
 * graph, its steps with activate/deactivate toggles, live runs with filters and their traces,
 * dead letters with replay, a live log tail, a state browser and an emit form per topic.
 */
import { Widget } from "@lumino/widgets";
import type { Message } from "@lumino/messaging";
import { renderFlowGraph } from "../../src/flowgraph";
import { createVizLayout, type VizLayout, type VizRuntime } from "../../src/layout";
import type { AnyModel, Cleanup, GraphData, NodeDetails } from "../../src/types";
import type {
  DeadLetter,
  LogLine,
  ProjectInfo,
  RunInfo,
  SpanInfo,
  StepInfo,
  TopicInfo,
  TraceInfo,
  Transport,
} from "./protocol";
import { SchemaForm } from "./schema_form";
import { ensurePanelStyles } from "./styles";
import { clearNode, clock, duration, el, errorText, json } from "./ui";

export const POLL_MS = 1000;
const MAX_RUNS = 200;
const MAX_LOGS = 500;
const RUN_STATUSES = ["", "ok", "error", "running", "refused"];

/** Where the panel's sources come from (the notebook tracker and the server, in the plugin). */
export interface Sources {
  /** The current notebook's name, or null when no notebook is open. */
  notebook(): string | null;
  /** A transport to the current notebook's kernel, or null when it has none. */
  kernelTransport(): Transport | null;
  projects(): Promise<ProjectInfo[]>;
  serverTransport(project: ProjectInfo): Transport;
}

/** The FlowGraph renderer's model, kept in the page (no kernel widget behind it). */
class LocalModel implements AnyModel {
  private readonly values = new Map<string, unknown>();
  private readonly handlers = new Map<string, Set<(...args: any[]) => void>>();

  constructor(
    init: Record<string, unknown>,
    private readonly onSend: (content: unknown) => void,
  ) {
    for (const [k, v] of Object.entries(init)) this.values.set(k, v);
  }

  get(name: string): any {
    return this.values.get(name);
  }

  set(name: string, value: unknown): void {
    const old = this.values.get(name);
    this.values.set(name, value);
    if (old !== value) {
      for (const cb of [...(this.handlers.get(`change:${name}`) ?? [])]) cb(this, value);
    }
  }

  save_changes(): void {}

  on(event: string, cb: (...args: any[]) => void): void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(cb);
  }

  off(event?: string | null, cb?: ((...args: any[]) => void) | null): void {
    if (!event) this.handlers.clear();
    else if (!cb) this.handlers.delete(event);
    else this.handlers.get(event)?.delete(cb);
  }

  send(content: unknown): void {
    this.onSend(content);
  }
}

let sharedLayout: VizLayout | null = null;
function graphLayout(): VizLayout {
  // Graphviz (wasm) on the main thread, loaded the first time a graph is drawn.
  sharedLayout ??= createVizLayout({
    loadRuntime: () => import("@viz-js/viz") as unknown as Promise<VizRuntime>,
    workerSource: null,
  });
  return sharedLayout;
}

function section(key: string, title: string): { root: HTMLDetailsElement; body: HTMLElement; count: HTMLElement; status: HTMLElement } {
  const count = el("span", { class: "wistro-wb-count" });
  const status = el("div", { class: "wistro-wb-status", "data-section": key });
  const body = el("div", { class: "wistro-wb-body" });
  const root = el(
    "details",
    { class: `wistro-wb-section wistro-wb-section-${key}`, "data-section": key, open: true },
    el("summary", null, title, " ", count),
    status,
    body,
  ) as HTMLDetailsElement;
  return { root, body, count, status };
}

function setStatus(node: HTMLElement, text: string, kind: "error" | "ok" | "" = ""): void {
  node.textContent = text;
  node.dataset.kind = kind;
  node.classList.toggle("wistro-wb-error", kind === "error");
}

/** Seconds since the epoch (or ms) -> ms. */
function toMs(ts: number | null | undefined): number | null {
  if (ts === null || ts === undefined || !Number.isFinite(ts)) return null;
  return ts > 1e11 ? ts : ts * 1000;
}

function select(cls: string, options: [string, string][], title: string): HTMLSelectElement {
  return el(
    "select",
    { class: cls, title },
    ...options.map(([value, label]) => el("option", { value }, label)),
  ) as HTMLSelectElement;
}

function fillSelect(node: HTMLSelectElement, options: [string, string][]): void {
  const keep = node.value;
  clearNode(node);
  for (const [value, label] of options) node.append(el("option", { value }, label));
  if (options.some(([v]) => v === keep)) node.value = keep;
}

export class WorkbenchPanel extends Widget {
  private transport: Transport | null = null;
  private sourceKey = "";
  private projects: ProjectInfo[] = [];
  private generation = 0; // bumped on every source change: late replies of the old one are dropped
  private timer: ReturnType<typeof setInterval> | null = null;
  private ticks = 0;
  private needsLoad = false; // a source set while hidden: loaded when shown
  private loadFailed = false; // the last load failed (e.g. no %load_ext yet): retried while shown
  private busy = new Set<string>();

  private steps: StepInfo[] = [];
  private topics: TopicInfo[] = [];
  private flows: string[] = [];
  private runs = new Map<string, RunInfo>();
  private logCursor: unknown = null;
  private openTrace: string | null = null;
  private emitForm: SchemaForm | null = null;

  private readonly sourceSelect = select("wistro-wb-source", [], "Where the Workbench reads from");
  private readonly headerStatus = el("div", { class: "wistro-wb-header-status" });
  private readonly graph = section("graph", "Flows");
  private readonly stepsSec = section("steps", "Steps");
  private readonly runsSec = section("runs", "Runs");
  private readonly deadSec = section("dead", "Dead letters");
  private readonly emitSec = section("emit", "Emit");
  private readonly logsSec = section("logs", "Logs");
  private readonly stateSec = section("state", "State");

  private readonly graphHost = el("div", { class: "wistro-wb-graph-host" });
  private readonly graphModel: LocalModel;
  private graphCleanup: Cleanup | null = null;

  private readonly statusFilter = select(
    "wistro-wb-filter-status",
    RUN_STATUSES.map((s) => [s, s || "any status"]),
    "Status",
  );
  private readonly flowFilter = select("wistro-wb-filter-flow", [["", "any flow"]], "Flow");
  private readonly topicFilter = select("wistro-wb-filter-topic", [["", "any topic"]], "Topic");
  private readonly runList = el("div", { class: "wistro-wb-run-list" });
  private readonly traceBox = el("div", { class: "wistro-wb-trace" });
  private readonly logList = el("div", { class: "wistro-wb-logs" });
  private readonly stateGroups = el("div", { class: "wistro-wb-state-groups" });
  private readonly stateItems = el("pre", { class: "wistro-wb-state-items" });
  private readonly emitTopic = select("wistro-wb-emit-topic", [], "Topic");
  private readonly emitFormHost = el("div", { class: "wistro-wb-emit-form" });
  private readonly emitButton = el("button", { class: "wistro-wb-emit-send jp-mod-styled jp-mod-accept", type: "button" }, "Emit") as HTMLButtonElement;

  constructor(private readonly sources: Sources) {
    super();
    this.id = "wistro-workbench";
    this.addClass("wistro-workbench");
    this.title.caption = "Wistro Workbench";
    ensurePanelStyles(document);

    const refresh = el("button", { class: "wistro-wb-refresh jp-mod-styled", type: "button", title: "Reload everything" }, "↻");
    refresh.addEventListener("click", () => {
      void this.refreshSources().then(() => this.reloadAll());
    });
    this.sourceSelect.addEventListener("change", () => this.setSource(this.sourceSelect.value));
    this.sourceSelect.addEventListener("focus", () => void this.refreshSources());
    const toolbar = el(
      "div",
      { class: "wistro-wb-toolbar" },
      el("label", null, "Source ", this.sourceSelect),
      refresh,
    );

    // graph
    this.graphModel = new LocalModel({ graph: { nodes: [], edges: [] }, flow: "", counts: {}, selected: "", details: {} }, (content) => {
      const msg = content as { type?: string; trace_id?: string };
      if (msg?.type === "open_trace" && msg.trace_id) void this.showTrace(msg.trace_id);
    });
    this.graphModel.on("change:selected", () => this.fillDetails());
    this.graph.body.append(this.graphHost);

    // runs
    for (const f of [this.statusFilter, this.flowFilter, this.topicFilter]) {
      f.addEventListener("change", () => {
        this.runs.clear();
        void this.pollRuns(true);
      });
    }
    this.runsSec.body.append(
      el("div", { class: "wistro-wb-filters" }, this.statusFilter, this.flowFilter, this.topicFilter),
      this.runList,
      this.traceBox,
    );

    // emit
    this.emitTopic.addEventListener("change", () => this.buildEmitForm());
    this.emitButton.addEventListener("click", () => void this.emit());
    this.emitSec.body.append(
      el("label", { class: "wistro-wb-emit-topic-label" }, "Topic ", this.emitTopic),
      this.emitFormHost,
      el("div", { class: "wistro-wb-emit-actions" }, this.emitButton),
    );

    // logs, state
    this.logsSec.body.append(this.logList);
    this.stateSec.body.append(this.stateGroups, this.stateItems);
    this.deadSec.root.open = true;

    this.node.append(
      toolbar,
      this.headerStatus,
      this.graph.root,
      this.stepsSec.root,
      this.runsSec.root,
      this.emitSec.root,
      this.deadSec.root,
      this.logsSec.root,
      this.stateSec.root,
    );
  }

  /** The source's key: "kernel" or "project:<root>". */
  get source(): string {
    return this.sourceKey;
  }

  // ------------------------------------------------------------ sources

  /** Rebuilds the source menu (the current notebook's kernel, the running projects). */
  async refreshSources(): Promise<void> {
    try {
      this.projects = await this.sources.projects();
    } catch (err) {
      this.projects = [];
      console.debug("wistro workbench: no projects from the server:", errorText(err));
    }
    const options: [string, string][] = [];
    const nb = this.sources.notebook();
    if (nb) options.push(["kernel", `kernel of ${nb}`]);
    for (const p of this.projects) options.push([`project:${p.root}`, `project ${p.name} (${p.root || "."})`]);
    if (!options.length) options.push(["", "no notebook or running project"]);
    fillSelect(this.sourceSelect, options);
    if (this.sourceKey && options.some(([v]) => v === this.sourceKey)) {
      this.sourceSelect.value = this.sourceKey;
    } else if (!this.sourceKey || !options.some(([v]) => v === this.sourceKey)) {
      this.setSource(options[0][0]);
    }
  }

  /** The current notebook (or its kernel) changed. */
  notebookChanged(): void {
    if (this.sourceKey === "kernel" || !this.sourceKey) {
      this.sourceKey = "";
    }
    void this.refreshSources();
  }

  setSource(key: string): void {
    this.transport?.dispose();
    this.transport = null;
    this.sourceKey = key;
    this.sourceSelect.value = key;
    this.generation++;
    this.resetData();
    if (key === "kernel") {
      this.transport = this.sources.kernelTransport();
      if (!this.transport) setStatus(this.headerStatus, "the notebook has no kernel", "error");
    } else if (key.startsWith("project:")) {
      const root = key.slice("project:".length);
      const project = this.projects.find((p) => p.root === root) ?? { root, name: root };
      this.transport = this.sources.serverTransport(project);
    } else {
      setStatus(this.headerStatus, "open a notebook with %load_ext wistro_jupyter, or start wistro dev");
    }
    this.needsLoad = !!this.transport;
    if (this.transport && this.isVisible) void this.reloadAll();
  }

  private resetData(): void {
    this.steps = [];
    this.topics = [];
    this.flows = [];
    this.runs.clear();
    this.logCursor = null;
    this.openTrace = null;
    this.emitForm = null;
    for (const node of [this.runList, this.traceBox, this.logList, this.stateGroups, this.stateItems, this.emitFormHost, this.stepsSec.body]) {
      clearNode(node);
    }
    for (const s of [this.graph, this.stepsSec, this.runsSec, this.deadSec, this.emitSec, this.logsSec, this.stateSec]) {
      setStatus(s.status, "");
      s.count.textContent = "";
    }
    clearNode(this.deadSec.body);
    delete this.emitSec.status.dataset.traceId;
    this.graphModel.set("graph", { nodes: [], edges: [] });
  }

  /** A request on the current source; null (and the error shown in `status`) when it fails or
   * the source changed meanwhile. */
  private async ask<T>(op: Parameters<Transport["request"]>[0], args: Record<string, unknown>, status: HTMLElement | null): Promise<T | null> {
    const transport = this.transport;
    const gen = this.generation;
    if (!transport) return null;
    try {
      const result = await transport.request<T>(op, args);
      if (gen !== this.generation) return null;
      return result;
    } catch (err) {
      if (gen !== this.generation) return null;
      if (status) setStatus(status, errorText(err), "error");
      return null;
    }
  }

  async reloadAll(): Promise<void> {
    if (!this.transport) return;
    this.needsLoad = false;
    setStatus(this.headerStatus, `loading from ${this.transport.label}…`);
    const gen = this.generation;
    const project = await this.ask<Record<string, unknown>>("project", {}, this.headerStatus);
    if (gen !== this.generation) return;
    this.loadFailed = !project;
    if (!project) return; // the error is shown; retried by the poll
    for (const s of [this.graph, this.stepsSec, this.runsSec, this.deadSec, this.emitSec, this.logsSec, this.stateSec]) {
      setStatus(s.status, "");
    }
    {
      const name = String(project.name ?? project.root ?? "");
      const counts = ["steps", "flows"]
        .map((k) => (typeof project[`n_${k}`] === "number" ? `${project[`n_${k}`]} ${k}` : ""))
        .filter(Boolean)
        .join(", ");
      setStatus(this.headerStatus, `${name ? `project ${name}` : "project"}${counts ? ` · ${counts}` : ""} · ${this.transport?.label ?? ""}`, "ok");
    }
    await Promise.all([
      this.loadGraph(),
      this.loadSteps(),
      this.loadTopics(),
      this.loadDeadLetters(),
      this.loadStateGroups(),
      this.pollRuns(true),
      this.pollLogs(),
    ]);
  }

  // ------------------------------------------------------------ graph and steps

  private async loadGraph(): Promise<void> {
    const [graph, flows] = await Promise.all([
      this.ask<GraphData>("graph", {}, this.graph.status),
      this.ask<unknown>("flows", {}, null),
    ]);
    if (graph) {
      setStatus(this.graph.status, "");
      this.graphModel.set("graph", graph);
      if (!this.graphCleanup) this.graphCleanup = renderFlowGraph(this.graphModel, this.graphHost, { layout: graphLayout() });
    }
    // `flows` gives {id, name}; a run filter takes the id
    const names = new Map<string, string>();
    const list = Array.isArray(flows) ? flows : Array.isArray((flows as { flows?: unknown })?.flows) ? (flows as { flows: unknown[] }).flows : [];
    for (const f of list) {
      if (typeof f === "string") names.set(f, f);
      else if (f && typeof f === "object") {
        const o = f as { id?: unknown; name?: unknown };
        const id = String(o.id ?? o.name ?? "");
        if (id) names.set(id, String(o.name ?? id));
      }
    }
    for (const n of graph?.nodes ?? []) for (const f of n.flows ?? []) if (!names.has(f)) names.set(f, f);
    this.flows = [...names.keys()].sort();
    this.graph.count.textContent = this.flows.length ? `(${this.flows.length})` : "";
    const flowOptions = this.flows.map((f): [string, string] => [f, names.get(f) === f ? f : `${names.get(f)} (${f})`]);
    fillSelect(this.flowFilter, [["", "any flow"], ...flowOptions]);
  }

  private fillDetails(): void {
    const id = String(this.graphModel.get("selected") ?? "");
    const name = id.startsWith("step:") ? id.slice(5) : id;
    const step = this.steps.find((s) => s.name === name);
    if (!step) {
      this.graphModel.set("details", {});
      return;
    }
    const recent = [...this.runs.values()]
      .filter((r) => (r.steps ?? []).includes(step.name))
      .slice(0, 5)
      .map((r) => ({ trace_id: r.trace_id, status: r.status ?? "", duration_ms: r.duration_ms ?? null }));
    const details: NodeDetails = { config: { ...step }, file: step.file ?? null, recent_runs: recent };
    this.graphModel.set("details", details);
  }

  /** `keepStatus`: a toggle's message stays shown while the list is redrawn (no flicker). */
  private async loadSteps(keepStatus = false): Promise<void> {
    const result = await this.ask<{ steps: StepInfo[] }>("steps", {}, this.stepsSec.status);
    if (!result) return;
    this.steps = result.steps ?? [];
    this.stepsSec.count.textContent = `(${this.steps.length})`;
    if (!keepStatus) setStatus(this.stepsSec.status, "");
    this.renderSteps();
  }

  private renderSteps(): void {
    const body = this.stepsSec.body;
    clearNode(body);
    const rows = this.steps.map((s) => {
      const toggle = el("input", {
        type: "checkbox",
        class: "wistro-wb-step-toggle",
        "data-step": s.name,
        title: s.active === false ? "inactive: click to activate" : "active: click to deactivate",
      }) as HTMLInputElement;
      toggle.checked = s.active !== false;
      toggle.addEventListener("change", () => void this.toggleStep(s.name, toggle));
      const wires = [
        s.subscribes?.length ? `← ${s.subscribes.join(", ")}` : "",
        s.emits?.length ? `→ ${s.emits.join(", ")}` : "",
      ].filter(Boolean).join("  ");
      return el(
        "div",
        { class: "wistro-wb-step", "data-step": s.name, "data-active": String(s.active !== false) },
        el("label", { class: "wistro-wb-step-switch" }, toggle),
        el(
          "div",
          { class: "wistro-wb-step-main" },
          el("span", { class: "wistro-wb-step-name" }, s.name),
          el("span", { class: "wistro-wb-tag" }, s.type ?? "event"),
          s.language && s.language !== "python" ? el("span", { class: "wistro-wb-tag" }, s.language) : null,
          ...(s.flows ?? []).map((f) => el("span", { class: "wistro-wb-tag wistro-wb-flow-tag" }, f)),
          wires ? el("div", { class: "wistro-wb-muted" }, wires) : null,
          s.file ? el("div", { class: "wistro-wb-muted wistro-wb-file" }, s.file) : null,
        ),
      );
    });
    body.append(...(rows.length ? rows : [el("div", { class: "wistro-wb-muted" }, "no steps")]));
  }

  private async toggleStep(step: string, input: HTMLInputElement): Promise<void> {
    const active = input.checked;
    input.disabled = true;
    const result = await this.ask<unknown>("toggle", { step, active }, this.stepsSec.status);
    input.disabled = false;
    if (result === null) {
      input.checked = !active;
      return;
    }
    setStatus(this.stepsSec.status, `${step}: ${active ? "activated" : "deactivated"}`, "ok");
    await Promise.all([this.loadSteps(true), this.loadGraph()]);
  }

  // ------------------------------------------------------------ runs and traces

  private runArgs(): Record<string, unknown> {
    const args: Record<string, unknown> = { limit: 50 };
    if (this.statusFilter.value) args.status = this.statusFilter.value;
    if (this.flowFilter.value) args.flow = this.flowFilter.value;
    if (this.topicFilter.value) args.topic = this.topicFilter.value;
    return args;
  }

  /** New runs (and runs still going) since the last poll; everything again when `full`. */
  async pollRuns(full = false): Promise<void> {
    if (this.busy.has("runs") && !full) return;
    this.busy.add("runs");
    try {
      const args = this.runArgs();
      if (!full && this.runs.size) {
        const starts = [...this.runs.values()];
        const going = starts.filter((r) => r.status === "running" || r.status === "pending").map((r) => r.start ?? 0);
        const after = going.length ? Math.min(...going) - 1e-6 : Math.max(...starts.map((r) => r.start ?? 0));
        args.after = after;
      }
      const result = await this.ask<{ runs: RunInfo[] }>("runs", args, this.runsSec.status);
      if (!result) return;
      if (this.runsSec.status.dataset.kind === "error") setStatus(this.runsSec.status, "");
      if (full) this.runs.clear();
      for (const r of result.runs ?? []) if (r && r.trace_id) this.runs.set(r.trace_id, r);
      const sorted = [...this.runs.values()].sort((a, b) => (b.start ?? 0) - (a.start ?? 0));
      this.runs = new Map(sorted.slice(0, MAX_RUNS).map((r) => [r.trace_id, r]));
      this.renderRuns();
    } finally {
      this.busy.delete("runs");
    }
  }

  private renderRuns(): void {
    clearNode(this.runList);
    this.runsSec.count.textContent = `(${this.runs.size})`;
    if (!this.runs.size) {
      this.runList.append(el("div", { class: "wistro-wb-muted" }, "no runs yet"));
      return;
    }
    for (const r of this.runs.values()) {
      const row = el(
        "div",
        {
          class: `wistro-wb-run${r.trace_id === this.openTrace ? " wistro-wb-selected" : ""}`,
          "data-trace-id": r.trace_id,
          "data-status": r.status ?? "",
          "data-topic": r.topic ?? "",
          role: "button",
          tabindex: "0",
          title: `trace ${r.trace_id}`,
        },
        el("span", { class: `wistro-wb-badge wistro-wb-status-${r.status ?? "unknown"}` }, r.status ?? "?"),
        el("span", { class: "wistro-wb-run-topic" }, r.topic ?? ""),
        el("span", { class: "wistro-wb-muted wistro-wb-run-flows" }, (r.flows ?? []).join(", ")),
        el("span", { class: "wistro-wb-run-duration" }, duration(r.duration_ms)),
        el("span", { class: "wistro-wb-muted wistro-wb-run-time" }, clock(r.start)),
      );
      row.addEventListener("click", () => void this.showTrace(r.trace_id));
      row.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter") void this.showTrace(r.trace_id);
      });
      this.runList.append(row);
    }
  }

  async showTrace(traceId: string): Promise<void> {
    this.openTrace = traceId;
    for (const row of this.runList.querySelectorAll<HTMLElement>(".wistro-wb-run")) {
      row.classList.toggle("wistro-wb-selected", row.dataset.traceId === traceId);
    }
    clearNode(this.traceBox);
    this.traceBox.append(el("div", { class: "wistro-wb-muted" }, `trace ${traceId.slice(0, 12)}…`));
    const trace = await this.ask<TraceInfo>("trace", { trace_id: traceId }, this.runsSec.status);
    if (!trace || this.openTrace !== traceId) return;
    clearNode(this.traceBox);
    const spans = trace.spans ?? [];
    const ids = new Set(spans.map((s) => s.id));
    const children = new Map<string, SpanInfo[]>();
    const roots: SpanInfo[] = [];
    for (const s of spans) {
      if (s.parent_id && ids.has(s.parent_id) && s.parent_id !== s.id) {
        const list = children.get(s.parent_id) ?? [];
        list.push(s);
        children.set(s.parent_id, list);
      } else {
        roots.push(s);
      }
    }
    const byStart = (a: SpanInfo, b: SpanInfo) => (a.start ?? 0) - (b.start ?? 0);
    const seen = new Set<string>();
    const renderSpan = (s: SpanInfo, depth: number): HTMLElement => {
      seen.add(s.id);
      const start = toMs(s.start);
      const end = toMs(s.end);
      const kids = (children.get(s.id) ?? []).filter((k) => !seen.has(k.id)).sort(byStart);
      return el(
        "li",
        {
          class: "wistro-wb-span",
          "data-span-id": s.id,
          "data-parent-id": s.parent_id ?? "",
          "data-step": s.step ?? "",
          "data-status": s.status ?? "",
          "data-depth": depth,
        },
        el(
          "div",
          { class: "wistro-wb-span-row" },
          el("span", { class: `wistro-wb-badge wistro-wb-status-${s.status ?? "unknown"}` }, s.status ?? "?"),
          el("span", { class: "wistro-wb-span-step" }, s.step ?? "?"),
          s.topic ? el("span", { class: "wistro-wb-muted" }, `on ${s.topic}`) : null,
          el("span", { class: "wistro-wb-run-duration" }, start !== null && end !== null ? duration(end - start) : "…"),
        ),
        s.error ? el("div", { class: "wistro-wb-span-error" }, s.error.split("\n")[0]) : null,
        kids.length ? el("ul", { class: "wistro-wb-span-children" }, ...kids.map((k) => renderSpan(k, depth + 1))) : null,
      );
    };
    const tree = el("ul", { class: "wistro-wb-span-tree", "data-trace-id": traceId }, ...roots.sort(byStart).map((s) => renderSpan(s, 0)));
    const close = el("button", { class: "wistro-wb-trace-close jp-mod-styled", type: "button", title: "Close the trace" }, "×");
    close.addEventListener("click", () => {
      this.openTrace = null;
      clearNode(this.traceBox);
      this.renderRuns();
    });
    this.traceBox.append(
      el(
        "div",
        { class: "wistro-wb-trace-head" },
        el("span", null, `trace ${traceId.slice(0, 16)}`),
        el("span", { class: "wistro-wb-muted" }, `${spans.length} span(s), ${(trace.events ?? []).length} event(s), ${(trace.logs ?? []).length} log line(s)`),
        close,
      ),
      spans.length ? tree : el("div", { class: "wistro-wb-muted" }, "no spans (no step ran)"),
    );
  }

  // ------------------------------------------------------------ dead letters

  private async loadDeadLetters(): Promise<void> {
    const result = await this.ask<{ dead_letters: DeadLetter[] }>("dead_letters", {}, this.deadSec.status);
    if (!result) return;
    if (this.deadSec.status.dataset.kind === "error") setStatus(this.deadSec.status, "");
    const list = result.dead_letters ?? [];
    this.deadSec.count.textContent = `(${list.length})`;
    const body = this.deadSec.body;
    clearNode(body);
    if (!list.length) {
      body.append(el("div", { class: "wistro-wb-muted" }, "no dead letters"));
      return;
    }
    for (const d of list) {
      const replay = el("button", { class: "wistro-wb-replay jp-mod-styled", type: "button", "data-id": d.id }, "Replay") as HTMLButtonElement;
      replay.addEventListener("click", () => void this.replay(d, replay));
      body.append(
        el(
          "div",
          { class: "wistro-wb-dead", "data-id": d.id, "data-step": d.step ?? "" },
          el(
            "div",
            { class: "wistro-wb-dead-main" },
            el("span", { class: "wistro-wb-step-name" }, d.step ?? "?"),
            el("span", { class: "wistro-wb-muted" }, ` on ${d.topic ?? "?"} · ${d.attempts ?? "?"} attempt(s) · ${clock(d.at as number | string | null)}`),
            el("div", { class: "wistro-wb-span-error" }, String(d.error ?? "").split("\n")[0]),
          ),
          replay,
        ),
      );
    }
  }

  private async replay(d: DeadLetter, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    const result = await this.ask<Record<string, unknown>>("replay", { id: d.id }, this.deadSec.status);
    button.disabled = false;
    if (result === null) return;
    const trace = typeof result?.trace_id === "string" ? ` (trace ${result.trace_id.slice(0, 12)})` : "";
    setStatus(this.deadSec.status, `replayed ${d.id}${trace}`, "ok");
    await Promise.all([this.loadDeadLetters(), this.pollRuns(true)]);
  }

  // ------------------------------------------------------------ emit

  private async loadTopics(): Promise<void> {
    const result = await this.ask<{ topics: TopicInfo[] }>("topics", {}, this.emitSec.status);
    if (!result) return;
    this.topics = result.topics ?? [];
    this.emitSec.count.textContent = `(${this.topics.length} topics)`;
    const options = this.topics.map((t): [string, string] => [t.name, t.name]);
    fillSelect(this.emitTopic, options);
    fillSelect(this.topicFilter, [["", "any topic"], ...options]);
    this.buildEmitForm();
  }

  private buildEmitForm(): void {
    clearNode(this.emitFormHost);
    const topic = this.topics.find((t) => t.name === this.emitTopic.value);
    if (!topic) {
      this.emitForm = null;
      this.emitButton.disabled = true;
      return;
    }
    this.emitButton.disabled = false;
    this.emitForm = new SchemaForm(topic.schema ?? null);
    this.emitFormHost.dataset.topic = topic.name;
    this.emitFormHost.append(this.emitForm.node);
    const who = [
      topic.subscribers?.length ? `subscribers: ${topic.subscribers.join(", ")}` : "no subscribers",
    ].join("");
    this.emitFormHost.append(el("div", { class: "wistro-wb-muted" }, who));
  }

  async emit(): Promise<void> {
    const topic = this.emitTopic.value;
    const form = this.emitForm;
    if (!topic || !form) return;
    const { value, errors } = form.read();
    if (errors.length) {
      setStatus(
        this.emitSec.status,
        `not sent: ${errors.map((e) => `${e.path || "payload"} ${e.message}`).join("; ")}`,
        "error",
      );
      return;
    }
    this.emitButton.disabled = true;
    delete this.emitSec.status.dataset.traceId;
    setStatus(this.emitSec.status, `emitting ${topic}…`);
    const result = await this.ask<{ trace_id?: string; status?: string }>("emit", { topic, data: value }, this.emitSec.status);
    this.emitButton.disabled = false;
    if (!result) return;
    const traceId = String(result.trace_id ?? "");
    setStatus(this.emitSec.status, `emitted ${topic}: trace ${traceId.slice(0, 12)} ${result.status ?? ""}`.trim(), "ok");
    this.emitSec.status.dataset.traceId = traceId;
    await this.pollRuns(true);
  }

  // ------------------------------------------------------------ logs

  async pollLogs(): Promise<void> {
    if (this.busy.has("logs")) return;
    this.busy.add("logs");
    try {
      const args: Record<string, unknown> = { limit: 200 };
      if (this.logCursor !== null && this.logCursor !== undefined) args.after = this.logCursor;
      const result = await this.ask<{ logs: LogLine[]; cursor?: unknown }>("logs", args, this.logsSec.status);
      if (!result) return;
      if (this.logsSec.status.dataset.kind === "error") setStatus(this.logsSec.status, "");
      if (result.cursor !== undefined && result.cursor !== null) this.logCursor = result.cursor;
      const lines = result.logs ?? [];
      if (!lines.length) {
        if (!this.logList.childElementCount) this.logList.append(el("div", { class: "wistro-wb-muted wistro-wb-no-logs" }, "no logs yet"));
        return;
      }
      this.logList.querySelector(".wistro-wb-no-logs")?.remove();
      const atBottom = this.logList.scrollTop + this.logList.clientHeight >= this.logList.scrollHeight - 4;
      for (const line of lines) {
        const { level, message, step, trace_id, fields } = line;
        const ts = (line.time ?? line.ts) as number | string | null | undefined;
        const extra = fields && typeof fields === "object" && Object.keys(fields).length ? JSON.stringify(fields) : "";
        this.logList.append(
          el(
            "div",
            { class: "wistro-wb-log", "data-level": level ?? "", "data-trace-id": trace_id ?? "" },
            el("span", { class: "wistro-wb-muted" }, clock(ts)),
            " ",
            el("span", { class: `wistro-wb-level wistro-wb-level-${level ?? "info"}` }, level ?? ""),
            " ",
            step ? el("span", { class: "wistro-wb-log-step" }, `[${step}] `) : null,
            message ?? "",
            extra ? el("span", { class: "wistro-wb-muted" }, ` ${extra}`) : null,
          ),
        );
      }
      while (this.logList.childElementCount > MAX_LOGS) this.logList.firstElementChild?.remove();
      this.logsSec.count.textContent = `(${this.logList.childElementCount})`;
      if (atBottom) this.logList.scrollTop = this.logList.scrollHeight;
    } finally {
      this.busy.delete("logs");
    }
  }

  // ------------------------------------------------------------ state

  private async loadStateGroups(): Promise<void> {
    const result = await this.ask<{ groups: { group: string; n_keys?: number }[] }>("state", {}, this.stateSec.status);
    if (!result) return;
    const groups = result.groups ?? [];
    this.stateSec.count.textContent = `(${groups.length} groups)`;
    clearNode(this.stateGroups);
    if (!groups.length) this.stateGroups.append(el("div", { class: "wistro-wb-muted" }, "no state"));
    for (const g of groups) {
      const button = el("button", { class: "wistro-wb-state-group jp-mod-styled", type: "button", "data-group": g.group }, `${g.group} (${g.n_keys ?? "?"})`);
      button.addEventListener("click", () => void this.showGroup(g.group));
      this.stateGroups.append(button);
    }
  }

  private async showGroup(group: string): Promise<void> {
    const result = await this.ask<{ group: string; items: unknown }>("state", { group }, this.stateSec.status);
    if (!result) return;
    this.stateItems.dataset.group = group;
    this.stateItems.textContent = json(result.items);
    for (const b of this.stateGroups.querySelectorAll<HTMLElement>(".wistro-wb-state-group")) {
      b.classList.toggle("wistro-wb-selected", b.dataset.group === group);
    }
  }

  // ------------------------------------------------------------ polling

  private tick(): void {
    if (!this.transport || !this.isVisible || document.hidden) return;
    this.ticks++;
    if (this.needsLoad || this.loadFailed) {
      if (this.needsLoad || this.ticks % 3 === 0) void this.reloadAll();
      return;
    }
    void this.pollRuns();
    void this.pollLogs();
    if (this.ticks % 5 === 0) {
      void this.loadDeadLetters();
      if (this.stateItems.dataset.group) void this.showGroup(this.stateItems.dataset.group);
    }
  }

  protected override onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.timer ??= setInterval(() => this.tick(), POLL_MS);
    if (!this.sourceKey) void this.refreshSources();
    else if (this.needsLoad) void this.reloadAll();
  }

  protected override onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.timer ??= setInterval(() => this.tick(), POLL_MS);
  }

  override dispose(): void {
    if (this.isDisposed) return;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.graphCleanup?.();
    this.transport?.dispose();
    super.dispose();
  }
}
