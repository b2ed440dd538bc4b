"""A tiny in-process event bus for the console's live stream (`/api/events`).

Publishing never blocks and never fails: each subscriber has a bounded queue that drops its
oldest event when full, so a slow or stuck browser costs memory bounded by `QUEUE_LEN` and
nothing else. The existing structured `event()` log lines feed it through `BusLogHandler`, so
no session code needs to know the console exists.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

QUEUE_LEN = 256

# Log event names that become bus events, and the kind the stream calls them.
LOG_EVENTS = {
    "session.start": "session_started",
    "session.end": "session_ended",
    "session.reconfigured": "encoder_reinit",
    "session.refused": "session_refused",
    "native.stream_refused": "session_refused",
    "session.over_limit": "session_refused",
    "pairing.started": "pairing_requested",
    "pairing.waiting_for_pin": "pairing_requested",
    "native.pairing_started": "pairing_requested",
    "trust.paired": "pairing_completed",
    "pairing.failed": "pairing_failed",
    "native.pairing": "pairing_result",
    "capture.fallback": "fallback",
    "audio.fallback_tone": "fallback",
}


class Subscription:
    def __init__(self, bus: EventBus, wake: Callable[[], None]) -> None:
        self._bus = bus
        self._wake = wake
        self._queue: deque[dict[str, object]] = deque(maxlen=QUEUE_LEN)
        self._lock = threading.Lock()
        self.dropped = 0

    def put(self, item: dict[str, object]) -> None:
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1  # the deque drops the oldest
            self._queue.append(item)
        # RuntimeError: the subscriber's loop is gone; it unsubscribes on its own.
        with contextlib.suppress(RuntimeError):
            self._wake()

    def drain(self) -> list[dict[str, object]]:
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
        return items

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self.counts: dict[str, int] = {}
        self._listeners: list[Callable[[dict[str, object]], None]] = []

    def subscribe(self, wake: Callable[[], None]) -> Subscription:
        sub = Subscription(self, wake)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def listen(self, listener: Callable[[dict[str, object]], None]) -> None:
        """A synchronous listener (the metrics' pairing counters); must be quick."""
        with self._lock:
            self._listeners.append(listener)

    def publish(self, kind: str, **data: object) -> None:
        item: dict[str, object] = {"type": kind, "time": round(time.time(), 3), **data}
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            subs, listeners = list(self._subs), list(self._listeners)
        for listener in listeners:
            listener(item)
        for sub in subs:
            sub.put(item)

    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)


def parse_event_line(message: str) -> tuple[str, dict[str, str]]:
    """`name k=v k2="quoted v"` (as `log.format_event` writes it) back into name and fields."""
    name, _, rest = message.partition(" ")
    fields: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip()
        j = eq + 1
        if j < n and rest[j] == '"':
            out, j = [], j + 1
            while j < n and rest[j] != '"':
                if rest[j] == "\\" and j + 1 < n:
                    j += 1
                    out.append({"n": "\n", "r": "\r"}.get(rest[j], rest[j]))
                else:
                    out.append(rest[j])
                j += 1
            value, j = "".join(out), j + 1
        else:
            end = rest.find(" ", j)
            end = n if end < 0 else end
            value, j = rest[j:end], end
        fields[key] = value
        i = j + 1
    return name, fields


class BusLogHandler(logging.Handler):
    """Turns the structured log lines named in LOG_EVENTS into bus events."""

    def __init__(self, bus: EventBus) -> None:
        super().__init__(logging.DEBUG)
        self._bus = bus

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            name = message.partition(" ")[0]
            kind = LOG_EVENTS.get(name)
            if kind is None:
                return
            _, fields = parse_event_line(message)
            self._bus.publish(kind, event=name, **fields)
        except Exception:  # a log handler must never raise into the code that logged
            self.handleError(record)
