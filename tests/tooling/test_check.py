"""``wistro check``: static validation of a project (errors and warnings, strict exit codes)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import wistro
from wistro.app import App
from wistro.tooling.check import Diagnostic, check, check_exit_code


def write_project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def load(root: Path) -> App:
    return wistro.load(root, state="memory", traces="memory")


def codes(diags: list[Diagnostic]) -> list[str]:
    return [d.code for d in diags]


def by_code(diags: list[Diagnostic], code: str) -> list[Diagnostic]:
    return [d for d in diags if d.code == code]


PLACE = """
config = {"type": "api", "name": "Place order", "path": "/orders", "method": "POST",
          "emits": ["order.placed"], "flows": ["shop"]}

async def handler(req, ctx):
    await ctx.emit("order.placed", {"order_id": "A1"})
    return {"status": 202, "body": {}}
"""

CHARGE = """
config = {
    "name": "Charge card",
    "subscribes": ["order.placed"],
    "input": {"type": "object", "properties": {"order_id": {"type": "string"}},
              "required": ["order_id"]},
    "emits": ["payment.captured"],
    "flows": ["shop"],
}

async def handler(order, ctx):
    await ctx.emit("payment.captured", {"order_id": order["order_id"]})
"""

RECEIPT = """
config = {"name": "Send receipt", "subscribes": ["payment.captured"], "flows": ["shop"]}

def handler(data, ctx):
    ctx.logger.info("receipt")
