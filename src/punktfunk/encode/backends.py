"""Which FFmpeg encoder each (backend, codec) is, and the low-latency options it is opened with.

Every backend gets the same contract: CBR at the session bitrate with a VBV of about one frame,
an infinite GOP (IDR only when asked, via `pict_type = I` + forced-IDR), P-frames only (no
B-frames, no lookahead, no scene-cut keyframes), parameter sets repeated on every IDR, and the
VUI of the stream's colour state. Option names are FFmpeg's (`ffmpeg -h encoder=NAME`).

Only the software encoders can be exercised on a machine without GPUs; the hardware option
sets follow FFmpeg's documented options, and the tests check each name and value with
av_opt_set against the encoders compiled into PyAV's FFmpeg (VA-API is not compiled in there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
from av.codec.hwaccel import HWAccel

from ..proto.frame import HdrMeta
from . import hdr
from .base import Codec, EncoderBackend
from .convert import HDR10_TAGS, SDR_TAGS, OutFormat

# GOP length for wrappers that take "no periodic keyframe" as a huge gop_size.
_INFINITE_GOP = 2**31 - 1


@dataclass(frozen=True)
class StreamSettings:
    """What one encoder instance is opened for."""

    width: int
    height: int
    fps: int
    bitrate_kbps: int
    hdr: bool
    hdr_meta: HdrMeta
    threads: int = 2

    @property
    def bps(self) -> int:
        return self.bitrate_kbps * 1000

    @property
    def frame_bits(self) -> int:
        """A one-frame VBV."""
        return max(1, self.bps // self.fps)


@dataclass(frozen=True)
class Configured:
    """A codec context's settings: FFmpeg options, plus AVCodecContext fields."""

    options: dict[str, str]
    gop_size: int = -1  # -1: leave FFmpeg's default (the options set an infinite GOP)


@dataclass(frozen=True)
class BackendSpec:
    backend: EncoderBackend
    codec: Codec
    encoder: str  # FFmpeg encoder name
    sdr_format: OutFormat
    hdr_format: OutFormat
    configure: Callable[[StreamSettings], Configured]
    # Changing AVCodecContext.bit_rate on an open context retargets this wrapper's CBR with no
    # re-init. False: a bitrate change re-opens the encoder (the next frame is an IDR)...
    live_bitrate: bool
    # ...unless the wrapper also re-reads rc_max_rate/rc_buffer_size per frame and they can be
    # written (`liverate.knobs`): then the whole VBV follows the bitrate with no re-init.
    live_vbv: bool
    # The wrapper writes HDR10 SEI/metadata OBUs itself from options; otherwise we insert ours.
    native_hdr_metadata: bool
    hw_device: str | None = None  # PyAV HWAccel device type the encoder needs, if any
    # Why a failed open most likely failed, for the probe's one-line reason.
    open_hint: str = ""

    def __str__(self) -> str:
        return f"{self.backend}/{self.codec} ({self.encoder})"


def _vbv(s: StreamSettings, min_bits: int = 0) -> dict[str, str]:
    return {"maxrate": str(s.bps), "bufsize": str(max(s.frame_bits, min_bits))}


def _x264(s: StreamSettings) -> Configured:
    params = "keyint=infinite:scenecut=0:bframes=0:rc-lookahead=0:sync-lookahead=0:repeat-headers=1"
    return Configured(
        {
            "preset": "ultrafast",
            "tune": "zerolatency",  # sliced threads, no frame delay
            "forced-idr": "1",
            **_vbv(s),
            "x264-params": params,
        }
    )


def _x265(s: StreamSettings) -> Configured:
    params = [
        "keyint=-1",  # -1: one keyframe at the start, then only forced ones
        "open-gop=0",  # else x265 turns forced IDRs into CRAs
        "scenecut=0",
        "bframes=0",
        "rc-lookahead=0",
        "frame-threads=1",
        f"pools={s.threads}",
        "repeat-headers=1",
        "info=0",  # no multi-kB encoder-settings SEI in the first IDR
        "log-level=error",
    ]
    if s.hdr:
        params += [
            "hdr10=1",
            "hdr10-opt=0",
            "colorprim=bt2020",
            "transfer=smpte2084",
            "colormatrix=bt2020nc",
            "range=limited",
            hdr.x265_hdr_params(s.hdr_meta),
        ]
    return Configured(
        {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "forced-idr": "1",
            **_vbv(s),
            "x265-params": ":".join(params),
        }
    )


