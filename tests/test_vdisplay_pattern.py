"""The pattern display: exact mode, a readable frame stamp (also after 4:2:0 video coding),
incremental rendering identical to full rendering, and the FP16 HDR variant."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from punktfunk.proto.frame import PixelFormat
from punktfunk.vdisplay.base import DisplayMode
from punktfunk.vdisplay.driver.backends.pattern import HDR_BAR, PatternSource
from punktfunk.vdisplay.stamp import HEIGHT, WIDTH, Stamp, decode_stamp, draw_stamp


def test_stamp_round_trip_in_both_formats() -> None:
    sdr = np.zeros((480, 640, 4), np.uint8)
    draw_stamp(sdr, 123456, 987654321012345678, 255)
    assert decode_stamp(sdr) == Stamp(123456, 987654321012345678)
    hdr = np.zeros((480, 640, 4), np.float16)
    draw_stamp(hdr, 7, 42, 1.0)
    assert decode_stamp(hdr) == Stamp(7, 42)


def test_a_damaged_stamp_is_rejected_not_misread() -> None:
    img = np.zeros((480, 640, 4), np.uint8)
    draw_stamp(img, 5, 6, 255)
    img[64:80, 128:144] = 255 - img[64:80, 128:144]  # flip one payload block
    assert decode_stamp(img) is None
    assert decode_stamp(np.zeros((480, 640, 4), np.uint8)) is None


def _render(source: PatternSource, slot: int) -> np.ndarray:
    width, height, fmt = source.frame_format()
    dst = np.zeros((height, width, 4), np.float16 if fmt is PixelFormat.FP16_RGBA else np.uint8)
    assert source.render(slot, dst) is not None
    return dst


def test_incremental_slot_rendering_equals_full_rendering() -> None:
    mode = DisplayMode(800, 600, 60)
    incremental, full = PatternSource(0, mode, False), PatternSource(1, mode, False)
    slots = [np.zeros((600, 800, 4), np.uint8) for _ in range(3)]
    for n in range(40):
        slot = n % 3
        assert incremental.render(slot, slots[slot]) is not None
        full.forget_slots()
        reference = _render(full, 0)
        got = slots[slot]
        # Everything but the stamp's timestamp must match exactly.
        assert np.array_equal(got[HEIGHT:], reference[HEIGHT:])
        assert np.array_equal(got[:HEIGHT, WIDTH:], reference[:HEIGHT, WIDTH:])
        assert decode_stamp(got).counter == decode_stamp(reference).counter == n
    assert incremental.counter == 40


def test_frames_have_the_exact_mode_and_a_moving_bar() -> None:
    source = PatternSource(0, DisplayMode(1366, 768, 60), False)
    a, b = _render(source, 0), _render(source, 1)
    assert a.shape == (768, 1366, 4) and a.dtype == np.uint8
    assert not np.array_equal(a[HEIGHT:], b[HEIGHT:])
    assert (a[..., 3] == 255).all()


def test_hdr_variant_is_fp16_scrgb_with_highlights_above_sdr_white() -> None:
    source = PatternSource(0, DisplayMode(1280, 720, 60), True)
    frame = _render(source, 0)
    assert source.frame_format()[2] is PixelFormat.FP16_RGBA and frame.dtype == np.float16
    assert float(frame[HEIGHT:, :, :3].max()) == HDR_BAR
    assert decode_stamp(frame).counter == 0


def test_skipped_frames_show_as_counter_gaps() -> None:
    source = PatternSource(0, DisplayMode(640, 480, 60), False)
    first = decode_stamp(_render(source, 0)).counter
    source.skip()
    source.skip()
    assert decode_stamp(_render(source, 1)).counter == first + 3


def test_stamp_survives_420_video_coding() -> None:
    av = pytest.importorskip("av")
    source = PatternSource(0, DisplayMode(640, 480, 30), False)
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 640, 480, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "35"}
    sent: list[Stamp] = []
    packets = []
    for n in range(10):
        frame_bgra = _render(source, n % 3)
        sent.append(decode_stamp(frame_bgra))
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgra), format="bgra")
        vf.pts = n
        packets += encoder.encode(vf.reformat(format="yuv420p"))
    packets += encoder.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    got = []
    for packet in packets:
        for frame in decoder.decode(packet):
            got.append(decode_stamp(frame.to_ndarray(format="bgr24")))
    assert got == sent
