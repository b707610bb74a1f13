"""Asking a server's standard health service (`grpc.health.v1.Health/Check`), with the
mesh's TLS settings: `agentmesh health`, the probe of a pod whose server requires a
client certificate (Kubernetes' own gRPC probe presents none).

The client side has no generated code of `grpc.health.v1` (that is grpcio-health-checking,
a server dependency), and needs none: `HealthCheckRequest` is one string, field 1, and
`HealthCheckResponse` one enum, field 1, so on the wire they are exactly protobuf's
`StringValue` and `Int32Value` (an enum is encoded as an int32).
"""

from __future__ import annotations

import grpc
from google.protobuf import wrappers_pb2

from agentmesh import tls
from agentmesh.status import from_rpc_error

#: The standard health service's method (grpc/grpc doc/health-checking.md).
CHECK = "/grpc.health.v1.Health/Check"

#: HealthCheckResponse.ServingStatus, by number.
STATUSES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

SERVING = "SERVING"


def check(
    target: str,
    settings: tls.TlsConfig | None,
    *,
    service: str = "",
    server_name: str = "",
    timeout: float = 5.0,
) -> str:
    """The serving status `target` reports for `service` ('' is the server as a whole):
    SERVING, NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN. A call that fails raises its
    AgentmeshError (UNAVAILABLE for a failed handshake or a server that is not there;
    NOT_FOUND for a service the server does not know)."""
    with tls.channel(target, settings, server_name=server_name) as channel:
        call = channel.unary_unary(
            CHECK,
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.Int32Value.FromString,
        )
        try:
            response = call(wrappers_pb2.StringValue(value=service), timeout=timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
    return STATUSES.get(response.value, "UNKNOWN")
