"""A punktfunk/2 session's Reconfigure: the client's window changed mode mid-session.

A monitor at the new mode and a new encoder open while the old stream keeps flowing (its own
thread: a monitor takes time); then the next StreamConfig epoch is announced and the new
pipeline, or the new worker, takes over on the same connection (Rust host: `reconfigure`).
A mix-in of `NativeSession`, which owns the state it switches.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ...log import event
from ...session.plan import ClientRequest, SessionPlan
from ...session.remote import RemoteSource
from ...vdisplay.base import DisplayMode
from ..wire.messages import Mode, Reconfigured, StreamConfig
from .negotiate import WIRE_CODEC, color_of

if TYPE_CHECKING:
    from .session import NativeSession

_log = logging.getLogger("punktfunk.native.session")


class ModeSwitch:
    """The Reconfigure half of `NativeSession`: switching to the new mode."""

    def _reconfigure(self: NativeSession, mode: Mode) -> None:
        """The client's window changed: a monitor at the new mode, a new encoder, the next
        StreamConfig epoch, same connection. Runs on its own thread (a monitor takes time);
        the old stream keeps flowing until the new one is ready."""
        try:
            self._switch_mode(mode)
        finally:
            self._reconfiguring.clear()

    def _switch_mode(self: NativeSession, mode: Mode) -> None:
        old, sink = self._source, self._sink
        if old is None or sink is None or self._pipeline is None:
            return
        plan = old.plan
        request = ClientRequest(
            DisplayMode(mode.width, mode.height, mode.refresh_hz or plan.mode.refresh_hz),
            plan.codec,
            plan.hdr,
            plan.bitrate_kbps,
            app=self.hello.launch or "",  # the same app at the new size, not the desktop
        )
        try:
            source = self._open_source(request)
        except Exception as exc:
            event(_log, "session.reconfigure_refused", logging.WARNING, session=self.name,
                  mode=f"{mode.width}x{mode.height}@{mode.refresh_hz}", reason=exc)  # fmt: skip
            self._server.call_soon(lambda: self.conn.send(Reconfigured(False, self._wire_mode())))
            return
        if isinstance(source, RemoteSource):
            self._switch_remote(source, plan)
            return
        pipeline = self._new_pipeline(source, sink)
        with self._lock:
            if self._ended.is_set():
                source.close()
                return
            self._pipeline.stop()  # the old encoder's last frame is out before the new epoch
            epoch = sink.next_epoch()
            self._source, self._pipeline = source, pipeline
        self._announce(source.plan, epoch)
        if self._rate is not None:  # the new encoder opens at the ceiling
            source.encoder.set_bitrate(self._rate.kbps)
        pipeline.start()
        pipeline.request_keyframe()
        old.close()
        self._reconfigured(source.plan, plan, epoch)

    def _switch_remote(self: NativeSession, new: RemoteSource, was: SessionPlan) -> None:
        """Reconfigure with workers: a new worker opened the new mode while the old one kept
        streaming; the old one stops, the new one continues its packet numbers, frame numbers
        and audio sequence in the next epoch."""
        with self._lock:
            old, sink = self._remote, self._sink
            if self._ended.is_set() or old is None or sink is None:
                new.close()
                return
            self._source = self._remote = new
        resume = old.finish()  # the old worker's last packet is out before the new epoch
        epoch = (resume["epoch"] + 1) & 0xFF
        self._announce(new.plan, epoch)
        self._stream_remote(new, sink.fec_percent, {**resume, "epoch": epoch})
        if self._rate is not None:
            new.pipeline.set_bitrate(self._rate.kbps)
        new.pipeline.start()
        old.close()
        self._reconfigured(new.plan, was, epoch)

    def _announce(self: NativeSession, new: SessionPlan, epoch: int) -> None:
        wire_mode = Mode(new.mode.width, new.mode.height, new.mode.refresh_hz)
        announced = threading.Event()

        def announce() -> None:
            self.conn.send(Reconfigured(True, wire_mode))
            config = StreamConfig(
                epoch=epoch,
                mode=wire_mode,
                codec=WIRE_CODEC[new.codec],
                bit_depth=new.bit_depth,
                color=color_of(new.hdr),
            )
            self.conn.send(config)
            announced.set()

        self._server.call_soon(announce)
        announced.wait(2.0)  # StreamConfig goes out before the epoch's first packet

    def _reconfigured(self: NativeSession, new: SessionPlan, was: SessionPlan, epoch: int) -> None:
        event(_log, "session.reconfigured", session=self.name, epoch=epoch, mode=str(new.mode),
              was=str(was.mode), downgrades="; ".join(new.downgrades) or "none")  # fmt: skip
