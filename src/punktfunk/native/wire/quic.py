"""aioquic plumbing for punktfunk/2: TLS configuration, the exporter, client identities.

Two things aioquic does not offer publicly: asking the client for a certificate (punktfunk's
host offers client auth and fingerprints what it gets, `quic/endpoint.rs`) and the RFC 8446
§7.5 exporter (`media_keys` in endpoint.rs). `PkfQuic` sets the first and captures the
exporter master secret at the one moment the transcript is `ClientHello..server Finished`:
when the 1-RTT server traffic secret is installed. Both use aioquic internals, pinned by
tests/test_native_core.py against aioquic 1.7.2.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from dataclasses import dataclass
from typing import Any, Protocol

from aioquic import tls
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .registry import ALPN, IDLE_TIMEOUT_S, SERVER_NAME
from .seal import media_exporter

MAX_DATAGRAM_FRAME = 65536


class TlsIdentity(Protocol):
    """A certificate and its private key (punktfunk.identity.HostIdentity fits)."""

    @property
    def cert(self) -> x509.Certificate: ...

    @property
    def key(self) -> Any: ...


def fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER, the value both ends pin (endpoint.rs)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


@dataclass(frozen=True)
class ClientIdentity:
    """A client's persistent self-signed certificate (P-256, as rcgen makes punktfunk's)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, common_name: str = "punktfunk-client") -> ClientIdentity:
        key = ec.generate_private_key(ec.SECP256R1())
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
        return cls(cert, key)

    def to_pem(self) -> tuple[bytes, bytes]:
        key = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return self.cert.public_bytes(serialization.Encoding.PEM), key

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> ClientIdentity:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("a client identity key must be an EC key")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)

    @property
    def fingerprint(self) -> bytes:
        return fingerprint(self.cert)


def configuration(identity: TlsIdentity | None, *, is_client: bool) -> QuicConfiguration:
    """TLS 1.3, ALPN pkf2, QUIC datagrams on; certificates are pinned, never CA-checked."""
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN.decode()],
        server_name=SERVER_NAME if is_client else None,
        verify_mode=ssl.CERT_NONE,
        idle_timeout=IDLE_TIMEOUT_S,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME,
        certificate=None if identity is None else identity.cert,
        private_key=None if identity is None else identity.key,
    )


class PkfQuic(QuicConnection):
    """A QuicConnection that asks for client certificates and keeps the exporter secret."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exporter_master_secret: bytes | None = None
        self.exporter_hash = "sha256"

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self._is_client:
            self.tls._request_client_certificate = True

    def _update_traffic_key(
        self,
        direction: tls.Direction,
        epoch: tls.Epoch,
        cipher_suite: tls.CipherSuite,
        secret: bytes,
    ) -> None:
        ours = tls.Direction.DECRYPT if self._is_client else tls.Direction.ENCRYPT
        if self.exporter_master_secret is None and epoch == tls.Epoch.ONE_RTT and direction == ours:
            schedule = self.tls.key_schedule
            self.exporter_master_secret = schedule.derive_secret(b"exp master")
            self.exporter_hash = schedule.algorithm.name
        super()._update_traffic_key(direction, epoch, cipher_suite, secret)

    @property
    def terminated(self) -> bool:
        """Closed and past its draining period: nothing more will be sent or accepted."""
        return self._state == QuicConnectionState.TERMINATED

    @property
    def authentic_initial(self) -> bool:
        """An Initial packet decrypted: the sender knows QUIC, not just our header layout.

        Either it was taken, or its content made aioquic close (a wrong ALPN, say): both
        happen only after packet protection checked out, and the close is worth sending.
        """
        spaces = getattr(self, "_spaces", None)  # aioquic creates them with the first Initial
        space = None if spaces is None else spaces.get(tls.Epoch.INITIAL)
        return space is not None and (space.largest_received_packet >= 0 or self._close_pending)

    def peer_certificate(self) -> x509.Certificate | None:
        context = getattr(self, "tls", None)  # aioquic creates it with the first packet
        return None if context is None else context._peer_certificate

    def media_exporter(self, session_id: bytes) -> bytes:
        """The 32 bytes both ends feed to MediaKeys.derive for session `session_id`."""
        if self.exporter_master_secret is None:
            raise RuntimeError("the TLS handshake has not reached 1-RTT yet")
        return media_exporter(self.exporter_master_secret, self.exporter_hash, session_id)
