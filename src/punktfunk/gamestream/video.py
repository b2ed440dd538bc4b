"""GameStream video packetizer, sans-I/O: one encoded frame in, the UDP datagrams out.

Each datagram is one FEC shard of `packet_size + 16` bytes:
RTP (12: 0x90, PT 0, BE16 seq, BE32 90 kHz timestamp, SSRC 0) + 4 reserved bytes +
NV_VIDEO_PACKET (16, little-endian: streamPacketIndex<<8, frameIndex, flags, extraFlags,
multiFecFlags 0x10, multiFecBlocks, fecInfo) + payload. The frame payload starts with an 8-byte
frame header. A frame is split into at most 4 FEC blocks; each block's parity is Reed-Solomon
over the whole shards (headers included), computed after the per-shard header fields the
client reads from recovered shards (flags, stream index) are in place and before the fields
it re-stamps itself (seq, timestamp, fecInfo, frame index, block) are written - the order
Moonlight's FEC recovery relies on.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..fec import video_parity_into

RTP_HEADER = 12
RESERVED = 4
NV_HEADER = 16
HEADERS = RTP_HEADER + RESERVED + NV_HEADER  # 32
FRAME_HEADER = 8
ENC_HEADER = 32
MAX_BLOCKS = 4
MAX_SHARDS_PER_BLOCK = 1023  # fecInfo's data-shard count (and shard index) are 10 bits
MAX_RS_SHARDS = 255

FLAG_PIC_DATA = 0x1
FLAG_EOF = 0x2
FLAG_SOF = 0x4
MULTI_FEC_FLAGS = 0x10


class FrameKind(IntEnum):
    """Frame-header frame type byte."""

    P = 1
    IDR = 2
    INTRA_REFRESH = 4
    AFTER_RFI = 5


class FrameTooLarge(ValueError):
    """A frame needs more than 4 blocks of 1023 shards; it cannot be sent."""


@dataclass(frozen=True)
class BlockPlan:
    data: int
    parity: int
    percentage: int


def plan_blocks(shard_count: int, fec_percentage: int, min_parity: int) -> list[BlockPlan]:
    """Split `shard_count` data shards into <= 4 FEC blocks.

    With FEC, a block holds at most 255 shards in total; a frame that would need more than four
    such blocks goes without FEC (percentage 0) in up to four blocks of 1023 data shards.
    """
    if fec_percentage > 0:
        max_data = (MAX_RS_SHARDS * 100) // (100 + fec_percentage)
        blocks = -(-shard_count // max_data)
        if blocks <= MAX_BLOCKS:
            return [
                _block(size, fec_percentage, min_parity)
                for size in _even_split(shard_count, blocks)
            ]
    blocks = -(-shard_count // MAX_SHARDS_PER_BLOCK)
    if blocks > MAX_BLOCKS:
        raise FrameTooLarge(f"frame of {shard_count} shards exceeds {MAX_BLOCKS} blocks")
    return [BlockPlan(size, 0, 0) for size in _even_split(shard_count, blocks)]


def _even_split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _block(data: int, percentage: int, min_parity: int) -> BlockPlan:
    """Parity for one block. The client derives the parity count from the percentage
    ((D * pct + 99) // 100), so a minimum parity is met by raising the percentage."""
    parity = (data * percentage + 99) // 100
    if parity < min_parity:
        percentage = min(255, 100 * min_parity // data)
        parity = (data * percentage + 99) // 100
    while data + parity > MAX_RS_SHARDS:
        percentage -= 1
        parity = (data * percentage + 99) // 100
    return BlockPlan(data, parity, percentage if parity else 0)


# Adaptive FEC (issue 13): the percentage follows the shard loss the client reports.
FEC_START_PERCENT = 20
FEC_MIN_PERCENT = 10
FEC_MAX_PERCENT = 50


def fec_percent_for_loss(loss: float) -> int:
    """Twice the observed shard loss plus 10 points, within 10..50 %: at 5 % loss 20 % parity,
    which repairs random loss of that rate in all but rare frames (a block's minimum parity
    still applies on top, in `_block`)."""
    need = math.ceil(round(max(0.0, loss) * 200, 6)) + FEC_MIN_PERCENT
    return min(FEC_MAX_PERCENT, max(FEC_MIN_PERCENT, need))


def frame_header(kind: FrameKind, latency_01ms: int, last_payload_len: int) -> bytes:
    return struct.pack(
        "<BHBHH", 0x01, min(latency_01ms, 0xFFFF), kind, last_payload_len & 0xFFFF, 0
    )


class VideoPacketizer:
    """Per-session packet state: RTP sequence, stream packet index, frame index, GCM counter."""

    def __init__(
        self,
        packet_size: int,
        fec_percentage: int = 20,
        min_parity: int = 0,
        key: bytes | None = None,
    ) -> None:
        if packet_size % 16 or packet_size <= NV_HEADER + FRAME_HEADER:
            raise ValueError(f"packet size {packet_size} must be a multiple of 16 above 24")
        self.packet_size = packet_size
        self.shard_size = packet_size + RTP_HEADER + RESERVED
        self.payload_per_shard = packet_size - NV_HEADER
        self.fec_percentage = fec_percentage
        self.min_parity = min_parity
        self._aead = AESGCM(key) if key is not None else None
        self._iv_counter = 0
        self.seq = 0
        self.stream_index = 0  # streamPacketIndex: 24 bits, so it must not wrap with seq
        self.frame_index = 0

    def packetize(
        self, bitstream: bytes, kind: FrameKind, timestamp_90k: int, latency_01ms: int
    ) -> list[bytes]:
        """All datagrams of the next frame, in send order (block by block, data then parity)."""
        self.frame_index += 1
        total = FRAME_HEADER + len(bitstream)
        count = -(-total // self.payload_per_shard)
        last_len = total - (count - 1) * self.payload_per_shard
        payload = frame_header(kind, latency_01ms, last_len) + bitstream
        plans = plan_blocks(count, self.fec_percentage, self.min_parity)
        out: list[bytes] = []
        offset = 0
        for index, plan in enumerate(plans):
            chunk = payload[offset * self.payload_per_shard :]
            out.extend(self._block(chunk, plan, index, len(plans), timestamp_90k))
            offset += plan.data
        return out

    def _block(
        self, payload: bytes, plan: BlockPlan, index: int, blocks: int, ts: int
    ) -> list[bytes]:
        shards = np.zeros((plan.data + plan.parity, self.shard_size), dtype=np.uint8)
        per = self.payload_per_shard
        body = np.zeros(plan.data * per, dtype=np.uint8)  # the last shard is zero-padded
        chunk = payload[: plan.data * per]
        body[: len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        # (a reshape of the non-contiguous payload view would copy: assign row-wise instead)
        shards[: plan.data, HEADERS:] = body.reshape(plan.data, per)
        base_seq = self.seq
        base_index = self.stream_index
        multi_blocks = (index << 4) | ((blocks - 1) << 6)
        for i in range(plan.data):
            flags = FLAG_PIC_DATA
            if i == 0:
                flags |= FLAG_SOF
            if i == plan.data - 1:
                flags |= FLAG_EOF
            struct.pack_into(
                "<IIBBBB",
                shards[i],
                RTP_HEADER + RESERVED,
                ((base_index + i) & 0xFFFFFF) << 8,
                self.frame_index,
                flags,
                0,
                MULTI_FEC_FLAGS,
                multi_blocks,
            )
        if plan.parity:
            video_parity_into(list(shards[: plan.data]), list(shards[plan.data :]))
        fec_common = (plan.data << 22) | (plan.percentage << 4)
        for i in range(plan.data + plan.parity):
            struct.pack_into(">BBHII", shards[i], 0, 0x90, 0, (base_seq + i) & 0xFFFF, ts, 0)
            struct.pack_into("<I", shards[i], RTP_HEADER + RESERVED + 4, self.frame_index)
            shards[i, RTP_HEADER + RESERVED + 11] = multi_blocks
            struct.pack_into("<I", shards[i], RTP_HEADER + RESERVED + 12, fec_common | (i << 12))
        self.seq = (base_seq + plan.data + plan.parity) & 0xFFFF
        self.stream_index = (base_index + plan.data + plan.parity) & 0xFFFFFF
        return [self._seal(shard.tobytes()) for shard in shards]

    def _seal(self, datagram: bytes) -> bytes:
        if self._aead is None:
            return datagram
        iv = struct.pack("<Q", self._iv_counter) + b"\x00\x00\x00V"
        self._iv_counter += 1
        sealed = self._aead.encrypt(iv, datagram, None)
        return iv + struct.pack("<I", self.frame_index) + sealed[-16:] + sealed[:-16]
