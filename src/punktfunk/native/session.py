"""One punktfunk/2 client's stream: from its ClientHello to its end.

Threads and who touches what:
- the socket thread (`NativeServer`) delivers this session's events and is the only one that
  calls into its `HostConnection`; everything else reaches it via `server.call_soon`;
- an opener thread resolves the plan and opens the monitor/capturer/encoder (seconds, at
  worst), then hands the ServerHello back to the socket thread;
- the shared `VideoPipeline` (capture | encode | send) with a `NativeVideoSink`;
- an audio thread (5 ms Opus datagrams) and an input thread (injector + pads).

Loss handling: a Feedback window sets the FEC percentage (`adaptive.py`); an ask names the
frames to invalidate, which goes to `pipeline.invalidate_ref_frames` (reference invalidation
where the encoder can, else one IDR per loss); only an ask with `keyframe` set, from a
client that has nothing to reference, forces an IDR directly. Each window and ask is acted
on once. A session ends once, with a reason: client close, QUIC idle timeout, a dead
pipeline, or host shutdown; its end releases the pipeline, audio, pads and monitor.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..encode.base import Codec as EncCodec
from ..encode.base import EncodedFrame
from ..log import event
from ..session.pipeline import VideoPipeline
from ..session.plan import ClientRequest, PlanError
from ..session.source import SessionServices, VideoSource
from ..session.stats import StageStats
from ..vdisplay.base import DisplayMode
from .adaptive import FEC_START_PERCENT, fec_percent_for_ppm
from .clock import wall_clock_ns
from .dgram import Datagram, Feedback, HostTiming, InputEvent, encode_audio
from .hello import ClientHello, ServerHello
from .host import HostConnection
from .input import InputApplier, rumble_of
from .messages import BitrateChanged, Mode, Reconfigure, Reconfigured, SetBitrate, StreamConfig
from .registry import (
    DEFAULT_SHARD_PAYLOAD,
    MIN_SHARD_PAYLOAD,
    CloseCode,
    Codec,
    DgramKind,
    FecScheme,
)
from .seal import MediaSealer, Role
from .server import NativeServer
from .sink import MAX_DATA_PER_BLOCK, NativeVideoSink

_log = logging.getLogger("punktfunk.native.session")

DEFAULT_BITRATE_KBPS = 20_000
AUDIO_FRAME_MS = 5
INPUT_QUEUE = 512
_WIRE_CODEC = {EncCodec.H264: Codec.H264, EncCodec.HEVC: Codec.HEVC, EncCodec.AV1: Codec.AV1}
_CODEC_ORDER = (EncCodec.HEVC, EncCodec.H264, EncCodec.AV1)


def _color(hdr: bool) -> bytes:
    """CICP primaries, transfer, matrix, full range: BT.2020/PQ for HDR10, else BT.709."""
    return bytes((9, 16, 9, 0)) if hdr else bytes((1, 1, 1, 0))


OpusFactory = Callable[[int, bool, int], Callable[[bytes], bytes]]


def choose_codec(hello: ClientHello, have: frozenset[EncCodec]) -> tuple[EncCodec, str | None]:
    """The client's preferred codec when this host encodes it, else the best one both have.

    Returns the codec and a downgrade note (None when the client got what it preferred).
    A client that lists no codecs is taken to decode HEVC (hello.rs's default).
    """
    offered = {c for c, bit in _WIRE_CODEC.items() if hello.video_codecs & bit}
    offered = offered or {EncCodec.HEVC}
    preferred = next((c for c, b in _WIRE_CODEC.items() if hello.preferred_codec == b), None)
    if preferred in have and preferred in offered:
        return preferred, None
    for codec in _CODEC_ORDER:
        if codec in have and codec in offered:
            note = None if preferred is None else f"codec {preferred} not available: {codec}"
            return codec, note
    raise PlanError(
        f"no common codec: the client decodes {sorted(offered)}, this host encodes {sorted(have)}"
    )


@dataclass
class SessionCounters:
    feedback_windows: int = 0
    asks: int = 0
    invalidations: int = 0
    keyframe_asks: int = 0
    fec_changes: int = 0


class NativeSession:
    def __init__(
        self,
        conn: HostConnection,
        hello: ClientHello,
        fingerprint: bytes,
        services: SessionServices,
        server: NativeServer,
        on_end: Callable[[NativeSession, str], None],
        opus_factory: OpusFactory | None = None,
    ) -> None:
        self.conn = conn
        self.hello = hello
        self.fingerprint = fingerprint
        self.name = f"pf2-{(hello.name or 'client')[:24]}-{fingerprint.hex()[:8]}"
        self.stats = StageStats()
        self.counters = SessionCounters()
        self._services = services
        self._server = server
        self._on_end = on_end
        self._opus_factory = opus_factory
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self.end_reason: str | None = None
        self._source: VideoSource | None = None
        self._pipeline: VideoPipeline | None = None
        self._sink: NativeVideoSink | None = None
        self._applier: InputApplier | None = None
        self._inputs: queue.Queue[InputEvent | None] = queue.Queue(maxsize=INPUT_QUEUE)
        self._threads: list[threading.Thread] = []
        self._last_window = 0
        self._last_ask = 0
        self._origin_wall_ns = 0
        self._origin_mono_ns = 0
        self.started = False
        self.teardown_thread: threading.Thread | None = None
        self._reconfiguring = threading.Event()

    # --- opening (opener thread), then accept (socket thread) -----------------------------

    def open_async(self) -> None:
        self._spawn(self._open, "open")

    def _open(self) -> None:
        hello = self.hello
        try:
            codec, note = choose_codec(hello, self._services.codecs())
            request = ClientRequest(
                mode=DisplayMode(hello.mode.width, hello.mode.height, hello.mode.refresh_hz or 60),
                codec=codec,
                hdr=hello.display_hdr is not None and codec in self._services.hdr_codecs(),
                bitrate_kbps=hello.bitrate_kbps or DEFAULT_BITRATE_KBPS,
            )
            source = self._services.open_video(request, self.fingerprint.hex()[:16])
        except PlanError as exc:
            reason = str(exc)
            self._server.call_soon(lambda: self._refuse(CloseCode.SETUP_FAILED, reason))
            return
        except Exception as exc:
            reason = f"the session could not be set up: {exc}"
            self._server.call_soon(lambda: self._refuse(CloseCode.SETUP_FAILED, reason))
            return
        with self._lock:  # end() may run meanwhile: either it sees the source or we see it ended
            ended = self._ended.is_set()
            if not ended:
                self._source = source
        if ended:
            source.close()
            return
        downgrades = [*source.plan.downgrades, *([note] if note else [])]
        self._server.call_soon(lambda: self._accept(source, downgrades))

    def _refuse(self, code: CloseCode, reason: str) -> None:
        event(_log, "session.refused", logging.WARNING, session=self.name, code=hex(code),
              reason=reason)  # fmt: skip
        self.conn.refuse(code, reason[:200])

    def _accept(self, source: VideoSource, downgrades: list[str]) -> None:
        if self._ended.is_set():
            return  # the teardown releases the source
        if self.conn.closed is not None:
            self.end("client left while the session was opening")
            return
        plan = source.plan
        asked = self.hello.max_shard_payload
        shard = min(asked, DEFAULT_SHARD_PAYLOAD) if asked else DEFAULT_SHARD_PAYLOAD
        shard = max(shard, MIN_SHARD_PAYLOAD)
        self._origin_wall_ns, self._origin_mono_ns = wall_clock_ns(), time.monotonic_ns()
        hello = ServerHello(
            clock_origin_ns=self._origin_wall_ns,
            suite=self.hello.preferred_suite(),
            mode=Mode(plan.mode.width, plan.mode.height, plan.mode.refresh_hz),
            fec_scheme=FecScheme.GF8,
            fec_percent=FEC_START_PERCENT,
            max_data_per_block=MAX_DATA_PER_BLOCK,
            shard_payload=shard,
            bitrate_kbps=plan.bitrate_kbps,
            bit_depth=plan.bit_depth,
            color=_color(plan.hdr),
            codec=_WIRE_CODEC[plan.codec],
            audio_channels=2,
            audio_frame_us=AUDIO_FRAME_MS * 1000,
        )
        keys = self.conn.accept(hello)
        assert keys is not None  # a suite is always granted above
        sink = NativeVideoSink(
            MediaSealer(keys, Role.HOST),
            self._server.sender,
            lambda: self.conn.peer_address,
            self._pts_us,
            shard_payload=shard,
            fec_percent=FEC_START_PERCENT,
            on_sent=self._on_frame_sent,
        )
        self._sink = sink
        self._pipeline = self._new_pipeline(source, sink)
        suite = hello.suite.name if hello.suite is not None else "none"
        event(_log, "session.plan", session=self.name, codec=plan.codec, mode=str(plan.mode),
              bitrate_kbps=plan.bitrate_kbps, suite=suite, shard_payload=shard,
              downgrades="; ".join(downgrades) or "none")  # fmt: skip

    # --- streaming (socket thread) --------------------------------------------------------

    def on_ready(self) -> None:
        pipeline, source = self._pipeline, self._source
        if pipeline is None or source is None or self._ended.is_set():
            return
        self.started = True
        pipeline.start()
        pipeline.request_keyframe()
        mode = source.plan.mode
        self._applier = InputApplier(
            self._services.open_input(source),
            self._services.open_pads(self.name),
            (mode.width, mode.height),
        )
        self._applier.on_pad_feedback(lambda fb: self.send_datagram(rumble_of(fb)))
        self._spawn(self._input_loop, "input")
        if self._opus_factory is not None:
            self._spawn(self._audio_loop, "audio")
        event(_log, "session.start", session=self.name, client=self.hello.name or "",
              fingerprint=self.fingerprint.hex()[:16], mode=str(mode), codec=source.plan.codec,
              peer=self.conn.peer_address)  # fmt: skip

    def on_datagram(self, got: object) -> None:
        if isinstance(got, Feedback):
            self._on_feedback(got)
        elif isinstance(got, Datagram) and got.kind is DgramKind.INPUT_STATE:
            ev = InputEvent.decode(got.payload)
            if ev is not None:
                self._queue_input(ev)

    def on_message(self, message: object) -> None:
        pipeline = self._pipeline
        match message:
            case InputEvent():
                self._queue_input(message)
            case SetBitrate() if pipeline is not None:
                pipeline.encoder.set_bitrate(message.bitrate_kbps)
                self.conn.send(BitrateChanged(message.bitrate_kbps))
            case Reconfigure():
                if not self.started or self._reconfiguring.is_set():
                    self.conn.send(Reconfigured(False, self._wire_mode()))
                else:
                    self._reconfiguring.set()
                    self._spawn(lambda: self._reconfigure(message.mode), "reconfigure")

    def _new_pipeline(self, source: VideoSource, sink: NativeVideoSink) -> VideoPipeline:
        plan = source.plan
        return VideoPipeline(
            source.capturer,
            source.encoder,
            sink,
            fps=plan.mode.refresh_hz,
            depth=plan.pipeline_depth,
            stats=self.stats,
            on_fatal=lambda reason: self._server.call_soon(
                lambda: self._close_for(f"video pipeline: {reason}")
            ),
        )

    def _wire_mode(self) -> Mode:
        mode = self._source.plan.mode if self._source else None
        return Mode(mode.width, mode.height, mode.refresh_hz) if mode else Mode()

    def _reconfigure(self, mode: Mode) -> None:
        """The client's window changed: a monitor at the new mode, a new encoder, the next
        StreamConfig epoch, same connection. Runs on its own thread (a monitor takes time);
        the old stream keeps flowing until the new one is ready."""
        try:
            self._switch_mode(mode)
        finally:
            self._reconfiguring.clear()

    def _switch_mode(self, mode: Mode) -> None:
        old, sink = self._source, self._sink
        if old is None or sink is None or self._pipeline is None:
            return
        plan = old.plan
        request = ClientRequest(
            DisplayMode(mode.width, mode.height, mode.refresh_hz or plan.mode.refresh_hz),
            plan.codec,
            plan.hdr,
            plan.bitrate_kbps,
        )
        try:
            source = self._services.open_video(request, self.fingerprint.hex()[:16])
        except Exception as exc:
            event(_log, "session.reconfigure_refused", logging.WARNING, session=self.name,
                  mode=f"{mode.width}x{mode.height}@{mode.refresh_hz}", reason=exc)  # fmt: skip
            self._server.call_soon(lambda: self.conn.send(Reconfigured(False, self._wire_mode())))
            return
        pipeline = self._new_pipeline(source, sink)
        with self._lock:
            if self._ended.is_set():
                source.close()
                return
            self._pipeline.stop()  # the old encoder's last frame is out before the new epoch
            epoch = sink.next_epoch()
            self._source, self._pipeline = source, pipeline
        new = source.plan
        wire_mode = Mode(new.mode.width, new.mode.height, new.mode.refresh_hz)
        announced = threading.Event()

        def announce() -> None:
            self.conn.send(Reconfigured(True, wire_mode))
            config = StreamConfig(
                epoch=epoch,
                mode=wire_mode,
                codec=_WIRE_CODEC[new.codec],
                bit_depth=new.bit_depth,
                color=_color(new.hdr),
            )
            self.conn.send(config)
            announced.set()

        self._server.call_soon(announce)
        announced.wait(2.0)  # StreamConfig goes out before the epoch's first packet
        pipeline.start()
        pipeline.request_keyframe()
        if self._applier is not None:
            self._applier.set_surface((new.mode.width, new.mode.height))
        old.close()
        event(_log, "session.reconfigured", session=self.name, epoch=epoch, mode=str(new.mode),
              was=str(plan.mode), downgrades="; ".join(new.downgrades) or "none")  # fmt: skip

    def _on_feedback(self, fb: Feedback) -> None:
        pipeline, sink = self._pipeline, self._sink
        if pipeline is None or sink is None:
            return
        if fb.window and fb.window > self._last_window:
            self._last_window = fb.window
            self.counters.feedback_windows += 1
            percent = fec_percent_for_ppm(fb.loss_ppm)
            if percent != sink.fec_percent:
                event(_log, "session.fec", session=self.name, loss_ppm=fb.loss_ppm,
                      fec_percent=percent, was=sink.fec_percent)  # fmt: skip
                sink.fec_percent = percent
                self.counters.fec_changes += 1
        if fb.ask and fb.ask > self._last_ask:
            self._last_ask = fb.ask
            self.counters.asks += 1
            if fb.invalidate is not None:
                self.counters.invalidations += 1
                # The client names wire frame numbers; the encoder counts from its epoch's start.
                first, last = (max(0, f - sink.frame_base) for f in fb.invalidate)
                pipeline.invalidate_ref_frames(first, last)
            if fb.keyframe:
                self.counters.keyframe_asks += 1
                pipeline.request_keyframe()

    def _queue_input(self, ev: InputEvent) -> None:
        try:
            self._inputs.put_nowait(ev)
        except queue.Full:
            self.stats.count("input_dropped")

    def send_datagram(self, data: bytes) -> None:
        """From any thread: queue a QUIC datagram for this session's connection."""

        def send() -> None:
            if self.conn.closed is None:
                self.conn.send_datagram(data)

        if not self._ended.is_set():
            self._server.call_soon(send)

    # --- media callbacks (pipeline send thread) -------------------------------------------

    def _pts_us(self, capture_ns: int) -> int:
        return ((capture_ns - self._origin_mono_ns) // 1000) & 0xFFFF_FFFF

    def _on_frame_sent(self, frame: EncodedFrame, sent_ns: int) -> None:
        pts_ns = self._origin_wall_ns + (frame.capture_ns - self._origin_mono_ns)
        encode_us = (frame.encode_done_ns - frame.capture_ns) // 1000
        pace_us = (sent_ns - frame.encode_done_ns) // 1000
        timing = HostTiming(pts_ns, (sent_ns - frame.capture_ns) // 1000, (0, encode_us, pace_us))
        self.send_datagram(timing.encode())

    # --- worker threads -------------------------------------------------------------------

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=f"{self.name}-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _input_loop(self) -> None:
        applier = self._applier
        assert applier is not None
        while True:
            ev = self._inputs.get()
            if ev is None:
                break
            try:
                applier.apply(ev)
            except Exception as exc:  # one failed injection drops that event only
                self.stats.count("input_failed")
                event(_log, "input.failed", logging.WARNING, session=self.name, reason=repr(exc))

    def _audio_loop(self) -> None:
        assert self._opus_factory is not None
        try:
            capturer = self._services.open_audio(2, self.name)
            encode = self._opus_factory(2, False, AUDIO_FRAME_MS)
        except Exception as exc:
            event(_log, "audio.unavailable", logging.WARNING, session=self.name, reason=repr(exc))
            return
        frame_bytes = 48 * AUDIO_FRAME_MS * 2 * 2
        pending, seq = b"", 0
        try:
            while not self._ended.is_set():
                chunk = capturer.read(timeout=0.1)
                if chunk is None:
                    continue
                pending += chunk.pcm
                while len(pending) >= frame_bytes:
                    opus = encode(pending[:frame_bytes])
                    pending = pending[frame_bytes:]
                    pts = self._origin_wall_ns + (chunk.capture_ns - self._origin_mono_ns)
                    self.send_datagram(encode_audio(seq, pts, opus))
                    seq += 1
                    self.stats.count("audio_packets")
        finally:
            capturer.close()

    # --- the end --------------------------------------------------------------------------

    def _close_for(self, reason: str) -> None:
        """Socket thread: close the connection; its Closed event then ends the session."""
        if self.conn.closed is None:
            self.conn.close(CloseCode.SETUP_FAILED, reason[:200])
        self.end(reason)

    def end(self, reason: str) -> None:
        """Stop everything once (from any thread; the slow part runs on its own thread)."""
        with self._lock:
            if self._ended.is_set():
                return
            self._ended.set()
            self.end_reason = reason
        self.teardown_thread = threading.Thread(
            target=self._teardown, args=(reason,), name=f"{self.name}-end", daemon=True
        )
        self.teardown_thread.start()

    def _teardown(self, reason: str) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
        self._inputs.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        if self._applier is not None:
            self._applier.close()
        if self._source is not None:
            self._source.close()
        sink = self._sink
        snapshot = self.stats.snapshot()
        event(_log, "session.end", session=self.name, reason=reason,
              frames=self.stats.counter("frames"), packets=sink.packets if sink else 0,
              fec_percent=sink.fec_percent if sink else 0,
              idr_requests=self.stats.counter("loss_idr_requests")
              + self.stats.counter("keyframe_requests"),
              host_latency=snapshot["stages"].get("host_latency", {}))  # fmt: skip
        self._on_end(self, reason)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def snapshot(self) -> dict[str, object]:
        sink = self._sink
        return {
            "name": self.name,
            "client": self.hello.name or "",
            "fingerprint": self.fingerprint.hex(),
            "fec_percent": sink.fec_percent if sink else None,
            "packets": sink.packets if sink else 0,
            "feedback": vars(self.counters),
            **self.stats.snapshot(),
        }
