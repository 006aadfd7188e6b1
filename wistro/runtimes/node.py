"""JavaScript and TypeScript steps (``.step.js``, ``.step.mjs``, ``.step.ts``), run by one
long-lived Node.js worker per project: ``wistro/sdk/js/worker.mjs`` (shipped in the package; plain
JavaScript needs no npm at all).

TypeScript is compiled by the worker with esbuild, found in this order:

1. the project's own ``node_modules/esbuild``: a pinned npm dependency of the project
   (``npm install --save-dev esbuild@ESBUILD_VERSION``; ``wistro init`` of a template with
   TypeScript steps installs its ``package.json``);
2. a machine-wide one in wistro's cache, ``$WISTRO_CACHE_DIR/esbuild`` (default
   ``~/.cache/wistro/esbuild``), put there by ``npm install --prefix <cache> esbuild@...``.

Nothing is ever downloaded at first use: without either, the TypeScript steps fail to load with
one line naming what to run, and the JavaScript steps still run.

Compiled output is cached by source hash under ``<project>/.wistro/build/``
(``<stem>.<hash>.mjs``, the hash of esbuild's version, the file's path and its source:
``bundle_path``). ``$WISTRO_NODE`` names the ``node`` binary explicitly (default: ``node`` on PATH).

Started from the lock (``wistro start``, ``wistro worker``: ``bind`` without a source), esbuild is
never installed: the project's or the cache's is used when there is one; else every TypeScript
step must have its bundle built ahead by ``wistro build`` (docs/lock.md), which also writes
``.wistro/build/esbuild-prebuilt/``, a stand-in package that gives the worker the version the
bundles were built with (so it finds them) and refuses to compile. A TypeScript step without
either fails the start at once, with one line naming what to run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import ClassVar

from wistro.core.step import StepRecord
from wistro.errors import StepLoadError
from wistro.runtimes.base import StepSource
from wistro.runtimes.worker import WorkerRuntime, which

__all__ = [
    "ESBUILD_VERSION",
    "WORKER_JS",
    "NodeRuntime",
    "bundle_path",
    "ensure_esbuild",
    "esbuild_version",
    "install_hint",
    "prebuilt_esbuild",
    "write_prebuilt_esbuild",
]

WORKER_JS = Path(__file__).resolve().parent.parent / "sdk" / "js" / "worker.mjs"
ESBUILD_VERSION = "0.28.2"
_TS_SUFFIXES = (".ts", ".mts", ".cts")
PREBUILT_DIR = "esbuild-prebuilt"  # under <project>/.wistro/build/
INSTALL_HINT = (
    f"run `npm install --save-dev esbuild@{ESBUILD_VERSION}` in the project, then `wistro build`"
)


def cache_dir() -> Path:
    explicit = os.environ.get("WISTRO_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wistro"


def _has_esbuild(folder: Path) -> bool:
    return (folder / "package.json").is_file() and (folder / "lib" / "main.js").is_file()


def build_dir(root: Path) -> Path:
    return root / ".wistro" / "build"


def is_typescript(file: Path | str) -> bool:
    return str(file).endswith(_TS_SUFFIXES)


def esbuild_version(folder: Path) -> str:
    """The version in an esbuild package's ``package.json``."""
    return str(json.loads((folder / "package.json").read_text(encoding="utf-8"))["version"])


def bundle_path(root: Path, file: Path | str, version: str) -> Path:
    """Where the worker caches the compiled ``file`` (as ``compileTs`` in worker.mjs names it)."""
    h = hashlib.sha256()
    h.update(version.encode() + b"\0" + str(file).encode() + b"\0")
    h.update(Path(file).read_bytes())
    stem = re.sub(r"\.[cm]?ts$", "", Path(file).name)
    return build_dir(root) / f"{stem}.{h.hexdigest()[:16]}.mjs"


_PREBUILT_JS = """// Written by `wistro build`: the TypeScript steps were compiled ahead with esbuild %(v)s.
// The worker uses this stand-in when esbuild is not installed: it finds the prebuilt bundles
// by this version and refuses to compile anything else.
exports.version = %(vj)s;
exports.build = async () => {
  const e = new Error(
    "this TypeScript step has no prebuilt bundle and esbuild is not installed: " + %(hint)s,
  );
  e.name = "ToolchainError";
  throw e;
};
"""


def write_prebuilt_esbuild(root: Path, version: str) -> Path:
    """The stand-in esbuild package of prebuilt bundles (see the module docstring)."""
    folder = build_dir(root) / PREBUILT_DIR
    (folder / "lib").mkdir(parents=True, exist_ok=True)
    package = {"name": "esbuild", "version": version, "main": "lib/main.js", "private": True}
    (folder / "package.json").write_text(json.dumps(package, indent=2) + "\n", encoding="utf-8")
    js = _PREBUILT_JS % {"v": version, "vj": json.dumps(version), "hint": json.dumps(INSTALL_HINT)}
    (folder / "lib" / "main.js").write_text(js, encoding="utf-8")
    return folder


def prebuilt_esbuild(root: Path) -> Path | None:
    """The stand-in written by ``wistro build``, if any."""
    folder = build_dir(root) / PREBUILT_DIR
    return folder if _has_esbuild(folder) else None


