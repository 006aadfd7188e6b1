"""Fixtures of the Workbench tests: Jupyter's and IPython's folders in a temp folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _jupyter_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """IPython's profile, Jupyter's config, data, runtime and kernelspecs in a temp folder:
    nothing of the user's is read or written."""
    base = tmp_path_factory.mktemp("jupyter-home")
    names = {
        "IPYTHONDIR": "ipython",
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTER_PATH": "path",
    }
    saved = {k: os.environ.get(k) for k in names}
    for key, name in names.items():
        (base / name).mkdir()
        os.environ[key] = str(base / name)
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    try:
        yield base
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
