"""The trace store on disk: a corrupt ``.wistro/traces.db`` is one clear line (and
``wistro traces --repair``), never a traceback; and what Wistro writes under ``.wistro/`` is
readable by its owner only, whatever the umask.

Real projects (``wistro init``'s shop), real SQLite files, the CLI through click's CliRunner and,
for ``dev``/``start``, through the installed ``wistro`` program."""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import wistro
from wistro.cli.main import main
from wistro.errors import CorruptTraceStore, TraceStoreError, WistroError
from wistro.files import make_private_dir, make_private_file, write_atomic
from wistro.tooling.scaffold import create_project
from wistro.tracing.sqlite import SQLiteTraceStore, repair

ORDER = '{"order_id": "A1", "amount_cents": 1200}'
WISTRO = [str(Path(sys.executable).with_name("wistro"))]
TIMEOUT = 60


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.stderr}\n{result.exception!r}"
    return result.stdout


def one_line_error(result: Result, *needles: str) -> str:
    """Exit non-zero with exactly one ``error: ...`` line on stderr, and no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def run_wistro(*args: str, cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WISTRO_")}
    return subprocess.run(
        [*WISTRO, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def shop_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "shop"
    create_project(root)
    return root


@pytest.fixture
def shop(shop_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shop with one recorded run, and the current folder."""
    root = tmp_path / "shop"
    shutil.copytree(shop_template, root)
    monkeypatch.chdir(root)
    ok(cli("emit", "order.placed", ORDER))
    return root


def db_of(root: Path) -> Path:
    return root / ".wistro" / "traces.db"


def last_trace_id() -> str:
    return str(json.loads(ok(cli("traces", "--json")))[0]["trace_id"])


def settled(db: Path) -> Path:
    """The database alone on disk: connections of earlier in-process commands closed (which
    checkpoints their -wal into it), so a damage to the file is not hidden by a -wal copy."""
    gc.collect()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # whatever is still in -wal goes in the file
    conn.close()
    # A fresh inode: a connection an earlier command left open keeps the old one, so damage
    # made below is never mixed with that connection's cached pages or its -shm.
    fresh = db.with_name(db.name + ".fresh")
    fresh.write_bytes(db.read_bytes())
    os.chmod(fresh, 0o600)
    os.replace(fresh, db)
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    return db


def garbage(db: Path) -> None:
    settled(db).write_bytes(os.urandom(db.stat().st_size or 8192))


def truncated(db: Path) -> None:
    with settled(db).open("r+b") as f:
        f.truncate(100)  # the header survives, the pages do not


CORRUPTIONS = {"random bytes": garbage, "truncated": truncated}
CORRUPT_LINE = (
    ".wistro/traces.db: not a readable trace database (",
    "(hint: move it aside, e.g. mv .wistro/traces.db .wistro/traces.db.corrupt, "
    "or run `wistro traces --repair`)",
)


# ---------------------------------------------------------------- corrupt stores


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_trace_db_is_one_line_for_every_command(shop: Path, corrupt: object) -> None:
    trace_id = last_trace_id()
    corrupt(db_of(shop))  # type: ignore[operator]
    for args in (
        ["traces"],
        ["traces", "--json"],
        ["trace", trace_id],
        ["emit", "order.placed", ORDER],
        ["logs"],
        ["replay"],
    ):
        line = one_line_error(cli(*args), *CORRUPT_LINE)
        assert "file is not a database" in line or "disk image is malformed" in line, line


