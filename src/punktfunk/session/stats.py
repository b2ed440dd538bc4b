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
        self._gauges: dict[str, int] = {}
        self._recorded: dict[str, int] = {}  # samples ever recorded per stage (for metrics)

    def record(self, stage: str, duration_ns: int) -> None:
        with self._lock:
            samples = self._stages.get(stage)
            if samples is None:
                samples = self._stages[stage] = deque(maxlen=self._window)
            samples.append(duration_ns)
            self._recorded[stage] = self._recorded.get(stage, 0) + 1

    def samples_since(self, seen: dict[str, int]) -> dict[str, list[int]]:
        """The samples (ns) recorded per stage since `seen` (updated in place): how a metrics
        tick feeds histograms without touching the frame path. Samples that left the window
        between two ticks are lost to it, never counted twice."""
        fresh: dict[str, list[int]] = {}
        with self._lock:
            for stage, total in self._recorded.items():
                new = min(total - seen.get(stage, 0), len(self._stages[stage]))
                if new > 0:
                    fresh[stage] = list(self._stages[stage])[-new:]
                seen[stage] = total
        return fresh

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + amount

    def set_gauge(self, name: str, value: int) -> None:
        """A current value (e.g. the bitrate in force), replaced rather than summed."""
        with self._lock:
            self._gauges[name] = value

    def gauge(self, name: str) -> int | None:
        with self._lock:
            return self._gauges.get(name)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            stages = {k: list(v) for k, v in self._stages.items()}
            counters = dict(self._counters)
            gauges = dict(self._gauges)
        return {
            "stages": {k: percentiles(v).as_dict() for k, v in stages.items()},
            "counters": counters,
            "gauges": gauges,
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
        self._last: dict[str, tuple[float, int, int, int]] = {}

    def line(self, name: str, stats: StageStats, now: float) -> str:
        frames, sent = stats.counter("frames"), stats.counter("bytes")
        stale = stats.counter("dropped_stale")
        then, frames_then, sent_then, stale_then = self._last.get(name, (now, frames, sent, stale))
        self._last[name] = (now, frames, sent, stale)
        elapsed = now - then
        fps = (frames - frames_then) / elapsed if elapsed > 0 else 0.0
        mbps = (sent - sent_then) * 8 / elapsed / 1e6 if elapsed > 0 else 0.0
        latency = stats.stage("host_latency")
        lost = stats.counter("client_lost_frames")
        target = stats.gauge("bitrate_kbps")
        rate = "" if target is None else f" (encoder {target / 1000:.1f})"
        line = (
            f"{name}: {fps:.1f} fps, {mbps:.1f}{rate} Mbit/s, host latency p50 "
            f"{latency.p50_ms:.1f} ms p99 {latency.p99_ms:.1f} ms, frames lost by client {lost}"
        )
        if stale > stale_then and elapsed > 0:
            # The encoder cannot keep up with the display: the rate it drops frames at.
            line += f", encoder-bound: {(stale - stale_then) / elapsed:.1f} frames/s dropped"
        return line

    def keep(self, names: set[str]) -> None:
        """Forget sessions that ended."""
        for name in set(self._last) - names:
            del self._last[name]
