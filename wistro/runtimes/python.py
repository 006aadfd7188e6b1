"""Python steps: loaded in-process, by path, as modules of a per-project synthetic package.

``src/checkout/charge_card.step.py`` becomes ``_wistro_<id>.checkout.charge_card_step``, so
relative imports (``from .helpers import x``) work. For sibling imports (``import helpers``) the
step's folder and the step root are on ``sys.path`` only while step files execute; modules imported
from inside the project are dropped from ``sys.modules`` afterwards, so two projects with a
``helpers.py`` each never see each other's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import sys
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wistro.core.step import StepRecord, is_model
from wistro.errors import StepLoadError
from wistro.runtimes.base import LanguageRuntime, StepSource
from wistro.threads import HANDLERS

_CONFIG_LINE = re.compile(r"^config\s*(?::[^=]*)?=", re.MULTILINE)


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
        parts = file.relative_to(src).parts
        package = self._root_package(src)
        self._ensure_package(package, src)
        folder = src
        for part in parts[:-1]:
            folder = folder / part
            package = f"{package}.{_ident(part)}"
            self._ensure_package(package, folder)
        return f"{package}.{_ident(parts[-1].removesuffix('.py'))}"

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

    def _exec(self, file: Path, src: Path) -> types.ModuleType:
        name = self.module_name(file, src)
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(file.parent))
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            sys.path.remove(str(file.parent))
        return module

    def _load(self, file: Path, src: Path) -> StepSource:
        try:
            module = self._exec(file, src)
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
        text = file.read_text(encoding="utf-8", errors="replace")
        m = _CONFIG_LINE.search(text)
        line = text.count("\n", 0, m.start()) + 1 if m else None
        return StepSource(file=file, config=module.config, line=line, handle=module)

    def read(
        self, files: list[Path], root: Path, src: Path | None = None
    ) -> list[StepSource | StepLoadError]:
        src = src or root
        out: list[StepSource | StepLoadError] = []
        with self._project_imports(root, src):
            for file in files:
                try:
                    out.append(self._load(file, src))
                except StepLoadError as e:
                    out.append(e)
        return out

    # ------------------------------------------------------------ running
    def bind(self, record: StepRecord, source: StepSource | None, src: Path | None = None) -> None:
        if record.type == "noop":
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


def adapt_handler(handler: Any, record: StepRecord) -> Any:
    """Turn a user handler into ``async invoke(data, ctx)``. Plain ``def`` handlers run on
    Wistro's handler threads (``wistro.threads``), so a slow one never blocks the event loop (or
    the Jupyter kernel), and never takes a thread that the engine's own I/O needs."""
    try:
        n_params = len(
            [
                p
                for p in inspect.signature(handler).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        )
    except (TypeError, ValueError):
        n_params = 2
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
