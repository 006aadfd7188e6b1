"""Packaging: the wheel and the sdist carry the widgets' JavaScript, and a checkout without it still
shows the widgets (as static HTML, with one warning line).

Real builds of a copy of the repository's tracked files (what a clean ``git clone`` has: no
``labextension/node_modules``, no ``wistro_jupyter/static/*.js``), through pip and hatchling with
the build hook of pyproject.toml (hatch-jupyter-builder: ``npm install`` + ``npm run build``).
The build requirements come from the dev extra (``--no-build-isolation``); npm installs from the
npm registry. The working tree's own files are never changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
HOOK = PYPROJECT["tool"]["hatch"]["build"]["hooks"]["jupyter-builder"]
BUNDLES = list(HOOK["ensured-targets"])  # wistro_jupyter/static/*.js
WARNING = "wistro: the widget JavaScript is missing ("
TIMEOUT_S = 600
build_times: dict[str, float] = {}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WISTRO_", "PYTHONPATH"))}
    env.update(
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        npm_config_audit="false",
        npm_config_fund="false",
        npm_config_update_notifier="false",
        **extra,
    )
    return env


def _run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == 0, f"{cmd}:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return result


def tracked_copy(dest: Path, *prefixes: str) -> Path:
    """The repository's tracked files (as they are in the working tree) copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *prefixes],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    for raw in listed.split(b"\0"):
        name = os.fsdecode(raw)
        src = ROOT / name
        if not name or not src.is_file():  # deleted in the working tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return dest


def build_wheel(project: Path, out: Path) -> Path:
    started = time.monotonic()
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    _run([*pip_wheel, "-w", str(out), str(project)], cwd=project)
    build_times[str(project)] = time.monotonic() - started
    (wheel,) = out.glob("wistro-*.whl")
    return wheel


