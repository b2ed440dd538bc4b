"""A GameStream session's video, inside its worker process (`session/worker.py` runs `run`).

The capturer on the monitor's ring and the encoder (`session/workermedia.py`), the same
`VideoPipeline` and `VideoSink` as in the host (FEC blocks, AES-GCM where the client asked for
encrypted video), sending on a duplicate of the host's video socket (every session shares the
video port) to the address the client pings from, which the host forwards. The audio too
(capture, Opus, RTP with FEC and AES where asked) on a duplicate of the audio port's socket,
except an embedded program's, which plays into the host. The host keeps the RTSP and ENet
control and input. Messages from the host, in order: `("stream", spec, [video fd, audio fd])`,
`("start", audio)`, then control: `keyframe`, `invalidate`, `fec`, `bitrate`, `addr`,
`audio_addr`; `stop` ends it. Its heartbeat carries the shards sent so far, which the
host's loss windows measure the client's reports against.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

from ..audio.opus import OpusEncoder, gamestream_config
from ..audio.pulse import open_capturer
from ..log import event
from ..session.pipeline import VideoPipeline
from ..session.worker import WorkerContext
from ..session.workermedia import open_media, release, serve
from .audio import AudioPacketizer
from .media import pump_audio, send_each
from .video import FrameKind, VideoPacketizer
from .videosink import Addr, VideoSink

_log = logging.getLogger("punktfunk.gamestream.worker")


class _Media:
    def __init__(self, ctx: WorkerContext, spec: dict[str, Any]) -> None:
        self.ctx, self.plan, self.name = ctx, spec["plan"], spec["name"]
        self.capturer, self.encoder = open_media(ctx, spec)
        self.audio: dict[str, Any] | None = None
        self.audio_sock: socket.socket | None = None
        self.audio_addr: Addr | None = None
        self.audio_thread: threading.Thread | None = None
        self.addr: Addr | None = None
        self.shards = 0
        self.sock: socket.socket | None = None
        self.packetizer: VideoPacketizer | None = None
        self.pipeline: VideoPipeline | None = None
        ctx.extra_state = lambda: {"shards": self.shards}

    def stream(self, spec: dict[str, Any], fds: list[int]) -> None:
        self.sock = socket.socket(fileno=fds[0])
        self.addr = spec["addr"]
        if spec.get("audio") is not None and len(fds) > 1:
            self.audio, self.audio_sock = spec["audio"], socket.socket(fileno=fds[1])
            self.audio_addr = self.audio["addr"]
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
        assert self.pipeline is not None
        self.pipeline.start()
        self.pipeline.request_keyframe()
        if audio and self.audio is not None:
            self.audio_thread = threading.Thread(target=self._audio_loop, name="audio", daemon=True)
            self.audio_thread.start()

    def _audio_loop(self) -> None:
        spec = self.audio
        assert spec is not None and self.audio_sock is not None
        channels, packet_ms = spec["channels"], spec["packet_ms"]
        try:
            capturer = open_capturer(self.name, channels)
            encode = OpusEncoder(
                gamestream_config(channels, spec["high_quality"], packet_ms)
            ).encode
        except Exception as exc:
            event(_log, "audio.unavailable", logging.WARNING, session=self.name, reason=repr(exc))
            return
        sock = self.audio_sock

        def send(datagrams: Sequence[bytes], addr: Addr) -> None:
            send_each(sock, datagrams, addr)
            self.ctx.stats.count("audio_packets")

        packetizer = AudioPacketizer(spec["key"], spec["key_id"], packet_ms)
        pump_audio(capturer, encode, packetizer, 48 * packet_ms * channels * 2,
                   lambda: self.audio_addr, send, self.ctx.stop.is_set)  # fmt: skip

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
            case ("audio_addr", addr):
                self.audio_addr = addr

    def close(self) -> None:
        self.ctx.stop.set()
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.audio_thread is not None:
            self.audio_thread.join(timeout=5)
        if self.audio_sock is not None:
            self.audio_sock.close()
        release(self.capturer, self.encoder, self.sock)


def run(ctx: WorkerContext, spec: dict[str, Any]) -> None:
    serve(ctx, spec, _Media)
