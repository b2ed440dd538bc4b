"""A session's media in a worker process, seen from the protocol's session (host side).

`RemoteSource` takes the place of the in-process `VideoSource`: it spawns the worker (first, so
the interpreter starts while the monitor is acquired), holds the monitor lease, answers the
worker's ring attaches with the driver connection, and hands the worker what it needs to
stream. Its `pipeline` facade (and, for punktfunk/2, its `sink`) stands where the session used
the in-process `VideoPipeline` and sink, so the session's feedback, bitrate and loss handling
stay as they are; each call becomes one small message on the worker's socket. A worker that
dies or hangs ends only its own session (`on_fatal`), and `close()` releases the lease, the
worker's rings and its process however it ended. `target` names the protocol's worker code
(`native/host/mediaworker.py`, `gamestream/mediaworker.py`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..log import event
from ..proto.frame import GENERATION_BITS
from .plan import ClientRequest, SessionPlan
from .stats import StageStats
from .worker import merge_into
from .workerproc import Message, WorkerProcess

_log = logging.getLogger("punktfunk.session.remote")
NATIVE_TARGET = "punktfunk.native.host.mediaworker:run"
GAMESTREAM_TARGET = "punktfunk.gamestream.mediaworker:run"
OPEN_TIMEOUT_S = 60.0
SHM_DIR = "/dev/shm"


class WorkerOpenError(Exception):
    """The worker could not open the session's capturer or encoder (or did not start)."""


class _Pipeline:
    """What the session calls on its pipeline, forwarded."""

    def __init__(self, source: RemoteSource) -> None:
        self._source = source
        self.encoder = self  # `pipeline.encoder.set_bitrate(...)`

    def start(self) -> None:
        self._source.worker.send(("start", self._source.audio))

    def stop(self) -> None:
        self._source.stop_worker()

    def request_keyframe(self) -> None:
        self._source.worker.send(("keyframe",))

    def invalidate_ref_frames(self, first: int, last: int) -> None:
        # Wire frame numbers (`frame_base` is 0 here): the worker's sink knows its epoch base.
        self._source.worker.send(("invalidate", first, last))

    def set_bitrate(self, kbps: int) -> None:
        self._source.worker.send(("bitrate", kbps))


class _Sink:
    """The sink's fields the session reads and sets."""

    frame_base = 0
    epoch = 0

    def __init__(self, source: RemoteSource, fec_percent: int) -> None:
        self._source = source
        self._fec = fec_percent

    @property
    def fec_percent(self) -> int:
        return self._fec

    @fec_percent.setter
    def fec_percent(self, percent: int) -> None:
        self._fec = percent
        self._source.worker.send(("fec", percent))

    @property
    def packets(self) -> int:
        return int(self._source.state.get("packets", 0))


