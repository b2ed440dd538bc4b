"""Frame sources of an embedded app: the program pushes (`PushSource`), or the host asks a
callback for each frame at the session's rate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..log import Throttle
from .frames import Mode, as_array, check_frame, check_layout
from .session import Session

_log = logging.getLogger("punktfunk.embed")
Render = Callable[[Mode], Any]


class PushSource:
    """Frames the program pushes from its own loop: `push()` never blocks and the newest
    frame wins. With no client it only checks the frame and keeps it (by reference) for the
    next session; with clients it writes it into each session's ring (one copy)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._sessions: list[Session] = []
        self._latest: tuple[np.ndarray, int] | None = None
        self.pushed = 0

    @property
    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions)

    @property
    def mode(self) -> Mode | None:
        """The newest session's mode (render at this size), None while nobody watches."""
        with self._lock:
            return self._sessions[-1].mode if self._sessions else None

    def wait_session(self, timeout: float | None = None) -> Session | None:
        """Block until a client streams this source (or `timeout` s pass)."""
        with self._lock:
            self._lock.wait_for(lambda: bool(self._sessions), timeout)
            return self._sessions[-1] if self._sessions else None

    def push(self, frame: Any) -> None:
        """Publish `frame` (see `frames.py` for what it may be). ValueError when it is not a
        frame or does not fit the streaming session's mode; the session keeps streaming."""
        pixels = as_array(frame)
        check_layout(pixels)
        now = time.monotonic_ns()
        with self._lock:
            sessions = list(self._sessions)
            self._latest = (pixels, now)
            self.pushed += 1
        wrong = []
        for session in sessions:
            try:
                check_frame(pixels, session.mode)
            except ValueError as exc:
                wrong.append(str(exc))
                continue
            session.feed.write(pixels, now)
        if wrong and len(wrong) == len(sessions):
            raise ValueError(wrong[0])

    def _attach(self, session: Session) -> None:
        with self._lock:
            self._sessions.append(session)
            self._lock.notify_all()

    def _ring_ready(self, session: Session) -> None:
        """The session's ring is attached: it starts from the newest frame, if it fits."""
        latest = self._latest
        if latest is None:
            return
        pixels, stamp = latest
        try:
            check_frame(pixels, session.mode)
        except ValueError:
            return
        session.feed.write(pixels, stamp)

    def _detach(self, session: Session) -> None:
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)


class CallbackDriver:
    """Asks `render(mode)` for a frame at the session's rate, on a host thread of its own,
    while the session's ring is attached. An exception or a wrong frame is logged (throttled)
    and that frame skipped; the session keeps streaming."""

    def __init__(self, render: Render, session: Session) -> None:
        self._render = render
        self._session = session
        self._throttle = Throttle()
        self.frames = 0
        self._thread = threading.Thread(
            target=self._run, name=f"pf-embed-{session.app}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        session = self._session
        period = 1.0 / max(1, session.mode.fps)
        due = time.monotonic()
        while session.active:
            if not session.feed.attached:
                time.sleep(0.005)
                due = time.monotonic()
                continue
            started = time.monotonic_ns()
            try:
                pixels = as_array(self._render(session.mode))
                check_frame(pixels, session.mode)
                session.feed.write(pixels, started)
                self.frames += 1
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._throttle.event(_log, "embed.render_failed", logging.WARNING,
                                     app=session.app, reason=reason)  # fmt: skip
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                due = time.monotonic()  # behind: no burst to catch up
