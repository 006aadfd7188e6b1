"""What ``ctx.state`` and ``ctx.logger`` keep of a value: what the stdlib's ``json`` reads back
of it, though orjson writes most of them (``wistro.core.context.to_json``)."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from projects import step

from wistro.core.context import to_json
from wistro.errors import StateError

VALUES = {
    "plain": {"status": "charged", "n": 3, "ok": True, "items": [1, 2.5, "x"]},
    "none": {"note": None},
    "nan": {"score": float("nan"), "top": float("inf"), "low": -math.inf},
    "int keys": {1: "one", 2: "two"},
    "big int": {"n": 2**70},
    "unicode": {"name": "Zoë 🛒"},
    "lone surrogate": {"s": "\ud800"},
    "nested": [{"a": [{"b": None}]}, ()],
}


def _same(a: object, b: object) -> bool:
    """Equal, counting NaN equal to NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("name", list(VALUES))
def test_the_text_reads_back_as_the_stdlib_writes_it(name: str) -> None:
    value = VALUES[name]
    assert _same(json.loads(to_json(value)), json.loads(json.dumps(value)))


def test_what_the_stdlib_refuses_is_refused() -> None:
    import datetime

    for value in (datetime.datetime.now(), {1, 2}, object(), {(1, 2): "tuple key"}):
        with pytest.raises((TypeError, ValueError)):
            to_json(value)


async def test_hundreds_of_state_writes_and_log_lines_keep_every_value(make_app) -> None:
    files = {
        "src/keep.step.py": step(
            "Keep",
            ["keep"],
            body="""
                value = data['value']
                if data['nan']:
                    value = {**value, 'score': float('nan')}
                await ctx.state.set('kept', data['key'], value)
                ctx.logger.info('kept', value=value, key=data['key'])
            """,
        )
    }
    app = make_app(files)
    cases = [(f"{name}-{i}", VALUES[name]) for i in range(40) for name in ("plain", "unicode")]
    runs = await asyncio.gather(
        *(
            app.emit("keep", {"key": k, "value": v, "nan": i % 2 == 0})
            for i, (k, v) in enumerate(cases)
        )
    )
    for i, (run, (key, value)) in enumerate(zip(runs, cases, strict=True)):
        assert run.status == "ok", run.errors
        expected = {**value, "score": float("nan")} if i % 2 == 0 else value
        stored = await app.state.get("kept", key)
        assert _same(stored, expected)
        [fields] = run.logs["fields"]
        assert _same(fields["value"], expected)


async def test_a_value_that_is_not_json_is_a_state_error_naming_the_key(make_app) -> None:
    files = {
        "src/bad.step.py": step(
            "Bad",
            ["bad"],
            header="import datetime",
            body="await ctx.state.set('g', 'when', {'at': datetime.datetime.now()})",
        )
    }
    app = make_app(files)
    run = await app.emit("bad", {})
    [error] = run.spans["error"]
    assert StateError.__name__ in error or "not JSON" in error
    assert "'when'" in error and "'g'" in error
