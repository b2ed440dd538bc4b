"""ENet shell for the control channel (UDP, wire-compatible with Moonlight's ENet).

ENet is not thread-safe, so one thread owns the host: it services the network and drains an
outbox that other threads fill (`send`). Peers are identified by an integer id we assign; the
session layer never touches ENet objects.
"""

from __future__ import annotations

import itertools
import logging
import queue
import select
import threading
from collections.abc import Callable

import enet

from ..log import event

_log = logging.getLogger("punktfunk.gamestream.control")

MAX_PEERS = 64
SERVICE_MS = 2


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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="enet", daemon=True)
        self.port = port

    def start(self) -> None:
        self._thread.start()
        event(_log, "control.listening", port=self.port)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

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
            ev = self._host.service(0)
            while ev is not None and ev.type != enet.EVENT_TYPE_NONE:
                self._dispatch(ev)
                ev = self._host.check_events()
            self._host.flush()
        for peer in list(self._peers.values()):
            peer.disconnect_now(0)
        self._host.flush()

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
