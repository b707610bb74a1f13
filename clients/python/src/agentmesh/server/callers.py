"""Who may call what: a call's bearer token checked against the roles a method allows.

Handlers call `CallerGate.admit` first, from the call's metadata
(`authorization: Bearer <token>`), before they read or act on anything.
Missing or invalid credentials are UNAUTHENTICATED, a role the method does
not allow is PERMISSION_DENIED; every refusal is counted by reason
(`agentmesh_auth_denied_total{reason}`) and logged with the method and the
reason, never the token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from agentmesh.errors import AgentmeshError, PermissionDenied
from agentmesh.server.tokens import ADMIN, ANONYMOUS, CLIENT, Caller, TokenVerifier, denied

log = logging.getLogger(__name__)

#: The roles that may call a method open to callers, and those only an admin may call.
CALLERS = frozenset({CLIENT, ADMIN})
ADMINS = frozenset({ADMIN})


class CallerGate:
    """Admits a call by its token, or refuses it; with no verifier every call is admitted
    (as `ANONYMOUS`, an admin of no tenant): tokens are not checked."""

    def __init__(
        self,
        verifier: TokenVerifier | None,
        on_denied: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.verifier = verifier
        #: Told the reason of each refusal (the metric's label), in lower case.
        self.on_denied = on_denied

    @property
    def enabled(self) -> bool:
        return self.verifier is not None

    def admit(
        self, metadata: Iterable[tuple[str, Any]] | None, method: str, roles: frozenset[str]
    ) -> Caller:
        """The caller, if its token is valid and its role one of `roles`; raises otherwise."""
        if self.verifier is None:
            return ANONYMOUS
        try:
            caller = self.verifier.verify(bearer_token(metadata))
            if caller.role not in roles:
                raise PermissionDenied(
                    f"the role {caller.role} may not call {method}", reason="ROLE_DENIED"
                )
        except AgentmeshError as error:
            self.on_denied(error.reason.lower())
            log.warning(
                "call refused: %s",
                error.message,
                extra={"method": method, "code": error.code_name, "reason": error.reason},
            )
            raise
        return caller


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The token of the call's one `authorization: Bearer <token>` header."""
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        raise denied(
            "MISSING_TOKEN", "this call needs a bearer token (metadata authorization: Bearer ...)"
        )
    if len(values) > 1:
        raise denied("MALFORMED_TOKEN", "the call has more than one authorization header")
    value = values[0]
    scheme, _, token = (value if isinstance(value, str) else "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise denied("MALFORMED_TOKEN", "the authorization header must be 'Bearer <token>'")
    return token.strip()
