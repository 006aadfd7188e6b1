"""Fixtures of the notebook tests: every Jupyter and IPython folder in a temp dir, with a
kernelspec of this venv's Python, so nothing is read from or written to the user's home."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from notebook_support import write_kernelspec


@pytest.fixture(scope="module")
def jupyter_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment variables for kernels and servers started by a test module: the kernelspec,
    and every Jupyter/IPython folder in a temp dir (set in os.environ for the module)."""
    root = tmp_path_factory.mktemp("jupyter-env")
    write_kernelspec(root / "path")
    env = {
        "JUPYTER_PATH": str(root / "path"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_DATA_DIR": str(root / "data"),
        "IPYTHONDIR": str(root / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env
