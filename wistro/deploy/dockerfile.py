"""The ``Dockerfile`` and ``.dockerignore`` of ``wistro deploy``: one image for every process of a
version (``wistro start``, ``wistro worker``), built from the project folder and its lock.

The build installs wistro (pinned to the version that wrote the files) and the project's
requirements, copies the project, and runs ``wistro lock --check``: a stale lock fails the build;
then ``wistro build`` (when the wistro that writes the file has it) compiles the Go and TypeScript
steps into ``.wistro/build/``.
Env files named in wistro.yml stay out of the image; empty stand-ins take their place so that
wistro.yml's ``env_file`` resolves, and the values come from the container's environment.
"""

from __future__ import annotations

import json
import shlex
from pathlib import PurePosixPath

from wistro.deploy.plan import GRACE_S, PORT, UID, Plan

PYTHON_IMAGE = "python:3.11-slim"
GO_IMAGE = "golang:1.23-bookworm"  # the toolchain is copied out of it (Go steps need >= 1.21)


def _run(*commands: list[str]) -> str:
    """A shell-form RUN of several commands joined by ``&&``, one per line."""
    lines = [" ".join(shlex.quote(arg) for arg in cmd) for cmd in commands]
    return "RUN " + " \\\n && ".join(lines)


def dockerfile(plan: Plan) -> str:
    out = plan.header()
    out += [f"FROM {PYTHON_IMAGE}", ""]
    out += [
        "ENV PYTHONDONTWRITEBYTECODE=1 \\",
        "    PYTHONUNBUFFERED=1 \\",
        "    PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
        "    PIP_ROOT_USER_ACTION=ignore",
        "",
    ]
    if plan.needs_node:
        out += [
            "# JavaScript and TypeScript steps run in Node.js (>= 18)",
            "RUN apt-get update \\",
            " && apt-get install -y --no-install-recommends nodejs npm \\",
            " && rm -rf /var/lib/apt/lists/*",
            "",
        ]
    if plan.needs_go:
        out += [
            "# Go steps are compiled with the Go toolchain",
            f"COPY --from={GO_IMAGE} /usr/local/go /usr/local/go",
            "ENV PATH=/usr/local/go/bin:$PATH",
            "",
        ]
    out += [
        "# The steps run as an unprivileged user who owns the project folder (and .wistro/ in it)",
        f"RUN useradd --create-home --uid {UID} wistro \\",
        " && mkdir /app && chown wistro:wistro /app",
        "WORKDIR /app",
        "",
    ]
    wistro = f"wistro[{','.join(plan.extras)}]" if plan.extras else "wistro"
    pip = ["pip", "install", "--no-cache-dir", f"{wistro}=={plan.wistro_version}"]
    sources = [
        name
        for name, used in (
            ("requirements.txt", plan.requirements_txt),
            ("pyproject.toml's dependencies", plan.requirements),
        )
        if used
    ]
    out += [
        "# wistro, pinned to the version that wrote this file"
        + (f", and {' and '.join(sources)}" if sources else "")
    ]
    if plan.requirements_txt:
        out += ["COPY requirements.txt ./"]
        pip += ["-r", "requirements.txt"]
    pip += list(plan.requirements)
    out += [_run(pip), "", "USER wistro"]
    if plan.npm_files:
        install = "ci" if "package-lock.json" in plan.npm_files else "install"
        out += [
            "# the project's npm packages (esbuild compiles the TypeScript steps)",
            f"COPY --chown=wistro:wistro {' '.join(plan.npm_files)} ./",
            _run(["npm", install, "--no-audit", "--no-fund"]),
        ]
    out += ["COPY --chown=wistro:wistro . .", ""]
    if plan.env_files:
        folders = sorted(
            {str(PurePosixPath(f).parent) for f in plan.env_files} - {"."},
        )
        commands = [["mkdir", "-p", *folders]] if folders else []
        out += [
            "# Env files stay out of the image (.dockerignore): empty ones let wistro.yml's",
            "# env_file resolve, and the values come from the container's environment",
            _run(*commands, ["touch", *plan.env_files]),
            "",
        ]
    out += [
        "# A stale wistro.yml.lock fails the build: run `wistro lock` and commit it",
        "RUN wistro lock --check",
    ]
    if plan.build_command:
        out += [
            "# Compile the TypeScript bundles and the Go worker into .wistro/build/ ahead: the",
            "# containers start without compiling or downloading a toolchain",
            "RUN wistro build",
        ]
    elif plan.needs_go or plan.needs_node:
        out += [
            "# (loading the steps above also compiled the Go / TypeScript ones into .wistro/build/;",
            f"# wistro {plan.wistro_version} has no `wistro build` command to do it on its own)",
        ]
    start = ["wistro", "start", "--host", "0.0.0.0", "--port", str(PORT), "--grace-s", str(GRACE_S)]
    out += [
        "",
        f"ENV WISTRO_ENV={plan.env}",
        f"EXPOSE {PORT}",
        f"CMD {json.dumps(start)}",
    ]
    return "\n".join(out) + "\n"


def dockerignore(plan: Plan) -> str:
    out = plan.header()
    out += [
        "# Local data, virtualenvs and caches never go into the image",
        ".git",
        ".venv",
        ".wistro",
        "**/__pycache__",
        "**/*.pyc",
        "**/node_modules",
        "**/.ipynb_checkpoints",
    ]
    if plan.env_files:
        out += ["# Env files named in wistro.yml: their values come from the environment"]
        out += list(plan.env_files)
    return "\n".join(out) + "\n"
