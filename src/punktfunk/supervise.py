"""Service threads that are never left dead silently.

`supervised_thread(name, target, stop)` runs `target` on a daemon thread. When `target` returns
after `stop` is set, the thread ends. When it raises (or returns unbidden), that is logged with its
traceback and counted, and `target` runs again after a short, growing pause. A service that
crashes MAX_CRASHES times within CRASH_WINDOW_S is given up on: that is logged as critical, shows
in `counters()`, and the fatal hook (set by `punktfunk serve`) takes the host down with exit
status 1, so a broken service ends in a restart by the service manager, not in silence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from .log import count_crash, crash_counts, event, format_event

_log = logging.getLogger("punktfunk.supervise")

MAX_CRASHES = 5
CRASH_WINDOW_S = 60.0
FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0

_lock = threading.Lock()
_restarts: dict[str, int] = {}
_given_up: list[str] = []
_fatal_hook: Callable[[str], None] | None = None


def set_fatal_hook(hook: Callable[[str], None] | None) -> None:
    """`hook(reason)` is called once a service thread is given up on (serve stops the host)."""
    global _fatal_hook
    _fatal_hook = hook


def counters() -> dict[str, object]:
    """Crash and restart counts for status output."""
    with _lock:
        return {
            **crash_counts(),
            "thread_restarts": dict(_restarts),
            "threads_given_up": list(_given_up),
        }


def supervised_thread(
    name: str, target: Callable[[], None], stop: threading.Event | None = None
) -> threading.Thread:
    """A daemon thread running `target` under supervision (not started)."""
    return threading.Thread(
        target=_supervise, args=(name, target, stop or threading.Event()), name=name, daemon=True
    )


def _supervise(name: str, target: Callable[[], None], stop: threading.Event) -> None:
    crashes: deque[float] = deque()
    backoff = FIRST_BACKOFF_S
    while True:
        try:
            target()
            if stop.is_set():
                return
            # A service loop returns only when told to stop: anything else is a death too.
            raise RuntimeError(f"{name} returned without being stopped")
        except Exception as exc:
            count_crash("thread_crashes", name)
            now = time.monotonic()
            crashes.append(now)
            while crashes and now - crashes[0] > CRASH_WINDOW_S:
                crashes.popleft()
            if len(crashes) == 1:  # the first crash in a while: no penalty from old ones
                backoff = FIRST_BACKOFF_S
            if stop.is_set():
                _log.warning(format_event("thread.crashed", thread=name, then="stopping"),
                             exc_info=True)  # fmt: skip
                return
            if len(crashes) >= MAX_CRASHES:
                _give_up(name, exc, len(crashes))
                return
            _log.error(format_event("thread.crashed", thread=name, then="restart",
                                    backoff_s=backoff), exc_info=True)  # fmt: skip
        if stop.wait(backoff):
            return
        backoff = min(backoff * 2, MAX_BACKOFF_S)
        with _lock:
            _restarts[name] = _restarts.get(name, 0) + 1
        event(_log, "thread.restarted", logging.WARNING, thread=name, restarts=_restarts[name])


def _give_up(name: str, exc: Exception, crashes: int) -> None:
    with _lock:
        _given_up.append(name)
    reason = f"service thread {name} crashed {crashes} times in {CRASH_WINDOW_S:.0f} s"
    _log.critical(format_event("thread.gave_up", thread=name, reason=reason, last=repr(exc)),
                  exc_info=True)  # fmt: skip
    if _fatal_hook is not None:
        _fatal_hook(reason)
