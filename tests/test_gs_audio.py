"""Audio packets as moonlight-common-c's RtpAudioQueue/AudioStream read them: RTP header fields,
the RS(4,2) FEC packets and their header, recovery of any two lost shards of a block, and the
AES-128-CBC encryption with the rikeyid-derived IV (parity over the ciphertext)."""

from __future__ import annotations

import itertools
import random
import struct

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from punktfunk.fec import audio_recover
from punktfunk.gamestream.audio import AudioPacketizer

KEY = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
RIKEYID = -1698720153  # as /launch carries it: signed decimal of the IV's first 4 bytes


def opus_frames(count: int, size: int = 120, seed: int = 5) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes([0xFC]) + rng.randbytes(size - 1) for _ in range(count)]


def rtp(datagram: bytes) -> tuple[int, int, int, int, int, bytes]:
    header, pt, seq, ts, ssrc = struct.unpack_from(">BBHII", datagram)
    return header, pt, seq, ts, ssrc, datagram[12:]


def fec_header(payload: bytes) -> tuple[int, int, int, int, int, bytes]:
    index, pt, base_seq, base_ts, ssrc = struct.unpack_from(">BBHII", payload)
    return index, pt, base_seq, base_ts, ssrc, payload[12:]


def run(packetizer: AudioPacketizer, frames: list[bytes]) -> list[bytes]:
    out = []
    for frame in frames:
        out.extend(packetizer.packetize(frame))
    return out


def decrypt(payload: bytes, seq: int, key_id: int = RIKEYID) -> bytes:
    """AudioStream.c: IV = BE32(avRiKeyId + seq) then 12 zero bytes; AES-128-CBC; PKCS#7."""
    iv = struct.pack(">I", (key_id + seq) & 0xFFFFFFFF) + bytes(12)
    decryptor = Cipher(algorithms.AES(KEY), modes.CBC(iv)).decryptor()
    padded = decryptor.update(payload) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def test_data_packet_headers() -> None:
    frames = opus_frames(10)
    datagrams = run(AudioPacketizer(None, RIKEYID), frames)
    data = [rtp(d) for d in datagrams if d[1] == 97]
    assert len(data) == 10
    for i, (header, pt, seq, ts, ssrc, payload) in enumerate(data):
        assert (header, pt, ssrc) == (0x80, 97, 0)
        assert seq == i  # from 0, +1 per data packet only
        assert ts == 5 * i  # milliseconds: +5 per 5 ms packet
        assert payload == frames[i]


def test_ten_millisecond_packets() -> None:
    datagrams = run(AudioPacketizer(None, 0, packet_ms=10), opus_frames(6))
    assert [rtp(d)[3] for d in datagrams if d[1] == 97] == [0, 10, 20, 30, 40, 50]


