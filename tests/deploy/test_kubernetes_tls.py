"""deploy/kubernetes with mutual TLS (components/tls, in the overlays of TLS_OVERLAYS),
checked offline for what no schema sees: no server says AGENTMESH_INSECURE; every file
an AGENTMESH_TLS_* variable names is in a volume mounted there; each worker pod's
certificate names the worker id it runs as; the probes are `agentmesh health` commands
the image has, asking the pod's own server by the name its certificate holds; KEDA
calls the scaler with a certificate; every Secret is one docs/kubernetes.md tells the
operator to create, and the certificates it shows fit the names the pods verify."""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentmesh import cli
from agentmesh.scheduler.certs import issue, make_ca
from agentmesh.server.tls import Peer, own_worker_id
from agentmesh.tls import TlsConfig, client_name, scheduler_name
from tests.deploy.kube import (
    OPERATOR_SUPPLIED_SECRETS,
    ROOT,
    TLS_OVERLAYS,
    Obj,
    containers,
    env_value,
    named,
    of_kind,
    pod_templates,
    rendered,
)
from tests.support.mesh import Mesh

tls_overlays = pytest.mark.parametrize("overlay", TLS_OVERLAYS)

TLS_FILES = ("AGENTMESH_TLS_CERT", "AGENTMESH_TLS_KEY", "AGENTMESH_TLS_CA")
CSI = "csi.cert-manager.io"
#: The files cert-manager's CSI driver writes, by the attribute that renames each.
CSI_FILES = {"certificate-file": "tls.crt", "privatekey-file": "tls.key", "ca-file": "ca.crt"}
#: The image's command (the Dockerfile's virtual environment).
AGENTMESH = "/opt/agentmesh/bin/agentmesh"
DOCS = ROOT / "docs" / "kubernetes.md"


def _domain(container: Obj) -> str:
    return env_value(container, "AGENTMESH_TLS_DOMAIN") or "agentmesh.local"


def _files(volume: Obj) -> set[str]:
    """The file names a volume holds (a Secret's listed items: no listing, no check)."""
    if "secret" in volume:
        return {i["path"] for i in volume["secret"]["items"]}
    if "projected" in volume:
        sources = volume["projected"]["sources"]
        return {
            i["path"]
            for s in sources
            for kind in ("secret", "configMap")
            if kind in s
            for i in s[kind]["items"]
        }
    if volume.get("csi", {}).get("driver") == CSI:
        attributes = volume["csi"]["volumeAttributes"]
        return {attributes.get(f"{CSI}/{key}", name) for key, name in CSI_FILES.items()}
    raise AssertionError(f"volume {volume['name']} holds no TLS files")


def _volume_of(template: Obj, container: Obj, path: str) -> Obj:
    """The volume whose mount holds `path`, which must be one of its files."""
    folder, name = posixpath.split(path)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == folder]
    assert mount.get("readOnly") is True, mount
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
    assert name in _files(volume), f"{path}: the volume {volume['name']} has no {name}"
    return volume


def _workers(objects: tuple[Obj, ...]) -> list[tuple[Obj, Obj, Obj]]:
    """Each worker Deployment, its pod template and its container."""
    return [
        (w, t, c)
        for w, t in pod_templates(objects)
        for c in containers(t)
        if c["args"][0] == "worker"
    ]


@tls_overlays
def test_every_server_has_tls_and_none_says_insecure(overlay: str) -> None:
    checked = 0
    for workload, template in pod_templates(rendered(overlay)):
        for c in containers(template):
            names = {v["name"] for v in c.get("env", [])}
            assert "AGENTMESH_INSECURE" not in names, workload["metadata"]["name"]
            assert set(TLS_FILES) <= names, workload["metadata"]["name"]
            checked += 1
    assert checked >= 4


@tls_overlays
def test_every_tls_file_a_variable_names_is_mounted(overlay: str) -> None:
    checked = 0
    for _, template in pod_templates(rendered(overlay)):
        for c in containers(template):
            for variable in TLS_FILES:
                path = env_value(c, variable)
                assert path and path.startswith("/"), (c["name"], variable)
                _volume_of(template, c, path)
                checked += 1
    print(f"{overlay}: {checked} TLS files mounted where their variables say")
    assert checked >= 12


