"""wlroots: each monitor is an output of one private headless sway (`wayland/sway.py`).

sway starts with the first ADD, on the driver's ops thread (so it dies with the driver, even
on SIGKILL), and is restarted by the next ADD if it died. Each output gets the client's exact
custom mode and a workspace of its own (`pf-<id>`), focused when created, so apps launched for
the client open there. Frames come from wlr-screencopy (`wayland/screencopy.py`): damage
driven, the whole output copied into the ring slot.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

import numpy as np

from ....log import event
from ....proto.frame import PixelFormat
from ....wayland.ipc import SwayIpcError
from ....wayland.screencopy import ScreencopyError, ScreencopyOutput
from ....wayland.sway import Sway, SwayError, SwayOutput
from ...base import DisplayBackend, DisplayMode
from . import BackendError

_log = logging.getLogger("punktfunk.vdisplay.driver")


class WlrootsSource:
    """One sway output, read with screencopy."""

    def __init__(self, backend: WlrootsBackend, output: SwayOutput, mode: DisplayMode) -> None:
        self.backend = backend
        self.output = output
        self._closed = False
        self._gone: str | None = None  # why capture stopped (the compositor died)
        self._idle = threading.Event()
        sway = backend.sway
        assert sway is not None
        self.sway = sway  # the compositor this output belongs to (a restarted one is another)
        try:
            self.capture = ScreencopyOutput(
                sway.wayland_socket, output.name, (mode.width, mode.height)
            )
        except (ScreencopyError, RuntimeError, OSError) as exc:
            backend.release(sway, output)
            raise BackendError(f"screencopy of {output.name}: {exc}") from None
        self.capture.set_refresh(mode.refresh_hz)

    @property
    def display_name(self) -> str:
        return self.output.name

    def frame_format(self) -> tuple[int, int, PixelFormat]:
        width, height = self.capture.size
        return width, height, PixelFormat.BGRA8

    def wait(self, timeout: float) -> bool:
        if self._gone is None:
            try:
                return self.capture.wait(timeout)
            except (RuntimeError, OSError) as exc:  # libwayland: the compositor went away
                self._gone = str(exc)
                event(
                    _log,
                    "vdisplay.output_lost",
                    logging.ERROR,
                    output=self.output.name,
                    reason=self._gone,
                    sway_exit=self.sway.process.poll(),
                )
        self._idle.wait(timeout)
        return False

    def render(self, slot: int, dst: np.ndarray) -> int | None:
        return self.capture.take(dst)

    def skip(self) -> None:
        """The ready frame stays; `wait` offers it again a refresh period later."""

    def forget_slots(self) -> None:
        self.capture.refresh_all()

    def interrupt(self) -> None:
        self._idle.set()
        self.capture.interrupt()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(RuntimeError, OSError):  # its compositor may be gone
                self.capture.close()
            self.backend.release(self.sway, self.output)


class WlrootsBackend:
    name = DisplayBackend.WLROOTS
    renders_hdr = False

    def __init__(self, state_dir: Path, max_monitors: int = 8) -> None:
        self.state_dir = state_dir
        self.max_monitors = max_monitors  # a seat for each possible monitor id
        self.sway: Sway | None = None

    def _running(self) -> Sway:
        if self.sway is not None and not self.sway.alive:
            event(
                _log,
                "vdisplay.sway_gone",
                logging.ERROR,
                exit_status=self.sway.process.poll(),
                log_tail=self.sway.log_tail(3),
                action="restarting",
            )
            self.sway.stop()
            self.sway = None
        if self.sway is None:
            try:
                self.sway = Sway(self.state_dir, seats=self.max_monitors)
            except (SwayError, OSError) as exc:
                raise BackendError(str(exc)) from None
            event(
                _log,
                "vdisplay.sway_started",
                pid=self.sway.process.pid,
                socket=self.sway.wayland_socket,
            )
        return self.sway

    def create(self, monitor_id: int, mode: DisplayMode, hdr: bool) -> WlrootsSource:
        sway = self._running()
        try:
            output = sway.create_output(monitor_id, mode)
        except (SwayError, SwayIpcError) as exc:
            raise BackendError(str(exc)) from None
        return WlrootsSource(self, output, mode)

    def release(self, sway: Sway, output: SwayOutput) -> None:
        if sway.alive:
            try:
                sway.remove_output(output)
            except (SwayError, SwayIpcError) as exc:
                event(_log, "vdisplay.output_remove_failed", logging.WARNING, reason=str(exc))
