/**
 * RunDiff widget (`kind` = "run_diff"): an eval comparison.
 *
 * Synced state: `comparison` (Python: both versions, the scorers' summary and the per-sample
 * rows, regressions first), `selected` (JS writes: a sample id), `diff` (Python fills it for the
 * selected sample: the two runs side by side by step, the JSON diff of their payloads and the
 * code diff of the steps whose sources changed).
 */
import { clear, h, token } from "./dom";
import { ensureStyles } from "./styles";
import type { AnyModel, Cleanup, RenderProps } from "./types";

// ------------------------------------------------------------------ state

export interface RdSide {
  label?: string;
  eval_id?: string;
  version?: string;
  status?: string | null;
  error?: string | null;
  latency_ms?: number | null;
}

export interface RdRow {
  sample_id: string;
  topic?: string;
  status: string;
  first_divergent_step?: string | null;
  output_changed?: boolean | null;
  worse?: string[];
  error_b?: string | null;
  scores?: Record<string, { a?: number | null; b?: number | null }>;
}

export interface RdSummary {
  scorer: string;
  mean_a?: number | null;
  mean_b?: number | null;
  diff?: number | null;
  ci_low?: number | null;
  ci_high?: number | null;
  p_value?: number | null;
  verdict?: string;
}

export interface RdComparison {
  a?: RdSide;
  b?: RdSide;
  scorers?: string[];
  summary?: RdSummary[];
  counts?: Record<string, number>;
  warnings?: string[];
  n_rows?: number;
  rows?: RdRow[];
  /** The steps whose source changed between the versions. */
  steps?: { step: string; change: string; file?: string | null; n_regressions?: number; n_first_divergent?: number }[];
}

export interface RdEmit {
  topic: string;
  data?: unknown;
  error?: string | null;
}

export interface RdStepSide {
  status: string[];
  emits: RdEmit[];
  writes?: unknown[];
  errors?: string[];
}

export interface RdStep {
  step: string;
  differs: boolean;
  source_changed?: string | null;
  a?: RdStepSide | null;
  b?: RdStepSide | null;
}

export interface RdJsonChange {
  step?: string;
  topic?: string;
  path: string;
  change: "added" | "removed" | "changed" | string;
  a?: unknown;
  b?: unknown;
}

export interface RdCode {
  step: string;
  change: string;
  file?: string | null;
  diff: string;
  available: boolean;
  note?: string;
  in_run?: boolean;
}

export interface RdDiff {
  sample_id?: string;
  status?: string;
  error?: string;
  first_divergent_step?: string | null;
  worse?: string[];
  a?: RdSide;
  b?: RdSide;
  steps?: RdStep[];
  payload_diff?: RdJsonChange[];
  state_diff?: RdJsonChange[];
  code_diff?: RdCode[];
}

/** Regressions first, then new errors, improvements, fixed errors, unchanged, unpaired. */
export const STATUS_ORDER: Record<string, number> = {
  regressed: 0,
  new_error: 1,
  improved: 2,
  fixed_error: 3,
  unchanged: 4,
  only_a: 5,
  only_b: 6,
};

export function orderRows(rows: RdRow[]): RdRow[] {
  return rows
    .map((r, i) => ({ r, i }))
    .sort((x, y) => (STATUS_ORDER[x.r.status] ?? 9) - (STATUS_ORDER[y.r.status] ?? 9) || x.i - y.i)
    .map((x) => x.r);
}

// ------------------------------------------------------------------ styles

