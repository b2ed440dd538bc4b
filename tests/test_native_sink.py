"""The native media sink: packetization, FEC, sealing, batching; and the client's reassembly."""

from __future__ import annotations

import random
import socket

import pytest

from punktfunk import fec
from punktfunk.encode.base import EncodedFrame, FrameType
from punktfunk.input.padroute import native_state
from punktfunk.native.client.reassembly import FrameAssembler
from punktfunk.native.host.sink import BatchSender, NativeVideoSink, split_frame
from punktfunk.native.wire.dgram import InputEvent, InputKind
from punktfunk.native.wire.input import decode_rumble, encode_rumble
from punktfunk.native.wire.packet import MediaHeader
from punktfunk.native.wire.registry import V2_LAST_BLOCK, MediaStream, MediaSuite, UserFlag
from punktfunk.native.wire.seal import MediaKeys, MediaOpener, MediaSealer, Role


def _frame(data: bytes, index: int, idr: bool = False) -> EncodedFrame:
    kind = FrameType.IDR if idr else FrameType.P
    return EncodedFrame(data, kind, index, index, 1_000_000 * index, 1_000_000 * index + 500)


def test_split_frame_header_golden():
    # packet/v2.rs + packet/header.rs: one block of 3 data shards (1024 B each, the last padded
    # by 72) and ceil(3 x 10 %) -> at least MIN_RECOVERY_SHARDS = 2 (config.rs) recovery shards.
    data = bytes(range(256)) * 11 + bytes(184)  # 3000 bytes
    shards = split_frame(data, 7, 1234, int(UserFlag.PIC), 10, shard_payload=1024)
    assert [(s.header.shard, s.header.k, s.header.m) for s in shards] == [
        (0, 3, 2), (1, 3, 2), (2, 3, 2), (3, 3, 2), (4, 3, 2),
    ]  # fmt: skip
    first = shards[0].header
    assert first == MediaHeader(
        MediaStream.VIDEO, 0, 0, int(UserFlag.PIC) | V2_LAST_BLOCK, 7, 1234, 0, 0, 0, 3, 2, 72
    )
    # tag 00, seq, epoch, flags 0x8001, frame 7, pts 1234, block 0, base 0, shard 0, k 3, m 2,
    # pad 72: the 30 bytes little-endian.
    assert first.pack(5).hex() == (
        "00" "05000000" "00" "0180" "07000000" "d2040000" "0000" "00000000" "0000" "0300"
        "0200" "4800"
    )  # fmt: skip
    assert bytes(shards[2].payload) == data[2048:] + bytes(72)
    assert [bytes(s.payload) for s in shards[3:]] == fec.video_parity(
        [bytes(s.payload) for s in shards[:3]], 2
    )


def test_split_frame_blocks_and_last_block():
    data = bytes(130 * 100 - 10)
    shards = split_frame(data, 1, 0, 0, 20, shard_payload=100, max_data_per_block=64)
    blocks = {}
    for s in shards:
        blocks.setdefault(s.header.block, s.header)
    assert [(h.block, h.base, h.k, h.m, h.last_block, h.pad) for h in blocks.values()] == [
        (0, 0, 64, 13, False, 0),
        (1, 64, 64, 13, False, 0),
        (2, 128, 2, 2, True, 10),  # ceil(2 x 20 %) = 1 -> raised to 2
    ]
    assert len(split_frame(b"", 2, 0, 0, 0)) == 1  # an empty frame still has one data shard


def _s32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def test_rumble_and_gamepad_snapshot_golden():
    # quic/datagram.rs `rumble_datagram_roundtrip`: encode_rumble_datagram(1, 0x1234, 0xFFFF),
    # tag 0xCA then pad/low/high as LE u16, under DgramKind RUMBLE (5, quic/v2/dgram.rs).
    wire = encode_rumble(1, 0x1234, 0xFFFF)
    assert wire.hex() == "05ca01003412ffff"
    assert decode_rumble(wire[1:]) == (1, 0x1234, 0xFFFF)
    assert decode_rumble(wire[1:7]) is None
    # input.rs `GamepadSnapshot::to_event`: code = buttons, x = ls_x<<16 | ls_y,
    # y = rs_x<<16 | rs_y, flags = seq<<24 | lt<<16 | rt<<8 | pad.
    # ls = (-2, 300), rs = (5, -32768), triggers 200/10, pad 3, seq 9 (i32 fields wrap).
    ev = InputEvent(InputKind.GAMEPAD_STATE, 0x1000, _s32(0xFFFE << 16 | 300),
                    _s32(5 << 16 | 0x8000), 9 << 24 | 200 << 16 | 10 << 8 | 3)  # fmt: skip
    assert ev.encode().hex() == "c80c001000002c01feff00800500030ac809"
    pad, seq, state = native_state(ev.code, ev.x, ev.y, ev.flags)
    assert (pad, seq) == (3, 9)
    assert (state.buttons, state.left_trigger, state.right_trigger) == (0x1000, 200, 10)
    assert (state.thumb_lx, state.thumb_ly, state.thumb_rx, state.thumb_ry) == (-2, 300, 5, -32768)


