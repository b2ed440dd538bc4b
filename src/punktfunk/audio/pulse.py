"""Per-session audio on a PulseAudio (or PipeWire-pulse) server.

A session gets a null sink `punktfunk-<session>` that its applications play into (their
environment points there, `session_env`), captured from its monitor in CHUNK_MS chunks, and
optionally a microphone: a null sink the host writes client audio into, exposed to
applications as the ordinary source `punktfunk-<session>-mic` (module-remap-source).

Every module we load carries `punktfunk.pid=<our pid>` in its arguments. Modules are unloaded
on close, by a finalizer if the owner is dropped without close (a dead session thread) and at
interpreter exit; `PulseServer.sweep()` unloads those of processes that died without either.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import weakref

from ..log import event
from .base import CHUNK_MS, SAMPLE_RATE, AudioCapturer, AudioChunk, VirtualMic
from .pasimple import PulseError, SimpleStream
from .tone import ToneCapturer

_log = logging.getLogger("punktfunk.audio.pulse")

CHANNEL_MAPS = {
    1: "mono",
    2: "front-left,front-right",
    6: "front-left,front-right,front-center,lfe,rear-left,rear-right",
    8: "front-left,front-right,front-center,lfe,rear-left,rear-right,side-left,side-right",
}
# Capture backlog beyond this is dropped, oldest first. It is a safety net against a long hang
# (never ship seconds of stale audio), not the latency target: in steady state a chunk leaves
# ~3 ms after it was rendered. On the shared 2-vCPU machines the whole box stalls for up to
# ~100 ms at times (raw parec sees the same stalls); the audio of such a stall comes out at once
# afterwards and is sent late (the client's jitter buffer trims it) rather than dropped, which
# would be an audible gap on top of the stall. Twice the worst stall seen keeps that true.
MAX_LATENCY_MS = 200
_CHUNK_FRAMES = SAMPLE_RATE * CHUNK_MS // 1000
_OWNER = re.compile(r"punktfunk\.pid=(\d+)")


def safe_name(session: str) -> str:
    """`session` reduced to what sink and source names may contain."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", session)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PulseServer:
    """A reachable sound server, driven with pactl (module loading is rare, once per session)."""

    def __init__(self, address: str, name: str) -> None:
        self.address = address  # what PULSE_SERVER must say for applications and libpulse
        self.name = name

    @classmethod
    def connect(cls, server: str | None = None, timeout: float = 5.0) -> PulseServer:
        """The server at `server` (default: libpulse's usual lookup); PulseError if none."""
        if shutil.which("pactl") is None:
            raise PulseError("pactl is not installed (Debian: pulseaudio-utils)")
        info = json.loads(_pactl(server, timeout, "-f", "json", "info"))
        path = info["server_string"]
        address = f"unix:{path}" if path.startswith("/") else path
        return cls(address, info.get("server_name", "?"))

    def pactl(self, *args: str) -> str:
        return _pactl(self.address, 10.0, *args)

    def load_module(self, name: str, args: str) -> int:
        return int(self.pactl("load-module", name, args).strip())

    def unload_module(self, index: int) -> None:
        try:
            self.pactl("unload-module", str(index))
        except PulseError as exc:
            event(_log, "audio.unload_failed", logging.WARNING, module=index, reason=exc)

    def modules(self) -> list[tuple[int, str, str]]:
        rows = []
        for line in self.pactl("list", "short", "modules").splitlines():
            index, name, args = [*line.split("\t"), "", ""][:3]
            rows.append((int(index), name, args))
        return rows

    def sinks(self) -> set[str]:
        return {line.split("\t")[1] for line in self.pactl("list", "short", "sinks").splitlines()}

    def sweep(self) -> int:
        """Unload modules left behind by punktfunk processes that no longer exist."""
        stale = [
            index
            for index, _, args in self.modules()
            if (m := _OWNER.search(args)) and not _alive(int(m.group(1)))
        ]
        for index in reversed(stale):
            self.unload_module(index)
        if stale:
            event(_log, "audio.swept", server=self.address, modules=len(stale))
        return len(stale)


