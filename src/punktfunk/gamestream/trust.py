"""Paired GameStream clients, identified by their certificate (never by uniqueid, which some
clients send as a constant). Persisted as one PEM per client in the state dir."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..log import event

_log = logging.getLogger("punktfunk.gamestream.trust")


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex: the key a client is known by."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class PairedClient:
    fingerprint: str
    name: str
    cert_pem: bytes


class TrustStore:
    """Thread-safe set of trusted client certificates, mirrored to `directory`."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._lock = threading.Lock()
        self._clients: dict[str, PairedClient] = {}
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for pem in sorted(directory.glob("*.pem")):
            meta = pem.with_suffix(".json")
            try:
                cert_pem = pem.read_bytes()
                cert = x509.load_pem_x509_certificate(cert_pem)
                name = json.loads(meta.read_text())["name"] if meta.exists() else pem.stem
            except (OSError, ValueError, KeyError) as exc:
                event(_log, "trust.skipped", logging.WARNING, file=pem, reason=exc)
                continue
            fp = fingerprint(cert)
            self._clients[fp] = PairedClient(fp, name, cert_pem)

    def add(self, cert: x509.Certificate, name: str) -> PairedClient:
        fp = fingerprint(cert)
        client = PairedClient(fp, name, cert.public_bytes(serialization.Encoding.PEM))
        with self._lock:
            (self._dir / f"{fp}.pem").write_bytes(client.cert_pem)
            (self._dir / f"{fp}.json").write_text(json.dumps({"name": name}))
            self._clients[fp] = client
        event(_log, "trust.paired", client=name, fingerprint=fp[:16])
        return client

    def remove(self, fp: str) -> bool:
        with self._lock:
            client = self._clients.pop(fp, None)
            for suffix in (".pem", ".json"):
                path = self._dir / f"{fp}{suffix}"
                if path.exists():
                    os.unlink(path)
        if client is not None:
            event(_log, "trust.unpaired", client=client.name, fingerprint=fp[:16])
        return client is not None

    def get(self, fp: str) -> PairedClient | None:
        with self._lock:
            return self._clients.get(fp)

    def clients(self) -> list[PairedClient]:
        with self._lock:
            return list(self._clients.values())

    def pem_bundle(self) -> bytes:
        """All trusted certificates concatenated (a CA bundle for the TLS layer)."""
        with self._lock:
            return b"".join(c.cert_pem for c in self._clients.values())
