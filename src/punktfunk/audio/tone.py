"""The embedded-default capturer: a sine at a known frequency, paced in real time.

Used when no sound server is reachable, so a session still streams (audible, checkable) audio
and every layer above capture runs as it would with a real sink.
"""

from __future__ import annotations

import time

import numpy as np

from .base import CHUNK_MS, SAMPLE_RATE, AudioChunk

TONE_HZ = 440.0
_FRAMES = SAMPLE_RATE * CHUNK_MS // 1000


class ToneCapturer:
    """`AudioCapturer` that needs nothing installed; applications have no sink to play into."""

    def __init__(self, channels: int = 2, frequency: float = TONE_HZ, level: float = 0.25) -> None:
        self._channels = channels
        self._omega = 2 * np.pi * frequency / SAMPLE_RATE
        self._amplitude = level * 32767
        self._n = 0  # chunks produced; chunk n is due at start + (n + 1) * CHUNK_MS
        self._start = time.monotonic_ns()
        self._closed = False

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def sink_name(self) -> str:
        return ""

    def read(self, timeout: float) -> AudioChunk | None:
        if self._closed:
            return None
        due = self._start + (self._n + 1) * CHUNK_MS * 1_000_000
        wait = (due - time.monotonic_ns()) / 1e9
        if wait > timeout:
            time.sleep(max(timeout, 0.0))
            return None
        if wait > 0:
            time.sleep(wait)
        t = np.arange(self._n * _FRAMES, (self._n + 1) * _FRAMES)
        wave = (np.sin(self._omega * t) * self._amplitude).astype("<i2")
        self._n += 1
        pcm = np.repeat(wave, self._channels).tobytes()  # same signal on every channel
        return AudioChunk(pcm, self._channels, time.monotonic_ns())

    def close(self) -> None:
        self._closed = True
