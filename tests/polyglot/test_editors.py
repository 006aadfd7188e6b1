"""Editors (issue #14): after ``wistro types``, ``go vet ./...`` (and so gopls) sees the Go SDK and
the generated types through the ``go.mod`` / ``go.work`` it writes, and ``tsc --noEmit -p .`` with
the ``tsconfig.json`` of docs/steps.md type-checks TS steps against ``./wistro-types``. Real CLI,
real ``go`` and ``tsc``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WISTRO = [sys.executable, "-m", "wistro"]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "steps.md"

RESERVE_GO = """
package steps

import (
\t"encoding/json"

\t"wistro.dev/sdk/wistro"
)

// Audit is the step's own type, next to the generated ones.
type Audit struct{ Note string }

var _ = wistro.Register(wistro.StepConfig{
\tName:       "Reserve stock",
\tSubscribes: []string{"order.placed"},
\tInput: map[string]any{
\t\t"type":       "object",
\t\t"properties": map[string]any{"order_id": map[string]any{"type": "string"}},
\t\t"required":   []string{"order_id"},
\t},
\tEmits: []any{wistro.Emit{Topic: "stock.reserved", Schema: json.RawMessage(`{
\t\t"type": "object",
\t\t"properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
\t\t"required": ["sku", "qty"]}`)}},
}, wistro.Handle(func(ctx *wistro.Context, p OrderPlaced) (any, error) {
\tctx.Logger.Info("reserve", "audit", Audit{Note: p.OrderID}.Note)
\treturn nil, ReserveStockContext{ctx}.EmitStockReserved(StockReserved{Sku: p.OrderID, Qty: QTY})
}))
"""

BILL_GO = """
package steps

import "wistro.dev/sdk/wistro"

var _ = wistro.Register(wistro.StepConfig{
\tName:       "Bill",
\tSubscribes: []string{"stock.reserved"},
}, wistro.Handle(func(ctx *wistro.Context, p StockReserved) (any, error) {
\tctx.Logger.Info("bill", "sku", p.Sku, "topic", TopicStockReserved)
\treturn nil, nil
}))
"""

PLACE_PY = """
config = {"name": "Place order", "type": "api", "path": "/orders", "method": "POST",
          "emits": ["order.placed"]}

async def handler(req, ctx):
    await ctx.emit("order.placed", {"order_id": "A1"})
    return {"status": 202}
"""

SEND_TS = """
import type { SendReceiptHandler } from "./wistro-types";

export const config = {
  name: "Send receipt", subscribes: ["stock.reserved"], emits: ["receipt.sent"],
};