@pytest.fixture(scope="module", autouse=True)
def _requirements() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the packaging tests build from the tracked files")
    assert shutil.which("npm"), "npm is needed to build the widgets (scripts/setup.sh installs it)"
    for module in ("hatchling", "hatch_jupyter_builder"):
        found = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
        assert found.returncode == 0, f"{module} is missing: pip install -e '.[dev]'"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean checkout: the tracked files only."""
    root = tracked_copy(tmp_path_factory.mktemp("checkout"))
    assert (root / "labextension" / "package-lock.json").is_file()
    assert not (root / "labextension" / "node_modules").exists()
    assert not list((root / "wistro_jupyter").glob("static/*.js"))
    return root


@pytest.fixture(scope="module")
def wheel(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel .`` in the clean checkout: the build hook runs npm."""
    return build_wheel(tree, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def sdist(tree: Path, wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist of the same checkout (after the wheel: the bundles are built, so no npm again)."""
    out = tmp_path_factory.mktemp("sdist")
    code = f"from hatchling.build import build_sdist; print(build_sdist({str(out)!r}))"
    _run([sys.executable, "-c", code], cwd=tree)
    (archive,) = out.glob("wistro-*.tar.gz")
    return archive


def test_ensured_targets_are_every_bundle_the_build_writes(tree: Path, wheel: Path) -> None:
    built = sorted(p.relative_to(tree).as_posix() for p in tree.glob("wistro_jupyter/static/*"))
    assert built == sorted(BUNDLES)
    assert HOOK["build-function"] == "hatch_jupyter_builder.npm_builder"
    assert sorted(HOOK["skip-if-exists"]) == sorted(BUNDLES)


def test_a_wheel_from_a_clean_checkout_has_every_bundle(wheel: Path, tree: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        sizes = {name: zf.getinfo(name).file_size for name in BUNDLES if name in names}
    assert sorted(sizes) == sorted(BUNDLES), f"bundles missing from {wheel.name}"
    assert sizes["wistro_jupyter/static/widgets.js"] > 100_000  # Graphviz inlined
    assert all(size > 1000 for size in sizes.values())
    assert not any("node_modules" in n or n.startswith("labextension/") for n in names)
    print(f"wheel built from a clean checkout in {build_times[str(tree)]:.1f} s", file=sys.stderr)


def test_the_installed_wheel_gives_the_widgets_their_javascript(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    pip_install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site)]
    _run([*pip_install, str(wheel)], cwd=tmp_path)
    code = (
        "import json, wistro_jupyter, wistro_jupyter.eval_widgets\n"
        "from wistro_jupyter.widgets import bundle_path, bundle_source\n"
        "kinds = ['flow_graph', 'trace_view', 'run_diff']\n"
        "print(json.dumps({'file': wistro_jupyter.__file__,\n"
        "  'bundles': {k: [str(bundle_path(k)), len(bundle_source(k) or '')] for k in kinds}}))\n"
    )
    out = json.loads(_run([sys.executable, "-c", code], cwd=tmp_path, PYTHONPATH=str(site)).stdout)
    assert Path(out["file"]).is_relative_to(site)
    for kind, (path, size) in out["bundles"].items():
        assert Path(path).is_relative_to(site) and size > 1000, (kind, path, size)


def test_the_sdist_has_the_widget_sources_and_no_node_modules(sdist: Path) -> None:
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    sources = subprocess.run(
        ["git", "ls-files", "labextension/src"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    needed = [
        "pyproject.toml",
        "labextension/package.json",
        "labextension/package-lock.json",
        "labextension/build.mjs",
        "labextension/tsconfig.json",
        "labextension/scripts/viz-runtime.mjs",
        *sources,
        *BUNDLES,  # so pip install from the sdist needs no Node
    ]
    assert sources and not [n for n in needed if n not in names]
    assert not [n for n in names if "node_modules" in n]
    assert not [n for n in names if n.startswith(("labextension/test/", "tests/", ".venv/"))]


def test_a_wheel_from_the_sdist_without_bundles_builds_them(sdist: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as tf:
        tf.extractall(tmp_path / "src", filter="data")
    (project,) = (tmp_path / "src").iterdir()
    for bundle in BUNDLES:
        (project / bundle).unlink()  # the sources alone must be enough
    wheel = build_wheel(project, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as zf:
        assert not [b for b in BUNDLES if b not in zf.namelist()]
    assert (project / "labextension" / "node_modules").is_dir()  # npm really ran


MISSING_BUNDLE_SCRIPT = r"""
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
from wistro.tooling.scaffold import create_project
import wistro_jupyter

from pathlib import Path
create_project(Path("shop"))
import os; os.chdir("shop")
config = Config()
config.HistoryManager.hist_file = ":memory:"
ip = InteractiveShell.instance(config=config)
ip.run_line_magic("colors", "nocolor")
for source in ("%load_ext wistro_jupyter", "%wistro load . --memory", "graph = %wistro graph",
               "graph"):
    result = ip.run_cell(source)
    assert result.success, (source, result.error_before_exec, result.error_in_exec)
data, _ = ip.display_formatter.format(ip.user_ns["graph"])
sys.stdout.flush()
print("\nRESULT " + json.dumps({"file": wistro_jupyter.__file__, "data": data}))
"""


def test_a_missing_bundle_shows_the_static_view_and_one_warning(tmp_path: Path) -> None:
    """A source checkout where nobody built the JavaScript: ``%wistro graph`` shows the graph as
    static HTML under one warning line, and no traceback."""
    checkout = tracked_copy(tmp_path / "checkout", "wistro_jupyter")  # wistro: the venv's
    assert not (checkout / "wistro_jupyter" / "static").exists()
    work = tmp_path / "work"
    work.mkdir()
    result = _run([sys.executable, "-c", MISSING_BUNDLE_SCRIPT], cwd=work, PYTHONPATH=str(checkout))
    shown, _, payload = result.stdout.rpartition("\nRESULT ")
    out = json.loads(payload)
    assert Path(out["file"]).is_relative_to(checkout)
    output = shown + result.stderr
    assert "Traceback" not in output and "WidgetBundleMissing" not in output, output
    expected = (
        "wistro: the widget JavaScript is missing (wistro_jupyter/static/widgets.js); showing a "
        "static view. Build it with: cd labextension && npm ci && npm run build"
    )
    assert output.count(WARNING) == 1 and expected in output, output  # the cell's Out[]
    data = out["data"]
    assert "application/vnd.jupyter.widget-view+json" not in data
    html = data["text/html"]
    assert html.count(WARNING) == 1 and "wistro-nodes" in html and "Charge card" in html
    assert data["text/plain"].splitlines()[0] == expected
