"""The server side of mutual TLS: credentials, the loopback rule, and who a peer is.

A server with TLS on requires every peer's certificate, signed by the mesh's CA:
grpcio's `ssl_server_credentials` either requires client certificates or does not
ask for them at all, so one port cannot also serve callers without one. A
handshake that fails (no certificate, another CA, expired or not yet valid, a
plaintext client) never reaches a handler: the caller sees UNAVAILABLE.

Who the peer is comes from `context.auth_context()`, the identity gRPC verified
(never from metadata a client writes): the DNS names of its certificate, read in
the scheme of `agentmesh.tls`. `RequirePeer` refuses calls to chosen methods
from the wrong kind of peer before the handler runs (a stream before its first
message) with PERMISSION_DENIED, counted by reason.

A server follows its certificate files: before each handshake it looks at them (a stat
of each, `agentmesh.certfiles`) and presents a renewed certificate from the first
handshake after the files change, without a restart.

Without TLS, a server listens on loopback only, unless AGENTMESH_INSECURE=1.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from agentmesh.certfiles import CertificateFiles, Pem
from agentmesh.errors import PermissionDenied
from agentmesh.server.handlers import abort
from agentmesh.tls import TlsConfig, scheduler_name

log = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]


class InsecureListen(ValueError):
    """A server asked to listen beyond loopback without TLS."""


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """Credentials of a server that presents `tls`'s certificate and requires a peer
    certificate signed by the mesh's CA, as the files say at each handshake: grpc asks
    before every handshake, and gets a new configuration only when the files changed to a
    certificate with its own key (a half-written renewal keeps the previous one)."""
    files = CertificateFiles(tls)
    served, pem = files.current

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # Runs on grpc's threads before each handshake: a stat of three files, and never
        # an exception (grpc would only log it and keep the old configuration anyway).
        nonlocal served
        try:
            generation, pem = files.look()
            if generation == served:
                return None
            served = generation  # two handshakes at once may both return it: no harm
            return _configuration(pem)
        except Exception:
            log.exception("cannot read the certificate files; serving on with the previous ones")
            return None

    return grpc.dynamic_ssl_server_credentials(
        _configuration(pem),
        fetch,  # type: ignore[arg-type]  # the stubs leave out the None that means "unchanged"
        require_client_authentication=True,
    )


def _configuration(pem: Pem) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(pem.key, pem.cert)], root_certificates=pem.ca
    )


def is_loopback(host: str) -> bool:
    """Whether `host` (of a host:port listen address) is a loopback interface only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(listen: str, tls: TlsConfig, setting: str) -> None:
    """Refuse to serve beyond loopback in plaintext, naming the setting and the ways out."""
    host = listen.rpartition(":")[0]
    if tls.enabled or tls.insecure or is_loopback(host):
        return
    raise InsecureListen(
        f"{setting}={listen} is beyond loopback and TLS is off: set AGENTMESH_TLS_CERT, "
        "AGENTMESH_TLS_KEY and AGENTMESH_TLS_CA (`agentmesh certs DIR` makes development "
        "ones), or AGENTMESH_INSECURE=1 to serve plaintext anyway"
    )


def add_port(server: aio.Server, listen: str, tls: TlsConfig, setting: str) -> int:
    """Bind `listen` (mutual TLS when `tls` is on); the port bound. Raises InsecureListen
    for plaintext beyond loopback, OSError when the address cannot be bound."""
    check_listen(listen, tls, setting)
    try:
        if tls.enabled:
            port = server.add_secure_port(listen, server_credentials(tls))
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:  # grpcio's word for a bind that failed
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {setting}={listen}: taken, or not this host's")
    return port


def connection_limits(streams: int, metadata_bytes: int) -> list[tuple[str, int]]:
    """gRPC server options that bound what one client connection may hold: calls at once
    (more wait in the client, as HTTP/2 says) and the size of a call's metadata (larger is
    refused before any handler runs)."""
    return [
        ("grpc.max_concurrent_streams", streams),
        ("grpc.max_metadata_size", metadata_bytes),
        ("grpc.absolute_max_metadata_size", metadata_bytes),
    ]


@dataclass(frozen=True)
class Peer:
    """Who is calling, as its certificate says in the mesh's domain."""

    names: tuple[str, ...]
    """The DNS names of the peer's certificate."""
    domain: str

    @property
    def is_scheduler(self) -> bool:
        return scheduler_name(self.domain) in self.names

    @property
    def worker_ids(self) -> frozenset[str]:
        """The worker ids the certificate names (one, for a certificate that follows the
        scheme)."""
        suffix = f".worker.{self.domain}"
        return frozenset(
            name.removesuffix(suffix)
            for name in self.names
            if name.endswith(suffix) and "." not in name.removesuffix(suffix)
        )

    @property
    def is_client(self) -> bool:
        """Whether the certificate names a caller (`<name>.client.<domain>`)."""
        suffix = f".client.{self.domain}"
        return any(n.endswith(suffix) and "." not in n.removesuffix(suffix) for n in self.names)

    def describe(self) -> str:
        """The names under the mesh's domain, for an error message (certificates are public)."""
        ours = [n for n in self.names if n.endswith(f".{self.domain}")]
        return ", ".join(ours) if ours else "no name in the mesh's domain"


