"""A client of the X display changes its mode mid-session; capture follows in the same session,
or ends it with a clear reason when it cannot."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest

from punktfunk.capture.base import CaptureBackend, OutputFormat
from punktfunk.capture.idd_push import IddPushCapturer
from punktfunk.capture.open import open_capture
from punktfunk.capture.recovery import GIVE_UP_S, CaptureLost, FixedMode, Recovery
from punktfunk.vdisplay import xauth
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from punktfunk.vdisplay.manager import VirtualDisplayManager
from punktfunk.vdisplay.timing import cvt_rb2
from punktfunk.vdisplay.xlib import randr
from punktfunk.vdisplay.xlib.core import XDisplay
from test_vdisplay_support import make_driver

__all__ = ["make_driver"]
SDR = OutputFormat(gpu=False, hdr=False)


def _xrandr_mode(display: str, width: int, height: int) -> None:
    """What a game on xorg-dummy does: a brand-new mode through the xrandr command."""
    t = cvt_rb2(width, height, 60)
    name = f"game_{width}x{height}"
    env = dict(os.environ, DISPLAY=display, **xauth.environment(display))  # as a session app
    timing = [
        f"{t.pixel_clock_hz / 1e6:.2f}",
        *map(
            str,
            (
                t.width,
                t.h_sync_start,
                t.h_sync_end,
                t.h_total,
                t.height,
                t.v_sync_start,
                t.v_sync_end,
                t.v_total,
            ),
        ),
        "+hsync",
        "-vsync",
    ]
    for argv in (
        ["xrandr", "--newmode", name, *timing],
        ["xrandr", "--addmode", "DUMMY0", name],
        ["xrandr", "--output", "DUMMY0", "--mode", name],
    ):
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=30)


def _randr_request(display: str, width: int, height: int) -> None:
    """What a game on Xvfb does: a RandR request for one of the offered modes."""
    with XDisplay(display) as game:
        offered = {(m.width, m.height) for m in randr.output_modes(game)}
        assert {(1280, 720), (1024, 768), (1920, 1080), (3840, 2160)} <= offered
        randr.set_mode(game, width, height)


@pytest.mark.parametrize(
    ("backend", "switch", "new_size"),
    [
        (DisplayBackend.XORG_DUMMY, _xrandr_mode, (1152, 648)),
        (DisplayBackend.XVFB, _randr_request, (1024, 768)),
    ],
)
def test_mode_change_mid_session_delivers_the_new_size_within_1s(
    make_driver, backend, switch, new_size
) -> None:
    driver = make_driver(backend)
    manager = VirtualDisplayManager(driver.config(monitor_linger_ms=0), backend)
    lease = manager.acquire(MonitorRequest(DisplayMode(1280, 720, 60), False, "gamer"))
    capturer = open_capture(lease, SDR, CaptureBackend.IDD_PUSH)
    try:
        assert isinstance(capturer, IddPushCapturer)
        assert lease.environment()["DISPLAY"] == lease.output.display_name  # where apps run
        first = capturer.next_frame(5)
        assert first is not None and first.pixels.shape[:2] == (720, 1280)
        switch(lease.output.display_name, *new_size)
        changed = time.monotonic()
        width, height = new_size
        arrived = None
        while time.monotonic() - changed < 1.0:
            frame = capturer.next_frame(max(0.0, 1.0 - (time.monotonic() - changed)))
            if frame is not None and frame.pixels.shape[:2] == (height, width):
                arrived = time.monotonic() - changed
                break
        assert arrived is not None and arrived <= 1.0, "no frame at the new mode within 1 s"
        assert lease.current  # the same session, no reconnect
        with XDisplay(lease.output.display_name) as probe:
            current = randr.current_mode(probe)
            assert (current.width, current.height) == (width, height)
        # And it goes on: back to the session's original mode.
        if backend is DisplayBackend.XVFB:
            _randr_request(lease.output.display_name, 1280, 720)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                frame = capturer.next_frame(0.2)
                if frame is not None and frame.pixels.shape[:2] == (720, 1280):
                    break
            else:
                raise AssertionError("did not follow the switch back")
    finally:
        capturer.close()
        lease.close()
        manager.close()


def test_an_unfollowable_change_ends_the_session_after_3s() -> None:
    attempts: list[tuple[int, int, bool]] = []

    def recreate(mode):
        attempts.append(mode)
        raise RuntimeError("the driver cannot re-attach")

    probe = FixedMode((1024, 768, False))
    recovery = Recovery(probe, (1280, 720, False), recreate)
    started = time.monotonic()
    with pytest.raises(CaptureLost, match="no frame arrived at that mode for 3 s") as err:
        while time.monotonic() - started < GIVE_UP_S + 2:
            recovery.poll()
            time.sleep(0.05)
    ended = time.monotonic() - started
    assert GIVE_UP_S <= ended <= GIVE_UP_S + 1.0
    assert "1024x768" in str(err.value) and "reconnects" in str(err.value)
    assert len(attempts) >= 10  # retried at every 250 ms poll


def test_a_followed_change_clears_the_recovery_clock() -> None:
    recovery = Recovery(FixedMode((1024, 768, False)), (1280, 720, False), lambda mode: None)
    time.sleep(0.3)
    recovery.poll()
    assert recovery.mode == (1024, 768, False) and recovery.recovering_since is not None
    recovery.frame_arrived((1024, 768, False))
    assert recovery.recovering_since is None


def test_a_vanished_x_server_ends_the_session_with_a_reason(make_driver) -> None:
    driver = make_driver(DisplayBackend.XVFB)
    manager = VirtualDisplayManager(driver.config(monitor_linger_ms=0), DisplayBackend.XVFB)
    lease = manager.acquire(MonitorRequest(DisplayMode(1280, 720, 60), False, "v"))
    capturer = open_capture(lease, SDR, CaptureBackend.IDD_PUSH)
    try:
        assert capturer.next_frame(5) is not None
        for pid in driver.x_servers():
            os.kill(pid, 9)
        with pytest.raises(CaptureLost, match=f"X display {lease.output.display_name} is gone"):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                capturer.next_frame(0.3)
    finally:
        capturer.close()
        lease.close()
        manager.close()
    assert np is not None
