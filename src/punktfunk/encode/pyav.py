"""The one Encoder implementation: any FFmpeg encoder (hardware or software) through PyAV.

A submitted frame is converted (`convert.Converter`) and encoded. With `pipeline_depth=1` both
run inside `submit()` on the caller's thread and `poll()` right after returns its output. With
`pipeline_depth=2` the two stages run on their own threads joined by one-slot queues, so frame
N+1 is converted while frame N is encoded (PyAV and numpy release the GIL for the heavy work);
`submit()` then only enqueues (blocking while both stages are busy), and output appears when the
encode thread finishes it: `poll(timeout)` waits for it, so one thread can submit while another
polls. A caller that pulls frames (the session pipeline) asks `wait_ready()` first: it returns
once nothing waits for the encoder and the frame being encoded is about one conversion time
from done, so the next frame is converted just in time and never queues behind a busy encoder.
A frame whose size, pixel format or HDR state differs from the last one re-opens the encoder
on that frame (its first output is an IDR); callers see no difference. A bitrate change is
applied live where the wrapper allows it (bitrate and VBV together, `liverate.py`: libx264,
nvenc), else by a re-open.

Outputs are access units as the encoder wrote them (Annex-B for H.264/HEVC, a temporal unit of
OBUs for AV1), patched on IDRs so that every IDR carries its parameter sets (SPS/PPS/VPS, or the
AV1 sequence header) and, for HDR10 on encoders that do not write it themselves, the ST.2086 and
content-light SEI (metadata OBUs for AV1).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import cache

import av
from av.video.frame import PictureType

from ..capture.base import CapturedFrame
from ..log import event
from ..proto.frame import HDR10_DEFAULT, HdrMeta, PixelFormat
from . import bitstream as bs
from .backends import BackendSpec, EncoderError, StreamSettings, open_codec
from .base import EncodedFrame, EncoderCaps, FrameType
from .convert import Converter, Cursor, Method, selftest
from .liverate import RateKnobs, knobs

_log = logging.getLogger("punktfunk.encode.pyav")

PTS_HZ = 90_000  # EncodedFrame.pts: capture time in 90 kHz ticks since the first frame

# SVT-AV1 prints a banner, its configuration and every refused parameter to stderr on each open
# (the bitrate-ceiling search opens it a dozen times, failing half of them). Failures still reach
# us through FFmpeg's log and errors; an operator who wants SVT's own lines sets SVT_LOG=1..3.
os.environ.setdefault("SVT_LOG", "0")


@cache
def _hdr_selftest(method: Method) -> None:
    """Check the HDR10 conversion on known colours once per process before streaming HDR."""
    selftest(method)  # raises ValueError naming the colour that came out wrong
    event(_log, "encode.hdr_selftest", method=method, ok=True)


@dataclass(frozen=True)
class EncoderParams:
    """What a session resolved for its encoder (sizes come from the frames)."""

    bitrate_kbps: int
    fps: int
    max_bit_depth: int = 10
    max_bitrate_kbps: int | None = None  # the probed ceiling; set_bitrate clamps to it
    pipeline_depth: int = 1
    threads: int = 2
    convert_method: Method = Method.SWSCALE
    device: str | None = None  # render node for VA-API


@dataclass(frozen=True)
class _Shape:
    """What forces a re-init when it changes."""

    width: int
    height: int
    pixel_format: PixelFormat
    source_hdr: bool
    hdr: bool  # HDR10 out: source HDR and the codec/encoder can carry it


@dataclass
class _Job:
    """A converted frame on its way to the encoder."""

    yuv: av.VideoFrame
    shape: _Shape
    index: int
    capture_ns: int
    convert_ms: float


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


_STOP = None
_EWMA = 0.2  # weight of the newest sample in the convert/encode time estimates
# Start converting this much before the estimates say the encoder frees up: an encoder left
# idle by a late conversion costs throughput, one done early makes its frame wait.
_LEAD_MARGIN_S = 0.002


class PyAVEncoder:
    """`Encoder` over one FFmpeg encoder; see the module docstring for the threading."""

    def __init__(
        self, spec: BackendSpec, params: EncoderParams, hdr_meta: HdrMeta | None = None
    ) -> None:
        if params.pipeline_depth not in (1, 2):
            raise ValueError(f"pipeline_depth must be 1 or 2, got {params.pipeline_depth}")
        self.spec, self.params = spec, params
        self._hdr_capable = spec.codec.carries_hdr10 and params.max_bit_depth >= 10
        self._lock = threading.Lock()
        self._want_idr = False
        self._bitrate_kbps = self._clamp(params.bitrate_kbps)
        self._meta = hdr_meta or HDR10_DEFAULT
        self._cursor: Cursor | None = None
        self._next_index = 0
        self._t0: int | None = None
        # Conversion stage state.
        self._converter: Converter | None = None
        self._converter_shape: _Shape | None = None
        self._downgrade_logged = False
        # Encode stage state.
        self._cc: av.VideoCodecContext | None = None
        self._shape: _Shape | None = None
        self._cc_bitrate = 0
        self._knobs: RateKnobs | None = None  # the open context's VBV, where it can be written
        self._cc_meta: HdrMeta | None = None
        self._cc_frames = 0
        self._pending: dict[int, tuple[int, int]] = {}  # codec pts -> (index, capture_ns)
        self._headers: list[bytes] = []  # the last IDR's parameter sets / sequence header
        self._last_idr_index: int | None = None
        self._out: deque[EncodedFrame] = deque()
        self._ready = threading.Condition()  # signalled when output lands or a stage fails
        self._emitted = 0  # access units produced; _next_index - _emitted are in flight
        # Pull gate (depth 2): frames submitted but not yet started by the encode stage, when
        # the running encode started, and smoothed stage times (s) to time the next convert.
        self._queued = 0
        self._inputs_held = 0  # submitted frames whose pixels are not converted yet
        self._encode_started: float | None = None
        self._est_convert_s = 0.0
        self._est_encode_s = 0.0
        self.timings: deque[tuple[float, float]] = deque(maxlen=4096)  # (convert, encode) ms
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        if params.pipeline_depth == 2:
            self._frames: queue.Queue[tuple[CapturedFrame, int] | _Flush | None] = queue.Queue(1)
            self._jobs: queue.Queue[_Job | _Flush | None] = queue.Queue(1)
            for target, name in ((self._convert_loop, "convert"), (self._encode_loop, "encode")):
                thread = threading.Thread(target=target, name=f"pf-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)

    # --- Encoder protocol -----------------------------------------------------------------------
    @property
    def caps(self) -> EncoderCaps:
        # No FFmpeg wrapper exposes reference invalidation, so loss recovery is an IDR.
        return EncoderCaps(supports_rfi=False, supports_hdr_metadata=self._hdr_capable)

    def submit(self, frame: CapturedFrame) -> None:
        self._raise_failure()
        index = self._next_index
        self._next_index += 1
        with self._ready:
            self._inputs_held += 1
            self._queued += 1 if self._threads else 0
        if self._threads:
            self._frames.put((frame, index))
            return
        try:
            try:
                job = self._convert(frame, index)
            finally:
                self._release_input()
            self._encode_job(job)
        except (ValueError, av.FFmpegError) as exc:
            raise EncoderError(f"{self.spec.encoder}: {exc}") from exc

    def holds_input(self) -> bool:
        """True while a submitted frame's pixels are still to be read (converted)."""
        with self._ready:
            return self._inputs_held > 0

    def _release_input(self) -> None:
        with self._ready:
            self._inputs_held -= 1

    def poll(self, timeout: float = 0.0) -> list[EncodedFrame]:
        """Access units finished since the last poll, in order. With pipeline depth 2 they
        finish on the encoder's own thread: `timeout` > 0 waits up to that long for one while
        frames are in flight (poll from another thread than submit to overlap the stages)."""
        if timeout > 0:
            with self._ready:
                self._ready.wait_for(
                    lambda: self._out or self._error or self._emitted >= self._next_index, timeout
                )
        self._raise_failure()
        out = []
        while self._out:
            out.append(self._out.popleft())
        return out

    def wait_ready(self, timeout: float) -> bool:
        """See `Encoder.wait_ready`. Depth 1 converts and encodes inside submit(): always ready.
        Depth 2: ready when no submitted frame is still waiting for the encode stage and the
        running encode (if any) should end within the expected conversion time."""
        if not self._threads:
            return True
        deadline = time.perf_counter() + timeout
        with self._ready:
            while True:
                now = time.perf_counter()
                wait = self._not_ready_for(now)
                if wait <= 0 or self._error is not None:
                    return True
                if now >= deadline:
                    return False
                self._ready.wait(min(wait, deadline - now))

    def _not_ready_for(self, now: float) -> float:
        """Seconds until the pull gate opens (inf: until the encode stage takes a frame)."""
        if self._queued > 0:
            return float("inf")
        if self._encode_started is None:
            return 0.0
        remaining = self._est_encode_s - (now - self._encode_started)
        return remaining - self._est_convert_s - _LEAD_MARGIN_S

    def request_keyframe(self) -> None:
        with self._lock:
            self._want_idr = True

    def invalidate_ref_frames(self, first: int, last: int) -> None:
        """No backend here can drop references, so: an IDR, unless one is already due or sent
        after `last` (a burst of loss reports costs one IDR)."""
        with self._lock:
            healed = self._last_idr_index is not None and self._last_idr_index > last
            if self._want_idr or healed:
                return
            self._want_idr = True
        event(_log, "encode.invalidate", logging.DEBUG, first=first, last=last, action="idr")

    def set_hdr_meta(self, meta: HdrMeta | None) -> None:
        with self._lock:
            self._meta = meta or HDR10_DEFAULT

    def set_bitrate(self, kbps: int) -> None:
        with self._lock:
            self._bitrate_kbps = self._clamp(kbps)

    def set_cursor(self, cursor: Cursor | None) -> None:
        """The cursor to composite into the following frames (None: none)."""
        self._cursor = cursor

    def flush(self) -> list[EncodedFrame]:
        """Encode everything submitted, drain the encoder and close it (the next frame re-opens
        with an IDR); returns all output not yet polled."""
        if self._threads:
            marker = _Flush()
            self._frames.put(marker)
            marker.done.wait()
        else:
            self._drain()
        return self.poll()

    def close(self) -> None:
        """Stop the stage threads and shut the encoder down; unpolled output is dropped."""
        if self._threads:
            self._frames.put(_STOP)
            for thread in self._threads:
                thread.join()
            self._threads = []
        if self._cc is not None:
            self._cc.encode(None)  # an orderly end of stream (SVT-AV1 complains otherwise)
            self._cc = self._knobs = None  # PyAV frees the context with its last reference
        # The converter's swscale context owns a libavutil worker thread and frame-sized
        # buffers: an encoder object kept around after close() must not keep them too.
        self._converter = self._converter_shape = None
        self._pending.clear()
        self._headers = []
        self._out.clear()

    # --- helpers --------------------------------------------------------------------------------
    def _clamp(self, kbps: int) -> int:
        ceiling = self.params.max_bitrate_kbps
        if ceiling is not None and kbps > ceiling:
            event(
                _log,
                "encode.bitrate_clamped",
                asked_kbps=kbps,
                ceiling_kbps=ceiling,
                encoder=self.spec.encoder,
            )
            return ceiling
        return kbps

    def _fail(self, exc: BaseException) -> None:
        with self._ready:
            self._error = exc
            self._ready.notify_all()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise EncoderError(f"{self.spec.encoder}: {self._error}") from self._error

    # --- conversion stage -----------------------------------------------------------------------
    def _convert(self, frame: CapturedFrame, index: int) -> _Job:
        start = time.perf_counter()
        hdr_out = frame.hdr and self._hdr_capable
        if frame.hdr and not hdr_out and not self._downgrade_logged:
            self._downgrade_logged = True
            why = (
                f"{self.spec.codec} carries no HDR10"
                if not self.spec.codec.carries_hdr10
                else f"encoder probed {self.params.max_bit_depth}-bit only"
            )
            event(
                _log,
                "encode.hdr_downgrade",
                logging.WARNING,
                encoder=self.spec.encoder,
                reason=why,
                result="8-bit SDR",
            )
        shape = _Shape(frame.width, frame.height, frame.pixel_format, frame.hdr, hdr_out)
        if self._converter is None or shape != self._converter_shape:
            if hdr_out:
                _hdr_selftest(self.params.convert_method)
            out = self.spec.hdr_format if hdr_out else self.spec.sdr_format
            self._converter = Converter(
                frame.width,
                frame.height,
                frame.pixel_format,
                frame.hdr,
                out,
                method=self.params.convert_method,
                threads=self.params.threads,
            )
            self._converter_shape = shape
        yuv = self._converter.convert(frame.pixels, self._cursor)
        return _Job(yuv, shape, index, frame.capture_ns, (time.perf_counter() - start) * 1e3)

    def _convert_loop(self) -> None:
        while True:
            item = self._frames.get()
            if item is _STOP or isinstance(item, _Flush):
                self._jobs.put(item)
                if item is _STOP:
                    return
                continue
            try:
                job = self._convert(*item) if self._error is None else None
            except BaseException as exc:  # surfaced by the next submit/poll
                self._fail(exc)
                continue
            finally:
                self._release_input()
            if job is not None:
                self._jobs.put(job)

    # --- encode stage ---------------------------------------------------------------------------
    def _encode_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            if isinstance(job, _Job):
                with self._ready:
                    self._queued -= 1
                    self._encode_started = time.perf_counter()
                    self._ready.notify_all()
            try:
                if isinstance(job, _Flush):
                    self._drain()
                elif self._error is None:
                    self._encode_job(job)
            except BaseException as exc:
                self._fail(exc)
            finally:
                if isinstance(job, _Flush):
                    job.done.set()
                else:
                    with self._ready:
                        # The whole stage (a re-open, output handling) paces the next frame.
                        took = time.perf_counter() - (self._encode_started or 0.0)
                        self._est_encode_s += _EWMA * (took - self._est_encode_s)
                        self._encode_started = None
                        self._ready.notify_all()

    def _encode_job(self, job: _Job) -> None:
        with self._lock:
            want_idr, self._want_idr = self._want_idr, False
            bitrate, meta = self._bitrate_kbps, self._meta
        reason = self._reinit_reason(job.shape, bitrate, meta)
        if reason is not None:
            self._drain()
            self._open(job.shape, bitrate, meta, reason)
        assert self._cc is not None
        if bitrate != self._cc_bitrate:  # only live backends get here
            self._retarget(job.shape, bitrate, meta)
        if job.shape.hdr and meta != self._cc_meta:  # injected SEI: new values need an IDR
            self._cc_meta, want_idr = meta, True
        pts = self._cc_frames
        self._cc_frames += 1
        job.yuv.pts = pts
        job.yuv.pict_type = PictureType.I if want_idr else PictureType.NONE
        self._pending[pts] = (job.index, job.capture_ns)
        if self._t0 is None:
            self._t0 = job.capture_ns
        start = time.perf_counter()
        packets = self._cc.encode(job.yuv)
        self.timings.append((job.convert_ms, (time.perf_counter() - start) * 1e3))
        with self._ready:
            self._est_convert_s += _EWMA * (job.convert_ms / 1e3 - self._est_convert_s)
        self._collect(packets)

    def _reinit_reason(self, shape: _Shape, bitrate: int, meta: HdrMeta) -> str | None:
        if self._cc is None:
            return "first frame" if self._shape is None else "after flush"
        if shape != self._shape:
            return f"stream changed {self._describe(self._shape)} -> {self._describe(shape)}"
        if bitrate != self._cc_bitrate and not self._live():
            return f"bitrate {self._cc_bitrate} -> {bitrate} kbps"
        if shape.hdr and meta != self._cc_meta and self.spec.native_hdr_metadata:
            return "HDR metadata changed"
        return None

    @staticmethod
    def _describe(shape: _Shape | None) -> str:
        if shape is None:
            return "none"
        dynamic = "HDR10" if shape.hdr else ("SDR(from HDR)" if shape.source_hdr else "SDR")
        return f"{shape.width}x{shape.height}/{shape.pixel_format.name}/{dynamic}"

    def _live(self) -> bool:
        return self.spec.live_bitrate or (self.spec.live_vbv and self._knobs is not None)

    def _settings(self, shape: _Shape, bitrate: int, meta: HdrMeta) -> StreamSettings:
        return StreamSettings(
            shape.width,
            shape.height,
            self.params.fps,
            bitrate,
            shape.hdr,
            meta,
            self.params.threads,
        )

    def _retarget(self, shape: _Shape, bitrate: int, meta: HdrMeta) -> None:
        """A new bitrate on the open encoder: bit_rate, and the VBV the backend opens with at
        that rate (one frame's worth), which the wrapper reconfigures on the next frame."""
        assert self._cc is not None
        self._cc.bit_rate = bitrate * 1000
        vbv = False
        if self._knobs is not None:
            options = self.spec.configure(self._settings(shape, bitrate, meta)).options
            if "maxrate" in options and "bufsize" in options:
                vbv = self._knobs.set(int(options["maxrate"]), int(options["bufsize"]))
        self._cc_bitrate = bitrate
        event(_log, "encode.bitrate", encoder=self.spec.encoder, kbps=bitrate, reinit=False,
              vbv=vbv)  # fmt: skip

    def _open(self, shape: _Shape, bitrate: int, meta: HdrMeta, reason: str) -> None:
        settings = self._settings(shape, bitrate, meta)
        self._cc = open_codec(self.spec, settings, self.params.device)
        self._knobs = knobs(self._cc) if self.spec.live_vbv else None
        self._shape, self._cc_bitrate, self._cc_meta = shape, bitrate, meta
        self._cc_frames = 0
        self._headers = []
        event(
            _log,
            "encode.open",
            encoder=self.spec.encoder,
            stream=self._describe(shape),
            fps=self.params.fps,
            bitrate_kbps=bitrate,
            pix_fmt=self._cc.pix_fmt,
            pipeline_depth=self.params.pipeline_depth,
            reason=reason,
        )

    def _drain(self) -> None:
        """Flush the open encoder's delayed output, then close it."""
        if self._cc is None:
            return
        self._collect(self._cc.encode(None))
        self._cc = self._knobs = None
        self._pending.clear()

    def _collect(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            index, capture_ns = self._pending.pop(packet.pts)
            data = bytes(packet)
            if packet.is_keyframe:
                # Parameter sets on every IDR; HDR10 metadata where the encoder writes none.
                inject = bool(self._shape and self._shape.hdr) and not self.spec.native_hdr_metadata
                meta = (self._cc_meta or HDR10_DEFAULT) if inject else None
                data, self._headers = bs.patch_idr(self.spec.codec, data, self._headers, meta)
                with self._lock:
                    self._last_idr_index = index
            assert self._t0 is not None
            self._emitted += 1
            self._out.append(
                EncodedFrame(
                    data=data,
                    frame_type=FrameType.IDR if packet.is_keyframe else FrameType.P,
                    pts=(capture_ns - self._t0) * PTS_HZ // 1_000_000_000,
                    frame_index=index,
                    capture_ns=capture_ns,
                    encode_done_ns=time.monotonic_ns(),
                )
            )
        if packets:
            with self._ready:
                self._ready.notify_all()
