import { afterEach, describe, expect, it } from "vitest";
import { renderTraceView } from "../src/traceview";
import type { TraceData } from "../src/types";
import { FakeModel } from "./fake-model";

const T0 = 1_700_000_000.0;

function sampleTrace(): TraceData {
  return {
    run: { trace_id: "tr-1", status: "error", topic: "order.placed", trigger: "notebook",
      start: T0, end: T0 + 0.5 },
    spans: [
      { id: "s1", step: "Charge card", topic: "order.placed", event_id: "e1", attempt: 1,
        status: "ok", start: T0 + 0.01, end: T0 + 0.11, error: null, traceback: null },
      { id: "s2", step: "Send receipt", topic: "payment.captured", event_id: "e2", attempt: 1,
        status: "error", start: T0 + 0.12, end: T0 + 0.2, error: "ValueError: no email",
        traceback: 'Traceback (most recent call last):\n  File "send_receipt.step.py", line 9\nValueError: no email' },
      { id: "s3", step: "Send receipt", topic: "payment.captured", event_id: "e2", attempt: 2,
        status: "ok", start: T0 + 0.3, end: T0 + 0.45, error: null, traceback: null },
    ],
    events: [
      { id: "e1", topic: "order.placed", data: { order_id: "A1", amount_cents: 1200 },
        source: "notebook", parent_span_id: null, ts: T0, error: null },
      { id: "e2", topic: "payment.captured", data: { order_id: "A1" }, source: "Charge card",
        parent_span_id: "s1", ts: T0 + 0.1, error: null },
      { id: "e3", topic: "payment.bogus", data: {}, source: "Charge card", parent_span_id: "s1",
        ts: T0 + 0.1, error: "undeclared topic payment.bogus" },
    ],
    logs: [
      { ts: T0 + 0.02, level: "info", message: "charging", fields: { order_id: "A1" },
        step: "Charge card", span_id: "s1" },
      { ts: T0 + 0.15, level: "error", message: "no email", fields: {}, step: "Send receipt",
        span_id: "s2" },
    ],
    state_ops: [
      { ts: T0 + 0.05, op: "set", group: "orders", key: "A1", value: { status: "charged" },
        step: "Charge card", span_id: "s1" },
    ],
  };
}

function setup(trace: TraceData = sampleTrace(), extra: Record<string, unknown> = {}) {
  const model = new FakeModel({ kind: "trace_view", trace, filter_step: "", filter_status: "", ...extra });
  const el = document.createElement("div");
  document.body.appendChild(el);
  const cleanup = renderTraceView(model, el);
  cleanups.push(cleanup);
  return { model, el, cleanup };
}

const cleanups: (() => void)[] = [];

const rows = (el: Element) => [...el.querySelectorAll<HTMLElement>(".span-row")];
const visible = (el: Element) => rows(el).filter((r) => !r.hidden);

afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  document.body.innerHTML = "";
});

