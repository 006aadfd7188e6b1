"""Finding a worker language's toolchain (``node``, ``go``): an explicit path from an
environment variable, else the command on PATH."""

from __future__ import annotations

import os
import shutil


def which(name: str, env_var: str | None = None) -> str | None:
    """``env_var`` (an explicit path) wins; else ``name`` on PATH."""
    if env_var and (explicit := os.environ.get(env_var)):
        return explicit if os.path.exists(explicit) else None
    return shutil.which(name)
