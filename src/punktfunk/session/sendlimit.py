"""Test-only: a simulated bottleneck on the hosts' video send paths (`test_send_limit`), set
and lifted by the admin command `testlimit`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence


class SendLimiter:
    """Test-only: a simulated bottleneck on a host's video send path.

    Policer (`set(kbps)`): a token bucket; datagrams beyond the rate are dropped, as a router's
    full queue would; the bucket holds `burst_s` of the rate so a frame's microburst passes
    whole. Queue (`set(kbps, queue_s)`): a link of that rate behind a FIFO of up to `queue_s`
    of backlog: each datagram leaves when the link has carried those before it (a thread sends
    it through the `later` callable `admit` was given), and only what finds the FIFO full is
    dropped, so a sender above the rate sees its delay grow before any loss. A sink that gives
    no `later` gets the policer. Off (None) passes everything. Thread-safe: every session's
    send thread and the admin command share it.
    """

    def __init__(self, burst_s: float = 0.4, clock: Callable[[], float] = time.monotonic) -> None:
        self._burst_s = burst_s
        self._clock = clock
        self._lock = threading.Lock()
        self.kbps: int | None = None
        self.queue_s: float | None = None
        self._tokens = 0.0
        self._last = clock()
        self._free_at = 0.0  # when the queue's link has carried everything queued so far
        self._fifo: deque[tuple[float, bytes, Callable[[Sequence[bytes]], None]]] = deque()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def set(self, kbps: int | None, queue_s: float | None = None) -> None:
        with self._lock:
            self.kbps, self.queue_s = kbps, (queue_s if kbps is not None else None)
            self._last = self._clock()
            self._tokens = self._depth()
            self._free_at = self._last
            if self.queue_s is not None and self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="pf-testqueue",
                                                daemon=True)  # fmt: skip
                self._thread.start()
            self._wake.notify()

    def _depth(self) -> float:
        return (self.kbps or 0) * 125 * self._burst_s  # bytes

    def admit(
        self,
        datagrams: Sequence[bytes],
        later: Callable[[Sequence[bytes]], None] | None = None,
    ) -> Sequence[bytes]:
        """What to send now; with a queue and `later`, the rest goes out through `later`."""
        with self._lock:
            if self.kbps is None:
                return datagrams
            now = self._clock()
            if self.queue_s is not None and later is not None:
                return self._enqueue(datagrams, later, now)
            self._tokens = min(self._depth(), self._tokens + (now - self._last) * self.kbps * 125)
            self._last = now
            kept = []
            for datagram in datagrams:
                if len(datagram) <= self._tokens:
                    self._tokens -= len(datagram)
                    kept.append(datagram)
            self.dropped += len(datagrams) - len(kept)
            return kept

    def _enqueue(
        self, datagrams: Sequence[bytes], later: Callable[[Sequence[bytes]], None], now: float
    ) -> Sequence[bytes]:
        assert self.kbps is not None and self.queue_s is not None
        for datagram in datagrams:
            leaves = max(now, self._free_at) + len(datagram) / (self.kbps * 125)
            if leaves - now > self.queue_s:
                self.dropped += 1  # the FIFO is full: tail drop
                continue
            self._free_at = leaves
            self._fifo.append((leaves, bytes(datagram), later))
        self._wake.notify()
        return ()

    def _drain(self) -> None:
        while True:
            with self._lock:
                while not self._fifo or self._fifo[0][0] > self._clock():
                    wait = self._fifo[0][0] - self._clock() if self._fifo else None
                    self._wake.wait(wait)
                due, now = [], self._clock()
                while self._fifo and self._fifo[0][0] <= now:
                    due.append(self._fifo.popleft())
            for _, datagram, later in due:
                # The session's socket may have gone meanwhile: a link drops it too.
                with contextlib.suppress(OSError):
                    later([datagram])


# Set by `punktfunk serve` only when `test_send_limit` is on; the video sinks consult it.
test_limiter: SendLimiter | None = None
