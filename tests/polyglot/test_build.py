"""Building ahead (`wistro build`, `wistro start --build`) with the real node, esbuild and go: the
artefacts land where a start from the lock finds them, so that start runs the TypeScript and Go
steps with neither esbuild nor go available; a TypeScript step with neither esbuild nor a
prebuilt bundle fails the start at once, in one line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import wistro

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("go") is None, reason="needs node and go"
)

START_PY = """
config = {"name": "start", "subscribes": ["order.placed"], "emits": ["order.ts"]}

async def handler(data, ctx):
    await ctx.emit("order.ts", data)
"""

SCORE_TS = """
interface Order { id: string; n: number }
export const config = { name: "score", subscribes: ["order.ts"], emits: ["order.go"] };
export async function handler(data: Order, ctx: any): Promise<void> {
  await ctx.emit("order.go", { id: data.id, n: data.n * 2 });
}
"""

FINISH_GO = """
package steps

import (
	"encoding/json"

	"wistro.dev/sdk/wistro"
)

var _ = wistro.Register(wistro.StepConfig{
	Name:       "finish",
	Subscribes: []string{"order.go"},
}, func(ctx *wistro.Context, input json.RawMessage) (any, error) {
	var v map[string]any
	if err := json.Unmarshal(input, &v); err != nil {
		return nil, err
	}
	return nil, ctx.State.Set("done", v["id"].(string), v)
})
"""


def wistro_cli(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wistro", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def project(root: Path, go: bool = True) -> Path:
    files = {"wistro.yml": "name: buildproj\n", "src/start.step.py": START_PY}
    files["src/score.step.ts"] = SCORE_TS
    if go:
        files["src/finish.step.go"] = FINISH_GO
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def locked(root: Path) -> Path:
    proc = wistro_cli(root, "lock")
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(root / ".wistro" / "build", ignore_errors=True)  # what `lock` compiled
    return root


def no_toolchains(tmp_path: Path) -> dict[str, str]:
    """Neither esbuild (an empty cache, no node_modules) nor go (WISTRO_GO names nothing)."""
    (tmp_path / "empty-cache").mkdir(exist_ok=True)
    return {"WISTRO_CACHE_DIR": str(tmp_path / "empty-cache"), "WISTRO_GO": "/nonexistent/go"}


def artefacts(root: Path) -> set[str]:
    build = root / ".wistro" / "build"
    return {p.relative_to(build).as_posix() for p in build.rglob("*") if p.is_file()}


async def test_build_then_start_from_the_lock_without_esbuild_or_go(
    tmp_path: Path, esbuild_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = locked(project(tmp_path / "proj"))
    t0 = time.perf_counter()
    proc = wistro_cli(root, "build")
    build_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout
    assert lines[0].split()[:3] == ["built", "typescript", "src/score.step.ts"], lines[0]
    assert lines[0].endswith(" ms)") and ".mjs" in lines[0]
    assert lines[1].split()[:3] == ["built", "go", "Go"], lines[1]
    assert lines[2].startswith("built 1 TypeScript bundle and 1 Go worker (2 new, 0 cached)")
    built = artefacts(root)
    assert any(p.startswith("score.step.") and p.endswith(".mjs") for p in built), built
    assert any(p.startswith("go/") and p.endswith("/worker") for p in built), built

    again = wistro_cli(root, "build")  # everything is there: nothing is rebuilt
    assert again.returncode == 0, again.stderr
    assert [ln.split()[0] for ln in again.stdout.splitlines()[:2]] == ["cached", "cached"]

    for key, value in no_toolchains(tmp_path).items():
        monkeypatch.setenv(key, value)
    app = wistro.App.from_lock(root, state="memory", traces="memory")
    async with app:
        t1 = time.perf_counter()
        run = await app.emit("order.placed", {"id": "a1", "n": 2})
        first_s = time.perf_counter() - t1
        assert run.status == "ok", run.failures
        assert await app.state.get("done", "a1") == {"id": "a1", "n": 4}
    assert artefacts(root) == built  # nothing compiled at delivery time
    assert first_s < 10, (first_s, build_s)


def test_start_build_logs_each_build(tmp_path: Path, esbuild_dir: Path) -> None:
    root = locked(project(tmp_path / "proj"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wistro", "-C", str(root), "start", "--build", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line.rstrip("\n"))
            if line.startswith("ready:"):
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    builds = [ln for ln in out if ln.startswith("build: ")]
    assert len(builds) == 3, out
    assert builds[0].split()[1:4] == ["built", "typescript", "src/score.step.ts"], builds
    assert builds[1].split()[1:3] == ["built", "go"], builds
    assert builds[2].startswith("build: built 1 TypeScript bundle and 1 Go worker"), builds
    assert out[len(builds)].startswith("ready:"), out


def test_typescript_without_esbuild_or_bundle_fails_start_in_one_line(
    tmp_path: Path, esbuild_dir: Path
) -> None:
    # locked with esbuild at hand (the user's cache); started without it and without a build
    root = locked(project(tmp_path / "proj", go=False))
    env = no_toolchains(tmp_path)
    t0 = time.perf_counter()
    proc = wistro_cli(root, "start", "--port", "0", env=env)
    assert time.perf_counter() - t0 < 20
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: src/score.step.ts, step 'score': "), lines[0]
    assert "no prebuilt bundle" in lines[0] and "npm install --save-dev esbuild@" in lines[0]
    assert "wistro build" in lines[0]

    build = wistro_cli(root, "build", env=env)  # and `wistro build` names what to install
    assert build.returncode == 1
    [line] = build.stderr.strip().splitlines()
    assert line.startswith("error: building the TypeScript steps needs esbuild"), line
    assert "npm install --save-dev esbuild@" in line


def test_go_without_a_built_worker_fails_start_in_one_line(
    tmp_path: Path, esbuild_dir: Path
) -> None:
    # locked where go is installed; started from the lock without go and without `wistro build`
    root = locked(project(tmp_path / "proj"))
    env = {"WISTRO_GO": "/nonexistent/go"}
    t0 = time.perf_counter()
    proc = wistro_cli(root, "start", "--port", "0", env=env)
    assert time.perf_counter() - t0 < 20  # at once: not at the first delivery, not a hang
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(
        "error: src/finish.step.go: the Go worker of the lock's 1 Go step file is not built "
        "(`wistro build`) and the Go toolchain (`go`) is not on PATH"
    ), line
    assert "wistro build" in line.split("hint:")[1]
    # built ahead, the same start needs no go
    assert wistro_cli(root, "build").returncode == 0
    app = wistro.App.from_lock(root, state="memory", traces="memory")
    assert [r.name for r in app.registry if r.language == "go"] == ["finish"]


def test_go_built_at_first_delivery_is_announced_at_start(
    tmp_path: Path, esbuild_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = locked(project(tmp_path / "proj"))
    with caplog.at_level("WARNING", logger="wistro.build"):
        wistro.App.from_lock(root, state="memory", traces="memory")
    [record] = [r for r in caplog.records if r.name == "wistro.build"]
    assert record.getMessage() == (
        "the Go worker of the lock's 1 Go step file is not built: `go build` runs at the first "
        "Go delivery (run `wistro build` ahead, or `wistro start --build`)"
    )
