"""Where two runs differ: whether a sample's outputs changed, the first divergent step (in
causal order), path-by-path JSON diffs, and ``to_plain`` (NaN, numpy scalars and tuples made
JSON-friendly, the form the diffs are shown in)."""

from __future__ import annotations

from typing import Any

from wistro.eval.results import SampleResult


def _outputs_equal(a: SampleResult, b: SampleResult) -> bool:
    if a.error != b.error or a.status != b.status or a.state != b.state:
        return False
    if len(a.events) != len(b.events) or len(a.spans) != len(b.spans):
        return False
    if [(e["topic"], e["data"], e.get("error") is None) for e in a.events] != [
        (e["topic"], e["data"], e.get("error") is None) for e in b.events
    ]:
        return False
    return [(s["step"], s["status"], s.get("writes")) for s in a.spans] == [
        (s["step"], s["status"], s.get("writes")) for s in b.spans
    ]


def first_divergent_step(a: SampleResult, b: SampleResult) -> str | None:
    """The first step, in causal (start) order, whose output (emitted topics and payloads,
    status, state writes) differs between the two runs; None when no step differs."""
    out_a, out_b = a.step_outputs(), b.step_outputs()
    start: dict[str, float] = {}
    for s in b.spans:
        start.setdefault(s["step"], s["start_ms"])
    for s in a.spans:  # run a's order wins for steps in both
        if s["step"] not in start or start[s["step"]] > s["start_ms"]:
            start[s["step"]] = s["start_ms"]
    for step in sorted(set(out_a) | set(out_b), key=lambda n: (start.get(n, 0.0), n)):
        if out_a.get(step) != out_b.get(step):
            return step
    return None


def diff_json(a: Any, b: Any, path: str = "$") -> list[dict[str, Any]]:
    """Paths added, removed and changed from ``a`` to ``b`` (dicts by key, lists by index):
    ``[{path, change, a, b}]``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[dict[str, Any]] = []
        for k in list(a) + [k for k in b if k not in a]:
            p = f"{path}.{k}"
            if k not in b:
                out.append({"path": p, "change": "removed", "a": a[k], "b": None})
            elif k not in a:
                out.append({"path": p, "change": "added", "a": None, "b": b[k]})
            else:
                out += diff_json(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            p = f"{path}[{i}]"
            if i >= len(b):
                out.append({"path": p, "change": "removed", "a": a[i], "b": None})
            elif i >= len(a):
                out.append({"path": p, "change": "added", "a": None, "b": b[i]})
            else:
                out += diff_json(a[i], b[i], p)
        return out
    if a == b and type(a) is type(b):
        return []
    return [{"path": path, "change": "changed", "a": a, "b": b}]


def to_plain(x: Any) -> Any:
    """JSON-friendly: NaN and infinities to None, numpy scalars to Python ones, tuples to lists."""
    import math

    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_plain(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and not isinstance(x, str | bytes):
        try:
            x = x.item()
        except (ValueError, TypeError):
            return [to_plain(v) for v in list(x)]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
