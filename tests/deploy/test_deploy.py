"""``wistro deploy``: the files it writes, checked by real validators that run offline.

- Kubernetes manifests: the Kubernetes JSON schemas bundled by ``kubernetes-validate`` (strict:
  an unknown field is an error), for the newest Kubernetes it knows and the oldest we claim.
- ``compose.yaml``: the Compose Specification's JSON Schema (``compose-spec.json``, vendored
  beside this file from compose-go, the schema Docker Compose validates with) with ``jsonschema``.
- ``Dockerfile``: parsed by ``dockerfile-parse``; and the instructions that run in the project
  folder (env-file stand-ins, ``wistro lock --check``) are run for real in a copy of the build
  context (the project less what ``.dockerignore`` excludes), so a stale lock fails that build.

The command line runs as a user runs it (``python -m wistro`` in a subprocess).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from projects import step

import wistro
from wistro.deploy import deploy
from wistro.errors import ConfigError, LockError, WistroError
from wistro.project.lock import build_lock, write_lock

HERE = Path(__file__).parent
COMPOSE_SCHEMA = json.loads((HERE / "compose-spec.json").read_text(encoding="utf-8"))
K8S_VERSIONS = [kubernetes_validate.latest_version(), "1.29.0"]
TIMEOUT = 60
REDIS_ENV = """
    name: Shop Floor
    environments:
      prod:
        bus: {adapter: redis}
        state: {adapter: redis, url: "${REDIS_URL}"}
        env_file: .env.prod
      staging: {}
    api:
      - {path: /hooks/pay, method: POST, emits: order.placed,
         auth: {type: hmac-sha256, secret_env: PAY_SECRET, header: X-Sig}}
"""
STEPS = {
    "src/charge.step.py": step("Charge card", ["order.placed"], ["payment.captured"]),
    "src/receipt.step.py": step("Send receipt", ["payment.captured"]),
}

Maker = Callable[..., wistro.App]


def make_project(make_app: Maker, config: str = REDIS_ENV, **extra: str) -> Path:
    """A project with two Python steps, ``config`` as its wistro.yml, a .env.prod and a lock."""
    files = {**STEPS, "wistro.yml": config, ".env.prod": "PAY_SECRET=s3cret\n", **extra}
    app = make_app(files)
    write_lock(app.project.lock_path, build_lock(app.project, app.registry))
    return app.project.root


def set_lock(root: Path, **changes: Any) -> None:
    """Change the lock file as written (the library does not check it against the sources)."""
    path = root / "wistro.yml.lock"
    lock = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if key == "languages":
            for s, language in zip(lock["steps"].values(), value, strict=False):
                s["language"] = language
        else:
            lock[key] = value
    path.write_text(json.dumps(lock), encoding="utf-8")


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def k8s(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every manifest under k8s/, by (kind, name)."""
    out = {}
    for path in sorted((root / "k8s").glob("*.yaml")):
        for doc in docs_of(path):
            out[doc["kind"], doc["metadata"]["name"]] = doc
    return out


