"""A `Capturer` delivering pre-rendered frames at the display rate, like a busy desktop: the
frame source of the pipeline tests and of `bench/overload.py`."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from punktfunk.capture.base import CapturedFrame, OutputFormat
from punktfunk.proto.frame import HdrMeta, PixelFormat


class PacedFrames:
    """A new frame every display interval, cycling `frames`; after `static_after` frames
    nothing changes any more (a static desktop)."""

    def __init__(
        self, frames: Sequence[np.ndarray], fps: int, static_after: int | None = None
    ) -> None:
        self._frames = frames
        self._interval_ns = 1_000_000_000 // fps
        self._next_ns = time.monotonic_ns()
        self._seq = 0
        self._static_after = static_after

    @property
    def output_format(self) -> OutputFormat:
        return OutputFormat(gpu=False, hdr=False)

    @property
    def pipeline_depth(self) -> int:
        return 2

    def next_frame(self, timeout: float) -> CapturedFrame | None:
        wait_ns = self._next_ns - time.monotonic_ns()
        static = self._static_after is not None and self._seq >= self._static_after
        if static or wait_ns > timeout * 1e9:
            time.sleep(timeout)
            return None
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
        # Late (a loaded machine): skip the missed ticks as a display would.
        now = time.monotonic_ns()
        self._next_ns = max(self._next_ns + self._interval_ns, now)
        self._seq += 1
        pixels = self._frames[self._seq % len(self._frames)]
        return CapturedFrame(pixels, PixelFormat.BGRA8, self._seq, now, False)

    def try_latest(self) -> CapturedFrame | None:
        return self.next_frame(0.0)

    def set_active(self, active: bool) -> None:
        pass

    def hdr_meta(self) -> HdrMeta | None:
        return None

    def close(self) -> None:
        pass
