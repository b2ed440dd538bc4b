"""The host's persistent identity: an RSA key and a self-signed certificate in the state dir.

Clients pin this certificate when they pair, so it must survive restarts; it is created once
with owner-only permissions and reused after.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .log import event

_log = logging.getLogger("punktfunk.identity")

KEY_FILE = "host.key"
CERT_FILE = "host.crt"


class IdentityError(Exception):
    """The stored identity exists but cannot be used (unreadable, corrupt, mismatched)."""


@dataclass(frozen=True)
class HostIdentity:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    @property
    def unique_id(self) -> str:
        """A stable 16-hex-digit id derived from the certificate (GameStream's uniqueid)."""
        return (
            hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER))
            .hexdigest()[:16]
            .upper()
        )

    def sign(self, data: bytes) -> bytes:
        """RSA PKCS#1 v1.5 SHA-256, the signature GameStream pairing uses."""
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _create(common_name: str) -> HostIdentity:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * 20))
        .sign(key, hashes.SHA256())
    )
    return HostIdentity(key, cert)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_or_create(directory: Path, common_name: str = "punktfunk") -> HostIdentity:
    """Load the identity from `directory`, creating it (mode 0600) on first use."""
    key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
    if key_path.exists() and cert_path.exists():
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise IdentityError(f"cannot load the host identity in {directory}: {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != cert.public_key():
            raise IdentityError(
                f"{key_path} does not match {cert_path}; move both away to create a new identity "
                "(clients will have to pair again)"
            )
        return HostIdentity(key, cert)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = _create(common_name)
    _write_private(key_path, identity.key_pem)
    _write_private(cert_path, identity.cert_pem)
    event(_log, "identity.created", path=directory, unique_id=identity.unique_id)
    return identity
