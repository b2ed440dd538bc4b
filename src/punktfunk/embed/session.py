"""One client streaming an embedded app: its mode, its frame ring, its input and audio.

The host's capturer creates a ring at the session's mode and attaches it to the lease exactly
as it would to a driver monitor; `RingFeed` is the driver's half, in this process: each frame
is written into a free slot with no waiting (none free: the frame is dropped and counted,
the program is never held up) and published with its capture time, the moment of `push`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..audio.base import CHUNK_MS, SAMPLE_RATE, AudioChunk
from ..log import Throttle, event
from ..proto.frame import SEQ_BITS, FrameToken
from ..vdisplay.ring import FrameRing, RingWriter
from .events import InputEvent
from .frames import Mode, check_frame, write_into
from .inject import AppInjector, AppPads

_log = logging.getLogger("punktfunk.embed")
_SEQ_MASK = (1 << SEQ_BITS) - 1
EVENT_BACKLOG = 4096  # events kept for a program that reads none: the oldest go first
AUDIO_BACKLOG_MS = 200  # audio the program may queue ahead; more is dropped, never blocks


class RingFeed:
    """The driver's half of a session's ring, run in the program's process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writer: RingWriter | None = None
        self._seq = 0
        self.published = 0
        self.dropped = 0

    def attach(self, ring: FrameRing | None, notify_fd: int | None) -> None:
        with self._lock:
            old, self._writer = self._writer, RingWriter(ring, notify_fd) if ring else None
        if old is not None:
            old.ring.close()
            if old.notify_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(old.notify_fd)

    @property
    def attached(self) -> bool:
        return self._writer is not None

    def write(self, pixels: np.ndarray, capture_ns: int) -> bool:
        """Publish a checked frame; False when no slot was free (dropped) or no ring is
        attached yet."""
        with self._lock:
            writer = self._writer
            if writer is None:
                return False
            slot = writer.try_acquire()
            if slot is None:
                self.dropped += 1
                return False
            ring = writer.ring
            try:
                write_into(pixels, ring.pixels[slot])
            except BaseException:
                writer.abandon(slot)
                raise
            self._seq = (self._seq + 1) & _SEQ_MASK or 1
            writer.publish(slot, FrameToken(ring.generation, self._seq, slot), capture_ns)
            self.published += 1
            return True

    def close(self) -> None:
        self.attach(None, None)


class _AudioOut:
    """The session's `AudioCapturer`: PCM the program plays, in 5 ms chunks; or, with a pull
    callback, what it returns when asked, once per chunk at the stream's own pace."""

    def __init__(
        self, channels: int, pull: Callable[[int], Any] | None = None, app: str = ""
    ) -> None:
        self.channels = channels
        self._pull = pull
        self._app = app
        self._due = time.monotonic()
        self.sink_name = "punktfunk-embedded"
        self._cond = threading.Condition()
        self._pending = bytearray()
        self._chunk = SAMPLE_RATE * CHUNK_MS // 1000 * 2 * channels
        self._limit = self._chunk * AUDIO_BACKLOG_MS // CHUNK_MS
        self.dropped_bytes = 0
        self._closed = False

    def feed(self, pcm: bytes) -> None:
        with self._cond:
            room = self._limit - len(self._pending)
            if len(pcm) > room:
                self.dropped_bytes += len(pcm) - max(room, 0)
                pcm = pcm[: max(room, 0)]
            self._pending += pcm
            self._cond.notify()

    def read(self, timeout: float) -> AudioChunk | None:
        if self._pull is not None:
            self._pull_chunk()
        with self._cond:
            if len(self._pending) < self._chunk and not self._closed:
                self._cond.wait(timeout)
            if len(self._pending) < self._chunk:
                return None
            pcm = bytes(self._pending[: self._chunk])
            del self._pending[: self._chunk]
        return AudioChunk(pcm, self.channels, time.monotonic_ns())

    def _pull_chunk(self) -> None:
        # Nothing upstream paces a callback: ask for one chunk per 5 ms of wall time.
        with self._cond:
            if len(self._pending) >= self._chunk or self._closed:
                return
        now = time.monotonic()
        if now < self._due:
            time.sleep(self._due - now)
        self._due = max(self._due, now - 0.05) + CHUNK_MS / 1000
        frames = SAMPLE_RATE * CHUNK_MS // 1000
        pull = self._pull
        try:
            pcm = to_pcm16(pull(frames), self.channels) if pull is not None else b""
        except Exception as exc:  # the program's bug: silence from now on, the stream goes on
            self._pull = None
            event(_log, "embed.audio_callback_failed", logging.WARNING, app=self._app,
                  reason=repr(exc))  # fmt: skip
            return
        self.feed(pcm)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def to_pcm16(pcm: Any, channels: int) -> bytes:
    """float32 (-1..1) or int16 samples, (frames, channels) or interleaved, as s16le bytes."""
    samples = np.asarray(pcm)
    if samples.dtype == np.float32 or samples.dtype == np.float64:
        samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    elif samples.dtype != np.int16:
        raise ValueError(f"audio must be float32 or int16 samples at 48 kHz, not {samples.dtype}")
    if samples.ndim == 2:
        if samples.shape[1] == 1 and channels > 1:
            samples = np.repeat(samples, channels, axis=1)
        elif samples.shape[1] != channels:
            raise ValueError(
                f"the session plays {channels} channels: expected (frames, {channels}) or "
                f"(frames, 1) samples, got shape {samples.shape}"
            )
    elif samples.ndim == 1 and channels > 1:
        samples = np.repeat(samples, channels)  # mono, to every channel
    return samples.astype("<i2").tobytes()


