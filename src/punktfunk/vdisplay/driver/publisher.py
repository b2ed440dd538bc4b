"""The ring writer: one thread per monitor moves frames from its source into the host's ring.

The host attaches a ring (and an eventfd to wake it) with the ATTACH_RING extension op, and
attaches a new one after a mode change; the thread swaps rings between frames. Each frame:
wait for the source, check it still has the ring's size and format (after a game's mode change
it will not, until the host recreates the ring at the new mode), try-acquire a slot with no
waiting (none free: drop, count it), render into the slot, publish the token. A ring the host
has unlinked (its capturer closed or died) is let go of within a second.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from ...log import event
from ...proto.frame import SEQ_BITS, FrameToken
from ..ring import FrameRing, RingWriter
from .backends import MonitorSource

_log = logging.getLogger("punktfunk.vdisplay.driver")
_SEQ_MASK = (1 << SEQ_BITS) - 1
_IDLE_WAIT = 0.25
_LINK_CHECK_S = 1.0


class Publisher:
    def __init__(self, monitor_id: int, source: MonitorSource, *, enabled: bool = True) -> None:
        self.monitor_id = monitor_id
        self.source = source
        self.enabled = enabled  # False: attach rings but never publish (tests the fallback)
        self.published = 0
        self._pending: tuple[FrameRing | None, int | None] | None = None
        self._ring: FrameRing | None = None
        self._writer: RingWriter | None = None
        self._notify_fd: int | None = None
        self._seq = 0
        self._mismatch_logged = False
        self._next_link_check = 0.0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(
            target=self._run, name=f"pf-publish-{monitor_id}", daemon=True
        )
        self._thread.start()

    def attach(self, ring: FrameRing | None, notify_fd: int | None) -> None:
        """Publish into `ring` from the next frame on (None detaches); takes both over."""
        with self._cond:
            if self._pending is not None:
                self._close(*self._pending)
            self._pending = (ring, notify_fd)
            self._cond.notify()

    def ring_names(self) -> list[str]:
        """The rings attached now, or about to be (a host's mode-change ring not yet in use)."""
        with self._cond:
            pending = self._pending[0] if self._pending is not None else None
            return [ring.name for ring in (self._ring, pending) if ring is not None]

    def _close(self, ring: FrameRing | None, notify_fd: int | None) -> None:
        if ring is not None:
            ring.close()
        if notify_fd is not None:
            os.close(notify_fd)

    def _swap(self) -> None:
        with self._cond:  # `ring_names()` must see the ring in one of the two places
            if self._pending is None:
                return
            (ring, fd), self._pending = self._pending, None
            old = self._ring, self._notify_fd
            self._ring, self._notify_fd = ring, fd
        self._close(*old)
        self._writer = RingWriter(ring, fd) if ring is not None else None
        self._mismatch_logged = False
        self.source.forget_slots()
        if ring is not None:
            event(
                _log,
                "vdisplay.ring_attached",
                monitor=self.monitor_id,
                ring=ring.name,
                generation=ring.generation,
                mode=f"{ring.width}x{ring.height}",
                format=ring.pixel_format.name,
                slots=ring.slot_count,
            )

    def _ring_unlinked(self) -> bool:
        now = time.monotonic()
        if self._ring is None or now < self._next_link_check:
            return False
        self._next_link_check = now + _LINK_CHECK_S
        return self._ring.unlinked()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    break
                if self._ring is None and self._pending is None:
                    self._cond.wait(_IDLE_WAIT)
                    continue
            self._swap()
            if self._ring is None or self._writer is None:
                continue
            if self._ring_unlinked():
                event(
                    _log,
                    "vdisplay.ring_released",
                    monitor=self.monitor_id,
                    ring=self._ring.name,
                    reason="the host removed it",
                )
                with self._cond:
                    if self._pending is None:
                        self._pending = (None, None)
                continue
            self._writer.heartbeat()
            if not self.source.wait(_IDLE_WAIT) or not self.enabled:
                continue
            self._publish_one(self._ring, self._writer)
        self._close(self._ring, self._notify_fd)
        self._ring = None
        with self._cond:
            if self._pending is not None:
                self._close(*self._pending)
                self._pending = None

    def _publish_one(self, ring: FrameRing, writer: RingWriter) -> None:
        width, height, fmt = self.source.frame_format()
        if (width, height, fmt) != (ring.width, ring.height, ring.pixel_format):
            if not self._mismatch_logged:
                self._mismatch_logged = True
                event(
                    _log,
                    "vdisplay.ring_mismatch",
                    monitor=self.monitor_id,
                    ring=ring.name,
                    ring_mode=f"{ring.width}x{ring.height} {ring.pixel_format.name}",
                    display_mode=f"{width}x{height} {fmt.name}",
                    action="not publishing until the host recreates the ring",
                )
            return
        slot = writer.try_acquire()
        if slot is None:
            self.source.skip()
            return
        try:
            capture_ns = self.source.render(slot, ring.pixels[slot])
        except Exception as exc:  # one bad frame must not end the monitor's publishing
            capture_ns = None
            event(
                _log,
                "vdisplay.render_failed",
                logging.WARNING,
                monitor=self.monitor_id,
                reason=f"{type(exc).__name__}: {exc}",
            )
            self.source.skip()
        if capture_ns is None:
            writer.abandon(slot)
            return
        self._seq = (self._seq + 1) & _SEQ_MASK
        writer.publish(slot, FrameToken(ring.generation, self._seq, slot), capture_ns)
        self.published += 1

    def stop(self) -> None:
        """End the thread (promptly: the source's wait is interrupted) and let go of the ring."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.source.interrupt()
        self._thread.join()
