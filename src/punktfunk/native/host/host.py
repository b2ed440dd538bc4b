"""Host side of punktfunk/2: one `HostConnection` per client, routed by `router.HostRouter`.

A connection's first control message decides what it is. `PairRequest` runs the PIN ceremony
against the host's `PairingGate` and ends the connection; `ClientHello` from a paired
certificate becomes `HelloReceived`, and the host answers `accept(ServerHello)` (which derives
the media keys) or `refuse(code, reason)`. An unpaired or certificate-less client is refused
with a Refused frame and the same close code before any key exists, so no media can follow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from enum import Enum

from ...log import Throttle, event
from ..wire.clock import echo, wall_clock_ns
from ..wire.core import (
    Connected,
    Connection,
    HelloReceived,
    MessageReceived,
    PairingFinished,
    PairingRequested,
    ReadyReceived,
)
from ..wire.hello import ClientHello, Ready, ServerHello
from ..wire.messages import ClockProbe, PairProof, PairRequest, Refused
from ..wire.pake import HostPairing, PairingGate
from ..wire.quic import PkfQuic, TlsIdentity, configuration, fingerprint
from ..wire.registry import (
    CLOSE_ABORT,
    CLOSE_OK,
    HANDSHAKE_TIMEOUT_S,
    PAIR_RESULT_LINGER_S,
    PAIRING_TIMEOUT_S,
    SESSION_ID_LEN,
    CloseCode,
    MsgType,
)
from ..wire.seal import MediaKeys

_log = logging.getLogger("punktfunk.native.host")

_throttle = Throttle(10.0)

# Registered messages a client may send that this host does not act on, and why (logged per
# type, throttled; `Connection.unhandled` counts them). Nothing here is granted in our
# ServerHello, so a client that follows the caps never sends them.
UNHANDLED_REASONS: dict[MsgType, str] = {
    MsgType.PAD_IDENTITY: "our pads are virtual (no passthrough of the client's physical pad)",
    MsgType.CLIP_OFFER: "no shared clipboard: ClipControl is answered ClipState(off, backend)",
    MsgType.CLIP_FETCH: "no shared clipboard (transfer streams are stopped with 0x70)",
    MsgType.PAD_FEATURE: "pad feature reports need PAD_WRITES, which this host does not echo",
    MsgType.PHASE_REPORT: "retired (registry.rs: hosts skip it)",
    MsgType.AUTH_RESPONSE: "no device-key carrier: clients prove themselves by certificate",
    MsgType.SHARD_PAYLOAD_ACK: "the shard size never changes mid-session here",
}

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
        retry_scid: bytes | None = None,
        now: float,
        wall_ns: Callable[[], int] = wall_clock_ns,
    ) -> None:
        quic = PkfQuic(
            configuration=configuration(identity, is_client=False),
            original_destination_connection_id=original_dcid,
            retry_source_connection_id=retry_scid,
        )
        super().__init__(quic, now, wall_ns)
        self._pairing = HostPairing(gate, fingerprint(identity.cert))
        self._is_paired = is_paired
        self.state = HostState.AWAIT_FIRST
        self.hello: ClientHello | None = None
        self.server_hello: ServerHello | None = None
        self.keys: MediaKeys | None = None
        self._deadline = now + HANDSHAKE_TIMEOUT_S
        self.opened_from = ""  # the source IP of its first Initial (half-open caps)

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
        # A client that got its session but never says Ready would hold the monitor forever.
        self._deadline = self.now + HANDSHAKE_TIMEOUT_S
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
                self.state, self._deadline = HostState.STREAMING, None
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
        elif hello.access_only:
            # An access check: the device is paired and may stream; no session follows.
            event(_log, "native.access_checked", client=fp.hex(), name=hello.name or "")
            self.refuse(CloseCode.ACCESS_GRANTED, "access granted: this device is paired")
        else:
            self.hello, self.state, self._deadline = hello, HostState.HELLO, None
            self._events.append(HelloReceived(hello, fp))

    def ignore(self, msg_type: MsgType) -> None:
        """A decoded message the session does not act on: counted and logged like one that
        is not decoded at all (never dropped without a trace)."""
        self.unhandled[msg_type] = self.unhandled.get(msg_type, 0) + 1
        self._on_unhandled(msg_type)

    def _on_unhandled(self, msg_type: MsgType) -> None:
        reason = UNHANDLED_REASONS.get(msg_type, "a host-to-client message, not ours to receive")
        fp = (self.peer_fingerprint or b"").hex()[:16]
        _throttle.event(_log, "native.message_unhandled", logging.INFO, throttle_key=msg_type.name,
                        type=msg_type.name, client=fp, reason=reason)  # fmt: skip

    def _on_deadline(self, now: float) -> None:
        if self.state is HostState.DONE:
            self.close(CLOSE_OK, "pairing done")  # the client did not close first
        else:
            self.close(CLOSE_ABORT, f"timed out in state {self.state.value}")

    def _on_closed(self) -> None:
        self._pairing.abandon(self.now)
