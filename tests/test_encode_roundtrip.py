"""Encode with the software backends, decode with PyAV, and check what a client would see."""

from __future__ import annotations

import ctypes
import dataclasses
import logging

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from punktfunk.capture.base import CapturedFrame
from punktfunk.encode import bitstream as bs
from punktfunk.encode import hdr
from punktfunk.encode.backends import spec_for
from punktfunk.encode.base import Codec, EncodedFrame, Encoder, EncoderBackend, FrameType
from punktfunk.encode.convert import Converter, OutFormat, plane_views
from punktfunk.encode.pyav import EncoderError, EncoderParams, PyAVEncoder
from punktfunk.encode.scene import DesktopScene
from punktfunk.proto.frame import HDR10_DEFAULT, HdrMeta, PixelFormat

SW = EncoderBackend.SOFTWARE
DECODER = {Codec.H264: "h264", Codec.HEVC: "hevc", Codec.AV1: "libdav1d"}
META = HdrMeta((34000, 13250, 7500), (16000, 34500, 3000), 15635, 16450, 6_000_000, 1, 650, 210)


def encoder(codec: Codec, kbps: int = 10_000, depth: int = 1, **kw: object) -> PyAVEncoder:
    spec = kw.pop("spec", None) or spec_for(SW, codec)
    return PyAVEncoder(spec, EncoderParams(bitrate_kbps=kbps, fps=60, pipeline_depth=depth), **kw)  # type: ignore[arg-type]


def frames_of(scene: DesktopScene, count: int, start: int = 0) -> list[CapturedFrame]:
    buf = scene.buffer()
    return [
        CapturedFrame(
            scene.render(i, buf).copy(),
            scene.fmt,
            i,
            i * 16_666_667,
            scene.fmt is not PixelFormat.BGRA8,
        )
        for i in range(start, start + count)
    ]


def run(
    enc: Encoder, frames: list[CapturedFrame], keyframes_at: tuple[int, ...] = ()
) -> list[EncodedFrame]:
    out: list[EncodedFrame] = []
    for i, frame in enumerate(frames):
        if i in keyframes_at:
            enc.request_keyframe()
        enc.submit(frame)
        out += enc.poll()
    return out + enc.flush()


def decode(codec: Codec, units: list[EncodedFrame]) -> list[av.VideoFrame]:
    """Decode every access unit; each must yield its picture at once (no reordering)."""
    dec = av.CodecContext.create(DECODER[codec], "r")
    pictures = []
    for unit in units:
        got = dec.decode(av.Packet(unit.data))
        if codec is not Codec.AV1:  # dav1d holds frames in its own thread queue
            assert len(got) == 1, "a frame came out late: the stream reorders"
        pictures += got
    return pictures + dec.decode(None)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def idr_nal_check(codec: Codec, unit: EncodedFrame) -> tuple[bool, bool]:
    """(AU holds an IDR slice, AU holds all parameter sets) from the Annex-B bytes."""
    kinds = {bs.nal_type(codec, n) for n in bs.split_nals(unit.data)}
    return (any(bs.is_idr(codec, k) for k in kinds), bs.parameter_set_types(codec) <= kinds)


# --- software H.264 / HEVC round trip --------------------------------------------------------


@pytest.mark.parametrize("codec", [Codec.H264, Codec.HEVC])
def test_round_trip_matches_source(codec: Codec) -> None:
    scene = DesktopScene(640, 360)
    frames = frames_of(scene, 30)
    units = run(encoder(codec, kbps=10_000), frames)
    pictures = decode(codec, units)
    assert len(pictures) == len(frames)
    ref = Converter(640, 360, PixelFormat.BGRA8, False, OutFormat.YUV420P)
    luma = [
        psnr(p.to_ndarray()[:360], plane_views(ref.convert(f.pixels))[0])
        for p, f in zip(pictures, frames, strict=True)
    ]
    rgb = [
        psnr(p.to_ndarray(format="bgr24"), f.pixels[..., :3])
        for p, f in zip(pictures, frames, strict=True)
    ]
    assert np.mean(luma) > 35 and np.mean(rgb) > 35, (luma, rgb)
    assert min(luma[10:]) > 35  # after the (one-frame-VBV) IDR has been refined
    assert all(p.width == 640 and p.height == 360 for p in pictures)


