"""``%wistro`` through a real IPython shell, on the example shop."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.completer import provisionalcompleter
from jupyter_support import cell

from wistro.core.run import Run
from wistro_jupyter import session as get_session
from wistro_jupyter.widgets import TraceView

ORDER = '{"order_id": "A1", "amount_cents": 1200}'
SHOP_STEPS = {
    "Build report",
    "Nightly report",
    "Charge card",
    "Courier",
    "Fraud review",
    "Pack order",
    "Place order",
    "Reserve stock",
    "Send receipt",
}
RUN_STEPS = ["Charge card", "Pack order", "Reserve stock", "Send receipt"]


def test_load_ext_finds_the_project_from_the_cwd(shell: Any, shop: Path, capsys: Any) -> None:
    cell(shell, "%load_ext wistro_jupyter")
    try:
        out = capsys.readouterr().out
        assert "loaded <wistro.App 'shop': 9 steps" in out
        app = shell.user_ns["wistro_app"]
        assert app.project.root == shop.resolve()
        assert "wistro" in shell.magics_manager.magics["line"]
        assert "wistro" in shell.magics_manager.magics["cell"]
    finally:
        shell.extension_manager.unload_extension("wistro_jupyter")
    assert "wistro_app" not in shell.user_ns
    assert "wistro" not in shell.magics_manager.magics["line"]


def test_load_ext_outside_a_project_says_how_to_load_one(
    shell: Any, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    cell(shell, "%load_ext wistro_jupyter")
    try:
        assert "%wistro load PATH" in capsys.readouterr().out
        cell(shell, "%wistro steps")
        assert "no Wistro project is loaded" in capsys.readouterr().err
    finally:
        shell.extension_manager.unload_extension("wistro_jupyter")


def test_help(ip: Any, capsys: Any) -> None:
    assert cell(ip, "%wistro") is None
    out = capsys.readouterr().out
    assert "%wistro emit TOPIC JSON" in out and "%%wistro step" in out


def test_emit_wait_gives_the_finished_run(ip: Any) -> None:
    run = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    assert isinstance(run, Run)
    assert run.status == "ok" and run.done
    assert sorted(run.spans["step"]) == RUN_STEPS
    assert run.record.trigger == "notebook"
    html = ip.display_formatter.format(run)[0]["text/html"]
    assert "wistro-spans" in html and ">ok<" in html and "Charge card" in html


def test_await_app_emit_in_a_cell(ip: Any) -> None:
    run = cell(ip, f"await wistro_app.emit('order.placed', {ORDER})")
    assert run.status == "ok"
    # the magic and `await` drive one engine on one loop
    again = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    assert again.status == "ok"
    assert ip.user_ns["wistro_app"].engine.loop is not None


def test_json_passes_through_untouched(ip: Any) -> None:
    ip.user_ns["x"] = "EXPANDED"
    run = cell(ip, '%wistro emit order.placed {"order_id": "$x {x} {}", "amount_cents": 7} --wait')
    assert run.payloads("order.placed") == [{"order_id": "$x {x} {}", "amount_cents": 7}]
    # a payload holding the text "--wait" is still the payload
    run = cell(ip, '%wistro emit order.placed {"order_id": "--wait", "amount_cents": 7} --wait')
    assert run.payloads("order.placed")[0]["order_id"] == "--wait"


def test_emit_data_from_a_variable(ip: Any) -> None:
    ip.user_ns["order"] = {"order_id": "D1", "amount_cents": 99}
    run = cell(ip, "%wistro emit order.placed --data order --wait")
    assert run.payloads("order.placed") == [{"order_id": "D1", "amount_cents": 99}]
    cell(
        ip,
        "from pydantic import BaseModel\n"
        "class Order(BaseModel):\n    order_id: str\n    amount_cents: int\n"
        "order_model = Order(order_id='M1', amount_cents=5)",
    )
    run = cell(ip, "%wistro emit order.placed --wait --data order_model")
    assert run.payloads("order.placed") == [{"order_id": "M1", "amount_cents": 5}]


def test_cell_emit_with_a_multiline_body(ip: Any) -> None:
    run = cell(
        ip, '%%wistro emit order.placed --wait\n{\n  "order_id": "C$1",\n  "amount_cents": 10\n}\n'
    )
    assert run.status == "ok"
    assert run.payloads("order.placed") == [{"order_id": "C$1", "amount_cents": 10}]
    view = cell(ip, '%%wistro emit order.placed\n{"order_id": "C2", "amount_cents": 10}')
    assert isinstance(view, TraceView) and view.trace["run"]["status"] == "ok"


def test_emit_without_wait_gives_a_trace_view(ip: Any) -> None:
    view = cell(ip, f"%wistro emit order.placed {ORDER}")
    assert isinstance(view, TraceView)
    assert view.run is not None and view.run.status == "ok"
    trace = view.trace
    assert trace["run"]["status"] == "ok"
    assert sorted(s["step"] for s in trace["spans"]) == RUN_STEPS
    assert all(s["status"] == "ok" and s["duration_ms"] is not None for s in trace["spans"])
    assert trace["events"][0]["data"] == {"order_id": "A1", "amount_cents": 1200}
    assert any(
        r["message"] == "charging" and r["fields"]["order_id"] == "A1" for r in trace["logs"]
    )
    assert {"op": "set", "group": "orders", "key": "A1"}.items() <= trace["state_ops"][0].items()
    assert trace["state_ops"][0]["value"] == {"status": "charged"}
    assert not view.attached  # the run is over: no observer left


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%wistro emit order.placd {}", "topic 'order.placd'"),
        ('%wistro emit order.placed {"order_id": "A1"} --wait', "amount_cents"),
        ('%wistro emit order.placed {"order_id": "A1", --wait', "not valid JSON"),
        ("%wistro emit order.placed --data nothing_here", "no such variable"),
        ("%wistro frobnicate", "unknown subcommand 'frobnicate'"),
        ("%wistro activate Nobody", "no such step"),
        ("%wistro graph nowhere", "unknown flow 'nowhere'"),
        ("%wistro trace ffffffff", "ffffffff"),
    ],
)
def test_errors_are_one_red_line(ip: Any, capsys: Any, line: str, expected: str) -> None:
    assert cell(ip, line) is None
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("\x1b[31merror: ") and expected in err


FAILING_STEP = """
config = {"name": "Audit", "subscribes": ["payment.captured"], "flows": ["checkout"]}

