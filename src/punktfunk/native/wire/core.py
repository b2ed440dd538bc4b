"""The sans-I/O punktfunk/2 connection core shared by `HostConnection` and `ClientConnection`.

The caller owns the socket and the clock: it feeds each received QUIC datagram with
`receive_datagram(data, addr, now)`, sends what `datagrams_to_send(now)` returns, calls
`handle_timer(now)` when `get_timer()` is due, and drains typed events with `next_event()`.
`now` is a monotonic time in seconds (aioquic's); wall-clock nanoseconds for clock sync come
from `wall_ns`. Media never passes through here: it rides the same UDP socket, told apart by
the first byte (`packet.is_media`), and is sealed with the keys this core derives.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aioquic.quic import events as qe

from ...log import Throttle, event
from .clock import ClockSkew
from .codec import decode_message
from .dgram import Datagram, Feedback, encode_clock_echo
from .dgram import decode as decode_datagram
from .hello import ClientHello, ServerHello
from .messages import ClockEcho, ClockProbe, Message, Refused
from .quic import PkfQuic, fingerprint
from .registry import CLOSE_ABORT, KEEPALIVE_S, CloseCode, MsgType, StreamType
from .seal import MediaKeys
from .tlv import FrameDecoder, WireError, WireErrorCode, decode_varint, encode_varint

_log = logging.getLogger("punktfunk.native")
_throttle = Throttle(10.0)

# Stop codes for a peer's stream this build does not serve (registry.rs): a clipboard transfer
# is cancelled as the Rust clipboard cancels one; every other type is unknown to us.
_STOP_CODE = {StreamType.TRANSFER: CloseCode.CLIP_CANCELLED}

Address = tuple[str, int]


@dataclass(frozen=True)
class Connected:
    """TLS is up. `fingerprint` is the peer certificate's SHA-256 (None: it showed none)."""

    fingerprint: bytes | None


@dataclass(frozen=True)
class HelloReceived:
    """Host: a paired client asks for a session. Answer `accept(...)` or `refuse(...)`."""

    hello: ClientHello
    fingerprint: bytes


@dataclass(frozen=True)
class PairingRequested:
    """Host: a client started the PIN ceremony (a challenge went out)."""

    name: str
    fingerprint: bytes


@dataclass(frozen=True)
class PairingFinished:
    """Host: store `fingerprint` under `name` when `ok`. Client: pin the host's `fingerprint`."""

    ok: bool
    name: str
    fingerprint: bytes


@dataclass(frozen=True)
class SessionStarted:
    """Client: the host's ServerHello and the media keys for it (None: no media AEAD)."""

    hello: ServerHello
    keys: MediaKeys | None


@dataclass(frozen=True)
class ReadyReceived:
    """Host: the client's decoder is up; media may flow."""


@dataclass(frozen=True)
class MessageReceived:
    """Any other control message (Reconfigure, SetBitrate, StreamConfig, input edges...)."""

    message: object


@dataclass(frozen=True)
class DatagramReceived:
    datagram: Datagram | Feedback | ClockProbe | ClockEcho


@dataclass(frozen=True)
class ClockSynced:
    skew: ClockSkew


@dataclass(frozen=True)
class Closed:
    """The connection ended: `code` is a CloseCode (or CLOSE_OK/CLOSE_ABORT), with reason."""

    code: int
    reason: str
    by_peer: bool


Event = (
    Connected
    | HelloReceived
    | PairingRequested
    | PairingFinished
    | SessionStarted
    | ReadyReceived
    | MessageReceived
    | DatagramReceived
    | ClockSynced
    | Closed
)


