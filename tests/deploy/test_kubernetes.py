"""deploy/kubernetes, checked offline: no cluster runs here.

Each overlay is rendered with `kubectl kustomize`; every object is validated in
strict mode against the schemas of one Kubernetes version (kubernetes-validate
bundles them), the ScaledObjects against KEDA's CRD (tests/deploy/data); then
what no schema can see: probes on served ports, Services and budgets that select
pods, references to ConfigMaps and Secrets that exist, non-root containers with
limits, and the scaler's metadata as the scheduler reads it.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agentmesh.scheduler.backlog import Pool
from tests.deploy.kube import (
    KUBERNETES_VERSION,
    OPERATOR_SUPPLIED_SECRETS,
    OVERLAYS,
    ROOT,
    TLS_OVERLAYS,
    Obj,
    containers,
    env_value,
    named,
    of_kind,
    pod_templates,
    rendered,
    selects,
)

DATA = Path(__file__).parent / "data"
#: KEDA's CRDs, by the kind they define (tests/deploy/data/README.md says where from).
KEDA_CRDS = {
    "ScaledObject": DATA / "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": DATA / "keda.sh_triggerauthentications.yaml",
}

overlays = pytest.mark.parametrize("overlay", OVERLAYS)


@overlays
def test_the_overlay_renders_a_scheduler_and_its_pools(overlay: str) -> None:
    objects = rendered(overlay)
    deployments = {d["metadata"]["name"] for d in of_kind(objects, "Deployment")}
    assert "agentmesh-scheduler" in deployments
    pools = {d for d in deployments if d.startswith("agentmesh-workers-")}
    assert (
        pools
        == {
            "dev": {"agentmesh-workers-builtin"},
            "production": {f"agentmesh-workers-{t}" for t in ("builtin", "small", "large")},
        }[overlay]
    )
    # One ScaledObject and one PodDisruptionBudget per pool, aimed at it.
    targets = {s["spec"]["scaleTargetRef"]["name"] for s in of_kind(objects, "ScaledObject")}
    assert targets == pools
    assert {p["metadata"]["name"] for p in of_kind(objects, "PodDisruptionBudget")} == pools
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert len(namespaces) == 1 and None not in namespaces


@overlays
def test_every_object_validates_strictly_for_the_stated_kubernetes_version(overlay: str) -> None:
    checked = 0
    for o in rendered(overlay):
        if o["apiVersion"].startswith("keda.sh/"):
            continue  # KEDA's: against its CRD, below
        kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        checked += 1
    print(f"{overlay}: {checked} objects valid for Kubernetes {KUBERNETES_VERSION}")
    assert checked >= 10


def test_strict_validation_refuses_an_unknown_field() -> None:
    deployment = copy.deepcopy(named(rendered("dev"), "Deployment", "agentmesh-scheduler"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcPort"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@functools.cache
def keda_schema(kind: str = "ScaledObject") -> dict[str, Any]:
    """The schema of one of KEDA's kinds, strict: an unknown field is refused, as the API
    server's strict field validation refuses it (a structural schema prunes what it does
    not list)."""
    (crd,) = [d for d in yaml.safe_load_all(KEDA_CRDS[kind].read_text()) if d]
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    # metadata is the ObjectMeta's, which the CRD leaves open.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


@overlays
def test_every_keda_object_validates_against_keda_s_crd(overlay: str) -> None:
    objects = rendered(overlay)
    assert of_kind(objects, "ScaledObject")
    keda = [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    for o in keda:
        assert o["apiVersion"] == "keda.sh/v1alpha1"
        jsonschema.validate(o, keda_schema(o["kind"]))
    # With TLS, KEDA calls the scaler with the credentials of a TriggerAuthentication.
    authentications = of_kind(objects, "TriggerAuthentication")
    assert bool(authentications) == (overlay in TLS_OVERLAYS)
    print(f"{overlay}: {len(keda)} KEDA objects valid against KEDA's CRDs")


def test_the_crd_schemas_refuse_a_misspelt_field() -> None:
    scaled = copy.deepcopy(of_kind(rendered("dev"), "ScaledObject")[0])
    scaled["spec"]["minReplicas"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, keda_schema())
    authentication = copy.deepcopy(of_kind(rendered(TLS_OVERLAYS[0]), "TriggerAuthentication")[0])
    authentication["spec"]["secretTargetRef"][0]["secret"] = "agentmesh-ca"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(authentication, keda_schema("TriggerAuthentication"))


@overlays
def test_every_scaledobject_names_a_pool_the_scheduler_serves(overlay: str) -> None:
    objects = rendered(overlay)
    scheduler = named(objects, "Service", "agentmesh-scheduler")
    grpc_port = next(p["port"] for p in scheduler["spec"]["ports"] if p["name"] == "grpc")
    for o in of_kind(objects, "ScaledObject"):
        (trigger,) = o["spec"]["triggers"]
        assert trigger["type"] == "external-push"
        assert trigger["metadata"]["scalerAddress"] == f"agentmesh-scheduler:{grpc_port}"
        pool = Pool.from_metadata(trigger["metadata"])  # the scheduler's own parsing
        target = named(objects, "Deployment", o["spec"]["scaleTargetRef"]["name"])
        (worker,) = target["spec"]["template"]["spec"]["containers"]
        assert pool.tier is not None and env_value(worker, "AGENTMESH_TIER") == pool.tier.label
        assert int(trigger["metadata"]["workerCapacity"]) == int(
            env_value(worker, "AGENTMESH_CAPACITY") or 0
        )
        assert 0 <= o["spec"]["minReplicaCount"] <= o["spec"]["maxReplicaCount"]


# -- what the schemas cannot check -----------------------------------------------------

LISTEN = {"scheduler": "AGENTMESH_LISTEN", "worker": "AGENTMESH_WORKER_LISTEN"}
METRICS = {"scheduler": "AGENTMESH_METRICS_LISTEN", "worker": "AGENTMESH_WORKER_METRICS_LISTEN"}


def _port(address: str | None) -> int:
    assert address, "no address set"
    return int(address.rpartition(":")[2])


@overlays
def test_probes_and_ports_are_the_ones_the_processes_serve(overlay: str) -> None:
    for _, template in pod_templates(rendered(overlay)):
        for c in containers(template):
            role = c["args"][0]
            served = _port(env_value(c, LISTEN[role]))
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert ports["grpc"] == served
            assert ports["metrics"] == _port(env_value(c, METRICS[role]))
            # Not loopback: other pods reach it.
            assert (env_value(c, LISTEN[role]) or "").startswith("0.0.0.0:")
            for probe in ("readinessProbe", "livenessProbe"):
                if overlay in TLS_OVERLAYS:
                    # `agentmesh health` in the pod, with its certificate: test_kubernetes_tls.
                    assert "grpc" not in c[probe], (c["name"], probe)
                    assert f"--target=127.0.0.1:{served}" in c[probe]["exec"]["command"]
                    continue
                # Kubernetes' native gRPC probe, on the standard health service.
                assert c[probe]["grpc"]["port"] == served, (c["name"], probe)
                assert c[probe]["grpc"].get("service", "") == ""
            if role == "worker":
                assert env_value(c, "AGENTMESH_WORKER_ADVERTISE") == f"$(POD_IP):{served}"
                names = [v["name"] for v in c["env"]]
                assert names.index("POD_IP") < names.index("AGENTMESH_WORKER_ADVERTISE")


def _pods(objects: tuple[Obj, ...]) -> list[tuple[dict[str, str], Obj]]:
    return [(t["metadata"]["labels"], t) for _, t in pod_templates(objects)]


@overlays
def test_services_budgets_and_policies_select_existing_pods(overlay: str) -> None:
    objects = rendered(overlay)
    pods = _pods(objects)
    for service in of_kind(objects, "Service"):
        chosen = [t for labels, t in pods if selects(service["spec"]["selector"], labels)]
        assert chosen, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            for t in chosen:
                names = {p["name"] for c in containers(t) for p in c.get("ports", [])}
                assert port["targetPort"] in names
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for o in of_kind(objects, kind):
            key = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            selector = o["spec"][key]["matchLabels"]
            assert any(selects(selector, labels) for labels, _ in pods), o["metadata"]["name"]
    for deployment in of_kind(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(deployment["spec"]["selector"]["matchLabels"], labels)


@overlays
def test_the_network_policies_let_workers_reach_the_scheduler_and_only_it_reach_them(
    overlay: str,
) -> None:
    objects = rendered(overlay)
    scheduler = named(objects, "NetworkPolicy", "agentmesh-scheduler")
    sources = [
        f.get("podSelector", {}).get("matchLabels") for f in scheduler["spec"]["ingress"][0]["from"]
    ]
    assert {
        "app.kubernetes.io/name": "agentmesh",
        "app.kubernetes.io/component": "worker",
    } in sources
    workers = named(objects, "NetworkPolicy", "agentmesh-workers")
    grpc_rule = next(r for r in workers["spec"]["ingress"] if r["ports"][0]["port"] == "grpc")
    (only,) = grpc_rule["from"]
    assert only == {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "agentmesh",
                "app.kubernetes.io/component": "scheduler",
            }
        }
    }


def _references(template: Obj) -> tuple[set[str], set[str]]:
    """The ConfigMaps and Secrets a pod template refers to."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    for volume in template["spec"].get("volumes", []):
        if "configMap" in volume:
            config_maps.add(volume["configMap"]["name"])
        if "secret" in volume:
            secrets.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                config_maps.add(source["configMap"]["name"])
            if "secret" in source:
                secrets.add(source["secret"]["name"])
    for c in containers(template):
        for var in c.get("env", []):
            ref = var.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                config_maps.add(ref["configMapKeyRef"]["name"])
            if "secretKeyRef" in ref:
                secrets.add(ref["secretKeyRef"]["name"])
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                config_maps.add(source["configMapRef"]["name"])
            if "secretRef" in source:
                secrets.add(source["secretRef"]["name"])
    return config_maps, secrets


