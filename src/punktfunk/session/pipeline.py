"""The per-session frame path: capture | encode | send, one thread each.

Shared by both wire protocols; each supplies a `MediaSink` that turns an encoded frame into
datagrams and puts bursts of them on the wire. No asyncio here: a frame never waits on an
event loop. Pull, don't push: capture publishes into a latest-wins `Mailbox` (one frame; a newer
one replaces it and the old one is counted as `dropped_stale`), and the encode thread takes the
newest frame only when the encoder is ready for it (`Encoder.wait_ready`). So at most one frame
waits anywhere, and an encoder slower than the display lowers the frame rate, never adds
latency. Host latency = capture timestamp -> last datagram out.

Loss recovery on encoders without reference invalidation is an IDR; at most one recovery IDR is
in flight: requests from the moment one is asked for until it is on the wire are coalesced
(counted as `keyframes_coalesced`), so a burst of loss reports cannot become an IDR storm.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..capture.base import CapturedFrame, Capturer
from ..capture.outring import OUT_SLOTS
from ..encode.base import EncodedFrame, Encoder, FrameType
from ..log import Throttle, event
from .stats import StageStats

_log = logging.getLogger("punktfunk.session.pipeline")

BURST_BYTES = 64 * 1024  # send at most this much back to back, then let the link drain
DEFAULT_RATE_BPS = 800_000_000  # microburst pacing target (80% of a gigabit link)
IDLE_REPEAT_S = 0.1  # re-send the last frame this often on a static desktop
# A requested IDR not on the wire after this long (encoder re-opening, frames dropped) no longer
# holds back the next request.
IDR_PENDING_MAX_S = 1.0
_throttle = Throttle()


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


class Mailbox:
    """One frame, latest wins: `put` replaces what the consumer has not taken yet."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: CapturedFrame | None = None

    def put(self, frame: CapturedFrame) -> CapturedFrame | None:
        """Leave `frame` for the consumer; returns the untaken frame it replaced, if any."""
        with self._cond:
            stale, self._frame = self._frame, frame
            self._cond.notify()
        return stale

    def take(self, timeout: float) -> CapturedFrame | None:
        """The newest frame, waiting up to `timeout` s for one; None if none came."""
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
        return frame


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
        self.depth = depth  # the encoder's own stage overlap (it enforces it); for status
        self.stats = stats or StageStats()
        self._on_fatal = on_fatal
        self._clock = clock
        self._pacing = PacingState(rate_bps)
        self._mailbox = Mailbox()
        self._submitted = threading.Event()
        self._lock = threading.Lock()
        self._idr_asked_ns: int | None = None  # a recovery IDR asked for and not yet sent
        self._submitted_at: dict[int, int] = {}  # capture_ns -> when it went to the encoder
        self._grabs_since_take = 0  # frames captured since the encoder took one
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
        self.stats.count("keyframe_requests")
        if self._claim_idr("keyframe"):
            self.encoder.request_keyframe()

    def invalidate_ref_frames(self, first: int, last: int) -> None:
        """Loss recovery: the encoder invalidates the references where it can (caps say so)
        and otherwise sends an IDR, at most one in flight however many reports name a loss."""
        if self.encoder.caps.supports_rfi:
            self.encoder.invalidate_ref_frames(first, last)
            self.stats.count("rfi")
            return
        self.stats.count("loss_idr_requests")
        if self._claim_idr("invalidate"):
            self.encoder.invalidate_ref_frames(first, last)

    def _claim_idr(self, why: str) -> bool:
        """True if this request may ask the encoder for an IDR; False if one is in flight."""
        now = self._clock()
        with self._lock:
            asked = self._idr_asked_ns
            if asked is None or now - asked > IDR_PENDING_MAX_S * 1e9:
                self._idr_asked_ns = now
                return True
        self.stats.count("keyframes_coalesced")
        _throttle.event(
            _log,
            "pipeline.idr_coalesced",
            logging.INFO,
            throttle_key=str(id(self)),
            request=why,
            pending_ms=(now - asked) // 1_000_000,
            coalesced=self.stats.counter("keyframes_coalesced"),
        )
        return False

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
            if self._grabs_since_take >= OUT_SLOTS - 1 and self.encoder.holds_input():
                # The capturer writes its OUT ring in rotation: one more grab would overwrite
                # the frame the encoder is still converting (a conversion slower than ~3
                # frame intervals). Wait for it; the frame grabbed then is the newest anyway.
                self.stats.count("capture_held")
                self._stop.wait(0.002)
                continue
            frame = self.capturer.next_frame(timeout=self.frame_interval_ns / 1e9)
            if frame is not None:
                self._grabs_since_take += 1
            now = self._clock()
            if frame is None:
                # A static desktop: repeat the last frame now and then so the client keeps
                # seeing a live stream (it gives up after 10 s without video).
                if last is None or now - last_sent_ns < IDLE_REPEAT_S * 1e9:
                    continue
                frame = CapturedFrame(last.pixels, last.pixel_format, last.seq, now, last.hdr)
                self.stats.count("repeated")
            last, last_sent_ns = frame, now
            if self._mailbox.put(frame) is not None:
                self.stats.count("dropped_stale")  # the encoder was busy: a newer frame wins

    def _encode_loop(self) -> None:
        """Pull: wait until the encoder can start a frame, then take the newest one."""
        while not self._stop.is_set():
            gate = self._clock()
            if not self.encoder.wait_ready(0.1):
                continue
            ready = self._clock()
            frame = self._mailbox.take(0.1)
            if frame is None:
                continue
            self._grabs_since_take = 0
            self.stats.record("encoder_wait", ready - gate)  # > 0: the encoder is the bottleneck
            now = self._clock()
            self.stats.record("queue_wait", now - frame.capture_ns)
            with self._lock:
                self._submitted_at[frame.capture_ns] = now
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
        with self._lock:
            submitted = self._submitted_at.pop(frame.capture_ns, None)
            if len(self._submitted_at) > 64:  # frames the encoder dropped (re-open, failure)
                self._submitted_at.clear()
        if submitted is not None:
            # Convert + encode as the encoder did them: the floor host latency can approach.
            self.stats.record("convert_encode", frame.encode_done_ns - submitted)
        latency_01ms = max(0, (start - frame.capture_ns) // 100_000)
        datagrams = self.sink.packetize(frame, latency_01ms)
        self._paced_transmit(datagrams)
        done = self._clock()
        self.stats.record("send", done - start)
        self.stats.record("host_latency", done - frame.capture_ns)
        self.stats.count("frames")
        self.stats.count("bytes", sum(len(d) for d in datagrams))
        if frame.frame_type is FrameType.IDR:
            with self._lock:
                self._idr_asked_ns = None  # on the wire: the next loss report may ask again

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
