"""What ``wistro versions`` and ``wistro traffic`` show, from plain values: the live versions
(``LiveVersion``), the recorded runs (trace-store rows) and the split."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from wistro.versions.live import LiveVersion
from wistro.versions.split import Split

ERROR_STATUSES = ("error", "interrupted")


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def version_rows(
    live: Iterable[LiveVersion], runs: Iterable[dict[str, Any]], since: float | None = None
) -> list[dict[str, Any]]:
    """One row per version that is live or ran a run since ``since``: label, id, live,
    workers, started, runs, error rate, p50/p95 latency (ms) of the runs that ended."""
    by: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        version = run.get("version")
        if version and (since is None or run["start"] >= since):
            by.setdefault(version, []).append(run)
    live_by = {v.id: v for v in live}
    rows = []
    for version in sorted(set(by) | set(live_by)):
        v, mine = live_by.get(version), by.get(version, [])
        ended = [r for r in mine if r["status"] != "running"]
        latency = sorted((r["end"] - r["start"]) * 1000 for r in ended if r.get("end"))
        errors = sum(1 for r in ended if r["status"] in ERROR_STATUSES)
        rows.append(
            {
                "label": v.label if v else None,
                "version": version,
                "live": v is not None,
                "workers": v.workers if v else 0,
                "started": v.started if v else None,
                "runs": len(mine),
                "error_rate": errors / len(ended) if ended else None,
                "p50_ms": _quantile(latency, 0.50),
                "p95_ms": _quantile(latency, 0.95),
            }
        )
    rows.sort(key=lambda r: (not r["live"], -float(r["started"] or 0.0), str(r["version"])))
    return rows


def traffic_rows(
    split: Split | None,
    names: dict[str, str],
    live: Iterable[LiveVersion],
    runs: Iterable[dict[str, Any]],
    since: float | None,
) -> list[dict[str, Any]]:
    """Each version of the split (``names``: split name -> live id) and each version that got
    runs: its configured weight (%), its effective share now (no live workers: none) and the
    share of the runs since ``since`` it got."""
    counted: dict[str, int] = {}
    total = 0
    for run in runs:
        if run.get("version") and (since is None or run["start"] >= since):
            counted[run["version"]] = counted.get(run["version"], 0) + 1
            total += 1
    live_by = {v.id: v for v in live}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    if split is not None:
        all_weight = sum(weight for _, weight in split.weights) or 1.0
        effective = split.shares(list(names))
        for name, weight in split.weights:
            version = names.get(name)
            seen.add(version or name)
            got = counted.get(version, 0) if version else 0
            rows.append(
                {
                    "name": name,
                    "version": version,
                    "live": version in live_by,
                    "weight": 100.0 * weight / all_weight,
                    "effective": 100.0 * effective.get(name, 0.0),
                    "observed": 100.0 * got / total if total else None,
                    "runs": got,
                }
            )
    for version, got in sorted(counted.items()):
        if version in seen:
            continue
        v = live_by.get(version)
        rows.append(
            {
                "name": v.label if v and v.label else version,
                "version": version,
                "live": v is not None,
                "weight": None,
                "effective": None,
                "observed": 100.0 * got / total if total else None,
                "runs": got,
            }
        )
    return rows
