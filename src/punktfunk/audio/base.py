"""The AudioCapturer and VirtualMic seams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

SAMPLE_RATE = 48_000
CHUNK_MS = 5


@dataclass(frozen=True)
class AudioChunk:
    """Interleaved signed 16-bit PCM at 48 kHz."""

    pcm: bytes
    channels: int
    capture_ns: int

    @property
    def frames(self) -> int:
        return len(self.pcm) // (2 * self.channels)


@runtime_checkable
class AudioCapturer(Protocol):
    @property
    def channels(self) -> int: ...
    @property
    def sink_name(self) -> str:
        """Where the session's applications must play (exported into their environment)."""

    def read(self, timeout: float) -> AudioChunk | None:
        """One CHUNK_MS chunk, or None if none arrived within `timeout` s."""

    def close(self) -> None: ...


@runtime_checkable
class VirtualMic(Protocol):
    @property
    def source_name(self) -> str: ...
    def write(self, chunk: AudioChunk) -> None: ...
    def close(self) -> None: ...
