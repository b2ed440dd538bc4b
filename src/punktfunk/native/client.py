"""Client side of punktfunk/2 (what `punktfunk probe` and the viewer drive).

`ClientConnection.session(identity, hello, host_fp)` dials a paired host: on the TLS handshake
it checks the host certificate against `host_fp`, opens the control stream and sends the
ClientHello; the ServerHello becomes `SessionStarted` with the media keys, and the caller
sends `ready()` once its decoder exists. `ClientConnection.pairing(identity, pin, name)` runs
the PIN ceremony instead (trusting the certificate it sees, which the PIN then authenticates)
and ends with `PairingFinished(ok, fingerprint=<host fingerprint to pin>)`.
"""

from __future__ import annotations

from collections.abc import Callable

from .clock import ClockSync, wall_clock_ns
from .core import (
    Address,
    ClockSynced,
    Connected,
    Connection,
    MessageReceived,
    PairingFinished,
    SessionStarted,
)
from .hello import ClientHello, Ready, ServerHello
from .messages import ClockEcho, Message, PairChallenge, PairResult, Refused
from .pake import ClientPairing, PairingError
from .quic import ClientIdentity, PkfQuic, configuration
from .registry import CLOSE_ABORT, CLOSE_OK, HANDSHAKE_TIMEOUT_S, PAIRING_TIMEOUT_S
from .seal import MediaKeys


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
