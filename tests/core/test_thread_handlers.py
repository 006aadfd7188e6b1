"""Plain ``def`` handlers, on handler threads, as a user sees them: emits that do not wait for
the loop yet are never late for the run's end, invalid emits that raise in the handler, and
calls into the loop (``wistro.core.loop_call``) from many threads at once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from projects import step

from wistro.core.loop_call import LoopCallTimeout, call_on_loop
from wistro.errors import PayloadError


def _thread_chain() -> dict[str, str]:
    schema = (
        "'input': {'type': 'object', 'properties': {'n': {'type': 'integer'}}, 'required': ['n']}"
    )
    return {
        "src/a.step.py": step(
            "A", ["a"], ["b"], is_async=False, extra=schema, body="ctx.emit('b', {'n': data['n']})"
        ),
        "src/b.step.py": step(
            "B",
            ["b"],
            ["c"],
            is_async=False,
            extra=schema,
            body="""
                ctx.emit('c', {'n': data['n']})
                ctx.emit('c', {'n': data['n'] + 1})
            """,
        ),
        "src/c.step.py": step("C", ["c"], is_async=False, extra=schema, body="return None"),
    }


async def test_hundreds_of_runs_of_emitting_thread_handlers_hold_every_span(make_app) -> None:
    app = make_app(_thread_chain())
    runs = await asyncio.gather(*(app.emit("a", {"n": n}) for n in range(300)))
    for n, run in enumerate(runs):
        assert run.status == "ok", run.errors
        # Each emit reached the loop before the handler's end did: had the run ended first,
        # these spans would be missing from it.
        assert sorted(run.spans["step"]) == ["A", "B", "C", "C"]
        assert sorted(run.payloads("c"), key=lambda p: p["n"]) == [{"n": n}, {"n": n + 1}]
        spans = run.spans.set_index("step")
        events = run.events.set_index("topic")
        assert events.loc["b", "parent_span_id"] == spans.loc["A", "id"]
    assert app.engine.in_flight == 0


async def test_an_invalid_emit_from_a_thread_raises_in_the_handler_and_is_traced(
    make_app,
) -> None:
    files = _thread_chain()
    files["src/a.step.py"] = step(
        "A",
        ["a"],
        ["b"],
        is_async=False,
        header="from wistro.errors import PayloadError",
        body="""
            try:
                ctx.emit('b', {'n': 'not a number'})
            except PayloadError as e:
                ctx.logger.warning('refused', error=str(e))
            ctx.emit('b', {'n': 7})
        """,
    )
    app = make_app(files)
    runs = await asyncio.gather(*(app.emit("a", {}) for _ in range(50)))
    for run in runs:
        assert run.status == "error"  # a refused emit is an error of the run
        [refused] = [e for e in run.event_records if e.error]
        assert refused.topic == "b" and "step 'A'" in refused.error and "n" in refused.error
        assert [m for m in run.logs["message"]] == ["refused"]
        assert sorted(run.spans["step"]) == ["A", "B", "C", "C"]  # the valid emit went on


async def test_an_undeclared_emit_from_a_thread_names_the_step_and_topic(make_app) -> None:
    files = _thread_chain()
    files["src/c.step.py"] = step("C", ["c"], is_async=False, body="ctx.emit('nowhere', {})")
    app = make_app(files)
    run = await app.emit("a", {"n": 1})
    spans = run.spans
    assert set(spans.loc[spans["step"] == "C", "status"]) == {"error"}
    error = spans.loc[spans["step"] == "C", "error"].iloc[0]
    assert "nowhere" in error and "C" in error and "declare" in error


def test_calls_from_many_threads_at_once_each_get_their_own_value() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def double(n: int) -> int:
            await asyncio.sleep(0)
            return 2 * n

        def worker(base: int) -> list[int]:
            return [call_on_loop(loop, double(base + i), 10) for i in range(50)]

        results = await asyncio.gather(*(asyncio.to_thread(worker, t * 1000) for t in range(16)))
        for t, values in enumerate(results):
            assert values == [2 * (t * 1000 + i) for i in range(50)]

    asyncio.run(main())


def test_an_error_on_the_loop_is_raised_in_the_thread_and_a_slow_call_is_cancelled() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()

        async def fails() -> None:
            raise PayloadError("bad", topic="t")

        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        def thread() -> None:
            with pytest.raises(PayloadError, match="bad"):
                call_on_loop(loop, fails(), 5)
            started = time.monotonic()
            with pytest.raises(LoopCallTimeout):
                call_on_loop(loop, slow(), 0.1)
            assert time.monotonic() - started < 2
            assert cancelled.wait(5)  # the call it gave up on stopped too

        await asyncio.to_thread(thread)

    asyncio.run(main())


def test_a_call_into_a_closed_loop_fails_at_once() -> None:
    loop = asyncio.new_event_loop()
    loop.close()

    async def never() -> None:  # pragma: no cover - must not run
        raise AssertionError

    coro = never()
    with pytest.raises(RuntimeError):
        call_on_loop(loop, coro, 5)
    assert coro.cr_frame is None  # closed, not left to warn "never awaited"
