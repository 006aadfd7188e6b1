"""``wistro types``: generated stubs make mypy reject wrong topics and payloads, and typed step
files still load and run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest

import wistro
from wistro.app import App
from wistro.typegen.python import python_stubs, write_types
from wistro.typegen.schemas import pascal_case

pytest.importorskip("mypy")


def write_project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


CHARGE = """
from __future__ import annotations

from pydantic import BaseModel

from wistro_types import ChargeCardContext


class Item(BaseModel):
    sku: str
    qty: int = 1


class OrderPlaced(BaseModel):
    order_id: str
    amount_cents: int
    items: list[Item] = []
    note: str | None = None


class PaymentCaptured(BaseModel):
    order_id: str
    amount_cents: int


config = {
    "name": "Charge card",
    "subscribes": ["order.placed"],
    "input": OrderPlaced,
    "emits": [
        {"topic": "payment.captured", "schema": PaymentCaptured},
        {"topic": "payment.declined", "label": "declined", "conditional": True},
    ],
    "flows": ["checkout"],
}


async def handler(order: OrderPlaced, ctx: ChargeCardContext) -> None:
    await ctx.state.set("orders", order.order_id, {"status": "charged"})
    await ctx.emit(
        "payment.captured", {"order_id": order.order_id, "amount_cents": order.amount_cents}
    )
"""

RECEIPT = """
from __future__ import annotations

from typing import Any

from wistro_types import PaymentCaptured, SendReceiptContext

config = {
    "name": "Send receipt",
    "subscribes": ["payment.captured"],
    "emits": ["receipt.sent"],
    "flows": ["checkout"],
}


def handler(data: PaymentCaptured, ctx: SendReceiptContext) -> None:
    ctx.state.set("receipts", data["order_id"], data["amount_cents"])
    ctx.emit("receipt.sent", {"order_id": data["order_id"]})
