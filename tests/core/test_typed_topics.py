"""One validation per hop (wistro.core.typed): a topic whose schema is its subscriber's model is
validated once, strictly, at emit; what a user sees stays what JSON Schema decided."""

from __future__ import annotations

import asyncio

import pytest

from tests.projects import step
from wistro.errors import PayloadError

MODEL = """
from datetime import datetime
from pydantic import BaseModel

class Order(BaseModel):
    id: int
    name: str
    amount: float = 0.0

class Stamped(BaseModel):
    at: datetime
"""


def files(**extra: str) -> dict[str, str]:
    return {
        "src/models.py": MODEL,
        "src/start.step.py": step(
            "Start", ["start"], ["order"], "await ctx.emit('order', data['order'])"
        ),
        "src/take.step.py": step(
            "Take",
            ["order"],
            header="from .models import Order",
            extra="'input': Order",
            body="""
            assert isinstance(data, Order), type(data)
            await ctx.state.set('seen', str(data.id), data.model_dump())
            """,
        ),
        **extra,
    }


async def test_a_valid_emit_reaches_the_subscriber_as_its_model(make_app) -> None:
    app = make_app(files())
    run = await app.emit("start", {"order": {"id": 7, "name": "x", "amount": 2}})
    assert run.status == "ok", run.errors
    assert await app.state.get("seen", "7") == {"id": 7, "name": "x", "amount": 2.0}


@pytest.mark.parametrize(
    ("order", "field", "problem"),
    [
        ({"id": "7", "name": "x"}, "id", "must be integer"),  # lax pydantic would take "7"
        ({"id": True, "name": "x"}, "id", "must be integer"),
        ({"id": 7, "name": 5}, "name", "must be string"),
        ({"name": "x"}, "id", "is required"),
    ],
)
async def test_what_json_schema_refuses_is_still_refused_at_emit_naming_step_and_field(
    make_app, order: dict, field: str, problem: str
) -> None:
    app = make_app(files())
    run = await app.emit("start", {"order": order})
    assert run.status == "error"
    assert not run.ran("Take")
    refused = run.events[run.events["error"].notna()].iloc[0]
    assert "step 'Start'" in refused["error"] and f"field '{field}'" in refused["error"]
    assert problem in refused["error"]
    # and from outside, the same refusal
    with pytest.raises(PayloadError) as e:
        await app.emit("order", order)
    assert e.value.field == field and problem in str(e.value)


async def test_what_strict_mode_refuses_but_json_schema_accepts_is_delivered(make_app) -> None:
    extra = {
        "src/stamp.step.py": step(
            "Stamp",
            ["stamped"],
            header="from .models import Stamped\nfrom datetime import datetime",
            extra="'input': Stamped",
            body="""
            assert isinstance(data.at, datetime)
            await ctx.state.set('seen', 'at', data.at.isoformat())
            """,
        ),
    }
    app = make_app(files(**extra))
    run = await app.emit("stamped", {"at": "2026-12-01T10:00:00Z"})  # a string: lax parses it
    assert run.status == "ok", run.errors
    assert await app.state.get("seen", "at") == "2026-12-01T10:00:00+00:00"
    run = await app.emit("start", {"order": {"id": 1.0, "name": "x"}})  # 1.0 is an integer
    assert run.status == "ok", run.errors


async def test_a_retry_gets_the_payload_as_emitted_not_as_the_failed_attempt_left_it(
    make_app,
) -> None:
    extra = {
        "src/take.step.py": step(
            "Take",
            ["order"],
            header="from .models import Order",
            extra="'input': Order, 'retries': 1, 'retry_backoff_s': 0.01",
            body="""
            seen = await ctx.state.get('seen', 'names') or []
            await ctx.state.set('seen', 'names', seen + [data.name])
            data.name = 'changed by attempt ' + str(len(seen) + 1)
            if not seen:
                raise RuntimeError('first attempt fails')
            """,
        ),
    }
    app = make_app(files(**extra))
    run = await app.emit("start", {"order": {"id": 1, "name": "orig"}})
    assert run.status == "ok", run.errors
    assert await app.state.get("seen", "names") == ["orig", "orig"]


def _recording(name: str, group_key: str) -> str:
    """A subscriber of ``order`` that records the name it got, then changes it."""
    return step(
        name,
        ["order"],
        header="from .models import Order",
        extra="'input': Order",
        body=f"""
        seen = await ctx.state.get('names', '{group_key}') or []
        await ctx.state.set('names', '{group_key}', seen + [data.name])
        data.name = 'changed by {name}'
        """,
    )


async def test_two_subscribers_of_one_model_never_share_an_instance(make_app) -> None:
    subscribers = {
        "src/take.step.py": _recording("Take", "take"),
        "src/also.step.py": _recording("Also", "also"),
    }
    app = make_app(files(**subscribers))
    runs = await asyncio.gather(
        *(app.emit("start", {"order": {"id": i, "name": "orig"}}) for i in range(50))
    )
    assert {r.status for r in runs} == {"ok"}
    assert await app.state.get("names", "take") == ["orig"] * 50
    assert await app.state.get("names", "also") == ["orig"] * 50


async def test_hundreds_of_concurrent_typed_runs(make_app) -> None:
    app = make_app(files())
    runs = await asyncio.gather(
        *(app.emit("start", {"order": {"id": i, "name": "n"}}) for i in range(400))
    )
    assert {r.status for r in runs} == {"ok"}
    assert len(await app.state.get_group("seen")) == 400


async def test_a_project_started_from_its_lock_validates_once_per_hop_after_the_import(
    make_app,
) -> None:
    """Started from the lock, a step is imported at its first delivery: until then its topic
    has no model, after it the model validates at emit (``model()`` is worked out again until
    the import, then kept). Hundreds of concurrent runs, the first ones racing the import."""
    import wistro
    from wistro.project.lock import build_lock, write_lock

    app = make_app(files())
    write_lock(app.project.lock_path, build_lock(app.project, app.registry))
    locked = wistro.App.from_lock(app.project.root, state="memory", traces="memory")
    async with locked:
        take = locked.registry.steps["Take"]
        assert take.load is not None and take.input_model is None  # not imported yet
        assert locked.engine._typed.model("order") is None
        runs = await asyncio.gather(
            *(
                locked.emit("start", {"order": {"id": i, "name": "x", "amount": 1}})
                for i in range(300)
            )
        )
        assert {r.status for r in runs} == {"ok"}, runs[0].errors
        assert take.load is None and take.input_model is not None  # imported once
        assert locked.engine._typed.model("order") is take.input_model
        assert await locked.state.get("seen", "299") == {"id": 299, "name": "x", "amount": 1.0}


async def test_a_topic_whose_subscriber_has_no_model_is_decided_once(make_app) -> None:
    """A subscriber whose input is a JSON Schema dict (or a step in another language) has no
    model to wait for: the topic is decided once, not again at every emit."""
    app = make_app(
        {
            "src/start.step.py": step(
                "Start", ["start"], ["plain"], "await ctx.emit('plain', data)"
            ),
            "src/plain.step.py": step(
                "Plain",
                ["plain"],
                extra="'input': {'type': 'object', 'required': ['n']}",
            ),
        }
    )
    runs = await asyncio.gather(*(app.emit("start", {"n": i}) for i in range(200)))
    assert {r.status for r in runs} == {"ok"}
    assert app.engine._typed._models == {"start": None, "plain": None}