def _svtav1(s: StreamSettings) -> Configured:
    # SVT-AV1 sizes its buffers in ms, each at least 20, initial/optimal below the maximum.
    buffer_ms = max(21, -(-1000 // s.fps))
    params = [
        "rtc=1",  # real-time mode: low-delay prediction, no TPL
        "pred-struct=1",
        "rc=2",  # CBR
        "keyint=-1",
        "scd=0",
        "lookahead=0",
        "enable-overlays=0",
        "force-key-frames=1",
        f"lp={s.threads}",
        f"buf-sz={buffer_ms}",
        f"buf-initial-sz={buffer_ms - 1}",
        f"buf-optimal-sz={buffer_ms - 1}",
    ]
    if s.hdr:
        params.append(hdr.svtav1_hdr_params(s.hdr_meta))
    # No maxrate: SVT-AV1 supports a maximum bit rate only with TPL, which real-time mode drops.
    return Configured({"preset": "12", "svtav1-params": ":".join(params)})


def _nvenc(s: StreamSettings) -> Configured:
    return Configured(
        {
            "preset": "p1",
            "tune": "ull",
            "rc": "cbr",
            "zerolatency": "1",
            "delay": "0",
            "rc-lookahead": "0",
            "no-scenecut": "1",
            "forced-idr": "1",
            "multipass": "disabled",
            "b_ref_mode": "disabled",
            "profile": "main10" if s.hdr else "main",
            **_vbv(s),
        },
        gop_size=_INFINITE_GOP,
    )


def _nvenc_h264(s: StreamSettings) -> Configured:
    conf = _nvenc(s)
    return Configured({**conf.options, "profile": "high"}, conf.gop_size)


def _nvenc_av1(s: StreamSettings) -> Configured:
    conf = _nvenc(s)
    options = {k: v for k, v in conf.options.items() if k != "profile"}
    return Configured(options, conf.gop_size)


def _vaapi(s: StreamSettings) -> Configured:
    # vaapi_encode keeps gop_size in a 16-bit field; IDRs past the first come only on request.
    return Configured(
        {"rc_mode": "CBR", "async_depth": "1", "idr_interval": "0", **_vbv(s)},
        gop_size=2**15 - 1,
    )


def _qsv(s: StreamSettings) -> Configured:
    return Configured(
        {
            "preset": "veryfast",
            "async_depth": "1",
            "low_delay_brc": "1",
            "forced_idr": "1",
            **_vbv(s),
        },
        gop_size=2**16 - 1,
    )


def _qsv_h26x(s: StreamSettings) -> Configured:
    conf = _qsv(s)
    # idr_interval=0: every I-frame (here: only forced ones) is an IDR.
    extra = {"scenario": "remotegaming", "idr_interval": "0"}
    return Configured({**conf.options, **extra}, conf.gop_size)


def _amf(s: StreamSettings) -> Configured:
    return Configured(
        {
            "usage": "ultralowlatency",
            "quality": "speed",
            "rc": "cbr",
            "enforce_hrd": "1",
            "filler_data": "0",
            "preanalysis": "0",
            "forced_idr": "1",
            **_vbv(s),
        },
        gop_size=_INFINITE_GOP,
    )


def _amf_h264(s: StreamSettings) -> Configured:
    conf = _amf(s)
    return Configured({**conf.options, "vbaq": "0"}, conf.gop_size)


def _amf_hevc(s: StreamSettings) -> Configured:
    conf = _amf(s)
    return Configured({**conf.options, "vbaq": "0", "header_insertion_mode": "idr"}, conf.gop_size)


def _amf_av1(s: StreamSettings) -> Configured:
    conf = _amf(s)
    extra = {"aq_mode": "none", "header_insertion_mode": "gop"}
    return Configured({**conf.options, **extra}, conf.gop_size)


def _hardware(
    backend: EncoderBackend,
    codec: Codec,
    configure: Callable[[StreamSettings], Configured],
    hint: str,
    device: str | None = None,
) -> BackendSpec:
    """GPU encoders take NV12/P010 and get HDR10 metadata inserted by us (FFmpeg's wrappers
    read it from frame side data, which PyAV cannot attach). FFmpeg's nvenc re-targets the
    bitrate on an open context; the others are re-opened."""
    name = f"{codec}_{backend}"
    live = backend is EncoderBackend.NVENC
    return BackendSpec(
        backend, codec, name, OutFormat.NV12, OutFormat.P010, configure, live, live, False,
        device, hint,
    )  # fmt: skip


_NVENC, _VAAPI = "no usable NVENC device", "no usable VA-API device"
_QSV, _AMF = "no usable Intel Quick Sync device", "no usable AMD AMF runtime"
_B, _C = EncoderBackend, Codec

SPECS: dict[tuple[EncoderBackend, Codec], BackendSpec] = {
    (spec.backend, spec.codec): spec
    for spec in (
        _hardware(_B.NVENC, _C.H264, _nvenc_h264, _NVENC),
        _hardware(_B.NVENC, _C.HEVC, _nvenc, _NVENC),
        _hardware(_B.NVENC, _C.AV1, _nvenc_av1, _NVENC),
        _hardware(_B.VAAPI, _C.H264, _vaapi, _VAAPI, "vaapi"),
        _hardware(_B.VAAPI, _C.HEVC, _vaapi, _VAAPI, "vaapi"),
        _hardware(_B.VAAPI, _C.AV1, _vaapi, _VAAPI, "vaapi"),
        _hardware(_B.QSV, _C.H264, _qsv_h26x, _QSV),
        _hardware(_B.QSV, _C.HEVC, _qsv_h26x, _QSV),
        _hardware(_B.QSV, _C.AV1, _qsv, _QSV),
        _hardware(_B.AMF, _C.H264, _amf_h264, _AMF),
        _hardware(_B.AMF, _C.HEVC, _amf_hevc, _AMF),
        _hardware(_B.AMF, _C.AV1, _amf_av1, _AMF),
        # FFmpeg's libx264 re-reads bit_rate, maxrate and bufsize per frame (x264_encoder_reconfig,
        # see liverate.py); libx265 and SVT-AV1 re-read none of them: a change re-opens those.
        # x265 and SVT-AV1 write HDR10 SEI/OBUs themselves from their options.
        BackendSpec(
            _B.SOFTWARE,
            _C.H264,
            "libx264",
            OutFormat.YUV420P,
            OutFormat.YUV420P10,
            _x264,
            live_bitrate=False,
            live_vbv=True,
            native_hdr_metadata=False,
        ),
        BackendSpec(
            _B.SOFTWARE,
            _C.HEVC,
            "libx265",
            OutFormat.YUV420P,
            OutFormat.YUV420P10,
            _x265,
            live_bitrate=False,
            live_vbv=False,
            native_hdr_metadata=True,
        ),
        BackendSpec(
            _B.SOFTWARE,
            _C.AV1,
            "libsvtav1",
            OutFormat.YUV420P,
            OutFormat.YUV420P10,
            _svtav1,
            live_bitrate=False,
            live_vbv=False,
            native_hdr_metadata=True,
        ),
    )
}


def spec_for(backend: EncoderBackend, codec: Codec) -> BackendSpec:
    return SPECS[(backend, codec)]


class EncoderError(RuntimeError):
    """The encoder failed; the message names the encoder and what went wrong."""


def open_codec(
    spec: BackendSpec, settings: StreamSettings, device: str | None = None
) -> av.VideoCodecContext:
    """An opened codec context for `spec` with the low-latency options; raises on failure."""
    hwaccel = HWAccel(spec.hw_device, device=device) if spec.hw_device else None
    cc = av.CodecContext.create(spec.encoder, "w", hwaccel=hwaccel)
    cc.width, cc.height = settings.width, settings.height
    cc.pix_fmt = (spec.hdr_format if settings.hdr else spec.sdr_format).value
    cc.framerate = Fraction(settings.fps)
    cc.time_base = Fraction(1, settings.fps)
    cc.bit_rate = settings.bps
    tags = HDR10_TAGS if settings.hdr else SDR_TAGS
    cc.color_primaries, cc.color_trc = tags.primaries, tags.trc
    cc.colorspace, cc.color_range = tags.space, tags.range
    configured = spec.configure(settings)
    if configured.gop_size >= 0:
        cc.gop_size = configured.gop_size
    cc.max_b_frames = 0
    cc.thread_type = "SLICE"  # frame threads would add a frame of delay per thread
    cc.thread_count = settings.threads
    cc.options = dict(configured.options)
    cc.open()
    if cc.options:  # FFmpeg hands back what nothing consumed: a misspelt option is a bug
        raise EncoderError(f"{spec.encoder} did not accept options {sorted(cc.options)}")
    return cc
