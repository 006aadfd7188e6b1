"""Layout time of a generated 2,000-node flow graph in the real browser, and whether the page
keeps responding meanwhile.

    .venv/bin/python bench/bench_graph_layout.py                 # 2,000 nodes, 3 warm repeats
    .venv/bin/python bench/bench_graph_layout.py --nodes 500 --reps 5

The real widget bundle (``wistro_jupyter/static/widgets.js``, built from ``labextension/``) is
served on loopback by a tiny ``http.server`` together with a page that imports it and renders the
FlowGraph with a fake anywidget model (get/set/on/off/save_changes/send) in headless Debian
Chromium driven by Playwright (the system browser: ``/usr/bin/chromium``, or ``--chromium``).

For each case the clock starts at ``render({model, el})`` (for a large project the widget opens
with its flows collapsed: the bench clicks *Expand flows* at once, to draw every node) and stops when the SVG holding every
``g.node[data-node-id]`` is in the DOM ("in DOM"), and again after two animation frames ("painted":
the browser has styled and drawn it). While it runs, a ``setInterval(…, 16)`` heartbeat and a
``requestAnimationFrame`` loop record the longest gap between their callbacks on the main thread:
a gap far above 16 ms means the page froze for that long.

* **cold**: a fresh page, the first graph: starting the layout worker and compiling Graphviz
  (wasm) are included, as when a notebook shows its first graph.
* **warm**: the same page, the same graph with other labels (the DOT differs, so the layout cache
  does not answer).
* **baselines, same run**: a 20-node graph (main-thread layout, the common case) and the same
  2,000 nodes as a pre-laid-out SVG string set with ``innerHTML`` (the DOM cost alone, no
  layout). Ratios are to these.

Target: cold 2,000-node layout ≤ 2.5 s, and the longest heartbeat gap well under a second.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "wistro_jupyter" / "static" / "widgets.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TARGET_S = 2.5
TIMEOUT_MS = 60_000

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wistro graph layout bench</title></head>
<body style="margin:0">
<script type="module">
import widget from "./widgets.js";

class FakeModel {
  constructor(state) { this.state = { ...state }; this.listeners = new Map(); }
  get(name) { return this.state[name]; }
  set(name, value) {
    const old = this.state[name];
    this.state[name] = value;
    if (old !== value) for (const cb of [...(this.listeners.get("change:" + name) ?? [])]) cb(value);
  }
  on(event, cb) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(cb);
  }
  off(event, cb) {
    if (!event) this.listeners.clear();
    else if (!cb) this.listeners.delete(event);
    else this.listeners.get(event)?.delete(cb);
  }
  save_changes() {}
  send() {}
}

function watchMainThread() {
  const w = { maxBeat: 0, maxFrame: 0, beats: 0, frames: 0, on: true };
  let lastBeat = performance.now(), lastFrame = performance.now();
  w.timer = setInterval(() => {
    const t = performance.now();
    w.maxBeat = Math.max(w.maxBeat, t - lastBeat); lastBeat = t; w.beats++;
  }, 16);
  const tick = () => {
    const t = performance.now();
    w.maxFrame = Math.max(w.maxFrame, t - lastFrame); lastFrame = t; w.frames++;
    if (w.on) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  w.stop = () => {  // the gap up to now counts too
    const t = performance.now();
    w.maxBeat = Math.max(w.maxBeat, t - lastBeat);
    w.maxFrame = Math.max(w.maxFrame, t - lastFrame);
    w.on = false; clearInterval(w.timer);
  };
  return w;
}

const frames = (n) => new Promise((resolve) => {
  const step = () => (n-- <= 0 ? resolve() : requestAnimationFrame(step));
  requestAnimationFrame(step);
});

function host() {
  document.body.replaceChildren();
  const el = document.createElement("div");
  el.style.width = "1200px"; el.style.height = "800px";
  document.body.appendChild(el);
  return el;
}

function untilNodes(el, expected, timeoutMs) {
  const count = () => el.querySelectorAll("g.node[data-node-id]").length;
  return new Promise((resolve, reject) => {
    if (count() >= expected) return resolve(count());
    const mo = new MutationObserver(() => {
      const n = count();
      if (n >= expected) { mo.disconnect(); clearTimeout(timer); resolve(n); }
    });
    mo.observe(el, { childList: true, subtree: true });
    const timer = setTimeout(() => {
      mo.disconnect();
      const err = el.querySelector(".error, [class*=error]");
      reject(new Error(`only ${count()} of ${expected} nodes after ${timeoutMs} ms`
        + (err ? `: ${err.textContent}` : "")));
    }, timeoutMs);
  });
}

// The FlowGraph: render() until every node of the SVG is in the DOM, then painted.
window.layoutCase = async (graph, timeoutMs) => {
  await frames(2);
  const el = host();
  const model = new FakeModel({
    kind: "flow_graph", graph, flow: "", counts: {}, selected: "", details: {},
  });
  const watch = watchMainThread();
  const t0 = performance.now();
  const cleanup = await widget.render({ model, el });
  // A large project opens with its flows collapsed: expand them all, to draw every node.
  const expand = el.querySelector(".wistro-collapse");
  if (expand && !expand.hidden && expand.textContent === "Expand flows") expand.click();
  const tRender = performance.now() - t0;
  const nodes = await untilNodes(el, graph.nodes.length, timeoutMs);
  const tDom = performance.now() - t0;
  await frames(2);
  const tPaint = performance.now() - t0;
  watch.stop();
  const edges = el.querySelectorAll("g.edge").length;
  if (typeof cleanup === "function") cleanup();
  return { tRender, tDom, tPaint, nodes, edges, maxBeat: watch.maxBeat,
           maxFrame: watch.maxFrame, beats: watch.beats, frames: watch.frames };
};

// Baseline: the same number of nodes as a ready-made SVG (a grid), no layout.
window.domCase = async (n) => {
  await frames(2);
  const el = host();
  const watch = watchMainThread();
  const t0 = performance.now();
  const cols = Math.ceil(Math.sqrt(n));
  let parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${cols * 130}" height="${cols * 50}">`];
  for (let i = 0; i < n; i++) {
    const x = (i % cols) * 130, y = Math.floor(i / cols) * 50;
    parts.push(`<g class="node kind-step" data-node-id="step:s${i}" data-kind="step">`
      + `<path d="M${x} ${y}h110v30h-110z" fill="#e0ecff" stroke="#1f6feb"/>`
      + `<text x="${x + 55}" y="${y + 20}" text-anchor="middle">Step ${i}</text></g>`);
  }
  parts.push("</svg>");
  el.innerHTML = parts.join("");
  const nodes = el.querySelectorAll("g.node[data-node-id]").length;
  const tDom = performance.now() - t0;
  await frames(2);
  const tPaint = performance.now() - t0;
  watch.stop();
  return { tRender: tDom, tDom, tPaint, nodes, edges: 0, maxBeat: watch.maxBeat,
           maxFrame: watch.maxFrame, beats: watch.beats, frames: watch.frames };
};
window.benchReady = true;
</script>
</body></html>
"""


