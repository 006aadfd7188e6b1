"""Two versions of one project live at once on Redis: each runs in its own ``wistro worker``,
and ``wistro traffic set`` splits new traces between them, live. The split holds to a few points,
sticky keys stay put, no run mixes versions, and a version whose workers die gets no traffic."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from processes import WISTRO, Server, env, run

import wistro

YML = """\
    name: versions
    src: src
    bus: {adapter: redis}
    state: {adapter: redis}
    redis: {url: 'URL', prefix: 'PREFIX'}
"""
STEPS = {
    "score.step.py": """\
        config = {"name": "Score", "subscribes": ["order"], "emits": ["scored"]}
        VERSION = "NAME"

        async def handler(data, ctx):
            await ctx.state.set("first", data["id"], VERSION)
            await ctx.emit("scored", {"id": data["id"]})
        """,
    "record.step.py": """\
        config = {"name": "Record", "subscribes": ["scored"], "emits": []}
        VERSION = "NAME"

        async def handler(data, ctx):
            await ctx.state.set("last", data["id"], VERSION)
        """,
}


def _write(root: Path, name: str, url: str, prefix: str) -> None:
    (root / "src").mkdir(parents=True)
    yml = textwrap.dedent(YML).replace("URL", url).replace("PREFIX", prefix)
    (root / "wistro.yml").write_text(yml, encoding="utf-8")
    for file, code in STEPS.items():
        (root / "src" / file).write_text(textwrap.dedent(code).replace("NAME", name), "utf-8")
    run("lock", "--label", name, cwd=root)


@pytest.fixture
def checkouts(tmp_path: Path, redis_url: str, redis_prefix: str) -> dict[str, Path]:
    """Two checkouts of the project whose code differs (two lock hashes), labelled v1 and v2,
    on the same Redis and prefix."""
    out = {}
    for name in ("v1", "v2"):
        out[name] = tmp_path / name
        _write(out[name], name, redis_url, redis_prefix)
    return out


async def _emit(app: wistro.App, orders: list[dict[str, str]]) -> list[wistro.Run]:
    sem = asyncio.Semaphore(100)

    async def one(order: dict[str, str]) -> wistro.Run:
        async with sem:
            return await app.emit("order", order)

    async with asyncio.timeout(120):
        return await asyncio.gather(*(one(o) for o in orders))


async def test_a_split_between_two_live_versions(
    checkouts: dict[str, Path], servers: list[Server]
) -> None:
    workers = {name: Server("worker", cwd=root) for name, root in checkouts.items()}
    servers.extend(workers.values())
    ids = {}
    for name, w in workers.items():
        ready = await w.await_line(r"^worker ready: .* version (\w+) (v\d)", timeout=30)
        assert ready.group(2) == name
        ids[name] = ready.group(1)
    assert ids["v1"] != ids["v2"]

    out = await asyncio.to_thread(run, "versions", "--json", cwd=checkouts["v1"])
    live = {r["label"]: r for r in json.loads(out) if r["live"]}
    assert {n: (r["version"], r["workers"]) for n, r in live.items()} == {
        "v1": (ids["v1"], 1),
        "v2": (ids["v2"], 1),
    }

    # The split, set from the command line, reaches this process (it only publishes).
    out = await asyncio.to_thread(run, "traffic", "set", "v1=25", "v2=75", cwd=checkouts["v1"])
    assert "25.0%" in out and "75.0%" in out, out
    app = wistro.load(checkouts["v1"], consume=False)
    await app.engine.refresh_versions()
    runs = await _emit(app, [{"id": f"o{i}"} for i in range(800)])
    assert {r.status for r in runs} == {"ok"}
    got = Counter(r.version for r in runs)
    assert set(got) == {ids["v1"], ids["v2"]}
    assert abs(100 * got[ids["v1"]] / 800 - 25) <= 5, got
    state = app.engine.state
    first, last = await state.get_group("first"), await state.get_group("last")
    by_id = {ids[name]: name for name in ids}
    for r in runs:  # both steps of every run ran on the run's version: no mixing
        order = r.events["data"].iloc[0]["id"]
        assert json.loads(first[order]) == json.loads(last[order]) == by_id[r.version]
    await app.drain()  # every trace written
    shown = app.runs(limit=1000)  # each run's version, in the DataFrame and the trace view
    assert set(shown["version"]) == {ids["v1"], ids["v2"]}
    from wistro_jupyter.reprs import trace_html

    html = trace_html(app.trace(runs[0].trace_id))
    assert f"version <code>{runs[0].version}</code>" in html
    traffic = json.loads(await asyncio.to_thread(run, "traffic", "--json", cwd=checkouts["v1"]))
    observed = {row["name"]: row["observed"] for row in traffic["rows"]}
    assert abs(observed["v1"] - 25) <= 5 and abs(observed["v2"] - 75) <= 5, traffic

    # Sticky: one customer's runs all go to one version; a weight change moves few customers.
    await app.set_traffic({"v1": 50, "v2": 50}, sticky="customer")
    same = await _emit(app, [{"id": f"s{i}", "customer": "c-42"} for i in range(100)])
    assert len({r.version for r in same}) == 1
    customers = [{"id": f"k{i}", "customer": f"c{i}"} for i in range(400)]
    before = {r.events["data"].iloc[0]["customer"]: r.version for r in await _emit(app, customers)}
    await app.set_traffic({"v1": 25, "v2": 75}, sticky="customer")
    again = [{**c, "id": "r" + c["id"]} for c in customers]
    after = {r.events["data"].iloc[0]["customer"]: r.version for r in await _emit(app, again)}
    moved = [c for c in before if before[c] != after[c]]
    assert len(moved) / 400 <= 0.25 + 0.05, len(moved)
    assert all(after[c] == ids["v2"] for c in moved)  # only toward the version that gained

    # A fresh `wistro emit` process routes its first event by the split too.
    await asyncio.to_thread(run, "traffic", "set", "v1=0", "v2=100", cwd=checkouts["v1"])
    await asyncio.to_thread(run, "emit", "order", '{"id": "cli-1"}', cwd=checkouts["v1"])
    assert json.loads((await state.get_group("first"))["cli-1"]) == "v2"

    # v2's worker dies: once it is no longer live, new traces all go to v1, with a warning.
    await app.set_traffic({"v1": 25, "v2": 75})
    workers["v2"].proc.send_signal(signal.SIGKILL)
    async with asyncio.timeout(30):
        while ids["v2"] in app.engine.router.live:
            await asyncio.sleep(0.5)
            await app.engine.refresh_versions()
    rest = await _emit(app, [{"id": f"d{i}", "customer": f"c{i}"} for i in range(100)])
    assert {r.version for r in rest} == {ids["v1"]}
    shown = await asyncio.to_thread(
        subprocess.run, [*WISTRO, "traffic"], cwd=checkouts["v1"], capture_output=True,
        text=True, env=env(), timeout=60,
    )  # fmt: skip
    assert re.search(r"^v2\s+no\s+75\.0%\s+0\.0%", shown.stdout, re.M), shown.stdout
    assert "warning: version v2 has no live workers" in shown.stderr, shown.stderr
    versions = await app.versions()  # the DataFrame of `wistro versions`
    by_version = versions.set_index("version")
    assert bool(by_version.loc[ids["v1"], "live"]) and by_version.loc[ids["v1"], "label"] == "v1"
    assert not bool(by_version.loc[ids["v2"], "live"])  # killed, but its runs are counted
    assert by_version.loc[ids["v2"], "runs"] > 0 and by_version.loc[ids["v1"], "error_rate"] == 0
    out = await asyncio.to_thread(run, "traffic", "clear", cwd=checkouts["v1"])
    assert out.startswith("no traffic split"), out
    await app.aclose()


def test_traffic_set_refuses_bad_weights_with_one_line(checkouts: dict[str, Path]) -> None:
    for args, expected in [
        (["v1=25", "v2=-5"], "traffic.v2"),
        (["v1"], "expected VERSION=WEIGHT"),
        (["v1=lots"], "traffic.v1"),
    ]:
        res = subprocess.run(
            [*WISTRO, "traffic", "set", *args],
            cwd=checkouts["v1"], capture_output=True, text=True, env=env(), timeout=60,
        )  # fmt: skip
        assert res.returncode != 0
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], res.stderr
