"""Host services with embedded apps: a launch of one of them gets the program's frames instead
of a virtual monitor (SessionPlan capture backend `app`, topology in-process).

Only the lease is the app's (`open_lease`): the session's capturer is the same
`IddPushCapturer` that reads a driver monitor, opened by the base class here or in a media
worker (`session_workers`). It creates the ring at the client's mode and attaches it to the
lease (from a worker, through the host, as a driver monitor's attach goes), and the lease
hands the ring to the session's `RingFeed`: the program plays the driver's part. Encoding,
FEC, pacing and rate control downstream are the protocols' own. Every other launch (Desktop,
configured commands) is the base class's: the desktop apps keep working beside the embedded
ones.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..audio.base import AudioCapturer
from ..capture.base import CaptureBackend
from ..config import HostConfig
from ..input.base import InputInjector, PadManager
from ..log import event
from ..session.plan import ClientRequest, SessionPlan, Topology, resolve_plan
from ..session.services import HostServices
from ..vdisplay.base import DisplayBackend, DisplayMode, LeaseBase
from ..vdisplay.manager import Output
from ..vdisplay.ring import FrameRing
from .frames import Mode
from .session import Session
from .source import CallbackDriver, PushSource, Render

_log = logging.getLogger("punktfunk.embed")
_monitor_ids = itertools.count(0x4000)  # apart from the driver's ids, in the ring names


@dataclass
class EmbeddedApp:
    title: str
    source: PushSource | Render
    hdr: bool = False  # the program renders float16 HDR frames for HDR sessions
    sessions: list[Session] = field(default_factory=list)


class AppLease(LeaseBase):
    """The session's 'monitor': `attach_ring` hands the capturer's ring to the session."""

    def __init__(self, session: Session, source: PushSource | Render) -> None:
        self.session = session
        self._source = source
        mode = session.mode
        self.output = Output(
            monitor_id=next(_monitor_ids),
            generation=1,
            display_name=f"app:{session.app}",
            mode=DisplayMode(mode.width, mode.height, mode.fps),
            hdr=mode.hdr,
            edid=b"",
            backend=DisplayBackend.PATTERN,  # no X server: the capturer keeps the mode fixed
        )

    def attach_ring(self, ring_name: str, notify_fd: int | None) -> None:
        if not ring_name:
            self.session.feed.attach(None, None)
            return
        ring = FrameRing.open(ring_name)
        fd = os.dup(notify_fd) if notify_fd is not None else None  # as if sent to the driver
        self.session.feed.attach(ring, fd)
        if isinstance(self._source, PushSource):
            self._source._ring_ready(self.session)

    def environment(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        self.session.end()


class EmbedServices(HostServices):
    """`HostServices` that also serve the apps a program registered with `Host.app`."""

    def __init__(self, config: HostConfig) -> None:
        super().__init__(config)
        self.apps: dict[str, EmbeddedApp] = {}
        self.on_start: list[Callable[[Session], None]] = []
        self.on_end: list[Callable[[Session], None]] = []
        self.stats_of: Callable[[str], dict[str, object]] | None = None
        self._sessions_lock = threading.Lock()

    def sessions(self) -> list[Session]:
        with self._sessions_lock:
            return [s for app in self.apps.values() for s in app.sessions]

    def _plan(self, request: ClientRequest) -> SessionPlan:
        # The pattern display is always there and renders HDR (float16) as the ring carries it.
        config = replace(self.config, display="pattern", capture="auto")
        plan = resolve_plan(config, request, self.caps)
        return replace(plan, capture=CaptureBackend.APP, topology=Topology.IN_PROCESS)

    def open_lease(self, request: ClientRequest, client_id: str) -> tuple[SessionPlan, AppLease]:  # type: ignore[override]
        app = self.apps.get(request.app)
        if app is None:
            return super().open_lease(request, client_id)  # type: ignore[return-value]
        if request.hdr and not app.hdr:
            note = f"app {app.title!r} renders SDR (registered without hdr=True): 8-bit SDR"
            request = replace(request, hdr=False, notes=(*request.notes, note))
        plan = self._plan(request)
        mode = Mode(plan.mode.width, plan.mode.height, plan.mode.refresh_hz, plan.hdr)
        session = Session(app.title, mode, client_id, self._ended)
        with self._sessions_lock:
            app.sessions.append(session)
        event(_log, "embed.session_start", app=app.title, mode=f"{mode.width}x{mode.height}",
              fps=mode.fps, hdr=mode.hdr, codec=plan.codec)  # fmt: skip
        if isinstance(app.source, PushSource):
            app.source._attach(session)
        else:
            CallbackDriver(app.source, session)
        for callback in list(self.on_start):
            try:  # before the capturer waits for the first frame: render at this mode now
                callback(session)
            except Exception as exc:
                event(_log, "embed.callback_failed", logging.WARNING, app=app.title,
                      hook="start", reason=repr(exc))  # fmt: skip
        return plan, AppLease(session, app.source)

    def _ended(self, session: Session) -> None:
        app = self.apps.get(session.app)
        if app is not None:
            with self._sessions_lock:
                if session in app.sessions:
                    app.sessions.remove(session)
            if isinstance(app.source, PushSource):
                app.source._detach(session)
        event(_log, "embed.session_end", app=session.app, published=session.feed.published,
              dropped=session.feed.dropped)  # fmt: skip
        for callback in list(self.on_end):
            try:
                callback(session)
            except Exception as exc:
                event(_log, "embed.callback_failed", logging.WARNING, app=session.app,
                      hook="end", reason=repr(exc))  # fmt: skip

    def open_input(self, source: object) -> InputInjector | None:  # type: ignore[override]
        session = _app_session(source)
        if session is not None:
            return session.injector
        return super().open_input(source)  # type: ignore[arg-type]

    def open_pads(self, session_name: str, source: object = None) -> PadManager | None:
        session = _app_session(source)
        if session is not None:
            session.name = session_name
            stats_of = self.stats_of
            if stats_of is not None:
                session._stats_fn = lambda: stats_of(session_name)
            return session.pads
        return super().open_pads(session_name, source)

    def open_audio(self, channels: int, session_name: str, source: object = None) -> AudioCapturer:
        session = _app_session(source)
        if session is not None:
            return session.open_audio(channels)  # type: ignore[return-value]
        return super().open_audio(channels, session_name, source)

    def audio_in_worker(self, lease: object) -> bool:
        return not isinstance(lease, AppLease)  # the program plays into this process

    def close(self) -> None:
        for session in self.sessions():
            with contextlib.suppress(Exception):
                session.end()
        super().close()


def _app_session(source: object) -> Session | None:
    """The embedded session behind a video source (in process or a media worker's), if any."""
    lease = getattr(source, "lease", None)
    return lease.session if isinstance(lease, AppLease) else None
