"""The manifests' processes start under the loopback rule: a scheduler or worker that
listens beyond loopback has TLS configured or says AGENTMESH_INSECURE=1 (docs/security.md),
else it would stop at start. A container with TLS gets its settings read as the process
reads them (TlsConfig.from_env), with files standing in for the mounted ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmesh.scheduler.certs import issue, make_ca
from agentmesh.server.tls import InsecureListen, check_listen
from agentmesh.tls import TlsConfig
from tests.deploy.kube import (
    OVERLAYS,
    TLS_OVERLAYS,
    Obj,
    containers,
    env_value,
    pod_templates,
    rendered,
)

#: The listen setting of each process, and its default.
LISTEN = {
    "scheduler": ("AGENTMESH_LISTEN", "127.0.0.1:50051"),
    "worker": ("AGENTMESH_WORKER_LISTEN", "127.0.0.1:0"),
}

TLS_FILES = ("AGENTMESH_TLS_CERT", "AGENTMESH_TLS_KEY", "AGENTMESH_TLS_CA")


def settings_of(container: Obj, files: Path) -> TlsConfig:
    """The container's TLS settings, each file it names made under `files`."""
    env = {v["name"]: v["value"] for v in container.get("env", []) if "value" in v}
    if any(name in env for name in TLS_FILES):
        ca = make_ca()
        leaf = issue(ca, ["scheduler.agentmesh.local"])
        pems = {
            "AGENTMESH_TLS_CA": ca.cert_pem,
            "AGENTMESH_TLS_CERT": leaf.cert_pem,
            "AGENTMESH_TLS_KEY": leaf.key_pem,
        }
        for name in TLS_FILES:
            if name in env:
                local = files / env[name].lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(pems[name])
                env[name] = str(local)
    return TlsConfig.from_env(env)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_server_listening_beyond_loopback_may_start(overlay: str, tmp_path: Path) -> None:
    checked = 0
    for workload, template in pod_templates(rendered(overlay)):
        for container in containers(template):
            args = container.get("args") or []
            if not args or args[0] not in LISTEN:
                continue
            setting, default = LISTEN[args[0]]
            listen = env_value(container, setting) or default
            name = f"{workload['metadata']['name']}/{container['name']}"
            settings = settings_of(container, tmp_path / name)
            assert settings.enabled == (overlay in TLS_OVERLAYS), name
            try:
                check_listen(listen, settings, setting)
            except InsecureListen as error:
                raise AssertionError(f"{overlay}: {name} would not start: {error}") from None
            checked += 1
    assert checked >= 2
