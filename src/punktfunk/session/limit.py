"""`max_sessions`: how many streams may run at once, across both protocols.

Each host asks `refusal()` before it starts a session and, when refused, answers its client the
protocol's way (GameStream: /launch status 503 with the reason; punktfunk/2: REJECT_BUSY with
the reason). The recent refusals are kept for the console.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ..log import event

_log = logging.getLogger("punktfunk.session.limit")

KEPT = 20
# Measured (docs/scaling.md, software H.264): a 720p60 session costs 0.6-0.8 core of the host,
# a 720p30 or smaller one about half; one process tops out near 6 sessions (the interpreter
# lock) whatever the cores.
IN_PROCESS_CAP = 6
SETTING_MAX = 64  # what `max_sessions` may be set to
SOFTWARE_PER_CORE = 2
HARDWARE_PER_CORE = 4  # the encoder off the CPU: convert + network only


def capacity(cores: int, workers: bool, hardware: bool) -> tuple[int, str]:
    """`max_sessions=auto`: how many sessions this host holds, and why."""
    per_core = HARDWARE_PER_CORE if hardware else SOFTWARE_PER_CORE
    encoder = "a hardware encoder" if hardware else "software encoding"
    cap, where = (
        (SETTING_MAX, "a worker process per session")
        if workers
        else (IN_PROCESS_CAP, "one process (its interpreter lock caps it)")
    )
    return max(1, min(cap, cores * per_core)), f"{cores} core(s), {encoder}, {where}"


class SessionLimit:
    def __init__(self, max_sessions: int, live: Callable[[], int] = lambda: 0) -> None:
        self.max_sessions = max_sessions
        self.live = live  # how many sessions run now (set once both hosts exist)
        self._lock = threading.Lock()
        self.refused: deque[dict[str, object]] = deque(maxlen=KEPT)

    def refusal(self, protocol: str, client: str) -> str | None:
        """Why a new session for `client` cannot start now, or None when it may."""
        running = self.live()
        if running < self.max_sessions:
            return None
        reason = (
            f"the host is at its limit of {self.max_sessions} streaming session(s) "
            f"(max_sessions); try again when one ends"
        )
        with self._lock:
            self.refused.append({"time": round(time.time(), 3), "protocol": protocol,
                                 "client": client, "reason": reason})  # fmt: skip
        event(_log, "session.over_limit", logging.WARNING, protocol=protocol, client=client,
              running=running, max_sessions=self.max_sessions, reason=reason)  # fmt: skip
        return reason

    def recent(self) -> list[dict[str, object]]:
        with self._lock:
            return list(self.refused)
