"""One Moonlight client's stream: from its ANNOUNCE to its end.

The session owns its video source (monitor + capturer + encoder), the video pipeline, the audio
thread and the input thread. Media flows once the client has pinged the media ports; control
messages (IDR/RFI requests, input, keep-alive pings) arrive from the ENet thread and are handed
off without blocking it. A session ends on cancel, ENet disconnect, 10 s without control
traffic, a setup stage not reached in time, a dead pipeline or host shutdown - always with one
logged reason.
"""

from __future__ import annotations

import logging
import queue
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..apps import AppError, AppRun, start_app
from ..input.base import PadFeedback
from ..log import event
from ..proto.frame import HDR10_DEFAULT
from ..session.pipeline import VideoPipeline
from ..session.ratecontrol import SessionRate
from ..session.remote import RemoteSource
from ..session.source import SessionServices, VideoSource
from ..session.stats import StageStats
from .audio import AudioPacketizer
from .control import (
    ControlCipher,
    ControlError,
    FecStatus,
    MsgType,
    adaptive_triggers,
    hdr_mode,
    motion_event,
    parse_fec_status,
    parse_rfi,
    rgb_led,
    rumble,
    ss_hdr_metadata,
    termination,
)
from .input import (
    MOTION_ACCEL,
    MOTION_GYRO,
    ControllerArrival,
    InputError,
    InputRouter,
    parse_input,
)
from .media import MediaPort, pump_audio
from .nvhttp import LaunchParams
from .rtsp import ENC_AUDIO, ENC_VIDEO, Negotiation, RtspCipher
from .video import FEC_START_PERCENT, VideoPacketizer, fec_percent_for_loss
from .videosink import VideoSink

_log = logging.getLogger("punktfunk.gamestream.session")

CONTROL_TIMEOUT_S = 10.0
# The milestones of a launch on its way to a streaming session, in the order Moonlight takes
# them. A launch that reaches no new one within the setup deadline is ended (finding: a client
# gone after RTSP held its monitor for good).
SETUP_STAGES = (
    "/launch",
    "RTSP OPTIONS",
    "RTSP DESCRIBE",
    "RTSP SETUP",
    "RTSP ANNOUNCE",
    "RTSP PLAY",
    "control connect",
    "first video ping",
)
_STREAMING = frozenset(SETUP_STAGES[-2:])
MOTION_RATE_HZ = 100  # what we ask a pad with sensors to report
# LI_CCAP_ACCEL / LI_CCAP_GYRO in a controller arrival's capabilities (Limelight.h)
CCAP_ACCEL, CCAP_GYRO = 0x10, 0x20
INPUT_QUEUE = 256
RATE_WINDOW_S = 0.25  # shard loss is summed over this long for the bitrate controller
FEC_WINDOW_S = 1.0  # ...and over this long for the FEC percentage


@dataclass
class PendingLaunch:
    """A /launch or /resume waiting for the client's RTSP handshake."""

    client_fp: str
    client_name: str
    client_ip: str
    params: LaunchParams
    ping_payload: bytes = field(default_factory=lambda: secrets.token_hex(8).upper().encode())
    connect_data: int = field(default_factory=lambda: secrets.randbits(32))
    announced: bool = False
    reached: set[str] = field(default_factory=lambda: {SETUP_STAGES[0]})
    progress: float = field(default_factory=time.monotonic)  # when a new stage was last reached
    # One cipher for the whole handshake: its reply counter must keep counting across the
    # per-request TCP connections, or GCM nonces would repeat.
    rtsp_cipher: RtspCipher | None = field(init=False)

    def __post_init__(self) -> None:
        self.rtsp_cipher = RtspCipher(self.params.ri_key) if self.params.core_version >= 1 else None

    def reach(self, stage: str) -> None:
        """Only a stage not reached before restarts the deadline: repeating one (OPTIONS every
        few seconds) cannot keep a stalled launch alive."""
        if stage not in self.reached:
            self.reached.add(stage)
            self.progress = time.monotonic()

    def awaiting(self) -> str | None:
        """The stage this launch waits for; None once it streams (control up, video pinged)."""
        if all(s in self.reached for s in _STREAMING):
            return None
        furthest = max(i for i, s in enumerate(SETUP_STAGES) if s in self.reached)
        later = [s for s in SETUP_STAGES[furthest + 1 :] if s not in self.reached]
        if later:
            return later[0]
        return next(s for s in SETUP_STAGES if s not in self.reached)

    def stalled(self, timeout_s: float) -> str | None:
        """Why this launch is overdue (the stage it never reached), or None if it is not."""
        stage = self.awaiting()
        if stage is None or time.monotonic() - self.progress <= timeout_s:
            return None
        return f"setup stalled: no {stage} within {timeout_s:g} s"