def explode(order_id):
    raise ValueError(f"cannot audit {order_id}")

async def handler(payment, ctx):
    explode(payment["order_id"])
"""


def test_a_failing_handler_is_one_line_and_a_traceback(ip: Any, shop: Path) -> None:
    (shop / "src" / "checkout" / "audit.step.py").write_text(FAILING_STEP, encoding="utf-8")
    run = cell(ip, f"%wistro emit order.placed {ORDER} --wait")  # reloaded before this cell
    assert run.status == "error"
    assert run.errors == ["Audit: ValueError: cannot audit A1"]
    data = ip.display_formatter.format(run)[0]
    assert "x Audit: ValueError: cannot audit A1" in data["text/plain"]
    html = data["text/html"]
    assert "<details><summary>" in html and "Audit: ValueError: cannot audit A1" in html
    assert "in explode" in html and "audit.step.py" in html  # the traceback, folded
    view = cell(ip, f"%wistro emit order.placed {ORDER}")
    [span] = [s for s in view.trace["spans"] if s["step"] == "Audit"]
    assert span["status"] == "error" and span["error"] == "ValueError: cannot audit A1"
    assert "raise ValueError" in span["traceback"]
    assert "<details>" in view._repr_html_()


def test_listings_are_dataframes(ip: Any) -> None:
    steps = cell(ip, "%wistro steps")
    assert isinstance(steps, pd.DataFrame) and set(steps["name"]) == SHOP_STEPS
    flows = cell(ip, "%wistro flows")
    assert list(flows["flow"]) == ["checkout", "fulfillment", "reports"]
    cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    cell(ip, '%wistro emit order.placed {"order_id": "B2", "amount_cents": 5}')
    traces = cell(ip, "%wistro traces")
    assert len(traces) == 2 and set(traces["status"]) == {"ok"}
    logs = cell(ip, "%wistro logs")
    assert {"charging", "packed", "receipt sent"} <= set(logs["message"])
    assert logs[logs["message"] == "charging"]["fields"].iloc[0]["order_id"] == "A1"
    state = cell(ip, "%wistro state")
    assert set(zip(state["group"], state["key"], strict=True)) == {
        ("orders", "A1"),
        ("orders", "B2"),
        ("stock", "A1"),
        ("stock", "B2"),
    }
    orders = cell(ip, "%wistro state orders")
    assert set(orders["group"]) == {"orders"}
    assert orders.set_index("key").loc["A1", "value"] == {"status": "charged", "receipt": "sent"}
    check = cell(ip, "%wistro check")
    assert list(check.columns[:3]) == ["severity", "code", "message"]
    assert not (check["severity"] == "error").any()
    trace_id = traces["trace_id"].iloc[1]
    view = cell(ip, f"%wistro trace {trace_id[:10]}")
    assert view.trace["run"]["trace_id"] == trace_id
    last = cell(ip, "%wistro trace")
    assert last.trace["run"]["trace_id"] == traces["trace_id"].iloc[0]


def test_activate_and_deactivate(ip: Any, shop: Path, capsys: Any) -> None:
    cell(ip, "%wistro deactivate Send receipt")
    assert "deactivated 'Send receipt'" in capsys.readouterr().out
    run = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    assert not run.ran("Send receipt") and run.ran("Charge card")
    steps = cell(ip, "%wistro steps").set_index("name")
    assert not steps.loc["Send receipt", "active"]
    assert "Send receipt" in (shop / "wistro.yml").read_text()
    assert "reloaded" not in capsys.readouterr().out  # our own write is no reason to reload
    cell(ip, '%wistro activate "Send receipt"')
    run = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    assert run.ran("Send receipt")


def completions(ip: Any, line: str) -> list[str]:
    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(line, len(line))]


def test_tab_completion(ip: Any) -> None:
    assert "emit" in completions(ip, "%wistro em")
    assert {"load", "emit", "steps", "graph", "trace", "activate"} <= set(
        completions(ip, "%wistro ")
    )
    assert completions(ip, "%wistro emit ") == [
        "order.placed",
        "order.shipped",
        "payment.captured",
        "payment.declined",
        "report.requested",
        "stock.reserved",
    ]
    assert completions(ip, "%wistro emit pay") == ["payment.captured", "payment.declined"]
    assert completions(ip, "%wistro activate Ch") == ["Charge card"]
    assert completions(ip, "%wistro deactivate Send r") == ["receipt"]  # names hold spaces
    assert "Send receipt" in completions(ip, "%wistro deactivate ")
    assert completions(ip, "%wistro graph ") == ["checkout", "fulfillment", "reports"]
    ip.user_ns["payload_a"] = {"order_id": "X"}
    assert "payload_a" in completions(ip, "%wistro emit order.placed --data ")
    assert "--wait" in completions(ip, "%wistro emit order.placed {} --")


NEW_STEP = """
config = {"name": "Audit", "subscribes": ["payment.captured"], "flows": ["checkout"]}