export const handler: SendReceiptHandler = async (input, ctx) => {
  const qty: number = input.qty;
  await ctx.emit(TOPIC, { sku: input.sku, qty });
};
"""


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WISTRO, *args], cwd=root, capture_output=True, text=True, timeout=180, check=False
    )


def go_env() -> dict[str, str]:
    env = dict(os.environ, GOPROXY="off", GOTOOLCHAIN="local", CGO_ENABLED="0")
    env.pop("GOWORK", None)
    env.pop("GOFLAGS", None)
    return env


def go_project(root: Path) -> Path:
    files = {
        "wistro.yml": "name: My Shop\n",
        "src/place.step.py": PLACE_PY,
        "src/reserve.step.go": RESERVE_GO.replace("QTY", "1"),
        "src/bill.step.go": BILL_GO,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")
def test_go_vet_sees_the_sdk_and_the_types(tmp_path: Path) -> None:
    go = shutil.which("go") or "go"
    root = go_project(tmp_path / "shop")
    types = cli(root, "types")
    assert types.returncode == 0, types.stdout + types.stderr
    assert "\npackage steps\n" in (root / "src/wistro_types.go").read_text()
    assert (root / "go.mod").read_text().startswith("module my-shop\n")
    work = (root / "go.work").read_text()
    assert "use .\n" in work and "sdk/go" in work
    vet = subprocess.run(
        [go, "vet", "./..."], cwd=root, env=go_env(), capture_output=True, text=True, timeout=120
    )
    assert vet.returncode == 0, vet.stdout + vet.stderr
    # the runtime still compiles the steps (one copy of the types each) and the types are current
    check = cli(root, "check", "--json")
    report = json.loads(check.stdout)
    assert check.returncode == 0 and report["ok"], check.stdout + check.stderr
    assert cli(root, "types", "--check").returncode == 0
    # a second run keeps go.mod and go.work as they are
    mod = (root / "go.mod").read_text()
    assert cli(root, "types").returncode == 0
    assert (root / "go.mod").read_text() == mod and (root / "go.work").read_text() == work
    # go vet type-checks: a wrong payload field type fails it
    step = root / "src/reserve.step.go"
    step.write_text(step.read_text().replace("Qty: 1}", 'Qty: "one"}'))
    bad = subprocess.run(
        [go, "vet", "./..."], cwd=root, env=go_env(), capture_output=True, text=True, timeout=120
    )
    assert bad.returncode != 0 and "reserve.step.go" in bad.stderr, bad.stderr


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")
def test_go_vet_sees_the_types_in_every_folder_of_go_steps(tmp_path: Path) -> None:
    """Go steps in subfolders (as in the polyglot template's src/checkout/) are packages of
    their own: each folder gets its copy of the types, in its package, and the runtime compiles
    each step with the nearest copy only (an older one higher up is not compiled twice)."""
    go = shutil.which("go") or "go"
    root = go_project(tmp_path / "shop")
    (root / "src/checkout").mkdir()
    (root / "src/reserve.step.go").rename(root / "src/checkout/reserve.step.go")
    billing = root / "src/billing/bill.step.go"
    billing.parent.mkdir()
    (root / "src/bill.step.go").rename(billing)
    billing.write_text(billing.read_text().replace("package steps", "package billing", 1))
    (root / "src/wistro_types.go").write_text(  # left by an older `wistro types`: shadowed
        "package steps\n\ntype OrderPlaced struct{ Old string }\n"
    )
    types = cli(root, "types")
    assert types.returncode == 0, types.stdout + types.stderr
    assert "\npackage steps\n" in (root / "src/checkout/wistro_types.go").read_text()
    assert "\npackage billing\n" in (root / "src/billing/wistro_types.go").read_text()
    (root / "src/wistro_types.go").unlink()  # go vet would (rightly) see two packages in src/
    vet = subprocess.run(
        [go, "vet", "./..."], cwd=root, env=go_env(), capture_output=True, text=True, timeout=120
    )
    assert vet.returncode == 0, vet.stdout + vet.stderr
    (root / "src/wistro_types.go").write_text("package steps\n\ntype OrderPlaced struct{}\n")
    check = cli(root, "check", "--json")
    report = json.loads(check.stdout)
    assert check.returncode == 0 and report["ok"], check.stdout + check.stderr
    assert cli(root, "types", "--check").returncode == 0
    # a wrong payload in the subfolder's step: go vet names it
    step = root / "src/checkout/reserve.step.go"
    step.write_text(step.read_text().replace("Qty: 1}", 'Qty: "one"}'))
    (root / "src/wistro_types.go").unlink()
    bad = subprocess.run(
        [go, "vet", "./..."], cwd=root, env=go_env(), capture_output=True, text=True, timeout=120
    )
    assert bad.returncode != 0 and "checkout/reserve.step.go" in bad.stderr, bad.stderr


def documented_tsconfig() -> str:
    text = DOCS.read_text(encoding="utf-8")
    m = re.search(r"`tsconfig\.json`.*?```json\n(.*?)\n```", text, re.DOTALL)
    assert m, "docs/steps.md shows a tsconfig.json"
    json.loads(m.group(1))
    return m.group(1) + "\n"


@pytest.fixture(scope="module")
def tsc() -> list[str]:
    node, npx = shutil.which("node"), shutil.which("npx")
    if node is None or npx is None:
        pytest.skip("needs node and npm")
    cached = Path(os.environ.get("WISTRO_TEST_NPM_CACHE", Path.home() / ".cache" / "wistro"))
    script = cached / "test-typescript" / "node_modules" / "typescript" / "bin" / "tsc"
    return [node, str(script)] if script.is_file() else [npx, "-y", "-p", "typescript@5", "tsc"]


def test_tsc_with_the_documented_tsconfig(tmp_path: Path, tsc: list[str]) -> None:
    root = tmp_path / "shop"
    (root / "src").mkdir(parents=True)
    (root / "wistro.yml").write_text("name: shop\n")
    (root / "tsconfig.json").write_text(documented_tsconfig())
    (root / "src/place.step.py").write_text(textwrap.dedent(PLACE_PY).lstrip())
    (root / "src/reserve.step.py").write_text(
        'config = {"name": "Reserve", "subscribes": ["order.placed"], "emits": [{"topic":\n'
        '  "stock.reserved", "schema": {"type": "object", "properties": {"sku": {"type":\n'
        '  "string"}, "qty": {"type": "integer"}}, "required": ["sku", "qty"]}}]}\n\n'
        "async def handler(data, ctx):\n    pass\n"
    )
    step = root / "src/send.step.ts"
    step.write_text(SEND_TS.replace("TOPIC", '"receipt.sent"').lstrip())
    types = cli(root, "types")
    assert types.returncode == 0, types.stdout + types.stderr
    assert (root / "src/wistro-types.d.ts").is_file()

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*tsc, "--noEmit", "-p", "."], cwd=root, capture_output=True, text=True, timeout=120
        )

    good = run()
    assert good.returncode == 0, good.stdout + good.stderr
    step.write_text(SEND_TS.replace("TOPIC", '"order.placed"').lstrip())  # not declared
    bad = run()
    assert bad.returncode != 0 and "send.step.ts" in bad.stdout, bad.stdout
