"""Client side of punktfunk/2 (what `punktfunk probe` and the viewer drive).

`ClientConnection.session(identity, hello, host_fp)` dials a paired host: on the TLS handshake
it checks the host certificate against `host_fp`, opens the control stream and sends the
ClientHello; the ServerHello becomes `SessionStarted` with the media keys, and the caller
sends `ready()` once its decoder exists. `ClientConnection.pairing(identity, pin, name)` runs
the PIN ceremony instead (trusting the certificate it sees, which the PIN then authenticates)
and ends with `PairingFinished(ok, fingerprint=<host fingerprint to pin>)`.

`InputRoute(server_hello)` decides how each input event leaves, as the Rust client's input task
does with the capabilities the host granted.
"""

from __future__ import annotations

from collections.abc import Callable

from ...input.base import PadState
from ..wire.clock import ClockSync, wall_clock_ns
from ..wire.core import (
    Address,
    ClockSynced,
    Connected,
    Connection,
    MessageReceived,
    PairingFinished,
    SessionStarted,
)
from ..wire.dgram import InputEvent, InputKind
from ..wire.hello import ClientHello, Ready, ServerHello
from ..wire.input import NEUTRAL, classify, fold, normalize_grants
from ..wire.messages import ClockEcho, Message, PairChallenge, PairResult, Refused
from ..wire.pake import ClientPairing, PairingError
from ..wire.quic import ClientIdentity, PkfQuic, configuration
from ..wire.registry import (
    CLOSE_ABORT,
    CLOSE_OK,
    HANDSHAKE_TIMEOUT_S,
    PAIRING_TIMEOUT_S,
    HostCap,
    HostCap2,
)
from ..wire.scroll import ScrollOutput
from ..wire.seal import MediaKeys


class ClientConnection(Connection):
    def __init__(
        self,
        identity: ClientIdentity | None,
        *,
        now: float,
        hello: ClientHello | None = None,
        host_fp: bytes | None = None,
        pairing: ClientPairing | None = None,
        wall_ns: Callable[[], int] = wall_clock_ns,
    ) -> None:
        quic = PkfQuic(configuration=configuration(identity, is_client=True))
        super().__init__(quic, now, wall_ns)
        self._hello, self._expected_fp, self._pairing = hello, host_fp, pairing
        self.server_hello: ServerHello | None = None
        self.keys: MediaKeys | None = None
        self._clock: ClockSync | None = None
        if pairing is not None or hello is not None:
            self._deadline = now + (PAIRING_TIMEOUT_S if pairing else HANDSHAKE_TIMEOUT_S)

    @classmethod
    def session(
        cls, identity: ClientIdentity, hello: ClientHello, host_fp: bytes, *, now: float
    ) -> ClientConnection:
        return cls(identity, now=now, hello=hello, host_fp=host_fp)

    @classmethod
    def pairing(
        cls, identity: ClientIdentity, pin: str, name: str, *, now: float
    ) -> ClientConnection:
        return cls(identity, now=now, pairing=ClientPairing(pin, name, identity.fingerprint))

    def connect(self, addr: Address, now: float) -> None:
        self.now = now
        self.quic.connect(addr, now)

    def ready(self) -> None:
        """Tell the host the decoder and reassembler exist: media starts after this."""
        self.send(Ready())

    def sync_clock(self) -> None:
        """Run CLOCK_ROUNDS probe/echo rounds on the control stream; ends in ClockSynced."""
        self._clock = ClockSync()
        self.send(self._clock.next_probe(self.wall_ns()))

    def _on_handshake(self, now: float) -> None:
        fp = self.peer_fingerprint
        if fp is None or (self._expected_fp is not None and fp != self._expected_fp):
            self.close(CLOSE_ABORT, "host certificate does not match the pinned fingerprint")
            return
        self._events.append(Connected(fp))
        self._open_control()
        if self._pairing is not None:
            self.send(self._pairing.request(fp))
        elif self._hello is not None:
            self.send(self._hello)

    def _on_message(self, message: object, now: float) -> None:
        match message:
            case Refused():
                self._refused = message  # the close that follows carries the same code
            case ServerHello() if self._hello is not None and self.server_hello is None:
                self._on_server_hello(message)
            case PairChallenge() if self._pairing is not None:
                try:
                    self.send(self._pairing.on_challenge(message))
                except PairingError as exc:
                    self._events.append(PairingFinished(False, "", self.peer_fingerprint or b""))
                    self.close(CLOSE_ABORT, str(exc))
            case PairResult() if self._pairing is not None:
                self._events.append(PairingFinished(message.ok, "", self.peer_fingerprint or b""))
                self.close(CLOSE_OK if message.ok else CLOSE_ABORT, "pair done")
            case ClockEcho() if self._clock is not None:
                self._on_clock_echo(message)
            case Message() if self.server_hello is not None:
                self._events.append(MessageReceived(message))
            case _ if self.server_hello is not None:  # an input edge has no Message base
                self._events.append(MessageReceived(message))
            case _:
                name = type(message).__name__
                self.close(CLOSE_ABORT, f"{name} is not expected before the ServerHello")

    def _on_server_hello(self, hello: ServerHello) -> None:
        self.server_hello, self._deadline = hello, None
        if hello.suite is not None:
            exporter = self.quic.media_exporter(hello.session_id)
            self.keys = MediaKeys.derive(exporter, hello.suite)
        self._events.append(SessionStarted(hello, self.keys))

    def _on_clock_echo(self, reply: ClockEcho) -> None:
        clock = self._clock
        assert clock is not None
        if not clock.on_echo(reply, self.wall_ns()):
            return
        if clock.done:
            skew = clock.result()
            self._clock = None
            if skew is not None:
                self._events.append(ClockSynced(skew))
        else:
            self.send(clock.next_probe(self.wall_ns()))

    def _on_deadline(self, now: float) -> None:
        self.close(CLOSE_ABORT, "the host did not answer in time")