def certificate_names(path: str) -> tuple[str, ...]:
    """The DNS names of the PEM certificate at `path` (its first, the leaf)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(sans.value.get_values_for_type(x509.DNSName))


def own_worker_id(tls: TlsConfig, configured: str) -> str:
    """The worker id a worker with TLS on goes by: the one its certificate names, which
    must be the configured one if there is one; ValueError says what is wrong."""
    ids = sorted(Peer(certificate_names(tls.cert), tls.domain).worker_ids)
    if configured and configured not in ids:
        raise ValueError(
            f"AGENTMESH_WORKER_ID={configured}: the certificate AGENTMESH_TLS_CERT={tls.cert} "
            f"names {_listing(ids)}, and the scheduler accepts only that identity"
        )
    if not configured and len(ids) != 1:
        raise ValueError(
            f"the certificate AGENTMESH_TLS_CERT={tls.cert} names {_listing(ids)}: "
            f"set AGENTMESH_WORKER_ID, or use a certificate for <id>.worker.{tls.domain}"
        )
    return configured or ids[0]


def _listing(ids: list[str]) -> str:
    return "worker " + ", ".join(ids) if ids else "no worker"


def peer_of(context: Context, domain: str) -> Peer | None:
    """The peer of a call made over TLS, from what gRPC verified; None over plaintext."""
    auth = context.auth_context()
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    names = auth.get("peer_dns") or auth.get("x509_subject_alternative_name") or []
    return Peer(tuple(n.decode(errors="replace") for n in names), domain)


#: A rule for a method: the reason to deny a peer (a metric label), or None to let it in.
Rule = Callable[[Peer], str | None]


def scheduler_only(peer: Peer) -> str | None:
    """Only the scheduler's certificate may call (a worker's Execute)."""
    return None if peer.is_scheduler else "not_scheduler"


def workers_only(peer: Peer) -> str | None:
    """Only a worker's certificate may call (Register, Heartbeat); which worker it may
    speak for, the handler checks against the worker id the request claims."""
    return None if peer.worker_ids else "not_worker"


def clients_only(peer: Peer) -> str | None:
    """Only a caller's certificate may call (Submit and the other caller RPCs, whose
    role the caller's token decides)."""
    return None if peer.is_client else "not_client"


def clients_or_workers(peer: Peer) -> str | None:
    """A caller's or a worker's certificate may call (Dispatch: workers offload work)."""
    return None if peer.is_client or peer.worker_ids else "not_client"


def check_worker(context: Context, domain: str, claimed: str) -> PermissionDenied | None:
    """The refusal of a call that speaks for worker `claimed` from a peer whose certificate
    names another; None when it may (or when the call is not over TLS)."""
    peer = peer_of(context, domain)
    if peer is None or claimed in peer.worker_ids:
        return None
    return PermissionDenied(
        f"the client certificate ({peer.describe()}) does not name worker {claimed!r}",
        reason="WORKER_IDENTITY_MISMATCH",
    )


class RequirePeer(aio.ServerInterceptor):
    """Refuses calls to chosen methods from peers their rule denies, with PERMISSION_DENIED,
    before the handler sees a message; `denied(reason)` counts each refusal.

    With TLS off it lets everything through: the server then listens on loopback only
    (or was told AGENTMESH_INSECURE=1).
    """

    def __init__(
        self, domain: str, rules: Mapping[str, Rule], denied: Callable[[str], None]
    ) -> None:
        """`rules` by full method name (`/agentmesh.v1.WorkerService/Execute`)."""
        self.domain = domain
        self.rules = dict(rules)
        self.denied = denied

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        rule = self.rules.get(handler_call_details.method)
        if handler is None or rule is None:
            return handler
        return _guarded(handler, lambda context: self._refusal(rule, context))

    def _refusal(self, rule: Rule, context: Context) -> PermissionDenied | None:
        peer = peer_of(context, self.domain)
        if peer is None:
            return None
        reason = rule(peer)
        if reason is None:
            return None
        self.denied(reason)
        log.warning("call refused for its certificate", extra={"reason": reason})
        return PermissionDenied(
            f"this certificate ({peer.describe()}) may not call this method",
            reason=reason.upper(),
        )


def _guarded(
    handler: grpc.RpcMethodHandler[Any, Any],
    refusal: Callable[[Context], PermissionDenied | None],
) -> grpc.RpcMethodHandler[Any, Any]:
    """The handler, refusing a call first when `refusal` gives a reason to."""
    # grpc's method handlers are namedtuples, which its stubs do not say.
    if handler.unary_unary is not None or handler.stream_unary is not None:
        name = "unary_unary" if handler.unary_unary is not None else "stream_unary"
        behaviour = getattr(handler, name)

        async def single(request: Any, context: Context) -> Any:
            error = refusal(context)
            if error is not None:
                await abort(context, error)
            return await behaviour(request, context)

        return handler._replace(**{name: single})  # type: ignore[attr-defined, no-any-return]

    name = "unary_stream" if handler.unary_stream is not None else "stream_stream"
    streaming = getattr(handler, name)

    async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
        error = refusal(context)
        if error is not None:
            await abort(context, error)
        async for item in streaming(request, context):
            yield item

    return handler._replace(**{name: stream})  # type: ignore[attr-defined, no-any-return]
