"""The redis state adapter against a real redis-server: the key layout, WATCH conflicts, updates
from several processes, prefixes, restarts, and Redis that is not there."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from projects import step
from redis_support import RedisServer, free_port

from wistro.errors import StateError
from wistro.state.redis import RedisState


def bump(raw: str | None) -> str:
    return json.dumps(json.loads(raw or "0") + 1)


@pytest.fixture
async def make_state(redis_url: str, redis_prefix: str) -> AsyncIterator[Callable[..., RedisState]]:
    """``make_state(prefix=the test's, url=the session's, **kw)``, closed after the test."""
    made: list[RedisState] = []

    def make(prefix: str = redis_prefix, url: str = redis_url, **kw: object) -> RedisState:
        adapter = RedisState(url, prefix, **kw)  # type: ignore[arg-type]
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, with an append-only file (it can be restarted)."""
    server = RedisServer(tmp_path / "redis", aof=True).start()
    yield server
    server.stop()


async def test_key_layout(make_state, redis_server: RedisServer, redis_prefix: str) -> None:
    state = make_state()
    await state.set("orders", "a", '{"n": 1}')
    await state.set("orders", "b", "2")
    raw = redis_server.client()
    assert raw.hgetall(f"{redis_prefix}:state:orders") == {b"a": b'{"n": 1}', b"b": b"2"}
    assert raw.smembers(f"{redis_prefix}:state-groups") == {b"orders"}
    await state.clear("orders")
    assert raw.exists(f"{redis_prefix}:state:orders", f"{redis_prefix}:state-groups") == 0
    assert state.where("orders", "a") == (
        f"{redis_server.url} {redis_prefix}:state:orders field 'a'"
    )


async def test_a_write_between_read_and_commit_makes_update_run_again(
    make_state, redis_server: RedisServer, redis_prefix: str
) -> None:
    """WATCH at work: another client writes the hash while ``fn`` runs, so EXEC does nothing and
    the read-modify-write runs again on the new value."""
    state, raw = make_state(), redis_server.client()
    await state.set("c", "n", "1")
    seen: list[str | None] = []

    def meddling_bump(current: str | None) -> str:
        seen.append(current)
        if len(seen) == 1:
            raw.hset(f"{redis_prefix}:state:c", "n", "10")  # lands after WATCH, before EXEC
        return bump(current)

    assert await state.update("c", "n", meddling_bump) == "11"
    assert seen == ["1", "10"] and await state.get("c", "n") == "11"


async def test_an_update_that_always_conflicts_gives_up_naming_the_key(
    make_state, redis_server: RedisServer, redis_prefix: str
) -> None:
    state, raw = make_state(max_conflicts=5), redis_server.client()
    calls = 0

    def always_overtaken(current: str | None) -> str:
        nonlocal calls
        calls += 1
        raw.hset(f"{redis_prefix}:state:c", "other", str(calls))
        return "1"

    with pytest.raises(StateError, match=r"group 'c', key 'n' gave up after 5 attempts"):
        await state.update("c", "n", always_overtaken)
    assert calls == 5 and await state.get("c", "n") is None


