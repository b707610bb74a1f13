"""Callers' tokens: the verifier's checks, its settings, and the gate's refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from agentmesh.errors import PermissionDenied, Unauthenticated
from agentmesh.server.callers import ADMINS, CALLERS, CallerGate
from agentmesh.server.tokens import (
    ANONYMOUS,
    Caller,
    TokenSettings,
    TokenVerifier,
    VerificationKey,
    algorithms_for,
    mint,
)

AUD, ISS = "agentmesh", "https://issuer.test"


def pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def verifier(rsa_key: rsa.RSAPrivateKey) -> TokenVerifier:
    public = rsa_key.public_key()
    return TokenVerifier({"": VerificationKey(public, algorithms_for(public))}, AUD, ISS)


def token(key: Any, **claims: Any) -> str:
    return mint(key, audience=AUD, issuer=ISS, ttl=300, **{"tenant": "acme", **claims})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A token made by hand: HS256 over `secret`, or no signature at all."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b""
    if secret is not None:
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"role": "admin", "tenant": "acme", "aud": AUD, "iss": ISS, "exp": now + 300} | extra


def reason(verifier: TokenVerifier, value: str) -> str:
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(value)
    assert not value or value not in refused.value.message
    return refused.value.reason


def test_a_valid_token_gives_its_role_and_tenant(
    verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    caller = verifier.verify(token(rsa_key, role="client", subject="svc-a"))
    assert caller == Caller("client", "acme", "svc-a")
    assert caller.scope == "acme"
    assert verifier.verify(token(rsa_key, role="admin", tenant="")).scope is None


@pytest.mark.parametrize(
    "make", [lambda: ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate]
)
def test_ec_and_ed25519_keys_verify_their_own_algorithm(make: Any) -> None:
    key = make()
    public = key.public_key()
    verifier = TokenVerifier({"": VerificationKey(public, algorithms_for(public))}, AUD, ISS)
    assert verifier.verify(token(key, role="client")).tenant == "acme"
    assert algorithms_for(public) in (("ES384",), ("EdDSA",))


def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    assert reason(verifier, forged({"alg": "none", "typ": "JWT"}, claims(), None)) == (
        "ALGORITHM_REFUSED"
    )


def test_hs256_signed_with_the_public_key_is_refused(
    verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    # Algorithm confusion: the public key, which anyone may have, as an HMAC secret.
    confused = forged({"alg": "HS256", "typ": "JWT"}, claims(), pem(rsa_key))
    assert reason(verifier, confused) == "ALGORITHM_REFUSED"


def test_a_token_signed_by_another_key_is_refused(verifier: TokenVerifier) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert reason(verifier, token(other, role="client")) == "BAD_SIGNATURE"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"exp": int(time.time()) - 3600}, "TOKEN_EXPIRED"),
        ({"nbf": int(time.time()) + 3600}, "TOKEN_NOT_YET_VALID"),
        ({"aud": "someone-else"}, "WRONG_AUDIENCE"),
        ({"iss": "https://elsewhere.test"}, "WRONG_ISSUER"),
        ({"role": "root"}, "BAD_CLAIMS"),
        ({"role": "client", "tenant": ""}, "BAD_CLAIMS"),
        ({"role": "client", "tenant": 7}, "BAD_CLAIMS"),
    ],
)
def test_claims_are_checked(
    verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey, changes: dict[str, Any], expected: str
) -> None:
    assert reason(verifier, jwt.encode(claims(**changes), rsa_key, algorithm="RS256")) == expected


@pytest.mark.parametrize("claim", ["exp", "aud", "iss"])
def test_exp_aud_and_iss_are_required(
    verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey, claim: str
) -> None:
    body = claims()
    del body[claim]
    assert reason(verifier, jwt.encode(body, rsa_key, algorithm="RS256")) == "MISSING_CLAIM"


@pytest.mark.parametrize("value", ["", "abc", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30"])
def test_malformed_tokens_are_refused(verifier: TokenVerifier, value: str) -> None:
    assert reason(verifier, value) in ("MALFORMED_TOKEN", "BAD_SIGNATURE")


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return path


def jwk(key: Any, kid: str, **extra: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else None
    if algorithm is None:
        algorithm = jwt.algorithms.ECAlgorithm
    return json.loads(algorithm.to_jwk(key.public_key())) | {"kid": kid, **extra}


def test_a_jwks_picks_the_key_by_kid(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path = write(tmp_path, "jwks.json", {"keys": [jwk(rsa_key, "r1"), jwk(ec_key, "e1")]})
    settings = TokenSettings(auth_jwks=path, auth_audience=AUD, auth_issuer=ISS)
    verifier = TokenVerifier.from_settings(settings)
    assert verifier is not None
    assert verifier.verify(token(ec_key, role="client", kid="e1")).role == "client"
    assert verifier.verify(token(rsa_key, role="admin", kid="r1")).role == "admin"
    assert reason(verifier, token(rsa_key, role="admin", kid="e1")) == "ALGORITHM_REFUSED"
    assert reason(verifier, token(rsa_key, role="admin", kid="nope")) == "UNKNOWN_KEY"
    assert reason(verifier, token(rsa_key, role="admin")) == "UNKNOWN_KEY"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"kty": "oct", "k": "c2VjcmV0"}, "only public signing keys"),
        ("rsa-as-es256", "key 0: "),
        ("not a key", "not a JSON object"),
    ],
)
def test_a_jwks_with_a_key_it_cannot_use_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, entry: Any, says: str
) -> None:
    if entry == "rsa-as-es256":
        entry = jwk(rsa_key, "r1", alg="ES256")
    path = write(tmp_path, "jwks.json", {"keys": [entry]})
    with pytest.raises(ValueError, match=says):
        TokenVerifier.from_settings(
            TokenSettings(auth_jwks=path, auth_audience=AUD, auth_issuer=ISS)
        )


def test_no_settings_means_tokens_are_not_checked() -> None:
    assert TokenSettings.from_env({}) == TokenSettings()
    assert TokenVerifier.from_settings(TokenSettings.from_env({})) is None
    gate = CallerGate(None)
    assert gate.admit((), "ListWorkers", ADMINS) is ANONYMOUS
    assert ANONYMOUS.scope is None


def test_settings_come_from_the_environment(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    key = write(tmp_path, "key.pub", pem(rsa_key))
    env = {
        "AGENTMESH_AUTH_PUBLIC_KEY": str(key),
        "AGENTMESH_AUTH_AUDIENCE": AUD,
        "AGENTMESH_AUTH_ISSUER": ISS,
        "AGENTMESH_AUTH_LEEWAY": "5",
    }
    verifier = TokenVerifier.from_settings(TokenSettings.from_env(env))
    assert verifier is not None and verifier.leeway == 5
    assert verifier.verify(token(rsa_key, role="client")).tenant == "acme"


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"auth_audience": AUD, "auth_issuer": ISS}, "without a key"),
        ({"auth_public_key": "key.pub", "auth_issuer": ISS}, "AGENTMESH_AUTH_AUDIENCE must"),
        ({"auth_public_key": "key.pub", "auth_jwks": "key.pub"}, "both set"),
        ({"auth_public_key": "missing.pem"}, "cannot be read"),
        ({"auth_public_key": "key.priv"}, "holds a private key"),
        ({"auth_public_key": "garbage"}, "not a PEM public key"),
        ({"auth_jwks": "garbage"}, "not a JWKS"),
    ],
)
def test_bad_settings_say_what_is_wrong_in_one_line(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, settings: dict[str, str], says: str
) -> None:
    write(tmp_path, "key.pub", pem(rsa_key))
    write(
        tmp_path,
        "key.priv",
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write(tmp_path, "garbage", b"hello")
    values: dict[str, Any] = {"auth_audience": AUD, "auth_issuer": ISS}
    for name, value in settings.items():
        values[name] = tmp_path / value if name in ("auth_public_key", "auth_jwks") else value
    if "auth_audience" not in settings and "auth_issuer" in settings:
        values["auth_audience"] = ""
    with pytest.raises(ValueError, match=says) as error:
        TokenVerifier.from_settings(TokenSettings(**values))
    assert "\n" not in str(error.value)


def test_the_gate_counts_each_refusal_by_reason(
    verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    reasons: list[str] = []
    gate = CallerGate(verifier, reasons.append)
    client = token(rsa_key, role="client")
    admin = token(rsa_key, role="admin")
    for metadata in ((), (("authorization", f"Basic {client}"),), (("authorization", "Bearer"),)):
        with pytest.raises(Unauthenticated):
            gate.admit(metadata, "Submit", CALLERS)
    with pytest.raises(PermissionDenied):
        gate.admit((("authorization", f"Bearer {client}"),), "ListWorkers", ADMINS)
    assert reasons == ["missing_token", "malformed_token", "malformed_token", "role_denied"]
    assert client not in caplog.text
    assert gate.admit((("authorization", f"bearer {admin}"),), "ListWorkers", ADMINS).role == (
        "admin"
    )
    caller = gate.admit(
        (("x-other", "1"), ("authorization", f"Bearer {client}")), "Submit", CALLERS
    )
    assert caller.tenant == "acme"
