"""Video packets through a reimplementation of moonlight-common-c's receive path.

Every datagram is parsed per Video.h (RTP big-endian, NV_VIDEO_PACKET little-endian, fecInfo
and multiFecBlocks bit fields), frames are rebuilt by tests/gs_client.VideoReceiver, which
derives each block's parity count from the percentage the way the client does, recovers lost
shards by Reed-Solomon over whole zero-padded packets, re-stamps recovered headers, applies the
client's sanity checks and its depacketizer rules - and must hand back the original bitstream.
"""

from __future__ import annotations

import random
import struct

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gs_client import (
    FLAG_EOF,
    FLAG_PIC,
    FLAG_SOF,
    VideoPacket,
    VideoReceiver,
    parse_video_packet,
)
from punktfunk.gamestream.video import (
    FrameKind,
    FrameTooLarge,
    VideoPacketizer,
    frame_header,
    plan_blocks,
)

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def bitstream(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    return b"\x00\x00\x00\x01" + rng.randbytes(max(0, size - 4))


def parse_all(datagrams: list[bytes], key: bytes | None = None) -> list[VideoPacket]:
    if key is None:
        return [parse_video_packet(d) for d in datagrams]
    aead = AESGCM(key)
    return [parse_video_packet(aead.decrypt(d[:12], d[32:] + d[16:32], None)) for d in datagrams]


def group_blocks(
    datagrams: list[bytes], packets: list[VideoPacket]
) -> list[list[tuple[bytes, VideoPacket]]]:
    """Consecutive datagrams of one (frame, block), in send order."""
    groups: list[list[tuple[bytes, VideoPacket]]] = []
    for datagram, pkt in zip(datagrams, packets, strict=True):
        if not groups or (groups[-1][0][1].frame_index, groups[-1][0][1].block) != (
            pkt.frame_index,
            pkt.block,
        ):
            groups.append([])
        groups[-1].append((datagram, pkt))
    return groups


def frame_payload_per_shard(packet_size: int) -> int:
    return packet_size - 16


def shards_for(size: int, packet_size: int) -> int:
    return -(-(size + 8) // frame_payload_per_shard(packet_size))


# --- header layout ----------------------------------------------------------------------------


def test_packet_layout_of_one_frame() -> None:
    pk = VideoPacketizer(1392, fec_percentage=20, min_parity=2)
    data = bitstream(20000)
    datagrams = pk.packetize(data, FrameKind.IDR, 123456, latency_01ms=42)
    packets = parse_all(datagrams)
    d = shards_for(len(data), 1392)
    p = (d * 20 + 99) // 100
    assert len(datagrams) == d + p
    for i, (raw, pkt) in enumerate(zip(datagrams, packets, strict=True)):
        assert len(raw) == 1392 + 16, "every shard is packetSize + 16 bytes"
        assert raw[0] == 0x90 and raw[1] == 0  # RTP v2 + extension bit, PT 0
        assert raw[12:16] == bytes(4)  # the 4 reserved "extension" bytes
        assert pkt.seq == i and pkt.timestamp == 123456 and pkt.ssrc == 0
        assert pkt.frame_index == 1
        assert (pkt.block, pkt.last_block) == (0, 0)
        assert pkt.fec_index == i and pkt.data_shards == d and pkt.fec_percentage == 20
        if i < d:  # parity shards carry parity bytes where data shards have these fields
            assert pkt.multi_fec_flags == 0x10
            assert pkt.spi == i
            expected = FLAG_PIC | (FLAG_SOF if i == 0 else 0) | (FLAG_EOF if i == d - 1 else 0)
            assert pkt.flags == expected
            assert pkt.extra_flags == 0
    first = datagrams[0][32:40]
    latency, ftype, last_len = struct.unpack_from("<HBH", first, 1)
    assert first[0] == 0x01 and first[6:8] == b"\0\0"
    assert (latency, ftype) == (42, 2)
    assert last_len == len(data) + 8 - (d - 1) * (1392 - 16)


def test_frame_header_bytes() -> None:
    assert frame_header(FrameKind.P, 300, 77) == bytes([1, 0x2C, 0x01, 1, 77, 0, 0, 0])
    assert frame_header(FrameKind.AFTER_RFI, 70000, 0x1234)[1:3] == b"\xff\xff"  # clamped
    assert [k.value for k in FrameKind] == [1, 2, 4, 5]


# --- lossless and lossy reception ------------------------------------------------------------


def test_roundtrip_without_loss() -> None:
    pk = VideoPacketizer(1024, 20, 2)
    rx = VideoReceiver(1024)
    sent = [bitstream(size, seed) for seed, size in enumerate([50, 3000, 1, 1008, 1009, 40000])]
    for index, data in enumerate(sent):
        kind = FrameKind.IDR if index == 0 else FrameKind.P
        for datagram in pk.packetize(data, kind, index * 1500, 7):
            rx.feed(datagram)
    assert [f.exact for f in rx.frames] == sent
    assert [f.frame_index for f in rx.frames] == list(range(1, len(sent) + 1))
    assert [f.frame_type for f in rx.frames] == [2, 1, 1, 1, 1, 1]
    assert [f.timestamp for f in rx.frames] == [i * 1500 for i in range(len(sent))]
    assert all(f.latency_01ms == 7 for f in rx.frames)
    for frame, data in zip(rx.frames, sent, strict=True):
        # H.264/HEVC decoders get the zero padding too; it must be only zeros
        assert frame.payload.startswith(data) and not frame.payload[len(data) :].strip(b"\0")
    assert rx.recovered == 0 and rx.lost_frames == [] and rx.corrupt_frames == []


def _drop(
    groups: list[list[tuple[bytes, VideoPacket]]], rng: random.Random, shuffle: bool
) -> tuple[list[bytes], int]:
    """Per block, drop up to P shards (any mix of data and parity); maybe reorder."""
    out, dropped_data = [], 0
    for group in groups:
        head = group[0][1]
        parity = (head.data_shards * head.fec_percentage + 99) // 100
        assert len(group) == head.data_shards + parity
        lose = set(rng.sample(range(len(group)), rng.randint(0, parity)))
        dropped_data += sum(1 for i in lose if i < head.data_shards)
        kept = [d for i, (d, _) in enumerate(group) if i not in lose]
        if shuffle:
            rng.shuffle(kept)
        out.extend(kept)
    return out, dropped_data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(1, 6000), min_size=1, max_size=4),
    packet_size=st.sampled_from([32, 48, 64, 128, 272, 1024, 1392]),
    fec=st.sampled_from([1, 5, 10, 20, 50, 100, 150]),
    min_parity=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
    shuffle=st.booleans(),
)
def test_any_recoverable_loss_yields_the_bitstream(
    sizes: list[int], packet_size: int, fec: int, min_parity: int, seed: int, shuffle: bool
) -> None:
    rng = random.Random(seed)
    pk = VideoPacketizer(packet_size, fec, min_parity)
    rx = VideoReceiver(packet_size)
    sent = []
    dropped_data = 0
    for index, size in enumerate(sizes):
        data = bitstream(size, seed + index)
        sent.append(data)
        datagrams = pk.packetize(data, FrameKind.P, 3000 * index, 0)
        kept, lost = _drop(group_blocks(datagrams, parse_all(datagrams)), rng, shuffle)
        dropped_data += lost
        for datagram in kept:
            rx.feed(datagram)
    assert rx.recovery_failures == 0
    assert rx.lost_frames == [] and rx.corrupt_frames == []
    assert [f.exact for f in rx.frames] == sent
    # reordered, a block completes as soon as any D shards are in (later data is then late)
    assert rx.recovered >= dropped_data if shuffle else rx.recovered == dropped_data


