"""Writing what ``wistro deploy`` generates: YAML from plain dicts (sorted keys, no anchors), and
files that replace only what an earlier run wrote (``--force`` for anything else), all checked
before the first is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from wistro.deploy.plan import MARKER
from wistro.errors import WistroError
from wistro.files import write_atomic


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a dict used twice is written twice, never as &id001 / *id001


def to_yaml(docs: list[dict[str, Any]], header: list[str]) -> str:
    """``docs`` as YAML documents (``---`` between them) under the comment lines ``header``."""
    body = yaml.dump_all(
        docs,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
        explicit_start=len(docs) > 1,
    )
    return "\n".join(header) + "\n" + body


def _ours(path: Path, text: str) -> bool:
    """Whether ``path`` may be replaced by ``text``: it is missing, already holds ``text``, or
    an earlier ``wistro deploy`` wrote it (its first line is the marker)."""
    if not path.exists():
        return True
    if not path.is_file():
        return False
    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return old == text or old.startswith(MARKER)


def write_files(
    files: dict[Path, str], *, root: Path, force: bool = False
) -> tuple[list[Path], list[Path]]:
    """Write ``files``; returns (written, unchanged). Refuses, before writing any, when one of
    them exists and was not written by ``wistro deploy`` (unless ``force``)."""
    foreign = [path for path, text in files.items() if not _ours(path, text)]
    if foreign and not force:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise WistroError(
            f"{_shown(foreign[0], root)} exists and was not written by `wistro deploy`{more}",
            hint="move it away, or use --force to overwrite it",
        )
    written: list[Path] = []
    unchanged: list[Path] = []
    for path, text in files.items():
        if path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
            unchanged.append(path)
            continue
        if path.is_dir():
            raise WistroError(f"{_shown(path, root)} is a folder, not a file")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
        path.chmod(0o644)  # committed files, like the lock: readable by anyone
        written.append(path)
    return written, unchanged


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
