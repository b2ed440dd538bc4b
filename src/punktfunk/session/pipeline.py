"""The per-session frame path: capture | encode | send, threads joined by bounded queues.

Shared by both wire protocols; each supplies a `MediaSink` that turns an encoded frame into
datagrams and puts bursts of them on the wire. No asyncio here: a frame never waits on an
event loop. Queues hold at most `pipeline_depth` frames and drop the oldest when full (a late
frame is worth less than the next one). Host latency = capture timestamp -> last datagram out.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..capture.base import CapturedFrame, Capturer
from ..encode.base import EncodedFrame, Encoder
from ..log import event
from .stats import StageStats

_log = logging.getLogger("punktfunk.session.pipeline")

BURST_BYTES = 64 * 1024  # send at most this much back to back, then let the link drain
DEFAULT_RATE_BPS = 800_000_000  # microburst pacing target (80% of a gigabit link)
IDLE_REPEAT_S = 0.1  # re-send the last frame this often on a static desktop


class MediaSink(Protocol):
    def packetize(self, frame: EncodedFrame, latency_01ms: int) -> Sequence[bytes]: ...
    def transmit(self, datagrams: Sequence[bytes]) -> None: ...


class PermanentError(Exception):
    """Retrying cannot help (bad settings, no encoder for the plan): fail fast and say why."""


class TransientError(Exception):
    """May succeed on retry (display still starting, a device busy)."""


@dataclass
class PacingState:
    rate_bps: int
    next_burst_ns: int = 0


def _drop_oldest_put(q: queue.Queue, item: object, stats: StageStats, counter: str) -> None:
    while True:
        try:
            q.put_nowait(item)
            return
        except queue.Full:
            try:
                q.get_nowait()
                stats.count(counter)
            except queue.Empty:
                pass


class VideoPipeline:
    """Runs one session's video path until stop(); `on_fatal` hears about a dead stage."""

    def __init__(
        self,
        capturer: Capturer,
        encoder: Encoder,
        sink: MediaSink,
        fps: int,
        depth: int,
        stats: StageStats | None = None,
        on_fatal: Callable[[str], None] | None = None,
        rate_bps: int = DEFAULT_RATE_BPS,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.capturer = capturer
        self.encoder = encoder
        self.sink = sink
        self.frame_interval_ns = 1_000_000_000 // max(1, fps)
        self.stats = stats or StageStats()
        self._on_fatal = on_fatal
        self._clock = clock
        self._pacing = PacingState(rate_bps)
        self._captured: queue.Queue[CapturedFrame] = queue.Queue(maxsize=max(1, depth))
        self._submitted = threading.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._guard, args=(self._capture_loop,), name="capture"),
            threading.Thread(target=self._guard, args=(self._encode_loop,), name="encode"),
            threading.Thread(target=self._guard, args=(self._send_loop,), name="send"),
        ]

    # --- control --------------------------------------------------------------------------

    def start(self) -> None:
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None and thread is not threading.current_thread():
                thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def request_keyframe(self) -> None:
        self.encoder.request_keyframe()
        self.stats.count("keyframe_requests")

    def invalidate_ref_frames(self, first: int, last: int) -> None:
        """Loss recovery: the encoder invalidates the references where it can (caps say so)
        and otherwise sends one IDR per loss, however many reports name it."""
        self.encoder.invalidate_ref_frames(first, last)
        self.stats.count("rfi" if self.encoder.caps.supports_rfi else "loss_idr_requests")

    # --- stages ---------------------------------------------------------------------------

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except Exception as exc:
            if self._stop.is_set():
                return
            reason = f"{threading.current_thread().name} stage failed: {exc!r}"
            event(_log, "pipeline.failed", logging.ERROR, reason=reason)
            self._stop.set()
            if self._on_fatal is not None:
                self._on_fatal(reason)

    def _capture_loop(self) -> None:
        last: CapturedFrame | None = None
        last_sent_ns = 0
        while not self._stop.is_set():
            frame = self.capturer.next_frame(timeout=self.frame_interval_ns / 1e9)
            now = self._clock()
            if frame is None:
                # A static desktop: repeat the last frame now and then so the client keeps
                # seeing a live stream (it gives up after 10 s without video).
                if last is None or now - last_sent_ns < IDLE_REPEAT_S * 1e9:
                    continue
                frame = CapturedFrame(last.pixels, last.pixel_format, last.seq, now, last.hdr)
                self.stats.count("repeated")
            last, last_sent_ns = frame, now
            _drop_oldest_put(self._captured, frame, self.stats, "dropped_captured")

    def _encode_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._captured.get(timeout=0.1)
            except queue.Empty:
                continue
            self.stats.record("queue_wait", self._clock() - frame.capture_ns)
            self.encoder.submit(frame)
            self._submitted.set()

    def _send_loop(self) -> None:
        """Collects encoder output as soon as it exists (the encoder may finish frames on its
        own threads) and puts it on the wire."""
        while not self._stop.is_set():
            frames = self.encoder.poll(timeout=0.05)
            if not frames:
                self._submitted.wait(0.05)
                self._submitted.clear()
                continue
            for frame in frames:
                self._send(frame)

    def _send(self, frame: EncodedFrame) -> None:
        start = self._clock()
        self.stats.record("capture_to_encoded", frame.encode_done_ns - frame.capture_ns)
        latency_01ms = max(0, (start - frame.capture_ns) // 100_000)
        datagrams = self.sink.packetize(frame, latency_01ms)
        self._paced_transmit(datagrams)
        done = self._clock()
        self.stats.record("send", done - start)
        self.stats.record("host_latency", done - frame.capture_ns)
        self.stats.count("frames")
        self.stats.count("bytes", sum(len(d) for d in datagrams))

    def _paced_transmit(self, datagrams: Sequence[bytes]) -> None:
        """Microbursts of <= BURST_BYTES, spaced so the average stays at the pacing rate."""
        burst: list[bytes] = []
        size = 0
        for datagram in datagrams:
            burst.append(datagram)
            size += len(datagram)
            if size >= BURST_BYTES:
                self._burst(burst, size)
                burst, size = [], 0
        if burst:
            self._burst(burst, size)

    def _burst(self, burst: list[bytes], size: int) -> None:
        now = self._clock()
        wait = self._pacing.next_burst_ns - now
        if wait > 0:
            time.sleep(wait / 1e9)
            now = self._clock()
        self.sink.transmit(burst)
        self._pacing.next_burst_ns = now + size * 8 * 1_000_000_000 // self._pacing.rate_bps


def build_pipeline_with_retry(
    build: Callable[[], VideoPipeline],
    attempts: int = 4,
    base_delay_s: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> VideoPipeline:
    """Build a pipeline; retry transient failures with exponential backoff, fail fast on
    permanent ones (and on anything unclassified, which is treated as permanent)."""
    for attempt in range(1, attempts + 1):
        try:
            return build()
        except TransientError as exc:
            if attempt == attempts:
                raise PermanentError(f"gave up after {attempts} attempts: {exc}") from exc
            delay = base_delay_s * (2 ** (attempt - 1))
            event(
                _log, "pipeline.retry", logging.WARNING, attempt=attempt, delay_s=delay, reason=exc
            )
            sleep(delay)
    raise AssertionError("unreachable")