"""


def project(root: Path) -> Path:
    return write_project(
        root,
        {"src/checkout/charge.step.py": CHARGE, "src/checkout/receipt.step.py": RECEIPT},
    )


def run_mypy(root: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(root / "src")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--cache-dir",
            str(root / ".mypy_cache"),
            "--no-error-summary",
            "--hide-error-context",
            "--no-pretty",
            *files,
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def generate(root: Path) -> Path:
    app = wistro.load(root, state="memory", traces="memory")
    try:
        (path,) = write_types(app)
        assert app.errors == [], app.errors
    finally:
        await app.aclose()
    return path


@pytest.fixture
async def typed_project(tmp_path: Path) -> Path:
    project(tmp_path)
    path = await generate(tmp_path)
    assert path == tmp_path / "src" / "wistro_types.py"
    return tmp_path


async def test_first_run_when_steps_already_import_the_stubs(tmp_path: Path) -> None:
    """Step files import wistro_types before it exists: `wistro types` still covers them."""
    project(tmp_path)
    app = wistro.load(tmp_path, state="memory", traces="memory")
    try:
        assert {e.file for e in app.errors} == {
            "src/checkout/charge.step.py",
            "src/checkout/receipt.step.py",
        }
        (path,) = write_types(app)
        assert app.errors == []
        assert sorted(app.registry.steps) == ["Charge card", "Send receipt"]
        text = path.read_text()
        assert "class ChargeCardContext(Context)" in text
        assert "class SendReceiptContext(Context)" in text
    finally:
        await app.aclose()


async def test_a_new_step_loads_before_the_stubs_are_regenerated(typed_project: Path) -> None:
    write_project(
        typed_project,
        {
            "src/checkout/audit.step.py": """
            from wistro_types import AuditContext, ReceiptSent

            config = {"name": "Audit", "subscribes": ["receipt.sent"]}

            def handler(data: ReceiptSent, ctx: AuditContext) -> None:
                ctx.state.set("audit", "last", data)
            """
        },
    )
    app = wistro.load(typed_project, state="memory", traces="memory")
    try:
        assert app.errors == []
        run = await app.emit("order.placed", {"order_id": "A1", "amount_cents": 5})
        assert run.status == "ok"
        assert await app.state.get("audit", "last") == {"order_id": "A1"}
    finally:
        await app.aclose()
    done = run_mypy(typed_project, "src/checkout/audit.step.py")
    assert done.returncode == 1
    assert "AuditContext" in done.stdout  # the type checker says the stubs are stale


def test_pascal_case() -> None:
    assert pascal_case("order.placed") == "OrderPlaced"
    assert pascal_case("Charge card") == "ChargeCard"
    assert pascal_case("payment_captured-v2") == "PaymentCapturedV2"
    assert pascal_case("3d.secure") == "T3dSecure"


def test_stub_content(typed_project: Path) -> None:
    text = (typed_project / "src" / "wistro_types.py").read_text()
    assert text.startswith("# Generated by `wistro types`")
    assert "Do not edit" in text
    assert "class OrderPlaced(TypedDict):" in text
    assert "class PaymentCaptured(TypedDict):" in text
    assert "class Item(TypedDict):" in text
    assert "    items: NotRequired[list[Item]]" in text
    assert "    note: NotRequired[str | None]" in text
    assert "    amount_cents: int" in text
    assert "class ChargeCardContext(Context)" in text
    assert (
        'def emit(\n            self, topic: Literal["payment.captured"], data: PaymentCaptured'
        in (text)
    )
    assert "topic: str, data: Any = None) -> Awaitable[None]: ...\n" in text  # the impl only
    assert text.count("@overload") == 2  # two declared topics, no catch-all overload
    assert '"receipt.sent",' in text  # in TopicName


async def test_stubs_are_deterministic_and_written_once(typed_project: Path) -> None:
    app = wistro.load(typed_project, state="memory", traces="memory")
    try:
        path = typed_project / "src" / "wistro_types.py"
        assert python_stubs(app) == path.read_text()
        mtime = path.stat().st_mtime_ns
        other = typed_project / "out"
        (written,) = write_types(app, other)
        assert written == other / "wistro_types.py"
        assert written.read_text() == path.read_text()
        assert path.stat().st_mtime_ns == mtime
    finally:
        await app.aclose()


def test_json_schema_features() -> None:
    """Enums, consts, anyOf, $ref/$defs, additionalProperties, odd keys, unknown -> Any."""

    class FakeTopic:
        def __init__(self, schema: dict[str, typing.Any] | None) -> None:
            self.schema = schema

    schema = {
        "type": "object",
        "$defs": {"Line": {"type": "object", "properties": {"n": {"type": "number"}}}},
        "properties": {
            "kind": {"enum": ["a", "b", None]},
            "fixed": {"const": 3},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "multi": {"type": ["boolean", "null"]},
            "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "blob": {},
            "for": {"type": "string"},
        },
        "required": ["kind", "for"],
    }

    class FakeCatalog:
        topics = {
            "odd.one": FakeTopic(schema),
            "just.text": FakeTopic({"type": "string"}),
            "free": FakeTopic(None),
        }

    class FakeRegistry:
        topics = FakeCatalog()

        def __iter__(self) -> typing.Iterator[typing.Any]:
            return iter(())

    class FakeProject:
        name = "fake"

    class FakeApp:
        registry = FakeRegistry()
        project = FakeProject()

    text = python_stubs(FakeApp())  # type: ignore[arg-type]
    assert "OddOne = TypedDict(" in text  # `for` is a keyword: functional syntax
    assert '"kind": Literal["a", "b", None],' in text
    assert '"fixed": NotRequired[Literal[3]],' in text
    assert '"either": NotRequired[int | str],' in text
    assert '"multi": NotRequired[bool | None],' in text
    assert '"lines": NotRequired[list[Line]],' in text
    assert '"counts": NotRequired[dict[str, int]],' in text
    assert '"blob": NotRequired[Any],' in text
    assert '"for": str,' in text
    assert "class Line(TypedDict):\n    n: NotRequired[float]" in text
    assert "JustText: TypeAlias = str" in text
    namespace: dict[str, typing.Any] = {}
    exec(compile(text, "wistro_types.py", "exec"), namespace)
    assert namespace["OddOne"].__required_keys__ == frozenset({"kind", "for"})
    assert typing.get_args(namespace["TopicName"]) == ("free", "just.text", "odd.one")


def test_mypy_accepts_a_correct_step(typed_project: Path) -> None:
    done = run_mypy(typed_project, "src/checkout/charge.step.py", "src/checkout/receipt.step.py")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_rejects_a_wrong_topic(typed_project: Path) -> None:
    bad = typed_project / "src" / "checkout" / "bad_topic.py"
    bad.write_text(
        textwrap.dedent(
            """
            from wistro_types import ChargeCardContext, SendReceiptContext


            async def charge(ctx: ChargeCardContext) -> None:
                await ctx.emit("payment.capturd", {"order_id": "A1", "amount_cents": 1})


            def receipt(ctx: SendReceiptContext) -> None:
                ctx.emit("receipt.snt", {"order_id": "A1"})
            """
        ).lstrip()
    )
    done = run_mypy(typed_project, "src/checkout/bad_topic.py")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 2, out
    # several declared topics: no overload accepts it; the notes list the valid topics
    assert errors[0].startswith("src/checkout/bad_topic.py:5: error:")
    assert 'No overload variant of "emit" of "ChargeCardContext"' in errors[0]
    assert "Literal['payment.captured']" in out
    # one declared topic: the message names the wrong topic and the expected one
    assert errors[1].startswith("src/checkout/bad_topic.py:9: error:")
    assert "receipt.snt" in errors[1] and "receipt.sent" in errors[1]


def test_mypy_rejects_a_wrong_payload(typed_project: Path) -> None:
    bad = typed_project / "src" / "checkout" / "bad_payload.py"
    bad.write_text(
        textwrap.dedent(
            """
            from wistro_types import ChargeCardContext, OrderPlaced


            async def wrong_type(ctx: ChargeCardContext) -> None:
                await ctx.emit("payment.captured", {"order_id": "A1", "amount_cents": "12"})


            async def missing_field(ctx: ChargeCardContext) -> None:
                await ctx.emit("payment.captured", {"order_id": "A1"})


            async def fine(ctx: ChargeCardContext) -> None:
                await ctx.emit("payment.declined", {"anything": True})
                await ctx.emit("payment.declined")


            order: OrderPlaced = {"order_id": "A1", "amount_cents": 3, "items": [{"qty": 2}]}
            """
        ).lstrip()
    )
    done = run_mypy(typed_project, "src/checkout/bad_payload.py")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    error_lines = sorted(int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line)
    assert error_lines == [5, 9, 17], out  # not 13/14: payment.declined has no schema
    assert '"sku"' in out  # nested model from $defs: the missing required key is named


async def test_typed_steps_still_run(typed_project: Path) -> None:
    src = typed_project / "src"
    spec = importlib.util.spec_from_file_location("wistro_types_probe", src / "wistro_types.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert issubclass(module.ChargeCardContext, wistro.Context)
    assert module.OrderPlaced.__required_keys__ == frozenset({"order_id", "amount_cents"})
    assert "payment.captured" in typing.get_args(module.TopicName)

    app: App = wistro.load(typed_project, state="memory", traces="memory")
    try:
        assert app.errors == []
        run = await app.emit("order.placed", {"order_id": "A1", "amount_cents": 1200})
        assert run.status == "ok", run.status
        assert await app.state.get("orders", "A1") == {"status": "charged"}
        assert await app.state.get("receipts", "A1") == 1200
    finally:
        await app.aclose()
