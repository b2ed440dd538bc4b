"""Replies leave from the address the client dialled, on a host with several addresses.

A UDP socket bound to the wildcard address lets the kernel pick each reply's source address
from the route to the client; on a multi-homed host that can be another address than the one
the client sent to, and a punktfunk client drops media from a source it did not dial (and QUIC
sees a path it never validated). With `IP_PKTINFO` the kernel reports, for every datagram
received, the local address it was sent to; `PathSocket` keeps that per client address and
passes it back with every send to that client (`sendmsg` with an `in_pktinfo` whose
`ipi_spec_dst` names the source), so QUIC, video, probes and everything else sent through the
one socket leave from the dialled address.

Which datagrams may set the address: the socket thread calls `learn` only for a datagram the
router accepted into a connection. An Initial of a connection whose address no other open
connection has (a new client, or one that restarts from the same port) sets it; anything else
only fills an address not yet known. So neither a forged short-header packet nor a forged
Initial from a live client's address (anyone can build an authentic Initial) moves that
client's media to another source. The table is bounded (oldest first out). Bound to one
address, the socket never asks for the option and sends as before.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

# Linux <netinet/in.h>: the Python socket module has no name for it.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO = struct.Struct("=i4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
_ANC_SIZE = socket.CMSG_SPACE(_PKTINFO.size)
MAX_PATHS = 4096  # client addresses remembered; far above any real host's sessions

Address = tuple[str, int]


def local_of(ancdata: list[tuple[int, int, bytes]]) -> str | None:
    """The local (destination) address of a received datagram, from its control messages."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            _, _, dest = _PKTINFO.unpack_from(data)
            return socket.inet_ntoa(dest)
    return None


def source_cmsg(local: str) -> tuple[int, int, bytes]:
    """The control message that makes a send leave from `local`."""
    return (socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(0, socket.inet_aton(local), bytes(4)))


def is_initial(data: bytes) -> bool:
    """A QUIC v1 long-header Initial (RFC 9000 §17.2.2: form 1, fixed 1, type 00)."""
    return bool(data) and data[0] & 0xF0 == 0xC0


class PathSocket(socket.socket):
    """The host's one UDP socket; sends to a known client leave from the address it dialled.

    Every send path of `socket.socket` used on this socket (`sendto`, `sendmsg`) is covered,
    so callers (the QUIC loop, the video sink's GSO batches, the probe filler) stay unchanged.
    Reads of the path table race only with the socket thread's writes, which a dict survives.
    """

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
        self.pktinfo = False
        self._local: dict[Address, str] = {}

    def bind(self, address: Any) -> None:
        super().bind(address)
        if address[0] in ("", "0.0.0.0"):
            with contextlib.suppress(OSError):  # no option: the kernel picks, as before
                self.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                self.pktinfo = True

    def recvfrom_local(self, bufsize: int) -> tuple[bytes, Address, str | None]:
        """One datagram, its sender and the local address it was sent to (None if unknown)."""
        if not self.pktinfo:
            data, addr = self.recvfrom(bufsize)
            return data, addr, None
        data, ancdata, _, addr = self.recvmsg(bufsize, _ANC_SIZE)
        return data, addr, local_of(ancdata)

    def learn(self, addr: Address, local: str | None, initial: bool) -> None:
        """Socket thread, for an accepted datagram: remember where `addr` sends to."""
        if local is None or (not initial and addr in self._local):
            return
        self._local.pop(addr, None)
        self._local[addr] = local
        while len(self._local) > MAX_PATHS:
            del self._local[next(iter(self._local))]

    def local_for(self, addr: Address) -> str | None:
        return self._local.get(addr)

    def sendto(self, data: Any, *args: Any) -> int:  # type: ignore[override]
        addr = args[-1]
        local = self._local.get(addr) if self.pktinfo else None
        if local is None:
            return super().sendto(data, *args)
        flags = args[0] if len(args) == 2 else 0
        return super().sendmsg([data], [source_cmsg(local)], flags, addr)

    def sendmsg(  # type: ignore[override]
        self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None
    ) -> int:
        local = self._local.get(address) if self.pktinfo and address is not None else None
        if local is not None:
            ancdata = [*ancdata, source_cmsg(local)]
        if address is None:
            return super().sendmsg(buffers, ancdata, flags)
        return super().sendmsg(buffers, ancdata, flags, address)