def _keys() -> MediaKeys:
    return MediaKeys.derive(bytes(range(32)), MediaSuite.AES_128_GCM)


def _run_through(frames, drop, fec_percent=10):
    """Sink -> (drop some packets) -> opener -> assembler: delivered units and lost ranges."""
    sent: list[bytes] = []
    sink = NativeVideoSink(
        MediaSealer(_keys(), Role.HOST), None, lambda: None, lambda ns: ns // 1000,  # type: ignore[arg-type]
        fec_percent=fec_percent,
    )  # fmt: skip
    for frame in frames:
        sent += [bytes(p) for p in sink.packetize(frame, 0)]
    opener, asm = MediaOpener(_keys(), Role.CLIENT), FrameAssembler()
    units, losses = [], []
    for i, packet in enumerate(sent):
        if drop(i, packet):
            continue
        header, _, shard = opener.open(packet)
        got, lost = asm.add(header, shard)
        units += got
        if lost:
            losses.append(lost)
    return sink, units, losses, asm


def test_sink_to_assembler_recovers_with_fec_and_reports_loss():
    rng = random.Random(7)
    frames = [_frame(rng.randbytes(rng.randrange(1, 40_000)), i, idr=i == 0) for i in range(6)]
    sink, units, losses, _ = _run_through(frames, lambda i, p: False)
    assert [u.data for u in units] == [f.data for f in frames] and not losses
    # Every packet of one frame has the same length (one GSO segment size).
    per_frame = [sink.packetize(f, 0) for f in frames[:2]]
    assert all(len({len(p) for p in packets}) == 1 for packets in per_frame)

    # Drop the first data shard of every block of frames 0-2 (FEC repairs it) and every packet
    # of frame 4 (lost: reported when frame 5 completes).
    opener_keys = _keys()
    sealed: list[tuple[MediaHeader, bytes]] = []
    sealer = MediaSealer(opener_keys, Role.HOST)
    for frame in frames:
        flags = int(UserFlag.SOF) if frame.frame_type is FrameType.IDR else 0
        for s in split_frame(frame.data, frame.frame_index, 0, flags, 10):
            sealed.append((s.header, sealer.seal(s.header, s.payload)))
    opener, asm = MediaOpener(opener_keys, Role.CLIENT), FrameAssembler()
    delivered, lost_ranges = [], []
    for header, packet in sealed:
        if header.frame == 4 or (header.frame <= 2 and header.shard == 0):
            continue
        h, _, shard = opener.open(packet)
        got, lost = asm.add(h, shard)
        delivered += got
        lost_ranges += [lost] if lost else []
    assert [u.index for u in delivered] == [0, 1, 2, 3, 5]
    assert all(u.data == frames[u.index].data for u in delivered)
    assert lost_ranges == [(4, 4)]
    assert asm.stats.frames_recovered_by_fec == 3 and asm.stats.frames_lost == 1
    assert delivered[0].keyframe and not delivered[1].keyframe


def test_in_place_sealing_matches_the_reference_path():
    # NativeVideoSink seals in place; split_frame + MediaSealer.seal is the reference form.
    data = random.Random(3).randbytes(100_000)
    sink = NativeVideoSink(
        MediaSealer(_keys(), Role.HOST), None, lambda: None, lambda ns: ns // 1000,  # type: ignore[arg-type]
        fec_percent=15,
    )  # fmt: skip
    fast = [bytes(p) for p in sink.packetize(_frame(data, 9), 0)]
    sealer = MediaSealer(_keys(), Role.HOST)
    ref = [
        sealer.seal(s.header, s.payload) for s in split_frame(data, 9, 9000, int(UserFlag.PIC), 15)
    ]
    assert fast == ref and len(fast) == 64 + 10 + 8 + 2  # blocks of 64 and 8 data shards


