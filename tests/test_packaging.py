"""Packaging: the wheel and the sdist carry the widgets' JavaScript and the JupyterLab extension
(the Workbench panel, installed by pip into share/jupyter/labextensions with the server
extension's config), and a checkout without the JavaScript still shows the widgets (as static
HTML, with one warning line).

Real builds of a copy of the repository's tracked files (what a clean ``git clone`` has: no
``labextension/node_modules``, no ``wistro_jupyter/static/*.js``), through pip and hatchling with
the build hook of pyproject.toml (hatch-jupyter-builder: ``npm install`` + ``npm run build``).
The build requirements come from the dev extra (``--no-build-isolation``); npm installs from the
npm registry. The working tree's own files are never changed.
"""

from __future__ import annotations

import json
import os
import re
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
TARGETS = list(HOOK["ensured-targets"])
BUNDLES = [t for t in TARGETS if t.startswith("wistro_jupyter/static/")]  # the widgets' *.js
LABEXT = "wistro_jupyter/labextension"  # the built JupyterLab extension (wistro-workbench)
LABEXT_TARGETS = [t for t in TARGETS if t.startswith(f"{LABEXT}/")]
SHARE = "share/jupyter/labextensions/wistro-workbench"
SERVER_CONFIG = "etc/jupyter/jupyter_server_config.d/wistro_jupyter.json"
WARNING = "wistro: the widget JavaScript is missing ("
TIMEOUT_S = 600
build_times: dict[str, float] = {}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WISTRO_", "PYTHONPATH"))}
    # --no-build-isolation: the build's commands (jupyter-builder) are this venv's, on PATH as in
    # pip's isolated build environment
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
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
    assert (root / "labextension" / "workbench" / "package-lock.json").is_file()
    assert not (root / LABEXT).exists()
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
    assert sorted(HOOK["skip-if-exists"]) == sorted(TARGETS)
    # the lab extension: its package.json and its fixed-name style.js (the rest is hashed)
    assert sorted(LABEXT_TARGETS) == [f"{LABEXT}/package.json", f"{LABEXT}/static/style.js"]
    assert all((tree / t).is_file() for t in LABEXT_TARGETS)
    assert list((tree / LABEXT / "static").glob("remoteEntry.*.js"))


