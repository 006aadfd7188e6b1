"""``wistro deploy``: standard deploy files for a project, from its lock.

``deploy(root, "compose" | "kubernetes", ...)`` writes a ``Dockerfile`` and ``.dockerignore``
into the project folder (the build context) and ``compose.yaml`` or ``k8s/*.yaml`` into ``out``
(default: the project folder); it returns a ``Deployment`` naming what it wrote and what to warn
about. The files depend only on the lock, the project's requirement files and the options, so a
second run gives the same bytes. It imports only the project layer (the lock), the config and
the helpers; whether the lock is fresh is for the caller to check (``wistro deploy`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path

from wistro.deploy.compose import compose
from wistro.deploy.dockerfile import dockerfile, dockerignore
from wistro.deploy.kubernetes import manifests
from wistro.deploy.output import write_files
from wistro.deploy.plan import Plan, make_plan
from wistro.errors import WistroError

__all__ = ["TARGETS", "Deployment", "Plan", "check_target", "deploy", "make_plan"]

TARGETS = ("compose", "kubernetes")


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise WistroError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")


@dataclass(frozen=True)
class Deployment:
    plan: Plan
    written: list[Path]
    unchanged: list[Path]

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.plan.warnings


def _wistro_version() -> str:
    try:
        return installed_version("wistro")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        raise WistroError(
            "the installed wistro has no version to pin in the Dockerfile",
            hint="install wistro (pip install -e .) or pass wistro_version=",
        ) from None


def deploy(
    root: str | Path,
    target: str,
    *,
    out: str | Path | None = None,
    env: str = "prod",
    workers: int = 2,
    image: str | None = None,
    force: bool = False,
    wistro_version: str | None = None,
    build_command: bool = False,
) -> Deployment:
    """Write the deploy files of the project at ``root`` for ``target``.

    ``env`` is the environment the containers run in; ``workers`` the worker replicas of this
    version; ``image`` the image name (``<project>`` by default), tagged with the version unless
    it carries a tag; ``wistro_version`` the version pinned in the Dockerfile (default: the
    installed one); ``build_command`` whether that wistro has ``wistro build``. Raises
    ``WistroError`` for an unknown target, a file in the way (without ``force``), and whatever
    reading the lock and the project raises (``LockError``, ``ConfigError``)."""
    check_target(target)
    if workers < 1:
        raise WistroError(f"workers must be at least 1, not {workers}")
    root = Path(root).resolve()
    folder = Path(out).resolve() if out is not None else root
    plan = make_plan(
        root,
        env,
        workers=workers,
        image=image,
        wistro_version=wistro_version or _wistro_version(),
        build_command=build_command,
    )
    files = {root / "Dockerfile": dockerfile(plan), root / ".dockerignore": dockerignore(plan)}
    if target == "compose":
        files[folder / "compose.yaml"] = compose(plan, folder)
    else:
        files.update({folder / "k8s" / name: text for name, text in manifests(plan).items()})
    written, unchanged = write_files(files, root=root, force=force)
    return Deployment(plan, written, unchanged)
