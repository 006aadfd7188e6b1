"""The run-diff widget of an eval comparison (``kind`` = ``"run_diff"``), on anywidget.

``RunDiff(comparison)``: ``comparison`` holds the per-sample rows (regressions first) and the
per-scorer summary; clicking a row in the browser sets ``selected`` (a sample id) and Python fills
``diff`` with ``Comparison.run_diff(selected)``: the two runs side by side aligned by step, the
JSON diff of the payloads and the code diff of the changed steps. Saved notebooks (nbconvert,
GitHub) show the static HTML of the same data.

Importing this module registers ``VIEW`` with ``wistro.eval.compare.register_view``: from then on
``cmp.widget()`` is a ``RunDiff`` and a comparison shown in a kernel is the widget
(``%load_ext wistro_jupyter`` imports it). ``wistro`` itself never imports this package.
"""

from __future__ import annotations

import html
import json
from typing import Any

import traitlets as t

from wistro.eval.compare import STATUS_ORDER, Comparison, register_view
from wistro_jupyter.widgets import OWN_BUNDLES, STATIC, _WistroWidget

# A run-diff-only bundle, when the build makes one; else the combined widgets.js.
OWN_BUNDLES.setdefault("run_diff", STATIC / "run_diff.js")

BAD = ("regressed", "new_error")
STATUS_COLORS = {
    "regressed": "#dc2626",
    "new_error": "#dc2626",
    "improved": "#16a34a",
    "fixed_error": "#16a34a",
    "unchanged": "#6b7280",
    "only_a": "#d97706",
    "only_b": "#d97706",
}
MAX_ROWS = 2000  # rows sent to the browser (regressions first)