@tls_overlays
def test_each_worker_s_certificate_names_the_worker_id_it_runs_as(
    overlay: str, tmp_path: Path
) -> None:
    ca = make_ca()
    ca_file, _ = ca.write(tmp_path, "ca")
    for workload, template, c in _workers(rendered(overlay)):
        # The worker id is the pod's name...
        (var,) = [v for v in c["env"] if v["name"] == "AGENTMESH_WORKER_ID"]
        assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        # ...and the CSI driver names the certificate for the pod's name.
        volume = _volume_of(template, c, env_value(c, "AGENTMESH_TLS_CERT") or "")
        attributes = volume["csi"]["volumeAttributes"]
        assert attributes[f"{CSI}/issuer-name"], workload["metadata"]["name"]
        assert "server auth" in attributes[f"{CSI}/key-usages"]
        assert "client auth" in attributes[f"{CSI}/key-usages"]
        # A pod of this Deployment, named as the ReplicaSet names its pods.
        pod = f"{workload['metadata']['name']}-7c9d8b6f5-x2k4p"
        names = attributes[f"{CSI}/dns-names"].replace("${POD_NAME}", pod).split(",")
        assert Peer(tuple(names), _domain(c)).worker_ids == {pod}
        # The worker's own check at start, on such a certificate: it runs as the pod.
        cert, key = issue(ca, names).write(tmp_path, pod)
        settings = TlsConfig(cert=str(cert), key=str(key), ca=str(ca_file), domain=_domain(c))
        assert own_worker_id(settings, pod) == pod
        with pytest.raises(ValueError, match="names worker"):
            own_worker_id(settings, f"{pod}-other")


@tls_overlays
def test_the_probes_ask_the_pod_s_own_server_with_its_certificate(overlay: str) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "python -m venv /opt/agentmesh" in dockerfile
    for _, template in pod_templates(rendered(overlay)):
        for c in containers(template):
            role = c["args"][0]
            served = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
            for probe in ("readinessProbe", "livenessProbe"):
                command = c[probe]["exec"]["command"]
                assert command[0] == AGENTMESH
                # The CLI's own parser: `agentmesh health` and its flags.
                args = cli.parser().parse_args(command[1:])
                assert args.handler is cli.cmd_health
                assert args.target == f"127.0.0.1:{served}"
                # A Python process asking once takes a fraction of a second.
                assert c[probe]["timeoutSeconds"] >= 3
                if role == "scheduler":
                    assert args.tls_server_name == scheduler_name(_domain(c))
                else:
                    # The name of the worker id, AGENTMESH_WORKER_ID in the pod.
                    assert args.worker == "" and args.tls_server_name is None
                    assert any(v["name"] == "AGENTMESH_WORKER_ID" for v in c["env"])


def _documented_certificates() -> dict[str, Obj]:
    """cert-manager's objects docs/kubernetes.md shows in its TLS section, by name."""
    text = DOCS.read_text()
    section = text[text.index("\n## TLS") :]
    found: dict[str, Obj] = {}
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        for o in yaml.safe_load_all(block):
            if o and o.get("apiVersion", "").startswith("cert-manager.io/"):
                found[o["metadata"]["name"]] = o
    return found


@tls_overlays
def test_keda_calls_the_scaler_with_a_certificate_the_scheduler_accepts(overlay: str) -> None:
    objects = rendered(overlay)
    documented = _documented_certificates()
    scheduler = next(
        o for o in documented.values() if o["spec"].get("secretName") == "agentmesh-scheduler-tls"
    )
    for scaled in of_kind(objects, "ScaledObject"):
        (trigger,) = scaled["spec"]["triggers"]
        reference = trigger["authenticationRef"]
        assert reference.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
        authentication = named(objects, "TriggerAuthentication", reference["name"])
        refs = authentication["spec"]["secretTargetRef"]
        assert {r["parameter"] for r in refs} == {"caCert", "tlsClientCert", "tlsClientKey"}
        (secret,) = {r["name"] for r in refs}
        # KEDA verifies the scheduler by the host it dials.
        host = trigger["metadata"]["scalerAddress"].rpartition(":")[0]
        assert host in scheduler["spec"]["dnsNames"]
        (keda,) = [o for o in documented.values() if o["spec"].get("secretName") == secret]
        assert keda["spec"]["dnsNames"] == [client_name("keda", "agentmesh.local")]
        assert "client auth" in keda["spec"]["usages"]


@tls_overlays
def test_the_documented_certificates_carry_the_names_the_pods_verify(overlay: str) -> None:
    objects = rendered(overlay)
    documented = _documented_certificates()
    (scheduler_pod,) = [
        c for _, t in pod_templates(objects) for c in containers(t) if c["args"][0] == "scheduler"
    ]
    scheduler = next(
        o for o in documented.values() if o["spec"].get("secretName") == "agentmesh-scheduler-tls"
    )
    names = scheduler["spec"]["dnsNames"]
    assert scheduler_name(_domain(scheduler_pod)) in names  # workers and the probe verify it
    service = named(objects, "Service", "agentmesh-scheduler")["metadata"]
    assert {"agentmesh-scheduler", f"agentmesh-scheduler.{service['namespace']}.svc"} <= set(names)
    assert {"server auth", "client auth"} <= set(scheduler["spec"]["usages"])
    # The workers' Issuer is the documented one, signing with the mesh's CA.
    for _, template, c in _workers(objects):
        volume = _volume_of(template, c, env_value(c, "AGENTMESH_TLS_CERT") or "")
        issuer = volume["csi"]["volumeAttributes"][f"{CSI}/issuer-name"]
        assert documented[issuer]["kind"] == volume["csi"]["volumeAttributes"][f"{CSI}/issuer-kind"]
        assert scheduler["spec"]["issuerRef"]["name"] == issuer


