"""``wistro versions`` and ``wistro traffic``: the versions live on the project's bus, and the
traffic split between them (stored on the bus, applied live by every process)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import click

from wistro.cli.group import main, pass_obj
from wistro.cli.support import Obj, emit_json, fail, run_async
from wistro.errors import WistroError
from wistro.tooling import console


def _bus_app(obj: Obj) -> Any:
    """The project on its bus (wistro.yml's, else the local journal of dev/start/worker), as a
    process that only reads and publishes."""
    logging.getLogger("wistro.traffic").setLevel(logging.ERROR)  # said once, below
    return obj.app(bus_default="local", consume=False, state="memory")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _when(ts: float | None) -> str:
    return "-" if not ts else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_obj
def versions(obj: Obj, as_json: bool) -> None:
    """The versions live on the bus (and those that ran recently): label, id, workers, when
    they started, runs, error rate, p50/p95 latency."""
    app = _bus_app(obj)

    async def go() -> list[dict[str, Any]]:
        try:
            return await app.version_rows()
        finally:
            await app.aclose()

    rows = run_async(go)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no live versions (start `wistro worker` or `wistro start`)")
        return
    shown = [
        {
            "label": r["label"] or "-",
            "version": r["version"],
            "live": "yes" if r["live"] else "no",
            "workers": r["workers"],
            "started": _when(r["started"]),
            "runs": r["runs"],
            "errors": _pct(None if r["error_rate"] is None else 100 * r["error_rate"]),
            "p50": _ms(r["p50_ms"]),
            "p95": _ms(r["p95_ms"]),
        }
        for r in rows
    ]
    columns = ["label", "version", "live", "workers", "started", "runs", "errors", "p50", "p95"]
    click.echo(console.table(shown, columns))


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def traffic(ctx: click.Context, as_json: bool) -> None:
    """The traffic split between live versions: configured next to observed.
    `wistro traffic set v1=25 v2=75 [--sticky FIELD]` changes it live; `clear` goes back to
    wistro.yml's `traffic:` (or, without one, to the version of the process that takes the
    event)."""
    if ctx.invoked_subcommand is not None:
        return
    obj: Obj = ctx.obj
    app = _bus_app(obj)

    async def go() -> Any:
        try:
            return await app.traffic_rows()
        finally:
            await app.aclose()

    split, source, rows = run_async(go)
    if as_json:
        emit_json({"split": split.to_dict() if split else None, "source": source, "rows": rows})
        return
    _print_split(split, source, rows)


def _print_split(split: Any, source: str, rows: list[dict[str, Any]]) -> None:
    if split is None:
        click.echo("no traffic split: each trace stays on the version of the process that takes it")
    else:
        sticky = f", sticky on {split.sticky}" if split.sticky else ""
        click.echo(f"traffic split (from {source}{sticky}):")
    if rows:
        shown = [
            {
                "version": r["name"]
                if r["version"] in (None, r["name"])
                else f"{r['name']} ({r['version']})",
                "live": "yes" if r["live"] else "no",
                "configured": _pct(r["weight"]),
                "now": _pct(r["effective"]),
                "observed": _pct(r["observed"]),
                "runs": r["runs"],
            }
            for r in rows
        ]
        click.echo(
            console.table(shown, ["version", "live", "configured", "now", "observed", "runs"])
        )
    for r in rows:
        if r["weight"] and not r["live"]:
            click.echo(
                f"warning: version {r['name']} has no live workers: its share goes to the others",
                err=True,
            )


@traffic.command("set")
@click.argument("weights", nargs=-1, required=True)
@click.option("--sticky", help="Send every value of this payload field to one version.")
@pass_obj
def traffic_set(obj: Obj, weights: tuple[str, ...], sticky: str | None) -> None:
    """Split new traces between versions, e.g. `wistro traffic set v1=25 v2=25 v3=50`. A version
    is named by its label or (a prefix of) its id, as `wistro versions` shows them."""
    parsed: dict[str, str] = {}
    for item in weights:
        name, sep, weight = item.partition("=")
        if not sep or not name or not weight:
            fail(f"{item!r}: expected VERSION=WEIGHT, e.g. v2=25")
        parsed[name] = weight
    app = _bus_app(obj)

    async def go() -> Any:
        try:
            await app.set_traffic(parsed, sticky)
            return await app.traffic_rows()
        finally:
            await app.aclose()

    try:
        split, source, rows = run_async(go)
    except WistroError as e:
        fail(e.format())
    _print_split(split, source, rows)


@traffic.command("clear")
@pass_obj
def traffic_clear(obj: Obj) -> None:
    """Remove the split set with `wistro traffic set` (wistro.yml's `traffic:` applies again)."""
    app = _bus_app(obj)

    async def go() -> Any:
        try:
            await app.set_traffic(None)
            return await app.traffic_rows()
        finally:
            await app.aclose()

    split, source, rows = run_async(go)
    _print_split(split, source, rows)
