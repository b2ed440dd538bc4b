"""The session pipeline pulls frames: a slow encoder lowers the frame rate, never adds latency.

A real software encoder (libx264 through PyAVEncoder, pipeline depth 2) made slow by a fixed
delay per frame sits behind frames captured at 60 Hz; what a client would notice is the host
latency of the frames that reach the sink, and how many IDRs a burst of loss reports costs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from paced_frames import PacedFrames
from punktfunk.capture.base import CapturedFrame
from punktfunk.capture.outring import OutRing
from punktfunk.encode.backends import spec_for
from punktfunk.encode.base import Codec, EncodedFrame, EncoderBackend, FrameType
from punktfunk.encode.pyav import EncoderParams, PyAVEncoder
from punktfunk.encode.scene import DesktopScene
from punktfunk.proto.frame import PixelFormat
from punktfunk.session.pipeline import IDLE_REPEAT_S, Mailbox, VideoPipeline
from punktfunk.session.stats import LiveStatus

FPS = 60
INTERVAL_S = 1 / FPS


class SlowEncoder(PyAVEncoder):
    """libx264 that takes `delay_s` longer per frame, as a heavy codec on a small CPU does."""

    def __init__(self, delay_s: float) -> None:
        params = EncoderParams(bitrate_kbps=2_000, fps=FPS, pipeline_depth=2)
        super().__init__(spec_for(EncoderBackend.SOFTWARE, Codec.H264), params)
        self.delay_s = delay_s

    def _encode_job(self, job) -> None:  # type: ignore[no-untyped-def]
        time.sleep(self.delay_s)
        super()._encode_job(job)


def desktop() -> list[np.ndarray]:
    scene = DesktopScene(320, 240, PixelFormat.BGRA8)
    return [scene.render(i, scene.buffer()).copy() for i in range(4)]


def desktop_frames(static_after: int | None = None) -> PacedFrames:
    """A busy desktop at 60 Hz (or one that stops changing after `static_after` frames)."""
    return PacedFrames(desktop(), FPS, static_after)


class RecordingSink:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[FrameType, int]] = []  # (type, seq-less capture_ns) per frame

    def packetize(self, frame: EncodedFrame, latency_01ms: int) -> Sequence[bytes]:
        with self.lock:
            self.sent.append((frame.frame_type, frame.capture_ns))
        return [frame.data]

    def transmit(self, datagrams: Sequence[bytes]) -> None:
        pass

    def idrs(self) -> int:
        with self.lock:
            return sum(1 for t, _ in self.sent if t is FrameType.IDR)

    def count(self) -> int:
        with self.lock:
            return len(self.sent)


def run(
    encoder: PyAVEncoder, seconds: float, capturer: PacedFrames | None = None
) -> tuple[VideoPipeline, RecordingSink]:
    sink = RecordingSink()
    pipeline = VideoPipeline(capturer or desktop_frames(), encoder, sink, fps=FPS, depth=2)
    pipeline.start()
    time.sleep(seconds)
    return pipeline, sink


def wait_for(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_mailbox_keeps_only_the_newest_frame() -> None:
    box = Mailbox()
    frames = [CapturedFrame(np.zeros((2, 2, 4), np.uint8), PixelFormat.BGRA8, i, i, False)
              for i in range(3)]  # fmt: skip
    assert box.put(frames[0]) is None
    assert box.put(frames[1]) is frames[0]  # the untaken frame is the stale one
    assert box.put(frames[2]) is frames[1]
    assert box.take(0.0) is frames[2]
    assert box.take(0.01) is None


def test_a_slow_encoder_drops_stale_frames_instead_of_queueing_them() -> None:
    delay = 0.05  # the encoder manages ~18 fps of a 60 Hz display
    encoder = SlowEncoder(delay)
    pipeline, _ = run(encoder, 1.0)  # the encoder opens, its estimates settle
    pipeline.stats = stats = type(pipeline.stats)()
    status = LiveStatus()
    status.line("s", stats, time.monotonic())
    time.sleep(3.0)
    line = status.line("s", stats, time.monotonic())
    pipeline.stop()
    encoder.close()
    bare = [c + e + delay * 1e3 for c, e in list(encoder.timings)[-20:]]  # timings skip it
    bare_p50_ms = sorted(bare)[len(bare) // 2]
    latency = stats.stage("host_latency")
    waited = stats.stage("queue_wait")
    # Frames the encoder could not take were replaced by newer ones, not queued behind it.
    assert stats.counter("dropped_stale") > stats.counter("frames"), stats.snapshot()
    # Host latency is about one convert+encode plus the age of the newest frame at pull time
    # (under one display interval); a chain of full queues would add several encode times.
    assert latency.p50_ms < bare_p50_ms + 2 * INTERVAL_S * 1e3 + 15, (latency, bare_p50_ms)
    assert latency.p99_ms < 2 * bare_p50_ms + 4 * INTERVAL_S * 1e3 + 40, (latency, bare_p50_ms)
    assert waited.p50_ms < 2 * INTERVAL_S * 1e3 + 10, stats.snapshot()
    assert "encoder-bound: " in line and "frames/s dropped" in line, line  # the status line
    # The frame rate is what the encoder sustains, not less.
    assert stats.counter("frames") >= 0.5 * 3.0 / (bare_p50_ms / 1e3), stats.snapshot()


def test_an_encoder_that_keeps_up_sends_every_frame_at_the_display_rate() -> None:
    encoder = SlowEncoder(0.0)  # plain libx264 at 320x240: a few ms per frame
    pipeline, _ = run(encoder, 0.5)
    pipeline.stats = stats = type(pipeline.stats)()
    time.sleep(2.0)
    pipeline.stop()
    encoder.close()
    # The pull gate never holds back an encoder with time to spare.
    assert stats.counter("frames") >= 0.5 * FPS * 2.0, stats.snapshot()
    assert stats.counter("dropped_stale") <= 0.25 * stats.counter("frames"), stats.snapshot()


def test_latency_does_not_grow_over_a_long_overload() -> None:
    encoder = SlowEncoder(0.04)
    pipeline, _ = run(encoder, 1.0)
    pipeline.stats = early = type(pipeline.stats)()
    time.sleep(1.5)
    pipeline.stats = late = type(pipeline.stats)()
    time.sleep(1.5)
    pipeline.stop()
    encoder.close()
    first, last = early.stage("host_latency"), late.stage("host_latency")
    assert first.count and last.count
    assert last.p50_ms < first.p50_ms * 1.5 + 20, (first, last)


def test_a_static_desktop_still_repeats_its_last_frame() -> None:
    encoder = SlowEncoder(0.0)
    pipeline, sink = run(encoder, 1.2, desktop_frames(static_after=1))
    pipeline.stop()
    encoder.close()
    # One real frame, then a repeat every IDLE_REPEAT_S: the client keeps seeing video.
    assert pipeline.stats.counter("repeated") >= 0.5 * 1.0 / IDLE_REPEAT_S, (
        pipeline.stats.snapshot()
    )
    assert sink.count() >= pipeline.stats.counter("repeated")


def test_a_burst_of_loss_reports_costs_one_idr() -> None:
    # Each frame takes >= 150 ms to encode, so an IDR asked for now is on the wire >= 150 ms
    # later: every report of the burst below arrives while it is in flight.
    encoder = SlowEncoder(0.15)
    pipeline, sink = run(encoder, 0.0)
    assert wait_for(lambda: sink.count() >= 2), "no frames came out"
    before = sink.idrs()
    for i in range(12):
        if i % 2:
            pipeline.request_keyframe()
        else:
            pipeline.invalidate_ref_frames(sink.count(), sink.count() + 1)
        time.sleep(0.01)
    assert wait_for(lambda: sink.idrs() > before)
    settled = sink.count()
    assert wait_for(lambda: sink.count() >= settled + 3)
    assert sink.idrs() == before + 1, sink.sent
    assert pipeline.stats.counter("keyframes_coalesced") == 11, pipeline.stats.snapshot()
    # Once that IDR is out, the next loss report gets an IDR of its own.
    pipeline.request_keyframe()
    assert wait_for(lambda: sink.idrs() == before + 2)
    pipeline.stop()
    encoder.close()


class RingFrames(PacedFrames):
    """Frames written into a real OUT ring in rotation, each filled with its sequence number."""

    def __init__(self) -> None:
        super().__init__(desktop(), FPS)
        self.ring = OutRing()

    def next_frame(self, timeout: float) -> CapturedFrame | None:
        frame = super().next_frame(timeout)
        if frame is None:
            return None
        slot = self.ring.slot(frame.width, frame.height, PixelFormat.BGRA8)
        slot.fill(frame.seq % 251)
        return CapturedFrame(
            self.ring.commit(), frame.pixel_format, frame.seq, frame.capture_ns, False
        )


class SlowConverter(PyAVEncoder):
    """Conversion takes ~6 display intervals; notes whether the pixels changed meanwhile."""

    def __init__(self) -> None:
        params = EncoderParams(bitrate_kbps=2_000, fps=FPS, pipeline_depth=2)
        super().__init__(spec_for(EncoderBackend.SOFTWARE, Codec.H264), params)
        self.torn = 0
        self.converted = 0

    def _convert(self, frame: CapturedFrame, index: int):  # type: ignore[no-untyped-def]
        before = int(frame.pixels[0, 0, 0])
        time.sleep(6 * INTERVAL_S)
        self.torn += int(frame.pixels[0, 0, 0]) != before
        self.converted += 1
        return super()._convert(frame, index)


def test_capture_never_overwrites_a_frame_still_being_converted() -> None:
    encoder = SlowConverter()
    pipeline, sink = run(encoder, 2.0, RingFrames())
    pipeline.stop()
    encoder.close()
    assert encoder.converted >= 5 and sink.count() >= 5, pipeline.stats.snapshot()
    assert encoder.torn == 0, (encoder.torn, encoder.converted)
    assert pipeline.stats.counter("capture_held") > 0, pipeline.stats.snapshot()
