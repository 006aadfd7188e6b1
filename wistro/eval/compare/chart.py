"""``Chart``: each scorer's mean per version with its interval, as a static SVG (no plotting
library), what ``Comparison.chart`` and ``MultiComparison.chart`` return."""

from __future__ import annotations

import html
from dataclasses import dataclass

CHART_COLORS = ("#3b82f6", "#f59e0b", "#10b981", "#ec4899", "#8b5cf6", "#06b6d4")


@dataclass
class Chart:
    """Each scorer's mean per version with its interval: a static SVG (no plotting library).
    Text and axes use ``currentColor`` inline (``_repr_html_``: the notebook's text colour, light
    or dark theme) and a mid grey standalone (``_repr_svg_``); series colours read on both."""

    title: str
    versions: list[str]
    # (scorer, one (mean, ci_low, ci_high) or None per version, verdict)
    series: list[tuple[str, list[tuple[float, float, float] | None], str]]

    def to_svg(self, ink: str = "#808080") -> str:
        esc = html.escape
        row_h = 18 * max(1, len(self.versions)) + 14
        label_w, plot_w, right = 200, 360, 130
        top = 44
        height = top + row_h * max(1, len(self.series)) + 36
        width = label_w + plot_w + right
        values = [x for _, pts, _ in self.series for p in pts if p is not None for x in p]
        lo, hi = min([0.0, *values]), max([1.0, *values])
        if hi - lo < 1e-9:
            hi = lo + 1.0

        def x(v: float) -> float:
            return label_w + (v - lo) / (hi - lo) * plot_w

        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" class="wistro-chart" role="img" '
            f'font-family="system-ui, sans-serif" font-size="12" fill="{ink}" '
            f'stroke="none"><title>{esc(self.title)}</title>',
            f'<text x="8" y="16" font-weight="600">{esc(self.title)}</text>',
        ]
        for i, name in enumerate(self.versions):  # legend
            lx = 8 + i * 170
            c = CHART_COLORS[i % len(CHART_COLORS)]
            out.append(
                f'<circle cx="{lx + 5}" cy="30" r="5" fill="{c}"/>'
                f'<text x="{lx + 14}" y="34">{esc(name[:24])}</text>'
            )
        bottom = top + row_h * max(1, len(self.series))
        for k in range(5):  # axis
            v = lo + (hi - lo) * k / 4
            gx = x(v)
            out.append(
                f'<line x1="{gx:.1f}" x2="{gx:.1f}" y1="{top}" y2="{bottom}" stroke="{ink}" '
                f'stroke-opacity="0.25" stroke-dasharray="3 3"/>'
                f'<text x="{gx:.1f}" y="{bottom + 16}" text-anchor="middle">{v:.2g}</text>'
            )
        for j, (scorer, points, verdict) in enumerate(self.series):
            y0 = top + j * row_h
            mark = {"regressed": " ▼", "improved": " ▲"}.get(verdict, "")
            out.append(
                f'<g class="wistro-chart-scorer" data-scorer="{esc(scorer)}">'
                f'<text x="{label_w - 8}" y="{y0 + row_h / 2 + 4:.1f}" text-anchor="end">'
                f"{esc(scorer[:30])}{mark}</text>"
            )
            for i, p in enumerate(points):
                cy = y0 + 12 + i * 18
                c = CHART_COLORS[i % len(CHART_COLORS)]
                if p is None:
                    out.append(
                        f'<text x="{label_w + 4}" y="{cy + 4}" fill-opacity="0.6">n/a</text>'
                    )
                    continue
                mean, low, high = p
                out.append(
                    f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{cy}" y2="{cy}" '
                    f'stroke="{c}" stroke-width="2"/>'
                    f'<line x1="{x(low):.1f}" x2="{x(low):.1f}" y1="{cy - 4}" y2="{cy + 4}" '
                    f'stroke="{c}" stroke-width="2"/>'
                    f'<line x1="{x(high):.1f}" x2="{x(high):.1f}" y1="{cy - 4}" y2="{cy + 4}" '
                    f'stroke="{c}" stroke-width="2"/>'
                    f'<circle cx="{x(mean):.1f}" cy="{cy}" r="4.5" fill="{c}">'
                    f"<title>{esc(self.versions[i])}: {mean:.3f} [{low:.3f}, {high:.3f}]</title>"
                    f"</circle>"
                    f'<text x="{label_w + plot_w + 10}" y="{cy + 4}">{mean:.3f} '
                    f'<tspan fill-opacity="0.7">[{low:.2f}, {high:.2f}]</tspan></text>'
                )
            out.append("</g>")
        out.append("</svg>")
        return "".join(out)

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def _repr_html_(self) -> str:
        return f"<div class='wistro-chart-box'>{self.to_svg('currentColor')}</div>"

    def __repr__(self) -> str:
        lines = [self.title]
        for scorer, points, verdict in self.series:
            vals = ", ".join(
                f"{v}: " + ("n/a" if p is None else f"{p[0]:.3f} [{p[1]:.3f}, {p[2]:.3f}]")
                for v, p in zip(self.versions, points, strict=False)
            )
            lines.append(f"  {scorer}: {vals} ({verdict})")
        return "\n".join(lines)