def test_recovered_shards_match_the_originals() -> None:
    """What the client's FEC validation mode asserts: a recovered shard equals the dropped one
    in flags, frameIndex, streamPacketIndex, multiFecBlocks and payload."""
    pk = VideoPacketizer(128, 20, 2)
    datagrams = pk.packetize(bitstream(3000), FrameKind.P, 99, 0)
    packets = parse_all(datagrams)
    d = packets[0].data_shards
    for victim in range(d):
        rx = VideoReceiver(128)
        for i, datagram in enumerate(datagrams):
            if i != victim:
                rx.feed(datagram)
        assert rx.recovered == 1 and len(rx.frames) == 1
        assert rx.frames[0].exact == bitstream(3000)
    from punktfunk.fec import video_recover

    p = len(datagrams) - d
    for victim in range(d):
        shards: list[bytes | None] = list(datagrams)
        shards[victim] = None
        rebuilt = video_recover(shards, d)[victim]
        original = datagrams[victim]
        # payload and the header fields the client keeps are exact
        assert rebuilt[32:] == original[32:]
        assert rebuilt[16:20] == original[16:20]  # streamPacketIndex
        assert rebuilt[24:27] == original[24:27]  # flags, extraFlags, multiFecFlags
        assert rebuilt[12:16] == original[12:16]
    assert p >= 2


def test_lost_beyond_parity_is_a_lost_frame_not_garbage() -> None:
    pk = VideoPacketizer(128, 20, 2)
    first = pk.packetize(bitstream(2000, 1), FrameKind.P, 0, 0)
    second = pk.packetize(bitstream(2000, 2), FrameKind.P, 3000, 0)
    d = parse_video_packet(first[0]).data_shards
    p = len(first) - d
    rx = VideoReceiver(128)
    for datagram in first[p + 1 :]:  # one more than parity can repair
        rx.feed(datagram)
    for datagram in second:
        rx.feed(datagram)
    assert rx.lost_frames == [1]
    assert [f.frame_index for f in rx.frames] == [2]
    assert rx.frames[0].exact == bitstream(2000, 2)


