"""Colour conversion: captured desktop pixels -> the YUV frames encoders take.

- BGRA8 (sRGB) -> 8-bit 4:2:0 (yuv420p or NV12), BT.709 limited range, for SDR.
- FP16 scRGB (linear BT.709, 1.0 = 80 cd/m^2) -> BT.709->BT.2020 in linear light -> PQ ->
  10-bit 4:2:0 (yuv420p10le or P010), BT.2020 non-constant luminance, limited range, for HDR10.
- RGB10A2 (DXGI R10G10B10A2 words: R in bits 0-9; PQ BT.2020 R'G'B' in an HDR10 swap chain,
  sRGB BT.709 when SDR) -> the same outputs.
- A cursor sprite is composited before conversion, in the source's colour space (linear light
  for FP16), on a small tile around it so the full frame is never copied.

The R'G'B' -> Y'CbCr step runs in FFmpeg's swscale (default, multi-threaded) or in numpy
(`Method.NUMPY`, the slower reference path kept to cross-check and benchmark swscale). The
non-linear per-pixel steps for FP16 (matrix, PQ) are numpy with a float-bits lookup table, since
swscale clips linear float input at 1.0. Scratch buffers are allocated once per converter and
the capture buffer is wrapped, never copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from ..proto.frame import PixelFormat
from . import hdr as hdrmath


class OutFormat(StrEnum):
    YUV420P = "yuv420p"
    NV12 = "nv12"
    YUV420P10 = "yuv420p10le"
    P010 = "p010le"

    @property
    def bits(self) -> int:
        return 10 if self in (OutFormat.YUV420P10, OutFormat.P010) else 8

    @property
    def semi_planar(self) -> bool:
        return self in (OutFormat.NV12, OutFormat.P010)


class Method(StrEnum):
    SWSCALE = "swscale"
    NUMPY = "numpy"


@dataclass(frozen=True)
class ColorTags:
    """FFmpeg AVColorPrimaries / AVColorTransferCharacteristic / AVColorSpace / AVColorRange."""

    primaries: int
    trc: int
    space: int
    range: int


SDR_TAGS = ColorTags(primaries=1, trc=1, space=1, range=1)  # BT.709, limited
HDR10_TAGS = ColorTags(primaries=9, trc=16, space=9, range=1)  # BT.2020, PQ, BT.2020nc, limited


# swscale reads 16-bit RGB with 65280 (255 * 256) as full scale, not 65535 (measured on
# FFmpeg 8: 65535 came out 3 codes above 10-bit white). Both Y'CbCr paths use this scale so they
# agree; `selftest` and the tests catch a swscale that changes it.
RGB48_WHITE = 65280
_RGB10_TO_48 = np.rint(np.arange(1024) * (RGB48_WHITE / 1023)).astype(np.uint16)


@dataclass(frozen=True)
class Cursor:
    """A cursor sprite: (h, w, 4) uint8 BGRA with straight alpha, top-left at (x, y)."""

    image: np.ndarray
    x: int
    y: int


def _float_bits_lut(fn: object) -> np.ndarray:
    """uint16 table over `float32 bits >> 13` for 0 <= x <= 1: index it with a shifted view.

    A bucket keeps 10 mantissa bits (fp16 precision, < 0.1 code of 10-bit PQ) over the full
    float32 exponent range, so dark values keep their precision.
    """
    top = np.float32(1.0).view(np.int32) >> 13
    centres = ((np.arange(top + 1, dtype=np.int64) << 13) | (1 << 12)).astype(np.int32)
    x = np.minimum(centres.view(np.float32).astype(np.float64), 1.0)
    return np.rint(fn(x) * RGB48_WHITE).astype(np.uint16)  # type: ignore[operator]


@cache
def _pq_lut() -> np.ndarray:
    """Linear light / 10000 cd/m^2 -> PQ signal, 16-bit."""
    return _float_bits_lut(lambda x: hdrmath.pq_oetf(x * hdrmath.PQ_PEAK_NITS))


@cache
def _srgb_lut() -> np.ndarray:
    """Linear 0..1 (scRGB 1.0 = SDR white) -> sRGB signal, 16-bit."""
    return _float_bits_lut(hdrmath.linear_to_srgb)


def unpack_rgb10a2(pixels: np.ndarray) -> np.ndarray:
    """(h, w, 4) uint8 R10G10B10A2 words -> (h, w, 3) 10-bit R, G, B codes (uint16)."""
    words = pixels.view(np.uint32)[..., 0]
    return np.stack([(words >> s) & 0x3FF for s in (0, 10, 20)], axis=-1).astype(np.uint16)


def pack_rgb10a2(codes: np.ndarray) -> np.ndarray:
    """(h, w, 3) 10-bit R, G, B codes -> (h, w, 4) uint8 R10G10B10A2 words, alpha opaque."""
    c = codes.astype(np.uint32)
    words = c[..., 0] | (c[..., 1] << 10) | (c[..., 2] << 20) | np.uint32(3 << 30)
    return words[..., None].view(np.uint8)


def plane_views(frame: av.VideoFrame) -> list[np.ndarray]:
    """Writable numpy views of a 4:2:0 frame's planes (Y, then U+V or the interleaved UV)."""
    out = OutFormat(frame.format.name)
    dtype = np.uint16 if out.bits > 8 else np.uint8
    item = np.dtype(dtype).itemsize
    views = []
    for i, plane in enumerate(frame.planes):
        rows = frame.height if i == 0 else frame.height // 2
        cols = frame.width if i == 0 or out.semi_planar else frame.width // 2
        flat = np.frombuffer(plane, dtype=dtype)
        views.append(flat.reshape(-1, plane.line_size // item)[:rows, :cols])
    return views


class Converter:
    """Converts frames of one size/format/HDR state into `out`; not thread-safe (one per stage).

    `hdr` says what the source holds (an HDR desktop); the output is HDR10 when `out` is a
    10-bit format and 8-bit SDR otherwise. An HDR source into an SDR output is the graceful
    downgrade: SDR white (203 cd/m^2) maps to white, brighter highlights clip.
    """

    def __init__(
        self,
        width: int,
        height: int,
        src: PixelFormat,
        hdr: bool,
        out: OutFormat,
        *,
        method: Method = Method.SWSCALE,
        threads: int = 2,
    ) -> None:
        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise ValueError(f"4:2:0 needs an even, non-empty size, got {width}x{height}")
        if hdr and src is PixelFormat.BGRA8:
            raise ValueError("a BGRA8 frame cannot carry HDR (use FP16_RGBA or RGB10A2)")
        if out.bits > 8 and not hdr:
            raise ValueError("a 10-bit output is HDR10 and needs an HDR source")
        self.width, self.height, self.src, self.hdr, self.out = width, height, src, hdr, out
        self.method, self.threads = method, threads
        self.hdr_out = out.bits > 8
        self.tags = HDR10_TAGS if self.hdr_out else SDR_TAGS
        self._kr_kb = hdrmath.BT2020_KR_KB if self.hdr_out else hdrmath.BT709_KR_KB
        self._sws = VideoReformatter()
        self._tiles: dict[tuple[int, int], Converter] = {}
        # RGB10A2 whose encoding already matches the output only needs its codes widened.
        self._widen_only = src is PixelFormat.RGB10A2 and hdr == self.hdr_out
        if src is not PixelFormat.BGRA8:
            self._rgb48 = np.empty((height, width, 3), dtype=np.uint16)
        if src is not PixelFormat.BGRA8 and not self._widen_only:
            self._linear_setup()
        if method is Method.NUMPY:
            self._ring = [av.VideoFrame(width, height, out.value) for _ in range(3)]
            self._next = 0

    def _linear_setup(self) -> None:
        """Buffers and the 4x3 matrix for source -> linear output primaries -> transfer LUT."""
        shape3 = (self.height, self.width, 3)
        self._f32 = np.empty((self.height, self.width, 4), dtype=np.float32)
        self._lin = np.empty(shape3, dtype=np.float32)
        self._idx = np.empty(shape3, dtype=np.int32)
        if self.src is PixelFormat.FP16_RGBA:  # scRGB: BT.709, 1.0 = 80 cd/m^2
            primaries, unit = np.eye(3), hdrmath.SCRGB_WHITE_NITS
        else:  # RGB10A2 PQ BT.2020, decoded to cd/m^2 by the table in `_rgb`
            primaries, unit = np.linalg.inv(hdrmath.BT709_TO_BT2020), 1.0
            self._rgb10_linear = hdrmath.pq_eotf(np.arange(1024) / 1023).astype(np.float32)
        if self.hdr_out:  # -> BT.2020 as a fraction of the PQ peak
            matrix = hdrmath.BT709_TO_BT2020 @ primaries * (unit / hdrmath.PQ_PEAK_NITS)
        else:  # -> BT.709 with SDR white at 1.0
            white = hdrmath.SDR_WHITE_NITS if self.hdr else hdrmath.SCRGB_WHITE_NITS
            matrix = primaries * (unit / white)
        to_out = np.zeros((4, 3))
        to_out[:3] = matrix.T
        self._matrix = to_out.astype(np.float32)
        self._lut = _pq_lut() if self.hdr_out else _srgb_lut()

    # --- public ---------------------------------------------------------------------------------
    def convert(self, pixels: np.ndarray, cursor: Cursor | None = None) -> av.VideoFrame:
        """One captured frame (h, w, c) -> a new 4:2:0 frame tagged with `tags`."""
        if pixels.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"frame is {pixels.shape[1]}x{pixels.shape[0]}, converter is "
                f"{self.width}x{self.height}"
            )
        frame = self._yuv(self._rgb(pixels))
        if cursor is not None:
            self._overlay(frame, pixels, cursor)
        frame.color_primaries = self.tags.primaries
        frame.color_trc = self.tags.trc
        frame.colorspace = self.tags.space
        frame.color_range = self.tags.range
        return frame

    # --- R'G'B' stage ---------------------------------------------------------------------------
    def _rgb(self, pixels: np.ndarray) -> np.ndarray:
        """The gamma-encoded RGB the Y'CbCr stage reads: the BGRA buffer itself, or rgb48."""
        if self.src is PixelFormat.BGRA8:
            return pixels
        if self.src is PixelFormat.RGB10A2:
            words = pixels.view(np.uint32)[..., 0]
            for c, shift in enumerate((0, 10, 20)):
                code = (words >> shift) & 0x3FF
                if self._widen_only:
                    self._rgb48[..., c] = _RGB10_TO_48[code]
                else:
                    self._f32[..., c] = self._rgb10_linear[code]
            if self._widen_only:
                return self._rgb48
            self._f32[..., 3] = 0.0
        else:
            np.copyto(self._f32, pixels)  # all four channels: a contiguous cast is the fast one
        np.matmul(self._f32, self._matrix, out=self._lin)
        np.clip(self._lin, 0.0, 1.0, out=self._lin)
        np.right_shift(self._lin.view(np.int32), 13, out=self._idx)
        np.take(self._lut, self._idx, out=self._rgb48)
        return self._rgb48

    # --- Y'CbCr stage ---------------------------------------------------------------------------
    def _yuv(self, rgb: np.ndarray) -> av.VideoFrame:
        if self.method is Method.SWSCALE:
            fmt = "bgra" if rgb.dtype == np.uint8 else "rgb48le"
            space = Colorspace.BT2020 if self.hdr_out else Colorspace.ITU709
            return self._sws.reformat(
                av.VideoFrame.from_numpy_buffer(rgb, format=fmt),
                format=self.out.value,
                src_colorspace=space,
                dst_colorspace=space,
                src_color_range=ColorRange.JPEG,
                dst_color_range=ColorRange.MPEG,
                threads=self.threads,
            )
        frame = self._ring[self._next]
        self._next = (self._next + 1) % len(self._ring)
        if rgb.dtype == np.uint8:
            norm = rgb[..., 2::-1].astype(np.float32) * np.float32(1 / 255)
        else:
            norm = rgb.astype(np.float32) * np.float32(1 / RGB48_WHITE)
        matrix = hdrmath.rgb_to_ycbcr_matrix(*self._kr_kb).astype(np.float32)
        h, w = self.height, self.width
        chroma_rgb = norm.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
        scale = 1 << (self.out.bits - 8)
        shift = 6 if self.out is OutFormat.P010 else 0  # P010 keeps its 10 bits at the top
        y = np.rint(16 * scale + 219 * scale * (norm @ matrix[0]))
        c = np.rint(128 * scale + 224 * scale * (chroma_rgb @ matrix[1:].T))
        planes = plane_views(frame)
        dtype = planes[0].dtype
        planes[0][:] = y.astype(dtype) << shift
        if self.out.semi_planar:
            planes[1][:] = (c.astype(dtype) << shift).reshape(h // 2, w)
        else:
            planes[1][:] = c[..., 0].astype(dtype)
            planes[2][:] = c[..., 1].astype(dtype)
        return frame

    # --- cursor ---------------------------------------------------------------------------------
    def _overlay(self, frame: av.VideoFrame, pixels: np.ndarray, cursor: Cursor) -> None:
        """Re-convert the (even-aligned) tile under the cursor with the sprite blended in."""
        ch, cw = cursor.image.shape[:2]
        x0, y0 = max(cursor.x, 0) & ~1, max(cursor.y, 0) & ~1
        x1 = min(cursor.x + cw + 1, self.width) & ~1
        y1 = min(cursor.y + ch + 1, self.height) & ~1
        if x1 <= x0 or y1 <= y0:
            return
        tile = pixels[y0:y1, x0:x1].copy()
        # Sprite rows/cols that land on the tile, and where.
        sy, sx = max(0, y0 - cursor.y), max(0, x0 - cursor.x)
        ty, tx = max(0, cursor.y - y0), max(0, cursor.x - x0)
        rows = min(ch - sy, tile.shape[0] - ty)
        cols = min(cw - sx, tile.shape[1] - tx)
        sprite = cursor.image[sy : sy + rows, sx : sx + cols]
        self._blend(tile[ty : ty + rows, tx : tx + cols], sprite)
        key = (x1 - x0, y1 - y0)
        if key not in self._tiles:
            self._tiles[key] = Converter(
                *key, self.src, self.hdr, self.out, method=self.method, threads=1
            )
        small = plane_views(self._tiles[key].convert(tile))
        for i, (dst, src) in enumerate(zip(plane_views(frame), small, strict=True)):
            r, c = (y0, x0) if i == 0 else (y0 // 2, x0 if self.out.semi_planar else x0 // 2)
            dst[r : r + src.shape[0], c : c + src.shape[1]] = src

    def _blend(self, region: np.ndarray, sprite: np.ndarray) -> None:
        """Alpha-blend a BGRA sprite into `region` (a view of the tile) in its colour space."""
        alpha = sprite[..., 3:4].astype(np.float64) / 255
        srgb = sprite[..., 2::-1].astype(np.float64) / 255  # R, G, B
        if self.src is PixelFormat.BGRA8:
            mixed = sprite[..., :3] * alpha + region[..., :3] * (1 - alpha)
            region[..., :3] = np.rint(mixed).astype(np.uint8)
        elif self.src is PixelFormat.FP16_RGBA:
            white = hdrmath.SDR_WHITE_NITS / hdrmath.SCRGB_WHITE_NITS if self.hdr else 1.0
            mixed = hdrmath.srgb_to_linear(srgb) * white * alpha + region[..., :3] * (1 - alpha)
            region[..., :3] = mixed.astype(np.float16)
        elif self.hdr:  # RGB10A2 holding PQ BT.2020: blend in linear light
            nits = hdrmath.pq_eotf(unpack_rgb10a2(region) / 1023)
            sprite_nits = (
                hdrmath.srgb_to_linear(srgb) @ hdrmath.BT709_TO_BT2020.T * hdrmath.SDR_WHITE_NITS
            )
            mixed = hdrmath.pq_oetf(sprite_nits * alpha + nits * (1 - alpha))
            region[:] = pack_rgb10a2(np.rint(mixed * 1023))
        else:  # RGB10A2 holding sRGB: blend the codes like BGRA
            mixed = srgb * 1023 * alpha + unpack_rgb10a2(region) * (1 - alpha)
            region[:] = pack_rgb10a2(np.rint(mixed))


def selftest(method: Method = Method.SWSCALE) -> None:
    """Convert FP16 patches of known colour to 10-bit HDR10 and check the code values (±1).

    Neutral patches are checked against the well-known PQ codes (0, 100, 203, 1000 and
    10000 cd/m^2 -> Y' 64, 509, 573, 723, 940); saturated BT.709 primaries against the
    reference math in `hdr`. Raises ValueError naming the first patch that is off.
    """
    known = {0.0: 64, 100.0: 509, 203.0: 573, 1000.0: 723, 10000.0: 940}
    colours = [(n, n, n) for n in known] + [(100.0, 0, 0), (0, 100.0, 0), (0, 0, 100.0)]
    patch = 4
    pixels = np.zeros((patch, patch * len(colours), 4), dtype=np.float16)
    for i, rgb in enumerate(colours):
        pixels[:, i * patch : (i + 1) * patch, :3] = np.array(rgb) / hdrmath.SCRGB_WHITE_NITS
    frame = Converter(
        pixels.shape[1], patch, PixelFormat.FP16_RGBA, True, OutFormat.YUV420P10, method=method
    ).convert(pixels)
    y, u, v = plane_views(frame)
    for i, rgb in enumerate(colours):
        got = (int(y[1, i * patch + 1]), int(u[0, i * patch // 2]), int(v[0, i * patch // 2]))
        want = tuple(int(c) for c in hdrmath.hdr10_code_values(np.array(rgb)))
        if rgb[0] == rgb[1] == rgb[2]:
            want = (known[rgb[0]], 512, 512)
        if any(abs(g - w) > 1 for g, w in zip(got, want, strict=True)):
            raise ValueError(
                f"HDR10 self-test ({method}): {rgb} cd/m^2 gave Y'CbCr {got}, expected {want}"
            )
