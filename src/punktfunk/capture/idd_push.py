"""IDD-push capture: read the frames the driver publishes into a ring this host created.

Open creates the ring at the monitor's mode, attaches it (with an eventfd the driver signals
per frame) and waits at most ~4 s for the first frame; if none comes it raises `NoFirstFrame`
carrying the lease, and the opener falls back to direct X11 capture on the same display. Each
frame is copied from its ring slot into the host-owned OUT ring (so the slot goes straight back
to the driver) after the generation check. `Recovery` follows mode changes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import threading
import time

from ..log import event
from ..proto.frame import GENERATION_BITS, HDR10_DEFAULT, HdrMeta, PixelFormat, shm_name
from ..vdisplay.base import DisplayBackend
from ..vdisplay.client import DriverError
from ..vdisplay.manager import MonitorLease
from ..vdisplay.ring import FrameRing, RingError, RingReader
from .base import CapturedFrame, CaptureError, OutputFormat
from .outring import OutRing, OutRingCapturer
from .recovery import FixedMode, Mode, ModeProbe, Recovery, XMode

_log = logging.getLogger("punktfunk.capture")
FIRST_FRAME_TIMEOUT_S = 3.5
_GEN_MOD = 1 << GENERATION_BITS
_generations = itertools.count(1)
_gen_lock = threading.Lock()


class NoFirstFrame(CaptureError):
    """The driver published nothing in time; `lease` is handed back for the fallback."""

    def __init__(self, reason: str, lease: MonitorLease) -> None:
        super().__init__(reason)
        self.lease = lease


def _mode_probe(lease: MonitorLease, mode: Mode) -> ModeProbe:
    output = lease.output
    if output.backend.is_x11:
        return XMode(output.display_name)
    if output.backend is DisplayBackend.WLROOTS:
        from .wayland_mode import SwayMode

        return SwayMode(lease.environment().get("XDG_RUNTIME_DIR", ""), output.display_name)
    return FixedMode(mode)


def _next_generation() -> int:
    """Ring generations are unique per host process (0 is "nothing published")."""
    with _gen_lock:
        while True:
            gen = next(_generations) % _GEN_MOD
            if gen:
                return gen


class IddPushCapturer(OutRingCapturer):
    def __init__(
        self,
        lease: MonitorLease,
        fmt: OutputFormat,
        *,
        pipeline_depth: int = 2,
        first_frame_timeout: float = FIRST_FRAME_TIMEOUT_S,
    ) -> None:
        output = lease.output
        if fmt.hdr != output.hdr:
            raise CaptureError(
                f"the session wants {'HDR' if fmt.hdr else 'SDR'} but monitor "
                f"{output.monitor_id} renders {'HDR' if output.hdr else 'SDR'}"
            )
        self.lease = lease
        self._fmt = fmt
        self._depth = pipeline_depth
        self._out = OutRing()
        self._active = True
        self._last: CapturedFrame | None = None
        self._pending: CapturedFrame | None = None
        self._ring: FrameRing | None = None
        self._reader: RingReader | None = None
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        probe: ModeProbe
        mode: Mode = (output.mode.width, output.mode.height, output.hdr)
        try:
            probe = _mode_probe(lease, mode)
            self.recovery = Recovery(probe, probe.current() or mode, self._recreate)
            self._recreate(self.recovery.mode)
        except (CaptureError, DriverError, RingError, OSError) as exc:
            self.close()
            raise NoFirstFrame(
                f"cannot attach a ring to monitor {output.monitor_id}: {exc}", lease
            ) from None
        started = time.monotonic()
        first = self.next_frame(first_frame_timeout)
        if first is None:
            self.close()
            raise NoFirstFrame(
                f"monitor {output.monitor_id} ({output.display_name}) published no frame in "
                f"{first_frame_timeout:.1f} s",
                lease,
            )
        self._pending = first
        event(
            _log,
            "capture.opened",
            backend="idd-push",
            display=output.display_name,
            mode=f"{first.width}x{first.height}",
            format=first.pixel_format.name,
            first_frame_ms=round((time.monotonic() - started) * 1000),
        )

    # --- ring lifecycle --------------------------------------------------------------------

    def _recreate(self, mode: Mode) -> None:
        """A ring at `mode`, attached; the old one is closed (unlinked) once the driver has
        the new one."""
        width, height, hdr = mode
        fmt = PixelFormat.FP16_RGBA if hdr else PixelFormat.BGRA8
        monitor_id = self.lease.output.monitor_id
        while True:
            generation = _next_generation()
            try:
                ring = FrameRing.create(
                    shm_name(monitor_id, generation),
                    width,
                    height,
                    fmt,
                    generation,
                    hdr_meta=HDR10_DEFAULT if hdr else None,
                )
                break
            except RingError:
                continue  # a name left by another process: take the next generation
        try:
            self.lease.attach_ring(ring.name, self._efd)
        except BaseException:
            ring.close()
            raise
        old, self._ring, self._reader = self._ring, ring, RingReader(ring)
        if old is not None:
            old.close()

    # --- Capturer --------------------------------------------------------------------------

    def hdr_meta(self) -> HdrMeta | None:
        ring = self._ring
        return HdrMeta.from_struct(ring.header.hdr_meta) if ring is not None and ring.hdr else None

    def set_active(self, active: bool) -> None:
        self._active = active

    def _take(self) -> CapturedFrame | None:
        reader = self._reader
        if reader is None:
            return None
        taken = reader.take_latest()
        if taken is None:
            return None
        ring = reader.ring
        try:
            dst = self._out.slot(ring.width, ring.height, ring.pixel_format)
            dst[...] = taken.pixels
        finally:
            reader.release(taken)
        self.recovery.frame_arrived((ring.width, ring.height, ring.hdr))
        self._last = CapturedFrame(
            self._out.commit(), ring.pixel_format, taken.token.seq, taken.capture_ns, ring.hdr
        )
        return self._last

    def next_frame(self, timeout: float) -> CapturedFrame | None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        deadline = time.monotonic() + timeout
        while True:
            self.recovery.poll()
            if self._active:
                frame = self._take()
                if frame is not None:
                    return frame
            now = time.monotonic()
            if now >= deadline:
                return None
            wait = min(deadline - now, 0.25)
            if select.select([self._efd], [], [], wait)[0]:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._efd)

    @property
    def stale_rejected(self) -> int:
        return self._reader.stale if self._reader is not None else 0

    def close(self) -> None:
        ring, self._ring, self._reader = self._ring, None, None
        if ring is not None:
            # A monitor that is already gone needs no detach: unlinking the ring is enough.
            with contextlib.suppress(DriverError):
                self.lease.attach_ring("", None)
            ring.close()
        recovery = getattr(self, "recovery", None)
        if recovery is not None:
            recovery.probe.close()
        if self._efd >= 0:
            os.close(self._efd)
            self._efd = -1
