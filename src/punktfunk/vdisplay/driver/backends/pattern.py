"""The built-in pattern display: an animated scene at the exact mode, needing nothing installed.

Each frame is a static gradient, a bar sweeping across it (one pass every two seconds) and the
frame stamp (`vdisplay/stamp.py`: frame counter + capture time). The SDR variant is BGRA8; the
HDR variant is FP16 scRGB (1.0 = 80 cd/m2) with the bar at 800 cd/m2. Rendering writes only what
changed since that ring slot last held a frame: the bar's old and new columns and the stamp,
so 1080p60 costs well under a millisecond a frame instead of a full-frame copy.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ....proto.frame import PixelFormat
from ...base import DisplayBackend, DisplayMode
from ...stamp import draw_stamp

BAR_WIDTH = 64
SWEEP_SECONDS = 2.0
HDR_BAR = 10.0  # scRGB: 800 cd/m2


def _background(width: int, height: int, hdr: bool) -> np.ndarray:
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    if hdr:
        img = np.empty((height, width, 4), np.float16)
        img[..., 0] = 0.25  # RGBA order in scRGB
        img[..., 1] = y * 0.8
        img[..., 2] = x * 0.8
        img[..., 3] = 1.0
        return img
    img = np.empty((height, width, 4), np.uint8)
    img[..., 0] = (x * 200).astype(np.uint8)  # BGRA order
    img[..., 1] = (y * 200).astype(np.uint8)
    img[..., 2] = 64
    img[..., 3] = 255
    return img


class PatternSource:
    """One pattern monitor, paced by its own refresh clock."""

    def __init__(self, monitor_id: int, mode: DisplayMode, hdr: bool) -> None:
        self.mode = mode
        self.hdr = hdr
        self.format = PixelFormat.FP16_RGBA if hdr else PixelFormat.BGRA8
        self._label = f"pattern-{monitor_id}"
        self._background = _background(mode.width, mode.height, hdr)
        dtype = self._background.dtype
        self._bar = np.empty((mode.height, BAR_WIDTH, 4), dtype)
        self._bar[...] = (HDR_BAR, HDR_BAR, HDR_BAR, 1.0) if hdr else (255, 255, 255, 255)
        self._white = 1.0 if hdr else 255
        self._period = 1.0 / mode.refresh_hz
        self._next = time.monotonic()
        self._drawn: dict[int, int] = {}  # ring slot -> bar column drawn there
        self._stop = threading.Event()
        self.counter = 0

    @property
    def display_name(self) -> str:
        return self._label

    def frame_format(self) -> tuple[int, int, PixelFormat]:
        return self.mode.width, self.mode.height, self.format

    def wait(self, timeout: float) -> bool:
        delay = self._next - time.monotonic()
        if delay > timeout:
            self._stop.wait(timeout)
            return False
        if delay > 0 and self._stop.wait(delay):
            return False
        now = time.monotonic()
        # Keep the cadence, but never try to catch up on frames a stall skipped.
        self._next = max(self._next + self._period, now)
        return not self._stop.is_set()

    def _bar_x(self) -> int:
        span = self.mode.width - BAR_WIDTH
        step = span / (SWEEP_SECONDS * self.mode.refresh_hz)
        return int(self.counter * step) % (span + 1)

    def render(self, slot: int, dst: np.ndarray) -> int | None:
        x = self._bar_x()
        old = self._drawn.get(slot)
        if old is None:
            np.copyto(dst, self._background)
        else:
            dst[:, old : old + BAR_WIDTH] = self._background[:, old : old + BAR_WIDTH]
        dst[:, x : x + BAR_WIDTH] = self._bar
        capture_ns = time.monotonic_ns()
        draw_stamp(dst, self.counter, capture_ns, self._white)
        self._drawn[slot] = x
        self.counter += 1
        return capture_ns

    def skip(self) -> None:
        """A frame time passed without a free slot: count it, so the stamp shows the gap."""
        self.counter += 1

    def forget_slots(self) -> None:
        self._drawn.clear()

    def interrupt(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()


class PatternBackend:
    name = DisplayBackend.PATTERN
    renders_hdr = True

    def create(self, monitor_id: int, mode: DisplayMode, hdr: bool) -> PatternSource:
        return PatternSource(monitor_id, mode, hdr)
