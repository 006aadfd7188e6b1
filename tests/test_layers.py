"""The core never loads the notebook side: importing wistro, its app, command line and evals in a
fresh interpreter imports no module of wistro_jupyter, IPython, ipywidgets or anywidget (the
import-time half of the `[tool.importlinter]` contracts, checked on the real interpreter)."""

from __future__ import annotations

import subprocess
import sys

NOTEBOOK_SIDE = ("wistro_jupyter", "IPython", "ipywidgets", "anywidget")

SCRIPT = f"""
import sys
import wistro, wistro.app, wistro.cli.main, wistro.eval, wistro.eval.compare, wistro.tooling.check
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {set(NOTEBOOK_SIDE)!r})
assert not loaded, loaded
"""


def test_core_imports_no_jupyter_code() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_sees_a_jupyter_import() -> None:
    """The script above fails when something has loaded a notebook module (it is not vacuous)."""
    result = subprocess.run(
        [sys.executable, "-c", "import IPython\n" + SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "IPython" in result.stderr, result.stderr
