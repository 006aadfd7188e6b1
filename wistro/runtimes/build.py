"""Building ahead of time (``wistro build``, ``wistro start --build``): every TypeScript bundle and
the Go worker binary of a project's locked steps, into the caches the runtimes use at start, so
that a start needs no toolchain and no download (docs/lock.md, "Building ahead").

* TypeScript: each ``.step.ts`` is compiled by the Node worker itself (a ``load`` of that one
  file: the same esbuild call, options and cache path as at run time), with the project's or the
  cache's esbuild, never installed here. The bundle lands at ``node.bundle_path`` and
  ``.wistro/build/esbuild-prebuilt/`` records esbuild's version, so a start without esbuild still
  finds every bundle.
* Go: ``GoRuntime.build`` of the locked Go step files, the binary at
  ``.wistro/build/go/<hash>/worker``, the key a start from the lock computes.

``build_steps(root, records, report)`` runs them and calls ``report(Built)`` after each one;
a failure raises StepLoadError (one line).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wistro.core.step import StepRecord
from wistro.errors import StepLoadError, WorkerCrashed, WorkerError, WorkerStartError
from wistro.runtimes.golang import GoRuntime
from wistro.runtimes.node import (
    WORKER_JS,
    build_dir,
    bundle_path,
    ensure_esbuild,
    esbuild_version,
    is_typescript,
    write_prebuilt_esbuild,
)
from wistro.runtimes.worker import WorkerProcess, which

__all__ = ["Built", "build_steps"]

logger = logging.getLogger("wistro.build")


@dataclass(frozen=True)
class Built:
    """One artefact: ``kind`` is ``typescript`` or ``go``; ``what`` names the step file (or the
    Go worker); ``path`` is the artefact; ``cached``: it was there already."""

    kind: str
    what: str
    path: Path
    seconds: float
    cached: bool


def _root_of(record: StepRecord) -> Path:
    n = len(Path(record.rel_file).parts)
    return Path(*record.file.parts[: len(record.file.parts) - n])


def build_steps(
    root: Path, records: Sequence[StepRecord], report: Callable[[Built], None] = lambda b: None
) -> list[Built]:
    ts = sorted(
        {
            r.file: r for r in records if r.language == "typescript" and is_typescript(r.file)
        }.values(),
        key=lambda r: r.rel_file,
    )
    go = [r for r in records if r.language == "go"]
    out: list[Built] = []

    def done(built: Built) -> None:
        out.append(built)
        logger.info("built %s (%.2fs)", built.what, built.seconds)
        report(built)

    if ts:
        _build_typescript(root, ts, done)
    if go:
        _build_go(go, done)
    return out


def _build_typescript(root: Path, records: list[StepRecord], done: Callable[[Built], None]) -> None:
    node = which("node", "WISTRO_NODE")
    if node is None:
        raise StepLoadError(
            "building the TypeScript steps needs `node` (Node.js >= 18), which is not on PATH",
            hint="install Node.js, or set WISTRO_NODE to the node binary",
        )
    try:
        esbuild = ensure_esbuild(root)
    except StepLoadError as e:
        raise StepLoadError(
            f"building the TypeScript steps needs esbuild, which is not installed "
            f"({len(records)} TypeScript step file{'s' if len(records) != 1 else ''})",
            hint=e.hint,
        ) from None
    version = esbuild_version(esbuild)
    env = {
        "WISTRO_BUILD_DIR": str(build_dir(root)),
        "WISTRO_LANGUAGE": "javascript",
        "WISTRO_ESBUILD": str(esbuild),
    }

    async def run() -> None:
        proc = WorkerProcess(
            [node, "--enable-source-maps", str(WORKER_JS)],
            language="javascript",
            cwd=root,
            env={**os.environ, **env},
        )
        await proc.start()
        try:
            for r in records:
                target = bundle_path(root, r.file, version)
                cached = target.is_file()
                t0 = time.perf_counter()
                value = await proc.request({"t": "load", "files": [str(r.file)]})
                seconds = time.perf_counter() - t0
                for err in value.get("errors") or []:
                    line = err.get("line")
                    raise StepLoadError(
                        f"building this TypeScript step failed: {err.get('message')}",
                        file=r.rel_file,
                        line=line if isinstance(line, int) else None,
                    )
                if not target.is_file():
                    raise StepLoadError(
                        f"the worker compiled this TypeScript step, but not to {target}",
                        file=r.rel_file,
                    )
                done(Built("typescript", r.rel_file, target, seconds, cached))
        finally:
            await proc.close()

    try:
        asyncio.run(run())
    except (WorkerCrashed, WorkerError, WorkerStartError, TimeoutError) as e:
        raise StepLoadError(f"the Node worker failed while building: {e}") from None
    write_prebuilt_esbuild(root, version)


def _build_go(records: list[StepRecord], done: Callable[[Built], None]) -> None:
    by_root: dict[Path, list[Path]] = {}
    for r in records:
        files = by_root.setdefault(_root_of(r), [])
        if r.file.resolve() not in files:
            files.append(r.file.resolve())
    for root, files in by_root.items():
        rt = GoRuntime()
        rt.root = root
        target = rt.binary_path(root, files)
        cached = target.is_file()
        t0 = time.perf_counter()
        rt.build(root, files)  # GoBuildError / StepLoadError: one line with the file and line
        seconds = time.perf_counter() - t0
        n = len(files)
        done(
            Built(
                "go", f"Go worker ({n} step file{'s' if n != 1 else ''})", target, seconds, cached
            )
        )
