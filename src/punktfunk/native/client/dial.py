"""A punktfunk/2 client's socket: the loop that drives a `ClientConnection` over it, and the
PIN ceremony, which needs nothing else. `NativeReceiver` streams over the same pump.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable

from ..wire.core import Closed, PairingFinished
from ..wire.packet import is_media
from ..wire.quic import ClientIdentity
from .client import ClientConnection

MAX_DATAGRAM = 65_535

Address = tuple[str, int]


class ProbeError(Exception):
    """The host refused, could not be reached, or the stream failed."""


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("0.0.0.0", 0))
    sock.setblocking(False)
    return sock


def pump(
    conn: ClientConnection,
    sock: socket.socket,
    addr: Address,
    until: Callable[[], bool],
    deadline: float,
    on_media: Callable[[bytes], None] | None = None,
    wake: socket.socket | None = None,
) -> None:
    """Drive `conn` over `sock` until `until()` or the deadline (monotonic seconds).

    A byte on `wake` ends the wait early (another thread queued something to send)."""
    watched = [sock] if wake is None else [sock, wake]
    while not until() and time.monotonic() < deadline:
        for data, dest in conn.datagrams_to_send(time.monotonic()):
            with contextlib.suppress(BlockingIOError, OSError):
                sock.sendto(data, dest)
        timer = conn.get_timer()
        now = time.monotonic()
        wait = 0.05 if timer is None else min(0.05, max(0.0, timer - now))
        readable, _, _ = select.select(watched, [], [], wait)
        if wake is not None and wake in readable:
            with contextlib.suppress(BlockingIOError, OSError):
                wake.recv(4096)
        if sock in readable:
            for _ in range(512):
                try:
                    data, src = sock.recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    break
                except OSError:
                    continue
                if is_media(data):
                    if on_media is not None:
                        on_media(data)
                elif src[1] == addr[1]:
                    conn.receive_datagram(data, src, time.monotonic())
        now = time.monotonic()
        timer = conn.get_timer()
        if timer is not None and now >= timer:
            conn.handle_timer(now)


def flush(conn: ClientConnection, sock: socket.socket) -> None:
    for data, dest in conn.datagrams_to_send(time.monotonic()):
        with contextlib.suppress(OSError):
            sock.sendto(data, dest)


def pair(
    addr: Address, identity: ClientIdentity, pin: str, name: str, timeout: float = 30.0
) -> bytes:
    """Run the PIN ceremony; the host fingerprint to pin, or ProbeError (with the close code)."""
    sock = client_socket()
    try:
        conn = ClientConnection.pairing(identity, pin, name, now=time.monotonic())
        conn.connect(addr, time.monotonic())
        result: list[PairingFinished | Closed] = []

        def done() -> bool:
            while (ev := conn.next_event()) is not None:
                if isinstance(ev, PairingFinished | Closed):
                    result.append(ev)
            return (bool(result) and conn.quic.terminated) or any(
                isinstance(r, Closed) for r in result
            )

        pump(conn, sock, addr, done, time.monotonic() + timeout)
        flush(conn, sock)  # our CONNECTION_CLOSE: the host frees its pairing slot on it
        finished = next((r for r in result if isinstance(r, PairingFinished)), None)
        if finished is not None and finished.ok:
            return finished.fingerprint
        closed = next((r for r in result if isinstance(r, Closed)), None)
        if closed is not None and closed.code not in (0, 1):
            raise ProbeError(f"pairing refused: code {closed.code:#x}: {closed.reason}")
        if not result:
            raise ProbeError(f"no answer from {addr[0]}:{addr[1]} within {timeout:.0f} s")
        if finished is None:  # closed before any verdict: the host went away, not the PIN
            why = f": {closed.reason}" if closed is not None and closed.reason else ""
            raise ProbeError(f"the host closed the connection before pairing finished{why}")
        raise ProbeError("pairing failed: wrong PIN (the confirmations disagree)")
    finally:
        sock.close()
