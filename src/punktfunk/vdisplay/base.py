"""The VirtualDisplay seam: what the host needs from any virtual-monitor backend.

A session asks for a monitor at the client's exact mode and gets a `VirtualLease`; closing the
lease releases the monitor (it may linger for a reconnect). A lease carries the monitor
generation, so a stale lease can never tear down a newer monitor with the same id.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from ..proto.control import mode_error


class DisplayBackend(StrEnum):
    """Where a session's pixels come from. ATTACH streams an existing X display as is."""

    XORG_DUMMY = "xorg-dummy"
    XVFB = "xvfb"
    PATTERN = "pattern"
    ATTACH = "attach"
    WLROOTS = "wlroots"  # outputs of a private headless sway (Wayland)
    GAMESCOPE = "gamescope"  # a nested gamescope per client (games on its Xwayland)

    @property
    def is_x11(self) -> bool:
        """Monitors that are X servers of their own (captured, resized and typed into as X)."""
        return self not in _NOT_X11

    @property
    def apps_on_x11(self) -> bool:
        """Apps open and take input on an X display: the monitor's own, or gamescope's
        Xwayland (whose picture comes from gamescope, not from that display)."""
        return self.is_x11 or self is DisplayBackend.GAMESCOPE

    @property
    def has_driver(self) -> bool:
        """Backends whose monitors the vdisplay driver process creates and publishes."""
        return self is not DisplayBackend.ATTACH


_NOT_X11 = (DisplayBackend.PATTERN, DisplayBackend.WLROOTS, DisplayBackend.GAMESCOPE)

# auto picks the first of these that this machine can run (`auto_order`).
AUTO_ORDER = (DisplayBackend.XORG_DUMMY, DisplayBackend.XVFB, DisplayBackend.PATTERN)


def auto_order(gpu_compositor: bool) -> tuple[DisplayBackend, ...]:
    """auto's preference: a GPU-rendering compositor (sway on a render node) before the X
    servers, which render on the CPU, where one can start here."""
    return (DisplayBackend.WLROOTS, *AUTO_ORDER) if gpu_compositor else AUTO_ORDER


_DUMMY_DRIVER = Path("/usr/lib/xorg/modules/drivers/dummy_drv.so")
_DEBIAN_GAMESCOPE = "/usr/games/gamescope"  # Debian puts it off the usual PATH


def gamescope_binary() -> str | None:
    found = shutil.which("gamescope")
    if found is None and os.access(_DEBIAN_GAMESCOPE, os.X_OK):
        found = _DEBIAN_GAMESCOPE
    return found


def available_backends() -> frozenset[DisplayBackend]:
    """Display backends whose programs are installed here (pattern and attach always are)."""
    found = {DisplayBackend.PATTERN, DisplayBackend.ATTACH}
    if shutil.which("Xvfb"):
        found.add(DisplayBackend.XVFB)
    if shutil.which("Xorg") and _DUMMY_DRIVER.exists():
        found.add(DisplayBackend.XORG_DUMMY)
    if shutil.which("sway"):
        found.add(DisplayBackend.WLROOTS)
    if shutil.which("Xvfb") and gamescope_binary():
        found.add(DisplayBackend.GAMESCOPE)  # nested in an Xvfb of its own
    return frozenset(found)


@dataclass(frozen=True)
class DisplayMode:
    width: int
    height: int
    refresh_hz: int

    def error(self) -> str | None:
        """Why this mode is out of bounds, or None."""
        return mode_error(self.width, self.height, self.refresh_hz)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.refresh_hz}"


@dataclass(frozen=True)
class MonitorRequest:
    """What a session asks the driver for; `client_id` keeps a client on "its" monitor/EDID."""

    mode: DisplayMode
    hdr: bool
    client_id: str


@runtime_checkable
class VirtualOutput(Protocol):
    """One live virtual monitor."""

    @property
    def monitor_id(self) -> int: ...
    @property
    def generation(self) -> int: ...
    @property
    def display_name(self) -> str:
        """X display name (e.g. ':37'), or a pattern monitor's label."""

    @property
    def mode(self) -> DisplayMode: ...
    @property
    def hdr(self) -> bool: ...
    @property
    def edid(self) -> bytes: ...


@runtime_checkable
class VirtualLease(Protocol):
    """A session's hold on a monitor; `close()` (or leaving the with-block) releases it."""

    @property
    def output(self) -> VirtualOutput: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class LeaseBase:
    """The with-block of a lease (`VirtualLease`): leaving it calls `close()`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@runtime_checkable
class VirtualDisplay(Protocol):
    """A source of virtual monitors (the host-side manager over the driver process)."""

    @property
    def backend(self) -> DisplayBackend: ...
    def acquire(self, request: MonitorRequest) -> VirtualLease: ...
    def set_render_adapter(self, adapter: str) -> None: ...
    def close(self) -> None: ...
