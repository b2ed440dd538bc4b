"""Speed-test probes, host side: a ProbeRequest is answered with filler, then a ProbeResult.

As the Rust host's `native/stream.rs` `ProbeBurst` serves them: zero-filled access units in
the probe index space (their own frame counter, media stream 1, user flag PROBE) at
`target_kbps` for `duration_ms`, both clamped (10 Gbit/s, 5 s). The budget is elapsed time x
rate, so a late pump sends the backlog (at most 64 KiB per pump); a shaped request
(`burst_hz`) is owed each period's bytes when the period starts, in groups of `group_bytes`
on a `group_rate_kbps` clock. The result counts what happened: AUs and their bytes, wire
packets offered less those the send buffer refused, and the real duration. An all-zero
result is a decline: an empty request, or a client without VIDEO_CAP_PROBE_SEQ (its single
reassembly window would read probe frames as video loss).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...log import event
from ..wire.messages import ProbeRequest, ProbeResult
from ..wire.packet import MediaHeader
from ..wire.registry import V2_LAST_BLOCK, MediaStream, UserFlag, VideoCap
from ..wire.seal import MediaSealer

_log = logging.getLogger("punktfunk.native.session")

MAX_PROBE_KBPS = 10_000_000
MAX_PROBE_MS = 5_000
PROBE_PUMP_BYTES = 64 * 1024
MAX_DATA_PER_BLOCK = 64
# A probe-only (diagnostic) session serves probes for at most this long and this many bytes.
PROBE_ONLY_MAX_S = 60.0
PROBE_ONLY_BYTES = 2 << 30
PROBE_QUEUE = 4  # requests waiting behind the one in flight; more are declined at once


def declined() -> ProbeResult:
    """All zero: the client keeps its negotiated ceiling."""
    return ProbeResult()


@dataclass(frozen=True)
class BurstPlan:
    """One request, clamped, and its pacing arithmetic (pure: time comes in as `elapsed`)."""

    target_kbps: int
    duration_s: float
    chunk: int  # filler bytes per AU
    burst_hz: int = 0
    group_bytes: int = 0  # 0: a period's whole backlog at once
    group_rate_bps: int = 0  # 0: line rate

    @classmethod
    def begin(cls, req: ProbeRequest, probe_seq: bool) -> BurstPlan | None:
        if not probe_seq:
            return None
        kbps, ms = min(req.target_kbps, MAX_PROBE_KBPS), min(req.duration_ms, MAX_PROBE_MS)
        if kbps == 0 or ms == 0:
            return None
        # ~240 AUs a second, each at least one shard and at most 16 KiB (stream.rs).
        chunk = max(1200, min(16 * 1024, kbps * 125 // 240))
        return cls(kbps, ms / 1000, chunk, req.burst_hz, req.group_bytes,
                   req.group_rate_kbps * 1000)  # fmt: skip

    @property
    def bytes_per_s(self) -> int:
        return self.target_kbps * 125

    def allowed_bytes(self, elapsed: float) -> int:
        """What may have left by `elapsed` seconds: smooth, or whole periods when shaped."""
        elapsed = min(max(elapsed, 0.0), self.duration_s)
        if self.burst_hz == 0:
            return int(elapsed * self.bytes_per_s)
        periods = int(elapsed * self.burst_hz) + 1
        whole = int(self.duration_s * self.bytes_per_s)
        return min(int(periods * self.bytes_per_s / self.burst_hz), whole)


class ProbeFiller:
    """Seals and sends probe AUs under the session's media key (shared with video, whose
    packet numbers it interleaves with), to the client's current address."""

    def __init__(
        self,
        sealer: MediaSealer,
        sock: socket.socket,
        addr: Callable[[], tuple[str, int] | None],
        shard_payload: int,
        epoch: Callable[[], int],
        pts_us: Callable[[int], int],
    ) -> None:
        self._sealer, self._sock, self._addr = sealer, sock, addr
        self._shard, self._epoch, self._pts_us = shard_payload, epoch, pts_us
        self.next_index = 0  # the probe index space: never a video frame number

    def send(self, data: bytes) -> tuple[int, int]:
        """One AU: `(wire packets offered, packets the send buffer refused)`."""
        size = self._shard
        total = max(1, -(-len(data) // size))
        pad = total * size - len(data)
        padded = data + bytes(pad)
        index, self.next_index = self.next_index, (self.next_index + 1) & 0xFFFF_FFFF
        pts, epoch, addr = self._pts_us(time.monotonic_ns()), self._epoch(), self._addr()
        offered = dropped = 0
        for base in range(0, total, MAX_DATA_PER_BLOCK):
            k = min(MAX_DATA_PER_BLOCK, total - base)
            last = base + k == total
            flags = UserFlag.PROBE | (V2_LAST_BLOCK if last else 0)
            for i in range(k):
                header = MediaHeader(MediaStream.PROBE, 0, epoch, flags, index, pts,
                                     base // MAX_DATA_PER_BLOCK, base, i, k, 0,
                                     pad if last else 0)  # fmt: skip
                at = (base + i) * size
                packet = self._sealer.seal(header, padded[at : at + size])
                offered += 1
                if addr is None:
                    dropped += 1
                    continue
                try:
                    self._sock.sendto(packet, addr)
                except (BlockingIOError, OSError):
                    dropped += 1  # a full buffer is part of what the probe measures
        return offered, dropped


def run_burst(
    plan: BurstPlan,
    send: Callable[[bytes], tuple[int, int]],
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    """Serve one burst on this thread until its duration has passed (or `stop`)."""
    filler = bytes(plan.chunk)
    start = clock()
    deadline = start + plan.duration_s
    sent = aus = offered = dropped = 0
    group_next = start
    clocked = plan.burst_hz > 0 and plan.group_rate_bps > 0
    while True:
        now = clock()
        if not (clocked and now < group_next):
            budget = min(plan.allowed_bytes(now - start), sent + PROBE_PUMP_BYTES)
            if clocked and plan.group_bytes:
                budget = min(budget, sent + plan.group_bytes)
            before = sent
            while sent < budget:
                o, d = send(filler)
                offered, dropped, sent, aus = offered + o, dropped + d, sent + len(filler), aus + 1
            if clocked and sent > before:
                group_next = now + (sent - before) * 8 / plan.group_rate_bps
        now = clock()
        if now >= deadline or stop.is_set():
            break
        if sent >= plan.allowed_bytes(now - start):
            stop.wait(min(0.001, deadline - now))
    return ProbeResult(
        bytes_sent=sent,
        packets_sent=aus,
        duration_ms=int((clock() - start) * 1000),
        wire_packets_sent=offered - dropped,
        send_dropped=dropped,
    )


def probe_seq(video_caps: int) -> bool:
    return bool(video_caps & VideoCap.PROBE_SEQ)


class ProbeServer:
    """One session's speed-test requests: offered by the socket thread, served one burst at a
    time on the session's probe thread, each answered through `reply` (any thread)."""

    def __init__(
        self,
        filler: ProbeFiller,
        probe_seq: bool,
        stop: threading.Event,
        reply: Callable[[ProbeResult], None],
        counters: Any,
        name: str,
        byte_cap: int | None = None,
    ) -> None:
        self._filler, self._probe_seq, self._stop, self._reply = filler, probe_seq, stop, reply
        self._counters, self._name, self._cap = counters, name, byte_cap
        self._queue: queue.Queue[ProbeRequest | None] = queue.Queue()
        self.running = False  # the serving thread was started
        self.bytes_sent = 0

    def offer(self, req: ProbeRequest) -> bool:
        """Queue a request; False when too many wait (the caller declines it)."""
        if self._queue.qsize() >= PROBE_QUEUE:
            return False
        self._queue.put(req)
        return True

    def close(self) -> None:
        self._queue.put(None)

    def serve(self, deadline: float | None) -> bool:
        """Serve until closed (False) or, with `deadline`, until it passes (True)."""
        while not self._stop.is_set():
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return True
            try:
                req = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            if req is None:
                return False
            self._reply(self._one(req))
        return False

    def _one(self, req: ProbeRequest) -> ProbeResult:
        plan = BurstPlan.begin(req, self._probe_seq)
        spent = self._cap is not None and self.bytes_sent >= self._cap
        if plan is None or spent:
            self._counters.probes_declined += 1
            result = declined()
        else:
            result = run_burst(plan, self._filler.send, self._stop)
            self.bytes_sent += result.bytes_sent
            self._counters.probes += 1
        event(_log, "session.probe", session=self._name, target_kbps=req.target_kbps,
              duration_ms=result.duration_ms, bytes_sent=result.bytes_sent,
              wire_packets=result.wire_packets_sent, dropped=result.send_dropped,
              declined=plan is None or spent)  # fmt: skip
        return result