def test_idr_frames_get_twice_the_fec():
    sink = NativeVideoSink(
        MediaSealer(_keys(), Role.HOST), None, lambda: None, lambda ns: 0,  # type: ignore[arg-type]
        fec_percent=20,
    )  # fmt: skip
    opener = MediaOpener(_keys(), Role.CLIENT)
    p_frame = [opener.open(bytes(p))[0] for p in sink.packetize(_frame(bytes(64 * 1408), 1), 0)]
    idr = [
        opener.open(bytes(p))[0] for p in sink.packetize(_frame(bytes(64 * 1408), 2, idr=True), 0)
    ]
    assert (p_frame[0].k, p_frame[0].m) == (64, 13)
    assert (idr[0].k, idr[0].m) == (64, 26) and idr[0].flags & UserFlag.SOF


@pytest.mark.parametrize("gso", [True, False])
def test_batch_sender_delivers_each_datagram(gso):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = BatchSender(tx, gso=gso)
    datagrams = [bytes([i]) * 1454 for i in range(70)]  # > one 64-segment GSO call
    sender.send(datagrams, rx.getsockname())
    got = [rx.recv(65535) for _ in datagrams]
    assert got == datagrams and sender.sent == 70
    assert sender.gso == gso  # this kernel takes UDP GSO on loopback
    rx.close()
    tx.close()


def test_the_probe_infers_the_fec_percentage_from_block_shapes():
    from punktfunk.native.client.receiver import infer_fec_percent
    from punktfunk.native.wire.adaptive import recovery_shards

    def shapes(percent: int, ks: list[int]) -> list[tuple[int, int]]:
        return [(k, recovery_shards(k, percent)) for k in ks]

    assert infer_fec_percent([]) is None
    assert infer_fec_percent(shapes(10, [40, 64, 30])) == 10  # large blocks: exact
    assert infer_fec_percent(shapes(29, [40, 64, 30])) == 29
    assert infer_fec_percent(shapes(8, [12, 10])) == 5  # at the 2-shard floor: a lower bound
    # A change of percentage: the newest blocks win.
    assert infer_fec_percent(shapes(10, [64, 64]) + shapes(29, [64, 40])) == 29


def test_sealed_media_packets_golden():
    # The bytes our sink puts on the wire for one tiny IDR (keys from a fixed exporter):
    # packet/v2.rs header (tag 00, seq LE in the clear as AAD), crypto.rs key/nonce schedule,
    # AES-128-GCM over header[5:] + shard, tag appended. A change here is a wire change.
    import hashlib

    keys = MediaKeys.derive(bytes(range(32)), MediaSuite.AES_128_GCM)
    sink = NativeVideoSink(
        MediaSealer(keys, Role.HOST), None, lambda: None, lambda ns: ns // 1000,  # type: ignore[arg-type]
        shard_payload=512, fec_percent=10,
    )  # fmt: skip
    frame = EncodedFrame(b"punktfunk", FrameType.IDR, 0, 3, 2_000_000, 2_000_500)
    packets = [bytes(p) for p in sink.packetize(frame, 0)]
    assert [len(p) for p in packets] == [30 + 512 + 16] * 3  # 1 data + 2 recovery shards
    assert packets[0][:5] == bytes(5)  # stream 0, seq 0: the clear prefix
    assert packets[1][:5].hex() == "0001000000"
    assert (
        packets[0][:40].hex()
        == "000000000068d3a6a50594a79174be265ab02c3d90c104a087d7fdb06cc504b0cbef746d1b7ad9b4"
    )
    assert [hashlib.sha256(p).hexdigest()[:16] for p in packets] == [
        "2e5395f85d49f904", "d7b8846451ea2376", "264e88595ec6a058",
    ]  # fmt: skip
    header, seq, shard = MediaOpener(keys, Role.CLIENT).open(packets[0])
    assert (seq, header.frame, header.k, header.m, header.pad) == (0, 3, 1, 2, 503)
    assert header.flags == UserFlag.PIC | UserFlag.SOF | V2_LAST_BLOCK and header.pts_us == 2000
    assert shard[:9] == b"punktfunk"
