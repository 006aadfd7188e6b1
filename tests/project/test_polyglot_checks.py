"""``wistro check`` finds emits of undeclared topics in JS, TS and Go steps (a static scan of the
source, as for Python), with the file and line. Real ``node`` and ``go``, the real CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wistro.typegen.checks import go_emits, js_emits

WISTRO = [sys.executable, "-m", "wistro"]

JS_STEP = """
export const config = { name: "Notify js", subscribes: ["order.placed"], emits: ["note.sent"] };

// ctx.emit("commented.out", {}) is not a call
export async function handler(input, ctx) {
  await ctx.emit("note.sent", {});
  await ctx.emit('note.snet', { id: input.order_id });
}
"""

TS_STEP = """
export const config = { name: "Notify ts", subscribes: ["order.placed"], emits: ["note.sent"] };

export async function handler(input: { order_id: string }, ctx: any): Promise<void> {
  const { emit } = ctx;
  /* await ctx.emit("commented.out", {}); */
  await emit(`note.sent`, {});
  await emit(
    "order.shipped", { id: input.order_id });
}
"""

GO_STEP = """
package steps

import (
\t"encoding/json"

\t"wistro.dev/sdk/wistro"
)

var _ = wistro.Register(wistro.StepConfig{
\tName:       "Notify go",
\tSubscribes: []string{"order.placed"},
\tEmits:      []any{"note.sent"},
}, func(ctx *wistro.Context, input json.RawMessage) (any, error) {
\t// ctx.Emit("commented.out", nil)
\tif err := ctx.Emit("note.sent", nil); err != nil {
\t\treturn nil, err
\t}
\tif err := ctx.Emit(`note.lost`, nil); err != nil {
\t\treturn nil, err
\t}
\treturn nil, EmitOrderPlaced(ctx, map[string]any{"order_id": "x"})
})
"""

PLACE_PY = """
config = {"name": "Place", "type": "api", "path": "/o", "method": "POST", "emits": ["order.placed"],
          "body": {"type": "object", "properties": {"order_id": {"type": "string"}},
                   "required": ["order_id"]}}

async def handler(req, ctx):
    await ctx.emit("order.placed", req.body)
    return {"status": 202}
"""


def line_of(text: str, needle: str) -> int:
    return next(
        i for i, ln in enumerate(textwrap.dedent(text).lstrip("\n").splitlines(), 1) if needle in ln
    )


def test_the_scans() -> None:
    assert js_emits(textwrap.dedent(JS_STEP).lstrip("\n")) == [("note.sent", 5), ("note.snet", 6)]
    assert js_emits(textwrap.dedent(TS_STEP).lstrip("\n")) == [
        ("note.sent", 6),
        ("order.shipped", 8),
    ]
    assert js_emits("ctx.emit(`a.${x}`, {}); emit('it\\'s', 1); notemit('z', 1)") == [("it's", 1)]
    names = {"EmitOrderPlaced": "order.placed", "TopicNoteSent": "note.sent"}
    source = 'ctx.Emit(TopicNoteSent, 1)\n/* ctx.Emit("x", 1) */ EmitOrderPlaced(ctx, p)\n'
    assert go_emits(source, names) == [("note.sent", 1), ("order.placed", 2)]


@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("go") is None, reason="needs node and go"
)
def test_check_reports_undeclared_emits_in_js_ts_and_go(tmp_path: Path) -> None:
    root = tmp_path / "p"
    files = {
        "wistro.yml": "name: p\n",
        "src/place.step.py": PLACE_PY,
        "src/notify_js.step.js": JS_STEP,
        "src/notify_ts.step.ts": TS_STEP,
        "src/go/notify_go.step.go": GO_STEP,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    # the Go step uses the generated helper of a topic it does not declare
    types = subprocess.run(
        [*WISTRO, "types"], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert types.returncode == 0, types.stderr
    proc = subprocess.run(
        [*WISTRO, "check", "--json"], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert not [d for d in report["diagnostics"] if d["code"] == "load"], report
    found = sorted(
        (d["file"], d["line"], d["topic"])
        for d in report["diagnostics"]
        if d["code"] == "undeclared-emit"
    )
    assert found == [
        ("src/go/notify_go.step.go", line_of(GO_STEP, "note.lost"), "note.lost"),
        ("src/go/notify_go.step.go", line_of(GO_STEP, "EmitOrderPlaced"), "order.placed"),
        ("src/notify_js.step.js", line_of(JS_STEP, "note.snet"), "note.snet"),
        ("src/notify_ts.step.ts", line_of(TS_STEP, '"order.shipped"'), "order.shipped"),
    ]
    by_topic = {d["topic"]: d for d in report["diagnostics"] if d["code"] == "undeclared-emit"}
    assert by_topic["note.snet"]["hint"] == "did you mean 'note.sent'?"
    assert by_topic["note.snet"]["severity"] == "error"
    text = subprocess.run([*WISTRO, "check"], cwd=root, capture_output=True, text=True, timeout=300)
    line = line_of(JS_STEP, "note.snet")
    assert f"src/notify_js.step.js:{line}: error[undeclared-emit]" in text.stderr
