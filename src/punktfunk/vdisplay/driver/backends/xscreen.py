"""What the two X backends share: a private X server per monitor, put at the client's mode
through RandR from the driver's own long-lived connection, watched for DAMAGE and size changes.

The connection stays open for the monitor's lifetime: Xvfb forgets modes created by a client
when that client disconnects (and resets when its last client goes), so the modes a game may
switch to must belong to a connection that outlives the game.
"""

from __future__ import annotations

import logging

import numpy as np

from ....log import event
from ....proto.frame import PixelFormat
from ...base import DisplayMode
from ...timing import cvt_rb2, mode_name
from ...xlib import randr
from ...xlib.core import XDisplay, XError
from ...xlib.screen import ScreenWatch
from ...xserver import XServer
from . import BackendError

_log = logging.getLogger("punktfunk.vdisplay.driver")

# Offered next to the client's own mode, so a game finds the usual list to switch between.
COMMON_SIZES = (
    (640, 360),  # Moonlight's 360p and 480p
    (640, 480),
    (854, 480),
    (800, 600),
    (1024, 768),
    (1280, 720),
    (1280, 800),
    (1280, 1024),
    (1366, 768),
    (1440, 900),
    (1600, 900),
    (1680, 1050),
    (1920, 1080),
    (1920, 1200),
    (2560, 1080),
    (2560, 1440),
    (3440, 1440),
    (3840, 2160),
)


def offer_modes(display: XDisplay, mode: DisplayMode, max_size: tuple[int, int]) -> None:
    """Add the client's mode and the common sizes (at its refresh) that fit, then switch to it."""
    sizes = [(mode.width, mode.height)]
    sizes += [
        s for s in COMMON_SIZES if s != sizes[0] and s[0] <= max_size[0] and s[1] <= max_size[1]
    ]
    for width, height in sizes:
        timing = cvt_rb2(width, height, mode.refresh_hz)
        randr.add_mode(display, timing, mode_name(width, height, mode.refresh_hz))
    randr.set_mode(display, mode.width, mode.height, mode.refresh_hz)


class XScreenSource:
    """A monitor that is an X server; subclasses may read pixels their own way (`_read`)."""

    max_size: tuple[int, int] = (32767, 32767)

    def __init__(self, server: XServer, mode: DisplayMode) -> None:
        self.server = server
        self._dead_logged = False
        self._closed = False
        display = None
        try:
            display = XDisplay(server.display)
            offer_modes(display, mode, self.max_size)
            watch = ScreenWatch(display, mode.refresh_hz)
        except (XError, OSError) as exc:
            if display is not None:
                display.close()
            server.stop()
            raise BackendError(f"{server.kind} {server.display}: {exc}") from None
        self.display, self.watch = display, watch
        if self.watch.damage_missing:
            event(
                _log,
                "vdisplay.damage_unavailable",
                logging.WARNING,
                display=server.display,
                reason=self.watch.damage_missing,
                fallback="copy at the refresh rate",
            )

    @property
    def display_name(self) -> str:
        return self.server.display

    def frame_format(self) -> tuple[int, int, PixelFormat]:
        width, height = self.watch.size
        return width, height, PixelFormat.BGRA8

    def wait(self, timeout: float) -> bool:
        if self.watch.alive:
            return self.watch.wait(timeout)
        if not self._dead_logged:
            self._dead_logged = True
            event(
                _log,
                "vdisplay.xserver_gone",
                logging.ERROR,
                display=self.server.display,
                exit_status=self.server.process.poll(),
                log_tail=self.server.log_tail(3),
            )
        self.watch.interrupted.wait(timeout)
        return False

    def render(self, slot: int, dst: np.ndarray) -> int | None:
        return self._read(dst)

    def _read(self, dst: np.ndarray) -> int | None:
        return self.watch.grab(dst)

    def skip(self) -> None:
        self.watch.mark_dirty()

    def forget_slots(self) -> None:
        self.skip()

    def interrupt(self) -> None:
        self.watch.interrupt()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.watch.close()
            self.display.close()
            self.server.stop()
