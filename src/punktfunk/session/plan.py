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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from ..capture.base import CaptureBackend, CaptureError
from ..config import HostConfig
from ..encode.base import PREFERENCE, Codec, EncoderBackend, ProbedEncoder
from ..log import event
from ..proto.frame import PixelFormat
from ..vdisplay.base import AUTO_ORDER, DisplayBackend, DisplayMode

_log = logging.getLogger("punktfunk.session.plan")

# Display backends that can render a 10-bit/HDR desktop, and the format they deliver it in.
HDR_FORMAT: dict[DisplayBackend, PixelFormat] = {DisplayBackend.PATTERN: PixelFormat.FP16_RGBA}


class PlanError(Exception):
    """The session cannot be set up as asked; the message says why and what would work."""


class Topology(StrEnum):
    """Where the monitor lives relative to the host process."""

    DRIVER_PROCESS = "driver-process"  # created by `punktfunk vdisplay`, frames via its ring
    ATTACHED = "attached"  # an existing X display, captured directly


@dataclass(frozen=True)
class ClientRequest:
    """What the client negotiated (either wire protocol)."""

    mode: DisplayMode
    codec: Codec
    hdr: bool
    bitrate_kbps: int


@dataclass(frozen=True)
class MachineCaps:
    """What this machine proved it can do, probed before any session."""

    displays: frozenset[DisplayBackend]
    encoders: tuple[ProbedEncoder, ...]


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
        }


def _resolve_display(config: HostConfig, caps: MachineCaps) -> tuple[DisplayBackend, str | None]:
    if config.display.startswith("attach:"):
        return DisplayBackend.ATTACH, config.display[len("attach:") :]
    if config.display == "auto":
        for backend in AUTO_ORDER:
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


def _candidates(config: HostConfig, caps: MachineCaps, codec: Codec) -> list[ProbedEncoder]:
    """Probed encoders for `codec` that the config allows, best first."""
    if config.codec != "auto" and config.codec != codec:
        raise PlanError(
            f"the client asked for {codec} but this host is restricted to codec={config.codec}"
        )
    allowed = [
        e for e in caps.encoders if e.codec == codec and config.encoder in ("auto", e.backend)
    ]
    if not allowed:
        working = ", ".join(f"{e.backend}/{e.codec}" for e in caps.encoders) or "none"
        wanted = "any backend" if config.encoder == "auto" else f"encoder={config.encoder}"
        raise PlanError(f"no working {codec} encoder for {wanted}; the probe proved: {working}")
    return sorted(allowed, key=lambda e: PREFERENCE.index(e.backend))


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
    downgrades: list[str] = []

    hdr = request.hdr
    if hdr and config.hdr == "off":
        hdr = False
        downgrades.append("HDR off by config (hdr=off): 8-bit SDR")
    if hdr and not request.codec.carries_hdr10:
        hdr = False
        downgrades.append(f"{request.codec} carries no HDR10: 8-bit SDR")
    if hdr and display not in HDR_FORMAT:
        hdr = False
        downgrades.append(f"display {display} renders 8-bit only: 8-bit SDR")
    encoder = candidates[0]
    if hdr:
        ten_bit = [e for e in candidates if e.max_bit_depth >= 10]
        if ten_bit:
            if ten_bit[0] is not encoder:
                downgrades.append(
                    f"{encoder.backend} cannot encode 10-bit {request.codec}: "
                    f"using {ten_bit[0].backend} for HDR"
                )
            encoder = ten_bit[0]
        else:
            hdr = False
            downgrades.append(f"no working encoder does 10-bit {request.codec}: 8-bit SDR")

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
        codec=request.codec,
        mode=request.mode,
        input_format=HDR_FORMAT[display] if hdr else PixelFormat.BGRA8,
        bit_depth=10 if hdr else 8,
        hdr=hdr,
        pipeline_depth=config.pipeline_depth,
        bitrate_kbps=bitrate,
        downgrades=tuple(downgrades),
    )
    event(_log, "plan.resolved", **plan.log_fields())
    return plan
