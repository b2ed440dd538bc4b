"""A driver that never publishes: the session streams from the direct X11 fallback in 5 s."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from punktfunk.capture.base import CaptureBackend, CaptureError, OutputFormat
from punktfunk.capture.open import open_capture
from punktfunk.capture.x11 import X11Capturer
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from punktfunk.vdisplay.manager import VirtualDisplayManager
from punktfunk.vdisplay.xlib.core import XDisplay
from punktfunk.vdisplay.xlib.shm import ShmImage
from test_vdisplay_support import make_driver, wait_until

__all__ = ["make_driver"]
SDR = OutputFormat(gpu=False, hdr=False)


@pytest.mark.parametrize("backend", [DisplayBackend.XVFB, DisplayBackend.XORG_DUMMY])
def test_silent_driver_falls_back_to_x11_within_5_seconds(make_driver, backend, caplog) -> None:
    driver = make_driver(backend, "--no-publish")
    manager = VirtualDisplayManager(driver.config(monitor_linger_ms=0), backend)
    lease = manager.acquire(MonitorRequest(DisplayMode(1280, 720, 60), False, "v"))
    image = np.random.default_rng(5).integers(0, 256, (720, 1280, 4), dtype=np.uint8)
    with XDisplay(lease.output.display_name) as app:
        canvas = ShmImage(app, 1280, 720)
        canvas.pixels[...] = image
        canvas.put()
        canvas.close()
    try:
        with caplog.at_level(logging.INFO, logger="punktfunk"):
            started = time.monotonic()
            capturer = open_capture(lease, SDR, CaptureBackend.IDD_PUSH)
            frame = capturer.next_frame(5)
            streaming_after = time.monotonic() - started
        try:
            assert isinstance(capturer, X11Capturer)
            assert frame is not None and streaming_after <= 5.0, streaming_after
            assert np.array_equal(frame.pixels[..., :3], image[..., :3])
            assert "capture.fallback" in caplog.text and "published no frame" in caplog.text
            # Still a live capture of the same display: new drawing arrives.
            with XDisplay(lease.output.display_name) as app:
                canvas = ShmImage(app, 64, 64)
                canvas.pixels[...] = 33
                canvas.put(x=100, y=100)
                canvas.close()
            got: list = []
            assert wait_until(
                lambda: (
                    (f := capturer.next_frame(0.2)) is not None
                    and got.append(f) is None
                    and int(f.pixels[120, 120, 0]) == 33
                ),
                5,
                0,
            )
        finally:
            capturer.close()
    finally:
        lease.close()
        manager.close()


def test_a_silent_pattern_monitor_has_nothing_to_fall_back_to(make_driver) -> None:
    driver = make_driver(DisplayBackend.PATTERN, "--no-publish")
    manager = VirtualDisplayManager(driver.config(monitor_linger_ms=0), DisplayBackend.PATTERN)
    try:
        with (
            manager.acquire(MonitorRequest(DisplayMode(640, 480, 60), False, "v")) as lease,
            pytest.raises(CaptureError, match="no X server to capture directly"),
        ):
            open_capture(lease, SDR, CaptureBackend.IDD_PUSH, first_frame_timeout=0.5)
    finally:
        manager.close()