def make_graph(n: int, seed: int = 7, tag: str = "", labels: bool = True) -> dict[str, Any]:
    """A FlowGraph ``graph`` trait of ``n`` event steps in layers of up to 50: every step after
    the first layer receives the topic of one or two steps of the layer above (edges labelled
    with the topic, as ``wistro.tooling.graph`` gives them), 10 flows; a few no-ops and conditional
    edges. ``labels=False``: edges without labels (a diagnostic: Graphviz lays out edge labels
    as extra nodes)."""
    rnd = random.Random(seed)
    width = max(4, min(50, n // 40))
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for i in range(n):
        layer = i // width
        kind = "noop" if i % 97 == 0 and i else "step"
        nodes.append(
            {
                "id": f"step:s{i:04d}",
                "label": f"Step {i:04d}{tag}",
                "kind": kind,
                "language": "python",
                "flows": [f"flow{layer % 10}"],
                "description": f"generated step {i}",
                "subscribes": [f"t{i // 2:04d}"] if layer else [],
                "emits": [f"t{i:04d}"],
                "active": True,
            }
        )
        if layer:
            above = range((layer - 1) * width, min(layer * width, n))
            for src in rnd.sample(list(above), k=min(len(above), 1 + (i % 3 == 0))):
                edges.append(
                    {
                        "source": f"step:s{src:04d}",
                        "target": f"step:s{i:04d}",
                        "topic": f"t{src:04d}",
                        "label": f"t{src:04d}" if labels else "",
                        "virtual": kind == "noop",
                        "conditional": i % 11 == 0,
                    }
                )
    return {"nodes": nodes, "edges": edges}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


_Quiet.extensions_map = {**_Quiet.extensions_map, ".js": "text/javascript"}


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


def fmt(r: dict[str, Any]) -> str:
    return (
        f"{r['tDom']:8.0f} ms in DOM {r['tPaint']:8.0f} ms painted   render() {r['tRender']:6.1f} ms"
        f"   longest gap: heartbeat {r['maxBeat']:6.0f} ms, frames {r['maxFrame']:6.0f} ms"
        f"   ({r['nodes']} nodes, {r['edges']} edges)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3, help="warm repeats after the cold run")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("needs the playwright package: .venv/bin/pip install playwright", file=sys.stderr)
        return 2
    if not BUNDLE.is_file():
        print(f"no widget bundle at {BUNDLE}: run scripts/setup.sh", file=sys.stderr)
        return 2

    big = make_graph(args.nodes)
    small = make_graph(20)
    print(
        f"graph: {len(big['nodes'])} nodes, {len(big['edges'])} edges; "
        f"bundle {BUNDLE.stat().st_size / 1024:.0f} KiB"
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wistro-bench-layout-") as tmp:
        folder = Path(tmp)
        (folder / "index.html").write_text(PAGE, encoding="utf-8")
        (folder / "widgets.js").write_bytes(BUNDLE.read_bytes())
        with serve(folder) as url, sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS
            )
            try:
                version = browser.version

                def fresh_page() -> Any:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.goto(url)
                    page.wait_for_function("window.benchReady === true", timeout=30_000)
                    return page

                def run(page: Any, fn: str, arg: Any) -> dict[str, Any]:
                    t0 = time.perf_counter()
                    if fn == "domCase":
                        r: dict[str, Any] = page.evaluate("n => window.domCase(n)", arg)
                    else:
                        r = page.evaluate("([g, t]) => window.layoutCase(g, t)", [arg, TIMEOUT_MS])
                    r["wall_ms"] = 1000 * (time.perf_counter() - t0)
                    return r

                print(f"browser: Chromium {version} (headless)\n")
                page = fresh_page()
                results["cold"] = run(page, "layoutCase", big)
                print(f"{args.nodes}-node graph, cold   {fmt(results['cold'])}")
                warm = []
                for rep in range(args.reps):
                    r = run(page, "layoutCase", make_graph(args.nodes, tag=f" r{rep}"))
                    warm.append(r)
                    print(f"{args.nodes}-node graph, warm   {fmt(r)}")
                unlabelled = run(page, "layoutCase", make_graph(args.nodes, labels=False))
                print(f"{args.nodes}-node, no edge labels {fmt(unlabelled)}")
                page.close()

                page = fresh_page()
                results["small_cold"] = run(page, "layoutCase", small)
                print(f"20-node graph, cold       {fmt(results['small_cold'])}")
                small_warm = [
                    run(page, "layoutCase", make_graph(20, tag=f" r{rep}"))
                    for rep in range(max(args.reps, 3))
                ]
                for r in small_warm:
                    print(f"20-node graph, warm       {fmt(r)}")
                dom = [run(page, "domCase", args.nodes) for _ in range(max(args.reps, 3))]
                for r in dom:
                    print(f"{args.nodes} plain SVG nodes     {fmt(r)}")
                page.close()
            finally:
                browser.close()

    def med(rs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rs)

    cold = results["cold"]
    warm_ms = med(warm, "tPaint") if warm else cold["tPaint"]
    small_ms = med(small_warm, "tPaint")
    dom_ms = med(dom, "tPaint")
    worst_gap = max([cold["maxBeat"], *(r["maxBeat"] for r in warm)])
    print("\nsummary (painted = the SVG with every node in the DOM and drawn)")
    print(f"  {args.nodes} nodes, cold:            {cold['tPaint']:8.0f} ms")
    print(f"  {args.nodes} nodes, warm (median):   {warm_ms:8.0f} ms")
    print(
        f"  20 nodes, warm (median):       {small_ms:8.0f} ms"
        f"   -> {args.nodes}-node warm is {warm_ms / small_ms:.1f}x, cold {cold['tPaint'] / small_ms:.1f}x"
    )
    print(
        f"  {args.nodes} plain SVG nodes (median): {dom_ms:6.0f} ms"
        f"   -> layout + widget cost {warm_ms / dom_ms:.1f}x the bare DOM (warm)"
    )
    print(
        f"  longest main-thread gap during the {args.nodes}-node layouts: {worst_gap:.0f} ms "
        f"(heartbeat every 16 ms; cold {cold['maxBeat']:.0f} ms,"
        f" warm median {med(warm, 'maxBeat') if warm else 0:.0f} ms)"
    )
    print(
        f"  {args.nodes} nodes without edge labels (warm): {unlabelled['tPaint']:6.0f} ms"
        f"   ({unlabelled['tPaint'] / warm_ms:.2f}x the labelled graph)"
    )
    ok_time = cold["tPaint"] <= TARGET_S * 1000
    ok_resp = worst_gap <= 1000
    print(
        f"  target: cold <= {TARGET_S:.1f} s: {'met' if ok_time else 'NOT met'}; "
        f"page keeps responding (gap <= 1 s): {'yes' if ok_resp else 'NO'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
