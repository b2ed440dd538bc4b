"""The video and audio UDP ports, shared by every session like a GameStream host's.

A client announces where it wants media by pinging the port from its receive socket: 16 ASCII
bytes (the X-SS-Ping-Payload its RTSP SETUP got) plus a BE32 counter, every 500 ms. The payload
names the session (clients behind NAT are matched by it, not by port); the host also requires
the ping to come from the address that launched the session, so a sniffed payload cannot turn
a stream to another machine.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..log import event
from ..supervise import supervised_thread
from .audio import AudioPacketizer

_log = logging.getLogger("punktfunk.gamestream.media")

PING_LEN = 20
SEND_BUFFER = 4 * 1024 * 1024

# on_ping(payload, source address) - called for every well-formed ping
PingHandler = Callable[[bytes, tuple[str, int]], None]


def send_each(sock: socket.socket, datagrams: Sequence[bytes], addr: tuple[str, int]) -> None:
    """Each datagram to `addr` (the port's own socket, or a media worker's duplicate of it)."""
    sendto = sock.sendto
    for datagram in datagrams:
        try:
            sendto(datagram, addr)
        except BlockingIOError:
            # The kernel buffer is full for a moment: this datagram is lost, like any network
            # loss; FEC and the client's recovery requests cover it.
            continue


class MediaPort:
    def __init__(self, name: str, bind: str, port: int, on_ping: PingHandler) -> None:
        self.name = name
        self._on_ping = on_ping
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self._sock.bind((bind, port))
        self._sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = supervised_thread(f"{name}-ping", self._recv_loop, self._stop)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    @property
    def socket(self) -> socket.socket:
        """For a session's media worker to send from (a duplicate travels by SCM_RIGHTS)."""
        return self._sock

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def send(self, datagrams: Sequence[bytes], addr: tuple[str, int]) -> None:
        send_each(self._sock, datagrams, addr)

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


class _Chunks(Protocol):
    def read(self, timeout: float) -> Any: ...
    def close(self) -> None: ...


def pump_audio(
    capturer: _Chunks,
    encode: Callable[[bytes], bytes],
    packetizer: AudioPacketizer,
    frame_bytes: int,
    addr: Callable[[], tuple[str, int] | None],
    send: Callable[[Sequence[bytes], tuple[str, int]], None],
    stopped: Callable[[], bool],
) -> None:
    """A session's audio until `stopped()`: capture chunks (5 ms) gathered into Opus packets of
    `frame_bytes` PCM, packetized and sent once the client has said where (host or worker)."""
    pending = b""
    try:
        while not stopped():
            chunk = capturer.read(timeout=0.1)
            target = addr()
            if chunk is None or target is None:
                continue
            pending += chunk.pcm
            while len(pending) >= frame_bytes:
                opus = encode(pending[:frame_bytes])
                pending = pending[frame_bytes:]
                send(packetizer.packetize(opus), target)
    finally:
        capturer.close()