def test_the_error_names_the_file_from_anywhere(shop: Path, tmp_path: Path) -> None:
    garbage(db_of(shop))
    (tmp_path / "elsewhere").mkdir()
    os.chdir(tmp_path / "elsewhere")
    line = one_line_error(cli("-C", str(shop), "traces"))
    assert f"{db_of(shop)}: not a readable trace database (file is not a database)" in line
    assert f"or run `wistro -C {shop} traces --repair`" in line
    os.chdir(tmp_path)
    line = one_line_error(cli("-C", "shop", "traces"))
    assert "error: shop/.wistro/traces.db: not a readable trace database" in line
    assert "mv shop/.wistro/traces.db shop/.wistro/traces.db.corrupt" in line
    assert "or run `wistro -C shop traces --repair`" in line
    assert cli("-C", "shop", "traces", "--repair").exit_code == 0
    garbage(db_of(shop))
    with pytest.raises(CorruptTraceStore) as e:
        wistro.load(shop)
    assert isinstance(e.value, TraceStoreError) and isinstance(e.value, WistroError)
    assert str(e.value).splitlines() == [str(e.value)]
    assert e.value.file == "shop/.wistro/traces.db"


@pytest.mark.parametrize("command", ["dev", "start"])
def test_dev_and_start_stop_at_once_with_the_line(shop: Path, command: str) -> None:
    ok(cli("lock"))
    garbage(db_of(shop))
    args = [command, "--port", "0"] + (["--no-reload"] if command == "dev" else [])
    began = time.monotonic()
    res = run_wistro(*args, cwd=shop, timeout=30)
    assert time.monotonic() - began < 20
    assert res.returncode != 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for needle in (*CORRUPT_LINE, "file is not a database"):
        assert needle in lines[0]


def test_a_folder_in_place_of_the_db_is_one_line_too(shop: Path) -> None:
    db = db_of(shop)
    db.unlink()
    db.mkdir()
    line = one_line_error(cli("traces"), ".wistro/traces.db: the trace database failed (")
    assert "unable to open database file" in line
    assert stat.S_IMODE(db.stat().st_mode) & 0o700 == 0o700  # not made unusable by a chmod
    one_line_error(cli("traces", "--repair"), ".wistro/traces.db: not a file")


def test_repair_moves_a_corrupt_db_aside_and_starts_afresh(shop: Path) -> None:
    db = db_of(shop)
    garbage(db)
    before = db.read_bytes()
    db.with_name("traces.db-wal").write_bytes(b"stale wal")
    res = cli("traces", "--repair")
    assert res.exit_code == 0, res.output
    [aside] = [
        p
        for p in db.parent.iterdir()
        if p.name.startswith("traces.db.corrupt-") and not p.name.endswith(("-wal", "-shm"))
    ]
    assert aside.read_bytes() == before
    assert aside.name[len("traces.db.corrupt-") :].replace("-", "").isdigit()
    assert aside.with_name(aside.name + "-wal").read_bytes() == b"stale wal"  # moved with it
    assert f"moved .wistro/traces.db aside to {aside.name}" in res.stderr
    assert res.stdout.split()[:3] == ["TRACE_ID", "STATUS", "TOPIC"]
    assert len(res.stdout.splitlines()) == 1  # no runs: a fresh store

    ok(cli("emit", "order.placed", ORDER))  # the fresh store works
    assert len(json.loads(ok(cli("traces", "--json")))) == 1
    again = cli("traces", "--repair")
    assert again.exit_code == 0 and "traces.db is readable: nothing to repair" in again.stderr
    assert len(json.loads(ok(cli("traces", "--json")))) == 1  # a good store is not touched
    moved = {p.name for p in db.parent.iterdir() if ".corrupt-" in p.name}
    assert moved <= {aside.name + suffix for suffix in ("", "-wal", "-shm")}  # moved only once


def test_repair_finds_damage_that_opening_does_not(shop: Path) -> None:
    """A damaged page in the middle: the store opens, ``quick_check`` tells."""
    for i in range(40):
        ok(cli("emit", "order.placed", json.dumps({"order_id": f"B{i}", "amount_cents": 5})))
    db = db_of(shop)
    conn = sqlite3.connect(settled(db))
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    (chunks_root,) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'chunks'"
    ).fetchone()
    conn.close()
    with db.open("r+b") as f:
        f.seek((chunks_root - 1) * page_size)
        f.write(b"\xff" * page_size)
    store = SQLiteTraceStore(db)  # opens: the runs table is intact
    with pytest.raises(CorruptTraceStore):
        store.check()
    store.close()
    assert repair(db) is not None
    assert json.loads(ok(cli("traces", "--json"))) == []


