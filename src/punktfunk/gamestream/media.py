"""The video and audio UDP ports, shared by every session like a GameStream host's.

A client announces where it wants media by pinging the port from its receive socket: 16 ASCII
bytes (the X-SS-Ping-Payload its RTSP SETUP got) plus a BE32 counter, every 500 ms. The payload
names the session, so clients behind NAT or on several addresses are matched correctly.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence

from ..log import event

_log = logging.getLogger("punktfunk.gamestream.media")

PING_LEN = 20
SEND_BUFFER = 4 * 1024 * 1024

# on_ping(payload, source address) - called for every well-formed ping
PingHandler = Callable[[bytes, tuple[str, int]], None]


class MediaPort:
    def __init__(self, name: str, bind: str, port: int, on_ping: PingHandler) -> None:
        self.name = name
        self._on_ping = on_ping
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self._sock.bind((bind, port))
        self._sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv_loop, name=f"{name}-ping", daemon=True)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def send(self, datagrams: Sequence[bytes], addr: tuple[str, int]) -> None:
        sendto = self._sock.sendto
        for datagram in datagrams:
            try:
                sendto(datagram, addr)
            except BlockingIOError:
                # The kernel buffer is full for a moment: this datagram is lost, like any
                # network loss; FEC and the client's recovery requests cover it.
                continue

    def _recv_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue  # e.g. ICMP port unreachable surfacing on a UDP socket
            if len(data) >= PING_LEN:
                self._on_ping(data[:16], addr)
            else:
                event(
                    _log,
                    "media.unknown_datagram",
                    logging.DEBUG,
                    port=self.name,
                    size=len(data),
                    client=addr[0],
                )