@pytest.mark.parametrize("codec", [Codec.H264, Codec.HEVC, Codec.AV1])
def test_idr_exactly_when_requested_and_no_b_frames(codec: Codec) -> None:
    units = run(encoder(codec, kbps=4000), frames_of(DesktopScene(320, 240), 24), (7, 15))
    assert [u.frame_index for u in units] == list(range(24))
    idrs = [u.frame_index for u in units if u.frame_type is FrameType.IDR]
    assert idrs == [0, 7, 15]
    pictures = decode(codec, units)
    assert [i for i, p in enumerate(pictures) if p.key_frame] == [0, 7, 15]
    assert all(p.pict_type in (PictureType.I, PictureType.P) for p in pictures)
    if codec is not Codec.AV1:
        for unit in units:  # the bytes agree: IDR slices and parameter sets exactly there
            assert idr_nal_check(codec, unit) == (unit.frame_type is FrameType.IDR,) * 2


def test_pipeline_depth_two_keeps_order_and_requests() -> None:
    enc = encoder(Codec.H264, depth=2)
    units = run(enc, frames_of(DesktopScene(320, 240), 20), (10,))
    enc.close()
    assert [u.frame_index for u in units] == list(range(20))
    assert [u.frame_type for u in units].count(FrameType.IDR) == 2  # start + the request
    assert len(decode(Codec.H264, units)) == 20
    assert all(c > 0 and e > 0 for c, e in enc.timings)


def test_pipeline_depth_two_output_is_ready_without_the_next_submit() -> None:
    """poll(timeout) hands out frame N as soon as it is encoded, not one submit later."""
    enc = encoder(Codec.H264, depth=2)
    for frame in frames_of(DesktopScene(320, 240), 5):
        enc.submit(frame)
        got = enc.poll(timeout=5.0)
        while not got or got[-1].frame_index < frame.seq:
            got += enc.poll(timeout=5.0)
        assert got[-1].frame_index == frame.seq
    assert enc.poll(timeout=0.5) == []  # nothing in flight: returns at once
    enc.close()


def test_invalidate_ref_frames_sends_one_idr_per_loss() -> None:
    enc = encoder(Codec.H264)
    assert enc.caps.supports_rfi is False
    frames = frames_of(DesktopScene(320, 240), 12)
    out = []
    for frame in frames[:6]:
        enc.submit(frame)
    out += enc.poll()
    enc.invalidate_ref_frames(3, 4)
    enc.invalidate_ref_frames(3, 5)  # the same loss reported twice: still one IDR
    enc.submit(frames[6])
    out += enc.poll()
    enc.invalidate_ref_frames(2, 5)  # older than the IDR at 6: already healed
    for frame in frames[7:]:
        enc.submit(frame)
    out += enc.flush()
    assert [u.frame_index for u in out if u.frame_type is FrameType.IDR] == [0, 6]


def test_resolution_change_mid_stream_is_a_valid_idr_at_the_new_size() -> None:
    enc = encoder(Codec.HEVC, kbps=6000)
    frames = frames_of(DesktopScene(320, 240), 8) + frames_of(DesktopScene(640, 360), 8, 8)
    units = run(enc, frames)
    assert [u.frame_index for u in units if u.frame_type is FrameType.IDR] == [0, 8]
    assert idr_nal_check(Codec.HEVC, units[8]) == (True, True)
    pictures = decode(Codec.HEVC, units)
    assert [(p.width, p.height) for p in pictures] == [(320, 240)] * 8 + [(640, 360)] * 8
    # The new-size IDR also decodes on its own, as a client joining there would.
    alone = decode(Codec.HEVC, units[8:])
    assert (alone[0].width, alone[0].height, alone[0].key_frame) == (640, 360, True)


def test_format_and_hdr_changes_reinit(caplog: pytest.LogCaptureFixture) -> None:
    enc = encoder(Codec.HEVC, kbps=6000)
    sdr = frames_of(DesktopScene(320, 240), 4)
    hdr_frames = frames_of(DesktopScene(320, 240, PixelFormat.FP16_RGBA), 4, 4)
    with caplog.at_level(logging.INFO, logger="punktfunk.encode"):
        units = run(enc, sdr + hdr_frames + sdr)
    assert [u.frame_index for u in units if u.frame_type is FrameType.IDR] == [0, 4, 8]
    pictures = decode(Codec.HEVC, units)
    assert [p.format.name for p in pictures] == ["yuv420p"] * 4 + ["yuv420p10le"] * 4 + [
        "yuv420p"
    ] * 4
    assert [p.color_trc for p in pictures] == [1] * 4 + [16] * 4 + [1] * 4
    reasons = [r.getMessage() for r in caplog.records if "encode.open" in r.getMessage()]
    assert len(reasons) == 3 and "BGRA8/SDR -> 320x240/FP16_RGBA/HDR10" in reasons[1]


