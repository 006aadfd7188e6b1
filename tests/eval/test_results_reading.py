"""Reading stored results fast (orjson, the cyclic collector paused: tests/test_collector.py) without losing what an
older version wrote: a NaN token, an int over 64 bits, a line cut short."""

from __future__ import annotations

import json
from pathlib import Path

from wistro.eval.results import SampleResult, read_results


def test_lines_orjson_refuses_are_read_by_the_stdlib(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    rows = [
        SampleResult("s0", "h0", "t", latency_ms=float("nan")).to_dict(),  # NaN token
        {**SampleResult("s1", "h1", "t").to_dict(), "state": {"g": {"k": 2**70}}},
        SampleResult("s2", "h2", "t", latency_ms=1.5).to_dict(),
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n" + '{"sample_id": "s3", "inp'  # cut
    path.write_text(text, encoding="utf-8")
    got = {r.sample_id: r for r in read_results(path)}
    assert sorted(got) == ["s0", "s1", "s2"]
    assert got["s0"].latency_ms != got["s0"].latency_ms  # NaN, as written
    assert got["s1"].state == {"g": {"k": 2**70}}
    assert got["s2"].latency_ms == 1.5
