"""The host's QUIC admission and connection table: one `HostRouter` per UDP socket.

Everything a sender that has not completed a handshake can reach lives here, and none of it
may disturb another connection (issue #11):

- A long header of a version we do not speak gets a stateless Version Negotiation packet
  (only for a full-size datagram, never in answer to one, rate-limited: it is smaller than
  what it answers, so it cannot amplify) and creates nothing.
- An Initial opens a connection only if it is full-size, of a supported version, and its
  packet protection checks out; anything else is dropped with a reason.
- Half-open connections (no control message yet: handshake under way, or done and silent)
  are capped per source address and in total, and expire with the host's handshake
  deadline. Past `retry_above` half-open ones a new Initial must first echo a Retry token,
  so senders that spoof their address cannot hold the remaining slots.
- Each connection's send, timer and event work runs under its own guard: an exception drops
  that unit of work only, and a connection whose send or timer work keeps failing is ended
  and removed. Receive failures only drop the datagram (a stranger may have caused them).

Sans-I/O: the caller feeds datagrams, sends what `datagrams_to_send` returns (stateless
replies included) and drives the timers, as with one connection.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import (
    QuicHeader,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler

from ...log import Throttle
from ..wire.clock import wall_clock_ns
from ..wire.core import Address, Event
from ..wire.pake import PairingGate
from ..wire.quic import TlsIdentity
from .host import MIN_INITIAL_DATAGRAM, HostConnection, HostState

_log = logging.getLogger("punktfunk.native.router")

HOST_CID_LENGTH = 8
SUPPORTED_VERSIONS = tuple(QuicConfiguration(is_client=False).supported_versions)
HALF_OPEN_PER_ADDRESS = 4
MAX_HALF_OPEN = 64
RETRY_ABOVE = 8  # half-open connections past which a new Initial must prove its address
STATELESS_PER_S = 200.0  # Version Negotiation / Retry replies, all senders together
STATELESS_BURST = 50.0
MAX_FAILURES = 3  # send/timer exceptions before a connection is ended and dropped
LOG_EVERY_S = 10.0

# Reasons a datagram opened nothing (the socket shell counts and logs them, rate-limited).
DROP_UNPARSABLE = "not a QUIC packet"
DROP_UNKNOWN = "not for a known connection, nor an Initial"
DROP_SMALL_INITIAL = "Initial in a datagram under 1200 bytes"
DROP_VERSION = "unsupported QUIC version (version negotiation sent)"
DROP_VN = "version negotiation or unsupported version from a client"
DROP_UNAUTHENTIC = "Initial whose packet protection does not check out"
DROP_PER_ADDRESS = "too many half-open connections from this address"
DROP_FULL = "too many half-open connections"
DROP_RETRY = "half-open connections are many: Retry sent"
DROP_BAD_TOKEN = "invalid Retry token"
DROP_RECEIVE_FAILED = "the connection failed on this datagram"


class HostRouter:
    """Routes datagrams to connections by destination connection id; new Initials open one.

    Media packets never come here: the socket loop checks `packet.is_media` first.
    """

    def __init__(
        self,
        identity: TlsIdentity,
        gate: PairingGate,
        is_paired: Callable[[bytes], bool],
        *,
        wall_ns: Callable[[], int] = wall_clock_ns,
        half_open_per_address: int = HALF_OPEN_PER_ADDRESS,
        max_half_open: int = MAX_HALF_OPEN,
        retry_above: int = RETRY_ABOVE,
    ) -> None:
        self._identity, self._gate, self._is_paired = identity, gate, is_paired
        self._wall_ns = wall_ns
        self._per_address, self._max_half_open = half_open_per_address, max_half_open
        self._retry_above = retry_above
        self._retry = QuicRetryTokenHandler()
        self._by_cid: dict[bytes, HostConnection] = {}
        self.connections: list[HostConnection] = []
        self._outbox: list[tuple[bytes, Address]] = []
        self._tokens, self._tokens_at = STATELESS_BURST, 0.0
        self._failures: dict[int, int] = {}  # by id(conn)
        self._throttle = Throttle(LOG_EVERY_S)

    # --- receiving ------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> HostConnection | str:
        """Feed one datagram: the connection it went to, or why it was dropped."""
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=HOST_CID_LENGTH)
        except ValueError:
            return DROP_UNPARSABLE
        conn = self._by_cid.get(header.destination_cid)
        if conn is None:
            opened = self._admit(header, data, addr, now)
            if isinstance(opened, str):
                return opened
            conn = opened
        else:
            try:
                conn.receive_datagram(data, addr, now)
            except Exception as exc:  # the datagram's sender may be anyone: never count it
                self._log_once("native.receive_failed", reason=repr(exc))
                return DROP_RECEIVE_FAILED
        self._index(conn)
        return conn

    def _admit(
        self, header: QuicHeader, data: bytes, addr: Address, now: float
    ) -> HostConnection | str:
        if header.version is not None and header.version not in SUPPORTED_VERSIONS:
            if header.packet_type == QuicPacketType.VERSION_NEGOTIATION:
                return DROP_VN  # never answer one: two spoofed servers would ping-pong
            if len(data) < MIN_INITIAL_DATAGRAM:
                return DROP_SMALL_INITIAL  # RFC 9000 §6.1: only full-size datagrams get one
            vn = encode_quic_version_negotiation(
                source_cid=header.destination_cid,
                destination_cid=header.source_cid,
                supported_versions=list(SUPPORTED_VERSIONS),
            )
            self._stateless(vn, addr, now)
            return DROP_VERSION
        if header.packet_type != QuicPacketType.INITIAL:
            return DROP_UNKNOWN
        if len(data) < MIN_INITIAL_DATAGRAM:
            return DROP_SMALL_INITIAL
        half_open = [c for c in self.connections if _half_open(c)]
        if sum(1 for c in half_open if c.opened_from == addr[0]) >= self._per_address:
            return DROP_PER_ADDRESS
        if len(half_open) >= self._max_half_open:
            return DROP_FULL
        original_dcid, retry_scid = header.destination_cid, None
        if not header.token and len(half_open) >= self._retry_above:
            self._send_retry(header, addr, now)
            return DROP_RETRY
        if header.token:  # only our Retry hands out tokens, however full the table is now
            try:
                original_dcid = self._retry.validate_token(
                    address=addr, destination_cid=header.destination_cid, token=header.token,
                    now=now,
                )  # fmt: skip
            except ValueError:
                return DROP_BAD_TOKEN
            retry_scid = header.destination_cid
        conn = HostConnection(
            self._identity, self._gate, self._is_paired, original_dcid=original_dcid,
            retry_scid=retry_scid, now=now, wall_ns=self._wall_ns,
        )  # fmt: skip
        conn.opened_from = addr[0]
        try:
            conn.receive_datagram(data, addr, now)
        except Exception as exc:
            self._log_once("native.receive_failed", reason=repr(exc))
            return DROP_RECEIVE_FAILED
        if not conn.quic.authentic_initial:
            return DROP_UNAUTHENTIC  # nothing decrypted: the connection is never kept
        self._by_cid[header.destination_cid] = conn
        self.connections.append(conn)
        return conn

    def _send_retry(self, header: QuicHeader, addr: Address, now: float) -> None:
        scid = os.urandom(HOST_CID_LENGTH)
        token = self._retry.create_token(
            address=addr, original_destination_connection_id=header.destination_cid,
            retry_source_connection_id=scid, now=now,
        )  # fmt: skip
        packet = encode_quic_retry(
            version=header.version, source_cid=scid, destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid, retry_token=token,
        )  # fmt: skip
        self._stateless(packet, addr, now)

    def _stateless(self, packet: bytes, addr: Address, now: float) -> None:
        """Queue a reply that creates no state, within a global rate (a flood gets few)."""
        refill = (now - self._tokens_at) * STATELESS_PER_S
        self._tokens = min(STATELESS_BURST, self._tokens + refill)
        self._tokens_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._outbox.append((packet, addr))

    # --- per-connection work, each under its own guard -------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._outbox = self._outbox, []
        for conn in list(self.connections):
            if conn.abandoned:
                continue
            sent = self._guard(conn, "send", lambda c=conn: c.datagrams_to_send(now))
            if sent:
                out += sent
            self._index(conn)
        return out

    def get_timer(self) -> float | None:
        timers = []
        for conn in self.connections:
            if conn.abandoned:
                continue
            try:
                timer = conn.get_timer()
            except Exception:
                timer = conn.now  # due now: handle_timer counts the failure
            if timer is not None:
                timers.append(timer)
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for conn in list(self.connections):
            if conn.abandoned:
                continue
            self._guard(conn, "timer", lambda c=conn: _run_timer(c, now))
            self._index(conn)

    def events(self) -> Iterator[tuple[HostConnection, Event]]:
        """Every connection's pending events; a terminated connection leaves after its last."""
        for conn in list(self.connections):
            while (ev := conn.next_event()) is not None:
                yield conn, ev
            self._index(conn)

    def _guard(self, conn: HostConnection, what: str, fn: Callable[[], object]) -> object:
        try:
            result = fn()
        except Exception as exc:
            count = self._failures.get(id(conn), 0) + 1
            self._failures[id(conn)] = count
            self._log_once(f"native.{what}_failed", reason=repr(exc), failures=count)
            if count >= MAX_FAILURES:
                conn.abandon(f"internal error in {what}: {exc!r}")
            return None
        self._failures.pop(id(conn), None)
        return result

    def _index(self, conn: HostConnection) -> None:
        if conn.quic.terminated or conn.abandoned:
            for cid in [c for c, v in self._by_cid.items() if v is conn]:
                del self._by_cid[cid]
            if conn in self.connections and not conn.has_events:
                self.connections.remove(conn)
                self._failures.pop(id(conn), None)
            return
        for cid in conn.cids:
            self._by_cid[cid] = conn

    def _log_once(self, name: str, **fields: object) -> None:
        """Log `name` at most every LOG_EVERY_S, with how many were held back."""
        self._throttle.event(_log, name, logging.WARNING, **fields)


def _half_open(conn: HostConnection) -> bool:
    """No control message yet: a handshake under way, or done by someone who says nothing
    (a real client sends its hello or pairing request right after the handshake)."""
    return conn.state is HostState.AWAIT_FIRST and conn.closed is None and not conn.abandoned


def _run_timer(conn: HostConnection, now: float) -> None:
    timer = conn.get_timer()
    if timer is not None and now >= timer:
        conn.handle_timer(now)