async def test_updates_of_one_group_in_one_process_queue_instead_of_conflicting(make_state) -> None:
    """WATCH watches the whole hash; this process's updates of a group take turns, so 300 of
    them on 300 keys run ``fn`` 300 times, not once per conflict."""
    state, calls = make_state(), 0

    def counted_bump(raw: str | None) -> str:
        nonlocal calls
        calls += 1
        return bump(raw)

    await asyncio.gather(*(state.update("g", f"k{i}", counted_bump) for i in range(300)))
    assert calls == 300
    assert await state.get_group("g") == {f"k{i}": "1" for i in range(300)}


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from wistro.state.redis import RedisState

    url, prefix, n, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    def bump(raw):
        return json.dumps(json.loads(raw or "0") + 1)

    async def main():
        state = RedisState(url, prefix)
        await state.get("warm", "up")  # connected before the start signal
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def worker():
            return [int(await state.update("counter", "n", bump)) for _ in range(n // tasks)]

        got = await asyncio.gather(*(worker() for _ in range(tasks)))
        await state.close()
        print(json.dumps([v for part in got for v in part]), flush=True)

    asyncio.run(main())
    """
)


async def test_updates_from_three_processes_and_this_one_lose_nothing(
    make_state, redis_url: str, redis_prefix: str
) -> None:
    """300 increments from 3 OS processes (10 tasks each) while 2 adapters here (2 connection
    pools, 5 tasks each) add 100: the counter ends at exactly 400, and every update saw a value
    of its own (none applied twice, none lost)."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_url, redis_prefix, "100", "10"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = await asyncio.to_thread(child.stdout.readline)
            assert line.strip() == "ready", line + (child.stderr.read() if child.stderr else "")
        here = [make_state(), make_state()]

        async def worker(state: RedisState) -> list[int]:
            return [int(await state.update("counter", "n", bump)) for _ in range(10)]

        for child in children:  # go
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        ours = await asyncio.gather(*(worker(s) for s in here for _ in range(5)))
        outputs = [await asyncio.to_thread(c.communicate, timeout=120) for c in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    theirs = []
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        theirs.append(json.loads(out))
    assert [len(t) for t in theirs] == [100, 100, 100]
    assert await here[0].get("counter", "n") == "400"
    seen = sorted([v for part in ours for v in part] + [v for part in theirs for v in part])
    assert seen == list(range(1, 401))


async def test_two_prefixes_on_one_redis_never_meet(make_state, redis_prefix: str) -> None:
    shop, other = make_state(f"{redis_prefix}:shop:dev"), make_state(f"{redis_prefix}:shop:prod")
    await shop.set("orders", "a", "1")
    await other.set("carts", "a", "2")
    assert await shop.groups() == ["orders"] and await other.groups() == ["carts"]
    assert await other.get("orders", "a") is None and await other.get_group("orders") == {}
    assert await other.update("orders", "a", bump) == "1"  # its own key, from nothing
    await other.clear("orders")
    assert await shop.get("orders", "a") == "1" and await shop.get_group("carts") == {}


async def test_a_restarted_redis_is_reconnected_to(make_state, private_redis: RedisServer) -> None:
    state = make_state(url=private_redis.url)
    await state.set("orders", "a", '{"paid": true}')
    assert await state.update("counts", "n", bump) == "1"
    private_redis.restart()  # killed: the pooled connections are dead; the AOF keeps the data
    assert await state.get("orders", "a") == '{"paid": true}'
    assert await state.update("counts", "n", bump) == "2"
    assert await state.groups() == ["counts", "orders"]

    private_redis.stop(kill=True)
    with pytest.raises(StateError, match="is unreachable"):
        await state.get("orders", "a")
    private_redis.start()  # the same port and folder
    assert await state.update("counts", "n", bump) == "3"


async def test_unreachable_redis_fails_fast_naming_url_group_and_key(make_state) -> None:
    port = free_port()  # nothing listens there
    state = make_state(url=f"redis://user:s3cret@127.0.0.1:{port}/0")
    for op in (
        lambda: state.get("orders", "a"),
        lambda: state.set("orders", "a", "1"),
        lambda: state.update("orders", "a", bump),
    ):
        t0 = time.monotonic()
        with pytest.raises(StateError) as e:
            await op()
        assert time.monotonic() - t0 < 5
        first = str(e.value).splitlines()[0]
        assert first.startswith(
            f"redis state at redis://user@127.0.0.1:{port}/0 is unreachable "
            "(group 'orders', key 'a'): "
        ), first
        assert "Connection refused" in first and "s3cret" not in str(e.value)
    with pytest.raises(StateError, match=r"is unreachable \(groups under "):
        await state.groups()


async def test_redis_that_never_answers_times_out(make_state) -> None:
    """A socket that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        state = make_state(url=f"redis://127.0.0.1:{sock.getsockname()[1]}/0", timeout_s=0.2)
        for op in (lambda: state.get("g", "k"), lambda: state.update("g", "k", bump)):
            t0 = time.monotonic()
            with pytest.raises(StateError, match=r"did not answer within 0\.4s \(group 'g', key"):
                await op()
            assert time.monotonic() - t0 < 2


class ExecCutter:
    """A TCP proxy in front of Redis that, once ``armed``, cuts the connection at the first
    ``EXEC`` it sees: after passing it on (Redis applies the transaction, the client never hears
    so), or instead of passing it on (nothing applied). The client cannot tell which."""

    def __init__(self, port: int, forward: bool) -> None:
        self.port, self.forward = port, forward
        self.armed = self.cut = False
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # at the end of the test
            await self._proxy(reader, writer)

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        cut_here = False

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            nonlocal cut_here
            while chunk := await src.read(65536):
                if up and self.armed and not self.cut and b"EXEC" in chunk:
                    self.cut = cut_here = True
                    if self.forward:
                        dst.write(chunk)
                        await dst.drain()
                        await asyncio.sleep(0.1)  # Redis has applied it
                    break
                if not up and cut_here:
                    break  # the answer to EXEC never reaches the client
                dst.write(chunk)
                await dst.drain()
            writer.close()
            up_writer.close()

        await asyncio.gather(
            pump(reader, up_writer, True), pump(up_reader, writer, False), return_exceptions=True
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize("forward", [True, False], ids=["exec-applied", "exec-lost"])
async def test_a_connection_lost_at_exec_is_reported_not_retried(
    make_state, redis_server: RedisServer, forward: bool
) -> None:
    """Running ``fn`` again after an EXEC that Redis may have applied could apply it twice: the
    update fails saying so, and ``fn`` ran once."""
    cutter = ExecCutter(redis_server.port, forward)
    try:
        state = make_state(url=await cutter.start())
        await state.set("c", "n", "1")  # a MULTI/EXEC of its own
        cutter.armed = True
        calls = 0

        def counted_bump(raw: str | None) -> str:
            nonlocal calls
            calls += 1
            return bump(raw)

        with pytest.raises(StateError, match=r"\(group 'c', key 'n'\): it may or may not have"):
            await state.update("c", "n", counted_bump)
        assert cutter.cut and calls == 1
        assert await state.get("c", "n") == ("2" if forward else "1")  # a new connection
    finally:
        await cutter.stop()


def test_an_invalid_url_is_refused_at_once() -> None:
    with pytest.raises(StateError, match=r"invalid redis URL 'http://user@127\.0\.0\.1:1/0'"):
        RedisState("http://user:pw@127.0.0.1:1/0", "p")


async def test_a_value_that_is_not_utf8_names_the_key(
    make_state, redis_server: RedisServer, redis_prefix: str
) -> None:
    redis_server.client().hset(f"{redis_prefix}:state:g", "k", b"\xff\xfe")
    with pytest.raises(StateError, match=rf"{redis_prefix}:state:g field 'k': .* not UTF-8"):
        await make_state().get("g", "k")


def test_one_adapter_on_two_event_loops(redis_url: str, redis_prefix: str) -> None:
    """A new ``asyncio.run`` (as the engine allows) gets fresh connections, not the dead loop's."""
    state = RedisState(redis_url, redis_prefix)
    assert asyncio.run(state.update("g", "n", bump)) == "1"
    assert asyncio.run(state.update("g", "n", bump)) == "2"
    asyncio.run(state.close())


COUNT_STEP = step(
    "Count",
    ["order.placed"],
    body="""
        n = await ctx.state.update("counts", "orders", lambda n: (n or 0) + 1)
        await ctx.state.update("orders", data["id"], lambda o: {**(o or {}), "n": n})
    """,
)


def redis_project(url: str, prefix: str, state: str = "{adapter: redis}") -> dict[str, str]:
    return {
        "wistro.yml": f"""
            name: shop
            state: {state}
            redis: {{url: "{url}", prefix: "{prefix}"}}
        """,
        "src/count.step.py": COUNT_STEP,
    }


async def test_a_project_configured_for_redis_state(
    make_app, redis_server: RedisServer, redis_url: str, redis_prefix: str
) -> None:
    app = make_app(redis_project(redis_url, redis_prefix), state=None)
    assert isinstance(app.engine.state, RedisState)
    assert app.engine.state.prefix == redis_prefix
    runs = [await app.emit("order.placed", {"id": f"o{i}"}) for i in range(3)]
    assert all(r.status == "ok" for r in runs), [r.errors for r in runs]
    assert await app.state.get("counts", "orders") == 3
    assert await app.state.get("orders", "o2") == {"n": 3}
    assert redis_server.client().hget(f"{redis_prefix}:state:counts", "orders") == b"3"


async def test_state_url_wins_and_redis_down_fails_the_step(
    make_app, redis_url: str, redis_prefix: str
) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    files = redis_project(redis_url, redis_prefix, state=f'{{adapter: redis, url: "{down}"}}')
    app = make_app(files, state=None)
    assert app.engine.state.where("counts") == f"{down} {redis_prefix}:state:counts"
    run = await app.emit("order.placed", {"id": "o1"})
    assert run.status == "error"
    assert run.spans.iloc[0]["error"].startswith(
        f"StateError: step 'Count': redis state at {down} is unreachable "
        "(group 'counts', key 'orders'): Connection refused"
    )
