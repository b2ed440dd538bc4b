"""HDR10 math and metadata serialisation (pure): PQ, primaries, code values, SEI/OBU bytes."""

from __future__ import annotations

import numpy as np
import pytest

from punktfunk.encode import bitstream as bs
from punktfunk.encode import hdr
from punktfunk.encode.base import Codec
from punktfunk.proto.frame import HDR10_DEFAULT, HdrMeta


@pytest.mark.parametrize(
    ("nits", "signal"),
    # ST 2084 / BT.2408 reference points.
    [(0.0, 0.0), (100.0, 0.508078), (203.0, 0.580688), (1000.0, 0.751827), (10000.0, 1.0)],
)
def test_pq_reference_points(nits: float, signal: float) -> None:
    assert hdr.pq_oetf(nits) == pytest.approx(signal, abs=2e-6)
    assert hdr.pq_eotf(signal) == pytest.approx(nits, rel=1e-5, abs=1e-9)


def test_pq_round_trips_and_clips() -> None:
    nits = np.geomspace(0.001, 10000, 200)
    assert np.allclose(hdr.pq_eotf(hdr.pq_oetf(nits)), nits, rtol=1e-9)
    assert hdr.pq_oetf(20000.0) == 1.0
    assert hdr.pq_oetf(-5.0) == hdr.pq_oetf(0.0) == pytest.approx(0.0, abs=1e-6)


def test_bt709_to_bt2020_matches_bt2087_and_keeps_white() -> None:
    bt2087 = np.array(
        [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]]
    )
    assert np.allclose(hdr.BT709_TO_BT2020, bt2087, atol=1e-4)
    assert np.allclose(hdr.BT709_TO_BT2020.sum(axis=1), 1.0)


def test_hdr10_code_values_of_known_colours() -> None:
    """10-bit limited BT.2020 PQ: neutral greys land on the well-known Y' codes."""
    greys = np.array([[n, n, n] for n in (0.0, 100.0, 203.0, 1000.0, 10000.0)])
    codes = hdr.hdr10_code_values(greys)
    assert codes[:, 0].tolist() == [64, 509, 573, 723, 940]
    assert (codes[:, 1:] == 512).all()
    # BT.709 red at 100 nits, worked by hand: BT.2087 row sums of the red column, PQ per
    # channel, then BT.2020 luma weights.
    r, g, b = (hdr.pq_oetf(100.0 * k) for k in (0.6274039, 0.0690973, 0.0163914))
    y = 0.2627 * r + 0.6780 * g + 0.0593 * b
    want = [
        round(64 + 876 * y),
        round(512 + 896 * (b - y) / 1.8814),
        round(512 + 896 * (r - y) / 1.4746),
    ]
    assert hdr.hdr10_code_values(np.array([100.0, 0.0, 0.0])).tolist() == want


def test_bt709_limited_8bit_code_values() -> None:
    m = hdr.rgb_to_ycbcr_matrix(*hdr.BT709_KR_KB)
    rgb = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    codes = hdr.limited_range(rgb @ m.T, 8)
    # ITU-R BT.709 colour bars at 100%.
    assert codes.tolist() == [
        [235, 128, 128],
        [16, 128, 128],
        [63, 102, 240],
        [173, 42, 26],
        [32, 240, 118],
    ]


def test_mastering_display_payload_is_big_endian_gbr() -> None:
    payload = hdr.mastering_display_payload(HDR10_DEFAULT)
    assert payload == bytes.fromhex(
        "2134 9baa"  # green 8500, 39850
        "1996 08fc"  # blue 6550, 2300
        "8a48 3908"  # red 35400, 14600
        "3d13 4042"  # white 15635, 16450
        "00989680"  # max 1000 cd/m^2 in 0.0001 units
        "00000032"  # min 0.005 cd/m^2
    )


def test_content_light_payload() -> None:
    assert hdr.content_light_payload(HDR10_DEFAULT) == bytes.fromhex("03e8 0190")


def test_sei_message_codes_type_and_size_in_ff_runs() -> None:
    assert hdr.sei_message(137, b"x" * 24)[:2] == bytes([137, 24])
    long = hdr.sei_message(5, b"y" * 300)
    assert long[:3] == bytes([5, 0xFF, 45]) and len(long) == 303


def test_hevc_sei_nal_carries_both_messages_with_emulation_prevention() -> None:
    nal = bs.sei_nal(Codec.HEVC, hdr.hdr10_sei_rbsp(HDR10_DEFAULT))
    assert nal[:2] == bytes([39 << 1, 1])  # prefix SEI, layer 0, tid 1
    # max_luminance 0x00989680 then min 0x00000032: "00 00 00" needs a 03 inserted.
    assert bytes.fromhex("0098968000000300 32".replace(" ", "")) in nal
    assert bs.parse_sei(Codec.HEVC, nal) == [
        (137, hdr.mastering_display_payload(HDR10_DEFAULT)),
        (144, hdr.content_light_payload(HDR10_DEFAULT)),
    ]


def test_emulation_prevention_round_trips() -> None:
    rbsp = bytes([0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 7, 0, 0])
    ebsp = bs.add_emulation_prevention(rbsp)
    assert b"\x00\x00\x00" not in ebsp and b"\x00\x00\x01" not in ebsp
    assert bs.remove_emulation_prevention(ebsp) == rbsp


def test_av1_metadata_payloads_use_av1_fixed_point() -> None:
    mdcv = hdr.av1_mdcv_payload(HDR10_DEFAULT)
    values = np.frombuffer(mdcv[:16], dtype=">u2").tolist()
    # R, G, B, white in 0.16 fixed point, rounded: 35400 * 65536 / 50000 = 46399.49 -> 46399.
    assert values == [46399, 19137, 11141, 52232, 8585, 3015, 20493, 21561]
    assert int.from_bytes(mdcv[16:20], "big") == 1000 * 256  # 24.8
    assert int.from_bytes(mdcv[20:24], "big") == 82  # 0.005 * 2^14, 18.14
    obu = bs.metadata_obu(hdr.AV1_METADATA_HDR_CLL, hdr.av1_cll_payload(HDR10_DEFAULT))
    assert obu == bytes([5 << 3 | 2, 6, 1]) + bytes.fromhex("03e8 0190") + b"\x80"
    assert bs.split_obus(obu) == [(bs.OBU_METADATA, obu)]


def test_encoder_option_strings() -> None:
    assert hdr.x265_hdr_params(HDR10_DEFAULT) == (
        "master-display=G(8500,39850)B(6550,2300)R(35400,14600)WP(15635,16450)"
        "L(10000000,50):max-cll=1000,400"
    )
    assert hdr.svtav1_hdr_params(HDR10_DEFAULT) == (
        "mastering-display=G(0.17000,0.79700)B(0.13100,0.04600)R(0.70800,0.29200)"
        "WP(0.31270,0.32900)L(1000.0000,0.0050):content-light=1000,400"
    )


def test_payloads_follow_the_metadata() -> None:
    meta = HdrMeta((34000, 13250, 7500), (16000, 34500, 3000), 15635, 16450, 6_000_000, 1, 650, 210)
    payload = hdr.mastering_display_payload(meta)
    assert np.frombuffer(payload[:16], dtype=">u2").tolist() == [
        13250,
        34500,
        7500,
        3000,
        34000,
        16000,
        15635,
        16450,
    ]
    assert hdr.content_light_payload(meta) == (650).to_bytes(2, "big") + (210).to_bytes(2, "big")
