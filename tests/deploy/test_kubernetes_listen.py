"""The manifests' processes start under the loopback rule: a scheduler or worker that
listens beyond loopback has TLS configured or says AGENTMESH_INSECURE=1 (docs/security.md),
else it would stop at start."""

from __future__ import annotations

import pytest

from agentmesh.server.tls import InsecureListen, check_listen
from agentmesh.tls import TlsConfig
from tests.deploy.kube import OVERLAYS, containers, env_value, pod_templates, rendered

#: The listen setting of each process, and its default.
LISTEN = {
    "scheduler": ("AGENTMESH_LISTEN", "127.0.0.1:50051"),
    "worker": ("AGENTMESH_WORKER_LISTEN", "127.0.0.1:0"),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_server_listening_beyond_loopback_may_start(overlay: str) -> None:
    checked = 0
    for workload, template in pod_templates(rendered(overlay)):
        for container in containers(template):
            args = container.get("args") or []
            if not args or args[0] not in LISTEN:
                continue
            setting, default = LISTEN[args[0]]
            listen = env_value(container, setting) or default
            tls = env_value(container, "AGENTMESH_TLS_CA")
            insecure = (env_value(container, "AGENTMESH_INSECURE") or "") in ("1", "true")
            # The files live in the cluster: a CA named means TLS on, for this check.
            settings = TlsConfig(insecure=insecure)
            name = f"{workload['metadata']['name']}/{container['name']}"
            if not tls:
                try:
                    check_listen(listen, settings, setting)
                except InsecureListen as error:
                    raise AssertionError(f"{overlay}: {name} would not start: {error}") from None
            checked += 1
    assert checked >= 2
