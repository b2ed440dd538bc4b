"""A GameStream session's video, inside its worker process (`session/worker.py` runs `run`).

The capturer on the monitor's ring and the encoder (`session/workermedia.py`), the same
`VideoPipeline` and `VideoSink` as in the host (FEC blocks, AES-GCM where the client asked for
encrypted video), sending on a duplicate of the host's video socket (every session shares the
video port) to the address the client pings from, which the host forwards. The host keeps the
RTSP and ENet control, input and audio. Messages from the host, in order:
`("stream", spec, [udp fd])`, `("start", _)`, then control: `keyframe`, `invalidate`, `fec`,
`bitrate`, `addr`; `stop` ends it. Its heartbeat carries the shards sent so far, which the
host's loss windows measure the client's reports against.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from ..session.pipeline import VideoPipeline
from ..session.worker import WorkerContext
from ..session.workermedia import open_media, release, serve
from .media import send_each
from .video import FrameKind, VideoPacketizer
from .videosink import Addr, VideoSink


class _Media:
    def __init__(self, ctx: WorkerContext, spec: dict[str, Any]) -> None:
        self.ctx, self.plan = ctx, spec["plan"]
        self.capturer, self.encoder = open_media(ctx, spec)
        self.addr: Addr | None = None
        self.shards = 0
        self.sock: socket.socket | None = None
        self.packetizer: VideoPacketizer | None = None
        self.pipeline: VideoPipeline | None = None
        ctx.extra_state = lambda: {"shards": self.shards}

    def stream(self, spec: dict[str, Any], fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.addr = spec["addr"]
        key = spec["key"]
        # FEC tables and the AEAD load now, on a throwaway packetizer, not on the first frames.
        warm = VideoPacketizer(spec["packet_size"], 20, 0, os.urandom(16) if key else None)
        warm.packetize(os.urandom(20_000), FrameKind.IDR, 0, 0)
        packetizer = VideoPacketizer(
            spec["packet_size"], spec["fec_percent"], spec["min_parity"], key
        )
        self.packetizer = packetizer
        sink = VideoSink(packetizer, lambda: self.addr, self._send, self._sent)
        self.pipeline = VideoPipeline(
            self.capturer,
            self.encoder,
            sink,
            fps=spec["fps"],
            depth=self.plan.pipeline_depth,
            stats=self.ctx.stats,
            on_fatal=lambda reason: self.ctx.send(("fatal", f"video pipeline: {reason}")),
        )

    def _sent(self, count: int) -> None:
        self.shards += count

    def _send(self, datagrams: Sequence[bytes], addr: Addr) -> None:
        assert self.sock is not None
        send_each(self.sock, datagrams, addr)

    def start(self, audio: bool) -> None:
        """`audio` is punktfunk/2's: GameStream audio stays in the host."""
        assert self.pipeline is not None
        self.pipeline.start()
        self.pipeline.request_keyframe()

    def control(self, message: tuple[Any, ...]) -> None:
        pipeline = self.pipeline
        match message:
            case ("keyframe",) if pipeline is not None:
                pipeline.request_keyframe()
            case ("invalidate", first, last) if pipeline is not None:
                pipeline.invalidate_ref_frames(first, last)
            case ("fec", percent) if self.packetizer is not None:
                self.packetizer.fec_percentage = percent  # read once per frame
            case ("bitrate", kbps):
                self.encoder.set_bitrate(kbps)
            case ("addr", addr):
                self.addr = addr

    def close(self) -> None:
        self.ctx.stop.set()
        if self.pipeline is not None:
            self.pipeline.stop()
        release(self.capturer, self.encoder, self.sock)


def run(ctx: WorkerContext, spec: dict[str, Any]) -> None:
    serve(ctx, spec, _Media)
