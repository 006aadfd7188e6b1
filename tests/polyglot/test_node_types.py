"""The generated ``wistro-types.d.ts`` and the shipped SDK ``index.d.ts``, checked with a real
``tsc --noEmit`` (typescript installed once from the npm registry into a cache folder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

import wistro
import wistro.app
from wistro.runtimes.base import LanguageRuntime
from wistro.runtimes.node import NodeRuntime
from wistro.runtimes.python import PythonRuntime
from wistro.typegen.typescript import DTS_NAME, ts_type, write_typescript_types

SDK_DTS = Path(wistro.__file__).parent / "sdk" / "js" / "index.d.ts"


def _runtimes() -> list[LanguageRuntime]:
    return [PythonRuntime(), NodeRuntime()]


@pytest.fixture(autouse=True)
def _with_node_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wistro.app, "default_runtimes", _runtimes)


@pytest.fixture(scope="session")
def tsc() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs node and npm")
    prefix = Path(os.environ.get("WISTRO_TEST_NPM_CACHE", Path.home() / ".cache" / "wistro"))
    prefix = prefix / "test-typescript"
    script = prefix / "node_modules" / "typescript" / "bin" / "tsc"
    if not script.is_file():
        proc = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save",
             "typescript@5"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"cannot install typescript: {proc.stderr[-300:]}")
    return [node, str(script)]


def run_tsc(tsc: list[str], files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext",
         "--moduleResolution", "nodenext", "--skipLibCheck", "false",
         *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


PROJECT = {
    "wistro.yml": "name: typed\n",
    "src/place.step.py": """
        config = {
            "name": "place_order",
            "subscribes": ["order.placed"],
            "emits": [{"topic": "order.scored", "schema": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "score": {"type": "integer"},
                               "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
                "required": ["order_id", "score"]}}],
            "input": {"type": "object", "properties": {"order_id": {"type": "string"}},
                      "required": ["order_id"]},
        }

        async def handler(data, ctx):
            pass
    """,
    "src/notify.step.ts": """
        import type { NotifyHandler } from "./wistro-types.js";

        export const config = {
          name: "notify", subscribes: ["order.scored"], emits: ["order.notified"],
        };

        export const handler: NotifyHandler = async (input, ctx) => {
          const score: number = input.score;
          await ctx.emit("order.notified", { order_id: input.order_id, score });
        };
    """,
    "src/done.step.py": """
        config = {
            "name": "done", "subscribes": ["order.notified"], "emits": [],
            "input": {"type": "object", "properties": {"order_id": {"type": "string"},
                      "score": {"type": "number"}}, "required": ["order_id", "score"]},
        }

        async def handler(data, ctx):
            pass
    """,
}


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def test_ts_type_of_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "n": {"type": ["integer", "null"]},
            "kind": {"enum": ["a", "b"]},
            "ref": {"$ref": "#/$defs/Item"},
            "weird key": {"type": "boolean"},
        },
        "required": ["id"],
        "$defs": {"Item": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    assert ts_type(schema) == (
        '{ id: string; n?: number | null; kind?: "a" | "b"; ref?: { x?: number; }; '
        '"weird key"?: boolean; }'
    )
    assert ts_type(None) == "any"
    assert ts_type({"type": "object"}) == "{ [key: string]: any; }"


def test_tsc_accepts_good_handlers_and_rejects_a_wrong_payload(
    tmp_path: Path, tsc: list[str]
) -> None:
    root = write(tmp_path, PROJECT)
    app = wistro.load(root, traces="memory", state="memory")
    assert app.errors == []
    dts = write_typescript_types(app)
    assert dts == root / "src" / DTS_NAME
    text = dts.read_text()
    assert '"order.scored": OrderScored;' in text
    assert 'emit<K extends "order.notified">' in text

    good = run_tsc(tsc, [root / "src/notify.step.ts"])
    assert good.returncode == 0, good.stdout + good.stderr

    bad = root / "src/bad.step.ts"
    bad.write_text(
        textwrap.dedent(
            """
            import type { NotifyHandler } from "./wistro-types.js";

            export const handler: NotifyHandler = async (input, ctx) => {
              await ctx.emit("order.notified", { order_id: input.order_id, score: "high" });
              await ctx.emit("order.placed", { order_id: "x" });
            };
            """
        )
    )
    result = run_tsc(tsc, [bad])
    assert result.returncode != 0
    out = result.stdout
    assert "bad.step.ts(5," in out and "Type 'string' is not assignable to type 'number'" in out
    assert "bad.step.ts(6," in out and '"order.placed"' in out


def test_the_sdk_types_compile(tmp_path: Path, tsc: list[str]) -> None:
    step = tmp_path / "sdk.step.ts"
    step.write_text(
        textwrap.dedent(
            f"""
            import type {{ Handler, StepConfig, Context }} from "{SDK_DTS.with_suffix("").with_suffix("")}.js";

            export const config: StepConfig = {{ name: "a", subscribes: ["x"], emits: ["y"] }};

            export const handler: Handler<{{ id: string }}> = async (input, ctx: Context) => {{
              const v = await ctx.state.get<number>(ctx.traceId, "k");
              ctx.logger.info("hi", {{ id: input.id, v }});
              await ctx.emit("y", {{ id: input.id }});
            }};
            """
        )
    )
    result = run_tsc(tsc, [step])
    assert result.returncode == 0, result.stdout + result.stderr
