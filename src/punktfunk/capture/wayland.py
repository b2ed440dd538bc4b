"""Direct Wayland capture of an output of a running wlroots compositor (`attach:wayland`).

wlr-screencopy with damage (`wayland/screencopy.py`) into the OUT ring: a frame only when the
output changed, at most once per refresh period, the first at once. A mode change shows up as
a frame of the new size. A compositor that goes away ends the capture with `CaptureLost`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from ..log import event
from ..proto.frame import PixelFormat
from ..wayland.screencopy import ScreencopyError, ScreencopyOutput
from .base import CapturedFrame, CaptureError, OutputFormat
from .outring import OutRing, OutRingCapturer
from .recovery import CaptureLost

_log = logging.getLogger("punktfunk.capture")


class WaylandCapturer(OutRingCapturer):
    def __init__(
        self,
        socket: Path,
        output_name: str,
        fmt: OutputFormat,
        *,
        pipeline_depth: int = 2,
        refresh_hz: int = 60,
    ) -> None:
        if fmt.hdr:
            raise CaptureError(f"Wayland output {output_name}: screencopy here is 8-bit only")
        self._fmt = fmt
        self._depth = pipeline_depth
        self.output_name = output_name
        try:
            self._capture = ScreencopyOutput(socket, output_name)
        except (ScreencopyError, RuntimeError, OSError) as exc:
            raise CaptureError(f"Wayland output {output_name}: {exc}") from None
        self._capture.set_refresh(refresh_hz)
        self._out = OutRing()
        self._active = True
        self._seq = 0
        self._last: CapturedFrame | None = None
        width, height = self._capture.size
        event(
            _log,
            "capture.opened",
            backend="wlr-screencopy",
            display=output_name,
            mode=f"{width}x{height}",
        )

    def set_active(self, active: bool) -> None:
        if active and not self._active:
            self._capture.refresh_all()  # a fresh frame at once when resumed
        self._active = active

    def next_frame(self, timeout: float) -> CapturedFrame | None:
        deadline = time.monotonic() + timeout
        remaining = max(0.0, timeout)
        if not self._active:
            time.sleep(remaining)
            return None
        try:
            while self._capture.wait(remaining):
                width, height = self._capture.size
                dst = self._out.slot(width, height, PixelFormat.BGRA8)
                capture_ns = self._capture.take(dst)
                if capture_ns is not None:
                    self._seq += 1
                    self._last = CapturedFrame(
                        self._out.commit(), PixelFormat.BGRA8, self._seq, capture_ns, False
                    )
                    return self._last
                remaining = max(0.0, deadline - time.monotonic())
        except (RuntimeError, OSError) as exc:  # libwayland: the compositor went away
            raise CaptureLost(
                f"the Wayland compositor of {self.output_name} is gone ({exc})"
            ) from None
        return None

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):  # the compositor may already be gone
            self._capture.close()
