"""SessionPlan: every per-session decision, resolved once and passed down.

Inputs are the host's `HostConfig`, what the client negotiated (`ClientRequest`) and what this
machine proved it can do (`MachineCaps`, probed elsewhere and passed in). Impossible requests
either downgrade (recorded in `SessionPlan.downgrades`, always toward a stream that still works)
or fail with a `PlanError` that says what to change:

- mode outside the driver's bounds, or odd-sized            -> PlanError
- configured display/encoder/codec not available here        -> PlanError
- HDR asked but hdr=off, H.264, an 8-bit-only encoder, or a display that renders 8-bit only
                                                             -> 8-bit SDR (downgrade)
- bitrate outside the configured limits or the encoder's ceiling -> clamped (downgrade)
- a codec the encoder cannot sustain at the asked mode and rate (measured: encode/throughput.py)
  -> the first codec in the client's `alternatives` that can (downgrade), else kept with a
  warning (the client insists, or nothing it decodes does better)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from ..capture.base import CaptureBackend, CaptureError
from ..config import HostConfig
from ..encode.base import PREFERENCE, Codec, EncoderBackend, ProbedEncoder
from ..encode.throughput import sustains
from ..log import event
from ..proto.frame import PixelFormat
from ..vdisplay.base import DisplayBackend, DisplayMode, auto_order

_log = logging.getLogger("punktfunk.session.plan")

# Display backends that can render a 10-bit/HDR desktop, and the format they deliver it in.
HDR_FORMAT: dict[DisplayBackend, PixelFormat] = {DisplayBackend.PATTERN: PixelFormat.FP16_RGBA}


# The mode a codec offer is judged at when the client has not said its own yet (GameStream's
# /serverinfo): Moonlight's default and what most clients ask for.
TYPICAL_MODE = DisplayMode(1920, 1080, 60)


class PlanError(Exception):
    """The session cannot be set up as asked; the message says why and what would work."""


class Topology(StrEnum):
    """Where the monitor lives relative to the host process."""

    DRIVER_PROCESS = "driver-process"  # created by `punktfunk vdisplay`, frames via its ring
    ATTACHED = "attached"  # an existing X display, captured directly
    IN_PROCESS = "in-process"  # an embedded app (`punktfunk.Host`) plays the driver's part


@dataclass(frozen=True)
class ClientRequest:
    """What the client negotiated (either wire protocol)."""

    mode: DisplayMode
    codec: Codec
    hdr: bool
    bitrate_kbps: int
    # Other codecs the client decodes, best first; empty: the codec is fixed (a native client
    # listing one codec, or GameStream, where the client chose it before ANNOUNCE).
    alternatives: tuple[Codec, ...] = ()
    # What the protocol already settled before this request (e.g. codecs withheld from the
    # client's choice), recorded with the plan's own downgrades.
    notes: tuple[str, ...] = ()
    # The app the client launched (GameStream app title, punktfunk/2 `launch`); "" = Desktop.
    app: str = ""


# fps an encoder backend sustains for a codec at a mode (measured once per machine and mode).
Throughput = Callable[[EncoderBackend, Codec, DisplayMode], float]


@dataclass(frozen=True)
class MachineCaps:
    """What this machine proved it can do, probed before any session."""

    displays: frozenset[DisplayBackend]
    encoders: tuple[ProbedEncoder, ...]
    throughput: Throughput | None = None  # None: no sustainability check (codec_fit=off)


@dataclass(frozen=True)
class SessionPlan:
    display: DisplayBackend
    attach_target: str | None
    capture: CaptureBackend
    topology: Topology
    encoder: EncoderBackend
    codec: Codec
    mode: DisplayMode
    input_format: PixelFormat
    bit_depth: int
    hdr: bool
    pipeline_depth: int
    bitrate_kbps: int
    downgrades: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())

    def log_fields(self) -> dict[str, object]:
        return {
            "display": self.display
            if self.attach_target is None
            else f"attach:{self.attach_target}",
            "capture": self.capture,
            "topology": self.topology,
            "encoder": self.encoder,
            "codec": self.codec,
            "mode": self.mode,
            "input_format": self.input_format.name,
            "bit_depth": self.bit_depth,
            "hdr": self.hdr,
            "pipeline_depth": self.pipeline_depth,
            "bitrate_kbps": self.bitrate_kbps,
            "downgrades": "; ".join(self.downgrades) or "none",
            "warnings": "; ".join(self.warnings) or "none",
        }

    def summary(self) -> str:
        """The codec, mode and what changed from the request, for the status line."""
        notes = "; ".join((*self.downgrades, *self.warnings))
        return f"{self.codec} {self.mode}" + (f" ({notes})" if notes else "")


def _gpu_compositor(caps: MachineCaps) -> bool:
    if DisplayBackend.WLROOTS not in caps.displays:
        return False
    from ..wayland.checks import gpu_compositor

    return gpu_compositor()[0]


def _resolve_display(config: HostConfig, caps: MachineCaps) -> tuple[DisplayBackend, str | None]:
    if config.display.startswith("attach:"):
        return DisplayBackend.ATTACH, config.display[len("attach:") :]
    if config.display == "auto":
        for backend in auto_order(_gpu_compositor(caps)):
            if backend in caps.displays:
                return backend, None
        raise PlanError("display=auto found no usable display backend")
    backend = DisplayBackend(config.display)
    if backend not in caps.displays:
        raise PlanError(
            f"display={backend} is not available on this machine (its X server is not "
            f"installed); available: {', '.join(sorted(caps.displays - {DisplayBackend.ATTACH}))}"
        )
    return backend, None


def _allowed(config: HostConfig, caps: MachineCaps, codec: Codec) -> list[ProbedEncoder]:
    """Probed encoders for `codec` that the config allows, best first (maybe none)."""
    if config.codec not in ("auto", codec):
        return []
    return sorted(
        (e for e in caps.encoders if e.codec == codec and config.encoder in ("auto", e.backend)),
        key=lambda e: PREFERENCE.index(e.backend),
    )


def _candidates(config: HostConfig, caps: MachineCaps, codec: Codec) -> list[ProbedEncoder]:
    """`_allowed`, or a PlanError that says why there is none."""
    if config.codec != "auto" and config.codec != codec:
        raise PlanError(
            f"the client asked for {codec} but this host is restricted to codec={config.codec}"
        )
    allowed = _allowed(config, caps, codec)
    if not allowed:
        working = ", ".join(f"{e.backend}/{e.codec}" for e in caps.encoders) or "none"
        wanted = "any backend" if config.encoder == "auto" else f"encoder={config.encoder}"
        raise PlanError(f"no working {codec} encoder for {wanted}; the probe proved: {working}")
    return allowed


def fit_codec(
    config: HostConfig, request: ClientRequest, caps: MachineCaps
) -> tuple[Codec, str | None, str | None]:
    """The codec to stream: the asked one if its encoder holds the asked mode at the asked rate,
    else the first alternative whose encoder does. Returns (codec, downgrade, warning)."""
    throughput = caps.throughput
    if throughput is None:
        return request.codec, None, None
    mode, rate = request.mode, request.mode.refresh_hz
    measured: dict[Codec, float] = {}

    def fps(codec: Codec) -> float | None:
        encoders = _allowed(config, caps, codec)
        if not encoders:
            return None
        if codec not in measured:
            measured[codec] = throughput(encoders[0].backend, codec, mode)
        return measured[codec]

    asked = fps(request.codec)
    if asked is None or sustains(asked, rate):
        return request.codec, None, None
    slow = (
        f"{request.codec} encodes ~{asked:.0f} fps at {mode.width}x{mode.height}, under {rate} Hz"
    )
    for alt in request.alternatives:
        got = fps(alt) if alt != request.codec else None
        if got is not None and sustains(got, rate):
            return alt, f"{slow}: {alt} (~{got:.0f} fps)", None
    if request.alternatives:
        why = "no other codec the client decodes holds it either"
    else:
        why = "the client accepts no other codec"
    warning = f"{slow}; {why}: kept, frames will be dropped"
    event(_log, "plan.codec_unsustainable", logging.WARNING, codec=request.codec, mode=mode,
          fps=round(asked, 1), reason=why)  # fmt: skip
    return request.codec, None, warning


def resolve_plan(config: HostConfig, request: ClientRequest, caps: MachineCaps) -> SessionPlan:
    """Resolve the session once; log it as one line. Raises PlanError for impossible requests."""
    reason = request.mode.error()
    if reason is not None:
        raise PlanError(f"cannot create the client's monitor: {reason}")
    display, attach = _resolve_display(config, caps)
    try:
        capture = CaptureBackend.resolve(config.capture, display)
    except CaptureError as exc:
        raise PlanError(str(exc)) from None
    candidates = _candidates(config, caps, request.codec)
    downgrades: list[str] = list(request.notes)
    codec, change, warning = fit_codec(config, request, caps)
    if change is not None:
        downgrades.append(change)
        candidates = _candidates(config, caps, codec)

    hdr = request.hdr
    if hdr and config.hdr == "off":
        hdr = False
        downgrades.append("HDR off by config (hdr=off): 8-bit SDR")
    if hdr and not codec.carries_hdr10:
        hdr = False
        downgrades.append(f"{codec} carries no HDR10: 8-bit SDR")
    if hdr and display not in HDR_FORMAT:
        hdr = False
        downgrades.append(f"display {display} renders 8-bit only: 8-bit SDR")
    encoder = candidates[0]
    if hdr:
        ten_bit = [e for e in candidates if e.max_bit_depth >= 10]
        if ten_bit:
            if ten_bit[0] is not encoder:
                downgrades.append(
                    f"{encoder.backend} cannot encode 10-bit {codec}: "
                    f"using {ten_bit[0].backend} for HDR"
                )
            encoder = ten_bit[0]
        else:
            hdr = False
            downgrades.append(f"no working encoder does 10-bit {codec}: 8-bit SDR")

    limit = min(config.bitrate_max_kbps, encoder.max_bitrate_kbps)
    bitrate = max(config.bitrate_min_kbps, min(request.bitrate_kbps, limit))
    if bitrate != request.bitrate_kbps:
        downgrades.append(f"bitrate {request.bitrate_kbps} kbps clamped to {bitrate} kbps")

    plan = SessionPlan(
        display=display,
        attach_target=attach,
        capture=capture,
        topology=Topology.DRIVER_PROCESS if display.has_driver else Topology.ATTACHED,
        encoder=encoder.backend,
        codec=codec,
        mode=request.mode,
        input_format=HDR_FORMAT[display] if hdr else PixelFormat.BGRA8,
        bit_depth=10 if hdr else 8,
        hdr=hdr,
        pipeline_depth=config.pipeline_depth,
        bitrate_kbps=bitrate,
        downgrades=tuple(downgrades),
        warnings=(warning,) if warning else (),
    )
    event(_log, "plan.resolved", **plan.log_fields())
    return plan
