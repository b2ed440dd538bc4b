"""Display backends of the driver: each turns an ADD into a monitor that produces frames.

A backend creates a `MonitorSource` per monitor. The publisher drives every source the same way:
`wait()` until a new frame may exist (DAMAGE, or the refresh timer), then `render()` it straight
into a ring slot. `auto` takes xorg-dummy, then xvfb, then pattern, by what is installed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from ....log import event
from ....proto.frame import PixelFormat
from ...base import DisplayBackend, DisplayMode, auto_order, available_backends

_log = logging.getLogger("punktfunk.vdisplay.driver")


class BackendError(RuntimeError):
    """A monitor could not be created; the message says why (it goes back in the ADD reply)."""


class MonitorSource(Protocol):
    """One monitor's pixels, as the publisher sees them."""

    @property
    def display_name(self) -> str: ...

    def frame_format(self) -> tuple[int, int, PixelFormat]:
        """The size and pixel format the next frame will have (follows mode changes)."""

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` s; True when a frame should be rendered now."""

    def render(self, slot: int, dst: np.ndarray) -> int | None:
        """Write the current frame into `dst` (ring slot `slot`, of `frame_format()`) and return
        its capture time (CLOCK_MONOTONIC ns); None if it could not (the slot goes back)."""

    def skip(self) -> None:
        """A frame was due but the ring had no free slot (it is dropped and counted)."""

    def forget_slots(self) -> None:
        """A new ring is attached: whatever was drawn into the old slots is gone."""

    def interrupt(self) -> None:
        """Make a blocked `wait()` return now, and every later one at once (before close)."""

    def close(self) -> None: ...


class Backend(Protocol):
    name: DisplayBackend
    renders_hdr: bool  # FP16 scRGB frames; the others are 8-bit BGRA

    def create(self, monitor_id: int, mode: DisplayMode, hdr: bool) -> MonitorSource: ...


def resolve_backend(choice: str) -> DisplayBackend:
    """The concrete backend for the `display` setting; auto logs what it picked and why."""
    installed = available_backends()
    if choice == "auto":
        gpu, why = (False, "sway not installed")
        if DisplayBackend.WLROOTS in installed:
            from ....wayland.checks import gpu_compositor

            gpu, why = gpu_compositor()
        order = auto_order(gpu)
        for backend in order:
            if backend in installed:
                skipped = [b.value for b in order[: order.index(backend)]]
                event(
                    _log,
                    "vdisplay.backend_auto",
                    backend=backend.value,
                    reason="first installed of " + ",".join(b.value for b in order),
                    not_installed=",".join(skipped) or "none",
                    gpu_compositor=why,
                )
                return backend
    backend = DisplayBackend(choice)
    if not backend.has_driver:
        raise BackendError(f"display={choice} streams an existing X display; it needs no driver")
    if backend not in installed:
        raise BackendError(f"display={choice} is not installed on this machine")
    return backend


def make_backend(
    backend: DisplayBackend,
    auth_dir: Path | None = None,
    state_dir: Path | None = None,
    max_monitors: int = 8,
) -> Backend:
    """The driver's backend; X servers keep their auth cookies in `auth_dir` (see `xauth`),
    sway its sockets under `state_dir` (see `wayland.sway`)."""
    if backend is DisplayBackend.PATTERN:
        from .pattern import PatternBackend

        return PatternBackend()
    if backend is DisplayBackend.XVFB:
        from .xvfb import XvfbBackend

        return XvfbBackend(auth_dir)
    if backend is DisplayBackend.XORG_DUMMY:
        from .xorg_dummy import XorgDummyBackend

        return XorgDummyBackend(auth_dir)
    if backend is DisplayBackend.WLROOTS and state_dir is not None:
        from .wlroots import WlrootsBackend

        return WlrootsBackend(state_dir, max_monitors)
    if backend is DisplayBackend.GAMESCOPE and state_dir is not None:
        from .gamescope import GamescopeBackend

        return GamescopeBackend(state_dir, auth_dir)
    raise BackendError(f"display={backend} has no driver backend")
