"""Paired punktfunk/2 clients: certificate fingerprints the host trusts, kept in the state dir.

One JSON file (`<state_dir>/native/clients.json`, mode 0600) maps the hex SHA-256 fingerprint
of each client certificate to its name and pairing time. It is rewritten atomically on every
change, so a crash never leaves half a file; the socket thread reads the in-memory copy.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ...log import event

_log = logging.getLogger("punktfunk.native.trust")

FILE_NAME = "clients.json"


@dataclass(frozen=True)
class NativeClient:
    fingerprint: str  # hex
    name: str
    paired_at: float


class NativeTrust:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / FILE_NAME
        self._lock = threading.Lock()
        self._clients: dict[str, NativeClient] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                for fp, meta in raw.items():
                    bytes.fromhex(fp)
                    self._clients[fp] = NativeClient(
                        fp, str(meta["name"]), float(meta["paired_at"])
                    )
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                # A damaged file trusts nobody; it is kept for a human to look at.
                event(_log, "trust.unreadable", logging.ERROR, file=self.path, reason=exc)
                self._clients = {}

    def is_paired(self, fingerprint: bytes) -> bool:
        return fingerprint.hex() in self._clients

    def add(self, fingerprint: bytes, name: str) -> NativeClient:
        client = NativeClient(fingerprint.hex(), name or "unnamed", time.time())
        with self._lock:
            self._clients[client.fingerprint] = client
            self._save()
        event(_log, "trust.paired", client=client.fingerprint, name=client.name)
        return client

    def revoke(self, fingerprint: str) -> NativeClient | None:
        """Forget a client by its hex fingerprint (or a unique prefix of at least 8 digits)."""
        fp = fingerprint.strip().lower()
        with self._lock:
            hits = [c for c in self._clients if c == fp or (len(fp) >= 8 and c.startswith(fp))]
            if len(hits) != 1:
                return None
            client = self._clients.pop(hits[0])
            self._save()
        event(_log, "trust.revoked", client=client.fingerprint, name=client.name)
        return client

    def rename(self, fingerprint: str, name: str) -> NativeClient | None:
        """Give a paired client another display name (the console's Clients page)."""
        with self._lock:
            old = self._clients.get(fingerprint)
            if old is None:
                return None
            client = self._clients[fingerprint] = NativeClient(fingerprint, name, old.paired_at)
            self._save()
        event(_log, "trust.renamed", client=fingerprint, name=name)
        return client

    def clients(self) -> list[NativeClient]:
        with self._lock:
            return sorted(self._clients.values(), key=lambda c: c.paired_at)

    def clients_(self) -> list[NativeClient]:
        """The clients without taking the lock (the caller holds it)."""
        return list(self._clients.values())

    def _save(self) -> None:
        data = {
            c.fingerprint: {"name": c.name, "paired_at": c.paired_at}
            for c in self._clients.values()
        }
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)
