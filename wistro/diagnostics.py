"""``Diagnostic``: one problem ``wistro check`` reports (an error or a warning, where, a hint).

A leaf module: ``wistro.tooling.check`` collects diagnostics and the modules that know a concept report
their own (``wistro.triggers.cron.cron_diagnostics``), all without importing one another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass
class Diagnostic:
    severity: Severity
    code: str
    message: str
    file: str | None = None
    line: int | None = None
    step: str | None = None
    topic: str | None = None
    flow: str | None = None
    hint: str | None = None

    def format(self) -> str:
        """One line: ``file:line: error[code]: message (hint: ...)``."""
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        text = f"{where}{self.severity}[{self.code}]: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sort_key(self) -> tuple[int, str, int, str, str]:
        return (
            0 if self.severity == "error" else 1,
            self.file or "\uffff",
            self.line or 0,
            self.code,
            self.message,
        )


def undeclared_emit(
    steps: str, step: str, topic: str, declared: list[str], file: str, line: int | None
) -> Diagnostic:
    """The ``undeclared-emit`` error of an emit to ``topic`` the step(s) do not declare (the
    same line for every language), with the closest declared topic as its hint."""
    import difflib

    close = difflib.get_close_matches(topic, declared, n=1)
    return Diagnostic(
        "error",
        "undeclared-emit",
        f"step {steps} emits {topic!r}, which is not in its `emits` "
        f"(declared: {', '.join(declared) or 'none'})",
        file=file,
        line=line,
        step=step,
        topic=topic,
        hint=f"did you mean {close[0]!r}?" if close else f"add {topic!r} to the step's `emits`",
    )
