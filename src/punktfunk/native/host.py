"""Host side of punktfunk/2: one `HostConnection` per client, routed by `HostRouter`.

A connection's first control message decides what it is. `PairRequest` runs the PIN ceremony
against the host's `PairingGate` and ends the connection; `ClientHello` from a paired
certificate becomes `HelloReceived`, and the host answers `accept(ServerHello)` (which derives
the media keys) or `refuse(code, reason)`. An unpaired or certificate-less client is refused
with a Refused frame and the same close code before any key exists, so no media can follow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from enum import Enum

from aioquic.buffer import Buffer
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from ..log import event
from .clock import echo, wall_clock_ns
from .core import (
    Address,
    Connected,
    Connection,
    Event,
    HelloReceived,
    MessageReceived,
    PairingFinished,
    PairingRequested,
    ReadyReceived,
)
from .hello import ClientHello, Ready, ServerHello
from .messages import ClockProbe, PairProof, PairRequest, Refused
from .pake import HostPairing, PairingGate
from .quic import PkfQuic, TlsIdentity, configuration, fingerprint
from .registry import (
    CLOSE_ABORT,
    CLOSE_OK,
    HANDSHAKE_TIMEOUT_S,
    PAIR_RESULT_LINGER_S,
    PAIRING_TIMEOUT_S,
    SESSION_ID_LEN,
    CloseCode,
)
from .seal import MediaKeys

_log = logging.getLogger("punktfunk.native.host")

# QUIC's minimum size for a client's first datagram (RFC 9000 §14.1).
MIN_INITIAL_DATAGRAM = 1200


class HostState(Enum):
    AWAIT_FIRST = "await-first"  # handshake done or under way, no control message yet
    PAIRING = "pairing"  # challenge sent, waiting for the proof
    HELLO = "hello"  # HelloReceived is with the host; accept() or refuse() next
    AWAIT_READY = "await-ready"  # ServerHello sent
    STREAMING = "streaming"  # Ready received: media may flow
    DONE = "done"  # pairing answered, or refused


class HostConnection(Connection):
    is_host = True

    def __init__(
        self,
        identity: TlsIdentity,
        gate: PairingGate,
        is_paired: Callable[[bytes], bool],
        *,
        original_dcid: bytes,
        now: float,
        wall_ns: Callable[[], int] = wall_clock_ns,
    ) -> None:
        quic = PkfQuic(
            configuration=configuration(identity, is_client=False),
            original_destination_connection_id=original_dcid,
        )
        super().__init__(quic, now, wall_ns)
        self._pairing = HostPairing(gate, fingerprint(identity.cert))
        self._is_paired = is_paired
        self.state = HostState.AWAIT_FIRST
        self.hello: ClientHello | None = None
        self.server_hello: ServerHello | None = None
        self.keys: MediaKeys | None = None
        self._deadline = now + HANDSHAKE_TIMEOUT_S

    def accept(self, server_hello: ServerHello) -> MediaKeys | None:
        """Answer HelloReceived: send the session and derive its media keys.

        An all-zero `session_id` is replaced by a random one; `self.server_hello` holds what
        was sent. The keys are None when the ServerHello names no media suite.
        """
        if self.state is not HostState.HELLO:
            raise RuntimeError(f"accept() in state {self.state.value}")
        if server_hello.session_id == bytes(SESSION_ID_LEN):
            server_hello = replace(server_hello, session_id=os.urandom(SESSION_ID_LEN))
        self.send(server_hello)
        self.server_hello, self.state = server_hello, HostState.AWAIT_READY
        if server_hello.suite is not None:
            exporter = self.quic.media_exporter(server_hello.session_id)
            self.keys = MediaKeys.derive(exporter, server_hello.suite)
        return self.keys

    def refuse(self, code: CloseCode, reason: str) -> None:
        self.state = HostState.DONE
        super().refuse(code, reason)

    @property
    def streaming(self) -> bool:
        """Ready arrived on a live, accepted session: the only state media may be sent in."""
        return self.state is HostState.STREAMING and self.closed is None

    def _on_handshake(self, now: float) -> None:
        self._events.append(Connected(self.peer_fingerprint))

    def _on_message(self, message: object, now: float) -> None:
        match self.state, message:
            case HostState.AWAIT_FIRST, PairRequest():
                self._on_pair_request(message, now)
            case HostState.AWAIT_FIRST, ClientHello():
                self._on_hello(message)
            case HostState.PAIRING, PairProof():
                result, paired = self._pairing.on_proof(message, now)
                self.send(result)
                self.state, self._deadline = HostState.DONE, now + PAIR_RESULT_LINGER_S
                name = "" if paired is None else paired.name
                fp = self.peer_fingerprint or b""
                event(_log, "native.pairing", ok=result.ok, name=name, client=fp.hex())
                self._events.append(PairingFinished(result.ok, name, fp))
            case HostState.AWAIT_READY, Ready():
                self.state = HostState.STREAMING
                self._events.append(ReadyReceived())
            case HostState.AWAIT_READY | HostState.STREAMING, ClockProbe():
                self.send(echo(message, self.wall_ns(), self.wall_ns()))
            case HostState.AWAIT_READY | HostState.STREAMING, _:
                self._events.append(MessageReceived(message))
            case _:
                name = type(message).__name__
                self.close(CLOSE_ABORT, f"{name} is not expected in state {self.state.value}")

    def _on_pair_request(self, request: PairRequest, now: float) -> None:
        reply = self._pairing.on_request(request, self.peer_fingerprint, now)
        if isinstance(reply, Refused):
            self.refuse(CloseCode(reply.code), reply.reason)
            return
        self.send(reply)
        self.state, self._deadline = HostState.PAIRING, now + PAIRING_TIMEOUT_S
        self._events.append(PairingRequested(request.name, self.peer_fingerprint or b""))

    def _on_hello(self, hello: ClientHello) -> None:
        fp = self.peer_fingerprint
        if fp is None:
            self.refuse(CloseCode.PAIR_NO_IDENTITY, "the host requires a client certificate")
        elif not self._is_paired(fp):
            event(_log, "native.unpaired", client=fp.hex(), name=hello.name or "")
            self.refuse(
                CloseCode.PAIR_DENIED, "this device is not paired; pair it with the host's PIN"
            )
        else:
            self.hello, self.state, self._deadline = hello, HostState.HELLO, None
            self._events.append(HelloReceived(hello, fp))

    def _on_deadline(self, now: float) -> None:
        if self.state is HostState.DONE:
            self.close(CLOSE_OK, "pairing done")  # the client did not close first
        else:
            self.close(CLOSE_ABORT, f"timed out in state {self.state.value}")

    def _on_closed(self) -> None:
        self._pairing.abandon(self.now)


class HostRouter:
    """Routes datagrams to connections by destination connection id; new Initials open one.

    Media packets never come here: the socket loop checks `packet.is_media` first.
    """

    def __init__(
        self,
        identity: TlsIdentity,
        gate: PairingGate,
        is_paired: Callable[[bytes], bool],
        *,
        wall_ns: Callable[[], int] = wall_clock_ns,
    ) -> None:
        self._identity, self._gate, self._is_paired = identity, gate, is_paired
        self._wall_ns = wall_ns
        self._by_cid: dict[bytes, HostConnection] = {}
        self.connections: list[HostConnection] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> HostConnection | None:
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        except ValueError:
            return None
        conn = self._by_cid.get(header.destination_cid)
        if conn is None:
            if header.packet_type != QuicPacketType.INITIAL or len(data) < MIN_INITIAL_DATAGRAM:
                return None
            conn = HostConnection(
                self._identity,
                self._gate,
                self._is_paired,
                original_dcid=header.destination_cid,
                now=now,
                wall_ns=self._wall_ns,
            )
            self._by_cid[header.destination_cid] = conn
            self.connections.append(conn)
        conn.receive_datagram(data, addr, now)
        self._index(conn)
        return conn

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out: list[tuple[bytes, Address]] = []
        for conn in list(self.connections):
            out += conn.datagrams_to_send(now)
            self._index(conn)
        return out

    def get_timer(self) -> float | None:
        timers = [t for c in self.connections if (t := c.get_timer()) is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for conn in list(self.connections):
            timer = conn.get_timer()
            if timer is not None and now >= timer:
                conn.handle_timer(now)
            self._index(conn)

    def events(self) -> Iterator[tuple[HostConnection, Event]]:
        """Every connection's pending events; a terminated connection leaves after its last."""
        for conn in list(self.connections):
            while (ev := conn.next_event()) is not None:
                yield conn, ev
            self._index(conn)

    def _index(self, conn: HostConnection) -> None:
        if conn.quic.terminated:
            for cid in [c for c, v in self._by_cid.items() if v is conn]:
                del self._by_cid[cid]
            if conn in self.connections and not conn.has_events:
                self.connections.remove(conn)
            return
        for cid in conn.cids:
            self._by_cid[cid] = conn