class Connection:
    """What both ends share: the QUIC connection, the control stream, keepalive and close."""

    is_host = False

    def __init__(self, quic: PkfQuic, now: float, wall_ns: Callable[[], int]) -> None:
        self.quic = quic
        self.now = now
        self.wall_ns = wall_ns
        self.peer_fingerprint: bytes | None = None
        self.connected = False  # the TLS handshake completed
        self.closed: Closed | None = None
        self.cids: set[bytes] = {quic.host_cid}
        self._events: deque[Event] = deque()
        self._control: int | None = None
        # Only the opener (the client) writes the stream-type varint first.
        self._decoder = FrameDecoder(prologue=self.is_host)
        self._deadline: float | None = None
        self._next_ping = now + KEEPALIVE_S
        self._close_after_flush: tuple[int, str] | None = None
        self._refused: Refused | None = None
        self._stopped: set[int] = set()
        self._untyped: dict[int, bytes] = {}  # a new stream's bytes until its type varint is whole
        self.stopped_streams: dict[int, int] = {}  # stream type -> streams stopped
        self.unhandled: dict[int, int] = {}  # registered message type we do not act on -> count
        self.dropped_datagrams = 0  # unknown kind, disagreeing tag or bad fields
        self.abandoned = False  # its QUIC state kept failing: no more I/O, only its Closed

    # I/O driven by the caller

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.now = now
        self.quic.receive_datagram(data, addr, now)
        self._process(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        self.now = now
        out = self.quic.datagrams_to_send(now)
        if self._close_after_flush is not None:
            # The Refused frame left in `out`; the CONNECTION_CLOSE follows it.
            code, reason = self._close_after_flush
            self._close_after_flush = None
            self.quic.close(error_code=code, reason_phrase=reason)
            out += self.quic.datagrams_to_send(now)
        if out:
            self._next_ping = now + KEEPALIVE_S
        self._process(now)
        return out

    def get_timer(self) -> float | None:
        if self.quic.terminated:
            return None
        times = [t for t in (self.quic.get_timer(), self._deadline) if t is not None]
        if self.closed is None and self.connected:
            times.append(self._next_ping)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        self.now = now
        timer = self.quic.get_timer()
        if timer is not None and now >= timer:
            self.quic.handle_timer(now)
        if self._deadline is not None and now >= self._deadline and self.closed is None:
            self._deadline = None
            self._on_deadline(now)
        if self.closed is None and self.connected and now >= self._next_ping:
            self.quic.send_ping(0)
            self._next_ping = now + KEEPALIVE_S
        self._process(now)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    @property
    def peer_address(self) -> Address | None:
        """Where the peer's QUIC packets come from now: the host sends media there."""
        paths = self.quic._network_paths  # aioquic keeps the active path first
        return paths[0].addr if paths else None

    # Sending

    def send(self, message: Message) -> None:
        self.send_frame(message.encode())

    def send_frame(self, frame_bytes: bytes) -> None:
        if self._control is None:
            raise RuntimeError("no control stream yet")
        self.quic.send_stream_data(self._control, frame_bytes)

    def send_datagram(self, datagram: bytes) -> None:
        """A QUIC datagram: `dgram.encode(kind, payload)` or one of dgram's encoders."""
        self.quic.send_datagram_frame(datagram)

    def close(self, code: int = CLOSE_ABORT, reason: str = "") -> None:
        """Close now; pending stream data may not be delivered (use `refuse` for that)."""
        if self.closed is None:
            self.quic.close(error_code=code, reason_phrase=reason)
            self._finish(code, reason, by_peer=False)

    def abandon(self, reason: str) -> None:
        """Give up on a connection whose QUIC state raises: no close frame (sending is what
        fails), only the Closed event so its session ends; the router then drops it."""
        self.abandoned = True
        if self.closed is None:
            self._finish(CLOSE_ABORT, reason, by_peer=False)

    def refuse(self, code: CloseCode, reason: str) -> None:
        """Send Refused on the control stream, then close with the same code and reason."""
        if self.closed is not None:
            return
        if self._control is not None:
            self.send(Refused(code, reason))
        self._close_after_flush = (int(code), reason)
        self._finish(int(code), reason, by_peer=False)

    # Internals

    def _open_control(self) -> None:
        self._control = self.quic.get_next_available_stream_id()
        self.quic.send_stream_data(self._control, encode_varint(StreamType.CONTROL))

    def _finish(self, code: int, reason: str, *, by_peer: bool) -> None:
        self._deadline = None
        self.closed = Closed(code, reason, by_peer)
        self._on_closed()
        self._events.append(self.closed)
        event(_log, "native.closed", code=hex(code), reason=reason, by_peer=by_peer)

    def _process(self, now: float) -> None:
        while (ev := self.quic.next_event()) is not None:
            match ev:
                case qe.HandshakeCompleted():
                    self.connected = True
                    cert = self.quic.peer_certificate()
                    self.peer_fingerprint = None if cert is None else fingerprint(cert)
                    self._on_handshake(now)
                case qe.StreamDataReceived():
                    self._on_stream(ev, now)
                case qe.DatagramFrameReceived():
                    self._on_datagram(ev.data, now)
                case qe.ConnectionIdIssued():
                    self.cids.add(ev.connection_id)
                case qe.ConnectionIdRetired():
                    self.cids.discard(ev.connection_id)
                case qe.ConnectionTerminated() if self.closed is None:
                    refused = self._refused
                    if refused is not None:
                        self._finish(refused.code, refused.reason, by_peer=True)
                    else:
                        self._finish(ev.error_code, ev.reason_phrase, by_peer=True)

    def _on_stream(self, ev: qe.StreamDataReceived, now: float) -> None:
        sid, data = ev.stream_id, ev.data
        if sid != self._control:
            if sid in self._stopped:
                return
            # A new stream: its type varint decides. The host takes the client's first
            # bidirectional CONTROL stream; anything else is stopped with its code.
            data = self._untyped.pop(sid, b"") + data
            got = decode_varint(data)
            if got is None:
                self._untyped[sid] = data  # at most 7 bytes: a varint is never longer than 8
                return
            takes = self._control is None and self.is_host and sid % 4 == 0
            if not takes or got[0] != StreamType.CONTROL:
                self._stop(sid, got[0])
                return
            self._control = sid
        try:
            frames = self._decoder.feed(data)
            if self._decoder.stream_type not in (None, StreamType.CONTROL):
                raise WireError(WireErrorCode.UNEXPECTED_MESSAGE, "first stream is not control")
            for msg_type, body in frames:
                message = decode_message(msg_type, body)
                if message is None and msg_type in MsgType._value2member_map_:
                    self.unhandled[msg_type] = self.unhandled.get(msg_type, 0) + 1
                    self._on_unhandled(MsgType(msg_type))
                elif message is not None and self.closed is None:
                    self._on_message(message, now)
        except WireError as exc:
            event(_log, "native.malformed", logging.WARNING, error=str(exc))
            self.close(CLOSE_ABORT, str(exc))

    def _stop(self, sid: int, stream_type: int) -> None:
        """Refuse a stream we do not serve (management, transfer, input, unknown): STOP_SENDING
        with the registry's code; the connection and its control stream go on."""
        self._stopped.add(sid)
        code = _STOP_CODE.get(stream_type, CloseCode.STOP_UNKNOWN_STREAM)  # type: ignore[call-overload]
        self.quic.stop_stream(sid, code)
        self.stopped_streams[stream_type] = self.stopped_streams.get(stream_type, 0) + 1
        _throttle.event(_log, "native.stream_refused", logging.INFO, throttle_key=str(stream_type),
                        stream_type=stream_type, code=hex(code))  # fmt: skip

    def _on_datagram(self, data: bytes, now: float) -> None:
        got = decode_datagram(data)
        if got is None:
            self.dropped_datagrams += 1
            return
        if isinstance(got, ClockProbe) and self.is_host:
            wall = self.wall_ns()
            self.send_datagram(encode_clock_echo(ClockEcho(got.t1_ns, wall, self.wall_ns())))
            return
        self._events.append(DatagramReceived(got))

    # Hooks for the two ends

    def _on_handshake(self, now: float) -> None:
        raise NotImplementedError

    def _on_message(self, message: object, now: float) -> None:
        raise NotImplementedError

    def _on_deadline(self, now: float) -> None:
        raise NotImplementedError

    def _on_closed(self) -> None:
        """Release per-connection state (a pairing attempt in flight)."""

    def _on_unhandled(self, msg_type: MsgType) -> None:
        """A registered message this end does not model arrived (counted in `unhandled`)."""
