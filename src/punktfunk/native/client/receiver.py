"""A headless punktfunk/2 client: pair, stream, FEC-recover, decode, measure.

`NativeReceiver` owns one UDP socket and drives a `ClientConnection` on a network thread
(QUIC, media opening, reassembly, feedback); decoding runs on a second thread so a slow
decode never delays packet intake. Decoded pictures go to `on_picture(frame, unit)` — the
hook a viewer uses to show them; `punktfunk probe` only reads the pattern display's stamp.

A long-running client (the viewer) runs it with `seconds=math.inf` on its own thread and
ends it with `stop()`; `send_input(event, reliable)` may be called from any thread: events are
queued and the network thread, the only one that touches the connection, sends them (edges on
the control stream, state as INPUT_STATE datagrams). `history` bounds the sample lists.

Loss handling as the host expects it: every FEEDBACK_INTERVAL_S a Feedback window reports
the packet loss measured from the packet-number gaps; a frame FEC could not rebuild raises
an ask naming the lost frames (repeated in each window until a keyframe after them arrives);
P-frames after a loss are not decoded until that keyframe. `keyframe` is asked for only
when nothing decodable was ever received. Each frame handed to the decoder is acked (Feedback
`acked`), which the host times for its delay-based rate control. `loss_percent` drops that
share of media packets at random on receipt, to exercise the whole path.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ...log import event
from ..wire.adaptive import FEC_MAX_PERCENT, FEC_MIN_PERCENT
from ..wire.clock import wall_clock_ns
from ..wire.codec import encode_input_edge
from ..wire.core import (
    ClockSynced,
    Closed,
    DatagramReceived,
    MessageReceived,
    SessionStarted,
)
from ..wire.dgram import Datagram, Feedback, HostTiming, InputEvent
from ..wire.dgram import encode as encode_dgram
from ..wire.hello import ClientHello, ServerHello
from ..wire.input import decode_rumble
from ..wire.messages import BitrateChanged, Mode, Reconfigure, Reconfigured, StreamConfig
from ..wire.quic import ClientIdentity
from ..wire.registry import MIN_RECOVERY_SHARDS, AckReason, Codec, DgramKind, UserFlag
from ..wire.seal import MediaOpener, Role
from .client import ClientConnection, InputRoute
from .dial import Address, ProbeError, client_socket, flush, pump
from .reassembly import AccessUnit, FrameAssembler

_log = logging.getLogger("punktfunk.native.receiver")

FEEDBACK_INTERVAL_S = 0.25
_DECODERS = {Codec.H264: "h264", Codec.HEVC: "hevc", Codec.AV1: "libdav1d"}


def _mode_text(mode: Mode) -> str:
    return f"{mode.width}x{mode.height}@{mode.refresh_hz}"


def infer_fec_percent(blocks: list[tuple[int, int]]) -> int | None:
    """The host's FEC percentage as the newest P-frame blocks reveal it (no field carries it).

    A block of k data shards with m = ceil(k x p / 100) > 2 recovery shards puts p in
    ((m - 1) x 100 / k, m x 100 / k]; a block at the 2-shard floor only bounds p from above.
    Intersect from the newest block back while the intervals agree and take the smallest
    whole percentage inside, at least FEC_MIN_PERCENT: exact for large blocks, a lower bound
    when frames are small.
    """
    lo, hi = 0.0, float(FEC_MAX_PERCENT)
    for k, m in reversed(blocks):
        b_lo = (m - 1) * 100 / k if m > MIN_RECOVERY_SHARDS else 0.0
        b_hi = m * 100 / k
        if max(lo, b_lo) >= min(hi, b_hi):
            break  # the percentage changed before this block
        lo, hi = max(lo, b_lo), min(hi, b_hi)
    if not blocks:
        return None
    return max(FEC_MIN_PERCENT, min(int(lo) + 1, int(hi)))


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p99": 0.0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]
    return {"p50": round(ordered[len(ordered) // 2], 3), "p99": round(p99, 3)}


@dataclass
class ReceiverStats:
    media_datagrams: int = 0  # every media datagram that reached the socket
    simulated_drops: int = 0
    media_bytes: int = 0
    frames_decoded: int = 0
    decode_errors: int = 0
    frames_skipped: int = 0  # complete but undecodable: after a loss, before its keyframe
    keyframes: int = 0
    asks: int = 0
    stamps: list[int] = field(default_factory=list)
    host_latency_ms: list[float] = field(default_factory=list)
    one_way_latency_ms: list[float] = field(default_factory=list)
    stamp_latency_ms: list[float] = field(default_factory=list)
    audio_packets: int = 0
    sizes: dict[str, int] = field(default_factory=dict)  # decoded pictures per WxH
    first_decoded: float | None = None
    last_decoded: float | None = None
    blocks: list[tuple[int, int]] = field(default_factory=list)  # recent P-frame (k, m)


class NativeReceiver:
    def __init__(
        self,
        addr: Address,
        identity: ClientIdentity,
        host_fp: bytes | None,
        hello: ClientHello,
        *,
        loss_percent: float = 0.0,
        seed: int | None = None,
        on_picture: Callable[[object, AccessUnit], None] | None = None,
        on_rumble: Callable[[int, int, int], None] | None = None,
        history: int | None = None,
        close_reason: str = "probe done",
    ) -> None:
        self.addr = addr
        self.sock = client_socket()
        self.conn = ClientConnection(identity, now=time.monotonic(), hello=hello, host_fp=host_fp)
        self._loss = loss_percent / 100.0
        self._rng = random.Random(seed)
        self._on_picture = on_picture
        self._on_rumble = on_rumble
        self._history = history
        self.close_reason = close_reason
        self._stop = threading.Event()
        self._outbox: collections.deque[tuple[InputEvent | Reconfigure, bool | None]] = (
            collections.deque(maxlen=1024)
        )
        self.stream_configs: list[StreamConfig] = []  # one per Reconfigure the host carried out
        # (monotonic s, kbps, reason) per BitrateChanged: the host's rate controller at work
        self.bitrates: list[tuple[float, int, AckReason | None]] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.inputs_sent = 0
        self.stats = ReceiverStats()
        self.assembler = FrameAssembler()
        self.server_hello: ServerHello | None = None
        self.route: InputRoute | None = None  # made from the ServerHello on first routed send
        self.closed: Closed | None = None
        self.clock_offset_ns = 0
        self._opener: MediaOpener | None = None
        self._units: queue.Queue[AccessUnit | None] = queue.Queue(maxsize=64)
        self._decoder: threading.Thread | None = None
        self._lock = threading.Lock()
        # feedback state
        self._window = 0
        self._acked = (-1, 0)  # newest frame handed to the decoder, the 16 before as bits
        self._ask = 0
        self._ask_range: tuple[int, int] | None = None
        self._ask_keyframe = False
        self._waiting_keyframe_after: int | None = None
        self._decodable = False
        self._max_seq = -1
        self._window_base_seq = -1
        self._window_received = 0
        self._next_feedback = 0.0
        self.loss_ppm_sent: list[int] = []

    # --- running --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run` (on its own thread) to close the session cleanly and return; any thread."""
        self._stop.set()
        self._wake()

    def send_input(self, ev: InputEvent, reliable: bool) -> None:
        """Queue one input event for the network thread; any thread.

        `reliable`: an edge (key, button, pad arrival/removal) on the control stream, in order;
        otherwise state (pointer position, pad snapshot) as an unreliable datagram. Events
        queued before the session started or after it ended are dropped.
        """
        self._outbox.append((ev, reliable))
        self._wake()

    def send_routed(self, ev: InputEvent) -> None:
        """Queue one input event to leave as the Rust client's input task sends it toward this
        host's capabilities (`InputRoute`: key edges on the control stream under
        HOST_CAP2_INPUT_EDGES, everything else a datagram, pad events folded, refused grants
        dropped); any thread."""
        self._outbox.append((ev, None))
        self._wake()

    def request_mode(self, mode: Mode) -> None:
        """Ask the host for a new mode mid-session (Reconfigure, e.g. the window was resized);
        any thread. The host answers Reconfigured and, when it switched, a StreamConfig."""
        self._outbox.append((Reconfigure(mode), True))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _send_inputs(self) -> None:
        while self._outbox:
            ev, reliable = self._outbox.popleft()
            if self.server_hello is None or self.conn.closed is not None:
                continue
            if isinstance(ev, Reconfigure):
                self.conn.send(ev)
                continue
            if reliable is None:  # network thread: the route's fold state lives here
                self.route = self.route or InputRoute(self.server_hello)
                routed = self.route.route([ev])
            else:
                routed = [(ev, reliable)]
            for out, edge in routed:
                if edge:
                    self.conn.send_frame(encode_input_edge(out))
                else:
                    self.conn.send_datagram(encode_dgram(DgramKind.INPUT_STATE, out.encode()))
                self.inputs_sent += 1

    def _keep(self, samples: list[float] | list[int]) -> None:
        """Bound a sample list to the newest `history` entries (a long-running viewer)."""
        if self._history is not None and len(samples) > 2 * self._history:
            del samples[: -self._history]

    def run(self, seconds: float, connect_timeout: float = 30.0) -> None:
        """Connect, stream for `seconds` after the ServerHello (or until `stop()`), then close
        cleanly."""
        self.conn.connect(self.addr, time.monotonic())
        started: list[float] = []

        def until() -> bool:
            self._events()
            if self.closed is not None:
                return True
            if self._stop.is_set():
                return True
            self._send_inputs()
            if self.server_hello is not None and not started:
                started.append(time.monotonic())
            now = time.monotonic()
            if started and now >= self._next_feedback:
                self._feedback(now)
            return bool(started) and now - started[0] >= seconds

        try:
            pump(self.conn, self.sock, self.addr, until,
                  time.monotonic() + connect_timeout + seconds, self._on_media,
                  self._wake_r)  # fmt: skip
            if self.server_hello is None and self.closed is None and not self._stop.is_set():
                raise ProbeError(f"no answer from {self.addr[0]}:{self.addr[1]}")
            if self.closed is None:
                self._send_inputs()  # e.g. the key releases of a closing viewer
                flush(self.conn, self.sock)
                self.conn.close(0, self.close_reason)
                flush(self.conn, self.sock)
        finally:
            if self._decoder is not None:
                self._units.put(None)
                self._decoder.join(timeout=10)
            self.sock.close()
            self._wake_r.close()
            self._wake_w.close()

    def _events(self) -> None:
        while (ev := self.conn.next_event()) is not None:
            match ev:
                case SessionStarted():
                    self._start(ev)
                case DatagramReceived(datagram=Datagram(kind=DgramKind.HOST_TIMING) as d):
                    timing = HostTiming.decode(d.payload)
                    if timing is not None:
                        self.stats.host_latency_ms.append(timing.host_us / 1000)
                        self._keep(self.stats.host_latency_ms)
                case DatagramReceived(datagram=Datagram(kind=DgramKind.RUMBLE) as d):
                    rumble = decode_rumble(d.payload)
                    if rumble is not None and self._on_rumble is not None:
                        self._on_rumble(*rumble)
                case DatagramReceived(datagram=Datagram(kind=DgramKind.AUDIO)):
                    self.stats.audio_packets += 1
                case MessageReceived(message=StreamConfig() as config):
                    self.stream_configs.append(config)
                    event(
                        _log,
                        "probe.stream_config",
                        epoch=config.epoch,
                        mode=_mode_text(config.mode),
                    )
                case MessageReceived(message=BitrateChanged() as changed):
                    self.bitrates.append((time.monotonic(), changed.bitrate_kbps, changed.reason))
                case MessageReceived(message=Reconfigured(accepted=False, mode=mode)):
                    event(_log, "probe.reconfigure_refused", logging.WARNING, mode=_mode_text(mode))
                case ClockSynced():
                    self.clock_offset_ns = ev.skew.offset_ns
                case Closed():
                    self.closed = ev

    def _start(self, ev: SessionStarted) -> None:
        self.server_hello = ev.hello
        self.assembler.scheme = ev.hello.fec_scheme  # a Rust host sends GF(2^16) blocks
        if ev.keys is None:
            raise ProbeError("the host granted no media suite")
        self._opener = MediaOpener(ev.keys, Role.CLIENT)
        codec = _DECODERS.get(Codec(ev.hello.codec), "hevc")
        self._decoder = threading.Thread(target=self._decode_loop, args=(codec,), daemon=True,
                                         name="probe-decode")  # fmt: skip
        self._decoder.start()
        self.conn.ready()
        self.conn.sync_clock()

    # --- media (network thread) -----------------------------------------------------------

    def _on_media(self, data: bytes) -> None:
        st = self.stats
        st.media_datagrams += 1
        if self._opener is None:
            return  # no keys: nothing may be opened (and a refused client gets nothing)
        if self._loss and self._rng.random() < self._loss:
            st.simulated_drops += 1
            return
        opened = self._opener.open(data)
        if opened is None:
            return
        header, seq, shard = opened
        st.media_bytes += len(data)
        if self._window_base_seq < 0:
            self._window_base_seq = seq - 1
        self._max_seq = max(self._max_seq, seq)
        self._window_received += 1
        if header.shard == 0 and not header.flags & UserFlag.SOF:  # IDRs get a boost
            st.blocks.append((header.k, header.m))
            del st.blocks[:-60]
        units, lost = self.assembler.add(header, shard)
        if lost is not None:
            self._on_loss(lost)
        for unit in units:
            self._on_unit(unit)

    def _on_loss(self, lost: tuple[int, int]) -> None:
        first = lost[0] if self._ask_range is None else min(lost[0], self._ask_range[0])
        self._ask_range = (first, lost[1])
        self._ask += 1
        self._ask_keyframe = not self._decodable
        self._waiting_keyframe_after = lost[1]
        self.stats.asks += 1
        self._send_feedback(window=False)

    def _on_unit(self, unit: AccessUnit) -> None:
        if unit.keyframe:
            self.stats.keyframes += 1
            if (
                self._waiting_keyframe_after is not None
                and unit.index > self._waiting_keyframe_after
            ):
                self._waiting_keyframe_after = None
                self._ask_range = None
            self._decodable = True
        if self._waiting_keyframe_after is not None or not self._decodable:
            self.stats.frames_skipped += 1
            return
        try:
            self._units.put_nowait(unit)
        except queue.Full:
            self.stats.frames_skipped += 1  # the decoder fell behind: drop, then resync
            self._on_loss((unit.index, unit.index))
            return
        self._ack(unit.index)

    def _ack(self, index: int) -> None:
        """Feedback `acked` after each clean frame, as the Rust client sends it: the host times
        frame sent -> ack, whose rise is a queue on the path (its delay-based rate control)."""
        last, mask = self._acked
        if index <= last or self.conn.closed is not None:
            return
        shift = index - last
        mask = ((mask << shift) | (1 << (shift - 1))) & 0xFFFF if last >= 0 and shift <= 16 else 0
        self._acked = index, mask
        self.conn.send_datagram(Feedback(acked=(index & 0xFFFF_FFFF, mask)).encode())

    def _feedback(self, now: float) -> None:
        self._next_feedback = now + FEEDBACK_INTERVAL_S
        self._send_feedback(window=True)

    def _send_feedback(self, window: bool) -> None:
        if self.conn.closed is not None or self.server_hello is None:
            return
        fb_window = loss_ppm = 0
        if window and self._max_seq >= 0:
            expected = self._max_seq - self._window_base_seq
            lost = max(0, expected - self._window_received)
            loss_ppm = lost * 1_000_000 // expected if expected > 0 else 0
            self._window_base_seq, self._window_received = self._max_seq, 0
            self._window += 1
            fb_window = self._window
            self.loss_ppm_sent.append(loss_ppm)
            self._keep(self.loss_ppm_sent)
        ask = self._ask if self._ask_range is not None or self._ask_keyframe else 0
        if not fb_window and not ask:
            return
        fb = Feedback(
            window=fb_window,
            loss_ppm=loss_ppm,
            packets_received=self.stats.media_datagrams,
            ask=ask,
            invalidate=self._ask_range if ask else None,
            keyframe=self._ask_keyframe and bool(ask),
        )
        self.conn.send_datagram(fb.encode())

    # --- decoding (decode thread) ---------------------------------------------------------

    def _decode_loop(self, codec_name: str) -> None:
        import av
        import numpy as np

        from ...vdisplay.stamp import HEIGHT, WIDTH, decode_stamp

        ctx = av.CodecContext.create(codec_name, "r")
        ctx.thread_type = "SLICE"
        units: dict[int, AccessUnit] = {}
        while True:
            unit = self._units.get()
            if unit is None:
                return
            units[unit.index] = unit
            packet = av.Packet(unit.data)
            packet.pts = unit.index
            try:
                frames = ctx.decode(packet)
            except av.FFmpegError:
                self.stats.decode_errors += 1
                continue
            for frame in frames:
                now_mono, now_wall = time.monotonic_ns(), wall_clock_ns()
                src = units.pop(frame.pts, unit) if frame.pts is not None else unit
                for old in [i for i in units if i < src.index]:
                    del units[old]
                st = self.stats
                st.frames_decoded += 1
                size = f"{frame.width}x{frame.height}"
                st.sizes[size] = st.sizes.get(size, 0) + 1
                t = time.monotonic()
                st.first_decoded = st.first_decoded or t
                st.last_decoded = t
                sh = self.server_hello
                if sh is not None:
                    origin = sh.clock_origin_ns
                    pts_ns = origin + src.pts_us * 1000
                    while pts_ns + (1 << 31) * 1000 < now_wall + self.clock_offset_ns:
                        pts_ns += (1 << 32) * 1000  # pts_us wrapped (every ~71 minutes)
                    st.one_way_latency_ms.append((now_wall + self.clock_offset_ns - pts_ns) / 1e6)
                    self._keep(st.one_way_latency_ms)
                plane = frame.planes[0]
                if frame.height >= HEIGHT and frame.width >= WIDTH:
                    luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
                    corner = luma[:HEIGHT, :WIDTH, None]
                    stamp = decode_stamp(np.repeat(corner, 3, axis=2))
                    if stamp is not None:
                        st.stamps.append(stamp.counter)
                        st.stamp_latency_ms.append((now_mono - stamp.capture_ns) / 1e6)
                        self._keep(st.stamps)
                        self._keep(st.stamp_latency_ms)
                if self._on_picture is not None:
                    self._on_picture(frame, src)

    # --- the report -----------------------------------------------------------------------

    def report(self, seconds: float) -> dict[str, object]:
        st, asm = self.stats, self.assembler.stats
        frames_sent = asm.frames + asm.frames_lost
        span = (st.last_decoded - st.first_decoded) if st.first_decoded and st.last_decoded else 0
        fps = (st.frames_decoded - 1) / span if span > 0 else 0.0
        stamps = st.stamps
        # In order: never an older frame after a newer one. The same stamp twice is a repeat
        # (the host re-sends the newest frame when its source drew nothing new in time).
        in_order = all(b >= a for a, b in itertools.pairwise(stamps))
        repeats = sum(b == a for a, b in itertools.pairwise(stamps))
        sh = self.server_hello
        fec_now = infer_fec_percent(st.blocks)
        sum_k = sum(k for k, _ in st.blocks)
        ratio = round(100 * sum(m for _, m in st.blocks) / sum_k, 1) if sum_k else None
        return {
            "ok": self.ok,
            "closed": None
            if self.closed is None
            else {"code": self.closed.code, "reason": self.closed.reason},
            "seconds": seconds,
            "codec": _DECODERS.get(Codec(sh.codec), "?") if sh else None,
            "suite": sh.suite.name if sh and sh.suite is not None else None,
            "mode": f"{sh.mode.width}x{sh.mode.height}@{sh.mode.refresh_hz}" if sh else None,
            "fps": round(fps, 2),
            "frames_decoded": st.frames_decoded,
            "frames_sent": frames_sent,
            "decoded_fraction": round(st.frames_decoded / frames_sent, 4) if frames_sent else 0.0,
            "frames_lost": asm.frames_lost,
            "frames_skipped": st.frames_skipped,
            "frames_recovered_by_fec": asm.frames_recovered_by_fec,
            "shards_repaired": asm.shards_repaired,
            "keyframes": st.keyframes,
            "asks": st.asks,
            "decode_errors": st.decode_errors,
            "host_latency_ms": _percentiles(st.host_latency_ms),
            "one_way_latency_ms": _percentiles(st.one_way_latency_ms),
            "stamp_latency_ms": _percentiles(st.stamp_latency_ms),
            "clock_offset_ms": round(self.clock_offset_ns / 1e6, 3),
            "mbps": round(st.media_bytes * 8 / seconds / 1e6, 3) if seconds else 0.0,
            "fec_scheme": sh.fec_scheme.name.lower() if sh else None,
            "fec_percent_start": sh.fec_percent if sh else None,
            "fec_percent": fec_now,
            "fec_overhead_percent": ratio,
            "loss_ppm_reported_max": max(self.loss_ppm_sent, default=0),
            "media_datagrams": st.media_datagrams,
            "simulated_drops": st.simulated_drops,
            "audio_packets": st.audio_packets,
            "sizes": dict(st.sizes),
            "stream_configs": [
                {"epoch": c.epoch, "mode": _mode_text(c.mode)} for c in self.stream_configs
            ],
            "stamps_read": len(stamps),
            "counters_in_order": in_order and len(stamps) > 0,
            "stamps_repeated": repeats,
        }

    @property
    def ok(self) -> bool:
        if self.server_hello is None:
            return False
        if self.closed is not None and self.closed.code not in (0,):
            return False
        return self.stats.frames_decoded > 0


def log_refusal(closed: Closed) -> None:
    event(_log, "probe.refused", logging.WARNING, code=hex(closed.code), reason=closed.reason)
