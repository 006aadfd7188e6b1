"""Write small projects for tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import wistro

ORDER_MODEL = """
from pydantic import BaseModel

class OrderPlaced(BaseModel):
    order_id: str
    amount_cents: int
"""


def write_project(root: Path, files: dict[str, str]) -> Path:
    """``files`` maps paths relative to ``root`` to contents (dedented)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def step(
    name: str,
    subscribes: list[str],
    emits: list[str] | None = None,
    body: str = "pass",
    extra: str = "",
    header: str = "",
    is_async: bool = True,
) -> str:
    """Source of a simple Python step file."""
    handler = "async def" if is_async else "def"
    body = textwrap.indent(textwrap.dedent(body).strip(), "    ")
    return (
        f"{textwrap.dedent(header).strip()}\n\n"
        f"config = {{'name': {name!r}, 'subscribes': {subscribes!r}, "
        f"'emits': {emits or []!r}, {extra}}}\n\n"
        f"{handler} handler(data, ctx):\n{body}\n"
    )


def load_app(root: Path, apps: list[wistro.App]) -> wistro.App:
    """The project at ``root`` loaded (memory state and traces, no load errors), kept in
    ``apps`` to be closed after the test (the ``apps`` fixture)."""
    app = wistro.load(root, traces="memory", state="memory")
    assert app.errors == [], app.errors
    apps.append(app)
    return app


async def close_apps(apps: list[wistro.App], timeout: float = 30.0) -> None:
    """Close every app a test made (what the ``apps`` fixtures do after it). Work still in flight
    after ``timeout`` seconds is abandoned and fails the test by name, rather than wait forever."""
    abandoned: list[str] = []
    for app in apps:
        abandoned += await app.aclose(timeout)
    assert abandoned == [], f"still in flight {timeout:g}s after the test: {abandoned}"
