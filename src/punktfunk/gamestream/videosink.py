"""A GameStream session's video sink: frames into the packetizer's datagrams (FEC blocks,
optional AES-GCM), onto the video port towards the client. The same in the host process and in
a session's media worker (`gamestream/mediaworker.py`); only where `send` goes differs."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from ..encode.base import EncodedFrame, FrameType
from ..session import sendlimit
from ..session.pipeline import MediaSink
from .video import FrameKind, VideoPacketizer

Addr = tuple[str, int]


class VideoSink(MediaSink):
    def __init__(
        self,
        packetizer: VideoPacketizer,
        addr: Callable[[], Addr | None],
        send: Callable[[Sequence[bytes], Addr], None],
        on_sent: Callable[[int], None],
        loss_percent: int = 0,
        on_simulated_loss: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.packetizer = packetizer
        self._addr = addr
        self._send = send
        self._on_sent = on_sent
        self._epoch = time.monotonic_ns()
        # Simulated network loss (test_video_loss_percent): shards vanish as on a lossy link.
        self._loss = loss_percent / 100
        self._on_simulated_loss = on_simulated_loss
        self._rng = random.Random()

    def packetize(self, frame: EncodedFrame, latency_01ms: int) -> Sequence[bytes]:
        kind = FrameKind.IDR if frame.frame_type is FrameType.IDR else FrameKind.P
        ts = ((frame.capture_ns - self._epoch) * 90_000 // 1_000_000_000) & 0xFFFFFFFF
        return self.packetizer.packetize(frame.data, kind, ts, latency_01ms)

    def transmit(self, datagrams: Sequence[bytes]) -> None:
        addr = self._addr()
        if addr is None:
            return
        self._on_sent(len(datagrams))  # what the client's loss reports are measured against
        limiter = sendlimit.test_limiter
        if limiter is not None:
            datagrams = limiter.admit(datagrams)
        if self._loss:
            kept = [d for d in datagrams if self._rng.random() >= self._loss]
            self._on_simulated_loss(len(datagrams) - len(kept))
            datagrams = kept
        self._send(datagrams, addr)
