"""A punktfunk/2 session's media, inside its worker process (`session/worker.py` runs `run`).

The same parts as the in-process session: the capturer on the monitor's ring (attached through
the host, which holds the driver connection: the ring's eventfd travels there by SCM_RIGHTS),
the encoder, `VideoPipeline` + `NativeVideoSink` sealing with the session's media keys and
sending on a duplicate of the host's UDP socket (native media shares the QUIC port), the
speed-test probes (they share the video's packet numbers, so they must seal here too), and
the 5 ms Opus audio. QUIC datagrams (audio, host timing) and probe results go back to the host,
which owns the connection. Messages from the host, in order:
`("stream", spec, [udp fd])`, `("start",)`, then control: `keyframe`, `invalidate`, `fec`,
`bitrate`, `addr`, `probe`; `stop` ends it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

from ...audio.opus import OpusEncoder, gamestream_config
from ...audio.pulse import open_capturer
from ...encode.base import EncodedFrame, FrameType
from ...log import event
from ...session.pipeline import VideoPipeline
from ...session.worker import WorkerContext
from ...session.workermedia import open_media, release, serve
from ..wire.dgram import HostTiming, encode_audio
from ..wire.registry import MediaSuite
from ..wire.seal import MediaKeys, MediaSealer, Role
from .negotiate import timing_pts_ns
from .probeburst import PROBE_ONLY_BYTES, ProbeFiller, ProbeServer, declined
from .sink import BatchSender, NativeVideoSink

_log = logging.getLogger("punktfunk.native.worker")
AUDIO_FRAME_MS = 5


def _warm_up() -> None:
    """Seal one throwaway frame under throwaway keys: the FEC backend, its tables and the
    AEAD load now, while the session opens, not on its first frames (a fresh process has none
    of what a long-running host has warm)."""
    keys = MediaKeys.derive(os.urandom(32), MediaSuite.AES_128_GCM)
    sink = NativeVideoSink(MediaSealer(keys, Role.HOST), None, lambda: None, lambda ns: 0)  # type: ignore[arg-type]
    now = time.monotonic_ns()
    sink.packetize(EncodedFrame(os.urandom(20_000), FrameType.IDR, 0, 0, now, now), 0)


class _Media:
    def __init__(self, ctx: WorkerContext, spec: dict[str, Any]) -> None:
        self.ctx, self.spec, self.name = ctx, spec, spec["name"]
        self.plan = spec["plan"]
        self.capturer, self.encoder = open_media(ctx, spec)
        _warm_up()
        self.counters = SimpleNamespace(probes=0, probes_declined=0)
        self.sink: NativeVideoSink | None = None
        self.pipeline: VideoPipeline | None = None
        self.probes: ProbeServer | None = None
        self.sock: socket.socket | None = None
        self.addr: tuple[str, int] | None = None
        self.origin = (0, 0)
        self.threads: list[threading.Thread] = []

    def stream(self, spec: dict[str, Any], fds: list[int]) -> None:
        self.sock = socket.socket(fileno=fds[0])
        self.addr, self.origin = spec["addr"], (spec["origin_wall_ns"], spec["origin_mono_ns"])
        resume = spec.get("resume") or {}
        self.sealer = sealer = MediaSealer(spec["keys"], Role.HOST, resume.get("next_seq", 0))
        self.audio_seq = resume.get("audio_seq", 0)
        self.sink = sink = NativeVideoSink(
            sealer,
            BatchSender(self.sock),
            lambda: self.addr,
            self._pts_us,
            shard_payload=spec["shard"],
            fec_percent=spec["fec_percent"],
            on_sent=self._on_frame_sent,
        )
        if resume:  # a Reconfigure: the next epoch, frame numbers going on from the last
            sink.epoch = resume["epoch"]
            sink.frame_base, sink.last_frame = resume["last_frame"] + 1, resume["last_frame"]
        self.pipeline = VideoPipeline(
            self.capturer,
            self.encoder,
            sink,
            fps=self.plan.mode.refresh_hz,
            depth=self.plan.pipeline_depth,
            stats=self.ctx.stats,
            on_fatal=lambda reason: self.ctx.send(("fatal", f"video pipeline: {reason}")),
        )
        filler = ProbeFiller(
            sealer, self.sock, lambda: self.addr, spec["shard"], lambda: sink.epoch, self._pts_us
        )
        self.probes = ProbeServer(
            filler,
            spec["probe_seq"],
            self.ctx.stop,
            reply=lambda r: self.ctx.send(("probe_result", r)),
            counters=self.counters,
            name=self.name,
            byte_cap=PROBE_ONLY_BYTES if spec.get("probe_only") else None,
        )
        self.ctx.extra_state = self._state

    def _state(self) -> dict[str, Any]:
        sink = self.sink
        return {
            "next_seq": self.sealer.next_seq if sink else 0,
            "last_frame": sink.last_frame if sink else 0,
            "epoch": sink.epoch if sink else 0,
            "audio_seq": self.audio_seq,
            "packets": sink.packets if sink else 0,
            "fec_percent": sink.fec_percent if sink else 0,
            "probes": self.counters.probes,
            "probes_declined": self.counters.probes_declined,
        }

    def _pts_us(self, capture_ns: int) -> int:
        return ((capture_ns - self.origin[1]) // 1000) & 0xFFFF_FFFF

    def _on_frame_sent(self, frame: EncodedFrame, sent_ns: int) -> None:
        wall, mono = self.origin
        pts_ns = timing_pts_ns(wall, mono, frame.capture_ns)
        encode_us = (frame.encode_done_ns - frame.capture_ns) // 1000
        pace_us = (sent_ns - frame.encode_done_ns) // 1000
        timing = HostTiming(pts_ns, (sent_ns - frame.capture_ns) // 1000, (0, encode_us, pace_us))
        self.ctx.send(("dgram", timing.encode()))

    def start(self, audio: bool) -> None:
        assert self.pipeline is not None
        self.pipeline.start()
        self.pipeline.request_keyframe()
        if audio:
            self._spawn(self._audio_loop, "audio")

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def control(self, message: tuple[Any, ...]) -> None:
        pipeline, sink = self.pipeline, self.sink
        match message:
            case ("keyframe",) if pipeline is not None:
                pipeline.request_keyframe()
            case ("invalidate", first, last) if pipeline is not None and sink is not None:
                base = sink.frame_base
                pipeline.invalidate_ref_frames(max(0, first - base), max(0, last - base))
            case ("fec", percent) if sink is not None:
                sink.fec_percent = percent
            case ("bitrate", kbps):
                self.encoder.set_bitrate(kbps)
            case ("addr", addr):
                self.addr = addr
            case ("probe", req):
                probes = self.probes
                if probes is None or not probes.offer(req):
                    self.counters.probes_declined += 1
                    self.ctx.send(("probe_result", declined()))
                elif not probes.running:
                    probes.running = True
                    self._spawn(lambda: probes.serve(None), "probe")

    def _audio_loop(self) -> None:
        try:
            capturer = open_capturer(self.name, 2)
            encode = OpusEncoder(gamestream_config(2, False, AUDIO_FRAME_MS)).encode
        except Exception as exc:
            event(_log, "audio.unavailable", logging.WARNING, session=self.name, reason=repr(exc))
            return
        frame_bytes = 48 * AUDIO_FRAME_MS * 2 * 2
        pending = b""
        wall, mono = self.origin
        try:
            while not self.ctx.stop.is_set():
                chunk = capturer.read(timeout=0.1)
                if chunk is None:
                    continue
                pending += chunk.pcm
                while len(pending) >= frame_bytes:
                    opus = encode(pending[:frame_bytes])
                    pending = pending[frame_bytes:]
                    pts = wall + (chunk.capture_ns - mono)
                    self.ctx.send(("dgram", encode_audio(self.audio_seq, pts, opus)))
                    self.audio_seq += 1
                    self.ctx.stats.count("audio_packets")
        finally:
            capturer.close()

    def close(self) -> None:
        self.ctx.stop.set()
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.probes is not None:
            self.probes.close()
        for thread in self.threads:
            thread.join(timeout=5)
        release(self.capturer, self.encoder, self.sock)


def run(ctx: WorkerContext, spec: dict[str, Any]) -> None:
    serve(ctx, spec, _Media)
