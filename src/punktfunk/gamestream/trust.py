"""Paired GameStream clients, identified by their certificate's SHA-256 (never by uniqueid,
which some clients send as a constant, nor by certificate name: every Moonlight client calls
itself "NVIDIA GameStream Client"). Persisted as `<fingerprint>.pem` (+ `.json` with the device
name) per client in the state dir; files stored under any other name are renamed on load."""

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
            if pem.stem != fp:
                self._migrate(pem, meta, self._clients[fp])

    def _migrate(self, pem: Path, meta: Path, client: PairedClient) -> None:
        """Rename a client stored under another name (its CN, say) to its fingerprint, so that
        unpairing it removes the right files and a second same-named client cannot clash."""
        try:
            self._write(client)
            for path in (pem, meta):
                path.unlink(missing_ok=True)
        except OSError as exc:
            event(_log, "trust.migrate_failed", logging.WARNING, file=pem, reason=exc)
            return
        event(_log, "trust.migrated", file=pem.name, fingerprint=client.fingerprint[:16])

    def _write(self, client: PairedClient) -> None:
        (self._dir / f"{client.fingerprint}.pem").write_bytes(client.cert_pem)
        (self._dir / f"{client.fingerprint}.json").write_text(json.dumps({"name": client.name}))

    def add(self, cert: x509.Certificate, name: str) -> PairedClient:
        fp = fingerprint(cert)
        client = PairedClient(fp, name, cert.public_bytes(serialization.Encoding.PEM))
        with self._lock:
            self._write(client)
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

    def rename(self, fp: str, name: str) -> PairedClient | None:
        """Give a paired client another display name (the console's Clients page)."""
        with self._lock:
            old = self._clients.get(fp)
            if old is None:
                return None
            client = self._clients[fp] = PairedClient(fp, name, old.cert_pem)
            self._write(client)
        event(_log, "trust.renamed", client=name, fingerprint=fp[:16])
        return client

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