def validate_k8s(doc: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def validate_compose(doc: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(COMPOSE_SCHEMA)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def instructions(path: Path) -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(path))
    return [
        (i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"
    ]


def wistro_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WISTRO_")}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "wistro", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        env=env,
        check=False,
    )


def one_line_error(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---------------------------------------------------------------- the validators


def test_kubernetes_manifests_are_valid_kubernetes(make_app: Maker) -> None:
    root = make_project(make_app)
    result = deploy(root, "kubernetes", env="prod", workers=3)
    tag = result.plan.tag
    assert result.warnings == ()
    assert sorted(p.name for p in (root / "k8s").iterdir()) == [
        "config.yaml",
        "redis.yaml",
        "start.yaml",
        f"worker-{tag}.yaml",
    ]
    manifests = k8s(root)
    for doc in manifests.values():
        validate_k8s(doc)
    assert sorted(manifests) == [
        ("ConfigMap", "shop-floor-config"),
        ("Deployment", "shop-floor-start"),
        ("Deployment", f"shop-floor-worker-{tag}"),
        ("Service", "shop-floor-redis"),
        ("Service", "shop-floor-start"),
        ("StatefulSet", "shop-floor-redis"),
    ]
    config = manifests["ConfigMap", "shop-floor-config"]
    assert config["data"] == {"REDIS_URL": "redis://shop-floor-redis:6379/0"}
    redis = manifests["StatefulSet", "shop-floor-redis"]["spec"]
    assert redis["template"]["spec"]["containers"][0]["args"] == [
        "redis-server",
        "--appendonly",
        "yes",
    ]
    assert redis["volumeClaimTemplates"][0]["metadata"]["name"] == "data"

    start = manifests["Deployment", "shop-floor-start"]
    worker = manifests["Deployment", f"shop-floor-worker-{tag}"]
    assert worker["spec"]["replicas"] == 3
    for deployment, command in ((start, "start"), (worker, "worker")):
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "shop-floor"
        assert labels["app.kubernetes.io/version"] == tag == result.plan.version[:12]
        assert pod["metadata"]["annotations"]["wistro.dev/version"] == result.plan.version
        [container] = pod["spec"]["containers"]
        assert container["image"] == f"shop-floor:{tag}"
        assert container["command"][:4] == ["wistro", "--env", "prod", command]
        grace = float(container["command"][container["command"].index("--grace-s") + 1])
        assert pod["spec"]["terminationGracePeriodSeconds"] > grace
        assert container["resources"]["requests"]
        assert {"secretRef": {"name": "shop-floor-secrets", "optional": True}} in container[
            "envFrom"
        ]
    [container] = start["spec"]["template"]["spec"]["containers"]
    assert container["command"][4:] == [
        "--host",
        "0.0.0.0",
        "--port",
        "3111",
        "--no-workers",
        "--grace-s",
        "30",
    ]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/_wistro/health", "port": "http"}
    # a worker Deployment selects only its own version's pods: versions run side by side
    assert worker["spec"]["selector"]["matchLabels"]["app.kubernetes.io/version"] == tag
    # the secret note names the variables the project reads (not the values)
    text = (root / "k8s" / "config.yaml").read_text()
    assert "--from-env-file=.env.prod" in text and "PAY_SECRET" in text
    assert "s3cret" not in text


def test_compose_file_is_valid_compose(make_app: Maker) -> None:
    root = make_project(make_app)
    result = deploy(root, "compose", env="prod", workers=3)
    tag = result.plan.tag
    doc = docs_of(root / "compose.yaml")[0]
    validate_compose(doc)
    services = doc["services"]
    assert sorted(services) == ["redis", "start", f"worker-{tag}"]
    redis = services["redis"]
    assert redis["image"] == "redis:7"
    assert redis["command"] == ["redis-server", "--appendonly", "yes"]
    assert redis["volumes"] == ["redis-data:/data"] and "redis-data" in doc["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    start, worker = services["start"], services[f"worker-{tag}"]
    assert start["command"][:4] == ["wistro", "--env", "prod", "start"]
    assert start["ports"] == ["3111:3111"]
    assert "--host" in start["command"] and "0.0.0.0" in start["command"]
    assert "/_wistro/health" in start["healthcheck"]["test"][-1]
    assert worker["command"][:4] == ["wistro", "--env", "prod", "worker"]
    assert worker["deploy"] == {"replicas": 3}
    for service in (start, worker):
        assert service["environment"] == {"REDIS_URL": "redis://redis:6379/0"}
        assert service["env_file"] == [".env.prod"]
        assert service["image"] == f"shop-floor:{tag}"
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert service["stop_grace_period"] == "45s"  # longer than --grace-s 30
    assert doc["name"] == "shop-floor"


def test_the_validators_refuse_what_is_wrong(make_app: Maker) -> None:
    """Not vacuous: a misspelt field fails both schemas."""
    root = make_project(make_app)
    deploy(root, "kubernetes", env="prod")
    deployment = k8s(root)["Deployment", "shop-floor-start"]
    deployment["spec"]["template"]["spec"]["containers"][0]["comand"] = ["wistro"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(deployment)
    deploy(root, "compose", env="prod")
    doc = docs_of(root / "compose.yaml")[0]
    doc["services"]["start"]["comand"] = ["wistro"]
    with pytest.raises(AssertionError, match="comand"):
        validate_compose(doc)


def test_dockerfile_installs_checks_the_lock_and_starts(make_app: Maker) -> None:
    root = make_project(make_app)
    deploy(root, "compose", env="prod")
    steps = instructions(root / "Dockerfile")
    names = [name for name, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert names.count("FROM") == 1
    runs = [value for name, value in steps if name == "RUN"]
    [pip] = [r for r in runs if r.startswith("pip install")]
    assert f"wistro=={wistro.__version__}" in pip.split()
    copy_all = steps.index(("COPY", "--chown=wistro:wistro . ."))
    check = steps.index(("RUN", "wistro lock --check"))
    assert copy_all < check  # the lock is checked against the copied sources
    assert ("RUN", "touch .env.prod") in steps[copy_all:check]  # stand-in for the env file
    assert names.index("USER") < check  # the check runs as the user who runs the steps
    assert steps[-1][0] == "CMD"
    assert json.loads(steps[-1][1])[:2] == ["wistro", "start"]
    assert ("ENV", "WISTRO_ENV=prod") in steps[check:]
    assert ("EXPOSE", "3111") in steps
    assert not any(v.startswith(("apt-get", "npm")) for v in runs)  # Python steps only
    assert not any(name == "COPY" and "golang" in v for name, v in steps)
    ignored = (root / ".dockerignore").read_text().splitlines()
    for entry in (".wistro", ".venv", "**/node_modules", "**/__pycache__", ".env.prod"):
        assert entry in ignored


def test_dockerfile_installs_the_project_requirements(make_app: Maker) -> None:
    pyproject = '[project]\nname = "shop"\nversion = "1"\ndependencies = ["httpx>=0.27", "attrs"]\n'
    root = make_project(make_app, **{"requirements.txt": "pandas\n", "pyproject.toml": pyproject})
    deploy(root, "compose", env="prod")
    steps = instructions(root / "Dockerfile")
    assert ("COPY", "requirements.txt ./") in steps
    [pip] = [v for name, v in steps if name == "RUN" and v.startswith("pip install")]
    assert pip.endswith("-r requirements.txt 'httpx>=0.27' attrs"), pip
    assert steps.index(("COPY", "requirements.txt ./")) < steps.index(("RUN", pip))


def test_dockerfile_for_javascript_typescript_and_go_steps(make_app: Maker) -> None:
    root = make_project(make_app, **{"package.json": "{}", "package-lock.json": "{}"})
    set_lock(root, languages=["typescript", "go"])
    deploy(root, "kubernetes", env="prod")
    steps = instructions(root / "Dockerfile")
    runs = [v for name, v in steps if name == "RUN"]
    assert any("apt-get install" in r and "nodejs" in r and "npm" in r for r in runs)
    assert ("COPY", "--from=golang:1.23-bookworm /usr/local/go /usr/local/go") in steps
    assert ("COPY", "--chown=wistro:wistro package.json package-lock.json ./") in steps
    assert "npm ci --no-audit --no-fund" in runs
    # no `wistro build` in this wistro: the Dockerfile says where the steps are compiled
    assert "wistro build" not in runs
    assert "no `wistro build` command" in (root / "Dockerfile").read_text()
    deploy(root, "kubernetes", env="prod", build_command=True)
    assert ("RUN", "wistro build") in instructions(root / "Dockerfile")


# ---------------------------------------------------------------- the build's own steps


def _ignored(rel: PurePosixPath, patterns: list[str]) -> bool:
    """The .dockerignore patterns the generator writes: a path, or ``**/`` + a name."""
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(PurePosixPath(part).match(pattern[3:]) for part in rel.parts):
                return True
        elif rel.parts[: len(PurePosixPath(pattern).parts)] == PurePosixPath(pattern).parts:
            return True
    return False


def run_build_steps(root: Path, context: Path) -> subprocess.CompletedProcess[str]:
    """Copy the build context (less .dockerignore), then run the Dockerfile's RUN instructions
    that follow ``COPY . .`` in it, as the image build would (``wistro`` is this one)."""
    patterns = [
        line
        for line in (root / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for path in sorted(root.rglob("*")):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if path.is_file() and not _ignored(rel, patterns):
            (context / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, context / rel)
    steps = instructions(root / "Dockerfile")
    after = steps[steps.index(("COPY", "--chown=wistro:wistro . .")) + 1 :]
    script = "set -e\nwistro() { " + f"{sys.executable} -m wistro " + '"$@"; }\n'
    script += "\n".join(value for name, value in after if name == "RUN")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WISTRO_") and k != "PAY_SECRET"}
    return subprocess.run(
        ["bash", "-c", script],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )


def test_the_build_steps_pass_and_a_stale_lock_fails_them(make_app: Maker, tmp_path: Path) -> None:
    root = make_project(make_app)
    deploy(root, "compose", env="prod")
    fresh = run_build_steps(root, tmp_path / "context")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "is up to date" in fresh.stdout
    assert not (tmp_path / "context" / ".env.prod").read_text()  # the secret stayed out
    # the sources change after deploy wrote the files: the image build refuses the old lock
    charge = root / "src" / "charge.step.py"
    charge.write_text(charge.read_text() + "# changed\n")
    stale = run_build_steps(root, tmp_path / "stale")
    assert stale.returncode != 0
    assert "wistro.yml.lock is stale" in stale.stderr and "charge.step.py" in stale.stderr


# ---------------------------------------------------------------- the command line


def test_cli_writes_both_targets_and_workers_sets_the_replicas(make_app: Maker) -> None:
    root = make_project(make_app)
    res = wistro_cli("deploy", "--target", "compose", "--env", "prod", "--workers", "3", cwd=root)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # prod keeps bus and state in Redis: no warning
    for name in ("Dockerfile", ".dockerignore", "compose.yaml"):
        assert f"wrote {name}" in res.stdout
    [worker] = [
        s for n, s in docs_of(root / "compose.yaml")[0]["services"].items() if "worker" in n
    ]
    assert worker["deploy"]["replicas"] == 3
    res = wistro_cli(
        "--env", "prod", "deploy", "--target", "kubernetes", "--workers", "3", cwd=root
    )
    assert res.returncode == 0, res.stderr
    assert "unchanged: Dockerfile" in res.stdout and "wrote k8s/start.yaml" in res.stdout
    [worker] = [d for (kind, name), d in k8s(root).items() if "worker" in name]
    assert worker["spec"]["replicas"] == 3


def test_cli_warns_when_the_environment_does_not_use_redis(make_app: Maker) -> None:
    root = make_project(make_app)
    res = wistro_cli("deploy", "--target", "compose", "--env", "staging", cwd=root)
    assert res.returncode == 0, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("warning: wistro.yml: environment 'staging'")
    assert "`bus: {adapter: redis}` and `state: {adapter: redis}`" in line
    assert "`environments: staging:`" in line
    # only state missing: only state named
    cfg = REDIS_ENV.replace("staging: {}", "staging: {bus: {adapter: redis}}")
    plan = deploy(make_project(make_app, cfg), "compose", env="staging").plan
    [warning] = plan.warnings
    assert "`state: {adapter: redis}`" in warning and "bus:" not in warning


def test_cli_bad_target_is_one_line(make_app: Maker) -> None:
    root = make_project(make_app)
    res = wistro_cli("deploy", "--target", "swarm", cwd=root)
    one_line_error(res, "unknown target 'swarm'", "compose, kubernetes")
    assert not (root / "Dockerfile").exists()
    with pytest.raises(WistroError, match="unknown target"):
        deploy(root, "helm")


def test_cli_refuses_a_stale_lock(make_app: Maker) -> None:
    root = make_project(make_app)
    receipt = root / "src" / "receipt.step.py"
    receipt.write_text(receipt.read_text() + "# changed\n")
    res = wistro_cli("deploy", "--target", "compose", cwd=root)
    one_line_error(res, "wistro.yml.lock", "stale", "src/receipt.step.py", "wistro lock")
    assert not (root / "Dockerfile").exists()


def test_cli_does_not_overwrite_a_foreign_file_without_force(make_app: Maker) -> None:
    root = make_project(make_app)
    mine = "FROM alpine\n"
    (root / "Dockerfile").write_text(mine)
    res = wistro_cli("deploy", "--target", "compose", "--env", "prod", cwd=root)
    one_line_error(res, "Dockerfile exists and was not written by `wistro deploy`", "--force")
    assert (root / "Dockerfile").read_text() == mine
    assert not (root / "compose.yaml").exists()  # nothing is written when one file is refused
    res = wistro_cli("deploy", "--target", "compose", "--force", cwd=root)
    assert res.returncode == 0, res.stderr
    assert "environment prod" in res.stdout  # the default environment of a deployment
    assert (root / "Dockerfile").read_text().startswith("# Generated by `wistro deploy`")
    # its own files are rewritten without --force; the same inputs give the same bytes
    before = {p: p.read_bytes() for p in (root / "Dockerfile", root / "compose.yaml")}
    res = wistro_cli("deploy", "--target", "compose", "--env", "prod", cwd=root)
    assert res.returncode == 0, res.stderr
    assert "unchanged: Dockerfile" in res.stdout and "unchanged: compose.yaml" in res.stdout
    assert {p: p.read_bytes() for p in before} == before
    res = wistro_cli("deploy", "--target", "compose", "--env", "prod", "--workers", "5", cwd=root)
    assert res.returncode == 0 and "wrote compose.yaml" in res.stdout


def test_cli_help_and_listing() -> None:
    res = wistro_cli("deploy", "--help", cwd=HERE)
    assert res.returncode == 0
    for option in ("--target", "--out", "--env", "--workers", "--image", "--force"):
        assert option in res.stdout
    assert "deploy" in wistro_cli("--help", cwd=HERE).stdout


# ---------------------------------------------------------------- options and the lock


def test_unknown_environment_and_missing_lock(make_app: Maker) -> None:
    root = make_project(make_app)
    with pytest.raises(ConfigError, match=r"unknown environment 'live' \(known: prod, staging\)"):
        deploy(root, "compose", env="live")
    (root / "wistro.yml.lock").unlink()
    with pytest.raises(LockError, match="no lock file"):
        deploy(root, "compose", env="prod")


def test_image_out_folder_and_version_label(make_app: Maker, tmp_path: Path) -> None:
    root = make_project(make_app)
    out = root / "deploy"
    plan = deploy(root, "compose", env="prod", out=out, image="ghcr.io/acme/shop").plan
    assert plan.image == f"ghcr.io/acme/shop:{plan.tag}"
    doc = docs_of(out / "compose.yaml")[0]
    validate_compose(doc)
    assert doc["services"]["start"]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert doc["services"]["start"]["env_file"] == ["../.env.prod"]
    assert (root / "Dockerfile").is_file() and not (out / "Dockerfile").exists()
    assert deploy(root, "compose", env="prod", image="localhost:5000/shop:v1").plan.image == (
        "localhost:5000/shop:v1"
    )
    # a lock that carries a label names the version by it
    set_lock(root, label="Blue Green")
    plan = deploy(root, "kubernetes", env="prod").plan
    assert plan.tag == "blue-green"
    worker = k8s(root)["Deployment", "shop-floor-worker-blue-green"]
    validate_k8s(worker)
    assert worker["metadata"]["labels"]["app.kubernetes.io/version"] == "blue-green"