const RD_STYLE_ID = "wistro-rundiff-style";
const RD_CSS = `
.wistro-rundiff .rd-head { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; padding: 8px; }
.wistro-rundiff .rd-changed { padding: 0 8px 4px; font-size: 12px; }
.wistro-rundiff .rd-warn { color: var(--w-warn); padding: 0 8px 4px; font-size: 12px; }
.wistro-rundiff table { border-collapse: collapse; font-size: 12px; }
.wistro-rundiff td, .wistro-rundiff th {
  text-align: left; padding: 2px 6px; border-bottom: 1px solid var(--w-border2); vertical-align: top;
}
.wistro-rundiff th { color: var(--w-fg2); font-weight: 600; }
.wistro-rundiff .rd-body { display: flex; min-height: 0; border-top: 1px solid var(--w-border2); }
.wistro-rundiff .rd-list { flex: 0 0 44%; max-width: 520px; max-height: 560px; overflow: auto; }
.wistro-rundiff .rd-list tr.rd-row { cursor: pointer; }
.wistro-rundiff .rd-list tr.rd-row:hover { background: var(--w-bg2); }
.wistro-rundiff .rd-list tr.rd-row.selected { background: color-mix(in srgb, var(--w-accent) 16%, transparent); }
.wistro-rundiff .rd-detail { flex: 1 1 auto; min-width: 0; max-height: 560px; overflow: auto; padding: 4px 10px 10px;
  border-left: 1px solid var(--w-border2); }
.wistro-rundiff .rd-empty { color: var(--w-fg3); padding: 12px; }
.wistro-rundiff .status-regressed, .wistro-rundiff .status-new_error { --s: var(--w-error); }
.wistro-rundiff .status-improved, .wistro-rundiff .status-fixed_error { --s: var(--w-ok); }
.wistro-rundiff .status-unchanged { --s: var(--w-fg3); }
.wistro-rundiff .status-only_a, .wistro-rundiff .status-only_b { --s: var(--w-warn); }
.wistro-rundiff .rd-steps tr.differs td:first-child { font-weight: 600; }
.wistro-rundiff .rd-steps tr.differs { background: color-mix(in srgb, var(--w-warn) 10%, transparent); }
.wistro-rundiff .rd-steps tr.first-divergent { outline: 2px solid var(--w-error); outline-offset: -2px; }
.wistro-rundiff .rd-emit { font-family: var(--w-mono); font-size: 11px; overflow-wrap: anywhere; }
.wistro-rundiff .rd-emit b { font-family: inherit; }
.wistro-rundiff .rd-change-added { color: var(--w-ok); }
.wistro-rundiff .rd-change-removed { color: var(--w-error); }
.wistro-rundiff .rd-change-changed { color: var(--w-warn); }
.wistro-rundiff pre.rd-code { max-height: 360px; }
.wistro-rundiff pre.rd-code .add { color: var(--w-ok); background: color-mix(in srgb, var(--w-ok) 10%, transparent); }
.wistro-rundiff pre.rd-code .del { color: var(--w-error); background: color-mix(in srgb, var(--w-error) 10%, transparent); }
.wistro-rundiff pre.rd-code .hunk { color: var(--w-fg3); }
.wistro-rundiff .rd-note { color: var(--w-warn); font-size: 12px; }
.wistro-rundiff code { font-family: var(--w-mono); font-size: 11px; }
`;

function ensureRunDiffStyles(doc: Document): void {
  ensureStyles(doc);
  const existing = doc.getElementById(RD_STYLE_ID);
  if (existing) {
    if (existing.textContent !== RD_CSS) existing.textContent = RD_CSS;
    return;
  }
  const style = doc.createElement("style");
  style.id = RD_STYLE_ID;
  style.textContent = RD_CSS;
  (doc.head ?? doc.documentElement).appendChild(style);
}

// ------------------------------------------------------------------ helpers

function fmt(v: unknown): string {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isFinite(v) ? String(Number(v.toPrecision(3))) : "–";
  return String(v);
}

function compact(v: unknown): string {
  try {
    return JSON.stringify(v) ?? "";
  } catch {
    return String(v);
  }
}

function badge(status: string | null | undefined): HTMLSpanElement {
  const s = String(status ?? "unknown");
  return h("span", { class: `wistro-status rd-badge status-${token(s)}` }, s);
}

function table(head: string[], rows: HTMLTableRowElement[], cls: string): HTMLTableElement {
  return h(
    "table",
    { class: cls },
    h("tr", null, ...head.map((x) => h("th", null, x))),
    ...rows,
  );
}

function emitsCell(side: RdStepSide | null | undefined): HTMLTableCellElement {
  const td = h("td", { class: "rd-emit" });
  if (!side) {
    td.append(h("i", { class: "wistro-muted" }, "did not run"));
    return td;
  }
  if (!side.emits.length && !(side.errors ?? []).length) td.append(h("i", { class: "wistro-muted" }, "no events"));
  for (const e of side.emits) {
    td.append(h("div", null, h("b", null, e.topic), " ", compact(e.data)));
  }
  for (const err of side.errors ?? []) td.append(h("div", { class: "rd-change-removed" }, err));
  return td;
}

/** A unified diff as lines with add / del / hunk classes. */
export function codeDiffPre(text: string): HTMLPreElement {
  const pre = h("pre", { class: "rd-code" });
  for (const line of text.split("\n")) {
    let cls = "";
    if (line.startsWith("+") && !line.startsWith("+++")) cls = "add";
    else if (line.startsWith("-") && !line.startsWith("---")) cls = "del";
    else if (line.startsWith("@@")) cls = "hunk";
    pre.append(h("span", { class: `rd-line ${cls}`.trim() }, line), "\n");
  }
  return pre;
}

// ------------------------------------------------------------------ render

