"""What a wire protocol asks the host for when a client starts streaming: a video source (its own
virtual monitor, captured and encoded per the resolved plan), the session's audio, its input.

Protocol code depends only on these Protocols; `session/services.py` implements them over the
virtual display, capture, encode, input and audio rooms.
"""

from __future__ import annotations

from typing import Protocol

from ..audio.base import AudioCapturer
from ..capture.base import Capturer
from ..encode.base import Codec, Encoder
from ..input.base import InputInjector, PadManager
from ..vdisplay.base import DisplayMode
from .plan import ClientRequest, SessionPlan


class VideoSource(Protocol):
    """A session's monitor with its capturer and encoder; close() releases all of it."""

    @property
    def plan(self) -> SessionPlan: ...
    @property
    def capturer(self) -> Capturer: ...
    @property
    def encoder(self) -> Encoder: ...
    @property
    def display_name(self) -> str:
        """Where the session's applications and input go (an X display, or a pattern label)."""

    @property
    def app_env(self) -> dict[str, str]:
        """Environment for processes launched into the session (DISPLAY, audio sink, GPU)."""

    def close(self) -> None: ...


class SessionServices(Protocol):
    """Host-lifetime services a wire protocol uses to build each session."""

    def codecs(self) -> frozenset[Codec]:
        """Codecs the encoder probe proved (what the protocol may advertise)."""

    def sustainable_codecs(self, mode: DisplayMode) -> frozenset[Codec]:
        """Of `codecs()`, those this host can encode at `mode` at its rate (H.264 always)."""

    def hdr_codecs(self) -> frozenset[Codec]:
        """Codecs that can be streamed as 10-bit HDR here."""

    def supports_rfi(self) -> bool: ...
    def open_video(self, request: ClientRequest, client_id: str) -> VideoSource: ...
    def open_audio(
        self, channels: int, session_name: str, source: VideoSource | None = None
    ) -> AudioCapturer: ...
    def open_input(self, source: VideoSource) -> InputInjector | None: ...
    def open_pads(
        self, session_name: str, source: VideoSource | None = None
    ) -> PadManager | None: ...
