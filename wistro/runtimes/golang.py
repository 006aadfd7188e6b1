"""Go steps (``*.step.go``): all Go step files of a project compiled into one worker binary.

The worker speaks ``docs/worker-protocol.md``; its SDK (``wistro.dev/sdk/wistro``) ships inside
this package, in ``wistro/sdk/go``, so building needs the Go toolchain but never the network.

Build layout: a generated module (``go.mod`` with a ``replace`` of the SDK to that folder), each
step file copied into a package of its own (``steps/s<i>_<name>``; its package clause renamed in
place) together with the non-step ``.go`` files of its folder and the ``wistro_types.go`` (see
``wistro types``) nearest to it, in its folder or the folders above it up to the project root.
A ``//line`` directive on top of each copy makes compiler errors, ``runtime.Caller`` and panic
stacks name the original file and line. ``main.go`` imports every step package and calls ``wistro.Main()``.

The binary is cached by a hash of the sources (paths and contents) and the SDK under
``.wistro/build/go/<hash>/worker``; ``go build`` runs with ``GOFLAGS=-mod=mod GOPROXY=off
GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0`` and ``GOCACHE`` under the user cache
(``$WISTRO_GOCACHE``, else ``$XDG_CACHE_HOME/wistro/go-build``). Once built, running (also
``wistro start`` from the lock) needs no Go toolchain; ``wistro build`` builds it ahead
(``wistro.runtimes.build``). Each build is logged (``wistro.build``, with its time).
``$WISTRO_GO`` names the ``go`` binary.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar

from wistro.core.step import StepRecord
from wistro.errors import GoBuildError, StepLoadError
from wistro.runtimes.base import StepSource
from wistro.runtimes.worker import WorkerRuntime, configs_from_lock, which

SDK_DIR = Path(__file__).resolve().parent.parent / "sdk" / "go"
SDK_MODULE = "wistro.dev/sdk"
TYPES_FILE = "wistro_types.go"
BUILD_TIMEOUT_S = 600.0
KEEP_BUILDS = 3
_PACKAGE = re.compile(r"^package[ \t]+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
_GO_ERROR = re.compile(r"^(?P<file>[^\s:][^:\n]*\.go):(?P<line>\d+)(?::\d+)?: (?P<msg>.+)$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_SKIP_PARTS = frozenset({"node_modules", ".wistro", ".git", "vendor"})
logger = logging.getLogger("wistro.build")


@functools.cache
def sdk_digest() -> str:
    """Hash of the SDK sources: a new SDK means a new worker binary."""
    h = hashlib.sha256()
    for path in sorted(SDK_DIR.rglob("*")):
        if path.is_file() and (
            (path.suffix == ".go" and not path.name.endswith("_test.go")) or path.name == "go.mod"
        ):
            h.update(path.relative_to(SDK_DIR).as_posix().encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def go_cache_dir() -> Path:
    explicit = os.environ.get("WISTRO_GOCACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wistro" / "go-build"


def build_env(gocache: Path | None = None) -> dict[str, str]:
    """The environment of ``go build``/``go vet``: offline, no workspace, no toolchain switch."""
    env = dict(os.environ)
    env.update(
        GOFLAGS="-mod=mod -buildvcs=false",
        GOPROXY="off",
        GOWORK="off",
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
        GOCACHE=str(gocache or go_cache_dir()),
    )
    return env


def module_files(module: str, sdk: Path = SDK_DIR) -> str:
    """The ``go.mod`` of a generated module that uses the bundled SDK."""
    path = sdk.as_posix()
    if not re.fullmatch(r"[A-Za-z0-9_./+~-]+", path):  # spaces and such: a quoted string
        path = json.dumps(path)
    return (
        f"module {module}\n\ngo 1.21\n\nrequire {SDK_MODULE} v0.0.0\n\n"
        f"replace {SDK_MODULE} => {path}\n"
    )


def _ident(text: str) -> str:
    cleaned = re.sub(r"[^0-9A-Za-z_]", "_", text).lower().strip("_")
    return cleaned or "step"


class GoRuntime(WorkerRuntime):
    """``.step.go`` files: one compiled worker per project, started on demand."""

    language = "go"
    suffixes = (".go",)
    config_key: ClassVar[str] = "go"
    languages: ClassVar[tuple[str, ...]] = ("go",)
    toolchain: ClassVar[str] = "the Go toolchain (`go`)"
    install_hint: ClassVar[str] = (
        "install Go >= 1.21 (https://go.dev/dl/) or set WISTRO_GO to the go binary"
    )

    def __init__(self) -> None:
        super().__init__()
        self.builds = 0  # `go build` runs by this runtime (tests check the cache with it)
        self._files: dict[Path, list[Path]] = {}  # root -> the Go step files the worker holds
        self._build_lock = threading.Lock()

    # ------------------------------------------------------------ sources and the cache key
    def go(self) -> str | None:
        return which("go", "WISTRO_GO")

    def scan(self, root: Path) -> list[Path]:
        return sorted(
            p.resolve()
            for p in root.rglob("*.step.go")
            if p.is_file()
            and not _SKIP_PARTS.intersection(p.relative_to(root).parts)
            and not p.name.startswith(".")
        )

    def files_of(self, root: Path) -> list[Path]:
        files = self._files.get(root)
        return files if files is not None else self.scan(root)

    @staticmethod
    def companions(file: Path, root: Path) -> list[Path]:
        """Non-step ``.go`` files compiled with a step: its folder's, and the ``wistro_types.go``
        nearest to it, from its folder up to the project root (``wistro types`` writes one into
        every folder of Go steps; an older one further up is shadowed, never compiled twice)."""
        out = [
            p
            for p in file.parent.glob("*.go")
            if not p.name.endswith((".step.go", "_test.go"))
            and not p.name.startswith((".", "_"))
            and p.name != TYPES_FILE
            and p.is_file()
        ]
        folder = file.parent
        while True:
            types = folder / TYPES_FILE
            if types.is_file():
                out.append(types)
                break
            if folder == root or folder.parent == folder or root not in folder.parents:
                break
            folder = folder.parent
        return sorted(out)

    def build_key(self, root: Path, files: list[Path]) -> str:
        h = hashlib.sha256(sdk_digest().encode())
        for file in sorted(files):
            for part in (file, *self.companions(file, root)):
                h.update(str(part).encode() + b"\0")
                with contextlib.suppress(OSError):
                    h.update(part.read_bytes())
                h.update(b"\0")
        return h.hexdigest()

    def build_dir(self, root: Path) -> Path:
        return root / ".wistro" / "build" / "go"

    def binary_path(self, root: Path, files: list[Path]) -> Path:
        return self.build_dir(root) / self.build_key(root, files) / "worker"

    # ------------------------------------------------------------ WorkerRuntime hooks
    def command(self, root: Path) -> list[str] | None:
        binary = self.binary_path(root, self.files_of(root))
        if binary.is_file() or self.go() is not None:
            return [str(binary)]  # built by prepare() when missing
        return None

    def prepare(self, root: Path, files: list[Path]) -> None:
        known = self._files.get(root)
        self.build(root, known if known is not None else [f.resolve() for f in files])

    def toolchain_error(self, files: list[Path]) -> list[StepLoadError]:
        names = ", ".join(self._rel(f) for f in files)
        return [
            StepLoadError(
                f"Go step needs {self.toolchain}, which is not on PATH (Go step files: {names}); "
                "Python steps still run",
                file=f,
                hint=self.install_hint,
            )
            for f in files
        ]

    def bind(self, record: StepRecord, source: StepSource | None, src: Path | None = None) -> None:
        # Started from the lock, the worker holds exactly the lock's Go steps (no scan).
        n = len(Path(record.rel_file).parts)
        root = Path(*record.file.parts[: len(record.file.parts) - n])
        files = self._files.setdefault(root, [])
        file = record.file.resolve()
        if file not in files:
            files.append(file)
        super().bind(record, source, src)

    def bound_from_lock(self) -> None:
        """The lock's Go worker must be built (``wistro build``) or buildable (``go`` on PATH):
        without either, the start fails here with one line, not at the first delivery. Built at
        first delivery, the wait is logged ahead as a warning."""
        for root, files in self._files.items():
            if not files or self.binary_path(root, files).is_file():
                continue
            rel = files[0].relative_to(root).as_posix() if root in files[0].parents else files[0]
            n = len(files)
            what = f"the Go worker of the lock's {n} Go step file{'s' if n != 1 else ''}"
            if self.go() is None:
                raise StepLoadError(
                    f"{what} is not built (`wistro build`) and {self.toolchain} is not on PATH",
                    file=rel,
                    hint="run `wistro build` (or `wistro start --build`) where Go is installed",
                )
            logger.warning(
                "%s is not built: `go build` runs at the first Go delivery "
                "(run `wistro build` ahead, or `wistro start --build`)",
                what,
            )

    def _rel(self, file: Path) -> str:
        if self.root is not None:
            with contextlib.suppress(ValueError):
                return file.resolve().relative_to(self.root.resolve()).as_posix()
        return str(file)

    # ------------------------------------------------------------ reading configs
    def read(
        self, files: list[Path], root: Path, src: Path | None = None
    ) -> list[StepSource | StepLoadError]:
        """Configs of files unchanged since the lock come from the lock (no toolchain needed; the
        worker is built on first delivery). Otherwise build the worker (leaving out files that
        do not compile), then ``load`` the configs from it."""
        self.root = root
        if not files:
            return []
        good = sorted(f.resolve() for f in files)
        by_resolved = {f.resolve(): f for f in files}
        locked = configs_from_lock(root, files)
        if len(locked) == len(files):
            self._files[root] = good
            return list(locked.values())
        errors: list[StepSource | StepLoadError] = []
        if not self.binary_path(root, good).is_file() and self.go() is None:
            self._files[root] = sorted(f.resolve() for f in locked)
            rest = [f for f in files if f not in locked]
            return [*locked.values(), *self.toolchain_error(rest)]
        for _ in range(4):
            self._files[root] = good
            try:
                self.build(root, good)
                break
            except GoBuildError as e:
                bad = [f for f in good if f in e.by_file]
                if not bad:
                    errors.extend(
                        StepLoadError(f"building the Go worker failed: {e.message}", file=f)
                        for f in good
                    )
                    good = []
                    break
                for f in bad:
                    line, msg = e.by_file[f][0]
                    more = len(e.by_file[f]) - 1
                    errors.append(
                        StepLoadError(
                            f"compile error: {msg}" + (f" (and {more} more)" if more else ""),
                            file=by_resolved.get(f, f),
                            line=line,
                        )
                    )
                good = [f for f in good if f not in e.by_file]
            except StepLoadError as e:
                errors.extend(
                    StepLoadError(e.message, file=by_resolved.get(f, f), line=e.line, hint=e.hint)
                    for f in good
                )
                good = []
                break
            if not good:
                break
        else:
            good = []
        self._files[root] = good
        if not good:
            return errors
        loaded = super().read([by_resolved.get(f, f) for f in good], root, src)
        return errors + loaded

    # ------------------------------------------------------------ building
    def build(self, root: Path, files: list[Path]) -> Path:
        """The worker binary for these step files, built unless cached. Raises GoBuildError
        (compiler errors by file) or StepLoadError (no toolchain, ...)."""
        binary = self.binary_path(root, files)
        if binary.is_file():
            return binary
        with self._build_lock:
            if binary.is_file():
                return binary
            go = self.go()
            if go is None:
                raise StepLoadError(
                    f"building the Go worker needs {self.toolchain}, which is not on PATH",
                    hint=self.install_hint,
                )
            out_dir = binary.parent
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name[:16]}-", dir=out_dir.parent))
            try:
                origins = self._write_module(tmp / "src", root, files)
                gocache = go_cache_dir()
                gocache.mkdir(parents=True, exist_ok=True)
                started = time.perf_counter()
                try:
                    proc = subprocess.run(
                        [go, "build", "-o", str(tmp / "worker"), "."],
                        cwd=tmp / "src",
                        env=build_env(gocache),
                        capture_output=True,
                        text=True,
                        timeout=BUILD_TIMEOUT_S,
                    )
                except subprocess.TimeoutExpired:
                    raise StepLoadError(
                        f"`go build` of the Go worker took longer than {BUILD_TIMEOUT_S:g}s"
                    ) from None
                except OSError as e:
                    raise StepLoadError(f"cannot run `go build`: {e}") from None
                self.builds += 1
                if proc.returncode != 0:
                    raise self._build_error(proc.stderr + proc.stdout, tmp / "src", origins)
                logger.info(
                    "built the Go worker (%d step files) in %.2fs: %s",
                    len(files),
                    time.perf_counter() - started,
                    out_dir.name[:12],
                )
                try:
                    tmp.rename(out_dir)
                except OSError:  # built meanwhile by another process: keep theirs
                    if not binary.is_file():
                        raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            self._prune(out_dir.parent, keep=out_dir)
            return binary

    def _write_module(self, mod: Path, root: Path, files: list[Path]) -> dict[Path, list[Path]]:
        """Write the worker's module; returns original file -> the step files it belongs to."""
        steps = mod / "steps"
        steps.mkdir(parents=True)
        (mod / "go.mod").write_text(module_files("wistroworker"), encoding="utf-8")
        origins: dict[Path, list[Path]] = {}
        imports = []
        for i, file in enumerate(sorted(files)):
            package = f"s{i}_{_ident(file.name.removesuffix('.step.go'))}"
            folder = steps / package
            folder.mkdir()
            self._copy(file, folder / "wistro_step.go", package)
            origins.setdefault(file, []).append(file)
            for j, extra in enumerate(self.companions(file, root)):
                self._copy(extra, folder / f"x{j}_{_ident(extra.stem)}.go", package)
                origins.setdefault(extra, []).append(file)
            imports.append(f'\t_ "wistroworker/steps/{package}"\n')
        (mod / "main.go").write_text(
            "// Code generated by wistro; DO NOT EDIT.\n\npackage main\n\nimport (\n"
            + "".join(imports)
            + '\n\t"wistro.dev/sdk/wistro"\n)\n\nfunc main() { wistro.Main() }\n',
            encoding="utf-8",
        )
        return origins

    @staticmethod
    def _copy(src: Path, dst: Path, package: str) -> None:
        text = src.read_text(encoding="utf-8", errors="replace")
        text = _PACKAGE.sub(f"package {package}", text, count=1)
        dst.write_text(f"//line {src}:1\n{text}", encoding="utf-8")

    def _build_error(self, output: str, cwd: Path, origins: dict[Path, list[Path]]) -> GoBuildError:
        by_file: dict[Path, list[tuple[int | None, str]]] = {}
        first = ""
        for raw in output.splitlines():
            m = _GO_ERROR.match(raw.strip())
            if not m:
                continue
            path = Path(m["file"])
            path = (cwd / path).resolve() if not path.is_absolute() else path.resolve()
            msg = m["msg"].strip()
            first = first or f"{path}:{m['line']}: {msg}"
            for step_file in origins.get(path, []):
                where = int(m["line"]) if path == step_file else None
                text = msg if path == step_file else f"{path.name}:{m['line']}: {msg}"
                by_file.setdefault(step_file, []).append((where, text))
        lines = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith("#")]
        summary = first or (lines[0] if lines else "`go build` failed")
        for errs in by_file.values():  # an error in the step file itself comes first
            errs.sort(key=lambda e: e[0] is None)
        return GoBuildError(summary, by_file, output)

    @staticmethod
    def _prune(folder: Path, keep: Path) -> None:
        """Keep the newest few builds."""
        builds = [p for p in folder.iterdir() if p.is_dir() and _HEX.match(p.name) and p != keep]
        builds.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for old in builds[KEEP_BUILDS - 1 :]:
            shutil.rmtree(old, ignore_errors=True)
        now = time.time()
        for stale in folder.glob(".*-*"):  # temp dirs of builds that died
            with contextlib.suppress(OSError):
                if now - stale.stat().st_mtime > BUILD_TIMEOUT_S:
                    shutil.rmtree(stale, ignore_errors=True)
