"""Per-stage latency statistics: bounded sample windows, p50/p99 on demand, thread-safe."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

WINDOW = 600  # ~10 s at 60 fps


@dataclass(frozen=True)
class Percentiles:
    p50_ms: float
    p99_ms: float
    count: int

    def as_dict(self) -> dict[str, float]:
        return {"p50": round(self.p50_ms, 3), "p99": round(self.p99_ms, 3)}


def percentiles(samples_ns: list[int]) -> Percentiles:
    if not samples_ns:
        return Percentiles(0.0, 0.0, 0)
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, (len(ordered) * 99) // 100)]
    return Percentiles(p50 / 1e6, p99 / 1e6, len(ordered))


class StageStats:
    """Durations (ns) per named stage plus counters, e.g. frames sent or dropped."""

    def __init__(self, window: int = WINDOW) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._stages: dict[str, deque[int]] = {}
        self._counters: dict[str, int] = {}

    def record(self, stage: str, duration_ns: int) -> None:
        with self._lock:
            samples = self._stages.get(stage)
            if samples is None:
                samples = self._stages[stage] = deque(maxlen=self._window)
            samples.append(duration_ns)

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + amount

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            stages = {k: list(v) for k, v in self._stages.items()}
            counters = dict(self._counters)
        return {
            "stages": {k: percentiles(v).as_dict() for k, v in stages.items()},
            "counters": counters,
        }

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def stage(self, name: str) -> Percentiles:
        with self._lock:
            samples = list(self._stages.get(name, ()))
        return percentiles(samples)


class LiveStatus:
    """One human status line per session, with rates over the time since its previous line."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int, int]] = {}

    def line(self, name: str, stats: StageStats, now: float) -> str:
        frames, sent = stats.counter("frames"), stats.counter("bytes")
        then, frames_then, sent_then = self._last.get(name, (now, frames, sent))
        self._last[name] = (now, frames, sent)
        elapsed = now - then
        fps = (frames - frames_then) / elapsed if elapsed > 0 else 0.0
        mbps = (sent - sent_then) * 8 / elapsed / 1e6 if elapsed > 0 else 0.0
        latency = stats.stage("host_latency")
        lost = stats.counter("client_lost_frames")
        return (
            f"{name}: {fps:.1f} fps, {mbps:.1f} Mbit/s, host latency p50 {latency.p50_ms:.1f} ms"
            f" p99 {latency.p99_ms:.1f} ms, frames lost by client {lost}"
        )

    def keep(self, names: set[str]) -> None:
        """Forget sessions that ended."""
        for name in set(self._last) - names:
            del self._last[name]
