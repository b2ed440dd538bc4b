"""Synthetic desktop-like frames: wallpaper, windows, text that scrolls, a moving box.

Used to probe, self-test and benchmark the encoders on content that compresses like a desktop
(large flat areas, sharp high-contrast text, small moving regions) rather than on noise.
Frames are drawn into caller-owned buffers and only the scrolling window is redrawn per frame,
so producing a frame costs far less than encoding it.
"""

from __future__ import annotations

import numpy as np

from ..proto.frame import PixelFormat
from . import hdr

_GLYPH_W, _GLYPH_H, _CELL_W, _CELL_H = 5, 9, 8, 16


def _text(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Black pseudo-text on white (uint8 gray): random 5x9 glyphs on an 8x16 grid."""
    rows, cols = height // _CELL_H, width // _CELL_W
    glyphs = rng.random((rows, cols, _GLYPH_H, _GLYPH_W)) < 0.45
    glyphs &= rng.random((rows, cols, 1, 1)) < 0.85  # word gaps
    cells = np.zeros((rows, cols, _CELL_H, _CELL_W), dtype=bool)
    cells[:, :, 3 : 3 + _GLYPH_H, 1 : 1 + _GLYPH_W] = glyphs
    page = np.full((height, width), 250, dtype=np.uint8)
    page[: rows * _CELL_H, : cols * _CELL_W] -= (
        cells.transpose(0, 2, 1, 3).reshape(rows * _CELL_H, cols * _CELL_W) * 230
    ).astype(np.uint8)
    return page


class DesktopScene:
    """Frames of one size and pixel format; `render(i, out)` draws frame i into `out`.

    BGRA8 frames are (h, w, 4) uint8 in B, G, R, A order. FP16_RGBA frames are (h, w, 4)
    float16 scRGB (linear BT.709, 1.0 = 80 cd/m^2) with the desktop at SDR white (203 cd/m^2)
    and a 1000 cd/m^2 highlight, as an HDR desktop composes SDR windows.
    """

    def __init__(self, width: int, height: int, fmt: PixelFormat = PixelFormat.BGRA8) -> None:
        if fmt is PixelFormat.RGB10A2:
            raise ValueError("DesktopScene draws BGRA8 or FP16_RGBA")
        self.width, self.height, self.fmt = width, height, fmt
        rng = np.random.default_rng(width * 7919 + height)
        ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        wallpaper = (np.array([90, 60, 20]) * (1 - ramp) + np.array([160, 110, 40]) * ramp).astype(
            np.uint8
        )
        base = np.empty((height, width, 3), dtype=np.uint8)
        base[:] = wallpaper
        # A static window on the left with text, a scrolling one on the right.
        self._win = (
            height // 8,
            height - height // 8,
            width // 2 + width // 32,
            width - width // 16,
        )
        top, bottom, left, right = self._win
        static = (height // 6, height - height // 5, width // 16, width // 2 - width // 32)
        base[static[0] : static[0] + 24] = (200, 120, 60)
        base[static[0] + 24 : static[1], static[2] : static[3]] = _text(
            rng, static[1] - static[0] - 24, static[3] - static[2]
        )[..., None]
        base[top - 24 : top, left:right] = (60, 60, 60)
        self._doc = np.repeat(_text(rng, 2 * (bottom - top), right - left)[..., None], 3, axis=2)
        self._base = self._finish(base)
        self._doc_px = self._finish(self._doc)
        box = np.zeros((max(8, height // 12), max(8, height // 12), 3), dtype=np.uint8)
        box[:] = (40, 40, 230)
        self._box = self._finish(box)
        if fmt is PixelFormat.FP16_RGBA:
            self._box[..., :3] = 1000 / hdr.SCRGB_WHITE_NITS  # an HDR highlight

    def _finish(self, bgr: np.ndarray) -> np.ndarray:
        """uint8 BGR -> this scene's pixel format (alpha opaque)."""
        if self.fmt is PixelFormat.BGRA8:
            out = np.empty((*bgr.shape[:2], 4), dtype=np.uint8)
            out[..., :3] = bgr
            out[..., 3] = 255
            return out
        scale = hdr.SDR_WHITE_NITS / hdr.SCRGB_WHITE_NITS
        lut = (hdr.srgb_to_linear(np.arange(256) / 255) * scale).astype(np.float16)
        out = np.empty((*bgr.shape[:2], 4), dtype=np.float16)
        out[..., :3] = lut[bgr[..., ::-1]]
        out[..., 3] = 1.0
        return out

    def buffer(self) -> np.ndarray:
        """A new frame buffer holding the static parts (draw into it with `render`)."""
        return self._base.copy()

    def render(self, index: int, out: np.ndarray) -> np.ndarray:
        """Draw frame `index` (scrolled text, moved box) into `out`, a `buffer()`."""
        top, bottom, left, right = self._win
        rows = bottom - top
        offset = (index * 4) % rows
        out[top:bottom, left:right] = self._doc_px[offset : offset + rows]
        size = self._box.shape[0]
        span = max(1, (right - left - size) // 2)
        x = left + (index * 6) % span
        y = top + (index * 3) % max(1, rows - size)
        out[y : y + size, x : x + size] = self._box
        return out