# ---------------------------------------------------------------- private files


def modes(root: Path) -> dict[str, str]:
    """``relative path -> octal mode`` of everything under ``root`` (and ``root`` itself)."""
    out = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in sorted(root.rglob("*")):
        out[str(path.relative_to(root))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return out


def assert_private(root: Path) -> dict[str, str]:
    found = modes(root)
    wrong = {
        name: mode
        for name, mode in found.items()
        if mode != (oct(0o700) if (root / name).is_dir() else oct(0o600))
    }
    assert not wrong, f"not private: {wrong} (all: {found})"
    return found


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_everything_under_dot_wistro_is_private_after_real_runs(
    shop_template: Path, tmp_path: Path, umask_022: None
) -> None:
    root = tmp_path / "shop"
    shutil.copytree(shop_template, root)
    assert run_wistro("emit", "order.placed", ORDER, cwd=root).returncode == 0
    trace_id = json.loads(run_wistro("traces", "--json", cwd=root).stdout)[0]["trace_id"]
    added = run_wistro("dataset", "add", "smoke", "--trace", trace_id, cwd=root)
    assert added.returncode == 0, added.stderr
    evaluated = run_wistro("eval", "run", "smoke", cwd=root)
    assert evaluated.returncode == 0, evaluated.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith("WISTRO_")}
    dev = subprocess.Popen(
        [*WISTRO, "dev", "--no-reload", "--port", "0"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        umask=0o022,
    )
    try:
        server_json = root / ".wistro" / "server.json"
        deadline = time.monotonic() + TIMEOUT
        while not server_json.exists():
            assert dev.poll() is None and time.monotonic() < deadline, "dev did not start"
            time.sleep(0.05)
        sent = run_wistro("emit", "order.placed", ORDER, cwd=root)
        assert sent.returncode == 0 and "sent to the running wistro dev" in sent.stderr
        found = assert_private(root / ".wistro")  # while it runs: with -wal, -shm, server.json
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=TIMEOUT)
    for name in ("traces.db", "traces.db-wal", "traces.db-shm", "server.json"):
        assert name in found, found
    assert any(name.startswith("evals/") and name.endswith("results.jsonl") for name in found)
    assert_private(root / ".wistro")
    assert modes(root / "datasets") == {  # the dataset and its version history: private too
        ".": oct(0o700),
        "smoke.jsonl": oct(0o600),
        ".history": oct(0o700),
        ".history/smoke.jsonl": oct(0o600),
    }


def test_an_older_world_readable_store_is_tightened(shop: Path, umask_022: None) -> None:
    data = shop / ".wistro"
    os.chmod(data, 0o755)
    os.chmod(db_of(shop), 0o644)
    ok(cli("traces"))
    assert modes(data)["."] == oct(0o700)
    assert modes(data)["traces.db"] == oct(0o600)


def test_the_store_and_the_helpers_ignore_an_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = SQLiteTraceStore(tmp_path / "deep" / "er" / ".wistro" / "traces.db")
        store.list_runs()
        found = modes(tmp_path / "deep")
        store.close()
        write_atomic(tmp_path / "made" / "by" / "atomic.json", "{}")
        make_private_file(tmp_path / "file" / "x.jsonl")
        (tmp_path / "wide").mkdir(mode=0o777)
        make_private_dir(tmp_path / "wide")
    finally:
        os.umask(old)
    assert found == {
        ".": oct(0o700),
        "er": oct(0o700),
        "er/.wistro": oct(0o700),
        "er/.wistro/traces.db": oct(0o600),
        "er/.wistro/traces.db-shm": oct(0o600),
        "er/.wistro/traces.db-wal": oct(0o600),
    }
    assert modes(tmp_path / "made") == {
        ".": oct(0o700),
        "by": oct(0o700),
        "by/atomic.json": oct(0o600),
    }
    assert modes(tmp_path / "file") == {".": oct(0o700), "x.jsonl": oct(0o600)}
    assert modes(tmp_path / "wide") == {".": oct(0o700)}