@overlays
def test_every_configmap_and_secret_referenced_exists_or_is_the_operator_s(overlay: str) -> None:
    objects = rendered(overlay)
    config_maps = {o["metadata"]["name"] for o in of_kind(objects, "ConfigMap")}
    secrets = {o["metadata"]["name"] for o in of_kind(objects, "Secret")}
    claims = {o["metadata"]["name"] for o in of_kind(objects, "PersistentVolumeClaim")}
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    for _, template in pod_templates(objects):
        wanted_maps, wanted_secrets = _references(template)
        assert wanted_maps <= config_maps, wanted_maps - config_maps
        for secret in wanted_secrets - secrets:
            assert secret in OPERATOR_SUPPLIED_SECRETS, f"Secret {secret} comes from nowhere"
            assert f"`{secret}`" in docs, f"docs/kubernetes.md does not say to create {secret}"
        for volume in template["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        mounted = {m["name"] for c in containers(template) for m in c.get("volumeMounts", [])}
        assert mounted == {v["name"] for v in template["spec"].get("volumes", [])}


@overlays
def test_every_container_runs_as_non_root_read_only_with_limits(overlay: str) -> None:
    count = 0
    for workload, template in pod_templates(rendered(overlay)):
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
        assert pod["seccompProfile"]["type"] == "RuntimeDefault"
        assert template["spec"]["automountServiceAccountToken"] is False
        for c in containers(template):
            count += 1
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert context.get("runAsUser", pod["runAsUser"]) != 0
            resources = c["resources"]
            assert {"cpu", "memory"} <= resources["limits"].keys(), workload["metadata"]["name"]
            assert {"cpu", "memory"} <= resources["requests"].keys()
    assert count >= 2


@overlays
def test_the_observability_configmaps_are_the_repository_s_files(overlay: str) -> None:
    objects = rendered(overlay)
    prometheus = named(objects, "ConfigMap", "agentmesh-prometheus")["data"]
    deploy = ROOT / "deploy"
    assert prometheus["prometheus.yml"] == (deploy / "prometheus" / "kubernetes.yml").read_text()
    rules = (deploy / "prometheus" / "rules" / "agentmesh.rules.yml").read_text()
    assert prometheus["agentmesh.rules.yml"] == rules
    config = yaml.safe_load(prometheus["prometheus.yml"])
    assert set(config["rule_files"]) <= prometheus.keys()
    # The job names the alert rules and the dashboard use, as in the local configuration.
    local = yaml.safe_load((deploy / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    assert jobs == {j["job_name"] for j in local["scrape_configs"]}
    grafana = named(objects, "ConfigMap", "agentmesh-grafana-dashboard")
    dashboard = (deploy / "grafana" / "dashboards" / "agentmesh.json").read_text()
    assert grafana["data"]["agentmesh.json"] == dashboard
    assert grafana["metadata"]["labels"]["grafana_dashboard"] == "1"


@overlays
def test_workflows_and_skill_files_are_configmaps_the_pods_mount(overlay: str) -> None:
    objects = rendered(overlay)
    example = ROOT / "examples" / "agents" / "returns"
    by_prefix = {o["metadata"]["name"].rsplit("-", 1)[0]: o for o in of_kind(objects, "ConfigMap")}
    workflows = by_prefix["agentmesh-workflows"]["data"]
    assert (
        workflows["order_return.toml"] == (example / "workflows" / "order_return.toml").read_text()
    )
    scheduler = named(objects, "Deployment", "agentmesh-scheduler")["spec"]["template"]
    (container,) = scheduler["spec"]["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "workflows")
    assert env_value(container, "AGENTMESH_WORKFLOWS_DIR") == mount["mountPath"]
