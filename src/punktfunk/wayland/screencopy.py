"""Capture one output with wlr-screencopy-unstable-v1 into an shm buffer (pywayland).

One Wayland connection per monitor, used by one thread at a time. One frame request is kept
outstanding; `copy_with_damage` makes the compositor answer only once the output changed, so a
static desktop costs nothing. The buffer always holds the whole output after `ready`. After a
new ring is attached (the host lost what it had) the next request is a plain `copy`, so a
static desktop still gets its first frame. A mode change fails the outstanding frame; the next
request announces the new size, and the buffer is reallocated.
"""

from __future__ import annotations

import mmap
import os
import select
import time
from pathlib import Path

import numpy as np
from pywayland.client import Display
from pywayland.protocol.wayland import WlOutput, WlShm

from .protocol.wlr_screencopy_unstable_v1 import ZwlrScreencopyManagerV1

_FORMATS = (WlShm.format.argb8888.value, WlShm.format.xrgb8888.value)  # BGRA bytes
_Y_INVERT = 1
_MODE_CURRENT = 1
_RETRY_S = 0.05


class ScreencopyError(RuntimeError):
    """The compositor lacks what capture needs, or the output is not there."""


class _Buffer:
    def __init__(self, shm: object, width: int, height: int, stride: int, fmt: int) -> None:
        self.size = (width, height, stride, fmt)
        length = stride * height
        self.fd = os.memfd_create("pf-screencopy", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, length)
        self.map = mmap.mmap(self.fd, length)
        self.pool = shm.create_pool(self.fd, length)  # type: ignore[attr-defined]
        self.buffer = self.pool.create_buffer(0, width, height, stride, fmt)
        self.pixels = np.frombuffer(self.map, np.uint8).reshape(height, stride // 4, 4)[:, :width]

    def close(self) -> None:
        self.buffer.destroy()
        self.pool.destroy()
        del self.pixels
        self.map.close()
        os.close(self.fd)


class ScreencopyOutput:
    """Frames of output `output_name` ("": the first) of the compositor at `socket` (absolute
    path); `size` is what `frame_format` says before the first frame ((0, 0): the output's)."""

    def __init__(self, socket: Path, output_name: str, size: tuple[int, int] = (0, 0)) -> None:
        self.output_name = output_name
        self.output_mode: tuple[int, int, int] | None = None
        self.size = size  # of the next frame (follows the compositor's buffer events)
        self.frames = 0
        self._display = Display(str(socket))
        self._display.connect()
        self._globals: dict[str, list[tuple[int, int]]] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._buffer: _Buffer | None = None
        self._frame: object | None = None
        self._ready_ns: int | None = None
        self._y_invert = False
        self._force_full = True
        self._announced = False
        self._next_try = 0.0
        self._period = 1 / 60
        self._stopped = False
        try:
            self._bind()
        except Exception:
            self.close()
            raise

    def _bind(self) -> None:
        registry = self._display.get_registry()
        registry.dispatcher["global"] = lambda _r, name, iface, version: self._globals.setdefault(
            iface, []
        ).append((name, version))
        self._display.roundtrip()
        for needed in ("wl_shm", "zwlr_screencopy_manager_v1", "wl_output"):
            if needed not in self._globals:
                raise ScreencopyError(f"the compositor offers no {needed}")
        name, version = self._globals["zwlr_screencopy_manager_v1"][0]
        if version < 2:
            raise ScreencopyError("zwlr_screencopy_manager_v1 < 2 has no copy_with_damage")
        self._manager = registry.bind(name, ZwlrScreencopyManagerV1, min(version, 3))
        self._manager_version = min(version, 3)
        self._shm = registry.bind(self._globals["wl_shm"][0][0], WlShm, 1)
        names: dict[object, str] = {}
        modes: dict[object, tuple[int, int, int]] = {}
        outputs = []
        for name, version in self._globals["wl_output"]:
            if version < 4:
                continue  # no name event; wlroots >= 0.15 has version 4
            output = registry.bind(name, WlOutput, 4)
            output.dispatcher["name"] = lambda proxy, text: names.__setitem__(proxy, text)
            output.dispatcher["mode"] = lambda proxy, flags, w, h, mhz: (
                modes.__setitem__(proxy, (w, h, mhz)) if flags & _MODE_CURRENT else None
            )
            outputs.append(output)
        self._display.roundtrip()
        if not self.output_name and outputs:
            self.output_name = names.get(outputs[0], "")
        matches = [o for o in outputs if names.get(o) == self.output_name]
        if not matches:
            raise ScreencopyError(f"no output {self.output_name} (have {sorted(names.values())})")
        self._output = matches[0]
        self.output_mode = modes.get(self._output)  # (width, height, refresh in mHz)
        if self.size == (0, 0) and self.output_mode is not None:
            self.size = self.output_mode[:2]
        self._request()

    def set_refresh(self, hz: int) -> None:
        self._period = 1 / max(1, hz)

    # --- frame requests --------------------------------------------------------------------

    def _request(self) -> None:
        frame = self._manager.capture_output(0, self._output)
        self._frame = frame
        self._announced = False
        offer: list[tuple[int, int, int, int]] = []

        def on_buffer(_f: object, fmt: int, width: int, height: int, stride: int) -> None:
            if fmt in _FORMATS:
                offer.append((width, height, stride, fmt))

        def on_buffer_done(_f: object) -> None:
            self._copy(frame, offer)

        frame.dispatcher["buffer"] = on_buffer
        frame.dispatcher["buffer_done"] = on_buffer_done
        if self._manager_version < 3:
            frame.dispatcher["buffer"] = lambda f, *args: (on_buffer(f, *args), on_buffer_done(f))
        frame.dispatcher["flags"] = lambda _f, flags: setattr(
            self, "_y_invert", bool(flags & _Y_INVERT)
        )
        frame.dispatcher["ready"] = self._on_ready
        frame.dispatcher["failed"] = self._on_failed

    def _copy(self, frame: object, offer: list[tuple[int, int, int, int]]) -> None:
        if frame is not self._frame or self._announced:
            return
        self._announced = True
        if not offer:
            self._on_failed(frame)
            return
        width, height, stride, fmt = offer[0]
        if self._buffer is None or self._buffer.size != (width, height, stride, fmt):
            if self._buffer is not None:
                self._buffer.close()
            self._buffer = _Buffer(self._shm, width, height, stride, fmt)
        self.size = (width, height)
        if self._force_full:
            self._force_full = False
            frame.copy(self._buffer.buffer)  # type: ignore[attr-defined]
        else:
            frame.copy_with_damage(self._buffer.buffer)  # type: ignore[attr-defined]

    def _on_ready(self, frame: object, sec_hi: int, sec_lo: int, nsec: int) -> None:
        if frame is not self._frame:
            return
        stamp = ((sec_hi << 32) | sec_lo) * 1_000_000_000 + nsec
        now = time.monotonic_ns()
        # The compositor's presentation clock is CLOCK_MONOTONIC; anything else: our own.
        self._ready_ns = stamp if 0 < now - stamp < 1_000_000_000 else now
        self._next_try = 0.0

    def _on_failed(self, frame: object) -> None:
        if frame is not self._frame:
            return
        frame.destroy()  # type: ignore[attr-defined]
        self._frame = None
        self._force_full = True
        self._next_try = time.monotonic() + _RETRY_S  # e.g. mid mode change: ask again soon

    # --- what the source calls -------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready_ns is not None

    def _pump(self, timeout: float) -> None:
        self._display.dispatch(block=False)
        self._display.flush()
        if self._stopped:
            return
        fd = self._display.get_fd()
        readable = select.select([fd, self._wake_r], [], [], max(0.0, timeout))[0]
        if fd in readable:
            self._display.dispatch(block=True)

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` s until a frame is ready (or `interrupt()`)."""
        deadline = time.monotonic() + timeout
        while not self._stopped:
            now = time.monotonic()
            if self._frame is None and now >= self._next_try:
                self._request()
            if self._ready_ns is not None and now >= self._next_try:
                # A frame not taken (no ring slot, or the ring has another size) is offered
                # again once a refresh period later, not in a busy loop.
                self._next_try = now + self._period
                return True
            remaining = deadline - now
            if remaining <= 0:
                return False
            pause = min(remaining, max(self._next_try - now, 0.0) or remaining)
            self._pump(pause)
        return False

    def take(self, dst: np.ndarray) -> int | None:
        """Copy the ready frame into `dst` (same size) and ask for the next; its capture time."""
        buffer, stamp = self._buffer, self._ready_ns
        if buffer is None or stamp is None:
            return None
        height, width = dst.shape[:2]
        if (width, height) != buffer.size[:2]:
            return None
        np.copyto(dst, buffer.pixels[::-1] if self._y_invert else buffer.pixels)
        self._ready_ns = None
        self.frames += 1
        if self._frame is not None:
            self._frame.destroy()  # type: ignore[attr-defined]
        self._request()
        self._display.flush()
        return stamp

    def refresh_all(self) -> None:
        """The next frame is a full copy even if nothing changed (a new ring was attached)."""
        self._force_full = True
        if self._ready_ns is None and self._frame is not None:
            self._frame.destroy()  # type: ignore[attr-defined]
            self._frame = None
            self._next_try = 0.0

    def interrupt(self) -> None:
        self._stopped = True
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        self._stopped = True
        if self._frame is not None:
            self._frame.destroy()  # type: ignore[attr-defined]
            self._frame = None
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None
        self._display.disconnect()
        os.close(self._wake_r)
        os.close(self._wake_w)