export function renderRunDiff(model: AnyModel, el: HTMLElement): Cleanup {
  ensureRunDiffStyles(el.ownerDocument ?? document);

  const head = h("div", { class: "rd-head" });
  const warn = h("div", { class: "rd-warn" });
  const summary = h("div", { class: "rd-summary" });
  const list = h("div", { class: "rd-list" });
  const detail = h("div", { class: "rd-detail" });
  const root = h(
    "div",
    { class: "wistro-widget wistro-rundiff" },
    head,
    warn,
    summary,
    h("div", { class: "rd-body" }, list, detail),
  );
  el.appendChild(root);

  let disposed = false;
  const rowEls = new Map<string, HTMLTableRowElement>();

  const comparison = (): RdComparison => (model.get("comparison") ?? {}) as RdComparison;

  function renderComparison(): void {
    const c = comparison();
    clear(head);
    head.append(
      h("b", null, c.a?.label ?? "a"),
      " → ",
      h("b", null, c.b?.label ?? "b"),
      h("span", { class: "wistro-muted" }, `${c.n_rows ?? (c.rows ?? []).length} samples`),
      ...Object.entries(c.counts ?? {})
        .sort((x, y) => (STATUS_ORDER[x[0]] ?? 9) - (STATUS_ORDER[y[0]] ?? 9))
        .map(([k, v]) => h("span", null, badge(k), ` ${v}`)),
    );
    clear(warn);
    warn.hidden = !(c.warnings ?? []).length;
    for (const w of c.warnings ?? []) warn.append(h("div", null, `⚠ ${w}`));

    clear(summary);
    const changed = c.steps ?? [];
    if (changed.length) {
      summary.append(
        h(
          "div",
          { class: "rd-changed" },
          "Changed steps: ",
          ...changed.flatMap((x, i) => [
            i ? " · " : "",
            h("b", null, x.step),
            ` (${x.change}; ${x.n_first_divergent ?? 0} first divergent, ${x.n_regressions ?? 0} regressions through it)`,
          ]),
        ),
      );
    }
    if ((c.summary ?? []).length) {
      summary.append(
        table(
          ["scorer", "mean a", "mean b", "diff", "95% CI", "p", "verdict"],
          (c.summary ?? []).map((s) =>
            h(
              "tr",
              { class: `status-${token(s.verdict === "no significant change" ? "unchanged" : s.verdict)}` },
              h("td", null, s.scorer),
              h("td", null, fmt(s.mean_a)),
              h("td", null, fmt(s.mean_b)),
              h("td", null, fmt(s.diff)),
              h("td", null, `[${fmt(s.ci_low)}, ${fmt(s.ci_high)}]`),
              h("td", null, fmt(s.p_value)),
              h("td", { class: "status-cell" }, String(s.verdict ?? "")),
            ),
          ),
          "rd-summary-table",
        ),
      );
    }

    clear(list);
    rowEls.clear();
    const scorers = c.scorers ?? [];
    const rows = orderRows(c.rows ?? []);
    if (!rows.length) {
      list.append(h("div", { class: "rd-empty" }, "No samples"));
      return;
    }
    const trs = rows.map((r) => {
      const tr = h(
        "tr",
        { class: `rd-row status-${token(r.status)}`, "data-sample": r.sample_id, "data-status": r.status },
        h("td", null, badge(r.status)),
        h("td", null, h("code", null, r.sample_id)),
        h("td", { class: "rd-first-step" }, r.first_divergent_step ?? ""),
        ...scorers.map((s) => {
          const v = r.scores?.[s] ?? {};
          return h("td", null, `${fmt(v.a)} → ${fmt(v.b)}`);
        }),
      );
      rowEls.set(r.sample_id, tr);
      return tr;
    });
    list.append(table(["status", "sample", "first divergent step", ...scorers], trs, "rd-rows"));
    markSelected();
  }

  function markSelected(): void {
    const sel = String(model.get("selected") ?? "");
    for (const [id, tr] of rowEls) tr.classList.toggle("selected", id === sel);
  }

  list.addEventListener("click", (e) => {
    const tr = (e.target as Element | null)?.closest?.("tr.rd-row");
    if (!tr) return;
    const id = tr.getAttribute("data-sample") ?? "";
    model.set("selected", id);
    model.save_changes();
    markSelected();
    renderDiff();
  });

  function renderDiff(): void {
    clear(detail);
    const d = (model.get("diff") ?? {}) as RdDiff;
    const sel = String(model.get("selected") ?? "");
    if (!d.sample_id || (sel && d.sample_id !== sel)) {
      // Python fills `diff` for the new selection: until then, nothing stale is shown
      detail.append(h("div", { class: "rd-empty" }, sel ? "Loading…" : "Select a sample to see its two runs"));
      return;
    }
    if (d.error) {
      detail.append(h("div", { class: "rd-note" }, d.error));
      return;
    }
    const first = d.first_divergent_step ?? null;
    detail.append(
      h(
        "h4",
        null,
        "Sample ",
        h("code", null, d.sample_id),
        " ",
        badge(d.status),
        " · first divergent step: ",
        h("b", { class: "rd-first-divergent" }, first ?? "–"),
      ),
    );
    if ((d.worse ?? []).length) detail.append(h("div", null, `now failing: ${(d.worse ?? []).join(", ")}`));
    for (const [k, side] of [["a", d.a], ["b", d.b]] as const) {
      if (side?.error) detail.append(h("div", { class: "rd-change-removed" }, `${k} (${side.label}): ${side.error}`));
    }

    // side by side, aligned by step
    const steps = d.steps ?? [];
    detail.append(h("h4", null, "Steps side by side"));
    detail.append(
      table(
        ["step", `status a (${d.a?.label ?? "a"})`, "emitted a", `status b (${d.b?.label ?? "b"})`, "emitted b"],
        steps.map((s) =>
          h(
            "tr",
            {
              class: ["rd-step", s.differs ? "differs" : "", s.step === first ? "first-divergent" : ""]
                .filter(Boolean)
                .join(" "),
              "data-step": s.step,
            },
            h(
              "td",
              null,
              s.step,
              s.source_changed ? h("small", { class: "wistro-muted" }, ` source ${s.source_changed}`) : "",
            ),
            h("td", null, s.a ? badge(s.a.status.join(",")) : "–"),
            emitsCell(s.a),
            h("td", null, s.b ? badge(s.b.status.join(",")) : "–"),
            emitsCell(s.b),
          ),
        ),
        "rd-steps",
      ),
    );

    // JSON diff of payloads (and final state)
    const changes = (list: RdJsonChange[], withStep: boolean) =>
      list.map((x) =>
        h(
          "tr",
          { class: `rd-json-row rd-change-${token(x.change)}` },
          ...(withStep ? [h("td", null, x.step ?? ""), h("td", null, x.topic ?? "")] : []),
          h("td", null, h("code", null, x.path)),
          h("td", null, x.change),
          h("td", null, h("code", null, x.a === null || x.a === undefined ? "" : compact(x.a))),
          h("td", null, h("code", null, x.b === null || x.b === undefined ? "" : compact(x.b))),
        ),
      );
    detail.append(h("h4", null, "Payload diff"));
    const pd = d.payload_diff ?? [];
    detail.append(
      pd.length
        ? table(["step", "topic", "path", "change", "a", "b"], changes(pd, true), "rd-json")
        : h("div", { class: "wistro-muted" }, "The payloads are the same"),
    );
    if ((d.state_diff ?? []).length) {
      detail.append(h("h4", null, "Final state diff"));
      detail.append(table(["path", "change", "a", "b"], changes(d.state_diff ?? [], false), "rd-state"));
    }

    // code diff of the changed steps
    detail.append(h("h4", null, "Code diff"));
    const code = d.code_diff ?? [];
    if (!code.length) detail.append(h("div", { class: "wistro-muted" }, "No step's source changed"));
    for (const c of code) {
      const box = h(
        "div",
        { class: "rd-code-step", "data-step": c.step },
        h(
          "div",
          null,
          h("b", null, c.step),
          ` (${c.change}${c.file ? `, ${c.file}` : ""})`,
          c.in_run === false ? h("i", { class: "wistro-muted" }, " not in this sample's runs") : "",
        ),
      );
      if (c.note) box.append(h("div", { class: "rd-note" }, c.note));
      if (c.diff) box.append(codeDiffPre(c.diff));
      detail.append(box);
    }
  }

  const onComparison = () => {
    if (!disposed) renderComparison();
  };
  const onSelected = () => {
    if (disposed) return;
    markSelected();
    renderDiff();
  };
  const onDiff = () => {
    if (!disposed) renderDiff();
  };
  model.on("change:comparison", onComparison);
  model.on("change:selected", onSelected);
  model.on("change:diff", onDiff);
  renderComparison();
  renderDiff();

  return () => {
    disposed = true;
    model.off("change:comparison", onComparison);
    model.off("change:selected", onSelected);
    model.off("change:diff", onDiff);
    root.remove();
  };
}

/** Also usable as an entry point of its own (a run-diff-only bundle). */
export function render({ model, el }: RenderProps): Cleanup {
  return renderRunDiff(model, el);
}

export default { render };