def install_hint(root: Path) -> str:
    """What to run for esbuild in this project: ``npm install`` when its package.json names
    esbuild already, else the pinned ``npm install --save-dev``."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        package = json.loads((root / "package.json").read_text(encoding="utf-8"))
        if "esbuild" in {**package.get("dependencies", {}), **package.get("devDependencies", {})}:
            return "run `npm install` in the project (its package.json pins esbuild)"
    return f"run `npm install --save-dev esbuild@{ESBUILD_VERSION}` in the project"


def ensure_esbuild(root: Path) -> Path:
    """The folder of the esbuild package to compile TypeScript with: the project's own
    ``node_modules/esbuild``, else a machine-wide one in wistro's cache. Never installs
    anything (esbuild is a pinned npm dependency of the project); raises StepLoadError."""
    own = root / "node_modules" / "esbuild"
    if _has_esbuild(own):
        return own
    cached = cache_dir() / "esbuild" / "node_modules" / "esbuild"
    if _has_esbuild(cached):
        return cached
    raise StepLoadError(
        "TypeScript steps need esbuild, which is not installed in the project",
        hint=install_hint(root),
    )


class NodeRuntime(WorkerRuntime):
    """``.step.js`` / ``.step.mjs`` (language ``javascript``) and ``.step.ts`` (``typescript``)
    in one Node.js worker."""

    language = "javascript"
    languages: ClassVar[tuple[str, ...]] = ("javascript", "typescript")
    suffixes = (".js", ".mjs", ".ts")
    config_key: ClassVar[str] = "node"
    toolchain: ClassVar[str] = "`node` (Node.js >= 18)"
    install_hint: ClassVar[str] = (
        "install Node.js from https://nodejs.org or your package manager, "
        "or set WISTRO_NODE to the node binary"
    )

    def __init__(self) -> None:
        super().__init__()
        self._esbuild: Path | None = None

    def command(self, root: Path) -> list[str] | None:
        node = which("node", "WISTRO_NODE")
        if node is None:
            return None
        return [node, "--enable-source-maps", str(WORKER_JS)]

    def bind(self, record: StepRecord, source: StepSource | None, src: Path | None = None) -> None:
        if source is None and record.type != "noop" and is_typescript(record.file):
            self._from_lock(record)
        super().bind(record, source, src)

    def _from_lock(self, record: StepRecord) -> None:
        """A TypeScript step started from the lock: esbuild installed, or its bundle prebuilt.
        Never installs anything; raises StepLoadError (one line) when neither."""
        n = len(Path(record.rel_file).parts)
        root = Path(*record.file.parts[: len(record.file.parts) - n])
        if self._esbuild is None:
            try:
                self._esbuild = ensure_esbuild(root)
                return
            except StepLoadError:
                self._esbuild = prebuilt_esbuild(root)
        elif self._esbuild != prebuilt_esbuild(root):
            return  # a real esbuild: it compiles what is not built yet
        if self._esbuild is not None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                if bundle_path(root, record.file, esbuild_version(self._esbuild)).is_file():
                    return
        raise StepLoadError(
            "this TypeScript step has no prebuilt bundle (`wistro build`) and esbuild is "
            "not installed",
            file=record.rel_file,
            step=record.name,
            hint=install_hint(root) + ", then `wistro build`",
        )

    def language_of(self, file: Path) -> str:
        return "typescript" if file.name.endswith(_TS_SUFFIXES) else "javascript"

    def prepare(self, root: Path, files: list[Path]) -> None:
        if self._esbuild is None and any(f.name.endswith(_TS_SUFFIXES) for f in files):
            self._esbuild = ensure_esbuild(root)

    def read(
        self, files: list[Path], root: Path, src: Path | None = None
    ) -> list[StepSource | StepLoadError]:
        ts = [f for f in files if f.name.endswith(_TS_SUFFIXES)]
        if ts and self._esbuild is None and self.command(root) is not None:
            try:
                self._esbuild = ensure_esbuild(root)
            except StepLoadError as e:  # only the TypeScript steps fail; JavaScript still loads
                errors: list[StepSource | StepLoadError] = [
                    StepLoadError(e.message, file=f, hint=e.hint) for f in ts
                ]
                return errors + super().read([f for f in files if f not in ts], root, src)
        return super().read(files, root, src)

    def env(self, root: Path) -> dict[str, str]:
        env = {
            "WISTRO_BUILD_DIR": str(root / ".wistro" / "build"),
            "WISTRO_LANGUAGE": "javascript",
        }
        if self._esbuild is not None:
            env["WISTRO_ESBUILD"] = str(self._esbuild)
        return env

    def toolchain_error(self, files: list[Path]) -> list[StepLoadError]:
        names = ", ".join(f.name for f in files)
        return [
            StepLoadError(
                f"this {self.language_of(f)} step needs {self.toolchain}, which is not on PATH "
                f"(JavaScript/TypeScript steps that need it: {names}); Python steps still run",
                file=f,
                hint=self.install_hint,
            )
            for f in files
        ]