class RemoteSource:
    """A `VideoSource` whose capturer and encoder live in a worker process."""

    capturer = None
    encoder = None

    def __init__(
        self,
        services: Any,
        request: ClientRequest,
        client_id: str,
        name: str,
        stats: StageStats,
        audio: bool,
        target: str = NATIVE_TARGET,
    ) -> None:
        self.name, self.stats, self.audio = name, stats, audio
        self.state: dict[str, Any] = {}
        self.lease: Any = None
        self.plan: SessionPlan | None = None
        self._rings: set[str] = set()
        self._lock = threading.Lock()
        self._opened = threading.Event()
        self._open_error = ""
        self._closed = False
        self._fatal = ""
        self._addr: Callable[[], tuple[str, int] | None] = lambda: None
        self._last_addr: tuple[str, int] | None = None
        self.on_datagram: Callable[[bytes], None] = lambda data: None
        self.on_probe_result: Callable[[Any], None] = lambda result: None
        self.on_fatal: Callable[[str], None] = lambda reason: None
        self.on_heartbeat: Callable[[dict[str, Any]], None] = lambda state: None
        self.pipeline = _Pipeline(self)
        self.sink: _Sink | None = None
        self.final: dict[str, int] = {}
        self.worker = WorkerProcess(name, self._on_message, self._on_exit)
        try:
            self.plan, self.lease = services.open_lease(request, client_id)
            self.audio = audio and services.audio_in_worker(self.lease)
            backend, params = services.encoder_spec(self.plan)
            spec = {
                "name": name,
                "plan": self.plan,
                "output": self.lease.output,
                "env": self.lease.environment() if hasattr(self.lease, "environment") else {},
                "backend": backend,
                "params": params,
                "generation_base": random.randrange(1, 1 << GENERATION_BITS - 1),
            }
            self.worker.send(("run", target, spec))
            if not self._opened.wait(OPEN_TIMEOUT_S):
                raise WorkerOpenError("the media worker did not open in time")
            if self._open_error:
                raise WorkerOpenError(self._open_error)
        except BaseException:
            self.close()
            raise

    # --- VideoSource ----------------------------------------------------------------------

    @property
    def display_name(self) -> str:
        return str(self.lease.output.display_name)

    @property
    def app_env(self) -> dict[str, str]:
        return dict(self.lease.environment())

    # --- streaming ------------------------------------------------------------------------

    def send_stream(self, spec: dict[str, Any], *socks: socket.socket) -> None:
        """Hand the worker its stream spec and duplicates of the shared UDP sockets it sends
        on (SCM_RIGHTS): video first, then GameStream's audio port where audio is its."""
        self.worker.send(("stream", spec), tuple(sock.fileno() for sock in socks))

    def stream(
        self,
        keys: Any,
        sock: socket.socket,
        addr: Callable[[], tuple[str, int] | None],
        *,
        shard: int,
        fec_percent: int,
        origin: tuple[int, int],
        probe_seq: bool,
        resume: dict[str, int] | None = None,
    ) -> _Sink:
        """punktfunk/2: the worker's keys, shard size, FEC and clock origin."""
        self._addr = addr
        self._last_addr = addr()
        self.sink = _Sink(self, fec_percent)
        spec = {
            "keys": keys,
            "addr": self._last_addr,
            "shard": shard,
            "fec_percent": fec_percent,
            "origin_wall_ns": origin[0],
            "origin_mono_ns": origin[1],
            "probe_seq": probe_seq,
            "resume": resume,
        }
        self.send_stream(spec, sock)
        return self.sink

    def probe(self, request: Any) -> None:
        self.worker.send(("probe", request))

    # --- from the worker (its reader thread) ------------------------------------------------

    def _on_message(self, message: Message, fds: list[int]) -> None:
        kind = message[0]
        if kind == "attach":
            self._attach(message[1], fds)
            return
        for fd in fds:  # nothing else carries fds
            os.close(fd)
        if kind == "dgram":
            self.on_datagram(message[1])
        elif kind == "hb":
            merge_into(self.stats, message[1])
            self.state = message[2]
            self.on_heartbeat(self.state)
            if self._opened.is_set():  # (before its "run", a worker takes no other word)
                # A no-op control message per heartbeat: the worker times every one it acts
                # on (`control_forward`), so how long control takes to reach it is measured.
                self.worker.send(("ping",))
            addr = self._addr()
            if addr is not None and addr != self._last_addr:  # QUIC path migration
                self._last_addr = addr
                self.worker.send(("addr", addr))
        elif kind == "probe_result":
            self.on_probe_result(message[1])
        elif kind == "opened":
            event(_log, "worker.opened", session=self.name, ms=message[1])
            self._opened.set()
        elif kind == "open_failed":
            self._open_error = str(message[1])
            self._opened.set()
        elif kind == "fatal":
            self._fatal = str(message[1])
        elif kind == "stopped":
            self.final = message[1]

    def _attach(self, ring_name: str, fds: list[int]) -> None:
        fd = fds[0] if fds else None
        error = ""
        try:
            with self._lock:
                if self._closed or self.lease is None:
                    raise RuntimeError("the session is closing")
                self.lease.attach_ring(ring_name, fd)
                if ring_name:
                    self._rings.add(ring_name)
        except Exception as exc:
            error = str(exc) or repr(exc)
        finally:
            for extra in fds:
                os.close(extra)
        self.worker.send(("attach_done", error))

    def _on_exit(self, reason: str) -> None:
        if not self._opened.is_set():
            self._open_error = self._fatal or reason or "the media worker exited"
            self._opened.set()
            return
        if reason or self._fatal:
            self.on_fatal(self._fatal or reason)

    # --- the end --------------------------------------------------------------------------

    def stop_worker(self) -> None:
        self.worker.stop()

    def finish(self) -> dict[str, int]:
        """Stop the worker; where its stream ended (`next_seq`, `last_frame`, `epoch`,
        `audio_seq`), for the worker that continues the session."""
        self.on_fatal = lambda reason: None
        self.worker.stop()
        final = {**self.state, **self.final}
        # Never a packet number twice, even if the last heartbeat was not the last word.
        final["next_seq"] = int(final.get("next_seq", 0)) + (0 if self.final else 1 << 16)
        return {k: int(final.get(k, 0)) for k in ("next_seq", "last_frame", "epoch", "audio_seq")}

    def close(self) -> None:
        """Stop the worker (if still running), then release its rings and the monitor."""
        self.worker.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            rings, self._rings = self._rings, set()
            lease = self.lease
        if lease is not None and rings:
            with contextlib.suppress(Exception):
                lease.attach_ring("", None)  # the driver stops writing into a dead ring
        for ring in rings:  # a killed worker could not unlink them itself
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(SHM_DIR, ring.lstrip("/")))
        if lease is not None:
            lease.close()
