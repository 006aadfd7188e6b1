"""The file state adapter: one JSON file per key, atomic replacement, names kept inside."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from wistro.errors import StateError
from wistro.state.file import FileState


@pytest.fixture
def state(tmp_path: Path) -> FileState:
    return FileState(tmp_path / "state")


def all_files(folder: Path) -> list[Path]:
    """Every file but the lock files (``<group>/.locks/*.lock``) that serialise writers."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".lock")


async def test_round_trip(state: FileState, tmp_path: Path) -> None:
    assert await state.get("carts", "c1") is None
    await state.set("carts", "c1", '{"items": [1, 2]}')
    assert await state.get("carts", "c1") == '{"items": [1, 2]}'
    await state.set("carts", "c1", "3")
    assert await state.get("carts", "c1") == "3"
    assert (tmp_path / "state" / "carts" / "c1.json").read_text() == "3"


async def test_delete(state: FileState) -> None:
    await state.set("g", "k", "1")
    await state.delete("g", "k")
    assert await state.get("g", "k") is None
    await state.delete("g", "k")  # deleting a missing key is fine
    await state.delete("nogroup", "k")


async def test_get_group_and_groups(state: FileState) -> None:
    assert await state.groups() == []
    assert await state.get_group("carts") == {}
    await state.set("carts", "b", '"B"')
    await state.set("carts", "a", '"A"')
    await state.set("users", "u1", "{}")
    assert await state.get_group("carts") == {"a": '"A"', "b": '"B"'}
    assert await state.groups() == ["carts", "users"]

    await state.delete("users", "u1")
    assert await state.groups() == ["carts"]  # only groups with at least one key


async def test_clear(state: FileState) -> None:
    await state.set("carts", "a", "1")
    await state.set("carts", "b", "2")
    await state.set("users", "u1", "3")
    await state.clear("carts")
    assert await state.get_group("carts") == {}
    assert await state.get("carts", "a") is None
    assert await state.groups() == ["users"]
    assert await state.get("users", "u1") == "3"
    await state.clear("never-used")


async def test_names_round_trip(state: FileState) -> None:
    names = [".hidden", "CON", "100%", "a b", "ünïcode", "x.json", "%2F", "~tilde", "a.part"]
    for i, name in enumerate(names):
        await state.set(name, name, str(i))
    assert await state.groups() == sorted(names)
    for i, name in enumerate(names):
        assert await state.get(name, name) == str(i)
        assert await state.get_group(name) == {name: str(i)}


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", ".", "a\\b", "", "x\x00y", "/abs"])
async def test_bad_keys_are_refused(state: FileState, tmp_path: Path, bad: str) -> None:
    calls: list[Coroutine[Any, Any, object]] = [
        state.set("g", bad, "1"),
        state.get("g", bad),
        state.delete("g", bad),
        state.set(bad, "k", "1"),
        state.get_group(bad),
        state.clear(bad),
    ]
    for call in calls:
        with pytest.raises(StateError) as err:
            await call
        assert repr(bad) in str(err.value)
    assert all_files(tmp_path) == []


async def test_too_long_key_is_refused(state: FileState) -> None:
    with pytest.raises(StateError, match="too long"):
        await state.set("g", "é" * 200, "1")  # allowed by check_name, too long once encoded


async def test_symlink_out_of_the_folder_is_refused(state: FileState, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "state" / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StateError, match="'escape'"):
        await state.set("escape", "k", "1")
    assert list(outside.iterdir()) == []


async def test_value_survives_reopening(tmp_path: Path) -> None:
    await FileState(tmp_path / "s").set("g", "k", '{"v": 1}')
    reopened = FileState(tmp_path / "s")
    assert await reopened.get("g", "k") == '{"v": 1}'
    assert await reopened.groups() == ["g"]


async def test_concurrent_sets_of_one_key(state: FileState, tmp_path: Path) -> None:
    values = [json.dumps({"writer": i, "pad": "x" * 10_000 * (i % 5)}) for i in range(50)]
    await asyncio.gather(*(state.set("g", "k", v) for v in values))

    path = tmp_path / "state" / "g" / "k.json"
    text = path.read_text()
    assert text in values
    assert json.loads(text)["writer"] in range(50)
    assert all_files(tmp_path) == [path]  # no temp files left behind


async def test_concurrent_sets_and_reads_never_see_a_torn_file(state: FileState) -> None:
    values = [json.dumps({"writer": i, "pad": "y" * 50_000}) for i in range(20)]
    await state.set("g", "k", values[0])

    async def read_many() -> None:
        for _ in range(50):
            text = await state.get("g", "k")
            assert text in values

    await asyncio.gather(*(state.set("g", "k", v) for v in values), read_many(), read_many())


async def test_lock_files_do_not_grow_with_the_keys(state: FileState, tmp_path: Path) -> None:
    """A key's writers serialise on one of a fixed set of lock files per group: 2,000 new keys
    (hundreds written at once) leave at most LOCK_FILES of them, and every value is there."""
    from wistro.state.file import LOCK_FILES

    for start in range(0, 2000, 400):
        await asyncio.gather(
            *(state.set("orders", f"o{i}", str(i)) for i in range(start, start + 400))
        )
    locks = [p for p in (tmp_path / "state").rglob("*.lock")]
    assert 0 < len(locks) <= LOCK_FILES
    assert all(p.parent.name == ".locks" for p in locks)
    values = await state.get_group("orders")
    assert len(values) == 2000 and values["o1999"] == "1999"
    assert await state.groups() == ["orders"]  # the lock folder is not a group or a key


async def test_updates_of_keys_that_share_a_lock_file_all_finish(state: FileState) -> None:
    """Keys whose lock file is the same wait for each other in this process, never on an I/O
    thread: 50 such keys updated 20 times each at once (far more than the I/O threads) finish,
    and no increment is lost."""
    from wistro.state.file import _lock_file

    target = _lock_file(state._key_path("g", "k0"))
    keys = [
        k for k in (f"k{i}" for i in range(20_000)) if _lock_file(state._key_path("g", k)) == target
    ]
    keys = keys[:50]
    assert len(keys) == 50

    def bump(v: str | None) -> str:
        return str(int(v or 0) + 1)

    async with asyncio.timeout(60):
        await asyncio.gather(
            *(state.update("g", k, bump) for _ in range(20) for k in keys),
            *(state.set("g", f"{k}-set", "1") for k in keys),
        )
    assert [await state.get("g", k) for k in keys] == ["20"] * 50


async def test_the_longest_key_allowed_is_written_and_leaves_no_temp_file(
    state: FileState, tmp_path: Path
) -> None:
    key = "%" * 81  # 243 bytes once percent-encoded: the longest file name it writes
    await asyncio.gather(*(state.set("g", key, str(i)) for i in range(50)))
    assert await state.get("g", key) in {str(i) for i in range(50)}
    assert [p.name for p in all_files(tmp_path / "state")] == [f"{'%25' * 81}.json"]


KILLED_WRITER = """
import asyncio, sys
from wistro.state.file import FileState

async def main():
    state = FileState(sys.argv[1])
    def bump(v):
        return str(int(v or 0) + 1)
    rounds = 0
    while True:  # 200 keys updated at once, round after round, until killed
        await asyncio.gather(*(state.update("c", f"k{i}", bump) for i in range(200)))
        rounds += 1
        print(rounds, flush=True)

asyncio.run(main())
"""


async def test_a_writer_killed_with_200_writes_in_flight_leaves_every_value_whole(
    tmp_path: Path,
) -> None:
    """``kill -9`` of a process in the middle of hundreds of concurrent updates: every value is
    whole JSON, every round the process finished is there, its temp files are not values, and
    its locks are gone (the next process updates every key at once)."""
    import signal
    import subprocess
    import sys

    folder = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        done = 0
        while done < 3:  # some rounds finished, the next one in flight
            line = proc.stdout.readline()
            assert line, "the writer ended early"
            done = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        rest = proc.stdout.read().split()  # rounds it finished before the signal landed
        done = int(rest[-1]) if rest else done
    finally:
        if proc.poll() is None:
            proc.kill()
    state = FileState(folder)
    values = await state.get_group("c")
    assert set(values) == {f"k{i}" for i in range(200)}  # temp files are not values
    counts = [int(json.loads(v)) for v in values.values()]  # whole JSON, none torn
    assert min(counts) >= done and max(counts) <= done + 1  # at most the round in flight

    def bump(v: str | None) -> str:
        return str(int(v or 0) + 1)

    async with asyncio.timeout(30):  # no lock of the dead process is held
        await asyncio.gather(*(state.update("c", f"k{i}", bump) for i in range(200)))
    again = await state.get_group("c")
    assert [int(again[f"k{i}"]) for i in range(200)] == [
        int(values[f"k{i}"]) + 1 for i in range(200)
    ]
