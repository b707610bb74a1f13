"""Certificate files that change under a running process (`agentmesh.certfiles`): when a
change is seen, which sets are taken, and how a RenewingChannel moves its calls."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc import aio

from agentmesh.certfiles import CertificateFiles, RenewingChannel, check_pair
from agentmesh.scheduler.certs import LOOPBACK, Issued, issue
from agentmesh.server.tls import server_credentials
from agentmesh.tls import TlsConfig, scheduler_name, worker_name
from tests.support.fakes import FakeClock
from tests.support.tls import Certs, presented

WORKER = worker_name("w1", "agentmesh.local")


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path / "certs")


def leaf(certs: Certs, name: str = WORKER) -> Issued:
    return issue(certs.ca, [name, *LOOPBACK])


def put(path: Path, data: bytes) -> None:
    """Rewrite `path` in place, as cert-manager's CSI driver does, with a modification
    time of its own (two writes within one tick of the file system's clock would share
    one, which a renewal hours apart never does)."""
    path.write_bytes(data)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def renew(path_cert: Path, path_key: Path, new: Issued) -> None:
    put(path_cert, new.cert_pem)
    put(path_key, new.key_pem)


# -- CertificateFiles ----------------------------------------------------------------------


def test_unchanged_files_are_not_read_again(certs: Certs) -> None:
    identity = certs.worker("w1")
    reads: list[tuple[str, str, str]] = []

    def check(*paths: str) -> None:
        reads.append(paths)
        check_pair(*paths)

    files = CertificateFiles(identity.config(), check)
    first = files.current
    assert first[0] == 0 and first[1].cert == identity.cert.read_bytes()
    assert [files.look() for _ in range(5)] == [first] * 5
    assert reads == []


def test_a_renewal_is_taken_once(certs: Certs) -> None:
    identity = certs.worker("w1")
    files = CertificateFiles(identity.config())
    new = leaf(certs)
    renew(identity.cert, identity.key, new)
    generation, pem = files.look()
    assert generation == 1 and pem.cert == new.cert_pem and pem.key == new.key_pem
    assert files.current == (1, pem) and files.look() == (1, pem)


def test_a_certificate_without_its_key_keeps_the_previous_pair_and_says_so_once(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    identity = certs.worker("w1")
    files = CertificateFiles(identity.config())
    before = files.current
    new = leaf(certs)
    put(identity.cert, new.cert_pem)  # the key is not written yet
    with caplog.at_level(logging.WARNING, logger="agentmesh.certfiles"):
        assert [files.look() for _ in range(3)] == [before] * 3
    warnings = [r for r in caplog.records if "not a certificate with its key" in r.message]
    assert len(warnings) == 1
    put(identity.key, new.key_pem)  # the renewal completes
    generation, pem = files.look()
    assert generation == 1 and pem.cert == new.cert_pem


@pytest.mark.parametrize("broken", ["truncated", "empty", "missing"])
def test_a_half_written_or_missing_file_keeps_the_previous_pair(certs: Certs, broken: str) -> None:
    identity = certs.worker("w1")
    files = CertificateFiles(identity.config())
    before = files.current
    if broken == "missing":
        identity.key.unlink()
    else:
        pem = leaf(certs).key_pem
        put(identity.key, pem[: len(pem) // 2] if broken == "truncated" else b"")
    assert files.look() == before


def test_a_touch_or_the_same_content_is_no_renewal(certs: Certs) -> None:
    identity = certs.worker("w1")
    files = CertificateFiles(identity.config())
    put(identity.cert, identity.cert.read_bytes())
    assert files.look()[0] == 0


def test_a_file_swapped_in_through_a_symlink_is_seen(certs: Certs, tmp_path: Path) -> None:
    """A projected Secret volume: tls.crt -> ..data/tls.crt, and ..data swapped at once."""
    volume = tmp_path / "volume"
    first, second = volume / "..2026_1", volume / "..2026_2"
    for folder, issued in ((first, leaf(certs)), (second, leaf(certs))):
        folder.mkdir(parents=True)
        (folder / "tls.crt").write_bytes(issued.cert_pem)
        (folder / "tls.key").write_bytes(issued.key_pem)
    (volume / "..data").symlink_to(first.name)
    for name in ("tls.crt", "tls.key"):
        (volume / name).symlink_to(f"..data/{name}")
    config = TlsConfig(
        cert=str(volume / "tls.crt"), key=str(volume / "tls.key"), ca=str(certs.ca_path)
    )
    files = CertificateFiles(config)
    (volume / "..data_tmp").symlink_to(second.name)
    os.replace(volume / "..data_tmp", volume / "..data")
    generation, pem = files.look()
    assert generation == 1 and pem.cert == (second / "tls.crt").read_bytes()


def test_files_written_while_read_are_read_again_at_the_next_look(certs: Certs) -> None:
    identity = certs.worker("w1")
    new = leaf(certs)
    writes = [lambda: put(identity.key, new.key_pem)]

    def check(*paths: str) -> None:
        if writes:
            writes.pop()()  # the key lands between the stat and the read
        check_pair(*paths)

    files = CertificateFiles(identity.config(), check)
    put(identity.cert, new.cert_pem)
    assert files.look()[0] == 0  # not taken, and not remembered as seen either
    generation, pem = files.look()
    assert generation == 1 and pem.key == new.key_pem


# -- RenewingChannel -----------------------------------------------------------------------


async def _serve_peer_certificate(tls: TlsConfig) -> tuple[aio.Server, int]:
    """A TLS server (the servers' own credentials) whose one method answers with the PEM
    certificate its caller presented."""

    async def echo(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        return context.auth_context()["x509_pem_cert"][0]

    handler = grpc.method_handlers_generic_handler(
        "test.Peer", {"Certificate": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = aio.server()
    server.add_generic_rpc_handlers([handler])
    port = server.add_secure_port("127.0.0.1:0", server_credentials(tls))
    await server.start()
    return server, port


Stub = Callable[..., Any]


def _stub(channel: aio.Channel) -> Stub:
    return channel.unary_unary("/test.Peer/Certificate")


async def test_a_renewal_moves_new_calls_to_a_new_channel_and_closes_the_old_when_free(
    certs: Certs,
) -> None:
    server, port = await _serve_peer_certificate(certs.scheduler().config())
    identity = certs.worker("w1")
    clock = FakeClock()
    channels = RenewingChannel(
        f"127.0.0.1:{port}",
        identity.config(),
        _stub,
        server_name=scheduler_name("agentmesh.local"),
        clock=clock.now,
        period=5.0,
    )
    try:
        old = identity.cert.read_bytes()
        with channels.hold() as stub:
            assert await stub(b"", timeout=10) == old
        first = channels.acquire()  # a stream, say, still running on the first channel
        new = leaf(certs)
        renew(identity.cert, identity.key, new)
        with channels.hold() as stub:  # within the period: not looked at yet
            assert stub is first[0]
        clock.advance(5.0)
        with channels.hold() as stub:
            assert stub is not first[0]
            assert await stub(b"", timeout=10) == new.cert_pem
            assert channels.open_channels == 2
        assert await first[0](b"", timeout=10) == old  # the held channel is not cut
        first[1]()
        first[1]()  # letting go twice is letting go once
        assert channels.open_channels == 1
        for _ in range(10):
            await asyncio.sleep(0)  # the closing task runs
        with pytest.raises(aio.UsageError):  # closed: the old channel takes no call
            await first[0](b"", timeout=1)
    finally:
        await channels.close()
        await server.stop(None)


async def test_a_forced_look_needs_no_period_and_a_broken_pair_opens_no_channel(
    certs: Certs,
) -> None:
    server, port = await _serve_peer_certificate(certs.scheduler().config())
    identity = certs.worker("w1")
    channels = RenewingChannel(
        f"127.0.0.1:{port}",
        identity.config(),
        _stub,
        server_name=scheduler_name("agentmesh.local"),
        clock=FakeClock().now,
    )
    try:
        new = leaf(certs)
        put(identity.cert, new.cert_pem)
        assert not channels.renew(force=True)  # its key is not there yet
        put(identity.key, new.key_pem)
        assert channels.renew(force=True) and not channels.renew(force=True)
        with channels.hold() as stub:
            assert await stub(b"", timeout=10) == new.cert_pem
    finally:
        await channels.close()
        await server.stop(None)


async def test_channels_that_share_one_look_at_the_files_each_follow_a_renewal(
    certs: Certs,
) -> None:
    identity = certs.worker("w1")
    files = CertificateFiles(identity.config())
    channels = [
        RenewingChannel("127.0.0.1:1", identity.config(), _stub, files=files, clock=FakeClock().now)
        for _ in range(3)
    ]
    try:
        renew(identity.cert, identity.key, leaf(certs))
        assert [c.renew(force=True) for c in channels] == [True] * 3
        assert [c.renew(force=True) for c in channels] == [False] * 3
    finally:
        for channel in channels:
            await channel.close()


async def test_without_tls_there_is_one_channel_for_ever() -> None:
    channels = RenewingChannel("127.0.0.1:1", None, _stub, clock=FakeClock().now)
    try:
        assert not channels.renew(force=True)
        with channels.hold() as one, channels.hold() as two:
            assert one is two
        assert channels.open_channels == 1
    finally:
        await channels.close()


# -- the servers' credentials --------------------------------------------------------------


def certificate(issued: Issued | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued if isinstance(issued, bytes) else issued.cert_pem)


async def test_a_server_presents_a_renewed_certificate_from_the_next_handshake(
    certs: Certs,
) -> None:
    identity = certs.scheduler()
    server, port = await _serve_peer_certificate(identity.config())
    loop = asyncio.get_running_loop()
    caller = certs.client()
    try:
        first = await loop.run_in_executor(None, presented, port, caller)
        assert first == certificate(identity.cert.read_bytes())
        new = issue(certs.ca, [scheduler_name("agentmesh.local"), *LOOPBACK])
        put(identity.cert, new.cert_pem)  # half-way through a renewal: no key yet
        assert await loop.run_in_executor(None, presented, port, caller) == first
        put(identity.key, new.key_pem)
        assert await loop.run_in_executor(None, presented, port, caller) == certificate(new)
    finally:
        await server.stop(None)
