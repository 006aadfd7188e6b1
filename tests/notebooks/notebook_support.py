"""Shared by the notebook tests: where the tutorial notebooks are, and a kernelspec of this venv's
Python written into a temp JUPYTER_PATH (nothing installed for the user, and a ``python3``
kernelspec of another Python can never be picked)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

KERNEL_NAME = "wistro-notebooks"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def write_kernelspec(jupyter_path: Path) -> str:
    """``<jupyter_path>/kernels/<KERNEL_NAME>/kernel.json`` starting this venv's Python."""
    spec = jupyter_path / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "wistro notebooks",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    return KERNEL_NAME