def comparison_data(cmp: Comparison, max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """What the list shows: both versions, the scorers' summary and the rows, regressions
    first (then new errors, improvements, ...), as plain JSON."""
    plain = cmp._plain
    scorers = [str(s) for s in cmp.summary["scorer"]]
    ordered = cmp.rows.sort_values("status", key=lambda s: s.map(STATUS_ORDER), kind="stable").head(
        max_rows
    )
    rows = []
    for r in ordered.to_dict(orient="records"):
        rows.append(
            {
                "sample_id": r["sample_id"],
                "topic": r["topic"],
                "status": r["status"],
                "first_divergent_step": r["first_divergent_step"],
                "output_changed": r["output_changed"],
                "worse": list(r["worse"] or []),
                "error_b": r["error_b"],
                "scores": {s: {"a": r.get(f"{s}:a"), "b": r.get(f"{s}:b")} for s in scorers},
            }
        )
    counts = cmp.rows["status"].value_counts().to_dict() if len(cmp.rows) else {}
    data: dict[str, Any] = plain(
        {
            "a": {"label": cmp.a.label, "eval_id": cmp.a.eval_id, "version": cmp.a.version.short},
            "b": {"label": cmp.b.label, "eval_id": cmp.b.eval_id, "version": cmp.b.version.short},
            "scorers": scorers,
            "summary": cmp.summary.to_dict(orient="records"),
            "counts": counts,
            "warnings": list(cmp.warnings),
            "n_rows": len(cmp.rows),
            "rows": rows,
            "steps": cmp.steps[cmp.steps["change"] != "unchanged"].to_dict(orient="records"),
        }
    )
    return data


class RunDiff(_WistroWidget):
    """An eval comparison: the samples (regressions first, status badges) and, for the selected
    one, the two runs side by side by step, the JSON diff of their payloads and the code diff of
    the steps whose sources changed."""

    kind = t.Unicode("run_diff").tag(sync=True)
    comparison = t.Dict().tag(sync=True)
    selected = t.Unicode("").tag(sync=True)
    diff = t.Dict().tag(sync=True)

    def __init__(self, cmp: Comparison, selected: str | None = None, **kwargs: Any) -> None:
        self._cmp = cmp
        data = comparison_data(cmp)
        if selected is None:
            first = data["rows"][0] if data["rows"] else None
            selected = first["sample_id"] if first and first["status"] in BAD else ""
        super().__init__(comparison=data, **kwargs)
        self.observe(self._on_selected, names="selected")
        self.selected = selected

    @property
    def cmp(self) -> Comparison:
        return self._cmp

    def _on_selected(self, change: dict[str, Any]) -> None:
        self.diff = self.diff_for(change["new"])

    def diff_for(self, sample_id: str) -> dict[str, Any]:
        if not sample_id:
            return {}
        if sample_id not in self._cmp.pairs:
            return {"sample_id": sample_id, "error": f"no sample {sample_id!r} in this comparison"}
        data: dict[str, Any] = json.loads(json.dumps(self._cmp.run_diff(sample_id), default=str))
        return data

    def _static_html(self) -> str:
        return static_html(self.comparison, self.diff)

    def __repr__(self) -> str:
        c = self.comparison
        return (
            f"<RunDiff {c.get('a', {}).get('label')} -> {c.get('b', {}).get('label')}: "
            f"{c.get('n_rows', 0)} samples, selected {self.selected or '-'}>"
        )


# ---------------------------------------------------------------- the view of comparisons


class RunDiffView:
    """How a ``Comparison`` shows in a notebook: registered with
    ``wistro.eval.compare.register_view`` when this module is imported."""

    def widget(self, cmp: Comparison, selected: str | None = None) -> RunDiff:
        return RunDiff(cmp, selected=selected)

    def mimebundle(
        self, cmp: Comparison, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """In a Jupyter kernel: the run-diff widget, with the comparison's own HTML as its static
        fallback; None elsewhere (IPython then uses ``_repr_html_`` and ``__repr__``)."""
        from IPython import get_ipython

        ip = get_ipython()
        if ip is None or getattr(ip, "kernel", None) is None:
            return None
        try:
            bundle = RunDiff(cmp)._repr_mimebundle_(**kwargs)
        except FileNotFoundError:  # the widget bundle is not built: the static view
            return None
        if bundle is None:
            return None
        data, meta = bundle
        data = dict(data)
        data.setdefault("text/html", cmp._repr_html_())
        data["text/plain"] = repr(cmp)
        return data, meta


VIEW = RunDiffView()


def register() -> None:
    """Make the run-diff widget the view of comparisons (done on import; idempotent)."""
    register_view(VIEW)


register()


# ---------------------------------------------------------------- static HTML

_CELL = "padding:2px 6px;border-bottom:1px solid rgba(128,128,128,.3);text-align:left;"
_PRE = (
    "font-family:ui-monospace,Menlo,monospace;font-size:12px;background:rgba(128,128,128,.1);"
    "padding:6px 8px;margin:4px 0;overflow:auto;max-height:320px;white-space:pre"
)


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _num(v: Any) -> str:
    return "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else _esc(v))


def _badge(status: Any) -> str:
    color = STATUS_COLORS.get(str(status), "#6b7280")
    return (
        f"<span class='wistro-status status-{_esc(status)}' style='background:{color};color:#fff;"
        f"border-radius:9px;padding:0 7px;font-size:11px;font-weight:600'>{_esc(status)}</span>"
    )


def _table(head: list[str], rows: list[list[str]], cls: str) -> str:
    th = "".join(f"<th style='{_CELL}'>{_esc(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td style='{_CELL}vertical-align:top'>{c}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f"<table class='{cls}' style='border-collapse:collapse'><tr>{th}</tr>{body}</table>"


def _json(x: Any) -> str:
    return _esc(json.dumps(x, sort_keys=True, default=str))


def _emits(side: dict[str, Any] | None) -> str:
    if not side:
        return "<i style='opacity:.6'>did not run</i>"
    lines = [f"<b>{_esc(e['topic'])}</b> <code>{_json(e['data'])}</code>" for e in side["emits"]]
    lines += [f"<span style='color:#dc2626'>{_esc(e)}</span>" for e in side.get("errors") or []]
    return "<br>".join(lines) or "<i style='opacity:.6'>no events</i>"


def diff_colored(text: str) -> str:
    out = []
    for line in text.splitlines():
        color = ""
        if line.startswith("+") and not line.startswith("+++"):
            color = "color:#16a34a"
        elif line.startswith("-") and not line.startswith("---"):
            color = "color:#dc2626"
        elif line.startswith("@@"):
            color = "opacity:.7"
        out.append(f"<span style='{color}'>{_esc(line)}</span>" if color else _esc(line))
    return "\n".join(out)


def diff_html(d: dict[str, Any]) -> str:
    """The selected sample's diff as static HTML."""
    if not d:
        return ""
    if d.get("error"):
        return f"<div style='color:#dc2626'>{_esc(d['error'])}</div>"
    a, b = d["a"], d["b"]
    parts = [
        f"<h4>Sample {_esc(d['sample_id'])} {_badge(d['status'])} · first divergent step: "
        f"<b class='wistro-first-divergent'>{_esc(d.get('first_divergent_step') or '-')}</b></h4>"
    ]
    if d.get("worse"):
        parts.append(f"<div>now failing: {_esc(', '.join(d['worse']))}</div>")
    step_rows = []
    for s in d["steps"]:
        mark = "≠" if s["differs"] else "="
        changed = f" <i>(source {s['source_changed']})</i>" if s.get("source_changed") else ""
        status = [",".join(x["status"]) if x else "-" for x in (s.get("a"), s.get("b"))]
        step_rows.append(
            [
                f"{'<b>' if s['differs'] else ''}{_esc(s['step'])}{changed}"
                f"{'</b>' if s['differs'] else ''}",
                mark,
                _esc(status[0]),
                _emits(s.get("a")),
                _esc(status[1]),
                _emits(s.get("b")),
            ]
        )
    parts.append(
        "<h4>Steps side by side</h4>"
        + _table(
            [
                "step",
                "",
                f"status a ({a['label']})",
                "emitted a",
                f"status b ({b['label']})",
                "emitted b",
            ],
            step_rows,
            "wistro-rundiff-steps",
        )
    )
    pd_rows = [
        [
            _esc(x["step"]),
            _esc(x["topic"]),
            f"<code>{_esc(x['path'])}</code>",
            _esc(x["change"]),
            f"<code>{_json(x['a'])}</code>",
            f"<code>{_json(x['b'])}</code>",
        ]
        for x in d["payload_diff"]
    ]
    parts.append(
        "<h4>Payload diff</h4>"
        + (
            _table(["step", "topic", "path", "change", "a", "b"], pd_rows, "wistro-rundiff-json")
            if pd_rows
            else "<div style='opacity:.7'>the payloads are the same</div>"
        )
    )
    if d.get("state_diff"):
        st_rows = [
            [
                f"<code>{_esc(x['path'])}</code>",
                _esc(x["change"]),
                f"<code>{_json(x['a'])}</code>",
                f"<code>{_json(x['b'])}</code>",
            ]
            for x in d["state_diff"]
        ]
        parts.append(
            "<h4>Final state diff</h4>"
            + _table(["path", "change", "a", "b"], st_rows, "wistro-rundiff-state")
        )
    parts.append("<h4>Code diff</h4>")
    if not d["code_diff"]:
        parts.append("<div style='opacity:.7'>no step's source changed</div>")
    for c in d["code_diff"]:
        parts.append(
            f"<div><b>{_esc(c['step'])}</b> ({_esc(c['change'])}, {_esc(c['file'])})"
            + ("" if c.get("in_run", True) else " <i>not in this sample's runs</i>")
            + "</div>"
        )
        if c.get("note"):
            parts.append(f"<div style='color:#d97706'>{_esc(c['note'])}</div>")
        if c.get("diff"):
            parts.append(
                f"<pre class='wistro-code-diff' style='{_PRE}'>{diff_colored(c['diff'])}</pre>"
            )
    return "".join(parts)


def static_html(data: dict[str, Any], diff: dict[str, Any], max_rows: int = 200) -> str:
    """The comparison and the selected sample's diff, as static HTML (nbconvert, GitHub)."""
    a, b = data.get("a", {}), data.get("b", {})
    scorers = data.get("scorers", [])
    counts = data.get("counts", {})
    parts = [
        f"<div><b>{_esc(a.get('label'))}</b> → <b>{_esc(b.get('label'))}</b> · "
        f"{data.get('n_rows', 0)} samples · "
        + ", ".join(f"{_esc(k)} {v}" for k, v in sorted(counts.items()))
        + "</div>"
    ]
    parts += [f"<div style='color:#d97706'>⚠ {_esc(w)}</div>" for w in data.get("warnings", [])]
    summary = [
        [
            _esc(s["scorer"]),
            _num(s["mean_a"]),
            _num(s["mean_b"]),
            _num(s["diff"]),
            f"[{_num(s['ci_low'])}, {_num(s['ci_high'])}]",
            _num(s["p_value"]),
            _esc(s["verdict"]),
        ]
        for s in data.get("summary", [])
    ]
    if summary:
        parts.append(
            "<h4>Scorers</h4>"
            + _table(
                ["scorer", "mean a", "mean b", "diff", "95% CI", "p", "verdict"],
                summary,
                "wistro-rundiff-summary",
            )
        )
    changed = [
        [
            _esc(x["step"]),
            _esc(x["change"]),
            _esc(x["file"]),
            _num(x["n_regressions"]),
            _num(x["n_first_divergent"]),
        ]
        for x in data.get("steps", [])
    ]
    if changed:
        parts.append(
            "<h4>Changed steps</h4>"
            + _table(
                ["step", "change", "file", "regressions through it", "first divergent there"],
                changed,
                "wistro-rundiff-changed",
            )
        )
    rows = [
        [
            _esc(r["sample_id"]),
            _badge(r["status"]),
            _esc(r.get("first_divergent_step") or ""),
            *[
                f"{_num(r['scores'].get(s, {}).get('a'))} → {_num(r['scores'].get(s, {}).get('b'))}"
                for s in scorers
            ],
        ]
        for r in data.get("rows", [])[:max_rows]
    ]
    parts.append(
        "<h4>Samples (regressions first)</h4>"
        + _table(
            ["sample", "status", "first divergent step", *scorers], rows, "wistro-rundiff-rows"
        )
    )
    if len(data.get("rows", [])) > max_rows:
        parts.append(f"<div style='opacity:.7'>… {len(data['rows']) - max_rows} more</div>")
    parts.append(diff_html(diff))
    return "<div class='wistro-rundiff-static'>" + "".join(parts) + "</div>"