class LossWindow:
    """Shards sent (video thread) against shards the client reported lost (ENet thread),
    summed per window; thread-safe."""

    def __init__(self, length_s: float) -> None:
        self._length = length_s
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._sent = self._lost = 0

    def sent(self, count: int) -> None:
        with self._lock:
            self._sent += count

    def lost(self, count: int) -> None:
        with self._lock:
            self._lost += count

    def take(self, now: float) -> float | None:
        """The window's loss fraction once it is over (then a new one starts), else None."""
        with self._lock:
            if now - self._start < self._length:
                return None
            sent, lost = self._sent, self._lost
            self._start, self._sent, self._lost = now, 0, 0
        return min(1.0, lost / sent) if sent else None


class StreamSession:
    def __init__(
        self,
        launch: PendingLaunch,
        negotiation: Negotiation,
        services: SessionServices,
        video_port: MediaPort,
        audio_port: MediaPort,
        send_control: Callable[[int, bytes], None],
        on_end: Callable[[StreamSession, str], None],
        opus_factory: Callable[[int, bool, int], Callable[[bytes], bytes]] | None,
        video_loss_percent: int = 0,
    ) -> None:
        self.launch = launch
        self._video_loss_percent = video_loss_percent
        self.negotiation = negotiation
        self.video_port = video_port
        self.audio_port = audio_port
        self.video_addr: tuple[str, int] | None = None
        self.audio_addr: tuple[str, int] | None = None
        self.control_peer: int | None = None
        self.stats = StageStats()
        self._services = services
        self._send_control = send_control
        self._on_end = on_end
        self._opus_factory = opus_factory
        self._cipher = ControlCipher(launch.params.ri_key)
        self._control_lock = threading.Lock()
        self._last_control = time.monotonic()
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._source: VideoSource | None = None
        self._pipeline: VideoPipeline | None = None
        self._app: AppRun | None = None
        self._rumble: dict[int, tuple[int, int]] = {}
        self._inputs: queue.Queue[bytes | None] = queue.Queue(maxsize=INPUT_QUEUE)
        self._threads: list[threading.Thread] = []
        self._packetizer: VideoPacketizer | None = None
        self._remote: RemoteSource | None = None  # the media path's worker (session_workers)
        self._fec_sent = FEC_START_PERCENT  # the percentage the video goes out with
        self._shards_seen = 0  # a worker's count of shards sent, as of its last heartbeat
        self._rate: SessionRate | None = None
        self._loss_window = LossWindow(RATE_WINDOW_S)
        self._fec_window = LossWindow(FEC_WINDOW_S)
        self._fec_own = FEC_START_PERCENT  # adaptive FEC's choice; a probe may send more
        self.name = f"gs-{launch.client_name}-{launch.connect_data & 0xFFFF:04x}"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, source: VideoSource) -> None:
        """Called at ANNOUNCE with the opened video source; media waits for the client's pings."""
        self._source = source
        n = self.negotiation
        key = self.launch.params.ri_key if n.encryption & ENC_VIDEO else None
        self.stats.set_gauge("fec_percent", FEC_START_PERCENT)
        # Moonlight reports a frame's FEC status only when it had to repair or lost it: a
        # policer's tail drop that takes parity alone goes unseen, so probes are small steps.
        self._rate = SessionRate(self.name, source.plan.bitrate_kbps, self.stats,
                                 self._set_bitrate, parity_probes=False)  # fmt: skip
        if isinstance(source, RemoteSource):  # capture, encode, FEC and send in a worker
            self._remote = source
            source.on_heartbeat = self._on_worker_state
            source.on_fatal = lambda reason: threading.Thread(
                target=self.end, args=(f"media worker: {reason}", True), daemon=True
            ).start()
            spec = {"packet_size": n.packet_size, "fec_percent": FEC_START_PERCENT,
                    "min_parity": n.min_fec_packets, "key": key, "fps": n.fps,
                    "addr": self.video_addr}  # fmt: skip
            if source.audio:  # capture, Opus and send in the worker too
                spec["audio"] = {
                    "channels": n.audio_channels,
                    "high_quality": n.audio_high_quality,
                    "packet_ms": n.audio_packet_ms,
                    "key": self.launch.params.ri_key if n.encryption & ENC_AUDIO else None,
                    "key_id": self.launch.params.ri_key_id,
                    "addr": self.audio_addr,
                }
                source.send_stream(spec, self.video_port.socket, self.audio_port.socket)
            else:
                source.send_stream(spec, self.video_port.socket)
            self._pipeline = source.pipeline  # type: ignore[assignment]
        else:
            packetizer = VideoPacketizer(n.packet_size, FEC_START_PERCENT, n.min_fec_packets, key)
            self._packetizer = packetizer
            sink = VideoSink(
                packetizer,
                lambda: self.video_addr,
                self.video_port.send,
                self.on_video_sent,
                self._video_loss_percent,
                lambda n: self.stats.count("simulated_loss", n),
            )
            self._pipeline = VideoPipeline(
                source.capturer,
                source.encoder,
                sink,
                fps=n.fps,
                depth=source.plan.pipeline_depth,
                stats=self.stats,
                on_fatal=lambda reason: self.end(f"video pipeline: {reason}"),
            )
        router = InputRouter(
            self._services.open_input(source), self._services.open_pads(self.name, source)
        )
        router.on_pad_feedback(self._pad_feedback)
        self._spawn(self._input_loop, "input", router)
        self._launch_app(source)
        event(
            _log,
            "session.start",
            session=self.name,
            client=self.launch.client_name,
            mode=f"{n.width}x{n.height}@{n.fps}",
            codec=source.plan.codec,
            hdr=source.plan.hdr,
            encrypted_video=bool(n.encryption & ENC_VIDEO),
            encrypted_audio=bool(n.encryption & ENC_AUDIO),
        )

    def _launch_app(self, source: VideoSource) -> None:
        app = self.launch.params.app
        try:
            self._app = start_app(app, source, self.name, self._app_exited)
        except AppError as exc:
            reason = f"app {app.title!r} could not start: {exc}"
            threading.Thread(target=self.end, args=(reason, True), daemon=True).start()

    def _app_exited(self, code: int) -> None:
        self.end(f"app {self.launch.params.app.title!r} exited with code {code}", True)

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"{self.name}-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def end(self, reason: str, notify_client: bool = False) -> None:
        """Stop everything once; later calls are no-ops."""
        with self._lock:
            if self._ended.is_set():
                return
            self._ended.set()
        if notify_client and self.control_peer is not None:
            self.send_message(*termination())
        if self._pipeline is not None:
            self._pipeline.stop()
        self._inputs.put(None)
        if self._app is not None:
            self._app.stop()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        if self._source is not None:
            self._source.close()
        snapshot = self.stats.snapshot()
        event(
            _log,
            "session.end",
            session=self.name,
            reason=reason,
            frames=self.stats.counter("frames"),
            host_latency=snapshot["stages"].get("host_latency", {}),
        )
        self._on_end(self, reason)

    @property
    def display_name(self) -> str:
        return self._source.display_name if self._source is not None else ""

    @property
    def plan_summary(self) -> str:
        """Codec, mode and what the plan changed from the request, for the status line."""
        source = self._source
        return source.plan.summary() if source is not None else ""

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def control_idle_s(self) -> float:
        return time.monotonic() - self._last_control

    # --- media ----------------------------------------------------------------------------

    def on_video_ping(self, addr: tuple[str, int]) -> None:
        first = self.video_addr is None
        if addr != self.video_addr and self._remote is not None:
            self._remote.worker.send(("addr", addr))
        self.video_addr = addr
        if first and self._pipeline is not None and not self.ended:
            event(_log, "session.video_flowing", session=self.name, client=f"{addr[0]}:{addr[1]}")
            self._pipeline.start()
            self._pipeline.request_keyframe()

    def on_audio_ping(self, addr: tuple[str, int]) -> None:
        first = self.audio_addr is None
        if addr != self.audio_addr and self._remote is not None and self._remote.audio:
            self._remote.worker.send(("audio_addr", addr))  # the worker sends the audio
            first = False
        self.audio_addr = addr
        if first and not self.ended and self._opus_factory is not None:
            self._spawn(self._audio_loop, "audio")

    def _audio_loop(self) -> None:
        n = self.negotiation
        capturer = self._services.open_audio(n.audio_channels, self.name, self._source)
        assert self._opus_factory is not None
        encode = self._opus_factory(n.audio_channels, n.audio_high_quality, n.audio_packet_ms)
        key = self.launch.params.ri_key if n.encryption & ENC_AUDIO else None
        packetizer = AudioPacketizer(key, self.launch.params.ri_key_id, n.audio_packet_ms)
        frame_bytes = 48 * n.audio_packet_ms * n.audio_channels * 2
        pump_audio(capturer, encode, packetizer, frame_bytes, lambda: self.audio_addr,
                   self.audio_port.send, lambda: self.ended)  # fmt: skip

    # --- control --------------------------------------------------------------------------

    def on_control_connected(self, peer: int) -> None:
        """The client's control stream is up: tell it whether the video is HDR10, with the
        display's mastering metadata (Moonlight switches its output to HDR on this)."""
        self.control_peer = peer
        self._last_control = time.monotonic()  # the idle clock starts with the connection
        if self._source is None:
            return
        plan = self._source.plan
        meta = None
        if plan.hdr:
            capturer = self._source.capturer  # None when a worker captures
            meta = ss_hdr_metadata((capturer and capturer.hdr_meta()) or HDR10_DEFAULT)
        self.send_message(*hdr_mode(plan.hdr, meta))
        if self.negotiation.hdr and not plan.hdr:
            event(
                _log,
                "session.sdr",
                session=self.name,
                reason="client asked for HDR; " + ("; ".join(plan.downgrades) or "not possible"),
            )

    def send_message(self, msg_type: int, payload: bytes) -> None:
        if self.control_peer is None:
            return
        with self._control_lock:
            packet = self._cipher.seal(msg_type, payload)
        self._send_control(self.control_peer, packet)

    def on_control_packet(self, packet: bytes) -> None:
        """Runs on the ENet thread: decode and hand off, never block."""
        try:
            msg = self._cipher.open(packet)
        except ControlError as exc:
            self.stats.count("control_rejected")
            event(_log, "control.rejected", logging.WARNING, session=self.name, reason=exc)
            return
        self._last_control = time.monotonic()
        pipeline = self._pipeline
        if msg.type == MsgType.INPUT:
            try:
                self._inputs.put_nowait(msg.payload)
            except queue.Full:
                self.stats.count("input_dropped")
        elif msg.type == MsgType.IDR_REQUEST and pipeline is not None:
            pipeline.request_keyframe()
        elif msg.type == MsgType.RFI and pipeline is not None:
            try:
                first, last = parse_rfi(msg.payload)
            except ControlError as exc:
                event(_log, "control.rejected", logging.WARNING, session=self.name, reason=exc)
                return
            pipeline.invalidate_ref_frames(first, last)
        elif msg.type == MsgType.FEC_STATUS:
            self.stats.count("fec_status_reports")
            try:
                self._on_fec_status(parse_fec_status(msg.payload))
            except ControlError as exc:
                event(_log, "control.rejected", logging.WARNING, session=self.name, reason=exc)
        elif msg.type == MsgType.LOSS_STATS and len(msg.payload) >= 4:
            self.stats.count("loss_reports")
            self.stats.count("client_lost_frames", struct.unpack_from("<I", msg.payload)[0])
        # Moonlight pings every 100 ms: the controller decides at that pace. IDR/RFI asks do
        # not feed it: a client asks for its own reasons too (start-up, a decoder behind);
        # what the path lost shows in the FEC status of the frames around it.
        self._adapt(time.monotonic())

    # --- adaptive bitrate and FEC (ENet thread) ---------------------------------------------

    def on_video_sent(self, count: int) -> None:
        """Video thread: shards of a frame about to go out (before any simulated loss)."""
        self._loss_window.sent(count)
        self._fec_window.sent(count)

    def _on_worker_state(self, state: dict[str, object]) -> None:
        """A worker's heartbeat (its reader thread): the shards it sent since the last one."""
        shards = int(state.get("shards", 0))  # type: ignore[call-overload]
        if shards > self._shards_seen:
            self.on_video_sent(shards - self._shards_seen)
            self._shards_seen = shards

    def _set_bitrate(self, kbps: int) -> None:
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.encoder.set_bitrate(kbps)

    def _on_fec_status(self, status: FecStatus) -> None:
        self._loss_window.lost(status.lost)
        self._fec_window.lost(status.lost)
        if status.unrecoverable:
            self.stats.count("fec_unrecoverable")
            if self._rate is not None:
                self._rate.frames_lost()

    def _adapt(self, now: float) -> None:
        rate = self._rate
        if rate is None:
            return
        loss = self._loss_window.take(now)
        if loss is not None:
            rate.loss(loss)
        rate.tick()
        fec_loss = self._fec_window.take(now)
        own = self._fec_own
        if fec_loss is not None:
            percent = fec_percent_for_loss(fec_loss)
            # While the bitrate answers congestion (or a probe's) loss, more parity would
            # only add to it.
            if percent != own and not (percent > own and rate.congested()):
                event(_log, "session.fec", session=self.name, loss=f"{fec_loss:.1%}",
                      fec_percent=percent, was=own)  # fmt: skip
                self._fec_own = own = percent
        percent = rate.fec_percent(own)
        if percent != self._fec_sent:
            self._fec_sent = percent
            if self._remote is not None:
                self._remote.worker.send(("fec", percent))
            elif self._packetizer is not None:
                self._packetizer.fec_percentage = percent  # read once per frame
            self.stats.set_gauge("fec_percent", percent)

    def _want_motion(self, arrival: ControllerArrival) -> None:
        """Moonlight sends a pad's motion samples only once the host asks for them."""
        for flag, kind in ((CCAP_ACCEL, MOTION_ACCEL), (CCAP_GYRO, MOTION_GYRO)):
            if arrival.capabilities & flag:
                self.send_message(*motion_event(arrival.number, MOTION_RATE_HZ, kind))

    def _pad_feedback(self, fb: PadFeedback) -> None:
        """A game's rumble, lightbar or trigger-effect change, forwarded to the client. Runs
        on the pad manager's thread; sending only queues for the ENet thread."""
        if self._rumble.get(fb.index) != (fb.rumble_low, fb.rumble_high):
            self._rumble[fb.index] = (fb.rumble_low, fb.rumble_high)
            self.send_message(*rumble(fb.index, fb.rumble_low, fb.rumble_high))
        if fb.led_rgb is not None:
            self.send_message(*rgb_led(fb.index, *fb.led_rgb))
        if fb.trigger_effect is not None:
            # flags (0x04 right, 0x08 left), then each side's effect: a type byte + 10 params
            flags, right, left = (
                fb.trigger_effect[0],
                fb.trigger_effect[1:12],
                fb.trigger_effect[12:23],
            )
            self.send_message(
                *adaptive_triggers(fb.index, flags, left[0], right[0], left[1:11], right[1:11])
            )

    def _input_loop(self, router: InputRouter) -> None:
        while True:
            payload = self._inputs.get()
            if payload is None:
                break
            try:
                parsed = parse_input(payload)
                router.apply(parsed)
                if isinstance(parsed, ControllerArrival):
                    self._want_motion(parsed)
            except InputError as exc:
                self.stats.count("input_rejected")
                event(_log, "input.rejected", logging.DEBUG, session=self.name, reason=exc)
            except Exception as exc:  # an injection backend error drops this event only
                self.stats.count("input_failed")
                event(_log, "input.failed", logging.WARNING, session=self.name, reason=repr(exc))
        router.close()
