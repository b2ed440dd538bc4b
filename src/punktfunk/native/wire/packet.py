"""The 30-byte punktfunk/2 media header and the first-byte demultiplexer (`packet/v2.rs`).

`tag u8 ‖ seq u32` stay in the clear and are the AEAD's associated data; `epoch u8 ‖ flags u16
‖ frame u32 ‖ pts_us u32 ‖ block u16 ‖ base u32 ‖ shard u16 ‖ k u16 ‖ m u16 ‖ pad u16` are sealed
with the shard. All little-endian. The tag is `00rr ssss`: the top two bits are zero so the
byte never reads as QUIC (RFC 9443), `rr` is reserved, `ssss` the stream. The shard is the rest
of the datagram; `base` places each block and the block flagged LAST_BLOCK closes the frame at
`base + k` shards less `pad` bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .registry import V2_HEADER_LEN, V2_LAST_BLOCK, MediaStream

_HEADER = struct.Struct("<BIBHIIHIHHHH")
assert _HEADER.size == V2_HEADER_LEN


def is_media(datagram: bytes | bytearray | memoryview) -> bool:
    """Top two bits of the first byte clear: a media packet; anything else goes to QUIC.

    QUIC long headers start 11xxxxxx and short headers 01xxxxxx while the fixed bit is not
    greased (RFC 9287); aioquic never greases it and punktfunk's client turns it off.
    """
    return len(datagram) > 0 and datagram[0] & 0xC0 == 0


@dataclass(frozen=True, slots=True)
class MediaHeader:
    stream: MediaStream
    seq: int  # low 32 bits of the packet number; the nonce takes all 64 (`expand_seq`)
    epoch: int
    flags: int  # user flags (15 bits) | LAST_BLOCK
    frame: int
    pts_us: int  # capture time, µs after the session's clock origin, mod 2^32
    block: int
    base: int  # this block's first data shard within the frame
    shard: int
    k: int  # data shards in this block
    m: int  # recovery shards in this block
    pad: int  # bytes of padding in the frame's last data shard, on LAST_BLOCK only

    @property
    def last_block(self) -> bool:
        return bool(self.flags & V2_LAST_BLOCK)

    def pack(self, seq: int | None = None) -> bytes:
        """The 30 header bytes; a sealer passes the packet number it assigns as `seq`."""
        return _HEADER.pack(
            self.stream, (self.seq if seq is None else seq) & 0xFFFF_FFFF, self.epoch,
            self.flags, self.frame, self.pts_us & 0xFFFF_FFFF, self.block, self.base,
            self.shard, self.k, self.m, self.pad,
        )  # fmt: skip

    @classmethod
    def unpack(cls, packet: bytes | bytearray | memoryview) -> MediaHeader | None:
        """None on a short packet, a set reserved/QUIC bit, or a stream this build lacks."""
        if len(packet) < V2_HEADER_LEN:
            return None
        fields = _HEADER.unpack_from(packet)
        if fields[0] & 0xF0 or fields[0] > MediaStream.PROBE:
            return None
        return cls(MediaStream(fields[0]), *fields[1:])


def pack_header_into(buf: memoryview | bytearray, stream: int, seq: int, *rest: int) -> None:
    """The 30 header bytes at the start of `buf`, without a MediaHeader object (hot path).

    `rest` is epoch, flags, frame, pts_us, block, base, shard, k, m, pad."""
    _HEADER.pack_into(buf, 0, stream, seq & 0xFFFF_FFFF, *rest)


def expand_seq(reference: int, low: int) -> int:
    """The 64-bit packet number nearest `reference` whose low half is `low` (v2.rs)."""
    delta = (low - reference) & 0xFFFF_FFFF
    if delta >= 1 << 31:
        delta -= 1 << 32
    full = reference + delta
    return full if 0 <= full < 1 << 64 else low
