"""``wistro types`` from a clean checkout with Go steps that use their own topics' structs (their
configs are read by a static parse: they cannot compile before the types exist), and
``wistro types --check`` / ``wistro check`` on stale generated files. Real ``go``, real CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wistro.typegen.goconfig import go_step_configs, topic_schemas

WISTRO = [sys.executable, "-m", "wistro"]
needs_go = pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")

RESERVE_GO = """
package steps

import (
\t"encoding/json"

\t"wistro.dev/sdk/wistro"
)

// The step uses OrderPlaced, StockReserved and ReserveStockContext, generated from its config.
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
\treturn nil, ReserveStockContext{ctx}.EmitStockReserved(StockReserved{Sku: p.OrderID, Qty: 1})
}))
"""

PLACE_PY = """
config = {"name": "Place order", "type": "api", "path": "/orders", "method": "POST",
          "emits": ["order.placed"]}

async def handler(req, ctx):
    await ctx.emit("order.placed", {"order_id": "A1"})
    return {"status": 202}
"""

SHIP_PY = """
config = {"name": "Ship", "subscribes": ["stock.reserved"]}

async def handler(data, ctx):
    pass
"""


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WISTRO, *args], cwd=root, capture_output=True, text=True, timeout=300)


def project(root: Path) -> Path:
    files = {
        "wistro.yml": "name: shop\n",
        "src/place.step.py": PLACE_PY,
        "src/ship.step.py": SHIP_PY,
        "src/go/reserve.step.go": RESERVE_GO,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def test_static_parse_of_a_go_step_config() -> None:
    (config,) = go_step_configs(textwrap.dedent(RESERVE_GO))
    assert config["name"] == "Reserve stock"
    assert config["subscribes"] == ["order.placed"]
    schemas = topic_schemas([config])
    assert schemas["order.placed"] == {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    }
    assert schemas["stock.reserved"]["required"] == ["sku", "qty"]  # type: ignore[index]
    # values that are not literals are left out, a variable holding the config is followed
    source = """
    var cfg = wistro.StepConfig{Name: "x", Emits: []any{"a", topicVar}, Input: schemaOf(T{}),
        TimeoutS: 1.5, Retries: ptr(2)} // wistro.Register(nope)
    var _ = wistro.Register(cfg, nil)
    """
    (config,) = go_step_configs(source)
    assert config == {"name": "x", "emits": ["a"], "timeout_s": 1.5}


@needs_go
def test_clean_checkout_types_then_check(tmp_path: Path) -> None:
    root = project(tmp_path / "shop")
    types = cli(root, "types")
    assert types.returncode == 0, types.stdout + types.stderr
    assert "error" not in types.stderr, types.stderr  # the Go step compiles after the write
    go_types = (root / "src" / "go" / "wistro_types.go").read_text()
    assert "type StockReserved struct {" in go_types
    assert '\tSku string `json:"sku"`' in go_types
    assert "type OrderPlaced struct {" in go_types
    assert "StockReserved = any" not in go_types and "OrderPlaced = any" not in go_types
    check = cli(root, "check", "--json")
    report = json.loads(check.stdout)
    assert check.returncode == 0 and report["ok"], check.stdout + check.stderr
    assert not [d for d in report["diagnostics"] if d["severity"] == "error"]
    assert cli(root, "types", "--check").returncode == 0
    assert "type ReserveStockContext struct{ ctx *wistro.Context }" in go_types
    assert (
        "func (c ReserveStockContext) EmitStockReserved(payload StockReserved) error {" in go_types
    )
    gofmt = shutil.which("gofmt") or str(Path(shutil.which("go") or "go").parent / "gofmt")
    fmt = subprocess.run([gofmt, "-l", "src/go/wistro_types.go"], cwd=root, capture_output=True)
    assert fmt.returncode == 0 and fmt.stdout == b"", fmt
    # a second run changes nothing
    again = cli(root, "types")
    assert (
        again.returncode == 0 and (root / "src" / "go" / "wistro_types.go").read_text() == go_types
    )


@needs_go
def test_stale_types_fail_types_check_and_warn_in_check(tmp_path: Path) -> None:
    root = project(tmp_path / "shop")
    assert cli(root, "types").returncode == 0
    ship = root / "src" / "ship.step.py"  # a new topic: every generated file is stale now
    ship.write_text(
        ship.read_text().replace(
            '"subscribes": ["stock.reserved"]}',
            '"subscribes": ["stock.reserved"], "emits": ["order.shipped"]}',
        )
    )
    stale = cli(root, "types", "--check")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    lines = stale.stderr.strip().splitlines()
    assert sorted(lines) == [
        "src/go/wistro_types.go: stale (run `wistro types`)",
        "src/wistro_types.py: stale (run `wistro types`)",
    ]
    check = cli(root, "check", "--json")
    report = json.loads(check.stdout)
    found = {d["file"] for d in report["diagnostics"] if d["code"] == "stale-types"}
    assert found == {"src/go/wistro_types.go", "src/wistro_types.py"}
    assert all(
        d["severity"] == "warning" for d in report["diagnostics"] if d["code"] == "stale-types"
    )
    assert cli(root, "check", "--strict").returncode == 1
    text = cli(root, "check")
    assert "src/go/wistro_types.go: warning[stale-types]" in text.stderr
    assert cli(root, "types").returncode == 0
    assert cli(root, "types", "--check").returncode == 0
    (root / "src" / "wistro_types.py").unlink()
    missing = cli(root, "types", "--check")
    assert missing.returncode == 1 and "src/wistro_types.py: missing" in missing.stderr
    assert "stale-types" not in cli(root, "check").stderr  # a missing file: not a check warning


@needs_go
def test_the_step_context_rejects_a_topic_the_step_does_not_declare(tmp_path: Path) -> None:
    root = project(tmp_path / "shop")
    assert cli(root, "types").returncode == 0
    step = root / "src" / "go" / "reserve.step.go"
    text = step.read_text()
    step.write_text(
        text.replace(
            "ReserveStockContext{ctx}.EmitStockReserved(StockReserved{Sku: p.OrderID, Qty: 1})",
            "ReserveStockContext{ctx}.EmitOrderPlaced(p)",
        )
    )
    check = cli(root, "check", "--json")
    (err,) = [d for d in json.loads(check.stdout)["diagnostics"] if d["severity"] == "error"]
    assert err["code"] == "load" and err["file"] == "src/go/reserve.step.go"
    assert "EmitOrderPlaced" in err["message"] and err["line"] == len(text.splitlines()) - 1
