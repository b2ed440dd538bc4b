"""Watch an X screen: when to copy it (DAMAGE, paced to the refresh rate), at what size (RandR
changes arrive as ConfigureNotify on the root), and an MIT-SHM grab sized to match.

Used by the driver's X backends (which publish into the ring) and by the host's direct X11
capturer (the fallback, and `attach:` displays). Without DAMAGE (libXdamage missing) it falls
back to a timer at the refresh rate, which is safe with MIT-SHM: GetImage never tears.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from .core import STRUCTURE_NOTIFY_MASK, XDisplay, configure_size
from .damage import Damage, DamageUnavailable
from .shm import ShmImage


class ScreenWatch:
    """Damage/size tracking on one connection. Not thread-safe: one thread drives it."""

    def __init__(self, display: XDisplay, max_rate_hz: float) -> None:
        self.display = display
        self.period = 1.0 / max_rate_hz
        display.select_root_input(STRUCTURE_NOTIFY_MASK)
        self.damage: Damage | None
        self.damage_missing: str | None = None
        try:
            self.damage = Damage(display)
        except DamageUnavailable as exc:
            self.damage, self.damage_missing = None, str(exc)
        self.size = display.root_size()
        self._dirty = True  # the first frame goes out at once, even on a static screen
        self._next = 0.0
        self._shm: ShmImage | None = None
        self.interrupted = threading.Event()
        self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    def interrupt(self) -> None:
        """Make the current and every later `wait()` return False at once (another thread)."""
        self.interrupted.set()
        os.eventfd_write(self._wake_fd, 1)

    @property
    def alive(self) -> bool:
        return self.display.alive

    def _drain(self) -> None:
        for event in self.display.events():
            if self.damage is not None and self.damage.is_notify(event):
                self._dirty = True
            elif (size := configure_size(event)) is not None and size != self.size:
                self.size = size
                self._dirty = True

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` s; True when a frame is due (something changed, and at most
        one frame per refresh period)."""
        deadline = time.monotonic() + timeout
        while self.display.alive and not self.interrupted.is_set():
            self._drain()
            now = time.monotonic()
            due = self._dirty or self.damage is None
            if due and now >= self._next:
                self._next = max(self._next + self.period, now)
                return True
            if now >= deadline:
                return False
            until = min(deadline, self._next) if due else deadline
            self.display.wait(until - now, self._wake_fd)
        return False

    def take(self) -> int:
        """Start a copy: re-arm DAMAGE first (so drawing during the copy raises a new event),
        then return the capture time."""
        self._dirty = False
        if self.damage is not None:
            self.damage.rearm()
        return time.monotonic_ns()

    def mark_dirty(self) -> None:
        self._dirty = True

    def grab(self, dst: np.ndarray) -> int | None:
        """Copy the screen into `dst` (H, W, 4) with MIT-SHM; the capture time, or None if the
        screen no longer has `dst`'s size or the server failed."""
        height, width = dst.shape[:2]
        if (width, height) != self.size:
            return None
        if self._shm is None or (self._shm.width, self._shm.height) != self.size:
            self._close_shm()
            self._shm = ShmImage(self.display, width, height)
        ns = self.take()
        if not self._shm.grab():
            self._dirty = True
            return None
        np.copyto(dst, self._shm.pixels)
        return ns

    def _close_shm(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm = None

    def close(self) -> None:
        self._close_shm()
        if self.damage is not None:
            self.damage.close()
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1
