"""The source of a step as a version ran it (from git, the version's folder or the working
tree, whichever has the file with the hash the version recorded), and the code diffs of the steps
that changed between two versions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wistro.errors import WistroError
from wistro.eval.results import EvalResult


def stored_root(e: EvalResult) -> Path | None:
    """The folder of the project eval ``e`` was stored in."""
    if e.path is not None:
        return Path(e.path).resolve().parents[2]  # <root>/.wistro/evals/<id>
    try:
        from wistro.project.paths import find_root

        return find_root(None)
    except WistroError:
        return None


def source_as_run(e: EvalResult, step: str) -> tuple[str | None, str]:
    """The source of ``step`` as the version of eval ``e`` ran it: from git
    (``git show COMMIT:path``), the version's folder or the working tree, whichever has the
    file with the hash the version recorded. ``(text, where)``, or ``(None, why not)``."""
    import hashlib

    from wistro.eval.version import _git

    v = e.version
    rel = v.files.get(step)
    if rel is None:
        return "", f"{step} is not in {e.label}"
    want = (v.steps.get(step) or "").split(":")[0]
    root = stored_root(e)
    candidates: list[tuple[str, Any]] = []
    if root is not None and v.git_commit:
        candidates.append((f"git {v.git_commit[:10]}:{rel}", ("git", root, v.git_commit)))
    if root is not None and v.revision:  # a folder version (a git revision is no folder)
        folder = Path(v.revision).expanduser()
        folder = folder if folder.is_absolute() else root / folder
        if folder.is_dir():
            candidates.append((str(folder / rel), folder / rel))
    if root is not None:
        candidates.append((f"working tree {rel}", root / rel))
    found_other = False
    for where, how in candidates:
        data: bytes | None = None
        if isinstance(how, tuple):
            try:
                out = _git(how[1], "show", f"{how[2]}:./{rel}")
            except WistroError:
                continue
            if out.returncode == 0:
                data = out.stdout.encode("utf-8")
        elif how.is_file():
            data = how.read_bytes()
        if data is None:
            continue
        if not want or hashlib.sha256(data).hexdigest() == want:
            return data.decode("utf-8", errors="replace"), where
        found_other = True
    why = "the file has changed since" if found_other else "no copy of it was found"
    return None, (f"the source of {step} ({rel}) as {e.label} ran it is no longer available: {why}")


def diff_sources(
    a: EvalResult, b: EvalResult, steps: Sequence[str] | None = None, context: int = 3
) -> list[dict[str, Any]]:
    """Per changed step from ``a`` to ``b`` (all by default): ``{step, change, file, diff,
    available, note}``, ``diff`` a unified diff of its source (empty when unavailable)."""
    import difflib

    changed = a.version.changed_steps(b.version)
    out = []
    for step in steps if steps is not None else sorted(changed):
        change = changed.get(step, "unchanged")
        src_a, where_a = source_as_run(a, step)
        src_b, where_b = source_as_run(b, step)
        file = b.version.files.get(step) or a.version.files.get(step)
        notes = [w for s, w in ((src_a, where_a), (src_b, where_b)) if s is None]
        text = ""
        if src_a is not None and src_b is not None:
            text = "".join(
                difflib.unified_diff(
                    src_a.splitlines(keepends=True),
                    src_b.splitlines(keepends=True),
                    f"a/{a.version.files.get(step, file)} ({a.label})",
                    f"b/{b.version.files.get(step, file)} ({b.label})",
                    n=context,
                )
            )
            if change == "modified" and not text:
                notes.append("same source: the step's config changed")
        out.append(
            {
                "step": step,
                "change": change,
                "file": file,
                "diff": text,
                "available": src_a is not None and src_b is not None,
                "note": "; ".join(notes),
            }
        )
    return out
