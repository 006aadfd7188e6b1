"""``wistro types`` for Go: structs for topic payloads, checked by gofmt and ``go vet``, and
used by a Go step (a wrong payload type does not compile)."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

import wistro
import wistro.app
from wistro.runtimes import PythonRuntime
from wistro.runtimes.golang import GoRuntime, build_env, module_files
from wistro.typegen.go import go_name, go_structs, write_go_types

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")

MODELS = '''
from typing import Literal
from pydantic import BaseModel

class Address(BaseModel):
    street: str
    zip_code: str | None = None

class Item(BaseModel):
    sku: str
    qty: int
    price: float

class Order(BaseModel):
    """An order as placed by the shop."""
    order_id: str
    customer_url: str
    items: list[Item]
    ship_to: Address
    bill_to: Address | None = None
    tags: dict[str, str] = {}
    status: Literal["new", "paid"] = "new"
    express: bool = False
    meta: dict = {}

class Node(BaseModel):
    name: str
    children: list["Node"] = []
'''

STEP_PY = """
from models import Order, Node

config = {
    "name": "place",
    "subscribes": ["order.placed"],
    "input": Order,
    "emits": [
        {"topic": "tree.built", "schema": Node},
        {"topic": "note", "schema": {"type": "string"}},
        "free.form",
        {"topic": "order.copy", "schema": Order},
    ],
}

async def handler(data, ctx):
    pass
"""

USE_GO = """
package steps

import (
\t"encoding/json"

\t"wistro.dev/sdk/wistro"
)

var _ = wistro.Register(wistro.StepConfig{
\tName:       "relay",
\tSubscribes: []string{"order.copy"},
\tEmits:      []any{"order.placed"},
}, func(ctx *wistro.Context, input json.RawMessage) (any, error) {
\tvar o OrderCopy
\tif err := json.Unmarshal(input, &o); err != nil {
\t\treturn nil, err
\t}
\treturn nil, EmitOrderPlaced(ctx, o)
})
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def load(root: Path) -> wistro.App:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wistro.app, "default_runtimes", lambda: [PythonRuntime(), GoRuntime()])
        return wistro.load(root, state="memory", traces="memory")


def go(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    gobin = shutil.which("go")
    assert gobin
    return subprocess.run(
        [gobin, *args], cwd=cwd, env=build_env(), capture_output=True, text=True, timeout=300
    )


def test_go_names() -> None:
    assert go_name("order.placed") == "OrderPlaced"
    assert go_name("order_id") == "OrderID"
    assert go_name("customerUrl") == "CustomerURL"
    assert go_name("2fa") == "T2fa"


def test_structs_pass_gofmt_and_go_vet(tmp_path: Path) -> None:
    root = write(tmp_path / "p", {"src/models.py": MODELS, "src/place.step.py": STEP_PY})
    app = load(root)
    assert app.errors == []
    source = go_structs(app)
    assert "type OrderCopy struct {" in source
    assert '\tOrderID     string            `json:"order_id"`' in source
    assert '\tBillTo      *Address          `json:"bill_to,omitempty"`' in source
    assert "type OrderPlaced = OrderCopy" in source  # the same model: one struct
    assert "type Note = string" in source
    assert "type FreeForm = any" in source
    assert '\tChildren []Node `json:"children,omitempty"`' in source
    assert 'TopicOrderPlaced = "order.placed"' in source
    assert "func EmitOrderPlaced(ctx *wistro.Context, payload OrderPlaced) error {" in source
    assert "func EmitTreeBuilt(ctx *wistro.Context, payload Node) error {" in source
    mod = write(tmp_path / "mod", {"go.mod": module_files("example.com/typescheck")})
    (mod / "wistro_types.go").write_text(source, encoding="utf-8")
    gofmt = shutil.which("gofmt") or str(Path(shutil.which("go") or "go").parent / "gofmt")
    fmt = subprocess.run([gofmt, "-l", "."], cwd=mod, capture_output=True, text=True)
    assert fmt.returncode == 0 and fmt.stdout == "", fmt.stdout + fmt.stderr
    vet = go(["vet", "./..."], mod)
    assert vet.returncode == 0, vet.stderr


def test_go_steps_use_the_types_and_a_wrong_payload_does_not_compile(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {"src/models.py": MODELS, "src/place.step.py": STEP_PY, "src/go/relay.step.go": USE_GO},
    )
    app = load(root)  # no wistro_types.go yet: relay does not compile
    assert [e.file for e in app.errors] == ["src/go/relay.step.go"]
    assert "undefined: OrderCopy" in str(app.errors[0])
    (path,) = write_go_types(app)
    assert path == root.resolve() / "src" / "go" / "wistro_types.go"  # beside the Go step
    app = load(root)
    assert app.errors == []
    assert app.step("relay").language == "go"
    # a wrong payload type for the typed emit helper is a compile error naming the line
    relay = root / "src/go/relay.step.go"
    relay.write_text(
        relay.read_text().replace("EmitOrderPlaced(ctx, o)", "EmitOrderPlaced(ctx, 42)")
    )
    app = load(root)
    (err,) = app.errors
    line = relay.read_text().splitlines().index("\treturn nil, EmitOrderPlaced(ctx, 42)") + 1
    assert err.file == "src/go/relay.step.go" and err.line == line
    assert "cannot use 42" in str(err)


def test_no_go_file_without_go_steps(tmp_path: Path) -> None:
    root = write(tmp_path, {"src/models.py": MODELS, "src/place.step.py": STEP_PY})
    app = load(root)
    assert write_go_types(app) == []
    assert not (root / "src" / "wistro_types.go").exists()
    (path,) = write_go_types(app, tmp_path / "out", always=True)
    assert path.read_text().startswith("// Code generated by `wistro types`; DO NOT EDIT.")