async def handler(payment, ctx):
    ctx.logger.info("audited", order_id=payment["order_id"])
"""


def test_an_edited_step_file_is_picked_up_before_the_next_cell(
    ip: Any, shop: Path, capsys: Any
) -> None:
    first = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    (shop / "src" / "checkout" / "audit.step.py").write_text(NEW_STEP, encoding="utf-8")
    cell(ip, "1 + 1")
    assert "wistro: reloaded (audit.step.py): 10 steps" in capsys.readouterr().out
    steps = cell(ip, "%wistro steps")
    assert "Audit" in set(steps["name"])
    run = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    assert run.ran("Audit")
    # run history is kept across the reload
    assert first.trace_id in set(cell(ip, "%wistro traces")["trace_id"])
    # an edit of an existing step is picked up too
    receipt = shop / "src" / "checkout" / "send_receipt.step.py"
    receipt.write_text(
        receipt.read_text().replace('"receipt sent"', '"receipt mailed"'), encoding="utf-8"
    )
    run = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    assert "receipt mailed" in set(run.logs["message"])


CELL_STEP = """
from pydantic import BaseModel

class Captured(BaseModel):
    order_id: str
    amount_cents: int

config = {
    "name": "Thank you note",
    "subscribes": ["payment.captured"],
    "input": Captured,
    "flows": ["checkout"],
}

async def handler(payment: Captured, ctx):
    ctx.logger.info("thanks", order_id=payment.order_id)