def test_fec_packets_follow_every_fourth_data_packet() -> None:
    frames = opus_frames(12)
    datagrams = run(AudioPacketizer(None, RIKEYID), frames)
    kinds = [d[1] for d in datagrams]
    assert kinds == ([97] * 4 + [127] * 2) * 3
    for block in range(3):
        fec = datagrams[block * 6 + 4 : block * 6 + 6]
        for shard, datagram in enumerate(fec):
            header, pt, seq, ts, ssrc, payload = rtp(datagram)
            assert (header, pt, ts, ssrc) == (0x80, 127, 0, 0)
            assert seq == block * 4 + 3 + shard + 1  # last data seq + index + 1 (ignored)
            index, fpt, base_seq, base_ts, fssrc, parity = fec_header(payload)
            assert (index, fpt, fssrc) == (shard, 97, 0)
            assert base_seq == block * 4 and base_seq % 4 == 0
            assert base_ts == block * 4 * 5
            assert len(parity) == len(frames[0])
        # the client's own block identity for a data packet agrees with the FEC header
        for datagram in datagrams[block * 6 : block * 6 + 4]:
            _, _, seq, ts, _, _ = rtp(datagram)
            base = (seq // 4) * 4
            assert (base, ts - (seq - base) * 5) == (block * 4, block * 20)


def _block_shards(datagrams: list[bytes]) -> tuple[list[bytes], list[bytes], int, int]:
    data = [rtp(d)[5] for d in datagrams[:4]]
    parity = [fec_header(rtp(d)[5]) for d in datagrams[4:6]]
    return data, [p[5] for p in parity], parity[0][2], parity[0][3]


@pytest.mark.parametrize("encrypted", [False, True])
def test_any_two_lost_of_six_are_recovered(encrypted: bool) -> None:
    frames = opus_frames(8, size=97)
    packetizer = AudioPacketizer(KEY if encrypted else None, RIKEYID)
    datagrams = run(packetizer, frames)
    for block in range(2):
        data, parity, base_seq, base_ts = _block_shards(datagrams[block * 6 : block * 6 + 6])
        slots = [*data, *parity]
        patterns = [
            *itertools.combinations(range(6), 2),
            *itertools.combinations(range(6), 1),
            (),
        ]
        for lost in patterns:
            shards = [None if i in lost else s for i, s in enumerate(slots)]
            recovered = audio_recover(shards)
            assert recovered == data, lost
            for i, payload in enumerate(recovered):
                seq, ts = base_seq + i, base_ts + i * 5  # the client's synthesized header
                assert ts == 5 * seq
                opus = decrypt(payload, seq) if encrypted else payload
                assert opus == frames[seq]


def test_encryption_iv_and_padding() -> None:
    frames = [bytes(range(16)), b"x" * 31, b"y" * 33, b"z"]
    datagrams = run(AudioPacketizer(KEY, RIKEYID), frames)
    data = [rtp(d) for d in datagrams if d[1] == 97]
    for (_, _, seq, _, _, payload), frame in zip(data, frames, strict=True):
        assert len(payload) == (len(frame) // 16 + 1) * 16  # PKCS#7 always pads
        assert decrypt(payload, seq) == frame
        try:
            wrong = decrypt(payload, seq + 1)  # another seq's IV garbles the first block
        except ValueError:
            wrong = b""
        assert wrong != frame
    # unequal sizes: clients reject FEC over unequal shards, so none is sent for this block
    assert all(d[1] == 97 for d in datagrams)


@pytest.mark.parametrize("key_id", [-1, 0x7FFFFFFF, -(2**31), 12345])
def test_rikeyid_plus_seq_wraps_as_u32(key_id: int) -> None:
    frames = opus_frames(4, size=40)
    datagrams = run(AudioPacketizer(KEY, key_id), frames)
    for datagram in datagrams[:4]:
        _, _, seq, _, _, payload = rtp(datagram)
        assert decrypt(payload, seq, key_id) == frames[seq]


def test_sequence_wrap_keeps_blocks_aligned() -> None:
    packetizer = AudioPacketizer(None, 0)
    packetizer.seq, packetizer.timestamp = 0xFFF8, 0xFFFFFFF0  # late in a long session
    frames = opus_frames(16, size=60)
    datagrams = run(packetizer, frames)
    data_seqs = [rtp(d)[2] for d in datagrams if d[1] == 97]
    assert data_seqs == [(0xFFF8 + i) & 0xFFFF for i in range(16)]
    bases = [fec_header(rtp(d)[5])[2] for d in datagrams if d[1] == 127]
    assert bases == [0xFFF8, 0xFFF8, 0xFFFC, 0xFFFC, 0, 0, 4, 4]
    stamps = [rtp(d)[3] for d in datagrams if d[1] == 97]
    assert stamps[4] == (0xFFFFFFF0 + 20) & 0xFFFFFFFF


def test_unequal_block_skips_only_that_blocks_fec() -> None:
    frames = [*opus_frames(3, size=50), b"short", *opus_frames(4, size=50, seed=9)]
    datagrams = run(AudioPacketizer(None, 0), frames)
    assert [d[1] for d in datagrams] == [97] * 4 + [97] * 4 + [127] * 2
