"""Probe before configure: which (backend, codec) pairs really encode here, at what depth/bitrate.

Each candidate is opened with the session's real mode and low-latency options and must encode
a few frames; 10-bit is probed separately with the full HDR10 configuration (a failure there
downgrades that encoder to 8-bit, and the plan then to SDR). The bitrate ceiling is found by a
bounded binary search of real opens at a small size. Results are cached per (backend, codec,
mode, depth) for the host's lifetime. `ProbeReport.encoders` is what `MachineCaps` takes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av
import av.logging
from av.codec.codec import UnknownCodecError

from ..log import event
from ..proto.frame import HDR10_DEFAULT
from ..vdisplay.base import DisplayMode
from .backends import SPECS, BackendSpec, EncoderError, StreamSettings, open_codec
from .base import PREFERENCE, Codec, EncoderBackend, ProbedEncoder

_log = logging.getLogger("punktfunk.encode.caps")

PROBE_KBPS = 5_000  # a bitrate every encoder takes at any mode: the open/encode check
MAX_KBPS = 1_000_000  # the ceiling search's top (HostConfig's bitrate_max_kbps limit)
SEARCH_SIZE = (320, 240)  # the ceiling search opens this small for speed
SEARCH_STEPS = 16
PROBE_FRAMES = 3


class NoWorkingEncoderError(RuntimeError):
    """Nothing could encode on this machine; the message lists every attempt and its failure."""


@dataclass(frozen=True)
class ProbeResult:
    """One probe of one (backend, codec, mode, depth)."""

    backend: EncoderBackend
    codec: Codec
    encoder: str
    mode: DisplayMode
    depth: int
    ok: bool
    reason: str  # why it failed ("" when ok)
    max_bitrate_kbps: int = 0

    def __str__(self) -> str:
        return f"{self.backend}/{self.codec} ({self.encoder}, {self.depth}-bit)"


@dataclass(frozen=True)
class ProbeReport:
    results: tuple[ProbeResult, ...]

    @property
    def encoders(self) -> tuple[ProbedEncoder, ...]:
        """Working (backend, codec) pairs with their best depth and ceiling, for MachineCaps."""
        best: dict[tuple[EncoderBackend, Codec], ProbeResult] = {}
        for r in self.results:
            key = (r.backend, r.codec)
            if r.ok and (key not in best or r.depth > best[key].depth):
                best[key] = r
        return tuple(
            ProbedEncoder(r.backend, r.codec, r.depth, r.max_bitrate_kbps) for r in best.values()
        )

    def failure(self, backend: EncoderBackend, codec: Codec) -> str | None:
        """Why (backend, codec) cannot encode at all here, or None if it can."""
        tried = [r for r in self.results if (r.backend, r.codec) == (backend, codec)]
        if not tried:
            return "not probed"
        if any(r.ok for r in tried):
            return None
        return f"{tried[0].encoder}: {tried[0].reason}"

    def require_working(self) -> ProbeReport:
        """Self, or NoWorkingEncoderError listing what was tried and why each failed."""
        if self.encoders:
            return self
        tried = "; ".join(f"{r}: {r.reason}" for r in self.results if r.depth == 8)
        raise NoWorkingEncoderError(f"no working video encoder on this machine; tried: {tried}")


# Keyed by spec, which names the (backend, codec): per (backend, codec, mode, depth).
_cache: dict[tuple[BackendSpec, DisplayMode, int], ProbeResult] = {}
_ceilings: dict[BackendSpec, int] = {}
_lock = threading.Lock()  # probes run one at a time (they also share FFmpeg's log level)


def _try_encode(spec: BackendSpec, settings: StreamSettings, device: str | None) -> str:
    """Open `spec` and encode a few frames; "" on success, else the reason in one line."""
    fmt = spec.hdr_format if settings.hdr else spec.sdr_format
    with av.logging.Capture() as logs:
        try:
            cc = open_codec(spec, settings, device)
            frame = av.VideoFrame(settings.width, settings.height, fmt.value)
            for plane in frame.planes:  # mid grey: a plain picture every encoder accepts
                plane.update(bytes([0x80]) * plane.buffer_size)
            packets = []
            for i in range(PROBE_FRAMES):
                frame.pts = i
                packets += cc.encode(frame)
            packets += cc.encode(None)
        except (av.FFmpegError, EncoderError, OSError, ValueError) as exc:
            detail = "; ".join(
                dict.fromkeys(m.strip() for lvl, _, m in logs if lvl <= av.logging.ERROR)
            )
            message = detail or str(exc).split(":")[0]
            hint = f"{spec.open_hint}: " if spec.open_hint else ""
            return f"cannot open ({hint}{message})"
    if not packets or not packets[0].is_keyframe:
        return "opened but produced no keyframe"
    return ""


def _precheck(spec: BackendSpec, device: str | None) -> str:
    """A reason `spec` cannot work here that needs no open, or ""."""
    try:
        av.Codec(spec.encoder, "w")
    except UnknownCodecError:
        return "not built into this FFmpeg (PyAV's libavcodec)"
    if spec.hw_device == "vaapi" and device is None and not list(Path("/dev/dri").glob("renderD*")):
        return "no /dev/dri render node"
    return ""


def _ceiling(spec: BackendSpec, mode: DisplayMode, device: str | None) -> int:
    """Highest bitrate (kbps) in PROBE_KBPS..MAX_KBPS this encoder opens and encodes with.

    Bisects with real opens at SEARCH_SIZE (or at the mode itself for an encoder that refuses
    that size), at most SEARCH_STEPS of them, to within 0.1 %.
    """
    if spec in _ceilings:
        return _ceilings[spec]
    size = SEARCH_SIZE

    def works(kbps: int) -> bool:
        settings = StreamSettings(*size, mode.refresh_hz, kbps, False, HDR10_DEFAULT, threads=1)
        return _try_encode(spec, settings, device) == ""

    lo, hi, steps = PROBE_KBPS, MAX_KBPS, 1
    if not works(hi):
        steps += 1
        if not works(lo):  # too small for this encoder: search at the mode, known to work
            size = (mode.width, mode.height)
        while steps < SEARCH_STEPS and hi - lo > max(1, lo // 1000):
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if works(mid) else (lo, mid)
            steps += 1
        hi = lo
    event(_log, "encode.probe.ceiling", encoder=spec.encoder, max_bitrate_kbps=hi, steps=steps)
    _ceilings[spec] = hi
    return hi


def probe(
    backend: EncoderBackend,
    codec: Codec,
    mode: DisplayMode,
    depth: int,
    device: str | None = None,
    spec: BackendSpec | None = None,
) -> ProbeResult:
    """Probe one (backend, codec) at `mode` and bit depth (8: SDR, 10: HDR10); cached."""
    spec = spec or SPECS[(backend, codec)]
    key = (spec, mode, depth)
    with _lock:
        if key in _cache:
            return _cache[key]
        start = time.perf_counter()
        reason = _precheck(spec, device)
        if not reason and depth > 8 and not codec.carries_hdr10:
            reason = f"{codec} carries no HDR10 here"
        if not reason:
            settings = StreamSettings(
                mode.width, mode.height, mode.refresh_hz, PROBE_KBPS, depth > 8, HDR10_DEFAULT
            )
            # Let Capture see FFmpeg's own reasons, repeated ones included; restore after.
            level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
            av.logging.set_level(av.logging.ERROR)
            av.logging.set_skip_repeated(False)
            try:
                reason = _try_encode(spec, settings, device)
                ceiling = 0 if reason else _ceiling(spec, mode, device)
            finally:
                av.logging.set_level(level)
                av.logging.set_skip_repeated(skip)
        result = ProbeResult(
            spec.backend,
            spec.codec,
            spec.encoder,
            mode,
            depth,
            not reason,
            reason,
            0 if reason else ceiling,
        )
        _cache[key] = result
    event(
        _log,
        "encode.probe",
        encoder=spec.encoder,
        backend=backend,
        codec=codec,
        mode=mode,
        depth=depth,
        ok=result.ok,
        reason=reason or "-",
        max_bitrate_kbps=result.max_bitrate_kbps,
        ms=round((time.perf_counter() - start) * 1e3),
    )
    return result


def probe_machine(
    mode: DisplayMode,
    codecs: Iterable[Codec] = tuple(Codec),
    backends: Iterable[EncoderBackend] = PREFERENCE,
    device: str | None = None,
) -> ProbeReport:
    """Probe every (backend, codec) at 8-bit, and at 10-bit where 8-bit works and the codec can
    carry HDR10. A 10-bit failure is logged as the downgrade it causes."""
    results: list[ProbeResult] = []
    for backend in backends:
        for codec in codecs:
            sdr = probe(backend, codec, mode, 8, device)
            results.append(sdr)
            if sdr.ok and codec.carries_hdr10:
                ten = probe(backend, codec, mode, 10, device)
                results.append(ten)
                if not ten.ok:
                    event(
                        _log,
                        "encode.probe.downgrade",
                        logging.WARNING,
                        encoder=sdr.encoder,
                        mode=mode,
                        reason=ten.reason,
                        result="8-bit SDR only",
                    )
    return ProbeReport(tuple(results))
