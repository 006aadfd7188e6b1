"""Wistro in Jupyter: the IPython extension, magics and widgets.

``%load_ext wistro_jupyter`` loads the project of the notebook's folder (or of the nearest parent
with a wistro.yml; a parent's bare ``src/`` of step files is not adopted), registers
``%wistro`` / ``%%wistro``, puts the app in the notebook as ``wistro_app``, completes subcommands,
topics and step names, re-registers step files changed on disk before the next cell, and shows
apps, runs and traces as HTML.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from wistro.errors import ProjectNotFound, WistroError
from wistro_jupyter.session import Session, red
from wistro_jupyter.widgets import FlowGraph, TraceView

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = [
    "FlowGraph",
    "Session",
    "TraceView",
    "load_ipython_extension",
    "session",
    "unload_ipython_extension",
]

_sessions: dict[int, tuple[Session, dict[str, Any]]] = {}


def session(ip: InteractiveShell | None = None) -> Session | None:
    """The extension's session in ``ip`` (default: the running shell)."""
    if ip is None:
        from IPython import get_ipython

        ip = get_ipython()
    entry = _sessions.get(id(ip)) if ip is not None else None
    return entry[0] if entry else None


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "wistro_jupyter.server"}]  # the Workbench's handlers on the Jupyter server


def load_ipython_extension(ip: InteractiveShell) -> None:
    from wistro_jupyter import reprs, workbench_comm
    from wistro_jupyter.magics import WistroMagics, await_wait_transformer, make_matcher

    if id(ip) in _sessions:
        unload_ipython_extension(ip)
    s = Session(ip)
    ip.register_magics(WistroMagics(ip, s))
    reprs.register(ip)
    matcher = make_matcher(s, ip)
    ip.Completer.custom_matchers.append(matcher)
    transformer = await_wait_transformer(ip)
    ip.input_transformers_post.append(transformer)

    def pre_run_cell(info: Any = None) -> None:
        try:
            s.reload_if_changed()
        except WistroError as e:
            red(f"error: reload failed: {e}")
        except Exception as e:  # a hook must never break the cell it runs before
            red(f"error: reload failed: {type(e).__name__}: {e}")

    ip.events.register("pre_run_cell", pre_run_cell)
    _sessions[id(ip)] = (
        s,
        {"transformer": transformer, "pre_run_cell": pre_run_cell, "matcher": matcher},
    )
    workbench_comm.register(ip)  # the Workbench panel's comm target, `wistro.workbench`
    try:
        app = s.load()
    except ProjectNotFound as e:
        hint = f" (hint: {e.hint})" if e.hint else ""
        print(f"wistro: {e.message}; load one with `%wistro load PATH`{hint}")
        return
    except WistroError as e:
        red(f"error: {e}")
        return
    print(f"wistro: loaded {app!r}; `%wistro` lists the commands, the app is `wistro_app`")
    for err in app.errors:
        red(f"error: {err}")


def unload_ipython_extension(ip: InteractiveShell) -> None:
    from wistro_jupyter import reprs

    entry = _sessions.pop(id(ip), None)
    if entry is None:
        return
    s, hooks = entry
    s.close()
    reprs.unregister(ip)
    with contextlib.suppress(ValueError):
        ip.events.unregister("pre_run_cell", hooks["pre_run_cell"])
    if hooks["transformer"] in ip.input_transformers_post:
        ip.input_transformers_post.remove(hooks["transformer"])
    if hooks["matcher"] in ip.Completer.custom_matchers:
        ip.Completer.custom_matchers.remove(hooks["matcher"])
    for kind in ("line", "cell"):
        ip.magics_manager.magics[kind].pop("wistro", None)
    ip.user_ns.pop("wistro_app", None)
