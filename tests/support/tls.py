"""Certificates for tests of a mesh with mutual TLS, made by `agentmesh.scheduler.certs`."""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agentmesh.scheduler.certs import LOOPBACK, Issued, issue, make_ca
from agentmesh.server.tokens import mint
from agentmesh.tls import DEFAULT_DOMAIN, TlsConfig, client_name, scheduler_name, worker_name
from tests.support.mesh import Mesh

#: The audience and issuer of the tests' tokens.
AUD, ISS = "agentmesh-test", "https://issuer.agentmesh.test"
#: The key the tests' tokens are signed with.
TOKEN_KEY = ec.generate_private_key(ec.SECP256R1())


def token(role: str, tenant: str = "acme") -> str:
    """A caller's token with `role` and `tenant`, signed with TOKEN_KEY, valid 10 minutes."""
    return mint(TOKEN_KEY, role=role, tenant=tenant, audience=AUD, issuer=ISS, ttl=600)


def token_settings(folder: Path) -> dict[str, str]:
    """The scheduler's settings that check callers' tokens against TOKEN_KEY (its public
    key written in `folder`)."""
    (folder / "token.pub").write_bytes(
        TOKEN_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return {
        "AGENTMESH_AUTH_PUBLIC_KEY": str(folder / "token.pub"),
        "AGENTMESH_AUTH_AUDIENCE": AUD,
        "AGENTMESH_AUTH_ISSUER": ISS,
    }


@contextmanager
def secured_mesh(folder: Path, certs: Certs, **scheduler_env: str) -> Iterator[Mesh]:
    """A scheduler with mutual TLS that checks callers' tokens (TOKEN_KEY's), and one
    builtin worker `w1`; the mesh's own client presents the client certificate and an
    admin's token. `scheduler_env` adds to the scheduler's settings (AGENTMESH_STORE)."""
    mesh = Mesh(
        folder,
        token=token("admin", ""),
        client_tls=certs.client().config(),
        **token_settings(folder),
        **certs.scheduler().env,
        **scheduler_env,
    )
    try:
        mesh.start_scheduler()
        mesh.start_worker("w1", **certs.worker("w1").env)
        mesh.wait_workers({"w1"})
        yield mesh
    finally:
        mesh.stop()


@dataclass(frozen=True)
class Identity:
    """One certificate's files, and the mesh's CA."""

    ca: Path
    cert: Path
    key: Path

    @property
    def env(self) -> dict[str, str]:
        """The AGENTMESH_TLS_* variables of a process with this identity."""
        return {
            "AGENTMESH_TLS_CA": str(self.ca),
            "AGENTMESH_TLS_CERT": str(self.cert),
            "AGENTMESH_TLS_KEY": str(self.key),
        }

    def config(self, **overrides: str) -> TlsConfig:
        return TlsConfig(cert=str(self.cert), key=str(self.key), ca=str(self.ca), **overrides)

    def grpcurl_args(self) -> list[str]:
        return ["-cacert", str(self.ca), "-cert", str(self.cert), "-key", str(self.key)]


class Certs:
    """A CA in `folder`, and certificates it (or another CA) signs, written on demand."""

    def __init__(self, folder: Path, domain: str = DEFAULT_DOMAIN) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.domain = domain
        self.ca = make_ca()
        self.ca_path, _ = self.ca.write(folder, "ca")

    def _write(self, stem: str, leaf: Issued) -> Identity:
        cert, key = leaf.write(self.folder, stem)
        return Identity(self.ca_path, cert, key)

    def scheduler(self) -> Identity:
        return self._write("scheduler", issue(self.ca, [scheduler_name(self.domain), *LOOPBACK]))

    def worker(
        self,
        worker_id: str,
        *,
        ca: Issued | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        stem: str = "",
    ) -> Identity:
        """Worker `worker_id`'s certificate, from the mesh's CA unless `ca` is another."""
        leaf = issue(
            ca or self.ca,
            [worker_name(worker_id, self.domain), *LOOPBACK],
            not_before=not_before,
            not_after=not_after,
        )
        return self._write(stem or f"worker-{worker_id}", leaf)

    def client(self, name: str = "tests") -> Identity:
        return self._write(
            f"client-{name}", issue(self.ca, [client_name(name, self.domain)], server=False)
        )


def presented(port: int, caller: Identity) -> x509.Certificate:
    """The certificate a TLS server on 127.0.0.1:`port` presents to a new connection from
    `caller` (with its client certificate: the mesh's servers require one)."""
    context = ssl.create_default_context(cafile=str(caller.ca))
    context.load_cert_chain(caller.cert, caller.key)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as connection,
    ):
        der = connection.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)
