"""The native host's socket shell: one UDP socket for QUIC and media, one thread driving it.

The thread owns the `HostRouter` and every QUIC connection in it (aioquic is not
thread-safe): it receives, demultiplexes by first byte (`packet.is_media`), runs the QUIC
timers, hands the connections' events to `on_event`, and sends what QUIC wants sent. Other
threads (a session's audio, its pipeline's timing reports) reach a connection only through
`call_soon`, which queues a function for this thread and wakes it. Media is the exception:
the pipeline's send thread writes sealed packets straight to the same socket (`sender`),
never through QUIC. No asyncio anywhere on this path.

Malformed input is contained to the datagram that carried it: an exception while handling
one is logged with its reason and the loop goes on with the next. The router guards each
connection's own work the same way, so one broken connection never holds up the others.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from ...log import Throttle, event
from ...supervise import supervised_thread
from ..wire.core import Address, Event
from ..wire.packet import is_media
from .host import HostConnection
from .pktinfo import PathSocket, is_initial
from .router import HostRouter
from .sink import BatchSender

_log = logging.getLogger("punktfunk.native.server")

SEND_BUFFER = 8 * 1024 * 1024
RECV_BUFFER = 4 * 1024 * 1024
MAX_DATAGRAM = 65_535
RECV_BATCH = 256  # datagrams read per wake-up before timers and sends get a turn
MAX_WAIT_S = 0.25
DROP_LOG_S = 10.0

EventHandler = Callable[[HostConnection, Event], None]


class NativeServer:
    def __init__(
        self,
        router: HostRouter,
        on_event: EventHandler,
        bind: str = "0.0.0.0",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.router = router
        self._on_event = on_event
        self._clock = clock
        self.sock = PathSocket()  # bound to the wildcard: replies leave from the dialled address
        for opt, size in ((socket.SO_SNDBUF, SEND_BUFFER), (socket.SO_RCVBUF, RECV_BUFFER)):
            # The kernel may cap it; a smaller buffer only costs burst headroom.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, opt, size)
        self.sock.bind((bind, port))
        self.sock.setblocking(False)
        self.sender = BatchSender(self.sock)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._calls: deque[Callable[[], None]] = deque()
        self._stop = threading.Event()
        self._thread = supervised_thread("native-net", self._run, self._stop)
        self.stats = {"quic_in": 0, "media_in": 0, "dropped": 0, "bad_input": 0, "quic_out": 0}
        self._throttle = Throttle(DROP_LOG_S, clock)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self._thread.start()

    def close(self, drain_s: float = 0.3) -> None:
        """Stop the loop; `drain_s` lets close frames queued just before go out first."""
        if self._thread.is_alive():
            if drain_s > 0:
                time.sleep(drain_s)
            self._stop.set()
            self._wake()
            self._thread.join(timeout=5)
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the socket thread (the only thread that may touch a connection)."""
        self._calls.append(fn)
        self._wake()

    @property
    def on_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # already awake (buffer full) or closing
            self._wake_w.send(b"\x00")

    # --- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            timer = self.router.get_timer()
            now = self._clock()
            wait = MAX_WAIT_S if timer is None else min(MAX_WAIT_S, max(0.0, timer - now))
            try:
                readable, _, _ = select.select([self.sock, self._wake_r], [], [], wait)
            except (OSError, ValueError):
                return  # closed under us
            if self._wake_r in readable:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            if self.sock in readable:
                self._receive()
            self._run_calls()
            now = self._clock()
            timer = self.router.get_timer()
            if timer is not None and now >= timer:
                self._guard("timer", lambda t=now: self.router.handle_timer(t))
            self._dispatch()
            self._flush()

    def _receive(self) -> None:
        for _ in range(RECV_BATCH):
            try:
                data, addr, local = self.sock.recvfrom_local(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                continue  # ICMP errors surface on UDP sockets; they concern one peer only
            if is_media(data):
                self.stats["media_in"] += 1
                self._dropped("media from a client (this build takes none: no microphone)", addr)
                continue
            self.stats["quic_in"] += 1
            now = self._clock()
            routed = self._guard(
                "datagram",
                lambda d=data, a=addr, t=now: self.router.receive_datagram(d, a, t),
                addr,
            )
            if isinstance(routed, str):
                self._dropped(routed, addr)
            elif isinstance(routed, HostConnection):  # accepted into a connection
                self.sock.learn(addr, local, is_initial(data) and not self._live_elsewhere(routed))

    def _live_elsewhere(self, conn: HostConnection) -> bool:
        """Another open connection already has this peer address: an Initial from it (anyone
        can forge one from a known address) must not move that session's source address."""
        addr = conn.peer_address
        return any(
            c is not conn and c.closed is None and c.peer_address == addr
            for c in self.router.connections
        )

    def _dropped(self, reason: str, addr: Address) -> None:
        """Count a dropped datagram; each reason is logged at most every DROP_LOG_S (a flood of
        garbage must not become a flood of log lines)."""
        self._throttle.event(_log, "native.dropped", logging.INFO, throttle_key=reason,
                             reason=reason, client=f"{addr[0]}:{addr[1]}")  # fmt: skip
        self.stats["dropped"] += 1

    def _run_calls(self) -> None:
        while self._calls:
            fn = self._calls.popleft()
            self._guard("call", fn)

    def _dispatch(self) -> None:
        try:
            for conn, ev in self.router.events():
                self._guard("event", lambda c=conn, e=ev: self._on_event(c, e), conn.peer_address)
        except Exception as exc:
            self.stats["bad_input"] += 1
            event(_log, "native.event_failed", logging.WARNING, reason=repr(exc))

    def _flush(self) -> None:
        try:
            out = self.router.datagrams_to_send(self._clock())
        except Exception as exc:
            event(_log, "native.send_failed", logging.WARNING, reason=repr(exc))
            return
        for data, addr in out:
            self.send_quic(data, addr)

    def send_quic(self, data: bytes, addr: Address) -> None:
        try:
            self.sock.sendto(data, addr)
            self.stats["quic_out"] += 1
        except BlockingIOError:
            pass  # QUIC retransmits what the buffer could not take
        except OSError as exc:
            event(_log, "native.sendto_failed", logging.DEBUG, client=addr, reason=exc.strerror)

    def _guard(self, what: str, fn: Callable[[], object], addr: Address | None = None) -> object:
        """Run one unit of work; a failure drops only it, with a logged reason."""
        try:
            return fn()
        except Exception as exc:
            self.stats["bad_input"] += 1
            client = f"{addr[0]}:{addr[1]}" if addr else ""
            self._throttle.event(_log, "native.input_dropped", logging.WARNING,
                                 throttle_key=what, stage=what, client=client,
                                 reason=repr(exc))  # fmt: skip
            return False
