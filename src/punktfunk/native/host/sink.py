"""The native protocol's video `MediaSink`: access unit -> FEC blocks -> sealed media packets.

A frame is cut into equal `shard_payload`-byte data shards (the last one zero-padded; the
LAST_BLOCK header says by how much), grouped into blocks of at most `max_data_per_block`,
and each block gets `recovery_shards(k, fec_percent)` GF(2^8) Cauchy parity shards (FEC
scheme 0, `punktfunk.fec.video_parity`). Every shard rides one datagram: the 30-byte header
(`packet.MediaHeader`) and the shard sealed together under the session's host-to-client key
(`seal.MediaSealer`). All packets of a frame have the same length, which lets the sender hand
a whole microburst to the kernel in one UDP GSO `sendmsg` (see `BatchSender`).

`fec_percent` is read once per frame, so the session thread can change it between frames
(adaptive FEC) without a lock.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ... import fec
from ...encode.base import EncodedFrame, FrameType
from ...log import event
from ...session import sendlimit
from ..wire.adaptive import FEC_MAX_PERCENT, FEC_START_PERCENT, recovery_shards
from ..wire.packet import _HEADER, MediaHeader
from ..wire.registry import (
    DEFAULT_SHARD_PAYLOAD,
    V2_CLEAR_LEN,
    V2_HEADER_LEN,
    V2_LAST_BLOCK,
    WIRE_OVERHEAD,
    MediaStream,
    UserFlag,
)
from ..wire.seal import MediaSealer

_log = logging.getLogger("punktfunk.native.sink")

# Data shards per FEC block. punktfunk's own benches run 64 (`max_data_per_block: 64`); with
# the 50 % ceiling a block stays at 64 + 32 shards, far under GF(2^8)'s 255.
MAX_DATA_PER_BLOCK = 64
SOL_UDP = 17
UDP_SEGMENT = 103  # linux/udp.h: UDP generic segmentation offload, one segment size per call
GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS
GSO_MAX_BYTES = 65_000  # the whole super-datagram must fit one IP datagram's 64 KiB


@dataclass(frozen=True, slots=True)
class Shard:
    """One packet before sealing: its header fields and its payload."""

    header: MediaHeader
    payload: bytes | memoryview


def blocks(total: int, fec_percent: int, max_data_per_block: int) -> list[tuple[int, int, int]]:
    """`(base, k, m)` of each FEC block of a frame of `total` data shards, in order."""
    out = []
    for base in range(0, total, max_data_per_block):
        k = min(max_data_per_block, total - base)
        out.append((base, k, recovery_shards(k, fec_percent)))
    return out


def split_frame(
    data: bytes,
    frame_index: int,
    pts_us: int,
    flags: int,
    fec_percent: int,
    shard_payload: int = DEFAULT_SHARD_PAYLOAD,
    max_data_per_block: int = MAX_DATA_PER_BLOCK,
    epoch: int = 0,
) -> list[Shard]:
    """The data and recovery shards of one access unit, in send order (block by block).

    The reference form of what `NativeVideoSink.packetize` seals in place."""
    total = max(1, -(-len(data) // shard_payload))
    pad = total * shard_payload - len(data)
    padded = memoryview(data + bytes(pad) if pad else data)
    shards: list[Shard] = []
    for base, k, m in blocks(total, fec_percent, max_data_per_block):
        last = base + k == total
        block_flags = flags | V2_LAST_BLOCK if last else flags
        data_shards = [
            padded[(base + i) * shard_payload : (base + i + 1) * shard_payload] for i in range(k)
        ]
        parity = fec.video_parity(data_shards, m) if m else []
        for i, payload in enumerate([*data_shards, *parity]):
            header = MediaHeader(
                MediaStream.VIDEO, 0, epoch, block_flags, frame_index & 0xFFFF_FFFF, pts_us,
                base // max_data_per_block, base, i, k, m, pad if last else 0,
            )  # fmt: skip
            shards.append(Shard(header, payload))
    return shards


class BatchSender:
    """Puts a burst of equal-size datagrams on the wire with as few syscalls as it can.

    Python has no `sendmmsg`; UDP GSO (`UDP_SEGMENT`, Linux 4.18+) does better anyway: one
    `sendmsg` of up to 64 segments that the kernel cuts into separate datagrams. Where the
    kernel refuses it the sender falls back to one `sendto` per datagram, for good. A full
    socket buffer drops that datagram like any network loss (FEC and recovery cover it).
    """

    def __init__(self, sock: socket.socket, gso: bool = True) -> None:
        self._sock = sock
        self.gso = gso and hasattr(socket, "CMSG_LEN")
        self.sent = 0
        self.dropped = 0
        self._lock = threading.Lock()  # counters only; the kernel serializes the sends

    def send(self, datagrams: Sequence[bytes], addr: tuple[str, int]) -> None:
        if not datagrams:
            return
        if self.gso and len(datagrams) > 1:
            size = len(datagrams[0])
            if all(len(d) == size for d in datagrams):
                self._send_gso(datagrams, size, addr)
                return
        self._send_each(datagrams, addr)

    def _send_gso(self, datagrams: Sequence[bytes], size: int, addr: tuple[str, int]) -> None:
        per_call = max(1, min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // size))
        cmsg = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
        for start in range(0, len(datagrams), per_call):
            chunk = datagrams[start : start + per_call]
            try:
                self._sock.sendmsg([b"".join(chunk)], cmsg, 0, addr)
                self._count(len(chunk), 0)
            except BlockingIOError:
                self._count(0, len(chunk))
            except OSError as exc:
                if exc.errno not in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                    raise
                self.gso = False  # this kernel or device has no UDP GSO
                event(_log, "sink.gso_unavailable", logging.INFO, reason=exc.strerror)
                self._send_each(datagrams[start:], addr)
                return

    def _send_each(self, datagrams: Sequence[bytes], addr: tuple[str, int]) -> None:
        sendto = self._sock.sendto
        sent = dropped = 0
        for datagram in datagrams:
            try:
                sendto(datagram, addr)
                sent += 1
            except BlockingIOError:
                dropped += 1
        self._count(sent, dropped)

    def _count(self, sent: int, dropped: int) -> None:
        with self._lock:
            self.sent += sent
            self.dropped += dropped


class NativeVideoSink:
    """`session.pipeline.MediaSink` for punktfunk/2: packetize + seal here, send via `sender`.

    `pts_clock` maps a capture time (monotonic ns) to µs after the session's clock origin;
    `on_sent(frame, sent_ns)` hears when an access unit's last packet went to the kernel (the
    host timing datagram). `addr()` is read per burst: QUIC may migrate the client's path.
    """

    def __init__(
        self,
        sealer: MediaSealer,
        sender: BatchSender,
        addr: Callable[[], tuple[str, int] | None],
        pts_clock: Callable[[int], int],
        shard_payload: int = DEFAULT_SHARD_PAYLOAD,
        max_data_per_block: int = MAX_DATA_PER_BLOCK,
        fec_percent: int = FEC_START_PERCENT,
        on_sent: Callable[[EncodedFrame, int], None] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._sealer = sealer
        self._sender = sender
        self._addr = addr
        self._pts_clock = pts_clock
        self.shard_payload = shard_payload
        self.max_data_per_block = max_data_per_block
        self.fec_percent = fec_percent
        self._on_sent = on_sent
        self._clock = clock
        self._unsent: tuple[EncodedFrame, int] | None = None  # frame, packets not yet sent
        # A Reconfigure starts a new StreamConfig epoch with a new encoder, whose frame
        # indices start again at 0: `frame_base` keeps the wire's frame numbers increasing.
        self.epoch = 0
        self.frame_base = 0
        self.last_frame = -1
        self.frames = 0
        self.idr_frames = 0
        self.packets = 0

    def packetize(self, frame: EncodedFrame, latency_01ms: int) -> Sequence[bytes]:
        idr = frame.frame_type is FrameType.IDR
        flags = int(UserFlag.PIC | (UserFlag.SOF if idr else 0))
        percent = self.fec_percent
        if idr:
            # A lost IDR costs another IDR (and its loss another): keyframes get twice the
            # protection, within the band (docs/wire.md, Choices).
            percent = min(FEC_MAX_PERCENT, 2 * percent)
        wire_index = self.frame_base + frame.frame_index
        packets = self._seal_frame(frame.data, wire_index, frame.capture_ns, flags, percent)
        self.last_frame = wire_index
        self.frames += 1
        self.idr_frames += frame.frame_type is FrameType.IDR
        self.packets += len(packets)
        self._unsent = (frame, len(packets))
        return packets

    def _seal_frame(
        self, data: bytes, index: int, capture_ns: int, flags: int, percent: int
    ) -> list[memoryview]:
        """Every packet of one frame, sealed in place in one buffer: one allocation per frame,
        parity computed straight into the packets' shard slots, the header packed into the
        packet and the AEAD run in place. Same bytes as `split_frame` + `MediaSealer.seal`
        (tests/test_native_sink.py checks it); this is the per-packet hot path."""
        size, max_k = self.shard_payload, self.max_data_per_block
        total = max(1, -(-len(data) // size))
        pad = total * size - len(data)
        geometry = blocks(total, percent, max_k)
        wire = WIRE_OVERHEAD + size
        end = V2_HEADER_LEN + size
        buf = bytearray(wire * sum(k + m for _, k, m in geometry))
        view, src = memoryview(buf), memoryview(data)
        pts = self._pts_clock(capture_ns) & 0xFFFF_FFFF
        frame_no = index & 0xFFFF_FFFF
        pack_into, clear = _HEADER.pack_into, V2_CLEAR_LEN
        packets: list[memoryview] = []
        at = 0
        for base, k, m in geometry:
            last = base + k == total
            block_flags = flags | V2_LAST_BLOCK if last else flags
            block_pad, block_no = (pad if last else 0), base // max_k
            first = at
            for i in range(k):
                chunk = src[(base + i) * size : (base + i + 1) * size]
                view[at + V2_HEADER_LEN : at + V2_HEADER_LEN + len(chunk)] = chunk
                at += wire
            at += m * wire
            if m:
                slots = [view[o + V2_HEADER_LEN : o + end] for o in range(first, at, wire)]
                fec.video_parity_into(slots[:k], slots[k:])
            run = self._sealer.reserve(k + m)
            for i, o in enumerate(range(first, at, wire)):
                packet = view[o : o + wire]
                packets.append(packet)
                fields = (MediaStream.VIDEO, self.epoch, block_flags, frame_no, pts, block_no,
                          base, i, k, m, block_pad)  # fmt: skip
                if run is None:  # crossing a key index: the general path
                    self._sealer.seal_into(packet, fields, size)
                    continue
                seq = run[0] + i
                pack_into(buf, o, MediaStream.VIDEO, seq & 0xFFFF_FFFF, *fields[1:])
                run[1].encrypt_into(
                    (run[2] ^ seq).to_bytes(12, "big"),
                    packet[clear:end],
                    packet[:clear],
                    packet[clear:],
                )
        return packets

    def next_epoch(self) -> int:
        """Start the next StreamConfig epoch: frames from a new encoder follow the last one."""
        self.epoch = (self.epoch + 1) & 0xFF
        self.frame_base = self.last_frame + 1
        return self.epoch

    def transmit(self, datagrams: Sequence[bytes]) -> None:
        """One microburst (the pipeline paces them); the frame's last one reports it sent."""
        addr = self._addr()
        limiter = sendlimit.test_limiter
        if addr is not None:
            passed: Sequence[bytes] = datagrams
            if limiter is not None:  # test-only: a simulated bottleneck, maybe with a queue
                to, send = addr, self._sender.send
                passed = limiter.admit(datagrams, lambda late: send(late, to))
            self._sender.send(passed, addr)
        if self._unsent is not None:
            frame, left = self._unsent
            left -= len(datagrams)
            self._unsent = (frame, left) if left > 0 else None
            if left <= 0 and self._on_sent is not None:
                self._on_sent(frame, self._clock())
