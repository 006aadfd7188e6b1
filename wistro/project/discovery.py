"""Find step files, read their configs through the language runtimes, build step records."""

from __future__ import annotations

import ast
import contextlib
import gc
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from wistro.core.step import StepConfig, StepRecord, record_from_config
from wistro.errors import DuplicateStepError, StepLoadError, WistroError
from wistro.project.paths import Project
from wistro.runtimes import LanguageRuntime, StepSource


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def step_suffix(path: Path) -> str:
    """``charge.step.py`` -> ``.py``; ``notify.step.mjs`` -> ``.mjs``."""
    return "." + path.name.rsplit(".step.", 1)[-1]


@dataclass
class Discovery:
    records: list[StepRecord] = field(default_factory=list)
    errors: list[WistroError] = field(default_factory=list)


def _key_line(file: Path, loc: tuple[Any, ...]) -> int | None:
    """Line of the key ``loc[0]`` inside the ``config = {...}`` literal, when it is one."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except (SyntaxError, OSError, UnicodeDecodeError):
        return None
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == "config" for t in targets):
            value = getattr(node, "value", None)
            if isinstance(value, ast.Dict) and loc:
                for key in value.keys:
                    if isinstance(key, ast.Constant) and key.value == loc[0]:
                        return key.lineno
            return node.lineno
    return None


def validate_config(source: StepSource, root: Path, language: str, hash: str) -> StepRecord:
    raw = source.config
    if not isinstance(raw, dict):
        raise StepLoadError(
            f"`config` must be a dict, got {type(raw).__name__}", file=source.file, line=source.line
        )
    try:
        cfg = StepConfig.model_validate(raw)
    except PydanticValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        field_path = ".".join(map(str, loc)) or None
        problem = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        problem = problem.removeprefix("Value error, ")
        line = (_key_line(source.file, loc) if source.file.suffix == ".py" else None) or source.line
        name = raw.get("name") if isinstance(raw.get("name"), str) else None
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise StepLoadError(
            f"invalid config: {problem}{more}",
            file=source.file,
            line=line,
            step=name,
            field=field_path,
        ) from None
    try:
        return record_from_config(cfg, source.file, root, language, hash, source.line)
    except StepLoadError as e:
        if e.field and source.file.suffix == ".py":
            e.line = _key_line(source.file, (e.field,)) or e.line
            e.args = (e.format(),)
        raise


@contextlib.contextmanager
def _young_collections_only() -> Iterator[None]:
    """Loading step files makes many objects that live as long as the project (modules, model
    classes, schemas) and little garbage. The collector's older generations would walk that
    growing heap again and again (each time it grows by a quarter); during the load only the
    youngest generation is collected, and at its end what survived joins the oldest
    generation without being walked again (``gc.freeze`` + ``gc.unfreeze``), where the next
    full collection finds any garbage in it as usual."""
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], 1 << 30, thresholds[2])
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:  # never unfreeze what someone else froze
            gc.freeze()
            gc.unfreeze()
        gc.set_threshold(*thresholds)


def discover(project: Project, runtimes: list[LanguageRuntime]) -> Discovery:
    """Load every step file. A broken file becomes an error in the result; the rest load."""
    with _young_collections_only():
        return _discover(project, runtimes)


def _discover(project: Project, runtimes: list[LanguageRuntime]) -> Discovery:
    result = Discovery()
    by_suffix = {s: rt for rt in runtimes for s in rt.suffixes}
    groups: dict[LanguageRuntime, list[Path]] = {}
    for path in project.step_files():
        runtime = by_suffix.get(step_suffix(path))
        if runtime is None:
            known = ", ".join(sorted(by_suffix))
            result.errors.append(
                StepLoadError(
                    f"no language runtime for {step_suffix(path)!r} step files (known: {known})",
                    file=path.relative_to(project.root),
                )
            )
            continue
        groups.setdefault(runtime, []).append(path)

    seen: dict[str, StepRecord] = {}
    src = project.src
    for runtime, files in groups.items():
        for item in runtime.read(files, project.root, src):
            if isinstance(item, StepLoadError):
                result.errors.append(_relative(item, project.root))
                continue
            try:
                # a runtime that read the file's bytes hashed them (PythonSource.hash)
                digest = getattr(item, "hash", None) or file_hash(item.file)
                record = validate_config(item, project.root, runtime.language, digest)
                if record.name in seen:
                    first = seen[record.name]
                    raise DuplicateStepError(
                        f"step name {record.name!r} is already used by "
                        f"{first.rel_file}:{first.line}",
                        file=item.file,
                        line=item.line,
                        step=record.name,
                        hint="step names must be unique in the project",
                    )
                runtime.bind(record, item, src)
            except StepLoadError as e:
                result.errors.append(_relative(e, project.root))
                continue
            record.active = record.name not in project.config.inactive
            seen[record.name] = record
            result.records.append(record)
    result.records.sort(key=lambda r: r.rel_file)
    return result


def _relative(err: WistroError, root: Path) -> WistroError:
    if err.file:
        with contextlib.suppress(ValueError):
            err.file = Path(err.file).resolve().relative_to(root).as_posix()
        err.args = (err.format(),)
    return err
