"""The README's 5-minute tour, run as a newcomer would: each command it shows output for prints
that output today (trace ids and timings aside)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.cli.test_cli import ok, wistro

README = Path(__file__).resolve().parents[2] / "README.md"


def tour() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## A 5-minute tour", 1)[1].split("\n## ", 1)[0]


def blocks(section: str) -> list[str]:
    """The fenced blocks of ``section``, in order (without their fences)."""
    return re.findall(r"^```[a-z]*\n(.*?)^```", section, re.M | re.S)


def command_of(line: str) -> list[str]:
    """``wistro ...`` at the start of a line, without the comment after it."""
    return shlex.split(line, comments=True)


def normalised(trace: str) -> list[str]:
    """A printed trace without what differs from run to run: the trace id and the times."""
    out = []
    for line in trace.strip().splitlines():
        line = re.sub(r"\btrace [0-9a-f]{32}\b", "trace <id>", line)
        line = re.sub(r"\b\d+\.\d ms\b", "<t> ms", line)
        out.append(line.rstrip())
    return out


def test_the_readme_tour_prints_what_the_readme_shows(tmp_path: Path) -> None:
    first, shown, then = blocks(tour())[:3]
    lines = first.splitlines()
    assert command_of(lines[0])[:3] == ["wistro", "init", "shop"]
    ok(wistro("init", "shop", cwd=tmp_path))
    shop = tmp_path / "shop"

    check_line = next(line for line in lines if line.startswith("wistro check"))
    expected_check = check_line.split("#", 1)[1].strip()
    assert ok(wistro("check", cwd=shop)).strip() == expected_check

    emit_line = next(line for line in lines if line.startswith("wistro emit"))
    out = ok(wistro(*command_of(emit_line)[1:], cwd=shop))
    assert normalised(out) == normalised(shown)

    bad_line, error_line = then.splitlines()[:2]
    res = wistro(*command_of(bad_line)[1:], cwd=shop)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip() == error_line.lstrip("# ").strip()
