"""Our client reads a Rust host's video: GF(2^16) blocks of 1000+ shards through the receive path.

Packets are built as a Rust host sends FEC scheme 1 (media header, sealed with the session's
media keys), with recovery shards from the independent Lagrange construction of
test_fec_gf16 (not from our encoder), then opened and reassembled by the client's
FrameAssembler set to the scheme the ServerHello names; 10 % of every block is lost.
"""

from __future__ import annotations

import math
import random

from punktfunk.native.client.reassembly import FrameAssembler
from punktfunk.native.wire.hello import ServerHello
from punktfunk.native.wire.packet import MediaHeader
from punktfunk.native.wire.registry import (
    V2_LAST_BLOCK,
    FecScheme,
    MediaStream,
    MediaSuite,
    UserFlag,
)
from punktfunk.native.wire.seal import MediaKeys, MediaOpener, MediaSealer, Role
from test_fec_gf16 import Field, lagrange_parity

SHARD = 256  # four 64-byte chunks: the Lagrange reference needs whole chunks


def _keys() -> MediaKeys:
    return MediaKeys.derive(bytes(range(32)), MediaSuite.AES_128_GCM)


def _packets(field: Field, frame: int, data: bytes, block_sizes: list[int]) -> list[bytes]:
    """A Rust-shaped frame: blocks of k data shards + ceil(12 % of k) recovery shards."""
    sealer = MediaSealer(_keys(), Role.HOST)
    sealer.next_seq = frame * 10_000
    pad = -len(data) % SHARD
    padded = data + bytes(pad)
    shards = [padded[i : i + SHARD] for i in range(0, len(padded), SHARD)]
    assert sum(block_sizes) == len(shards)
    out, base = [], 0
    for block, k in enumerate(block_sizes):
        m = math.ceil(k * 0.12)
        last = block == len(block_sizes) - 1
        flags = int(UserFlag.PIC | (UserFlag.SOF if frame == 0 else 0))
        flags |= V2_LAST_BLOCK if last else 0
        chunk = shards[base : base + k]
        for i, shard in enumerate([*chunk, *lagrange_parity(field, chunk, m)]):
            header = MediaHeader(
                MediaStream.VIDEO, 0, 0, flags, frame, 1000 * frame, block, base, i, k, m,
                pad if last else 0,
            )  # fmt: skip
            out.append(sealer.seal(header, shard))
        base += k
    return out


def _lossy(packets: list[bytes], blocks: list[int], rng: random.Random) -> list[bytes]:
    """Drop 10 % of every block's packets at random (12 % recovery covers it), then shuffle."""
    kept, start = [], 0
    for k in blocks:
        n = k + math.ceil(k * 0.12)
        block = packets[start : start + n]
        lost = set(rng.sample(range(n), n // 10))
        kept += [p for i, p in enumerate(block) if i not in lost]
        start += n
    rng.shuffle(kept)
    return kept


def test_gf16_blocks_of_1000_plus_shards_with_10_percent_loss_reassemble():
    field, rng = Field(), random.Random(12)
    # What a Rust host announces (fec_scheme 1); the receiver hands it to its assembler.
    wire = ServerHello(session_id=bytes(range(16)), fec_scheme=FecScheme.GF16).fields().body()
    hello = ServerHello.decode_body(wire)
    assert hello.fec_scheme == FecScheme.GF16
    frames = [
        (rng.randbytes(1100 * SHARD - 77), [1100]),
        (rng.randbytes(1400 * SHARD), [1024, 376]),
    ]
    opener, asm = MediaOpener(_keys(), Role.CLIENT), FrameAssembler(hello.fec_scheme)
    delivered = []
    for index, (data, blocks) in enumerate(frames):
        for packet in _lossy(_packets(field, index, data, blocks), blocks, rng):
            opened = opener.open(packet)
            assert opened is not None
            header, _, shard = opened
            units, lost = asm.add(header, shard)
            assert lost is None
            delivered += units
    assert [u.data for u in delivered] == [data for data, _ in frames]
    assert delivered[0].keyframe and all(u.repaired_shards > 0 for u in delivered)
    assert asm.stats.malformed == 0 and asm.stats.frames_recovered_by_fec == 2


def test_gf8_assembler_refuses_blocks_past_255_and_gf16_bounds_hold():
    field, rng = Field(), random.Random(13)
    data = rng.randbytes(300 * SHARD)
    packets = _packets(field, 0, data, [300])
    opener = MediaOpener(_keys(), Role.CLIENT)
    opened = [opener.open(p) for p in packets]
    gf8 = FrameAssembler()  # scheme 0 caps a block at 255 shards
    for header, _, shard in opened:  # type: ignore[misc]
        assert gf8.add(header, shard) == ([], None)
    assert gf8.stats.malformed == len(packets)
    gf16 = FrameAssembler(FecScheme.GF16)
    units = []
    for header, _, shard in opened:  # type: ignore[misc]
        units += gf16.add(header, shard)[0]
    assert [u.data for u in units] == [data]
    # Past 4096 data shards, or odd-length shards a Leopard block cannot have: dropped, counted.
    base = MediaHeader(MediaStream.VIDEO, 0, 0, V2_LAST_BLOCK, 5, 0, 0, 0, 0, 4097, 1, 0)
    assert gf16.add(base, bytes(SHARD)) == ([], None)
    odd = MediaHeader(MediaStream.VIDEO, 0, 0, V2_LAST_BLOCK, 5, 0, 0, 0, 0, 2, 1, 0)
    assert gf16.add(odd, bytes(SHARD + 1)) == ([], None)
    assert gf16.stats.malformed == 2


def test_gf16_block_past_its_recovery_is_reported_lost_not_raised():
    field, rng = Field(), random.Random(14)
    frames = [rng.randbytes(200 * SHARD) for _ in range(3)]
    asm = FrameAssembler(FecScheme.GF16)
    opener = MediaOpener(_keys(), Role.CLIENT)
    losses = []
    for index, data in enumerate(frames):
        packets = _packets(field, index, data, [200])
        if index == 1:
            packets = packets[30:]  # 30 lost, 24 recovery shards: cannot be rebuilt
        for packet in packets:
            header, _, shard = opener.open(packet)  # type: ignore[misc]
            _, lost = asm.add(header, shard)
            if lost:
                losses.append(lost)
    assert losses == [(1, 1)] and asm.stats.frames == 2
