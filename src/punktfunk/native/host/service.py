"""The native punktfunk/2 host as `punktfunk serve` runs it: socket shell + sessions + trust.

Owns the pairing gate (the armed PIN and its lockout), the paired-client store, the socket
thread and one `NativeSession` per streaming client. Events arrive on the socket thread and
are answered there; slow work (opening a monitor, tearing a session down) runs on threads of
its own so QUIC keeps breathing meanwhile.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from ...apps import AppList
from ...log import event
from ...session.limit import SessionLimit
from ...session.source import SessionServices
from ..wire.core import (
    Closed,
    DatagramReceived,
    Event,
    HelloReceived,
    MessageReceived,
    PairingFinished,
    PairingRequested,
    ReadyReceived,
)
from ..wire.pake import PairingGate
from ..wire.quic import TlsIdentity, fingerprint
from ..wire.registry import CloseCode
from .host import HostConnection
from .router import HostRouter
from .server import NativeServer
from .session import NativeSession, OpusFactory
from .trust import NativeTrust

_log = logging.getLogger("punktfunk.native.service")

ENDED_KEPT = 16  # snapshots of the last ended sessions (for status); older ones are counted


class NativeHost:
    limit: SessionLimit | None = None  # max_sessions, shared with GameStream (serve sets it)

    def __init__(
        self,
        identity: TlsIdentity,
        state_dir: Path,
        services: SessionServices,
        *,
        pin: str | None = None,
        bind: str = "0.0.0.0",
        port: int = 0,
        opus_factory: OpusFactory | None = None,
        cooldown_s: float = 60.0,
        workers: bool = False,
        apps: AppList | None = None,
    ) -> None:
        self.identity = identity
        self.fingerprint = fingerprint(identity.cert)
        self.trust = NativeTrust(state_dir / "native")
        # A preset PIN (--pair-pin) stays armed; one handed in by `punktfunk pair` is used once.
        self.gate = PairingGate(pin=pin or None, cooldown_s=cooldown_s, single_use=not pin)
        self.router = HostRouter(identity, self.gate, self.trust.is_paired)
        self.server = NativeServer(self.router, self._on_event, bind, port)
        self._services = services
        self._opus_factory = opus_factory
        self.workers = workers  # each session's media path in its own process
        self.apps = apps  # what a client's `launch` may name
        self._lock = threading.Lock()
        self._sessions: dict[int, NativeSession] = {}  # by id(HostConnection)
        # Snapshots only: an ended session object holds its connection and, until torn
        # down, its encoder; a long-running host must not keep one per session ever served.
        self.ended: list[dict[str, object]] = []
        self.ended_count = 0

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        self.server.start()
        event(_log, "native.ready", port=self.port, fingerprint=self.fingerprint.hex(),
              paired_clients=len(self.trust.clients()))  # fmt: skip

    def close(self) -> None:
        """Host shutdown: end every session, tell the clients (QUIT), stop the socket."""
        done = threading.Event()

        def shut() -> None:
            for conn in list(self.router.connections):
                if conn.closed is None:
                    conn.close(CloseCode.QUIT, "host shutting down")
            done.set()

        ending = self.sessions()
        for session in ending:
            session.end("host shutdown")
        self.server.call_soon(shut)
        done.wait(2)
        self.server.close()
        for session in ending:  # monitors and pipelines are released before services close
            if session.teardown_thread is not None:
                session.teardown_thread.join(timeout=10)

    # --- admin ----------------------------------------------------------------------------

    def arm(self, pin: str) -> str:
        if not (pin.isdigit() and 4 <= len(pin) <= 8):
            raise ValueError("a PIN is 4-8 digits")
        self.gate.pin = pin
        return "PIN armed for the next native client that pairs"

    def revoke(self, fp: str) -> str:
        client = self.trust.revoke(fp)
        if client is None:
            raise ValueError(f"no single paired client matches {fp!r}")
        for session in self.sessions():
            if session.fingerprint.hex() == client.fingerprint:
                self.server.call_soon(lambda s=session: s._close_for("pairing revoked"))
        return f"revoked {client.name} ({client.fingerprint[:16]})"

    def clients_json(self) -> str:
        return json.dumps(
            [
                {"fingerprint": c.fingerprint, "name": c.name, "paired_at": c.paired_at}
                for c in self.trust.clients()
            ]
        )

    def sessions(self) -> list[NativeSession]:
        with self._lock:
            return list(self._sessions.values())

    def status(self) -> dict[str, object]:
        return {
            "port": self.port,
            "sessions": [s.snapshot() for s in self.sessions()],
            "sessions_ended": self.ended_count,
            "paired_clients": [c.name for c in self.trust.clients()],
            "pairing": self.gate.state(time.monotonic()).value,
            "socket": dict(self.server.stats),
        }

    # --- events (socket thread) -----------------------------------------------------------

    def _on_event(self, conn: HostConnection, ev: Event) -> None:
        session = self._sessions.get(id(conn))
        match ev:
            case HelloReceived() if self._over_limit(conn, ev.hello.name or ""):
                pass
            case HelloReceived():
                session = NativeSession(
                    conn, ev.hello, ev.fingerprint, self._services, self.server,
                    self._session_ended, self._opus_factory, self.workers, self.apps,
                )  # fmt: skip
                with self._lock:
                    self._sessions[id(conn)] = session
                session.open_async()
            case ReadyReceived() if session is not None:
                session.on_ready()
            case DatagramReceived() if session is not None:
                session.on_datagram(ev.datagram)
            case MessageReceived() if session is not None:
                session.on_message(ev.message)
            case PairingRequested():
                event(_log, "native.pairing_started", name=ev.name, client=ev.fingerprint.hex())
            case PairingFinished(ok=True):
                self.trust.add(ev.fingerprint, ev.name)
            case Closed() if session is not None:
                reason = ev.reason or ("client closed" if ev.by_peer else "closed")
                if "idle timeout" in ev.reason.lower():  # aioquic's own close, no packet
                    reason = "idle timeout"
                session.end(f"{reason} (code {ev.code:#x})")

    def _over_limit(self, conn: HostConnection, client: str) -> bool:
        refusal = self.limit.refusal("native", client) if self.limit is not None else None
        if refusal is not None:
            conn.refuse(CloseCode.REJECT_BUSY, refusal[:200])
        return refusal is not None

    def _session_ended(self, session: NativeSession, reason: str) -> None:
        with self._lock:
            for key, value in list(self._sessions.items()):
                if value is session:
                    del self._sessions[key]
            self.ended.append({**session.snapshot(), "reason": reason})
            del self.ended[:-ENDED_KEPT]
            self.ended_count += 1
