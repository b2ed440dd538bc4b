"""HostServices: the host-lifetime parts every session draws on, behind `SessionServices`.

Created once by `punktfunk serve`: it probes the encoders (the proof every advertised codec
rests on), owns one display manager per display backend, and opens for each session its
monitor lease, capturer and encoder per the resolved plan, its audio, input and pads. A
session's `VideoSource.close()` releases all of it in reverse order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..audio.base import AudioCapturer
from ..audio.opus import OpusEncoder, gamestream_config
from ..audio.pulse import open_capturer
from ..capture.base import Capturer, OutputFormat
from ..capture.open import open_capture
from ..config import HostConfig
from ..encode.backends import SPECS
from ..encode.base import Codec, Encoder, EncoderBackend
from ..encode.caps import ProbeReport, probe_machine
from ..encode.factory import EncoderUnavailableError, open_encoder, select_backend
from ..encode.pyav import EncoderParams
from ..encode.throughput import ThroughputCache, sustains
from ..input.base import InputInjector, PadManager
from ..input.pads import open_pad_manager
from ..input.x11 import InputError as X11InputError
from ..input.x11 import X11Injector
from ..log import event
from ..vdisplay import open_display
from ..vdisplay.base import (
    DisplayBackend,
    DisplayMode,
    MonitorRequest,
    VirtualDisplay,
    VirtualLease,
)
from ..vdisplay.base import available_backends as installed_backends
from ..vdisplay.manager import VirtualDisplayManager
from .memory import limit_arenas, trim_heap_soon
from .plan import HDR_FORMAT, ClientRequest, MachineCaps, SessionPlan, resolve_plan

_log = logging.getLogger("punktfunk.session.services")

PROBE_MODE = DisplayMode(1920, 1080, 60)


@dataclass
class _Source:
    """One session's monitor + capturer + encoder (a `VideoSource`)."""

    plan: SessionPlan
    lease: VirtualLease
    capturer: Capturer
    encoder: Encoder
    _closed: bool = field(default=False, repr=False)

    @property
    def display_name(self) -> str:
        return self.lease.output.display_name

    @property
    def app_env(self) -> dict[str, str]:
        return self.lease.environment()  # type: ignore[attr-defined]

    def place_app(self, pid: int) -> None:
        """Have a launched app's windows open on this session's monitor (display=wlroots)."""
        place = getattr(self.lease, "place_app", None)
        if place is None:
            return
        try:
            place(pid)
        except (RuntimeError, OSError) as exc:
            event(_log, "app.place_failed", logging.WARNING, pid=pid, reason=repr(exc))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for part in (self.encoder, self.capturer, self.lease):
            try:
                part.close()
            except Exception as exc:  # keep releasing the rest
                event(
                    _log,
                    "source.close_failed",
                    logging.WARNING,
                    part=type(part).__name__,
                    reason=repr(exc),
                )
        trim_heap_soon()  # what the session freed goes back to the kernel, not to an arena


def _wayland_input(config: HostConfig, source: _Source) -> InputInjector | None:
    from ..input.wayland import WaylandInputError, open_for_lease

    try:
        return open_for_lease(config.state_dir, source.lease)
    except WaylandInputError as exc:
        event(_log, "input.unavailable", logging.WARNING, display=source.display_name, reason=exc)
        return None


