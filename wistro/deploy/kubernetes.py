"""The ``k8s/`` manifests of ``wistro deploy --target kubernetes``, one file per job:

- ``config.yaml``: the ConfigMap ``<project>-config`` (``REDIS_URL``); secrets go in a Secret
  ``<project>-secrets`` that every container reads when it exists (``envFrom``, optional);
- ``redis.yaml``: a headless Service and a StatefulSet (append-only file on a volume claim);
- ``start.yaml``: the Deployment and Service of ``wistro start`` (HTTP and cron), with readiness
  and liveness probes on ``/_wistro/health``;
- ``worker-<version>.yaml``: the Deployment of one version's workers. A new version adds a file
  and leaves the older ones, so several versions can run side by side.
"""

from __future__ import annotations

from typing import Any

from wistro.deploy.output import to_yaml
from wistro.deploy.plan import GRACE_S, HEALTH_PATH, PORT, REDIS_IMAGE, STOP_GRACE_S, UID, Plan

NAME = "app.kubernetes.io/name"
VERSION = "app.kubernetes.io/version"
COMPONENT = "app.kubernetes.io/component"
FULL_VERSION = "wistro.dev/version"  # an annotation: the whole hash (a label holds 63 chars)


def _labels(plan: Plan, component: str, name: str | None = None) -> dict[str, str]:
    return {
        NAME: name or plan.slug,
        COMPONENT: component,
        "app.kubernetes.io/part-of": plan.slug,
        "app.kubernetes.io/managed-by": "wistro",
    }


def _metadata(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "labels": labels}


def _app_container(plan: Plan, name: str, command: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["wistro", "--env", plan.env, *command, "--grace-s", str(GRACE_S)],
        "envFrom": [
            {"configMapRef": {"name": f"{plan.slug}-config"}},
            {"secretRef": {"name": f"{plan.slug}-secrets", "optional": True}},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    }


def _app_deployment(
    plan: Plan, name: str, selector: dict[str, str], replicas: int, container: dict[str, Any]
) -> dict[str, Any]:
    labels = {**selector, VERSION: plan.tag}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": {FULL_VERSION: plan.version}},
                "spec": {
                    # longer than --grace-s: in-flight work finishes before the SIGKILL
                    "terminationGracePeriodSeconds": STOP_GRACE_S,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID},
                    "containers": [container],
                },
            },
        },
    }


def config_map(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(f"{plan.slug}-config", _labels(plan, "config")),
        "data": {"REDIS_URL": f"redis://{plan.slug}-redis:6379/0"},
    }


def redis(plan: Plan) -> list[dict[str, Any]]:
    name = f"{plan.slug}-redis"
    selector = {NAME: "redis", "app.kubernetes.io/instance": name}
    labels = {**_labels(plan, "redis", "redis"), **selector}
    ping = {"exec": {"command": ["redis-cli", "ping"]}}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, labels),
        "spec": {
            "clusterIP": "None",
            "selector": selector,
            "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}],
        },
    }
    container = {
        "name": "redis",
        "image": REDIS_IMAGE,
        "args": ["redis-server", "--appendonly", "yes"],
        "ports": [{"name": "redis", "containerPort": 6379}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": {**ping, "periodSeconds": 5},
        "livenessProbe": {**ping, "initialDelaySeconds": 10, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    }
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(name, labels),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    return [service, stateful_set]


def start(plan: Plan) -> list[dict[str, Any]]:
    name = f"{plan.slug}-start"
    selector = _labels(plan, "start")
    container = _app_container(
        plan, "start", ["start", "--host", "0.0.0.0", "--port", str(PORT), "--no-workers"]
    )
    health = {"httpGet": {"path": HEALTH_PATH, "port": "http"}}
    container["ports"] = [{"name": "http", "containerPort": PORT}]
    container["readinessProbe"] = {**health, "periodSeconds": 5, "timeoutSeconds": 3}
    container["livenessProbe"] = {
        **health,
        "initialDelaySeconds": 15,
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, selector),
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }
    return [_app_deployment(plan, name, selector, 1, container), service]


def worker(plan: Plan) -> dict[str, Any]:
    selector = {**_labels(plan, "worker"), VERSION: plan.tag}
    container = _app_container(plan, "worker", ["worker"])
    return _app_deployment(
        plan, f"{plan.slug}-worker-{plan.tag}", selector, plan.workers, container
    )


def manifests(plan: Plan) -> dict[str, str]:
    """``{file name under k8s/: text}``."""
    header = plan.header()
    secret = f"{plan.slug}-secrets"
    if plan.env_files_of_env:
        source = f"--from-env-file={plan.env_files_of_env[-1]}"
    else:
        source = f"--from-literal={(plan.variables or ('NAME',))[0]}=..."
    secrets = [
        f"# Secrets go in a Secret named {secret}, which every wistro container reads when it",
        f"# exists: kubectl create secret generic {secret} {source}",
    ]
    if plan.variables:
        secrets.append(f"# The project reads {', '.join(plan.variables)}.")
    return {
        "config.yaml": to_yaml([config_map(plan)], [*header, *secrets]),
        "redis.yaml": to_yaml(redis(plan), header),
        "start.yaml": to_yaml(start(plan), header),
        f"worker-{plan.tag}.yaml": to_yaml([worker(plan)], header),
    }
