"""`agentmesh certs DIR`: a development CA and certificates for a whole mesh.

Names follow the identity scheme of `agentmesh.tls`: the scheduler's certificate
holds `scheduler.<domain>`, worker i's `worker-i.worker.<domain>`, the client's
`cli.client.<domain>`. Server certificates also name `localhost` and the
loopback addresses, so that grpcurl and the client can dial 127.0.0.1 as they are.
For development and tests: a production mesh gets its certificates from its own CA
(cert-manager, SPIRE, a PKI), following the same names.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agentmesh.tls import DEFAULT_DOMAIN, client_name, scheduler_name, worker_name

#: How long development certificates are valid.
VALIDITY = datetime.timedelta(days=365)
#: Names a development server certificate holds besides its identity.
LOOPBACK = ("localhost", "127.0.0.1", "::1")
_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(_PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        """Write `stem.pem` and `stem-key.pem` (the key readable by its owner only)."""
        cert, key = folder / f"{stem}.pem", folder / f"{stem}-key.pem"
        cert.write_bytes(self.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(self.key_pem)
        return cert, key


def _window(
    not_before: datetime.datetime | None, not_after: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    start = not_before or now - datetime.timedelta(minutes=5)  # some room for clock skew
    return start, not_after or now + VALIDITY


def make_ca(
    common_name: str = "agentmesh development CA",
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> Issued:
    """A self-signed CA that may sign leaf certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = _window(not_before, not_after)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(
    ca: Issued,
    names: Sequence[str],
    *,
    server: bool = True,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> Issued:
    """A leaf certificate signed by `ca` for `names` (DNS names or IP addresses), good for
    TLS clients and, with `server`, for TLS servers too."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    start, end = _window(not_before, not_after)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


def write_mesh(
    folder: Path,
    *,
    workers: int = 3,
    domain: str = DEFAULT_DOMAIN,
    hosts: Sequence[str] = (),
) -> list[Path]:
    """A CA and the certificates of a scheduler, `workers` workers (worker-1, ...) and a
    client, in `folder`; the files written. `hosts` are more names for the scheduler."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    written = list(ca.write(folder, "ca"))
    server_names = [*LOOPBACK, *hosts]
    written += issue(ca, [scheduler_name(domain), *server_names]).write(folder, "scheduler")
    for i in range(1, workers + 1):
        worker_id = f"worker-{i}"
        leaf = issue(ca, [worker_name(worker_id, domain), *LOOPBACK])
        written += leaf.write(folder, worker_id)
    written += issue(ca, [client_name("cli", domain)], server=False).write(folder, "client")
    return written