class HostServices:
    def __init__(
        self,
        config: HostConfig,
        probe_mode: DisplayMode = PROBE_MODE,
        throughput: ThroughputCache | None = None,
    ) -> None:
        limit_arenas()  # before the probe and any session start threads (see memory.py)
        self.config = config
        self._lock = threading.Lock()
        self._displays: dict[str, VirtualDisplay] = {}
        self.report: ProbeReport = probe_machine(probe_mode).require_working()
        self.throughput = throughput or ThroughputCache()
        self.caps = MachineCaps(
            installed_backends(),
            self.report.encoders,
            self.encoder_fps if config.codec_fit else None,
        )
        event(
            _log,
            "services.ready",
            encoders=",".join(f"{e.backend}/{e.codec}" for e in self.report.encoders),
            displays=",".join(sorted(self.caps.displays)),
        )

    # --- what may be advertised -----------------------------------------------------------

    def codecs(self) -> frozenset[Codec]:
        allowed = {Codec(self.config.codec)} if self.config.codec != "auto" else set(Codec)
        return frozenset(e.codec for e in self.report.encoders if e.codec in allowed)

    def encoder_fps(self, backend: EncoderBackend, codec: Codec, mode: DisplayMode) -> float:
        """Measured fps of (backend, codec) at the mode's size (measured once per machine)."""
        device = None if self.config.render_adapter == "auto" else self.config.render_adapter
        return self.throughput.fps(SPECS[(backend, codec)], mode.width, mode.height, device)

    def sustainable_codecs(self, mode: DisplayMode) -> frozenset[Codec]:
        """The codecs to offer a client at `mode`: those whose encoder holds its rate. H.264,
        the codec every client decodes, stays offered even when it cannot (the best there is),
        and so does every working codec when none holds it or codec_fit is off."""
        codecs = self.codecs()
        if not self.config.codec_fit:
            return codecs
        keep = {Codec.H264} & codecs
        for codec in codecs - keep:
            try:
                backend = select_backend(self.config.encoder, codec, self.report)
            except EncoderUnavailableError:
                continue  # the configured backend cannot encode it: a session would fail
            if sustains(self.encoder_fps(backend, codec, mode), mode.refresh_hz):
                keep.add(codec)
        return frozenset(keep) or codecs  # codec=hevc and HEVC too slow: still offer HEVC

    def hdr_codecs(self) -> frozenset[Codec]:
        if self.config.hdr == "off" or not any(d in HDR_FORMAT for d in self._display_kinds()):
            return frozenset()
        return frozenset(
            e.codec
            for e in self.report.encoders
            if e.max_bit_depth >= 10 and e.codec.carries_hdr10 and e.codec in self.codecs()
        )

    def _display_kinds(self) -> set[DisplayBackend]:
        if self.config.display.startswith("attach:"):
            return {DisplayBackend.ATTACH}
        if self.config.display != "auto":
            return {DisplayBackend(self.config.display)}
        return set(self.caps.displays)

    def supports_rfi(self) -> bool:
        return False  # no encoder backend here can invalidate references (see encode/pyav.py)

    # --- per session ----------------------------------------------------------------------

    def _display(self, plan: SessionPlan) -> VirtualDisplay:
        key = f"attach:{plan.attach_target}" if plan.attach_target else str(plan.display)
        with self._lock:
            display = self._displays.get(key)
            if display is None:
                if plan.attach_target is not None:
                    display = open_display(self.config, plan.display, plan.attach_target)
                else:
                    display = VirtualDisplayManager(self.config, plan.display)
                self._displays[key] = display
            return display

    def open_lease(
        self, request: ClientRequest, client_id: str
    ) -> tuple[SessionPlan, VirtualLease]:
        """The resolved plan and the session's monitor (a media worker opens the rest)."""
        plan = resolve_plan(self.config, request, self.caps)
        return plan, self._display(plan).acquire(MonitorRequest(plan.mode, plan.hdr, client_id))

    def encoder_spec(self, plan: SessionPlan) -> tuple[EncoderBackend, EncoderParams]:
        backend = select_backend(self.config.encoder, plan.codec, self.report)
        ceiling = next(
            e.max_bitrate_kbps
            for e in self.report.encoders
            if e.backend == backend and e.codec == plan.codec
        )
        device = None if self.config.render_adapter == "auto" else self.config.render_adapter
        return backend, EncoderParams(
            bitrate_kbps=plan.bitrate_kbps,
            fps=plan.mode.refresh_hz,
            max_bit_depth=plan.bit_depth,
            max_bitrate_kbps=ceiling,
            pipeline_depth=plan.pipeline_depth,
            device=device,
        )

    def open_video(self, request: ClientRequest, client_id: str) -> _Source:
        plan, lease = self.open_lease(request, client_id)
        try:
            capturer = open_capture(
                lease,
                OutputFormat(gpu=False, hdr=plan.hdr),
                plan.capture,
                pipeline_depth=plan.pipeline_depth,
            )
        except Exception:
            lease.close()
            raise
        try:
            encoder = self.open_encoder(plan, capturer)
        except Exception:
            capturer.close()
            lease.close()
            raise
        return _Source(plan, lease, capturer, encoder)

    def open_encoder(self, plan: SessionPlan, capturer: Capturer) -> Encoder:
        """The encoder `plan` asked for, fed by `capturer`."""
        backend, params = self.encoder_spec(plan)
        return open_encoder(backend, plan.codec, params, capturer.hdr_meta())

    def open_audio(self, channels: int, session_name: str, source: object = None) -> AudioCapturer:
        return open_capturer(session_name, channels)

    def audio_in_worker(self, lease: object) -> bool:
        """Whether a media worker can capture this session's audio itself (the session's
        sound server sink); an embedded program's audio lives in the host's process."""
        return True

    def opus_encoder(
        self, channels: int, high_quality: bool, frame_ms: int
    ) -> Callable[[bytes], bytes]:
        return OpusEncoder(gamestream_config(channels, high_quality, frame_ms)).encode

    def open_input(self, source: _Source) -> InputInjector | None:
        cast = getattr(source.lease, "portal_input", None)  # attach:portal, RemoteDesktop
        if cast is not None:
            from ..input.portal import PortalInjector

            mode = source.lease.output.mode
            return PortalInjector(cast, mode.width, mode.height)
        if source.plan.display is DisplayBackend.WLROOTS or hasattr(source.lease, "wayland_socket"):
            return _wayland_input(self.config, source)  # its own sway, or attach:wayland
        if not source.plan.display.apps_on_x11:
            return None  # the pattern display has nothing to type into
        try:
            return X11Injector(source.display_name)
        except X11InputError as exc:
            event(
                _log, "input.unavailable", logging.WARNING, display=source.display_name, reason=exc
            )
            return None

    def open_pads(self, session_name: str, source: object = None) -> PadManager | None:
        return open_pad_manager(session_name)

    def close(self) -> None:
        with self._lock:
            displays, self._displays = list(self._displays.values()), {}
        for display in displays:
            display.close()
