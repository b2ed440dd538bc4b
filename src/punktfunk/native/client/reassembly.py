"""Client-side reassembly of punktfunk/2 video: opened media packets -> whole access units.

Shards are kept per frame and block. A block is done once it holds `k` of its `k + m`
shards: straight when every data shard came, else through the FEC scheme the ServerHello
named: `punktfunk.fec.video_recover` (scheme 0, GF(2^8), at most 255 shards a block) or
`punktfunk.fec.gf16_recover` (scheme 1, GF(2^16) Leopard-RS, what a Rust host sends: up to
4096 data and 4096 recovery shards a block, shards of even length). A frame is done when
its LAST_BLOCK has been seen and every block up to it is done; its bytes are the data shards
in order less the last block's `pad`.

Frames leave in order. When a frame completes, any older frame still incomplete is declared
lost (the host sends frames in order, so its packets are not coming): the caller gets the
lost range to ask the host to invalidate. Memory is bounded: at most `MAX_PENDING` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ... import fec
from ..wire.packet import MediaHeader
from ..wire.registry import FecScheme, UserFlag

MAX_PENDING = 32
MAX_SHARDS_PER_BLOCK = 255  # GF(2^8)
# GF(2^16): the Rust host's largest max_data_per_block; recovery is bounded alike so a
# block's bookkeeping stays small whatever a header claims.
MAX_SHARDS_PER_BLOCK_16 = 4096


@dataclass
class _Block:
    k: int
    m: int
    size: int  # every shard of a block has its first shard's length (FEC needs equal rows)
    # By index, filled as shards arrive: a header claiming a large block costs nothing upfront.
    shards: dict[int, bytes] = field(default_factory=dict)
    data: list[bytes] | None = None
    repaired: int = 0  # data shards rebuilt by FEC


@dataclass
class _Frame:
    index: int
    flags: int = 0
    pts_us: int = 0
    blocks: dict[int, _Block] = field(default_factory=dict)
    block_count: int | None = None  # known once the LAST_BLOCK arrives
    pad: int = 0
    done_blocks: int = 0


@dataclass(frozen=True)
class AccessUnit:
    index: int
    data: bytes
    pts_us: int
    keyframe: bool
    repaired_shards: int  # > 0: FEC rebuilt part of this frame


@dataclass
class AssemblyStats:
    shards: int = 0
    frames: int = 0
    frames_recovered_by_fec: int = 0
    shards_repaired: int = 0
    frames_lost: int = 0
    malformed: int = 0
    late: int = 0  # shards of frames already delivered or declared lost


class FrameAssembler:
    def __init__(self, scheme: FecScheme = FecScheme.GF8) -> None:
        self.scheme = scheme  # the receiver sets the ServerHello's scheme before media flows
        self._frames: dict[int, _Frame] = {}
        self._next: int | None = None  # the oldest frame not yet delivered or lost
        self.stats = AssemblyStats()

    def add(
        self, header: MediaHeader, shard: bytes
    ) -> tuple[list[AccessUnit], tuple[int, int] | None]:
        """Feed one opened shard: `(completed frames in order, lost range or None)`."""
        st = self.stats
        st.shards += 1
        k, m, i = header.k, header.m, header.shard
        if not self._shape_ok(k, m, len(shard)) or i >= k + m:
            st.malformed += 1
            return [], None
        if self._next is not None and header.frame < self._next:
            st.late += 1
            return [], None
        frame = self._frames.get(header.frame)
        if frame is None:
            if len(self._frames) >= MAX_PENDING:
                self._frames.pop(min(self._frames))  # the oldest can no longer matter
            frame = self._frames[header.frame] = _Frame(header.frame)
        if (header.block == 0 and i == 0) or not frame.flags:
            frame.flags, frame.pts_us = header.flags & 0x7FFF, header.pts_us
        if header.last_block:
            frame.block_count, frame.pad = header.block + 1, header.pad
        block = frame.blocks.get(header.block)
        if block is None:
            block = frame.blocks[header.block] = _Block(k, m, len(shard))
        elif (block.k, block.m, block.size) != (k, m, len(shard)):
            st.malformed += 1
            return [], None
        if block.data is not None or i in block.shards:
            return [], None  # a duplicate or a surplus shard of a finished block
        block.shards[i] = shard
        if len(block.shards) >= k:
            self._finish_block(block)
            frame.done_blocks += 1
        if frame.block_count is None or frame.done_blocks < frame.block_count:
            return [], None
        return self._deliver(frame)

    def _shape_ok(self, k: int, m: int, size: int) -> bool:
        if k == 0:
            return False
        if self.scheme == FecScheme.GF16:
            even = m == 0 or size % 2 == 0  # Leopard codes 16-bit symbols
            return max(k, m) <= MAX_SHARDS_PER_BLOCK_16 and even
        return k + m <= MAX_SHARDS_PER_BLOCK

    def _finish_block(self, block: _Block) -> None:
        data = [block.shards.get(i) for i in range(block.k)]
        missing = data.count(None)
        if not missing:
            block.data = data  # type: ignore[assignment]
        else:
            slots = [block.shards.get(i) for i in range(block.k + block.m)]
            if self.scheme == FecScheme.GF16:
                block.data = fec.gf16_recover(slots, block.k)
            else:
                block.data = fec.video_recover(slots, block.k)
            block.repaired = missing
        block.shards = {}

    def _deliver(self, frame: _Frame) -> tuple[list[AccessUnit], tuple[int, int] | None]:
        lost: tuple[int, int] | None = None
        if self._next is not None and frame.index > self._next:
            lost = (self._next, frame.index - 1)
            self.stats.frames_lost += frame.index - self._next
        for index in [f for f in self._frames if f <= frame.index]:
            del self._frames[index]
        self._next = frame.index + 1
        assert frame.block_count is not None
        parts: list[bytes] = []
        repaired = 0
        for b in range(frame.block_count):
            block = frame.blocks.get(b)
            if block is None or block.data is None:  # a block index skipped: malformed
                self.stats.malformed += 1
                return [], lost
            parts.extend(block.data)
            repaired += block.repaired
        data = b"".join(parts)
        if frame.pad:
            data = data[: len(data) - frame.pad]
        self.stats.frames += 1
        if repaired:
            self.stats.frames_recovered_by_fec += 1
            self.stats.shards_repaired += repaired
        unit = AccessUnit(
            frame.index, data, frame.pts_us, bool(frame.flags & UserFlag.SOF), repaired
        )
        return [unit], lost