class Session:
    """One client on an embedded app. Given to `on_session` callbacks and in `host.sessions`."""

    def __init__(self, app: str, mode: Mode, client_id: str, on_end: Callable[[Session], None]):
        self.app = app
        self.mode = mode
        self.client_id = client_id
        self.name = ""  # the protocol session's name, once it opened the session's input
        self.feed = RingFeed()
        self.injector = AppInjector(mode.width, mode.height, self._emit)
        self.pads = AppPads(self._emit)
        self.audio: _AudioOut | None = None
        self._audio_pull: Callable[[int], Any] | None = None
        self.started_ns = time.monotonic_ns()
        self._stats_fn: Callable[[], dict[str, object]] | None = None
        self._on_end = on_end
        self._ended = threading.Event()
        self._cond = threading.Condition()
        self._events: collections.deque[InputEvent] = collections.deque(maxlen=EVENT_BACKLOG)
        self._callbacks: list[Callable[[InputEvent], None]] = []
        self._throttle = Throttle()

    def __repr__(self) -> str:
        return (
            f"<punktfunk.Session {self.app!r} {self.mode.width}x{self.mode.height}@{self.mode.fps}>"
        )

    # --- input ----------------------------------------------------------------------------

    def _emit(self, ev: InputEvent) -> None:
        for callback in list(self._callbacks):
            try:
                callback(ev)
            except Exception as exc:  # the program's bug must not drop the protocol's input
                self._throttle.event(_log, "embed.input_callback_failed", logging.WARNING,
                                     app=self.app, reason=repr(exc))  # fmt: skip
        with self._cond:
            self._events.append(ev)
            self._cond.notify_all()

    def on_input(self, callback: Callable[[InputEvent], None]) -> None:
        """Call `callback(event)` for every input event (from a host thread; keep it short)."""
        self._callbacks.append(callback)

    def poll(self) -> list[InputEvent]:
        """The events that arrived since the last call, oldest first; never blocks."""
        with self._cond:
            out = list(self._events)
            self._events.clear()
        return out

    def events(self, timeout: float | None = None) -> Iterator[InputEvent]:
        """Input events as they arrive; ends when the session ends (or after `timeout` s with
        no event)."""
        while True:
            with self._cond:
                if not self._events:
                    if self._ended.is_set():
                        return
                    if not self._cond.wait(0.25 if timeout is None else timeout):
                        if timeout is not None:
                            return
                        continue
                if not self._events:
                    continue
                ev = self._events.popleft()
            yield ev

    # --- output ---------------------------------------------------------------------------

    def push(self, frame: Any) -> bool:
        """Publish a frame to this session only (see `PushSource.push`)."""
        from .frames import as_array

        pixels = as_array(frame)
        check_frame(pixels, self.mode)
        return self.feed.write(pixels, time.monotonic_ns())

    def rumble(self, pad: int, low: float, high: float, ms: int = 250) -> bool:
        """Run pad `pad`'s low/high-frequency motors at 0..1 for `ms` (0: until changed)."""
        return self.pads.rumble(pad, low, high, ms)

    def led(self, pad: int, r: int, g: int, b: int) -> bool:
        """Set pad `pad`'s lightbar colour (0..255 each), where the client's pad has one."""
        return self.pads.led(pad, r, g, b)

    def play(self, pcm: Any) -> None:
        """Queue 48 kHz audio (float32 -1..1 or int16; (frames, channels), or mono). Never
        blocks: more than ~200 ms ahead of the stream is dropped."""
        audio = self.audio
        if audio is None:
            return  # the client has not opened audio (yet)
        audio.feed(to_pcm16(pcm, audio.channels))

    def on_audio(self, callback: Callable[[int], Any]) -> None:
        """Pull audio instead of `play`: `callback(frames)` returns that many 48 kHz frames
        (as `play` takes them) each 5 ms, from a host thread; set it before the client opens
        audio (in the `on_session` start hook). An exception silences the session's audio."""
        self._audio_pull = callback

    def open_audio(self, channels: int) -> _AudioOut:
        self.audio = _AudioOut(channels, self._audio_pull, self.app)
        return self.audio

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return not self._ended.is_set()

    def wait_ended(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)

    @property
    def stats(self) -> dict[str, object]:
        """fps, bitrate, host latency and frame counts of the stream so far."""
        out: dict[str, object] = {
            "published": self.feed.published,
            "dropped_full": self.feed.dropped,
            "seconds": round((time.monotonic_ns() - self.started_ns) / 1e9, 3),
        }
        if self._stats_fn is not None:
            out.update(self._stats_fn())
        frames = out.get("frames")
        if isinstance(frames, int) and out["seconds"]:
            out["fps"] = round(frames / float(out["seconds"]), 1)  # type: ignore[arg-type]
        return out

    def end(self) -> None:
        """The stream ended (the host's capturer let go of the session's ring)."""
        if self._ended.is_set():
            return
        self._ended.set()
        self.feed.close()
        self.pads.close()
        if self.audio is not None:
            self.audio.close()
        with self._cond:
            self._cond.notify_all()
        self._on_end(self)
