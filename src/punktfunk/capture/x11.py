"""Direct X11 capture: MIT-SHM grabs of an X display, driven by DAMAGE.

The fallback when the driver's ring stays silent, and the only path for `attach:` displays
(the user's own desktop). A copy is made only when DAMAGE reports a change (at most once per
refresh period); the first frame goes out at once. Mode changes arrive as ConfigureNotify on
the root window and the grab follows at the new size immediately. A vanished X server ends
the capture with `CaptureLost`.
"""

from __future__ import annotations

import logging
import time

from ..log import event
from ..proto.frame import PixelFormat
from ..vdisplay.xlib.core import XDisplay, XError
from ..vdisplay.xlib.screen import ScreenWatch
from ..vdisplay.xlib.shm import shm_available
from .base import CapturedFrame, CaptureError, OutputFormat
from .outring import OutRing, OutRingCapturer
from .recovery import CaptureLost

_log = logging.getLogger("punktfunk.capture")


class X11Capturer(OutRingCapturer):
    def __init__(
        self,
        display_name: str,
        fmt: OutputFormat,
        *,
        pipeline_depth: int = 2,
        max_rate_hz: float = 60.0,
    ) -> None:
        if fmt.hdr:
            raise CaptureError(f"X display {display_name} is 8-bit: it cannot deliver HDR")
        self._fmt = fmt
        self._depth = pipeline_depth
        self.display_name = display_name
        try:
            self._display = XDisplay(display_name)
        except XError as exc:
            raise CaptureError(str(exc)) from None
        if not shm_available(self._display):
            self._display.close()
            raise CaptureError(f"X display {display_name} has no MIT-SHM extension")
        try:
            self._watch = ScreenWatch(self._display, max_rate_hz)
        except XError as exc:
            self._display.close()
            raise CaptureError(str(exc)) from None
        self._out = OutRing()
        self._active = True
        self._seq = 0
        self._last: CapturedFrame | None = None
        width, height = self._watch.size
        event(
            _log,
            "capture.opened",
            backend="x11",
            display=display_name,
            mode=f"{width}x{height}",
            damage=self._watch.damage_missing or "yes",
            max_rate_hz=max_rate_hz,
        )

    def set_active(self, active: bool) -> None:
        if active and not self._active:
            self._watch.mark_dirty()  # a fresh frame at once when resumed
        self._active = active

    def next_frame(self, timeout: float) -> CapturedFrame | None:
        deadline = time.monotonic() + timeout
        while True:
            if not self._watch.alive:
                raise CaptureLost(f"the X display {self.display_name} is gone")
            remaining = deadline - time.monotonic()
            if not self._active:
                time.sleep(max(0.0, remaining))
                return None
            if self._watch.wait(max(0.0, remaining)):
                width, height = self._watch.size
                dst = self._out.slot(width, height, PixelFormat.BGRA8)
                capture_ns = self._watch.grab(dst)
                if capture_ns is not None:
                    self._seq += 1
                    self._last = CapturedFrame(
                        self._out.commit(), PixelFormat.BGRA8, self._seq, capture_ns, False
                    )
                    return self._last
            if time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        self._watch.close()
        self._display.close()
