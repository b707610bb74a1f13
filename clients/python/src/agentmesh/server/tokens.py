"""Callers' bearer tokens: JSON Web Tokens checked against a configured public key.

A token is signed by whoever issues the mesh's credentials with an asymmetric
key; the scheduler holds only the public half (a PEM file, or a JWKS file of
several keys told apart by `kid`). A token must carry `exp`, `aud` and `iss`,
match the configured audience and issuer, and name a `role` (`client` or
`admin`) and a `tenant` (required for a client).

The algorithms a key accepts come from the key itself (RS*/PS* for RSA, the
ES* of an EC key's curve, EdDSA for Ed25519 and Ed448), never from the
token's header: so `alg: none` and a token signed with HS256 using the
public key as its secret (algorithm confusion) are refused, whatever the
header says. Symmetric keys are not accepted at all.

With no key configured, tokens are not checked: every caller may do
anything (loopback development, as before tokens existed).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from agentmesh.errors import PermissionDenied, Unauthenticated
from agentmesh.server import settings

CLIENT = "client"
ADMIN = "admin"
#: The roles a token may name.
ROLES = frozenset({CLIENT, ADMIN})
#: Longest tenant name accepted (it is stored with every request).
MAX_TENANT = 128

_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_EC_CURVES |= {"secp256k1": "ES256K"}

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


@dataclass(frozen=True)
class TokenSettings:
    """Where callers' tokens are checked against; all empty: tokens are not checked."""

    auth_jwks: Path | None = None
    """A JWKS file (JSON, `{"keys": [...]}`) of the public keys tokens may be signed
    with. Env AGENTMESH_AUTH_JWKS. Default none."""
    auth_public_key: Path | None = None
    """A PEM public key (RSA, EC or Ed25519) tokens are signed with.
    Env AGENTMESH_AUTH_PUBLIC_KEY. Default none."""
    auth_audience: str = ""
    """The `aud` every token must name; required with a key. Env AGENTMESH_AUTH_AUDIENCE."""
    auth_issuer: str = ""
    """The `iss` every token must carry; required with a key. Env AGENTMESH_AUTH_ISSUER."""
    auth_leeway: float = 30.0
    """Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
    Env AGENTMESH_AUTH_LEEWAY. Default 30 s."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TokenSettings:
        return cls(**settings.from_env(cls, os.environ if env is None else env))

    @property
    def configured(self) -> bool:
        """Whether any auth setting is given (then all that is needed must be)."""
        return bool(
            self.auth_jwks or self.auth_public_key or self.auth_audience or self.auth_issuer
        )


@dataclass(frozen=True)
class Caller:
    """Who made a call, as its token says."""

    role: str
    #: The tenant whose requests it makes and sees; "" when tokens are not checked.
    tenant: str = ""
    #: The token's `sub`, for logs.
    subject: str = ""

    @property
    def scope(self) -> str | None:
        """The one tenant whose requests it may see; None for every tenant's (an admin)."""
        return None if self.role == ADMIN else self.tenant

    def reads(self, tenant: str | None) -> str:
        """The tenant whose request ids it reads, having asked for `tenant` (None: not
        named): its own, or any tenant an admin names. PERMISSION_DENIED (reason
        TENANT_DENIED) for a client naming another."""
        if tenant is None or tenant == self.tenant:
            return self.tenant
        if self.scope is not None:
            raise PermissionDenied(
                "a client reads its own tenant's requests only (its token's tenant claim)",
                reason="TENANT_DENIED",
            )
        return tenant


#: The caller of every call when tokens are not checked.
ANONYMOUS = Caller(ADMIN)


def denied(reason: str, message: str) -> Unauthenticated:
    """UNAUTHENTICATED with an ErrorInfo reason; the message never holds the token."""
    return Unauthenticated(message, reason=reason)


@dataclass(frozen=True)
class VerificationKey:
    """One public key and the algorithms its type allows."""

    key: PublicKey
    algorithms: tuple[str, ...]
    kid: str = ""


def algorithms_for(key: object) -> tuple[str, ...]:
    """The JWS algorithms a key of this type verifies; ValueError for any other key."""
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_CURVES.get(key.curve.name)
        if alg is None:
            raise ValueError(f"the EC curve {key.curve.name} is not one JWS signs with")
        return (alg,)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    raise ValueError(
        f"a {type(key).__name__} cannot verify tokens: give an RSA, EC or Ed25519 public key"
    )


