"""Python steps: loaded in-process, by path, as modules of a per-project synthetic package.

``src/checkout/charge_card.step.py`` becomes ``_wistro_<id>.checkout.charge_card_step``, so
relative imports (``from .helpers import x``) work. For sibling imports (``import helpers``) the
step's folder and the step root are on ``sys.path`` only while step files execute; modules imported
from inside the project are dropped from ``sys.modules`` afterwards, so two projects with a
``helpers.py`` each never see each other's.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wistro.core.step import StepRecord, is_model
from wistro.errors import StepLoadError
from wistro.runtimes.base import LanguageRuntime, StepSource
from wistro.runtimes.pycompile import Compiled, precompiler
from wistro.threads import HANDLERS

if TYPE_CHECKING:
    from wistro.runtimes.python_process import PythonProcessRuntime

_CONFIG_LINE = re.compile(r"^config\s*(?::[^=]*)?=", re.MULTILINE)


def config_line(source: bytes) -> int | None:
    """The line where ``config`` is assigned, from the file's bytes."""
    text = source.decode("utf-8", errors="replace")
    m = _CONFIG_LINE.search(text)
    return text.count("\n", 0, m.start()) + 1 if m else None


@dataclass
class PythonSource(StepSource):
    """A Python step file read once: its module, and the hash of the bytes it was compiled from
    (discovery records it instead of reading the file again)."""

    hash: str | None = None


class _StepLoader(importlib.machinery.SourceFileLoader):
    """The standard source loader (bytecode cache in ``__pycache__`` included), given the bytes
    already read for the step's hash and config line, so the file is read once."""

    def __init__(
        self, fullname: str, path: str, source: bytes | None, write_bytecode: bool = True
    ) -> None:
        super().__init__(fullname, path)
        self._source: bytes | None = source
        self._write_bytecode = write_bytecode

    def set_data(self, path: str, data: Any, *, _mode: int = 0o666) -> None:
        if self._write_bytecode:  # off when the compile helper writes this file's bytecode
            super().set_data(path, data, _mode=_mode)

    def get_data(self, path: str) -> bytes:
        if self._source is not None and path == self.path:
            return self._source
        return super().get_data(path)

    def release(self) -> None:
        """Forget the bytes (later reads, e.g. ``inspect.getsource``, go to the file)."""
        self._source = None


def _ident(part: str) -> str:
    cleaned = re.sub(r"\W", "_", part)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"_{cleaned}"


def _error_line(exc: BaseException, file: Path) -> int | None:
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename) == file:
        return exc.lineno
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if Path(frame.f_code.co_filename) == file:
            line = lineno
    return line


