"""wistro.testing: one handler with a mock context; the pytest plugin's fixture."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from projects import ORDER_MODEL, step, write_project

from wistro.errors import PayloadError, UndeclaredEmitError
from wistro.testing import load_step, mock_context


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(
        tmp_path,
        {
            "src/models.py": ORDER_MODEL,
            "src/charge.step.py": step(
                "Charge",
                ["order.placed"],
                [],
                header="from .models import OrderPlaced",
                extra="'input': OrderPlaced, 'emits': [{'topic': 'payment.captured', 'schema': "
                "{'type': 'object', 'required': ['order_id']}}]",
                body="""
                ctx.logger.info("charging", order_id=data.order_id)
                await ctx.state.set("orders", data.order_id, {"paid": True})
                await ctx.emit("payment.captured", {"order_id": data.order_id})
                return data.amount_cents
            """,
            ),
            "src/sync.step.py": step(
                "Sync",
                ["t"],
                ["u"],
                is_async=False,
                body="""
            seen = ctx.state.get("g", "k")
            ctx.state.set("g", "k", (seen or 0) + 1)
            ctx.emit("u", {"n": seen})
        """,
            ),
        },
    )


async def test_a_handler_runs_alone_with_captured_emits_state_and_logs(project: Path) -> None:
    charge = load_step(project / "src" / "charge.step.py")
    ctx = mock_context(charge)
    result = await charge.run({"order_id": "A1", "amount_cents": 5}, ctx)
    assert result == 5
    assert ctx.emitted("payment.captured", order_id="A1")
    assert ctx.emits == [("payment.captured", {"order_id": "A1"})]
    assert ctx.logs == [{"level": "info", "message": "charging", "order_id": "A1"}]
    assert await ctx.state.get("orders", "A1") == {"paid": True}


async def test_the_mock_checks_declared_topics_and_schemas(project: Path) -> None:
    charge = load_step(project / "src" / "charge.step.py")
    ctx = mock_context(charge)
    with pytest.raises(UndeclaredEmitError, match="'other'"):
        await ctx.emit("other", {})
    with pytest.raises(PayloadError, match="order_id"):
        await ctx.emit("payment.captured", {})
    free = mock_context()  # no step: any topic
    await free.emit("anything", {"x": 1})
    assert free.payloads("anything") == [{"x": 1}]
    listed = mock_context(emits=["a"])
    with pytest.raises(UndeclaredEmitError):
        await listed.emit("b", {})


async def test_sync_handlers_run_in_a_thread_with_direct_ctx_calls(project: Path) -> None:
    sync = load_step(project / "src" / "sync.step.py")
    ctx = mock_context(sync, state={"g": {"k": 41}})
    await sync.run({}, ctx)
    assert ctx.payloads("u") == [{"n": 41}]
    assert await ctx.state.get("g", "k") == 42


def test_the_pytest_plugin_loads_the_project(project: Path) -> None:
    (project / "tests").mkdir()
    (project / "tests" / "test_flow.py").write_text(
        "async def test_flow(wistro_app):\n"
        "    run = await wistro_app.emit('order.placed', {'order_id': 'Z', 'amount_cents': 1})\n"
        "    assert run.emitted('payment.captured', order_id='Z')\n"
        "    assert run.ran('Charge')\n"
        "    assert wistro_app.engine.store.__class__.__name__ == 'MemoryTraceStore'\n"
    )
    (project / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert not (project / ".wistro").exists()  # memory state and traces: nothing on disk


def test_the_fixture_fails_the_test_when_a_step_file_is_broken(project: Path) -> None:
    (project / "src" / "broken.step.py").write_text("config = {\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_x.py").write_text("async def test_x(wistro_app):\n    pass\n")
    (project / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "src/broken.step.py" in result.stdout and "syntax error" in result.stdout
