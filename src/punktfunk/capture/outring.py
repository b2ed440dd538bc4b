"""The host-owned OUT ring: 4 preallocated frames the capturer writes into in rotation.

Capture never waits for the encoder (the session pipeline keeps only the newest frame in a
latest-wins mailbox), so while the converter reads frame N the capturer may deliver N+1 (into
the mailbox), replace it with N+2, and write N+3: a delivered frame's pixels stay untouched until
three more frames have been delivered, enough for a conversion that takes over two frame
intervals. `repeat_last()` (nothing new on a static desktop) copies the last frame into the next
slot instead of handing out the same slot twice, so a repeat never overwrites a frame in flight.
"""

from __future__ import annotations

import numpy as np

from ..proto.frame import HdrMeta, PixelFormat
from .base import CapturedFrame, OutputFormat

OUT_SLOTS = 4


def _dtype(fmt: PixelFormat) -> type[np.generic]:
    return np.float16 if fmt is PixelFormat.FP16_RGBA else np.uint8


class OutRing:
    def __init__(self, slots: int = OUT_SLOTS) -> None:
        self._slots: list[np.ndarray] = []
        self._count = slots
        self._next = 0
        self._shape: tuple[int, int, PixelFormat] | None = None
        self.last: np.ndarray | None = None

    def slot(self, width: int, height: int, fmt: PixelFormat) -> np.ndarray:
        """The slot the next frame goes into (reallocated, and touched once, only when the
        size or format changes); call `commit()` once it holds a frame."""
        if self._shape != (width, height, fmt):
            # Touch every page now: a first write into fresh pages costs ~10 ms at 1080p.
            self._slots = [np.empty((height, width, 4), _dtype(fmt)) for _ in range(self._count)]
            for arr in self._slots:
                arr.fill(0)
            self._shape = (width, height, fmt)
            self._next = 0
            self.last = None
        return self._slots[self._next]

    def commit(self) -> np.ndarray:
        """The frame in the current slot is complete: rotate and return it."""
        frame = self._slots[self._next]
        self._next = (self._next + 1) % self._count
        self.last = frame
        return frame

    def repeat_last(self) -> np.ndarray | None:
        """The last frame again, copied into a fresh slot; None if there was none yet."""
        if self.last is None or self._shape is None:
            return None
        previous = self.last
        dst = self._slots[self._next]
        np.copyto(dst, previous)
        return self.commit()


class OutRingCapturer:
    """What the capturers that deliver through an OUT ring share: their format and depth, the
    latest-frame shortcut and the static-desktop repeat. A subclass sets `_fmt`, `_depth`,
    `_out` and `_last` (the frame it delivered last) and defines `next_frame`."""

    _fmt: OutputFormat
    _depth: int
    _out: OutRing
    _last: CapturedFrame | None

    @property
    def output_format(self) -> OutputFormat:
        return self._fmt

    @property
    def pipeline_depth(self) -> int:
        return self._depth

    def hdr_meta(self) -> HdrMeta | None:
        return None  # SDR sources; the driver ring says otherwise where it carries HDR

    def next_frame(self, timeout: float) -> CapturedFrame | None:
        raise NotImplementedError

    def try_latest(self) -> CapturedFrame | None:
        return self.next_frame(0.0)

    def repeat_last(self) -> CapturedFrame | None:
        """The last frame again in a fresh OUT slot (nothing new on a static desktop)."""
        last = self._last
        pixels = self._out.repeat_last()
        if pixels is None or last is None:
            return None
        return CapturedFrame(pixels, last.pixel_format, last.seq, last.capture_ns, last.hdr)
