"""ENet shell for the control channel (UDP, wire-compatible with Moonlight's ENet).

ENet is not thread-safe, so one thread owns the host: it services the network and drains an
outbox that other threads fill (`send`). Peers are identified by an integer id we assign; the
session layer never touches ENet objects.

Hostile datagrams: ENet reads into a 4096-byte buffer and its service call fails ("Servicing
error") on a longer datagram, having consumed it; the host itself stays sound (tested). So
datagrams longer than that are drained before ENet sees them (peeked with MSG_TRUNC), and any
service error left is counted, logged at most every ERROR_LOG_S and the loop services again:
no datagram ends the thread or a session.

ENet gives a connecting peer a slot before the handshake completes and holds it ~30 s if the
handshake is never finished, so a burst of bare CONNECTs would lock every new launch out.
Every datagram passes `_intercept` first: a CONNECT from an address that already holds
PEERS_PER_ADDRESS peers (half-open or connected) is dropped before ENet allocates a slot.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import queue
import select
import socket
import threading
from collections.abc import Callable

import enet

from ..log import Throttle, event
from ..supervise import supervised_thread

_log = logging.getLogger("punktfunk.gamestream.control")

MAX_PEERS = 64
SERVICE_MS = 2
ENET_MTU = 4096  # ENET_PROTOCOL_MAXIMUM_MTU: ENet's receive buffer; longer datagrams break service
SERVICE_ROUNDS = 64  # service calls per wake-up; one bad datagram costs one call, not the wake-up
ERROR_LOG_S = 10.0
PEERS_PER_ADDRESS = 4  # a Moonlight client holds one per session
_PEER_ID_MASK = 0x0FFF
_NO_PEER = 0x0FFF  # the peer id of a datagram from a peer without a slot yet (a CONNECT)
_SENT_TIME_FLAG = 0x8000
_COMMAND_CONNECT = 2


class ControlHandlers:
    """Callbacks run on the ENet thread; they must not block."""

    def __init__(
        self,
        on_connect: Callable[[int, int, str], None],  # (peer id, connect data, client ip)
        on_packet: Callable[[int, bytes], None],
        on_disconnect: Callable[[int], None],
    ) -> None:
        self.on_connect = on_connect
        self.on_packet = on_packet
        self.on_disconnect = on_disconnect


class ControlServer:
    def __init__(self, bind: str, port: int, handlers: ControlHandlers) -> None:
        self._host = enet.Host(enet.Address(bind.encode(), port), MAX_PEERS, 0, 0, 0)
        self._handlers = handlers
        self._ids = itertools.count(1)
        self._peers: dict[int, enet.Peer] = {}
        self._peer_ids: dict[int, int] = {}  # incomingPeerID -> our id
        self._outbox: queue.SimpleQueue[tuple[int, int, bytes, int] | tuple[int, None]] = (
            queue.SimpleQueue()
        )
        # A second handle on ENet's socket (same open file) to peek at and drain what ENet
        # cannot take; ENet keeps the socket non-blocking, and MSG_DONTWAIT says so again.
        self._peek = socket.socket(fileno=os.dup(self._host.socket.fileno()))
        self._stop = threading.Event()
        self._thread = supervised_thread("enet", self._loop, self._stop)
        self.port = port
        self.stats = {"oversize_dropped": 0, "service_errors": 0, "connects_refused": 0}
        self._host.intercept = self._intercept
        self._throttle = Throttle(ERROR_LOG_S)

    def start(self) -> None:
        self._thread.start()
        event(_log, "control.listening", port=self.port)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)
        self._peek.close()
        if self._thread.is_alive():
            return  # still inside ENet: leave its host to the process's end
        # pyenet has no close: its socket goes when the host is freed, which the intercept
        # callback (a cycle through self) and the peers would put off until a GC pass. An
        # embedded host that closes and opens again needs the port back now.
        self._host.intercept = None
        self._peers.clear()
        del self._host
        gc.collect()

    def send(self, peer_id: int, payload: bytes, channel: int = 0, reliable: bool = True) -> None:
        flags = enet.PACKET_FLAG_RELIABLE if reliable else 0
        self._outbox.put((peer_id, channel, payload, flags))

    def disconnect(self, peer_id: int) -> None:
        """Graceful disconnect after queued reliable packets are delivered."""
        self._outbox.put((peer_id, None))

    def _drain_outbox(self) -> None:
        while True:
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                return
            peer = self._peers.get(item[0])
            if peer is None:
                continue
            if item[1] is None:
                peer.disconnect_later(0)
                continue
            _, channel, payload, flags = item  # type: ignore[misc]
            peer.send(channel, enet.Packet(payload, flags))

    def _loop(self) -> None:
        fd = self._host.socket.fileno()
        while not self._stop.is_set():
            self._drain_outbox()
            # pyenet's service() holds the GIL while it waits, which would stall every media
            # thread; wait in select() (which releases it) and only poll ENet non-blocking.
            select.select([fd], [], [], SERVICE_MS / 1000)
            self._service()
            self._host.flush()
        for peer in list(self._peers.values()):
            peer.disconnect_now(0)
        self._host.flush()

    def _service(self) -> None:
        for _ in range(SERVICE_ROUNDS):
            self._drop_oversize()
            try:
                ev = self._host.service(0)
            except OSError as exc:
                # ENet stopped at a datagram it could not read (and consumed it); what
                # follows it is still queued, so service again.
                self._service_error(exc)
                continue
            while ev is not None and ev.type != enet.EVENT_TYPE_NONE:
                self._dispatch(ev)
                ev = self._host.check_events()
            return

    def _drop_oversize(self) -> None:
        """Drain datagrams at the head of the queue that ENet's buffer cannot hold."""
        while True:
            try:
                # msg_flags carries MSG_TRUNC when the datagram is longer than the buffer.
                _, _, flags, _ = self._peek.recvmsg(
                    ENET_MTU, 0, socket.MSG_PEEK | socket.MSG_DONTWAIT
                )
                if not flags & socket.MSG_TRUNC:
                    return
                self._peek.recv(1, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket; ENet reports it too
                self._service_error(exc)
                return
            self.stats["oversize_dropped"] += 1
            self._service_error(None)

    def _intercept(self, address: enet.Address, data: bytes) -> bool:
        """ENet's receive hook: True drops the datagram before ENet acts on it."""
        if not _is_connect(data):
            return False
        try:
            ip = address.host
            held = sum(
                1
                for peer in self._host.peers
                if peer.state != enet.PEER_STATE_DISCONNECTED and peer.address.host == ip
            )
        except Exception as exc:  # never let the hook break ENet's receive path
            self._service_error(OSError(f"intercept: {exc!r}"))
            return False
        if held < PEERS_PER_ADDRESS:
            return False
        self.stats["connects_refused"] += 1
        self._throttle.event(_log, "control.connect_refused", logging.WARNING, client=ip,
                             reason=f"already holds {held} control peers",
                             refused=self.stats["connects_refused"])  # fmt: skip
        return True

    def _service_error(self, exc: OSError | None) -> None:
        """Count a datagram ENet could not take; one log line per ERROR_LOG_S, however many."""
        if exc is not None:
            self.stats["service_errors"] += 1
        self._throttle.event(
            _log,
            "control.bad_datagram",
            logging.WARNING,
            reason=repr(exc) if exc is not None else f"longer than {ENET_MTU} bytes",
            oversize_dropped=self.stats["oversize_dropped"],
            service_errors=self.stats["service_errors"],
        )

    def _dispatch(self, ev: enet.Event) -> None:
        if ev.type == enet.EVENT_TYPE_CONNECT:
            peer_id = next(self._ids)
            self._peers[peer_id] = ev.peer
            self._peer_ids[ev.peer.incomingPeerID] = peer_id
            self._call(self._handlers.on_connect, peer_id, ev.data, str(ev.peer.address.host))
        elif ev.type == enet.EVENT_TYPE_RECEIVE:
            peer_id = self._peer_ids.get(ev.peer.incomingPeerID)
            if peer_id is not None:
                self._call(self._handlers.on_packet, peer_id, bytes(ev.packet.data))
        elif ev.type == enet.EVENT_TYPE_DISCONNECT:
            peer_id = self._peer_ids.pop(ev.peer.incomingPeerID, None)
            if peer_id is not None:
                self._peers.pop(peer_id, None)
                self._call(self._handlers.on_disconnect, peer_id)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a handler bug must not kill the control plane of all sessions
            event(_log, "control.handler_failed", logging.ERROR, reason=repr(exc))


def _is_connect(data: bytes) -> bool:
    """Whether an ENet datagram opens a connection (a CONNECT from a peer without a slot)."""
    if len(data) < 3:
        return False
    header = int.from_bytes(data[:2], "big")
    if header & _PEER_ID_MASK != _NO_PEER:
        return False
    offset = 4 if header & _SENT_TIME_FLAG else 2
    return len(data) > offset and data[offset] & 0x0F == _COMMAND_CONNECT
