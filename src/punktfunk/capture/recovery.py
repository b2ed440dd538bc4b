"""Follow the display's real mode during a session (a game switched resolution).

Every 250 ms the capturer asks the display for its actual mode (RandR size; HDR from the
monitor). A difference from the ring's descriptor recreates the ring at the new mode and the
driver re-attaches: frames continue at the new size in the same session. If no frame at the
new mode has arrived 3 s after the change was first seen, the session ends with a reason
(`CaptureLost`) so the client reconnects cleanly instead of watching a frozen picture.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from ..log import event
from .base import CaptureError

_log = logging.getLogger("punktfunk.capture")
POLL_S = 0.25
GIVE_UP_S = 3.0

Mode = tuple[int, int, bool]  # width, height, hdr


class CaptureLost(CaptureError):
    """Capture cannot continue; the session should end with `str(exc)` as its reason."""


class ModeProbe(Protocol):
    def current(self) -> Mode | None:
        """The display's mode now, or None if it cannot be read at this moment."""

    def close(self) -> None: ...


class FixedMode:
    """A display whose mode cannot change (the pattern monitor)."""

    def __init__(self, mode: Mode) -> None:
        self._mode = mode

    def current(self) -> Mode | None:
        return self._mode

    def close(self) -> None:
        pass


class XMode:
    """Reads the screen size of an X display over a connection of its own."""

    def __init__(self, display_name: str) -> None:
        # Imported here: the pattern display must work where libX11 is not installed.
        from ..vdisplay.xlib.core import XDisplay, XError

        self._error = XError
        try:
            self._display = XDisplay(display_name)
        except XError as exc:
            raise CaptureError(str(exc)) from None
        self.name = display_name

    def current(self) -> Mode | None:
        if not self._display.alive:
            raise CaptureLost(f"the X display {self.name} is gone")
        try:
            width, height = self._display.root_size()
        except self._error:
            return None
        return width, height, False

    def close(self) -> None:
        self._display.close()


class Recovery:
    """Decides when to recreate the ring and when to give up; owns no resources but the probe."""

    def __init__(self, probe: ModeProbe, mode: Mode, recreate: Callable[[Mode], None]) -> None:
        self.probe = probe
        self.mode = mode  # what the ring is built for
        self._recreate = recreate
        self._next_poll = time.monotonic() + POLL_S
        self.recovering_since: float | None = None
        self.target = mode  # the display's real mode, once a change is seen

    def poll(self) -> None:
        """At most every 250 ms: compare the real mode, recreate on a change, give up after 3 s.
        Raises CaptureLost."""
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + POLL_S
        real = self.probe.current()
        if real is not None and real != self.mode:
            if self.recovering_since is None:
                self.recovering_since = now
            self.target = real
            event(
                _log,
                "capture.mode_change",
                old=_fmt(self.mode),
                new=_fmt(real),
                action="recreating the ring",
            )
            try:
                self._recreate(real)
                self.mode = real
            except CaptureLost:
                raise
            except Exception as exc:
                event(
                    _log,
                    "capture.recreate_failed",
                    logging.WARNING,
                    mode=_fmt(real),
                    reason=f"{type(exc).__name__}: {exc}",
                )
        if self.recovering_since is not None and now - self.recovering_since > GIVE_UP_S:
            raise CaptureLost(
                f"the display changed to {_fmt(self.target)} and no frame arrived at that mode "
                f"for {GIVE_UP_S:.0f} s; ending the session so the client reconnects"
            )

    def frame_arrived(self, mode: Mode) -> None:
        if mode == self.mode and self.recovering_since is not None:
            event(
                _log,
                "capture.mode_followed",
                mode=_fmt(mode),
                after_ms=round((time.monotonic() - self.recovering_since) * 1000),
            )
            self.recovering_since = None


def _fmt(mode: Mode) -> str:
    return f"{mode[0]}x{mode[1]}{' hdr' if mode[2] else ''}"
