"""A worker registers only an address on the host it connects from."""

from __future__ import annotations

import pytest

from agentmesh.scheduler.addresses import foreign_address, peer_ip


def test_the_peer_of_a_call_is_read_from_grpc_peer_strings() -> None:
    assert str(peer_ip("ipv4:10.0.0.5:41000")) == "10.0.0.5"
    assert str(peer_ip("ipv6:[::1]:41000")) == "::1"
    assert str(peer_ip("ipv6:[::ffff:10.0.0.5]:41000")) == "10.0.0.5"
    assert peer_ip("unix:/tmp/s") is None


@pytest.mark.parametrize(
    ("address", "peer"),
    [
        ("127.0.0.1:7000", "ipv4:127.0.0.1:5000"),
        ("localhost:7000", "ipv4:127.0.0.1:5000"),
        ("[::1]:7000", "ipv4:127.0.0.1:5000"),
        ("10.0.0.5:7000", "ipv4:10.0.0.5:5000"),
        ("10.0.0.5:7000", "ipv6:[::ffff:10.0.0.5]:5000"),
        ("anything", "unix:/tmp/scheduler.sock"),
    ],
)
def test_an_address_of_the_peers_own_host_is_accepted(address: str, peer: str) -> None:
    assert foreign_address(address, peer, tls=False) is None


@pytest.mark.parametrize(
    ("address", "peer"),
    [
        ("10.0.0.6:7000", "ipv4:10.0.0.5:5000"),
        ("127.0.0.1:7000", "ipv4:10.0.0.5:5000"),
        ("10.0.0.5:7000", "ipv4:127.0.0.1:5000"),
        ("0.0.0.0:7000", "ipv4:127.0.0.1:5000"),
        ("worker.example:7000", "ipv4:127.0.0.1:5000"),
        ("\x00", "ipv4:127.0.0.1:5000"),
    ],
)
def test_another_hosts_address_is_refused(address: str, peer: str) -> None:
    assert foreign_address(address, peer, tls=False)


def test_with_tls_a_name_is_accepted_and_a_foreign_ip_is_not() -> None:
    assert foreign_address("worker.example:7000", "ipv4:10.0.0.5:5000", tls=True) is None
    assert foreign_address("10.0.0.6:7000", "ipv4:10.0.0.5:5000", tls=True)