class PythonRuntime(LanguageRuntime):
    language = "python"
    suffixes = (".py",)

    def __init__(self) -> None:
        self._packages: dict[Path, str] = {}
        self._chains: dict[tuple[str, Path], list[tuple[str, Path]]] = {}  # folder: packages
        self._process: PythonProcessRuntime | None = None  # ``runtime: process`` steps

    # ------------------------------------------------------------ runtime: process
    @property
    def process(self) -> PythonProcessRuntime:
        """The runtime of this project's ``runtime: process`` steps (their worker pool)."""
        if self._process is None:
            from wistro.runtimes.python_process import PythonProcessRuntime

            self._process = PythonProcessRuntime()
        return self._process

    def _in_process(self, record: StepRecord) -> bool:
        if record.runtime == "inline":
            return True
        if record.runtime is None:
            from wistro.runtimes.worker.runtime import _root_of

            if self.process.default_mode(_root_of(record)) != "process":
                return True
        return False

    def configure(self, pool: Any) -> None:
        """``runtimes.python`` of wistro.yml: the pool of the ``runtime: process`` steps."""
        self.process.configure(pool)

    def discard(self) -> None:
        if self._process is not None:
            self._process.discard()

    async def aclose(self) -> None:
        if self._process is not None:
            await self._process.aclose()

    # ------------------------------------------------------------ module naming
    def _root_package(self, src: Path) -> str:
        name = self._packages.get(src)
        if name is None:
            digest = hashlib.sha1(str(src).encode()).hexdigest()[:10]
            name = self._packages[src] = f"_wistro_{digest}"
        return name

    def _ensure_package(self, name: str, folder: Path) -> None:
        if name in sys.modules:
            return
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        module = importlib.util.module_from_spec(spec)
        module.__path__ = [str(folder)]
        sys.modules[name] = module

    def module_name(self, file: Path, src: Path) -> str:
        key = (os.path.dirname(file), src)
        chain = self._chains.get(key)
        if chain is None:
            parts = file.relative_to(src).parts[:-1]
            package = self._root_package(src)
            chain = [(package, src)]
            here = src
            for part in parts:
                here = here / part
                package = f"{package}.{_ident(part)}"
                chain.append((package, here))
            self._chains[key] = chain
        for package, where in chain:  # cheap when they exist; a test may have dropped them
            if package not in sys.modules:
                self._ensure_package(package, where)
        return f"{chain[-1][0]}.{_ident(file.name.removesuffix('.py'))}"

    # ------------------------------------------------------------ loading
    @contextmanager
    def _project_imports(self, root: Path, src: Path) -> Iterator[None]:
        before = set(sys.modules)
        saved_path = list(sys.path)
        sys.path[:0] = [str(src)]
        try:
            yield
        finally:
            sys.path[:] = saved_path
            root_str = str(root)
            for name in set(sys.modules) - before:
                mod = sys.modules.get(name)
                if name.startswith("_wistro_"):
                    continue
                mod_file = getattr(mod, "__file__", None) or ""
                if mod_file.startswith(root_str):
                    del sys.modules[name]

    def _exec(
        self, file: Path, src: Path, source: bytes | Compiled, write_bytecode: bool = True
    ) -> types.ModuleType:
        """Import ``file`` as the module ``module_name(file, src)``, from its bytes (compiled
        here, or its bytecode read from ``__pycache__``) or from what the helper compiled."""
        name = self.module_name(file, src)
        path = str(file)
        loader = _StepLoader(
            name, path, source if isinstance(source, bytes) else None, write_bytecode
        )
        spec = importlib.util.spec_from_file_location(name, path, loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        folder = str(file.parent)
        sys.path.insert(0, folder)
        try:
            if isinstance(source, Compiled):
                exec(source.code, module.__dict__)
            else:
                loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            loader.release()
            sys.path.remove(folder)
        return module

    def _load(
        self, file: Path, src: Path, compiled: Compiled | None = None, helped: bool = False
    ) -> StepSource:
        """``helped``: a compile helper runs for this file (it writes its bytecode cache)."""
        source: bytes | Compiled
        if compiled is not None:
            source = compiled
        else:
            try:
                source = file.read_bytes()
            except OSError as e:  # as importing it would have said
                raise StepLoadError(
                    f"importing the step failed: {type(e).__name__}: {e}", file=file
                ) from e
        try:
            module = self._exec(file, src, source, write_bytecode=not helped)
        except SyntaxError as e:
            raise StepLoadError(
                f"syntax error: {e.msg}", file=file, line=_error_line(e, file)
            ) from None
        except Exception as e:
            raise StepLoadError(
                f"importing the step failed: {type(e).__name__}: {e}",
                file=file,
                line=_error_line(e, file),
            ) from e
        if not hasattr(module, "config"):
            raise StepLoadError(
                "no `config` defined",
                file=file,
                hint='a step file must define `config = {"type": ..., "name": ...}`',
            )
        if isinstance(source, Compiled):
            line, digest = source.line, source.hash
        else:
            line, digest = config_line(source), hashlib.sha256(source).hexdigest()
        return PythonSource(file=file, config=module.config, line=line, handle=module, hash=digest)

    def read(
        self, files: list[Path], root: Path, src: Path | None = None
    ) -> list[StepSource | StepLoadError]:
        src = src or root
        out: list[StepSource | StepLoadError] = []
        helper = precompiler(files, _CONFIG_LINE.pattern)  # many files: compiled on another core
        try:
            with self._project_imports(root, src):
                for file in files:
                    try:
                        compiled = helper.take() if helper else None
                        out.append(
                            self._load(file, src, compiled, helped=bool(helper and helper.alive))
                        )
                    except StepLoadError as e:
                        out.append(e)
        finally:
            if helper is not None:
                helper.close()
        return out

    # ------------------------------------------------------------ running
    def bind(self, record: StepRecord, source: StepSource | None, src: Path | None = None) -> None:
        if record.type == "noop":
            return
        if not self._in_process(record):  # runtime: process (the step's, or the project's)
            self.process.bind(record, source, src)
            return
        if source is not None:
            self._bind_module(record, source.handle)
            return
        runtime = self
        step_src = src or record.file.parent

        def load() -> None:
            """Import the step's code now (first delivery, or an api/cron step at start)."""
            if record.invoke is not load_then_invoke:
                return
            with runtime._project_imports(step_src, step_src):
                loaded = runtime._load(record.file, step_src)
            config = getattr(loaded.handle, "config", {})
            runtime._bind_module(record, loaded.handle)
            for key, attr in (
                ("input", "input_model"),
                ("body", "body_model"),
                ("query", "query_model"),
            ):
                if is_model(config.get(key)):
                    setattr(record, attr, config[key])
            record.load = None  # imported: nothing is left to load

        async def load_then_invoke(data: Any, ctx: Any) -> Any:
            # First delivery of a step started from the lock: import it now, then run it.
            if record.invoke is load_then_invoke:
                load()
                if record.input_model is not None and record.type == "event":
                    data = record.input_model.model_validate(data)
            assert record.invoke is not None
            return await record.invoke(data, ctx)

        record.invoke = load_then_invoke
        record.load = load

    def _bind_module(self, record: StepRecord, module: types.ModuleType) -> None:
        handler = getattr(module, "handler", None)
        if not callable(handler):
            raise StepLoadError(
                "no `handler` function",
                file=record.file,
                step=record.name,
                hint="define `async def handler(input, ctx)`",
            )
        record.invoke = adapt_handler(handler, record)


def _positional_params(handler: Any) -> int:
    """How many positional parameters ``handler`` takes (2 when that cannot be told)."""
    if (
        type(handler) is types.FunctionType
        and "__wrapped__" not in handler.__dict__
        and "__signature__" not in handler.__dict__
    ):  # a plain function: its code says it (what inspect.signature computes, 100x faster)
        return handler.__code__.co_argcount
    try:
        return len(
            [
                p
                for p in inspect.signature(handler).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        )
    except (TypeError, ValueError):
        return 2


def adapt_handler(handler: Any, record: StepRecord) -> Any:
    """Turn a user handler into ``async invoke(data, ctx)``. Plain ``def`` handlers run on
    Wistro's handler threads (``wistro.threads``), so a slow one never blocks the event loop (or
    the Jupyter kernel), and never takes a thread that the engine's own I/O needs."""
    n_params = _positional_params(handler)
    if n_params > 2 or n_params == 0:
        raise StepLoadError(
            f"handler takes {n_params} arguments; expected (input, ctx)"
            + (" or (ctx) for a cron step" if record.type == "cron" else ""),
            file=record.file,
            step=record.name,
        )
    is_async = inspect.iscoroutinefunction(handler)
    if n_params == 2 and is_async:
        return handler
    if n_params == 1 and is_async:

        async def ctx_only(data: Any, ctx: Any) -> Any:
            return await handler(ctx)

        return ctx_only

    args = (lambda data, ctx: (data, ctx)) if n_params == 2 else (lambda data, ctx: (ctx,))

    run = HANDLERS.run

    async def in_thread(data: Any, ctx: Any) -> Any:
        return await run(handler, *args(data, ctx))

    return in_thread
