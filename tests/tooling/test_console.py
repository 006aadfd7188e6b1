"""What the console prints: `wistro trace` shows the whole tree of a run whatever started it, and
values from user data can neither forge a line, recolor the terminal, nor fail to print.

Everything runs for real: the shop template served over HTTP by uvicorn, cron steps through
``Engine.call``, the SQLite trace store, the CLI through click's CliRunner."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from projects import step, write_project

import wistro
from wistro.cli.main import main
from wistro.tooling.scaffold import create_project
from wistro.tracing.records import Batch, RunRecord
from wistro.tracing.sqlite import SQLiteTraceStore
from wistro.triggers.http import HttpServer, serve_http

ORDER = {"order_id": "A1", "amount_cents": 1200}
ANSI = re.compile("\x1b\\[")


def cli(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["-C", str(root), *args])


def ok(result: Result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 0, result.output
    return result.stdout


@asynccontextmanager
async def serving(app: wistro.App) -> AsyncIterator[httpx.AsyncClient]:
    bound: asyncio.Future[HttpServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_http(app, "127.0.0.1", 0, bound))
    server = await asyncio.wait_for(bound, 10)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


def tree_lines(out: str) -> tuple[list[str], list[str]]:
    """The span lines (▶) and event lines (● or ✗) of a printed tree."""
    spans = [line for line in out.splitlines() if "▶ " in line]
    events = [line for line in out.splitlines() if "● " in line or "✗ " in line]
    return spans, events


def assert_whole_tree(root: Path, trace_id: str) -> dict[str, Any]:
    """`wistro trace` holds every span and event of the --json data, each exactly once."""
    data = json.loads(ok(cli(root, "trace", trace_id, "--json")))
    assert data["spans"] and data["events"]
    with_ids = ok(cli(root, "trace", trace_id, "--ids"))
    for record in [*data["spans"], *data["events"]]:
        assert with_ids.count(f"[{record['id']}]") == 1, f"{record['id']} not once in:\n{with_ids}"
    plain = ok(cli(root, "trace", trace_id))
    spans, events = tree_lines(plain)
    assert len(spans) == len(data["spans"]), plain
    assert len(events) == len(data["events"]), plain
    for span in data["spans"]:
        assert f"▶ {span['step']} {span['status']}" in plain
    for event in data["events"]:
        assert f" {event['topic']}" in plain
    return data


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    create_project(root)
    return root


async def test_trace_of_an_api_started_run_shows_every_span_and_event(shop: Path) -> None:
    app = wistro.load(shop)
    async with serving(app) as client:
        resp = await client.post("/orders", json=ORDER)
        assert resp.status_code == 202, resp.text
        trace_id = resp.json()["trace_id"]
        await app.drain()
    await app.aclose()

    data = assert_whole_tree(shop, trace_id)
    assert data["run"]["trigger"] == "api"
    first = next(s for s in data["spans"] if s["step"] == "Place order")
    assert first["event_id"] == ""  # no event started it: a root all the same
    out = ok(cli(shop, "trace", trace_id))
    lines = out.splitlines()
    assert lines[0].startswith(f"trace {trace_id}  ok  api POST /orders")
    assert lines[1] == lines[1].lstrip() and "▶ Place order ok" in lines[1]  # the root
    assert "● order.placed" in lines[2]  # what it emitted, below it
    for step_name in ("Charge card", "Reserve stock", "Send receipt", "Pack order"):
        assert f"▶ {step_name} ok" in out
    assert "info charging order_id=A1" in out


async def test_trace_of_a_cron_started_run_shows_every_span_and_event(shop: Path) -> None:
    app = wistro.load(shop)
    record = app.registry.get("Nightly report")
    _, run = await app.engine.call(record, None, trigger="cron", topic="cron Nightly report")
    await run
    await app.drain()
    await app.aclose()

    data = assert_whole_tree(shop, run.trace_id)
    assert data["run"]["trigger"] == "cron"
    out = ok(cli(shop, "trace", run.trace_id))
    assert "▶ Nightly report ok" in out.splitlines()[1]
    assert "● report.requested" in out and "▶ Build report ok" in out


def test_trace_of_an_emit_a_refused_emit_and_an_empty_run(shop: Path) -> None:
    ok(cli(shop, "emit", "order.placed", json.dumps(ORDER)))
    [run] = json.loads(ok(cli(shop, "traces", "--json")))
    assert_whole_tree(shop, run["trace_id"])

    refused = cli(shop, "emit", "order.placed", '{"order_id": "A1", "amount_cents": "lots"}')
    assert refused.exit_code == 1
    runs = json.loads(ok(cli(shop, "traces", "--json")))
    refused_run = next(r for r in runs if r["trace_id"] != run["trace_id"])
    out = ok(cli(shop, "trace", refused_run["trace_id"]))
    assert "✗ order.placed" in out and "refused: " in out and "amount_cents" in out

    store = SQLiteTraceStore(shop / ".wistro" / "traces.db")  # a run with nothing recorded
    store.write(Batch(runs=[RunRecord("f" * 32, "api", "POST /orders", "error", 1.0, 2.0)]))
    store.close()
    out = ok(cli(shop, "trace", "f" * 32))
    assert out.splitlines()[0].startswith("trace " + "f" * 32)
    assert "no events or spans recorded" in out


EVIL_STEP = step(
    "Evil\x1b[31m step",
    ["go"],
    ["went"],
    extra="'retries': 0",
    body=r"""
    ctx.logger.info(
        "line one\n12:00:00 error    deadbeef Forged forged line \x1b[31mred",
        value="a\nb\x1b[2J",
        sur="x\ud800y",
    )
    ctx.logger.warning("bad \ud800 message\u2028next")
    await ctx.state.set("group", "key", {"v": "\ud800\n"})
    await ctx.emit("went", {"text": "line\nbreak \x1b[0m \ud800"})
    raise ValueError("boom\nerror: forged \x1b[0m \ud800")
    """,
)


@pytest.fixture
def evil(tmp_path: Path) -> Path:
    return write_project(
        tmp_path / "evil", {"wistro.yml": "name: evil\n", "src/evil.step.py": EVIL_STEP}
    )


def assert_safe(out: str) -> None:
    assert "\x1b" not in out  # no escape of the data reaches the terminal (and no colors here)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", out)
    assert "Forged forged line" not in "\n".join(
        line for line in out.splitlines() if line.startswith("12:00:00")
    )


def test_control_characters_from_user_data_are_escaped_everywhere(evil: Path) -> None:
    emitted = cli(evil, "emit", "go", '{"p": "q\\u2028r\\u001b[1m"}')
    assert emitted.exit_code == 1  # the step failed; printing did not
    assert emitted.exception is None or isinstance(emitted.exception, SystemExit)
    out = emitted.stdout
    assert_safe(out)
    assert r"line one\n12:00:00 error    deadbeef Forged forged line \x1b[31mred" in out
    assert r"value=a\nb\x1b[2J" in out and r"sur=x\ud800y" in out
    assert r"bad \ud800 message\u2028next" in out
    assert r"ValueError: boom\nerror: forged \x1b[0m \ud800" in out
    assert r"▶ Evil\x1b[31m step error" in out
    assert '{"p":"q\\u2028r\\u001b[1m"}' in out  # payloads are JSON: escaped already

    [run] = json.loads(ok(cli(evil, "traces", "--json")))
    tree = ok(cli(evil, "trace", run["trace_id"]))
    assert_safe(tree)
    assert r"value=a\nb\x1b[2J" in tree
    assert len(tree.splitlines()) == len(out.splitlines())  # every value on its line

    logs = ok(cli(evil, "logs"))
    assert_safe(logs)
    assert len(logs.splitlines()) == 2  # two log calls, two lines, nothing forged
    assert r"Evil\x1b[31m step line one\n12:00:00" in logs

    dead = ok(cli(evil, "replay"))  # a table: the dead letter's step and error
    assert_safe(dead)
    assert len(dead.splitlines()) == 2
    assert r"Evil\x1b[31m step" in dead and r"boom\nerror: forged \x1b[0m \ud800" in dead

    listing = ok(cli(evil, "steps"))  # a table of the registry
    assert_safe(listing)
    assert r"Evil\x1b[31m step" in listing


def test_a_lone_surrogate_logged_keeps_the_trace(evil: Path) -> None:
    """SQLite text must be UTF-8: a lone surrogate is stored escaped, not the batch lost."""
    cli(evil, "emit", "go", "{}")
    [run] = json.loads(ok(cli(evil, "traces", "--json")))
    data = json.loads(ok(cli(evil, "trace", run["trace_id"], "--json")))
    assert [s["step"] for s in data["spans"]] == ["Evil\x1b[31m step"]
    messages = [log["message"] for log in data["logs"]]
    assert messages[1] == "bad \\ud800 message\u2028next"


def test_colors_on_a_terminal_are_kept_for_wistro_own_styling(shop: Path) -> None:
    """With colors forced, the status is still colored (Wistro's own escapes are not escaped)."""
    ok(cli(shop, "emit", "order.placed", json.dumps(ORDER)))
    out = CliRunner().invoke(main, ["-C", str(shop), "traces"], color=True).stdout
    assert ANSI.search(out)
    assert "\\x1b" not in out
