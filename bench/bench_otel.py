"""What OpenTelemetry export costs: the 5-hop chain of ``bench_engine.py`` with
``traces: {otlp: {endpoint: ...}}`` pointing at an OTLP/HTTP receiver on loopback, against the same
chain without it, in the same run. The figure is hops/s with export / hops/s without.

    .venv/bin/python bench/bench_otel.py                  # 5 off/on pairs, 5,000 events each
    .venv/bin/python bench/bench_otel.py --pairs 7 --events 10000
    .venv/bin/python bench/bench_otel.py --traces sqlite   # default: memory

The chain is ``_projects.write_chain`` (5 async steps, pydantic inputs, validation on, memory
state); a fresh project and app per run, 200 warm-up events first, then N events with
``wait=False`` and ``drain()``: hops/s = N x 5 / that time (*to drain*; the export goes on in
the background). With export, ``app.aclose()`` then sends what is still queued: *to export* is
N x 5 / (drain + that flush), the rate with every span sent. *exported* is what the receiver got
of the timed events' spans. The SDK's batch processor drops spans when its queue is full (2,048
by default, ``OTEL_BSP_MAX_QUEUE_SIZE``); so that every span is sent, this script sets the queue
to 2 x N x 5 (``--default-queue``: leave it, and see what a burst drops). The receiver is another
process (``http.server``, decodes each protobuf body and counts the spans), so its work is not
on this process's GIL. Runs alternate off/on, which goes first alternating between pairs; the
ratios are medians of the per-pair ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _projects as P  # noqa: E402

HOPS = P.CHAIN_HOPS
WARMUP = 200

RECEIVER = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
counts = {"spans": 0, "logs_requests": 0}
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/traces":
            n = sum(len(ss.spans) for rs in ExportTraceServiceRequest.FromString(body).resource_spans
                    for ss in rs.scope_spans)
            with lock:
                counts["spans"] += n
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):  # /count: the spans received so far
        out = json.dumps(counts).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Receiver:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def spans(self) -> int:
        with urllib.request.urlopen(f"{self.url}/count", timeout=10) as resp:
            return int(json.loads(resp.read())["spans"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def chain_run(
    root: Path, endpoint: str | None, n: int, traces: str, receiver: Receiver | None
) -> tuple[float, float, int]:
    """``(seconds for n events to drain, seconds to flush the export, spans exported)``."""
    import wistro

    proj = P.write_chain(Path(tempfile.mkdtemp(dir=root)))
    if endpoint:
        with (proj / "wistro.yml").open("a", encoding="utf-8") as f:
            f.write(f"traces:\n  otlp:\n    endpoint: {endpoint}\n")
    kwargs: dict[str, str] = {"state": "memory"}
    if traces != "sqlite":
        kwargs["traces"] = traces
    app = wistro.load(proj, **kwargs)
    assert not app.errors, app.errors
    assert (app.otel is not None) == bool(endpoint)
    for i in range(WARMUP):
        await app.emit("t0", P.chain_first_payload(i), wait=False)
    await app.drain()
    if app.otel is not None:  # the warm-up's spans sent, so only the timed ones are counted
        await asyncio.to_thread(app.otel.close)
    before = receiver.spans() if receiver and endpoint else 0
    payloads = [P.chain_first_payload(i) for i in range(n)]
    gc.collect()
    t0 = time.perf_counter()
    for p in payloads:
        await app.emit("t0", p, wait=False)
    await app.drain()
    dt = time.perf_counter() - t0
    runs = app.runs(limit=1)
    assert len(runs) and runs["status"].iloc[0] == "ok", runs
    t1 = time.perf_counter()
    await app.aclose()
    flush = time.perf_counter() - t1
    exported = receiver.spans() - before if receiver and endpoint else 0
    return dt, flush, exported


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=5_000, help="events per run")
    ap.add_argument("--pairs", type=int, default=5, help="off/on pairs; median")
    ap.add_argument("--traces", choices=["sqlite", "memory"], default="memory")
    ap.add_argument("--default-queue", action="store_true", help="keep the SDK's queue size")
    args = ap.parse_args()
    n = args.events
    if not args.default_queue:
        os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(2 * n * HOPS)
    receiver = Receiver()
    rates: dict[bool, list[float]] = {False: [], True: []}
    ratios, full_ratios, flushes, exported = [], [], [], []
    try:
        with tempfile.TemporaryDirectory(prefix="wistro-bench-otel-") as tmp:
            root = Path(tmp)
            for pair in range(args.pairs):
                order = (False, True) if pair % 2 == 0 else (True, False)
                got: dict[bool, float] = {}
                full = 0.0
                for on in order:
                    endpoint = receiver.url if on else None
                    secs, flush, spans = asyncio.run(
                        chain_run(root, endpoint, n, args.traces, receiver)
                    )
                    got[on] = n * HOPS / secs
                    rates[on].append(got[on])
                    if on:
                        full = n * HOPS / (secs + flush)
                        flushes.append(flush)
                        exported.append(spans)
                ratios.append(got[True] / got[False])
                full_ratios.append(full / got[False])
                print(
                    f"  pair {pair + 1}: off {got[False]:,.0f}, on {got[True]:,.0f} hops/s to "
                    f"drain ({ratios[-1]:.3f}), {full:,.0f} to export ({full_ratios[-1]:.3f}); "
                    f"flush {flushes[-1]:.2f} s, exported {exported[-1]:,} / {n * HOPS:,} spans",
                    flush=True,
                )
    finally:
        receiver.stop()
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"\nOTLP export on vs off, 5-hop chain, {n:,} events x {args.pairs} alternating pairs, "
        f"traces: {args.traces}, {os.cpu_count()} CPUs"
    )
    print(f"{'hops/s':<22}{'off':>12}{'on':>12}{'on/off':>9}{'of medians':>12}")
    print(
        f"{'to drain':<22}{off:>12,.0f}{on:>12,.0f}"
        f"{statistics.median(ratios):>9.3f}{on / off:>12.3f}"
    )
    print(f"{'to export':<22}{'':>12}{'':>12}{statistics.median(full_ratios):>9.3f}")
    print(
        f"flush at close: median {statistics.median(flushes):.2f} s; exported: median "
        f"{statistics.median(exported):,.0f} of {n * HOPS:,} spans"
    )
    print(
        "on/off = median of the per-pair ratios; 'of medians' = median(on) / median(off). The "
        "export's encoding runs on the batch processor's thread but holds the GIL."
    )


if __name__ == "__main__":
    main()