def test_bitrate_change_reopens_x265_and_takes_effect() -> None:
    # libx264 re-targets live instead: tests/test_encoder_live_bitrate.py
    enc = encoder(Codec.HEVC, kbps=1000)
    frames = frames_of(DesktopScene(640, 360), 40)
    out = []
    for i, frame in enumerate(frames):
        if i == 20:
            enc.set_bitrate(8000)
        enc.submit(frame)
        out += enc.poll()
    out += enc.flush()
    assert [u.frame_index for u in out if u.frame_type is FrameType.IDR] == [0, 20]
    low = sum(u.size for u in out[1:20]) / 19
    high = sum(u.size for u in out[21:]) / 19
    assert low <= 1000 * 1000 / 8 / 60 * 1.5 < high


def test_bitrate_is_clamped_to_the_probed_ceiling() -> None:
    params = EncoderParams(bitrate_kbps=500_000, fps=60, max_bitrate_kbps=100_000)
    enc = PyAVEncoder(spec_for(SW, Codec.AV1), params)
    run(enc, frames_of(DesktopScene(320, 240), 2))  # opens at the ceiling, or SVT would refuse
    enc.set_bitrate(400_000)
    assert enc._bitrate_kbps == 100_000


def test_bad_frame_is_a_clear_error() -> None:
    enc = encoder(Codec.H264)
    bad = CapturedFrame(np.zeros((241, 320, 4), np.uint8), PixelFormat.BGRA8, 0, 0, False)
    with pytest.raises(EncoderError, match="libx264: 4:2:0 needs an even"):
        enc.submit(bad)


def test_1080p_smoke_with_pipelining() -> None:
    enc = encoder(Codec.H264, kbps=20_000, depth=2)
    units = run(enc, frames_of(DesktopScene(1920, 1080), 6))
    enc.close()
    pictures = decode(Codec.H264, units)
    assert [(p.width, p.height) for p in pictures] == [(1920, 1080)] * 6


# --- HDR10 ---------------------------------------------------------------------------------------


class _MasteringDisplay(ctypes.Structure):
    """FFmpeg's AVMasteringDisplayMetadata (primaries R, G, B as AVRational num/den)."""

    _fields_ = (
        ("primaries", (ctypes.c_int * 2) * 6),
        ("white", (ctypes.c_int * 2) * 2),
        ("min_luminance", ctypes.c_int * 2),
        ("max_luminance", ctypes.c_int * 2),
        ("has_primaries", ctypes.c_int),
        ("has_luminance", ctypes.c_int),
    )


def side_data(picture: av.VideoFrame) -> tuple[dict[str, float], tuple[int, int]]:
    """Decoded mastering display (as floats) and (MaxCLL, MaxFALL) of a picture."""
    found = {sd.type.name: bytes(sd) for sd in picture.side_data}
    md = _MasteringDisplay.from_buffer_copy(found["MASTERING_DISPLAY_METADATA"])
    ratio = [n / d for n, d in (tuple(r) for r in md.primaries)]
    values = {
        "rx": ratio[0],
        "ry": ratio[1],
        "gx": ratio[2],
        "gy": ratio[3],
        "bx": ratio[4],
        "by": ratio[5],
        "wx": md.white[0][0] / md.white[0][1],
        "wy": md.white[1][0] / md.white[1][1],
        "max": md.max_luminance[0] / md.max_luminance[1],
        "min": md.min_luminance[0] / md.min_luminance[1],
    }
    cll = np.frombuffer(found["CONTENT_LIGHT_LEVEL"], dtype=np.uint32)
    return values, (int(cll[0]), int(cll[1]))


def expected(meta: HdrMeta) -> dict[str, float]:
    names = ("rx", "gx", "bx")
    out = {k: meta.primaries_x[i] / 50000 for i, k in enumerate(names)}
    out |= {k.replace("x", "y"): meta.primaries_y[i] / 50000 for i, k in enumerate(names)}
    return out | {
        "wx": meta.white_x / 50000,
        "wy": meta.white_y / 50000,
        "max": meta.max_luminance / 10000,
        "min": meta.min_luminance / 10000,
    }


def hdr_frames(count: int, size: tuple[int, int] = (320, 240)) -> list[CapturedFrame]:
    return frames_of(DesktopScene(*size, PixelFormat.FP16_RGBA), count)