"""


def clean_project(root: Path) -> Path:
    return write_project(
        root,
        {
            "src/place.step.py": PLACE,
            "src/charge.step.py": CHARGE,
            "src/receipt.step.py": RECEIPT,
        },
    )


async def test_clean_project_has_no_diagnostics(tmp_path: Path) -> None:
    app = load(clean_project(tmp_path))
    try:
        diags = check(app)
        assert diags == []
        assert check_exit_code(diags, strict=False) == 0
        assert check_exit_code(diags, strict=True) == 0
    finally:
        await app.aclose()


async def test_load_error_is_reported_and_other_steps_still_checked(tmp_path: Path) -> None:
    clean_project(tmp_path)
    write_project(tmp_path, {"src/broken.step.py": "x = 1\n"})
    app = load(tmp_path)
    try:
        diags = check(app)
        (err,) = by_code(diags, "load")
        assert err.severity == "error"
        assert err.file == "src/broken.step.py"
        assert "config" in err.message
        assert err.format().startswith("src/broken.step.py: error[load]: ")
        assert codes(diags) == ["load"]  # the rest of the project is still clean
        assert check_exit_code(diags, strict=False) == 1
    finally:
        await app.aclose()


async def test_schema_conflict(tmp_path: Path) -> None:
    clean_project(tmp_path)
    write_project(
        tmp_path,
        {
            "src/audit.step.py": """
            config = {
                "name": "Audit",
                "subscribes": ["order.placed"],
                "input": {"type": "object", "properties": {"order_id": {"type": "integer"}}},
            }

            def handler(data, ctx):
                pass
            """
        },
    )
    app = load(tmp_path)
    try:
        diags = check(app)
        (err,) = by_code(diags, "schema-conflict")
        assert err.severity == "error"
        assert err.topic == "order.placed"
        assert "order.placed" in err.message
        assert err.file in {"src/audit.step.py", "src/charge.step.py"}
        assert diags[0] is err  # errors come first
    finally:
        await app.aclose()


async def test_static_undeclared_emit_with_line(tmp_path: Path) -> None:
    clean_project(tmp_path)
    write_project(
        tmp_path,
        {
            "src/charge.step.py": """
            config = {
                "name": "Charge card",
                "subscribes": ["order.placed"],
                "emits": ["payment.captured"],
                "flows": ["shop"],
            }

            async def handler(order, ctx):
                if order["order_id"] == "x":
                    ctx.emit("payment.captrued", {"order_id": "x"})  # line 10: a typo
                await ctx.emit("payment.captured", {"order_id": order["order_id"]})
            """
        },
    )
    expected_line = 10
    lines = (tmp_path / "src/charge.step.py").read_text().splitlines()
    assert "captrued" in lines[expected_line - 1]
    app = load(tmp_path)
    try:
        diags = check(app)
        (err,) = by_code(diags, "undeclared-emit")
        assert err.severity == "error"
        assert (err.file, err.line) == ("src/charge.step.py", expected_line)
        assert err.step == "Charge card"
        assert err.topic == "payment.captrued"
        assert err.hint is not None and "payment.captured" in err.hint  # did you mean
        assert err.format().startswith(
            f"src/charge.step.py:{expected_line}: error[undeclared-emit]: "
        )
        assert check_exit_code(diags, strict=False) == 1
    finally:
        await app.aclose()


async def test_emit_keyword_topic_and_other_receivers(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "src/a.step.py": """
            config = {"type": "api", "name": "A", "path": "/a", "emits": ["ok"]}

            async def handler(req, ctx):
                await ctx.emit(topic="nope")
                await ctx.emit("ok")
                await something.emit(
                    "also.nope"
                )
                return {"status": 200}
            """,
            "src/b.step.py": """
            config = {"name": "B", "subscribes": ["ok"]}

            def handler(d, ctx):
                pass
            """,
        },
    )
    app = load(tmp_path)
    try:
        errs = by_code(check(app), "undeclared-emit")
        assert [(e.topic, e.line) for e in errs] == [("nope", 4), ("also.nope", 6)]
    finally:
        await app.aclose()


async def test_entry_topic_without_producer(tmp_path: Path) -> None:
    """The shape of a fresh project: `order.placed` is fed from outside (`wistro emit`)."""
    write_project(
        tmp_path,
        {"src/charge.step.py": CHARGE, "src/receipt.step.py": RECEIPT},
    )
    app = load(tmp_path)
    try:
        diags = check(app)
        assert sorted(codes(diags)) == ["flow-without-trigger", "no-producer"]
        (flow,) = by_code(diags, "flow-without-trigger")
        assert flow.flow == "shop" and flow.severity == "warning"
        assert flow.file == "src/charge.step.py"
        (nop,) = by_code(diags, "no-producer")
        assert nop.topic == "order.placed"
        assert nop.hint is not None and "wistro emit" in nop.hint
        # downstream steps are reachable from the outside-fed entry topic
        assert by_code(diags, "unreachable") == []
        assert check_exit_code(diags, strict=False) == 0
        assert check_exit_code(diags, strict=True) == 1
    finally:
        await app.aclose()


async def test_no_subscriber(tmp_path: Path) -> None:
    clean_project(tmp_path)
    write_project(
        tmp_path,
        {"src/receipt.step.py": RECEIPT.replace('"flows"', '"emits": ["receipt.sent"], "flows"')},
    )
    app = load(tmp_path)
    try:
        diags = check(app)
        (warn,) = by_code(diags, "no-subscriber")
        assert warn.topic == "receipt.sent"
        assert warn.step == "Send receipt"
        assert warn.file == "src/receipt.step.py"
        assert codes(diags) == ["no-subscriber"]
    finally:
        await app.aclose()


async def test_virtual_subscriber_counts(tmp_path: Path) -> None:
    clean_project(tmp_path)
    write_project(
        tmp_path,
        {
            "src/receipt.step.py": RECEIPT.replace('"flows"', '"emits": ["receipt.sent"], "flows"'),
            "src/customer.step.py": """
            config = {"type": "noop", "name": "Customer reads mail",
                      "virtual_subscribes": ["receipt.sent"], "flows": ["shop"]}
            """,
        },
    )
    app = load(tmp_path)
    try:
        assert check(app) == []
    finally:
        await app.aclose()


async def test_unreachable_cycle(tmp_path: Path) -> None:
    clean_project(tmp_path)
    write_project(
        tmp_path,
        {
            "src/ping.step.py": """
            config = {"name": "Ping", "subscribes": ["ping"], "emits": ["pong"]}

            def handler(d, ctx):
                pass
            """,
            "src/pong.step.py": """
            config = {"name": "Pong", "subscribes": ["pong"], "emits": ["ping"]}

            def handler(d, ctx):
                pass
            """,
        },
    )
    app = load(tmp_path)
    try:
        diags = check(app)
        unreachable = by_code(diags, "unreachable")
        assert sorted(d.step for d in unreachable if d.step) == ["Ping", "Pong"]
        assert {d.file for d in unreachable} == {"src/ping.step.py", "src/pong.step.py"}
        assert all(d.severity == "warning" for d in unreachable)
        assert codes(diags) == ["unreachable", "unreachable"]
        assert check_exit_code(diags, strict=False) == 0
        assert check_exit_code(diags, strict=True) == 1
    finally:
        await app.aclose()


async def test_cycle_started_by_cron_entry_is_reachable(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "wistro.yml": """
            cron:
              kick: {cron: "*/5 * * * *", emits: ping}
            """,
            "src/ping.step.py": """
            config = {"name": "Ping", "subscribes": ["ping"], "emits": ["pong"],
                      "flows": ["loop"]}

            def handler(d, ctx):
                pass
            """,
            "src/pong.step.py": """
            config = {"name": "Pong", "subscribes": ["pong"], "emits": ["ping"],
                      "flows": ["loop"]}

            def handler(d, ctx):
                pass
            """,
        },
    )
    app = load(tmp_path)
    try:
        assert check(app) == []
    finally:
        await app.aclose()


async def test_flow_triggers(tmp_path: Path) -> None:
    """A flow is started by a step outside it, by a wistro.yml entry listing it, or by a noop."""
    write_project(
        tmp_path,
        {
            "wistro.yml": """
            api:
              - {path: /hooks/in, method: POST, emits: hook.in, flows: [listed]}
            """,
            "src/start.step.py": """
            config = {"type": "api", "name": "Start", "path": "/s", "emits": ["a"],
                      "flows": ["first"]}

            async def handler(req, ctx):
                return {"status": 200}
            """,
            "src/second.step.py": """
            config = {"name": "Second", "subscribes": ["a"], "flows": ["second"]}

            def handler(d, ctx):
                pass
            """,
            "src/hook.step.py": """
            config = {"name": "Hook", "subscribes": ["hook.in"]}

            def handler(d, ctx):
                pass
            """,
            "src/listed.step.py": """
            config = {"name": "Listed", "subscribes": ["hook.in"], "flows": ["listed"]}

            def handler(d, ctx):
                pass
            """,
            "src/human.step.py": """
            config = {"type": "noop", "name": "Human", "virtual_emits": ["approved"]}
            """,
            "src/approved.step.py": """
            config = {"name": "Approved", "subscribes": ["approved"], "flows": ["approval"]}

            def handler(d, ctx):
                pass
            """,
        },
    )
    app = load(tmp_path)
    try:
        assert by_code(check(app), "flow-without-trigger") == []
        assert check(app) == []
    finally:
        await app.aclose()


async def test_diagnostic_format_and_dict(tmp_path: Path) -> None:
    d = Diagnostic(
        "warning",
        "no-producer",
        "topic 'x' has no producer",
        "src/a.step.py",
        3,
        "A",
        "x",
        None,
        "emit it",
    )
    assert d.format() == (
        "src/a.step.py:3: warning[no-producer]: topic 'x' has no producer (hint: emit it)"
    )
    assert d.to_dict()["code"] == "no-producer"
    assert d.to_dict()["line"] == 3
    bare = Diagnostic("error", "load", "boom", None, None, None, None, None)
    assert bare.format() == "error[load]: boom"
    ordered = sorted([d, bare], key=Diagnostic.sort_key)
    assert ordered == [bare, d]
