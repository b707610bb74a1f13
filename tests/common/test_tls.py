"""TLS settings, the loopback rule and identities read from certificates: the pure parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmesh.server.tls import (
    InsecureListen,
    Peer,
    certificate_names,
    check_listen,
    clients_only,
    clients_or_workers,
    is_loopback,
    own_worker_id,
    scheduler_only,
    workers_only,
)
from agentmesh.tls import TlsConfig
from tests.support.tls import Certs

DOMAIN = "agentmesh.local"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


def test_tls_is_off_by_default_and_on_with_all_three_files(certs: Certs) -> None:
    assert not TlsConfig.from_env({}).enabled
    worker = certs.worker("w1")
    config = TlsConfig.from_env(worker.env)
    assert config.enabled and config.cert == str(worker.cert) and config.domain == DOMAIN


def test_tls_refuses_a_partial_or_missing_set_of_files(certs: Certs, tmp_path: Path) -> None:
    worker = certs.worker("w1")
    with pytest.raises(ValueError, match="set AGENTMESH_TLS_KEY"):
        TlsConfig.from_env({**worker.env, "AGENTMESH_TLS_KEY": ""})
    with pytest.raises(ValueError, match=r"AGENTMESH_TLS_CA=.*no such file"):
        TlsConfig.from_env({**worker.env, "AGENTMESH_TLS_CA": str(tmp_path / "none.pem")})
    with pytest.raises(ValueError, match="AGENTMESH_INSECURE"):
        TlsConfig.from_env({"AGENTMESH_INSECURE": "perhaps"})


def test_flags_override_the_environment(certs: Certs) -> None:
    worker, client = certs.worker("w1"), certs.client()
    config = TlsConfig.from_env(worker.env, cert=str(client.cert), key=str(client.key))
    assert config.cert == str(client.cert) and config.ca == str(worker.ca)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("localhost", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("[::]", False),
        ("", False),
        ("10.1.2.3", False),
        ("scheduler.example", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_plaintext_beyond_loopback_is_refused_unless_tls_or_insecure(certs: Certs) -> None:
    check_listen("127.0.0.1:0", TlsConfig(), "AGENTMESH_LISTEN")
    with pytest.raises(InsecureListen) as refused:
        check_listen("0.0.0.0:50051", TlsConfig(), "AGENTMESH_LISTEN")
    message = str(refused.value)
    assert "AGENTMESH_LISTEN=0.0.0.0:50051" in message
    assert "AGENTMESH_TLS_CERT" in message and "AGENTMESH_INSECURE=1" in message
    assert "\n" not in message
    check_listen("0.0.0.0:50051", TlsConfig(insecure=True), "AGENTMESH_LISTEN")
    check_listen("0.0.0.0:50051", certs.scheduler().config(), "AGENTMESH_LISTEN")


def test_a_peer_is_known_by_the_names_under_the_mesh_domain() -> None:
    scheduler = Peer(("scheduler.agentmesh.local", "localhost"), DOMAIN)
    worker = Peer(("w1.worker.agentmesh.local", "127.0.0.1"), DOMAIN)
    client = Peer(("cli.client.agentmesh.local",), DOMAIN)
    foreign = Peer(("scheduler.example.org", "w1.worker.example.org"), DOMAIN)
    nested = Peer(("a.w1.worker.agentmesh.local",), DOMAIN)
    assert scheduler.is_scheduler and not scheduler.worker_ids
    assert worker.worker_ids == {"w1"} and not worker.is_scheduler
    assert not client.is_scheduler and not client.worker_ids
    assert not foreign.is_scheduler and not foreign.worker_ids
    assert not nested.worker_ids
    assert scheduler_only(scheduler) is None and scheduler_only(worker) == "not_scheduler"
    assert workers_only(worker) is None and workers_only(client) == "not_worker"
    assert foreign.describe() == "no name in the mesh's domain"


def test_a_worker_goes_by_the_id_its_certificate_names(certs: Certs) -> None:
    w7 = certs.worker("w7").config()
    assert "w7.worker.agentmesh.local" in certificate_names(str(certs.worker("w7").cert))
    assert own_worker_id(w7, "") == "w7"
    assert own_worker_id(w7, "w7") == "w7"
    with pytest.raises(ValueError, match=r"AGENTMESH_WORKER_ID=w8: .* names worker w7"):
        own_worker_id(w7, "w8")
    with pytest.raises(ValueError, match="names no worker"):
        own_worker_id(certs.client().config(), "")


def test_callers_are_the_certificates_that_name_a_client() -> None:
    client = Peer(("cli.client.agentmesh.local",), DOMAIN)
    worker = Peer(("w1.worker.agentmesh.local",), DOMAIN)
    scheduler = Peer(("scheduler.agentmesh.local",), DOMAIN)
    nested = Peer(("a.cli.client.agentmesh.local",), DOMAIN)
    assert client.is_client and not worker.is_client and not nested.is_client
    assert clients_only(client) is None
    assert clients_only(worker) == clients_only(scheduler) == "not_client"
    assert clients_or_workers(worker) is None and clients_or_workers(client) is None
    assert clients_or_workers(scheduler) == "not_client"