def load_public_key(path: Path, name: str = "AGENTMESH_AUTH_PUBLIC_KEY") -> VerificationKey:
    """The PEM public key in a file; ValueError says what is wrong, in one line."""
    raw = _read(path, name)
    try:
        key = serialization.load_pem_public_key(raw)
    except ValueError:
        if b"PRIVATE KEY" in raw:
            raise ValueError(
                f"{name}={path} holds a private key: give the scheduler the public key only "
                "(openssl pkey -in KEY -pubout)"
            ) from None
        raise ValueError(f"{name}={path} is not a PEM public key") from None
    try:
        return VerificationKey(key, algorithms_for(key))  # type: ignore[arg-type]
    except ValueError as error:
        raise ValueError(f"{name}={path}: {error}") from None


def load_jwks(path: Path, name: str = "AGENTMESH_AUTH_JWKS") -> dict[str, VerificationKey]:
    """The public keys of a JWKS file by `kid` ("" for a key without one)."""
    try:
        document = json.loads(_read(path, name))
        entries = document["keys"]
        if not isinstance(entries, list) or not entries:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"{name}={path} is not a JWKS: a JSON object with a list of keys"
        ) from None
    keys: dict[str, VerificationKey] = {}
    for i, entry in enumerate(entries):
        where = f"{name}={path}, key {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is not a JSON object")
        if entry.get("kty") == "oct" or entry.get("use", "sig") != "sig":
            raise ValueError(f"{where}: only public signing keys (RSA, EC, OKP) are accepted")
        try:
            key = jwt.PyJWK.from_dict(entry).key
            algorithms = algorithms_for(key)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as error:
            raise ValueError(f"{where}: {error}") from None
        if "alg" in entry:
            if entry["alg"] not in algorithms:
                raise ValueError(f"{where}: alg {entry['alg']} does not fit a key of its type")
            algorithms = (entry["alg"],)
        kid = str(entry.get("kid", ""))
        if kid in keys:
            raise ValueError(f"{where}: kid {kid!r} is given twice")
        keys[kid] = VerificationKey(key, algorithms, kid)
    return keys


def _read(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"{name}={path} cannot be read: {error.strerror}") from None