def test_a_wheel_from_a_clean_checkout_has_every_bundle(wheel: Path, tree: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        sizes = {name: zf.getinfo(name).file_size for name in BUNDLES if name in names}
    assert sorted(sizes) == sorted(BUNDLES), f"bundles missing from {wheel.name}"
    assert sizes["wistro_jupyter/static/widgets.js"] > 100_000  # Graphviz inlined
    assert all(size > 1000 for size in sizes.values())
    assert not any("node_modules" in n or n.startswith("labextension/") for n in names)
    print(f"wheel built from a clean checkout in {build_times[str(tree)]:.1f} s", file=sys.stderr)


def test_the_wheel_has_the_lab_extension_as_shared_data(wheel: Path) -> None:
    """The JupyterLab extension and the server extension's config are data files of the wheel:
    pip puts them in the environment's share/ and etc/, where JupyterLab looks."""
    data = "wistro-0.1.0.data/data"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        package = json.loads(zf.read(f"{data}/{SHARE}/package.json"))
        install = json.loads(zf.read(f"{data}/{SHARE}/install.json"))
        config = json.loads(zf.read(f"{data}/{SERVER_CONFIG}"))
    assert package["name"] == "wistro-workbench"
    assert package["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    assert f"{data}/{SHARE}/{package['jupyterlab']['_build']['load']}" in names
    assert install["packageName"] == "wistro" and install["packageManager"] == "python"
    assert config == {"ServerApp": {"jpserver_extensions": {"wistro_jupyter": True}}}
    assert f"{LABEXT}/package.json" in names  # in the package too (as the extension template)
    assert not [n for n in names if "/lib/index.js" in n or "workbench/src/" in n]


def test_the_installed_wheel_is_listed_by_jupyter(wheel: Path, tmp_path: Path) -> None:
    """``pip install`` of the wheel (into a prefix) and nothing else: ``jupyter labextension
    list`` finds wistro-workbench there, enabled and OK, and the server extension is enabled."""
    prefix = tmp_path / "prefix"
    # --ignore-installed: else pip uninstalls the venv's own (editable) wistro first
    pip_install = [
        *[sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed"],
        *["--prefix", str(prefix)],
    ]
    _run([*pip_install, str(wheel)], cwd=tmp_path)
    (site,) = prefix.glob("lib/python*/site-packages")
    assert (prefix / SHARE / "install.json").is_file()
    home = tmp_path / "home"
    env = {
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "JUPYTER_CONFIG_PATH": str(prefix / "etc" / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONPATH": str(site),
    }
    jupyter = [sys.executable, "-m", "jupyter"]
    listed = _run([*jupyter, "labextension", "list"], cwd=tmp_path, **env)
    out = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    line = next((x for x in out.splitlines() if "wistro-workbench" in x), "")
    assert "enabled" in line and "OK" in line and "(python, wistro)" in line, out
    assert str(prefix / SHARE.rsplit("/", 1)[0]) in out, out
    # the server extension: enabled by the config file the wheel put in <prefix>/etc/jupyter
    code = (
        "import json, sys\n"
        "from jupyter_server.extension.config import ExtensionConfigManager\n"
        "m = ExtensionConfigManager(read_config_path=[sys.argv[1]])\n"
        "print(json.dumps(m.get_jpserver_extensions()))\n"
    )
    etc = str(prefix / "etc" / "jupyter")
    enabled = json.loads(_run([sys.executable, "-c", code, etc], cwd=tmp_path, **env).stdout)
    assert enabled == {"wistro_jupyter": True}, enabled
    found = _run(
        [sys.executable, "-c", "import wistro_jupyter.server as s; print(s.__file__)"],
        cwd=tmp_path,
        **env,
    )
    assert Path(found.stdout.strip()).is_relative_to(site)


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
        ["git", "ls-files", "labextension/src", "labextension/workbench/src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert any(n.startswith("labextension/workbench/src/") for n in sources)
    needed = [
        "pyproject.toml",
        "labextension/package.json",
        "labextension/package-lock.json",
        "labextension/build.mjs",
        "labextension/tsconfig.json",
        "labextension/scripts/viz-runtime.mjs",
        "labextension/workbench/package.json",
        "labextension/workbench/package-lock.json",
        "labextension/workbench/build.mjs",
        "labextension/workbench/tsconfig.json",
        "install.json",
        "jupyter-config/jupyter_server_config.d/wistro_jupyter.json",
        *sources,
        *TARGETS,  # so pip install from the sdist needs no Node
    ]
    assert sources and not [n for n in needed if n not in names]
    assert not [n for n in names if "node_modules" in n]
    assert not [n for n in names if n.startswith(("labextension/test/", "tests/", ".venv/"))]
    assert not [n for n in names if n.startswith("labextension/workbench/lib/")]


def test_a_wheel_from_the_sdist_without_bundles_builds_them(sdist: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as tf:
        tf.extractall(tmp_path / "src", filter="data")
    (project,) = (tmp_path / "src").iterdir()
    for bundle in BUNDLES:
        (project / bundle).unlink()  # the sources alone must be enough
    shutil.rmtree(project / LABEXT)
    wheel = build_wheel(project, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as zf:
        assert not [b for b in TARGETS if b not in zf.namelist()]
        assert f"wistro-0.1.0.data/data/{SHARE}/package.json" in zf.namelist()
    assert (project / "labextension" / "node_modules").is_dir()  # npm really ran
    assert (project / "labextension" / "workbench" / "node_modules").is_dir()


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
