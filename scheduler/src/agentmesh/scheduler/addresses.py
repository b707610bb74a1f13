"""Whether a worker may register an address: its own, not another process's (spoofing).

The scheduler sends a worker's subtasks, customers' data, to the address it registered.
A worker may register only an address on the host it connects from: an IP address equal
to its connection's (any loopback address counts as the same host), or `localhost` from
loopback. A host name cannot be checked without asking DNS; with TLS on it is accepted,
since the scheduler then verifies, on every connection to the worker, that the server
there holds the worker's own certificate. Without TLS a name is refused. A mesh behind NAT
or a proxy turns the check off (AGENTMESH_ALLOW_FOREIGN_ADDRESS=1).
"""

from __future__ import annotations

import ipaddress

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IP | None:
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def peer_ip(peer: str) -> IP | None:
    """The IP address of a gRPC peer (`ipv4:10.0.0.5:41000`, `ipv6:[::1]:41000`); None for
    others (a Unix socket)."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    return _ip(rest.rpartition(":")[0])


def foreign_address(address: str, peer: str, tls: bool) -> str | None:
    """Why the worker connected from `peer` may not register `address`; None if it may."""
    source = peer_ip(peer)
    if source is None:
        return None
    host = address.rpartition(":")[0]
    ip = ipaddress.ip_address("127.0.0.1") if host == "localhost" else _ip(host)
    if ip is None:
        if tls:
            return None
        return (
            f"address {address!r} is not an IP address of the host the worker connects "
            f"from ({source}); without TLS the scheduler cannot check a name"
        )
    if ip == source or (ip.is_loopback and source.is_loopback):
        return None
    return f"address {address!r} is not on the host the worker connects from ({source})"