class TokenVerifier:
    """Checks a token's signature, algorithm and claims; `verify` returns its Caller."""

    def __init__(
        self,
        keys: Mapping[str, VerificationKey],
        audience: str,
        issuer: str,
        leeway: float = 30.0,
    ) -> None:
        if not keys:
            raise ValueError("a token verifier needs at least one key")
        self.keys = dict(keys)
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway

    @classmethod
    def from_settings(cls, config: TokenSettings) -> TokenVerifier | None:
        """The verifier the settings describe; None when none is configured (tokens are
        not checked). ValueError, in one line, for settings that do not fit together."""
        if not config.configured:
            return None
        if config.auth_jwks and config.auth_public_key:
            raise ValueError(
                "AGENTMESH_AUTH_JWKS and AGENTMESH_AUTH_PUBLIC_KEY are both set: give one"
            )
        if not (config.auth_jwks or config.auth_public_key):
            raise ValueError(
                "AGENTMESH_AUTH_AUDIENCE or _ISSUER is set without a key to check tokens with: "
                "set AGENTMESH_AUTH_PUBLIC_KEY (a PEM file) or AGENTMESH_AUTH_JWKS"
            )
        missing = [
            name
            for name, value in (
                ("AGENTMESH_AUTH_AUDIENCE", config.auth_audience),
                ("AGENTMESH_AUTH_ISSUER", config.auth_issuer),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"{' and '.join(missing)} must be set with a key: tokens need them")
        if config.auth_leeway < 0:
            raise ValueError(f"AGENTMESH_AUTH_LEEWAY={config.auth_leeway:g} is negative")
        if config.auth_jwks:
            keys = load_jwks(config.auth_jwks)
        else:
            assert config.auth_public_key is not None
            keys = {"": load_public_key(config.auth_public_key)}
        return cls(keys, config.auth_audience, config.auth_issuer, config.auth_leeway)

    def verify(self, token: str) -> Caller:
        """The caller a token stands for; Unauthenticated (with a reason) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise denied("MALFORMED_TOKEN", "the bearer token is not a well-formed JWT") from None
        key = self._key(header.get("kid"))
        alg = header.get("alg")
        if alg not in key.algorithms:
            raise denied(
                "ALGORITHM_REFUSED",
                f"the token's algorithm {alg!r} is not one its key verifies "
                f"({', '.join(key.algorithms)})",
            )
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "aud", "iss"]},
            )
        except jwt.InvalidTokenError as error:
            raise _refusal(error) from None
        return _caller(claims)

    def _key(self, kid: object) -> VerificationKey:
        only = next(iter(self.keys.values())) if len(self.keys) == 1 else None
        # One key without a kid (a PEM file) verifies every token; a token without a kid
        # is verified by the only key there is.
        if only is not None and (not only.kid or kid is None):
            return only
        key = self.keys.get(str(kid)) if isinstance(kid, str) or kid is None else None
        if key is None:
            raise denied("UNKNOWN_KEY", "the token names no key the scheduler knows (kid)")
        return key


def _refusal(error: jwt.InvalidTokenError) -> Unauthenticated:
    """The refusal for what PyJWT found wrong (subclasses first)."""
    table: Iterable[tuple[type[Exception], str, str]] = (
        (jwt.ExpiredSignatureError, "TOKEN_EXPIRED", "the token has expired"),
        (jwt.ImmatureSignatureError, "TOKEN_NOT_YET_VALID", "the token is not valid yet"),
        (jwt.InvalidAudienceError, "WRONG_AUDIENCE", "the token is not for this audience"),
        (jwt.InvalidIssuerError, "WRONG_ISSUER", "the token is not from the expected issuer"),
        (jwt.MissingRequiredClaimError, "MISSING_CLAIM", "the token lacks a required claim"),
        (jwt.InvalidSignatureError, "BAD_SIGNATURE", "the token's signature does not verify"),
        (jwt.InvalidAlgorithmError, "ALGORITHM_REFUSED", "the token's algorithm is refused"),
        (jwt.DecodeError, "MALFORMED_TOKEN", "the bearer token is not a well-formed JWT"),
    )
    for kind, reason, message in table:
        if isinstance(error, kind):
            detail = f" ({error})" if isinstance(error, jwt.MissingRequiredClaimError) else ""
            return denied(reason, message + detail)
    return denied("INVALID_TOKEN", "the token is not valid")


def _caller(claims: Mapping[str, Any]) -> Caller:
    role = claims.get("role")
    if role not in ROLES:
        raise denied("BAD_CLAIMS", "the token's role claim must be client or admin")
    tenant = claims.get("tenant", "")
    if not isinstance(tenant, str) or len(tenant) > MAX_TENANT or (role == CLIENT and not tenant):
        raise denied(
            "BAD_CLAIMS",
            f"the token's tenant claim must be a string of 1 to {MAX_TENANT} characters "
            "(required for a client)",
        )
    subject = claims.get("sub", "")
    return Caller(str(role), tenant, subject if isinstance(subject, str) else "")


def signing_algorithm(key: PrivateKey) -> str:
    """The algorithm a development token is signed with for this private key."""
    algorithms = algorithms_for(key.public_key())
    return algorithms[0]


def mint(
    key: PrivateKey,
    *,
    role: str,
    tenant: str,
    audience: str,
    issuer: str,
    ttl: float,
    subject: str = "",
    kid: str = "",
    now: float | None = None,
) -> str:
    """A signed token for development and tests (`agentmesh token`)."""
    if role not in ROLES:
        raise ValueError(f"role must be client or admin, not {role!r}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "role": role,
        "aud": audience,
        "iss": issuer,
        "iat": issued,
        "exp": issued + int(ttl),
    }
    if tenant:
        claims["tenant"] = tenant
    if subject:
        claims["sub"] = subject
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=signing_algorithm(key), headers=headers)


def load_private_key(path: Path) -> PrivateKey:
    """A PEM private key (unencrypted) to sign development tokens with."""
    try:
        key = serialization.load_pem_private_key(_read(path, "--key"), password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"--key {path} is not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, PrivateKey):
        raise ValueError(f"--key {path}: a {type(key).__name__} cannot sign tokens")
    return key