"""


def test_a_step_defined_in_a_cell_receives_events(ip: Any, shop: Path, capsys: Any) -> None:
    assert cell(ip, "%%wistro step\n" + CELL_STEP) is None
    assert "step 'Thank you note' registered (receives payment.captured)" in capsys.readouterr().out
    run = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    assert run.ran("Thank you note") and run.status == "ok"
    steps = cell(ip, "%wistro steps").set_index("name")
    assert steps.loc["Thank you note", "file"] == "<cell>"
    # it survives a reload of the files
    cell(ip, "%wistro reload")
    assert cell(ip, f"%wistro emit order.placed {ORDER} --wait").ran("Thank you note")
    capsys.readouterr()
    # --save writes the file and loads it from there
    cell(ip, "%%wistro step --save src/checkout/thank_you.step.py\n" + CELL_STEP)
    saved = shop / "src" / "checkout" / "thank_you.step.py"
    assert saved.read_text() == CELL_STEP.lstrip("\n") or saved.read_text() == CELL_STEP
    steps = cell(ip, "%wistro steps").set_index("name")
    assert steps.loc["Thank you note", "file"] == "src/checkout/thank_you.step.py"
    assert cell(ip, f"%wistro emit order.placed {ORDER} --wait").ran("Thank you note")
    assert "reloaded" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("x = 1\n", "no `config` defined"),
        ("config = {'name': 'Bad', 'subscribes': ['a'], 'retries': -1}\n", "retries"),
        ("config = {'name': 'Bad', 'subscribes': ['a']}\n", "no `handler` function"),
        ("raise RuntimeError('nope')\n", "RuntimeError: nope"),
    ],
)
def test_a_broken_step_cell_is_one_red_line(ip: Any, capsys: Any, body: str, expected: str) -> None:
    assert cell(ip, "%%wistro step\n" + body) is None
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_save_refuses_a_path_outside_the_step_folder(ip: Any, capsys: Any) -> None:
    cell(ip, "%%wistro step --save notes.py\n" + CELL_STEP)
    assert "must be under the step folder" in capsys.readouterr().err


def test_wait_becomes_an_await_only_at_the_top_level(ip: Any) -> None:
    code = ip.transform_cell(f"r = %wistro emit order.placed {ORDER} --wait")
    assert code.startswith("r = (await get_ipython().run_line_magic('wistro'")
    assert "await" not in ip.transform_cell(f"%wistro emit order.placed {ORDER}")
    assert "await" not in ip.transform_cell("%wistro steps")
    inside = ip.transform_cell(f"def f():\n    %wistro emit order.placed {ORDER} --wait\n")
    assert "await" not in inside
    body = ip.transform_cell("%%wistro emit order.placed --wait\n{}\n")
    assert body.startswith("(await get_ipython().run_cell_magic(")


async def test_in_a_running_loop_emit_returns_at_once(ip: Any) -> None:
    """What happens in a kernel: the cell runs inside the loop, the run goes on after it."""
    view = ip.run_line_magic("wistro", f"emit order.placed {ORDER}")
    assert isinstance(view, TraceView)
    assert view.run is None and view.trace["run"]["status"] == "pending"
    run = await view.wait()
    assert run is not None and run.status == "ok"
    assert len(view.trace["spans"]) == 4 and view.trace["run"]["status"] == "ok"
    task = ip.run_line_magic("wistro", f"emit order.placed {ORDER} --wait")
    assert isinstance(task, asyncio.Task)
    assert (await task).status == "ok"
    s = get_session(ip)
    assert s is not None and s.last_run is not None


async def test_the_kernel_stays_usable_while_a_slow_step_runs(ip: Any, shop: Path) -> None:
    slow = textwrap.dedent(
        """
        import asyncio
        config = {"name": "Slow", "subscribes": ["stock.reserved"], "flows": ["fulfillment"]}
        async def handler(item, ctx):
            await asyncio.sleep(0.3)
        """
    )
    (shop / "src" / "fulfillment" / "slow.step.py").write_text(slow, encoding="utf-8")
    ip.run_line_magic("wistro", "reload")
    view = ip.run_line_magic("wistro", f"emit order.placed {ORDER}")
    await asyncio.sleep(0.1)
    # meanwhile other magics work and the view shows what is running
    assert isinstance(ip.run_line_magic("wistro", "steps"), pd.DataFrame)
    assert view.run is not None and not view.run.done
    running = [s for s in view.trace["spans"] if s["status"] == "running"]
    assert [s["step"] for s in running] == ["Slow"]
    run = await view.wait()
    assert run is not None and run.ran("Slow")
    assert [s["status"] for s in view.trace["spans"] if s["step"] == "Slow"] == ["ok"]
