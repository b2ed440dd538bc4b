"""Colour conversion: known colours to known code values, both methods, cursor, downgrade."""

from __future__ import annotations

import numpy as np
import pytest

from punktfunk.encode import convert, hdr
from punktfunk.encode.convert import Converter, Cursor, Method, OutFormat, plane_views
from punktfunk.encode.scene import DesktopScene
from punktfunk.proto.frame import PixelFormat

BGRA, FP16, RGB10 = PixelFormat.BGRA8, PixelFormat.FP16_RGBA, PixelFormat.RGB10A2


def patches(values: list[tuple[float, float, float]], dtype: type, size: int = 4) -> np.ndarray:
    """A row of size x size patches, one per (R, G, B) value (BGRA8 gets B, G, R order)."""
    out = np.zeros((size, size * len(values), 4), dtype=dtype)
    for i, rgb in enumerate(values):
        cell = out[:, i * size : (i + 1) * size]
        cell[..., :3] = rgb[::-1] if dtype == np.uint8 else rgb
        cell[..., 3] = 255 if dtype == np.uint8 else 1
    return out


def centre_codes(frame, count: int, size: int = 4) -> list[tuple[int, int, int]]:
    """(Y', Cb, Cr) at the middle of each patch, shifted down for P010."""
    planes = plane_views(frame)
    shift = 6 if frame.format.name == "p010le" else 0
    if len(planes) == 2:  # interleaved chroma
        u, v = planes[1][:, 0::2], planes[1][:, 1::2]
    else:
        u, v = planes[1], planes[2]
    return [
        (
            int(planes[0][1, i * size + 1]) >> shift,
            int(u[0, i * size // 2]) >> shift,
            int(v[0, i * size // 2]) >> shift,
        )
        for i in range(count)
    ]


def close(got: list[tuple[int, int, int]], want: list[tuple[int, int, int]], tol: int = 1) -> bool:
    return all(
        abs(g - w) <= tol
        for gs, ws in zip(got, want, strict=True)
        for g, w in zip(gs, ws, strict=True)
    )


@pytest.mark.parametrize("method", list(Method))
def test_selftest_passes(method: Method) -> None:
    convert.selftest(method)


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("out", [OutFormat.YUV420P, OutFormat.NV12])
def test_bgra_to_bt709_limited(method: Method, out: OutFormat) -> None:
    colours = [(255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 64, 32)]
    frame = Converter(4 * len(colours), 4, BGRA, False, out, method=method).convert(
        patches(colours, np.uint8)
    )
    m = hdr.rgb_to_ycbcr_matrix(*hdr.BT709_KR_KB)
    want = [tuple(hdr.limited_range(np.array(c) / 255 @ m.T, 8).tolist()) for c in colours]
    assert close(centre_codes(frame, len(colours)), want)
    assert (frame.colorspace, frame.color_primaries, frame.color_trc, frame.color_range) == (
        1,
        1,
        1,
        1,
    )


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("out", [OutFormat.YUV420P10, OutFormat.P010])
def test_fp16_scrgb_to_pq_bt2020(method: Method, out: OutFormat) -> None:
    nits = [(0, 0, 0), (100, 100, 100), (203, 203, 203), (1000, 1000, 1000), (500, 20, 5)]
    px = patches([tuple(n / 80 for n in rgb) for rgb in nits], np.float16)
    frame = Converter(px.shape[1], 4, FP16, True, out, method=method).convert(px)
    want = [tuple(hdr.hdr10_code_values(np.array(rgb, dtype=float)).tolist()) for rgb in nits]
    assert close(centre_codes(frame, len(nits)), want)
    assert [c[0] for c in want[:4]] == [64, 509, 573, 723]
    assert (frame.colorspace, frame.color_primaries, frame.color_trc) == (9, 9, 16)


@pytest.mark.parametrize("method", list(Method))
def test_rgb10a2_pq_passes_through(method: Method) -> None:
    codes = [(0, 0, 0), (520, 520, 520), (769, 769, 769), (700, 300, 100)]
    px = convert.pack_rgb10a2(patches(codes, np.float64)[..., :3])
    frame = Converter(px.shape[1], 4, RGB10, True, OutFormat.P010, method=method).convert(px)
    m = hdr.rgb_to_ycbcr_matrix(*hdr.BT2020_KR_KB)
    want = [tuple(hdr.limited_range(np.array(c) / 1023 @ m.T, 10).tolist()) for c in codes]
    assert close(centre_codes(frame, len(codes)), want)


@pytest.mark.parametrize("method", list(Method))
def test_hdr_source_downgrades_to_sdr_with_sdr_white_at_white(method: Method) -> None:
    """SDR-white (203 cd/m^2) -> 235, highlights clip, black stays black."""
    nits = [0.0, 203.0, 1000.0]
    px = patches([(n / 80,) * 3 for n in nits], np.float16)
    got = centre_codes(Converter(12, 4, FP16, True, OutFormat.NV12, method=method).convert(px), 3)
    assert close(got, [(16, 128, 128), (235, 128, 128), (235, 128, 128)])
    pq = [round(hdr.pq_oetf(n) * 1023) for n in nits]
    px10 = convert.pack_rgb10a2(patches([(c, c, c) for c in pq], np.float64)[..., :3])
    got = centre_codes(
        Converter(12, 4, RGB10, True, OutFormat.YUV420P, method=method).convert(px10), 3
    )
    assert close(got, [(16, 128, 128), (235, 128, 128), (235, 128, 128)])


def test_methods_agree_on_desktop_content() -> None:
    scene = DesktopScene(320, 240)
    px = scene.render(5, scene.buffer())
    a = plane_views(Converter(320, 240, BGRA, False, OutFormat.YUV420P).convert(px))
    b = plane_views(
        Converter(320, 240, BGRA, False, OutFormat.YUV420P, method=Method.NUMPY).convert(px)
    )
    assert np.abs(a[0].astype(int) - b[0]).max() <= 1
    assert np.abs(a[1].astype(int) - b[1]).mean() < 1.0  # chroma filters differ at edges only


def test_strided_capture_buffer_is_read_in_place() -> None:
    """A frame that is a window into a larger buffer converts like a packed copy of it."""
    scene = DesktopScene(320, 240)
    canvas = np.zeros((260, 400, 4), dtype=np.uint8)
    canvas[10:250, 40:360] = scene.render(3, scene.buffer())
    window = canvas[10:250, 40:360]
    conv = Converter(320, 240, BGRA, False, OutFormat.YUV420P)
    for a, b in zip(
        plane_views(conv.convert(window)), plane_views(conv.convert(window.copy())), strict=True
    ):
        assert np.array_equal(a, b)


def test_cursor_is_composited_before_conversion() -> None:
    black = np.zeros((16, 16, 4), dtype=np.uint8)
    black[..., 3] = 255
    sprite = np.zeros((5, 5, 4), dtype=np.uint8)
    sprite[..., :3], sprite[..., 3] = 255, 255
    sprite[0, 0, 3] = 0  # a transparent corner
    sprite[4, 4, 3] = 128  # half-transparent
    y = plane_views(
        Converter(16, 16, BGRA, False, OutFormat.YUV420P).convert(black, Cursor(sprite, 3, 5))
    )[0]
    assert y[5, 3] == 16 and y[5, 4] == 235 and y[9, 6] == 235
    assert y[9, 7] == round(16 + 219 * 128 / 255)
    assert (y[:5] == 16).all() and (y[10:] == 16).all() and (y[:, 8:] == 16).all()
    assert black[5:10, 3:8, :3].max() == 0  # the capture buffer is untouched


def test_cursor_in_hdr_is_sdr_white_and_may_hang_off_screen() -> None:
    dark = np.zeros((16, 16, 4), dtype=np.float16)
    sprite = np.full((5, 5, 4), 255, dtype=np.uint8)
    y = (
        plane_views(
            Converter(16, 16, FP16, True, OutFormat.P010).convert(dark, Cursor(sprite, -2, 13))
        )[0]
        >> 6
    )
    assert (y[13:, :3] == 573).all()  # 203 cd/m^2
    assert (y[:13] == 64).all() and (y[:, 3:] == 64).all()


def test_invalid_conversions_are_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        Converter(15, 8, BGRA, False, OutFormat.YUV420P)
    with pytest.raises(ValueError, match="BGRA8 frame cannot carry HDR"):
        Converter(16, 8, BGRA, True, OutFormat.P010)
    with pytest.raises(ValueError, match="HDR source"):
        Converter(16, 8, FP16, False, OutFormat.P010)
    with pytest.raises(ValueError, match="converter is 16x8"):
        Converter(16, 8, BGRA, False, OutFormat.NV12).convert(np.zeros((8, 18, 4), np.uint8))
