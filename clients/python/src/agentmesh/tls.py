"""TLS settings and identities, shared by the client, the CLI, the scheduler and the workers.

With TLS on (`AGENTMESH_TLS_CA`, `AGENTMESH_TLS_CERT`, `AGENTMESH_TLS_KEY`), every
connection to the scheduler and to a worker is mutual TLS: both sides present a
certificate signed by the mesh's CA. Who a peer is comes from its certificate's DNS
subject alternative names, in one scheme under the mesh's domain
(`AGENTMESH_TLS_DOMAIN`, default `agentmesh.local`):

    scheduler.<domain>              the scheduler (its server and its client certificate)
    <worker_id>.worker.<domain>     a worker: it may Register and Heartbeat as worker_id only
    <name>.client.<domain>          a caller (the Python client, the CLI, grpcurl)

The scheduler calls a worker verifying that the worker's server certificate names
the worker id it registered, and a worker verifies that the scheduler it registers
with is `scheduler.<domain>`, whatever address either dials. A client verifies the
host it dials, as any TLS client does (`server_name` overrides it). The server side
(credentials, reading a peer's identity) is `agentmesh.server.tls`.

Certificates are renewed by rewriting their files (cert-manager, a projected Secret):
`agentmesh.certfiles` notices a change by the files' stat and reads them again only
then, taking a new certificate only with its own key. Servers follow the files on every
handshake (`agentmesh.server.tls`); a channel's credentials are fixed when it opens, so
the owner of a long-lived channel holds a `certfiles.RenewingChannel`, which opens a new
channel after a change.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

#: The mesh's DNS domain for identities when none is configured.
DEFAULT_DOMAIN = "agentmesh.local"

#: A worker id that can be a DNS label, and so a name in a certificate.
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def scheduler_name(domain: str) -> str:
    """The DNS name in the scheduler's certificate."""
    return f"scheduler.{domain}"


def worker_name(worker_id: str, domain: str) -> str:
    """The DNS name in the certificate of the worker `worker_id`."""
    return f"{worker_id}.worker.{domain}"


def client_name(name: str, domain: str) -> str:
    """The DNS name in a caller's certificate."""
    return f"{name}.client.{domain}"


def is_label(name: str) -> bool:
    """Whether `name` can be the first label of a DNS name (lowercase letters, digits, '-')."""
    return bool(_LABEL.match(name))


@dataclass(frozen=True)
class TlsConfig:
    """The files of one process's TLS identity, and the mesh's domain; off when empty."""

    cert: str = ""
    """This process's certificate chain, PEM. Env AGENTMESH_TLS_CERT. Default: none."""
    key: str = ""
    """Its private key, PEM. Env AGENTMESH_TLS_KEY. Default: none."""
    ca: str = ""
    """The mesh's CA certificate(s), PEM, that every peer's certificate must chain to.
    Env AGENTMESH_TLS_CA. Default: none (TLS off)."""
    domain: str = DEFAULT_DOMAIN
    """The DNS domain of the mesh's identities. Env AGENTMESH_TLS_DOMAIN.
    Default agentmesh.local."""
    server_name: str = ""
    """A client's override of the name the scheduler's certificate must hold (default: the
    host it dials). Env AGENTMESH_TLS_SERVER_NAME. Default: none."""
    insecure: bool = False
    """Servers may listen beyond loopback without TLS. Env AGENTMESH_INSECURE. Default off."""

    def __post_init__(self) -> None:
        given = {"AGENTMESH_TLS_CERT": self.cert, "AGENTMESH_TLS_KEY": self.key}
        given["AGENTMESH_TLS_CA"] = self.ca
        if any(given.values()) and not all(given.values()):
            missing = ", ".join(name for name, value in given.items() if not value)
            raise ValueError(
                "TLS needs a certificate, its key and the mesh's CA together: set " + missing
            )
        for name, path in given.items():
            if path and not Path(path).is_file():
                raise ValueError(f"{name}={path}: no such file")

    @property
    def enabled(self) -> bool:
        return bool(self.ca)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> TlsConfig:
        """The settings in AGENTMESH_TLS_* and AGENTMESH_INSECURE, with `overrides` (flags)
        on top; ValueError names the variable of a bad one."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in ("cert", "key", "ca", "domain", "server_name"):
            raw = env.get(f"AGENTMESH_TLS_{name.upper()}", "").strip()
            if raw:
                values[name] = raw
        insecure = env.get("AGENTMESH_INSECURE", "").strip().lower()
        if insecure:
            if insecure not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"environment variable AGENTMESH_INSECURE={insecure!r} is not 0/1")
            values["insecure"] = insecure in ("1", "true", "yes", "on")
        values.update({k: v for k, v in overrides.items() if v})
        return cls(**values)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials of a channel that presents this identity and trusts the mesh's CA."""
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca).read_bytes(),
            private_key=Path(self.key).read_bytes(),
            certificate_chain=Path(self.cert).read_bytes(),
        )


def channel_options(server_name: str, options: Sequence[tuple[str, Any]] = ()) -> list[Any]:
    """Channel options that make TLS verify `server_name` whatever the address dialled."""
    extra = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return [*options, *extra]


def channel(
    target: str,
    tls: TlsConfig | None,
    *,
    server_name: str = "",
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A blocking channel to `target`: mutual TLS when `tls` is on, else plaintext."""
    if tls is None or not tls.enabled:
        return grpc.insecure_channel(target, options=list(options) or None)
    return grpc.secure_channel(
        target,
        tls.channel_credentials(),
        options=channel_options(server_name or tls.server_name, options),
    )


def aio_channel(
    target: str,
    tls: TlsConfig | None,
    *,
    server_name: str = "",
    options: Sequence[tuple[str, Any]] = (),
) -> aio.Channel:
    """An asyncio channel to `target`: mutual TLS when `tls` is on, else plaintext."""
    if tls is None or not tls.enabled:
        return aio.insecure_channel(target, options=list(options) or None)
    return aio.secure_channel(
        target,
        tls.channel_credentials(),
        options=channel_options(server_name or tls.server_name, options),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The TLS flags of a command, each overriding its AGENTMESH_TLS_* variable."""
    group = parser.add_argument_group("mutual TLS (default: the AGENTMESH_TLS_* variables)")
    group.add_argument("--tls-cert", metavar="PEM", help="this process's certificate")
    group.add_argument("--tls-key", metavar="PEM", help="its private key")
    group.add_argument("--tls-ca", metavar="PEM", help="the mesh's CA certificate")


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> TlsConfig:
    """The TLS settings of a command: its flags over the environment; ValueError names
    a bad one."""
    return TlsConfig.from_env(
        env,
        cert=getattr(args, "tls_cert", None),
        key=getattr(args, "tls_key", None),
        ca=getattr(args, "tls_ca", None),
        server_name=getattr(args, "tls_server_name", None),
    )