MAX_PADS = 16
_FOLDED = frozenset({InputKind.GAMEPAD_BUTTON, InputKind.GAMEPAD_AXIS})


class InputRoute:
    """How each input event leaves toward a host (`client/pump/input_task.rs`): events the
    grants refuse never go out; key presses and releases ride the control stream toward
    HOST_CAP2_INPUT_EDGES; toward HOST_CAP_GAMEPAD_STATE per-button/axis events fold into one
    seq-stamped GAMEPAD_STATE per pad and batch, and removals take the next seq; SCROLL becomes
    MOUSE_SCROLL toward a host without HOST_CAP2_SCROLL. Everything else is a datagram.
    `route` returns `(event, reliable)` pairs for `NativeReceiver.send_input`."""

    def __init__(self, hello: ServerHello) -> None:
        self.snapshots = bool(hello.host_caps & HostCap.GAMEPAD_STATE)
        self.edges = bool(hello.host_caps2 & HostCap2.INPUT_EDGES)
        self.grants = normalize_grants(hello.grants)
        self._scroll = ScrollOutput(bool(hello.host_caps2 & HostCap2.SCROLL))
        self._pads: dict[int, PadState] = {}
        self._seq = [0] * MAX_PADS

    def route(self, events: list[InputEvent]) -> list[tuple[InputEvent, bool]]:
        out: list[tuple[InputEvent, bool]] = []
        dirty: list[int] = []
        for ev in events:
            pad = ev.flags & 0xFF
            if self.snapshots and ev.kind in _FOLDED and ev.flags < MAX_PADS:
                state = fold(self._pads.get(pad, NEUTRAL), ev)
                if state is not None:
                    self._pads[pad] = state
                    dirty += [] if pad in dirty else [pad]
                continue
            self._flush(dirty, out)  # anything else goes out behind the snapshots so far
            if ev.kind is InputKind.GAMEPAD_STATE and pad < MAX_PADS:
                self._seq[pad] = (
                    ev.flags >> 24 & 0xFF
                )  # a caller's own snapshot: removals follow it
            if self.snapshots and ev.kind is InputKind.GAMEPAD_REMOVE and pad < MAX_PADS:
                self._pads.pop(pad, None)
                self._seq[pad] = (self._seq[pad] + 1) & 0xFF
                ev = InputEvent(ev.kind, ev.code, ev.x, ev.y, self._seq[pad] << 24 | pad)
            prepared = self._scroll.prepare(ev)
            if prepared is not None:
                self._send(prepared, out)
        self._flush(dirty, out)
        return out

    def _flush(self, dirty: list[int], out: list[tuple[InputEvent, bool]]) -> None:
        for pad in dirty:
            self._seq[pad] = seq = (self._seq[pad] + 1) & 0xFF
            s = self._pads[pad]
            x = (s.thumb_lx & 0xFFFF) << 16 | s.thumb_ly & 0xFFFF
            y = (s.thumb_rx & 0xFFFF) << 16 | s.thumb_ry & 0xFFFF
            flags = seq << 24 | s.left_trigger << 16 | s.right_trigger << 8 | pad
            wire = InputEvent(InputKind.GAMEPAD_STATE, s.buttons, _i32(x), _i32(y), flags)
            self._send(wire, out)
        dirty.clear()

    def _send(self, ev: InputEvent, out: list[tuple[InputEvent, bool]]) -> None:
        if not self.grants & classify(ev.kind):
            return
        edge = self.edges and ev.kind in (InputKind.KEY_DOWN, InputKind.KEY_UP)
        out.append((ev, edge))


def _i32(value: int) -> int:
    return value - (1 << 32) if value & 0x8000_0000 else value
