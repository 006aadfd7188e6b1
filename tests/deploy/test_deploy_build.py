"""`wistro deploy` from this wistro, which has `wistro build`: the Dockerfile runs it after
`wistro lock --check`, so the image holds the compiled TypeScript and Go steps."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from wistro.cli.main import main

STEP = """config = {"name": "hello", "subscribes": ["hi"]}


async def handler(data, ctx):
    pass
"""


def test_the_dockerfile_runs_wistro_build_after_the_lock_check(tmp_path: Path) -> None:
    (tmp_path / "wistro.yml").write_text("name: shop\n", encoding="utf-8")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "hello.step.py").write_text(STEP, encoding="utf-8")
    runner = CliRunner()
    locked = runner.invoke(main, ["-C", str(tmp_path), "lock"])
    assert locked.exit_code == 0, locked.output
    result = runner.invoke(
        main, ["-C", str(tmp_path), "--env", "dev", "deploy", "--target", "compose"]
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "Dockerfile").read_text(encoding="utf-8").splitlines()
    assert lines.index("RUN wistro build") > lines.index("RUN wistro lock --check")
    assert not any("no `wistro build` command" in line for line in lines)