# --- block planning ---------------------------------------------------------------------------


def test_multi_block_frame_at_20_percent() -> None:
    packet_size = 64
    data = bitstream(48 * 700)  # ~700 shards: more than 212 per block, so 4 blocks
    pk = VideoPacketizer(packet_size, 20, 2)
    datagrams = pk.packetize(data, FrameKind.IDR, 5, 0)
    packets = parse_all(datagrams)
    groups = group_blocks(datagrams, packets)
    assert len(groups) == 4
    seq = 0
    for number, group in enumerate(groups):
        head = group[0][1]
        d, p = head.data_shards, (head.data_shards * head.fec_percentage + 99) // 100
        assert head.fec_percentage == 20 and d + p <= 255 and len(group) == d + p
        for i, (_, pkt) in enumerate(group):
            assert (pkt.block, pkt.last_block) == (number, 3)
            assert pkt.seq == seq and pkt.fec_index == i
            seq += 1
            if i < d:  # SOF/EOF are per FEC block
                assert bool(pkt.flags & FLAG_SOF) == (i == 0)
                assert bool(pkt.flags & FLAG_EOF) == (i == d - 1)
    rx = VideoReceiver(packet_size)
    kept, lost = _drop(groups, random.Random(7), shuffle=True)
    for datagram in kept:
        rx.feed(datagram)
    assert [f.exact for f in rx.frames] == [data]
    assert rx.recovered >= lost


@pytest.mark.parametrize("data_shards", [1, 2, 3, 4, 5, 9])
def test_min_parity_bump_for_tiny_frames(data_shards: int) -> None:
    """The client derives P = (D * pct + 99) // 100 from fecInfo; the host must raise the
    percentage so that this yields at least minRequiredFecPackets - and send exactly P."""
    packet_size = 64
    size = data_shards * 48 - 8
    pk = VideoPacketizer(packet_size, 20, min_parity=2)
    datagrams = pk.packetize(bitstream(size), FrameKind.P, 0, 0)
    head = parse_video_packet(datagrams[0])
    assert head.data_shards == data_shards
    derived = (data_shards * head.fec_percentage + 99) // 100
    assert derived >= 2
    assert len(datagrams) == data_shards + derived
    assert head.fec_percentage <= 255
    # losing any two shards is still recoverable
    for a in range(len(datagrams)):
        for b in range(a + 1, len(datagrams)):
            rx = VideoReceiver(packet_size)
            for i, datagram in enumerate(datagrams):
                if i not in (a, b):
                    rx.feed(datagram)
            assert [f.exact for f in rx.frames] == [bitstream(size)], (a, b)


def test_too_many_blocks_falls_back_to_no_fec() -> None:
    packet_size = 32  # 16 payload bytes per shard
    shards = 900  # > 4 * 212 at 20%
    data = bitstream(shards * 16 - 8)
    pk = VideoPacketizer(packet_size, 20, 2)
    datagrams = pk.packetize(data, FrameKind.P, 0, 0)
    packets = parse_all(datagrams)
    assert len(datagrams) == shards  # no parity at all
    assert all(p.fec_percentage == 0 for p in packets)
    groups = group_blocks(datagrams, packets)
    assert 1 <= len(groups) <= 4
    assert sum(g[0][1].data_shards for g in groups) == shards
    rx = VideoReceiver(packet_size)
    for datagram in datagrams:
        rx.feed(datagram)
    assert [f.exact for f in rx.frames] == [data]


@pytest.mark.parametrize("shards", [1023, 1024, 2048, 4092])
def test_largest_frames_fit_the_10_bit_fields(shards: int) -> None:
    """fecInfo carries the data-shard count in 10 bits: a block holds at most 1023 shards."""
    packet_size = 32
    data = bitstream(shards * 16 - 8)
    pk = VideoPacketizer(packet_size, 20, 2)
    datagrams = pk.packetize(data, FrameKind.P, 0, 0)
    packets = parse_all(datagrams)
    groups = group_blocks(datagrams, packets)
    assert len(groups) <= 4
    for group in groups:
        assert group[0][1].data_shards == len(group) <= 1023
    rx = VideoReceiver(packet_size)
    for datagram in datagrams:
        rx.feed(datagram)
    assert [f.exact for f in rx.frames] == [data]


def test_frame_beyond_four_full_blocks_is_refused() -> None:
    pk = VideoPacketizer(32, 20, 2)
    with pytest.raises(FrameTooLarge):
        pk.packetize(bitstream(4 * 1023 * 16), FrameKind.P, 0, 0)