@tls_overlays
def test_every_secret_is_one_the_operator_is_told_to_create(overlay: str) -> None:
    objects = rendered(overlay)
    wanted: set[str] = set()
    for _, template in pod_templates(objects):
        for volume in template["spec"]["volumes"]:
            if "secret" in volume:
                wanted.add(volume["secret"]["secretName"])
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    wanted.add(source["secret"]["name"])
    for authentication in of_kind(objects, "TriggerAuthentication"):
        wanted |= {r["name"] for r in authentication["spec"]["secretTargetRef"]}
    assert {"agentmesh-scheduler-tls", "agentmesh-ca", "agentmesh-keda-tls"} <= wanted
    text = DOCS.read_text()
    section = text[text.index("\n## TLS") :]
    for secret in wanted:
        assert secret in OPERATOR_SUPPLIED_SECRETS, f"Secret {secret} comes from nowhere"
        assert f"`{secret}`" in section, f"docs/kubernetes.md's TLS section omits {secret}"


@pytest.mark.integration
@tls_overlays
def test_the_manifests_probe_commands_pass_against_a_real_tls_mesh(
    overlay: str, tmp_path: Path
) -> None:
    """The probes exactly as rendered, the image's command and port aside, run against a
    scheduler and a worker on certificates made as the manifests make them (the worker's
    from the CSI volume's names, for a pod's name): each answers SERVING."""
    objects = rendered(overlay)
    ca = make_ca()
    ca_file, _ = ca.write(tmp_path, "ca")
    documented = _documented_certificates()
    scheduler_names = next(
        o for o in documented.values() if o["spec"].get("secretName") == "agentmesh-scheduler-tls"
    )["spec"]["dnsNames"]
    (scheduler_c,) = [
        c for _, t in pod_templates(objects) for c in containers(t) if c["args"][0] == "scheduler"
    ]
    workload, template, worker_c = _workers(objects)[0]
    pod = f"{workload['metadata']['name']}-7c9d8b6f5-x2k4p"
    volume = _volume_of(template, worker_c, env_value(worker_c, "AGENTMESH_TLS_CERT") or "")
    worker_names = volume["csi"]["volumeAttributes"][f"{CSI}/dns-names"]
    identities = {}
    for stem, names in (
        ("scheduler", scheduler_names),
        ("worker", worker_names.replace("${POD_NAME}", pod).split(",")),
    ):
        cert, key = issue(ca, names).write(tmp_path, stem)
        identities[stem] = {
            "AGENTMESH_TLS_CA": str(ca_file),
            "AGENTMESH_TLS_CERT": str(cert),
            "AGENTMESH_TLS_KEY": str(key),
            "AGENTMESH_TLS_DOMAIN": _domain(scheduler_c),
        }
    client_cert, client_key = issue(ca, [client_name("tests", "agentmesh.local")]).write(
        tmp_path, "client"
    )
    client = TlsConfig(
        cert=str(client_cert),
        key=str(client_key),
        ca=str(ca_file),
        server_name=scheduler_name(_domain(scheduler_c)),
    )
    (tmp_path / "mesh").mkdir()
    mesh = Mesh(tmp_path / "mesh", client_tls=client, **identities["scheduler"])
    try:
        mesh.start_scheduler()
        mesh.start_worker(pod, **identities["worker"])
        mesh.wait_workers({pod})
        served = {"scheduler": mesh.target, "worker": mesh.ports(pod).grpc}
        env = {
            "scheduler": identities["scheduler"],
            "worker": {**identities["worker"], "AGENTMESH_WORKER_ID": pod},
        }
        for role, c in (("scheduler", scheduler_c), ("worker", worker_c)):
            port = served[role].rpartition(":")[2]
            for probe in ("readinessProbe", "livenessProbe"):
                command = [
                    re.sub(r"^--target=127\.0\.0\.1:\d+$", f"--target=127.0.0.1:{port}", arg)
                    for arg in c[probe]["exec"]["command"]
                ]
                command[0] = str(Path(sys.executable).parent / "agentmesh")
                clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
                done = subprocess.run(
                    command, env={**clean, **env[role]}, capture_output=True, text=True, timeout=60
                )
                assert done.returncode == 0, (role, probe, done.stderr)
                assert done.stdout == "SERVING\n"
    finally:
        mesh.stop()
