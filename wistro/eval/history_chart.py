"""``TrendChart``: each scorer's pass rate over the evals of a dataset, oldest first, as a
self-contained SVG line chart (no plotting library, no script), what ``wistro.eval.trend``
returns; and ``sparkline``, the same trend in a line of text for ``wistro eval history``."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from wistro.eval.compare.chart import CHART_COLORS

SPARK = "▁▂▃▄▅▆▇█"

__all__ = ["TrendChart", "sparkline"]


def sparkline(values: list[float | None], width: int = 40) -> str:
    """One block per value (0 to 1; ``·`` for none), the last ``width`` of them (a leading
    ``…`` when some were left off)."""
    shown = values[-width:] if width > 0 else values
    out = "".join(
        "·"
        if v is None or math.isnan(v)
        else SPARK[min(len(SPARK) - 1, max(0, round(v * (len(SPARK) - 1))))]
        for v in shown
    )
    return ("…" if len(shown) < len(values) else "") + out


@dataclass
class TrendChart:
    """Pass rate (0-100 %) per eval, one line per scorer: x is the evals in time order, labelled
    by their version's label or short id. Shown in a notebook (``_repr_html_`` with the
    notebook's text colour, ``_repr_svg_`` standalone), saved with ``.save("trend.svg")``."""

    title: str
    labels: list[str]  # one per eval, oldest first
    eval_ids: list[str]
    times: list[str]
    # (scorer, one pass rate 0-1 or None per eval)
    series: list[tuple[str, list[float | None]]] = field(default_factory=list)

    def to_svg(self, ink: str = "#808080") -> str:
        esc = html.escape
        n = len(self.labels)
        # the first x label is rotated down to the left of its point: room for it
        first = min(20, len(self.labels[0])) if self.labels else 0
        left, right, top = max(56, round(first * 6.5 * 0.82) + 12), 24, 58
        step = 56 if n <= 12 else max(8, 720 // max(1, n - 1))
        plot_w = max(320, step * max(1, n - 1))
        plot_h = 220
        label_every = max(1, math.ceil(n / max(1, plot_w // 48)))
        bottom = top + plot_h
        dot = 3.5 if n <= 40 else 2.5
        width = left + plot_w + right
        height = bottom + 96

        def x(i: int) -> float:
            return left + (plot_w / 2 if n == 1 else i * plot_w / (n - 1))

        def y(rate: float) -> float:
            return bottom - max(0.0, min(1.0, rate)) * plot_h

        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" class="wistro-chart wistro-trend" role="img" '
            f'font-family="system-ui, sans-serif" font-size="12" fill="{ink}" stroke="none">'
            f"<title>{esc(self.title)}</title>",
            f'<text x="8" y="18" font-weight="600">{esc(self.title)}</text>',
        ]
        lx = 8.0
        for j, (scorer, _) in enumerate(self.series):  # legend
            c = CHART_COLORS[j % len(CHART_COLORS)]
            name = scorer[:32]
            out.append(
                f'<rect x="{lx:.0f}" y="30" width="14" height="4" fill="{c}"/>'
                f'<text x="{lx + 19:.0f}" y="36">{esc(name)}</text>'
            )
            lx += 40 + 7 * len(name)
        for k in range(5):  # y axis: 0, 25, ..., 100 %
            gy = y(k / 4)
            out.append(
                f'<line x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" '
                f'stroke="{ink}" stroke-opacity="0.25" stroke-dasharray="3 3"/>'
                f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">{25 * k}%</text>'
            )
        for i, label in enumerate(self.labels):  # x axis
            shown = i == n - 1 or (i % label_every == 0 and n - 1 - i >= label_every / 2)
            if not shown:  # every k-th, and the last (not crowded by the one before)
                continue
            lxp = x(i)
            out.append(
                f'<text x="{lxp:.1f}" y="{bottom + 14}" text-anchor="end" '
                f'transform="rotate(-35 {lxp:.1f} {bottom + 14})">{esc(label[:20])}</text>'
            )
        if not self.series or n == 0:
            out.append(
                f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" '
                f'text-anchor="middle" fill-opacity="0.7">no pass rates to show</text>'
            )
        for j, (scorer, rates) in enumerate(self.series):
            c = CHART_COLORS[j % len(CHART_COLORS)]
            out.append(f'<g class="wistro-trend-scorer" data-scorer="{esc(scorer)}">')
            segment: list[str] = []
            segments: list[list[str]] = []
            for i, r in enumerate(rates):
                if r is None:
                    if segment:
                        segments.append(segment)
                    segment = []
                    continue
                segment.append(f"{x(i):.1f},{y(r):.1f}")
            if segment:
                segments.append(segment)
            for seg in segments:
                if len(seg) > 1:
                    out.append(
                        f'<polyline points="{" ".join(seg)}" fill="none" stroke="{c}" '
                        f'stroke-width="2" stroke-linejoin="round"/>'
                    )
            for i, r in enumerate(rates):
                if r is None:
                    continue
                tip = f"{scorer} @ {self.labels[i]} ({self.eval_ids[i]}, {self.times[i]}): {r:.1%}"
                out.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(r):.1f}" r="{dot}" fill="{c}">'
                    f"<title>{esc(tip)}</title></circle>"
                )
            out.append("</g>")
        out.append("</svg>")
        return "".join(out)

    def save(self, path: str | Path) -> Path:
        """Write the standalone SVG to ``path`` (returned)."""
        file = Path(path)
        file.write_text(self.to_svg(), encoding="utf-8")
        return file

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def _repr_html_(self) -> str:
        return f"<div class='wistro-chart-box'>{self.to_svg('currentColor')}</div>"

    def __repr__(self) -> str:
        lines = [f"{self.title} ({len(self.labels)} evals)"]
        width = max((len(s) for s, _ in self.series), default=0)
        for scorer, rates in self.series:
            known = [r for r in rates if r is not None]
            span = f"{known[0]:.1%} -> {known[-1]:.1%}" if known else "n/a"
            lines.append(f"  {scorer.ljust(width)}  {sparkline(rates)}  {span}")
        return "\n".join(lines)
