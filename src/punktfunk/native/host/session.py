"""One punktfunk/2 client's stream: from its ClientHello to its end.

Threads and who touches what:
- the socket thread (`NativeServer`) delivers this session's events and is the only one that
  calls into its `HostConnection`; everything else reaches it via `server.call_soon`;
- an opener thread resolves the plan and opens the monitor/capturer/encoder (seconds, at
  worst), then hands the ServerHello back to the socket thread;
- the shared `VideoPipeline` (capture | encode | send) with a `NativeVideoSink`;
- an audio thread (5 ms Opus datagrams) and an input thread (injector + pads).

Loss handling: a Feedback window sets the FEC percentage (`adaptive.py`) and, with the asks,
feeds the session's bitrate controller (`session/ratecontrol.py`), which keeps the encoder
within the client's ceiling and tells the client each change (BitrateChanged); an ask names the
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

from ...apps import AppError, AppList, AppRun, start_app
from ...encode.base import Codec as EncCodec
from ...encode.base import EncodedFrame
from ...input.base import InputInjector
from ...log import event
from ...session.memory import trim_heap_soon
from ...session.pipeline import VideoPipeline
from ...session.plan import ClientRequest, PlanError
from ...session.ratecontrol import AckDelay, Decision, SessionRate
from ...session.remote import RemoteSource
from ...session.source import SessionServices, VideoSource
from ...session.stats import StageStats
from ...vdisplay.base import DisplayMode
from ..wire.adaptive import FEC_MAX_PERCENT, FEC_START_PERCENT, fec_percent_for_ppm
from ..wire.clock import wall_clock_ns
from ..wire.dgram import Datagram, Feedback, HostTiming, InputEvent, encode_audio
from ..wire.features import HOST_FEATURES
from ..wire.hello import ClientHello, ServerHello
from ..wire.messages import (
    BitrateChanged,
    ClipControl,
    ClipState,
    Message,
    Mode,
    ProbeRequest,
    ProbeResult,
    Reconfigure,
    Reconfigured,
    SetBitrate,
    StreamConfig,
)
from ..wire.registry import (
    CLOSE_OK,
    DEFAULT_SHARD_PAYLOAD,
    MIN_SHARD_PAYLOAD,
    AckReason,
    ClipReason,
    CloseCode,
    DgramKind,
    Feature,
    FecScheme,
)
from ..wire.seal import MediaKeys, MediaSealer, Role
from .host import HostConnection
from .inject import InputApplier, rumble_of
from .mic import MIC_TAG, MicUplink
from .negotiate import (
    WIRE_CODEC,
    choose_codec,
    color_of,
    hdr_granted,
    host_caps,
    newer_ask,
    timing_pts_ns,
)
from .probeburst import (
    PROBE_ONLY_BYTES,
    PROBE_ONLY_MAX_S,
    ProbeFiller,
    ProbeServer,
    declined,
    probe_seq,
)
from .reconfig import ModeSwitch
from .server import NativeServer
from .sink import MAX_DATA_PER_BLOCK, NativeVideoSink

_log = logging.getLogger("punktfunk.native.session")

DEFAULT_BITRATE_KBPS = 20_000
AUDIO_FRAME_MS = 5
INPUT_QUEUE = 512
OpusFactory = Callable[[int, bool, int], Callable[[bytes], bytes]]


@dataclass
class SessionCounters:
    feedback_windows: int = 0
    asks: int = 0
    invalidations: int = 0
    keyframe_asks: int = 0
    fec_changes: int = 0
    probes: int = 0
    probes_declined: int = 0
    link_figures: int = 0  # feedback datagrams carrying tags 8-17


class NativeSession(ModeSwitch):
    def __init__(
        self,
        conn: HostConnection,
        hello: ClientHello,
        fingerprint: bytes,
        services: SessionServices,
        server: NativeServer,
        on_end: Callable[[NativeSession, str], None],
        opus_factory: OpusFactory | None = None,
        workers: bool = False,
        apps: AppList | None = None,
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
        self._rate: SessionRate | None = None
        self._fec_own = FEC_START_PERCENT  # adaptive FEC's choice; a probe may send more
        self._acks = AckDelay()  # frame sent -> the client's ack: the controller's delay
        self._applier: InputApplier | None = None
        self._injector: InputInjector | None = None
        self._inputs: queue.Queue[InputEvent | None] = queue.Queue(maxsize=INPUT_QUEUE)
        self._threads: list[threading.Thread] = []
        self._last_window = 0
        self._last_ask = 0
        self._window_lost = False
        self._origin_wall_ns = 0
        self._origin_mono_ns = 0
        self.started = False
        self.probe_only = hello.probe_only  # a diagnostic dial: probes only, no monitor
        self._probes: ProbeServer | None = None
        self.teardown_thread: threading.Thread | None = None
        self._reconfiguring = threading.Event()
        self.link_figures: dict[int, int] = {}  # newest value of each feedback tag 8-17
        self.mic = MicUplink(self.name)  # its thread and source open with the first packet
        self._workers = workers  # the media path runs in a worker process (remote.py)
        self._apps = apps or AppList()  # `launch` names one of them (else: the desktop)
        self._app: AppRun | None = None
        self._remote: RemoteSource | None = None
        self._keys: MediaKeys | None = None
        self._shard = DEFAULT_SHARD_PAYLOAD

    # --- opening (opener thread), then accept (socket thread) -----------------------------

    def open_async(self) -> None:
        self._spawn(self._open, "open")

    def _open(self) -> None:
        hello = self.hello
        if self.probe_only:
            self._open_probe_only()
            return
        try:
            codec, note, alternatives = choose_codec(hello, self._services.codecs())
            request = ClientRequest(
                mode=DisplayMode(hello.mode.width, hello.mode.height, hello.mode.refresh_hz or 60),
                codec=codec,
                hdr=hdr_granted(hello, codec, self._services.hdr_codecs()),
                bitrate_kbps=hello.bitrate_kbps or DEFAULT_BITRATE_KBPS,
                alternatives=alternatives,
                app=hello.launch or "",
            )
            source = self._open_source(request)
        except PlanError as exc:
            reason = str(exc)
            self._server.call_soon(lambda: self._refuse(CloseCode.SETUP_FAILED, reason))
            return
        except Exception as exc:
            reason = f"the session could not be set up: {exc}"
            self._server.call_soon(lambda: self._refuse(CloseCode.SETUP_FAILED, reason))
            return
        # Opened before the ServerHello: the capabilities it states depend on the injector.
        injector = self._services.open_input(source)
        with self._lock:  # end() may run meanwhile: either it sees the source or we see it ended
            ended = self._ended.is_set()
            if not ended:
                self._source, self._injector = source, injector
                self._remote = source if isinstance(source, RemoteSource) else None
        if ended:
            if injector is not None:
                injector.close()
            source.close()
            return
        app = self._apps.by_title(hello.launch) if hello.launch else None
        try:  # on its display before the client sees a frame, as GameStream's launch does
            run = start_app(app, source, self.name, self._app_exited) if app else None
        except AppError as exc:
            reason = f"app {hello.launch!r} could not start: {exc}"
            self._server.call_soon(lambda: self._refuse(CloseCode.SETUP_FAILED, reason))
            return
        with self._lock:
            self._app, ended = run, self._ended.is_set()
        if ended and run is not None:
            run.stop()
        downgrades = [*source.plan.downgrades, *([note] if note else [])]
        self._server.call_soon(lambda: self._accept(source, downgrades))

    def _open_source(self, request: ClientRequest) -> VideoSource:
        client_id = self.fingerprint.hex()[:16]
        if not self._workers:
            return self._services.open_video(request, client_id)
        audio = self._opus_factory is not None
        return RemoteSource(self._services, request, client_id, self.name, self.stats, audio)  # type: ignore[return-value]

    def _open_probe_only(self) -> None:
        """A diagnostic dial (`probe_only`): it measures the link, so it gets its ServerHello
        and its probes but no monitor, capturer, encoder or input (stream.rs
        `probe_only_stream`)."""
        try:
            codec, _, _ = choose_codec(self.hello, self._services.codecs())
        except PlanError as exc:
            reason = str(exc)
            self._server.call_soon(lambda: self._refuse(CloseCode.SETUP_FAILED, reason))
            return
        self._server.call_soon(lambda: self._accept_probe_only(codec))

    def _accept_probe_only(self, codec: EncCodec) -> None:
        if self._ended.is_set():
            return
        if self.conn.closed is not None:
            self.end("client left while the session was opening")
            return
        asked = self.hello.mode
        mode = Mode(asked.width, asked.height, asked.refresh_hz or 60)
        self._answer(mode, codec, self.hello.bitrate_kbps or DEFAULT_BITRATE_KBPS, 8, False)
        event(_log, "session.probe_only", session=self.name, client=self.hello.name or "",
              probe_seq=probe_seq(self.hello.video_caps))  # fmt: skip

    def _refuse(self, code: CloseCode, reason: str) -> None:
        event(_log, "session.refused", logging.WARNING, session=self.name, code=hex(code),
              reason=reason)  # fmt: skip
        self.conn.refuse(code, reason[:200])

    def _answer(
        self, mode: Mode, codec: EncCodec, bitrate_kbps: int, bit_depth: int, hdr: bool
    ) -> tuple[MediaSealer, int]:
        """Send the ServerHello (and epoch 0's StreamConfig when echoed); the session's one
        media sealer, which video and speed-test filler share, and the shard size."""
        asked = self.hello.max_shard_payload
        shard = min(asked, DEFAULT_SHARD_PAYLOAD) if asked else DEFAULT_SHARD_PAYLOAD
        shard = max(shard, MIN_SHARD_PAYLOAD)
        self._origin_wall_ns, self._origin_mono_ns = wall_clock_ns(), time.monotonic_ns()
        caps, caps2 = host_caps(self._injector is not None)
        hello = ServerHello(
            clock_origin_ns=self._origin_wall_ns,
            suite=self.hello.preferred_suite(),
            host_caps=caps,
            host_caps2=caps2,
            features=self.hello.features.intersect(HOST_FEATURES),
            mode=mode,
            fec_scheme=FecScheme.GF8,
            # The most we will use (an IDR's doubled share at the band's top), so a client
            # that sizes its blocks from this never meets more parity than it planned for.
            fec_percent=FEC_MAX_PERCENT,
            max_data_per_block=MAX_DATA_PER_BLOCK,
            shard_payload=shard,
            bitrate_kbps=bitrate_kbps,
            bit_depth=bit_depth,
            color=color_of(hdr),
            codec=WIRE_CODEC[codec],
            audio_channels=2,
            audio_frame_us=0,  # Opus: 0, its 0xC9 frames are a fixed 5 ms (handshake.rs)
        )
        keys = self.conn.accept(hello)
        assert keys is not None  # a suite is always granted above
        self._keys = keys
        if hello.features.has(Feature.STREAM_CONFIG):  # epoch 0, before its first packet
            mode, color = hello.mode, hello.color
            config = StreamConfig(0, mode, hello.codec, hello.bit_depth, color, hello.chroma_format)
            self.conn.send(config)
        sealer = MediaSealer(keys, Role.HOST)
        filler = ProbeFiller(
            sealer,
            self._server.sock,
            lambda: self.conn.peer_address,
            shard,
            lambda: self._sink.epoch if self._sink is not None else 0,
            self._pts_us,
        )
        self._probes = ProbeServer(
            filler,
            probe_seq(self.hello.video_caps),
            self._ended,
            reply=lambda r: self._server.call_soon(lambda: self._send_result(r)),
            counters=self.counters,
            name=self.name,
            byte_cap=PROBE_ONLY_BYTES if self.probe_only else None,
        )
        return sealer, shard

    def _accept(self, source: VideoSource, downgrades: list[str]) -> None:
        if self._ended.is_set():
            return  # the teardown releases the source
        if self.conn.closed is not None:
            self.end("client left while the session was opening")
            return
        plan = source.plan
        mode = Mode(plan.mode.width, plan.mode.height, plan.mode.refresh_hz)
        sealer, shard = self._answer(mode, plan.codec, plan.bitrate_kbps, plan.bit_depth, plan.hdr)
        self._shard = shard
        if self._remote is not None:
            self._stream_remote(self._remote, FEC_START_PERCENT)
        else:
            self._stream_here(source, sealer, shard)
        self._rate = SessionRate(
            self.name, plan.bitrate_kbps, self.stats, self._set_bitrate, self._tell_bitrate
        )
        suite = self.conn.server_hello.suite if self.conn.server_hello else None
        event(_log, "session.plan", session=self.name, codec=plan.codec, mode=str(plan.mode),
              bitrate_kbps=plan.bitrate_kbps, suite=suite.name if suite else "none",
              shard_payload=shard, worker=self._remote.worker.pid if self._remote else 0,
              downgrades="; ".join(downgrades) or "none")  # fmt: skip

    def _stream_here(self, source: VideoSource, sealer: MediaSealer, shard: int) -> None:
        sink = NativeVideoSink(
            sealer,
            self._server.sender,
            lambda: self.conn.peer_address,
            self._pts_us,
            shard_payload=shard,
            fec_percent=FEC_START_PERCENT,
            on_sent=self._on_frame_sent,
        )
        self._sink = sink
        self._pipeline = self._new_pipeline(source, sink)

    def _stream_remote(
        self, remote: RemoteSource, fec: int, resume: dict[str, int] | None = None
    ) -> None:
        """The worker seals with the session's keys (the host's own sealer and probe server
        stay unused: one packet-number sequence per key) and sends on the shared socket."""
        assert self._keys is not None
        self._probes = None
        remote.on_datagram = self.send_datagram
        remote.on_probe_result = lambda r: self._server.call_soon(lambda: self._send_result(r))
        remote.on_fatal = lambda reason: self._server.call_soon(lambda: self._close_for(reason))
        self._sink = remote.stream(  # type: ignore[assignment]
            self._keys,
            self._server.sock,
            lambda: self.conn.peer_address,
            shard=self._shard,
            fec_percent=fec,
            origin=(self._origin_wall_ns, self._origin_mono_ns),
            probe_seq=probe_seq(self.hello.video_caps),
            resume=resume,
        )
        self._pipeline = remote.pipeline  # type: ignore[assignment]

    # --- streaming (socket thread) --------------------------------------------------------

    def on_ready(self) -> None:
        probes = self._probes
        if self.probe_only:
            if not self._ended.is_set() and probes is not None:
                self.started = probes.running = True
                deadline = time.monotonic() + PROBE_ONLY_MAX_S
                self._spawn(lambda: self._serve_probe_only(probes, deadline), "probe")
            return
        pipeline, source = self._pipeline, self._source
        if pipeline is None or source is None or self._ended.is_set():
            return
        self.started = True
        pipeline.start()
        pipeline.request_keyframe()
        mode = source.plan.mode
        self._applier = InputApplier(self._injector, self._services.open_pads(self.name, source))
        self._applier.on_pad_feedback(lambda fb: self.send_datagram(rumble_of(fb)))
        self._spawn(self._input_loop, "input")
        if self._opus_factory is not None and (self._remote is None or not self._remote.audio):
            self._spawn(self._audio_loop, "audio")  # else the worker's
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
            else:  # rich input (0xCC: motion, pen, touch), which no cap of ours asks for
                self.stats.count("datagrams_ignored")
        elif isinstance(got, Datagram) and got.payload[:1] == MIC_TAG and self._takes_mic:
            self.mic.offer(got.payload)
        else:  # a host-to-client kind, media over QUIC, or the mic before Ready: counted
            self.stats.count("datagrams_ignored")

    @property
    def _takes_mic(self) -> bool:
        return self.started and not self.probe_only  # after Ready; a diagnostic dial has none

    def on_message(self, message: object) -> None:
        pipeline = self._pipeline
        match message:
            case InputEvent():
                self._queue_input(message)
            case SetBitrate() if pipeline is not None and self._rate is not None:
                # The ask is the new ceiling; the controller keeps what the path carries.
                rate = self._rate.set_ceiling(message.bitrate_kbps)
                pipeline.encoder.set_bitrate(rate)
                short = rate < message.bitrate_kbps
                self.conn.send(BitrateChanged(rate, AckReason.GOVERNOR if short else None))
            case ProbeRequest():
                self._on_probe_request(message)
            case Reconfigure() if self.probe_only:
                self.conn.send(Reconfigured(False, self._wire_mode()))
            case Reconfigure():
                if not self.started or self._reconfiguring.is_set():
                    self.conn.send(Reconfigured(False, self._wire_mode()))
                else:
                    self._reconfiguring.set()
                    self._spawn(lambda: self._reconfigure(message.mode), "reconfigure")
            case ClipControl():  # no clipboard here: every toggle is answered "off" (control.rs)
                reason = ClipReason.BACKEND_UNAVAILABLE if message.enabled else ClipReason.OK
                self.conn.send(ClipState(False, 0, reason))
            case Message():  # decoded, not acted on (CursorRenderMode, ShardPayloadAck, ...)
                self.conn.ignore(message.TYPE)

    # --- speed-test probes (socket thread queues, the probe thread serves) -----------------

    def _on_probe_request(self, req: ProbeRequest) -> None:
        """Every request gets its ProbeResult: served in order, or declined at once (before
        Ready, or with too many already waiting)."""
        if self._remote is not None and self.started:
            self._remote.probe(req)  # the worker serves and answers it
            return
        probes = self._probes
        if not self.started or probes is None or not probes.offer(req):
            self.counters.probes_declined += 1
            self.conn.send(declined())
            return
        if not probes.running:
            probes.running = True
            self._spawn(lambda: probes.serve(None), "probe")

    def _serve_probe_only(self, probes: ProbeServer, deadline: float) -> None:
        """The diagnostic session's life: probes until the client closes or the deadline
        passes, then a close with 0 as the Rust host's after 60 s."""
        if probes.serve(deadline):
            self._server.call_soon(lambda: self._close_ok("probe-only session over"))

    def _send_result(self, result: ProbeResult) -> None:
        if self.conn.closed is None and not self._ended.is_set():
            self.conn.send(result)

    def _close_ok(self, reason: str) -> None:
        if self.conn.closed is None:
            self.conn.close(CLOSE_OK, "done")
        self.end(reason)

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

    def _set_bitrate(self, kbps: int) -> None:
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.encoder.set_bitrate(kbps)

    def _tell_bitrate(self, decision: Decision) -> None:
        """Runs on the socket thread (from `_on_feedback`): the client learns each change."""
        rate = self._rate
        short = rate is not None and decision.kbps < rate.controller.ceiling
        self.conn.send(BitrateChanged(decision.kbps, AckReason.GOVERNOR if short else None))

    def _on_feedback(self, fb: Feedback) -> None:
        if fb.ext:  # kept for the status and the rate controller to read; no meaning pinned yet
            self.counters.link_figures += 1
            self.link_figures.update(fb.ext)
        pipeline, sink, rate = self._pipeline, self._sink, self._rate
        if pipeline is None or sink is None or rate is None:
            return
        if fb.window and fb.window > self._last_window:
            self._last_window = fb.window
            self.counters.feedback_windows += 1
            rate.loss(fb.loss_ppm / 1_000_000)
            self._window_lost = fb.loss_ppm > 0
            percent, own = fec_percent_for_ppm(fb.loss_ppm), self._fec_own
            # The bitrate answers congestion (or a probe's) loss; parity would add to it.
            if percent != own and not (percent > own and rate.congested()):
                event(_log, "session.fec", session=self.name, loss_ppm=fb.loss_ppm,
                      fec_percent=percent, was=own)  # fmt: skip
                self._fec_own = percent
                self.counters.fec_changes += 1
        if newer_ask(fb.ask, self._last_ask):
            self._last_ask = fb.ask
            self.counters.asks += 1
            if self._window_lost:  # else the client's own trouble (a decoder behind), not the path
                rate.frames_lost()
            if fb.invalidate is not None:
                self.counters.invalidations += 1
                # The client names wire frame numbers; the encoder counts from its epoch's start.
                first, last = (max(0, f - sink.frame_base) for f in fb.invalidate)
                pipeline.invalidate_ref_frames(first, last)
            if fb.keyframe:
                self.counters.keyframe_asks += 1
                pipeline.request_keyframe()
        if fb.acked is not None:
            sample = self._acks.acked(fb.acked[0], time.monotonic_ns())
            if sample is not None:
                rate.acked(sample)
        rate.tick()
        percent = rate.fec_percent(self._fec_own)
        if percent != sink.fec_percent:
            sink.fec_percent = percent  # read once per frame by the send thread

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
        sink = self._sink
        if sink is not None:
            self._acks.sent(sink.frame_base + frame.frame_index, sent_ns, len(frame.data))
        pts_ns = timing_pts_ns(self._origin_wall_ns, self._origin_mono_ns, frame.capture_ns)
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
            capturer = self._services.open_audio(2, self.name, self._source)
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

    def _app_exited(self, code: int) -> None:
        self.end(f"app {self.hello.launch!r} exited with code {code}")

    def _teardown(self, reason: str) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
        self._inputs.put(None)
        if self._app is not None:
            self._app.stop()
        if self._probes is not None:
            self._probes.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self.mic.close()
        if self._applier is not None:
            self._applier.close()
        elif self._injector is not None:  # ended before Ready: nothing applied, still open
            self._injector.close()
        if self._source is not None:
            self._source.close()
        sink = self._sink
        snapshot = self.stats.snapshot()
        event(_log, "session.end", session=self.name, reason=reason,
              frames=self.stats.counter("frames"), packets=sink.packets if sink else 0,
              fec_percent=sink.fec_percent if sink else 0,
              idr_requests=self.stats.counter("loss_idr_requests")
              + self.stats.counter("keyframe_requests"),
              asks=self.counters.asks, link_figures=self.counters.link_figures,
              mic_packets=self.mic.counters.packets,
              host_latency=snapshot["stages"].get("host_latency", {}))  # fmt: skip
        # Everything closed is also let go of: whoever still holds this session (a status
        # call, a late event) must not keep its encoder, monitor or input alive.
        self._pipeline = self._source = self._applier = self._injector = None
        self._threads = []
        trim_heap_soon()
        self._on_end(self, reason)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def plan_summary(self) -> str:
        """Codec, mode and what the plan changed from the request, for the status line."""
        source = self._source
        return source.plan.summary() if source is not None else ""

    def snapshot(self) -> dict[str, object]:
        sink = self._sink
        return {
            "name": self.name,
            "client": self.hello.name or "",
            "fingerprint": self.fingerprint.hex(),
            "fec_percent": sink.fec_percent if sink else None,
            "bitrate_kbps": self._rate.kbps if self._rate else None,
            "packets": sink.packets if sink else 0,
            "worker_pid": self._remote.worker.pid if self._remote else None,
            "feedback": vars(self.counters),
            "mic": vars(self.mic.counters),
            "link_figures": dict(self.link_figures),
            **self.stats.snapshot(),
        }
