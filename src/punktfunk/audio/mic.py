"""Microphone passthrough: client audio written into a per-session source apps record from.

A null sink `punktfunk-<session>-mic-sink` receives the decoded PCM; module-remap-source turns
its monitor into the ordinary source `punktfunk-<session>-mic` (applications and pickers hide
monitors), which `session_env` exports as PULSE_SOURCE.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue

import av

from ..log import event
from .base import AudioChunk
from .opus import OpusDecoder
from .pasimple import PulseError, SimpleStream
from .pulse import CHANNEL_MAPS, Owned, PulseServer, Worker, safe_name

_log = logging.getLogger("punktfunk.audio.mic")
MIC_LATENCY_MS = 40  # absorbs client packet jitter; voice tolerates it


class _Writer(Worker):
    def __init__(self, stream: SimpleStream, name: str) -> None:
        super().__init__(stream, name)
        self.queue: queue.Queue[bytes | None] = queue.Queue(16)  # 80-320 ms of packets

    def put(self, pcm: bytes | None) -> None:
        """Never blocks the caller: a full backlog drops the oldest packet."""
        try:
            self.queue.put_nowait(pcm)
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                self.queue.get_nowait()
            self.queue.put_nowait(pcm)

    def run(self) -> None:
        while not self.halt.is_set() and (pcm := self.queue.get()) is not None:
            try:
                self.stream.write(pcm)
            except PulseError as exc:
                event(_log, "audio.mic_failed", logging.WARNING, thread=self.thread.name,
                      reason=exc)  # fmt: skip
                return

    def stop(self) -> None:
        self.halt.set()
        self.put(None)  # wakes the writer
        super().stop()


class PulseMic:
    """`VirtualMic` on a sound server; `write_opus` takes the client's packets as they come."""

    def __init__(self, server: PulseServer, session: str, channels: int = 1) -> None:
        if channels not in (1, 2):
            raise ValueError(f"unsupported microphone channel count {channels} (1 or 2)")
        self.server = server
        self._channels = channels
        self._source = f"punktfunk-{safe_name(session)}-mic"
        sink = f"{self._source}-sink"
        self._owned = Owned(self, server)
        try:
            self._owned.null_sink(sink, channels)
            stream = SimpleStream(
                record=False, device=sink, channel_map=CHANNEL_MAPS[channels],
                latency_ms=MIC_LATENCY_MS, server=server.address, name=f"{self._source}-writer",
            )  # fmt: skip
            # Kick before the remap source exists: suspending under it leaves it silent.
            self._owned.kick(sink)
            self._owned.load("module-remap-source",
                             f"master={sink}.monitor source_name={self._source} "
                             f"channels={channels} channel_map={CHANNEL_MAPS[channels]} "
                             f'source_properties="device.description={self._source} '
                             f'punktfunk.pid={os.getpid()}"')  # fmt: skip
        except PulseError:
            self._owned.release()
            raise
        self._decoder: OpusDecoder | None = None
        self.bad_packets = 0  # client packets the decoder refused (dropped, counted)
        self._writer = _Writer(stream, f"mic-{self._source}")
        self._owned.start(self._writer)
        event(_log, "audio.mic", source=self._source, channels=channels, server=server.address)

    @property
    def source_name(self) -> str:
        return self._source

    def write(self, chunk: AudioChunk) -> None:
        if chunk.channels != self._channels:
            raise ValueError(f"mic has {self._channels} channel(s), chunk has {chunk.channels}")
        self._writer.put(chunk.pcm)

    def write_opus(self, packet: bytes) -> None:
        """One client Opus packet (mono or stereo, as the mic was opened). A packet the
        decoder refuses is dropped and counted: it is the client's data, and one bad packet
        must not take the caller's receive loop down."""
        if self._decoder is None:
            self._decoder = OpusDecoder(self._channels)
        try:
            pcm = self._decoder.decode(packet)
        except (av.FFmpegError, ValueError) as exc:
            self.bad_packets += 1
            event(_log, "audio.mic_bad_packet", logging.DEBUG, source=self._source,
                  size=len(packet), reason=exc)  # fmt: skip
            return
        if pcm:
            self._writer.put(pcm)

    def close(self) -> None:
        self._owned.release()


def open_mic(session: str, channels: int = 1, server: str | None = None) -> PulseMic | None:
    """The session's microphone, or None (logged) when no sound server can take one."""
    try:
        return PulseMic(PulseServer.connect(server), session, channels)
    except PulseError as exc:
        event(_log, "audio.mic_unavailable", logging.WARNING, session=session, reason=exc)
        return None
