"""DAMAGE: the X server tells us when something was drawn, so we copy only then.

Level NonEmpty sends one event when the damaged region becomes non-empty; `rearm()` (a
DamageSubtract that empties the region) must run *before* the copy, so drawing that lands during
the copy raises a new event and the next copy picks it up (no lost, never a torn final frame).
libXdamage is optional: without it `DamageUnavailable` is raised and callers fall back to a
timer at the refresh rate with MIT-SHM (whose GetImage never tears).
"""

from __future__ import annotations

import ctypes

from .core import XID, XDisplay, XEvent, c_display_p, load

REPORT_NON_EMPTY = 3
DAMAGE_NOTIFY = 0


class DamageUnavailable(RuntimeError):
    """libXdamage or the server's DAMAGE extension is missing."""


try:
    _xd: ctypes.CDLL | None = load("libXdamage.so.1")
except OSError:
    _xd = None
else:
    _int_p = ctypes.POINTER(ctypes.c_int)
    _xd.XDamageQueryExtension.argtypes = (c_display_p, _int_p, _int_p)
    _xd.XDamageCreate.restype = XID
    _xd.XDamageCreate.argtypes = (c_display_p, XID, ctypes.c_int)
    _xd.XDamageDestroy.argtypes = (c_display_p, XID)
    _xd.XDamageSubtract.argtypes = (c_display_p, XID, XID, XID)


def why_unavailable() -> str | None:
    """None when DAMAGE can be used from this process, else the reason."""
    return (
        None
        if _xd is not None
        else "libXdamage.so.1 is not installed (apt-get install libxdamage1)"
    )


class Damage:
    """A NonEmpty damage object on the root window of `display`."""

    def __init__(self, display: XDisplay) -> None:
        if _xd is None:
            raise DamageUnavailable(why_unavailable())
        event_base, error_base = ctypes.c_int(), ctypes.c_int()
        if not _xd.XDamageQueryExtension(
            display.ptr, ctypes.byref(event_base), ctypes.byref(error_base)
        ):
            raise DamageUnavailable(f"{display.name} has no DAMAGE extension")
        self.display = display
        self._notify_type = event_base.value + DAMAGE_NOTIFY
        self._lib = _xd
        self.handle = int(_xd.XDamageCreate(display.ptr, display.root, REPORT_NON_EMPTY))
        display.sync("DamageCreate")

    def is_notify(self, event: XEvent) -> bool:
        return event.type == self._notify_type

    def rearm(self) -> None:
        """Empty the damaged region so the next drawing sends a new event."""
        self._lib.XDamageSubtract(self.display.ptr, self.handle, 0, 0)
        self.display.flush()

    def close(self) -> None:
        if self.handle and self.display.alive:
            self._lib.XDamageDestroy(self.display.ptr, self.handle)
            self.display.flush()
        self.handle = 0