describe("TraceView", () => {
  it("renders a header and one row per span with status classes", () => {
    const { el } = setup();
    expect(el.querySelector(".wistro-run-status")!.classList.contains("status-error")).toBe(true);
    expect(el.querySelector(".wistro-run-duration")!.textContent).toBe("500 ms");
    expect(el.querySelector(".wistro-run-counts")!.textContent).toContain("3 spans");
    expect(el.querySelector(".wistro-run-counts")!.textContent).toContain("1 failed");
    expect(el.querySelector(".wistro-tv-errors")!.textContent).toContain("undeclared topic");
    const r = rows(el);
    expect(r.map((x) => x.getAttribute("data-span-id"))).toEqual(["s1", "s2", "s3"]);
    expect(r.map((x) => x.getAttribute("data-step"))).toEqual(["Charge card", "Send receipt", "Send receipt"]);
    expect(r[0].classList.contains("status-ok")).toBe(true);
    expect(r[1].classList.contains("status-error")).toBe(true);
    expect(r[2].textContent).toContain("attempt 2");
    // bars are positioned relative to the run start
    const bar = r[1].querySelector<HTMLElement>(".span-bar")!;
    expect(parseFloat(bar.style.left)).toBeCloseTo(24, 1);
    expect(parseFloat(bar.style.width)).toBeCloseTo(16, 1);
  });

  it("filters by step and status, and writes the filters back", () => {
    const { el, model } = setup();
    const stepSel = el.querySelector<HTMLSelectElement>("select.wistro-filter-step")!;
    expect([...stepSel.options].map((o) => o.value)).toEqual(["", "Charge card", "Send receipt"]);
    stepSel.value = "Send receipt";
    stepSel.dispatchEvent(new Event("change"));
    expect(model.get("filter_step")).toBe("Send receipt");
    expect(model.saves).toBe(1);
    expect(visible(el).map((r) => r.dataset.spanId)).toEqual(["s2", "s3"]);
    model.pythonSets("filter_status", "error");
    expect(visible(el).map((r) => r.dataset.spanId)).toEqual(["s2"]);
    expect(el.querySelector<HTMLSelectElement>("select.wistro-filter-status")!.value).toBe("error");
    model.pythonSets("filter_step", "");
    model.pythonSets("filter_status", "");
    expect(visible(el)).toHaveLength(3);
  });

  it("starts filtered when the traits are set", () => {
    const { el } = setup(sampleTrace(), { filter_status: "ok" });
    expect(visible(el).map((r) => r.dataset.spanId)).toEqual(["s1", "s3"]);
  });

  it("updates live: a running span appears, then finishes, rows are reused", () => {
    const t = sampleTrace();
    t.run = { ...t.run, status: "running", end: null };
    t.spans = t.spans!.slice(0, 1);
    const { el, model, cleanup } = setup(t);
    const first = rows(el)[0];
    const next = structuredClone(t);
    next.spans!.push({ id: "s9", step: "Ship", topic: "payment.captured", event_id: "e2",
      attempt: 1, status: "running", start: T0 + 0.2, end: null, error: null, traceback: null });
    model.pythonSets("trace", next);
    expect(rows(el)).toHaveLength(2);
    expect(rows(el)[0]).toBe(first); // keyed: the existing row was kept
    const running = rows(el)[1];
    expect(running.dataset.step).toBe("Ship");
    expect(running.classList.contains("status-running")).toBe(true);
    expect(el.querySelector(".wistro-run-duration")!.textContent).toMatch(/…$/);
    const done = structuredClone(next);
    done.spans![1] = { ...done.spans![1], status: "ok", end: T0 + 0.3 };
    done.run = { ...done.run, status: "ok", end: T0 + 0.3 };
    model.pythonSets("trace", done);
    expect(rows(el)[1]).toBe(running);
    expect(running.classList.contains("status-ok")).toBe(true);
    expect(running.querySelector(".span-dur")!.textContent).toBe("100 ms");
    // a different trace replaces all rows
    const other = sampleTrace();
    other.run = { ...other.run, trace_id: "tr-2" };
    model.pythonSets("trace", other);
    expect(rows(el)).toHaveLength(3);
    expect(rows(el)).not.toContain(first);
    cleanup();
    expect(model.listenerCount()).toBe(0);
  });

  it("shows payload, logs, state changes and the traceback in <details> for the selected span", () => {
    const { el } = setup();
    const detail = el.querySelector<HTMLElement>(".wistro-tv-detail")!;
    expect(detail.hidden).toBe(true);
    rows(el)[0].querySelector<HTMLElement>(".span-name")!.click();
    expect(detail.hidden).toBe(false);
    expect(rows(el)[0].classList.contains("selected")).toBe(true);
    expect(detail.querySelector(".wistro-payload")!.textContent).toContain('"amount_cents": 1200');
    expect(detail.querySelector(".wistro-logs")!.textContent).toContain("charging");
    expect(detail.querySelector(".wistro-state-ops")!.textContent).toContain("orders/A1");
    expect(detail.querySelector("details")).toBeNull();
    rows(el)[1].click();
    expect(rows(el)[0].classList.contains("selected")).toBe(false);
    const tb = detail.querySelector<HTMLDetailsElement>("details.wistro-traceback")!;
    expect(tb).not.toBeNull();
    expect(tb.open).toBe(false);
    expect(tb.querySelector("summary")!.textContent).toBe("ValueError: no email");
    expect(tb.querySelector("pre")!.textContent).toContain("Traceback (most recent call last)");
    expect(detail.querySelector(".wistro-logs .level-error")).not.toBeNull();
  });

  it("renders an empty trace without errors", () => {
    const { el } = setup({});
    expect(rows(el)).toHaveLength(0);
    expect(el.querySelector<HTMLElement>(".wistro-empty")!.hidden).toBe(false);
  });

  it("handles a 1,000-span trace and an incremental update", () => {
    const spans = Array.from({ length: 1000 }, (_, i) => ({
      id: `s${i}`, step: `step ${i % 25}`, topic: "t", event_id: `e${i}`, attempt: 1,
      status: i % 97 === 0 ? "error" : "ok", start: T0 + i * 0.01, end: T0 + i * 0.01 + 0.05,
      error: null, traceback: null,
    }));
    const trace: TraceData = {
      run: { trace_id: "big", status: "running", topic: "t", trigger: "notebook", start: T0, end: null },
      spans, events: [], logs: [], state_ops: [],
    };
    const started = performance.now();
    const { el, model } = setup(trace);
    expect(rows(el)).toHaveLength(1000);
    expect(el.querySelectorAll(".span-row.status-error")).toHaveLength(11);
    const more = { ...trace, spans: [...spans, { ...spans[0], id: "s1000", start: T0 + 10.5, end: null, status: "running" }] };
    model.pythonSets("trace", more);
    expect(rows(el)).toHaveLength(1001);
    expect(rows(el)[1000].dataset.spanId).toBe("s1000");
    model.pythonSets("filter_step", "step 3");
    expect(visible(el)).toHaveLength(40);
    expect(performance.now() - started).toBeLessThan(10_000); // generous; the count is the point
  });
});
