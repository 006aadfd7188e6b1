"""What every widget shares: where its JavaScript bundle is (``STATIC``, ``WISTRO_WIDGETS_ESM``),
the bundle's text, the line shown when it is missing, and ``_WistroWidget``, the anywidget base
that falls back to the widget's static HTML."""

from __future__ import annotations

import contextlib
import html
import os
import pathlib
from typing import Any

import anywidget
import traitlets as t

# wistro_jupyter/static: this module lives in wistro_jupyter/widgets/.
STATIC = pathlib.Path(__file__).parent.parent / "static"
BUNDLE = STATIC / "widgets.js"  # both widgets
# A widget's own, smaller bundle when the build makes one: every widget instance sends its ESM
# to the browser (and into the saved notebook), so a TraceView per emit must not carry Graphviz.
OWN_BUNDLES = {"flow_graph": STATIC / "flow_graph.js", "trace_view": STATIC / "trace_view.js"}
ESM_ENV = "WISTRO_WIDGETS_ESM"  # another bundle path, for every widget (development, tests)


class WidgetBundleMissing(FileNotFoundError):
    """The JavaScript bundle of the widgets is not in the package. No longer raised on display:
    a widget without its bundle shows its static HTML under ``missing_bundle_message``."""


def bundle_path(kind: str = "") -> pathlib.Path:
    override = os.environ.get(ESM_ENV)
    if override:
        return pathlib.Path(override)
    own = OWN_BUNDLES.get(kind)
    if own is not None and own.is_file():
        return own
    return BUNDLE


_esm_cache: dict[pathlib.Path, tuple[int, str]] = {}


def bundle_source(kind: str = "") -> str | None:
    """The ESM text of the widget bundle, or None when it is not there."""
    path = bundle_path(kind)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    cached = _esm_cache.get(path)
    if cached is None or cached[0] != mtime:
        cached = _esm_cache[path] = (mtime, path.read_text(encoding="utf-8"))
    return cached[1]


def missing_bundle_message(kind: str = "") -> str:
    """The one line a widget shows above its static view when its JavaScript is not there (a
    source checkout where nobody built it)."""
    path = bundle_path(kind)
    with contextlib.suppress(ValueError):
        path = path.resolve().relative_to(STATIC.resolve().parents[1])
    return (
        f"wistro: the widget JavaScript is missing ({path.as_posix()}); showing a static view. "
        "Build it with: cd labextension && npm ci && npm run build"
    )


_MISSING_ESM = (
    "export default { render({ el }) { el.textContent = "
    "'wistro: the widget bundle (wistro_jupyter/static/widgets.js) is missing'; } };"
)


class _WistroWidget(anywidget.AnyWidget):
    kind = t.Unicode("").tag(sync=True)

    @property
    def _esm(self) -> str:  # read by anywidget when the widget is created
        return bundle_source(self.kind) or _MISSING_ESM

    def _static_html(self) -> str:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self._static_html()

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        if bundle_source(self.kind) is None:  # the static view, never an error in the cell
            line = missing_bundle_message(self.kind)
            warning = f'<div class="wistro-warning" style="color:#b45309">{html.escape(line)}</div>'
            text = f"{line}\n{self!r}"
            return {"text/plain": text, "text/html": warning + self._static_html()}, {}
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, meta = bundle
        data = dict(data)
        data["text/html"] = self._static_html()
        return data, meta
