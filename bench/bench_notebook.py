"""Python-side overhead of ``%wistro emit`` (a live TraceView) next to ``await app.emit`` without
widgets, in the same run, on the 5-step chain project.

    .venv/bin/python bench/bench_notebook.py              # 300 emits of each, interleaved
    .venv/bin/python bench/bench_notebook.py --n 1000

Both run inside one asyncio loop, as cells do in a kernel: the magic is called from inside the
running loop (it schedules the run and returns the view at once), and the clock stops when the
view's ``trace`` trait holds every span of the finished run (a traitlets observer). Widget
messages go through a comm that JSON-encodes them as the kernel would. Target: <= 20 ms extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _projects as P  # noqa: E402

TARGET_EXTRA_MS = 20.0
WARMUP = 30


def _json_comm() -> None:
    """Widget messages encoded as the kernel's session does (the default comm outside a kernel
    drops them before they are encoded, which would flatter the figure)."""
    import comm
    from comm.base_comm import BaseComm
    from jupyter_client.session import json_packer  # what the kernel's session encodes with

    class JSONComm(BaseComm):  # type: ignore[misc]
        bytes_sent = 0

        def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, **k: Any):
            JSONComm.bytes_sent += len(json_packer({"data": data, "metadata": metadata}))

    comm.create_comm = lambda *a, **k: JSONComm(*a, **k)


async def main(n: int, esm_kib: int = 0) -> dict[str, Any]:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    os.environ.setdefault("IPYTHONDIR", str(P.new_root("wistro-bench-ipython-")))
    _json_comm()
    from wistro_jupyter.widgets import bundle_path, bundle_source

    if esm_kib or bundle_source("trace_view") is None:  # a stand-in of the given size
        kib = esm_kib or 60
        stub = P.new_root("wistro-bench-esm-") / "widgets.js"
        stub.write_text("export default { render() {} };\n//" + "x" * (kib * 1024) + "\n")
        os.environ["WISTRO_WIDGETS_ESM"] = str(stub)
    esm = bundle_path("trace_view")
    esm_size = esm.stat().st_size / 1024
    project = P.write_chain(P.new_root())
    os.chdir(project)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "wistro_jupyter")
    ip.run_line_magic("wistro", "load . --memory")
    app = ip.user_ns["wistro_app"]
    payload = P.chain_first_payload()
    line = f"emit t0 {json.dumps(payload)}"

    async def plain() -> float:
        t0 = time.perf_counter()
        run = await app.emit("t0", payload)
        took = time.perf_counter() - t0
        assert run.status == "ok" and len(run.span_records) == P.CHAIN_HOPS
        return took

    async def magic() -> float:
        done = asyncio.Event()

        def spans_in(change: dict[str, Any]) -> None:
            trace = change["new"]
            if trace["run"]["status"] == "ok" and len(trace["spans"]) == P.CHAIN_HOPS:
                done.set()

        t0 = time.perf_counter()
        view = ip.run_line_magic("wistro", line)  # what the cell runs
        view.observe(spans_in, names="trace")
        ip.display_formatter.format(view)  # what the kernel does with the cell's value
        await done.wait()
        took = time.perf_counter() - t0
        assert not view.attached
        view.close()
        return took

    for _ in range(WARMUP):
        await plain()
        await magic()
    plain_s: list[float] = []
    magic_s: list[float] = []
    for _ in range(n):  # interleaved, so both see the same machine
        plain_s.append(await plain())
        magic_s.append(await magic())
    ip.run_line_magic("unload_ext", "wistro_jupyter")
    med_plain = statistics.median(plain_s) * 1000
    med_magic = statistics.median(magic_s) * 1000
    p90_plain = statistics.quantiles(plain_s, n=10)[-1] * 1000
    p90_magic = statistics.quantiles(magic_s, n=10)[-1] * 1000
    return {
        "n": n,
        "esm": f"{esm} ({esm_size:.0f} KiB)",
        "await_app_emit_ms_median": round(med_plain, 3),
        "wistro_emit_view_ms_median": round(med_magic, 3),
        "extra_ms_median": round(med_magic - med_plain, 3),
        "await_app_emit_ms_p90": round(p90_plain, 3),
        "wistro_emit_view_ms_p90": round(p90_magic, 3),
        "extra_ms_p90": round(p90_magic - p90_plain, 3),
        "target_extra_ms": TARGET_EXTRA_MS,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument(
        "--esm-kib",
        type=int,
        default=0,
        help="use a stand-in bundle of this size (default: the built one, else 60 KiB)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args.n, args.esm_kib))
    if args.json:
        print(json.dumps(result))
        return
    print(f"5-step flow, {result['n']} emits each, TraceView ESM {result['esm']}; medians (p90):")
    print(
        f"  await app.emit                 {result['await_app_emit_ms_median']:8.3f} ms"
        f"  ({result['await_app_emit_ms_p90']:.3f})"
    )
    print(
        f"  %wistro emit until TraceView   {result['wistro_emit_view_ms_median']:8.3f} ms"
        f"  ({result['wistro_emit_view_ms_p90']:.3f})"
    )
    ok = "ok" if result["extra_ms_median"] <= TARGET_EXTRA_MS else "OVER TARGET"
    print(
        f"  extra                          {result['extra_ms_median']:8.3f} ms"
        f"  ({result['extra_ms_p90']:.3f})   target <= {TARGET_EXTRA_MS:g} ms: {ok}"
    )


if __name__ == "__main__":
    cli()