def _pactl(server: str | None, timeout: float, *args: str) -> str:
    argv = ["pactl", *([f"--server={server}"] if server else []), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PulseError(f"pactl {' '.join(args)}: {exc}") from exc
    if done.returncode != 0:
        raise PulseError(f"pactl {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


class Owned:
    """What one capturer or mic holds on the server, released exactly once: on close(), when
    the owner is garbage-collected without close (its session thread died), or at exit.

    Worker threads must not reference the owner, or it could never be collected.
    """

    def __init__(self, owner: object, server: PulseServer) -> None:
        self.server = server
        self._modules: list[int] = []
        self._workers: list[Worker | SimpleStream] = []
        self._finalizer = weakref.finalize(owner, _release, server, self._modules, self._workers)

    def null_sink(self, name: str, channels: int) -> None:
        if name in self.server.sinks():
            self.server.sweep()
            if name in self.server.sinks():
                raise PulseError(f"sink {name} already exists (another live session?)")
        props = f"device.description={name} punktfunk.pid={os.getpid()}"
        self.load(
            "module-null-sink",
            f"sink_name={name} rate={SAMPLE_RATE} channels={channels} norewinds=1 "
            f'channel_map={CHANNEL_MAPS[channels]} sink_properties="{props}"',
        )

    def load(self, name: str, args: str) -> int:
        index = self.server.load_module(name, args)
        self._modules.append(index)
        return index

    def start(self, worker: Worker) -> None:
        self._workers.append(worker)
        worker.thread.start()

    def anchor(self, sink: str, channels: int) -> None:
        """Hold the sink at CHUNK_MS latency with an idle playback stream.

        An idle null sink renders in blocks of up to 2 s, and a monitor's latency request
        alone does not change that; a connected playback stream's request does, even while
        it plays nothing (it underruns once and stays connected).
        """
        stream = SimpleStream(record=False, device=sink, channel_map=CHANNEL_MAPS[channels],
                              latency_ms=CHUNK_MS, server=self.server.address,
                              name=f"{sink}-latency", start_at_once=True)  # fmt: skip
        self._workers.append(stream)
        stream.write(bytes(_CHUNK_FRAMES * 2 * channels))

    def kick(self, sink: str) -> None:
        """Restart a new null sink's clock so our latency request applies at once.

        A fresh null sink sleeps through its first (up to 2 s) render block before it looks at
        latency requests; a suspend/resume cycle starts it over at the requested latency.
        """
        self.server.pactl("suspend-sink", sink, "1")
        self.server.pactl("suspend-sink", sink, "0")

    def release(self) -> None:
        self._finalizer()


class Worker:
    """A stream plus the thread that drives it; the thread frees the stream when it ends."""

    def __init__(self, stream: SimpleStream, name: str) -> None:
        self.stream = stream
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def run(self) -> None:
        raise NotImplementedError

    def _main(self) -> None:
        try:
            self.run()
        finally:
            self.stream.close()  # only here: freeing under a blocked call would crash libpulse

    def stop(self) -> None:
        self.halt.set()
        if threading.current_thread() is not self.thread:
            self.thread.join(2.0)


def _release(server: PulseServer, modules: list[int], workers: list[Worker | SimpleStream]) -> None:
    while workers:
        worker = workers.pop()
        if isinstance(worker, Worker):
            worker.stop()
        else:
            worker.close()
    while modules:
        server.unload_module(modules.pop())


class _Reader(Worker):
    def __init__(self, stream: SimpleStream, channels: int, name: str) -> None:
        super().__init__(stream, name)
        self.channels = channels
        self.queue: queue.Queue[AudioChunk] = queue.Queue(MAX_LATENCY_MS // CHUNK_MS)
        self.chunks = 0
        self.dropped = 0

    def run(self) -> None:
        size = _CHUNK_FRAMES * 2 * self.channels
        chunk_ns = CHUNK_MS * 1_000_000
        backlog_ns = MAX_LATENCY_MS * 1_000_000
        read = 0
        live_origin = 0  # when chunk 0 would have been live, judging by the last blocking read
        while not self.halt.is_set():
            buf = bytearray(size)
            before = time.monotonic_ns()
            try:
                self.stream.read_into(buf)
            except PulseError as exc:
                event(_log, "audio.capture_failed", logging.WARNING, thread=self.thread.name,
                      reason=exc)  # fmt: skip
                return
            now = time.monotonic_ns()
            read += 1
            # A read that had to wait got the newest audio; one that returned at once got
            # buffered audio, as old as our count of chunks says. Past the bound, skip it.
            if read == 1 or now - before > 1_000_000:
                live_origin = now - read * chunk_ns
            elif now - (live_origin + read * chunk_ns) > backlog_ns:
                self.dropped += 1
                continue
            self.chunks += 1
            chunk = AudioChunk(bytes(buf), self.channels, now)
            try:
                self.queue.put_nowait(chunk)
            except queue.Full:  # the consumer fell behind: drop the oldest chunk
                with contextlib.suppress(queue.Empty):
                    self.queue.get_nowait()
                    self.dropped += 1
                self.queue.put_nowait(chunk)


class PulseCapturer:
    """`AudioCapturer` on a session null sink: 5 ms chunks with at most MAX_LATENCY_MS backlog."""

    def __init__(self, server: PulseServer, session: str, channels: int = 2) -> None:
        if channels not in (2, 6, 8):
            raise ValueError(f"unsupported channel count {channels} (2, 6 or 8)")
        self.server = server
        self._channels = channels
        self._sink = f"punktfunk-{safe_name(session)}"
        self._owned = Owned(self, server)
        try:
            self._owned.null_sink(self._sink, channels)
            self._owned.anchor(self._sink, channels)
            stream = SimpleStream(
                record=True, device=f"{self._sink}.monitor", channel_map=CHANNEL_MAPS[channels],
                latency_ms=CHUNK_MS, server=server.address, name=f"{self._sink}-capture",
            )  # fmt: skip
            self._owned.kick(self._sink)
        except PulseError:
            self._owned.release()
            raise
        self._reader = _Reader(stream, channels, f"audio-{self._sink}")
        self._owned.start(self._reader)
        event(_log, "audio.capture", sink=self._sink, channels=channels, server=server.address)

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def sink_name(self) -> str:
        return self._sink

    @property
    def chunks(self) -> int:
        return self._reader.chunks

    @property
    def dropped(self) -> int:
        """Chunks dropped so far because the consumer or the reader fell behind."""
        return self._reader.dropped

    def read(self, timeout: float) -> AudioChunk | None:
        try:
            return self._reader.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._owned.release()
        event(_log, "audio.capture_closed", sink=self._sink, chunks=self.chunks,
              dropped=self.dropped)  # fmt: skip


_fallback_logged = False


def open_capturer(session: str, channels: int = 2, server: str | None = None) -> AudioCapturer:
    """The session's capturer: a PulseCapturer, or the tone when no sound server is reachable."""
    global _fallback_logged
    try:
        pulse = PulseServer.connect(server)
        pulse.sweep()
        return PulseCapturer(pulse, session, channels)
    except PulseError as exc:
        if not _fallback_logged:
            event(_log, "audio.fallback_tone", logging.WARNING, reason=exc)
            _fallback_logged = True
        return ToneCapturer(channels)


def session_env(capturer: AudioCapturer, mic: VirtualMic | None = None) -> dict[str, str]:
    """What to export into the session's applications so they play (and record) here."""
    env: dict[str, str] = {}
    if isinstance(capturer, PulseCapturer):
        env["PULSE_SERVER"] = capturer.server.address
        env["PULSE_SINK"] = capturer.sink_name
    server = getattr(mic, "server", None)  # a PulseMic's server
    if mic is not None and isinstance(server, PulseServer):
        env["PULSE_SERVER"] = server.address
        env["PULSE_SOURCE"] = mic.source_name
    return env