@pytest.mark.parametrize("native", [True, False], ids=["x265-writes-sei", "we-insert-sei"])
def test_hevc_hdr10_stream_signals_bt2020_pq_and_exact_metadata(native: bool) -> None:
    spec = spec_for(SW, Codec.HEVC)
    if not native:
        spec = dataclasses.replace(spec, native_hdr_metadata=False)
    enc = encoder(Codec.HEVC, kbps=8000, spec=spec, hdr_meta=META)
    assert enc.caps.supports_hdr_metadata
    units = run(enc, hdr_frames(10), (6,))
    pictures = decode(Codec.HEVC, units)
    probe = av.CodecContext.create("hevc", "r")
    probe.decode(av.Packet(units[0].data))
    assert probe.profile == "Main 10"
    first = pictures[0]
    assert (
        first.format.name,
        first.color_primaries,
        first.color_trc,
        first.colorspace,
        first.color_range,
    ) == ("yuv420p10le", 9, 16, 9, 1)
    values, cll = side_data(first)
    assert values == pytest.approx(expected(META), abs=1e-9) and cll == (650, 210)
    # Every IDR carries exactly our SEI bytes, and P-frames none.
    for unit in units:
        seis = [
            m
            for n in bs.split_nals(unit.data)
            if bs.nal_type(Codec.HEVC, n) == bs.HEVC_PREFIX_SEI
            for m in bs.parse_sei(Codec.HEVC, n)
        ]
        messages = dict(seis)
        if unit.frame_type is FrameType.IDR:
            assert messages[137] == hdr.mastering_display_payload(META)
            assert messages[144] == hdr.content_light_payload(META)
        else:
            assert 137 not in messages and 144 not in messages
    assert [u.frame_index for u in units if u.frame_type is FrameType.IDR] == [0, 6]


def test_new_hdr_metadata_arrives_with_an_idr() -> None:
    enc = encoder(Codec.HEVC, kbps=8000)
    frames = hdr_frames(8)
    out = []
    for i, frame in enumerate(frames):
        if i == 4:
            enc.set_hdr_meta(META)
        enc.submit(frame)
        out += enc.poll()
    out += enc.flush()
    assert [u.frame_index for u in out if u.frame_type is FrameType.IDR] == [0, 4]
    pictures = decode(Codec.HEVC, out)
    assert side_data(pictures[0])[1] == (HDR10_DEFAULT.max_cll, HDR10_DEFAULT.max_fall)
    assert side_data(pictures[4])[1] == (650, 210)


def test_fp16_known_nits_come_back_as_pq_code_values() -> None:
    nits = [0.0, 100.0, 203.0, 1000.0, 4000.0]
    px = np.zeros((64, 64 * len(nits), 4), dtype=np.float16)
    for i, n in enumerate(nits):
        px[:, i * 64 : (i + 1) * 64, :3] = n / hdr.SCRGB_WHITE_NITS
    frames = [CapturedFrame(px, PixelFormat.FP16_RGBA, i, 0, True) for i in range(6)]
    pictures = decode(Codec.HEVC, run(encoder(Codec.HEVC, kbps=20_000), frames))
    y = pictures[-1].to_ndarray()[:64]
    want = [int(hdr.hdr10_code_values(np.array([n, n, n]))[0]) for n in nits]
    got = [int(y[32, i * 64 + 32]) for i in range(len(nits))]
    assert want[:4] == [64, 509, 573, 723]
    assert all(abs(g - w) <= 1 for g, w in zip(got, want, strict=True)), (got, want)


@pytest.mark.parametrize("native", [True, False], ids=["svt-writes-obus", "we-insert-obus"])
def test_av1_hdr10_metadata(native: bool) -> None:
    spec = spec_for(SW, Codec.AV1)
    if not native:
        spec = dataclasses.replace(spec, native_hdr_metadata=False)
    units = run(encoder(Codec.AV1, kbps=8000, spec=spec, hdr_meta=META), hdr_frames(4))
    pictures = decode(Codec.AV1, units)
    assert (pictures[0].color_primaries, pictures[0].color_trc, pictures[0].colorspace) == (
        9,
        16,
        9,
    )
    values, cll = side_data(pictures[0])
    # AV1 stores 0.16 / 24.8 / 18.14 fixed point: equal to within that precision.
    want = expected(META)
    step = {"max": 1 / 256, "min": 1 / 16384}
    assert all(abs(values[k] - want[k]) <= step.get(k, 1 / 65536) / 2 + 1e-12 for k in want)
    assert cll == (650, 210)
    kinds = [k for k, _ in bs.split_obus(units[0].data)]
    assert bs.OBU_SEQUENCE_HEADER in kinds


def test_hdr_on_h264_is_encoded_as_sdr(caplog: pytest.LogCaptureFixture) -> None:
    enc = encoder(Codec.H264)
    assert not enc.caps.supports_hdr_metadata
    with caplog.at_level(logging.WARNING, logger="punktfunk.encode"):
        units = run(enc, hdr_frames(3))
    pictures = decode(Codec.H264, units)
    assert [p.format.name for p in pictures] == ["yuv420p"] * 3
    assert pictures[0].color_trc == 1
    lines = [r.getMessage() for r in caplog.records if "encode.hdr_downgrade" in r.getMessage()]
    assert len(lines) == 1 and "h264 carries no HDR10" in lines[0]