@pytest.mark.parametrize("pct", [0, 1, 5, 20, 50, 100, 200, 255])
@pytest.mark.parametrize("min_parity", [0, 1, 2, 3])
def test_plan_blocks_invariants(pct: int, min_parity: int) -> None:
    for count in [*range(1, 300), 423, 424, 425, 636, 848, 849, 1023, 1024, 2047, 4092]:
        plans = plan_blocks(count, pct, min_parity)
        assert 1 <= len(plans) <= 4
        assert sum(p.data for p in plans) == count
        for plan in plans:
            assert 1 <= plan.data <= 1023
            assert 0 <= plan.percentage <= 255
            assert plan.parity == (plan.data * plan.percentage + 99) // 100
            if plan.parity:
                assert plan.data + plan.parity <= 255
        if pct and all(p.percentage for p in plans):
            assert all(p.parity >= min(min_parity, 2) for p in plans)


# --- stream continuity ------------------------------------------------------------------------


def test_sequence_and_frame_index_continue_across_frames() -> None:
    pk = VideoPacketizer(128, 20, 2)
    last_seq = last_spi = None
    for frame in range(1, 8):
        datagrams = pk.packetize(bitstream(100 * frame, frame), FrameKind.P, frame, 0)
        packets = parse_all(datagrams)
        assert {p.frame_index for p in packets} == {frame}  # frameIndex starts at 1
        for p in packets:
            if last_seq is not None:
                assert p.seq == (last_seq + 1) & 0xFFFF
            last_seq = p.seq
        data_spis = [p.spi for p in packets if p.fec_index < p.data_shards]
        if last_spi is not None:
            assert data_spis[0] > last_spi
        last_spi = data_spis[-1]


def test_sequence_wrap_keeps_the_stream_packet_index_monotonic() -> None:
    """RTP seq wraps at 2^16 but streamPacketIndex is a 24-bit counter: the depacketizer drops
    a frame whose index goes backwards (isBefore24) as corrupt."""
    packet_size = 32
    pk = VideoPacketizer(packet_size, 0, 0)
    rx = VideoReceiver(packet_size)
    sent = []
    big = bitstream(4000 * 16 - 8)
    seqs_seen = 0
    frame = 0
    while seqs_seen < 70000:
        frame += 1
        data = big if seqs_seen < 64000 else bitstream(16 * 300 - 8, frame)
        datagrams = pk.packetize(data, FrameKind.P, frame, 0)
        seqs_seen += len(datagrams)
        if seqs_seen < 60000:
            continue  # (the receiver joins late to keep the test fast: it takes any frame)
        sent.append(data)
        for datagram in datagrams:
            rx.feed(datagram)
    assert seqs_seen > 0x10000  # the RTP sequence number wrapped
    pk.fec_percentage, pk.min_parity = 20, 2  # and with FEC after the wrap
    for extra in range(3):
        data = bitstream(2000, extra)
        sent.append(data)
        for datagram in pk.packetize(data, FrameKind.P, 0, 0)[1:]:
            rx.feed(datagram)
    assert rx.corrupt_frames == []
    assert len(rx.frames) == len(sent)
    assert all(f.exact == d for f, d in zip(rx.frames, sent, strict=True))


# --- encryption -------------------------------------------------------------------------------


def test_encrypted_video() -> None:
    packet_size = 1392 - 32  # the client shrinks packetSize by the 32-byte prefix
    pk = VideoPacketizer(packet_size, 20, 2, key=KEY)
    rx = VideoReceiver(packet_size, key=KEY)
    counter = 0
    sent = []
    rng = random.Random(3)
    for frame in range(1, 4):
        data = bitstream(5000 * frame, frame)
        sent.append(data)
        datagrams = pk.packetize(data, FrameKind.P, frame, 0)
        for datagram in datagrams:
            assert len(datagram) == 32 + packet_size + 16
            iv = datagram[:12]
            assert iv == struct.pack("<Q", counter) + b"\0\0\0V"
            counter += 1
            assert struct.unpack_from("<I", datagram, 12)[0] == frame
        packets = parse_all(datagrams, KEY)
        assert {p.frame_index for p in packets} == {frame}
        kept, _ = _drop(group_blocks(datagrams, packets), rng, shuffle=True)
        for datagram in kept:
            rx.feed(datagram)
    assert [f.exact for f in rx.frames] == sent


def test_encrypted_video_is_authenticated() -> None:
    pk = VideoPacketizer(128, 20, 2, key=KEY)
    datagram = bytearray(pk.packetize(bitstream(100), FrameKind.P, 0, 0)[0])
    datagram[40] ^= 1
    with pytest.raises(InvalidTag):
        VideoReceiver(128, key=KEY).feed(bytes(datagram))
    with pytest.raises(InvalidTag):
        VideoReceiver(128, key=bytes(16)).feed(pk.packetize(bitstream(10), FrameKind.P, 0, 0)[0])
